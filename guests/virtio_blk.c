/* virtio_blk: a minimal virtio-blk driver over the modern PCI transport.
 * Finds the device by type-1 config cycles (ports 0xCF8/0xCFC), walks its
 * vendor capabilities, brings it up with one queue and polls the used ring
 * (no interrupts). Then, by the command line:
 *   mode=read      read sector 0 and sector KNOWN_SECTOR, print and check them
 *   mode=write     also write WRITE_SECTOR with a pattern and read it back
 *   mode=readonly  expect VIRTIO_BLK_F_RO and a write failing with IOERR
 *   mode=msix      also take one MSI-X interrupt (vector 32) for a request
 *   mode=intx      with MSI-X off: INTA through IOAPIC pin 16 + slot % 8
 *                  (vector 33, level), acknowledged by reading the ISR
 * Exits GUEST_OK when every check held, GUEST_FAIL otherwise. */
#include "lib/idt.h"
#include "lib/pci.h"
#include "lib/runtime.h"

#define KNOWN_SECTOR 1234
#define WRITE_SECTOR 7
#define QSIZE 8

/* virtio PCI (virtio 1.2, 4.1) */
#define C_DFSELECT 0x00
#define C_DF       0x04
#define C_GFSELECT 0x08
#define C_GF       0x0C
#define C_NUMQ     0x12
#define C_STATUS   0x14
#define C_QSELECT  0x16
#define C_QSIZE    0x18
#define C_QENABLE  0x1C
#define C_QNOFF    0x1E
#define C_QDESC    0x20
#define C_QAVAIL   0x28
#define C_QUSED    0x30
#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define BLK_F_RO 5
#define T_IN 0
#define T_OUT 1
#define DESC_NEXT 1
#define DESC_WRITE 2
#define C_MSIX     0x10
#define C_QMSIX    0x1A

#define LAPIC_BASE 0xFEE00000u
#define LAPIC_EOI  0x0B0
#define LAPIC_SVR  0x0F0
#define IOAPIC_BASE 0xFEC00000u
#define VEC_MSIX   32
#define VEC_INTX   33
#define VEC_SPURIOUS 255

struct desc { uint32_t addr_lo, addr_hi, len; uint16_t flags, next; };
struct blk_req { uint32_t type, reserved; uint32_t sector_lo, sector_hi; };

static struct desc descs[QSIZE] __attribute__((aligned(4096)));
static volatile uint16_t avail[2 + QSIZE + 1] __attribute__((aligned(4096)));
static volatile uint16_t used[2 + 4 * QSIZE + 1] __attribute__((aligned(4096)));
static struct blk_req req __attribute__((aligned(16)));
static uint8_t data[512] __attribute__((aligned(512)));
static volatile uint8_t status;

static uint32_t common, notify, devcfg, isr, notify_mult;
static unsigned pci_dev, msix_cap;
static uint32_t msix_table;
static int use_msix;
static volatile uint32_t irq_msix, irq_intx, irq_other;
static uint16_t avail_idx, used_seen;
static unsigned failures;

static void check(int ok, const char *what)
{
	printf("virtio_blk: %s: %s\n", what, ok ? "ok" : "FAILED");
	if (!ok)
		failures++;
}

static void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* Find the first virtio-blk function on bus 0 and map its capabilities. */
static int probe(void)
{
	int found = virtio_pci_find(2);
	if (found < 0) {
		printf("virtio_blk: no virtio-blk device on PCI bus 0\n");
		return -1;
	}
	unsigned dev = (unsigned)found;
	uint32_t bar_lo = pci_read(dev, 0x10), bar_hi = pci_read(dev, 0x14);
	printf("virtio_blk: device at 00:%02x.0, BAR0 at 0x%x\n", dev, bar_lo & ~0xFu);
	if ((bar_lo & 0x6) != 0x4 || bar_hi) {
		printf("virtio_blk: BAR0 is not a 64-bit BAR below 4 GiB\n");
		return -1;
	}
	uint32_t base = bar_lo & ~0xFu;
	pci_dev = dev;
	struct virtio_pci v;
	virtio_pci_map(dev, base, &v);
	common = v.common;
	devcfg = v.devcfg;
	isr = v.isr;
	notify = v.notify;
	notify_mult = v.notify_mult;
	msix_cap = v.msix_cap;
	msix_table = v.msix_table;
	if (!common || !notify || !devcfg || !isr || !msix_cap) {
		printf("virtio_blk: capabilities missing\n");
		return -1;
	}
	return 0;
}

/* 3.1.1 with VERSION_1 only; returns the device features' word 0. */
static int bring_up(uint32_t *features0)
{
	mmio_write8(common + C_STATUS, 0);
	while (mmio_read8(common + C_STATUS))
		;
	mmio_write8(common + C_STATUS, S_ACK);
	mmio_write8(common + C_STATUS, S_ACK | S_DRIVER);
	mmio_write32(common + C_DFSELECT, 0);
	*features0 = mmio_read32(common + C_DF);
	mmio_write32(common + C_DFSELECT, 1);
	if (!(mmio_read32(common + C_DF) & 1)) {
		printf("virtio_blk: VERSION_1 not offered\n");
		return -1;
	}
	mmio_write32(common + C_GFSELECT, 0);
	mmio_write32(common + C_GF, 0);
	mmio_write32(common + C_GFSELECT, 1);
	mmio_write32(common + C_GF, 1);
	mmio_write8(common + C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(mmio_read8(common + C_STATUS) & S_FEATURES_OK)) {
		printf("virtio_blk: FEATURES_OK refused\n");
		return -1;
	}
	mmio_write16(common + C_QSELECT, 0);
	if (mmio_read16(common + C_QSIZE) < QSIZE) {
		printf("virtio_blk: queue too small\n");
		return -1;
	}
	mmio_write16(common + C_QSIZE, QSIZE);
	mmio_write32(common + C_QDESC, (uint32_t)descs);
	mmio_write32(common + C_QDESC + 4, 0);
	mmio_write32(common + C_QAVAIL, (uint32_t)avail);
	mmio_write32(common + C_QAVAIL + 4, 0);
	mmio_write32(common + C_QUSED, (uint32_t)used);
	mmio_write32(common + C_QUSED + 4, 0);
	if (use_msix) {
		mmio_write16(common + C_QMSIX, 0);
		if (mmio_read16(common + C_QMSIX) != 0) {
			printf("virtio_blk: queue vector 0 refused\n");
			return -1;
		}
	}
	mmio_write16(common + C_QENABLE, 1);
	notify += mmio_read16(common + C_QNOFF) * notify_mult;
	mmio_write8(common + C_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	if (mmio_read8(common + C_STATUS) != (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK)) {
		printf("virtio_blk: device status 0x%x after DRIVER_OK\n",
		       mmio_read8(common + C_STATUS));
		return -1;
	}
	return 0;
}

/* One request: header, 512 data bytes, status. Returns the status byte,
 * or -1 when the device never answered. */
static int request(uint32_t type, uint32_t sector)
{
	req.type = type;
	req.reserved = 0;
	req.sector_lo = sector;
	req.sector_hi = 0;
	status = 0xFF;
	descs[0] = (struct desc){ (uint32_t)&req, 0, sizeof(req), DESC_NEXT, 1 };
	descs[1] = (struct desc){ (uint32_t)data, 0, 512,
				  (uint16_t)(DESC_NEXT | (type == T_IN ? DESC_WRITE : 0)), 2 };
	descs[2] = (struct desc){ (uint32_t)&status, 0, 1, DESC_WRITE, 0 };
	avail[2 + avail_idx % QSIZE] = 0;
	barrier();
	avail[1] = ++avail_idx;
	barrier();
	mmio_write16(notify, 0);
	for (uint32_t spins = 0; spins < 200000000u; spins++) {
		barrier();
		if (used[1] != used_seen) {
			used_seen++;
			return status;
		}
		__asm__ volatile("pause");
	}
	return -1;
}

/* ---- interrupts (reusing the interrupts guest's entry stubs) ---- */

void isr_common(uint32_t vector, uint32_t error)
{
	if (vector == VEC_MSIX) {
		irq_msix++;
		mmio_write32(LAPIC_BASE + LAPIC_EOI, 0);
	} else if (vector == VEC_INTX) {
		/* reading the ISR deasserts the line before the EOI */
		if (mmio_read8(isr) & 1)
			irq_intx++;
		mmio_write32(LAPIC_BASE + LAPIC_EOI, 0);
	} else if (vector == VEC_SPURIOUS) {
		irq_other++;
	} else {
		printf("virtio_blk: unexpected exception %u (error 0x%x)\n", vector, error);
		guest_exit(GUEST_FAIL);
	}
}

static void interrupts_init(void)
{
	idt_load(); /* VEC_MSIX, VEC_INTX, VEC_SPURIOUS: stubs 32, 33, 255 */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

/* MSI-X entry 0 -> APIC 0, vector 32; then MSI-X on in message control. */
static void msix_setup(void)
{
	mmio_write32(msix_table + 0, LAPIC_BASE);
	mmio_write32(msix_table + 4, 0);
	mmio_write32(msix_table + 8, VEC_MSIX);
	mmio_write32(msix_table + 12, 0);
	uint32_t ctl = pci_read(pci_dev, msix_cap);
	pci_write(pci_dev, msix_cap, ctl | (0x8000u << 16));
}

/* IOAPIC pin 16 + slot % 8 -> APIC 0, vector 33, level-triggered. */
static void intx_setup(void)
{
	unsigned pin = 16 + pci_dev % 8;
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin + 1);
	mmio_write32(IOAPIC_BASE + 0x10, 0);
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * pin);
	mmio_write32(IOAPIC_BASE + 0x10, VEC_INTX | (1u << 15));
}

/* Spin with interrupts on until *counter moves (bounded). */
static int wait_irq(volatile uint32_t *counter, uint32_t before)
{
	for (uint32_t spins = 0; spins < 100000000u && *counter == before; spins++)
		__asm__ volatile("sti; pause; cli");
	return *counter != before;
}

static void print_text(const char *what, const uint8_t *p)
{
	printf("virtio_blk: %s: '", what);
	for (int i = 0; i < 32 && p[i] >= 0x20 && p[i] < 0x7f; i++)
		putc((char)p[i]);
	printf("'\n");
}

static int has_prefix(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

static const char *mode_of(const struct multiboot_info *mbi)
{
	const char *c = (mbi->flags & (1u << 2)) && mbi->cmdline ? (const char *)mbi->cmdline : "";
	for (; *c; c++)
		if (has_prefix(c, "mode="))
			return c + 5;
	return "read";
}

void guest_main(const struct multiboot_info *mbi)
{
	const char *mode = mode_of(mbi);
	uint32_t f0;
	use_msix = has_prefix(mode, "msix");
	if (probe())
		guest_exit(GUEST_FAIL);
	if (use_msix || has_prefix(mode, "intx")) {
		interrupts_init();
		if (use_msix)
			msix_setup();
		else
			intx_setup();
	}
	if (bring_up(&f0))
		guest_exit(GUEST_FAIL);
	uint32_t cap_lo = mmio_read32(devcfg), cap_hi = mmio_read32(devcfg + 4);
	printf("virtio_blk: capacity %u sectors%s\n", cap_lo, cap_hi ? " (and more)" : "");

	check(request(T_IN, 0) == 0, "read sector 0");
	print_text("sector 0", data);
	check(!memcmp(data, "KITE VIRTIO DISK SECTOR 0", 25), "sector 0 contents");
	check(request(T_IN, KNOWN_SECTOR) == 0, "read sector 1234");
	print_text("sector 1234", data);
	check(!memcmp(data, "KITE SECTOR 1234", 16) && data[511] == 0x5A, "sector 1234 contents");
	check(request(T_IN, cap_lo) == 1, "read past the end is IOERR");

	if (has_prefix(mode, "write")) {
		for (int i = 0; i < 512; i++)
			data[i] = (uint8_t)(i * 3 + 1);
		memcpy(data, "WRITTEN BY THE GUEST", 20);
		check(request(T_OUT, WRITE_SECTOR) == 0, "write sector 7");
		memset(data, 0, sizeof(data));
		check(request(T_IN, WRITE_SECTOR) == 0, "read sector 7 back");
		check(!memcmp(data, "WRITTEN BY THE GUEST", 20) && data[511] == (uint8_t)(511 * 3 + 1),
		      "sector 7 contents");
	} else if (use_msix || has_prefix(mode, "intx")) {
		volatile uint32_t *counter = use_msix ? &irq_msix : &irq_intx;
		/* The reads above interrupted too (with IF clear): let those in
		 * first, so the count below is this request's alone. */
		for (int i = 0; i < 100000; i++)
			__asm__ volatile("sti; pause; cli");
		uint32_t before = *counter;
		__asm__ volatile("sti");
		int s = request(T_IN, KNOWN_SECTOR);
		int got = wait_irq(counter, before);
		__asm__ volatile("cli");
		printf("virtio_blk: %s interrupts: %u before the request, %u after (status %d)\n",
		       use_msix ? "msix" : "intx", before, *counter, s);
		check(s == 0 && got, use_msix ? "request completed with an MSI-X interrupt"
					      : "request completed with an INTx interrupt");
		if (!use_msix)
			check(mmio_read8(isr) == 0, "ISR clear after the handler read it");
	} else if (has_prefix(mode, "readonly")) {
		check(f0 & (1u << BLK_F_RO), "VIRTIO_BLK_F_RO offered");
		memcpy(data, "MUST NOT BE WRITTEN", 19);
		int s = request(T_OUT, WRITE_SECTOR);
		printf("virtio_blk: write status %d\n", s);
		check(s == 1, "write to a read-only disk is IOERR");
	}
	printf("virtio_blk: %s (%u failures)\n", failures ? "FAILED" : "all passed", failures);
	guest_exit(failures ? GUEST_FAIL : GUEST_OK);
}
