package main

import (
	"bytes"
	bin "encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/swtpmtest"
	"github.com/volcrypt/volcrypt/userspace"
	"github.com/volcrypt/volcrypt/volume"
)

// The userspace tests mount FUSE with the real kernel: they need root and
// /dev/fuse (this host and the VM have both), and loop devices and
// mkfs.ext4 for the file-system tests.

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse (modprobe fuse)")
	}
}

func needLoop(t *testing.T) {
	t.Helper()
	needFUSE(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("needs loop devices (modprobe loop)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/deps installs it)", tool)
		}
	}
}

// openUserspace formats a volume (unless img is given) and serves it at a
// new mount point; the cleanup closes it whatever the test left.
func serveVolume(t *testing.T, stdin string, args ...string) (mp string, st userspaceStatus) {
	t.Helper()
	mp = t.TempDir()
	r := mustRun(t, stdin, append(append([]string{"open", "--userspace", "--json"}, args...), mp)...)
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st), r.stdout)
	require.Zero(t, st.PIDStart, "open --json shows no bookkeeping")
	state := readState(st.Mountpoint)
	require.NotNil(t, state)
	require.Equal(t, st, state.public())
	st.PIDStart = state.PIDStart
	t.Cleanup(func() {
		if _, ok := findUserspace(mp); ok {
			_ = exec.Command("umount", "-l", mp).Run()
			volcrypt(t, "", "close", mp)
		}
	})
	return mp, st
}

func usVolume(t *testing.T, size int64) (img, kf string) {
	t.Helper()
	img = image(t, size)
	kf = keyFile(t, "userspace passphrase")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	return img, kf
}

// plaintext reads the whole data segment through the engine directly.
func plaintext(t *testing.T, img, kf string) []byte {
	t.Helper()
	v, err := volume.Load(img, volume.LoadOptions{ReadOnly: true})
	require.NoError(t, err)
	defer v.Close()
	pass, err := os.ReadFile(kf)
	require.NoError(t, err)
	key, _, err := v.Unlock(pass, volume.UnlockOptions{Keyslot: -1})
	require.NoError(t, err)
	defer key.Wipe()
	pt, err := v.Plaintext(key)
	require.NoError(t, err)
	defer pt.Close()
	b := make([]byte, pt.Size())
	_, err = pt.ReadAt(b, 0)
	require.NoError(t, err)
	return b
}

func serverGone(t *testing.T, st userspaceStatus) {
	t.Helper()
	require.False(t, alive(st.PID, st.PIDStart), "the server %d still runs", st.PID)
	_, err := os.Stat(userspaceStatePath(st.Mountpoint))
	require.ErrorIs(t, err, os.ErrNotExist, "the state file is removed")
	_, mounted, err := userspace.Lookup(st.Mountpoint)
	require.NoError(t, err)
	require.False(t, mounted)
}

// TestUserspaceFileSystem is the main job without device-mapper: mkfs,
// loop-mount and write files through FUSE, close, then read them back
// through a second, read-only userspace open.
func TestUserspaceFileSystem(t *testing.T) {
	needLoop(t)
	img, kf := usVolume(t, 64<<20)
	mp, st := serveVolume(t, "", "--key-file", kf, img)
	file := filepath.Join(mp, "volume")
	require.Equal(t, file, st.File)
	require.Equal(t, "read/write", st.Mode)
	fi, err := os.Stat(file)
	require.NoError(t, err)
	require.EqualValues(t, st.SizeSectors*512, fi.Size())
	require.EqualValues(t, 64<<20-16<<20, fi.Size(), "the data segment after cryptsetup's default 16 MiB header")

	r := mustRun(t, "", "status", mp)
	require.Contains(t, r.stdout, mp+" is active (userspace, FUSE).")
	require.Contains(t, r.stdout, "aes-xts-plain64")
	require.Contains(t, r.stdout, "keysize: 512 bits")
	r = mustRun(t, "", "status", "--json", mp)
	var js userspaceStatus
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &js))
	require.Equal(t, st.public(), js)
	require.True(t, js.Running)

	fsDir := t.TempDir()
	loopDev := attachLoop(t, st)
	sh(t, `mkfs.ext4 -q -F "$1"`, loopDev)
	sh(t, `mount "$1" "$2" && for i in 1 2 3; do head -c $((i*300000)) /dev/urandom > "$2/f$i"; done && echo userspace-marker > "$2/hello" && sync`, loopDev, fsDir)
	sums := sh(t, `cd "$1" && sha256sum f1 f2 f3 hello`, fsDir)

	// Busy while the loop device holds the file: exit code 5, still served.
	r = volcrypt(t, "", "close", mp)
	require.Equal(t, 5, r.code, r.stderr)
	require.Contains(t, r.stderr, "losetup -d")
	sh(t, `umount "$1" && losetup -d "$2"`, fsDir, loopDev)
	mustRun(t, "", "close", mp)
	serverGone(t, st)
	require.NotContains(t, string(must(os.ReadFile(img))), "userspace-marker", "the image holds no plaintext")

	// Read-only, the same files; writes are refused.
	mp, st = serveVolume(t, "", "--read-only", "--key-file", kf, img)
	require.Equal(t, "readonly", st.Mode)
	_, err = os.OpenFile(st.File, os.O_WRONLY, 0)
	require.ErrorIs(t, err, syscall.EROFS)
	loopDev = attachLoop(t, st, "-r")
	got := sh(t, `mount -o ro "$1" "$2" && cd "$2" && sha256sum f1 f2 f3 hello`, loopDev, fsDir)
	require.Equal(t, sums, got)
	sh(t, `umount "$1" && losetup -d "$2"`, fsDir, loopDev)
	mustRun(t, "", "close", mp)
	serverGone(t, st)
}

var le = bin.LittleEndian

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestUserspaceMatchesEngine writes through the served file and compares
// every byte with the engine's view of the closed volume.
func TestUserspaceMatchesEngine(t *testing.T) {
	needFUSE(t)
	img, kf := usVolume(t, 24<<20)
	want := plaintext(t, img, kf)
	mp, st := serveVolume(t, "", "--key-file", kf, img)
	f, err := os.OpenFile(st.File, os.O_RDWR, 0)
	require.NoError(t, err)
	seed := uint64(1)
	for i := range 40 {
		seed = seed*6364136223846793005 + 1442695040888963407
		off := int64(seed>>20) % int64(len(want))
		n := int(seed>>8)%(300<<10) + 1
		n = min(n, len(want)-int(off))
		p := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, n/3+1)[:n]
		_, err := f.WriteAt(p, off)
		require.NoError(t, err)
		copy(want[off:], p)
	}
	got := make([]byte, len(want))
	_, err = f.ReadAt(got, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "FUSE reads back what it wrote")
	require.NoError(t, f.Close())
	mustRun(t, "", "close", mp)
	require.True(t, bytes.Equal(want, plaintext(t, img, kf)), "the engine reads what FUSE wrote")
}

// TestUserspaceKill9 kills the server while a writer writes whole-sector
// patterns: every write acknowledged before the kill is on the disk, and no
// sector is torn (each holds one write's pattern, whole).
func TestUserspaceKill9(t *testing.T) {
	needFUSE(t)
	img, kf := usVolume(t, 20<<20)
	mp, st := serveVolume(t, "", "--key-file", kf, img)
	const sector, region = 4096, 1 << 20
	pattern := func(gen uint64, sec int) []byte {
		b := make([]byte, sector)
		for i := 0; i < sector; i += 16 {
			le.PutUint64(b[i:], gen)
			le.PutUint64(b[i+8:], uint64(sec))
		}
		return b
	}
	f, err := os.OpenFile(st.File, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	acked := make([]uint64, region/sector) // generation acknowledged per sector
	for s := range acked {
		_, err := f.WriteAt(pattern(0, s), int64(s)*sector)
		require.NoError(t, err)
	}
	done := make(chan struct{})
	var passes atomic.Int64
	go func() {
		defer close(done)
		for gen := uint64(1); ; gen++ {
			for s := 0; s < len(acked); s += 8 { // 32 KiB writes
				var b []byte
				for k := s; k < s+8; k++ {
					b = append(b, pattern(gen, k)...)
				}
				if _, err := f.WriteAt(b, int64(s)*sector); err != nil {
					return
				}
				for k := s; k < s+8; k++ {
					acked[k] = gen
				}
			}
			passes.Add(1)
		}
	}()
	// Kill in the middle of the second pass at the earliest.
	require.Eventually(t, func() bool { return passes.Load() >= 1 }, 30*time.Second, 5*time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, syscall.Kill(st.PID, syscall.SIGKILL))
	<-done
	require.NoError(t, waitExit(st.PID, st.PIDStart, 10*time.Second))

	// The dead mount: status says so, close unmounts it.
	r := mustRun(t, "", "status", mp)
	require.Contains(t, r.stdout, "not running")
	f.Close()
	mustRun(t, "", "close", mp)
	serverGone(t, st)

	pt := plaintext(t, img, kf)
	for s := range acked {
		b := pt[s*sector : (s+1)*sector]
		gen := le.Uint64(b)
		require.Equal(t, pattern(gen, s), b, "sector %d is whole", s)
		require.GreaterOrEqual(t, gen, acked[s], "sector %d keeps its acknowledged write", s)
	}
}

func TestUserspaceErrors(t *testing.T) {
	needFUSE(t)
	img, kf := usVolume(t, 20<<20)
	notDir := keyFile(t, "a file")
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"mount-point-missing", []string{"--key-file", kf, img, filepath.Join(t.TempDir(), "nope")}, 1, "not a directory"},
		{"mount-point-is-a-file", []string{"--key-file", kf, img, notDir}, 1, "not a directory"},
		{"wrong-key", []string{"--key-file", keyFile(t, "wrong"), img, t.TempDir()}, 2, "no key available"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := volcrypt(t, "", append([]string{"open", "--userspace"}, tc.args...)...)
			require.Equal(t, tc.code, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.msg)
		})
	}
	t.Run("served-twice", func(t *testing.T) {
		mp, _ := serveVolume(t, "", "--key-file", kf, img)
		r := volcrypt(t, "", "open", "--userspace", "--key-file", kf, img, t.TempDir())
		require.Equal(t, 5, r.code, r.stderr)
		require.Contains(t, r.stderr, "already served at "+mp)
		other, okf := usVolume(t, 20<<20)
		r = volcrypt(t, "", "open", "--userspace", "--key-file", okf, other, mp)
		require.Equal(t, 5, r.code, r.stderr)
		require.Contains(t, r.stderr, "already serves a volume")
	})
	// Served by a server whose state file open cannot see (another user's,
	// or another runtime directory's): the server's claim on the image
	// refuses it all the same.
	t.Run("served-twice-state-elsewhere", func(t *testing.T) {
		_, st := serveVolume(t, "", "--key-file", kf, img)
		state := userspaceStatePath(st.Mountpoint)
		saved, err := os.ReadFile(state)
		require.NoError(t, err)
		require.NoError(t, os.Remove(state))
		r := volcrypt(t, "", "open", "--userspace", "-r", "--key-file", kf, img, t.TempDir())
		require.NoError(t, os.WriteFile(state, saved, 0o600))
		require.Equal(t, 5, r.code, r.stderr)
		require.Contains(t, r.stderr, fmt.Sprintf("busy: %s is already served by PID %d", img, st.PID))
		mustRun(t, "", "dump", img) // cryptsetup-compatible locks are free
	})
}

// TestUserspaceUnlockMethods: every way open unlocks serves the same
// plaintext: a recovery password typed on standard input, a TPM token.
func TestUserspaceUnlockMethods(t *testing.T) {
	needFUSE(t)
	img, kf, recovery := tpmVolume(t)
	tp := swtpmtest.Start(t)
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", tp.Device, "--key-file", kf, img)
	want := plaintext(t, img, kf)[:1<<20]
	for _, tc := range []struct {
		name, stdin string
		args        []string
	}{
		{"recovery-password", recovery + "\n", []string{"--disable-tokens"}},
		{"tpm2-token", "", []string{"--token-only", "--tpm2-device", tp.Device}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mp, st := serveVolume(t, tc.stdin, append(tc.args, "-r", img)...)
			got := make([]byte, len(want))
			f, err := os.Open(st.File)
			require.NoError(t, err)
			_, err = f.ReadAt(got, 0)
			f.Close()
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, got))
			mustRun(t, "", "close", mp)
		})
	}
}

// TestUserspaceServer: the key reaches the server through a pipe only,
// never argv or env; the server unmounts and exits on SIGTERM.
func TestUserspaceServer(t *testing.T) {
	needFUSE(t)
	img, kf := usVolume(t, 20<<20)
	_, st := serveVolume(t, "", "--key-file", kf, img)
	r := mustRun(t, "", "dump", "--volume-key", "-q", "--key-file", kf, img)
	hexKey := bytes.TrimSpace([]byte(r.stdout))
	raw := make([]byte, len(hexKey)/2)
	_, err := hex.Decode(raw, hexKey)
	require.NoError(t, err)
	for _, f := range []string{"cmdline", "environ"} {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(st.PID), f))
		require.NoError(t, err)
		require.NotContains(t, string(b), string(hexKey))
		require.False(t, bytes.Contains(b, raw))
	}

	adj, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(st.PID), "oom_score_adj"))
	require.NoError(t, err)
	if exec.Command("sh", "-c", "echo -900 > /proc/self/oom_score_adj").Run() == nil {
		require.Equal(t, "-900", string(bytes.TrimSpace(adj)), "the OOM killer picks the server last")
	} else {
		t.Log("this host denies lowering oom_score_adj (no CAP_SYS_RESOURCE): not checked")
	}

	require.NoError(t, syscall.Kill(st.PID, syscall.SIGTERM))
	require.NoError(t, waitExit(st.PID, st.PIDStart, 10*time.Second))
	require.Eventually(t, func() bool {
		_, err := os.Stat(userspaceStatePath(st.Mountpoint))
		return errors.Is(err, os.ErrNotExist)
	}, 5*time.Second, 20*time.Millisecond)
	serverGone(t, st)
}

// attachLoop attaches the served file to a free loop device with the
// volume's sector size, as a dm-crypt mapping would have (read-only with -r
// in extra), with direct I/O as open's hint says, and detaches it at the end
// of the test unless done before.
func attachLoop(t *testing.T, st userspaceStatus, extra ...string) string {
	t.Helper()
	args := append([]string{"-f", "--show", "-b", strconv.Itoa(st.SectorSize), "--direct-io=on"}, extra...)
	out, err := exec.Command("losetup", append(args, st.File)...).CombinedOutput()
	require.NoError(t, err, "losetup: %s", out)
	dev := string(bytes.TrimSpace(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestVMUserspaceCryptsetup: files written through open --userspace read
// back through the kernel's dm-crypt (cryptsetup open), and the other way.
func TestVMUserspaceCryptsetup(t *testing.T) {
	inVM(t)
	needLoop(t)
	cryptsetupBin(t)
	img, kf := usVolume(t, 64<<20)

	mp, st := serveVolume(t, "", "--key-file", kf, img)
	dev := attachLoop(t, st)
	sums := writeFiles(t, dev)
	sh(t, `losetup -d "$1"`, dev)
	mustRun(t, "", "close", mp)
	serverGone(t, st)

	mustCryptsetup(t, "open", "--key-file", kf, img, "usvm")
	t.Cleanup(func() { _, _ = cryptsetup(t, "close", "usvm") })
	checkFiles(t, "/dev/mapper/usvm", sums)
	sums = writeFiles(t, "/dev/mapper/usvm")
	mustCryptsetup(t, "close", "usvm")

	mp, st = serveVolume(t, "", "--read-only", "--key-file", kf, img)
	dev = attachLoop(t, st, "-r")
	checkFiles(t, dev, sums)
	sh(t, `losetup -d "$1"`, dev)
	mustRun(t, "", "close", mp)
}

// The server's errors keep their errno through the pipe, so open's exit
// code is the one the failure would have given in open itself.
func TestUserspaceExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
		code   int
	}{
		{"busy", "error 16 claim /dev/sdx: device or resource busy", 5},
		{"permission", "error 13 open /dev/sdx: permission denied", 2},
		{"no-errno", "error 0 data segment of type \"linear\" is not supported", 1},
		{"died", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServerAnswer([]byte(tc.answer))
			require.Error(t, err)
			code, _ := exitCode(err)
			require.Equal(t, tc.code, code, err)
		})
	}
	code, hint := exitCode(fmt.Errorf("open disk.img: %w", userspace.ErrNoFUSE))
	require.Equal(t, 4, code)
	require.Equal(t, "modprobe fuse", hint)

	// Errors keep their errno and sentinel through the server's answer.
	for _, tc := range []struct {
		name string
		err  error
		code int
		hint string
	}{
		{"no-fusermount", fmt.Errorf("mount /mnt: %w (mount(2): %w)", userspace.ErrNoFusermount, syscall.EPERM), 4, "install fuse3 (fusermount3) or run as root"},
		{"no-fuse", fmt.Errorf("mount /mnt: %w", userspace.ErrNoFUSE), 4, "modprobe fuse"},
		{"served", &userspace.ServedError{Path: "disk.img", PID: 42}, 5, ""},
		{"final-sync", fmt.Errorf("the server's final sync of disk.img: sync: %w", syscall.EIO), 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServerAnswer([]byte(serverErrorAnswer(tc.err)))
			require.EqualError(t, err, oneLine(tc.err))
			code, hint := exitCode(err)
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.hint, hint)
		})
	}

	st, err := parseServerAnswer([]byte(`ok {"mountpoint":"/mnt","pid":7}`))
	require.NoError(t, err)
	require.Equal(t, userspaceStatus{Mountpoint: "/mnt", PID: 7}, *st)
}

// TestUserspaceUnprivileged: a user without privileges opens a volume in
// userspace (mounting through fusermount3), writes its plaintext, sees it
// in status and closes it; the engine then reads what was written. The
// commands run as nobody (setpriv): this test binary as volcrypt, and dd.
func TestUserspaceUnprivileged(t *testing.T) {
	needFUSE(t) // root, to become nobody
	for _, tool := range []string{"setpriv", "fusermount3", "dd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (fusermount3: Debian package fuse3) to run as an unprivileged user", tool)
		}
	}
	const nobody = 65534
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	img, kf := usVolume(t, 32<<20)
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i*7 + i>>12)
	}
	// Copies nobody may use: go test builds in a directory only root reads.
	for name, from := range map[string]string{"volcrypt": binary, "disk.img": img, "key": kf} {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o700))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "data"), want, 0o600))
	img, kf = filepath.Join(dir, "disk.img"), filepath.Join(dir, "key")
	mp, run := filepath.Join(dir, "mp"), filepath.Join(dir, "run")
	for _, d := range []string{mp, run} {
		require.NoError(t, os.Mkdir(d, 0o700))
	}
	require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	}))
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mp).Run() }) // whatever a failure left
	try := func(args ...string) (string, error) {
		cmd := exec.Command("setpriv", append([]string{fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups"}, args...)...)
		cmd.Env = append(os.Environ(), "VOLCRYPT_TEST_AS_CLI=1", "HOME="+dir, "XDG_RUNTIME_DIR="+run)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	as := func(args ...string) string {
		t.Helper()
		out, err := try(args...)
		require.NoError(t, err, "%v: %s", args, out)
		return out
	}
	vc := filepath.Join(dir, "volcrypt")

	out, err := try(vc, "open", "--userspace", "--key-file", kf, img, mp)
	if err != nil && strings.Contains(out, "fusermount") {
		// As TestServeUnprivileged in package userspace: some hosts
		// (containers) let no user mount FUSE.
		t.Skipf("this host lets no user mount FUSE: %s", strings.TrimSpace(out))
	}
	require.NoError(t, err, "open: %s", out)
	require.Contains(t, out, "Only you can open it", "no losetup hint for a user")
	require.NotContains(t, out, "losetup -")
	info, ok, err := userspace.Lookup(mp)
	require.NoError(t, err)
	require.True(t, ok, "mounted")
	require.Equal(t, img, info.Source)
	// Root, whose state files are elsewhere, cannot serve it too.
	r := volcrypt(t, "", "open", "--userspace", "-r", "--key-file", kf, img, t.TempDir())
	require.Equal(t, 5, r.code, r.stderr)
	require.Contains(t, r.stderr, "busy: "+img+" is already served by PID")
	as("dd", "if="+filepath.Join(dir, "data"), "of="+filepath.Join(mp, userspaceFile), "bs=256k", "conv=notrunc,fsync")
	require.Contains(t, as(vc, "status", mp), "is active (userspace, FUSE)")
	as(vc, "close", mp)
	_, ok, err = userspace.Lookup(mp)
	require.NoError(t, err)
	require.False(t, ok, "closed")
	require.True(t, bytes.Equal(want, plaintext(t, img, kf)[:len(want)]), "the engine reads what nobody wrote")
}

// failingSyncImage is an image file served through FUSE by this test
// process, whose fsync fails after a write: a disk that is gone.
type failingSyncImage struct {
	*os.File
	size int64
}

func (d failingSyncImage) Size() int64 { return d.size }

// TestUserspaceCloseFinalSyncError: when the server's final sync of the
// device fails, close says so and fails, though the mount is gone. The
// image lies on a FUSE mount of this test whose fsync fails.
func TestUserspaceCloseFinalSyncError(t *testing.T) {
	needFUSE(t)
	raw, kf := usVolume(t, 20<<20)
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	disk, err := userspace.Serve(t.TempDir(), failingSyncImage{f, 20 << 20}, userspace.Options{
		Name: "disk.img", Sync: func() error { return errors.New("disk gone") },
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		if disk.Unmount() != nil {
			_ = disk.Detach()
		}
		_ = disk.Wait()
	})
	mp, st := serveVolume(t, "", "--key-file", kf, disk.Path)
	// close(2) after a write reports the failed sync at once (Flush),
	// and the write stays unsynced for the final sync.
	w, err := os.OpenFile(st.File, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = w.WriteAt([]byte("data"), 0)
	require.NoError(t, err)
	require.ErrorIs(t, w.Close(), syscall.EIO)
	r := volcrypt(t, "", "close", mp)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "final sync of "+disk.Path)
	require.Len(t, strings.Split(strings.TrimSpace(r.stderr), "\n"), 1, "one line: %s", r.stderr)
	serverGone(t, st)
	_, err = os.Stat(userspaceResultPath(mp))
	require.ErrorIs(t, err, os.ErrNotExist, "close took the result")
}

// TestUserspacePrivateDir: state files go only into a directory that is
// this user's alone: a symbolic link, a directory others may enter, or
// another user's is refused; writing replaces a file planted at the path
// (never writing through it).
func TestUserspacePrivateDir(t *testing.T) {
	base := t.TempDir()
	ok := filepath.Join(base, "ok", "volcrypt")
	require.NoError(t, privateDir(ok))
	st, err := os.Lstat(ok)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())

	open := filepath.Join(base, "open")
	require.NoError(t, os.Mkdir(open, 0o755))
	require.NoError(t, os.Chmod(open, 0o755))
	link := filepath.Join(base, "link")
	require.NoError(t, os.Symlink(ok, link))
	for name, dir := range map[string]string{"mode-0755": open, "symlink": link} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, privateDir(dir), errUnsafeStateDir)
		})
	}
	if os.Geteuid() == 0 {
		t.Run("other-owner", func(t *testing.T) {
			other := filepath.Join(base, "other")
			require.NoError(t, os.Mkdir(other, 0o700))
			require.NoError(t, os.Chown(other, 65534, 65534))
			require.ErrorIs(t, privateDir(other), errUnsafeStateDir)
		})
	}
	t.Run("planted-symlink-replaced", func(t *testing.T) {
		target := filepath.Join(base, "target")
		require.NoError(t, os.WriteFile(target, []byte("keep"), 0o600))
		path := filepath.Join(ok, "x.json")
		require.NoError(t, os.Symlink(target, path))
		require.NoError(t, writeFileAtomic(path, []byte("state")))
		require.Equal(t, "keep", string(must(os.ReadFile(target))))
		require.Equal(t, "state", string(must(os.ReadFile(path))))
	})
}
