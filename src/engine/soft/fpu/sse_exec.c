/* SSE/SSE2 (and MMX data) operations: one kernel per op, dispatched by
 * sse_exec(). Floating-point kernels run the host's own instruction with the
 * guest's MXCSR control bits installed (all exceptions masked, flags clear)
 * inside one asm block that also restores the host's MXCSR, so results and
 * flags are the hardware's. Unmasked exceptions are then resolved in C from
 * the raised flags (sse_exec). Pure data movement is done in C. */
#include <string.h>

#include "engine/soft/fpu/fpu.h"

struct kctx {
	union xmm d, s;
	uint32_t csr;     /* MXCSR to run with: guest RC/DAZ/FTZ, masked, clear */
	uint32_t out;     /* MXCSR after the operation (flags raised) */
	uint64_t rflags;
	uint8_t imm;
};

typedef void kernel_fn(struct kctx *k);

/* Note: xmm values travel through __m128 / __m128i locals bound to "x"
 * register constraints; the instruction always uses the register form. */
typedef long long v2di __attribute__((vector_size(16)));

static inline v2di ld(const union xmm *x)
{
	v2di v;
	memcpy(&v, x, 16);
	return v;
}

static inline void st(union xmm *x, v2di v)
{
	memcpy(x, &v, 16);
}

/* Run "insn %b, %a" with the guest MXCSR: a is in/out. */
#define FP_ASM2(insn, a, b, k)                                                  \
	do {                                                                    \
		uint32_t host_csr_;                                             \
		__asm__ volatile("stmxcsr %[h]\n\tldmxcsr %[c]\n\t" insn        \
				 " %[bb], %[aa]\n\tstmxcsr %[o]\n\tldmxcsr %[h]" \
				 : [aa] "+x"(a), [o] "=m"((k)->out),            \
				   [h] "=m"(host_csr_)                          \
				 : [bb] "x"(b), [c] "m"((k)->csr));             \
	} while (0)

#define FP_BIN(name, insn)                      \
	static void k_##name(struct kctx *k)    \
	{                                       \
		v2di a = ld(&k->d), b = ld(&k->s); \
		FP_ASM2(insn, a, b, k);         \
		st(&k->d, a);                   \
	}

FP_BIN(ADDPS, "addps")
FP_BIN(ADDSS, "addss")
FP_BIN(ADDPD, "addpd")
FP_BIN(ADDSD, "addsd")
FP_BIN(SUBPS, "subps")
FP_BIN(SUBSS, "subss")
FP_BIN(SUBPD, "subpd")
FP_BIN(SUBSD, "subsd")
FP_BIN(MULPS, "mulps")
FP_BIN(MULSS, "mulss")
FP_BIN(MULPD, "mulpd")
FP_BIN(MULSD, "mulsd")
FP_BIN(DIVPS, "divps")
FP_BIN(DIVSS, "divss")
FP_BIN(DIVPD, "divpd")
FP_BIN(DIVSD, "divsd")
FP_BIN(SQRTPS, "sqrtps")
FP_BIN(SQRTSS, "sqrtss")
FP_BIN(SQRTPD, "sqrtpd")
FP_BIN(SQRTSD, "sqrtsd")
FP_BIN(MINPS, "minps")
FP_BIN(MINSS, "minss")
FP_BIN(MINPD, "minpd")
FP_BIN(MINSD, "minsd")
FP_BIN(MAXPS, "maxps")
FP_BIN(MAXSS, "maxss")
FP_BIN(MAXPD, "maxpd")
FP_BIN(MAXSD, "maxsd")
FP_BIN(RCPPS, "rcpps")
FP_BIN(RCPSS, "rcpss")
FP_BIN(RSQRTPS, "rsqrtps")
FP_BIN(RSQRTSS, "rsqrtss")
FP_BIN(CVTPS2PD, "cvtps2pd")
FP_BIN(CVTPD2PS, "cvtpd2ps")
FP_BIN(CVTSS2SD, "cvtss2sd")
FP_BIN(CVTSD2SS, "cvtsd2ss")
FP_BIN(CVTDQ2PS, "cvtdq2ps")
FP_BIN(CVTPS2DQ, "cvtps2dq")
FP_BIN(CVTTPS2DQ, "cvttps2dq")
FP_BIN(CVTDQ2PD, "cvtdq2pd")
FP_BIN(CVTPD2DQ, "cvtpd2dq")
FP_BIN(CVTTPD2DQ, "cvttpd2dq")

/* CMPPS & co: the predicate is imm8[2:0] (bits 7:3 ignored by the legacy
 * encodings); it is part of the encoding, hence one asm per predicate. */
#define FP_CMP_CASE(insn, n)                           \
	case n:                                        \
		FP_ASM2(insn " $" #n ",", a, b, k);    \
		break;
#define FP_CMP(name, insn)                                     \
	static void k_##name(struct kctx *k)                   \
	{                                                      \
		v2di a = ld(&k->d), b = ld(&k->s);             \
		switch (k->imm & 7) {                          \
			FP_CMP_CASE(insn, 0)                   \
			FP_CMP_CASE(insn, 1)                   \
			FP_CMP_CASE(insn, 2)                   \
			FP_CMP_CASE(insn, 3)                   \
			FP_CMP_CASE(insn, 4)                   \
			FP_CMP_CASE(insn, 5)                   \
			FP_CMP_CASE(insn, 6)                   \
		default:                                       \
			FP_ASM2(insn " $7,", a, b, k);         \
			break;                                 \
		}                                              \
		st(&k->d, a);                                  \
	}

FP_CMP(CMPPS, "cmpps")
FP_CMP(CMPSS, "cmpss")
FP_CMP(CMPPD, "cmppd")
FP_CMP(CMPSD, "cmpsd")

/* COMISS & co: dst is only read; ZF/PF/CF from the host, OF/SF/AF cleared. */
#define FP_COMI(name, insn)                                                     \
	static void k_##name(struct kctx *k)                                    \
	{                                                                       \
		v2di a = ld(&k->d), b = ld(&k->s);                              \
		uint32_t host_csr;                                              \
		bool z, p, c;                                                   \
		__asm__ volatile("stmxcsr %[h]\n\tldmxcsr %[cs]\n\t" insn       \
				 " %[bb], %[aa]\n\tstmxcsr %[o]\n\tldmxcsr %[h]" \
				 : [o] "=m"(k->out), [h] "=m"(host_csr),        \
				   "=@ccz"(z), "=@ccp"(p), "=@ccc"(c)           \
				 : [aa] "x"(a), [bb] "x"(b), [cs] "m"(k->csr)); \
		k->rflags &= ~(RFLAGS_OF | RFLAGS_SF | RFLAGS_AF | RFLAGS_ZF |  \
			       RFLAGS_PF | RFLAGS_CF);                          \
		k->rflags |= (z ? RFLAGS_ZF : 0) | (p ? RFLAGS_PF : 0) |        \
			     (c ? RFLAGS_CF : 0);                               \
	}

FP_COMI(COMISS, "comiss")
FP_COMI(UCOMISS, "ucomiss")
FP_COMI(COMISD, "comisd")
FP_COMI(UCOMISD, "ucomisd")

/* int -> float with a GPR/memory integer source (s.q[0]). */
#define FP_FROM_INT(name, insn, type, mod)                                      \
	static void k_##name(struct kctx *k)                                    \
	{                                                                       \
		v2di a = ld(&k->d);                                             \
		type g = (type)k->s.q[0];                                       \
		uint32_t host_csr;                                              \
		__asm__ volatile("stmxcsr %[h]\n\tldmxcsr %[c]\n\t" insn        \
				 " %" mod "[g], %[aa]\n\tstmxcsr %[o]\n\tldmxcsr %[h]" \
				 : [aa] "+x"(a), [o] "=m"(k->out),              \
				   [h] "=m"(host_csr)                           \
				 : [g] "r"(g), [c] "m"(k->csr));                \
		st(&k->d, a);                                                   \
	}

FP_FROM_INT(CVTSI2SS_32, "cvtsi2ssl", uint32_t, "k")
FP_FROM_INT(CVTSI2SS_64, "cvtsi2ssq", uint64_t, "q")
FP_FROM_INT(CVTSI2SD_32, "cvtsi2sdl", uint32_t, "k")
FP_FROM_INT(CVTSI2SD_64, "cvtsi2sdq", uint64_t, "q")

/* float -> int into a GPR (d.q[0], zero-extended). */
#define FP_TO_INT(name, insn, type, mod)                                        \
	static void k_##name(struct kctx *k)                                    \
	{                                                                       \
		v2di b = ld(&k->s);                                             \
		type g;                                                         \
		uint32_t host_csr;                                              \
		__asm__ volatile("stmxcsr %[h]\n\tldmxcsr %[c]\n\t" insn        \
				 " %[bb], %" mod "[g]\n\tstmxcsr %[o]\n\tldmxcsr %[h]" \
				 : [g] "=r"(g), [o] "=m"(k->out),               \
				   [h] "=m"(host_csr)                           \
				 : [bb] "x"(b), [c] "m"(k->csr));               \
		memset(&k->d, 0, sizeof(k->d));                                 \
		k->d.q[0] = g;                                                  \
	}

FP_TO_INT(CVTSS2SI_32, "cvtss2si", uint32_t, "k")
FP_TO_INT(CVTSS2SI_64, "cvtss2si", uint64_t, "q")
FP_TO_INT(CVTTSS2SI_32, "cvttss2si", uint32_t, "k")
FP_TO_INT(CVTTSS2SI_64, "cvttss2si", uint64_t, "q")
FP_TO_INT(CVTSD2SI_32, "cvtsd2si", uint32_t, "k")
FP_TO_INT(CVTSD2SI_64, "cvtsd2si", uint64_t, "q")
FP_TO_INT(CVTTSD2SI_32, "cvttsd2si", uint32_t, "k")
FP_TO_INT(CVTTSD2SI_64, "cvttsd2si", uint64_t, "q")

/* MMX-register conversions, done with the XMM forms on zero-extended
 * values (zero lanes raise no flags): CVTPI2PS merges into the low half. */
static void k_CVTPI2PS(struct kctx *k)
{
	union xmm t = { .q = { k->s.q[0], 0 } };
	v2di a = ld(&t), b = a;
	FP_ASM2("cvtdq2ps", a, b, k);
	st(&t, a);
	k->d.q[0] = t.q[0];
}

#define FP_TO_MMX(name, insn)                             \
	static void k_##name(struct kctx *k)              \
	{                                                 \
		union xmm t = { .q = { k->s.q[0], 0 } };  \
		v2di a = ld(&t), b = a;                   \
		FP_ASM2(insn, a, b, k);                   \
		st(&t, a);                                \
		k->d.q[0] = t.q[0];                       \
		k->d.q[1] = 0;                            \
	}

FP_TO_MMX(CVTPS2PI, "cvtps2dq")
FP_TO_MMX(CVTTPS2PI, "cvttps2dq")

/* CVT(T)PD2PI read both doubles of the source. */
#define FPD_TO_MMX(name, insn)                  \
	static void k_##name(struct kctx *k)    \
	{                                       \
		v2di a = ld(&k->s), b = a;      \
		FP_ASM2(insn, a, b, k);         \
		st(&k->d, a);                   \
		k->d.q[1] = 0;                  \
	}

FPD_TO_MMX(CVTPD2PI, "cvtpd2dq")
FPD_TO_MMX(CVTTPD2PI, "cvttpd2dq")

/* Integer and logic ops: no MXCSR involvement. */
#define INT_BIN(name, insn)                                          \
	static void k_##name(struct kctx *k)                         \
	{                                                            \
		v2di a = ld(&k->d), b = ld(&k->s);                   \
		__asm__(insn " %[bb], %[aa]" : [aa] "+x"(a) : [bb] "x"(b)); \
		st(&k->d, a);                                        \
	}

INT_BIN(ANDPS, "andps")
INT_BIN(ANDNPS, "andnps")
INT_BIN(ORPS, "orps")
INT_BIN(XORPS, "xorps")
INT_BIN(ANDPD, "andpd")
INT_BIN(ANDNPD, "andnpd")
INT_BIN(ORPD, "orpd")
INT_BIN(XORPD, "xorpd")
/* int32 -> double is exact: no MXCSR involvement */
INT_BIN(CVTPI2PD, "cvtdq2pd")
INT_BIN(UNPCKLPS, "unpcklps")
INT_BIN(UNPCKHPS, "unpckhps")
INT_BIN(UNPCKLPD, "unpcklpd")
INT_BIN(UNPCKHPD, "unpckhpd")
INT_BIN(PADDB, "paddb")
INT_BIN(PADDW, "paddw")
INT_BIN(PADDD, "paddd")
INT_BIN(PADDQ, "paddq")
INT_BIN(PSUBB, "psubb")
INT_BIN(PSUBW, "psubw")
INT_BIN(PSUBD, "psubd")
INT_BIN(PSUBQ, "psubq")
INT_BIN(PADDSB, "paddsb")
INT_BIN(PADDSW, "paddsw")
INT_BIN(PADDUSB, "paddusb")
INT_BIN(PADDUSW, "paddusw")
INT_BIN(PSUBSB, "psubsb")
INT_BIN(PSUBSW, "psubsw")
INT_BIN(PSUBUSB, "psubusb")
INT_BIN(PSUBUSW, "psubusw")
INT_BIN(PMULLW, "pmullw")
INT_BIN(PMULHW, "pmulhw")
INT_BIN(PMULHUW, "pmulhuw")
INT_BIN(PMULUDQ, "pmuludq")
INT_BIN(PMADDWD, "pmaddwd")
INT_BIN(PAVGB, "pavgb")
INT_BIN(PAVGW, "pavgw")
INT_BIN(PSADBW, "psadbw")
INT_BIN(PMINUB, "pminub")
INT_BIN(PMAXUB, "pmaxub")
INT_BIN(PMINSW, "pminsw")
INT_BIN(PMAXSW, "pmaxsw")
INT_BIN(PCMPEQB, "pcmpeqb")
INT_BIN(PCMPEQW, "pcmpeqw")
INT_BIN(PCMPEQD, "pcmpeqd")
INT_BIN(PCMPGTB, "pcmpgtb")
INT_BIN(PCMPGTW, "pcmpgtw")
INT_BIN(PCMPGTD, "pcmpgtd")
INT_BIN(PAND, "pand")
INT_BIN(PANDN, "pandn")
INT_BIN(POR, "por")
INT_BIN(PXOR, "pxor")
INT_BIN(PSLLW, "psllw")
INT_BIN(PSLLD, "pslld")
INT_BIN(PSLLQ, "psllq")
INT_BIN(PSRLW, "psrlw")
INT_BIN(PSRLD, "psrld")
INT_BIN(PSRLQ, "psrlq")
INT_BIN(PSRAW, "psraw")
INT_BIN(PSRAD, "psrad")
INT_BIN(PACKSSWB, "packsswb")
INT_BIN(PACKSSDW, "packssdw")
INT_BIN(PACKUSWB, "packuswb")
INT_BIN(PUNPCKLBW, "punpcklbw")
INT_BIN(PUNPCKLWD, "punpcklwd")
INT_BIN(PUNPCKLDQ, "punpckldq")
INT_BIN(PUNPCKLQDQ, "punpcklqdq")
INT_BIN(PUNPCKHBW, "punpckhbw")
INT_BIN(PUNPCKHWD, "punpckhwd")
INT_BIN(PUNPCKHDQ, "punpckhdq")
INT_BIN(PUNPCKHQDQ, "punpckhqdq")

/* Shift by imm8 == shift by an xmm count holding the zero-extended imm8
 * (counts above the lane width give 0, or sign fill for PSRA). */
#define INT_SHIFT_IMM(name, insn)                                      \
	static void k_##name##_IMM(struct kctx *k)                     \
	{                                                              \
		union xmm c = { .q = { k->imm, 0 } };                  \
		v2di a = ld(&k->d), b = ld(&c);                        \
		__asm__(insn " %[bb], %[aa]" : [aa] "+x"(a) : [bb] "x"(b)); \
		st(&k->d, a);                                          \
	}

INT_SHIFT_IMM(PSLLW, "psllw")
INT_SHIFT_IMM(PSLLD, "pslld")
INT_SHIFT_IMM(PSLLQ, "psllq")
INT_SHIFT_IMM(PSRLW, "psrlw")
INT_SHIFT_IMM(PSRLD, "psrld")
INT_SHIFT_IMM(PSRLQ, "psrlq")
INT_SHIFT_IMM(PSRAW, "psraw")
INT_SHIFT_IMM(PSRAD, "psrad")

static void k_PSLLDQ(struct kctx *k)
{
	union xmm r = { .q = { 0, 0 } };
	unsigned n = k->imm;
	for (unsigned i = n; i < 16; i++)
		r.b[i] = k->d.b[i - n];
	k->d = r;
}

static void k_PSRLDQ(struct kctx *k)
{
	union xmm r = { .q = { 0, 0 } };
	unsigned n = k->imm;
	for (unsigned i = 0; n < 16 && i < 16 - n; i++)
		r.b[i] = k->d.b[i + n];
	k->d = r;
}

static void k_SHUFPS(struct kctx *k)
{
	union xmm r;
	unsigned m = k->imm;
	r.d[0] = k->d.d[m & 3];
	r.d[1] = k->d.d[(m >> 2) & 3];
	r.d[2] = k->s.d[(m >> 4) & 3];
	r.d[3] = k->s.d[(m >> 6) & 3];
	k->d = r;
}

static void k_SHUFPD(struct kctx *k)
{
	union xmm r;
	r.q[0] = k->d.q[k->imm & 1];
	r.q[1] = k->s.q[(k->imm >> 1) & 1];
	k->d = r;
}

static void k_PSHUFD(struct kctx *k)
{
	union xmm r;
	for (unsigned i = 0; i < 4; i++)
		r.d[i] = k->s.d[(k->imm >> (2 * i)) & 3];
	k->d = r;
}

static void k_PSHUFHW(struct kctx *k)
{
	union xmm r;
	r.q[0] = k->s.q[0];
	for (unsigned i = 0; i < 4; i++)
		r.w[4 + i] = k->s.w[4 + ((k->imm >> (2 * i)) & 3)];
	k->d = r;
}

/* Also PSHUFW mm, mm/m64, imm8 (low quadword). */
static void k_PSHUFLW(struct kctx *k)
{
	union xmm r;
	r.q[1] = k->s.q[1];
	for (unsigned i = 0; i < 4; i++)
		r.w[i] = k->s.w[(k->imm >> (2 * i)) & 3];
	k->d = r;
}

static void k_PEXTRW(struct kctx *k)
{
	uint16_t v = k->s.w[k->imm & 7];
	memset(&k->d, 0, sizeof(k->d));
	k->d.q[0] = v;
}

static void k_PEXTRW_MMX(struct kctx *k)
{
	uint16_t v = k->s.w[k->imm & 3];
	memset(&k->d, 0, sizeof(k->d));
	k->d.q[0] = v;
}

static void k_PINSRW(struct kctx *k)
{
	k->d.w[k->imm & 7] = k->s.w[0];
}

static void k_PINSRW_MMX(struct kctx *k)
{
	k->d.w[k->imm & 3] = k->s.w[0];
	k->d.q[1] = 0;
}

/* 64-bit packs: dst's 4 (2) elements then src's, i.e. the 128-bit pack of
 * {dst.q0, src.q0} with itself. */
#define INT_PACK_MMX(name, insn)                                       \
	static void k_##name##_MMX(struct kctx *k)                     \
	{                                                              \
		union xmm t = { .q = { k->d.q[0], k->s.q[0] } };       \
		v2di a = ld(&t), b = a;                                \
		__asm__(insn " %[bb], %[aa]" : [aa] "+x"(a) : [bb] "x"(b)); \
		st(&t, a);                                             \
		k->d.q[0] = t.q[0];                                    \
		k->d.q[1] = 0;                                         \
	}

INT_PACK_MMX(PACKSSWB, "packsswb")
INT_PACK_MMX(PACKSSDW, "packssdw")
INT_PACK_MMX(PACKUSWB, "packuswb")

static void k_PUNPCKHBW_MMX(struct kctx *k)
{
	union xmm r = { .q = { 0, 0 } };
	for (unsigned i = 0; i < 4; i++) {
		r.b[2 * i] = k->d.b[4 + i];
		r.b[2 * i + 1] = k->s.b[4 + i];
	}
	k->d = r;
}

static void k_PUNPCKHWD_MMX(struct kctx *k)
{
	union xmm r = { .q = { 0, 0 } };
	for (unsigned i = 0; i < 2; i++) {
		r.w[2 * i] = k->d.w[2 + i];
		r.w[2 * i + 1] = k->s.w[2 + i];
	}
	k->d = r;
}

static void k_PUNPCKHDQ_MMX(struct kctx *k)
{
	union xmm r = { .q = { 0, 0 } };
	r.d[0] = k->d.d[1];
	r.d[1] = k->s.d[1];
	k->d = r;
}

/* Moves. */
static void k_MOV128(struct kctx *k)
{
	k->d = k->s;
}

static void k_MOVSS_LOAD(struct kctx *k)
{
	union xmm r = { .d = { k->s.d[0], 0, 0, 0 } };
	k->d = r;
}

static void k_MOVSS_MERGE(struct kctx *k)
{
	k->d.d[0] = k->s.d[0];
}

static void k_MOVSD_LOAD(struct kctx *k)
{
	union xmm r = { .q = { k->s.q[0], 0 } };
	k->d = r;
}

static void k_MOVSD_MERGE(struct kctx *k)
{
	k->d.q[0] = k->s.q[0];
}

static void k_MOVHLPS(struct kctx *k)
{
	k->d.q[0] = k->s.q[1];
}

static void k_MOVLHPS(struct kctx *k)
{
	k->d.q[1] = k->s.q[0];
}

/* MOVHPS/MOVHPD xmm, m64 */
static void k_MOVHPS_LOAD(struct kctx *k)
{
	k->d.q[1] = k->s.q[0];
}

/* MOVHPS/MOVHPD m64, xmm */
static void k_MOVHPS_STORE(struct kctx *k)
{
	union xmm r = { .q = { k->s.q[1], 0 } };
	k->d = r;
}

/* MOVLPS/MOVLPD xmm, m64 */
static void k_MOVLPS_LOAD(struct kctx *k)
{
	k->d.q[0] = k->s.q[0];
}

#define k_MOVSS_STORE k_MOVSS_LOAD
#define k_MOVSD_STORE k_MOVSD_LOAD
#define k_MOVLPS_STORE k_MOVSD_LOAD
#define k_MOVD_TO_XMM k_MOVSS_LOAD
#define k_MOVQ_TO_XMM k_MOVSD_LOAD
#define k_MOVD_FROM_XMM k_MOVSS_LOAD
#define k_MOVQ_FROM_XMM k_MOVSD_LOAD
#define k_MOVNTI k_MOVSD_LOAD
#define k_MASKMOVDQU k_MOV128

static void k_MOVMSKPS(struct kctx *k)
{
	unsigned m = 0;
	for (unsigned i = 0; i < 4; i++)
		m |= (k->s.d[i] >> 31) << i;
	memset(&k->d, 0, sizeof(k->d));
	k->d.q[0] = m;
}

static void k_MOVMSKPD(struct kctx *k)
{
	unsigned m = (unsigned)(k->s.q[0] >> 63) | (unsigned)(k->s.q[1] >> 63) << 1;
	memset(&k->d, 0, sizeof(k->d));
	k->d.q[0] = m;
}

uint16_t sse_maskmov_mask(const union xmm *mask)
{
	uint16_t m = 0;
	for (unsigned i = 0; i < 16; i++)
		m |= (uint16_t)((mask->b[i] >> 7) << i);
	return m;
}

static void k_PMOVMSKB(struct kctx *k)
{
	uint16_t m = sse_maskmov_mask(&k->s);
	memset(&k->d, 0, sizeof(k->d));
	k->d.q[0] = m;
}

/* The dispatch table. */

struct op_entry {
	kernel_fn *fn;
	const char *name;
};

static const struct op_entry op_table[SSE_OP_COUNT] = {
#define SSE_OP_ROW(n) [SSE_##n] = { k_##n, #n },
	SSE_OP_LIST(SSE_OP_ROW)
#undef SSE_OP_ROW
};

/* Which ops are floating point: everything from ADDPS to CVTTPD2PI in the
 * list order, except the logic and shuffle ops (no MXCSR interaction). */
bool sse_op_raises(enum sse_op op)
{
	if (op >= SSE_ANDPS && op <= SSE_UNPCKHPD)
		return false;
	if (op == SSE_CVTPI2PD)
		return false; /* exact: no flags possible */
	return op >= SSE_ADDPS && op <= SSE_CVTTPD2PI;
}

static bool op_writes_rflags(enum sse_op op)
{
	return op >= SSE_COMISS && op <= SSE_UCOMISD;
}

const char *sse_op_name(enum sse_op op)
{
	if (op <= SSE_OP_INVALID || op >= SSE_OP_COUNT)
		return "?";
	return op_table[op].name;
}

int sse_ldmxcsr(struct fxsave_area *fx, uint32_t v)
{
	if (v & ~MXCSR_MASK_VALUE)
		return FPU_EXC_GP;
	fx->mxcsr = v;
	return 0;
}

#define PRE_FLAGS (MXCSR_IE | MXCSR_DE | MXCSR_ZE)

/* Ops that can overflow or underflow: lanes and element width. */
static unsigned ovf_lanes(enum sse_op op, bool *f64)
{
	*f64 = false;
	switch (op) {
	case SSE_ADDPS: case SSE_SUBPS: case SSE_MULPS: case SSE_DIVPS:
		return 4;
	case SSE_ADDPD: case SSE_SUBPD: case SSE_MULPD: case SSE_DIVPD:
	case SSE_CVTPD2PS:
		*f64 = true;
		return 2;
	case SSE_ADDSS: case SSE_SUBSS: case SSE_MULSS: case SSE_DIVSS:
	case SSE_ADDSD: case SSE_SUBSD: case SSE_MULSD: case SSE_DIVSD:
	case SSE_CVTSD2SS:
		return 1;
	default:
		return 0;
	}
}

/* Whether lane `lane` of op, rounded to its destination precision with an
 * unbounded exponent (the IEEE "unmasked trap" result), is inexact. The
 * host x87 computes it: its 15-bit exponent cannot overflow for float or
 * double operands, and precision control rounds to 24 or 53 bits. */
static bool unbounded_inexact(enum sse_op op, const struct kctx *k,
			      unsigned lane, bool f64, uint32_t guest)
{
	long double a, b = 1.0L;
	bool daz = guest & MXCSR_DAZ;
	bool dst_double = f64 && op != SSE_CVTPD2PS;
	if (op == SSE_CVTSD2SS) {
		f64 = true;
		dst_double = false;
	} else if (op == SSE_ADDSD || op == SSE_SUBSD || op == SSE_MULSD ||
		   op == SSE_DIVSD) {
		f64 = dst_double = true;
	}
	if (f64) {
		double x, y;
		memcpy(&x, &k->d.q[lane], 8);
		memcpy(&y, &k->s.q[lane], 8);
		if (daz && x != 0 && __builtin_fabs(x) < 0x1p-1022)
			x = __builtin_copysign(0.0, x);
		if (daz && y != 0 && __builtin_fabs(y) < 0x1p-1022)
			y = __builtin_copysign(0.0, y);
		a = x;
		b = y;
	} else {
		float x, y;
		memcpy(&x, &k->d.d[lane], 4);
		memcpy(&y, &k->s.d[lane], 4);
		if (daz && x != 0 && __builtin_fabsf(x) < 0x1p-126f)
			x = __builtin_copysignf(0.0f, x);
		if (daz && y != 0 && __builtin_fabsf(y) < 0x1p-126f)
			y = __builtin_copysignf(0.0f, y);
		a = x;
		b = y;
	}
	if (op == SSE_CVTPD2PS || op == SSE_CVTSD2SS) {
		a = b; /* the source operand, rounded by a multiply by 1 */
		b = 1.0L;
	}
	uint16_t cw = (uint16_t)(0x007F | (dst_double ? 0x0200 : 0x0000) |
				 (((guest & MXCSR_RC) >> 13) << 10));
	uint16_t hcw, sw;
	long double r;
	switch (op) {
	case SSE_ADDPS: case SSE_ADDSS: case SSE_ADDPD: case SSE_ADDSD:
		__asm__ volatile("fnstcw %[h]\n\tfldcw %[c]\n\tfnclex\n\tfldt %[a]\n\t"
				 "fldt %[b]\n\tfaddp\n\tfnstsw %[sw]\n\tfstpt %[r]\n\tfldcw %[h]"
				 : [h] "=m"(hcw), [sw] "=m"(sw), [r] "=m"(r)
				 : [c] "m"(cw), [a] "m"(a), [b] "m"(b));
		break;
	case SSE_SUBPS: case SSE_SUBSS: case SSE_SUBPD: case SSE_SUBSD:
		/* fsubrp: st(1) = st(0) - st(1) = b... so load b first */
		__asm__ volatile("fnstcw %[h]\n\tfldcw %[c]\n\tfnclex\n\tfldt %[a]\n\t"
				 "fldt %[b]\n\tfchs\n\tfaddp\n\tfnstsw %[sw]\n\tfstpt %[r]\n\tfldcw %[h]"
				 : [h] "=m"(hcw), [sw] "=m"(sw), [r] "=m"(r)
				 : [c] "m"(cw), [a] "m"(a), [b] "m"(b));
		break;
	case SSE_DIVPS: case SSE_DIVSS: case SSE_DIVPD: case SSE_DIVSD:
		/* a / b: fdivl-free form: st0 = a, divide by memory b */
		__asm__ volatile("fnstcw %[h]\n\tfldcw %[c]\n\tfnclex\n\tfldt %[b]\n\t"
				 "fldt %[a]\n\t.byte 0xD8, 0xF1\n\tfstp %%st(1)\n\tfnstsw %[sw]\n\t"
				 "fstpt %[r]\n\tfldcw %[h]"
				 : [h] "=m"(hcw), [sw] "=m"(sw), [r] "=m"(r)
				 : [c] "m"(cw), [a] "m"(a), [b] "m"(b));
		break;
	default: /* MUL, and the conversions as a * 1 */
		__asm__ volatile("fnstcw %[h]\n\tfldcw %[c]\n\tfnclex\n\tfldt %[a]\n\t"
				 "fldt %[b]\n\tfmulp\n\tfnstsw %[sw]\n\tfstpt %[r]\n\tfldcw %[h]"
				 : [h] "=m"(hcw), [sw] "=m"(sw), [r] "=m"(r)
				 : [c] "m"(cw), [a] "m"(a), [b] "m"(b));
		break;
	}
	return sw & 0x20;
}

/* With OM or UM unmasked, hardware reports per element: an element that
 * overflows with OM clear reports OE, one whose result is tiny (exact or
 * not) with UM clear reports UE, each with PE only if the result rounded
 * with an unbounded exponent is inexact; every other element reports its
 * masked flags. The masked run cannot see exact tiny results, so each
 * element is rerun alone (other lanes 1.0, which raise nothing), once
 * masked and once with FTZ, whose UE marks a tiny result. */
static uint32_t post_flags_unmasked(enum sse_op op, const struct kctx *orig,
				    uint32_t guest, uint32_t raised)
{
	bool f64;
	unsigned n = ovf_lanes(op, &f64);
	uint32_t um = ~(guest >> 7) & (MXCSR_OE | MXCSR_UE);
	if (!n || !um)
		return raised;
	uint32_t total = raised & PRE_FLAGS;
	for (unsigned lane = 0; lane < n; lane++) {
		struct kctx k = *orig;
		if (n > 1) {
			for (unsigned j = 0; j < n; j++) {
				if (j == lane)
					continue;
				if (f64) {
					k.d.q[j] = 0x3FF0000000000000ull;
					k.s.q[j] = 0x3FF0000000000000ull;
				} else {
					k.d.d[j] = 0x3F800000u;
					k.s.d[j] = 0x3F800000u;
				}
			}
		}
		struct kctx k2 = k;
		op_table[op].fn(&k);
		uint32_t f = k.out & MXCSR_FLAGS;
		uint32_t pe = 0;
		if ((um & MXCSR_OE) && (f & MXCSR_OE)) {
			pe = unbounded_inexact(op, orig, lane, f64, guest) ? MXCSR_PE : 0;
			f = (f & ~(MXCSR_OE | MXCSR_PE)) | MXCSR_OE | pe;
		} else if (um & MXCSR_UE) {
			k2.csr |= MXCSR_FTZ;
			op_table[op].fn(&k2);
			if (k2.out & MXCSR_UE) {
				pe = unbounded_inexact(op, orig, lane, f64, guest) ? MXCSR_PE : 0;
				f = (f & ~(MXCSR_UE | MXCSR_PE)) | MXCSR_UE | pe;
			}
		}
		total |= f;
	}
	return total;
}

int sse_exec(enum sse_op op, struct fxsave_area *fx, union xmm *dst,
	     const union xmm *src, uint8_t imm8, uint64_t cr4, uint64_t *rflags)
{
	if (op <= SSE_OP_INVALID || op >= SSE_OP_COUNT)
		return FPU_EXC_UD;
	struct kctx k;
	k.d = *dst;
	k.s = *src;
	k.imm = imm8;
	k.out = 0;
	k.csr = MXCSR_DEFAULT; /* never loaded for the non-FP ops; defined anyway */
	k.rflags = rflags ? *rflags : 0;
	if (!sse_op_raises(op)) {
		op_table[op].fn(&k);
		*dst = k.d;
		return 0;
	}
	uint32_t guest = fx->mxcsr;
	k.csr = (guest & (MXCSR_RC | MXCSR_DAZ | MXCSR_FTZ)) | MXCSR_MASKS;
	struct kctx orig = k;
	op_table[op].fn(&k);
	uint32_t raised = k.out & MXCSR_FLAGS;
	uint32_t unmasked_bits = ~(guest >> 7) & MXCSR_FLAGS;
	if (!(raised & unmasked_bits & PRE_FLAGS))
		raised = post_flags_unmasked(op, &orig, guest, raised);
	if (raised & unmasked_bits) {
		/* Fault: destination and RFLAGS untouched. An unmasked
		 * pre-computation exception stops before the computation, so
		 * the post-computation flags (OE UE PE) are not reported. */
		if (raised & unmasked_bits & PRE_FLAGS)
			fx->mxcsr = guest | (raised & PRE_FLAGS);
		else
			fx->mxcsr = guest | raised;
		return (cr4 & CR4_OSXMMEXCPT) ? FPU_EXC_XM : FPU_EXC_UD;
	}
	fx->mxcsr = guest | raised;
	*dst = k.d;
	if (op_writes_rflags(op) && rflags)
		*rflags = k.rflags;
	return 0;
}
