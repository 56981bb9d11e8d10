package keyring

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// requireKeyring skips where keyctl is blocked (some containers filter it).
func requireKeyring(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	if err := Supported(); err != nil {
		if errors.Is(err, ErrUnsupported) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			t.Skipf("kernel keyring not usable here: %v", err)
		}
		t.Fatalf("probe keyring: %v", err)
	}
}

func TestAddSearchRemove(t *testing.T) {
	requireKeyring(t)
	desc := "volcrypt:test-" + strings.ReplaceAll(t.Name(), "/", "-")
	k, err := AddLogon(desc, []byte("0123456789abcdef0123456789abcdef"))
	require.NoError(t, err)
	require.NotZero(t, k.ID)
	require.Equal(t, TypeLogon, k.Type)

	found, err := Search(TypeLogon, desc)
	require.NoError(t, err)
	require.Equal(t, k.ID, found.ID)

	// A logon key's payload cannot be read back from user space.
	_, err = unix.KeyctlBuffer(unix.KEYCTL_READ, k.ID, make([]byte, 64), 0)
	require.Error(t, err)

	require.NoError(t, k.Remove())
	_, err = Search(TypeLogon, desc)
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, k.Remove(), "removing twice is harmless")
	require.NoError(t, Key{}.Remove())
}

func TestThreadKeyringIsPerThread(t *testing.T) {
	requireKeyring(t)
	desc := "volcrypt:thread-test"
	k, err := AddLogon(desc, []byte("key"))
	require.NoError(t, err)
	defer k.Remove()
	other := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // a different OS thread: never unlocked, so it exits
		_, err := Search(TypeLogon, desc)
		other <- err
	}()
	require.ErrorIs(t, <-other, ErrNotFound, "another thread must not see this thread's key")
}

func TestAddErrors(t *testing.T) {
	_, err := AddLogon("nocolon", []byte("k"))
	require.ErrorIs(t, err, ErrInvalid)
	_, err = AddLogon(":x", []byte("k"))
	require.ErrorIs(t, err, ErrInvalid)
	_, err = AddLogon("volcrypt:x", nil)
	require.ErrorIs(t, err, ErrInvalid)
	if os.Getenv("VOLCRYPT_VM") == "1" {
		requireKeyring(t) // in the VM the keyring must work
	}
}
