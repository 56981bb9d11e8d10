package vm

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-tpm/tpm2"

	"github.com/volcrypt/volcrypt/tpm"
)

// needVM skips the test unless it runs inside scripts/vmtest's VM.
func needVM(t *testing.T) {
	t.Helper()
	if !inVM() {
		t.Skip("not in the test VM (VOLCRYPT_VM unset): run go test -exec \"$PWD/scripts/vmtest\" ./scripts/vm/ from the repository root")
	}
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	start := time.Now()
	out, err := exec.Command(name, args...).CombinedOutput()
	t.Logf("%s %s (%.2fs)", name, strings.Join(args, " "), time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found in the VM: %v", name, err)
	}
}

func TestVMRoot(t *testing.T) {
	needVM(t)
	if os.Geteuid() != 0 {
		t.Fatalf("euid = %d, want 0", os.Geteuid())
	}
}

func TestVMDeviceNodes(t *testing.T) {
	needVM(t)
	nodes := []string{"/dev/mapper/control", "/dev/loop-control", "/dev/null", "/dev/urandom"}
	if tpm := os.Getenv("VOLCRYPT_VM_TPM"); tpm != "" {
		nodes = append(nodes, tpm, "/dev/tpm0")
	}
	for _, n := range nodes {
		fi, err := os.Stat(n)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if fi.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("%s: mode %v, want a character device", n, fi.Mode())
		}
	}
	for _, d := range strings.Fields(os.Getenv("VOLCRYPT_VM_DISKS")) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Errorf("%v", err)
		} else if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
			t.Errorf("%s: mode %v, want a block device", d, fi.Mode())
		}
	}
	if os.Getenv("VOLCRYPT_VM_DISK") == "" {
		t.Log("no disk attached (VOLCRYPT_VM_DISK unset)")
	}
}

func TestVMKernelFeatures(t *testing.T) {
	needVM(t)
	misc, err := os.ReadFile("/proc/misc")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(misc, []byte(" device-mapper\n")) {
		t.Errorf("/proc/misc has no device-mapper:\n%s", misc)
	}
	for _, m := range []string{"dm_crypt", "dm_mod", "loop", "xts", "algif_skcipher", "aesni_intel", "dm_flakey", "dm_delay"} {
		if _, err := os.Stat(filepath.Join("/sys/module", m)); err != nil {
			t.Errorf("module %s not loaded: %v", m, err)
		}
	}
	// A module that is not in the initramfs loads on demand from the cached kernel package.
	run(t, "modprobe", "serpent_generic")
	if _, err := os.Stat("/sys/module/serpent_generic"); err != nil {
		t.Errorf("modprobe serpent_generic: %v", err)
	}
}

// TestTPM sends TPM2_GetRandom(8) to the kernel's resource manager and checks the answer.
func TestVMTPM(t *testing.T) {
	needVM(t)
	dev := os.Getenv("VOLCRYPT_VM_TPM")
	if dev == "" {
		t.Skip("no TPM (vmtest --no-tpm)")
	}
	// Blocking fd (see notes/vm.md: os.OpenFile makes it non-blocking and reads can return 0 bytes).
	fd, err := syscall.Open(dev, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", dev, err)
	}
	f := os.NewFile(uintptr(fd), dev)
	defer f.Close()
	cmd := []byte{0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8} // TPM_ST_NO_SESSIONS, size 12, GetRandom, 8 bytes
	if _, err := f.Write(cmd); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp := make([]byte, 4096)
	n, err := f.Read(resp)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	resp = resp[:n]
	if n < 12 {
		t.Fatalf("response %x: too short", resp)
	}
	if rc := binary.BigEndian.Uint32(resp[6:10]); rc != 0 {
		t.Fatalf("TPM2_GetRandom: rc %#x", rc)
	}
	if got := binary.BigEndian.Uint16(resp[10:12]); got != 8 || n != 20 {
		t.Fatalf("response %x: want 8 random bytes", resp)
	}
}

// TestVMTPMHierarchies checks that the TPM's owner and endorsement hierarchies are enabled and that a
// primary key can be made in the owner hierarchy, which is what fails (TPM_RC_HIERARCHY) when SeaBIOS
// disabled the hierarchies after its TPM setup timed out. vmtest boots again when the guest finds them
// disabled; vmtest-selftest runs this with VOLCRYPT_VM_SIMULATE_TPM_DISABLED=1 to prove it.
func TestVMTPMHierarchies(t *testing.T) {
	needVM(t)
	dev := os.Getenv("VOLCRYPT_VM_TPM")
	if dev == "" {
		t.Skip("no TPM (vmtest --no-tpm)")
	}
	tp, err := tpm.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	caps, err := tpm2.GetCapability{
		Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTStartupClear), PropertyCount: 1,
	}.Execute(tp)
	if err != nil {
		t.Fatalf("TPM2_GetCapability(TPM_PT_STARTUP_CLEAR): %v", err)
	}
	props, err := caps.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) != 1 || props.TPMProperty[0].Property != tpm2.TPMPTStartupClear {
		t.Fatalf("TPM2_GetCapability(TPM_PT_STARTUP_CLEAR): %+v, %v", props, err)
	}
	v := props.TPMProperty[0].Value
	t.Logf("TPMA_STARTUP_CLEAR %#x: phEnable %d shEnable %d ehEnable %d", v, v&1, v>>1&1, v>>2&1)
	if v&0b110 != 0b110 {
		t.Errorf("owner or endorsement hierarchy disabled: TPMA_STARTUP_CLEAR %#x", v)
	}
	primary, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tp)
	if err != nil {
		t.Fatalf("create a primary key in the owner hierarchy: %v", err)
	}
	if _, err := (tpm2.FlushContext{FlushHandle: primary.ObjectHandle}).Execute(tp); err != nil {
		t.Errorf("flush the primary key: %v", err)
	}
}

func TestVMLoopDevice(t *testing.T) {
	needVM(t)
	needTool(t, "losetup")
	img := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	if !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("losetup printed %q", dev)
	}
	run(t, "losetup", "--detach", dev)
}

func TestVMCryptsetupVersion(t *testing.T) {
	needVM(t)
	needTool(t, "cryptsetup")
	t.Log(strings.TrimSpace(run(t, "cryptsetup", "--version")))
}

// TestDMCryptSmoke proves real dm-crypt end to end with the host's cryptsetup: LUKS2 on a loop-backed
// file, open, mkfs.ext4, mount, write, umount, close, reopen, read back. Without udev, libdevmapper
// notices that udev is not running and makes /dev/mapper/NAME itself: no extra flags needed.
func TestVMDMCryptSmoke(t *testing.T) {
	needVM(t)
	for _, tool := range []string{"cryptsetup", "mkfs.ext4", "mount", "umount"} {
		needTool(t, tool)
	}
	dir := t.TempDir()
	img, key, mnt := filepath.Join(dir, "luks.img"), filepath.Join(dir, "key"), filepath.Join(dir, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 40<<20); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte("vmtest passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	const name = "vmtest-smoke"
	run(t, "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file", key, img)
	run(t, "cryptsetup", "open", "--key-file", key, img, name)
	t.Cleanup(func() { exec.Command("cryptsetup", "close", name).Run() })
	status := run(t, "cryptsetup", "status", name)
	if !strings.Contains(status, "aes-xts-plain64") {
		t.Errorf("cryptsetup status:\n%s", status)
	}
	if !strings.Contains(status, "key location: keyring") {
		t.Logf("volume key not in the kernel keyring:\n%s", status)
	}
	if _, err := os.Stat("/dev/mapper/" + name); err != nil {
		t.Fatalf("mapping node: %v", err)
	}
	run(t, "mkfs.ext4", "-q", "/dev/mapper/"+name)
	run(t, "mount", "/dev/mapper/"+name, mnt)
	want := []byte("written through dm-crypt\n")
	if err := os.WriteFile(filepath.Join(mnt, "f"), want, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "umount", mnt)
	run(t, "cryptsetup", "close", name)

	// The plaintext must not be on the image.
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, want) {
		t.Fatal("plaintext found on the encrypted image")
	}

	run(t, "cryptsetup", "open", "--key-file", key, img, name)
	run(t, "mount", "-o", "ro", "/dev/mapper/"+name, mnt)
	got, err := os.ReadFile(filepath.Join(mnt, "f"))
	run(t, "umount", mnt)
	run(t, "cryptsetup", "close", name)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %q, %v; want %q", got, err, want)
	}
}

// TestDisk checks the scratch disk is writable at both ends.
func TestVMDisk(t *testing.T) {
	needVM(t)
	disk := os.Getenv("VOLCRYPT_VM_DISK")
	if disk == "" {
		t.Skip("no disk (vmtest --no-disk)")
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil || size <= 0 {
		t.Fatalf("size %d, %v", size, err)
	}
	block := bytes.Repeat([]byte{0xa5}, 4096)
	for _, off := range []int64{0, size - 4096} {
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
		got := make([]byte, len(block))
		if _, err := f.ReadAt(got, off); err != nil || !bytes.Equal(got, block) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
}

func TestVMScratch(t *testing.T) {
	needVM(t)
	dir := os.Getenv("VOLCRYPT_VM_SCRATCH")
	if dir == "" {
		t.Fatal("VOLCRYPT_VM_SCRATCH unset")
	}
	if err := os.WriteFile(filepath.Join(dir, "selftest"), []byte("ok"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestKeyring adds a logon key (as dm-crypt's key=:64:logon:NAME tables need) and a user key to the
// thread keyring and reads the user key back.
func TestVMKeyring(t *testing.T) {
	needVM(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	threadKeyring := -1 // KEY_SPEC_THREAD_KEYRING
	addKey := func(typ, desc string, payload []byte) int {
		t.Helper()
		ty, _ := syscall.BytePtrFromString(typ)
		de, _ := syscall.BytePtrFromString(desc)
		id, _, errno := syscall.Syscall6(syscall.SYS_ADD_KEY, uintptr(unsafe.Pointer(ty)), uintptr(unsafe.Pointer(de)),
			uintptr(unsafe.Pointer(&payload[0])), uintptr(len(payload)), uintptr(threadKeyring), 0)
		if errno != 0 {
			t.Fatalf("add_key(%s, %s): %v", typ, desc, errno)
		}
		return int(id)
	}
	payload := bytes.Repeat([]byte{0x42}, 64)
	addKey("logon", "vmtest:logon", payload)
	id := addKey("user", "vmtest-user", payload)
	buf := make([]byte, 128)
	const keyctlRead = 11
	n, _, errno := syscall.Syscall6(syscall.SYS_KEYCTL, keyctlRead, uintptr(id), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		t.Fatalf("keyctl read: %v", errno)
	}
	if !bytes.Equal(buf[:n], payload) {
		t.Fatalf("read back %x, want %x", buf[:n], payload)
	}
}
