package passphrase

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzKeyFile reads arbitrary key-file contents from standard input with
// arbitrary --keyfile-offset and --keyfile-size: never a panic, and the key
// is exactly the bytes asked for, or an error.
func FuzzKeyFile(f *testing.F) {
	f.Add([]byte("secret\n"), int64(0), int64(0))
	f.Add([]byte("0123456789"), int64(3), int64(4))
	f.Add([]byte{0, 0, 0}, int64(5), int64(0))
	f.Add([]byte("x"), int64(-1), int64(-1))
	f.Add([]byte("abc"), int64(0), int64(1<<40))
	f.Fuzz(func(t *testing.T, content []byte, offset, size int64) {
		key, err := KeyFile{Path: "-", Offset: offset, Size: size}.Read(bytes.NewReader(content))
		if err != nil {
			require.Nil(t, key)
			return
		}
		want := content[max(0, min(offset, int64(len(content)))):]
		if size > 0 {
			require.LessOrEqual(t, size, int64(len(want)))
			want = want[:size]
		}
		require.NotEmpty(t, key)
		require.Equal(t, want, key)
	})
}
