package crypt

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
)

// batchBytes is how much data one pass of the XTS engine covers: the tweak
// table of a batch stays in L1 cache next to the data it masks.
const batchBytes = 8192

// scratch is per-call working memory, taken from the Cipher's pool.
type scratch struct {
	tweaks [batchBytes]byte                             // one tweak per 16-byte block of the batch
	first  [batchBytes / minSectorSize * blockSize]byte // each sector's initial tweak E_k2(IV)
	iv     [blockSize]byte
}

func (c *Cipher) getScratch() *scratch { return c.scratch.Get().(*scratch) }

// putScratch clears the first used bytes of the tweak table, the initial
// tweaks and the IV, and returns s to the pool.
func (c *Cipher) putScratch(s *scratch, used int) {
	clear(s.tweaks[:used])
	clear(s.first[:])
	clear(s.iv[:])
	c.scratch.Put(s)
}

// xts runs AES-XTS over whole sectors: each sector is one XTS data unit whose
// tweak is the encryption, under the second half of the key, of the
// sector's IV (for plain64 the little-endian 512-byte sector number, as
// golang.org/x/crypto/xts takes it).
func (c *Cipher) xts(dst, src []byte, iv uint64, decrypt bool) {
	s := c.getScratch()
	ss := c.sectorSize
	step := uint64(ss / ivSectorBytes)
	batch := batchBytes / ss * ss
	// Tweaks are key-derived secrets: leave none behind in the pool.
	defer c.putScratch(s, min(len(src), batch))
	for off := 0; off < len(src); off += batch {
		end := min(off+batch, len(src))
		n := (end - off) / ss
		first := s.first[:n*blockSize]
		for i := 0; i < n; i++ {
			c.sectorIV((*[blockSize]byte)(first[i*blockSize:]), iv)
			iv += step
		}
		c.xtsKey.kernel.tweaks(&c.xtsKey, first)
		if decrypt {
			c.xtsKey.kernel.decrypt(&c.xtsKey, dst[off:end], src[off:end], first, ss, s.tweaks[:])
		} else {
			c.xtsKey.kernel.encrypt(&c.xtsKey, dst[off:end], src[off:end], first, ss, s.tweaks[:])
		}
	}
}

// xtsKey holds what the XTS sector functions need.
type xtsKey struct {
	kernel     *xtsKernel
	data       cipher.Block // first half of the key: encrypts the data
	tweak      cipher.Block // second half: encrypts the IVs into tweaks
	sched      aesSchedule  // data key expanded for assembly kernels (crypto/aes does not expose its own)
	tweakSched aesSchedule  // tweak key expanded likewise
}

// xtsEncryptSectors encrypts len(src)/sectorSize whole sectors with the data
// key. first holds each sector's initial tweak (16 bytes per sector,
// already encrypted with the tweak key); table is scratch of at least
// len(src) bytes. dst and src have equal length and are the same memory or
// disjoint. It is the pure-Go kernel.
func xtsEncryptSectors(k *xtsKey, dst, src, first []byte, sectorSize int, table []byte) {
	b := k.data
	n := len(src)
	table = table[:n]
	expandTweaks(table, first, sectorSize)
	subtle.XORBytes(dst, src, table)
	for o := 0; o+blockSize <= n; o += blockSize {
		blk := dst[o : o+blockSize]
		b.Encrypt(blk, blk)
	}
	subtle.XORBytes(dst, dst, table)
}

// xtsDecryptSectors is xtsEncryptSectors' inverse; the tweaks are the same.
func xtsDecryptSectors(k *xtsKey, dst, src, first []byte, sectorSize int, table []byte) {
	b := k.data
	n := len(src)
	table = table[:n]
	expandTweaks(table, first, sectorSize)
	subtle.XORBytes(dst, src, table)
	for o := 0; o+blockSize <= n; o += blockSize {
		blk := dst[o : o+blockSize]
		b.Decrypt(blk, blk)
	}
	subtle.XORBytes(dst, dst, table)
}

// expandTweaks fills table with the tweak of every 16-byte block: for each
// sector, its initial tweak multiplied by α (x in GF(2^128) modulo
// x^128+x^7+x^2+x+1, little-endian as IEEE 1619 orders it) once per block.
func expandTweaks(table, first []byte, sectorSize int) {
	for s, o := 0, 0; o+sectorSize <= len(table); s, o = s+blockSize, o+sectorSize {
		lo := binary.LittleEndian.Uint64(first[s:])
		hi := binary.LittleEndian.Uint64(first[s+8:])
		sec := table[o : o+sectorSize]
		for j := 0; j+blockSize <= len(sec); j += blockSize {
			t := (*[blockSize]byte)(sec[j:])
			binary.LittleEndian.PutUint64(t[:8], lo)
			binary.LittleEndian.PutUint64(t[8:], hi)
			carry := hi >> 63
			hi = hi<<1 | lo>>63
			lo = lo<<1 ^ (0x87 & -carry)
		}
	}
}
