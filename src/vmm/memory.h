/* Guest RAM. Every guest-physical access made by the VMM (loaders, devices,
 * the soft engine's page walker) goes through these checked accessors: an
 * access is valid only when [gpa, gpa+len) lies inside one RAM region. */
#ifndef KITE_VMM_MEMORY_H
#define KITE_VMM_MEMORY_H

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

struct guest_memory {
	struct mem_region region[GUEST_MEMORY_MAX_REGIONS];
	int nr_regions;
	uint64_t ram_size; /* total bytes of RAM, all regions */
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

/* The highest guest-physical address + 1 below 4 GiB that is RAM. */
uint64_t gm_low_ram_end(const struct guest_memory *mem);

#endif
