/* The test guests' IDT: interrupt gates to interrupts_asm.S's stubs. */
#include "lib/idt.h"

struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t zero, attr;
	uint16_t off_hi;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(8)));

extern const uint32_t isr_table[22];
void isr_32(void);
void isr_33(void);
void isr_255(void);

static void set_gate(unsigned vec, uint32_t handler)
{
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[vec] = (struct idt_entry){ (uint16_t)handler, cs, 0, 0x8E, (uint16_t)(handler >> 16) };
}

void idt_load(void)
{
	for (unsigned v = 0; v < 22; v++)
		set_gate(v, isr_table[v]);
	set_gate(32, (uint32_t)isr_32);
	set_gate(33, (uint32_t)isr_33);
	set_gate(255, (uint32_t)isr_255);
	struct {
		uint16_t limit;
		uint32_t base;
	} __attribute__((packed)) d = { sizeof(idt) - 1, (uint32_t)idt };
	__asm__ volatile("lidt %0" :: "m"(d));
}
