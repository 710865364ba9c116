/* Kernel loading: reading the files, recognising the format, and the pieces
 * every entry path shares (reset state, boot GDT, identity page tables,
 * command line, initrd placement). The formats live in boot_linux.c
 * (bzImage, ELF vmlinux) and boot_multiboot.c. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/boot_priv.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/layout.h"

int boot_error(struct boot_ctx *ctx, int ret, const char *fmt, ...)
{
	if (ctx->err && ctx->err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ctx->err, ctx->err_len, fmt, ap);
		va_end(ap);
	}
	return ret;
}

/* ---- reset state (Intel SDM vol. 3, 9.1.1, table 9-1) ---- */

static void seg_set(struct segment *sg, uint16_t sel, uint64_t base, uint32_t limit,
		    uint8_t type, uint8_t s)
{
	*sg = (struct segment){ .selector = sel, .base = base, .limit = limit,
				.type = type, .s = s, .present = 1 };
}

void x86_reset_state(struct cpu_state *s, unsigned apic_id)
{
	memset(s, 0, sizeof(*s));
	s->rip = 0xFFF0;
	s->rflags = RFLAGS_FIXED;
	/* Execute/read, accessed code; its base makes the first fetch hit
	 * 0xFFFFFFF0 even though the selector says F000. */
	seg_set(&s->seg[SEG_CS], 0xF000, 0xFFFF0000, 0xFFFF, 0xB, 1);
	for (int i = 0; i < SEG_COUNT; i++) {
		if (i == SEG_CS || i == SEG_LDTR || i == SEG_TR)
			continue;
		seg_set(&s->seg[i], 0, 0, 0xFFFF, 0x3, 1); /* read/write, accessed */
	}
	/* The SDM says only "present, R/W" for LDTR and TR; virtualisation
	 * needs real system types: LDT (2) and busy 32-bit TSS (11), as KVM
	 * itself uses on reset. */
	seg_set(&s->seg[SEG_LDTR], 0, 0, 0xFFFF, 0x2, 0);
	seg_set(&s->seg[SEG_TR], 0, 0, 0xFFFF, 0xB, 0);
	s->gdt = (struct dtable){ .base = 0, .limit = 0xFFFF };
	s->idt = (struct dtable){ .base = 0, .limit = 0xFFFF };
	s->cr0 = CR0_CD | CR0_NW | CR0_ET; /* 0x60000010 */
	s->gpr[RDX] = KITE_CPU_SIGNATURE;
	s->dr[6] = 0xFFFF0FF0;
	s->dr[7] = 0x400;
	s->xcr0 = 1; /* x87 state is always enabled */
	s->msr.pat = 0x0007040600070406ULL;
	/* Global enable (bit 11), BSP flag (bit 8) on the bootstrap processor. */
	s->msr.apic_base = LAYOUT_LAPIC_BASE | (1u << 11) | (apic_id == 0 ? (1u << 8) : 0);
	s->fx.fcw = 0x37F;
	s->fx.mxcsr = 0x1F80;
}

/* ---- entry states ---- */

static void flat(struct segment *sg, uint16_t sel, uint8_t type)
{
	*sg = (struct segment){ .selector = sel, .base = 0, .limit = 0xFFFFFFFF, .type = type,
				.s = 1, .present = 1, .db = 1, .g = 1 };
}

static void boot_common(struct cpu_state *s)
{
	flat(&s->seg[SEG_CS], BOOT_SEL_CODE, 0xB);
	for (int i = SEG_ES; i <= SEG_GS; i++)
		if (i != SEG_CS)
			flat(&s->seg[i], BOOT_SEL_DATA, 0x3);
	s->seg[SEG_TR] = (struct segment){ .selector = BOOT_SEL_TSS, .limit = 0x67, .type = 0xB,
					   .present = 1 };
	s->seg[SEG_LDTR] = (struct segment){ .type = 0x2, .present = 1, .unusable = 1 };
	s->gdt = (struct dtable){ .base = LAYOUT_BOOT_GDT, .limit = 6 * 8 - 1 };
	s->idt = (struct dtable){ .base = 0, .limit = 0 };
	s->rflags = RFLAGS_FIXED; /* interrupts off */
}

void boot_enter_prot32(struct cpu_state *s, uint32_t eip)
{
	boot_common(s);
	s->cr0 = CR0_PE | CR0_ET;
	s->cr3 = 0;
	s->cr4 = 0;
	s->efer = 0;
	s->rip = eip;
}

void boot_enter_long64(struct cpu_state *s, uint64_t rip)
{
	boot_common(s);
	s->seg[SEG_CS].l = 1;
	s->seg[SEG_CS].db = 0; /* L=1 requires D=0 */
	s->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
	s->cr3 = LAYOUT_BOOT_PML4;
	s->cr4 = CR4_PAE;
	s->efer = EFER_LME | EFER_LMA;
	s->rip = rip;
}

/* ---- boot GDT and page tables ---- */

static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint16_t flags)
{
	/* flags: bits 0-7 access byte, bits 12-15 G/DB/L/AVL nibble. */
	return ((uint64_t)(base & 0xFF000000) << 32) | ((uint64_t)(flags & 0xF0FF) << 40) |
	       ((uint64_t)(limit & 0xF0000) << 32) | ((uint64_t)(base & 0xFFFFFF) << 16) |
	       (limit & 0xFFFF);
}

int boot_write_gdt(struct guest_memory *mem, bool long_mode)
{
	uint64_t gdt[6] = {
		0,
		gdt_entry(0, 0xFFFFF, 0xC09B),                      /* 0x08 32-bit code */
		gdt_entry(0, 0xFFFFF, long_mode ? 0xA09B : 0xC09B), /* 0x10 boot code */
		gdt_entry(0, 0xFFFFF, 0xC093),                      /* 0x18 data */
		gdt_entry(0, 0x67, 0x008B),                         /* 0x20 TSS (busy) */
		0,                                                  /* upper half in long mode */
	};
	return gm_write(mem, LAYOUT_BOOT_GDT, gdt, sizeof(gdt));
}

int boot_write_page_tables(struct guest_memory *mem)
{
	/* PML4 at +0, PDPT at +0x1000, four page directories after it: 2 MiB
	 * pages mapping [0, 4 GiB) onto itself (what the 64-bit entry of the
	 * Linux boot protocol requires of the loaded kernel and boot data). */
	const uint64_t pml4 = LAYOUT_BOOT_PML4, pdpt = pml4 + 0x1000, pd = pml4 + 0x2000;
	_Static_assert(LAYOUT_BOOT_PML4 + 0x6000 <= LAYOUT_BOOT_PT_END, "page tables fit");
	uint64_t *p = gm_ptr(mem, pml4, 0x6000);
	if (!p)
		return -EFAULT;
	memset(p, 0, 0x6000);
	p[0] = pdpt | 0x3; /* present, writable */
	for (int i = 0; i < 4; i++)
		p[512 + i] = (pd + 0x1000 * i) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		p[1024 + i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
	return 0;
}

/* ---- command line and initrd ---- */

long boot_write_cmdline(struct boot_ctx *ctx, uint64_t max_len)
{
	const char *c = ctx->cfg->cmdline ? ctx->cfg->cmdline : "";
	size_t len = strlen(c);
	if (max_len > LAYOUT_CMDLINE_MAX)
		max_len = LAYOUT_CMDLINE_MAX;
	if (len + 1 > max_len)
		return boot_error(ctx, -E2BIG,
				  "the command line is %zu bytes; '%s' accepts at most %lu",
				  len, ctx->kernel_path, (unsigned long)(max_len ? max_len - 1 : 0));
	if (gm_write(ctx->mem, LAYOUT_CMDLINE, c, len + 1))
		return boot_error(ctx, -EFAULT, "no guest RAM for the command line");
	return (long)len;
}

int boot_place_initrd(struct boot_ctx *ctx, uint64_t lo, uint64_t hi, uint64_t *addr)
{
	uint64_t size = ctx->initrd_size;
	uint64_t low_end = gm_low_ram_end(ctx->mem);
	if (hi > low_end)
		hi = low_end;
	lo = (lo + 0xFFF) & ~0xFFFULL;
	if (size == 0 || hi < lo || hi - lo < size)
		return boot_error(ctx, -ENOMEM,
				  "initrd '%s' (%zu bytes) does not fit in guest memory "
				  "between the kernel and %#lx; give the guest more --memory",
				  ctx->initrd_path, ctx->initrd_size, (unsigned long)hi);
	uint64_t a = (hi - size) & ~0xFFFULL;
	if (gm_write(ctx->mem, a, ctx->initrd, size))
		return boot_error(ctx, -EFAULT, "initrd '%s' does not fit in guest RAM",
				  ctx->initrd_path);
	*addr = a;
	return 0;
}

/* ---- ELF executables ---- */

int boot_check_dest(struct boot_ctx *ctx, uint64_t addr, uint64_t len, const char *what)
{
	if (len == 0)
		return 0;
	if (addr < LAYOUT_HIGH_MEMORY)
		return boot_error(ctx, -EINVAL,
				  "kernel '%s': %s at %#lx is below 1 MiB, where kite keeps its boot "
				  "data", ctx->kernel_path, what, (unsigned long)addr);
	if (addr + len < addr || addr + len > MEM_4G || !gm_ptr(ctx->mem, addr, len))
		return boot_error(ctx, -ENOMEM,
				  "kernel '%s': %s [%#lx, +%#lx) is outside guest RAM (%lu MiB)",
				  ctx->kernel_path, what, (unsigned long)addr, (unsigned long)len,
				  (unsigned long)(ctx->mem->ram_size >> 20));
	return 0;
}

/* One program header, whichever ELF class it came from. */
struct seg {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz;
};

static int load_seg(struct boot_ctx *ctx, const struct seg *s, unsigned idx, struct boot_elf *out)
{
	char what[48];
	snprintf(what, sizeof(what), "ELF segment %u", idx);
	if (s->filesz > s->memsz)
		return boot_error(ctx, -ENOEXEC, "kernel '%s': %s has file size above memory size",
				  ctx->kernel_path, what);
	if (s->offset > ctx->kernel_size || s->filesz > ctx->kernel_size - s->offset)
		return boot_error(ctx, -ENOEXEC,
				  "kernel '%s' is truncated: %s needs file bytes [%#lx, +%#lx), "
				  "the file has %zu", ctx->kernel_path, what, (unsigned long)s->offset,
				  (unsigned long)s->filesz, ctx->kernel_size);
	int ret = boot_check_dest(ctx, s->paddr, s->memsz, what);
	if (ret)
		return ret;
	if (s->memsz == 0)
		return 0;
	uint8_t *dst = gm_ptr(ctx->mem, s->paddr, s->memsz);
	memcpy(dst, ctx->kernel + s->offset, s->filesz);
	memset(dst + s->filesz, 0, s->memsz - s->filesz);
	if (s->paddr < out->lo)
		out->lo = s->paddr;
	if (s->paddr + s->memsz > out->hi)
		out->hi = s->paddr + s->memsz;
	return 0;
}

/* Looks for the PVH entry note (name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY)
 * in one PT_NOTE segment; notes are 4-byte aligned records. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
static void scan_notes(struct boot_ctx *ctx, const struct seg *s, struct boot_elf *out)
{
	if (s->offset > ctx->kernel_size || s->filesz > ctx->kernel_size - s->offset)
		return;
	const uint8_t *p = ctx->kernel + s->offset;
	uint64_t left = s->filesz;
	while (left >= 12) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, p, 4);
		memcpy(&descsz, p + 4, 4);
		memcpy(&type, p + 8, 4);
		uint64_t name_len = ((uint64_t)namesz + 3) & ~3ULL;
		uint64_t desc_len = ((uint64_t)descsz + 3) & ~3ULL;
		if (name_len > left - 12 || desc_len > left - 12 - name_len)
			return;
		const uint8_t *name = p + 12, *desc = name + name_len;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && memcmp(name, "Xen", 4) == 0 &&
		    (descsz == 4 || descsz == 8)) {
			uint64_t v = 0;
			memcpy(&v, desc, descsz); /* little-endian: low half first */
			if (v < MEM_4G) {
				out->has_pvh = true;
				out->pvh_entry = (uint32_t)v;
			}
			return;
		}
		p += 12 + name_len + desc_len;
		left -= 12 + name_len + desc_len;
	}
}

int boot_load_elf(struct boot_ctx *ctx, bool allow32, struct boot_elf *out)
{
	const uint8_t *k = ctx->kernel;
	size_t size = ctx->kernel_size;
	memset(out, 0, sizeof(*out));
	if (size < EI_NIDENT || memcmp(k, ELFMAG, SELFMAG) != 0)
		return boot_error(ctx, -ENOEXEC, "kernel '%s' is not an ELF file", ctx->kernel_path);
	out->is64 = k[EI_CLASS] == ELFCLASS64;
	if ((!out->is64 && !(allow32 && k[EI_CLASS] == ELFCLASS32)) || k[EI_DATA] != ELFDATA2LSB)
		return boot_error(ctx, -ENOEXEC, "kernel '%s': unsupported ELF class or byte order",
				  ctx->kernel_path);
	uint64_t phoff, entry;
	unsigned phnum, phentsize, machine, type;
	if (out->is64) {
		Elf64_Ehdr eh;
		if (size < sizeof(eh))
			goto trunc;
		memcpy(&eh, k, sizeof(eh));
		phoff = eh.e_phoff; phnum = eh.e_phnum; phentsize = eh.e_phentsize;
		entry = eh.e_entry; machine = eh.e_machine; type = eh.e_type;
		if (phentsize != sizeof(Elf64_Phdr) || machine != EM_X86_64)
			goto bad;
	} else {
		Elf32_Ehdr eh;
		if (size < sizeof(eh))
			goto trunc;
		memcpy(&eh, k, sizeof(eh));
		phoff = eh.e_phoff; phnum = eh.e_phnum; phentsize = eh.e_phentsize;
		entry = eh.e_entry; machine = eh.e_machine; type = eh.e_type;
		if (phentsize != sizeof(Elf32_Phdr) || machine != EM_386)
			goto bad;
	}
	if (type != ET_EXEC)
		goto bad;
	if (phnum == 0 || phoff > size || (uint64_t)phnum * phentsize > size - phoff)
		goto trunc;

	unsigned loaded = 0;
	bool entry_set = false;
	out->lo = UINT64_MAX;
	for (unsigned i = 0; i < phnum; i++) {
		struct seg s;
		const uint8_t *p = k + phoff + (uint64_t)i * phentsize;
		if (out->is64) {
			Elf64_Phdr ph;
			memcpy(&ph, p, sizeof(ph));
			s = (struct seg){ ph.p_type, ph.p_offset, ph.p_vaddr, ph.p_paddr, ph.p_filesz,
					  ph.p_memsz };
		} else {
			Elf32_Phdr ph;
			memcpy(&ph, p, sizeof(ph));
			s = (struct seg){ ph.p_type, ph.p_offset, ph.p_vaddr, ph.p_paddr, ph.p_filesz,
					  ph.p_memsz };
		}
		if (s.type == PT_NOTE && !out->has_pvh)
			scan_notes(ctx, &s, out);
		if (s.type != PT_LOAD)
			continue;
		int ret = load_seg(ctx, &s, i, out);
		if (ret)
			return ret;
		loaded++;
		/* A kernel linked high but loaded low (vaddr != paddr) gets
		 * its entry translated, as GRUB does for multiboot. */
		if (!entry_set && entry >= s.vaddr && entry - s.vaddr < s.memsz) {
			entry = entry - s.vaddr + s.paddr;
			entry_set = true;
		}
	}
	if (!loaded)
		return boot_error(ctx, -ENOEXEC, "kernel '%s': ELF file has no loadable segment",
				  ctx->kernel_path);
	out->entry = entry;
	return 0;
trunc:
	return boot_error(ctx, -ENOEXEC, "kernel '%s' is truncated (ELF headers cut short)",
			  ctx->kernel_path);
bad:
	return boot_error(ctx, -ENOEXEC,
			  "kernel '%s': ELF kernel must be an x86 executable (ET_EXEC, %s)",
			  ctx->kernel_path, allow32 ? "i386 or x86-64" : "x86-64");
}

/* ---- format detection and file reading ---- */

int x86_boot_load_image(struct boot_ctx *ctx)
{
	x86_reset_state(ctx->cpu, 0);
	if (bzimage_probe(ctx->kernel, ctx->kernel_size))
		return boot_bzimage(ctx);
	long mb = multiboot_find_header(ctx->kernel, ctx->kernel_size);
	if (mb >= 0)
		return boot_multiboot(ctx, (size_t)mb);
	if (elf64_probe(ctx->kernel, ctx->kernel_size))
		return boot_elf64(ctx);
	if (mb == -2)
		return boot_error(ctx, -ENOEXEC,
				  "kernel '%s': multiboot header has a bad checksum", ctx->kernel_path);
	return boot_error(ctx, -ENOEXEC,
			  "'%s' is not a kernel kite can load (accepted: Linux bzImage, "
			  "ELF vmlinux, multiboot v1 ELF)", ctx->kernel_path);
}

/* Reads a whole file; what == "kernel" or "initrd" for the messages. */
static int read_file(struct boot_ctx *ctx, const char *path, const char *what,
		     uint64_t limit, uint8_t **out, size_t *out_size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return boot_error(ctx, -e, "cannot open %s '%s': %s", what, path, strerror(e));
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return boot_error(ctx, -EINVAL, "%s '%s' is not a regular file", what, path);
	}
	if (st.st_size == 0) {
		close(fd);
		return boot_error(ctx, -ENOEXEC, "%s '%s' is empty", what, path);
	}
	if ((uint64_t)st.st_size > limit) {
		close(fd);
		return boot_error(ctx, -EFBIG,
				  "%s '%s' (%lld bytes) is too large for guest memory (%llu MiB)",
				  what, path, (long long)st.st_size,
				  (unsigned long long)(ctx->mem->ram_size >> 20));
	}
	size_t size = (size_t)st.st_size;
	uint8_t *buf = malloc(size);
	if (!buf) {
		close(fd);
		return boot_error(ctx, -ENOMEM, "no host memory to read %s '%s'", what, path);
	}
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			free(buf);
			close(fd);
			return boot_error(ctx, -e, "cannot read %s '%s': %s", what, path,
					  n < 0 ? strerror(e) : "file shrank while reading");
		}
		got += (size_t)n;
	}
	close(fd);
	*out = buf;
	*out_size = size;
	return 0;
}

int x86_boot_load(struct guest_memory *mem, const struct vm_config *cfg,
		  struct cpu_state *bsp, char *err, size_t err_len)
{
	struct boot_ctx ctx = { .mem = mem, .cfg = cfg, .kernel_path = cfg->kernel_path,
				.initrd_path = cfg->initrd_path, .cpu = bsp, .err = err,
				.err_len = err_len };
	uint8_t *kernel = NULL, *initrd = NULL;
	if (err && err_len)
		err[0] = '\0';
	int ret = read_file(&ctx, cfg->kernel_path, "kernel", mem->ram_size, &kernel,
			    &ctx.kernel_size);
	if (ret)
		return ret;
	ctx.kernel = kernel;
	if (cfg->initrd_path) {
		ret = read_file(&ctx, cfg->initrd_path, "initrd", mem->ram_size, &initrd,
				&ctx.initrd_size);
		if (ret)
			goto out;
		ctx.initrd = initrd;
	}
	ret = x86_boot_load_image(&ctx);
out:
	free(kernel);
	free(initrd);
	return ret;
}
