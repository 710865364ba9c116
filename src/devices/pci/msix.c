#include "devices/pci/msix.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "vmm/irq.h"

int msix_init(struct msix *m, struct vm *vm, struct pci_device *dev, unsigned cap_off,
	      unsigned nr, unsigned bir, uint32_t table_off, uint32_t pba_off)
{
	memset(m, 0, sizeof(*m));
	if (nr < 1 || nr > MSIX_MAX_VECTORS || bir >= PCI_NUM_BARS || (table_off & 7) ||
	    (pba_off & 7) || cap_off < 0x40 || cap_off + PCI_MSIX_CAP_LEN > dev->config_size)
		return -EINVAL;
	m->table = calloc(nr, sizeof(*m->table));
	m->pba = calloc((nr + 63) / 64, sizeof(*m->pba));
	if (!m->table || !m->pba) {
		free(m->table);
		free(m->pba);
		m->table = NULL;
		m->pba = NULL;
		return -ENOMEM;
	}
	m->vm = vm;
	m->nr = nr;
	m->cap_off = cap_off;
	pthread_mutex_init(&m->lock, NULL);
	for (unsigned i = 0; i < nr; i++)
		m->table[i].ctrl = MSIX_ENTRY_CTRL_MASKBIT;
	uint8_t *c = dev->config;
	pci_set_byte(c, cap_off, PCI_CAP_ID_MSIX);
	pci_set_byte(c, cap_off + 1, 0);
	pci_set_word(c, cap_off + PCI_MSIX_FLAGS, (uint16_t)(nr - 1));
	pci_set_long(c, cap_off + PCI_MSIX_TABLE, table_off | bir);
	pci_set_long(c, cap_off + PCI_MSIX_PBA, pba_off | bir);
	pci_set_word(dev->wmask, cap_off + PCI_MSIX_FLAGS,
		     PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	return 0;
}

void msix_fini(struct msix *m)
{
	if (!m->table)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->table);
	free(m->pba);
	m->table = NULL;
	m->pba = NULL;
}

void msix_reset(struct msix *m, struct pci_device *dev)
{
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < m->nr; i++)
		m->table[i] = (struct msix_entry){ .ctrl = MSIX_ENTRY_CTRL_MASKBIT };
	memset(m->pba, 0, msix_pba_bytes(m->nr));
	m->enabled = m->masked = false;
	if (dev)
		pci_set_word(dev->config, m->cap_off + PCI_MSIX_FLAGS, (uint16_t)(m->nr - 1));
	pthread_mutex_unlock(&m->lock);
}

static bool pending(const struct msix *m, unsigned v)
{
	return m->pba[v / 64] & (1ULL << (v % 64));
}

static void set_pending(struct msix *m, unsigned v, bool on)
{
	if (on)
		m->pba[v / 64] |= 1ULL << (v % 64);
	else
		m->pba[v / 64] &= ~(1ULL << (v % 64));
}

static bool vector_masked(const struct msix *m, unsigned v)
{
	return m->masked || (m->table[v].ctrl & MSIX_ENTRY_CTRL_MASKBIT);
}

/* Send entry v's message. A guest may program any address: only the
 * interrupt window (0xFEExxxxx) reaches a LAPIC; anything else is dropped
 * (on hardware it would be a DMA write, which kite devices never do). */
static void send_locked(struct msix *m, unsigned v)
{
	const struct msix_entry *e = &m->table[v];
	uint64_t addr = ((uint64_t)e->addr_hi << 32) | e->addr_lo;
	if ((addr >> 20) != 0xFEE) {
		kite_debug("msix: vector %u has a non-interrupt address 0x%llx: dropped", v,
			   (unsigned long long)addr);
		return;
	}
	m->sent++;
	int ret = vm_irq_msi(m->vm, addr, e->data);
	if (ret)
		kite_debug("msix: vector %u: delivery failed: %d", v, ret);
}

/* After an unmask: deliver what was pending and is now unmasked. */
static void flush_pending_locked(struct msix *m)
{
	if (!m->enabled || m->masked)
		return;
	for (unsigned w = 0; w < (m->nr + 63) / 64; w++) {
		uint64_t bits = m->pba[w];
		while (bits) {
			unsigned v = w * 64 + (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			if (!vector_masked(m, v)) {
				set_pending(m, v, false);
				send_locked(m, v);
			}
		}
	}
}

void msix_config_write(struct msix *m, struct pci_device *dev, unsigned off, unsigned size)
{
	unsigned ctl = m->cap_off + PCI_MSIX_FLAGS;
	if (off + size <= ctl || off >= ctl + 2)
		return;
	uint16_t flags = pci_get_word(dev->config, ctl);
	pthread_mutex_lock(&m->lock);
	m->enabled = flags & PCI_MSIX_FLAGS_ENABLE;
	m->masked = flags & PCI_MSIX_FLAGS_MASKALL;
	flush_pending_locked(m);
	pthread_mutex_unlock(&m->lock);
}

static bool access_ok(uint64_t off, unsigned size)
{
	return (size == 1 || size == 2 || size == 4 || size == 8) && (off & (size - 1)) == 0;
}

static uint32_t *entry_dword(struct msix *m, uint64_t dw)
{
	struct msix_entry *e = &m->table[dw / 4];
	switch (dw % 4) {
	case 0: return &e->addr_lo;
	case 1: return &e->addr_hi;
	case 2: return &e->data;
	default: return &e->ctrl;
	}
}

uint64_t msix_table_read(struct msix *m, uint64_t off, unsigned size)
{
	if (!access_ok(off, size) || off >= msix_table_bytes(m->nr))
		return ~0ULL;
	pthread_mutex_lock(&m->lock);
	uint64_t v;
	if (size == 8) {
		v = *entry_dword(m, off / 4) | ((uint64_t)*entry_dword(m, off / 4 + 1) << 32);
	} else {
		uint32_t dw = *entry_dword(m, off / 4);
		v = (dw >> (8 * (off & 3))) & (size == 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1);
	}
	pthread_mutex_unlock(&m->lock);
	return v;
}

/* Write `size` (<= 4) bytes into one dword of the table. Only bit 0 of the
 * vector control word is writable (the rest is reserved, reads 0). */
static void write_dword_part(struct msix *m, uint64_t off, unsigned size, uint32_t value)
{
	uint32_t *dw = entry_dword(m, off / 4);
	unsigned shift = 8 * (off & 3);
	uint32_t mask = (size == 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1) << shift;
	uint32_t nv = (*dw & ~mask) | ((value << shift) & mask);
	if ((off / 4) % 4 == 3)
		nv &= MSIX_ENTRY_CTRL_MASKBIT;
	*dw = nv;
}

void msix_table_write(struct msix *m, uint64_t off, unsigned size, uint64_t value)
{
	if (!access_ok(off, size) || off >= msix_table_bytes(m->nr))
		return;
	pthread_mutex_lock(&m->lock);
	if (size == 8) {
		write_dword_part(m, off, 4, (uint32_t)value);
		write_dword_part(m, off + 4, 4, (uint32_t)(value >> 32));
	} else {
		write_dword_part(m, off, size, (uint32_t)value);
	}
	/* An entry unmasked with its message pending fires now. */
	unsigned v = (unsigned)(off / MSIX_ENTRY_SIZE);
	if (m->enabled && pending(m, v) && !vector_masked(m, v)) {
		set_pending(m, v, false);
		send_locked(m, v);
	}
	pthread_mutex_unlock(&m->lock);
}

uint64_t msix_pba_read(struct msix *m, uint64_t off, unsigned size)
{
	if (!access_ok(off, size) || off >= msix_pba_bytes(m->nr))
		return ~0ULL;
	pthread_mutex_lock(&m->lock);
	uint64_t q = m->pba[off / 8];
	pthread_mutex_unlock(&m->lock);
	if (size == 8)
		return q;
	return (q >> (8 * (off & 7))) & ((1ULL << (8 * size)) - 1);
}

int msix_notify(struct msix *m, unsigned v)
{
	if (v >= m->nr)
		return -EINVAL;
	int ret;
	pthread_mutex_lock(&m->lock);
	if (!m->enabled) {
		ret = -ENODEV;
	} else if (vector_masked(m, v)) {
		set_pending(m, v, true);
		ret = 1;
	} else {
		send_locked(m, v);
		ret = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

bool msix_enabled(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	bool en = m->enabled;
	pthread_mutex_unlock(&m->lock);
	return en;
}

bool msix_is_pending(struct msix *m, unsigned v)
{
	if (v >= m->nr)
		return false;
	pthread_mutex_lock(&m->lock);
	bool p = pending(m, v);
	pthread_mutex_unlock(&m->lock);
	return p;
}

#define MSIX_SAVE_MAGIC 0x5849534Du /* "MSIX" */

struct msix_saved {
	uint32_t magic, nr;
	uint8_t enabled, masked, pad[6];
	/* then nr entries, then the PBA words */
};

size_t msix_save(struct msix *m, void *buf, size_t len)
{
	size_t need = sizeof(struct msix_saved) + m->nr * sizeof(struct msix_entry) +
		      msix_pba_bytes(m->nr);
	if (len < need)
		return need;
	struct msix_saved h = { .magic = MSIX_SAVE_MAGIC, .nr = m->nr };
	uint8_t *p = buf;
	pthread_mutex_lock(&m->lock);
	h.enabled = m->enabled;
	h.masked = m->masked;
	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), m->table, m->nr * sizeof(struct msix_entry));
	memcpy(p + sizeof(h) + m->nr * sizeof(struct msix_entry), m->pba, msix_pba_bytes(m->nr));
	pthread_mutex_unlock(&m->lock);
	return need;
}

int msix_restore(struct msix *m, const void *buf, size_t len)
{
	struct msix_saved h;
	size_t need = sizeof(h) + m->nr * sizeof(struct msix_entry) + msix_pba_bytes(m->nr);
	if (len != need)
		return -EINVAL;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != MSIX_SAVE_MAGIC || h.nr != m->nr)
		return -EINVAL;
	const uint8_t *p = buf;
	pthread_mutex_lock(&m->lock);
	m->enabled = h.enabled;
	m->masked = h.masked;
	memcpy(m->table, p + sizeof(h), m->nr * sizeof(struct msix_entry));
	memcpy(m->pba, p + sizeof(h) + m->nr * sizeof(struct msix_entry), msix_pba_bytes(m->nr));
	for (unsigned i = 0; i < m->nr; i++)
		m->table[i].ctrl &= MSIX_ENTRY_CTRL_MASKBIT;
	/* bits past nr in the last PBA word stay clear */
	if (m->nr % 64)
		m->pba[m->nr / 64] &= (1ULL << (m->nr % 64)) - 1;
	pthread_mutex_unlock(&m->lock);
	return 0;
}
