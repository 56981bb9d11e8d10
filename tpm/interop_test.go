package tpm

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/stretchr/testify/require"
)

// systemdCryptsetup is Debian's systemd-cryptsetup helper.
const systemdCryptsetup = "/usr/lib/systemd/systemd-cryptsetup"

// requireInteropTools skips unless cryptsetup, systemd-cryptenroll and
// systemd-cryptsetup are installed. They serve only as oracles.
func requireInteropTools(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"cryptsetup", "systemd-cryptenroll", systemdCryptsetup} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (Debian 12: cryptsetup-bin, systemd, systemd-cryptsetup): skipping systemd interop test", bin)
		}
	}
}

// run runs a tool and returns its combined output.
func run(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustRun runs a tool and fails the test if it fails.
func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, env, name, args...)
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return out
}

// writeSecretFile writes b to a new 0600 file in dir.
func writeSecretFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// newLUKS2Image formats a small LUKS2 image with cheap PBKDF2 and returns
// it with its key file.
func newLUKS2Image(t *testing.T) (img, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	img = filepath.Join(dir, "img")
	f, err := os.Create(img)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(32<<20))
	require.NoError(t, f.Close())
	key := make([]byte, 32)
	_, err = rand.Read(key)
	require.NoError(t, err)
	keyFile = writeSecretFile(t, dir, "key", key)
	mustRun(t, nil, "cryptsetup", "luksFormat", "--type", "luks2", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "-q", "--key-file", keyFile, img)
	return img, keyFile
}

// flushSessions flushes every loaded session and transient object: systemd
// 252 leaves one session behind per unseal on swtpm.
func flushSessions(t *testing.T, tp transport.TPM) {
	t.Helper()
	for _, first := range []tpm2.TPMHandle{0x80000000, 0x02000000, 0x03000000} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(first), PropertyCount: 64}.Execute(tp)
		require.NoError(t, err)
		hs, err := rsp.CapabilityData.Data.Handles()
		require.NoError(t, err)
		for _, h := range hs.Handle {
			if h>>24 == first>>24 {
				_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(tp)
			}
		}
	}
}

// withTPM opens swtpm for f and closes it again: swtpm serves one client at
// a time, so the systemd tools can only connect while we are not.
func withTPM(t *testing.T, inst *swtpmInstance, f func(tp transport.TPM)) {
	t.Helper()
	tp, err := Open(inst.Device)
	require.NoError(t, err)
	defer tp.Close()
	f(tp)
}

// testPassphrase asks cryptsetup whether pass opens a key slot of img.
func testPassphrase(t *testing.T, img string, pass []byte) error {
	t.Helper()
	f := writeSecretFile(t, t.TempDir(), "pass", pass)
	out, err := run(t, nil, "cryptsetup", "open", "--test-passphrase", "--disable-external-tokens", "--key-file", f, img)
	if err != nil {
		t.Logf("cryptsetup open --test-passphrase: %s", out)
	}
	return err
}

// TestInteropSystemdEnrollVolcryptUnseal: a token enrolled by Debian 12's
// systemd-cryptenroll unseals with this package, and the result opens the
// key slot.
func TestInteropSystemdEnrollVolcryptUnseal(t *testing.T) {
	requireInteropTools(t)
	for _, c := range []struct {
		name string
		pin  []byte
		pcrs string
	}{
		{"no PIN", nil, "7"},
		{"PIN, PCRs 0+7", []byte("1234"), "0+7"},
		{"PIN with interior zero in SHA-256", interiorZeroPIN(t, nil), "7"},
		{"no PCRs", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			inst := startSwtpm(t)
			img, keyFile := newLUKS2Image(t)
			args := []string{"--unlock-key-file=" + keyFile, "--tpm2-device=" + inst.Device, "--tpm2-pcrs=" + c.pcrs}
			var env []string
			if c.pin != nil {
				args = append(args, "--tpm2-with-pin=yes")
				env = append(env, "NEWPIN="+string(c.pin))
			}
			mustRun(t, env, "systemd-cryptenroll", append(args, img)...)
			withTPM(t, inst, func(tp transport.TPM) { flushSessions(t, tp) })

			js := mustRun(t, nil, "cryptsetup", "token", "export", "--token-id", "0", img)
			tok, err := ParseToken([]byte(strings.TrimSpace(js)))
			require.NoError(t, err)
			require.Equal(t, c.pin != nil, tok.PIN)
			re, err := tok.MarshalJSON()
			require.NoError(t, err)
			require.JSONEq(t, js, string(re), "token re-encodes to the same JSON")
			s, err := tok.Sealed()
			require.NoError(t, err)

			tp, err := Open(inst.Device)
			require.NoError(t, err)
			defer tp.Close()
			if c.pin != nil {
				_, err = Unseal(tp, s, nil)
				require.ErrorIs(t, err, ErrPINRequired)
			}
			sec, err := Unseal(tp, s, c.pin)
			require.NoError(t, err)
			require.Len(t, sec, 32)
			require.NoError(t, testPassphrase(t, img, Passphrase(sec)), "unsealed secret opens systemd's key slot")
			require.Error(t, testPassphrase(t, img, Passphrase(make([]byte, 32))), "oracle must be able to fail")

			if c.pin != nil {
				_, err = Unseal(tp, s, []byte("9999"))
				require.ErrorIs(t, err, ErrBadPIN)
			}
			pcrs, err := ParsePCRList(c.pcrs)
			require.NoError(t, err)
			require.Equal(t, pcrs, tok.PCRs)
			if len(pcrs) > 0 {
				extendPCR(t, tp, pcrs[len(pcrs)-1], "changed")
				_, err = Unseal(tp, s, c.pin)
				require.ErrorIs(t, err, ErrPCRMismatch)
			}
			require.Zero(t, loadedHandles(t, tp), "handles leaked")
		})
	}
}

// TestInteropVolcryptSealSystemdUnseal: a token written by this package
// unseals with Debian 12's systemd-cryptsetup. Without device-mapper the
// attach fails afterwards; its debug log shows whether the unseal completed.
func TestInteropVolcryptSealSystemdUnseal(t *testing.T) {
	requireInteropTools(t)
	for _, c := range []struct {
		name string
		pin  []byte
		pcrs []int
	}{
		{"no PIN", nil, []int{7}},
		{"PIN and PCRs 0+7", []byte("1234"), []int{0, 7}},
		{"PIN with interior zero in SHA-256", interiorZeroPIN(t, nil), []int{7}},
		{"no PCRs", nil, []int{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			inst := startSwtpm(t)
			img, keyFile := newLUKS2Image(t)
			sec := randomSecret(t)
			var s *Sealed
			withTPM(t, inst, func(tp transport.TPM) {
				extendPCR(t, tp, 7, "secure boot on")
				var err error
				s, err = Seal(tp, sec, SealOptions{PCRs: c.pcrs, PIN: c.pin})
				require.NoError(t, err)
			})

			dir := t.TempDir()
			newKey := writeSecretFile(t, dir, "newkey", Passphrase(sec))
			mustRun(t, nil, "cryptsetup", "luksAddKey", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
				"--key-file", keyFile, "--new-key-slot", "3", img, newKey)
			tokJSON, err := NewToken(s, 3).MarshalJSON()
			require.NoError(t, err)
			tokFile := writeSecretFile(t, dir, "token.json", tokJSON)
			mustRun(t, nil, "cryptsetup", "token", "import", "--json-file", tokFile, "--token-id", "5", img)
			js := mustRun(t, nil, "cryptsetup", "token", "export", "--token-id", "5", img)
			require.JSONEq(t, string(tokJSON), js)

			name := "volcrypt-test-" + strconv.Itoa(inst.Port)
			attach := func(pin []byte) string {
				env := []string{"SYSTEMD_LOG_LEVEL=debug", "SYSTEMD_LOG_TARGET=console"}
				if pin != nil {
					// systemd-cryptsetup 252 takes the PIN from $PIN when headless.
					env = append(env, "PIN="+string(pin))
				}
				out, _ := run(t, env, systemdCryptsetup, "attach", name, img, "-",
					"tpm2-device=swtpm:port="+strconv.Itoa(inst.Port)+",headless=1")
				withTPM(t, inst, func(tp transport.TPM) { flushSessions(t, tp) })
				// Where device-mapper works (the VM harness) the attach
				// really activates the volume: close it again.
				if _, err := os.Stat("/dev/mapper/" + name); err == nil {
					mustRun(t, nil, "cryptsetup", "close", name)
				}
				return out
			}
			if _, err := os.Stat(DefaultDevice); err == nil && c.pin != nil {
				// With device-mapper, systemd 252 goes through libcryptsetup's
				// token plugin, which ignores tpm2-device= (it uses the kernel
				// TPM) and, headless, asks for no PIN.
				t.Skip("kernel TPM present: systemd 252's token plugin cannot be pointed at swtpm with a PIN; covered on hosts without /dev/tpmrm0")
			}
			out := attach(c.pin)
			require.Contains(t, out, "Completed TPM2 key unsealing", "systemd-cryptsetup log:\n%s", out)
			// Without device-mapper systemd logs "[keyslot 3]" before failing
			// at the mapping; with it, libcryptsetup logs the slot it opens.
			if !strings.Contains(out, "[keyslot 3]") {
				require.Contains(t, out, "Verifying key from keyslot 3", "systemd-cryptsetup log:\n%s", out)
				require.Contains(t, out, "Created /dev/mapper/"+name, "systemd-cryptsetup log:\n%s", out)
			}

			// The oracle can fail: with a changed PCR systemd refuses.
			if len(c.pcrs) > 0 {
				withTPM(t, inst, func(tp transport.TPM) { extendPCR(t, tp, c.pcrs[0], "tampered") })
				out = attach(c.pin)
				require.NotContains(t, out, "Completed TPM2 key unsealing", "systemd-cryptsetup log:\n%s", out)
			}
		})
	}
}

// TestInteropKernelTPM runs where the kernel has a TPM (the VM harness): a
// token sealed here through /dev/tpmrm0 opens the volume through
// libcryptsetup's systemd-tpm2 token plugin (systemd's code, no passphrase
// given), and a token enrolled by systemd-cryptenroll --tpm2-device=auto
// unseals here.
func TestVMInteropKernelTPM(t *testing.T) {
	requireInteropTools(t)
	if _, err := os.Stat(DefaultDevice); err != nil {
		t.Skipf("%s absent: skipping (runs in the VM harness: go test -exec $PWD/scripts/vmtest ./tpm)", DefaultDevice)
	}
	plugin, _ := filepath.Glob("/lib/x86_64-linux-gnu/cryptsetup/libcryptsetup-token-systemd-tpm2.so")
	if len(plugin) == 0 {
		t.Skip("libcryptsetup-token-systemd-tpm2.so absent: skipping")
	}
	tp, err := Open("auto")
	require.NoError(t, err)
	defer tp.Close()

	// volcrypt seals, systemd's token plugin unseals.
	img, keyFile := newLUKS2Image(t)
	sec := randomSecret(t)
	s, err := Seal(tp, sec, SealOptions{PCRs: []int{7, 16}})
	require.NoError(t, err)
	dir := t.TempDir()
	mustRun(t, nil, "cryptsetup", "luksAddKey", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--key-file", keyFile, "--new-key-slot", "2", img, writeSecretFile(t, dir, "newkey", Passphrase(sec)))
	tokJSON, err := NewToken(s, 2).MarshalJSON()
	require.NoError(t, err)
	mustRun(t, nil, "cryptsetup", "token", "import", "--json-file", writeSecretFile(t, dir, "token.json", tokJSON), "--token-id", "1", img)
	out := mustRun(t, nil, "cryptsetup", "open", "--test-passphrase", "--token-only", "--debug", img)
	require.Contains(t, out, "Trying to open keyslot 2 with token 1", out)

	// systemd-cryptenroll seals, volcrypt unseals.
	img2, keyFile2 := newLUKS2Image(t)
	mustRun(t, nil, "systemd-cryptenroll", "--unlock-key-file="+keyFile2, "--tpm2-device=auto", "--tpm2-pcrs=7+16", img2)
	js := mustRun(t, nil, "cryptsetup", "token", "export", "--token-id", "0", img2)
	tok, err := ParseToken([]byte(strings.TrimSpace(js)))
	require.NoError(t, err)
	s2, err := tok.Sealed()
	require.NoError(t, err)
	got, err := Unseal(tp, s2, nil)
	require.NoError(t, err)
	require.NoError(t, testPassphrase(t, img2, Passphrase(got)))

	// Changing PCR 16 locks both out.
	extendPCR(t, tp, 16, "changed")
	_, err = Unseal(tp, s2, nil)
	require.ErrorIs(t, err, ErrPCRMismatch)
	_, err = run(t, nil, "cryptsetup", "open", "--test-passphrase", "--token-only", img)
	require.Error(t, err, "systemd's plugin must refuse after PCR 16 changed")
}
