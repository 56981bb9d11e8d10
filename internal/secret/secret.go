// Package secret holds key material in memory that is locked against
// swapping where the system allows it and wiped when no longer needed.
package secret

import (
	"crypto/subtle"

	"golang.org/x/sys/unix"
)

// Buffer is a fixed-size byte buffer for key material. Its memory is
// allocated outside the Go heap with mmap and locked with mlock when the
// system allows it, so it is never moved by the garbage collector and never
// written to swap. Wipe zeroes and releases it; Wipe is idempotent.
type Buffer struct {
	b      []byte
	mapped bool
}

// New returns a zeroed buffer of n bytes.
func New(n int) *Buffer {
	if n <= 0 {
		return &Buffer{b: []byte{}}
	}
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return &Buffer{b: make([]byte, n)}
	}
	_ = unix.Mlock(mem) // best effort: RLIMIT_MEMLOCK may forbid it
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	return &Buffer{b: mem, mapped: true}
}

// From copies src into a new Buffer and wipes src.
func From(src []byte) *Buffer {
	s := New(len(src))
	copy(s.b, src)
	Wipe(src)
	return s
}

// Bytes returns the buffer's memory. It is valid until Wipe.
func (s *Buffer) Bytes() []byte {
	if s == nil {
		return nil
	}
	return s.b
}

// Len is the buffer's size in bytes.
func (s *Buffer) Len() int {
	if s == nil {
		return 0
	}
	return len(s.b)
}

// Equal reports in constant time whether the buffer holds b.
func (s *Buffer) Equal(b []byte) bool {
	return subtle.ConstantTimeCompare(s.Bytes(), b) == 1
}

// Wipe zeroes the buffer and releases its memory. Calling it again, or on a
// nil Buffer, does nothing.
func (s *Buffer) Wipe() {
	if s == nil || s.b == nil {
		return
	}
	Wipe(s.b)
	if s.mapped {
		_ = unix.Munlock(s.b)
		_ = unix.Munmap(s.b)
	}
	s.b = nil
}

// Wipe zeroes b.
func Wipe(b []byte) {
	clear(b)
}
