#include "devices/legacy/debug_exit.h"

#include <errno.h>
#include <stdlib.h>

#include "arch/x86/layout.h"
#include "vmm/vm.h"

struct debug_exit {
	struct vm *vm;
};

static void debug_exit_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct debug_exit *d = opaque;
	(void)offset;
	/* Any access width; the value is what the guest wrote, truncated to
	 * the width (outb gives 0..255, the usual case). */
	uint32_t v = size >= 4 ? (uint32_t)value : (uint32_t)(value & ((1u << (size * 8)) - 1));
	vm_request_stop(d->vm, VM_STOP_DEBUG_EXIT, v);
}

static void debug_exit_destroy(void *dev)
{
	free(dev);
}

static const struct device_ops debug_exit_ops = {
	.name = "debug-exit",
	.destroy = debug_exit_destroy,
};

int debug_exit_create(struct vm *vm)
{
	struct debug_exit *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->vm = vm;
	int ret = vm_add_device(vm, &debug_exit_ops, d);
	if (ret) {
		free(d);
		return ret;
	}
	/* 4 bytes wide like QEMU's, so outw/outl to 0xf4 work as well. */
	return bus_register(&vm->pio, PORT_DEBUG_EXIT, 4, NULL, debug_exit_write, d, "debug-exit");
}
