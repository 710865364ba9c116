/* The virtio PCI transport driven as a guest driver would: config cycles
 * through ports 0xCF8/0xCFC, capabilities found by walking the list, the
 * BAR reached through the VM's MMIO bus, interrupts seen by a fake engine
 * that records MSI messages and line levels. The device behind it is
 * virtio-rng (synchronous: a notify completes before it returns). */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "arch/x86/layout.h"
#include "devices/pci/host_bridge.h"
#include "devices/pci/msix.h"
#include "devices/virtio/virtio_pci.h"
#include "devices/virtio/virtio_rng.h"
#include "fake_vm.h"
#include "virtq_driver.h"

#define SLOT 3
#define DEVFN PCI_DEVFN(SLOT, 0)
#define BAR_AT 0xC0010000ULL
#define GSI (16 + SLOT)

struct msi_rec {
	uint64_t addr[64];
	uint32_t data[64];
	unsigned n;
};

static struct vm vm;
static struct vm_config cfg;
static struct fake_engine fe;
static struct msi_rec msi;
static struct virtio_pci *vp;
static struct vdrv drv;
static uint64_t bar;  /* where BAR 0 is now */

static int rec_msi(struct vm *v, uint64_t addr, uint32_t data)
{
	(void)v;
	if (msi.n < 64) {
		msi.addr[msi.n] = addr;
		msi.data[msi.n] = data;
	}
	msi.n++;
	return 0;
}

static const struct engine_ops msi_engine = {
	.name = "fake-msi",
	.irq_line = fake_irq_line,
	.irq_msi = rec_msi,
	.vm_destroy = fake_vm_destroy_engine,
};

static void rng_free(void *p) { virtio_rng_destroy(p); }

static void setup(void)
{
	fake_vm_init(&vm, &cfg, &fe, 64 << 20);
	vm.engine = &msi_engine;
	memset(&msi, 0, sizeof(msi));
	cr_assert_eq(pci_host_bridge_create(&vm, NULL, NULL), 0);
	struct virtio_rng *rng;
	cr_assert_eq(virtio_rng_create(&rng, &vm.mem), 0);
	struct virtio_pci_owner owner = { rng, rng_free, NULL };
	cr_assert_eq(virtio_pci_create(&vm, virtio_rng_vdev(rng), SLOT, BAR_AT, &owner, &vp), 0);
	bar = BAR_AT;
}

static void teardown(void)
{
	vm_destroy(&vm);
}

/* ---- a driver's view ---- */

static uint32_t cfg_read(unsigned off, unsigned size)
{
	pio_out(&vm, PORT_PCI_CONFIG, 4, PCI_CF8_ENABLE | (DEVFN << 8) | (off & 0xFC));
	return (uint32_t)pio_in(&vm, PORT_PCI_CONFIG + 4 + (off & 3), size);
}

static void cfg_write(unsigned off, unsigned size, uint32_t v)
{
	pio_out(&vm, PORT_PCI_CONFIG, 4, PCI_CF8_ENABLE | (DEVFN << 8) | (off & 0xFC));
	pio_out(&vm, PORT_PCI_CONFIG + 4 + (off & 3), size, v);
}

static uint64_t rd(uint64_t off, unsigned size)
{
	uint64_t v = 0;
	bus_read(&vm.mmio, bar + off, size, &v);
	return v;
}

static void wr(uint64_t off, unsigned size, uint64_t v)
{
	bus_write(&vm.mmio, bar + off, size, v);
}

/* Walk the capability list for the vendor capability of `type`: its
 * config offset, or 0. */
static unsigned find_vcap(uint8_t type)
{
	unsigned p = cfg_read(PCI_CAPABILITY_LIST, 1), guard = 0;
	while (p && guard++ < 48) {
		if (cfg_read(p, 1) == PCI_CAP_ID_VNDR && cfg_read(p + 3, 1) == type)
			return p;
		p = cfg_read(p + 1, 1);
	}
	return 0;
}

static unsigned find_cap(uint8_t id)
{
	unsigned p = cfg_read(PCI_CAPABILITY_LIST, 1), guard = 0;
	while (p && guard++ < 48) {
		if (cfg_read(p, 1) == id)
			return p;
		p = cfg_read(p + 1, 1);
	}
	return 0;
}

static uint64_t cap_region(uint8_t type)
{
	unsigned c = find_vcap(type);
	cr_assert(c, "capability type %u present", type);
	cr_assert_eq(cfg_read(c + 4, 1), 0, "in BAR 0");
	return cfg_read(c + 8, 4);
}

#define COMMON (cap_region(VIRTIO_PCI_CAP_COMMON_CFG))

static void enable_msix(bool on)
{
	unsigned c = find_cap(PCI_CAP_ID_MSIX);
	cr_assert(c);
	uint16_t f = (uint16_t)cfg_read(c + 2, 2);
	cfg_write(c + 2, 2, on ? (f | PCI_MSIX_FLAGS_ENABLE) : (f & ~PCI_MSIX_FLAGS_ENABLE));
}

static void program_vector(unsigned v, uint32_t data, bool masked)
{
	unsigned c = find_cap(PCI_CAP_ID_MSIX);
	uint32_t t = cfg_read(c + 4, 4);
	cr_assert_eq(t & 7, 0, "table in BAR 0");
	uint64_t e = (t & ~7u) + 16ULL * v;
	wr(e, 4, 0xFEE00000);
	wr(e + 4, 4, 0);
	wr(e + 8, 4, data);
	wr(e + 12, 4, masked ? 1 : 0);
}

/* Initialisation as in 3.1.1, queue 0 on drv, vectors: config 0, queue 1. */
static void bring_up(bool with_msix)
{
	uint64_t c = COMMON;
	wr(c + VIRTIO_PCI_COMMON_STATUS, 1, 0);
	wr(c + VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(c + VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(c + VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	uint32_t hi = (uint32_t)rd(c + VIRTIO_PCI_COMMON_DF, 4);
	cr_assert(hi & 1, "VERSION_1 offered");
	wr(c + VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	wr(c + VIRTIO_PCI_COMMON_GF, 4, 0);
	wr(c + VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	wr(c + VIRTIO_PCI_COMMON_GF, 4, 1);
	uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	wr(c + VIRTIO_PCI_COMMON_STATUS, 1, s);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_STATUS, 1), s);
	if (with_msix) {
		enable_msix(true);
		program_vector(0, 0x40, false);
		program_vector(1, 0x41, false);
		wr(c + VIRTIO_PCI_COMMON_MSIX, 2, 0);
		cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_MSIX, 2), 0);
	}
	wr(c + VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
	wr(c + VIRTIO_PCI_COMMON_Q_SIZE, 2, 16);
	vdrv_init(&drv, &vm.mem, 16, 0x100000, 0x200000);
	if (with_msix) {
		wr(c + VIRTIO_PCI_COMMON_Q_MSIX, 2, 1);
		cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	}
	wr(c + VIRTIO_PCI_COMMON_Q_DESCLO, 4, (uint32_t)drv.desc);
	wr(c + VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0);
	wr(c + VIRTIO_PCI_COMMON_Q_AVAILLO, 8, drv.avail);      /* one 64-bit access */
	wr(c + VIRTIO_PCI_COMMON_Q_USEDLO, 4, (uint32_t)drv.used);
	wr(c + VIRTIO_PCI_COMMON_Q_USEDHI, 4, 0);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_AVAILLO, 8), drv.avail);
	wr(c + VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	wr(c + VIRTIO_PCI_COMMON_STATUS, 1, s | VIRTIO_STATUS_DRIVER_OK);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_STATUS, 1), s | VIRTIO_STATUS_DRIVER_OK);
}

static uint64_t notify_addr(unsigned q)
{
	unsigned c = find_vcap(VIRTIO_PCI_CAP_NOTIFY_CFG);
	uint32_t mult = cfg_read(c + 16, 4);
	wr(COMMON + VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	uint16_t noff = (uint16_t)rd(COMMON + VIRTIO_PCI_COMMON_Q_NOFF, 2);
	return cfg_read(c + 8, 4) + (uint64_t)noff * mult;
}

/* One 32-byte device-writable buffer; returns the used length (or -1). */
static int request_random(void)
{
	uint64_t buf = vdrv_alloc(&drv, 32);
	uint16_t d = drv.next_desc++ % drv.size;
	vdrv_set_desc(&drv, d, buf, 32, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, d);
	wr(notify_addr(0), 2, 0);
	uint32_t id, len;
	return vdrv_get_used(&drv, &id, &len) ? (int)len : -1;
}

TestSuite(vpci, .init = setup, .fini = teardown);

Test(vpci, identity_and_header)
{
	cr_assert_eq(cfg_read(PCI_VENDOR_ID, 2), 0x1af4);
	cr_assert_eq(cfg_read(PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_RNG);
	cr_assert_eq(cfg_read(PCI_REVISION_ID, 1), 1);
	cr_assert_eq(cfg_read(PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	cr_assert_geq(cfg_read(PCI_SUBSYSTEM_ID, 2), 0x40);
	cr_assert_eq(cfg_read(PCI_CLASS_DEVICE, 2), 0xFF00);
	cr_assert_eq(cfg_read(PCI_HEADER_TYPE, 1), 0);
	cr_assert(cfg_read(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	cr_assert_eq(cfg_read(PCI_INTERRUPT_PIN, 1), 1);
	cr_assert_eq(cfg_read(PCI_INTERRUPT_LINE, 1), GSI);
	cr_assert_eq(cfg_read(PCI_COMMAND, 2) & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER),
		     PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	/* BAR 0: 64-bit memory, not prefetchable, placed at creation */
	cr_assert_eq(cfg_read(PCI_BAR0, 4), (uint32_t)BAR_AT | 0x4);
	cr_assert_eq(cfg_read(PCI_BAR0 + 4, 4), 0);
	/* an absent slot reads all ones */
	pio_out(&vm, PORT_PCI_CONFIG, 4, PCI_CF8_ENABLE | (PCI_DEVFN(9, 0) << 8));
	cr_assert_eq(pio_in(&vm, PORT_PCI_CONFIG + 4, 4), 0xFFFFFFFF);
}

Test(vpci, capabilities_walk)
{
	static const uint8_t types[] = { VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG,
					 VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_CAP_DEVICE_CFG,
					 VIRTIO_PCI_CAP_PCI_CFG };
	for (size_t i = 0; i < sizeof(types); i++) {
		unsigned c = find_vcap(types[i]);
		cr_assert(c, "type %u", types[i]);
		cr_assert_geq(cfg_read(c + 2, 1), 16, "cap_len");
		cr_assert_eq(cfg_read(c + 4, 1), 0);
	}
	unsigned n = find_vcap(VIRTIO_PCI_CAP_NOTIFY_CFG);
	cr_assert_eq(cfg_read(n + 2, 1), 20);
	cr_assert_eq(cfg_read(n + 16, 4), 4, "notify_off_multiplier");
	cr_assert_geq(cfg_read(find_vcap(VIRTIO_PCI_CAP_COMMON_CFG) + 12, 4), 0x38);
	cr_assert_eq(cfg_read(find_vcap(VIRTIO_PCI_CAP_ISR_CFG) + 12, 4), 1);
	unsigned m = find_cap(PCI_CAP_ID_MSIX);
	cr_assert(m);
	cr_assert_eq(cfg_read(m + 2, 2) & 0x7FF, 1, "two vectors: queue + config");
	/* regions inside the BAR, not overlapping one another */
	cr_assert_lt(cap_region(VIRTIO_PCI_CAP_DEVICE_CFG), VIRTIO_PCI_BAR_SIZE);
	cr_assert_neq(cap_region(VIRTIO_PCI_CAP_ISR_CFG), cap_region(VIRTIO_PCI_CAP_COMMON_CFG));
}

Test(vpci, msix_queue_interrupt)
{
	bring_up(true);
	cr_assert_eq(request_random(), 32);
	cr_assert_eq(msi.n, 1);
	cr_assert_eq(msi.addr[0], 0xFEE00000);
	cr_assert_eq(msi.data[0], 0x41);
	cr_assert_eq(fe.raises[GSI], 0, "no INTx while MSI-X is on");
}

Test(vpci, masked_vector_pends_then_fires)
{
	bring_up(true);
	program_vector(1, 0x41, true);
	cr_assert_eq(request_random(), 32);
	cr_assert_eq(msi.n, 0);
	unsigned c = find_cap(PCI_CAP_ID_MSIX);
	uint32_t pba = cfg_read(c + 8, 4) & ~7u;
	cr_assert_eq(rd(pba, 8), 2, "vector 1 pending");
	wr((cfg_read(c + 4, 4) & ~7u) + 16 + 12, 4, 0);   /* unmask */
	cr_assert_eq(msi.n, 1);
	cr_assert_eq(msi.data[0], 0x41);
	cr_assert_eq(rd(pba, 8), 0);
	/* function mask: pending again, released when MASKALL clears */
	uint16_t f = (uint16_t)cfg_read(c + 2, 2);
	cfg_write(c + 2, 2, f | PCI_MSIX_FLAGS_MASKALL);
	cr_assert_eq(request_random(), 32);
	cr_assert_eq(msi.n, 1);
	cfg_write(c + 2, 2, f & ~PCI_MSIX_FLAGS_MASKALL);
	cr_assert_eq(msi.n, 2);
}

Test(vpci, intx_when_msix_disabled_and_isr_read_clears)
{
	bring_up(false);
	cr_assert_eq(request_random(), 32);
	cr_assert_eq(msi.n, 0);
	cr_assert(fe.level[GSI], "INTA asserted on GSI %d", GSI);
	uint64_t isr = cap_region(VIRTIO_PCI_CAP_ISR_CFG);
	cr_assert_eq(rd(isr, 1), VIRTIO_PCI_ISR_QUEUE);
	cr_assert_not(fe.level[GSI], "deasserted by the ISR read");
	cr_assert_eq(rd(isr, 1), 0, "read to clear");
	/* INTX_DISABLE holds the line low */
	uint16_t cmd = (uint16_t)cfg_read(PCI_COMMAND, 2);
	cfg_write(PCI_COMMAND, 2, cmd | PCI_COMMAND_INTX_DISABLE);
	cr_assert_eq(request_random(), 32);
	cr_assert_not(fe.level[GSI]);
	cfg_write(PCI_COMMAND, 2, cmd);
	cr_assert(fe.level[GSI], "pending ISR asserts once re-enabled");
	rd(isr, 1);
	cr_assert_not(fe.level[GSI]);
}

Test(vpci, config_change_interrupt)
{
	bring_up(true);
	/* NEEDS_RESET after DRIVER_OK is a config change: break the ring */
	uint16_t d = 0;
	vdrv_set_desc(&drv, d, 0xFFFFFFFF0000ULL, 32, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, d);
	uint8_t gen = (uint8_t)rd(COMMON + VIRTIO_PCI_COMMON_CFGGEN, 1);
	(void)gen;
	wr(notify_addr(0), 2, 0);
	cr_assert(rd(COMMON + VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(msi.n, 1);
	cr_assert_eq(msi.data[0], 0x40, "the config vector");
	/* reset recovers, vectors back to NO_VECTOR */
	wr(COMMON + VIRTIO_PCI_COMMON_STATUS, 1, 0);
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_STATUS, 1), 0);
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_MSIX, 2), MSIX_NO_VECTOR);
	wr(COMMON + VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_Q_MSIX, 2), MSIX_NO_VECTOR);
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	bring_up(true);
	cr_assert_eq(request_random(), 32);
}

Test(vpci, hostile_common_config)
{
	uint64_t c = COMMON;
	wr(c + VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	/* queue_select out of range: size 0, writes go nowhere */
	wr(c + VIRTIO_PCI_COMMON_Q_SELECT, 2, 5);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	wr(c + VIRTIO_PCI_COMMON_Q_SIZE, 2, 8);
	wr(c + VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	wr(c + VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0x1000);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_MSIX, 2), MSIX_NO_VECTOR);
	wr(c + VIRTIO_PCI_COMMON_Q_SELECT, 2, 0xFFFF);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	/* queue sizes: not a power of two, above the maximum, zero */
	wr(c + VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	wr(c + VIRTIO_PCI_COMMON_Q_SIZE, 2, 3);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
	wr(c + VIRTIO_PCI_COMMON_Q_SIZE, 2, 1024);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
	wr(c + VIRTIO_PCI_COMMON_Q_SIZE, 2, 0);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_RNG_QUEUE_SIZE);
	/* read-only fields */
	wr(c + VIRTIO_PCI_COMMON_NUMQ, 2, 9);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_NUMQ, 2), 1);
	wr(c + VIRTIO_PCI_COMMON_DF, 4, 0);
	wr(c + VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_DF, 4) & 1, 1);
	wr(c + VIRTIO_PCI_COMMON_Q_NOFF, 2, 7);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_NOFF, 2), 0);
	uint8_t gen = (uint8_t)rd(c + VIRTIO_PCI_COMMON_CFGGEN, 1);
	wr(c + VIRTIO_PCI_COMMON_CFGGEN, 1, gen + 1);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_CFGGEN, 1), gen);
	/* feature select beyond 1 reads 0 */
	wr(c + VIRTIO_PCI_COMMON_DFSELECT, 4, 0x1234);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_DF, 4), 0);
	/* wrong widths and misaligned accesses: nothing happens, reads 0 */
	wr(c + VIRTIO_PCI_COMMON_Q_SELECT, 4, 0);
	wr(c + VIRTIO_PCI_COMMON_STATUS, 2, 0xFFFF);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_STATUS, 1),
		     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_SIZE, 4), 0);
	cr_assert_eq(rd(c + 0x19, 1), 0);
	cr_assert_eq(rd(c + 0x37, 1), 0);
	cr_assert_eq(rd(c + 0x100, 4), 0, "past the common config");
	/* MSI-X vectors the table does not have read back NO_VECTOR */
	wr(c + VIRTIO_PCI_COMMON_MSIX, 2, 2);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_MSIX, 2), MSIX_NO_VECTOR);
	wr(c + VIRTIO_PCI_COMMON_Q_MSIX, 2, 0x7FF);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_MSIX, 2), MSIX_NO_VECTOR);
	/* queue enable with rings outside RAM: NEEDS_RESET, not enabled */
	wr(c + VIRTIO_PCI_COMMON_Q_DESCLO, 4, 0);
	wr(c + VIRTIO_PCI_COMMON_Q_DESCHI, 4, 0x100);
	wr(c + VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	cr_assert_eq(rd(c + VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	cr_assert(rd(c + VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
}

Test(vpci, notify_hostile)
{
	bring_up(true);
	/* notify for a queue that does not exist, misaligned, huge: ignored */
	uint64_t n = cap_region(VIRTIO_PCI_CAP_NOTIFY_CFG);
	wr(n + 4 * 7, 2, 7);
	wr(n + 2, 2, 0);
	wr(n + 0xFFC, 4, 0);
	cr_assert_eq(msi.n, 0);
	/* a queue that is not enabled: nothing popped */
	wr(COMMON + VIRTIO_PCI_COMMON_STATUS, 1, 0);
	uint64_t buf = vdrv_alloc(&drv, 32);
	vdrv_set_desc(&drv, 0, buf, 32, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, 0);
	wr(n, 2, 0);
	cr_assert_eq(vdrv_used_idx(&drv), 0);
	/* ISR writes are ignored, device config of rng is empty */
	wr(cap_region(VIRTIO_PCI_CAP_ISR_CFG), 1, 0xFF);
	cr_assert_eq(rd(cap_region(VIRTIO_PCI_CAP_ISR_CFG), 1), 0);
	cr_assert_eq(rd(cap_region(VIRTIO_PCI_CAP_DEVICE_CFG) + 8, 8), 0);
	/* odd sizes */
	cr_assert_eq(virtio_pci_bar_read(vp, 0, 3), ~0ULL);
	virtio_pci_bar_write(vp, VIRTIO_PCI_COMMON_STATUS, 16, 0);
}

Test(vpci, bar_sizing_and_move)
{
	uint16_t cmd = (uint16_t)cfg_read(PCI_COMMAND, 2);
	cfg_write(PCI_COMMAND, 2, cmd & ~PCI_COMMAND_MEMORY);
	uint64_t v;
	cr_assert_not(bus_read(&vm.mmio, BAR_AT, 4, &v), "decode off: unmapped");
	cfg_write(PCI_BAR0, 4, 0xFFFFFFFF);
	cfg_write(PCI_BAR0 + 4, 4, 0xFFFFFFFF);
	uint64_t size = ((uint64_t)cfg_read(PCI_BAR0 + 4, 4) << 32) | (cfg_read(PCI_BAR0, 4) & ~0xFu);
	cr_assert_eq(~size + 1, VIRTIO_PCI_BAR_SIZE);
	cr_assert_eq(cfg_read(PCI_BAR0, 4) & 0xF, 0x4, "64-bit, not prefetchable");
	/* move it */
	const uint64_t to = 0xC0100000ULL;
	cfg_write(PCI_BAR0, 4, (uint32_t)to);
	cfg_write(PCI_BAR0 + 4, 4, 0);
	cfg_write(PCI_COMMAND, 2, cmd);
	cr_assert_not(bus_read(&vm.mmio, BAR_AT, 4, &v), "old place gone");
	bar = to;
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_NUMQ, 2), 1, "registers at the new place");
	/* nonsense: over RAM, at 0, above the physical limit; never mapped */
	static const uint64_t bad[] = { 0x100000, 0, 0xFFFFFFFFFFFF8000ULL };
	for (size_t i = 0; i < 3; i++) {
		cfg_write(PCI_BAR0, 4, (uint32_t)bad[i]);
		cfg_write(PCI_BAR0 + 4, 4, (uint32_t)(bad[i] >> 32));
		cr_assert_not(bus_read(&vm.mmio, bad[i] + VIRTIO_PCI_COMMON_NUMQ, 2, &v));
		cr_assert_not(bus_read(&vm.mmio, to, 4, &v));
	}
	/* over another device's range (the ECAM window): refused, no crash */
	cfg_write(PCI_BAR0, 4, (uint32_t)LAYOUT_PCI_ECAM_BASE);
	cfg_write(PCI_BAR0 + 4, 4, 0);
	cr_assert(bus_read(&vm.mmio, LAYOUT_PCI_ECAM_BASE, 4, &v), "ECAM still the host bridge's");
	/* back to a sane place: works again */
	cfg_write(PCI_BAR0, 4, (uint32_t)BAR_AT);
	bar = BAR_AT;
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_NUMQ, 2), 1);
}

Test(vpci, pci_cfg_access_window)
{
	unsigned c = find_vcap(VIRTIO_PCI_CAP_PCI_CFG);
	cr_assert(c);
	cfg_write(c + 4, 1, 0);                                 /* bar */
	cfg_write(c + 8, 4, VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_NUMQ);
	cfg_write(c + 12, 4, 2);                                /* length */
	cr_assert_eq(cfg_read(c + 16, 2), 1, "num_queues through the window");
	/* write through it: device status */
	cfg_write(c + 8, 4, VIRTIO_PCI_COMMON_STATUS);
	cfg_write(c + 12, 4, 1);
	cfg_write(c + 16, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_STATUS, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	/* nonsense window: other BAR, bad length, beyond the BAR */
	cfg_write(c + 4, 1, 3);
	cr_assert_eq(cfg_read(c + 16, 4), 0);
	cfg_write(c + 4, 1, 0);
	cfg_write(c + 12, 4, 3);
	cr_assert_eq(cfg_read(c + 16, 4), 0);
	cfg_write(c + 12, 4, 4);
	cfg_write(c + 8, 4, 0x7FFFFFFC);
	cr_assert_eq(cfg_read(c + 16, 4), 0);
	cfg_write(c + 16, 4, 0xFFFFFFFF);
}

Test(vpci, mmio_window_allocator)
{
	struct pci_mmio_window w = { LAYOUT_PCI_MMIO32_START + 0x100, LAYOUT_PCI_MMIO32_START + 0x20000 };
	cr_assert_eq(pci_mmio_alloc(&w, 0x8000), LAYOUT_PCI_MMIO32_START + 0x8000);
	cr_assert_eq(pci_mmio_alloc(&w, 0x8000), LAYOUT_PCI_MMIO32_START + 0x10000);
	cr_assert_eq(pci_mmio_alloc(&w, 0x8000), LAYOUT_PCI_MMIO32_START + 0x18000);
	cr_assert_eq(pci_mmio_alloc(&w, 0x8000), 0, "full");
	cr_assert_eq(pci_mmio_alloc(&w, 0x3000), 0, "not a power of two");
}

Test(vpci, save_restore_round_trip)
{
	bring_up(true);
	cr_assert_eq(request_random(), 32);
	size_t need = virtio_pci_device_ops.save(vp, NULL, 0);
	cr_assert_gt(need, 256);
	uint8_t *blob = malloc(need);
	cr_assert_eq(virtio_pci_device_ops.save(vp, blob, need), need);

	/* the guest wrecks everything: reset, MSI-X off, BAR moved */
	wr(COMMON + VIRTIO_PCI_COMMON_STATUS, 1, 0);
	enable_msix(false);
	cfg_write(PCI_BAR0, 4, 0xC0200000);
	bar = 0xC0200000;
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_STATUS, 1), 0);

	/* hostile blobs change nothing */
	cr_assert_eq(virtio_pci_device_ops.restore(vp, blob, need - 1), -EINVAL);
	blob[0] ^= 1;
	cr_assert_eq(virtio_pci_device_ops.restore(vp, blob, need), -EINVAL);
	blob[0] ^= 1;
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_STATUS, 1), 0);

	cr_assert_eq(virtio_pci_device_ops.restore(vp, blob, need), 0);
	free(blob);
	uint64_t v;
	cr_assert_not(bus_read(&vm.mmio, 0xC0200000, 4, &v), "BAR back where it was saved");
	bar = BAR_AT;
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_DRIVER_OK,
		     VIRTIO_STATUS_DRIVER_OK);
	wr(COMMON + VIRTIO_PCI_COMMON_Q_SELECT, 2, 0);
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	cr_assert_eq(rd(COMMON + VIRTIO_PCI_COMMON_Q_DESCLO, 8), drv.desc);
	cr_assert(cfg_read(find_cap(PCI_CAP_ID_MSIX) + 2, 2) & PCI_MSIX_FLAGS_ENABLE);
	/* and the ring carries on where it was */
	unsigned before = msi.n;
	cr_assert_eq(request_random(), 32);
	cr_assert_eq(msi.n, before + 1);
	cr_assert_eq(msi.data[before], 0x41);
}

Test(vpci, enabling_msix_drops_a_pending_intx)
{
	bring_up(false);
	cr_assert_eq(request_random(), 32);
	cr_assert(fe.level[GSI]);
	enable_msix(true);
	cr_assert_not(fe.level[GSI], "no INTx while MSI-X is enabled");
	enable_msix(false);
	cr_assert(fe.level[GSI], "the unread ISR asserts it again");
	rd(cap_region(VIRTIO_PCI_CAP_ISR_CFG), 1);
	cr_assert_not(fe.level[GSI]);
}

/* xorshift: a fixed-seed stream, so a failure reproduces */
static uint64_t rnd_state;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

Test(vpci, random_register_storm_then_recovery)
{
	/* A guest writing anything anywhere: config space (including the BAR,
	 * command, MSI-X control and the PCI_CFG window), every BAR region,
	 * odd sizes and offsets. kite must stay up, the BAR must never land on
	 * RAM, and a reset plus a clean bring-up must work afterwards. */
	static const unsigned sizes[] = { 1, 2, 4, 8, 3, 0, 16 };
	rnd_state = 0x9E3779B97F4A7C15ULL;
	bring_up(true);
	for (int i = 0; i < 200000; i++) {
		uint64_t r = rnd();
		unsigned size = sizes[(r >> 8) % 7];
		uint64_t val = rnd();
		if (val & 1)
			val &= 0xFF;      /* small values hit more meaningful cases */
		switch (r % 4) {
		case 0: {
			unsigned off = (unsigned)((r >> 16) % 0x110);
			unsigned sz = size <= 4 && size && !(size & (size - 1)) ? size : 4;
			if (off == PCI_BAR0 || off == PCI_BAR0 + 4)
				val &= 0xFFFFF000;
			cfg_write(off & ~(sz - 1), sz, (uint32_t)val);
			break;
		}
		case 1:
			cfg_read((unsigned)((r >> 16) % 0x110) & ~3u, 4);
			break;
		case 2:
			virtio_pci_bar_write(vp, (r >> 16) % (VIRTIO_PCI_BAR_SIZE + 0x100), size, val);
			break;
		default:
			virtio_pci_bar_read(vp, (r >> 16) % (VIRTIO_PCI_BAR_SIZE + 0x100), size);
			break;
		}
	}
	/* no RAM address is claimed by a device range */
	uint64_t v;
	for (uint64_t a = 0; a < (64 << 20); a += 0x8000)
		cr_assert_not(bus_read(&vm.mmio, a, 4, &v), "BAR over RAM at 0x%llx",
			      (unsigned long long)a);
	/* firmware-style recovery: BAR back, decode on, MSI-X off, reset */
	cfg_write(PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	cfg_write(PCI_BAR0, 4, (uint32_t)BAR_AT);
	cfg_write(PCI_BAR0 + 4, 4, 0);
	unsigned c = find_cap(PCI_CAP_ID_MSIX);
	cr_assert(c, "capability list intact");
	cfg_write(c + 2, 2, 0);
	bar = BAR_AT;
	msi.n = 0;
	drv.next_desc = 0;
	bring_up(true);
	cr_assert_eq(request_random(), 32);
	cr_assert_eq(msi.n, 1);
}

Test(vpci, bus_master_off_means_no_dma_and_no_msi)
{
	bring_up(true);
	uint16_t cmd = (uint16_t)cfg_read(PCI_COMMAND, 2);
	cfg_write(PCI_COMMAND, 2, cmd & ~PCI_COMMAND_MASTER);
	cr_assert_eq(request_random(), -1, "notify ignored: the rings are not read");
	cr_assert_eq(msi.n, 0);
	cfg_write(PCI_COMMAND, 2, cmd);
	wr(notify_addr(0), 2, 0);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&drv, &id, &len), 1, "served once mastering is back");
	cr_assert_eq(msi.n, 1);
}
