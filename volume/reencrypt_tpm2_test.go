package volume

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/swtpmtest"
	"github.com/volcrypt/volcrypt/tpm"
)

// TestReencryptKeepsTPM2Slot enrolls a swtpm, reencrypts with the slot's
// unsealed passphrase kept, and unlocks through the TPM token afterwards;
// without a TPM the slot is reported as failed, with the reason.
func TestReencryptKeepsTPM2Slot(t *testing.T) {
	tp := swtpmtest.Start(t)
	img, plain := encryptedImage(t, testDev, testDev-testReduce, 31)
	v, err := Load(img, LoadOptions{})
	require.NoError(t, err)
	key, _, err := v.Unlock([]byte(testPass), UnlockOptions{Keyslot: -1})
	require.NoError(t, err)
	slot, _, err := v.EnrollTPM2(context.Background(), key.Bytes(), TPM2EnrollOptions{Device: tp.Device, PCRs: []int{7}, Keyslot: -1})
	key.Wipe()
	require.NoError(t, err)
	require.Equal(t, []int{slot}, v.TPM2Keyslots())

	none := v.TPM2Passphrases(TPM2UnlockOptions{Device: "/nonexistent/tpm"})
	require.Empty(t, none.Passphrases)
	require.ErrorIs(t, none.Failed[slot], tpm.ErrNoTPM)

	keep := v.TPM2Passphrases(TPM2UnlockOptions{Device: tp.Device})
	require.NoError(t, v.Close())
	require.Empty(t, keep.Failed)
	require.Contains(t, keep.Passphrases, slot)
	v2, err := Reencrypt(context.Background(), img, []byte(testPass), ReencryptOptions{Keep: keep.Passphrases})
	keep.Wipe()
	require.NoError(t, err)
	defer v2.Close()
	require.Len(t, v2.Header.Meta.Keyslots, 2)
	newKey, tpmSlot, err := v2.UnlockTPM2(TPM2UnlockOptions{Device: tp.Device})
	require.NoError(t, err, "the TPM token opens the new volume key")
	newKey.Wipe()
	require.Equal(t, v2.TPM2Keyslots(), []int{tpmSlot})
	requireSameData(t, plain, plainBytes(t, img, int64(len(plain))))
}
