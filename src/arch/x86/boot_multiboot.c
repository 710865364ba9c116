/* Multiboot v1 (the GNU Multiboot Specification 0.6.96): kernels that carry
 * a header in their first 8 KiB and are entered in 32-bit protected mode
 * with paging off, EAX = 0x2BADB002 and EBX -> multiboot info. The image is
 * loaded from the header's address fields (the "a.out kludge", flag 16)
 * when present, else from the ELF program headers (ELF32, or ELF64 with a
 * 32-bit entry point). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/boot_priv.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"

#define MB_HEADER_MAGIC   0x1BADB002u
#define MB_SEARCH_LEN     8192
#define MB_PAGE_ALIGN     (1u << 0)  /* modules page aligned */
#define MB_MEMORY_INFO    (1u << 1)  /* mem_* (and mmap) required */
#define MB_VIDEO_MODE     (1u << 2)  /* video info wanted: kite has no display */
#define MB_AOUT_KLUDGE    (1u << 16) /* address fields valid */
/* Bits 0-15 are requirements: a loader must refuse one it does not know. */
#define MB_KNOWN_REQUIRED (MB_PAGE_ALIGN | MB_MEMORY_INFO | MB_VIDEO_MODE)

#define MBI_MEM        (1u << 0)
#define MBI_CMDLINE    (1u << 2)
#define MBI_MODS       (1u << 3)
#define MBI_MMAP       (1u << 6)
#define MBI_LOADER     (1u << 9)

/* Where the pieces go inside the one page at LAYOUT_MULTIBOOT_INFO. */
#define MBI_ADDR       LAYOUT_MULTIBOOT_INFO
#define MBI_MMAP_ADDR  (LAYOUT_MULTIBOOT_INFO + 0x100)
#define MBI_MODS_ADDR  (LAYOUT_MULTIBOOT_INFO + 0x300)
#define MBI_NAME_ADDR  (LAYOUT_MULTIBOOT_INFO + 0x340)
#define MBI_STR_ADDR   (LAYOUT_MULTIBOOT_INFO + 0x400)
#define MBI_END        (LAYOUT_MULTIBOOT_INFO + 0x1000)

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
	uint32_t drives_length, drives_addr, config_table, boot_loader_name, apm_table;
	uint32_t vbe[6];
} __attribute__((packed));
_Static_assert(sizeof(struct mb_info) == 96, "multiboot info layout");

struct mb_mmap {
	uint32_t size; /* of the rest of the entry: 20 */
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

struct mb_module {
	uint32_t mod_start, mod_end, string, reserved;
};

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

long multiboot_find_header(const uint8_t *img, size_t size)
{
	long bad = -1;
	size_t end = size < MB_SEARCH_LEN ? size : MB_SEARCH_LEN;
	for (size_t off = 0; off + 12 <= end; off += 4) {
		if (rd32(img + off) != MB_HEADER_MAGIC)
			continue;
		if ((uint32_t)(rd32(img + off) + rd32(img + off + 4) + rd32(img + off + 8)) == 0)
			return (long)off;
		bad = -2;
	}
	return bad;
}

/* Where the loaded image lies, for placing the module above it. */
struct mb_load {
	uint64_t lo, hi;
	uint32_t entry;
};

static int load_aout(struct boot_ctx *ctx, size_t hoff, struct mb_load *ld)
{
	const uint8_t *h = ctx->kernel + hoff;
	if (hoff + 32 > ctx->kernel_size)
		return boot_error(ctx, -ENOEXEC, "kernel '%s': multiboot header is truncated",
				  ctx->kernel_path);
	uint32_t header_addr = rd32(h + 12), load_addr = rd32(h + 16);
	uint32_t load_end = rd32(h + 20), bss_end = rd32(h + 24), entry = rd32(h + 28);
	if (load_addr > header_addr || header_addr - load_addr > hoff)
		return boot_error(ctx, -ENOEXEC,
				  "kernel '%s': multiboot load_addr %#x does not precede header_addr "
				  "%#x within the file", ctx->kernel_path, load_addr, header_addr);
	size_t foff = hoff - (header_addr - load_addr);
	uint64_t fsize;
	if (load_end == 0) {
		fsize = ctx->kernel_size - foff;
	} else {
		if (load_end < load_addr)
			return boot_error(ctx, -ENOEXEC,
					  "kernel '%s': multiboot load_end_addr %#x is below load_addr %#x",
					  ctx->kernel_path, load_end, load_addr);
		fsize = load_end - load_addr;
		if (fsize > ctx->kernel_size - foff)
			return boot_error(ctx, -ENOEXEC,
					  "kernel '%s' is truncated: multiboot header asks for %lu bytes "
					  "from file offset %zu, the file has %zu", ctx->kernel_path,
					  (unsigned long)fsize, foff, ctx->kernel_size);
	}
	uint64_t memsz = fsize;
	if (bss_end) {
		if (bss_end < load_addr + fsize)
			return boot_error(ctx, -ENOEXEC,
					  "kernel '%s': multiboot bss_end_addr %#x is below the loaded image",
					  ctx->kernel_path, bss_end);
		memsz = bss_end - load_addr;
	}
	int ret = boot_check_dest(ctx, load_addr, memsz, "multiboot image");
	if (ret)
		return ret;
	if (entry < load_addr || entry - load_addr >= memsz)
		return boot_error(ctx, -ENOEXEC,
				  "kernel '%s': multiboot entry_addr %#x is outside the loaded image",
				  ctx->kernel_path, entry);
	uint8_t *dst = gm_ptr(ctx->mem, load_addr, memsz);
	memcpy(dst, ctx->kernel + foff, fsize);
	memset(dst + fsize, 0, memsz - fsize);
	ld->lo = load_addr;
	ld->hi = load_addr + memsz;
	ld->entry = entry;
	return 0;
}

static int load_elf(struct boot_ctx *ctx, struct mb_load *ld)
{
	if (ctx->kernel_size < 4 || memcmp(ctx->kernel, "\177ELF", 4) != 0)
		return boot_error(ctx, -ENOEXEC,
				  "kernel '%s' has a multiboot header but is not ELF and has no "
				  "address fields (flag 16)", ctx->kernel_path);
	struct boot_elf elf;
	int ret = boot_load_elf(ctx, true, &elf);
	if (ret)
		return ret;
	if (elf.entry >= MEM_4G || !gm_is_ram(ctx->mem, elf.entry))
		return boot_error(ctx, -ENOEXEC,
				  "kernel '%s': ELF entry point %#lx is not in 32-bit guest RAM",
				  ctx->kernel_path, (unsigned long)elf.entry);
	ld->lo = elf.lo;
	ld->hi = elf.hi;
	ld->entry = (uint32_t)elf.entry;
	return 0;
}

int boot_multiboot(struct boot_ctx *ctx, size_t hoff)
{
	const uint8_t *h = ctx->kernel + hoff;
	uint32_t flags = rd32(h + 4);
	uint32_t unknown = flags & 0xFFFF & ~MB_KNOWN_REQUIRED;
	if (unknown)
		return boot_error(ctx, -ENOTSUP,
				  "kernel '%s': multiboot header requires features kite lacks "
				  "(flags %#x)", ctx->kernel_path, unknown);
	struct mb_load ld = { 0 };
	int ret = (flags & MB_AOUT_KLUDGE) ? load_aout(ctx, hoff, &ld) : load_elf(ctx, &ld);
	if (ret)
		return ret;

	struct mb_info info;
	memset(&info, 0, sizeof(info));
	uint64_t low_end = gm_low_ram_end(ctx->mem);
	info.flags = MBI_MEM | MBI_CMDLINE | MBI_MMAP | MBI_LOADER;
	info.mem_lower = LAYOUT_EBDA_START >> 10;
	info.mem_upper = (uint32_t)((low_end - LAYOUT_HIGH_MEMORY) >> 10);

	long len = boot_write_cmdline(ctx, LAYOUT_CMDLINE_MAX);
	if (len < 0)
		return (int)len;
	info.cmdline = LAYOUT_CMDLINE;

	struct e820_entry e[E820_MAX_ENTRIES];
	int n = e820_build(ctx->mem, e, E820_MAX_ENTRIES);
	if (n < 0)
		return boot_error(ctx, n, "cannot build the memory map");
	_Static_assert(MBI_MMAP_ADDR + E820_MAX_ENTRIES * sizeof(struct mb_mmap) <= MBI_MODS_ADDR,
		       "mmap fits");
	for (int i = 0; i < n; i++) {
		struct mb_mmap m = { .size = 20, .addr = e[i].addr, .len = e[i].size,
				     .type = e[i].type };
		if (gm_write(ctx->mem, MBI_MMAP_ADDR + i * sizeof(m), &m, sizeof(m)))
			return boot_error(ctx, -EFAULT, "no guest RAM for multiboot info");
	}
	info.mmap_addr = MBI_MMAP_ADDR;
	info.mmap_length = (uint32_t)(n * sizeof(struct mb_mmap));

	static const char name[] = "kite";
	if (gm_write(ctx->mem, MBI_NAME_ADDR, name, sizeof(name)))
		return boot_error(ctx, -EFAULT, "no guest RAM for multiboot info");
	info.boot_loader_name = MBI_NAME_ADDR;

	if (ctx->initrd_path) {
		size_t slen = strlen(ctx->initrd_path);
		if (slen + 1 > MBI_END - MBI_STR_ADDR)
			return boot_error(ctx, -ENAMETOOLONG,
					  "initrd path is too long for the multiboot module "
					  "string (%zu bytes, at most %lu)", slen,
					  (unsigned long)(MBI_END - MBI_STR_ADDR - 1));
		/* Page aligned just above the kernel (flag 0 asks for page
		 * alignment; kite always gives it). */
		uint64_t at = (ld.hi + 0xFFF) & ~0xFFFULL;
		if (at >= low_end || ctx->initrd_size > low_end - at ||
		    gm_write(ctx->mem, at, ctx->initrd, ctx->initrd_size))
			return boot_error(ctx, -ENOMEM,
					  "initrd '%s' (%zu bytes) does not fit in guest memory "
					  "above the kernel (ends at %#lx); give the guest more --memory",
					  ctx->initrd_path, ctx->initrd_size, (unsigned long)ld.hi);
		struct mb_module mod = { .mod_start = (uint32_t)at,
					 .mod_end = (uint32_t)(at + ctx->initrd_size),
					 .string = MBI_STR_ADDR };
		if (gm_write(ctx->mem, MBI_STR_ADDR, ctx->initrd_path, slen + 1) ||
		    gm_write(ctx->mem, MBI_MODS_ADDR, &mod, sizeof(mod)))
			return boot_error(ctx, -EFAULT, "no guest RAM for multiboot info");
		info.flags |= MBI_MODS;
		info.mods_count = 1;
		info.mods_addr = MBI_MODS_ADDR;
	}
	if (gm_write(ctx->mem, MBI_ADDR, &info, sizeof(info)))
		return boot_error(ctx, -EFAULT, "no guest RAM for multiboot info");

	if (boot_write_gdt(ctx->mem, false))
		return boot_error(ctx, -EFAULT, "no guest RAM for the boot GDT");
	boot_enter_prot32(ctx->cpu, ld.entry);
	ctx->cpu->gpr[RAX] = MULTIBOOT_BOOTLOADER_MAGIC;
	ctx->cpu->gpr[RBX] = MBI_ADDR;
	return 0;
}
