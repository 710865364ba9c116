/* Architectural state of one x86-64 vCPU, engine-neutral. The kvm engine
 * converts it to and from KVM_{GET,SET}_{REGS,SREGS,FPU,MSRS}; the soft
 * engine runs on it directly. Loaders produce the boot vCPU's state in this
 * form; snapshots and migration (later) save it as is. */
#ifndef KITE_ARCH_X86_CPU_STATE_H
#define KITE_ARCH_X86_CPU_STATE_H

#include <stdbool.h>
#include <stdint.h>

enum gpr { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };
enum seg_reg { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_LDTR, SEG_TR, SEG_COUNT };

/* A segment register with its hidden descriptor cache. */
struct segment {
	uint64_t base;
	uint32_t limit;   /* in bytes (already scaled by G) */
	uint16_t selector;
	uint8_t type;     /* descriptor type field, 4 bits */
	uint8_t s;        /* 1 = code/data, 0 = system */
	uint8_t dpl;
	uint8_t present;
	uint8_t avl;
	uint8_t l;        /* 64-bit code segment */
	uint8_t db;       /* default operation size / big */
	uint8_t g;        /* granularity (kept for faithful save/restore) */
	uint8_t unusable; /* null selector loaded (VMX "unusable") */
};

struct dtable {
	uint64_t base;
	uint16_t limit;
};

#define RFLAGS_CF   (1ULL << 0)
#define RFLAGS_FIXED (1ULL << 1)
#define RFLAGS_PF   (1ULL << 2)
#define RFLAGS_AF   (1ULL << 4)
#define RFLAGS_ZF   (1ULL << 6)
#define RFLAGS_SF   (1ULL << 7)
#define RFLAGS_TF   (1ULL << 8)
#define RFLAGS_IF   (1ULL << 9)
#define RFLAGS_DF   (1ULL << 10)
#define RFLAGS_OF   (1ULL << 11)
#define RFLAGS_IOPL (3ULL << 12)
#define RFLAGS_NT   (1ULL << 14)
#define RFLAGS_RF   (1ULL << 16)
#define RFLAGS_VM   (1ULL << 17)
#define RFLAGS_AC   (1ULL << 18)
#define RFLAGS_VIF  (1ULL << 19)
#define RFLAGS_VIP  (1ULL << 20)
#define RFLAGS_ID   (1ULL << 21)

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_EM (1ULL << 2)
#define CR0_TS (1ULL << 3)
#define CR0_ET (1ULL << 4)
#define CR0_NE (1ULL << 5)
#define CR0_WP (1ULL << 16)
#define CR0_AM (1ULL << 18)
#define CR0_NW (1ULL << 29)
#define CR0_CD (1ULL << 30)
#define CR0_PG (1ULL << 31)

#define CR4_VME        (1ULL << 0)
#define CR4_PVI        (1ULL << 1)
#define CR4_TSD        (1ULL << 2)
#define CR4_DE         (1ULL << 3)
#define CR4_PSE        (1ULL << 4)
#define CR4_PAE        (1ULL << 5)
#define CR4_MCE        (1ULL << 6)
#define CR4_PGE        (1ULL << 7)
#define CR4_PCE        (1ULL << 8)
#define CR4_OSFXSR     (1ULL << 9)
#define CR4_OSXMMEXCPT (1ULL << 10)
#define CR4_UMIP       (1ULL << 11)
#define CR4_FSGSBASE   (1ULL << 16)
#define CR4_PCIDE      (1ULL << 17)
#define CR4_OSXSAVE    (1ULL << 18)
#define CR4_SMEP       (1ULL << 20)
#define CR4_SMAP       (1ULL << 21)

#define EFER_SCE (1ULL << 0)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
#define EFER_NXE (1ULL << 11)

/* MSRs that are part of the architectural state (others live in devices,
 * e.g. the x2APIC range in the LAPIC model). */
struct cpu_msrs {
	uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
	uint64_t star, lstar, cstar, sfmask;
	uint64_t kernel_gs_base;
	uint64_t tsc_aux;
	uint64_t pat;
	uint64_t apic_base;
	uint64_t misc_enable;
	uint64_t tsc_deadline;
	uint64_t kvm_system_time, kvm_wall_clock; /* kvmclock, where offered */
};

/* The legacy FXSAVE image: x87, MXCSR and XMM0-15, in the layout the
 * FXSAVE instruction uses (Intel SDM vol. 1, 10.5.1). */
struct fxsave_area {
	uint16_t fcw, fsw;
	uint8_t ftw, reserved1; /* abridged tag word */
	uint16_t fop;
	uint64_t fip, fdp;
	uint32_t mxcsr, mxcsr_mask;
	uint8_t st[8][16];      /* ST0-7 / MM0-7, 10 bytes used each */
	uint8_t xmm[16][16];
	uint8_t reserved2[96];
} __attribute__((aligned(16)));
_Static_assert(sizeof(struct fxsave_area) == 512, "FXSAVE area is 512 bytes");

struct cpu_state {
	uint64_t gpr[16];
	uint64_t rip;
	uint64_t rflags;
	struct segment seg[SEG_COUNT];
	struct dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8;
	uint64_t efer;
	uint64_t xcr0;
	uint64_t dr[8];           /* DR0-3, DR6 at [6], DR7 at [7] */
	struct cpu_msrs msr;
	struct fxsave_area fx;
	uint64_t tsc;             /* guest TSC value when saved */
	bool halted;              /* HLT, waiting for an interrupt */
	bool wait_for_sipi;       /* AP held in wait-for-SIPI */
	bool interrupt_shadow;    /* after STI / MOV SS */
	bool nmi_pending;
};

#endif
