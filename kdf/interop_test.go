package kdf

import (
	"crypto/aes"
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/xts"
)

// luks2Meta is the part of cryptsetup's --dump-json-metadata output this
// test reads.
type luks2Meta struct {
	Keyslots map[string]struct {
		KeySize int `json:"key_size"`
		AF      struct {
			Stripes int    `json:"stripes"`
			Hash    string `json:"hash"`
		} `json:"af"`
		Area struct {
			Offset     string `json:"offset"`
			Encryption string `json:"encryption"`
			KeySize    int    `json:"key_size"`
		} `json:"area"`
		KDF struct {
			Type       string `json:"type"`
			Hash       string `json:"hash"`
			Iterations uint32 `json:"iterations"`
			Time       uint32 `json:"time"`
			Memory     uint32 `json:"memory"`
			CPUs       uint32 `json:"cpus"`
			Salt       string `json:"salt"`
		} `json:"kdf"`
	} `json:"keyslots"`
	Digests map[string]struct {
		Hash       string `json:"hash"`
		Iterations uint32 `json:"iterations"`
		Salt       string `json:"salt"`
		Digest     string `json:"digest"`
	} `json:"digests"`
}

// afMerge undoes LUKS's anti-forensic split: XOR the stripes together,
// diffusing the running value with the hash after each but the last.
func afMerge(t *testing.T, data []byte, keyLen, stripes int, hashName string) []byte {
	t.Helper()
	newHash, err := HashFunc(hashName)
	require.NoError(t, err)
	d := make([]byte, keyLen)
	for i := 0; i < stripes; i++ {
		for j := range d {
			d[j] ^= data[i*keyLen+j]
		}
		if i == stripes-1 {
			break
		}
		h := newHash()
		var diffused []byte
		for blk, off := 0, 0; off < keyLen; blk, off = blk+1, off+h.Size() {
			end := min(off+h.Size(), keyLen)
			h.Reset()
			var idx [4]byte
			binary.BigEndian.PutUint32(idx[:], uint32(blk))
			h.Write(idx[:])
			h.Write(d[off:end])
			diffused = append(diffused, h.Sum(nil)[:end-off]...)
		}
		d = diffused
	}
	return d
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

// unlockWithCryptsetupHeader opens key slot 0 of a cryptsetup-made LUKS2
// image with Derive and reports whether the result matches the header's
// digest, which is itself checked with Derive (PBKDF2).
func unlockWithCryptsetupHeader(t *testing.T, img string, meta luks2Meta, passphrase []byte) bool {
	t.Helper()
	ks := meta.Keyslots["0"]
	require.Equal(t, "aes-xts-plain64", ks.Area.Encryption)
	var p Params
	switch ks.KDF.Type {
	case PBKDF2:
		p = Params{Algorithm: PBKDF2, Hash: ks.KDF.Hash, Time: ks.KDF.Iterations}
	default:
		p = Params{Algorithm: ks.KDF.Type, Time: ks.KDF.Time, MemoryKiB: ks.KDF.Memory, Threads: ks.KDF.CPUs}
	}
	require.NoError(t, p.Check(DefaultLimits()))
	areaKey, err := Derive(p, passphrase, b64(t, ks.KDF.Salt), ks.Area.KeySize)
	require.NoError(t, err)

	c, err := xts.NewCipher(aes.NewCipher, areaKey)
	require.NoError(t, err)
	size := (ks.KeySize*ks.AF.Stripes + 511) / 512 * 512
	off, err := strconv.ParseInt(ks.Area.Offset, 10, 64)
	require.NoError(t, err)
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	enc := make([]byte, size)
	_, err = f.ReadAt(enc, off)
	require.NoError(t, err)
	plain := make([]byte, size)
	for s := 0; s < size/512; s++ {
		c.Decrypt(plain[s*512:(s+1)*512], enc[s*512:(s+1)*512], uint64(s))
	}
	vk := afMerge(t, plain, ks.KeySize, ks.AF.Stripes, ks.AF.Hash)

	dg := meta.Digests["0"]
	want := b64(t, dg.Digest)
	got, err := Derive(Params{Algorithm: PBKDF2, Hash: dg.Hash, Time: dg.Iterations}, vk, b64(t, dg.Salt), len(want))
	require.NoError(t, err)
	return hmac.Equal(got, want)
}

// TestCryptsetupInterop formats LUKS2 images with the real cryptsetup across
// its KDFs and hashes and opens key slot 0 with Derive: the derived area key
// must decrypt a volume key that matches cryptsetup's digest.
func TestCryptsetupInterop(t *testing.T) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed; skipping interop test")
	}
	if testing.Short() {
		t.Skip("interop test formats images; skipped with -short")
	}
	tests := []struct {
		name string
		args []string
	}{
		{"argon2id p1", []string{"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1"}},
		{"argon2id p4", []string{"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "5", "--pbkdf-parallel", "4"}},
		{"argon2i p2", []string{"--pbkdf", "argon2i", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "2"}},
		{"argon2id odd memory", []string{"--pbkdf", "argon2id", "--pbkdf-memory", "20011", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "3"}},
		{"pbkdf2 sha256", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha256"}},
		{"pbkdf2 sha1", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1001", "--hash", "sha1"}},
		{"pbkdf2 sha512", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha512"}},
		{"pbkdf2 sha3-256", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha3-256"}},
		{"pbkdf2 ripemd160", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "ripemd160"}},
		{"pbkdf2 blake2b-512", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "blake2b-512"}},
	}
	passphrase := []byte("correct horse battery staple")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img, keyFile := filepath.Join(dir, "img"), filepath.Join(dir, "key")
			require.NoError(t, os.WriteFile(keyFile, passphrase, 0o600))
			require.NoError(t, os.WriteFile(img, nil, 0o600))
			require.NoError(t, os.Truncate(img, 20<<20))
			args := append([]string{"luksFormat", "--type", "luks2", "-q", "--key-file", keyFile}, tc.args...)
			out, err := exec.Command(cs, append(args, img)...).CombinedOutput()
			if err != nil {
				t.Skipf("cryptsetup refused %v: %v: %s", tc.args, err, out)
			}
			out, err = exec.Command(cs, "luksDump", "--dump-json-metadata", img).Output()
			require.NoError(t, err)
			var meta luks2Meta
			require.NoError(t, json.Unmarshal(out, &meta))

			require.True(t, unlockWithCryptsetupHeader(t, img, meta, passphrase), "digest mismatch with the right passphrase")
			require.False(t, unlockWithCryptsetupHeader(t, img, meta, []byte("wrong")), "digest matched a wrong passphrase")
		})
	}
}
