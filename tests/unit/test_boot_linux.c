/* bzImage loader on Debian's real kernel (scripts/fetch-kernel.sh), plus
 * rejection of truncated and corrupted copies of it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "arch/x86/bzimage.h"
#include "arch/x86/e820.h"
#include "boot_test_util.h"

static uint16_t g16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t g32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t g64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

Test(boot_bzimage, header_parser_on_debian_kernel)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	cr_assert(bzimage_probe(img, size));
	struct bzimage_hdr h;
	char why[256] = "";
	cr_assert_eq(bzimage_parse(img, size, &h, why, sizeof(why)), 0, "%s", why);
	cr_assert_geq(h.version, 0x020C, "protocol %#x", h.version);
	cr_assert(h.xloadflags & XLF_KERNEL_64);
	cr_assert(h.relocatable);
	cr_assert_eq(h.pref_address, 0x1000000, "x86-64 LOAD_PHYSICAL_ADDR");
	cr_assert_eq(h.kernel_alignment, 0x200000);
	cr_assert_gt(h.init_size, h.kernel_size, "init_size covers the decompressed kernel");
	cr_assert_lt(h.init_size, 256u << 20);
	cr_assert_geq(h.cmdline_size, 255);
	cr_assert_eq(h.setup_size, (size_t)(img[0x1F1] ? img[0x1F1] + 1 : 5) * 512);
	cr_assert_eq(h.setup_size + h.kernel_size, size);
	cr_assert_leq((uint64_t)h.syssize * 16, h.kernel_size);
	cr_assert_gt(h.payload_length, 0);
	cr_assert_leq((uint64_t)h.payload_offset + h.payload_length, h.kernel_size);
	cr_assert(h.header_end > BZ_INIT_SIZE && h.header_end <= BZ_HEADER_MAX_END);
	cr_assert(h.loadflags & LOADED_HIGH);
	cr_assert_geq(h.initrd_addr_max, 0x37FFFFFF);
	free(img);
}

static void full_load(uint64_t mem_size, size_t initrd_size)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	struct bzimage_hdr h;
	char why[256];
	cr_assert_eq(bzimage_parse(img, size, &h, why, sizeof(why)), 0);

	struct boot_fixture f;
	boot_fixture_init(&f, mem_size, path, img, size);
	f.cfg.cmdline = "console=ttyS0 root=/dev/vda rw quiet";
	uint8_t *initrd = NULL;
	if (initrd_size) {
		initrd = malloc(initrd_size);
		for (size_t i = 0; i < initrd_size; i++)
			initrd[i] = (uint8_t)(i * 31 + 7);
		f.ctx.initrd = initrd;
		f.ctx.initrd_size = initrd_size;
		f.ctx.initrd_path = "initrd.img";
	}
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	const struct guest_memory *m = &f.mem;

	/* kernel at its preferred address, entered 0x200 in, in long mode */
	uint64_t load = h.pref_address;
	cr_assert_eq(memcmp(gm_ptr(m, load, h.kernel_size), img + h.setup_size, h.kernel_size), 0);
	cr_assert_eq(f.cpu.rip, load + 0x200);
	check_long_mode(m, &f.cpu);

	/* boot_params */
	const uint8_t *bp = gm_ptr(m, LAYOUT_ZERO_PAGE, BP_SIZE);
	cr_assert_not_null(bp);
	cr_assert_eq(g16(bp + BZ_BOOT_FLAG), 0xAA55);
	cr_assert_eq(g32(bp + BZ_HEADER), BZ_HEADER_MAGIC);
	cr_assert_eq(g16(bp + BZ_VERSION), h.version);
	cr_assert_eq(g32(bp + BZ_INIT_SIZE), h.init_size);
	cr_assert_eq(g64(bp + BZ_PREF_ADDRESS), h.pref_address);
	cr_assert_eq(g32(bp + BZ_SYSSIZE), h.syssize);
	cr_assert_eq(bp[BZ_TYPE_OF_LOADER], 0xFF);
	cr_assert_eq(bp[BZ_LOADFLAGS] & (LOADED_HIGH | CAN_USE_HEAP), LOADED_HIGH | CAN_USE_HEAP);
	cr_assert_neq(g16(bp + BZ_HEAP_END_PTR), 0);
	cr_assert_eq(g64(bp + BP_ACPI_RSDP_ADDR), LAYOUT_ACPI_START);
	cr_assert_eq(g32(bp + BZ_CMD_LINE_PTR), LAYOUT_CMDLINE);
	cr_assert_eq(g32(bp + BP_EXT_CMD_LINE_PTR), 0);
	cr_assert_str_eq((const char *)gm_ptr(m, LAYOUT_CMDLINE, 64), f.cfg.cmdline);
	for (size_t o = h.header_end; o < 0x290; o++)
		cr_assert_eq(bp[o], 0, "nothing past the setup header at %#zx", o);

	/* e820 inside it */
	struct e820_entry e[E820_MAX_ENTRIES];
	int n = e820_build(m, e, E820_MAX_ENTRIES);
	cr_assert_eq(bp[BP_E820_ENTRIES], n);
	cr_assert_eq(memcmp(bp + BP_E820_TABLE, e, n * 20), 0);

	/* initrd: page aligned, above the kernel's working area, below
	 * initrd_addr_max and RAM, and as high as it can go */
	uint64_t rd = g32(bp + BZ_RAMDISK_IMAGE) | (uint64_t)g32(bp + BP_EXT_RAMDISK_IMAGE) << 32;
	uint64_t rs = g32(bp + BZ_RAMDISK_SIZE) | (uint64_t)g32(bp + BP_EXT_RAMDISK_SIZE) << 32;
	if (initrd_size) {
		uint64_t limit = gm_low_ram_end(m);
		if ((uint64_t)h.initrd_addr_max + 1 < limit)
			limit = (uint64_t)h.initrd_addr_max + 1;
		cr_assert_eq(rs, initrd_size);
		cr_assert_eq(rd & 0xFFF, 0);
		cr_assert_geq(rd, h.pref_address + h.init_size);
		cr_assert_leq(rd + rs, limit);
		cr_assert_gt(rd + 0x1000 + rs, limit, "placed as high as possible");
		cr_assert_eq(memcmp(gm_ptr(m, rd, rs), initrd, rs), 0);
	} else {
		cr_assert_eq(rd, 0);
		cr_assert_eq(rs, 0);
	}
	guest_memory_destroy(&f.mem);
	free(initrd);
	free(img);
}

Test(boot_bzimage, full_load_256m_with_initrd) { full_load(256ULL << 20, (3 << 20) + 123); }
Test(boot_bzimage, full_load_128m_no_initrd) { full_load(128ULL << 20, 0); }
Test(boot_bzimage, full_load_4g_initrd_below_the_hole) { full_load(4ULL << 30, 4096); }

static void expect_reject(const uint8_t *img, size_t size, uint64_t mem, const char *needle)
{
	struct boot_fixture f;
	boot_fixture_init(&f, mem, "bzImage-test", img, size);
	int ret = x86_boot_load_image(&f.ctx);
	cr_assert_lt(ret, 0, "image of %zu bytes accepted; expected '%s'", size, needle);
	cr_assert(strstr(f.err, needle), "error '%s' lacks '%s'", f.err, needle);
	cr_assert(strstr(f.err, "'bzImage-test'"), "error '%s' names the file", f.err);
	guest_memory_destroy(&f.mem);
}

Test(boot_bzimage, truncated_images)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	struct bzimage_hdr h;
	char why[256];
	cr_assert_eq(bzimage_parse(img, size, &h, why, sizeof(why)), 0);
	expect_reject(img, 0x100, 256ULL << 20, "is not a kernel kite can load");
	expect_reject(img, 0x210, 256ULL << 20, "truncated");
	expect_reject(img, 0x263, 256ULL << 20, "truncated");
	expect_reject(img, h.setup_size - 1, 256ULL << 20, "truncated");
	expect_reject(img, h.setup_size, 256ULL << 20, "truncated");
	expect_reject(img, h.setup_size + 4096, 256ULL << 20, "truncated");
	expect_reject(img, size / 2, 256ULL << 20, "truncated");
	expect_reject(img, size - 16, 256ULL << 20, "truncated");
	free(img);
}

Test(boot_bzimage, corrupted_images)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	uint8_t *c = malloc(size);
	const uint64_t mem = 256ULL << 20;

	memcpy(c, img, size);
	c[BZ_BOOT_FLAG] = 0x00;
	expect_reject(c, size, mem, "bad boot sector flag");

	memcpy(c, img, size);
	memcpy(c + BZ_HEADER, "HdrX", 4);
	expect_reject(c, size, mem, "HdrS");

	memcpy(c, img, size);
	c[BZ_BOOT_FLAG] = 0;
	memcpy(c + BZ_HEADER, "XXXX", 4);
	expect_reject(c, size, mem, "is not a kernel kite can load (accepted: Linux bzImage, "
				    "ELF vmlinux, multiboot v1 ELF)");

	memcpy(c, img, size);
	c[BZ_VERSION] = 0x0A; /* 2.10 */
	expect_reject(c, size, mem, "boot protocol 2.10");

	memcpy(c, img, size);
	c[BZ_XLOADFLAGS] &= ~XLF_KERNEL_64;
	expect_reject(c, size, mem, "64-bit entry");

	memcpy(c, img, size);
	uint32_t sys = g32(img + BZ_SYSSIZE) + 1;
	memcpy(c + BZ_SYSSIZE, &sys, 4);
	expect_reject(c, size, mem, "truncated");

	memcpy(c, img, size);
	sys = 0xFFFFFFFF;
	memcpy(c + BZ_SYSSIZE, &sys, 4);
	expect_reject(c, size, mem, "truncated");

	memcpy(c, img, size);
	c[BZ_LOADFLAGS] &= ~LOADED_HIGH;
	expect_reject(c, size, mem, "zImage");

	/* an absurd init_size cannot fit */
	memcpy(c, img, size);
	uint32_t big = 0xF0000000;
	memcpy(c + BZ_INIT_SIZE, &big, 4);
	expect_reject(c, size, mem, "more --memory");
	free(c);
	free(img);
}

Test(boot_bzimage, too_little_memory)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	expect_reject(img, size, 16ULL << 20, "more --memory");
	expect_reject(img, size, 64ULL << 20, "more --memory");
	free(img);
}

Test(boot_bzimage, initrd_too_large)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	struct boot_fixture f;
	boot_fixture_init(&f, 128ULL << 20, path, img, size);
	size_t rs = 64 << 20;
	uint8_t *initrd = calloc(1, rs);
	f.ctx.initrd = initrd;
	f.ctx.initrd_size = rs;
	f.ctx.initrd_path = "huge.cpio";
	cr_assert_lt(x86_boot_load_image(&f.ctx), 0);
	cr_assert(strstr(f.err, "'huge.cpio'") && strstr(f.err, "does not fit"), "%s", f.err);
	guest_memory_destroy(&f.mem);
	free(initrd);
	free(img);
}

Test(boot_bzimage, cmdline_limited_by_cmdline_size)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	uint32_t max = g32(img + BZ_CMDLINE_SIZE);
	char *cl = malloc(max + 2);
	memset(cl, 'a', max + 1);
	cl[max + 1] = 0;
	struct boot_fixture f;
	boot_fixture_init(&f, 256ULL << 20, path, img, size);
	f.cfg.cmdline = cl;
	cr_assert_lt(x86_boot_load_image(&f.ctx), 0);
	cr_assert(strstr(f.err, "command line"), "%s", f.err);
	guest_memory_destroy(&f.mem);

	cl[max] = 0; /* exactly cmdline_size bytes: accepted */
	boot_fixture_init(&f, 256ULL << 20, path, img, size);
	f.cfg.cmdline = cl;
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	cr_assert_eq(strlen(gm_ptr(&f.mem, LAYOUT_CMDLINE, max + 1)), max);
	guest_memory_destroy(&f.mem);
	free(cl);
	free(img);
}

/* x86_boot_load itself: file errors name the file. */
static void load_file_expect(const char *kernel, const char *initrd, uint64_t mem,
			     const char *needle)
{
	struct guest_memory m;
	struct vm_config cfg;
	struct cpu_state s;
	char err[512] = "";
	cr_assert_eq(guest_memory_init(&m, mem), 0);
	vm_config_defaults(&cfg);
	cfg.kernel_path = kernel;
	cfg.initrd_path = initrd;
	cfg.cmdline = "";
	int ret = x86_boot_load(&m, &cfg, &s, err, sizeof(err));
	if (needle) {
		cr_assert_lt(ret, 0);
		cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
		cr_assert(strncmp(err, "kite:", 5) != 0, "no prefix: kite_err adds it");
		cr_assert_null(strchr(err, '\n'), "one line");
	} else {
		cr_assert_eq(ret, 0, "%s", err);
	}
	guest_memory_destroy(&m);
}

Test(boot_files, errors_name_the_file)
{
	char dir[] = "/tmp/kite-boot-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char empty[64], text[64], big[64];
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	snprintf(text, sizeof(text), "%s/text", dir);
	snprintf(big, sizeof(big), "%s/big", dir);
	close(open(empty, O_CREAT | O_WRONLY, 0644));
	int fd = open(text, O_CREAT | O_WRONLY, 0644);
	cr_assert_eq(write(fd, "hello, I am not a kernel\n", 25), 25);
	close(fd);
	fd = open(big, O_CREAT | O_WRONLY, 0644);
	cr_assert_eq(ftruncate(fd, (16 << 20) + 1), 0);
	close(fd);

	load_file_expect("/nonexistent/vmlinuz", NULL, 16 << 20,
			 "cannot open kernel '/nonexistent/vmlinuz'");
	load_file_expect(empty, NULL, 16 << 20, "is empty");
	load_file_expect(dir, NULL, 16 << 20, "not a regular file");
	load_file_expect(big, NULL, 16 << 20, "too large for guest memory");
	char want[256];
	/* vm.c prints the buffer through kite_err, which adds "kite: " */
	snprintf(want, sizeof(want), "'%s' is not a kernel kite can load (accepted: Linux "
		 "bzImage, ELF vmlinux, multiboot v1 ELF)", text);
	load_file_expect(text, NULL, 16 << 20, want);
	load_file_expect(text, "/nonexistent/initrd", 16 << 20,
			 "cannot open initrd '/nonexistent/initrd'");
	load_file_expect(text, empty, 16 << 20, "initrd '");
	unlink(empty);
	unlink(text);
	unlink(big);
	rmdir(dir);
}

Test(boot_files, debian_kernel_from_file)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	free(img);
	load_file_expect(path, NULL, 256ULL << 20, NULL);
	load_file_expect(path, path, 256ULL << 20, NULL); /* any file is an initrd */
}
