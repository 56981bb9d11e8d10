package header

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Metadata is the JSON area of a LUKS2 header. Objects are keyed by their
// decimal id. Fields volcrypt does not know are kept and written back
// unchanged; tokens are kept as raw JSON because they belong to their owner.
type Metadata struct {
	Keyslots map[int]*Keyslot
	Tokens   map[int]json.RawMessage
	Segments map[int]*Segment
	Digests  map[int]*Digest
	Config   Config
	Extra    map[string]json.RawMessage
}

// Keyslot is one entry of the "keyslots" object.
type Keyslot struct {
	Type      string                     `json:"type,required"` // "luks2" or "reencrypt"
	KeySize   int                        `json:"key_size,required"`
	AF        *AF                        `json:"af,omitempty"`
	Area      Area                       `json:"area,required"`
	KDF       *KDF                       `json:"kdf,omitempty"`
	Priority  *int                       `json:"priority,omitempty"`
	Mode      string                     `json:"mode,omitempty"`      // reencrypt only
	Direction string                     `json:"direction,omitempty"` // reencrypt only
	Extra     map[string]json.RawMessage `json:"-"`
}

// AF describes the anti-forensic splitter of a key slot.
type AF struct {
	Type    string                     `json:"type,required"` // "luks1"
	Stripes int                        `json:"stripes,required"`
	Hash    string                     `json:"hash,required"`
	Extra   map[string]json.RawMessage `json:"-"`
}

// Area is where a key slot's material lives in the key-slot area.
type Area struct {
	Type       string                     `json:"type,required"` // "raw", or checksum/journal/none/datashift for reencrypt
	Offset     U64                        `json:"offset,required"`
	Size       U64                        `json:"size,required"`
	Encryption string                     `json:"encryption,omitempty"`
	KeySize    int                        `json:"key_size,omitempty"`
	Hash       string                     `json:"hash,omitempty"`
	SectorSize int                        `json:"sector_size,omitempty"`
	ShiftSize  *U64                       `json:"shift_size,omitempty"`
	Extra      map[string]json.RawMessage `json:"-"`
}

// KDF is a key slot's key derivation function and its parameters.
type KDF struct {
	Type       string                     `json:"type,required"` // pbkdf2, argon2i, argon2id
	Hash       string                     `json:"hash,omitempty"`
	Iterations uint32                     `json:"iterations,omitempty"`
	Time       uint32                     `json:"time,omitempty"`
	Memory     uint32                     `json:"memory,omitempty"`
	CPUs       uint32                     `json:"cpus,omitempty"`
	Salt       []byte                     `json:"salt,required"`
	Extra      map[string]json.RawMessage `json:"-"`
}

// Segment is one entry of the "segments" object.
type Segment struct {
	Type       string                     `json:"type,required"` // "crypt", "linear", …
	Offset     U64                        `json:"offset,required"`
	Size       SegmentSize                `json:"size,required"`
	IVTweak    *U64                       `json:"iv_tweak,omitempty"`
	Encryption string                     `json:"encryption,omitempty"`
	SectorSize int                        `json:"sector_size,omitempty"`
	Integrity  json.RawMessage            `json:"integrity,omitempty"`
	Flags      []string                   `json:"flags,omitempty"`
	Extra      map[string]json.RawMessage `json:"-"`
}

// Digest binds key slots to segments through a digest of the volume key.
type Digest struct {
	Type       string                     `json:"type,required"` // "pbkdf2"
	Keyslots   IDList                     `json:"keyslots,required"`
	Segments   IDList                     `json:"segments,required"`
	Hash       string                     `json:"hash,required"`
	Iterations uint32                     `json:"iterations,required"`
	Salt       []byte                     `json:"salt,required"`
	Digest     []byte                     `json:"digest,required"`
	Extra      map[string]json.RawMessage `json:"-"`
}

// Config is the "config" object.
type Config struct {
	JSONSize     U64                        `json:"json_size,required"`
	KeyslotsSize U64                        `json:"keyslots_size,required"`
	Flags        []string                   `json:"flags,omitempty"`
	Requirements *Requirements              `json:"requirements,omitempty"`
	Extra        map[string]json.RawMessage `json:"-"`
}

// Requirements lists features a reader must implement.
type Requirements struct {
	Mandatory []string                   `json:"mandatory,required"`
	Extra     map[string]json.RawMessage `json:"-"`
}

// U64 is a 64-bit unsigned value, stored in JSON as a decimal string as
// LUKS2 requires.
type U64 uint64

// UnmarshalJSON accepts only a string of decimal digits that fits 64 bits.
func (u *U64) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil || len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("want a decimal string, got %.20s", b)
	}
	v, err := parseU64(s)
	if err != nil {
		return err
	}
	*u = U64(v)
	return nil
}

// MarshalJSON writes the value as a decimal string.
func (u U64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatUint(uint64(u), 10) + `"`), nil
}

func parseU64(s string) (uint64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not an unsigned decimal number", s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q does not fit 64 bits", s)
	}
	return v, nil
}

// SegmentSize is a segment's size: "dynamic" (up to the end of the device)
// or a number of bytes.
type SegmentSize struct {
	Dynamic bool
	Bytes   uint64
}

// SizeOf returns a segment size of n bytes, or "dynamic" (to the end of
// the device) when n is negative.
func SizeOf(n int64) SegmentSize {
	if n < 0 {
		return SegmentSize{Dynamic: true}
	}
	return SegmentSize{Bytes: uint64(n)}
}

// UnmarshalJSON accepts "dynamic" or a decimal string.
func (s *SegmentSize) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil || len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("want \"dynamic\" or a decimal string, got %.20s", b)
	}
	if str == "dynamic" {
		*s = SegmentSize{Dynamic: true}
		return nil
	}
	v, err := parseU64(str)
	if err != nil {
		return err
	}
	*s = SegmentSize{Bytes: v}
	return nil
}

// MarshalJSON writes "dynamic" or the size as a decimal string.
func (s SegmentSize) MarshalJSON() ([]byte, error) {
	if s.Dynamic {
		return []byte(`"dynamic"`), nil
	}
	return U64(s.Bytes).MarshalJSON()
}

// IDList is a list of object ids, stored as decimal strings.
type IDList []int

// UnmarshalJSON accepts an array of decimal strings.
func (l *IDList) UnmarshalJSON(b []byte) error {
	var strs []string
	if err := json.Unmarshal(b, &strs); err != nil || len(b) == 0 || b[0] != '[' {
		return fmt.Errorf("want an array of decimal strings, got %.20s", b)
	}
	out := make(IDList, 0, len(strs))
	for _, s := range strs {
		id, err := parseID(s)
		if err != nil {
			return err
		}
		out = append(out, id)
	}
	*l = out
	return nil
}

// MarshalJSON writes the ids as decimal strings.
func (l IDList) MarshalJSON() ([]byte, error) {
	strs := make([]string, len(l))
	for i, id := range l {
		strs[i] = strconv.Itoa(id)
	}
	return json.Marshal(strs)
}

// Contains reports whether id is in the list.
func (l IDList) Contains(id int) bool { return slices.Contains(l, id) }

func parseID(s string) (int, error) {
	v, err := parseU64(s)
	if err != nil || v > 1<<20 {
		return 0, fmt.Errorf("%q is not an object id", s)
	}
	return int(v), nil
}

// The (un)marshalers below keep the fields a struct does not name in its
// Extra map, so that rewriting a header never drops another tool's data.

func (k *Keyslot) UnmarshalJSON(b []byte) error {
	type plain Keyslot
	return decodeObject(b, (*plain)(k), &k.Extra)
}
func (k Keyslot) MarshalJSON() ([]byte, error) {
	type plain Keyslot
	return encodeObject(plain(k), k.Extra)
}
func (a *AF) UnmarshalJSON(b []byte) error {
	type plain AF
	return decodeObject(b, (*plain)(a), &a.Extra)
}
func (a AF) MarshalJSON() ([]byte, error) {
	type plain AF
	return encodeObject(plain(a), a.Extra)
}
func (a *Area) UnmarshalJSON(b []byte) error {
	type plain Area
	return decodeObject(b, (*plain)(a), &a.Extra)
}
func (a Area) MarshalJSON() ([]byte, error) {
	type plain Area
	return encodeObject(plain(a), a.Extra)
}
func (k *KDF) UnmarshalJSON(b []byte) error {
	type plain KDF
	return decodeObject(b, (*plain)(k), &k.Extra)
}
func (k KDF) MarshalJSON() ([]byte, error) {
	type plain KDF
	return encodeObject(plain(k), k.Extra)
}
func (s *Segment) UnmarshalJSON(b []byte) error {
	type plain Segment
	return decodeObject(b, (*plain)(s), &s.Extra)
}
func (s Segment) MarshalJSON() ([]byte, error) {
	type plain Segment
	return encodeObject(plain(s), s.Extra)
}
func (d *Digest) UnmarshalJSON(b []byte) error {
	type plain Digest
	return decodeObject(b, (*plain)(d), &d.Extra)
}
func (d Digest) MarshalJSON() ([]byte, error) {
	type plain Digest
	return encodeObject(plain(d), d.Extra)
}
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	return decodeObject(b, (*plain)(c), &c.Extra)
}
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config
	return encodeObject(plain(c), c.Extra)
}
func (r *Requirements) UnmarshalJSON(b []byte) error {
	type plain Requirements
	return decodeObject(b, (*plain)(r), &r.Extra)
}
func (r Requirements) MarshalJSON() ([]byte, error) {
	type plain Requirements
	return encodeObject(plain(r), r.Extra)
}

// decodeObject decodes a JSON object into the struct v points to and keeps
// the members v does not name in *extra.
func decodeObject(b []byte, v any, extra *map[string]json.RawMessage) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil || members == nil {
		return fmt.Errorf("want an object, got %.20s", b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return err
	}
	names, required := jsonNames(reflect.TypeOf(v).Elem())
	for _, name := range required {
		if _, ok := members[name]; !ok {
			return fmt.Errorf("missing field %q", name)
		}
	}
	for _, name := range names {
		delete(members, name)
	}
	if len(members) == 0 {
		members = nil
	}
	*extra = members
	return nil
}

// encodeObject encodes v and adds the members of extra it does not name.
func encodeObject(v any, extra map[string]json.RawMessage) ([]byte, error) {
	b, err := marshalJSON(v)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	names, _ := jsonNames(reflect.TypeOf(v))
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	keys := make([]string, 0, len(extra))
	for k := range extra {
		if !slices.Contains(names, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		kb, _ := marshalJSON(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(extra[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// jsonNames lists the JSON member names of a struct type's fields, and those
// tagged ",required" (an option encoding/json ignores).
func jsonNames(t reflect.Type) (names, required []string) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
		if slices.Contains(strings.Split(opts, ","), "required") {
			required = append(required, name)
		}
	}
	return names, required
}

// metadataJSON is the top-level object as it is read and written.
type metadataJSON struct {
	Keyslots map[string]json.RawMessage `json:"keyslots"`
	Tokens   map[string]json.RawMessage `json:"tokens"`
	Segments map[string]json.RawMessage `json:"segments"`
	Digests  map[string]json.RawMessage `json:"digests"`
	Config   json.RawMessage            `json:"config"`
}

// parseMetadata decodes and validates the JSON text of a header.
func parseMetadata(text []byte) (*Metadata, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(text, &top); err != nil {
		return nil, invalidf("json", "%v", err)
	}
	m := &Metadata{
		Keyslots: map[int]*Keyslot{}, Tokens: map[int]json.RawMessage{},
		Segments: map[int]*Segment{}, Digests: map[int]*Digest{},
	}
	for _, name := range []string{"keyslots", "tokens", "segments", "digests", "config"} {
		raw, ok := top[name]
		if !ok {
			return nil, invalidf(name, "missing")
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] != '{' {
			return nil, invalidf(name, "not an object")
		}
		delete(top, name)
		var members map[string]json.RawMessage
		if name != "config" {
			if err := json.Unmarshal(raw, &members); err != nil {
				return nil, invalidf(name, "%v", err)
			}
		}
		var err error
		switch name {
		case "keyslots":
			err = decodeMembers(name, members, m.Keyslots)
		case "segments":
			err = decodeMembers(name, members, m.Segments)
		case "digests":
			err = decodeMembers(name, members, m.Digests)
		case "tokens":
			for k, v := range members {
				id, perr := parseID(k)
				if perr != nil {
					return nil, invalidf(name, "%v", perr)
				}
				m.Tokens[id] = append(json.RawMessage(nil), bytes.TrimSpace(v)...)
			}
		case "config":
			if uerr := json.Unmarshal(raw, &m.Config); uerr != nil {
				err = invalidf(name, "%v", uerr)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if len(top) > 0 {
		m.Extra = top
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeMembers[T any](section string, members map[string]json.RawMessage, out map[int]*T) error {
	for k, raw := range members {
		id, err := parseID(k)
		if err != nil {
			return invalidf(section, "%v", err)
		}
		v := new(T)
		if err := json.Unmarshal(raw, v); err != nil {
			return invalidf(section+"."+k, "%v", err)
		}
		out[id] = v
	}
	return nil
}

// marshal encodes the metadata compactly, as cryptsetup does.
func (m *Metadata) marshal() ([]byte, error) {
	top := map[string]any{}
	for k, v := range m.Extra {
		top[k] = v
	}
	top["keyslots"] = withStringKeys(m.Keyslots)
	top["tokens"] = withStringKeys(m.Tokens)
	top["segments"] = withStringKeys(m.Segments)
	top["digests"] = withStringKeys(m.Digests)
	top["config"] = m.Config
	return marshalJSON(top)
}

// marshalJSON is json.Marshal without HTML escaping: '<', '>' and '&' in
// strings, and in tokens and unknown members kept as raw JSON, are written
// as they were read, not as \u003c and friends.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func withStringKeys[T any](m map[int]T) map[string]T {
	out := make(map[string]T, len(m))
	for k, v := range m {
		out[strconv.Itoa(k)] = v
	}
	return out
}

// MarshalJSON encodes the metadata as it is stored in the header.
func (m *Metadata) MarshalJSON() ([]byte, error) { return m.marshal() }
