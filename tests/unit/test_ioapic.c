#include <criterion/criterion.h>
#include <string.h>

#include "devices/platform/ioapic.h"
#include "devices/platform/lapic.h"

struct msg {
	uint32_t dest;
	unsigned dest_mode, dm, trigger;
	uint8_t vector;
};

static struct msg M[32];
static unsigned NM;
static struct ioapic *IO;

static void rec_deliver(void *o, uint32_t dest, unsigned dest_mode, unsigned dm, uint8_t vector,
			unsigned trigger)
{
	(void)o;
	if (NM < 32)
		M[NM++] = (struct msg){ dest, dest_mode, dm, trigger, vector };
}

static void setup(void)
{
	NM = 0;
	memset(M, 0, sizeof(M));
	struct ioapic_config c = { .id = 1, .version = 0x20, .deliver = rec_deliver };
	IO = ioapic_create(&c);
	cr_assert_not_null(IO);
}

static void fini(void) { ioapic_destroy(IO); }

static uint32_t rd(unsigned reg)
{
	ioapic_mmio_write(IO, 0, 1, reg);
	return (uint32_t)ioapic_mmio_read(IO, 0x10, 4);
}

static void wr(unsigned reg, uint32_t v)
{
	ioapic_mmio_write(IO, 0, 4, reg);
	ioapic_mmio_write(IO, 0x10, 4, v);
}

static void rte(unsigned pin, uint64_t e)
{
	wr(0x11 + 2 * pin, (uint32_t)(e >> 32));
	wr(0x10 + 2 * pin, (uint32_t)e);
}

TestSuite(ioapic, .init = setup, .fini = fini);

Test(ioapic, identification_registers)
{
	cr_assert_eq(rd(0), 1u << 24);
	cr_assert_eq(rd(1), 0x170020);
	cr_assert_eq(rd(2), 1u << 24);
	wr(0, 0x0f000000);
	cr_assert_eq(rd(0), 0x0f000000);
	wr(1, 0); /* read-only */
	cr_assert_eq(rd(1), 0x170020);
	cr_assert_eq(ioapic_mmio_read(IO, 0, 1), 1);
	/* reset: all masked */
	for (unsigned p = 0; p < IOAPIC_NUM_PINS; p++)
		cr_assert_eq(rd(0x10 + 2 * p), 0x10000);
	struct ioapic_config v11 = { .deliver = rec_deliver };
	struct ioapic *o = ioapic_create(&v11);
	ioapic_mmio_write(o, 0, 1, 1);
	cr_assert_eq(ioapic_mmio_read(o, 0x10, 4), 0x170011);
	ioapic_destroy(o);
	struct ioapic_config bad = { .version = 0x13, .deliver = rec_deliver };
	cr_assert_null(ioapic_create(&bad));
}

Test(ioapic, edge_delivers_on_rising_edge_only)
{
	rte(2, (3ull << 56) | 0x30);
	cr_assert_eq(rd(0x14), 0x30);
	cr_assert_eq(rd(0x15), 3u << 24);
	ioapic_set_irq(IO, 2, true);
	cr_assert_eq(NM, 1);
	cr_assert_eq(M[0].dest, 3);
	cr_assert_eq(M[0].vector, 0x30);
	cr_assert_eq(M[0].trigger, APIC_TRIG_EDGE);
	cr_assert_eq(M[0].dm, APIC_DM_FIXED);
	ioapic_set_irq(IO, 2, true); /* still high: no edge */
	cr_assert_eq(NM, 1);
	ioapic_set_irq(IO, 2, false);
	ioapic_set_irq(IO, 2, true);
	cr_assert_eq(NM, 2);
	/* an edge on a masked pin is lost */
	ioapic_set_irq(IO, 2, false);
	rte(2, IOAPIC_RTE_MASKED | 0x30);
	ioapic_set_irq(IO, 2, true);
	rte(2, 0x30);
	cr_assert_eq(NM, 2);
}

Test(ioapic, level_remote_irr_and_eoi_reassertion)
{
	rte(9, IOAPIC_RTE_LEVEL | IOAPIC_RTE_POLARITY_LOW | IOAPIC_RTE_DEST_LOGICAL | (1ull << 56) |
		       (APIC_DM_LOWEST << 8) | 0x41);
	ioapic_set_irq(IO, 9, true);
	cr_assert_eq(NM, 1);
	cr_assert_eq(M[0].trigger, APIC_TRIG_LEVEL);
	cr_assert_eq(M[0].dest_mode, APIC_DEST_LOGICAL);
	cr_assert_eq(M[0].dm, APIC_DM_LOWEST);
	cr_assert(rd(0x10 + 18) & IOAPIC_RTE_REMOTE_IRR);
	/* remote IRR blocks while the line stays high */
	ioapic_set_irq(IO, 9, true);
	cr_assert_eq(NM, 1);
	/* EOI of another vector: nothing */
	ioapic_eoi(IO, 0x42);
	cr_assert_eq(NM, 1);
	/* EOI while still asserted: re-delivered */
	ioapic_eoi(IO, 0x41);
	cr_assert_eq(NM, 2);
	/* line drops, EOI: remote IRR clear, no delivery */
	ioapic_set_irq(IO, 9, false);
	ioapic_eoi(IO, 0x41);
	cr_assert_eq(NM, 2);
	cr_assert_eq(rd(0x10 + 18) & IOAPIC_RTE_REMOTE_IRR, 0);
	/* the version-0x20 EOI register does the same */
	ioapic_set_irq(IO, 9, true);
	cr_assert_eq(NM, 3);
	ioapic_mmio_write(IO, 0x40, 4, 0x41);
	cr_assert_eq(NM, 4);
	/* remote IRR is read-only */
	wr(0x10 + 18, (uint32_t)(IOAPIC_RTE_LEVEL | 0x41));
	cr_assert(rd(0x10 + 18) & IOAPIC_RTE_REMOTE_IRR);
	/* switching to edge clears it */
	wr(0x10 + 18, 0x41);
	cr_assert_eq(rd(0x10 + 18) & IOAPIC_RTE_REMOTE_IRR, 0);
}

Test(ioapic, masked_level_delivers_on_unmask)
{
	rte(10, IOAPIC_RTE_LEVEL | IOAPIC_RTE_MASKED | 0x50);
	ioapic_set_irq(IO, 10, true);
	cr_assert_eq(NM, 0);
	rte(10, IOAPIC_RTE_LEVEL | 0x50);
	cr_assert_eq(NM, 1);
	/* deasserted before unmask: nothing */
	rte(11, IOAPIC_RTE_LEVEL | IOAPIC_RTE_MASKED | 0x51);
	ioapic_set_irq(IO, 11, true);
	ioapic_set_irq(IO, 11, false);
	rte(11, IOAPIC_RTE_LEVEL | 0x51);
	cr_assert_eq(NM, 1);
}

Test(ioapic, hostile_registers_and_pins)
{
	/* out-of-range indexes and pins */
	wr(0x10 + 2 * IOAPIC_NUM_PINS, 0x1234);
	cr_assert_eq(rd(0x10 + 2 * IOAPIC_NUM_PINS), 0);
	cr_assert_eq(rd(0xff), 0);
	ioapic_set_irq(IO, 24, true);
	ioapic_set_irq(IO, 1000, true);
	cr_assert_eq(ioapic_get_rte(IO, 99), 0);
	cr_assert_eq(ioapic_mmio_read(IO, 0x20, 4), 0);
	ioapic_mmio_write(IO, 0x800, 4, 1);
	/* reserved bits are dropped, delivery status reads 0 */
	rte(3, 0xffffffffffffffffull);
	cr_assert_eq(ioapic_get_rte(IO, 3), 0xff000000ull << 32 | 0x1afffull);
	cr_assert_eq(NM, 0);
	ioapic_set_irq(IO, 3, true); /* masked */
	cr_assert_eq(NM, 0);
	/* partial IOWIN reads */
	rte(4, 0x12345);
	ioapic_mmio_write(IO, 0, 1, 0x18);
	cr_assert_eq(ioapic_mmio_read(IO, 0x11, 1), 0x23);
}

/* The real chain: IOAPIC -> APIC bus -> LAPIC -> EOI -> IOAPIC. */
struct chain {
	struct ioapic *io;
	unsigned kicks;
};
static void ch_kick(void *o, unsigned id) { (void)id; ((struct chain *)o)->kicks++; }
static void ch_eoi(void *o, uint8_t v) { ioapic_eoi(((struct chain *)o)->io, v); }

Test(ioapic_chain, level_interrupt_through_lapic)
{
	struct chain ch = { 0 };
	static const struct lapic_ops ops = { .kick = ch_kick, .eoi = ch_eoi };
	struct apic_bus bus;
	apic_bus_init(&bus);
	struct lapic_config lc = { .apic_id = 0, .bsp = true, .bus = &bus, .ops = &ops, .opaque = &ch };
	struct lapic *l = lapic_create(&lc);
	struct ioapic_config ic = { .deliver = apic_bus_deliver, .deliver_opaque = &bus };
	ch.io = ioapic_create(&ic);
	IO = ch.io;
	lapic_write_reg(l, 0xf0, 0x1ff, 0);
	rte(11, IOAPIC_RTE_LEVEL | 0x61);
	ioapic_set_irq(IO, 11, true);
	cr_assert_eq(lapic_get_interrupt(l), 0x61);
	lapic_write_reg(l, 0xb0, 0, 0); /* EOI: line still high -> again */
	cr_assert_eq(lapic_get_interrupt(l), 0x61);
	ioapic_set_irq(IO, 11, false);
	lapic_write_reg(l, 0xb0, 0, 0);
	cr_assert_eq(lapic_get_interrupt(l), -1);
	cr_assert_eq(ioapic_get_rte(IO, 11) & IOAPIC_RTE_REMOTE_IRR, 0);
	/* an entry pointing at an absent APIC: nothing, no crash */
	rte(12, (7ull << 56) | 0x62);
	ioapic_set_irq(IO, 12, true);
	cr_assert_eq(lapic_get_interrupt(l), -1);
	/* illegal vector: the LAPIC records the error */
	rte(13, 0x05);
	ioapic_set_irq(IO, 13, true);
	lapic_write_reg(l, 0x280, 0, 0);
	cr_assert_eq(lapic_read_reg(l, 0x280, 0), APIC_ESR_RECV_ILLEGAL);
	cr_assert_gt(ch.kicks, 0);
	ioapic_destroy(ch.io);
	lapic_destroy(l);
}
