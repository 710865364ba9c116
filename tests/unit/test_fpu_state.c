/* x87 environment / save / FXSAVE images, tag words, MMX aliasing, MXCSR
 * loading and the decode tables: against the host where the host can run
 * the same thing (32-bit and 16-bit protected-mode images, FXSAVE64), by
 * round trip where it cannot (real-mode layouts), and by value otherwise. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "engine/soft/fpu/fpu.h"
#include "engine/soft/fpu/x87_img.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static void put80(uint8_t *p, uint64_t m, uint16_t se)
{
	memcpy(p, &m, 8);
	memcpy(p + 8, &se, 2);
}

static void rnd_fx(struct fxsave_area *fx)
{
	fpu_reset(fx);
	fx->fcw = (uint16_t)(0x0040 | (rnd() & 0x1F3F));
	fx->fsw = (uint16_t)(rnd() & 0x7F7F);
	fx->ftw = (uint8_t)rnd();
	for (unsigned i = 0; i < 8; i++) {
		uint64_t m = rnd();
		uint16_t se = (uint16_t)rnd();
		switch (rnd() % 6) {
		case 0: m = 0; se &= 0x8000; break;                 /* zero */
		case 1: se &= 0x8000; break;                        /* denormal */
		case 2: se |= 0x7FFF; break;                        /* inf/nan */
		case 3: m &= ~(1ull << 63); break;                  /* unnormal */
		default: m |= 1ull << 63; break;                    /* normal */
		}
		put80(fx->st[i], m, se);
	}
	fx->fip = rnd() & 0xFFFFFFFF;
	fx->fdp = rnd() & 0xFFFFFFFF;
	fx->fop = rnd() & 0x7FF;
	fx->mxcsr = (uint32_t)(rnd() & 0xFFFF);
	for (unsigned i = 0; i < 16; i++)
		for (unsigned j = 0; j < 16; j++)
			fx->xmm[i][j] = (uint8_t)rnd();
}

/* Host: FRSTOR img, then `insn` on buf, then FNSAVE img. The loads
 * (FLDENV/FRSTOR) are waiting instructions: clear a pending exception of
 * the old state first (they replace the environment anyway). */
#define HOST_ENV_OP(insn, img, buf)                                              \
	do {                                                                     \
		uint16_t hcw_;                                                   \
		__asm__ volatile("fnstcw %[h]\n\tfrstor %[i]\n\tfnclex\n\t" insn " %[b]\n\t" \
				 "fnsave %[i]\n\tfldcw %[h]"                     \
				 : [i] "+m"(img), [b] "+m"(buf), [h] "=m"(hcw_)  \
				 :                                               \
				 : "memory");                                    \
	} while (0)

/* The stores are no-wait: run them on the state as it is. */
#define HOST_STORE_OP(insn, img, buf)                                            \
	do {                                                                     \
		uint16_t hcw_;                                                   \
		__asm__ volatile("fnstcw %[h]\n\tfrstor %[i]\n\t" insn " %[b]\n\t" \
				 "fnsave %[i]\n\tfldcw %[h]"                     \
				 : [i] "+m"(img), [b] "+m"(buf), [h] "=m"(hcw_)  \
				 :                                               \
				 : "memory");                                    \
	} while (0)

static bool same_x87(const struct fxsave_area *fx, const struct fsave32 *img)
{
	struct fsave32 mine;
	x87_img_from_fx(fx, &mine);
	return mine.fcw == img->fcw && mine.fsw == img->fsw &&
	       mine.ftw == img->ftw && memcmp(mine.st, img->st, 80) == 0;
}

Test(fpu_state, fnstenv_fldenv_32_vs_host)
{
	for (unsigned n = 0; n < 2000; n++) {
		struct fxsave_area fx;
		rnd_fx(&fx);
		struct fsave32 img;
		x87_img_from_fx(&fx, &img);
		x87_img_normalize(&img); /* the host's view of this state */
		x87_img_to_fx(&img, &fx);

		uint8_t hbuf[28], gbuf[28];
		memset(hbuf, 0xAA, sizeof(hbuf));
		struct fsave32 himg = img;
		HOST_STORE_OP("fnstenv", himg, hbuf);
		struct fxsave_area g = fx;
		x87_fnstenv(&g, gbuf, false, false);
		/* FIP/FCS/FOP/FDP/FDS are the guest's, not the host's */
		cr_assert(memcmp(hbuf, gbuf, 12) == 0, "fnstenv control/status/tags");
		cr_assert(same_x87(&g, &himg), "state after fnstenv");

		/* FLDENV of a random environment */
		uint8_t env[28];
		for (unsigned i = 0; i < 28; i++)
			env[i] = (uint8_t)rnd();
		himg = img;
		HOST_ENV_OP("fldenv", himg, env);
		g = fx;
		x87_fldenv(&g, env, false, false);
		{
			struct fsave32 m;
			x87_img_from_fx(&g, &m);
			cr_assert(same_x87(&g, &himg), "state after fldenv: host fcw %04x fsw %04x ftw %04x, lib %04x %04x %04x, env %02x%02x %02x%02x %02x%02x",
				  himg.fcw, himg.fsw, himg.ftw, m.fcw, m.fsw, m.ftw, env[1], env[0], env[5], env[4], env[9], env[8]);
		}
		uint32_t fip;
		memcpy(&fip, env + 12, 4);
		cr_assert_eq(g.fip, fip);
		cr_assert_eq(g.fop, (env[18] | env[19] << 8) & 0x7FF);
	}
}

Test(fpu_state, fnstenv_fldenv_16_vs_host)
{
	for (unsigned n = 0; n < 1000; n++) {
		struct fxsave_area fx;
		rnd_fx(&fx);
		struct fsave32 img;
		x87_img_from_fx(&fx, &img);
		x87_img_normalize(&img);
		x87_img_to_fx(&img, &fx);
		uint8_t hbuf[14], gbuf[14];
		struct fsave32 himg = img;
		HOST_STORE_OP("data16 fnstenv", himg, hbuf);
		struct fxsave_area g = fx;
		x87_fnstenv(&g, gbuf, true, false);
		cr_assert(memcmp(hbuf, gbuf, 6) == 0, "16-bit fnstenv words");
		cr_assert(same_x87(&g, &himg));

		uint8_t env[14];
		for (unsigned i = 0; i < 14; i++)
			env[i] = (uint8_t)rnd();
		himg = img;
		HOST_ENV_OP("data16 fldenv", himg, env);
		g = fx;
		x87_fldenv(&g, env, true, false);
		cr_assert(same_x87(&g, &himg), "16-bit fldenv");
	}
}

Test(fpu_state, fnsave_frstor_vs_host)
{
	for (unsigned n = 0; n < 2000; n++) {
		struct fxsave_area fx;
		rnd_fx(&fx);
		struct fsave32 img;
		x87_img_from_fx(&fx, &img);
		x87_img_normalize(&img);
		x87_img_to_fx(&img, &fx);

		uint8_t hbuf[108], gbuf[108];
		struct fsave32 himg = img;
		HOST_STORE_OP("fnsave", himg, hbuf);
		struct fxsave_area g = fx;
		x87_fnsave(&g, gbuf, false, false);
		cr_assert(memcmp(hbuf, gbuf, 12) == 0 &&
			  memcmp(hbuf + 28, gbuf + 28, 80) == 0, "fnsave image");
		cr_assert(same_x87(&g, &himg), "state after fnsave (fninit)");

		uint8_t sv[108];
		for (unsigned i = 0; i < 108; i++)
			sv[i] = (uint8_t)rnd();
		himg = img;
		HOST_ENV_OP("frstor", himg, sv);
		g = fx;
		x87_frstor(&g, sv, false, false);
		cr_assert(same_x87(&g, &himg), "frstor");

		/* 16-bit: 94 bytes */
		uint8_t h16[94], g16[94];
		himg = img;
		HOST_STORE_OP("data16 fnsave", himg, h16);
		g = fx;
		x87_fnsave(&g, g16, true, false);
		cr_assert(memcmp(h16, g16, 6) == 0 && memcmp(h16 + 14, g16 + 14, 80) == 0,
			  "16-bit fnsave");
	}
}

Test(fpu_state, env_roundtrip_all_layouts)
{
	for (unsigned layout = 0; layout < 4; layout++) {
		bool op16 = layout & 1, real = layout & 2;
		for (unsigned n = 0; n < 500; n++) {
			struct fxsave_area fx;
			rnd_fx(&fx);
			struct fsave32 img;
			x87_img_from_fx(&fx, &img);
			x87_img_normalize(&img);
			x87_img_to_fx(&img, &fx);
			/* what each layout can hold */
			uint64_t lim = real ? (op16 ? 0xFFFFF : 0xFFFFFFFF) : (op16 ? 0xFFFF : 0xFFFFFFFF);
			fx.fip &= lim;
			fx.fdp &= lim;
			if (!real && op16)
				fx.fop = 0;
			uint8_t buf[108];
			struct fxsave_area a = fx, b;
			x87_fnsave(&a, buf, op16, real);
			fpu_reset(&b);
			x87_frstor(&b, buf, op16, real);
			cr_assert_eq(b.fcw, fx.fcw);
			cr_assert_eq(b.fsw, fx.fsw);
			cr_assert_eq(b.ftw, fx.ftw);
			cr_assert(memcmp(b.st, fx.st, sizeof(fx.st)) == 0);
			cr_assert_eq(b.fip, fx.fip, "layout %u fip %llx vs %llx", layout,
				     (unsigned long long)b.fip, (unsigned long long)fx.fip);
			cr_assert_eq(b.fdp, fx.fdp, "layout %u", layout);
			if (real || !op16)
				cr_assert_eq(b.fop, fx.fop, "layout %u", layout);
			/* FNSTENV masks all exceptions */
			a = fx;
			x87_fnstenv(&a, buf, op16, real);
			cr_assert_eq(a.fcw, fx.fcw | 0x3F);
			cr_assert_eq(x87_env_size(op16), op16 ? 14u : 28u);
			cr_assert_eq(x87_save_size(op16), op16 ? 94u : 108u);
		}
	}
}

Test(fpu_state, fxsave_fxrstor_vs_host)
{
	for (unsigned n = 0; n < 1000; n++) {
		struct fxsave_area fx;
		rnd_fx(&fx);
		uint8_t in[512] __attribute__((aligned(16)));
		uint8_t out[512] __attribute__((aligned(16)));
		fpu_fxsave(&fx, in, true, true);
		memset(in + 416, 0, 96);
		memset(out, 0, sizeof(out));
		uint32_t hcsr;
		uint16_t hcw;
		__asm__ volatile("stmxcsr %[c]\n\tfnstcw %[w]\n\tfxrstor64 %[i]\n\tfxsave64 %[o]\n\t"
				 "fninit\n\tfldcw %[w]\n\tldmxcsr %[c]"
				 : [o] "=m"(out), [c] "=m"(hcsr), [w] "=m"(hcw)
				 : [i] "m"(in)
				 : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
				   "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
				   "xmm13", "xmm14", "xmm15", "memory");
		struct fxsave_area g;
		fpu_reset(&g);
		cr_assert_eq(fpu_fxrstor(&g, in, true, true), 0);
		uint8_t mine[512];
		memset(mine, 0, sizeof(mine));
		fpu_fxsave(&g, mine, true, true);
		cr_assert(memcmp(out, mine, 6) == 0, "fcw/fsw/ftw: host %02x%02x %02x%02x %02x lib %02x%02x %02x%02x %02x",
			  out[1], out[0], out[3], out[2], out[4], mine[1], mine[0], mine[3], mine[2], mine[4]);
		cr_assert(memcmp(out + 24, mine + 24, 4) == 0, "mxcsr");
		for (unsigned i = 0; i < 8; i++)
			cr_assert(memcmp(out + 32 + 16 * i, mine + 32 + 16 * i, 10) == 0, "st%u", i);
		cr_assert(memcmp(out + 160, mine + 160, 256) == 0, "xmm");
	}
	/* reserved MXCSR bits: #GP, nothing loaded */
	struct fxsave_area fx, before;
	rnd_fx(&fx);
	uint8_t img[512];
	fpu_fxsave(&fx, img, false, false);
	uint32_t bad = 0x10000 | fx.mxcsr;
	memcpy(img + 24, &bad, 4);
	fpu_reset(&before);
	struct fxsave_area g = before;
	cr_assert_eq(fpu_fxrstor(&g, img, false, false), FPU_EXC_GP);
	cr_assert(memcmp(&g, &before, sizeof(g)) == 0);
	/* 32-bit layout: FIP/FDP offsets only, XMM8-15 untouched */
	memset(img, 0xEE, sizeof(img));
	fx.fip = 0x1122334455667788ull;
	fpu_fxsave(&fx, img, false, false);
	cr_assert_eq(img[8], 0x88);
	cr_assert_eq(img[12], 0);
	cr_assert_eq(img[288], 0xEE);
	cr_assert_eq(img[464], 0xEE);
	uint32_t mask;
	memcpy(&mask, img + 28, 4);
	cr_assert_eq(mask, MXCSR_MASK_VALUE);
}

Test(fpu_state, tags)
{
	struct fxsave_area fx;
	fpu_reset(&fx);
	fx.fsw = 5 << FSW_TOP_SHIFT;
	fx.ftw = 0x7F; /* physical 7 empty */
	put80(fx.st[0], 0, 0);                       /* phys 5: zero */
	put80(fx.st[1], 1, 0);                       /* phys 6: denormal -> special */
	put80(fx.st[3], 1ull << 63, 0x3FFF);         /* phys 0: valid */
	put80(fx.st[4], 1ull << 62, 0x3FFF);         /* phys 1: unnormal -> special */
	put80(fx.st[5], 1ull << 63, 0x7FFF);         /* phys 2: inf -> special */
	put80(fx.st[6], 3ull << 62, 0xFFFF);         /* phys 3: nan -> special */
	put80(fx.st[7], 0, 0x8000);                  /* phys 4: -0 */
	uint16_t full = fpu_ftw_full(&fx);
	cr_assert_eq(full, (uint16_t)(0 | 2 << 2 | 2 << 4 | 2 << 6 | 1 << 8 | 1 << 10 |
				      2 << 12 | 3 << 14), "full tags %04x", full);
	cr_assert_eq(fpu_ftw_abridge(full), 0x7F);
	cr_assert_eq(fpu_ftw_abridge(0xFFFF), 0);
	cr_assert_eq(fpu_ftw_abridge(0x0000), 0xFF);
}

Test(fpu_state, mmx_aliasing)
{
	struct fxsave_area fx;
	fpu_reset(&fx);
	fx.fsw = 3 << FSW_TOP_SHIFT;
	for (unsigned i = 0; i < 8; i++)
		put80(fx.st[i], 0x1111111111111111ull * i, (uint16_t)i);
	/* MM0 is physical 0 = ST(5) when TOP=3 */
	cr_assert_eq(fpu_mmx_read(&fx, 0), 0x1111111111111111ull * 5);
	fpu_mmx_enter(&fx);
	cr_assert_eq(fx.fsw & FSW_TOP, 0);
	cr_assert_eq(fx.ftw, 0xFF);
	cr_assert_eq(fpu_mmx_read(&fx, 0), 0x1111111111111111ull * 5);
	cr_assert_eq(fpu_mmx_read(&fx, 3), 0x1111111111111111ull * 0);
	fpu_mmx_write(&fx, 2, 0xDEADBEEFCAFEF00Dull);
	cr_assert_eq(fx.st[2][8], 0xFF);
	cr_assert_eq(fx.st[2][9], 0xFF);
	cr_assert_eq(fpu_mmx_read(&fx, 2), 0xDEADBEEFCAFEF00Dull);
	fpu_emms(&fx);
	cr_assert_eq(fx.ftw, 0);
}

Test(fpu_state, ldmxcsr)
{
	struct fxsave_area fx;
	fpu_reset(&fx);
	cr_assert_eq(fx.mxcsr, 0x1F80);
	cr_assert_eq(sse_ldmxcsr(&fx, 0xFFFF), 0);
	cr_assert_eq(fx.mxcsr, 0xFFFF);
	cr_assert_eq(sse_ldmxcsr(&fx, 0x20000), FPU_EXC_GP);
	cr_assert_eq(sse_ldmxcsr(&fx, 0x80001F80), FPU_EXC_GP);
	cr_assert_eq(fx.mxcsr, 0xFFFF);
	/* unmasked flags raise nothing at load time */
	cr_assert_eq(sse_ldmxcsr(&fx, 0x003F), 0);
}

Test(fpu_state, fcmov_conditions)
{
	uint64_t cf = RFLAGS_CF, zf = RFLAGS_ZF, pf = RFLAGS_PF;
	cr_assert(x87_fcmov_cond(X87_CC_B, cf));
	cr_assert(!x87_fcmov_cond(X87_CC_B, zf));
	cr_assert(x87_fcmov_cond(X87_CC_E, zf));
	cr_assert(x87_fcmov_cond(X87_CC_BE, zf));
	cr_assert(x87_fcmov_cond(X87_CC_BE, cf));
	cr_assert(!x87_fcmov_cond(X87_CC_BE, pf));
	cr_assert(x87_fcmov_cond(X87_CC_U, pf));
	cr_assert(x87_fcmov_cond(X87_CC_B | X87_CC_NOT, 0));
	cr_assert(!x87_fcmov_cond(X87_CC_U | X87_CC_NOT, pf));
}

static int dec_sse(const uint8_t *b, size_t n, struct sse_form *f)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, b, n, &zi, ops)));
	return sse_decode(&zi, ops, f);
}

#define DEC(f, ...) dec_sse((const uint8_t[]){ __VA_ARGS__ }, sizeof((uint8_t[]){ __VA_ARGS__ }), f)

Test(fpu_state, sse_decode_forms)
{
	struct sse_form f;
	cr_assert_eq(DEC(&f, 0x0F, 0x28, 0x06), 0); /* movaps xmm0, [rsi] */
	cr_assert_eq(f.op, SSE_MOV128);
	cr_assert(f.flags & SSE_F_ALIGN16);
	cr_assert_eq(f.src_loc, SSE_LOC_MEM);
	cr_assert_eq(f.mem_size, 16);
	cr_assert_eq(DEC(&f, 0x0F, 0x10, 0x06), 0); /* movups: no alignment */
	cr_assert(!(f.flags & SSE_F_ALIGN16));
	cr_assert_eq(DEC(&f, 0x44, 0x0F, 0x58, 0x3E), 0); /* addps xmm15, [rsi] */
	cr_assert_eq(f.dst_reg, 15);
	cr_assert(f.flags & SSE_F_ALIGN16);
	cr_assert(f.flags & SSE_F_MXCSR);
	cr_assert(f.flags & SSE_F_DST_READ);
	cr_assert_eq(DEC(&f, 0xF3, 0x0F, 0x58, 0x06), 0); /* addss xmm0, m32 */
	cr_assert_eq(f.mem_size, 4);
	cr_assert(!(f.flags & SSE_F_ALIGN16));
	cr_assert_eq(DEC(&f, 0x66, 0x0F, 0xC4, 0x06, 3), 0); /* pinsrw xmm0, m16, 3 */
	cr_assert_eq(f.mem_size, 2);
	cr_assert(f.has_imm);
	cr_assert_eq(f.imm8, 3);
	cr_assert_eq(DEC(&f, 0x0F, 0x2E, 0xC1), 0); /* ucomiss */
	cr_assert(f.flags & SSE_F_RFLAGS);
	cr_assert(!(f.flags & SSE_F_DST_WRITE));
	cr_assert_eq(DEC(&f, 0x66, 0x0F, 0xF7, 0xC1), 0); /* maskmovdqu */
	cr_assert(f.flags & SSE_F_MASKMOV);
	cr_assert(!(f.flags & SSE_F_DST_WRITE));
	cr_assert_eq(DEC(&f, 0x66, 0x4C, 0x0F, 0x7E, 0xC7), 0); /* movq rdi, xmm8 */
	cr_assert_eq(f.op, SSE_MOVQ_FROM_XMM);
	cr_assert_eq(f.dst_loc, SSE_LOC_GPR);
	cr_assert_eq(f.dst_reg, RDI);
	cr_assert_eq(f.gpr_size, 8);
	cr_assert_eq(f.src_reg, 8);
	cr_assert_eq(DEC(&f, 0x0F, 0xFC, 0xC1), 0); /* paddb mm0, mm1 */
	cr_assert(f.flags & SSE_F_MMX);
	cr_assert_eq(f.dst_loc, SSE_LOC_MMX);
	cr_assert_eq(DEC(&f, 0x0F, 0x2A, 0x06), 0); /* cvtpi2ps xmm0, m64: no MMX transition */
	cr_assert(!(f.flags & SSE_F_MMX));
	cr_assert_eq(DEC(&f, 0x66, 0x0F, 0x73, 0xF8, 4), 0); /* pslldq xmm0, 4 */
	cr_assert_eq(f.op, SSE_PSLLDQ);
	cr_assert_eq(f.src_loc, SSE_LOC_NONE);
	cr_assert_eq(DEC(&f, 0xA5), -ENOENT);                        /* movsd (string) */
	cr_assert_eq(DEC(&f, 0xC5, 0xF8, 0x58, 0xC1), -ENOENT);      /* vaddps */
	cr_assert_eq(DEC(&f, 0x01, 0xC0), -ENOENT);                  /* add */
	cr_assert_eq(sse_op_for_mnemonic(ZYDIS_MNEMONIC_ADDPS), SSE_ADDPS);
	cr_assert_eq(sse_op_for_mnemonic(ZYDIS_MNEMONIC_ADD), SSE_OP_INVALID);
	cr_assert_str_eq(sse_op_name(SSE_PSHUFD), "PSHUFD");
	cr_assert_str_eq(x87_op_name(X87_FSINCOS), "FSINCOS");
}

Test(fpu_state, maskmov_mask)
{
	union xmm m;
	memset(&m, 0, sizeof(m));
	m.b[0] = 0x80;
	m.b[5] = 0xFF;
	m.b[15] = 0x81;
	m.b[7] = 0x7F;
	cr_assert_eq(sse_maskmov_mask(&m), (1u << 0) | (1u << 5) | (1u << 15));
}

Test(fpu_state, unmasked_xm_vs_ud)
{
	struct fxsave_area fx;
	fpu_reset(&fx);
	fx.mxcsr = 0x1F80 & ~0x0200; /* ZE unmasked */
	union xmm d = { .f = { 1, 1, 1, 1 } }, s = { .f = { 0, 1, 1, 1 } };
	union xmm d0 = d;
	cr_assert_eq(sse_exec(SSE_DIVPS, &fx, &d, &s, 0, CR4_OSXMMEXCPT, NULL), FPU_EXC_XM);
	cr_assert(memcmp(&d, &d0, 16) == 0);
	cr_assert_eq(fx.mxcsr & MXCSR_FLAGS, MXCSR_ZE);
	cr_assert_eq(sse_exec(SSE_DIVPS, &fx, &d, &s, 0, 0, NULL), FPU_EXC_UD);
	fx.mxcsr = 0x1F80;
	cr_assert_eq(sse_exec(SSE_DIVPS, &fx, &d, &s, 0, 0, NULL), 0);
	cr_assert_eq(d.d[0], 0x7F800000u);
	cr_assert_eq(fx.mxcsr, 0x1F80 | MXCSR_ZE);
	cr_assert_eq(sse_exec(SSE_OP_INVALID, &fx, &d, &s, 0, 0, NULL), FPU_EXC_UD);
}

Test(fpu_state, x87_pending_and_decode)
{
	struct fxsave_area fx;
	fpu_reset(&fx);
	cr_assert_eq(x87_check_pending(&fx), 0);
	struct x87_io io;
	memset(&io, 0, sizeof(io));
	/* 1/0 with ZE unmasked: pending, raised by the next waiting op */
	uint16_t cw = 0x037B;
	memcpy(io.mem, &cw, 2);
	cr_assert_eq(x87_exec(X87_FLDCW, &fx, 0, &io), 0);
	cr_assert_eq(x87_exec(X87_FLD1, &fx, 0, &io), 0);
	cr_assert_eq(x87_exec(X87_FLDZ, &fx, 0, &io), 0);
	cr_assert_eq(x87_exec(X87_FDIVP, &fx, 1, &io), 0);
	cr_assert(fx.fsw & FSW_ES);
	cr_assert(fx.fsw & FSW_ZE);
	cr_assert_eq(x87_check_pending(&fx), FPU_EXC_MF);
	cr_assert_eq(x87_exec(X87_FWAIT, &fx, 0, &io), FPU_EXC_MF);
	cr_assert_eq(x87_exec(X87_FNSTSW_AX, &fx, 0, &io), 0);
	cr_assert(io.ax & FSW_ES);
	cr_assert_eq(x87_exec(X87_FNCLEX, &fx, 0, &io), 0);
	cr_assert_eq(x87_check_pending(&fx), 0);
	/* long double arithmetic result checks: 1/3 at 64-bit precision */
	cr_assert_eq(x87_exec(X87_FNINIT, &fx, 0, &io), 0);
	uint32_t three = 0x40400000; /* 3.0f */
	memcpy(io.mem, &three, 4);
	cr_assert_eq(x87_exec(X87_FLD1, &fx, 0, &io), 0);
	cr_assert_eq(x87_exec(X87_FDIV_M32, &fx, 0, &io), 0);
	long double r;
	memcpy(&r, fx.st[0], 10);
	cr_assert(r == 1.0L / 3.0L);
	cr_assert_eq(x87_exec(X87_FSTP_M80, &fx, 0, &io), 0);
	cr_assert(io.store);
	cr_assert_eq(fx.ftw, 0);
	cr_assert_eq(x87_exec(X87_FLDENV, &fx, 0, &io), -EINVAL); /* separate entry */
}

static int dec_x87(const uint8_t *b, size_t n, struct x87_form *f)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, b, n, &zi, ops)));
	return x87_decode(&zi, f);
}

Test(fpu_state, availability_checks)
{
	struct fxsave_area fx;
	fpu_reset(&fx);
	struct sse_form f;
	cr_assert_eq(DEC(&f, 0x0F, 0x58, 0xC1), 0); /* addps */
	cr_assert_eq(sse_check(&f, 0, CR4_OSFXSR, &fx), 0);
	cr_assert_eq(sse_check(&f, CR0_EM, CR4_OSFXSR, &fx), FPU_EXC_UD);
	cr_assert_eq(sse_check(&f, 0, 0, &fx), FPU_EXC_UD);
	cr_assert_eq(sse_check(&f, CR0_TS, CR4_OSFXSR, &fx), FPU_EXC_NM);
	fx.fsw |= FSW_ES; /* stale: no unmasked flag, nothing pending */
	cr_assert_eq(x87_check_pending(&fx), 0);
	fx.fcw = 0x037B;
	fx.fsw |= FSW_ZE | FSW_B;
	cr_assert_eq(sse_check(&f, 0, CR4_OSFXSR, &fx), 0);
	cr_assert_eq(DEC(&f, 0x0F, 0xFC, 0xC1), 0); /* paddb mm */
	cr_assert_eq(sse_check(&f, 0, 0, &fx), FPU_EXC_MF);
	cr_assert_eq(sse_check(&f, CR0_TS, 0, &fx), FPU_EXC_NM);
	cr_assert_eq(DEC(&f, 0x0F, 0xC3, 0x06), 0); /* movnti */
	cr_assert_eq(sse_check(&f, CR0_EM | CR0_TS, 0, &fx), 0);

	struct x87_form x;
	cr_assert_eq(dec_x87((const uint8_t[]){ 0xD8, 0xC3 }, 2, &x), 0);
	cr_assert_eq(x.op, X87_FADD_STi);
	cr_assert_eq(x.sti, 3);
	cr_assert_eq(x.fop, 0x0C3);
	cr_assert_eq(x87_check(&x, 0, &fx), FPU_EXC_MF);
	cr_assert_eq(x87_check(&x, CR0_EM, &fx), FPU_EXC_NM);
	cr_assert_eq(dec_x87((const uint8_t[]){ 0xDF, 0xE0 }, 2, &x), 0);
	cr_assert_eq(x.op, X87_FNSTSW_AX);
	cr_assert_eq(x87_check(&x, 0, &fx), 0);
	cr_assert_eq(dec_x87((const uint8_t[]){ 0x9B }, 1, &x), 0);
	cr_assert_eq(x.op, X87_FWAIT);
	cr_assert_eq(x87_check(&x, CR0_TS, &fx), FPU_EXC_MF);
	cr_assert_eq(x87_check(&x, CR0_TS | CR0_MP, &fx), FPU_EXC_NM);
	cr_assert_eq(dec_x87((const uint8_t[]){ 0xDD, 0x36 }, 2, &x), 0);
	cr_assert_eq(x.op, X87_FNSAVE);
	cr_assert_eq(dec_x87((const uint8_t[]){ 0xDA, 0xC9 }, 2, &x), 0);
	cr_assert_eq(x.op, X87_FCMOV_STi);
	cr_assert_eq(x.fcmov_cc, X87_CC_E);
	cr_assert_eq(dec_x87((const uint8_t[]){ 0xDB, 0xD1 }, 2, &x), 0);
	cr_assert_eq(x.fcmov_cc, X87_CC_BE | X87_CC_NOT);
	cr_assert_eq(dec_x87((const uint8_t[]){ 0xDD, 0x06 }, 2, &x), 0);
	cr_assert_eq(x.op, X87_FLD_M64);
	cr_assert_eq(x.mem_size, 8);
	cr_assert_eq(x.fop, 0x506);
}

Test(fpu_state, maskmovdqu_vs_host)
{
	for (unsigned n = 0; n < 500; n++) {
		union xmm data, mask;
		for (unsigned i = 0; i < 16; i++) {
			data.b[i] = (uint8_t)rnd();
			mask.b[i] = (uint8_t)rnd();
		}
		uint8_t host[16], mine[16];
		memset(host, 0x5A, 16);
		memset(mine, 0x5A, 16);
		__asm__ volatile("movdqu %[d], %%xmm0\n\tmovdqu %[m], %%xmm1\n\t"
				 "maskmovdqu %%xmm1, %%xmm0\n\tsfence"
				 :
				 : [d] "m"(data), [m] "m"(mask), "D"(host)
				 : "xmm0", "xmm1", "memory");
		uint16_t bm = sse_maskmov_mask(&mask);
		for (unsigned i = 0; i < 16; i++)
			if (bm & (1u << i))
				mine[i] = data.b[i];
		cr_assert(memcmp(host, mine, 16) == 0);
	}
}

/* The host's own MXCSR and FCW survive any guest setting. */
Test(fpu_state, host_control_words_preserved)
{
	uint32_t csr = 0x1F80 | 0x4000 | 0x20, after;
	uint16_t cw = 0x027F, cw_after;
	__asm__ volatile("ldmxcsr %0\n\tfldcw %1" : : "m"(csr), "m"(cw));
	struct fxsave_area fx;
	fpu_reset(&fx);
	fx.mxcsr = 0x7FC0; /* toward zero, DAZ */
	union xmm d = { .f = { 1, 2, 3, 4 } }, s = { .f = { 3, 3, 3, 3 } };
	cr_assert_eq(sse_exec(SSE_DIVPS, &fx, &d, &s, 0, CR4_OSXMMEXCPT, NULL), 0);
	struct x87_io io;
	memset(&io, 0, sizeof(io));
	uint16_t gcw = 0x0C7F;
	memcpy(io.mem, &gcw, 2);
	cr_assert_eq(x87_exec(X87_FLDCW, &fx, 0, &io), 0);
	cr_assert_eq(x87_exec(X87_FLDPI, &fx, 0, &io), 0);
	cr_assert_eq(x87_exec(X87_FSQRT, &fx, 0, &io), 0);
	__asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(after), "=m"(cw_after));
	uint32_t def = 0x1F80;
	uint16_t dcw = 0x037F;
	__asm__ volatile("ldmxcsr %0\n\tfldcw %1" : : "m"(def), "m"(dcw));
	cr_assert_eq(after, csr);
	cr_assert_eq(cw_after, cw);
	cr_assert_eq(fx.fcw, 0x0C7F);
	cr_assert_eq(fx.mxcsr, 0x7FC0 | MXCSR_PE);
}

Test(fpu_state, sse_decode_32bit_mode)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32);
	const uint8_t cvt[] = { 0xF2, 0x0F, 0x2D, 0xC1 }; /* cvtsd2si eax, xmm1 */
	cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, cvt, sizeof(cvt), &zi, ops)));
	struct sse_form f;
	cr_assert_eq(sse_decode(&zi, ops, &f), 0);
	cr_assert_eq(f.op, SSE_CVTSD2SI_32);
	cr_assert_eq(f.gpr_size, 4);
	const uint8_t mv[] = { 0x66, 0x0F, 0x6F, 0x00 }; /* movdqa xmm0, [eax] */
	cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, mv, sizeof(mv), &zi, ops)));
	cr_assert_eq(sse_decode(&zi, ops, &f), 0);
	cr_assert(f.flags & SSE_F_ALIGN16);
}
