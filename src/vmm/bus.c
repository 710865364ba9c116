#include "vmm/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	bus->ranges = NULL;
	bus->nr = bus->cap = 0;
	pthread_rwlock_destroy(&bus->lock);
}

/* Index of the first range whose end is above addr (or nr). */
static size_t lower_bound(const struct bus *bus, uint64_t addr)
{
	size_t lo = 0, hi = bus->nr;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &bus->ranges[mid];
		if (r->base + (r->len - 1) < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 bus_read_fn read, bus_write_fn write, void *opaque, const char *name)
{
	if (len == 0 || base + (len - 1) < base)
		return -EINVAL;
	int ret = 0;
	pthread_rwlock_wrlock(&bus->lock);
	size_t i = lower_bound(bus, base);
	if (i < bus->nr && bus->ranges[i].base <= base + (len - 1)) {
		ret = -EEXIST;
		goto out;
	}
	if (bus->nr == bus->cap) {
		size_t cap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *n = realloc(bus->ranges, cap * sizeof(*n));
		if (!n) {
			ret = -ENOMEM;
			goto out;
		}
		bus->ranges = n;
		bus->cap = cap;
	}
	memmove(&bus->ranges[i + 1], &bus->ranges[i], (bus->nr - i) * sizeof(bus->ranges[0]));
	bus->ranges[i] = (struct bus_range){ base, len, read, write, opaque, name, 0 };
	bus->nr++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

int bus_unregister(struct bus *bus, uint64_t base, void *opaque)
{
	int ret = -ENOENT;
	pthread_rwlock_wrlock(&bus->lock);
	size_t i = lower_bound(bus, base);
	if (i < bus->nr && bus->ranges[i].base == base && bus->ranges[i].opaque == opaque) {
		memmove(&bus->ranges[i], &bus->ranges[i + 1], (bus->nr - i - 1) * sizeof(bus->ranges[0]));
		bus->nr--;
		ret = 0;
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

/* Find the range holding all of [addr, addr+size); copies it out so the
 * callback runs without the bus lock (a device may move its own BARs). */
static bool find(struct bus *bus, uint64_t addr, unsigned size, struct bus_range *out)
{
	bool found = false;
	pthread_rwlock_rdlock(&bus->lock);
	size_t i = lower_bound(bus, addr);
	if (i < bus->nr) {
		const struct bus_range *r = &bus->ranges[i];
		if (addr >= r->base && addr - r->base <= r->len - size && size <= r->len) {
			/* the array only moves under the write lock */
			__atomic_fetch_add(&bus->ranges[i].accesses, 1, __ATOMIC_RELAXED);
			*out = *r;
			found = true;
		}
	}
	pthread_rwlock_unlock(&bus->lock);
	return found;
}

void bus_for_each(struct bus *bus, void (*fn)(void *opaque, const struct bus_range *r),
		  void *opaque)
{
	pthread_rwlock_rdlock(&bus->lock);
	for (size_t i = 0; i < bus->nr; i++) {
		struct bus_range r = bus->ranges[i];
		r.accesses = __atomic_load_n(&bus->ranges[i].accesses, __ATOMIC_RELAXED);
		fn(opaque, &r);
	}
	pthread_rwlock_unlock(&bus->lock);
}

bool bus_read(struct bus *bus, uint64_t addr, unsigned size, uint64_t *value)
{
	struct bus_range r;
	uint64_t ones = size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
	if (!find(bus, addr, size, &r)) {
		*value = ones;
		return false;
	}
	*value = r.read ? r.read(r.opaque, addr - r.base, size) & ones : ones;
	return true;
}

bool bus_write(struct bus *bus, uint64_t addr, unsigned size, uint64_t value)
{
	struct bus_range r;
	if (!find(bus, addr, size, &r))
		return false;
	if (r.write) {
		uint64_t mask = size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
		r.write(r.opaque, addr - r.base, size, value & mask);
	}
	return true;
}
