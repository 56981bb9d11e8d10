package kdf

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"unsafe"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/sys/unix"
)

// Argon2 (RFC 9106, version 0x13) as LUKS2 uses it: Argon2i and Argon2id,
// no secret key, no associated data.
//
// It differs from golang.org/x/crypto/argon2 in how it treats memory, which
// is what unlock time is made of at LUKS2's sizes:
//   - The first pass writes each block instead of XOR-ing into it, so
//     untouched memory is never read: a page is faulted in once, not twice
//     (a read fault that maps the zero page, then a write fault).
//   - The blocks live in an anonymous mapping of their own, with
//     transparent huge pages requested, and are unmapped (returned to the
//     kernel, which clears pages before reuse) as soon as the tag is out
//     instead of lingering in the Go heap until the collector runs.
//   - Each lane runs on its own goroutine, synchronised once per slice as
//     the specification allows.

const (
	argon2Version          = 0x13
	argon2BlockSize        = 1024
	argon2SyncPoints       = 4
	argon2Words            = argon2BlockSize / 8
	argon2AddressesInBlock = argon2Words
)

// argon2Type is the y parameter of RFC 9106.
type argon2Type uint32

const (
	argon2TypeI  argon2Type = 1
	argon2TypeID argon2Type = 2
)

type argon2Block [argon2Words]uint64

// argon2Key derives keyLen bytes. The caller has validated the parameters
// (threads ≥ 1, memory ≥ 8 KiB per lane, time ≥ 1, keyLen ≥ 4).
func argon2Key(typ argon2Type, password, salt []byte, time, memoryKiB, threads uint32, keyLen uint32) ([]byte, error) {
	lanes := threads
	// m' = 4p·⌊m/4p⌋ blocks; q = m'/p blocks per lane.
	blocks := memoryKiB / (argon2SyncPoints * lanes) * (argon2SyncPoints * lanes)
	laneLen := blocks / lanes
	segLen := laneLen / argon2SyncPoints

	mem, release, err := argon2Memory(int(blocks))
	if err != nil {
		return nil, err
	}
	defer release()

	var h0 [blake2b.Size + 8]byte
	argon2H0(h0[:blake2b.Size], typ, password, salt, time, memoryKiB, lanes, keyLen)
	defer clear(h0[:])

	// The first two blocks of each lane: H'^1024(H0 || i || lane).
	var buf [argon2BlockSize]byte
	for l := range lanes {
		for i := range uint32(2) {
			binary.LittleEndian.PutUint32(h0[blake2b.Size:], i)
			binary.LittleEndian.PutUint32(h0[blake2b.Size+4:], l)
			blake2bLong(buf[:], h0[:])
			b := &mem[l*laneLen+i]
			for w := range b {
				b[w] = binary.LittleEndian.Uint64(buf[8*w:])
			}
		}
	}
	clear(buf[:])

	inst := argon2Instance{mem: mem, typ: typ, passes: time, lanes: lanes, laneLen: laneLen, segLen: segLen, blocks: blocks}
	var wg sync.WaitGroup
	for pass := range time {
		for slice := range uint32(argon2SyncPoints) {
			for l := uint32(1); l < lanes; l++ {
				wg.Go(func() { inst.fillSegment(pass, l, slice) })
			}
			inst.fillSegment(pass, 0, slice)
			wg.Wait()
		}
	}

	// The tag: H'^T of the XOR of each lane's last block.
	final := mem[laneLen-1]
	for l := uint32(1); l < lanes; l++ {
		last := &mem[l*laneLen+laneLen-1]
		for w := range final {
			final[w] ^= last[w]
		}
	}
	for w, v := range final {
		binary.LittleEndian.PutUint64(buf[8*w:], v)
	}
	clear(final[:])
	out := make([]byte, keyLen)
	blake2bLong(out, buf[:])
	clear(buf[:])
	return out, nil
}

// argon2H0 computes H0 (RFC 9106 section 3.2) into out (64 bytes).
func argon2H0(out []byte, typ argon2Type, password, salt []byte, time, memoryKiB, lanes, keyLen uint32) {
	h, _ := blake2b.New512(nil) // no key: cannot fail
	var w [4]byte
	put := func(v uint32) {
		binary.LittleEndian.PutUint32(w[:], v)
		h.Write(w[:])
	}
	put(lanes)
	put(keyLen)
	put(memoryKiB)
	put(time)
	put(argon2Version)
	put(uint32(typ))
	put(uint32(len(password)))
	h.Write(password)
	put(uint32(len(salt)))
	h.Write(salt)
	put(0) // secret
	put(0) // associated data
	h.Sum(out[:0])
}

// blake2bLong is H' (RFC 9106 section 3.3): the variable-length hash of in
// into out.
func blake2bLong(out, in []byte) {
	var t [4]byte
	binary.LittleEndian.PutUint32(t[:], uint32(len(out)))
	if len(out) <= blake2b.Size {
		h, _ := blake2b.New(len(out), nil)
		h.Write(t[:])
		h.Write(in)
		h.Sum(out[:0])
		return
	}
	h, _ := blake2b.New512(nil)
	h.Write(t[:])
	h.Write(in)
	var v [blake2b.Size]byte
	h.Sum(v[:0])
	copy(out, v[:32])
	o := 32
	for len(out)-o > blake2b.Size {
		v = blake2b.Sum512(v[:])
		copy(out[o:], v[:32])
		o += 32
	}
	h, _ = blake2b.New(len(out)-o, nil)
	h.Write(v[:])
	h.Sum(out[o:o])
	clear(v[:])
}

// argon2Memory returns n zeroed blocks and a function that releases them.
// They come from an anonymous mapping where possible (with transparent huge
// pages asked for), otherwise from the Go heap, cleared on release.
func argon2Memory(n int) ([]argon2Block, func(), error) {
	if uint64(n) > math.MaxInt/argon2BlockSize {
		return nil, nil, fmt.Errorf("argon2: %d blocks do not fit this address space: %w", n, ErrInvalidParams)
	}
	size := n * argon2BlockSize
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		if err == unix.ENOMEM {
			return nil, nil, fmt.Errorf("argon2: %d KiB of memory: %w", size/1024, err)
		}
		m := make([]argon2Block, n)
		return m, func() { clear(m) }, nil
	}
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // advisory
	m := unsafe.Slice((*argon2Block)(unsafe.Pointer(&b[0])), n)
	return m, func() { _ = unix.Munmap(b) }, nil
}

type argon2Instance struct {
	mem                            []argon2Block
	typ                            argon2Type
	passes, lanes, laneLen, segLen uint32
	blocks                         uint32
}

// fillSegment computes one segment (RFC 9106 section 3.4).
func (a *argon2Instance) fillSegment(pass, lane, slice uint32) {
	independent := a.typ == argon2TypeI || (a.typ == argon2TypeID && pass == 0 && slice < argon2SyncPoints/2)
	var addr, input, zero, tmp argon2Block
	defer clear(tmp[:])
	if independent {
		input[0] = uint64(pass)
		input[1] = uint64(lane)
		input[2] = uint64(slice)
		input[3] = uint64(a.blocks)
		input[4] = uint64(a.passes)
		input[5] = uint64(a.typ)
	}
	nextAddresses := func() {
		input[6]++
		compress(&addr, &zero, &input, &tmp, false)
		compress(&addr, &zero, &addr, &tmp, false)
	}
	start := uint32(0)
	if pass == 0 && slice == 0 {
		start = 2
		if independent {
			nextAddresses()
		}
	}
	cur := lane*a.laneLen + slice*a.segLen + start
	prev := cur - 1
	if cur%a.laneLen == 0 {
		prev = cur + a.laneLen - 1
	}
	for i := start; i < a.segLen; i, cur, prev = i+1, cur+1, cur {
		var rnd uint64
		if independent {
			if i%argon2AddressesInBlock == 0 {
				nextAddresses()
			}
			rnd = addr[i%argon2AddressesInBlock]
		} else {
			rnd = a.mem[prev][0]
		}
		refLane := uint32(rnd>>32) % a.lanes
		if pass == 0 && slice == 0 {
			refLane = lane
		}
		ref := a.refIndex(pass, slice, i, uint32(rnd), refLane == lane)
		compress(&a.mem[cur], &a.mem[prev], &a.mem[refLane*a.laneLen+ref], &tmp, pass > 0)
	}
	if independent {
		clear(addr[:])
		clear(input[:])
	}
}

// refIndex maps the low 32 bits of a pseudo-random value to a block index
// within the reference lane (RFC 9106 section 3.4.2).
func (a *argon2Instance) refIndex(pass, slice, index, rnd uint32, sameLane bool) uint32 {
	var area uint32
	switch {
	case pass == 0 && slice == 0:
		area = index - 1
	case pass == 0 && sameLane:
		area = slice*a.segLen + index - 1
	case pass == 0:
		area = slice * a.segLen
		if index == 0 {
			area--
		}
	case sameLane:
		area = a.laneLen - a.segLen + index - 1
	default:
		area = a.laneLen - a.segLen
		if index == 0 {
			area--
		}
	}
	x := uint64(rnd)
	x = x * x >> 32
	rel := uint64(area) - 1 - (uint64(area) * x >> 32)
	startPos := uint64(0)
	if pass != 0 && slice != argon2SyncPoints-1 {
		startPos = uint64(slice+1) * uint64(a.segLen)
	}
	return uint32((startPos + rel) % uint64(a.laneLen))
}

// compress sets out to G(x, y) (RFC 9106 section 3.5), XOR-ed with out's
// previous contents if xor is set. out may be x or y; tmp is scratch the
// caller wipes. It is the fastest implementation this CPU runs;
// architecture files replace it.
var compress = compressGeneric

// argon2Vector reports whether compress is a vector kernel. Derive uses
// this implementation only then: portable Go is slower than x/crypto's
// SSE code.
var argon2Vector bool

// compressGeneric is compress in portable Go.
func compressGeneric(out, x, y, tmp *argon2Block, xor bool) {
	for i := range tmp {
		tmp[i] = x[i] ^ y[i]
	}
	if xor {
		for i := range out {
			out[i] ^= tmp[i]
		}
	} else {
		*out = *tmp
	}
	blamkaRoundsGeneric(tmp)
	for i := range out {
		out[i] ^= tmp[i]
	}
}

// blamkaRoundsGeneric applies the permutation P to the eight rows, then to
// the eight columns, of a block seen as an 8×8 matrix of 16-byte registers.
func blamkaRoundsGeneric(t *argon2Block) {
	for i := 0; i < argon2Words; i += 16 {
		blamka(&t[i], &t[i+1], &t[i+2], &t[i+3], &t[i+4], &t[i+5], &t[i+6], &t[i+7],
			&t[i+8], &t[i+9], &t[i+10], &t[i+11], &t[i+12], &t[i+13], &t[i+14], &t[i+15])
	}
	for i := 0; i < 16; i += 2 {
		blamka(&t[i], &t[i+1], &t[i+16], &t[i+17], &t[i+32], &t[i+33], &t[i+48], &t[i+49],
			&t[i+64], &t[i+65], &t[i+80], &t[i+81], &t[i+96], &t[i+97], &t[i+112], &t[i+113])
	}
}

// blamka is the permutation P: BLAKE2b's round without message, with
// BlaMka's multiplication added to each addition.
func blamka(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, p10, p11, p12, p13, p14, p15 *uint64) {
	v0, v1, v2, v3, v4, v5, v6, v7 := *p0, *p1, *p2, *p3, *p4, *p5, *p6, *p7
	v8, v9, v10, v11, v12, v13, v14, v15 := *p8, *p9, *p10, *p11, *p12, *p13, *p14, *p15

	v0, v4, v8, v12 = gb(v0, v4, v8, v12)
	v1, v5, v9, v13 = gb(v1, v5, v9, v13)
	v2, v6, v10, v14 = gb(v2, v6, v10, v14)
	v3, v7, v11, v15 = gb(v3, v7, v11, v15)
	v0, v5, v10, v15 = gb(v0, v5, v10, v15)
	v1, v6, v11, v12 = gb(v1, v6, v11, v12)
	v2, v7, v8, v13 = gb(v2, v7, v8, v13)
	v3, v4, v9, v14 = gb(v3, v4, v9, v14)

	*p0, *p1, *p2, *p3, *p4, *p5, *p6, *p7 = v0, v1, v2, v3, v4, v5, v6, v7
	*p8, *p9, *p10, *p11, *p12, *p13, *p14, *p15 = v8, v9, v10, v11, v12, v13, v14, v15
}

func gb(a, b, c, d uint64) (uint64, uint64, uint64, uint64) {
	a += b + 2*uint64(uint32(a))*uint64(uint32(b))
	d ^= a
	d = d>>32 | d<<32
	c += d + 2*uint64(uint32(c))*uint64(uint32(d))
	b ^= c
	b = b>>24 | b<<40
	a += b + 2*uint64(uint32(a))*uint64(uint32(b))
	d ^= a
	d = d>>16 | d<<48
	c += d + 2*uint64(uint32(c))*uint64(uint32(d))
	b ^= c
	b = b>>63 | b<<1
	return a, b, c, d
}
