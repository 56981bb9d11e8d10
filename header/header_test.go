package header

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/kdf"
)

var cheapPBKDF2 = kdf.Params{Algorithm: kdf.PBKDF2, Hash: "sha256", Time: 1000}

// cryptsetup runs the real cryptsetup binary, the interoperability oracle,
// and skips the test where it is not installed.
func cryptsetup(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed: the interop oracle is missing (apt-get install cryptsetup-bin)")
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	require.NoError(t, err, "cryptsetup %s: %s", strings.Join(args, " "), out)
	return string(out)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

func sparseImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(size))
	require.NoError(t, f.Close())
	return p
}

var volumeKeyRE = regexp.MustCompile(`(?s)MK dump:\s*(([0-9a-f]{2} ?\s*)+)`)

// dumpVolumeKey asks cryptsetup for the volume key.
func dumpVolumeKey(t *testing.T, img, keyFile string) []byte {
	t.Helper()
	out := cryptsetup(t, "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyFile, img)
	m := volumeKeyRE.FindStringSubmatch(out)
	require.NotNil(t, m, "no volume key in: %s", out)
	key, err := hex.DecodeString(strings.Join(strings.Fields(m[1]), ""))
	require.NoError(t, err)
	return key
}

func openImage(t *testing.T, img string) *os.File {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestAFRoundTrip(t *testing.T) {
	for _, hash := range []string{"sha1", "sha256", "sha512"} {
		for _, size := range []int{16, 32, 33, 64, 65} {
			key := make([]byte, size)
			_, _ = rand.Read(key)
			material, err := AFSplit(key, AFStripes, hash, nil)
			require.NoError(t, err)
			require.Len(t, material, size*AFStripes)
			got, err := AFMerge(material, size, AFStripes, hash)
			require.NoError(t, err)
			require.Equal(t, key, got, "%s/%d", hash, size)
			material[len(material)/2] ^= 1
			got, err = AFMerge(material, size, AFStripes, hash)
			require.NoError(t, err)
			require.NotEqual(t, key, got, "a flipped bit of material must change the key")
		}
	}
}

// TestReadCryptsetupVolumes unlocks volumes cryptsetup formatted across the
// KDF, hash, key size, sector size and layout matrix, and compares the
// volume key with cryptsetup's own dump.
func TestReadCryptsetupVolumes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		slot int
	}{
		{"argon2id", []string{"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1"}, 0},
		{"argon2i-2threads", []string{"--pbkdf", "argon2i", "--pbkdf-memory", "16384", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "2"}, 0},
		{"pbkdf2-sha1", []string{"--pbkdf", "pbkdf2", "--hash", "sha1", "--pbkdf-force-iterations", "1000"}, 0},
		{"pbkdf2-sha512-256bit", []string{"--pbkdf", "pbkdf2", "--hash", "sha512", "--pbkdf-force-iterations", "1000", "--key-size", "256"}, 0},
		{"sector512", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "512"}, 0},
		{"metadata64k", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--luks2-metadata-size", "64k", "--luks2-keyslots-size", "2m"}, 0},
		{"slot5", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-slot", "5"}, 5},
		{"cbc-essiv", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"}, 0},
		{"luks1", []string{"--type", "luks1", "--pbkdf-force-iterations", "1000"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := sparseImage(t, 32<<20)
			pass := []byte("pass-" + tc.name)
			kf := writeFile(t, "key", pass)
			args := append([]string{"luksFormat", "-q", "--key-file", kf}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "luks1") {
				args = append(args, "--type", "luks2")
			}
			cryptsetup(t, append(args, img)...)
			want := dumpVolumeKey(t, img, kf)

			f := openImage(t, img)
			h, err := Read(f)
			require.NoError(t, err)
			key, slot, err := h.Unlock(f, pass, UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
			require.NoError(t, err)
			require.Equal(t, tc.slot, slot)
			require.Equal(t, want, key.Bytes())
			key.Wipe()

			_, _, err = h.Unlock(f, []byte("wrong"), UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
			require.ErrorIs(t, err, ErrWrongKey)
		})
	}
}

// TestWriteReadByCryptsetup formats with New and AddKeyslot and checks that
// cryptsetup accepts the header, opens the key and reports the same key;
// then a key cryptsetup adds opens here.
func TestWriteReadByCryptsetup(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts NewOptions
		kdf  kdf.Params
	}{
		{"defaults-pbkdf2", NewOptions{}, cheapPBKDF2},
		{"argon2id-512", NewOptions{SectorSize: 512, Label: "data", Subsystem: "test"}, kdf.Params{Algorithm: kdf.Argon2id, Time: 4, MemoryKiB: 32768, Threads: 2}},
		{"metadata-1m", NewOptions{MetadataSizeBytes: 1 << 20, KeyslotsSizeBytes: 1 << 20}, cheapPBKDF2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := sparseImage(t, 32<<20)
			f := openImage(t, img)
			key := make([]byte, 64)
			_, _ = rand.Read(key)
			h, err := New(key, tc.opts)
			require.NoError(t, err)
			slot, err := h.AddKeyslot(f, 3, []byte("secret one"), key, KeyslotParams{KDF: tc.kdf})
			require.NoError(t, err)
			require.Equal(t, 3, slot)
			require.NoError(t, h.Write(f))

			cryptsetup(t, "isLuks", "--type", "luks2", img)
			dump := cryptsetup(t, "luksDump", img)
			require.Contains(t, dump, h.UUID)
			kf := writeFile(t, "key", []byte("secret one"))
			cryptsetup(t, "open", "--test-passphrase", "--key-file", kf, img)
			require.Equal(t, key, dumpVolumeKey(t, img, kf))

			kf2 := writeFile(t, "key2", []byte("added by cryptsetup"))
			cryptsetup(t, "luksAddKey", "--key-file", kf, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", img, kf2)
			h2, err := Read(f)
			require.NoError(t, err)
			require.Equal(t, h.SeqID+1, h2.SeqID)
			got, slot, err := h2.Unlock(f, []byte("added by cryptsetup"), UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
			require.NoError(t, err)
			require.NotEqual(t, 3, slot)
			require.Equal(t, key, got.Bytes())
		})
	}
}

func TestRemoveKeyslot(t *testing.T) {
	img := sparseImage(t, 20<<20)
	f := openImage(t, img)
	key := make([]byte, 64)
	_, _ = rand.Read(key)
	h, err := New(key, NewOptions{})
	require.NoError(t, err)
	_, err = h.AddKeyslot(f, -1, []byte("a"), key, KeyslotParams{KDF: cheapPBKDF2})
	require.NoError(t, err)
	_, err = h.AddKeyslot(f, -1, []byte("b"), key, KeyslotParams{KDF: cheapPBKDF2})
	require.NoError(t, err)
	_, err = h.AddToken(-1, []byte(`{"type":"x-test","keyslots":["0","1"],"payload":{"k":[1,2]}}`))
	require.NoError(t, err)
	require.NoError(t, h.Write(f))
	area, err := h.RemoveKeyslot(0)
	require.NoError(t, err)
	require.NoError(t, h.Write(f))
	require.NoError(t, WipeArea(f, area))

	h, err = Read(f)
	require.NoError(t, err)
	_, _, err = h.Unlock(f, []byte("a"), UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
	require.ErrorIs(t, err, ErrWrongKey)
	_, slot, err := h.Unlock(f, []byte("b"), UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
	require.NoError(t, err)
	require.Equal(t, 1, slot)
	toks := h.Tokens()
	require.Len(t, toks, 1)
	require.Equal(t, []int{1}, toks[0].Keyslots)
	require.Contains(t, string(toks[0].JSON), `"payload":{"k":[1,2]}`)
}

// TestBadInput feeds random bytes, truncated and empty files: each must be
// refused with an error, never a panic.
func TestBadInput(t *testing.T) {
	key := make([]byte, 64)
	h, err := New(key, NewOptions{})
	require.NoError(t, err)
	good, err := h.encode(1)
	require.NoError(t, err)
	full := append(append([]byte{}, good[0]...), good[1]...)
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	for name, data := range map[string][]byte{
		"empty":     {},
		"random":    random,
		"truncated": full[:3000],
		"half-json": full[:8000],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(data))
			require.Error(t, err)
		})
	}
	t.Run("primary-only-survives-truncated-secondary", func(t *testing.T) {
		got, err := Read(bytes.NewReader(full[:len(good[0])+100]))
		require.NoError(t, err)
		require.Len(t, got.Damaged, 1)
	})
}

func TestSeqIDPicksNewerCopy(t *testing.T) {
	key := make([]byte, 64)
	h, err := New(key, NewOptions{Label: "old"})
	require.NoError(t, err)
	old, err := h.encode(5)
	require.NoError(t, err)
	h.Label = "new"
	newer, err := h.encode(6)
	require.NoError(t, err)
	disk := append(append([]byte{}, old[0]...), newer[1]...)
	got, err := Read(bytes.NewReader(disk))
	require.NoError(t, err)
	require.Equal(t, "new", got.Label)
	require.Equal(t, uint64(6), got.SeqID)
	require.Len(t, got.Damaged, 1)
}

func cheapLimits() kdf.Limits { return kdf.DefaultLimits() }

// TestRemovedAreaNotReusedBeforeWrite: a slot removed and a slot added in
// one update must not share an area, or wiping the old one destroys the new.
func TestRemovedAreaNotReusedBeforeWrite(t *testing.T) {
	img := sparseImage(t, 20<<20)
	f := openImage(t, img)
	key := make([]byte, 64)
	_, _ = rand.Read(key)
	h, err := New(key, NewOptions{})
	require.NoError(t, err)
	_, err = h.AddKeyslot(f, 0, []byte("old"), key, KeyslotParams{KDF: cheapPBKDF2})
	require.NoError(t, err)
	require.NoError(t, h.Write(f))
	old, err := h.RemoveKeyslot(0)
	require.NoError(t, err)
	slot, err := h.AddKeyslot(f, -1, []byte("new"), key, KeyslotParams{KDF: cheapPBKDF2})
	require.NoError(t, err)
	require.NotEqual(t, old.Offset, h.Meta.Keyslots[slot].Area.Offset)
	require.NoError(t, h.Write(f))
	require.NoError(t, WipeArea(f, old))
	h, err = Read(f)
	require.NoError(t, err)
	_, _, err = h.Unlock(f, []byte("new"), UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
	require.NoError(t, err)
}
