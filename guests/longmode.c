/* longmode: the protected -> long mode switch. Builds identity page
 * tables for the first 4 GiB (2 MiB pages; the APICs live near the top),
 * enables PAE, sets EFER.LME, turns paging on and far-jumps to a 64-bit
 * code segment; the 64-bit code (longmode_asm.S) checks EFER.LMA and
 * 64-bit arithmetic, takes LAPIC timer interrupts through a 64-bit IDT
 * (returning with IRETQ), prints from 64-bit mode and exits GUEST_OK. */
#include "lib/runtime.h"

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4][512] __attribute__((aligned(4096)));

#define PTE_P  0x1ull
#define PTE_W  0x2ull
#define PTE_PS 0x80ull

__attribute__((noreturn)) void enter_long_mode(uint32_t pml4_addr);

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	for (unsigned g = 0; g < 4; g++) {
		for (unsigned i = 0; i < 512; i++)
			pd[g][i] = ((uint64_t)g << 30) | ((uint64_t)i << 21) | PTE_P | PTE_W | PTE_PS;
		pdpt[g] = (uint32_t)pd[g] | PTE_P | PTE_W;
	}
	pml4[0] = (uint32_t)pdpt | PTE_P | PTE_W;
	printf("longmode: 32-bit protected mode, page tables at 0x%x; switching\n",
	       (uint32_t)pml4);
	enter_long_mode((uint32_t)pml4);
}
