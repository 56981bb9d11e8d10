package userspace_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/userspace"
)

// needFUSE skips unless this process can mount FUSE directly (root and
// /dev/fuse): the tests use the real kernel, never a fake.
func needFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE with mount(2)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse (modprobe fuse)")
	}
}

const dataOffset = 16 << 10

// engine is a real encrypted segment over a temporary image file: what
// volume.Plaintext returns, without a LUKS header.
type engine struct {
	*crypt.Segment
	file    *os.File
	c       *crypt.Cipher
	ivTweak uint64
	syncs   atomic.Int32
}

func newEngine(t testing.TB, size int64) *engine {
	t.Helper()
	return newEngineWith(t, size, 4096, 0)
}

// newEngineWith is newEngine with another sector size and IV tweak.
func newEngineWith(t testing.TB, size int64, sector int, ivTweak uint64) *engine {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	require.NoError(t, f.Truncate(dataOffset+size))
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i * 7)
	}
	c, err := crypt.New("aes-xts-plain64", key, sector)
	require.NoError(t, err)
	t.Cleanup(c.Wipe)
	return &engine{Segment: crypt.NewSegment(f, c, dataOffset, size, ivTweak), file: f, c: c, ivTweak: ivTweak}
}

// filledEngine returns an engine of size bytes holding pseudo-random
// plaintext from seed, and that plaintext.
func filledEngine(t testing.TB, size int64, seed uint64) (*engine, []byte) {
	t.Helper()
	e := newEngine(t, size)
	data := make([]byte, size)
	fill(data, seed)
	_, err := e.WriteAt(data, 0)
	require.NoError(t, err)
	return e, data
}

// fill fills b with pseudo-random bytes from seed.
func fill(b []byte, seed uint64) {
	var k [32]byte
	binary.LittleEndian.PutUint64(k[:], seed)
	_, _ = rand.NewChaCha8(k).Read(b)
}

// mapped maps the engine's ciphertext, for Options.Ciphertext.
func (e *engine) mapped(t testing.TB) *userspace.Ciphertext {
	t.Helper()
	ct, err := userspace.MapCiphertext(e.file, dataOffset, e.Size(), e.c, e.ivTweak)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ct.Close()) })
	return ct
}

func (e *engine) sync() error { e.syncs.Add(1); return e.file.Sync() }

func serve(t testing.TB, dev userspace.Device, o userspace.Options) *userspace.Mount {
	t.Helper()
	m, err := userspace.Serve(t.TempDir(), dev, o)
	require.NoError(t, err)
	t.Cleanup(func() {
		if m.Unmount() != nil {
			_ = m.Detach()
		}
		_ = m.Wait()
	})
	return m
}

func TestServeRandomIO(t *testing.T) {
	needFUSE(t)
	for _, tc := range []struct {
		name   string
		mapped bool
	}{
		{"device", false},
		{"mapped-ciphertext", true},
	} {
		t.Run(tc.name, func(t *testing.T) { testServeRandomIO(t, tc.mapped) })
	}
}

// testServeRandomIO compares random reads and writes through FUSE with a
// model, reads through FUSE with the engine's and back, and the end of the
// file with a block device's, served with or without Options.Ciphertext.
func testServeRandomIO(t *testing.T, mapped bool) {
	const size = 8 << 20
	e := newEngine(t, size)
	o := userspace.Options{Sync: e.sync, Source: e.file.Name()}
	if mapped {
		o.Ciphertext = e.mapped(t)
	}
	m := serve(t, e, o)
	require.Equal(t, filepath.Join(m.Dir, userspace.DefaultName), m.Path)

	st, err := os.Stat(m.Path)
	require.NoError(t, err)
	require.EqualValues(t, size, st.Size())
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	info, ok, err := userspace.Lookup(m.Dir)
	require.NoError(t, err)
	require.True(t, ok, "the mount is listed in mountinfo")
	require.Equal(t, userspace.MountInfo{Dir: m.Dir, Source: e.file.Name()}, info)

	f, err := os.OpenFile(m.Path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	odirect, err := os.OpenFile(m.Path, os.O_RDWR|syscall.O_DIRECT, 0)
	require.NoError(t, err)
	defer odirect.Close()
	model := make([]byte, size) // what the zeroed ciphertext decrypts to
	_, err = e.ReadAt(model, 0)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 150 {
		off := rng.Int64N(size)
		n := rng.IntN(min(int(size-off), 3<<19)) + 1
		if i%3 == 0 { // sector-aligned, as file systems write
			off -= off % 4096
			n = (n + 4095) / 4096 * 4096
			n = min(n, int(size-off))
		}
		buf := make([]byte, n)
		fill(buf, rng.Uint64())
		file := f
		if i%6 == 0 { // and sometimes with O_DIRECT, from aligned memory
			file = odirect
			buf = append(alignedBuf(t, n)[:0], buf...)
		}
		if rng.IntN(2) == 0 {
			w, err := file.WriteAt(buf, off)
			require.NoError(t, err)
			require.Equal(t, n, w)
			copy(model[off:], buf)
		} else {
			got := make([]byte, n)
			if file == odirect {
				got = alignedBuf(t, n)
			}
			_, err := file.ReadAt(got, off)
			require.NoError(t, err)
			require.True(t, bytes.Equal(model[off:off+int64(n)], got), "FUSE read at %d+%d", off, n)
		}
	}
	// The engine read directly sees every write made through FUSE.
	direct := make([]byte, size)
	_, err = e.ReadAt(direct, 0)
	require.NoError(t, err)
	require.True(t, bytes.Equal(model, direct))
	// And FUSE sees writes made through the engine (no stale cache).
	copy(model[4096:], "written by the engine")
	_, err = e.WriteAt(model[4096:8192], 4096)
	require.NoError(t, err)
	got := make([]byte, 8192)
	_, err = f.ReadAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, model[:8192], got)
	// The ciphertext is not the plaintext.
	raw := make([]byte, 4096)
	_, err = e.file.ReadAt(raw, dataOffset+4096)
	require.NoError(t, err)
	require.NotContains(t, string(raw), "written by the engine")

	t.Run("end-of-file", func(t *testing.T) {
		n, err := f.ReadAt(make([]byte, 100), size-10)
		require.Equal(t, 10, n)
		require.ErrorIs(t, err, io.EOF)
		n, err = syscall.Pwrite(int(f.Fd()), make([]byte, 100), size-10)
		require.NoError(t, err)
		require.Equal(t, 10, n, "a write is cut at the end, like a block device's")
		_, err = f.WriteAt([]byte{1}, size)
		require.ErrorIs(t, err, syscall.ENOSPC)
	})
	t.Run("truncate-changes-nothing", func(t *testing.T) {
		require.NoError(t, f.Truncate(0))
		g, err := os.OpenFile(m.Path, os.O_WRONLY|os.O_TRUNC, 0)
		require.NoError(t, err)
		require.NoError(t, g.Close())
		st, err := os.Stat(m.Path)
		require.NoError(t, err)
		require.EqualValues(t, size, st.Size())
	})
}

// alignedBuf returns n bytes of page-aligned memory, as O_DIRECT wants.
func alignedBuf(t testing.TB, n int) []byte {
	b := make([]byte, n+4096)
	skip := (4096 - int(uintptr(unsafe.Pointer(&b[0])))%4096) % 4096
	return b[skip : skip+n : skip+n]
}

// TestServeMappedFault: a read of mapped ciphertext the kernel cannot read
// (here the image was cut short under the mapping) fails with EIO and the
// server lives on, instead of dying of SIGBUS. The reads run in dd, not in
// this process: were the server to die, a reader in the same process would
// wait for it forever.
func TestServeMappedFault(t *testing.T) {
	needFUSE(t)
	if _, err := exec.LookPath("dd"); err != nil {
		t.Skip("needs dd")
	}
	const size = 4 << 20
	e := newEngine(t, size)
	m := serve(t, e, userspace.Options{Ciphertext: e.mapped(t)})
	dd := func(bs string, skip, count int) (string, error) {
		out, err := exec.Command("dd", "if="+m.Path, "of=/dev/null", "bs="+bs, "iflag=direct",
			fmt.Sprintf("skip=%d", skip), fmt.Sprintf("count=%d", count)).CombinedOutput()
		return string(out), err
	}
	_, err := dd("16k", 0, 4)
	require.NoError(t, err)

	require.NoError(t, e.file.Truncate(dataOffset+size/4)) // the cut at 1 MiB
	for _, tc := range []struct {
		name        string
		bs          string
		skip, count int
	}{
		{"past-the-cut", "16k", 80, 4},
		{"straddling-the-cut", "16k", 63, 2},
		// 1 MiB requests: decrypted in chunks on several goroutines,
		// each of which must turn its own fault into an error.
		{"1MiB-past-the-cut", "1M", 2, 2},
		{"1MiB-straddling-the-cut", "1M", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := dd(tc.bs, tc.skip, tc.count)
			require.Error(t, err)
			require.Contains(t, out, "Input/output error")
		})
	}
	// Still served: what is left reads, and the mount unmounts cleanly.
	_, err = dd("16k", 0, 4)
	require.NoError(t, err)
	require.NoError(t, m.Unmount())
	require.NoError(t, m.Wait())
}

func TestServeSync(t *testing.T) {
	needFUSE(t)
	e := newEngine(t, 1<<20)
	m := serve(t, e, userspace.Options{Sync: e.sync})
	for _, tc := range []struct {
		name  string
		flag  int
		do    func(f *os.File) error
		syncs int32
	}{
		{"read-then-close", os.O_RDONLY, func(f *os.File) error { _, err := f.ReadAt(make([]byte, 10), 0); return err }, 0},
		{"write-then-close", os.O_RDWR, func(f *os.File) error { _, err := f.WriteAt([]byte("x"), 0); return err }, 1},
		{"write-fsync-close", os.O_RDWR, func(f *os.File) error {
			if _, err := f.WriteAt([]byte("x"), 0); err != nil {
				return err
			}
			return f.Sync()
		}, 1},
		{"fsync-clean", os.O_RDWR, func(f *os.File) error { return f.Sync() }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.syncs.Load()
			f, err := os.OpenFile(m.Path, tc.flag, 0)
			require.NoError(t, err)
			require.NoError(t, tc.do(f))
			require.NoError(t, f.Close())
			require.Equal(t, tc.syncs, e.syncs.Load()-before)
		})
	}
	t.Run("sync-error-reaches-fsync", func(t *testing.T) {
		bad := newEngine(t, 1<<20)
		m := serve(t, bad, userspace.Options{Sync: func() error { return errors.New("disk gone") }})
		f, err := os.OpenFile(m.Path, os.O_RDWR, 0)
		require.NoError(t, err)
		defer f.Close()
		_, err = f.WriteAt([]byte("x"), 0)
		require.NoError(t, err)
		require.ErrorIs(t, f.Sync(), syscall.EIO)
	})
}

// TestServeSharedMmap: the file maps MAP_SHARED for reading and writing;
// msync makes mapped writes durable (Sync runs) and the engine sees them; a
// write through a descriptor shows in a mapping made before it. The mapping
// lives in a child process (TestMmapHelper): a page fault on a FUSE mapping
// served by the faulting Go process itself can deadlock with the garbage
// collector, which waits for the faulting thread while the server waits
// for the collector.
func TestServeSharedMmap(t *testing.T) {
	needFUSE(t)
	e, want := filledEngine(t, 1<<20, 5)
	m := serve(t, e, userspace.Options{Sync: e.sync, Ciphertext: e.mapped(t)})

	cmd := exec.Command(os.Args[0], "-test.run=^TestMmapHelper$")
	cmd.Env = append(os.Environ(), mmapHelperEnv+"="+m.Path)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	pipe, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	out := bufio.NewScanner(pipe)
	line := func() string {
		require.True(t, out.Scan(), "the helper ended early: %v", out.Err())
		return out.Text()
	}

	first := line()
	if first == "ENODEV" && !kernelAtLeast(6, 6) {
		t.Skip("the kernel refuses shared mmap with FUSE direct I/O (before Linux 6.6)")
	}
	sum := sha256.Sum256(want)
	require.Equal(t, hex.EncodeToString(sum[:]), first, "read through the mapping")

	f, err := os.OpenFile(m.Path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte("written through a descriptor"), 65536)
	require.NoError(t, err)
	before := e.syncs.Load()
	_, err = in.Write([]byte("go\n"))
	require.NoError(t, err)
	require.Equal(t, "written through a descriptor", line())
	require.Equal(t, "synced", line())
	require.Greater(t, e.syncs.Load(), before, "msync reaches Sync")
	got := make([]byte, 27)
	_, err = e.ReadAt(got, 8192)
	require.NoError(t, err)
	require.Equal(t, "written through the mapping", string(got))
	require.NoError(t, cmd.Wait())
}

// mmapHelperEnv names the file TestMmapHelper maps.
const mmapHelperEnv = "VOLCRYPT_TEST_MMAP_FILE"

// TestMmapHelper is TestServeSharedMmap's child: it maps the file, prints
// the hash of its contents (or ENODEV), waits for a line on stdin, prints
// the 28 bytes at 65536, writes at 8192, msyncs and prints "synced".
func TestMmapHelper(t *testing.T) {
	path := os.Getenv(mmapHelperEnv)
	if path == "" {
		t.Skip("run by TestServeSharedMmap")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if errors.Is(err, syscall.ENODEV) {
		fmt.Println("ENODEV")
		return
	}
	require.NoError(t, err)
	defer unix.Munmap(mem)
	sum := sha256.Sum256(mem)
	fmt.Println(hex.EncodeToString(sum[:]))
	_, err = bufio.NewReader(os.Stdin).ReadString('\n')
	require.NoError(t, err)
	fmt.Println(string(mem[65536 : 65536+28]))
	copy(mem[8192:], "written through the mapping")
	require.NoError(t, unix.Msync(mem, unix.MS_SYNC))
	fmt.Println("synced")
}

// kernelAtLeast reports whether the running kernel is version major.minor
// or later.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

func TestServeReadOnly(t *testing.T) {
	needFUSE(t)
	e := newEngine(t, 1<<20)
	_, err := e.WriteAt(bytes.Repeat([]byte("ro"), 2048), 0)
	require.NoError(t, err)
	m := serve(t, e, userspace.Options{ReadOnly: true, Name: "disk"})
	require.Equal(t, filepath.Join(m.Dir, "disk"), m.Path)
	info, ok, err := userspace.Lookup(m.Dir)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, info.ReadOnly)

	_, err = os.OpenFile(m.Path, os.O_RDWR, 0)
	require.ErrorIs(t, err, syscall.EROFS)
	b, err := os.ReadFile(m.Path)
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte("ro"), 2048), b[:4096])
}

func TestServeConcurrentReaders(t *testing.T) {
	needFUSE(t)
	const size = 4 << 20
	e, want := filledEngine(t, size, 3)
	m := serve(t, e, userspace.Options{})

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(m.Path)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			rng := rand.New(rand.NewPCG(uint64(r), 9))
			for range 50 {
				off := rng.Int64N(size)
				buf := make([]byte, rng.IntN(int(size-off))%(512<<10)+1)
				if _, err := f.ReadAt(buf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(want[off:off+int64(len(buf))], buf) {
					errs <- errors.New("reader got other bytes")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestLookupNotMounted(t *testing.T) {
	_, ok, err := userspace.Lookup(t.TempDir())
	require.NoError(t, err)
	require.False(t, ok)
}

func TestServeErrors(t *testing.T) {
	needFUSE(t)
	e := newEngine(t, 1<<20)
	_, err := userspace.Serve(filepath.Join(t.TempDir(), "missing"), e, userspace.Options{})
	require.ErrorIs(t, err, userspace.ErrNotDir)
}

// unprivHelperEnv names the directory in which TestUnprivilegedHelper,
// run as an unprivileged user by TestServeUnprivileged, works.
const unprivHelperEnv = "VOLCRYPT_TEST_UNPRIV_DIR"

// cannotMount starts the helper's line when this host lets no unprivileged
// user mount FUSE (fusermount3 itself fails, as in some containers).
const cannotMount = "CANNOT-MOUNT:"

// TestServeUnprivileged: a user without privileges serves, reads, writes,
// syncs and unmounts through fusermount3 (as user nobody, switched with
// setpriv; the test binary runs again as TestUnprivilegedHelper).
func TestServeUnprivileged(t *testing.T) {
	needFUSE(t) // root, to become nobody
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux) to run as an unprivileged user")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("needs fusermount3 (Debian package fuse3) to mount FUSE as a user")
	}
	const nobody = 65534
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	require.NoError(t, os.Chown(dir, nobody, nobody))
	// A copy nobody may run: go test builds in a directory only root reads.
	bin := filepath.Join(dir, "userspace.test")
	self, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, self, 0o755))

	// A broken unmount would leave the helper waiting for its server.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody),
		"--clear-groups", bin, "-test.run=^TestUnprivilegedHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), unprivHelperEnv+"="+dir, "TMPDIR="+dir, "HOME="+dir)
	out, err := cmd.CombinedOutput()
	detachUnder(dir) // what a failed helper left mounted: its server is gone
	if i := strings.Index(string(out), cannotMount); i >= 0 {
		t.Skipf("this host lets no user mount FUSE: %s", strings.SplitN(string(out[i:]), "\n", 2)[0])
	}
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "--- PASS: TestUnprivilegedHelper")
}

// detachUnder lazily unmounts every mount below dir.
func detachUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			_ = unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
}

// TestUnprivilegedHelper is TestServeUnprivileged's child, as nobody.
func TestUnprivilegedHelper(t *testing.T) {
	if os.Getenv(unprivHelperEnv) == "" {
		t.Skip("run by TestServeUnprivileged")
	}
	require.NotZero(t, os.Geteuid(), "runs unprivileged")
	const size = 1 << 20
	e := newEngine(t, size)
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	m, err := userspace.Serve(t.TempDir(), e, userspace.Options{Sync: e.sync, UID: uid, GID: gid, Ciphertext: e.mapped(t)})
	if err != nil {
		fmt.Println(cannotMount, err)
		t.Skip(err)
	}
	t.Cleanup(func() {
		if m.Unmount() != nil && m.Detach() != nil {
			return // still mounted: waiting would hang
		}
		_ = m.Wait()
	})
	info, ok, err := userspace.Lookup(m.Dir)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, strings.HasPrefix(info.Source, "volcrypt"), info.Source)
	st, err := os.Stat(m.Path)
	require.NoError(t, err)
	require.Equal(t, uid, st.Sys().(*syscall.Stat_t).Uid, "the file is the user's")

	f, err := os.OpenFile(m.Path, os.O_RDWR, 0)
	require.NoError(t, err)
	// Closed before the process exits, whatever fails: exiting with a
	// file open on its own FUSE server would hang this process.
	defer f.Close()
	want := make([]byte, 256<<10)
	fill(want, 7)
	_, err = f.WriteAt(want, 4096)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.Positive(t, e.syncs.Load())
	got := make([]byte, len(want))
	_, err = e.ReadAt(got, 4096)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "the engine reads what FUSE wrote")
	_, err = f.ReadAt(got, 4096)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "FUSE reads it back")

	require.ErrorIs(t, m.Unmount(), syscall.EBUSY, "busy while the file is open")
	require.NoError(t, f.Close())
	require.NoError(t, m.Unmount())
	require.NoError(t, m.Wait())
	_, ok, err = userspace.Lookup(m.Dir)
	require.NoError(t, err)
	require.False(t, ok, "unmounted")
	require.ErrorIs(t, userspace.Unmount(m.Dir), syscall.EINVAL, "not mounted (told by the mount table)")

	// fusermount3's own message says why a mount failed.
	_, err = userspace.Serve("/", e, userspace.Options{UID: uid, GID: gid})
	require.ErrorContains(t, err, "no write access to mountpoint /")
}

// mappedOnly is a Device whose reads of whole sectors fail: served with the
// mapping, such reads must never reach it.
type mappedOnly struct {
	*engine
	sector  int64
	refused atomic.Int32
	partial atomic.Int32
}

func (d *mappedOnly) ReadAt(p []byte, off int64) (int, error) {
	if off%d.sector == 0 && int64(len(p))%d.sector == 0 {
		d.refused.Add(1)
		return 0, errors.New("whole sectors are read from the mapping")
	}
	d.partial.Add(1)
	return d.engine.ReadAt(p, off)
}

// TestServeMappedGeometry: with the ciphertext mapped, reads of whole
// sectors decrypt from the mapping (the device refuses them) and match the
// engine, for 4096- and 512-byte sectors and a segment with an IV tweak
// (the IVs of the mapped path are the engine's); reads of part of a sector
// still go through the device. Concurrent writers and readers (of regions
// apart) see their own data through the mapping.
func TestServeMappedGeometry(t *testing.T) {
	needFUSE(t)
	for _, tc := range []struct {
		name    string
		sector  int
		ivTweak uint64
	}{
		{"4096", 4096, 0},
		{"4096-iv-tweak", 4096, 12345},
		{"512", 512, 0},
		{"512-iv-tweak", 512, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 4 << 20
			e := newEngineWith(t, size, tc.sector, tc.ivTweak)
			want := make([]byte, size)
			fill(want, tc.ivTweak+uint64(tc.sector))
			_, err := e.WriteAt(want, 0)
			require.NoError(t, err)
			dev := &mappedOnly{engine: e, sector: int64(tc.sector)}
			m := serve(t, dev, userspace.Options{Sync: e.sync, Ciphertext: e.mapped(t)})
			f, err := os.OpenFile(m.Path, os.O_RDWR, 0)
			require.NoError(t, err)
			defer f.Close()

			got := make([]byte, size)
			_, err = f.ReadAt(got, 0)
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, got), "whole file through the mapping")
			odd := make([]byte, 1000)
			_, err = f.ReadAt(odd, 3)
			require.NoError(t, err)
			require.Equal(t, want[3:1003], odd, "part of a sector through the device")
			require.Zero(t, dev.refused.Load(), "no whole-sector read reached the device")
			require.Positive(t, dev.partial.Load())

			// Writers and readers at once, each on its own 512 KiB
			// region: every reader sees the writes before its own
			// last one acknowledged.
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for w := range 4 {
				wg.Go(func() {
					region := int64(w) * (1 << 20)
					rng := rand.New(rand.NewPCG(uint64(w), tc.ivTweak))
					buf, back := make([]byte, 64<<10), make([]byte, 64<<10)
					for range 20 {
						off := region + rng.Int64N((1<<20)/int64(len(buf)))*int64(len(buf))
						fill(buf, rng.Uint64())
						if _, err := f.WriteAt(buf, off); err != nil {
							errs <- err
							return
						}
						if _, err := f.ReadAt(back, off); err != nil {
							errs <- err
							return
						}
						if !bytes.Equal(buf, back) {
							errs <- fmt.Errorf("writer %d reads other bytes at %d", w, off)
							return
						}
					}
				})
				wg.Go(func() { // and a reader of the whole file
					b := make([]byte, 1<<20)
					for i := range 8 {
						if _, err := f.ReadAt(b, int64(i%4)<<20); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.Zero(t, dev.refused.Load())
			direct := make([]byte, size)
			_, err = e.ReadAt(direct, 0)
			require.NoError(t, err)
			_, err = f.ReadAt(got, 0)
			require.NoError(t, err)
			require.True(t, bytes.Equal(direct, got), "the mapping matches the engine after the writes")
		})
	}
}

// TestServeMappedRSS: decrypted pages of the mapping leave this process's
// resident size (the OOM killer's measure) every 64 MiB decrypted, though
// reads come from it: after 80 MiB of reads, less than 48 MiB is there.
func TestServeMappedRSS(t *testing.T) {
	needFUSE(t)
	const size = 80 << 20
	e, want := filledEngine(t, size, 11)
	dev := &mappedOnly{engine: e, sector: 4096}
	m := serve(t, dev, userspace.Options{Ciphertext: e.mapped(t)})
	before := rssFileKiB(t)
	got, err := os.ReadFile(m.Path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got))
	require.Zero(t, dev.refused.Load(), "read from the mapping")
	require.Less(t, rssFileKiB(t)-before, int64(48<<10), "the mapped ciphertext is not all resident after the reads")
}

// rssFileKiB is this process's resident file-backed memory (RssFile).
func rssFileKiB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			var kib int64
			_, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib)
			require.NoError(t, err)
			return kib
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
