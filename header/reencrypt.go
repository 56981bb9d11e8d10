package header

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/volcrypt/volcrypt/internal/secret"
)

// LUKS2 reencryption metadata, as cryptsetup 2.4+ writes it: a "reencrypt"
// key slot (mode, direction, resilience area), segments flagged as backups
// of the old and new layout, the mandatory requirement that keeps older
// tools away, and a digest that binds all of it to the volume key(s).
const (
	// RequirementReencrypt marks a header in the middle of a reencryption
	// (cryptsetup's metadata version 2).
	RequirementReencrypt = "online-reencrypt-v2"
	reencryptVersion     = 2

	FlagInReencryption = "in-reencryption"      // the hotzone being rewritten
	FlagBackupPrevious = "backup-previous"      // the whole old layout
	FlagBackupFinal    = "backup-final"         // the whole new layout
	FlagBackupMoved    = "backup-moved-segment" // data moved away to make room for a header

	ReencryptEncrypt = "encrypt"
	ReencryptDecrypt = "decrypt"
	ReencryptRekey   = "reencrypt"

	DirectionForward  = "forward"
	DirectionBackward = "backward"

	// reencryptAreaSize is the size of the reencrypt key slot's area for
	// resilience modes that keep nothing in it (datashift).
	reencryptAreaSize = 4096
)

// ReencryptKeyslot returns the id and object of the reencrypt key slot, or
// -1 and nil when the volume is not being reencrypted.
func (m *Metadata) ReencryptKeyslot() (int, *Keyslot) {
	for _, id := range keysOf(m.Keyslots) {
		if k := m.Keyslots[id]; k.Type == KeyslotReencrypt {
			return id, k
		}
	}
	return -1, nil
}

// SegmentByFlag returns the id and object of the first segment carrying
// flag, or -1 and nil.
func (m *Metadata) SegmentByFlag(flag string) (int, *Segment) {
	for _, id := range keysOf(m.Segments) {
		if s := m.Segments[id]; slices.Contains(s.Flags, flag) {
			return id, s
		}
	}
	return -1, nil
}

// AddReencryptKeyslot adds the reencrypt key slot with an area of
// areaSize bytes (4096 when 0) in the key-slot area, and the reencryption
// requirement. shiftBytes is the data shift for the datashift modes.
func (h *Header) AddReencryptKeyslot(mode, direction, areaType string, areaSize int64, shiftBytes uint64) (int, error) {
	if id, _ := h.Meta.ReencryptKeyslot(); id >= 0 {
		return -1, fmt.Errorf("add reencrypt key slot: slot %d already is one", id)
	}
	if areaSize == 0 {
		areaSize = reencryptAreaSize
	}
	id := h.freeKeyslot()
	if id < 0 {
		return -1, ErrNoFreeKeyslot
	}
	off, err := h.findArea(areaSize)
	if err != nil {
		return -1, err
	}
	prio := PriorityIgnore
	k := &Keyslot{Type: KeyslotReencrypt, KeySize: 1, Mode: mode, Direction: direction, Priority: &prio,
		Area: Area{Type: areaType, Offset: U64(off), Size: U64(areaSize)}}
	if shiftBytes > 0 {
		s := U64(shiftBytes)
		k.Area.ShiftSize = &s
	}
	h.Meta.Keyslots[id] = k
	h.Meta.setRequirement(RequirementReencrypt, true)
	return id, nil
}

// ClearReencrypt removes the reencryption metadata: the reencrypt key slot
// and its digest, every backup segment and the requirement. The caller
// sets the final segments first.
func (h *Header) ClearReencrypt() {
	if id, _ := h.Meta.ReencryptKeyslot(); id >= 0 {
		for did, d := range h.Meta.Digests {
			if d.Keyslots.Contains(id) {
				delete(h.Meta.Digests, did)
			}
		}
		delete(h.Meta.Keyslots, id)
	}
	for id, s := range h.Meta.Segments {
		if isBackup(s) {
			delete(h.Meta.Segments, id)
		}
	}
	for _, d := range h.Meta.Digests {
		d.Segments = slices.DeleteFunc(d.Segments, func(s int) bool { _, ok := h.Meta.Segments[s]; return !ok })
	}
	h.Meta.setRequirement(RequirementReencrypt, false)
}

func (m *Metadata) setRequirement(name string, on bool) {
	r := m.Config.Requirements
	if on {
		if r == nil {
			r = &Requirements{}
			m.Config.Requirements = r
		}
		if !slices.Contains(r.Mandatory, name) {
			r.Mandatory = append(r.Mandatory, name)
		}
		return
	}
	if r == nil {
		return
	}
	r.Mandatory = slices.DeleteFunc(r.Mandatory, func(s string) bool { return s == name })
	if len(r.Mandatory) == 0 && len(r.Extra) == 0 {
		m.Config.Requirements = nil
	}
}

// NewDigest adds a PBKDF2 digest of key bound to no key slot or segment and
// returns its id; a reencryption uses it for the new volume key.
func (m *Metadata) NewDigest(key []byte, hash string, iterations uint32) (int, error) {
	id := -1
	for i := range MaxDigests {
		if _, ok := m.Digests[i]; !ok {
			id = i
			break
		}
	}
	if id < 0 {
		return -1, fmt.Errorf("%w: no free digest", ErrInvalid)
	}
	d, err := newDigest(key, hash, iterations)
	if err != nil {
		return -1, err
	}
	m.Digests[id] = d
	return id, nil
}

// SetReencryptDigest binds the reencryption metadata (the reencrypt key
// slot and the backup segments) to the volume keys with a digest assigned
// to the reencrypt key slot, exactly as cryptsetup does, so that neither
// tool resumes from metadata forged without the keys. oldKey is the key of
// the backup-previous segment and newKey that of backup-final; nil for a
// plain (linear) side.
func (h *Header) SetReencryptDigest(oldKey, newKey []byte, hash string, iterations uint32) error {
	rid, _ := h.Meta.ReencryptKeyslot()
	if rid < 0 {
		return fmt.Errorf("reencrypt digest: %w: no reencrypt key slot", ErrInvalid)
	}
	data, err := h.Meta.reencryptVerificationData(oldKey, newKey)
	if err != nil {
		return err
	}
	defer secret.Wipe(data)
	for did, d := range h.Meta.Digests {
		if d.Keyslots.Contains(rid) {
			d.Keyslots = slices.DeleteFunc(d.Keyslots, func(k int) bool { return k == rid })
			if len(d.Keyslots) == 0 && len(d.Segments) == 0 {
				delete(h.Meta.Digests, did)
			}
		}
	}
	did, err := h.Meta.NewDigest(data, hash, iterations)
	if err != nil {
		return fmt.Errorf("reencrypt digest: %w", err)
	}
	h.Meta.Digests[did].Keyslots = IDList{rid}
	return nil
}

// VerifyReencryptDigest checks the reencryption metadata against the
// volume keys; it returns ErrInvalid when the metadata was not written by
// someone holding them.
func (h *Header) VerifyReencryptDigest(oldKey, newKey []byte) error {
	rid, _ := h.Meta.ReencryptKeyslot()
	did, ok := h.Meta.keyslotDigest(rid)
	if rid < 0 || !ok {
		return fmt.Errorf("%w: reencryption metadata has no digest", ErrInvalid)
	}
	data, err := h.Meta.reencryptVerificationData(oldKey, newKey)
	if err != nil {
		return err
	}
	defer secret.Wipe(data)
	match, err := h.Meta.Digests[did].matches(data)
	if err != nil {
		return err
	}
	if !match {
		return fmt.Errorf("%w: reencryption metadata does not match the volume key", ErrInvalid)
	}
	return nil
}

// reencryptVerificationData serializes what the reencrypt digest covers:
// 'v', '0'+version, the old and new keys, the reencrypt key slot's mode,
// direction and area, and the backup segments, integers big-endian.
func (m *Metadata) reencryptVerificationData(oldKey, newKey []byte) ([]byte, error) {
	_, k := m.ReencryptKeyslot()
	if k == nil {
		return nil, fmt.Errorf("%w: no reencrypt key slot", ErrInvalid)
	}
	if oldKey == nil && newKey == nil {
		return nil, fmt.Errorf("%w: reencryption needs at least one volume key", ErrInvalid)
	}
	b := []byte{'v', '0' + reencryptVersion}
	b = append(b, oldKey...)
	b = append(b, newKey...)
	b = append(b, k.Mode...)
	b = append(b, k.Direction...)
	a := k.Area
	b = append(b, a.Type...)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Offset))
	b = binary.BigEndian.AppendUint64(b, uint64(a.Size))
	switch a.Type {
	case "checksum", "datashift-checksum":
		b = append(b, a.Hash...)
		b = binary.BigEndian.AppendUint32(b, uint32(a.SectorSize))
	}
	switch a.Type {
	case "datashift", "datashift-journal", "datashift-checksum":
		if a.ShiftSize == nil {
			return nil, fmt.Errorf("%w: %s area without shift_size", ErrInvalid, a.Type)
		}
		b = binary.BigEndian.AppendUint64(b, uint64(*a.ShiftSize))
	}
	for _, flag := range []string{FlagBackupPrevious, FlagBackupFinal, FlagBackupMoved} {
		_, s := m.SegmentByFlag(flag)
		if s == nil {
			if flag == FlagBackupMoved {
				break
			}
			return nil, fmt.Errorf("%w: no %s segment", ErrInvalid, flag)
		}
		b = appendSegment(b, s)
	}
	return b, nil
}

func appendSegment(b []byte, s *Segment) []byte {
	b = append(b, s.Type...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Offset))
	if s.Size.Dynamic {
		b = append(b, "dynamic"...)
	} else {
		b = binary.BigEndian.AppendUint64(b, s.Size.Bytes)
	}
	if s.Type == SegmentCrypt {
		var tweak uint64
		if s.IVTweak != nil {
			tweak = uint64(*s.IVTweak)
		}
		b = binary.BigEndian.AppendUint64(b, tweak)
		b = append(b, s.Encryption...)
		b = binary.BigEndian.AppendUint32(b, uint32(s.SectorSize))
	}
	return b
}

// CopyTokenKeyslot adds key slot to to every token that names key slot
// from, keeping the tokens' other fields: a reencryption re-wraps each slot
// into a new one, and the token keeps working when the old one goes.
func (h *Header) CopyTokenKeyslot(from, to int) error {
	for tid, raw := range h.Meta.Tokens {
		var t tokenHeader
		if json.Unmarshal(raw, &t) != nil || !t.Keyslots.Contains(from) || t.Keyslots.Contains(to) {
			continue
		}
		updated, err := setTokenKeyslots(raw, append(slices.Clone(t.Keyslots), to))
		if err != nil {
			return fmt.Errorf("token %d: %w", tid, err)
		}
		h.Meta.Tokens[tid] = updated
	}
	return nil
}
