package crypt

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

var (
	// ErrOutOfRange means a write reaches past the end of a segment, or an
	// offset is negative.
	ErrOutOfRange = errors.New("outside the segment")
	// ErrNoCipher means a Segment was built without a Cipher or device.
	ErrNoCipher = errors.New("segment has no cipher or device")
)

// Device is the storage under a Segment, such as an *os.File.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// segmentChunk is the size of the pooled staging buffers: whole-sector writes
// encrypt through them, partial sectors are decrypted in them.
const segmentChunk = 256 << 10

// Segment is the plaintext view of an encrypted LUKS2 data segment: it reads
// whole sectors from the device and decrypts them, and encrypts on write,
// with read-modify-write for partial sectors. It is safe for concurrent use
// under the io.WriterAt rule that parallel writes do not overlap; writes that
// share a partial sector are serialized.
type Segment struct {
	dev      Device
	c        *Cipher
	offset   int64
	size     int64
	ivTweak  uint64
	rmw      sync.Mutex // held across a partial-sector read-modify-write
	stageBuf sync.Pool  // *[]byte of segmentChunk bytes
}

// NewSegment returns the plaintext view of the segment that starts
// offsetBytes into dev and holds sizeBytes of ciphertext, encrypted by c.
// ivTweak is the LUKS2 segment's iv_tweak in 512-byte sectors; it is added to
// every IV, like dm-crypt's iv_offset. The size is rounded down to whole
// sectors, as dm-crypt maps only whole sectors; a negative size counts as 0.
func NewSegment(dev Device, c *Cipher, offsetBytes, sizeBytes int64, ivTweak uint64) *Segment {
	s := &Segment{dev: dev, c: c, offset: offsetBytes, ivTweak: ivTweak}
	if c != nil && sizeBytes > 0 {
		s.size = sizeBytes - sizeBytes%int64(c.SectorSize())
	}
	s.stageBuf.New = func() any { b := make([]byte, segmentChunk); return &b }
	return s
}

// Size returns the plaintext size in bytes.
func (s *Segment) Size() int64 { return s.size }

// ivOf returns the IV sector number of the sector starting at plaintext
// offset off (a multiple of the sector size).
func (s *Segment) ivOf(off int64) uint64 {
	return uint64(off)/ivSectorBytes + s.ivTweak
}

// ReadAt reads len(p) plaintext bytes from offset off. Reading at or past the
// end returns io.EOF, with n < len(p) when the read was cut short.
func (s *Segment) ReadAt(p []byte, off int64) (int, error) {
	if s.c == nil || s.dev == nil {
		return 0, fmt.Errorf("read segment: %w", ErrNoCipher)
	}
	if off < 0 {
		return 0, fmt.Errorf("read segment at %d: %w", off, ErrOutOfRange)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > s.size-off {
		p = p[:s.size-off]
	}
	ss := int64(s.c.SectorSize())
	n := 0
	// Leading partial sector.
	if head := off % ss; head != 0 && len(p) > 0 {
		sec := off - head
		m, err := s.readPartial(p, sec, int(head))
		n += m
		if err != nil {
			return n, err
		}
		p, off = p[m:], off+int64(m)
	}
	// Whole sectors: read the ciphertext straight into p, decrypt in place.
	if whole := int64(len(p)) / ss * ss; whole > 0 {
		if err := s.readSectors(p[:whole], off); err != nil {
			return n, err
		}
		n += int(whole)
		p, off = p[whole:], off+whole
	}
	// Trailing partial sector.
	if len(p) > 0 {
		m, err := s.readPartial(p, off, 0)
		n += m
		if err != nil {
			return n, err
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// readSectors fills p (whole sectors) with the plaintext at sector offset off.
func (s *Segment) readSectors(p []byte, off int64) error {
	// io.ReaderAt may report io.EOF along with a full read.
	if n, err := s.dev.ReadAt(p, s.offset+off); n < len(p) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read segment at %d: %w", off, err)
	}
	if err := s.c.Decrypt(p, p, s.ivOf(off)); err != nil {
		return fmt.Errorf("read segment at %d: %w", off, err)
	}
	return nil
}

// readPartial decrypts the sector at sec and copies from byte skip of it
// into p, returning how much it copied.
func (s *Segment) readPartial(p []byte, sec int64, skip int) (int, error) {
	bp := s.stageBuf.Get().(*[]byte)
	defer s.stageBuf.Put(bp)
	sector := (*bp)[:s.c.SectorSize()]
	defer clear(sector) // plaintext
	if err := s.readSectors(sector, sec); err != nil {
		return 0, err
	}
	return copy(p, sector[skip:]), nil
}

// WriteAt encrypts p and writes it at plaintext offset off. A write that
// would reach past the end of the segment is refused whole, with
// ErrOutOfRange and nothing written.
func (s *Segment) WriteAt(p []byte, off int64) (int, error) {
	if s.c == nil || s.dev == nil {
		return 0, fmt.Errorf("write segment: %w", ErrNoCipher)
	}
	if off < 0 || off > s.size || int64(len(p)) > s.size-off {
		return 0, fmt.Errorf("write %d bytes to segment at %d (size %d): %w", len(p), off, s.size, ErrOutOfRange)
	}
	ss := int64(s.c.SectorSize())
	n := 0
	if head := off % ss; head != 0 && len(p) > 0 {
		m, err := s.writePartial(p, off-head, int(head))
		n += m
		if err != nil {
			return n, err
		}
		p, off = p[m:], off+int64(m)
	}
	if whole := int64(len(p)) / ss * ss; whole > 0 {
		if err := s.writeSectors(p[:whole], off); err != nil {
			return n, err
		}
		n += int(whole)
		p, off = p[whole:], off+whole
	}
	if len(p) > 0 {
		m, err := s.writePartial(p, off, 0)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writeSectors encrypts whole sectors of plaintext p through a staging buffer
// (p belongs to the caller and is left as it is) and writes them at off.
func (s *Segment) writeSectors(p []byte, off int64) error {
	bp := s.stageBuf.Get().(*[]byte)
	defer s.stageBuf.Put(bp)
	stage := *bp
	for len(p) > 0 {
		m := min(len(p), len(stage))
		buf := stage[:m]
		if err := s.c.Encrypt(buf, p[:m], s.ivOf(off)); err != nil {
			return fmt.Errorf("write segment at %d: %w", off, err)
		}
		if _, err := s.dev.WriteAt(buf, s.offset+off); err != nil {
			return fmt.Errorf("write segment at %d: %w", off, err)
		}
		p, off = p[m:], off+int64(m)
	}
	return nil
}

// writePartial replaces part of the sector at sec, from byte skip on, with
// the start of p, returning how many bytes of p it used.
func (s *Segment) writePartial(p []byte, sec int64, skip int) (int, error) {
	s.rmw.Lock()
	defer s.rmw.Unlock()
	bp := s.stageBuf.Get().(*[]byte)
	defer s.stageBuf.Put(bp)
	sector := (*bp)[:s.c.SectorSize()]
	defer clear(sector) // plaintext
	if err := s.readSectors(sector, sec); err != nil {
		return 0, err
	}
	m := copy(sector[skip:], p)
	if err := s.c.Encrypt(sector, sector, s.ivOf(sec)); err != nil {
		return 0, fmt.Errorf("write segment at %d: %w", sec, err)
	}
	if _, err := s.dev.WriteAt(sector, s.offset+sec); err != nil {
		return 0, fmt.Errorf("write segment at %d: %w", sec, err)
	}
	return m, nil
}
