package kdf

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Calibration defaults, as cryptsetup's for LUKS2.
const (
	// DefaultTargetMs is the time a new key slot's KDF should take.
	DefaultTargetMs = 2000
	// DefaultCalibrateMemoryKiB is the most Argon2 memory calibration
	// chooses unless told otherwise (1 GiB).
	DefaultCalibrateMemoryKiB = 1024 * 1024
	// DefaultThreads is the Argon2 parallelism calibration starts from,
	// reduced to the number of CPUs.
	DefaultThreads = 4
	// DefaultHash is the PBKDF2 hash when none is named.
	DefaultHash = "sha256"
	// DefaultKeyLen is the key length calibration assumes when none is
	// given: a 512-bit aes-xts-plain64 volume key.
	DefaultKeyLen = 64
	// DigestTargetMs is the time cryptsetup gives a LUKS2 digest's PBKDF2.
	DigestTargetMs = 125
)

// Acceptance window and sampling, after cryptsetup's pbkdf_check.c.
const (
	percentAtLeast = 95
	percentAtMost  = 110
	// After relaxAfter full-length rounds a noisy host is given a wider
	// window, and the search stops once phase2Budget × target has passed.
	relaxAfter          = 3
	percentRelaxedLeast = 85
	percentRelaxedMost  = 120
	phase2Budget        = 2
	fastSamples         = 3  // short samples per step while searching; the minimum counts
	maxFullRounds       = 8  // full-length Argon2 measurements at most
	maxSearchSteps      = 40 // guards every growth loop
)

// CalibrateOptions say what to calibrate. Zero fields take defaults.
type CalibrateOptions struct {
	// Algorithm is PBKDF2, Argon2i or Argon2id (default Argon2id).
	Algorithm string
	// Hash is the PBKDF2 hash (default DefaultHash); Argon2 ignores it.
	Hash string
	// TargetMs is the wall-clock time the KDF should take (default
	// DefaultTargetMs).
	TargetMs uint32
	// MaxMemoryKiB caps Argon2 memory (default 1 GiB, at most 4 GiB). Like
	// cryptsetup, calibration never uses more than half of physical memory,
	// nor, without swap, more than half of free memory.
	MaxMemoryKiB uint32
	// Threads is the Argon2 parallelism (default 4). Like cryptsetup it is
	// reduced to MaxArgon2Threads and to the number of usable CPUs.
	Threads uint32
	// KeyLen is the length of the key the KDF will produce (default
	// DefaultKeyLen); PBKDF2's cost grows with it beyond the hash size.
	KeyLen int
	// Progress, when set, is called after each measurement with the
	// parameters measured and the time they took.
	Progress func(p Params, took time.Duration)
}

// Calibrate measures this machine and returns parameters whose derivation
// takes about o.TargetMs, as cryptsetup does for a new key slot.
//
// Argon2 is timed by the wall clock. Time cost starts at MinArgon2Time and
// memory grows until a derivation takes the target (95–110 % accepted); only
// once memory reaches its cap does the time cost grow. Short samples come in
// threes and the fastest counts, since noise only ever slows a run down; a
// full-length run that comes out too slow is repeated once. Full-length runs
// stop after about twice the target (the window widens to 85–120 % after
// three), and the last extrapolation is then returned, so calibration takes
// about two to four times the target. PBKDF2 is timed by the CPU time of its
// thread and scaled from samples of at most 100 ms; the
// result is at least MinPBKDF2Iterations.
//
// The context is checked between measurements; one running derivation is
// not interrupted. Very large targets can give parameters above
// DefaultLimits.
func Calibrate(ctx context.Context, o CalibrateOptions) (Params, error) {
	if o.Algorithm == "" {
		o.Algorithm = Argon2id
	}
	if o.TargetMs == 0 {
		o.TargetMs = DefaultTargetMs
	}
	if o.KeyLen == 0 {
		o.KeyLen = DefaultKeyLen
	}
	if o.KeyLen < minArgon2KeyLen || o.KeyLen > MaxKeyLen {
		return Params{}, fmt.Errorf("calibrate: %w: key length %d", ErrInvalidParams, o.KeyLen)
	}
	target := time.Duration(o.TargetMs) * time.Millisecond
	switch o.Algorithm {
	case PBKDF2:
		if o.Hash == "" {
			o.Hash = DefaultHash
		}
		it, err := calibratePBKDF2(ctx, o.Hash, o.KeyLen, target, o.Progress)
		if err != nil {
			return Params{}, fmt.Errorf("calibrate pbkdf2-%s: %w", o.Hash, err)
		}
		return Params{Algorithm: PBKDF2, Hash: o.Hash, Time: it}, nil
	case Argon2i, Argon2id:
		threads := o.Threads
		if threads == 0 {
			threads = DefaultThreads
		}
		threads = min(threads, MaxArgon2Threads, uint32(max(runtime.NumCPU(), 1)))
		maxMem := o.MaxMemoryKiB
		if maxMem == 0 {
			maxMem = DefaultCalibrateMemoryKiB
		}
		if maxMem > MaxArgon2MemoryKiB {
			return Params{}, fmt.Errorf("calibrate %s: %w: maximum memory %d KiB above %d KiB",
				o.Algorithm, ErrInvalidParams, maxMem, MaxArgon2MemoryKiB)
		}
		maxMem = uint32(min(uint64(maxMem), adjustedMemoryKiB()))
		p, err := calibrateArgon2(ctx, o.Algorithm, threads, maxMem, o.KeyLen, target, o.Progress)
		if err != nil {
			return Params{}, fmt.Errorf("calibrate %s: %w", o.Algorithm, err)
		}
		return p, nil
	default:
		return Params{}, fmt.Errorf("calibrate: %w: unknown algorithm %q", ErrInvalidParams, clip(o.Algorithm))
	}
}

// DigestIterations returns the PBKDF2 iteration count for a LUKS2 digest
// with the named hash: about DigestTargetMs worth, at least
// MinPBKDF2Iterations. keyLen is the volume key's length, which cryptsetup
// benchmarks with.
func DigestIterations(ctx context.Context, hash string, keyLen int) (uint32, error) {
	if keyLen <= 0 || keyLen > MaxKeyLen {
		return 0, fmt.Errorf("digest iterations: %w: key length %d", ErrInvalidParams, keyLen)
	}
	it, err := calibratePBKDF2(ctx, hash, keyLen, DigestTargetMs*time.Millisecond, nil)
	if err != nil {
		return 0, fmt.Errorf("digest iterations pbkdf2-%s: %w", hash, err)
	}
	return it, nil
}

var (
	benchPassphrase = []byte("foo")
	benchSalt       = []byte("0123456789abcdef0123456789abcdef")
)

// threadCPUTime is the CPU time the calling OS thread has used.
func threadCPUTime() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("read thread cpu time: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// timePBKDF2 runs PBKDF2 once and returns the CPU time it took. The caller
// has locked its goroutine to its thread.
func timePBKDF2(p Params, keyLen int) (time.Duration, error) {
	start, err := threadCPUTime()
	if err != nil {
		return 0, err
	}
	key, err := Derive(p, benchPassphrase, benchSalt, keyLen)
	if err != nil {
		return 0, err
	}
	clear(key)
	end, err := threadCPUTime()
	if err != nil {
		return 0, err
	}
	return end - start, nil
}

func calibratePBKDF2(ctx context.Context, hash string, keyLen int, target time.Duration, progress func(Params, time.Duration)) (uint32, error) {
	if _, err := HashFunc(hash); err != nil {
		return 0, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	sample := min(max(target/16, 15*time.Millisecond), 100*time.Millisecond)
	p := Params{Algorithm: PBKDF2, Hash: hash, Time: 1024}
	measure := func() (time.Duration, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		d, err := timePBKDF2(p, keyLen)
		if err == nil && progress != nil {
			progress(p, d)
		}
		return d, err
	}

	// Grow the iteration count until one run takes a sample's length.
	var took time.Duration
	for step := 0; ; step++ {
		d, err := measure()
		if err != nil {
			return 0, err
		}
		took = d
		if took >= sample {
			break
		}
		if step >= maxSearchSteps {
			return 0, fmt.Errorf("iterations do not reach %v", sample)
		}
		factor := 16.0
		if took > 0 {
			factor = min(max(1.2*float64(sample)/float64(took), 2), 16)
		}
		next := float64(p.Time) * factor
		if next > math.MaxUint32 {
			return 0, fmt.Errorf("iterations overflow while measuring")
		}
		p.Time = uint32(next)
	}
	// Two more samples at that count; the fastest counts.
	for range fastSamples - 1 {
		d, err := measure()
		if err != nil {
			return 0, err
		}
		took = min(took, d)
	}
	it := float64(p.Time) * float64(target) / float64(took)
	if it > math.MaxUint32 {
		return 0, fmt.Errorf("%v needs more than 2^32-1 iterations", target)
	}
	return max(uint32(it), MinPBKDF2Iterations), nil
}

type argon2Bench struct {
	ctx      context.Context
	p        Params
	keyLen   int
	progress func(Params, time.Duration)
}

// measure runs Argon2 with b.p up to samples times and returns the fastest
// wall-clock time; a run below stopBelow, or the deadline passing, ends the
// series early.
func (b *argon2Bench) measure(samples int, stopBelow time.Duration, deadline time.Time) (time.Duration, error) {
	best := time.Duration(math.MaxInt64)
	for i := range samples {
		if i > 0 && time.Now().After(deadline) {
			break
		}
		if err := b.ctx.Err(); err != nil {
			return 0, err
		}
		if b.p.MemoryKiB >= 64*1024 {
			runtime.GC() // free the last run's memory first, outside the clock
		}
		start := time.Now()
		key, err := Derive(b.p, benchPassphrase, benchSalt, b.keyLen)
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		clear(key)
		if b.progress != nil {
			b.progress(b.p, d)
		}
		best = min(best, d)
		if d < stopBelow {
			break
		}
	}
	return best, nil
}

// scale returns v × num / den, saturating at 2^32-1.
func scale(v uint32, num, den float64) uint64 {
	r := float64(v) * num / max(den, 1)
	if r >= math.MaxUint32 {
		return math.MaxUint32
	}
	return uint64(r)
}

func calibrateArgon2(ctx context.Context, alg string, threads, maxMem uint32, keyLen int, target time.Duration, progress func(Params, time.Duration)) (Params, error) {
	minMem := max(uint32(MinArgon2MemoryKiB), 8*threads)
	if maxMem < minMem {
		return Params{}, fmt.Errorf("%w: maximum memory %d KiB below the minimum %d KiB", ErrInvalidParams, maxMem, minMem)
	}
	b := &argon2Bench{ctx: ctx, keyLen: keyLen, progress: progress,
		p: Params{Algorithm: alg, Time: MinArgon2Time, MemoryKiB: minMem, Threads: threads}}

	// 1. Grow memory (then time, at the memory cap) until a short run takes
	// minRun (a quarter of the target, at most 250 ms as in cryptsetup); the
	// fastest of three runs counts.
	minRun := min(max(target/4, 10*time.Millisecond), 250*time.Millisecond)
	tiny := minRun / 25
	var took time.Duration
	for step := 0; ; step++ {
		d, err := b.measure(fastSamples, minRun, time.Now().Add(target))
		if err != nil {
			return Params{}, err
		}
		took = d
		if took >= minRun || step >= maxSearchSteps {
			break
		}
		grow := func(v uint32) uint64 {
			if took < tiny {
				return uint64(v) * 16
			}
			return scale(v, float64(minRun), float64(took))
		}
		if b.p.MemoryKiB == maxMem {
			next := min(grow(b.p.Time), math.MaxUint32)
			if uint32(next) == b.p.Time {
				break
			}
			b.p.Time = uint32(next)
		} else {
			next := min(grow(b.p.MemoryKiB), uint64(maxMem))
			if uint32(next) == b.p.MemoryKiB {
				break
			}
			b.p.MemoryKiB = uint32(next)
		}
	}

	// 2. Extrapolate to the target and measure at full length until a run
	// lands in the window. A run that comes out too slow is repeated once,
	// since noise only slows runs down. Small memory sizes run in cache, so
	// the extrapolation from step 1 overshoots and needs a few rounds; after
	// relaxAfter rounds the window widens, and once the budget is spent the
	// last extrapolation is returned unmeasured.
	atLeast, atMost := target*percentAtLeast/100, target*percentAtMost/100
	budget := time.Now().Add(phase2Budget * target)
	for round := 0; round < maxFullRounds; round++ {
		if round == relaxAfter {
			atLeast, atMost = target*percentRelaxedLeast/100, target*percentRelaxedMost/100
		}
		if !nextArgon2(&b.p, minMem, maxMem, took, target) {
			break
		}
		if time.Now().After(budget) {
			break
		}
		d, err := b.measure(2, atMost+1, budget)
		if err != nil {
			return Params{}, err
		}
		took = d
		if took >= atLeast && took <= atMost {
			break
		}
	}
	return b.p, nil
}

// nextArgon2 moves p's time and memory cost towards target, given that p
// took took. Going down it lowers time first, then memory; going up it
// raises memory first, then time. It reports false when there is nothing
// left to change.
func nextArgon2(p *Params, minMem, maxMem uint32, took, target time.Duration) bool {
	oldT, oldM := p.Time, p.MemoryKiB
	if took > target {
		t := scale(p.Time, float64(target), float64(took))
		if t >= MinArgon2Time {
			p.Time = uint32(t)
		} else {
			m := scale(p.MemoryKiB, float64(p.Time)*float64(target), MinArgon2Time*float64(took))
			p.Time = MinArgon2Time
			p.MemoryKiB = uint32(max(m, uint64(minMem)))
			if m < uint64(minMem) {
				return oldT != p.Time || oldM != p.MemoryKiB
			}
		}
	} else {
		m := scale(p.MemoryKiB, float64(target), float64(took))
		switch {
		case m > uint64(maxMem):
			t := scale(p.Time, float64(p.MemoryKiB)*float64(target), float64(maxMem)*float64(took))
			p.MemoryKiB = maxMem
			p.Time = uint32(min(max(t, MinArgon2Time), math.MaxUint32))
		case m < uint64(minMem):
			p.MemoryKiB = minMem
		default:
			p.MemoryKiB = uint32(m)
		}
	}
	return oldT != p.Time || oldM != p.MemoryKiB
}
