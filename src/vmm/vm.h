/* The VM as a whole: owns guest memory, buses, devices, the engine and the
 * vCPUs. Lifecycle: vm_create -> vm_load (boot state) -> vm_run (blocks
 * until the VM stops) -> vm_destroy. */
#ifndef KITE_VMM_VM_H
#define KITE_VMM_VM_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "vmm/bus.h"
#include "vmm/config.h"
#include "vmm/device.h"
#include "vmm/memory.h"
#include "vmm/vcpu.h"

struct event_loop;
struct pci_bus;
struct virtio_blk;

/* Why the VM stopped; decides kite's exit status (see main.c). */
enum vm_stop_reason {
	VM_RUNNING = 0,
	VM_STOP_POWEROFF,     /* ACPI S5, guest poweroff      -> exit 0 */
	VM_STOP_RESET,        /* i8042/ACPI/CF9 reset request -> exit 0 */
	VM_STOP_DEBUG_EXIT,   /* write v to port 0xf4         -> exit (v<<1)|1 */
	VM_STOP_TRIPLE_FAULT, /* shutdown                     -> exit 2 */
	VM_STOP_SIGNAL,       /* SIGINT/SIGTERM, Ctrl-A x     -> exit 0 (130/143 later?) */
	VM_STOP_ERROR,        /* kite failed                  -> exit 1 */
};

struct vm {
	const struct vm_config *cfg;
	struct guest_memory mem;
	struct bus pio;
	struct bus mmio;
	const struct engine_ops *engine;
	void *engine_data;
	struct vcpu *vcpus;
	unsigned nr_vcpus;

	_Atomic int stop_reason;  /* enum vm_stop_reason; first stop wins */
	uint32_t stop_code;       /* debug-exit value */

	/* The main thread sleeps in sigwait; a stop from inside the VM wakes
	 * it with SIGUSR2 once notify_main is set. */
	pthread_t main_thread;
	_Atomic bool notify_main;

	struct device *devices;   /* every device model, in creation order */
	size_t nr_devices;

	/* Pause (the API's PATCH /vm): vCPU threads park on pause_cond between
	 * vcpu_run calls while pause_requested is set. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	_Atomic bool pause_requested;
	unsigned parked;          /* vCPU threads parked, under pause_lock */
	/* Per vCPU: returns from vcpu_run to kite's loop (metrics). */
	_Atomic uint64_t *vcpu_exits;

	/* cfg->disks[i]'s device, for the API's PATCH /drives */
	struct virtio_blk *disks[VM_MAX_DISKS];

	struct event_loop *loop;  /* backends and timers; started by vm_run */
	struct pci_bus *pci;      /* bus 0 behind the host bridge */

	/* The CPUs the creating thread could run on before --io-affinity
	 * pinned it: unpinned vCPUs run there, and vm_destroy restores it. */
	cpu_set_t startup_cpus;
};

/* Lifecycle, all from the main thread. Each returns 0 or a negative errno
 * and reports its own errors to the user. */
int vm_create(struct vm *vm, const struct vm_config *cfg, const struct engine_ops *engine);
int vm_load(struct vm *vm);   /* firmware tables, kernel, boot vCPU state */
int vm_run(struct vm *vm);    /* start the vCPU threads */
void vm_join(struct vm *vm);  /* wait until every vCPU thread ended */
void vm_destroy(struct vm *vm);

/* Stop every vCPU (returns once each vCPU thread is parked outside
 * vcpu_run, or the VM is stopping) / let them run again. Devices and their
 * backends keep running. Main thread only; 0 or a negative errno. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
static inline bool vm_is_paused(struct vm *vm)
{
	return atomic_load(&vm->pause_requested);
}

/* Devices register themselves here once created; vm_destroy tears them
 * down in reverse order. */
int vm_add_device(struct vm *vm, const struct device_ops *ops, void *dev);

/* Ask the VM to stop: records the first reason, kicks every vCPU. Safe from
 * any thread, including a vCPU inside a device callback. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, uint32_t code);
/* kite's exit status for the reason the VM stopped (see main.c's usage). */
int vm_exit_status(struct vm *vm);
static inline bool vm_should_stop(struct vm *vm)
{
	return atomic_load_explicit(&vm->stop_reason, memory_order_acquire) != VM_RUNNING;
}

#endif
