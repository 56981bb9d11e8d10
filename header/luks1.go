package header

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/volcrypt/volcrypt/kdf"
)

// LUKS1 on-disk layout (read-only support: a LUKS1 header is converted into
// the LUKS2 model in memory so that the same unlock code serves both).
const (
	luks1HeaderSize    = 592
	luks1Keyslots      = 8
	luks1DigestSize    = 20
	luks1SlotActive    = 0x00AC71F3
	luks1SlotInactive  = 0x0000DEAD
	luks1KeyslotOffset = 208
	luks1KeyslotLen    = 48
)

func readLUKS1(r io.ReaderAt, first []byte) (*Header, error) {
	p := first[:luks1HeaderSize]
	cipherName := cString(p[8:40])
	cipherMode := cString(p[40:72])
	hashSpec := strings.ToLower(cString(p[72:104]))
	payloadOffset := binary.BigEndian.Uint32(p[104:108])
	keyBytes := int(binary.BigEndian.Uint32(p[108:112]))
	if keyBytes <= 0 || keyBytes > MaxKeySize {
		return nil, invalidf("luks1 key-bytes", "%d out of range", keyBytes)
	}
	if _, err := kdf.HashFunc(hashSpec); err != nil {
		return nil, invalidf("luks1 hash-spec", "%v", err)
	}
	encryption := cipherName + "-" + cipherMode
	m := &Metadata{
		Keyslots: map[int]*Keyslot{}, Tokens: map[int]json.RawMessage{}, Segments: map[int]*Segment{}, Digests: map[int]*Digest{},
	}
	zero := U64(0)
	m.Segments[0] = &Segment{Type: SegmentCrypt, Offset: U64(uint64(payloadOffset) * 512), Size: SegmentSize{Dynamic: true},
		IVTweak: &zero, Encryption: encryption, SectorSize: 512}
	d := &Digest{Type: DigestPBKDF2, Hash: hashSpec, Segments: IDList{0}, Keyslots: IDList{},
		Iterations: binary.BigEndian.Uint32(p[164:168]),
		Salt:       append([]byte(nil), p[132:164]...),
		Digest:     append([]byte(nil), p[112:132]...)}
	m.Digests[0] = d
	for i := 0; i < luks1Keyslots; i++ {
		s := p[luks1KeyslotOffset+i*luks1KeyslotLen:][:luks1KeyslotLen]
		active := binary.BigEndian.Uint32(s[0:4])
		if active != luks1SlotActive {
			if active != luks1SlotInactive {
				return nil, invalidf(fmt.Sprintf("luks1 key slot %d", i), "bad state 0x%08x", active)
			}
			continue
		}
		stripes := int(binary.BigEndian.Uint32(s[44:48]))
		if stripes != AFStripes {
			return nil, invalidf(fmt.Sprintf("luks1 key slot %d", i), "%d stripes", stripes)
		}
		m.Keyslots[i] = &Keyslot{
			Type: KeyslotLUKS2, KeySize: keyBytes,
			AF: &AF{Type: "luks1", Stripes: stripes, Hash: hashSpec},
			Area: Area{Type: "raw", Offset: U64(uint64(binary.BigEndian.Uint32(s[40:44])) * 512),
				Size: U64(afSectors(keyBytes) * 512), Encryption: encryption, KeySize: keyBytes},
			KDF: &KDF{Type: kdf.PBKDF2, Hash: hashSpec, Iterations: binary.BigEndian.Uint32(s[4:8]),
				Salt: append([]byte(nil), s[8:40]...)},
		}
		d.Keyslots = append(d.Keyslots, i)
	}
	for id, k := range m.Keyslots {
		if err := k.validate(fmt.Sprintf("luks1 key slot %d", id)); err != nil {
			return nil, err
		}
	}
	if err := m.validateDigest(0, d); err != nil {
		return nil, err
	}
	return &Header{Version: 1, UUID: cString(p[168:208]), Meta: m}, nil
}
