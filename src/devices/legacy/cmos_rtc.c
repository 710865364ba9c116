/* MC146818 CMOS RTC.
 *
 * Time: the guest's clock is the host's CLOCK_REALTIME (UTC) plus an offset
 * that changes only when the guest sets the time. Time registers are
 * computed on each read, in BCD or binary and 12/24-hour form as register B
 * asks. While B.SET is on, the registers hold what the guest writes; when
 * SET is cleared the new time takes effect. A write to a time register with
 * SET off takes effect at once.
 *
 * UIP (A bit 7) is set during the last 244 us before each second boundary,
 * the window in which a real MC146818 may be updating, so guests that wait
 * for UIP to clear behave as on hardware and see a consistent time after.
 *
 * Interrupts (IRQ 8): periodic (PIE, at the rate of register A), alarm (AIE)
 * and update-ended (UIE) interrupts come from a timerfd on the VM's event
 * loop, armed only while one of them is enabled: PIE ticks at its period,
 * UIE/AIE at each second boundary of the guest clock. A tick sets PF, UF and
 * AF in register C as due, sets IRQF when an enabled flag is pending and
 * raises IRQ 8 (a level: it drops when the guest reads C, which clears the
 * flags). Without an event loop (or for a guest that polls), reading C
 * also reports UF when a second boundary passed since C was last read and
 * AF when the alarm matches the current time.
 *
 * CMOS memory: bytes 0x0E-0x7F are plain storage, except the memory size
 * bytes filled from guest RAM: 0x15/0x16 base memory (640 KiB), 0x17/0x18
 * and 0x30/0x31 extended memory from 1 MiB in KiB (max 0xFFFF), 0x34/0x35
 * memory from 16 MiB to the PCI hole in 64 KiB units, 0x5B-0x5D memory
 * above 4 GiB in 64 KiB units; 0x32 holds the century (FADT CENTURY). */
#include "devices/legacy/cmos_rtc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "util/event_loop.h"
#include "util/log.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

struct rtc_state {
	uint8_t cmos[128];
	uint8_t index;
	int64_t offset;      /* guest seconds - host seconds */
	int64_t last_c_read; /* guest second at the last read of register C */
	int64_t last_tick;   /* guest second seen by the last timer tick */
	uint8_t c_flags;     /* PF/AF/UF set by timer ticks, not yet read */
};

#define RTC_STATE_VERSION 2

struct cmos_rtc {
	pthread_mutex_t lock;
	struct vm *vm;
	struct rtc_state s;
	void (*clock)(struct timespec *now, void *opaque);
	void *clock_opaque;
	int timerfd;          /* -1 without an event loop */
	bool irq_level;
};

static void host_clock(struct timespec *now, void *opaque)
{
	(void)opaque;
	clock_gettime(CLOCK_REALTIME, now);
}

static uint8_t to_bcd(unsigned v) { return (uint8_t)(((v / 10) << 4) | (v % 10)); }
static unsigned from_bcd(uint8_t v) { return (v >> 4) * 10 + (v & 0x0F); }

static bool binary_mode(const struct cmos_rtc *r)
{
	return r->s.cmos[RTC_REG_B] & RTC_B_DM_BINARY;
}

static uint8_t encode(const struct cmos_rtc *r, unsigned v)
{
	return binary_mode(r) ? (uint8_t)v : to_bcd(v);
}

static unsigned decode(const struct cmos_rtc *r, uint8_t v)
{
	return binary_mode(r) ? v : from_bcd(v);
}

static uint8_t encode_hour(const struct cmos_rtc *r, unsigned h)
{
	if (r->s.cmos[RTC_REG_B] & RTC_B_24H)
		return encode(r, h);
	unsigned h12 = h % 12 ? h % 12 : 12;
	return (uint8_t)(encode(r, h12) | (h >= 12 ? 0x80 : 0));
}

static unsigned decode_hour(const struct cmos_rtc *r, uint8_t v)
{
	if (r->s.cmos[RTC_REG_B] & RTC_B_24H)
		return decode(r, v);
	unsigned h = decode(r, v & 0x7F) % 12;
	return (v & 0x80) ? h + 12 : h;
}

static int64_t guest_now(struct cmos_rtc *r, long *nsec)
{
	struct timespec ts;
	r->clock(&ts, r->clock_opaque);
	if (nsec)
		*nsec = ts.tv_nsec;
	return (int64_t)ts.tv_sec + r->s.offset;
}

/* Write the guest time into the time registers. */
static void materialize(struct cmos_rtc *r)
{
	time_t t = (time_t)guest_now(r, NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	uint8_t *c = r->s.cmos;
	c[RTC_SECONDS] = encode(r, (unsigned)tm.tm_sec);
	c[RTC_MINUTES] = encode(r, (unsigned)tm.tm_min);
	c[RTC_HOURS] = encode_hour(r, (unsigned)tm.tm_hour);
	c[RTC_DAY_OF_WEEK] = encode(r, (unsigned)tm.tm_wday + 1);
	c[RTC_DAY_OF_MONTH] = encode(r, (unsigned)tm.tm_mday);
	c[RTC_MONTH] = encode(r, (unsigned)tm.tm_mon + 1);
	c[RTC_YEAR] = encode(r, (unsigned)tm.tm_year % 100);
	c[RTC_CENTURY] = encode(r, (unsigned)(tm.tm_year + 1900) / 100);
}

/* The time registers (as the guest left them) become the guest time. */
static void take_time_from_registers(struct cmos_rtc *r)
{
	const uint8_t *c = r->s.cmos;
	struct tm tm = { 0 };
	tm.tm_sec = (int)decode(r, c[RTC_SECONDS]);
	tm.tm_min = (int)decode(r, c[RTC_MINUTES]);
	tm.tm_hour = (int)decode_hour(r, c[RTC_HOURS]);
	tm.tm_mday = (int)decode(r, c[RTC_DAY_OF_MONTH]);
	tm.tm_mon = (int)decode(r, c[RTC_MONTH]) - 1;
	tm.tm_year = (int)(decode(r, c[RTC_CENTURY]) * 100 + decode(r, c[RTC_YEAR])) - 1900;
	/* Nonsense (month 0, hour 99) is normalised by timegm, not trusted. */
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return;
	struct timespec ts;
	r->clock(&ts, r->clock_opaque);
	r->s.offset = (int64_t)t - (int64_t)ts.tv_sec;
}

/* Alarm bytes with both top bits set match anything ("don't care"). */
static bool alarm_matches(struct cmos_rtc *r)
{
	const uint8_t *c = r->s.cmos;
	static const uint8_t pairs[3][2] = {
		{ RTC_SECONDS_ALARM, RTC_SECONDS },
		{ RTC_MINUTES_ALARM, RTC_MINUTES },
		{ RTC_HOURS_ALARM, RTC_HOURS } };
	materialize(r);
	for (int k = 0; k < 3; k++)
		if ((c[pairs[k][0]] & 0xC0) != 0xC0 && c[pairs[k][0]] != c[pairs[k][1]])
			return false;
	return true;
}

static void update_irq(struct cmos_rtc *r)
{
	bool level = (r->s.c_flags & r->s.cmos[RTC_REG_B] & (RTC_B_PIE | RTC_B_AIE | RTC_B_UIE)) != 0;
	if (level != r->irq_level) {
		r->irq_level = level;
		if (r->vm)
			vm_irq_line(r->vm, IRQ_RTC, level);
	}
}

/* Periodic interrupt period in ns from register A's rate bits (0: off). */
static uint64_t periodic_ns(const struct cmos_rtc *r)
{
	unsigned rs = r->s.cmos[RTC_REG_A] & 0x0F;
	if (!rs)
		return 0;
	unsigned shift = rs < 3 ? rs + 7 : rs; /* 1, 2: 256, 128 Hz; n >= 3: 65536 >> n Hz */
	return (1000000000ULL << shift) / 65536;
}

/* Arm the timer for what register B enables (called with the lock). */
static void rearm(struct cmos_rtc *r)
{
	if (r->timerfd < 0)
		return;
	uint8_t b = r->s.cmos[RTC_REG_B];
	struct itimerspec its = { 0 };
	uint64_t period = (b & RTC_B_PIE) ? periodic_ns(r) : 0;
	if (b & RTC_B_SET) {
		/* no updates while the guest sets the clock */
	} else if (period) {
		its.it_interval.tv_sec = (time_t)(period / 1000000000ULL);
		its.it_interval.tv_nsec = (long)(period % 1000000000ULL);
		its.it_value = its.it_interval;
	} else if (b & (RTC_B_AIE | RTC_B_UIE)) {
		/* Each second boundary; the guest clock is the host's plus
		 * whole seconds, so the boundaries are the host's. */
		long ns;
		guest_now(r, &ns);
		its.it_value.tv_nsec = 1000000000L - ns;
		if (its.it_value.tv_nsec >= 1000000000L) {
			its.it_value.tv_sec = 1;
			its.it_value.tv_nsec = 0;
		}
		its.it_interval.tv_sec = 1;
	}
	timerfd_settime(r->timerfd, 0, &its, NULL);
}

void cmos_rtc_tick(struct cmos_rtc *r)
{
	pthread_mutex_lock(&r->lock);
	uint8_t b = r->s.cmos[RTC_REG_B];
	if (!(b & RTC_B_SET)) {
		int64_t now = guest_now(r, NULL);
		if (b & RTC_B_PIE)
			r->s.c_flags |= RTC_C_PF;
		if (now != r->s.last_tick) {
			r->s.last_tick = now;
			r->s.c_flags |= RTC_C_UF;
			if (alarm_matches(r))
				r->s.c_flags |= RTC_C_AF;
		}
		update_irq(r);
	}
	pthread_mutex_unlock(&r->lock);
}

static void timer_ready(void *opaque, int fd, uint32_t events)
{
	uint64_t expirations;
	(void)events;
	if (read(fd, &expirations, sizeof(expirations)) == sizeof(expirations))
		cmos_rtc_tick(opaque);
}

/* The registers computed from the clock (the alarm bytes are storage). */
static bool is_time_reg(unsigned i)
{
	return (i <= RTC_YEAR && i != RTC_SECONDS_ALARM && i != RTC_MINUTES_ALARM &&
		i != RTC_HOURS_ALARM) || i == RTC_CENTURY;
}

static uint8_t cmos_read(struct cmos_rtc *r, unsigned i)
{
	uint8_t *c = r->s.cmos;
	bool set = c[RTC_REG_B] & RTC_B_SET;
	if (is_time_reg(i)) {
		if (!set)
			materialize(r);
		return c[i];
	}
	switch (i) {
	case RTC_REG_A: {
		long ns;
		guest_now(r, &ns);
		bool uip = !set && ns >= 1000000000L - 244000L;
		return (uint8_t)((c[RTC_REG_A] & 0x7F) | (uip ? RTC_A_UIP : 0));
	}
	case RTC_REG_C: {
		int64_t now = guest_now(r, NULL);
		uint8_t v = r->s.c_flags;
		if (!set) {
			if (now != r->s.last_c_read)
				v |= RTC_C_UF;
			if (alarm_matches(r))
				v |= RTC_C_AF;
		}
		if (v & c[RTC_REG_B] & (RTC_B_PIE | RTC_B_AIE | RTC_B_UIE))
			v |= RTC_C_IRQF;
		r->s.c_flags = 0;
		r->s.last_c_read = now;
		update_irq(r);
		return v;
	}
	case RTC_REG_D:
		return RTC_D_VRT;
	default:
		return c[i];
	}
}

static void cmos_write(struct cmos_rtc *r, unsigned i, uint8_t v)
{
	uint8_t *c = r->s.cmos;
	bool set = c[RTC_REG_B] & RTC_B_SET;
	if (is_time_reg(i)) {
		if (!set)
			materialize(r);
		c[i] = v;
		if (!set)
			take_time_from_registers(r);
		return;
	}
	switch (i) {
	case RTC_REG_A:
		c[i] = v & 0x7F; /* UIP is read-only */
		rearm(r);
		break;
	case RTC_REG_B:
		if ((v & RTC_B_SET) && !set) {
			materialize(r); /* freeze what the guest will edit */
		} else if (!(v & RTC_B_SET) && set) {
			take_time_from_registers(r);
		}
		/* A change of format while running: the registers are
		 * recomputed on the next read, nothing to convert. Under SET
		 * the guest writes in the new format itself. */
		c[i] = v;
		rearm(r);
		update_irq(r);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	default:
		c[i] = v;
		break;
	}
}

static uint64_t rtc_read(void *opaque, uint64_t offset, unsigned size)
{
	struct cmos_rtc *r = opaque;
	(void)size;
	if (offset == 0)
		return 0xFF; /* the index register is write-only */
	pthread_mutex_lock(&r->lock);
	uint8_t v = cmos_read(r, r->s.index);
	pthread_mutex_unlock(&r->lock);
	return v;
}

static void rtc_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
	struct cmos_rtc *r = opaque;
	(void)size;
	pthread_mutex_lock(&r->lock);
	if (offset == 0)
		r->s.index = value & 0x7F; /* bit 7 masks NMI: no meaning here */
	else
		cmos_write(r, r->s.index, (uint8_t)value);
	pthread_mutex_unlock(&r->lock);
}

static void put16(uint8_t *c, unsigned i, uint64_t v)
{
	c[i] = (uint8_t)v;
	c[i + 1] = (uint8_t)(v >> 8);
}

static void fill_memory_size(struct cmos_rtc *r)
{
	uint8_t *c = r->s.cmos;
	const struct guest_memory *mem = &r->vm->mem;
	uint64_t low_end = gm_low_ram_end(mem);
	uint64_t high = mem->ram_size > low_end ? mem->ram_size - low_end : 0;
	put16(c, 0x15, 640);
	uint64_t ext_kib = low_end > (1 << 20) ? (low_end - (1 << 20)) >> 10 : 0;
	if (ext_kib > 0xFFFF)
		ext_kib = 0xFFFF;
	put16(c, 0x17, ext_kib);
	put16(c, 0x30, ext_kib);
	uint64_t above16 = low_end > (16 << 20) ? (low_end - (16 << 20)) >> 16 : 0;
	if (above16 > 0xFFFF)
		above16 = 0xFFFF;
	put16(c, 0x34, above16);
	uint64_t above4g = high >> 16;
	if (above4g > 0xFFFFFF)
		above4g = 0xFFFFFF;
	c[0x5B] = (uint8_t)above4g;
	c[0x5C] = (uint8_t)(above4g >> 8);
	c[0x5D] = (uint8_t)(above4g >> 16);
}

static void rtc_reset_locked(struct cmos_rtc *r)
{
	/* The time (offset) survives a reset, as a battery-backed clock does;
	 * so does the rest of CMOS. Only the control registers go back. */
	uint8_t *c = r->s.cmos;
	c[RTC_REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
	c[RTC_REG_B] = RTC_B_24H;
	c[RTC_REG_C] = 0;
	c[RTC_REG_D] = RTC_D_VRT;
	r->s.index = 0;
	r->s.c_flags = 0;
	rearm(r);
	update_irq(r);
	if (r->vm)
		fill_memory_size(r);
}

static void rtc_reset(void *dev)
{
	struct cmos_rtc *r = dev;
	pthread_mutex_lock(&r->lock);
	rtc_reset_locked(r);
	pthread_mutex_unlock(&r->lock);
}

static size_t rtc_save(void *dev, void *buf, size_t len)
{
	struct cmos_rtc *r = dev;
	size_t need = 1 + sizeof(struct rtc_state);
	if (len < need)
		return need;
	pthread_mutex_lock(&r->lock);
	((uint8_t *)buf)[0] = RTC_STATE_VERSION;
	memcpy((uint8_t *)buf + 1, &r->s, sizeof(r->s));
	pthread_mutex_unlock(&r->lock);
	return need;
}

static int rtc_restore(void *dev, const void *buf, size_t len)
{
	struct cmos_rtc *r = dev;
	struct rtc_state s;
	if (len != 1 + sizeof(s) || ((const uint8_t *)buf)[0] != RTC_STATE_VERSION)
		return -EINVAL;
	memcpy(&s, (const uint8_t *)buf + 1, sizeof(s));
	if (s.index >= 128)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	r->s = s;
	rearm(r);
	update_irq(r);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static void rtc_destroy(void *dev)
{
	struct cmos_rtc *r = dev;
	if (r->vm)
		bus_unregister(&r->vm->pio, PORT_CMOS, r);
	if (r->timerfd >= 0) {
		if (r->vm && r->vm->loop)
			event_loop_del(r->vm->loop, r->timerfd);
		close(r->timerfd);
	}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

const struct device_ops cmos_rtc_ops = {
	.name = "cmos_rtc", .reset = rtc_reset, .save = rtc_save,
	.restore = rtc_restore, .destroy = rtc_destroy,
};

void cmos_rtc_set_clock(struct cmos_rtc *r, void (*fn)(struct timespec *, void *), void *opaque)
{
	pthread_mutex_lock(&r->lock);
	r->clock = fn ? fn : host_clock;
	r->clock_opaque = opaque;
	r->s.last_c_read = r->s.last_tick = guest_now(r, NULL);
	pthread_mutex_unlock(&r->lock);
}

int cmos_rtc_create(struct vm *vm, struct cmos_rtc **out)
{
	struct cmos_rtc *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	r->vm = vm;
	r->clock = host_clock;
	r->timerfd = -1;
	int ret = 0;
	if (vm->loop) {
		r->timerfd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK);
		if (r->timerfd < 0) {
			ret = -errno;
		} else {
			ret = event_loop_add(vm->loop, r->timerfd, EPOLLIN, timer_ready, r);
			if (ret) {
				close(r->timerfd);
				r->timerfd = -1;
			}
		}
		if (ret) {
			pthread_mutex_destroy(&r->lock);
			free(r);
			return ret;
		}
	}
	rtc_reset_locked(r);
	r->s.last_c_read = r->s.last_tick = guest_now(r, NULL);
	ret = bus_register(&vm->pio, PORT_CMOS, 2, rtc_read, rtc_write, r, "cmos_rtc");
	if (!ret)
		ret = vm_add_device(vm, &cmos_rtc_ops, r);
	if (ret) {
		rtc_destroy(r);
		return ret;
	}
	if (out)
		*out = r;
	return 0;
}
