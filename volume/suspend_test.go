package volume

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/swtpmtest"
	"github.com/volcrypt/volcrypt/tpm"
)

// TestSuspendResume follows a firmware update under suspended TPM
// protection: the PCRs change, the clear key opens for the counted boots,
// and at the last one the enrollment is re-sealed to the new PCR values.
func TestSuspendResume(t *testing.T) {
	tp := swtpmtest.Start(t)
	ctx := context.Background()
	img := testImage(t, 20<<20)
	v, err := Format(ctx, img, []byte("admin"), FormatOptions{KDF: cheapKDF})
	require.NoError(t, err)
	defer v.Close()
	key, _, err := v.Unlock([]byte("admin"), UnlockOptions{Keyslot: -1})
	require.NoError(t, err)
	defer key.Wipe()
	_, _, err = v.EnrollTPM2(ctx, key.Bytes(), TPM2EnrollOptions{Device: tp.Device, PCRs: []int{7}, Keyslot: -1})
	require.NoError(t, err)

	clearSlot, err := v.SuspendTPM2(ctx, key.Bytes(), 2)
	require.NoError(t, err)
	left, ok := v.Suspended()
	require.True(t, ok)
	require.Equal(t, 2, left)

	// The update changes PCR 7: the TPM refuses, the clear key opens.
	require.NoError(t, tp.ExtendPCR(7))
	_, _, err = v.UnlockTPM2(TPM2UnlockOptions{Device: tp.Device})
	require.ErrorIs(t, err, tpm.ErrPCRMismatch)
	k2, slot, err := v.UnlockSuspended()
	require.NoError(t, err)
	require.Equal(t, clearSlot, slot)
	require.True(t, k2.Equal(key.Bytes()))
	k2.Wipe()

	left, err = v.CountBoot(ctx, key.Bytes(), tp.Device)
	require.NoError(t, err)
	require.Equal(t, 1, left)
	left, err = v.CountBoot(ctx, key.Bytes(), tp.Device)
	require.NoError(t, err)
	require.Equal(t, 0, left)

	// Resumed: no clear key, and the TPM opens again under the new PCR 7.
	_, ok = v.Suspended()
	require.False(t, ok)
	_, ok = v.Header.Meta.Keyslots[clearSlot]
	require.False(t, ok, "the clear key's slot must be destroyed")
	k3, _, err := v.UnlockTPM2(TPM2UnlockOptions{Device: tp.Device})
	require.NoError(t, err)
	require.True(t, k3.Equal(key.Bytes()))
	k3.Wipe()
	n := 0
	for _, tk := range v.Header.Tokens() {
		if tk.Type == TokenTPM2 {
			n++
		}
	}
	require.Equal(t, 1, n, "the old enrollment is replaced, not kept beside the new one")
	_, _, err = v.UnlockSuspended()
	require.ErrorIs(t, err, ErrNotSuspended)
}
