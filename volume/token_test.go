package volume

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEnrollRecoveryEscrowFails: a failing escrow leaves the header as it
// was and the key material it saw written is gone from the disk.
func TestEnrollRecoveryEscrowFails(t *testing.T) {
	v, key, _ := formattedForWipe(t, 32<<20, FormatOptions{})
	before, err := os.ReadFile(v.Path)
	require.NoError(t, err)
	hdrSize := 2 * int(v.Header.Size)

	vaultDown := errors.New("vault down")
	var material []byte
	var escrowed string
	_, _, err = v.EnrollRecoveryEscrowed(context.Background(), key.Bytes(), -1, func(pw []byte, slot int) error {
		escrowed = string(pw)
		// The key material is on disk while escrow runs; no header names it.
		require.NotContains(t, v.Header.Meta.Keyslots, slot)
		cur, err := os.ReadFile(v.Path)
		require.NoError(t, err)
		require.Equal(t, before[:hdrSize], cur[:hdrSize], "no header written before escrow")
		material = diffRange(before, cur)
		require.NotEmpty(t, material, "the slot's key material is written before escrow runs")
		return vaultDown
	})
	require.ErrorIs(t, err, vaultDown)
	var ee *EscrowError
	require.ErrorAs(t, err, &ee)
	require.NotEmpty(t, escrowed)

	after, err := os.ReadFile(v.Path)
	require.NoError(t, err)
	require.Equal(t, before[:hdrSize], after[:hdrSize], "header unchanged")
	require.False(t, bytes.Contains(after, material), "the unused key material is wiped")

	v2, err := Load(v.Path, LoadOptions{ReadOnly: true})
	require.NoError(t, err)
	defer v2.Close()
	_, _, err = v2.Unlock([]byte(escrowed), UnlockOptions{Keyslot: -1})
	require.Error(t, err, "the escrowed password opens nothing")
}

// diffRange returns the bytes of b from the first to the last byte where
// it differs from a (same lengths).
func diffRange(a, b []byte) []byte {
	first, last := -1, -1
	for i := range a {
		if a[i] != b[i] {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil
	}
	return append([]byte(nil), b[first:last+1]...)
}
