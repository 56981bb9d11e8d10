package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// volumeUUID reads a volume's UUID with dump --json.
func volumeUUID(t *testing.T, img string) string {
	t.Helper()
	var dump struct {
		UUID string `json:"uuid"`
	}
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "", "dump", "--json", img).stdout), &dump))
	require.NotEmpty(t, dump.UUID)
	return dump.UUID
}

// TestVMAttachAllTPM: a volume enrolled with the kernel TPM is attached from
// a crypttab line by UUID (found by scanning block devices: no udev) with
// no one typing; after a PCR change the headless line fails with the
// recovery hint and a prompting line opens with the recovery password.
func TestVMAttachAllTPM(t *testing.T) {
	inVM(t)
	if os.Getenv("VOLCRYPT_VM_TPM") == "" {
		t.Skip("the VM has no TPM (scripts/vmtest --no-tpm)")
	}
	img, kf, recovery := tpmVolume(t)
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", "auto", "--tpm2-pcrs", "7", "--key-file", kf, img)
	uuid := volumeUUID(t, img)
	loopDev := strings.TrimSpace(sh(t, `losetup -f --show "$1"`, img))
	t.Cleanup(func() { _ = os.Remove("/dev/mapper/root"); sh(t, `losetup -d "$1" || true`, loopDev) })

	dir := t.TempDir()
	headless := filepath.Join(dir, "crypttab")
	require.NoError(t, os.WriteFile(headless, []byte("root UUID="+uuid+" none tpm2-device=auto,headless,discard,x-initrd.attach\n"), 0o600))
	prompted := filepath.Join(dir, "crypttab.prompt")
	require.NoError(t, os.WriteFile(prompted, []byte("root UUID="+uuid+" none tpm2-device=auto,x-initrd.attach\n"), 0o600))

	r := mustRun(t, "", "attach-all", "--json", "--initrd", "--crypttab", headless)
	var s attachSummary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s))
	require.Equal(t, map[string]string{"root": "attached/tpm2"}, statuses(s))
	require.Equal(t, loopDev, s.Volumes[0].Path)
	st := mustRun(t, "", "status", "root")
	require.Contains(t, st.stdout, "discards")
	sums := writeFiles(t, "/dev/mapper/root")

	// Already mapped: nothing to do.
	r = mustRun(t, "", "attach-all", "--json", "--crypttab", headless)
	require.Equal(t, map[string]string{"root": "active"}, statuses(attachSummaryOf(t, r)))
	mustRun(t, "", "close", "root")

	// A boot-chain change.
	sh(t, `tpm2_pcrextend -T device:/dev/tpmrm0 7:sha256=0000000000000000000000000000000000000000000000000000000000000001`)
	r = volcrypt(t, "", "attach-all", "--crypttab", headless)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "root: TPM2 unlock failed")
	require.Contains(t, r.stderr, "hint: the boot chain changed")
	_, err := os.Stat("/dev/mapper/root")
	require.True(t, os.IsNotExist(err), "a failed attach maps nothing")

	r = mustRun(t, recovery+"\n", "attach-all", "--json", "--crypttab", prompted)
	require.Equal(t, map[string]string{"root": "attached/passphrase"}, statuses(attachSummaryOf(t, r)))
	checkFiles(t, "/dev/mapper/root", sums)
	mustRun(t, "", "close", "root")
}

// initSim is the simulated early boot: what initramfs-tools' /init does
// around its local-top scripts (mount proc, sys, dev; run them; mount
// root), run in a chroot of the initramfs tree, minus switch_root.
const initSim = `#!/bin/sh
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin /proc /sys /dev /run /root /tmp
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin VOLCRYPT_TEST_AS_CLI=1 quiet=n
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/scripts/local-top/volcrypt
if mount -o ro /dev/mapper/root /root; then
	echo "init: root mounted"
	(cd /root && sha256sum f1 f2 f3)
	umount /root
else
	echo "init: root not mounted"
fi
umount /dev /sys /proc
`

// TestVMInitramfs builds an initramfs tree with the initramfs-tools hook
// (packaging/initramfs-tools) and runs its local-top script in a chroot of
// it: the TPM-enrolled volume named by a crypttab line opens with no one
// typing and mounts; after a PCR change the script says the TPM refused
// and takes the recovery password from the console (standard input here).
func TestVMInitramfs(t *testing.T) {
	inVM(t)
	if os.Getenv("VOLCRYPT_VM_TPM") == "" {
		t.Skip("the VM has no TPM (scripts/vmtest --no-tpm)")
	}
	const hookFunctions = "/usr/share/initramfs-tools/hook-functions"
	if _, err := os.Stat(hookFunctions); err != nil {
		t.Skip("initramfs-tools-core is not installed (scripts/deps installs it)")
	}
	busybox, err := lookPath("busybox")
	require.NoError(t, err, "busybox-static is needed")
	packaging, err := filepath.Abs(filepath.Join("..", "..", "packaging", "initramfs-tools"))
	require.NoError(t, err)

	img, kf, recovery := tpmVolume(t)
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", "auto", "--tpm2-pcrs", "7", "--key-file", kf, img)
	mustRun(t, "", "open", "--key-file", kf, img, "setup")
	sums := writeFiles(t, "/dev/mapper/setup")
	mustRun(t, "", "close", "setup")
	uuid := volumeUUID(t, img)
	loopDev := strings.TrimSpace(sh(t, `losetup -f --show "$1"`, img))
	t.Cleanup(func() { sh(t, `losetup -d "$1" || true`, loopDev) })

	// The system's /etc/crypttab: only x-initrd.attach lines go into the initramfs.
	table := filepath.Join(t.TempDir(), "crypttab")
	require.NoError(t, os.WriteFile(table, []byte("# system table\nroot UUID="+uuid+" none tpm2-device=auto,x-initrd.attach\nlater /dev/nonexistent none nofail\n"), 0o600))
	dest := filepath.Join(t.TempDir(), "initramfs")
	// mkinitramfs's merged-/usr layout, made before any hook runs.
	sh(t, `mkdir -p "$1/usr/bin" "$1/usr/sbin" "$1/usr/lib" "$1/usr/lib64" && for d in bin sbin lib lib64; do ln -s "usr/$d" "$1/$d"; done`, dest)
	// No kernel modules: the VM's kernel has them loaded, and copying them
	// under emulation takes a minute ("version" names no module tree).
	hook := exec.Command("sh", filepath.Join(packaging, "hooks", "volcrypt"))
	hook.Env = append(os.Environ(), "DESTDIR="+dest, "version=none", "verbose=n",
		"VOLCRYPT_CRYPTTAB="+table, "VOLCRYPT_BIN="+binary,
		"VOLCRYPT_SYSTEM_CRYPTTAB=/nonexistent", "VOLCRYPT_LIB="+filepath.Join(packaging, "..", "lib"))
	out, err := hook.CombinedOutput()
	require.NoError(t, err, "hook: %s", out)
	b, err := os.ReadFile(filepath.Join(dest, "etc", "volcrypt", "crypttab"))
	require.NoError(t, err)
	require.Equal(t, "root UUID="+uuid+" none tpm2-device=auto,x-initrd.attach\n", string(b))
	sh(t, `mkdir -p "$1/scripts/local-top" && cp "$2" "$1/bin/busybox" && cp "$3" "$1/scripts/local-top/" && cp /usr/share/initramfs-tools/scripts/functions "$1/scripts/" && printf '%s' "$4" > "$1/init-sim"`,
		dest, busybox, filepath.Join(packaging, "scripts", "local-top", "volcrypt"), initSim)

	boot := func(stdin string) string {
		cmd := exec.Command("chroot", dest, "/bin/busybox", "sh", "/init-sim")
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		t.Logf("simulated boot:\n%s", out)
		return string(out)
	}
	out1 := boot("")
	require.Contains(t, out1, "root: "+loopDev+" attached as /dev/mapper/root with tpm2")
	require.Contains(t, out1, "init: root mounted")
	require.Contains(t, out1, sums)
	mustRun(t, "", "close", "root")

	sh(t, `tpm2_pcrextend -T device:/dev/tpmrm0 7:sha256=0000000000000000000000000000000000000000000000000000000000000002`)
	out2 := boot(recovery + "\n")
	require.Contains(t, out2, "root: TPM2 unlock failed: ")
	require.Contains(t, out2, "asking for the recovery password or a passphrase")
	require.Contains(t, out2, "attached as /dev/mapper/root with passphrase")
	require.Contains(t, out2, sums)
	mustRun(t, "", "close", "root")

	// No one at the console: the boot goes on without root, saying why.
	out3 := boot("")
	require.Contains(t, out3, "hint: the boot chain changed")
	require.Contains(t, out3, "could not open every volume")
	require.Contains(t, out3, "init: root not mounted")
}
