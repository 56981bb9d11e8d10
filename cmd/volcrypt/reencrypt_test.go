package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/progress"
	"github.com/volcrypt/volcrypt/internal/swtpmtest"
	"github.com/volcrypt/volcrypt/volume"
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

	r = mustRun(t, "", append(append([]string{"encrypt", "-q", "--progress-json", "--key-file", kf, "--reduce-device-size", "16m"}, cheap...), img)...)
	requireProgressLines(t, r.stderr, "encrypt", img, 32<<20)
	mustRun(t, "", "open", "--test", "--key-file", kf, img)
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, img)
	r = volcrypt(t, "", append(append([]string{"encrypt", "-q", "--key-file", kf, "--reduce-device-size", "16m"}, cheap...), img)...)
	require.Equal(t, 1, r.code, "already encrypted: %s", r.stderr)

	// reencrypt keeps the slots whose passphrases it gets.
	kf2 := keyFile(t, "second key")
	mustRun(t, "", append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", kf2}, cheap...), img)...)
	r = volcrypt(t, "", "reencrypt", "-q", "--key-file", kf, "--keep-key-file", "1="+kf2, "--sector-size", "4096", img)
	require.Equal(t, 1, r.code, "4096-byte sectors under a file system of 1 KiB blocks: %s", r.stderr)
	require.Contains(t, r.stderr, "1024-byte blocks")
	mustRun(t, "", "reencrypt", "-q", "--key-file", kf, "--keep-key-file", "1="+kf2, "--cipher", "aes-xts-plain64", "--key-size", "256", img)
	for _, k := range []string{kf, kf2} {
		mustCryptsetup(t, "open", "--test-passphrase", "--key-file", k, img)
	}
	r = volcrypt(t, "", "reencrypt", "--key-file", kf2, img)
	require.Equal(t, 1, r.code, "dropping a slot needs confirmation: %s", r.stderr)
	require.Contains(t, r.stderr, "will be removed")
	mustRun(t, "", "reencrypt", "-q", "--key-file", kf2, img)
	r = volcrypt(t, "", "open", "--test", "--key-file", kf, img)
	require.Equal(t, 2, r.code, "the first slot is gone: %s", r.stderr)

	r = volcrypt(t, "", "decrypt", "-q", "--key-file", kf, img)
	require.Equal(t, 1, r.code, "no --header: %s", r.stderr)
	hdr := filepath.Join(t.TempDir(), "hdr")
	r = volcrypt(t, "", "decrypt", "-q", "--key-file", keyFile(t, "wrong"), "--header", hdr, img)
	require.Equal(t, 2, r.code, "wrong passphrase: %s", r.stderr)
	mustRun(t, "", "decrypt", "-q", "--key-file", kf2, "--header", hdr, img)
	require.NoFileExists(t, hdr)
	out, err = exec.Command("debugfs", "-R", "cat /hello", img).Output()
	require.NoError(t, err)
	require.Equal(t, "hello, world\n", string(out))
}

// TestVMEncryptDecryptWithDMCrypt encrypts an ext4 image full of files in
// place with volcrypt, opens it with cryptsetup through dm-crypt, checks
// the file system and every file, reencrypts it and checks again, then
// decrypts it in place and checks the plain file system.
func TestVMEncryptDecryptWithDMCrypt(t *testing.T) {
	inVM(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "files")
	sh(t, `mkdir -p "$1" && for i in $(seq 1 30); do mkdir -p "$1/d$((i%4))"; head -c $((i*7919)) /dev/urandom > "$1/d$((i%4))/f$i"; done`, src)
	sums := sh(t, `cd "$1" && find . -type f | sort | xargs sha256sum`, src)
	img := filepath.Join(dir, "disk.img")
	sh(t, `truncate -s 32M "$1" && mkfs.ext4 -q -F -d "$2" "$1" && truncate -s 48M "$1"`, img, src)
	kf := keyFile(t, "vm in place")

	mustRun(t, "", append(append([]string{"encrypt", "-q", "--key-file", kf, "--reduce-device-size", "16m"}, cheap...), img)...)
	mnt := filepath.Join(dir, "mnt")
	viaDMCrypt := func() string {
		return sh(t, `mkdir -p "$3" && cryptsetup open --key-file "$2" "$1" vcinplace
e2fsck -fn /dev/mapper/vcinplace >/dev/null 2>&1 && mount -o ro /dev/mapper/vcinplace "$3"
sums=$(cd "$3" && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum)
umount "$3" && cryptsetup close vcinplace && echo "$sums"`, img, kf, mnt)
	}
	require.Equal(t, sums, viaDMCrypt())
	mustRun(t, "", "reencrypt", "-q", "--key-file", kf, "--key-size", "256", img)
	require.Equal(t, sums, viaDMCrypt(), "after reencrypt")

	hdr := filepath.Join(dir, "hdr")
	mustRun(t, "", "decrypt", "-q", "--key-file", kf, "--header", hdr, img)
	got := sh(t, `e2fsck -fn "$1" >/dev/null 2>&1 && mount -o ro,loop "$1" "$2"
sums=$(cd "$2" && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum)
umount "$2" && echo "$sums"`, img, mnt)
	require.Equal(t, sums, got)
}

// requireProgressLines checks --progress-json output: a start line, then
// progress lines, then done, all of task on item with total bytes.
func requireProgressLines(t *testing.T, stderr, task, item string, total int64) {
	t.Helper()
	var events []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var p progress.Line
		require.NoError(t, json.Unmarshal([]byte(l), &p), "line %q", l)
		require.Equal(t, task, p.Task)
		require.Equal(t, item, p.Item)
		require.Equal(t, total, p.Total, "line %q", l)
		events = append(events, p.Event)
		if p.Event == "done" {
			require.Equal(t, total, p.Done)
		}
	}
	require.GreaterOrEqual(t, len(events), 3, "%s", stderr)
	require.Equal(t, "start", events[0])
	require.Equal(t, "progress", events[1])
	require.Equal(t, "done", events[len(events)-1])
}

// TestEncryptDetachedCommand encrypts an ext4 image in place behind a
// detached header, checks it with cryptsetup, and decrypts it again.
func TestEncryptDetachedCommand(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	img := image(t, 24<<20)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "hello"), []byte("hello, detached\n"), 0o644))
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	kf := keyFile(t, "detached")
	hdr := filepath.Join(t.TempDir(), "hdr")

	r := volcrypt(t, "", append(append([]string{"encrypt", "-q", "--key-file", kf, "--header", hdr, "--reduce-device-size", "8m"}, cheap...), img)...)
	require.Equal(t, 1, r.code, "both ways at once: %s", r.stderr)
	r = mustRun(t, "", append(append([]string{"encrypt", "-q", "--progress-json", "--key-file", kf, "--header", hdr}, cheap...), img)...)
	requireProgressLines(t, r.stderr, "encrypt", img, 24<<20)
	mustRun(t, "", "open", "--test", "--key-file", kf, "--header", hdr, img)
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, "--header", hdr, img)
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Skip("debugfs not installed")
	}
	// debugfs exits 0 even when it cannot open the file system: require
	// its complaint, so that a debugfs that did not run cannot pass.
	out, err = exec.Command("debugfs", "-R", "cat /hello", img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "Bad magic number", "the file system is not readable any more")
	require.NotContains(t, string(out), "hello, detached", "the file system is not readable any more")

	r = mustRun(t, "", "reencrypt", "-q", "--progress-json", "--key-file", kf, "--header", hdr, img)
	requireProgressLines(t, r.stderr, "reencrypt", img, 24<<20)
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, "--header", hdr, img)

	// A decryption in progress: encrypt refuses before asking anything.
	pass, err := os.ReadFile(kf)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	err = volume.Decrypt(ctx, img, pass, volume.DecryptOptions{HeaderFile: hdr, Progress: func(volume.Progress) { cancel() }})
	require.ErrorIs(t, err, context.Canceled)
	r = volcrypt(t, "", append(append([]string{"encrypt", "--header", hdr}, cheap...), img)...)
	require.Equal(t, 1, r.code, "%s", r.stderr)
	require.Contains(t, r.stderr, "in the middle of a decrypt")
	require.NotContains(t, r.stderr, "passphrase")

	r = mustRun(t, "", "decrypt", "-q", "--progress-json", "--key-file", kf, "--header", hdr, img)
	requireProgressLines(t, r.stderr, "decrypt", img, 24<<20)
	out, err = exec.Command("debugfs", "-R", "cat /hello", img).Output()
	require.NoError(t, err)
	require.Equal(t, "hello, detached\n", string(out))
	r = volcrypt(t, "", "open", "--test", "--key-file", kf, "--header", hdr, img)
	require.NotZero(t, r.code, "no key left: %s", r.stderr)
	// No key material is left in the header file's key-slot area.
	raw, err := os.ReadFile(hdr)
	require.NoError(t, err)
	h, err := header.Read(bytes.NewReader(raw))
	require.NoError(t, err)
	requireZeros(t, raw, 2*h.Size, h.KeyslotsEnd(), "the header file's key-slot area")
}

// TestReencryptKeepsTPM2AndRecovery reencrypts a volume with a passphrase,
// a recovery password and a TPM2 enrollment (swtpm): without a TPM it
// refuses, with one all three slots keep working, and --force drops the
// TPM2 slot with a warning saying how to enroll it again.
func TestReencryptKeepsTPM2AndRecovery(t *testing.T) {
	tp := swtpmtest.Start(t)
	img, kf, recovery := tpmVolume(t)
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", tp.Device, "--key-file", kf, img)
	rec := keyFile(t, recovery)
	before := mustRun(t, "", "key", "list", "--json", img).stdout

	r := volcrypt(t, "", "reencrypt", "-q", "--key-file", kf, "--keep-key-file", "1="+rec, "--tpm2-device", "/nonexistent/tpm", img)
	require.Equal(t, 1, r.code, "no TPM: %s", r.stderr)
	require.Contains(t, r.stderr, "key slot 2 is a TPM2 enrollment")
	require.Contains(t, r.stderr, "hint: --force removes it; re-enroll afterwards")
	require.Equal(t, before, mustRun(t, "", "key", "list", "--json", img).stdout, "a refusal changes nothing")

	mustRun(t, "", "reencrypt", "-q", "--key-file", kf, "--keep-key-file", "1="+rec, "--tpm2-device", tp.Device, img)
	// Slots get new numbers, as with cryptsetup; the kinds stay.
	recSlot := -1
	for _, k := range keySlots(t, img) {
		if k.Kind == "recovery" {
			recSlot = k.Keyslot
		}
	}
	require.NotEqual(t, -1, recSlot)
	// The TPM2 slot works with the new key, with no one typing.
	mustRun(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, img)
	mustRun(t, recovery+"\n", "open", "--test", img)
	r = mustRun(t, "", "key", "list", "--json", img)
	require.Contains(t, r.stdout, `"kind": "tpm2"`)

	r = mustRun(t, "", "reencrypt", "-q", "--force", "--key-file", kf, "--keep-key-file", fmt.Sprintf("%d=%s", recSlot, rec), "--tpm2-device", "/nonexistent/tpm", img)
	require.Regexp(t, `warning: TPM2 key slot \d will be removed`, r.stderr)
	require.Contains(t, r.stderr, "volcrypt enroll tpm2")
	r = volcrypt(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, img)
	require.NotZero(t, r.code, "the TPM2 slot is gone: %s", r.stderr)
	kinds := map[string]int{}
	for _, k := range keySlots(t, img) {
		kinds[k.Kind]++
	}
	require.Equal(t, map[string]int{"passphrase": 1, "recovery": 1}, kinds)
	mustRun(t, recovery+"\n", "open", "--test", img)
	mustRun(t, "", "open", "--test", "--key-file", kf, img)
}

func keySlots(t *testing.T, img string) []slotInfo {
	t.Helper()
	var out struct{ Keyslots []slotInfo }
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "", "key", "list", "--json", img).stdout), &out))
	return out.Keyslots
}

// TestVMEncryptDetachedWithDMCrypt encrypts an ext4 image in place behind
// a detached header, opens it with cryptsetup through dm-crypt, checks the
// file system and every file, then decrypts it in place and checks the
// plain file system.
func TestVMEncryptDetachedWithDMCrypt(t *testing.T) {
	inVM(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "files")
	sh(t, `mkdir -p "$1" && for i in $(seq 1 20); do head -c $((i*7919)) /dev/urandom > "$1/f$i"; done`, src)
	sums := sh(t, `cd "$1" && find . -type f | sort | xargs sha256sum`, src)
	img, hdr, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "hdr"), filepath.Join(dir, "mnt")
	sh(t, `truncate -s 24M "$1" && mkfs.ext4 -q -F -d "$2" "$1"`, img, src)
	kf := keyFile(t, "vm detached")

	mustRun(t, "", append(append([]string{"encrypt", "-q", "--key-file", kf, "--header", hdr}, cheap...), img)...)
	got := sh(t, `mkdir -p "$4" && cryptsetup open --key-file "$2" --header "$3" "$1" vcdetached
e2fsck -fn /dev/mapper/vcdetached >/dev/null 2>&1 && mount -o ro /dev/mapper/vcdetached "$4"
sums=$(cd "$4" && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum)
umount "$4" && cryptsetup close vcdetached && echo "$sums"`, img, kf, hdr, mnt)
	require.Equal(t, sums, got)

	mustRun(t, "", "decrypt", "-q", "--key-file", kf, "--header", hdr, img)
	got = sh(t, `e2fsck -fn "$1" >/dev/null 2>&1 && mount -o ro,loop "$1" "$2"
sums=$(cd "$2" && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum)
umount "$2" && echo "$sums"`, img, mnt)
	require.Equal(t, sums, got)
}

// requireZeros requires b[from:to] to be all zeros, naming the nonzero
// ranges otherwise.
func requireZeros(t *testing.T, b []byte, from, to int64, what string) {
	t.Helper()
	to = min(to, int64(len(b)))
	var bad []string
	for i := from; i < to; {
		if b[i] == 0 {
			i++
			continue
		}
		j := i
		for j < to && b[j] != 0 {
			j++
		}
		bad = append(bad, fmt.Sprintf("[%d, %d)", i, j))
		i = j
	}
	require.Empty(t, bad, "%s holds nonzero bytes", what)
}

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestReencryptKeepSlotPromptTypo types a recovery password with a typo at
// the prompt for a slot to keep: reencrypt says so and asks again, and the
// slot is kept with the corrected answer.
func TestReencryptKeepSlotPromptTypo(t *testing.T) {
	img, kf, recovery := tpmVolume(t)
	master, slave := openPTY(t)
	// A wrong digit at the end of the first group breaks its checksum.
	typo := []byte(recovery)
	typo[5] = '0' + (typo[5]-'0'+1)%10
	_, err := master.Write([]byte(string(typo) + "\n" + recovery + "\n"))
	require.NoError(t, err)
	cmd := exec.Command(binary, "reencrypt", "-q", "--key-file", kf, img)
	cmd.Env = append(os.Environ(), "VOLCRYPT_TEST_AS_CLI=1")
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &out, &errb
	require.NoError(t, cmd.Run(), "%s", errb.String())
	require.Contains(t, errb.String(), "try again")
	require.NotContains(t, errb.String(), "will be removed")
	mustRun(t, recovery, "open", "--test", img)
	r := mustRun(t, "", "key", "list", "--json", img)
	require.Equal(t, 2, strings.Count(r.stdout, `"kind"`), "both slots kept: %s", r.stdout)
}
