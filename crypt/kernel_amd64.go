//go:build !purego

package crypt

import "golang.org/x/sys/cpu"

// kernelAESNI runs eight blocks at a time with the AES-NI instructions and
// advances tweaks in general-purpose registers, leaving the vector units to
// AES: it needs nothing newer than Westmere.
var kernelAESNI = asmKernel("aesni", xtsEncryptAESNI, xtsDecryptAESNI)

// kernelVAES runs 16 blocks at a time with VAES on YMM registers and
// advances tweaks with VPCLMULQDQ: AVX2 CPUs with VAES (Intel Ice Lake and
// later, AMD Zen 3 and later).
var kernelVAES = asmKernel("vaes", xtsEncryptVAES, xtsDecryptVAES)

func init() {
	if cpu.X86.HasAES && cpu.X86.HasSSE2 {
		xtsKernels = append([]*xtsKernel{kernelAESNI}, xtsKernels...)
	}
	if cpu.X86.HasAES && cpu.X86.HasAVX2 && hasVAES() {
		xtsKernels = append([]*xtsKernel{kernelVAES}, xtsKernels...)
	}
}

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

// sectorsAsm is the signature of the generated sector kernels.
type sectorsAsm func(rk *byte, rounds int, dst, src, tweaks *byte, sectors, blocks int)

// asmKernel wraps a pair of generated sector kernels.
func asmKernel(name string, enc, dec sectorsAsm) *xtsKernel {
	return &xtsKernel{
		name:     name,
		schedule: true,
		encrypt: func(k *xtsKey, dst, src, first []byte, sectorSize int, _ []byte) {
			runSectors(enc, &k.sched.enc, k.sched.rounds, dst, src, first, sectorSize)
		},
		decrypt: func(k *xtsKey, dst, src, first []byte, sectorSize int, _ []byte) {
			runSectors(dec, &k.sched.dec, k.sched.rounds, dst, src, first, sectorSize)
		},
		tweaks: aesniTweaks,
	}
}

// runSectors checks the bounds the assembly relies on and runs f over the
// whole sectors of src.
func runSectors(f sectorsAsm, rk *[maxRoundKeys]byte, rounds int, dst, src, first []byte, sectorSize int) {
	n := len(src) / sectorSize
	if n == 0 {
		return
	}
	_, _ = dst[len(src)-1], first[n*blockSize-1]
	f(&rk[0], rounds, &dst[0], &src[0], &first[0], n, sectorSize/blockSize)
}

// aesniTweaks encrypts the IVs four at a time with AES-NI.
func aesniTweaks(k *xtsKey, ivs []byte) {
	if n := len(ivs) / blockSize; n > 0 {
		ecbEncryptAESNI(&k.tweakSched.enc[0], k.tweakSched.rounds, &ivs[0], n)
	}
}
