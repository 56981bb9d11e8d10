package kdf

import (
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckRefusesEachLimit(t *testing.T) {
	l := Limits{MaxMemoryKiB: 1 << 20, MaxTime: 10, MaxThreads: 4, MaxIterations: 1 << 20, MaxWorkKiB: 8 << 20}
	tests := []struct {
		name   string
		p      Params
		field  string
		value  uint64
		limit  uint64
		flag   string
		inText string
	}{
		{"memory", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 1<<20 + 1, Threads: 1}, "memory", 1<<20 + 1, 1 << 20, FlagMemory, "--pbkdf-memory"},
		{"threads", Params{Algorithm: Argon2i, Time: 4, MemoryKiB: 1 << 16, Threads: 5}, "threads", 5, 4, FlagThreads, "--pbkdf-parallel"},
		{"time", Params{Algorithm: Argon2id, Time: 11, MemoryKiB: 1 << 10, Threads: 1}, "time", 11, 10, FlagTime, "--pbkdf-force-iterations"},
		{"work", Params{Algorithm: Argon2id, Time: 9, MemoryKiB: 1 << 20, Threads: 1}, "work", 9 << 20, 8 << 20, FlagTime, "--pbkdf-force-iterations"},
		{"iterations", Params{Algorithm: PBKDF2, Hash: "sha256", Time: 1<<20 + 1}, "iterations", 1<<20 + 1, 1 << 20, FlagIterations, "--pbkdf-force-iterations"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Check(l)
			require.ErrorIs(t, err, ErrCost)
			require.NotErrorIs(t, err, ErrInvalidParams)
			var ce *CostError
			require.True(t, errors.As(err, &ce))
			require.Equal(t, tc.field, ce.Field)
			require.Equal(t, tc.value, ce.Value)
			require.Equal(t, tc.limit, ce.Limit)
			require.Equal(t, tc.flag, ce.Flag)
			require.Contains(t, err.Error(), tc.inText)
			require.Contains(t, err.Error(), strconv.FormatUint(tc.value, 10))
			require.Contains(t, err.Error(), strconv.FormatUint(tc.limit, 10))

			// Allow raises exactly what is needed.
			require.NoError(t, tc.p.Check(l.Allow(tc.p)))
		})
	}
}

func TestCheckAtLimitsPasses(t *testing.T) {
	l := Limits{MaxMemoryKiB: 1 << 20, MaxTime: 8, MaxThreads: 4, MaxIterations: 1 << 20, MaxWorkKiB: 8 << 20}
	require.NoError(t, Params{Algorithm: Argon2id, Time: 8, MemoryKiB: 1 << 20, Threads: 4}.Check(l))
	require.NoError(t, Params{Algorithm: PBKDF2, Hash: "sha512", Time: 1 << 20}.Check(l))
}

func TestDefaultLimits(t *testing.T) {
	d := DefaultLimits()
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"cryptsetup default class", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 1 << 20, Threads: 4}, true},
		{"cryptsetup maximum memory", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: MaxArgon2MemoryKiB, Threads: 4}, true},
		{"test-class argon2", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 32768, Threads: 1}, true},
		{"memory-starved header", Params{Algorithm: Argon2i, Time: 200, MemoryKiB: 32768, Threads: 4}, true},
		{"pbkdf2 2 s on a fast core", Params{Algorithm: PBKDF2, Hash: "sha256", Time: 20_000_000}, true},
		{"4 GiB with time 1000", Params{Algorithm: Argon2id, Time: 1000, MemoryKiB: MaxArgon2MemoryKiB, Threads: 4}, false},
		{"time 2^32-1", Params{Algorithm: Argon2id, Time: 1<<32 - 1, MemoryKiB: 32, Threads: 1}, false},
		{"17 threads", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 1 << 20, Threads: 17}, false},
		{"pbkdf2 2^32-1", Params{Algorithm: PBKDF2, Hash: "sha256", Time: 1<<32 - 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Check(d)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrCost)
		})
	}
	// The zero Limits means the defaults, never "unlimited".
	require.ErrorIs(t, Params{Algorithm: PBKDF2, Hash: "sha256", Time: 1<<32 - 1}.Check(Limits{}), ErrCost)
	require.LessOrEqual(t, HostLimits().MaxMemoryKiB, d.MaxMemoryKiB)
}

func TestCheckInvalid(t *testing.T) {
	tests := []struct {
		name string
		p    Params
	}{
		{"zero value", Params{}},
		{"unknown algorithm", Params{Algorithm: "bcrypt", Time: 10}},
		{"zero time", Params{Algorithm: Argon2id, MemoryKiB: 1024, Threads: 1}},
		{"zero iterations", Params{Algorithm: PBKDF2, Hash: "sha1"}},
		{"memory below 8 KiB per thread", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 15, Threads: 2}},
		{"unknown hash", Params{Algorithm: PBKDF2, Hash: "md4", Time: 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Check(DefaultLimits())
			require.ErrorIs(t, err, ErrInvalidParams)
			require.NotErrorIs(t, err, ErrCost)
		})
	}
}

func TestCheckNew(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"pbkdf2 1000", Params{Algorithm: PBKDF2, Hash: "sha256", Time: 1000}, true},
		{"pbkdf2 999", Params{Algorithm: PBKDF2, Hash: "sha256", Time: 999}, false},
		{"argon2 test class", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 32768, Threads: 1}, true},
		{"argon2 minimum", Params{Algorithm: Argon2i, Time: 4, MemoryKiB: 32, Threads: 4}, true},
		{"argon2 time 3", Params{Algorithm: Argon2id, Time: 3, MemoryKiB: 32768, Threads: 1}, false},
		{"argon2 memory 31", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 31, Threads: 1}, false},
		{"argon2 5 threads", Params{Algorithm: Argon2id, Time: 4, MemoryKiB: 32768, Threads: 5}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.CheckNew()
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidParams)
		})
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("argon2id", "", uint32(4), uint32(1<<20), uint32(4))
	f.Add("argon2i", "", uint32(1<<32-1), uint32(1<<32-1), uint32(1<<32-1))
	f.Add("pbkdf2", "sha256", uint32(1000), uint32(0), uint32(0))
	f.Add("pbkdf2", "whirlpool", uint32(0), uint32(7), uint32(0))
	f.Add("", "", uint32(0), uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, alg, hash string, tm, mem, threads uint32) {
		p := Params{Algorithm: alg, Hash: hash, Time: tm, MemoryKiB: mem, Threads: threads}
		_ = p.String()
		err := p.Check(DefaultLimits())
		if err == nil {
			// Whatever passes the default limits must be runnable.
			require.NoError(t, p.Validate())
			require.LessOrEqual(t, uint64(p.Time)*uint64(p.MemoryKiB), uint64(DefaultMaxWorkKiB))
			return
		}
		require.True(t, errors.Is(err, ErrCost) != errors.Is(err, ErrInvalidParams), "error %v is neither or both", err)
		_ = p.CheckNew()
		_ = p.Check(Limits{}.Allow(p))
	})
}
