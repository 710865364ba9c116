/* sys_init: INIT and SIPI with timers running (run with --cpus 2).
 * - init_wait: the AP arms PIT channel 0 (periodic, 1 kHz) and sends INIT
 *   to itself by its APIC ID: it must stop there and wait for a SIPI. The
 *   BSP prints "sys_init: waiting", sleeps 1.5 s in HLT (its LAPIC timer
 *   wakes it), prints "sys_init: sipi" and sends the AP a SIPI, which must
 *   restart it. The integration test measures kite's CPU time between the
 *   two lines: a vCPU waiting for SIPI must cost nothing while the PIT runs.
 * - bsp_init (last; it ends the VM, so run it alone: only=bsp_init): the BSP arms the PIT and
 *   sends INIT to itself. The BSP does not wait for SIPI after INIT; it
 *   restarts at the reset vector, which kite (no firmware) treats as a
 *   reset request: kite must end with status 0, not spin or fail. */
#include "sys_lib.h"

const char *const sys_name = "sys_init";

#define LAPIC 0xFEE00000ull
#define LAPIC_ID 0x020
#define LAPIC_EOI 0x0B0
#define LAPIC_SVR 0x0F0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3E0
#define TRAMPOLINE 0x10000ull
#define TIMER_VECTOR 0x40
#define ICR_INIT (5u << 8)
#define ICR_SIPI (6u << 8)
#define ICR_ASSERT (1u << 14)
#define ICR_LEVEL (1u << 15)
#define ICR_ALL_BUT_SELF (3u << 18)

/* the AP start-up code of sys_xmc (sys_xmc_asm.S) calls xmc_ap_main */
extern const char xmc_trampoline[], xmc_trampoline_end[];
static volatile uint32_t ap_up, ap_go, ap_phase, ap_ran_on, ap_woken;
static volatile uint64_t ticks;
static struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) idtr;

static inline uint32_t lapic_read(uint32_t reg)
{
	return *(volatile uint32_t *)(LAPIC + reg);
}

static inline void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(LAPIC + reg) = v;
}

static void icr(uint32_t dest, uint32_t lo)
{
	lapic_write(LAPIC_ICR_HI, dest << 24);
	lapic_write(LAPIC_ICR_LO, lo);
	for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & (1u << 12)); i++)
		;
}

static void delay(uint64_t cycles)
{
	uint64_t t0 = rdtsc();
	while (rdtsc() - t0 < cycles)
		__asm__ volatile("pause");
}

static int wait_for(volatile uint32_t *p, uint32_t v)
{
	uint64_t t0 = rdtsc();
	while (*p != v && rdtsc() - t0 < 10000000000ull)
		__asm__ volatile("pause");
	return *p == v;
}

/* PIT channel 0, mode 2 (rate generator), 1 kHz */
static void pit_periodic(void)
{
	outb(0x43, 0x34);
	outb(0x40, 1193 & 0xff);
	outb(0x40, 1193 >> 8);
}

static void init_self(void)
{
	icr(lapic_read(LAPIC_ID) >> 24, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
}

void xmc_ap_main(void);
void xmc_ap_main(void)
{
	__asm__ volatile("lidt %0" :: "m"(idtr));
	if (ap_phase == 0) {
		ap_up = 1;
		/* not before the BSP's second start-up SIPI has gone by */
		while (!ap_go)
			__asm__ volatile("pause");
		pit_periodic();
		ap_phase = 1;
		init_self();
		/* only reached if the INIT did not stop this CPU */
		delay(100000000);
		ap_ran_on = 1;
	} else {
		ap_woken = 1;
	}
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void timer_tick(struct trap_frame *f)
{
	(void)f;
	ticks++;
	lapic_write(LAPIC_EOI, 0);
}

/* TSC ticks per second: CPUID 0x16 (base MHz) when the CPU says, else 2 GHz */
static uint64_t tsc_hz(void)
{
	uint32_t a = 0, b, c = 0, d;
	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	if (a < 0x16)
		return 2000000000ull;
	a = 0x16;
	c = 0;
	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	return a ? (uint64_t)a * 1000000 : 2000000000ull;
}

/* HLT with the LAPIC timer waking the BSP now and then, until `secs` of
 * TSC time passed */
static void sleep_hlt(uint64_t hz, uint64_t tenths)
{
	set_handler(TIMER_VECTOR, timer_tick);
	lapic_write(LAPIC_TIMER_DIV, 0x3); /* divide by 16 */
	lapic_write(LAPIC_LVT_TIMER, TIMER_VECTOR | (1u << 17)); /* periodic */
	lapic_write(LAPIC_TIMER_INIT, 100000);
	uint64_t t0 = rdtsc();
	while (rdtsc() - t0 < hz / 10 * tenths)
		__asm__ volatile("sti; hlt; cli");
	lapic_write(LAPIC_LVT_TIMER, 1u << 16); /* masked */
	lapic_write(LAPIC_TIMER_INIT, 0);
}

void guest_main(const struct multiboot_info *mbi)
{
	sys_init(mbi);
	__asm__ volatile("sidt %0" : "=m"(idtr));
	lapic_write(LAPIC_SVR, 0x1FF);
	/* the PIT's IRQ0 is not for the BSP: mask both PICs */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	uint64_t hz = tsc_hz();

	if (want("init_wait")) {
		memcpy((void *)TRAMPOLINE, xmc_trampoline,
		       (size_t)(xmc_trampoline_end - xmc_trampoline));
		icr(0, ICR_ALL_BUT_SELF | ICR_INIT | ICR_ASSERT | ICR_LEVEL);
		delay(10000000);
		for (int i = 0; i < 2; i++) {
			icr(0, ICR_ALL_BUT_SELF | ICR_SIPI | (TRAMPOLINE >> 12));
			delay(1000000);
		}
		check(wait_for(&ap_up, 1), "AP up in 64-bit mode (run with --cpus 2)");
		ap_go = 1;
		check(wait_for(&ap_phase, 1), "AP armed the PIT and sent itself INIT");
		delay(20000000);
		check(!ap_ran_on, "AP stopped at the INIT it sent itself");
		printf("sys_init: waiting\n");
		sleep_hlt(hz, 15);
		check(!ap_ran_on && !ap_woken && ticks > 0,
		      "AP still waits for SIPI after 1.5 s with the PIT running (ran on %u, woken "
		      "%u, %llu BSP timer ticks)", ap_ran_on, ap_woken, U64(ticks));
		printf("sys_init: sipi\n");
		icr(1, ICR_SIPI | (TRAMPOLINE >> 12));
		check(wait_for(&ap_woken, 1), "a SIPI from the BSP restarted the AP");
	}
	/* it ends the VM: the tests run it alone (only=bsp_init) */
	if (want("bsp_init")) {
		pit_periodic();
		printf("sys_init: BSP sends itself INIT\n");
		init_self();
		delay(1000000000);
		check(0, "the BSP's INIT restarted it (kite ends with a reset)");
	}
	sys_finish();
}
