package arch

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const mod = "github.com/volcrypt/volcrypt/"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command("go", "list", "-deps", mod+pkg).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.Fields(string(out))
}

// TestLayering checks that each package imports only what the layout
// allows: the format code stays pure, and only volume wires devices, TPM
// and format together.
func TestLayering(t *testing.T) {
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"header", []string{mod + "volume", mod + "tpm", mod + "internal/dm", mod + "internal/loop", mod + "cmd", "github.com/google/go-tpm"}},
		{"kdf", []string{mod + "header", mod + "volume", mod + "crypt", mod + "tpm"}},
		{"crypt", []string{mod + "header", mod + "volume", mod + "kdf", mod + "tpm"}},
		{"tpm", []string{mod + "header", mod + "volume", mod + "internal/dm"}},
		{"recovery", []string{mod + "header", mod + "volume", mod + "tpm"}},
		{"internal/dm", []string{mod + "header", mod + "volume", mod + "tpm"}},
		{"volume", []string{mod + "cmd", "github.com/spf13/cobra"}},
	} {
		t.Run(tc.pkg, func(t *testing.T) {
			for _, d := range deps(t, tc.pkg) {
				for _, f := range tc.forbidden {
					require.False(t, d == f || strings.HasPrefix(d, f+"/"), "%s imports %s", tc.pkg, d)
				}
			}
		})
	}
}
