/* An address space of device ranges: one structure serves port I/O (16-bit
 * addresses) and MMIO (64-bit). Both engines dispatch guest accesses here:
 * kvm on KVM_EXIT_IO / KVM_EXIT_MMIO, soft on IN/OUT and on loads/stores
 * that miss RAM. Accesses are 1, 2, 4 or 8 bytes; callers split wider ones. */
#ifndef KITE_VMM_BUS_H
#define KITE_VMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* offset is relative to the range's base; size is 1, 2, 4 or 8.
 * A device takes its own lock inside these callbacks. */
typedef uint64_t (*bus_read_fn)(void *opaque, uint64_t offset, unsigned size);
typedef void (*bus_write_fn)(void *opaque, uint64_t offset, unsigned size, uint64_t value);

struct bus_range {
	uint64_t base;
	uint64_t len;
	bus_read_fn read;   /* may be NULL: reads return all ones */
	bus_write_fn write; /* may be NULL: writes are dropped */
	void *opaque;
	const char *name;
	uint64_t accesses; /* dispatched reads + writes (metrics); atomic adds */
};

struct bus {
	const char *name;
	pthread_rwlock_t lock; /* ranges change rarely (BAR moves), read often */
	struct bus_range *ranges; /* sorted by base, never overlapping */
	size_t nr, cap;
};

void bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);

/* Returns 0, -EINVAL for an empty or wrapping range, -EEXIST when it
 * overlaps a registered range, -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 bus_read_fn read, bus_write_fn write, void *opaque, const char *name);
/* Remove the range that starts at base and belongs to opaque: 0 or -ENOENT. */
int bus_unregister(struct bus *bus, uint64_t base, void *opaque);

/* Dispatch one access. Returns true when a device claimed the address.
 * An unclaimed read yields all ones (as on a PC bus); an unclaimed write
 * is dropped. An access that straddles the end of a range is unclaimed. */
bool bus_read(struct bus *bus, uint64_t addr, unsigned size, uint64_t *value);
bool bus_write(struct bus *bus, uint64_t addr, unsigned size, uint64_t value);

/* Call fn for every range, under the bus's read lock (fn must not touch
 * the bus). For metrics: per-device access counts. */
void bus_for_each(struct bus *bus, void (*fn)(void *opaque, const struct bus_range *r),
		  void *opaque);

#endif
