/* Interrupt delivery from devices to the interrupt controllers. Devices know
 * only GSI numbers and MSI messages; the engine decides where they go (the
 * in-kernel irqchip on kvm, the soft engine's IOAPIC/PIC/LAPIC models). */
#ifndef KITE_VMM_IRQ_H
#define KITE_VMM_IRQ_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

/* Drive an interrupt line (GSI) to a level. Edge-triggered devices pulse
 * it (high then low). Returns 0 or a negative errno. */
int vm_irq_line(struct vm *vm, unsigned gsi, bool level);
static inline int vm_irq_pulse(struct vm *vm, unsigned gsi)
{
	int ret = vm_irq_line(vm, gsi, true);
	return ret ? ret : vm_irq_line(vm, gsi, false);
}
/* Deliver one MSI message (address/data as programmed by the guest). */
int vm_irq_msi(struct vm *vm, uint64_t addr, uint32_t data);

#endif
