//go:build !purego

package crypt

import "golang.org/x/sys/cpu"

// kernelAESNI runs eight blocks at a time with the AES-NI instructions and
// advances tweaks in SSE registers: it needs nothing newer than Westmere.
var kernelAESNI = &xtsKernel{name: "aesni", schedule: true, encrypt: aesniEncrypt, decrypt: aesniDecrypt}

func init() {
	if cpu.X86.HasAES && cpu.X86.HasSSE2 {
		xtsKernels = append([]*xtsKernel{kernelAESNI}, xtsKernels...)
	}
}

func aesniEncrypt(k *xtsKey, dst, src, first []byte, sectorSize int, _ []byte) {
	n := len(src) / sectorSize
	if n == 0 {
		return
	}
	_, _ = dst[len(src)-1], first[n*blockSize-1] // bounds the assembly relies on
	xtsEncryptAESNI(&k.sched.enc[0], k.sched.rounds, &dst[0], &src[0], &first[0], n, sectorSize/blockSize)
}

func aesniDecrypt(k *xtsKey, dst, src, first []byte, sectorSize int, _ []byte) {
	n := len(src) / sectorSize
	if n == 0 {
		return
	}
	_, _ = dst[len(src)-1], first[n*blockSize-1]
	xtsDecryptAESNI(&k.sched.dec[0], k.sched.rounds, &dst[0], &src[0], &first[0], n, sectorSize/blockSize)
}
