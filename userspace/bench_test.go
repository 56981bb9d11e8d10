package userspace_test

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/volcrypt/volcrypt/userspace"
)

// BenchmarkSequential compares sequential 1 MiB reads and writes through the
// FUSE file with the same I/O on the engine directly; the target is FUSE at
// least half the engine's throughput. Each iteration times one engine call
// and one FUSE call at the same offset, so that load from other processes
// weighs on both alike; the metrics are each side's MB/s and FUSE's share in
// percent. The image lives in the page cache: this measures the engine and
// FUSE, not the disk. I/O to the file is direct (no FUSE page cache).
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
			var te, tf time.Duration
			off, n := int64(0), 0
			for b.Loop() {
				t0 := time.Now()
				if _, err := tc.engine(buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := tc.fuse(buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
				te, tf = te+t1.Sub(t0), tf+time.Since(t1)
				off, n = (off+block)%size, n+1
			}
			mbs := func(d time.Duration) float64 { return float64(n) * block / 1e6 / d.Seconds() }
			b.ReportMetric(mbs(te), "engine-MB/s")
			b.ReportMetric(mbs(tf), "fuse-MB/s")
			b.ReportMetric(100*te.Seconds()/tf.Seconds(), "fuse-%")
		})
	}
}
