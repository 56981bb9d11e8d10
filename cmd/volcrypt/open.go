package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/internal/passphrase"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

func (a *app) openCommand() *cobra.Command {
	var (
		key        keyFlags
		headerFile string
		test       bool
		o          volume.ActivateOptions
		tf         tpmFlags
		tokens     tokenFlags
		userspace  bool
		lim        limitFlags
	)
	cmd := &cobra.Command{
		Use:   "open [flags] DEVICE [NAME]",
		Short: "Unlock a volume and map it as /dev/mapper/NAME (or only check a key with --test)",
		Long: `Unlock a volume and create the dm-crypt mapping /dev/mapper/NAME, as cryptsetup open does.
An image file is attached to a loop device, which goes away when the mapping is closed.
With --userspace (no device-mapper needed), NAME is an existing directory: a background volcrypt
process serves the plaintext there as the file NAME/volume through FUSE, to attach with losetup
(-b with the volume's sector size, as dm-crypt would show it) and mount like a disk image;
'volcrypt close NAME' unmounts it and stops the server.`,
		Example: `  volcrypt open disk.img data
  volcrypt open --key-file key.bin --allow-discards /dev/sdb1 backup
  volcrypt open --test --key-file key.bin disk.img
  volcrypt open --userspace disk.img /mnt/vol && losetup -b 4096 -f --show /mnt/vol/volume`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !test && len(args) != 2 {
				return usageError{fmt.Errorf("open needs DEVICE and NAME (or --test to only check the key)")}
			}
			a.unlockLimits = lim.limits()
			v, err := a.load(args[0], headerFile, test || (o.ReadOnly && !o.Persistent))
			if err != nil {
				return err
			}
			defer v.Close()
			vk, slot, err := a.unlock(v, key, tf, tokens)
			if err != nil {
				return err
			}
			defer vk.Wipe()
			if test {
				if a.json {
					return a.printJSON(map[string]any{"keyslot": slot})
				}
				fmt.Fprintf(a.stderr, "Key slot %d unlocked.\n", slot)
				return nil
			}
			if userspace {
				return a.openUserspace(cmd, v, vk, args[1], o.ReadOnly)
			}
			if err := v.Activate(args[1], vk, o); err != nil {
				return err
			}
			if err := a.countBoot(cmd, v, vk, slot, tf); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"keyslot": slot, "name": args[1], "device": "/dev/mapper/" + args[1]})
			}
			return nil
		},
	}
	fs := cmd.Flags()
	key.register(fs)
	fs.StringVar(&headerFile, "header", "", "detached header file")
	fs.BoolVar(&test, "test", false, "only check that the key opens the volume; map nothing")
	fs.BoolVar(&test, "test-passphrase", false, "same as --test (cryptsetup's name)")
	fs.BoolVarP(&o.ReadOnly, "read-only", "r", false, "map the volume read-only")
	fs.BoolVar(&o.AllowDiscards, "allow-discards", false, "pass discard (TRIM) requests through")
	fs.BoolVar(&o.SameCPUCrypt, "perf-same_cpu_crypt", false, "dm-crypt: encrypt on the CPU that issued the I/O")
	fs.BoolVar(&o.SubmitFromCryptCPUs, "perf-submit_from_crypt_cpus", false, "dm-crypt: submit writes from the encrypting thread")
	fs.BoolVar(&o.NoReadWorkqueue, "perf-no_read_workqueue", false, "dm-crypt: no workqueue for reads")
	fs.BoolVar(&o.NoWriteWorkqueue, "perf-no_write_workqueue", false, "dm-crypt: no workqueue for writes")
	fs.BoolVar(&o.Persistent, "persistent", false, "store the discard and performance flags in the header")
	tf.register(fs)
	lim.register(fs)
	fs.BoolVar(&userspace, "userspace", false, "serve the plaintext as the file NAME/volume through FUSE (NAME: a directory), without device-mapper")
	fs.BoolVar(&tokens.only, "token-only", false, "unlock only through tokens (TPM); never ask for a passphrase")
	fs.BoolVar(&tokens.disable, "disable-tokens", false, "do not try tokens (TPM); use a passphrase or key file")
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) closeCommand() *cobra.Command {
	var deferred bool
	cmd := &cobra.Command{
		Use:     "close [flags] NAME",
		Short:   "Remove the mapping /dev/mapper/NAME (made by volcrypt or cryptsetup)",
		Example: `  volcrypt close data`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if handled, err := a.closeUserspace(args[0]); handled {
				return err
			}
			return volume.Deactivate(args[0], deferred)
		},
	}
	cmd.Flags().BoolVar(&deferred, "deferred", false, "if the mapping is in use, remove it at its last close")
	return cmd
}

func (a *app) statusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [flags] NAME",
		Short: "Show the mapping /dev/mapper/NAME: type, cipher, device, offset, size, flags",
		Example: `  volcrypt status data
  volcrypt status --json data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if handled, err := a.statusUserspace(args[0]); handled {
				return err
			}
			s, err := volume.MappingStatus(args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(s)
			}
			w := a.stdout
			inUse := ""
			if s.InUse {
				inUse = " and is in use"
			}
			fmt.Fprintf(w, "/dev/mapper/%s is active%s.\n", s.Name, inUse)
			fmt.Fprintf(w, "  type:    %s\n  cipher:  %s\n  keysize: %d bits\n  key location: %s\n", orNone(s.Type, "n/a"), s.Cipher, s.KeyBits, s.KeyLocation)
			fmt.Fprintf(w, "  device:  %s\n", s.Device)
			if s.LoopFile != "" {
				fmt.Fprintf(w, "  loop:    %s\n", s.LoopFile)
			}
			fmt.Fprintf(w, "  sector size:  %d\n  offset:  %d sectors\n  size:    %d sectors\n  mode:    %s\n", s.SectorSize, s.OffsetSectors, s.SizeSectors, s.Mode)
			if len(s.Flags) > 0 {
				fmt.Fprintf(w, "  flags:   %s\n", strings.Join(s.Flags, " "))
			}
			return nil
		},
	}
	a.addJSONFlag(cmd)
	return cmd
}

// tokenFlags are cryptsetup's --token-only and --disable-tokens.
type tokenFlags struct{ only, disable bool }

// unlock gets the volume key the way open does: the TPM tokens first (when
// no key file is given and a TPM is reachable), then the key file or a
// passphrase prompt. With no terminal and no passphrase on standard input,
// the TPM's reason for failing is the error.
func (a *app) unlock(v *volume.Volume, key keyFlags, tf tpmFlags, tokens tokenFlags) (*secret.Buffer, int, error) {
	if tokens.only && tokens.disable {
		return nil, -1, usageError{fmt.Errorf("--token-only and --disable-tokens exclude each other")}
	}
	var tokenErr error
	if _, ok := v.Suspended(); ok && key.file == "" && !tokens.disable {
		// TPM protection is suspended: the clear key opens with no TPM.
		return v.UnlockSuspended()
	}
	if key.file == "" && !tokens.disable && (tokens.only || tf.reachable()) {
		vk, slot, err := a.unlockTPM2(v, tf)
		if err == nil {
			return vk, slot, nil
		}
		if tokens.only {
			return nil, -1, err
		}
		if !errors.Is(err, volume.ErrNoToken) {
			tokenErr = err
		}
	}
	// Say why the TPM did not unlock before asking on a terminal; without
	// one, only once a passphrase was read — else the TPM's reason is the
	// error itself.
	notice := func() {
		if tokenErr != nil {
			fmt.Fprintf(a.stderr, "TPM2 unlock failed: %s\n", oneLine(tokenErr))
		}
	}
	terminal := a.prompt.IsTerminal()
	if terminal {
		notice()
	}
	pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", v.Path), false)
	if err != nil {
		if tokenErr != nil && errors.Is(err, passphrase.ErrNoTerminal) {
			return nil, -1, tokenErr
		}
		return nil, -1, err
	}
	defer pass.Wipe()
	if !terminal {
		notice()
	}
	return v.Unlock(pass.Bytes(), volume.UnlockOptions{Keyslot: key.slot, Limits: a.unlockLimits})
}
