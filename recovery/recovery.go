// Package recovery implements BitLocker-style recovery passwords: 48 digits
// in 8 groups of 6, each group 11 times a 16-bit word, 128 bits in all.
// volcrypt accepts one wherever a passphrase is accepted.
//
// The passphrase that goes into a LUKS2 key slot is the canonical form Parse
// returns: the 8 groups joined by '-', 55 ASCII bytes, exactly what a user
// types and what Generate prints. Spaces or missing separators in the input
// therefore do not matter.
//
// Every group is a multiple of 11 no larger than 720885 (11 × 65535), so a
// mistyped group is found without any other information: changing one digit
// changes the group by d × 10^k with 1 ≤ |d| ≤ 9, and swapping two adjacent
// digits a, b changes it by (a − b) × 9 × 10^k; 11 is prime and divides none
// of these factors, so every single-digit typo and every adjacent
// transposition inside a group is caught and the group named.
package recovery

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// Shape of a recovery password.
const (
	Groups      = 8                    // groups in a recovery password
	GroupDigits = 6                    // digits per group
	MaxGroup    = 11 * 0xFFFF          // largest valid group, 720885
	Len         = Groups*7 - 1         // length of the canonical dashed form, 55
	KeyBytes    = Groups * 2           // key bytes a recovery password encodes, 16
	digits      = Groups * GroupDigits // 48
)

// ErrNotRecovery means the input is not shaped like a recovery password at
// all; callers treat it as an ordinary passphrase.
var ErrNotRecovery = errors.New("not a recovery password")

// ErrInvalid is the sentinel every *GroupError matches: the input is shaped
// like a recovery password but cannot be one.
var ErrInvalid = errors.New("invalid recovery password")

// GroupError names the first group of a recovery-password-shaped input that
// cannot be valid. Its message gives the group's position and the reason but
// not its digits, which are part of a secret; Group holds them for a caller
// that wants to show the user what was typed.
type GroupError struct {
	// Index is the group's position, 1 to 8.
	Index int
	// Group is the group as typed.
	Group string
	// Reason says what is wrong with it.
	Reason string
}

func (e *GroupError) Error() string {
	return fmt.Sprintf("recovery password group %d: %s", e.Index, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *GroupError) Is(target error) bool { return target == ErrInvalid }

// Generate returns a new recovery password in canonical form, encoding 128
// bits from crypto/rand.
func Generate() (string, error) {
	var key [KeyBytes]byte
	defer clear(key[:])
	if _, err := rand.Read(key[:]); err != nil {
		return "", fmt.Errorf("generate recovery password: %w", err)
	}
	return FromKey(key), nil
}

// FromKey returns the recovery password, in canonical form, that encodes key:
// group i is 11 times the little-endian 16-bit word at key[2i:].
func FromKey(key [KeyBytes]byte) string {
	var b [Len]byte
	for g := range Groups {
		v := uint32(binary.LittleEndian.Uint16(key[2*g:])) * 11
		o := g * (GroupDigits + 1)
		for i := GroupDigits - 1; i >= 0; i-- {
			b[o+i] = byte('0' + v%10)
			v /= 10
		}
		if g < Groups-1 {
			b[o+GroupDigits] = '-'
		}
	}
	s := string(b[:])
	clear(b[:])
	return s
}

// group is one group as found in the input.
type group struct {
	start, end int // the group's digits are s[start:end]
}

// shape splits s into 8 groups of digits, or reports false when s is not
// shaped like a recovery password. Accepted: leading and trailing white
// space including line ends; 48 digits with no separators; or 8 groups of 5
// to 7 digits separated by '-', by spaces or tabs, or by a '-' with spaces
// around it.
// Groups of 5 or 7 digits (a digit dropped or doubled) are shaped like a
// recovery password; Parse then names them.
func shape(s string) ([Groups]group, bool) {
	var gs [Groups]group
	i, end := 0, len(s)
	for i < end && isEdgeSpace(s[i]) {
		i++
	}
	for end > i && isEdgeSpace(s[end-1]) {
		end--
	}
	if end-i == digits {
		for j := i; j < end; j++ {
			if !isDigit(s[j]) {
				break
			}
			if j == end-1 {
				for g := range gs {
					gs[g] = group{i + g*GroupDigits, i + (g+1)*GroupDigits}
				}
				return gs, true
			}
		}
	}
	for g := range Groups {
		if g > 0 {
			sep := i
			for i < end && isSpace(s[i]) {
				i++
			}
			if i < end && s[i] == '-' {
				i++
			}
			for i < end && isSpace(s[i]) {
				i++
			}
			if i == sep {
				return gs, false
			}
		}
		start := i
		for i < end && isDigit(s[i]) {
			i++
		}
		if n := i - start; n < GroupDigits-1 || n > GroupDigits+1 {
			return gs, false
		}
		gs[g] = group{start, i}
	}
	return gs, i == end
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// isEdgeSpace is the white space allowed around a recovery password: also
// the line end a terminal or a key file leaves.
func isEdgeSpace(c byte) bool { return isSpace(c) || c == '\n' || c == '\r' }

// Looks reports whether s is shaped like a recovery password: 8 groups of
// digits with optional separators (see Parse). It does not check the groups;
// Parse does.
func Looks(s string) bool {
	_, ok := shape(s)
	return ok
}

// Parse checks a recovery password and returns its canonical form (the 8
// groups joined by '-'), which is the key-slot passphrase. The caller wipes
// the result.
//
// Accepted input: 48 digits with no separators, or 8 groups of 6 digits
// separated by '-', spaces or both, with optional white space (and a line
// end) around. Input
// of any other shape returns ErrNotRecovery. Input of that shape whose group
// has 5 or 7 digits, exceeds 720885 or is not a multiple of 11 returns a
// *GroupError for the first such group; a caller that wants to allow such a
// string as an ordinary passphrase may try it as one before reporting the
// error.
func Parse(s string) ([]byte, error) {
	gs, ok := shape(s)
	if !ok {
		return nil, ErrNotRecovery
	}
	out := make([]byte, 0, Len)
	for g, r := range gs {
		digits := s[r.start:r.end]
		if err := checkGroup(g, digits); err != nil {
			clear(out[:cap(out)])
			return nil, err
		}
		if g > 0 {
			out = append(out, '-')
		}
		out = append(out, digits...)
	}
	return out, nil
}

func checkGroup(g int, digits string) error {
	if len(digits) != GroupDigits {
		return &GroupError{Index: g + 1, Group: digits,
			Reason: fmt.Sprintf("has %d digits, want %d", len(digits), GroupDigits)}
	}
	v := 0
	for i := range len(digits) {
		v = v*10 + int(digits[i]-'0')
	}
	switch {
	case v > MaxGroup:
		return &GroupError{Index: g + 1, Group: digits, Reason: fmt.Sprintf("above %d", MaxGroup)}
	case v%11 != 0:
		return &GroupError{Index: g + 1, Group: digits, Reason: "not a multiple of 11 (mistyped?)"}
	}
	return nil
}

// Key returns the 128-bit key a recovery password encodes: the 8 group
// values divided by 11, as little-endian 16-bit words, as BitLocker stores
// them. Errors are Parse's.
func Key(s string) ([KeyBytes]byte, error) {
	var key [KeyBytes]byte
	canon, err := Parse(s)
	if err != nil {
		return key, err
	}
	defer clear(canon)
	for g := range Groups {
		v := 0
		for _, c := range canon[g*(GroupDigits+1) : g*(GroupDigits+1)+GroupDigits] {
			v = v*10 + int(c-'0')
		}
		binary.LittleEndian.PutUint16(key[2*g:], uint16(v/11))
	}
	return key, nil
}
