package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEncryptCommand encrypts an ext4 image in place through the CLI; the
// passphrase then opens it in both tools, and a second run reports that
// there is nothing left to do.
func TestEncryptCommand(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	img := image(t, 48<<20)
	require.NoError(t, os.Truncate(img, 32<<20))
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "hello"), []byte("hello, world\n"), 0o644))
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, os.Truncate(img, 48<<20))
	kf := keyFile(t, "encrypt me")

	r := volcrypt(t, "", append(append([]string{"encrypt", "--key-file", kf}, cheap...), img)...)
	require.Equal(t, 1, r.code, "no --reduce-device-size: %s", r.stderr)
	r = volcrypt(t, "", append(append([]string{"encrypt", "--key-file", kf, "--reduce-device-size", "16m"}, cheap...), img)...)
	require.Equal(t, 1, r.code, "without -q and a terminal: %s", r.stderr)

	r = mustRun(t, "", append(append([]string{"encrypt", "-q", "--key-file", kf, "--reduce-device-size", "16m"}, cheap...), img)...)
	require.Contains(t, r.stderr, "100.0%")
	mustRun(t, "", "open", "--test", "--key-file", kf, img)
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, img)
	r = volcrypt(t, "", append(append([]string{"encrypt", "-q", "--key-file", kf, "--reduce-device-size", "16m"}, cheap...), img)...)
	require.Equal(t, 1, r.code, "already encrypted: %s", r.stderr)
}
