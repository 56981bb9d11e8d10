package crypt

import "encoding/binary"

// maxRoundKeys is the size in bytes of an AES-256 key schedule: 15 round
// keys of 16 bytes.
const maxRoundKeys = 15 * blockSize

// aesSchedule is an AES key schedule in the byte order the AES-NI and VAES
// instructions take: enc[16*r:] is round key r of the cipher, dec[16*r:] is
// round key r of the equivalent inverse cipher (FIPS-197 section 5.3.5),
// ready for AESDEC. crypto/aes does not export its own schedule, so the
// assembly kernels get theirs from here.
type aesSchedule struct {
	enc    [maxRoundKeys]byte
	dec    [maxRoundKeys]byte
	rounds int
}

// sbox is the AES S-box, computed once from its definition (multiplicative
// inverse in GF(2^8) followed by the affine map) instead of copied.
var sbox = func() (s [256]byte) {
	for i := range 256 {
		inv := byte(0)
		if i != 0 {
			// x^254 = x^-1 in GF(2^8).
			inv = byte(1)
			p := byte(i)
			for e := 254; e > 0; e >>= 1 {
				if e&1 != 0 {
					inv = gmul(inv, p)
				}
				p = gmul(p, p)
			}
		}
		b := inv
		s[i] = b ^ rotl8(b, 1) ^ rotl8(b, 2) ^ rotl8(b, 3) ^ rotl8(b, 4) ^ 0x63
	}
	return s
}()

func rotl8(b byte, n uint) byte { return b<<n | b>>(8-n) }

// gmul multiplies in GF(2^8) modulo x^8+x^4+x^3+x+1, without branches on
// its operands (key bytes pass through it).
func gmul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= a & -(b & 1)
		a = a<<1 ^ 0x1b&-(a>>7)
		b >>= 1
	}
	return p
}

func subWord(w uint32) uint32 {
	return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 | uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
}

// expand fills s from a 16-, 24- or 32-byte AES key (FIPS-197 section 5.2).
// The caller has checked the key length.
func (s *aesSchedule) expand(key []byte) {
	nk := len(key) / 4
	s.rounds = nk + 6
	words := 4 * (s.rounds + 1)
	var w [60]uint32
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := nk; i < words; i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(t<<8|t>>24) ^ rcon<<24
			rcon = uint32(gmul(byte(rcon), 2))
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	for i := range words {
		binary.BigEndian.PutUint32(s.enc[4*i:], w[i])
	}
	clear(w[:])
	// Equivalent inverse cipher: the round keys in reverse order, the inner
	// ones passed through InvMixColumns.
	nr := s.rounds
	copy(s.dec[:blockSize], s.enc[nr*blockSize:])
	copy(s.dec[nr*blockSize:], s.enc[:blockSize])
	for r := 1; r < nr; r++ {
		src := s.enc[(nr-r)*blockSize:]
		dst := s.dec[r*blockSize:]
		for c := 0; c < blockSize; c += 4 {
			a0, a1, a2, a3 := src[c], src[c+1], src[c+2], src[c+3]
			dst[c] = gmul(a0, 14) ^ gmul(a1, 11) ^ gmul(a2, 13) ^ gmul(a3, 9)
			dst[c+1] = gmul(a0, 9) ^ gmul(a1, 14) ^ gmul(a2, 11) ^ gmul(a3, 13)
			dst[c+2] = gmul(a0, 13) ^ gmul(a1, 9) ^ gmul(a2, 14) ^ gmul(a3, 11)
			dst[c+3] = gmul(a0, 11) ^ gmul(a1, 13) ^ gmul(a2, 9) ^ gmul(a3, 14)
		}
	}
}
