/* Soft-core handlers for x87 / MMX / SSE / SSE2 on top of the fpu library.
 * The core's compact instruction (struct sinsn) keeps the operand kinds,
 * sizes and registers Zydis reported, so the library's forms are rebuilt
 * from it on each execution (a few table lookups; a per-instruction cache
 * slot in sinsn would remove even that). Faults are precise: everything
 * that can fault (memory reads, the alignment check, stores) happens
 * before or instead of committing state. */
#include <string.h>

#include <Zydis/Zydis.h>

#include "engine/soft/fpu/fpu.h"
#include "engine/soft/fpu/soft_glue.h"

#define H(name) static int name(struct soft_cpu *cpu, const struct sinsn *in)

static __attribute__((noreturn)) void raise_vec(struct soft_cpu *cpu, int vec)
{
	soft_raise(cpu, vec, 0, vec == FPU_EXC_GP);
}

/* ---- SSE / SSE2 / MMX data ---- */

/* The library's form from the compact operands. */
static int sse_form_of(const struct sinsn *in, struct sse_form *f)
{
	struct sse_operand ops[3] = { { 0, 0, 0 }, { 0, 0, 0 }, { 0, 0, 0 } };
	unsigned n = in->nops < 3 ? in->nops : 3;
	for (unsigned i = 0; i < n; i++) {
		const struct sop *o = &in->op[i];
		ops[i].reg = o->reg;
		ops[i].size = o->size;
		switch (o->kind) {
		case OP_XMM: ops[i].kind = SSE_OPND_XMM; break;
		case OP_MMX: ops[i].kind = SSE_OPND_MMX; break;
		case OP_REG: ops[i].kind = SSE_OPND_GPR; break;
		case OP_MEM: ops[i].kind = SSE_OPND_MEM; break;
		case OP_IMM: ops[i].kind = SSE_OPND_IMM; break;
		default: return -1;
		}
	}
	return sse_decode_ops(in->mnemonic, n, ops, in->imm, f);
}

static void sse_load(struct soft_cpu *cpu, const struct sinsn *in,
		     const struct sse_form *f, uint8_t loc, uint8_t reg,
		     union xmm *v)
{
	memset(v, 0, sizeof(*v));
	switch (loc) {
	case SSE_LOC_XMM:
		memcpy(v, cpu->s.fx.xmm[reg], 16);
		break;
	case SSE_LOC_MMX:
		v->q[0] = fpu_mmx_read(&cpu->s.fx, reg);
		break;
	case SSE_LOC_GPR:
		v->q[0] = rd_gpr(cpu, reg, f->gpr_size);
		break;
	case SSE_LOC_MEM: {
		uint64_t la = ea_lin(cpu, in, f->mem_size, false);
		if ((f->flags & SSE_F_ALIGN16) && (la & 15))
			soft_gp(cpu, 0);
		soft_lin_read(cpu, la, v, f->mem_size, ACC_READ);
		break;
	}
	default:
		break;
	}
}

/* MASKMOVDQU / MASKMOVQ: byte stores to seg:rDI where the mask says. */
static void maskmov(struct soft_cpu *cpu, const struct sinsn *in,
		    const union xmm *data, const union xmm *mask, unsigned n)
{
	uint16_t m = sse_maskmov_mask(mask);
	uint64_t di = cpu->s.gpr[RDI];
	if (in->asz == 4)
		di = (uint32_t)di;
	else if (in->asz == 2)
		di = (uint16_t)di;
	for (unsigned i = 0; i < n; i++) {
		if (!(m & (1u << i)))
			continue;
		uint64_t off = di + i;
		if (in->asz == 4)
			off = (uint32_t)off;
		else if (in->asz == 2)
			off = (uint16_t)off;
		lin_write(cpu, seg_lin(cpu, in->seg, off, 1, true), 1, data->b[i]);
	}
}

H(h_sse)
{
	struct sse_form f;
	if ((in->pfx & PFX_LOCK) || sse_form_of(in, &f))
		soft_ud(cpu);
	struct fxsave_area *fx = &cpu->s.fx;
	int r = sse_check(&f, cpu->s.cr0, cpu->s.cr4, fx);
	if (r)
		raise_vec(cpu, r);
	union xmm d, s;
	memset(&d, 0, sizeof(d));
	if (f.flags & SSE_F_DST_READ)
		sse_load(cpu, in, &f, f.dst_loc, f.dst_reg, &d);
	sse_load(cpu, in, &f, f.src_loc, f.src_reg, &s);
	if (f.flags & SSE_F_MASKMOV) {
		if (f.flags & SSE_F_MMX)
			fpu_mmx_enter(fx);
		maskmov(cpu, in, &d, &s, (f.flags & SSE_F_MMX) ? 8 : 16);
		return SOFT_NEXT;
	}
	/* A memory destination is written last; the ops with one are moves
	 * that change no other state, so a #PF there leaves nothing behind.
	 * Its alignment is checked before anything changes. */
	uint64_t la = 0;
	if (f.dst_loc == SSE_LOC_MEM) {
		la = ea_lin(cpu, in, f.mem_size, true);
		if ((f.flags & SSE_F_ALIGN16) && (la & 15))
			soft_gp(cpu, 0);
	}
	uint64_t fl = 0;
	if (f.flags & SSE_F_RFLAGS)
		fl = soft_flags(cpu);
	struct fxsave_area saved_x87;
	bool mmx = f.flags & SSE_F_MMX;
	if (mmx && f.dst_loc == SSE_LOC_MEM)
		saved_x87 = *fx; /* the transition waits for the store */
	if (mmx)
		fpu_mmx_enter(fx);
	r = sse_exec((enum sse_op)f.op, fx, &d, &s, f.imm8, cpu->s.cr4, &fl);
	if (r)
		raise_vec(cpu, r);
	if (f.flags & SSE_F_RFLAGS)
		soft_set_arith(cpu, fl);
	if (!(f.flags & SSE_F_DST_WRITE))
		return SOFT_NEXT;
	switch (f.dst_loc) {
	case SSE_LOC_XMM:
		memcpy(fx->xmm[f.dst_reg], &d, 16);
		break;
	case SSE_LOC_MMX:
		fpu_mmx_write(fx, f.dst_reg, d.q[0]);
		break;
	case SSE_LOC_GPR:
		wr_gpr(cpu, f.dst_reg, f.gpr_size, d.q[0]);
		break;
	case SSE_LOC_MEM:
		if (mmx) {
			struct fxsave_area after = *fx;
			*fx = saved_x87;
			soft_lin_write(cpu, la, &d, f.mem_size, ACC_WRITE);
			*fx = after;
		} else {
			soft_lin_write(cpu, la, &d, f.mem_size, ACC_WRITE);
		}
		break;
	default:
		break;
	}
	return SOFT_NEXT;
}

H(h_emms)
{
	struct fxsave_area *fx = &cpu->s.fx;
	if ((in->pfx & PFX_LOCK) || (cpu->s.cr0 & CR0_EM))
		soft_ud(cpu);
	if (cpu->s.cr0 & CR0_TS)
		soft_raise(cpu, FPU_EXC_NM, 0, false);
	if (x87_check_pending(fx))
		soft_raise(cpu, FPU_EXC_MF, 0, false);
	fpu_emms(fx);
	return SOFT_NEXT;
}

/* ---- x87 ---- */

/* ModRM.rm of the register forms without an st(i) operand. */
static int fixed_rm(unsigned m)
{
	switch (m) {
	case ZYDIS_MNEMONIC_FCHS: case ZYDIS_MNEMONIC_FLD1: case ZYDIS_MNEMONIC_F2XM1:
	case ZYDIS_MNEMONIC_FPREM: case ZYDIS_MNEMONIC_FNOP: case ZYDIS_MNEMONIC_FENI8087_NOP:
		return 0;
	case ZYDIS_MNEMONIC_FABS: case ZYDIS_MNEMONIC_FLDL2T: case ZYDIS_MNEMONIC_FYL2X:
	case ZYDIS_MNEMONIC_FYL2XP1: case ZYDIS_MNEMONIC_FUCOMPP: case ZYDIS_MNEMONIC_FCOMPP:
	case ZYDIS_MNEMONIC_FDISI8087_NOP:
		return 1;
	case ZYDIS_MNEMONIC_FLDL2E: case ZYDIS_MNEMONIC_FPTAN: case ZYDIS_MNEMONIC_FSQRT:
	case ZYDIS_MNEMONIC_FNCLEX:
		return 2;
	case ZYDIS_MNEMONIC_FLDPI: case ZYDIS_MNEMONIC_FPATAN: case ZYDIS_MNEMONIC_FSINCOS:
	case ZYDIS_MNEMONIC_FNINIT:
		return 3;
	case ZYDIS_MNEMONIC_FTST: case ZYDIS_MNEMONIC_FLDLG2: case ZYDIS_MNEMONIC_FXTRACT:
	case ZYDIS_MNEMONIC_FRNDINT: case ZYDIS_MNEMONIC_FSETPM287_NOP:
		return 4;
	case ZYDIS_MNEMONIC_FXAM: case ZYDIS_MNEMONIC_FLDLN2: case ZYDIS_MNEMONIC_FPREM1:
	case ZYDIS_MNEMONIC_FSCALE:
		return 5;
	case ZYDIS_MNEMONIC_FLDZ: case ZYDIS_MNEMONIC_FDECSTP: case ZYDIS_MNEMONIC_FSIN:
		return 6;
	case ZYDIS_MNEMONIC_FINCSTP: case ZYDIS_MNEMONIC_FCOS:
		return 7;
	case ZYDIS_MNEMONIC_FNSTSW: /* the AX form (the m16 form is a memory form) */
		return 0;
	default:
		return -1;
	}
}

static int x87_form_of(const struct sinsn *in, struct x87_form *f)
{
	if (in->opcode == 0x9B)
		return x87_decode_raw(0x9B, 0, f);
	bool mem = false;
	int sti = -1;
	for (unsigned i = 0; i < in->nops && i < 3; i++) {
		if (in->op[i].kind == OP_MEM)
			mem = true;
		else if (in->op[i].kind == OP_ST && (sti <= 0))
			sti = in->op[i].reg;
	}
	unsigned rm = 0;
	if (!mem) {
		if (sti >= 0) {
			rm = (unsigned)sti;
		} else {
			int r = fixed_rm(in->mnemonic);
			if (r < 0)
				return -1;
			rm = (unsigned)r;
		}
	}
	uint8_t modrm = (uint8_t)((mem ? 0 : 0xC0) | (in->modrm_reg & 7) << 3 | rm);
	return x87_decode_raw(in->opcode, modrm, f);
}

static bool real_or_v86(const struct soft_cpu *cpu)
{
	return !(cpu->s.cr0 & CR0_PE) || (cpu->s.rflags & RFLAGS_VM);
}

/* FIP/FDP/FOP after a non-control instruction: offsets (FCS/FDS are not
 * kept), linear addresses in real and virtual-8086 mode. */
static void note_last(struct soft_cpu *cpu, const struct sinsn *in,
		      const struct x87_form *f, bool mem)
{
	struct fxsave_area *fx = &cpu->s.fx;
	bool real = real_or_v86(cpu);
	fx->fop = f->fop;
	fx->fip = cpu->s.rip + (real ? cpu->s.seg[SEG_CS].base : 0);
	if (!cpu->mode64 && !real)
		fx->fip = (uint32_t)fx->fip;
	if (mem)
		fx->fdp = ea_off(cpu, in) + (real ? cpu->s.seg[in->seg].base : 0);
}

static int x87_env(struct soft_cpu *cpu, const struct sinsn *in, enum x87_op op)
{
	bool op16 = in->osz == 2, real = real_or_v86(cpu);
	struct fxsave_area *fx = &cpu->s.fx;
	uint8_t buf[108];
	size_t n = (op == X87_FLDENV || op == X87_FNSTENV) ? x87_env_size(op16)
							   : x87_save_size(op16);
	bool store = op == X87_FNSTENV || op == X87_FNSAVE;
	uint64_t la = ea_lin(cpu, in, (unsigned)n, store);
	if (store) {
		struct fxsave_area next = *fx;
		if (op == X87_FNSTENV)
			x87_fnstenv(&next, buf, op16, real);
		else
			x87_fnsave(&next, buf, op16, real);
		soft_lin_write(cpu, la, buf, (unsigned)n, ACC_WRITE);
		*fx = next;
	} else {
		soft_lin_read(cpu, la, buf, (unsigned)n, ACC_READ);
		if (op == X87_FLDENV)
			x87_fldenv(fx, buf, op16, real);
		else
			x87_frstor(fx, buf, op16, real);
	}
	return SOFT_NEXT;
}

H(h_x87)
{
	struct x87_form f;
	if ((in->pfx & PFX_LOCK) || x87_form_of(in, &f))
		soft_ud(cpu);
	struct fxsave_area *fx = &cpu->s.fx;
	int r = x87_check(&f, cpu->s.cr0, fx);
	if (r)
		raise_vec(cpu, r);
	enum x87_op op = (enum x87_op)f.op;
	if (op == X87_FLDENV || op == X87_FNSTENV || op == X87_FRSTOR || op == X87_FNSAVE)
		return x87_env(cpu, in, op);
	const struct x87_info *inf = x87_op_info(op);
	struct x87_io io;
	memset(&io, 0, sizeof(io));
	uint64_t la = 0;
	if (inf->mem_read || inf->mem_write) {
		la = ea_lin(cpu, in, f.mem_size, inf->mem_write);
		if (inf->mem_read)
			soft_lin_read(cpu, la, io.mem, f.mem_size, ACC_READ);
	}
	if (op == X87_FCMOV_STi)
		io.rflags = x87_fcmov_cond(f.fcmov_cc, soft_flags(cpu));
	else if (inf->eflags)
		io.rflags = soft_flags(cpu);
	if (inf->mem_write) {
		/* The store may fault: compute on a copy, commit after it. */
		struct fxsave_area next = *fx;
		r = x87_exec(op, &next, f.sti, &io);
		if (r)
			raise_vec(cpu, r);
		if (io.store)
			soft_lin_write(cpu, la, io.mem, f.mem_size, ACC_WRITE);
		*fx = next;
	} else {
		r = x87_exec(op, fx, f.sti, &io);
		if (r)
			raise_vec(cpu, r);
	}
	if (inf->eflags)
		soft_set_arith(cpu, io.rflags);
	if (op == X87_FNSTSW_AX)
		wr_gpr(cpu, RAX, 2, io.ax);
	if (!inf->control)
		note_last(cpu, in, &f, inf->mem_read || inf->mem_write);
	return SOFT_NEXT;
}

/* ---- registration ---- */

/* FISTTP belongs to SSE3, which the soft CPU does not advertise (the rest of
 * SSE3 is not implemented); it is executed anyway, as the host does: code
 * that uses it without checking CPUID works, and the differential harness
 * compares it. */
static const uint16_t x87_mnemonics[] = {
#define M(x) ZYDIS_MNEMONIC_##x
	M(F2XM1), M(FABS), M(FADD), M(FADDP), M(FBLD), M(FBSTP), M(FCHS),
	M(FCMOVB), M(FCMOVBE), M(FCMOVE), M(FCMOVNB), M(FCMOVNBE), M(FCMOVNE),
	M(FCMOVNU), M(FCMOVU), M(FCOM), M(FCOMI), M(FCOMIP), M(FCOMP), M(FCOMPP),
	M(FCOS), M(FDECSTP), M(FDISI8087_NOP), M(FDIV), M(FDIVP), M(FDIVR),
	M(FDIVRP), M(FENI8087_NOP), M(FFREE), M(FFREEP), M(FIADD), M(FICOM),
	M(FICOMP), M(FIDIV), M(FIDIVR), M(FILD), M(FIMUL), M(FINCSTP), M(FIST),
	M(FISTP), M(FISTTP), M(FISUB), M(FISUBR), M(FLD), M(FLD1), M(FLDCW),
	M(FLDENV), M(FLDL2E), M(FLDL2T), M(FLDLG2), M(FLDLN2), M(FLDPI), M(FLDZ),
	M(FMUL), M(FMULP), M(FNCLEX), M(FNINIT), M(FNOP), M(FNSAVE), M(FNSTCW),
	M(FNSTENV), M(FNSTSW), M(FPATAN), M(FPREM), M(FPREM1), M(FPTAN),
	M(FRNDINT), M(FRSTOR), M(FSCALE), M(FSETPM287_NOP), M(FSIN), M(FSINCOS),
	M(FSQRT), M(FST), M(FSTP), M(FSTPNCE), M(FSUB), M(FSUBP), M(FSUBR),
	M(FSUBRP), M(FTST), M(FUCOM), M(FUCOMI), M(FUCOMIP), M(FUCOMP),
	M(FUCOMPP), M(FWAIT), M(FXAM), M(FXCH), M(FXTRACT), M(FYL2X), M(FYL2XP1),
#undef M
};

static void each_entry(void (*put)(soft_handler *t, unsigned m, soft_handler fn),
		       soft_handler *t)
{
	for (unsigned m = 0; m <= ZYDIS_MNEMONIC_MAX_VALUE; m++)
		if (sse_op_for_mnemonic((ZydisMnemonic)m) != SSE_OP_INVALID)
			put(t, m, h_sse);
	put(t, ZYDIS_MNEMONIC_EMMS, h_emms);
	for (size_t i = 0; i < sizeof(x87_mnemonics) / sizeof(x87_mnemonics[0]); i++)
		put(t, x87_mnemonics[i], h_x87);
}

static void put_table(soft_handler *t, unsigned m, soft_handler fn)
{
	if (m == ZYDIS_MNEMONIC_MOVSD || m == ZYDIS_MNEMONIC_CMPSD)
		soft_set_sse_alias(m, fn);
	else
		t[m] = fn;
}

static void put_register(soft_handler *t, unsigned m, soft_handler fn)
{
	(void)t;
	soft_register_handler(m, fn);
}

void fpu_soft_handlers(soft_handler *t)
{
	each_entry(put_table, t);
}

void fpu_soft_register(void)
{
	each_entry(put_register, NULL);
}
