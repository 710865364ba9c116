/* Local APIC model: see lapic.h for the contract (time, threads, hostile
 * input). Register semantics follow Intel SDM vol. 3A chapter 10. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "devices/platform/lapic.h"

enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_N };

#define LVT_MASKED       (1u << 16)
#define LVT_LEVEL        (1u << 15)
#define TIMER_ONESHOT    0u
#define TIMER_PERIODIC   1u
#define TIMER_TSCDEADLINE 2u
#define SVR_ENABLE       (1u << 8)
#define NSEC_PER_SEC     1000000000ull
/* A periodic timer re-arms no sooner than this after a poll: a guest that
 * programs a 1-tick period must not turn the vCPU into an interrupt storm
 * (KVM clamps similarly). Linux's periodic mode uses HZ (>= 1 ms). */
#define MIN_PERIOD_NS    50000ull
#define NO_DEADLINE      UINT64_MAX

/* Writable bits of each LVT entry (delivery status and remote IRR are
 * read-only and not modelled: always 0). */
static const uint32_t lvt_writable[LVT_N] = {
	[LVT_TIMER] = 0x700ff,   /* vector, mask, mode (17-18) */
	[LVT_THERMAL] = 0x107ff, /* vector, delivery mode, mask */
	[LVT_PERF] = 0x107ff,
	[LVT_LINT0] = 0x1a7ff,   /* + polarity (13), trigger (15) */
	[LVT_LINT1] = 0x1a7ff,
	[LVT_ERROR] = 0x100ff,
};

/* An IPI as the ICR describes it. */
struct ipi {
	uint32_t dest;
	unsigned dest_mode, delivery_mode, trigger, shorthand;
	uint8_t vector;
	bool x2apic; /* 32-bit destination format */
};

enum { SH_NONE, SH_SELF, SH_ALL, SH_OTHERS };

/* What a locked operation wants done once the lock is dropped. */
struct lapic_out {
	bool kick;
	int eoi_vector;  /* -1: none */
	bool ipi;
	struct ipi msg;
	bool init, sipi;
	uint8_t sipi_vector;
};

struct lapic {
	pthread_mutex_t lock;
	struct lapic_config cfg;
	uint64_t apic_base;
	uint32_t id;   /* x2APIC ID (fixed) */
	uint8_t xid;   /* xAPIC ID register (writable in xAPIC mode) */
	uint32_t tpr, svr, ldr, dfr;
	uint32_t esr, esr_latch;
	uint32_t icr_lo, icr_hi;
	uint32_t lvt[LVT_N];
	uint32_t irr[8], isr[8], tmr[8];
	uint32_t timer_icr, timer_dcr;
	uint64_t timer_start_ns;
	uint64_t timer_expire_ns; /* NO_DEADLINE: not armed */
	uint64_t tsc_deadline;
	bool nmi_pending, extint_msg, sipi_wait;
	bool lint_level[2];
	atomic_bool hint;
};

/* ---- small helpers (lock held) ---- */

static bool hw_enabled(const struct lapic *l) { return l->apic_base & APIC_BASE_EN; }
static bool x2apic(const struct lapic *l) { return l->apic_base & APIC_BASE_EXTD; }
static bool sw_enabled(const struct lapic *l) { return hw_enabled(l) && (l->svr & SVR_ENABLE); }

static uint32_t x2apic_ldr(uint32_t id)
{
	return ((id >> 4) << 16) | (1u << (id & 0xf));
}

static int highest_bit(const uint32_t r[8])
{
	for (int i = 7; i >= 0; i--)
		if (r[i])
			return i * 32 + 31 - __builtin_clz(r[i]);
	return -1;
}

static void set_bit256(uint32_t r[8], unsigned v) { r[v >> 5] |= 1u << (v & 31); }
static void clr_bit256(uint32_t r[8], unsigned v) { r[v >> 5] &= ~(1u << (v & 31)); }
static bool tst_bit256(const uint32_t r[8], unsigned v) { return r[v >> 5] & (1u << (v & 31)); }

static uint32_t ppr(const struct lapic *l)
{
	int isrv = highest_bit(l->isr);
	uint32_t isrc = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;
	return (l->tpr & 0xf0) >= isrc ? (l->tpr & 0xff) : isrc;
}

static uint32_t apr(const struct lapic *l)
{
	int irrv = highest_bit(l->irr), isrv = highest_bit(l->isr);
	int m = irrv > isrv ? irrv : isrv;
	uint32_t c = m < 0 ? 0 : (uint32_t)m & 0xf0;
	return (l->tpr & 0xf0) >= c ? (l->tpr & 0xff) : c;
}

static int deliverable_fixed(const struct lapic *l)
{
	if (!sw_enabled(l))
		return -1;
	int v = highest_bit(l->irr);
	if (v < 0 || ((uint32_t)v & 0xf0) <= (ppr(l) & 0xf0))
		return -1;
	return v;
}

static bool extint_pending(const struct lapic *l)
{
	if (!hw_enabled(l))
		return l->lint_level[0]; /* APIC off: INTR goes straight to the CPU */
	if (l->extint_msg)
		return true;
	uint32_t lvt = l->lvt[LVT_LINT0];
	return l->lint_level[0] && !(lvt & LVT_MASKED) && ((lvt >> 8) & 7) == APIC_DM_EXTINT;
}

static bool update_hint(struct lapic *l)
{
	bool h = l->nmi_pending || extint_pending(l) || deliverable_fixed(l) >= 0;
	atomic_store_explicit(&l->hint, h, memory_order_release);
	return h;
}

/* Record an error; raise the error LVT if unmasked (without recursing when
 * its own vector is illegal). */
static void set_error(struct lapic *l, uint32_t bits, struct lapic_out *o)
{
	uint32_t fresh = bits & ~l->esr_latch;
	l->esr_latch |= bits;
	if (!fresh || !sw_enabled(l) || (l->lvt[LVT_ERROR] & LVT_MASKED))
		return;
	unsigned v = l->lvt[LVT_ERROR] & 0xff;
	if (v < 16) {
		l->esr_latch |= APIC_ESR_RECV_ILLEGAL;
		return;
	}
	set_bit256(l->irr, v);
	clr_bit256(l->tmr, v);
	o->kick = true;
}

static bool accept_fixed(struct lapic *l, unsigned vector, bool level, struct lapic_out *o)
{
	if (!sw_enabled(l))
		return false; /* as KVM: a disabled APIC drops fixed interrupts */
	if (vector < 16) {
		set_error(l, APIC_ESR_RECV_ILLEGAL, o);
		return false;
	}
	set_bit256(l->irr, vector);
	if (level)
		set_bit256(l->tmr, vector);
	else
		clr_bit256(l->tmr, vector);
	o->kick = true;
	return true;
}

static void reset_regs(struct lapic *l, bool power_up)
{
	l->xid = l->id & 0xff;
	l->tpr = 0;
	l->svr = 0xff;
	l->ldr = x2apic(l) ? x2apic_ldr(l->id) : 0;
	l->dfr = 0xffffffffu;
	l->esr = l->esr_latch = 0;
	l->icr_lo = l->icr_hi = 0;
	for (int i = 0; i < LVT_N; i++)
		l->lvt[i] = LVT_MASKED;
	if (power_up && l->cfg.bsp) {
		l->lvt[LVT_LINT0] = APIC_DM_EXTINT << 8;
		l->lvt[LVT_LINT1] = APIC_DM_NMI << 8;
	}
	memset(l->irr, 0, sizeof(l->irr));
	memset(l->isr, 0, sizeof(l->isr));
	memset(l->tmr, 0, sizeof(l->tmr));
	l->timer_icr = l->timer_dcr = 0;
	l->timer_start_ns = 0;
	l->timer_expire_ns = NO_DEADLINE;
	l->tsc_deadline = 0;
	l->nmi_pending = l->extint_msg = false;
}

/* ---- timer (lock held) ---- */

static unsigned timer_mode(const struct lapic *l) { return (l->lvt[LVT_TIMER] >> 17) & 3; }

static unsigned timer_div(const struct lapic *l)
{
	unsigned v = (l->timer_dcr & 3) | ((l->timer_dcr >> 1) & 4);
	return v == 7 ? 1 : 2u << v;
}

static uint64_t timer_elapsed(const struct lapic *l, uint64_t now)
{
	if (now <= l->timer_start_ns)
		return 0;
	unsigned __int128 t = (unsigned __int128)(now - l->timer_start_ns) * l->cfg.bus_hz;
	return (uint64_t)(t / ((unsigned __int128)NSEC_PER_SEC * timer_div(l)));
}

/* Host time at which `ticks` timer ticks have elapsed since the start. */
static uint64_t timer_tick_ns(const struct lapic *l, unsigned __int128 ticks)
{
	unsigned __int128 num = ticks * timer_div(l) * NSEC_PER_SEC;
	unsigned __int128 ns = (num + l->cfg.bus_hz - 1) / l->cfg.bus_hz;
	ns += l->timer_start_ns;
	return ns >= NO_DEADLINE ? NO_DEADLINE - 1 : (uint64_t)ns;
}

static uint32_t timer_current(const struct lapic *l, uint64_t now)
{
	if (timer_mode(l) == TIMER_TSCDEADLINE || l->timer_icr == 0)
		return 0;
	/* a one-shot that fired stays stopped at 0, also when the LVT is then
	 * switched to periodic: a mode change does not start the timer (SDM
	 * 10.5.4), only a write of the initial count does */
	if (l->timer_expire_ns == NO_DEADLINE)
		return 0;
	uint64_t e = timer_elapsed(l, now);
	if (timer_mode(l) == TIMER_PERIODIC)
		return l->timer_icr - (uint32_t)(e % l->timer_icr);
	return e >= l->timer_icr ? 0 : l->timer_icr - (uint32_t)e;
}

/* Next period boundary strictly after now (periodic mode). */
static uint64_t timer_next_period(const struct lapic *l, uint64_t now)
{
	uint64_t k = timer_elapsed(l, now) / l->timer_icr + 1;
	uint64_t t = timer_tick_ns(l, (unsigned __int128)k * l->timer_icr);
	if (t <= now) /* rounding at the boundary */
		t = timer_tick_ns(l, (unsigned __int128)(k + 1) * l->timer_icr);
	return t;
}

/* The timer reached its deadline at or before now: retire this expiry
 * (interrupt unless masked) and re-arm periodic mode, coalescing. */
static void timer_expire(struct lapic *l, uint64_t now, bool fire, struct lapic_out *o)
{
	if (fire && !(l->lvt[LVT_TIMER] & LVT_MASKED))
		accept_fixed(l, l->lvt[LVT_TIMER] & 0xff, false, o);
	switch (timer_mode(l)) {
	case TIMER_PERIODIC: {
		uint64_t next = timer_next_period(l, now);
		if (next < now + MIN_PERIOD_NS && now + MIN_PERIOD_NS > now)
			next = now + MIN_PERIOD_NS;
		l->timer_expire_ns = next;
		break;
	}
	case TIMER_TSCDEADLINE:
		l->tsc_deadline = 0;
		/* fall through */
	default:
		l->timer_expire_ns = NO_DEADLINE;
	}
}

static void timer_start(struct lapic *l, uint32_t count, uint64_t now)
{
	l->timer_icr = count;
	l->timer_start_ns = now;
	l->timer_expire_ns = count ? timer_tick_ns(l, count) : NO_DEADLINE;
}

static void write_dcr(struct lapic *l, uint32_t val, uint64_t now)
{
	bool running = timer_mode(l) != TIMER_TSCDEADLINE && l->timer_icr &&
		       l->timer_expire_ns != NO_DEADLINE;
	uint64_t e = running ? timer_elapsed(l, now) : 0;
	l->timer_dcr = val & 0xb;
	if (!running)
		return;
	/* Keep the count where it is; continue at the new rate. */
	uint64_t back = timer_tick_ns(l, e) - l->timer_start_ns;
	l->timer_start_ns = now > back ? now - back : 0;
	if (timer_mode(l) == TIMER_PERIODIC)
		l->timer_expire_ns = timer_next_period(l, now);
	else
		l->timer_expire_ns = timer_tick_ns(l, l->timer_icr);
}

static void write_lvt(struct lapic *l, unsigned idx, uint32_t val, uint64_t now)
{
	uint32_t old = l->lvt[idx];
	val &= lvt_writable[idx];
	if (!sw_enabled(l))
		val |= LVT_MASKED;
	if (idx == LVT_TIMER) {
		unsigned mode = (val >> 17) & 3;
		if (mode == 3 || (mode == TIMER_TSCDEADLINE && !l->cfg.tsc_hz))
			val &= ~(3u << 17); /* reserved / unsupported: one-shot */
		bool was_tsc = ((old >> 17) & 3) == TIMER_TSCDEADLINE;
		bool is_tsc = ((val >> 17) & 3) == TIMER_TSCDEADLINE;
		l->lvt[idx] = val;
		if (was_tsc != is_tsc) {
			l->timer_icr = 0;
			l->tsc_deadline = 0;
			l->timer_expire_ns = NO_DEADLINE;
		} else if ((old & LVT_MASKED) && !(val & LVT_MASKED) &&
			   l->timer_expire_ns <= now) {
			/* Expired while masked: that expiry is gone. */
			timer_expire(l, now, false, NULL);
		}
		return;
	}
	l->lvt[idx] = val;
}

/* ---- registers (lock held) ---- */

static void do_eoi(struct lapic *l, struct lapic_out *o)
{
	int v = highest_bit(l->isr);
	if (v < 0)
		return;
	clr_bit256(l->isr, v);
	if (tst_bit256(l->tmr, v))
		o->eoi_vector = v;
}

static void write_svr(struct lapic *l, uint32_t val)
{
	l->svr = val & 0x3ff;
	if (!(val & SVR_ENABLE))
		for (int i = 0; i < LVT_N; i++)
			l->lvt[i] |= LVT_MASKED;
}

static void send_icr(struct lapic *l, struct lapic_out *o)
{
	struct ipi m = {
		.vector = l->icr_lo & 0xff,
		.delivery_mode = (l->icr_lo >> 8) & 7,
		.dest_mode = (l->icr_lo >> 11) & 1,
		.trigger = (l->icr_lo >> 15) & 1,
		.shorthand = (l->icr_lo >> 18) & 3,
		.x2apic = x2apic(l),
		.dest = x2apic(l) ? l->icr_hi : l->icr_hi >> 24,
	};
	bool level_assert = l->icr_lo & (1u << 14);
	switch (m.delivery_mode) {
	case APIC_DM_FIXED:
	case APIC_DM_LOWEST:
		if (m.vector < 16) {
			set_error(l, APIC_ESR_SEND_ILLEGAL, o);
			return;
		}
		if (m.delivery_mode == APIC_DM_LOWEST && m.shorthand != SH_NONE &&
		    m.shorthand != SH_OTHERS)
			m.delivery_mode = APIC_DM_FIXED; /* illegal combination */
		break;
	case APIC_DM_NMI:
		break;
	case APIC_DM_INIT:
		/* INIT level de-assert: only synchronises arbitration IDs. */
		if (m.trigger == APIC_TRIG_LEVEL && !level_assert)
			return;
		/* fall through */
	case APIC_DM_SIPI:
		if (m.shorthand == SH_SELF)
			return;
		break;
	default: /* SMI, reserved, ExtINT: not sendable here */
		return;
	}
	o->ipi = true;
	o->msg = m;
}

static bool read_reg_locked(struct lapic *l, uint32_t reg, uint64_t now, uint32_t *val,
			    struct lapic_out *o)
{
	switch (reg) {
	case 0x20: *val = x2apic(l) ? l->id : (uint32_t)l->xid << 24; return true;
	case 0x30: *val = LAPIC_VERSION; return true;
	case 0x80: *val = l->tpr; return true;
	case 0x90: *val = apr(l); return true;
	case 0xa0: *val = ppr(l); return true;
	case 0xb0: *val = 0; return true; /* EOI: write-only */
	case 0xd0: *val = l->ldr; return true;
	case 0xe0: *val = l->dfr; return true;
	case 0xf0: *val = l->svr; return true;
	case 0x280: *val = l->esr; return true;
	case 0x300: *val = l->icr_lo; return true; /* delivery status always idle */
	case 0x310: *val = l->icr_hi; return true;
	case 0x380: *val = l->timer_icr; return true;
	case 0x390: *val = timer_current(l, now); return true;
	case 0x3e0: *val = l->timer_dcr; return true;
	}
	if (reg >= 0x100 && reg < 0x180) { *val = l->isr[(reg - 0x100) >> 4]; return true; }
	if (reg >= 0x180 && reg < 0x200) { *val = l->tmr[(reg - 0x180) >> 4]; return true; }
	if (reg >= 0x200 && reg < 0x280) { *val = l->irr[(reg - 0x200) >> 4]; return true; }
	if (reg >= 0x320 && reg < 0x380) { *val = l->lvt[(reg - 0x320) >> 4]; return true; }
	*val = 0;
	if (o)
		set_error(l, APIC_ESR_ILLEGAL_REG, o);
	return false;
}

/* Registers common to xAPIC MMIO and x2APIC MSRs. Returns false for an
 * offset that is not one of them. */
static bool write_common(struct lapic *l, uint32_t reg, uint32_t val, uint64_t now,
			 struct lapic_out *o)
{
	switch (reg) {
	case 0x80: l->tpr = val & 0xff; return true;
	case 0xb0: do_eoi(l, o); return true;
	case 0xf0: write_svr(l, val); return true;
	case 0x280: l->esr = l->esr_latch; l->esr_latch = 0; return true;
	case 0x380:
		if (timer_mode(l) != TIMER_TSCDEADLINE)
			timer_start(l, val, now);
		return true;
	case 0x3e0: write_dcr(l, val, now); return true;
	}
	if (reg >= 0x320 && reg < 0x380) {
		write_lvt(l, (reg - 0x320) >> 4, val, now);
		return true;
	}
	return false;
}

static void write_xapic_locked(struct lapic *l, uint32_t reg, uint32_t val, uint64_t now,
			       struct lapic_out *o)
{
	if (write_common(l, reg, val, now, o))
		return;
	switch (reg) {
	case 0x20: l->xid = val >> 24; return;
	case 0xd0: l->ldr = val & 0xff000000u; return;
	case 0xe0: l->dfr = val | 0x0fffffffu; return;
	case 0x300:
		l->icr_lo = val & 0x000ccfffu;
		send_icr(l, o);
		return;
	case 0x310: l->icr_hi = val & 0xff000000u; return;
	/* read-only: version, APR, PPR, RRD, ISR/TMR/IRR, current count */
	case 0x30: case 0x90: case 0xa0: case 0xc0: case 0x390:
		return;
	}
	if (reg >= 0x100 && reg < 0x280)
		return;
	set_error(l, APIC_ESR_ILLEGAL_REG, o);
}

/* ---- out-of-lock actions ---- */

static void apic_bus_send(struct lapic *src, const struct ipi *m);

static void unlock_and_flush(struct lapic *l, struct lapic_out *o)
{
	update_hint(l);
	pthread_mutex_unlock(&l->lock);
	const struct lapic_ops *ops = l->cfg.ops;
	if (o->init && ops->init_sipi)
		ops->init_sipi(l->cfg.opaque, l->id, false, 0);
	if (o->sipi && ops->init_sipi)
		ops->init_sipi(l->cfg.opaque, l->id, true, o->sipi_vector);
	if (o->kick)
		ops->kick(l->cfg.opaque, l->id);
	if (o->eoi_vector >= 0 && ops->eoi)
		ops->eoi(l->cfg.opaque, (uint8_t)o->eoi_vector);
	if (o->ipi)
		apic_bus_send(l, &o->msg);
}

#define OUT_INIT { .eoi_vector = -1 }

/* ---- public API ---- */

struct lapic *lapic_create(const struct lapic_config *cfg)
{
	if (!cfg || !cfg->ops || !cfg->ops->kick)
		return NULL;
	struct apic_bus *bus = cfg->bus;
	if (bus) {
		if (bus->nr >= APIC_BUS_MAX || apic_bus_find(bus, cfg->apic_id))
			return NULL;
	}
	struct lapic *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	pthread_mutex_init(&l->lock, NULL);
	l->cfg = *cfg;
	if (!l->cfg.bus_hz)
		l->cfg.bus_hz = NSEC_PER_SEC;
	if (l->cfg.phys_addr_bits < 36 || l->cfg.phys_addr_bits > 52)
		l->cfg.phys_addr_bits = 52;
	l->id = cfg->apic_id;
	l->apic_base = LAPIC_DEFAULT_BASE | APIC_BASE_EN | (cfg->bsp ? APIC_BASE_BSP : 0);
	reset_regs(l, true);
	l->sipi_wait = !cfg->bsp;
	atomic_init(&l->hint, false);
	if (bus)
		bus->lapics[bus->nr++] = l;
	return l;
}

void lapic_destroy(struct lapic *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

uint32_t lapic_id(struct lapic *l) { return l->id; }

bool lapic_x2apic_mode(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	bool r = x2apic(l);
	pthread_mutex_unlock(&l->lock);
	return r;
}

uint32_t lapic_read_reg(struct lapic *l, uint32_t offset, uint64_t now_ns)
{
	struct lapic_out o = OUT_INIT;
	uint32_t val = 0;
	pthread_mutex_lock(&l->lock);
	if (hw_enabled(l) && !x2apic(l) && offset < LAPIC_MMIO_SIZE)
		read_reg_locked(l, offset & 0xff0, now_ns, &val, &o);
	unlock_and_flush(l, &o);
	return val;
}

void lapic_write_reg(struct lapic *l, uint32_t offset, uint32_t value, uint64_t now_ns)
{
	struct lapic_out o = OUT_INIT;
	pthread_mutex_lock(&l->lock);
	if (hw_enabled(l) && !x2apic(l) && offset < LAPIC_MMIO_SIZE)
		write_xapic_locked(l, offset & 0xff0, value, now_ns, &o);
	unlock_and_flush(l, &o);
}

static uint64_t clock_now(struct lapic *l)
{
	return l->cfg.clock ? l->cfg.clock(l->cfg.clock_opaque) : 0;
}

uint64_t lapic_mmio_read(void *opaque, uint64_t offset, unsigned size)
{
	struct lapic *l = opaque;
	if (offset >= LAPIC_MMIO_SIZE || size == 0 || size > 8)
		return 0;
	unsigned byte = offset & 0xf;
	if (byte >= 4)
		return 0; /* the 12 bytes after each register */
	uint64_t v = lapic_read_reg(l, (uint32_t)offset & 0xff0, clock_now(l)) >> (8 * byte);
	return size >= 4 ? v : v & ((1ull << (8 * size)) - 1);
}

void lapic_mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct lapic *l = opaque;
	if (offset >= LAPIC_MMIO_SIZE || (offset & 0xf) || (size != 4 && size != 8))
		return; /* SDM: registers take aligned 32-bit accesses only */
	lapic_write_reg(l, (uint32_t)offset, (uint32_t)value, clock_now(l));
}

int lapic_msr_read(struct lapic *l, uint32_t msr, uint64_t *value, uint64_t now_ns)
{
	if (msr < MSR_X2APIC_FIRST || msr > MSR_X2APIC_LAST)
		return -EINVAL;
	uint32_t reg = (msr - MSR_X2APIC_FIRST) << 4;
	int ret = 0;
	uint32_t v = 0;
	pthread_mutex_lock(&l->lock);
	if (!hw_enabled(l) || !x2apic(l)) {
		ret = -EINVAL;
	} else if (reg == 0x300) {
		*value = l->icr_lo | ((uint64_t)l->icr_hi << 32);
	} else {
		switch (reg) {
		/* not in x2APIC: APR, EOI (write-only), RRD, DFR, ICR high,
		 * SELF IPI (write-only) */
		case 0x90: case 0xb0: case 0xc0: case 0xe0: case 0x310: case 0x3f0:
			ret = -EINVAL;
			break;
		default:
			if (!read_reg_locked(l, reg, now_ns, &v, NULL))
				ret = -EINVAL;
			else
				*value = v;
		}
	}
	pthread_mutex_unlock(&l->lock);
	return ret;
}

int lapic_msr_write(struct lapic *l, uint32_t msr, uint64_t value, uint64_t now_ns)
{
	if (msr < MSR_X2APIC_FIRST || msr > MSR_X2APIC_LAST)
		return -EINVAL;
	uint32_t reg = (msr - MSR_X2APIC_FIRST) << 4;
	uint32_t v = (uint32_t)value;
	struct lapic_out o = OUT_INIT;
	int ret = 0;
	pthread_mutex_lock(&l->lock);
	if (!hw_enabled(l) || !x2apic(l) || (reg != 0x300 && (value >> 32))) {
		ret = -EINVAL;
		goto out;
	}
	switch (reg) {
	case 0x80: /* TPR */
		if (v & ~0xffu) ret = -EINVAL;
		break;
	case 0xb0: /* EOI */
	case 0x280: /* ESR */
		if (v) ret = -EINVAL;
		break;
	case 0xf0: /* SVR: no EOI-broadcast suppression */
		if (v & ~0x3ffu) ret = -EINVAL;
		break;
	case 0x300: /* ICR: 64 bits, destination in 63:32 */
		l->icr_lo = v & 0x000ccfffu;
		l->icr_hi = (uint32_t)(value >> 32);
		send_icr(l, &o);
		goto out;
	case 0x380:
		break;
	case 0x3e0:
		if (v & ~0xbu) ret = -EINVAL;
		break;
	case 0x3f0: /* SELF IPI */
		if (v & ~0xffu) {
			ret = -EINVAL;
		} else if (v < 16) {
			set_error(l, APIC_ESR_SEND_ILLEGAL, &o);
		} else {
			accept_fixed(l, v, false, &o);
		}
		goto out;
	default:
		if (reg >= 0x320 && reg < 0x380) {
			if (v & ~(lvt_writable[(reg - 0x320) >> 4] | 0x5000u))
				ret = -EINVAL;
		} else {
			ret = -EINVAL; /* read-only or reserved */
		}
	}
	if (!ret)
		write_common(l, reg, v, now_ns, &o);
out:
	unlock_and_flush(l, &o);
	return ret;
}

uint64_t lapic_get_apic_base(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	uint64_t v = l->apic_base;
	pthread_mutex_unlock(&l->lock);
	return v;
}

uint64_t lapic_get_base(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	uint64_t v = hw_enabled(l) && !x2apic(l) ? l->apic_base & ~0xfffull : UINT64_MAX;
	pthread_mutex_unlock(&l->lock);
	return v;
}

int lapic_set_apic_base(struct lapic *l, uint64_t value)
{
	/* bits 0-7, 9 and at or above MAXPHYADDR are reserved */
	unsigned bits = l->cfg.phys_addr_bits;
	if (value & (0xffull | (1ull << 9) | ~((1ull << bits) - 1)))
		return -EINVAL;
	bool en = value & APIC_BASE_EN, extd = value & APIC_BASE_EXTD;
	struct lapic_out o = OUT_INIT;
	int ret = 0;
	pthread_mutex_lock(&l->lock);
	bool old_en = hw_enabled(l), old_x2 = x2apic(l);
	if (extd && !en)
		ret = -EINVAL;                 /* invalid state */
	else if (old_x2 && en && !extd)
		ret = -EINVAL;                 /* x2APIC -> xAPIC */
	else if (!old_en && en && extd)
		ret = -EINVAL;                 /* disabled -> x2APIC */
	if (ret)
		goto out;
	l->apic_base = (value & ~APIC_BASE_BSP) | (l->apic_base & APIC_BASE_BSP);
	if (!en && old_en) {
		reset_regs(l, false);
	} else if (extd && !old_x2) {
		l->ldr = x2apic_ldr(l->id);
	}
out:
	unlock_and_flush(l, &o);
	return ret;
}

uint64_t lapic_tsc_deadline_read(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	uint64_t v = timer_mode(l) == TIMER_TSCDEADLINE ? l->tsc_deadline : 0;
	pthread_mutex_unlock(&l->lock);
	return v;
}

void lapic_tsc_deadline_write(struct lapic *l, uint64_t deadline, uint64_t now_ns,
			      uint64_t now_tsc)
{
	pthread_mutex_lock(&l->lock);
	if (!l->cfg.tsc_hz || !hw_enabled(l) || timer_mode(l) != TIMER_TSCDEADLINE)
		goto out;
	l->tsc_deadline = deadline;
	if (!deadline) {
		l->timer_expire_ns = NO_DEADLINE;
	} else if (deadline <= now_tsc) {
		l->timer_expire_ns = now_ns;
	} else {
		unsigned __int128 d = (unsigned __int128)(deadline - now_tsc) * NSEC_PER_SEC;
		d = (d + l->cfg.tsc_hz - 1) / l->cfg.tsc_hz + now_ns;
		l->timer_expire_ns = d >= NO_DEADLINE ? NO_DEADLINE - 1 : (uint64_t)d;
	}
out:
	pthread_mutex_unlock(&l->lock);
}

uint8_t lapic_get_cr8(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	uint8_t v = (l->tpr >> 4) & 0xf;
	pthread_mutex_unlock(&l->lock);
	return v;
}

void lapic_set_cr8(struct lapic *l, uint8_t cr8)
{
	pthread_mutex_lock(&l->lock);
	l->tpr = (cr8 & 0xfu) << 4;
	update_hint(l);
	pthread_mutex_unlock(&l->lock);
}

uint64_t lapic_next_deadline(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	uint64_t d = l->timer_expire_ns;
	if (l->lvt[LVT_TIMER] & LVT_MASKED)
		d = NO_DEADLINE; /* nothing observable happens then */
	pthread_mutex_unlock(&l->lock);
	return d;
}

void lapic_poll(struct lapic *l, uint64_t now_ns)
{
	struct lapic_out o = OUT_INIT;
	pthread_mutex_lock(&l->lock);
	if (l->timer_expire_ns <= now_ns)
		timer_expire(l, now_ns, true, &o);
	unlock_and_flush(l, &o);
}

bool lapic_maybe_pending(struct lapic *l)
{
	return atomic_load_explicit(&l->hint, memory_order_acquire);
}

const atomic_bool *lapic_hint_ptr(const struct lapic *l)
{
	return &l->hint;
}

bool lapic_has_interrupt(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	bool r = extint_pending(l) || deliverable_fixed(l) >= 0;
	pthread_mutex_unlock(&l->lock);
	return r;
}

int lapic_get_interrupt(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	if (extint_pending(l)) {
		l->extint_msg = false;
		update_hint(l);
		pthread_mutex_unlock(&l->lock);
		/* The PIC answers INTA; its output change comes back through
		 * lapic_set_lint(). */
		return l->cfg.ops->extint_ack ? l->cfg.ops->extint_ack(l->cfg.opaque) : -1;
	}
	int v = deliverable_fixed(l);
	if (v >= 0) {
		clr_bit256(l->irr, v);
		set_bit256(l->isr, v);
	}
	update_hint(l);
	pthread_mutex_unlock(&l->lock);
	return v;
}

bool lapic_take_nmi(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	bool r = l->nmi_pending;
	l->nmi_pending = false;
	update_hint(l);
	pthread_mutex_unlock(&l->lock);
	return r;
}

void lapic_set_lint(struct lapic *l, unsigned pin, bool level)
{
	if (pin > 1)
		return;
	struct lapic_out o = OUT_INIT;
	pthread_mutex_lock(&l->lock);
	bool rising = level && !l->lint_level[pin];
	l->lint_level[pin] = level;
	uint32_t lvt = l->lvt[LVT_LINT0 + pin];
	if (!hw_enabled(l)) {
		if (pin == 1 && rising) {
			l->nmi_pending = true; /* the NMI pin, straight to the CPU */
			o.kick = true;
		}
	} else if (rising && !(lvt & LVT_MASKED)) {
		switch ((lvt >> 8) & 7) {
		case APIC_DM_FIXED:
			accept_fixed(l, lvt & 0xff, false, &o);
			break;
		case APIC_DM_NMI:
			l->nmi_pending = true;
			o.kick = true;
			break;
		}
	}
	if (level && extint_pending(l))
		o.kick = true;
	unlock_and_flush(l, &o);
}

void lapic_accept(struct lapic *l, unsigned delivery_mode, uint8_t vector, unsigned trigger)
{
	struct lapic_out o = OUT_INIT;
	pthread_mutex_lock(&l->lock);
	if (!hw_enabled(l))
		goto out;
	switch (delivery_mode) {
	case APIC_DM_FIXED:
	case APIC_DM_LOWEST:
		accept_fixed(l, vector, trigger == APIC_TRIG_LEVEL, &o);
		break;
	case APIC_DM_NMI:
		l->nmi_pending = true;
		o.kick = true;
		break;
	case APIC_DM_INIT:
		reset_regs(l, false);
		l->sipi_wait = true;
		o.init = o.kick = true;
		break;
	case APIC_DM_SIPI:
		if (l->sipi_wait) {
			l->sipi_wait = false;
			o.sipi = o.kick = true;
			o.sipi_vector = vector;
		}
		break;
	case APIC_DM_EXTINT:
		l->extint_msg = true;
		o.kick = true;
		break;
	default: /* SMI (not modelled), reserved */
		break;
	}
out:
	unlock_and_flush(l, &o);
}

/* ---- APIC bus ---- */

void apic_bus_init(struct apic_bus *bus)
{
	memset(bus, 0, sizeof(*bus));
}

struct lapic *apic_bus_find(struct apic_bus *bus, uint32_t apic_id)
{
	for (unsigned i = 0; i < bus->nr; i++)
		if (bus->lapics[i]->id == apic_id)
			return bus->lapics[i];
	return NULL;
}

/* Does message (dest, logical, x2fmt) name LAPIC t? Also reports whether
 * t is software-enabled (for lowest-priority arbitration). */
static bool lapic_matches(struct lapic *t, uint32_t dest, bool logical, bool x2fmt,
			  bool *enabled)
{
	bool r = false;
	pthread_mutex_lock(&t->lock);
	*enabled = sw_enabled(t);
	if (!hw_enabled(t)) {
		r = false;
	} else if (!logical) {
		if (x2fmt)
			r = dest == APIC_X2APIC_BROADCAST || dest == t->id;
		else
			r = dest == APIC_XAPIC_BROADCAST ||
			    (x2apic(t) ? t->id : t->xid) == dest;
	} else if (x2fmt) {
		r = dest == APIC_X2APIC_BROADCAST ||
		    (x2apic(t) && (t->ldr >> 16) == (dest >> 16) && (t->ldr & dest & 0xffff));
	} else if (x2apic(t)) {
		/* an 8-bit logical destination (IOAPIC, MSI) reaching an
		 * x2APIC: read as x2APIC cluster 0 with that bit mask, 0xff as
		 * broadcast (what KVM's in-kernel APIC does) */
		dest &= 0xff;
		r = dest == 0xff || ((t->ldr >> 16) == 0 && (t->ldr & dest));
	} else {
		uint32_t lid = t->ldr >> 24;
		dest &= 0xff;
		if ((t->dfr >> 28) == 0xf) /* flat */
			r = lid & dest;
		else if ((t->dfr >> 28) == 0) /* cluster; cluster 0xf = all */
			r = ((dest >> 4) == 0xf || (dest >> 4) == (lid >> 4)) && (lid & dest & 0xf);
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

static void deliver_set(struct lapic **set, unsigned n, struct lapic *src, unsigned shorthand,
			uint32_t dest, bool logical, bool x2fmt, unsigned dm, uint8_t vector,
			unsigned trigger)
{
	struct lapic *best = NULL;
	for (unsigned i = 0; i < n; i++) {
		struct lapic *t = set[i];
		bool enabled = false, hit;
		switch (shorthand) {
		case SH_SELF: hit = t == src; break;
		case SH_OTHERS: hit = t != src; break;
		case SH_ALL: hit = true; break;
		default: hit = lapic_matches(t, dest, logical, x2fmt, &enabled); break;
		}
		if (!hit)
			continue;
		if (dm == APIC_DM_LOWEST) {
			if (shorthand != SH_NONE)
				lapic_matches(t, 0, false, false, &enabled);
			if (enabled && (!best || t->id < best->id))
				best = t;
			continue;
		}
		lapic_accept(t, dm, vector, trigger);
	}
	if (best)
		lapic_accept(best, APIC_DM_FIXED, vector, trigger);
}

static void apic_bus_send(struct lapic *src, const struct ipi *m)
{
	struct apic_bus *bus = src->cfg.bus;
	struct lapic *self[1] = { src };
	deliver_set(bus ? bus->lapics : self, bus ? bus->nr : 1, src, m->shorthand, m->dest,
		    m->dest_mode == APIC_DEST_LOGICAL, m->x2apic, m->delivery_mode, m->vector,
		    m->trigger);
}

void apic_bus_deliver(void *opaque, uint32_t dest, unsigned dest_mode, unsigned delivery_mode,
		      uint8_t vector, unsigned trigger)
{
	struct apic_bus *bus = opaque;
	if (delivery_mode == 3 || delivery_mode == APIC_DM_SMI)
		return;
	/* Devices cannot send SIPIs; INIT via IOAPIC/MSI is legal. */
	if (delivery_mode == APIC_DM_SIPI)
		return;
	deliver_set(bus->lapics, bus->nr, NULL, SH_NONE, dest & 0xff,
		    dest_mode == APIC_DEST_LOGICAL, false, delivery_mode, vector, trigger);
}

int apic_bus_msi(struct apic_bus *bus, uint64_t addr, uint32_t data)
{
	return apic_msi_deliver(apic_bus_deliver, bus, addr, data);
}
