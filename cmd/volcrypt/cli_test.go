package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The CLI tests run the real binary, built once, against image files, with
// the real cryptsetup as the oracle where it is installed.

// binary is the test binary itself: with VOLCRYPT_TEST_AS_CLI=1 in its
// environment it runs as volcrypt, so the tests need no separate build and
// run unchanged inside the VM.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv("VOLCRYPT_TEST_AS_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	binary = os.Args[0]
	os.Exit(m.Run())
}

// cheap KDF flags: real key slots, minimal cost.
var cheap = []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

type result struct {
	stdout, stderr string
	code           int
}

func volcrypt(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "VOLCRYPT_TEST_AS_CLI=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{out.String(), errb.String(), code}
}

func mustRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := volcrypt(t, stdin, args...)
	require.Equal(t, 0, r.code, "volcrypt %v: %s", args, r.stderr)
	return r
}

func cryptsetupBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed: the interop oracle is missing (apt-get install cryptsetup-bin)")
	}
	return p
}

func cryptsetup(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(cryptsetupBin(t), args...).CombinedOutput()
	return string(out), err
}

func mustCryptsetup(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cryptsetup(t, args...)
	require.NoError(t, err, "cryptsetup %v: %s", args, out)
	return out
}

func image(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	require.NoError(t, os.Truncate(p, size))
	return p
}

func keyFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

var mkRE = regexp.MustCompile(`(?s)MK dump:\s*(([0-9a-f]{2}\s*)+)`)

func cryptsetupVolumeKey(t *testing.T, img, kf string) string {
	t.Helper()
	out := mustCryptsetup(t, "luksDump", "--dump-volume-key", "-q", "--key-file", kf, img)
	m := mkRE.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	return strings.Join(strings.Fields(m[1]), "")
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestFormatOpensWithCryptsetup(t *testing.T) {
	cryptsetupBin(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults-pbkdf2", cheap},
		{"argon2id", []string{"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "2"}},
		{"argon2i-sector512-256bit", []string{"--pbkdf", "argon2i", "--pbkdf-memory", "16384", "--pbkdf-force-iterations", "4", "--sector-size", "512", "--key-size", "256"}},
		{"metadata-64k-slot7", append([]string{"--luks2-metadata-size", "64k", "--luks2-keyslots-size", "4m", "--key-slot", "7"}, cheap...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := image(t, 32<<20)
			kf := keyFile(t, "first passphrase")
			args := append([]string{"format", "-q", "--key-file", kf, "--label", "lbl", "--subsystem", "sub"}, tc.args...)
			mustRun(t, "", append(args, img)...)
			mustCryptsetup(t, "isLuks", "--type", "luks2", img)
			dump := mustCryptsetup(t, "luksDump", img)
			require.Contains(t, dump, "lbl")
			mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, img)

			r := mustRun(t, "", "dump", "--volume-key", "-q", "--key-file", kf, img)
			require.Equal(t, cryptsetupVolumeKey(t, img, kf), strings.TrimSpace(r.stdout))
		})
	}
}

func TestCryptsetupVolumesOpen(t *testing.T) {
	cryptsetupBin(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"luks2-argon2id", []string{"--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1"}},
		{"luks2-pbkdf2-sha512-slot3", []string{"--type", "luks2", "--pbkdf", "pbkdf2", "--hash", "sha512", "--pbkdf-force-iterations", "1000", "--key-slot", "3"}},
		{"luks1", []string{"--type", "luks1", "--pbkdf-force-iterations", "1000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := image(t, 32<<20)
			kf := keyFile(t, "their passphrase")
			mustCryptsetup(t, append(append([]string{"luksFormat", "-q", "--key-file", kf}, tc.args...), img)...)
			mustRun(t, "", "open", "--test", "--key-file", kf, img)
			r := mustRun(t, "", "dump", "--volume-key", "-q", "--key-file", kf, img)
			require.Equal(t, cryptsetupVolumeKey(t, img, kf), strings.TrimSpace(r.stdout))

			bad := volcrypt(t, "", "open", "--test", "--key-file", keyFile(t, "wrong"), img)
			require.Equal(t, 2, bad.code, bad.stderr)
			require.Equal(t, "error: no key available with this passphrase\n", bad.stderr)
		})
	}
}

func TestKeyManagementBothWays(t *testing.T) {
	cryptsetupBin(t)
	img := image(t, 32<<20)
	k1, k2, k3, k4 := keyFile(t, "one"), keyFile(t, "two"), keyFile(t, "three"), keyFile(t, "four")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", k1}, cheap...), img)...)
	want := cryptsetupVolumeKey(t, img, k1)

	// volcrypt adds, cryptsetup opens.
	r := mustRun(t, "", append(append([]string{"key", "add", "--json", "--key-file", k1, "--new-key-file", k2, "--key-slot", "4"}, cheap...), img)...)
	require.JSONEq(t, `{"keyslot":4}`, r.stdout)
	require.Equal(t, want, cryptsetupVolumeKey(t, img, k2))

	// cryptsetup adds, volcrypt opens and lists.
	mustCryptsetup(t, "luksAddKey", "--key-file", k2, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", img, k3)
	r = mustRun(t, "", "open", "--test", "--json", "--key-file", k3, img)
	require.JSONEq(t, `{"keyslot":1}`, r.stdout)
	r = mustRun(t, "", "key", "list", "--json", img)
	var list struct {
		Keyslots []slotInfo `json:"keyslots"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	require.Len(t, list.Keyslots, 3)

	// change keeps the slot number; the old passphrase stops working.
	mustRun(t, "", append(append([]string{"key", "change", "--key-file", k2, "--new-key-file", k4}, cheap...), img)...)
	require.Equal(t, want, cryptsetupVolumeKey(t, img, k4))
	r = mustRun(t, "", "open", "--test", "--json", "--key-file", k4, img)
	require.JSONEq(t, `{"keyslot":4}`, r.stdout)
	_, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", k2, img)
	require.Error(t, err)

	// remove by passphrase, then by slot; the last slot needs confirmation.
	mustRun(t, "", "key", "remove", "--key-file", k3, img)
	mustRun(t, "", "key", "remove", "--key-slot", "0", img)
	r = volcrypt(t, "", "key", "remove", "--key-slot", "4", img)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "last key slot")
	require.Equal(t, want, cryptsetupVolumeKey(t, img, k4))
	out := mustCryptsetup(t, "luksDump", img)
	require.NotContains(t, out, "  0: luks2")
	require.NotContains(t, out, "  1: luks2")
}

func TestBadDevices(t *testing.T) {
	dir := t.TempDir()
	random := filepath.Join(dir, "random.img")
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i/3)
	}
	require.NoError(t, os.WriteFile(random, buf, 0o600))
	empty := filepath.Join(dir, "empty.img")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	kf := keyFile(t, "x")
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing", []string{"open", "--test", "--key-file", kf, filepath.Join(dir, "nope")}, 4, "device not found"},
		{"random", []string{"open", "--test", "--key-file", kf, random}, 1, "not a valid LUKS device"},
		{"empty", []string{"dump", empty}, 1, "not a valid LUKS device"},
		{"directory", []string{"dump", dir}, 4, "not a block device or image file"},
		{"bad-flag", []string{"format", "--sector-size", "x", random}, 1, "invalid argument"},
		{"no-tty-no-key", []string{"open", "--test", random}, 1, "not a valid LUKS device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fileHash(t, random)
			r := volcrypt(t, "", tc.args...)
			require.Equal(t, tc.code, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.msg)
			require.Equal(t, 1, strings.Count(r.stderr, "error:"), r.stderr)
			require.Equal(t, before, fileHash(t, random), "a failed command must not write")
		})
	}
}

func TestFormatRefusesExistingData(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	img := image(t, 32<<20)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	before := fileHash(t, img)
	kf := keyFile(t, "k")
	r := volcrypt(t, "", append(append([]string{"format", "--key-file", kf}, cheap...), img)...)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "-q/--batch-mode")
	require.Equal(t, before, fileHash(t, img))
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	mustRun(t, "", "open", "--test", "--key-file", kf, img)
}

func TestPromptFromPipe(t *testing.T) {
	img := image(t, 32<<20)
	mustRun(t, "piped secret\n", append(append([]string{"format", "-q"}, cheap...), img)...)
	mustRun(t, "piped secret\n", "open", "--test", img)
	r := volcrypt(t, "piped secreT\n", "open", "--test", img)
	require.Equal(t, 2, r.code)
}

func TestLUKS1IsReadOnly(t *testing.T) {
	cryptsetupBin(t)
	img := image(t, 32<<20)
	kf := keyFile(t, "old")
	mustCryptsetup(t, "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--key-file", kf, img)
	before := fileHash(t, img)
	r := volcrypt(t, "", append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", keyFile(t, "new")}, cheap...), img)...)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "LUKS1")
	require.Equal(t, before, fileHash(t, img))
}

// sharedImage decompresses one of cryptsetup's test images from
// ../shared/testdata, or skips.
func sharedImage(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("..", "..", "..", "shared", "testdata", "cryptsetup", name)
	if _, err := os.Stat(src); err != nil {
		t.Skipf("%s not found: the shared test images are not beside this checkout", src)
	}
	dir := t.TempDir()
	var cmd *exec.Cmd
	if strings.HasSuffix(name, ".tar.xz") {
		cmd = exec.Command("tar", "-xJf", src, "-C", dir)
	} else {
		cmd = exec.Command("sh", "-c", `xz -dc "$1" > "$2"`, "sh", src, filepath.Join(dir, strings.TrimSuffix(name, ".xz")))
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return dir
}

func TestUnknownRequirementsRefused(t *testing.T) {
	dir := sharedImage(t, "luks2_header_requirements.tar.xz")
	img := filepath.Join(dir, "luks2_header_requirements")
	before := fileHash(t, img)
	r := volcrypt(t, "", append(append([]string{"key", "add", "--key-file", keyFile(t, "a"), "--new-key-file", keyFile(t, "b")}, cheap...), img)...)
	require.NotEqual(t, 0, r.code)
	require.Equal(t, before, fileHash(t, img))
	r = volcrypt(t, "", "dump", img)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "req0")
}

func TestUnboundKeyslotListedNotUsed(t *testing.T) {
	dir := sharedImage(t, "luks2_keyslot_unassigned.img.xz")
	img := filepath.Join(dir, "luks2_keyslot_unassigned.img")
	r := mustRun(t, "", "key", "list", "--json", img)
	var list struct {
		Keyslots []slotInfo `json:"keyslots"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	require.Len(t, list.Keyslots, 2)
	require.True(t, list.Keyslots[0].Bound)
	require.False(t, list.Keyslots[1].Bound)
	mustRun(t, "", "open", "--test", "--key-file", keyFile(t, "compatkey"), img)
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }

func TestDetachedHeader(t *testing.T) {
	cryptsetupBin(t)
	data := image(t, 16<<20)
	hdr := filepath.Join(t.TempDir(), "hdr.img")
	kf := keyFile(t, "detached")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf, "--header", hdr}, cheap...), data)...)
	// The data device holds no header; cryptsetup reads the header file.
	r := volcrypt(t, "", "dump", data)
	require.Equal(t, 1, r.code, r.stderr)
	out := mustCryptsetup(t, "luksDump", hdr)
	require.Contains(t, out, "offset: 0 [bytes]")
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, "--header", hdr, data)
	mustRun(t, "", "open", "--test", "--key-file", kf, "--header", hdr, data)
	mustRun(t, "", append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", keyFile(t, "second"), "--header", hdr}, cheap...), data)...)
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", keyFile(t, "second"), "--header", hdr, data)
}

func TestBothKeysFromStdinRefused(t *testing.T) {
	img := image(t, 32<<20)
	kf := keyFile(t, "k")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	before := fileHash(t, img)
	for _, sub := range []string{"add", "change"} {
		r := volcrypt(t, "k", "key", sub, "--key-file", "-", "--new-key-file", "-", img)
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stderr, "cannot both read standard input")
	}
	require.Equal(t, before, fileHash(t, img))
}
