// Package crypttab parses /etc/crypttab in systemd's format (crypttab(5))
// and finds the devices its lines name. It only reads: unlocking and
// mapping are the volume package's job.
//
// A line has up to four whitespace-separated fields:
//
//	name  device  [key-file  [options]]
//
// device is a path or UUID=, PARTUUID=, LABEL= or PARTLABEL=; key-file is a
// path, or "none", "-" or absent for none; options are comma-separated.
// Lines starting with # and blank lines are skipped.
package crypttab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// DefaultPath is where systemd and volcrypt look for the table.
const DefaultPath = "/etc/crypttab"

// ErrSyntax marks a malformed line; a *ParseError wraps it.
var ErrSyntax = errors.New("crypttab syntax error")

// ParseError says which line of a table is wrong.
type ParseError struct {
	Path string // "" when parsed from a reader
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	where := "crypttab"
	if e.Path != "" {
		where = e.Path
	}
	return fmt.Sprintf("%s:%d: %v", where, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Entry is one line of a crypttab.
type Entry struct {
	// Name is the mapping name (/dev/mapper/Name).
	Name string
	// Device is the device as written: a path or TAG=value.
	Device string
	// KeyFile is the key file's path; "" means none (a prompt or a token).
	KeyFile string
	Options Options
	// Line is the 1-based line number in the table.
	Line int
}

// Options are the options volcrypt acts on; unknown ones are kept in
// Ignored so a caller can warn about them.
type Options struct {
	// Type is "luks" (the default) or another type volcrypt refuses
	// ("plain", "tcrypt", "bitlk").
	Type string
	// TPM2Device is tpm2-device= ("auto" or a path); "" when absent.
	TPM2Device string
	// TPM2PCRs is tpm2-pcrs= as written (used when enrolling, not to unlock).
	TPM2PCRs string
	// TPM2PIN is tpm2-pin (or tpm2-pin=yes): the TPM key needs a PIN.
	TPM2PIN bool
	// Headless: never ask anyone for a passphrase or PIN.
	Headless bool
	// Discard passes TRIM through (cryptsetup's --allow-discards).
	Discard bool
	// ReadOnly maps the volume read-only (read-only or readonly).
	ReadOnly bool
	// NoFail: a failure to attach this volume does not fail the boot.
	NoFail bool
	// NoAuto: attach only when asked for by name.
	NoAuto bool
	// InitrdAttach (x-initrd.attach): attach in the initramfs.
	InitrdAttach bool
	// KeyfileOffset and KeyfileSize select part of the key file (bytes).
	KeyfileOffset int64
	KeyfileSize   int64
	// KeySlot is key-slot=; -1 when absent.
	KeySlot int
	// Header is a detached header (header=PATH).
	Header string
	// Tries is how many times to ask for a passphrase (tries=; default 3,
	// 0 means forever as in systemd).
	Tries int
	// Performance flags, as dm-crypt's.
	SameCPUCrypt, SubmitFromCryptCPUs, NoReadWorkqueue, NoWriteWorkqueue bool
	// Ignored lists the options volcrypt parsed but does not act on.
	Ignored []string
}

// DefaultTries is systemd's default number of passphrase attempts.
const DefaultTries = 3

// ParseFile parses the table at path.
func ParseFile(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read crypttab: %w", err)
	}
	defer f.Close()
	entries, err := Parse(f)
	var pe *ParseError
	if errors.As(err, &pe) {
		pe.Path = path
	}
	return entries, err
}

// Parse reads a table. A malformed line fails the whole table with a
// *ParseError naming the line, so that a typo is never half-applied; two
// lines with the same name fail likewise.
func Parse(r io.Reader) ([]Entry, error) {
	var entries []Entry
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := parseLine(line)
		if err != nil {
			return nil, &ParseError{Line: n, Err: err}
		}
		if prev, ok := seen[e.Name]; ok {
			return nil, &ParseError{Line: n, Err: fmt.Errorf("%w: name %q already used on line %d", ErrSyntax, e.Name, prev)}
		}
		seen[e.Name] = n
		e.Line = n
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read crypttab: %w", err)
	}
	return entries, nil
}

func parseLine(line string) (Entry, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return Entry{}, fmt.Errorf("%w: need at least a name and a device", ErrSyntax)
	}
	if len(f) > 4 {
		return Entry{}, fmt.Errorf("%w: more than 4 fields (options are separated by commas, not spaces)", ErrSyntax)
	}
	e := Entry{Name: f[0], Device: f[1]}
	if strings.ContainsAny(e.Name, "/") || e.Name == "." || e.Name == ".." {
		return Entry{}, fmt.Errorf("%w: %q is not a mapping name", ErrSyntax, e.Name)
	}
	if _, _, err := SplitDevice(e.Device); err != nil {
		return Entry{}, err
	}
	if len(f) > 2 && f[2] != "none" && f[2] != "-" {
		e.KeyFile = f[2]
		if strings.Contains(e.KeyFile, ":") {
			return Entry{}, fmt.Errorf("%w: key file %q on another device (PATH:DEVICE) is not supported", ErrSyntax, e.KeyFile)
		}
	}
	opts := ""
	if len(f) > 3 {
		opts = f[3]
	}
	o, err := ParseOptions(opts)
	if err != nil {
		return Entry{}, err
	}
	e.Options = o
	return e, nil
}

// ParseOptions parses a comma-separated option list ("" or "-" for none).
func ParseOptions(s string) (Options, error) {
	o := Options{Type: "luks", KeySlot: -1, Tries: DefaultTries}
	if s == "" || s == "-" || s == "none" {
		return o, nil
	}
	for _, opt := range strings.Split(s, ",") {
		if opt == "" {
			continue
		}
		key, val, hasVal := strings.Cut(opt, "=")
		var err error
		switch key {
		case "luks", "plain", "tcrypt", "bitlk", "veracrypt":
			o.Type = key
		case "tpm2-device":
			o.TPM2Device, err = needValue(key, val, hasVal)
		case "tpm2-pcrs":
			o.TPM2PCRs, err = needValue(key, val, hasVal)
		case "tpm2-pin":
			o.TPM2PIN, err = boolValue(key, val, hasVal)
		case "headless":
			o.Headless, err = boolValue(key, val, hasVal)
		case "discard":
			o.Discard = true
		case "read-only", "readonly":
			o.ReadOnly = true
		case "nofail":
			o.NoFail = true
		case "noauto":
			o.NoAuto = true
		case "x-initrd.attach":
			o.InitrdAttach = true
		case "same-cpu-crypt":
			o.SameCPUCrypt = true
		case "submit-from-crypt-cpus":
			o.SubmitFromCryptCPUs = true
		case "no-read-workqueue":
			o.NoReadWorkqueue = true
		case "no-write-workqueue":
			o.NoWriteWorkqueue = true
		case "keyfile-offset":
			o.KeyfileOffset, err = intValue(key, val, hasVal)
		case "keyfile-size":
			o.KeyfileSize, err = intValue(key, val, hasVal)
		case "key-slot":
			var n int64
			n, err = intValue(key, val, hasVal)
			o.KeySlot = int(n)
		case "tries":
			var n int64
			n, err = intValue(key, val, hasVal)
			o.Tries = int(n)
		case "header":
			o.Header, err = needValue(key, val, hasVal)
		default:
			// _netdev, timeout=, x-systemd.*, keyfile-timeout=, …: systemd's
			// business, or features volcrypt does not have.
			o.Ignored = append(o.Ignored, opt)
		}
		if err != nil {
			return Options{}, err
		}
	}
	return o, nil
}

func needValue(key, val string, hasVal bool) (string, error) {
	if !hasVal || val == "" {
		return "", fmt.Errorf("%w: option %s needs a value (%s=…)", ErrSyntax, key, key)
	}
	return val, nil
}

func boolValue(key, val string, hasVal bool) (bool, error) {
	if !hasVal {
		return true, nil
	}
	switch strings.ToLower(val) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("%w: option %s=%s: not a boolean", ErrSyntax, key, val)
}

func intValue(key, val string, hasVal bool) (int64, error) {
	s, err := needValue(key, val, hasVal)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: option %s=%s: not a non-negative number", ErrSyntax, key, val)
	}
	return n, nil
}
