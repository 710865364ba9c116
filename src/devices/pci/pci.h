/* PCI bus model: devices with a config space (256 bytes, or 4 KiB for PCI
 * Express), per-byte masks saying which bits the guest may write, and hooks
 * for what a device does when the guest moves a BAR or writes config space.
 * The host bridge (host_bridge.c) turns type-1 cycles at 0xCF8/0xCFC and
 * ECAM MMIO accesses into pci_bus_config_read/write calls.
 *
 * Locking: one bus lock serialises every config access; device hooks run
 * with it held and must not re-enter the PCI bus. Hooks run on a vCPU
 * thread inside a port or MMIO bus callback, with no bus lock held (see
 * vmm/bus.c), so they may register or unregister ranges on vm->mmio and
 * vm->pio. */
#ifndef KITE_DEVICES_PCI_PCI_H
#define KITE_DEVICES_PCI_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define PCI_CONFIG_SIZE   256
#define PCIE_CONFIG_SIZE  4096
#define PCI_SLOTS         32
#define PCI_FUNCS         8
#define PCI_DEVFN(slot, fn) ((uint8_t)(((slot) << 3) | (fn)))
#define PCI_NUM_BARS      6

/* Standard header (type 0) offsets. */
#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_REVISION_ID    0x08
#define PCI_CLASS_PROG     0x09
#define PCI_CLASS_DEVICE   0x0A
#define PCI_CACHE_LINE_SIZE 0x0C
#define PCI_LATENCY_TIMER  0x0D
#define PCI_HEADER_TYPE    0x0E
#define PCI_BAR0           0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2C
#define PCI_SUBSYSTEM_ID   0x2E
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN  0x3D

#define PCI_COMMAND_IO        0x0001
#define PCI_COMMAND_MEMORY    0x0002
#define PCI_COMMAND_MASTER    0x0004
#define PCI_COMMAND_PARITY    0x0040
#define PCI_COMMAND_SERR      0x0100
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_CAP_LIST   0x0010

#define PCI_HEADER_TYPE_NORMAL 0x00
#define PCI_HEADER_TYPE_MULTIFUNCTION 0x80

/* BAR kinds (the low bits a BAR reads back). */
enum pci_bar_type {
	PCI_BAR_NONE = 0,
	PCI_BAR_IO,        /* bit 0 set */
	PCI_BAR_MEM32,     /* type 00 */
	PCI_BAR_MEM64,     /* type 10: takes this BAR and the next */
};
#define PCI_BAR_PREFETCH 0x08

struct pci_device;

struct pci_device_hooks {
	/* The guest changed BAR bar's address (either half of a 64-bit one)
	 * or the command register's decode bits. addr is the address the BAR
	 * now holds; enabled says whether the command register lets it
	 * decode (IO or MEMORY bit as fits). During sizing the guest writes
	 * all ones: addr is then nonsense, and guests normally disable decode
	 * first; a device maps only enabled BARs at sane addresses. */
	void (*bar_update)(struct pci_device *dev, unsigned bar, uint64_t addr, bool enabled);
	/* Called after the generic handling of any config write (masks
	 * applied): for capabilities such as MSI-X. off/size as the guest
	 * wrote them. */
	void (*config_write)(struct pci_device *dev, unsigned off, unsigned size, uint32_t value);
	/* Optional: produce the value of a config read (e.g. live registers);
	 * return false to use the stored config space. */
	bool (*config_read)(struct pci_device *dev, unsigned off, unsigned size, uint32_t *value);
};

struct pci_device {
	const char *name;
	uint8_t devfn;
	unsigned config_size;             /* PCI_CONFIG_SIZE or PCIE_CONFIG_SIZE */
	uint8_t config[PCIE_CONFIG_SIZE];
	uint8_t wmask[PCIE_CONFIG_SIZE];  /* bits the guest may write */
	uint8_t w1cmask[PCIE_CONFIG_SIZE];/* bits the guest clears by writing 1 */
	enum pci_bar_type bar_type[PCI_NUM_BARS];
	uint64_t bar_size[PCI_NUM_BARS];
	const struct pci_device_hooks *hooks;
	void *opaque;                     /* for the device model */
};

struct pci_bus {
	pthread_mutex_t lock;
	struct pci_device *dev[PCI_SLOTS * PCI_FUNCS]; /* by devfn; bus 0 only */
};

void pci_bus_init(struct pci_bus *bus);
void pci_bus_destroy(struct pci_bus *bus); /* does not free devices */

/* Prepare a type-0 function: IDs, class (0xCCSSPP), revision; command
 * bits IO/MEMORY/MASTER/PARITY/SERR/INTX_DISABLE and the interrupt line,
 * cache line and latency registers are writable; the rest read-only.
 * pcie selects a 4 KiB config space. */
void pci_device_init(struct pci_device *dev, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, bool pcie);
/* Declare BAR bar: size a power of two (>= 16 for memory, >= 4 for I/O,
 * at most 2 GiB for MEM32/IO). Returns 0 or -EINVAL. A MEM64 BAR uses
 * bar and bar + 1. */
int pci_device_set_bar(struct pci_device *dev, unsigned bar, enum pci_bar_type type,
		       uint64_t size, uint8_t flags);
/* The address BAR bar holds now (both halves for MEM64). */
uint64_t pci_device_bar_address(const struct pci_device *dev, unsigned bar);

/* Plug dev into bus 0 at dev->devfn: 0, -EBUSY, -EINVAL. */
int pci_bus_add(struct pci_bus *bus, struct pci_device *dev);
void pci_bus_remove(struct pci_bus *bus, struct pci_device *dev);

/* One config access. size is 1, 2 or 4 and off must be size-aligned
 * within the function's space; anything else (misaligned, beyond 4 KiB)
 * reads all ones and writes nothing. Absent functions and buses other
 * than 0 read all ones. */
uint32_t pci_bus_config_read(struct pci_bus *bus, uint8_t busno, uint8_t devfn, unsigned off,
			     unsigned size);
void pci_bus_config_write(struct pci_bus *bus, uint8_t busno, uint8_t devfn, unsigned off,
			  unsigned size, uint32_t value);

/* Little-endian helpers for building config space. */
static inline void pci_set_byte(uint8_t *c, unsigned off, uint8_t v) { c[off] = v; }
static inline void pci_set_word(uint8_t *c, unsigned off, uint16_t v)
{
	c[off] = (uint8_t)v;
	c[off + 1] = (uint8_t)(v >> 8);
}
static inline void pci_set_long(uint8_t *c, unsigned off, uint32_t v)
{
	pci_set_word(c, off, (uint16_t)v);
	pci_set_word(c, off + 2, (uint16_t)(v >> 16));
}
static inline uint16_t pci_get_word(const uint8_t *c, unsigned off)
{
	return (uint16_t)(c[off] | (c[off + 1] << 8));
}
static inline uint32_t pci_get_long(const uint8_t *c, unsigned off)
{
	return (uint32_t)pci_get_word(c, off) | ((uint32_t)pci_get_word(c, off + 2) << 16);
}

#endif
