#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "vmm/memory.h"

Test(memory, small_guest_is_one_region)
{
	struct guest_memory m;
	cr_assert_eq(guest_memory_init(&m, 64ULL << 20), 0);
	cr_assert_eq(m.nr_regions, 1);
	cr_assert_eq(gm_low_ram_end(&m), 64ULL << 20);
	cr_assert_not_null(gm_ptr(&m, 0, 64ULL << 20));
	cr_assert_null(gm_ptr(&m, 1, 64ULL << 20));
	cr_assert_null(gm_ptr(&m, 64ULL << 20, 1));
	cr_assert_not_null(gm_ptr(&m, (64ULL << 20) - 1, 1));
	cr_assert_null(gm_ptr(&m, (64ULL << 20) - 1, 2));
	guest_memory_destroy(&m);
}

Test(memory, large_guest_splits_around_the_pci_hole)
{
	struct guest_memory m;
	uint64_t size = 4ULL << 30;
	cr_assert_eq(guest_memory_init(&m, size), 0);
	cr_assert_eq(m.nr_regions, 2);
	cr_assert_eq(gm_low_ram_end(&m), MEM_PCI_HOLE_START);
	cr_assert_eq(m.region[1].gpa, MEM_4G);
	cr_assert_eq(m.region[1].size, size - MEM_PCI_HOLE_START);
	cr_assert_null(gm_ptr(&m, MEM_PCI_HOLE_START, 1), "hole is not RAM");
	cr_assert_null(gm_ptr(&m, MEM_PCI_HOLE_START - 4, 8), "access across the hole");
	cr_assert_not_null(gm_ptr(&m, MEM_4G, 4096));
	cr_assert_not_null(gm_ptr(&m, MEM_4G + m.region[1].size - 8, 8));
	cr_assert_null(gm_ptr(&m, MEM_4G + m.region[1].size - 8, 9));
	guest_memory_destroy(&m);
}

Test(memory, overflowing_ranges_rejected)
{
	struct guest_memory m;
	cr_assert_eq(guest_memory_init(&m, 16ULL << 20), 0);
	cr_assert_null(gm_ptr(&m, 0x1000, UINT64_MAX));
	cr_assert_null(gm_ptr(&m, UINT64_MAX, 2));
	cr_assert_null(gm_ptr(&m, UINT64_MAX - 0xfff, 0x2000));
	char buf[16];
	cr_assert_eq(gm_read(&m, UINT64_MAX - 7, buf, 16), -EFAULT);
	cr_assert_eq(gm_write(&m, (16ULL << 20) - 8, buf, 16), -EFAULT);
	guest_memory_destroy(&m);
}

Test(memory, read_write_roundtrip)
{
	struct guest_memory m;
	cr_assert_eq(guest_memory_init(&m, 16ULL << 20), 0);
	const char msg[] = "hello guest";
	cr_assert_eq(gm_write(&m, 0x1234, msg, sizeof(msg)), 0);
	char back[sizeof(msg)];
	cr_assert_eq(gm_read(&m, 0x1234, back, sizeof(back)), 0);
	cr_assert_str_eq(back, msg);
	cr_assert_eq(memcmp(gm_ptr(&m, 0x1234, sizeof(msg)), msg, sizeof(msg)), 0);
	guest_memory_destroy(&m);
}
