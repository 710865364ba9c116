/* PCI bus 0: config space storage and the generic rules of config writes
 * (write masks, write-1-to-clear bits, BAR decoding and its hook). */
#include "devices/pci/pci.h"

#include <errno.h>
#include <string.h>

void pci_bus_init(struct pci_bus *bus)
{
	memset(bus, 0, sizeof(*bus));
	pthread_mutex_init(&bus->lock, NULL);
}

void pci_bus_destroy(struct pci_bus *bus)
{
	pthread_mutex_destroy(&bus->lock);
}

void pci_device_init(struct pci_device *dev, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, bool pcie)
{
	uint8_t devfn = dev->devfn;
	const struct pci_device_hooks *hooks = dev->hooks;
	void *opaque = dev->opaque;
	memset(dev, 0, sizeof(*dev));
	dev->devfn = devfn;
	dev->hooks = hooks;
	dev->opaque = opaque;
	dev->name = name;
	dev->config_size = pcie ? PCIE_CONFIG_SIZE : PCI_CONFIG_SIZE;
	uint8_t *c = dev->config;
	pci_set_word(c, PCI_VENDOR_ID, vendor);
	pci_set_word(c, PCI_DEVICE_ID, device);
	pci_set_byte(c, PCI_REVISION_ID, revision);
	pci_set_byte(c, PCI_CLASS_PROG, (uint8_t)class_code);
	pci_set_word(c, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
	pci_set_byte(c, PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL);
	pci_set_word(dev->wmask, PCI_COMMAND,
		     PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
		     PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	/* Status error bits are RW1C: master/target aborts, parity, SERR. */
	pci_set_word(dev->w1cmask, PCI_STATUS, 0xF900);
	dev->wmask[PCI_CACHE_LINE_SIZE] = 0xFF;
	dev->wmask[PCI_LATENCY_TIMER] = 0xFF;
	dev->wmask[PCI_INTERRUPT_LINE] = 0xFF;
}

int pci_device_set_bar(struct pci_device *dev, unsigned bar, enum pci_bar_type type,
		       uint64_t size, uint8_t flags)
{
	if (bar >= PCI_NUM_BARS || (size & (size - 1)) || type == PCI_BAR_NONE)
		return -EINVAL;
	if (type == PCI_BAR_MEM64 && bar + 1 >= PCI_NUM_BARS)
		return -EINVAL;
	if (type == PCI_BAR_IO ? (size < 4 || size > 0x10000) : size < 16)
		return -EINVAL;
	if (type != PCI_BAR_MEM64 && size > 0x80000000ULL)
		return -EINVAL;
	unsigned off = PCI_BAR0 + 4 * bar;
	uint32_t low;
	uint64_t mask = ~(size - 1);
	if (type == PCI_BAR_IO) {
		low = 0x1;
		pci_set_long(dev->wmask, off, (uint32_t)mask & ~0x3u);
	} else {
		low = (type == PCI_BAR_MEM64 ? 0x4u : 0u) | (flags & PCI_BAR_PREFETCH);
		pci_set_long(dev->wmask, off, (uint32_t)mask & ~0xFu);
	}
	pci_set_long(dev->config, off, low);
	dev->bar_type[bar] = type;
	dev->bar_size[bar] = size;
	if (type == PCI_BAR_MEM64) {
		pci_set_long(dev->wmask, off + 4, (uint32_t)(mask >> 32));
		pci_set_long(dev->config, off + 4, 0);
		dev->bar_type[bar + 1] = PCI_BAR_NONE;
		dev->bar_size[bar + 1] = 0;
	}
	return 0;
}

uint64_t pci_device_bar_address(const struct pci_device *dev, unsigned bar)
{
	if (bar >= PCI_NUM_BARS)
		return 0;
	uint32_t low = pci_get_long(dev->config, PCI_BAR0 + 4 * bar);
	switch (dev->bar_type[bar]) {
	case PCI_BAR_IO:
		return low & ~0x3u;
	case PCI_BAR_MEM32:
		return low & ~0xFu;
	case PCI_BAR_MEM64:
		return (low & ~0xFu) | ((uint64_t)pci_get_long(dev->config, PCI_BAR0 + 4 * bar + 4) << 32);
	case PCI_BAR_NONE:
		break;
	}
	return 0;
}

int pci_bus_add(struct pci_bus *bus, struct pci_device *dev)
{
	if (!dev->config_size)
		return -EINVAL;
	int ret = 0;
	pthread_mutex_lock(&bus->lock);
	if (bus->dev[dev->devfn])
		ret = -EBUSY;
	else
		bus->dev[dev->devfn] = dev;
	pthread_mutex_unlock(&bus->lock);
	return ret;
}

void pci_bus_remove(struct pci_bus *bus, struct pci_device *dev)
{
	pthread_mutex_lock(&bus->lock);
	if (bus->dev[dev->devfn] == dev)
		bus->dev[dev->devfn] = NULL;
	pthread_mutex_unlock(&bus->lock);
}

static bool access_ok(const struct pci_device *dev, unsigned off, unsigned size)
{
	return (size == 1 || size == 2 || size == 4) && (off & (size - 1)) == 0 &&
	       off + size <= dev->config_size;
}

static struct pci_device *lookup(struct pci_bus *bus, uint8_t busno, uint8_t devfn)
{
	if (busno != 0)
		return NULL;
	struct pci_device *dev = bus->dev[devfn];
	/* A multi-function device answers for functions 1-7 only when
	 * function 0 exists (guests scan function 0 first). */
	if (dev && (devfn & 7) && !bus->dev[devfn & ~7])
		return NULL;
	return dev;
}

uint32_t pci_bus_config_read(struct pci_bus *bus, uint8_t busno, uint8_t devfn, unsigned off,
			     unsigned size)
{
	uint32_t ones = size >= 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
	uint32_t v = ones;
	pthread_mutex_lock(&bus->lock);
	struct pci_device *dev = lookup(bus, busno, devfn);
	if (dev && access_ok(dev, off, size)) {
		if (!dev->hooks || !dev->hooks->config_read ||
		    !dev->hooks->config_read(dev, off, size, &v)) {
			v = 0;
			for (unsigned i = 0; i < size; i++)
				v |= (uint32_t)dev->config[off + i] << (8 * i);
		}
		v &= ones;
	}
	pthread_mutex_unlock(&bus->lock);
	return v;
}

static bool bar_enabled(const struct pci_device *dev, unsigned bar)
{
	uint16_t cmd = pci_get_word(dev->config, PCI_COMMAND);
	return dev->bar_type[bar] == PCI_BAR_IO ? (cmd & PCI_COMMAND_IO) : (cmd & PCI_COMMAND_MEMORY);
}

void pci_bus_config_write(struct pci_bus *bus, uint8_t busno, uint8_t devfn, unsigned off,
			  unsigned size, uint32_t value)
{
	pthread_mutex_lock(&bus->lock);
	struct pci_device *dev = lookup(bus, busno, devfn);
	if (!dev || !access_ok(dev, off, size)) {
		pthread_mutex_unlock(&bus->lock);
		return;
	}
	uint64_t old_addr[PCI_NUM_BARS];
	bool old_en[PCI_NUM_BARS];
	for (unsigned b = 0; b < PCI_NUM_BARS; b++) {
		old_addr[b] = pci_device_bar_address(dev, b);
		old_en[b] = bar_enabled(dev, b);
	}
	for (unsigned i = 0; i < size; i++) {
		uint8_t b = (uint8_t)(value >> (8 * i));
		uint8_t *c = &dev->config[off + i];
		uint8_t wm = dev->wmask[off + i], w1c = dev->w1cmask[off + i];
		*c = (uint8_t)((*c & ~wm) | (b & wm));
		*c &= (uint8_t)~(b & w1c);
	}
	if (dev->hooks && dev->hooks->bar_update) {
		for (unsigned b = 0; b < PCI_NUM_BARS; b++) {
			if (dev->bar_type[b] == PCI_BAR_NONE)
				continue;
			uint64_t addr = pci_device_bar_address(dev, b);
			bool en = bar_enabled(dev, b);
			if (addr != old_addr[b] || en != old_en[b])
				dev->hooks->bar_update(dev, b, addr, en);
		}
	}
	if (dev->hooks && dev->hooks->config_write)
		dev->hooks->config_write(dev, off, size, value);
	pthread_mutex_unlock(&bus->lock);
}
