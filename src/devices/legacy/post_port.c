#include "devices/legacy/post_port.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "arch/x86/layout.h"
#include "util/log.h"
#include "vmm/vm.h"

struct post_port {
	struct vm *vm;
	_Atomic uint8_t last;
};

static uint64_t post_read(void *opaque, uint64_t offset, unsigned size)
{
	struct post_port *p = opaque;
	(void)offset; (void)size;
	return atomic_load(&p->last);
}

static void post_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct post_port *p = opaque;
	(void)offset; (void)size;
	atomic_store(&p->last, (uint8_t)value);
	/* Linux writes here for I/O delays: log only when asked to. */
	if (log_get_level() >= LOG_DEBUG)
		kite_debug("POST code 0x%02x", (unsigned)(uint8_t)value);
}

static void post_reset(void *dev)
{
	struct post_port *p = dev;
	atomic_store(&p->last, 0);
}

static void post_destroy(void *dev)
{
	struct post_port *p = dev;
	if (p->vm)
		bus_unregister(&p->vm->pio, PORT_POST, p);
	free(p);
}

const struct device_ops post_port_ops = {
	.name = "post_port", .reset = post_reset, .destroy = post_destroy,
};

int post_port_create(struct vm *vm, struct post_port **out)
{
	struct post_port *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->vm = vm;
	int ret = bus_register(&vm->pio, PORT_POST, 1, post_read, post_write, p, "post");
	if (!ret)
		ret = vm_add_device(vm, &post_port_ops, p);
	if (ret) {
		post_destroy(p);
		return ret;
	}
	if (out)
		*out = p;
	return 0;
}
