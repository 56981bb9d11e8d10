package volume

import (
	"fmt"
	"maps"
	"slices"

	"github.com/volcrypt/volcrypt/header"
)

// Erase destroys every key slot, making the data unrecoverable without a
// header backup (cryptsetup's erase, luksErase). The header stops naming the
// slots first; then the whole key-slot area, apart from slots of other
// types (reencryption), is overwritten with random bytes, so running Erase
// again after an interruption still destroys the key material. It returns
// the slots it removed.
func (v *Volume) Erase() ([]int, error) {
	var removed []int
	err := v.update(func(h *header.Header) error {
		removed = nil
		for _, id := range slices.Sorted(maps.Keys(h.Meta.Keyslots)) {
			if h.Meta.Keyslots[id].Type != header.KeyslotLUKS2 {
				continue
			}
			if _, err := h.RemoveKeyslot(id); err != nil {
				return err
			}
			removed = append(removed, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("erase: %w", err)
	}
	err = v.withLock(true, func() error {
		for _, a := range freeAreas(v.Header) {
			if err := header.WipeArea(v.hdr, a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("erase: %w", err)
	}
	return removed, nil
}

// freeAreas returns the parts of the key-slot area that no key slot uses.
func freeAreas(h *header.Header) []header.Area {
	var used []header.Area
	for _, k := range h.Meta.Keyslots {
		used = append(used, k.Area)
	}
	slices.SortFunc(used, func(a, b header.Area) int { return int(int64(a.Offset) - int64(b.Offset)) })
	var free []header.Area
	off, end := header.U64(2*h.Size), header.U64(h.KeyslotsEnd())
	for _, u := range used {
		if u.Offset > off {
			free = append(free, header.Area{Type: "raw", Offset: off, Size: u.Offset - off})
		}
		off = max(off, u.Offset+u.Size)
	}
	if off < end {
		free = append(free, header.Area{Type: "raw", Offset: off, Size: end - off})
	}
	return free
}
