#include <criterion/criterion.h>
#include <errno.h>

#include "arch/x86/e820.h"
#include "arch/x86/layout.h"

/* Checks the invariants every map must hold: sorted, non-overlapping, and
 * every byte of guest RAM is RAM in the map (and nothing else is). */
static void check_map(const struct guest_memory *m, const struct e820_entry *e, int n)
{
	uint64_t ram = 0;
	for (int i = 0; i < n; i++) {
		cr_assert_gt(e[i].size, 0, "entry %d is empty", i);
		if (i)
			cr_assert_geq(e[i].addr, e[i - 1].addr + e[i - 1].size,
				      "entry %d overlaps or is unsorted", i);
		if (e[i].type == E820_RAM) {
			ram += e[i].size;
			cr_assert_not_null(gm_ptr(m, e[i].addr, e[i].size),
					   "entry %d claims RAM that is not", i);
		}
	}
	/* RAM map = guest RAM minus the reserved EBDA..1 MiB window. */
	cr_assert_eq(ram, m->ram_size - (LAYOUT_HIGH_MEMORY - LAYOUT_EBDA_START));
}

static void expect(const struct e820_entry *e, uint64_t addr, uint64_t size, uint32_t type)
{
	cr_assert_eq(e->addr, addr, "addr %#lx != %#lx", (unsigned long)e->addr, (unsigned long)addr);
	cr_assert_eq(e->size, size, "size %#lx != %#lx", (unsigned long)e->size, (unsigned long)size);
	cr_assert_eq(e->type, type);
}

static void small_guest(uint64_t size)
{
	struct guest_memory m;
	struct e820_entry e[E820_MAX_ENTRIES];
	cr_assert_eq(guest_memory_init(&m, size), 0);
	int n = e820_build(&m, e, E820_MAX_ENTRIES);
	cr_assert_eq(n, 4);
	expect(&e[0], 0, LAYOUT_EBDA_START, E820_RAM);
	expect(&e[1], LAYOUT_EBDA_START, 0x100000 - LAYOUT_EBDA_START, E820_RESERVED);
	expect(&e[2], 0x100000, size - 0x100000, E820_RAM);
	expect(&e[3], LAYOUT_PCI_ECAM_BASE, LAYOUT_PCI_ECAM_SIZE, E820_RESERVED);
	check_map(&m, e, n);
	guest_memory_destroy(&m);
}

Test(e820, guest_16m) { small_guest(16ULL << 20); }
Test(e820, guest_256m) { small_guest(256ULL << 20); }

static void large_guest(uint64_t size)
{
	struct guest_memory m;
	struct e820_entry e[E820_MAX_ENTRIES];
	cr_assert_eq(guest_memory_init(&m, size), 0);
	int n = e820_build(&m, e, E820_MAX_ENTRIES);
	cr_assert_eq(n, 5);
	expect(&e[0], 0, LAYOUT_EBDA_START, E820_RAM);
	expect(&e[1], LAYOUT_EBDA_START, 0x100000 - LAYOUT_EBDA_START, E820_RESERVED);
	expect(&e[2], 0x100000, MEM_PCI_HOLE_START - 0x100000, E820_RAM);
	expect(&e[3], LAYOUT_PCI_ECAM_BASE, LAYOUT_PCI_ECAM_SIZE, E820_RESERVED);
	expect(&e[4], MEM_4G, size - MEM_PCI_HOLE_START, E820_RAM);
	check_map(&m, e, n);
	guest_memory_destroy(&m);
}

Test(e820, guest_4g) { large_guest(4ULL << 30); }
Test(e820, guest_6g) { large_guest(6ULL << 30); }

Test(e820, guest_exactly_3g_has_no_high_ram)
{
	struct guest_memory m;
	struct e820_entry e[E820_MAX_ENTRIES];
	cr_assert_eq(guest_memory_init(&m, MEM_PCI_HOLE_START), 0);
	int n = e820_build(&m, e, E820_MAX_ENTRIES);
	cr_assert_eq(n, 4);
	check_map(&m, e, n);
	guest_memory_destroy(&m);
}

Test(e820, too_small_output_is_an_error)
{
	struct guest_memory m;
	struct e820_entry e[3];
	cr_assert_eq(guest_memory_init(&m, 64ULL << 20), 0);
	cr_assert_eq(e820_build(&m, e, 3), -ENOSPC);
	cr_assert_eq(e820_build(&m, e, 0), -ENOSPC);
	guest_memory_destroy(&m);
}
