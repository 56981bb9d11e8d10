package main

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/dm"
)

// The TestVM tests need a kernel with device-mapper and loop devices and run
// as root: scripts/test runs them in scripts/vmtest's VM.

func inVM(t *testing.T) {
	t.Helper()
	if os.Getenv("VOLCRYPT_VM") != "1" {
		t.Skip("needs device-mapper as root: runs in the VM (go test -exec $PWD/scripts/vmtest -run TestVM ./cmd/volcrypt/)")
	}
}

func sh(t *testing.T, script string, args ...string) string {
	t.Helper()
	out, err := exec.Command("sh", append([]string{"-ec", script, "sh"}, args...)...).CombinedOutput()
	require.NoError(t, err, "%s: %s", script, out)
	return string(out)
}

func loopDevices(t *testing.T) string {
	t.Helper()
	out, _ := exec.Command("losetup", "-a").CombinedOutput()
	return strings.TrimSpace(string(out))
}

// writeFiles makes a file system on dev, writes random files and returns
// their checksums.
func writeFiles(t *testing.T, dev string) string {
	t.Helper()
	mnt := t.TempDir()
	sh(t, `mkfs.ext4 -q -F "$1" && mount "$1" "$2" && for i in 1 2 3; do head -c $((i*100000)) /dev/urandom > "$2/f$i"; done && (cd "$2" && sha256sum f1 f2 f3) > "$2.sums" && umount "$2"`, dev, mnt)
	b, err := os.ReadFile(mnt + ".sums")
	require.NoError(t, err)
	return string(b)
}

// checkFiles mounts dev read-only and compares the files with sums.
func checkFiles(t *testing.T, dev, sums string) {
	t.Helper()
	mnt := t.TempDir()
	got := sh(t, `mount -o ro "$1" "$2" && (cd "$2" && sha256sum f1 f2 f3); umount "$2"`, dev, mnt)
	require.Equal(t, sums, got)
}

func TestVMOpenCloseBothWays(t *testing.T) {
	inVM(t)
	kf := keyFile(t, "vm passphrase")

	t.Run("volcrypt-format-cryptsetup-reads", func(t *testing.T) {
		img := image(t, 64<<20)
		mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
		mustRun(t, "", "open", "--key-file", kf, img, "vc1")
		st := mustRun(t, "", "status", "vc1")
		require.Contains(t, st.stdout, "LUKS2")
		require.Contains(t, st.stdout, img)
		sums := writeFiles(t, "/dev/mapper/vc1")
		mustRun(t, "", "close", "vc1")
		require.Empty(t, loopDevices(t), "closing must detach the loop device")

		mustCryptsetup(t, "open", "--key-file", kf, img, "cs1")
		checkFiles(t, "/dev/mapper/cs1", sums)
		// volcrypt reads and closes cryptsetup's mapping.
		st = mustRun(t, "", "status", "--json", "cs1")
		require.Contains(t, st.stdout, `"type": "LUKS2"`)
		mustRun(t, "", "close", "cs1")
	})

	t.Run("cryptsetup-format-volcrypt-reads", func(t *testing.T) {
		img := image(t, 64<<20)
		mustCryptsetup(t, "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", kf, img)
		mustCryptsetup(t, "open", "--key-file", kf, img, "cs2")
		sums := writeFiles(t, "/dev/mapper/cs2")
		mustCryptsetup(t, "close", "cs2")
		mustRun(t, "", "open", "--key-file", kf, img, "vc2")
		checkFiles(t, "/dev/mapper/vc2", sums)
		out := mustCryptsetup(t, "status", "vc2")
		require.Contains(t, out, "type:    LUKS2")
		mustCryptsetup(t, "close", "vc2")
		require.Empty(t, loopDevices(t))
	})
}

// TestVMTableMatchesCryptsetup compares the table of volcrypt's mapping with
// cryptsetup's for the same volume and options.
func TestVMTableMatchesCryptsetup(t *testing.T) {
	inVM(t)
	kf := keyFile(t, "table")
	for _, tc := range []struct {
		name   string
		format []string
		vc, cs []string
		luks1  bool // formatted by cryptsetup as LUKS1 (hex key in the table)
	}{
		{name: "luks1", luks1: true},
		{name: "sector4096"},
		{name: "sector512", format: []string{"--sector-size", "512"}},
		{name: "discards-readonly", vc: []string{"--allow-discards", "--read-only"}, cs: []string{"--allow-discards", "--readonly"}},
		{name: "perf",
			vc: []string{"--perf-same_cpu_crypt", "--perf-submit_from_crypt_cpus", "--perf-no_read_workqueue", "--perf-no_write_workqueue"},
			cs: []string{"--perf-same_cpu_crypt", "--perf-submit_from_crypt_cpus", "--perf-no_read_workqueue", "--perf-no_write_workqueue"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := image(t, 48<<20)
			if tc.luks1 {
				mustCryptsetup(t, "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--key-file", kf, img)
			} else {
				mustRun(t, "", append(append(append([]string{"format", "-q", "--key-file", kf}, cheap...), tc.format...), img)...)
			}
			mustRun(t, "", append(append([]string{"open", "--key-file", kf}, tc.vc...), img, "tv")...)
			ours, err := dm.Table("tv")
			require.NoError(t, err)
			info, err := dm.GetInfo("tv")
			require.NoError(t, err)
			mustRun(t, "", "close", "tv")

			mustCryptsetup(t, append(append([]string{"open", "--key-file", kf}, tc.cs...), img, "tc")...)
			theirs, err := dm.Table("tc")
			require.NoError(t, err)
			tinfo, err := dm.GetInfo("tc")
			require.NoError(t, err)
			mustCryptsetup(t, "close", "tc")

			require.Len(t, ours, 1)
			require.Len(t, theirs, 1)
			// The loop device may differ between the two opens; the rest must not.
			o, th := ours[0], theirs[0]
			o.Params = maskDevice(o.Params)
			th.Params = maskDevice(th.Params)
			require.Equal(t, th, o)
			require.Equal(t, tinfo.ReadOnly, info.ReadOnly)
			require.Equal(t, strings.TrimSuffix(tinfo.UUID, "-tc"), strings.TrimSuffix(info.UUID, "-tv"))
		})
	}
}

// maskDevice replaces the backing device (the 4th field of a crypt table's
// parameters) with a placeholder.
func maskDevice(params string) string {
	f := strings.Fields(params)
	if len(f) > 3 {
		f[3] = "DEV"
	}
	return strings.Join(f, " ")
}

func TestVMFailuresLeaveNothing(t *testing.T) {
	inVM(t)
	kf := keyFile(t, "right")
	img := image(t, 48<<20)
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)

	r := volcrypt(t, "", "open", "--key-file", keyFile(t, "wrong"), img, "f1")
	require.Equal(t, 2, r.code, r.stderr)
	_, err := os.Stat("/dev/mapper/f1")
	require.True(t, os.IsNotExist(err), "a wrong key must create no mapping")
	require.Empty(t, loopDevices(t), "a wrong key must leave no loop device")

	mustRun(t, "", "open", "--key-file", kf, img, "f1")
	r = volcrypt(t, "", "open", "--key-file", kf, img, "f1")
	require.Equal(t, 5, r.code, "opening an existing name: %s", r.stderr)

	mnt := t.TempDir()
	sh(t, `mkfs.ext4 -q -F /dev/mapper/f1 && mount /dev/mapper/f1 "$1"`, mnt)
	r = volcrypt(t, "", "close", "f1")
	require.Equal(t, 5, r.code, r.stderr)
	require.Contains(t, r.stderr, "mounted on "+mnt)
	// --deferred: accepted while mounted, gone at the unmount.
	mustRun(t, "", "close", "--deferred", "f1")
	_, err = os.Stat("/dev/mapper/f1")
	require.NoError(t, err, "a deferred close keeps the mapping while it is mounted")
	sh(t, `umount "$1"`, mnt)
	r = volcrypt(t, "", "status", "f1")
	require.Equal(t, 4, r.code, "after the unmount the mapping is gone: %s", r.stderr)
	require.Empty(t, loopDevices(t))

	mustRun(t, "", "open", "--read-only", "--key-file", kf, img, "f2")
	buf := make([]byte, 4096)
	_, _ = rand.Read(buf)
	f, err := os.OpenFile("/dev/mapper/f2", os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write(buf)
		f.Close()
	}
	require.Error(t, err, "a read-only mapping must refuse writes")
	st := mustRun(t, "", "status", "f2")
	require.Contains(t, st.stdout, "readonly")
	mustRun(t, "", "close", "f2")
	require.Empty(t, loopDevices(t))
	_ = filepath.Join
}

// TestVMTPM2KernelDevice unlocks through the kernel's /dev/tpmrm0 with no
// flag at all, then walks a firmware update under suspended protection.
func TestVMTPM2KernelDevice(t *testing.T) {
	inVM(t)
	if _, err := os.Stat("/dev/tpmrm0"); err != nil {
		t.Skip("no /dev/tpmrm0 in this VM (scripts/vmtest --no-tpm?)")
	}
	img := image(t, 48<<20)
	kf := keyFile(t, "admin")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	mustRun(t, "", "enroll", "tpm2", "--key-file", kf, img)
	mustRun(t, "", "open", img, "tk")
	mustRun(t, "", "close", "tk")

	mustRun(t, "", "tpm2", "suspend", "--key-file", kf, img)
	sh(t, `TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_pcrextend 7:sha256=$(printf %064d 7)`)
	r := volcrypt(t, "", "open", "--test", "--disable-tokens", img)
	require.NotEqual(t, 0, r.code, "without tokens there is no key")
	r = mustRun(t, "", "open", img, "tk")
	require.Contains(t, r.stderr, "re-sealed")
	mustRun(t, "", "close", "tk")
	// Re-sealed to the new PCR 7: the TPM opens again, no clear key is left.
	r = mustRun(t, "", "key", "list", "--json", img)
	require.NotContains(t, r.stdout, "clear-key")
	mustRun(t, "", "open", "--token-only", img, "tk")
	mustRun(t, "", "close", "tk")
}

// TestVMPersistentFlags: --persistent stores the flags in the header, so a
// later plain open (by volcrypt or cryptsetup) uses them.
func TestVMPersistentFlags(t *testing.T) {
	inVM(t)
	img := image(t, 48<<20)
	kf := keyFile(t, "p")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	mustRun(t, "", "open", "--persistent", "--allow-discards", "--perf-no_read_workqueue", "--key-file", kf, img, "pf")
	mustRun(t, "", "close", "pf")
	require.Contains(t, mustCryptsetup(t, "luksDump", img), "allow-discards no-read-workqueue")
	mustRun(t, "", "open", "--key-file", kf, img, "pf")
	st := mustRun(t, "", "status", "--json", "pf")
	require.Contains(t, st.stdout, `"discards"`)
	require.Contains(t, st.stdout, `"no_read_workqueue"`)
	mustRun(t, "", "close", "pf")
	mustCryptsetup(t, "open", "--key-file", kf, img, "pc")
	out := mustCryptsetup(t, "status", "pc")
	require.Contains(t, out, "discards")
	mustCryptsetup(t, "close", "pc")
}
