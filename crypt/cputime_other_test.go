//go:build !linux

package crypt

import (
	"testing"
	"time"
)

// cpuThroughput runs f b.N times; without per-thread CPU time it reports
// wall-clock throughput only.
func cpuThroughput(b *testing.B, bytesPerOp int64, f func(i int)) {
	b.SetBytes(bytesPerOp)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f(i)
	}
}

// threadCPU is unavailable here: it returns 0 and benchmarks skip CPU-time
// metrics.
func threadCPU() time.Duration { return 0 }

// othersLoad is unavailable here: the function it returns reports -1.
func othersLoad() func() float64 { return func() float64 { return -1 } }
