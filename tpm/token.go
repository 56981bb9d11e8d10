package tpm

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// TokenType is the LUKS2 token type systemd-cryptenroll writes for TPM2.
const TokenType = "systemd-tpm2"

// Token is a LUKS2 token of type "systemd-tpm2" in systemd's JSON format:
//
//	{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"<base64>","tpm2-pcrs":[7],
//	 "tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"<hex>","tpm2-pin":false}
//
// plus the optional fields of systemd 254 and later. Fields this package does
// not know are kept and written back unchanged, in their original order.
type Token struct {
	// Keyslots are the LUKS2 key slots the token opens (JSON strings).
	Keyslots []int
	// Blob is "tpm2-blob": TPM2B_PRIVATE ‖ TPM2B_PUBLIC.
	Blob []byte
	// PCRs is "tpm2-pcrs".
	PCRs []int
	// PCRBank is "tpm2-pcr-bank" ("" if absent: sha256).
	PCRBank string
	// PrimaryAlg is "tpm2-primary-alg" ("" if absent: ecc).
	PrimaryAlg string
	// PolicyHash is "tpm2-policy-hash" (hex in JSON).
	PolicyHash []byte
	// PIN is "tpm2-pin".
	PIN bool
	// PCRLock is "tpm2_pcrlock" (systemd 255+ pcrlock policy; unsupported).
	PCRLock bool
	// PubKey is "tpm2_pubkey": a signed PCR policy key (unsupported).
	PubKey []byte
	// PubKeyPCRs is "tpm2_pubkey_pcrs".
	PubKeyPCRs []int
	// Salt is "tpm2_salt": the PIN salt (systemd 254+).
	Salt []byte
	// SRK is "tpm2_srk": the serialized persistent SRK (systemd 254+).
	SRK []byte

	// fields holds every JSON member as read, in order, so unknown ones
	// survive and known ones keep their place.
	fields []rawField
}

// rawField is one JSON object member.
type rawField struct {
	key   string
	value json.RawMessage
}

// Known member names.
const (
	fType       = "type"
	fKeyslots   = "keyslots"
	fBlob       = "tpm2-blob"
	fPCRs       = "tpm2-pcrs"
	fPCRBank    = "tpm2-pcr-bank"
	fPrimaryAlg = "tpm2-primary-alg"
	fPolicyHash = "tpm2-policy-hash"
	fPIN        = "tpm2-pin"
	fPCRLock    = "tpm2_pcrlock"
	fPubKey     = "tpm2_pubkey"
	fPubKeyPCRs = "tpm2_pubkey_pcrs"
	fSalt       = "tpm2_salt"
	fSRK        = "tpm2_srk"
)

// knownOrder is the order systemd writes the members in.
var knownOrder = []string{fType, fKeyslots, fBlob, fPCRs, fPCRBank, fPrimaryAlg, fPolicyHash, fPIN,
	fPCRLock, fPubKeyPCRs, fPubKey, fSalt, fSRK}

// TokenParseError reports a malformed token member.
type TokenParseError struct {
	Field string // JSON member, or "" for the whole token
	Err   error
}

// Error implements error.
func (e *TokenParseError) Error() string {
	if e.Field == "" {
		return "parse systemd-tpm2 token: " + e.Err.Error()
	}
	return "parse systemd-tpm2 token: " + e.Field + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *TokenParseError) Unwrap() error { return e.Err }

// maxTokenBytes bounds the token JSON accepted (a LUKS2 JSON area is at most
// 4 MiB minus the binary header).
const maxTokenBytes = 4 << 20

// ParseToken decodes and validates a systemd-tpm2 token.
func ParseToken(data []byte) (*Token, error) {
	if len(data) > maxTokenBytes {
		return nil, &TokenParseError{Err: fmt.Errorf("token is %d bytes", len(data))}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, &TokenParseError{Err: err}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &TokenParseError{Err: errors.New("not a JSON object")}
	}
	t := &Token{}
	seen := map[string]bool{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, &TokenParseError{Err: err}
		}
		key, _ := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &TokenParseError{Field: key, Err: err}
		}
		if seen[key] {
			return nil, &TokenParseError{Field: key, Err: errors.New("duplicate member")}
		}
		seen[key] = true
		t.fields = append(t.fields, rawField{key: key, value: raw})
		if err := t.decodeField(key, raw); err != nil {
			return nil, &TokenParseError{Field: key, Err: err}
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, &TokenParseError{Err: err}
	}
	if dec.More() {
		return nil, &TokenParseError{Err: errors.New("data after the token object")}
	}
	if _, err := dec.Token(); err == nil {
		return nil, &TokenParseError{Err: errors.New("data after the token object")}
	}
	for _, k := range []string{fType, fKeyslots, fBlob, fPCRs, fPolicyHash} {
		if !seen[k] {
			return nil, &TokenParseError{Field: k, Err: errors.New("missing")}
		}
	}
	return t, nil
}

// decodeField decodes one known member into t; unknown members are ignored.
func (t *Token) decodeField(key string, raw json.RawMessage) error {
	switch key {
	case fType:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		if s != TokenType {
			return fmt.Errorf("type %q is not %q", s, TokenType)
		}
	case fKeyslots:
		var ss []string
		if err := json.Unmarshal(raw, &ss); err != nil {
			return err
		}
		t.Keyslots = make([]int, 0, len(ss))
		for _, s := range ss {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || strconv.Itoa(n) != s {
				return fmt.Errorf("key slot %q is not a slot number", s)
			}
			t.Keyslots = append(t.Keyslots, n)
		}
	case fBlob:
		b, err := decodeOneOrList(raw, base64.StdEncoding.DecodeString)
		if err != nil {
			return err
		}
		if len(b) == 0 {
			return errors.New("empty")
		}
		t.Blob = b
	case fPolicyHash:
		b, err := decodeOneOrList(raw, hex.DecodeString)
		if err != nil {
			return err
		}
		t.PolicyHash = b
	case fPCRs:
		p, err := decodePCRs(raw)
		if err != nil {
			return err
		}
		t.PCRs = p
	case fPubKeyPCRs:
		p, err := decodePCRs(raw)
		if err != nil {
			return err
		}
		t.PubKeyPCRs = p
	case fPCRBank:
		if err := json.Unmarshal(raw, &t.PCRBank); err != nil {
			return err
		}
		if _, _, err := bankAlg(t.PCRBank); err != nil {
			return err
		}
	case fPrimaryAlg:
		if err := json.Unmarshal(raw, &t.PrimaryAlg); err != nil {
			return err
		}
		if t.PrimaryAlg != AlgECC && t.PrimaryAlg != AlgRSA {
			return fmt.Errorf("algorithm %q: %w", t.PrimaryAlg, ErrUnsupported)
		}
	case fPIN:
		return json.Unmarshal(raw, &t.PIN)
	case fPCRLock:
		return json.Unmarshal(raw, &t.PCRLock)
	case fPubKey, fSalt, fSRK:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return err
		}
		switch key {
		case fPubKey:
			t.PubKey = b
		case fSalt:
			t.Salt = b
		case fSRK:
			t.SRK = b
		}
	}
	return nil
}

// decodeOneOrList decodes a string member, or a list of exactly one string
// (systemd 257 may write lists for multiple sealed objects).
func decodeOneOrList(raw json.RawMessage, decode func(string) ([]byte, error)) ([]byte, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var list []string
		if lerr := json.Unmarshal(raw, &list); lerr != nil {
			return nil, err
		}
		if len(list) != 1 {
			return nil, fmt.Errorf("%d values: %w", len(list), ErrUnsupported)
		}
		s = list[0]
	}
	return decode(s)
}

// decodePCRs decodes a JSON array of PCR indexes.
func decodePCRs(raw json.RawMessage) ([]int, error) {
	var p []int
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	for _, n := range p {
		if n < 0 || n > maxPCR {
			return nil, fmt.Errorf("PCR %d out of range 0–%d", n, maxPCR)
		}
	}
	if p == nil {
		p = []int{}
	}
	return p, nil
}

// encodeField encodes a known member from t; ok is false for an optional
// member that is unset and was not in the parsed token.
func (t *Token) encodeField(key string, wasPresent bool) (json.RawMessage, bool, error) {
	var v any
	switch key {
	case fType:
		v = TokenType
	case fKeyslots:
		ss := make([]string, len(t.Keyslots))
		for i, n := range t.Keyslots {
			ss[i] = strconv.Itoa(n)
		}
		v = ss
	case fBlob:
		v = base64.StdEncoding.EncodeToString(t.Blob)
	case fPCRs:
		v = nonNilInts(t.PCRs)
	case fPolicyHash:
		v = hex.EncodeToString(t.PolicyHash)
	case fPIN:
		v = t.PIN
	case fPCRBank:
		if t.PCRBank == "" {
			return nil, false, nil
		}
		v = t.PCRBank
	case fPrimaryAlg:
		if t.PrimaryAlg == "" {
			return nil, false, nil
		}
		v = t.PrimaryAlg
	case fPCRLock:
		if !t.PCRLock && !wasPresent {
			return nil, false, nil
		}
		v = t.PCRLock
	case fPubKeyPCRs:
		if t.PubKeyPCRs == nil && !wasPresent {
			return nil, false, nil
		}
		v = nonNilInts(t.PubKeyPCRs)
	case fPubKey, fSalt, fSRK:
		b := map[string][]byte{fPubKey: t.PubKey, fSalt: t.Salt, fSRK: t.SRK}[key]
		if b == nil {
			return nil, false, nil
		}
		v = base64.StdEncoding.EncodeToString(b)
	default:
		return nil, false, fmt.Errorf("unknown member %q", key)
	}
	b, err := json.Marshal(v)
	return b, err == nil, err
}

// nonNilInts returns p, or an empty slice so it encodes as [].
func nonNilInts(p []int) []int {
	if p == nil {
		return []int{}
	}
	return p
}

// MarshalJSON encodes the token compactly as systemd does. Members read by
// ParseToken keep their order; unknown members are written back unchanged;
// known members not in the parsed token follow in systemd's order.
func (t *Token) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	write := func(key string, val json.RawMessage) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	done := map[string]bool{}
	for _, f := range t.fields {
		done[f.key] = true
		if !slices.Contains(knownOrder, f.key) {
			var c bytes.Buffer
			if err := json.Compact(&c, f.value); err != nil {
				return nil, fmt.Errorf("encode systemd-tpm2 token: %s: %w", f.key, err)
			}
			write(f.key, c.Bytes())
			continue
		}
		val, ok, err := t.encodeField(f.key, true)
		if err != nil {
			return nil, fmt.Errorf("encode systemd-tpm2 token: %w", err)
		}
		if ok {
			write(f.key, val)
		}
	}
	for _, key := range knownOrder {
		if done[key] {
			continue
		}
		val, ok, err := t.encodeField(key, false)
		if err != nil {
			return nil, fmt.Errorf("encode systemd-tpm2 token: %w", err)
		}
		if ok {
			write(key, val)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// NewToken makes the token for s, opening the given key slots.
func NewToken(s *Sealed, keyslots ...int) *Token {
	return &Token{
		Keyslots:   slices.Clone(keyslots),
		Blob:       slices.Clone(s.Blob),
		PCRs:       nonNilInts(slices.Clone(s.PCRs)),
		PCRBank:    bankName(s.PCRBank),
		PrimaryAlg: s.PrimaryAlg,
		PolicyHash: slices.Clone(s.PolicyHash),
		PIN:        s.PIN,
		Salt:       slices.Clone(s.Salt),
		SRK:        slices.Clone(s.SRK),
	}
}

// Sealed returns the sealed object the token describes. Signed PCR policies
// (tpm2_pubkey) and pcrlock policies are not supported: ErrUnsupported.
func (t *Token) Sealed() (*Sealed, error) {
	if len(t.PubKey) > 0 || len(t.PubKeyPCRs) > 0 {
		return nil, fmt.Errorf("systemd-tpm2 token: signed PCR policy (tpm2_pubkey): %w", ErrUnsupported)
	}
	if t.PCRLock {
		return nil, fmt.Errorf("systemd-tpm2 token: pcrlock policy: %w", ErrUnsupported)
	}
	if len(t.Blob) == 0 || len(t.PolicyHash) == 0 {
		return nil, errors.New("systemd-tpm2 token: no sealed blob or policy hash")
	}
	return &Sealed{
		Blob:       slices.Clone(t.Blob),
		PolicyHash: slices.Clone(t.PolicyHash),
		PrimaryAlg: t.PrimaryAlg,
		PCRs:       slices.Clone(t.PCRs),
		PCRBank:    bankName(t.PCRBank),
		PIN:        t.PIN,
		SRK:        slices.Clone(t.SRK),
		Salt:       slices.Clone(t.Salt),
	}, nil
}
