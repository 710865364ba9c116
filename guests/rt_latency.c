/* rt_latency: a real-time guest that measures itself. The LAPIC timer in
 * TSC-deadline mode fires every 1 ms (1 kHz) at absolute TSC deadlines
 * t0 + k * period; the interrupt handler reads the TSC first thing, so its
 * lateness against the ideal time is what a real-time task would see (the
 * VMM's timer, wake-up and injection delay together). Between interrupts the
 * vCPU sleeps in HLT. At the end it prints a summary on COM1 and exits
 * through the debug-exit port (GUEST_OK):
 *   rt_latency: tsc <kHz> kHz (<source>), period 1000 us, samples N
 *   rt_latency: histogram <a>-<b> us: <count> ...
 *   rt_latency: count N p50 X us p99 Y us max Z us missed M
 * Command line: samples=N (default 2000, at most 1000000).
 * A missing TSC-deadline timer or no interrupt at all exits GUEST_FAIL. */
#include "lib/idt.h"
#include "lib/runtime.h"

#define LAPIC_BASE      0xFEE00000u
#define LAPIC_EOI       0x0B0
#define LAPIC_SVR       0x0F0
#define LAPIC_LVT_TIMER 0x320
#define LVT_TSC_DEADLINE (2u << 17)
#define MSR_TSC_DEADLINE 0x6E0
#define VEC_TIMER       32
#define VEC_SPURIOUS    255
#define BUCKETS         2000 /* 1 us each; later samples count in the last */

static uint32_t tsc_khz;          /* TSC ticks per ms: also the period */
static volatile uint64_t next_deadline;
static volatile uint32_t samples, wanted, missed;
static volatile uint32_t max_us;
static uint32_t hist[BUCKETS + 1];

static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }

static void cpuid(uint32_t leaf, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

static void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/* hi:lo / d with a quotient that fits 32 bits (no libgcc here). */
static uint32_t div64_32(uint64_t n, uint32_t d)
{
	uint32_t q, r;
	__asm__("divl %4" : "=a"(q), "=d"(r) : "a"((uint32_t)n), "d"((uint32_t)(n >> 32)), "rm"(d));
	(void)r;
	return q;
}

/* TSC ticks to microseconds, saturating at ~1 hour. */
static uint32_t ticks_to_us(uint64_t t)
{
	if (t > 0xFFFFFFFFull)
		t = 0xFFFFFFFFull;
	uint64_t n = t * 1000;
	if ((uint32_t)(n >> 32) >= tsc_khz)
		return 0xFFFFFFFFu;
	return div64_32(n, tsc_khz);
}

/* The TSC rate: CPUID 0x15 (crystal ratio), 0x16 (base MHz), or the PIT's
 * channel 2 counting 10 ms. */
static const char *find_tsc_khz(void)
{
	uint32_t r[4];
	cpuid(0, r);
	uint32_t max_leaf = r[0];
	if (max_leaf >= 0x15) {
		cpuid(0x15, r);
		if (r[0] && r[1] && r[2]) {
			tsc_khz = (r[2] / 1000) * r[1] / r[0];
			if (tsc_khz)
				return "cpuid 0x15";
		}
	}
	if (max_leaf >= 0x16) {
		cpuid(0x16, r);
		if (r[0] & 0xffff) {
			tsc_khz = (r[0] & 0xffff) * 1000;
			return "cpuid 0x16";
		}
	}
	/* PIT channel 2, gate on, speaker off, one-shot of 11932 ticks (10 ms) */
	outb(0x61, (inb(0x61) & ~0x02) | 0x01);
	outb(0x43, 0xb0);
	outb(0x42, 11932 & 0xff);
	outb(0x42, 11932 >> 8);
	uint64_t t0 = rdtsc();
	while (!(inb(0x61) & 0x20))
		;
	tsc_khz = div64_32(rdtsc() - t0, 10);
	return "pit";
}

void isr_common(uint32_t vector, uint32_t error)
{
	uint64_t now = rdtsc();
	if (vector == VEC_SPURIOUS)
		return;
	if (vector != VEC_TIMER) {
		printf("rt_latency: unexpected exception %u (error 0x%x)\n", vector, error);
		guest_exit(GUEST_FAIL);
	}
	uint64_t ideal = next_deadline;
	uint32_t us = now > ideal ? ticks_to_us(now - ideal) : 0;
	hist[us < BUCKETS ? us : BUCKETS]++;
	if (us > max_us)
		max_us = us;
	samples++;
	/* the next ideal time is on the 1 ms grid; deadlines already past count
	 * as missed periods (a real-time task would have overrun them) */
	ideal += tsc_khz;
	while (ideal + tsc_khz <= now) {
		ideal += tsc_khz;
		missed++;
	}
	next_deadline = ideal;
	if (samples < wanted)
		wrmsr(MSR_TSC_DEADLINE, ideal);
	lapic_write(LAPIC_EOI, 0);
}

static uint32_t parse_samples(const struct multiboot_info *mbi)
{
	const char *s = (mbi->flags & (1u << 2)) && mbi->cmdline ? (const char *)mbi->cmdline : "";
	for (; *s; s++) {
		static const char key[] = "samples=";
		unsigned k = 0;
		while (k < 8 && s[k] == key[k])
			k++;
		if (k == 8) {
			uint32_t v = 0;
			for (s += 8; *s >= '0' && *s <= '9'; s++)
				v = v * 10 + (uint32_t)(*s - '0');
			return v && v <= 1000000 ? v : 2000;
		}
	}
	return 2000;
}

/* The smallest latency in us that at least num/den of the samples reach. */
static uint32_t percentile(uint32_t num, uint32_t den)
{
	uint32_t need = div64_32((uint64_t)samples * num + den - 1, den), seen = 0;
	for (uint32_t i = 0; i <= BUCKETS; i++) {
		seen += hist[i];
		if (seen >= need)
			return i;
	}
	return BUCKETS;
}

void guest_main(const struct multiboot_info *mbi)
{
	wanted = parse_samples(mbi);
	idt_load();
	outb(0x21, 0xff); /* legacy PICs masked: the LAPIC timer only */
	outb(0xa1, 0xff);
	uint32_t r[4];
	cpuid(1, r);
	if (!(r[2] & (1u << 24))) {
		puts("rt_latency: FAILED: no TSC-deadline timer (CPUID.1:ECX[24])\n");
		guest_exit(GUEST_FAIL);
	}
	const char *src = find_tsc_khz();
	printf("rt_latency: tsc %u kHz (%s), period 1000 us, samples %u\n", tsc_khz, src, wanted);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_write(LAPIC_LVT_TIMER, LVT_TSC_DEADLINE | VEC_TIMER);
	next_deadline = rdtsc() + tsc_khz;
	wrmsr(MSR_TSC_DEADLINE, next_deadline);
	/* each wake-up is an interrupt or nothing; give up after 5x the run */
	uint64_t give_up = rdtsc() + (uint64_t)tsc_khz * wanted * 5 + (uint64_t)tsc_khz * 2000;
	while (samples < wanted && rdtsc() < give_up)
		__asm__ volatile("sti; hlt; cli");
	lapic_write(LAPIC_LVT_TIMER, 1u << 16);
	if (!samples) {
		puts("rt_latency: FAILED: no timer interrupt\n");
		guest_exit(GUEST_FAIL);
	}
	static const uint32_t edges[] = { 0, 5, 10, 20, 50, 100, 200, 500, 1000, BUCKETS };
	puts("rt_latency: histogram");
	for (unsigned e = 0; e + 1 < sizeof(edges) / sizeof(edges[0]); e++) {
		uint32_t n = 0;
		for (uint32_t i = edges[e]; i < edges[e + 1]; i++)
			n += hist[i];
		printf(" %u-%u:%u", edges[e], edges[e + 1] - 1, n);
	}
	printf(" %u+:%u us\n", BUCKETS, hist[BUCKETS]);
	printf("rt_latency: count %u p50 %u us p99 %u us max %u us missed %u\n", samples,
	       percentile(1, 2), percentile(99, 100), max_us, missed);
	guest_exit(samples == wanted ? GUEST_OK : GUEST_FAIL);
}
