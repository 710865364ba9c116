#include "vmm/memory.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static int map_region(struct mem_region *r, uint64_t gpa, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	/* Guest RAM is the bulk of a VMM's memory: let the host back it with
	 * huge pages where it can, and keep it out of core dumps. */
	madvise(p, size, MADV_HUGEPAGE);
	madvise(p, size, MADV_DONTDUMP);
	r->gpa = gpa;
	r->size = size;
	r->host = p;
	return 0;
}

int guest_memory_init(struct guest_memory *mem, uint64_t size)
{
	memset(mem, 0, sizeof(*mem));
	if (size == 0)
		return -EINVAL;
	uint64_t low = size < MEM_PCI_HOLE_START ? size : MEM_PCI_HOLE_START;
	int ret = map_region(&mem->region[0], 0, low);
	if (ret)
		return ret;
	mem->nr_regions = 1;
	if (size > low) {
		ret = map_region(&mem->region[1], MEM_4G, size - low);
		if (ret) {
			guest_memory_destroy(mem);
			return ret;
		}
		mem->nr_regions = 2;
	}
	mem->ram_size = size;
	return 0;
}

void guest_memory_destroy(struct guest_memory *mem)
{
	for (int i = 0; i < mem->nr_regions; i++)
		munmap(mem->region[i].host, mem->region[i].size);
	mem->nr_regions = 0;
	mem->ram_size = 0;
	atomic_store(&mem->nr_dev, 0); /* their owners unmap them */
}

void *gm_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	for (int i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->region[i];
		/* Written to avoid overflow: gpa - r->gpa only when gpa >= r->gpa. */
		if (gpa >= r->gpa && gpa - r->gpa < r->size &&
		    len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	unsigned nd = atomic_load_explicit(&mem->nr_dev, memory_order_acquire);
	for (unsigned i = 0; i < nd; i++) {
		const struct device_mem *d = &mem->dev[i];
		if (!atomic_load_explicit(&d->mapped, memory_order_acquire))
			continue;
		uint64_t base = atomic_load_explicit(&d->gpa, memory_order_relaxed);
		if (gpa >= base && gpa - base < d->size && len <= d->size - (gpa - base))
			return d->host + (gpa - base);
	}
	return NULL;
}

int gm_add_device_mem(struct guest_memory *mem, void *host, uint64_t size)
{
	unsigned n = atomic_load(&mem->nr_dev);
	if (n >= GUEST_MEMORY_MAX_DEVICE_REGIONS)
		return -ENOSPC;
	mem->dev[n].host = host;
	mem->dev[n].size = size;
	atomic_store(&mem->dev[n].mapped, false);
	atomic_store_explicit(&mem->nr_dev, n + 1, memory_order_release);
	return (int)n;
}

void gm_map_device_mem(struct guest_memory *mem, unsigned index, uint64_t gpa, bool mapped)
{
	if (index >= atomic_load(&mem->nr_dev))
		return;
	struct device_mem *d = &mem->dev[index];
	atomic_store_explicit(&d->mapped, false, memory_order_release);
	atomic_store_explicit(&d->gpa, gpa, memory_order_relaxed);
	if (mapped)
		atomic_store_explicit(&d->mapped, true, memory_order_release);
}

int gm_read(const struct guest_memory *mem, uint64_t gpa, void *dst, uint64_t len)
{
	if (len == 0)
		return 0;
	void *p = gm_ptr(mem, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(const struct guest_memory *mem, uint64_t gpa, const void *src, uint64_t len)
{
	if (len == 0)
		return 0;
	void *p = gm_ptr(mem, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}

bool gm_is_ram(const struct guest_memory *mem, uint64_t gpa)
{
	return gm_ptr(mem, gpa, 1) != NULL;
}

uint64_t gm_low_ram_end(const struct guest_memory *mem)
{
	return mem->nr_regions ? mem->region[0].gpa + mem->region[0].size : 0;
}
