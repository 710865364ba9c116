/* 8259A pair: see pic8259.h. Priority: IRQ (priority_add + k) & 7 has
 * priority k, 0 highest; rotation moves priority_add. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/platform/pic8259.h"

struct chip {
	uint8_t irr, imr, isr;
	uint8_t line;         /* input levels, for edge detection */
	uint8_t elcr, elcr_mask;
	uint8_t base;         /* ICW2 & 0xf8 */
	uint8_t priority_add;
	uint8_t init_state;   /* 0 ready; 1..3 expecting ICW2..ICW4 */
	bool need_icw4, single;
	bool auto_eoi, rotate_on_aeoi, special_fully_nested;
	bool read_isr, poll, special_mask;
};

struct pic {
	pthread_mutex_t lock;
	struct pic_config cfg;
	struct chip c[2];    /* 0 master, 1 slave */
	bool out;
};

/* Priority number (0 highest) of the best bit in mask, 8 if none. */
static int best_priority(const struct chip *c, uint8_t mask)
{
	if (!mask)
		return 8;
	int p = 0;
	while (!(mask & (1u << ((p + c->priority_add) & 7))))
		p++;
	return p;
}

/* IRQ the chip would raise now, or -1. */
static int chip_irq(const struct chip *c, bool master)
{
	int p = best_priority(c, c->irr & ~c->imr);
	if (p == 8)
		return -1;
	uint8_t in_service = c->isr;
	if (c->special_mask)
		in_service &= ~c->imr; /* masked levels don't block lower ones */
	if (master && c->special_fully_nested)
		in_service &= ~(1u << 2); /* the slave may nest on itself */
	int cur = best_priority(c, in_service);
	return p < cur ? (p + c->priority_add) & 7 : -1;
}

static void chip_line(struct chip *c, unsigned irq, bool level)
{
	uint8_t m = 1u << irq;
	if (c->elcr & m) {
		if (level)
			c->irr |= m;
		else
			c->irr &= ~m;
	} else if (level && !(c->line & m)) {
		c->irr |= m;
	}
	if (level)
		c->line |= m;
	else
		c->line &= ~m;
}

/* Propagate slave -> master IRQ2 -> INTR (lock held). */
static void update(struct pic *p)
{
	chip_line(&p->c[0], 2, chip_irq(&p->c[1], false) >= 0);
	bool out = chip_irq(&p->c[0], true) >= 0;
	if (out != p->out) {
		p->out = out;
		if (p->cfg.output)
			p->cfg.output(p->cfg.opaque, out);
	}
}

static void chip_intack(struct chip *c, int irq)
{
	uint8_t m = 1u << irq;
	if (c->auto_eoi) {
		if (c->rotate_on_aeoi)
			c->priority_add = (irq + 1) & 7;
	} else {
		c->isr |= m;
	}
	if (!(c->elcr & m))
		c->irr &= ~m; /* edge: consumed; level: follows the line */
}

static void chip_reset(struct chip *c)
{
	uint8_t elcr = c->elcr, mask = c->elcr_mask, line = c->line;
	memset(c, 0, sizeof(*c));
	c->elcr = elcr;
	c->elcr_mask = mask;
	c->line = line;
	c->irr = line & elcr; /* level lines still high stay pending */
}

struct pic *pic_create(const struct pic_config *cfg)
{
	struct pic *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	if (cfg)
		p->cfg = *cfg;
	p->c[0].elcr_mask = 0xf8; /* IRQ 0, 1, 2 always edge */
	p->c[1].elcr_mask = 0xde; /* IRQ 8 and 13 always edge */
	return p;
}

void pic_destroy(struct pic *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void pic_set_irq(struct pic *p, unsigned irq, bool level)
{
	if (irq >= 16)
		return;
	pthread_mutex_lock(&p->lock);
	chip_line(&p->c[irq >> 3], irq & 7, level);
	update(p);
	pthread_mutex_unlock(&p->lock);
}

bool pic_has_interrupt(struct pic *p)
{
	pthread_mutex_lock(&p->lock);
	bool r = p->out;
	pthread_mutex_unlock(&p->lock);
	return r;
}

int pic_ack(struct pic *p)
{
	pthread_mutex_lock(&p->lock);
	struct chip *m = &p->c[0], *s = &p->c[1];
	int vec;
	int irq = chip_irq(m, true);
	if (irq < 0) {
		vec = m->base + 7; /* spurious IRQ7: no ISR bit */
	} else if (irq == 2 && !m->single) {
		int sirq = chip_irq(s, false);
		if (sirq >= 0) {
			chip_intack(s, sirq);
			vec = s->base + sirq;
		} else {
			vec = s->base + 7; /* spurious IRQ15 */
		}
		chip_intack(m, 2);
	} else {
		chip_intack(m, irq);
		vec = m->base + irq;
	}
	update(p);
	pthread_mutex_unlock(&p->lock);
	return vec;
}

static void chip_eoi(struct chip *c, unsigned cmd, unsigned level)
{
	switch (cmd) {
	case 1: /* non-specific EOI */
	case 5: { /* rotate on non-specific EOI */
		int pr = best_priority(c, c->isr);
		if (pr == 8)
			return;
		int irq = (pr + c->priority_add) & 7;
		c->isr &= ~(1u << irq);
		if (cmd == 5)
			c->priority_add = (irq + 1) & 7;
		return;
	}
	case 3: /* specific EOI */
		c->isr &= ~(1u << level);
		return;
	case 7: /* rotate on specific EOI */
		c->isr &= ~(1u << level);
		c->priority_add = (level + 1) & 7;
		return;
	case 6: /* set priority: level becomes lowest */
		c->priority_add = (level + 1) & 7;
		return;
	case 4: c->rotate_on_aeoi = true; return;
	case 0: c->rotate_on_aeoi = false; return;
	default: return; /* 2: no operation */
	}
}

static uint8_t chip_read(struct pic *p, unsigned idx, unsigned port)
{
	struct chip *c = &p->c[idx];
	if (port == 0 && c->poll) {
		/* Poll: like an INTA for this chip, result 0x80 | irq. */
		c->poll = false;
		int irq = chip_irq(c, idx == 0);
		if (irq < 0)
			return 0;
		chip_intack(c, irq);
		if (idx == 1) { /* the master's cascade input is acked too */
			p->c[0].isr &= ~(1u << 2);
		}
		update(p);
		return 0x80 | irq;
	}
	if (port == 0)
		return c->read_isr ? c->isr : c->irr;
	return c->imr;
}

static void chip_write(struct pic *p, unsigned idx, unsigned port, uint8_t v)
{
	struct chip *c = &p->c[idx];
	if (port == 0) {
		if (v & 0x10) { /* ICW1 */
			chip_reset(c);
			c->need_icw4 = v & 1;
			c->single = v & 2;
			c->init_state = 1;
			/* LTIM (bit 3) is ignored: the ELCR decides on a PC. */
		} else if (v & 0x08) { /* OCW3 */
			if (v & 0x04)
				c->poll = true;
			if (v & 0x02)
				c->read_isr = v & 0x01;
			if (v & 0x40)
				c->special_mask = v & 0x20;
		} else { /* OCW2 */
			chip_eoi(c, v >> 5, v & 7);
		}
	} else {
		switch (c->init_state) {
		case 0: /* OCW1 */
			c->imr = v;
			break;
		case 1: /* ICW2 */
			c->base = v & 0xf8;
			c->init_state = c->single ? (c->need_icw4 ? 3 : 0) : 2;
			break;
		case 2: /* ICW3: the cascade wiring is fixed on a PC */
			c->init_state = c->need_icw4 ? 3 : 0;
			break;
		default: /* ICW4 */
			c->auto_eoi = v & 0x02;
			c->special_fully_nested = v & 0x10;
			c->init_state = 0;
			break;
		}
	}
	update(p);
}

static uint64_t io_read(struct pic *p, unsigned idx, uint64_t offset, unsigned size)
{
	uint64_t v = 0;
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && i < 8; i++) {
		uint64_t off = offset + i;
		uint8_t b = 0xff;
		if (off < 2)
			b = idx < 2 ? chip_read(p, idx, off) : p->c[off].elcr;
		v |= (uint64_t)b << (8 * i);
	}
	pthread_mutex_unlock(&p->lock);
	return v;
}

static void io_write(struct pic *p, unsigned idx, uint64_t offset, unsigned size, uint64_t value)
{
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < size && i < 8; i++) {
		uint64_t off = offset + i;
		uint8_t b = value >> (8 * i);
		if (off >= 2)
			continue;
		if (idx < 2) {
			chip_write(p, idx, off, b);
		} else {
			struct chip *c = &p->c[off];
			c->elcr = b & c->elcr_mask;
			/* a line switched to level is pending while high */
			c->irr = (c->irr & ~c->elcr) | (c->line & c->elcr);
			update(p);
		}
	}
	pthread_mutex_unlock(&p->lock);
}

uint64_t pic_master_read(void *o, uint64_t off, unsigned size) { return io_read(o, 0, off, size); }
uint64_t pic_slave_read(void *o, uint64_t off, unsigned size) { return io_read(o, 1, off, size); }
uint64_t pic_elcr_read(void *o, uint64_t off, unsigned size) { return io_read(o, 2, off, size); }
void pic_master_write(void *o, uint64_t off, unsigned size, uint64_t v) { io_write(o, 0, off, size, v); }
void pic_slave_write(void *o, uint64_t off, unsigned size, uint64_t v) { io_write(o, 1, off, size, v); }
void pic_elcr_write(void *o, uint64_t off, unsigned size, uint64_t v) { io_write(o, 2, off, size, v); }
