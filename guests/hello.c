/* hello: the smallest useful guest. Prints one line with the command line
 * and memory size from the multiboot info, then exits with HELLO_EXIT
 * (kite status (0x2a << 1) | 1 = 85). */
#include "lib/runtime.h"

#define HELLO_EXIT 0x2a

void guest_main(const struct multiboot_info *mbi)
{
	const char *cmdline = (mbi->flags & (1u << 2)) && mbi->cmdline ?
				      (const char *)mbi->cmdline : "";
	printf("hello from kite guest: cmdline='%s'", cmdline);
	if (mbi->flags & 1u)
		printf(" mem_lower=%uK mem_upper=%uK", mbi->mem_lower, mbi->mem_upper);
	printf("\n");
	guest_exit(HELLO_EXIT);
}
