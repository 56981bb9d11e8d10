// Package header reads and writes LUKS2 headers exactly as cryptsetup does:
// the binary header and JSON metadata in two copies, key slots with their
// anti-forensic split key material, and the volume key digest. It reads
// LUKS1 headers too, for unlocking only. It works on io.ReaderAt and
// io.WriterAt and knows nothing of devices, mappings or TPMs.
package header

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// Header is a LUKS header in memory.
type Header struct {
	Version   int    // 1 or 2
	UUID      string // with dashes, as stored
	Label     string
	Subsystem string
	SeqID     uint64
	// Size is the size of one header copy (binary header and JSON area);
	// the secondary copy starts at this offset.
	Size    int64
	CsumAlg string
	Meta    *Metadata

	salts [2][saltLen]byte
	// released are the areas of key slots removed since the header was
	// read or written; AddKeyslot does not reuse them until Write.
	released []Area
	// Damaged lists the problems found in the copies that were not used, so
	// that a repair can rewrite them; empty when both copies were good and
	// had the same seqid.
	Damaged []error

	// bad marks the copies (0 primary, 1 secondary) that Read found damaged
	// or stale; jsonArea is the JSON area of the copy it used, kept so that
	// Repair rewrites the other copy byte for byte.
	bad      [2]bool
	jsonArea []byte
}

// Read reads the header of a LUKS device. It checks both LUKS2 copies and
// uses the valid one with the higher seqid; Damaged records why the other
// was not used. A LUKS1 header is converted to the same model.
func Read(r io.ReaderAt) (*Header, error) {
	first := make([]byte, BinarySize)
	if n, err := r.ReadAt(first, 0); n < usedBinary {
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("%w: device is smaller than a LUKS header", ErrNotLUKS)
		}
		return nil, fmt.Errorf("read header: %w", err)
	}
	if bytes.Equal(first[:6], magicPrimary) && first[6] == 0 && first[7] == 1 {
		return readLUKS1(r, first)
	}
	primary, perr := readCopy(r, 0, true, 0)
	var hint int64
	if primary != nil {
		hint = primary.Size
	}
	secondary, serr := findSecondary(r, hint)
	switch {
	case primary == nil && secondary == nil:
		if errors.Is(perr, ErrNotLUKS) && errors.Is(serr, ErrNotLUKS) {
			return nil, ErrNotLUKS
		}
		return nil, errors.Join(perr, serr)
	case secondary == nil:
		primary.Damaged = []error{serr}
		primary.bad[1] = true
		return primary, nil
	case primary == nil:
		secondary.Damaged = []error{perr}
		secondary.bad[0] = true
		return secondary, nil
	}
	if secondary.SeqID > primary.SeqID {
		secondary.salts[0] = primary.salts[0]
		secondary.bad[0] = true
		secondary.Damaged = []error{&CopyError{Copy: "primary", Offset: 0, Err: fmt.Errorf("stale seqid %d < %d", primary.SeqID, secondary.SeqID)}}
		return secondary, nil
	}
	primary.salts[1] = secondary.salts[1]
	if secondary.SeqID != primary.SeqID {
		primary.bad[1] = true
		primary.Damaged = []error{&CopyError{Copy: "secondary", Offset: primary.Size, Err: fmt.Errorf("stale seqid %d < %d", secondary.SeqID, primary.SeqID)}}
	}
	return primary, nil
}

// findSecondary looks for the secondary copy at the offset the primary
// names, or else at every legal offset.
func findSecondary(r io.ReaderAt, hint int64) (*Header, error) {
	if hint > 0 {
		return readCopy(r, hint, false, hint)
	}
	var errs []error
	for _, off := range HeaderSizes {
		h, err := readCopy(r, off, false, 0)
		if err == nil {
			return h, nil
		}
		if !errors.Is(err, ErrNotLUKS) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil, &CopyError{Copy: "secondary", Offset: -1, Err: ErrNotLUKS}
	}
	return nil, errors.Join(errs...)
}

// readCopy reads and fully checks one header copy at off.
func readCopy(r io.ReaderAt, off int64, primary bool, wantSize int64) (*Header, error) {
	name := "secondary"
	if primary {
		name = "primary"
	}
	fail := func(err error) (*Header, error) {
		return nil, &CopyError{Copy: name, Offset: off, Err: err}
	}
	bin := make([]byte, BinarySize)
	if _, err := r.ReadAt(bin, off); err != nil {
		if err == io.EOF {
			return fail(ErrNotLUKS)
		}
		return fail(err)
	}
	b, err := parseBinary(bin)
	if err != nil {
		return fail(err)
	}
	if b.isPrimary() != primary {
		return fail(fmt.Errorf("%w: wrong magic for the %s copy", ErrNotLUKS, name))
	}
	if b.HdrOffset != uint64(off) {
		return fail(invalidf("hdr_offset", "%d, but the copy is at %d", b.HdrOffset, off))
	}
	if !primary && wantSize > 0 && int64(b.HdrSize) != wantSize {
		return fail(invalidf("hdr_size", "%d differs from the primary copy's %d", b.HdrSize, wantSize))
	}
	if !primary && b.HdrSize != uint64(off) {
		return fail(invalidf("hdr_size", "%d, but the secondary copy is at %d", b.HdrSize, off))
	}
	area := make([]byte, b.HdrSize)
	copy(area, bin)
	if _, err := r.ReadAt(area[BinarySize:], off+BinarySize); err != nil {
		return fail(fmt.Errorf("read JSON area: %w", err))
	}
	if err := verifyChecksum(area, b); err != nil {
		return fail(err)
	}
	text, err := jsonText(area[BinarySize:])
	if err != nil {
		return fail(err)
	}
	meta, err := parseMetadata(text)
	if err != nil {
		return fail(err)
	}
	if err := meta.checkLayout(b.HdrSize); err != nil {
		return fail(err)
	}
	h := &Header{
		Version: 2, UUID: b.UUID, Label: b.Label, Subsystem: b.Subsystem, SeqID: b.SeqID,
		Size: int64(b.HdrSize), CsumAlg: b.CsumAlg, Meta: meta, jsonArea: area[BinarySize:],
	}
	idx := 1
	if primary {
		idx = 0
	}
	h.salts[idx] = b.Salt
	return h, nil
}

// jsonText returns the JSON text of a JSON area: it must start with '{',
// end with a NUL inside the area, and be followed only by zeros.
func jsonText(area []byte) ([]byte, error) {
	if len(area) == 0 || area[0] != '{' {
		return nil, invalidf("json area", "does not start with '{'")
	}
	end := bytes.IndexByte(area, 0)
	if end < 0 {
		return nil, invalidf("json area", "not NUL-terminated")
	}
	for _, c := range area[end:] {
		if c != 0 {
			return nil, invalidf("json area", "non-zero bytes after the JSON text")
		}
	}
	return area[:end], nil
}

// Syncer is implemented by writers that can flush their data to stable
// storage, such as *os.File.
type Syncer interface{ Sync() error }

// Write writes both header copies with the next seqid: the primary first,
// then the secondary, flushing after each when w is a Syncer, so that an
// interruption leaves one valid copy with either the old or the new
// metadata. It refuses LUKS1 headers and headers with unmet requirements.
func (h *Header) Write(w io.WriterAt) error {
	if h.Version != 2 {
		return fmt.Errorf("write header: LUKS%d %w", h.Version, ErrReadOnlyFormat)
	}
	if unmet := h.Meta.UnmetRequirements(); len(unmet) > 0 {
		return fmt.Errorf("write header: %w", &RequirementsError{Requirements: unmet})
	}
	copies, err := h.encode(h.SeqID + 1)
	if err != nil {
		return err
	}
	for i, c := range copies {
		if _, err := w.WriteAt(c, int64(i)*h.Size); err != nil {
			return fmt.Errorf("write %s header: %w", copyName(i), err)
		}
		if s, ok := w.(Syncer); ok {
			if err := s.Sync(); err != nil {
				return fmt.Errorf("flush %s header: %w", copyName(i), err)
			}
		}
	}
	h.SeqID++
	h.Damaged = nil
	h.bad = [2]bool{}
	h.jsonArea = nil
	h.released = nil
	return nil
}

func copyName(i int) string {
	if i == 0 {
		return "primary"
	}
	return "secondary"
}

// encode returns both header copies with the given seqid.
func (h *Header) encode(seqid uint64) ([2][]byte, error) {
	var out [2][]byte
	if !ValidHeaderSize(h.Size) {
		return out, invalidf("hdr_size", "%d is not a legal LUKS2 header size", h.Size)
	}
	h.Meta.Config.JSONSize = U64(h.Size - BinarySize)
	if err := h.Meta.validate(); err != nil {
		return out, fmt.Errorf("refusing to write: %w", err)
	}
	if err := h.Meta.checkLayout(uint64(h.Size)); err != nil {
		return out, fmt.Errorf("refusing to write: %w", err)
	}
	text, err := h.Meta.marshal()
	if err != nil {
		return out, fmt.Errorf("encode metadata: %w", err)
	}
	if len(text) >= int(h.Size-BinarySize) {
		return out, fmt.Errorf("encode metadata: %d bytes of JSON do not fit the %d-byte area; format with a larger --luks2-metadata-size", len(text), h.Size-BinarySize)
	}
	alg := h.CsumAlg
	if alg == "" {
		alg = "sha256"
	}
	for i := range out {
		if h.salts[i] == ([saltLen]byte{}) {
			if _, err := rand.Read(h.salts[i][:]); err != nil {
				return out, err
			}
		}
		area := make([]byte, h.Size)
		copy(area[BinarySize:], text)
		if err := h.sealCopy(area, i, seqid, alg); err != nil {
			return out, err
		}
		out[i] = area
	}
	h.CsumAlg = alg
	return out, nil
}

// sealCopy fills in the binary header of copy i (0 primary, 1 secondary)
// in area, whose JSON area is already in place, and its checksum.
func (h *Header) sealCopy(area []byte, i int, seqid uint64, alg string) error {
	b := binaryHeader{Version: 2, HdrSize: uint64(h.Size), SeqID: seqid, Label: h.Label, CsumAlg: alg,
		Salt: h.salts[i], UUID: h.UUID, Subsystem: h.Subsystem, HdrOffset: uint64(int64(i) * h.Size)}
	if i == 0 {
		copy(b.Magic[:], magicPrimary)
	} else {
		copy(b.Magic[:], magicSecondary)
	}
	if err := b.marshal(area); err != nil {
		return err
	}
	sum, err := computeChecksum(area, alg)
	if err != nil {
		return err
	}
	copy(area[offCsum:], sum)
	return nil
}

// KeyslotsEnd is the offset just past the key-slot area.
func (h *Header) KeyslotsEnd() int64 {
	return 2*h.Size + int64(h.Meta.Config.KeyslotsSize)
}

// DataSegment returns the segment holding the volume's data (segment 0) and
// its id, or an error if there is none.
func (h *Header) DataSegment() (*Segment, error) {
	s, ok := h.Meta.Segments[0]
	if !ok {
		return nil, fmt.Errorf("%w: no data segment", ErrInvalid)
	}
	return s, nil
}
