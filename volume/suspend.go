package volume

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/tpm"
)

// TokenSuspend is the type of the token that holds a clear key while TPM
// protection is suspended (BitLocker's Suspend-BitLocker): the volume then
// opens with no TPM and no passphrase for a number of boots, so that a
// firmware or boot-loader update can change the PCRs, after which the TPM
// enrollments are re-sealed to the new values and the clear key destroyed.
// Anyone holding the disk while it is suspended can open it.
const TokenSuspend = "volcrypt-tpm2-suspend"

// ErrNotSuspended means the volume has no suspended TPM protection.
var ErrNotSuspended = errors.New("TPM protection is not suspended")

// suspendToken is the JSON of a TokenSuspend token.
type suspendToken struct {
	Type      string   `json:"type"`
	Keyslots  []string `json:"keyslots"`
	ClearKey  []byte   `json:"volcrypt-clear-key"`
	BootsLeft int      `json:"volcrypt-boots-left"`
}

// suspended returns the suspend token of h, if any.
func suspended(h *header.Header) (*suspendToken, int, bool) {
	for _, t := range h.Tokens() {
		if t.Type != TokenSuspend {
			continue
		}
		var st suspendToken
		if json.Unmarshal(t.JSON, &st) == nil && len(st.Keyslots) == 1 && len(st.ClearKey) > 0 {
			return &st, t.ID, true
		}
	}
	return nil, -1, false
}

// Suspended reports whether TPM protection is suspended and for how many
// more boots.
func (v *Volume) Suspended() (bootsLeft int, ok bool) {
	st, _, ok := suspended(v.Header)
	if !ok {
		return 0, false
	}
	return st.BootsLeft, true
}

// SuspendTPM2 suspends TPM protection for boots boots: it stores a clear
// key in a new key slot and token (replacing an earlier suspension).
func (v *Volume) SuspendTPM2(ctx context.Context, volumeKey []byte, boots int) (int, error) {
	if boots < 1 {
		return -1, fmt.Errorf("suspend: reboot count %d must be at least 1", boots)
	}
	clear := secret.New(32)
	defer clear.Wipe()
	if _, err := io.ReadFull(rand.Reader, clear.Bytes()); err != nil {
		return -1, err
	}
	p, err := highEntropyKDF.Resolve(ctx, len(volumeKey))
	if err != nil {
		return -1, err
	}
	var slot int
	var wiped []header.Area
	err = v.update(func(h *header.Header) error {
		var err error
		if slot, err = h.AddKeyslot(v.hdr, -1, clear.Bytes(), volumeKey, header.KeyslotParams{KDF: p, AFHash: afHash(h)}); err != nil {
			return err
		}
		tok, err := json.Marshal(suspendToken{Type: TokenSuspend, Keyslots: []string{strconv.Itoa(slot)}, ClearKey: clear.Bytes(), BootsLeft: boots})
		if err != nil {
			return err
		}
		id, err := h.AddToken(-1, tok)
		if err != nil {
			return err
		}
		wiped, err = removeTokens(h, TokenSuspend, id)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("suspend TPM protection: %w", err)
	}
	return slot, v.wipeAreas(wiped)
}

// UnlockSuspended opens the volume with the clear key of a suspension.
func (v *Volume) UnlockSuspended() (*secret.Buffer, int, error) {
	st, _, ok := suspended(v.Header)
	if !ok {
		return nil, -1, ErrNotSuspended
	}
	slot, err := strconv.Atoi(st.Keyslots[0])
	if err != nil {
		return nil, -1, fmt.Errorf("suspend token: %w", err)
	}
	defer secret.Wipe(st.ClearKey)
	key, _, err := v.Unlock(st.ClearKey, UnlockOptions{Keyslot: slot})
	return key, slot, err
}

// CountBoot records one boot of a suspended volume; when none is left it
// re-seals the TPM enrollments to the current PCR values and destroys the
// clear key (ResumeTPM2). It returns the boots left (0 after resuming).
func (v *Volume) CountBoot(ctx context.Context, volumeKey []byte, tpmDevice string) (int, error) {
	st, _, ok := suspended(v.Header)
	if !ok {
		return 0, ErrNotSuspended
	}
	secret.Wipe(st.ClearKey)
	if st.BootsLeft > 1 {
		err := v.update(func(h *header.Header) error {
			st, id, ok := suspended(h)
			if !ok {
				return ErrNotSuspended
			}
			defer secret.Wipe(st.ClearKey)
			st.BootsLeft--
			tok, err := json.Marshal(st)
			if err != nil {
				return err
			}
			if err := h.RemoveToken(id); err != nil {
				return err
			}
			_, err = h.AddToken(id, tok)
			return err
		})
		return st.BootsLeft - 1, err
	}
	return 0, v.ResumeTPM2(ctx, volumeKey, tpmDevice)
}

// ResumeTPM2 ends a suspension: every TPM enrollment without a PIN is
// re-sealed to the current values of its PCRs, and the clear key's slot and
// token are destroyed, in one header update. Enrollments with a PIN cannot
// be re-sealed without it; they are kept, and the error says so after the
// rest is done.
func (v *Volume) ResumeTPM2(ctx context.Context, volumeKey []byte, tpmDevice string) error {
	if _, _, ok := suspended(v.Header); !ok {
		return ErrNotSuspended
	}
	type reseal struct {
		old int
		e   *enrollment
	}
	var (
		todo    []reseal
		withPIN []int
	)
	tokens := v.Header.Tokens()
	hasTPM := false
	for _, t := range tokens {
		hasTPM = hasTPM || t.Type == TokenTPM2
	}
	if hasTPM {
		t, err := tpm.Open(tpmDevice)
		if err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		defer t.Close()
		for _, tk := range tokens {
			if tk.Type != TokenTPM2 {
				continue
			}
			parsed, err := tpm.ParseToken(tk.JSON)
			if err != nil {
				return fmt.Errorf("resume: token %d: %w", tk.ID, err)
			}
			if parsed.PIN {
				withPIN = append(withPIN, tk.ID)
				continue
			}
			e, err := sealEnrollment(ctx, t, len(volumeKey), parsed.PCRs, nil)
			if err != nil {
				return fmt.Errorf("resume: token %d: %w", tk.ID, err)
			}
			defer e.wipe()
			todo = append(todo, reseal{tk.ID, e})
		}
	}
	var wiped []header.Area
	err := v.update(func(h *header.Header) error {
		for _, r := range todo {
			if _, _, err := r.e.add(h, v.hdr, volumeKey, -1); err != nil {
				return err
			}
			areas, err := removeToken(h, r.old)
			if err != nil {
				return err
			}
			wiped = append(wiped, areas...)
		}
		areas, err := removeTokens(h, TokenSuspend, -1)
		wiped = append(wiped, areas...)
		return err
	})
	if err != nil {
		return fmt.Errorf("resume TPM protection: %w", err)
	}
	if err := v.wipeAreas(wiped); err != nil {
		return err
	}
	if len(withPIN) > 0 {
		return fmt.Errorf("resume: TPM tokens %v need a PIN and were not re-sealed; re-enroll them with 'volcrypt enroll tpm2 --tpm2-with-pin --wipe-slot tpm2'", withPIN)
	}
	return nil
}

// removeToken drops token id and the key slots only it uses.
func removeToken(h *header.Header, id int) ([]header.Area, error) {
	var slots []int
	for _, t := range h.Tokens() {
		if t.ID == id {
			slots = t.Keyslots
		}
	}
	if err := h.RemoveToken(id); err != nil {
		return nil, err
	}
	var areas []header.Area
	for _, slot := range slots {
		if usedByOtherToken(h, slot) {
			continue
		}
		a, err := h.RemoveKeyslot(slot)
		if err != nil {
			return nil, err
		}
		areas = append(areas, a)
	}
	return areas, nil
}

// SuspendSlot returns the key slot of the clear key while suspended.
func (v *Volume) SuspendSlot() (int, bool) {
	st, _, ok := suspended(v.Header)
	if !ok {
		return -1, false
	}
	secret.Wipe(st.ClearKey)
	slot, err := strconv.Atoi(st.Keyslots[0])
	return slot, err == nil
}
