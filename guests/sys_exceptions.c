/* sys_exceptions: the CPU's exceptions in 64-bit mode, each with its
 * vector, error code and saved RIP (the faulting instruction for faults,
 * the next one for traps): #DE from DIV by zero, DIV and IDIV overflow;
 * #UD from UD2, from INTO (invalid in 64-bit mode) and from LOCK on a
 * register operand; #BP from INT3 (at CPL0 and CPL3, RIP after it) and the
 * #GP a DPL0 gate gives a CPL3 INT3; #GP(0) for a non-canonical address;
 * #SS(0) for a non-canonical stack (RBP-based) access; #NM for SSE with
 * CR0.TS and #UD with CR0.EM; #AC for a misaligned access at CPL3 with
 * CR0.AM and RFLAGS.AC; #DB after one instruction with RFLAGS.TF;
 * #NP/#GP with the selector as error code from segment register loads;
 * #GP(0) from RDMSR/WRMSR of an unknown MSR, a reserved EFER bit, a
 * non-canonical FS_BASE; #DB from DR0 (execute) and DR1 (data write)
 * breakpoints. */
#include "sys_lib.h"

const char *const sys_name = "sys_exceptions";

/* Each f_<name> runs the instruction at f_<name>_at (a fault or trap),
 * then returns (when nothing happens). */
#define FN(name, body) \
	extern char f_##name[], f_##name##_at[], f_##name##_after[]; \
	__asm__(".text\n.globl f_" #name ", f_" #name "_at, f_" #name "_after\n" \
		"f_" #name ":\n" body "\nret\n")

FN(div0, "xorl %ecx, %ecx\n movl $1, %eax\n xorl %edx, %edx\n"
	 "f_div0_at: divq %rcx\nf_div0_after:");
FN(divovf, "movl $1, %edx\n xorl %eax, %eax\n movl $1, %ecx\n"
	   "f_divovf_at: divq %rcx\nf_divovf_after:");
FN(idivovf, "movabsq $0x8000000000000000, %rax\n cqto\n movq $-1, %rcx\n"
	    "f_idivovf_at: idivq %rcx\nf_idivovf_after:");
FN(idiv8, "movw $0x8000, %ax\n movb $-1, %cl\n"
	  "f_idiv8_at: idivb %cl\nf_idiv8_after:");
FN(ud2, "f_ud2_at: ud2\nf_ud2_after:");
FN(into, "f_into_at: .byte 0xce\nf_into_after:");
FN(lockreg, "f_lockreg_at: .byte 0xf0, 0x01, 0xc0\nf_lockreg_after:"); /* lock add %eax,%eax */
FN(int3, "f_int3_at: int3\nf_int3_after:");
FN(gpnc, "movabsq $0x8000000000001000, %rax\n"
	 "f_gpnc_at: movq (%rax), %rax\nf_gpnc_after:");
FN(ssnc, "pushq %rbp\n movabsq $0x8000000000001000, %rbp\n"
	 "f_ssnc_at: movq (%rbp), %rax\nf_ssnc_after:\n popq %rbp");
FN(sse, "f_sse_at: movaps %xmm0, %xmm1\nf_sse_after:");
FN(ac, "leaq ac_buf+1(%rip), %rax\n"
       "f_ac_at: movl (%rax), %eax\nf_ac_after:");
FN(tf, "pushfq\n orq $0x100, (%rsp)\n popfq\n"
       "f_tf_at: nop\nf_tf_after: nop\n pushfq\n andq $~0x100, (%rsp)\n popfq");

/* Segment register loads: EAX holds the selector */
FN(load_ds, "movw %ds, %cx\n f_load_ds_at: movw %ax, %ds\nf_load_ds_after: movw %cx, %ds");
FN(load_ss, "movw %ss, %cx\n f_load_ss_at: movw %ax, %ss\nf_load_ss_after: movw %cx, %ss");
/* MSRs: ECX the MSR, EDX:EAX the value */
FN(rdmsr, "f_rdmsr_at: rdmsr\nf_rdmsr_after:");
FN(wrmsr, "f_wrmsr_at: wrmsr\nf_wrmsr_after:");

/* Debug registers: an execution breakpoint and a data write breakpoint */
volatile uint32_t watched;
FN(bp_exec, "nop\nf_bp_exec_at: nop\nf_bp_exec_after:");
FN(bp_write, "f_bp_write_at: movl $5, watched(%rip)\nf_bp_write_after: nop");

uint8_t ac_buf[16] __attribute__((aligned(16)));
static uint8_t user_stack[8192] __attribute__((aligned(16)));
#define USER_TOP ((uint64_t)&user_stack[sizeof(user_stack)])

static void expect(const char *what, long got, unsigned vec, uint64_t err, const char *rip,
		   uint64_t cs)
{
	check(got == (long)vec && last_trap.error == err && last_trap.rip == (uint64_t)rip &&
		      last_trap.cs == cs,
	      "%s: vector %d error 0x%x rip 0x%llx cs 0x%x (want %u, 0x%x, 0x%llx, 0x%x)", what,
	      (int)got, (unsigned)last_trap.error, U64(last_trap.rip), (unsigned)last_trap.cs, vec,
	      (unsigned)err, U64((uint64_t)rip), (unsigned)cs);
}

static long run(char *fn)
{
	last_trap.vector = 0xdead;
	return catch_call((void (*)(void *))fn, NULL);
}

/* fn with EAX, ECX and EDX preset (a catch_call function gets only RDI) */
static volatile uint64_t preset[3];
static char *preset_fn;
static void with_regs(void *arg)
{
	(void)arg;
	__asm__ volatile("call *%3"
			 :: "a"(preset[0]), "c"(preset[1]), "d"(preset[2]), "r"(preset_fn)
			 : "memory", "rsi", "rdi", "r8", "r9", "r10", "r11");
}

static long run_regs(char *fn, uint64_t rax, uint64_t rcx, uint64_t rdx)
{
	preset[0] = rax;
	preset[1] = rcx;
	preset[2] = rdx;
	preset_fn = fn;
	last_trap.vector = 0xdead;
	return catch_call(with_regs, NULL);
}

static long run_user(char *fn, uint64_t rflags)
{
	last_trap.vector = 0xdead;
	return catch_user((void (*)(void *))fn, NULL, USER_TOP, rflags);
}

void guest_main(const struct multiboot_info *mbi)
{
	sys_init(mbi);
	printf("%s: 64-bit mode, IDT and TSS loaded\n", sys_name);

	if (want("divide")) {
		expect("#DE from DIV by zero", run(f_div0), 0, 0, f_div0_at, SEL_KCODE);
		expect("#DE from DIV overflow", run(f_divovf), 0, 0, f_divovf_at, SEL_KCODE);
		expect("#DE from IDIV overflow (INT64_MIN / -1)", run(f_idivovf), 0, 0, f_idivovf_at,
		       SEL_KCODE);
		expect("#DE from 8-bit IDIV overflow (-32768 / -1)", run(f_idiv8), 0, 0, f_idiv8_at,
		       SEL_KCODE);
	}
	if (want("invalid")) {
		expect("#UD from UD2", run(f_ud2), 6, 0, f_ud2_at, SEL_KCODE);
		expect("#UD from INTO in 64-bit mode", run(f_into), 6, 0, f_into_at, SEL_KCODE);
		expect("#UD from LOCK ADD on registers", run(f_lockreg), 6, 0, f_lockreg_at, SEL_KCODE);
	}
	if (want("int3_cpl0"))
		expect("#BP from INT3 at CPL0 (RIP after it)", run(f_int3), 3, 0, f_int3_after,
		       SEL_KCODE);
	if (want("int3_user")) {
		set_gate(3, 0, 3, 1, 0);
		expect("#BP from INT3 at CPL3 through a DPL3 gate (RIP after it)",
		       run_user(f_int3, 0x2), 3, 0, f_int3_after, SEL_UCODE);
		set_gate(3, 0, 0, 1, 0);
	}
	if (want("int3_user_dpl0"))
		/* the gate's DPL0 refuses a software INT3 from CPL3: #GP(3*8+2) */
		expect("#GP(0x1a) from INT3 at CPL3 through a DPL0 gate", run_user(f_int3, 0x2), 13,
		       3 * 8 + 2, f_int3_at, SEL_UCODE);
	if (want("noncanonical")) {
		expect("#GP(0) from a non-canonical data address", run(f_gpnc), 13, 0, f_gpnc_at,
		       SEL_KCODE);
		expect("#SS(0) from a non-canonical stack (RBP) address", run(f_ssnc), 12, 0,
		       f_ssnc_at, SEL_KCODE);
	}
	if (want("sse")) {
		uint64_t cr0 = READ_CR(0), cr4 = READ_CR(4);
		WRITE_CR(4, cr4 | CR4_OSFXSR | CR4_OSXMMEXCPT);
		WRITE_CR(0, (cr0 & ~CR0_EM) | CR0_MP);
		check(run(f_sse) == -1, "SSE MOVAPS runs with CR4.OSFXSR and CR0.TS clear");
		WRITE_CR(0, (cr0 & ~CR0_EM) | CR0_MP | CR0_TS);
		expect("#NM from SSE with CR0.TS", run(f_sse), 7, 0, f_sse_at, SEL_KCODE);
		__asm__ volatile("clts");
		check(!(READ_CR(0) & CR0_TS) && run(f_sse) == -1, "CLTS clears CR0.TS; SSE runs again");
		WRITE_CR(0, (cr0 | CR0_EM) & ~CR0_TS);
		expect("#UD from SSE with CR0.EM", run(f_sse), 6, 0, f_sse_at, SEL_KCODE);
		WRITE_CR(0, cr0);
		WRITE_CR(4, cr4);
	}
	if (want("alignment")) {
		uint64_t cr0 = READ_CR(0);
		long v = run_user(f_ac, 0x2);
		check(v == -1,
		      "misaligned load at CPL3 without RFLAGS.AC: no trap (vector %d error 0x%x rip 0x%llx)",
		      (int)v, (unsigned)last_trap.error, U64(last_trap.rip));
		WRITE_CR(0, cr0 | CR0_AM);
		expect("#AC(0) from a misaligned load at CPL3 with CR0.AM and RFLAGS.AC",
		       run_user(f_ac, 0x2 | RFLAGS_AC), 17, 0, f_ac_at, SEL_UCODE);
		check(run(f_ac) == -1, "misaligned load at CPL0: no #AC");
		WRITE_CR(0, cr0);
	}
	if (want("single_step")) {
		long v = run(f_tf);
		expect("#DB after one instruction with RFLAGS.TF (RIP after it)", v, 1, 0, f_tf_after,
		       SEL_KCODE);
		uint64_t dr6;
		__asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
		check(dr6 & (1u << 14), "DR6.BS set by the single step (DR6 0x%llx)", U64(dr6));
	}
	if (want("debug_exec")) {
		uint64_t dr6;
		__asm__ volatile("mov %0, %%dr6" :: "r"(0xffff0ff0ull));
		__asm__ volatile("mov %0, %%dr0; mov %1, %%dr7"
				 :: "r"((uint64_t)f_bp_exec_at), "r"(0x401ull)); /* L0, execute */
		expect("#DB from an execution breakpoint in DR0 (a fault: RIP at it)", run(f_bp_exec), 1,
		       0, f_bp_exec_at, SEL_KCODE);
		__asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
		check(dr6 & 1, "DR6.B0 set (DR6 0x%llx)", U64(dr6));
		__asm__ volatile("mov %0, %%dr7" :: "r"(0x400ull));
		check(run(f_bp_exec) == -1, "no #DB with DR7 cleared");
	}
	if (want("debug_write")) {
		uint64_t dr6;
		__asm__ volatile("mov %0, %%dr6" :: "r"(0xffff0ff0ull));
		/* L1, write, 4 bytes */
		__asm__ volatile("mov %0, %%dr1; mov %1, %%dr7"
				 :: "r"((uint64_t)&watched), "r"(0x404ull | (1ull << 20) | (3ull << 22)));
		expect("#DB from a data write breakpoint in DR1 (a trap: RIP after the write)",
		       run(f_bp_write), 1, 0, f_bp_write_after, SEL_KCODE);
		__asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
		check((dr6 & 2) && watched == 5, "DR6.B1 set (DR6 0x%llx), the write done", U64(dr6));
		__asm__ volatile("mov %0, %%dr7" :: "r"(0x400ull));
		check(run(f_bp_write) == -1, "no #DB with DR7 cleared");
	}
	if (want("segments")) {
		/* 0x50 becomes a not-present data segment for this */
		uint64_t saved = gdt64[SEL_DATA16 / 8];
		gdt64[SEL_DATA16 / 8] = 0x00cf12000000ffffull;
		expect("#NP(0x50) loading DS with a not-present descriptor",
		       run_regs(f_load_ds, SEL_DATA16, 0, 0), 11, 0x50, f_load_ds_at, SEL_KCODE);
		gdt64[SEL_DATA16 / 8] = saved;
		expect("#GP(0x60) loading DS beyond the GDT limit", run_regs(f_load_ds, 0x60, 0, 0),
		       13, 0x60, f_load_ds_at, SEL_KCODE);
		expect("#GP(0x38) loading DS with the TSS (a system descriptor)",
		       run_regs(f_load_ds, SEL_TSS, 0, 0), 13, 0x38, f_load_ds_at, SEL_KCODE);
		expect("#GP(0x28) loading SS with a DPL3 data segment at CPL0",
		       run_regs(f_load_ss, SEL_UDATA, 0, 0), 13, 0x28, f_load_ss_at, SEL_KCODE);
		check(run_regs(f_load_ds, SEL_KCODE, 0, 0) == -1,
		      "a readable code segment loads into DS");
		check(run_regs(f_load_ds, 0, 0, 0) == -1, "a null selector loads into DS");
	}
	if (want("msr")) {
		expect("#GP(0) from RDMSR of an unimplemented MSR",
		       run_regs(f_rdmsr, 0, 0xdeadbeef, 0), 13, 0, f_rdmsr_at, SEL_KCODE);
		uint64_t efer = rdmsr(MSR_EFER);
		expect("#GP(0) from WRMSR setting a reserved EFER bit",
		       run_regs(f_wrmsr, (uint32_t)efer | 2, MSR_EFER, efer >> 32), 13, 0, f_wrmsr_at,
		       SEL_KCODE);
		check(rdmsr(MSR_EFER) == efer, "EFER unchanged (0x%llx)", U64(rdmsr(MSR_EFER)));
		expect("#GP(0) from WRMSR of a non-canonical FS_BASE",
		       run_regs(f_wrmsr, 0, MSR_FS_BASE, 0x80000000u), 13, 0, f_wrmsr_at, SEL_KCODE);
	}
	sys_finish();
}
