package kdf

import (
	"context"
	"testing"
)

func benchDerive(b *testing.B, p Params, keyLen int) {
	b.Helper()
	pass, salt := []byte("passphrase"), []byte("0123456789abcdef0123456789abcdef")
	if p.IsArgon2() {
		b.SetBytes(int64(p.MemoryKiB) * 1024 * int64(p.Time)) // bytes processed: memory × passes
	}
	b.ReportAllocs()
	for b.Loop() {
		k, err := Derive(p, pass, salt, keyLen)
		if err != nil {
			b.Fatal(err)
		}
		clear(k)
	}
	if p.Algorithm == PBKDF2 {
		b.ReportMetric(float64(p.Time)*float64(b.N)/b.Elapsed().Seconds(), "iter/s")
	}
}

// BenchmarkArgon2idDefault runs cryptsetup's default class (time 4, 1 GiB,
// 4 threads). Skipped with -short.
func BenchmarkArgon2idDefault(b *testing.B) {
	if testing.Short() {
		b.Skip("1 GiB Argon2id skipped with -short")
	}
	benchDerive(b, Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 1 << 20, Threads: 4}, 64)
}

func BenchmarkArgon2id(b *testing.B) {
	cases := []struct {
		name string
		p    Params
	}{
		{"t4-m32MiB-p1", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 32 << 10, Threads: 1}},
		{"t3-m64MiB-p1", Params{Algorithm: Argon2id, Time: 3, MemoryKiB: 64 << 10, Threads: 1}},
		{"t4-m256MiB-p4", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 256 << 10, Threads: 4}},
		{"argon2i-t4-m32MiB-p1", Params{Algorithm: Argon2i, Time: 4, MemoryKiB: 32 << 10, Threads: 1}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if testing.Short() && c.p.MemoryKiB > 64<<10 {
				b.Skip("large Argon2 skipped with -short")
			}
			benchDerive(b, c.p, 64)
		})
	}
}

func BenchmarkPBKDF2(b *testing.B) {
	for _, h := range []string{"sha1", "sha256", "sha512", "sha3-256"} {
		b.Run(h, func(b *testing.B) {
			benchDerive(b, Params{Algorithm: PBKDF2, Hash: h, Time: 100_000}, 32)
		})
	}
}

func BenchmarkDigestIterations(b *testing.B) {
	for b.Loop() {
		if _, err := DigestIterations(context.Background(), "sha256", 64); err != nil {
			b.Fatal(err)
		}
	}
}
