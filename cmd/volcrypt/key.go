package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/passphrase"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Add, remove, change and list the keys of a volume",
		Example: `  volcrypt key list disk.img
  volcrypt key add --new-key-file backup.key disk.img
  volcrypt key remove --key-slot 2 disk.img`,
	}
	cmd.AddCommand(a.keyAddCommand(), a.keyRemoveCommand(), a.keyChangeCommand(), a.keyListCommand())
	return cmd
}

// newKeyFlags name where a new passphrase comes from.
type newKeyFlags struct {
	file string
	slot int
}

// oneStdin refuses reading both the existing and the new key from
// standard input.
func oneStdin(key keyFlags, newKey newKeyFlags) error {
	if key.file == "-" && newKey.file == "-" {
		return usageError{fmt.Errorf("--key-file and --new-key-file cannot both read standard input")}
	}
	return nil
}

func (a *app) newPassphrase(n newKeyFlags, device string) (*secret.Buffer, error) {
	if n.file != "" {
		b, err := passphrase.KeyFile{Path: n.file}.Read(a.stdin)
		if err != nil {
			return nil, fmt.Errorf("new key: %w", err)
		}
		return secret.From(b), nil
	}
	return a.passphrase(keyFlags{}, fmt.Sprintf("Enter new passphrase for %s: ", device), true)
}

func (a *app) keyAddCommand() *cobra.Command {
	var (
		key        keyFlags
		newKey     newKeyFlags
		kf         kdfFlags
		headerFile string
	)
	cmd := &cobra.Command{
		Use:   "add [flags] DEVICE",
		Short: "Add a passphrase or key file, authorized by an existing key",
		Example: `  volcrypt key add disk.img
  volcrypt key add --key-file old.key --new-key-file new.key --key-slot 3 disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			if err := oneStdin(key, newKey); err != nil {
				return err
			}
			var lim limitFlags
			lim.fromKDF(kf)
			a.unlockLimits = lim.limits()
			vk, err := a.unlockExisting(v, key)
			if err != nil {
				return err
			}
			defer vk.Wipe()
			np, err := a.newPassphrase(newKey, args[0])
			if err != nil {
				return err
			}
			defer np.Wipe()
			ko, err := a.calibrated(cmd.Context(), kf.options(), vk.Len())
			if err != nil {
				return err
			}
			slot, err := v.AddKey(cmd.Context(), vk.Bytes(), np.Bytes(), newKey.slot, ko)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"keyslot": slot})
			}
			fmt.Fprintf(a.stderr, "Key slot %d created.\n", slot)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&key.file, "key-file", "d", "", "existing key from this file (- for standard input)")
	fs.Int64Var(&key.offset, "keyfile-offset", 0, "skip this many bytes of the key file")
	fs.Int64VarP(&key.size, "keyfile-size", "l", 0, "read at most this many bytes of the key file")
	key.slot = -1
	fs.StringVar(&newKey.file, "new-key-file", "", "new key from this file (- for standard input)")
	fs.IntVarP(&newKey.slot, "key-slot", "S", -1, "key slot for the new key (default: lowest free)")
	fs.StringVar(&headerFile, "header", "", "detached header file")
	kf.register(fs)
	a.addJSONFlag(cmd)
	a.addProgressFlag(cmd)
	return cmd
}

func (a *app) keyRemoveCommand() *cobra.Command {
	var (
		key        keyFlags
		headerFile string
	)
	cmd := &cobra.Command{
		Use:   "remove [flags] DEVICE",
		Short: "Destroy a key slot: the one a passphrase opens, or --key-slot N",
		Example: `  volcrypt key remove disk.img
  volcrypt key remove --key-slot 2 -q disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			slot := key.slot
			if slot < 0 {
				pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase to be deleted: "), false)
				if err != nil {
					return err
				}
				vk, opened, err := v.Unlock(pass.Bytes(), volume.UnlockOptions{Keyslot: -1})
				pass.Wipe()
				if err != nil {
					return err
				}
				vk.Wipe()
				slot = opened
			} else if _, ok := v.Header.Meta.Keyslots[slot]; !ok {
				return fmt.Errorf("key slot %d: %w", slot, header.ErrKeyslotNotFound)
			}
			last := len(v.Header.Meta.SegmentKeyslots(0)) == 1
			if last {
				if err := a.confirm(fmt.Sprintf("This is the last key slot. Device %s will become unusable after purging this key.", args[0])); err != nil {
					return err
				}
			}
			if err := v.RemoveKey(slot, last); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"keyslot": slot})
			}
			fmt.Fprintf(a.stderr, "Key slot %d removed.\n", slot)
			return nil
		},
	}
	key.register(cmd.Flags())
	cmd.Flags().StringVar(&headerFile, "header", "", "detached header file")
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) keyChangeCommand() *cobra.Command {
	var (
		key        keyFlags
		newKey     newKeyFlags
		kf         kdfFlags
		headerFile string
	)
	cmd := &cobra.Command{
		Use:     "change [flags] DEVICE",
		Short:   "Change the passphrase of a key slot, keeping its number",
		Example: `  volcrypt key change disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			if err := oneStdin(key, newKey); err != nil {
				return err
			}
			pass, err := a.passphrase(key, "Enter passphrase to be changed: ", false)
			if err != nil {
				return err
			}
			defer pass.Wipe()
			np, err := a.newPassphrase(newKey, args[0])
			if err != nil {
				return err
			}
			defer np.Wipe()
			ko, err := a.calibrated(cmd.Context(), kf.options(), volumeKeyLen(v.Header))
			if err != nil {
				return err
			}
			slot, err := v.ChangeKey(cmd.Context(), pass.Bytes(), np.Bytes(), key.slot, ko)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"keyslot": slot})
			}
			fmt.Fprintf(a.stderr, "Key slot %d changed.\n", slot)
			return nil
		},
	}
	fs := cmd.Flags()
	key.register(fs)
	fs.StringVar(&newKey.file, "new-key-file", "", "new key from this file (- for standard input)")
	fs.StringVar(&headerFile, "header", "", "detached header file")
	kf.register(fs)
	a.addJSONFlag(cmd)
	a.addProgressFlag(cmd)
	return cmd
}

// volumeKeyLen is the length of the data segment's key in bytes (0, the
// KDF default, when no key slot holds it).
func volumeKeyLen(h *header.Header) int {
	for _, id := range h.Meta.SegmentKeyslots(0) {
		if k, ok := h.Meta.Keyslots[id]; ok {
			return k.KeySize
		}
	}
	return 0
}

// slotInfo is one key slot in `key list`.
type slotInfo struct {
	Keyslot  int    `json:"keyslot"`
	Type     string `json:"type"`
	Kind     string `json:"kind"` // passphrase, recovery, tpm2, … as far as tokens tell
	KDF      string `json:"kdf,omitempty"`
	Priority string `json:"priority"`
	Bound    bool   `json:"bound"` // holds the data segment's key
	Tokens   []int  `json:"tokens"`
}

func (a *app) keyListCommand() *cobra.Command {
	var headerFile string
	cmd := &cobra.Command{
		Use:     "list [flags] DEVICE",
		Short:   "List key slots, their KDFs and the tokens that use them",
		Example: `  volcrypt key list disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, true)
			if err != nil {
				return err
			}
			defer v.Close()
			slots := listSlots(v.Header)
			if a.json {
				return a.printJSON(map[string]any{"keyslots": slots})
			}
			fmt.Fprintf(a.stdout, "%-4s %-10s %-11s %-9s %-8s %s\n", "SLOT", "KIND", "KDF", "PRIORITY", "BOUND", "TOKENS")
			for _, s := range slots {
				fmt.Fprintf(a.stdout, "%-4d %-10s %-11s %-9s %-8t %v\n", s.Keyslot, s.Kind, s.KDF, s.Priority, s.Bound, s.Tokens)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&headerFile, "header", "", "detached header file")
	a.addJSONFlag(cmd)
	return cmd
}

func listSlots(h *header.Header) []slotInfo {
	bound := map[int]bool{}
	for _, id := range h.Meta.SegmentKeyslots(0) {
		bound[id] = true
	}
	tokens := h.Tokens()
	var out []slotInfo
	for _, id := range sortedKeys(h.Meta.Keyslots) {
		k := h.Meta.Keyslots[id]
		s := slotInfo{Keyslot: id, Type: k.Type, Kind: "passphrase", Priority: priorityName(k.PriorityValue()), Bound: bound[id], Tokens: []int{}}
		if k.KDF != nil {
			s.KDF = k.KDF.Type
		}
		if k.Type != header.KeyslotLUKS2 {
			s.Kind = k.Type
		}
		for _, t := range tokens {
			for _, ks := range t.Keyslots {
				if ks == id {
					s.Tokens = append(s.Tokens, t.ID)
					s.Kind = tokenKind(t.Type)
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// tokenKind names what kind of key a token's type stands for.
func tokenKind(t string) string {
	switch t {
	case "systemd-tpm2":
		return "tpm2"
	case "volcrypt-recovery", "systemd-recovery":
		return "recovery"
	case "systemd-fido2":
		return "fido2"
	case volume.TokenSuspend:
		return "clear-key"
	}
	return t
}
