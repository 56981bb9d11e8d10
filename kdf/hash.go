package kdf

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/ripemd160" //nolint:staticcheck // LUKS headers still name it; reading them needs it.
)

// UnsupportedHashError reports a hash name HashFunc does not know. It
// matches ErrUnsupportedHash with errors.Is.
type UnsupportedHashError struct {
	Name string
}

// ErrUnsupportedHash is the sentinel every UnsupportedHashError matches.
var ErrUnsupportedHash = errors.New("unsupported hash")

func (e *UnsupportedHashError) Error() string {
	return fmt.Sprintf("unsupported hash %q", clip(e.Name))
}

// Is makes errors.Is(err, ErrUnsupportedHash) true.
func (e *UnsupportedHashError) Is(target error) bool { return target == ErrUnsupportedHash }

var hashes = map[string]func() hash.Hash{
	"sha1":        sha1.New,
	"sha224":      sha256.New224,
	"sha256":      sha256.New,
	"sha384":      sha512.New384,
	"sha512":      sha512.New,
	"sha512-224":  sha512.New512_224,
	"sha512-256":  sha512.New512_256,
	"sha3-224":    func() hash.Hash { return sha3.New224() },
	"sha3-256":    func() hash.Hash { return sha3.New256() },
	"sha3-384":    func() hash.Hash { return sha3.New384() },
	"sha3-512":    func() hash.Hash { return sha3.New512() },
	"ripemd160":   ripemd160.New,
	"blake2b-512": mustBlake2b512,
	"blake2b-256": mustBlake2b256,
	"blake2s-256": mustBlake2s256,
}

// Unkeyed BLAKE2 constructors cannot fail; the error is for the key length.
func mustBlake2b512() hash.Hash { h, _ := blake2b.New512(nil); return h }
func mustBlake2b256() hash.Hash { h, _ := blake2b.New256(nil); return h }
func mustBlake2s256() hash.Hash { h, _ := blake2s.New256(nil); return h }

// HashFunc returns the hash cryptsetup means by name: sha1, sha224, sha256,
// sha384, sha512, sha512-224, sha512-256, sha3-224, sha3-256, sha3-384,
// sha3-512, ripemd160, blake2b-256, blake2b-512 and blake2s-256, in any
// letter case. Other names (whirlpool, sm3, stribog, ...) return an
// *UnsupportedHashError.
func HashFunc(name string) (func() hash.Hash, error) {
	if h, ok := hashes[strings.ToLower(name)]; ok {
		return h, nil
	}
	return nil, &UnsupportedHashError{Name: name}
}
