package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/volcrypt/volcrypt/crypttab"
	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/dm"
	"github.com/volcrypt/volcrypt/internal/passphrase"
	"github.com/volcrypt/volcrypt/internal/progress"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/tpm"
	"github.com/volcrypt/volcrypt/volume"
)

// bootCommands returns attach-all (crypttab at boot), the hidden systemd
// generator and the hidden man page generator.
func (a *app) bootCommands() []*cobra.Command {
	return []*cobra.Command{a.attachAllCommand(), a.generateUnitsCommand(), a.manCommand()}
}

// attachResult is one crypttab line's outcome, as attach-all --json prints
// it. Status is attached, tested, active (already mapped), skipped or
// failed; Method is how the key came: tpm2, key-file or passphrase.
type attachResult struct {
	Name    string `json:"name"`
	Device  string `json:"device"`
	Path    string `json:"path,omitempty"`
	Status  string `json:"status"`
	Method  string `json:"method,omitempty"`
	Keyslot *int   `json:"keyslot,omitempty"`
	NoFail  bool   `json:"nofail,omitempty"`
	// TPM2Error says why the TPM did not unlock when it was tried.
	TPM2Error string `json:"tpm2_error,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Error     string `json:"error,omitempty"`
	Hint      string `json:"hint,omitempty"`

	err error
}

// attachSummary is attach-all --json's document.
type attachSummary struct {
	Volumes  []attachResult `json:"volumes"`
	Attached int            `json:"attached"`
	Failed   int            `json:"failed"`
}

// errHeadless means a headless line has no TPM enrollment or key file.
var errHeadless = errors.New("headless: no TPM2 enrollment or key file to unlock with, and no prompt allowed")

// attachOptions are attach-all's flags.
type attachOptions struct {
	table        string
	test         bool
	initrd       bool
	tpmDevice    string
	progressJSON bool
}

func (a *app) attachAllCommand() *cobra.Command {
	var o attachOptions
	cmd := &cobra.Command{
		Use:   "attach-all [flags] [NAME...]",
		Short: "Open the volumes listed in /etc/crypttab: TPM first, then the key file, then a prompt",
		Long: `Open each volume of a crypttab (systemd's format, crypttab(5)) as /dev/mapper/NAME, skipping
names already mapped and noauto lines (unless named).

For each volume the key comes from, in order:

1. the volume's TPM2 enrollments (systemd-tpm2 tokens), when a TPM is present or tpm2-device= is
   set; tpm2-pin asks for the PIN;
2. the line's key file (keyfile-offset=, keyfile-size=, key-slot=);
3. a prompt for a passphrase or the recovery password (tries=, default 3): through
   systemd-ask-password when run by a systemd unit, or under systemd without a terminal (query Id
   cryptsetup:DEVICE, so plymouth, the console agent or clevis answer; on the first try the
   passphrases cached in the kernel keyring under "cryptsetup" are tried without asking); else on the
   terminal or as a line of standard input, which always wins when it is a pipe or a file. headless
   never prompts.

Options acted on: discard, read-only/readonly, same-cpu-crypt, submit-from-crypt-cpus,
no-read-workqueue, no-write-workqueue, header=, nofail (a failure is reported but does not fail the
run), noauto, x-initrd.attach (with --initrd only these lines). Others (timeout=, _netdev,
x-systemd.*) are left to systemd. A malformed line fails the run before anything opens, unless
NAMEs are given: then other lines' mistakes are only warned about.

Exit status: 0 when every line without nofail is attached (or already active), else the first
failure's code. --json prints {"volumes":[{"name","device","path","status","method","keyslot",
"nofail","tpm2_error","reason","error","hint"}],"attached":N,"failed":N}; status is attached,
tested, active, skipped or failed, method is tpm2, key-file or passphrase.`,
		Example: `  volcrypt attach-all
  volcrypt attach-all --crypttab /etc/crypttab.initramfs --initrd --json
  volcrypt attach-all --test data          # check that the key of "data" opens, map nothing
  # /etc/crypttab:
  #   root  UUID=7d3c…  none              tpm2-device=auto,headless,discard,x-initrd.attach
  #   data  /dev/sdb1   /etc/keys/data.key  nofail`,
		RunE: func(cmd *cobra.Command, args []string) error { return a.attachAll(o, args) },
	}
	fs := cmd.Flags()
	fs.StringVar(&o.table, "crypttab", crypttab.DefaultPath, "the crypttab to read")
	fs.BoolVar(&o.test, "test", false, "only check that each volume unlocks; map nothing")
	fs.BoolVar(&o.initrd, "initrd", false, "only the x-initrd.attach lines (what an initramfs opens before root)")
	fs.StringVar(&o.tpmDevice, "tpm2-device", "", `TPM for lines with tpm2-device=auto or none: a device path or swtpm:host=H,port=P`)
	progress.AddFlag(fs, &o.progressJSON)
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) attachAll(o attachOptions, names []string) error {
	var entries []crypttab.Entry
	var err error
	if len(names) > 0 {
		// The named lines only (as each generated unit runs it): another
		// line's typo is warned about, not fatal, as in the generator.
		entries, err = parseTableLenient(o.table, func(msg string) { fmt.Fprintf(a.stderr, "warning: %s\n", msg) })
	} else {
		entries, err = crypttab.ParseFile(o.table)
	}
	if err != nil {
		return usageError{err}
	}
	for _, n := range names {
		if !slices.ContainsFunc(entries, func(e crypttab.Entry) bool { return e.Name == n }) {
			return usageError{fmt.Errorf("%s: no line for %q", o.table, n)}
		}
	}
	// Only JSON lines: a spinner on the terminal would garble the prompts.
	var pr *progress.Reporter
	if o.progressJSON {
		pr = progress.New(a.stderr, true)
	}
	var sum attachSummary
	var firstErr error
	for _, e := range entries {
		r := attachResult{Name: e.Name, Device: e.Device, NoFail: e.Options.NoFail}
		switch {
		case len(names) > 0 && !slices.Contains(names, e.Name):
			continue
		case len(names) == 0 && e.Options.NoAuto:
			r.Status, r.Reason = "skipped", "noauto"
		case len(names) == 0 && o.initrd && !e.Options.InitrdAttach:
			r.Status, r.Reason = "skipped", "not x-initrd.attach"
		default:
			task := pr.Start("attach", e.Name, -1)
			a.attachOne(e, o, &r)
			task.Done(r.err)
		}
		if r.err != nil {
			sum.Failed++
			_, r.Hint = exitCode(r.err)
			r.Error = oneLine(r.err)
			if !e.Options.NoFail && firstErr == nil {
				firstErr = fmt.Errorf("%s: %w", e.Name, r.err)
			}
			if !a.json {
				fmt.Fprintf(a.stderr, "%s: failed: %s\n", e.Name, r.Error)
				if r.NoFail {
					fmt.Fprintf(a.stderr, "%s: nofail: going on\n", e.Name)
				}
			}
		} else if r.Status == "attached" || r.Status == "tested" {
			sum.Attached++
		}
		if !a.json && r.err == nil {
			a.printAttach(r)
		}
		sum.Volumes = append(sum.Volumes, r)
	}
	if a.json {
		if err := a.printJSON(sum); err != nil {
			return err
		}
	}
	return firstErr
}

func (a *app) printAttach(r attachResult) {
	switch r.Status {
	case "skipped":
		fmt.Fprintf(a.stderr, "%s: skipped (%s)\n", r.Name, r.Reason)
	case "active":
		fmt.Fprintf(a.stderr, "%s: already active\n", r.Name)
	case "tested":
		fmt.Fprintf(a.stderr, "%s: %s unlocks with %s (key slot %d)\n", r.Name, r.Path, r.Method, *r.Keyslot)
	case "attached":
		fmt.Fprintf(a.stderr, "%s: %s attached as /dev/mapper/%s with %s (key slot %d)\n", r.Name, r.Path, r.Name, r.Method, *r.Keyslot)
	}
}

// attachOne opens one line's volume, filling r.
func (a *app) attachOne(e crypttab.Entry, o attachOptions, r *attachResult) {
	r.Status = "failed"
	if e.Options.Type != "luks" {
		r.err = usageError{fmt.Errorf("type %s is not supported (only luks)", e.Options.Type)}
		return
	}
	for _, opt := range e.Options.Ignored {
		a.log.Debug("crypttab option not used by volcrypt", "name", e.Name, "option", opt)
	}
	if !o.test {
		if _, err := volume.MappingStatus(e.Name); err == nil {
			r.Status = "active"
			return
		}
	}
	path, err := crypttab.DefaultResolver.Find(e.Device)
	if err != nil {
		if errors.Is(err, crypttab.ErrDeviceNotFound) {
			err = fmt.Errorf("%s: %w", e.Device, volume.ErrDeviceNotFound)
		}
		r.err = err
		return
	}
	r.Path = path
	v, err := a.load(path, e.Options.Header, o.test || e.Options.ReadOnly)
	if err != nil {
		r.err = err
		return
	}
	defer v.Close()
	vk, slot, method, err := a.attachUnlock(v, e, o, r)
	if err != nil {
		r.err = err
		return
	}
	defer vk.Wipe()
	r.Method, r.Keyslot = method, &slot
	if o.test {
		r.Status = "tested"
		return
	}
	eo := e.Options
	if err := v.Activate(e.Name, vk, volume.ActivateOptions{ReadOnly: eo.ReadOnly, AllowDiscards: eo.Discard,
		SameCPUCrypt: eo.SameCPUCrypt, SubmitFromCryptCPUs: eo.SubmitFromCryptCPUs,
		NoReadWorkqueue: eo.NoReadWorkqueue, NoWriteWorkqueue: eo.NoWriteWorkqueue}); err != nil {
		if _, serr := volume.MappingStatus(e.Name); errors.Is(err, dm.ErrExists) && serr == nil {
			// Another attach-all (run by hand, or a unit) opened it
			// meanwhile: the goal is met.
			r.Status = "active"
			return
		}
		r.err = err
		return
	}
	r.Status = "attached"
}

// hasTPM2Token reports whether the volume has a TPM enrollment.
func hasTPM2Token(h *header.Header) bool {
	return slices.ContainsFunc(h.Tokens(), func(t header.Token) bool { return t.Type == volume.TokenTPM2 })
}

// attachUnlock gets a line's volume key: TPM, key file, prompt.
func (a *app) attachUnlock(v *volume.Volume, e crypttab.Entry, o attachOptions, r *attachResult) (*secret.Buffer, int, string, error) {
	eo := e.Options
	var errs []error
	dev := eo.TPM2Device
	if o.tpmDevice != "" && (dev == "" || dev == "auto") {
		dev = o.tpmDevice
	}
	if hasTPM2Token(v.Header) && (dev != "" || (tpmFlags{}).reachable()) {
		vk, slot, err := v.UnlockTPM2(volume.TPM2UnlockOptions{Device: dev, PIN: func() ([]byte, error) {
			if eo.Headless {
				return nil, fmt.Errorf("%w: headless: no one to ask", tpm.ErrPINRequired)
			}
			prompt := fmt.Sprintf("Enter TPM2 PIN for %s: ", e.Name)
			if ask, ok := a.askThroughSystemd(); ok {
				// No cached PIN: a wrong one costs a TPM lockout try.
				pins, err := systemdAskPassword(ask, a.stdin, "cryptsetup:"+r.Path, "tpm2-pin", false, prompt)
				if err != nil {
					return nil, err
				}
				defer wipeAll(pins[1:])
				return pins[0], nil
			}
			return a.prompt.Ask(prompt, false)
		}})
		if err == nil {
			return vk, slot, "tpm2", nil
		}
		r.TPM2Error = oneLine(err)
		next := "asking for the recovery password or a passphrase"
		switch {
		case e.KeyFile != "":
			next = "trying the key file"
		case eo.Headless:
			next = "headless: not asking for a passphrase"
		}
		fmt.Fprintf(a.stderr, "%s: TPM2 unlock failed: %s; %s\n", e.Name, r.TPM2Error, next)
		errs = append(errs, err)
	}
	if e.KeyFile != "" {
		b, err := passphrase.KeyFile{Path: e.KeyFile, Offset: eo.KeyfileOffset, Size: eo.KeyfileSize}.Read(a.stdin)
		if err == nil {
			var vk *secret.Buffer
			var slot int
			vk, slot, err = v.Unlock(b, volume.UnlockOptions{Keyslot: eo.KeySlot})
			secret.Wipe(b)
			if err == nil {
				return vk, slot, "key-file", nil
			}
		}
		err = fmt.Errorf("key file %s: %w", e.KeyFile, err)
		if !eo.Headless {
			fmt.Fprintf(a.stderr, "%s: %s; asking for a passphrase\n", e.Name, oneLine(err))
		}
		errs = append(errs, err)
	}
	if eo.Headless {
		if len(errs) == 0 {
			errs = append(errs, errHeadless)
		}
		return nil, -1, "", errors.Join(errs...)
	}
	for try := 1; eo.Tries == 0 || try <= eo.Tries; try++ {
		passes, typo, err := a.askPassphrase(e, r.Path, try == 1)
		if err != nil {
			if errors.Is(err, passphrase.ErrNoTerminal) && len(errs) > 0 {
				// Nobody to ask: the TPM's or key file's reason is the news.
				return nil, -1, "", errors.Join(errs...)
			}
			return nil, -1, "", err
		}
		var vk *secret.Buffer
		var slot int
		if len(passes) > 0 {
			if vk, slot, err = unlockAny(v, passes, eo.KeySlot); err == nil {
				return vk, slot, "passphrase", nil
			}
		} else {
			// Only mistyped recovery passwords: a failed try, with the
			// group to check (not the end of the boot).
			err = typo
		}
		if !(errors.Is(err, header.ErrWrongKey) || errors.Is(err, errRecoveryTypo)) || try == eo.Tries {
			return nil, -1, "", err
		}
		fmt.Fprintf(a.stderr, "%s: %s; try again\n", e.Name, oneLine(err))
	}
	return nil, -1, "", header.ErrWrongKey
}

// unlockAny tries each passphrase in turn (systemd-ask-password may give
// several cached ones) and wipes them all.
func unlockAny(v *volume.Volume, passes [][]byte, keyslot int) (*secret.Buffer, int, error) {
	defer wipeAll(passes)
	err := error(header.ErrWrongKey)
	for _, p := range passes {
		var vk *secret.Buffer
		var slot int
		if vk, slot, err = v.Unlock(p, volume.UnlockOptions{Keyslot: keyslot}); err == nil || !errors.Is(err, header.ErrWrongKey) {
			return vk, slot, err
		}
	}
	return nil, -1, err
}

func wipeAll(bs [][]byte) {
	for _, b := range bs {
		secret.Wipe(b)
	}
}

// askPassphrase asks for a line's passphrase: through systemd-ask-password
// where askThroughSystemd says so, else on the terminal or as a line of
// standard input. On the first try, systemd-ask-password may answer with
// the passphrases cached in the kernel keyring (key "cryptsetup", shared
// with systemd-cryptsetup) instead of asking. Recovery passwords are
// normalized; answers that look like one but fail its check are left out,
// the last such error returned as typo (errRecoveryTypo, naming the group
// to check): a typed typo is a failed try, and a cached entry that merely
// looks like a recovery password (another volume's passphrase) must not
// stop the others from being tried.
func (a *app) askPassphrase(e crypttab.Entry, path string, first bool) (passes [][]byte, typo, err error) {
	prompt := fmt.Sprintf("Please enter passphrase or recovery password for disk %s (%s): ", e.Name, path)
	var bs [][]byte
	if ask, ok := a.askThroughSystemd(); ok {
		if bs, err = systemdAskPassword(ask, a.stdin, "cryptsetup:"+path, "cryptsetup", first, prompt); err != nil {
			return nil, nil, err
		}
	} else {
		b, err := a.prompt.Ask(prompt, false)
		if err != nil {
			return nil, nil, err
		}
		bs = [][]byte{b}
	}
	for _, b := range bs {
		n, err := normalizeRecovery(b)
		switch {
		case errors.Is(err, errRecoveryTypo):
			typo = err
		case err != nil:
			wipeAll(bs)
			wipeAll(passes)
			return nil, nil, err
		default:
			passes = append(passes, n)
		}
	}
	return passes, typo, nil
}

// askThroughSystemd says whether prompts go through systemd-ask-password
// (and where it is): when it is installed and this runs as a systemd unit
// ($INVOCATION_ID), or systemd runs the machine and standard input is no
// terminal (a service's /dev/null). A pipe or file on standard input always
// wins: a script types the answer.
func (a *app) askThroughSystemd() (string, bool) {
	bin, err := exec.LookPath("systemd-ask-password")
	if err != nil || stdinFeeds(a.stdin) {
		return "", false
	}
	if os.Getenv("INVOCATION_ID") != "" {
		return bin, true
	}
	return bin, !a.prompt.IsTerminal() && systemdRunning()
}

// stdinFeeds reports whether f is a pipe, socket or regular file, which
// a script may write answers into.
func stdinFeeds(f *os.File) bool {
	if f == nil {
		return false
	}
	st, err := f.Stat()
	if err != nil {
		return false
	}
	return st.Mode().IsRegular() || st.Mode()&(os.ModeNamedPipe|os.ModeSocket) != 0
}

// systemdRunning reports whether systemd is PID 1 (sd_booted's test).
func systemdRunning() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// systemdAskPassword asks through systemd's password agents (plymouth,
// the console, systemd-tty-ask-password-agent, clevis) or on the terminal
// it has; the answers come on its standard output, never in argv or the
// environment. It asks on stdin if that is a terminal, else through the
// agents. id names the query for agents ("cryptsetup:DEVICE", as
// systemd-cryptsetup's); the answer is added to the kernel keyring under
// keyname for 2.5 minutes; with acceptCached, the passphrases already
// there are returned, all of them, without asking.
func systemdAskPassword(bin string, stdin *os.File, id, keyname string, acceptCached bool, prompt string) ([][]byte, error) {
	args := []string{"--id=" + id, "--keyname=" + keyname, "--icon=drive-harddisk", "--timeout=0"}
	if acceptCached {
		args = append(args, "--accept-cached", "--multiple")
	}
	cmd := exec.Command(bin, append(args, "--", strings.TrimSuffix(prompt, " "))...)
	var out, errb bytes.Buffer
	out.Grow(4096) // no reallocation leaving copies of the answer behind
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	b := out.Bytes()
	defer secret.Wipe(b)
	if err != nil {
		return nil, fmt.Errorf("systemd-ask-password: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	var bs [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) > 0 {
			bs = append(bs, bytes.Clone(line))
		}
	}
	if len(bs) == 0 {
		return nil, passphrase.ErrEmpty
	}
	return bs, nil
}

// manCommand writes man pages for every command (volcrypt.1,
// volcrypt-open.1, …) from the cobra tree; scripts/package calls it.
func (a *app) manCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "gen-docs --dir DIR",
		Short:  "Write man pages for every command into DIR",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			hdr := &doc.GenManHeader{Section: "8", Source: "volcrypt", Manual: "volcrypt manual"}
			// Reproducible pages: the date of the sources, not of the build.
			if sec, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
				d := time.Unix(sec, 0).UTC()
				hdr.Date = &d
			}
			return doc.GenManTree(root, hdr, dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "man", "directory for the pages")
	return cmd
}
