package userspace

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBuffers(t *testing.T) {
	var p buffers
	defer p.release()
	var got []*[]byte
	for range maxMappings * hugePage / maxRequest {
		b, err := p.get()
		require.NoError(t, err)
		require.Len(t, *b, maxRequest)
		require.Zero(t, addr(*b)%maxRequest, "aligned within a huge page")
		(*b)[0], (*b)[maxRequest-1] = 1, 2 // mapped, writable
		got = append(got, b)
	}
	_, err := p.get()
	require.ErrorIs(t, err, errBuffersFull, "capped at maxMappings huge pages")
	p.put(got[3])
	b, err := p.get()
	require.NoError(t, err)
	require.Same(t, got[3], b, "a returned buffer is reused")
}
