/* The one interface both CPU engines implement. Everything above it (VM,
 * devices, loaders) is shared. An engine owns the vCPU execution and the
 * interrupt controllers' delivery; guest port I/O and MMIO it cannot handle
 * itself go to vm->pio / vm->mmio (vmm/bus.h). */
#ifndef KITE_ENGINE_ENGINE_H
#define KITE_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpu_state.h"

struct vm;
struct vcpu;

struct engine_ops {
	const char *name;

	/* Is the engine usable on this host? 0, or a negative errno with a
	 * one-line reason written to why (e.g. "/dev/kvm: Permission denied"). */
	int (*probe)(char *why, size_t why_len);

	/* Create the engine's VM-wide state: vm->engine_data. Guest memory and
	 * buses exist already; interrupt controllers are created here. */
	int (*vm_init)(struct vm *vm);
	void (*vm_destroy)(struct vm *vm);

	/* Create vCPU state: vcpu->engine_data. Called for every vCPU before any
	 * runs, from the main thread. */
	int (*vcpu_init)(struct vcpu *vcpu);
	void (*vcpu_destroy)(struct vcpu *vcpu);

	int (*vcpu_set_state)(struct vcpu *vcpu, const struct cpu_state *state);
	int (*vcpu_get_state)(struct vcpu *vcpu, struct cpu_state *state);

	/* Run the vCPU on the calling thread until vm_should_stop(vcpu->vm) or
	 * a kick. Port I/O and MMIO are dispatched to the buses from inside.
	 * A triple fault calls vm_request_stop(VM_STOP_TRIPLE_FAULT) and
	 * returns. Returns 0 or a negative errno for an engine failure. */
	int (*vcpu_run)(struct vcpu *vcpu);
	/* Make vcpu_run return soon; callable from any thread. */
	void (*vcpu_kick)(struct vcpu *vcpu);

	/* Optional (NULL: nothing to do). Guest RAM [gpa, gpa+len) was written
	 * by a device (DMA) or the VMM rather than by a vCPU: the soft engine
	 * drops instructions it decoded from there. Call it after the write,
	 * e.g. when a virtqueue buffer with device-writable segments is used. */
	void (*mem_written)(struct vm *vm, uint64_t gpa, uint64_t len);

	/* Optional: the VM is paused (true) or resumes (false), with every vCPU
	 * parked. An engine whose guest clocks follow the host clock (soft)
	 * holds them still over the pause, as a stopped machine's would. */
	void (*vm_pause_time)(struct vm *vm, bool paused);

	/* Optional: device memory region index of vm->mem was mapped, moved
	 * or unmapped (gm_map_device_mem). The kvm engine updates the memory
	 * slot; the soft engine needs nothing (its TLB fills through gm_ptr).
	 * 0 or a negative errno. */
	int (*device_mem_changed)(struct vm *vm, unsigned index);

	/* Interrupt delivery (vmm/irq.h forwards here). */
	int (*irq_line)(struct vm *vm, unsigned gsi, bool level);
	int (*irq_msi)(struct vm *vm, uint64_t addr, uint32_t data);
};

extern const struct engine_ops kvm_engine;
extern const struct engine_ops soft_engine;

#endif

/* Resolve --engine: kvm and soft are taken as asked (failing with the
 * probe's reason); auto prefers kvm unless the probe or a short calibration
 * run shows guest CPL0 code would run emulated, then picks soft and says so
 * in one line. Returns 0 or a negative errno, having told the user why. */
struct vm_config;
int engine_select(const struct vm_config *cfg, const struct engine_ops **out);
