package dm

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// SectorSize is the device-mapper sector: table offsets and lengths count it.
const SectorSize = 512

// CryptTarget is a single-segment dm-crypt table:
//
//	<start> <length> crypt <cipher> <key> <iv_offset> <device> <offset> [<#opt_params> <opt_params>]
//
// Sizes are in bytes and converted to 512-byte sectors here. The key itself
// is never stored: a table refers to a kernel keyring key
// (":<size>:logon:<description>") or carries the key in hex, which Params
// takes as an argument and String masks with zeros.
type CryptTarget struct {
	// Cipher is the dm-crypt cipher spec, e.g. "aes-xts-plain64" or
	// "capi:xts(aes)-plain64".
	Cipher string
	// KeySize is the volume key size in bytes (64 for aes-xts-plain64 with
	// a 512-bit key).
	KeySize int
	// KeyType is the keyring key type, "logon" when empty.
	KeyType string
	// KeyDescription names the keyring key holding the volume key; cryptsetup
	// uses "cryptsetup:<LUKS UUID>-d<digest>" for LUKS2 (see
	// LUKS2KeyDescription). Empty means the key is given in hex.
	KeyDescription string
	// IVOffset is the table's iv_offset: the IV sector number of the first
	// mapped sector (LUKS2 "iv_tweak", plain --skip), in 512-byte sectors.
	IVOffset uint64
	// Device is the backing block device, "major:minor" (see DevNum); a
	// path is accepted when loading.
	Device string
	// OffsetBytes is where the encrypted data starts on Device.
	OffsetBytes uint64
	// SizeBytes is the size of the mapping.
	SizeBytes uint64
	// SectorSizeBytes is the encryption sector size; 0 means 512.
	SectorSizeBytes int

	AllowDiscards       bool
	SameCPUCrypt        bool
	SubmitFromCryptCPUs bool
	NoReadWorkqueue     bool
	NoWriteWorkqueue    bool
	IVLargeSectors      bool
	// Integrity is the value of an "integrity:<tag size>:<type>" option
	// (e.g. "28:aead"), empty when the target has none.
	Integrity string
	// Extra holds optional parameters this package does not know, kept in
	// the order the table listed them and emitted last.
	Extra []string
}

// DevNum formats a device number as "major:minor".
func DevNum(major, minor uint32) string { return fmt.Sprintf("%d:%d", major, minor) }

// LUKS2KeyDescription is the keyring description cryptsetup gives the
// volume key of a LUKS2 volume: "cryptsetup:<uuid>-d<digest>", with the
// LUKS UUID as written in the header (dashes kept) and the digest id that
// verifies the key (0 for a freshly formatted volume).
func LUKS2KeyDescription(luksUUID string, digest int) string {
	return fmt.Sprintf("cryptsetup:%s-d%d", luksUUID, digest)
}

// Validate checks that the target can be loaded.
func (t CryptTarget) Validate() error {
	switch {
	case t.Cipher == "" || strings.ContainsAny(t.Cipher, " \t\n"):
		return fmt.Errorf("crypt target: cipher %q: %w", t.Cipher, ErrInvalid)
	case t.KeySize < 0 || (t.KeySize == 0 && t.KeyDescription != ""):
		return fmt.Errorf("crypt target: key size %d: %w", t.KeySize, ErrInvalid)
	case strings.ContainsAny(t.KeyDescription, " \t\n"):
		return fmt.Errorf("crypt target: key description contains white space: %w", ErrInvalid)
	case strings.ContainsAny(t.KeyType, " \t\n:"):
		return fmt.Errorf("crypt target: key type %q: %w", t.KeyType, ErrInvalid)
	case t.Device == "" || strings.ContainsAny(t.Device, " \t\n"):
		return fmt.Errorf("crypt target: device %q: %w", t.Device, ErrInvalid)
	case t.SizeBytes == 0 || t.SizeBytes%SectorSize != 0:
		return fmt.Errorf("crypt target: size %d bytes is not a positive multiple of %d: %w", t.SizeBytes, SectorSize, ErrInvalid)
	case t.OffsetBytes%SectorSize != 0:
		return fmt.Errorf("crypt target: offset %d bytes is not a multiple of %d: %w", t.OffsetBytes, SectorSize, ErrInvalid)
	}
	if ss := t.SectorSizeBytes; ss != 0 && (ss < 512 || ss > 4096 || ss&(ss-1) != 0) {
		return fmt.Errorf("crypt target: sector size %d: %w", ss, ErrInvalid)
	}
	if ss := t.sectorSize(); t.SizeBytes%uint64(ss) != 0 {
		return fmt.Errorf("crypt target: size %d bytes is not a multiple of the sector size %d: %w", t.SizeBytes, ss, ErrInvalid)
	}
	for _, e := range t.Extra {
		if e == "" || strings.ContainsAny(e, " \t\n") {
			return fmt.Errorf("crypt target: option %q: %w", e, ErrInvalid)
		}
	}
	return nil
}

func (t CryptTarget) sectorSize() int {
	if t.SectorSizeBytes == 0 {
		return SectorSize
	}
	return t.SectorSizeBytes
}

func (t CryptTarget) keyType() string {
	if t.KeyType == "" {
		return "logon"
	}
	return t.KeyType
}

// options returns the optional parameters. kernelOrder selects the order
// dm-crypt prints them in its table; otherwise it is cryptsetup's order
// for the lines it loads (iv_large_sectors before sector_size).
func (t CryptTarget) options(kernelOrder bool) []string {
	var o []string
	add := func(ok bool, s string) {
		if ok {
			o = append(o, s)
		}
	}
	add(t.AllowDiscards, "allow_discards")
	add(t.SameCPUCrypt, "same_cpu_crypt")
	add(t.SubmitFromCryptCPUs, "submit_from_crypt_cpus")
	add(t.NoReadWorkqueue, "no_read_workqueue")
	add(t.NoWriteWorkqueue, "no_write_workqueue")
	sector := t.SectorSizeBytes != 0 && t.SectorSizeBytes != SectorSize
	if kernelOrder {
		add(t.Integrity != "", "integrity:"+t.Integrity)
		add(sector, "sector_size:"+strconv.Itoa(t.SectorSizeBytes))
		add(t.IVLargeSectors, "iv_large_sectors")
	} else {
		add(t.IVLargeSectors, "iv_large_sectors")
		add(sector, "sector_size:"+strconv.Itoa(t.SectorSizeBytes))
		add(t.Integrity != "", "integrity:"+t.Integrity)
	}
	return append(o, t.Extra...)
}

// appendParams appends the crypt parameters (everything after "crypt") to
// b. key is written in hex when the target has no key description; it
// must then be KeySize bytes long. A nil key with no description writes
// zeros, as `dmsetup table` masks keys.
func (t CryptTarget) appendParams(b []byte, key []byte, kernelOrder bool) ([]byte, error) {
	b = append(b, t.Cipher...)
	b = append(b, ' ')
	switch {
	case t.KeyDescription != "":
		b = fmt.Appendf(b, ":%d:%s:%s", t.KeySize, t.keyType(), t.KeyDescription)
	case t.KeySize == 0:
		b = append(b, '-')
	case key == nil:
		for i := 0; i < 2*t.KeySize; i++ {
			b = append(b, '0')
		}
	default:
		if len(key) != t.KeySize {
			return b, fmt.Errorf("crypt target: key of %d bytes for key size %d: %w", len(key), t.KeySize, ErrInvalid)
		}
		n := len(b)
		b = append(b, make([]byte, hex.EncodedLen(len(key)))...)
		hex.Encode(b[n:], key)
	}
	b = fmt.Appendf(b, " %d %s %d", t.IVOffset, t.Device, t.OffsetBytes/SectorSize)
	if opts := t.options(kernelOrder); len(opts) > 0 {
		b = fmt.Appendf(b, " %d", len(opts))
		for _, o := range opts {
			b = append(b, ' ')
			b = append(b, o...)
		}
	}
	return b, nil
}

// Params returns the crypt parameters as cryptsetup would load them. key
// is used only when the target has no KeyDescription; the result then holds
// the key in hex and the caller must wipe it.
func (t CryptTarget) Params(key []byte) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if t.KeyDescription == "" && t.KeySize > 0 && key == nil {
		return nil, fmt.Errorf("crypt target: no key and no key description: %w", ErrInvalid)
	}
	// Size the buffer up front so appends never reallocate and leave
	// copies of the key behind.
	b := make([]byte, 0, 256+2*t.KeySize+len(t.Cipher)+len(t.KeyDescription)+len(t.Device)+16*len(t.Extra)+len(strings.Join(t.Extra, "")))
	return t.appendParams(b, key, false)
}

// Target returns the generic table line for the target with the key
// masked; use it for display, not for loading a hex-key table.
func (t CryptTarget) Target() Target {
	b, _ := t.appendParams(nil, nil, true)
	return Target{StartSector: 0, LengthSectors: t.SizeBytes / SectorSize, Type: "crypt", Params: string(b)}
}

// String returns the full table line as the kernel prints it, a hex key
// masked with zeros: "0 <sectors> crypt <params>".
func (t CryptTarget) String() string { return t.Target().String() }

// ParseCryptLine parses a full dm-crypt table line
// "<start> <length> crypt <params>" as printed by `dmsetup table` or
// returned by Table. A hex key is not kept, only its size.
func ParseCryptLine(line string) (CryptTarget, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return CryptTarget{}, fmt.Errorf("parse crypt table %q: too few fields: %w", line, ErrInvalid)
	}
	start, err1 := strconv.ParseUint(f[0], 10, 64)
	length, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return CryptTarget{}, fmt.Errorf("parse crypt table: bad start or length: %w", ErrInvalid)
	}
	return ParseCrypt(Target{StartSector: start, LengthSectors: length, Type: f[2], Params: strings.Join(f[3:], " ")})
}

// ParseCrypt parses a crypt target from a table. Only single-segment
// tables starting at sector 0 are supported, as cryptsetup creates for
// LUKS and plain volumes. A hex key is not kept, only its size.
func ParseCrypt(t Target) (CryptTarget, error) {
	if t.Type != "crypt" {
		return CryptTarget{}, fmt.Errorf("parse crypt table: target type %q: %w", t.Type, ErrInvalid)
	}
	if t.StartSector != 0 {
		return CryptTarget{}, fmt.Errorf("parse crypt table: target starts at sector %d, not 0: %w", t.StartSector, ErrInvalid)
	}
	f := strings.Fields(t.Params)
	if len(f) < 5 {
		return CryptTarget{}, fmt.Errorf("parse crypt table: %d parameters, want at least 5: %w", len(f), ErrInvalid)
	}
	c := CryptTarget{Cipher: f[0], Device: f[3], SizeBytes: t.LengthSectors * SectorSize}
	if err := c.parseKey(f[1]); err != nil {
		return CryptTarget{}, err
	}
	var err error
	if c.IVOffset, err = strconv.ParseUint(f[2], 10, 64); err != nil {
		return CryptTarget{}, fmt.Errorf("parse crypt table: iv_offset %q: %w", f[2], ErrInvalid)
	}
	offset, err := strconv.ParseUint(f[4], 10, 64)
	if err != nil || offset > (1<<64-1)/SectorSize {
		return CryptTarget{}, fmt.Errorf("parse crypt table: offset %q: %w", f[4], ErrInvalid)
	}
	c.OffsetBytes = offset * SectorSize
	if len(f) == 5 {
		return c, nil
	}
	n, err := strconv.Atoi(f[5])
	if err != nil || n < 0 || n != len(f)-6 {
		return CryptTarget{}, fmt.Errorf("parse crypt table: option count %q for %d options: %w", f[5], len(f)-6, ErrInvalid)
	}
	for _, o := range f[6:] {
		switch {
		case o == "allow_discards":
			c.AllowDiscards = true
		case o == "same_cpu_crypt":
			c.SameCPUCrypt = true
		case o == "submit_from_crypt_cpus":
			c.SubmitFromCryptCPUs = true
		case o == "no_read_workqueue":
			c.NoReadWorkqueue = true
		case o == "no_write_workqueue":
			c.NoWriteWorkqueue = true
		case o == "iv_large_sectors":
			c.IVLargeSectors = true
		case strings.HasPrefix(o, "sector_size:"):
			ss, err := strconv.Atoi(strings.TrimPrefix(o, "sector_size:"))
			if err != nil || ss < 512 || ss > 4096 || ss&(ss-1) != 0 {
				return CryptTarget{}, fmt.Errorf("parse crypt table: option %q: %w", o, ErrInvalid)
			}
			c.SectorSizeBytes = ss
		case strings.HasPrefix(o, "integrity:"):
			c.Integrity = strings.TrimPrefix(o, "integrity:")
		default:
			c.Extra = append(c.Extra, o)
		}
	}
	return c, nil
}

// parseKey reads the key field: ":<size>:<type>:<description>", "-" (no
// key) or hex digits (only the size is kept).
func (c *CryptTarget) parseKey(k string) error {
	switch {
	case k == "-":
		return nil
	case strings.HasPrefix(k, ":"):
		parts := strings.SplitN(k[1:], ":", 3)
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			return fmt.Errorf("parse crypt table: keyring key reference malformed: %w", ErrInvalid)
		}
		size, err := strconv.Atoi(parts[0])
		if err != nil || size <= 0 {
			return fmt.Errorf("parse crypt table: keyring key size %q: %w", parts[0], ErrInvalid)
		}
		c.KeySize, c.KeyType, c.KeyDescription = size, parts[1], parts[2]
		if c.KeyType == "logon" {
			c.KeyType = ""
		}
		return nil
	default:
		if len(k)%2 != 0 {
			return fmt.Errorf("parse crypt table: hex key of odd length: %w", ErrInvalid)
		}
		for i := 0; i < len(k); i++ {
			ch := k[i]
			if !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f' || 'A' <= ch && ch <= 'F') {
				return fmt.Errorf("parse crypt table: key is neither hex nor a keyring reference: %w", ErrInvalid)
			}
		}
		c.KeySize = len(k) / 2
		return nil
	}
}
