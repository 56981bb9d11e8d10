package crypt

import (
	"crypto/cipher"
	"reflect"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// blockMemory returns a copy of the memory behind a block cipher's pointer.
func blockMemory(t *testing.T, b cipher.Block) []byte {
	t.Helper()
	v := reflect.ValueOf(b)
	require.Equal(t, reflect.Pointer, v.Kind())
	size := v.Type().Elem().Size()
	return append([]byte(nil), unsafe.Slice((*byte)(v.UnsafePointer()), size)...)
}
