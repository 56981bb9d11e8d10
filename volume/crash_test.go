package volume

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/faultio"
	"github.com/volcrypt/volcrypt/kdf"
)

// The crash tests run each header update on a faultio device, record its
// writes and flushes, and then rebuild the device as a crash at each byte
// count of each write would leave it (the write's head or its tail landed).
// Every such state must open with the old key set or the new one, never
// neither; the same holds when a write fails with an I/O error and the
// operation goes on. By default writes tear at sector boundaries and the
// binary header's field edges (faultio.Points); VOLCRYPT_CRASH_FULL=1 tears
// header writes at every byte and key material at every sector.

// passphrases is the universe of keys the crash tests try on each state.
var passphrases = []string{"A", "B", "C"}

// crashState describes a device state: which passphrases open it, and its
// tokens; "no volume" when no header can be read.
type crashState string

const noVolume crashState = "no volume"

// stateChecker computes crashStates, remembering them by the bytes they
// depend on (both header copies and every key-slot area the header names).
type stateChecker struct {
	seed  maphash.Seed
	memo  map[uint64]crashState
	tried int
}

func newStateChecker() *stateChecker {
	return &stateChecker{seed: maphash.MakeSeed(), memo: map[uint64]crashState{}}
}

func (c *stateChecker) state(t *testing.T, r io.ReaderAt) crashState {
	t.Helper()
	c.tried++
	h, err := header.Read(r)
	if err != nil {
		return noVolume
	}
	var mh maphash.Hash
	mh.SetSeed(c.seed)
	meta, err := json.Marshal([]any{h.SeqID, h.Meta.Keyslots, h.Meta.Digests, h.Meta.Tokens})
	require.NoError(t, err)
	mh.Write(meta)
	for _, id := range slices.Sorted(maps.Keys(h.Meta.Keyslots)) {
		a := h.Meta.Keyslots[id].Area
		area := make([]byte, a.Size)
		_, _ = r.ReadAt(area, int64(a.Offset))
		mh.Write(area)
	}
	key := mh.Sum64()
	if s, ok := c.memo[key]; ok {
		return s
	}
	var opens []string
	for _, p := range passphrases {
		k, _, err := h.Unlock(r, []byte(p), header.UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
		if err == nil {
			k.Wipe()
			opens = append(opens, p)
		} else {
			require.ErrorIs(t, err, header.ErrWrongKey)
		}
	}
	var toks []string
	for _, tok := range h.Tokens() {
		toks = append(toks, fmt.Sprintf("%d:%s", tok.ID, tok.Type))
	}
	s := crashState(fmt.Sprintf("keys [%s] tokens [%s]", strings.Join(opens, " "), strings.Join(toks, " ")))
	c.memo[key] = s
	return s
}

// crashCase is one header update under test.
type crashCase struct {
	name string
	keys []string // passphrases of the volume before, slots 0, 1, …
	same bool     // the key set stays as it is (repair)
	// prepare may damage the image before the operation.
	prepare func(t *testing.T, img string)
	op      func(v *Volume) error
}

// addKey adds passphrase pass, authorized by "A".
func addKey(pass string) func(v *Volume) error {
	return func(v *Volume) error {
		vk, err := v.VolumeKey([]byte("A"), -1)
		if err != nil {
			return err
		}
		defer vk.Wipe()
		_, err = v.AddKey(context.Background(), vk.Bytes(), []byte(pass), -1, cheapKDF)
		return err
	}
}

func repair(v *Volume) error {
	_, err := v.Repair()
	return err
}

func crashCases() []crashCase {
	ctx := context.Background()
	return []crashCase{
		{name: "key-add", keys: []string{"A"}, op: addKey("B")},
		{name: "key-remove", keys: []string{"A", "B"}, op: func(v *Volume) error {
			return v.RemoveKey(0, false)
		}},
		{name: "key-change", keys: []string{"A", "B"}, op: func(v *Volume) error {
			_, err := v.ChangeKey(ctx, []byte("A"), []byte("C"), -1, cheapKDF)
			return err
		}},
		{name: "token-import", keys: []string{"A"}, op: func(v *Volume) error {
			_, err := v.ImportToken(json.RawMessage(`{"type":"x-crash","keyslots":["0"],"data":[1,2,3]}`), -1)
			return err
		}},
		{name: "erase", keys: []string{"A", "B"}, op: func(v *Volume) error {
			_, err := v.Erase()
			return err
		}},
		{name: "repair-secondary", keys: []string{"A", "B"}, same: true, prepare: damageCopy(1), op: repair},
		{name: "repair-stale-secondary", keys: []string{"A", "B"}, same: true, prepare: staleSecondary, op: repair},
		{name: "key-add-over-stale-secondary", keys: []string{"A", "B"}, prepare: staleSecondary, op: addKey("C")},
		{name: "key-add-over-damaged-primary", keys: []string{"A"}, prepare: damageCopy(0), op: addKey("B")},
	}
}

// damageCopy flips a byte in the JSON area of header copy i.
func damageCopy(i int) func(t *testing.T, img string) {
	return func(t *testing.T, img string) {
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		require.NoError(t, err)
		defer f.Close()
		off := int64(i)*header.DefaultMetadataSize + header.BinarySize + 10
		b := []byte{0}
		_, err = f.ReadAt(b, off)
		require.NoError(t, err)
		b[0] ^= 0x20
		_, err = f.WriteAt(b, off)
		require.NoError(t, err)
	}
}

// staleSecondary leaves img as a crash during key removal can: slot 1
// removed in the primary copy, the secondary copy one seqid older still
// naming it, its key material intact.
func staleSecondary(t *testing.T, img string) {
	base, err := os.ReadFile(img)
	require.NoError(t, err)
	rec := faultio.New(base)
	v := onDevice(t, img, rec)
	require.NoError(t, v.RemoveKey(1, false))
	v.Close()
	writes := rec.Writes()
	require.Len(t, writes, 3, "primary, secondary, wipe")
	stale := rec.Crash(writes[1], 0, faultio.Head).Bytes(0, int64(len(base)))
	require.NoError(t, os.WriteFile(img, stale, 0o600))
	h, err := header.Read(bytes.NewReader(stale))
	require.NoError(t, err)
	require.True(t, h.NeedsRepair())
}

// crashVolume makes an image with one key slot per passphrase. It builds
// the header directly, with a digest of 1000 iterations instead of a
// calibrated one, so that each state costs milliseconds to check.
func crashVolume(t *testing.T, keys []string) string {
	img := testImage(t, 20<<20)
	key := make([]byte, 64)
	_, err := rand.Read(key)
	require.NoError(t, err)
	h, err := header.New(key, header.NewOptions{DigestIterations: kdf.MinPBKDF2Iterations})
	require.NoError(t, err)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	p, err := cheapKDF.Resolve(context.Background(), len(key))
	require.NoError(t, err)
	for _, k := range keys {
		_, err := h.AddKeyslot(f, -1, []byte(k), key, header.KeyslotParams{KDF: p})
		require.NoError(t, err)
	}
	require.NoError(t, h.Write(f))
	return img
}

// onDevice loads img but sends its header I/O to dev.
func onDevice(t *testing.T, img string, dev *faultio.Device) *Volume {
	v, err := Load(img, LoadOptions{})
	require.NoError(t, err)
	v.hdr = dev
	h, err := header.Read(dev)
	require.NoError(t, err)
	v.Header = h
	return v
}

func TestCrashSafeHeaderUpdates(t *testing.T) {
	full := os.Getenv("VOLCRYPT_CRASH_FULL") == "1"
	total, failures := 0, 0
	for _, tc := range crashCases() {
		t.Run(tc.name, func(t *testing.T) {
			img := crashVolume(t, tc.keys)
			if tc.prepare != nil {
				tc.prepare(t, img)
			}
			base, err := os.ReadFile(img)
			require.NoError(t, err)
			check := newStateChecker()
			before := check.state(t, faultio.New(base))
			require.NotEqual(t, noVolume, before)

			rec := faultio.New(base)
			v := onDevice(t, img, rec)
			require.NoError(t, tc.op(v))
			v.Close()
			after := check.state(t, rec)
			if tc.same {
				require.Equal(t, before, after)
			} else {
				require.NotEqual(t, before, after, "the operation changed nothing")
			}
			require.Empty(t, rec.Unflushed(), "a write not flushed before the next one may land after it")
			t.Logf("before: %s; after: %s; %d writes", before, after, len(rec.Writes()))

			// A crash at each byte count of each write, head or tail torn.
			log := rec.Log()
			for _, w := range rec.Writes() {
				for _, n := range faultio.Points(len(log[w].Data), full) {
					for _, tear := range []faultio.Tear{faultio.Head, faultio.Tail} {
						got := check.state(t, rec.Crash(w, n, tear))
						if got != before && got != after {
							t.Fatalf("crash in write %d (%d bytes at %d) after %d bytes (%s): %s; want %s or %s",
								w, len(log[w].Data), log[w].Off, n, tear, got, before, after)
						}
					}
				}
			}
			total += check.tried

			// A write that fails with an I/O error after part of it landed:
			// the operation reports it and the device still holds one key set.
			for i, w := range rec.Writes() {
				for _, n := range []int{0, len(log[w].Data) / 2} {
					dev := faultio.New(base)
					dev.Fail(i, n)
					v := onDevice(t, img, dev)
					err := tc.op(v)
					v.Close()
					require.ErrorIs(t, err, faultio.ErrInjected, "write %d failing after %d bytes", i, n)
					got := check.state(t, dev)
					require.True(t, got == before || got == after, "write %d failing after %d bytes: %s", i, n, got)
					failures++
				}
			}
		})
	}
	t.Logf("%d crash states checked, %d failed writes injected", total, failures)
}

// TestCrashStatesRepair: whatever state a crash leaves, repair and the next
// key addition work on it and keep the key set it opens with.
func TestCrashStatesRepair(t *testing.T) {
	tc := crashCases()[0]
	img := crashVolume(t, tc.keys)
	base, err := os.ReadFile(img)
	require.NoError(t, err)
	rec := faultio.New(base)
	v := onDevice(t, img, rec)
	require.NoError(t, tc.op(v))
	v.Close()
	check := newStateChecker()
	log := rec.Log()
	seen := map[string]bool{}
	for _, w := range rec.Writes() {
		for _, n := range []int{1, len(log[w].Data) / 2, len(log[w].Data)} {
			view := rec.Crash(w, n, faultio.Head)
			want := check.state(t, view)
			crashed := view.Bytes(0, int64(len(base)))
			h, err := header.Read(view)
			require.NoError(t, err)
			if seen[string(want)+fmt.Sprint(h.NeedsRepair())] {
				continue
			}
			seen[string(want)+fmt.Sprint(h.NeedsRepair())] = true
			require.NoError(t, os.WriteFile(img, crashed, 0o600))
			v, err := Load(img, LoadOptions{})
			require.NoError(t, err)
			fixed, err := v.Repair()
			require.NoError(t, err)
			require.Equal(t, h.NeedsRepair(), len(fixed) > 0)
			v.Close()
			f, err := os.Open(img)
			require.NoError(t, err)
			got, err := header.Read(f)
			require.NoError(t, err)
			require.False(t, got.NeedsRepair())
			require.Equal(t, want, check.state(t, f))
			f.Close()
		}
	}
	require.GreaterOrEqual(t, len(seen), 3)
}

// TestCrashDuringFormat runs format's sequence (zero the header and
// key-slot area, write the key material, write both header copies, as
// Format does) over an existing volume on a faultio device and crashes it
// at each write. A state may hold the old volume (formatting destroys it
// on purpose, so any part of its key set), no volume, or the new volume;
// never a new header that the new passphrase does not open.
func TestCrashDuringFormat(t *testing.T) {
	img := crashVolume(t, []string{"A", "B"})
	base, err := os.ReadFile(img)
	require.NoError(t, err)
	old, err := header.Read(bytes.NewReader(base))
	require.NoError(t, err)

	dev := faultio.New(base)
	key := make([]byte, 64)
	_, _ = rand.Read(key)
	h, err := header.New(key, header.NewOptions{DigestIterations: kdf.MinPBKDF2Iterations})
	require.NoError(t, err)
	zero := make([]byte, 1<<20)
	for off := int64(0); off < h.KeyslotsEnd(); off += int64(len(zero)) {
		_, err := dev.WriteAt(zero[:min(int64(len(zero)), h.KeyslotsEnd()-off)], off)
		require.NoError(t, err)
	}
	require.NoError(t, dev.Sync())
	p, err := cheapKDF.Resolve(context.Background(), len(key))
	require.NoError(t, err)
	_, err = h.AddKeyslot(dev, 0, []byte("N"), key, header.KeyslotParams{KDF: p})
	require.NoError(t, err)
	require.NoError(t, h.Write(dev))

	states := map[string]int{}
	log := dev.Log()
	for _, w := range dev.Writes() {
		for _, n := range faultio.Points(len(log[w].Data), os.Getenv("VOLCRYPT_CRASH_FULL") == "1") {
			for _, tear := range []faultio.Tear{faultio.Head, faultio.Tail} {
				view := dev.Crash(w, n, tear)
				got, err := header.Read(view)
				if err != nil {
					states["no volume"]++
					continue
				}
				if got.UUID == old.UUID {
					states["old volume"]++
					continue
				}
				require.Equal(t, h.UUID, got.UUID)
				k, _, err := got.Unlock(view, []byte("N"), header.UnlockOptions{Keyslot: -1, Limits: kdf.DefaultLimits()})
				require.NoError(t, err, "crash in write %d after %d bytes (%s): a new header the new passphrase does not open", w, n, tear)
				k.Wipe()
				states["new volume"]++
			}
		}
	}
	t.Logf("format crash states: %v", states)
	require.Positive(t, states["new volume"])
}
