/* ACPI tables for a kite PC: RSDP (rev 2) -> XSDT -> FADT (rev 6, with
 * FACS and DSDT), MADT, MCFG. The FADT is not hardware-reduced: the guest
 * keeps the legacy PIT, 8259s, RTC and i8042 and uses the PM1a registers
 * and PM timer of devices/legacy/acpi_pm.c, and port 0xCF9 to reset.
 *
 * The DSDT is AML assembled here byte by byte (ACPI 6.x spec, section 20):
 *   Name (\_S5, Package () { 5, 5, 0, 0 })        sleep type for power off
 *   Scope (\_SB) {
 *     Device (PCI0)  PNP0A08/PNP0A03, _SEG/_BBN/_UID 0, _CRS: bus 0-255,
 *                    I/O 0-0xCF7 and 0xD00-0xFFFF, config ports 0xCF8-0xCFF,
 *                    MMIO 0xA0000-0xBFFFF and the 32-bit PCI window;
 *                    _PRT: slot s, pin p (INTA = 0) -> GSI 16 + (s + p) % 8
 *     Device (COM1)  PNP0501: I/O 0x3F8-0x3FF, IRQ 4
 *     Device (RESV)  PNP0C02: the ECAM window (motherboard resource, so that
 *                    Linux trusts MCFG)
 *     Device (Cnnn)  ACPI0007 per vCPU, _UID = the MADT processor UID
 *   }
 * Everything is assembled in a host buffer, then copied to guest RAM once. */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "devices/legacy/acpi_pm.h"

#define ACPI_PCI_INTX_GSI_BASE 16

/* ---- a growable byte buffer ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void reserve(struct buf *b, size_t extra)
{
	if (b->oom || b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void put(struct buf *b, const void *data, size_t len)
{
	reserve(b, len);
	if (b->oom)
		return;
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void put8(struct buf *b, uint8_t v) { put(b, &v, 1); }
static void put16(struct buf *b, uint16_t v) { put8(b, (uint8_t)v); put8(b, (uint8_t)(v >> 8)); }
static void put32(struct buf *b, uint32_t v) { put16(b, (uint16_t)v); put16(b, (uint16_t)(v >> 16)); }
static void put64(struct buf *b, uint64_t v) { put32(b, (uint32_t)v); put32(b, (uint32_t)(v >> 32)); }
static void putstr(struct buf *b, const char *s, size_t n) { put(b, s, n); }

static void patch32(struct buf *b, size_t off, uint32_t v)
{
	if (b->oom)
		return;
	for (int i = 0; i < 4; i++)
		b->p[off + i] = (uint8_t)(v >> (8 * i));
}

uint8_t acpi_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)-sum;
}

/* ---- table headers ---- */

static void header(struct buf *b, const char *sig, uint8_t rev)
{
	putstr(b, sig, 4);
	put32(b, 0);                 /* length, patched by finish() */
	put8(b, rev);
	put8(b, 0);                  /* checksum, patched by finish() */
	putstr(b, ACPI_OEM_ID, 6);
	putstr(b, ACPI_OEM_TABLE, 8);
	put32(b, 1);                 /* OEM revision */
	putstr(b, "KITE", 4);        /* creator ID */
	put32(b, 1);                 /* creator revision */
}

static void finish(struct buf *b)
{
	if (b->oom)
		return;
	patch32(b, 4, (uint32_t)b->len);
	b->p[9] = 0;
	b->p[9] = acpi_checksum(b->p, b->len);
}

/* Generic Address Structure. */
enum { GAS_SYSTEM_MEMORY = 0, GAS_SYSTEM_IO = 1 };
enum { GAS_ACCESS_BYTE = 1, GAS_ACCESS_WORD = 2, GAS_ACCESS_DWORD = 3 };

static void gas(struct buf *b, uint8_t space, uint8_t bit_width, uint8_t access, uint64_t addr)
{
	put8(b, space);
	put8(b, bit_width);
	put8(b, 0);                  /* bit offset */
	put8(b, access);
	put64(b, addr);
}

/* ---- AML ---- */

enum {
	AML_ZERO = 0x00, AML_ONE = 0x01, AML_NAME = 0x08, AML_BYTE = 0x0A, AML_WORD = 0x0B,
	AML_DWORD = 0x0C, AML_STRING = 0x0D, AML_QWORD = 0x0E, AML_SCOPE = 0x10,
	AML_BUFFER = 0x11, AML_PACKAGE = 0x12, AML_EXT = 0x5B, AML_DEVICE = 0x82,
	AML_ROOT = 0x5C,
};

/* A NameSeg: four characters, '_'-padded. */
static void aml_nameseg(struct buf *b, const char *name)
{
	char seg[4] = { '_', '_', '_', '_' };
	for (int i = 0; i < 4 && name[i]; i++)
		seg[i] = name[i];
	putstr(b, seg, 4);
}

static void aml_int(struct buf *b, uint64_t v)
{
	if (v == 0) {
		put8(b, AML_ZERO);
	} else if (v == 1) {
		put8(b, AML_ONE);
	} else if (v <= 0xFF) {
		put8(b, AML_BYTE);
		put8(b, (uint8_t)v);
	} else if (v <= 0xFFFF) {
		put8(b, AML_WORD);
		put16(b, (uint16_t)v);
	} else if (v <= 0xFFFFFFFF) {
		put8(b, AML_DWORD);
		put32(b, (uint32_t)v);
	} else {
		put8(b, AML_QWORD);
		put64(b, v);
	}
}

/* Compressed EISA ID ("PNP0A08") as a DWord. */
static void aml_eisaid(struct buf *b, const char *id)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned d[4];
	for (int i = 0; i < 4; i++)
		d[i] = (unsigned)(strchr(hex, id[3 + i]) - hex);
	uint8_t b0 = (uint8_t)(((id[0] & 0x1F) << 2) | ((id[1] & 0x1F) >> 3));
	uint8_t b1 = (uint8_t)(((id[1] & 0x07) << 5) | (id[2] & 0x1F));
	put8(b, AML_DWORD);
	put8(b, b0);
	put8(b, b1);
	put8(b, (uint8_t)((d[0] << 4) | d[1]));
	put8(b, (uint8_t)((d[2] << 4) | d[3]));
}

static void aml_string(struct buf *b, const char *s)
{
	put8(b, AML_STRING);
	put(b, s, strlen(s) + 1);
}

/* PkgLength: content emitted first, then its length inserted in front of
 * it at `mark` (the length counts its own bytes too). */
static size_t aml_pkg_begin(struct buf *b)
{
	return b->len;
}

static void aml_pkg_end(struct buf *b, size_t mark)
{
	if (b->oom)
		return;
	size_t body = b->len - mark, n, total;
	if (body + 1 <= 0x3F)
		n = 1;
	else if (body + 2 <= 0xFFF)
		n = 2;
	else if (body + 3 <= 0xFFFFF)
		n = 3;
	else
		n = 4;
	total = body + n;
	uint8_t enc[4];
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0F));
		for (size_t i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	reserve(b, n);
	if (b->oom)
		return;
	memmove(b->p + mark + n, b->p + mark, body);
	memcpy(b->p + mark, enc, n);
	b->len += n;
}

static void aml_name_int(struct buf *b, const char *name, uint64_t v)
{
	put8(b, AML_NAME);
	aml_nameseg(b, name);
	aml_int(b, v);
}

static void aml_name_eisaid(struct buf *b, const char *name, const char *id)
{
	put8(b, AML_NAME);
	aml_nameseg(b, name);
	aml_eisaid(b, id);
}

/* Name (name, Buffer () { bytes }) with a resource template in r. The end
 * tag is appended here. */
static void aml_name_resources(struct buf *b, const char *name, struct buf *r)
{
	put8(r, 0x79);               /* end tag */
	put8(r, 0x00);               /* checksum 0: "treat as correct" */
	put8(b, AML_NAME);
	aml_nameseg(b, name);
	put8(b, AML_BUFFER);
	size_t m = aml_pkg_begin(b);
	aml_int(b, r->len);
	if (!r->oom)
		put(b, r->p, r->len);
	else
		b->oom = true;
	aml_pkg_end(b, m);
}

/* Resource descriptors (ACPI 6.x, 6.4). */
static void res_io(struct buf *r, uint16_t base, uint8_t len)
{
	put8(r, 0x47);               /* I/O port, 16-bit decode */
	put8(r, 0x01);
	put16(r, base);
	put16(r, base);
	put8(r, 0x01);               /* alignment */
	put8(r, len);
}

static void res_irq(struct buf *r, unsigned irq)
{
	put8(r, 0x22);               /* IRQ, no flags: edge, active high */
	put16(r, (uint16_t)(1u << irq));
}

/* Word address space: type 1 = I/O, 2 = bus number. Producer, fixed min
 * and max, positive decode. */
static void res_word(struct buf *r, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
	put8(r, 0x88);
	put16(r, 13);
	put8(r, type);
	put8(r, 0x0C);
	put8(r, tflags);
	put16(r, 0);                 /* granularity */
	put16(r, min);
	put16(r, max);
	put16(r, 0);                 /* translation */
	put16(r, (uint16_t)(max - min + 1));
}

/* DWord memory range, producer, fixed, read/write; cacheable or not. */
static void res_dword_mem(struct buf *r, bool cacheable, uint32_t min, uint32_t max)
{
	put8(r, 0x87);
	put16(r, 23);
	put8(r, 0x00);               /* memory */
	put8(r, 0x0C);
	put8(r, cacheable ? 0x03 : 0x01);
	put32(r, 0);
	put32(r, min);
	put32(r, max);
	put32(r, 0);
	put32(r, max - min + 1);
}

static void res_mem32_fixed(struct buf *r, uint32_t base, uint32_t len)
{
	put8(r, 0x86);
	put16(r, 9);
	put8(r, 0x01);               /* read/write */
	put32(r, base);
	put32(r, len);
}

static void aml_device_begin(struct buf *b, const char *name, size_t *mark)
{
	put8(b, AML_EXT);
	put8(b, AML_DEVICE);
	*mark = aml_pkg_begin(b);
	aml_nameseg(b, name);
}

/* Name (_PRT, Package () { Package () { 0xSSSSFFFF, pin, Zero, gsi }, ... })
 * for slots 1-31: legacy INTx goes straight to IOAPIC pins 16-23 (no link
 * devices), level-triggered. devices/virtio/virtio_pci.h
 * (virtio_pci_intx_gsi) uses the same swizzle for INTA. */
static void aml_prt(struct buf *b)
{
	put8(b, AML_NAME);
	aml_nameseg(b, "_PRT");
	put8(b, AML_PACKAGE);
	size_t m = aml_pkg_begin(b);
	put8(b, 31 * 4);
	for (unsigned slot = 1; slot < 32; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			put8(b, AML_PACKAGE);
			size_t e = aml_pkg_begin(b);
			put8(b, 4);
			aml_int(b, ((uint64_t)slot << 16) | 0xFFFF);
			aml_int(b, pin);
			aml_int(b, 0);
			aml_int(b, ACPI_PCI_INTX_GSI_BASE + (slot + pin) % 8);
			aml_pkg_end(b, e);
		}
	}
	aml_pkg_end(b, m);
}

static void build_dsdt(struct buf *b, unsigned nr_cpus)
{
	header(b, "DSDT", 2);        /* rev 2: 64-bit integers */

	/* Name (\_S5, Package (4) { S5, S5, 0, 0 }) */
	put8(b, AML_NAME);
	put8(b, AML_ROOT);
	aml_nameseg(b, "_S5_");
	put8(b, AML_PACKAGE);
	size_t m = aml_pkg_begin(b);
	put8(b, 4);
	aml_int(b, ACPI_PM_SLP_TYP_S5);
	aml_int(b, ACPI_PM_SLP_TYP_S5);
	aml_int(b, 0);
	aml_int(b, 0);
	aml_pkg_end(b, m);

	/* Scope (\_SB) { ... } */
	put8(b, AML_SCOPE);
	size_t sb = aml_pkg_begin(b);
	put8(b, AML_ROOT);
	aml_nameseg(b, "_SB_");

	size_t dev;
	struct buf r = { 0 };
	aml_device_begin(b, "PCI0", &dev);
	aml_name_eisaid(b, "_HID", "PNP0A08");
	aml_name_eisaid(b, "_CID", "PNP0A03");
	aml_name_int(b, "_SEG", 0);
	aml_name_int(b, "_BBN", 0);
	aml_name_int(b, "_UID", 0);
	res_word(&r, 2, 0x00, 0x00, 0xFF);             /* buses 0-255 */
	res_io(&r, PORT_PCI_CONFIG, 8);                /* consumed by the bridge */
	res_word(&r, 1, 0x03, 0x0000, PORT_PCI_CONFIG - 1);
	res_word(&r, 1, 0x03, 0x0D00, 0xFFFF);
	res_dword_mem(&r, true, LAYOUT_BIOS_START, 0xBFFFF);  /* VGA window */
	res_dword_mem(&r, false, LAYOUT_PCI_MMIO32_START, LAYOUT_PCI_MMIO32_END - 1);
	aml_name_resources(b, "_CRS", &r);
	aml_prt(b);
	aml_pkg_end(b, dev);

	r.len = 0;
	aml_device_begin(b, "COM1", &dev);
	aml_name_eisaid(b, "_HID", "PNP0501");
	aml_name_int(b, "_UID", 1);
	res_io(&r, PORT_COM1, 8);
	res_irq(&r, IRQ_COM1);
	aml_name_resources(b, "_CRS", &r);
	aml_pkg_end(b, dev);

	r.len = 0;
	aml_device_begin(b, "RESV", &dev);
	aml_name_eisaid(b, "_HID", "PNP0C02");
	aml_name_int(b, "_UID", 2);
	res_mem32_fixed(&r, (uint32_t)LAYOUT_PCI_ECAM_BASE, (uint32_t)LAYOUT_PCI_ECAM_SIZE);
	aml_name_resources(b, "_CRS", &r);
	aml_pkg_end(b, dev);
	if (r.oom)
		b->oom = true;
	free(r.p);

	static const char hex[] = "0123456789ABCDEF";
	for (unsigned i = 0; i < nr_cpus; i++) {
		char name[5] = { 'C', hex[(i >> 8) & 0xF], hex[(i >> 4) & 0xF], hex[i & 0xF], 0 };
		aml_device_begin(b, name, &dev);
		put8(b, AML_NAME);
		aml_nameseg(b, "_HID");
		aml_string(b, "ACPI0007");
		aml_name_int(b, "_UID", i);
		aml_pkg_end(b, dev);
	}

	aml_pkg_end(b, sb);
	finish(b);
}

static void build_facs(struct buf *b)
{
	putstr(b, "FACS", 4);
	put32(b, 64);
	put32(b, 0);                 /* hardware signature */
	put32(b, 0);                 /* firmware waking vector */
	put32(b, 0);                 /* global lock */
	put32(b, 0);                 /* flags */
	put64(b, 0);                 /* X firmware waking vector */
	put8(b, 2);                  /* version */
	put8(b, 0); put8(b, 0); put8(b, 0);
	put32(b, 0);                 /* OSPM flags */
	for (int i = 0; i < 24; i++)
		put8(b, 0);
}

/* FADT flags and boot architecture bits we set. */
#define FADT_WBINVD        (1u << 0)
#define FADT_PROC_C1       (1u << 2)
#define FADT_PWR_BUTTON    (1u << 4)  /* no fixed power button */
#define FADT_SLP_BUTTON    (1u << 5)  /* no fixed sleep button */
#define FADT_FIX_RTC       (1u << 6)  /* no RTC wake status */
#define FADT_RESET_REG_SUP (1u << 10)
#define BOOT_LEGACY_DEVICES (1u << 0)
#define BOOT_8042          (1u << 1)

static void build_fadt(struct buf *b, uint64_t facs, uint64_t dsdt)
{
	header(b, "FACP", 6);
	put32(b, (uint32_t)facs);    /* FIRMWARE_CTRL */
	put32(b, (uint32_t)dsdt);    /* DSDT */
	put8(b, 0);                  /* reserved (INT_MODEL) */
	put8(b, 0);                  /* preferred PM profile: unspecified */
	put16(b, ACPI_SCI_IRQ);      /* SCI_INT */
	put32(b, 0);                 /* SMI_CMD: none, ACPI always enabled */
	put8(b, 0);                  /* ACPI_ENABLE */
	put8(b, 0);                  /* ACPI_DISABLE */
	put8(b, 0);                  /* S4BIOS_REQ */
	put8(b, 0);                  /* PSTATE_CNT */
	put32(b, PORT_ACPI_PM1_EVT); /* PM1a_EVT_BLK */
	put32(b, 0);                 /* PM1b_EVT_BLK */
	put32(b, PORT_ACPI_PM1_CNT); /* PM1a_CNT_BLK */
	put32(b, 0);                 /* PM1b_CNT_BLK */
	put32(b, 0);                 /* PM2_CNT_BLK */
	put32(b, PORT_ACPI_PM_TMR);  /* PM_TMR_BLK */
	put32(b, 0);                 /* GPE0_BLK */
	put32(b, 0);                 /* GPE1_BLK */
	put8(b, 4);                  /* PM1_EVT_LEN */
	put8(b, 2);                  /* PM1_CNT_LEN */
	put8(b, 0);                  /* PM2_CNT_LEN */
	put8(b, 4);                  /* PM_TMR_LEN */
	put8(b, 0);                  /* GPE0_BLK_LEN */
	put8(b, 0);                  /* GPE1_BLK_LEN */
	put8(b, 0);                  /* GPE1_BASE */
	put8(b, 0);                  /* CST_CNT */
	put16(b, 101);               /* P_LVL2_LAT > 100: no C2 */
	put16(b, 1001);              /* P_LVL3_LAT > 1000: no C3 */
	put16(b, 0);                 /* FLUSH_SIZE */
	put16(b, 0);                 /* FLUSH_STRIDE */
	put8(b, 0);                  /* DUTY_OFFSET */
	put8(b, 0);                  /* DUTY_WIDTH */
	put8(b, 0);                  /* DAY_ALRM */
	put8(b, 0);                  /* MON_ALRM */
	put8(b, ACPI_CMOS_CENTURY);  /* CENTURY */
	put16(b, BOOT_LEGACY_DEVICES | BOOT_8042); /* IAPC_BOOT_ARCH */
	put8(b, 0);                  /* reserved */
	put32(b, FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_FIX_RTC |
		 FADT_RESET_REG_SUP);
	gas(b, GAS_SYSTEM_IO, 8, GAS_ACCESS_BYTE, PORT_RESET_CF9); /* RESET_REG */
	put8(b, 0x06);               /* RESET_VALUE: SYS_RST | RST_CPU */
	put16(b, 0);                 /* ARM_BOOT_ARCH */
	put8(b, 0);                  /* FADT minor version: ACPI 6.0 */
	put64(b, facs);              /* X_FIRMWARE_CTRL */
	put64(b, dsdt);              /* X_DSDT */
	gas(b, GAS_SYSTEM_IO, 32, GAS_ACCESS_WORD, PORT_ACPI_PM1_EVT);  /* X_PM1a_EVT_BLK */
	gas(b, 0, 0, 0, 0);                                            /* X_PM1b_EVT_BLK */
	gas(b, GAS_SYSTEM_IO, 16, GAS_ACCESS_WORD, PORT_ACPI_PM1_CNT);  /* X_PM1a_CNT_BLK */
	gas(b, 0, 0, 0, 0);                                            /* X_PM1b_CNT_BLK */
	gas(b, 0, 0, 0, 0);                                            /* X_PM2_CNT_BLK */
	gas(b, GAS_SYSTEM_IO, 32, GAS_ACCESS_DWORD, PORT_ACPI_PM_TMR);  /* X_PM_TMR_BLK */
	gas(b, 0, 0, 0, 0);                                            /* X_GPE0_BLK */
	gas(b, 0, 0, 0, 0);                                            /* X_GPE1_BLK */
	gas(b, 0, 0, 0, 0);          /* SLEEP_CONTROL_REG (hardware-reduced only) */
	gas(b, 0, 0, 0, 0);          /* SLEEP_STATUS_REG */
	putstr(b, "KITEKITE", 8);    /* hypervisor vendor identity */
	finish(b);
}

#define MADT_PCAT_COMPAT 1u

static void build_madt(struct buf *b, unsigned nr_cpus)
{
	header(b, "APIC", 5);
	put32(b, (uint32_t)LAYOUT_LAPIC_BASE);
	put32(b, MADT_PCAT_COMPAT);
	for (unsigned i = 0; i < nr_cpus; i++) {
		put8(b, 0);              /* processor local APIC */
		put8(b, 8);
		put8(b, (uint8_t)i);     /* ACPI processor UID (DSDT Cnnn _UID) */
		put8(b, (uint8_t)i);     /* APIC ID */
		put32(b, 1);             /* enabled */
	}
	put8(b, 1);                  /* I/O APIC */
	put8(b, 12);
	put8(b, (uint8_t)nr_cpus);   /* its ID follows the vCPUs' */
	put8(b, 0);
	put32(b, (uint32_t)LAYOUT_IOAPIC_BASE);
	put32(b, 0);                 /* GSI base */
	/* ISA IRQ 0 (PIT) arrives on GSI 2; SCI is level, active high. */
	static const struct { uint8_t irq; uint32_t gsi; uint16_t flags; } iso[] = {
		{ IRQ_PIT, 2, 0x0000 },
		{ ACPI_SCI_IRQ, ACPI_SCI_IRQ, 0x000D },
	};
	for (size_t i = 0; i < sizeof(iso) / sizeof(iso[0]); i++) {
		put8(b, 2);              /* interrupt source override */
		put8(b, 10);
		put8(b, 0);              /* ISA bus */
		put8(b, iso[i].irq);
		put32(b, iso[i].gsi);
		put16(b, iso[i].flags);
	}
	put8(b, 4);                  /* local APIC NMI */
	put8(b, 6);
	put8(b, 0xFF);               /* all processors */
	put16(b, 0x0005);            /* edge, active high */
	put8(b, 1);                  /* LINT1 */
	finish(b);
}

static void build_mcfg(struct buf *b)
{
	header(b, "MCFG", 1);
	put64(b, 0);                 /* reserved */
	put64(b, LAYOUT_PCI_ECAM_BASE);
	put16(b, 0);                 /* segment */
	put8(b, 0);                  /* start bus */
	put8(b, 255);                /* end bus */
	put32(b, 0);
	finish(b);
}

static void build_xsdt(struct buf *b, const uint64_t *tables, size_t n)
{
	header(b, "XSDT", 1);
	for (size_t i = 0; i < n; i++)
		put64(b, tables[i]);
	finish(b);
}

static void build_rsdp(struct buf *b, uint64_t xsdt)
{
	putstr(b, "RSD PTR ", 8);
	put8(b, 0);                  /* checksum of the first 20 bytes */
	putstr(b, ACPI_OEM_ID, 6);
	put8(b, 2);                  /* revision: ACPI 2.0+ */
	put32(b, 0);                 /* RSDT: none, XSDT only */
	put32(b, 36);                /* length */
	put64(b, xsdt);
	put8(b, 0);                  /* extended checksum */
	put8(b, 0); put8(b, 0); put8(b, 0);
	if (b->oom)
		return;
	b->p[8] = acpi_checksum(b->p, 20);
	b->p[32] = acpi_checksum(b->p, 36);
}

/* The area image: tables appended at aligned offsets. */
static uint64_t place(struct buf *area, const struct buf *t, size_t align)
{
	size_t off = (area->len + align - 1) & ~(align - 1);
	while (area->len < off)
		put8(area, 0);
	if (t->oom)
		area->oom = true;
	else
		put(area, t->p, t->len);
	return LAYOUT_ACPI_START + off;
}

int acpi_build(struct guest_memory *mem, unsigned nr_cpus, uint64_t *rsdp_addr)
{
	if (nr_cpus < 1 || nr_cpus > 255)
		return -EINVAL;
	struct buf area = { 0 }, rsdp = { 0 }, facs = { 0 }, dsdt = { 0 }, fadt = { 0 },
		   madt = { 0 }, mcfg = { 0 }, xsdt = { 0 };
	/* The RSDP goes first, at LAYOUT_ACPI_START; reserve its 36 bytes. */
	for (int i = 0; i < 36; i++)
		put8(&area, 0);
	build_facs(&facs);
	uint64_t facs_addr = place(&area, &facs, 64);
	build_dsdt(&dsdt, nr_cpus);
	uint64_t dsdt_addr = place(&area, &dsdt, 16);
	build_fadt(&fadt, facs_addr, dsdt_addr);
	uint64_t tables[3];
	tables[0] = place(&area, &fadt, 16);
	build_madt(&madt, nr_cpus);
	tables[1] = place(&area, &madt, 16);
	build_mcfg(&mcfg);
	tables[2] = place(&area, &mcfg, 16);
	build_xsdt(&xsdt, tables, 3);
	uint64_t xsdt_addr = place(&area, &xsdt, 16);
	build_rsdp(&rsdp, xsdt_addr);
	if (!rsdp.oom && !area.oom)
		memcpy(area.p, rsdp.p, 36);

	int ret = 0;
	if (area.oom || rsdp.oom)
		ret = -ENOMEM;
	else if (area.len > LAYOUT_ACPI_END - LAYOUT_ACPI_START)
		ret = -ENOSPC;
	else
		ret = gm_write(mem, LAYOUT_ACPI_START, area.p, area.len);
	if (!ret)
		*rsdp_addr = LAYOUT_ACPI_START;
	struct buf *all[] = { &area, &rsdp, &facs, &dsdt, &fadt, &madt, &mcfg, &xsdt };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]->p);
	return ret;
}
