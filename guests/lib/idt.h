/* A 32-bit IDT for the test guests that take interrupts, wired to the entry
 * stubs of guests/interrupts_asm.S (link it too): exceptions 0-21 and
 * vectors 32, 33 and 255 all call the guest's isr_common(vector, error). */
#ifndef GUEST_IDT_H
#define GUEST_IDT_H

#include <stdint.h>

void isr_common(uint32_t vector, uint32_t error);

/* Fill the IDT with interrupt gates for those vectors and load it. */
void idt_load(void);

#endif
