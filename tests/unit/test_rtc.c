#include <criterion/criterion.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "devices/legacy/cmos_rtc.h"
#include "fake_vm.h"
#include "util/event_loop.h"

static struct vm vm;
static struct vm_config cfg;
static struct fake_engine fe;
static struct cmos_rtc *rtc;
static struct timespec fake_now;

static void fake_clock(struct timespec *now, void *opaque)
{
	(void)opaque;
	*now = fake_now;
}

static void setup(void)
{
	fake_vm_init(&vm, &cfg, &fe, 256ULL << 20);
	cr_assert_eq(cmos_rtc_create(&vm, &rtc), 0);
	/* 2026-03-14 15:09:26 UTC, a Saturday */
	struct tm tm = { .tm_year = 126, .tm_mon = 2, .tm_mday = 14, .tm_hour = 15,
			 .tm_min = 9, .tm_sec = 26 };
	fake_now.tv_sec = timegm(&tm);
	fake_now.tv_nsec = 0;
	cmos_rtc_set_clock(rtc, fake_clock, NULL);
}

static void teardown(void)
{
	vm_destroy(&vm);
}

static uint8_t rd(uint8_t i)
{
	pio_out(&vm, PORT_CMOS, 1, i);
	return (uint8_t)pio_in(&vm, PORT_CMOS + 1, 1);
}

static void wr(uint8_t i, uint8_t v)
{
	pio_out(&vm, PORT_CMOS, 1, i);
	pio_out(&vm, PORT_CMOS + 1, 1, v);
}

TestSuite(rtc, .init = setup, .fini = teardown);

Test(rtc, bcd_24h_by_default)
{
	cr_assert_eq(rd(RTC_REG_B) & (RTC_B_DM_BINARY | RTC_B_24H), RTC_B_24H);
	cr_assert_eq(rd(RTC_SECONDS), 0x26);
	cr_assert_eq(rd(RTC_MINUTES), 0x09);
	cr_assert_eq(rd(RTC_HOURS), 0x15);
	cr_assert_eq(rd(RTC_DAY_OF_WEEK), 0x07);
	cr_assert_eq(rd(RTC_DAY_OF_MONTH), 0x14);
	cr_assert_eq(rd(RTC_MONTH), 0x03);
	cr_assert_eq(rd(RTC_YEAR), 0x26);
	cr_assert_eq(rd(RTC_CENTURY), 0x20);
	cr_assert_eq(rd(RTC_REG_D), RTC_D_VRT);
	cr_assert_eq(rd(RTC_REG_A) & 0x7F, 0x26);
}

Test(rtc, time_follows_the_host_clock)
{
	fake_now.tv_sec += 3600 * 10; /* 01:09:26 next day */
	cr_assert_eq(rd(RTC_HOURS), 0x01);
	cr_assert_eq(rd(RTC_DAY_OF_MONTH), 0x15);
}

Test(rtc, binary_and_12_hour)
{
	wr(RTC_REG_B, RTC_B_DM_BINARY | RTC_B_24H);
	cr_assert_eq(rd(RTC_SECONDS), 26);
	cr_assert_eq(rd(RTC_HOURS), 15);
	cr_assert_eq(rd(RTC_YEAR), 26);
	wr(RTC_REG_B, 0); /* BCD, 12-hour */
	cr_assert_eq(rd(RTC_HOURS), 0x80 | 0x03, "3 PM");
	fake_now.tv_sec -= 15 * 3600; /* 00:09 */
	cr_assert_eq(rd(RTC_HOURS), 0x12, "12 AM");
	wr(RTC_REG_B, RTC_B_DM_BINARY);
	fake_now.tv_sec += 12 * 3600; /* 12:09 */
	cr_assert_eq(rd(RTC_HOURS), 0x80 | 12, "12 PM, binary");
}

Test(rtc, guest_sets_the_time)
{
	wr(RTC_REG_B, RTC_B_SET | RTC_B_24H);
	wr(RTC_HOURS, 0x08);
	wr(RTC_MINUTES, 0x30);
	wr(RTC_SECONDS, 0x00);
	wr(RTC_YEAR, 0x30);
	cr_assert_eq(rd(RTC_HOURS), 0x08, "frozen while SET");
	cr_assert_eq(rd(RTC_REG_A) & RTC_A_UIP, 0, "no update while SET");
	wr(RTC_REG_B, RTC_B_24H);
	cr_assert_eq(rd(RTC_HOURS), 0x08);
	cr_assert_eq(rd(RTC_YEAR), 0x30);
	fake_now.tv_sec += 90;
	cr_assert_eq(rd(RTC_MINUTES), 0x31, "the clock runs on from the new time");
	cr_assert_eq(rd(RTC_SECONDS), 0x30);
	/* A write without SET takes effect at once. */
	wr(RTC_MINUTES, 0x45);
	cr_assert_eq(rd(RTC_MINUTES), 0x45);
	cr_assert_eq(rd(RTC_HOURS), 0x08);
}

Test(rtc, nonsense_time_does_not_crash)
{
	wr(RTC_REG_B, RTC_B_SET | RTC_B_24H);
	wr(RTC_MONTH, 0x99);
	wr(RTC_HOURS, 0xFF);
	wr(RTC_DAY_OF_MONTH, 0x00);
	wr(RTC_REG_B, RTC_B_24H);
	(void)rd(RTC_SECONDS);
	(void)rd(RTC_HOURS);
}

Test(rtc, uip_before_the_second_boundary)
{
	fake_now.tv_nsec = 999900000;
	cr_assert(rd(RTC_REG_A) & RTC_A_UIP);
	fake_now.tv_nsec = 500000000;
	cr_assert_eq(rd(RTC_REG_A) & RTC_A_UIP, 0);
	wr(RTC_REG_A, 0xA6);
	cr_assert_eq(rd(RTC_REG_A), 0x26, "UIP is read-only");
}

Test(rtc, register_c_update_flag_and_d)
{
	(void)rd(RTC_REG_C);
	cr_assert_eq(rd(RTC_REG_C) & RTC_C_UF, 0);
	fake_now.tv_sec++;
	cr_assert(rd(RTC_REG_C) & RTC_C_UF);
	cr_assert_eq(rd(RTC_REG_C) & RTC_C_UF, 0, "cleared by reading");
	wr(RTC_REG_D, 0);
	cr_assert_eq(rd(RTC_REG_D), RTC_D_VRT);
	cr_assert_eq(fe.calls, 0, "no IRQ 8 while no interrupt is enabled");
}

Test(rtc, nmi_bit_ignored_and_index_readback)
{
	pio_out(&vm, PORT_CMOS, 1, 0x80 | RTC_MINUTES);
	cr_assert_eq(pio_in(&vm, PORT_CMOS + 1, 1), 0x09);
	wr(0x80 | 0x40, 0x77);
	cr_assert_eq(rd(0x40), 0x77, "plain CMOS storage");
	cr_assert_eq(pio_in(&vm, PORT_CMOS, 1), 0xFF);
}

Test(rtc, memory_size_bytes)
{
	cr_assert_eq(rd(0x15) | (rd(0x16) << 8), 640);
	cr_assert_eq(rd(0x17) | (rd(0x18) << 8), 0xFFFF, "255 MiB above 1 MiB, capped");
	cr_assert_eq(rd(0x30) | (rd(0x31) << 8), 0xFFFF);
	cr_assert_eq(rd(0x34) | (rd(0x35) << 8), (256 - 16) * 16, "64 KiB units above 16 MiB");
	cr_assert_eq(rd(0x5B) | (rd(0x5C) << 8) | (rd(0x5D) << 16), 0, "nothing above 4 GiB");
}

Test(rtc, save_restore)
{
	wr(0x40, 0x12);
	uint8_t blob[512];
	size_t n = cmos_rtc_ops.save(rtc, blob, sizeof(blob));
	cr_assert(n <= sizeof(blob));
	wr(0x40, 0x34);
	cr_assert_eq(cmos_rtc_ops.restore(rtc, blob, n), 0);
	cr_assert_eq(rd(0x40), 0x12);
	cr_assert_eq(cmos_rtc_ops.restore(rtc, blob, n - 1), -EINVAL);
	cmos_rtc_ops.reset(rtc);
	cr_assert_eq(rd(RTC_REG_B), RTC_B_24H);
}

Test(rtc, update_interrupt)
{
	(void)rd(RTC_REG_C);
	wr(RTC_REG_B, RTC_B_24H | RTC_B_UIE);
	cmos_rtc_tick(rtc); /* same second: nothing */
	cr_assert_not(fe.level[IRQ_RTC]);
	fake_now.tv_sec++;
	cmos_rtc_tick(rtc);
	cr_assert(fe.level[IRQ_RTC]);
	cr_assert_eq(rd(RTC_REG_C) & (RTC_C_IRQF | RTC_C_UF), RTC_C_IRQF | RTC_C_UF);
	cr_assert_not(fe.level[IRQ_RTC], "reading C acknowledges");
	cr_assert_eq(rd(RTC_REG_C), 0);
}

Test(rtc, alarm_interrupt)
{
	wr(RTC_SECONDS_ALARM, 0x30);
	wr(RTC_MINUTES_ALARM, 0xC0); /* any minute */
	wr(RTC_HOURS_ALARM, 0xFF);   /* any hour */
	wr(RTC_REG_B, RTC_B_24H | RTC_B_AIE);
	(void)rd(RTC_REG_C);
	fake_now.tv_sec += 1; /* :27 */
	cmos_rtc_tick(rtc);
	cr_assert_not(fe.level[IRQ_RTC], "UF alone does not interrupt with only AIE");
	fake_now.tv_sec += 3; /* :30 */
	cmos_rtc_tick(rtc);
	cr_assert(fe.level[IRQ_RTC]);
	cr_assert_eq(rd(RTC_REG_C) & (RTC_C_IRQF | RTC_C_AF), RTC_C_IRQF | RTC_C_AF);
	cr_assert_not(fe.level[IRQ_RTC]);
}

Test(rtc, periodic_interrupt_with_the_event_loop)
{
	/* A second RTC on a VM with a running loop: real timerfd ticks. */
	struct vm v;
	struct vm_config c;
	struct fake_engine f;
	fake_vm_init(&v, &c, &f, 16 << 20);
	cr_assert_eq(event_loop_create(&v.loop), 0);
	cr_assert_eq(cmos_rtc_create(&v, NULL), 0);
	cr_assert_eq(event_loop_start(v.loop), 0);
	pio_out(&v, PORT_CMOS, 1, RTC_REG_A);
	pio_out(&v, PORT_CMOS + 1, 1, 0x26); /* 1024 Hz */
	pio_out(&v, PORT_CMOS, 1, RTC_REG_B);
	pio_out(&v, PORT_CMOS + 1, 1, RTC_B_24H | RTC_B_PIE);
	for (int i = 0; i < 200 && !f.level[IRQ_RTC]; i++)
		usleep(1000);
	cr_assert(f.level[IRQ_RTC], "IRQ 8 within 200 ms at 1024 Hz");
	pio_out(&v, PORT_CMOS, 1, RTC_REG_B);
	pio_out(&v, PORT_CMOS + 1, 1, RTC_B_24H); /* off again */
	pio_out(&v, PORT_CMOS, 1, RTC_REG_C);
	cr_assert(pio_in(&v, PORT_CMOS + 1, 1) & RTC_C_PF);
	vm_destroy(&v);
}
