/* ELF vmlinux loader: Debian's vmlinux (decompressed from its bzImage here)
 * through the PVH entry, and small synthetic ELF64 kernels. */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <unistd.h>

#include "arch/x86/bzimage.h"
#include "arch/x86/e820.h"
#include "boot_test_util.h"

/* Decompresses the bzImage's payload (XZ on Debian 12) with xz(1). */
static uint8_t *extract_vmlinux(const uint8_t *img, size_t size, size_t *out_size)
{
	struct bzimage_hdr h;
	char why[256];
	cr_assert_eq(bzimage_parse(img, size, &h, why, sizeof(why)), 0, "%s", why);
	const uint8_t *payload = img + h.setup_size + h.payload_offset;
	cr_assert_leq((uint64_t)h.payload_offset + h.payload_length, h.kernel_size);
	if (h.payload_length < 6 || memcmp(payload, "\xFD" "7zXZ", 5) != 0)
		cr_skip_test("kernel payload is not XZ-compressed (test extracts XZ only)");
	if (system("command -v xz >/dev/null 2>&1") != 0)
		cr_skip_test("xz not installed (scripts/install-deps.sh installs xz-utils)");
	char tmp[] = "/tmp/kite-payload-XXXXXX";
	int fd = mkstemp(tmp);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, payload, h.payload_length), (ssize_t)h.payload_length);
	close(fd);
	char cmd[128];
	/* The payload ends with the kernel's 4-byte size trailer: one stream only. */
	snprintf(cmd, sizeof(cmd), "xz -dc --single-stream < %s", tmp);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t cap = 128 << 20, len = 0;
	uint8_t *buf = malloc(cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, p)) > 0) {
		len += n;
		if (len == cap)
			buf = realloc(buf, cap *= 2);
	}
	cr_assert_eq(pclose(p), 0, "xz failed");
	unlink(tmp);
	*out_size = len;
	return buf;
}

/* Independent of the loader: look for the "Xen" note of type 18 anywhere. */
static uint64_t find_pvh_note(const uint8_t *elf, size_t size)
{
	for (size_t o = 0; o + 24 <= size; o += 4) {
		uint32_t nsz, dsz, type;
		memcpy(&nsz, elf + o, 4);
		memcpy(&dsz, elf + o + 4, 4);
		memcpy(&type, elf + o + 8, 4);
		if (nsz == 4 && (dsz == 4 || dsz == 8) && type == 18 &&
		    memcmp(elf + o + 12, "Xen", 4) == 0) {
			uint64_t v = 0;
			memcpy(&v, elf + o + 16, dsz);
			return v;
		}
	}
	return 0;
}

Test(boot_elf, debian_vmlinux_uses_pvh_entry, .timeout = 60)
{
	uint8_t *img; size_t size; const char *path;
	NEED_DEBIAN_KERNEL(img, size, path);
	size_t vsize;
	uint8_t *vm = extract_vmlinux(img, size, &vsize);
	free(img);
	cr_assert(elf64_probe(vm, vsize));
	uint64_t pvh = find_pvh_note(vm, vsize);
	if (!pvh)
		cr_skip_test("this kernel has no PVH entry note (CONFIG_PVH off)");

	struct boot_fixture f;
	boot_fixture_init(&f, 256ULL << 20, "vmlinux", vm, vsize);
	static uint8_t initrd[10000];
	memset(initrd, 0xA5, sizeof(initrd));
	f.ctx.initrd = initrd;
	f.ctx.initrd_size = sizeof(initrd);
	f.ctx.initrd_path = "initrd";
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	const struct guest_memory *m = &f.mem;

	/* every PT_LOAD at its physical address */
	Elf64_Ehdr eh;
	memcpy(&eh, vm, sizeof(eh));
	uint64_t kend = 0;
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, vm + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD)
			continue;
		cr_assert_eq(memcmp(gm_ptr(m, ph.p_paddr, ph.p_filesz), vm + ph.p_offset, ph.p_filesz),
			     0, "segment %d", i);
		if (ph.p_paddr + ph.p_memsz > kend)
			kend = ph.p_paddr + ph.p_memsz;
	}

	/* PVH entry: 32-bit protected mode, paging off, EBX -> start info */
	const struct cpu_state *s = &f.cpu;
	cr_assert_eq(s->rip, pvh);
	cr_assert_eq(s->cr0 & (CR0_PE | CR0_PG), CR0_PE);
	cr_assert_eq(s->efer, 0);
	cr_assert_eq(s->cr4, 0);
	cr_assert(s->seg[SEG_CS].db && !s->seg[SEG_CS].l);
	cr_assert_eq(s->seg[SEG_CS].limit, 0xFFFFFFFF);
	cr_assert_eq(s->seg[SEG_TR].type, 11);
	cr_assert(!(s->rflags & RFLAGS_IF));
	uint64_t si = s->gpr[RBX];
	const uint8_t *p = gm_ptr(m, si, 56);
	cr_assert_not_null(p);
	uint32_t magic, version, nr_modules, memmap_entries;
	uint64_t modlist, cmdline, rsdp, memmap;
	memcpy(&magic, p, 4);
	memcpy(&version, p + 4, 4);
	memcpy(&nr_modules, p + 12, 4);
	memcpy(&modlist, p + 16, 8);
	memcpy(&cmdline, p + 24, 8);
	memcpy(&rsdp, p + 32, 8);
	memcpy(&memmap, p + 40, 8);
	memcpy(&memmap_entries, p + 48, 4);
	cr_assert_eq(magic, 0x336EC578);
	cr_assert_eq(version, 1);
	cr_assert_str_eq((const char *)gm_ptr(m, cmdline, 1), f.cfg.cmdline);
	cr_assert_eq(rsdp, LAYOUT_ACPI_START);
	struct e820_entry e[E820_MAX_ENTRIES];
	int n = e820_build(m, e, E820_MAX_ENTRIES);
	cr_assert_eq(memmap_entries, (uint32_t)n);
	for (int i = 0; i < n; i++) {
		uint64_t a, sz;
		uint32_t t;
		gm_read(m, memmap + i * 24, &a, 8);
		gm_read(m, memmap + i * 24 + 8, &sz, 8);
		gm_read(m, memmap + i * 24 + 16, &t, 4);
		cr_assert(a == e[i].addr && sz == e[i].size && t == e[i].type, "memmap %d", i);
	}
	cr_assert_eq(nr_modules, 1);
	uint64_t mod_addr, mod_size;
	gm_read(m, modlist, &mod_addr, 8);
	gm_read(m, modlist + 8, &mod_size, 8);
	cr_assert_eq(mod_size, sizeof(initrd));
	cr_assert_eq(mod_addr & 0xFFF, 0);
	cr_assert_geq(mod_addr, kend, "initrd above the kernel");
	cr_assert_leq(mod_addr + mod_size, gm_low_ram_end(m));
	cr_assert_eq(memcmp(gm_ptr(m, mod_addr, mod_size), initrd, mod_size), 0);
	guest_memory_destroy(&f.mem);
	free(vm);
}

/* A small ELF64: one PT_LOAD linked at 0xffffffff81000000, loaded at
 * 16 MiB, optionally with a PT_NOTE carrying the PVH entry. */
#define E64_SIZE 0x1000
#define E64_VADDR 0xFFFFFFFF81000000ULL
#define E64_PADDR 0x1000000ULL
static size_t make_elf64(uint8_t *buf, bool pvh)
{
	memset(buf, 0, E64_SIZE);
	Elf64_Ehdr eh = { 0 };
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = E64_VADDR + 0x40;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = pvh ? 2 : 1;
	memcpy(buf, &eh, sizeof(eh));
	Elf64_Phdr ph[2] = {
		{ .p_type = PT_LOAD, .p_offset = 0x200, .p_vaddr = E64_VADDR, .p_paddr = E64_PADDR,
		  .p_filesz = 0x800, .p_memsz = 0x10000, .p_align = 0x200000 },
		{ .p_type = PT_NOTE, .p_offset = 0xA00, .p_filesz = 0x40 },
	};
	memcpy(buf + sizeof(eh), ph, sizeof(ph));
	for (int i = 0x200; i < 0xA00; i++)
		buf[i] = (uint8_t)(i * 3);
	/* an unrelated note first, then the PVH one (8-byte value, as Linux) */
	uint32_t n1[] = { 4, 4, 1, 0x00554E47 /* "GNU" */, 0xdeadbeef };
	memcpy(buf + 0xA00, n1, sizeof(n1));
	uint32_t n2[] = { 4, 8, 18, 0x006E6558 /* "Xen" */, (uint32_t)E64_PADDR + 0x80, 0 };
	memcpy(buf + 0xA00 + sizeof(n1), n2, sizeof(n2));
	return E64_SIZE;
}

Test(boot_elf, synthetic_64bit_entry)
{
	static uint8_t img[E64_SIZE];
	size_t size = make_elf64(img, false);
	struct boot_fixture f;
	boot_fixture_init(&f, 32ULL << 20, "tiny.elf", img, size);
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	check_long_mode(&f.mem, &f.cpu);
	cr_assert_eq(f.cpu.rip, E64_PADDR + 0x40, "entry translated to physical");
	cr_assert_eq(memcmp(gm_ptr(&f.mem, E64_PADDR, 0x800), img + 0x200, 0x800), 0);
	const uint8_t *bss = gm_ptr(&f.mem, E64_PADDR + 0x800, 0x10000 - 0x800);
	for (int i = 0; i < 0x10000 - 0x800; i++)
		cr_assert_eq(bss[i], 0);
	const uint8_t *bp = gm_ptr(&f.mem, LAYOUT_ZERO_PAGE, BP_SIZE);
	uint32_t hdrs, cl;
	memcpy(&hdrs, bp + BZ_HEADER, 4);
	memcpy(&cl, bp + BZ_CMD_LINE_PTR, 4);
	cr_assert_eq(hdrs, BZ_HEADER_MAGIC);
	cr_assert_eq(bp[BZ_TYPE_OF_LOADER], 0xFF);
	cr_assert_eq(cl, LAYOUT_CMDLINE);
	cr_assert_str_eq((const char *)gm_ptr(&f.mem, cl, 1), f.cfg.cmdline);
	cr_assert_gt(bp[BP_E820_ENTRIES], 2);
	guest_memory_destroy(&f.mem);
}

Test(boot_elf, synthetic_pvh_note)
{
	static uint8_t img[E64_SIZE];
	size_t size = make_elf64(img, true);
	struct boot_fixture f;
	boot_fixture_init(&f, 32ULL << 20, "tiny.elf", img, size);
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	cr_assert_eq(f.cpu.rip, E64_PADDR + 0x80);
	cr_assert_eq(f.cpu.cr0 & CR0_PG, 0);
	uint32_t magic;
	gm_read(&f.mem, f.cpu.gpr[RBX], &magic, 4);
	cr_assert_eq(magic, 0x336EC578);
	guest_memory_destroy(&f.mem);
}

static void expect_reject(uint8_t *img, size_t size, uint64_t mem, const char *needle)
{
	struct boot_fixture f;
	boot_fixture_init(&f, mem, "tiny.elf", img, size);
	cr_assert_lt(x86_boot_load_image(&f.ctx), 0, "accepted; expected '%s'", needle);
	cr_assert(strstr(f.err, needle), "error '%s' lacks '%s'", f.err, needle);
	cr_assert(strstr(f.err, "tiny.elf"), "error '%s' names the file", f.err);
	guest_memory_destroy(&f.mem);
}

Test(boot_elf, rejections)
{
	static uint8_t img[E64_SIZE];
	Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(Elf64_Ehdr));
	make_elf64(img, true);
	((Elf64_Ehdr *)img)->e_type = ET_DYN;
	expect_reject(img, E64_SIZE, 32ULL << 20, "ET_EXEC");
	make_elf64(img, true);
	expect_reject(img, E64_SIZE, 16ULL << 20, "outside guest RAM"); /* 16 MiB + 64 KiB */
	make_elf64(img, true);
	ph->p_paddr = 0x100;
	expect_reject(img, E64_SIZE, 32ULL << 20, "below 1 MiB");
	make_elf64(img, true);
	ph->p_filesz = 0xF00;
	expect_reject(img, E64_SIZE, 32ULL << 20, "truncated");
	make_elf64(img, true);
	expect_reject(img, 0x30, 32ULL << 20, "truncated"); /* ELF header cut */
	make_elf64(img, true);
	expect_reject(img, 0x60, 32ULL << 20, "truncated"); /* program headers cut */
	make_elf64(img, true);
	ph->p_paddr = 0xFFFFFFFFFFFFF000ULL;
	expect_reject(img, E64_SIZE, 32ULL << 20, "outside guest RAM");
	/* a 32-bit ELF without multiboot header is not accepted */
	make_elf64(img, false);
	img[EI_CLASS] = ELFCLASS32;
	expect_reject(img, E64_SIZE, 32ULL << 20, "not a kernel kite can load");
}

Test(boot_elf, truncated_note_is_ignored)
{
	static uint8_t img[E64_SIZE];
	make_elf64(img, true);
	uint32_t huge = 0xFFFFFFF0; /* first note's descsz runs off the segment */
	memcpy(img + 0xA04, &huge, 4);
	struct boot_fixture f;
	boot_fixture_init(&f, 32ULL << 20, "tiny.elf", img, E64_SIZE);
	cr_assert_eq(x86_boot_load_image(&f.ctx), 0, "%s", f.err);
	cr_assert(f.cpu.efer & EFER_LMA, "no PVH note seen: 64-bit entry");
	guest_memory_destroy(&f.mem);
}
