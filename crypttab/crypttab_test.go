package crypttab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	table := `# a comment
   
root   UUID=0b1c2d3e-1111-2222-3333-444455556666  none  luks,tpm2-device=auto,tpm2-pcrs=7,headless,discard,x-initrd.attach
data   /dev/sdb1   /etc/keys/data.key   keyfile-offset=512,keyfile-size=64,read-only,nofail,key-slot=2
swapish PARTUUID=abcd-01 -
backup LABEL=backup  none  readonly,noauto,tries=0,header=/boot/backup.hdr,tpm2-pin=yes,_netdev,x-systemd.device-timeout=10
`
	entries, err := Parse(strings.NewReader(table))
	require.NoError(t, err)
	require.Len(t, entries, 4)

	def := Options{Type: "luks", KeySlot: -1, Tries: DefaultTries}
	want := []Entry{
		{Name: "root", Device: "UUID=0b1c2d3e-1111-2222-3333-444455556666", Line: 3, Options: func() Options {
			o := def
			o.TPM2Device, o.TPM2PCRs, o.Headless, o.Discard, o.InitrdAttach = "auto", "7", true, true, true
			return o
		}()},
		{Name: "data", Device: "/dev/sdb1", KeyFile: "/etc/keys/data.key", Line: 4, Options: func() Options {
			o := def
			o.KeyfileOffset, o.KeyfileSize, o.ReadOnly, o.NoFail, o.KeySlot = 512, 64, true, true, 2
			return o
		}()},
		{Name: "swapish", Device: "PARTUUID=abcd-01", Line: 5, Options: def},
		{Name: "backup", Device: "LABEL=backup", Line: 6, Options: func() Options {
			o := def
			o.ReadOnly, o.NoAuto, o.Tries, o.Header, o.TPM2PIN = true, true, 0, "/boot/backup.hdr", true
			o.Ignored = []string{"_netdev", "x-systemd.device-timeout=10"}
			return o
		}()},
	}
	require.Equal(t, want, entries)
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, table, msg string
		line             int
	}{
		{"one-field", "root\n", "need at least a name and a device", 1},
		{"five-fields", "a /dev/x none luks extra\n", "more than 4 fields", 1},
		{"relative-device", "# c\na dev/x\n", "neither an absolute path", 2},
		{"empty-uuid", "a UUID=\n", "empty UUID", 1},
		{"bad-number", "a /dev/x none keyfile-size=ten\n", "keyfile-size=ten", 1},
		{"negative", "a /dev/x none keyfile-offset=-1\n", "non-negative", 1},
		{"bad-bool", "a /dev/x none headless=maybe\n", "not a boolean", 1},
		{"no-value", "a /dev/x none tpm2-device\n", "needs a value", 1},
		{"duplicate", "a /dev/x\na /dev/y\n", `name "a" already used on line 1`, 2},
		{"slash-name", "a/b /dev/x\n", "not a mapping name", 1},
		{"remote-keyfile", "a /dev/x /k:UUID=1\n", "not supported", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.table))
			require.ErrorIs(t, err, ErrSyntax)
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tc.line, pe.Line)
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestParseFileNamesPath(t *testing.T) {
	p := filepath.Join(t.TempDir(), "crypttab")
	require.NoError(t, os.WriteFile(p, []byte("ok /dev/x\nbad\n"), 0o600))
	_, err := ParseFile(p)
	require.EqualError(t, err, p+":2: crypttab syntax error: need at least a name and a device")
	_, err = ParseFile(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestResolver(t *testing.T) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed: it makes the LUKS images (apt-get install cryptsetup-bin)")
	}
	dir := t.TempDir()
	mk := func(name, uuid, label string, args ...string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, nil, 0o600))
		require.NoError(t, os.Truncate(p, 20<<20))
		kf := filepath.Join(dir, "key")
		require.NoError(t, os.WriteFile(kf, []byte("k"), 0o600))
		a := append([]string{"luksFormat", "-q", "--key-file", kf, "--pbkdf-force-iterations", "1000", "--uuid", uuid}, args...)
		if label != "" {
			a = append(a, "--label", label)
		}
		out, err := exec.Command(cs, append(a, p)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return p
	}
	v2 := mk("v2.img", "aaaaaaaa-2222-3333-4444-555555555555", "mydata", "--type", "luks2", "--pbkdf", "pbkdf2")
	v1 := mk("v1.img", "66666666-2222-3333-4444-555555555555", "", "--type", "luks1")
	plain := filepath.Join(dir, "plain.img")
	require.NoError(t, os.WriteFile(plain, make([]byte, 4096), 0o600))

	// A udev-style link wins over scanning.
	dev := filepath.Join(dir, "dev")
	require.NoError(t, os.MkdirAll(filepath.Join(dev, "disk", "by-partuuid"), 0o755))
	require.NoError(t, os.Symlink(v1, filepath.Join(dev, "disk", "by-partuuid", "abcd-01")))

	r := Resolver{DevDir: dev, Candidates: []string{plain, v1, v2}}
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"path", v2, v2},
		{"uuid-luks2", "UUID=aaaaaaaa-2222-3333-4444-555555555555", v2},
		{"uuid-upper-case", "UUID=AAAAAAAA-2222-3333-4444-555555555555", v2},
		{"uuid-luks1", "uuid=66666666-2222-3333-4444-555555555555", v1},
		{"label", "LABEL=mydata", v2},
		{"partuuid-link", "PARTUUID=abcd-01", v1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Find(tc.spec)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	for _, spec := range []string{"UUID=00000000-0000-0000-0000-000000000000", "LABEL=other", "PARTUUID=nope", filepath.Join(dir, "missing")} {
		_, err := r.Find(spec)
		require.ErrorIs(t, err, ErrDeviceNotFound, spec)
	}
}
