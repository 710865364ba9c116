/* The soft engine's public face beyond engine.h: a standalone CPU run used
 * by the differential test harness (tests/diff) and the benchmarks. No VM,
 * no devices: just guest memory and one vCPU's architectural state. */
#ifndef KITE_ENGINE_SOFT_SOFT_H
#define KITE_ENGINE_SOFT_SOFT_H

#include <stdint.h>

#include "arch/x86/cpu_state.h"
#include "vmm/memory.h"

enum soft_stop {
	SOFT_STOP_LIMIT,     /* max_insns instructions retired */
	SOFT_STOP_HLT,       /* HLT executed (CPL0) */
	SOFT_STOP_EXCEPTION, /* an exception was raised: not delivered, state is
	                        as the CPU leaves it before delivery (RIP at the
	                        faulting instruction for faults, after it for
	                        traps such as INT3) */
	SOFT_STOP_IO,        /* port I/O or MMIO outside RAM: not supported here */
};

struct soft_run_result {
	enum soft_stop stop;
	uint8_t vector;      /* for SOFT_STOP_EXCEPTION */
	uint32_t error_code; /* where the vector has one */
	uint64_t cr2;        /* for #PF */
	uint64_t insns;      /* instructions retired */
};

/* Run state on mem until one of the stops above. The state's mode (real,
 * protected, long, paging) is honoured as given. Returns 0 (the result says
 * why it stopped) or a negative errno. */
int soft_run_standalone(struct guest_memory *mem, struct cpu_state *state,
			uint64_t max_insns, struct soft_run_result *res);

/* CPUID feature bits the soft engine implements, for the CPU model
 * (arch/x86/cpuid.c) to advertise no more than this: leaf 1 EDX/ECX, leaf 7
 * subleaf 0 EBX/ECX, leaf 0x80000001 EDX/ECX. Leaf 1 EDX includes the x87,
 * MMX, FXSR, SSE and SSE2 bits the 64-bit kernel requires; their arithmetic
 * comes with the x87/SSE library. */
#define SOFT_CPUID_1_EDX  0x0789a979u /* FPU PSE TSC MSR PAE CX8 SEP PGE CMOV PAT CLFSH MMX FXSR SSE SSE2 */
#define SOFT_CPUID_1_ECX  0x80c02000u /* CX16 MOVBE POPCNT HYPERVISOR */
#define SOFT_CPUID_7_EBX  0x00100082u /* TSC_ADJUST SMEP SMAP */
#define SOFT_CPUID_7_ECX  0x00400000u /* RDPID */
#define SOFT_CPUID_X1_EDX 0x2c100800u /* SYSCALL NX PDPE1GB RDTSCP LM */
#define SOFT_CPUID_X1_ECX 0x00000021u /* LAHF/SAHF ABM(LZCNT) */

/* Interrupt-controller side of a soft vCPU (the LAPIC/PIC models drive
 * these; any thread). An interrupt source is polled when the vCPU can take
 * an interrupt: ack() returns the vector to deliver, or -1 for none. Without
 * a source, soft_vcpu_raise_intr() queues one vector. Each wakes a halted
 * vCPU. */
struct vcpu;
void soft_vcpu_set_intr_source(struct vcpu *vcpu, int (*ack)(void *opaque), void *opaque);
void soft_vcpu_intr_pending(struct vcpu *vcpu);   /* the source has something */
void soft_vcpu_raise_intr(struct vcpu *vcpu, uint8_t vector);
void soft_vcpu_nmi(struct vcpu *vcpu);
void soft_vcpu_init_signal(struct vcpu *vcpu);    /* INIT: reset, wait for SIPI */
void soft_vcpu_sipi(struct vcpu *vcpu, uint8_t vector);

/* Guest memory was written behind the CPUs' back (device DMA, loaders):
 * drop any code decoded from [gpa, gpa+len). Cheap when no code was
 * decoded there. The VMM's DMA write path calls this for the soft engine. */
struct vm;
void soft_mem_written(struct vm *vm, uint64_t gpa, uint64_t len);

#endif
