#include <criterion/criterion.h>

#include "devices/platform/pic8259.h"

static struct pic *P;
static bool OUT;
static unsigned CHANGES;

static void out_cb(void *o, bool level)
{
	(void)o;
	OUT = level;
	CHANGES++;
}

static void mw(unsigned port, uint8_t v) { pic_master_write(P, port, 1, v); }
static void sw(unsigned port, uint8_t v) { pic_slave_write(P, port, 1, v); }
static uint8_t mr(unsigned port) { return pic_master_read(P, port, 1); }
static uint8_t sr(unsigned port) { return pic_slave_read(P, port, 1); }

/* Linux arch/x86/kernel/i8259.c init_8259A(auto_eoi) */
static void linux_init(bool auto_eoi)
{
	mw(1, 0xff);
	sw(1, 0xff);
	mw(0, 0x11);
	mw(1, 0x30);
	mw(1, 1u << 2);
	mw(1, auto_eoi ? 0x03 : 0x01);
	sw(0, 0x11);
	sw(1, 0x38);
	sw(1, 2);
	sw(1, 0x01);
	mw(1, 0xfb); /* cached masks: all but the cascade */
	sw(1, 0xff);
}

static void setup(void)
{
	OUT = false;
	CHANGES = 0;
	struct pic_config c = { .output = out_cb };
	P = pic_create(&c);
	cr_assert_not_null(P);
	linux_init(false);
}

static void fini(void) { pic_destroy(P); }

TestSuite(pic, .init = setup, .fini = fini);

Test(pic, linux_probe_and_init)
{
	/* probe_8259A: mask write reads back */
	mw(1, 0xff);
	cr_assert_eq(mr(1), 0xff);
	mw(1, 0xfb);
	cr_assert_eq(mr(1), 0xfb);
	cr_assert_eq(sr(1), 0xff);
	cr_assert_not(pic_has_interrupt(P));
	cr_assert_not(OUT);
}

Test(pic, timer_irq0_edge_ack_eoi)
{
	mw(1, 0xfa); /* unmask IRQ0 */
	pic_set_irq(P, 0, true);
	cr_assert(OUT);
	cr_assert(pic_has_interrupt(P));
	cr_assert_eq(mr(0), 0x01); /* IRR by default */
	cr_assert_eq(pic_ack(P), 0x30);
	cr_assert_not(OUT);
	mw(0, 0x0b); /* OCW3: read ISR */
	cr_assert_eq(mr(0), 0x01);
	mw(0, 0x0a); /* read IRR */
	cr_assert_eq(mr(0), 0x00);
	/* edge again while in service: pending but blocked by itself */
	pic_set_irq(P, 0, false);
	pic_set_irq(P, 0, true);
	cr_assert_not(OUT);
	mw(0, 0x20); /* non-specific EOI */
	cr_assert(OUT);
	cr_assert_eq(pic_ack(P), 0x30);
	mw(0, 0x60); /* specific EOI IRQ0 */
	cr_assert_not(OUT);
}

Test(pic, fixed_priority_and_nesting)
{
	mw(1, 0x00);
	pic_set_irq(P, 4, true);
	pic_set_irq(P, 1, true);
	cr_assert_eq(pic_ack(P), 0x31); /* IRQ1 beats IRQ4 */
	/* IRQ4 is lower than the one in service: blocked */
	cr_assert_not(pic_has_interrupt(P));
	pic_set_irq(P, 0, true);
	cr_assert(pic_has_interrupt(P)); /* IRQ0 nests over IRQ1 */
	cr_assert_eq(pic_ack(P), 0x30);
	mw(0, 0x20); /* EOI clears the highest in service: IRQ0 */
	cr_assert_not(pic_has_interrupt(P));
	mw(0, 0x20); /* IRQ1 */
	cr_assert_eq(pic_ack(P), 0x34);
	mw(0, 0x20);
	cr_assert_not(pic_has_interrupt(P));
}

Test(pic, masked_line_stays_pending)
{
	pic_set_irq(P, 3, true);
	cr_assert_not(OUT);
	mw(1, 0xf3);
	cr_assert(OUT);
	cr_assert_eq(pic_ack(P), 0x33);
}

Test(pic, cascade_slave_irq)
{
	sw(1, 0xfe); /* unmask IRQ8 */
	pic_set_irq(P, 8, true);
	cr_assert(OUT);
	cr_assert_eq(pic_ack(P), 0x38);
	/* both ISRs: slave IRQ0 and master IRQ2 */
	sw(0, 0x0b);
	cr_assert_eq(sr(0), 0x01);
	mw(0, 0x0b);
	cr_assert_eq(mr(0), 0x04);
	/* Linux: EOI slave then master */
	sw(0, 0x60);
	mw(0, 0x62);
	cr_assert_eq(sr(0), 0);
	cr_assert_eq(mr(0), 0);
	/* slave IRQ14 */
	sw(1, 0xbf);
	pic_set_irq(P, 14, true);
	cr_assert_eq(pic_ack(P), 0x3e);
}

Test(pic, spurious_irq7_and_irq15)
{
	/* nothing pending: spurious IRQ7, no ISR bit */
	cr_assert_eq(pic_ack(P), 0x37);
	mw(0, 0x0b);
	cr_assert_eq(mr(0), 0);
	/* slave request vanishes between INTR and INTA: spurious IRQ15,
	 * and the master has IRQ2 in service (the OS EOIs the master) */
	sw(1, 0xfd); /* unmask IRQ9 */
	pic_elcr_write(P, 1, 1, 0x02);
	cr_assert_eq(pic_elcr_read(P, 1, 1), 0x02);
	pic_set_irq(P, 9, true);
	cr_assert(OUT);
	pic_set_irq(P, 9, false); /* level line drops: slave IRR clears */
	/* master IRR2 is an edge latch: it stays */
	cr_assert(OUT);
	cr_assert_eq(pic_ack(P), 0x3f);
	cr_assert_eq(mr(0), 0x04);
}

Test(pic, level_triggered_via_elcr)
{
	pic_elcr_write(P, 0, 1, 0xff); /* IRQ 0-2 cannot be level */
	cr_assert_eq(pic_elcr_read(P, 0, 1), 0xf8);
	pic_elcr_write(P, 1, 1, 0xff);
	cr_assert_eq(pic_elcr_read(P, 1, 1), 0xde);
	mw(1, 0xf3); /* unmask IRQ2 (cascade) and IRQ3 */
	pic_set_irq(P, 3, true);
	cr_assert_eq(pic_ack(P), 0x33);
	mw(0, 0x20);
	/* still high after EOI: raised again */
	cr_assert(OUT);
	cr_assert_eq(pic_ack(P), 0x33);
	pic_set_irq(P, 3, false);
	mw(0, 0x20);
	cr_assert_not(OUT);
	/* a level line that drops before INTA is no longer requested */
	pic_set_irq(P, 3, true);
	pic_set_irq(P, 3, false);
	cr_assert_not(OUT);
	/* 16-bit ELCR access */
	cr_assert_eq(pic_elcr_read(P, 0, 2), 0xdef8);
}

Test(pic, poll_mode)
{
	mw(1, 0x00);
	pic_set_irq(P, 5, true);
	mw(0, 0x0c); /* OCW3 poll */
	cr_assert_eq(mr(0), 0x85);
	/* the poll read acknowledged it */
	mw(0, 0x0b);
	cr_assert_eq(mr(0), 0x20);
	mw(0, 0x20);
	mw(0, 0x0c);
	cr_assert_eq(mr(0), 0x00); /* nothing */
	mw(0, 0x0a);
	cr_assert_eq(mr(0), 0x00); /* poll was one-shot: IRR read */
}

Test(pic, auto_eoi_and_rotation)
{
	linux_init(true);
	mw(1, 0x00);
	pic_set_irq(P, 1, true);
	cr_assert_eq(pic_ack(P), 0x31);
	mw(0, 0x0b);
	cr_assert_eq(mr(0), 0); /* auto-EOI: nothing in service */
	/* rotate in auto-EOI: served IRQ becomes lowest */
	mw(0, 0x80);
	pic_set_irq(P, 1, false);
	pic_set_irq(P, 1, true);
	pic_set_irq(P, 3, true);
	cr_assert_eq(pic_ack(P), 0x31);
	cr_assert_eq(pic_ack(P), 0x33);
	pic_set_irq(P, 1, false);
	pic_set_irq(P, 1, true);
	pic_set_irq(P, 4, true);
	cr_assert_eq(pic_ack(P), 0x34); /* after IRQ3 rotated, 4 beats 1 */
	/* set priority: IRQ 5 lowest -> IRQ6 highest */
	linux_init(false);
	mw(1, 0x00);
	mw(0, 0xc5);
	pic_set_irq(P, 0, true);
	pic_set_irq(P, 6, true);
	cr_assert_eq(pic_ack(P), 0x36);
	/* rotate on specific EOI */
	mw(0, 0xe6);
	cr_assert_eq(pic_ack(P), 0x30);
}

Test(pic, special_mask_mode)
{
	mw(1, 0x00);
	pic_set_irq(P, 1, true);
	cr_assert_eq(pic_ack(P), 0x31);
	pic_set_irq(P, 5, true);
	cr_assert_not(OUT); /* blocked by IRQ1 in service */
	mw(1, 0x02);        /* mask IRQ1 */
	mw(0, 0x68);        /* set special mask */
	cr_assert(OUT);
	cr_assert_eq(pic_ack(P), 0x35);
	mw(0, 0x48);        /* clear special mask */
	mw(0, 0x65);
	mw(0, 0x61);
	cr_assert_not(OUT);
}

Test(pic, output_callback_and_hostile_ports)
{
	unsigned before = CHANGES;
	mw(1, 0xfa);
	pic_set_irq(P, 0, true);
	cr_assert_eq(CHANGES, before + 1);
	pic_set_irq(P, 0, true);
	cr_assert_eq(CHANGES, before + 1); /* only on change */
	pic_set_irq(P, 16, true);
	pic_set_irq(P, 9999, true);
	cr_assert_eq(pic_master_read(P, 5, 1), 0xff);
	pic_master_write(P, 7, 1, 0x11);
	/* ICW1 mid-way resets that chip */
	mw(0, 0x11);
	mw(1, 0x40);
	mw(1, 0x04);
	mw(1, 0x01);
	cr_assert_eq(mr(1), 0x00); /* ICW1 cleared IMR */
	/* IRQ0's line is still high: no new edge until it drops */
	cr_assert_not(OUT);
	pic_set_irq(P, 0, false);
	pic_set_irq(P, 0, true);
	cr_assert_eq(pic_ack(P), 0x40);
}

/* How an engine wires the legacy path: PIT channel 0 -> PIC IRQ0 and
 * IOAPIC pin 2; PIC INTR -> BSP LAPIC LINT0 (ExtINT); the LAPIC's INTA for
 * ExtINT -> pic_ack. Exercises the lock order PIT -> PIC -> LAPIC and
 * LAPIC (unlocked) -> PIC. */
#include "devices/platform/ioapic.h"
#include "devices/platform/lapic.h"
#include "devices/platform/pit8254.h"

struct pc {
	struct pic *pic;
	struct ioapic *io;
	struct lapic *bsp;
	struct apic_bus bus;
	unsigned kicks;
};

static void pc_pic_out(void *o, bool level) { lapic_set_lint(((struct pc *)o)->bsp, 0, level); }
static int pc_extint(void *o) { return pic_ack(((struct pc *)o)->pic); }
static void pc_kick(void *o, unsigned id) { (void)id; ((struct pc *)o)->kicks++; }
static void pc_eoi(void *o, uint8_t v) { ioapic_eoi(((struct pc *)o)->io, v); }
static void pc_set_irq(void *o, unsigned line, bool level)
{
	struct pc *pc = o;
	pic_set_irq(pc->pic, line, level);
	ioapic_set_irq(pc->io, line == 0 ? 2 : line, level); /* ISA IRQ0 -> GSI 2 */
}

Test(pic_chain, pit_through_pic_and_lapic_extint_then_ioapic)
{
	static struct pc pc;
	static const struct lapic_ops ops = { .kick = pc_kick, .eoi = pc_eoi, .extint_ack = pc_extint };
	apic_bus_init(&pc.bus);
	struct pic_config pcfg = { .output = pc_pic_out, .opaque = &pc };
	pc.pic = pic_create(&pcfg);
	P = pc.pic;
	struct ioapic_config icfg = { .deliver = apic_bus_deliver, .deliver_opaque = &pc.bus };
	pc.io = ioapic_create(&icfg);
	struct lapic_config lcfg = { .apic_id = 0, .bsp = true, .bus = &pc.bus, .ops = &ops, .opaque = &pc };
	pc.bsp = lapic_create(&lcfg);
	struct pit_config tcfg = { .set_irq = pc_set_irq, .opaque = &pc };
	struct pit *pit = pit_create(&tcfg);

	linux_init(false);
	mw(1, 0xfa); /* IRQ0 unmasked */
	pit_write(pit, 3, 0x34, 0);
	pit_write(pit, 0, 0xa9, 0);
	pit_write(pit, 0, 0x04, 0);
	uint64_t d = pit_next_deadline(pit);
	pit_poll(pit, d);
	/* virtual wire: the BSP sees ExtINT, the PIC supplies the vector */
	cr_assert(lapic_maybe_pending(pc.bsp));
	cr_assert_eq(lapic_get_interrupt(pc.bsp), 0x30);
	cr_assert_not(lapic_has_interrupt(pc.bsp));
	mw(0, 0x20);
	cr_assert_gt(pc.kicks, 0);

	/* the OS switches to the IOAPIC: mask the PIC and LINT0, route GSI 2 */
	mw(1, 0xff);
	lapic_write_reg(pc.bsp, 0xf0, 0x1ff, 0);
	lapic_write_reg(pc.bsp, 0x350, 0x10700, 0);
	ioapic_mmio_write(pc.io, 0, 1, 0x14);
	ioapic_mmio_write(pc.io, 0x10, 4, 0xec);
	d = pit_next_deadline(pit);
	pit_poll(pit, d);
	cr_assert_eq(lapic_get_interrupt(pc.bsp), 0xec);
	lapic_write_reg(pc.bsp, 0xb0, 0, 0);
	cr_assert_eq(lapic_get_interrupt(pc.bsp), -1);

	pit_destroy(pit);
	lapic_destroy(pc.bsp);
	ioapic_destroy(pc.io);
	pic_destroy(pc.pic);
}
