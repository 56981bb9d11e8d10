package kdf

import (
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/argon2"
	"golang.org/x/sys/unix"
)

// TestArgon2MatchesXCrypto compares this package's Argon2i and Argon2id with
// golang.org/x/crypto/argon2 on random parameters: time 1–5, memory from the
// 8 KiB-per-lane minimum upwards (including sizes that are not a multiple
// of 4 × lanes), 1–8 lanes, output lengths 4–200 (H' with and without its
// chaining), random passwords and salts, empty password included.
func TestArgon2MatchesXCrypto(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(6, 9))
	cases := 60
	if testing.Short() {
		cases = 15
	}
	for n := range cases {
		lanes := uint32(1 + rng.IntN(8))
		mem := 8*lanes + uint32(rng.IntN(2048))
		tc := uint32(1 + rng.IntN(5))
		keyLen := uint32(4 + rng.IntN(197))
		pass := make([]byte, rng.IntN(40))
		salt := make([]byte, 8+rng.IntN(40))
		for i := range pass {
			pass[i] = byte(rng.Uint32())
		}
		for i := range salt {
			salt[i] = byte(rng.Uint32())
		}
		for _, alg := range []string{Argon2i, Argon2id} {
			t.Run(fmt.Sprintf("%d/%s/t%d/m%d/p%d/len%d", n, alg, tc, mem, lanes, keyLen), func(t *testing.T) {
				var want []byte
				if alg == Argon2i {
					want = argon2.Key(pass, salt, tc, mem, uint8(lanes), keyLen)
				} else {
					want = argon2.IDKey(pass, salt, tc, mem, uint8(lanes), keyLen)
				}
				typ := argon2TypeID
				if alg == Argon2i {
					typ = argon2TypeI
				}
				got, err := argon2Key(typ, pass, salt, tc, mem, lanes, keyLen)
				require.NoError(t, err)
				require.Equal(t, want, got)
			})
		}
	}
}

// compressSelected calls compress as selected at run time (package
// variables are initialised before init functions choose it).
func compressSelected(out, x, y, tmp *argon2Block, xor bool) { compress(out, x, y, tmp, xor) }

// TestArgon2Compress runs the portable compression function against every
// kernel this CPU has (compressors) on random blocks, with and
// without XOR, with out aliasing an input as the address generator does.
func TestArgon2Compress(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 1))
	random := func() *argon2Block {
		var b argon2Block
		for i := range b {
			b[i] = rng.Uint64()
		}
		return &b
	}
	for n := range 200 {
		x, y, old := random(), random(), random()
		xor := n%2 == 1
		want := *old
		var tmp argon2Block
		compressGeneric(&want, x, y, &tmp, xor)
		for name, f := range compressors {
			got := *old
			f(&got, x, y, &tmp, xor)
			require.Equal(t, want, got, name)
		}

		wantAlias := *y
		compressGeneric(&wantAlias, x, &wantAlias, &tmp, false)
		for name, f := range compressors {
			gotAlias := *y
			f(&gotAlias, x, &gotAlias, &tmp, false)
			require.Equal(t, wantAlias, gotAlias, name)
		}
	}
}

// TestArgon2Concurrent derives in parallel: lanes of different calls share
// nothing.
func TestArgon2Concurrent(t *testing.T) {
	p := Params{Algorithm: Argon2id, Time: 2, MemoryKiB: 512, Threads: 3}
	want := argon2.IDKey([]byte("pw"), []byte("saltsalt"), 2, 512, 3, 32)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			got, err := argon2Key(argon2TypeID, []byte("pw"), []byte("saltsalt"), p.Time, p.MemoryKiB, p.Threads, 32)
			if err != nil || string(got) != string(want) {
				t.Errorf("concurrent derive: %x, %v", got, err)
			}
		})
	}
	wg.Wait()
}

// processCPU is the CPU time of the whole process (all threads).
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkArgon2VsXCrypto runs this package's Argon2id and x/crypto's,
// alternating within each iteration on the same parameters, and reports
// each one's wall and CPU milliseconds per derivation and the ratios
// x/crypto ÷ this package (above 1: this package is faster).
func BenchmarkArgon2VsXCrypto(b *testing.B) {
	cases := []Params{
		{Algorithm: Argon2id, Time: 3, MemoryKiB: 64 << 10, Threads: 1},
		{Algorithm: Argon2id, Time: 4, MemoryKiB: 256 << 10, Threads: 2},
		{Algorithm: Argon2id, Time: 4, MemoryKiB: 256 << 10, Threads: 4},
	}
	pass, salt := []byte("passphrase"), []byte("0123456789abcdef")
	for _, p := range cases {
		b.Run(fmt.Sprintf("t%d-m%dMiB-p%d", p.Time, p.MemoryKiB>>10, p.Threads), func(b *testing.B) {
			var ownWall, ownCPU, xWall, xCPU time.Duration
			n := 0
			for b.Loop() {
				runtime.GC()
				w, c := time.Now(), processCPU()
				k, err := argon2Key(argon2TypeID, pass, salt, p.Time, p.MemoryKiB, p.Threads, 32)
				ownWall += time.Since(w)
				ownCPU += processCPU() - c
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				w, c = time.Now(), processCPU()
				_ = argon2.IDKey(pass, salt, p.Time, p.MemoryKiB, uint8(p.Threads), 32)
				xWall += time.Since(w)
				xCPU += processCPU() - c
				clear(k)
				n++
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(n) / 1e6 }
			b.ReportMetric(ms(ownWall), "own-wall-ms")
			b.ReportMetric(ms(ownCPU), "own-cpu-ms")
			b.ReportMetric(ms(xWall), "xcrypto-wall-ms")
			b.ReportMetric(ms(xCPU), "xcrypto-cpu-ms")
			b.ReportMetric(float64(xWall)/float64(ownWall), "wall-x/own")
			b.ReportMetric(float64(xCPU)/float64(ownCPU), "cpu-x/own")
		})
	}
}

// BenchmarkArgon2Compress times each compression kernel this CPU has on one
// block (1 KiB per operation).
func BenchmarkArgon2Compress(b *testing.B) {
	var out, x, y, tmp argon2Block
	for i := range x {
		x[i], y[i] = uint64(i)*0x9e3779b97f4a7c15, uint64(i)^0xdeadbeef
	}
	b.Run("generic", func(b *testing.B) {
		b.SetBytes(argon2BlockSize)
		for b.Loop() {
			compressGeneric(&out, &x, &y, &tmp, true)
		}
	})
	for name, f := range compressors {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(argon2BlockSize)
			for b.Loop() {
				f(&out, &x, &y, &tmp, true)
			}
		})
	}
}
