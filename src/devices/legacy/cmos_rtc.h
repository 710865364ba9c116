/* MC146818 CMOS RTC at ports 0x70 (index; bit 7, the NMI mask, ignored)
 * and 0x71 (data), keeping the host's time in UTC. */
#ifndef KITE_DEVICES_LEGACY_CMOS_RTC_H
#define KITE_DEVICES_LEGACY_CMOS_RTC_H

#include <stdint.h>
#include <time.h>

#include "vmm/device.h"

struct vm;
struct cmos_rtc;

/* The memory size bytes come from vm->mem. */
int cmos_rtc_create(struct vm *vm, struct cmos_rtc **out);
extern const struct device_ops cmos_rtc_ops;

/* For tests: replace the host clock (CLOCK_REALTIME) with fn. */
void cmos_rtc_set_clock(struct cmos_rtc *rtc, void (*fn)(struct timespec *now, void *opaque),
			void *opaque);

/* One timer tick, as the event loop delivers it (tests call it directly). */
void cmos_rtc_tick(struct cmos_rtc *rtc);

enum {
	RTC_SECONDS = 0x00, RTC_SECONDS_ALARM = 0x01, RTC_MINUTES = 0x02,
	RTC_MINUTES_ALARM = 0x03, RTC_HOURS = 0x04, RTC_HOURS_ALARM = 0x05,
	RTC_DAY_OF_WEEK = 0x06, RTC_DAY_OF_MONTH = 0x07, RTC_MONTH = 0x08,
	RTC_YEAR = 0x09, RTC_REG_A = 0x0A, RTC_REG_B = 0x0B, RTC_REG_C = 0x0C,
	RTC_REG_D = 0x0D, RTC_CENTURY = 0x32,
};
#define RTC_A_UIP  0x80
#define RTC_B_SET  0x80
#define RTC_B_PIE  0x40
#define RTC_B_AIE  0x20
#define RTC_B_UIE  0x10
#define RTC_B_DM_BINARY 0x04
#define RTC_B_24H  0x02
#define RTC_C_IRQF 0x80
#define RTC_C_PF   0x40
#define RTC_C_AF   0x20
#define RTC_C_UF   0x10
#define RTC_D_VRT  0x80

#endif
