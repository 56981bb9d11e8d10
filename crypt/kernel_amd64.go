//go:build !purego

package crypt

import "golang.org/x/sys/cpu"

// kernelAESNI runs eight blocks at a time with the AES-NI instructions and
// advances tweaks in SSE registers: it needs nothing newer than Westmere.
var kernelAESNI = &xtsKernel{name: "aesni", schedule: true, encrypt: aesniEncrypt, decrypt: aesniDecrypt, tweaks: aesniTweaks}

// kernelVAES runs 16 blocks at a time with VAES on YMM registers and
// advances tweaks with VPCLMULQDQ: AVX2 CPUs with VAES (Intel Ice Lake and
// later, AMD Zen 3 and later).
var kernelVAES = &xtsKernel{name: "vaes", schedule: true, encrypt: vaesEncrypt, decrypt: vaesDecrypt, tweaks: aesniTweaks}

// hasVAES reports whether CPUID leaf 7 lists VAES and VPCLMULQDQ. x/sys/cpu
// reports them only together with AVX-512; HasAVX2 says the OS saves YMM
// state.
func hasVAES() bool {
	if max, _, _, _ := cpuid(0, 0); max < 7 {
		return false
	}
	_, _, ecx, _ := cpuid(7, 0)
	return ecx&(1<<9) != 0 && ecx&(1<<10) != 0
}

func init() {
	if cpu.X86.HasAES && cpu.X86.HasSSE2 {
		xtsKernels = append([]*xtsKernel{kernelAESNI}, xtsKernels...)
	}
	if cpu.X86.HasAES && cpu.X86.HasAVX2 && hasVAES() {
		xtsKernels = append([]*xtsKernel{kernelVAES}, xtsKernels...)
	}
}

func vaesEncrypt(k *xtsKey, dst, src, first []byte, sectorSize int, _ []byte) {
	n := len(src) / sectorSize
	if n == 0 {
		return
	}
	_, _ = dst[len(src)-1], first[n*blockSize-1]
	xtsEncryptVAES(&k.sched.enc[0], k.sched.rounds, &dst[0], &src[0], &first[0], n, sectorSize/blockSize)
}

func vaesDecrypt(k *xtsKey, dst, src, first []byte, sectorSize int, _ []byte) {
	n := len(src) / sectorSize
	if n == 0 {
		return
	}
	_, _ = dst[len(src)-1], first[n*blockSize-1]
	xtsDecryptVAES(&k.sched.dec[0], k.sched.rounds, &dst[0], &src[0], &first[0], n, sectorSize/blockSize)
}

// aesniTweaks encrypts the IVs four at a time with AES-NI.
func aesniTweaks(k *xtsKey, ivs []byte) {
	if n := len(ivs) / blockSize; n > 0 {
		ecbEncryptAESNI(&k.tweakSched.enc[0], k.tweakSched.rounds, &ivs[0], n)
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
