/* MSI-X for any PCI device (PCI Local Bus 3.0, section 6.8.2): the
 * capability in config space, the vector table and the Pending Bit Array
 * in a BAR region the device maps, and delivery through vm_irq_msi.
 *
 * A device embeds a struct msix, calls msix_init() once its config space
 * is built (the capability is written at cap_off), forwards config writes
 * to msix_config_write() from its pci hook, forwards BAR accesses that
 * fall into the table or PBA to msix_table_read/write and msix_pba_read,
 * and raises vectors with msix_notify().
 *
 * Masking: a vector raised while its entry or the whole function is
 * masked sets its PBA bit; the message is sent when it is unmasked.
 *
 * Locking: m->lock guards the table, the PBA and the enable/mask state.
 * msix_config_write runs under the PCI bus lock; the message is sent with
 * m->lock held (engines' irq_msi never re-enters a device). */
#ifndef KITE_DEVICES_PCI_MSIX_H
#define KITE_DEVICES_PCI_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/pci/pci.h"

struct vm;

#define PCI_CAP_ID_MSIX   0x11
#define PCI_MSIX_CAP_LEN  12
#define PCI_MSIX_FLAGS    2       /* message control, within the capability */
#define PCI_MSIX_TABLE    4       /* table offset | BIR */
#define PCI_MSIX_PBA      8       /* PBA offset | BIR */
#define PCI_MSIX_FLAGS_QSIZE   0x07FF
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_FLAGS_ENABLE  0x8000

#define MSIX_MAX_VECTORS   2048
#define MSIX_ENTRY_SIZE    16
#define MSIX_ENTRY_CTRL_MASKBIT 1u
/* "no vector" as virtio and others spell it */
#define MSIX_NO_VECTOR     0xFFFF

struct msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct msix {
	struct vm *vm;
	unsigned nr;              /* vectors, 1..MSIX_MAX_VECTORS */
	unsigned cap_off;         /* capability offset in config space */
	struct msix_entry *table;
	uint64_t *pba;            /* (nr + 63) / 64 words */
	bool enabled, masked;     /* message control ENABLE / MASKALL */
	unsigned sent;            /* messages delivered (tests, stats) */
	pthread_mutex_t lock;
};

/* Write the capability (ID, next = 0, control, table and PBA locations)
 * at cap_off of dev's config space, make ENABLE and MASKALL writable, and
 * allocate nr entries, all masked. The caller links the capability into
 * the list. table_off and pba_off are offsets in BAR bir, 8-byte aligned.
 * Returns 0, -EINVAL or -ENOMEM. */
int msix_init(struct msix *m, struct vm *vm, struct pci_device *dev, unsigned cap_off,
	      unsigned nr, unsigned bir, uint32_t table_off, uint32_t pba_off);
void msix_fini(struct msix *m);
/* Everything masked, nothing pending, disabled (device reset). The config
 * space control word is reset by the caller's config reset. */
void msix_reset(struct msix *m, struct pci_device *dev);

/* Bytes the table and the PBA occupy. */
static inline uint32_t msix_table_bytes(unsigned nr) { return nr * MSIX_ENTRY_SIZE; }
static inline uint32_t msix_pba_bytes(unsigned nr) { return ((nr + 63) / 64) * 8; }

/* From the device's pci config_write hook (bus lock held): picks up the
 * ENABLE and MASKALL bits from dev->config and delivers what unmasking
 * released. */
void msix_config_write(struct msix *m, struct pci_device *dev, unsigned off, unsigned size);

/* Accesses relative to the start of the table / the PBA. Size 1, 2, 4 or
 * 8, naturally aligned (other accesses read all ones and write nothing);
 * beyond the table reads all ones. The PBA is read-only. */
uint64_t msix_table_read(struct msix *m, uint64_t off, unsigned size);
void msix_table_write(struct msix *m, uint64_t off, unsigned size, uint64_t value);
uint64_t msix_pba_read(struct msix *m, uint64_t off, unsigned size);

/* Raise vector v: 0 when sent, 1 when left pending (masked), -ENODEV when
 * MSI-X is disabled (the device falls back to INTx), -EINVAL for v out of
 * range. */
int msix_notify(struct msix *m, unsigned v);

/* State as a blob: enable/mask flags, table, PBA (the capability itself
 * lives in the device's config space, which the device saves). msix_save
 * returns the bytes needed (writes nothing if len is short); msix_restore
 * returns 0 or -EINVAL for a blob of another size or version. */
size_t msix_save(struct msix *m, void *buf, size_t len);
int msix_restore(struct msix *m, const void *buf, size_t len);
bool msix_enabled(struct msix *m);
bool msix_is_pending(struct msix *m, unsigned v);

#endif
