package crypt

import (
	"runtime"
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
