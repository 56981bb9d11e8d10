// Package tpm seals and unseals a volume secret with a TPM 2.0 under a PCR
// policy and an optional PIN, and encodes the result as a LUKS2 token in
// systemd-cryptenroll's "systemd-tpm2" format.
//
// The package talks to the TPM through a go-tpm transport.TPM, so callers can
// inject /dev/tpmrm0 in production and swtpm in tests (see Open). It never
// imports the LUKS2 header code: the caller stores Token bytes in the header
// and uses Passphrase(secret) as the key slot passphrase, as systemd does.
//
// Interoperability with systemd:
//   - systemd 252 (Debian 12) tokens: transient ECC P-256 storage primary key
//     (RSA-2048 fallback), PIN authValue = SHA-256(PIN).
//   - systemd 254+ tokens: persistent SRK at 0x81000001 described by tpm2_srk,
//     salted PIN (tpm2_salt): authValue = SHA-256(base64(PBKDF2-HMAC-SHA256(PIN,
//     salt, 10000, 32))).
//
// Every command that carries a secret runs in a salted session with AES-128-CFB
// parameter encryption, and auth values are trimmed of trailing zero bytes only
// (go-tpm v0.9.8 truncates at the first zero byte, which this package avoids by
// implementing its own sessions).
package tpm
