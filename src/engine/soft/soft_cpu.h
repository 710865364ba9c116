/* The soft engine's CPU core: internal interfaces shared by its files and by
 * the helpers that plug into it (x87/SSE library, differential harness).
 *
 * Design
 * ------
 * State. struct soft_cpu embeds the engine-neutral struct cpu_state (field
 * `s`), so get/set state is a copy plus a flush of derived caches. The only
 * state kept outside `s` is the lazy arithmetic flags: the last flag-setting
 * operation's kind, size, operands and result (lf_*). CF/PF/AF/ZF/SF/OF are
 * computed on demand (soft_flags()); soft_flags_commit() folds them back into
 * s.rflags. Every other bit of RFLAGS lives in s.rflags all the time.
 *
 * Decoding. Zydis (ZydisDecoderDecodeFull) decodes each instruction once into
 * a compact struct sinsn: handler pointer, length, operand/address sizes,
 * prefixes, up to 3 operand descriptors, one memory operand (seg/base/index/
 * scale/disp) and the immediates. Instructions are grouped into blocks (a
 * straight run ending at a branch, a system instruction or the page end),
 * stored in a translation cache (tc) hashed by (guest-physical address, code
 * size 16/32/64). A direct-mapped jump cache keyed by (linear RIP, code size,
 * MMU view) sits in front of it, invalidated by a generation bump on every
 * TLB flush or code invalidation. A cache hit never calls Zydis. Blocks live
 * in an arena that is reset when full; an invalidated block is only
 * unlinked, so a block that invalidates itself (self-modifying code)
 * finishes safely and the loop stops after the writing instruction.
 *
 * Code-page tracking. soft_vm.code_pages holds one byte per guest RAM page:
 * a mask of the vCPUs (bit id & 7) that decoded code there. The TLB write
 * fast path tests that byte (one load from a small array), so writes to
 * ordinary pages stay on the fast path and a write to a code page from any
 * vCPU takes the slow path, which flushes the page's blocks (other vCPUs
 * get PEND_FLUSH) and clears the byte.
 *
 * Memory. A soft TLB per privilege view (supervisor, supervisor with AC set
 * under SMAP, user), 256 direct-mapped entries each, keyed by linear page.
 * An entry holds one tag per access kind (read/write/exec); a tag is the page
 * number only when that access is allowed without a walk, else ~0. A hit is
 * one compare plus a host pointer addition. Misses walk the page tables
 * (4-level long mode, PAE, 32-bit with PSE), set A/D bits atomically, check
 * U/S, R/W, NX, WP, SMEP, SMAP and raise #PF with the error code and CR2.
 * Global pages survive CR3 loads. Non-RAM physical addresses go to
 * vm->mmio; standalone runs (no VM) stop with SOFT_STOP_IO.
 *
 * Exceptions. soft_raise() longjmps out of the instruction to the run loop
 * (cpu->jb). Handlers are written so that nothing architectural is committed
 * before the last access that can fault (faults are precise: RIP still points
 * at the instruction). In a VM the loop delivers the exception through the
 * IDT (real, protected and long mode; double fault; triple fault stops the
 * VM); standalone runs stop with SOFT_STOP_EXCEPTION.
 *
 * Handlers. One function per mnemonic, in a table indexed by ZydisMnemonic
 * (filled once; see soft_register_handler). A handler returns SOFT_NEXT (the
 * loop advances RIP by the length) or SOFT_JUMP (the handler set RIP, or
 * left it to re-execute, e.g. an unfinished REP; the block ends). Anything
 * without a handler raises #UD and is logged once at debug level with its
 * mnemonic: that log is the to-do list.
 *
 * Plugging in the x87/SSE library (src/engine/soft/fpu/):
 *  - fpu_soft_handlers(t) (fpu/soft_glue.c) fills its entries into the
 *    table once, after the core's own (so it may replace them); the SSE
 *    forms of MOVSD/CMPSD go through soft_set_sse_alias, the string forms
 *    stay with the core. Other code may use soft_register_handler before
 *    any vCPU runs.
 *  - architectural state is cpu->s.fx (the FXSAVE image: fcw, fsw, ftw,
 *    st[8] as 80-bit values in 16-byte slots, mxcsr, xmm[16]); keep it
 *    there (or sync it in soft_get_state) so state save/restore sees it.
 *    cpu->fpu is free for the library's private state.
 *  - operands: in->op[i].kind (OP_XMM/OP_MMX/OP_ST/OP_REG/OP_MEM/OP_IMM),
 *    .reg, .size in bytes; in->imm for imm8 operands; soft_rd_vec/
 *    soft_wr_vec read/write XMM, MMX, GPR or memory operands;
 *    ea_lin() + soft_lin_read/soft_lin_write for other memory sizes (m80,
 *    m512...). Faults are raised from inside (precise: commit last).
 *  - exceptions: soft_check_sse() for #UD/#NM; soft_raise(cpu, 19, 0, false)
 *    for #XM, soft_raise(cpu, 16, 0, false) for #MF.
 *
 * Interrupts and timers (platform.c). In a VM the engine owns the PC's
 * interrupt controllers and PIT (src/devices/platform): one LAPIC per vCPU
 * on an APIC bus, the IOAPIC, the 8259 pair, the 8254. LAPIC MMIO is
 * dispatched per vCPU before vm->mmio; x2APIC, APIC_BASE and TSC_DEADLINE
 * MSRs and CR8 go to the LAPIC. Between blocks the loop accepts what the
 * LAPIC has (NMI, then a maskable vector when IF=1 and no STI/MOV SS
 * shadow) and, every 4096 instructions, compares the host TSC with the next
 * LAPIC/PIT deadline (the PIT is polled by vCPU 0). HLT sleeps on a condvar
 * until a kick, INIT/SIPI, NMI, a deliverable interrupt or the next
 * deadline. The guest TSC is the host TSC plus an offset; CPUID 0x15 says
 * TSC = 16 x the LAPIC timer clock, exactly. Without the platform (the
 * standalone runner, unit tests) soft_vcpu_raise_intr() queues a vector.
 *
 * Speed. Frequent forms (32/64-bit register ALU operations and MOVs, ALU
 * with a memory operand, register shifts, INC/DEC, IMUL, MOVZX, CMOVcc,
 * every Jcc) get specialized handlers at decode time (fast.c); conditions
 * after CMP/SUB/TEST compare the saved operands directly, and a CMP/TEST
 * of registers followed by a Jcc is fused into one dispatch (the fused
 * handler retires both). The run loop keeps per-instruction work to the
 * handler call: each instruction's RIP is the block start plus its offset
 * (sinsn.off), stored before the call so faults stay precise; retired
 * instructions are counted per block (cur_first/cur_in recover the count
 * after a longjmp). In 64-bit code each block keeps direct links to the
 * two blocks that followed it (next RIP, jump-cache key, generation), so
 * the usual block-to-block step skips the jump-cache hash; a link is valid
 * only while the jump-cache generation is unchanged, so every TLB flush or
 * code invalidation unlinks everything at once. Interrupts, kicks and
 * timers are still checked between blocks (never inside one).
 * Measured 2026-11-22 (CPU time, loaded 2-core host, same run): first
 * serial byte (the xz decompressor) 25.0 -> 17.3 s, init 41.2 -> 30.2 s.
 * Translation to host code is the next step: dispatch (indirect call per
 * instruction) and the per-block checks are now most of the time.
 *
 * Debug. RFLAGS.TF single-steps (one instruction per block, #DB trap after
 * it); DR7-enabled instruction breakpoints are checked before each
 * instruction (a fault, RF suppresses one); data breakpoints and #AC
 * alignment checks switch the TLB to a SLOW view so every access reaches the
 * slow path, which checks them (a data breakpoint traps after the
 * instruction).
 *
 * Not implemented yet: hardware task switching (task gates, call gates),
 * virtual-8086 mode, I/O breakpoints, XSAVE, PCID, the FSGSBASE
 * instructions; none is advertised in CPUID. Device DMA into guest RAM
 * reaches soft_mem_written() (engine op mem_written) so code decoded from
 * those pages is dropped: virtio devices report their writable buffers
 * through virtq_push_elem -> the transport's mem_written hook.
 */
#ifndef KITE_ENGINE_SOFT_SOFT_CPU_H
#define KITE_ENGINE_SOFT_SOFT_CPU_H

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "arch/x86/cpu_state.h"
#include "arch/x86/cpuid.h"
#include "engine/soft/soft.h"
#include "vmm/memory.h"

struct vm;
struct soft_cpu;
struct sinsn;
struct lapic;
struct soft_platform;

/* ---- compact decoded instruction ---- */

enum sop_kind { OP_NONE, OP_REG, OP_MEM, OP_IMM, OP_SREG, OP_CR, OP_DR, OP_XMM, OP_MMX, OP_ST };

/* GPR numbering in operand descriptors: 0-15 as enum gpr; 16-19 are
 * AH, CH, DH, BH (legacy high-byte registers). */
#define REG_AH 16

struct sop {
	uint8_t kind;  /* enum sop_kind */
	uint8_t size;  /* bytes (16 for XMM/m128, 10 for m80...) */
	uint8_t reg;   /* register number for register kinds */
	uint8_t pad;
};

#define MEM_NOREG 0xff
#define MEM_RIP   16

enum { SOFT_NEXT = 0, SOFT_JUMP = 1 };
typedef int (*soft_handler)(struct soft_cpu *cpu, const struct sinsn *in);

#define PFX_LOCK  1
#define PFX_REP   2   /* F3: REP / REPE */
#define PFX_REPNE 4   /* F2 */
#define PFX_SEGOV 8   /* explicit segment override */
#define PFX_OSZ   16  /* 66 present */

struct sinsn {
	soft_handler fn;
	uint64_t imm;     /* first immediate (sign-extended as decoded) */
	int64_t disp;     /* memory displacement */
	uint32_t imm2;    /* second immediate (ENTER level, far pointer selector) */
	uint16_t mnemonic;
	uint8_t len;
	uint8_t osz;      /* operand size in bytes: 1, 2, 4, 8 */
	uint8_t asz;      /* address size in bytes: 2, 4, 8 */
	uint8_t pfx;      /* PFX_* */
	uint8_t nops;     /* visible operands */
	uint8_t seg;      /* effective segment of the memory operand (enum seg_reg) */
	uint8_t base, index, scale; /* MEM_NOREG when absent, MEM_RIP for RIP-relative */
	uint8_t opcode;   /* last opcode byte (distinguishes forms of one mnemonic) */
	uint8_t opmap;    /* Zydis opcode map */
	uint8_t modrm_reg; /* ModRM.reg (group opcodes: FF /3 vs /2...) */
	struct sop op[3];
	uint16_t off;     /* offset from the start of its block (set by tc_build) */
};

/* ---- translation cache ---- */

struct tblock {
	uint64_t pa;           /* guest-physical address of the first byte */
	struct tblock *hnext;  /* hash chain */
	struct tblock *pnext;  /* blocks starting on the same page */
	uint8_t mode;          /* code size: 2, 4, 8 */
	uint8_t valid;
	uint16_t ninsn;
	uint32_t pad;
	/* Direct links to the blocks that ran after this one (64-bit code):
	 * next RIP, jump-cache key and generation they were made under. A
	 * link is used only while its generation is current, so every TLB
	 * flush and code invalidation unlinks all blocks at once. */
	struct tblock *link[2];
	uint64_t link_rip[2];
	uint32_t link_key[2];
	uint32_t link_gen[2];
	struct sinsn insn[];
};

#define TC_HASH_BITS 14
#define TC_PAGE_HASH_BITS 12
#define TC_ARENA_SIZE (32u << 20)
#define TC_MAX_BLOCK 48

/* Jump cache: linear RIP -> block, checked before the TLB and the hash.
 * Entries are valid only for the current generation, bumped on every TLB
 * flush and translation-cache invalidation. */
#define JC_SIZE 4096
struct jc_entry {
	uint64_t la;
	struct tblock *b;
	uint32_t key;  /* code size | MMU view << 4 */
	uint32_t gen;
};

struct soft_tc {
	struct tblock *hash[1u << TC_HASH_BITS];
	struct tblock *pages[1u << TC_PAGE_HASH_BITS]; /* per-page lists, hashed by pfn */
	uint8_t *arena;
	size_t used;
	uint64_t flushes;
};

/* ---- soft TLB ---- */

#define TLB_BITS 8
#define TLB_SIZE (1u << TLB_BITS)
#define TLB_NONE (~0ULL)

struct tlbe {
	uint64_t tag_r, tag_w, tag_x; /* linear page number when allowed, else TLB_NONE */
	uintptr_t addend;             /* host = linear + addend (RAM pages only) */
	uint64_t pa;                  /* physical page address */
	uint8_t global;
	uint8_t ram;
};

/* Privilege views of the TLB. The two SLOW views never hold entries: every
 * access takes the slow path, which checks alignment (#AC at CPL3 with
 * CR0.AM and RFLAGS.AC) and data breakpoints (DR0-3). */
enum { MMU_SUP, MMU_SUP_AC, MMU_USER, MMU_SUP_SLOW, MMU_USER_SLOW, MMU_VIEWS };

/* Access kinds for the MMU slow path. */
enum { ACC_READ = 0, ACC_WRITE = 1, ACC_EXEC = 2 };
#define ACC_IMPLICIT 8  /* supervisor-mode implicit access (descriptor tables, TSS) */

/* ---- VM-wide state ---- */

struct soft_vm {
	struct guest_memory *mem;
	struct vm *vm;            /* NULL for standalone runs */
	unsigned nr_cpus;
	uint64_t tsc_offset;      /* guest TSC = host TSC + this: 0 at VM creation, same on every vCPU */
	/* Guest time stands still while the VM is paused: the platform clock
	 * is host CLOCK_MONOTONIC minus paused_ns (soft_guest_ns), and every
	 * TSC offset drops by the host TSC ticks of the pause. */
	_Atomic uint64_t paused_ns;
	uint64_t pause_start_ns, pause_start_tsc;
	struct cpu_model model;   /* what CPUID shows: kite's model over our features */
	struct soft_platform *plat; /* LAPICs, IOAPIC, PIC, PIT (VM only; platform.c) */
	uint64_t nr_pages;        /* guest-physical pages covered by code_pages */
	_Atomic uint8_t *code_pages;
	_Atomic uint64_t irq_lines; /* GSI levels until the IOAPIC/PIC models land */
	uint8_t ud_logged[(2048 + 7) / 8]; /* mnemonics already logged as #UD */
	pthread_mutex_t log_lock;
};

/* ---- vCPU ---- */

/* Pending work bits (soft_cpu.pending), set from any thread. */
#define PEND_KICK  1u
#define PEND_INTR  2u
#define PEND_NMI   4u
#define PEND_INIT  8u
#define PEND_SIPI  16u
#define PEND_FLUSH 32u  /* another vCPU wrote code: flush the translation cache */

/* Lazy flag operation kinds. */
enum lf_op {
	LF_NONE,   /* flags are in s.rflags */
	LF_ADD, LF_ADC, LF_SUB, LF_SBB, LF_LOGIC, LF_INC, LF_DEC, LF_NEG,
	LF_SHL, LF_SHR, LF_SAR, LF_MUL,
};

/* Run-loop exits (longjmp values and stop codes). */
enum { EXIT_NONE, EXIT_EXCEPTION, EXIT_HLT, EXIT_IO, EXIT_SHUTDOWN, EXIT_KICK, EXIT_LIMIT,
       EXIT_RESET /* INIT on the BSP: restart at the reset vector, i.e. a reset request */ };

struct soft_cpu {
	struct cpu_state s;

	/* lazy flags */
	uint64_t lf_res, lf_src1, lf_src2;
	uint8_t lf_op, lf_size, lf_cf;   /* lf_cf: carry-in (ADC/SBB), old CF (INC/DEC) */

	/* derived mode, refreshed by soft_mode_changed() */
	uint8_t cpl;
	uint8_t code_size;   /* 2, 4, 8 */
	uint8_t stack_size;  /* 2, 4, 8 */
	bool long_mode;      /* EFER.LMA */
	bool mode64;         /* 64-bit code segment */
	bool paging;
	uint8_t mmu_view;    /* MMU_* for the current CPL/AC */

	struct soft_vm *svm;
	struct guest_memory *mem;
	_Atomic uint8_t *code_pages; /* svm->code_pages */
	uint64_t nr_pages;
	struct tlbe tlb[MMU_VIEWS][TLB_SIZE];
	struct soft_tc tc;
	struct jc_entry jc[JC_SIZE];
	uint32_t jc_gen;
	unsigned id;

	/* exceptions */
	jmp_buf jb;
	int exit_code;
	uint8_t exc_vector;
	uint32_t exc_error;
	bool exc_has_error;
	int exc_depth;        /* 1 while delivering an exception */
	uint8_t exc_first;    /* the exception being delivered */
	bool nmi_blocked;     /* from NMI delivery until the next IRET */
	uint8_t dbg_exec;     /* DR7-enabled instruction breakpoints (bit i: DRi) */
	uint8_t dbg_data;     /* DR7-enabled data breakpoints */
	uint8_t dbg_hit;      /* data breakpoints hit by the current instruction */
	bool deliver;         /* deliver exceptions via the IDT (VM mode) */
	bool shadow;          /* interrupt shadow active for the next instruction */
	bool block_dirty;     /* the current block was invalidated mid-run */
	bool mode_dirty;      /* a handler changed mode state: end the block */
	uint64_t insns;
	uint64_t max_insns;
	/* the block being run: its first instruction and the one executing,
	 * so a longjmp out of a handler can count what retired */
	const struct sinsn *cur_first, *cur_in;
	const struct sinsn *cur_end;  /* end of what this block run may execute */
	uint64_t tsc_offset;
	uint64_t tsc_adjust;       /* IA32_TSC_ADJUST */
	uint64_t trap_rip;

	/* interrupt controller and timers (platform.c); NULL standalone */
	struct lapic *lapic;
	const atomic_bool *lapic_hint; /* the LAPIC's lock-free pending hint */
	uint64_t timer_tsc;        /* host TSC at which to poll the timers */
	uint64_t timer_check;      /* instruction count at which to read the TSC */

	/* interrupts, from other threads */
	_Atomic unsigned pending;
	_Atomic int intr_vector;   /* vector of a pending INTR, -1 none */
	_Atomic int sipi_vector;
	int (*intr_ack)(void *opaque); /* interrupt controller: acknowledge, give vector */
	void *intr_opaque;
	pthread_mutex_t lock;
	pthread_cond_t cond;

	/* last page walk, for setting A/D bits once the access is allowed */
	int walk_n;
	unsigned walk_esz;
	void *walk_ptr[5];
	uint64_t walk_ent[5];

	/* x87/SSE library state hook */
	void *fpu;
};

/* ---- handler table ---- */

void soft_register_handler(unsigned mnemonic, soft_handler fn);
soft_handler soft_lookup_handler(unsigned mnemonic);
soft_handler soft_handlers_generic(unsigned mnemonic);
/* Replace in->fn by a specialized handler for frequent forms (fast.c). */
void soft_specialize(struct sinsn *in);
void soft_specialize_store(struct sinsn *in);
/* Fuse pairs within a decoded block (CMP/TEST followed by Jcc). */
void soft_fuse_block(struct sinsn *insn, unsigned n);

/* VM-wide state for a VM (vm != NULL) or a standalone run (soft.c). */
int soft_svm_init(struct soft_vm *svm, struct guest_memory *mem, struct vm *vm);
void soft_svm_destroy(struct soft_vm *svm);

/* ---- core (cpu.c) ---- */

int soft_cpu_init(struct soft_cpu *cpu, struct soft_vm *svm, unsigned id);
void soft_cpu_destroy(struct soft_cpu *cpu);
void soft_set_state(struct soft_cpu *cpu, const struct cpu_state *st);
void soft_get_state(struct soft_cpu *cpu, struct cpu_state *st);
/* Execute until an exit; returns EXIT_*. */
int soft_exec(struct soft_cpu *cpu);
void soft_mode_changed(struct soft_cpu *cpu);
/* DR7 changed: recompute the enabled breakpoints. */
void soft_debug_changed(struct soft_cpu *cpu);
void soft_tc_flush(struct soft_cpu *cpu);
void soft_tc_invalidate_page(struct soft_cpu *cpu, uint64_t pa);

__attribute__((noreturn)) void soft_raise(struct soft_cpu *cpu, int vector, uint32_t err, bool has_err);
__attribute__((noreturn)) void soft_exit(struct soft_cpu *cpu, int code);
static inline __attribute__((noreturn)) void soft_gp(struct soft_cpu *cpu, uint32_t err)
{
	soft_raise(cpu, 13, err, true);
}
static inline __attribute__((noreturn)) void soft_ud(struct soft_cpu *cpu)
{
	soft_raise(cpu, 6, 0, false);
}

/* Pending-work processing between blocks (soft.c): interrupts, kicks,
 * flush requests. Returns an EXIT_* code to leave the loop, or 0. */
int soft_cpu_pending(struct soft_cpu *cpu);
/* Tell the vCPUs in mask (bits id & 7) that code they decoded was written. */
void soft_cpu_notify_code_write(struct soft_cpu *cpu, uint8_t mask);
uint64_t soft_host_tsc(void);

/* Wake the vCPU (from any thread) with pending bits. */
void soft_cpu_wake(struct soft_cpu *cpu, unsigned bits);

/* ---- platform devices (platform.c) ---- */
uint64_t soft_now_ns(void);
uint64_t soft_guest_ns(const struct soft_vm *svm);
int soft_platform_create(struct soft_vm *svm, struct vm *vm);
void soft_platform_destroy(struct soft_vm *svm);
int soft_platform_vcpu_init(struct soft_cpu *cpu);
void soft_platform_vcpu_destroy(struct soft_cpu *cpu);
int soft_platform_irq_line(struct soft_vm *svm, unsigned gsi, bool level);
int soft_platform_msi(struct soft_vm *svm, uint64_t addr, uint32_t data);
uint64_t soft_platform_deadline(struct soft_cpu *cpu);
void soft_platform_timers(struct soft_cpu *cpu);
void soft_platform_accept(struct soft_cpu *cpu);
bool soft_platform_intr_ready(struct soft_cpu *cpu);
bool soft_platform_mmio(struct soft_cpu *cpu, uint64_t pa, unsigned size, uint64_t *v, bool write);
int soft_platform_rdmsr(struct soft_cpu *cpu, uint32_t idx, uint64_t *v);
int soft_platform_wrmsr(struct soft_cpu *cpu, uint32_t idx, uint64_t v);
bool soft_lapic_maybe_pending(struct soft_cpu *cpu);
uint8_t soft_platform_get_cr8(struct soft_cpu *cpu);
void soft_platform_set_cr8(struct soft_cpu *cpu, uint8_t v);

/* ---- flags (flags.c) ---- */

uint64_t soft_flags(struct soft_cpu *cpu);          /* full RFLAGS, lazy bits computed */
void soft_flags_commit(struct soft_cpu *cpu);       /* fold lazy bits into s.rflags */
bool soft_cf(struct soft_cpu *cpu);
bool soft_cond(struct soft_cpu *cpu, unsigned cc);  /* cc: the 4-bit condition code */
/* Set the arithmetic flags from a host-computed value (eager ops). */
static inline void soft_set_arith(struct soft_cpu *cpu, uint64_t fl)
{
	const uint64_t m = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;
	cpu->lf_op = LF_NONE;
	cpu->s.rflags = (cpu->s.rflags & ~m) | (fl & m);
}
static inline void lf_set(struct soft_cpu *cpu, int op, unsigned size, uint64_t s1, uint64_t s2, uint64_t res)
{
	cpu->lf_op = op;
	cpu->lf_size = size;
	cpu->lf_src1 = s1;
	cpu->lf_src2 = s2;
	cpu->lf_res = res;
}

/* ---- memory (mmu.c) ---- */

void soft_tlb_flush(struct soft_cpu *cpu, bool global);
void soft_tlb_flush_page(struct soft_cpu *cpu, uint64_t la);
/* Translate a linear address for an access; raises #PF. Returns the
 * physical address. */
uint64_t soft_translate(struct soft_cpu *cpu, uint64_t la, int acc);
/* Linear-address accesses (segmentation already applied). acc may include
 * ACC_IMPLICIT. Any size 1..16, page crossings handled. */
void soft_lin_read(struct soft_cpu *cpu, uint64_t la, void *dst, unsigned size, int acc);
void soft_lin_write(struct soft_cpu *cpu, uint64_t la, const void *src, unsigned size, int acc);
/* Host pointer for a whole in-page RAM access that is allowed (used for
 * read-modify-write and LOCK); NULL means: use the slow accessors. Raises
 * #PF when the access is not allowed. */
void *soft_lin_ptr(struct soft_cpu *cpu, uint64_t la, unsigned size, int acc);
/* A write reached a page with decoded code: invalidate it everywhere. */
void soft_code_written(struct soft_cpu *cpu, uint64_t pa, unsigned size);
/* Mark a physical page as holding decoded code. */
void soft_mark_code(struct soft_cpu *cpu, uint64_t pa);
/* Physical accesses (page walker, descriptor tables in real mode...). */
uint64_t soft_phys_read(struct soft_cpu *cpu, uint64_t pa, unsigned size);
void soft_phys_write(struct soft_cpu *cpu, uint64_t pa, unsigned size, uint64_t v);

/* The fast paths compare the tag with the page of the access's last byte:
 * an access that crosses into the next page cannot match, because that
 * page's number would sit in the next slot. */
static inline struct tlbe *tlb_entry(struct soft_cpu *cpu, uint64_t la)
{
	return &cpu->tlb[cpu->mmu_view][(la >> 12) & (TLB_SIZE - 1)];
}

/* Fast linear read/write of 1/2/4/8 bytes. */
static inline uint64_t lin_read(struct soft_cpu *cpu, uint64_t la, unsigned size)
{
	struct tlbe *e = tlb_entry(cpu, la);
	if (__builtin_expect(e->tag_r == ((la + size - 1) >> 12), 1)) {
		const uint8_t *p = (const uint8_t *)(uintptr_t)(la + e->addend);
		switch (size) {
		case 1: return *p;
		case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
		case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
		default: { uint64_t v; memcpy(&v, p, 8); return v; }
		}
	}
	uint64_t v = 0;
	soft_lin_read(cpu, la, &v, size, ACC_READ);
	return v;
}

static inline void lin_write(struct soft_cpu *cpu, uint64_t la, unsigned size, uint64_t v)
{
	struct tlbe *e = tlb_entry(cpu, la);
	if (__builtin_expect(e->tag_w == ((la + size - 1) >> 12) &&
			     !atomic_load_explicit(&cpu->code_pages[e->pa >> 12], memory_order_relaxed), 1)) {
		uint8_t *p = (uint8_t *)(uintptr_t)(la + e->addend);
		switch (size) {
		case 1: *p = (uint8_t)v; return;
		case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); return; }
		case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); return; }
		default: memcpy(p, &v, 8); return;
		}
	}
	soft_lin_write(cpu, la, &v, size, ACC_WRITE);
}

/* Host pointer for a read-modify-write of size bytes at la (write access);
 * NULL when the slow accessors must be used (MMIO, page crossing). */
static inline void *lin_ptr_w(struct soft_cpu *cpu, uint64_t la, unsigned size)
{
	struct tlbe *e = tlb_entry(cpu, la);
	if (__builtin_expect(e->tag_w == ((la + size - 1) >> 12) &&
			     !atomic_load_explicit(&cpu->code_pages[e->pa >> 12], memory_order_relaxed), 1))
		return (void *)(uintptr_t)(la + e->addend);
	return soft_lin_ptr(cpu, la, size, ACC_WRITE);
}

/* ---- segmentation and operands (ops.c) ---- */

static inline uint64_t size_mask(unsigned size)
{
	return size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

static inline uint64_t sext(uint64_t v, unsigned size)
{
	switch (size) {
	case 1: return (uint64_t)(int64_t)(int8_t)v;
	case 2: return (uint64_t)(int64_t)(int16_t)v;
	case 4: return (uint64_t)(int64_t)(int32_t)v;
	default: return v;
	}
}

/* Linear address of seg:off for an access of size bytes; checks limits
 * outside 64-bit mode (#GP, or #SS for the stack segment). */
uint64_t soft_seg_check(struct soft_cpu *cpu, int seg, uint64_t off, unsigned size, bool write);
void soft_ss_noncanonical(struct soft_cpu *cpu, uint64_t la);
static inline uint64_t seg_lin(struct soft_cpu *cpu, int seg, uint64_t off, unsigned size, bool write)
{
	if (cpu->mode64) {
		/* a non-canonical stack access is #SS, not #GP */
		if (__builtin_expect(seg == SEG_SS, 0) && (uint64_t)((int64_t)(off << 16) >> 16) != off)
			soft_ss_noncanonical(cpu, off);
		return seg >= SEG_FS ? off + cpu->s.seg[seg].base : off;
	}
	return soft_seg_check(cpu, seg, off, size, write);
}

static inline uint64_t rd_gpr(const struct soft_cpu *cpu, unsigned r, unsigned size)
{
	if (size == 1 && r >= REG_AH)
		return (cpu->s.gpr[r - REG_AH] >> 8) & 0xff;
	return cpu->s.gpr[r] & size_mask(size);
}

static inline void wr_gpr(struct soft_cpu *cpu, unsigned r, unsigned size, uint64_t v)
{
	switch (size) {
	case 1:
		if (r >= REG_AH)
			cpu->s.gpr[r - REG_AH] = (cpu->s.gpr[r - REG_AH] & ~0xff00ULL) | ((v & 0xff) << 8);
		else
			cpu->s.gpr[r] = (cpu->s.gpr[r] & ~0xffULL) | (v & 0xff);
		break;
	case 2: cpu->s.gpr[r] = (cpu->s.gpr[r] & ~0xffffULL) | (v & 0xffff); break;
	case 4: cpu->s.gpr[r] = (uint32_t)v; break;
	default: cpu->s.gpr[r] = v; break;
	}
}

/* Effective address (offset within the segment) of the memory operand. */
static inline uint64_t ea_off(const struct soft_cpu *cpu, const struct sinsn *in)
{
	uint64_t a = (uint64_t)in->disp;
	if (in->base != MEM_NOREG)
		a += in->base == MEM_RIP ? cpu->s.rip + in->len : cpu->s.gpr[in->base];
	if (in->index != MEM_NOREG)
		a += cpu->s.gpr[in->index] << in->scale;
	if (in->asz == 4)
		a = (uint32_t)a;
	else if (in->asz == 2)
		a = (uint16_t)a;
	return a;
}

static inline uint64_t ea_lin(struct soft_cpu *cpu, const struct sinsn *in, unsigned size, bool write)
{
	return seg_lin(cpu, in->seg, ea_off(cpu, in), size, write);
}

/* Read/write operand i with the given size. */
static inline uint64_t rd_op(struct soft_cpu *cpu, const struct sinsn *in, int i, unsigned size)
{
	switch (in->op[i].kind) {
	case OP_REG: return rd_gpr(cpu, in->op[i].reg, size);
	case OP_MEM: return lin_read(cpu, ea_lin(cpu, in, size, false), size);
	case OP_IMM: return in->imm & size_mask(size);
	case OP_SREG: return cpu->s.seg[in->op[i].reg].selector;
	default: soft_ud(cpu);
	}
}

static inline void wr_op(struct soft_cpu *cpu, const struct sinsn *in, int i, unsigned size, uint64_t v)
{
	if (in->op[i].kind == OP_REG)
		wr_gpr(cpu, in->op[i].reg, size, v);
	else if (in->op[i].kind == OP_MEM)
		lin_write(cpu, ea_lin(cpu, in, size, true), size, v);
	else
		soft_ud(cpu);
}

/* Stack. */
void soft_push(struct soft_cpu *cpu, unsigned size, uint64_t v);
uint64_t soft_pop(struct soft_cpu *cpu, unsigned size);
uint64_t soft_stack_peek(struct soft_cpu *cpu, unsigned off, unsigned size);

/* ---- system (sys.c) ---- */

/* Load a segment register in the current mode, with the checks of MOV/POP. */
void soft_load_seg(struct soft_cpu *cpu, int seg, uint16_t sel);
/* Deliver exception/interrupt `vector` through the IDT (VM mode). soft_int
 * flags: */
#define INT_SOFT  1   /* INT n / INT3 / INTO: DPL check, RIP after insn */
#define INT_ERR   2
#define INT_EXT   4   /* external interrupt / hardware exception */
#define INT_TRAP  8   /* return address is cpu->trap_rip (after the instruction) */
#define INT_FAULT 16  /* a fault-class exception: the frame saves RF=1 */
void soft_deliver(struct soft_cpu *cpu, int vector, uint32_t err, int flags);
uint64_t soft_read_tsc(struct soft_cpu *cpu);
void soft_write_cr(struct soft_cpu *cpu, int n, uint64_t v);
/* I/O: returns false when unsupported (standalone). */
uint64_t soft_io_in(struct soft_cpu *cpu, uint16_t port, unsigned size);
void soft_io_out(struct soft_cpu *cpu, uint16_t port, unsigned size, uint64_t v);
bool soft_mmio_read(struct soft_cpu *cpu, uint64_t pa, unsigned size, uint64_t *v);
bool soft_mmio_write(struct soft_cpu *cpu, uint64_t pa, unsigned size, uint64_t v);

/* CPUID as the guest sees it (arch/x86/cpuid.c's model over the features
 * the soft engine implements, plus the live-state bits). */
void soft_cpuid(struct soft_cpu *cpu, uint32_t leaf, uint32_t sub, uint32_t out[4]);
/* The feature set the soft engine implements, for cpuid_model_init. */
void soft_cpu_features(struct cpu_features *f);

/* Far transfers (sys.c), called from the near-branch handlers. */
int soft_mov_crdr(struct soft_cpu *cpu, const struct sinsn *in);
int soft_far_jmp(struct soft_cpu *cpu, const struct sinsn *in);
int soft_far_call(struct soft_cpu *cpu, const struct sinsn *in);
int soft_far_ret(struct soft_cpu *cpu, const struct sinsn *in);
/* SSE forms of MOVSD/CMPSD (same mnemonic as the string instructions). */
void soft_set_sse_alias(unsigned mnemonic, soft_handler fn);

/* Vector operand helpers for SSE/MMX handlers (sse.c): read/write operand i
 * as size bytes (XMM, MMX, GPR or memory; aligned: #GP on a misaligned
 * 16-byte memory operand; zext: zero the rest of an XMM destination). */
void soft_check_sse(struct soft_cpu *cpu);  /* #UD / #NM rules for SSE */
void soft_rd_vec(struct soft_cpu *cpu, const struct sinsn *in, int i, uint8_t out[16], unsigned size, bool aligned);
void soft_wr_vec(struct soft_cpu *cpu, const struct sinsn *in, int i, const uint8_t v[16], unsigned size, bool aligned, bool zext);

/* Handler registration, per file. */
void soft_int_handlers(soft_handler *t);
void soft_sys_handlers(soft_handler *t);
void soft_sse_handlers(soft_handler *t);


#endif
