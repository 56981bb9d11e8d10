//go:build !purego

package kdf

import "golang.org/x/sys/cpu"

// compressors are the compression kernels this CPU runs, by name.
var compressors = func() map[string]func(out, x, y, tmp *argon2Block, xor bool) {
	m := map[string]func(out, x, y, tmp *argon2Block, xor bool){"selected": compressSelected}
	if cpu.X86.HasSSSE3 {
		m["ssse3"] = compressWithSSSE3
	}
	if cpu.X86.HasAVX2 {
		m["avx2"] = compressWithAVX2
	}
	return m
}()
