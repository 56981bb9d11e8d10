// Command asmgen generates kdf's Argon2 compression kernel with avo. Run it
// through go generate in the kdf directory:
//
//	go run ./internal/asmgen -out argon2_amd64.s -stubs argon2_stubs_amd64.go -pkg kdf
package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("!purego")

	// VPSHUFB masks rotating each 64-bit word right by 24 and by 16 bits.
	rot24 := GLOBL("argon2Rot24", RODATA|NOPTR)
	for lane := range 4 {
		for i := range 8 {
			DATA(8*lane+i, U8(8*(lane%2)+(i+3)%8))
		}
	}
	rot16 := GLOBL("argon2Rot16", RODATA|NOPTR)
	for lane := range 4 {
		for i := range 8 {
			DATA(8*lane+i, U8(8*(lane%2)+(i+2)%8))
		}
	}
	compress(rot24, rot16)
	compressSSE(rot24, rot16)
	Generate()
}

// compressHeader starts a compression kernel and loads its arguments.
func compressHeader(name, isa string) (out, x, y, tmp, xor Register) {
	TEXT(name, NOSPLIT, "func(out, x, y, tmp *[128]uint64, xor bool)")
	Pragma("noescape")
	Doc(name + " computes Argon2's compression function G with " + isa + ".")
	out = Load(Param("out"), GP64())
	x = Load(Param("x"), GP64())
	y = Load(Param("y"), GP64())
	tmp = Load(Param("tmp"), GP64())
	xor = Load(Param("xor"), GP8())
	return
}

// compress emits compressAVX2: out = R ^ P(R) (XOR-ed into out's old
// contents when xor is set), R = x ^ y, P applied to the rows and then the
// columns of R with BLAKE2b's round and BlaMka's multiplications, four
// 64-bit words per YMM register. tmp is 1 KiB of scratch the caller owns
// (and wipes). out may be x or y.
func compress(rot24, rot16 Mem) {
	out, x, y, tmp, xor := compressHeader("compressAVX2", "AVX2")

	a, b, c, d := Y0, Y1, Y2, Y3
	t, m24, m16 := Y4, Y5, Y6
	VMOVDQU(rot24, m24)
	VMOVDQU(rot16, m16)

	Comment("tmp = R = x ^ y; out = R (^ out)")
	pass1 := func(withXor bool) {
		for i := range 32 {
			VMOVDQU(Mem{Base: x, Disp: 32 * i}, Y7)
			VPXOR(Mem{Base: y, Disp: 32 * i}, Y7, Y7)
			VMOVDQU(Y7, Mem{Base: tmp, Disp: 32 * i})
			if withXor {
				VPXOR(Mem{Base: out, Disp: 32 * i}, Y7, Y7)
			}
			VMOVDQU(Y7, Mem{Base: out, Disp: 32 * i})
		}
	}
	TESTB(xor, xor)
	JZ(LabelRef("noxor"))
	pass1(true)
	JMP(LabelRef("rounds"))
	Label("noxor")
	pass1(false)
	Label("rounds")

	mulAdd := func(p, q VecPhysical) { // p = p + q + 2·lo32(p)·lo32(q)
		VPMULUDQ(q, p, t)
		VPADDQ(q, p, p)
		VPADDQ(t, p, p)
		VPADDQ(t, p, p)
	}
	g := func() {
		mulAdd(a, b)
		VPXOR(a, d, d)
		VPSHUFD(U8(0xb1), d, d) // rotate right 32
		mulAdd(c, d)
		VPXOR(c, b, b)
		VPSHUFB(m24, b, b)
		mulAdd(a, b)
		VPXOR(a, d, d)
		VPSHUFB(m16, d, d)
		mulAdd(c, d)
		VPXOR(c, b, b)
		VPSRLQ(U8(63), b, t) // rotate right 63
		VPADDQ(b, b, b)
		VPXOR(t, b, b)
	}
	round := func() {
		g()
		VPERMQ(U8(0x39), b, b)
		VPERMQ(U8(0x4e), c, c)
		VPERMQ(U8(0x93), d, d)
		g()
		VPERMQ(U8(0x93), b, b)
		VPERMQ(U8(0x4e), c, c)
		VPERMQ(U8(0x39), d, d)
	}

	Comment("Rows: words 16r..16r+15 are v0..v15.")
	for r := range 8 {
		for j, v := range []VecPhysical{a, b, c, d} {
			VMOVDQU(Mem{Base: tmp, Disp: 128*r + 32*j}, v)
		}
		round()
		for j, v := range []VecPhysical{a, b, c, d} {
			VMOVDQU(v, Mem{Base: tmp, Disp: 128*r + 32*j})
		}
	}
	Comment("Columns: words 2i, 2i+1 of each row are v0..v15, two rows per register.")
	xs := []VecPhysical{X0, X1, X2, X3}
	for i := range 8 {
		for j, v := range []VecPhysical{a, b, c, d} {
			lo := Mem{Base: tmp, Disp: 8 * (2*i + 32*j)}
			hi := Mem{Base: tmp, Disp: 8 * (2*i + 32*j + 16)}
			VMOVDQU(lo, xs[j])
			VINSERTI128(U8(1), hi, v, v)
		}
		round()
		for j, v := range []VecPhysical{a, b, c, d} {
			lo := Mem{Base: tmp, Disp: 8 * (2*i + 32*j)}
			hi := Mem{Base: tmp, Disp: 8 * (2*i + 32*j + 16)}
			VMOVDQU(xs[j], lo)
			VEXTRACTI128(U8(1), v, hi)
		}
	}

	Comment("out ^= P(R)")
	for i := range 32 {
		VMOVDQU(Mem{Base: tmp, Disp: 32 * i}, Y7)
		VPXOR(Mem{Base: out, Disp: 32 * i}, Y7, Y7)
		VMOVDQU(Y7, Mem{Base: out, Disp: 32 * i})
	}
	for _, v := range []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y7} {
		VPXOR(v, v, v)
	}
	VZEROUPPER()
	RET()
}

// compressSSE emits compressSSSE3, compressAVX2's twin for CPUs without
// AVX2: two 64-bit words per XMM register, diagonals formed with PALIGNR.
// Registers are renamed by the generator where halves only swap places.
func compressSSE(rot24, rot16 Mem) {
	out, x, y, tmp, xor := compressHeader("compressSSSE3", "SSSE3")

	t, m24, m16 := X8, X9, X10
	MOVOU(rot24, m24)
	MOVOU(rot16, m16)

	Comment("tmp = R = x ^ y; out = R (^ out)")
	pass1 := func(withXor bool) {
		for i := range 64 {
			MOVOU(Mem{Base: x, Disp: 16 * i}, X0)
			MOVOU(Mem{Base: y, Disp: 16 * i}, X1)
			PXOR(X1, X0)
			MOVOU(X0, Mem{Base: tmp, Disp: 16 * i})
			if withXor {
				MOVOU(Mem{Base: out, Disp: 16 * i}, X1)
				PXOR(X1, X0)
			}
			MOVOU(X0, Mem{Base: out, Disp: 16 * i})
		}
	}
	TESTB(xor, xor)
	JZ(LabelRef("noxor"))
	pass1(true)
	JMP(LabelRef("rounds"))
	Label("noxor")
	pass1(false)
	Label("rounds")

	mulAdd := func(p, q VecPhysical) { // p = p + q + 2·lo32(p)·lo32(q)
		MOVO(p, t)
		PMULULQ(q, t)
		PADDQ(q, p)
		PADDQ(t, p)
		PADDQ(t, p)
	}
	// v[0..7] = a0 a1 b0 b1 c0 c1 d0 d1, two words each.
	g := func(v []VecPhysical) {
		for h := range 2 {
			a, b, c, d := v[h], v[2+h], v[4+h], v[6+h]
			mulAdd(a, b)
			PXOR(a, d)
			PSHUFD(U8(0xb1), d, d)
			mulAdd(c, d)
			PXOR(c, b)
			PSHUFB(m24, b)
			mulAdd(a, b)
			PXOR(a, d)
			PSHUFB(m16, d)
			mulAdd(c, d)
			PXOR(c, b)
			MOVO(b, t)
			PSRLQ(U8(63), t)
			PADDQ(b, b)
			PXOR(t, b)
		}
	}
	free := []VecPhysical{X11, X12, X13, X14, X15}
	// rot returns the pair (lo', hi') = ([lo.hi, hi.lo], [hi.hi, lo.lo]) in
	// fresh registers and frees lo and hi: one step of a 4-word rotation.
	rot := func(lo, hi VecPhysical) (VecPhysical, VecPhysical) {
		n0, n1 := free[0], free[1]
		free = free[2:]
		MOVO(hi, n0)
		PALIGNR(U8(8), lo, n0)
		MOVO(lo, n1)
		PALIGNR(U8(8), hi, n1)
		free = append(free, lo, hi)
		return n0, n1
	}
	round := func(v []VecPhysical) []VecPhysical {
		g(v)
		v = append([]VecPhysical(nil), v...)
		v[2], v[3] = rot(v[2], v[3]) // b: [v5 v6] [v7 v4]
		v[4], v[5] = v[5], v[4]      // c: [v10 v11] [v8 v9]
		v[6], v[7] = rot(v[7], v[6]) // d: [v15 v12] [v13 v14]
		g(v)
		v[2], v[3] = rot(v[3], v[2])
		v[4], v[5] = v[5], v[4]
		v[6], v[7] = rot(v[6], v[7])
		return v
	}
	regs := []VecPhysical{X0, X1, X2, X3, X4, X5, X6, X7}
	Comment("Rows: words 16r..16r+15 are v0..v15.")
	for r := range 8 {
		v := regs
		for j, reg := range v {
			MOVOU(Mem{Base: tmp, Disp: 128*r + 16*j}, reg)
		}
		v = round(v)
		for j, reg := range v {
			MOVOU(reg, Mem{Base: tmp, Disp: 128*r + 16*j})
		}
		regs = v
	}
	Comment("Columns: words 2i, 2i+1 of row j are v2j, v2j+1.")
	for i := range 8 {
		v := regs
		for j, reg := range v {
			MOVOU(Mem{Base: tmp, Disp: 8 * (2*i + 16*j)}, reg)
		}
		v = round(v)
		for j, reg := range v {
			MOVOU(reg, Mem{Base: tmp, Disp: 8 * (2*i + 16*j)})
		}
		regs = v
	}

	Comment("out ^= P(R)")
	for i := range 64 {
		MOVOU(Mem{Base: tmp, Disp: 16 * i}, X0)
		MOVOU(Mem{Base: out, Disp: 16 * i}, X1)
		PXOR(X1, X0)
		MOVOU(X0, Mem{Base: out, Disp: 16 * i})
	}
	for _, r := range []VecPhysical{X0, X1, X2, X3, X4, X5, X6, X7, X8, X11, X12, X13, X14, X15} {
		PXOR(r, r)
	}
	RET()
}
