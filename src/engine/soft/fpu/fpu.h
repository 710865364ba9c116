/* x87 FPU, MMX data ops and SSE/SSE2 for the soft engine: pure functions on
 * the architectural FXSAVE image (struct fxsave_area in arch/x86/cpu_state.h).
 *
 * Division of labour with the emulator core:
 *   - the core decodes with Zydis and asks sse_decode()/x87_decode() for a
 *     compact form (once, at translation time), calls sse_check()/
 *     x87_check() for #UD/#NM/#MF, checks CPUID-level #UD and alignment
 *     (#GP(0) for SSE_F_ALIGN16 forms with a misaligned address), computes
 *     effective addresses, fetches memory operands and writes results back
 *     to registers / memory as the form says (protocols below);
 *   - this library computes results, MXCSR/FSW flags, tags, condition codes
 *     and EFLAGS, and says which exception (if any) the instruction raises.
 *   - not here: EMMS (the core calls fpu_emms() after the MMX checks: #UD
 *     on CR0.EM, #NM on CR0.TS, #MF if pending), STMXCSR (fx->mxcsr), the
 *     fences, PREFETCHh, CLFLUSH, PAUSE.
 *
 * Exactness: every floating-point operation runs on the host's own x87 or
 * SSE unit (the host is x86-64) with the guest's control word installed for
 * the duration of one inline-asm block, so rounding, denormals, NaN
 * propagation, flags and the x87 transcendentals are the host CPU's, bit for
 * bit. The host's MXCSR / FCW are restored inside the same asm block.
 *
 * Return values: functions that can fault return 0 or a positive exception
 * vector (FPU_EXC_*); pure helpers return values directly.
 *
 * CPUID: what this library implements is FPU, MMX, FXSR, CMOV's FCMOVcc,
 * SSE and SSE2 (plus FISTTP from SSE3); MXCSR_MASK is 0xFFFF (DAZ).
 * Cost on this host: ~20 ns an SSE FP op, ~8 ns an integer op, ~150 ns an
 * x87 op (FRSTOR + FNSAVE around each, ~130 ns of it). Through the soft
 * core (fpu/soft_glue.c): ~45 ns an SSE instruction, ~170 ns an x87 one.
 * Host requirements: SSE2, DAZ support in MXCSR, LAHF/SAHF in 64-bit mode,
 * SSE3 only if a guest is allowed FISTTP.
 */
#ifndef KITE_ENGINE_SOFT_FPU_FPU_H
#define KITE_ENGINE_SOFT_FPU_FPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <Zydis/Zydis.h>

#include "arch/x86/cpu_state.h"

/* Exception vectors returned by this library. */
#define FPU_EXC_UD 6   /* SIMD FP exception with CR4.OSXMMEXCPT clear */
#define FPU_EXC_NM 7   /* CR0.TS / CR0.EM (sse_check, x87_check) */
#define FPU_EXC_GP 13  /* LDMXCSR / FXRSTOR with reserved MXCSR bits: #GP(0) */
#define FPU_EXC_MF 16  /* pending unmasked x87 exception (FSW.ES), CR0.NE=1 */
#define FPU_EXC_XM 19  /* unmasked SIMD FP exception, CR4.OSXMMEXCPT=1 */

/* ------------------------------------------------------------------ MXCSR */
#define MXCSR_IE  0x0001u
#define MXCSR_DE  0x0002u
#define MXCSR_ZE  0x0004u
#define MXCSR_OE  0x0008u
#define MXCSR_UE  0x0010u
#define MXCSR_PE  0x0020u
#define MXCSR_FLAGS 0x003Fu
#define MXCSR_DAZ 0x0040u
#define MXCSR_MASKS 0x1F80u  /* IM DM ZM OM UM PM, bits 7-12 */
#define MXCSR_RC  0x6000u    /* 00 nearest, 01 down, 10 up, 11 toward zero */
#define MXCSR_FTZ 0x8000u
#define MXCSR_DEFAULT 0x1F80u
/* MXCSR_MASK reported in the FXSAVE image: every bit of 0-15 writable
 * (DAZ supported). Bits 16-31 are reserved: writing them is #GP(0). Advertise
 * this value in any FXSAVE the core performs. */
#define MXCSR_MASK_VALUE 0x0000FFFFu

/* LDMXCSR / the MXCSR part of FXRSTOR: 0, or FPU_EXC_GP if v sets a
 * reserved bit (the register is then unchanged). No exception is raised for
 * flags that are set and unmasked: SSE has no deferred exceptions. */
int sse_ldmxcsr(struct fxsave_area *fx, uint32_t v);

/* ------------------------------------------------------------------- SSE */

/* One 128-bit operand value. Memory operands narrower than 16 bytes are
 * loaded into the low bytes with the rest zero; GPR operands go in q[0]
 * (zero-extended), MMX registers in q[0]. */
union xmm {
	uint8_t b[16];
	int8_t sb[16];
	uint16_t w[8];
	int16_t sw[8];
	uint32_t d[4];
	int32_t sd[4];
	uint64_t q[2];
	int64_t sq[2];
	float f[4];
	double f64[2];
};

/* Operation ids. Names are the instruction's, with a suffix where one
 * mnemonic has several semantics:
 *   _32/_64   GPR operand size (REX.W) for CVTSI2Sx / CVT(T)Sx2SI
 *   _IMM      shift count from imm8 instead of xmm/m128
 *   _LOAD     register <- memory (e.g. MOVSS xmm, m32 zeroes bits 32-127)
 *   _STORE    memory <- register: result in dst's low mem_size bytes
 *   _MERGE    register <- register (MOVSS/MOVSD xmm, xmm keep bits 32/64+)
 *   _MMX      the 64-bit MMX form whose lane layout differs from the
 *             128-bit form (others use the 128-bit op on zero-extended
 *             values: the low 64 bits of the result are the MMX result). */
#define SSE_OP_LIST(X) \
	/* packed / scalar float arithmetic */ \
	X(ADDPS) X(ADDSS) X(ADDPD) X(ADDSD) X(SUBPS) X(SUBSS) X(SUBPD) X(SUBSD) \
	X(MULPS) X(MULSS) X(MULPD) X(MULSD) X(DIVPS) X(DIVSS) X(DIVPD) X(DIVSD) \
	X(SQRTPS) X(SQRTSS) X(SQRTPD) X(SQRTSD) X(MINPS) X(MINSS) X(MINPD) \
	X(MINSD) X(MAXPS) X(MAXSS) X(MAXPD) X(MAXSD) X(RCPPS) X(RCPSS) \
	X(RSQRTPS) X(RSQRTSS) \
	/* compares */ \
	X(CMPPS) X(CMPSS) X(CMPPD) X(CMPSD) X(COMISS) X(UCOMISS) X(COMISD) \
	X(UCOMISD) \
	/* float logic */ \
	X(ANDPS) X(ANDNPS) X(ORPS) X(XORPS) X(ANDPD) X(ANDNPD) X(ORPD) X(XORPD) \
	/* float shuffles */ \
	X(SHUFPS) X(SHUFPD) X(UNPCKLPS) X(UNPCKHPS) X(UNPCKLPD) X(UNPCKHPD) \
	/* conversions */ \
	X(CVTSI2SS_32) X(CVTSI2SS_64) X(CVTSI2SD_32) X(CVTSI2SD_64) \
	X(CVTSS2SI_32) X(CVTSS2SI_64) X(CVTTSS2SI_32) X(CVTTSS2SI_64) \
	X(CVTSD2SI_32) X(CVTSD2SI_64) X(CVTTSD2SI_32) X(CVTTSD2SI_64) \
	X(CVTPS2PD) X(CVTPD2PS) X(CVTSS2SD) X(CVTSD2SS) X(CVTDQ2PS) \
	X(CVTPS2DQ) X(CVTTPS2DQ) X(CVTDQ2PD) X(CVTPD2DQ) X(CVTTPD2DQ) \
	X(CVTPI2PS) X(CVTPS2PI) X(CVTTPS2PI) X(CVTPI2PD) X(CVTPD2PI) \
	X(CVTTPD2PI) \
	/* moves */ \
	X(MOV128) X(MOVSS_LOAD) X(MOVSS_MERGE) X(MOVSS_STORE) X(MOVSD_LOAD) \
	X(MOVSD_MERGE) X(MOVSD_STORE) X(MOVHLPS) X(MOVLHPS) X(MOVHPS_LOAD) \
	X(MOVHPS_STORE) X(MOVLPS_LOAD) X(MOVLPS_STORE) X(MOVMSKPS) X(MOVMSKPD) \
	X(PMOVMSKB) X(MOVD_TO_XMM) X(MOVQ_TO_XMM) X(MOVD_FROM_XMM) \
	X(MOVQ_FROM_XMM) X(MOVNTI) X(MASKMOVDQU) \
	/* integer arithmetic */ \
	X(PADDB) X(PADDW) X(PADDD) X(PADDQ) X(PSUBB) X(PSUBW) X(PSUBD) X(PSUBQ) \
	X(PADDSB) X(PADDSW) X(PADDUSB) X(PADDUSW) X(PSUBSB) X(PSUBSW) \
	X(PSUBUSB) X(PSUBUSW) X(PMULLW) X(PMULHW) X(PMULHUW) X(PMULUDQ) \
	X(PMADDWD) X(PAVGB) X(PAVGW) X(PSADBW) X(PMINUB) X(PMAXUB) X(PMINSW) \
	X(PMAXSW) X(PCMPEQB) X(PCMPEQW) X(PCMPEQD) X(PCMPGTB) X(PCMPGTW) \
	X(PCMPGTD) X(PAND) X(PANDN) X(POR) X(PXOR) \
	/* shifts */ \
	X(PSLLW) X(PSLLD) X(PSLLQ) X(PSRLW) X(PSRLD) X(PSRLQ) X(PSRAW) X(PSRAD) \
	X(PSLLW_IMM) X(PSLLD_IMM) X(PSLLQ_IMM) X(PSRLW_IMM) X(PSRLD_IMM) \
	X(PSRLQ_IMM) X(PSRAW_IMM) X(PSRAD_IMM) X(PSLLDQ) X(PSRLDQ) \
	/* pack / unpack / shuffle / insert / extract */ \
	X(PACKSSWB) X(PACKSSDW) X(PACKUSWB) X(PUNPCKLBW) X(PUNPCKLWD) \
	X(PUNPCKLDQ) X(PUNPCKLQDQ) X(PUNPCKHBW) X(PUNPCKHWD) X(PUNPCKHDQ) \
	X(PUNPCKHQDQ) X(PSHUFD) X(PSHUFHW) X(PSHUFLW) X(PEXTRW) X(PINSRW) \
	/* MMX forms whose layout differs from the 128-bit form */ \
	X(PACKSSWB_MMX) X(PACKSSDW_MMX) X(PACKUSWB_MMX) X(PUNPCKHBW_MMX) \
	X(PUNPCKHWD_MMX) X(PUNPCKHDQ_MMX) X(PEXTRW_MMX) X(PINSRW_MMX)

enum sse_op {
	SSE_OP_INVALID = 0,
#define SSE_OP_ENUM(n) SSE_##n,
	SSE_OP_LIST(SSE_OP_ENUM)
#undef SSE_OP_ENUM
	SSE_OP_COUNT
};

/* "ADDPS", ... for diagnostics; "?" for an invalid id. */
const char *sse_op_name(enum sse_op op);

/* Whether op is floating point: reads MXCSR, may set its flags and fault. */
bool sse_op_raises(enum sse_op op);

/* Where an operand lives. */
enum sse_loc {
	SSE_LOC_NONE = 0,
	SSE_LOC_XMM,    /* reg = XMM index 0-15 */
	SSE_LOC_MMX,    /* reg = MM index 0-7 (see the MMX notes below) */
	SSE_LOC_GPR,    /* reg = GPR index (enum gpr), gpr_size 4 or 8 bytes */
	SSE_LOC_MEM,    /* mem_size bytes at the instruction's effective address */
};

/* form.flags */
#define SSE_F_DST_READ  0x01 /* load dst before sse_exec (it is an input) */
#define SSE_F_DST_WRITE 0x02 /* write dst back after sse_exec returns 0 */
#define SSE_F_ALIGN16   0x04 /* memory operand must be 16-byte aligned: #GP(0) */
#define SSE_F_MXCSR     0x08 /* floating point: may raise #XM/#UD, reads MXCSR */
#define SSE_F_RFLAGS    0x10 /* writes ZF/PF/CF (and clears OF/SF/AF) */
#define SSE_F_MMX       0x20 /* has an MMX register operand: x87->MMX transition */
#define SSE_F_MASKMOV   0x40 /* MASKMOVDQU/MASKMOVQ: see sse_maskmov_mask() */

/* A decoded SSE/SSE2/MMX-data instruction, resolved once at translation time
 * by sse_decode(). Execution protocol for the core:
 *   0. r = sse_check(&form, cr0, cr4, fx): raise r if nonzero; then the
 *      alignment check;
 *   1. union xmm d = {0}, s = {0};
 *   2. if (flags & SSE_F_DST_READ) load d from dst (xmm: 16 bytes; mmx: q[0];
 *      gpr: q[0]; mem: mem_size bytes);
 *      load s from src the same way (src is always read if not NONE);
 *   3. if (flags & SSE_F_MMX) fpu_mmx_enter(fx);
 *   4. r = sse_exec(op, fx, &d, &s, imm8, cr4, &rflags); r != 0 -> raise
 *      exception r (fault: nothing has been written, MXCSR flags updated as
 *      hardware does before delivering #XM);
 *   5. if (flags & SSE_F_DST_WRITE) store d to dst: xmm 16 bytes; gpr the
 *      low gpr_size bytes (a 4-byte write zero-extends to 64 bits as for any
 *      32-bit GPR write); mem the low mem_size bytes; mmx via
 *      fpu_mmx_write(fx, reg, d.q[0]).
 * mem_size is the size of whichever operand is SSE_LOC_MEM (0 if none). */
struct sse_form {
	uint16_t op;          /* enum sse_op */
	uint8_t dst_loc, dst_reg;
	uint8_t src_loc, src_reg;
	uint8_t mem_size;
	uint8_t gpr_size;
	uint8_t flags;
	uint8_t imm8;
	bool has_imm;
};

/* Resolve a Zydis decode (insn + its operands array from
 * ZydisDecoderDecodeFull) into a form. Returns 0, or -ENOENT if the
 * instruction is not an SSE/SSE2/MMX data operation handled here (the core
 * then handles it itself or raises #UD), -EINVAL for an operand shape this
 * library does not know. Handles every form of every op above, including
 * MOVSS/MOVSD (SSE, not the string op), MOVD/MOVQ (xmm/mmx <-> gpr/mem),
 * MOVQ2DQ, MOVDQ2Q, MOVAPS/MOVUPS/MOVAPD/MOVUPD/MOVDQA/MOVDQU/MOVNT*,
 * PSHUFW, MASKMOVQ and the MMX register forms of the integer ops. VEX/EVEX
 * forms (AVX) and SSE3+ (LDDQU, the SSE4.1 PEXTRW m16 form) are -ENOENT. */
int sse_decode(const ZydisDecodedInstruction *insn,
	       const ZydisDecodedOperand *ops, struct sse_form *out);

/* The same from a neutral operand description, for callers that keep their
 * own compact decode (the soft core's struct sinsn): n visible operands
 * (2 or 3) in Zydis order; imm is the immediate's value if one is present.
 * GPR sizes are 4 or 8; register numbers as ZydisRegisterGetId gives them. */
enum sse_opnd_kind { SSE_OPND_NONE, SSE_OPND_XMM, SSE_OPND_MMX, SSE_OPND_GPR,
		     SSE_OPND_MEM, SSE_OPND_IMM };
struct sse_operand {
	uint8_t kind;   /* enum sse_opnd_kind */
	uint8_t reg;
	uint8_t size;   /* bytes (memory: the access size Zydis reports) */
};
int sse_decode_ops(unsigned mnemonic, unsigned n, const struct sse_operand *ops,
		   uint64_t imm, struct sse_form *out);

/* Cheap mnemonic -> primary op lookup (the register/xmm-or-m128 form; the
 * per-form details need sse_decode). SSE_OP_INVALID if not ours. */
enum sse_op sse_op_for_mnemonic(ZydisMnemonic m);

/* Execute op. dst/src as loaded per the form (step 2 above); imm8 as
 * decoded; cr4 decides #XM vs #UD for unmasked SIMD FP exceptions; rflags
 * is read and updated only for SSE_F_RFLAGS ops (may be NULL otherwise).
 * Exceptions follow the SDM precedence: if any unmasked pre-computation
 * exception (IE, DE, ZE) is found in any lane, only the pre-computation
 * flags are set; otherwise all flags are set, with the per-element rule
 * the host shows for unmasked OE/UE: such an element reports OE (or UE,
 * for any tiny result, exact or not) plus PE only if the result rounded
 * with an unbounded exponent is inexact. Either way the destination and
 * RFLAGS are left alone and FPU_EXC_XM/FPU_EXC_UD is returned. Masked
 * exceptions set their flags and deliver the masked result. */
int sse_exec(enum sse_op op, struct fxsave_area *fx, union xmm *dst,
	     const union xmm *src, uint8_t imm8, uint64_t cr4, uint64_t *rflags);

/* The checks before executing an SSE/MMX form, in the SDM's priority
 * order: #UD (CR0.EM=1; CR4.OSFXSR=0 when an XMM register is involved),
 * #NM (CR0.TS=1), #MF (an MMX register is involved and an x87 exception is
 * pending). MOVNTI has none of these. CPUID-based #UD (SSE/SSE2 absent),
 * LOCK (#UD) and alignment (#GP(0) for SSE_F_ALIGN16) are the core's.
 * LDMXCSR/STMXCSR follow the XMM rule (#UD on EM or !OSFXSR, #NM on TS);
 * LDMXCSR then #GP(0) via sse_ldmxcsr(). Returns 0 or a vector. */
int sse_check(const struct sse_form *f, uint64_t cr0, uint64_t cr4,
	      const struct fxsave_area *fx);

/* MASKMOVDQU xmm1, xmm2 / MASKMOVQ mm1, mm2: store the bytes of xmm1 whose
 * mask byte in xmm2 has bit 7 set to DS:[rDI] + i (implicit operand,
 * address size from the instruction, segment overridable, no alignment
 * requirement, non-temporal hint). Bytes whose mask bit is clear are not
 * accessed at all (no fault from them); if all mask bits are clear nothing
 * is accessed (whether a fault can still happen then is implementation
 * specific: Intel may fault, treat it as no access). Returns the byte mask:
 * bit i set = write byte i. For MASKMOVQ use the low 8 bits. The form for
 * these has SSE_F_MASKMOV, dst = the data register (xmm1), src = the mask;
 * the core does the stores itself, sse_exec is not needed. */
uint16_t sse_maskmov_mask(const union xmm *mask);

/* ------------------------------------------------------------------- MMX
 * MMX registers alias the x87 registers' significands (ST physical i =
 * MMi). Every MMX instruction (other than EMMS) does, after the #MF check:
 * FSW.TOP = 0 and all tags valid (fpu_mmx_enter, which rotates the
 * stack-ordered st[] so every physical register keeps its contents); a
 * write to MMi sets its
 * bits 64-79 to all ones (fpu_mmx_write). Reads: fpu_mmx_read. CVTPI2PS,
 * CVTPI2PD with a memory source do not touch the x87 state (sse_decode then
 * does not set SSE_F_MMX). */
void fpu_mmx_enter(struct fxsave_area *fx);
uint64_t fpu_mmx_read(const struct fxsave_area *fx, unsigned i);
void fpu_mmx_write(struct fxsave_area *fx, unsigned i, uint64_t v);
void fpu_emms(struct fxsave_area *fx);  /* all tags empty */

/* -------------------------------------------------------------------- x87 */
#define FSW_IE 0x0001u
#define FSW_DE 0x0002u
#define FSW_ZE 0x0004u
#define FSW_OE 0x0008u
#define FSW_UE 0x0010u
#define FSW_PE 0x0020u
#define FSW_SF 0x0040u
#define FSW_ES 0x0080u
#define FSW_C0 0x0100u
#define FSW_C1 0x0200u
#define FSW_C2 0x0400u
#define FSW_TOP_SHIFT 11
#define FSW_TOP 0x3800u
#define FSW_C3 0x4000u
#define FSW_B  0x8000u
#define FCW_DEFAULT 0x037Fu

/* x87. Execution protocol for the core:
 *   1. at translation: x87_decode(insn, &form) (0, or -EINVAL -> #UD);
 *   2. r = x87_check(&form, cr0, fx): raise r if nonzero;
 *   3. FLDENV/FNSTENV/FRSTOR/FNSAVE: call x87_fldenv() & co. on a buffer of
 *      x87_env_size(op16) / x87_save_size(op16) bytes (op16: 16-bit
 *      operand size; real: real or virtual-8086 mode), done;
 *   4. otherwise fill a struct x87_io: mem (form.mem_size bytes) if
 *      x87_op_info(op)->mem_read; rflags = x87_fcmov_cond(form.fcmov_cc,
 *      RFLAGS) for FCMOV, = RFLAGS for the FCOMI family;
 *   5. x87_exec(op, fx, form.sti, &io) (0, or #MF if step 2 was skipped);
 *   6. write io.mem to memory if io.store; RFLAGS = io.rflags if
 *      info->eflags; AX = io.ax for FNSTSW_AX;
 *   7. unless info->control: fx->fop = form.fop, fx->fip = the
 *      instruction's address (64-bit: RIP; else the offset: FCS/FDS are not
 *      kept), and for a memory form fx->fdp = its effective address.
 * Faults: loads are fetched before x87_exec, so a #PF leaves the state
 * alone. x87_exec changes fx before the core stores (FSTP pops), so for the
 * store forms (info->mem_write) and FNSTENV/FNSAVE either check that the
 * destination is writable first or keep a copy of fx to put back if the
 * store faults.
 *
 * x87 operations. Suffixes: _STi = "op st(0), st(i)" (dst st0);
 * _TOSTi = "op st(i), st(0)" (dst st(i)); _P = ...p st(i), st(0) (dst st(i),
 * then pop); _M32/_M64/_M80 = real memory operand, _I16/_I32/_I64 = integer
 * memory operand, _BCD = 80-bit packed BCD. */
#define X87_OP_LIST(X) \
	/* loads (push) */ \
	X(FLD_M32) X(FLD_M64) X(FLD_M80) X(FLD_STi) X(FILD_I16) X(FILD_I32) \
	X(FILD_I64) X(FBLD_BCD) X(FLD1) X(FLDZ) X(FLDPI) X(FLDL2E) X(FLDLN2) \
	X(FLDL2T) X(FLDLG2) \
	/* stores (mem result in io->mem) */ \
	X(FST_M32) X(FST_M64) X(FSTP_M32) X(FSTP_M64) X(FSTP_M80) X(FST_STi) \
	X(FSTP_STi) X(FIST_I16) X(FIST_I32) X(FISTP_I16) X(FISTP_I32) \
	X(FISTP_I64) X(FISTTP_I16) X(FISTTP_I32) X(FISTTP_I64) X(FBSTP_BCD) \
	/* arithmetic */ \
	X(FADD_STi) X(FADD_TOSTi) X(FADDP) X(FADD_M32) X(FADD_M64) X(FIADD_I16) \
	X(FIADD_I32) \
	X(FSUB_STi) X(FSUB_TOSTi) X(FSUBP) X(FSUB_M32) X(FSUB_M64) X(FISUB_I16) \
	X(FISUB_I32) \
	X(FSUBR_STi) X(FSUBR_TOSTi) X(FSUBRP) X(FSUBR_M32) X(FSUBR_M64) \
	X(FISUBR_I16) X(FISUBR_I32) \
	X(FMUL_STi) X(FMUL_TOSTi) X(FMULP) X(FMUL_M32) X(FMUL_M64) X(FIMUL_I16) \
	X(FIMUL_I32) \
	X(FDIV_STi) X(FDIV_TOSTi) X(FDIVP) X(FDIV_M32) X(FDIV_M64) X(FIDIV_I16) \
	X(FIDIV_I32) \
	X(FDIVR_STi) X(FDIVR_TOSTi) X(FDIVRP) X(FDIVR_M32) X(FDIVR_M64) \
	X(FIDIVR_I16) X(FIDIVR_I32) \
	X(FCHS) X(FABS) X(FSQRT) X(FRNDINT) X(FSCALE) X(FXTRACT) X(FPREM) \
	X(FPREM1) X(FSIN) X(FCOS) X(FSINCOS) X(FPTAN) X(FPATAN) X(F2XM1) \
	X(FYL2X) X(FYL2XP1) \
	/* compares (FCOMI & co. return EFLAGS in io->rflags) */ \
	X(FCOM_STi) X(FCOMP_STi) X(FCOMPP) X(FCOM_M32) X(FCOM_M64) X(FCOMP_M32) \
	X(FCOMP_M64) X(FICOM_I16) X(FICOM_I32) X(FICOMP_I16) X(FICOMP_I32) \
	X(FUCOM_STi) X(FUCOMP_STi) X(FUCOMPP) X(FCOMI_STi) X(FCOMIP_STi) \
	X(FUCOMI_STi) X(FUCOMIP_STi) X(FTST) X(FXAM) \
	/* stack and control */ \
	X(FXCH_STi) X(FINCSTP) X(FDECSTP) X(FFREE_STi) X(FFREEP_STi) X(FNOP) \
	X(FCMOV_STi) X(FNINIT) X(FNCLEX) X(FLDCW) X(FNSTCW) X(FNSTSW) \
	X(FNSTSW_AX) X(FWAIT) \
	/* undocumented register-form aliases, run as the host runs them */ \
	X(FCOM2_STi) X(FCOMP3_STi) X(FXCH4_STi) X(FCOMP5_STi) X(FXCH7_STi) \
	X(FSTP1_STi) X(FSTP8_STi) X(FSTP9_STi) X(FNENI) X(FNDISI) X(FNSETPM) \
	/* environment ops: decoded here, run with x87_fldenv() & co. */ \
	X(FLDENV) X(FNSTENV) X(FRSTOR) X(FNSAVE)

enum x87_op {
	X87_OP_INVALID = 0,
#define X87_OP_ENUM(n) X87_##n,
	X87_OP_LIST(X87_OP_ENUM)
#undef X87_OP_ENUM
	X87_OP_COUNT
};

const char *x87_op_name(enum x87_op op);

/* Operands and results of one x87 operation. */
struct x87_io {
	uint8_t mem[16];   /* memory operand: input for loads/arith/compares
	                      and FLDCW (little-endian, mem_size bytes); output
	                      for stores, FNSTCW, FNSTSW m16 */
	uint64_t rflags;   /* FCOMI*: in/out (ZF PF CF set, OF SF AF cleared);
	                      FCMOV: the condition, nonzero = move */
	uint16_t ax;       /* FNSTSW AX: output */
	bool store;        /* out: write mem_size bytes of mem to memory. False
	                      when an unmasked IE/DE/ZE/OE/UE suppressed the
	                      store (hardware leaves the memory unchanged). */
};

/* Static facts about an op for the core (table lookup). */
struct x87_info {
	uint8_t mem_size;   /* 0, 2, 4, 8, 10 */
	bool mem_read;      /* memory operand is an input */
	bool mem_write;     /* memory operand is an output (if io.store) */
	bool uses_sti;      /* takes the st(i) index */
	bool control;       /* a control instruction: does not update
	                       FOP/FIP/FDP (FNINIT FNCLEX FLDCW FNSTCW FNSTSW
	                       FNSTSW_AX FWAIT FNOP-is-not: FNOP does update) */
	bool no_wait;       /* no #MF check before it (FN* forms) */
	bool eflags;        /* writes RFLAGS (FCOMI family) */
};
const struct x87_info *x87_op_info(enum x87_op op);

/* A decoded x87 instruction (x87_decode). */
struct x87_form {
	uint16_t op;       /* enum x87_op */
	uint8_t sti;       /* st(i) index for register forms */
	uint8_t fcmov_cc;  /* FCMOVcc: X87_CC_* (possibly | X87_CC_NOT) */
	uint8_t mem_size;  /* memory operand bytes (0 = none; the env/save
	                      ops depend on operand size: x87_env_size()) */
	uint16_t fop;      /* the 11-bit FOP: (opcode & 7) << 8 | ModRM */
};
#define X87_CC_B   0   /* CF=1 */
#define X87_CC_E   1   /* ZF=1 */
#define X87_CC_BE  2   /* CF=1 or ZF=1 */
#define X87_CC_U   3   /* PF=1 */
#define X87_CC_NOT 4

/* Resolve an x87 instruction (opcodes D8-DF and 9B FWAIT) from its opcode
 * byte and ModRM, including the undocumented register aliases (FCOM2,
 * FXCH4, FSTP1..., FENI/FDISI/FSETPM: their own ops, executed as the host
 * executes them, e.g. AMD runs D9 D8+i without stack-fault checks). Returns 0, -ENOENT if insn is not x87, or -EINVAL for
 * a reserved encoding (#UD). FLDENV/FNSTENV/FRSTOR/FNSAVE decode to the
 * X87_FLDENV... ids: run them with x87_fldenv() etc., not x87_exec(). The
 * waiting forms FSTSW/FSTCW/FCLEX/FINIT/FSAVE/FSTENV are two instructions
 * (FWAIT + FN*), as Zydis and hardware see them. */
int x87_decode(const ZydisDecodedInstruction *insn, struct x87_form *out);
/* The same from the opcode byte (D8-DF, 9B) and the ModRM byte (only mod==3
 * vs memory matters for the memory forms). */
int x87_decode_raw(uint8_t opcode, uint8_t modrm, struct x87_form *out);

/* The checks before an x87 instruction: #NM if CR0.EM or CR0.TS (FWAIT:
 * only if CR0.TS and CR0.MP), then #MF if an unmasked exception is pending
 * and the instruction is a waiting one (all but the FN* forms). FXSAVE/
 * FXRSTOR: #NM if CR0.TS or CR0.EM, #GP(0) if the address is not 16-byte
 * aligned; they never raise #MF. Returns 0 or a vector. */
int x87_check(const struct x87_form *f, uint64_t cr0,
	      const struct fxsave_area *fx);

/* FCMOVcc condition from RFLAGS: pass the result in x87_io.rflags. */
bool x87_fcmov_cond(uint8_t cc, uint64_t rflags);

/* The #MF check done before every waiting x87 instruction (all but the FN*
 * forms, FNOP included) and before MMX instructions: FPU_EXC_MF if FSW.ES
 * is set, else 0. (With CR0.NE=0 hardware asserts FERR#/IRQ13 instead; the
 * core may treat both as #MF: Linux always sets NE.) #NM (CR0.TS, CR0.EM)
 * is checked by the core before this. */
int x87_check_pending(const struct fxsave_area *fx);

/* Execute op. sti is the st(i) index (0-7) where the op takes one. Returns
 * 0, FPU_EXC_MF for a waiting op with an exception pending (x87_check
 * normally caught it), or -EINVAL for an op not run here. x87 exceptions
 * are deferred: an unmasked exception sets FSW.ES and B and is raised as
 * #MF on the next waiting instruction, exactly as hardware does (including
 * the stack-fault and unmasked overflow/underflow responses, and FISTTP,
 * which is SSE3: only accept it if CPUID advertises SSE3). FOP/FIP/FDP are
 * not touched (step 7 above). */
int x87_exec(enum x87_op op, struct fxsave_area *fx, uint8_t sti,
	     struct x87_io *io);

/* Environment / state images. op16 selects the 16-bit layouts (14/94
 * bytes) over the 32-bit ones (28/108 bytes); real selects the real-mode /
 * virtual-8086 layout (FIP/FDP as 20-bit linear addresses with FOP) over the
 * protected-mode one (offset + selector; selectors written as 0, as on CPUs
 * that deprecate FCS/FDS). In 64-bit mode use op16=false, real=false. */
size_t x87_env_size(bool op16);   /* 14 or 28 */
size_t x87_save_size(bool op16);  /* 94 or 108 */
/* FNSTENV: write the environment, then mask all exceptions (FCW |= 0x3F). */
void x87_fnstenv(struct fxsave_area *fx, uint8_t *buf, bool op16, bool real);
/* FLDENV: load control, status (ES/B as the host recomputes them), tags,
 * FIP/FDP/FOP. */
void x87_fldenv(struct fxsave_area *fx, const uint8_t *buf, bool op16,
		bool real);
/* FNSAVE: environment + ST0-7 (80 bits each), then FNINIT. */
void x87_fnsave(struct fxsave_area *fx, uint8_t *buf, bool op16, bool real);
/* FRSTOR */
void x87_frstor(struct fxsave_area *fx, const uint8_t *buf, bool op16,
		bool real);

/* FXSAVE / FXRSTOR images (512 bytes, 16-byte aligned: #GP(0) otherwise,
 * the core's check). rex_w selects the 64-bit FIP/FDP layout; without it,
 * FIP/FDP are stored as 32-bit offsets with FCS/FDS 0. Bytes 288-415 (XMM8-
 * 15) are only written/read when xmm16 (64-bit mode); bytes 464-511 are
 * never written (software-available). FXSAVE writes the abridged tag word.
 * fxrstor returns FPU_EXC_GP (and loads nothing) if MXCSR sets reserved
 * bits. */
void fpu_fxsave(const struct fxsave_area *fx, uint8_t img[512], bool rex_w,
		bool xmm16);
int fpu_fxrstor(struct fxsave_area *fx, const uint8_t img[512], bool rex_w,
		bool xmm16);

/* Tag word conversion. The full tag word has 2 bits per physical register
 * (00 valid, 01 zero, 10 special, 11 empty); the abridged one 1 bit (1 =
 * not empty). */
uint8_t fpu_ftw_abridge(uint16_t full);
uint16_t fpu_ftw_full(const struct fxsave_area *fx);

/* Reset state: FNINIT (FCW 0x37F, FSW 0, tags empty, FIP/FDP/FOP 0) and,
 * for RESET/INIT, MXCSR 0x1F80 and XMM zero (fpu_reset). */
void fpu_reset(struct fxsave_area *fx);

#endif
