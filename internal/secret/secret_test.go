package secret

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBufferLifecycle(t *testing.T) {
	src := []byte("correct horse")
	s := From(src)
	require.Equal(t, make([]byte, len(src)), src, "From must wipe its source")
	require.True(t, s.Equal([]byte("correct horse")))
	require.False(t, s.Equal([]byte("correct horsf")))
	require.Equal(t, 13, s.Len())
	s.Wipe()
	s.Wipe()
	require.Nil(t, s.Bytes())
	var nilBuf *Buffer
	nilBuf.Wipe()
	require.Equal(t, 0, nilBuf.Len())
}
