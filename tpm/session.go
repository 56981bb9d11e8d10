package tpm

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/volcrypt/volcrypt/internal/secret"
)

// session is a salted HMAC or policy session implementing tpm2.Session.
//
// go-tpm v0.9.8's own sessions cut an auth value at its first zero byte
// instead of trimming only trailing zero bytes (TPM 2.0 Part 1, 19.6.5), so a
// PIN whose hash has an interior zero byte fails. This implementation follows
// the specification. It always sets continueSession; the caller flushes it.
//
// Parameter encryption uses sessionKey alone as the symmetric session value,
// so it is only enabled on sessions that authorize an entity with an empty
// auth value, or that authorize no entity at all.
type session struct {
	handle      tpm2.TPMHandle
	policy      bool
	sessionKey  []byte
	auth        []byte // trimmed authValue included in the HMAC key, or nil
	attrs       tpm2.TPMASession
	nonceCaller []byte
	nonceTPM    []byte
}

// nonceSize is the nonceCaller size: the session hash's digest size.
const nonceSize = sha256.Size

// sessionKind selects what startSession creates.
type sessionKind struct {
	policy  bool
	encIn   bool // decrypt attribute: encrypt the first command parameter
	encOut  bool // encrypt attribute: encrypt the first response parameter
	trial   bool // trial policy session
	saltKey tpm2.TPMHandle
	saltPub *tpm2.TPMTPublic
}

// startSession starts a session salted with the loaded key saltKey, whose
// public area is saltPub.
func startSession(t transport.TPM, k sessionKind) (*session, error) {
	s := &session{policy: k.policy, nonceCaller: make([]byte, nonceSize)}
	if _, err := rand.Read(s.nonceCaller); err != nil {
		return nil, fmt.Errorf("start session: %w", err)
	}
	s.attrs.ContinueSession = true
	s.attrs.Decrypt = k.encIn
	s.attrs.Encrypt = k.encOut

	cmd := tpm2.StartAuthSession{
		TPMKey:      tpm2.TPMRHNull,
		Bind:        tpm2.TPMRHNull,
		NonceCaller: tpm2.TPM2BNonce{Buffer: s.nonceCaller},
		SessionType: tpm2.TPMSEHMAC,
		Symmetric:   tpm2.TPMTSymDef{Algorithm: tpm2.TPMAlgNull},
		AuthHash:    tpm2.TPMAlgSHA256,
	}
	if k.policy {
		cmd.SessionType = tpm2.TPMSEPolicy
		if k.trial {
			cmd.SessionType = tpm2.TPMSETrial
		}
	}
	if k.encIn || k.encOut {
		cmd.Symmetric = tpm2.TPMTSymDef{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		}
	}
	var salt []byte
	if k.saltPub != nil {
		key, err := tpm2.ImportEncapsulationKey(k.saltPub)
		if err != nil {
			return nil, fmt.Errorf("start session: salt key: %w", err)
		}
		var enc []byte
		salt, enc, err = tpm2.CreateEncryptedSalt(rand.Reader, key)
		if err != nil {
			return nil, fmt.Errorf("start session: encrypt salt: %w", err)
		}
		defer secret.Wipe(salt)
		cmd.TPMKey = k.saltKey
		cmd.EncryptedSalt = tpm2.TPM2BEncryptedSecret{Buffer: enc}
	}
	rsp, err := cmd.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("start session: %w", err)
	}
	s.handle = tpm2.TPMHandle(rsp.SessionHandle.HandleValue())
	s.nonceTPM = rsp.NonceTPM.Buffer
	if len(salt) > 0 {
		s.sessionKey = tpm2.KDFa(crypto.SHA256, salt, "ATH", s.nonceTPM, s.nonceCaller, sha256.Size*8)
	}
	return s, nil
}

// setAuth sets the auth value mixed into the HMAC key (the authorized
// entity's authValue, or for a policy session after PolicyAuthValue). Only
// trailing zero bytes are removed, as TPM 2.0 Part 1, 19.6.5 requires.
func (s *session) setAuth(auth []byte) {
	secret.Wipe(s.auth)
	s.auth = append([]byte(nil), trimTrailingZeros(auth)...)
}

// flush flushes the session from the TPM and wipes its keys.
func (s *session) flush(t transport.TPM) error {
	secret.Wipe(s.sessionKey)
	secret.Wipe(s.auth)
	if s.handle == tpm2.TPMRHNull || s.handle == 0 {
		return nil
	}
	h := s.handle
	s.handle = tpm2.TPMRHNull
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t); err != nil {
		return fmt.Errorf("flush session 0x%08x: %w", uint32(h), err)
	}
	return nil
}

// trimTrailingZeros returns b without its trailing zero bytes. Interior zero
// bytes are kept.
func trimTrailingZeros(b []byte) []byte {
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return b[:n]
}

// Init implements tpm2.Session: the session is started by startSession.
func (s *session) Init(transport.TPM) error {
	if s.handle == tpm2.TPMRHNull || s.handle == 0 {
		return errors.New("session not started")
	}
	return nil
}

// CleanupFailure implements tpm2.Session. The owner of the session flushes it.
func (s *session) CleanupFailure(transport.TPM) error { return nil }

// NonceTPM implements tpm2.Session.
func (s *session) NonceTPM() tpm2.TPM2BNonce { return tpm2.TPM2BNonce{Buffer: s.nonceTPM} }

// NewNonceCaller implements tpm2.Session.
func (s *session) NewNonceCaller() error {
	_, err := rand.Read(s.nonceCaller)
	return err
}

// hmacKey returns sessionKey || auth in a new buffer the caller wipes.
func (s *session) hmacKey() []byte {
	k := make([]byte, 0, len(s.sessionKey)+len(s.auth))
	k = append(k, s.sessionKey...)
	return append(k, s.auth...)
}

// attrByte encodes TPMA_SESSION.
func attrByte(a tpm2.TPMASession) byte {
	var b byte
	if a.ContinueSession {
		b |= 1 << 0
	}
	if a.AuditExclusive {
		b |= 1 << 1
	}
	if a.AuditReset {
		b |= 1 << 2
	}
	if a.Decrypt {
		b |= 1 << 5
	}
	if a.Encrypt {
		b |= 1 << 6
	}
	if a.Audit {
		b |= 1 << 7
	}
	return b
}

// sessionHMAC computes HMAC-SHA256(key, pHash || nonceNewer || nonceOlder ||
// extra || attrs).
func sessionHMAC(key, pHash, nonceNewer, nonceOlder, extra []byte, attrs byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(pHash)
	m.Write(nonceNewer)
	m.Write(nonceOlder)
	m.Write(extra)
	m.Write([]byte{attrs})
	return m.Sum(nil)
}

// Authorize implements tpm2.Session.
func (s *session) Authorize(cc tpm2.TPMCC, parms, addNonces []byte, names []tpm2.TPM2BName, _ int) (*tpm2.TPMSAuthCommand, error) {
	if s.handle == tpm2.TPMRHNull || s.handle == 0 {
		return nil, errors.New("session not started")
	}
	h := sha256.New()
	_ = binary.Write(h, binary.BigEndian, uint32(cc))
	for _, n := range names {
		h.Write(n.Buffer)
	}
	h.Write(parms)
	key := s.hmacKey()
	defer secret.Wipe(key)
	mac := sessionHMAC(key, h.Sum(nil), s.nonceCaller, s.nonceTPM, addNonces, attrByte(s.attrs))
	return &tpm2.TPMSAuthCommand{
		Handle:        s.handle,
		Nonce:         tpm2.TPM2BNonce{Buffer: append([]byte(nil), s.nonceCaller...)},
		Attributes:    s.attrs,
		Authorization: tpm2.TPM2BData{Buffer: mac},
	}, nil
}

// Validate implements tpm2.Session: it checks the response HMAC and takes
// the new nonceTPM.
func (s *session) Validate(rc tpm2.TPMRC, cc tpm2.TPMCC, parms []byte, _ []tpm2.TPM2BName, _ int, auth *tpm2.TPMSAuthResponse) error {
	s.nonceTPM = auth.Nonce.Buffer
	if !auth.Attributes.ContinueSession {
		s.handle = tpm2.TPMRHNull
	}
	key := s.hmacKey()
	defer secret.Wipe(key)
	if len(key) == 0 && len(auth.Authorization.Buffer) == 0 {
		return nil
	}
	h := sha256.New()
	_ = binary.Write(h, binary.BigEndian, uint32(rc))
	_ = binary.Write(h, binary.BigEndian, uint32(cc))
	h.Write(parms)
	mac := sessionHMAC(key, h.Sum(nil), s.nonceTPM, s.nonceCaller, nil, attrByte(auth.Attributes))
	if !hmac.Equal(mac, auth.Authorization.Buffer) {
		return errors.New("validate TPM response: incorrect session HMAC")
	}
	return nil
}

// IsEncryption implements tpm2.Session: the TPM encrypts the first response
// parameter.
func (s *session) IsEncryption() bool { return s.attrs.Encrypt }

// IsDecryption implements tpm2.Session: we encrypt the first command
// parameter and the TPM decrypts it.
func (s *session) IsDecryption() bool { return s.attrs.Decrypt }

// cfb derives the AES-128-CFB key and IV (Part 1, 21.3) and returns the
// stream.
func (s *session) cfb(nonceNewer, nonceOlder []byte, encrypt bool) (cipher.Stream, error) {
	keyIV := tpm2.KDFa(crypto.SHA256, s.sessionKey, "CFB", nonceNewer, nonceOlder, (16+16)*8)
	defer secret.Wipe(keyIV)
	block, err := aes.NewCipher(keyIV[:16])
	if err != nil {
		return nil, err
	}
	iv := append([]byte(nil), keyIV[16:]...)
	if encrypt {
		return cipher.NewCFBEncrypter(block, iv), nil //nolint:staticcheck // TPM 2.0 mandates CFB
	}
	return cipher.NewCFBDecrypter(block, iv), nil //nolint:staticcheck // TPM 2.0 mandates CFB
}

// Encrypt implements tpm2.Session: it encrypts a command parameter in place.
func (s *session) Encrypt(p []byte) error {
	if !s.attrs.Decrypt {
		return nil
	}
	st, err := s.cfb(s.nonceCaller, s.nonceTPM, true)
	if err != nil {
		return fmt.Errorf("encrypt parameter: %w", err)
	}
	st.XORKeyStream(p, p)
	return nil
}

// Decrypt implements tpm2.Session: it decrypts a response parameter in place.
func (s *session) Decrypt(p []byte) error {
	if !s.attrs.Encrypt {
		return nil
	}
	st, err := s.cfb(s.nonceTPM, s.nonceCaller, false)
	if err != nil {
		return fmt.Errorf("decrypt parameter: %w", err)
	}
	st.XORKeyStream(p, p)
	return nil
}

// Handle implements tpm2.Session.
func (s *session) Handle() tpm2.TPMHandle { return s.handle }

var _ tpm2.Session = (*session)(nil)
