package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/internal/swtpmtest"
)

// crypttabFile writes a crypttab with the given lines.
func crypttabFile(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "crypttab")
	require.NoError(t, os.WriteFile(p, []byte("# test table\n"+strings.Join(lines, "\n")+"\n"), 0o600))
	return p
}

func attachSummaryOf(t *testing.T, r result) attachSummary {
	t.Helper()
	var s attachSummary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s), "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	return s
}

// statuses gives name → status/method.
func statuses(s attachSummary) map[string]string {
	m := map[string]string{}
	for _, v := range s.Volumes {
		m[v.Name] = strings.TrimSuffix(v.Status+"/"+v.Method, "/")
	}
	return m
}

func formatted(t *testing.T, pass string) (img, kf string) {
	t.Helper()
	img = image(t, 24<<20)
	kf = keyFile(t, pass)
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	return img, kf
}

func TestAttachAllTest(t *testing.T) {
	tp := swtpmtest.Start(t)
	kfImg, kf := formatted(t, "key file secret")
	tpmImg, tpmKF := formatted(t, "tpm admin")
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", tp.Device, "--key-file", tpmKF, tpmImg)
	pwImg, _ := formatted(t, "typed secret")
	offImg := image(t, 24<<20)
	off := keyFile(t, "XXXXoffset secretYYYY")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", off, "--keyfile-offset", "4", "--keyfile-size", "13"}, cheap...), offImg)...)

	table := crypttabFile(t,
		"kf    "+kfImg+"  "+kf,
		"tpm   "+tpmImg+" none tpm2-device=auto,headless,discard",
		"pw    "+pwImg+"  -",
		"off   "+offImg+" "+off+" keyfile-offset=4,keyfile-size=13,read-only",
		"later "+pwImg+"  none noauto",
		"gone  /nonexistent/disk none nofail,x-initrd.attach",
	)
	r := mustRun(t, "typed secret\n", "attach-all", "--test", "--json", "--crypttab", table, "--tpm2-device", tp.Device)
	s := attachSummaryOf(t, r)
	require.Equal(t, map[string]string{"kf": "tested/key-file", "tpm": "tested/tpm2", "pw": "tested/passphrase",
		"off": "tested/key-file", "later": "skipped", "gone": "failed"}, statuses(s))
	require.Equal(t, 4, s.Attached)
	require.Equal(t, 1, s.Failed)
	require.Contains(t, s.Volumes[5].Error, "device not found")
	require.True(t, s.Volumes[5].NoFail)
	require.Equal(t, "noauto", s.Volumes[4].Reason)

	// Named: only those, noauto included; an unknown name is a usage error.
	r = mustRun(t, "typed secret\n", "attach-all", "--test", "--json", "--crypttab", table, "later")
	require.Equal(t, map[string]string{"later": "tested/passphrase"}, statuses(attachSummaryOf(t, r)))
	r = volcrypt(t, "", "attach-all", "--test", "--crypttab", table, "nosuch")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, `no line for "nosuch"`)

	// --initrd: only x-initrd.attach lines; the failing one is nofail.
	r = mustRun(t, "", "attach-all", "--test", "--json", "--initrd", "--crypttab", table)
	st := statuses(attachSummaryOf(t, r))
	require.Equal(t, "failed", st["gone"])
	require.Equal(t, "skipped", st["kf"])

	// Text output: one line per volume on stderr.
	r = mustRun(t, "typed secret\n", "attach-all", "--test", "--crypttab", table, "--tpm2-device", tp.Device)
	require.Contains(t, r.stderr, "tpm: "+tpmImg+" unlocks with tpm2 (key slot 1)")
	require.Contains(t, r.stderr, "gone: nofail: going on")
	require.Empty(t, r.stdout)
}

func TestAttachAllTPMFallback(t *testing.T) {
	tp := swtpmtest.Start(t)
	img, kf, recovery := tpmVolume(t)
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", tp.Device, "--tpm2-pcrs", "7", "--key-file", kf, img)
	headless := crypttabFile(t, "root "+img+" none tpm2-device=auto,headless,x-initrd.attach")
	prompted := crypttabFile(t, "root "+img+" none tpm2-device=auto,x-initrd.attach")
	r := mustRun(t, "", "attach-all", "--test", "--json", "--initrd", "--crypttab", headless, "--tpm2-device", tp.Device)
	require.Equal(t, map[string]string{"root": "tested/tpm2"}, statuses(attachSummaryOf(t, r)))

	// The boot chain changes: headless fails with the TPM's reason and the
	// recovery hint; with a prompt, the recovery password opens.
	require.NoError(t, tp.ExtendPCR(7))
	r = volcrypt(t, "", "attach-all", "--test", "--crypttab", headless, "--tpm2-device", tp.Device)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "root: TPM2 unlock failed: ")
	require.Contains(t, r.stderr, "headless: not asking for a passphrase")
	require.Contains(t, r.stderr, "hint: the boot chain changed")
	require.Contains(t, r.stderr, "recovery password")

	r = volcrypt(t, recovery+"\n", "attach-all", "--test", "--json", "--crypttab", prompted, "--tpm2-device", tp.Device)
	require.Equal(t, 0, r.code, r.stderr)
	s := attachSummaryOf(t, r)
	require.Equal(t, map[string]string{"root": "tested/passphrase"}, statuses(s))
	require.Contains(t, s.Volumes[0].TPM2Error, "PCR")
	require.Contains(t, r.stderr, "asking for the recovery password or a passphrase")

	// No one types anything: the TPM's reason is the error, not "no terminal".
	r = volcrypt(t, "", "attach-all", "--test", "--crypttab", prompted, "--tpm2-device", tp.Device)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "hint: the boot chain changed")
}

func TestAttachAllFailures(t *testing.T) {
	img, kf := formatted(t, "right")
	const typo = "000001-000000-000000-000000-000000-000000-000000-000000" // group 1: not a multiple of 11
	for _, tc := range []struct {
		name, line, stdin string
		code              int
		msg               []string
	}{
		{"wrong-twice", img + " none tries=2", "wrong\nwrong again\n", 2, []string{"try again", "no key available"}},
		{"wrong-then-right", img + " none tries=2", "wrong\nright\n", 0, []string{"try again"}},
		// A mistyped recovery password costs one try, with the group to check.
		{"recovery-typo-then-right", img + " none tries=3", typo + "\nright\n", 0,
			[]string{"v: recovery password mistyped: ", "check the digits of group 1; try again"}},
		{"recovery-typo-every-try", img + " none tries=2", typo + "\n" + typo + "\n", 2,
			[]string{"try again", "v: failed: recovery password mistyped"}},
		{"wrong-key-file-then-prompt", img + " " + keyFile(t, "nope"), "right\n", 0, []string{"asking for a passphrase"}},
		{"headless-no-key", img + " none headless", "right\n", 1, []string{"headless: no TPM2 enrollment or key file"}},
		{"headless-wrong-key-file", img + " " + keyFile(t, "nope") + " headless", "", 2, []string{"key file"}},
		{"missing-device", "/nonexistent/x none", "", 4, []string{"device not found"}},
		{"plain-type", img + " none plain", "", 1, []string{"type plain is not supported"}},
		{"key-file-ok", img + " " + kf, "", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := crypttabFile(t, "v "+tc.line)
			before := fileHash(t, img)
			r := volcrypt(t, tc.stdin, "attach-all", "--test", "--crypttab", table, "--tpm2-device", "/nonexistent/tpm")
			require.Equal(t, tc.code, r.code, r.stderr)
			for _, m := range tc.msg {
				require.Contains(t, r.stderr, m)
			}
			require.Equal(t, before, fileHash(t, img))
		})
	}
}

func TestAttachAllBadTable(t *testing.T) {
	table := crypttabFile(t, "ok /dev/x", "broken")
	r := volcrypt(t, "", "attach-all", "--test", "--crypttab", table)
	require.Equal(t, 1, r.code)
	require.Equal(t, fmt.Sprintf("error: %s:3: crypttab syntax error: need at least a name and a device\n", table), r.stderr)
	// Named lines (a generated unit's run) open despite another line's typo.
	img, kf := formatted(t, "right")
	table = crypttabFile(t, "broken", "v "+img+" "+kf)
	r = volcrypt(t, "", "attach-all", "--test", "--json", "--crypttab", table, "v")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, map[string]string{"v": "tested/key-file"}, statuses(attachSummaryOf(t, r)))
	require.Contains(t, r.stderr, "warning: "+table+":2: crypttab syntax error: need at least a name and a device; line skipped")
	r = volcrypt(t, "", "attach-all", "--test", "--crypttab", table, "broken")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, `no line for "broken"`)
	r = volcrypt(t, "", "attach-all", "--crypttab", filepath.Join(t.TempDir(), "none"))
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "no such file")
}

func TestAttachAllProgressJSON(t *testing.T) {
	img, kf := formatted(t, "k")
	table := crypttabFile(t, "v "+img+" "+kf)
	r := mustRun(t, "", "attach-all", "--test", "--progress-json", "--crypttab", table)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	require.Contains(t, lines[0], `{"event":"start","task":"attach","item":"v"`)
	require.Contains(t, r.stderr, `{"event":"done","task":"attach","item":"v"`)
}

func TestManPagesAndCompletion(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "", "gen-docs", "--dir", dir)
	for _, page := range []string{"volcrypt.8", "volcrypt-open.8", "volcrypt-attach-all.8", "volcrypt-enroll-recovery.8"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		require.NoError(t, err)
		require.Contains(t, string(b), ".SH EXAMPLE", page)
	}
	_, err := os.Stat(filepath.Join(dir, "volcrypt-gen-docs.8"))
	require.True(t, os.IsNotExist(err), "the hidden generator has no page")
	r := mustRun(t, "", "--help")
	require.NotContains(t, r.stdout, "gen-docs")
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := mustRun(t, "", "completion", shell)
		require.Contains(t, r.stdout, "volcrypt", shell)
	}
}

// TestJSONEverywhere: every command that reports something prints one JSON
// document on standard output with --json, and nothing else there.
func TestJSONEverywhere(t *testing.T) {
	img := image(t, 24<<20)
	kf, k2, k3 := keyFile(t, "one"), keyFile(t, "two"), keyFile(t, "three")
	table := crypttabFile(t, "v "+img+" "+kf)
	for _, tc := range []struct {
		name string
		args []string
		keys []string
	}{
		{"format", append([]string{"format", "-q", "--key-file", kf}, cheap...), []string{"uuid", "device"}},
		{"key-add", append([]string{"key", "add", "--key-file", kf, "--new-key-file", k2}, cheap...), []string{"keyslot"}},
		{"key-change", append([]string{"key", "change", "--key-file", k2, "--new-key-file", k3}, cheap...), []string{"keyslot"}},
		{"key-remove", []string{"key", "remove", "--key-file", k3}, []string{"keyslot"}},
		{"enroll-recovery", []string{"enroll", "recovery", "--key-file", kf}, []string{"keyslot", "recovery_password"}},
		{"key-list", []string{"key", "list"}, []string{"keyslots"}},
		{"token-list", []string{"token", "list"}, nil},
		{"dump", []string{"dump"}, []string{"uuid"}},
		{"open-test", []string{"open", "--test", "--key-file", kf}, []string{"keyslot"}},
		{"attach-all-test", []string{"attach-all", "--test", "--crypttab", table}, []string{"volumes", "attached", "failed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, tc.args...), "--json")
			if tc.name != "attach-all-test" {
				args = append(args, img)
			}
			r := mustRun(t, "", args...)
			var doc any
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc), "stdout: %q", r.stdout)
			if m, ok := doc.(map[string]any); ok {
				for _, k := range tc.keys {
					require.Contains(t, m, k)
				}
			} else {
				require.Empty(t, tc.keys)
			}
		})
	}
}

func TestAttachAllTPMPIN(t *testing.T) {
	tp := swtpmtest.Start(t)
	img, kf := formatted(t, "admin")
	pin := keyFile(t, "2468")
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", tp.Device, "--tpm2-with-pin", "--tpm2-pin-file", pin, "--key-file", kf, img)
	for _, tc := range []struct {
		name, options, stdin string
		code                 int
		want, msg            string
	}{
		{"pin-typed", "tpm2-device=auto,tpm2-pin", "2468\n", 0, "tested/tpm2", ""},
		{"headless-no-pin", "tpm2-device=auto,tpm2-pin,headless", "2468\n", 2, "failed", "headless: no one to ask"},
		{"wrong-pin-then-passphrase", "tpm2-device=auto,tpm2-pin", "1111\nadmin\n", 0, "tested/passphrase", "TPM2 unlock failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := crypttabFile(t, "v "+img+" none "+tc.options)
			r := volcrypt(t, tc.stdin, "attach-all", "--test", "--json", "--crypttab", table, "--tpm2-device", tp.Device)
			require.Equal(t, tc.code, r.code, r.stderr)
			require.Equal(t, map[string]string{"v": tc.want}, statuses(attachSummaryOf(t, r)))
			require.Contains(t, r.stderr, tc.msg)
		})
	}
}

// askAgent is a systemd password agent (systemd's PASSWORD_AGENTS.md) for
// the queries whose Id is id: it answers them in turn with replies ("+…"
// a password, "-" cancel; "-" once they run out) and records each
// query's AcceptCached. It watches the ask-password directory of the
// process watch names, through /proc/PID/root: the test's volcrypt runs
// in its own mount namespace with a private tmpfs there, so neither the
// host's agents nor its queries are involved.
type askAgent struct {
	mu     sync.Mutex
	dir    string
	cached []string
}

const askDir = "/run/systemd/ask-password"

func startAskAgent(t *testing.T, id string, replies ...string) *askAgent {
	t.Helper()
	ag := &askAgent{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		seen := map[string]bool{}
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			ag.mu.Lock()
			dir := ag.dir
			ag.mu.Unlock()
			if dir == "" {
				continue
			}
			files, _ := filepath.Glob(filepath.Join(dir, "ask.*"))
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil || seen[f] {
					continue
				}
				q := map[string]string{}
				for _, l := range strings.Split(string(b), "\n") {
					if k, v, ok := strings.Cut(l, "="); ok {
						q[k] = v
					}
				}
				if q["Id"] != id || q["Socket"] == "" {
					continue
				}
				seen[f] = true
				reply := "-"
				ag.mu.Lock()
				if n := len(ag.cached); n < len(replies) {
					reply = replies[n]
				}
				ag.cached = append(ag.cached, q["AcceptCached"])
				ag.mu.Unlock()
				// The socket's path, as the asking process's namespace sees it.
				sock := filepath.Join(dir, strings.TrimPrefix(q["Socket"], askDir))
				c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
				if err == nil {
					_, _ = c.Write([]byte(reply))
					c.Close()
				}
			}
		}
	}()
	return ag
}

// watch makes the agent answer the queries of process pid's namespace.
func (ag *askAgent) watch(pid int) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	ag.dir = fmt.Sprintf("/proc/%d/root%s", pid, askDir)
}

func (ag *askAgent) queries() []string {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	return slices.Clone(ag.cached)
}

// cachedKey finds the passphrases systemd-ask-password caches (key
// "cryptsetup" in the user keyring, NUL-separated) and returns the key's
// id and payload.
func cachedKey() (int, []byte, bool) {
	id, err := unix.KeyctlSearch(unix.KEY_SPEC_USER_KEYRING, "user", "cryptsetup", 0)
	if err != nil {
		return 0, nil, false
	}
	buf := make([]byte, 4096)
	n, err := unix.KeyctlBuffer(unix.KEYCTL_READ, id, buf, 0)
	if err != nil || n > len(buf) {
		return id, nil, true
	}
	return id, buf[:n], true
}

// dropCachedKey invalidates the cached passphrases if they hold pass:
// this test's, never a key someone else cached.
func dropCachedKey(pass string) {
	id, payload, ok := cachedKey()
	if ok && slices.ContainsFunc(bytes.Split(payload, []byte{0}), func(p []byte) bool { return string(p) == pass }) {
		_, _ = unix.KeyctlInt(unix.KEYCTL_INVALIDATE, id, 0, 0, 0)
	}
}

// TestAttachAllAskPassword runs attach-all as a systemd unit would (no
// terminal, $INVOCATION_ID) against a real systemd-ask-password, with the
// test as the password agent. volcrypt runs under unshare -m with a tmpfs
// on /run/systemd/ask-password: the host's agents see none of the
// queries. The passphrases systemd-ask-password caches go to root's user
// keyring (shared with the host: it has no namespace of its own here);
// only a key holding this test's random passphrase is dropped.
func TestAttachAllAskPassword(t *testing.T) {
	for _, tool := range []string{"systemd-ask-password", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	if os.Getuid() != 0 {
		t.Skip("needs root: a private mount namespace for the password agent's directory")
	}
	// The mount point of the private tmpfs (an empty directory).
	if err := os.MkdirAll(askDir, 0o755); err != nil {
		t.Skipf("cannot be a password agent here: %v", err)
	}
	if out, err := exec.Command("unshare", "-m", "mount", "-t", "tmpfs", "tmpfs", askDir).CombinedOutput(); err != nil {
		t.Skipf("no private mount namespace here: %v: %s", err, out)
	}
	if _, _, ok := cachedKey(); ok {
		t.Skip(`a passphrase cached by systemd-ask-password (key "cryptsetup" in the user keyring) would answer before this test's agent; it expires 2.5 minutes after it was stored`)
	}
	pass := rand.Text()
	t.Cleanup(func() { dropCachedKey(pass) }) // what this test cached
	img, _ := formatted(t, pass)
	table := crypttabFile(t, "v "+img+" none tries=2")
	id := "cryptsetup:" + img
	asUnit := func(ag *askAgent, stdin string) result {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// unshare execs sh, which execs volcrypt: one PID throughout.
		cmd := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount -t tmpfs -o mode=0755 tmpfs "$0" && exec "$@"`, askDir,
			binary, "attach-all", "--test", "--json", "--crypttab", table)
		cmd.Env = append(os.Environ(), "VOLCRYPT_TEST_AS_CLI=1", "INVOCATION_ID=0123456789abcdef0123456789abcdef")
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		require.NoError(t, cmd.Start())
		ag.watch(cmd.Process.Pid)
		err := cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			require.NoError(t, err)
		}
		return result{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
	}

	t.Run("wrong-then-right", func(t *testing.T) {
		ag := startAskAgent(t, id, "+wrong", "+"+pass)
		r := asUnit(ag, "")
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, map[string]string{"v": "tested/passphrase"}, statuses(attachSummaryOf(t, r)))
		require.Contains(t, r.stderr, "try again")
		require.Equal(t, []string{"1", "0"}, ag.queries(), "cached answers accepted on the first try only")
	})
	t.Run("cached", func(t *testing.T) {
		if _, _, ok := cachedKey(); !ok {
			t.Skip("the kernel keyring kept nothing (not usable here)")
		}
		ag := startAskAgent(t, id)
		r := asUnit(ag, "")
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, map[string]string{"v": "tested/passphrase"}, statuses(attachSummaryOf(t, r)))
		require.Empty(t, ag.queries(), "both cached answers tried, no one asked")
	})
	t.Run("cached-malformed-recovery-skipped", func(t *testing.T) {
		// Another volume's passphrase that looks like a mistyped recovery
		// password is cached with this one: it is skipped, not fatal.
		dropCachedKey(pass)
		const typo = "000001-000000-000000-000000-000000-000000-000000-000000"
		_, err := unix.AddKey("user", "cryptsetup", []byte(typo+"\x00"+pass+"\x00"), unix.KEY_SPEC_USER_KEYRING)
		require.NoError(t, err)
		ag := startAskAgent(t, id)
		r := asUnit(ag, "")
		require.Equal(t, 0, r.code, r.stderr)
		require.Equal(t, map[string]string{"v": "tested/passphrase"}, statuses(attachSummaryOf(t, r)))
		require.Empty(t, ag.queries(), "the good cached answer opened it, no one asked")
	})
	t.Run("cancelled", func(t *testing.T) {
		dropCachedKey(pass)
		ag := startAskAgent(t, id, "-")
		r := asUnit(ag, "")
		require.NotEqual(t, 0, r.code, r.stderr)
		require.Contains(t, r.stderr, "systemd-ask-password")
		require.Len(t, ag.queries(), 1)
	})
	t.Run("piped-standard-input-wins", func(t *testing.T) {
		ag := startAskAgent(t, id, "+wrong")
		r := asUnit(ag, pass+"\n")
		require.Equal(t, 0, r.code, r.stderr)
		require.Empty(t, ag.queries())
	})
}
