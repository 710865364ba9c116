/* spin: prints one line, then spins forever with interrupts off, at CPL0.
 * Tests use it to check that kite stops a busy vCPU (SIGTERM, Ctrl-A x). */
#include "lib/runtime.h"

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	puts("spin: spinning\n");
	for (;;)
		__asm__ volatile("" ::: "memory");
}
