/* Helpers for the loader tests (header-only: each test file includes it). */
#ifndef KITE_TESTS_BOOT_TEST_UTIL_H
#define KITE_TESTS_BOOT_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arch/x86/boot_priv.h"
#include "arch/x86/layout.h"

struct boot_fixture {
	struct guest_memory mem;
	struct vm_config cfg;
	struct cpu_state cpu;
	char err[512];
	struct boot_ctx ctx;
};

static inline void boot_fixture_init(struct boot_fixture *f, uint64_t mem_size, const char *path,
				     const uint8_t *img, size_t size)
{
	memset(f, 0, sizeof(*f));
	cr_assert_eq(guest_memory_init(&f->mem, mem_size), 0);
	vm_config_defaults(&f->cfg);
	f->cfg.kernel_path = path;
	f->cfg.cmdline = "console=ttyS0 panic=-1";
	f->ctx = (struct boot_ctx){ .mem = &f->mem, .cfg = &f->cfg, .kernel_path = path,
				    .kernel = img, .kernel_size = size, .cpu = &f->cpu,
				    .err = f->err, .err_len = sizeof(f->err) };
}

/* Debian's kernel (scripts/fetch-kernel.sh), or NULL: the caller skips. */
static inline uint8_t *debian_kernel(size_t *size, const char **path)
{
	const char *p = getenv("KITE_TEST_KERNEL");
	if (!p || !*p)
		p = ".cache/kernel/vmlinuz";
	FILE *fp = fopen(p, "rb");
	if (!fp)
		return NULL;
	struct stat st;
	if (fstat(fileno(fp), &st) || st.st_size <= 0) {
		fclose(fp);
		return NULL;
	}
	uint8_t *buf = malloc((size_t)st.st_size);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)st.st_size, fp), (size_t)st.st_size);
	fclose(fp);
	*size = (size_t)st.st_size;
	*path = p;
	return buf;
}

#define NEED_DEBIAN_KERNEL(img, size, path)                                              \
	do {                                                                             \
		img = debian_kernel(&size, &path);                                       \
		if (!img)                                                                \
			cr_skip_test("Debian kernel not found (set KITE_TEST_KERNEL or run " \
				     "scripts/fetch-kernel.sh)");                        \
	} while (0)

/* Walks the guest's 4-level page tables from cr3; returns the physical
 * address or UINT64_MAX when unmapped. */
static inline uint64_t walk(const struct guest_memory *m, uint64_t cr3, uint64_t va)
{
	uint64_t table = cr3 & ~0xFFFULL;
	for (int level = 3; level >= 0; level--) {
		uint64_t e;
		unsigned idx = (va >> (12 + 9 * level)) & 0x1FF;
		if (gm_read(m, table + idx * 8, &e, 8) || !(e & 1))
			return UINT64_MAX;
		if (level > 0 && level < 3 && (e & 0x80)) {
			uint64_t span = 1ULL << (12 + 9 * level);
			return (e & 0x000FFFFFFFFFF000ULL & ~(span - 1)) | (va & (span - 1));
		}
		table = e & 0x000FFFFFFFFFF000ULL;
	}
	return table | (va & 0xFFF);
}

static inline void check_long_mode(const struct guest_memory *m, const struct cpu_state *s)
{
	cr_assert_eq(s->cr0 & (CR0_PE | CR0_PG | CR0_ET | CR0_NE), CR0_PE | CR0_PG | CR0_ET | CR0_NE);
	cr_assert(s->cr4 & CR4_PAE);
	cr_assert_eq(s->efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
	cr_assert_eq(s->cr3, LAYOUT_BOOT_PML4);
	cr_assert(s->seg[SEG_CS].l && !s->seg[SEG_CS].db && s->seg[SEG_CS].present);
	cr_assert_eq(s->seg[SEG_CS].selector, 0x10);
	cr_assert_eq(s->seg[SEG_DS].selector, 0x18);
	cr_assert_eq(s->seg[SEG_SS].selector, 0x18);
	cr_assert_eq(s->gpr[RSI], LAYOUT_ZERO_PAGE);
	cr_assert_eq(s->rflags, 2, "interrupts off");
	cr_assert_eq(s->gdt.base, LAYOUT_BOOT_GDT);
	uint64_t gdt[4];
	cr_assert_eq(gm_read(m, LAYOUT_BOOT_GDT, gdt, sizeof(gdt)), 0);
	cr_assert_eq(gdt[2], 0x00AF9B000000FFFFULL, "__BOOT_CS is 64-bit code");
	cr_assert_eq(gdt[3], 0x00CF93000000FFFFULL, "__BOOT_DS is flat data");
	/* identity map of the whole low 4 GiB */
	const uint64_t probes[] = { 0, 0x1000, 0x8000, 0x1000000, 0x1234567, 0xBFFFFFFF,
				    0xFEE00000, 0xFFFFFFFF };
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
		cr_assert_eq(walk(m, s->cr3, probes[i]), probes[i], "va %#lx",
			     (unsigned long)probes[i]);
	cr_assert_eq(walk(m, s->cr3, 0x100000000ULL), UINT64_MAX, "only 4 GiB mapped");
}

#endif
