package header

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"

	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
)

// matches reports whether key is the volume key this digest describes.
func (d *Digest) matches(key []byte) (bool, error) {
	p := kdf.Params{Algorithm: kdf.PBKDF2, Hash: d.Hash, Time: d.Iterations}
	if err := p.Check(kdf.DefaultLimits()); err != nil {
		return false, fmt.Errorf("volume key digest: %w", err)
	}
	sum, err := kdf.Derive(p, key, d.Salt, len(d.Digest))
	if err != nil {
		return false, fmt.Errorf("volume key digest: %w", err)
	}
	defer secret.Wipe(sum)
	return subtle.ConstantTimeCompare(sum, d.Digest) == 1, nil
}

// newDigest makes a PBKDF2 digest of key with the given hash and iterations.
func newDigest(key []byte, hashName string, iterations uint32) (*Digest, error) {
	f, err := kdf.HashFunc(hashName)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	p := kdf.Params{Algorithm: kdf.PBKDF2, Hash: hashName, Time: iterations}
	sum, err := kdf.Derive(p, key, salt, f().Size())
	if err != nil {
		return nil, err
	}
	return &Digest{Type: DigestPBKDF2, Hash: hashName, Iterations: iterations, Salt: salt, Digest: sum,
		Keyslots: IDList{}, Segments: IDList{}}, nil
}

// DigestFor returns the id of the digest that key matches, or ErrWrongKey.
func (m *Metadata) DigestFor(key []byte) (int, error) {
	for _, id := range keysOf(m.Digests) {
		ok, err := m.Digests[id].matches(key)
		if err != nil {
			return -1, err
		}
		if ok {
			return id, nil
		}
	}
	return -1, ErrWrongKey
}

// keyslotDigest returns the id of the digest that references key slot id.
func (m *Metadata) keyslotDigest(slot int) (int, bool) {
	for _, id := range keysOf(m.Digests) {
		if m.Digests[id].Keyslots.Contains(slot) {
			return id, true
		}
	}
	return -1, false
}

// SegmentDigest returns the id of the digest bound to segment seg.
func (m *Metadata) SegmentDigest(seg int) (int, bool) {
	for _, id := range keysOf(m.Digests) {
		if m.Digests[id].Segments.Contains(seg) {
			return id, true
		}
	}
	return -1, false
}
