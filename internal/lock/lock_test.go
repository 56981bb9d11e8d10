package lock

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/loop"
)

func TestFileLocks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	require.NoError(t, os.WriteFile(p, make([]byte, 4096), 0o600))

	s1, err := Shared(p)
	require.NoError(t, err)
	s2, err := TryShared(p)
	require.NoError(t, err, "shared locks coexist")
	_, err = TryExclusive(p)
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, s1.Unlock())
	require.NoError(t, s2.Unlock())
	require.NoError(t, s2.Unlock(), "idempotent")

	ex, err := Exclusive(p)
	require.NoError(t, err)
	_, err = TryShared(p)
	require.ErrorIs(t, err, ErrLocked)

	// Exclusive waits for the holder.
	got := make(chan error, 1)
	go func() {
		l, err := Exclusive(p)
		if err == nil {
			err = l.Unlock()
		}
		got <- err
	}()
	select {
	case <-got:
		t.Fatal("second exclusive lock taken while the first is held")
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, ex.Unlock())
	require.NoError(t, <-got)

	_, err = Shared(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = Shared(t.TempDir())
	require.Error(t, err)
}

func TestBlockDeviceLock(t *testing.T) {
	if os.Geteuid() != 0 || loop.Available() != nil {
		t.Skip("needs root and loop devices for a block device")
	}
	Dir = filepath.Join(t.TempDir(), "cryptsetup")
	t.Cleanup(func() { Dir = "/run/cryptsetup" })
	img := filepath.Join(t.TempDir(), "img")
	require.NoError(t, os.WriteFile(img, make([]byte, 1<<20), 0o600))
	d, err := loop.Attach(img, false)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Detach() })

	l, err := Exclusive(d.Path)
	require.NoError(t, err)
	lf := FileFor(d.Major(), d.Minor())
	require.Equal(t, filepath.Join(Dir, "L_7:"+filepath.Base(lf)[4:]), lf)
	fi, err := os.Stat(lf)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	_, err = TryShared(d.Path)
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, l.Unlock())
	_, err = os.Stat(lf)
	require.ErrorIs(t, err, os.ErrNotExist, "lock file removed by the last holder")

	s, err := Shared(d.Path)
	require.NoError(t, err)
	_, err = TryExclusive(d.Path)
	require.ErrorIs(t, err, ErrLocked)
	require.NoError(t, s.Unlock())
}

// TestCryptsetupSeesOurLock checks interoperability: while we hold an
// exclusive lock on an image, cryptsetup must wait for it.
func TestCryptsetupSeesOurLock(t *testing.T) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	require.NoError(t, os.WriteFile(img, make([]byte, 32<<20), 0o600))
	pw := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pw, []byte("pw"), 0o600))
	out, err := exec.Command(cs, "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file", pw, img).CombinedOutput()
	require.NoError(t, err, string(out))

	requireWaits(t, cs, img)

	// The same through a loop device: the lock is then /run/cryptsetup/L_7:N.
	if os.Geteuid() != 0 || loop.Available() != nil {
		t.Skip("needs root and loop devices for the block device case")
	}
	d, err := loop.Attach(img, false)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Detach() })
	requireWaits(t, cs, d.Path)
}

// requireWaits holds an exclusive lock on path and checks that
// `cryptsetup luksDump path` waits for it.
func requireWaits(t *testing.T, cs, path string) {
	t.Helper()
	l, err := Exclusive(path)
	require.NoError(t, err)
	cmd := exec.Command(cs, "luksDump", path)
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("cryptsetup luksDump finished while we held the exclusive lock: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	require.NoError(t, l.Unlock())
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("cryptsetup still blocked after unlock")
	}
}
