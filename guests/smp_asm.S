/* AP start-up for the smp guest. ap_trampoline is copied to AP_TRAMPOLINE
 * (below 1 MiB, page aligned) and runs there in real mode after the SIPI
 * (CS = AP_TRAMPOLINE >> 4, IP = 0): it loads kite's guest GDT, enters
 * protected mode and jumps to ap_entry32 in the image proper. */
	.text
	.code16
	.globl ap_trampoline, ap_trampoline_end
ap_trampoline:
	cli
	cld
	lgdtl %cs:(ap_gdt_desc - ap_trampoline)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $ap_entry32
	.align 4
ap_gdt_desc:
	.word 31
	.long gdt
ap_trampoline_end:

	.code32
ap_entry32:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %fs
	movw %ax, %gs
	movw %ax, %ss
	/* a stack of its own: index = ap_next++ */
	movl $1, %eax
	lock xaddl %eax, ap_next
	movl %eax, %ebx
	incl %eax
	shll $12, %eax
	addl $ap_stacks, %eax
	movl %eax, %esp
	pushl %ebx
	call ap_main
1:	cli
	hlt
	jmp 1b

	.section .note.GNU-stack, "", @progbits
