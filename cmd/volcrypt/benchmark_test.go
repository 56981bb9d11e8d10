package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/progress"
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
	for _, args := range [][]string{
		{"--duration", "0s"},
		{"extra"},
		{"--only", "argon2"},
	} {
		r := volcrypt(t, "", append([]string{"benchmark"}, args...)...)
		require.Equal(t, 1, r.code, "%v: %s", args, r.stderr)
	}
}

// TestBenchmarkProgressJSON checks --progress-json: one start and one done
// line on standard error for every measurement, in order, while standard
// output keeps the one JSON document.
func TestBenchmarkProgressJSON(t *testing.T) {
	r := mustRun(t, "", "benchmark", "--json", "--progress-json", "--iter-time", "50", "--duration", "5ms")
	var rep benchmarkReport
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)

	var started, done []string
	open := ""
	for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var line progress.Line
		require.NoError(t, json.Unmarshal([]byte(l), &line), l)
		require.Equal(t, "benchmark", line.Task, l)
		switch line.Event {
		case "start":
			require.Empty(t, open, "%q starts before %q is done", line.Item, open)
			open = line.Item
			started = append(started, line.Item)
		case "done":
			require.Equal(t, open, line.Item, l)
			open = ""
			done = append(done, line.Item)
		case "progress":
			require.Equal(t, open, line.Item, l)
		default:
			t.Fatalf("unexpected line %s", l)
		}
	}
	require.Empty(t, open)
	require.Equal(t, started, done)
	want := []string{"pbkdf2-sha1", "pbkdf2-sha256", "pbkdf2-sha512", "argon2i", "argon2id",
		"aes-xts-plain64 256b 512", "aes-xts-plain64 256b 4096", "aes-xts-plain64 512b 512", "aes-xts-plain64 512b 4096"}
	require.Equal(t, want, started[:min(len(started), len(want))])
	require.Len(t, started, len(want)+len(rep.Ciphers)-4, "one task per dm-crypt measurement too")
}

// TestBenchmarkOnly checks the hidden --only flag scripts/bench uses.
func TestBenchmarkOnly(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ciphers, kdfs bool
	}{
		{"kdf", false, true},
		{"cipher", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, "", "benchmark", "--json", "--only", tc.name, "--iter-time", "50", "--duration", "5ms")
			var rep benchmarkReport
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
			require.Equal(t, tc.ciphers, len(rep.Ciphers) > 0, r.stdout)
			require.Equal(t, tc.kdfs, len(rep.KDFs) > 0, r.stdout)
		})
	}
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
