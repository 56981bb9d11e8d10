package volume

import (
	"context"
	"fmt"
	"runtime"

	"github.com/volcrypt/volcrypt/kdf"
)

// KDFOptions choose a new key slot's KDF, with cryptsetup's meaning: zero
// fields take defaults, and without ForceIterations the cost is calibrated
// to IterTimeMs on this machine.
type KDFOptions struct {
	Algorithm       string // kdf.Argon2id (default), kdf.Argon2i or kdf.PBKDF2
	Hash            string // PBKDF2 hash, default sha256
	IterTimeMs      uint32 // calibration target, default 2000
	MemoryKiB       uint32 // Argon2 memory (a cap when calibrating), default 1 GiB
	Parallel        uint32 // Argon2 threads, default min(4, CPUs)
	ForceIterations uint32 // PBKDF2 iterations or Argon2 time cost: no calibration
}

// Resolve turns the options into KDF parameters, calibrating when needed.
func (o KDFOptions) Resolve(ctx context.Context, keyLen int) (kdf.Params, error) {
	if o.Algorithm == "" {
		o.Algorithm = kdf.Argon2id
	}
	if o.Hash == "" {
		o.Hash = kdf.DefaultHash
	}
	if o.ForceIterations > 0 {
		p := kdf.Params{Algorithm: o.Algorithm, Time: o.ForceIterations}
		switch o.Algorithm {
		case kdf.PBKDF2:
			p.Hash = o.Hash
		case kdf.Argon2i, kdf.Argon2id:
			p.MemoryKiB = o.MemoryKiB
			if p.MemoryKiB == 0 {
				p.MemoryKiB = kdf.DefaultCalibrateMemoryKiB
			}
			p.Threads = o.Parallel
			if p.Threads == 0 {
				p.Threads = uint32(min(kdf.DefaultThreads, runtime.NumCPU()))
			}
		default:
			return kdf.Params{}, fmt.Errorf("%w: unknown PBKDF %q (use argon2id, argon2i or pbkdf2)", ErrInvalidParams, o.Algorithm)
		}
		if err := p.CheckNew(); err != nil {
			return kdf.Params{}, err
		}
		return p, nil
	}
	return kdf.Calibrate(ctx, kdf.CalibrateOptions{
		Algorithm: o.Algorithm, Hash: o.Hash, TargetMs: o.IterTimeMs,
		MaxMemoryKiB: o.MemoryKiB, Threads: o.Parallel, KeyLen: keyLen,
	})
}
