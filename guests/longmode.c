/* longmode: the protected -> long mode switch. Builds identity page
 * tables for the first 1 GiB (2 MiB pages), enables PAE, sets EFER.LME,
 * turns paging on and far-jumps to a 64-bit code segment; the 64-bit code
 * (longmode_asm.S) checks EFER.LMA and 64-bit arithmetic, prints from
 * 64-bit mode and exits GUEST_OK. */
#include "lib/runtime.h"

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[512] __attribute__((aligned(4096)));

#define PTE_P  0x1ull
#define PTE_W  0x2ull
#define PTE_PS 0x80ull

__attribute__((noreturn)) void enter_long_mode(uint32_t pml4_addr);

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	for (unsigned i = 0; i < 512; i++)
		pd[i] = ((uint64_t)i << 21) | PTE_P | PTE_W | PTE_PS;
	pdpt[0] = (uint32_t)pd | PTE_P | PTE_W;
	pml4[0] = (uint32_t)pdpt | PTE_P | PTE_W;
	printf("longmode: 32-bit protected mode, page tables at 0x%x; switching\n",
	       (uint32_t)pml4);
	enter_long_mode((uint32_t)pml4);
}
