package crypt_test

import (
	"fmt"

	"github.com/volcrypt/volcrypt/crypt"
)

// memDevice is a tiny in-memory io.ReaderAt/io.WriterAt.
type memDevice []byte

func (m memDevice) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m[off:]), nil }
func (m memDevice) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

// A plaintext view of a data segment that starts 16 KiB into the device.
func ExampleNewSegment() {
	key := make([]byte, 64) // the volume key; 64 bytes for AES-256-XTS
	c, err := crypt.New("aes-xts-plain64", key, 4096)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Wipe()

	dev := make(memDevice, 16<<10+64<<10)
	seg := crypt.NewSegment(dev, c, 16<<10, 64<<10, 0)
	if _, err := seg.WriteAt([]byte("hello, sector"), 5000); err != nil {
		fmt.Println(err)
		return
	}
	buf := make([]byte, 13)
	if _, err := seg.ReadAt(buf, 5000); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(buf), seg.Size())
	// Output: hello, sector 65536
}

func ExampleParseSpec() {
	s, err := crypt.ParseSpec("aes-cbc-essiv:sha256")
	fmt.Println(s.Cipher, s.Mode, s.IV, s.IVHash, s.KeySizes(), err)
	_, err = crypt.ParseSpec("serpent-xts-plain64")
	fmt.Println(err)
	// Output:
	// aes cbc essiv sha256 [16 24 32] <nil>
	// cipher "serpent-xts-plain64": unknown block cipher "serpent": unsupported cipher specification
}
