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
	Generate()
}

// compress emits compressAVX2: out = R ^ P(R) (XOR-ed into out's old
// contents when xor is set), R = x ^ y, P applied to the rows and then the
// columns of R with BLAKE2b's round and BlaMka's multiplications, four
// 64-bit words per YMM register. tmp is 1 KiB of scratch the caller owns
// (and wipes). out may be x or y.
func compress(rot24, rot16 Mem) {
	TEXT("compressAVX2", NOSPLIT, "func(out, x, y, tmp *[128]uint64, xor bool)")
	Pragma("noescape")
	Doc("compressAVX2 computes Argon2's compression function G with AVX2.")
	out := Load(Param("out"), GP64())
	x := Load(Param("x"), GP64())
	y := Load(Param("y"), GP64())
	tmp := Load(Param("tmp"), GP64())
	xor := Load(Param("xor"), GP8())

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
