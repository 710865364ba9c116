/* The fpu library wired into the soft core (fpu/soft_glue.c): short code
 * sequences of SSE/SSE2, MMX and x87 instructions, the way glibc's string
 * and math code uses them, run on soft_run_standalone and natively on the
 * host from the same state; xmm0-7, rax-rdx, RFLAGS, MXCSR, the x87 state
 * and the data they write must match. Each test registers the glue handlers
 * in its own process (Criterion forks per test), so the core's other tests
 * are unaffected. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/soft/fpu/fpu.h"
#include "engine/soft/fpu/soft_glue.h"
#include "engine/soft/fpu/x87_img.h"
#include "engine/soft/soft.h"
#include "vmm/memory.h"
#include "test_fpu_encodings.h"

struct hst {
	uint8_t xmm[8][16];  /* 0 */
	uint64_t gpr[4];     /* 128: rax rbx rcx rdx */
	uint64_t rsi;        /* 160 */
	uint64_t rflags;     /* 168 */
	uint32_t mxcsr;      /* 176 */
	uint32_t host_csr;   /* 180 */
	uint16_t host_cw;    /* 184 */
	uint8_t pad[6];
	struct fsave32 img;  /* 192 */
} __attribute__((aligned(16)));
_Static_assert(offsetof(struct hst, img) == 192, "stub layout");

__asm__(".text\n"
	".globl fpu_glue_stub, fpu_glue_stub_slot, fpu_glue_stub_end\n"
	"fpu_glue_stub:\n"
	"pushq %rbx\n"
	"pushq %rdi\n"
	"stmxcsr 180(%rdi)\n"
	"fnstcw 184(%rdi)\n"
	"ldmxcsr 176(%rdi)\n"
	"frstor 192(%rdi)\n"
	"movdqu 0(%rdi), %xmm0\n" "movdqu 16(%rdi), %xmm1\n"
	"movdqu 32(%rdi), %xmm2\n" "movdqu 48(%rdi), %xmm3\n"
	"movdqu 64(%rdi), %xmm4\n" "movdqu 80(%rdi), %xmm5\n"
	"movdqu 96(%rdi), %xmm6\n" "movdqu 112(%rdi), %xmm7\n"
	"movq 128(%rdi), %rax\n" "movq 136(%rdi), %rbx\n"
	"movq 144(%rdi), %rcx\n" "movq 152(%rdi), %rdx\n"
	"movq 160(%rdi), %rsi\n"
	"pushq 168(%rdi)\n"
	"popfq\n"
	"fpu_glue_stub_slot:\n"
	".fill 512, 1, 0x90\n"
	"pushfq\n"
	"movq 8(%rsp), %rdi\n"
	"popq 168(%rdi)\n"
	"fnsave 192(%rdi)\n"
	"stmxcsr 176(%rdi)\n"
	"movdqu %xmm0, 0(%rdi)\n" "movdqu %xmm1, 16(%rdi)\n"
	"movdqu %xmm2, 32(%rdi)\n" "movdqu %xmm3, 48(%rdi)\n"
	"movdqu %xmm4, 64(%rdi)\n" "movdqu %xmm5, 80(%rdi)\n"
	"movdqu %xmm6, 96(%rdi)\n" "movdqu %xmm7, 112(%rdi)\n"
	"movq %rax, 128(%rdi)\n" "movq %rbx, 136(%rdi)\n"
	"movq %rcx, 144(%rdi)\n" "movq %rdx, 152(%rdi)\n"
	"ldmxcsr 180(%rdi)\n"
	"fldcw 184(%rdi)\n"
	"popq %rdi\n"
	"popq %rbx\n"
	"ret\n"
	"fpu_glue_stub_end:\n");

extern const uint8_t fpu_glue_stub[], fpu_glue_stub_slot[], fpu_glue_stub_end[];

/* The sequences. [rsi] is a 64-byte, 16-aligned data area. */
#define SNIP(name, body)                                        \
	__asm__(".pushsection .rodata\n"                        \
		".globl " #name ", " #name "_end\n" #name ":\n" body \
		"\n" #name "_end:\n.popsection\n");             \
	extern const uint8_t name[], name##_end[];

SNIP(snip_string,
     "pxor %xmm1, %xmm1\n"
     "movdqu (%rsi), %xmm0\n"
     "pcmpeqb %xmm1, %xmm0\n"
     "pmovmskb %xmm0, %eax\n"
     "movdqa 16(%rsi), %xmm2\n"
     "movdqa %xmm2, %xmm3\n"
     "pminub %xmm3, %xmm2\n"
     "por %xmm2, %xmm0\n"
     "pand %xmm3, %xmm1\n"
     "psubb %xmm2, %xmm3\n"
     "pcmpeqd %xmm3, %xmm4\n"
     "pmovmskb %xmm4, %ecx\n"
     "movdqu %xmm0, 32(%rsi)\n"
     "pshufd $0x1b, %xmm3, %xmm5\n"
     "punpcklbw %xmm5, %xmm5\n"
     "punpcklwd %xmm5, %xmm5\n"
     "psrldq $3, %xmm5\n"
     "pslldq $5, %xmm6\n"
     "movq %xmm5, %rbx\n"
     "movd %xmm6, %edx\n"
     "movq 8(%rsi), %xmm7\n"
     "movhps 24(%rsi), %xmm7\n"
     "movlps %xmm7, 48(%rsi)\n")

SNIP(snip_double,
     "cvtsi2sd %rax, %xmm0\n"
     "mulsd %xmm1, %xmm0\n"
     "addsd 8(%rsi), %xmm0\n"
     "sqrtsd %xmm0, %xmm2\n"
     "divsd %xmm3, %xmm2\n"
     "comisd %xmm1, %xmm2\n"
     "seta %cl\n"
     "ucomisd %xmm0, %xmm3\n"
     "setp %ch\n"
     "cvttsd2si %xmm2, %rdx\n"
     "cvtsd2si %xmm0, %ebx\n"
     "unpcklpd %xmm2, %xmm0\n"
     "shufpd $1, %xmm0, %xmm4\n"
     "movsd %xmm4, 16(%rsi)\n"
     "cvtsd2ss %xmm4, %xmm5\n"
     "cvtss2sd %xmm5, %xmm6\n"
     "maxsd %xmm6, %xmm7\n"
     "minpd %xmm0, %xmm7\n"
     "andpd %xmm2, %xmm1\n"
     "xorpd %xmm3, %xmm1\n"
     "movsd 24(%rsi), %xmm3\n"
     "cmpsd $1, %xmm1, %xmm3\n"
     "cvtpd2ps %xmm7, %xmm4\n"
     "cvtdq2pd %xmm4, %xmm5\n"
     "movmskpd %xmm5, %eax\n")

SNIP(snip_float,
     "movaps (%rsi), %xmm0\n"
     "mulps %xmm1, %xmm0\n"
     "addps 16(%rsi), %xmm0\n"
     "rcpps %xmm0, %xmm2\n"
     "rsqrtss %xmm1, %xmm3\n"
     "cmpltps %xmm2, %xmm3\n"
     "movmskps %xmm3, %eax\n"
     "shufps $0x1b, %xmm0, %xmm4\n"
     "unpckhps %xmm4, %xmm5\n"
     "cvtps2dq %xmm5, %xmm6\n"
     "cvtdq2ps %xmm6, %xmm7\n"
     "cvttps2dq %xmm0, %xmm1\n"
     "packssdw %xmm1, %xmm6\n"
     "packuswb %xmm6, %xmm2\n"
     "pmaddwd %xmm2, %xmm3\n"
     "psadbw %xmm3, %xmm4\n"
     "pshufhw $0x4e, %xmm4, %xmm5\n"
     "pshuflw $0xb1, %xmm5, %xmm5\n"
     "psraw $2, %xmm5\n"
     "psrlq %xmm1, %xmm6\n"
     "pinsrw $5, %eax, %xmm6\n"
     "pextrw $3, %xmm0, %ebx\n"
     "pmulhuw %xmm6, %xmm7\n"
     "pmuludq %xmm7, %xmm1\n"
     "pavgb %xmm1, %xmm2\n"
     "paddsw %xmm2, %xmm3\n"
     "psubusb %xmm3, %xmm4\n"
     "pcmpgtd %xmm4, %xmm5\n"
     "cvtss2si %xmm0, %ecx\n"
     "cvtsi2ss %edx, %xmm7\n"
     "ucomiss %xmm7, %xmm0\n"
     "movss %xmm7, 32(%rsi)\n"
     "movups %xmm5, 40(%rsi)\n")

SNIP(snip_x87,
     "fninit\n"
     "fldpi\n"
     "fld1\n"
     "fadd %st(1), %st\n"
     "fmull (%rsi)\n"
     "fstpt 16(%rsi)\n"
     "fildl 8(%rsi)\n"
     "fsqrt\n"
     "fld %st(0)\n"
     "fsin\n"
     "fxch %st(1)\n"
     "fcos\n"
     "fcomi %st(1), %st\n"
     "setb %al\n"
     "fistpl 32(%rsi)\n"
     "fnstsw %ax\n"
     "fldl2e\n"
     "f2xm1\n"
     "fld1\n"
     "fyl2x\n"
     "fld1\n"
     "fpatan\n"
     "fptan\n"
     "fprem\n"
     "fscale\n"
     "fxtract\n"
     "frndint\n"
     "fucomip %st(1), %st\n"
     "setp %bl\n"
     "fstps 36(%rsi)\n"
     "fnstcw 40(%rsi)\n"
     "fldz\n"
     "fchs\n"
     "ftst\n"
     "fxam\n"
     "fnstsw %ax\n"
     "fldl 24(%rsi)\n"
     "fdivr %st(2), %st\n"
     "fsubrp %st, %st(1)\n"
     "fistpll 48(%rsi)\n"
     "fcmovb %st(1), %st\n"
     "fstl 56(%rsi)\n")

SNIP(snip_mmx,
     "movq (%rsi), %mm0\n"
     "movq 8(%rsi), %mm1\n"
     "paddw %mm1, %mm0\n"
     "pmullw %mm0, %mm1\n"
     "packsswb %mm1, %mm0\n"
     "punpckhbw %mm0, %mm1\n"
     "psllq $3, %mm1\n"
     "pshufw $0x1b, %mm1, %mm2\n"
     "pmovmskb %mm2, %eax\n"
     "movq %mm2, 16(%rsi)\n"
     "movd %mm1, %ecx\n"
     "movq2dq %mm0, %xmm0\n"
     "pextrw $2, %mm2, %edx\n"
     "emms\n"
     "fld1\n"
     "fstpl 24(%rsi)\n")

#define MEM_SIZE (4u << 20)
#define CODE 0x10000
#define DATA 0x20000

static void w64(struct guest_memory *m, uint64_t gpa, uint64_t v)
{
	cr_assert_eq(gm_write(m, gpa, &v, 8), 0);
}

static uint64_t rng = 0x243F6A8885A308D3ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const uint64_t vals[] = {
	0, 0x3FF0000000000000ull, 0xC000000000000000ull, 0x400921FB54442D18ull,
	0x7FF0000000000000ull, 0x7FF8000000000000ull, 0x0000000000000001ull,
	0x3F8000003F800000ull, 0x40490FDBBF800000ull, 0x7F80000000000001ull,
	0x0000001700000005ull, 0xFFFFFFFFFFFFFFFFull, 0x4120000041A00000ull,
};

static uint64_t rnd_val(void)
{
	return (rnd() & 1) ? vals[rnd() % (sizeof(vals) / sizeof(vals[0]))] : rnd();
}

/* One guest memory per test process, set up once: identity-mapped 2 MiB,
 * a GDT; code and data are rewritten for every run. */
static struct guest_memory shared_mem;
static bool shared_ready;

static struct guest_memory *guest_mem(void)
{
	if (!shared_ready) {
		cr_assert_eq(guest_memory_init(&shared_mem, MEM_SIZE), 0);
		w64(&shared_mem, 0x1000, 0x2000 | 7);
		w64(&shared_mem, 0x2000, 0x3000 | 7);
		w64(&shared_mem, 0x3000, 0x83); /* 2 MiB identity page */
		w64(&shared_mem, 0x6008, 0x00af9a000000ffffULL);
		w64(&shared_mem, 0x6010, 0x00cf92000000ffffULL);
		shared_ready = true;
	}
	return &shared_mem;
}

static void rnd_f80(uint8_t *p)
{
	uint64_t m = rnd();
	uint16_t se = (uint16_t)rnd();
	switch (rnd() % 5) {
	case 0: m = 0; se &= 0x8000; break;
	case 1: m = 1ull << 63; se = (uint16_t)(0x3FFF + rnd() % 3) | (se & 0x8000); break;
	case 2: se |= 0x7FFF; m |= 1ull << 63; break;
	default: m |= 1ull << 63; se = (uint16_t)((0x3FFF - 30 + rnd() % 60) | (se & 0x8000)); break;
	}
	memcpy(p, &m, 8);
	memcpy(p + 8, &se, 2);
}

/* A random x87 stack with no exception pending. */
static void rnd_x87(struct fxsave_area *fx)
{
	static const uint16_t cws[] = { 0x037F, 0x027F, 0x007F, 0x0F7F, 0x0B7F, 0x0360 };
	fx->fcw = cws[rnd() % 6];
	fx->ftw = (uint8_t)(rnd() | rnd());
	for (unsigned i = 0; i < 8; i++)
		rnd_f80(fx->st[i]);
	uint16_t flags = (uint16_t)(rnd() & fx->fcw & 0x3F);
	fx->fsw = (uint16_t)(flags | (rnd() % 8) << 11 | (rnd() & 0x4700));
}

static void run_code(const char *name, const uint8_t *b, size_t len, unsigned runs,
		     bool random_x87)
{
	fpu_soft_register();
	cr_assert(len <= 512, "%s too long", name);
	uint8_t *code = mmap(NULL, 8192, PROT_READ | PROT_WRITE | PROT_EXEC,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(code != MAP_FAILED);
	memcpy(code, fpu_glue_stub, (size_t)(fpu_glue_stub_end - fpu_glue_stub));
	memcpy(code + (fpu_glue_stub_slot - fpu_glue_stub), b, len);
	void (*fn)(struct hst *) = (void (*)(struct hst *))(void *)code;
	static const uint32_t csrs[] = { 0x1F80, 0x3F80, 0x5F80, 0x7F80, 0x9FC0 };
	struct guest_memory *mem = guest_mem();

	for (unsigned r = 0; r < runs; r++) {
		struct hst h;
		memset(&h, 0, sizeof(h));
		for (unsigned i = 0; i < 8; i++) {
			uint64_t a = rnd_val(), c = rnd_val();
			memcpy(h.xmm[i], &a, 8);
			memcpy(h.xmm[i] + 8, &c, 8);
		}
		for (unsigned i = 0; i < 4; i++)
			h.gpr[i] = (rnd() & 1) ? rnd_val() : rnd() % 1000;
		h.rflags = 0x202 | (rnd() & 0x8D5);
		h.mxcsr = csrs[r % 5];
		uint8_t data[64] __attribute__((aligned(16)));
		for (unsigned i = 0; i < 64; i += 8) {
			uint64_t v = rnd_val();
			memcpy(data + i, &v, 8);
		}
		struct fxsave_area fx0;
		fpu_reset(&fx0);
		fx0.mxcsr = h.mxcsr;
		fx0.fcw = (r & 2) ? 0x027F : 0x037F;
		if (random_x87)
			rnd_x87(&fx0);
		x87_img_from_fx(&fx0, &h.img);

		cr_assert_eq(gm_write(mem, CODE, b, len), 0);
		uint8_t hlt = 0xF4;
		cr_assert_eq(gm_write(mem, CODE + len, &hlt, 1), 0);
		cr_assert_eq(gm_write(mem, DATA, data, 64), 0);
		struct cpu_state st;
		memset(&st, 0, sizeof(st));
		st.cr0 = CR0_PE | CR0_ET | CR0_PG | CR0_WP | CR0_NE | CR0_MP;
		st.cr3 = 0x1000;
		st.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
		st.efer = EFER_LME | EFER_LMA | EFER_NXE;
		struct segment cs = { .limit = 0xffffffff, .selector = 8, .type = 0xb, .s = 1,
				      .present = 1, .l = 1, .g = 1 };
		struct segment ds = { .limit = 0xffffffff, .selector = 0x10, .type = 0x3, .s = 1,
				      .present = 1, .db = 1, .g = 1 };
		st.seg[SEG_CS] = cs;
		st.seg[SEG_SS] = st.seg[SEG_DS] = st.seg[SEG_ES] = st.seg[SEG_FS] = st.seg[SEG_GS] = ds;
		st.seg[SEG_TR] = (struct segment){ .limit = 0x67, .selector = 0x28, .type = 0xb, .present = 1 };
		st.seg[SEG_LDTR] = (struct segment){ .unusable = 1 };
		st.gdt = (struct dtable){ 0x6000, 0x2f };
		st.rflags = h.rflags;
		st.gpr[RSP] = 0x80000;
		st.rip = CODE;
		st.gpr[RAX] = h.gpr[0];
		st.gpr[RBX] = h.gpr[1];
		st.gpr[RCX] = h.gpr[2];
		st.gpr[RDX] = h.gpr[3];
		st.gpr[RSI] = DATA;
		st.fx = fx0;
		memcpy(st.fx.xmm, h.xmm, sizeof(h.xmm));

		/* host */
		h.rsi = (uint64_t)(uintptr_t)data;
		fn(&h);

		struct soft_run_result res;
		cr_assert_eq(soft_run_standalone(mem, &st, 10000, &res), 0);
		cr_assert_eq(res.stop, SOFT_STOP_HLT, "%s run %u: stop %d vector %u at rip %llx",
			     name, r, res.stop, res.vector, (unsigned long long)st.rip);
		uint8_t gdata[64];
		cr_assert_eq(gm_read(mem, DATA, gdata, 64), 0);
		for (unsigned i = 0; i < 8; i++)
			cr_assert(memcmp(st.fx.xmm[i], h.xmm[i], 16) == 0,
				  "%s run %u: xmm%u differs", name, r, i);
		cr_assert_eq(st.gpr[RAX], h.gpr[0], "%s run %u: rax %llx host %llx", name, r,
			     (unsigned long long)st.gpr[RAX], (unsigned long long)h.gpr[0]);
		cr_assert_eq(st.gpr[RBX], h.gpr[1], "%s run %u: rbx", name, r);
		cr_assert_eq(st.gpr[RCX], h.gpr[2], "%s run %u: rcx", name, r);
		cr_assert_eq(st.gpr[RDX], h.gpr[3], "%s run %u: rdx", name, r);
		cr_assert_eq(st.rflags & 0x8D5, h.rflags & 0x8D5, "%s run %u: rflags %llx host %llx",
			     name, r, (unsigned long long)st.rflags, (unsigned long long)h.rflags);
		cr_assert_eq(st.fx.mxcsr, h.mxcsr, "%s run %u: mxcsr %x host %x", name, r,
			     st.fx.mxcsr, h.mxcsr);
		for (unsigned i = 0; i < 64; i++)
			cr_assert_eq(gdata[i], data[i], "%s run %u: data byte %u", name, r, i);
		struct fsave32 mine;
		x87_img_from_fx(&st.fx, &mine);
		cr_assert_eq(mine.fcw, h.img.fcw, "%s run %u: fcw", name, r);
		cr_assert_eq(mine.fsw, h.img.fsw, "%s run %u: fsw %04x host %04x", name, r,
			     mine.fsw, h.img.fsw);
		cr_assert_eq(mine.ftw, h.img.ftw, "%s run %u: ftw %04x host %04x", name, r,
			     mine.ftw, h.img.ftw);
		cr_assert(memcmp(mine.st, h.img.st, 80) == 0, "%s run %u: x87 registers", name, r);
	}
	munmap(code, 8192);
}

static void run_snippet(const char *name, const uint8_t *b, const uint8_t *e, unsigned runs)
{
	run_code(name, b, (size_t)(e - b), runs, false);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void run_encs(const struct enc *t, size_t n, unsigned runs)
{
	for (size_t i = 0; i < n; i++)
		run_code(t[i].name, t[i].b, t[i].len, runs, false);
}

/* Every SSE/SSE2/MMX encoding of the library tests, decoded by the core. */
Test(fpu_glue, sse_encodings_through_core)
{
	run_encs(fp_arith, N(fp_arith), 3);
	run_encs(fp_cmp, N(fp_cmp), 3);
	run_encs(fp_cvt, N(fp_cvt), 3);
	run_encs(moves_shuffles, N(moves_shuffles), 2);
	run_encs(int_ops, N(int_ops), 2);
}

/* Every x87 encoding (register forms, memory forms at [rsi]) but the
 * environment images, from random stacks. */
Test(fpu_glue, x87_encodings_through_core)
{
	for (unsigned op = 0xD8; op <= 0xDF; op++) {
		for (unsigned m = 0; m < 72; m++) {
			uint8_t modrm = (uint8_t)(m < 8 ? (m << 3 | 6) : 0xC0 + (m - 8));
			struct x87_form f;
			if (x87_decode_raw((uint8_t)op, modrm, &f))
				continue;
			if (f.op == X87_FLDENV || f.op == X87_FNSTENV || f.op == X87_FRSTOR ||
			    f.op == X87_FNSAVE)
				continue;
			if (f.op == X87_FISTTP_I16 || f.op == X87_FISTTP_I32 ||
			    f.op == X87_FISTTP_I64)
				continue; /* SSE3: not registered */
			uint8_t b[2] = { (uint8_t)op, modrm };
			run_code(x87_op_name((enum x87_op)f.op), b, 2, 3, true);
		}
	}
}

Test(fpu_glue, string_sse2)
{
	run_snippet("string", snip_string, snip_string_end, 40);
}

Test(fpu_glue, double_math)
{
	run_snippet("double", snip_double, snip_double_end, 40);
}

Test(fpu_glue, packed_float_and_int)
{
	run_snippet("float", snip_float, snip_float_end, 40);
}

Test(fpu_glue, x87_long_double)
{
	run_snippet("x87", snip_x87, snip_x87_end, 40);
}

Test(fpu_glue, mmx)
{
	run_snippet("mmx", snip_mmx, snip_mmx_end, 40);
}

/* Faults through the glue: vector, RIP at the faulting instruction, and no
 * state committed by it. */
SNIP(snip_misaligned, "movaps 1(%rsi), %xmm0\n")
SNIP(snip_divzero, "divps %xmm1, %xmm0\n")
SNIP(snip_pending, "fldcw (%rsi)\n" "fld1\n" "fldz\n" ".byte 0xDE, 0xF9\n" "nop\n" "fwait\n")
SNIP(snip_fstp_pf, "movl $0x400000, %edi\n" "fld1\n" "fstps (%rdi)\n")

struct fault_env {
	struct guest_memory mem;
	struct cpu_state st;
	struct soft_run_result res;
};

static void fault_setup(struct fault_env *e, const uint8_t *b, const uint8_t *end)
{
	fpu_soft_register();
	size_t len = (size_t)(end - b);
	cr_assert_eq(guest_memory_init(&e->mem, MEM_SIZE), 0);
	w64(&e->mem, 0x1000, 0x2000 | 7);
	w64(&e->mem, 0x2000, 0x3000 | 7);
	w64(&e->mem, 0x3000, 0x83);
	cr_assert_eq(gm_write(&e->mem, CODE, b, len), 0);
	uint8_t hlt = 0xF4;
	cr_assert_eq(gm_write(&e->mem, CODE + len, &hlt, 1), 0);
	struct cpu_state *st = &e->st;
	memset(st, 0, sizeof(*st));
	st->cr0 = CR0_PE | CR0_ET | CR0_PG | CR0_NE | CR0_MP;
	st->cr3 = 0x1000;
	st->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	st->efer = EFER_LME | EFER_LMA;
	st->seg[SEG_CS] = (struct segment){ .limit = 0xffffffff, .selector = 8, .type = 0xb,
					    .s = 1, .present = 1, .l = 1, .g = 1 };
	struct segment ds = { .limit = 0xffffffff, .selector = 0x10, .type = 0x3, .s = 1,
			      .present = 1, .db = 1, .g = 1 };
	st->seg[SEG_SS] = st->seg[SEG_DS] = st->seg[SEG_ES] = st->seg[SEG_FS] = st->seg[SEG_GS] = ds;
	st->seg[SEG_LDTR] = (struct segment){ .unusable = 1 };
	st->rflags = 2;
	st->gpr[RSP] = 0x80000;
	st->gpr[RSI] = DATA;
	st->rip = CODE;
	fpu_reset(&st->fx);
}

static void fault_run(struct fault_env *e, int vector, uint64_t rip)
{
	cr_assert_eq(soft_run_standalone(&e->mem, &e->st, 100, &e->res), 0);
	cr_assert_eq(e->res.stop, SOFT_STOP_EXCEPTION, "expected %d: stop %d rip %llx fcw %04x fsw %04x insns %llu", vector, e->res.stop,
		     (unsigned long long)e->st.rip, e->st.fx.fcw, e->st.fx.fsw, (unsigned long long)e->res.insns);
	cr_assert_eq(e->res.vector, vector, "vector %u, expected %d", e->res.vector, vector);
	cr_assert_eq(e->st.rip, rip, "rip %llx", (unsigned long long)e->st.rip);
	guest_memory_destroy(&e->mem);
}

Test(fpu_glue, faults)
{
	struct fault_env e;

	fault_setup(&e, snip_misaligned, snip_misaligned_end);
	fault_run(&e, 13, CODE);

	fault_setup(&e, snip_misaligned, snip_misaligned_end);
	e.st.cr0 |= CR0_TS;
	fault_run(&e, 7, CODE);

	fault_setup(&e, snip_misaligned, snip_misaligned_end);
	e.st.cr4 &= ~CR4_OSFXSR;
	fault_run(&e, 6, CODE);

	/* unmasked divide-by-zero: #XM, xmm0 untouched, ZE set */
	fault_setup(&e, snip_divzero, snip_divzero_end);
	e.st.fx.mxcsr = 0x1F80 & ~0x0200;
	float one = 1.0f;
	memcpy(e.st.fx.xmm[0], &one, 4);
	fault_run(&e, 19, CODE);
	/* lanes 1-3 are 0/0: IE too (both pre-computation) */
	cr_assert_eq(e.st.fx.mxcsr, (0x1F80u & ~0x0200u) | MXCSR_ZE | MXCSR_IE);
	float x0;
	memcpy(&x0, e.st.fx.xmm[0], 4);
	cr_assert(x0 == 1.0f);
	/* the same without CR4.OSXMMEXCPT: #UD */
	fault_setup(&e, snip_divzero, snip_divzero_end);
	e.st.fx.mxcsr = 0x1F80 & ~0x0200;
	memcpy(e.st.fx.xmm[0], &one, 4); /* 1/0 (0/0 would be a masked #I) */
	e.st.cr4 &= ~CR4_OSXMMEXCPT;
	fault_run(&e, 6, CODE);

	/* x87: the unmasked #Z is deferred to the next waiting instruction
	 * (the NOP in between runs) */
	fault_setup(&e, snip_pending, snip_pending_end);
	uint16_t cw = 0x037B;
	cr_assert_eq(gm_write(&e.mem, DATA, &cw, 2), 0);
	size_t fwait_off = (size_t)(snip_pending_end - snip_pending) - 1;
	fault_run(&e, 16, CODE + fwait_off);
	cr_assert(e.st.fx.fsw & FSW_ES);
	cr_assert(e.st.fx.fsw & FSW_ZE);
	cr_assert_eq(e.st.fx.fop, 0x6F9, "fop %x", e.st.fx.fop); /* DE F9 */

	/* FSTP to an unmapped page: #PF, nothing popped */
	fault_setup(&e, snip_fstp_pf, snip_fstp_pf_end);
	fault_run(&e, 14, CODE + 5 + 2);
	cr_assert_eq(e.res.cr2, 0x400000);
	cr_assert_eq((e.st.fx.fsw & FSW_TOP) >> FSW_TOP_SHIFT, 7);
	cr_assert_eq(e.st.fx.ftw, 0x80);
}
