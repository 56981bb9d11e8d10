package crypt

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnsupported is wrapped by every error about a cipher specification this
// package cannot run: an unknown cipher, chaining mode, IV generator or IV
// hash, or a combination dm-crypt would reject.
var ErrUnsupported = errors.New("unsupported cipher specification")

// UnsupportedError reports a cipher specification this package cannot run.
// It wraps ErrUnsupported.
type UnsupportedError struct {
	Spec   string // the specification as given
	Reason string // which part was not understood
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("cipher %q: %s: %v", e.Spec, e.Reason, ErrUnsupported)
}

// Unwrap returns ErrUnsupported.
func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// Spec is a parsed dm-crypt/LUKS2 cipher specification of the form
// cipher-mode[-iv[:ivhash]], for example "aes-xts-plain64" or
// "aes-cbc-essiv:sha256".
type Spec struct {
	Cipher string // block cipher: "aes" or "cipher_null"
	Mode   string // chaining mode: "xts", "cbc" or "ecb"
	IV     string // IV generator: "plain64", "plain64be", "plain", "essiv", "null", or "" for ecb
	IVHash string // hash for the IV generator: "sha256" for essiv, else ""
}

// String returns the specification in the form LUKS2 stores it.
func (s Spec) String() string {
	var b strings.Builder
	b.WriteString(s.Cipher)
	b.WriteByte('-')
	b.WriteString(s.Mode)
	if s.IV != "" {
		b.WriteByte('-')
		b.WriteString(s.IV)
		if s.IVHash != "" {
			b.WriteByte(':')
			b.WriteString(s.IVHash)
		}
	}
	return b.String()
}

// KeySizes lists the key sizes in bytes the specification accepts, smallest
// first. XTS takes two AES keys of equal size (32, 48 or 64 bytes in all),
// CBC and ECB one AES key (16, 24 or 32 bytes). cipher_null ignores its key
// and reports nil, meaning any size.
func (s Spec) KeySizes() []int {
	switch {
	case s.Cipher == cipherNull:
		return nil
	case s.Mode == modeXTS:
		return []int{32, 48, 64}
	default:
		return []int{16, 24, 32}
	}
}

// ValidKeySize reports whether a key of n bytes fits the specification.
func (s Spec) ValidKeySize(n int) bool {
	sizes := s.KeySizes()
	if sizes == nil {
		return true
	}
	for _, k := range sizes {
		if k == n {
			return true
		}
	}
	return false
}

const (
	cipherAES  = "aes"
	cipherNull = "cipher_null"

	modeXTS = "xts"
	modeCBC = "cbc"
	modeECB = "ecb"

	ivPlain64   = "plain64"
	ivPlain64BE = "plain64be"
	ivPlain     = "plain"
	ivESSIV     = "essiv"
	ivNull      = "null"

	hashSHA256 = "sha256"
)

// ParseSpec parses a cipher specification as LUKS2 stores it in a segment's
// or key slot area's "encryption" field. It accepts the subset dm-crypt and
// cryptsetup use for AES: modes xts and cbc with the IV generators plain64,
// plain64be, plain, null and essiv:sha256; aes-ecb and cipher_null-ecb without
// an IV. Anything else returns an *UnsupportedError.
func ParseSpec(spec string) (Spec, error) {
	unsupported := func(reason string) (Spec, error) {
		return Spec{}, &UnsupportedError{Spec: spec, Reason: reason}
	}
	if strings.HasPrefix(spec, "capi:") {
		return unsupported("kernel crypto API notation")
	}
	parts := strings.SplitN(spec, "-", 3)
	if len(parts) < 2 {
		return unsupported("want cipher-mode[-iv]")
	}
	s := Spec{Cipher: parts[0], Mode: parts[1]}
	if len(parts) == 3 {
		iv, hash, hasHash := strings.Cut(parts[2], ":")
		if iv == "" || (hasHash && hash == "") {
			return unsupported("empty IV generator")
		}
		s.IV, s.IVHash = iv, hash
	}

	switch s.Cipher {
	case cipherAES:
	case cipherNull:
		if s.Mode != modeECB || s.IV != "" {
			return unsupported("cipher_null only as cipher_null-ecb")
		}
		return s, nil
	default:
		return unsupported("unknown block cipher " + strconvQuote(s.Cipher))
	}

	switch s.Mode {
	case modeXTS, modeCBC:
		if s.IV == "" {
			return unsupported("mode " + s.Mode + " needs an IV generator")
		}
	case modeECB:
		if s.IV != "" {
			return unsupported("ecb takes no IV generator")
		}
		return s, nil
	default:
		return unsupported("unknown chaining mode " + strconvQuote(s.Mode))
	}

	switch s.IV {
	case ivPlain64, ivPlain64BE, ivPlain, ivNull:
		if s.IVHash != "" {
			return unsupported("IV generator " + s.IV + " takes no hash")
		}
	case ivESSIV:
		if s.IVHash != hashSHA256 {
			return unsupported("essiv needs sha256 (AES takes its 32-byte digest as a key)")
		}
	default:
		return unsupported("unknown IV generator " + strconvQuote(s.IV))
	}
	return s, nil
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }
