package crypt

import (
	"crypto/aes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/crypto/xts"
)

const benchBuf = 64 << 10

// BenchmarkXTS512 and BenchmarkXTS4096 compare this package with
// golang.org/x/crypto/xts on 64 KiB buffers of 512- and 4096-byte sectors,
// AES-256-XTS (64-byte key). The engine runs the kernel New selects
// (KernelEnv picks one), which crypt/encrypt logs.
func BenchmarkXTS512(b *testing.B)  { benchXTS(b, 512) }
func BenchmarkXTS4096(b *testing.B) { benchXTS(b, 4096) }

func benchXTS(b *testing.B, ss int) {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i)
	}
	buf := make([]byte, benchBuf)
	b.Run("crypt/encrypt", func(b *testing.B) {
		c, err := New("aes-xts-plain64", key, ss)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("kernel %s", c.Kernel()) // for scripts/bench, which picks it with KernelEnv
		cpuThroughput(b, benchBuf, func(i int) { _ = c.Encrypt(buf, buf, uint64(i)) })
	})
	b.Run("crypt/decrypt", func(b *testing.B) {
		c, err := New("aes-xts-plain64", key, ss)
		if err != nil {
			b.Fatal(err)
		}
		cpuThroughput(b, benchBuf, func(i int) { _ = c.Decrypt(buf, buf, uint64(i)) })
	})
	b.Run("xcrypto/encrypt", func(b *testing.B) {
		c, err := xts.NewCipher(aes.NewCipher, key)
		if err != nil {
			b.Fatal(err)
		}
		cpuThroughput(b, benchBuf, func(i int) {
			for o := 0; o < benchBuf; o += ss {
				c.Encrypt(buf[o:o+ss], buf[o:o+ss], uint64(i*benchBuf+o)/512)
			}
		})
	})
	b.Run("xcrypto/decrypt", func(b *testing.B) {
		c, err := xts.NewCipher(aes.NewCipher, key)
		if err != nil {
			b.Fatal(err)
		}
		cpuThroughput(b, benchBuf, func(i int) {
			for o := 0; o < benchBuf; o += ss {
				c.Decrypt(buf[o:o+ss], buf[o:o+ss], uint64(i*benchBuf+o)/512)
			}
		})
	})
}

// BenchmarkXTSLarge measures 1 MiB calls, which are spread over CPUs.
func BenchmarkXTSLarge(b *testing.B) {
	for _, ss := range []int{512, 4096} {
		b.Run(fmt.Sprint(ss), func(b *testing.B) {
			c, err := New("aes-xts-plain64", make([]byte, 64), ss)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			for i := 0; b.Loop(); i++ {
				_ = c.Encrypt(buf, buf, uint64(i))
			}
		})
	}
}

// BenchmarkXTSWorkers measures how the engine scales over CPUs: 1 MiB and
// 4 MiB calls (4096-byte sectors) run on one and on two goroutines,
// interleaved within each iteration so that a busy machine slows both
// alike. It reports each one's wall-clock MB/s, their ratio ("2w/1w") and
// how busy other processes kept the CPUs meanwhile ("others-load", 0 to 1,
// from /proc/stat): on an idle machine with two CPUs the ratio approaches
// 2.
func BenchmarkXTSWorkers(b *testing.B) {
	for _, size := range []int{1 << 20, 4 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			c, err := New("aes-xts-plain64", make([]byte, 64), 4096)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, size)
			var took [3]time.Duration
			b.SetBytes(int64(2 * len(buf)))
			load := othersLoad()
			for i := 0; b.Loop(); i++ {
				for _, w := range []int{1, 2} {
					start := time.Now()
					c.cryptWorkers(buf, buf, uint64(i)*uint64(size/512), false, w)
					took[w] += time.Since(start)
				}
			}
			for _, w := range []int{1, 2} {
				b.ReportMetric(float64(len(buf))*float64(b.N)/took[w].Seconds()/1e6, fmt.Sprintf("%dw-MB/s", w))
			}
			b.ReportMetric(took[1].Seconds()/took[2].Seconds(), "2w/1w")
			b.ReportMetric(load(), "others-load")
		})
	}
}

// BenchmarkAESECB is the pure-Go ceiling: one crypto/aes Block.Encrypt per
// 16 bytes and nothing else.
func BenchmarkAESECB(b *testing.B) {
	blk, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, benchBuf)
	cpuThroughput(b, benchBuf, func(int) {
		for o := 0; o < len(buf); o += 16 {
			blk.Encrypt(buf[o:o+16], buf[o:o+16])
		}
	})
}

// BenchmarkCBCESSIV measures the secondary mode on 4096-byte sectors.
func BenchmarkCBCESSIV(b *testing.B) {
	for _, dir := range []string{"encrypt", "decrypt"} {
		b.Run(dir, func(b *testing.B) {
			c, err := New("aes-cbc-essiv:sha256", make([]byte, 32), 4096)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, benchBuf)
			b.SetBytes(benchBuf)
			for i := 0; b.Loop(); i++ {
				if dir == "encrypt" {
					_ = c.Encrypt(buf, buf, uint64(i))
				} else {
					_ = c.Decrypt(buf, buf, uint64(i))
				}
			}
		})
	}
}

// BenchmarkSegmentRead measures 1 MiB reads through a Segment over memory.
func BenchmarkSegmentRead(b *testing.B) {
	for _, ss := range []int{512, 4096} {
		b.Run(fmt.Sprint(ss), func(b *testing.B) {
			c, err := New("aes-xts-plain64", make([]byte, 64), ss)
			if err != nil {
				b.Fatal(err)
			}
			dev := &memDev{buf: make([]byte, 8<<20)}
			s := NewSegment(dev, c, 0, 8<<20, 0)
			p := make([]byte, 1<<20)
			b.SetBytes(int64(len(p)))
			for i := 0; b.Loop(); i++ {
				_, _ = s.ReadAt(p, int64(i%7)<<20)
			}
		})
	}
}

// BenchmarkXTSKernels runs every kernel this CPU has, and
// golang.org/x/crypto/xts, interleaved within each iteration on the same
// 64 KiB buffer, so that a noisy machine slows them alike. It reports each
// one's MB per CPU-second and its ratio to the pure-Go kernel
// ("<kernel>/go").
func BenchmarkXTSKernels(b *testing.B) {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i)
	}
	for _, ss := range []int{512, 4096} {
		for _, dir := range []string{"encrypt", "decrypt"} {
			b.Run(fmt.Sprintf("%d/%s", ss, dir), func(b *testing.B) {
				buf := make([]byte, benchBuf)
				type runner struct {
					name string
					run  func(i int)
					cpu  time.Duration
				}
				var rs []*runner
				for _, k := range xtsKernels {
					c, err := newWithKernel("aes-xts-plain64", key, ss, k)
					if err != nil {
						b.Fatal(err)
					}
					f := c.Encrypt
					if dir == "decrypt" {
						f = c.Decrypt
					}
					rs = append(rs, &runner{name: k.name, run: func(i int) { _ = f(buf, buf, uint64(i)) }})
				}
				ref, err := xts.NewCipher(aes.NewCipher, key)
				if err != nil {
					b.Fatal(err)
				}
				rs = append(rs, &runner{name: "xcrypto", run: func(i int) {
					for o := 0; o < benchBuf; o += ss {
						if dir == "decrypt" {
							ref.Decrypt(buf[o:o+ss], buf[o:o+ss], uint64(i*benchBuf+o)/512)
						} else {
							ref.Encrypt(buf[o:o+ss], buf[o:o+ss], uint64(i*benchBuf+o)/512)
						}
					}
				}})
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				// Each runner does runs calls in a row per iteration, so the
				// clock's cost and resolution stay small beside the work.
				const runs = 16
				b.SetBytes(int64(benchBuf * len(rs) * runs))
				n := 0
				for i := 0; b.Loop(); i++ {
					for _, r := range rs {
						start := threadCPU()
						for j := range runs {
							r.run(i*runs + j)
						}
						r.cpu += threadCPU() - start
					}
					n += runs
				}
				goCPU := rs[len(rs)-2].cpu
				for _, r := range rs {
					if r.cpu <= 0 {
						continue
					}
					b.ReportMetric(float64(benchBuf)*float64(n)/r.cpu.Seconds()/1e6, r.name+"-cpuMB/s")
					if goCPU > 0 && r.name != "go" {
						b.ReportMetric(goCPU.Seconds()/r.cpu.Seconds(), r.name+"/go")
					}
				}
			})
		}
	}
}
