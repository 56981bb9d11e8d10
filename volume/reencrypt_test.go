package volume

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/kdf"
)

const testPass = "in-place passphrase"

// The interruption tests' images: small, to keep CI (with -race) fast.
const (
	testDev    = 40 << 20
	testReduce = 8 << 20
)

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
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", src, img).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, os.Truncate(img, devSize))
	plain, err := os.ReadFile(img)
	require.NoError(t, err)
	return img, plain[:fsSize]
}

// plainBytes reads n bytes of a volume's data through the userspace engine.
func plainBytes(t *testing.T, path string, n int64) []byte {
	t.Helper()
	return plainBytesOf(t, path, "", n)
}

// plainBytesOf reads n bytes of the data of the volume at path (with its
// header in hdr when not empty) through the userspace engine, checking
// that no reencryption is left.
func plainBytesOf(t *testing.T, path, hdr string, n int64) []byte {
	t.Helper()
	v, err := Load(path, LoadOptions{HeaderFile: hdr, ReadOnly: true})
	require.NoError(t, err)
	defer v.Close()
	require.Empty(t, v.Header.Meta.UnmetRequirements())
	require.False(t, hasReencrypt(v.Header), "reencryption metadata left behind")
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
	t.Parallel()
	for _, tc := range []struct {
		name         string
		dev, fs, red int64
		sector       int
		cipher       string
	}{
		{"40m-reduce-8m", 40 << 20, 32 << 20, 8 << 20, 0, ""},
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
			cryptsetupOpens(t, img, testPass)
		})
	}
}

func TestEncryptRefuses(t *testing.T) {
	t.Parallel()
	img, _ := fsImage(t, 40<<20, 36<<20, 2)
	_, err := Encrypt(context.Background(), img, []byte(testPass), encryptOpts(testReduce))
	require.ErrorIs(t, err, kdf.ErrInvalidParams, "file system larger than what is left")
	_, err = Encrypt(context.Background(), img, []byte(testPass), encryptOpts(0))
	require.ErrorIs(t, err, kdf.ErrInvalidParams)

	img, _ = fsImage(t, 40<<20, 32<<20, 2)
	v, err := Encrypt(context.Background(), img, []byte(testPass), encryptOpts(testReduce))
	require.NoError(t, err)
	v.Close()
	_, err = Encrypt(context.Background(), img, []byte(testPass), encryptOpts(testReduce))
	require.ErrorIs(t, err, ErrNotInReencryption, "already encrypted")
}

// killCase is a deterministic kill point: the child kills itself with
// SIGKILL the n-th time it reaches the commit stage.
type killCase struct {
	n     int
	stage string
}

func (k killCase) String() string { return fmt.Sprintf("kill-at-%s-%d", k.stage, k.n) }

// armKillPoint, in a child process, sets the kill point its test named in
// VOLCRYPT_TEST_KILL_AT=n:stage.
func armKillPoint() {
	at := os.Getenv("VOLCRYPT_TEST_KILL_AT")
	if at == "" {
		return
	}
	var k killCase
	if n, stage, ok := strings.Cut(at, ":"); ok {
		k.stage = stage
		fmt.Sscan(n, &k.n)
	}
	var seen atomic.Int64
	testKillPoint = func(stage string) {
		if stage == k.stage && seen.Add(1) == int64(k.n) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // SIGKILL is not caught: nothing runs past here
		}
	}
}

// runKilled runs a volcrypt child process with kill point k and requires
// that it died there.
func runKilled(t *testing.T, cmd *exec.Cmd, k killCase) {
	t.Helper()
	cmd.Env = append(cmd.Env, fmt.Sprintf("VOLCRYPT_TEST_KILL_AT=%d:%s", k.n, k.stage))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return
		}
	}
	t.Fatalf("the child was not killed at %v: %v: %s", k, err, out)
}

// TestHelperInPlaceChild is the child process the interruption tests
// kill: it runs the in-place operation named in its environment (encrypt,
// encrypt-detached, decrypt, reencrypt) on an image and header file, armed
// with the kill point the test chose, and exits.
func TestHelperInPlaceChild(t *testing.T) {
	op := os.Getenv("VOLCRYPT_TEST_CHILD_OP")
	if op == "" {
		t.Skip("helper process only")
	}
	img, hdr := os.Getenv("VOLCRYPT_TEST_CHILD_IMAGE"), os.Getenv("VOLCRYPT_TEST_CHILD_HEADER")
	armKillPoint()
	ctx := context.Background()
	var v *Volume
	var err error
	switch op {
	case "encrypt":
		v, err = Encrypt(ctx, img, []byte(testPass), encryptOpts(testReduce))
	case "encrypt-detached":
		v, err = Encrypt(ctx, img, []byte(testPass), detachedOpts(hdr))
	case "decrypt":
		err = Decrypt(ctx, img, []byte(testPass), DecryptOptions{HeaderFile: hdr})
	case "reencrypt":
		v, err = Reencrypt(ctx, img, []byte(testPass), ReencryptOptions{Keep: map[int][]byte{1: []byte(secondPass)}, HotzoneBytes: 1 << 20})
	default:
		err = fmt.Errorf("unknown operation %q", op)
	}
	if v != nil {
		v.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Exit(0)
}

// inPlaceChild returns the command that runs op on img (with the header
// file hdr, if any) in a TestHelperInPlaceChild process.
func inPlaceChild(op, img, hdr string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperInPlaceChild$")
	cmd.Env = append(os.Environ(), "VOLCRYPT_TEST_CHILD_OP="+op, "VOLCRYPT_TEST_CHILD_IMAGE="+img, "VOLCRYPT_TEST_CHILD_HEADER="+hdr)
	return cmd
}

// encryptChild encrypts img with a data shift in a child process.
func encryptChild(img string) *exec.Cmd { return inPlaceChild("encrypt", img, "") }

// TestEncryptKilledAndResumed kills an encryption with a data shift at
// its commit stages (8 hotzones) and resumes it.
func TestEncryptKilledAndResumed(t *testing.T) {
	const dev, fs = testDev, testDev - testReduce
	img, plain := fsImage(t, dev, fs, 3)
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	for _, k := range []killCase{{1, stageData}, {4, stageProgress}, {1, stageFinish}} {
		t.Run(k.String(), func(t *testing.T) {
			require.NoError(t, os.WriteFile(img, orig, 0o600))
			runKilled(t, encryptChild(img), k)
			h, err := readHeader(img)
			require.NoError(t, err)
			require.True(t, hasReencrypt(h), "killed mid-run")
			// Resume in-process, as running the command again does.
			v, err := Encrypt(context.Background(), img, []byte(testPass), encryptOpts(testReduce))
			require.NoError(t, err)
			v.Close()
			got := plainBytes(t, img, fs)
			requireSameData(t, plain, got)
			fsck(t, got)
		})
	}
}

// TestEncryptResumeAcrossTools interrupts one tool's in-place encryption
// with kill -9 and lets the other finish it.
func TestEncryptResumeAcrossTools(t *testing.T) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed")
	}
	const dev, fs = testDev, testDev - testReduce
	csEncrypt := func(img string) *exec.Cmd {
		cmd := exec.Command(cs, "reencrypt", "--encrypt", "--force-offline-reencrypt", "--reduce-device-size", "8M",
			"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "-q", "--key-file", "-", img)
		cmd.Stdin = bytes.NewReader([]byte(testPass))
		return cmd
	}
	for _, tc := range []struct {
		name   string
		start  func(string) *exec.Cmd
		resume func(t *testing.T, img string)
	}{
		{"volcrypt-then-cryptsetup", encryptChild, func(t *testing.T, img string) { cryptsetupResume(t, img) }},
		{"cryptsetup-then-volcrypt", csEncrypt, func(t *testing.T, img string) {
			v, err := Encrypt(context.Background(), img, []byte(testPass), encryptOpts(testReduce))
			require.NoError(t, err)
			v.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, plain := fsImage(t, dev, fs, 4)
			orig, err := os.ReadFile(img)
			require.NoError(t, err)
			// Kill once the reencryption metadata is on disk, a little
			// later each try, until one lands mid-run.
			if cmd := tc.start(img); cmd.Path == os.Args[0] {
				require.NoError(t, os.WriteFile(img, orig, 0o600))
				runKilled(t, cmd, killCase{2, stageData})
			} else {
				interrupted := false
				for try := range 8 {
					require.NoError(t, os.WriteFile(img, orig, 0o600))
					if killMidRun(t, tc.start(img), img, time.Duration(try)*20*time.Millisecond) {
						interrupted = true
						break
					}
				}
				if !interrupted {
					t.Skip("cryptsetup finished every run before a kill landed mid-run")
				}
			}
			tc.resume(t, img)
			got := plainBytes(t, img, fs)
			requireSameData(t, plain, got)
			fsck(t, got)
		})
	}
}

func readHeader(path string) (*header.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return header.Read(f)
}

// killMidRun starts cmd, waits until the header at hdr carries
// reencryption metadata in both copies (and ready accepts it, when set),
// waits delay more and kills cmd with SIGKILL. It reports whether the
// reencryption was left unfinished.
func killMidRun(t *testing.T, cmd *exec.Cmd, hdr string, delay time.Duration, ready ...func(*header.Header) bool) bool {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	midRun := func() bool {
		h, err := readHeader(hdr)
		if err != nil || len(h.Damaged) > 0 {
			return false
		}
		_, k := h.Meta.ReencryptKeyslot()
		return k != nil && (len(ready) == 0 || ready[0](h))
	}
	for !midRun() {
		select {
		case err := <-done:
			require.NoError(t, err, "%s", out.String())
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
	select {
	case err := <-done:
		require.NoError(t, err, "%s", out.String())
		return false
	case <-time.After(delay):
	}
	require.NoError(t, cmd.Process.Kill())
	<-done
	return midRun()
}

// BenchmarkEncryptInPlace compares volcrypt's in-place encryption with
// cryptsetup reencrypt --encrypt --force-offline-reencrypt on the same
// 64 MiB image in the same run, with a data shift (48 MiB of data) and
// behind a detached header (64 MiB); it reports MB/s and the ratio.
func BenchmarkEncryptInPlace(b *testing.B) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		b.Skip("cryptsetup not installed")
	}
	const dev = 64 << 20
	for _, tc := range []struct {
		name   string
		data   int64
		opts   func(dir string) EncryptOptions
		csArgs func(dir string) []string
	}{
		{"datashift", 48 << 20, func(string) EncryptOptions { return encryptOpts(16 << 20) },
			func(string) []string { return []string{"--reduce-device-size", "16M"} }},
		{"detached-header", dev, func(dir string) EncryptOptions { return detachedOpts(filepath.Join(dir, "hdr")) },
			func(dir string) []string { return []string{"--header", filepath.Join(dir, "hdr")} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			img := filepath.Join(dir, "disk.img")
			orig := make([]byte, dev)
			for i := range orig[:tc.data] {
				orig[i] = byte(i * 7)
			}
			reset := func() {
				require.NoError(b, os.WriteFile(img, orig, 0o600))
				os.Remove(filepath.Join(dir, "hdr"))
			}
			var ours, theirs time.Duration
			for b.Loop() {
				reset()
				start := time.Now()
				v, err := Encrypt(context.Background(), img, []byte(testPass), tc.opts(dir))
				require.NoError(b, err)
				v.Close()
				ours += time.Since(start)

				reset()
				cmd := exec.Command(cs, append(append([]string{"reencrypt", "--encrypt", "--force-offline-reencrypt"}, tc.csArgs(dir)...),
					"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "-q", "--key-file", "-", img)...)
				cmd.Stdin = bytes.NewReader([]byte(testPass))
				start = time.Now()
				out, err := cmd.CombinedOutput()
				require.NoError(b, err, "%s", out)
				theirs += time.Since(start)
			}
			mb := float64(tc.data) * float64(b.N) / 1e6
			b.ReportMetric(mb/ours.Seconds(), "volcrypt-MB/s")
			b.ReportMetric(mb/theirs.Seconds(), "cryptsetup-MB/s")
			b.ReportMetric(theirs.Seconds()/ours.Seconds(), "speedup")
		})
	}
}

// encryptedImage returns an ext4 image encrypted in place by Encrypt and
// the plain bytes of its file system.
func encryptedImage(t *testing.T, dev, fs int64, seed uint64) (string, []byte) {
	t.Helper()
	img, plain := fsImage(t, dev, fs, seed)
	v, err := Encrypt(context.Background(), img, []byte(testPass), encryptOpts(dev-fs))
	require.NoError(t, err)
	require.NoError(t, v.Close())
	return img, plain
}

// requirePlainFS checks that img holds the plain file system again.
func requirePlainFS(t *testing.T, img string, plain []byte) {
	t.Helper()
	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	requireSameData(t, plain, raw[:len(plain)])
	fsck(t, raw[:len(plain)])
	sig, err := Probe(bytes.NewReader(raw))
	require.NoError(t, err)
	require.Equal(t, "ext2/3/4 file system", sig)
}

func TestDecryptInPlace(t *testing.T) {
	t.Parallel()
	const dev, fs = testDev, testDev - testReduce
	img, plain := encryptedImage(t, dev, fs, 5)
	hdr := filepath.Join(t.TempDir(), "hdr")
	err := Decrypt(context.Background(), img, []byte("wrong"), DecryptOptions{HeaderFile: hdr})
	require.ErrorIs(t, err, header.ErrWrongKey)
	require.NoFileExists(t, hdr, "a failed start leaves no header file")
	require.ErrorIs(t, Decrypt(context.Background(), img, []byte(testPass), DecryptOptions{}), kdf.ErrInvalidParams)

	var last Progress
	require.NoError(t, Decrypt(context.Background(), img, []byte(testPass), DecryptOptions{HeaderFile: hdr, Progress: func(p Progress) { last = p }}))
	require.Equal(t, last.TotalBytes, last.DoneBytes)
	require.NoFileExists(t, hdr)
	requirePlainFS(t, img, plain)
}

func TestDecryptKilledAndResumed(t *testing.T) {
	const dev, fs = testDev, testDev - testReduce
	img, plain := encryptedImage(t, dev, fs, 6)
	hdr := filepath.Join(t.TempDir(), "hdr")
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	for _, k := range []killCase{{1, stageData}, {4, stageProgress}, {1, stageFinish}} {
		t.Run(k.String(), func(t *testing.T) {
			require.NoError(t, os.WriteFile(img, orig, 0o600))
			os.Remove(hdr)
			os.Remove(hdr + ".done")
			runKilled(t, inPlaceChild("decrypt", img, hdr), k)
			// Killed with the header file in place (resume), or during the
			// final clean-up (the rerun only destroys the renamed file).
			require.NoError(t, Decrypt(context.Background(), img, []byte(testPass), DecryptOptions{HeaderFile: hdr}))
			require.NoFileExists(t, hdr+".done", "the rerun destroys the finished header file")
			require.NoFileExists(t, hdr)
			requirePlainFS(t, img, plain)
		})
	}
}

// TestDecryptResumedByCryptsetup interrupts volcrypt's decryption with
// kill -9 after its first hotzone and lets cryptsetup finish it from the
// header file.
func TestDecryptResumedByCryptsetup(t *testing.T) {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		t.Skip("cryptsetup not installed")
	}
	const dev, fs = testDev, testDev - testReduce
	img, plain := encryptedImage(t, dev, fs, 9)
	hdr := filepath.Join(t.TempDir(), "hdr")
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(img, orig, 0o600))
	cmd := inPlaceChild("decrypt", img, hdr)
	// cryptsetup 2.6.1 does not know decryption with a data shift; its
	// recovery reads a first hotzone from a moved segment that does not
	// exist here, so it resumes only after the first hotzone: kill in the
	// second.
	runKilled(t, cmd, killCase{2, stageData})
	cryptsetupResume(t, img, "--header", hdr)
	requirePlainFS(t, img, plain)
}

const secondPass = "second passphrase"

// rekeyImage returns an encrypted ext4 image with a second key slot (1)
// that a token names, and the plain bytes of its file system.
func rekeyImage(t *testing.T, seed uint64) (string, []byte) {
	t.Helper()
	img, plain := encryptedImage(t, testDev, testDev-testReduce, seed)
	v, err := Load(img, LoadOptions{})
	require.NoError(t, err)
	defer v.Close()
	key, _, err := v.Unlock([]byte(testPass), UnlockOptions{Keyslot: -1})
	require.NoError(t, err)
	defer key.Wipe()
	slot, err := v.AddKey(context.Background(), key.Bytes(), []byte(secondPass), -1, cheapKDF)
	require.NoError(t, err)
	require.Equal(t, 1, slot)
	_, err = v.ImportToken([]byte(`{"type":"x-test","keyslots":["1"],"payload":{"kept":"byte for byte"}}`), -1)
	require.NoError(t, err)
	return img, plain
}

func TestReencryptInPlace(t *testing.T) {
	t.Parallel()
	img, plain := rekeyImage(t, 10)
	before, err := readHeader(img)
	require.NoError(t, err)
	var last Progress
	v, err := Reencrypt(context.Background(), img, []byte(testPass), ReencryptOptions{
		Keep: map[int][]byte{1: []byte(secondPass)}, Cipher: "aes-xts-plain64", KeySizeBits: 256, SectorSize: 4096,
		Progress: func(p Progress) { last = p }})
	require.NoError(t, err)
	v.Close()
	require.Equal(t, last.TotalBytes, last.DoneBytes)
	got := plainBytes(t, img, int64(len(plain)))
	requireSameData(t, plain, got)
	fsck(t, got)

	h, err := readHeader(img)
	require.NoError(t, err)
	seg, _ := h.DataSegment()
	require.Equal(t, 4096, seg.SectorSize)
	require.Len(t, h.Meta.Keyslots, 2, "the two slots re-wrapped, the old ones gone")
	require.Len(t, h.Meta.Digests, 1)
	for _, d := range h.Meta.Digests {
		require.NotEqual(t, before.Meta.Digests[0].Digest, d.Digest, "a new volume key")
	}
	toks := h.Tokens()
	require.Len(t, toks, 1)
	require.Contains(t, string(toks[0].JSON), `"payload":{"kept":"byte for byte"}`)
	require.Len(t, toks[0].Keyslots, 1)
	for _, pass := range []string{testPass, secondPass} {
		v, err := Load(img, LoadOptions{ReadOnly: true})
		require.NoError(t, err)
		k, slot, err := v.Unlock([]byte(pass), UnlockOptions{Keyslot: -1})
		require.NoError(t, err, pass)
		k.Wipe()
		v.Close()
		if pass == secondPass {
			require.Equal(t, toks[0].Keyslots[0], slot, "the token follows its slot")
		}
		cryptsetupOpens(t, img, pass)
	}
}

// reencryptChild re-keys img (keeping slot 1) in a child process.
func reencryptChild(img string) *exec.Cmd { return inPlaceChild("reencrypt", img, "") }

func TestReencryptKilledAndResumed(t *testing.T) {
	img, plain := rekeyImage(t, 11)
	orig, err := os.ReadFile(img)
	require.NoError(t, err)
	killAndResume(t, func() *exec.Cmd { return reencryptChild(img) },
		func() { require.NoError(t, os.WriteFile(img, orig, 0o600)) },
		func(t *testing.T) {
			v, err := Reencrypt(context.Background(), img, []byte(testPass), ReencryptOptions{Keep: map[int][]byte{1: []byte(secondPass)}})
			require.NoError(t, err)
			v.Close()
		},
		func(t *testing.T) {
			got := plainBytes(t, img, int64(len(plain)))
			requireSameData(t, plain, got)
			fsck(t, got)
			h, err := readHeader(img)
			require.NoError(t, err)
			require.Len(t, h.Meta.Keyslots, 2)
		})
}

// TestReencryptResumeAcrossTools interrupts one tool's reencryption with
// kill -9 and lets the other finish it.
func TestReencryptResumeAcrossTools(t *testing.T) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed")
	}
	csReencrypt := func(img string) *exec.Cmd {
		cmd := exec.Command(cs, "reencrypt", "--force-offline-reencrypt", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
			"--hotzone-size", "1M", "-q", img)
		cmd.Stdin = bytes.NewReader([]byte(testPass + "\n" + secondPass + "\n"))
		return cmd
	}
	for _, tc := range []struct {
		name   string
		start  func(string) *exec.Cmd
		resume func(t *testing.T, img string)
	}{
		{"volcrypt-then-cryptsetup", reencryptChild, func(t *testing.T, img string) { cryptsetupResume(t, img) }},
		{"cryptsetup-then-volcrypt", csReencrypt, func(t *testing.T, img string) {
			v, err := Reencrypt(context.Background(), img, []byte(testPass), ReencryptOptions{})
			require.NoError(t, err)
			v.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, plain := rekeyImage(t, 13)
			orig, err := os.ReadFile(img)
			require.NoError(t, err)
			killInHotzone(t, img, func() { require.NoError(t, os.WriteFile(img, orig, 0o600)) }, func() *exec.Cmd { return tc.start(img) })
			tc.resume(t, img)
			got := plainBytes(t, img, int64(len(plain)))
			requireSameData(t, plain, got)
			fsck(t, got)
		})
	}
}

// cryptsetupResume finishes an interrupted run with cryptsetup: after
// kill -9 it wants "repair" (recovery of the hotzone) before --resume-only,
// for its own runs as for ours.
func cryptsetupResume(t *testing.T, img string, args ...string) {
	t.Helper()
	for _, cmdArgs := range [][]string{{"repair", "-q"}, {"reencrypt", "--resume-only", "--force-offline-reencrypt", "-q"}} {
		cmd := exec.Command("cryptsetup", append(append(cmdArgs, args...), "--key-file", "-", img)...)
		cmd.Stdin = bytes.NewReader([]byte(testPass))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "cryptsetup %v: %s", cmdArgs, out)
	}
}

// killInHotzone runs start after reset and kills it with SIGKILL inside a
// hotzone (the state that needs checksum recovery); the header is at hdr.
// A volcrypt child kills itself there; cryptsetup is killed as soon as its
// header shows a hotzone (else anywhere mid-run), and when it finishes
// every try before that the test is skipped, never failed.
func killInHotzone(t *testing.T, hdr string, reset func(), start func() *exec.Cmd) {
	t.Helper()
	if cmd := start(); cmd.Path == os.Args[0] {
		reset()
		runKilled(t, cmd, killCase{2, stageHotzone})
		return
	}
	inHotzone := func(h *header.Header) bool {
		_, hot := h.Meta.SegmentByFlag(header.FlagInReencryption)
		return hot != nil
	}
	for try := range 12 {
		reset()
		ready := []func(*header.Header) bool{inHotzone}
		if try >= 8 {
			ready = nil
		}
		if killMidRun(t, start(), hdr, 0, ready...) {
			h, err := readHeader(hdr)
			require.NoError(t, err)
			t.Logf("killed in a hotzone: %v", inHotzone(h))
			return
		}
	}
	t.Skip("cryptsetup finished every run before a kill landed mid-run")
}

func hasReencrypt(h *header.Header) bool {
	_, k := h.Meta.ReencryptKeyslot()
	return k != nil
}

// cryptsetupOpens checks that cryptsetup opens img with pass, where it is
// installed.
func cryptsetupOpens(t *testing.T, img, pass string) {
	t.Helper()
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		return
	}
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", "-", img)
	cmd.Stdin = bytes.NewReader([]byte(pass))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// TestReencryptWipesKeyMaterialLeftByCrash kills a reencryption after its
// final header write, before it wiped the old key slots, and checks that
// the next reencryption zeroes what no key slot uses before it starts.
func TestReencryptWipesKeyMaterialLeftByCrash(t *testing.T) {
	img, plain := rekeyImage(t, 14)
	runKilled(t, reencryptChild(img), killCase{1, stageFinishHeader})
	h, err := readHeader(img)
	require.NoError(t, err)
	require.False(t, hasReencrypt(h), "killed after the final header write")
	require.NotEmpty(t, nonzeroFree(t, img), "the crash leaves the old key slots")
	// The next reencryption's key slots land where the old ones were; old
	// material where no new slot goes (a slot that was high in the area)
	// must go too.
	high := bytes.Repeat([]byte{0xa5}, 4096)
	func() {
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		require.NoError(t, err)
		defer f.Close()
		_, err = f.WriteAt(high, h.KeyslotsEnd()-int64(len(high)))
		require.NoError(t, err)
	}()

	// Slots get new numbers in a reencryption: find the second one.
	f, err := os.Open(img)
	require.NoError(t, err)
	second := -1
	for id := range h.Meta.Keyslots {
		if k, err := h.OpenKeyslot(f, id, []byte(secondPass), kdf.DefaultLimits()); err == nil {
			k.Wipe()
			second = id
		}
	}
	f.Close()
	require.NotEqual(t, -1, second)
	keep := map[int][]byte{second: []byte(secondPass)}

	ctx, cancel := context.WithCancel(context.Background())
	_, err = Reencrypt(ctx, img, []byte(testPass), ReencryptOptions{Keep: keep, Progress: func(Progress) { cancel() }})
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, nonzeroFree(t, img), "the next reencryption starts by zeroing them")
	v, err := Reencrypt(context.Background(), img, []byte(testPass), ReencryptOptions{Keep: keep})
	require.NoError(t, err)
	v.Close()
	requireSameData(t, plain, plainBytes(t, img, int64(len(plain))))
}

// nonzeroFree returns the nonzero bytes of img's key-slot area that no key
// slot uses.
func nonzeroFree(t *testing.T, img string) []byte {
	t.Helper()
	h, err := readHeader(img)
	require.NoError(t, err)
	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	area := raw[2*h.Size : h.KeyslotsEnd()]
	for _, k := range h.Meta.Keyslots {
		clear(area[int64(k.Area.Offset)-2*h.Size : int64(k.Area.Offset+k.Area.Size)-2*h.Size])
	}
	return bytes.Trim(area, "\x00")
}

// TestReencryptRefusesHeaderCopy: a copy of the device's own header named
// as detached header would leave the device's header stale.
func TestReencryptRefusesHeaderCopy(t *testing.T) {
	t.Parallel()
	img, _ := encryptedImage(t, testDev, testDev-testReduce, 15)
	h, err := readHeader(img)
	require.NoError(t, err)
	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	hdr := filepath.Join(t.TempDir(), "hdr")
	require.NoError(t, os.WriteFile(hdr, raw[:h.KeyslotsEnd()], 0o600))
	_, err = Reencrypt(context.Background(), img, []byte(testPass), ReencryptOptions{HeaderFile: hdr})
	require.ErrorIs(t, err, kdf.ErrInvalidParams)
	now, err := os.ReadFile(img)
	require.NoError(t, err)
	require.True(t, bytes.Equal(raw, now), "the refusal changes nothing")
}
