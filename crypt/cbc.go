package crypt

import (
	"crypto/cipher"
	"crypto/subtle"
)

// cbc runs AES-CBC over whole sectors; each sector is one chain starting
// from its own IV, as dm-crypt chains within a sector only.
func (c *Cipher) cbc(dst, src []byte, iv uint64, decrypt bool) {
	s := c.getScratch()
	defer c.putScratch(s, 0)
	ss := c.sectorSize
	step := uint64(ss / ivSectorBytes)
	for off := 0; off < len(src); off += ss {
		c.sectorIV(&s.iv, iv)
		iv += step
		if decrypt {
			cbcDecryptSector(c.data, dst[off:off+ss], src[off:off+ss], s.iv[:])
		} else {
			cbcEncryptSector(c.data, dst[off:off+ss], src[off:off+ss], s.iv[:])
		}
	}
}

func cbcEncryptSector(b cipher.Block, dst, src, iv []byte) {
	prev := iv
	for o := 0; o+blockSize <= len(src); o += blockSize {
		blk := dst[o : o+blockSize]
		subtle.XORBytes(blk, src[o:o+blockSize], prev)
		b.Encrypt(blk, blk)
		prev = blk
	}
}

// cbcDecryptSector walks the sector backwards so that dst may be src: the
// ciphertext block before the current one is still intact when it is used.
func cbcDecryptSector(b cipher.Block, dst, src, iv []byte) {
	for o := len(src) - blockSize; o >= 0; o -= blockSize {
		blk := dst[o : o+blockSize]
		b.Decrypt(blk, src[o:o+blockSize])
		if o > 0 {
			subtle.XORBytes(blk, blk, src[o-blockSize:o])
		} else {
			subtle.XORBytes(blk, blk, iv)
		}
	}
}

// ecb encrypts or decrypts each 16-byte block on its own.
func ecb(b cipher.Block, dst, src []byte, decrypt bool) {
	for o := 0; o+blockSize <= len(src); o += blockSize {
		if decrypt {
			b.Decrypt(dst[o:o+blockSize], src[o:o+blockSize])
		} else {
			b.Encrypt(dst[o:o+blockSize], src[o:o+blockSize])
		}
	}
}
