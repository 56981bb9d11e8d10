package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/volume"
)

func (a *app) dumpCommand() *cobra.Command {
	var (
		key        keyFlags
		headerFile string
		volumeKey  bool
	)
	cmd := &cobra.Command{
		Use:   "dump [flags] DEVICE",
		Short: "Show a LUKS header: key slots, tokens, segments and digests",
		Example: `  volcrypt dump disk.img
  volcrypt dump --json disk.img
  volcrypt dump --volume-key --key-file key.bin -q disk.img`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.load(args[0], headerFile, true)
			if err != nil {
				return err
			}
			defer v.Close()
			if volumeKey {
				return a.dumpVolumeKey(v, key)
			}
			if a.json {
				return a.printJSON(headerJSON(v.Header))
			}
			writeDump(a.stdout, v.Header)
			return nil
		},
	}
	key.register(cmd.Flags())
	cmd.Flags().StringVar(&headerFile, "header", "", "detached header file")
	cmd.Flags().BoolVar(&volumeKey, "volume-key", false, "print the volume key (as one line of hex) after unlocking")
	a.addJSONFlag(cmd)
	return cmd
}

func (a *app) dumpVolumeKey(v *volume.Volume, key keyFlags) error {
	if err := a.confirm("Header dump with volume key is sensitive information\nwhich allows access to encrypted partition without a passphrase."); err != nil {
		return err
	}
	pass, err := a.passphrase(key, fmt.Sprintf("Enter passphrase for %s: ", v.Path), false)
	if err != nil {
		return err
	}
	defer pass.Wipe()
	vk, slot, err := v.Unlock(pass.Bytes(), volume.UnlockOptions{Keyslot: key.slot})
	if err != nil {
		return err
	}
	defer vk.Wipe()
	if a.json {
		return a.printJSON(map[string]any{"keyslot": slot, "key_bits": vk.Len() * 8, "volume_key": hex.EncodeToString(vk.Bytes())})
	}
	fmt.Fprintln(a.stdout, hex.EncodeToString(vk.Bytes()))
	return nil
}

// headerJSON is the stable JSON form of dump: the binary header's fields
// and the metadata exactly as stored.
func headerJSON(h *header.Header) map[string]any {
	return map[string]any{
		"version": h.Version, "uuid": h.UUID, "label": h.Label, "subsystem": h.Subsystem,
		"seqid": h.SeqID, "header_size": h.Size, "checksum_alg": h.CsumAlg,
		"metadata": h.Meta,
	}
}

func writeDump(w io.Writer, h *header.Header) {
	m := h.Meta
	fmt.Fprintf(w, "LUKS header information\nVersion:       \t%d\n", h.Version)
	if h.Version == 2 {
		fmt.Fprintf(w, "Epoch:         \t%d\nMetadata area: \t%d [bytes]\nKeyslots area: \t%d [bytes]\n",
			h.SeqID, h.Size, m.Config.KeyslotsSize)
	}
	fmt.Fprintf(w, "UUID:          \t%s\nLabel:         \t%s\nSubsystem:     \t%s\nFlags:       \t%s\n",
		h.UUID, orNone(h.Label, "(no label)"), orNone(h.Subsystem, "(no subsystem)"), orNone(strings.Join(m.Config.Flags, " "), "(no flags)"))
	if r := m.Config.Requirements; r != nil && len(r.Mandatory) > 0 {
		fmt.Fprintf(w, "Requirements:\t%s\n", strings.Join(r.Mandatory, " "))
	}
	fmt.Fprintln(w, "\nData segments:")
	for _, id := range sortedKeys(m.Segments) {
		s := m.Segments[id]
		fmt.Fprintf(w, "  %d: %s\n\toffset: %d [bytes]\n", id, s.Type, s.Offset)
		if s.Size.Dynamic {
			fmt.Fprintf(w, "\tlength: (whole device)\n")
		} else {
			fmt.Fprintf(w, "\tlength: %d [bytes]\n", s.Size.Bytes)
		}
		if s.Type == header.SegmentCrypt {
			fmt.Fprintf(w, "\tcipher: %s\n\tsector: %d [bytes]\n", s.Encryption, s.SectorSize)
		}
		if len(s.Flags) > 0 {
			fmt.Fprintf(w, "\tflags : %s\n", strings.Join(s.Flags, " "))
		}
	}
	fmt.Fprintln(w, "\nKeyslots:")
	for _, id := range sortedKeys(m.Keyslots) {
		k := m.Keyslots[id]
		fmt.Fprintf(w, "  %d: %s\n", id, k.Type)
		if k.Type != header.KeyslotLUKS2 {
			continue
		}
		fmt.Fprintf(w, "\tKey:        %d bits\n\tPriority:   %s\n\tCipher:     %s\n\tCipher key: %d bits\n",
			k.KeySize*8, priorityName(k.PriorityValue()), k.Area.Encryption, k.Area.KeySize*8)
		fmt.Fprintf(w, "\tPBKDF:      %s\n", k.KDF.Type)
		if k.KDF.Type == "pbkdf2" {
			fmt.Fprintf(w, "\tHash:       %s\n\tIterations: %d\n", k.KDF.Hash, k.KDF.Iterations)
		} else {
			fmt.Fprintf(w, "\tTime cost:  %d\n\tMemory:     %d\n\tThreads:    %d\n", k.KDF.Time, k.KDF.Memory, k.KDF.CPUs)
		}
		fmt.Fprintf(w, "\tAF stripes: %d\n\tAF hash:    %s\n\tArea offset:%d [bytes]\n\tArea length:%d [bytes]\n",
			k.AF.Stripes, k.AF.Hash, k.Area.Offset, k.Area.Size)
		if did, ok := digestOf(m, id); ok {
			fmt.Fprintf(w, "\tDigest ID:  %d\n", did)
		} else {
			fmt.Fprintf(w, "\tDigest ID:  (none)\n")
		}
	}
	fmt.Fprintln(w, "Tokens:")
	for _, t := range h.Tokens() {
		fmt.Fprintf(w, "  %d: %s\n", t.ID, t.Type)
		for _, k := range t.Keyslots {
			fmt.Fprintf(w, "\tKeyslot:    %d\n", k)
		}
	}
	fmt.Fprintln(w, "Digests:")
	for _, id := range sortedKeys(m.Digests) {
		d := m.Digests[id]
		fmt.Fprintf(w, "  %d: %s\n\tHash:       %s\n\tIterations: %d\n\tSalt:       %s\n\tDigest:     %s\n",
			id, d.Type, d.Hash, d.Iterations, spacedHex(d.Salt), spacedHex(d.Digest))
	}
}

func digestOf(m *header.Metadata, slot int) (int, bool) {
	for _, id := range sortedKeys(m.Digests) {
		if m.Digests[id].Keyslots.Contains(slot) {
			return id, true
		}
	}
	return 0, false
}

func sortedKeys[T any](m map[int]T) []int {
	ids := make([]int, 0, len(m))
	for k := range m {
		ids = append(ids, k)
	}
	sort.Ints(ids)
	return ids
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func priorityName(p int) string {
	switch p {
	case header.PriorityIgnore:
		return "ignored"
	case header.PriorityHigh:
		return "preferred"
	}
	return "normal"
}

func spacedHex(b []byte) string {
	h := hex.EncodeToString(b)
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, " ")
}
