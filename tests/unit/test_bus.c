#include <criterion/criterion.h>
#include <errno.h>

#include "vmm/bus.h"

struct fake_dev {
	uint64_t last_offset, last_value;
	unsigned last_size, reads, writes;
};

static uint64_t fake_read(void *opaque, uint64_t offset, unsigned size)
{
	struct fake_dev *d = opaque;
	d->reads++;
	d->last_offset = offset;
	d->last_size = size;
	return 0x1122334455667788ULL + offset;
}

static void fake_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct fake_dev *d = opaque;
	d->writes++;
	d->last_offset = offset;
	d->last_size = size;
	d->last_value = value;
}

Test(bus, dispatch_to_the_right_device_with_offsets)
{
	struct bus bus;
	struct fake_dev a = { 0 }, b = { 0 };
	bus_init(&bus, "t");
	cr_assert_eq(bus_register(&bus, 0x3f8, 8, fake_read, fake_write, &a, "a"), 0);
	cr_assert_eq(bus_register(&bus, 0x60, 1, fake_read, fake_write, &b, "b"), 0);
	uint64_t v;
	cr_assert(bus_read(&bus, 0x3fd, 1, &v));
	cr_assert_eq(a.last_offset, 5);
	cr_assert_eq(v, (0x1122334455667788ULL + 5) & 0xff, "value truncated to access size");
	cr_assert(bus_write(&bus, 0x60, 1, 0x1ff));
	cr_assert_eq(b.last_value, 0xff, "write value masked to access size");
	cr_assert_eq(a.writes, 0);
	bus_destroy(&bus);
}

Test(bus, unclaimed_reads_all_ones_and_writes_dropped)
{
	struct bus bus;
	struct fake_dev a = { 0 };
	bus_init(&bus, "t");
	cr_assert_eq(bus_register(&bus, 0x1000, 0x10, fake_read, fake_write, &a, "a"), 0);
	uint64_t v = 0;
	cr_assert_not(bus_read(&bus, 0x2000, 2, &v));
	cr_assert_eq(v, 0xffff);
	cr_assert_not(bus_read(&bus, 0x0fff, 4, &v));
	cr_assert_eq(v, 0xffffffff);
	/* Straddling the end of a range is not the device's. */
	cr_assert_not(bus_read(&bus, 0x100e, 4, &v));
	cr_assert_not(bus_write(&bus, 0x100f, 2, 1));
	cr_assert_eq(a.reads + a.writes, 0);
	/* Last byte is fine. */
	cr_assert(bus_read(&bus, 0x100f, 1, &v));
	bus_destroy(&bus);
}

Test(bus, overlaps_rejected_and_unregister)
{
	struct bus bus;
	struct fake_dev a = { 0 }, b = { 0 };
	bus_init(&bus, "t");
	cr_assert_eq(bus_register(&bus, 0x100, 0x100, fake_read, NULL, &a, "a"), 0);
	cr_assert_eq(bus_register(&bus, 0x1ff, 1, fake_read, NULL, &b, "b"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0x80, 0x81, fake_read, NULL, &b, "b"), -EEXIST);
	cr_assert_eq(bus_register(&bus, 0x200, 1, fake_read, NULL, &b, "b"), 0);
	cr_assert_eq(bus_register(&bus, 0xff, 1, fake_read, NULL, &b, "b"), 0);
	cr_assert_eq(bus_register(&bus, 0, 0, fake_read, NULL, &b, "b"), -EINVAL);
	cr_assert_eq(bus_register(&bus, UINT64_MAX, 2, fake_read, NULL, &b, "b"), -EINVAL);
	cr_assert_eq(bus_unregister(&bus, 0x100, &b), -ENOENT, "wrong owner");
	cr_assert_eq(bus_unregister(&bus, 0x100, &a), 0);
	uint64_t v;
	cr_assert_not(bus_read(&bus, 0x150, 1, &v));
	cr_assert_eq(bus_register(&bus, 0x100, 0x100, fake_read, NULL, &a, "a"), 0);
	bus_destroy(&bus);
}

Test(bus, read_without_callback_is_all_ones_but_claimed)
{
	struct bus bus;
	int dummy;
	bus_init(&bus, "t");
	cr_assert_eq(bus_register(&bus, 0x80, 1, NULL, NULL, &dummy, "post"), 0);
	uint64_t v;
	cr_assert(bus_read(&bus, 0x80, 1, &v));
	cr_assert_eq(v, 0xff);
	cr_assert(bus_write(&bus, 0x80, 1, 0x12));
	bus_destroy(&bus);
}
