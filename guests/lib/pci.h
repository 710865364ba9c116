/* PCI config access (type-1 cycles, ports 0xCF8/0xCFC, bus 0) and virtio
 * modern-PCI discovery for the test guests' virtio drivers. */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdint.h>

uint32_t pci_read(unsigned dev, unsigned off);
void pci_write(unsigned dev, unsigned off, uint32_t v);
uint8_t pci_read8(unsigned dev, unsigned off);

/* virtio PCI capability types (virtio 1.2, 4.1.4) */
#define VIRTIO_PCI_CAP_COMMON 1
#define VIRTIO_PCI_CAP_NOTIFY 2
#define VIRTIO_PCI_CAP_ISR    3
#define VIRTIO_PCI_CAP_DEVICE 4

/* Where a virtio device's structures are: addresses in BAR0 (0 when the
 * capability is absent), the notify multiplier, and the MSI-X capability's
 * config offset and table address (0 when absent). */
struct virtio_pci {
	uint32_t common, notify, isr, devcfg, notify_mult;
	unsigned msix_cap;
	uint32_t msix_table;
};

/* The first function on bus 0 with virtio device type `type` (modern ID
 * 0x1040 + type), or -1 when there is none. */
int virtio_pci_find(unsigned type);

/* Enable memory decoding and bus mastering on dev, then walk its
 * capability list, taking BAR0 at base for the virtio structures. */
void virtio_pci_map(unsigned dev, uint32_t base, struct virtio_pci *v);

#endif
