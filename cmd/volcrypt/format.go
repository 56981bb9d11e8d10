package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/internal/progress"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

func (a *app) formatCommand() *cobra.Command {
	var (
		o       volume.FormatOptions
		key     keyFlags
		kf      kdfFlags
		header  string
		offset  uint64
		vkFile  string
		typeArg string
		wipe    bool
	)
	cmd := &cobra.Command{
		Use:   "format [flags] DEVICE",
		Short: "Create a LUKS2 volume (destroys the device's data)",
		Example: `  volcrypt format /dev/sdb1
  volcrypt format --key-file key.bin --iter-time 1000 disk.img
  volcrypt format --pbkdf pbkdf2 --sector-size 512 --label backup disk.img
  volcrypt format --wipe --progress-json /dev/sdb1   # the whole device encrypted, reads as zeros`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if typeArg != "luks2" {
				return usageError{fmt.Errorf("--type %s: volcrypt formats luks2 only", typeArg)}
			}
			device := args[0]
			o.KDF = kf.options()
			o.Hash = kf.hash
			o.Keyslot = key.slot
			o.OffsetBytes = int64(offset) * 512
			o.HeaderFile = header
			o.Logger = a.log
			if vkFile != "" {
				vk, err := readVolumeKeyFile(vkFile, o.KeySizeBits)
				if err != nil {
					return err
				}
				defer vk.Wipe()
				o.VolumeKey = vk.Bytes()
			}
			if err := a.confirm(fmt.Sprintf("This will overwrite data on %s irrevocably.", device)); err != nil {
				return err
			}
			o.Force = a.batch
			pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", device), true)
			if err != nil {
				return err
			}
			defer pass.Wipe()
			if o.KDF, err = a.calibrated(cmd.Context(), o.KDF, o.KeySizeBits/8); err != nil {
				return err
			}
			v, err := volume.Format(cmd.Context(), device, pass.Bytes(), o)
			if err != nil {
				return err
			}
			defer v.Close()
			if wipe {
				if err := a.wipe(cmd.Context(), v, pass); err != nil {
					return err
				}
			}
			if a.json {
				return a.printJSON(map[string]any{"device": device, "uuid": v.Header.UUID})
			}
			return nil
		},
	}
	fs := cmd.Flags()
	key.register(fs)
	kf.register(fs)
	registerNewVolumeFlags(fs, &o)
	fs.IntVar(&o.SectorSize, "sector-size", 0, "encryption sector size in bytes, 512–4096 (default 4096 when the device allows)")
	fs.StringVar(&header, "header", "", "put the header in this file (detached header)")
	fs.Uint64Var(&offset, "offset", 0, "start of the data in 512-byte sectors")
	fs.StringVar(&vkFile, "volume-key-file", "", "use the volume key from this file instead of a random one")
	fs.StringVarP(&typeArg, "type", "M", "luks2", "header type (luks2)")
	fs.BoolVar(&wipe, "wipe", false, "then write encrypted zeros over the whole data area (takes as long as writing the device)")
	a.addJSONFlag(cmd)
	a.addProgressFlag(cmd)
	return cmd
}

// wipe writes encrypted zeros over a new volume's data area, with a
// progress bar; SIGINT or SIGTERM stops it with the volume usable.
func (a *app) wipe(ctx context.Context, v *volume.Volume, pass *secret.Buffer) error {
	vk, _, err := v.Unlock(pass.Bytes(), volume.UnlockOptions{Keyslot: -1})
	if err != nil {
		return err
	}
	defer vk.Wipe()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var task *progress.Task
	err = v.Wipe(ctx, vk, func(p volume.Progress) {
		if p.DoneBytes == 0 { // the first call, with the total
			task = a.progress().Start("wipe", v.Path, p.TotalBytes)
		}
		task.Set(p.DoneBytes)
	})
	task.Done(err)
	if err != nil {
		return fmt.Errorf("%w; the volume is formatted and opens, the rest of its data area keeps the old bytes", err)
	}
	return nil
}

func (a *app) addJSONFlag(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&a.json, "json", false, "print the result as JSON")
}
