/* Local APIC (xAPIC MMIO page and x2APIC MSRs) for the soft engine, one per
 * vCPU, plus the "APIC bus" that connects them (IPIs, IOAPIC and MSI
 * delivery). Modelled on a Pentium-4-class xAPIC: version 0x50014 (max LVT
 * entry 5: timer, thermal, perf, LINT0, LINT1, error; no CMCI), with the
 * x2APIC extension and the TSC-deadline timer mode.
 *
 * Time. The model has no thread of its own. Anything that depends on time
 * takes now_ns (host CLOCK_MONOTONIC ns); the bus-shaped MMIO accessors,
 * which cannot, ask cfg.clock. The timer contract:
 *   - lapic_next_deadline() is the ns at which the timer next needs
 *     lapic_poll(), or UINT64_MAX (stopped or masked).
 *   - lapic_poll(now) fires what is due (sets the timer vector in IRR).
 *     A periodic timer that missed many periods fires once and resumes at
 *     the next period boundary (coalescing, no catch-up storm).
 *   - The vCPU thread that owns the LAPIC calls lapic_poll() at
 *     instruction-block boundaries; a halted vCPU sleeps until
 *     min(lapic_next_deadline(), a kick) and then polls.
 *
 * Threads and locking. Each LAPIC has a mutex; every entry point takes it.
 * The owner vCPU uses the register, MSR, ack, EOI and poll paths; other
 * threads (IPIs from other vCPUs, IOAPIC, MSI, PIC via LINT0) only enter
 * through apic_bus_deliver()/lapic_accept()/lapic_set_lint(). A LAPIC never
 * calls out (kick, eoi, init_sipi, extint_ack, IPIs to other LAPICs) while
 * holding its own lock, so two vCPUs IPI-ing each other cannot deadlock and
 * lock order is always {PIT -> PIC, IOAPIC} -> LAPIC. lapic_maybe_pending()
 * is a lock-free atomic hint the run loop can test on every block.
 *
 * Hostile guests: reserved offsets read 0 and set ESR "illegal register
 * address"; vectors 0-15 in fixed/lowest messages set ESR "send/receive
 * illegal vector" and are dropped; reserved bits are ignored (xAPIC) or
 * rejected with #GP (x2APIC MSRs, by return value). */
#ifndef KITE_DEVICES_PLATFORM_LAPIC_H
#define KITE_DEVICES_PLATFORM_LAPIC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/platform/apic_msg.h"

struct lapic;
struct apic_bus;

#define LAPIC_DEFAULT_BASE 0xfee00000ull
#define LAPIC_MMIO_SIZE    0x1000u
#define LAPIC_VERSION      0x00050014u

/* MSRs the engine routes here. */
#define MSR_IA32_APIC_BASE    0x1b
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_X2APIC_FIRST      0x800
#define MSR_X2APIC_LAST       0x8ff

/* IA32_APIC_BASE bits. */
#define APIC_BASE_BSP   (1ull << 8)
#define APIC_BASE_EXTD  (1ull << 10) /* x2APIC mode */
#define APIC_BASE_EN    (1ull << 11)

/* ESR bits. */
#define APIC_ESR_SEND_ILLEGAL   (1u << 5)
#define APIC_ESR_RECV_ILLEGAL   (1u << 6)
#define APIC_ESR_ILLEGAL_REG    (1u << 7)

struct lapic_ops {
	/* Required. Something became pending for vCPU apic_id (interrupt, NMI,
	 * INIT, SIPI): wake it if halted, make it look at its LAPIC soon if
	 * running. Called from any thread, never with a LAPIC lock held; must
	 * not block. */
	void (*kick)(void *opaque, unsigned apic_id);
	/* Optional. EOI of a level-triggered vector (TMR bit set): the engine
	 * broadcasts it to the IOAPIC (ioapic_eoi). Called on the owner's
	 * thread without the LAPIC lock. */
	void (*eoi)(void *opaque, uint8_t vector);
	/* Optional. INIT (sipi = false) or start-up IPI (sipi = true, vector =
	 * the SIPI vector: start at vector << 12 in real mode) received by the
	 * LAPIC apic_id. INIT already reset the LAPIC's registers; a SIPI is
	 * reported only to a LAPIC waiting for one (after INIT, or an AP that
	 * was never started), and only once per INIT. Called on the sender's
	 * thread: record the request in the target vCPU, then kick follows. */
	void (*init_sipi)(void *opaque, unsigned apic_id, bool sipi, uint8_t vector);
	/* Optional. INTA cycle to the 8259 (pic_ack): returns the vector. Used
	 * when LINT0 is in ExtINT mode (or the APIC is hardware-disabled) and
	 * the PIC's INTR line is high, or an ExtINT message arrived. */
	int (*extint_ack)(void *opaque);
};

struct lapic_config {
	uint32_t apic_id;        /* x2APIC ID; the xAPIC ID is its low 8 bits */
	bool bsp;                /* BSP flag in APIC_BASE; power-up virtual wire */
	uint64_t bus_hz;         /* timer input clock before the divider; 0: 1 GHz.
	                            Report it as the crystal clock (CPUID 0x15 ECX)
	                            so Linux skips calibrating the LAPIC timer. */
	uint64_t tsc_hz;         /* for IA32_TSC_DEADLINE; 0: TSC-deadline mode
	                            unavailable (writes ignored) */
	unsigned phys_addr_bits; /* MAXPHYADDR (CPUID 0x80000008); 0: 52. APIC
	                            base bits at or above it are reserved. */
	struct apic_bus *bus;    /* may be NULL: IPIs then reach only self */
	const struct lapic_ops *ops;
	void *opaque;            /* for ops */
	platform_clock_fn clock; /* for lapic_mmio_read/write */
	void *clock_opaque;
};

/* Power-up state: enabled in xAPIC mode at LAPIC_DEFAULT_BASE, software
 * disabled (SVR 0xff), LVTs masked, except on the BSP where LINT0 is ExtINT
 * and LINT1 NMI, unmasked (the "virtual wire" mode a BIOS leaves, so the
 * 8259 reaches the BSP before the OS programs the APIC). An AP starts
 * waiting for SIPI. If cfg->bus is set the LAPIC is attached to it. Returns
 * NULL on a bad config (no kick, bus full, duplicate ID) or no memory. */
struct lapic *lapic_create(const struct lapic_config *cfg);
void lapic_destroy(struct lapic *l);

uint32_t lapic_id(struct lapic *l);
bool lapic_x2apic_mode(struct lapic *l);

/* xAPIC page, bus-shaped (opaque = struct lapic *). offset 0..0xfff within
 * the page at lapic_get_base(); registers are 32 bits at 16-byte strides.
 * Smaller reads return the addressed bytes; only 4- or 8-byte writes at a
 * register's start are honoured (the low 32 bits). In x2APIC mode or when
 * hardware-disabled the page is not decoded: reads 0, writes dropped.
 * NOTE: every vCPU sees its own LAPIC at the same address, so the engine
 * must dispatch this page per vCPU before the shared vm->mmio bus. */
uint64_t lapic_mmio_read(void *opaque, uint64_t offset, unsigned size);
void lapic_mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);
/* The same with explicit time (tests, or an engine with its own clock). */
uint32_t lapic_read_reg(struct lapic *l, uint32_t offset, uint64_t now_ns);
void lapic_write_reg(struct lapic *l, uint32_t offset, uint32_t value, uint64_t now_ns);

/* x2APIC MSRs 0x800-0x8ff. Return 0, or -EINVAL: the instruction raises
 * #GP(0) (not in x2APIC mode, reserved MSR, read of a write-only or write
 * of a read-only register, reserved bits set, non-zero EOI/ESR write). */
int lapic_msr_read(struct lapic *l, uint32_t msr, uint64_t *value, uint64_t now_ns);
int lapic_msr_write(struct lapic *l, uint32_t msr, uint64_t value, uint64_t now_ns);

/* IA32_APIC_BASE. Write returns -EINVAL (#GP) for reserved bits, EXTD
 * without EN, x2APIC -> xAPIC, disabled -> x2APIC (SDM 10.12.5). Disabling
 * resets the LAPIC's registers. The BSP bit is read-only. The base address
 * may move: the engine reads lapic_get_base() to know where the page is. */
uint64_t lapic_get_apic_base(struct lapic *l);
int lapic_set_apic_base(struct lapic *l, uint64_t value);
uint64_t lapic_get_base(struct lapic *l);  /* page address, or UINT64_MAX
                                              when the page is not decoded */

/* IA32_TSC_DEADLINE. now_tsc is the guest TSC at now_ns (the engine's
 * RDTSC value). Writes are ignored unless LVT timer is in TSC-deadline
 * mode; 0 disarms; a deadline already past fires at the next poll. Reads
 * return the armed deadline, 0 once it fired or outside that mode. */
uint64_t lapic_tsc_deadline_read(struct lapic *l);
void lapic_tsc_deadline_write(struct lapic *l, uint64_t deadline, uint64_t now_ns,
			      uint64_t now_tsc);

/* CR8 (MOV to/from CR8 in 64-bit mode) is TPR[7:4]. */
uint8_t lapic_get_cr8(struct lapic *l);
void lapic_set_cr8(struct lapic *l, uint8_t cr8);

/* Timer contract: see the top of this file. */
uint64_t lapic_next_deadline(struct lapic *l);
void lapic_poll(struct lapic *l, uint64_t now_ns);

/* Interrupt acceptance, for the owner vCPU at an instruction boundary.
 * lapic_maybe_pending(): lock-free hint; false means nothing (NMI, ExtINT,
 * deliverable fixed vector) is pending. lapic_has_interrupt(): a maskable
 * interrupt (ExtINT or an IRR vector above PPR) is deliverable when
 * RFLAGS.IF = 1. lapic_get_interrupt(): acknowledge it and return its
 * vector (IRR -> ISR; for ExtINT asks the PIC via ops->extint_ack), or -1
 * when nothing is deliverable any more. lapic_take_nmi(): true once per
 * pending NMI (the engine delivers vector 2 unless NMIs are blocked, and
 * then keeps it pending by not calling this). */
bool lapic_maybe_pending(struct lapic *l);
/* The hint itself, for a run loop that tests it inline (read it with
 * acquire ordering, as lapic_maybe_pending does). */
const atomic_bool *lapic_hint_ptr(const struct lapic *l);
bool lapic_has_interrupt(struct lapic *l);
int lapic_get_interrupt(struct lapic *l);
bool lapic_take_nmi(struct lapic *l);

/* LINT0/LINT1 input pins (pin 0 or 1). The engine wires the 8259's INTR
 * output to LINT0 of the BSP. ExtINT is level-sensitive (pending while the
 * line is high); fixed and NMI modes trigger on the rising edge. */
void lapic_set_lint(struct lapic *l, unsigned pin, bool level);

/* Accept one message addressed to this LAPIC (the APIC bus calls it after
 * destination decoding). Fixed/lowest: set IRR (and TMR for level);
 * NMI; INIT (reset + init_sipi); SIPI; ExtINT. SMI and reserved modes are
 * dropped. Kicks the owner. */
void lapic_accept(struct lapic *l, unsigned delivery_mode, uint8_t vector, unsigned trigger);

/* ---- The APIC bus: all LAPICs of a VM. ---- */
#define APIC_BUS_MAX 256

struct apic_bus {
	/* Filled by lapic_create() before any vCPU runs, read-only after. */
	struct lapic *lapics[APIC_BUS_MAX];
	unsigned nr;
};

void apic_bus_init(struct apic_bus *bus);
/* An apic_deliver_fn (opaque = struct apic_bus *): decode the destination
 * (physical ID or 0xff broadcast; logical flat or cluster per each LAPIC's
 * DFR/LDR, or x2APIC cluster) and lapic_accept() on each target. Lowest
 * priority goes to the matching software-enabled LAPIC with the lowest
 * APIC ID. Destinations naming no LAPIC are dropped. */
void apic_bus_deliver(void *bus, uint32_t dest, unsigned dest_mode, unsigned delivery_mode,
		      uint8_t vector, unsigned trigger);
/* MSI: decode and deliver (see apic_msi_decode), 0 or -EINVAL. */
int apic_bus_msi(struct apic_bus *bus, uint64_t addr, uint32_t data);
/* The LAPIC with this APIC ID, or NULL. */
struct lapic *apic_bus_find(struct apic_bus *bus, uint32_t apic_id);

#endif
