package crypt

import (
	"crypto/aes"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/xts"
)

// TestMain runs the package's tests once per XTS kernel this CPU has, so
// every test of the engine covers every kernel, not only the selected one.
// Passes after the first skip the slow cryptsetup interop tests (the
// engine's output is checked against x/crypto in every pass). Benchmarks
// run once: they compare the kernels themselves.
func TestMain(m *testing.M) {
	code := m.Run()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		os.Exit(code)
	}
	best := selectedKernel
	defer func() { selectedKernel = best }()
	for _, k := range xtsKernels[1:] {
		fmt.Printf("=== kernel %s\n", k.name)
		selectedKernel = func() *xtsKernel { return k }
		if f := flag.Lookup("test.skip"); f != nil && f.Value.String() == "" {
			_ = f.Value.Set("^TestCryptsetup")
		}
		if c := m.Run(); c != 0 {
			code = c
		}
	}
	os.Exit(code)
}

// TestKernelSelected checks New hands out the selected kernel and that the
// list ends with the pure-Go one, which a purego build uses alone.
func TestKernelSelected(t *testing.T) {
	c, err := New("aes-xts-plain64", make([]byte, 64), 4096)
	require.NoError(t, err)
	require.Equal(t, selectedKernel().name, c.Kernel())
	require.Same(t, kernelGo, xtsKernels[len(xtsKernels)-1])
	c2, err := New("aes-cbc-essiv:sha256", make([]byte, 32), 512)
	require.NoError(t, err)
	require.Empty(t, c2.Kernel())
}

// TestPickKernel checks how KernelEnv's value picks a kernel: by name when
// this CPU has it, else the fastest.
func TestPickKernel(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		want      *xtsKernel
	}{
		{"unset", "", xtsKernels[0]},
		{"go", "go", kernelGo},
		{"fastest by name", xtsKernels[0].name, xtsKernels[0]},
		{"unknown", "avx1024", xtsKernels[0]},
		{"case matters", "GO", xtsKernels[0]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Same(t, tc.want, pickKernel(xtsKernels, tc.env))
		})
	}
	if len(xtsKernels) > 2 {
		require.Same(t, xtsKernels[1], pickKernel(xtsKernels, xtsKernels[1].name))
	}
}

// TestKernelsMatchXCrypto runs every kernel directly (not only the selected
// one) on random keys, data and IVs, every sector size from 512 to 4096
// and every key size, both directions, in place and out of place, against
// golang.org/x/crypto/xts.
func TestKernelsMatchXCrypto(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, k := range xtsKernels {
		for _, keySize := range []int{32, 48, 64} {
			for _, ss := range sectorSizes {
				t.Run(fmt.Sprintf("%s/key%d/sector%d", k.name, keySize*8, ss), func(t *testing.T) {
					key := randBytes(t, keySize)
					ref, err := xts.NewCipher(aes.NewCipher, key)
					require.NoError(t, err)
					c, err := newWithKernel("aes-xts-plain64", key, ss, k)
					require.NoError(t, err)
					require.Equal(t, k.name, c.Kernel())
					for range 4 {
						sectors := 1 + rng.IntN(2*batchBytes/ss)
						iv := rng.Uint64()
						plain := randBytes(t, sectors*ss)
						want := make([]byte, len(plain))
						for i := range sectors {
							ref.Encrypt(want[i*ss:(i+1)*ss], plain[i*ss:(i+1)*ss], iv+uint64(i*ss/512))
						}
						got := make([]byte, len(plain))
						require.NoError(t, c.Encrypt(got, plain, iv))
						require.Equal(t, want, got)
						buf := append([]byte(nil), plain...)
						require.NoError(t, c.Encrypt(buf, buf, iv))
						require.Equal(t, want, buf)
						require.NoError(t, c.Decrypt(got, want, iv))
						require.Equal(t, plain, got)
						require.NoError(t, c.Decrypt(buf, buf, iv))
						require.Equal(t, plain, buf)
					}
				})
			}
		}
	}
}

// TestScheduleWiped checks Wipe clears the expanded key of assembly kernels.
func TestScheduleWiped(t *testing.T) {
	key := randBytes(t, 64)
	c, err := newWithKernel("aes-xts-plain64", key, 512, kernelGo)
	require.NoError(t, err)
	c.xtsKey.sched.expand(key[:32])
	c.xtsKey.tweakSched.expand(key[32:])
	k := &c.xtsKey
	require.NotEqual(t, aesSchedule{}, k.sched)
	require.NotEqual(t, aesSchedule{}, k.tweakSched)
	c.Wipe()
	require.Equal(t, aesSchedule{}, k.sched)
	require.Equal(t, aesSchedule{}, k.tweakSched)
}
