package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/swtpmtest"
)

// tpmVolume formats a volume with a passphrase and a recovery password.
func tpmVolume(t *testing.T) (img, kf, recovery string) {
	t.Helper()
	img = image(t, 32<<20)
	kf = keyFile(t, "admin passphrase")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	recovery, _ = enrollRecovery(t, img, kf)
	return img, kf, recovery
}

func TestTPM2EnrollOpen(t *testing.T) {
	tp := swtpmtest.Start(t)
	img, kf, recovery := tpmVolume(t)
	r := mustRun(t, "", "enroll", "tpm2", "--json", "--tpm2-device", tp.Device, "--tpm2-pcrs", "0+7", "--key-file", kf, img)
	var enrolled struct {
		Keyslot int   `json:"keyslot"`
		PCRs    []int `json:"pcrs"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &enrolled))
	require.Equal(t, []int{0, 7}, enrolled.PCRs)

	// Unlocks with no one typing: no key file, empty stdin.
	r = mustRun(t, "", "open", "--test", "--json", "--tpm2-device", tp.Device, img)
	require.JSONEq(t, `{"keyslot":2}`, r.stdout)
	r = mustRun(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, img)

	// The token is systemd's.
	r = mustRun(t, "", "token", "list", "--json", img)
	require.Contains(t, r.stdout, `"type": "systemd-tpm2"`)
	r = mustRun(t, "", "key", "list", "--json", img)
	require.Contains(t, r.stdout, `"kind": "tpm2"`)

	// A changed boot chain: the TPM refuses, the message names the PCRs,
	// and the recovery password still opens.
	require.NoError(t, tp.ExtendPCR(7))
	r = volcrypt(t, "", "open", "--test", "--tpm2-device", tp.Device, img)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "PCRs 0+7")
	require.Contains(t, r.stderr, "recovery password")
	require.NotContains(t, r.stderr, "TPM2 unlock failed", "with nothing to read, the reason is said once, as the error")
	r = mustRun(t, recovery+"\n", "open", "--test", "--json", "--tpm2-device", tp.Device, img)
	require.JSONEq(t, `{"keyslot":1}`, r.stdout)
	require.Contains(t, r.stderr, "TPM2 unlock failed")

	// Re-seal to the new PCR values, authorized by the recovery password;
	// the old enrollment is gone.
	mustRun(t, recovery+"\n", "enroll", "tpm2", "--tpm2-device", tp.Device, "--wipe-slot", "tpm2", img)
	r = mustRun(t, "", "token", "list", "--json", img)
	require.Equal(t, 1, strings.Count(r.stdout, "systemd-tpm2"))
	mustRun(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, img)

	// --disable-tokens never touches the TPM.
	r = volcrypt(t, "", "open", "--test", "--disable-tokens", "--tpm2-device", tp.Device, img)
	require.Equal(t, 1, r.code, r.stderr)
	require.NotContains(t, r.stderr, "TPM")
}

func TestTPM2PIN(t *testing.T) {
	tp := swtpmtest.Start(t)
	img, kf, _ := tpmVolume(t)
	pin := keyFile(t, "2468")
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", tp.Device, "--tpm2-with-pin", "--tpm2-pin-file", pin, "--key-file", kf, img)
	mustRun(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, "--tpm2-pin-file", pin, img)

	// No PIN and no terminal: a clear refusal.
	r := volcrypt(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, img)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "PIN")

	// Wrong PINs count down, then the TPM locks out, refusing even the right one.
	wrong := keyFile(t, "1111")
	sawTries := false
	for i := 0; i < 5; i++ {
		r = volcrypt(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, "--tpm2-pin-file", wrong, img)
		require.Equal(t, 2, r.code, r.stderr)
		if strings.Contains(r.stderr, "tries left") {
			sawTries = true
		}
		if strings.Contains(r.stderr, "locked out") {
			break
		}
	}
	require.True(t, sawTries, "a wrong PIN must say how many tries are left")
	require.Contains(t, r.stderr, "locked out")
	r = volcrypt(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, "--tpm2-pin-file", pin, img)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "lockout")
}

func TestTPM2NoTPM(t *testing.T) {
	tp := swtpmtest.Start(t)
	img, kf, _ := tpmVolume(t)
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", tp.Device, "--key-file", kf, img)
	r := volcrypt(t, "", "open", "--test", "--token-only", "--tpm2-device", "swtpm:host=127.0.0.1,port=1", img)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "no TPM found")
}

func TestTPM2SuspendResumeCommands(t *testing.T) {
	tp := swtpmtest.Start(t)
	img, kf, _ := tpmVolume(t)
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", tp.Device, "--key-file", kf, img)
	r := mustRun(t, "", "tpm2", "suspend", "--json", "--reboot-count", "3", "--key-file", kf, img)
	require.Contains(t, r.stdout, `"boots_left": 3`)
	r = mustRun(t, "", "key", "list", "--json", img)
	require.Contains(t, r.stdout, `"kind": "clear-key"`)

	// Suspended: opens with no TPM, no key, no terminal.
	require.NoError(t, tp.ExtendPCR(7))
	mustRun(t, "", "open", "--test", img)

	// resume re-seals to the changed PCR 7 and destroys the clear key.
	mustRun(t, "", "tpm2", "resume", "--tpm2-device", tp.Device, img)
	r = mustRun(t, "", "key", "list", "--json", img)
	require.NotContains(t, r.stdout, "clear-key")
	mustRun(t, "", "open", "--test", "--token-only", "--tpm2-device", tp.Device, img)
	r = volcrypt(t, "", "tpm2", "resume", "--tpm2-device", tp.Device, img)
	require.NotEqual(t, 0, r.code)
	require.Contains(t, r.stderr, "not suspended")
}
