/* I/O APIC (82093AA-style, 24 pins) for the soft engine. Registers at
 * LAYOUT_IOAPIC_BASE: IOREGSEL at 0x00, IOWIN at 0x10, and with version
 * 0x20 the EOI register at 0x40. Indirect registers: 0x00 ID, 0x01 version
 * (0x00170011 or 0x00170020), 0x02 arbitration, 0x10 + 2n / 0x11 + 2n the
 * low / high halves of redirection entry n.
 *
 * Pins. ioapic_set_irq(pin, level) drives a pin; `level` means asserted
 * (as KVM and QEMU do, the RTE polarity bit is stored but not applied:
 * devices report assertion, not the electrical level). Edge entries
 * deliver on a rising edge while unmasked (edges on a masked pin are lost,
 * as on the 82093AA). Level entries deliver while asserted, unmasked and
 * remote IRR clear; delivery of a fixed/lowest level entry sets remote IRR,
 * which an EOI for its vector (ioapic_eoi, broadcast by a LAPIC, or the
 * EOI register) clears, re-delivering if the pin is still asserted.
 *
 * Delivery goes through cfg.deliver (apic_bus_deliver, or the engine's own
 * function of that shape), called with the IOAPIC lock held: it must not
 * call back into this IOAPIC. Lock order: IOAPIC -> LAPIC. No time, no
 * threads: nothing to poll.
 *
 * Hostile guests: unknown register indexes read 0 and ignore writes;
 * reserved delivery modes, vectors 0-15 and destinations naming no LAPIC
 * are the receiver's problem (dropped or ESR set there), never a crash.
 * A level entry whose message reached nobody keeps remote IRR set, as in
 * hardware, until the guest reprograms it as edge. */
#ifndef KITE_DEVICES_PLATFORM_IOAPIC_H
#define KITE_DEVICES_PLATFORM_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/platform/apic_msg.h"

#define IOAPIC_NUM_PINS  24
#define IOAPIC_MMIO_SIZE 0x1000u

/* Redirection entry bits. */
#define IOAPIC_RTE_DEST_LOGICAL (1ull << 11)
#define IOAPIC_RTE_DELIV_STATUS (1ull << 12)
#define IOAPIC_RTE_POLARITY_LOW (1ull << 13)
#define IOAPIC_RTE_REMOTE_IRR   (1ull << 14)
#define IOAPIC_RTE_LEVEL        (1ull << 15)
#define IOAPIC_RTE_MASKED       (1ull << 16)

struct ioapic;

struct ioapic_config {
	uint8_t id;             /* initial IOAPIC ID (MADT says the same) */
	unsigned version;       /* 0x11 (default when 0) or 0x20 (EOI register) */
	apic_deliver_fn deliver;
	void *deliver_opaque;
};

/* All entries masked, edge, vector 0 at reset. NULL on a bad config. */
struct ioapic *ioapic_create(const struct ioapic_config *cfg);
void ioapic_destroy(struct ioapic *io);

/* Bus-shaped (opaque = struct ioapic *). IOREGSEL takes any size (low
 * byte); IOWIN and EOI take 32-bit accesses (8 bytes: low half); other
 * offsets read 0 and ignore writes. */
uint64_t ioapic_mmio_read(void *opaque, uint64_t offset, unsigned size);
void ioapic_mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

/* Drive pin (0..23; others ignored) to asserted/deasserted. */
void ioapic_set_irq(struct ioapic *io, unsigned pin, bool level);
/* EOI broadcast from a LAPIC (lapic_ops.eoi) for a level vector. */
void ioapic_eoi(struct ioapic *io, uint8_t vector);
/* Redirection entry (tests, debugging). 0 for a bad pin. */
uint64_t ioapic_get_rte(struct ioapic *io, unsigned pin);

#endif
