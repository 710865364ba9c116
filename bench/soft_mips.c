/* Guest instructions per second of the soft engine on a CPU-bound loop and a
 * memory-heavy loop, against the same machine code run natively in this
 * process (issue 3's benchmark). The loops are written once, below, as
 * position-independent x86-64 functions: native runs call them; the soft
 * engine runs a copy of their bytes in a 64-bit guest (CPL0, 2 MiB identity
 * pages) that returns into a HLT. Both sides must compute the same result.
 *
 * usage: build/bench/soft_mips [scale]   (scale 1 = ~1 s of soft time) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "engine/soft/soft.h"
#include "vmm/memory.h"

/* cpu_loop(n): integer multiply, shifts, rotates, a call per iteration.
 * mem_loop(buf, passes): load, add, store sweeps over a 64 KiB buffer. */
__asm__(".pushsection .text\n"
	".globl kite_bench_cpu_loop, kite_bench_cpu_loop_end\n"
	"kite_bench_cpu_loop:\n"
	"  mov %rdi, %rcx\n"
	"  xor %eax, %eax\n"
	"  mov $1, %edx\n"
	"1: imul $0x5851f42d, %rdx, %rdx\n"
	"  add %rcx, %rdx\n"
	"  mov %rdx, %r8\n"
	"  shr $7, %r8\n"
	"  xor %r8, %rax\n"
	"  rol $5, %rax\n"
	"  call 2f\n"
	"  dec %rcx\n"
	"  jnz 1b\n"
	"  ret\n"
	"2: add $1, %rax\n"
	"  ret\n"
	"kite_bench_cpu_loop_end:\n"
	".globl kite_bench_mem_loop, kite_bench_mem_loop_end\n"
	"kite_bench_mem_loop:\n"
	"3: mov $8192, %ecx\n"
	"  mov %rdi, %rdx\n"
	"4: mov (%rdx), %rax\n"
	"  add %rcx, %rax\n"
	"  mov %rax, 8(%rdx)\n"
	"  add $8, %rdx\n"
	"  dec %ecx\n"
	"  jnz 4b\n"
	"  dec %rsi\n"
	"  jnz 3b\n"
	"  ret\n"
	"kite_bench_mem_loop_end:\n"
	".popsection\n");

extern const uint8_t kite_bench_cpu_loop[], kite_bench_cpu_loop_end[];
extern const uint8_t kite_bench_mem_loop[], kite_bench_mem_loop_end[];
typedef uint64_t (*loop_fn)(uint64_t, uint64_t);

#define MEM_SIZE  (64ULL << 20)
#define PML4      0x1000
#define PDPT      0x2000
#define PD        0x3000
#define GDT       0x4000
#define CODE      0x10000
#define HLT_AT    0x20000
#define STACK_TOP 0x80000
#define BUF       0x100000
#define BUF_SIZE  (64 * 1024 + 16)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void w64(struct guest_memory *m, uint64_t gpa, uint64_t v)
{
	if (gm_write(m, gpa, &v, 8))
		abort();
}

static void flat(struct segment *s, uint16_t sel, uint8_t type, bool l)
{
	*s = (struct segment){ .limit = 0xffffffff, .selector = sel, .type = type, .s = 1,
			       .present = 1, .l = l, .db = !l, .g = 1 };
}

/* Run code (bytes) as fn(a, b) on the soft engine; returns RAX. */
static uint64_t soft_call(const uint8_t *code, size_t len, uint64_t a, uint64_t b,
			  uint64_t *insns)
{
	struct guest_memory m;
	if (guest_memory_init(&m, MEM_SIZE))
		abort();
	w64(&m, PML4, PDPT | 3);
	w64(&m, PDPT, PD | 3);
	for (uint64_t i = 0; i < 512; i++)
		w64(&m, PD + i * 8, (i << 21) | 0x83);
	w64(&m, GDT + 8, 0x00af9a000000ffffULL);
	w64(&m, GDT + 16, 0x00cf92000000ffffULL);
	if (gm_write(&m, CODE, code, len) || gm_write(&m, HLT_AT, "\xf4", 1))
		abort();
	w64(&m, STACK_TOP - 8, HLT_AT); /* the loop's ret lands on HLT */
	struct cpu_state *s = calloc(1, sizeof(*s));
	s->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG | CR0_WP | CR0_MP;
	s->cr3 = PML4;
	s->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	s->efer = EFER_LME | EFER_LMA | EFER_NXE;
	flat(&s->seg[SEG_CS], 8, 0xb, true);
	flat(&s->seg[SEG_SS], 16, 0x3, false);
	s->seg[SEG_DS] = s->seg[SEG_ES] = s->seg[SEG_FS] = s->seg[SEG_GS] = s->seg[SEG_SS];
	s->seg[SEG_TR] = (struct segment){ .limit = 0x67, .type = 0xb, .present = 1 };
	s->seg[SEG_LDTR] = (struct segment){ .unusable = 1 };
	s->gdt = (struct dtable){ GDT, 0x17 };
	s->rflags = 2;
	s->fx.fcw = 0x37f;
	s->fx.mxcsr = 0x1f80;
	s->gpr[RSP] = STACK_TOP - 8;
	s->gpr[RDI] = a;
	s->gpr[RSI] = b;
	s->rip = CODE;
	struct soft_run_result r;
	if (soft_run_standalone(&m, s, UINT64_MAX, &r) || r.stop != SOFT_STOP_HLT) {
		fprintf(stderr, "soft run failed: stop %d vector %u\n", r.stop, r.vector);
		exit(1);
	}
	*insns = r.insns - 1; /* the HLT is the harness's, not the loop's */
	uint64_t rax = s->gpr[RAX];
	free(s);
	guest_memory_destroy(&m);
	return rax;
}

static void bench(const char *name, const uint8_t *code, const uint8_t *end,
		  uint64_t a_native, uint64_t a_soft, uint64_t b)
{
	uint64_t insns;
	double t0 = now();
	uint64_t soft_rax = soft_call(code, (size_t)(end - code), a_soft, b, &insns);
	double soft_s = now() - t0;

	/* Natively the code runs where the linker put it; the memory loop gets
	 * a buffer of the same size at a host address. */
	loop_fn fn = (loop_fn)(uintptr_t)code;
	t0 = now();
	uint64_t native_rax = fn(a_native, b);
	double native_s = now() - t0;
	if (native_rax != soft_rax) {
		fprintf(stderr, "%s: native result %#llx != soft %#llx\n", name,
			(unsigned long long)native_rax, (unsigned long long)soft_rax);
		exit(1);
	}
	double soft_mips = (double)insns / soft_s / 1e6;
	double native_mips = (double)insns / native_s / 1e6;
	printf("%-12s %12llu %12.1f %12.1f %9.1fx\n", name, (unsigned long long)insns,
	       soft_mips, native_mips, native_mips / soft_mips);
}

int main(int argc, char **argv)
{
	double scale = argc > 1 ? atof(argv[1]) : 1.0;
	if (scale <= 0)
		scale = 1.0;
	uint64_t iters = (uint64_t)(20e6 * scale);
	uint64_t passes = (uint64_t)(500 * scale) + 1;

	printf("soft engine vs native, same machine code, CPU time (M instructions/s)\n");
	printf("%-12s %12s %12s %12s %10s\n", "loop", "instructions", "soft", "native", "ratio");
	bench("cpu-bound", kite_bench_cpu_loop, kite_bench_cpu_loop_end, iters, iters, 0);

	/* The memory loop's buffer: at BUF in the guest, a host buffer natively
	 * with the same contents (zeros), so both compute the same sum. */
	uint8_t *buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 1;
	bench("memory-heavy", kite_bench_mem_loop, kite_bench_mem_loop_end,
	      (uint64_t)(uintptr_t)buf, BUF, passes);
	return 0;
}
