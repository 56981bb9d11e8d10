package dm

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/volcrypt/volcrypt/internal/keyring"
)

// CryptOptions tune CreateCrypt.
type CryptOptions struct {
	// UUID is the device-mapper UUID, normally CryptUUID(type, volume UUID, name).
	UUID string
	// ReadOnly loads a read-only table: writes to the mapping fail.
	ReadOnly bool
	// NoKeyringFallback makes CreateCrypt fail instead of putting the key
	// into the table in hex when the kernel has no keyring support.
	NoKeyringFallback bool
}

// CreateCrypt activates a dm-crypt mapping named name, as `cryptsetup open`
// does: when t.KeyDescription is set, key is added as a logon key to the
// thread keyring and the table refers to it; otherwise (or when the kernel
// has no keyring and fallback is allowed) the table carries the key in hex.
// Then it creates the device, loads the table, resumes it, revokes and
// unlinks the keyring key and makes /dev/mapper/NAME when udev does not.
//
// All of it runs on one OS thread that is thrown away afterwards, so the key
// is found by dm-crypt and no thread keyring outlives the call. On any
// failure the device and the key are removed again. Every buffer that held
// the key in hex is wiped; the caller still owns and wipes key.
//
// A name or UUID in use gives ErrExists; a key dm-crypt cannot find gives
// ErrKeyNotAvailable.
func CreateCrypt(name string, t CryptTarget, key []byte, opts CryptOptions) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	if err := t.Validate(); err != nil {
		return Info{}, err
	}
	if len(key) != t.KeySize {
		return Info{}, fmt.Errorf("create crypt device %s: key of %d bytes for key size %d: %w", name, len(key), t.KeySize, ErrInvalid)
	}
	type result struct {
		info Info
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the runtime ends this thread, and with it the
		// thread keyring, when the goroutine returns.
		runtime.LockOSThread()
		info, err := createCryptLocked(name, t, key, opts)
		done <- result{info, err}
	}()
	r := <-done
	return r.info, r.err
}

func createCryptLocked(name string, t CryptTarget, key []byte, opts CryptOptions) (info Info, err error) {
	var k keyring.Key
	if t.KeyDescription != "" {
		k, err = keyring.AddLogon(t.KeyDescription, key)
		if errors.Is(err, keyring.ErrUnsupported) && !opts.NoKeyringFallback {
			t.KeyDescription, t.KeyType, err = "", "", nil
		}
		if err != nil {
			return Info{}, fmt.Errorf("create crypt device %s: %w", name, err)
		}
	}
	defer func() {
		if rmErr := k.Remove(); rmErr != nil && err == nil {
			err = fmt.Errorf("create crypt device %s: %w", name, rmErr)
		}
	}()

	params, err := t.Params(key)
	if err != nil {
		return Info{}, fmt.Errorf("create crypt device %s: %w", name, err)
	}
	defer clear(params)
	// The params string must not outlive this call when it carries a hex
	// key: it is converted to a string only inside encodeTargets' copy,
	// which load wipes.
	c, err := openControl()
	if err != nil {
		return Info{}, err
	}
	defer c.close()
	c.pruneNodes()

	info, err = c.create(name, opts.UUID)
	if err != nil {
		return Info{}, err
	}
	created := true
	defer func() {
		if err != nil && created {
			_, _ = c.call(deviceRemoveCmd, header{name: name}, nil)
			removeNode(name, info.Major, info.Minor)
		}
	}()
	if err = c.loadRaw(name, t.SizeBytes/SectorSize, "crypt", params, opts.ReadOnly); err != nil {
		return Info{}, err
	}
	if err = c.resume(name); err != nil {
		return Info{}, err
	}
	if err = ensureNode(name, info.Major, info.Minor); err != nil {
		return Info{}, fmt.Errorf("create crypt device %s: %w", name, err)
	}
	info, err = c.info(name)
	if err != nil {
		return Info{}, err
	}
	return info, nil
}
