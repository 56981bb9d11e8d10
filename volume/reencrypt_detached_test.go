package volume

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/kdf"
)

// The detached-header tests' images: the file system fills the device.
const detachedDev = 24 << 20

func detachedOpts(hdr string) EncryptOptions {
	o := encryptOpts(0)
	o.HeaderFile = hdr
	return o
}

// detachedPlain reads n bytes of a detached-header volume's data through
// the userspace engine, checking that no reencryption is left.
func detachedPlain(t *testing.T, img, hdr string, n int64) []byte {
	t.Helper()
	return plainBytesOf(t, img, hdr, n)
}

// csVolumeKey returns the volume key cryptsetup reads from the detached
// header hdr with testPass.
func csVolumeKey(t *testing.T, img, hdr string) []byte {
	t.Helper()
	cmd := exec.Command("cryptsetup", "luksDump", "--dump-volume-key", "-q", "--key-file", "-", "--header", hdr, img)
	cmd.Stdin = strings.NewReader(testPass)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	_, dump, ok := strings.Cut(string(out), "MK dump:")
	require.True(t, ok, "%s", out)
	key, err := hex.DecodeString(strings.Join(regexp.MustCompile(`[0-9a-f]{2}`).FindAllString(dump, -1), ""))
	require.NoError(t, err)
	return key
}

// requireCryptsetupReads checks that cryptsetup opens the detached-header
// volume and that its volume key, applied to the raw device with the
// segment's cipher, gives plain: the data is where and how cryptsetup
// expects it.
func requireCryptsetupReads(t *testing.T, img, hdr string, plain []byte) {
	t.Helper()
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		return
	}
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", "-", "--header", hdr, img)
	cmd.Stdin = strings.NewReader(testPass)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	h, err := readHeader(hdr)
	require.NoError(t, err)
	seg, err := h.DataSegment()
	require.NoError(t, err)
	c, err := crypt.New(seg.Encryption, csVolumeKey(t, img, hdr), seg.SectorSize)
	require.NoError(t, err)
	defer c.Wipe()
	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	got := raw[int(seg.Offset) : int(seg.Offset)+len(plain)]
	require.False(t, bytes.Equal(got[1024:2048], plain[1024:2048]), "the superblock is still plain")
	require.NoError(t, c.Decrypt(got, got, 0))
	requireSameData(t, plain, got)
}

func TestEncryptDetachedInPlace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		sector int
	}{
		{"512-byte-sectors", 0},
		{"4k-sectors", 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, plain := fsImage(t, detachedDev, detachedDev, 21)
			hdr := filepath.Join(t.TempDir(), "hdr")
			if tc.sector == 4096 {
				// An all-zero file may become the header.
				require.NoError(t, os.WriteFile(hdr, make([]byte, 1<<20), 0o600))
			}
			o := detachedOpts(hdr)
			o.SectorSize = tc.sector
			var last Progress
			o.Progress = func(p Progress) { last = p }
			v, err := Encrypt(context.Background(), img, []byte(testPass), o)
			require.NoError(t, err)
			require.NoError(t, v.Close())
			require.Equal(t, Progress{DoneBytes: detachedDev, TotalBytes: detachedDev}, last)
			got := detachedPlain(t, img, hdr, detachedDev)
			requireSameData(t, plain, got)
			fsck(t, got)
			requireCryptsetupReads(t, img, hdr, plain)

			_, err = Encrypt(context.Background(), img, []byte(testPass), o)
			require.ErrorIs(t, err, ErrNotInReencryption, "already encrypted")
		})
	}
}

func TestEncryptDetachedRefuses(t *testing.T) {
	t.Parallel()
	img, _ := fsImage(t, detachedDev, detachedDev, 22)
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	dir := t.TempDir()
	o := detachedOpts(filepath.Join(dir, "hdr"))
	o.ReduceDeviceSizeBytes = testReduce
	_, err = Encrypt(context.Background(), img, []byte(testPass), o)
	require.ErrorIs(t, err, kdf.ErrInvalidParams, "a data shift with a detached header")

	o = detachedOpts(filepath.Join(dir, "hdr"))
	o.SectorSize = 4096
	odd := filepath.Join(dir, "odd.img")
	require.NoError(t, os.WriteFile(odd, orig[:detachedDev-512], 0o600))
	_, err = Encrypt(context.Background(), odd, []byte(testPass), o)
	require.ErrorIs(t, err, kdf.ErrInvalidParams, "not a multiple of the sector size")
	require.NoFileExists(t, o.HeaderFile, "a failed start leaves no header file")

	taken := filepath.Join(dir, "taken")
	require.NoError(t, os.WriteFile(taken, orig, 0o600))
	_, err = Encrypt(context.Background(), img, []byte(testPass), detachedOpts(taken))
	require.ErrorIs(t, err, kdf.ErrInvalidParams, "the header file holds a file system")
	// Data with no known signature is no header file either.
	unknown := filepath.Join(dir, "unknown")
	junk := bytes.Repeat([]byte("not a header "), 1000)
	require.NoError(t, os.WriteFile(unknown, junk, 0o600))
	_, err = Encrypt(context.Background(), img, []byte(testPass), detachedOpts(unknown))
	require.ErrorIs(t, err, kdf.ErrInvalidParams, "the header file holds unknown data")
	got, err := os.ReadFile(unknown)
	require.NoError(t, err)
	require.Equal(t, junk, got, "the unknown data is left alone")
	luks, _ := encryptedImage(t, testDev, testDev-testReduce, 27)
	_, err = Encrypt(context.Background(), luks, []byte(testPass), detachedOpts(filepath.Join(dir, "hdr2")))
	require.ErrorIs(t, err, ErrNotInReencryption, "the device is LUKS already")
	require.NoFileExists(t, filepath.Join(dir, "hdr2"))
	now, err := os.ReadFile(img)
	require.NoError(t, err)
	require.True(t, bytes.Equal(orig, now), "refusals leave the device unchanged")
}

// detachedChild encrypts img in place behind the header file hdr, or
// decrypts it, in a child process.
func detachedChild(img, hdr string, decrypt bool) *exec.Cmd {
	if decrypt {
		return inPlaceChild("decrypt", img, hdr)
	}
	return inPlaceChild("encrypt-detached", img, hdr)
}

// killAndResume kills child runs at the commit stages of a hotzone (the
// state after stageProgress is the one before the next stageChecksums) and
// in the final clean-up, and resumes each; check then checks the result.
// reset restores the starting state.
func killAndResume(t *testing.T, child func() *exec.Cmd, reset func(), resume func(t *testing.T), check func(t *testing.T)) {
	t.Helper()
	for _, k := range []killCase{{1, stageChecksums}, {2, stageHotzone}, {3, stageData}, {1, stageFinish}} {
		t.Run(k.String(), func(t *testing.T) {
			reset()
			runKilled(t, child(), k)
			resume(t)
			check(t)
		})
	}
}

func TestEncryptDetachedKilledAndResumed(t *testing.T) {
	img, plain := fsImage(t, detachedDev, detachedDev, 23)
	hdr := filepath.Join(t.TempDir(), "hdr")
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	killAndResume(t, func() *exec.Cmd { return detachedChild(img, hdr, false) },
		func() {
			require.NoError(t, os.WriteFile(img, orig, 0o600))
			os.Remove(hdr)
		},
		func(t *testing.T) {
			v, err := Encrypt(context.Background(), img, []byte(testPass), detachedOpts(hdr))
			require.NoError(t, err)
			v.Close()
		},
		func(t *testing.T) {
			got := detachedPlain(t, img, hdr, detachedDev)
			requireSameData(t, plain, got)
			fsck(t, got)
		})
}

// detachedEncryptedImage returns an ext4 image encrypted in place behind
// a detached header, the header's path and the plain file system.
func detachedEncryptedImage(t *testing.T, seed uint64) (string, string, []byte) {
	t.Helper()
	img, plain := fsImage(t, detachedDev, detachedDev, seed)
	hdr := filepath.Join(t.TempDir(), "hdr")
	v, err := Encrypt(context.Background(), img, []byte(testPass), detachedOpts(hdr))
	require.NoError(t, err)
	require.NoError(t, v.Close())
	return img, hdr, plain
}

// requireDecryptedDetached checks that img holds the plain file system
// again and that the header file holds no key.
func requireDecryptedDetached(t *testing.T, img, hdr string, plain []byte) {
	t.Helper()
	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	requireSameData(t, plain, raw)
	fsck(t, raw)
	h, err := readHeader(hdr)
	require.NoError(t, err)
	require.Empty(t, h.Meta.Keyslots)
	require.Empty(t, h.Meta.Digests)
	seg, err := h.DataSegment()
	require.NoError(t, err)
	require.Equal(t, header.SegmentLinear, seg.Type)
	require.False(t, hasReencrypt(h))
}

func TestDecryptDetachedInPlace(t *testing.T) {
	t.Parallel()
	img, hdr, plain := detachedEncryptedImage(t, 24)
	err := Decrypt(context.Background(), img, []byte("wrong"), DecryptOptions{HeaderFile: hdr})
	require.ErrorIs(t, err, header.ErrWrongKey)
	var last Progress
	require.NoError(t, Decrypt(context.Background(), img, []byte(testPass), DecryptOptions{HeaderFile: hdr, Progress: func(p Progress) { last = p }}))
	require.Equal(t, Progress{DoneBytes: detachedDev, TotalBytes: detachedDev}, last)
	requireDecryptedDetached(t, img, hdr, plain)
	require.NoError(t, Decrypt(context.Background(), img, []byte(testPass), DecryptOptions{HeaderFile: hdr}), "a rerun finds it done")
	requireDecryptedDetached(t, img, hdr, plain)
}

func TestDecryptDetachedKilledAndResumed(t *testing.T) {
	img, hdr, plain := detachedEncryptedImage(t, 25)
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	origHdr, err := os.ReadFile(hdr)
	require.NoError(t, err)
	killAndResume(t, func() *exec.Cmd { return detachedChild(img, hdr, true) },
		func() {
			require.NoError(t, os.WriteFile(img, orig, 0o600))
			require.NoError(t, os.WriteFile(hdr, origHdr, 0o600))
		},
		func(t *testing.T) {
			require.NoError(t, Decrypt(context.Background(), img, []byte(testPass), DecryptOptions{HeaderFile: hdr}))
		},
		func(t *testing.T) {
			if h, err := readHeader(hdr); err == nil && len(h.Meta.Keyslots) > 0 {
				// Killed before the decryption started.
				require.NoError(t, Decrypt(context.Background(), img, []byte(testPass), DecryptOptions{HeaderFile: hdr}))
			}
			requireDecryptedDetached(t, img, hdr, plain)
		})
}

// TestDetachedResumeAcrossTools interrupts one tool's in-place encryption
// or decryption behind a detached header with kill -9 and lets the other
// finish it.
func TestDetachedResumeAcrossTools(t *testing.T) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed")
	}
	csRun := func(args ...string) func(img, hdr string) *exec.Cmd {
		return func(img, hdr string) *exec.Cmd {
			cmd := exec.Command(cs, append(append([]string{"reencrypt", "--force-offline-reencrypt", "--header", hdr,
				"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hotzone-size", "1M", "-q", "--key-file", "-"}, args...), img)...)
			cmd.Stdin = strings.NewReader(testPass)
			return cmd
		}
	}
	csResume := func(t *testing.T, img, hdr string) { cryptsetupResume(t, img, "--header", hdr) }
	for _, tc := range []struct {
		name    string
		decrypt bool
		start   func(img, hdr string) *exec.Cmd
		resume  func(t *testing.T, img, hdr string)
	}{
		{"encrypt-volcrypt-then-cryptsetup", false, func(img, hdr string) *exec.Cmd { return detachedChild(img, hdr, false) }, csResume},
		{"encrypt-cryptsetup-then-volcrypt", false, csRun("--encrypt"), func(t *testing.T, img, hdr string) {
			v, err := Encrypt(context.Background(), img, []byte(testPass), detachedOpts(hdr))
			require.NoError(t, err)
			v.Close()
		}},
		{"decrypt-volcrypt-then-cryptsetup", true, func(img, hdr string) *exec.Cmd { return detachedChild(img, hdr, true) }, csResume},
		// cryptsetup decrypts backward, from the end of the data.
		{"decrypt-cryptsetup-then-volcrypt", true, csRun("--decrypt"), func(t *testing.T, img, hdr string) {
			require.NoError(t, Decrypt(context.Background(), img, []byte(testPass), DecryptOptions{HeaderFile: hdr}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var img, hdr string
			var plain []byte
			if tc.decrypt {
				img, hdr, plain = detachedEncryptedImage(t, 26)
			} else {
				img, plain = fsImage(t, detachedDev, detachedDev, 26)
				hdr = filepath.Join(t.TempDir(), "hdr")
			}
			orig, err := os.ReadFile(img)
			require.NoError(t, err)
			origHdr, _ := os.ReadFile(hdr)
			killInHotzone(t, hdr, func() {
				require.NoError(t, os.WriteFile(img, orig, 0o600))
				if tc.decrypt {
					require.NoError(t, os.WriteFile(hdr, origHdr, 0o600))
				} else {
					os.Remove(hdr)
				}
			}, func() *exec.Cmd { return tc.start(img, hdr) })
			tc.resume(t, img, hdr)
			if tc.decrypt {
				requireDecryptedDetached(t, img, hdr, plain)
				return
			}
			got := detachedPlain(t, img, hdr, detachedDev)
			requireSameData(t, plain, got)
			fsck(t, got)
		})
	}
}
