package tpm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"

	"github.com/volcrypt/volcrypt/internal/secret"
)

// pinIterations is systemd's PBKDF2 iteration count for salted PINs.
const pinIterations = 10000

// pinSaltBytes is the size of a new PIN salt.
const pinSaltBytes = 16

// pinAuthValue derives the sealed object's authValue from a PIN as systemd
// does: without salt (systemd 252), SHA-256(PIN); with salt (254+),
// SHA-256(base64(PBKDF2-HMAC-SHA256(PIN, salt, 10000, 32))). Trailing zero
// bytes are trimmed (the TPM trims them too); interior zero bytes are kept.
// The caller wipes the result.
func pinAuthValue(pin, salt []byte) []byte {
	input := pin
	if len(salt) > 0 {
		dk := pbkdf2SHA256(pin, salt, pinIterations, sha256.Size)
		enc := make([]byte, base64.StdEncoding.EncodedLen(len(dk)))
		base64.StdEncoding.Encode(enc, dk)
		secret.Wipe(dk)
		defer secret.Wipe(enc)
		input = enc
	}
	sum := sha256.Sum256(input)
	out := append([]byte(nil), trimTrailingZeros(sum[:])...)
	secret.Wipe(sum[:])
	return out
}

// pbkdf2SHA256 is PBKDF2 (RFC 8018) with HMAC-SHA256. It takes the password
// as bytes so the caller can wipe it.
func pbkdf2SHA256(password, salt []byte, iter, keyLen int) []byte {
	prf := hmac.New(sha256.New, password)
	out := make([]byte, 0, keyLen)
	u := make([]byte, sha256.Size)
	t := make([]byte, sha256.Size)
	defer secret.Wipe(u)
	defer secret.Wipe(t)
	var ctr [4]byte
	for block := uint32(1); len(out) < keyLen; block++ {
		binary.BigEndian.PutUint32(ctr[:], block)
		prf.Reset()
		prf.Write(salt)
		prf.Write(ctr[:])
		u = prf.Sum(u[:0])
		copy(t, u)
		for i := 1; i < iter; i++ {
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			for j := range t {
				t[j] ^= u[j]
			}
		}
		out = append(out, t...)
	}
	return out[:keyLen]
}

// Passphrase returns the LUKS2 key slot passphrase for a sealed secret:
// its standard base64 encoding, as systemd-cryptenroll uses. The caller
// wipes the result.
func Passphrase(secretBytes []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(secretBytes)))
	base64.StdEncoding.Encode(out, secretBytes)
	return out
}
