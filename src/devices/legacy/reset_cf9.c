/* Reset control register (0xCF9). Writing RST_CPU (0x06 or 0x0E from
 * Linux's reboot=pci and ACPI reset) asks the VM to stop with
 * VM_STOP_RESET; main.c turns that into exit status 0, and a later
 * --on-reboot restart can rebuild the VM from there. SYS_RST and FULL_RST
 * read back as written; RST_CPU always reads 0. */
#include "devices/legacy/reset_cf9.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "util/log.h"
#include "vmm/vm.h"

struct reset_cf9 {
	struct vm *vm;
	_Atomic uint8_t value;
};

uint8_t reset_cf9_read(struct reset_cf9 *r)
{
	return atomic_load(&r->value);
}

void reset_cf9_write(struct reset_cf9 *r, uint8_t value)
{
	atomic_store(&r->value, (uint8_t)(value & (CF9_SYS_RST | CF9_FULL_RST)));
	if (value & CF9_RST_CPU) {
		kite_info("guest requested a reset through port 0xCF9 (0x%02x)", value);
		vm_request_stop(r->vm, VM_STOP_RESET, 0);
	}
}

static void cf9_reset(void *dev)
{
	struct reset_cf9 *r = dev;
	atomic_store(&r->value, 0);
}

static void cf9_destroy(void *dev)
{
	free(dev);
}

const struct device_ops reset_cf9_ops = {
	.name = "reset_cf9", .reset = cf9_reset, .destroy = cf9_destroy,
};

int reset_cf9_create(struct vm *vm, struct reset_cf9 **out)
{
	struct reset_cf9 *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->vm = vm;
	int ret = vm_add_device(vm, &reset_cf9_ops, r);
	if (ret) {
		free(r);
		return ret;
	}
	*out = r;
	return 0;
}
