package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPackage builds the .deb with scripts/package, checks its contents,
// and installs it with dpkg in scripts/vmtest's throw-away VM (whose / is
// an overlay on this host's), where it runs volcrypt and finds the man
// pages, completions and units.
func TestPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a package (nfpm) and boots a VM: not in -short")
	}
	for _, tool := range []string{"go", "dpkg-deb", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	root, err := filepath.Abs("..") // go test runs in packaging/
	require.NoError(t, err)
	dist := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "scripts", "package"), "--out", dist)
	cmd.Env = append(os.Environ(), "VOLCRYPT_VERSION=1.2.3~test")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	require.NoError(t, err, "scripts/package: %s", stderr.String())
	deb := strings.TrimSpace(string(b))
	require.Equal(t, filepath.Join(dist, "volcrypt_1.2.3~test_amd64.deb"), deb)

	b, err = exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Architecture").CombinedOutput()
	require.NoError(t, err, "%s", b)
	require.Equal(t, "Package: volcrypt\nVersion: 1.2.3~test\nArchitecture: amd64\n", string(b))
	b, err = exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
	require.NoError(t, err, "%s", b)
	for _, f := range []string{
		"./usr/sbin/volcrypt", "./usr/share/man/man8/volcrypt.8.gz", "./usr/share/man/man8/volcrypt-attach-all.8.gz",
		"./usr/share/bash-completion/completions/volcrypt", "./usr/share/zsh/vendor-completions/_volcrypt",
		"./usr/share/fish/vendor_completions.d/volcrypt.fish", "./usr/lib/systemd/system/volcrypt@.service",
		"./usr/lib/systemd/system/volcrypt.service", "./usr/lib/systemd/system-generators/volcrypt-generator",
		"./usr/share/initramfs-tools/hooks/volcrypt",
		"./usr/share/initramfs-tools/scripts/local-top/volcrypt", "./usr/lib/dracut/modules.d/90volcrypt/module-setup.sh",
		"./usr/share/volcrypt/initrd-table.sh", "./etc/volcrypt/crypttab",
	} {
		require.Contains(t, string(b), " "+f+"\n", f)
	}
	require.NotContains(t, string(b), "gen-docs")

	vmtest := filepath.Join(root, "scripts", "vmtest")
	if os.Getuid() != 0 {
		t.Skip("installing in the VM needs root (scripts/vmtest)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not found: the install check runs in scripts/vmtest's VM")
	}
	script := `set -e
dpkg -i --no-triggers "$1" >/dev/null
dpkg -s volcrypt | grep -q '^Status: install ok installed'
volcrypt --help | grep -q 'attach-all'
if command -v man >/dev/null; then man -w volcrypt volcrypt-attach-all; else ls /usr/share/man/man8/volcrypt.8.gz /usr/share/man/man8/volcrypt-attach-all.8.gz; fi
test -s /usr/share/bash-completion/completions/volcrypt
bash -c '. /usr/share/bash-completion/completions/volcrypt && complete -p volcrypt'
systemd-analyze verify --man=no /usr/lib/systemd/system/volcrypt.service
g=$(mktemp -d)
echo 'data /dev/vdb none nofail' >"$g/crypttab"
/usr/lib/systemd/system-generators/volcrypt-generator --crypttab "$g/crypttab" "$g" "$g" "$g"
test -L "$g/cryptsetup.target.wants/volcrypt@data.service"
test "$(readlink "$g/volcrypt.service")" = /dev/null
(cd "$g" && SYSTEMD_UNIT_PATH="$g:" systemd-analyze verify --man=no volcrypt@data.service)
/usr/lib/systemd/system-generators/volcrypt-generator "$g/empty" "$g/empty" "$g/empty"
echo generator-ok
echo installed-ok`
	vm := exec.Command(vmtest, "--no-tpm", "--no-disk", "--", "sh", "-c", script, "sh", deb)
	b, err = vm.CombinedOutput()
	require.NoError(t, err, "%s", b)
	s := string(b)
	require.Contains(t, s, "/usr/share/man/man8/volcrypt.8.gz\n")
	require.Contains(t, s, "/usr/share/man/man8/volcrypt-attach-all.8.gz\n")
	require.Contains(t, s, "-F __start_volcrypt volcrypt\n")
	require.Contains(t, s, "generator-ok")
	require.Contains(t, s, "installed-ok")
}
