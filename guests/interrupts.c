/* interrupts: an IDT, the LAPIC and the IOAPIC. Phase 1: the LAPIC timer
 * in periodic mode (vector 32) wakes the CPU from HLT several times, each
 * tick acknowledged with an EOI. Phase 2: the PIT (IRQ 0) reaches the CPU
 * through the IOAPIC (pin 2, as the MADT's IRQ0 -> GSI 2 override says;
 * vector 33), the legacy PIC masked. Prints the counts and exits GUEST_OK;
 * an exception or a missing interrupt exits GUEST_FAIL. */
#include "lib/idt.h"
#include "lib/runtime.h"

#define LAPIC_BASE   0xFEE00000u
#define LAPIC_ID     0x020
#define LAPIC_VER    0x030
#define LAPIC_EOI    0x0B0
#define LAPIC_SVR    0x0F0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR  0x390
#define LAPIC_TIMER_DIV  0x3E0
#define LVT_MASKED   (1u << 16)
#define LVT_PERIODIC (1u << 17)

#define IOAPIC_BASE  0xFEC00000u
#define IOAPIC_REGSEL 0x00
#define IOAPIC_WIN    0x10
#define IOAPIC_VER_REG 0x01
#define IOAPIC_REDIR(pin) (0x10 + 2 * (pin))

#define VEC_LAPIC_TIMER 32
#define VEC_PIT         33
#define VEC_SPURIOUS    255
#define TICKS           5

static volatile uint32_t lapic_ticks, pit_ticks, spurious;

static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
static uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }

static void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
	mmio_write32(IOAPIC_BASE + IOAPIC_WIN, v);
}

static uint32_t ioapic_read(uint32_t reg)
{
	mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
	return mmio_read32(IOAPIC_BASE + IOAPIC_WIN);
}

void isr_common(uint32_t vector, uint32_t error)
{
	if (vector == VEC_LAPIC_TIMER) {
		lapic_ticks++;
		lapic_write(LAPIC_EOI, 0);
	} else if (vector == VEC_PIT) {
		pit_ticks++;
		lapic_write(LAPIC_EOI, 0);
	} else if (vector == VEC_SPURIOUS) {
		spurious++; /* no EOI for spurious interrupts */
	} else {
		uint32_t cr2;
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
		printf("interrupts: unexpected exception %u (error 0x%x, cr2 0x%x)\n", vector,
		       error, cr2);
		guest_exit(GUEST_FAIL);
	}
}

/* Wait in HLT until *counter reaches n; give up after max_wakeups. */
static int wait_ticks(volatile uint32_t *counter, uint32_t n, uint32_t max_wakeups)
{
	for (uint32_t i = 0; i < max_wakeups && *counter < n; i++)
		__asm__ volatile("sti; hlt; cli");
	return *counter >= n;
}

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	idt_load(); /* VEC_LAPIC_TIMER, VEC_PIT, VEC_SPURIOUS: stubs 32, 33, 255 */
	/* mask the legacy PICs: interrupts come through the APICs only */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);

	uint32_t ver = lapic_read(LAPIC_VER);
	printf("interrupts: lapic id %u version 0x%x, ioapic version 0x%x\n",
	       lapic_read(LAPIC_ID) >> 24, ver & 0xff, ioapic_read(IOAPIC_VER_REG) & 0xff);
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS); /* software enable */

	/* Phase 1: LAPIC timer, periodic, divide by 16. */
	lapic_write(LAPIC_TIMER_DIV, 0x3);
	lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | VEC_LAPIC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, 200000);
	if (!wait_ticks(&lapic_ticks, TICKS, 1000)) {
		printf("interrupts: FAILED: %u lapic timer ticks\n", lapic_ticks);
		guest_exit(GUEST_FAIL);
	}
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | VEC_LAPIC_TIMER);
	printf("interrupts: lapic timer: %u ticks\n", lapic_ticks);

	/* Phase 2: PIT channel 0, rate generator at ~1 kHz, through IOAPIC
	 * pin 2 -> vector 33, fixed delivery to APIC 0, edge, active high. */
	ioapic_write(IOAPIC_REDIR(2) + 1, 0u << 24);
	ioapic_write(IOAPIC_REDIR(2), VEC_PIT);
	outb(0x43, 0x34);                /* ch0, lo/hi, mode 2 */
	outb(0x40, 1193 & 0xff);
	outb(0x40, 1193 >> 8);
	/* the LAPIC timer keeps running so HLT always wakes up */
	lapic_write(LAPIC_LVT_TIMER, LVT_PERIODIC | VEC_LAPIC_TIMER);
	uint32_t lapic_before = lapic_ticks;
	if (!wait_ticks(&pit_ticks, TICKS, 2000)) {
		printf("interrupts: FAILED: %u pit ticks via ioapic (%u lapic ticks meanwhile)\n",
		       pit_ticks, lapic_ticks - lapic_before);
		guest_exit(GUEST_FAIL);
	}
	ioapic_write(IOAPIC_REDIR(2), 1u << 16); /* mask */
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | VEC_LAPIC_TIMER);
	printf("interrupts: pit via ioapic: %u ticks\n", pit_ticks);
	printf("interrupts: all passed\n");
	guest_exit(GUEST_OK);
}
