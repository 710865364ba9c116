/* The PC's pair of 8259A interrupt controllers for the soft engine: master
 * at ports 0x20-0x21 (IRQ 0-7), slave at 0xA0-0xA1 (IRQ 8-15) cascaded on
 * the master's IRQ2, and the edge/level control registers (ELCR) at
 * 0x4D0-0x4D1 (IRQ 0, 1, 2, 8 and 13 are always edge).
 *
 * Modelled: the ICW1-ICW4 init sequence (vector base, single/cascade,
 * ICW4 auto-EOI and special fully nested mode), OCW1 (IMR), OCW2 (non-
 * specific / specific EOI, rotate on EOI, rotate in auto-EOI, set
 * priority), OCW3 (read IRR/ISR, poll, special mask), fixed and rotating
 * priority, spurious IRQ7/IRQ15 (INTA with nothing pending returns base+7
 * without setting ISR). Edge IRQs latch IRR on a rising edge; level IRQs
 * (ELCR) follow the line. Not modelled: 8080 call addresses, buffered mode.
 *
 * Use: devices drive lines with pic_set_irq(). The PIC's INTR output goes
 * to cfg.output (the engine forwards it to the BSP's LAPIC LINT0 with
 * lapic_set_lint, or, with the APIC disabled, straight to the CPU: then
 * pic_has_interrupt()/pic_ack() at instruction boundaries, IF=1). pic_ack()
 * is the INTA cycle: it returns the vector and updates ISR/IRR.
 *
 * Threads: one mutex. cfg.output is called with the PIC lock held (lock
 * order PIC -> LAPIC): it must not call back into the PIC. No time and no
 * polling: the PIC has no timers. */
#ifndef KITE_DEVICES_PLATFORM_PIC8259_H
#define KITE_DEVICES_PLATFORM_PIC8259_H

#include <stdbool.h>
#include <stdint.h>

struct pic;

struct pic_config {
	/* Optional: INTR output changed (true = an interrupt is requested). */
	void (*output)(void *opaque, bool level);
	void *opaque;
};

struct pic *pic_create(const struct pic_config *cfg);
void pic_destroy(struct pic *pic);

/* Bus-shaped accessors, opaque = struct pic *. Register the master pair at
 * 0x20 (len 2), the slave pair at 0xA0 (len 2), the ELCR at 0x4D0 (len 2).
 * Wider accesses are taken byte by byte. */
uint64_t pic_master_read(void *opaque, uint64_t offset, unsigned size);
void pic_master_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
uint64_t pic_slave_read(void *opaque, uint64_t offset, unsigned size);
void pic_slave_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
uint64_t pic_elcr_read(void *opaque, uint64_t offset, unsigned size);
void pic_elcr_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

/* Drive ISA IRQ line 0..15 (others ignored). IRQ2 on the master is the
 * cascade: ISA IRQ 2 does not exist on a PC (it is IRQ 9's pin). */
void pic_set_irq(struct pic *pic, unsigned irq, bool level);
/* INTR output level. */
bool pic_has_interrupt(struct pic *pic);
/* INTA: the vector for the CPU (spurious base+7 when nothing is pending). */
int pic_ack(struct pic *pic);

#endif
