/* AP start-up for sys_xmc: xmc_trampoline is copied to 0x10000 and runs
 * there in real mode after the SIPI (CS = 0x1000, IP = 0); it loads the
 * sys guests' GDT (gdt_desc32, sys_start64.S), enters protected mode and
 * jumps to xmc_ap32 in the image proper, which turns on long mode with the
 * BSP's page tables and calls xmc_ap_main() on xmc_ap_stack. */
#define MSR_EFER 0xC0000080

	.text
	.code16
	.globl xmc_trampoline, xmc_trampoline_end
xmc_trampoline:
	cli
	cld
	lgdtl %cs:(xmc_gdt_desc - xmc_trampoline)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $xmc_ap32
	.align 4
xmc_gdt_desc:
	.word 0x57
	.long gdt64
xmc_trampoline_end:

	.code32
xmc_ap32:
	movw $0x18, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl $boot_pml4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $(1 << 5), %eax             /* PAE */
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $((1 << 8) | (1 << 11)), %eax /* LME, NXE */
	wrmsr
	movl %cr0, %eax
	orl $0x80000000, %eax
	movl %eax, %cr0
	ljmp $0x10, $xmc_ap64

	.code64
xmc_ap64:
	movl $0x18, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movabsq $xmc_ap_stack_top, %rsp
	call xmc_ap_main
1:	cli
	hlt
	jmp 1b

	.bss
	.align 16
	.space 8192
xmc_ap_stack_top:

	.section .note.GNU-stack, "", @progbits
