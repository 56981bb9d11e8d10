package main

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/passphrase"
	"github.com/volcrypt/volcrypt/internal/progress"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

// reencryptCommands returns the commands for encrypt, decrypt, reencrypt (issue 8).
func (a *app) reencryptCommands() []*cobra.Command {
	return []*cobra.Command{a.encryptCommand(), a.decryptCommand(), a.rekeyCommand()}
}

func (a *app) encryptCommand() *cobra.Command {
	var (
		o      volume.EncryptOptions
		key    keyFlags
		kf     kdfFlags
		reduce sizeFlag
	)
	cmd := &cobra.Command{
		Use:   "encrypt [flags] (--reduce-device-size SIZE | --header FILE) DEVICE",
		Short: "Encrypt a device that holds data in place (resumable: run it again after an interruption)",
		Long: `Turn a device or image holding a file system into a LUKS2 volume without moving
the data elsewhere, in one of two ways, as cryptsetup reencrypt --encrypt does:

  --reduce-device-size SIZE  shrink the file system first by SIZE (resize2fs): the
                             data moves up by SIZE/2 to make room for the header.
  --header FILE              the header goes to FILE (created if missing; keep it
                             safe: without it the data is lost) and the data stays
                             where it is, encrypted in place.

Progress is recorded in the LUKS2 header; after an interruption (even kill -9 or a
power cut) run the same command again with the same passphrase to finish.
cryptsetup reencrypt --resume-only (after cryptsetup repair) can finish it too.`,
		Example: `  resize2fs /dev/sdb1 <size-32M> && volcrypt encrypt --reduce-device-size 32m /dev/sdb1
  volcrypt encrypt --header /root/sdb1.luks /dev/sdb1
  volcrypt encrypt --reduce-device-size 32m --key-file key.bin disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			device := args[0]
			if o.HeaderFile != "" && reduce != 0 {
				return usageError{fmt.Errorf("--header and --reduce-device-size exclude each other: with a detached header the data does not move")}
			}
			mode, err := reencryptionMode(device, o.HeaderFile)
			if err != nil {
				return err
			}
			if mode != "" && mode != header.ReencryptEncrypt {
				return fmt.Errorf("%s is in the middle of a %s: run volcrypt %s again to finish it: %w", device, mode, mode, volume.ErrNotInReencryption)
			}
			resume := mode == header.ReencryptEncrypt
			if !resume {
				if reduce == 0 && o.HeaderFile == "" {
					return usageError{fmt.Errorf("--reduce-device-size or --header is required: shrink the file system and give the space freed at the end of %s, or name a file for a detached header", device)}
				}
				if err := a.confirm(fmt.Sprintf("This will encrypt %s in place. Back up its data first.", device)); err != nil {
					return err
				}
			}
			o.KDF = kf.options()
			o.Hash = kf.hash
			o.Keyslot = key.slot
			o.ReduceDeviceSizeBytes = int64(reduce)
			o.Logger = a.log
			pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", device), !resume)
			if err != nil {
				return err
			}
			defer pass.Wipe()
			p := a.progressTask("encrypt", device)
			o.Progress = p.update
			v, err := volume.Encrypt(cmd.Context(), device, pass.Bytes(), o)
			p.done(err)
			if err != nil {
				return err
			}
			defer v.Close()
			if a.json {
				return a.printJSON(map[string]any{"device": device, "uuid": v.Header.UUID, "resumed": resume})
			}
			return nil
		},
	}
	fs := cmd.Flags()
	key.register(fs)
	kf.register(fs)
	fs.Var(&reduce, "reduce-device-size", "space at the end of the device the file system does not use; half of it makes room for the header")
	registerNewVolumeFlags(fs, &o.FormatOptions)
	fs.IntVar(&o.SectorSize, "sector-size", 512, "encryption sector size in bytes, 512–4096")
	fs.StringVar(&o.HeaderFile, "header", "", "detached header file: the data stays in place")
	a.addProgressFlag(cmd)
	a.addJSONFlag(cmd)
	return cmd
}

// reencryptionMode returns the reencryption in progress recorded in the
// header file, when one is named and exists, or on the device.
func reencryptionMode(device, headerFile string) (string, error) {
	if headerFile != "" {
		if _, err := os.Stat(headerFile); errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return volume.ReencryptionMode(headerFile)
	}
	return volume.ReencryptionMode(device)
}

func (a *app) decryptCommand() *cobra.Command {
	var (
		key keyFlags
		hdr string
	)
	cmd := &cobra.Command{
		Use:   "decrypt --header FILE DEVICE",
		Short: "Decrypt a volume in place, leaving its plain data on the device (resumable)",
		Long: `Turn a LUKS2 volume back into its plain data, in place.

A volume with its header on the device: the data moves to the start of the
device where the header was. While it runs the header lives in FILE, which must
not exist yet and is removed at the end; cryptsetup reencrypt --resume-only
--header FILE can finish it too once the first chunk is done.

A volume with a detached header (FILE): the data is decrypted where it is, and
FILE is left holding no key slot (as cryptsetup leaves it); delete it afterwards.
cryptsetup reencrypt --resume-only --header FILE can finish an interrupted run.

After an interruption (even kill -9 or a power cut) run the same command again,
with the same FILE, to finish.`,
		Example: `  volcrypt decrypt --header /root/sdb1-header.img /dev/sdb1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			device := args[0]
			if hdr == "" {
				return usageError{fmt.Errorf("--header FILE is required: the header moves there while the data moves over its place, or it is the volume's detached header")}
			}
			detached, err := volume.IsDetachedHeader(hdr)
			if err != nil {
				return err
			}
			if err := a.confirm(fmt.Sprintf("This will decrypt %s in place and remove its LUKS key slots.", device)); err != nil {
				return err
			}
			pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", device), false)
			if err != nil {
				return err
			}
			defer pass.Wipe()
			p := a.progressTask("decrypt", device)
			err = volume.Decrypt(cmd.Context(), device, pass.Bytes(), volume.DecryptOptions{HeaderFile: hdr, Progress: p.update})
			p.done(err)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"device": device, "decrypted": true})
			}
			if detached && !a.progressJSON {
				fmt.Fprintf(a.stderr, "%s is plain now; the header file %s holds no key any more and can be deleted.\n", device, hdr)
			}
			return nil
		},
	}
	key.register(cmd.Flags())
	cmd.Flags().StringVar(&hdr, "header", "", "the volume's detached header, or a new file to hold the header while the decryption runs")
	a.addProgressFlag(cmd)
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) rekeyCommand() *cobra.Command {
	var (
		o        volume.ReencryptOptions
		key      keyFlags
		tf       tpmFlags
		keepKeys []string
		force    bool
	)
	cmd := &cobra.Command{
		Use:   "reencrypt [flags] DEVICE",
		Short: "Give a volume a new volume key and rewrite its data in place (resumable)",
		Long: `Rewrite all data of a LUKS2 volume with a new volume key (and optionally another
cipher, key size or sector size), in place. Every key slot to keep is re-wrapped
with the new key under its own passphrase and KDF: the slot your passphrase opens,
each slot named by --keep-key-file SLOT=FILE, each TPM2 enrollment (systemd-tpm2
token) whose secret the TPM unseals, and, on a terminal, each other slot whose
passphrase or recovery password you type when asked (an empty answer removes it).
Tokens follow their slots.

A TPM2 slot is kept only when the TPM can unseal it (--tpm2-device, as for open):
the new slot takes the same unsealed secret, so the sealed object and its PCR
policy stay as they are. When the TPM cannot unseal it (no TPM, changed PCRs),
reencrypt refuses, because the machine would stop unlocking unattended; --force
removes the slot instead, and you re-enroll it afterwards with volcrypt enroll tpm2.
Slots whose passphrase nobody gives are removed at the end, after confirmation.

After an interruption (even kill -9 or a power cut) run the command again with a
passphrase of a kept slot; cryptsetup reencrypt --resume-only (after cryptsetup
repair) can finish it too.`,
		Example: `  volcrypt reencrypt /dev/sdb1
  volcrypt reencrypt --tpm2-device auto --key-file k0 -q /dev/sda3
  volcrypt reencrypt --key-file k0 --keep-key-file 1=k1 -q disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			device := args[0]
			mode, err := reencryptionMode(device, o.HeaderFile)
			if err != nil {
				return err
			}
			if mode != "" && mode != header.ReencryptRekey {
				return fmt.Errorf("%s is in the middle of a %s: run volcrypt %s again to finish it: %w", device, mode, mode, volume.ErrNotInReencryption)
			}
			resume := mode == header.ReencryptRekey
			pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", device), false)
			if err != nil {
				return err
			}
			defer pass.Wipe()
			if !resume {
				err := a.keepSlots(device, pass.Bytes(), keepSlotsFlags{keys: keepKeys, tpm: tf, force: force, header: o.HeaderFile}, &o)
				defer func() {
					for _, b := range o.Keep {
						secret.Wipe(b)
					}
				}()
				if err != nil {
					return err
				}
			}
			p := a.progressTask("reencrypt", device)
			o.Progress = p.update
			v, err := volume.Reencrypt(cmd.Context(), device, pass.Bytes(), o)
			p.done(err)
			if err != nil {
				return err
			}
			defer v.Close()
			if a.json {
				return a.printJSON(map[string]any{"device": device, "resumed": resume, "keyslots": v.Header.Meta.SegmentKeyslots(0)})
			}
			return nil
		},
	}
	fs := cmd.Flags()
	key.register(fs)
	tf.register(fs)
	fs.StringArrayVar(&keepKeys, "keep-key-file", nil, "SLOT=FILE: also keep key slot SLOT, whose passphrase (or recovery password) is in FILE (repeatable)")
	fs.BoolVar(&force, "force", false, "remove TPM2 slots the TPM cannot unseal instead of refusing (re-enroll them afterwards)")
	fs.StringVarP(&o.Cipher, "cipher", "c", "", "new cipher (default: the current one)")
	fs.IntVarP(&o.KeySizeBits, "key-size", "s", 0, "new volume key size in bits (default: the current one)")
	fs.IntVar(&o.SectorSize, "sector-size", 0, "new encryption sector size (default: the current one)")
	fs.Var((*sizeFlag)(&o.HotzoneBytes), "hotzone-size", "data rewritten per step (default 4m)")
	fs.StringVar(&o.HeaderFile, "header", "", "the volume's detached header")
	a.addProgressFlag(cmd)
	a.addJSONFlag(cmd)
	return cmd
}

// keepSlotsFlags say where the passphrases of the slots to keep come from.
type keepSlotsFlags struct {
	keys   []string // SLOT=FILE
	tpm    tpmFlags
	force  bool // drop TPM2 slots the TPM cannot unseal
	header string
}

// keepSlots collects the passphrases of the key slots to keep besides the
// one pass opens: from --keep-key-file, from the TPM for TPM2 slots, then
// by asking on a terminal. The slots left out are named, and removing
// them needs confirmation; a TPM2 slot left out needs --force.
func (a *app) keepSlots(device string, pass []byte, f keepSlotsFlags, o *volume.ReencryptOptions) error {
	v, err := a.load(device, f.header, true)
	if err != nil {
		return err
	}
	defer v.Close()
	key, opened, err := v.Unlock(pass, volume.UnlockOptions{Keyslot: -1})
	if err != nil {
		return err
	}
	key.Wipe()
	recoverySlots := map[int]bool{}
	for _, t := range v.Header.Tokens() {
		if t.Type == volume.TokenRecovery {
			for _, s := range t.Keyslots {
				recoverySlots[s] = true
			}
		}
	}
	o.Keep = map[int][]byte{}
	for _, kv := range f.keys {
		slotStr, file, ok := strings.Cut(kv, "=")
		slot, err := strconv.Atoi(slotStr)
		if !ok || err != nil {
			return usageError{fmt.Errorf("--keep-key-file %q: want SLOT=FILE", kv)}
		}
		b, err := passphrase.KeyFile{Path: file}.Read(a.stdin)
		if err != nil {
			return err
		}
		if recoverySlots[slot] {
			trimmed := slices.Clone(bytes.TrimSpace(b))
			secret.Wipe(b)
			// normalizeRecovery wipes trimmed when it returns another slice.
			if b, err = normalizeRecovery(trimmed); err != nil {
				return fmt.Errorf("--keep-key-file %s: %w", kv, err)
			}
		}
		o.Keep[slot] = b
	}
	tpmSlots := v.TPM2Keyslots()
	var tpmDropped []int
	if slices.ContainsFunc(tpmSlots, func(s int) bool { _, ok := o.Keep[s]; return !ok && s != opened }) {
		if err := a.keepTPM2Slots(v, device, f, opened, o, &tpmDropped); err != nil {
			return err
		}
	}
	var dropped []string
	for _, slot := range v.Header.Meta.SegmentKeyslots(0) {
		if _, ok := o.Keep[slot]; ok || slot == opened {
			continue
		}
		if slices.Contains(tpmSlots, slot) {
			if slices.Contains(tpmDropped, slot) {
				dropped = append(dropped, strconv.Itoa(slot))
			}
			continue
		}
		if a.prompt.IsTerminal() {
			kept, err := a.askKeep(slot, recoverySlots[slot])
			if err != nil {
				return err
			}
			if kept != nil {
				o.Keep[slot] = kept
				continue
			}
		}
		dropped = append(dropped, strconv.Itoa(slot))
	}
	if len(dropped) > 0 {
		return a.confirm(fmt.Sprintf("Key slot(s) %s of %s will be removed: no passphrase was given for them.", strings.Join(dropped, ", "), device))
	}
	return nil
}

// askKeep asks on the terminal for the passphrase (or recovery password)
// of a key slot to keep, again after a mistyped recovery password; nil
// means an empty answer: remove the slot.
func (a *app) askKeep(slot int, recovery bool) ([]byte, error) {
	what := "passphrase"
	if recovery {
		what = "recovery password"
	}
	for {
		b, err := a.passphrase(keyFlags{}, fmt.Sprintf("Enter %s for key slot %d to keep it (empty: remove it): ", what, slot), false)
		switch {
		case errors.Is(err, errRecoveryTypo):
			fmt.Fprintf(a.stderr, "%v; try again\n", err)
			continue
		case errors.Is(err, passphrase.ErrEmpty):
			return nil, nil
		case err != nil:
			return nil, err
		}
		defer b.Wipe()
		if b.Len() == 0 {
			return nil, nil
		}
		return slices.Clone(b.Bytes()), nil
	}
}

// tpmSlotUnkeptError means that reencrypt refuses to run because the TPM
// cannot unseal a TPM2 key slot to keep (and --force was not given).
type tpmSlotUnkeptError struct {
	slot int
	err  error
}

func (e *tpmSlotUnkeptError) Error() string {
	return fmt.Sprintf("key slot %d is a TPM2 enrollment the TPM cannot unseal, so it cannot be kept (give --tpm2-device, or --force to remove it and re-enroll afterwards): %v", e.slot, e.err)
}

func (e *tpmSlotUnkeptError) Unwrap() error { return e.err }

// keepTPM2Slots adds the passphrases the TPM unseals for the volume's TPM2
// slots to o.Keep. A slot it cannot unseal makes reencrypt refuse, or,
// with --force, is added to dropped with a warning saying how to enroll
// it again.
func (a *app) keepTPM2Slots(v *volume.Volume, device string, f keepSlotsFlags, opened int, o *volume.ReencryptOptions, dropped *[]int) error {
	keep := v.TPM2Passphrases(volume.TPM2UnlockOptions{
		Device: f.tpm.device,
		PIN:    func() ([]byte, error) { return a.pin(f.tpm, false) },
	})
	for s, p := range keep.Passphrases {
		if _, ok := o.Keep[s]; ok || s == opened {
			secret.Wipe(p)
			continue
		}
		o.Keep[s] = p
	}
	var errs []error
	for _, s := range slices.Sorted(maps.Keys(keep.Failed)) {
		if _, ok := o.Keep[s]; ok || s == opened {
			continue
		}
		err := keep.Failed[s]
		if !f.force {
			errs = append(errs, &tpmSlotUnkeptError{slot: s, err: err})
			continue
		}
		fmt.Fprintf(a.stderr, "warning: TPM2 key slot %d will be removed (%v); afterwards enroll the TPM again: volcrypt enroll tpm2 --tpm2-device auto %s\n", s, err, device)
		*dropped = append(*dropped, s)
	}
	return errors.Join(errs...)
}

// progressTask reports an in-place operation's progress with the
// progress package; the task starts at the first report, when the total
// is known.
type progressTask struct {
	r          *progress.Reporter
	what, item string
	t          *progress.Task
}

func (a *app) progressTask(what, item string) *progressTask {
	return &progressTask{r: a.progress(), what: what, item: item}
}

func (p *progressTask) update(pr volume.Progress) {
	if p.t == nil {
		p.t = p.r.Start(p.what, p.item, pr.TotalBytes)
	}
	p.t.Set(pr.DoneBytes)
}

// done ends the task; a failure before the first report still gives a
// start and a failed line.
func (p *progressTask) done(err error) {
	if p.t == nil {
		if err == nil {
			return
		}
		p.t = p.r.Start(p.what, p.item, -1)
	}
	p.t.Done(err)
}
