package header

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/volcrypt/volcrypt/kdf"
)

// Sizes and offsets of the LUKS2 binary header, as the LUKS2 specification
// and cryptsetup define them.
const (
	BinarySize    = 4096 // the binary part of each header copy
	usedBinary    = 512  // bytes of the binary part that carry fields
	magicLen      = 6
	labelLen      = 48
	csumAlgLen    = 32
	saltLen       = 64
	uuidLen       = 40
	subsystemLen  = 48
	csumLen       = 64
	offCsum       = 448
	MaxHeaderSize = 4 << 20 // largest legal hdr_size
)

var (
	magicPrimary   = []byte{'L', 'U', 'K', 'S', 0xba, 0xbe}
	magicSecondary = []byte{'S', 'K', 'U', 'L', 0xba, 0xbe}
)

// HeaderSizes lists the legal LUKS2 header sizes (binary header plus JSON
// area), smallest first. The secondary copy starts at the same offset.
var HeaderSizes = []int64{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20}

// ValidHeaderSize reports whether n is one of HeaderSizes.
func ValidHeaderSize(n int64) bool {
	for _, s := range HeaderSizes {
		if s == n {
			return true
		}
	}
	return false
}

// binaryHeader is the fixed part of one LUKS2 header copy.
type binaryHeader struct {
	Magic     [magicLen]byte
	Version   uint16
	HdrSize   uint64
	SeqID     uint64
	Label     string
	CsumAlg   string
	Salt      [saltLen]byte
	UUID      string
	Subsystem string
	HdrOffset uint64
	Csum      [csumLen]byte
}

func (b *binaryHeader) isPrimary() bool { return bytes.Equal(b.Magic[:], magicPrimary) }

// parseBinary decodes the first 512 bytes of a header copy. It checks only
// what can be checked without the JSON area: magic, version and hdr_size.
func parseBinary(p []byte) (*binaryHeader, error) {
	if len(p) < usedBinary {
		return nil, fmt.Errorf("%w: binary header is %d bytes, need %d", ErrNotLUKS, len(p), usedBinary)
	}
	var b binaryHeader
	copy(b.Magic[:], p[0:6])
	if !bytes.Equal(b.Magic[:], magicPrimary) && !bytes.Equal(b.Magic[:], magicSecondary) {
		return nil, ErrNotLUKS
	}
	b.Version = binary.BigEndian.Uint16(p[6:8])
	if b.Version != 2 {
		return nil, &VersionError{Version: int(b.Version)}
	}
	b.HdrSize = binary.BigEndian.Uint64(p[8:16])
	b.SeqID = binary.BigEndian.Uint64(p[16:24])
	b.Label = cString(p[24 : 24+labelLen])
	b.CsumAlg = cString(p[72 : 72+csumAlgLen])
	copy(b.Salt[:], p[104:104+saltLen])
	b.UUID = cString(p[168 : 168+uuidLen])
	b.Subsystem = cString(p[208 : 208+subsystemLen])
	b.HdrOffset = binary.BigEndian.Uint64(p[256:264])
	copy(b.Csum[:], p[offCsum:offCsum+csumLen])
	if !ValidHeaderSize(int64(b.HdrSize)) {
		return nil, &FormatError{Field: "hdr_size", Reason: fmt.Sprintf("%d is not a legal LUKS2 header size", b.HdrSize)}
	}
	return &b, nil
}

// marshal encodes the binary header into the first 4096 bytes of p with the
// checksum field zeroed.
func (b *binaryHeader) marshal(p []byte) error {
	if len(b.Label) >= labelLen {
		return &FormatError{Field: "label", Reason: fmt.Sprintf("longer than %d bytes", labelLen-1)}
	}
	if len(b.Subsystem) >= subsystemLen {
		return &FormatError{Field: "subsystem", Reason: fmt.Sprintf("longer than %d bytes", subsystemLen-1)}
	}
	if len(b.UUID) >= uuidLen {
		return &FormatError{Field: "uuid", Reason: fmt.Sprintf("longer than %d bytes", uuidLen-1)}
	}
	clear(p[:BinarySize])
	copy(p[0:6], b.Magic[:])
	binary.BigEndian.PutUint16(p[6:8], b.Version)
	binary.BigEndian.PutUint64(p[8:16], b.HdrSize)
	binary.BigEndian.PutUint64(p[16:24], b.SeqID)
	copy(p[24:], b.Label)
	copy(p[72:], b.CsumAlg)
	copy(p[104:104+saltLen], b.Salt[:])
	copy(p[168:], b.UUID)
	copy(p[208:], b.Subsystem)
	binary.BigEndian.PutUint64(p[256:264], b.HdrOffset)
	return nil
}

// checksumHash returns the hash named by csum_alg.
func checksumHash(alg string) (hash.Hash, error) {
	if alg == "sha256" {
		return sha256.New(), nil
	}
	f, err := kdf.HashFunc(alg)
	if err != nil {
		return nil, fmt.Errorf("checksum: %w", err)
	}
	return f(), nil
}

// computeChecksum hashes a whole header copy (binary and JSON area) with its
// checksum field treated as zero.
func computeChecksum(area []byte, alg string) ([]byte, error) {
	h, err := checksumHash(alg)
	if err != nil {
		return nil, err
	}
	if h.Size() > csumLen {
		return nil, &FormatError{Field: "csum_alg", Reason: alg + " is longer than the checksum field"}
	}
	h.Write(area[:offCsum])
	h.Write(make([]byte, csumLen))
	h.Write(area[offCsum+csumLen:])
	return h.Sum(nil), nil
}

// verifyChecksum checks a header copy's stored checksum.
func verifyChecksum(area []byte, b *binaryHeader) error {
	sum, err := computeChecksum(area, b.CsumAlg)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(sum, b.Csum[:len(sum)]) != 1 {
		return ErrChecksum
	}
	return nil
}

func cString(p []byte) string {
	if i := bytes.IndexByte(p, 0); i >= 0 {
		p = p[:i]
	}
	return string(p)
}
