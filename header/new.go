package header

import (
	"crypto/rand"
	"encoding/json"
	"fmt"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/kdf"
)

// Defaults of a new LUKS2 header, as cryptsetup's.
const (
	DefaultMetadataSize = 16 << 10
	DefaultHeaderArea   = 16 << 20 // both copies and the key-slot area
	DefaultEncryption   = "aes-xts-plain64"
	DefaultSectorSize   = 4096
	DefaultHash         = "sha256"
	dataAlignment       = 1 << 20
)

// NewOptions describes a new LUKS2 header.
type NewOptions struct {
	UUID      string // random when empty
	Label     string
	Subsystem string
	// MetadataSizeBytes is the size of one header copy, one of HeaderSizes.
	MetadataSizeBytes int64
	// KeyslotsSizeBytes is the size of the key-slot area; by default the
	// header and key slots fill 16 MiB.
	KeyslotsSizeBytes int64
	// DataOffsetBytes is where the data segment starts; after the key-slot
	// area, aligned to 1 MiB, by default; 0 by default with a detached header.
	DataOffsetBytes int64
	Detached        bool
	Encryption      string
	SectorSize      int
	// DigestHash and DigestIterations set the volume key digest.
	DigestHash       string
	DigestIterations uint32
}

// New builds the header of a new volume whose key is volumeKey. It has a
// data segment and a digest and no key slots yet.
func New(volumeKey []byte, o NewOptions) (*Header, error) {
	if o.MetadataSizeBytes == 0 {
		o.MetadataSizeBytes = DefaultMetadataSize
	}
	if !ValidHeaderSize(o.MetadataSizeBytes) {
		return nil, fmt.Errorf("%w: metadata size %d is not one of 16k, 32k, … 4m", ErrInvalid, o.MetadataSizeBytes)
	}
	if o.KeyslotsSizeBytes == 0 {
		o.KeyslotsSizeBytes = DefaultHeaderArea - 2*o.MetadataSizeBytes
		if o.DataOffsetBytes > 0 && !o.Detached {
			o.KeyslotsSizeBytes = min(o.KeyslotsSizeBytes, o.DataOffsetBytes-2*o.MetadataSizeBytes)
		}
	}
	if o.KeyslotsSizeBytes <= 0 || o.KeyslotsSizeBytes%4096 != 0 || o.KeyslotsSizeBytes > MaxKeyslotsSize {
		return nil, fmt.Errorf("%w: key-slot area size %d must be a positive multiple of 4096 up to %d", ErrInvalid, o.KeyslotsSizeBytes, MaxKeyslotsSize)
	}
	end := 2*o.MetadataSizeBytes + o.KeyslotsSizeBytes
	if o.DataOffsetBytes == 0 && !o.Detached {
		o.DataOffsetBytes = alignUp(end, dataAlignment)
	}
	if !o.Detached && o.DataOffsetBytes < end {
		return nil, fmt.Errorf("%w: data offset %d lies inside the header and key slots (%d bytes)", ErrInvalid, o.DataOffsetBytes, end)
	}
	if o.DataOffsetBytes%512 != 0 {
		return nil, fmt.Errorf("%w: data offset %d is not a multiple of 512", ErrInvalid, o.DataOffsetBytes)
	}
	if o.Encryption == "" {
		o.Encryption = DefaultEncryption
	}
	if o.SectorSize == 0 {
		o.SectorSize = DefaultSectorSize
	}
	if !validSectorSize(o.SectorSize) {
		return nil, fmt.Errorf("%w: sector size %d is not a power of two in 512–4096", ErrInvalid, o.SectorSize)
	}
	if o.DataOffsetBytes%int64(o.SectorSize) != 0 {
		return nil, fmt.Errorf("%w: data offset %d is not a multiple of the sector size %d", ErrInvalid, o.DataOffsetBytes, o.SectorSize)
	}
	c, err := crypt.New(o.Encryption, volumeKey, o.SectorSize)
	if err != nil {
		return nil, fmt.Errorf("%w: cipher %s with a %d-bit key: %v", ErrInvalid, o.Encryption, len(volumeKey)*8, err)
	}
	c.Wipe()
	if o.DigestHash == "" {
		o.DigestHash = DefaultHash
	}
	if o.DigestIterations == 0 {
		o.DigestIterations = kdf.MinPBKDF2Iterations
	}
	if o.UUID == "" {
		if o.UUID, err = NewUUID(); err != nil {
			return nil, err
		}
	}
	d, err := newDigest(volumeKey, o.DigestHash, o.DigestIterations)
	if err != nil {
		return nil, fmt.Errorf("volume key digest: %w", err)
	}
	d.Segments = IDList{0}
	zero := U64(0)
	m := &Metadata{
		Keyslots: map[int]*Keyslot{},
		Tokens:   map[int]json.RawMessage{},
		Segments: map[int]*Segment{0: {
			Type: SegmentCrypt, Offset: U64(o.DataOffsetBytes), Size: SegmentSize{Dynamic: true},
			IVTweak: &zero, Encryption: o.Encryption, SectorSize: o.SectorSize,
		}},
		Digests: map[int]*Digest{0: d},
		Config:  Config{JSONSize: U64(o.MetadataSizeBytes - BinarySize), KeyslotsSize: U64(o.KeyslotsSizeBytes)},
	}
	h := &Header{Version: 2, UUID: o.UUID, Label: o.Label, Subsystem: o.Subsystem,
		Size: o.MetadataSizeBytes, CsumAlg: "sha256", Meta: m}
	if _, err := h.encode(1); err != nil {
		return nil, err
	}
	return h, nil
}

// NewUUID returns a random (version 4) UUID in its canonical text form.
func NewUUID() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}
