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
