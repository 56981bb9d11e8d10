package faultio

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDeviceRecordsAndRebuilds(t *testing.T) {
	base := bytes.Repeat([]byte{'.'}, 16)
	d := New(base)
	_, err := d.WriteAt([]byte("abcd"), 2)
	require.NoError(t, err)
	require.NoError(t, d.Sync())
	_, err = d.WriteAt([]byte("WXYZ"), 4)
	require.NoError(t, err)
	_, err = d.WriteAt([]byte("12"), 14)
	require.NoError(t, err)

	got := make([]byte, 16)
	_, err = d.ReadAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, "..abWXYZ......12", string(got))
	require.Equal(t, bytes.Repeat([]byte{'.'}, 16), base, "the base image is never written")
	require.Equal(t, []int{0, 2, 3}, d.Writes())
	require.Equal(t, []int{2}, d.Unflushed(), "write 2 is followed by write 3 with no flush between")

	for _, tc := range []struct {
		name string
		op   int
		n    int
		tear Tear
		want string
	}{
		{"nothing-of-first", 0, 0, Head, "................"},
		{"head-of-first", 0, 3, Head, "..abc..........."},
		{"tail-of-first", 0, 3, Tail, "...bcd.........."},
		{"head-of-second", 2, 1, Head, "..abWd.........."},
		{"tail-of-second", 2, 2, Tail, "..abcdYZ........"},
		{"all-of-third", 3, 2, Head, "..abWXYZ......12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, string(d.Crash(tc.op, tc.n, tc.tear).Bytes(0, 16)))
		})
	}

	n, err := d.ReadAt(make([]byte, 4), 14)
	require.Equal(t, 2, n)
	require.ErrorIs(t, err, io.EOF)
	_, err = d.WriteAt([]byte("xx"), 15)
	require.Error(t, err, "writes past the end fail")
}

func TestFail(t *testing.T) {
	d := New(make([]byte, 8))
	d.Fail(1, 1)
	_, err := d.WriteAt([]byte("ab"), 0)
	require.NoError(t, err)
	n, err := d.WriteAt([]byte("cd"), 4)
	require.ErrorIs(t, err, ErrInjected)
	require.Equal(t, 1, n)
	_, err = d.WriteAt([]byte("ef"), 6)
	require.NoError(t, err, "later writes succeed")
	require.Equal(t, "ab\x00\x00c\x00ef", string(d.Crash(len(d.Log())-1, 2, Head).Bytes(0, 8)))
}

func TestPoints(t *testing.T) {
	require.Equal(t, []int{0, 1, 6, 8, 16, 24, 100}, Points(100, false))
	require.Len(t, Points(4096, true), 4097)
	require.Len(t, Points(1<<20, true), 2048+12)
	require.Len(t, Points(16384, false), 33+11)
	require.LessOrEqual(t, len(Points(16<<20, false)), 66+12)
}
