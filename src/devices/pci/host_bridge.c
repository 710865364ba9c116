#include "devices/pci/host_bridge.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "arch/x86/layout.h"
#include "devices/legacy/reset_cf9.h"
#include "vmm/vm.h"

struct pci_host_bridge {
	struct vm *vm;
	struct pci_bus bus;
	struct pci_device dev;
	struct reset_cf9 *cf9;
	_Atomic uint32_t cf8;   /* the config address register */
	bool ports, ecam, plugged;
};

struct pci_bus *pci_host_bridge_bus(struct pci_host_bridge *hb)
{
	return &hb->bus;
}

/* Port range 0xCF8-0xCFF. Only a dword access at 0xCF8 is the address
 * register; a byte at 0xCF9 is the reset control register; other partial
 * accesses to 0xCF8-0xCFB reach nothing. */
static uint64_t ports_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pci_host_bridge *hb = opaque;
	if (offset < 4) {
		if (offset == 0 && size == 4)
			return atomic_load(&hb->cf8);
		if (offset == 1 && size == 1 && hb->cf9)
			return reset_cf9_read(hb->cf9);
		return ~0ULL;
	}
	uint32_t addr = atomic_load(&hb->cf8);
	if (!(addr & PCI_CF8_ENABLE))
		return ~0ULL;
	unsigned reg = (addr & 0xFC) + (unsigned)(offset - 4);
	return pci_bus_config_read(&hb->bus, (uint8_t)(addr >> 16), (uint8_t)(addr >> 8), reg, size);
}

static void ports_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct pci_host_bridge *hb = opaque;
	if (offset < 4) {
		if (offset == 0 && size == 4)
			atomic_store(&hb->cf8, (uint32_t)value & 0x80FFFFFCu);
		else if (offset == 1 && size == 1 && hb->cf9)
			reset_cf9_write(hb->cf9, (uint8_t)value);
		return;
	}
	uint32_t addr = atomic_load(&hb->cf8);
	if (!(addr & PCI_CF8_ENABLE))
		return;
	unsigned reg = (addr & 0xFC) + (unsigned)(offset - 4);
	pci_bus_config_write(&hb->bus, (uint8_t)(addr >> 16), (uint8_t)(addr >> 8), reg, size,
			     (uint32_t)value);
}

/* ECAM: offset = bus << 20 | devfn << 12 | register. An 8-byte access
 * (not allowed by the spec, but a guest may try) is two dwords. */
static uint64_t ecam_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pci_host_bridge *hb = opaque;
	uint8_t busno = (uint8_t)(offset >> 20), devfn = (uint8_t)(offset >> 12);
	unsigned reg = (unsigned)(offset & 0xFFF);
	if (size == 8) {
		if (reg & 7)
			return ~0ULL;
		return pci_bus_config_read(&hb->bus, busno, devfn, reg, 4) |
		       ((uint64_t)pci_bus_config_read(&hb->bus, busno, devfn, reg + 4, 4) << 32);
	}
	return pci_bus_config_read(&hb->bus, busno, devfn, reg, size);
}

static void ecam_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct pci_host_bridge *hb = opaque;
	uint8_t busno = (uint8_t)(offset >> 20), devfn = (uint8_t)(offset >> 12);
	unsigned reg = (unsigned)(offset & 0xFFF);
	if (size == 8) {
		if (reg & 7)
			return;
		pci_bus_config_write(&hb->bus, busno, devfn, reg, 4, (uint32_t)value);
		pci_bus_config_write(&hb->bus, busno, devfn, reg + 4, 4, (uint32_t)(value >> 32));
		return;
	}
	pci_bus_config_write(&hb->bus, busno, devfn, reg, size, (uint32_t)value);
}

static void hb_reset(void *opaque)
{
	struct pci_host_bridge *hb = opaque;
	atomic_store(&hb->cf8, 0);
	pthread_mutex_lock(&hb->bus.lock);
	pci_set_word(hb->dev.config, PCI_COMMAND, 0);
	pci_set_word(hb->dev.config, PCI_STATUS, 0);
	hb->dev.config[PCI_CACHE_LINE_SIZE] = 0;
	hb->dev.config[PCI_LATENCY_TIMER] = 0;
	hb->dev.config[PCI_INTERRUPT_LINE] = 0;
	pthread_mutex_unlock(&hb->bus.lock);
}

static void hb_destroy(void *opaque)
{
	struct pci_host_bridge *hb = opaque;
	if (hb->ports)
		bus_unregister(&hb->vm->pio, PORT_PCI_CONFIG, hb);
	if (hb->ecam)
		bus_unregister(&hb->vm->mmio, LAYOUT_PCI_ECAM_BASE, hb);
	if (hb->vm && hb->vm->pci == &hb->bus)
		hb->vm->pci = NULL;
	pci_bus_destroy(&hb->bus);
	free(hb);
}

const struct device_ops pci_host_bridge_ops = {
	.name = "pci_host_bridge", .reset = hb_reset, .destroy = hb_destroy,
};

int pci_host_bridge_create(struct vm *vm, struct reset_cf9 *cf9, struct pci_host_bridge **out)
{
	struct pci_host_bridge *hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	hb->vm = vm;
	hb->cf9 = cf9;
	pci_bus_init(&hb->bus);
	hb->dev.devfn = PCI_DEVFN(0, 0);
	pci_device_init(&hb->dev, "host bridge", PCI_VENDOR_REDHAT, PCI_DEVICE_REDHAT_PCIE_HOST,
			PCI_CLASS_HOST_BRIDGE, 0, false);
	/* A host bridge has no interrupt and needs no I/O decode. */
	hb->dev.wmask[PCI_INTERRUPT_LINE] = 0;
	int ret = pci_bus_add(&hb->bus, &hb->dev);
	if (!ret) {
		ret = bus_register(&vm->pio, PORT_PCI_CONFIG, 8, ports_read, ports_write, hb,
				   "pci-config");
		hb->ports = !ret;
	}
	if (!ret) {
		ret = bus_register(&vm->mmio, LAYOUT_PCI_ECAM_BASE, LAYOUT_PCI_ECAM_SIZE, ecam_read,
				   ecam_write, hb, "pci-ecam");
		hb->ecam = !ret;
	}
	if (!ret)
		ret = vm_add_device(vm, &pci_host_bridge_ops, hb);
	if (ret) {
		hb_destroy(hb);
		return ret;
	}
	vm->pci = &hb->bus;
	if (out)
		*out = hb;
	return 0;
}
