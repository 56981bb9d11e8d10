package volume

import (
	"fmt"

	"github.com/volcrypt/volcrypt/header"
)

// Repair rewrites a damaged or stale header copy from the good one, as
// cryptsetup repair does: same seqid and metadata, a fresh salt, the good
// copy untouched. It returns what was wrong (nothing when both copies were
// good). A volume whose two copies are both bad cannot be loaded, so it is
// refused before Repair. Every header update repairs first, too.
func (v *Volume) Repair() ([]error, error) {
	if v.rdonly {
		return nil, fmt.Errorf("%s is open read-only", v.HeaderPath)
	}
	var fixed []error
	err := v.withLock(true, func() error {
		h, err := header.Read(v.hdr)
		if err != nil {
			return fmt.Errorf("read header: %w", err)
		}
		if h.Version != 2 {
			return fmt.Errorf("LUKS%d volume: %w; use cryptsetup repair", h.Version, header.ErrReadOnlyFormat)
		}
		fixed = h.Damaged
		if err := h.Repair(v.hdr); err != nil {
			return err
		}
		v.Header = h
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", v.HeaderPath, err)
	}
	for _, d := range fixed {
		v.log.Debug("header copy rewritten", "was", d)
	}
	return fixed, nil
}
