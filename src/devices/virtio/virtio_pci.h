/* The modern virtio 1.x PCI transport (virtio 1.2, section 4.1).
 *
 * One PCI function per virtio device: vendor 0x1af4, device 0x1040 + the
 * virtio device ID, revision 1. Everything the driver touches lives in one
 * 64-bit, non-prefetchable memory BAR (BAR 0), found through vendor-specific
 * capabilities:
 *
 *   0x0000  common configuration   (VIRTIO_PCI_CAP_COMMON_CFG)
 *   0x1000  ISR status, 1 byte     (VIRTIO_PCI_CAP_ISR_CFG)
 *   0x2000  device configuration   (VIRTIO_PCI_CAP_DEVICE_CFG)
 *   0x3000  queue notify: queue q at 0x3000 + 4 * q
 *                                  (VIRTIO_PCI_CAP_NOTIFY_CFG, multiplier 4)
 *   0x4000  MSI-X table, 0x5000 MSI-X PBA (the MSI-X capability)
 *
 * plus the VIRTIO_PCI_CAP_PCI_CFG window for drivers that cannot map BARs.
 * Vectors: one per queue plus one for config changes.
 *
 * Interrupts: with MSI-X enabled, a queue or config interrupt goes to the
 * vector the driver assigned (none: dropped, as the spec says). With MSI-X
 * disabled, the device sets its ISR bit and asserts INTA, which the DSDT's
 * _PRT routes to GSI virtio_pci_intx_gsi(slot) (level-triggered, the
 * IOAPIC's pins 16-23); reading the ISR clears it and deasserts the line.
 *
 * Locking, outermost first: the PCI bus lock (config hooks), vd->lock (the
 * virtio core), vp->lock (this transport's registers), the MSI-X lock. */
#ifndef KITE_DEVICES_VIRTIO_VIRTIO_PCI_H
#define KITE_DEVICES_VIRTIO_VIRTIO_PCI_H

#include <stdint.h>

#include "devices/virtio/virtio.h"
#include "vmm/device.h"

struct vm;
struct virtio_pci;

#define PCI_VENDOR_ID_VIRTIO      0x1af4
#define PCI_DEVICE_ID_VIRTIO_BASE 0x1040
#define VIRTIO_PCI_SUBSYS_ID      0x1100 /* as QEMU: "a virtio device" */

/* Capability types (4.1.4). */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG    5
#define PCI_CAP_ID_VNDR           0x09

/* Common configuration layout (4.1.4.3). */
#define VIRTIO_PCI_COMMON_DFSELECT   0x00
#define VIRTIO_PCI_COMMON_DF         0x04
#define VIRTIO_PCI_COMMON_GFSELECT   0x08
#define VIRTIO_PCI_COMMON_GF         0x0C
#define VIRTIO_PCI_COMMON_MSIX       0x10
#define VIRTIO_PCI_COMMON_NUMQ       0x12
#define VIRTIO_PCI_COMMON_STATUS     0x14
#define VIRTIO_PCI_COMMON_CFGGEN     0x15
#define VIRTIO_PCI_COMMON_Q_SELECT   0x16
#define VIRTIO_PCI_COMMON_Q_SIZE     0x18
#define VIRTIO_PCI_COMMON_Q_MSIX     0x1A
#define VIRTIO_PCI_COMMON_Q_ENABLE   0x1C
#define VIRTIO_PCI_COMMON_Q_NOFF     0x1E
#define VIRTIO_PCI_COMMON_Q_DESCLO   0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI   0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO  0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI  0x2C
#define VIRTIO_PCI_COMMON_Q_USEDLO   0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI   0x34
#define VIRTIO_PCI_COMMON_LEN        0x38

#define VIRTIO_PCI_ISR_QUEUE  0x1
#define VIRTIO_PCI_ISR_CONFIG 0x2

/* BAR 0 layout (see above). */
#define VIRTIO_PCI_BAR            0
#define VIRTIO_PCI_COMMON_OFF     0x0000
#define VIRTIO_PCI_ISR_OFF        0x1000
#define VIRTIO_PCI_DEVICE_OFF     0x2000
#define VIRTIO_PCI_DEVICE_LEN     0x1000
#define VIRTIO_PCI_NOTIFY_OFF     0x3000
#define VIRTIO_PCI_NOTIFY_MULT    4
#define VIRTIO_PCI_MSIX_TABLE_OFF 0x4000
#define VIRTIO_PCI_MSIX_PBA_OFF   0x5000
#define VIRTIO_PCI_BAR_SIZE       0x8000
/* Queues a device may have: the notify region holds 1024 of them. */
#define VIRTIO_PCI_MAX_QUEUES     64

/* Capability offsets in config space. */
#define VIRTIO_PCI_CAP_COMMON_AT  0x40
#define VIRTIO_PCI_CAP_ISR_AT     0x50
#define VIRTIO_PCI_CAP_DEVICE_AT  0x60
#define VIRTIO_PCI_CAP_NOTIFY_AT  0x70
#define VIRTIO_PCI_CAP_PCICFG_AT  0x84
#define VIRTIO_PCI_CAP_MSIX_AT    0x98
/* Fields of struct virtio_pci_cap (4.1.4). */
#define VIRTIO_PCI_CAP_CFG_TYPE   3
#define VIRTIO_PCI_CAP_BAR        4
#define VIRTIO_PCI_CAP_OFFSET     8
#define VIRTIO_PCI_CAP_LENGTH     12
#define VIRTIO_PCI_CAP_NOTIFY_MULT_FIELD 16
#define VIRTIO_PCI_CAP_PCI_CFG_DATA 16

/* INTA of the device in slot s reaches GSI 16 + s % 8 (the DSDT's _PRT
 * lists the same for slots 1-31, pins A-D swizzled: (s + pin) % 8). */
static inline unsigned virtio_pci_intx_gsi(unsigned slot) { return 16 + slot % 8; }

/* Guest-physical space for BARs, handed out at creation. */
struct pci_mmio_window {
	uint64_t next, end;
};
/* size-aligned address for a BAR of `size` bytes, or 0 when full. */
uint64_t pci_mmio_alloc(struct pci_mmio_window *w, uint64_t size);

/* The PCI class code (0xCCSSPP) for a virtio device type. */
uint32_t virtio_pci_class(uint32_t device_id);

/* Who owns the device logic behind a transport. */
struct virtio_pci_owner {
	void *opaque;                  /* the device model (struct virtio_blk *, ...) */
	void (*destroy)(void *opaque); /* free it (after the function is unplugged) */
	/* Optional: wait until no request is in flight (before save). */
	void (*quiesce)(void *opaque);
};

/* Put vd behind a new PCI function at slot `slot` (function 0) of vm->pci,
 * BAR 0 pre-programmed at bar_addr with memory decode and bus mastering on
 * (kite has no firmware to do it), and register it with the VM. The
 * transport owns the device from then on: vm_destroy calls
 * owner->destroy after unplugging it; on failure it is called before
 * returning. Returns 0 or a negative errno.
 *
 * Save/restore (device_ops): config space, transport registers, MSI-X
 * state and the virtio common state, taken with the VM paused (the owner's
 * quiesce runs first). */
int virtio_pci_create(struct vm *vm, struct virtio_device *vd, unsigned slot, uint64_t bar_addr,
		      const struct virtio_pci_owner *owner, struct virtio_pci **out);
extern const struct device_ops virtio_pci_device_ops;

/* Tests: the BAR's register access, as the MMIO bus calls it. */
uint64_t virtio_pci_bar_read(struct virtio_pci *vp, uint64_t off, unsigned size);
void virtio_pci_bar_write(struct virtio_pci *vp, uint64_t off, unsigned size, uint64_t value);
uint8_t virtio_pci_devfn(const struct virtio_pci *vp);

#endif
