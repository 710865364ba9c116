/* 8254 PIT: see pit8254.h. Each channel's position is kept as "ticks
 * elapsed since the count was loaded" (base + time running), from which
 * the counter value and OUT follow for every mode. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "devices/platform/pit8254.h"

#define NSEC_PER_SEC 1000000000ull
#define NO_DEADLINE  UINT64_MAX
#define MIN_IRQ_GAP_NS 50000ull
/* Port 0x61 bit 4 toggles with the DRAM refresh, every 15.085 us. */
#define REFRESH_NS 15085ull

enum { RW_LATCH, RW_LSB, RW_MSB, RW_WORD };

struct channel {
	uint8_t mode, rw;
	bool bcd;
	uint32_t reload;      /* 1..65536 (binary) or 1..10000 (BCD) */
	bool loaded;          /* a complete count was written */
	bool null_count;      /* status bit 6 */
	bool gate;
	bool triggered;       /* modes 1, 5: gate edge seen since load */
	bool running;
	uint64_t run_start_ns, base_ticks;
	/* access state */
	bool write_hi_next, read_hi_next;
	uint8_t write_lsb;
	bool count_latched, latch_hi_next;
	uint16_t latch;
	bool status_latched;
	uint8_t status;
};

struct pit {
	pthread_mutex_t lock;
	struct pit_config cfg;
	struct channel ch[3];
	uint8_t port61;       /* bits 0-3 as written */
	uint64_t irq_deadline;
};

static uint64_t ticks_since(uint64_t start, uint64_t now)
{
	if (now <= start)
		return 0;
	return (uint64_t)((unsigned __int128)(now - start) * PIT_HZ / NSEC_PER_SEC);
}

static uint64_t elapsed(const struct channel *c, uint64_t now)
{
	return c->base_ticks + (c->running ? ticks_since(c->run_start_ns, now) : 0);
}

/* Host time at which the channel reaches `ticks` (running channels). */
static uint64_t tick_time(const struct channel *c, uint64_t ticks)
{
	if (ticks <= c->base_ticks)
		return c->run_start_ns;
	unsigned __int128 ns = (unsigned __int128)(ticks - c->base_ticks) * NSEC_PER_SEC;
	ns = (ns + PIT_HZ - 1) / PIT_HZ + c->run_start_ns;
	return ns >= NO_DEADLINE ? NO_DEADLINE - 1 : (uint64_t)ns;
}

/* Modes 2 and 3 need a count of at least 2. */
static uint32_t period(const struct channel *c)
{
	return c->reload < 2 ? 2 : c->reload;
}

static uint32_t counter_value(const struct channel *c, uint64_t now)
{
	if (!c->loaded)
		return 0;
	uint64_t d = elapsed(c, now);
	uint32_t wrap = c->bcd ? 10000 : 65536;
	switch (c->mode) {
	case 2:
		return period(c) - (uint32_t)(d % period(c));
	case 3:
		return period(c) - (uint32_t)((2 * d) % period(c));
	default: /* 0, 1, 4, 5: count down through 0 and wrap */
		return (uint32_t)((c->reload + wrap - d % wrap) % wrap);
	}
}

static bool out_level(const struct channel *c, uint64_t now)
{
	if (!c->loaded)
		return c->mode != 0; /* mode 0: low from the control word on */
	uint64_t d = elapsed(c, now);
	switch (c->mode) {
	case 0:
		return d >= c->reload;
	case 1:
		return !c->triggered || d >= c->reload;
	case 2:
		return !c->running || d % period(c) != period(c) - 1;
	case 3:
		return !c->running || d % period(c) < (period(c) + 1) / 2;
	case 4:
		return !c->running || d != c->reload;
	default: /* 5 */
		return !c->triggered || d != c->reload;
	}
}

static uint16_t to_bcd(uint32_t v)
{
	v %= 10000;
	return (uint16_t)((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | v % 10);
}

static uint32_t from_bcd(uint16_t v)
{
	return (v >> 12) * 1000 + ((v >> 8) & 0xf) * 100 + ((v >> 4) & 0xf) * 10 + (v & 0xf);
}

/* Channel 0: when is the next rising edge of OUT? (lock held) */
static void arm_irq(struct pit *p, uint64_t now)
{
	struct channel *c = &p->ch[0];
	uint64_t tick = 0;
	p->irq_deadline = NO_DEADLINE;
	if (!c->loaded || !c->running)
		return;
	uint64_t d = elapsed(c, now);
	switch (c->mode) {
	case 0:
	case 1:
		if (d < c->reload)
			tick = c->reload;
		break;
	case 4:
	case 5:
		if (d < (uint64_t)c->reload + 1)
			tick = (uint64_t)c->reload + 1;
		break;
	default: /* 2, 3 */
		tick = (d / period(c) + 1) * period(c);
	}
	if (tick)
		p->irq_deadline = tick_time(c, tick);
}

static void load_count(struct pit *p, unsigned idx, uint32_t raw, uint64_t now)
{
	struct channel *c = &p->ch[idx];
	uint32_t v = c->bcd ? from_bcd(raw) : raw;
	if (v == 0)
		v = c->bcd ? 10000 : 65536;
	c->reload = v;
	c->loaded = true;
	c->null_count = false;
	c->base_ticks = 0;
	c->run_start_ns = now;
	c->triggered = false;
	/* modes 1 and 5 wait for a gate edge; the others count while gated on */
	c->running = (c->mode == 1 || c->mode == 5) ? false : c->gate;
	if (idx == 0)
		arm_irq(p, now);
}

static void set_gate(struct pit *p, unsigned idx, bool level, uint64_t now)
{
	struct channel *c = &p->ch[idx];
	if (level == c->gate)
		return;
	c->gate = level;
	if (!c->loaded)
		return;
	switch (c->mode) {
	case 0:
	case 4: /* gate suspends counting */
		if (!level) {
			c->base_ticks = elapsed(c, now);
			c->running = false;
		} else {
			c->run_start_ns = now;
			c->running = true;
		}
		break;
	case 1:
	case 5: /* rising edge (re)triggers */
		if (level) {
			c->base_ticks = 0;
			c->run_start_ns = now;
			c->running = c->triggered = true;
		}
		break;
	default: /* 2, 3: low stops (OUT high), rising edge reloads */
		c->base_ticks = 0;
		c->run_start_ns = now;
		c->running = level;
	}
	if (idx == 0)
		arm_irq(p, now);
}

static uint8_t status_byte(const struct channel *c, uint64_t now)
{
	return (uint8_t)(out_level(c, now) << 7 | c->null_count << 6 | c->rw << 4 |
			 c->mode << 1 | c->bcd);
}

static void latch_count(struct channel *c, uint64_t now)
{
	if (c->count_latched)
		return; /* the first latch holds until read */
	uint32_t v = counter_value(c, now);
	c->latch = c->bcd ? to_bcd(v) : (uint16_t)v;
	c->count_latched = true;
	c->latch_hi_next = false;
}

static void write_command(struct pit *p, uint8_t v, uint64_t now)
{
	unsigned sel = v >> 6;
	if (sel == 3) { /* read-back */
		for (unsigned i = 0; i < 3; i++) {
			if (!(v & (2u << i)))
				continue;
			struct channel *c = &p->ch[i];
			if (!(v & 0x20))
				latch_count(c, now);
			if (!(v & 0x10) && !c->status_latched) {
				c->status = status_byte(c, now);
				c->status_latched = true;
			}
		}
		return;
	}
	struct channel *c = &p->ch[sel];
	unsigned rw = (v >> 4) & 3;
	if (rw == RW_LATCH) {
		latch_count(c, now);
		return;
	}
	c->rw = rw;
	c->mode = (v >> 1) & 7;
	if (c->mode > 5)
		c->mode -= 4;
	c->bcd = v & 1;
	c->loaded = false;
	c->running = false;
	c->triggered = false;
	c->null_count = true;
	c->write_hi_next = c->read_hi_next = false;
	c->base_ticks = 0;
	if (sel == 0)
		arm_irq(p, now);
}

static void write_counter(struct pit *p, unsigned idx, uint8_t v, uint64_t now)
{
	struct channel *c = &p->ch[idx];
	switch (c->rw) {
	case RW_LSB:
		load_count(p, idx, v, now);
		break;
	case RW_MSB:
		load_count(p, idx, (uint32_t)v << 8, now);
		break;
	case RW_WORD:
		if (!c->write_hi_next) {
			c->write_lsb = v;
			c->write_hi_next = true;
			if (c->mode == 0) { /* the first byte stops counting */
				c->loaded = false;
				c->running = false;
				if (idx == 0)
					arm_irq(p, now);
			}
		} else {
			c->write_hi_next = false;
			load_count(p, idx, c->write_lsb | (uint32_t)v << 8, now);
		}
		break;
	default: /* no control word yet: ignored */
		break;
	}
}

static uint8_t read_counter(struct channel *c, uint64_t now)
{
	if (c->status_latched) {
		c->status_latched = false;
		return c->status;
	}
	uint16_t v;
	bool hi;
	if (c->count_latched) {
		v = c->latch;
		if (c->rw == RW_WORD) {
			hi = c->latch_hi_next;
			c->latch_hi_next = !hi;
			if (hi)
				c->count_latched = false;
		} else {
			hi = c->rw == RW_MSB;
			c->count_latched = false;
		}
	} else {
		uint32_t raw = counter_value(c, now);
		v = c->bcd ? to_bcd(raw) : (uint16_t)raw;
		if (c->rw == RW_WORD) {
			hi = c->read_hi_next;
			c->read_hi_next = !hi;
		} else {
			hi = c->rw == RW_MSB;
		}
	}
	return hi ? v >> 8 : v & 0xff;
}

struct pit *pit_create(const struct pit_config *cfg)
{
	struct pit *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	if (cfg)
		p->cfg = *cfg;
	p->ch[0].gate = p->ch[1].gate = true;
	for (int i = 0; i < 3; i++) {
		p->ch[i].rw = RW_WORD;
		p->ch[i].null_count = true;
	}
	p->irq_deadline = NO_DEADLINE;
	return p;
}

void pit_destroy(struct pit *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p);
}

uint8_t pit_read(struct pit *p, unsigned port, uint64_t now)
{
	uint8_t v = 0xff; /* the command register is write-only */
	pthread_mutex_lock(&p->lock);
	if (port < 3)
		v = read_counter(&p->ch[port], now);
	pthread_mutex_unlock(&p->lock);
	return v;
}

void pit_write(struct pit *p, unsigned port, uint8_t value, uint64_t now)
{
	pthread_mutex_lock(&p->lock);
	if (port < 3)
		write_counter(p, port, value, now);
	else if (port == 3)
		write_command(p, value, now);
	pthread_mutex_unlock(&p->lock);
}

uint8_t pit_port61_read(struct pit *p, uint64_t now)
{
	pthread_mutex_lock(&p->lock);
	uint8_t v = (p->port61 & 0x0f) | (((now / REFRESH_NS) & 1) << 4) |
		    (out_level(&p->ch[2], now) << 5);
	pthread_mutex_unlock(&p->lock);
	return v;
}

void pit_port61_write(struct pit *p, uint8_t value, uint64_t now)
{
	pthread_mutex_lock(&p->lock);
	p->port61 = value & 0x0f;
	set_gate(p, 2, value & 1, now);
	pthread_mutex_unlock(&p->lock);
}

uint64_t pit_next_deadline(struct pit *p)
{
	pthread_mutex_lock(&p->lock);
	uint64_t d = p->irq_deadline;
	pthread_mutex_unlock(&p->lock);
	return d;
}

void pit_poll(struct pit *p, uint64_t now)
{
	bool fire = false;
	pthread_mutex_lock(&p->lock);
	if (p->irq_deadline <= now) {
		fire = true;
		arm_irq(p, now); /* next edge after now: missed ones coalesce */
		if (p->irq_deadline != NO_DEADLINE && p->irq_deadline < now + MIN_IRQ_GAP_NS)
			p->irq_deadline = now + MIN_IRQ_GAP_NS;
	}
	pthread_mutex_unlock(&p->lock);
	if (fire && p->cfg.set_irq) {
		p->cfg.set_irq(p->cfg.opaque, 0, true);
		p->cfg.set_irq(p->cfg.opaque, 0, false);
	}
}

bool pit_get_out(struct pit *p, unsigned ch, uint64_t now)
{
	if (ch > 2)
		return false;
	pthread_mutex_lock(&p->lock);
	bool r = out_level(&p->ch[ch], now);
	pthread_mutex_unlock(&p->lock);
	return r;
}

static uint64_t clock_now(struct pit *p)
{
	return p->cfg.clock ? p->cfg.clock(p->cfg.clock_opaque) : 0;
}

uint64_t pit_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pit *p = opaque;
	uint64_t now = clock_now(p), v = 0;
	for (unsigned i = 0; i < size && i < 8; i++)
		v |= (uint64_t)(offset + i < 4 ? pit_read(p, offset + i, now) : 0xff) << (8 * i);
	return v;
}

void pit_io_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct pit *p = opaque;
	uint64_t now = clock_now(p);
	for (unsigned i = 0; i < size && i < 8; i++)
		if (offset + i < 4)
			pit_write(p, offset + i, value >> (8 * i), now);
}

uint64_t pit_port61_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pit *p = opaque;
	uint64_t v = offset == 0 ? pit_port61_read(p, clock_now(p)) : 0xff;
	for (unsigned i = 1; i < size && i < 8; i++)
		v |= 0xffull << (8 * i);
	return v;
}

void pit_port61_io_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	(void)size;
	struct pit *p = opaque;
	if (offset == 0)
		pit_port61_write(p, value & 0xff, clock_now(p));
}
