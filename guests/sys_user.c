/* sys_user: privilege transitions. A 64-bit TSS with RSP0 and ring-3
 * code/data segments; IRETQ to CPL3; back to CPL0 through a DPL3 gate
 * (INT3, INT 0x80) with the frame checked (CS, SS, RSP, RFLAGS as they
 * were at CPL3, the frame on the TSS.RSP0 stack); #GP(0) for privileged
 * instructions at CPL3; SYSCALL/SYSRET with STAR, LSTAR and SFMASK (RCX,
 * R11, the masked RFLAGS, the selectors on both sides); SWAPGS with
 * KERNEL_GS_BASE; IN at CPL3 with IOPL 0 through the TSS's I/O permission
 * bitmap (an allowed port, a denied one, a word access straddling both),
 * and with IOPL 3; POPF's IF rule; RDTSC with CR4.TSD; FS_BASE by MSR and
 * WRFSBASE/RDFSBASE (#UD without CR4.FSGSBASE); RDTSCP and TSC_AUX. */
#include "sys_lib.h"

const char *const sys_name = "sys_user";

static uint8_t user_stack[8192] __attribute__((aligned(16)));
static uint8_t syscall_stack[4096] __attribute__((aligned(16)));
#define USER_TOP ((uint64_t)&user_stack[sizeof(user_stack)])

/* What user code saw and what the kernel entry saw */
volatile uint64_t u_rsp, u_result, u_rflags_before, u_rflags_after;
volatile uint16_t u_cs, u_ss;
volatile uint64_t k_user_rsp, k_rcx, k_r11, k_rflags, k_rax;
volatile uint16_t k_cs, k_ss;
volatile uint8_t use_sysret;
uint64_t syscall_stack_top;

#define UFN(name, body) \
	extern char name[]; \
	__asm__(".text\n.globl " #name "\n" #name ":\n" body "\nret\n")

UFN(u_selectors, "movw %cs, u_cs(%rip)\n movw %ss, u_ss(%rip)");
UFN(u_int3, "movq %rsp, u_rsp(%rip)\n int3\n movw %cs, u_cs(%rip)");
UFN(u_int80, "movq %rsp, u_rsp(%rip)\n movq $21, %rdi\n int $0x80\n movq %rax, u_result(%rip)");
UFN(u_cli, "u_cli_at: cli");
UFN(u_hlt, "u_hlt_at: hlt");
UFN(u_movcr3, "u_movcr3_at: movq %cr3, %rax");
UFN(u_rdmsr, "movl $0xc0000080, %ecx\nu_rdmsr_at: rdmsr");
UFN(u_popf_if, "pushfq\n orq $0x200, (%rsp)\n popfq\n pushfq\n popq u_result(%rip)");
UFN(u_rdtsc, "u_rdtsc_at: rdtsc\n movl %eax, u_result(%rip)");
UFN(u_fsbase, "movq %fs:0, %rax\n movq %rax, u_result(%rip)\n"
	      "movq $0x5a5a, %rax\n wrfsbase %rax\n rdfsbase %rcx\n movq %rcx, u_rsp(%rip)");
UFN(f_wr_tsc_aux, "movl $0xc0000103, %ecx\n xorl %eax, %eax\n xorl %edx, %edx\n wrmsr");
UFN(u_rdtscp, "rdtscp\n movl %ecx, u_result(%rip)");
UFN(u_in_ok, "movw $0x3fd, %dx\n inb %dx, %al\n movb %al, u_result(%rip)");
UFN(u_in_deny, "movw $0x3fc, %dx\nu_in_deny_at: inb %dx, %al");
UFN(u_in_span, "movw $0x3fd, %dx\nu_in_span_at: inw %dx, %ax");
/* set DF, AC and CF, SYSCALL with RAX 0x1234, note what comes back */
UFN(u_syscall, "pushfq\n orq $0x40401, (%rsp)\n popfq\n"
	       "movq %rsp, u_rsp(%rip)\n"
	       "pushfq\n popq u_rflags_before(%rip)\n"
	       "movq $0x1234, %rax\n syscall\n"
	       ".globl u_syscall_ret\nu_syscall_ret:\n"
	       "pushfq\n popq u_rflags_after(%rip)\n"
	       "movq %rax, u_result(%rip)\n movw %cs, u_cs(%rip)\n movw %ss, u_ss(%rip)\n"
	       "cld\n pushfq\n andq $~0x40001, (%rsp)\n popfq");
extern char u_rdtsc_at[];
extern char u_cli_at[], u_hlt_at[], u_movcr3_at[], u_rdmsr_at[], u_in_deny_at[], u_in_span_at[];
extern char u_syscall_ret[];

/* LSTAR: note the state SYSCALL left, return RAX+1 by SYSRET or IRETQ */
__asm__(".text\n.globl syscall_entry\nsyscall_entry:\n"
	"movq %rsp, k_user_rsp(%rip)\n"
	"movq syscall_stack_top(%rip), %rsp\n"
	"movq %rcx, k_rcx(%rip)\n movq %r11, k_r11(%rip)\n"
	"pushfq\n popq k_rflags(%rip)\n"
	"movw %cs, k_cs(%rip)\n movw %ss, k_ss(%rip)\n"
	"movq %rax, k_rax(%rip)\n incq %rax\n"
	"cmpb $0, use_sysret(%rip)\n je 1f\n"
	"movq k_user_rsp(%rip), %rsp\n sysretq\n"
	"1: pushq $0x2b\n pushq k_user_rsp(%rip)\n pushq %r11\n pushq $0x33\n pushq %rcx\n iretq\n");
extern char syscall_entry[];

static volatile uint64_t h_frame, h_cs, h_ss, h_rsp, h_rflags, h_rip;
static void note_frame(struct trap_frame *f)
{
	h_frame = (uint64_t)&f->ss + 8; /* top of the CPU-pushed frame */
	h_cs = f->cs;
	h_ss = f->ss;
	h_rsp = f->rsp;
	h_rflags = f->rflags;
	h_rip = f->rip;
}

static void int80_handler(struct trap_frame *f)
{
	note_frame(f);
	f->rax = f->rdi * 2;
}

static void cpuid(uint32_t leaf, uint32_t *r)
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

static long user(char *fn, uint64_t rflags)
{
	last_trap.vector = 0xdead;
	return catch_user((void (*)(void *))fn, NULL, USER_TOP, rflags);
}

static void expect_gp(const char *what, char *fn, char *at)
{
	long v = user(fn, 0x2);
	check(v == 13 && last_trap.error == 0 && last_trap.rip == (uint64_t)at &&
		      last_trap.cs == SEL_UCODE,
	      "%s at CPL3: vector %d error 0x%x rip 0x%llx cs 0x%x (want #GP(0) at 0x%llx)", what,
	      (int)v, (unsigned)last_trap.error, U64(last_trap.rip), (unsigned)last_trap.cs,
	      U64((uint64_t)at));
}

static void check_frame(const char *via, uint64_t rip_after)
{
	check(h_frame == tss.rsp[0], "%s: frame on the TSS.RSP0 stack (top 0x%llx, RSP0 0x%llx)",
	      via, U64(h_frame), U64(tss.rsp[0]));
	check(h_cs == SEL_UCODE && h_ss == SEL_UDATA, "%s: saved CS 0x%x SS 0x%x (want 0x33 0x2b)",
	      via, (unsigned)h_cs, (unsigned)h_ss);
	check(h_rsp == u_rsp, "%s: saved RSP 0x%llx is the CPL3 RSP 0x%llx", via, U64(h_rsp),
	      U64(u_rsp));
	check(h_rip == rip_after, "%s: saved RIP 0x%llx is after the instruction (0x%llx)", via,
	      U64(h_rip), U64(rip_after));
	check((h_rflags & 0x3002) == 0x0002, "%s: saved RFLAGS 0x%llx (IOPL 0)", via,
	      U64(h_rflags));
}

/* full: also the state the kernel entry sees (masked RFLAGS, CS, SS) */
static void run_syscall(const char *how, int full)
{
	u_result = 0;
	long v = user(u_syscall, 0x2);
	const uint64_t sfmask = RFLAGS_IF | RFLAGS_TF | RFLAGS_DF | RFLAGS_AC;
	check(v == -1, "%s: SYSCALL round trip ended normally (vector %d)", how, (int)v);
	check(k_rcx == (uint64_t)u_syscall_ret, "%s: RCX 0x%llx = return RIP 0x%llx", how,
	      U64(k_rcx), U64((uint64_t)u_syscall_ret));
	check(k_r11 == u_rflags_before, "%s: R11 0x%llx = CPL3 RFLAGS 0x%llx", how, U64(k_r11),
	      U64(u_rflags_before));
	if (full) {
		check(k_rflags == ((u_rflags_before & ~sfmask) | 2),
		      "%s: kernel RFLAGS 0x%llx = CPL3 RFLAGS & ~SFMASK (DF, AC cleared, CF kept)",
		      how, U64(k_rflags));
		check(k_cs == SEL_KCODE && k_ss == SEL_KDATA, "%s: kernel CS 0x%x SS 0x%x from STAR",
		      how, (unsigned)k_cs, (unsigned)k_ss);
	}
	check(k_user_rsp == u_rsp, "%s: RSP unchanged by SYSCALL", how);
	check(k_rax == 0x1234 && u_result == 0x1235, "%s: RAX in 0x%llx, back 0x%llx", how,
	      U64(k_rax), U64(u_result));
	check(u_cs == SEL_UCODE && u_ss == SEL_UDATA, "%s: CS 0x%x SS 0x%x back at CPL3", how,
	      (unsigned)u_cs, (unsigned)u_ss);
	check(u_rflags_after == u_rflags_before, "%s: RFLAGS 0x%llx restored from R11", how,
	      U64(u_rflags_after));
}

void guest_main(const struct multiboot_info *mbi)
{
	sys_init(mbi);
	syscall_stack_top = (uint64_t)&syscall_stack[sizeof(syscall_stack)];

	if (want("iretq_to_user")) {
		long v = user(u_selectors, 0x2);
		check(v == -1 && u_cs == SEL_UCODE && u_ss == SEL_UDATA,
		      "IRETQ to CPL3: CS 0x%x SS 0x%x (vector %d)", (unsigned)u_cs, (unsigned)u_ss,
		      (int)v);
	}
	if (want("int3_gate")) {
		set_gate(3, 0, 3, 1, 0);
		set_handler(3, note_frame);
		long v = user(u_int3, 0x2);
		check(v == -1 && u_cs == SEL_UCODE, "INT3 from CPL3 through a DPL3 gate and IRETQ back");
		check_frame("INT3", (uint64_t)u_int3 + 8); /* movq rsp,mem (7) + int3 (1) */
		set_handler(3, NULL);
		set_gate(3, 0, 0, 1, 0);
	}
	if (want("int80")) {
		set_gate(0x80, 0, 3, 1, 0);
		set_handler(0x80, int80_handler);
		u_result = 0;
		long v = user(u_int80, 0x2);
		check(v == -1 && u_result == 42, "INT 0x80 from CPL3: handler doubled RDI: %llu",
		      U64(u_result));
		check_frame("INT 0x80", (uint64_t)u_int80 + 16); /* 7 + 7 + 2 */
		set_handler(0x80, NULL);
	}
	if (want("privileged")) {
		expect_gp("CLI with IOPL 0", u_cli, u_cli_at);
		expect_gp("HLT", u_hlt, u_hlt_at);
		expect_gp("MOV from CR3", u_movcr3, u_movcr3_at);
		expect_gp("RDMSR", u_rdmsr, u_rdmsr_at);
	}
	if (want("popf_if")) {
		long v = user(u_popf_if, 0x2);
		check(v == -1 && !(u_result & RFLAGS_IF),
		      "POPF at CPL3 with IOPL 0 leaves IF clear, no fault (RFLAGS 0x%llx, vector %d)",
		      U64(u_result), (int)v);
	}
	if (want("tsd")) {
		uint64_t cr4 = READ_CR(4);
		check(user(u_rdtsc, 0x2) == -1, "RDTSC at CPL3 with CR4.TSD clear");
		WRITE_CR(4, cr4 | (1ull << 2));
		expect_gp("RDTSC with CR4.TSD", u_rdtsc, u_rdtsc_at);
		WRITE_CR(4, cr4);
	}
	if (want("iopl3")) {
		check(user(u_popf_if, 0x3002) == -1 && (u_result & RFLAGS_IF),
		      "POPF at CPL3 with IOPL 3 sets IF (RFLAGS 0x%llx)", U64(u_result));
		check(user(u_cli, 0x3002) == -1, "CLI at CPL3 with IOPL 3: no fault");
		check(user(u_in_deny, 0x3002) == -1, "IN from denied port 0x3fc with IOPL 3: no fault");
	}
	if (want("syscall_disabled")) {
		wrmsr(MSR_EFER, rdmsr(MSR_EFER) & ~EFER_SCE);
		long v = user(u_syscall, 0x2);
		check(v == 6 && last_trap.rip == (uint64_t)u_syscall_ret - 2,
		      "SYSCALL at CPL3 with EFER.SCE clear: vector %d rip 0x%llx (want #UD at 0x%llx)",
		      (int)v, U64(last_trap.rip), U64((uint64_t)u_syscall_ret - 2));
	}
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
	wrmsr(MSR_STAR, ((uint64_t)0x23 << 48) | ((uint64_t)SEL_KCODE << 32));
	wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
	wrmsr(MSR_SFMASK, RFLAGS_IF | RFLAGS_TF | RFLAGS_DF | RFLAGS_AC);
	if (want("syscall")) {
		check(rdmsr(MSR_LSTAR) == (uint64_t)syscall_entry, "LSTAR reads back");
		use_sysret = 0;
		run_syscall("SYSCALL, IRETQ back", 0);
	}
	if (want("syscall_entry_state")) {
		use_sysret = 0;
		run_syscall("SYSCALL entry state", 1);
	}
	if (want("sysret")) {
		use_sysret = 1;
		run_syscall("SYSCALL/SYSRET", 1);
	}
	if (want("swapgs")) {
		static uint64_t gs_a[2] = { 0xaaaa }, gs_b[2] = { 0xbbbb };
		wrmsr(MSR_GS_BASE, (uint64_t)gs_a);
		wrmsr(MSR_KERNEL_GS_BASE, (uint64_t)gs_b);
		uint64_t v0, v1;
		__asm__ volatile("movq %%gs:0, %0" : "=r"(v0));
		__asm__ volatile("swapgs; movq %%gs:0, %0" : "=r"(v1) :: "memory");
		check(v0 == 0xaaaa && v1 == 0xbbbb, "SWAPGS: %%gs:0 reads 0x%llx then 0x%llx",
		      U64(v0), U64(v1));
		check(rdmsr(MSR_GS_BASE) == (uint64_t)gs_b && rdmsr(MSR_KERNEL_GS_BASE) == (uint64_t)gs_a,
		      "SWAPGS exchanged GS_BASE and KERNEL_GS_BASE");
		__asm__ volatile("swapgs" ::: "memory");
		check(rdmsr(MSR_GS_BASE) == (uint64_t)gs_a, "a second SWAPGS swaps back");
		wrmsr(MSR_GS_BASE, 0);
		wrmsr(MSR_KERNEL_GS_BASE, 0);
	}
	if (want("fs_gs_base")) {
		static uint64_t fs_area[2] = { 0xf5f5f5f5 };
		uint32_t r[4];
		cpuid(7, r);
		wrmsr(MSR_FS_BASE, (uint64_t)fs_area);
		uint64_t v;
		__asm__ volatile("movq %%fs:0, %0" : "=r"(v));
		check(v == 0xf5f5f5f5 && rdmsr(MSR_FS_BASE) == (uint64_t)fs_area,
		      "FS_BASE MSR: %%fs:0 reads 0x%llx", U64(v));
		uint64_t cr4 = READ_CR(4);
		if (r[1] & 1) {
			WRITE_CR(4, cr4 | (1ull << 16)); /* FSGSBASE */
			u_result = 0;
			long x = user(u_fsbase, 0x2);
			check(x == -1 && u_result == 0xf5f5f5f5 && u_rsp == 0x5a5a,
			      "at CPL3: %%fs:0 0x%llx, WRFSBASE/RDFSBASE 0x%llx (vector %d)",
			      U64(u_result), U64(u_rsp), (int)x);
			check(rdmsr(MSR_FS_BASE) == 0x5a5a, "WRFSBASE at CPL3 wrote FS_BASE (0x%llx)",
			      U64(rdmsr(MSR_FS_BASE)));
			WRITE_CR(4, cr4);
		} else {
			long y = user(u_fsbase, 0x2);
			check(y == 6, "FSGSBASE not advertised: WRFSBASE raises #UD (vector %d)", (int)y);
		}
		wrmsr(MSR_FS_BASE, 0);
	}
	if (want("fsgsbase_off")) {
		uint64_t cr4 = READ_CR(4);
		WRITE_CR(4, cr4 & ~(1ull << 16));
		long y = user(u_fsbase, 0x2);
		check(y == 6 && last_trap.rip == (uint64_t)u_fsbase + 23, /* the WRFSBASE */
		      "WRFSBASE at CPL3 with CR4.FSGSBASE clear: #UD (vector %d)", (int)y);
		WRITE_CR(4, cr4);
		wrmsr(MSR_FS_BASE, 0);
	}
	if (want("tsc_aux")) {
		uint32_t r[4];
		cpuid(0x80000001u, r);
		if (r[3] & (1u << 27)) {
			wrmsr(0xC0000103u, 0x1234);
			u_result = 0;
			long x = user(u_rdtscp, 0x2);
			check(x == -1 && u_result == 0x1234, "RDTSCP at CPL3 returns TSC_AUX in ECX (0x%llx)",
			      U64(u_result));
		} else {
			extern char f_wr_tsc_aux[];
			long x = catch_call((void (*)(void *))f_wr_tsc_aux, NULL);
			check(x == 13, "RDTSCP not advertised: WRMSR TSC_AUX raises #GP (vector %d)",
			      (int)x);
		}
	}
	if (want("io_bitmap")) {
		allow_port(0x3fd, 1);
		u_result = 0;
		long v = user(u_in_ok, 0x2);
		check(v == -1 && (u_result & 0x20),
		      "IN from allowed port 0x3fd at CPL3: LSR 0x%x (vector %d error 0x%x rip 0x%llx)",
		      (unsigned)u_result, (int)v, (unsigned)last_trap.error, U64(last_trap.rip));
		expect_gp("IN from denied port 0x3fc", u_in_deny, u_in_deny_at);
		expect_gp("IN word at 0x3fd (0x3fe denied)", u_in_span, u_in_span_at);
		allow_port(0x3fd, 0);
		expect_gp("IN from port 0x3fd after denying it again", u_in_ok, u_in_ok + 4);
	}
	sys_finish();
}
