package header

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/kdf"
)

// craftDisk returns a disk image (both header copies and key-slot area)
// whose metadata is a real header's JSON changed by mutate, sealed with
// valid checksums, so that only validation can refuse it.
func craftDisk(t *testing.T, mutate func(m map[string]any)) ([]byte, []byte) {
	t.Helper()
	key := make([]byte, 64)
	_, _ = rand.Read(key)
	h, err := New(key, NewOptions{DigestIterations: kdf.MinPBKDF2Iterations, MetadataSizeBytes: 64 << 10})
	require.NoError(t, err)
	disk := make([]byte, h.KeyslotsEnd())
	w := &memDisk{b: disk}
	_, err = h.AddKeyslot(w, 0, []byte("pass"), key, KeyslotParams{KDF: cheapPBKDF2})
	require.NoError(t, err)
	text, err := h.Meta.marshal()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(text, &m))
	mutate(m)
	text, err = json.Marshal(m)
	require.NoError(t, err)
	text = bytes.Replace(text, []byte(`"@@DEEP@@"`), []byte(strings.Repeat("[", 20000)+strings.Repeat("]", 20000)), 1)
	require.Less(t, len(text), int(h.Size-BinarySize), "crafted JSON must fit")
	for i := range 2 {
		area := make([]byte, h.Size)
		copy(area[BinarySize:], text)
		_, _ = rand.Read(h.salts[i][:])
		require.NoError(t, h.sealCopy(area, i, 1, "sha256"))
		copy(disk[int64(i)*h.Size:], area)
	}
	return disk, key
}

// memDisk is a WriterAt over a byte slice.
type memDisk struct{ b []byte }

func (d *memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(d.b[off:], p), nil }

func slot0(m map[string]any) map[string]any {
	return m["keyslots"].(map[string]any)["0"].(map[string]any)
}

func digest0(m map[string]any) map[string]any {
	return m["digests"].(map[string]any)["0"].(map[string]any)
}

// TestHostileMetadata: values a crafted header may carry are refused when
// read, or when used, quickly and without panicking; what real volumes
// carry (a 20-byte digest from LUKS1) still works.
func TestHostileMetadata(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(m map[string]any)
		read   bool // Read accepts it
		unlock bool // and the passphrase opens it
	}{
		{"unchanged", func(m map[string]any) {}, true, true},
		{"digest-20-bytes-as-luks1", func(m map[string]any) {
			// LUKS1 stores 20 bytes whatever the hash; cryptsetup convert keeps them.
			d := digest0(m)
			b := mustB64(t, d["digest"])
			d["digest"] = b[:20]
		}, true, true},
		{"digest-19-bytes", func(m map[string]any) { d := digest0(m); d["digest"] = mustB64(t, d["digest"])[:19] }, false, false},
		{"digest-3-bytes", func(m map[string]any) { d := digest0(m); d["digest"] = mustB64(t, d["digest"])[:3] }, false, false},
		{"digest-empty", func(m map[string]any) { digest0(m)["digest"] = []byte{} }, false, false},
		{"digest-iterations-max", func(m map[string]any) { digest0(m)["iterations"] = uint32(1<<32 - 1) }, true, false},
		{"af-stripes-3999", func(m map[string]any) { slot0(m)["af"].(map[string]any)["stripes"] = 3999 }, false, false},
		{"af-stripes-huge", func(m map[string]any) { slot0(m)["af"].(map[string]any)["stripes"] = 1 << 40 }, false, false},
		{"key-size-513", func(m map[string]any) { slot0(m)["key_size"] = 513 }, false, false},
		{"key-size-negative", func(m map[string]any) { slot0(m)["key_size"] = -64 }, false, false},
		{"area-key-size-huge", func(m map[string]any) { slot0(m)["area"].(map[string]any)["key_size"] = 1 << 30 }, false, false},
		{"area-offset-past-keyslots", func(m map[string]any) { slot0(m)["area"].(map[string]any)["offset"] = "18446744073709547520" }, false, false},
		{"area-size-wraps", func(m map[string]any) { slot0(m)["area"].(map[string]any)["size"] = "18446744073709551615" }, false, false},
		{"segment-offset-huge", func(m map[string]any) {
			m["segments"].(map[string]any)["0"].(map[string]any)["offset"] = "18446744073709551104"
		}, true, true},
		{"keyslots-size-past-limit", func(m map[string]any) { m["config"].(map[string]any)["keyslots_size"] = "18446744073709547520" }, false, false},
		{"kdf-pbkdf2-iterations-max", func(m map[string]any) { slot0(m)["kdf"].(map[string]any)["iterations"] = uint32(1<<32 - 1) }, true, false},
		{"kdf-argon2-time-max", func(m map[string]any) {
			slot0(m)["kdf"] = map[string]any{"type": "argon2id", "time": uint32(1<<32 - 1), "memory": 1 << 20, "cpus": 4, "salt": []byte("salt")}
		}, true, false},
		{"token-nested-20000-deep", func(m map[string]any) {
			m["tokens"].(map[string]any)["0"] = map[string]any{"type": "x", "keyslots": []string{}, "deep": "@@DEEP@@"}
		}, false, false},
		{"33-keyslots", func(m map[string]any) {
			ks := m["keyslots"].(map[string]any)
			for i := 1; i <= 32; i++ {
				ks[strconv.Itoa(i)] = ks["0"]
			}
		}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk, _ := craftDisk(t, tc.mutate)
			start := time.Now()
			h, err := Read(bytes.NewReader(disk))
			if !tc.read {
				require.Error(t, err)
				require.ErrorIs(t, err, ErrInvalid)
				return
			}
			require.NoError(t, err)
			key, _, err := h.Unlock(bytes.NewReader(disk), []byte("pass"), UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
			require.Less(t, time.Since(start), 5*time.Second, "refused at once")
			if tc.unlock {
				require.NoError(t, err)
				key.Wipe()
				return
			}
			require.Error(t, err)
			require.ErrorIs(t, err, kdf.ErrCost, "an over-limit cost is refused before it runs")
		})
	}
}

func mustB64(t *testing.T, v any) []byte {
	t.Helper()
	var b []byte
	require.NoError(t, json.Unmarshal([]byte(`"`+v.(string)+`"`), &b))
	return b
}

// TestTokenKeptByteForByte: removing or renumbering a key slot rewrites only
// the "keyslots" member of the tokens that name it; member order, spacing
// and characters HTML would escape stay as their owner wrote them.
func TestTokenKeptByteForByte(t *testing.T) {
	key := make([]byte, 64)
	h, err := New(key, NewOptions{DigestIterations: kdf.MinPBKDF2Iterations})
	require.NoError(t, err)
	w := &memDisk{b: make([]byte, h.KeyslotsEnd())}
	for range 3 {
		_, err := h.AddKeyslot(w, -1, []byte("p"), key, KeyslotParams{KDF: cheapPBKDF2})
		require.NoError(t, err)
	}
	_, err = h.AddToken(5, json.RawMessage(`{"type":"x-owner","zeta":{"b":1,"a":2},"keyslots":["0","1"],"alpha":"<&>"}`))
	require.NoError(t, err)
	_, err = h.RemoveKeyslot(0)
	require.NoError(t, err)
	require.NoError(t, h.MoveKeyslot(1, 7))
	want := `{"type":"x-owner","zeta":{"b":1,"a":2},"keyslots":["7"],"alpha":"<&>"}`
	require.Equal(t, want, string(h.Meta.Tokens[5]))
	copies, err := h.encode(2)
	require.NoError(t, err)
	got, err := Read(bytes.NewReader(append(copies[0], copies[1]...)))
	require.NoError(t, err)
	require.Equal(t, want, string(got.Meta.Tokens[5]))
}
