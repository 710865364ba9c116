#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/layout.h"

struct tables {
	struct guest_memory mem;
	uint64_t rsdp, xsdt, fadt, madt, mcfg, dsdt, facs;
};

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static const uint8_t *at(struct tables *t, uint64_t gpa, uint64_t len)
{
	cr_assert(gpa >= LAYOUT_ACPI_START && gpa + len <= LAYOUT_ACPI_END,
		  "table at 0x%llx+%llu outside the ACPI area", (unsigned long long)gpa,
		  (unsigned long long)len);
	const uint8_t *p = gm_ptr(&t->mem, gpa, len);
	cr_assert_not_null(p);
	return p;
}

/* A table: its header's length, and a checksum that sums to 0. */
static const uint8_t *table(struct tables *t, uint64_t gpa, const char *sig)
{
	const uint8_t *h = at(t, gpa, 36);
	cr_assert_eq(memcmp(h, sig, 4), 0, "expected %s at 0x%llx", sig, (unsigned long long)gpa);
	uint32_t len = le32(h + 4);
	const uint8_t *p = at(t, gpa, len);
	cr_assert_eq(acpi_checksum(p, len), 0, "%s checksum", sig);
	return p;
}

static void build(struct tables *t, unsigned cpus)
{
	memset(t, 0, sizeof(*t));
	cr_assert_eq(guest_memory_init(&t->mem, 64 << 20), 0);
	cr_assert_eq(acpi_build(&t->mem, cpus, &t->rsdp), 0);
	cr_assert_eq(t->rsdp, LAYOUT_ACPI_START);
	const uint8_t *r = at(t, t->rsdp, 36);
	cr_assert_eq(memcmp(r, "RSD PTR ", 8), 0);
	cr_assert_eq(acpi_checksum(r, 20), 0, "RSDP checksum");
	cr_assert_eq(acpi_checksum(r, 36), 0, "RSDP extended checksum");
	cr_assert_eq(r[15], 2, "RSDP revision 2");
	cr_assert_eq(le32(r + 20), 36);
	t->xsdt = le64(r + 24);
	const uint8_t *x = table(t, t->xsdt, "XSDT");
	uint32_t n = (le32(x + 4) - 36) / 8;
	cr_assert_eq(n, 3);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t a = le64(x + 36 + 8 * i);
		const uint8_t *h = at(t, a, 4);
		if (!memcmp(h, "FACP", 4)) t->fadt = a;
		else if (!memcmp(h, "APIC", 4)) t->madt = a;
		else if (!memcmp(h, "MCFG", 4)) t->mcfg = a;
		else cr_assert_fail("unexpected table in XSDT");
	}
	cr_assert(t->fadt && t->madt && t->mcfg);
	const uint8_t *f = table(t, t->fadt, "FACP");
	t->dsdt = le64(f + 140);
	t->facs = le64(f + 132);
	cr_assert_eq(le32(f + 40), t->dsdt, "32-bit DSDT matches X_DSDT");
	table(t, t->dsdt, "DSDT");
	table(t, t->madt, "APIC");
	table(t, t->mcfg, "MCFG");
	const uint8_t *facs = at(t, t->facs, 64);
	cr_assert_eq(memcmp(facs, "FACS", 4), 0);
	cr_assert_eq(t->facs % 64, 0, "FACS is 64-byte aligned");
}

Test(acpi, checksum_helper)
{
	uint8_t b[4] = { 1, 2, 3, 0 };
	b[3] = acpi_checksum(b, 3);
	cr_assert_eq(acpi_checksum(b, 4), 0);
}

Test(acpi, fadt_fields)
{
	struct tables t;
	build(&t, 1);
	const uint8_t *f = at(&t, t.fadt, 276);
	cr_assert_eq(le32(f + 4), 276, "FADT rev 6 length");
	cr_assert_eq(f[8], 6);
	cr_assert_eq(f[46] | f[47] << 8, 9, "SCI_INT");
	cr_assert_eq(le32(f + 48), 0, "SMI_CMD");
	cr_assert_eq(le32(f + 56), 0x600);
	cr_assert_eq(le32(f + 64), 0x604);
	cr_assert_eq(le32(f + 76), 0x608);
	cr_assert_eq(f[88], 4);
	cr_assert_eq(f[89], 2);
	cr_assert_eq(f[91], 4);
	cr_assert_eq(f[109] | f[110] << 8, 0x0003, "LEGACY_DEVICES | 8042, nothing else");
	uint32_t flags = le32(f + 112);
	cr_assert(flags & (1u << 10), "RESET_REG_SUP");
	cr_assert_not(flags & (1u << 20), "not hardware-reduced");
	cr_assert_eq(f[116], 1, "reset register in system I/O");
	cr_assert_eq(le64(f + 120), 0xCF9);
	cr_assert_eq(f[128], 6);
	cr_assert_eq(f[148], 1);
	cr_assert_eq(le64(f + 152), 0x600, "X_PM1a_EVT_BLK");
	cr_assert_eq(le64(f + 176), 0x604, "X_PM1a_CNT_BLK");
	cr_assert_eq(le64(f + 212), 0x608, "X_PM_TMR_BLK");
	guest_memory_destroy(&t.mem);
}

Test(acpi, madt_every_vcpu_and_the_ioapic)
{
	struct tables t;
	build(&t, 4);
	const uint8_t *m = at(&t, t.madt, 44);
	uint32_t len = le32(m + 4);
	m = at(&t, t.madt, len);
	cr_assert_eq(le32(m + 36), LAYOUT_LAPIC_BASE);
	cr_assert_eq(le32(m + 40) & 1, 1, "PCAT_COMPAT");
	unsigned cpus = 0, ioapics = 0, isos = 0, nmis = 0;
	for (uint32_t off = 44; off < len;) {
		uint8_t type = m[off], l = m[off + 1];
		cr_assert(l >= 2 && off + l <= len);
		switch (type) {
		case 0:
			cr_assert_eq(m[off + 2], cpus, "processor UID");
			cr_assert_eq(m[off + 3], cpus, "APIC ID = vCPU index");
			cr_assert_eq(le32(m + off + 4) & 1, 1, "enabled");
			cpus++;
			break;
		case 1:
			cr_assert_eq(m[off + 2], 4, "IOAPIC id = nr_cpus");
			cr_assert_eq(le32(m + off + 4), LAYOUT_IOAPIC_BASE);
			cr_assert_eq(le32(m + off + 8), 0);
			ioapics++;
			break;
		case 2:
			if (m[off + 3] == 0)
				cr_assert_eq(le32(m + off + 4), 2, "IRQ0 -> GSI2");
			else
				cr_assert(m[off + 3] == 9 && le32(m + off + 4) == 9 &&
					  (m[off + 8] | m[off + 9] << 8) == 0x000D, "IRQ9 level, high");
			isos++;
			break;
		case 4:
			cr_assert_eq(m[off + 5], 1, "LINT1");
			nmis++;
			break;
		}
		off += l;
	}
	cr_assert_eq(cpus, 4);
	cr_assert_eq(ioapics, 1);
	cr_assert_eq(isos, 2);
	cr_assert_eq(nmis, 1);
	const uint8_t *mc = at(&t, t.mcfg, 60);
	cr_assert_eq(le64(mc + 44), LAYOUT_PCI_ECAM_BASE);
	cr_assert_eq(mc[54], 0);
	cr_assert_eq(mc[55], 255);
	guest_memory_destroy(&t.mem);
}

Test(acpi, fits_for_255_vcpus_and_rejects_nonsense)
{
	struct tables t;
	build(&t, 255);
	guest_memory_destroy(&t.mem);
	struct guest_memory mem;
	uint64_t r;
	cr_assert_eq(guest_memory_init(&mem, 16 << 20), 0);
	cr_assert_eq(acpi_build(&mem, 0, &r), -EINVAL);
	cr_assert_eq(acpi_build(&mem, 256, &r), -EINVAL);
	guest_memory_destroy(&mem);
}

/* ---- an independent parser: iasl -d from acpica-tools ---- */

static bool have(const char *tool)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

static void dump(struct tables *t, const char *dir, const char *name, uint64_t gpa, uint32_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(at(t, gpa, len), 1, len, f), len);
	fclose(f);
}

/* Disassemble dir/name.dat; returns the .dsl text (malloc'd). */
static char *disassemble(const char *dir, const char *name)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s.dat >%s.log 2>&1", dir, name, name);
	int rc = system(cmd);
	cr_assert_eq(rc, 0, "iasl -d %s.dat failed (see %s/%s.log)", name, dir, name);
	char path[256];
	snprintf(path, sizeof(path), "%s/%s.log", dir, name);
	FILE *f = fopen(path, "r");
	char line[512];
	while (f && fgets(line, sizeof(line), f))
		cr_assert_null(strstr(line, "Error"), "iasl: %s", line);
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/%s.dsl", dir, name);
	f = fopen(path, "r");
	cr_assert_not_null(f, "no %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *text = calloc(1, (size_t)n + 1);
	cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return text;
}

static void expect(const char *text, const char *what)
{
	cr_assert_not_null(strstr(text, what), "disassembly lacks \"%s\"", what);
}

static void rm_rf(const char *dir)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

Test(acpi, iasl_parses_every_table)
{
	if (!have("iasl"))
		cr_skip_test("iasl not installed (Debian package acpica-tools)");
	struct tables t;
	build(&t, 2);
	char dir[] = "/tmp/kite-acpi-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	const struct { const char *name; uint64_t gpa; } tabs[] = {
		{ "xsdt", t.xsdt }, { "fadt", t.fadt }, { "dsdt", t.dsdt },
		{ "madt", t.madt }, { "mcfg", t.mcfg },
	};
	for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++)
		dump(&t, dir, tabs[i].name, tabs[i].gpa, le32(at(&t, tabs[i].gpa, 8) + 4));
	dump(&t, dir, "facs", t.facs, 64);

	char *s = disassemble(dir, "xsdt");
	expect(s, "ACPI Table Address   2");
	free(s);

	s = disassemble(dir, "fadt");
	expect(s, "Revision : 06");
	expect(s, "SCI Interrupt : 0009");
	expect(s, "SMI Command Port : 00000000");
	expect(s, "PM1A Event Block Address : 00000600");
	expect(s, "PM1A Control Block Address : 00000604");
	expect(s, "PM Timer Block Address : 00000608");
	expect(s, "Legacy Devices Supported (V2) : 1");
	expect(s, "8042 Present on ports 60/64 (V2) : 1");
	expect(s, "VGA Not Present (V4) : 0");
	expect(s, "MSI Not Supported (V4) : 0");
	expect(s, "Reset Register Supported (V2) : 1");
	expect(s, "Hardware Reduced (V5) : 0");
	expect(s, "Address : 0000000000000CF9");
	expect(s, "Value to cause reset : 06");
	expect(s, "Address : 0000000000000600");
	expect(s, "Address : 0000000000000604");
	expect(s, "Address : 0000000000000608");
	free(s);

	s = disassemble(dir, "dsdt");
	expect(s, "Name (\\_S5, Package (0x04)");
	expect(s, "Device (PCI0)");
	expect(s, "EisaId (\"PNP0A08\")");
	expect(s, "EisaId (\"PNP0A03\")");
	expect(s, "Name (_SEG, Zero)");
	expect(s, "Name (_BBN, Zero)");
	expect(s, "WordBusNumber (ResourceProducer");
	expect(s, "0x0CF7,             // Range Maximum");
	expect(s, "0x0D00,             // Range Minimum");
	expect(s, "0x000A0000,         // Range Minimum");
	expect(s, "0xC0000000,         // Range Minimum");
	expect(s, "0xDFFFFFFF,         // Range Maximum");
	expect(s, "Name (_PRT, Package (0x7C)");
	expect(s, "0x0001FFFF, \n                    Zero, \n                    Zero, \n                    0x11");
	expect(s, "0x001FFFFF, \n                    0x03, \n                    Zero, \n                    0x12");
	expect(s, "Device (COM1)");
	expect(s, "EisaId (\"PNP0501\")");
	expect(s, "0x03F8,             // Range Minimum");
	expect(s, "{4}");
	expect(s, "Device (C001)");
	free(s);

	s = disassemble(dir, "madt");
	expect(s, "Local Apic Address : FEE00000");
	expect(s, "PC-AT Compatibility : 1");
	expect(s, "Local Apic ID : 01");
	expect(s, "I/O Apic ID : 02");
	expect(s, "Address : FEC00000");
	expect(s, "Subtable Type : 04 [Local APIC NMI]");
	expect(s, "Interrupt Input LINT : 01");
	free(s);

	s = disassemble(dir, "mcfg");
	expect(s, "Base Address : 00000000E0000000");
	expect(s, "End Bus Number : FF");
	free(s);

	s = disassemble(dir, "facs");
	expect(s, "Signature : \"FACS\"");
	free(s);
	/* The RSDP is checked by build() above: iasl does not read a bare
	 * RSDP from a binary file. */
	rm_rf(dir);
	guest_memory_destroy(&t.mem);
}

Test(acpi, acpiexec_evaluates_s5)
{
	if (!have("acpiexec"))
		cr_skip_test("acpiexec not installed (Debian package acpica-tools)");
	struct tables t;
	build(&t, 1);
	char dir[] = "/tmp/kite-acpi-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	dump(&t, dir, "fadt", t.fadt, 276);
	dump(&t, dir, "dsdt", t.dsdt, le32(at(&t, t.dsdt, 8) + 4));
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "cd %s && timeout 30 acpiexec -b 'Evaluate \\_S5' fadt.dat dsdt.dat >out.txt 2>&1",
		 dir);
	cr_assert_eq(system(cmd), 0);
	char path[256];
	snprintf(path, sizeof(path), "%s/out.txt", dir);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char line[512];
	int fives = 0;
	bool pkg = false;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "[Package] Contains 4 Elements"))
			pkg = true;
		if (pkg && strstr(line, "[Integer] = 0000000000000005"))
			fives++;
	}
	fclose(f);
	cr_assert(pkg, "\\_S5 is a package of 4");
	cr_assert_eq(fives, 2, "SLP_TYPa and SLP_TYPb are 5");
	rm_rf(dir);
	guest_memory_destroy(&t.mem);
}
