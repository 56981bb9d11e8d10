package volume

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
)

// FormatOptions describe a new volume. Zero fields take cryptsetup's LUKS2
// defaults: aes-xts-plain64 with a 512-bit key, 4096-byte sectors, sha256,
// Argon2id calibrated to 2 s, a 16 KiB header and data at 16 MiB.
type FormatOptions struct {
	Cipher      string
	KeySizeBits int
	SectorSize  int
	Hash        string // digest and anti-forensic hash
	KDF         KDFOptions
	Label       string
	Subsystem   string
	UUID        string
	Keyslot     int // the key slot of the passphrase; negative or 0: slot 0
	// MetadataSizeBytes and KeyslotsSizeBytes size the header and the
	// key-slot area; OffsetBytes places the data.
	MetadataSizeBytes int64
	KeyslotsSizeBytes int64
	OffsetBytes       int64
	// HeaderFile puts the header in a separate file (created if missing);
	// the data then starts at OffsetBytes (0 by default).
	HeaderFile string
	// VolumeKey is used instead of a random key when set.
	VolumeKey []byte
	// Force formats over an existing file system, partition table or LUKS
	// header; without it Format refuses with ErrHasSignature.
	Force  bool
	Logger *slog.Logger
}

// Format writes a new LUKS2 header to path (or to o.HeaderFile) with one key
// slot that passphrase opens, and returns the loaded volume.
func Format(ctx context.Context, path string, passphrase []byte, o FormatOptions) (*Volume, error) {
	if o.Cipher == "" {
		o.Cipher = header.DefaultEncryption
	}
	if o.KeySizeBits == 0 {
		o.KeySizeBits = 512
	}
	if o.KeySizeBits%8 != 0 || o.KeySizeBits <= 0 || o.KeySizeBits > header.MaxKeySize*8 {
		return nil, fmt.Errorf("%w: key size %d bits", ErrInvalidParams, o.KeySizeBits)
	}
	if o.Hash == "" {
		o.Hash = header.DefaultHash
	}
	if _, err := kdf.HashFunc(o.Hash); err != nil {
		return nil, err
	}
	data, err := openFile(path, false)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	hdrFile := data
	if o.HeaderFile != "" {
		f, err := os.OpenFile(o.HeaderFile, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("header file: %w", err)
		}
		defer f.Close()
		hdrFile = f
	}
	if !o.Force {
		for _, f := range []*os.File{data, hdrFile} {
			sig, err := Probe(f)
			if err != nil {
				return nil, fmt.Errorf("probe %s: %w", f.Name(), err)
			}
			if sig != "" {
				return nil, fmt.Errorf("%s holds a %s: %w", f.Name(), sig, ErrHasSignature)
			}
		}
	}
	size, err := deviceSize(data)
	if err != nil {
		return nil, err
	}

	keyLen := o.KeySizeBits / 8
	vk := secret.New(keyLen)
	defer vk.Wipe()
	if o.VolumeKey != nil {
		if len(o.VolumeKey) != keyLen {
			return nil, fmt.Errorf("%w: volume key is %d bits, key size is %d", ErrInvalidParams, len(o.VolumeKey)*8, o.KeySizeBits)
		}
		copy(vk.Bytes(), o.VolumeKey)
	} else if _, err := io.ReadFull(rand.Reader, vk.Bytes()); err != nil {
		return nil, fmt.Errorf("volume key: %w", err)
	}

	digestIter, err := kdf.DigestIterations(ctx, o.Hash, keyLen)
	if err != nil {
		return nil, err
	}
	newOpts := header.NewOptions{
		UUID: o.UUID, Label: o.Label, Subsystem: o.Subsystem,
		MetadataSizeBytes: o.MetadataSizeBytes, KeyslotsSizeBytes: o.KeyslotsSizeBytes,
		DataOffsetBytes: o.OffsetBytes, Detached: o.HeaderFile != "",
		Encryption: o.Cipher, SectorSize: o.SectorSize, DigestHash: o.Hash, DigestIterations: digestIter,
	}
	h, err := header.New(vk.Bytes(), newOpts)
	if err != nil {
		return nil, err
	}
	seg, _ := h.DataSegment()
	if o.SectorSize == 0 && (size-int64(seg.Offset))%int64(seg.SectorSize) != 0 {
		// As cryptsetup: 4096-byte sectors only when the data fits them.
		newOpts.SectorSize = 512
		if h, err = header.New(vk.Bytes(), newOpts); err != nil {
			return nil, err
		}
		seg, _ = h.DataSegment()
	}
	if o.HeaderFile == "" && size < int64(seg.Offset)+int64(seg.SectorSize) {
		return nil, fmt.Errorf("%s is %d bytes, too small for a %d-byte LUKS2 header and data: %w", path, size, seg.Offset, ErrDeviceNotFound)
	}
	if (size-int64(seg.Offset))%int64(seg.SectorSize) != 0 {
		return nil, fmt.Errorf("%w: data area of %d bytes is not a multiple of the %d-byte sector size", ErrInvalidParams, size-int64(seg.Offset), seg.SectorSize)
	}
	p, err := o.KDF.Resolve(ctx, keyLen)
	if err != nil {
		return nil, err
	}

	v := &Volume{Path: path, HeaderPath: hdrFile.Name(), hdr: hdrFile, data: data, log: discardLogger(o.Logger)}
	err = v.withLock(true, func() error {
		// Zero the header and key-slot area first, as cryptsetup does, so
		// that nothing of an older header survives.
		if err := zeroRange(hdrFile, 0, h.KeyslotsEnd()); err != nil {
			return err
		}
		if _, err := h.AddKeyslot(hdrFile, o.Keyslot, passphrase, vk.Bytes(), header.KeyslotParams{KDF: p, AFHash: o.Hash}); err != nil {
			return err
		}
		return h.Write(hdrFile)
	})
	if err != nil {
		return nil, fmt.Errorf("format %s: %w", path, err)
	}
	return Load(path, LoadOptions{HeaderFile: o.HeaderFile, Logger: o.Logger})
}

// zeroRange writes zeros over [from, to) and flushes.
func zeroRange(f *os.File, from, to int64) error {
	buf := make([]byte, 1<<20)
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("wipe header area: %w", err)
		}
		off += n
	}
	return f.Sync()
}

// ErrLastKeyslot means a removal would leave the volume with no key slot
// for its data; the caller must confirm it.
var ErrLastKeyslot = errors.New("this is the last key slot: the volume would become unusable")
