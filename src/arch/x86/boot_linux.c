/* Linux kernels: bzImage through the 64-bit boot protocol, and ELF vmlinux
 * through its PVH entry (or, without one, the 64-bit entry with
 * boot_params) — Documentation/x86/boot.rst and the Xen PVH ABI. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/boot_priv.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr8(uint8_t *p, uint8_t v) { *p = v; }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

#define MiB (1ULL << 20)

/* ---- setup header ---- */

bool bzimage_probe(const uint8_t *img, size_t size)
{
	if (size < BZ_VERSION || (size >= 4 && memcmp(img, "\177ELF", 4) == 0))
		return false;
	return rd16(img + BZ_BOOT_FLAG) == BZ_BOOT_FLAG_MAGIC ||
	       rd32(img + BZ_HEADER) == BZ_HEADER_MAGIC;
}

int bzimage_parse(const uint8_t *img, size_t size, struct bzimage_hdr *h,
		  char *why, size_t why_len)
{
	memset(h, 0, sizeof(*h));
#define FAIL(...) do { snprintf(why, why_len, __VA_ARGS__); return -ENOEXEC; } while (0)
	if (size < BZ_HEADER_MIN_END)
		FAIL("is truncated: %zu bytes, shorter than the Linux setup header", size);
	uint16_t flag = rd16(img + BZ_BOOT_FLAG);
	if (flag != BZ_BOOT_FLAG_MAGIC)
		FAIL("has a bad boot sector flag %#06x (a bzImage has 0xaa55)", flag);
	if (rd32(img + BZ_HEADER) != BZ_HEADER_MAGIC)
		FAIL("has no Linux setup header (\"HdrS\" magic missing)");
	h->version = rd16(img + BZ_VERSION);
	if (h->version < BZ_MIN_VERSION)
		FAIL("uses boot protocol %u.%02u; kite needs 2.12 or later (64-bit entry)",
		     h->version >> 8, h->version & 0xFF);
	h->xloadflags = rd16(img + BZ_XLOADFLAGS);
	if (!(h->xloadflags & XLF_KERNEL_64))
		FAIL("has no 64-bit entry point (xloadflags lacks XLF_KERNEL_64)");
	h->setup_sects = img[BZ_SETUP_SECTS] ? img[BZ_SETUP_SECTS] : 4;
	h->setup_size = ((size_t)h->setup_sects + 1) * 512;
	h->header_end = BZ_HEADER + img[BZ_JUMP + 1];
	if (h->header_end < BZ_HEADER_MIN_END)
		FAIL("has a setup header too short for protocol %u.%02u", h->version >> 8,
		     h->version & 0xFF);
	if (h->header_end > BZ_HEADER_MAX_END)
		h->header_end = BZ_HEADER_MAX_END;
	if (size <= h->setup_size)
		FAIL("is truncated: %zu bytes, but its setup code alone takes %zu", size,
		     h->setup_size);
	h->kernel_size = size - h->setup_size;
	h->syssize = rd32(img + BZ_SYSSIZE);
	if (h->syssize == 0)
		FAIL("has syssize 0 (no protected-mode kernel)");
	if ((uint64_t)h->syssize * 16 > h->kernel_size)
		FAIL("is truncated: the setup header says the kernel is %lu bytes, the file "
		     "holds %zu after the setup code", (unsigned long)h->syssize * 16,
		     h->kernel_size);
	h->loadflags = img[BZ_LOADFLAGS];
	h->initrd_addr_max = rd32(img + BZ_INITRD_ADDR_MAX);
	h->kernel_alignment = rd32(img + BZ_KERNEL_ALIGNMENT);
	h->relocatable = img[BZ_RELOCATABLE] != 0;
	h->min_alignment = img[BZ_MIN_ALIGNMENT];
	h->cmdline_size = rd32(img + BZ_CMDLINE_SIZE);
	h->payload_offset = rd32(img + BZ_PAYLOAD_OFFSET);
	h->payload_length = rd32(img + BZ_PAYLOAD_LENGTH);
	h->pref_address = rd64(img + BZ_PREF_ADDRESS);
	h->init_size = rd32(img + BZ_INIT_SIZE);
	if (!(h->loadflags & LOADED_HIGH))
		FAIL("is a zImage (loads below 1 MiB); kite loads bzImages only");
	return 0;
#undef FAIL
}

/* ---- boot_params, shared by bzImage and vmlinux ---- */

/* The fields kite fills whatever the kernel format: memory map, command
 * line, loader id, heap, RSDP and initrd. */
static int fill_boot_params(struct boot_ctx *ctx, uint8_t *bp, uint64_t initrd_addr)
{
	struct e820_entry e[E820_MAX_ENTRIES];
	int n = e820_build(ctx->mem, e, E820_MAX_ENTRIES);
	if (n < 0)
		return boot_error(ctx, n, "cannot build the memory map");
	_Static_assert(E820_MAX_ENTRIES <= BP_E820_MAX, "e820 table fits boot_params");
	_Static_assert(sizeof(struct e820_entry) == 20, "boot_params e820 entry is 20 bytes");
	wr8(bp + BP_E820_ENTRIES, (uint8_t)n);
	memcpy(bp + BP_E820_TABLE, e, n * sizeof(e[0]));

	uint64_t low_end = gm_low_ram_end(ctx->mem);
	wr32(bp + BP_ALT_MEM_K, (uint32_t)((low_end - LAYOUT_HIGH_MEMORY) >> 10));
	wr8(bp + BZ_TYPE_OF_LOADER, 0xFF); /* undefined loader id */
	wr8(bp + BZ_LOADFLAGS, bp[BZ_LOADFLAGS] | LOADED_HIGH | CAN_USE_HEAP);
	wr16(bp + BZ_HEAP_END_PTR, 0xFE00 - 0x200);
	wr32(bp + BZ_CMD_LINE_PTR, (uint32_t)LAYOUT_CMDLINE);
	wr32(bp + BP_EXT_CMD_LINE_PTR, 0);
	wr64(bp + BP_ACPI_RSDP_ADDR, LAYOUT_ACPI_START);
	if (ctx->initrd) {
		wr32(bp + BZ_RAMDISK_IMAGE, (uint32_t)initrd_addr);
		wr32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
		wr32(bp + BZ_RAMDISK_SIZE, (uint32_t)ctx->initrd_size);
		wr32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)ctx->initrd_size >> 32));
	}
	return 0;
}

/* 64-bit entry: identity map, GDT with __BOOT_CS/__BOOT_DS, RSI = zero page. */
static int enter_64(struct boot_ctx *ctx, const uint8_t *bp, uint64_t rip)
{
	if (gm_write(ctx->mem, LAYOUT_ZERO_PAGE, bp, BP_SIZE) || boot_write_page_tables(ctx->mem) ||
	    boot_write_gdt(ctx->mem, true))
		return boot_error(ctx, -EFAULT, "no guest RAM for the boot structures");
	boot_enter_long64(ctx->cpu, rip);
	ctx->cpu->gpr[RSI] = LAYOUT_ZERO_PAGE;
	return 0;
}

/* ---- bzImage ---- */

int boot_bzimage(struct boot_ctx *ctx)
{
	const uint8_t *img = ctx->kernel;
	struct bzimage_hdr h;
	char why[256];
	if (bzimage_parse(img, ctx->kernel_size, &h, why, sizeof(why)))
		return boot_error(ctx, -ENOEXEC, "kernel '%s' %s", ctx->kernel_path, why);

	uint64_t low_end = gm_low_ram_end(ctx->mem);
	uint64_t need = h.init_size > h.kernel_size ? h.init_size : h.kernel_size;
	uint64_t align = h.kernel_alignment;
	if (align == 0 || (align & (align - 1)))
		align = 2 * MiB; /* nonsense alignment: the x86-64 default */
	uint64_t pref = h.pref_address;
	uint64_t load;
	if (pref >= LAYOUT_HIGH_MEMORY && pref < low_end && need <= low_end - pref)
		load = pref;
	else if (h.relocatable)
		load = (LAYOUT_HIGH_MEMORY + align - 1) & ~(align - 1);
	else
		load = pref >= LAYOUT_HIGH_MEMORY ? pref : LAYOUT_HIGH_MEMORY;
	/* The x86-64 decompressor never runs below its link address
	 * (LOAD_PHYSICAL_ADDR, which pref_address reports), wherever it was
	 * loaded: the kernel's working area ends at max(load, pref) +
	 * init_size, and that must be RAM. */
	uint64_t run = load > pref ? load : pref;
	if (run < LAYOUT_HIGH_MEMORY)
		run = load;
	uint64_t kernel_end = run + need;
	if (run >= low_end || need > low_end - run)
		return boot_error(ctx, -ENOMEM,
				  "kernel '%s' needs guest RAM up to %lu MiB (init_size %lu "
				  "MiB from %#lx); the guest has %lu MiB below 4 GiB: give it more "
				  "--memory", ctx->kernel_path,
				  (unsigned long)((kernel_end + MiB - 1) >> 20),
				  (unsigned long)((need + MiB - 1) >> 20), (unsigned long)run,
				  (unsigned long)(low_end >> 20));

	/* The protected-mode kernel (everything after the setup code). */
	if (gm_write(ctx->mem, load, img + h.setup_size, h.kernel_size))
		return boot_error(ctx, -ENOMEM, "kernel '%s' does not fit in guest RAM",
				  ctx->kernel_path);

	/* Command line, limited by what the kernel says it accepts. */
	long len = boot_write_cmdline(ctx, (uint64_t)h.cmdline_size + 1);
	if (len < 0)
		return (int)len;

	uint64_t initrd_addr = 0;
	if (ctx->initrd) {
		uint64_t max = (uint64_t)h.initrd_addr_max + 1; /* initrd_addr_max is inclusive */
		int ret = boot_place_initrd(ctx, kernel_end, max, &initrd_addr);
		if (ret)
			return ret;
	}

	uint8_t bp[BP_SIZE] = { 0 };
	memcpy(bp + BZ_SETUP_SECTS, img + BZ_SETUP_SECTS, h.header_end - BZ_SETUP_SECTS);
	wr32(bp + BZ_CODE32_START, (uint32_t)load);
	int ret = fill_boot_params(ctx, bp, initrd_addr);
	if (ret)
		return ret;
	/* The 64-bit entry point is 0x200 past the start of the kernel. */
	return enter_64(ctx, bp, load + 0x200);
}

/* ---- ELF vmlinux ---- */

/* Linux's COMMAND_LINE_SIZE on x86: what it copies from either entry. */
#define VMLINUX_CMDLINE_MAX 2048
/* vmlinux carries no setup header to say; the modern boot protocol value. */
#define VMLINUX_INITRD_ADDR_MAX 0x7FFFFFFFULL

#define HVM_START_MAGIC 0x336EC578u
#define PVH_INFO_ADDR   LAYOUT_MULTIBOOT_INFO /* multiboot and PVH never meet */
#define PVH_MODLIST     (PVH_INFO_ADDR + 0x40)
#define PVH_MEMMAP      (PVH_INFO_ADDR + 0x80)

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info v1 layout");
struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};
struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

bool elf64_probe(const uint8_t *img, size_t size)
{
	return size >= 20 && memcmp(img, "\177ELF", 4) == 0 && img[4] == 2 /* ELFCLASS64 */ &&
	       img[5] == 1 /* little-endian */ && rd16(img + 18) == 62 /* EM_X86_64 */;
}

static int boot_pvh(struct boot_ctx *ctx, const struct boot_elf *elf, uint64_t initrd_addr)
{
	struct hvm_start_info si = { .magic = HVM_START_MAGIC, .version = 1,
				     .cmdline_paddr = LAYOUT_CMDLINE,
				     .rsdp_paddr = LAYOUT_ACPI_START,
				     .memmap_paddr = PVH_MEMMAP };
	struct e820_entry e[E820_MAX_ENTRIES];
	int n = e820_build(ctx->mem, e, E820_MAX_ENTRIES);
	if (n < 0)
		return boot_error(ctx, n, "cannot build the memory map");
	_Static_assert(PVH_MEMMAP + E820_MAX_ENTRIES * sizeof(struct hvm_memmap_entry) <=
		       PVH_INFO_ADDR + 0x1000, "PVH memmap fits its page");
	for (int i = 0; i < n; i++) {
		struct hvm_memmap_entry m = { .addr = e[i].addr, .size = e[i].size,
					      .type = e[i].type };
		if (gm_write(ctx->mem, PVH_MEMMAP + i * sizeof(m), &m, sizeof(m)))
			return boot_error(ctx, -EFAULT, "no guest RAM for the PVH start info");
	}
	si.memmap_entries = (uint32_t)n;
	if (ctx->initrd) {
		struct hvm_modlist_entry mod = { .paddr = initrd_addr, .size = ctx->initrd_size };
		if (gm_write(ctx->mem, PVH_MODLIST, &mod, sizeof(mod)))
			return boot_error(ctx, -EFAULT, "no guest RAM for the PVH start info");
		si.nr_modules = 1;
		si.modlist_paddr = PVH_MODLIST;
	}
	if (gm_write(ctx->mem, PVH_INFO_ADDR, &si, sizeof(si)) || boot_write_gdt(ctx->mem, false))
		return boot_error(ctx, -EFAULT, "no guest RAM for the PVH start info");
	if (!gm_is_ram(ctx->mem, elf->pvh_entry))
		return boot_error(ctx, -ENOEXEC, "kernel '%s': PVH entry %#x is not in guest RAM",
				  ctx->kernel_path, elf->pvh_entry);
	boot_enter_prot32(ctx->cpu, elf->pvh_entry);
	ctx->cpu->gpr[RBX] = PVH_INFO_ADDR;
	return 0;
}

int boot_elf64(struct boot_ctx *ctx)
{
	struct boot_elf elf;
	int ret = boot_load_elf(ctx, false, &elf);
	if (ret)
		return ret;
	long len = boot_write_cmdline(ctx, VMLINUX_CMDLINE_MAX);
	if (len < 0)
		return (int)len;
	uint64_t initrd_addr = 0;
	if (ctx->initrd) {
		ret = boot_place_initrd(ctx, elf.hi, VMLINUX_INITRD_ADDR_MAX + 1, &initrd_addr);
		if (ret)
			return ret;
	}
	if (elf.has_pvh)
		return boot_pvh(ctx, &elf, initrd_addr);

	/* No PVH note: the 64-bit entry with a boot_params carrying just the
	 * setup header fields a loader must set. */
	if (elf.entry >= MEM_4G || !gm_is_ram(ctx->mem, elf.entry))
		return boot_error(ctx, -ENOEXEC,
				  "kernel '%s': ELF entry point %#lx is not in identity-mapped guest "
				  "RAM", ctx->kernel_path, (unsigned long)elf.entry);
	uint8_t bp[BP_SIZE] = { 0 };
	wr16(bp + BZ_BOOT_FLAG, BZ_BOOT_FLAG_MAGIC);
	wr32(bp + BZ_HEADER, BZ_HEADER_MAGIC);
	wr16(bp + BZ_VERSION, BZ_MIN_VERSION);
	wr16(bp + BZ_VID_MODE, 0xFFFF); /* "normal" */
	wr32(bp + BZ_KERNEL_ALIGNMENT, 0x1000000);
	wr32(bp + BZ_INITRD_ADDR_MAX, (uint32_t)VMLINUX_INITRD_ADDR_MAX);
	wr32(bp + BZ_CMDLINE_SIZE, VMLINUX_CMDLINE_MAX - 1);
	ret = fill_boot_params(ctx, bp, initrd_addr);
	if (ret)
		return ret;
	return enter_64(ctx, bp, elf.entry);
}
