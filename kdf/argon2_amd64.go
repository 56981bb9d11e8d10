//go:build !purego

package kdf

import "golang.org/x/sys/cpu"

//go:generate go run ./internal/asmgen -out argon2_amd64.s -stubs argon2_stubs_amd64.go -pkg kdf

func init() {
	if cpu.X86.HasAVX2 {
		argon2Vector = true
		compress = func(out, x, y, tmp *argon2Block, xor bool) {
			compressAVX2((*[argon2Words]uint64)(out), (*[argon2Words]uint64)(x), (*[argon2Words]uint64)(y), (*[argon2Words]uint64)(tmp), xor)
		}
	}
}
