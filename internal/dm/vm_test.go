package dm

// Tests that need a kernel with device mapper and dm-crypt, run as root:
// in the test VM (go test -exec $PWD/scripts/vmtest ./internal/dm/) or on a
// machine that has /dev/mapper/control. They skip elsewhere.

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/xts"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/internal/keyring"
	"github.com/volcrypt/volcrypt/internal/loop"
)

func requireDM(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for device mapper (run with go test -exec $PWD/scripts/vmtest)")
	}
	if err := Available(); err != nil {
		t.Skipf("no device mapper here (run with go test -exec $PWD/scripts/vmtest): %v", err)
	}
	if err := loop.Available(); err != nil {
		t.Skipf("no loop devices: %v", err)
	}
}

// backing attaches a fresh zeroed image of size bytes to a loop device,
// keeps it open for the test and returns it.
func backing(t *testing.T, size int64) *loop.Device {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(img)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	d, err := loop.Attach(img, false)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Detach() })
	return d
}

func testName(t *testing.T) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("vctest-%x", b)
}

func cleanupDevice(t *testing.T, name string) {
	t.Cleanup(func() {
		if _, err := GetInfo(name); err == nil {
			_ = Remove(name, RemoveOptions{})
		}
	})
}

func randomKey(t *testing.T, n int) []byte {
	k := make([]byte, n)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func readAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, n)
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	return b
}

func writeAt(path string, off int64, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestVMVersion(t *testing.T) {
	requireDM(t)
	v, err := GetVersion()
	require.NoError(t, err)
	require.Equal(t, uint32(4), v.Major)
	cv, err := TargetVersion("crypt")
	require.NoError(t, err)
	require.True(t, cv.AtLeast(1, 15, 0), "dm-crypt %s has no keyring support", cv)
	_, err = TargetVersion("no-such-target")
	require.ErrorIs(t, err, ErrNotFound)
	t.Logf("device mapper %s, dm-crypt %s", v, cv)
}

func TestVMCryptKeyring(t *testing.T) {
	requireDM(t)
	lo := backing(t, 8<<20)
	name := testName(t)
	cleanupDevice(t, name)
	luksUUID := "5b1d3e2a-7c4f-4a8e-9d21-0f6b8c3a9e17"
	key := randomKey(t, 64)
	target := CryptTarget{
		Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: LUKS2KeyDescription(luksUUID, 0),
		Device: DevNum(lo.Major(), lo.Minor()), OffsetBytes: 1 << 20, SizeBytes: 7 << 20,
	}
	info, err := CreateCrypt(name, target, key, CryptOptions{UUID: CryptUUID(TypeLUKS2, luksUUID, name)})
	require.NoError(t, err)
	require.NoError(t, lo.Close()) // the mapping holds the loop device now

	size, err := SizeBytes(NodePath(name))
	require.NoError(t, err)
	require.Equal(t, uint64(7<<20), size)
	num, err := DeviceNumber(NodePath(name))
	require.NoError(t, err)
	require.Equal(t, info.DevNum(), num)

	require.Equal(t, name, info.Name)
	require.Equal(t, "CRYPT-LUKS2-5b1d3e2a7c4f4a8e9d210f6b8c3a9e17-"+name, info.UUID)
	require.True(t, info.LiveTable)
	require.False(t, info.Suspended)
	require.False(t, info.ReadOnly)
	require.Equal(t, 0, info.OpenCount)
	require.True(t, nodeMatches(NodePath(name), info.Major, info.Minor), "node %s", NodePath(name))

	// The key was revoked and unlinked after the load: no live key of that
	// description is left anywhere (/proc/keys lists revoked ones with R).
	_, err = keyring.Search(keyring.TypeLogon, target.KeyDescription)
	require.ErrorIs(t, err, keyring.ErrNotFound)
	procKeys, err := os.ReadFile("/proc/keys")
	require.NoError(t, err)
	for _, l := range strings.Split(string(procKeys), "\n") {
		if strings.Contains(l, target.KeyDescription) {
			f := strings.Fields(l)
			require.True(t, len(f) > 1 && strings.Contains(f[1], "R"), "key left in the keyring: %s", l)
		}
	}

	// Table round trip.
	table, err := Table(name)
	require.NoError(t, err)
	require.Len(t, table, 1)
	require.Equal(t, target.String(), table[0].String())
	saved := initialBufferSize
	initialBufferSize = 320 // room for the header only: forces retries
	small, err := Table(name)
	initialBufferSize = saved
	require.NoError(t, err)
	require.Equal(t, table, small)
	parsed, err := ParseCrypt(table[0])
	require.NoError(t, err)
	require.Equal(t, target, parsed)

	status, err := Status(name)
	require.NoError(t, err)
	require.Len(t, status, 1)
	require.Equal(t, "crypt", status[0].Type)

	devs, err := List()
	require.NoError(t, err)
	require.Contains(t, devs, Device{Name: name, UUID: info.UUID, Major: info.Major, Minor: info.Minor})

	// Data written through the mapping is AES-XTS-plain64 on the backing
	// file at the offset, sector numbers starting at iv_offset 0.
	plain := make([]byte, 4096)
	copy(plain, "hello through dm-crypt")
	require.NoError(t, writeAt(NodePath(name), 8192, plain))
	require.Equal(t, plain, readAt(t, NodePath(name), 8192, 4096))
	raw := readAt(t, lo.Path, 1<<20+8192, 512)
	c, err := xts.NewCipher(aes.NewCipher, key)
	require.NoError(t, err)
	want := make([]byte, 512)
	c.Encrypt(want, plain[:512], 8192/512)
	require.Equal(t, want, raw, "on-disk bytes must be aes-xts-plain64 of the data")

	require.NoError(t, Remove(name, RemoveOptions{}))
	_, err = GetInfo(name)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = os.Lstat(NodePath(name))
	require.ErrorIs(t, err, os.ErrNotExist, "node removed with the device")
	require.ErrorIs(t, Remove(name, RemoveOptions{}), ErrNotFound)
}

func TestVMCryptHexReadOnly(t *testing.T) {
	requireDM(t)
	lo := backing(t, 4<<20)
	name := testName(t)
	cleanupDevice(t, name)
	key := randomKey(t, 32)
	target := CryptTarget{Cipher: "aes-cbc-essiv:sha256", KeySize: 32, Device: DevNum(lo.Major(), lo.Minor()),
		SizeBytes: 4 << 20, IVOffset: 16}
	info, err := CreateCrypt(name, target, key, CryptOptions{UUID: CryptUUID(TypePlain, "", name), ReadOnly: true})
	require.NoError(t, err)
	require.True(t, info.ReadOnly)

	table, err := Table(name)
	require.NoError(t, err)
	require.Equal(t, target.String(), table[0].String())
	require.Contains(t, table[0].Params, strings.Repeat("0", 64), "hex key masked")
	require.NotContains(t, strings.ToLower(table[0].Params), fmt.Sprintf("%x", key))

	require.Error(t, writeAt(NodePath(name), 0, make([]byte, 4096)), "read-only mapping refuses writes")
	readAt(t, NodePath(name), 0, 4096)
	require.NoError(t, Remove(name, RemoveOptions{}))
}

func TestVMBusyAndDeferredRemove(t *testing.T) {
	requireDM(t)
	lo := backing(t, 4<<20)
	name := testName(t)
	cleanupDevice(t, name)
	target := CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: "volcrypt:test-" + name,
		Device: DevNum(lo.Major(), lo.Minor()), SizeBytes: 4 << 20}
	_, err := CreateCrypt(name, target, randomKey(t, 64), CryptOptions{})
	require.NoError(t, err)

	f, err := os.Open(NodePath(name))
	require.NoError(t, err)
	err = Remove(name, RemoveOptions{Retries: 1})
	require.ErrorIs(t, err, ErrBusy)
	var be *BusyError
	require.True(t, errors.As(err, &be))
	require.Equal(t, 1, be.OpenCount)

	// Another process holding it open is named.
	holder := exec.Command("sleep", "30")
	hf, err := os.Open(NodePath(name))
	require.NoError(t, err)
	holder.ExtraFiles = []*os.File{hf}
	require.NoError(t, holder.Start())
	hf.Close()
	err = Remove(name, RemoveOptions{Retries: 1})
	require.True(t, errors.As(err, &be))
	require.Contains(t, be.Holders, fmt.Sprintf("open by pid %d (sleep)", holder.Process.Pid))
	require.NoError(t, holder.Process.Kill())
	_ = holder.Wait()

	require.NoError(t, Remove(name, RemoveOptions{Deferred: true}))
	info, err := GetInfo(name)
	require.NoError(t, err, "still there while open")
	require.True(t, info.DeferredRemove)

	// Cancel and schedule again.
	require.NoError(t, CancelDeferredRemove(name))
	info, err = GetInfo(name)
	require.NoError(t, err)
	require.False(t, info.DeferredRemove)
	require.NoError(t, Remove(name, RemoveOptions{Deferred: true}))

	require.NoError(t, f.Close())
	require.Eventually(t, func() bool {
		_, err := GetInfo(name)
		return errors.Is(err, ErrNotFound)
	}, 5*time.Second, 50*time.Millisecond, "deferred remove at last close")

	// Its node is left behind (no udev) until the next Remove or CreateCrypt.
	if !udevRunning() {
		_, err = os.Lstat(NodePath(name))
		require.NoError(t, err, "stale node expected before pruning")
		other := testName(t)
		cleanupDevice(t, other)
		_, err = CreateCrypt(other, target, randomKey(t, 64), CryptOptions{})
		require.NoError(t, err)
		_, err = os.Lstat(NodePath(name))
		require.ErrorIs(t, err, os.ErrNotExist, "stale node pruned")
		require.NoError(t, Remove(other, RemoveOptions{}))
	}
}

func TestVMBusyMounted(t *testing.T) {
	requireDM(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("no mkfs.ext4")
	}
	lo := backing(t, 16<<20)
	name := testName(t)
	cleanupDevice(t, name)
	target := CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, Device: DevNum(lo.Major(), lo.Minor()), SizeBytes: 16 << 20}
	_, err := CreateCrypt(name, target, randomKey(t, 64), CryptOptions{})
	require.NoError(t, err)
	out, err := exec.Command("mkfs.ext4", "-q", NodePath(name)).CombinedOutput()
	require.NoError(t, err, string(out))
	mnt := t.TempDir()
	require.NoError(t, unix.Mount(NodePath(name), mnt, "ext4", 0, ""))
	mounted := true
	t.Cleanup(func() {
		if mounted {
			_ = unix.Unmount(mnt, 0)
		}
	})
	err = Remove(name, RemoveOptions{Retries: 1})
	var be *BusyError
	require.True(t, errors.As(err, &be), "%v", err)
	require.Contains(t, be.Holders, "mounted on "+mnt)
	require.Contains(t, err.Error(), "mounted on "+mnt)
	require.NoError(t, unix.Unmount(mnt, 0))
	mounted = false
	require.NoError(t, Remove(name, RemoveOptions{}))
}

func TestVMExists(t *testing.T) {
	requireDM(t)
	lo := backing(t, 4<<20)
	name := testName(t)
	cleanupDevice(t, name)
	target := CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: "volcrypt:exists-" + name,
		Device: DevNum(lo.Major(), lo.Minor()), SizeBytes: 4 << 20}
	first, err := CreateCrypt(name, target, randomKey(t, 64), CryptOptions{UUID: CryptUUID(TypePlain, "", name)})
	require.NoError(t, err)
	_, err = CreateCrypt(name, target, randomKey(t, 64), CryptOptions{})
	require.ErrorIs(t, err, ErrExists)
	// Same UUID, other name.
	other := testName(t)
	cleanupDevice(t, other)
	_, err = CreateCrypt(other, target, randomKey(t, 64), CryptOptions{UUID: CryptUUID(TypePlain, "", name)})
	require.ErrorIs(t, err, ErrExists)
	_, err = GetInfo(other)
	require.ErrorIs(t, err, ErrNotFound)

	// The first device is untouched by the failed attempts.
	info, err := GetInfo(name)
	require.NoError(t, err)
	require.Equal(t, first.UUID, info.UUID)
	require.True(t, info.LiveTable)
	require.True(t, nodeMatches(NodePath(name), info.Major, info.Minor))
	require.NoError(t, Remove(name, RemoveOptions{}))
}

func TestVMCreateCryptCleansUp(t *testing.T) {
	requireDM(t)
	lo := backing(t, 4<<20)
	name := testName(t)
	cleanupDevice(t, name)
	// A cipher the kernel does not know makes the table load fail after the
	// device was created: CreateCrypt must remove it and the key.
	target := CryptTarget{Cipher: "nosuchcipher-xts-plain64", KeySize: 64, KeyDescription: "volcrypt:fail-" + name,
		Device: DevNum(lo.Major(), lo.Minor()), SizeBytes: 4 << 20}
	_, err := CreateCrypt(name, target, randomKey(t, 64), CryptOptions{})
	require.Error(t, err)
	_, err = GetInfo(name)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = os.Lstat(NodePath(name))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestVMGenericTargets(t *testing.T) {
	requireDM(t)
	lo := backing(t, 1<<20)
	name := testName(t)
	cleanupDevice(t, name)
	_, err := Create(name, "")
	require.NoError(t, err)
	info, err := GetInfo(name)
	require.NoError(t, err)
	require.False(t, info.LiveTable)
	targets := []Target{
		{0, 1024, "linear", DevNum(lo.Major(), lo.Minor()) + " 0"},
		{1024, 1024, "error", ""},
	}
	require.NoError(t, Load(name, targets, false))
	info, err = GetInfo(name)
	require.NoError(t, err)
	require.True(t, info.InactiveTable)
	require.NoError(t, Resume(name))
	got, err := Table(name)
	require.NoError(t, err)
	require.Equal(t, targets, got)

	require.NoError(t, Suspend(name))
	info, err = GetInfo(name)
	require.NoError(t, err)
	require.True(t, info.Suspended)
	require.NoError(t, Resume(name))
	info, err = GetInfo(name)
	require.NoError(t, err)
	require.False(t, info.Suspended)
	require.Equal(t, 2, info.TargetCount)

	_, err = Table("vctest-no-such-device")
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, Resume("vctest-no-such-device"), ErrNotFound)
	require.NoError(t, Remove(name, RemoveOptions{}))
}

// TestVMBusyStacked: a device stacked on the mapping is named as holder.
func TestVMBusyStacked(t *testing.T) {
	requireDM(t)
	lo := backing(t, 4<<20)
	name := testName(t)
	cleanupDevice(t, name)
	info, err := CreateCrypt(name, CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, Device: DevNum(lo.Major(), lo.Minor()),
		SizeBytes: 4 << 20}, randomKey(t, 64), CryptOptions{})
	require.NoError(t, err)
	top := testName(t)
	cleanupDevice(t, top)
	topInfo, err := Create(top, "")
	require.NoError(t, err)
	require.NoError(t, Load(top, []Target{{0, 8, "linear", info.DevNum() + " 0"}}, false))
	require.NoError(t, Resume(top))

	err = Remove(name, RemoveOptions{Retries: 1})
	var be *BusyError
	require.True(t, errors.As(err, &be), "%v", err)
	require.Contains(t, be.Holders, fmt.Sprintf("held by dm-%d (%s)", topInfo.Minor, top))
	require.NoError(t, Remove(top, RemoveOptions{}))
	require.NoError(t, Remove(name, RemoveOptions{}))
}

// TestVMCreateCryptRepeated opens and closes a keyring mapping many times
// while other goroutines keep the scheduler busy: pitfall 4 (key added on
// one thread, table loaded on another) would make some loads fail with
// ErrKeyNotAvailable.
func TestVMCreateCryptRepeated(t *testing.T) {
	requireDM(t)
	lo := backing(t, 1<<20)
	stop := make(chan struct{})
	defer close(stop)
	for i := 0; i < 4; i++ {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					time.Sleep(time.Microsecond)
				}
			}
		}()
	}
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("vctest-rep-%d", i)
		cleanupDevice(t, name)
		target := CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: "volcrypt:rep-" + name,
			Device: DevNum(lo.Major(), lo.Minor()), SizeBytes: 1 << 20}
		_, err := CreateCrypt(name, target, randomKey(t, 64), CryptOptions{})
		require.NoError(t, err, "iteration %d", i)
		require.NoError(t, Remove(name, RemoveOptions{}), "iteration %d", i)
	}
}

// TestVMListMany makes enough devices that DM_LIST_DEVICES needs more than
// the first 16 KiB buffer, exercising the DM_BUFFER_FULL_FLAG retry.
func TestVMListMany(t *testing.T) {
	requireDM(t)
	var names []string
	for i := 0; i < 70; i++ {
		name := fmt.Sprintf("vctest-list-%03d-%s", i, strings.Repeat("x", 100))
		cleanupDevice(t, name)
		_, err := Create(name, fmt.Sprintf("VCTEST-%03d-%s", i, strings.Repeat("u", 100)))
		require.NoError(t, err)
		names = append(names, name)
	}
	devs, err := List()
	require.NoError(t, err)
	// And with a buffer too small for even one entry or table line.
	saved := initialBufferSize
	initialBufferSize = 320
	small, err := List()
	initialBufferSize = saved
	require.NoError(t, err)
	require.Equal(t, devs, small)
	seen := map[string]string{}
	for _, d := range devs {
		seen[d.Name] = d.UUID
	}
	for i, n := range names {
		require.Equal(t, fmt.Sprintf("VCTEST-%03d-%s", i, strings.Repeat("u", 100)), seen[n])
		require.NoError(t, Remove(n, RemoveOptions{}))
	}
}

func requireCryptsetup(t *testing.T) string {
	p, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed")
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

// TestVMCryptsetupLUKS2 opens a LUKS2 volume with cryptsetup, parses its
// mapping, then opens the same volume with CreateCrypt and checks that the
// two tables are the same line.
func TestVMCryptsetupLUKS2(t *testing.T) {
	requireDM(t)
	cs := requireCryptsetup(t)
	lo := backing(t, 32<<20)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pw, []byte("test passphrase"), 0o600))
	luksUUID := "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	run(t, cs, "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--uuid", luksUUID, "--key-file", pw, lo.Path)

	csName := testName(t)
	cleanupDevice(t, csName)
	run(t, cs, "open", "--key-file", pw, "--allow-discards", lo.Path, csName)
	csInfo, err := GetInfo(csName)
	require.NoError(t, err)
	require.Equal(t, CryptUUID(TypeLUKS2, luksUUID, csName), csInfo.UUID)
	typ, u, n, ok := ParseCryptUUID(csInfo.UUID)
	require.True(t, ok)
	require.Equal(t, []string{TypeLUKS2, luksUUID, csName}, []string{typ, u, n})

	csTable, err := Table(csName)
	require.NoError(t, err)
	require.Len(t, csTable, 1)
	target, err := ParseCrypt(csTable[0])
	require.NoError(t, err)
	require.Equal(t, LUKS2KeyDescription(luksUUID, 0), target.KeyDescription)
	require.Equal(t, 64, target.KeySize)
	require.Equal(t, DevNum(lo.Major(), lo.Minor()), target.Device)
	require.Equal(t, uint64(16<<20), target.OffsetBytes)
	require.Equal(t, uint64(16<<20), target.SizeBytes)
	require.True(t, target.AllowDiscards)
	require.Equal(t, csTable[0].String(), target.String())

	marker := make([]byte, 4096)
	copy(marker, "written by cryptsetup's mapping")
	require.NoError(t, writeAt(NodePath(csName), 0, marker))
	run(t, cs, "close", csName)

	vkFile := filepath.Join(dir, "vk")
	run(t, cs, "luksDump", "--dump-volume-key", "--volume-key-file", vkFile, "--key-file", pw, "-q", lo.Path)
	key, err := os.ReadFile(vkFile)
	require.NoError(t, err)
	require.Len(t, key, 64)

	ours := testName(t)
	cleanupDevice(t, ours)
	_, err = CreateCrypt(ours, target, key, CryptOptions{UUID: CryptUUID(TypeLUKS2, luksUUID, ours)})
	require.NoError(t, err)
	ourTable, err := Table(ours)
	require.NoError(t, err)
	require.Equal(t, csTable, ourTable, "our table must be cryptsetup's line")
	require.Equal(t, marker, readAt(t, NodePath(ours), 0, 4096))

	// cryptsetup recognises and closes our mapping.
	status := run(t, cs, "status", ours)
	require.Contains(t, status, "type:    LUKS2")
	require.Contains(t, status, "key location: keyring")
	run(t, cs, "close", ours)
	_, err = GetInfo(ours)
	require.ErrorIs(t, err, ErrNotFound)
}

// TestVMCryptsetupPlain compares a plain mapping with a hex key in the
// table, made by cryptsetup and by CreateCrypt with the same key.
func TestVMCryptsetupPlain(t *testing.T) {
	requireDM(t)
	cs := requireCryptsetup(t)
	lo := backing(t, 8<<20)
	dir := t.TempDir()
	key := randomKey(t, 64)
	kf := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(kf, key, 0o600))

	csName := testName(t)
	cleanupDevice(t, csName)
	run(t, cs, "open", "--type", "plain", "--cipher", "aes-xts-plain64", "--key-size", "512", "--key-file", kf,
		"--offset", "8", "--skip", "16", "--sector-size", "4096", lo.Path, csName)
	csTable, err := Table(csName)
	require.NoError(t, err)
	target, err := ParseCrypt(csTable[0])
	require.NoError(t, err)
	require.Empty(t, target.KeyDescription)
	require.Equal(t, uint64(16), target.IVOffset)
	require.Equal(t, uint64(8*512), target.OffsetBytes)
	require.Equal(t, 4096, target.SectorSizeBytes)
	csInfo, err := GetInfo(csName)
	require.NoError(t, err)
	require.Equal(t, CryptUUID(TypePlain, "", csName), csInfo.UUID)
	marker := make([]byte, 4096)
	copy(marker, "plain marker")
	require.NoError(t, writeAt(NodePath(csName), 4096, marker))
	run(t, cs, "close", csName)

	ours := testName(t)
	cleanupDevice(t, ours)
	_, err = CreateCrypt(ours, target, key, CryptOptions{UUID: CryptUUID(TypePlain, "", ours)})
	require.NoError(t, err)
	ourTable, err := Table(ours)
	require.NoError(t, err)
	require.Equal(t, csTable, ourTable)
	require.Equal(t, marker, readAt(t, NodePath(ours), 4096, 4096))
	require.True(t, bytes.Contains([]byte(run(t, cs, "status", ours)), []byte("type:    PLAIN")))
	require.NoError(t, Remove(ours, RemoveOptions{}))
}
