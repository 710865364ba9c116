/* What the PC interrupt controllers say to each other: the APIC message
 * (destination, destination mode, delivery mode, vector, trigger) that an
 * IOAPIC redirection entry, an MSI or a local APIC's ICR produces, and the
 * clock callback the platform models use for register reads that depend on
 * time. Shared by lapic, ioapic, pic8259 and pit8254 (soft engine only: kvm
 * keeps these devices in the kernel). */
#ifndef KITE_DEVICES_PLATFORM_APIC_MSG_H
#define KITE_DEVICES_PLATFORM_APIC_MSG_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

/* Delivery modes: ICR bits 8-10, LVT bits 8-10, IOAPIC RTE bits 8-10 and
 * MSI data bits 8-10 all use this encoding. 3 is reserved. */
enum apic_delivery_mode {
	APIC_DM_FIXED = 0,
	APIC_DM_LOWEST = 1,
	APIC_DM_SMI = 2,
	APIC_DM_NMI = 4,
	APIC_DM_INIT = 5,
	APIC_DM_SIPI = 6,
	APIC_DM_EXTINT = 7,
};

enum { APIC_DEST_PHYSICAL = 0, APIC_DEST_LOGICAL = 1 };
enum { APIC_TRIG_EDGE = 0, APIC_TRIG_LEVEL = 1 };

/* Physical destination 0xff in an xAPIC-format (8-bit) message: all. */
#define APIC_XAPIC_BROADCAST 0xffu
/* Physical or logical destination 0xffffffff in x2APIC format: all. */
#define APIC_X2APIC_BROADCAST 0xffffffffu

/* Deliver one xAPIC-format message (8-bit destination, as an IOAPIC RTE or
 * an MSI carries it) to every local APIC it names. apic_bus_deliver() in
 * lapic.h has this shape; the IOAPIC and MSI helpers call it. It must not
 * block for long: it only sets IRR bits and kicks vCPUs. */
typedef void (*apic_deliver_fn)(void *opaque, uint32_t dest, unsigned dest_mode,
				unsigned delivery_mode, uint8_t vector, unsigned trigger);

/* Host CLOCK_MONOTONIC in nanoseconds (tests pass a fake clock). Used only by
 * the bus-shaped register accessors, which have no time parameter. */
typedef uint64_t (*platform_clock_fn)(void *opaque);

/* MSI address/data as PCI devices write them (Intel SDM 10.11):
 * address 0xFEEx_xxxx: bits 19-12 destination ID, bit 3 redirection hint,
 * bit 2 destination mode (1 = logical); data: bits 7-0 vector, 10-8
 * delivery mode, bit 14 level (assert), bit 15 trigger mode (1 = level). */
struct apic_msi {
	uint32_t dest;
	unsigned dest_mode, delivery_mode, trigger;
	uint8_t vector;
};

/* Returns 0 or -EINVAL for an address outside the 0xFEEx_xxxx window, a
 * reserved delivery mode, or a level-triggered message with the assert
 * bit clear (a deassert message: nothing to deliver). */
static inline int apic_msi_decode(uint64_t addr, uint32_t data, struct apic_msi *m)
{
	if ((addr >> 20) != 0xfee)
		return -EINVAL;
	m->dest = (addr >> 12) & 0xff;
	m->dest_mode = (addr >> 2) & 1;
	m->vector = data & 0xff;
	m->delivery_mode = (data >> 8) & 7;
	m->trigger = (data >> 15) & 1;
	if (m->delivery_mode == 3)
		return -EINVAL;
	if (m->trigger == APIC_TRIG_LEVEL && !(data & (1u << 14)))
		return -EINVAL;
	return 0;
}

/* Decode an MSI and hand it to deliver (e.g. apic_bus_deliver). */
static inline int apic_msi_deliver(apic_deliver_fn deliver, void *opaque,
				   uint64_t addr, uint32_t data)
{
	struct apic_msi m;
	int ret = apic_msi_decode(addr, data, &m);
	if (ret)
		return ret;
	deliver(opaque, m.dest, m.dest_mode, m.delivery_mode, m.vector, m.trigger);
	return 0;
}

#endif
