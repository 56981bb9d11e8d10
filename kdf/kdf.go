// Package kdf derives LUKS2 key-slot and digest keys from passphrases with
// PBKDF2, Argon2i and Argon2id, bounds the cost a header may demand, and
// calibrates parameters for new key slots the way cryptsetup does.
//
// Params read from a header must pass Params.Check with a Limits value before
// Derive is called: a hostile header can otherwise ask for gigabytes of
// memory or hours of work.
package kdf

import (
	"crypto/pbkdf2"
	"errors"
	"fmt"
	"math"

	"golang.org/x/crypto/argon2"
)

// Algorithm names, spelled as LUKS2 headers and cryptsetup spell them.
const (
	PBKDF2   = "pbkdf2"
	Argon2i  = "argon2i"
	Argon2id = "argon2id"
)

// Bounds taken from cryptsetup (lib/crypto_backend/pbkdf_check.c,
// crypt_pbkdf_get_limits) and from the Argon2 specification.
const (
	// MinPBKDF2Iterations is the least PBKDF2 iteration count cryptsetup
	// accepts for a new key slot or digest (NIST SP 800-132).
	MinPBKDF2Iterations = 1000
	// MinArgon2Time is the least Argon2 time cost cryptsetup uses for a new
	// key slot.
	MinArgon2Time = 4
	// MinArgon2MemoryKiB is the least Argon2 memory cost cryptsetup accepts
	// for a new key slot; Argon2 itself also needs 8 KiB per lane.
	MinArgon2MemoryKiB = 32
	// MaxArgon2MemoryKiB is the largest Argon2 memory cost cryptsetup
	// accepts (4 GiB). Derive refuses anything above it.
	MaxArgon2MemoryKiB = 4 * 1024 * 1024
	// MaxArgon2Threads is the largest Argon2 parallelism cryptsetup writes
	// into a new key slot.
	MaxArgon2Threads = 4
	// maxLanes is what golang.org/x/crypto/argon2 can compute (uint8).
	maxLanes = math.MaxUint8
	// minArgon2SaltLen and minArgon2KeyLen are the reference
	// implementation's minimum salt and output lengths.
	minArgon2SaltLen = 8
	minArgon2KeyLen  = 4
	// MaxKeyLen bounds the key length Derive produces, far above any key
	// LUKS uses, so a header cannot make it allocate gigabytes.
	MaxKeyLen = 64 * 1024
)

// ErrInvalidParams reports parameters no KDF can run with: an unknown
// algorithm, a zero cost, Argon2 memory below 8 KiB per lane, and so on.
var ErrInvalidParams = errors.New("invalid kdf parameters")

// Params are the parameters of one key derivation, as stored in a LUKS2 key
// slot or digest.
type Params struct {
	// Algorithm is PBKDF2, Argon2i or Argon2id.
	Algorithm string
	// Hash is PBKDF2's hash, named as cryptsetup names it ("sha256",
	// "sha512", "sha3-256", "ripemd160", ...); see HashFunc. Argon2 ignores
	// it.
	Hash string
	// Time is PBKDF2's iteration count or Argon2's time cost (passes).
	Time uint32
	// MemoryKiB is Argon2's memory cost in KiB; zero for PBKDF2.
	MemoryKiB uint32
	// Threads is Argon2's parallelism (lanes, LUKS2 "cpus"); zero for
	// PBKDF2.
	Threads uint32
}

// String describes p without any secret, for logs and error messages.
func (p Params) String() string {
	if p.Algorithm == PBKDF2 {
		return fmt.Sprintf("pbkdf2-%s, %d iterations", clip(p.Hash), p.Time)
	}
	return fmt.Sprintf("%s, time %d, memory %d KiB, %d threads", clip(p.Algorithm), p.Time, p.MemoryKiB, p.Threads)
}

// IsArgon2 reports whether p names one of the Argon2 variants.
func (p Params) IsArgon2() bool {
	return p.Algorithm == Argon2i || p.Algorithm == Argon2id
}

// clip shortens a name read from a header before it goes into a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Validate reports, wrapping ErrInvalidParams, whether p cannot be run at
// all. It does not judge the cost; Check does both.
func (p Params) Validate() error {
	switch p.Algorithm {
	case PBKDF2:
		if _, err := HashFunc(p.Hash); err != nil {
			return fmt.Errorf("%w: pbkdf2: %w", ErrInvalidParams, err)
		}
		if p.Time == 0 {
			return fmt.Errorf("%w: pbkdf2 iterations are zero", ErrInvalidParams)
		}
		if p.MemoryKiB != 0 || p.Threads != 0 {
			return fmt.Errorf("%w: pbkdf2 takes no memory or threads", ErrInvalidParams)
		}
	case Argon2i, Argon2id:
		if p.Time == 0 {
			return fmt.Errorf("%w: %s time cost is zero", ErrInvalidParams, p.Algorithm)
		}
		if p.Threads == 0 {
			return fmt.Errorf("%w: %s threads are zero", ErrInvalidParams, p.Algorithm)
		}
		if p.Threads > maxLanes {
			return fmt.Errorf("%w: %s threads %d above the supported %d", ErrInvalidParams, p.Algorithm, p.Threads, maxLanes)
		}
		if p.MemoryKiB < 8*p.Threads {
			return fmt.Errorf("%w: %s memory %d KiB below 8 KiB per thread (%d threads)",
				ErrInvalidParams, p.Algorithm, p.MemoryKiB, p.Threads)
		}
		if p.MemoryKiB > MaxArgon2MemoryKiB {
			return fmt.Errorf("%w: %s memory %d KiB above the LUKS2 maximum %d KiB",
				ErrInvalidParams, p.Algorithm, p.MemoryKiB, MaxArgon2MemoryKiB)
		}
	case "":
		return fmt.Errorf("%w: no algorithm", ErrInvalidParams)
	default:
		return fmt.Errorf("%w: unknown algorithm %q", ErrInvalidParams, clip(p.Algorithm))
	}
	return nil
}

// Derive runs the KDF described by p over passphrase and salt and returns
// keyLen bytes. The caller wipes the result (secret.Wipe). Derive refuses
// invalid parameters (ErrInvalidParams) but does not apply Limits: call
// p.Check first for parameters read from a header.
//
// Argon2 runs on this package's own implementation (argon2.go), whose
// memory is unmapped when the key is out, where it has a vector kernel for
// the CPU, and on golang.org/x/crypto/argon2 elsewhere. x/crypto's Argon2
// and the standard library's PBKDF2 do not let their internal state be
// wiped; that memory is left to the garbage collector.
func Derive(p Params, passphrase, salt []byte, keyLen int) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	if keyLen <= 0 || keyLen > MaxKeyLen {
		return nil, fmt.Errorf("derive key: %w: key length %d", ErrInvalidParams, keyLen)
	}
	switch p.Algorithm {
	case PBKDF2:
		h, _ := HashFunc(p.Hash) // checked by Validate
		if uint64(p.Time) > math.MaxInt {
			return nil, fmt.Errorf("derive key: %w: pbkdf2 iterations %d", ErrInvalidParams, p.Time)
		}
		// The standard library's PBKDF2 returns errors where x/crypto's
		// wrapper of it panics (FIPS 140-only mode, key length).
		key, err := pbkdf2.Key(h, string(passphrase), salt, int(p.Time), keyLen)
		if err != nil {
			return nil, fmt.Errorf("derive key: pbkdf2-%s: %w", p.Hash, err)
		}
		return key, nil
	default: // Argon2i, Argon2id
		if len(salt) < minArgon2SaltLen {
			return nil, fmt.Errorf("derive key: %w: %s salt of %d bytes, need at least %d",
				ErrInvalidParams, p.Algorithm, len(salt), minArgon2SaltLen)
		}
		if keyLen < minArgon2KeyLen {
			return nil, fmt.Errorf("derive key: %w: %s key length %d, need at least %d",
				ErrInvalidParams, p.Algorithm, keyLen, minArgon2KeyLen)
		}
		typ := argon2TypeID
		if p.Algorithm == Argon2i {
			typ = argon2TypeI
		}
		if !argon2Vector {
			// Without a vector kernel, x/crypto's SSE code is faster.
			if typ == argon2TypeI {
				return argon2.Key(passphrase, salt, p.Time, p.MemoryKiB, uint8(p.Threads), uint32(keyLen)), nil
			}
			return argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, uint8(p.Threads), uint32(keyLen)), nil
		}
		key, err := argon2Key(typ, passphrase, salt, p.Time, p.MemoryKiB, p.Threads, uint32(keyLen))
		if err != nil {
			return nil, fmt.Errorf("derive key: %w", err)
		}
		return key, nil
	}
}
