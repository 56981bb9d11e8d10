package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// secretsIn returns which of the secrets text contains, in any case.
func secretsIn(text string, secrets map[string]string) []string {
	var found []string
	lower := strings.ToLower(text)
	for name, s := range secrets {
		if s != "" && strings.Contains(lower, strings.ToLower(s)) {
			found = append(found, name)
		}
	}
	return found
}

// TestSecretsStayOutOfArgvEnvAndLogs runs volcrypt commands with --debug and
// checks that no passphrase or volume key shows in their output; and, from
// inside an escrow command volcrypt runs while it holds the keys, that none
// is in the child's argv or environment or in volcrypt's own, and that
// volcrypt holds locked memory (mlock) at that moment.
func TestSecretsStayOutOfArgvEnvAndLogs(t *testing.T) {
	cryptsetupBin(t)
	const pass, newPass = "hygiene-passphrase-7d1f", "hygiene-newpass-93ac"
	img, kf := cheapVolume(t, pass)
	nkf := keyFile(t, newPass)
	vk := cryptsetupVolumeKey(t, img, kf)
	secrets := map[string]string{"passphrase": pass, "new passphrase": newPass, "volume key (hex)": vk}
	raw, err := hex.DecodeString(vk)
	require.NoError(t, err)
	secrets["volume key (raw)"] = string(raw)

	for _, args := range [][]string{
		append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", nkf}, cheap...), img),
		{"open", "--test", "--key-file", kf, img},
		{"open", "--test", "--key-file", nkf, img},
		{"open", "--test", "--key-file", keyFile(t, "wrong"), img},
		{"key", "list", img},
		{"dump", img},
		{"repair", img},
		append(append([]string{"key", "change", "--key-file", nkf, "--new-key-file", nkf}, cheap...), img),
		{"key", "remove", "--key-file", nkf, img},
	} {
		t.Run(strings.Join(args[:2], "-"), func(t *testing.T) {
			r := volcrypt(t, "", append([]string{"--debug"}, args...)...)
			require.Empty(t, secretsIn(r.stdout+r.stderr, secrets), "volcrypt %v: %s%s", args, r.stdout, r.stderr)
		})
	}
	// A passphrase typed on standard input is not echoed either.
	r := volcrypt(t, pass+"\n", "--debug", "open", "--test", img)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, secretsIn(r.stdout+r.stderr, secrets))

	dir := t.TempDir()
	script := `cat > @@/stdin; tr '\0' '\n' < /proc/self/environ > @@/env; tr '\0' '\n' < /proc/self/cmdline > @@/cmdline; ` +
		`tr '\0' '\n' < /proc/$PPID/environ > @@/parent-env; tr '\0' '\n' < /proc/$PPID/cmdline > @@/parent-cmdline; ` +
		`cat /proc/$PPID/status > @@/parent-status`
	script = strings.ReplaceAll(script, "@@/", dir+"/")
	r = volcrypt(t, "", "enroll", "recovery", "--key-file", kf, "--escrow-command", script, img)
	require.Equal(t, 0, r.code, r.stderr)
	var rec struct {
		RecoveryPassword string `json:"recovery_password"`
	}
	in, err := os.ReadFile(filepath.Join(dir, "stdin"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(in, &rec), "%s", in)
	require.NotEmpty(t, rec.RecoveryPassword)
	secrets["recovery password"] = rec.RecoveryPassword
	for _, name := range []string{"env", "cmdline", "parent-env", "parent-cmdline"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.NotEmpty(t, b)
		require.Empty(t, secretsIn(string(b), secrets), "%s: %s", name, b)
	}
	require.Empty(t, secretsIn(r.stderr, secrets), "stderr of enroll: %s", r.stderr)
	status, err := os.ReadFile(filepath.Join(dir, "parent-status"))
	require.NoError(t, err)
	m := regexp.MustCompile(`VmLck:\s+(\d+) kB`).FindStringSubmatch(string(status))
	require.NotNil(t, m, "%s", status)
	locked, _ := strconv.Atoi(m[1])
	require.Greater(t, locked, 0, "volcrypt holds its keys in mlocked memory")
}

// TestProcessNotDumpable: volcrypt turns off core dumps and same-user
// ptrace for itself.
func TestProcessNotDumpable(t *testing.T) {
	hardenProcess()
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	require.NoError(t, err)
	require.Equal(t, 0, d)
	require.NoError(t, unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0))
}
