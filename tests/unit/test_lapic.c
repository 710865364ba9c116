#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "devices/platform/lapic.h"

/* A fake engine: counts kicks, records INIT/SIPI and EOI broadcasts. */
struct rec {
	unsigned kicks[8];
	int inits[8], sipis[8];
	int sipi_vec[8];
	int eois[16];
	unsigned nr_eoi;
	int extint_vector;
	unsigned extint_acks;
	uint64_t now;
};

static void rec_kick(void *o, unsigned id) { ((struct rec *)o)->kicks[id & 7]++; }
static void rec_eoi(void *o, uint8_t v)
{
	struct rec *r = o;
	if (r->nr_eoi < 16)
		r->eois[r->nr_eoi++] = v;
}
static void rec_init_sipi(void *o, unsigned id, bool sipi, uint8_t v)
{
	struct rec *r = o;
	if (sipi) {
		r->sipis[id & 7]++;
		r->sipi_vec[id & 7] = v;
	} else {
		r->inits[id & 7]++;
	}
}
static int rec_extint(void *o)
{
	struct rec *r = o;
	r->extint_acks++;
	return r->extint_vector;
}
static uint64_t rec_clock(void *o) { return ((struct rec *)o)->now; }

static const struct lapic_ops rec_ops = {
	.kick = rec_kick, .eoi = rec_eoi, .init_sipi = rec_init_sipi, .extint_ack = rec_extint,
};

static struct rec R;
static struct apic_bus BUS;
static struct lapic *L[4];

#define TSC_HZ 2000000000ull

static void make(unsigned n)
{
	memset(&R, 0, sizeof(R));
	apic_bus_init(&BUS);
	for (unsigned i = 0; i < n; i++) {
		struct lapic_config c = {
			.apic_id = i, .bsp = i == 0, .bus_hz = 0, .tsc_hz = TSC_HZ, .bus = &BUS,
			.ops = &rec_ops, .opaque = &R, .clock = rec_clock, .clock_opaque = &R,
		};
		L[i] = lapic_create(&c);
		cr_assert_not_null(L[i]);
	}
}

static void fini(void)
{
	for (unsigned i = 0; i < 4; i++) {
		lapic_destroy(L[i]);
		L[i] = NULL;
	}
}

static void setup1(void) { make(1); }
static void setup4(void) { make(4); }

static uint32_t rd(struct lapic *l, uint32_t off) { return lapic_read_reg(l, off, R.now); }
static void wr(struct lapic *l, uint32_t off, uint32_t v) { lapic_write_reg(l, off, v, R.now); }
static void enable(struct lapic *l) { wr(l, 0xf0, 0x1ff); }

static void fixed_to(struct lapic *l, uint8_t v, bool level)
{
	lapic_accept(l, APIC_DM_FIXED, v, level ? APIC_TRIG_LEVEL : APIC_TRIG_EDGE);
}

TestSuite(lapic, .init = setup1, .fini = fini);
TestSuite(lapic_smp, .init = setup4, .fini = fini);

Test(lapic, reset_state_and_version)
{
	struct lapic *l = L[0];
	cr_assert_eq(rd(l, 0x30), 0x50014);
	cr_assert_eq(rd(l, 0x20), 0);
	cr_assert_eq(rd(l, 0xf0), 0xff);
	cr_assert_eq(rd(l, 0xe0), 0xffffffffu);
	cr_assert_eq(rd(l, 0x350), 0x700); /* BSP virtual wire: LINT0 ExtINT */
	cr_assert_eq(rd(l, 0x360), 0x400); /* LINT1 NMI */
	cr_assert_eq(rd(l, 0x320), 0x10000);
	cr_assert_eq(lapic_get_apic_base(l), 0xfee00000ull | APIC_BASE_EN | APIC_BASE_BSP);
	cr_assert_eq(lapic_get_base(l), 0xfee00000ull);
	/* bus-shaped accessor, byte read of the version register */
	cr_assert_eq(lapic_mmio_read(l, 0x30, 4), 0x50014);
	cr_assert_eq(lapic_mmio_read(l, 0x32, 1), 0x05);
	cr_assert_eq(lapic_mmio_read(l, 0x34, 4), 0);
}

Test(lapic, disabled_apic_drops_fixed_interrupts)
{
	struct lapic *l = L[0];
	fixed_to(l, 0x40, false);
	cr_assert_eq(rd(l, 0x200 + 0x20), 0);
	cr_assert_not(lapic_has_interrupt(l));
	enable(l);
	fixed_to(l, 0x40, false);
	cr_assert_eq(rd(l, 0x220), 1u);
	cr_assert(lapic_has_interrupt(l));
	cr_assert(lapic_maybe_pending(l));
	cr_assert_gt(R.kicks[0], 0);
}

Test(lapic, priority_isr_eoi_ordering)
{
	struct lapic *l = L[0];
	enable(l);
	fixed_to(l, 0x31, false);
	fixed_to(l, 0x52, false);
	fixed_to(l, 0x50, false);
	/* highest first */
	cr_assert_eq(lapic_get_interrupt(l), 0x52);
	cr_assert_eq(rd(l, 0xa0), 0x50); /* PPR = ISRV class */
	/* 0x50 is in the same class as the one in service: blocked */
	cr_assert_not(lapic_has_interrupt(l));
	cr_assert_eq(lapic_get_interrupt(l), -1);
	/* a higher class preempts */
	fixed_to(l, 0x61, false);
	cr_assert_eq(lapic_get_interrupt(l), 0x61);
	wr(l, 0xb0, 0); /* EOI clears 0x61 */
	cr_assert_eq(rd(l, 0x100 + 0x30) & 2, 0);
	cr_assert_not(lapic_has_interrupt(l));
	wr(l, 0xb0, 0); /* EOI clears 0x52 */
	cr_assert_eq(lapic_get_interrupt(l), 0x50);
	wr(l, 0xb0, 0);
	/* TPR masks classes at or below it */
	wr(l, 0x80, 0x30);
	cr_assert_not(lapic_has_interrupt(l));
	cr_assert_eq(rd(l, 0xa0), 0x30);
	lapic_set_cr8(l, 2);
	cr_assert_eq(rd(l, 0x80), 0x20);
	cr_assert_eq(lapic_get_cr8(l), 2);
	cr_assert_eq(lapic_get_interrupt(l), 0x31);
	wr(l, 0xb0, 0);
	cr_assert_eq(lapic_get_interrupt(l), -1);
	cr_assert_not(lapic_maybe_pending(l));
	cr_assert_eq(R.nr_eoi, 0); /* all edge */
}

Test(lapic, level_eoi_broadcasts_to_ioapic)
{
	struct lapic *l = L[0];
	enable(l);
	fixed_to(l, 0x41, true);
	cr_assert_eq(rd(l, 0x180 + 0x20), 2u); /* TMR */
	cr_assert_eq(lapic_get_interrupt(l), 0x41);
	wr(l, 0xb0, 0);
	cr_assert_eq(R.nr_eoi, 1);
	cr_assert_eq(R.eois[0], 0x41);
}

Test(lapic, illegal_vectors_set_esr)
{
	struct lapic *l = L[0];
	enable(l);
	fixed_to(l, 5, false);
	cr_assert_not(lapic_has_interrupt(l));
	cr_assert_eq(rd(l, 0x280), 0); /* not visible until ESR is written */
	wr(l, 0x280, 0);
	cr_assert_eq(rd(l, 0x280), APIC_ESR_RECV_ILLEGAL);
	wr(l, 0x280, 0);
	cr_assert_eq(rd(l, 0x280), 0);
	/* sending an illegal vector */
	wr(l, 0x310, 0);
	wr(l, 0x300, 0x40000 | 0x0e); /* self, fixed, vector 14 */
	wr(l, 0x280, 0);
	cr_assert_eq(rd(l, 0x280), APIC_ESR_SEND_ILLEGAL);
	/* reserved register */
	cr_assert_eq(rd(l, 0x2f0), 0);
	rd(l, 0x3f0);
	wr(l, 0x280, 0);
	cr_assert_eq(rd(l, 0x280), APIC_ESR_ILLEGAL_REG);
	/* error LVT raises an interrupt */
	wr(l, 0x370, 0xfe);
	fixed_to(l, 1, false);
	cr_assert_eq(lapic_get_interrupt(l), 0xfe);
	/* an error LVT with an illegal vector does not recurse */
	wr(l, 0x370, 0x03);
	fixed_to(l, 2, false);
	wr(l, 0x280, 0);
	cr_assert_eq(rd(l, 0x280), APIC_ESR_RECV_ILLEGAL);
	/* hostile offsets and sizes */
	cr_assert_eq(lapic_mmio_read(l, 0x5000, 4), 0);
	lapic_mmio_write(l, 0x81, 1, 0xff);
	lapic_mmio_write(l, 0x2000, 4, 0xff);
	lapic_mmio_write(l, 0x80, 2, 0xff);
	cr_assert_eq(rd(l, 0x80), 0);
}

Test(lapic, software_disable_masks_lvts)
{
	struct lapic *l = L[0];
	enable(l);
	wr(l, 0x320, 0x30);
	cr_assert_eq(rd(l, 0x320), 0x30);
	wr(l, 0xf0, 0xff);
	cr_assert_eq(rd(l, 0x320), 0x10030);
	wr(l, 0x320, 0x30); /* cannot unmask while disabled */
	cr_assert_eq(rd(l, 0x320), 0x10030);
}

Test(lapic, oneshot_timer_and_current_count_with_divide)
{
	struct lapic *l = L[0];
	enable(l);
	R.now = 1000;
	wr(l, 0x3e0, 0x3);       /* divide by 16 */
	wr(l, 0x320, 0x40);      /* one-shot, vector 0x40 */
	wr(l, 0x380, 1000);      /* 1000 ticks x 16 ns */
	cr_assert_eq(lapic_next_deadline(l), 1000 + 16000);
	cr_assert_eq(rd(l, 0x390), 1000);
	R.now = 1000 + 160;
	cr_assert_eq(rd(l, 0x390), 990);
	R.now = 1000 + 8000;
	cr_assert_eq(rd(l, 0x390), 500);
	lapic_poll(l, R.now);
	cr_assert_not(lapic_has_interrupt(l));
	R.now = 1000 + 16000;
	lapic_poll(l, R.now);
	cr_assert_eq(rd(l, 0x390), 0);
	cr_assert_eq(lapic_next_deadline(l), UINT64_MAX);
	cr_assert_eq(lapic_get_interrupt(l), 0x40);
	/* a divide change after expiry does not bring the count back */
	wr(l, 0x3e0, 0xb);
	cr_assert_eq(rd(l, 0x390), 0);
	/* divide change mid-count keeps the count, continues at the new rate */
	wr(l, 0x3e0, 0x3);
	wr(l, 0x380, 1000);
	R.now += 16 * 100;
	cr_assert_eq(rd(l, 0x390), 900);
	wr(l, 0x3e0, 0x0); /* by 2 */
	cr_assert_eq(rd(l, 0x390), 900);
	cr_assert_eq(lapic_next_deadline(l), R.now + 2 * 900);
	R.now += 2 * 100;
	cr_assert_eq(rd(l, 0x390), 800);
	/* divide values: 0xb = by 1, 0x8 = by 32 */
	wr(l, 0x3e0, 0xb);
	wr(l, 0x380, 100);
	cr_assert_eq(lapic_next_deadline(l), R.now + 100);
	wr(l, 0x3e0, 0x8);
	wr(l, 0x380, 100);
	cr_assert_eq(lapic_next_deadline(l), R.now + 3200);
	/* initial count 0 stops it */
	wr(l, 0x380, 0);
	cr_assert_eq(lapic_next_deadline(l), UINT64_MAX);
}

Test(lapic, expired_oneshot_switched_to_periodic_stays_stopped)
{
	struct lapic *l = L[0];
	enable(l);
	R.now = 1000;
	wr(l, 0x3e0, 0xb);  /* divide by 1 */
	wr(l, 0x320, 0x40); /* one-shot */
	wr(l, 0x380, 100);
	R.now += 100;
	lapic_poll(l, R.now);
	cr_assert_eq(lapic_get_interrupt(l), 0x40);
	wr(l, 0xb0, 0);
	cr_assert_eq(rd(l, 0x390), 0);
	/* SDM 10.5.4: a mode change through the LVT does not start it */
	wr(l, 0x320, 0x40 | (1u << 17));
	R.now += 50;
	cr_assert_eq(rd(l, 0x390), 0);
	cr_assert_eq(lapic_next_deadline(l), UINT64_MAX);
	R.now += 500;
	lapic_poll(l, R.now);
	cr_assert_not(lapic_has_interrupt(l));
	/* a write of the initial count does, now periodic */
	wr(l, 0x380, 100);
	R.now += 30;
	cr_assert_eq(rd(l, 0x390), 70);
	R.now += 100;
	cr_assert_eq(rd(l, 0x390), 70);
}

Test(lapic, periodic_timer_fires_at_period_and_coalesces)
{
	struct lapic *l = L[0];
	enable(l);
	R.now = 0;
	wr(l, 0x3e0, 0xb);            /* by 1: 1 tick = 1 ns */
	wr(l, 0x320, 0x20000 | 0xec); /* periodic */
	wr(l, 0x380, 1000000);        /* 1 ms */
	cr_assert_eq(lapic_next_deadline(l), 1000000);
	lapic_poll(l, 999999);
	cr_assert_not(lapic_has_interrupt(l));
	lapic_poll(l, 1000000);
	cr_assert_eq(lapic_next_deadline(l), 2000000);
	cr_assert_eq(lapic_get_interrupt(l), 0xec);
	wr(l, 0xb0, 0);
	R.now = 1250000;
	cr_assert_eq(rd(l, 0x390), 750000);
	/* a 1 s stall: one interrupt, next deadline on the period grid */
	lapic_poll(l, 1001500000);
	cr_assert_eq(lapic_next_deadline(l), 1002000000);
	cr_assert_eq(lapic_get_interrupt(l), 0xec);
	cr_assert_eq(lapic_get_interrupt(l), -1);
	/* masked: no deadline reported, no interrupt */
	wr(l, 0xb0, 0);
	wr(l, 0x320, 0x30000 | 0xec);
	cr_assert_eq(lapic_next_deadline(l), UINT64_MAX);
	lapic_poll(l, 1003000000);
	cr_assert_not(lapic_has_interrupt(l));
	/* unmask long after: resumes on the grid without a stale tick */
	R.now = 1007500000;
	wr(l, 0x320, 0x20000 | 0xec);
	cr_assert_eq(lapic_next_deadline(l), 1008000000);
	lapic_poll(l, R.now);
	cr_assert_not(lapic_has_interrupt(l));
}

Test(lapic, tiny_periodic_is_clamped)
{
	struct lapic *l = L[0];
	enable(l);
	wr(l, 0x3e0, 0xb);
	wr(l, 0x320, 0x20000 | 0x40);
	wr(l, 0x380, 1);
	lapic_poll(l, 10);
	cr_assert_geq(lapic_next_deadline(l), 10 + 50000);
}

Test(lapic, tsc_deadline_mode)
{
	struct lapic *l = L[0];
	enable(l);
	/* ignored outside TSC-deadline mode */
	lapic_tsc_deadline_write(l, 5000, 0, 0);
	cr_assert_eq(lapic_tsc_deadline_read(l), 0);
	cr_assert_eq(lapic_next_deadline(l), UINT64_MAX);
	wr(l, 0x320, 0x40000 | 0xef);
	cr_assert_eq(rd(l, 0x320), 0x40000 | 0xef);
	/* initial count is ignored in this mode */
	wr(l, 0x380, 1000);
	cr_assert_eq(rd(l, 0x380), 0);
	/* TSC at 2 GHz: 4000 ticks ahead = 2000 ns */
	lapic_tsc_deadline_write(l, 14000, 100, 10000);
	cr_assert_eq(lapic_tsc_deadline_read(l), 14000);
	cr_assert_eq(lapic_next_deadline(l), 2100);
	lapic_poll(l, 2099);
	cr_assert_not(lapic_has_interrupt(l));
	lapic_poll(l, 2100);
	cr_assert_eq(lapic_tsc_deadline_read(l), 0);
	cr_assert_eq(lapic_next_deadline(l), UINT64_MAX);
	cr_assert_eq(lapic_get_interrupt(l), 0xef);
	/* a deadline in the past fires at the next poll; 0 disarms */
	lapic_tsc_deadline_write(l, 5, 3000, 10);
	cr_assert_eq(lapic_next_deadline(l), 3000);
	lapic_tsc_deadline_write(l, 0, 3000, 10);
	cr_assert_eq(lapic_next_deadline(l), UINT64_MAX);
	/* leaving the mode disarms */
	lapic_tsc_deadline_write(l, 1ull << 40, 3000, 10);
	wr(l, 0x320, 0xef);
	cr_assert_eq(lapic_next_deadline(l), UINT64_MAX);
	cr_assert_eq(lapic_tsc_deadline_read(l), 0);
}

Test(lapic, lint0_extint_and_lint1_nmi)
{
	struct lapic *l = L[0];
	R.extint_vector = 0x30;
	/* virtual wire at power-up, even before software enable */
	lapic_set_lint(l, 0, true);
	cr_assert(lapic_has_interrupt(l));
	cr_assert(lapic_maybe_pending(l));
	cr_assert_eq(lapic_get_interrupt(l), 0x30);
	cr_assert_eq(R.extint_acks, 1);
	lapic_set_lint(l, 0, false);
	cr_assert_not(lapic_has_interrupt(l));
	lapic_set_lint(l, 1, true);
	cr_assert(lapic_take_nmi(l));
	cr_assert_not(lapic_take_nmi(l));
	/* OS masks LINT0: the PIC no longer reaches the CPU */
	enable(l);
	wr(l, 0x350, 0x10700);
	lapic_set_lint(l, 0, true);
	cr_assert_not(lapic_has_interrupt(l));
	/* hardware-disabled APIC: INTR goes straight through */
	cr_assert_eq(lapic_set_apic_base(l, 0xfee00000ull), 0);
	cr_assert(lapic_has_interrupt(l));
	cr_assert_eq(lapic_get_interrupt(l), 0x30);
	cr_assert_eq(lapic_get_base(l), UINT64_MAX);
	cr_assert_eq(lapic_mmio_read(l, 0x30, 4), 0);
}

Test(lapic, apic_base_transitions)
{
	struct lapic *l = L[0];
	uint64_t b = 0xfee00000ull;
	/* reserved bits */
	cr_assert_eq(lapic_set_apic_base(l, b | APIC_BASE_EN | 1), -EINVAL);
	cr_assert_eq(lapic_set_apic_base(l, b | APIC_BASE_EN | (1ull << 55)), -EINVAL);
	/* EXTD without EN */
	cr_assert_eq(lapic_set_apic_base(l, b | APIC_BASE_EXTD), -EINVAL);
	/* xAPIC -> x2APIC */
	cr_assert_eq(lapic_set_apic_base(l, b | APIC_BASE_EN | APIC_BASE_EXTD), 0);
	cr_assert(lapic_x2apic_mode(l));
	cr_assert_eq(lapic_get_apic_base(l) & APIC_BASE_BSP, APIC_BASE_BSP);
	/* x2APIC -> xAPIC is illegal */
	cr_assert_eq(lapic_set_apic_base(l, b | APIC_BASE_EN), -EINVAL);
	/* x2APIC -> disabled -> x2APIC illegal -> xAPIC ok */
	cr_assert_eq(lapic_set_apic_base(l, b), 0);
	cr_assert_eq(lapic_set_apic_base(l, b | APIC_BASE_EN | APIC_BASE_EXTD), -EINVAL);
	cr_assert_eq(lapic_set_apic_base(l, b | APIC_BASE_EN), 0);
	cr_assert_not(lapic_x2apic_mode(l));
	/* disabling reset the registers */
	cr_assert_eq(rd(l, 0xf0), 0xff);
	cr_assert_eq(rd(l, 0x350), 0x10000);
	/* relocation */
	cr_assert_eq(lapic_set_apic_base(l, 0xfed00000ull | APIC_BASE_EN), 0);
	cr_assert_eq(lapic_get_base(l), 0xfed00000ull);
}

Test(lapic, x2apic_msrs_and_gp_cases)
{
	struct lapic *l = L[0];
	uint64_t v;
	/* not in x2APIC mode: #GP */
	cr_assert_eq(lapic_msr_read(l, 0x802, &v, 0), -EINVAL);
	cr_assert_eq(lapic_set_apic_base(l, 0xfee00000ull | APIC_BASE_EN | APIC_BASE_EXTD), 0);
	cr_assert_eq(lapic_msr_read(l, 0x802, &v, 0), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(lapic_msr_read(l, 0x803, &v, 0), 0);
	cr_assert_eq(v, 0x50014);
	cr_assert_eq(lapic_msr_read(l, 0x80d, &v, 0), 0);
	cr_assert_eq(v, 1); /* cluster 0, bit 0 */
	/* write-only / reserved / absent */
	cr_assert_eq(lapic_msr_read(l, 0x80b, &v, 0), -EINVAL); /* EOI */
	cr_assert_eq(lapic_msr_read(l, 0x83f, &v, 0), -EINVAL); /* SELF IPI */
	cr_assert_eq(lapic_msr_read(l, 0x80e, &v, 0), -EINVAL); /* DFR */
	cr_assert_eq(lapic_msr_read(l, 0x831, &v, 0), -EINVAL);
	cr_assert_eq(lapic_msr_read(l, 0x82f, &v, 0), -EINVAL); /* no CMCI */
	cr_assert_eq(lapic_msr_read(l, 0x8ff, &v, 0), -EINVAL);
	/* read-only */
	cr_assert_eq(lapic_msr_write(l, 0x802, 5, 0), -EINVAL);
	cr_assert_eq(lapic_msr_write(l, 0x80d, 5, 0), -EINVAL);
	cr_assert_eq(lapic_msr_write(l, 0x839, 5, 0), -EINVAL);
	/* reserved bits */
	cr_assert_eq(lapic_msr_write(l, 0x808, 0x100, 0), -EINVAL);
	cr_assert_eq(lapic_msr_write(l, 0x80f, 1ull << 32, 0), -EINVAL);
	cr_assert_eq(lapic_msr_write(l, 0x80b, 1, 0), -EINVAL);
	cr_assert_eq(lapic_msr_write(l, 0x828, 1, 0), -EINVAL);
	cr_assert_eq(lapic_msr_write(l, 0x83f, 0x1ff, 0), -EINVAL);
	/* working path: enable, self IPI, ack, EOI */
	cr_assert_eq(lapic_msr_write(l, 0x80f, 0x1ff, 0), 0);
	cr_assert_eq(lapic_msr_write(l, 0x83f, 0x55, 0), 0);
	cr_assert_eq(lapic_get_interrupt(l), 0x55);
	cr_assert_eq(lapic_msr_read(l, 0x812, &v, 0), 0); /* ISR word 2 */
	cr_assert_eq(v, 1u << (0x55 - 64));
	cr_assert_eq(lapic_msr_write(l, 0x80b, 0, 0), 0);
	cr_assert_eq(lapic_msr_read(l, 0x812, &v, 0), 0);
	cr_assert_eq(v, 0);
	/* 64-bit ICR, self IPI through it */
	cr_assert_eq(lapic_msr_write(l, 0x830, 0x0000000000000066ull, 0), 0);
	cr_assert_eq(lapic_msr_read(l, 0x830, &v, 0), 0);
	cr_assert_eq(v, 0x66);
	cr_assert_eq(lapic_get_interrupt(l), 0x66);
	/* the MMIO page is gone */
	cr_assert_eq(lapic_mmio_read(l, 0x30, 4), 0);
	/* timer through MSRs */
	cr_assert_eq(lapic_msr_write(l, 0x83e, 0xb, 100), 0);
	cr_assert_eq(lapic_msr_write(l, 0x832, 0x41, 100), 0);
	cr_assert_eq(lapic_msr_write(l, 0x838, 500, 100), 0);
	cr_assert_eq(lapic_msr_read(l, 0x839, &v, 300), 0);
	cr_assert_eq(v, 300);
}

/* acknowledge and EOI: the vector taken, or -1 */
static int take(struct lapic *l)
{
	int v = lapic_get_interrupt(l);
	if (v >= 0 && lapic_x2apic_mode(l))
		cr_assert_eq(lapic_msr_write(l, 0x80b, 0, 0), 0);
	else if (v >= 0)
		wr(l, 0xb0, 0);
	return v;
}

Test(lapic_smp, fixed_ipi_physical_and_shorthands)
{
	for (int i = 0; i < 4; i++)
		enable(L[i]);
	/* CPU0 -> CPU2, physical */
	wr(L[0], 0x310, 2u << 24);
	wr(L[0], 0x300, 0x4041);
	cr_assert_eq(rd(L[0], 0x300), 0x4041); /* delivery status idle */
	cr_assert_eq(take(L[2]), 0x41);
	cr_assert_eq(take(L[1]), -1);
	cr_assert_gt(R.kicks[2], 0);
	/* absent destination: dropped */
	wr(L[0], 0x310, 9u << 24);
	wr(L[0], 0x300, 0x42);
	for (int i = 0; i < 4; i++)
		cr_assert_not(lapic_has_interrupt(L[i]));
	/* all excluding self */
	wr(L[1], 0x300, (3u << 18) | 0x43);
	cr_assert_not(lapic_has_interrupt(L[1]));
	for (int i = 0; i < 4; i++)
		if (i != 1)
			cr_assert_eq(take(L[i]), 0x43);
	/* all including self */
	wr(L[3], 0x300, (2u << 18) | 0x44);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(take(L[i]), 0x44);
	/* self */
	wr(L[3], 0x300, (1u << 18) | 0x45);
	cr_assert_eq(take(L[3]), 0x45);
	cr_assert_eq(take(L[0]), -1);
	/* physical broadcast 0xff */
	wr(L[0], 0x310, 0xffu << 24);
	wr(L[0], 0x300, 0x46);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(take(L[i]), 0x46);
}

Test(lapic_smp, logical_flat_and_cluster)
{
	for (int i = 0; i < 4; i++) {
		enable(L[i]);
		wr(L[i], 0xd0, (1u << i) << 24); /* flat: one bit each */
	}
	wr(L[0], 0x310, 0x0au << 24);          /* CPUs 1 and 3 */
	wr(L[0], 0x300, (1u << 11) | 0x51);
	cr_assert_eq(take(L[1]), 0x51);
	cr_assert_eq(take(L[3]), 0x51);
	cr_assert_eq(take(L[0]), -1);
	cr_assert_eq(take(L[2]), -1);
	/* lowest priority to 1 and 3: exactly one gets it (lowest ID) */
	wr(L[0], 0x300, (1u << 11) | (1u << 8) | 0x52);
	cr_assert_eq(take(L[1]), 0x52);
	cr_assert_eq(take(L[3]), -1);
	/* cluster model: cluster 1 holds CPUs 2 (bit 0) and 3 (bit 1) */
	for (int i = 0; i < 4; i++) {
		wr(L[i], 0xe0, 0x0fffffff);
		wr(L[i], 0xd0, (((i / 2) << 4) | (1u << (i % 2))) << 24);
	}
	wr(L[0], 0x310, 0x12u << 24); /* cluster 1, bit 1 -> CPU 3 */
	wr(L[0], 0x300, (1u << 11) | 0x53);
	cr_assert_eq(take(L[3]), 0x53);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(take(L[i]), -1);
	wr(L[0], 0x310, 0xf1u << 24); /* all clusters, bit 0 -> CPUs 0, 2 */
	wr(L[0], 0x300, (1u << 11) | 0x54);
	cr_assert_eq(take(L[0]), 0x54);
	cr_assert_eq(take(L[2]), 0x54);
	cr_assert_eq(take(L[1]), -1);
}

Test(lapic_smp, ioapic_style_delivery_and_msi)
{
	for (int i = 0; i < 4; i++)
		enable(L[i]);
	apic_bus_deliver(&BUS, 1, APIC_DEST_PHYSICAL, APIC_DM_FIXED, 0x61, APIC_TRIG_LEVEL);
	cr_assert_eq(take(L[1]), 0x61);
	wr(L[1], 0xb0, 0);
	cr_assert_eq(R.nr_eoi, 1);
	/* MSI: address 0xfee02000 -> APIC 2, data 0x4062 edge fixed */
	cr_assert_eq(apic_bus_msi(&BUS, 0xfee02000ull, 0x62), 0);
	cr_assert_eq(take(L[2]), 0x62);
	cr_assert_eq(apic_bus_msi(&BUS, 0xfeb02000ull, 0x62), -EINVAL);
	cr_assert_eq(apic_bus_msi(&BUS, 0xfee02000ull, 0x362), -EINVAL);
	/* NMI by MSI */
	cr_assert_eq(apic_bus_msi(&BUS, 0xfee03000ull, 0x400), 0);
	cr_assert(lapic_take_nmi(L[3]));
	/* illegal vector arrives: receive error at the target */
	apic_bus_deliver(&BUS, 0, APIC_DEST_PHYSICAL, APIC_DM_FIXED, 7, APIC_TRIG_EDGE);
	wr(L[0], 0x280, 0);
	cr_assert_eq(rd(L[0], 0x280), APIC_ESR_RECV_ILLEGAL);
	/* devices cannot send SIPIs */
	apic_bus_deliver(&BUS, 1, APIC_DEST_PHYSICAL, APIC_DM_SIPI, 0x9, APIC_TRIG_EDGE);
	cr_assert_eq(R.sipis[1], 0);
}

Test(lapic_smp, init_sipi_sequence_as_linux_sends_it)
{
	enable(L[0]);
	/* INIT assert, level, to APIC 1 */
	wr(L[0], 0x310, 1u << 24);
	wr(L[0], 0x300, 0xc500);
	cr_assert_eq(R.inits[1], 1);
	/* INIT de-assert: ignored */
	wr(L[0], 0x300, 0x8500);
	cr_assert_eq(R.inits[1], 1);
	/* SIPI twice: the second is ignored (no longer waiting) */
	wr(L[0], 0x300, 0x0609);
	wr(L[0], 0x300, 0x0609);
	cr_assert_eq(R.sipis[1], 1);
	cr_assert_eq(R.sipi_vec[1], 9);
	cr_assert_gt(R.kicks[1], 0);
	/* APs that were never started accept a SIPI without INIT */
	wr(L[0], 0x310, 2u << 24);
	wr(L[0], 0x300, 0x0610);
	cr_assert_eq(R.sipis[2], 1);
	cr_assert_eq(R.sipi_vec[2], 0x10);
	/* INIT resets the target's registers */
	enable(L[3]);
	wr(L[3], 0x80, 0x20);
	wr(L[0], 0x310, 3u << 24);
	wr(L[0], 0x300, 0x4500);
	cr_assert_eq(rd(L[3], 0xf0), 0xff);
	cr_assert_eq(rd(L[3], 0x80), 0);
	/* NMI IPI */
	wr(L[0], 0x300, 0x4400);
	cr_assert(lapic_take_nmi(L[3]));
}

Test(lapic_smp, x2apic_ipi_and_cluster)
{
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(lapic_set_apic_base(L[i], 0xfee00000ull | APIC_BASE_EN | APIC_BASE_EXTD), 0);
		cr_assert_eq(lapic_msr_write(L[i], 0x80f, 0x1ff, 0), 0);
	}
	/* physical x2APIC ID 3 */
	cr_assert_eq(lapic_msr_write(L[0], 0x830, (3ull << 32) | 0x71, 0), 0);
	cr_assert_eq(take(L[3]), 0x71);
	/* logical cluster 0, bits 1 and 2 -> CPUs 1, 2 */
	cr_assert_eq(lapic_msr_write(L[0], 0x830, (6ull << 32) | (1u << 11) | 0x72, 0), 0);
	cr_assert_eq(take(L[1]), 0x72);
	cr_assert_eq(take(L[2]), 0x72);
	cr_assert_eq(take(L[3]), -1);
	/* broadcast */
	cr_assert_eq(lapic_msr_write(L[0], 0x830, (0xffffffffull << 32) | 0x73, 0), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(take(L[i]), 0x73);
}

Test(lapic_smp, ioapic_logical_message_reaches_x2apic_targets)
{
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(lapic_set_apic_base(L[i], 0xfee00000ull | APIC_BASE_EN | APIC_BASE_EXTD), 0);
		cr_assert_eq(lapic_msr_write(L[i], 0x80f, 0x1ff, 0), 0);
	}
	/* x2APIC LDR of APIC i (< 16): cluster 0, bit i. An IOAPIC entry
	 * in logical mode with destination 0x06 means APICs 1 and 2. */
	apic_bus_deliver(&BUS, 0x06, APIC_DEST_LOGICAL, APIC_DM_FIXED, 0x51, APIC_TRIG_EDGE);
	cr_assert_eq(take(L[0]), -1);
	cr_assert_eq(take(L[1]), 0x51);
	cr_assert_eq(take(L[2]), 0x51);
	cr_assert_eq(take(L[3]), -1);
	/* lowest priority among them: one of the two */
	apic_bus_deliver(&BUS, 0x0c, APIC_DEST_LOGICAL, APIC_DM_LOWEST, 0x52, APIC_TRIG_EDGE);
	cr_assert_eq(take(L[2]) + take(L[3]), 0x52 - 1);
	/* 0xff: all of them */
	apic_bus_deliver(&BUS, 0xff, APIC_DEST_LOGICAL, APIC_DM_FIXED, 0x53, APIC_TRIG_EDGE);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(take(L[i]), 0x53);
	/* MSI in logical mode (address bit 2) */
	cr_assert_eq(apic_bus_msi(&BUS, 0xfee08004ull, 0x54), 0);
	cr_assert_eq(take(L[3]), 0x54);
}

Test(lapic, creation_rejects_bad_configs)
{
	struct lapic_ops noops = { 0 };
	struct lapic_config c = { .apic_id = 5, .ops = &noops };
	cr_assert_null(lapic_create(&c));
	cr_assert_null(lapic_create(NULL));
	struct lapic_config dup = { .apic_id = 0, .ops = &rec_ops, .bus = &BUS };
	cr_assert_null(lapic_create(&dup)); /* ID 0 already on the bus */
}

/* Four vCPU threads IPI each other while acknowledging their own: no
 * deadlock, nothing lost beyond coalescing in IRR (one bit per vector). */
struct stress {
	struct lapic *self, *next;
	unsigned got;
};

static void *stress_thread(void *arg)
{
	struct stress *s = arg;
	for (unsigned i = 0; i < 3000; i++) {
		lapic_write_reg(s->self, 0x310, lapic_id(s->next) << 24, 0);
		lapic_write_reg(s->self, 0x300, 0x40 + (i & 0x3f), 0);
		int v;
		while ((v = lapic_get_interrupt(s->self)) >= 0) {
			s->got++;
			lapic_write_reg(s->self, 0xb0, 0, 0);
		}
	}
	return NULL;
}

Test(lapic_smp, concurrent_ipis_do_not_deadlock)
{
	struct stress s[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		enable(L[i]);
		s[i] = (struct stress){ .self = L[i], .next = L[(i + 1) % 4] };
	}
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, stress_thread, &s[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 4; i++) {
		while (lapic_get_interrupt(L[i]) >= 0) {
			s[i].got++;
			wr(L[i], 0xb0, 0);
		}
		cr_assert_gt(s[i].got, 0);
		cr_assert_not(lapic_maybe_pending(L[i]));
	}
}
