package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
	"github.com/volcrypt/volcrypt/recovery"
)

// TokenRecovery is the type of the token that marks a recovery-password
// key slot, so that listings can tell it from a passphrase.
const TokenRecovery = "volcrypt-recovery"

// ImportToken stores a token's JSON under id (the lowest free id when
// negative) and returns the id.
func (v *Volume) ImportToken(raw json.RawMessage, id int) (int, error) {
	err := v.update(func(h *header.Header) error {
		var err error
		id, err = h.AddToken(id, raw)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("import token: %w", err)
	}
	return id, nil
}

// RemoveToken drops token id.
func (v *Volume) RemoveToken(id int) error {
	if err := v.update(func(h *header.Header) error { return h.RemoveToken(id) }); err != nil {
		return fmt.Errorf("remove token: %w", err)
	}
	return nil
}

// highEntropyKDF is the KDF of key slots whose secret is itself a strong
// random key (recovery passwords, TPM secrets): stretching adds nothing, so
// it is as cheap as cryptsetup allows, as systemd-cryptenroll does.
var highEntropyKDF = KDFOptions{Algorithm: kdf.PBKDF2, Hash: "sha512", ForceIterations: kdf.MinPBKDF2Iterations}

// EnrollRecovery generates a BitLocker-style recovery password, stores the
// volume key in a new key slot opened by it with a token marking it, and
// returns the password (the caller shows it once) and the slot. The key
// slot and token are written in one header update.
func (v *Volume) EnrollRecovery(ctx context.Context, volumeKey []byte, slot int) (*secret.Buffer, int, error) {
	return v.EnrollRecoveryEscrowed(ctx, volumeKey, slot, nil)
}

// Escrow stores a new recovery password (and the key slot it will open)
// somewhere outside the volume: an admin's vault or directory service.
type Escrow func(password []byte, keyslot int) error

// EnrollRecoveryEscrowed is EnrollRecovery that first hands the password to
// escrow, with the volume locked, after the key slot is prepared and before
// the header that names it is written. The slot exists only if escrow
// returned nil: an escrow error, or the process killed while escrow runs,
// leaves the volume as it was, so no recovery password opens it that
// nobody stored (after an error the slot's key material is wiped too; after
// a kill it stays in the unused area, unusable without the salt that only
// the unwritten header held). A nil escrow stores nothing.
func (v *Volume) EnrollRecoveryEscrowed(ctx context.Context, volumeKey []byte, slot int, escrow Escrow) (*secret.Buffer, int, error) {
	pw, err := recovery.Generate()
	if err != nil {
		return nil, -1, err
	}
	pass := secret.From([]byte(pw))
	p, err := highEntropyKDF.Resolve(ctx, len(volumeKey))
	if err != nil {
		pass.Wipe()
		return nil, -1, err
	}
	err = v.update(func(h *header.Header) error {
		var err error
		if slot, err = h.AddKeyslot(v.hdr, slot, pass.Bytes(), volumeKey, header.KeyslotParams{KDF: p, AFHash: afHash(h)}); err != nil {
			return err
		}
		tok, _ := json.Marshal(map[string]any{"type": TokenRecovery, "keyslots": []string{fmt.Sprint(slot)}})
		if _, err = h.AddToken(-1, tok); err != nil {
			return err
		}
		if escrow == nil {
			return nil
		}
		if err := escrow(pass.Bytes(), slot); err != nil {
			// No header ever named the slot; its key material goes too.
			if werr := header.WipeArea(v.hdr, h.Meta.Keyslots[slot].Area); werr != nil {
				err = errors.Join(err, fmt.Errorf("wipe the unused key material: %w", werr))
			}
			return &EscrowError{Keyslot: slot, Err: err}
		}
		return nil
	})
	if err != nil {
		pass.Wipe()
		var ee *EscrowError
		if errors.As(err, &ee) {
			return nil, -1, err
		}
		return nil, -1, fmt.Errorf("enroll recovery password: %w", err)
	}
	return pass, slot, nil
}

// EscrowError reports a failed Escrow: the key slot it was for was never
// written.
type EscrowError struct {
	Keyslot int
	Err     error
}

func (e *EscrowError) Error() string {
	return fmt.Sprintf("escrow of the recovery password failed: %v; key slot %d was not written, the volume is as before", e.Err, e.Keyslot)
}

func (e *EscrowError) Unwrap() error { return e.Err }
