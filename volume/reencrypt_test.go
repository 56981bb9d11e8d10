package volume

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/kdf"
)


const testPass = "in-place passphrase"

// fsImage makes a device image of devSize bytes holding an ext4 file system
// of fsSize bytes full of files, and returns its path and the plain bytes
// of the file system.
func fsImage(t *testing.T, devSize, fsSize int64, seed uint64) (string, []byte) {
	t.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "files")
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range 40 {
		sub := filepath.Join(src, fmt.Sprintf("d%d", i%5))
		require.NoError(t, os.MkdirAll(sub, 0o755))
		b := make([]byte, r.IntN(600<<10)+1)
		for k := range b {
			b[k] = byte(r.Uint32())
		}
		require.NoError(t, os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", i)), b, 0o644))
	}
	img := filepath.Join(dir, "disk.img")
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, fsSize))
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", src, img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, os.Truncate(img, devSize))
	plain, err := os.ReadFile(img)
	require.NoError(t, err)
	return img, plain[:fsSize]
}

// plainBytes reads n bytes of a volume's data through the userspace engine.
func plainBytes(t *testing.T, path string, n int64) []byte {
	t.Helper()
	v, err := Load(path, LoadOptions{ReadOnly: true})
	require.NoError(t, err)
	defer v.Close()
	require.Empty(t, v.Header.Meta.UnmetRequirements())
	_, k := v.Header.Meta.ReencryptKeyslot()
	require.Nil(t, k, "reencryption metadata left behind")
	key, _, err := v.Unlock([]byte(testPass), UnlockOptions{Keyslot: -1})
	require.NoError(t, err)
	defer key.Wipe()
	p, err := v.Plaintext(key)
	require.NoError(t, err)
	defer p.Close()
	require.GreaterOrEqual(t, p.Size(), n)
	b := make([]byte, n)
	_, err = p.ReadAt(b, 0)
	require.NoError(t, err)
	return b
}

// fsck checks a file system image read-only.
func fsck(t *testing.T, plain []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "fs.img")
	require.NoError(t, os.WriteFile(f, plain, 0o600))
	out, err := exec.Command("e2fsck", "-fn", f).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

func requireSameData(t *testing.T, want, got []byte) {
	t.Helper()
	if !bytes.Equal(want, got) {
		i := 0
		for i < len(want) && want[i] == got[i] {
			i++
		}
		t.Fatalf("data differs from byte %d on (sha256 %x, want %x)", i, sha256.Sum256(got), sha256.Sum256(want))
	}
}

func encryptOpts(reduce int64) EncryptOptions {
	return EncryptOptions{FormatOptions: FormatOptions{KDF: cheapKDF}, ReduceDeviceSizeBytes: reduce}
}

func TestEncryptInPlace(t *testing.T) {
	for _, tc := range []struct {
		name         string
		dev, fs, red int64
		sector       int
		cipher       string
	}{
		{"64m-reduce-16m", 64 << 20, 48 << 20, 16 << 20, 0, ""},
		{"uneven-tail", 40<<20 + 12<<10, 32<<20 + 12<<10, 8 << 20, 0, ""},
		{"4k-sectors-aes256", 48 << 20, 32 << 20, 16 << 20, 4096, "aes-xts-plain64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, plain := fsImage(t, tc.dev, tc.fs, 1)
			o := encryptOpts(tc.red)
			o.SectorSize = tc.sector
			o.Cipher = tc.cipher
			var calls int
			o.Progress = func(Progress) { calls++ }
			v, err := Encrypt(context.Background(), img, []byte(testPass), o)
			require.NoError(t, err)
			require.NoError(t, v.Close())
			require.Positive(t, calls)
			got := plainBytes(t, img, tc.fs)
			requireSameData(t, plain, got)
			fsck(t, got)
			// The moved copy of the plain head is wiped.
			raw, err := os.ReadFile(img)
			require.NoError(t, err)
			require.False(t, bytes.Contains(raw[tc.dev-tc.red/2:], plain[1024:2048]), "plain superblock left in the moved segment")
			if _, err := exec.LookPath("cryptsetup"); err == nil {
				cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", "-", img)
				cmd.Stdin = bytes.NewReader([]byte(testPass))
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "%s", out)
			}
		})
	}
}

func TestEncryptRefuses(t *testing.T) {
	img, _ := fsImage(t, 64<<20, 56<<20, 2)
	_, err := Encrypt(context.Background(), img, []byte(testPass), encryptOpts(16<<20))
	require.ErrorIs(t, err, kdf.ErrInvalidParams, "file system larger than what is left")
	_, err = Encrypt(context.Background(), img, []byte(testPass), encryptOpts(0))
	require.ErrorIs(t, err, kdf.ErrInvalidParams)

	img, _ = fsImage(t, 64<<20, 48<<20, 2)
	v, err := Encrypt(context.Background(), img, []byte(testPass), encryptOpts(16<<20))
	require.NoError(t, err)
	v.Close()
	_, err = Encrypt(context.Background(), img, []byte(testPass), encryptOpts(16<<20))
	require.ErrorIs(t, err, ErrHasSignature, "already encrypted")
	_ = header.ErrWrongKey
}
