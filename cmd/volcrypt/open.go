package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/volume"
)

func (a *app) openCommand() *cobra.Command {
	var (
		key        keyFlags
		headerFile string
		test       bool
		readOnly   bool
	)
	cmd := &cobra.Command{
		Use:   "open [flags] DEVICE [NAME]",
		Short: "Unlock a volume and map it as /dev/mapper/NAME (or only check a key with --test)",
		Example: `  volcrypt open disk.img data
  volcrypt open --test --key-file key.bin disk.img`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !test && len(args) != 2 {
				return usageError{fmt.Errorf("open needs DEVICE and NAME (or --test)")}
			}
			v, err := a.load(args[0], headerFile, test || readOnly)
			if err != nil {
				return err
			}
			defer v.Close()
			pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", args[0]), false)
			if err != nil {
				return err
			}
			defer pass.Wipe()
			vk, slot, err := v.Unlock(pass.Bytes(), volume.UnlockOptions{Keyslot: key.slot})
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
			return fmt.Errorf("mapping not implemented yet")
		},
	}
	fs := cmd.Flags()
	key.register(fs)
	fs.StringVar(&headerFile, "header", "", "detached header file")
	fs.BoolVar(&test, "test", false, "only check that the key opens the volume; map nothing")
	fs.BoolVar(&test, "test-passphrase", false, "same as --test (cryptsetup's name)")
	fs.BoolVar(&readOnly, "read-only", false, "map the volume read-only")
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) closeCommand() *cobra.Command {
	return &cobra.Command{Use: "close NAME", Short: "Remove a mapping", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return fmt.Errorf("not implemented yet") }}
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{Use: "status NAME", Short: "Show a mapping", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return fmt.Errorf("not implemented yet") }}
}
