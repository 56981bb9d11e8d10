package header

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/volcrypt/volcrypt/kdf"
)

// Limits on LUKS2 objects, as cryptsetup defines them.
const (
	MaxKeyslots     = 32
	MaxTokens       = 32
	MaxSegments     = 32
	MaxDigests      = 8
	MaxKeyslotsSize = 128 << 20 // the largest key-slot area
	MaxKeySize      = 512       // bytes; far above any real cipher
	AFStripes       = 4000      // the only stripe count LUKS uses
	minDigestLen    = 20        // LUKS1's digest size; shorter is forgeable
	maxDigestLen    = 64
)

// Supported key-slot and segment types.
const (
	KeyslotLUKS2     = "luks2"
	KeyslotReencrypt = "reencrypt"
	SegmentCrypt     = "crypt"
	SegmentLinear    = "linear"
	DigestPBKDF2     = "pbkdf2"
)

// validate checks the metadata's internal consistency: object counts, types
// and required fields, and that every reference points at an object that
// exists. Checks that need the binary header (sizes) are in checkLayout.
func (m *Metadata) validate() error {
	if err := checkIDs("keyslots", len(m.Keyslots), MaxKeyslots, keysOf(m.Keyslots)); err != nil {
		return err
	}
	if err := checkIDs("tokens", len(m.Tokens), MaxTokens, keysOf(m.Tokens)); err != nil {
		return err
	}
	if err := checkIDs("segments", len(m.Segments), MaxSegments, keysOf(m.Segments)); err != nil {
		return err
	}
	if err := checkIDs("digests", len(m.Digests), MaxDigests, keysOf(m.Digests)); err != nil {
		return err
	}
	for id, k := range m.Keyslots {
		if err := k.validate(fmt.Sprintf("keyslots.%d", id)); err != nil {
			return err
		}
	}
	if err := m.validateSegments(); err != nil {
		return err
	}
	for id, d := range m.Digests {
		if err := m.validateDigest(id, d); err != nil {
			return err
		}
	}
	for id, k := range m.Keyslots {
		if k.Type != KeyslotLUKS2 {
			continue
		}
		n := 0
		for _, d := range m.Digests {
			if d.Keyslots.Contains(id) {
				n++
			}
		}
		if n != 1 {
			return invalidf(fmt.Sprintf("keyslots.%d", id), "referenced by %d digests, want exactly 1", n)
		}
	}
	for id, raw := range m.Tokens {
		if _, err := m.validateToken(raw); err != nil {
			return invalidf(fmt.Sprintf("tokens.%d", id), "%v", err)
		}
	}
	return m.Config.validate()
}

func keysOf[T any](m map[int]T) []int {
	ids := make([]int, 0, len(m))
	for k := range m {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	return ids
}

func checkIDs(section string, n, max int, ids []int) error {
	if n > max {
		return invalidf(section, "%d objects, at most %d allowed", n, max)
	}
	for _, id := range ids {
		if id >= max {
			return invalidf(section, "id %d out of range 0–%d", id, max-1)
		}
	}
	return nil
}

func (k *Keyslot) validate(path string) error {
	if k.KeySize <= 0 || k.KeySize > MaxKeySize {
		return invalidf(path+".key_size", "%d out of range 1–%d", k.KeySize, MaxKeySize)
	}
	a := k.Area
	if a.Size == 0 || uint64(a.Offset)+uint64(a.Size) < uint64(a.Offset) {
		return invalidf(path+".area", "offset %d size %d is not a valid range", a.Offset, a.Size)
	}
	switch k.Type {
	case KeyslotLUKS2:
		if k.AF == nil || k.KDF == nil {
			return invalidf(path, "af and kdf are required")
		}
		if k.AF.Type != "luks1" || k.AF.Stripes != AFStripes {
			return invalidf(path+".af", "type %q with %d stripes; only luks1 with %d stripes exists", k.AF.Type, k.AF.Stripes, AFStripes)
		}
		if _, err := kdf.HashFunc(k.AF.Hash); err != nil {
			return invalidf(path+".af.hash", "%v", err)
		}
		if a.Type != "raw" || a.Encryption == "" || a.KeySize <= 0 || a.KeySize > MaxKeySize {
			return invalidf(path+".area", "want type raw with encryption and key_size")
		}
		if need := afSectors(k.KeySize) * 512; uint64(a.Size) < uint64(need) {
			return invalidf(path+".area.size", "%d bytes cannot hold %d bytes of key material", a.Size, need)
		}
		return k.KDF.validate(path + ".kdf")
	case KeyslotReencrypt:
		switch a.Type {
		case "none", "checksum", "journal", "datashift", "datashift-checksum", "datashift-journal":
		default:
			return invalidf(path+".area.type", "unknown reencryption area type %q", a.Type)
		}
		return nil
	default:
		return invalidf(path+".type", "unknown key slot type %q", k.Type)
	}
}

// validate checks a KDF's shape; its cost is checked against limits only
// when it is about to run (kdf.Params.Check).
func (k *KDF) validate(path string) error {
	if len(k.Salt) == 0 {
		return invalidf(path+".salt", "empty")
	}
	switch k.Type {
	case kdf.PBKDF2:
		if k.Iterations == 0 {
			return invalidf(path+".iterations", "missing or zero")
		}
		if _, err := kdf.HashFunc(k.Hash); err != nil {
			return invalidf(path+".hash", "%v", err)
		}
	default:
		// As cryptsetup, any other type is shaped like argon2; an unknown
		// one ("argon2" in old headers) fails when it is used.
		if k.Type == "" {
			return invalidf(path+".type", "empty")
		}
		if k.Time == 0 || k.Memory == 0 || k.CPUs == 0 {
			return invalidf(path, "%s needs time, memory and cpus", k.Type)
		}
	}
	return nil
}

// Params converts the KDF object to derivation parameters.
func (k *KDF) Params() kdf.Params {
	if k.Type == kdf.PBKDF2 {
		return kdf.Params{Algorithm: k.Type, Hash: k.Hash, Time: k.Iterations}
	}
	return kdf.Params{Algorithm: k.Type, Time: k.Time, MemoryKiB: k.Memory, Threads: k.CPUs}
}

func isBackup(s *Segment) bool {
	return slices.ContainsFunc(s.Flags, func(f string) bool { return strings.HasPrefix(f, "backup-") })
}

func (m *Metadata) validateSegments() error {
	ids := keysOf(m.Segments)
	// Segments in use come first, numbered from 0 without gaps; backup
	// segments (used by reencryption) follow them.
	firstBackup := -1
	for i, id := range ids {
		s := m.Segments[id]
		path := fmt.Sprintf("segments.%d", id)
		if isBackup(s) {
			if firstBackup < 0 {
				firstBackup = id
			}
		} else if firstBackup >= 0 || id != i {
			return invalidf(path, "gap or backup segment before it")
		}
		if s.Type == "" {
			return invalidf(path+".type", "empty")
		}
		for _, f := range s.Flags {
			if f == "" {
				return invalidf(path+".flags", "empty flag")
			}
		}
		if s.Type != SegmentCrypt {
			continue
		}
		if s.IVTweak == nil {
			return invalidf(path+".iv_tweak", "missing")
		}
		if s.Encryption == "" {
			return invalidf(path+".encryption", "missing or empty")
		}
		if !validSectorSize(s.SectorSize) {
			return invalidf(path+".sector_size", "%d is not a power of two in 512–4096", s.SectorSize)
		}
		if uint64(s.Offset)%uint64(s.SectorSize) != 0 && uint64(s.Offset)%512 != 0 {
			return invalidf(path+".offset", "%d is not sector aligned", s.Offset)
		}
		if !s.Size.Dynamic && (s.Size.Bytes == 0 || s.Size.Bytes%uint64(s.SectorSize) != 0) {
			return invalidf(path+".size", "%d is not a positive multiple of the sector size %d", s.Size.Bytes, s.SectorSize)
		}
	}
	// Backup segment ids must themselves be contiguous.
	if firstBackup >= 0 {
		for i, id := range ids {
			if id != ids[0]+i && id >= firstBackup {
				return invalidf(fmt.Sprintf("segments.%d", id), "gap in backup segments")
			}
		}
	}
	return nil
}

func validSectorSize(n int) bool {
	return n >= 512 && n <= 4096 && n&(n-1) == 0
}

func (m *Metadata) validateDigest(id int, d *Digest) error {
	path := fmt.Sprintf("digests.%d", id)
	if d.Type != DigestPBKDF2 {
		return invalidf(path+".type", "unknown digest type %q", d.Type)
	}
	for _, k := range d.Keyslots {
		if _, ok := m.Keyslots[k]; !ok {
			return invalidf(path+".keyslots", "key slot %d does not exist", k)
		}
	}
	for _, s := range d.Segments {
		if _, ok := m.Segments[s]; !ok {
			return invalidf(path+".segments", "segment %d does not exist", s)
		}
	}
	if _, err := kdf.HashFunc(d.Hash); err != nil {
		return invalidf(path+".hash", "%v", err)
	}
	if d.Iterations == 0 || len(d.Salt) == 0 {
		return invalidf(path, "iterations and salt are required")
	}
	if len(d.Digest) < minDigestLen || len(d.Digest) > maxDigestLen {
		return invalidf(path+".digest", "%d bytes, want %d–%d", len(d.Digest), minDigestLen, maxDigestLen)
	}
	return nil
}

// tokenHeader is the part of a token every owner shares.
type tokenHeader struct {
	Type     string `json:"type"`
	Keyslots IDList `json:"keyslots"`
}

// validateToken checks a token's type and key-slot references.
func (m *Metadata) validateToken(raw json.RawMessage) (*tokenHeader, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil || probe == nil {
		return nil, fmt.Errorf("not an object")
	}
	if _, ok := probe["keyslots"]; !ok {
		return nil, fmt.Errorf("missing keyslots")
	}
	var t tokenHeader
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, err
	}
	if t.Type == "" {
		return nil, fmt.Errorf("missing type")
	}
	for _, k := range t.Keyslots {
		if _, ok := m.Keyslots[k]; !ok {
			return nil, fmt.Errorf("key slot %d does not exist", k)
		}
	}
	return &t, nil
}

func (c *Config) validate() error {
	if c.KeyslotsSize%4096 != 0 {
		return invalidf("config.keyslots_size", "%d is not a multiple of 4096", c.KeyslotsSize)
	}
	if c.KeyslotsSize > MaxKeyslotsSize {
		return invalidf("config.keyslots_size", "%d exceeds %d", c.KeyslotsSize, MaxKeyslotsSize)
	}
	for _, f := range c.Flags {
		if f == "" {
			return invalidf("config.flags", "empty flag")
		}
	}
	return nil
}

// checkLayout checks the metadata against the header size: the JSON size,
// key-slot areas inside the key-slot area and not overlapping, and data
// segments after it.
func (m *Metadata) checkLayout(hdrSize uint64) error {
	if uint64(m.Config.JSONSize) != hdrSize-BinarySize {
		return invalidf("config.json_size", "%d does not match header size %d", m.Config.JSONSize, hdrSize)
	}
	areaStart := 2 * hdrSize
	areaEnd := areaStart + uint64(m.Config.KeyslotsSize)
	type span struct {
		id       int
		from, to uint64
	}
	var spans []span
	for _, id := range keysOf(m.Keyslots) {
		a := m.Keyslots[id].Area
		from, to := uint64(a.Offset), uint64(a.Offset)+uint64(a.Size)
		if from < areaStart || to > areaEnd {
			return invalidf(fmt.Sprintf("keyslots.%d.area", id), "[%d, %d) lies outside the key-slot area [%d, %d)", from, to, areaStart, areaEnd)
		}
		for _, s := range spans {
			if from < s.to && s.from < to {
				return invalidf(fmt.Sprintf("keyslots.%d.area", id), "overlaps key slot %d", s.id)
			}
		}
		spans = append(spans, span{id, from, to})
	}
	// As cryptsetup (json_segments_get_minimal_offset): only the lowest
	// offset of the segments other than backup-* ones counts, and none when
	// one of them is at 0 (a detached header, whose segments may lie
	// anywhere: an in-place encryption behind one has a segment at 0 and
	// others after it).
	first := -1
	for _, id := range keysOf(m.Segments) {
		s := m.Segments[id]
		if slices.ContainsFunc(s.Flags, func(f string) bool { return strings.HasPrefix(f, "backup-") }) {
			continue
		}
		if s.Offset == 0 {
			first = -1
			break
		}
		if first < 0 || s.Offset < m.Segments[first].Offset {
			first = id
		}
	}
	if first >= 0 {
		if s := m.Segments[first]; uint64(s.Offset) < areaEnd {
			return invalidf(fmt.Sprintf("segments.%d.offset", first), "%d lies inside the header or key-slot area (ends at %d)", s.Offset, areaEnd)
		}
	}
	return nil
}

// UnmetRequirements returns the mandatory requirements volcrypt does not
// implement.
func (m *Metadata) UnmetRequirements() []string {
	if m.Config.Requirements == nil {
		return nil
	}
	var unmet []string
	for _, r := range m.Config.Requirements.Mandatory {
		if !slices.Contains(knownRequirements, r) {
			unmet = append(unmet, r)
		}
	}
	return unmet
}

// knownRequirements are the mandatory requirements volcrypt implements.
var knownRequirements = []string{"online-reencrypt-v2"}
