package crypt

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time the calling OS thread has used.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuThroughput runs f b.N times on a locked thread and reports MB per
// CPU-second as well, which this shared, noisy host measures more steadily
// than wall-clock MB/s.
func cpuThroughput(b *testing.B, bytesPerOp int64, f func(i int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.SetBytes(bytesPerOp)
	b.ReportAllocs()
	start := threadCPU()
	n := 0
	for i := 0; b.Loop(); i++ {
		f(i)
		n++
	}
	if cpu := threadCPU() - start; cpu > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(n)/cpu.Seconds()/1e6, "cpuMB/s")
	}
}

// othersLoad measures how busy other processes keep the machine: call it
// before a measurement and call the function it returns after; that
// reports the CPUs' non-idle time not spent by this process, as a fraction
// of all CPUs' time in between (0: idle, 1: every CPU busy with others),
// or -1 if /proc/stat cannot be read.
func othersLoad() func() float64 {
	busy0, all0, err0 := procStat()
	self0 := processCPU()
	return func() float64 {
		busy1, all1, err1 := procStat()
		if err0 != nil || err1 != nil || all1 <= all0 {
			return -1
		}
		self := (processCPU() - self0).Seconds()
		return max(0, (busy1-busy0)-self) / (all1 - all0)
	}
}

// procStat returns the non-idle and total CPU seconds of all CPUs from
// /proc/stat's first line.
func procStat() (busy, all float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		v /= 100 // USER_HZ
		// guest and guest_nice are already counted in user and nice.
		if i >= 8 {
			continue
		}
		all += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, all, nil
}

// processCPU returns the CPU time this process has used.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
