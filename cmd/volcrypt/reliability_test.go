package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/kdf"
)

// cheapVolume formats an image with volcrypt and a key file holding pass.
func cheapVolume(t *testing.T, pass string) (img, kf string) {
	t.Helper()
	img = image(t, 32<<20)
	kf = keyFile(t, pass)
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	return img, kf
}

func readHeader(t *testing.T, img string) *header.Header {
	t.Helper()
	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	h, err := header.Read(f)
	require.NoError(t, err)
	return h
}

// flipByte changes one byte of img at off.
func flipByte(t *testing.T, img string, off int64) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	b := []byte{0}
	_, err = f.ReadAt(b, off)
	require.NoError(t, err)
	b[0] ^= 0x5a
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
}

func TestHeaderBackupRestoreWithCryptsetup(t *testing.T) {
	cryptsetupBin(t)
	img, kf := cheapVolume(t, "first")
	dir := t.TempDir()
	ours, theirs := filepath.Join(dir, "ours.hdr"), filepath.Join(dir, "theirs.hdr")
	mustRun(t, "", "header", "backup", "--file", ours, img)
	mustCryptsetup(t, "luksHeaderBackup", "--header-backup-file", theirs, img)
	require.Equal(t, fileHash(t, theirs), fileHash(t, ours), "the backup files are byte for byte cryptsetup's")
	st, err := os.Stat(ours)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o400), st.Mode().Perm())
	r := volcrypt(t, "", "header", "backup", "--file", ours, img)
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, "exists", "an existing backup file is never overwritten")

	second := keyFile(t, "second")
	for _, tc := range []struct {
		name    string
		restore func(file string)
		backup  string
	}{
		{"volcrypt-restores-cryptsetup-backup", func(f string) { mustRun(t, "", "header", "restore", "--file", f, img) }, theirs},
		{"cryptsetup-restores-volcrypt-backup", func(f string) { mustCryptsetup(t, "luksHeaderRestore", "-q", "--header-backup-file", f, img) }, ours},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustRun(t, "", append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", second}, cheap...), img)...)
			mustCryptsetup(t, "open", "--test-passphrase", "--key-file", second, img)
			tc.restore(tc.backup)
			_, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", second, img)
			require.Error(t, err, "the key added after the backup is gone")
			mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, img)
			mustRun(t, "", "open", "--test", "--key-file", kf, img)
		})
	}
}

func TestHeaderRestoreRefusesOtherVolume(t *testing.T) {
	img, kf := cheapVolume(t, "mine")
	other, _ := cheapVolume(t, "theirs")
	backup := filepath.Join(t.TempDir(), "other.hdr")
	mustRun(t, "", "header", "backup", "--file", backup, other)
	before := fileHash(t, img)

	r := volcrypt(t, "", "header", "restore", "--file", backup, img)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, readHeader(t, other).UUID)
	require.Contains(t, r.stderr, "-q")
	require.Equal(t, before, fileHash(t, img), "a refused restore writes nothing")

	notLUKS := filepath.Join(t.TempDir(), "junk.hdr")
	require.NoError(t, os.WriteFile(notLUKS, bytes.Repeat([]byte("x"), 1<<20), 0o600))
	r = volcrypt(t, "", "header", "restore", "-q", "--file", notLUKS, img)
	require.Equal(t, 1, r.code, r.stderr)
	require.Equal(t, before, fileHash(t, img))

	mustRun(t, "", "header", "restore", "-q", "--file", backup, img)
	require.Equal(t, readHeader(t, other).UUID, readHeader(t, img).UUID)
	r = volcrypt(t, "", "open", "--test", "--key-file", kf, img)
	require.Equal(t, 2, r.code, "the old key no longer opens: %s", r.stderr)
}

func TestRepair(t *testing.T) {
	cryptsetupBin(t)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, img string, h *header.Header)
	}{
		{"secondary-json", func(t *testing.T, img string, h *header.Header) { flipByte(t, img, h.Size+header.BinarySize+3) }},
		{"primary-checksum", func(t *testing.T, img string, h *header.Header) { flipByte(t, img, 450) }},
		{"primary-magic", func(t *testing.T, img string, h *header.Header) { flipByte(t, img, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, kf := cheapVolume(t, "pass")
			h := readHeader(t, img)
			tc.damage(t, img, h)
			require.True(t, readHeader(t, img).NeedsRepair())
			oracle := filepath.Join(t.TempDir(), "oracle.img")
			b, err := os.ReadFile(img)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(oracle, b, 0o600))

			r := mustRun(t, "", "repair", "--json", img)
			require.Contains(t, r.stdout, "repaired")
			got := readHeader(t, img)
			require.False(t, got.NeedsRepair())
			require.Equal(t, h.SeqID, got.SeqID, "repair keeps the seqid, as cryptsetup's")

			// cryptsetup repairs its copy the same way: same seqid, and both
			// copies then read back the same.
			mustCryptsetup(t, "repair", "-q", oracle)
			want := readHeader(t, oracle)
			require.False(t, want.NeedsRepair())
			require.Equal(t, want.SeqID, got.SeqID)
			mustCryptsetup(t, "luksDump", img)

			// Each copy alone is good enough for cryptsetup: destroy the
			// other and open.
			for _, off := range []int64{0, h.Size} {
				one := filepath.Join(t.TempDir(), "one.img")
				b, err := os.ReadFile(img)
				require.NoError(t, err)
				copy(b[off:off+8], "XXXXXXXX")
				require.NoError(t, os.WriteFile(one, b, 0o600))
				mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, one)
			}
			r = mustRun(t, "", "repair", img)
			require.Contains(t, r.stderr, "nothing to repair")
		})
	}
	t.Run("both-bad-refused", func(t *testing.T) {
		img, _ := cheapVolume(t, "pass")
		h := readHeader(t, img)
		flipByte(t, img, header.BinarySize+3)
		flipByte(t, img, h.Size+header.BinarySize+3)
		before := fileHash(t, img)
		r := volcrypt(t, "", "repair", img)
		require.NotEqual(t, 0, r.code)
		require.Equal(t, before, fileHash(t, img))
		_, err := cryptsetup(t, "repair", "-q", img)
		require.Error(t, err, "cryptsetup refuses it too")
	})
}

func TestErase(t *testing.T) {
	cryptsetupBin(t)
	img, kf := cheapVolume(t, "pass")
	second := keyFile(t, "second")
	mustRun(t, "", append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", second}, cheap...), img)...)
	before := fileHash(t, img)
	r := volcrypt(t, "", "erase", img)
	require.Equal(t, 1, r.code, "erase needs confirmation: %s", r.stderr)
	require.Equal(t, before, fileHash(t, img))

	r = mustRun(t, "", "erase", "-q", "--json", img)
	require.JSONEq(t, `{"erased":[0,1]}`, r.stdout)
	var meta struct {
		Keyslots map[string]any `json:"keyslots"`
	}
	require.NoError(t, json.Unmarshal([]byte(mustCryptsetup(t, "luksDump", "--dump-json-metadata", img)), &meta))
	require.NotNil(t, meta.Keyslots)
	require.Empty(t, meta.Keyslots)
	for _, k := range []string{kf, second} {
		_, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", k, img)
		require.Error(t, err)
		r := volcrypt(t, "", "open", "--test", "--key-file", k, img)
		require.Equal(t, 2, r.code)
	}
	// The whole key-slot area is random now: no trace of the key material.
	h := readHeader(t, img)
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	area := b[2*h.Size : h.KeyslotsEnd()]
	require.False(t, bytes.Contains(area, make([]byte, 4096)), "no zero block left in the key-slot area")
}

// hostileVolume writes a volume whose only key slot (opened by pass) has
// the given KDF, with a cheap digest, straight through the header package.
func hostileVolume(t *testing.T, pass string, p kdf.Params) string {
	t.Helper()
	img := image(t, 20<<20)
	key := make([]byte, 64)
	_, _ = rand.Read(key)
	h, err := header.New(key, header.NewOptions{DigestIterations: kdf.MinPBKDF2Iterations})
	require.NoError(t, err)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = h.AddKeyslot(f, 0, []byte(pass), key, header.KeyslotParams{KDF: p})
	require.NoError(t, err)
	require.NoError(t, h.Write(f))
	return img
}

// setKDF rewrites key slot 0's KDF parameters in place.
func setKDF(t *testing.T, img string, fn func(k *header.KDF)) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	h, err := header.Read(f)
	require.NoError(t, err)
	fn(h.Meta.Keyslots[0].KDF)
	require.NoError(t, h.Write(f))
}

// TestHostileKDFCostRefusedAtOnce: an Argon2 cost that would run for days
// (cryptsetup 2.6 runs until killed) or exhaust memory is refused at once,
// naming the value and the flag that raises the limit.
func TestHostileKDFCostRefusedAtOnce(t *testing.T) {
	cheapArgon := kdf.Params{Algorithm: kdf.Argon2id, Time: 4, MemoryKiB: 64, Threads: 1}
	kf := keyFile(t, "pass")
	for _, tc := range []struct {
		name       string
		set        func(k *header.KDF)
		code       int
		value, flg string
	}{
		{"argon2-time-max", func(k *header.KDF) { k.Time = 1<<32 - 1 }, 1, "4294967295", "--pbkdf-force-iterations"},
		{"argon2-work-4GiB-x20", func(k *header.KDF) { k.Memory, k.Time = 4<<20, 20 }, 1, "83886080 KiB passes", "--pbkdf-force-iterations"},
		{"pbkdf2-iterations", func(k *header.KDF) {
			*k = header.KDF{Type: kdf.PBKDF2, Hash: "sha256", Iterations: 1<<32 - 1, Salt: k.Salt}
		}, 1, "4294967295", "--pbkdf-force-iterations"},
		// Values LUKS2 itself forbids are invalid rather than costly: the
		// slot is skipped with the reason, and no key opens.
		{"argon2-memory-beyond-luks2", func(k *header.KDF) { k.Memory = 1<<32 - 1 }, 2, "4294967295 KiB", "maximum"},
		{"argon2-threads-beyond-argon2", func(k *header.KDF) { k.CPUs = 1 << 24 }, 2, "16777216", "255"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := hostileVolume(t, "pass", cheapArgon)
			setKDF(t, img, tc.set)
			start := time.Now()
			r := volcrypt(t, "", "open", "--test", "--key-file", kf, img)
			require.Less(t, time.Since(start), 10*time.Second)
			require.Equal(t, tc.code, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.value)
			require.Contains(t, r.stderr, tc.flg)
			require.LessOrEqual(t, strings.Count(r.stderr, "\n"), 2, "one error line and a hint: %s", r.stderr)
		})
	}
	t.Run("raised-by-flag", func(t *testing.T) {
		img := hostileVolume(t, "pass", kdf.Params{Algorithm: kdf.Argon2id, Time: kdf.DefaultMaxTime + 1, MemoryKiB: 8, Threads: 1})
		r := volcrypt(t, "", "open", "--test", "--key-file", kf, img)
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stderr, "1001")
		mustRun(t, "", "open", "--test", "--key-file", kf, "--pbkdf-force-iterations", "1001", img)
	})
}

// TestLUKS1ConvertedShortDigest: a volume converted from LUKS1 keeps
// LUKS1's 20-byte digest with sha256 (shorter than the hash) and must open;
// anything shorter than 20 bytes is refused (see header/validate.go).
func TestLUKS1ConvertedShortDigest(t *testing.T) {
	cryptsetupBin(t)
	img := image(t, 16<<20)
	kf := keyFile(t, "pass")
	mustCryptsetup(t, "luksFormat", "-q", "--type", "luks1", "--hash", "sha256", "--pbkdf-force-iterations", "1000", "--key-file", kf, img)
	mustCryptsetup(t, "convert", "-q", "--type", "luks2", img)
	h := readHeader(t, img)
	require.Equal(t, "sha256", h.Meta.Digests[0].Hash)
	require.Len(t, h.Meta.Digests[0].Digest, 20)
	mustRun(t, "", "open", "--test", "--key-file", kf, img)
}

// TestKillDuringKeyAdd kills `volcrypt key add` processes with SIGKILL at
// random moments: every key slot that existed stays byte for byte as it
// was (its metadata and key material), and the new key either opens its new
// slot or there is no new slot: never a broken volume.
func TestKillDuringKeyAdd(t *testing.T) {
	img, kf := hostileVolumeKF(t)
	start := time.Now()
	first := keyFile(t, "calibrate")
	mustRun(t, "", append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", first}, cheap...), img)...)
	run := time.Since(start)

	// fingerprint is what a key slot is: its JSON and its key material.
	fingerprint := func(h *header.Header, f *os.File, slot int) string {
		k := h.Meta.Keyslots[slot]
		require.NotNil(t, k, "key slot %d vanished", slot)
		meta, err := json.Marshal(k)
		require.NoError(t, err)
		area := make([]byte, k.Area.Size)
		_, err = f.ReadAt(area, int64(k.Area.Offset))
		require.NoError(t, err)
		return string(meta) + fileHashBytes(area)
	}
	type slotKey struct {
		file string
		fp   string
	}
	known := map[int]slotKey{}
	h := readHeader(t, img)
	f, err := os.Open(img)
	require.NoError(t, err)
	known[0] = slotKey{kf, fingerprint(h, f, 0)}
	known[1] = slotKey{first, fingerprint(h, f, 1)}
	f.Close()

	const rounds = 20
	killed := 0
	for i := range rounds {
		nk := keyFile(t, "key-"+strings.Repeat("x", i+1))
		cmd := exec.Command(binary, append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", nk}, cheap...), img)...)
		cmd.Env = append(os.Environ(), "VOLCRYPT_TEST_AS_CLI=1")
		require.NoError(t, cmd.Start())
		// Spread over the whole run and a little past it, so that some
		// additions complete.
		delay := time.Duration(mrand.Int64N(int64(run) * 3 / 2))
		time.Sleep(delay)
		_ = cmd.Process.Kill()
		if cmd.Wait() != nil {
			killed++
		}
		h := readHeader(t, img)
		f, err := os.Open(img)
		require.NoError(t, err)
		for slot, k := range known {
			require.Equal(t, k.fp, fingerprint(h, f, slot), "round %d (killed after %v): key slot %d changed", i, delay, slot)
		}
		for slot := range h.Meta.Keyslots {
			if _, ok := known[slot]; ok {
				continue
			}
			pass, err := os.ReadFile(nk)
			require.NoError(t, err)
			key, _, err := h.Unlock(f, pass, header.UnlockOptions{Keyslot: slot, Limits: kdf.DefaultLimits()})
			require.NoError(t, err, "round %d (killed after %v): new key slot %d does not open with the new key", i, delay, slot)
			key.Wipe()
			known[slot] = slotKey{nk, fingerprint(h, f, slot)}
		}
		f.Close()
		if len(known) >= header.MaxKeyslots-1 {
			break
		}
	}
	// Every key still opens the volume through the CLI's path.
	h = readHeader(t, img)
	f, err = os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	for slot, k := range known {
		pass, err := os.ReadFile(k.file)
		require.NoError(t, err)
		key, _, err := h.Unlock(f, pass, header.UnlockOptions{Keyslot: slot, Limits: kdf.DefaultLimits()})
		require.NoError(t, err, "key slot %d", slot)
		key.Wipe()
	}
	t.Logf("%d rounds, %d processes killed mid-run, %d keys added; key add takes %v", rounds, killed, len(known)-2, run)
	require.Greater(t, killed, 0)
}

func fileHashBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hostileVolumeKF is a cheap volume with a 1000-iteration digest, so that
// trying every key after every kill stays fast.
func hostileVolumeKF(t *testing.T) (string, string) {
	img := hostileVolume(t, "base", kdf.Params{Algorithm: kdf.PBKDF2, Hash: "sha256", Time: 1000})
	return img, keyFile(t, "base")
}

// TestReliabilityCommandsBadDevices: missing paths, directories, devices
// without a LUKS header and truncated images get a one-line error, the
// right exit code, and no write.
func TestReliabilityCommandsBadDevices(t *testing.T) {
	img, _ := cheapVolume(t, "pass")
	h := readHeader(t, img)
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	truncated := filepath.Join(t.TempDir(), "truncated.img")
	require.NoError(t, os.WriteFile(truncated, b[:h.Size+100], 0o600))
	blank := image(t, 20<<20)
	backup := filepath.Join(t.TempDir(), "ok.hdr")
	mustRun(t, "", "header", "backup", "--file", backup, img)
	for _, dev := range []struct {
		name, path string
		code       int
	}{
		{"missing", filepath.Join(t.TempDir(), "nope"), 4},
		{"directory", t.TempDir(), 4},
		{"not-luks", blank, 1},
	} {
		for _, args := range [][]string{
			{"repair"}, {"erase", "-q"}, {"header", "backup", "--file", filepath.Join(t.TempDir(), "x.hdr")},
		} {
			t.Run(dev.name+"-"+args[0], func(t *testing.T) {
				var before string
				if st, err := os.Stat(dev.path); err == nil && st.Mode().IsRegular() {
					before = fileHash(t, dev.path)
				}
				r := volcrypt(t, "", append(args, dev.path)...)
				require.Equal(t, dev.code, r.code, r.stderr)
				require.Equal(t, 1, strings.Count(r.stderr, "error: "), r.stderr)
				require.LessOrEqual(t, strings.Count(r.stderr, "\n"), 2, r.stderr)
				if before != "" {
					require.Equal(t, before, fileHash(t, dev.path))
				}
			})
		}
	}
	t.Run("truncated-image-restore", func(t *testing.T) {
		before := fileHash(t, truncated)
		r := volcrypt(t, "", "header", "restore", "-q", "--file", backup, truncated)
		require.Equal(t, 4, r.code, r.stderr)
		require.Equal(t, before, fileHash(t, truncated))
	})
	t.Run("truncated-backup-file", func(t *testing.T) {
		short := filepath.Join(t.TempDir(), "short.hdr")
		require.NoError(t, os.WriteFile(short, b[:2*h.Size+4096], 0o600))
		before := fileHash(t, img)
		r := volcrypt(t, "", "header", "restore", "-q", "--file", short, img)
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stderr, "key slots need")
		require.Equal(t, before, fileHash(t, img))
	})
}
