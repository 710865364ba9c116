/* Lazy arithmetic flags: the last flag-setting operation is kept as
 * (kind, size, operands, result); each flag is derived only when read. */
#include "engine/soft/soft_cpu.h"

#define ARITH (RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF)

static inline uint64_t sign_bit(unsigned size)
{
	return 1ULL << (size * 8 - 1);
}

static bool lf_cf(const struct soft_cpu *c)
{
	uint64_t m = size_mask(c->lf_size);
	uint64_t a = c->lf_src1 & m, b = c->lf_src2 & m, r = c->lf_res & m;
	unsigned bits = c->lf_size * 8;
	switch (c->lf_op) {
	case LF_ADD: return r < a;
	case LF_ADC: return c->lf_cf ? r <= a : r < a;
	case LF_SUB: return a < b;
	case LF_SBB: return c->lf_cf ? a <= b : a < b;
	case LF_LOGIC: return false;
	case LF_INC: case LF_DEC: return c->lf_cf;
	case LF_NEG: return a != 0;
	case LF_SHL: return b <= bits ? (a >> (bits - b)) & 1 : 0;
	case LF_SHR: return (a >> (b - 1)) & 1;
	case LF_SAR: return b >= bits ? (a >> (bits - 1)) & 1 : ((int64_t)sext(a, c->lf_size) >> (b - 1)) & 1;
	case LF_MUL: return c->lf_src2 != 0;
	default: return c->s.rflags & RFLAGS_CF;
	}
}

static bool lf_of(const struct soft_cpu *c)
{
	uint64_t m = size_mask(c->lf_size), sb = sign_bit(c->lf_size);
	uint64_t a = c->lf_src1 & m, b = c->lf_src2 & m, r = c->lf_res & m;
	switch (c->lf_op) {
	case LF_ADD: case LF_ADC: return ((a ^ r) & (b ^ r) & sb) != 0;
	case LF_SUB: case LF_SBB: return ((a ^ b) & (a ^ r) & sb) != 0;
	case LF_LOGIC: return false;
	case LF_INC: return r == sb;
	case LF_DEC: return r == sb - 1;
	case LF_NEG: return r == sb;
	case LF_SHL: return ((r & sb) != 0) ^ lf_cf(c);
	case LF_SHR: return (a & sb) != 0;
	case LF_SAR: return false;
	case LF_MUL: return c->lf_src2 != 0;
	default: return c->s.rflags & RFLAGS_OF;
	}
}

static bool lf_af(const struct soft_cpu *c)
{
	switch (c->lf_op) {
	case LF_ADD: case LF_ADC: case LF_SUB: case LF_SBB:
		return ((c->lf_src1 ^ c->lf_src2 ^ c->lf_res) & 0x10) != 0;
	case LF_INC: return (c->lf_res & 0xf) == 0;
	case LF_DEC: return (c->lf_res & 0xf) == 0xf;
	case LF_NEG: return (c->lf_src1 & 0xf) != 0;
	default: return false;
	}
}

static inline bool parity8(uint64_t v)
{
	return !__builtin_parity((unsigned)(v & 0xff));
}

uint64_t soft_flags(struct soft_cpu *c)
{
	if (c->lf_op == LF_NONE)
		return c->s.rflags;
	uint64_t r = c->lf_res & size_mask(c->lf_size);
	uint64_t f = c->s.rflags & ~ARITH;
	if (lf_cf(c)) f |= RFLAGS_CF;
	if (lf_of(c)) f |= RFLAGS_OF;
	if (lf_af(c)) f |= RFLAGS_AF;
	if (r == 0) f |= RFLAGS_ZF;
	if (r & sign_bit(c->lf_size)) f |= RFLAGS_SF;
	if (parity8(r)) f |= RFLAGS_PF;
	return f;
}

void soft_flags_commit(struct soft_cpu *c)
{
	c->s.rflags = soft_flags(c);
	c->lf_op = LF_NONE;
}

bool soft_cf(struct soft_cpu *c)
{
	return c->lf_op == LF_NONE ? (c->s.rflags & RFLAGS_CF) != 0 : lf_cf(c);
}

static inline bool zf(const struct soft_cpu *c)
{
	if (c->lf_op == LF_NONE)
		return c->s.rflags & RFLAGS_ZF;
	return (c->lf_res & size_mask(c->lf_size)) == 0;
}

static inline bool sf(const struct soft_cpu *c)
{
	if (c->lf_op == LF_NONE)
		return c->s.rflags & RFLAGS_SF;
	return (c->lf_res & sign_bit(c->lf_size)) != 0;
}

static inline bool of(const struct soft_cpu *c)
{
	return c->lf_op == LF_NONE ? (c->s.rflags & RFLAGS_OF) != 0 : lf_of(c);
}

/* Conditions after CMP/SUB compare the operands directly; after TEST/AND/
 * OR/XOR, CF and OF are clear. These two cover most Jcc/SETcc/CMOVcc. */
static inline bool cond_sub(const struct soft_cpu *c, unsigned cc, bool *r)
{
	uint64_t m = size_mask(c->lf_size);
	uint64_t a = c->lf_src1 & m, b = c->lf_src2 & m;
	int64_t sa = (int64_t)sext(a, c->lf_size), sb = (int64_t)sext(b, c->lf_size);
	switch (cc >> 1) {
	case 1: *r = a < b; return true;
	case 2: *r = a == b; return true;
	case 3: *r = a <= b; return true;
	case 6: *r = sa < sb; return true;
	case 7: *r = sa <= sb; return true;
	default: return false;
	}
}

static inline bool cond_logic(const struct soft_cpu *c, unsigned cc, bool *r)
{
	uint64_t res = c->lf_res & size_mask(c->lf_size);
	bool z = res == 0, sgn = (res >> (c->lf_size * 8 - 1)) & 1;
	switch (cc >> 1) {
	case 0: case 1: *r = false; return true;
	case 2: case 3: *r = z; return true;
	case 4: case 6: *r = sgn; return true;
	case 7: *r = z || sgn; return true;
	default: return false;
	}
}

bool soft_cond(struct soft_cpu *c, unsigned cc)
{
	bool r;
	if (c->lf_op == LF_SUB && cond_sub(c, cc, &r))
		return (cc & 1) ? !r : r;
	if (c->lf_op == LF_LOGIC && cond_logic(c, cc, &r))
		return (cc & 1) ? !r : r;
	switch (cc >> 1) {
	case 0: r = of(c); break;
	case 1: r = soft_cf(c); break;
	case 2: r = zf(c); break;
	case 3: r = soft_cf(c) || zf(c); break;
	case 4: r = sf(c); break;
	case 5: r = c->lf_op == LF_NONE ? (c->s.rflags & RFLAGS_PF) != 0 : parity8(c->lf_res); break;
	case 6: r = sf(c) != of(c); break;
	default: r = zf(c) || (sf(c) != of(c)); break;
	}
	return (cc & 1) ? !r : r;
}
