package packaging

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/swtpmtest"
	"github.com/volcrypt/volcrypt/volume"
)

// rootInit is the encrypted root file system's /sbin/init: it shows what
// is mounted as / and a checksum of a file only that file system holds,
// then powers the VM off.
const rootInit = `#!/bin/busybox sh
export PATH=/bin
echo "rootfs-init: $(busybox grep ' / ' /proc/mounts)"
echo "rootfs-init: proof $(busybox sha256sum /proof)"
busybox sync
busybox poweroff -f
`

// initramfsConf is the private initramfs-tools configuration: only the
// listed modules (plus those the hooks add), gzip (the one compressor
// scripts/vm-mkinitramfs declares for the VM kernel), fast.
const initramfsConf = `MODULES=list
BUSYBOX=y
KEYMAP=n
COMPRESS=gzip
COMPRESSLEVEL=1
DEVICE=
NFSROOT=auto
RUNSIZE=10%
FSTYPE=ext4
RESUME=none
`

// initramfsModules: the disk (virtio) and the root file system's driver;
// dm-crypt, the TPM drivers and the ciphers come from volcrypt's hook.
const initramfsModules = "virtio_pci\nvirtio_blk\next4\n"

// harnessScript runs in a scripts/vmtest VM with the boots' TPM: it seals
// the disk's TPM key under the PCR 7 value this VM's firmware measured,
// the value the boots see (same QEMU, same firmware).
const harnessScript = `set -e
"$1" enroll tpm2 --tpm2-device auto --tpm2-pcrs 7 --key-file "$2" /dev/vda
echo harness-ok
`

// passwordPrompt is what volcrypt attach-all asks on the console.
const passwordPrompt = "Please enter passphrase or recovery password for disk root (/dev/vda): "

// TestBootInitramfs boots QEMU (scripts/vmtest --initrd) with an
// initramfs made by Debian's mkinitramfs with volcrypt's initramfs-tools
// hook and local-top script, for the kernel scripts/vmtest caches, with a
// swtpm TPM whose state lives across the runs. The root file system is a
// LUKS2 volume on a virtio disk, named by UUID in the crypttab the hook
// reads (tpm2-device=auto,x-initrd.attach; a nofail line for a missing
// device must neither be waited for nor stop the boot):
//   - sealed to this boot's PCR 7: the initramfs unlocks it with no one
//     typing and mounts it as /, whose own /sbin/init prints the checksum
//     of a file on it and powers off;
//   - sealed to another PCR 7 value (a changed boot chain), on a disk that
//     appears only after the initramfs started waiting for it: the
//     initramfs says that TPM2 unlock failed and asks on the serial console
//     for the recovery password, which the test types; then it boots the
//     same way.
func TestBootInitramfs(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU three times: not in -short")
	}
	if os.Getenv("VOLCRYPT_VM") != "" {
		t.Skip("a host test: it starts its own VMs")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root (scripts/vm-mkinitramfs uses a private mount namespace, scripts/vmtest virtiofsd)")
	}
	for _, tool := range []string{"go", "qemu-system-x86_64", "swtpm", "mkinitramfs", "unshare", "mkfs.ext4", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (scripts/deps installs it)", tool)
		}
	}
	busybox, _ := exec.LookPath("busybox")
	if !staticELF(t, busybox) {
		t.Skipf("%s is not statically linked (busybox-static)", busybox)
	}
	root, err := filepath.Abs("..") // go test runs in packaging/
	require.NoError(t, err)
	dir := t.TempDir()
	start := time.Now()

	// volcrypt, static: the hook copies it into the initramfs.
	bin := filepath.Join(dir, "volcrypt")
	// Stripped (-s -w): a smaller initramfs unpacks faster under emulation.
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/volcrypt")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOAMD64=v1") // the VM's CPU has no AVX
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	vc := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(bin, args...).Output()
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		require.NoError(t, err, "volcrypt %s: %s", strings.Join(args, " "), stderr)
		return string(b)
	}

	// The root file system: busybox, /sbin/init, a file to prove it is this one.
	tree := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "sbin", "proc", "sys", "dev", "run", "tmp"} {
		require.NoError(t, os.MkdirAll(filepath.Join(tree, d), 0o755))
	}
	copyFile(t, busybox, filepath.Join(tree, "bin", "busybox"), 0o755)
	require.NoError(t, os.WriteFile(filepath.Join(tree, "sbin", "init"), []byte(rootInit), 0o755))
	proof := sh(t, `head -c 4096 /dev/urandom >"$1/proof" && cd "$1" && sha256sum proof | cut -d' ' -f1`, tree)
	fsImage := filepath.Join(dir, "root.ext4")
	// 4096-byte blocks: the volume's sectors are 4096 bytes, and ext4 cannot mount with smaller blocks.
	sh(t, `mkfs.ext4 -q -F -b 4096 -L volroot -d "$1" "$2" 8M`, tree, fsImage)

	// The encrypted disk: a key file, a recovery password; cheap KDFs (TCG is slow).
	key := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(key, []byte("admin passphrase"), 0o600))
	diskA, diskB := filepath.Join(dir, "boot-a.img"), filepath.Join(dir, "boot-b.img")
	require.NoError(t, os.WriteFile(diskA, nil, 0o600))
	require.NoError(t, os.Truncate(diskA, 32<<20))
	vc("format", "-q", "--key-file", key, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", diskA)
	var rec struct {
		Password string `json:"recovery_password"`
	}
	require.NoError(t, json.Unmarshal([]byte(vc("enroll", "recovery", "--json", "--key-file", key, diskA)), &rec))
	require.NotEmpty(t, rec.Password)
	var dump struct {
		UUID string `json:"uuid"`
	}
	require.NoError(t, json.Unmarshal([]byte(vc("dump", "--json", diskA)), &dump))
	require.NotEmpty(t, dump.UUID)

	writePlaintext(t, diskA, []byte("admin passphrase"), fsImage)
	// The second disk: the same volume (UUID, recovery password, files).
	sh(t, `cp --sparse=always "$1" "$2"`, diskA, diskB)

	// The TPM of every VM below, kept in tpmState. Disk B's key is sealed
	// first, on this host, to the same TPM with PCR 7 at its reset value:
	// another boot chain than the VM's firmware measures (as after a
	// firmware or boot loader update).
	tpmState := filepath.Join(dir, "tpm")
	t0 := time.Now()
	withSwtpm(t, tpmState, func(device string) {
		vc("enroll", "tpm2", "--tpm2-device", device, "--tpm2-pcrs", "7", "--key-file", key, diskB)
	})
	t.Logf("enroll disk B with the host's swtpm: %.1f s", time.Since(t0).Seconds())
	vmtest := filepath.Join(root, "scripts", "vmtest")
	t0 = time.Now()
	hout, err := retryFirmwareTPM(t, "harness VM", func() (string, error) {
		b, err := exec.Command(vmtest, "--tpm-state", tpmState, "--disk", diskA, "--timeout", "300",
			"--", "sh", "-c", harnessScript, "sh", bin, key).CombinedOutput()
		return string(b), err
	})
	require.NoError(t, err, "harness VM: %s", hout)
	require.Contains(t, hout, "harness-ok")
	t.Logf("harness VM (enroll disk A): %.1f s", time.Since(t0).Seconds())

	// The initramfs: Debian's mkinitramfs with a private configuration
	// holding volcrypt's hook and local-top script, as the package installs
	// them under /usr/share/initramfs-tools.
	conf := filepath.Join(dir, "initramfs-tools")
	pkg := filepath.Join(root, "packaging", "initramfs-tools")
	for _, d := range []string{"hooks", "scripts/local-top", "conf.d"} {
		require.NoError(t, os.MkdirAll(filepath.Join(conf, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(conf, "initramfs.conf"), []byte(initramfsConf), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(conf, "modules"), []byte(initramfsModules), 0o644))
	copyFile(t, filepath.Join(pkg, "hooks", "volcrypt"), filepath.Join(conf, "hooks", "volcrypt"), 0o755)
	copyFile(t, filepath.Join(pkg, "scripts", "local-top", "volcrypt"), filepath.Join(conf, "scripts", "local-top", "volcrypt"), 0o755)
	crypttab := filepath.Join(dir, "crypttab")
	require.NoError(t, os.WriteFile(crypttab, []byte("# the system's table\n"+
		"root UUID="+dump.UUID+" none tpm2-device=auto,x-initrd.attach\n"+
		"swap /dev/disk/by-partlabel/swap /etc/keys/swap.key x-initrd.attach,nofail\n"+
		"data /dev/disk/by-label/data /etc/keys/data.key nofail\n"), 0o600))
	initrd := filepath.Join(dir, "initrd.img")
	t0 = time.Now()
	mk := exec.Command(filepath.Join(root, "scripts", "vm-mkinitramfs"), "-d", conf, "-o", initrd)
	mk.Env = append(os.Environ(), "VOLCRYPT_BIN="+bin, "VOLCRYPT_CRYPTTAB="+crypttab, "TMPDIR="+dir,
		"VOLCRYPT_SYSTEM_CRYPTTAB=/nonexistent", "VOLCRYPT_LIB="+filepath.Join(root, "packaging", "lib"))
	out, err = mk.CombinedOutput()
	require.NoError(t, err, "vm-mkinitramfs: %s", out)
	t.Logf("mkinitramfs: %.1f s", time.Since(t0).Seconds())
	list, err := exec.Command("sh", "-c", `gzip -dc "$1" | cpio -it --quiet`, "sh", initrd).Output()
	require.NoError(t, err)
	for _, f := range []string{"usr/sbin/volcrypt", "etc/volcrypt/crypttab", "scripts/local-top/volcrypt"} {
		require.Contains(t, "\n"+string(list), "\n"+f+"\n")
	}
	require.Regexp(t, `/dm-crypt\.ko\n`, string(list))
	b, err := exec.Command("sh", "-c", `gzip -dc "$1" | cpio -i --quiet --to-stdout etc/volcrypt/crypttab`, "sh", initrd).Output()
	require.NoError(t, err)
	require.Equal(t, "root UUID="+dump.UUID+" none tpm2-device=auto,x-initrd.attach\n"+
		"swap /dev/disk/by-partlabel/swap /etc/keys/swap.key x-initrd.attach,nofail\n", string(b),
		"only the x-initrd.attach lines")

	boot := func(o bootOptions) string {
		t.Helper()
		o.initrd, o.tpmState = initrd, tpmState
		what := "boot with " + filepath.Base(o.disk)
		console, err := retryFirmwareTPM(t, what, func() (string, error) {
			t0 := time.Now()
			console, err := bootVM(vmtest, o)
			t.Logf("%s: %.1f s; console:\n%s", what, time.Since(t0).Seconds(), console)
			return console, err
		})
		require.NoError(t, err)
		return console
	}

	// The boot chain the TPM key was sealed to: no prompt.
	c := boot(bootOptions{disk: diskA})
	require.Contains(t, c, "root: /dev/vda attached as /dev/mapper/root with tpm2")
	require.NotContains(t, c, "TPM2 unlock failed")
	require.NotContains(t, c, waitingMessage)
	require.NotContains(t, c, "waiting for the encrypted device", "no waiting for a nofail line")
	require.Contains(t, c, "swap: nofail: going on")
	require.NotContains(t, c, passwordPrompt)
	require.Contains(t, c, "rootfs-init: /dev/mapper/root / ext4 ro")
	require.Contains(t, c, "rootfs-init: proof "+proof+"  /proof")

	// A changed boot chain: the TPM refuses, the console asks, the recovery
	// password boots. And the disk appears late (as USB disks and slow
	// controllers do): it is plugged in only once the initramfs waits for it.
	c = boot(bootOptions{disk: diskB, late: true, answer: rec.Password})
	require.Contains(t, c, waitingMessage+dump.UUID+")")
	require.Contains(t, c, "root: TPM2 unlock failed: ")
	require.Contains(t, c, "PCRs 7 (sha256) changed since enrollment")
	require.Contains(t, c, "asking for the recovery password or a passphrase")
	require.Contains(t, c, passwordPrompt)
	require.Contains(t, c, "root: /dev/vda attached as /dev/mapper/root with passphrase")
	require.Contains(t, c, "rootfs-init: /dev/mapper/root / ext4 ro")
	require.Contains(t, c, "rootfs-init: proof "+proof+"  /proof")
	require.NotContains(t, c, rec.Password, "the typed password is not echoed")
	t.Logf("whole test: %.1f s", time.Since(start).Seconds())
}

// bootOptions say how bootVM boots.
type bootOptions struct {
	initrd, tpmState, disk string
	// late: the disk is hot-plugged once the initramfs says it waits for it.
	late bool
	// answer is typed at the password prompt.
	answer string
}

// waitingMessage is what the local-top script prints while it waits for a disk.
const waitingMessage = "volcrypt: waiting for the encrypted device of: root (UUID="

// bootVM boots the initramfs with scripts/vmtest in boot mode, the serial
// console on a pipe, and returns what the console showed. It hot-plugs a
// late disk through QEMU's monitor when the initramfs waits for it, and
// types the answer (with a carriage return, as a terminal sends) once the
// password prompt appears.
func bootVM(vmtest string, o bootOptions) (string, error) {
	args := []string{"--initrd", o.initrd, "--console", "--append", "root=/dev/mapper/root",
		"--tpm-state", o.tpmState, "--timeout", "300"}
	monitor := ""
	if o.late {
		monitor = filepath.Join(filepath.Dir(o.initrd), "monitor.sock")
		args = append(args, "--no-disk", "--monitor", monitor)
	} else {
		args = append(args, "--disk", o.disk)
	}
	cmd := exec.Command(vmtest, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	fail := func(console []byte, err error) (string, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return string(console), err
	}
	var console []byte
	plugged, typed := !o.late, false
	buf := make([]byte, 4096)
	for {
		n, rerr := stdout.Read(buf)
		console = append(console, buf[:n]...)
		if !plugged && bytes.Contains(console, []byte(waitingMessage)) {
			plugged = true
			if err := hotplug(monitor, o.disk); err != nil {
				return fail(console, err)
			}
		}
		if !typed && bytes.Contains(console, []byte(passwordPrompt)) {
			if o.answer == "" {
				// No one would ever answer: fail now, not at the timeout.
				return fail(console, errors.New("unexpected password prompt"))
			}
			typed = true
			// Give the prompt time to turn echo off: a real user types
			// long after it appears.
			time.Sleep(500 * time.Millisecond)
			if _, err := io.WriteString(stdin, o.answer+"\r"); err != nil {
				return fail(console, fmt.Errorf("typing on the console: %w", err))
			}
		}
		if rerr != nil {
			break
		}
	}
	_ = stdin.Close()
	err = cmd.Wait()
	s := strings.ReplaceAll(string(console), "\r\n", "\n")
	if err != nil {
		return s, fmt.Errorf("scripts/vmtest --initrd: %w: %s", err, stderr.String())
	}
	return s, nil
}

// hotplug attaches the raw image disk as a virtio disk through QEMU's
// human monitor (scripts/vmtest --monitor).
func hotplug(monitor, disk string) error {
	c, err := net.Dial("unix", monitor)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	// Each command's answer ends with the next prompt.
	readPrompt := func() (string, error) {
		var b strings.Builder
		for !strings.HasSuffix(b.String(), "(qemu) ") {
			c, err := r.ReadByte()
			if err != nil {
				return b.String(), fmt.Errorf("monitor: %w", err)
			}
			b.WriteByte(c)
		}
		return b.String(), nil
	}
	if _, err := readPrompt(); err != nil {
		return err
	}
	for _, cmd := range []string{
		"drive_add 0 if=none,id=late,format=raw,cache=unsafe,file=" + disk,
		"device_add virtio-blk-pci,bus=hotplug0,drive=late,id=latedisk",
	} {
		if _, err := io.WriteString(c, cmd+"\n"); err != nil {
			return fmt.Errorf("monitor: %w", err)
		}
		out, err := readPrompt()
		if err != nil {
			return err
		}
		// The answer echoes the command; anything else is an error message.
		out = strings.TrimSuffix(out, "(qemu) ")
		if strings.Contains(out, "rror") || strings.Contains(out, "annot") {
			return fmt.Errorf("monitor: %s: %s", cmd, strings.TrimSpace(out))
		}
	}
	return nil
}

// writePlaintext writes the file system image into the volume's data
// segment (volcrypt's userspace engine: no device-mapper on the host).
func writePlaintext(t *testing.T, img string, passphrase []byte, fsImage string) {
	t.Helper()
	v, err := volume.Load(img, volume.LoadOptions{})
	require.NoError(t, err)
	defer v.Close()
	vk, _, err := v.Unlock(passphrase, volume.UnlockOptions{Keyslot: -1})
	require.NoError(t, err)
	defer vk.Wipe()
	p, err := v.Plaintext(vk)
	require.NoError(t, err)
	defer p.Close()
	b, err := os.ReadFile(fsImage)
	require.NoError(t, err)
	_, err = p.WriteAt(b, 0)
	require.NoError(t, err)
	require.NoError(t, v.Close())
}

// withSwtpm runs fn with a swtpm on this host keeping its state in dir
// (the state scripts/vmtest --tpm-state gives the VMs), then shuts it down
// cleanly so its state is saved.
func withSwtpm(t *testing.T, dir string, fn func(device string)) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o700))
	port := swtpmtest.FreePortPair(t)
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "not-need-init,startup-clear")
	logf, err := os.Create(filepath.Join(filepath.Dir(dir), "swtpm.log"))
	require.NoError(t, err)
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		tcti := fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", port)
		_ = exec.Command("tpm2_shutdown", "-T", tcti, "-c").Run()
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	defer stop()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if i == 500 {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("swtpm did not start: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fn(fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", port))
	stop()
}

// firmwareDisabledTPM reports whether volcrypt found the TPM's storage
// hierarchy disabled: SeaBIOS does that when its TPM setup fails, which
// happens under emulation on a busy host when the TPM answers too late.
// The boot is not the one under test then; it is tried once more.
func firmwareDisabledTPM(console string) bool {
	return strings.Contains(console, "TPM_RC_HIERARCHY")
}

// retryFirmwareTPM runs a VM, and once more when its output says that
// the emulated firmware disabled the TPM (firmwareDisabledTPM): that run
// did not test anything. It returns the last run's output and error.
func retryFirmwareTPM(t *testing.T, what string, run func() (string, error)) (string, error) {
	t.Helper()
	out, err := run()
	if firmwareDisabledTPM(out) {
		t.Logf("%s: the emulated firmware disabled the TPM (its TPM setup timed out on a busy host): again\n%s", what, out)
		out, err = run()
	}
	return out, err
}

// staticELF reports whether the ELF file at path has no program
// interpreter (a static binary).
func staticELF(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// copyFile copies src to dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, perm))
}

// sh runs a shell script with arguments and returns its trimmed output.
func sh(t *testing.T, script string, args ...string) string {
	t.Helper()
	b, err := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...).CombinedOutput()
	require.NoError(t, err, "%s: %s", script, b)
	return strings.TrimSpace(string(b))
}

// TestInitramfsHook runs the initramfs-tools hook the way mkinitramfs
// does, with volcrypt's table and the system's /etc/crypttab replaced by
// files: it takes the x-initrd.attach lines of both (a name in both as
// volcrypt's table says, the other line ignored with a warning; non-LUKS
// lines of /etc/crypttab left to cryptsetup), so the packaged all-comments
// /etc/volcrypt/crypttab does not hide root's /etc/crypttab line; no such
// lines add nothing; lines but no volcrypt binary fail the build (an
// initramfs that cannot open root must not replace a working one).
func TestInitramfsHook(t *testing.T) {
	const hookFunctions = "/usr/share/initramfs-tools/hook-functions"
	if _, err := os.Stat(hookFunctions); err != nil {
		t.Skip("initramfs-tools-core is not installed (scripts/deps installs it)")
	}
	hook, err := filepath.Abs(filepath.Join("initramfs-tools", "hooks", "volcrypt"))
	require.NoError(t, err)
	lib, err := filepath.Abs("lib")
	require.NoError(t, err)
	example, err := os.ReadFile("crypttab.example") // the package's /etc/volcrypt/crypttab
	require.NoError(t, err)
	fakeBin := filepath.Join(t.TempDir(), "volcrypt")
	require.NoError(t, os.WriteFile(fakeBin, []byte("#!/bin/sh\n"), 0o755))
	const rootLine = "root UUID=1234 none tpm2-device=auto,x-initrd.attach\n"
	tests := []struct {
		name       string
		table      string // volcrypt's; "" means none
		system     string // /etc/crypttab's; "" means none
		bin        string
		want       string // the initramfs's /etc/volcrypt/crypttab; "" means nothing added
		wantStderr []string
		wantErr    string
	}{
		{name: "no initramfs lines", table: "# boot later\ndata /dev/sdb1 /etc/keys/data.key nofail\n",
			system: "home /dev/sdc1 none luks\n", bin: "/nonexistent/volcrypt"},
		{name: "no tables", bin: "/nonexistent/volcrypt"},
		{name: "binary missing", table: rootLine, bin: "/nonexistent/volcrypt",
			wantErr: "E: volcrypt: /nonexistent/volcrypt not found, but x-initrd.attach lines need it: root:"},
		{name: "packaged example table and /etc/crypttab", table: string(example), bin: fakeBin,
			system: "# /etc/crypttab\n" + rootLine + "home /dev/sdc1 none luks\n" +
				"swap /dev/sdb2 /dev/urandom plain,cipher=aes-xts-plain64,size=256,x-initrd.attach\n",
			want:       rootLine,
			wantStderr: []string{"volcrypt: swap: ", "system line 4 ignored: not a LUKS volume (left to cryptsetup)"}},
		{name: "only /etc/crypttab", system: rootLine, bin: fakeBin, want: rootLine},
		{name: "both tables, volcrypt's wins", bin: fakeBin,
			table:      "# volcrypt\nroot /dev/vda2 none x-initrd.attach\ndata /dev/vdb none x-initrd.attach,nofail\n",
			system:     rootLine + "usr /dev/vda3 none x-initrd.attach\n",
			want:       "root /dev/vda2 none x-initrd.attach\ndata /dev/vdb none x-initrd.attach,nofail\nusr /dev/vda3 none x-initrd.attach\n",
			wantStderr: []string{"volcrypt: root: ", "system line 1 ignored: ", "volcrypt line 2 opens it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			table, system, dest := filepath.Join(dir, "volcrypt"), filepath.Join(dir, "system"), filepath.Join(dir, "initramfs")
			if tc.table != "" {
				require.NoError(t, os.WriteFile(table, []byte(tc.table), 0o600))
			}
			if tc.system != "" {
				require.NoError(t, os.WriteFile(system, []byte(tc.system), 0o600))
			}
			require.NoError(t, os.Mkdir(dest, 0o755))
			cmd := exec.Command("sh", hook)
			cmd.Env = append(os.Environ(), "DESTDIR="+dest, "version=none", "verbose=n", "VOLCRYPT_LIB="+lib,
				"VOLCRYPT_CRYPTTAB="+table, "VOLCRYPT_SYSTEM_CRYPTTAB="+system, "VOLCRYPT_BIN="+tc.bin)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			if tc.wantErr != "" {
				require.Error(t, err)
				require.Contains(t, stderr.String(), tc.wantErr)
				return
			}
			require.NoError(t, err, "%s", stderr.String())
			for _, s := range tc.wantStderr {
				require.Contains(t, stderr.String(), s)
			}
			if tc.want == "" {
				entries, err := os.ReadDir(dest)
				require.NoError(t, err)
				require.Empty(t, entries, "nothing added to the initramfs")
				return
			}
			b, err := os.ReadFile(filepath.Join(dest, "etc", "volcrypt", "crypttab"))
			require.NoError(t, err)
			require.Equal(t, tc.want, string(b))
			_, err = os.Stat(filepath.Join(dest, "usr", "sbin", "volcrypt"))
			require.NoError(t, err, "the binary is copied")
		})
	}
}
