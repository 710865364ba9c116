/* PCI config access and virtio-PCI discovery shared by the virtio guests. */
#include "lib/pci.h"
#include "lib/runtime.h"

uint32_t pci_read(unsigned dev, unsigned off)
{
	outl(0xCF8, 0x80000000u | (dev << 11) | (off & 0xFC));
	return inl(0xCFC);
}

void pci_write(unsigned dev, unsigned off, uint32_t v)
{
	outl(0xCF8, 0x80000000u | (dev << 11) | (off & 0xFC));
	outl(0xCFC, v);
}

uint8_t pci_read8(unsigned dev, unsigned off)
{
	return (uint8_t)(pci_read(dev, off) >> (8 * (off & 3)));
}

int virtio_pci_find(unsigned type)
{
	for (unsigned dev = 0; dev < 32; dev++)
		if (pci_read(dev, 0) == ((0x1040u + type) << 16 | 0x1af4))
			return (int)dev;
	return -1;
}

void virtio_pci_map(unsigned dev, uint32_t base, struct virtio_pci *v)
{
	*v = (struct virtio_pci){ 0 };
	pci_write(dev, 0x04, (pci_read(dev, 0x04) & 0xFFFF) | 0x6); /* memory + bus master */
	/* bounded: a looping list must not hang the guest */
	unsigned p = pci_read8(dev, 0x34), guard = 0;
	while (p && guard++ < 48) {
		if (pci_read8(dev, p) == 0x11) {
			v->msix_cap = p;
			v->msix_table = base + (pci_read(dev, p + 4) & ~7u);
		}
		if (pci_read8(dev, p) == 0x09 && pci_read8(dev, p + 4) == 0) {
			uint8_t type = pci_read8(dev, p + 3);
			uint32_t off = pci_read(dev, p + 8);
			if (type == VIRTIO_PCI_CAP_COMMON)
				v->common = base + off;
			if (type == VIRTIO_PCI_CAP_DEVICE)
				v->devcfg = base + off;
			if (type == VIRTIO_PCI_CAP_ISR)
				v->isr = base + off;
			if (type == VIRTIO_PCI_CAP_NOTIFY) {
				v->notify = base + off;
				v->notify_mult = pci_read(dev, p + 16);
			}
		}
		p = pci_read8(dev, p + 1);
	}
}
