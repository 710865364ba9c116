#include <criterion/criterion.h>

#include "arch/x86/layout.h"
#include "devices/legacy/reset_cf9.h"
#include "devices/pci/host_bridge.h"
#include "fake_vm.h"

static struct vm vm;
static struct vm_config cfg;
static struct fake_engine fe;

static void setup(void)
{
	fake_vm_init(&vm, &cfg, &fe, 0);
	struct reset_cf9 *cf9;
	cr_assert_eq(reset_cf9_create(&vm, &cf9), 0);
	cr_assert_eq(pci_host_bridge_create(&vm, cf9, NULL), 0);
	cr_assert_not_null(vm.pci);
}

static void teardown(void)
{
	vm_destroy(&vm);
	cr_assert_null(vm.pci);
}

static uint32_t cf8(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	return PCI_CF8_ENABLE | bus << 16 | dev << 11 | fn << 8 | (reg & 0xFC);
}

/* A type-1 read of size bytes at register reg. */
static uint32_t cfg_read(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned size)
{
	pio_out(&vm, PORT_PCI_CONFIG, 4, cf8(bus, dev, fn, reg));
	return (uint32_t)pio_in(&vm, 0xCFC + (reg & 3), size);
}

static void cfg_write(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned size,
		      uint32_t v)
{
	pio_out(&vm, PORT_PCI_CONFIG, 4, cf8(bus, dev, fn, reg));
	pio_out(&vm, 0xCFC + (reg & 3), size, v);
}

static uint64_t ecam(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
	return LAYOUT_PCI_ECAM_BASE + ((uint64_t)bus << 20 | dev << 15 | fn << 12 | reg);
}

TestSuite(pci, .init = setup, .fini = teardown);

Test(pci, address_register)
{
	/* Linux's pci_check_type1(). */
	pio_out(&vm, 0xCFB, 1, 0x01);
	pio_out(&vm, PORT_PCI_CONFIG, 4, 0x80000000);
	cr_assert_eq(pio_in(&vm, PORT_PCI_CONFIG, 4), 0x80000000);
	pio_out(&vm, PORT_PCI_CONFIG, 4, 0xFFFFFFFF);
	cr_assert_eq(pio_in(&vm, PORT_PCI_CONFIG, 4), 0x80FFFFFC, "reserved bits read 0");
	cr_assert_eq(stop_reason(&vm), VM_RUNNING, "a dword at 0xCF8 is not the reset register");
}

Test(pci, host_bridge_identity)
{
	cr_assert_eq(cfg_read(0, 0, 0, 0, 4), 0x00081b36);
	cr_assert_eq(cfg_read(0, 0, 0, 0, 2), 0x1b36);
	cr_assert_eq(cfg_read(0, 0, 0, 2, 2), 0x0008);
	cr_assert_eq(cfg_read(0, 0, 0, 1, 1), 0x1b);
	cr_assert_eq(cfg_read(0, 0, 0, 3, 1), 0x00);
	cr_assert_eq(cfg_read(0, 0, 0, 0x08, 4) >> 8, 0x060000, "class: host bridge");
	cr_assert_eq(cfg_read(0, 0, 0, 0x0E, 1), 0, "type 0 header, single function");
}

Test(pci, empty_slots_and_disabled_cycles)
{
	cr_assert_eq(cfg_read(0, 1, 0, 0, 4), 0xFFFFFFFF);
	cr_assert_eq(cfg_read(0, 31, 7, 0, 4), 0xFFFFFFFF);
	cr_assert_eq(cfg_read(0, 0, 1, 0, 4), 0xFFFFFFFF, "function 1 absent");
	cr_assert_eq(cfg_read(1, 0, 0, 0, 4), 0xFFFFFFFF, "only bus 0 exists");
	cr_assert_eq(cfg_read(0, 1, 0, 0, 2), 0xFFFF);
	pio_out(&vm, PORT_PCI_CONFIG, 4, 0x00000000); /* enable bit clear */
	cr_assert_eq(pio_in(&vm, 0xCFC, 4), 0xFFFFFFFF);
	pio_out(&vm, 0xCFC, 4, 0x12345678);
	cr_assert_eq(cfg_read(0, 0, 0, 0, 4), 0x00081b36);
}

Test(pci, writes_follow_the_masks)
{
	cfg_write(0, 0, 0, 0, 4, 0xDEADBEEF);
	cr_assert_eq(cfg_read(0, 0, 0, 0, 4), 0x00081b36, "IDs are read-only");
	cfg_write(0, 0, 0, PCI_COMMAND, 2, 0xFFFF);
	cr_assert_eq(cfg_read(0, 0, 0, PCI_COMMAND, 2), 0x0547, "only defined command bits");
	cfg_write(0, 0, 0, PCI_LATENCY_TIMER, 1, 0x40);
	cr_assert_eq(cfg_read(0, 0, 0, PCI_LATENCY_TIMER, 1), 0x40);
	cfg_write(0, 0, 0, 0x0C, 4, 0xFFFFFFFF);
	cr_assert_eq(cfg_read(0, 0, 0, 0x0C, 4), 0x0000FFFF, "header type and BIST read-only");
	cfg_write(0, 0, 0, 0x10, 4, 0xFFFFFFFF);
	cr_assert_eq(cfg_read(0, 0, 0, 0x10, 4), 0, "no BARs");
	cfg_write(0, 3, 0, 0x04, 4, 0xFFFFFFFF); /* nobody there: dropped */
	cfg_write(7, 0, 0, 0x04, 4, 0xFFFFFFFF);
	/* Misaligned through ECAM: ignored, reads all ones. */
	uint64_t v;
	bus_write(&vm.mmio, ecam(0, 0, 0, 0x05), 2, 0xFFFF);
	bus_read(&vm.mmio, ecam(0, 0, 0, 0x05), 2, &v);
	cr_assert_eq(v, 0xFFFF);
	pci_host_bridge_ops.reset(vm.devices[1].dev);
	cr_assert_eq(cfg_read(0, 0, 0, PCI_COMMAND, 2), 0);
}

Test(pci, ecam_reaches_the_same_config_space)
{
	uint64_t v;
	cr_assert(bus_read(&vm.mmio, ecam(0, 0, 0, 0), 4, &v));
	cr_assert_eq(v, 0x00081b36);
	cr_assert(bus_read(&vm.mmio, ecam(0, 0, 0, 2), 2, &v));
	cr_assert_eq(v, 0x0008);
	cr_assert(bus_read(&vm.mmio, ecam(0, 0, 0, 0), 8, &v));
	cr_assert_eq(v & 0xFFFFFFFF, 0x00081b36);
	bus_write(&vm.mmio, ecam(0, 0, 0, PCI_COMMAND), 2, PCI_COMMAND_MEMORY);
	cr_assert_eq(cfg_read(0, 0, 0, PCI_COMMAND, 2), PCI_COMMAND_MEMORY);
	cr_assert(bus_read(&vm.mmio, ecam(0, 4, 0, 0), 4, &v));
	cr_assert_eq(v, 0xFFFFFFFF);
	cr_assert(bus_read(&vm.mmio, ecam(255, 31, 7, 0xFFC), 4, &v));
	cr_assert_eq(v, 0xFFFFFFFF);
	cr_assert(bus_read(&vm.mmio, ecam(0, 0, 0, 0x100), 4, &v));
	cr_assert_eq(v, 0xFFFFFFFF, "beyond a 256-byte config space");
}

Test(pci, cf9_reset_inside_the_address_dword)
{
	pio_out(&vm, PORT_PCI_CONFIG, 4, 0x80000000);
	pio_out(&vm, PORT_RESET_CF9, 1, 0x02);
	cr_assert_eq(pio_in(&vm, PORT_RESET_CF9, 1), 0x02);
	cr_assert_eq(stop_reason(&vm), VM_RUNNING);
	pio_out(&vm, PORT_RESET_CF9, 1, 0x06);
	cr_assert_eq(stop_reason(&vm), VM_STOP_RESET);
}

/* ---- a device with BARs, as virtio-pci will be ---- */

struct bar_log {
	unsigned calls;
	unsigned bar;
	uint64_t addr;
	bool enabled;
};

static void log_bar(struct pci_device *dev, unsigned bar, uint64_t addr, bool enabled)
{
	struct bar_log *l = dev->opaque;
	l->calls++;
	l->bar = bar;
	l->addr = addr;
	l->enabled = enabled;
}

static const struct pci_device_hooks log_hooks = { .bar_update = log_bar };

Test(pci, bars_size_and_move)
{
	static struct pci_device d;
	struct bar_log log = { 0 };
	d.devfn = PCI_DEVFN(3, 0);
	d.hooks = &log_hooks;
	d.opaque = &log;
	pci_device_init(&d, "test", 0x1af4, 0x1041, 0x010000, 1, true);
	cr_assert_eq(pci_device_set_bar(&d, 0, PCI_BAR_MEM32, 0x1000, 0), 0);
	cr_assert_eq(pci_device_set_bar(&d, 1, PCI_BAR_IO, 0x20, 0), 0);
	cr_assert_eq(pci_device_set_bar(&d, 2, PCI_BAR_MEM64, 0x4000, PCI_BAR_PREFETCH), 0);
	cr_assert_eq(pci_device_set_bar(&d, 5, PCI_BAR_MEM64, 0x4000, 0), -EINVAL);
	cr_assert_eq(pci_device_set_bar(&d, 4, PCI_BAR_MEM32, 0x3000, 0), -EINVAL);
	cr_assert_eq(pci_bus_add(vm.pci, &d), 0);
	cr_assert_eq(pci_bus_add(vm.pci, &d), -EBUSY);

	/* Sizing, as Linux does it (decode off). */
	cfg_write(0, 3, 0, 0x10, 4, 0xFFFFFFFF);
	cr_assert_eq(cfg_read(0, 3, 0, 0x10, 4), 0xFFFFF000);
	cfg_write(0, 3, 0, 0x14, 4, 0xFFFFFFFF);
	cr_assert_eq(cfg_read(0, 3, 0, 0x14, 4), 0xFFFFFFE1);
	cfg_write(0, 3, 0, 0x18, 4, 0xFFFFFFFF);
	cr_assert_eq(cfg_read(0, 3, 0, 0x18, 4), 0xFFFFC00C);
	cfg_write(0, 3, 0, 0x1C, 4, 0xFFFFFFFF);
	cr_assert_eq(cfg_read(0, 3, 0, 0x1C, 4), 0xFFFFFFFF);
	cr_assert(log.calls > 0 && !log.enabled, "moves reported, decode off");

	cfg_write(0, 3, 0, 0x10, 4, 0xC0001000);
	cfg_write(0, 3, 0, 0x18, 4, 0x00004000);
	cfg_write(0, 3, 0, 0x1C, 4, 0x00000001);
	cr_assert_eq(pci_device_bar_address(&d, 0), 0xC0001000);
	cr_assert_eq(pci_device_bar_address(&d, 2), 0x100004000ULL);
	log.calls = 0;
	cfg_write(0, 3, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	cr_assert_eq(log.calls, 2, "both memory BARs now decode");
	cr_assert(log.enabled);
	log.calls = 0;
	cfg_write(0, 3, 0, 0x10, 4, 0xC0002000);
	cr_assert_eq(log.calls, 1);
	cr_assert_eq(log.bar, 0);
	cr_assert_eq(log.addr, 0xC0002000);
	cfg_write(0, 3, 0, 0x10, 1, 0xFF);
	cr_assert_eq(cfg_read(0, 3, 0, 0x10, 4), 0xC0002000, "low flag bits are read-only");

	/* A 4 KiB PCIe config space is reachable through ECAM only. */
	d.wmask[0x100] = 0xFF;
	uint64_t v;
	bus_write(&vm.mmio, ecam(0, 3, 0, 0x100), 1, 0xAB);
	bus_read(&vm.mmio, ecam(0, 3, 0, 0x100), 1, &v);
	cr_assert_eq(v, 0xAB);
	pci_bus_remove(vm.pci, &d);
	cr_assert_eq(cfg_read(0, 3, 0, 0, 4), 0xFFFFFFFF);
}

Test(pci, status_bits_write_one_to_clear)
{
	static struct pci_device d;
	d.devfn = PCI_DEVFN(5, 0);
	pci_device_init(&d, "test", 0x1af4, 0x1000, 0x020000, 0, false);
	pci_set_word(d.config, PCI_STATUS, 0x8000 | PCI_STATUS_CAP_LIST);
	cr_assert_eq(pci_bus_add(vm.pci, &d), 0);
	cfg_write(0, 5, 0, PCI_STATUS, 2, 0x0010);
	cr_assert_eq(cfg_read(0, 5, 0, PCI_STATUS, 2), 0x8010, "capability bit is read-only");
	cfg_write(0, 5, 0, PCI_STATUS, 2, 0x8000);
	cr_assert_eq(cfg_read(0, 5, 0, PCI_STATUS, 2), 0x0010, "error bit cleared by a 1");
	pci_bus_remove(vm.pci, &d);
}
