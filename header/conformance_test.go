package header

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sharedTestdata returns the path of a file in ../shared/testdata, or skips.
func sharedTestdata(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not found: the shared test corpus is not beside this checkout", p)
	}
	return p
}

func untar(t *testing.T, archive string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("tar", "-xJf", archive, "-C", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return dir
}

// TestValidationCorpus runs cryptsetup's own LUKS2 metadata validation
// cases: every F image is refused, every R image loads, and every T image
// still loads after a token is removed and the metadata written back.
func TestValidationCorpus(t *testing.T) {
	dir := untar(t, sharedTestdata(t, "luks2-validation.tar.xz"))
	mf, err := os.Open(filepath.Join(dir, "manifest.tsv"))
	require.NoError(t, err)
	defer mf.Close()
	sc := bufio.NewScanner(mf)
	n := 0
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) < 3 {
			continue
		}
		img, verdict, what := fields[0], fields[1], fields[2]
		n++
		t.Run(strings.TrimSuffix(img, ".img"), func(t *testing.T) {
			f, err := os.OpenFile(filepath.Join(dir, "imgs", img), os.O_RDWR, 0)
			require.NoError(t, err)
			defer f.Close()
			h, err := Read(f)
			switch verdict {
			case "F":
				require.Error(t, err, what)
			case "R":
				require.NoError(t, err, what)
			case "T":
				require.NoError(t, err, what)
				toks := h.Tokens()
				require.NotEmpty(t, toks)
				require.NoError(t, h.RemoveToken(toks[0].ID))
				require.NoError(t, h.Write(f))
				_, err = Read(f)
				require.NoError(t, err, what)
			}
		})
	}
	require.NoError(t, sc.Err())
	require.Equal(t, 85, n)
}

// TestMetadataSizeImages unlocks cryptsetup's images of every legal header
// size with their known passphrase.
func TestMetadataSizeImages(t *testing.T) {
	dir := untar(t, sharedTestdata(t, "cryptsetup/luks2_mda_images.tar.xz"))
	imgs, _ := filepath.Glob(filepath.Join(dir, "*", "test_image_*"))
	if len(imgs) == 0 {
		imgs, _ = filepath.Glob(filepath.Join(dir, "test_image_*"))
	}
	require.GreaterOrEqual(t, len(imgs), 9)
	for _, img := range imgs {
		t.Run(filepath.Base(img), func(t *testing.T) {
			f, err := os.Open(img)
			require.NoError(t, err)
			defer f.Close()
			h, err := Read(f)
			require.NoError(t, err)
			key, _, err := h.Unlock(f, []byte("Qx3qn46vq0v"), UnlockOptions{Keyslot: -1, Limits: cheapLimits()})
			require.NoError(t, err)
			key.Wipe()
		})
	}
}
