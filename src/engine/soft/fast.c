/* Specialized handlers for the most frequent instruction forms, chosen at
 * decode time: register/register and register/immediate ALU operations and
 * MOVs of 32 and 64 bits. They do exactly what the generic handlers do,
 * without the operand-kind dispatch. */
#include <Zydis/Zydis.h>

#include "engine/soft/soft_cpu.h"

#define H(name) static int name(struct soft_cpu *cpu, const struct sinsn *in)

H(mov_rr64) { cpu->s.gpr[in->op[0].reg] = cpu->s.gpr[in->op[1].reg]; return SOFT_NEXT; }
H(mov_rr32) { cpu->s.gpr[in->op[0].reg] = (uint32_t)cpu->s.gpr[in->op[1].reg]; return SOFT_NEXT; }
H(mov_ri64) { cpu->s.gpr[in->op[0].reg] = in->imm; return SOFT_NEXT; }
H(mov_ri32) { cpu->s.gpr[in->op[0].reg] = (uint32_t)in->imm; return SOFT_NEXT; }
H(mov_rm64) { cpu->s.gpr[in->op[0].reg] = lin_read(cpu, ea_lin(cpu, in, 8, false), 8); return SOFT_NEXT; }
H(mov_rm32) { cpu->s.gpr[in->op[0].reg] = (uint32_t)lin_read(cpu, ea_lin(cpu, in, 4, false), 4); return SOFT_NEXT; }
H(mov_mr64) { lin_write(cpu, ea_lin(cpu, in, 8, true), 8, cpu->s.gpr[in->op[1].reg]); return SOFT_NEXT; }
H(mov_mr32) { lin_write(cpu, ea_lin(cpu, in, 4, true), 4, cpu->s.gpr[in->op[1].reg]); return SOFT_NEXT; }

/* ALU forms: OP names the operation, LF its lazy-flag kind, WB whether the
 * result is written back (CMP/TEST do not). */
#define ALU_FORMS(name, expr, LF, WB)                                                \
	H(name##_rr64)                                                               \
	{                                                                            \
		uint64_t a = cpu->s.gpr[in->op[0].reg], b = cpu->s.gpr[in->op[1].reg]; \
		uint64_t r = expr;                                                   \
		if (WB)                                                              \
			cpu->s.gpr[in->op[0].reg] = r;                               \
		lf_set(cpu, LF, 8, a, b, r);                                         \
		return SOFT_NEXT;                                                    \
	}                                                                            \
	H(name##_rr32)                                                               \
	{                                                                            \
		uint64_t a = (uint32_t)cpu->s.gpr[in->op[0].reg];                    \
		uint64_t b = (uint32_t)cpu->s.gpr[in->op[1].reg];                    \
		uint64_t r = (uint32_t)(expr);                                       \
		if (WB)                                                              \
			cpu->s.gpr[in->op[0].reg] = r;                               \
		lf_set(cpu, LF, 4, a, b, r);                                         \
		return SOFT_NEXT;                                                    \
	}                                                                            \
	H(name##_ri64)                                                               \
	{                                                                            \
		uint64_t a = cpu->s.gpr[in->op[0].reg], b = in->imm;                 \
		uint64_t r = expr;                                                   \
		if (WB)                                                              \
			cpu->s.gpr[in->op[0].reg] = r;                               \
		lf_set(cpu, LF, 8, a, b, r);                                         \
		return SOFT_NEXT;                                                    \
	}                                                                            \
	H(name##_ri32)                                                               \
	{                                                                            \
		uint64_t a = (uint32_t)cpu->s.gpr[in->op[0].reg];                    \
		uint64_t b = (uint32_t)in->imm;                                      \
		uint64_t r = (uint32_t)(expr);                                       \
		if (WB)                                                              \
			cpu->s.gpr[in->op[0].reg] = r;                               \
		lf_set(cpu, LF, 4, a, b, r);                                         \
		return SOFT_NEXT;                                                    \
	}

ALU_FORMS(add, a + b, LF_ADD, 1)
ALU_FORMS(sub, a - b, LF_SUB, 1)
ALU_FORMS(and, a & b, LF_LOGIC, 1)
ALU_FORMS(or, a | b, LF_LOGIC, 1)
ALU_FORMS(xor, a ^ b, LF_LOGIC, 1)
ALU_FORMS(cmp, a - b, LF_SUB, 0)
ALU_FORMS(test, a & b, LF_LOGIC, 0)

/* MOV to memory from an immediate or a small register; LEA. */
H(mov_mi) { unsigned sz = in->op[0].size; lin_write(cpu, ea_lin(cpu, in, sz, true), sz, in->imm); return SOFT_NEXT; }
H(mov_mr_small)
{
	unsigned sz = in->op[0].size;
	lin_write(cpu, ea_lin(cpu, in, sz, true), sz, rd_gpr(cpu, in->op[1].reg, sz));
	return SOFT_NEXT;
}
H(lea64) { cpu->s.gpr[in->op[0].reg] = ea_off(cpu, in); return SOFT_NEXT; }
H(lea32) { cpu->s.gpr[in->op[0].reg] = (uint32_t)ea_off(cpu, in); return SOFT_NEXT; }

/* MOVZX to a 32/64-bit register (both clear the upper half). */
H(movzx_r8) { cpu->s.gpr[in->op[0].reg] = rd_gpr(cpu, in->op[1].reg, 1); return SOFT_NEXT; }
H(movzx_r16) { cpu->s.gpr[in->op[0].reg] = cpu->s.gpr[in->op[1].reg] & 0xffff; return SOFT_NEXT; }
H(movzx_m8) { cpu->s.gpr[in->op[0].reg] = lin_read(cpu, ea_lin(cpu, in, 1, false), 1); return SOFT_NEXT; }
H(movzx_m16) { cpu->s.gpr[in->op[0].reg] = lin_read(cpu, ea_lin(cpu, in, 2, false), 2); return SOFT_NEXT; }

/* JZ/JNZ/JS/JNS straight from the lazy result. */
static inline int jump_to(struct soft_cpu *cpu, const struct sinsn *in)
{
	uint64_t t = cpu->s.rip + in->len + in->imm;
	cpu->s.rip = cpu->code_size == 8 ? t : t & size_mask(in->osz);
	return SOFT_JUMP;
}
static inline bool zf_now(const struct soft_cpu *cpu)
{
	if (cpu->lf_op == LF_NONE)
		return cpu->s.rflags & RFLAGS_ZF;
	return (cpu->lf_res & size_mask(cpu->lf_size)) == 0;
}
static inline bool sf_now(const struct soft_cpu *cpu)
{
	if (cpu->lf_op == LF_NONE)
		return cpu->s.rflags & RFLAGS_SF;
	return (cpu->lf_res >> (cpu->lf_size * 8 - 1)) & 1;
}
H(jz) { return zf_now(cpu) ? jump_to(cpu, in) : SOFT_NEXT; }
H(jnz) { return zf_now(cpu) ? SOFT_NEXT : jump_to(cpu, in); }
H(js) { return sf_now(cpu) ? jump_to(cpu, in) : SOFT_NEXT; }
H(jns) { return sf_now(cpu) ? SOFT_NEXT : jump_to(cpu, in); }

struct form {
	soft_handler rr64, rr32, ri64, ri32;
};

#define FORMS(name) { name##_rr64, name##_rr32, name##_ri64, name##_ri32 }

void soft_specialize(struct sinsn *in)
{
	const struct sop *d = &in->op[0], *s = &in->op[1];
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_JZ: if (d->kind == OP_IMM) in->fn = jz; return;
	case ZYDIS_MNEMONIC_JNZ: if (d->kind == OP_IMM) in->fn = jnz; return;
	case ZYDIS_MNEMONIC_JS: if (d->kind == OP_IMM) in->fn = js; return;
	case ZYDIS_MNEMONIC_JNS: if (d->kind == OP_IMM) in->fn = jns; return;
	case ZYDIS_MNEMONIC_LEA:
		if (in->nops >= 2 && d->kind == OP_REG && d->reg < 16 && (d->size == 8 || d->size == 4))
			in->fn = d->size == 8 ? lea64 : lea32;
		return;
	case ZYDIS_MNEMONIC_MOVZX:
		if (in->nops < 2 || d->kind != OP_REG || d->reg >= 16 || (d->size != 4 && d->size != 8))
			return;
		if (s->kind == OP_REG && s->size == 1)
			in->fn = movzx_r8;
		else if (s->kind == OP_REG && s->size == 2 && s->reg < 16)
			in->fn = movzx_r16;
		else if (s->kind == OP_MEM && s->size == 1)
			in->fn = movzx_m8;
		else if (s->kind == OP_MEM && s->size == 2)
			in->fn = movzx_m16;
		return;
	default:
		break;
	}
	if (in->nops < 2 || d->kind != OP_REG || d->reg >= 16 || in->pfx & PFX_LOCK)
		return;
	unsigned sz = d->size;
	if (sz != 4 && sz != 8)
		return;
	bool w = sz == 8;
	if (in->mnemonic == ZYDIS_MNEMONIC_MOV) {
		if (s->kind == OP_REG && s->reg < 16 && s->size == sz)
			in->fn = w ? mov_rr64 : mov_rr32;
		else if (s->kind == OP_IMM)
			in->fn = w ? mov_ri64 : mov_ri32;
		else if (s->kind == OP_MEM && s->size == sz)
			in->fn = w ? mov_rm64 : mov_rm32;
		return;
	}
	static const struct form add = FORMS(add), sub = FORMS(sub), and = FORMS(and), or = FORMS(or),
				 xor = FORMS(xor), cmp = FORMS(cmp), test = FORMS(test);
	const struct form *f;
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_ADD: f = &add; break;
	case ZYDIS_MNEMONIC_SUB: f = &sub; break;
	case ZYDIS_MNEMONIC_AND: f = &and; break;
	case ZYDIS_MNEMONIC_OR: f = &or; break;
	case ZYDIS_MNEMONIC_XOR: f = &xor; break;
	case ZYDIS_MNEMONIC_CMP: f = &cmp; break;
	case ZYDIS_MNEMONIC_TEST: f = &test; break;
	default: return;
	}
	if (s->kind == OP_REG && s->reg < 16 && s->size == sz)
		in->fn = w ? f->rr64 : f->rr32;
	else if (s->kind == OP_IMM)
		in->fn = w ? f->ri64 : f->ri32;
}

/* MOV to memory from a register: destination operand 0 is memory. */
void soft_specialize_store(struct sinsn *in)
{
	const struct sop *d = &in->op[0], *s = &in->op[1];
	if (in->mnemonic != ZYDIS_MNEMONIC_MOV || in->nops < 2 || d->kind != OP_MEM)
		return;
	unsigned sz = d->size;
	if (sz != 1 && sz != 2 && sz != 4 && sz != 8)
		return;
	if (s->kind == OP_IMM) {
		in->fn = mov_mi;
		return;
	}
	if (s->kind != OP_REG || s->size != sz)
		return;
	if (sz == 8 && s->reg < 16)
		in->fn = mov_mr64;
	else if (sz == 4 && s->reg < 16)
		in->fn = mov_mr32;
	else if (sz <= 2)
		in->fn = mov_mr_small;
}
