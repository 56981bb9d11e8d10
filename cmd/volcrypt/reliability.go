package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/kdf"
	"github.com/volcrypt/volcrypt/volume"
)

// reliabilityCommands returns the commands that protect and destroy a
// header: header backup/restore, repair and erase (issue 5).
func (a *app) reliabilityCommands() []*cobra.Command {
	hdr := &cobra.Command{
		Use:   "header",
		Short: "Back up and restore a volume's header and key slots",
		Example: `  volcrypt header backup --file /root/sda3.hdr /dev/sda3
  volcrypt header restore --file /root/sda3.hdr /dev/sda3`,
	}
	hdr.AddCommand(a.headerBackupCommand(), a.headerRestoreCommand())
	return []*cobra.Command{hdr, a.repairCommand(), a.eraseCommand()}
}

func (a *app) headerBackupCommand() *cobra.Command {
	var file, headerFile string
	cmd := &cobra.Command{
		Use:   "backup --file FILE [flags] DEVICE",
		Short: "Save the header and key slots to a new file (as cryptsetup luksHeaderBackup)",
		Long: `Save the LUKS2 header (both copies) and the key-slot area to FILE, which must not exist.
The file is interchangeable with cryptsetup luksHeaderBackup's. Anyone with it and an old
passphrase can open the volume, even after that passphrase was removed: keep it safe.`,
		Example: `  volcrypt header backup --file disk.hdr disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageError{fmt.Errorf("header backup needs --file")}
			}
			v, err := a.load(args[0], headerFile, true)
			if err != nil {
				return err
			}
			defer v.Close()
			if err := v.BackupHeader(file); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"file": file, "uuid": v.Header.UUID, "bytes": v.Header.KeyslotsEnd()})
			}
			fmt.Fprintf(a.stderr, "Header of %s saved to %s.\n", args[0], file)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "the backup file to create")
	cmd.Flags().StringVar(&file, "header-backup-file", "", "same as --file (cryptsetup's name)")
	cmd.Flags().StringVar(&headerFile, "header", "", "detached header file")
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) headerRestoreCommand() *cobra.Command {
	var (
		file string
		o    volume.RestoreOptions
	)
	cmd := &cobra.Command{
		Use:   "restore --file FILE [flags] DEVICE",
		Short: "Write a header backup back to a device (as cryptsetup luksHeaderRestore)",
		Long: `Write a header backup (from volcrypt header backup or cryptsetup luksHeaderBackup) to DEVICE,
replacing its header and key slots. A backup of another volume (another UUID), or a device
without a LUKS header, needs confirmation (-q); a backup whose data offset differs from the
device's header is refused.`,
		Example: `  volcrypt header restore --file disk.hdr disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageError{fmt.Errorf("header restore needs --file")}
			}
			o.AllowOtherVolume = a.batch
			err := volume.RestoreHeader(args[0], file, o)
			if errors.Is(err, volume.ErrOtherVolume) && !a.batch {
				if err := a.confirm(fmt.Sprintf("%s.\nRestoring the backup replaces the key slots on %s.", oneLine(err), args[0])); err != nil {
					return err
				}
				o.AllowOtherVolume = true
				err = volume.RestoreHeader(args[0], file, o)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Header of %s restored from %s.\n", args[0], file)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "the backup file")
	cmd.Flags().StringVar(&file, "header-backup-file", "", "same as --file (cryptsetup's name)")
	cmd.Flags().StringVar(&o.HeaderFile, "header", "", "restore into this detached header file")
	return cmd
}

func (a *app) repairCommand() *cobra.Command {
	var headerFile string
	cmd := &cobra.Command{
		Use:   "repair [flags] DEVICE",
		Short: "Rewrite a damaged or stale header copy from the good one (as cryptsetup repair)",
		Long: `Check both header copies. When one is damaged or older than the other, rewrite it from the
good one (same metadata, a fresh salt), as cryptsetup repair does; the good copy is not
touched. When both are damaged nothing is written: restore a header backup instead.
Every header update (key add, remove, …) repairs first as well.`,
		Example: `  volcrypt repair disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			fixed, err := v.Repair()
			if err != nil {
				return err
			}
			problems := make([]string, len(fixed))
			for i, e := range fixed {
				problems[i] = oneLine(e)
			}
			if a.json {
				return a.printJSON(map[string]any{"repaired": problems})
			}
			if len(fixed) == 0 {
				fmt.Fprintf(a.stderr, "Both header copies of %s are good; nothing to repair.\n", args[0])
			}
			for _, p := range problems {
				fmt.Fprintf(a.stderr, "Repaired: %s.\n", p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&headerFile, "header", "", "detached header file")
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) eraseCommand() *cobra.Command {
	var headerFile string
	cmd := &cobra.Command{
		Use:     "erase [flags] DEVICE",
		Aliases: []string{"luksErase"},
		Short:   "Destroy all key slots: the data can never be opened again without a header backup",
		Long: `Remove every key slot and overwrite the key-slot area with random bytes (cryptsetup erase).
Without a header backup made before, the data is lost for good.`,
		Example: `  volcrypt erase disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			if err := a.confirm(fmt.Sprintf("This operation will erase all key slots on %s.\nThe data can never be decrypted again without a header backup.", args[0])); err != nil {
				return err
			}
			removed, err := v.Erase()
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"erased": removed})
			}
			fmt.Fprintf(a.stderr, "Erased %d key slots of %s.\n", len(removed), args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&headerFile, "header", "", "detached header file")
	a.addJSONFlag(cmd)
	return cmd
}

// limitFlags raise the caps on the KDF cost volcrypt accepts from a header
// when unlocking (kdf.HostLimits otherwise). A header's Argon2 or PBKDF2
// cost beyond them is refused at once with a kdf.CostError naming the flag,
// instead of running for hours or exhausting memory. Open registers them
// with register and passes limits() in volume.UnlockOptions (through
// app.unlockLimits); commands whose KDF flags for a new key slot already
// use these names (key add, key change) can take the limits from them with
// fromKDF.
type limitFlags struct {
	memoryKiB, time, threads, iterations uint32
}

// register adds --pbkdf-memory, --pbkdf-force-iterations and
// --pbkdf-parallel, the names kdf.CostError gives, as limits.
func (l *limitFlags) register(fs *pflag.FlagSet) {
	fs.Uint32Var(&l.memoryKiB, "pbkdf-memory", 0, "accept a key slot's Argon2 memory up to this many KiB (default: physical memory, at most 4 GiB)")
	fs.Uint32Var(&l.time, "pbkdf-force-iterations", 0, fmt.Sprintf("accept a key slot's Argon2 time cost or PBKDF2 iterations up to this (default %d and %d)", kdf.DefaultMaxTime, kdf.DefaultMaxIterations))
	fs.Uint32Var(&l.threads, "pbkdf-parallel", 0, fmt.Sprintf("accept a key slot's Argon2 threads up to this (default %d)", kdf.DefaultMaxThreads))
}

// fromKDF takes the limits from the flags that also set a new key slot's
// KDF: what a user asks for a new slot, an existing one may cost too.
func (l *limitFlags) fromKDF(f kdfFlags) {
	l.memoryKiB, l.time, l.threads = f.memory, f.forceIters, f.parallel
}

// limits returns kdf.HostLimits raised to what the flags allow.
func (l limitFlags) limits() kdf.Limits {
	lim := kdf.HostLimits()
	lim.MaxMemoryKiB = max(lim.MaxMemoryKiB, l.memoryKiB)
	lim.MaxThreads = max(lim.MaxThreads, l.threads)
	if l.time > 0 {
		lim.MaxTime = max(lim.MaxTime, l.time)
		lim.MaxIterations = max(lim.MaxIterations, l.time)
	}
	if l.time > 0 || l.memoryKiB > 0 {
		lim.MaxWorkKiB = max(lim.MaxWorkKiB, uint64(lim.MaxTime)*uint64(lim.MaxMemoryKiB))
	}
	return lim
}

// hardenProcess makes the process not dumpable: no core file, and no
// ptrace or /proc/PID/mem reads by other processes of the same user, so
// keys in memory stay there. Key buffers are locked against swapping by
// internal/secret.
func hardenProcess() {
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
}
