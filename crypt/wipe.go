package crypt

import (
	"crypto/cipher"
	"reflect"
	"unsafe"
)

// wipeBlock zeroes the memory of a block cipher's key schedule in place. The
// standard library keeps AES round keys in an unexported struct behind the
// cipher.Block pointer; if b is a pointer to pointer-free data (as crypto/aes
// is), its bytes are cleared. Anything else is left alone: clearing pointers
// behind the garbage collector's back would not be safe.
func wipeBlock(b cipher.Block) {
	if b == nil {
		return
	}
	v := reflect.ValueOf(b)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	t := v.Type().Elem()
	if t.Size() == 0 || !pointerFree(t) {
		return
	}
	clear(unsafe.Slice((*byte)(v.UnsafePointer()), t.Size()))
}

// pointerFree reports whether values of t contain no pointers.
func pointerFree(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return t.Len() == 0 || pointerFree(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !pointerFree(t.Field(i).Type) {
				return false
			}
		}
		return true
	default:
		return false
	}
}
