package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/crypttab"
)

// defaultUnitsTable is the table the systemd generator reads. It is not
// /etc/crypttab: systemd-cryptsetup-generator owns that file, and two
// services opening one volume would race.
const defaultUnitsTable = "/etc/volcrypt/crypttab"

// generatorOptions are generate-units' flags.
type generatorOptions struct {
	table  string
	initrd bool
	exe    string
}

// generateUnitsCommand is the systemd generator (systemd.generator(7)):
// /usr/lib/systemd/system-generators/volcrypt-generator runs it early at
// boot and at every daemon-reload.
func (a *app) generateUnitsCommand() *cobra.Command {
	var o generatorOptions
	cmd := &cobra.Command{
		Use:   "generate-units [flags] NORMAL-DIR [EARLY-DIR LATE-DIR]",
		Short: "systemd generator: write a volcrypt@NAME.service for each line of /etc/volcrypt/crypttab",
		Long: `Write, like systemd-cryptsetup-generator for /etc/crypttab, one unit volcrypt@NAME.service per
line of the table into NORMAL-DIR, each running "volcrypt attach-all NAME" and "volcrypt close NAME":
bound to its device (BindsTo=/After= the .device unit, or RequiresMountsFor= an image file or key file),
after cryptsetup-pre.target, pulled in by cryptsetup.target (remote-cryptsetup.target with _netdev)
through .requires, or .wants with nofail (which then does not order cryptsetup.target after it),
not at all with noauto; /dev/mapper/NAME requires it. x-initrd.attach lines are not stopped at
shutdown (the initramfs opened them); in the initramfs (/etc/initrd-release) only they get units.
A missing table writes nothing; a malformed line is skipped with a warning (as
systemd-cryptsetup-generator does), the others get their units. When it writes units it masks
volcrypt.service (a link to /dev/null in NORMAL-DIR), which would open the same volumes at the same
time and ask for their passphrases twice.`,
		Hidden: true,
		Args:   cobra.RangeArgs(1, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.exe == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("path of volcrypt: %w", err)
				}
				o.exe = exe
			}
			// The units run from / and say where they come from: a relative
			// table would name nothing there.
			table, err := filepath.Abs(o.table)
			if err != nil {
				return usageError{err}
			}
			o.table = table
			warn := func(msg string) { fmt.Fprintf(a.stderr, "volcrypt-generator: %s\n", msg) }
			entries, err := parseTableLenient(o.table, warn)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			n, err := writeUnits(args[0], entries, o, warn)
			if n > 0 {
				// volcrypt.service would open the same lines at the same time,
				// and both would ask for their passphrases.
				err = errors.Join(err, maskAllService(args[0]))
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.table, "crypttab", defaultUnitsTable, "the table to read")
	fs.BoolVar(&o.initrd, "initrd", inInitrd(), "generate for the initramfs: only x-initrd.attach lines (default: whether /etc/initrd-release exists)")
	fs.StringVar(&o.exe, "volcrypt", "", "volcrypt's path in the units (default: this program)")
	return cmd
}

// inInitrd reports whether this runs in an initramfs, as systemd decides.
func inInitrd() bool {
	_, err := os.Stat("/etc/initrd-release")
	return err == nil
}

// allService is the unit that opens every line of the table in one go,
// for systems without generators.
const allService = "volcrypt.service"

// maskAllService masks allService in the generator directory dir, as
// systemd-debug-generator masks units: a link to /dev/null, which takes
// precedence over the vendor unit (an administrator's copy in
// /etc/systemd/system still wins).
func maskAllService(dir string) error {
	err := os.Symlink("/dev/null", filepath.Join(dir, allService))
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// parseTableLenient parses the table at path line by line: a malformed
// line, or a second line for a name, is reported through warn and skipped,
// and the other lines still count, as systemd-cryptsetup-generator treats
// /etc/crypttab (one typo must not take every volume's unit away at boot).
func parseTableLenient(path string, warn func(string)) ([]crypttab.Entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read crypttab: %w", err)
	}
	var entries []crypttab.Entry
	seen := map[string]int{}
	for i, line := range strings.Split(string(b), "\n") {
		n := i + 1
		es, err := crypttab.Parse(strings.NewReader(line))
		var pe *crypttab.ParseError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if err != nil {
			warn(fmt.Sprintf("%s:%d: %v; line skipped", path, n, err))
			continue
		}
		for _, e := range es {
			if prev, ok := seen[e.Name]; ok {
				warn(fmt.Sprintf("%s:%d: %s: name already used on line %d; line skipped", path, n, e.Name, prev))
				continue
			}
			seen[e.Name] = n
			e.Line = n
			entries = append(entries, e)
		}
	}
	return entries, nil
}

// writeUnits writes the units and links of entries into dir and returns
// how many units it wrote.
func writeUnits(dir string, entries []crypttab.Entry, o generatorOptions, warn func(string)) (int, error) {
	var errs []error
	n := 0
	for _, e := range entries {
		if o.initrd && !e.Options.InitrdAttach {
			continue
		}
		if e.Options.Type != "luks" {
			warn(fmt.Sprintf("%s:%d: %s: type %s is not supported (only luks), no unit", o.table, e.Line, e.Name, e.Options.Type))
			continue
		}
		if err := writeUnit(dir, e, o); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// unitFor is the unit that opens the volume called name.
func unitFor(name string) string { return "volcrypt@" + unitEscape(name) + ".service" }

func writeUnit(dir string, e crypttab.Entry, o generatorOptions) error {
	unit := unitFor(e.Name)
	eo := e.Options
	netdev := slices.Contains(eo.Ignored, "_netdev")
	target := "cryptsetup.target"
	if netdev {
		target = "remote-cryptsetup.target"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Automatically generated by volcrypt generate-units from %s line %d.\n\n", o.table, e.Line)
	fmt.Fprintf(&b, `[Unit]
Description=volcrypt: unlock encrypted volume %%I
Documentation=man:volcrypt-attach-all(8) man:crypttab(5)
SourcePath=%s
DefaultDependencies=no
IgnoreOnIsolate=true
After=cryptsetup-pre.target systemd-udevd-kernel.socket systemd-tpm2-setup-early.service tpm2.target
Before=blockdev@dev-mapper-%%i.target
Wants=blockdev@dev-mapper-%%i.target
`, specifierEscape(o.table))
	if netdev {
		b.WriteString("After=remote-fs-pre.target\n")
	}
	if !eo.InitrdAttach {
		// Opened by the initramfs, it stays open until the very end.
		b.WriteString("Conflicts=umount.target\n")
	}
	if !eo.NoFail {
		fmt.Fprintf(&b, "Before=%s\n", target)
	}
	for _, dep := range []string{e.KeyFile, eo.Header} {
		if dep != "" {
			b.WriteString(fileDependency(dep))
		}
	}
	dev := deviceNode(e.Device)
	devUnit := ""
	if strings.HasPrefix(dev, "/dev/") {
		devUnit = pathUnit(dev, ".device")
		fmt.Fprintf(&b, "BindsTo=%s\nAfter=%s\nBefore=umount.target\n", devUnit, devUnit)
	} else {
		// An image file: mounted, and loop devices available.
		fmt.Fprintf(&b, "RequiresMountsFor=%s\nRequires=systemd-tmpfiles-setup-dev.service\nAfter=systemd-tmpfiles-setup-dev.service\n", specifierEscape(dev))
	}
	fmt.Fprintf(&b, `
[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutSec=0
KeyringMode=shared
OOMScoreAdjust=500
ExecStart=%s attach-all --crypttab %s -- %s
ExecStop=%s close -- %s
`, execArg(o.exe), execArg(o.table), execArg(e.Name), execArg(o.exe), execArg(e.Name))

	if err := writeNew(filepath.Join(dir, unit), b.String()); err != nil {
		return err
	}
	if !eo.NoAuto {
		kind := "requires"
		if eo.NoFail {
			kind = "wants"
		}
		if err := link(dir, target+"."+kind, unit); err != nil {
			return err
		}
	}
	mapper := "dev-mapper-" + unitEscape(e.Name) + ".device"
	if err := link(dir, mapper+".requires", unit); err != nil {
		return err
	}
	if !eo.NoAuto && !eo.NoFail {
		// Mounts of /dev/mapper/NAME wait for the passphrase, however long.
		if err := writeNew(filepath.Join(dir, mapper+".d", "40-device-timeout.conf"), "# Automatically generated by volcrypt generate-units.\n\n[Unit]\nJobTimeoutSec=infinity\n"); err != nil {
			return err
		}
	}
	if t := deviceTimeout(eo.Ignored); t != "" && devUnit != "" {
		if err := writeNew(filepath.Join(dir, devUnit+".d", "40-device-timeout.conf"), "# Automatically generated by volcrypt generate-units.\n\n[Unit]\nJobRunningTimeoutSec="+t+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// fileDependency orders a unit after the device or mount a key file or
// header lives on.
func fileDependency(path string) string {
	node := deviceNode(path)
	if strings.HasPrefix(node, "/dev/") {
		u := pathUnit(node, ".device")
		return fmt.Sprintf("After=%s\nRequires=%s\n", u, u)
	}
	return fmt.Sprintf("RequiresMountsFor=%s\n", specifierEscape(node))
}

// timeSpan is a systemd time span such as 30, 90s, 1min30s or infinity.
var timeSpan = regexp.MustCompile(`^(infinity|([0-9]+(\.[0-9]+)?[a-zµ]*)+)$`)

// deviceTimeout returns x-systemd.device-timeout='s value, if valid.
func deviceTimeout(opts []string) string {
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, "x-systemd.device-timeout="); ok && timeSpan.MatchString(v) {
			return v
		}
	}
	return ""
}

// writeNew creates a file that must not exist yet (two lines for one unit
// are a mistake, as systemd's generators treat them).
func writeNew(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// link adds unit to dir/dep (a .wants, .requires directory) as systemd's
// generators do: a relative symbolic link to the unit in dir.
func link(dir, dep, unit string) error {
	d := filepath.Join(dir, dep)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	err := os.Symlink("../"+unit, filepath.Join(d, unit))
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// deviceNode turns a crypttab device (a path or UUID=, PARTUUID=, LABEL=,
// PARTLABEL=) into the path udev gives it.
func deviceNode(spec string) string {
	tag, value, err := crypttab.SplitDevice(spec)
	if err != nil || tag == "" {
		return spec
	}
	return "/dev/disk/by-" + strings.ToLower(tag) + "/" + udevEncode(value)
}

// udevEncode escapes a tag value as udev does in /dev/disk/by-* names:
// bytes other than ASCII letters, digits and #+-.:=@_ (and valid UTF-8
// beyond ASCII) become \xNN.
func udevEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r >= utf8.RuneSelf && r != utf8.RuneError:
			b.WriteString(s[i : i+n])
		case n == 1 && (isAlnum(s[i]) || strings.IndexByte("#+-.:=@_", s[i]) >= 0):
			b.WriteByte(s[i])
		default:
			for _, c := range []byte(s[i : i+n]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		}
		i += n
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// unitEscape escapes s for a unit name as systemd-escape does: "/" becomes
// "-", and "-", "\", a leading "." and bytes other than ASCII letters,
// digits, ":", "_" and "." become \xNN.
func unitEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case (c == '.' && i > 0) || c == ':' || c == '_' || isAlnum(c):
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, `\x%02x`, c)
		}
	}
	return b.String()
}

// pathUnit is the unit name of a path (systemd-escape --path --suffix).
func pathUnit(path, suffix string) string {
	var parts []string
	for _, p := range strings.Split(path, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "-" + suffix
	}
	return unitEscape(strings.Join(parts, "/")) + suffix
}

// specifierEscape doubles % so that systemd does not expand specifiers.
func specifierEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// execArg quotes one argument of an ExecStart= line: % and $ are doubled
// (no specifiers or variables); anything beyond a plain word goes in
// double quotes with \ and " escaped.
func execArg(s string) string {
	s = strings.ReplaceAll(specifierEscape(s), "$", "$$")
	plain := s != ""
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && strings.IndexByte("@%+=:,./_-$", s[i]) < 0 {
			plain = false
		}
	}
	if plain && s[0] != '-' {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
