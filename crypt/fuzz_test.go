package crypt

import (
	"bytes"
	"testing"
)

// FuzzRoundTrip checks Decrypt(Encrypt(p)) == p, in place and not, for every
// spec, sector size and IV, and that encryption changed the data.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint64(0), []byte("0123456789abcdef0123456789abcdef"), []byte("some plaintext"))
	f.Add(uint8(3), uint8(1), uint64(1<<40), bytes.Repeat([]byte{7}, 64), []byte{1, 2, 3})
	f.Add(uint8(1), uint8(2), ^uint64(0), bytes.Repeat([]byte{9}, 32), bytes.Repeat([]byte{0}, 5000))
	specs := []struct {
		spec string
		key  int
	}{
		{"aes-xts-plain64", 64}, {"aes-xts-plain64", 32}, {"aes-xts-plain", 64},
		{"aes-cbc-essiv:sha256", 32}, {"aes-cbc-plain64", 16}, {"aes-ecb", 32},
	}
	f.Fuzz(func(t *testing.T, specIdx, sizeIdx uint8, iv uint64, keySeed, data []byte) {
		sp := specs[int(specIdx)%len(specs)]
		ss := 512 << (sizeIdx % 4)
		key := make([]byte, sp.key)
		for i := range key {
			if len(keySeed) > 0 {
				key[i] = keySeed[i%len(keySeed)] + byte(i)
			}
		}
		c, err := New(sp.spec, key, ss)
		if err != nil {
			t.Fatal(err)
		}
		// Stretch data to one or two whole sectors.
		n := ss
		if len(data) > ss {
			n = 2 * ss
		}
		plain := make([]byte, n)
		for i := range plain {
			if len(data) > 0 {
				plain[i] = data[i%len(data)] ^ byte(i/len(data))
			}
		}
		ct := make([]byte, n)
		if err := c.Encrypt(ct, plain, iv); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(ct, plain) {
			t.Fatal("encryption left the data unchanged")
		}
		inPlace := append([]byte(nil), plain...)
		if err := c.Encrypt(inPlace, inPlace, iv); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(inPlace, ct) {
			t.Fatal("in-place encryption differs")
		}
		if err := c.Decrypt(inPlace, inPlace, iv); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(inPlace, plain) {
			t.Fatal("round trip in place lost data")
		}
		back := make([]byte, n)
		if err := c.Decrypt(back, ct, iv); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, plain) {
			t.Fatal("round trip lost data")
		}
	})
}
