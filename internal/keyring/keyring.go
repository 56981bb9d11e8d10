// Package keyring puts volume keys into the Linux kernel keyring for
// dm-crypt, the way cryptsetup does: as a "logon" key (readable by the
// kernel only, never by user space) in the calling thread's keyring, removed
// again once the dm-crypt table that names it has been loaded.
//
// Pitfall: the thread keyring belongs to one OS thread, and dm-crypt looks
// the key up in the keyrings of the thread that loads the table. Adding the
// key and loading the table must therefore happen on the same OS thread:
// call runtime.LockOSThread before Add and keep it locked until after
// Remove (dm.CreateCrypt does this). Otherwise the Go scheduler may move
// the goroutine between the two system calls and the load fails now and
// then with ENOKEY ("required key not available").
package keyring

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrUnsupported means the kernel has no keyring support (keyctl/add_key
	// return ENOSYS) or the key type is not available.
	ErrUnsupported = errors.New("kernel keyring not supported")
	// ErrNotFound means no key with that description is reachable.
	ErrNotFound = errors.New("key not found")
	// ErrInvalid means a malformed description or an empty key.
	ErrInvalid = errors.New("invalid key")
)

// TypeLogon is the key type dm-crypt reads volume keys from.
const TypeLogon = "logon"

// Key is a key in the kernel keyring, identified by its serial number.
type Key struct {
	ID          int
	Type        string
	Description string
}

// AddLogon adds key as a "logon" key named description to the calling
// thread's keyring (KEY_SPEC_THREAD_KEYRING, as cryptsetup does) and returns
// it. description must have the form "<prefix>:<rest>" (a kernel rule for
// logon keys), e.g. "cryptsetup:<uuid>-d0". The kernel keeps its own copy;
// the caller still wipes key. See the package doc about OS threads.
func AddLogon(description string, key []byte) (Key, error) {
	return add(TypeLogon, description, key, unix.KEY_SPEC_THREAD_KEYRING)
}

func add(keyType, description string, key []byte, ring int) (Key, error) {
	if len(key) == 0 {
		return Key{}, fmt.Errorf("add %s key %q: empty key: %w", keyType, description, ErrInvalid)
	}
	if prefix, _, ok := strings.Cut(description, ":"); keyType == TypeLogon && (!ok || prefix == "") {
		return Key{}, fmt.Errorf("add %s key %q: description needs a \"prefix:\": %w", keyType, description, ErrInvalid)
	}
	id, err := unix.AddKey(keyType, description, key, ring)
	if err != nil {
		return Key{}, fmt.Errorf("add %s key %q: %w", keyType, description, mapErr(err))
	}
	return Key{ID: id, Type: keyType, Description: description}, nil
}

// Remove revokes the key, so that nothing can use it any more even where
// it is still linked, and unlinks it from the calling thread's keyring.
// It is what cryptsetup does once dm-crypt has copied the key.
func (k Key) Remove() error {
	if k.ID == 0 {
		return nil
	}
	var errs []error
	if _, err := unix.KeyctlInt(unix.KEYCTL_REVOKE, k.ID, 0, 0, 0); err != nil && !errors.Is(err, unix.ENOKEY) && !errors.Is(err, unix.EKEYREVOKED) {
		errs = append(errs, fmt.Errorf("revoke key %q: %w", k.Description, mapErr(err)))
	}
	if _, err := unix.KeyctlInt(unix.KEYCTL_UNLINK, k.ID, unix.KEY_SPEC_THREAD_KEYRING, 0, 0); err != nil &&
		!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOKEY) && !errors.Is(err, unix.EKEYREVOKED) {
		errs = append(errs, fmt.Errorf("unlink key %q: %w", k.Description, mapErr(err)))
	}
	return errors.Join(errs...)
}

// Search looks for a key of the given type and description in the calling
// thread's keyrings (thread, process, session), as dm-crypt does.
func Search(keyType, description string) (Key, error) {
	id, err := unix.KeyctlSearch(unix.KEY_SPEC_THREAD_KEYRING, keyType, description, 0)
	if errors.Is(err, unix.ENOKEY) || errors.Is(err, unix.ENOENT) {
		// The thread keyring may not exist yet; search the session.
		id, err = unix.KeyctlSearch(unix.KEY_SPEC_SESSION_KEYRING, keyType, description, 0)
	}
	if err != nil {
		return Key{}, fmt.Errorf("search %s key %q: %w", keyType, description, mapErr(err))
	}
	return Key{ID: id, Type: keyType, Description: description}, nil
}

// Supported reports whether the kernel keyring can hold logon keys: it
// adds a throw-away one-byte key to the thread keyring and removes it.
func Supported() error {
	k, err := AddLogon("volcrypt:probe", []byte{0})
	if err != nil {
		return err
	}
	return k.Remove()
}

func mapErr(err error) error {
	switch {
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.ENODEV):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	case errors.Is(err, unix.ENOKEY), errors.Is(err, unix.EKEYREVOKED), errors.Is(err, unix.EKEYEXPIRED):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
