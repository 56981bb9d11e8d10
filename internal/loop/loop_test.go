package loop

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func requireLoop(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to attach loop devices")
	}
	if err := Available(); err != nil {
		t.Skipf("no loop devices: %v", err)
	}
}

func tempImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	return p
}

func TestAttachDetach(t *testing.T) {
	requireLoop(t)
	img := tempImage(t, 4<<20)
	d, err := Attach(img, false)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Detach() })

	got, err := BackingFile(d.Path)
	require.NoError(t, err)
	require.Equal(t, img, got)
	found, err := Find(img)
	require.NoError(t, err)
	require.Equal(t, d.Path, found)
	require.Equal(t, uint32(7), d.Major())
	t.Logf("%s: direct I/O %v", d.Path, d.DirectIO)

	// Write through the loop device, read it back from the file.
	f, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	require.NoError(t, err)
	buf := make([]byte, 4096)
	copy(buf, "volcrypt loop test")
	_, err = f.WriteAt(buf, 8192)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	require.Equal(t, "volcrypt loop test", string(raw[8192:8192+18]))

	flags, err := os.ReadFile(filepath.Join(sysDir(d.Path), "autoclear"))
	require.NoError(t, err)
	require.Equal(t, "1\n", string(flags))

	require.NoError(t, d.Detach())
	_, err = BackingFile(d.Path)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = Find(img)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, Detach(d.Path), ErrNotFound)
}

func TestAttachReadOnly(t *testing.T) {
	requireLoop(t)
	img := tempImage(t, 1<<20)
	d, err := Attach(img, true)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Detach() })
	ro, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.Path), "ro"))
	require.NoError(t, err)
	require.Equal(t, "1\n", string(ro))
	// Depending on the kernel, the open or the write fails.
	f, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteAt(make([]byte, 4096), 0)
		if err == nil {
			err = f.Sync()
		}
		f.Close()
	}
	require.Error(t, err, "a read-only loop device must refuse writes")
}

func TestAutoclear(t *testing.T) {
	requireLoop(t)
	img := tempImage(t, 1<<20)
	d, err := Attach(img, false)
	require.NoError(t, err)
	path := d.Path
	// A second opener keeps it alive after our Close.
	holder, err := os.Open(path)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	_, err = BackingFile(path)
	require.NoError(t, err, "still attached while held open")
	require.NoError(t, holder.Close())
	_, err = BackingFile(path)
	require.ErrorIs(t, err, ErrNotFound, "autoclear detaches at the last close")
}

func TestAttachErrors(t *testing.T) {
	requireLoop(t)
	_, err := Attach(filepath.Join(t.TempDir(), "missing"), false)
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = Attach(t.TempDir(), false)
	require.Error(t, err)
	require.ErrorIs(t, Detach("/dev/null"), ErrNotFound)
	_, err = BackingFile("/dev/loop-nonexistent")
	require.ErrorIs(t, err, ErrNotFound)
}
