//go:build !amd64 || purego

package kdf

// compressors are the compression kernels this CPU runs, by name.
var compressors = map[string]func(out, x, y, tmp *argon2Block, xor bool){"selected": compressSelected}
