// Command asmgen generates crypt's AES-XTS assembly kernels with avo. Run it
// through go generate in the crypt directory:
//
//	go run ./internal/asmgen -out xts_amd64.s -stubs stubs_amd64.go
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
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

	// poly holds, in each 128-bit lane, the reduction polynomial's low part
	// 0x87: the bits shifted out of a lane's top, carry-less multiplied by
	// it, is what multiplying by a power of α folds back in.
	poly := GLOBL("xtsPoly", RODATA|NOPTR)
	for lane := range 2 {
		DATA(16*lane, U64(0x87))
		DATA(16*lane+8, U64(0))
	}

	aesniKernel("xtsEncryptAESNI", false)
	aesniKernel("xtsDecryptAESNI", true)
	vaesKernel("xtsEncryptVAES", false, alpha, poly)
	vaesKernel("xtsDecryptVAES", true, alpha, poly)
	cpuid()
	ecbKernel()
	Generate()
}

// sectorParams loads the arguments every sector kernel takes.
func sectorParams() (rk, rounds, dst, src, tweaks, sectors, blocks Register) {
	rk = Load(Param("rk"), GP64())
	rounds = Load(Param("rounds"), GP64())
	dst = Load(Param("dst"), GP64())
	src = Load(Param("src"), GP64())
	tweaks = Load(Param("tweaks"), GP64())
	sectors = Load(Param("sectors"), GP64())
	blocks = Load(Param("blocks"), GP64())
	return
}

// loopTail advances src and dst past a group of step bytes, loops over the
// sector's groups and then over the sectors (one 16-byte tweak each), and
// places the done label.
func loopTail(name string, step uint32, src, dst, groups, tw, sectors Register) {
	ADDQ(U32(step), src)
	ADDQ(U32(step), dst)
	DECQ(groups)
	JNZ(LabelRef(name + "_group"))

	ADDQ(U8(16), tw)
	DECQ(sectors)
	JMP(LabelRef(name + "_sector"))

	Label(name + "_done")
}

// aesniKernel emits an SSE + AES-NI XTS kernel: eight blocks at a time,
// with every round unrolled (one copy of the group loop per key size).
// blocks (per sector) must be a positive multiple of 8; rk is the key
// schedule for the direction, rounds 10, 12 or 14.
//
// The tweaks stay off the critical path and off the vector units, which
// the AES instructions share with every other SSE instruction: while the
// AES units work on one group, the doubling chain runs in general-purpose
// registers (add, add with carry, and 0x87 masked by the carry out) and
// computes the next group's eight tweaks (in the last group of a sector,
// from the next sector's initial tweak) into the other half of a double
// buffer on the stack. Each tweak is stored XORed with the last round key,
// so a group starts with eight loads and two XORs a block and ends with
// AESENCLAST taking tweak and last round key from memory in one operand.
//
// Registers: X0–X7 data, X8 the round key, X9 round key 0 ⊕ last round
// key; the running tweak in two general-purpose registers.
func aesniKernel(name string, decrypt bool) {
	TEXT(name, NOSPLIT, "func(rk *byte, rounds int, dst, src, tweaks *byte, sectors, blocks int)")
	Pragma("noescape")
	dir := "encrypts"
	if decrypt {
		dir = "decrypts"
	}
	Doc(fmt.Sprintf("%s %s sectors whole XTS sectors of blocks 16-byte blocks each with AES-NI.", name, dir))

	rk, rounds, dst, src, tw, sectors, blocks := sectorParams()
	groups := GP64()
	cur, nxt := GP64(), GP64()
	lo, hi, carry, x := GP64(), GP64(), GP64(), GP64()
	// Two buffers of eight tweaks, 16-byte aligned for the SSE memory
	// operands.
	buf := AllocLocal(2*8*16 + 16)

	data := []VecPhysical{X0, X1, X2, X3, X4, X5, X6, X7}
	key, key0 := X8, X9

	round, last := AESENC, AESENCLAST
	if decrypt {
		round, last = AESDEC, AESDECLAST
	}

	// double stores the tweak lo:hi ⊕ the last round key (at lastKey) as
	// tweak i of the buffer at base, then multiplies the tweak by α.
	double := func(base Register, i int, lastKey Mem) {
		MOVQ(lo, x)
		XORQ(lastKey, x)
		MOVQ(x, Mem{Base: base, Disp: 16 * i})
		MOVQ(hi, x)
		XORQ(lastKey.Offset(8), x)
		MOVQ(x, Mem{Base: base, Disp: 16*i + 8})
		ADDQ(lo, lo)
		ADCQ(hi, hi)
		SBBQ(carry, carry)
		ANDQ(U32(0x87), carry)
		XORQ(carry, lo)
	}

	SHRQ(U8(3), blocks)
	LEAQ(buf.Offset(15), cur)
	ANDQ(I8(-16), cur)
	LEAQ(Mem{Base: cur, Disp: 128}, nxt)
	TESTQ(sectors, sectors)
	JZ(LabelRef(name + "_done"))
	CMPQ(rounds, U8(10))
	JE(LabelRef(name + "_10"))
	CMPQ(rounds, U8(12))
	JE(LabelRef(name + "_12"))
	for _, nr := range []int{14, 12, 10} {
		l := fmt.Sprintf("%s_%d", name, nr)
		lastKey := Mem{Base: rk, Disp: 16 * nr}
		Comment(fmt.Sprintf("%d rounds.", nr))
		Label(l)
		MOVOU(Mem{Base: rk}, key0)
		MOVOU(lastKey, key)
		PXOR(key, key0)
		Comment("The first sector's first eight tweaks.")
		MOVQ(Mem{Base: tw}, lo)
		MOVQ(Mem{Base: tw, Disp: 8}, hi)
		for i := range data {
			double(cur, i, lastKey)
		}

		Label(l + "_sector")
		MOVQ(blocks, groups)

		Label(l + "_group")
		for i, x := range data {
			MOVOU(Mem{Base: src, Disp: 16 * i}, x)
			PXOR(Mem{Base: cur, Disp: 16 * i}, x)
			PXOR(key0, x)
		}
		Comment("In a sector's last group, the next sector's tweaks follow.")
		CMPQ(groups, U8(1))
		JNE(LabelRef(l + "_chain"))
		CMPQ(sectors, U8(1))
		JE(LabelRef(l + "_chain"))
		MOVQ(Mem{Base: tw, Disp: 16}, lo)
		MOVQ(Mem{Base: tw, Disp: 24}, hi)
		Label(l + "_chain")
		for r := 1; r < nr; r++ {
			MOVOU(Mem{Base: rk, Disp: 16 * r}, key)
			for _, x := range data {
				round(key, x)
			}
			if i := r - 1; i < len(data) {
				double(nxt, i, lastKey)
			}
		}
		for i, x := range data {
			last(Mem{Base: cur, Disp: 16 * i}, x)
			MOVOU(x, Mem{Base: dst, Disp: 16 * i})
		}
		XCHGQ(cur, nxt)
		ADDQ(U32(128), src)
		ADDQ(U32(128), dst)
		DECQ(groups)
		JNZ(LabelRef(l + "_group"))

		ADDQ(U8(16), tw)
		DECQ(sectors)
		JNZ(LabelRef(l + "_sector"))
		JMP(LabelRef(name + "_done"))
	}

	Label(name + "_done")
	Comment("Tweaks and round-key material are secrets: leave none in registers or on the stack.")
	for _, x := range []VecPhysical{X0, X1, X2, X3, X4, X5, X6, X7, X8, X9} {
		PXOR(x, x)
	}
	XORQ(lo, lo)
	XORQ(hi, hi)
	XORQ(x, x)
	for off := 0; off < 2*8*16+16; off += 16 {
		MOVOU(X0, buf.Offset(off))
	}
	RET()
}

// raw emits an instruction avo v0.5.0 has no form for (the ZMM forms of the
// VAES and VPCLMULQDQ instructions); the Go assembler checks and encodes it.
// Only physical registers are used with it.
func raw(opcode string, ops ...Op) {
	Instruction(&ir.Instruction{Opcode: opcode, Operands: ops, Inputs: ops, Outputs: ops[len(ops)-1:]})
}

// cpuid emits a CPUID wrapper: x/sys/cpu reports VAES and VPCLMULQDQ only
// together with AVX-512, and the YMM kernel needs neither.
func cpuid() {
	TEXT("cpuid", NOSPLIT, "func(leaf, sub uint32) (eax, ebx, ecx, edx uint32)")
	Doc("cpuid runs CPUID with EAX=leaf, ECX=sub.")
	Load(Param("leaf"), EAX)
	Load(Param("sub"), ECX)
	CPUID()
	Store(EAX, Return("eax"))
	Store(EBX, Return("ebx"))
	Store(ECX, Return("ecx"))
	Store(EDX, Return("edx"))
	RET()
}

// vaesKernel emits an AVX2 + VAES + VPCLMULQDQ XTS kernel on YMM registers:
// 16 blocks (eight registers of two blocks) at a time, tweaks advanced two
// blocks at a time with a carry-less multiplication and kept on the stack
// for the final XOR. blocks (per sector) must be a positive multiple of 16.
//
// Registers: Y0–Y7 data, Y8 the round key (broadcast from the schedule
// each round), Y9 the running tweak pair, Y10–Y11 scratch, Y12 the
// reduction constant.
func vaesKernel(name string, decrypt bool, alpha, poly Mem) {
	TEXT(name, NOSPLIT, "func(rk *byte, rounds int, dst, src, tweaks *byte, sectors, blocks int)")
	Pragma("noescape")
	dir := "encrypts"
	round, last := "VAESENC", "VAESENCLAST"
	if decrypt {
		dir = "decrypts"
		round, last = "VAESDEC", "VAESDECLAST"
	}
	Doc(fmt.Sprintf("%s %s sectors whole XTS sectors of blocks 16-byte blocks each with VAES on YMM registers.", name, dir))

	rk, rounds, dst, src, tw, sectors, blocks := sectorParams()
	groups := GP64()
	k := GP64()
	r := GP64()
	saved := AllocLocal(8 * 32)

	data := []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7}
	key, t, a, b, c := Y8, Y9, Y10, Y11, Y12

	VMOVDQU(poly, c)
	SHRQ(U8(4), blocks)

	Label(name + "_sector")
	TESTQ(sectors, sectors)
	JZ(LabelRef(name + "_done"))
	Comment("Y9 = the sector's first two tweaks T, Tα.")
	VMOVDQU(Mem{Base: tw}, X9)
	VPSHUFD(U8(0x13), X9, X10)
	VPSRAD(U8(31), X10, X10)
	VPAND(alpha, X10, X10)
	VPADDQ(X9, X9, X11)
	VPXOR(X10, X11, X11)
	VINSERTI128(U8(1), X11, Y9, Y9)
	MOVQ(blocks, groups)

	Label(name + "_group")
	VBROADCASTI128(Mem{Base: rk}, key)
	for i, x := range data {
		VMOVDQU(t, saved.Offset(32*i))
		VPXOR(Mem{Base: src, Disp: 32 * i}, t, x)
		VPXOR(key, x, x)
		Comment("t *= α² in each lane")
		VPSRLQ(U8(62), t, a)
		raw("VPCLMULQDQ", U8(0x01), c, a, b)
		VPSLLDQ(U8(8), a, a)
		VPSLLQ(U8(2), t, t)
		VPXOR(a, t, t)
		VPXOR(b, t, t)
	}
	LEAQ(Mem{Base: rk, Disp: 16}, k)
	MOVQ(rounds, r)
	DECQ(r)
	Label(name + "_round")
	VBROADCASTI128(Mem{Base: k}, key)
	for _, x := range data {
		raw(round, key, x, x)
	}
	ADDQ(U8(16), k)
	DECQ(r)
	JNZ(LabelRef(name + "_round"))
	VBROADCASTI128(Mem{Base: k}, key)
	for i, x := range data {
		raw(last, key, x, x)
		VPXOR(saved.Offset(32*i), x, x)
		VMOVDQU(x, Mem{Base: dst, Disp: 32 * i})
	}
	loopTail(name, 256, src, dst, groups, tw, sectors)
	Comment("Leave no round key or tweak in a register or on the stack.")
	for _, x := range []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11} {
		VPXOR(x, x, x)
	}
	for i := range 8 {
		VMOVDQU(Y0, saved.Offset(32*i))
	}
	VZEROUPPER()
	RET()
}

// ecbKernel emits ecbEncryptAESNI, which encrypts n blocks in place, four
// at a time while it can: the sectors' IVs, into their initial tweaks.
func ecbKernel() {
	TEXT("ecbEncryptAESNI", NOSPLIT, "func(rk *byte, rounds int, buf *byte, n int)")
	Pragma("noescape")
	Doc("ecbEncryptAESNI encrypts n 16-byte blocks at buf in place with AES-NI.")
	rk := Load(Param("rk"), GP64())
	rounds := Load(Param("rounds"), GP64())
	buf := Load(Param("buf"), GP64())
	n := Load(Param("n"), GP64())
	k := GP64()
	r := GP64()
	key := X8
	emit := func(label string, data []VecPhysical) {
		MOVOU(Mem{Base: rk}, key)
		for i, x := range data {
			MOVOU(Mem{Base: buf, Disp: 16 * i}, x)
			PXOR(key, x)
		}
		LEAQ(Mem{Base: rk, Disp: 16}, k)
		MOVQ(rounds, r)
		DECQ(r)
		Label(label)
		MOVOU(Mem{Base: k}, key)
		for _, x := range data {
			AESENC(key, x)
		}
		ADDQ(U8(16), k)
		DECQ(r)
		JNZ(LabelRef(label))
		MOVOU(Mem{Base: k}, key)
		for i, x := range data {
			AESENCLAST(key, x)
			MOVOU(x, Mem{Base: buf, Disp: 16 * i})
		}
		ADDQ(U8(uint8(16*len(data))), buf)
	}
	Label("ecb_four")
	CMPQ(n, U8(4))
	JB(LabelRef("ecb_one"))
	emit("ecb_round4", []VecPhysical{X0, X1, X2, X3})
	SUBQ(U8(4), n)
	JMP(LabelRef("ecb_four"))
	Label("ecb_one")
	TESTQ(n, n)
	JZ(LabelRef("ecb_done"))
	emit("ecb_round1", []VecPhysical{X0})
	DECQ(n)
	JMP(LabelRef("ecb_one"))
	Label("ecb_done")
	for _, x := range []VecPhysical{X0, X1, X2, X3, X8} {
		PXOR(x, x)
	}
	RET()
}
