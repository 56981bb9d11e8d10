package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

func (a *app) enrollCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Add a recovery password or a TPM 2.0 key to a volume",
		Example: `  volcrypt enroll recovery disk.img
  volcrypt enroll tpm2 --tpm2-pcrs 7 /dev/sda3`,
	}
	cmd.AddCommand(a.enrollRecoveryCommand(), a.enrollTPM2Command())
	return cmd
}

// unlockExisting opens the volume with an existing key, for enrollments.
func (a *app) unlockExisting(v *volume.Volume, key keyFlags) (*secret.Buffer, error) {
	pass, err := a.passphrase(key, fmt.Sprintf("Enter any existing passphrase for %s: ", v.Path), false)
	if err != nil {
		return nil, err
	}
	defer pass.Wipe()
	vk, _, err := v.Unlock(pass.Bytes(), volume.UnlockOptions{Keyslot: key.slot, Limits: a.unlockLimits})
	return vk, err
}

func (a *app) enrollRecoveryCommand() *cobra.Command {
	var (
		key        keyFlags
		headerFile string
		newSlot    int
		escrowCmd  string
	)
	cmd := &cobra.Command{
		Use:   "recovery [flags] DEVICE",
		Short: "Create a BitLocker-style 48-digit recovery password and print it once",
		Long: `Create a recovery password in BitLocker's form (8 groups of 6 digits, 128 bits) in a new key
slot, authorized by an existing key, and print it once: store it somewhere safe. It is accepted
wherever a passphrase is, typed with dashes, spaces or no separators.

With --escrow-command CMD, CMD (run by sh -c) gets the password on its standard input as one JSON
object: {"device","uuid","label","keyslot","recovery_password","hostname","created"}. CMD runs
with the volume locked, before the key slot is written: the slot is written only if CMD exits 0;
otherwise (or if volcrypt is interrupted or killed meanwhile) the volume stays as it was and enroll
fails. CMD must not itself run volcrypt or cryptsetup on the same volume.`,
		Example: `  volcrypt enroll recovery disk.img
  volcrypt enroll recovery --key-file key.bin --json disk.img
  volcrypt enroll recovery --escrow-command 'vault kv put secret/luks/$(hostname) recovery=-' /dev/sda3`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			vk, err := a.unlockExisting(v, key)
			if err != nil {
				return err
			}
			defer vk.Wipe()
			var escrow volume.Escrow
			if escrowCmd != "" {
				escrow = a.escrowCommand(cmd.Context(), v, escrowCmd)
			}
			pw, slot, err := v.EnrollRecoveryEscrowed(cmd.Context(), vk.Bytes(), newSlot, escrow)
			if err != nil {
				return err
			}
			defer pw.Wipe()
			if a.json {
				return a.printJSON(map[string]any{"keyslot": slot, "recovery_password": string(pw.Bytes())})
			}
			fmt.Fprintf(a.stderr, "Recovery password enrolled in key slot %d. Store it somewhere safe; it is not shown again:\n", slot)
			fmt.Fprintf(a.stdout, "%s\n", pw.Bytes())
			return nil
		},
	}
	fs := cmd.Flags()
	key.register(fs)
	fs.Lookup("key-slot").Usage = "key slot of the existing key to unlock with"
	fs.IntVar(&newSlot, "new-key-slot", -1, "key slot for the recovery password (default: lowest free)")
	fs.StringVar(&headerFile, "header", "", "detached header file")
	fs.StringVar(&escrowCmd, "escrow-command", "", "shell command that stores the password (JSON on its stdin); the slot is kept only if it exits 0")
	a.addJSONFlag(cmd)
	return cmd
}
