package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/passphrase"
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
		mdSize sizeFlag
		ksSize sizeFlag
		hdr    string
	)
	cmd := &cobra.Command{
		Use:   "encrypt [flags] --reduce-device-size SIZE DEVICE",
		Short: "Encrypt a device that holds data in place (resumable: run it again after an interruption)",
		Long: `Turn a device or image holding a file system into a LUKS2 volume without moving
the data elsewhere. Shrink the file system first by SIZE (resize2fs): the data
moves up by SIZE/2 to make room for the header, exactly as with
cryptsetup reencrypt --encrypt --reduce-device-size. Progress is recorded in
the LUKS2 header; after an interruption (even kill -9 or a power cut) run the
same command again with the same passphrase to finish.`,
		Example: `  resize2fs /dev/sdb1 <size-32M> && volcrypt encrypt --reduce-device-size 32m /dev/sdb1
  volcrypt encrypt --reduce-device-size 32m --key-file key.bin disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			device := args[0]
			if hdr != "" {
				return usageError{fmt.Errorf("--header: in-place encryption with a detached header is not implemented yet")}
			}
			mode, err := volume.ReencryptionMode(device)
			if err != nil {
				return err
			}
			resume := mode == header.ReencryptEncrypt
			if !resume {
				if reduce == 0 {
					return usageError{fmt.Errorf("--reduce-device-size is required: shrink the file system and give the space freed at the end of %s", device)}
				}
				if err := a.confirm(fmt.Sprintf("This will encrypt %s in place. Back up its data first.", device)); err != nil {
					return err
				}
			}
			o.KDF = kf.options()
			o.Hash = kf.hash
			o.Keyslot = key.slot
			o.MetadataSizeBytes = int64(mdSize)
			o.KeyslotsSizeBytes = int64(ksSize)
			o.ReduceDeviceSizeBytes = int64(reduce)
			o.Logger = a.log
			o.Progress = a.progressLine("encrypt")
			pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", device), !resume)
			if err != nil {
				return err
			}
			defer pass.Wipe()
			v, err := volume.Encrypt(cmd.Context(), device, pass.Bytes(), o)
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
	fs.StringVarP(&o.Cipher, "cipher", "c", "aes-xts-plain64", "cipher specification of the data")
	fs.IntVarP(&o.KeySizeBits, "key-size", "s", 512, "volume key size in bits")
	fs.IntVar(&o.SectorSize, "sector-size", 512, "encryption sector size in bytes, 512–4096")
	fs.StringVar(&o.Label, "label", "", "label of the volume")
	fs.StringVar(&o.Subsystem, "subsystem", "", "subsystem label of the volume")
	fs.StringVar(&o.UUID, "uuid", "", "UUID of the volume (random by default)")
	fs.Var(&mdSize, "luks2-metadata-size", "size of each header copy: 16k, 32k, … 4m")
	fs.Var(&ksSize, "luks2-keyslots-size", "size of the key-slot area")
	fs.StringVar(&hdr, "header", "", "detached header file (not implemented yet)")
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) decryptCommand() *cobra.Command {
	var (
		key keyFlags
		hdr string
	)
	cmd := &cobra.Command{
		Use:   "decrypt --header FILE DEVICE",
		Short: "Decrypt a volume in place, leaving its plain data at the start of the device (resumable)",
		Long: `Turn a LUKS2 volume back into its plain data, moved to the start of the device
where the header was. While it runs the header lives in FILE, which must not
exist yet and is removed at the end. After an interruption (even kill -9 or a
power cut) run the same command again, with the same FILE, to finish;
cryptsetup reencrypt --resume-only --header FILE can finish it too once the
first chunk is done.`,
		Example: `  volcrypt decrypt --header /root/sdb1-header.img /dev/sdb1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			device := args[0]
			if hdr == "" {
				return usageError{fmt.Errorf("--header FILE is required: the header moves there while the data moves over its place")}
			}
			if err := a.confirm(fmt.Sprintf("This will decrypt %s in place and remove its LUKS header.", device)); err != nil {
				return err
			}
			pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", device), false)
			if err != nil {
				return err
			}
			defer pass.Wipe()
			err = volume.Decrypt(cmd.Context(), device, pass.Bytes(), volume.DecryptOptions{HeaderFile: hdr, Progress: a.progressLine("decrypt")})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"device": device, "decrypted": true})
			}
			return nil
		},
	}
	key.register(cmd.Flags())
	cmd.Flags().StringVar(&hdr, "header", "", "file that holds the header while the decryption runs")
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) rekeyCommand() *cobra.Command {
	var (
		o        volume.ReencryptOptions
		key      keyFlags
		keepKeys []string
	)
	cmd := &cobra.Command{
		Use:   "reencrypt [flags] DEVICE",
		Short: "Give a volume a new volume key and rewrite its data in place (resumable)",
		Long: `Rewrite all data of a LUKS2 volume with a new volume key (and optionally another
cipher, key size or sector size), in place. Every key slot to keep is re-wrapped
with the new key under its own passphrase and KDF: the slot your passphrase opens,
each slot named by --keep-key-file SLOT=FILE, and, on a terminal, each other slot
whose passphrase you type when asked (an empty answer removes it). Tokens follow
their slots. Slots whose passphrase nobody gives (a TPM's, a recovery password
not at hand) are removed at the end: enroll them again afterwards. After an
interruption (even kill -9 or a power cut) run the command again with a
passphrase of a kept slot; cryptsetup reencrypt --resume-only (after
cryptsetup repair) can finish it too.`,
		Example: `  volcrypt reencrypt /dev/sdb1
  volcrypt reencrypt --key-file k0 --keep-key-file 1=k1 -q disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			device := args[0]
			mode, err := volume.ReencryptionMode(device)
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
				if err := a.keepSlots(device, pass.Bytes(), keepKeys, &o); err != nil {
					return err
				}
				defer func() {
					for _, b := range o.Keep {
						secret.Wipe(b)
					}
				}()
			}
			o.Progress = a.progressLine("reencrypt")
			v, err := volume.Reencrypt(cmd.Context(), device, pass.Bytes(), o)
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
	fs.StringArrayVar(&keepKeys, "keep-key-file", nil, "SLOT=FILE: also keep key slot SLOT, whose passphrase is in FILE (repeatable)")
	fs.StringVarP(&o.Cipher, "cipher", "c", "", "new cipher (default: the current one)")
	fs.IntVarP(&o.KeySizeBits, "key-size", "s", 0, "new volume key size in bits (default: the current one)")
	fs.IntVar(&o.SectorSize, "sector-size", 0, "new encryption sector size (default: the current one)")
	fs.Var((*sizeFlag)(&o.HotzoneBytes), "hotzone-size", "data rewritten per step (default 4m)")
	a.addJSONFlag(cmd)
	return cmd
}

// keepSlots collects the passphrases of the key slots to keep besides the
// one pass opens: from --keep-key-file, then by asking on a terminal. The
// slots left out are named, and removing them needs confirmation.
func (a *app) keepSlots(device string, pass []byte, keepKeys []string, o *volume.ReencryptOptions) error {
	v, err := a.load(device, "", true)
	if err != nil {
		return err
	}
	defer v.Close()
	key, opened, err := v.Unlock(pass, volume.UnlockOptions{Keyslot: -1})
	if err != nil {
		return err
	}
	key.Wipe()
	o.Keep = map[int][]byte{}
	for _, kv := range keepKeys {
		slotStr, file, ok := strings.Cut(kv, "=")
		slot, err := strconv.Atoi(slotStr)
		if !ok || err != nil {
			return usageError{fmt.Errorf("--keep-key-file %q: want SLOT=FILE", kv)}
		}
		b, err := passphrase.KeyFile{Path: file}.Read(a.stdin)
		if err != nil {
			return err
		}
		o.Keep[slot] = b
	}
	var dropped []string
	for _, slot := range v.Header.Meta.SegmentKeyslots(0) {
		if _, ok := o.Keep[slot]; ok || slot == opened {
			continue
		}
		if a.prompt.IsTerminal() {
			b, err := a.passphrase(keyFlags{}, fmt.Sprintf("Enter passphrase for key slot %d to keep it (empty: remove it): ", slot), false)
			if err == nil && b.Len() > 0 {
				o.Keep[slot] = slices.Clone(b.Bytes())
				b.Wipe()
				continue
			}
			if b != nil {
				b.Wipe()
			}
		}
		dropped = append(dropped, strconv.Itoa(slot))
	}
	if len(dropped) > 0 {
		return a.confirm(fmt.Sprintf("Key slot(s) %s of %s will be removed: no passphrase was given for them.", strings.Join(dropped, ", "), device))
	}
	return nil
}

// progressLine returns a progress callback that rewrites one stderr line
// with the share done, the throughput and the time left, at most a few
// times a second.
func (a *app) progressLine(what string) func(volume.Progress) {
	start := time.Now()
	var last time.Time
	return func(p volume.Progress) {
		now := time.Now()
		done := p.DoneBytes >= p.TotalBytes
		if !done && now.Sub(last) < 250*time.Millisecond {
			return
		}
		last = now
		el := now.Sub(start).Seconds()
		rate := float64(p.DoneBytes) / max(el, 1e-3)
		left := time.Duration(float64(p.TotalBytes-p.DoneBytes) / max(rate, 1) * float64(time.Second))
		fmt.Fprintf(a.stderr, "\r%s: %5.1f%% %7.1f MiB/s, %v left ", what,
			100*float64(p.DoneBytes)/float64(max(p.TotalBytes, 1)), rate/(1<<20), left.Round(time.Second))
		if done {
			fmt.Fprintln(a.stderr)
		}
	}
}
