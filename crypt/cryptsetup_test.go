package crypt

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// luks2JSON is the part of cryptsetup's JSON metadata these tests read.
type luks2JSON struct {
	Keyslots map[string]struct {
		KeySize int `json:"key_size"`
		AF      struct {
			Stripes int    `json:"stripes"`
			Hash    string `json:"hash"`
		} `json:"af"`
		Area struct {
			Offset     string `json:"offset"`
			Size       string `json:"size"`
			Encryption string `json:"encryption"`
			KeySize    int    `json:"key_size"`
		} `json:"area"`
		KDF struct {
			Type       string `json:"type"`
			Hash       string `json:"hash"`
			Iterations int    `json:"iterations"`
			Salt       string `json:"salt"`
		} `json:"kdf"`
	} `json:"keyslots"`
	Segments map[string]struct {
		Type       string `json:"type"`
		Offset     string `json:"offset"`
		Size       string `json:"size"`
		IVTweak    string `json:"iv_tweak"`
		Encryption string `json:"encryption"`
		SectorSize int    `json:"sector_size"`
	} `json:"segments"`
}

func cryptsetup(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not found: skipping the on-disk format oracle")
	}
	return path
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %v: %s", name, args, stderr.String())
	return out
}

func atoi64(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err, "parse %q", s)
	return n
}

// TestCryptsetupReencryptOracle lets cryptsetup encrypt known plaintext in
// user space (offline reencryption, which reimplements dm-crypt's format)
// and reads it back through a Segment with the volume key cryptsetup
// reports. It also opens key slot 0 by hand: PBKDF2, key-slot area
// decryption with this package, anti-forensic merge, compared with the
// volume key. Together these pin data segments and key-slot areas to
// cryptsetup's on-disk format.
func TestCryptsetupReencryptOracle(t *testing.T) {
	cs := cryptsetup(t)
	if testing.Short() {
		t.Skip("short mode: skipping cryptsetup runs")
	}
	const reduceBytes = 32 << 20
	tests := []struct {
		name   string
		cipher []string
		sector int
	}{
		{"xts-plain64-512", nil, 512},
		{"xts-plain64-4096", nil, 4096},
		{"xts-plain64-256bit-4096", []string{"--cipher", "aes-xts-plain64", "--key-size", "256"}, 4096},
		{"cbc-essiv-512", []string{"--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"}, 512},
		{"cbc-essiv-4096", []string{"--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"}, 4096},
		{"xts-plain-2048", []string{"--cipher", "aes-xts-plain", "--key-size", "512"}, 2048},
		{"xts-plain64be-1024", []string{"--cipher", "aes-xts-plain64be", "--key-size", "512"}, 1024},
		{"xts-essiv-4096", []string{"--cipher", "aes-xts-essiv:sha256", "--key-size", "512"}, 4096},
		{"cbc-plain64-128bit-512", []string{"--cipher", "aes-cbc-plain64", "--key-size", "128"}, 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "img")
			keyFile := filepath.Join(dir, "key")
			vkFile := filepath.Join(dir, "vk")
			passphrase := randBytes(t, 32)
			require.NoError(t, os.WriteFile(keyFile, passphrase, 0o600))
			plain := randBytes(t, 40<<20)
			require.NoError(t, os.WriteFile(img, plain, 0o600))

			args := []string{"reencrypt", "--encrypt", "--type", "luks2", "--force-offline-reencrypt",
				"--reduce-device-size", strconv.Itoa(reduceBytes), "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
				"--sector-size", strconv.Itoa(tt.sector), "-q", "--key-file", keyFile}
			args = append(args, tt.cipher...)
			run(t, cs, append(args, img)...)
			run(t, cs, "luksDump", "--dump-volume-key", "--volume-key-file", vkFile, "--batch-mode", "--key-file", keyFile, img)
			vk, err := os.ReadFile(vkFile)
			require.NoError(t, err)

			var meta luks2JSON
			require.NoError(t, json.Unmarshal(run(t, cs, "luksDump", "--dump-json-metadata", img), &meta))
			require.Len(t, meta.Segments, 1, "reencryption finished")
			seg := meta.Segments["0"]
			require.Equal(t, "crypt", seg.Type)
			require.Equal(t, tt.sector, seg.SectorSize)

			c, err := New(seg.Encryption, vk, seg.SectorSize)
			require.NoError(t, err)
			f, err := os.Open(img)
			require.NoError(t, err)
			defer f.Close()
			fi, err := f.Stat()
			require.NoError(t, err)

			offset := atoi64(t, seg.Offset)
			size := fi.Size() - offset
			if seg.Size != "dynamic" {
				size = atoi64(t, seg.Size)
			}
			s := NewSegment(f, c, offset, size, uint64(atoi64(t, seg.IVTweak)))
			got := make([]byte, s.Size())
			n, err := s.ReadAt(got, 0)
			require.NoError(t, err)
			require.Equal(t, len(got), n)
			// Offline encryption moves the first (image size − reduction)
			// bytes of plaintext behind the new header and encrypts them; the
			// rest of the segment is left-over bytes, not ciphertext.
			moved := len(plain) - reduceBytes
			require.Greater(t, len(got), moved)
			require.True(t, bytes.Equal(plain[:moved], got[:moved]), "segment plaintext differs from what cryptsetup encrypted")
			require.False(t, bytes.Equal(plain[moved:moved+4096], got[moved:moved+4096]), "the oracle must be able to tell apart")

			checkKeyslot(t, meta, passphrase, f, vk)
		})
	}
}

// checkKeyslot opens key slot 0 (PBKDF2) with this package's cipher for the
// key-slot area and checks the merged key is the volume key.
func checkKeyslot(t *testing.T, meta luks2JSON, passphrase []byte, f *os.File, vk []byte) {
	t.Helper()
	ks, ok := meta.Keyslots["0"]
	require.True(t, ok)
	require.Equal(t, "pbkdf2", ks.KDF.Type)
	require.Equal(t, "sha256", ks.AF.Hash)
	salt, err := base64.StdEncoding.DecodeString(ks.KDF.Salt)
	require.NoError(t, err)
	areaKey, err := pbkdf2.Key(sha256.New, string(passphrase), salt, ks.KDF.Iterations, ks.Area.KeySize)
	require.NoError(t, err)
	c, err := New(ks.Area.Encryption, areaKey, 512)
	require.NoError(t, err)
	defer c.Wipe()

	length := (ks.KeySize*ks.AF.Stripes + 511) / 512 * 512
	area := make([]byte, length)
	_, err = f.ReadAt(area, atoi64(t, ks.Area.Offset))
	require.NoError(t, err)
	require.NoError(t, c.Decrypt(area, area, 0))
	require.Equal(t, vk, afMerge(area, ks.KeySize, ks.AF.Stripes))
}

// afMerge is LUKS's anti-forensic merge with SHA-256 diffusion.
func afMerge(material []byte, keySize, stripes int) []byte {
	d := make([]byte, keySize)
	for i := 0; i < stripes-1; i++ {
		for j := range d {
			d[j] ^= material[i*keySize+j]
		}
		for blk := 0; blk*sha256.Size < keySize; blk++ {
			chunk := d[blk*sha256.Size : min((blk+1)*sha256.Size, keySize)]
			h := sha256.New()
			_ = binary.Write(h, binary.BigEndian, uint32(blk))
			h.Write(chunk)
			copy(chunk, h.Sum(nil))
		}
	}
	last := material[(stripes-1)*keySize : stripes*keySize]
	for j := range d {
		d[j] ^= last[j]
	}
	return d
}

// TestCryptsetupFormatKeyslot checks the key-slot area of volumes made by
// luksFormat, for both sector sizes and the CBC-ESSIV cipher.
func TestCryptsetupFormatKeyslot(t *testing.T) {
	cs := cryptsetup(t)
	tests := []struct {
		name string
		args []string
	}{
		{"xts-512", []string{"--sector-size", "512"}},
		{"xts-4096", []string{"--sector-size", "4096"}},
		{"cbc-essiv", []string{"--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "img")
			keyFile := filepath.Join(dir, "key")
			vkFile := filepath.Join(dir, "vk")
			passphrase := randBytes(t, 32)
			require.NoError(t, os.WriteFile(keyFile, passphrase, 0o600))
			require.NoError(t, os.WriteFile(img, make([]byte, 20<<20), 0o600))
			args := append([]string{"luksFormat", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
				"-q", "--key-file", keyFile}, tt.args...)
			run(t, cs, append(args, img)...)
			run(t, cs, "luksDump", "--dump-volume-key", "--volume-key-file", vkFile, "--batch-mode", "--key-file", keyFile, img)
			vk, err := os.ReadFile(vkFile)
			require.NoError(t, err)
			var meta luks2JSON
			require.NoError(t, json.Unmarshal(run(t, cs, "luksDump", "--dump-json-metadata", img), &meta))
			f, err := os.Open(img)
			require.NoError(t, err)
			defer f.Close()
			checkKeyslot(t, meta, passphrase, f, vk)
		})
	}
}
