/* General-purpose integer instructions. */
#include <Zydis/Zydis.h>

#include "engine/soft/soft_cpu.h"

#define H(name) static int name(struct soft_cpu *cpu, const struct sinsn *in)

static inline unsigned dsz(const struct sinsn *in)
{
	return in->op[0].size ? in->op[0].size : in->osz;
}

/* ---- read-modify-write on operand 0 ---- */

typedef uint64_t (*alu_fn)(struct soft_cpu *cpu, uint64_t a, uint64_t b, unsigned sz);

static bool cas_sz(void *p, unsigned sz, uint64_t *old, uint64_t nv)
{
	switch (sz) {
	case 1: { uint8_t o = (uint8_t)*old; bool r = __atomic_compare_exchange_n((uint8_t *)p, &o, (uint8_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return r; }
	case 2: { uint16_t o = (uint16_t)*old; bool r = __atomic_compare_exchange_n((uint16_t *)p, &o, (uint16_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return r; }
	case 4: { uint32_t o = (uint32_t)*old; bool r = __atomic_compare_exchange_n((uint32_t *)p, &o, (uint32_t)nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); *old = o; return r; }
	default: return __atomic_compare_exchange_n((uint64_t *)p, old, nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	}
}

static inline uint64_t ld(const void *p, unsigned sz)
{
	uint64_t v = 0;
	memcpy(&v, p, sz);
	return v;
}

static inline void st(void *p, unsigned sz, uint64_t v)
{
	memcpy(p, &v, sz);
}

/* Apply fn to operand 0 (with src); write back when wb. Returns the old
 * value. Memory destinations with LOCK (or always_atomic) use a CAS loop. */
static uint64_t rmw(struct soft_cpu *cpu, const struct sinsn *in, unsigned sz, uint64_t src,
		    alu_fn fn, bool wb, bool always_atomic)
{
	if (in->op[0].kind == OP_REG) {
		uint64_t a = rd_gpr(cpu, in->op[0].reg, sz);
		uint64_t r = fn(cpu, a, src, sz);
		if (wb)
			wr_gpr(cpu, in->op[0].reg, sz, r);
		return a;
	}
	if (in->op[0].kind != OP_MEM)
		soft_ud(cpu);
	if (!wb) {
		uint64_t a = rd_op(cpu, in, 0, sz);
		fn(cpu, a, src, sz);
		return a;
	}
	uint64_t la = ea_lin(cpu, in, sz, true);
	void *p = lin_ptr_w(cpu, la, sz);
	if (p) {
		if ((in->pfx & PFX_LOCK) || always_atomic) {
			uint64_t old = ld(p, sz);
			for (;;) {
				uint64_t r = fn(cpu, old, src, sz);
				if (cas_sz(p, sz, &old, r))
					return old;
			}
		}
		uint64_t a = ld(p, sz);
		st(p, sz, fn(cpu, a, src, sz));
		return a;
	}
	uint64_t a = 0;
	soft_lin_read(cpu, la, &a, sz, ACC_READ);
	uint64_t r = fn(cpu, a, src, sz);
	soft_lin_write(cpu, la, &r, sz, ACC_WRITE);
	return a;
}

static uint64_t f_add(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint64_t r = a + b; lf_set(c, LF_ADD, sz, a, b, r); return r; }
static uint64_t f_sub(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint64_t r = a - b; lf_set(c, LF_SUB, sz, a, b, r); return r; }
static uint64_t f_and(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint64_t r = a & b; lf_set(c, LF_LOGIC, sz, a, b, r); return r; }
static uint64_t f_or(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint64_t r = a | b; lf_set(c, LF_LOGIC, sz, a, b, r); return r; }
static uint64_t f_xor(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint64_t r = a ^ b; lf_set(c, LF_LOGIC, sz, a, b, r); return r; }
/* ADC/SBB: the carry-in is parked in lf_cf by the handler before rmw. */
static uint64_t f_adc(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint8_t cf = c->lf_cf; uint64_t r = a + b + cf; lf_set(c, LF_ADC, sz, a, b, r); c->lf_cf = cf; return r; }
static uint64_t f_sbb(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint8_t cf = c->lf_cf; uint64_t r = a - b - cf; lf_set(c, LF_SBB, sz, a, b, r); c->lf_cf = cf; return r; }
static uint64_t f_inc(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint8_t cf = (uint8_t)b; uint64_t r = a + 1; lf_set(c, LF_INC, sz, a, 1, r); c->lf_cf = cf; return r; }
static uint64_t f_dec(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { uint8_t cf = (uint8_t)b; uint64_t r = a - 1; lf_set(c, LF_DEC, sz, a, 1, r); c->lf_cf = cf; return r; }
static uint64_t f_neg(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { (void)b; uint64_t r = -a; lf_set(c, LF_NEG, sz, a, 0, r); return r; }
static uint64_t f_not(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { (void)c; (void)b; (void)sz; return ~a; }
static uint64_t f_mov(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { (void)c; (void)a; (void)sz; return b; }

#define ALU(name, fn, wb) H(name) { unsigned sz = dsz(in); \
	uint64_t b = in->op[1].kind == OP_IMM ? in->imm & size_mask(sz) : rd_op(cpu, in, 1, sz); \
	rmw(cpu, in, sz, b, fn, wb, false); return SOFT_NEXT; }
ALU(h_add, f_add, true)
ALU(h_sub, f_sub, true)
ALU(h_and, f_and, true)
ALU(h_or, f_or, true)
ALU(h_xor, f_xor, true)
ALU(h_cmp, f_sub, false)
ALU(h_test, f_and, false)

H(h_adc)
{
	unsigned sz = dsz(in);
	uint64_t b = in->op[1].kind == OP_IMM ? in->imm & size_mask(sz) : rd_op(cpu, in, 1, sz);
	cpu->lf_cf = soft_cf(cpu);
	rmw(cpu, in, sz, b, f_adc, true, false);
	return SOFT_NEXT;
}

H(h_sbb)
{
	unsigned sz = dsz(in);
	uint64_t b = in->op[1].kind == OP_IMM ? in->imm & size_mask(sz) : rd_op(cpu, in, 1, sz);
	cpu->lf_cf = soft_cf(cpu);
	rmw(cpu, in, sz, b, f_sbb, true, false);
	return SOFT_NEXT;
}

H(h_inc)
{
	uint8_t cf = soft_cf(cpu);
	rmw(cpu, in, dsz(in), cf, f_inc, true, false);
	return SOFT_NEXT;
}

H(h_dec)
{
	uint8_t cf = soft_cf(cpu);
	rmw(cpu, in, dsz(in), cf, f_dec, true, false);
	return SOFT_NEXT;
}

H(h_neg) { rmw(cpu, in, dsz(in), 0, f_neg, true, false); return SOFT_NEXT; }
H(h_not) { rmw(cpu, in, dsz(in), 0, f_not, true, false); return SOFT_NEXT; }

H(h_xchg)
{
	unsigned sz = dsz(in);
	if (in->op[0].kind == OP_REG && in->op[1].kind == OP_REG) {
		uint64_t a = rd_gpr(cpu, in->op[0].reg, sz), b = rd_gpr(cpu, in->op[1].reg, sz);
		wr_gpr(cpu, in->op[0].reg, sz, b);
		wr_gpr(cpu, in->op[1].reg, sz, a);
		return SOFT_NEXT;
	}
	/* one operand is memory: make it operand 0 for rmw */
	struct sinsn t = *in;
	if (in->op[1].kind == OP_MEM) {
		t.op[0] = in->op[1];
		t.op[1] = in->op[0];
	}
	uint64_t r = rd_gpr(cpu, t.op[1].reg, sz);
	uint64_t old = rmw(cpu, &t, sz, r, f_mov, true, true);
	wr_gpr(cpu, t.op[1].reg, sz, old);
	return SOFT_NEXT;
}

H(h_xadd)
{
	unsigned sz = dsz(in);
	uint64_t r = rd_gpr(cpu, in->op[1].reg, sz);
	uint64_t old = rmw(cpu, in, sz, r, f_add, true, false);
	wr_gpr(cpu, in->op[1].reg, sz, old);
	return SOFT_NEXT;
}

H(h_cmpxchg)
{
	unsigned sz = dsz(in);
	uint64_t acc = rd_gpr(cpu, RAX, sz);
	uint64_t src = rd_gpr(cpu, in->op[1].reg, sz);
	uint64_t old;
	if (in->op[0].kind == OP_REG) {
		old = rd_gpr(cpu, in->op[0].reg, sz);
		if (old == acc)
			wr_gpr(cpu, in->op[0].reg, sz, src);
	} else {
		uint64_t la = ea_lin(cpu, in, sz, true);
		void *p = lin_ptr_w(cpu, la, sz);
		if (p) {
			old = acc;
			if (!cas_sz(p, sz, &old, src)) {
				/* the locked form writes the old value back: a no-op */
			} else {
				old = acc;
			}
		} else {
			soft_lin_read(cpu, la, &old, sz, ACC_READ);
			old &= size_mask(sz);
			uint64_t w = old == acc ? src : old;
			soft_lin_write(cpu, la, &w, sz, ACC_WRITE);
		}
	}
	lf_set(cpu, LF_SUB, sz, acc, old, acc - old);
	if (old != acc)
		wr_gpr(cpu, RAX, sz, old);
	return SOFT_NEXT;
}

H(h_cmpxchg8b)
{
	/* CMPXCHG8B / CMPXCHG16B share the encoding; REX.W selects 16B. */
	unsigned sz = in->op[0].size == 16 ? 16 : 8;
	uint64_t la = ea_lin(cpu, in, sz, true);
	if (sz == 16 && (la & 15))
		soft_gp(cpu, 0);
	bool eq;
	if (sz == 8) {
		uint64_t cmp = (uint32_t)cpu->s.gpr[RAX] | (cpu->s.gpr[RDX] << 32);
		uint64_t nv = (uint32_t)cpu->s.gpr[RBX] | (cpu->s.gpr[RCX] << 32);
		void *p = lin_ptr_w(cpu, la, 8);
		uint64_t old = cmp;
		if (p) {
			eq = __atomic_compare_exchange_n((uint64_t *)p, &old, nv, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
		} else {
			soft_lin_read(cpu, la, &old, 8, ACC_READ);
			eq = old == cmp;
			uint64_t w = eq ? nv : old;
			soft_lin_write(cpu, la, &w, 8, ACC_WRITE);
		}
		if (!eq) {
			cpu->s.gpr[RAX] = (uint32_t)old;
			cpu->s.gpr[RDX] = old >> 32;
		}
	} else {
		uint64_t clo = cpu->s.gpr[RAX], chi = cpu->s.gpr[RDX];
		uint64_t nlo = cpu->s.gpr[RBX], nhi = cpu->s.gpr[RCX];
		void *p = lin_ptr_w(cpu, la, 16);
		uint64_t olo, ohi;
		if (p) {
			uint8_t z;
			olo = clo;
			ohi = chi;
			__asm__ volatile("lock cmpxchg16b %1; setz %0"
					 : "=q"(z), "+m"(*(volatile __int128 *)p), "+a"(olo), "+d"(ohi)
					 : "b"(nlo), "c"(nhi) : "memory", "cc");
			eq = z;
		} else {
			uint64_t o[2];
			soft_lin_read(cpu, la, o, 16, ACC_READ);
			olo = o[0];
			ohi = o[1];
			eq = olo == clo && ohi == chi;
			uint64_t w[2] = { eq ? nlo : olo, eq ? nhi : ohi };
			soft_lin_write(cpu, la, w, 16, ACC_WRITE);
		}
		if (!eq) {
			cpu->s.gpr[RAX] = olo;
			cpu->s.gpr[RDX] = ohi;
		}
	}
	soft_flags_commit(cpu);
	cpu->s.rflags = eq ? cpu->s.rflags | RFLAGS_ZF : cpu->s.rflags & ~RFLAGS_ZF;
	return SOFT_NEXT;
}

/* ---- moves ---- */

H(h_mov)
{
	const struct sop *d = &in->op[0], *s = &in->op[1];
	if (d->kind == OP_CR || s->kind == OP_CR || d->kind == OP_DR || s->kind == OP_DR) {
		return soft_mov_crdr(cpu, in);
	}
	if (d->kind == OP_SREG) {
		uint16_t sel = (uint16_t)rd_op(cpu, in, 1, 2);
		if (d->reg == SEG_CS)
			soft_ud(cpu);
		soft_load_seg(cpu, d->reg, sel);
		if (d->reg == SEG_SS)
			cpu->shadow = true;
		return SOFT_NEXT;
	}
	if (s->kind == OP_SREG) {
		uint64_t v = cpu->s.seg[s->reg].selector;
		if (d->kind == OP_REG)
			wr_gpr(cpu, d->reg, d->size, v);
		else
			wr_op(cpu, in, 0, 2, v);
		return SOFT_NEXT;
	}
	unsigned sz = dsz(in);
	if (d->kind == OP_REG) {
		uint64_t v = s->kind == OP_IMM ? in->imm : rd_op(cpu, in, 1, sz);
		wr_gpr(cpu, d->reg, sz, v);
	} else {
		uint64_t v = s->kind == OP_IMM ? in->imm : rd_gpr(cpu, s->reg, sz);
		lin_write(cpu, ea_lin(cpu, in, sz, true), sz, v);
	}
	return SOFT_NEXT;
}

H(h_movzx)
{
	uint64_t v = rd_op(cpu, in, 1, in->op[1].size);
	wr_gpr(cpu, in->op[0].reg, in->op[0].size, v);
	return SOFT_NEXT;
}

H(h_movsx)
{
	uint64_t v = sext(rd_op(cpu, in, 1, in->op[1].size), in->op[1].size);
	wr_gpr(cpu, in->op[0].reg, in->op[0].size, v);
	return SOFT_NEXT;
}

H(h_lea)
{
	wr_gpr(cpu, in->op[0].reg, in->op[0].size, ea_off(cpu, in));
	return SOFT_NEXT;
}

H(h_bswap)
{
	unsigned sz = in->op[0].size;
	uint64_t v = rd_gpr(cpu, in->op[0].reg, sz);
	if (sz == 8) v = __builtin_bswap64(v);
	else if (sz == 4) v = __builtin_bswap32((uint32_t)v);
	else v = 0; /* 16-bit BSWAP is undefined; hardware gives 0 */
	wr_gpr(cpu, in->op[0].reg, sz, v);
	return SOFT_NEXT;
}

H(h_movbe)
{
	unsigned sz = in->op[0].size;
	uint64_t v = rd_op(cpu, in, 1, sz);
	if (sz == 8) v = __builtin_bswap64(v);
	else if (sz == 4) v = __builtin_bswap32((uint32_t)v);
	else v = __builtin_bswap16((uint16_t)v);
	wr_op(cpu, in, 0, sz, v);
	return SOFT_NEXT;
}

H(h_cbw)
{
	switch (in->osz) {
	case 2: wr_gpr(cpu, RAX, 2, sext(cpu->s.gpr[RAX], 1)); break;
	case 4: wr_gpr(cpu, RAX, 4, sext(cpu->s.gpr[RAX], 2)); break;
	default: cpu->s.gpr[RAX] = sext(cpu->s.gpr[RAX], 4); break;
	}
	return SOFT_NEXT;
}

H(h_cwd)
{
	unsigned sz = in->osz;
	uint64_t a = rd_gpr(cpu, RAX, sz);
	wr_gpr(cpu, RDX, sz, (a >> (sz * 8 - 1)) & 1 ? ~0ULL : 0);
	return SOFT_NEXT;
}

H(h_xlat)
{
	uint64_t off = cpu->s.gpr[RBX] + (cpu->s.gpr[RAX] & 0xff);
	off &= size_mask(in->asz);
	wr_gpr(cpu, RAX, 1, lin_read(cpu, seg_lin(cpu, in->seg, off, 1, false), 1));
	return SOFT_NEXT;
}

/* ---- conditions ---- */

H(h_jcc)
{
	if (soft_cond(cpu, in->opcode & 0xf)) {
		uint64_t t = cpu->s.rip + in->len + in->imm;
		cpu->s.rip = in->osz == 8 || cpu->code_size == 8 ? t : t & size_mask(in->osz);
		return SOFT_JUMP;
	}
	return SOFT_NEXT;
}

H(h_setcc)
{
	wr_op(cpu, in, 0, 1, soft_cond(cpu, in->opcode & 0xf));
	return SOFT_NEXT;
}

H(h_cmovcc)
{
	unsigned sz = in->op[0].size;
	uint64_t v = rd_op(cpu, in, 1, sz);
	if (soft_cond(cpu, in->opcode & 0xf))
		wr_gpr(cpu, in->op[0].reg, sz, v);
	else if (sz == 4)
		wr_gpr(cpu, in->op[0].reg, 4, rd_gpr(cpu, in->op[0].reg, 4));
	return SOFT_NEXT;
}

/* ---- control flow (near) ---- */

/* The new RIP of a near branch. In 64-bit mode a non-canonical target is
 * #GP(0) at the branch itself (Intel SDM Vol. 2, JMP/CALL/RET "64-bit mode
 * exceptions"), so callers compute it before committing anything. */
static inline uint64_t ip_mask(struct soft_cpu *cpu, unsigned osz, uint64_t t)
{
	if (cpu->code_size == 8) {
		if (__builtin_expect((uint64_t)((int64_t)(t << 16) >> 16) != t, 0))
			soft_gp(cpu, 0);
		return t;
	}
	return t & size_mask(osz);
}

H(h_jmp)
{
	if (in->opcode != 0xea && in->op[0].kind == OP_IMM) {
		cpu->s.rip = ip_mask(cpu, in->osz, cpu->s.rip + in->len + in->imm);
		return SOFT_JUMP;
	}
	if (in->opcode == 0xea || (in->opcode == 0xff && in->modrm_reg == 5))
		return soft_far_jmp(cpu, in);
	unsigned sz = cpu->code_size == 8 ? 8 : in->osz;
	cpu->s.rip = ip_mask(cpu, sz, rd_op(cpu, in, 0, sz));
	return SOFT_JUMP;
}

H(h_call)
{
	if (in->opcode == 0x9a || (in->opcode == 0xff && in->modrm_reg == 3))
		return soft_far_call(cpu, in);
	unsigned sz = cpu->code_size == 8 ? 8 : in->osz;
	uint64_t next = cpu->s.rip + in->len;
	uint64_t t = in->op[0].kind == OP_IMM ? next + in->imm : rd_op(cpu, in, 0, sz);
	t = ip_mask(cpu, sz, t);
	soft_push(cpu, sz, next);
	cpu->s.rip = t;
	return SOFT_JUMP;
}

H(h_ret)
{
	if (in->opcode == 0xca || in->opcode == 0xcb)
		return soft_far_ret(cpu, in);
	unsigned sz = cpu->code_size == 8 ? 8 : in->osz;
	uint64_t t = ip_mask(cpu, sz, soft_stack_peek(cpu, 0, sz));
	soft_pop(cpu, sz);
	if (in->nops && in->op[0].kind == OP_IMM) {
		uint64_t m = size_mask(cpu->stack_size);
		cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | ((cpu->s.gpr[RSP] + (in->imm & 0xffff)) & m);
	}
	cpu->s.rip = t;
	return SOFT_JUMP;
}

static int loop_common(struct soft_cpu *cpu, const struct sinsn *in, int kind)
{
	unsigned as = in->asz;
	uint64_t c = rd_gpr(cpu, RCX, as);
	bool take;
	if (kind == 3) {
		take = c == 0;
	} else {
		c = (c - 1) & size_mask(as);
		take = c != 0;
		if (kind == 1) take = take && soft_cond(cpu, 4);
		if (kind == 2) take = take && !soft_cond(cpu, 4);
	}
	/* the target is checked before RCX is written (precise #GP) */
	uint64_t t = take ? ip_mask(cpu, in->osz, cpu->s.rip + in->len + in->imm) : 0;
	if (kind != 3)
		wr_gpr(cpu, RCX, as, c);
	if (take) {
		cpu->s.rip = t;
		return SOFT_JUMP;
	}
	return SOFT_NEXT;
}
H(h_loop) { return loop_common(cpu, in, 0); }
H(h_loope) { return loop_common(cpu, in, 1); }
H(h_loopne) { return loop_common(cpu, in, 2); }
H(h_jcxz) { return loop_common(cpu, in, 3); }

/* ---- stack ---- */

static inline unsigned stack_osz(struct soft_cpu *cpu, const struct sinsn *in)
{
	if (cpu->code_size == 8)
		return in->osz == 2 ? 2 : 8;
	return in->osz;
}

H(h_push)
{
	unsigned sz = stack_osz(cpu, in);
	uint64_t v;
	if (in->op[0].kind == OP_SREG)
		v = cpu->s.seg[in->op[0].reg].selector;
	else if (in->op[0].kind == OP_IMM)
		v = in->imm;
	else
		v = rd_op(cpu, in, 0, sz);
	soft_push(cpu, sz, v);
	return SOFT_NEXT;
}

H(h_pop)
{
	unsigned sz = stack_osz(cpu, in);
	uint64_t oldsp = cpu->s.gpr[RSP];
	uint64_t v = soft_stack_peek(cpu, 0, sz);
	if (in->op[0].kind == OP_SREG) {
		soft_load_seg(cpu, in->op[0].reg, (uint16_t)v);
		soft_pop(cpu, sz);
		if (in->op[0].reg == SEG_SS)
			cpu->shadow = true;
		return SOFT_NEXT;
	}
	soft_pop(cpu, sz);
	if (in->op[0].kind == OP_REG) {
		wr_gpr(cpu, in->op[0].reg, sz, v);
		return SOFT_NEXT;
	}
	/* memory destination: the address uses the incremented RSP */
	uint64_t la;
	la = ea_lin(cpu, in, sz, true);
	uint64_t newsp = cpu->s.gpr[RSP];
	cpu->s.gpr[RSP] = oldsp;
	/* probe both pages (a #PF reports the first byte of the second) */
	soft_lin_ptr(cpu, la, sz, ACC_WRITE);
	cpu->s.gpr[RSP] = newsp;
	lin_write(cpu, la, sz, v);
	return SOFT_NEXT;
}

H(h_pusha)
{
	unsigned sz = in->osz;
	uint64_t sp = cpu->s.gpr[RSP];
	uint64_t m = size_mask(cpu->stack_size);
	/* check the whole area first for a precise fault */
	uint64_t lo = (sp - 8 * sz) & m;
	seg_lin(cpu, SEG_SS, lo, 8 * sz, true);
	for (int r = 0; r < 8; r++)
		soft_push(cpu, sz, r == RSP ? sp : cpu->s.gpr[r]);
	return SOFT_NEXT;
}

H(h_popa)
{
	unsigned sz = in->osz;
	uint64_t v[8];
	for (int r = 7; r >= 0; r--)
		v[r] = soft_stack_peek(cpu, (7 - r) * sz, sz);
	for (int r = 7; r >= 0; r--)
		if (r != RSP)
			wr_gpr(cpu, r, sz, v[r]);
	uint64_t m = size_mask(cpu->stack_size);
	cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | ((cpu->s.gpr[RSP] + 8 * sz) & m);
	return SOFT_NEXT;
}

H(h_enter)
{
	unsigned sz = stack_osz(cpu, in);
	uint64_t alloc = in->imm & 0xffff;
	unsigned level = in->imm2 & 31;
	uint64_t m = size_mask(cpu->stack_size);
	uint64_t bp = cpu->s.gpr[RBP];
	soft_push(cpu, sz, bp);
	uint64_t frame = cpu->s.gpr[RSP] & m;
	if (level > 0) {
		uint64_t b = bp;
		for (unsigned i = 1; i < level; i++) {
			b = (b - sz) & m;
			soft_push(cpu, sz, lin_read(cpu, seg_lin(cpu, SEG_SS, b, sz, false), sz));
		}
		soft_push(cpu, sz, frame);
	}
	uint64_t nsp = (cpu->s.gpr[RSP] - alloc) & m;
	seg_lin(cpu, SEG_SS, nsp, 1, true);
	wr_gpr(cpu, RBP, sz, frame);
	cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | nsp;
	return SOFT_NEXT;
}

H(h_leave)
{
	unsigned sz = stack_osz(cpu, in);
	uint64_t m = size_mask(cpu->stack_size);
	uint64_t oldsp = cpu->s.gpr[RSP];
	cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | (cpu->s.gpr[RBP] & m);
	uint64_t v;
	{
		uint64_t sp = cpu->s.gpr[RSP] & m;
		uint64_t la;
		/* restore RSP if the read faults */
		struct soft_cpu *c = cpu;
		la = seg_lin(c, SEG_SS, sp, sz, false);
		(void)oldsp;
		v = lin_read(c, la, sz);
	}
	cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | ((cpu->s.gpr[RSP] + sz) & m);
	wr_gpr(cpu, RBP, sz, v);
	return SOFT_NEXT;
}

/* ---- multiply / divide ---- */

H(h_mul)
{
	unsigned sz = in->op[0].size;
	uint64_t b = rd_op(cpu, in, 0, sz);
	uint64_t a = rd_gpr(cpu, RAX, sz);
	uint64_t lo, hi;
	switch (sz) {
	case 1: { uint64_t r = a * b; wr_gpr(cpu, RAX, 2, r); lo = r & 0xff; hi = (r >> 8) & 0xff; break; }
	case 2: { uint64_t r = a * b; wr_gpr(cpu, RAX, 2, r); wr_gpr(cpu, RDX, 2, r >> 16); lo = r & 0xffff; hi = r >> 16; break; }
	case 4: { uint64_t r = a * b; wr_gpr(cpu, RAX, 4, r); wr_gpr(cpu, RDX, 4, r >> 32); lo = (uint32_t)r; hi = r >> 32; break; }
	default: { unsigned __int128 r = (unsigned __int128)a * b; lo = (uint64_t)r; hi = (uint64_t)(r >> 64); cpu->s.gpr[RAX] = lo; cpu->s.gpr[RDX] = hi; break; }
	}
	lf_set(cpu, LF_MUL, sz, lo, hi != 0, lo);
	return SOFT_NEXT;
}

H(h_imul)
{
	if (in->nops == 1 || (in->nops >= 1 && in->op[1].kind == OP_NONE)) {
		unsigned sz = in->op[0].size;
		int64_t b = (int64_t)sext(rd_op(cpu, in, 0, sz), sz);
		int64_t a = (int64_t)sext(rd_gpr(cpu, RAX, sz), sz);
		bool ovf;
		uint64_t lo;
		switch (sz) {
		case 1: { int64_t r = a * b; wr_gpr(cpu, RAX, 2, (uint64_t)r); ovf = r != (int8_t)r; lo = (uint64_t)r; break; }
		case 2: { int64_t r = a * b; wr_gpr(cpu, RAX, 2, (uint64_t)r); wr_gpr(cpu, RDX, 2, (uint64_t)r >> 16); ovf = r != (int16_t)r; lo = (uint64_t)r; break; }
		case 4: { int64_t r = a * b; wr_gpr(cpu, RAX, 4, (uint64_t)r); wr_gpr(cpu, RDX, 4, (uint64_t)r >> 32); ovf = r != (int32_t)r; lo = (uint64_t)r; break; }
		default: { __int128 r = (__int128)a * b; cpu->s.gpr[RAX] = (uint64_t)r; cpu->s.gpr[RDX] = (uint64_t)((unsigned __int128)r >> 64); ovf = r != (int64_t)r; lo = (uint64_t)r; break; }
		}
		lf_set(cpu, LF_MUL, sz, lo, ovf, lo);
		return SOFT_NEXT;
	}
	unsigned sz = in->op[0].size;
	int64_t a, b;
	if (in->nops >= 3 && in->op[2].kind == OP_IMM) {
		a = (int64_t)sext(rd_op(cpu, in, 1, sz), sz);
		b = (int64_t)sext(in->imm & size_mask(sz), sz);
	} else {
		a = (int64_t)sext(rd_gpr(cpu, in->op[0].reg, sz), sz);
		b = (int64_t)sext(rd_op(cpu, in, 1, sz), sz);
	}
	__int128 r = (__int128)a * b;
	uint64_t lo = (uint64_t)r;
	bool ovf = r != (__int128)(int64_t)sext(lo & size_mask(sz), sz);
	wr_gpr(cpu, in->op[0].reg, sz, lo);
	lf_set(cpu, LF_MUL, sz, lo, ovf, lo);
	return SOFT_NEXT;
}

H(h_div)
{
	unsigned sz = in->op[0].size;
	uint64_t d = rd_op(cpu, in, 0, sz);
	if (!d)
		soft_raise(cpu, 0, 0, false);
	switch (sz) {
	case 1: { uint64_t n = rd_gpr(cpu, RAX, 2); uint64_t q = n / d; if (q > 0xff) soft_raise(cpu, 0, 0, false);
		wr_gpr(cpu, RAX, 2, (q & 0xff) | ((n % d) << 8)); break; }
	case 2: { uint64_t n = rd_gpr(cpu, RAX, 2) | (rd_gpr(cpu, RDX, 2) << 16); uint64_t q = n / d; if (q > 0xffff) soft_raise(cpu, 0, 0, false);
		wr_gpr(cpu, RAX, 2, q); wr_gpr(cpu, RDX, 2, n % d); break; }
	case 4: { uint64_t n = rd_gpr(cpu, RAX, 4) | (rd_gpr(cpu, RDX, 4) << 32); uint64_t q = n / d; if (q > 0xffffffffULL) soft_raise(cpu, 0, 0, false);
		wr_gpr(cpu, RAX, 4, q); wr_gpr(cpu, RDX, 4, n % d); break; }
	default: { unsigned __int128 n = ((unsigned __int128)cpu->s.gpr[RDX] << 64) | cpu->s.gpr[RAX];
		unsigned __int128 q = n / d; if (q >> 64) soft_raise(cpu, 0, 0, false);
		cpu->s.gpr[RAX] = (uint64_t)q; cpu->s.gpr[RDX] = (uint64_t)(n % d); break; }
	}
	return SOFT_NEXT;
}

H(h_idiv)
{
	unsigned sz = in->op[0].size;
	int64_t d = (int64_t)sext(rd_op(cpu, in, 0, sz), sz);
	if (!d)
		soft_raise(cpu, 0, 0, false);
	switch (sz) {
	case 1: { int64_t n = (int16_t)rd_gpr(cpu, RAX, 2); int64_t q = n / d; if (q != (int8_t)q) soft_raise(cpu, 0, 0, false);
		wr_gpr(cpu, RAX, 2, ((uint64_t)q & 0xff) | (((uint64_t)(n % d) & 0xff) << 8)); break; }
	case 2: { int64_t n = (int32_t)(rd_gpr(cpu, RAX, 2) | (rd_gpr(cpu, RDX, 2) << 16)); int64_t q = n / d; if (q != (int16_t)q) soft_raise(cpu, 0, 0, false);
		wr_gpr(cpu, RAX, 2, (uint64_t)q); wr_gpr(cpu, RDX, 2, (uint64_t)(n % d)); break; }
	case 4: { int64_t n = (int64_t)(rd_gpr(cpu, RAX, 4) | (rd_gpr(cpu, RDX, 4) << 32)); 
		if (n == INT64_MIN && d == -1) soft_raise(cpu, 0, 0, false);
		int64_t q = n / d; if (q != (int32_t)q) soft_raise(cpu, 0, 0, false);
		wr_gpr(cpu, RAX, 4, (uint64_t)q); wr_gpr(cpu, RDX, 4, (uint64_t)(n % d)); break; }
	default: { __int128 n = (__int128)(((unsigned __int128)cpu->s.gpr[RDX] << 64) | cpu->s.gpr[RAX]);
		if (d == -1 && (unsigned __int128)n == (unsigned __int128)1 << 127) soft_raise(cpu, 0, 0, false);
		__int128 q = n / d; if (q != (int64_t)q) soft_raise(cpu, 0, 0, false);
		cpu->s.gpr[RAX] = (uint64_t)q; cpu->s.gpr[RDX] = (uint64_t)(n % d); break; }
	}
	return SOFT_NEXT;
}

/* ---- shifts and rotates ---- */

static unsigned shift_count(struct soft_cpu *cpu, const struct sinsn *in, int i, unsigned sz)
{
	uint64_t c = in->op[i].kind == OP_IMM ? in->imm : rd_gpr(cpu, RCX, 1);
	return (unsigned)(c & (sz == 8 ? 63 : 31));
}

/* A zero count changes no flags, but a 32-bit register destination is
 * still written (upper half cleared) and a memory operand still accessed. */
static int shift_zero(struct soft_cpu *cpu, const struct sinsn *in, unsigned sz)
{
	if (in->op[0].kind == OP_REG) {
		wr_gpr(cpu, in->op[0].reg, sz, rd_gpr(cpu, in->op[0].reg, sz));
		return SOFT_NEXT;
	}
	/* a memory destination is still checked for write access (the
	 * hardware reads it as the first half of a read-modify-write: a #PF
	 * has W=1 in its error code); nothing is written */
	uint64_t la = ea_lin(cpu, in, sz, true);
	if (!lin_ptr_w(cpu, la, sz)) {
		uint64_t v = 0;
		soft_lin_read(cpu, la, &v, sz, ACC_READ);
	}
	return SOFT_NEXT;
}

static uint64_t f_shl(struct soft_cpu *c, uint64_t a, uint64_t n, unsigned sz) { uint64_t r = n >= 64 ? 0 : a << n; lf_set(c, LF_SHL, sz, a, n, r); return r; }
static uint64_t f_shr(struct soft_cpu *c, uint64_t a, uint64_t n, unsigned sz) { a &= size_mask(sz); uint64_t r = n >= 64 ? 0 : a >> n; lf_set(c, LF_SHR, sz, a, n, r); return r; }
static uint64_t f_sar(struct soft_cpu *c, uint64_t a, uint64_t n, unsigned sz) { int64_t s = (int64_t)sext(a, sz); uint64_t r = (uint64_t)(s >> (n > 63 ? 63 : n)); lf_set(c, LF_SAR, sz, a, n, r); return r; }

static int shift(struct soft_cpu *cpu, const struct sinsn *in, alu_fn fn)
{
	unsigned sz = in->op[0].size;
	unsigned n = shift_count(cpu, in, 1, sz);
	if (!n)
		return shift_zero(cpu, in, sz);
	rmw(cpu, in, sz, n, fn, true, false);
	return SOFT_NEXT;
}
H(h_shl) { return shift(cpu, in, f_shl); }
H(h_shr) { return shift(cpu, in, f_shr); }
H(h_sar) { return shift(cpu, in, f_sar); }

static void set_cf_of(struct soft_cpu *cpu, bool cf, bool of)
{
	soft_flags_commit(cpu);
	uint64_t f = cpu->s.rflags & ~(RFLAGS_CF | RFLAGS_OF);
	if (cf) f |= RFLAGS_CF;
	if (of) f |= RFLAGS_OF;
	cpu->s.rflags = f;
}

/* Rotates keep their operands in lf_src1 (count) and lf_cf (carry-in) as
 * scratch: flags are set eagerly after the rmw. */
static uint64_t f_rol(struct soft_cpu *c, uint64_t a, uint64_t n, unsigned sz)
{
	(void)c;
	unsigned bits = sz * 8;
	a &= size_mask(sz);
	n %= bits;
	return n ? ((a << n) | (a >> (bits - n))) & size_mask(sz) : a;
}
static uint64_t f_ror(struct soft_cpu *c, uint64_t a, uint64_t n, unsigned sz)
{
	(void)c;
	unsigned bits = sz * 8;
	a &= size_mask(sz);
	n %= bits;
	return n ? ((a >> n) | (a << (bits - n))) & size_mask(sz) : a;
}
static uint64_t f_rcl(struct soft_cpu *c, uint64_t a, uint64_t n, unsigned sz)
{
	unsigned bits = sz * 8;
	unsigned __int128 v = ((unsigned __int128)c->lf_cf << bits) | (a & size_mask(sz));
	n %= bits + 1;
	unsigned __int128 m = (((unsigned __int128)1) << (bits + 1)) - 1;
	if (n)
		v = ((v << n) | (v >> (bits + 1 - n))) & m;
	c->lf_res = (uint64_t)(v >> bits) & 1;
	return (uint64_t)v & size_mask(sz);
}
static uint64_t f_rcr(struct soft_cpu *c, uint64_t a, uint64_t n, unsigned sz)
{
	unsigned bits = sz * 8;
	unsigned __int128 v = ((unsigned __int128)c->lf_cf << bits) | (a & size_mask(sz));
	n %= bits + 1;
	unsigned __int128 m = (((unsigned __int128)1) << (bits + 1)) - 1;
	if (n)
		v = ((v >> n) | (v << (bits + 1 - n))) & m;
	c->lf_res = (uint64_t)(v >> bits) & 1;
	return (uint64_t)v & size_mask(sz);
}

static int rotate(struct soft_cpu *cpu, const struct sinsn *in, int kind)
{
	unsigned sz = in->op[0].size, bits = sz * 8;
	unsigned n = shift_count(cpu, in, 1, sz);
	if (!n)
		return shift_zero(cpu, in, sz);
	static const alu_fn fns[4] = { f_rol, f_ror, f_rcl, f_rcr };
	bool cf_in = soft_cf(cpu);
	soft_flags_commit(cpu);
	cpu->lf_cf = cf_in;
	uint64_t old = rmw(cpu, in, sz, n, fns[kind], true, false);
	uint64_t r;
	bool cf, of;
	uint64_t msb = 1ULL << (bits - 1);
	switch (kind) {
	case 0: r = f_rol(cpu, old, n, sz); cf = r & 1; of = ((r & msb) != 0) ^ cf; break;
	case 1: r = f_ror(cpu, old, n, sz); cf = (r & msb) != 0; of = ((r ^ (r << 1)) & msb) != 0; break;
	case 2: r = f_rcl(cpu, old, n, sz); cf = cpu->lf_res; of = ((r & msb) != 0) ^ cf; break;
	default: r = f_rcr(cpu, old, n, sz); cf = cpu->lf_res; of = ((r ^ (r << 1)) & msb) != 0; break;
	}
	cpu->lf_op = LF_NONE;
	set_cf_of(cpu, cf, of);
	return SOFT_NEXT;
}
H(h_rol) { return rotate(cpu, in, 0); }
H(h_ror) { return rotate(cpu, in, 1); }
H(h_rcl) { return rotate(cpu, in, 2); }
H(h_rcr) { return rotate(cpu, in, 3); }

static int shxd(struct soft_cpu *cpu, const struct sinsn *in, bool left)
{
	unsigned sz = in->op[0].size, bits = sz * 8;
	unsigned n = shift_count(cpu, in, 2, sz);
	uint64_t src = rd_gpr(cpu, in->op[1].reg, sz);
	if (!n)
		return shift_zero(cpu, in, sz);
	/* a memory destination is accessed as a read-modify-write: write
	 * access is checked on the read */
	uint64_t a, la = 0;
	void *p = NULL;
	if (in->op[0].kind == OP_MEM) {
		la = ea_lin(cpu, in, sz, true);
		p = lin_ptr_w(cpu, la, sz);
		a = 0;
		if (p)
			a = ld(p, sz);
		else
			soft_lin_read(cpu, la, &a, sz, ACC_READ);
	} else {
		a = rd_op(cpu, in, 0, sz);
	}
	uint64_t r;
	bool cf;
	if (sz == 2 && n > 16) {
		/* undefined by the manuals; this is what Intel hardware does:
		 * the operands form a 32-bit value refilled from the destination */
		if (left) {
			uint32_t t = ((uint32_t)a << 16) | (uint32_t)src;
			uint32_t r32 = (t << n) | ((uint32_t)a << (n - 16));
			r = r32 >> 16;
			cf = (t >> (32 - n)) & 1;
		} else {
			uint32_t t = ((uint32_t)src << 16) | (uint32_t)a;
			uint32_t r32 = (t >> n) | ((uint32_t)a << (32 - n));
			r = r32 & 0xffff;
			cf = (t >> (n - 1)) & 1;
		}
	} else if (left) {
		unsigned __int128 v = ((unsigned __int128)a << bits) | src;
		r = (uint64_t)((v << n) >> bits);
		cf = (a >> (bits - n)) & 1;
	} else {
		unsigned __int128 v = ((unsigned __int128)src << bits) | a;
		r = (uint64_t)(v >> n);
		cf = (a >> (n - 1)) & 1;
	}
	r &= size_mask(sz);
	if (p)
		st(p, sz, r);
	else if (in->op[0].kind == OP_MEM)
		soft_lin_write(cpu, la, &r, sz, ACC_WRITE);
	else
		wr_op(cpu, in, 0, sz, r);
	lf_set(cpu, LF_LOGIC, sz, 0, 0, r);
	soft_flags_commit(cpu);
	uint64_t msb = 1ULL << (bits - 1);
	bool of = ((r ^ a) & msb) != 0;
	set_cf_of(cpu, cf, of);
	return SOFT_NEXT;
}
H(h_shld) { return shxd(cpu, in, true); }
H(h_shrd) { return shxd(cpu, in, false); }

/* ---- bit operations ---- */

static uint64_t f_bts(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { (void)c; (void)sz; return a | (1ULL << b); }
static uint64_t f_btr(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { (void)c; (void)sz; return a & ~(1ULL << b); }
static uint64_t f_btc(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { (void)c; (void)sz; return a ^ (1ULL << b); }
static uint64_t f_bt(struct soft_cpu *c, uint64_t a, uint64_t b, unsigned sz) { (void)c; (void)b; (void)sz; return a; }

static int bitop(struct soft_cpu *cpu, const struct sinsn *in, alu_fn fn, bool wb)
{
	unsigned sz = in->op[0].size, bits = sz * 8;
	uint64_t off;
	struct sinsn t = *in;
	if (in->op[1].kind == OP_IMM) {
		off = in->imm & (bits - 1);
	} else {
		int64_t o = (int64_t)sext(rd_gpr(cpu, in->op[1].reg, sz), sz);
		if (in->op[0].kind == OP_MEM) {
			/* the bit string extends beyond the operand */
			int64_t words = o >> (sz == 8 ? 6 : sz == 4 ? 5 : 4);
			t.disp += words * (int64_t)sz;
			off = (uint64_t)o & (bits - 1);
		} else {
			off = (uint64_t)o & (bits - 1);
		}
	}
	uint64_t old = rmw(cpu, &t, sz, off, fn, wb, false);
	soft_flags_commit(cpu);
	cpu->s.rflags = ((old >> off) & 1) ? cpu->s.rflags | RFLAGS_CF : cpu->s.rflags & ~RFLAGS_CF;
	return SOFT_NEXT;
}
H(h_bt) { return bitop(cpu, in, f_bt, false); }
H(h_bts) { return bitop(cpu, in, f_bts, true); }
H(h_btr) { return bitop(cpu, in, f_btr, true); }
H(h_btc) { return bitop(cpu, in, f_btc, true); }

static void set_zf(struct soft_cpu *cpu, bool z)
{
	soft_flags_commit(cpu);
	cpu->s.rflags = z ? cpu->s.rflags | RFLAGS_ZF : cpu->s.rflags & ~RFLAGS_ZF;
}

H(h_bsf)
{
	unsigned sz = in->op[0].size;
	uint64_t v = rd_op(cpu, in, 1, sz);
	if (!v) {
		set_zf(cpu, true);
		return SOFT_NEXT;
	}
	wr_gpr(cpu, in->op[0].reg, sz, (uint64_t)__builtin_ctzll(v));
	set_zf(cpu, false);
	return SOFT_NEXT;
}

H(h_bsr)
{
	unsigned sz = in->op[0].size;
	uint64_t v = rd_op(cpu, in, 1, sz);
	if (!v) {
		set_zf(cpu, true);
		return SOFT_NEXT;
	}
	wr_gpr(cpu, in->op[0].reg, sz, (uint64_t)(63 - __builtin_clzll(v)));
	set_zf(cpu, false);
	return SOFT_NEXT;
}

static void cnt_flags(struct soft_cpu *cpu, bool cf, bool zf)
{
	soft_flags_commit(cpu);
	uint64_t f = cpu->s.rflags & ~(RFLAGS_CF | RFLAGS_ZF | RFLAGS_OF | RFLAGS_SF | RFLAGS_AF | RFLAGS_PF);
	if (cf) f |= RFLAGS_CF;
	if (zf) f |= RFLAGS_ZF;
	cpu->s.rflags = f;
}

H(h_lzcnt)
{
	unsigned sz = in->op[0].size, bits = sz * 8;
	uint64_t v = rd_op(cpu, in, 1, sz);
	uint64_t r = v ? (uint64_t)(__builtin_clzll(v) - (64 - bits)) : bits;
	wr_gpr(cpu, in->op[0].reg, sz, r);
	cnt_flags(cpu, v == 0, r == 0);
	return SOFT_NEXT;
}

H(h_popcnt)
{
	unsigned sz = in->op[0].size;
	uint64_t v = rd_op(cpu, in, 1, sz);
	uint64_t r = (uint64_t)__builtin_popcountll(v);
	wr_gpr(cpu, in->op[0].reg, sz, r);
	cnt_flags(cpu, false, v == 0);
	return SOFT_NEXT;
}

/* ---- flags ---- */

static void fl_set(struct soft_cpu *cpu, uint64_t bit, int how)
{
	soft_flags_commit(cpu);
	if (how == 0) cpu->s.rflags &= ~bit;
	else if (how == 1) cpu->s.rflags |= bit;
	else cpu->s.rflags ^= bit;
}
H(h_clc) { (void)in; fl_set(cpu, RFLAGS_CF, 0); return SOFT_NEXT; }
H(h_stc) { (void)in; fl_set(cpu, RFLAGS_CF, 1); return SOFT_NEXT; }
H(h_cmc) { (void)in; fl_set(cpu, RFLAGS_CF, 2); return SOFT_NEXT; }
H(h_cld) { (void)in; cpu->s.rflags &= ~RFLAGS_DF; return SOFT_NEXT; }
H(h_std) { (void)in; cpu->s.rflags |= RFLAGS_DF; return SOFT_NEXT; }

H(h_lahf)
{
	(void)in;
	wr_gpr(cpu, REG_AH, 1, (soft_flags(cpu) & 0xd5) | 2);
	return SOFT_NEXT;
}

H(h_sahf)
{
	(void)in;
	soft_flags_commit(cpu);
	uint64_t ah = (cpu->s.gpr[RAX] >> 8) & 0xd5;
	cpu->s.rflags = (cpu->s.rflags & ~0xd5ULL) | ah | RFLAGS_FIXED;
	return SOFT_NEXT;
}

H(h_salc)
{
	(void)in;
	wr_gpr(cpu, RAX, 1, soft_cf(cpu) ? 0xff : 0);
	return SOFT_NEXT;
}

H(h_nop) { (void)cpu; (void)in; return SOFT_NEXT; }
H(h_clflush)
{
	/* no caches to flush; the address must still be valid */
	uint64_t la = ea_lin(cpu, in, 1, false);
	soft_translate(cpu, la, ACC_READ);
	return SOFT_NEXT;
}
H(h_fence) { (void)cpu; (void)in; __atomic_thread_fence(__ATOMIC_SEQ_CST); return SOFT_NEXT; }

/* ---- BCD (legal outside 64-bit mode only; Zydis rejects them there) ---- */

static void bcd_flags(struct soft_cpu *cpu, uint8_t al, bool cf, bool af)
{
	lf_set(cpu, LF_LOGIC, 1, 0, 0, al);
	soft_flags_commit(cpu);
	uint64_t f = cpu->s.rflags & ~(RFLAGS_CF | RFLAGS_AF);
	if (cf) f |= RFLAGS_CF;
	if (af) f |= RFLAGS_AF;
	cpu->s.rflags = f;
}

H(h_daa)
{
	(void)in;
	uint64_t fl = soft_flags(cpu);
	uint8_t al = (uint8_t)cpu->s.gpr[RAX], old = al;
	bool cf = fl & RFLAGS_CF, af = false, ncf = false;
	if ((al & 0xf) > 9 || (fl & RFLAGS_AF)) { al += 6; af = true; ncf = cf || old > 0xf9; }
	if (old > 0x99 || cf) { al += 0x60; ncf = true; }
	wr_gpr(cpu, RAX, 1, al);
	bcd_flags(cpu, al, ncf, af);
	return SOFT_NEXT;
}

H(h_das)
{
	(void)in;
	uint64_t fl = soft_flags(cpu);
	uint8_t al = (uint8_t)cpu->s.gpr[RAX], old = al;
	bool cf = fl & RFLAGS_CF, af = false, ncf = false;
	if ((al & 0xf) > 9 || (fl & RFLAGS_AF)) { al -= 6; af = true; ncf = cf || old < 6; }
	if (old > 0x99 || cf) { al -= 0x60; ncf = true; }
	wr_gpr(cpu, RAX, 1, al);
	bcd_flags(cpu, al, ncf, af);
	return SOFT_NEXT;
}

H(h_aaa)
{
	(void)in;
	uint64_t fl = soft_flags(cpu);
	uint16_t ax = (uint16_t)cpu->s.gpr[RAX];
	bool adj = (ax & 0xf) > 9 || (fl & RFLAGS_AF);
	if (adj) ax = (uint16_t)(ax + 0x106);
	ax &= 0xff0f;
	wr_gpr(cpu, RAX, 2, ax);
	bcd_flags(cpu, (uint8_t)ax, adj, adj);
	return SOFT_NEXT;
}

H(h_aas)
{
	(void)in;
	uint64_t fl = soft_flags(cpu);
	uint16_t ax = (uint16_t)cpu->s.gpr[RAX];
	bool adj = (ax & 0xf) > 9 || (fl & RFLAGS_AF);
	if (adj) { ax = (uint16_t)(ax - 6); ax = (uint16_t)(ax - 0x100); }
	ax &= 0xff0f;
	wr_gpr(cpu, RAX, 2, ax);
	bcd_flags(cpu, (uint8_t)ax, adj, adj);
	return SOFT_NEXT;
}

H(h_aam)
{
	uint8_t base = (uint8_t)in->imm;
	if (!base)
		soft_raise(cpu, 0, 0, false);
	uint8_t al = (uint8_t)cpu->s.gpr[RAX];
	uint8_t r = al % base;
	wr_gpr(cpu, RAX, 2, ((uint16_t)(al / base) << 8) | r);
	lf_set(cpu, LF_LOGIC, 1, 0, 0, r);
	return SOFT_NEXT;
}

H(h_aad)
{
	uint8_t base = (uint8_t)in->imm;
	uint16_t ax = (uint16_t)cpu->s.gpr[RAX];
	uint8_t al = (uint8_t)((ax & 0xff) + ((ax >> 8) * base));
	wr_gpr(cpu, RAX, 2, al);
	lf_set(cpu, LF_LOGIC, 1, 0, 0, al);
	return SOFT_NEXT;
}

/* ---- string operations ---- */

static inline int64_t str_step(struct soft_cpu *cpu, unsigned sz)
{
	return (cpu->s.rflags & RFLAGS_DF) ? -(int64_t)sz : (int64_t)sz;
}

static inline void adv(struct soft_cpu *cpu, int r, unsigned as, int64_t d)
{
	wr_gpr(cpu, r, as, cpu->s.gpr[r] + (uint64_t)d);
}

/* Elements per execution of a REP instruction before it yields to the run
 * loop (interrupts, kicks); RIP stays at the instruction until RCX is 0. */
#define REP_CHUNK 65536

enum { S_MOVS, S_STOS, S_LODS, S_CMPS, S_SCAS };

static unsigned str_size(const struct sinsn *in)
{
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_MOVSB: case ZYDIS_MNEMONIC_STOSB: case ZYDIS_MNEMONIC_LODSB:
	case ZYDIS_MNEMONIC_CMPSB: case ZYDIS_MNEMONIC_SCASB: return 1;
	case ZYDIS_MNEMONIC_MOVSW: case ZYDIS_MNEMONIC_STOSW: case ZYDIS_MNEMONIC_LODSW:
	case ZYDIS_MNEMONIC_CMPSW: case ZYDIS_MNEMONIC_SCASW: return 2;
	case ZYDIS_MNEMONIC_MOVSQ: case ZYDIS_MNEMONIC_STOSQ: case ZYDIS_MNEMONIC_LODSQ:
	case ZYDIS_MNEMONIC_CMPSQ: case ZYDIS_MNEMONIC_SCASQ: return 8;
	default: return 4;
	}
}

/* Bulk forward REP MOVS/STOS inside one page of each side, in RAM. Returns
 * elements done (0: use the element loop). */
static uint64_t str_bulk(struct soft_cpu *cpu, const struct sinsn *in, int kind, unsigned sz, uint64_t cnt)
{
	unsigned as = in->asz;
	if ((cpu->s.rflags & RFLAGS_DF) || as == 2)
		return 0;
	uint64_t di = rd_gpr(cpu, RDI, as);
	uint64_t dla = seg_lin(cpu, SEG_ES, di, sz, true);
	uint64_t room = (4096 - (dla & 0xfff)) / sz;
	const uint8_t *sp = NULL;
	uint64_t sla = 0;
	if (kind == S_MOVS) {
		uint64_t si = rd_gpr(cpu, RSI, as);
		sla = seg_lin(cpu, in->seg, si, sz, false);
		uint64_t r2 = (4096 - (sla & 0xfff)) / sz;
		if (r2 < room) room = r2;
	}
	if (room > cnt) room = cnt;
	if (room < 2)
		return 0;
	uint64_t bytes = room * sz;
	if (!cpu->mode64) {
		/* segment limits for the whole run */
		seg_lin(cpu, SEG_ES, di, (unsigned)bytes, true);
		if (kind == S_MOVS)
			seg_lin(cpu, in->seg, rd_gpr(cpu, RSI, as), (unsigned)bytes, false);
		if (((di + bytes) >> 32) || (kind == S_MOVS && ((rd_gpr(cpu, RSI, as) + bytes) >> 32)))
			return 0;
	}
	if (kind == S_MOVS) {
		struct tlbe *e = tlb_entry(cpu, sla);
		if (e->tag_r != (sla >> 12))
			soft_translate(cpu, sla, ACC_READ);
		e = tlb_entry(cpu, sla);
		if (e->tag_r != (sla >> 12))
			return 0;
		sp = (const uint8_t *)(uintptr_t)(sla + e->addend);
	}
	uint8_t *dp = lin_ptr_w(cpu, dla, (unsigned)bytes);
	if (!dp)
		return 0;
	if (kind == S_MOVS) {
		if (dp > sp && dp < sp + bytes) {
			/* overlapping forward copy replicates: element by
			 * element, each read whole before it is written */
			if (sz == 1) {
				for (uint64_t i = 0; i < bytes; i++)
					dp[i] = sp[i];
			} else {
				for (uint64_t i = 0; i < bytes; i += sz)
					memmove(dp + i, sp + i, sz);
			}
		} else {
			memmove(dp, sp, bytes);
		}
		adv(cpu, RSI, as, (int64_t)bytes);
	} else {
		uint64_t v = cpu->s.gpr[RAX];
		if (sz == 1)
			memset(dp, (int)(v & 0xff), bytes);
		else
			for (uint64_t i = 0; i < room; i++)
				memcpy(dp + i * sz, &v, sz);
	}
	adv(cpu, RDI, as, (int64_t)bytes);
	return room;
}

static int string_op(struct soft_cpu *cpu, const struct sinsn *in, int kind)
{
	unsigned sz = str_size(in), as = in->asz;
	bool rep = in->pfx & (PFX_REP | PFX_REPNE);
	int64_t d = str_step(cpu, sz);
	uint64_t cnt = rep ? rd_gpr(cpu, RCX, as) : 1;
	if (!cnt) {
		/* Intel (the vendor kite advertises): a REP with 32-bit
		 * addressing and ECX=0 in 64-bit mode still writes ECX and
		 * the index registers it names, zero-extending them; AMD
		 * leaves them alone (tests/diff/vendor.c). */
		if (as == 4 && cpu->mode64) {
			wr_gpr(cpu, RCX, 4, 0);
			if (kind != S_STOS && kind != S_SCAS)
				wr_gpr(cpu, RSI, 4, cpu->s.gpr[RSI]);
			if (kind != S_LODS)
				wr_gpr(cpu, RDI, 4, cpu->s.gpr[RDI]);
		}
		return SOFT_NEXT;
	}
	uint64_t budget = REP_CHUNK;
	while (cnt && budget) {
		if (rep && (kind == S_MOVS || kind == S_STOS)) {
			uint64_t n = str_bulk(cpu, in, kind, sz, cnt < budget ? cnt : budget);
			if (n) {
				cnt -= n;
				budget = budget > n ? budget - n : 0;
				wr_gpr(cpu, RCX, as, cnt);
				continue;
			}
		}
		uint64_t si = rd_gpr(cpu, RSI, as), di = rd_gpr(cpu, RDI, as);
		bool stop = false;
		switch (kind) {
		case S_MOVS: {
			uint64_t v = lin_read(cpu, seg_lin(cpu, in->seg, si, sz, false), sz);
			lin_write(cpu, seg_lin(cpu, SEG_ES, di, sz, true), sz, v);
			adv(cpu, RSI, as, d);
			adv(cpu, RDI, as, d);
			break;
		}
		case S_STOS:
			lin_write(cpu, seg_lin(cpu, SEG_ES, di, sz, true), sz, cpu->s.gpr[RAX]);
			adv(cpu, RDI, as, d);
			break;
		case S_LODS:
			wr_gpr(cpu, RAX, sz, lin_read(cpu, seg_lin(cpu, in->seg, si, sz, false), sz));
			adv(cpu, RSI, as, d);
			break;
		case S_CMPS: {
			uint64_t a = lin_read(cpu, seg_lin(cpu, in->seg, si, sz, false), sz);
			uint64_t b = lin_read(cpu, seg_lin(cpu, SEG_ES, di, sz, false), sz);
			lf_set(cpu, LF_SUB, sz, a, b, a - b);
			adv(cpu, RSI, as, d);
			adv(cpu, RDI, as, d);
			stop = true;
			break;
		}
		default: {
			uint64_t a = rd_gpr(cpu, RAX, sz);
			uint64_t b = lin_read(cpu, seg_lin(cpu, SEG_ES, di, sz, false), sz);
			lf_set(cpu, LF_SUB, sz, a, b, a - b);
			adv(cpu, RDI, as, d);
			stop = true;
			break;
		}
		}
		cnt--;
		budget--;
		if (!rep)
			return SOFT_NEXT;
		wr_gpr(cpu, RCX, as, cnt);
		if (stop) {
			bool z = ((cpu->lf_res & size_mask(sz)) == 0);
			if ((in->pfx & PFX_REPNE) ? z : !z)
				return SOFT_NEXT;
		}
	}
	if (cnt) {
		/* not done: re-execute (RIP unchanged). RF=1, so that an
		 * interrupt or trap taken between iterations saves RF=1 and
		 * an instruction breakpoint here does not fire again
		 * (SDM 17.3.1.1); the run loop clears it before the next
		 * iteration runs. */
		cpu->s.rflags |= RFLAGS_RF;
		return SOFT_JUMP;
	}
	return SOFT_NEXT;
}
H(h_movs) { return string_op(cpu, in, S_MOVS); }
H(h_stos) { return string_op(cpu, in, S_STOS); }
H(h_lods) { return string_op(cpu, in, S_LODS); }
H(h_cmps) { return string_op(cpu, in, S_CMPS); }
H(h_scas) { return string_op(cpu, in, S_SCAS); }

/* MOVSD and CMPSD name both a string instruction and an SSE2 one. */
static soft_handler sse_movsd, sse_cmpsd;
void soft_set_sse_alias(unsigned mnemonic, soft_handler fn)
{
	if (mnemonic == ZYDIS_MNEMONIC_MOVSD) sse_movsd = fn;
	if (mnemonic == ZYDIS_MNEMONIC_CMPSD) sse_cmpsd = fn;
}
H(h_movsd)
{
	if (in->opmap != ZYDIS_OPCODE_MAP_DEFAULT)
		return sse_movsd ? sse_movsd(cpu, in) : (soft_ud(cpu), 0);
	return string_op(cpu, in, S_MOVS);
}
H(h_cmpsd)
{
	if (in->opmap != ZYDIS_OPCODE_MAP_DEFAULT)
		return sse_cmpsd ? sse_cmpsd(cpu, in) : (soft_ud(cpu), 0);
	return string_op(cpu, in, S_CMPS);
}

void soft_int_handlers(soft_handler *t)
{
#define R(m, f) t[ZYDIS_MNEMONIC_##m] = f
	R(ADD, h_add); R(SUB, h_sub); R(AND, h_and); R(OR, h_or); R(XOR, h_xor);
	R(CMP, h_cmp); R(TEST, h_test); R(ADC, h_adc); R(SBB, h_sbb);
	R(INC, h_inc); R(DEC, h_dec); R(NEG, h_neg); R(NOT, h_not);
	R(XCHG, h_xchg); R(XADD, h_xadd); R(CMPXCHG, h_cmpxchg);
	R(CMPXCHG8B, h_cmpxchg8b); R(CMPXCHG16B, h_cmpxchg8b);
	R(MOV, h_mov); R(MOVZX, h_movzx); R(MOVSX, h_movsx); R(MOVSXD, h_movsx);
	R(LEA, h_lea); R(MOVNTI, h_mov); R(CLFLUSH, h_clflush); R(BSWAP, h_bswap); R(MOVBE, h_movbe);
	R(CBW, h_cbw); R(CWDE, h_cbw); R(CDQE, h_cbw);
	R(CWD, h_cwd); R(CDQ, h_cwd); R(CQO, h_cwd); R(XLAT, h_xlat);
	R(JO, h_jcc); R(JNO, h_jcc); R(JB, h_jcc); R(JNB, h_jcc); R(JZ, h_jcc); R(JNZ, h_jcc);
	R(JBE, h_jcc); R(JNBE, h_jcc); R(JS, h_jcc); R(JNS, h_jcc); R(JP, h_jcc); R(JNP, h_jcc);
	R(JL, h_jcc); R(JNL, h_jcc); R(JLE, h_jcc); R(JNLE, h_jcc);
	R(SETO, h_setcc); R(SETNO, h_setcc); R(SETB, h_setcc); R(SETNB, h_setcc); R(SETZ, h_setcc);
	R(SETNZ, h_setcc); R(SETBE, h_setcc); R(SETNBE, h_setcc); R(SETS, h_setcc); R(SETNS, h_setcc);
	R(SETP, h_setcc); R(SETNP, h_setcc); R(SETL, h_setcc); R(SETNL, h_setcc); R(SETLE, h_setcc);
	R(SETNLE, h_setcc);
	R(CMOVO, h_cmovcc); R(CMOVNO, h_cmovcc); R(CMOVB, h_cmovcc); R(CMOVNB, h_cmovcc);
	R(CMOVZ, h_cmovcc); R(CMOVNZ, h_cmovcc); R(CMOVBE, h_cmovcc); R(CMOVNBE, h_cmovcc);
	R(CMOVS, h_cmovcc); R(CMOVNS, h_cmovcc); R(CMOVP, h_cmovcc); R(CMOVNP, h_cmovcc);
	R(CMOVL, h_cmovcc); R(CMOVNL, h_cmovcc); R(CMOVLE, h_cmovcc); R(CMOVNLE, h_cmovcc);
	R(JMP, h_jmp); R(CALL, h_call); R(RET, h_ret);
	R(LOOP, h_loop); R(LOOPE, h_loope); R(LOOPNE, h_loopne);
	R(JCXZ, h_jcxz); R(JECXZ, h_jcxz); R(JRCXZ, h_jcxz);
	R(PUSH, h_push); R(POP, h_pop); R(PUSHA, h_pusha); R(PUSHAD, h_pusha);
	R(POPA, h_popa); R(POPAD, h_popa); R(ENTER, h_enter); R(LEAVE, h_leave);
	R(MUL, h_mul); R(IMUL, h_imul); R(DIV, h_div); R(IDIV, h_idiv);
	R(SHL, h_shl); R(SHR, h_shr); R(SAR, h_sar); R(ROL, h_rol); R(ROR, h_ror);
	R(RCL, h_rcl); R(RCR, h_rcr); R(SHLD, h_shld); R(SHRD, h_shrd);
	R(BT, h_bt); R(BTS, h_bts); R(BTR, h_btr); R(BTC, h_btc);
	R(BSF, h_bsf); R(BSR, h_bsr); R(TZCNT, h_bsf); R(LZCNT, h_lzcnt); R(POPCNT, h_popcnt);
	R(CLC, h_clc); R(STC, h_stc); R(CMC, h_cmc); R(CLD, h_cld); R(STD, h_std);
	R(LAHF, h_lahf); R(SAHF, h_sahf); R(SALC, h_salc);
	R(NOP, h_nop); R(PAUSE, h_nop); R(ENDBR32, h_nop); R(ENDBR64, h_nop);
	R(PREFETCH, h_nop); R(PREFETCHW, h_nop); R(PREFETCHNTA, h_nop); R(PREFETCHT0, h_nop);
	R(PREFETCHT1, h_nop); R(PREFETCHT2, h_nop); R(LFENCE, h_fence); R(MFENCE, h_fence); R(SFENCE, h_fence);
	R(DAA, h_daa); R(DAS, h_das); R(AAA, h_aaa); R(AAS, h_aas); R(AAM, h_aam); R(AAD, h_aad);
	R(MOVSB, h_movs); R(MOVSW, h_movs); R(MOVSD, h_movsd); R(MOVSQ, h_movs);
	R(STOSB, h_stos); R(STOSW, h_stos); R(STOSD, h_stos); R(STOSQ, h_stos);
	R(LODSB, h_lods); R(LODSW, h_lods); R(LODSD, h_lods); R(LODSQ, h_lods);
	R(CMPSB, h_cmps); R(CMPSW, h_cmps); R(CMPSD, h_cmpsd); R(CMPSQ, h_cmps);
	R(SCASB, h_scas); R(SCASW, h_scas); R(SCASD, h_scas); R(SCASQ, h_scas);
#undef R
}
