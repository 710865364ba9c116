/* sys_smc: self-modifying and cross-modifying code. A function built in a
 * code page is run, then changed and run again: one immediate byte, a
 * whole instruction, an instruction just ahead of the store that changes
 * it (same basic block), code copied in by REP MOVSB, a loop patching
 * itself on every iteration, a write through a second virtual alias of
 * the same physical page (and execution through the alias), and a PTE
 * pointed at another frame holding other code (INVLPG). Some of it again
 * at CPL3. */
#include "sys_lib.h"

const char *const sys_name = "sys_smc";

#define TVA 0x8000000000ull
#define PG_P 1ull
#define PG_W 2ull

static uint8_t code[3][4096] __attribute__((aligned(4096)));
static uint64_t t_pdpt[512] __attribute__((aligned(4096)));
static uint64_t t_pd[512] __attribute__((aligned(4096)));
static uint64_t t_pt[512] __attribute__((aligned(4096)));

typedef uint32_t (*fn_t)(void);

/* mov $imm32, %eax; ret */
static void emit_mov_ret(uint8_t *p, uint32_t imm)
{
	p[0] = 0xb8;
	memcpy(p + 1, &imm, 4);
	p[5] = 0xc3;
}

/* A store into the instruction right after it: the new immediate must be
 * what runs. */
extern char f_ahead[], f_ahead_end[];
__asm__(".text\n.globl f_ahead, f_ahead_end\nf_ahead:\n"
	"movb $0x42, 1f+1(%rip)\n"
	"1: movl $0x11, %eax\n ret\nf_ahead_end:\n");

/* A loop that patches its own ADD immediate each time round:
 * sum of 1..n comes out only if every patch is seen. */
extern char f_loop[], f_loop_end[];
__asm__(".text\n.globl f_loop, f_loop_end\nf_loop:\n"
	"xorl %eax, %eax\n movl $1, %ecx\n"
	"2: movb %cl, 3f+1(%rip)\n"
	"3: .byte 0x05\n .long 0\n" /* addl $imm32, %eax */
	"incl %ecx\n cmpl $21, %ecx\n jne 2b\n ret\nf_loop_end:\n");

static uint32_t rep_movsb(void *d, const void *s, size_t n)
{
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) :: "memory");
	return 0;
}

/* The same at CPL3 (on kvm_pvm that is the hardware's own SMC detection) */
static volatile uint32_t ures[4];
static uint8_t user_stack[8192] __attribute__((aligned(16)));
static void user_smc(void *arg)
{
	(void)arg;
	fn_t f = (fn_t)(uint64_t)code[0];
	emit_mov_ret(code[0], 0x1111);
	ures[0] = f();
	code[0][1] = 0x22;
	ures[1] = f();
	memcpy(code[1], f_loop, (size_t)(f_loop_end - f_loop));
	ures[2] = ((fn_t)(uint64_t)code[1])();
	memcpy(code[1], f_ahead, (size_t)(f_ahead_end - f_ahead));
	ures[3] = ((fn_t)(uint64_t)code[1])();
}

void guest_main(const struct multiboot_info *mbi)
{
	sys_init(mbi);
	fn_t f = (fn_t)(uint64_t)code[0];

	if (want("immediate")) {
		emit_mov_ret(code[0], 0x1111);
		uint32_t a = f();
		code[0][1] = 0x22; /* low byte of the immediate */
		uint32_t b = f();
		check(a == 0x1111 && b == 0x1122, "rewrite one immediate byte: 0x%x then 0x%x", a, b);
		for (uint32_t i = 0; i < 4; i++)
			code[0][1 + i] = (uint8_t)(0xa0 + i);
		b = f();
		check(b == 0xa3a2a1a0, "rewrite the whole immediate: 0x%x", b);
	}
	if (want("instruction")) {
		emit_mov_ret(code[0], 0x5555);
		uint32_t a = f();
		/* mov $imm,%eax -> xor %eax,%eax; inc %eax; nop */
		static const uint8_t repl[5] = { 0x31, 0xc0, 0xff, 0xc0, 0x90 };
		memcpy(code[0], repl, 5);
		uint32_t b = f();
		check(a == 0x5555 && b == 1, "replace a whole instruction: 0x%x then %u", a, b);
		/* and lengthen the function: the RET becomes an ADD, then a new RET */
		static const uint8_t more[7] = { 0x05, 0x10, 0, 0, 0, 0xc3, 0 }; /* add $16,%eax; ret */
		memcpy(code[0] + 5, more, 6);
		b = f();
		check(b == 17, "turn the RET into ADD + RET: %u", b);
	}
	if (want("store_ahead")) {
		size_t n = (size_t)(f_ahead_end - f_ahead);
		memcpy(code[1], f_ahead, n);
		fn_t g = (fn_t)(uint64_t)code[1];
		uint32_t a = g();
		check(a == 0x42, "store to the next instruction in the same block: 0x%x (want 0x42)", a);
		memcpy(code[1], f_ahead, n); /* the original bytes again: 0x11 */
		a = g();
		check(a == 0x42, "again after restoring the original bytes: 0x%x", a);
	}
	if (want("loop")) {
		size_t n = (size_t)(f_loop_end - f_loop);
		memcpy(code[1], f_loop, n);
		uint32_t s = ((fn_t)(uint64_t)code[1])();
		check(s == 210, "loop patching its ADD immediate 20 times: sum %u (want 210)", s);
	}
	if (want("rep_movsb")) {
		uint8_t tmpl[6];
		emit_mov_ret(tmpl, 0xabcdef01);
		emit_mov_ret(code[2], 0x1);
		uint32_t a = ((fn_t)(uint64_t)code[2])();
		rep_movsb(code[2], tmpl, sizeof(tmpl));
		uint32_t b = ((fn_t)(uint64_t)code[2])();
		check(a == 1 && b == 0xabcdef01, "code written by REP MOVSB runs: 0x%x then 0x%x", a, b);
		/* a page of code written backwards (DF=1) */
		for (int i = 0; i < 4096 - 6; i += 6)
			emit_mov_ret(code[1] + i, (uint32_t)i);
		static uint8_t page[4096];
		for (int i = 0; i < 4096 - 6; i += 6)
			emit_mov_ret(page + i, 0x1000000u + (uint32_t)i);
		void *d = code[1] + 4095, *src = page + 4095;
		size_t cnt = 4096;
		uint32_t before = ((fn_t)(uint64_t)(code[1] + 600))();
		__asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(src), "+c"(cnt) :: "memory");
		uint32_t after1 = ((fn_t)(uint64_t)(code[1] + 600))();
		check(before == 600 && after1 == 0x1000000u + 600,
		      "a page rewritten by STD; REP MOVSB: 0x%x then 0x%x", before, after1);
	}
	if (want("user")) {
		long v = catch_user(user_smc, NULL, (uint64_t)&user_stack[sizeof(user_stack)], 0x2);
		check(v == -1 && ures[0] == 0x1111 && ures[1] == 0x1122,
		      "at CPL3: rewrite one immediate byte: 0x%x then 0x%x (vector %d)", ures[0],
		      ures[1], (int)v);
		check(ures[2] == 210, "at CPL3: self-patching loop sums to %u (want 210)", ures[2]);
		check(ures[3] == 0x42, "at CPL3: store to the next instruction: 0x%x (want 0x42)",
		      ures[3]);
	}
	if (want("alias")) {
		/* TVA -> the physical page of code[2] */
		boot_pml4[1] = (uint64_t)t_pdpt | PG_P | PG_W;
		t_pdpt[0] = (uint64_t)t_pd | PG_P | PG_W;
		t_pd[0] = (uint64_t)t_pt | PG_P | PG_W;
		t_pt[0] = (uint64_t)code[2] | PG_P | PG_W;
		t_pt[1] = (uint64_t)code[0] | PG_P | PG_W;
		WRITE_CR(3, READ_CR(3));
		fn_t direct = (fn_t)(uint64_t)code[2];
		fn_t alias = (fn_t)TVA;
		uint8_t *alias_w = (uint8_t *)TVA;
		emit_mov_ret(code[2], 0x100);
		uint32_t a = direct(), b = alias();
		check(a == 0x100 && b == 0x100, "same code through both mappings: 0x%x 0x%x", a, b);
		emit_mov_ret(alias_w, 0x200);
		a = direct();
		check(a == 0x200, "written through the alias, run directly: 0x%x", a);
		b = alias();
		check(b == 0x200, "... and through the alias: 0x%x", b);
		emit_mov_ret(code[2], 0x300);
		b = alias();
		check(b == 0x300, "written directly, run through the alias: 0x%x", b);
		/* remap: the alias now points at code[0] with other code */
		emit_mov_ret(code[0], 0x400);
		t_pt[0] = (uint64_t)code[0] | PG_P | PG_W;
		invlpg(TVA);
		b = alias();
		check(b == 0x400, "PTE pointed at another frame + INVLPG runs its code: 0x%x", b);
		t_pt[0] = (uint64_t)code[2] | PG_P | PG_W;
		invlpg(TVA);
		b = alias();
		check(b == 0x300, "and back: 0x%x", b);
	}
	sys_finish();
}
