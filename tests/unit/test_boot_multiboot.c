/* Multiboot v1 loader on synthetic kernels built here. */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "arch/x86/boot_priv.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"

#define MB_MAGIC 0x1BADB002u

struct mb_fixture {
	struct guest_memory mem;
	struct vm_config cfg;
	struct cpu_state cpu;
	char err[512];
	struct boot_ctx ctx;
};

static void fixture(struct mb_fixture *f, uint64_t mem_size, const uint8_t *img, size_t size)
{
	memset(f, 0, sizeof(*f));
	cr_assert_eq(guest_memory_init(&f->mem, mem_size), 0);
	vm_config_defaults(&f->cfg);
	f->cfg.kernel_path = "test.elf";
	f->cfg.cmdline = "console=ttyS0 hello";
	f->ctx = (struct boot_ctx){ .mem = &f->mem, .cfg = &f->cfg, .kernel_path = "test.elf",
				    .kernel = img, .kernel_size = size, .cpu = &f->cpu,
				    .err = f->err, .err_len = sizeof(f->err) };
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const struct guest_memory *m, uint64_t a)
{
	uint32_t v;
	cr_assert_eq(gm_read(m, a, &v, 4), 0);
	return v;
}

static void mb_header(uint8_t *p, uint32_t flags)
{
	put32(p, MB_MAGIC);
	put32(p + 4, flags);
	put32(p + 8, -(MB_MAGIC + flags));
}

/* ELF32 with one PT_LOAD (file offset 0x100, 0x300 bytes, memsz 0x2000)
 * whose first bytes are the multiboot header. */
#define E32_SIZE 0x400
static void make_elf32(uint8_t *buf, uint32_t paddr, uint32_t vaddr, uint32_t entry)
{
	memset(buf, 0, E32_SIZE);
	Elf32_Ehdr eh = { 0 };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS32;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_386;
	eh.e_version = EV_CURRENT;
	eh.e_entry = entry;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf32_Phdr);
	eh.e_phnum = 2;
	memcpy(buf, &eh, sizeof(eh));
	Elf32_Phdr ph[2] = {
		{ .p_type = PT_LOAD, .p_offset = 0x100, .p_vaddr = vaddr, .p_paddr = paddr,
		  .p_filesz = 0x300, .p_memsz = 0x2000, .p_flags = PF_R | PF_X, .p_align = 0x1000 },
		{ .p_type = PT_NOTE, .p_offset = 0, .p_filesz = 0 },
	};
	memcpy(buf + sizeof(eh), ph, sizeof(ph));
	for (int i = 0x100; i < E32_SIZE; i++)
		buf[i] = (uint8_t)(i * 7);
	mb_header(buf + 0x100, 0x3);
}

static Elf32_Phdr *phdr0(uint8_t *buf) { return (Elf32_Phdr *)(buf + sizeof(Elf32_Ehdr)); }

static void check_prot32(const struct cpu_state *s, uint32_t eip)
{
	cr_assert_eq(s->rip, eip, "rip %#lx", (unsigned long)s->rip);
	cr_assert_eq(s->gpr[RAX], 0x2BADB002);
	cr_assert_eq(s->gpr[RBX], LAYOUT_MULTIBOOT_INFO);
	cr_assert(s->cr0 & CR0_PE);
	cr_assert(!(s->cr0 & CR0_PG));
	cr_assert_eq(s->efer, 0);
	cr_assert(!(s->rflags & RFLAGS_IF));
	cr_assert(!(s->rflags & RFLAGS_VM));
	const struct segment *cs = &s->seg[SEG_CS];
	cr_assert(cs->present && cs->s && cs->db && !cs->l);
	cr_assert_eq(cs->base, 0);
	cr_assert_eq(cs->limit, 0xFFFFFFFF);
	cr_assert(cs->type & 0x8, "CS is code");
	for (int i = SEG_ES; i <= SEG_GS; i++) {
		if (i == SEG_CS)
			continue;
		cr_assert_eq(s->seg[i].base, 0);
		cr_assert_eq(s->seg[i].limit, 0xFFFFFFFF);
		cr_assert_eq(s->seg[i].type, 0x3);
		cr_assert(s->seg[i].db && s->seg[i].present);
	}
	cr_assert_eq(s->gdt.base, LAYOUT_BOOT_GDT);
}

static void check_gdt(const struct guest_memory *m, const struct cpu_state *s)
{
	uint64_t d[8];
	cr_assert_eq(gm_read(m, LAYOUT_BOOT_GDT, d, sizeof(d)), 0);
	uint64_t cs = d[s->seg[SEG_CS].selector >> 3], ds = d[s->seg[SEG_DS].selector >> 3];
	cr_assert_eq(cs, 0x00CF9B000000FFFFULL, "flat 32-bit code descriptor, got %#lx",
		     (unsigned long)cs);
	cr_assert_eq(ds, 0x00CF93000000FFFFULL);
	cr_assert_eq(d[0], 0);
}

static void check_info(struct mb_fixture *f, bool with_module)
{
	const struct guest_memory *m = &f->mem;
	uint64_t mbi = LAYOUT_MULTIBOOT_INFO;
	uint32_t flags = get32(m, mbi);
	cr_assert(flags & (1 << 0), "mem_lower/upper");
	cr_assert(flags & (1 << 2), "cmdline");
	cr_assert(flags & (1 << 6), "mmap");
	cr_assert_eq(get32(m, mbi + 4), 639);
	cr_assert_eq(get32(m, mbi + 8), (gm_low_ram_end(m) - 0x100000) >> 10);
	/* command line */
	uint32_t cl = get32(m, mbi + 16);
	const char *s = gm_ptr(m, cl, 20);
	cr_assert_not_null(s);
	cr_assert_str_eq(s, "console=ttyS0 hello");
	/* memory map == e820 */
	struct e820_entry e[E820_MAX_ENTRIES];
	int n = e820_build(m, e, E820_MAX_ENTRIES);
	uint32_t len = get32(m, mbi + 44), addr = get32(m, mbi + 48);
	cr_assert_eq(len, (uint32_t)n * 24);
	for (int i = 0; i < n; i++) {
		uint64_t a = addr + i * 24, base, length;
		cr_assert_eq(get32(m, a), 20);
		gm_read(m, a + 4, &base, 8);
		gm_read(m, a + 12, &length, 8);
		cr_assert_eq(base, e[i].addr);
		cr_assert_eq(length, e[i].size);
		cr_assert_eq(get32(m, a + 20), e[i].type);
	}
	if (!with_module) {
		cr_assert(!(flags & (1 << 3)));
		return;
	}
	cr_assert(flags & (1 << 3), "mods");
	cr_assert_eq(get32(m, mbi + 20), 1);
	uint32_t mods = get32(m, mbi + 24);
	uint32_t start = get32(m, mods), end = get32(m, mods + 4), str = get32(m, mods + 8);
	cr_assert_eq(start & 0xFFF, 0, "module page aligned");
	cr_assert_eq(end - start, f->ctx.initrd_size);
	cr_assert_eq(memcmp(gm_ptr(m, start, end - start), f->ctx.initrd, f->ctx.initrd_size), 0);
	cr_assert_str_eq((const char *)gm_ptr(m, str, 1), f->ctx.initrd_path);
}

Test(boot_multiboot, elf32_from_program_headers)
{
	static uint8_t img[E32_SIZE];
	make_elf32(img, 0x100000, 0x100000, 0x100010);
	struct mb_fixture f;
	fixture(&f, 64ULL << 20, img, sizeof(img));
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	check_prot32(&f.cpu, 0x100010);
	check_gdt(&f.mem, &f.cpu);
	check_info(&f, false);
	/* segment bytes copied, bss zeroed */
	cr_assert_eq(memcmp(gm_ptr(&f.mem, 0x100000, 0x300), img + 0x100, 0x300), 0);
	const uint8_t *bss = gm_ptr(&f.mem, 0x100300, 0x2000 - 0x300);
	for (int i = 0; i < 0x2000 - 0x300; i++)
		cr_assert_eq(bss[i], 0);
	guest_memory_destroy(&f.mem);
}

Test(boot_multiboot, elf32_linked_high_loads_at_paddr)
{
	static uint8_t img[E32_SIZE];
	make_elf32(img, 0x200000, 0xC0200000, 0xC0200020);
	struct mb_fixture f;
	fixture(&f, 16ULL << 20, img, sizeof(img));
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	check_prot32(&f.cpu, 0x200020);
	cr_assert_eq(memcmp(gm_ptr(&f.mem, 0x200000, 0x300), img + 0x100, 0x300), 0);
	guest_memory_destroy(&f.mem);
}

Test(boot_multiboot, module_is_page_aligned_above_the_kernel)
{
	static uint8_t img[E32_SIZE];
	static uint8_t initrd[5000];
	for (size_t i = 0; i < sizeof(initrd); i++)
		initrd[i] = (uint8_t)(i ^ 0x5a);
	make_elf32(img, 0x100000, 0x100000, 0x100000);
	struct mb_fixture f;
	fixture(&f, 32ULL << 20, img, sizeof(img));
	f.ctx.initrd = initrd;
	f.ctx.initrd_size = sizeof(initrd);
	f.ctx.initrd_path = "/tmp/my initrd.cpio";
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	check_info(&f, true);
	uint32_t start = get32(&f.mem, get32(&f.mem, LAYOUT_MULTIBOOT_INFO + 24));
	cr_assert_geq(start, 0x100000 + 0x2000, "module above the kernel's bss");
	guest_memory_destroy(&f.mem);
}

/* Flat binary with the address fields: header at file offset 0x40. */
#define AOUT_SIZE 0x400
static void make_aout(uint8_t *buf, uint32_t load_end, uint32_t bss_end)
{
	memset(buf, 0, AOUT_SIZE);
	for (int i = 0; i < AOUT_SIZE; i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	uint32_t flags = 0x3 | (1u << 16);
	mb_header(buf + 0x40, flags);
	put32(buf + 0x40 + 12, 0x200040); /* header_addr */
	put32(buf + 0x40 + 16, 0x200000); /* load_addr */
	put32(buf + 0x40 + 20, load_end);
	put32(buf + 0x40 + 24, bss_end);
	put32(buf + 0x40 + 28, 0x200080); /* entry_addr */
}

Test(boot_multiboot, aout_kludge_address_fields)
{
	static uint8_t img[AOUT_SIZE];
	make_aout(img, 0x200300, 0x202000);
	struct mb_fixture f;
	fixture(&f, 16ULL << 20, img, sizeof(img));
	/* Poison what should become bss and what lies beyond load_end. */
	memset(gm_ptr(&f.mem, 0x200000, 0x3000), 0xEE, 0x3000);
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	check_prot32(&f.cpu, 0x200080);
	check_info(&f, false);
	cr_assert_eq(memcmp(gm_ptr(&f.mem, 0x200000, 0x300), img, 0x300), 0);
	const uint8_t *p = gm_ptr(&f.mem, 0x200300, 0x1D00);
	for (int i = 0; i < 0x1D00; i++)
		cr_assert_eq(p[i], 0, "bss zeroed at +%#x", i);
	cr_assert_eq(*(uint8_t *)gm_ptr(&f.mem, 0x202000, 1), 0xEE, "nothing past bss_end");
	guest_memory_destroy(&f.mem);
}

Test(boot_multiboot, aout_kludge_whole_file_when_load_end_is_zero)
{
	static uint8_t img[AOUT_SIZE];
	make_aout(img, 0, 0);
	struct mb_fixture f;
	fixture(&f, 16ULL << 20, img, sizeof(img));
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	cr_assert_eq(memcmp(gm_ptr(&f.mem, 0x200000, AOUT_SIZE), img, AOUT_SIZE), 0);
	guest_memory_destroy(&f.mem);
}

static void expect_reject(uint8_t *img, size_t size, uint64_t mem, const char *needle)
{
	struct mb_fixture f;
	fixture(&f, mem, img, size);
	int ret = x86_boot_load_image(&f.ctx);
	cr_assert_lt(ret, 0, "accepted, expected '%s'", needle);
	cr_assert(strstr(f.err, needle), "error '%s' lacks '%s'", f.err, needle);
	cr_assert(strstr(f.err, "test.elf"), "error '%s' names the file", f.err);
	guest_memory_destroy(&f.mem);
}

Test(boot_multiboot, bad_checksum)
{
	static uint8_t img[E32_SIZE];
	make_elf32(img, 0x100000, 0x100000, 0x100000);
	img[0x108] ^= 1;
	expect_reject(img, sizeof(img), 16ULL << 20, "bad checksum");
}

Test(boot_multiboot, segment_outside_ram)
{
	static uint8_t img[E32_SIZE];
	make_elf32(img, 0x100000, 0x100000, 0x100000);
	phdr0(img)->p_paddr = 0x0FFFF000; /* 16 MiB guest: ends past RAM */
	expect_reject(img, sizeof(img), 16ULL << 20, "outside guest RAM");
	phdr0(img)->p_paddr = 0xFFFFF000; /* wraps past 4 GiB */
	expect_reject(img, sizeof(img), 16ULL << 20, "outside guest RAM");
}

Test(boot_multiboot, segment_below_1m)
{
	static uint8_t img[E32_SIZE];
	make_elf32(img, 0x8000, 0x8000, 0x8000);
	expect_reject(img, sizeof(img), 16ULL << 20, "below 1 MiB");
}

Test(boot_multiboot, segment_beyond_file)
{
	static uint8_t img[E32_SIZE];
	make_elf32(img, 0x100000, 0x100000, 0x100000);
	phdr0(img)->p_filesz = 0x301;
	expect_reject(img, sizeof(img), 16ULL << 20, "truncated");
	make_elf32(img, 0x100000, 0x100000, 0x100000);
	phdr0(img)->p_offset = 0xFFFFFF00;
	expect_reject(img, sizeof(img), 16ULL << 20, "truncated");
	make_elf32(img, 0x100000, 0x100000, 0x100000);
	((Elf32_Ehdr *)img)->e_phnum = 200; /* program headers past the end */
	expect_reject(img, sizeof(img), 16ULL << 20, "truncated");
}

Test(boot_multiboot, aout_fields_beyond_file)
{
	static uint8_t img[AOUT_SIZE];
	make_aout(img, 0x200000 + AOUT_SIZE + 1, 0);
	expect_reject(img, sizeof(img), 16ULL << 20, "truncated");
	make_aout(img, 0x200300, 0x200100); /* bss_end below load_end */
	expect_reject(img, sizeof(img), 16ULL << 20, "bss_end_addr");
	make_aout(img, 0x200300, 0);
	put32(img + 0x40 + 12, 0x300000); /* header_addr - load_addr beyond file start */
	expect_reject(img, sizeof(img), 16ULL << 20, "load_addr");
	make_aout(img, 0, 0x20000000); /* bss past RAM */
	expect_reject(img, sizeof(img), 16ULL << 20, "outside guest RAM");
}

Test(boot_multiboot, unknown_required_flag)
{
	static uint8_t img[E32_SIZE];
	make_elf32(img, 0x100000, 0x100000, 0x100000);
	mb_header(img + 0x100, 0x3 | (1u << 5));
	expect_reject(img, sizeof(img), 16ULL << 20, "requires features");
}

Test(boot_multiboot, module_too_large)
{
	static uint8_t img[E32_SIZE];
	make_elf32(img, 0x100000, 0x100000, 0x100000);
	struct mb_fixture f;
	fixture(&f, 16ULL << 20, img, sizeof(img));
	static uint8_t big[16 << 20];
	f.ctx.initrd = big;
	f.ctx.initrd_size = sizeof(big);
	f.ctx.initrd_path = "big.img";
	cr_assert_lt(x86_boot_load_image(&f.ctx), 0);
	cr_assert(strstr(f.err, "big.img") && strstr(f.err, "does not fit"), "%s", f.err);
	guest_memory_destroy(&f.mem);
}

/* ELF64 carrying a multiboot header and a 32-bit entry point (how a test
 * guest built with gcc -m64 and a .code32 start looks). */
Test(boot_multiboot, elf64_with_32bit_entry)
{
	static uint8_t img[0x400];
	memset(img, 0, sizeof(img));
	Elf64_Ehdr eh = { 0 };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_entry = 0x100020;
	eh.e_phoff = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 1;
	memcpy(img, &eh, sizeof(eh));
	Elf64_Phdr ph = { .p_type = PT_LOAD, .p_offset = 0x100, .p_vaddr = 0x100000,
			  .p_paddr = 0x100000, .p_filesz = 0x300, .p_memsz = 0x300 };
	memcpy(img + sizeof(eh), &ph, sizeof(ph));
	mb_header(img + 0x100, 0x2);
	struct mb_fixture f;
	fixture(&f, 16ULL << 20, img, sizeof(img));
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	check_prot32(&f.cpu, 0x100020);
	check_info(&f, false);
	guest_memory_destroy(&f.mem);
}

Test(boot_multiboot, header_past_8k_is_not_found)
{
	static uint8_t img[0x3000];
	memset(img, 0, sizeof(img));
	mb_header(img + 0x2000, 0x3);
	cr_assert_eq(multiboot_find_header(img, sizeof(img)), -1);
	mb_header(img + 0x1FF4, 0x3); /* last slot that fits in 8 KiB */
	cr_assert_eq(multiboot_find_header(img, sizeof(img)), 0x1FF4);
	cr_assert_eq(multiboot_find_header(img, 0x1FF8), -1, "header cut by end of file");
}
