package userspace_test

import (
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/userspace"
)

// processCPU returns the CPU time this process has used, all threads.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSequential compares sequential 1 MiB reads and writes through the
// FUSE file with the same I/O on the engine directly; the target is FUSE at
// least half the engine's throughput. Each iteration times one engine call
// and one FUSE call at the same offset, so that load from other processes
// weighs on both alike; the metrics are each side's MB/s and FUSE's share in
// percent. The image lives in the page cache: this measures the engine and
// FUSE, not the disk. I/O to the file is direct (no FUSE page cache).
// The server runs in this process, so its CPU time (user and kernel) counts
// too: the cpu metrics are MB per CPU-second of the whole process, which
// this shared, noisy host measures more steadily than wall-clock MB/s.
func BenchmarkSequential(b *testing.B) {
	needFUSE(b)
	const size, block = 64 << 20, 1 << 20
	e := newEngine(b, size)
	m := serve(b, e, userspace.Options{Sync: e.file.Sync})
	f, err := os.OpenFile(m.Path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	buf := make([]byte, block)
	for _, tc := range []struct {
		name         string
		engine, fuse func(p []byte, off int64) (int, error)
	}{
		{"read", e.ReadAt, f.ReadAt},
		{"write", e.WriteAt, f.WriteAt},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var te, tf, ce, cf time.Duration
			off, n := int64(0), 0
			for b.Loop() {
				t0, c0 := time.Now(), processCPU()
				if _, err := tc.engine(buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
				t1, c1 := time.Now(), processCPU()
				if _, err := tc.fuse(buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
				t2, c2 := time.Now(), processCPU()
				te, tf = te+t1.Sub(t0), tf+t2.Sub(t1)
				ce, cf = ce+c1-c0, cf+c2-c1
				off, n = (off+block)%size, n+1
			}
			mbs := func(d time.Duration) float64 { return float64(n) * block / 1e6 / d.Seconds() }
			b.ReportMetric(mbs(te), "engine-MB/s")
			b.ReportMetric(mbs(tf), "fuse-MB/s")
			b.ReportMetric(100*te.Seconds()/tf.Seconds(), "fuse-%")
			b.ReportMetric(mbs(ce), "engine-cpuMB/s")
			b.ReportMetric(mbs(cf), "fuse-cpuMB/s")
			b.ReportMetric(100*ce.Seconds()/cf.Seconds(), "fuse-cpu-%")
		})
	}
}
