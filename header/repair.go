package header

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// ErrModified means a header was changed in memory since it was read, so
// Repair cannot rewrite a copy from what is on disk.
var ErrModified = errors.New("header changed in memory since it was read")

// NeedsRepair reports whether Read found one copy damaged or stale (an
// older seqid) and used the other.
func (h *Header) NeedsRepair() bool { return h.bad[0] || h.bad[1] }

// Repair rewrites the copy that Read found damaged or stale from the one it
// used, as cryptsetup does: the same seqid and JSON text byte for byte, a
// fresh salt, and the good copy left untouched, so an interruption still
// leaves that copy valid. It does nothing when both copies were good. A
// header where both copies are bad never reaches here: Read refuses it.
func (h *Header) Repair(w io.WriterAt) error {
	if h.Version != 2 {
		return fmt.Errorf("repair header: LUKS%d %w", h.Version, ErrReadOnlyFormat)
	}
	if !h.NeedsRepair() {
		return nil
	}
	if h.jsonArea == nil || int64(len(h.jsonArea)) != h.Size-BinarySize {
		return fmt.Errorf("repair header: %w", ErrModified)
	}
	alg := h.CsumAlg
	if alg == "" {
		alg = "sha256"
	}
	for i, bad := range h.bad {
		if !bad {
			continue
		}
		if _, err := rand.Read(h.salts[i][:]); err != nil {
			return err
		}
		area := make([]byte, h.Size)
		copy(area[BinarySize:], h.jsonArea)
		if err := h.sealCopy(area, i, h.SeqID, alg); err != nil {
			return fmt.Errorf("repair %s header: %w", copyName(i), err)
		}
		if _, err := w.WriteAt(area, int64(i)*h.Size); err != nil {
			return fmt.Errorf("repair %s header: %w", copyName(i), err)
		}
		if s, ok := w.(Syncer); ok {
			if err := s.Sync(); err != nil {
				return fmt.Errorf("flush %s header: %w", copyName(i), err)
			}
		}
		h.bad[i] = false
	}
	h.Damaged = nil
	return nil
}
