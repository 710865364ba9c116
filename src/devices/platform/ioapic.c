/* I/O APIC model: see ioapic.h for the contract. */
#include <pthread.h>
#include <stdlib.h>

#include "devices/platform/ioapic.h"

/* Bits of the low dword the guest may write: vector, delivery mode,
 * destination mode, polarity, trigger, mask. */
#define RTE_LOW_WRITABLE 0x1afffull
#define RTE_HIGH_WRITABLE 0xff000000ull /* destination, bits 63:56 */

struct ioapic {
	pthread_mutex_t lock;
	struct ioapic_config cfg;
	uint8_t regsel;
	uint8_t id;
	uint32_t line;  /* asserted pins */
	uint32_t irr;   /* pending: edge seen while unmasked, or level asserted */
	uint64_t rte[IOAPIC_NUM_PINS];
};

struct ioapic *ioapic_create(const struct ioapic_config *cfg)
{
	if (!cfg || !cfg->deliver)
		return NULL;
	if (cfg->version && cfg->version != 0x11 && cfg->version != 0x20)
		return NULL;
	struct ioapic *io = calloc(1, sizeof(*io));
	if (!io)
		return NULL;
	pthread_mutex_init(&io->lock, NULL);
	io->cfg = *cfg;
	if (!io->cfg.version)
		io->cfg.version = 0x11;
	io->id = cfg->id & 0xf;
	for (unsigned i = 0; i < IOAPIC_NUM_PINS; i++)
		io->rte[i] = IOAPIC_RTE_MASKED;
	return io;
}

void ioapic_destroy(struct ioapic *io)
{
	if (!io)
		return;
	pthread_mutex_destroy(&io->lock);
	free(io);
}

/* Deliver pin if it is pending and allowed to (lock held). */
static void service(struct ioapic *io, unsigned pin)
{
	uint64_t e = io->rte[pin];
	uint32_t bit = 1u << pin;
	if ((e & IOAPIC_RTE_MASKED) || !(io->irr & bit))
		return;
	unsigned dm = (e >> 8) & 7;
	bool level = e & IOAPIC_RTE_LEVEL;
	if (level) {
		if (e & IOAPIC_RTE_REMOTE_IRR)
			return;
		/* Only fixed/lowest messages are EOI'd by a LAPIC. */
		if (dm == APIC_DM_FIXED || dm == APIC_DM_LOWEST)
			io->rte[pin] |= IOAPIC_RTE_REMOTE_IRR;
	} else {
		io->irr &= ~bit;
	}
	io->cfg.deliver(io->cfg.deliver_opaque, (uint32_t)(e >> 56),
			(e & IOAPIC_RTE_DEST_LOGICAL) ? APIC_DEST_LOGICAL : APIC_DEST_PHYSICAL,
			dm, e & 0xff, level ? APIC_TRIG_LEVEL : APIC_TRIG_EDGE);
}

void ioapic_set_irq(struct ioapic *io, unsigned pin, bool level)
{
	if (pin >= IOAPIC_NUM_PINS)
		return;
	uint32_t bit = 1u << pin;
	pthread_mutex_lock(&io->lock);
	bool old = io->line & bit;
	if (level)
		io->line |= bit;
	else
		io->line &= ~bit;
	if (io->rte[pin] & IOAPIC_RTE_LEVEL) {
		if (level)
			io->irr |= bit;
		else
			io->irr &= ~bit;
		service(io, pin);
	} else if (level && !old && !(io->rte[pin] & IOAPIC_RTE_MASKED)) {
		io->irr |= bit;
		service(io, pin);
	}
	pthread_mutex_unlock(&io->lock);
}

static void eoi_locked(struct ioapic *io, uint8_t vector)
{
	for (unsigned pin = 0; pin < IOAPIC_NUM_PINS; pin++) {
		uint64_t e = io->rte[pin];
		if ((e & 0xff) != vector || !(e & IOAPIC_RTE_REMOTE_IRR))
			continue;
		io->rte[pin] &= ~IOAPIC_RTE_REMOTE_IRR;
		service(io, pin); /* still asserted: deliver again */
	}
}

void ioapic_eoi(struct ioapic *io, uint8_t vector)
{
	pthread_mutex_lock(&io->lock);
	eoi_locked(io, vector);
	pthread_mutex_unlock(&io->lock);
}

uint64_t ioapic_get_rte(struct ioapic *io, unsigned pin)
{
	if (pin >= IOAPIC_NUM_PINS)
		return 0;
	pthread_mutex_lock(&io->lock);
	uint64_t e = io->rte[pin];
	pthread_mutex_unlock(&io->lock);
	return e;
}

static uint32_t read_indirect(struct ioapic *io)
{
	unsigned r = io->regsel;
	switch (r) {
	case 0x00: return (uint32_t)io->id << 24;
	case 0x01: return ((IOAPIC_NUM_PINS - 1u) << 16) | io->cfg.version;
	case 0x02: return (uint32_t)io->id << 24;
	}
	if (r >= 0x10 && r < 0x10 + 2 * IOAPIC_NUM_PINS) {
		uint64_t e = io->rte[(r - 0x10) / 2];
		return (r & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
	}
	return 0;
}

static void write_indirect(struct ioapic *io, uint32_t val)
{
	unsigned r = io->regsel;
	if (r == 0x00) {
		io->id = (val >> 24) & 0xf;
		return;
	}
	if (r < 0x10 || r >= 0x10 + 2 * IOAPIC_NUM_PINS)
		return; /* version, arbitration (read-only), reserved */
	unsigned pin = (r - 0x10) / 2;
	uint64_t e = io->rte[pin];
	if (r & 1) {
		e = (e & 0xffffffffull) | (((uint64_t)val & RTE_HIGH_WRITABLE) << 32);
	} else {
		e = (e & ~(uint64_t)RTE_LOW_WRITABLE & ~0xffffffffull) |
		    (e & IOAPIC_RTE_REMOTE_IRR) | (val & RTE_LOW_WRITABLE);
		if (!(e & IOAPIC_RTE_LEVEL)) {
			e &= ~IOAPIC_RTE_REMOTE_IRR; /* as KVM: edge has none */
			io->irr &= ~(1u << pin);
		}
	}
	io->rte[pin] = e;
	/* A level entry unmasked (or switched to level) while asserted. */
	if (e & IOAPIC_RTE_LEVEL) {
		if (io->line & (1u << pin))
			io->irr |= 1u << pin;
		service(io, pin);
	}
}

uint64_t ioapic_mmio_read(void *opaque, uint64_t offset, unsigned size)
{
	struct ioapic *io = opaque;
	uint64_t v = 0;
	pthread_mutex_lock(&io->lock);
	if (offset == 0x00)
		v = io->regsel;
	else if (offset >= 0x10 && offset < 0x14)
		v = read_indirect(io) >> (8 * (offset - 0x10));
	pthread_mutex_unlock(&io->lock);
	if (size < 4)
		v &= (1ull << (8 * size)) - 1;
	return v;
}

void ioapic_mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct ioapic *io = opaque;
	pthread_mutex_lock(&io->lock);
	if (offset == 0x00)
		io->regsel = value & 0xff;
	else if (offset == 0x10 && size >= 4)
		write_indirect(io, (uint32_t)value);
	else if (offset == 0x40 && size >= 4 && io->cfg.version == 0x20)
		eoi_locked(io, value & 0xff);
	pthread_mutex_unlock(&io->lock);
}
