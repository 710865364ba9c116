/* x87 operations on the guest's FXSAVE image, executed by the host's x87.
 *
 * Each operation: build a 108-byte FNSAVE image (32-bit protected-mode
 * layout, what FRSTOR/FNSAVE use in 64-bit mode) from the guest state, then
 * in one asm block: save the host FCW, FRSTOR the guest state, run the one
 * instruction, FNSAVE the result, restore the host FCW. FNSAVE is a no-wait
 * instruction and reinitialises the FPU, so an unmasked exception the
 * instruction raised stays pending in the saved FSW (ES, B) and never
 * reaches the host: the guest sees it as #MF on its next waiting
 * instruction, as on hardware, with hardware's exact masked and unmasked
 * responses. Register-stack forms are encoded with .byte to sidestep the
 * AT&T fsub/fsubr operand-order trap. */
#include <errno.h>
#include <string.h>

#include "engine/soft/fpu/fpu.h"
#include "engine/soft/fpu/x87_img.h"

#define UNP(...) __VA_ARGS__
/* body runs between FRSTOR and FNSAVE; OUTS/INS are parenthesised operand
 * lists starting with a comma, or (). */
#define RUN(body, OUTS, INS)                                                   \
	__asm__ volatile("fnstcw %[hcw]\n\tfrstor %[img]\n\t" body              \
			 "\n\tfnsave %[img]\n\tfldcw %[hcw]"                    \
			 : [img] "+m"(img), [hcw] "=m"(hcw) UNP OUTS            \
			 : [zero_] "i"(0) UNP INS                               \
			 : "cc", "memory")

#define STI_CASE(n, prefix, suffix, OUTS, INS) \
	case n:                                \
		RUN(prefix "+" #n suffix, OUTS, INS); \
		break;
/* prefix ends in ".byte 0xNN, 0xMM": the st(i) index is added to the last
 * byte; suffix follows the instruction. */
#define RUN_STI2(i, prefix, suffix, OUTS, INS)                   \
	switch ((i) & 7) {                                       \
		STI_CASE(0, prefix, suffix, OUTS, INS)           \
		STI_CASE(1, prefix, suffix, OUTS, INS)           \
		STI_CASE(2, prefix, suffix, OUTS, INS)           \
		STI_CASE(3, prefix, suffix, OUTS, INS)           \
		STI_CASE(4, prefix, suffix, OUTS, INS)           \
		STI_CASE(5, prefix, suffix, OUTS, INS)           \
		STI_CASE(6, prefix, suffix, OUTS, INS)           \
		STI_CASE(7, prefix, suffix, OUTS, INS)           \
	}
#define RUN_STI(i, prefix, OUTS, INS) RUN_STI2(i, prefix, "", OUTS, INS)

/* FCOMI & co.: seed OF (add overflow) and SF ZF AF PF CF (SAHF) with the
 * guest's, run, read them back (LAHF, SETO): whatever the host does to
 * EFLAGS, including leaving them alone, is what the guest gets. */
#define FCOMI_PRE "movw %w[seed], %%ax\n\taddb $0x7f, %%al\n\tsahf\n\t"
#define FCOMI_POST "\n\tlahf\n\tseto %%al"
#define FCOMI(name, bytes)                                                     \
	case X87_##name:                                                       \
		RUN_STI2(sti, FCOMI_PRE ".byte " bytes, FCOMI_POST,             \
			 (, "=&a"(fl_ax)), (, [seed] "r"(seed)));   \
		break;

#define STI(name, bytes)                                 \
	case X87_##name:                                 \
		RUN_STI(sti, ".byte " bytes, (), ());    \
		break;
#define NOARG(name, bytes)                               \
	case X87_##name:                                 \
		RUN(".byte " bytes, (), ());             \
		break;
#define MEMIN(name, insn, type)                                         \
	case X87_##name: {                                              \
		type v_;                                                \
		memcpy(&v_, io->mem, sizeof(v_));                        \
		RUN(insn " %[v]", (), (, [v] "m"(v_)));                 \
		break;                                                  \
	}
#define MEMOUT(name, insn, type)                                        \
	case X87_##name: {                                              \
		type v_;                                                \
		memset(&v_, 0, sizeof(v_));                             \
		RUN(insn " %[v]", (, [v] "=m"(v_)), ());                \
		memcpy(io->mem, &v_, sizeof(v_));                        \
		stored = true;                                          \
		break;                                                  \
	}

struct m80 {
	uint8_t b[10];
};

static const struct x87_info info_table[X87_OP_COUNT] = {
	[X87_FLD_M32] = { 4, true, false, false, false, false, false },
	[X87_FLD_M64] = { 8, true, false, false, false, false, false },
	[X87_FLD_M80] = { 10, true, false, false, false, false, false },
	[X87_FLD_STi] = { 0, false, false, true, false, false, false },
	[X87_FILD_I16] = { 2, true, false, false, false, false, false },
	[X87_FILD_I32] = { 4, true, false, false, false, false, false },
	[X87_FILD_I64] = { 8, true, false, false, false, false, false },
	[X87_FBLD_BCD] = { 10, true, false, false, false, false, false },
	[X87_FST_M32] = { 4, false, true, false, false, false, false },
	[X87_FST_M64] = { 8, false, true, false, false, false, false },
	[X87_FSTP_M32] = { 4, false, true, false, false, false, false },
	[X87_FSTP_M64] = { 8, false, true, false, false, false, false },
	[X87_FSTP_M80] = { 10, false, true, false, false, false, false },
	[X87_FST_STi] = { 0, false, false, true, false, false, false },
	[X87_FSTP_STi] = { 0, false, false, true, false, false, false },
	[X87_FIST_I16] = { 2, false, true, false, false, false, false },
	[X87_FIST_I32] = { 4, false, true, false, false, false, false },
	[X87_FISTP_I16] = { 2, false, true, false, false, false, false },
	[X87_FISTP_I32] = { 4, false, true, false, false, false, false },
	[X87_FISTP_I64] = { 8, false, true, false, false, false, false },
	[X87_FISTTP_I16] = { 2, false, true, false, false, false, false },
	[X87_FISTTP_I32] = { 4, false, true, false, false, false, false },
	[X87_FISTTP_I64] = { 8, false, true, false, false, false, false },
	[X87_FBSTP_BCD] = { 10, false, true, false, false, false, false },
#define ARITH_INFO(n)                                                        \
	[X87_##n##_STi] = { 0, false, false, true, false, false, false },    \
	[X87_##n##_TOSTi] = { 0, false, false, true, false, false, false },  \
	[X87_##n##P] = { 0, false, false, true, false, false, false },       \
	[X87_##n##_M32] = { 4, true, false, false, false, false, false },    \
	[X87_##n##_M64] = { 8, true, false, false, false, false, false },
	ARITH_INFO(FADD) ARITH_INFO(FSUB) ARITH_INFO(FSUBR) ARITH_INFO(FMUL)
	ARITH_INFO(FDIV) ARITH_INFO(FDIVR)
#undef ARITH_INFO
	[X87_FIADD_I16] = { 2, true, false, false, false, false, false },
	[X87_FIADD_I32] = { 4, true, false, false, false, false, false },
	[X87_FISUB_I16] = { 2, true, false, false, false, false, false },
	[X87_FISUB_I32] = { 4, true, false, false, false, false, false },
	[X87_FISUBR_I16] = { 2, true, false, false, false, false, false },
	[X87_FISUBR_I32] = { 4, true, false, false, false, false, false },
	[X87_FIMUL_I16] = { 2, true, false, false, false, false, false },
	[X87_FIMUL_I32] = { 4, true, false, false, false, false, false },
	[X87_FIDIV_I16] = { 2, true, false, false, false, false, false },
	[X87_FIDIV_I32] = { 4, true, false, false, false, false, false },
	[X87_FIDIVR_I16] = { 2, true, false, false, false, false, false },
	[X87_FIDIVR_I32] = { 4, true, false, false, false, false, false },
	[X87_FCOM_STi] = { 0, false, false, true, false, false, false },
	[X87_FCOMP_STi] = { 0, false, false, true, false, false, false },
	[X87_FCOM_M32] = { 4, true, false, false, false, false, false },
	[X87_FCOM_M64] = { 8, true, false, false, false, false, false },
	[X87_FCOMP_M32] = { 4, true, false, false, false, false, false },
	[X87_FCOMP_M64] = { 8, true, false, false, false, false, false },
	[X87_FICOM_I16] = { 2, true, false, false, false, false, false },
	[X87_FICOM_I32] = { 4, true, false, false, false, false, false },
	[X87_FICOMP_I16] = { 2, true, false, false, false, false, false },
	[X87_FICOMP_I32] = { 4, true, false, false, false, false, false },
	[X87_FUCOM_STi] = { 0, false, false, true, false, false, false },
	[X87_FUCOMP_STi] = { 0, false, false, true, false, false, false },
	[X87_FCOMI_STi] = { 0, false, false, true, false, false, true },
	[X87_FCOMIP_STi] = { 0, false, false, true, false, false, true },
	[X87_FUCOMI_STi] = { 0, false, false, true, false, false, true },
	[X87_FUCOMIP_STi] = { 0, false, false, true, false, false, true },
	[X87_FXCH_STi] = { 0, false, false, true, false, false, false },
	[X87_FFREE_STi] = { 0, false, false, true, false, false, false },
	[X87_FFREEP_STi] = { 0, false, false, true, false, false, false },
	[X87_FCMOV_STi] = { 0, false, false, true, false, false, false },
	[X87_FNINIT] = { 0, false, false, false, true, true, false },
	[X87_FNCLEX] = { 0, false, false, false, true, true, false },
	[X87_FLDCW] = { 2, true, false, false, true, false, false },
	[X87_FNSTCW] = { 2, false, true, false, true, true, false },
	[X87_FNSTSW] = { 2, false, true, false, true, true, false },
	[X87_FNSTSW_AX] = { 0, false, false, false, true, true, false },
	[X87_FWAIT] = { 0, false, false, false, true, false, false },
	[X87_FCOM2_STi] = { 0, false, false, true, false, false, false },
	[X87_FCOMP3_STi] = { 0, false, false, true, false, false, false },
	[X87_FXCH4_STi] = { 0, false, false, true, false, false, false },
	[X87_FCOMP5_STi] = { 0, false, false, true, false, false, false },
	[X87_FXCH7_STi] = { 0, false, false, true, false, false, false },
	[X87_FSTP1_STi] = { 0, false, false, true, false, false, false },
	[X87_FSTP8_STi] = { 0, false, false, true, false, false, false },
	[X87_FSTP9_STi] = { 0, false, false, true, false, false, false },
	[X87_FNENI] = { 0, false, false, false, true, true, false },
	[X87_FNDISI] = { 0, false, false, false, true, true, false },
	[X87_FNSETPM] = { 0, false, false, false, true, true, false },
	[X87_FLDENV] = { 0, true, false, false, true, false, false },
	[X87_FNSTENV] = { 0, false, true, false, true, true, false },
	[X87_FRSTOR] = { 0, true, false, false, true, false, false },
	[X87_FNSAVE] = { 0, false, true, false, true, true, false },
};

static const char *const op_names[X87_OP_COUNT] = {
#define X87_NAME(n) [X87_##n] = #n,
	X87_OP_LIST(X87_NAME)
#undef X87_NAME
};

const char *x87_op_name(enum x87_op op)
{
	if (op <= X87_OP_INVALID || op >= X87_OP_COUNT)
		return "?";
	return op_names[op];
}

const struct x87_info *x87_op_info(enum x87_op op)
{
	static const struct x87_info none;
	if (op <= X87_OP_INVALID || op >= X87_OP_COUNT)
		return &none;
	return &info_table[op];
}

/* Hardware derives ES (and B) from the flags and masks whenever it loads
 * a state (FRSTOR, FLDENV, FXRSTOR): do the same rather than trust a
 * stored ES bit from elsewhere (a snapshot, the other engine), which would
 * otherwise let the host trap inside x87_exec. */
static uint16_t effective_fsw(const struct fxsave_area *fx)
{
	bool pending = fx->fsw & ~fx->fcw & 0x3F;
	return (uint16_t)((fx->fsw & ~(FSW_ES | FSW_B)) |
			  (pending ? FSW_ES | FSW_B : 0));
}

int x87_check_pending(const struct fxsave_area *fx)
{
	return (effective_fsw(fx) & FSW_ES) ? FPU_EXC_MF : 0;
}

int x87_exec(enum x87_op op, struct fxsave_area *fx, uint8_t sti,
	     struct x87_io *io)
{
	if (op <= X87_OP_INVALID || op >= X87_OP_COUNT)
		return -EINVAL;
	const struct x87_info *inf = &info_table[op];
	if (!inf->no_wait && x87_check_pending(fx))
		return FPU_EXC_MF;
	fx->fsw = effective_fsw(fx);
	io->store = false;

	/* Control ops that need no arithmetic. */
	switch (op) {
	case X87_FNINIT:
		x87_fninit(fx); /* FOP/FIP/FDP cleared too */
		return 0;
	case X87_FNSTCW:
		memcpy(io->mem, &fx->fcw, 2);
		io->store = true;
		return 0;
	case X87_FNSTSW: {
		uint16_t sw = effective_fsw(fx);
		memcpy(io->mem, &sw, 2);
		io->store = true;
		return 0;
	}
	case X87_FNSTSW_AX:
		io->ax = effective_fsw(fx);
		return 0;
	case X87_FWAIT:
		return 0;
	default:
		break;
	}

	struct fsave32 img;
	uint16_t hcw;
	bool stored = false;
	uint16_t fl_ax = 0;
	/* AH = SF ZF AF PF CF for SAHF, AL = 1 to make OF=1 after +0x7f */
	uint16_t seed = (uint16_t)((io->rflags & 0xD5) << 8 |
				   ((io->rflags & RFLAGS_OF) ? 1 : 0));
	x87_img_from_fx(fx, &img);

	switch (op) {
	MEMIN(FLD_M32, "flds", uint32_t)
	MEMIN(FLD_M64, "fldl", uint64_t)
	MEMIN(FLD_M80, "fldt", struct m80)
	STI(FLD_STi, "0xD9, 0xC0")
	MEMIN(FILD_I16, "filds", uint16_t)
	MEMIN(FILD_I32, "fildl", uint32_t)
	MEMIN(FILD_I64, "fildll", uint64_t)
	MEMIN(FBLD_BCD, "fbld", struct m80)
	NOARG(FLD1, "0xD9, 0xE8")
	NOARG(FLDL2T, "0xD9, 0xE9")
	NOARG(FLDL2E, "0xD9, 0xEA")
	NOARG(FLDPI, "0xD9, 0xEB")
	NOARG(FLDLG2, "0xD9, 0xEC")
	NOARG(FLDLN2, "0xD9, 0xED")
	NOARG(FLDZ, "0xD9, 0xEE")

	MEMOUT(FST_M32, "fsts", uint32_t)
	MEMOUT(FST_M64, "fstl", uint64_t)
	MEMOUT(FSTP_M32, "fstps", uint32_t)
	MEMOUT(FSTP_M64, "fstpl", uint64_t)
	MEMOUT(FSTP_M80, "fstpt", struct m80)
	STI(FST_STi, "0xDD, 0xD0")
	STI(FSTP_STi, "0xDD, 0xD8")
	MEMOUT(FIST_I16, "fists", uint16_t)
	MEMOUT(FIST_I32, "fistl", uint32_t)
	MEMOUT(FISTP_I16, "fistps", uint16_t)
	MEMOUT(FISTP_I32, "fistpl", uint32_t)
	MEMOUT(FISTP_I64, "fistpll", uint64_t)
	MEMOUT(FISTTP_I16, "fisttps", uint16_t)
	MEMOUT(FISTTP_I32, "fisttpl", uint32_t)
	MEMOUT(FISTTP_I64, "fisttpll", uint64_t)
	MEMOUT(FBSTP_BCD, "fbstp", struct m80)

	/* Intel opcode map: D8 /r st0 op= sti; DC: sti op= st0 with the
	 * SUB/SUBR and DIV/DIVR rows swapped; DE: same as DC, then pop. */
	STI(FADD_STi, "0xD8, 0xC0")
	STI(FADD_TOSTi, "0xDC, 0xC0")
	STI(FADDP, "0xDE, 0xC0")
	MEMIN(FADD_M32, "fadds", uint32_t)
	MEMIN(FADD_M64, "faddl", uint64_t)
	MEMIN(FIADD_I16, "fiadds", uint16_t)
	MEMIN(FIADD_I32, "fiaddl", uint32_t)
	STI(FMUL_STi, "0xD8, 0xC8")
	STI(FMUL_TOSTi, "0xDC, 0xC8")
	STI(FMULP, "0xDE, 0xC8")
	MEMIN(FMUL_M32, "fmuls", uint32_t)
	MEMIN(FMUL_M64, "fmull", uint64_t)
	MEMIN(FIMUL_I16, "fimuls", uint16_t)
	MEMIN(FIMUL_I32, "fimull", uint32_t)
	STI(FSUB_STi, "0xD8, 0xE0")
	STI(FSUB_TOSTi, "0xDC, 0xE8")
	STI(FSUBP, "0xDE, 0xE8")
	MEMIN(FSUB_M32, "fsubs", uint32_t)
	MEMIN(FSUB_M64, "fsubl", uint64_t)
	MEMIN(FISUB_I16, "fisubs", uint16_t)
	MEMIN(FISUB_I32, "fisubl", uint32_t)
	STI(FSUBR_STi, "0xD8, 0xE8")
	STI(FSUBR_TOSTi, "0xDC, 0xE0")
	STI(FSUBRP, "0xDE, 0xE0")
	MEMIN(FSUBR_M32, "fsubrs", uint32_t)
	MEMIN(FSUBR_M64, "fsubrl", uint64_t)
	MEMIN(FISUBR_I16, "fisubrs", uint16_t)
	MEMIN(FISUBR_I32, "fisubrl", uint32_t)
	STI(FDIV_STi, "0xD8, 0xF0")
	STI(FDIV_TOSTi, "0xDC, 0xF8")
	STI(FDIVP, "0xDE, 0xF8")
	MEMIN(FDIV_M32, "fdivs", uint32_t)
	MEMIN(FDIV_M64, "fdivl", uint64_t)
	MEMIN(FIDIV_I16, "fidivs", uint16_t)
	MEMIN(FIDIV_I32, "fidivl", uint32_t)
	STI(FDIVR_STi, "0xD8, 0xF8")
	STI(FDIVR_TOSTi, "0xDC, 0xF0")
	STI(FDIVRP, "0xDE, 0xF0")
	MEMIN(FDIVR_M32, "fdivrs", uint32_t)
	MEMIN(FDIVR_M64, "fdivrl", uint64_t)
	MEMIN(FIDIVR_I16, "fidivrs", uint16_t)
	MEMIN(FIDIVR_I32, "fidivrl", uint32_t)

	NOARG(FCHS, "0xD9, 0xE0")
	NOARG(FABS, "0xD9, 0xE1")
	NOARG(FTST, "0xD9, 0xE4")
	NOARG(FXAM, "0xD9, 0xE5")
	NOARG(F2XM1, "0xD9, 0xF0")
	NOARG(FYL2X, "0xD9, 0xF1")
	NOARG(FPTAN, "0xD9, 0xF2")
	NOARG(FPATAN, "0xD9, 0xF3")
	NOARG(FXTRACT, "0xD9, 0xF4")
	NOARG(FPREM1, "0xD9, 0xF5")
	NOARG(FDECSTP, "0xD9, 0xF6")
	NOARG(FINCSTP, "0xD9, 0xF7")
	NOARG(FPREM, "0xD9, 0xF8")
	NOARG(FYL2XP1, "0xD9, 0xF9")
	NOARG(FSQRT, "0xD9, 0xFA")
	NOARG(FSINCOS, "0xD9, 0xFB")
	NOARG(FRNDINT, "0xD9, 0xFC")
	NOARG(FSCALE, "0xD9, 0xFD")
	NOARG(FSIN, "0xD9, 0xFE")
	NOARG(FCOS, "0xD9, 0xFF")
	NOARG(FNOP, "0xD9, 0xD0")
	NOARG(FNCLEX, "0xDB, 0xE2")
	NOARG(FCOMPP, "0xDE, 0xD9")
	NOARG(FUCOMPP, "0xDA, 0xE9")

	STI(FCOM_STi, "0xD8, 0xD0")
	STI(FCOMP_STi, "0xD8, 0xD8")
	MEMIN(FCOM_M32, "fcoms", uint32_t)
	MEMIN(FCOM_M64, "fcoml", uint64_t)
	MEMIN(FCOMP_M32, "fcomps", uint32_t)
	MEMIN(FCOMP_M64, "fcompl", uint64_t)
	MEMIN(FICOM_I16, "ficoms", uint16_t)
	MEMIN(FICOM_I32, "ficoml", uint32_t)
	MEMIN(FICOMP_I16, "ficomps", uint16_t)
	MEMIN(FICOMP_I32, "ficompl", uint32_t)
	STI(FUCOM_STi, "0xDD, 0xE0")
	STI(FUCOMP_STi, "0xDD, 0xE8")
	STI(FXCH_STi, "0xD9, 0xC8")
	STI(FCOM2_STi, "0xDC, 0xD0")
	STI(FCOMP3_STi, "0xDC, 0xD8")
	STI(FXCH4_STi, "0xDD, 0xC8")
	STI(FCOMP5_STi, "0xDE, 0xD0")
	STI(FXCH7_STi, "0xDF, 0xC8")
	STI(FSTP1_STi, "0xD9, 0xD8")
	STI(FSTP8_STi, "0xDF, 0xD0")
	STI(FSTP9_STi, "0xDF, 0xD8")
	NOARG(FNENI, "0xDB, 0xE0")
	NOARG(FNDISI, "0xDB, 0xE1")
	NOARG(FNSETPM, "0xDB, 0xE4")
	STI(FFREE_STi, "0xDD, 0xC0")
	STI(FFREEP_STi, "0xDF, 0xC0")

	FCOMI(FCOMI_STi, "0xDB, 0xF0")
	FCOMI(FCOMIP_STi, "0xDF, 0xF0")
	FCOMI(FUCOMI_STi, "0xDB, 0xE8")
	FCOMI(FUCOMIP_STi, "0xDF, 0xE8")
	case X87_FCMOV_STi: {
		/* FCMOVNE moves when ZF=0: set ZF = !condition. */
		uint32_t cond = io->rflags != 0;
		RUN_STI(sti, "test %k[cond], %k[cond]\n\t.byte 0xDB, 0xC8", (), (, [cond] "r"(cond)));
		break;
	}
	case X87_FLDCW: {
		/* Via the host so FSW.ES/B follow the new masks exactly. */
		uint16_t cw;
		memcpy(&cw, io->mem, 2);
		RUN("fldcw %[cw]", (), (, [cw] "m"(cw)));
		break;
	}
	default:
		return -EINVAL;
	}

	x87_img_to_fx(&img, fx);
	if (inf->eflags) {
		io->rflags &= ~(uint64_t)(RFLAGS_OF | RFLAGS_SF | RFLAGS_AF |
					  RFLAGS_ZF | RFLAGS_PF | RFLAGS_CF);
		io->rflags |= (fl_ax >> 8) & 0xD5;
		if (fl_ax & 1)
			io->rflags |= RFLAGS_OF;
	}
	if (stored) {
		/* ES was clear before (checked above), so any unmasked flag
		 * now set was raised by this instruction; all but PE suppress
		 * the store. */
		uint16_t unmasked = fx->fsw & ~fx->fcw & 0x1F;
		io->store = unmasked == 0;
	}
	return 0;
}
