/* The 64-bit system test guests' library (sys_start64.S, sys_lib.c): GDT
 * selectors, an IDT whose every vector reaches trap_dispatch(), a 64-bit
 * TSS with IST stacks and an I/O permission bitmap, a way to run code that
 * is expected to trap (catch_call, catch_user for CPL3), and PASS/FAIL
 * checks. Built with -m64 next to the shared runtime (guests/lib). */
#ifndef SYS_LIB_H
#define SYS_LIB_H

#include "lib/runtime.h"

#define SEL_KCODE32 0x08
#define SEL_KCODE   0x10
#define SEL_KDATA   0x18
#define SEL_UCODE32 0x23
#define SEL_UDATA   0x2b
#define SEL_UCODE   0x33
#define SEL_TSS     0x38
#define SEL_CODE16  0x48
#define SEL_DATA16  0x50

#define MSR_EFER           0xC0000080u
#define MSR_STAR           0xC0000081u
#define MSR_LSTAR          0xC0000082u
#define MSR_SFMASK         0xC0000084u
#define MSR_FS_BASE        0xC0000100u
#define MSR_GS_BASE        0xC0000101u
#define MSR_KERNEL_GS_BASE 0xC0000102u
#define EFER_SCE (1u << 0)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)
#define EFER_NXE (1u << 11)

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_EM (1ull << 2)
#define CR0_TS (1ull << 3)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_AM (1ull << 18)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_PGE (1ull << 7)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)

#define RFLAGS_IF (1ull << 9)
#define RFLAGS_TF (1ull << 8)
#define RFLAGS_DF (1ull << 10)
#define RFLAGS_AC (1ull << 18)

/* 64-bit values for the runtime's printf: %llx wants unsigned long long */
#define U64(x) ((unsigned long long)(x))

/* What the CPU and the entry stub leave on the stack (trap_dispatch's
 * argument); a handler may change it before the IRETQ. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

/* The last trap seen: a copy of its frame, CR2, and where the frame was
 * (which stack the CPU delivered on). */
struct trap_info {
	uint64_t vector, error, rip, cs, rflags, rsp, ss, cr2, frame;
};
extern volatile struct trap_info last_trap;
extern volatile unsigned trap_count;

typedef void (*trap_fn)(struct trap_frame *f);

/* The first 4 GiB, 1:1, 2 MiB pages, built by sys_start64.S */
extern uint64_t boot_pml4[512], boot_pdpt[512], boot_pd[4][512];
/* What sys_start64.S saw on its way to 64-bit mode */
struct boot_state {
	uint64_t cr0_prot, efer_prot, efer_compat, cr0_long, cr4_long, efer_long;
};
extern volatile struct boot_state boot_state;
extern uint64_t gdt64[];

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t ist[8]; /* ist[1..7] at 0x24; ist[0] is the reserved qword at 0x1c */
	uint64_t reserved2;
	uint16_t reserved3, iomap_base;
	uint8_t iomap[8192 + 1];
} __attribute__((packed));
_Static_assert(__builtin_offsetof(struct tss64, iomap_base) == 0x66, "64-bit TSS layout");
extern struct tss64 tss;

/* Each guest names itself: every line it prints starts with the name. */
extern const char *const sys_name;

/* IDT: all 256 vectors present, DPL0, interrupt gates, no IST. sys_init
 * also loads the TSS (RSP0 and IST1..3 on stacks of the library, all
 * ports denied) and reads the command line. */
void sys_init(const struct multiboot_info *mbi);
void set_gate(unsigned vec, unsigned ist, unsigned dpl, int present, int trap_gate);
void set_gate_addr(unsigned vec, uint64_t handler, unsigned ist, unsigned dpl, int present);
uint64_t stub_addr(unsigned vec);
void set_handler(unsigned vec, trap_fn fn);
void allow_port(uint16_t port, int allow);
extern uint8_t ist_stack[4][8192]; /* tops are IST1..3 and RSP0 */
#define IST_TOP(n) ((uint64_t)&ist_stack[(n)][8192])

/* Run fn(arg) expecting it may trap: -1 if it returned, else the vector
 * (last_trap has the details). catch_user runs fn at CPL3 on the given
 * stack with the given RFLAGS. A handler set with set_handler decides
 * itself: return to retry, or trap_land(f) to end the catch. */
long catch_call(void (*fn)(void *), void *arg);
long catch_user(void (*fn)(void *), void *arg, uint64_t user_stack_top, uint64_t rflags);
void trap_land(struct trap_frame *f);

/* A check: prints "<name>: PASS: <what>" or "<name>: FAIL: <what>". */
void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether to run the named part: the command line may say only=a,b or
 * skip=a,b (the integration tests use it where an engine cannot). */
int want(const char *part);
__attribute__((noreturn)) void sys_finish(void);

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
#define READ_CR(n) ({ uint64_t v_; __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v_)); v_; })
#define WRITE_CR(n, v) __asm__ volatile("mov %0, %%cr" #n :: "r"((uint64_t)(v)) : "memory")
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" :: "r"(va) : "memory"); }
static inline uint64_t read_rflags(void)
{
	uint64_t f;
	__asm__ volatile("pushfq; popq %0" : "=r"(f));
	return f;
}

#endif
