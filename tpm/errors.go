package tpm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Typed errors below wrap them, so errors.Is works with both.
var (
	// ErrNoTPM means no TPM device was found or could be reached.
	ErrNoTPM = errors.New("no TPM found")
	// ErrPCRMismatch means the PCR policy did not match: the bound PCRs hold
	// other values than when the secret was sealed.
	ErrPCRMismatch = errors.New("TPM PCR policy does not match")
	// ErrBadPIN means the TPM refused the PIN.
	ErrBadPIN = errors.New("wrong TPM PIN")
	// ErrLockout means the TPM is in dictionary-attack lockout and refuses
	// authorization until the lockout expires or is cleared.
	ErrLockout = errors.New("TPM is in dictionary-attack lockout")
	// ErrPINRequired means the sealed object needs a PIN and none was given.
	ErrPINRequired = errors.New("TPM PIN required")
	// ErrUnsupported means a token or sealed object uses a feature this
	// package does not implement (e.g. signed PCR policies).
	ErrUnsupported = errors.New("unsupported TPM token feature")
)

// PCRMismatchError reports which PCRs the sealed secret is bound to when the
// policy check fails. The sealed PCR values are not stored (systemd does not
// store them either), so all bound PCRs are named.
type PCRMismatchError struct {
	Bank string // PCR bank, e.g. "sha256"
	PCRs []int  // bound PCRs
}

// Error implements error.
func (e *PCRMismatchError) Error() string {
	if len(e.PCRs) == 0 {
		return "TPM policy does not match: the token is bound to no PCR, so it was sealed with another policy"
	}
	return fmt.Sprintf("TPM PCR policy does not match: one of PCRs %s (%s) changed since enrollment",
		FormatPCRList(e.PCRs), e.Bank)
}

// Unwrap returns ErrPCRMismatch.
func (e *PCRMismatchError) Unwrap() error { return ErrPCRMismatch }

// BadPINError reports a refused PIN and, when the TPM told us, how many more
// failures it tolerates before locking out.
type BadPINError struct {
	// TriesLeft is the number of failed authorizations left before lockout,
	// or -1 if it could not be read.
	TriesLeft int
	// MaxTries is TPM_PT_MAX_AUTH_FAIL, or -1 if unknown.
	MaxTries int
}

// Error implements error.
func (e *BadPINError) Error() string {
	if e.TriesLeft < 0 {
		return "wrong TPM PIN"
	}
	if e.TriesLeft == 1 {
		return "wrong TPM PIN: 1 try left before lockout"
	}
	return "wrong TPM PIN: " + strconv.Itoa(e.TriesLeft) + " tries left before lockout"
}

// Unwrap returns ErrBadPIN.
func (e *BadPINError) Unwrap() error { return ErrBadPIN }

// LockoutError reports a dictionary-attack lockout.
type LockoutError struct {
	// IntervalSeconds is TPM_PT_LOCKOUT_INTERVAL: one failure is forgiven
	// every this many seconds (0 if unknown or never).
	IntervalSeconds int
}

// Error implements error.
func (e *LockoutError) Error() string {
	var b strings.Builder
	b.WriteString("TPM is in dictionary-attack lockout: ")
	if e.IntervalSeconds > 0 {
		fmt.Fprintf(&b, "wait (one failure is forgiven every %d s) or ", e.IntervalSeconds)
	} else {
		b.WriteString("wait for it to expire or ")
	}
	b.WriteString("clear it with `tpm2_dictionarylockout -c` (needs the lockout authorization)")
	return b.String()
}

// Unwrap returns ErrLockout.
func (e *LockoutError) Unwrap() error { return ErrLockout }
