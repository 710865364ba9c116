/* x87 state plumbing: the host FNSAVE image, tag words, the guest-visible
 * environment / save / FXSAVE layouts, MMX aliasing, and x87_decode. */
#include <errno.h>
#include <string.h>

#include "engine/soft/fpu/fpu.h"
#include "engine/soft/fpu/x87_img.h"

static unsigned top_of(uint16_t fsw)
{
	return (fsw & FSW_TOP) >> FSW_TOP_SHIFT;
}

/* Tag of one 80-bit value (SDM vol. 1, 8.1.7). */
static unsigned classify(const uint8_t *v)
{
	uint64_t mant;
	uint16_t se;
	memcpy(&mant, v, 8);
	memcpy(&se, v + 8, 2);
	unsigned exp = se & 0x7FFF;
	if (exp == 0x7FFF)
		return 2;
	if (exp == 0)
		return mant == 0 ? 1 : 2;
	return (mant >> 63) ? 0 : 2; /* unnormal: special */
}

uint8_t fpu_ftw_abridge(uint16_t full)
{
	uint8_t t = 0;
	for (unsigned r = 0; r < 8; r++)
		if (((full >> (2 * r)) & 3) != 3)
			t |= (uint8_t)(1u << r);
	return t;
}

uint16_t fpu_ftw_full(const struct fxsave_area *fx)
{
	unsigned top = top_of(fx->fsw);
	uint16_t full = 0;
	for (unsigned r = 0; r < 8; r++) {
		unsigned tag = 3;
		if (fx->ftw & (1u << r))
			tag = classify(fx->st[(r - top) & 7]);
		full |= (uint16_t)(tag << (2 * r));
	}
	return full;
}

void x87_img_from_fx(const struct fxsave_area *fx, struct fsave32 *img)
{
	memset(img, 0, sizeof(*img));
	img->fcw = fx->fcw;
	img->fsw = fx->fsw;
	img->ftw = fpu_ftw_full(fx);
	for (unsigned i = 0; i < 8; i++)
		memcpy(img->st[i], fx->st[i], 10);
}

void x87_img_to_fx(const struct fsave32 *img, struct fxsave_area *fx)
{
	fx->fcw = img->fcw;
	fx->fsw = img->fsw;
	fx->ftw = fpu_ftw_abridge(img->ftw);
	for (unsigned i = 0; i < 8; i++) {
		memcpy(fx->st[i], img->st[i], 10);
		memset(fx->st[i] + 10, 0, 6);
	}
}

void x87_img_normalize(struct fsave32 *img)
{
	uint16_t hcw;
	__asm__ volatile("fnstcw %[hcw]\n\tfrstor %[img]\n\tfnsave %[img]\n\t"
			 "fldcw %[hcw]"
			 : [img] "+m"(*img), [hcw] "=m"(hcw)
			 :
			 : "memory");
}

/* Round-trip the guest state through the host so FSW.ES/B follow the
 * loaded control and status words as hardware computes them. */
static void normalize_fx(struct fxsave_area *fx)
{
	struct fsave32 img;
	x87_img_from_fx(fx, &img);
	x87_img_normalize(&img);
	x87_img_to_fx(&img, fx);
}

void fpu_reset(struct fxsave_area *fx)
{
	memset(fx, 0, sizeof(*fx));
	fx->fcw = FCW_DEFAULT;
	fx->mxcsr = MXCSR_DEFAULT;
	fx->mxcsr_mask = MXCSR_MASK_VALUE;
}

/* ---- environment layouts ---- */

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

size_t x87_env_size(bool op16)
{
	return op16 ? 14 : 28;
}

size_t x87_save_size(bool op16)
{
	return op16 ? 94 : 108;
}

static void write_env(const struct fxsave_area *fx, uint16_t fcw,
		      uint16_t fsw, uint16_t ftw, uint8_t *b, bool op16,
		      bool real)
{
	uint32_t fip = (uint32_t)fx->fip, fdp = (uint32_t)fx->fdp;
	uint16_t fop = fx->fop & 0x7FF;
	if (op16) {
		put16(b + 0, fcw);
		put16(b + 2, fsw);
		put16(b + 4, ftw);
		put16(b + 6, (uint16_t)fip);
		put16(b + 10, (uint16_t)fdp);
		if (real) {
			put16(b + 8, (uint16_t)(((fip >> 16) & 0xF) << 12 | fop));
			put16(b + 12, (uint16_t)(((fdp >> 16) & 0xF) << 12));
		} else {
			put16(b + 8, 0);  /* FCS */
			put16(b + 12, 0); /* FDS */
		}
		return;
	}
	/* Reserved upper halves read as ones, as the hardware writes them. */
	put32(b + 0, 0xFFFF0000u | fcw);
	put32(b + 4, 0xFFFF0000u | fsw);
	put32(b + 8, 0xFFFF0000u | ftw);
	if (real) {
		put32(b + 12, 0xFFFF0000u | (fip & 0xFFFF));
		put32(b + 16, ((fip >> 16) & 0xFFFF) << 12 | fop);
		put32(b + 20, 0xFFFF0000u | (fdp & 0xFFFF));
		put32(b + 24, ((fdp >> 16) & 0xFFFF) << 12);
	} else {
		put32(b + 12, fip);
		put32(b + 16, (uint32_t)fop << 16); /* FCS 0 */
		put32(b + 20, fdp);
		put32(b + 24, 0xFFFF0000u);         /* FDS 0 */
	}
}

/* Reads the environment into fx (registers untouched); not normalized. */
static void read_env(struct fxsave_area *fx, const uint8_t *b, bool op16,
		     bool real)
{
	uint16_t ftw;
	/* A new TOP renames the stack: the physical registers keep their
	 * contents, so rotate the stack-ordered st[] before taking FSW. */
	x87_set_top(fx, (get16(b + (op16 ? 2 : 4)) & FSW_TOP) >> FSW_TOP_SHIFT);
	if (op16) {
		fx->fcw = get16(b + 0);
		fx->fsw = get16(b + 2);
		ftw = get16(b + 4);
		uint32_t fip = get16(b + 6), fdp = get16(b + 10);
		if (real) {
			uint16_t w = get16(b + 8);
			fip |= (uint32_t)(w >> 12) << 16;
			fx->fop = w & 0x7FF;
			fdp |= (uint32_t)(get16(b + 12) >> 12) << 16;
		}
		fx->fip = fip;
		fx->fdp = fdp;
	} else {
		fx->fcw = get16(b + 0);
		fx->fsw = get16(b + 4);
		ftw = get16(b + 8);
		if (real) {
			uint32_t w = get32(b + 16);
			fx->fip = (get32(b + 12) & 0xFFFF) | ((w >> 12) & 0xFFFF) << 16;
			fx->fop = w & 0x7FF;
			fx->fdp = (get32(b + 20) & 0xFFFF) |
				  ((get32(b + 24) >> 12) & 0xFFFF) << 16;
		} else {
			fx->fip = get32(b + 12);
			fx->fop = (get32(b + 16) >> 16) & 0x7FF;
			fx->fdp = get32(b + 20);
		}
	}
	/* Only empty / non-empty survives a load; the rest is recomputed. */
	fx->ftw = fpu_ftw_abridge(ftw);
}

void x87_fnstenv(struct fxsave_area *fx, uint8_t *buf, bool op16, bool real)
{
	write_env(fx, fx->fcw, fx->fsw, fpu_ftw_full(fx), buf, op16, real);
	fx->fcw |= 0x3F;
	normalize_fx(fx);
}

void x87_fldenv(struct fxsave_area *fx, const uint8_t *buf, bool op16,
		bool real)
{
	read_env(fx, buf, op16, real);
	normalize_fx(fx);
}

void x87_fnsave(struct fxsave_area *fx, uint8_t *buf, bool op16, bool real)
{
	size_t off = x87_env_size(op16);
	write_env(fx, fx->fcw, fx->fsw, fpu_ftw_full(fx), buf, op16, real);
	for (unsigned i = 0; i < 8; i++)
		memcpy(buf + off + 10 * i, fx->st[i], 10);
	x87_fninit(fx);
}

void x87_frstor(struct fxsave_area *fx, const uint8_t *buf, bool op16,
		bool real)
{
	size_t off = x87_env_size(op16);
	read_env(fx, buf, op16, real);
	for (unsigned i = 0; i < 8; i++) {
		memcpy(fx->st[i], buf + off + 10 * i, 10);
		memset(fx->st[i] + 10, 0, 6);
	}
	normalize_fx(fx);
}

/* ---- FXSAVE / FXRSTOR ---- */

void fpu_fxsave(const struct fxsave_area *fx, uint8_t img[512], bool rex_w,
		bool xmm16)
{
	put16(img + 0, fx->fcw);
	put16(img + 2, fx->fsw);
	img[4] = fx->ftw;
	img[5] = 0;
	put16(img + 6, fx->fop & 0x7FF);
	if (rex_w) {
		memcpy(img + 8, &fx->fip, 8);
		memcpy(img + 16, &fx->fdp, 8);
	} else {
		put32(img + 8, (uint32_t)fx->fip);
		put32(img + 12, 0); /* FCS, reserved */
		put32(img + 16, (uint32_t)fx->fdp);
		put32(img + 20, 0); /* FDS, reserved */
	}
	put32(img + 24, fx->mxcsr);
	put32(img + 28, MXCSR_MASK_VALUE);
	for (unsigned i = 0; i < 8; i++) {
		memcpy(img + 32 + 16 * i, fx->st[i], 10);
		memset(img + 42 + 16 * i, 0, 6);
	}
	memcpy(img + 160, fx->xmm, (xmm16 ? 16 : 8) * 16);
}

int fpu_fxrstor(struct fxsave_area *fx, const uint8_t img[512], bool rex_w,
		bool xmm16)
{
	uint32_t mxcsr = get32(img + 24);
	if (mxcsr & ~MXCSR_MASK_VALUE)
		return FPU_EXC_GP;
	fx->fcw = get16(img + 0);
	fx->fsw = get16(img + 2);
	fx->ftw = img[4];
	fx->fop = get16(img + 6) & 0x7FF;
	if (rex_w) {
		memcpy(&fx->fip, img + 8, 8);
		memcpy(&fx->fdp, img + 16, 8);
	} else {
		fx->fip = get32(img + 8);
		fx->fdp = get32(img + 16);
	}
	fx->mxcsr = mxcsr;
	fx->mxcsr_mask = MXCSR_MASK_VALUE;
	for (unsigned i = 0; i < 8; i++) {
		memcpy(fx->st[i], img + 32 + 16 * i, 10);
		memset(fx->st[i] + 10, 0, 6);
	}
	memcpy(fx->xmm, img + 160, (xmm16 ? 16 : 8) * 16);
	normalize_fx(fx);
	return 0;
}

/* ---- MMX ---- */

/* st[] is in stack order: changing TOP rotates it so that every physical
 * register keeps its contents. */
void x87_set_top(struct fxsave_area *fx, unsigned top)
{
	unsigned old = top_of(fx->fsw);
	top &= 7;
	if (old != top) {
		uint8_t phys[8][16];
		for (unsigned k = 0; k < 8; k++)
			memcpy(phys[(k + old) & 7], fx->st[k], 16);
		for (unsigned k = 0; k < 8; k++)
			memcpy(fx->st[k], phys[(k + top) & 7], 16);
	}
	fx->fsw = (uint16_t)((fx->fsw & ~FSW_TOP) | (top << FSW_TOP_SHIFT));
}

void x87_fninit(struct fxsave_area *fx)
{
	x87_set_top(fx, 0);
	fx->fcw = FCW_DEFAULT;
	fx->fsw = 0;
	fx->ftw = 0;
	fx->fop = 0;
	fx->fip = 0;
	fx->fdp = 0;
}

void fpu_mmx_enter(struct fxsave_area *fx)
{
	x87_set_top(fx, 0);
	fx->ftw = 0xFF;
}

uint64_t fpu_mmx_read(const struct fxsave_area *fx, unsigned i)
{
	uint64_t v;
	memcpy(&v, fx->st[(i - top_of(fx->fsw)) & 7], 8);
	return v;
}

void fpu_mmx_write(struct fxsave_area *fx, unsigned i, uint64_t v)
{
	uint8_t *r = fx->st[(i - top_of(fx->fsw)) & 7];
	memcpy(r, &v, 8);
	r[8] = 0xFF;
	r[9] = 0xFF;
}

void fpu_emms(struct fxsave_area *fx)
{
	fx->ftw = 0;
}

/* ---- decode ---- */

#define O(n) X87_##n
static const uint8_t mem_ops[8][8] = {
	{ O(FADD_M32), O(FMUL_M32), O(FCOM_M32), O(FCOMP_M32), O(FSUB_M32),
	  O(FSUBR_M32), O(FDIV_M32), O(FDIVR_M32) },
	{ O(FLD_M32), 0, O(FST_M32), O(FSTP_M32), O(FLDENV), O(FLDCW),
	  O(FNSTENV), O(FNSTCW) },
	{ O(FIADD_I32), O(FIMUL_I32), O(FICOM_I32), O(FICOMP_I32),
	  O(FISUB_I32), O(FISUBR_I32), O(FIDIV_I32), O(FIDIVR_I32) },
	{ O(FILD_I32), O(FISTTP_I32), O(FIST_I32), O(FISTP_I32), 0,
	  O(FLD_M80), 0, O(FSTP_M80) },
	{ O(FADD_M64), O(FMUL_M64), O(FCOM_M64), O(FCOMP_M64), O(FSUB_M64),
	  O(FSUBR_M64), O(FDIV_M64), O(FDIVR_M64) },
	{ O(FLD_M64), O(FISTTP_I64), O(FST_M64), O(FSTP_M64), O(FRSTOR), 0,
	  O(FNSAVE), O(FNSTSW) },
	{ O(FIADD_I16), O(FIMUL_I16), O(FICOM_I16), O(FICOMP_I16),
	  O(FISUB_I16), O(FISUBR_I16), O(FIDIV_I16), O(FIDIVR_I16) },
	{ O(FILD_I16), O(FISTTP_I16), O(FIST_I16), O(FISTP_I16), O(FBLD_BCD),
	  O(FILD_I64), O(FBSTP_BCD), O(FISTP_I64) },
};

/* Register forms taking st(i) (0 = see reg_fixed / reserved). */
static const uint8_t reg_ops[8][8] = {
	{ O(FADD_STi), O(FMUL_STi), O(FCOM_STi), O(FCOMP_STi), O(FSUB_STi),
	  O(FSUBR_STi), O(FDIV_STi), O(FDIVR_STi) },
	{ O(FLD_STi), O(FXCH_STi), 0, O(FSTP1_STi), 0, 0, 0, 0 },
	{ O(FCMOV_STi), O(FCMOV_STi), O(FCMOV_STi), O(FCMOV_STi), 0, 0, 0, 0 },
	{ O(FCMOV_STi), O(FCMOV_STi), O(FCMOV_STi), O(FCMOV_STi), 0,
	  O(FUCOMI_STi), O(FCOMI_STi), 0 },
	{ O(FADD_TOSTi), O(FMUL_TOSTi), O(FCOM2_STi), O(FCOMP3_STi),
	  O(FSUBR_TOSTi), O(FSUB_TOSTi), O(FDIVR_TOSTi), O(FDIV_TOSTi) },
	{ O(FFREE_STi), O(FXCH4_STi), O(FST_STi), O(FSTP_STi), O(FUCOM_STi),
	  O(FUCOMP_STi), 0, 0 },
	{ O(FADDP), O(FMULP), O(FCOMP5_STi), 0, O(FSUBRP), O(FSUBP), O(FDIVRP),
	  O(FDIVP) },
	{ O(FFREEP_STi), O(FXCH7_STi), O(FSTP8_STi), O(FSTP9_STi), 0,
	  O(FUCOMIP_STi), O(FCOMIP_STi), 0 },
};

static const uint8_t d9_fixed[4][8] = {
	/* D9 E0-E7 */ { O(FCHS), O(FABS), 0, 0, O(FTST), O(FXAM), 0, 0 },
	/* D9 E8-EF */ { O(FLD1), O(FLDL2T), O(FLDL2E), O(FLDPI), O(FLDLG2),
			 O(FLDLN2), O(FLDZ), 0 },
	/* D9 F0-F7 */ { O(F2XM1), O(FYL2X), O(FPTAN), O(FPATAN), O(FXTRACT),
			 O(FPREM1), O(FDECSTP), O(FINCSTP) },
	/* D9 F8-FF */ { O(FPREM), O(FYL2XP1), O(FSQRT), O(FSINCOS),
			 O(FRNDINT), O(FSCALE), O(FSIN), O(FCOS) },
};
#undef O

int x87_decode(const ZydisDecodedInstruction *insn, struct x87_form *out)
{
	memset(out, 0, sizeof(*out));
	if (insn->encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY ||
	    insn->opcode_map != ZYDIS_OPCODE_MAP_DEFAULT)
		return -ENOENT;
	return x87_decode_raw(insn->opcode,
			      (uint8_t)(insn->raw.modrm.mod << 6 | insn->raw.modrm.reg << 3 |
					insn->raw.modrm.rm),
			      out);
}

int x87_decode_raw(uint8_t opcode, uint8_t modrm, struct x87_form *out)
{
	memset(out, 0, sizeof(*out));
	if (opcode == 0x9B) {
		out->op = X87_FWAIT;
		return 0;
	}
	if (opcode < 0xD8 || opcode > 0xDF)
		return -ENOENT;
	unsigned row = opcode - 0xD8u;
	unsigned mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7;
	out->fop = (uint16_t)(row << 8 | mod << 6 | reg << 3 | rm);
	if (mod != 3) {
		static const uint8_t sizes[8][8] = {
			{ 4, 4, 4, 4, 4, 4, 4, 4 }, { 4, 0, 4, 4, 0, 2, 0, 2 },
			{ 4, 4, 4, 4, 4, 4, 4, 4 }, { 4, 4, 4, 4, 0, 10, 0, 10 },
			{ 8, 8, 8, 8, 8, 8, 8, 8 }, { 8, 8, 8, 8, 0, 0, 0, 2 },
			{ 2, 2, 2, 2, 2, 2, 2, 2 }, { 2, 2, 2, 2, 10, 8, 10, 8 },
		};
		out->op = mem_ops[row][reg];
		out->mem_size = sizes[row][reg];
		return out->op ? 0 : -EINVAL;
	}
	out->sti = (uint8_t)rm;
	out->op = reg_ops[row][reg];
	if (out->op == X87_FCMOV_STi)
		out->fcmov_cc = (uint8_t)(reg | (row == 3 ? X87_CC_NOT : 0));
	if (out->op)
		return 0;
	out->sti = 0;
	switch (row) {
	case 1:
		if (reg == 2 && rm == 0)
			out->op = X87_FNOP;
		else if (reg >= 4)
			out->op = d9_fixed[reg - 4][rm];
		break;
	case 2:
		if (reg == 5 && rm == 1)
			out->op = X87_FUCOMPP;
		break;
	case 3:
		if (reg == 4) {
			if (rm == 2)
				out->op = X87_FNCLEX;
			else if (rm == 3)
				out->op = X87_FNINIT;
			else if (rm == 0)
				out->op = X87_FNENI;
			else if (rm == 1)
				out->op = X87_FNDISI;
			else if (rm == 4)
				out->op = X87_FNSETPM;
		}
		break;
	case 6:
		if (reg == 3 && rm == 1)
			out->op = X87_FCOMPP;
		break;
	case 7:
		if (reg == 4 && rm == 0)
			out->op = X87_FNSTSW_AX;
		break;
	default:
		break;
	}
	return out->op ? 0 : -EINVAL;
}

bool x87_fcmov_cond(uint8_t cc, uint64_t rflags)
{
	bool r;
	switch (cc & 3) {
	case X87_CC_B: r = rflags & RFLAGS_CF; break;
	case X87_CC_E: r = rflags & RFLAGS_ZF; break;
	case X87_CC_BE: r = rflags & (RFLAGS_CF | RFLAGS_ZF); break;
	default: r = rflags & RFLAGS_PF; break;
	}
	return (cc & X87_CC_NOT) ? !r : r;
}

int x87_check(const struct x87_form *f, uint64_t cr0,
	      const struct fxsave_area *fx)
{
	if (f->op == X87_FWAIT) {
		if ((cr0 & (CR0_TS | CR0_MP)) == (CR0_TS | CR0_MP))
			return FPU_EXC_NM;
	} else if (cr0 & (CR0_EM | CR0_TS)) {
		return FPU_EXC_NM;
	}
	if (!x87_op_info((enum x87_op)f->op)->no_wait)
		return x87_check_pending(fx);
	return 0;
}

int sse_check(const struct sse_form *f, uint64_t cr0, uint64_t cr4,
	      const struct fxsave_area *fx)
{
	if (f->op == SSE_MOVNTI)
		return 0;
	bool xmm = f->dst_loc == SSE_LOC_XMM || f->src_loc == SSE_LOC_XMM;
	if (cr0 & CR0_EM)
		return FPU_EXC_UD;
	if (xmm && !(cr4 & CR4_OSFXSR))
		return FPU_EXC_UD;
	if (cr0 & CR0_TS)
		return FPU_EXC_NM;
	if (f->flags & SSE_F_MMX)
		return x87_check_pending(fx);
	return 0;
}
