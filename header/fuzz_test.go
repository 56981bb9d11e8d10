package header

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// seedHeader returns both copies of a freshly made header, with a token.
func seedHeader(t testing.TB) []byte {
	key := make([]byte, 64)
	h, err := New(key, NewOptions{Label: "fuzz"})
	require.NoError(t, err)
	_, err = h.AddToken(-1, json.RawMessage(`{"type":"x","keyslots":[],"a":[1,{"b":null}]}`))
	require.NoError(t, err)
	copies, err := h.encode(1)
	require.NoError(t, err)
	return append(copies[0], copies[1]...)
}

// FuzzRead feeds arbitrary disks to Read: it must never panic, and whatever
// it accepts must encode and read back to the same metadata.
func FuzzRead(f *testing.F) {
	seed := seedHeader(f)
	f.Add(seed)
	f.Add(seed[:DefaultMetadataSize])
	f.Add([]byte("LUKS\xba\xbe\x00\x02"))
	f.Fuzz(func(t *testing.T, disk []byte) {
		h, err := Read(bytes.NewReader(disk))
		if err != nil || h.Version != 2 {
			return
		}
		copies, err := h.encode(h.SeqID)
		require.NoError(t, err, "a header that was read must encode")
		h2, err := Read(bytes.NewReader(append(copies[0], copies[1]...)))
		require.NoError(t, err)
		a, _ := h.Meta.marshal()
		b, _ := h2.Meta.marshal()
		require.JSONEq(t, string(a), string(b))
	})
}

// FuzzMetadata feeds arbitrary JSON text to the metadata parser.
func FuzzMetadata(f *testing.F) {
	key := make([]byte, 64)
	h, err := New(key, NewOptions{})
	require.NoError(f, err)
	text, err := h.Meta.marshal()
	require.NoError(f, err)
	f.Add(text)
	f.Add([]byte(`{"keyslots":{},"tokens":{},"segments":{},"digests":{},"config":{"json_size":"12288","keyslots_size":"4096"}}`))
	f.Fuzz(func(t *testing.T, text []byte) {
		m, err := parseMetadata(text)
		if err != nil {
			return
		}
		out, err := m.marshal()
		require.NoError(t, err)
		m2, err := parseMetadata(out)
		require.NoError(t, err, "re-encoded metadata must parse: %s", out)
		out2, err := m2.marshal()
		require.NoError(t, err)
		require.Equal(t, string(out), string(out2))
	})
}

// FuzzToken feeds arbitrary JSON to AddToken: it must never panic, and a
// token it accepts must survive a write and a read byte for byte (tokens
// belong to their owner), still naming only existing key slots.
func FuzzToken(f *testing.F) {
	f.Add([]byte(`{"type":"systemd-tpm2","keyslots":["0"],"tpm2-blob":"AAEC","tpm2-pcrs":[7],"tpm2-pin":false}`))
	f.Add([]byte(`{"type":"volcrypt-recovery","keyslots":[]}`))
	f.Add([]byte(`{"type":"luks2-keyring","keyslots":["0"],"key_description":"x"}`))
	f.Add([]byte(`{"type":"x","keyslots":["0","0","31"],"a":{"b":[1e400,"\u0000"]}}`))
	f.Add([]byte(`{"type":"","keyslots":"0"}`))
	key := make([]byte, 64)
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, err := New(key, NewOptions{DigestIterations: 1000})
		require.NoError(t, err)
		h.Meta.Keyslots[0] = &Keyslot{Type: KeyslotLUKS2, KeySize: 64,
			AF:   &AF{Type: "luks1", Stripes: AFStripes, Hash: "sha256"},
			Area: Area{Type: "raw", Offset: U64(2 * h.Size), Size: 258048, Encryption: "aes-xts-plain64", KeySize: 64},
			KDF:  &KDF{Type: "pbkdf2", Hash: "sha256", Iterations: 1000, Salt: []byte("salt")}}
		h.Meta.Digests[0].Keyslots = IDList{0}
		id, err := h.AddToken(-1, raw)
		if err != nil {
			return
		}
		copies, err := h.encode(2)
		if err != nil {
			// Too large for the JSON area is the only acceptable reason.
			require.Contains(t, err.Error(), "do not fit")
			return
		}
		got, err := Read(bytes.NewReader(append(copies[0], copies[1]...)))
		require.NoError(t, err, "a token AddToken accepted must read back")
		require.Equal(t, string(h.Meta.Tokens[id]), string(got.Meta.Tokens[id]))
		for _, tok := range got.Tokens() {
			for _, k := range tok.Keyslots {
				require.Contains(t, got.Meta.Keyslots, k)
			}
		}
	})
}
