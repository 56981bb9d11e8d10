// Package crypt encrypts and decrypts disk sectors exactly as Linux dm-crypt
// does, in user space. It serves the LUKS2 key-slot areas and gives a
// plaintext io.ReaderAt/io.WriterAt view of an encrypted data segment where
// no device-mapper is available.
//
// Units: a sector is SectorSize bytes (512 to 4096); IV sector numbers are
// always counted in 512-byte units, as dm-crypt does without the
// iv_large_sectors option, which is how cryptsetup sets up LUKS2 volumes.
// A 4096-byte sector is one cipher unit (one XTS data unit, one CBC chain)
// whose IV is the 512-byte sector number of its first byte.
//
// The XTS engine picks its kernel at run time (Cipher.Kernel names it): on
// amd64 a VAES/VPCLMULQDQ kernel on YMM registers, else an AES-NI kernel
// (both generated with avo by internal/asmgen), else batched pure Go,
// which the purego build tag forces. The VOLCRYPT_XTS_KERNEL environment
// variable (KernelEnv) picks one by name, for benchmarks.
package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/volcrypt/volcrypt/internal/secret"
)

var (
	// ErrSectorSize means a sector size is not a power of two from 512 to 4096.
	ErrSectorSize = errors.New("invalid sector size")
	// ErrKeySize means a key's length does not fit the cipher specification.
	ErrKeySize = errors.New("invalid key size")
	// ErrLength means a buffer is not a whole number of sectors, or the
	// destination is shorter than the source.
	ErrLength = errors.New("invalid buffer length")
	// ErrOverlap means dst and src overlap without being the same memory.
	ErrOverlap = errors.New("buffers overlap inexactly")
	// ErrWiped means the Cipher was used after Wipe.
	ErrWiped = errors.New("cipher has been wiped")
)

const (
	blockSize     = aes.BlockSize
	ivSectorBytes = 512
	minSectorSize = 512
	maxSectorSize = 4096
)

type engine uint8

const (
	engineXTS engine = iota + 1
	engineCBC
	engineECB
	engineNull
)

type ivKind uint8

const (
	ivKindNone ivKind = iota
	ivKindPlain64
	ivKindPlain64BE
	ivKindPlain
	ivKindNull
	ivKindESSIV
)

// Cipher encrypts and decrypts whole sectors as dm-crypt does. Encrypt and
// Decrypt are safe for concurrent use; Wipe must not run concurrently with
// them. Calls of 256 KiB or more are spread over GOMAXPROCS goroutines.
type Cipher struct {
	spec       Spec
	sectorSize int
	engine     engine
	iv         ivKind

	data   cipher.Block // the data key; for XTS its first half
	tweak  cipher.Block // XTS: the second half of the key
	xtsKey xtsKey       // XTS: the data key as the sector kernels take it
	essiv  cipher.Block // ESSIV: AES keyed with SHA-256(key)

	scratch sync.Pool // *scratch, so calls allocate nothing in steady state
	wiped   atomic.Bool
}

// New returns a Cipher for spec (as in a LUKS2 "encryption" field, e.g.
// "aes-xts-plain64") with the given key and sector size in bytes (a power of
// two from 512 to 4096). New copies what it needs from key into cipher key
// schedules; the caller keeps ownership of key and should wipe it.
func New(spec string, key []byte, sectorSize int) (*Cipher, error) {
	return newWithKernel(spec, key, sectorSize, selectedKernel())
}

// newWithKernel is New with the XTS kernel chosen by the caller.
func newWithKernel(spec string, key []byte, sectorSize int, kernel *xtsKernel) (*Cipher, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	if sectorSize < minSectorSize || sectorSize > maxSectorSize || sectorSize&(sectorSize-1) != 0 {
		return nil, fmt.Errorf("cipher %s: sector size %d: %w", spec, sectorSize, ErrSectorSize)
	}
	if !s.ValidKeySize(len(key)) {
		return nil, fmt.Errorf("cipher %s: %d-byte key, want one of %v bytes: %w", spec, len(key), s.KeySizes(), ErrKeySize)
	}
	c := &Cipher{spec: s, sectorSize: sectorSize}
	c.scratch.New = func() any { return new(scratch) }

	switch s.IV {
	case ivPlain64:
		c.iv = ivKindPlain64
	case ivPlain64BE:
		c.iv = ivKindPlain64BE
	case ivPlain:
		c.iv = ivKindPlain
	case ivNull:
		c.iv = ivKindNull
	case ivESSIV:
		c.iv = ivKindESSIV
		salt := sha256.Sum256(key)
		c.essiv, err = aes.NewCipher(salt[:])
		secret.Wipe(salt[:])
		if err != nil {
			return nil, fmt.Errorf("cipher %s: essiv key: %w", spec, err)
		}
	}

	switch {
	case s.Cipher == cipherNull:
		c.engine = engineNull
		return c, nil
	case s.Mode == modeXTS:
		c.engine = engineXTS
		half := len(key) / 2
		if c.data, err = aes.NewCipher(key[:half]); err == nil {
			c.tweak, err = aes.NewCipher(key[half:])
		}
	case s.Mode == modeCBC:
		c.engine = engineCBC
		c.data, err = aes.NewCipher(key)
	default:
		c.engine = engineECB
		c.data, err = aes.NewCipher(key)
	}
	if err != nil {
		c.Wipe()
		return nil, fmt.Errorf("cipher %s: %w", spec, err)
	}
	c.xtsKey.data = c.data
	if c.engine == engineXTS {
		c.xtsKey.kernel = kernel
		c.xtsKey.tweak = c.tweak
		if c.xtsKey.kernel.schedule {
			c.xtsKey.sched.expand(key[:len(key)/2])
			c.xtsKey.tweakSched.expand(key[len(key)/2:])
		}
	}
	return c, nil
}

// Spec returns the parsed cipher specification.
func (c *Cipher) Spec() Spec { return c.spec }

// SectorSize returns the sector size in bytes.
func (c *Cipher) SectorSize() int { return c.sectorSize }

// Encrypt encrypts src into dst, which may be the same memory but must not
// overlap it otherwise. len(src) must be a multiple of SectorSize and dst at
// least as long. iv is the IV sector number, in 512-byte units, of the first
// sector; each further sector adds SectorSize/512. IV arithmetic wraps
// modulo 2^64 like dm-crypt's.
func (c *Cipher) Encrypt(dst, src []byte, iv uint64) error {
	if err := c.check("encrypt", dst, src); err != nil {
		return err
	}
	c.crypt(dst[:len(src)], src, iv, false)
	return nil
}

// Decrypt decrypts src into dst under the same rules as Encrypt.
func (c *Cipher) Decrypt(dst, src []byte, iv uint64) error {
	if err := c.check("decrypt", dst, src); err != nil {
		return err
	}
	c.crypt(dst[:len(src)], src, iv, true)
	return nil
}

// DecryptSerial is Decrypt run entirely on the calling goroutine, never
// spread over others, whatever the size: for a caller that guards the call
// itself, such as against faults on mapped memory (debug.SetPanicOnFault
// covers one goroutine only).
func (c *Cipher) DecryptSerial(dst, src []byte, iv uint64) error {
	if err := c.check("decrypt", dst, src); err != nil {
		return err
	}
	c.cryptSerial(dst[:len(src)], src, iv, true)
	return nil
}

// Wipe zeroes the cipher's key schedules as far as the standard library's
// AES implementation allows (it holds them in plain Go memory, which Wipe
// clears in place) and drops them. The Cipher cannot be used afterwards.
// Wipe is idempotent.
func (c *Cipher) Wipe() {
	if c == nil || c.wiped.Swap(true) {
		return
	}
	for _, b := range []cipher.Block{c.data, c.tweak, c.essiv} {
		wipeBlock(b)
	}
	c.data, c.tweak, c.essiv = nil, nil, nil
	c.xtsKey = xtsKey{} // overwrites the expanded schedule in place
}

func (c *Cipher) check(op string, dst, src []byte) error {
	if c == nil || c.wiped.Load() {
		return fmt.Errorf("%s: %w", op, ErrWiped)
	}
	if len(src)%c.sectorSize != 0 {
		return fmt.Errorf("%s: %d bytes is not a whole number of %d-byte sectors: %w", op, len(src), c.sectorSize, ErrLength)
	}
	if len(dst) < len(src) {
		return fmt.Errorf("%s: destination of %d bytes for %d bytes: %w", op, len(dst), len(src), ErrLength)
	}
	if inexactOverlap(dst[:len(src)], src) {
		return fmt.Errorf("%s: %w", op, ErrOverlap)
	}
	return nil
}

// parallelMin is the call size from which crypt spreads the work over
// GOMAXPROCS goroutines; below it, starting them costs more than it gains.
const parallelMin = 256 << 10

// crypt runs the engine on validated buffers of equal length, splitting
// large calls on sector boundaries over the available CPUs. Sectors are
// independent, so the split changes nothing in the output.
func (c *Cipher) crypt(dst, src []byte, iv uint64, decrypt bool) {
	c.cryptWorkers(dst, src, iv, decrypt, runtime.GOMAXPROCS(0))
}

// parallelChunk is how much of a large call a worker takes at a time. The
// caller's goroutine starts on the work at once while the others wake up,
// which can take a good part of a millisecond on a virtual machine, so the
// work is shared out in chunks as the workers come rather than in equal
// parts up front. It is a multiple of every sector size.
const parallelChunk = 64 << 10

// cryptWorkers is crypt on at most workers goroutines.
func (c *Cipher) cryptWorkers(dst, src []byte, iv uint64, decrypt bool, workers int) {
	if workers < 2 || len(src) < parallelMin || c.engine == engineNull {
		c.cryptSerial(dst, src, iv, decrypt)
		return
	}
	var next atomic.Int64
	run := func() {
		for {
			off := int(next.Add(parallelChunk)) - parallelChunk
			if off >= len(src) {
				return
			}
			end := min(off+parallelChunk, len(src))
			c.cryptSerial(dst[off:end], src[off:end], iv+uint64(off/ivSectorBytes), decrypt)
		}
	}
	var wg sync.WaitGroup
	for range min(workers, len(src)/parallelChunk) - 1 {
		wg.Go(run)
	}
	run()
	wg.Wait()
}

// cryptSerial runs the engine on the calling goroutine.
func (c *Cipher) cryptSerial(dst, src []byte, iv uint64, decrypt bool) {
	if len(src) == 0 {
		return
	}
	switch c.engine {
	case engineXTS:
		c.xts(dst, src, iv, decrypt)
	case engineCBC:
		c.cbc(dst, src, iv, decrypt)
	case engineECB:
		ecb(c.data, dst, src, decrypt)
	case engineNull:
		copy(dst, src)
	}
}

// sectorIV writes the IV of the sector numbered sector (512-byte units) into
// iv, as dm-crypt's IV generators do for a 16-byte IV.
func (c *Cipher) sectorIV(iv *[blockSize]byte, sector uint64) {
	*iv = [blockSize]byte{}
	switch c.iv {
	case ivKindPlain64:
		binary.LittleEndian.PutUint64(iv[:8], sector)
	case ivKindPlain:
		binary.LittleEndian.PutUint32(iv[:4], uint32(sector))
	case ivKindPlain64BE:
		binary.BigEndian.PutUint64(iv[blockSize-8:], sector)
	case ivKindESSIV:
		binary.LittleEndian.PutUint64(iv[:8], sector)
		c.essiv.Encrypt(iv[:], iv[:])
	}
}

// inexactOverlap reports whether x and y share memory without starting at
// the same address.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	xs := uintptr(unsafe.Pointer(&x[0]))
	ys := uintptr(unsafe.Pointer(&y[0]))
	return xs < ys+uintptr(len(y)) && ys < xs+uintptr(len(x))
}
