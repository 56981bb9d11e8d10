package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/volcrypt/volcrypt/internal/passphrase"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/tpm"
	"github.com/volcrypt/volcrypt/volume"
)

// tpmFlags say how to reach the TPM and where a PIN comes from.
type tpmFlags struct {
	device  string
	pinFile string
}

func (f *tpmFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.device, "tpm2-device", "", `TPM to use: "auto" (/dev/tpmrm0), a device path, or swtpm:host=H,port=P`)
	fs.StringVar(&f.pinFile, "tpm2-pin-file", "", "read the TPM PIN from this file instead of a prompt")
}

// reachable reports whether tokens should be tried: a TPM was named, or the
// kernel's resource manager exists.
func (f tpmFlags) reachable() bool {
	if f.device != "" && f.device != "auto" {
		return true
	}
	_, err := os.Stat(tpm.DefaultDevice)
	return err == nil
}

// pin returns the TPM PIN from --tpm2-pin-file or a prompt.
func (a *app) pin(f tpmFlags, confirm bool) ([]byte, error) {
	if f.pinFile != "" {
		b, err := passphrase.KeyFile{Path: f.pinFile}.Read(a.stdin)
		if err != nil {
			return nil, fmt.Errorf("TPM PIN: %w", err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	}
	if !a.prompt.IsTerminal() {
		return nil, fmt.Errorf("%w: no terminal to ask for the TPM PIN: give --tpm2-pin-file", tpm.ErrPINRequired)
	}
	return a.prompt.Ask("Enter TPM2 PIN: ", confirm)
}

// unlockTPM2 tries the volume's TPM tokens.
func (a *app) unlockTPM2(v *volume.Volume, f tpmFlags) (*secret.Buffer, int, error) {
	return v.UnlockTPM2(volume.TPM2UnlockOptions{
		Device: f.device,
		PIN:    func() ([]byte, error) { return a.pin(f, false) },
	})
}

func (a *app) enrollTPM2Command() *cobra.Command {
	var (
		key        keyFlags
		tf         tpmFlags
		headerFile string
		pcrs       string
		withPIN    bool
		unlockTPM  bool
		wipeSlot   string
		newSlot    int
	)
	cmd := &cobra.Command{
		Use:   "tpm2 [flags] DEVICE",
		Short: "Seal a new key in the TPM, bound to PCRs (and a PIN), as a systemd-tpm2 token",
		Long: `Seal a random key in the TPM 2.0 under a policy of PCR values (PCR 7, the Secure Boot state, by
default) and, with --tpm2-with-pin, a PIN; add a key slot opened by it and a token in
systemd-cryptenroll's format, so that volcrypt and systemd-cryptsetup both unlock it at boot.
After a firmware or boot-chain update, re-seal with --wipe-slot tpm2.`,
		Example: `  volcrypt enroll tpm2 --tpm2-pcrs 0+7 /dev/sda3
  volcrypt enroll tpm2 --tpm2-with-pin --key-file key.bin disk.img
  volcrypt enroll tpm2 --unlock-tpm2 --wipe-slot tpm2 /dev/sda3   # re-seal after an update`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pcrList, err := tpm.ParsePCRList(pcrs)
			if err != nil {
				return usageError{fmt.Errorf("--tpm2-pcrs: %w", err)}
			}
			if wipeSlot != "" && wipeSlot != "tpm2" {
				return usageError{fmt.Errorf("--wipe-slot %q: only \"tpm2\" is supported", wipeSlot)}
			}
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			var vk *secret.Buffer
			if unlockTPM {
				vk, _, err = a.unlockTPM2(v, tf)
			} else {
				vk, err = a.unlockExisting(v, key)
			}
			if err != nil {
				return err
			}
			defer vk.Wipe()
			var pin []byte
			if withPIN || tf.pinFile != "" {
				if pin, err = a.pin(tf, true); err != nil {
					return err
				}
				defer secret.Wipe(pin)
			}
			slot, tok, err := v.EnrollTPM2(cmd.Context(), vk.Bytes(), volume.TPM2EnrollOptions{
				Device: tf.device, PCRs: pcrList, PIN: pin, WipeExisting: wipeSlot == "tpm2", Keyslot: newSlot,
			})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"keyslot": slot, "token": tok, "pcrs": pcrList, "pin": pin != nil})
			}
			fmt.Fprintf(a.stderr, "TPM2 key enrolled in key slot %d (token %d), bound to PCRs %s.\n", slot, tok, tpm.FormatPCRList(pcrList))
			return nil
		},
	}
	fs := cmd.Flags()
	key.register(fs)
	fs.StringVar(&key.file, "unlock-key-file", "", "same as --key-file (systemd-cryptenroll's name)")
	tf.register(fs)
	fs.StringVar(&pcrs, "tpm2-pcrs", "7", "PCRs to bind, e.g. 0+7 (sha256 bank)")
	fs.BoolVar(&withPIN, "tpm2-with-pin", false, "also require a PIN to unlock")
	fs.BoolVar(&unlockTPM, "unlock-tpm2", false, "authorize with the existing TPM enrollment instead of a passphrase")
	fs.StringVar(&wipeSlot, "wipe-slot", "", `"tpm2": remove earlier TPM enrollments`)
	fs.IntVar(&newSlot, "new-key-slot", -1, "key slot for the TPM key (default: lowest free)")
	fs.StringVar(&headerFile, "header", "", "detached header file")
	a.addJSONFlag(cmd)
	return cmd
}

// tpmHint says what to do about a TPM failure.
func tpmHint(err error) (string, bool) {
	var bad *tpm.BadPINError
	var pcr *tpm.PCRMismatchError
	switch {
	case errors.As(err, &pcr), errors.Is(err, tpm.ErrPCRMismatch):
		return "the boot chain changed (firmware, boot loader or Secure Boot update?): unlock with the recovery password or a passphrase, then re-seal with 'volcrypt enroll tpm2 --wipe-slot tpm2'", true
	case errors.As(err, &bad):
		if bad.TriesLeft >= 0 {
			return fmt.Sprintf("%d tries left before the TPM locks out; the recovery password still works", bad.TriesLeft), true
		}
		return "the recovery password still works", true
	case errors.Is(err, tpm.ErrLockout):
		return "the TPM is locked out after too many wrong PINs: wait for the lockout to expire or clear it with 'tpm2_dictionarylockout --clear-lockout' (needs the lockout password); the recovery password still works", true
	case errors.Is(err, tpm.ErrPINRequired):
		return "give the PIN with --tpm2-pin-file or on a terminal", true
	case errors.Is(err, tpm.ErrNoTPM):
		return "no TPM found: give --tpm2-device, or unlock with a passphrase or the recovery password", true
	case errors.Is(err, volume.ErrNoToken):
		return "this volume has no TPM enrollment: add one with 'volcrypt enroll tpm2'", true
	}
	return "", false
}
