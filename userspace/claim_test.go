package userspace_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/internal/lock"
	"github.com/volcrypt/volcrypt/userspace"
)

// TestClaim: a claimed file cannot be claimed again (the second server
// learns the first's PID), whether either serves read-only or not; the
// claim does not block cryptsetup's locks (internal/lock's flock), and
// released, it can be taken again.
func TestClaim(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 4096), 0o600))
	for _, tc := range []struct {
		name          string
		first, second bool // write
	}{
		{"rw-then-rw", true, true},
		{"rw-then-ro", true, false},
		{"ro-then-rw", false, true},
		{"ro-then-ro", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := userspace.ClaimFile(img, tc.first)
			require.NoError(t, err)
			t.Cleanup(c.Release)
			_, err = userspace.ClaimFile(img, tc.second)
			var served *userspace.ServedError
			require.ErrorAs(t, err, &served)
			require.Equal(t, os.Getpid(), served.PID)
			require.ErrorIs(t, err, unix.EBUSY)
			require.ErrorContains(t, err, "busy: "+img+" is already served by PID")

			for _, take := range []func(string) (*lock.Lock, error){lock.TryExclusive, lock.TryShared} {
				l, err := take(img)
				require.NoError(t, err, "cryptsetup's lock is free while served")
				require.NoError(t, l.Unlock())
			}
			c.Release()
			c.Release()
			c, err = userspace.ClaimFile(img, tc.second)
			require.NoError(t, err)
			c.Release()
		})
	}
	_, err := userspace.ClaimFile(filepath.Join(t.TempDir(), "missing"), false)
	require.ErrorIs(t, err, os.ErrNotExist)
}
