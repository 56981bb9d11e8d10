package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func (a *app) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "List, export, import and remove LUKS2 tokens (cryptsetup's token JSON)",
		Example: `  volcrypt token list disk.img
  volcrypt token export --token-id 0 disk.img > token.json`,
	}
	var headerFile string
	cmd.PersistentFlags().StringVar(&headerFile, "header", "", "detached header file")

	list := &cobra.Command{
		Use:     "list [flags] DEVICE",
		Short:   "List tokens with their types and key slots",
		Example: `  volcrypt token list --json disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, true)
			if err != nil {
				return err
			}
			defer v.Close()
			type row struct {
				ID       int    `json:"token"`
				Type     string `json:"type"`
				Keyslots []int  `json:"keyslots"`
			}
			rows := []row{}
			for _, t := range v.Header.Tokens() {
				rows = append(rows, row{t.ID, t.Type, append([]int{}, t.Keyslots...)})
			}
			if a.json {
				return a.printJSON(map[string]any{"tokens": rows})
			}
			fmt.Fprintf(a.stdout, "%-6s %-20s %s\n", "TOKEN", "TYPE", "KEYSLOTS")
			for _, r := range rows {
				fmt.Fprintf(a.stdout, "%-6d %-20s %v\n", r.ID, r.Type, r.Keyslots)
			}
			return nil
		},
	}
	a.addJSONFlag(list)

	var exportID int
	export := &cobra.Command{
		Use:     "export --token-id N DEVICE",
		Short:   "Print a token's JSON",
		Example: `  volcrypt token export --token-id 0 disk.img > token.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, true)
			if err != nil {
				return err
			}
			defer v.Close()
			for _, t := range v.Header.Tokens() {
				if t.ID == exportID {
					_, err := fmt.Fprintf(a.stdout, "%s\n", t.JSON)
					return err
				}
			}
			return usageError{fmt.Errorf("token %d does not exist", exportID)}
		},
	}
	export.Flags().IntVar(&exportID, "token-id", -1, "token to export")
	_ = export.MarkFlagRequired("token-id")

	var (
		importID   int
		importFile string
		importSlot int
	)
	imp := &cobra.Command{
		Use:     "import [--json-file F] [--token-id N] [--key-slot N] DEVICE",
		Short:   "Store a token from JSON (standard input by default)",
		Example: `  volcrypt token import --json-file token.json disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var raw []byte
			var err error
			if importFile == "" || importFile == "-" {
				raw, err = io.ReadAll(io.LimitReader(a.stdin, 1<<20))
			} else {
				raw, err = os.ReadFile(importFile)
			}
			if err != nil {
				return fmt.Errorf("token JSON: %w", err)
			}
			if importSlot >= 0 {
				var m map[string]json.RawMessage
				if err := json.Unmarshal(raw, &m); err != nil || m == nil {
					return usageError{fmt.Errorf("token JSON is not an object")}
				}
				m["keyslots"], _ = json.Marshal([]string{fmt.Sprint(importSlot)})
				raw, _ = json.Marshal(m)
			}
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			id, err := v.ImportToken(raw, importID)
			if err != nil {
				return usageError{err}
			}
			if a.json {
				return a.printJSON(map[string]any{"token": id})
			}
			fmt.Fprintf(a.stderr, "Token %d created.\n", id)
			return nil
		},
	}
	imp.Flags().IntVar(&importID, "token-id", -1, "token id (default: lowest free)")
	imp.Flags().StringVar(&importFile, "json-file", "", "read the token JSON from this file (- or empty: standard input)")
	imp.Flags().IntVar(&importSlot, "key-slot", -1, "assign the token to this key slot")
	a.addJSONFlag(imp)

	var removeID int
	remove := &cobra.Command{
		Use:     "remove --token-id N DEVICE",
		Short:   "Remove a token (its key slot stays)",
		Example: `  volcrypt token remove --token-id 1 disk.img`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, false)
			if err != nil {
				return err
			}
			defer v.Close()
			if err := v.RemoveToken(removeID); err != nil {
				return usageError{err}
			}
			fmt.Fprintf(a.stderr, "Token %d removed.\n", removeID)
			return nil
		},
	}
	remove.Flags().IntVar(&removeID, "token-id", -1, "token to remove")
	_ = remove.MarkFlagRequired("token-id")

	cmd.AddCommand(list, export, imp, remove)
	return cmd
}
