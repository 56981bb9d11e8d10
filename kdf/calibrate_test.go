package kdf

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fastest runs p three times and returns the fastest wall-clock time.
func fastest(t *testing.T, p Params, keyLen int) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		k, err := Derive(p, []byte("pw"), []byte("saltsaltsaltsalt"), keyLen)
		d := time.Since(start)
		require.NoError(t, err)
		clear(k)
		best = min(best, d)
	}
	return best
}

// fastestCPU runs PBKDF2 p three times and returns the least CPU time of
// its thread, the clock PBKDF2 calibration uses.
func fastestCPU(t *testing.T, p Params, keyLen int) time.Duration {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best := time.Duration(1<<63 - 1)
	for range 3 {
		d, err := timePBKDF2(p, keyLen)
		require.NoError(t, err)
		best = min(best, d)
	}
	return best
}

// requireNear checks got against target within a loose ratio: the host is
// shared and noisy, so only gross errors (wrong units, no scaling) fail.
func requireNear(t *testing.T, target, got time.Duration) {
	t.Helper()
	require.Truef(t, near(target, got), "derivation took %v for a %v target (ratio %.2f)", got, target, float64(got)/float64(target))
}

func near(target, got time.Duration) bool {
	ratio := float64(got) / float64(target)
	return ratio > 1.0/3 && ratio < 3
}

func TestCalibrateArgon2(t *testing.T) {
	tests := []struct {
		name   string
		o      CalibrateOptions
		memCap bool // memory must end at its cap, time cost above the minimum
	}{
		{"argon2id grows memory", CalibrateOptions{Algorithm: Argon2id, TargetMs: 120, MaxMemoryKiB: 256 * 1024, Threads: 1, KeyLen: 32}, false},
		{"argon2i at the memory cap grows time", CalibrateOptions{Algorithm: Argon2i, TargetMs: 120, MaxMemoryKiB: 2048, Threads: 2, KeyLen: 64}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Wall-clock calibration on a loaded host can land far off
			// when the load changes; a real scaling error is off every time.
			const attempts = 3
			for attempt := 1; ; attempt++ {
				var calls int
				tc.o.Progress = func(Params, time.Duration) { calls++ }
				start := time.Now()
				p, err := Calibrate(context.Background(), tc.o)
				spent := time.Since(start)
				require.NoError(t, err)
				require.Positive(t, calls)
				require.Equal(t, tc.o.Algorithm, p.Algorithm)
				require.Equal(t, min(tc.o.Threads, uint32(runtime.NumCPU())), p.Threads)
				require.NoError(t, p.Check(DefaultLimits()))
				require.LessOrEqual(t, p.MemoryKiB, tc.o.MaxMemoryKiB)
				require.GreaterOrEqual(t, p.Time, uint32(MinArgon2Time))
				if tc.memCap {
					require.Equal(t, tc.o.MaxMemoryKiB, p.MemoryKiB)
					require.Greater(t, p.Time, uint32(MinArgon2Time))
				} else {
					require.Equal(t, uint32(MinArgon2Time), p.Time)
				}
				target := time.Duration(tc.o.TargetMs) * time.Millisecond
				took := fastest(t, p, tc.o.KeyLen)
				t.Logf("attempt %d: %v in %v of calibration, then %v to derive", attempt, p, spent, took)
				if near(target, took) || attempt == attempts {
					requireNear(t, target, took)
					return
				}
			}
		})
	}
}

func TestCalibratePBKDF2(t *testing.T) {
	target := 60 * time.Millisecond
	p, err := Calibrate(context.Background(), CalibrateOptions{Algorithm: PBKDF2, Hash: "sha256", TargetMs: 60, KeyLen: 32})
	require.NoError(t, err)
	require.Equal(t, Params{Algorithm: PBKDF2, Hash: "sha256", Time: p.Time}, p)
	require.GreaterOrEqual(t, p.Time, uint32(MinPBKDF2Iterations))
	requireNear(t, target, fastestCPU(t, p, 32))

	// A longer key means more PBKDF2 blocks and so fewer iterations.
	p2, err := Calibrate(context.Background(), CalibrateOptions{Algorithm: PBKDF2, Hash: "sha256", TargetMs: 60, KeyLen: 96})
	require.NoError(t, err)
	require.Less(t, p2.Time, p.Time)
}

func TestDigestIterations(t *testing.T) {
	it, err := DigestIterations(context.Background(), "sha256", 32)
	require.NoError(t, err)
	require.GreaterOrEqual(t, it, uint32(MinPBKDF2Iterations))
	requireNear(t, DigestTargetMs*time.Millisecond, fastestCPU(t, Params{Algorithm: PBKDF2, Hash: "sha256", Time: it}, 32))

	_, err = DigestIterations(context.Background(), "whirlpool", 32)
	require.ErrorIs(t, err, ErrUnsupportedHash)
}

func TestCalibrateErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Calibrate(ctx, CalibrateOptions{Algorithm: Argon2id, TargetMs: 50, MaxMemoryKiB: 1024})
	require.ErrorIs(t, err, context.Canceled)
	_, err = Calibrate(ctx, CalibrateOptions{Algorithm: PBKDF2, TargetMs: 50})
	require.ErrorIs(t, err, context.Canceled)

	tests := []struct {
		name string
		o    CalibrateOptions
	}{
		{"unknown algorithm", CalibrateOptions{Algorithm: "scrypt"}},
		{"memory above 4 GiB", CalibrateOptions{Algorithm: Argon2id, MaxMemoryKiB: MaxArgon2MemoryKiB + 1}},
		{"memory below the minimum", CalibrateOptions{Algorithm: Argon2id, MaxMemoryKiB: 16}},
		{"tiny key", CalibrateOptions{Algorithm: Argon2id, KeyLen: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Calibrate(context.Background(), tc.o)
			require.ErrorIs(t, err, ErrInvalidParams)
		})
	}
	_, err = Calibrate(context.Background(), CalibrateOptions{Algorithm: PBKDF2, Hash: "sm3"})
	require.ErrorIs(t, err, ErrUnsupportedHash)
}

func TestNextArgon2(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name           string
		t, m           uint32
		took           time.Duration
		wantT, wantM   uint32
		wantContinue   bool
		minMem, maxMem uint32
	}{
		{"too fast: memory grows", 4, 1000, 1000 * ms, 4, 2000, true, 32, 4000},
		{"much too fast: memory to its cap, then time", 4, 1000, 250 * ms, 8, 4000, true, 32, 4000},
		{"at the cap: time grows", 4, 4000, 500 * ms, 16, 4000, true, 32, 4000},
		{"too slow: time falls first", 16, 4000, 4000 * ms, 8, 4000, true, 32, 4000},
		{"too slow at minimum time: memory falls", 4, 4000, 4000 * ms, 4, 2000, true, 32, 4000},
		{"cannot go below the minimum memory", 4, 32, 4000 * ms, 4, 32, false, 32, 4000},
		{"nothing to change", 4, 4000, 1900 * ms, 4, 4000, false, 32, 4000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Params{Algorithm: Argon2id, Time: tc.t, MemoryKiB: tc.m, Threads: 1}
			cont := nextArgon2(&p, tc.minMem, tc.maxMem, tc.took, 2000*ms)
			require.Equal(t, tc.wantContinue, cont)
			require.Equal(t, tc.wantT, p.Time)
			require.Equal(t, tc.wantM, p.MemoryKiB)
		})
	}
}
