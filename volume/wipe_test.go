package volume

import (
	"bytes"
	"context"
	"crypto/aes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/xts"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
)

// patternImage is an image of size bytes filled with 0xa5, so that what a
// wipe did not reach is recognizable.
func patternImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(p, bytes.Repeat([]byte{0xa5}, int(size)), 0o600))
	return p
}

// formattedForWipe formats a pattern image of size bytes with passphrase
// "pw" and returns the volume, its key and the data offset.
func formattedForWipe(t *testing.T, size int64, o FormatOptions) (*Volume, *secret.Buffer, int64) {
	t.Helper()
	img := patternImage(t, size)
	o.KDF, o.Force = cheapKDF, true
	v, err := Format(context.Background(), img, []byte("pw"), o)
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	key, _, err := v.Unlock([]byte("pw"), UnlockOptions{Keyslot: -1})
	require.NoError(t, err)
	t.Cleanup(key.Wipe)
	seg, err := v.Header.DataSegment()
	require.NoError(t, err)
	return v, key, int64(seg.Offset)
}

// cryptsetupVolumeKey returns the volume key as cryptsetup reads it.
func cryptsetupVolumeKey(t *testing.T, img, pass string) []byte {
	t.Helper()
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed: the independent check needs it (apt-get install cryptsetup-bin)")
	}
	dir := t.TempDir()
	kf, vkf := filepath.Join(dir, "pass"), filepath.Join(dir, "vk")
	require.NoError(t, os.WriteFile(kf, []byte(pass), 0o600))
	out, err := exec.Command(cs, "luksDump", "--dump-volume-key", "--volume-key-file", vkf, "-q", "--key-file", kf, img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	vk, err := os.ReadFile(vkf)
	require.NoError(t, err)
	return vk
}

// decryptXTS decrypts ciphertext of an aes-xts-plain64 segment with Go's
// own XTS (not volcrypt's engine): IVs count 512-byte units from the
// segment's start, as dm-crypt's without iv_large_sectors.
func decryptXTS(t *testing.T, key, ct []byte, sectorSize int) []byte {
	t.Helper()
	c, err := xts.NewCipher(aes.NewCipher, key)
	require.NoError(t, err)
	pt := make([]byte, len(ct))
	for off := 0; off < len(ct); off += sectorSize {
		c.Decrypt(pt[off:off+sectorSize], ct[off:off+sectorSize], uint64(off/512))
	}
	return pt
}

func TestWipe(t *testing.T) {
	for _, tc := range []struct {
		name       string
		keyBits    int
		sectorSize int
	}{
		{"xts512-sector4096", 512, 4096},
		{"xts256-sector512", 256, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, key, offset := formattedForWipe(t, 26<<20, FormatOptions{KeySizeBits: tc.keyBits, SectorSize: tc.sectorSize})
			img := v.Path
			size := int64(26<<20) - offset

			var reports []Progress
			require.NoError(t, v.Wipe(context.Background(), key, func(p Progress) { reports = append(reports, p) }))
			require.Equal(t, []Progress{{0, size}, {4 << 20, size}, {8 << 20, size}, {size, size}}, reports)

			raw, err := os.ReadFile(img)
			require.NoError(t, err)
			ct := raw[offset:]
			require.False(t, bytes.Contains(ct, bytes.Repeat([]byte{0xa5}, 16)), "old data left in the segment")
			require.False(t, bytes.Contains(ct, make([]byte, 64)), "plaintext zeros on disk")

			// cryptsetup's volume key and Go's XTS read zeros: what dm-crypt would show.
			vk := cryptsetupVolumeKey(t, img, "pw")
			require.True(t, key.Equal(vk))
			require.Equal(t, make([]byte, size), decryptXTS(t, vk, ct, tc.sectorSize))

			// The header is intact and still opens with cryptsetup.
			h, err := header.Read(bytes.NewReader(raw))
			require.NoError(t, err)
			require.Empty(t, h.Damaged)
			cryptsetupOpens(t, img, "pw")
		})
	}
}

func TestWipeCancelled(t *testing.T) {
	v, key, offset := formattedForWipe(t, 28<<20, FormatOptions{})
	img := v.Path
	ctx, cancel := context.WithCancel(context.Background())
	err := v.Wipe(ctx, key, func(p Progress) {
		if p.DoneBytes > 0 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "wipe stopped after 4194304 of 12582912 bytes")

	// The first chunk reads as zeros, the rest was not touched, and the
	// volume still unlocks.
	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	ct := raw[offset:]
	require.Equal(t, make([]byte, 4<<20), decryptXTS(t, cryptsetupVolumeKey(t, img, "pw"), ct[:4<<20], 4096))
	require.Equal(t, bytes.Repeat([]byte{0xa5}, 8<<20), ct[4<<20:])
	v2, err := Load(img, LoadOptions{})
	require.NoError(t, err)
	defer v2.Close()
	k2, _, err := v2.Unlock([]byte("pw"), UnlockOptions{Keyslot: -1})
	require.NoError(t, err)
	k2.Wipe()

	// A read-only volume is refused.
	ro, err := Load(img, LoadOptions{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	require.ErrorContains(t, ro.Wipe(context.Background(), key, nil), "read-only")
}
