package volume

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
	"github.com/volcrypt/volcrypt/tpm"
)

// TokenTPM2 is the token type of TPM enrollments, systemd-cryptenroll's.
const TokenTPM2 = "systemd-tpm2"

// ErrNoToken means the volume has no token that could unlock it.
var ErrNoToken = errors.New("no token can unlock this volume")

// TPM2EnrollOptions describe a TPM enrollment.
type TPM2EnrollOptions struct {
	// Device is the TPM: "auto", a device path or "swtpm:host=H,port=P".
	Device string
	// PCRs bound in the sha256 bank; nil means PCR 7.
	PCRs []int
	// PIN, when set, is needed to unseal (PolicyAuthValue).
	PIN []byte
	// WipeExisting removes earlier TPM enrollments (their key slots and
	// tokens) in the same header update: the re-seal after a firmware update.
	WipeExisting bool
	// Keyslot for the new key slot; negative means the lowest free one.
	Keyslot int
}

// EnrollTPM2 seals a new random secret in the TPM under the PCR policy (and
// PIN), adds a key slot opened by it, and stores a systemd-tpm2 token that
// systemd-cryptsetup can use too. It returns the key slot and token id.
func (v *Volume) EnrollTPM2(ctx context.Context, volumeKey []byte, o TPM2EnrollOptions) (int, int, error) {
	t, err := tpm.Open(o.Device)
	if err != nil {
		return -1, -1, err
	}
	defer t.Close()
	e, err := sealEnrollment(ctx, t, len(volumeKey), o.PCRs, o.PIN)
	if err != nil {
		return -1, -1, err
	}
	defer e.wipe()
	slot, tokenID := o.Keyslot, -1
	var wiped []header.Area
	err = v.update(func(h *header.Header) error {
		// Add first, then drop the old enrollments: the new slot keeps its
		// place even when --wipe-slot frees a lower one.
		var err error
		if slot, tokenID, err = e.add(h, v.hdr, volumeKey, slot); err != nil {
			return err
		}
		if o.WipeExisting {
			if wiped, err = removeTokens(h, TokenTPM2, tokenID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return -1, -1, fmt.Errorf("enroll TPM2: %w", err)
	}
	return slot, tokenID, v.wipeAreas(wiped)
}

// enrollment is a secret sealed in the TPM, ready to become a key slot and
// a token.
type enrollment struct {
	sealed *tpm.Sealed
	pass   *secret.Buffer
	kdf    kdf.Params
}

func (e *enrollment) wipe() { e.pass.Wipe() }

// sealEnrollment seals a fresh 32-byte secret under pcrs (and pin).
func sealEnrollment(ctx context.Context, t transport.TPM, keyLen int, pcrs []int, pin []byte) (*enrollment, error) {
	sec := secret.New(32)
	defer sec.Wipe()
	if _, err := io.ReadFull(rand.Reader, sec.Bytes()); err != nil {
		return nil, err
	}
	sealed, err := tpm.Seal(t, sec.Bytes(), tpm.SealOptions{PCRs: pcrs, PIN: pin})
	if err != nil {
		return nil, fmt.Errorf("seal to TPM: %w", err)
	}
	p, err := highEntropyKDF.Resolve(ctx, keyLen)
	if err != nil {
		return nil, err
	}
	return &enrollment{sealed: sealed, pass: secret.From(tpm.Passphrase(sec.Bytes())), kdf: p}, nil
}

// add stores the enrollment as a key slot (slot, or the lowest free one)
// and a systemd-tpm2 token in the in-memory header.
func (e *enrollment) add(h *header.Header, w io.WriterAt, volumeKey []byte, slot int) (int, int, error) {
	slot, err := h.AddKeyslot(w, slot, e.pass.Bytes(), volumeKey, header.KeyslotParams{KDF: e.kdf, AFHash: afHash(h)})
	if err != nil {
		return -1, -1, err
	}
	tok, err := tpm.NewToken(e.sealed, slot).MarshalJSON()
	if err != nil {
		return -1, -1, err
	}
	id, err := h.AddToken(-1, tok)
	return slot, id, err
}

// removeTokens drops every token of type typ but keep, and the key slots
// only those tokens use, returning the areas to wipe once the header is
// written.
func removeTokens(h *header.Header, typ string, keep int) ([]header.Area, error) {
	var areas []header.Area
	for _, t := range h.Tokens() {
		if t.Type != typ || t.ID == keep {
			continue
		}
		a, err := removeToken(h, t.ID)
		if err != nil {
			return nil, err
		}
		areas = append(areas, a...)
	}
	return areas, nil
}

func usedByOtherToken(h *header.Header, slot int) bool {
	for _, t := range h.Tokens() {
		for _, s := range t.Keyslots {
			if s == slot {
				return true
			}
		}
	}
	return false
}

func (v *Volume) wipeAreas(areas []header.Area) error {
	return v.withLock(true, func() error {
		for _, a := range areas {
			if err := header.WipeArea(v.hdr, a); err != nil {
				return err
			}
		}
		return nil
	})
}

// TPM2UnlockOptions say how to reach the TPM and get a PIN.
type TPM2UnlockOptions struct {
	Device string
	// PIN is called when a token needs a PIN; nil means no PIN can be given.
	PIN func() ([]byte, error)
}

// UnlockTPM2 tries the volume's systemd-tpm2 tokens in order: it unseals
// each token's secret and opens its key slots with it. It returns the volume
// key and the slot that opened, or an error wrapping ErrNoToken (no TPM
// token) or the TPM's own reason (tpm.ErrPCRMismatch, tpm.ErrBadPIN,
// tpm.ErrLockout, tpm.ErrNoTPM).
func (v *Volume) UnlockTPM2(o TPM2UnlockOptions) (*secret.Buffer, int, error) {
	var toks []header.Token
	for _, t := range v.Header.Tokens() {
		if t.Type == TokenTPM2 {
			toks = append(toks, t)
		}
	}
	if len(toks) == 0 {
		return nil, -1, ErrNoToken
	}
	t, err := tpm.Open(o.Device)
	if err != nil {
		return nil, -1, err
	}
	defer t.Close()
	var errs []error
	for _, tk := range toks {
		key, slot, err := v.unlockToken(t, tk, o)
		if err == nil {
			return key, slot, nil
		}
		errs = append(errs, fmt.Errorf("token %d: %w", tk.ID, err))
		if errors.Is(err, tpm.ErrLockout) {
			break
		}
	}
	return nil, -1, errors.Join(errs...)
}

func (v *Volume) unlockToken(t transport.TPM, tk header.Token, o TPM2UnlockOptions) (*secret.Buffer, int, error) {
	pass, err := unsealToken(t, tk.JSON, o)
	if err != nil {
		return nil, -1, err
	}
	defer pass.Wipe()
	var errs []error
	for _, slot := range tk.Keyslots {
		key, _, err := v.Unlock(pass.Bytes(), UnlockOptions{Keyslot: slot})
		if err == nil {
			return key, slot, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, -1, fmt.Errorf("%w: token names no key slot", header.ErrWrongKey)
	}
	return nil, -1, errors.Join(errs...)
}

// unsealToken unseals a systemd-tpm2 token's secret and returns its key
// slots' passphrase.
func unsealToken(t transport.TPM, raw []byte, o TPM2UnlockOptions) (*secret.Buffer, error) {
	parsed, err := tpm.ParseToken(raw)
	if err != nil {
		return nil, err
	}
	sealed, err := parsed.Sealed()
	if err != nil {
		return nil, err
	}
	var pin []byte
	if sealed.PIN {
		if o.PIN == nil {
			return nil, tpm.ErrPINRequired
		}
		if pin, err = o.PIN(); err != nil {
			return nil, err
		}
		defer secret.Wipe(pin)
	}
	sec, err := tpm.Unseal(t, sealed, pin)
	if err != nil {
		return nil, err
	}
	defer secret.Wipe(sec)
	return secret.From(tpm.Passphrase(sec)), nil
}
