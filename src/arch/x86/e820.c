/* The guest's e820 memory map, derived from guest memory and layout.h so
 * that the loaders (boot_params, multiboot mmap, PVH memmap) and the
 * firmware tables all describe the same machine. */
#include "arch/x86/e820.h"

#include <errno.h>

#include "arch/x86/layout.h"

static int add(struct e820_entry *out, int max, int *n, uint64_t addr,
	       uint64_t size, uint32_t type)
{
	if (size == 0)
		return 0;
	if (*n >= max)
		return -ENOSPC;
	out[*n] = (struct e820_entry){ .addr = addr, .size = size, .type = type };
	(*n)++;
	return 0;
}

int e820_build(const struct guest_memory *mem, struct e820_entry *out, int max)
{
	uint64_t low_end = gm_low_ram_end(mem);
	int n = 0, ret = 0;
	if (max < 0)
		return -EINVAL;

	/* Conventional memory up to the EBDA (where the MP table lives). */
	uint64_t conv_end = low_end < LAYOUT_EBDA_START ? low_end : LAYOUT_EBDA_START;
	ret |= add(out, max, &n, 0, conv_end, E820_RAM);
	/* EBDA, VGA hole, option ROMs and the BIOS area, which holds the ACPI
	 * tables (0xE0000-0xFFFFF): reserved, so the guest keeps off them and
	 * still finds the RSDP there. */
	ret |= add(out, max, &n, LAYOUT_EBDA_START, LAYOUT_HIGH_MEMORY - LAYOUT_EBDA_START,
		   E820_RESERVED);
	if (low_end > LAYOUT_HIGH_MEMORY)
		ret |= add(out, max, &n, LAYOUT_HIGH_MEMORY, low_end - LAYOUT_HIGH_MEMORY, E820_RAM);
	/* The PCIe ECAM window: reserved so Linux accepts MMCONFIG from MCFG. */
	ret |= add(out, max, &n, LAYOUT_PCI_ECAM_BASE, LAYOUT_PCI_ECAM_SIZE, E820_RESERVED);
	for (int i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->region[i];
		if (r->gpa >= MEM_4G)
			ret |= add(out, max, &n, r->gpa, r->size, E820_RAM);
	}
	return ret ? -ENOSPC : n;
}
