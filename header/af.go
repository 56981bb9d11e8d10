package header

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash"
	"io"

	"github.com/volcrypt/volcrypt/kdf"
)

// The anti-forensic splitter (LUKS "AF", from TKS1): a key is expanded into
// stripes so that destroying any part of the key material destroys the key.

// afSectors is the number of 512-byte sectors holding a key of keySize bytes
// split into AFStripes stripes.
func afSectors(keySize int) int {
	return (keySize*AFStripes + 511) / 512
}

// diffuse replaces each hash-sized block of b by H(be32(index) ‖ block); a
// short last block is hashed as it is and its hash truncated.
func diffuse(h hash.Hash, b []byte) {
	size := h.Size()
	var idx [4]byte
	sum := make([]byte, 0, size)
	for i, off := 0, 0; off < len(b); i, off = i+1, off+size {
		end := min(off+size, len(b))
		h.Reset()
		binary.BigEndian.PutUint32(idx[:], uint32(i))
		h.Write(idx[:])
		h.Write(b[off:end])
		sum = h.Sum(sum[:0])
		copy(b[off:end], sum)
	}
}

// AFSplit expands key into stripes×len(key) bytes of key material, reading
// randomness from rnd (crypto/rand.Reader when nil).
func AFSplit(key []byte, stripes int, hashName string, rnd io.Reader) ([]byte, error) {
	newHash, err := kdf.HashFunc(hashName)
	if err != nil {
		return nil, fmt.Errorf("af split: %w", err)
	}
	if stripes < 1 {
		return nil, fmt.Errorf("af split: %d stripes", stripes)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	n := len(key)
	out := make([]byte, n*stripes)
	if _, err := io.ReadFull(rnd, out[:n*(stripes-1)]); err != nil {
		return nil, fmt.Errorf("af split: random stripes: %w", err)
	}
	d := make([]byte, n)
	defer clear(d)
	h := newHash()
	for i := 0; i < stripes-1; i++ {
		xorInto(d, out[i*n:(i+1)*n])
		diffuse(h, d)
	}
	last := out[(stripes-1)*n:]
	for i := range last {
		last[i] = d[i] ^ key[i]
	}
	return out, nil
}

// AFMerge recovers a key of keySize bytes from its split material.
func AFMerge(material []byte, keySize, stripes int, hashName string) ([]byte, error) {
	newHash, err := kdf.HashFunc(hashName)
	if err != nil {
		return nil, fmt.Errorf("af merge: %w", err)
	}
	if keySize <= 0 || stripes < 1 || len(material) < keySize*stripes {
		return nil, fmt.Errorf("af merge: %d bytes of material for %d stripes of %d bytes", len(material), stripes, keySize)
	}
	d := make([]byte, keySize)
	h := newHash()
	for i := 0; i < stripes-1; i++ {
		xorInto(d, material[i*keySize:(i+1)*keySize])
		diffuse(h, d)
	}
	xorInto(d, material[(stripes-1)*keySize:stripes*keySize])
	return d, nil
}

func xorInto(dst, src []byte) {
	for i := range dst {
		dst[i] ^= src[i]
	}
}
