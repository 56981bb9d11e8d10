package volume

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/kdf"
)

func inVM(t *testing.T) {
	t.Helper()
	if os.Getenv("VOLCRYPT_VM") != "1" {
		t.Skip("needs device-mapper as root: runs in the VM (go test -exec $PWD/scripts/vmtest -run TestVM ./volume/)")
	}
}

var cheapKDF = KDFOptions{Algorithm: kdf.PBKDF2, ForceIterations: 1000}

func testImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	require.NoError(t, os.Truncate(p, size))
	return p
}

// TestVMEngineMatchesDMCrypt checks that the userspace engine and the
// kernel's dm-crypt produce the same ciphertext and read each other's.
func TestVMEngineMatchesDMCrypt(t *testing.T) {
	inVM(t)
	for _, sector := range []int{512, 4096} {
		t.Run(map[int]string{512: "sector512", 4096: "sector4096"}[sector], func(t *testing.T) {
			img := testImage(t, 40<<20)
			v, err := Format(context.Background(), img, []byte("p"), FormatOptions{SectorSize: sector, KDF: cheapKDF})
			require.NoError(t, err)
			defer v.Close()
			key, _, err := v.Unlock([]byte("p"), UnlockOptions{Keyslot: -1})
			require.NoError(t, err)
			defer key.Wipe()
			seg, _ := v.Header.DataSegment()

			data := make([]byte, 1<<20)
			_, _ = rand.Read(data)
			const at = 3 << 20

			// dm-crypt writes; the engine reads it back.
			require.NoError(t, v.Activate("eng", key, ActivateOptions{}))
			writeDevice(t, "/dev/mapper/eng", data, at)
			require.NoError(t, Deactivate("eng", false))
			pt, err := v.Plaintext(key)
			require.NoError(t, err)
			got := make([]byte, len(data))
			_, err = pt.ReadAt(got, at)
			require.NoError(t, err)
			require.Equal(t, data, got, "the engine must decrypt what dm-crypt wrote")

			// The engine writes the same plaintext again: same ciphertext.
			byKernel := readRaw(t, img, int64(seg.Offset)+at, len(data))
			_, err = pt.WriteAt(data, at)
			require.NoError(t, err)
			require.Equal(t, byKernel, readRaw(t, img, int64(seg.Offset)+at, len(data)), "ciphertext must equal dm-crypt's")

			// The engine writes new data at an unaligned offset; dm-crypt reads it.
			other := make([]byte, 100000)
			_, _ = rand.Read(other)
			_, err = pt.WriteAt(other, 7<<20+123)
			require.NoError(t, err)
			require.NoError(t, pt.Close())
			require.NoError(t, v.Activate("eng", key, ActivateOptions{}))
			require.Equal(t, other, readDevice(t, "/dev/mapper/eng", 7<<20+123, len(other)))
			require.NoError(t, Deactivate("eng", false))
		})
	}
}

func writeDevice(t *testing.T, dev string, data []byte, at int64) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(data, at)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}

func readDevice(t *testing.T, dev string, at int64, n int) []byte {
	t.Helper()
	return readRaw(t, dev, at, n)
}

func readRaw(t *testing.T, path string, at int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, n)
	_, err = f.ReadAt(buf, at)
	require.NoError(t, err)
	return buf
}
