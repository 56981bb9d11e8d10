// Command asmgen generates crypt's AES-XTS assembly kernels with avo. Run it
// through go generate in the crypt directory:
//
//	go run ./internal/asmgen -out xts_amd64.s -stubs stubs_amd64.go
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("!purego")

	// alphaMask turns the sign bits of a tweak's two 64-bit halves into what
	// doubling must XOR back in: 0x87 into the low dword for bit 127 and 1
	// into bit 64 for bit 63 (IEEE 1619's multiplication by α, little-endian).
	alpha := GLOBL("xtsAlphaMask", RODATA|NOPTR)
	DATA(0, U32(0x87))
	DATA(4, U32(0))
	DATA(8, U32(1))
	DATA(12, U32(0))

	aesniKernel("xtsEncryptAESNI", false, alpha)
	aesniKernel("xtsDecryptAESNI", true, alpha)
	Generate()
}

// aesniKernel emits an SSE + AES-NI XTS kernel: for each of sectors sectors,
// load its initial (already encrypted) tweak from tweaks, then run the
// sector's blocks eight at a time, advancing the tweak in a register.
// blocks (per sector) must be a positive multiple of 8; rk is the key
// schedule for the direction, rounds 10, 12 or 14.
func aesniKernel(name string, decrypt bool, alpha Mem) {
	TEXT(name, NOSPLIT, "func(rk *byte, rounds int, dst, src, tweaks *byte, sectors, blocks int)")
	Pragma("noescape")
	dir := "encrypts"
	if decrypt {
		dir = "decrypts"
	}
	Doc(fmt.Sprintf("%s %s sectors whole XTS sectors of blocks 16-byte blocks each with AES-NI.", name, dir))

	rk := Load(Param("rk"), GP64())
	rounds := Load(Param("rounds"), GP64())
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	tw := Load(Param("tweaks"), GP64())
	sectors := Load(Param("sectors"), GP64())
	blocks := Load(Param("blocks"), GP64())
	groups := GP64()
	k := GP64()
	r := GP64()
	saved := AllocLocal(8 * 16)

	data := []VecPhysical{X0, X1, X2, X3, X4, X5, X6, X7}
	key, t, tmp, mask := X8, X9, X11, X10

	round, last := AESENC, AESENCLAST
	if decrypt {
		round, last = AESDEC, AESDECLAST
	}

	MOVOU(alpha, mask)
	SHRQ(U8(3), blocks)

	Label(name + "_sector")
	TESTQ(sectors, sectors)
	JZ(LabelRef(name + "_done"))
	MOVOU(Mem{Base: tw}, t)
	MOVQ(blocks, groups)

	Label(name + "_group")
	Comment("Load 8 blocks, whiten with their tweaks (kept on the stack) and round key 0.")
	MOVOU(Mem{Base: rk}, key)
	for i, x := range data {
		MOVOU(t, saved.Offset(16*i))
		MOVOU(Mem{Base: src, Disp: 16 * i}, x)
		PXOR(t, x)
		PXOR(key, x)
		// t *= α
		PSHUFD(U8(0x13), t, tmp)
		PSRAL(U8(31), tmp)
		PAND(mask, tmp)
		PADDQ(t, t)
		PXOR(tmp, t)
	}
	LEAQ(Mem{Base: rk, Disp: 16}, k)
	MOVQ(rounds, r)
	DECQ(r)
	Label(name + "_round")
	MOVOU(Mem{Base: k}, key)
	for _, x := range data {
		round(key, x)
	}
	ADDQ(U8(16), k)
	DECQ(r)
	JNZ(LabelRef(name + "_round"))
	MOVOU(Mem{Base: k}, key)
	for _, x := range data {
		last(key, x)
	}
	for i, x := range data {
		MOVOU(saved.Offset(16*i), tmp)
		PXOR(tmp, x)
		MOVOU(x, Mem{Base: dst, Disp: 16 * i})
	}
	ADDQ(U32(128), src)
	ADDQ(U32(128), dst)
	DECQ(groups)
	JNZ(LabelRef(name + "_group"))

	ADDQ(U8(16), tw)
	DECQ(sectors)
	JMP(LabelRef(name + "_sector"))

	Label(name + "_done")
	Comment("Tweaks and round-key material are secrets: leave none in registers or on the stack.")
	for _, x := range []VecPhysical{X0, X1, X2, X3, X4, X5, X6, X7, X8, X9, X11} {
		PXOR(x, x)
	}
	for i := range 8 {
		MOVOU(X0, saved.Offset(16*i))
	}
	RET()
}
