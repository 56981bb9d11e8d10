package tpm_test

import (
	"errors"
	"fmt"

	"github.com/volcrypt/volcrypt/tpm"
)

// Enrolling: seal a fresh 32-byte secret to PCR 7 with a PIN, add
// Passphrase(secret) as a new key slot, and store the token in the header.
func Example_enroll() {
	t, err := tpm.Open("auto") // or "swtpm:host=127.0.0.1,port=2321"
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()
	secret := make([]byte, 32) // from crypto/rand in real use
	sealed, err := tpm.Seal(t, secret, tpm.SealOptions{PCRs: []int{7}, PIN: []byte("1234")})
	if err != nil {
		fmt.Println(err)
		return
	}
	slotPassphrase := tpm.Passphrase(secret) // add this as key slot 1
	tokenJSON, err := tpm.NewToken(sealed, 1).MarshalJSON()
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = slotPassphrase, tokenJSON // header.AddToken(tokenJSON) …
}

// Unlocking: parse the token, unseal, and try Passphrase(secret) on its
// key slots; fall back to the recovery password on ErrPCRMismatch.
func Example_unlock() {
	tokenJSON := []byte(`{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"…"}`)
	tok, err := tpm.ParseToken(tokenJSON)
	if err != nil {
		fmt.Println(err)
		return
	}
	sealed, err := tok.Sealed()
	if err != nil {
		fmt.Println(err)
		return
	}
	t, err := tpm.Open("auto")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()
	secret, err := tpm.Unseal(t, sealed, []byte("1234"))
	var bad *tpm.BadPINError
	switch {
	case errors.Is(err, tpm.ErrPCRMismatch):
		fmt.Println(err, "- the recovery password still works")
	case errors.As(err, &bad):
		fmt.Println(bad.TriesLeft, "tries left")
	case err == nil:
		_ = tpm.Passphrase(secret) // open key slots tok.Keyslots with it
	}
}
