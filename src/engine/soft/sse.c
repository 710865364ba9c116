/* The x87/SSE instructions the core needs before the x87/SSE library is
 * wired in: control/status words, FXSAVE/FXRSTOR, MXCSR, and the SSE moves
 * and XORs that boot code and memcpy use. The library replaces or extends
 * these through soft_register_handler. */
#include <Zydis/Zydis.h>

#include "engine/soft/soft_cpu.h"

#define H(name) static int name(struct soft_cpu *cpu, const struct sinsn *in)

/* #UD/#NM rules shared by x87 and SSE. */
static void check_x87(struct soft_cpu *cpu)
{
	if (cpu->s.cr0 & CR0_EM)
		soft_raise(cpu, 7, 0, false);
	if (cpu->s.cr0 & CR0_TS)
		soft_raise(cpu, 7, 0, false);
}

void soft_check_sse(struct soft_cpu *cpu)
{
	if ((cpu->s.cr0 & CR0_EM) || !(cpu->s.cr4 & CR4_OSFXSR))
		soft_ud(cpu);
	if (cpu->s.cr0 & CR0_TS)
		soft_raise(cpu, 7, 0, false);
}

H(h_fninit)
{
	(void)in;
	check_x87(cpu);
	struct fxsave_area *f = &cpu->s.fx;
	f->fcw = 0x37f;
	f->fsw = 0;
	f->ftw = 0;
	f->fop = 0;
	f->fip = f->fdp = 0;
	return SOFT_NEXT;
}

H(h_fwait)
{
	(void)in;
	if ((cpu->s.cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS))
		soft_raise(cpu, 7, 0, false);
	return SOFT_NEXT;
}

H(h_fnstcw) { check_x87(cpu); wr_op(cpu, in, 0, 2, cpu->s.fx.fcw); return SOFT_NEXT; }
H(h_fldcw) { check_x87(cpu); cpu->s.fx.fcw = (uint16_t)rd_op(cpu, in, 0, 2); return SOFT_NEXT; }
H(h_fnclex) { (void)in; check_x87(cpu); cpu->s.fx.fsw &= 0x7f00; return SOFT_NEXT; }

H(h_fnstsw)
{
	check_x87(cpu);
	if (in->op[0].kind == OP_REG)
		wr_gpr(cpu, RAX, 2, cpu->s.fx.fsw);
	else
		wr_op(cpu, in, 0, 2, cpu->s.fx.fsw);
	return SOFT_NEXT;
}

H(h_fxsave)
{
	check_x87(cpu);
	uint64_t la = ea_lin(cpu, in, 512, true);
	if (la & 15)
		soft_gp(cpu, 0);
	struct fxsave_area img = cpu->s.fx;
	if (in->mnemonic == ZYDIS_MNEMONIC_FXSAVE) {
		/* 32-bit layout: FIP/FDP as offset + selector */
		img.fip = (uint32_t)img.fip | ((uint64_t)cpu->s.seg[SEG_CS].selector << 32);
		img.fdp = (uint32_t)img.fdp | ((uint64_t)cpu->s.seg[SEG_DS].selector << 32);
	}
	img.mxcsr_mask = 0xffff; /* DAZ supported, as the fpu library implements it */
	if (!(cpu->s.cr4 & CR4_OSFXSR))
		memset(img.xmm, 0, sizeof(img.xmm));
	if (!cpu->mode64)
		memset(img.xmm[8], 0, 8 * 16);
	/* the reserved tail is left untouched: write only the first 416 bytes */
	soft_lin_write(cpu, la, &img, 416, ACC_WRITE);
	return SOFT_NEXT;
}

H(h_fxrstor)
{
	check_x87(cpu);
	uint64_t la = ea_lin(cpu, in, 512, false);
	if (la & 15)
		soft_gp(cpu, 0);
	struct fxsave_area img;
	soft_lin_read(cpu, la, &img, 416, ACC_READ);
	if (img.mxcsr & ~0xffffu)
		soft_gp(cpu, 0);
	struct fxsave_area *f = &cpu->s.fx;
	f->fcw = img.fcw;
	f->fsw = img.fsw;
	f->ftw = img.ftw;
	f->fop = img.fop;
	f->fip = img.fip;
	f->fdp = img.fdp;
	memcpy(f->st, img.st, sizeof(f->st));
	if (cpu->s.cr4 & CR4_OSFXSR) {
		f->mxcsr = img.mxcsr;
		memcpy(f->xmm, img.xmm, cpu->mode64 ? 16 * 16 : 8 * 16);
	}
	return SOFT_NEXT;
}

H(h_ldmxcsr)
{
	soft_check_sse(cpu);
	uint32_t v = (uint32_t)rd_op(cpu, in, 0, 4);
	if (v & ~0xffffu)
		soft_gp(cpu, 0);
	cpu->s.fx.mxcsr = v;
	return SOFT_NEXT;
}

H(h_stmxcsr)
{
	soft_check_sse(cpu);
	wr_op(cpu, in, 0, 4, cpu->s.fx.mxcsr);
	return SOFT_NEXT;
}

/* Read operand i as up to 16 bytes (XMM, MMX, GPR or memory). */
void soft_rd_vec(struct soft_cpu *cpu, const struct sinsn *in, int i, uint8_t out[16], unsigned size, bool aligned)
{
	memset(out, 0, 16);
	const struct sop *o = &in->op[i];
	switch (o->kind) {
	case OP_XMM: memcpy(out, cpu->s.fx.xmm[o->reg], size); break;
	case OP_MMX: memcpy(out, cpu->s.fx.st[o->reg], size); break;
	case OP_REG: { uint64_t v = rd_gpr(cpu, o->reg, size); memcpy(out, &v, size); break; }
	case OP_MEM: {
		uint64_t la = ea_lin(cpu, in, size, false);
		if (aligned && (la & 15))
			soft_gp(cpu, 0);
		soft_lin_read(cpu, la, out, size, ACC_READ);
		break;
	}
	default: soft_ud(cpu);
	}
}

/* Write size bytes to operand i; an XMM destination is zero-extended to
 * 128 bits when zext (MOVD/MOVQ), else only size bytes change. */
void soft_wr_vec(struct soft_cpu *cpu, const struct sinsn *in, int i, const uint8_t v[16], unsigned size, bool aligned, bool zext)
{
	const struct sop *o = &in->op[i];
	switch (o->kind) {
	case OP_XMM:
		if (zext)
			memset(cpu->s.fx.xmm[o->reg], 0, 16);
		memcpy(cpu->s.fx.xmm[o->reg], v, size);
		break;
	case OP_MMX:
		memcpy(cpu->s.fx.st[o->reg], v, 8);
		break;
	case OP_REG: { uint64_t x = 0; memcpy(&x, v, size); wr_gpr(cpu, o->reg, size, x); break; }
	case OP_MEM: {
		uint64_t la = ea_lin(cpu, in, size, true);
		if (aligned && (la & 15))
			soft_gp(cpu, 0);
		soft_lin_write(cpu, la, v, size, ACC_WRITE);
		break;
	}
	default: soft_ud(cpu);
	}
}

static void mmx_check(struct soft_cpu *cpu, const struct sinsn *in)
{
	bool mmx = in->op[0].kind == OP_MMX || in->op[1].kind == OP_MMX;
	if (mmx) {
		check_x87(cpu);
		cpu->s.fx.ftw = 0xff; /* MMX use marks all registers valid */
		cpu->s.fx.fsw &= ~0x3800; /* TOP = 0 */
	} else {
		soft_check_sse(cpu);
	}
}

static int mov128(struct soft_cpu *cpu, const struct sinsn *in, bool aligned)
{
	soft_check_sse(cpu);
	uint8_t v[16];
	soft_rd_vec(cpu, in, 1, v, 16, aligned);
	soft_wr_vec(cpu, in, 0, v, 16, aligned, false);
	return SOFT_NEXT;
}
H(h_movaps) { return mov128(cpu, in, true); }
H(h_movups) { return mov128(cpu, in, false); }

H(h_movdq)
{
	/* MOVD/MOVQ: xmm/mm <-> r/m32/64, xmm <-> xmm/m64, mm <-> mm/m64 */
	mmx_check(cpu, in);
	unsigned size = in->op[0].kind == OP_XMM && in->op[1].kind == OP_XMM ? 8 :
			in->op[0].kind == OP_XMM || in->op[0].kind == OP_MMX ? in->op[1].size : in->op[0].size;
	if (size > 8)
		size = 8;
	uint8_t v[16];
	soft_rd_vec(cpu, in, 1, v, size, false);
	soft_wr_vec(cpu, in, 0, v, in->op[0].kind == OP_MEM || in->op[0].kind == OP_REG ? size : (in->op[0].kind == OP_MMX ? 8 : size), false, true);
	return SOFT_NEXT;
}

static int xor_vec(struct soft_cpu *cpu, const struct sinsn *in, bool aligned)
{
	mmx_check(cpu, in);
	unsigned size = in->op[0].kind == OP_MMX ? 8 : 16;
	uint8_t a[16], b[16];
	soft_rd_vec(cpu, in, 0, a, size, false);
	soft_rd_vec(cpu, in, 1, b, size, aligned);
	for (unsigned i = 0; i < size; i++)
		a[i] ^= b[i];
	soft_wr_vec(cpu, in, 0, a, size, false, false);
	return SOFT_NEXT;
}
H(h_pxor) { return xor_vec(cpu, in, in->op[0].kind == OP_XMM); }
H(h_xorps) { return xor_vec(cpu, in, true); }

H(h_emms) { (void)in; check_x87(cpu); cpu->s.fx.ftw = 0; return SOFT_NEXT; }

void soft_sse_handlers(soft_handler *t)
{
#define R(m, f) t[ZYDIS_MNEMONIC_##m] = f
	R(FNINIT, h_fninit); R(FWAIT, h_fwait); R(FNSTCW, h_fnstcw); R(FLDCW, h_fldcw);
	R(FNSTSW, h_fnstsw); R(FNCLEX, h_fnclex);
	R(FXSAVE, h_fxsave); R(FXSAVE64, h_fxsave); R(FXRSTOR, h_fxrstor); R(FXRSTOR64, h_fxrstor);
	R(LDMXCSR, h_ldmxcsr); R(STMXCSR, h_stmxcsr);
	R(MOVAPS, h_movaps); R(MOVAPD, h_movaps); R(MOVDQA, h_movaps);
	R(MOVUPS, h_movups); R(MOVUPD, h_movups); R(MOVDQU, h_movups);
	R(MOVD, h_movdq); R(MOVQ, h_movdq); R(PXOR, h_pxor); R(XORPS, h_xorps); R(XORPD, h_xorps);
	R(EMMS, h_emms);
#undef R
}
