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

#endif
