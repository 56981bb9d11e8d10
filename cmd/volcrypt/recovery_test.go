package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func enrollRecovery(t *testing.T, img, kf string) (string, int) {
	t.Helper()
	r := mustRun(t, "", "enroll", "recovery", "--json", "--key-file", kf, img)
	var out struct {
		Keyslot  int    `json:"keyslot"`
		Password string `json:"recovery_password"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	return out.Password, out.Keyslot
}

func TestRecoveryPassword(t *testing.T) {
	img := image(t, 32<<20)
	kf := keyFile(t, "main key")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	pw, slot := enrollRecovery(t, img, kf)
	require.Regexp(t, `^(\d{6}-){7}\d{6}$`, pw)
	require.Equal(t, 1, slot)

	// Typed with spaces or without separators, it opens the volume.
	for _, typed := range []string{pw, strings.ReplaceAll(pw, "-", " "), strings.ReplaceAll(pw, "-", "")} {
		r := mustRun(t, typed+"\n", "open", "--test", "--json", img)
		require.JSONEq(t, fmt.Sprintf(`{"keyslot":%d}`, slot), r.stdout)
	}
	// cryptsetup opens it too, from a key file with the canonical form.
	if _, err := cryptsetupBinOK(); err == nil {
		mustCryptsetup(t, "open", "--test-passphrase", "--key-file", keyFile(t, pw), img)
	}

	// A typo is caught before any KDF runs, naming the group.
	typo := []byte(pw)
	typo[8] = '0' + (typo[8]-'0'+1)%10 // second group
	r := volcrypt(t, string(typo)+"\n", "open", "--test", img)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "group 2")

	// A recovery password of another volume is refused.
	other := image(t, 32<<20)
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), other)...)
	otherPW, _ := enrollRecovery(t, other, kf)
	r = volcrypt(t, otherPW+"\n", "open", "--test", img)
	require.Equal(t, 2, r.code, r.stderr)

	// The listing tells the recovery slot from the passphrase.
	r = mustRun(t, "", "key", "list", "--json", img)
	var list struct {
		Keyslots []slotInfo `json:"keyslots"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
	require.Equal(t, "passphrase", list.Keyslots[0].Kind)
	require.Equal(t, "recovery", list.Keyslots[1].Kind)
}

func cryptsetupBinOK() (string, error) { return lookPath("cryptsetup") }

func TestTokensRoundTrip(t *testing.T) {
	cryptsetupBin(t)
	img := image(t, 32<<20)
	kf := keyFile(t, "k")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	tok := `{"type":"x-example","keyslots":[],"owner-data":{"nested":[1,"two",null]}}`
	f := filepath.Join(t.TempDir(), "tok.json")
	require.NoError(t, os.WriteFile(f, []byte(tok), 0o600))
	r := mustRun(t, "", "token", "import", "--json", "--json-file", f, "--key-slot", "0", img)
	require.JSONEq(t, `{"token":0}`, r.stdout)

	// cryptsetup sees the same token, and volcrypt reads one cryptsetup imports.
	theirs := mustCryptsetup(t, "token", "export", "--token-id", "0", img)
	ours := mustRun(t, "", "token", "export", "--token-id", "0", img).stdout
	require.JSONEq(t, theirs, ours)
	require.JSONEq(t, `{"type":"x-example","keyslots":["0"],"owner-data":{"nested":[1,"two",null]}}`, ours)
	f2 := filepath.Join(t.TempDir(), "tok2.json")
	require.NoError(t, os.WriteFile(f2, []byte(`{"type":"y-other","keyslots":["0"],"v":42}`), 0o600))
	mustCryptsetup(t, "token", "import", "--json-file", f2, "--token-id", "5", img)
	r = mustRun(t, "", "token", "list", "--json", img)
	require.JSONEq(t, `{"tokens":[{"token":0,"type":"x-example","keyslots":[0]},{"token":5,"type":"y-other","keyslots":[0]}]}`, r.stdout)

	// Reserved types and references to missing slots are refused without a write.
	before := fileHash(t, img)
	for _, bad := range []string{`{"type":"luks2-keyring","keyslots":[]}`, `{"type":"x","keyslots":["9"]}`, `[1]`, `{"keyslots":[]}`} {
		r = volcrypt(t, bad, "token", "import", img)
		require.Equal(t, 1, r.code, "%s: %s", bad, r.stderr)
	}
	require.Equal(t, before, fileHash(t, img))

	mustRun(t, "", "token", "remove", "--token-id", "0", img)
	_, err := cryptsetup(t, "token", "export", "--token-id", "0", img)
	require.Error(t, err)
	mustCryptsetup(t, "token", "export", "--token-id", "5", img)
}
