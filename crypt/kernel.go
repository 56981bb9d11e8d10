package crypt

import "os"

//go:generate go run ./internal/asmgen -out xts_amd64.s -stubs stubs_amd64.go -pkg crypt

// xtsKernel is one implementation of the XTS sector functions. encrypt and
// decrypt process len(src)/sectorSize whole sectors: first holds each
// sector's initial tweak (16 bytes per sector, already encrypted with the
// tweak key); table is scratch of at least len(src) bytes for kernels that
// want it. dst and src have equal length and are the same memory or
// disjoint.
type xtsKernel struct {
	name     string
	schedule bool // whether the kernel reads xtsKey.sched and xtsKey.tweakSched
	encrypt  func(k *xtsKey, dst, src, first []byte, sectorSize int, table []byte)
	decrypt  func(k *xtsKey, dst, src, first []byte, sectorSize int, table []byte)
	// tweaks encrypts the sectors' IVs in ivs (16 bytes each) in place with
	// the tweak key, into their initial tweaks.
	tweaks func(k *xtsKey, ivs []byte)
}

// kernelGo is the batched pure-Go kernel: it runs everywhere.
var kernelGo = &xtsKernel{name: "go", encrypt: xtsEncryptSectors, decrypt: xtsDecryptSectors, tweaks: encryptTweaksGo}

// encryptTweaksGo encrypts each 16-byte IV with crypto/aes.
func encryptTweaksGo(k *xtsKey, ivs []byte) {
	for o := 0; o+blockSize <= len(ivs); o += blockSize {
		k.tweak.Encrypt(ivs[o:o+blockSize], ivs[o:o+blockSize])
	}
}

// xtsKernels lists the kernels this CPU can run, fastest first; the last is
// kernelGo. Architecture files prepend theirs in init.
var xtsKernels = []*xtsKernel{kernelGo}

// KernelEnv names the environment variable that picks the XTS kernel New
// uses, by the name Cipher.Kernel reports ("vaes", "aesni" or "go"), for
// benchmarks and comparisons. It is read once, at start-up; a name this CPU
// cannot run, or an unknown one, leaves the fastest kernel selected (check
// Cipher.Kernel). The purego build tag leaves only "go".
const KernelEnv = "VOLCRYPT_XTS_KERNEL"

// kernelOverride is KernelEnv's value at start-up.
var kernelOverride = os.Getenv(KernelEnv)

// selectedKernel is the kernel New gives XTS ciphers: the one KernelEnv
// names if this CPU has it, else the fastest. Tests switch it to run every
// kernel.
var selectedKernel = func() *xtsKernel { return pickKernel(xtsKernels, kernelOverride) }

// pickKernel returns the kernel of kernels called name, or the first (the
// fastest) if none is.
func pickKernel(kernels []*xtsKernel, name string) *xtsKernel {
	for _, k := range kernels {
		if k.name == name {
			return k
		}
	}
	return kernels[0]
}

// Kernel names the implementation behind the XTS engine ("vaes", "aesni",
// "go"), or returns "" for other modes.
func (c *Cipher) Kernel() string {
	if c.engine != engineXTS || c.xtsKey.kernel == nil {
		return ""
	}
	return c.xtsKey.kernel.name
}
