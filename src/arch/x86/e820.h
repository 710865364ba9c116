#ifndef KITE_ARCH_X86_E820_H
#define KITE_ARCH_X86_E820_H

#include <stdint.h>

#include "vmm/memory.h"

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3
#define E820_NVS      4

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

#define E820_MAX_ENTRIES 16

/* The guest's memory map, matching guest memory and layout.h, sorted and
 * non-overlapping. Returns the number of entries written (<= max), or a
 * negative errno when max is too small. */
int e820_build(const struct guest_memory *mem, struct e820_entry *out, int max);

#endif
