/* reset: announces itself, then asks the i8042 keyboard controller to pulse
 * the CPU reset line (command 0xFE), as Linux's `reboot=k` does. kite ends
 * with status 0, or with --on-reboot restart boots the guest again. */
#include "lib/runtime.h"

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	printf("reset guest: booted, resetting\n");
	outb(0x64, 0xfe);
	for (;;)
		__asm__ volatile("hlt");
}
