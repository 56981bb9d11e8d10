//go:build !linux

package crypt

import "testing"

// cpuThroughput runs f b.N times; without per-thread CPU time it reports
// wall-clock throughput only.
func cpuThroughput(b *testing.B, bytesPerOp int64, f func(i int)) {
	b.SetBytes(bytesPerOp)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f(i)
	}
}
