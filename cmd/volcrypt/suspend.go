package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

// tpm2Commands returns the tpm2 suspend/resume commands.
func (a *app) tpm2Commands() []*cobra.Command {
	cmd := &cobra.Command{
		Use:   "tpm2",
		Short: "Suspend and resume TPM protection around a firmware or boot-loader update",
		Example: `  volcrypt tpm2 suspend --reboot-count 1 /dev/sda3
  volcrypt tpm2 resume /dev/sda3`,
	}
	var (
		key        keyFlags
		tf         tpmFlags
		headerFile string
		boots      int
	)
	suspend := &cobra.Command{
		Use:   "suspend [--reboot-count N] DEVICE",
		Short: "Let the volume open with no TPM for N boots, then re-seal to the new PCRs",
		Long: `Suspend TPM protection as BitLocker's Suspend-BitLocker does: a clear key is stored in the
header so the volume opens without the TPM for the next N boots (default 1) while a firmware,
boot-loader or Secure Boot update changes the PCR values. At the last of those boots volcrypt
re-seals every TPM enrollment (those without a PIN) to the new PCR values and destroys the clear
key. While suspended, anyone with the disk can open the volume: resume as soon as possible.`,
		Example: `  volcrypt tpm2 suspend /dev/sda3                 # before installing a firmware update
  volcrypt tpm2 suspend --reboot-count 2 --key-file key.bin disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			vk, err := a.unlockForTPMChange(v, key, tf)
			if err != nil {
				return err
			}
			defer vk.Wipe()
			slot, err := v.SuspendTPM2(cmd.Context(), vk.Bytes(), boots)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"keyslot": slot, "boots_left": boots})
			}
			fmt.Fprintf(a.stderr, "TPM protection suspended for %d boot(s): the volume opens without the TPM until then (clear key in key slot %d).\n", boots, slot)
			return nil
		},
	}
	fs := suspend.Flags()
	key.register(fs)
	tf.register(fs)
	fs.IntVar(&boots, "reboot-count", 1, "boots to stay suspended before re-sealing to the new PCR values")
	fs.StringVar(&headerFile, "header", "", "detached header file")
	a.addJSONFlag(suspend)

	resume := &cobra.Command{
		Use:     "resume DEVICE",
		Short:   "Re-seal TPM enrollments to the current PCRs now and destroy the clear key",
		Example: `  volcrypt tpm2 resume /dev/sda3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			vk, _, err := v.UnlockSuspended()
			if err != nil {
				return err
			}
			defer vk.Wipe()
			if err := v.ResumeTPM2(cmd.Context(), vk.Bytes(), tf.device); err != nil {
				return err
			}
			fmt.Fprintln(a.stderr, "TPM protection resumed: enrollments re-sealed to the current PCR values, clear key destroyed.")
			return nil
		},
	}
	tf.register(resume.Flags())
	resume.Flags().StringVar(&headerFile, "header", "", "detached header file")
	cmd.AddCommand(suspend, resume)
	return []*cobra.Command{cmd}
}

// unlockForTPMChange authorizes a TPM change: with the TPM tokens when no
// key file is given and a TPM is reachable, else with a passphrase.
func (a *app) unlockForTPMChange(v *volume.Volume, key keyFlags, tf tpmFlags) (*secret.Buffer, error) {
	vk, _, err := a.unlock(v, key, tf, tokenFlags{})
	return vk, err
}

// countBoot records a boot of a suspended volume after it was opened with
// the clear key, and says what happened.
func (a *app) countBoot(cmd *cobra.Command, v *volume.Volume, vk *secret.Buffer, slot int, tf tpmFlags) error {
	if s, ok := v.SuspendSlot(); !ok || s != slot {
		return nil
	}
	left, err := v.CountBoot(cmd.Context(), vk.Bytes(), tf.device)
	if err != nil && !errors.Is(err, volume.ErrNotSuspended) {
		return fmt.Errorf("volume opened, but resuming TPM protection failed: %w", err)
	}
	if left > 0 {
		fmt.Fprintf(a.stderr, "TPM protection is suspended: %d more boot(s) before it is re-sealed.\n", left)
	} else {
		fmt.Fprintln(a.stderr, "TPM protection resumed: enrollments re-sealed to the current PCR values.")
	}
	return nil
}
