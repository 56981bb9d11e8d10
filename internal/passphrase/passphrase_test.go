package passphrase

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	require.NoError(t, os.WriteFile(p, []byte("0123456789\n"), 0o600))
	for _, tc := range []struct {
		name string
		kf   KeyFile
		want string
		err  string
	}{
		{"whole-file-keeps-newline", KeyFile{Path: p}, "0123456789\n", ""},
		{"offset", KeyFile{Path: p, Offset: 3}, "3456789\n", ""},
		{"offset-and-size", KeyFile{Path: p, Offset: 2, Size: 4}, "2345", ""},
		{"size-too-large", KeyFile{Path: p, Size: 100}, "", "asks for 100"},
		{"missing", KeyFile{Path: p + "x"}, "", "no such file"},
		{"offset-past-end", KeyFile{Path: p, Offset: 11}, "", "empty"},
		{"size-above-cap", KeyFile{Path: p, Size: MaxKeyFileBytes + 1}, "", "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.kf.Read(nil)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
		})
	}
	got, err := KeyFile{Path: "-"}.Read(strings.NewReader("from stdin"))
	require.NoError(t, err)
	require.Equal(t, "from stdin", string(got))
}

func TestPromptFromPipe(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	_, _ = w.WriteString("first\r\nsecond\n")
	w.Close()
	p := &Prompter{In: r, Out: &strings.Builder{}}
	require.False(t, p.IsTerminal())
	a, err := p.Ask("x: ", true)
	require.NoError(t, err)
	require.Equal(t, "first", string(a))
	b, err := p.Ask("x: ", false)
	require.NoError(t, err)
	require.Equal(t, "second", string(b))
	_, err = p.Ask("x: ", false)
	require.ErrorIs(t, err, ErrNoTerminal)
}
