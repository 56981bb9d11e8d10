package header

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotLUKS means the device holds no LUKS header.
	ErrNotLUKS = errors.New("not a LUKS device")
	// ErrChecksum means a header copy's checksum does not match its content.
	ErrChecksum = errors.New("header checksum mismatch")
	// ErrInvalid wraps every reason a header is refused as malformed.
	ErrInvalid = errors.New("invalid LUKS2 metadata")
	// ErrKeyslotNotFound means the named key slot does not exist.
	ErrKeyslotNotFound = errors.New("key slot not found")
	// ErrKeyslotInUse means a key slot chosen for a new key is occupied.
	ErrKeyslotInUse = errors.New("key slot is in use")
	// ErrNoFreeKeyslot means all key slots or the key-slot area are full.
	ErrNoFreeKeyslot = errors.New("no free key slot")
	// ErrWrongKey means a passphrase did not open a key slot: the caller may
	// try the next slot or the next passphrase.
	ErrWrongKey = errors.New("no key available with this passphrase")
	// ErrRequirements means the header declares mandatory requirements
	// volcrypt does not implement; such a volume must not be activated or
	// written.
	ErrRequirements = errors.New("unmet mandatory requirements")
	// ErrReadOnlyFormat means the header's format (LUKS1) is read-only here.
	ErrReadOnlyFormat = errors.New("format is read-only in volcrypt")
)

// VersionError reports a LUKS header of an unsupported version.
type VersionError struct{ Version int }

func (e *VersionError) Error() string {
	return fmt.Sprintf("unsupported LUKS version %d", e.Version)
}

// Is makes a VersionError match ErrNotLUKS for callers that only need to
// know the header cannot be used.
func (e *VersionError) Is(target error) bool { return target == ErrNotLUKS }

// FormatError reports one malformed field of a header.
type FormatError struct {
	Field  string // JSON path or binary field name, e.g. "keyslots.0.area.size"
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("invalid LUKS2 metadata: %s: %s", e.Field, e.Reason)
}

// Is makes every FormatError match ErrInvalid.
func (e *FormatError) Is(target error) bool { return target == ErrInvalid }

func invalidf(field, format string, args ...any) error {
	return &FormatError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// RequirementsError names the unknown mandatory requirements of a header.
type RequirementsError struct{ Requirements []string }

func (e *RequirementsError) Error() string {
	return fmt.Sprintf("unmet mandatory requirements: %s", strings.Join(e.Requirements, ", "))
}

// Is makes a RequirementsError match ErrRequirements.
func (e *RequirementsError) Is(target error) bool { return target == ErrRequirements }

// CopyError describes why one header copy could not be used.
type CopyError struct {
	Copy   string // "primary" or "secondary"
	Offset int64
	Err    error
}

func (e *CopyError) Error() string {
	return fmt.Sprintf("%s header at offset %d: %v", e.Copy, e.Offset, e.Err)
}

func (e *CopyError) Unwrap() error { return e.Err }
