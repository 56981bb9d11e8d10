// Package volume implements volcrypt's use cases on LUKS volumes: format,
// unlock, key management, and (with device-mapper) open and close. It wires
// the header, kdf and crypt packages to real files and devices; a Go program
// can use it as a library.
package volume

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/lock"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
)

var (
	// ErrDeviceNotFound means the device or image file does not exist or is
	// not usable (cryptsetup's exit code 4).
	ErrDeviceNotFound = errors.New("device not found")
	// ErrInUse means the device is busy or the target exists (exit code 5).
	ErrInUse = errors.New("device is in use")
	// ErrPermission means the caller may not open the device (exit code 2).
	ErrPermission = errors.New("permission denied")
	// ErrHasSignature means the device holds a file system, partition table
	// or LUKS header that formatting would destroy.
	ErrHasSignature = errors.New("device holds data")
	// ErrInvalidParams means a parameter of a volume operation cannot be
	// used (cryptsetup's exit code 1). It matches kdf.ErrInvalidParams too,
	// so one check covers a bad KDF parameter and a bad volume parameter.
	ErrInvalidParams error = invalidParamsError{}
)

type invalidParamsError struct{}

func (invalidParamsError) Error() string        { return "invalid parameters" }
func (invalidParamsError) Is(target error) bool { return target == kdf.ErrInvalidParams }

// Volume is a LUKS volume on a block device or image file, with its header
// read. Close releases it.
type Volume struct {
	// Path is the data device; HeaderPath is where the header lives (the
	// same file unless the header is detached).
	Path       string
	HeaderPath string
	Header     *header.Header

	hdr    device
	data   *os.File
	log    *slog.Logger
	rdonly bool
}

// device is what a header lives on: the *os.File of a device or image, or
// in crash tests a fault-injecting stand-in.
type device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// LoadOptions say how to open a volume.
type LoadOptions struct {
	// HeaderFile is a detached header; empty when the header is on the
	// device.
	HeaderFile string
	// ReadOnly opens the files read-only; header updates then fail.
	ReadOnly bool
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

func discardLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// openFile opens a device or image, mapping errors to the package's
// sentinels.
func openFile(path string, readOnly bool) (*os.File, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s: %w", path, ErrDeviceNotFound)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("%s: %w", path, ErrPermission)
	case errors.Is(err, unix.EBUSY):
		return nil, fmt.Errorf("%s: %w", path, ErrInUse)
	case errors.Is(err, unix.EISDIR):
		return nil, fmt.Errorf("%s is not a block device or image file: %w", path, ErrDeviceNotFound)
	default:
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if st.IsDir() || (!st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0) {
		f.Close()
		return nil, fmt.Errorf("%s is not a block device or image file: %w", path, ErrDeviceNotFound)
	}
	return f, nil
}

// Load opens a LUKS volume and reads its header.
func Load(path string, o LoadOptions) (*Volume, error) {
	v := &Volume{Path: path, HeaderPath: path, log: discardLogger(o.Logger), rdonly: o.ReadOnly}
	var err error
	if v.data, err = openFile(path, o.ReadOnly); err != nil {
		return nil, err
	}
	v.hdr = v.data
	if o.HeaderFile != "" {
		v.HeaderPath = o.HeaderFile
		f, err := openFile(o.HeaderFile, o.ReadOnly)
		if err != nil {
			v.data.Close()
			return nil, err
		}
		v.hdr = f
	}
	if err := v.withLock(false, func() error {
		v.Header, err = header.Read(v.hdr)
		return err
	}); err != nil {
		v.Close()
		if errors.Is(err, header.ErrNotLUKS) {
			return nil, fmt.Errorf("%s is not a valid LUKS device: %w", v.HeaderPath, err)
		}
		return nil, fmt.Errorf("read header of %s: %w", v.HeaderPath, err)
	}
	for _, d := range v.Header.Damaged {
		v.log.Debug("header copy not used", "err", d)
	}
	return v, nil
}

// Close releases the volume's files.
func (v *Volume) Close() error {
	var err error
	if v.hdr != nil && v.hdr != device(v.data) {
		err = v.hdr.Close()
	}
	if v.data != nil {
		err = errors.Join(err, v.data.Close())
	}
	v.hdr, v.data = nil, nil
	return err
}

// withLock runs fn holding cryptsetup's lock on the header's device: shared
// for reads, exclusive for updates (internal/lock: /run/cryptsetup/L_M:m
// for block devices, a flock on the file itself for images), so volcrypt
// and cryptsetup never interleave header updates.
func (v *Volume) withLock(exclusive bool, fn func() error) error {
	take := lock.Shared
	if exclusive {
		take = lock.Exclusive
	}
	l, err := take(v.HeaderPath)
	if err != nil {
		return fmt.Errorf("lock %s: %w", v.HeaderPath, err)
	}
	defer l.Unlock()
	return fn()
}

// update runs fn on a freshly read header under an exclusive lock and
// writes the header back if fn succeeds. A volume whose header declares
// unknown mandatory requirements is refused before fn runs.
func (v *Volume) update(fn func(h *header.Header) error) error {
	if v.rdonly {
		return fmt.Errorf("%s is open read-only", v.HeaderPath)
	}
	return v.withLock(true, func() error {
		h, err := header.Read(v.hdr)
		if err != nil {
			return fmt.Errorf("re-read header: %w", err)
		}
		if err := checkWritable(h); err != nil {
			return err
		}
		// A stale copy may still name key-slot areas the newer one calls
		// free: bring it up to date before fn writes any key material, so
		// an interruption can only fall back to the current key set.
		if err := h.Repair(v.hdr); err != nil {
			return err
		}
		if err := fn(h); err != nil {
			return err
		}
		if err := h.Write(v.hdr); err != nil {
			return err
		}
		v.Header = h
		return nil
	})
}

func checkWritable(h *header.Header) error {
	if h.Version != 2 {
		return fmt.Errorf("LUKS%d volume: %w; convert it with cryptsetup convert --type luks2", h.Version, header.ErrReadOnlyFormat)
	}
	if unmet := h.Meta.UnmetRequirements(); len(unmet) > 0 {
		return &header.RequirementsError{Requirements: unmet}
	}
	return nil
}

// DataSize returns the size in bytes of the data device.
func (v *Volume) DataSize() (int64, error) {
	return deviceSize(v.data)
}

func deviceSize(f *os.File) (int64, error) {
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", f.Name(), err)
	}
	return n, nil
}

// UnlockOptions say which key slots to try and what KDF cost to accept.
type UnlockOptions struct {
	// Keyslot, when non-negative, is the only slot tried.
	Keyslot int
	// Limits caps the KDF cost read from the header; zero means
	// kdf.DefaultLimits.
	Limits kdf.Limits
}

// Unlock returns the volume key that passphrase opens and the key slot
// that held it. Its error wraps header.ErrWrongKey when no slot opens.
func (v *Volume) Unlock(passphrase []byte, o UnlockOptions) (*secret.Buffer, int, error) {
	if o.Limits == (kdf.Limits{}) {
		o.Limits = kdf.DefaultLimits()
	}
	var (
		key  *secret.Buffer
		slot int
	)
	err := v.withLock(false, func() error {
		var err error
		key, slot, err = v.Header.Unlock(v.hdr, passphrase, header.UnlockOptions{Keyslot: o.Keyslot, Limits: o.Limits})
		return err
	})
	if err != nil {
		return nil, -1, err
	}
	v.log.Debug("key slot opened", "slot", slot)
	return key, slot, nil
}

// Plaintext is the decrypted view of a volume's data segment through the
// userspace engine, identical on disk to dm-crypt: what a mapping would show,
// on hosts without device-mapper. Close wipes its key.
type Plaintext struct {
	*crypt.Segment
	c *crypt.Cipher
}

// Close wipes the engine's key.
func (p *Plaintext) Close() error {
	p.c.Wipe()
	return nil
}

// Plaintext opens the data segment with the volume key.
func (v *Volume) Plaintext(key *secret.Buffer) (*Plaintext, error) {
	seg, err := v.Header.DataSegment()
	if err != nil {
		return nil, err
	}
	if seg.Type != header.SegmentCrypt {
		return nil, fmt.Errorf("data segment of type %q is not supported", seg.Type)
	}
	c, err := crypt.New(seg.Encryption, key.Bytes(), seg.SectorSize)
	if err != nil {
		return nil, err
	}
	size := int64(seg.Size.Bytes)
	if seg.Size.Dynamic {
		total, err := v.DataSize()
		if err != nil {
			c.Wipe()
			return nil, err
		}
		size = total - int64(seg.Offset)
		size -= size % int64(seg.SectorSize)
	}
	if size < 0 {
		size = 0
	}
	return &Plaintext{Segment: crypt.NewSegment(v.data, c, int64(seg.Offset), size, uint64(*seg.IVTweak)), c: c}, nil
}
