package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// benchmarkJSON runs volcrypt benchmark --json at small sizes and checks the
// shape every consumer relies on: the four userspace aes-xts-plain64
// measurements, PBKDF2 for three hashes and both Argon2 variants, all
// positive.
func benchmarkJSON(t *testing.T, extra ...string) benchmarkReport {
	t.Helper()
	args := append([]string{"benchmark", "--json", "--iter-time", "50", "--duration", "5ms"}, extra...)
	r := mustRun(t, "", args...)
	var rep benchmarkReport
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rep), r.stdout)

	var pbkdf2, argon2 []string
	for _, k := range rep.KDFs {
		switch k.PBKDF {
		case "pbkdf2":
			pbkdf2 = append(pbkdf2, k.Hash)
			require.Positive(t, k.IterationsPerS, k.Hash)
			require.Zero(t, k.Ms)
		case "argon2i", "argon2id":
			argon2 = append(argon2, k.PBKDF)
			require.GreaterOrEqual(t, k.Time, uint32(4), k.PBKDF)
			require.Positive(t, k.MemoryKiB, k.PBKDF)
			require.Positive(t, k.Threads, k.PBKDF)
			require.Positive(t, k.Ms, k.PBKDF)
		default:
			t.Fatalf("unexpected kdf %q", k.PBKDF)
		}
	}
	require.Equal(t, []string{"sha1", "sha256", "sha512"}, pbkdf2)
	require.Equal(t, []string{"argon2i", "argon2id"}, argon2)

	type point struct {
		engine        string
		keyBits, size int
	}
	var got []point
	for _, c := range rep.Ciphers {
		require.Equal(t, "aes-xts-plain64", c.Cipher)
		require.Positive(t, c.EncryptMiB, "%+v", c)
		require.Positive(t, c.DecryptMiB, "%+v", c)
		if c.Engine == "userspace" {
			require.NotEmpty(t, c.Kernel)
		}
		got = append(got, point{c.Engine, c.KeyBits, c.SectorSize})
	}
	want := []point{{"userspace", 256, 512}, {"userspace", 256, 4096}, {"userspace", 512, 512}, {"userspace", 512, 4096}}
	require.Equal(t, want, got[:min(len(got), 4)])
	return rep
}

func TestBenchmarkJSON(t *testing.T) {
	rep := benchmarkJSON(t)
	if len(rep.Ciphers) == 4 {
		require.Len(t, rep.Skipped, 1)
		require.Contains(t, rep.Skipped[0], "dm-crypt: skipped")
	}
}

func TestBenchmarkText(t *testing.T) {
	r := mustRun(t, "", "benchmark", "--iter-time", "50", "--duration", "5ms")
	require.Contains(t, r.stdout, "PBKDF2-sha256")
	require.Contains(t, r.stdout, "argon2id")
	require.Contains(t, r.stdout, "aes-xts-plain64")
	require.Regexp(t, `(?m)^\s+aes-xts-plain64\s+512b\s+4096\s+[0-9.]+ MiB/s\s+[0-9.]+ MiB/s\s+userspace \(\w+\)$`, r.stdout)
}

func TestBenchmarkBadFlags(t *testing.T) {
	r := volcrypt(t, "", "benchmark", "--duration", "0s")
	require.Equal(t, 1, r.code, r.stderr)
	r = volcrypt(t, "", "benchmark", "extra")
	require.Equal(t, 1, r.code, r.stderr)
}

// TestVMBenchmarkDMCrypt measures dm-crypt through a real mapping in the VM.
func TestVMBenchmarkDMCrypt(t *testing.T) {
	inVM(t)
	rep := benchmarkJSON(t, "--dm-size", "4194304")
	require.Empty(t, rep.Skipped)
	var dmc int
	for _, c := range rep.Ciphers {
		if c.Engine == "dm-crypt" {
			dmc++
		}
	}
	require.Equal(t, 4, dmc)
	require.Empty(t, loopDevices(t))
}
