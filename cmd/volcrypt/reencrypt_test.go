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
