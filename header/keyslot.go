package header

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
)

// Key-slot priorities, as cryptsetup's.
const (
	PriorityIgnore = 0 // tried only when named explicitly
	PriorityNormal = 1
	PriorityHigh   = 2
)

// PriorityValue returns the key slot's priority (normal when unset).
func (k *Keyslot) PriorityValue() int {
	if k.Priority == nil {
		return PriorityNormal
	}
	return *k.Priority
}

// OpenKeyslot derives the key of key slot id from passphrase, decrypts and
// merges its key material and checks the result against the slot's digest.
// It returns ErrWrongKey when the passphrase does not fit. limits caps the
// KDF cost read from the header.
func (h *Header) OpenKeyslot(r io.ReaderAt, id int, passphrase []byte, limits kdf.Limits) (*secret.Buffer, error) {
	k, ok := h.Meta.Keyslots[id]
	if !ok {
		return nil, fmt.Errorf("key slot %d: %w", id, ErrKeyslotNotFound)
	}
	if k.Type != KeyslotLUKS2 {
		return nil, fmt.Errorf("key slot %d: type %s holds no key", id, k.Type)
	}
	did, ok := h.Meta.keyslotDigest(id)
	if !ok {
		return nil, fmt.Errorf("key slot %d: %w: no digest", id, ErrInvalid)
	}
	p := k.KDF.Params()
	if err := p.Check(limits); err != nil {
		return nil, fmt.Errorf("key slot %d: %w", id, err)
	}
	material := make([]byte, afSectors(k.KeySize)*512)
	defer secret.Wipe(material)
	if _, err := r.ReadAt(material, int64(k.Area.Offset)); err != nil {
		return nil, fmt.Errorf("key slot %d: read key material: %w", id, err)
	}
	areaKey, err := kdf.Derive(p, passphrase, k.KDF.Salt, k.Area.KeySize)
	if err != nil {
		return nil, fmt.Errorf("key slot %d: %w", id, err)
	}
	err = cryptArea(k.Area.Encryption, areaKey, material, false)
	secret.Wipe(areaKey)
	if err != nil {
		return nil, fmt.Errorf("key slot %d: %w", id, err)
	}
	key, err := AFMerge(material, k.KeySize, k.AF.Stripes, k.AF.Hash)
	if err != nil {
		return nil, fmt.Errorf("key slot %d: %w", id, err)
	}
	buf := secret.From(key)
	match, err := h.Meta.Digests[did].matches(buf.Bytes())
	if err != nil || !match {
		buf.Wipe()
		if err != nil {
			return nil, fmt.Errorf("key slot %d: %w", id, err)
		}
		return nil, ErrWrongKey
	}
	return buf, nil
}

// cryptArea encrypts or decrypts key material in place with the key-slot
// area cipher: 512-byte sectors numbered from the start of the area.
func cryptArea(spec string, key, material []byte, encrypt bool) error {
	c, err := crypt.New(spec, key, 512)
	if err != nil {
		return fmt.Errorf("key-slot area cipher: %w", err)
	}
	defer c.Wipe()
	if encrypt {
		return c.Encrypt(material, material, 0)
	}
	return c.Decrypt(material, material, 0)
}

// UnlockOptions selects which key slots Unlock tries.
type UnlockOptions struct {
	// Keyslot, when non-negative, is the only slot tried.
	Keyslot int
	// Segment is the segment whose key is wanted; key slots bound to another
	// digest (unbound slots) are skipped unless Keyslot names one.
	Segment int
	Limits  kdf.Limits
}

// Unlock tries passphrase on the key slots that hold the key of the data
// segment, high priority first, and returns the volume key and the slot that
// opened. When no slot opens it returns an error that wraps ErrWrongKey and
// every other failure met on the way.
func (h *Header) Unlock(r io.ReaderAt, passphrase []byte, o UnlockOptions) (*secret.Buffer, int, error) {
	var ids []int
	if o.Keyslot >= 0 {
		if _, ok := h.Meta.Keyslots[o.Keyslot]; !ok {
			return nil, -1, fmt.Errorf("key slot %d: %w", o.Keyslot, ErrKeyslotNotFound)
		}
		ids = []int{o.Keyslot}
	} else {
		ids = h.Meta.SegmentKeyslots(o.Segment)
	}
	var errs []error
	for _, id := range ids {
		key, err := h.OpenKeyslot(r, id, passphrase, o.Limits)
		if err == nil {
			return key, id, nil
		}
		if !errors.Is(err, ErrWrongKey) {
			errs = append(errs, err)
		}
	}
	return nil, -1, errors.Join(append([]error{ErrWrongKey}, errs...)...)
}

// SegmentKeyslots lists the key slots that hold the key of segment seg,
// high priority first, leaving out slots of priority ignore.
func (m *Metadata) SegmentKeyslots(seg int) []int {
	did, ok := m.SegmentDigest(seg)
	if !ok {
		return nil
	}
	var ids []int
	for _, id := range keysOf(m.Keyslots) {
		k := m.Keyslots[id]
		if k.Type == KeyslotLUKS2 && m.Digests[did].Keyslots.Contains(id) && k.PriorityValue() != PriorityIgnore {
			ids = append(ids, id)
		}
	}
	slices.SortStableFunc(ids, func(a, b int) int {
		return m.Keyslots[b].PriorityValue() - m.Keyslots[a].PriorityValue()
	})
	return ids
}

// KeyslotParams describes a new key slot.
type KeyslotParams struct {
	KDF kdf.Params
	// AFHash is the anti-forensic splitter's hash (sha256 by default).
	AFHash string
	// Encryption is the key-slot area cipher; the data segment's by default,
	// aes-xts-plain64 with a 512-bit key when that is not usable.
	Encryption  string
	AreaKeySize int
	Priority    *int
}

// AddKeyslot stores volumeKey in key slot id (the lowest free one when id is
// negative), protected by passphrase, and binds it to the digest the key
// matches. It writes the key material to w at once but changes only the
// in-memory metadata: the caller writes the header afterwards, so that an
// interruption leaves the old key set intact.
func (h *Header) AddKeyslot(w io.WriterAt, id int, passphrase, volumeKey []byte, p KeyslotParams) (int, error) {
	if h.Version != 2 {
		return -1, fmt.Errorf("add key slot: LUKS%d %w", h.Version, ErrReadOnlyFormat)
	}
	did, err := h.Meta.DigestFor(volumeKey)
	if err != nil {
		return -1, fmt.Errorf("add key slot: volume key matches no digest: %w", err)
	}
	if id < 0 {
		if id = h.freeKeyslot(); id < 0 {
			return -1, ErrNoFreeKeyslot
		}
	} else if id >= MaxKeyslots {
		return -1, fmt.Errorf("add key slot: slot %d out of range 0–%d", id, MaxKeyslots-1)
	} else if _, used := h.Meta.Keyslots[id]; used {
		return -1, fmt.Errorf("add key slot %d: %w", id, ErrKeyslotInUse)
	}
	if p.AFHash == "" {
		p.AFHash = "sha256"
	}
	if p.Encryption == "" {
		p.Encryption, p.AreaKeySize = h.defaultAreaCipher(len(volumeKey))
	}
	keySize := len(volumeKey)
	size := alignUp(int64(afSectors(keySize))*512, 4096)
	offset, err := h.findArea(size)
	if err != nil {
		return -1, err
	}
	salt := make([]byte, 32)
	if _, err := readRandom(salt); err != nil {
		return -1, err
	}
	k := &Keyslot{
		Type: KeyslotLUKS2, KeySize: keySize, Priority: p.Priority,
		AF:   &AF{Type: "luks1", Stripes: AFStripes, Hash: p.AFHash},
		Area: Area{Type: "raw", Offset: U64(offset), Size: U64(size), Encryption: p.Encryption, KeySize: p.AreaKeySize},
		KDF:  kdfObject(p.KDF, salt),
	}
	if err := k.KDF.validate("kdf"); err != nil {
		return -1, err
	}
	material, err := AFSplit(volumeKey, AFStripes, p.AFHash, nil)
	if err != nil {
		return -1, err
	}
	defer secret.Wipe(material)
	padded := make([]byte, afSectors(keySize)*512)
	defer secret.Wipe(padded)
	copy(padded, material)
	areaKey, err := kdf.Derive(p.KDF, passphrase, salt, p.AreaKeySize)
	if err != nil {
		return -1, fmt.Errorf("add key slot: %w", err)
	}
	err = cryptArea(p.Encryption, areaKey, padded, true)
	secret.Wipe(areaKey)
	if err != nil {
		return -1, err
	}
	if _, err := w.WriteAt(padded, offset); err != nil {
		return -1, fmt.Errorf("write key material: %w", err)
	}
	if s, ok := w.(Syncer); ok {
		if err := s.Sync(); err != nil {
			return -1, fmt.Errorf("flush key material: %w", err)
		}
	}
	h.Meta.Keyslots[id] = k
	d := h.Meta.Digests[did]
	d.Keyslots = append(d.Keyslots, id)
	slices.Sort(d.Keyslots)
	return id, nil
}

func kdfObject(p kdf.Params, salt []byte) *KDF {
	if p.Algorithm == kdf.PBKDF2 {
		return &KDF{Type: p.Algorithm, Hash: p.Hash, Iterations: p.Time, Salt: salt}
	}
	return &KDF{Type: p.Algorithm, Time: p.Time, Memory: p.MemoryKiB, CPUs: p.Threads, Salt: salt}
}

// defaultAreaCipher picks the key-slot area cipher as cryptsetup does: the
// data segment's cipher and key size when it is a usable one, else
// aes-xts-plain64 with a 512-bit key.
func (h *Header) defaultAreaCipher(keySize int) (string, int) {
	if s, ok := h.Meta.Segments[0]; ok && s.Type == SegmentCrypt {
		if spec, err := crypt.ParseSpec(s.Encryption); err == nil && spec.ValidKeySize(keySize) {
			return s.Encryption, keySize
		}
	}
	return "aes-xts-plain64", 64
}

// freeKeyslot returns the lowest unused key slot id, or -1.
func (h *Header) freeKeyslot() int {
	for id := 0; id < MaxKeyslots; id++ {
		if _, used := h.Meta.Keyslots[id]; !used {
			return id
		}
	}
	return -1
}

// findArea returns the lowest 4096-aligned offset in the key-slot area where
// size bytes are free.
func (h *Header) findArea(size int64) (int64, error) {
	start, end := 2*h.Size, h.KeyslotsEnd()
	type span struct{ from, to int64 }
	var used []span
	for _, k := range h.Meta.Keyslots {
		used = append(used, span{int64(k.Area.Offset), int64(k.Area.Offset) + int64(k.Area.Size)})
	}
	// Areas of slots removed since the last write still hold key material
	// the header on disk names: never reuse them before that write.
	for _, a := range h.released {
		used = append(used, span{int64(a.Offset), int64(a.Offset) + int64(a.Size)})
	}
	slices.SortFunc(used, func(a, b span) int { return int(a.from - b.from) })
	off := start
	for _, u := range used {
		if off+size <= u.from {
			break
		}
		off = max(off, alignUp(u.to, 4096))
	}
	if off+size > end {
		return -1, fmt.Errorf("%w: the key-slot area has no %d free bytes", ErrNoFreeKeyslot, size)
	}
	return off, nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// RemoveKeyslot drops key slot id and its references from the in-memory
// metadata and returns its area, which the caller wipes with WipeArea after
// writing the header, so that an interruption never leaves a header that
// names destroyed key material.
func (h *Header) RemoveKeyslot(id int) (Area, error) {
	if h.Version != 2 {
		return Area{}, fmt.Errorf("remove key slot: LUKS%d %w", h.Version, ErrReadOnlyFormat)
	}
	k, ok := h.Meta.Keyslots[id]
	if !ok {
		return Area{}, fmt.Errorf("key slot %d: %w", id, ErrKeyslotNotFound)
	}
	delete(h.Meta.Keyslots, id)
	h.released = append(h.released, k.Area)
	for _, d := range h.Meta.Digests {
		d.Keyslots = slices.DeleteFunc(d.Keyslots, func(x int) bool { return x == id })
	}
	for tid, raw := range h.Meta.Tokens {
		var t tokenHeader
		if json.Unmarshal(raw, &t) == nil && t.Keyslots.Contains(id) {
			updated, err := setTokenKeyslots(raw, slices.DeleteFunc(slices.Clone(t.Keyslots), func(x int) bool { return x == id }))
			if err != nil {
				return Area{}, fmt.Errorf("token %d: %w", tid, err)
			}
			h.Meta.Tokens[tid] = updated
		}
	}
	return k.Area, nil
}

// WipeArea overwrites a key-slot area with random bytes.
func WipeArea(w io.WriterAt, a Area) error {
	buf := make([]byte, a.Size)
	if _, err := readRandom(buf); err != nil {
		return err
	}
	if _, err := w.WriteAt(buf, int64(a.Offset)); err != nil {
		return fmt.Errorf("wipe key-slot area: %w", err)
	}
	if s, ok := w.(Syncer); ok {
		return s.Sync()
	}
	return nil
}

// MoveKeyslot renumbers key slot from as to, with the digest and token
// references that name it.
func (h *Header) MoveKeyslot(from, to int) error {
	k, ok := h.Meta.Keyslots[from]
	if !ok {
		return fmt.Errorf("key slot %d: %w", from, ErrKeyslotNotFound)
	}
	if _, used := h.Meta.Keyslots[to]; used {
		return fmt.Errorf("key slot %d: %w", to, ErrKeyslotInUse)
	}
	delete(h.Meta.Keyslots, from)
	h.Meta.Keyslots[to] = k
	rename := func(ids []int) []int {
		for i, id := range ids {
			if id == from {
				ids[i] = to
			}
		}
		slices.Sort(ids)
		return ids
	}
	for _, d := range h.Meta.Digests {
		d.Keyslots = rename(d.Keyslots)
	}
	for tid, raw := range h.Meta.Tokens {
		var t tokenHeader
		if json.Unmarshal(raw, &t) == nil && t.Keyslots.Contains(from) {
			updated, err := setTokenKeyslots(raw, rename(slices.Clone(t.Keyslots)))
			if err != nil {
				return fmt.Errorf("token %d: %w", tid, err)
			}
			h.Meta.Tokens[tid] = updated
		}
	}
	return nil
}
