#include <criterion/criterion.h>

#include "devices/platform/pit8254.h"

static struct pit *P;
static unsigned RISES;
static bool LINE;
static uint64_t NOW;

static void set_irq(void *o, unsigned line, bool level)
{
	(void)o;
	cr_assert_eq(line, 0);
	if (level && !LINE)
		RISES++;
	LINE = level;
}

static uint64_t clk(void *o) { (void)o; return NOW; }

/* First host ns at which `ticks` PIT ticks have elapsed from t0. */
static uint64_t at(uint64_t t0, uint64_t ticks)
{
	return t0 + (ticks * 1000000000ull + PIT_HZ - 1) / PIT_HZ;
}

static void setup(void)
{
	RISES = 0;
	LINE = false;
	NOW = 1000000;
	struct pit_config c = { .set_irq = set_irq, .clock = clk };
	P = pit_create(&c);
	cr_assert_not_null(P);
}

static void fini(void) { pit_destroy(P); }

static void out(unsigned port, uint8_t v) { pit_io_write(P, port, 1, v); }
static uint8_t in(unsigned port) { return pit_io_read(P, port, 1); }
static uint8_t in61(void) { return pit_port61_io_read(P, 0, 1); }
static void out61(uint8_t v) { pit_port61_io_write(P, 0, 1, v); }

static uint16_t read16(unsigned ch)
{
	uint8_t lo = in(ch);
	return lo | (uint16_t)in(ch) << 8;
}

TestSuite(pit, .init = setup, .fini = fini);

Test(pit, mode0_counts_down_and_out_goes_high)
{
	uint64_t t0 = NOW;
	out(3, 0x30); /* ch0, lo/hi, mode 0, binary */
	cr_assert_not(pit_get_out(P, 0, NOW));
	out(0, 0xe8);
	out(0, 0x03); /* 1000 */
	cr_assert_eq(read16(0), 1000);
	NOW = at(t0, 1);
	cr_assert_eq(read16(0), 999);
	NOW = at(t0, 400);
	cr_assert_eq(read16(0), 600);
	cr_assert_not(pit_get_out(P, 0, NOW));
	cr_assert_eq(pit_next_deadline(P), at(t0, 1000));
	pit_poll(P, NOW);
	cr_assert_eq(RISES, 0);
	NOW = at(t0, 1000);
	cr_assert(pit_get_out(P, 0, NOW));
	cr_assert_eq(read16(0), 0);
	pit_poll(P, NOW);
	cr_assert_eq(RISES, 1);
	cr_assert_not(LINE); /* a pulse */
	cr_assert_eq(pit_next_deadline(P), UINT64_MAX); /* one-shot */
	/* keeps counting down through 0: wraps */
	NOW = at(t0, 1010);
	cr_assert_eq(read16(0), 65526);
}

Test(pit, mode2_rate_generator_periodic_irq_and_coalescing)
{
	uint64_t t0 = NOW;
	out(3, 0x34); /* ch0, lo/hi, mode 2: what Linux's PIT clockevent uses */
	out(0, 0xa9);
	out(0, 0x04); /* 1193: ~1 ms */
	cr_assert(pit_get_out(P, 0, NOW));
	cr_assert_eq(pit_next_deadline(P), at(t0, 1193));
	NOW = at(t0, 1192);
	cr_assert_not(pit_get_out(P, 0, NOW)); /* low for the last tick */
	cr_assert_eq(read16(0), 1);
	NOW = at(t0, 1193);
	cr_assert(pit_get_out(P, 0, NOW));
	cr_assert_eq(read16(0), 1193); /* reloaded */
	pit_poll(P, NOW);
	cr_assert_eq(RISES, 1);
	cr_assert_eq(pit_next_deadline(P), at(t0, 2 * 1193));
	NOW = at(t0, 2 * 1193 + 100);
	cr_assert_eq(read16(0), 1093);
	pit_poll(P, NOW);
	cr_assert_eq(RISES, 2);
	/* a 1 s stall: one pulse, back on the grid */
	NOW = t0 + 1000000000ull + 12345;
	pit_poll(P, NOW);
	cr_assert_eq(RISES, 3);
	uint64_t d = pit_next_deadline(P);
	cr_assert_gt(d, NOW);
	cr_assert_leq(d, NOW + 1000000);
	pit_poll(P, NOW);
	cr_assert_eq(RISES, 3);
}

Test(pit, mode3_square_wave)
{
	uint64_t t0 = NOW;
	out(3, 0x36); /* ch0, lo/hi, mode 3 */
	out(0, 100);
	out(0, 0);
	cr_assert(pit_get_out(P, 0, NOW));
	cr_assert_eq(read16(0), 100);
	NOW = at(t0, 10);
	cr_assert_eq(read16(0), 80); /* counts by two */
	NOW = at(t0, 49);
	cr_assert(pit_get_out(P, 0, NOW));
	NOW = at(t0, 50);
	cr_assert_not(pit_get_out(P, 0, NOW));
	NOW = at(t0, 99);
	cr_assert_not(pit_get_out(P, 0, NOW));
	NOW = at(t0, 100);
	cr_assert(pit_get_out(P, 0, NOW));
	/* tiny periods don't storm: pulses at least 50 us apart */
	out(0, 2);
	out(0, 0);
	NOW += 10000;
	pit_poll(P, NOW);
	cr_assert_geq(pit_next_deadline(P), NOW + 50000);
}

/* arch/x86/kernel/tsc.c pit_calibrate_tsc(): gate ch2 through port 0x61,
 * mode 0, 50 ms count, poll OUT2 (bit 5). */
Test(pit, linux_pit_calibrate_tsc_sequence)
{
	out61((in61() & ~0x02) | 0x01);
	uint64_t t0 = NOW;
	out(3, 0xb0);
	uint16_t latch = PIT_HZ / (1000 / 50);
	out(2, latch & 0xff);
	out(2, latch >> 8);
	cr_assert_eq(in61() & 0x20, 0);
	NOW = at(t0, latch - 1);
	cr_assert_eq(in61() & 0x20, 0);
	NOW = at(t0, latch);
	cr_assert_eq(in61() & 0x20, 0x20);
	cr_assert_eq(in61() & 0x03, 0x01);
	/* channel 2 never raises IRQ0 */
	pit_poll(P, NOW);
	cr_assert_eq(RISES, 0);
	/* gate low stops channel 2 in mode 0 */
	out(3, 0xb0);
	out(2, 0xff);
	out(2, 0xff);
	out61(0x00);
	uint16_t v1 = read16(2);
	NOW += 1000000;
	cr_assert_eq(read16(2), v1);
	out61(0x01);
	NOW = at(NOW, 10);
	cr_assert_eq(read16(2), v1 - 10);
}

/* quick_pit_calibrate(): ch2 mode 0 from 0xffff, read lo then hi and watch
 * the MSB fall by one every 256 ticks. */
Test(pit, linux_quick_pit_calibrate_msb_sequence)
{
	out61((in61() & ~0x02) | 0x01);
	out(3, 0xb0);
	uint64_t t0 = NOW;
	out(2, 0xff);
	out(2, 0xff);
	for (unsigned i = 0; i < 40; i++) {
		NOW = at(t0, 256 * i + 128);
		in(2);
		cr_assert_eq(in(2), 0xff - i);
	}
}

Test(pit, latch_and_flipflop)
{
	uint64_t t0 = NOW;
	out(3, 0x34);
	out(0, 0x00);
	out(0, 0x10); /* 4096 */
	NOW = at(t0, 100);
	out(3, 0x00); /* latch ch0 */
	NOW = at(t0, 200);
	out(3, 0x00); /* second latch ignored until read */
	cr_assert_eq(in(0), (3996) & 0xff);
	NOW = at(t0, 300);
	cr_assert_eq(in(0), 3996 >> 8);
	/* latch released: live again */
	cr_assert_eq(read16(0), 3796);
	/* lobyte-only and hibyte-only access */
	out(3, 0x54); /* ch1, LSB only, mode 2 */
	out(1, 50);
	cr_assert_eq(in(1), 50);
	out(3, 0x64); /* ch1, MSB only, mode 2 */
	out(1, 2);
	cr_assert_eq(in(1), 2);
	cr_assert_eq(in(1), 2);
	/* the command port reads as open bus */
	cr_assert_eq(in(3), 0xff);
}

Test(pit, read_back_status_and_count)
{
	uint64_t t0 = NOW;
	out(3, 0xb0); /* ch2 mode 0, gate low */
	cr_assert_eq(in61() & 0x20, 0);
	out(3, 0xe8); /* read-back: status only, ch2 */
	cr_assert_eq(in(2), 0x70); /* OUT 0, null count, lo/hi, mode 0 */
	out(2, 0x10);
	out(2, 0x00);
	out61(0x01);
	NOW = at(t0, 5);
	out(3, 0xc8); /* read-back: count and status, ch2 */
	uint8_t st = in(2);
	cr_assert_eq(st, 0x30); /* count loaded: null count clear */
	cr_assert_eq(read16(2), 11);
	/* ch0 and ch1 together, count only */
	out(3, 0x34);
	out(0, 0x00);
	out(0, 0x01); /* 256 */
	out(3, 0xd6); /* count only, ch0 + ch1... bit 1 ch0, bit 2 ch1 */
	cr_assert_eq(read16(0), 256);
}

Test(pit, bcd_counting)
{
	uint64_t t0 = NOW;
	out(3, 0x31); /* ch0, lo/hi, mode 0, BCD */
	out(0, 0x00);
	out(0, 0x10); /* 1000 decimal */
	NOW = at(t0, 1);
	cr_assert_eq(read16(0), 0x0999);
	cr_assert_eq(pit_next_deadline(P), at(t0, 1000));
	/* hostile: invalid BCD digits still count */
	out(3, 0x31);
	out(0, 0xff);
	out(0, 0xff);
	read16(0);
}

Test(pit, mode1_and_mode5_wait_for_gate)
{
	uint64_t t0 = NOW;
	out(3, 0xb2); /* ch2, mode 1 */
	out(2, 100);
	out(2, 0);
	cr_assert(pit_get_out(P, 2, NOW));
	NOW = at(t0, 50);
	cr_assert_eq(read16(2), 100); /* not triggered */
	out61(1);
	uint64_t t1 = NOW;
	cr_assert_not(pit_get_out(P, 2, NOW));
	NOW = at(t1, 100);
	cr_assert(pit_get_out(P, 2, NOW));
	/* channel 0 in mode 1: gate tied high, never triggers */
	out(3, 0x32);
	out(0, 10);
	out(0, 0);
	cr_assert_eq(pit_next_deadline(P), UINT64_MAX);
	/* mode 4 on ch0: one pulse after count + 1 */
	t0 = NOW;
	out(3, 0x38);
	out(0, 10);
	out(0, 0);
	cr_assert_eq(pit_next_deadline(P), at(t0, 11));
	NOW = at(t0, 10);
	cr_assert_not(pit_get_out(P, 0, NOW));
}

Test(pit, port61_bits_and_hostile_writes)
{
	out61(0xff);
	uint8_t v = in61();
	cr_assert_eq(v & 0x0f, 0x0f);
	cr_assert_eq(v & 0xc0, 0);
	uint8_t a = in61() & 0x10;
	NOW += 15085;
	cr_assert_neq(in61() & 0x10, a); /* refresh toggles */
	/* unknown/odd commands and ports */
	for (unsigned c = 0; c < 256; c++)
		out(3, c);
	for (unsigned port = 0; port < 3; port++)
		for (unsigned i = 0; i < 8; i++)
			out(port, i * 37);
	pit_io_write(P, 7, 1, 0);
	cr_assert_eq(pit_io_read(P, 9, 1), 0xff);
	cr_assert_eq(pit_get_out(P, 7, NOW), false);
	pit_poll(P, NOW + 10000000000ull);
}
