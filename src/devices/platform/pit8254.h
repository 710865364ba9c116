/* 8254 programmable interval timer for the soft engine: channels 0-2 at
 * ports 0x40-0x42, the mode/command register at 0x43, and port 0x61 (bit 0
 * channel 2 gate, bit 1 speaker data, bit 4 refresh toggle, bit 5 OUT2),
 * clocked at 1.193182 MHz from host time.
 *
 * Modelled: modes 0-5 (6 and 7 alias 2 and 3), binary and BCD counting,
 * lobyte / hibyte / lobyte-then-hibyte access with the flip-flop, the
 * counter latch command, the read-back command (count and/or status of
 * several channels), gates (channel 2's from port 0x61; 0 and 1 tied high),
 * OUT levels and the status byte (OUT, null count, access, mode, BCD).
 * Counts are derived from now_ns: ticks = elapsed_ns * 1193182 / 1e9, so
 * Linux's PIT calibration loops (pit_calibrate_tsc, quick_pit_calibrate:
 * channel 2 in mode 0, gate via port 0x61, polling OUT2 or reading counts)
 * see a counter that follows host time. A new count takes effect at once
 * in every mode (real hardware waits for the period's end in 2 and 3).
 *
 * IRQ0. Channel 0's OUT rising edges become IRQ0 pulses: cfg.set_irq(0,
 * true) then (0, false); the engine routes them to PIC IRQ0 and IOAPIC
 * GSI 2. Periodic modes 2 and 3 pulse once per period, modes 0 and 4 once.
 * Timer contract (as for the LAPIC): pit_next_deadline() is the ns of the
 * next pulse or UINT64_MAX; pit_poll(now) raises what is due. A poll after
 * a long stall raises one pulse and continues on the period grid
 * (coalescing); pulses are never closer than 50 us apart. One thread
 * (e.g. the BSP's run loop, or whichever vCPU thread sleeps least) polls.
 *
 * Threads: one mutex; set_irq is called without it held, so no lock order
 * constraint. Register reads need the time: the bus-shaped accessors take
 * it from cfg.clock; pit_read/pit_write take it explicitly.
 * Hostile guests: every byte value on every port is defined (unknown
 * commands are ignored, invalid BCD digits count as their binary value). */
#ifndef KITE_DEVICES_PLATFORM_PIT8254_H
#define KITE_DEVICES_PLATFORM_PIT8254_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/platform/apic_msg.h"

#define PIT_HZ 1193182u

struct pit;

struct pit_config {
	/* Optional: drive the PIT's output line (always line 0 = ISA IRQ0). */
	void (*set_irq)(void *opaque, unsigned line, bool level);
	void *opaque;
	platform_clock_fn clock;  /* for the bus-shaped accessors */
	void *clock_opaque;
};

/* All channels idle (no count written), gate 2 low. */
struct pit *pit_create(const struct pit_config *cfg);
void pit_destroy(struct pit *pit);

/* port: 0-3 for 0x40-0x43. */
uint8_t pit_read(struct pit *pit, unsigned port, uint64_t now_ns);
void pit_write(struct pit *pit, unsigned port, uint8_t value, uint64_t now_ns);
uint8_t pit_port61_read(struct pit *pit, uint64_t now_ns);
void pit_port61_write(struct pit *pit, uint8_t value, uint64_t now_ns);

/* Bus-shaped: register pit_io_* at 0x40 (len 4) and pit_port61_io_* at
 * 0x61 (len 1), opaque = struct pit *. Wider accesses go byte by byte. */
uint64_t pit_io_read(void *opaque, uint64_t offset, unsigned size);
void pit_io_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
uint64_t pit_port61_io_read(void *opaque, uint64_t offset, unsigned size);
void pit_port61_io_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

uint64_t pit_next_deadline(struct pit *pit);
void pit_poll(struct pit *pit, uint64_t now_ns);

/* OUT of channel ch (0..2) at now_ns (tests, speaker). */
bool pit_get_out(struct pit *pit, unsigned ch, uint64_t now_ns);

#endif
