/* Guest RAM. Every guest-physical access made by the VMM (loaders, devices,
 * the soft engine's page walker) goes through these checked accessors: an
 * access is valid only when [gpa, gpa+len) lies inside one RAM region. */
#ifndef KITE_VMM_MEMORY_H
#define KITE_VMM_MEMORY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The PC layout: RAM from 0 up to the 32-bit PCI hole, the rest above 4 GiB.
 * The hole [MEM_PCI_HOLE_START, 4 GiB) holds the ECAM window, PCI BARs, the
 * IOAPIC and LAPIC pages. */
#define MEM_PCI_HOLE_START 0xC0000000ULL
#define MEM_4G             0x100000000ULL

#define GUEST_MEMORY_MAX_REGIONS 2

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *host;
};

/* Device memory: host memory a device shows at a guest-physical address
 * the guest chooses at run time (a PCI BAR: ivshmem's shared memory).
 * gm_ptr resolves it as it does RAM, so engines and devices access it in
 * place (zero copy), but it is not RAM: not in the e820 map nor in a
 * snapshot's memory file. Host pointer and size never change, only the
 * address and whether it is mapped, so a reader racing a move finds the
 * region at its old or its new place: either is valid host memory. */
#define GUEST_MEMORY_MAX_DEVICE_REGIONS 4

struct device_mem {
	_Atomic uint64_t gpa;
	_Atomic bool mapped;
	uint64_t size;
	uint8_t *host;
};

struct guest_memory {
	struct mem_region region[GUEST_MEMORY_MAX_REGIONS];
	int nr_regions;
	uint64_t ram_size; /* total bytes of RAM, all regions */
	struct device_mem dev[GUEST_MEMORY_MAX_DEVICE_REGIONS];
	_Atomic unsigned nr_dev;
};

/* Map `size` bytes of anonymous memory laid out as above. Returns 0 or a
 * negative errno (-ENOMEM when the host cannot give it). */
int guest_memory_init(struct guest_memory *mem, uint64_t size);
void guest_memory_destroy(struct guest_memory *mem);

/* Host pointer for [gpa, gpa+len), or NULL when any byte of it is not RAM
 * or the range wraps. len == 0 is treated as len == 1. */
void *gm_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* Copy to/from guest RAM; 0 or -EFAULT (nothing copied) when out of RAM. */
int gm_read(const struct guest_memory *mem, uint64_t gpa, void *dst, uint64_t len);
int gm_write(const struct guest_memory *mem, uint64_t gpa, const void *src, uint64_t len);
bool gm_is_ram(const struct guest_memory *mem, uint64_t gpa);

/* Add a device memory region (unmapped): its index, or -ENOSPC. Main
 * thread, before the vCPUs run. The caller owns host. */
int gm_add_device_mem(struct guest_memory *mem, void *host, uint64_t size);
/* Show region index at gpa (mapped) or nowhere. Any thread. */
void gm_map_device_mem(struct guest_memory *mem, unsigned index, uint64_t gpa, bool mapped);

/* The highest guest-physical address + 1 below 4 GiB that is RAM. */
uint64_t gm_low_ram_end(const struct guest_memory *mem);

#endif
