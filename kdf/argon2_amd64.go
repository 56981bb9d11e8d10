//go:build !purego

package kdf

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out argon2_amd64.s -stubs argon2_stubs_amd64.go -pkg kdf

func init() {
	if cpu.X86.HasSSSE3 {
		argon2Vector = true
		compress = compressWithSSSE3
	}
	if cpu.X86.HasAVX2 {
		argon2Vector = true
		compress = compressWithAVX2
	}
}

// compressWithSSSE3 is compress with two words per XMM register.
func compressWithSSSE3(out, x, y, tmp *argon2Block, xor bool) {
	compressSSSE3((*[argon2Words]uint64)(out), (*[argon2Words]uint64)(x), (*[argon2Words]uint64)(y), (*[argon2Words]uint64)(tmp), xor)
}

// compressWithAVX2 is compress with four words per YMM register.
func compressWithAVX2(out, x, y, tmp *argon2Block, xor bool) {
	compressAVX2((*[argon2Words]uint64)(out), (*[argon2Words]uint64)(x), (*[argon2Words]uint64)(y), (*[argon2Words]uint64)(tmp), xor)
}
