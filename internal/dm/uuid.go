package dm

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Volume types used in device-mapper UUIDs, as cryptsetup spells them.
const (
	TypeLUKS1 = "LUKS1"
	TypeLUKS2 = "LUKS2"
	TypePlain = "PLAIN"
)

// uuidPrefix starts every device-mapper UUID cryptsetup sets.
const uuidPrefix = "CRYPT-"

// CryptUUID returns the device-mapper UUID cryptsetup gives a mapping:
// "CRYPT-<type>-<volume uuid without dashes>-<name>", or
// "CRYPT-<type>-<name>" when volumeUUID is empty (plain mappings). Like
// cryptsetup it truncates the result to the kernel's 128-byte limit.
func CryptUUID(typ, volumeUUID, name string) string {
	var b strings.Builder
	b.WriteString(uuidPrefix)
	if typ != "" {
		b.WriteString(typ)
		b.WriteByte('-')
	}
	if u := strings.ReplaceAll(volumeUUID, "-", ""); u != "" {
		b.WriteString(u)
		b.WriteByte('-')
	}
	b.WriteString(name)
	s := b.String()
	if len(s) > unix.DM_UUID_LEN-1 {
		s = s[:unix.DM_UUID_LEN-1]
	}
	return s
}

// ParseCryptUUID splits a device-mapper UUID made by CryptUUID (or
// cryptsetup) into the volume type, the volume UUID (dashes restored to the
// 8-4-4-4-12 form when it has 32 hex digits) and the mapping name. ok is
// false for UUIDs that do not start with "CRYPT-<type>-".
func ParseCryptUUID(dmUUID string) (typ, volumeUUID, name string, ok bool) {
	rest, found := strings.CutPrefix(dmUUID, uuidPrefix)
	if !found {
		return "", "", "", false
	}
	typ, rest, found = strings.Cut(rest, "-")
	if !found || typ == "" {
		return "", "", "", false
	}
	if typ == TypePlain {
		return typ, "", rest, true
	}
	if u, n, found := strings.Cut(rest, "-"); found && len(u) == 32 && isHex(u) {
		return typ, u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32], n, true
	}
	return typ, "", rest, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
