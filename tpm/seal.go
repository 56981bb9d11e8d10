package tpm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/volcrypt/volcrypt/internal/secret"
)

// maxSecretBytes is the largest secret a sealed data object holds
// (TPM2B_SENSITIVE_DATA, MAX_SYM_DATA).
const maxSecretBytes = 128

// SealOptions selects the policy a secret is sealed under.
type SealOptions struct {
	// PCRs to bind to; nil means DefaultPCRs, an empty non-nil slice binds
	// to no PCR.
	PCRs []int
	// PCRBank is the PCR bank; "" means "sha256".
	PCRBank string
	// PIN, if not empty, is required to unseal (PolicyAuthValue).
	PIN []byte
	// SaltPIN derives the auth value from the PIN through PBKDF2 with a
	// random salt stored in the token (systemd 254+). systemd 252 ignores
	// the salt, so such a token does not unseal there.
	SaltPIN bool
	// UseSRK seals under the persistent SRK at 0x81000001 (systemd 254+),
	// creating and persisting it if absent, and records it in the token.
	// systemd 252 cannot unseal such a token.
	UseSRK bool
	// PrimaryAlg is the transient primary key's algorithm when UseSRK is
	// false: AlgECC (default) or AlgRSA.
	PrimaryAlg string
}

// Sealed is a secret sealed by the TPM, with what is needed to unseal it.
// It maps one to one onto a systemd-tpm2 token (see Token).
type Sealed struct {
	// Blob is TPM2B_PRIVATE ‖ TPM2B_PUBLIC of the sealed data object.
	Blob []byte
	// PolicyHash is the object's policy digest (SHA-256).
	PolicyHash []byte
	// PrimaryAlg is the parent key algorithm: AlgECC or AlgRSA; "" (tokens
	// of systemd before 250) means ECC, or RSA if that fails.
	PrimaryAlg string
	// PCRs are the bound PCR indexes, ascending.
	PCRs []int
	// PCRBank is the PCR bank, e.g. "sha256".
	PCRBank string
	// PIN tells whether a PIN is needed.
	PIN bool
	// SRK is the serialized persistent SRK (systemd 254+ "tpm2_srk"), or nil
	// for a transient primary key (systemd 252).
	SRK []byte
	// Salt is the PIN salt (systemd 254+ "tpm2_salt"), or nil.
	Salt []byte
}

// parentKey is a loaded storage key used as parent and as salt key.
type parentKey struct {
	handle    tpm2.TPMHandle
	name      tpm2.TPM2BName
	public    tpm2.TPMTPublic
	transient bool
}

// close flushes a transient parent.
func (p *parentKey) close(t transport.TPM) error {
	if p == nil || !p.transient {
		return nil
	}
	if _, err := (tpm2.FlushContext{FlushHandle: p.handle}).Execute(t); err != nil {
		return fmt.Errorf("flush primary key: %w", err)
	}
	return nil
}

// algName names a storage key's type as systemd's "tpm2-primary-alg".
func algName(pub *tpm2.TPMTPublic) (string, error) {
	switch pub.Type {
	case tpm2.TPMAlgECC:
		return AlgECC, nil
	case tpm2.TPMAlgRSA:
		return AlgRSA, nil
	}
	return "", fmt.Errorf("storage key type 0x%04x: %w", uint16(pub.Type), ErrUnsupported)
}

// createPrimary creates a transient primary storage key in the owner
// hierarchy.
func createPrimary(t transport.TPM, alg string, noDA bool) (*parentKey, error) {
	tmpl, err := primaryTemplate(alg, noDA)
	if err != nil {
		return nil, err
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("create primary key: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		_, _ = (tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}).Execute(t)
		return nil, fmt.Errorf("create primary key: %w", err)
	}
	return &parentKey{handle: rsp.ObjectHandle, name: rsp.Name, public: *pub, transient: true}, nil
}

// readSRK returns the persistent SRK, or nil if the handle is empty.
func readSRK(t transport.TPM) (*parentKey, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: SRKHandle}.Execute(t)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCHandle) {
			return nil, nil
		}
		return nil, fmt.Errorf("read SRK: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("read SRK: %w", err)
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.Decrypt || !a.FixedTPM {
		return nil, fmt.Errorf("read SRK: 0x%08x is not a storage key", uint32(SRKHandle))
	}
	return &parentKey{handle: SRKHandle, name: rsp.Name, public: *pub}, nil
}

// ensureSRK returns the persistent SRK, creating and persisting it first if
// absent (ECC P-256, RSA-2048 if the TPM lacks ECC), as systemd 254+ does.
func ensureSRK(t transport.TPM) (*parentKey, error) {
	srk, err := readSRK(t)
	if err != nil || srk != nil {
		return srk, err
	}
	p, err := createPrimary(t, AlgECC, true)
	if err != nil {
		var rsaErr error
		if p, rsaErr = createPrimary(t, AlgRSA, true); rsaErr != nil {
			return nil, errors.Join(err, rsaErr)
		}
	}
	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: p.handle, Name: p.name},
		PersistentHandle: SRKHandle,
	}.Execute(t)
	err = errors.Join(err, p.close(t))
	if err != nil {
		return nil, fmt.Errorf("persist SRK at 0x%08x: %w", uint32(SRKHandle), err)
	}
	return readSRK(t)
}

// computePolicy returns the policy digest PolicyPCR(pcrDigest, selection)
// [+ PolicyAuthValue], computed offline. PolicyPCR is left out when pcrs is
// empty, as systemd does.
func computePolicy(alg tpm2.TPMIAlgHash, pcrs []int, values map[int][]byte, pin bool) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	// Like systemd, no PolicyPCR at all when no PCR is bound.
	if len(pcrs) > 0 {
		if err := (tpm2.PolicyPCR{
			PcrDigest: tpm2.TPM2BDigest{Buffer: pcrPolicyDigest(crypto.SHA256, pcrs, values)},
			Pcrs:      pcrSelection(alg, pcrs),
		}).Update(calc); err != nil {
			return nil, err
		}
	}
	if pin {
		if err := (tpm2.PolicyAuthValue{}).Update(calc); err != nil {
			return nil, err
		}
	}
	return calc.Hash().Digest, nil
}

// PolicyDigest computes offline the policy digest Seal would use for the
// given PCR values (index → value in bank) and PIN flag.
func PolicyDigest(bank string, values map[int][]byte, pin bool) ([]byte, error) {
	alg, _, err := bankAlg(bank)
	if err != nil {
		return nil, fmt.Errorf("compute policy: %w", err)
	}
	pcrs := make([]int, 0, len(values))
	for p := range values {
		pcrs = append(pcrs, p)
	}
	pcrs, err = checkPCRs(pcrs)
	if err != nil {
		return nil, fmt.Errorf("compute policy: %w", err)
	}
	d, err := computePolicy(alg, pcrs, values, pin)
	if err != nil {
		return nil, fmt.Errorf("compute policy: %w", err)
	}
	return d, nil
}

// Seal seals secretData (1–128 bytes; systemd uses 32) to the PCR policy in
// opts: the secret travels to the TPM encrypted in a salted AES-128-CFB
// session, and every handle is flushed before Seal returns.
func Seal(t transport.TPM, secretData []byte, opts SealOptions) (res *Sealed, err error) {
	defer func() {
		if err != nil {
			res = nil // e.g. a flush failed after the object was created
		}
	}()
	if len(secretData) == 0 || len(secretData) > maxSecretBytes {
		return nil, fmt.Errorf("seal: secret is %d bytes, want 1–%d", len(secretData), maxSecretBytes)
	}
	if opts.SaltPIN && len(opts.PIN) == 0 {
		return nil, errors.New("seal: SaltPIN set without a PIN")
	}
	if bytes.IndexByte(opts.PIN, 0) >= 0 {
		return nil, errors.New("seal: PIN contains a NUL byte (systemd reads PINs as C strings)")
	}
	pcrs := opts.PCRs
	if pcrs == nil {
		pcrs = DefaultPCRs
	}
	pcrs, err = checkPCRs(pcrs)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	bank := bankName(opts.PCRBank)
	alg, _, err := bankAlg(bank)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	t = withRetry(t)

	out := &Sealed{PCRs: pcrs, PCRBank: bank, PIN: len(opts.PIN) > 0}
	var parent *parentKey
	if opts.UseSRK {
		parent, err = ensureSRK(t)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", mapTPMError(t, err, out))
		}
		out.SRK = serializeSRK(parent.handle, parent.name.Buffer, parent.public)
	} else {
		parent, err = createPrimary(t, opts.PrimaryAlg, false)
		if err != nil {
			return nil, fmt.Errorf("seal: %w", mapTPMError(t, err, out))
		}
	}
	defer func() { err = errors.Join(err, parent.close(t)) }()
	if out.PrimaryAlg, err = algName(&parent.public); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}

	values := map[int][]byte{}
	if len(pcrs) > 0 {
		if values, err = ReadPCRs(t, bank, pcrs); err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
	}
	if out.PolicyHash, err = computePolicy(alg, pcrs, values, out.PIN); err != nil {
		return nil, fmt.Errorf("seal: compute policy: %w", err)
	}

	var auth []byte
	if out.PIN {
		if opts.SaltPIN {
			out.Salt = make([]byte, pinSaltBytes)
			if _, err := rand.Read(out.Salt); err != nil {
				return nil, fmt.Errorf("seal: PIN salt: %w", err)
			}
		}
		auth = pinAuthValue(opts.PIN, out.Salt)
		defer secret.Wipe(auth)
	}

	sess, err := startSession(t, sessionKind{encIn: true, saltKey: parent.handle, saltPub: &parent.public})
	if err != nil {
		return nil, fmt.Errorf("seal: %w", mapTPMError(t, err, out))
	}
	defer func() { err = errors.Join(err, sess.flush(t)) }()

	data := slices.Clone(secretData)
	defer secret.Wipe(data)
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: parent.handle, Name: parent.name, Auth: sess},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: auth},
			Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: data}),
		}},
		InPublic: tpm2.New2B(sealedTemplate(out.PolicyHash)),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("seal: create sealed object: %w", mapTPMError(t, err, out))
	}
	out.Blob = joinBlob(rsp.OutPrivate, rsp.OutPublic)
	return out, nil
}
