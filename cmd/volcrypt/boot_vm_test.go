package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestVMAttachAllTPM: a volume enrolled with the kernel TPM is attached from
// a crypttab line by UUID (found by scanning block devices: no udev) with
// no one typing; after a PCR change the headless line fails with the
// recovery hint and a prompting line opens with the recovery password.
func TestVMAttachAllTPM(t *testing.T) {
	inVM(t)
	if os.Getenv("VOLCRYPT_VM_TPM") == "" {
		t.Skip("the VM has no TPM (scripts/vmtest --no-tpm)")
	}
	img, kf, recovery := tpmVolume(t)
	mustRun(t, "", "enroll", "tpm2", "--tpm2-device", "auto", "--tpm2-pcrs", "7", "--key-file", kf, img)
	var dump struct {
		UUID string `json:"uuid"`
	}
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "", "dump", "--json", img).stdout), &dump))
	require.NotEmpty(t, dump.UUID)
	loopDev := strings.TrimSpace(sh(t, `losetup -f --show "$1"`, img))
	t.Cleanup(func() { _ = os.Remove("/dev/mapper/root"); sh(t, `losetup -d "$1" || true`, loopDev) })

	dir := t.TempDir()
	headless := filepath.Join(dir, "crypttab")
	require.NoError(t, os.WriteFile(headless, []byte("root UUID="+dump.UUID+" none tpm2-device=auto,headless,discard,x-initrd.attach\n"), 0o600))
	prompted := filepath.Join(dir, "crypttab.prompt")
	require.NoError(t, os.WriteFile(prompted, []byte("root UUID="+dump.UUID+" none tpm2-device=auto,x-initrd.attach\n"), 0o600))

	r := mustRun(t, "", "attach-all", "--json", "--initrd", "--crypttab", headless)
	var s attachSummary
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &s))
	require.Equal(t, map[string]string{"root": "attached/tpm2"}, statuses(s))
	require.Equal(t, loopDev, s.Volumes[0].Path)
	st := mustRun(t, "", "status", "root")
	require.Contains(t, st.stdout, "discards")
	sums := writeFiles(t, "/dev/mapper/root")

	// Already mapped: nothing to do.
	r = mustRun(t, "", "attach-all", "--json", "--crypttab", headless)
	require.Equal(t, map[string]string{"root": "active"}, statuses(attachSummaryOf(t, r)))
	mustRun(t, "", "close", "root")

	// A boot-chain change.
	sh(t, `tpm2_pcrextend -T device:/dev/tpmrm0 7:sha256=0000000000000000000000000000000000000000000000000000000000000001`)
	r = volcrypt(t, "", "attach-all", "--crypttab", headless)
	require.Equal(t, 2, r.code, r.stderr)
	require.Contains(t, r.stderr, "root: TPM2 unlock failed")
	require.Contains(t, r.stderr, "hint: the boot chain changed")
	_, err := os.Stat("/dev/mapper/root")
	require.True(t, os.IsNotExist(err), "a failed attach maps nothing")

	r = mustRun(t, recovery+"\n", "attach-all", "--json", "--crypttab", prompted)
	require.Equal(t, map[string]string{"root": "attached/passphrase"}, statuses(attachSummaryOf(t, r)))
	checkFiles(t, "/dev/mapper/root", sums)
	mustRun(t, "", "close", "root")
}
