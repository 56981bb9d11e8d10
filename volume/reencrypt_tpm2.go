package volume

import (
	"fmt"
	"slices"

	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
	"github.com/volcrypt/volcrypt/tpm"
)

// TPM2Keep is what the TPM gives for keeping TPM2 enrollments through a
// reencryption.
type TPM2Keep struct {
	// Passphrases holds, for each key slot a systemd-tpm2 token opens, the
	// passphrase unsealed from the TPM (slot → passphrase): pass them on
	// in ReencryptOptions.Keep, and the slot and its token keep working
	// with the new volume key. Wipe them after use.
	Passphrases map[int][]byte
	// Failed holds, for each key slot of a systemd-tpm2 token that could
	// not be unsealed or did not open, the reason (tpm.ErrNoTPM,
	// tpm.ErrPCRMismatch, …).
	Failed map[int]error
}

// Wipe wipes the passphrases.
func (k *TPM2Keep) Wipe() {
	for _, p := range k.Passphrases {
		secret.Wipe(p)
	}
}

// TPM2Keyslots returns the key slots that systemd-tpm2 tokens name, in
// order.
func (v *Volume) TPM2Keyslots() []int {
	var slots []int
	for _, t := range v.Header.Tokens() {
		if t.Type == TokenTPM2 {
			slots = append(slots, t.Keyslots...)
		}
	}
	slices.Sort(slots)
	return slices.Compact(slots)
}

// TPM2Passphrases unseals the secret of every systemd-tpm2 token with the
// TPM o names and returns the passphrase of each key slot it opens: a
// systemd-tpm2 slot's passphrase is the base64 of the unsealed secret, so
// a reencryption can re-wrap the slot under the same passphrase, and the
// sealed object in the token stays valid. When no TPM is reachable, every
// TPM2 slot is in Failed.
func (v *Volume) TPM2Passphrases(o TPM2UnlockOptions) *TPM2Keep {
	k := &TPM2Keep{Passphrases: map[int][]byte{}, Failed: map[int]error{}}
	slots := v.TPM2Keyslots()
	if len(slots) == 0 {
		return k
	}
	t, err := tpm.Open(o.Device)
	if err != nil {
		for _, s := range slots {
			k.Failed[s] = err
		}
		return k
	}
	defer t.Close()
	for _, tk := range v.Header.Tokens() {
		if tk.Type != TokenTPM2 {
			continue
		}
		pass, err := unsealToken(t, tk.JSON, o)
		for _, s := range tk.Keyslots {
			if err != nil {
				k.Failed[s] = fmt.Errorf("token %d: %w", tk.ID, err)
				continue
			}
			key, err := v.Header.OpenKeyslot(v.hdr, s, pass.Bytes(), kdf.DefaultLimits())
			if err != nil {
				k.Failed[s] = fmt.Errorf("token %d: %w", tk.ID, err)
				continue
			}
			key.Wipe()
			k.Passphrases[s] = slices.Clone(pass.Bytes())
			delete(k.Failed, s)
		}
		if pass != nil {
			pass.Wipe()
		}
	}
	for s := range k.Passphrases {
		delete(k.Failed, s)
	}
	return k
}
