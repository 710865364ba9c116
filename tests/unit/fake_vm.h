/* A struct vm for device unit tests: real buses (and optionally guest
 * memory), a fake engine whose irq_line records line levels. Devices are
 * torn down by the real vm_destroy. */
#ifndef KITE_TESTS_FAKE_VM_H
#define KITE_TESTS_FAKE_VM_H

#include <errno.h>
#include <string.h>

#include "vmm/irq.h"
#include "vmm/vm.h"

struct fake_engine {
	bool level[64];
	unsigned raises[64];  /* low -> high transitions */
	unsigned calls;
};

static inline int fake_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	struct fake_engine *f = vm->engine_data;
	if (gsi >= 64)
		return -EINVAL;
	if (level && !f->level[gsi])
		f->raises[gsi]++;
	f->level[gsi] = level;
	f->calls++;
	return 0;
}

static inline void fake_vm_destroy_engine(struct vm *vm)
{
	vm->engine_data = NULL;
}

static const struct engine_ops fake_engine_ops = {
	.name = "fake",
	.irq_line = fake_irq_line,
	.vm_destroy = fake_vm_destroy_engine,
};

/* mem_size 0: no guest memory. */
static inline void fake_vm_init(struct vm *vm, struct vm_config *cfg, struct fake_engine *fe,
				uint64_t mem_size)
{
	memset(vm, 0, sizeof(*vm));
	memset(fe, 0, sizeof(*fe));
	vm_config_defaults(cfg);
	if (mem_size) {
		cfg->mem_size = mem_size;
		guest_memory_init(&vm->mem, mem_size);
	}
	vm->cfg = cfg;
	vm->engine = &fake_engine_ops;
	vm->engine_data = fe;
	atomic_init(&vm->stop_reason, VM_RUNNING);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
}

static inline uint64_t pio_in(struct vm *vm, uint64_t port, unsigned size)
{
	uint64_t v;
	bus_read(&vm->pio, port, size, &v);
	return v;
}

static inline void pio_out(struct vm *vm, uint64_t port, unsigned size, uint64_t v)
{
	bus_write(&vm->pio, port, size, v);
}

static inline int stop_reason(struct vm *vm)
{
	return atomic_load(&vm->stop_reason);
}

#endif
