#include "devices/virtio/virtio_pci.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci/msix.h"
#include "devices/pci/pci.h"
#include "util/log.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

struct virtio_pci {
	struct vm *vm;
	struct virtio_device *vd;
	struct virtio_pci_owner owner;
	struct pci_device pdev;
	struct msix msix;
	unsigned gsi;
	uint64_t bar_init;          /* where creation placed BAR 0 */
	char name[48];

	/* Guarded by the PCI bus lock (BAR hook, create, destroy, reset). */
	bool mapped, plugged;
	uint64_t mapped_at;
	_Atomic bool intx_disabled; /* command register INTX_DISABLE */
	_Atomic bool bus_master;    /* command register MASTER: DMA and MSI allowed */

	/* Transport registers, guarded by lock. */
	pthread_mutex_t lock;
	uint32_t dfselect, gfselect;
	uint16_t msix_config;
	uint16_t queue_select;
	uint16_t q_vector[VIRTIO_PCI_MAX_QUEUES];
	uint64_t q_desc[VIRTIO_PCI_MAX_QUEUES];
	uint64_t q_avail[VIRTIO_PCI_MAX_QUEUES];
	uint64_t q_used[VIRTIO_PCI_MAX_QUEUES];
	uint8_t isr;
	bool intx_level;
};

uint64_t pci_mmio_alloc(struct pci_mmio_window *w, uint64_t size)
{
	if (!size || (size & (size - 1)))
		return 0;
	uint64_t a = (w->next + size - 1) & ~(size - 1);
	if (a < w->next || a + size > w->end || a + size < a)
		return 0;
	w->next = a + size;
	return a;
}

uint32_t virtio_pci_class(uint32_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_NET: return 0x020000;     /* network, ethernet */
	case VIRTIO_ID_BLOCK: return 0x010000;   /* mass storage, SCSI (as QEMU) */
	case VIRTIO_ID_CONSOLE: return 0x078000; /* communication, other */
	default: return 0xFF0000;                /* unassigned class */
	}
}

uint8_t virtio_pci_devfn(const struct virtio_pci *vp)
{
	return vp->pdev.devfn;
}

/* ---- interrupts ---- */

/* INTA follows the ISR, unless the command register disables INTx or
 * MSI-X is on (a function using MSI-X never asserts INTx). */
static void update_intx_locked(struct virtio_pci *vp)
{
	bool level = vp->isr && !atomic_load(&vp->intx_disabled) && !msix_enabled(&vp->msix);
	if (level != vp->intx_level) {
		vp->intx_level = level;
		vm_irq_line(vp->vm, vp->gsi, level);
	}
}

/* MSI-X enabled: the vector (or nothing, for NO_VECTOR). Disabled: ISR bit
 * and INTA. msix_notify answers -ENODEV when MSI-X got disabled meanwhile. */
static void raise_irq(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	pthread_mutex_lock(&vp->lock);
	int r = -ENODEV;
	/* An MSI is a memory write: without bus mastering there is none. */
	if (msix_enabled(&vp->msix))
		r = vector == MSIX_NO_VECTOR || !atomic_load(&vp->bus_master) ?
			    0 : msix_notify(&vp->msix, vector);
	if (r == -ENODEV) {
		vp->isr |= isr_bit;
		update_intx_locked(vp);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void hook_queue_irq(void *opaque, unsigned q)
{
	struct virtio_pci *vp = opaque;
	if (q >= VIRTIO_PCI_MAX_QUEUES)
		return;
	pthread_mutex_lock(&vp->lock);
	uint16_t v = vp->q_vector[q];
	pthread_mutex_unlock(&vp->lock);
	raise_irq(vp, v, VIRTIO_PCI_ISR_QUEUE);
}

static void hook_config_irq(void *opaque)
{
	struct virtio_pci *vp = opaque;
	pthread_mutex_lock(&vp->lock);
	uint16_t v = vp->msix_config;
	pthread_mutex_unlock(&vp->lock);
	raise_irq(vp, v, VIRTIO_PCI_ISR_CONFIG);
}

/* The device wrote guest RAM: the CPU engine drops code decoded there. */
static void hook_mem_written(void *opaque, uint64_t gpa, uint64_t len)
{
	struct virtio_pci *vp = opaque;
	if (vp->vm->engine && vp->vm->engine->mem_written)
		vp->vm->engine->mem_written(vp->vm, gpa, len);
}

/* ---- common configuration ---- */

/* Transport registers back to their reset values (device status 0). */
static void transport_reset(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	vp->dfselect = vp->gfselect = 0;
	vp->msix_config = MSIX_NO_VECTOR;
	vp->queue_select = 0;
	for (unsigned i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++) {
		vp->q_vector[i] = MSIX_NO_VECTOR;
		vp->q_desc[i] = vp->q_avail[i] = vp->q_used[i] = 0;
	}
	vp->isr = 0;
	update_intx_locked(vp);
	pthread_mutex_unlock(&vp->lock);
}

/* Width of the common-config field at off, 0 if none starts there. The
 * 64-bit queue addresses are described as 32-bit halves. */
static unsigned field_width(uint64_t off)
{
	if (off < VIRTIO_PCI_COMMON_MSIX)
		return (off & 3) ? 0 : 4;
	if (off >= VIRTIO_PCI_COMMON_Q_DESCLO && off < VIRTIO_PCI_COMMON_LEN)
		return (off & 3) ? 0 : 4;
	if (off == VIRTIO_PCI_COMMON_STATUS || off == VIRTIO_PCI_COMMON_CFGGEN)
		return 1;
	if (off < VIRTIO_PCI_COMMON_Q_DESCLO)
		return (off & 1) ? 0 : 2;
	return 0;
}

static bool queue_ok(struct virtio_pci *vp, unsigned q)
{
	return q < vp->vd->nr_queues && q < VIRTIO_PCI_MAX_QUEUES;
}

static uint32_t addr_half(uint64_t v, uint64_t off)
{
	return (off & 4) ? (uint32_t)(v >> 32) : (uint32_t)v;
}

static uint32_t common_read(struct virtio_pci *vp, uint64_t off)
{
	struct virtio_device *vd = vp->vd;
	pthread_mutex_lock(&vp->lock);
	unsigned q = vp->queue_select;
	uint32_t dfsel = vp->dfselect, gfsel = vp->gfselect, v = 0;
	bool qok = queue_ok(vp, q);
	switch (off) {
	case VIRTIO_PCI_COMMON_MSIX: v = vp->msix_config; break;
	case VIRTIO_PCI_COMMON_Q_MSIX: v = qok ? vp->q_vector[q] : MSIX_NO_VECTOR; break;
	case VIRTIO_PCI_COMMON_Q_DESCLO: case VIRTIO_PCI_COMMON_Q_DESCHI:
		v = qok ? addr_half(vp->q_desc[q], off) : 0; break;
	case VIRTIO_PCI_COMMON_Q_AVAILLO: case VIRTIO_PCI_COMMON_Q_AVAILHI:
		v = qok ? addr_half(vp->q_avail[q], off) : 0; break;
	case VIRTIO_PCI_COMMON_Q_USEDLO: case VIRTIO_PCI_COMMON_Q_USEDHI:
		v = qok ? addr_half(vp->q_used[q], off) : 0; break;
	}
	pthread_mutex_unlock(&vp->lock);

	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT: return dfsel;
	case VIRTIO_PCI_COMMON_DF: return virtio_get_device_features(vd, dfsel);
	case VIRTIO_PCI_COMMON_GFSELECT: return gfsel;
	case VIRTIO_PCI_COMMON_GF: return virtio_get_driver_features(vd, gfsel);
	case VIRTIO_PCI_COMMON_NUMQ: return vd->nr_queues;
	case VIRTIO_PCI_COMMON_STATUS: return virtio_get_status(vd);
	case VIRTIO_PCI_COMMON_CFGGEN: return virtio_config_generation(vd);
	case VIRTIO_PCI_COMMON_Q_SELECT: return q;
	case VIRTIO_PCI_COMMON_Q_SIZE:
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		if (!qok)
			return 0;  /* size 0: the queue does not exist */
		pthread_mutex_lock(&vd->lock);
		v = off == VIRTIO_PCI_COMMON_Q_SIZE ? vd->queues[q].size : vd->queues[q].ready;
		pthread_mutex_unlock(&vd->lock);
		return v;
	case VIRTIO_PCI_COMMON_Q_NOFF: return qok ? q : 0;
	}
	return v;
}

static uint16_t checked_vector(struct virtio_pci *vp, uint32_t v)
{
	/* A vector the table does not have is refused: the driver reads back
	 * NO_VECTOR (4.1.5.1.2). */
	return v < vp->msix.nr ? (uint16_t)v : MSIX_NO_VECTOR;
}

static void set_addr_half(uint64_t *a, uint64_t off, uint32_t v)
{
	if (off & 4)
		*a = (*a & 0xFFFFFFFFULL) | ((uint64_t)v << 32);
	else
		*a = (*a & ~0xFFFFFFFFULL) | v;
}

static void queue_enable(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	unsigned q = vp->queue_select;
	bool qok = queue_ok(vp, q);
	uint64_t desc = 0, avail = 0, used = 0;
	if (qok) {
		desc = vp->q_desc[q];
		avail = vp->q_avail[q];
		used = vp->q_used[q];
	}
	pthread_mutex_unlock(&vp->lock);
	if (!qok)
		return;
	/* Both refuse (and the core may set NEEDS_RESET) when the queue is
	 * already live or its rings are not in RAM. */
	if (virtio_queue_set_addr(vp->vd, q, desc, avail, used) == 0)
		virtio_queue_set_ready(vp->vd, q);
}

static void common_write(struct virtio_pci *vp, uint64_t off, uint32_t v)
{
	struct virtio_device *vd = vp->vd;
	switch (off) {
	case VIRTIO_PCI_COMMON_DF:
	case VIRTIO_PCI_COMMON_NUMQ:
	case VIRTIO_PCI_COMMON_CFGGEN:
	case VIRTIO_PCI_COMMON_Q_NOFF:
		return; /* read-only */
	case VIRTIO_PCI_COMMON_GF: {
		pthread_mutex_lock(&vp->lock);
		uint32_t sel = vp->gfselect;
		pthread_mutex_unlock(&vp->lock);
		virtio_set_driver_features(vd, sel, v);
		return;
	}
	case VIRTIO_PCI_COMMON_STATUS:
		virtio_set_status(vd, (uint8_t)v);
		if ((uint8_t)v == 0)
			transport_reset(vp);
		return;
	case VIRTIO_PCI_COMMON_Q_SIZE: {
		pthread_mutex_lock(&vp->lock);
		unsigned q = vp->queue_select;
		pthread_mutex_unlock(&vp->lock);
		if (queue_ok(vp, q) && virtio_queue_set_size(vd, q, (uint16_t)v))
			kite_debug("%s: queue %u: size %u refused", vd->name, q, v);
		return;
	}
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		/* Only 1 means something; the driver must not write 0. */
		if (v == 1)
			queue_enable(vp);
		return;
	}

	pthread_mutex_lock(&vp->lock);
	unsigned q = vp->queue_select;
	bool qok = queue_ok(vp, q);
	/* Addresses are writable while the queue is being set up; the core
	 * re-checks when the driver enables it. */
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT: vp->dfselect = v; break;
	case VIRTIO_PCI_COMMON_GFSELECT: vp->gfselect = v; break;
	case VIRTIO_PCI_COMMON_MSIX: vp->msix_config = checked_vector(vp, v); break;
	case VIRTIO_PCI_COMMON_Q_SELECT: vp->queue_select = (uint16_t)v; break;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (qok)
			vp->q_vector[q] = checked_vector(vp, v);
		break;
	case VIRTIO_PCI_COMMON_Q_DESCLO: case VIRTIO_PCI_COMMON_Q_DESCHI:
		if (qok)
			set_addr_half(&vp->q_desc[q], off, v);
		break;
	case VIRTIO_PCI_COMMON_Q_AVAILLO: case VIRTIO_PCI_COMMON_Q_AVAILHI:
		if (qok)
			set_addr_half(&vp->q_avail[q], off, v);
		break;
	case VIRTIO_PCI_COMMON_Q_USEDLO: case VIRTIO_PCI_COMMON_Q_USEDHI:
		if (qok)
			set_addr_half(&vp->q_used[q], off, v);
		break;
	}
	pthread_mutex_unlock(&vp->lock);
}

/* A field accessed with its own width, or a 64-bit address as one 8-byte
 * access (split into its halves). Anything else reads 0 / is dropped. */
static uint64_t common_access_read(struct virtio_pci *vp, uint64_t off, unsigned size)
{
	unsigned w = field_width(off);
	if (!w)
		return 0;
	if (size == 8 && w == 4 && off >= VIRTIO_PCI_COMMON_Q_DESCLO && !(off & 7))
		return common_read(vp, off) | ((uint64_t)common_read(vp, off + 4) << 32);
	return size == w ? common_read(vp, off) : 0;
}

static void common_access_write(struct virtio_pci *vp, uint64_t off, unsigned size, uint64_t v)
{
	unsigned w = field_width(off);
	if (!w)
		return;
	if (size == 8 && w == 4 && off >= VIRTIO_PCI_COMMON_Q_DESCLO && !(off & 7)) {
		common_write(vp, off, (uint32_t)v);
		common_write(vp, off + 4, (uint32_t)(v >> 32));
		return;
	}
	if (size == w)
		common_write(vp, off, (uint32_t)v);
}

/* ---- the BAR ---- */

uint64_t virtio_pci_bar_read(struct virtio_pci *vp, uint64_t off, unsigned size)
{
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return ~0ULL;
	if (off < VIRTIO_PCI_ISR_OFF) {
		return off < VIRTIO_PCI_COMMON_LEN ? common_access_read(vp, off, size) : 0;
	} else if (off < VIRTIO_PCI_DEVICE_OFF) {
		if (off != VIRTIO_PCI_ISR_OFF || size != 1)
			return 0;
		/* Reading the ISR clears it and deasserts INTx (4.1.4.5). */
		pthread_mutex_lock(&vp->lock);
		uint8_t v = vp->isr;
		vp->isr = 0;
		update_intx_locked(vp);
		pthread_mutex_unlock(&vp->lock);
		return v;
	} else if (off < VIRTIO_PCI_NOTIFY_OFF) {
		uint64_t v = 0;
		virtio_config_read(vp->vd, (uint32_t)(off - VIRTIO_PCI_DEVICE_OFF), &v, size);
		return v;
	} else if (off < VIRTIO_PCI_MSIX_TABLE_OFF) {
		return 0;
	} else if (off < VIRTIO_PCI_MSIX_PBA_OFF) {
		return msix_table_read(&vp->msix, off - VIRTIO_PCI_MSIX_TABLE_OFF, size);
	} else if (off < VIRTIO_PCI_MSIX_PBA_OFF + 0x1000) {
		return msix_pba_read(&vp->msix, off - VIRTIO_PCI_MSIX_PBA_OFF, size);
	}
	return 0;
}

void virtio_pci_bar_write(struct virtio_pci *vp, uint64_t off, unsigned size, uint64_t value)
{
	if (size != 1 && size != 2 && size != 4 && size != 8)
		return;
	if (off < VIRTIO_PCI_ISR_OFF) {
		if (off < VIRTIO_PCI_COMMON_LEN)
			common_access_write(vp, off, size, value);
	} else if (off < VIRTIO_PCI_DEVICE_OFF) {
		return; /* the ISR is read-only */
	} else if (off < VIRTIO_PCI_NOTIFY_OFF) {
		virtio_config_write(vp->vd, (uint32_t)(off - VIRTIO_PCI_DEVICE_OFF), &value, size);
	} else if (off < VIRTIO_PCI_MSIX_TABLE_OFF) {
		uint64_t rel = off - VIRTIO_PCI_NOTIFY_OFF;
		/* The address names the queue; the value (its index, without
		 * NOTIFICATION_DATA) adds nothing. A device that may not master
		 * the bus cannot read its rings. */
		if (rel % VIRTIO_PCI_NOTIFY_MULT == 0 && atomic_load(&vp->bus_master))
			virtio_queue_notify(vp->vd, (unsigned)(rel / VIRTIO_PCI_NOTIFY_MULT));
	} else if (off < VIRTIO_PCI_MSIX_PBA_OFF) {
		msix_table_write(&vp->msix, off - VIRTIO_PCI_MSIX_TABLE_OFF, size, value);
	}
}

static uint64_t bar_read_cb(void *opaque, uint64_t off, unsigned size)
{
	return virtio_pci_bar_read(opaque, off, size);
}

static void bar_write_cb(void *opaque, uint64_t off, unsigned size, uint64_t value)
{
	virtio_pci_bar_write(opaque, off, size, value);
}

/* ---- PCI hooks (PCI bus lock held) ---- */

static bool overlaps_ram(const struct guest_memory *mem, uint64_t a, uint64_t len)
{
	for (int i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->region[i];
		if (a < r->gpa + r->size && r->gpa < a + len)
			return true;
	}
	return false;
}

/* Map BAR 0 at addr when decode is on and the place is sane: not 0, below
 * the 48-bit physical limit, not over RAM, not over another device. A
 * nonsense address leaves the BAR unmapped (the guest sees all ones). */
static void map_bar_locked(struct virtio_pci *vp, uint64_t addr, bool enabled)
{
	if (vp->mapped && (!enabled || addr != vp->mapped_at)) {
		bus_unregister(&vp->vm->mmio, vp->mapped_at, vp);
		vp->mapped = false;
	}
	if (!enabled || vp->mapped)
		return;
	if (!addr || addr >= (1ULL << 48) - VIRTIO_PCI_BAR_SIZE ||
	    overlaps_ram(&vp->vm->mem, addr, VIRTIO_PCI_BAR_SIZE)) {
		kite_debug("%s: BAR 0 at 0x%llx not mapped", vp->name, (unsigned long long)addr);
		return;
	}
	int ret = bus_register(&vp->vm->mmio, addr, VIRTIO_PCI_BAR_SIZE, bar_read_cb, bar_write_cb,
			       vp, vp->name);
	if (ret) {
		kite_debug("%s: BAR 0 at 0x%llx not mapped: %s", vp->name, (unsigned long long)addr,
			   strerror(-ret));
		return;
	}
	vp->mapped = true;
	vp->mapped_at = addr;
}

static void hook_bar_update(struct pci_device *dev, unsigned bar, uint64_t addr, bool enabled)
{
	if (bar == VIRTIO_PCI_BAR)
		map_bar_locked(dev->opaque, addr, enabled);
}

/* The PCI_CFG capability: bar, offset and length say where an access to
 * pci_cfg_data goes (4.1.4.9). */
static bool pcicfg_target(struct virtio_pci *vp, uint64_t *off, unsigned *len)
{
	const uint8_t *c = vp->pdev.config + VIRTIO_PCI_CAP_PCICFG_AT;
	uint8_t bar = c[VIRTIO_PCI_CAP_BAR];
	uint32_t o = pci_get_long(c, VIRTIO_PCI_CAP_OFFSET);
	uint32_t l = pci_get_long(c, VIRTIO_PCI_CAP_LENGTH);
	if (bar != VIRTIO_PCI_BAR || (l != 1 && l != 2 && l != 4) || (o & (l - 1)) ||
	    o >= VIRTIO_PCI_BAR_SIZE)
		return false;
	*off = o;
	*len = l;
	return true;
}

static bool in_pcicfg_data(unsigned off, unsigned size)
{
	unsigned d = VIRTIO_PCI_CAP_PCICFG_AT + VIRTIO_PCI_CAP_PCI_CFG_DATA;
	return off >= d && off + size <= d + 4;
}

static bool hook_config_read(struct pci_device *dev, unsigned off, unsigned size, uint32_t *value)
{
	struct virtio_pci *vp = dev->opaque;
	uint64_t boff;
	unsigned len;
	if (!in_pcicfg_data(off, size))
		return false;
	if (!pcicfg_target(vp, &boff, &len)) {
		*value = 0;
		return true;
	}
	uint64_t v = virtio_pci_bar_read(vp, boff, len);
	*value = (uint32_t)(v >> (8 * (off - VIRTIO_PCI_CAP_PCICFG_AT - VIRTIO_PCI_CAP_PCI_CFG_DATA)));
	return true;
}

static void hook_config_write(struct pci_device *dev, unsigned off, unsigned size, uint32_t value)
{
	struct virtio_pci *vp = dev->opaque;
	(void)value;
	msix_config_write(&vp->msix, dev, off, size);
	unsigned ctl = VIRTIO_PCI_CAP_MSIX_AT + PCI_MSIX_FLAGS;
	bool cmd_written = off < PCI_COMMAND + 2 && off + size > PCI_COMMAND;
	bool msix_written = off < ctl + 2 && off + size > ctl;
	if (cmd_written || msix_written) {
		uint16_t cmd = pci_get_word(dev->config, PCI_COMMAND);
		atomic_store(&vp->intx_disabled, (cmd & PCI_COMMAND_INTX_DISABLE) != 0);
		atomic_store(&vp->bus_master, (cmd & PCI_COMMAND_MASTER) != 0);
		pthread_mutex_lock(&vp->lock);
		update_intx_locked(vp);
		pthread_mutex_unlock(&vp->lock);
	}
	uint64_t boff;
	unsigned len;
	if (in_pcicfg_data(off, size) && pcicfg_target(vp, &boff, &len)) {
		uint32_t data = pci_get_long(dev->config,
					     VIRTIO_PCI_CAP_PCICFG_AT + VIRTIO_PCI_CAP_PCI_CFG_DATA);
		virtio_pci_bar_write(vp, boff, len, data & (len == 4 ? 0xFFFFFFFFu : (1u << (8 * len)) - 1));
	}
}

static const struct pci_device_hooks virtio_pci_hooks = {
	.bar_update = hook_bar_update,
	.config_write = hook_config_write,
	.config_read = hook_config_read,
};

/* ---- config space ---- */

static void put_cap(struct pci_device *dev, unsigned at, unsigned next, unsigned len,
		    uint8_t type, uint32_t offset, uint32_t length)
{
	uint8_t *c = dev->config;
	pci_set_byte(c, at, PCI_CAP_ID_VNDR);
	pci_set_byte(c, at + 1, (uint8_t)next);
	pci_set_byte(c, at + 2, (uint8_t)len);
	pci_set_byte(c, at + VIRTIO_PCI_CAP_CFG_TYPE, type);
	pci_set_byte(c, at + VIRTIO_PCI_CAP_BAR, VIRTIO_PCI_BAR);
	pci_set_long(c, at + VIRTIO_PCI_CAP_OFFSET, offset);
	pci_set_long(c, at + VIRTIO_PCI_CAP_LENGTH, length);
}

static int build_config(struct virtio_pci *vp, unsigned slot)
{
	struct pci_device *dev = &vp->pdev;
	struct virtio_device *vd = vp->vd;
	dev->devfn = PCI_DEVFN(slot, 0);
	dev->hooks = &virtio_pci_hooks;
	dev->opaque = vp;
	pci_device_init(dev, vp->name, PCI_VENDOR_ID_VIRTIO,
			(uint16_t)(PCI_DEVICE_ID_VIRTIO_BASE + vd->device_id),
			virtio_pci_class(vd->device_id), 1, false);
	uint8_t *c = dev->config;
	pci_set_word(c, PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID_VIRTIO);
	pci_set_word(c, PCI_SUBSYSTEM_ID, VIRTIO_PCI_SUBSYS_ID);
	pci_set_byte(c, PCI_INTERRUPT_PIN, 1); /* INTA */
	pci_set_byte(c, PCI_INTERRUPT_LINE, (uint8_t)vp->gsi);
	pci_set_word(c, PCI_STATUS, PCI_STATUS_CAP_LIST);
	pci_set_byte(c, PCI_CAPABILITY_LIST, VIRTIO_PCI_CAP_COMMON_AT);
	int ret = pci_device_set_bar(dev, VIRTIO_PCI_BAR, PCI_BAR_MEM64, VIRTIO_PCI_BAR_SIZE, 0);
	if (ret)
		return ret;

	put_cap(dev, VIRTIO_PCI_CAP_COMMON_AT, VIRTIO_PCI_CAP_ISR_AT, 16, VIRTIO_PCI_CAP_COMMON_CFG,
		VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN);
	put_cap(dev, VIRTIO_PCI_CAP_ISR_AT, VIRTIO_PCI_CAP_DEVICE_AT, 16, VIRTIO_PCI_CAP_ISR_CFG,
		VIRTIO_PCI_ISR_OFF, 1);
	put_cap(dev, VIRTIO_PCI_CAP_DEVICE_AT, VIRTIO_PCI_CAP_NOTIFY_AT, 16,
		VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF,
		vd->config_len ? vd->config_len : 4);
	put_cap(dev, VIRTIO_PCI_CAP_NOTIFY_AT, VIRTIO_PCI_CAP_PCICFG_AT, 20,
		VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
		VIRTIO_PCI_NOTIFY_MULT * vd->nr_queues);
	pci_set_long(c, VIRTIO_PCI_CAP_NOTIFY_AT + VIRTIO_PCI_CAP_NOTIFY_MULT_FIELD,
		     VIRTIO_PCI_NOTIFY_MULT);
	put_cap(dev, VIRTIO_PCI_CAP_PCICFG_AT, VIRTIO_PCI_CAP_MSIX_AT, 20, VIRTIO_PCI_CAP_PCI_CFG,
		0, 0);
	/* The PCI_CFG window's bar, offset, length and data are the driver's. */
	dev->wmask[VIRTIO_PCI_CAP_PCICFG_AT + VIRTIO_PCI_CAP_BAR] = 0xFF;
	pci_set_long(dev->wmask, VIRTIO_PCI_CAP_PCICFG_AT + VIRTIO_PCI_CAP_OFFSET, 0xFFFFFFFF);
	pci_set_long(dev->wmask, VIRTIO_PCI_CAP_PCICFG_AT + VIRTIO_PCI_CAP_LENGTH, 0xFFFFFFFF);
	pci_set_long(dev->wmask, VIRTIO_PCI_CAP_PCICFG_AT + VIRTIO_PCI_CAP_PCI_CFG_DATA, 0xFFFFFFFF);
	return msix_init(&vp->msix, vp->vm, dev, VIRTIO_PCI_CAP_MSIX_AT, vd->nr_queues + 1,
			 VIRTIO_PCI_BAR, VIRTIO_PCI_MSIX_TABLE_OFF, VIRTIO_PCI_MSIX_PBA_OFF);
}

/* BAR 0 where creation put it, memory decode and bus mastering on. */
static void program_bar_locked(struct virtio_pci *vp)
{
	uint8_t *c = vp->pdev.config;
	unsigned off = PCI_BAR0 + 4 * VIRTIO_PCI_BAR;
	pci_set_long(c, off, (uint32_t)vp->bar_init | 0x4 /* 64-bit */);
	pci_set_long(c, off + 4, (uint32_t)(vp->bar_init >> 32));
	pci_set_word(c, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	atomic_store(&vp->intx_disabled, false);
	atomic_store(&vp->bus_master, true);
	map_bar_locked(vp, vp->bar_init, true);
}

/* ---- device ops ---- */

static void vp_reset(void *opaque)
{
	struct virtio_pci *vp = opaque;
	virtio_reset(vp->vd);
	transport_reset(vp);
	msix_reset(&vp->msix, NULL);
	pthread_mutex_lock(&vp->vm->pci->lock);
	pci_set_word(vp->pdev.config, VIRTIO_PCI_CAP_MSIX_AT + PCI_MSIX_FLAGS,
		     (uint16_t)(vp->msix.nr - 1));
	program_bar_locked(vp);
	pthread_mutex_unlock(&vp->vm->pci->lock);
}

static void vp_destroy(void *opaque)
{
	struct virtio_pci *vp = opaque;
	struct pci_bus *pci = vp->vm->pci;
	if (pci) {
		pthread_mutex_lock(&pci->lock);
		map_bar_locked(vp, 0, false);
		pthread_mutex_unlock(&pci->lock);
		if (vp->plugged)
			pci_bus_remove(pci, &vp->pdev);
	}
	/* Lower INTA so a level line does not stay up after us. */
	pthread_mutex_lock(&vp->lock);
	vp->isr = 0;
	update_intx_locked(vp);
	pthread_mutex_unlock(&vp->lock);
	if (vp->owner.destroy)
		vp->owner.destroy(vp->owner.opaque);
	msix_fini(&vp->msix);
	pthread_mutex_destroy(&vp->lock);
	free(vp);
}

/* ---- save / restore ---- */

#define VP_SAVE_MAGIC 0x50435056u /* "VPCP" */
#define VP_SAVE_VERSION 1

struct vp_saved {
	uint32_t magic, version, nr_queues;
	uint8_t devfn, isr, pad[2];
	uint32_t dfselect, gfselect;
	uint16_t msix_config, queue_select;
	uint32_t msix_len, virtio_len;
	uint8_t config[PCI_CONFIG_SIZE];
	uint16_t q_vector[VIRTIO_PCI_MAX_QUEUES];
	uint64_t q_desc[VIRTIO_PCI_MAX_QUEUES];
	uint64_t q_avail[VIRTIO_PCI_MAX_QUEUES];
	uint64_t q_used[VIRTIO_PCI_MAX_QUEUES];
	/* then the MSI-X blob, then the virtio blob */
};

static size_t vp_save(void *opaque, void *buf, size_t len)
{
	struct virtio_pci *vp = opaque;
	if (vp->owner.quiesce)
		vp->owner.quiesce(vp->owner.opaque);
	size_t mlen = msix_save(&vp->msix, NULL, 0);
	size_t vlen = virtio_save(vp->vd, NULL, 0);
	size_t need = sizeof(struct vp_saved) + mlen + vlen;
	if (len < need)
		return need;
	struct vp_saved saved, *s = &saved;
	memset(s, 0, sizeof(*s));
	s->magic = VP_SAVE_MAGIC;
	s->version = VP_SAVE_VERSION;
	s->nr_queues = vp->vd->nr_queues;
	s->devfn = vp->pdev.devfn;
	s->msix_len = (uint32_t)mlen;
	s->virtio_len = (uint32_t)vlen;
	pthread_mutex_lock(&vp->vm->pci->lock);
	memcpy(s->config, vp->pdev.config, PCI_CONFIG_SIZE);
	pthread_mutex_unlock(&vp->vm->pci->lock);
	pthread_mutex_lock(&vp->lock);
	s->isr = vp->isr;
	s->dfselect = vp->dfselect;
	s->gfselect = vp->gfselect;
	s->msix_config = vp->msix_config;
	s->queue_select = vp->queue_select;
	memcpy(s->q_vector, vp->q_vector, sizeof(s->q_vector));
	memcpy(s->q_desc, vp->q_desc, sizeof(s->q_desc));
	memcpy(s->q_avail, vp->q_avail, sizeof(s->q_avail));
	memcpy(s->q_used, vp->q_used, sizeof(s->q_used));
	pthread_mutex_unlock(&vp->lock);
	uint8_t *p = buf;
	memcpy(p, s, sizeof(*s));
	msix_save(&vp->msix, p + sizeof(struct vp_saved), mlen);
	virtio_save(vp->vd, p + sizeof(struct vp_saved) + mlen, vlen);
	return need;
}

static int vp_restore(void *opaque, const void *buf, size_t len)
{
	struct virtio_pci *vp = opaque;
	if (len < sizeof(struct vp_saved))
		return -EINVAL;
	struct vp_saved saved, *s = &saved;
	memcpy(s, buf, sizeof(*s));
	const uint8_t *p = (const uint8_t *)buf + sizeof(*s);
	int ret = -EINVAL;
	if (s->magic != VP_SAVE_MAGIC || s->version != VP_SAVE_VERSION ||
	    s->nr_queues != vp->vd->nr_queues || s->devfn != vp->pdev.devfn ||
	    (uint64_t)sizeof(*s) + s->msix_len + s->virtio_len != len)
		goto out;
	/* Checked pieces first, so a bad blob changes nothing it can avoid. */
	if ((ret = virtio_restore(vp->vd, p + s->msix_len, s->virtio_len)))
		goto out;
	if ((ret = msix_restore(&vp->msix, p, s->msix_len)))
		goto out;
	pthread_mutex_lock(&vp->lock);
	vp->isr = s->isr & (VIRTIO_PCI_ISR_QUEUE | VIRTIO_PCI_ISR_CONFIG);
	vp->dfselect = s->dfselect;
	vp->gfselect = s->gfselect;
	vp->msix_config = checked_vector(vp, s->msix_config);
	vp->queue_select = s->queue_select;
	for (unsigned i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++) {
		vp->q_vector[i] = checked_vector(vp, s->q_vector[i]);
		vp->q_desc[i] = s->q_desc[i];
		vp->q_avail[i] = s->q_avail[i];
		vp->q_used[i] = s->q_used[i];
	}
	pthread_mutex_unlock(&vp->lock);
	/* Config space: only what the guest could have written changes, so
	 * IDs, capabilities and masks stay this build's. */
	pthread_mutex_lock(&vp->vm->pci->lock);
	for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++) {
		uint8_t wm = vp->pdev.wmask[i] | vp->pdev.w1cmask[i];
		vp->pdev.config[i] = (uint8_t)((vp->pdev.config[i] & ~wm) | (s->config[i] & wm));
	}
	uint16_t cmd = pci_get_word(vp->pdev.config, PCI_COMMAND);
	atomic_store(&vp->intx_disabled, (cmd & PCI_COMMAND_INTX_DISABLE) != 0);
	atomic_store(&vp->bus_master, (cmd & PCI_COMMAND_MASTER) != 0);
	map_bar_locked(vp, pci_device_bar_address(&vp->pdev, VIRTIO_PCI_BAR),
		       cmd & PCI_COMMAND_MEMORY);
	pthread_mutex_unlock(&vp->vm->pci->lock);
	pthread_mutex_lock(&vp->lock);
	update_intx_locked(vp);
	pthread_mutex_unlock(&vp->lock);
	ret = 0;
out:
	return ret;
}

const struct device_ops virtio_pci_device_ops = {
	.name = "virtio-pci", .reset = vp_reset, .save = vp_save, .restore = vp_restore,
	.destroy = vp_destroy,
};

int virtio_pci_create(struct vm *vm, struct virtio_device *vd, unsigned slot, uint64_t bar_addr,
		      const struct virtio_pci_owner *owner, struct virtio_pci **out)
{
	if (!vm->pci || slot == 0 || slot >= PCI_SLOTS || vd->nr_queues > VIRTIO_PCI_MAX_QUEUES ||
	    vd->config_len > VIRTIO_PCI_DEVICE_LEN || !bar_addr) {
		if (owner && owner->destroy)
			owner->destroy(owner->opaque);
		return -EINVAL;
	}
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	if (!vp) {
		if (owner && owner->destroy)
			owner->destroy(owner->opaque);
		return -ENOMEM;
	}
	vp->vm = vm;
	vp->vd = vd;
	if (owner)
		vp->owner = *owner;
	vp->gsi = virtio_pci_intx_gsi(slot);
	vp->bar_init = bar_addr;
	snprintf(vp->name, sizeof(vp->name), "%s (pci 00:%02x.0)", vd->name, slot);
	pthread_mutex_init(&vp->lock, NULL);
	transport_reset(vp);
	int ret = build_config(vp, slot);
	if (!ret) {
		pthread_mutex_lock(&vm->pci->lock);
		program_bar_locked(vp);
		bool mapped = vp->mapped;
		pthread_mutex_unlock(&vm->pci->lock);
		if (!mapped)
			ret = -EBUSY;
	}
	if (!ret) {
		struct virtio_transport_hooks h = {
			.opaque = vp, .queue_irq = hook_queue_irq, .config_irq = hook_config_irq,
			.mem_written = hook_mem_written,
		};
		virtio_set_transport(vd, &h);
		ret = pci_bus_add(vm->pci, &vp->pdev);
		vp->plugged = !ret;
	}
	if (!ret)
		ret = vm_add_device(vm, &virtio_pci_device_ops, vp);
	if (ret) {
		vp_destroy(vp);
		return ret;
	}
	if (out)
		*out = vp;
	return 0;
}
