package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEscrowCommand(t *testing.T) {
	img, kf := formatted(t, "admin")
	dir := t.TempDir()
	stored, env := filepath.Join(dir, "stored.json"), filepath.Join(dir, "env")
	listBefore := mustRun(t, "", "key", "list", "--json", img).stdout
	tokensBefore := mustRun(t, "", "token", "list", "--json", img).stdout

	// A failing command: the slot and its token do not survive.
	r := volcrypt(t, "", "enroll", "recovery", "--key-file", kf, "--escrow-command", `cat > "`+stored+`"; echo vault down; exit 3`, img)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "vault down")
	require.Contains(t, r.stderr, "error: escrow of the recovery password failed: escrow command failed (exit status 3); key slot 1 was not written, the volume is as before")
	require.Empty(t, r.stdout, "no password shown for a slot that is gone")
	var rec escrowRecord
	b, err := os.ReadFile(stored)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rec))
	require.Equal(t, 1, rec.Keyslot)
	require.Equal(t, listBefore, mustRun(t, "", "key", "list", "--json", img).stdout)
	require.Equal(t, tokensBefore, mustRun(t, "", "token", "list", "--json", img).stdout)
	r = volcrypt(t, rec.RecoveryPassword+"\n", "open", "--test", img)
	require.Equal(t, 2, r.code, "the unescrowed password must not open: %s", r.stderr)

	// volcrypt killed while the command runs: the password was stored but
	// the key slot never written, so it opens nothing.
	r = volcrypt(t, "", "enroll", "recovery", "--key-file", kf, "--escrow-command", `cat > "`+stored+`"; kill -9 $PPID; sleep 5`, img)
	require.NotEqual(t, 0, r.code, r.stderr)
	require.NoError(t, json.Unmarshal(must(os.ReadFile(stored)), &rec))
	require.Equal(t, listBefore, mustRun(t, "", "key", "list", "--json", img).stdout)
	require.Equal(t, tokensBefore, mustRun(t, "", "token", "list", "--json", img).stdout)
	r = volcrypt(t, rec.RecoveryPassword+"\n", "open", "--test", img)
	require.Equal(t, 2, r.code, "a password whose slot was never written must not open: %s", r.stderr)

	// A command that stores it: the slot stays, and the stored password opens.
	r = mustRun(t, "", "enroll", "recovery", "--json", "--key-file", kf, "--escrow-command", `env > "`+env+`"; cat > "`+stored+`"`, img)
	var out struct {
		Keyslot  int    `json:"keyslot"`
		Password string `json:"recovery_password"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	b, err = os.ReadFile(stored)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &rec))
	require.Equal(t, out.Password, rec.RecoveryPassword)
	require.Equal(t, out.Keyslot, rec.Keyslot)
	require.Equal(t, img, rec.Device)
	require.Regexp(t, `^[0-9a-f-]{36}$`, rec.UUID)
	e, err := os.ReadFile(env)
	require.NoError(t, err)
	require.NotContains(t, string(e), out.Password)
	require.NotContains(t, string(e), strings.ReplaceAll(out.Password, "-", ""))
	r = mustRun(t, rec.RecoveryPassword+"\n", "open", "--test", "--json", img)
	require.JSONEq(t, `{"keyslot":1}`, r.stdout)
}
