package volume

import (
	"context"
	"fmt"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
)

// AddKey stores volumeKey in a new key slot (slot, or the lowest free one
// when slot is negative) opened by newPassphrase, and returns the slot.
// The key material is written before the header that refers to it, so an
// interruption leaves the old key set.
func (v *Volume) AddKey(ctx context.Context, volumeKey, newPassphrase []byte, slot int, k KDFOptions) (int, error) {
	p, err := k.Resolve(ctx, len(volumeKey))
	if err != nil {
		return -1, err
	}
	err = v.update(func(h *header.Header) error {
		var err error
		slot, err = h.AddKeyslot(v.hdr, slot, newPassphrase, volumeKey, header.KeyslotParams{KDF: p, AFHash: afHash(h)})
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("add key: %w", err)
	}
	return slot, nil
}

// afHash is the anti-forensic hash new key slots use: the digest's hash, as
// cryptsetup does.
func afHash(h *header.Header) string {
	if did, ok := h.Meta.SegmentDigest(0); ok {
		return h.Meta.Digests[did].Hash
	}
	return header.DefaultHash
}

// RemoveKey destroys key slot slot: the header stops naming it first, then
// its key material is overwritten. Removing the last slot of the data needs
// allowLast.
func (v *Volume) RemoveKey(slot int, allowLast bool) error {
	var area header.Area
	err := v.update(func(h *header.Header) error {
		if !allowLast {
			ids := h.Meta.SegmentKeyslots(0)
			if len(ids) == 1 && ids[0] == slot {
				return ErrLastKeyslot
			}
		}
		var err error
		area, err = h.RemoveKeyslot(slot)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove key slot %d: %w", slot, err)
	}
	return v.withLock(true, func() error { return header.WipeArea(v.hdr, area) })
}

// ChangeKey replaces the passphrase of the key slot that oldPassphrase opens
// (or of slot, when non-negative) and keeps its slot number. The new key
// material goes to a free area first; the header then switches to it in one
// write, and only then is the old material destroyed.
func (v *Volume) ChangeKey(ctx context.Context, oldPassphrase, newPassphrase []byte, slot int, k KDFOptions) (int, error) {
	key, opened, err := v.Unlock(oldPassphrase, UnlockOptions{Keyslot: slot})
	if err != nil {
		return -1, err
	}
	defer key.Wipe()
	p, err := k.Resolve(ctx, key.Len())
	if err != nil {
		return -1, err
	}
	var oldArea header.Area
	err = v.update(func(h *header.Header) error {
		tmp, err := h.AddKeyslot(v.hdr, -1, newPassphrase, key.Bytes(), header.KeyslotParams{KDF: p, AFHash: afHash(h), Priority: h.Meta.Keyslots[opened].Priority})
		if err != nil {
			return err
		}
		if oldArea, err = h.RemoveKeyslot(opened); err != nil {
			return err
		}
		return h.MoveKeyslot(tmp, opened)
	})
	if err != nil {
		return -1, fmt.Errorf("change key: %w", err)
	}
	return opened, v.withLock(true, func() error { return header.WipeArea(v.hdr, oldArea) })
}

// VolumeKey returns the volume key that passphrase opens.
func (v *Volume) VolumeKey(passphrase []byte, slot int) (*secret.Buffer, error) {
	key, _, err := v.Unlock(passphrase, UnlockOptions{Keyslot: slot})
	return key, err
}
