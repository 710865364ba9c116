/* x87 ops against the host CPU. Every encoding of D8-DF (register forms
 * C0-FF and each memory /r with [rsi]) that Zydis accepts is run on the
 * host (patched into a stub: FRSTOR state, RFLAGS, rax, [rsi]; the
 * instruction; FNSAVE) and through Zydis -> x87_decode -> x87_exec with the
 * core's protocol; control/status/tag words, registers, the memory operand,
 * RFLAGS and AX must match bit for bit, under several control words
 * (precision, rounding, unmasked exceptions) and random stack states with
 * empty slots (stack faults). A pending unmasked exception must make the
 * host trap (#MF -> SIGFPE) exactly when the library returns FPU_EXC_MF. */
#include <criterion/criterion.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "engine/soft/fpu/fpu.h"
#include "engine/soft/fpu/x87_img.h"

struct xstate {
	struct fsave32 img; /* 0 */
	uint8_t pad[4];
	uint8_t mem[16];    /* 112: [rsi] */
	uint64_t rflags;    /* 128 */
	uint64_t rax;       /* 136 */
	uint16_t host_fcw;  /* 144 */
	uint8_t pad2[14];
} __attribute__((aligned(16)));
_Static_assert(offsetof(struct xstate, mem) == 112, "stub layout");
_Static_assert(offsetof(struct xstate, rflags) == 128, "stub layout");

__asm__(".text\n"
	".globl fpu_x87_stub, fpu_x87_stub_slot, fpu_x87_stub_end\n"
	"fpu_x87_stub:\n"
	"fnstcw 144(%rdi)\n"
	"movq 136(%rdi), %rax\n"
	"leaq 112(%rdi), %rsi\n"
	"pushq 128(%rdi)\n"
	"popfq\n"
	"frstor 0(%rdi)\n"
	"fpu_x87_stub_slot:\n"
	".fill 16, 1, 0x90\n"
	"pushfq\n"
	"popq 128(%rdi)\n"
	"fnsave 0(%rdi)\n"
	"movq %rax, 136(%rdi)\n"
	"fldcw 144(%rdi)\n"
	"ret\n"
	"fpu_x87_stub_end:\n");

extern const uint8_t fpu_x87_stub[], fpu_x87_stub_slot[], fpu_x87_stub_end[];

static uint8_t *code;
static sigjmp_buf fpe_jb;

static void on_fpe(int sig)
{
	(void)sig;
	siglongjmp(fpe_jb, 1);
}

static void setup_host(void)
{
	code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(code != MAP_FAILED, "mmap exec page");
	memcpy(code, fpu_x87_stub, (size_t)(fpu_x87_stub_end - fpu_x87_stub));
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fpe;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGFPE, &sa, NULL);
}

static int host_run(const uint8_t *insn, size_t n, struct xstate *h)
{
	uint8_t *slot = code + (fpu_x87_stub_slot - fpu_x87_stub);
	memset(slot, 0x90, 16);
	memcpy(slot, insn, n);
	void (*fn)(struct xstate *) = (void (*)(struct xstate *))(void *)code;
	if (sigsetjmp(fpe_jb, 1)) {
		uint16_t cw = 0x37F; /* the kernel gave us a clean FPU */
		__asm__ volatile("fninit\n\tfldcw %0" : : "m"(cw));
		return 1;
	}
	fn(h);
	return 0;
}

static uint64_t rng_state;

/* KITE_FPU_TEST_SCALE=N multiplies the case counts (a longer fuzz pass);
 * the default keeps the suite quick. A fresh seed: KITE_FPU_TEST_SEED. */
static unsigned scale(void)
{
	const char *s = getenv("KITE_FPU_TEST_SCALE");
	long v = s ? strtol(s, NULL, 10) : 1;
	return v < 1 ? 1 : v > 10000 ? 10000 : (unsigned)v;
}

static uint64_t seed_mix(uint64_t seed)
{
	const char *s = getenv("KITE_FPU_TEST_SEED");
	uint64_t v = s ? strtoull(s, NULL, 0) : 0;
	return (seed ^ (v * 0x9E3779B97F4A7C15ull)) | 1;
}

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

struct f80 {
	uint64_t m;
	uint16_t se;
};

static const struct f80 edges[] = {
	{ 0, 0 }, { 0, 0x8000 }, { 0x8000000000000000ull, 0x3FFF },
	{ 0x8000000000000000ull, 0xBFFF }, { 0xC90FDAA22168C235ull, 0x4000 },
	{ 0x8000000000000000ull, 0x3FFE }, { 0xC000000000000000ull, 0x4000 },
	{ 0x8000000000000000ull, 0x403E }, { 0x8000000000000000ull, 0x403F },
	{ 0xFFFFFFFFFFFFFFFFull, 0x7FFE }, { 0x8000000000000000ull, 0x0001 },
	{ 0x0000000000000001ull, 0x0000 }, { 0x8000000000000001ull, 0x0000 },
	{ 0x4000000000000000ull, 0x3FFF }, { 0x8000000000000000ull, 0x7FFF },
	{ 0x8000000000000000ull, 0xFFFF }, { 0xC000000000000000ull, 0x7FFF },
	{ 0x8000000000000001ull, 0x7FFF }, { 0xC000000000000000ull, 0xFFFF },
	{ 0x0000000000000000ull, 0x7FFF }, { 0xFFFF000000000000ull, 0x400D },
	{ 0xFFFF800000000000ull, 0xC00D }, { 0xFFFFFFFF00000000ull, 0x401D },
	{ 0x8000000080000000ull, 0xC01E }, { 0xFFFFFFFFFFFFFFFFull, 0x403D },
	{ 0x8000000000000000ull, 0x3F81 }, { 0x8000000000000000ull, 0x3C01 },
	{ 0xFFFFFF0000000000ull, 0x407E }, { 0xFFFFFFFFFFFFF800ull, 0x43FE },
	{ 0x8000000000000000ull, 0x3F6A }, { 0xAAAAAAAAAAAAAAABull, 0x3FFD },
	{ 0xB17217F7D1CF79ACull, 0x3FFE }, { 0x8000000000000000ull, 0x4001 },
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void rnd_f80(uint8_t *p)
{
	struct f80 v;
	switch (rnd() % 4) {
	case 0:
	case 1:
		v = edges[rnd() % N(edges)];
		break;
	case 2: /* moderate normal numbers */
		v.m = rnd() | 0x8000000000000000ull;
		v.se = (uint16_t)(0x3FFF - 40 + rnd() % 80) | (uint16_t)((rnd() & 1) << 15);
		break;
	default: /* anything */
		v.m = rnd();
		v.se = (uint16_t)rnd();
		if (rnd() & 1)
			v.m |= 0x8000000000000000ull;
		break;
	}
	memcpy(p, &v.m, 8);
	memcpy(p + 8, &v.se, 2);
}

static void rnd_mem(uint8_t *m)
{
	for (unsigned i = 0; i < 16; i += 8) {
		uint64_t v = rnd();
		memcpy(m + i, &v, 8);
	}
	switch (rnd() % 6) {
	case 0: { /* float */
		static const uint32_t f[] = { 0, 0x80000000, 0x3F800000, 0x7F800000,
					      0x7FC00000, 0x7F800001, 0x00000001,
					      0x7F7FFFFF, 0x40490FDB, 0xFF800000 };
		memcpy(m, &f[rnd() % N(f)], 4);
		break;
	}
	case 1: { /* double */
		static const uint64_t d[] = { 0, 0x8000000000000000ull,
					      0x3FF0000000000000ull, 0x7FF0000000000000ull,
					      0x7FF8000000000000ull, 0x7FF0000000000001ull,
					      0x0000000000000001ull, 0x7FEFFFFFFFFFFFFFull,
					      0x400921FB54442D18ull };
		memcpy(m, &d[rnd() % N(d)], 8);
		break;
	}
	case 2: /* extended / BCD-ish */
		rnd_f80(m);
		break;
	case 3: { /* integers */
		static const uint64_t i[] = { 0, 1, 0xFFFF, 0x8000, 0x7FFF, 0x80000000,
					      0x7FFFFFFF, 0xFFFFFFFF, 0x8000000000000000ull,
					      0x7FFFFFFFFFFFFFFFull, 0x99999999999999ull,
					      0x8099999999999999ull, 0x0000123456789012ull };
		memcpy(m, &i[rnd() % N(i)], 8);
		break;
	}
	case 4: { /* control words */
		uint16_t cw = (uint16_t)(0x0040 | (rnd() & 0x0F3F));
		memcpy(m, &cw, 2);
		break;
	}
	default:
		break;
	}
}

static const uint16_t fcws[] = {
	0x037F, 0x027F, 0x007F, 0x077F, 0x0B7F, 0x0F7F, 0x0360, 0x037E,
	0x037D, 0x037B, 0x0367, 0x035F, 0x0340, 0x0F40,
};

/* A random guest x87 state: TOP, tags (some empty), values, sticky flags. */
static void rnd_state(struct fxsave_area *fx, uint16_t fcw)
{
	fpu_reset(fx);
	fx->fcw = fcw;
	unsigned top = rnd() % 8;
	fx->ftw = (uint8_t)(rnd() | rnd()); /* ~3/4 full */
	if (rnd() % 8 == 0)
		fx->ftw = 0xFF;
	if (rnd() % 8 == 0)
		fx->ftw = 0;
	for (unsigned i = 0; i < 8; i++)
		rnd_f80(fx->st[i]);
	uint16_t flags = (uint16_t)(rnd() & 0x3F & rnd());
	if (rnd() % 4 == 0) /* mostly masked flags; sometimes pending ones */
		flags &= fcw & 0x3F;
	uint16_t fsw = (uint16_t)(flags | (top << 11) | (rnd() & 0x4700));
	if (flags & ~fcw & 0x3F)
		fsw |= FSW_ES | FSW_B;
	if (rnd() % 16 == 0) /* a stale ES/B from elsewhere: the host recomputes */
		fsw ^= (uint16_t)(rnd() & (FSW_ES | FSW_B));
	fx->fsw = fsw;
}

struct enc {
	uint8_t b[3];
	uint8_t len;
};

static size_t all_encodings(struct enc *out, size_t max)
{
	size_t n = 0;
	for (unsigned op = 0xD8; op <= 0xDF; op++) {
		for (unsigned reg = 0; reg < 8 && n < max; reg++)
			out[n++] = (struct enc){ { (uint8_t)op, (uint8_t)(reg << 3 | 6), 0 }, 2 };
		for (unsigned m = 0xC0; m <= 0xFF && n < max; m++)
			out[n++] = (struct enc){ { (uint8_t)op, (uint8_t)m, 0 }, 2 };
	}
	if (n < max)
		out[n++] = (struct enc){ { 0x9B, 0, 0 }, 1 };
	return n;
}

static int decode(const struct enc *e, struct x87_form *f)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	if (ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, e->b, e->len, &zi, ops)))
		return 1;
	return x87_decode(&zi, f);
}

static unsigned long cases, traps;

static void run_cases(unsigned per, uint64_t seed, bool transcendental)
{
	setup_host();
	rng_state = seed_mix(seed);
	per *= scale();
	struct enc encs[8 * 72 + 1];
	size_t ne = all_encodings(encs, N(encs));
	size_t used = 0;
	for (size_t e = 0; e < ne; e++) {
		struct x87_form f;
		int dr = decode(&encs[e], &f);
		if (dr == 1)
			continue; /* Zydis: reserved encoding */
		cr_assert_eq(dr, 0, "x87_decode %02x %02x: %d", encs[e].b[0], encs[e].b[1], dr);
		enum x87_op op = (enum x87_op)f.op;
		if (op == X87_FLDENV || op == X87_FNSTENV || op == X87_FRSTOR ||
		    op == X87_FNSAVE)
			continue; /* tested separately */
		bool tr = op == X87_FSIN || op == X87_FCOS || op == X87_FSINCOS ||
			  op == X87_FPTAN || op == X87_FPATAN || op == X87_F2XM1 ||
			  op == X87_FYL2X || op == X87_FYL2XP1 || op == X87_FPREM ||
			  op == X87_FPREM1;
		if (tr != transcendental)
			continue;
		used++;
		const struct x87_info *inf = x87_op_info(op);
		for (size_t c = 0; c < N(fcws); c++) {
			for (unsigned k = 0; k < per; k++) {
				struct fxsave_area fx;
				rnd_state(&fx, fcws[c]);
				struct xstate h;
				memset(&h, 0, sizeof(h));
				x87_img_from_fx(&fx, &h.img);
				rnd_mem(h.mem);
				h.rflags = 0x202 | (rnd() & 0x8D5);
				h.rax = rnd();
				struct xstate h0 = h;

				int ht = host_run(encs[e].b, encs[e].len, &h);
				struct x87_io io;
				memset(&io, 0, sizeof(io));
				if (inf->mem_read)
					memcpy(io.mem, h0.mem, f.mem_size);
				if (op == X87_FCMOV_STi)
					io.rflags = x87_fcmov_cond(f.fcmov_cc, h0.rflags);
				else
					io.rflags = h0.rflags;
				int r = x87_exec(op, &fx, f.sti, &io);
				cases++;
				if (ht) {
					traps++;
					cr_assert_eq(r, FPU_EXC_MF, "%s (%02x %02x) fcw %04x fsw %04x: host #MF, lib %d",
						     x87_op_name(op), encs[e].b[0], encs[e].b[1],
						     h0.img.fcw, h0.img.fsw, r);
					continue;
				}
				cr_assert_eq(r, 0, "%s (%02x %02x): lib returned %d, host ran",
					     x87_op_name(op), encs[e].b[0], encs[e].b[1], r);
				uint8_t gmem[16];
				memcpy(gmem, h0.mem, 16);
				if (io.store)
					memcpy(gmem, io.mem, f.mem_size);
				uint64_t grf = h0.rflags, grax = h0.rax;
				if (inf->eflags)
					grf = io.rflags;
				if (op == X87_FNSTSW_AX)
					grax = (grax & ~0xFFFFull) | io.ax;
				struct fsave32 mine;
				x87_img_from_fx(&fx, &mine);
				bool ok = mine.fcw == h.img.fcw && mine.fsw == h.img.fsw &&
					  mine.ftw == h.img.ftw &&
					  memcmp(mine.st, h.img.st, 80) == 0 &&
					  memcmp(gmem, h.mem, 16) == 0 &&
					  (grf & 0x8D5) == (h.rflags & 0x8D5) && grax == h.rax;
				if (!ok) {
					char st_in[8][32], st_h[8][32], st_g[8][32];
					for (unsigned i = 0; i < 8; i++) {
						uint64_t m;
						uint16_t se;
						memcpy(&m, h0.img.st[i], 8);
						memcpy(&se, h0.img.st[i] + 8, 2);
						snprintf(st_in[i], 32, "%04x:%016llx", se, (unsigned long long)m);
						memcpy(&m, h.img.st[i], 8);
						memcpy(&se, h.img.st[i] + 8, 2);
						snprintf(st_h[i], 32, "%04x:%016llx", se, (unsigned long long)m);
						memcpy(&m, mine.st[i], 8);
						memcpy(&se, mine.st[i] + 8, 2);
						snprintf(st_g[i], 32, "%04x:%016llx", se, (unsigned long long)m);
					}
					uint64_t m0, m1, hm, gm;
					memcpy(&m0, h0.mem, 8);
					memcpy(&m1, h0.mem + 8, 8);
					memcpy(&hm, h.mem, 8);
					memcpy(&gm, gmem, 8);
					cr_assert_fail("%s (%02x %02x) sti %u mismatch\n"
						       " in:   cw %04x sw %04x tw %04x st0 %s st1 %s st%u %s mem %016llx:%016llx fl %llx\n"
						       " host: cw %04x sw %04x tw %04x st0 %s st1 %s st%u %s mem %016llx fl %llx ax %llx\n"
						       " lib:  cw %04x sw %04x tw %04x st0 %s st1 %s st%u %s mem %016llx fl %llx ax %llx store %d",
						       x87_op_name(op), encs[e].b[0], encs[e].b[1], f.sti,
						       h0.img.fcw, h0.img.fsw, h0.img.ftw, st_in[0], st_in[1], f.sti, st_in[f.sti],
						       (unsigned long long)m1, (unsigned long long)m0,
						       (unsigned long long)h0.rflags,
						       h.img.fcw, h.img.fsw, h.img.ftw, st_h[0], st_h[1], f.sti, st_h[f.sti],
						       (unsigned long long)hm, (unsigned long long)h.rflags,
						       (unsigned long long)h.rax,
						       mine.fcw, mine.fsw, mine.ftw, st_g[0], st_g[1], f.sti, st_g[f.sti],
						       (unsigned long long)gm, (unsigned long long)grf,
						       (unsigned long long)grax, io.store);
				}
			}
		}
	}
	cr_log_info("%zu x87 encodings, %lu cases (%lu #MF)", used, cases, traps);
}

Test(fpu_x87, all_encodings_vs_host)
{
	run_cases(12, 0xABCDEF1, false);
}

Test(fpu_x87, transcendentals_vs_host)
{
	run_cases(64, 0xBCDEF12, true);
}
