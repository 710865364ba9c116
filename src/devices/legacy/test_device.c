#include "devices/legacy/test_device.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vm.h"

void test_device_init(struct test_device *d)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
}

void test_device_fini(struct test_device *d)
{
	pthread_mutex_destroy(&d->lock);
}

static bool valid_size(unsigned size)
{
	return size == 1 || size == 2 || size == 4 || size == 8;
}

uint64_t test_device_read(void *opaque, uint64_t offset, unsigned size)
{
	struct test_device *d = opaque;
	uint64_t v = 0;
	if (!valid_size(size))
		return ~0ull;
	pthread_mutex_lock(&d->lock);
	if (offset < TEST_DEVICE_ECHO_LEN) {
		if (size <= TEST_DEVICE_ECHO_LEN - offset)
			memcpy(&v, d->regs.echo + offset, size);
		else
			v = ~0ull;
	} else if (offset == TEST_DEVICE_REG_ID && size == 4) {
		v = TEST_DEVICE_ID;
	} else if (offset == TEST_DEVICE_REG_COUNT && size == 4) {
		v = d->regs.count;
	} else if (offset == TEST_DEVICE_REG_INVERT && size <= 8) {
		v = ~d->regs.invert;
	}
	pthread_mutex_unlock(&d->lock);
	if (size < 8)
		v &= (1ull << (size * 8)) - 1;
	return v;
}

void test_device_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct test_device *d = opaque;
	if (!valid_size(size))
		return;
	pthread_mutex_lock(&d->lock);
	if (offset < TEST_DEVICE_ECHO_LEN && size <= TEST_DEVICE_ECHO_LEN - offset) {
		memcpy(d->regs.echo + offset, &value, size);
		d->regs.count++;
	} else if (offset == TEST_DEVICE_REG_INVERT) {
		d->regs.invert = size < 8 ? value & ((1ull << (size * 8)) - 1) : value;
		d->regs.count++;
	}
	pthread_mutex_unlock(&d->lock);
}

static void test_device_reset(void *dev)
{
	struct test_device *d = dev;
	pthread_mutex_lock(&d->lock);
	memset(&d->regs, 0, sizeof(d->regs));
	pthread_mutex_unlock(&d->lock);
}

static size_t test_device_save(void *dev, void *buf, size_t len)
{
	struct test_device *d = dev;
	if (len >= sizeof(d->regs)) {
		pthread_mutex_lock(&d->lock);
		memcpy(buf, &d->regs, sizeof(d->regs));
		pthread_mutex_unlock(&d->lock);
	}
	return sizeof(d->regs);
}

static int test_device_restore(void *dev, const void *buf, size_t len)
{
	struct test_device *d = dev;
	if (len != sizeof(d->regs))
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	memcpy(&d->regs, buf, sizeof(d->regs));
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void test_device_destroy(void *dev)
{
	struct test_device *d = dev;
	test_device_fini(d);
	free(d);
}

static const struct device_ops test_device_ops = {
	.name = "test-device",
	.reset = test_device_reset,
	.save = test_device_save,
	.restore = test_device_restore,
	.destroy = test_device_destroy,
};

static int create_one(struct vm *vm, struct bus *bus, uint64_t base, uint64_t len,
		      const char *name)
{
	struct test_device *d = malloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	test_device_init(d);
	int ret = vm_add_device(vm, &test_device_ops, d);
	if (ret) {
		test_device_destroy(d);
		return ret;
	}
	return bus_register(bus, base, len, test_device_read, test_device_write, d, name);
}

int test_device_create(struct vm *vm)
{
	int ret = create_one(vm, &vm->pio, TEST_DEVICE_PIO_BASE, TEST_DEVICE_PIO_LEN,
			     "test-device-pio");
	if (ret)
		return ret;
	return create_one(vm, &vm->mmio, TEST_DEVICE_MMIO_BASE, TEST_DEVICE_MMIO_LEN,
			  "test-device-mmio");
}
