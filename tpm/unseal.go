package tpm

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/volcrypt/volcrypt/internal/secret"
)

// Unseal recovers the secret sealed in s. pin is needed when s.PIN is set
// (ErrPINRequired otherwise) and ignored otherwise.
//
// The policy session and the session that encrypts the response are both
// salted with the parent key, so neither the PIN-derived auth value nor the
// secret crosses the bus in clear. Failures wrap ErrPCRMismatch
// (*PCRMismatchError), ErrBadPIN (*BadPINError), ErrLockout (*LockoutError)
// or ErrPINRequired. The caller wipes the result.
func Unseal(t transport.TPM, s *Sealed, pin []byte) (res []byte, err error) {
	defer func() {
		if err != nil && res != nil {
			secret.Wipe(res) // a flush failed after unsealing
			res = nil
		}
	}()
	if s == nil {
		return nil, errors.New("unseal: no sealed object")
	}
	if s.PIN && len(pin) == 0 {
		return nil, fmt.Errorf("unseal: %w", ErrPINRequired)
	}
	if len(s.PolicyHash) == 0 {
		return nil, errors.New("unseal: sealed object has no policy hash")
	}
	pcrs, err := checkPCRs(s.PCRs)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	alg, _, err := bankAlg(s.PCRBank)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	priv, pub, err := splitBlob(s.Blob)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	rec := &wipingTPM{t: withRetry(t)}
	defer rec.wipe()
	t = rec

	parent, loaded, err := loadSealed(t, s, priv, pub)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", mapTPMError(t, err, s))
	}
	defer func() { err = errors.Join(err, parent.close(t)) }()
	defer func() {
		if _, ferr := (tpm2.FlushContext{FlushHandle: loaded.ObjectHandle}).Execute(t); ferr != nil {
			err = errors.Join(err, fmt.Errorf("flush sealed object: %w", ferr))
		}
	}()

	policy, err := startSession(t, sessionKind{policy: true, saltKey: parent.handle, saltPub: &parent.public})
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", mapTPMError(t, err, s))
	}
	defer func() { err = errors.Join(err, policy.flush(t)) }()
	if len(pcrs) > 0 {
		if _, err := (tpm2.PolicyPCR{PolicySession: policy.handle, Pcrs: pcrSelection(alg, pcrs)}).Execute(t); err != nil {
			return nil, fmt.Errorf("unseal: PolicyPCR: %w", mapTPMError(t, err, s))
		}
	}
	if s.PIN {
		if _, err := (tpm2.PolicyAuthValue{PolicySession: policy.handle}).Execute(t); err != nil {
			return nil, fmt.Errorf("unseal: PolicyAuthValue: %w", err)
		}
	}
	dig, err := tpm2.PolicyGetDigest{PolicySession: policy.handle}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("unseal: PolicyGetDigest: %w", err)
	}
	if subtle.ConstantTimeCompare(dig.PolicyDigest.Buffer, s.PolicyHash) != 1 {
		return nil, fmt.Errorf("unseal: %w", &PCRMismatchError{Bank: bankName(s.PCRBank), PCRs: slices.Clone(pcrs)})
	}
	if s.PIN {
		auth := pinAuthValue(pin, s.Salt)
		policy.setAuth(auth)
		secret.Wipe(auth)
	}

	enc, err := startSession(t, sessionKind{encOut: true, saltKey: parent.handle, saltPub: &parent.public})
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", mapTPMError(t, err, s))
	}
	defer func() { err = errors.Join(err, enc.flush(t)) }()

	rsp, err := tpm2.Unseal{
		ItemHandle: tpm2.AuthHandle{Handle: loaded.ObjectHandle, Name: loaded.Name, Auth: policy},
	}.Execute(t, enc)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", mapTPMError(t, err, s))
	}
	out := slices.Clone(rsp.OutData.Buffer)
	secret.Wipe(rsp.OutData.Buffer)
	return out, nil
}

// wipingTPM keeps the responses it passes on so they can be wiped: go-tpm
// decrypts the unsealed secret in place in the response buffer before
// copying it out.
type wipingTPM struct {
	t    transport.TPM
	rsps [][]byte
}

// Send implements transport.TPM.
func (w *wipingTPM) Send(cmd []byte) ([]byte, error) {
	rsp, err := w.t.Send(cmd)
	if rsp != nil {
		w.rsps = append(w.rsps, rsp)
	}
	return rsp, err
}

// wipe zeroes every response seen.
func (w *wipingTPM) wipe() {
	for _, r := range w.rsps {
		secret.Wipe(r)
	}
	w.rsps = nil
}

// loadSealed loads the sealed object under its parent. A token without
// "tpm2-primary-alg" (systemd before 250) was sealed under ECC if the TPM
// had it, else RSA: both are tried.
func loadSealed(t transport.TPM, s *Sealed, priv tpm2.TPM2BPrivate, pub tpm2.TPM2BPublic) (*parentKey, *tpm2.LoadResponse, error) {
	algs := []string{s.PrimaryAlg}
	if s.PrimaryAlg == "" && len(s.SRK) == 0 {
		algs = []string{AlgECC, AlgRSA}
	}
	var errs []error
	for _, alg := range algs {
		parent, err := unsealParent(t, s, alg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		loaded, err := tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: parent.handle, Name: parent.name, Auth: tpm2.PasswordAuth(nil)},
			InPrivate:    priv,
			InPublic:     pub,
		}.Execute(t)
		if err == nil {
			return parent, loaded, nil
		}
		errs = append(errs, fmt.Errorf("load sealed object: %w", err), parent.close(t))
		if errors.Is(err, tpm2.TPMRCLockout) {
			break
		}
	}
	return nil, nil, errors.Join(errs...)
}

// unsealParent returns the parent key of s: the persistent SRK checked
// against the serialized one in s.SRK (recreated transiently from the SRK
// template if the handle is empty), or a transient primary key as systemd 252
// creates it.
func unsealParent(t transport.TPM, s *Sealed, alg string) (*parentKey, error) {
	if len(s.SRK) == 0 {
		return createPrimary(t, alg, false)
	}
	want, err := parseSRK(s.SRK)
	if err != nil {
		return nil, err
	}
	p, err := readSRK(t)
	if err != nil {
		return nil, err
	}
	if p == nil {
		alg, err := algName(&want.public)
		if err != nil {
			return nil, err
		}
		if p, err = createPrimary(t, alg, true); err != nil {
			return nil, err
		}
	}
	if !bytes.Equal(p.name.Buffer, want.name) {
		return nil, errors.Join(
			fmt.Errorf("SRK of this TPM does not match the token's tpm2_srk (another TPM, or the owner hierarchy was cleared)"),
			p.close(t))
	}
	return p, nil
}

// LockoutInfo is the TPM's dictionary-attack state.
type LockoutInfo struct {
	// Failures is TPM_PT_LOCKOUT_COUNTER: failed authorizations counted.
	Failures int
	// MaxFailures is TPM_PT_MAX_AUTH_FAIL: the count at which the TPM
	// locks out.
	MaxFailures int
	// IntervalSeconds is TPM_PT_LOCKOUT_INTERVAL: one failure is forgiven
	// every this many seconds (0: never).
	IntervalSeconds int
}

// TriesLeft is how many more failed authorizations the TPM accepts before
// it locks out.
func (l LockoutInfo) TriesLeft() int { return max(l.MaxFailures-l.Failures, 0) }

// ReadLockoutInfo reads the dictionary-attack state, e.g. to tell a user how
// many PIN tries are left before asking.
func ReadLockoutInfo(t transport.TPM) (LockoutInfo, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTLockoutCounter),
		PropertyCount: 3,
	}.Execute(withRetry(t))
	if err != nil {
		return LockoutInfo{}, fmt.Errorf("read dictionary-attack state: %w", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return LockoutInfo{}, fmt.Errorf("read dictionary-attack state: %w", err)
	}
	var info LockoutInfo
	found := 0
	for _, p := range props.TPMProperty {
		switch p.Property {
		case tpm2.TPMPTLockoutCounter:
			info.Failures = int(p.Value)
			found++
		case tpm2.TPMPTMaxAuthFail:
			info.MaxFailures = int(p.Value)
			found++
		case tpm2.TPMPTLockoutInterval:
			info.IntervalSeconds = int(p.Value)
			found++
		}
	}
	if found != 3 {
		return LockoutInfo{}, errors.New("read dictionary-attack state: TPM did not report it")
	}
	return info, nil
}

// mapTPMError turns TPM response codes into this package's typed errors.
// Other errors are returned unchanged.
func mapTPMError(t transport.TPM, err error, s *Sealed) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tpm2.TPMRCLockout):
		le := &LockoutError{}
		if info, ierr := ReadLockoutInfo(t); ierr == nil {
			le.IntervalSeconds = info.IntervalSeconds
		}
		return le
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		if s == nil || !s.PIN {
			return err
		}
		be := &BadPINError{TriesLeft: -1, MaxTries: -1}
		if info, ierr := ReadLockoutInfo(t); ierr == nil {
			be.MaxTries = info.MaxFailures
			be.TriesLeft = info.TriesLeft()
		}
		return be
	case errors.Is(err, tpm2.TPMRCPolicyFail), errors.Is(err, tpm2.TPMRCPCRChanged):
		if s == nil {
			return err
		}
		return &PCRMismatchError{Bank: bankName(s.PCRBank), PCRs: slices.Clone(s.PCRs)}
	}
	return err
}
