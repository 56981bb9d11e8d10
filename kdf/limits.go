package kdf

import (
	"errors"
	"fmt"
)

// ErrCost is the sentinel every *CostError matches: the parameters ask for
// more work or memory than the caller allows.
var ErrCost = errors.New("kdf cost above limit")

// Flags a command line offers to raise each limit; CostError.Flag holds one.
const (
	FlagMemory     = "--pbkdf-memory"
	FlagTime       = "--pbkdf-force-iterations"
	FlagThreads    = "--pbkdf-parallel"
	FlagIterations = "--pbkdf-force-iterations"
)

// Defaults of DefaultLimits, for parameters read from a header that may be
// hostile.
const (
	// DefaultMaxMemoryKiB is cryptsetup's maximum Argon2 memory, 4 GiB.
	DefaultMaxMemoryKiB = MaxArgon2MemoryKiB
	// DefaultMaxTime bounds the Argon2 time cost. cryptsetup's calibration
	// raises the time cost only once memory has reached its cap (1 GiB by
	// default), where one pass takes about a second, so its headers carry
	// single- or double-digit values; a header calibrated for 2 s with memory
	// forced down to 32 MiB gets ≈ 60–200. 1000 leaves a wide margin.
	DefaultMaxTime = 1000
	// DefaultMaxThreads bounds Argon2 lanes. cryptsetup never writes more than
	// 4; lanes cost little (each is a goroutine, memory is bounded
	// separately), so headers from other tools with up to 16 are read.
	DefaultMaxThreads = 16
	// DefaultMaxIterations bounds PBKDF2 iterations at 2^28. A 2 s
	// calibration on a fast SHA-NI core gives ≲ 2·10^7 for sha256; 2^28
	// is ≈ 90 s of sha256 here, instead of the 20 minutes 2^32-1 would take.
	DefaultMaxIterations = 1 << 28
	// DefaultMaxWorkKiB bounds Argon2 time × memory (KiB passes) at 64 GiB
	// passes: 16× cryptsetup's default class (4 passes over 1 GiB), ≈ 90 s of
	// CPU here. Without it a header could pair 4 GiB with time 1000.
	DefaultMaxWorkKiB = 64 * 1024 * 1024
)

// Limits caps the cost of parameters read from a header. A zero field means
// the DefaultLimits value for it.
type Limits struct {
	// MaxMemoryKiB caps Argon2 memory.
	MaxMemoryKiB uint32
	// MaxTime caps the Argon2 time cost.
	MaxTime uint32
	// MaxThreads caps Argon2 lanes.
	MaxThreads uint32
	// MaxIterations caps PBKDF2 iterations.
	MaxIterations uint32
	// MaxWorkKiB caps Argon2 time × memory in KiB. A command line that raises
	// MaxTime or MaxMemoryKiB on the user's request should raise it too,
	// e.g. with Allow.
	MaxWorkKiB uint64
}

// DefaultLimits returns the caps for parameters read from an untrusted
// header: Argon2 memory ≤ 4 GiB (cryptsetup's maximum), time ≤ 1000,
// threads ≤ 16, time × memory ≤ 64 GiB passes, PBKDF2 iterations ≤ 2^28.
// See the Default* constants for the reasoning.
func DefaultLimits() Limits {
	return Limits{
		MaxMemoryKiB:  DefaultMaxMemoryKiB,
		MaxTime:       DefaultMaxTime,
		MaxThreads:    DefaultMaxThreads,
		MaxIterations: DefaultMaxIterations,
		MaxWorkKiB:    DefaultMaxWorkKiB,
	}
}

// HostLimits is DefaultLimits with Argon2 memory further capped at this
// machine's physical memory, so a header that could only end in the OOM
// killer is refused with a CostError instead.
func HostLimits() Limits {
	l := DefaultLimits()
	if phys := physicalMemoryKiB(); phys > 0 && phys < uint64(l.MaxMemoryKiB) {
		l.MaxMemoryKiB = uint32(phys)
	}
	return l
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxMemoryKiB == 0 {
		l.MaxMemoryKiB = d.MaxMemoryKiB
	}
	if l.MaxTime == 0 {
		l.MaxTime = d.MaxTime
	}
	if l.MaxThreads == 0 {
		l.MaxThreads = d.MaxThreads
	}
	if l.MaxIterations == 0 {
		l.MaxIterations = d.MaxIterations
	}
	if l.MaxWorkKiB == 0 {
		l.MaxWorkKiB = d.MaxWorkKiB
	}
	return l
}

// Allow returns l (zero fields filled with defaults) raised just enough that
// p's cost passes, for a caller whose user explicitly accepted p's cost.
func (l Limits) Allow(p Params) Limits {
	l = l.withDefaults()
	switch p.Algorithm {
	case PBKDF2:
		l.MaxIterations = max(l.MaxIterations, p.Time)
	case Argon2i, Argon2id:
		l.MaxMemoryKiB = max(l.MaxMemoryKiB, p.MemoryKiB)
		l.MaxTime = max(l.MaxTime, p.Time)
		l.MaxThreads = max(l.MaxThreads, p.Threads)
		l.MaxWorkKiB = max(l.MaxWorkKiB, uint64(p.Time)*uint64(p.MemoryKiB))
	}
	return l
}

// CostError reports one parameter above its limit. It matches ErrCost with
// errors.Is. Its message names the value, the limit and the flag that
// raises the limit.
type CostError struct {
	// Field names the parameter: "memory", "time", "threads", "iterations"
	// or "work" (Argon2 time × memory).
	Field string
	// Value is the parameter's value (KiB for memory and work).
	Value uint64
	// Limit is the cap it exceeds.
	Limit uint64
	// Flag is the command-line flag that raises the cap.
	Flag string
}

func (e *CostError) Error() string {
	unit := ""
	switch e.Field {
	case "memory":
		unit = " KiB"
	case "work":
		unit = " KiB passes"
	}
	return fmt.Sprintf("kdf %s %d%s above the limit of %d%s (raise it with %s)",
		e.Field, e.Value, unit, e.Limit, unit, e.Flag)
}

// Is makes errors.Is(err, ErrCost) true.
func (e *CostError) Is(target error) bool { return target == ErrCost }

// Check reports whether p can run (an error wrapping ErrInvalidParams
// otherwise, see Validate) and stays within l (a *CostError otherwise).
// Zero fields of l take their DefaultLimits values.
func (p Params) Check(l Limits) error {
	if err := p.Validate(); err != nil {
		return err
	}
	l = l.withDefaults()
	if p.Algorithm == PBKDF2 {
		if p.Time > l.MaxIterations {
			return &CostError{Field: "iterations", Value: uint64(p.Time), Limit: uint64(l.MaxIterations), Flag: FlagIterations}
		}
		return nil
	}
	switch work := uint64(p.Time) * uint64(p.MemoryKiB); {
	case p.MemoryKiB > l.MaxMemoryKiB:
		return &CostError{Field: "memory", Value: uint64(p.MemoryKiB), Limit: uint64(l.MaxMemoryKiB), Flag: FlagMemory}
	case p.Threads > l.MaxThreads:
		return &CostError{Field: "threads", Value: uint64(p.Threads), Limit: uint64(l.MaxThreads), Flag: FlagThreads}
	case p.Time > l.MaxTime:
		return &CostError{Field: "time", Value: uint64(p.Time), Limit: uint64(l.MaxTime), Flag: FlagTime}
	case work > l.MaxWorkKiB:
		return &CostError{Field: "work", Value: work, Limit: l.MaxWorkKiB, Flag: FlagTime}
	}
	return nil
}

// CheckNew applies cryptsetup's rules for parameters forced for a new key
// slot (--pbkdf-force-iterations and friends, no benchmark): PBKDF2 needs at
// least MinPBKDF2Iterations; Argon2 needs time ≥ MinArgon2Time, memory in
// [MinArgon2MemoryKiB, MaxArgon2MemoryKiB] and 1–MaxArgon2Threads threads.
// Errors wrap ErrInvalidParams.
func (p Params) CheckNew() error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.Algorithm == PBKDF2 {
		if p.Time < MinPBKDF2Iterations {
			return fmt.Errorf("%w: pbkdf2 iterations %d below the minimum %d", ErrInvalidParams, p.Time, MinPBKDF2Iterations)
		}
		return nil
	}
	switch {
	case p.Time < MinArgon2Time:
		return fmt.Errorf("%w: %s time cost %d below the minimum %d", ErrInvalidParams, p.Algorithm, p.Time, MinArgon2Time)
	case p.MemoryKiB < MinArgon2MemoryKiB:
		return fmt.Errorf("%w: %s memory %d KiB below the minimum %d KiB", ErrInvalidParams, p.Algorithm, p.MemoryKiB, MinArgon2MemoryKiB)
	case p.Threads > MaxArgon2Threads:
		return fmt.Errorf("%w: %s threads %d above the maximum %d", ErrInvalidParams, p.Algorithm, p.Threads, MaxArgon2Threads)
	}
	return nil
}
