/* triple: loads an empty IDT and raises a fault (ud2; a software INT would
 * do on real KVM, but kvm_pvm cannot emulate INT n at CPL0): the CPU can
 * deliver neither it nor the #DF that follows, and shuts down (a triple
 * fault). kite must end with status 2 and say so. */
#include "lib/runtime.h"

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	puts("triple: faulting\n");
	struct {
		uint16_t limit;
		uint32_t base;
	} __attribute__((packed)) empty = { 0, 0 };
	__asm__ volatile("lidt %0; ud2" :: "m"(empty));
	puts("triple: still running?\n");
	guest_exit(GUEST_FAIL);
}
