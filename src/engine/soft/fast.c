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
static inline bool noncanonical(uint64_t t)
{
	return (uint64_t)((int64_t)(t << 16) >> 16) != t;
}
/* A non-canonical target in 64-bit mode is #GP(0) at the branch itself. */
static inline int jump_to(struct soft_cpu *cpu, const struct sinsn *in)
{
	uint64_t t = cpu->s.rip + in->len + in->imm;
	if (cpu->code_size == 8) {
		if (__builtin_expect(noncanonical(t), 0))
			soft_gp(cpu, 0);
		cpu->s.rip = t;
	} else {
		cpu->s.rip = t & size_mask(in->osz);
	}
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

/* Every Jcc rel with its condition known at compile time: after CMP/SUB
 * (LF_SUB) the carry/zero/signed conditions come from the saved operands,
 * after logic ops from the result; anything else asks soft_cond. */
static inline __attribute__((always_inline)) bool cond_fast(struct soft_cpu *cpu, unsigned cc)
{
	unsigned k = cc >> 1;
	bool r;
	if (cpu->lf_op == LF_SUB && (k == 1 || k == 2 || k == 3 || k == 6 || k == 7)) {
		unsigned sz = cpu->lf_size;
		uint64_t m = size_mask(sz);
		uint64_t a = cpu->lf_src1 & m, b = cpu->lf_src2 & m;
		int64_t sa = (int64_t)sext(a, sz), sb = (int64_t)sext(b, sz);
		switch (k) {
		case 1: r = a < b; break;
		case 2: r = a == b; break;
		case 3: r = a <= b; break;
		case 6: r = sa < sb; break;
		default: r = sa <= sb; break;
		}
		return (cc & 1) ? !r : r;
	}
	if (cpu->lf_op == LF_LOGIC && (k == 0 || k == 1 || k == 2 || k == 3 || k == 4 || k == 6 || k == 7)) {
		/* CF = OF = 0 */
		unsigned sz = cpu->lf_size;
		uint64_t v = cpu->lf_res & size_mask(sz);
		bool zf = v == 0, sf = (v >> (sz * 8 - 1)) & 1;
		switch (k) {
		case 0: case 1: r = false; break;
		case 2: case 3: r = zf; break;
		case 4: case 6: r = sf; break;
		default: r = zf || sf; break;
		}
		return (cc & 1) ? !r : r;
	}
	return soft_cond(cpu, cc);
}

#define JCC(cc) H(jcc_##cc) { return cond_fast(cpu, cc) ? jump_to(cpu, in) : SOFT_NEXT; }
JCC(0) JCC(1) JCC(2) JCC(3) JCC(4) JCC(5) JCC(6) JCC(7)
JCC(8) JCC(9) JCC(10) JCC(11) JCC(12) JCC(13) JCC(14) JCC(15)
static const soft_handler jcc_fast[16] = {
	jcc_0, jcc_1, jcc_2, jcc_3, jcc_4, jcc_5, jcc_6, jcc_7,
	jcc_8, jcc_9, jcc_10, jcc_11, jcc_12, jcc_13, jcc_14, jcc_15,
};

/* CMOVcc between 32/64-bit registers (CMOV always writes a 32-bit
 * destination, so its upper half is cleared either way). */
#define CMOV(cc)                                                                     \
	H(cmov_##cc)                                                                 \
	{                                                                            \
		uint64_t v = cpu->s.gpr[in->op[1].reg];                              \
		if (!cond_fast(cpu, cc))                                             \
			v = cpu->s.gpr[in->op[0].reg];                               \
		cpu->s.gpr[in->op[0].reg] = in->op[0].size == 8 ? v : (uint32_t)v;   \
		return SOFT_NEXT;                                                    \
	}
CMOV(0) CMOV(1) CMOV(2) CMOV(3) CMOV(4) CMOV(5) CMOV(6) CMOV(7)
CMOV(8) CMOV(9) CMOV(10) CMOV(11) CMOV(12) CMOV(13) CMOV(14) CMOV(15)
static const soft_handler cmov_fast[16] = {
	cmov_0, cmov_1, cmov_2, cmov_3, cmov_4, cmov_5, cmov_6, cmov_7,
	cmov_8, cmov_9, cmov_10, cmov_11, cmov_12, cmov_13, cmov_14, cmov_15,
};

/* ALU with a memory operand, 32/64 bits: reg op= [mem], [mem] op= reg/imm
 * (no LOCK), CMP/TEST against memory. Same order of accesses as the
 * generic rmw(): the read-modify-write takes a host pointer when the page
 * is writable RAM without code, else the slow accessors. */
static inline __attribute__((always_inline)) uint64_t mem_src(const struct sinsn *in, const struct soft_cpu *cpu, unsigned sz)
{
	if (in->op[1].kind == OP_IMM)
		return in->imm & size_mask(sz);
	return cpu->s.gpr[in->op[1].reg] & size_mask(sz);
}
#define MEM_FORMS(name, expr, LF, WB)                                                 \
	static inline __attribute__((always_inline)) int name##_m(struct soft_cpu *cpu, const struct sinsn *in, unsigned sz) \
	{                                                                             \
		uint64_t b = mem_src(in, cpu, sz);                                    \
		if (!(WB)) {                                                          \
			uint64_t a = lin_read(cpu, ea_lin(cpu, in, sz, false), sz);   \
			uint64_t r = expr;                          \
			lf_set(cpu, LF, sz, a, b, r);                                 \
			return SOFT_NEXT;                                             \
		}                                                                     \
		uint64_t la = ea_lin(cpu, in, sz, true);                              \
		void *p = lin_ptr_w(cpu, la, sz);                                     \
		uint64_t a = 0;                                                       \
		if (p)                                                                \
			memcpy(&a, p, sz);                                            \
		else                                                                  \
			soft_lin_read(cpu, la, &a, sz, ACC_READ);                     \
		uint64_t r = expr;                                  \
		lf_set(cpu, LF, sz, a, b, r);                                         \
		if (p)                                                                \
			memcpy(p, &r, sz);                                            \
		else                                                                  \
			soft_lin_write(cpu, la, &r, sz, ACC_WRITE);                   \
		return SOFT_NEXT;                                                     \
	}                                                                             \
	H(name##_m64) { return name##_m(cpu, in, 8); }                                \
	H(name##_m32) { return name##_m(cpu, in, 4); }                                \
	H(name##_rm64)                                                                \
	{                                                                             \
		uint64_t a = cpu->s.gpr[in->op[0].reg];                               \
		uint64_t b = lin_read(cpu, ea_lin(cpu, in, 8, false), 8);             \
		uint64_t r = expr;                                                    \
		if (WB)                                                               \
			cpu->s.gpr[in->op[0].reg] = r;                                \
		lf_set(cpu, LF, 8, a, b, r);                                          \
		return SOFT_NEXT;                                                     \
	}                                                                             \
	H(name##_rm32)                                                                \
	{                                                                             \
		uint64_t a = (uint32_t)cpu->s.gpr[in->op[0].reg];                     \
		uint64_t b = lin_read(cpu, ea_lin(cpu, in, 4, false), 4);             \
		uint64_t r = (uint32_t)(expr);                                        \
		if (WB)                                                               \
			cpu->s.gpr[in->op[0].reg] = r;                                \
		lf_set(cpu, LF, 4, a, b, r);                                          \
		return SOFT_NEXT;                                                     \
	}

MEM_FORMS(add, a + b, LF_ADD, 1)
MEM_FORMS(sub, a - b, LF_SUB, 1)
MEM_FORMS(and, a & b, LF_LOGIC, 1)
MEM_FORMS(or, a | b, LF_LOGIC, 1)
MEM_FORMS(xor, a ^ b, LF_LOGIC, 1)
MEM_FORMS(cmp, a - b, LF_SUB, 0)
MEM_FORMS(test, a & b, LF_LOGIC, 0)

/* Shifts of a 32/64-bit register by an immediate or CL. A zero count
 * changes no flags but still writes a 32-bit destination. */
#define SHIFT_FORMS(name, LF, expr)                                                   \
	static inline __attribute__((always_inline)) int name##_r(struct soft_cpu *cpu, const struct sinsn *in, unsigned sz) \
	{                                                                             \
		uint64_t c = in->op[1].kind == OP_IMM ? in->imm : cpu->s.gpr[RCX];    \
		unsigned n = (unsigned)(c & (sz == 8 ? 63 : 31));                     \
		uint64_t a = cpu->s.gpr[in->op[0].reg] & size_mask(sz);               \
		if (!n) {                                                             \
			cpu->s.gpr[in->op[0].reg] = a;                                \
			return SOFT_NEXT;                                             \
		}                                                                     \
		uint64_t r = expr;                                                    \
		lf_set(cpu, LF, sz, a, n, r);                                         \
		cpu->s.gpr[in->op[0].reg] = r & size_mask(sz);                        \
		return SOFT_NEXT;                                                     \
	}                                                                             \
	H(name##_r64) { return name##_r(cpu, in, 8); }                                \
	H(name##_r32) { return name##_r(cpu, in, 4); }
SHIFT_FORMS(shl, LF_SHL, a << n)
SHIFT_FORMS(shr, LF_SHR, a >> n)
SHIFT_FORMS(sar, LF_SAR, (uint64_t)((int64_t)sext(a, sz) >> n))

/* INC/DEC of a 32/64-bit register: CF is kept (parked in lf_cf). */
H(inc_r64) { uint8_t cf = soft_cf(cpu); uint64_t a = cpu->s.gpr[in->op[0].reg], r = a + 1; cpu->s.gpr[in->op[0].reg] = r; lf_set(cpu, LF_INC, 8, a, 1, r); cpu->lf_cf = cf; return SOFT_NEXT; }
H(inc_r32) { uint8_t cf = soft_cf(cpu); uint64_t a = (uint32_t)cpu->s.gpr[in->op[0].reg], r = a + 1; cpu->s.gpr[in->op[0].reg] = (uint32_t)r; lf_set(cpu, LF_INC, 4, a, 1, r); cpu->lf_cf = cf; return SOFT_NEXT; }
H(dec_r64) { uint8_t cf = soft_cf(cpu); uint64_t a = cpu->s.gpr[in->op[0].reg], r = a - 1; cpu->s.gpr[in->op[0].reg] = r; lf_set(cpu, LF_DEC, 8, a, 1, r); cpu->lf_cf = cf; return SOFT_NEXT; }
H(dec_r32) { uint8_t cf = soft_cf(cpu); uint64_t a = (uint32_t)cpu->s.gpr[in->op[0].reg], r = a - 1; cpu->s.gpr[in->op[0].reg] = (uint32_t)r; lf_set(cpu, LF_DEC, 4, a, 1, r); cpu->lf_cf = cf; return SOFT_NEXT; }

/* IMUL r32/r64 with two or three operands (r, r/m; r, r/m, imm). */
static inline __attribute__((always_inline)) int imul_f(struct soft_cpu *cpu, const struct sinsn *in, unsigned sz, bool mem, bool three)
{
	uint64_t src = mem ? lin_read(cpu, ea_lin(cpu, in, sz, false), sz) : cpu->s.gpr[in->op[1].reg];
	int64_t a, b;
	if (three) {
		a = (int64_t)sext(src & size_mask(sz), sz);
		b = (int64_t)sext(in->imm & size_mask(sz), sz);
	} else {
		a = (int64_t)sext(cpu->s.gpr[in->op[0].reg] & size_mask(sz), sz);
		b = (int64_t)sext(src & size_mask(sz), sz);
	}
	uint64_t lo;
	bool ovf;
	if (sz == 4) {
		int64_t r = a * b;
		lo = (uint64_t)r;
		ovf = r != (int32_t)r;
		cpu->s.gpr[in->op[0].reg] = (uint32_t)lo;
	} else {
		__int128 r = (__int128)a * b;
		lo = (uint64_t)r;
		ovf = r != (__int128)(int64_t)lo;
		cpu->s.gpr[in->op[0].reg] = lo;
	}
	lf_set(cpu, LF_MUL, sz, lo, ovf, lo);
	return SOFT_NEXT;
}
H(imul_rr32) { return imul_f(cpu, in, 4, false, false); }
H(imul_rr64) { return imul_f(cpu, in, 8, false, false); }
H(imul_rm32) { return imul_f(cpu, in, 4, true, false); }
H(imul_rm64) { return imul_f(cpu, in, 8, true, false); }
H(imul_rri32) { return imul_f(cpu, in, 4, false, true); }
H(imul_rri64) { return imul_f(cpu, in, 8, false, true); }
H(imul_rmi32) { return imul_f(cpu, in, 4, true, true); }
H(imul_rmi64) { return imul_f(cpu, in, 8, true, true); }

struct form {
	soft_handler rr64, rr32, ri64, ri32, rm64, rm32;
};

#define FORMS(name) { name##_rr64, name##_rr32, name##_ri64, name##_ri32, name##_rm64, name##_rm32 }

void soft_specialize(struct sinsn *in)
{
	const struct sop *d = &in->op[0], *s = &in->op[1];
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_JZ: if (d->kind == OP_IMM) in->fn = jz; return;
	case ZYDIS_MNEMONIC_JNZ: if (d->kind == OP_IMM) in->fn = jnz; return;
	case ZYDIS_MNEMONIC_JS: if (d->kind == OP_IMM) in->fn = js; return;
	case ZYDIS_MNEMONIC_JNS: if (d->kind == OP_IMM) in->fn = jns; return;
	case ZYDIS_MNEMONIC_JO: case ZYDIS_MNEMONIC_JNO: case ZYDIS_MNEMONIC_JB: case ZYDIS_MNEMONIC_JNB:
	case ZYDIS_MNEMONIC_JBE: case ZYDIS_MNEMONIC_JNBE: case ZYDIS_MNEMONIC_JP: case ZYDIS_MNEMONIC_JNP:
	case ZYDIS_MNEMONIC_JL: case ZYDIS_MNEMONIC_JNL: case ZYDIS_MNEMONIC_JLE: case ZYDIS_MNEMONIC_JNLE:
		if (d->kind == OP_IMM)
			in->fn = jcc_fast[in->opcode & 0xf];
		return;
	case ZYDIS_MNEMONIC_CMOVO: case ZYDIS_MNEMONIC_CMOVNO: case ZYDIS_MNEMONIC_CMOVB: case ZYDIS_MNEMONIC_CMOVNB:
	case ZYDIS_MNEMONIC_CMOVZ: case ZYDIS_MNEMONIC_CMOVNZ: case ZYDIS_MNEMONIC_CMOVBE: case ZYDIS_MNEMONIC_CMOVNBE:
	case ZYDIS_MNEMONIC_CMOVS: case ZYDIS_MNEMONIC_CMOVNS: case ZYDIS_MNEMONIC_CMOVP: case ZYDIS_MNEMONIC_CMOVNP:
	case ZYDIS_MNEMONIC_CMOVL: case ZYDIS_MNEMONIC_CMOVNL: case ZYDIS_MNEMONIC_CMOVLE: case ZYDIS_MNEMONIC_CMOVNLE:
		if (in->nops >= 2 && d->kind == OP_REG && s->kind == OP_REG && d->reg < 16 && s->reg < 16 &&
		    (d->size == 4 || d->size == 8) && s->size == d->size)
			in->fn = cmov_fast[in->opcode & 0xf];
		return;
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
	if ((in->mnemonic == ZYDIS_MNEMONIC_INC || in->mnemonic == ZYDIS_MNEMONIC_DEC) && in->nops >= 1 &&
	    d->kind == OP_REG && d->reg < 16 && (d->size == 4 || d->size == 8)) {
		bool inc = in->mnemonic == ZYDIS_MNEMONIC_INC;
		in->fn = d->size == 8 ? (inc ? inc_r64 : dec_r64) : (inc ? inc_r32 : dec_r32);
		return;
	}
	if (in->nops < 2 || in->pfx & PFX_LOCK)
		return;
	if (in->mnemonic == ZYDIS_MNEMONIC_IMUL && d->kind == OP_REG && d->reg < 16 &&
	    (d->size == 4 || d->size == 8) && s->size == d->size &&
	    ((s->kind == OP_REG && s->reg < 16) || s->kind == OP_MEM)) {
		bool w = d->size == 8, m = s->kind == OP_MEM;
		if (in->nops >= 3 && in->op[2].kind == OP_IMM)
			in->fn = w ? (m ? imul_rmi64 : imul_rri64) : (m ? imul_rmi32 : imul_rri32);
		else if (in->nops == 2 || in->op[2].kind == OP_NONE)
			in->fn = w ? (m ? imul_rm64 : imul_rr64) : (m ? imul_rm32 : imul_rr32);
		return;
	}
	if (d->kind == OP_MEM && (d->size == 4 || d->size == 8) &&
	    ((s->kind == OP_REG && s->reg < 16 && s->size == d->size) || s->kind == OP_IMM)) {
		bool w = d->size == 8;
		switch (in->mnemonic) {
		case ZYDIS_MNEMONIC_ADD: in->fn = w ? add_m64 : add_m32; break;
		case ZYDIS_MNEMONIC_SUB: in->fn = w ? sub_m64 : sub_m32; break;
		case ZYDIS_MNEMONIC_AND: in->fn = w ? and_m64 : and_m32; break;
		case ZYDIS_MNEMONIC_OR: in->fn = w ? or_m64 : or_m32; break;
		case ZYDIS_MNEMONIC_XOR: in->fn = w ? xor_m64 : xor_m32; break;
		case ZYDIS_MNEMONIC_CMP: in->fn = w ? cmp_m64 : cmp_m32; break;
		case ZYDIS_MNEMONIC_TEST: in->fn = w ? test_m64 : test_m32; break;
		default: break;
		}
		return;
	}
	if (d->kind != OP_REG || d->reg >= 16)
		return;
	unsigned sz = d->size;
	if ((sz == 4 || sz == 8) &&
	    (s->kind == OP_IMM || (s->kind == OP_REG && s->reg == RCX && s->size == 1))) {
		bool w = sz == 8;
		switch (in->mnemonic) {
		case ZYDIS_MNEMONIC_SHL: in->fn = w ? shl_r64 : shl_r32; return;
		case ZYDIS_MNEMONIC_SHR: in->fn = w ? shr_r64 : shr_r32; return;
		case ZYDIS_MNEMONIC_SAR: in->fn = w ? sar_r64 : sar_r32; return;
		default: break;
		}
	}
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
	else if (s->kind == OP_MEM && s->size == sz)
		in->fn = w ? f->rm64 : f->rm32;
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

/* CMP/TEST of 32/64-bit registers followed by a Jcc rel: one dispatch for
 * both. The fused handler sets the flags as CMP/TEST does, then decides
 * the branch from its own operands and retires both instructions (it
 * counts the Jcc itself). When the Jcc is not part of this run of the
 * block (single-stepping, an instruction limit) it acts as the plain
 * CMP/TEST. JO/JNO/JP/JNP are not fused. */
static inline __attribute__((always_inline)) int fused_branch(struct soft_cpu *cpu, const struct sinsn *in, bool take)
{
	const struct sinsn *j = in + 1;
	uint64_t jrip = cpu->s.rip + in->len;
	cpu->insns++; /* the CMP/TEST if the Jcc faults, else the Jcc */
	if (cpu->code_size == 8) {
		uint64_t t = take ? jrip + j->len + j->imm : jrip + j->len;
		if (__builtin_expect(noncanonical(t), 0)) {
			/* #GP at the Jcc, the CMP/TEST retired */
			cpu->s.rip = jrip;
			soft_gp(cpu, 0);
		}
		cpu->s.rip = t;
		return SOFT_JUMP;
	}
	uint64_t cm = size_mask(cpu->code_size);
	jrip &= cm;
	cpu->s.rip = take ? (jrip + j->len + j->imm) & size_mask(j->osz) : (jrip + j->len) & cm;
	return SOFT_JUMP;
}

static inline __attribute__((always_inline)) bool sub_cond(uint64_t a, uint64_t b, unsigned sz, unsigned cc)
{
	uint64_t m = size_mask(sz);
	a &= m;
	b &= m;
	int64_t sa = (int64_t)sext(a, sz), sb = (int64_t)sext(b, sz);
	bool r;
	switch (cc >> 1) {
	case 1: r = a < b; break;
	case 2: r = a == b; break;
	case 3: r = a <= b; break;
	case 4: r = ((a - b) >> (sz * 8 - 1)) & 1; break;
	case 6: r = sa < sb; break;
	default: r = sa <= sb; break;
	}
	return (cc & 1) ? !r : r;
}

static inline __attribute__((always_inline)) bool logic_cond(uint64_t v, unsigned sz, unsigned cc)
{
	v &= size_mask(sz);
	bool zf = v == 0, sf = (v >> (sz * 8 - 1)) & 1, r;
	switch (cc >> 1) {
	case 1: r = false; break;
	case 2: case 3: r = zf; break;
	case 4: case 6: r = sf; break;
	default: r = zf || sf; break;
	}
	return (cc & 1) ? !r : r;
}

#define FUSED(name, SZ, SRC, IS_CMP)                                                 \
	H(name)                                                                      \
	{                                                                            \
		uint64_t a = cpu->s.gpr[in->op[0].reg], b = SRC;                     \
		if (SZ == 4) {                                                       \
			a = (uint32_t)a;                                             \
			b = (uint32_t)b;                                             \
		}                                                                    \
		uint64_t r = IS_CMP ? a - b : a & b;                                 \
		if (SZ == 4)                                                         \
			r = (uint32_t)r;                                             \
		lf_set(cpu, IS_CMP ? LF_SUB : LF_LOGIC, SZ, a, b, r);                \
		if (__builtin_expect(in + 1 >= cpu->cur_end, 0))                     \
			return SOFT_NEXT;                                            \
		unsigned cc = in[1].opcode & 0xf;                                    \
		return fused_branch(cpu, in, IS_CMP ? sub_cond(a, b, SZ, cc) : logic_cond(r, SZ, cc)); \
	}
FUSED(cmpj_rr64, 8, cpu->s.gpr[in->op[1].reg], 1)
FUSED(cmpj_rr32, 4, cpu->s.gpr[in->op[1].reg], 1)
FUSED(cmpj_ri64, 8, in->imm, 1)
FUSED(cmpj_ri32, 4, in->imm, 1)
FUSED(testj_rr64, 8, cpu->s.gpr[in->op[1].reg], 0)
FUSED(testj_rr32, 4, cpu->s.gpr[in->op[1].reg], 0)
FUSED(testj_ri64, 8, in->imm, 0)
FUSED(testj_ri32, 4, in->imm, 0)

static bool is_fast_jcc(soft_handler f)
{
	if (f == jz || f == jnz || f == js || f == jns)
		return true;
	for (int i = 0; i < 16; i++)
		if (f == jcc_fast[i])
			return i != 0 && i != 1 && i != 10 && i != 11;
	return false;
}

void soft_fuse_block(struct sinsn *insn, unsigned n)
{
	for (unsigned i = 0; i + 1 < n; i++) {
		struct sinsn *in = &insn[i];
		if (!is_fast_jcc(insn[i + 1].fn))
			continue;
		if (in->fn == cmp_rr64) in->fn = cmpj_rr64;
		else if (in->fn == cmp_rr32) in->fn = cmpj_rr32;
		else if (in->fn == cmp_ri64) in->fn = cmpj_ri64;
		else if (in->fn == cmp_ri32) in->fn = cmpj_ri32;
		else if (in->fn == test_rr64) in->fn = testj_rr64;
		else if (in->fn == test_rr32) in->fn = testj_rr32;
		else if (in->fn == test_ri64) in->fn = testj_ri64;
		else if (in->fn == test_ri32) in->fn = testj_ri32;
	}
}
