/* The kvm engine's public face beyond engine.h: calibration for
 * `--engine auto` and a raw exit benchmark. */
#ifndef KITE_ENGINE_KVM_KVM_H
#define KITE_ENGINE_KVM_KVM_H

#include <stddef.h>
#include <stdint.h>

/* Below this, guest kernel (CPL0) code runs emulated rather than natively:
 * hardware virtualization runs it at hundreds to thousands of MIPS, a
 * software KVM (kvm_pvm) at a few. */
#define KVM_NATIVE_MIN_MIPS 100.0

struct kvm_calibration {
	double mips;      /* CPL0 instructions per microsecond */
	uint64_t insns;   /* instructions in the timed loop */
	uint64_t loop_ns; /* KVM_RUN time of the loop run */
	uint64_t base_ns; /* KVM_RUN time of the same code with 1 iteration */
};

/* Run a tiny guest (one page, one vCPU, 32-bit protected mode at CPL0: a
 * counted DEC/JNZ loop ending in an OUT) in a throwaway VM and time it.
 * Takes a few milliseconds natively and ~20 ms where CPL0 is emulated.
 * Returns 0, or a negative errno with a one-line reason in why. */
int kvm_calibrate(struct kvm_calibration *c, char *why, size_t why_len);

/* Time `iterations` port-I/O exits (OUT from CPL0, straight back into
 * KVM_RUN) in a throwaway VM with no kite machinery: the floor that kite's
 * own exit path is measured against (bench/). Returns ns per exit in
 * *ns_per_exit, 0 or a negative errno. */
int kvm_raw_exit_bench(unsigned iterations, double *ns_per_exit, char *why, size_t why_len);

#endif
