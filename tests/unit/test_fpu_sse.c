/* SSE/SSE2/MMX-data ops against the host CPU. Each case is an instruction
 * encoding: the host runs those exact bytes (patched into a small stub that
 * loads xmm0/xmm1/mm0/mm1/rax/[rsi]/RFLAGS/MXCSR from a struct and stores
 * them back), and the library runs the same bytes through Zydis ->
 * sse_decode -> sse_exec with the core's operand protocol (guest_exec
 * below). Results, RFLAGS and MXCSR must match bit for bit; with unmasked
 * exceptions the host takes #XM (SIGFPE) and the library must return
 * FPU_EXC_XM with MXCSR as the host had it at the fault, and write
 * nothing. */
#include <criterion/criterion.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "engine/soft/fpu/fpu.h"
#include "test_fpu_encodings.h"

struct hstate {
	union xmm x0, x1;    /* 0, 16 */
	uint8_t mem[16];     /* 32: [rsi] */
	uint64_t gpr;        /* 48: rax */
	uint64_t rflags;     /* 56 */
	uint64_t mm0, mm1;   /* 64, 72 */
	uint32_t mxcsr;      /* 80 */
	uint32_t mxcsr_out;  /* 84 */
	uint32_t host_mxcsr; /* 88 */
	uint32_t pad;
} __attribute__((aligned(16)));

__asm__(".text\n"
	".globl fpu_sse_stub, fpu_sse_stub_slot, fpu_sse_stub_end\n"
	"fpu_sse_stub:\n"
	"stmxcsr 88(%rdi)\n"
	"movdqu 0(%rdi), %xmm0\n"
	"movdqu 16(%rdi), %xmm1\n"
	"movq 64(%rdi), %mm0\n"
	"movq 72(%rdi), %mm1\n"
	"movq 48(%rdi), %rax\n"
	"leaq 32(%rdi), %rsi\n"
	"pushq 56(%rdi)\n"
	"popfq\n"
	"ldmxcsr 80(%rdi)\n"
	"fpu_sse_stub_slot:\n"
	".fill 16, 1, 0x90\n"
	"stmxcsr 84(%rdi)\n"
	"pushfq\n"
	"popq 56(%rdi)\n"
	"ldmxcsr 88(%rdi)\n"
	"movdqu %xmm0, 0(%rdi)\n"
	"movdqu %xmm1, 16(%rdi)\n"
	"movq %mm0, 64(%rdi)\n"
	"movq %mm1, 72(%rdi)\n"
	"emms\n"
	"movq %rax, 48(%rdi)\n"
	"ret\n"
	"fpu_sse_stub_end:\n");

extern const uint8_t fpu_sse_stub[], fpu_sse_stub_slot[], fpu_sse_stub_end[];

static uint8_t *code;
static sigjmp_buf fpe_jb;
static volatile uint32_t fpe_mxcsr;

static void on_fpe(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ucv;
	fpe_mxcsr = uc->uc_mcontext.fpregs->mxcsr;
	siglongjmp(fpe_jb, 1);
}

static void setup_host(void)
{
	code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(code != MAP_FAILED, "mmap exec page");
	memcpy(code, fpu_sse_stub, (size_t)(fpu_sse_stub_end - fpu_sse_stub));
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fpe;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGFPE, &sa, NULL);
}

/* Run bytes on the host. Returns 0, or 1 if it took #XM (SIGFPE). */
static int host_run(const uint8_t *insn, size_t n, struct hstate *h)
{
	uint8_t *slot = code + (fpu_sse_stub_slot - fpu_sse_stub);
	memset(slot, 0x90, 16);
	memcpy(slot, insn, n);
	void (*fn)(struct hstate *) = (void (*)(struct hstate *))(void *)code;
	if (sigsetjmp(fpe_jb, 1))
		return 1;
	fn(h);
	return 0;
}

/* The core's side of the protocol, as fpu.h describes it. */
struct gstate {
	struct fxsave_area fx;
	uint64_t gpr[16];
	uint8_t mem[16];
	uint64_t rflags;
};

static void load(const struct gstate *g, const struct sse_form *f, uint8_t loc,
		 uint8_t reg, union xmm *v)
{
	memset(v, 0, sizeof(*v));
	switch (loc) {
	case SSE_LOC_XMM:
		memcpy(v, g->fx.xmm[reg], 16);
		break;
	case SSE_LOC_MMX:
		v->q[0] = fpu_mmx_read(&g->fx, reg);
		break;
	case SSE_LOC_GPR:
		v->q[0] = f->gpr_size == 4 ? (uint32_t)g->gpr[reg] : g->gpr[reg];
		break;
	case SSE_LOC_MEM:
		memcpy(v, g->mem, f->mem_size);
		break;
	}
}

static void store(struct gstate *g, const struct sse_form *f, uint8_t loc,
		  uint8_t reg, const union xmm *v)
{
	switch (loc) {
	case SSE_LOC_XMM:
		memcpy(g->fx.xmm[reg], v, 16);
		break;
	case SSE_LOC_MMX:
		fpu_mmx_write(&g->fx, reg, v->q[0]);
		break;
	case SSE_LOC_GPR:
		g->gpr[reg] = f->gpr_size == 4 ? (uint32_t)v->q[0] : v->q[0];
		break;
	case SSE_LOC_MEM:
		memcpy(g->mem, v, f->mem_size);
		break;
	}
}

static int decode(const uint8_t *insn, size_t n, struct sse_form *f)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	if (ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, insn, n, &zi, ops)))
		return -1;
	if (zi.length != n)
		return -2;
	return sse_decode(&zi, ops, f);
}

static int guest_exec(const struct sse_form *f, struct gstate *g)
{
	union xmm d, s;
	memset(&d, 0, sizeof(d));
	if (f->flags & SSE_F_DST_READ)
		load(g, f, f->dst_loc, f->dst_reg, &d);
	load(g, f, f->src_loc, f->src_reg, &s);
	if (f->flags & SSE_F_MMX)
		fpu_mmx_enter(&g->fx);
	int r = sse_exec((enum sse_op)f->op, &g->fx, &d, &s, f->imm8,
			 CR4_OSFXSR | CR4_OSXMMEXCPT, &g->rflags);
	if (r)
		return r;
	if (f->flags & SSE_F_DST_WRITE)
		store(g, f, f->dst_loc, f->dst_reg, &d);
	return 0;
}

/* ---- values ---- */

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

static const uint32_t f32_edges[] = {
	0x00000000, 0x80000000, 0x3F800000, 0xBF800000, 0x00000001, 0x80000001,
	0x007FFFFF, 0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000,
	0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFA00000, 0x7FC12345,
	0x3F7FFFFF, 0x3F800001, 0x4B000000, 0x4B7FFFFF, 0x3EAAAAAB, 0x40490FDB,
	0x4F000000, 0xCF000000, 0x5F000000, 0xDF000000, 0x4EFFFFFF, 0x3F000000,
	0x3FC00000, 0x40200000, 0x0DA24260, 0x72000000, 0x00400000, 0x1E3CE508,
};

static const uint64_t f64_edges[] = {
	0x0000000000000000ull, 0x8000000000000000ull, 0x3FF0000000000000ull,
	0xBFF0000000000000ull, 0x0000000000000001ull, 0x800FFFFFFFFFFFFFull,
	0x0010000000000000ull, 0x7FEFFFFFFFFFFFFFull, 0xFFEFFFFFFFFFFFFFull,
	0x7FF0000000000000ull, 0xFFF0000000000000ull, 0x7FF8000000000000ull,
	0xFFF8000000000000ull, 0x7FF0000000000001ull, 0xFFF4000000000000ull,
	0x3FEFFFFFFFFFFFFFull, 0x3FF0000000000001ull, 0x4330000000000000ull,
	0x41E0000000000000ull, 0xC1E0000000000000ull, 0x41DFFFFFFFC00000ull,
	0xC1E0000000200000ull, 0x43E0000000000000ull, 0xC3E0000000000000ull,
	0x3FE0000000000000ull, 0x3FF8000000000000ull, 0x400921FB54442D18ull,
	0x36A0000000000000ull, 0x47EFFFFFE0000000ull, 0x47F0000000000000ull,
	0x380FFFFFFFFFFFFFull, 0x3810000000000000ull, 0x0008000000000000ull,
};

static const uint64_t int_edges[] = {
	0, 1, 0xFFFFFFFFFFFFFFFFull, 0x7FFFFFFFull, 0x80000000ull,
	0x7FFFFFFFFFFFFFFFull, 0x8000000000000000ull, 0x00FF00FF00FF00FFull,
	0x7F7F7F7F80808080ull, 0x7FFF80007FFF8000ull, 0x1000001ull,
	0x20000000000001ull, 0xFFFFFFFF80000000ull, 0x0000000100000000ull,
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void fill(union xmm *x)
{
	unsigned mode = rnd() % 5;
	for (unsigned i = 0; i < 4; i++) {
		switch (mode) {
		case 0: /* f32 edges, some random */
			x->d[i] = (rnd() & 3) ? f32_edges[rnd() % N(f32_edges)]
					      : (uint32_t)rnd();
			break;
		case 1:
			if (i < 2)
				x->q[i] = (rnd() & 3) ? f64_edges[rnd() % N(f64_edges)]
						      : rnd();
			break;
		case 2:
			if (i < 2)
				x->q[i] = int_edges[rnd() % N(int_edges)];
			break;
		case 3: { /* small normal floats: exercise rounding */
			float f = (float)((int64_t)(rnd() % 2000001) - 1000000) /
				  (float)(1 + rnd() % 1000);
			memcpy(&x->d[i], &f, 4);
			break;
		}
		default:
			x->d[i] = (uint32_t)rnd();
			break;
		}
	}
	if (mode == 3 && (rnd() & 1)) { /* doubles instead */
		for (unsigned i = 0; i < 2; i++) {
			double v = (double)((int64_t)(rnd() % 2000000001) - 1000000000) /
				   (double)(1 + rnd() % 100000);
			memcpy(&x->q[i], &v, 8);
		}
	}
}

static uint64_t rnd_gpr(void)
{
	switch (rnd() % 4) {
	case 0:
		return int_edges[rnd() % N(int_edges)];
	case 1:
		return (uint64_t)(int64_t)(int32_t)rnd();
	case 2:
		return rnd() >> (rnd() % 64);
	default:
		return rnd();
	}
}

static const uint32_t csrs[] = {
	0x1F80, 0x3F80, 0x5F80, 0x7F80, 0x9FC0, 0x1FBF, 0x0000, 0x1F00,
	0x1E80, 0x1D80, 0x1B80, 0x1780, 0x0F80, 0xFF80, 0x1FC0, 0x8000,
};


static unsigned long cases_run, faults_seen;

/* Run every encoding under every MXCSR setting with `per` value cases. */
static void run_table(const struct enc *t, size_t n, unsigned per, uint64_t seed)
{
	setup_host();
	rng_state = seed_mix(seed);
	per *= scale();
	for (size_t e = 0; e < n; e++) {
		struct sse_form f;
		int dr = decode(t[e].b, t[e].len, &f);
		cr_assert_eq(dr, 0, "%s: sse_decode failed (%d)", t[e].name, dr);
		for (size_t c = 0; c < N(csrs); c++) {
			for (unsigned k = 0; k < per; k++) {
				struct hstate h;
				memset(&h, 0, sizeof(h));
				fill(&h.x0);
				fill(&h.x1);
				union xmm m;
				fill(&m);
				memcpy(h.mem, &m, 16);
				h.gpr = rnd_gpr();
				h.mm0 = rnd();
				h.mm1 = (rnd() & 1) ? h.x1.q[0] : rnd();
				h.rflags = 0x202 | (rnd() & 0x8D5);
				h.mxcsr = csrs[c];
				if (rnd() % 4 == 0) /* occasionally immediate-ish vals */
					h.x1.q[0] = rnd() % 70;

				struct gstate g;
				memset(&g, 0, sizeof(g));
				fpu_reset(&g.fx);
				g.fx.mxcsr = h.mxcsr;
				memcpy(g.fx.xmm[0], &h.x0, 16);
				memcpy(g.fx.xmm[1], &h.x1, 16);
				fpu_mmx_write(&g.fx, 0, h.mm0);
				fpu_mmx_write(&g.fx, 1, h.mm1);
				g.gpr[0] = h.gpr;
				memcpy(g.mem, h.mem, 16);
				g.rflags = h.rflags;

				struct hstate h0 = h;
				int hf = host_run(t[e].b, t[e].len, &h);
				int gr = guest_exec(&f, &g);
				cases_run++;
				if (hf) {
					faults_seen++;
					cr_assert_eq(gr, FPU_EXC_XM,
						     "%s csr %04x: host #XM, lib %d "
						     "x0=%016llx%016llx x1=%016llx%016llx",
						     t[e].name, h0.mxcsr, gr,
						     (unsigned long long)h0.x0.q[1],
						     (unsigned long long)h0.x0.q[0],
						     (unsigned long long)h0.x1.q[1],
						     (unsigned long long)h0.x1.q[0]);
					cr_assert_eq(g.fx.mxcsr, fpe_mxcsr,
						     "%s: MXCSR at fault host %04x lib %04x "
						     "(csr %04x x0=%016llx%016llx x1=%016llx%016llx)",
						     t[e].name, fpe_mxcsr, g.fx.mxcsr, h0.mxcsr,
						     (unsigned long long)h0.x0.q[1],
						     (unsigned long long)h0.x0.q[0],
						     (unsigned long long)h0.x1.q[1],
						     (unsigned long long)h0.x1.q[0]);
					cr_assert(memcmp(g.fx.xmm[0], &h0.x0, 16) == 0 &&
						  memcmp(g.fx.xmm[1], &h0.x1, 16) == 0 &&
						  g.gpr[0] == h0.gpr && g.rflags == h0.rflags,
						  "%s: state written on fault", t[e].name);
					continue;
				}
				cr_assert_eq(gr, 0, "%s csr %04x: lib faulted %d, host did not "
					     "(x0=%016llx%016llx x1=%016llx%016llx)",
					     t[e].name, h0.mxcsr, gr,
					     (unsigned long long)h0.x0.q[1],
					     (unsigned long long)h0.x0.q[0],
					     (unsigned long long)h0.x1.q[1],
					     (unsigned long long)h0.x1.q[0]);
				bool ok = memcmp(g.fx.xmm[0], &h.x0, 16) == 0 &&
					  memcmp(g.fx.xmm[1], &h.x1, 16) == 0 &&
					  g.gpr[0] == h.gpr && memcmp(g.mem, h.mem, 16) == 0 &&
					  fpu_mmx_read(&g.fx, 0) == h.mm0 &&
					  fpu_mmx_read(&g.fx, 1) == h.mm1 &&
					  (g.rflags & 0x8D5) == (h.rflags & 0x8D5) &&
					  g.fx.mxcsr == h.mxcsr_out;
				if (!ok) {
					union xmm gx0, gx1;
					memcpy(&gx0, g.fx.xmm[0], 16);
					memcpy(&gx1, g.fx.xmm[1], 16);
					cr_assert_fail(
						"%s csr %04x mismatch\n in  x0=%016llx%016llx "
						"x1=%016llx%016llx rax=%016llx mem=%016llx%016llx mm0=%016llx mm1=%016llx\n"
						" host x0=%016llx%016llx x1=%016llx%016llx rax=%016llx "
						"mem=%016llx mm0=%016llx mm1=%016llx fl=%llx csr=%04x\n"
						" lib  x0=%016llx%016llx x1=%016llx%016llx rax=%016llx "
						"mem=%016llx mm0=%016llx mm1=%016llx fl=%llx csr=%04x",
						t[e].name, h0.mxcsr,
						(unsigned long long)h0.x0.q[1], (unsigned long long)h0.x0.q[0],
						(unsigned long long)h0.x1.q[1], (unsigned long long)h0.x1.q[0],
						(unsigned long long)h0.gpr,
						(unsigned long long)m.q[1], (unsigned long long)m.q[0],
						(unsigned long long)h0.mm0, (unsigned long long)h0.mm1,
						(unsigned long long)h.x0.q[1], (unsigned long long)h.x0.q[0],
						(unsigned long long)h.x1.q[1], (unsigned long long)h.x1.q[0],
						(unsigned long long)h.gpr, (unsigned long long)*(uint64_t *)h.mem,
						(unsigned long long)h.mm0, (unsigned long long)h.mm1,
						(unsigned long long)h.rflags, h.mxcsr_out,
						(unsigned long long)gx0.q[1], (unsigned long long)gx0.q[0],
						(unsigned long long)gx1.q[1], (unsigned long long)gx1.q[0],
						(unsigned long long)g.gpr[0], (unsigned long long)*(uint64_t *)g.mem,
						(unsigned long long)fpu_mmx_read(&g.fx, 0),
						(unsigned long long)fpu_mmx_read(&g.fx, 1),
						(unsigned long long)g.rflags, g.fx.mxcsr);
				}
			}
		}
	}
	cr_log_info("%zu encodings, %lu cases (%lu #XM)", n, cases_run, faults_seen);
}


Test(fpu_sse, fp_arith_vs_host)
{
	run_table(fp_arith, N(fp_arith), 192, 0x1234567);
}

Test(fpu_sse, fp_compare_vs_host)
{
	run_table(fp_cmp, N(fp_cmp), 48, 0x2345678);
}

Test(fpu_sse, fp_convert_vs_host)
{
	run_table(fp_cvt, N(fp_cvt), 160, 0x3456789);
}

Test(fpu_sse, moves_shuffles_vs_host)
{
	run_table(moves_shuffles, N(moves_shuffles), 8, 0x456789A);
}

Test(fpu_sse, integer_vs_host)
{
	run_table(int_ops, N(int_ops), 32, 0x56789AB);
}
