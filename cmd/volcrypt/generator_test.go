package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// generated lists dir's files as "path" or "path -> target" for links.
func generated(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			out = append(out, rel+" -> "+target)
		case !d.IsDir():
			out = append(out, rel)
		}
		return nil
	}))
	return out
}

func readUnit(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	return string(b)
}

// execStart returns a unit's ExecStart= words (the generator quotes none
// of the test's).
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	for _, l := range strings.Split(unit, "\n") {
		if cmd, ok := strings.CutPrefix(l, "ExecStart="); ok {
			return strings.Fields(cmd)
		}
	}
	t.Fatalf("no ExecStart= in\n%s", unit)
	return nil
}

func TestGenerateUnits(t *testing.T) {
	img, kf := formatted(t, "boot secret")
	table := crypttabFile(t,
		"root UUID=2f0c4b8e-5a55-4a43-9d0e-6f7b8f3e1c21 none tpm2-device=auto,discard,x-initrd.attach",
		"data /dev/sdb1 /etc/keys/data.key nofail",
		"my-vault LABEL=backup none noauto",
		"net /dev/sdc none _netdev,x-systemd.device-timeout=30s,header=/etc/volcrypt/net.hdr",
		"img "+img+" "+kf,
		"old /dev/sdd none bitlk",
	)
	dir := t.TempDir()
	r := mustRun(t, "", "generate-units", "--initrd=false", "--crypttab", table, dir, t.TempDir(), t.TempDir())
	require.Contains(t, r.stderr, "old: type bitlk is not supported (only luks), no unit")

	require.ElementsMatch(t, []string{
		"volcrypt@root.service", "volcrypt@data.service", `volcrypt@my\x2dvault.service`, "volcrypt@net.service", "volcrypt@img.service",
		"cryptsetup.target.requires/volcrypt@root.service -> ../volcrypt@root.service",
		"cryptsetup.target.requires/volcrypt@img.service -> ../volcrypt@img.service",
		"cryptsetup.target.wants/volcrypt@data.service -> ../volcrypt@data.service",
		"remote-cryptsetup.target.requires/volcrypt@net.service -> ../volcrypt@net.service",
		"dev-mapper-root.device.requires/volcrypt@root.service -> ../volcrypt@root.service",
		"dev-mapper-data.device.requires/volcrypt@data.service -> ../volcrypt@data.service",
		`dev-mapper-my\x2dvault.device.requires/volcrypt@my\x2dvault.service -> ../volcrypt@my\x2dvault.service`,
		"dev-mapper-net.device.requires/volcrypt@net.service -> ../volcrypt@net.service",
		"dev-mapper-img.device.requires/volcrypt@img.service -> ../volcrypt@img.service",
		"dev-mapper-root.device.d/40-device-timeout.conf", "dev-mapper-net.device.d/40-device-timeout.conf",
		"dev-mapper-img.device.d/40-device-timeout.conf", "dev-sdc.device.d/40-device-timeout.conf",
		"volcrypt.service -> /dev/null",
	}, generated(t, dir))

	for _, tc := range []struct {
		unit     string
		has, not []string
	}{
		{"volcrypt@root.service", []string{
			`BindsTo=dev-disk-by\x2duuid-2f0c4b8e\x2d5a55\x2d4a43\x2d9d0e\x2d6f7b8f3e1c21.device`,
			`After=dev-disk-by\x2duuid-2f0c4b8e\x2d5a55\x2d4a43\x2d9d0e\x2d6f7b8f3e1c21.device`,
			"Before=cryptsetup.target", "After=cryptsetup-pre.target", "-- root\n", "ExecStop=" + binary + " close -- root\n",
		}, []string{"Conflicts=umount.target"}},
		{"volcrypt@data.service", []string{"BindsTo=dev-sdb1.device", "RequiresMountsFor=/etc/keys/data.key", "Conflicts=umount.target"},
			[]string{"Before=cryptsetup.target"}},
		{`volcrypt@my\x2dvault.service`, []string{`BindsTo=dev-disk-by\x2dlabel-backup.device`, "-- my-vault\n"}, nil},
		{"volcrypt@net.service", []string{"After=remote-fs-pre.target", "Before=remote-cryptsetup.target", "BindsTo=dev-sdc.device",
			"RequiresMountsFor=/etc/volcrypt/net.hdr\n"},
			[]string{"Before=cryptsetup.target"}},
		{"volcrypt@img.service", []string{"RequiresMountsFor=" + img + "\n", "RequiresMountsFor=" + kf + "\n",
			"Requires=systemd-tmpfiles-setup-dev.service"}, []string{"BindsTo="}},
	} {
		t.Run(tc.unit, func(t *testing.T) {
			u := readUnit(t, dir, tc.unit)
			require.Contains(t, u, "SourcePath="+table+"\n")
			require.Contains(t, u, "DefaultDependencies=no\n")
			for _, s := range tc.has {
				require.Contains(t, u, s)
			}
			for _, s := range tc.not {
				require.NotContains(t, u, s)
			}
		})
	}
	require.Contains(t, readUnit(t, dir, "dev-sdc.device.d/40-device-timeout.conf"), "JobRunningTimeoutSec=30s\n")
	require.Contains(t, readUnit(t, dir, "dev-mapper-root.device.d/40-device-timeout.conf"), "JobTimeoutSec=infinity\n")

	// The unit's command opens the line (with --test: no device-mapper here).
	args := execStart(t, readUnit(t, dir, "volcrypt@img.service"))
	require.Equal(t, binary, args[0])
	require.Equal(t, []string{"attach-all", "--crypttab", table, "--", "img"}, args[1:])
	r = mustRun(t, "", append([]string{"attach-all", "--test", "--json"}, args[2:]...)...)
	require.Equal(t, map[string]string{"img": "tested/key-file"}, statuses(attachSummaryOf(t, r)))

	t.Run("systemd-analyze-verify", func(t *testing.T) {
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed (Debian package systemd): units not verified")
		}
		var units []string
		for _, f := range generated(t, dir) {
			if strings.HasPrefix(f, "volcrypt@") {
				units = append(units, f)
			}
		}
		cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, units...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.NotContains(t, string(out), "volcrypt@")

		// The generated units replace the packaged volcrypt.service: it is
		// masked, so it cannot open the same volumes alongside them.
		vendor, err := filepath.Abs(filepath.Join("..", "..", "packaging", "systemd"))
		require.NoError(t, err)
		verifyAll := func(unitPath string) string {
			cmd := exec.Command(sa, "verify", "--man=no", "volcrypt.service")
			cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+unitPath)
			out, _ := cmd.CombinedOutput() // fails either way: /usr/sbin/volcrypt is not installed here
			return string(out)
		}
		require.Contains(t, verifyAll(dir+":"+vendor+":"), "Unit volcrypt.service is masked.")
		require.NotContains(t, verifyAll(vendor+":"), "masked", "without the generator's directory")
	})
}

func TestGenerateUnitsInitrdAndTables(t *testing.T) {
	table := crypttabFile(t, "root /dev/vda2 none x-initrd.attach", "data /dev/vdb none")
	dir := t.TempDir()
	mustRun(t, "", "generate-units", "--initrd", "--crypttab", table, dir)
	require.ElementsMatch(t, []string{"volcrypt@root.service", "cryptsetup.target.requires/volcrypt@root.service -> ../volcrypt@root.service",
		"dev-mapper-root.device.requires/volcrypt@root.service -> ../volcrypt@root.service",
		"dev-mapper-root.device.d/40-device-timeout.conf", "volcrypt.service -> /dev/null"}, generated(t, dir))

	// No table, or no line for a unit: nothing to do, volcrypt.service not masked.
	dir = t.TempDir()
	mustRun(t, "", "generate-units", "--crypttab", filepath.Join(t.TempDir(), "missing"), dir)
	require.Empty(t, generated(t, dir))
	mustRun(t, "", "generate-units", "--initrd", "--crypttab", crypttabFile(t, "# none", "data /dev/vdb none"), dir)
	require.Empty(t, generated(t, dir))

	// Malformed lines and a second line for a name are skipped with a
	// warning; the other lines get their units.
	table = crypttabFile(t, "broken", "ok /dev/x", "bad /dev/y none tries=many", "ok /dev/z", "fine /dev/w")
	r := mustRun(t, "", "generate-units", "--initrd=false", "--crypttab", table, dir)
	require.Contains(t, r.stderr, table+":2: crypttab syntax error: need at least a name and a device; line skipped")
	require.Contains(t, r.stderr, table+":4: crypttab syntax error: option tries=many")
	require.Contains(t, r.stderr, table+":5: ok: name already used on line 3; line skipped")
	units := []string{}
	for _, f := range generated(t, dir) {
		if name, _, _ := strings.Cut(f, " -> "); !strings.Contains(name, "/") {
			units = append(units, f)
		}
	}
	require.ElementsMatch(t, []string{"volcrypt@ok.service", "volcrypt@fine.service", "volcrypt.service -> /dev/null"}, units)
	require.Contains(t, readUnit(t, dir, "volcrypt@ok.service"), "BindsTo=dev-x.device\n")

	// A relative table is written as an absolute path: the units run from /.
	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(wd, table)
	require.NoError(t, err)
	require.False(t, filepath.IsAbs(rel))
	dir = t.TempDir()
	mustRun(t, "", "generate-units", "--initrd=false", "--crypttab", rel, dir)
	u := readUnit(t, dir, "volcrypt@fine.service")
	require.Contains(t, u, "SourcePath="+table+"\n")
	require.Equal(t, []string{"attach-all", "--crypttab", table, "--", "fine"}, execStart(t, u)[1:])

	r = volcrypt(t, "", "generate-units")
	require.Equal(t, 1, r.code, "the output directory is needed")
	require.NotContains(t, mustRun(t, "", "--help").stdout, "generate-units", "hidden")
}

// TestUnitEscape compares the generator's escaping with systemd-escape's.
func TestUnitEscape(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		path           bool
	}{
		{"plain", "data", "data", false},
		{"dash", "my-vault", `my\x2dvault`, false},
		{"leading-dot", ".hidden.vol", `\x2ehidden.vol`, false},
		{"kept", "a:b_c.d", "a:b_c.d", false},
		{"space-backslash", `a b\c`, `a\x20b\x5cc`, false},
		{"utf8", "ü", `\xc3\xbc`, false},
		{"by-uuid", "/dev/disk/by-uuid/2f0c-11", `dev-disk-by\x2duuid-2f0c\x2d11.device`, true},
		{"double-slashes", "//dev//sdb1/", "dev-sdb1.device", true},
		{"root", "/", "-.device", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := unitEscape(tc.in)
			if tc.path {
				got = pathUnit(tc.in, ".device")
			}
			require.Equal(t, tc.want, got)
			se, err := exec.LookPath("systemd-escape")
			if err != nil {
				return
			}
			args := []string{"--", tc.in}
			if tc.path {
				args = []string{"--path", "--suffix=device", "--", tc.in}
			}
			out, err := exec.Command(se, args...).Output()
			require.NoError(t, err)
			require.Equal(t, strings.TrimSpace(string(out)), got, "systemd-escape")
		})
	}
	require.Equal(t, `/dev/disk/by-label/My\x20Disk\x2fA`, deviceNode("LABEL=My Disk/A"))
	require.Equal(t, "/dev/disk/by-partuuid/ab-12", deviceNode("PARTUUID=ab-12"))
	for in, want := range map[string]string{"data": "data", "-x": `"-x"`, "a%b$c": "a%%b$$c", `q"u\o te`: `"q\"u\\o te"`} {
		require.Equal(t, want, execArg(in), in)
	}
	for _, v := range []string{"30s", "1min30s", "infinity", "90", "0"} {
		require.Equal(t, v, deviceTimeout([]string{"x-systemd.device-timeout=" + v}))
	}
	require.Empty(t, deviceTimeout([]string{"x-systemd.device-timeout=1;rm"}))
}
