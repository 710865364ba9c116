/* Multiboot v1 entry for the test guests. The loader enters in 32-bit
 * protected mode with paging off, EAX = 0x2BADB002, EBX = multiboot info;
 * the GDT it used may be gone, so load our own before touching segments. */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, want memory info */

	.section .multiboot, "a"
	.align 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.text
	.globl _start
	.code32
_start:
	cli
	cld
	lgdt gdt_desc
	ljmp $0x08, $1f
1:	movw $0x10, %cx
	movw %cx, %ds
	movw %cx, %es
	movw %cx, %fs
	movw %cx, %gs
	movw %cx, %ss
	movl $stack_top, %esp
	pushl %ebx          /* multiboot info */
	pushl %eax          /* magic */
	call guest_entry
	/* guest_entry never returns; if it does, report failure */
	pushl $0x7f
	call guest_exit
2:	hlt
	jmp 2b

	.section .rodata
	.align 16
	.globl gdt
gdt:
	.quad 0                     /* 0x00 null */
	.quad 0x00cf9a000000ffff    /* 0x08 flat 32-bit code */
	.quad 0x00cf92000000ffff    /* 0x10 flat data */
	.quad 0x00af9a000000ffff    /* 0x18 64-bit code (longmode guest) */
gdt_end:
	.globl gdt_desc
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.bss
	.align 16
	.space 16384
	.globl stack_top
stack_top:

	.section .note.GNU-stack, "", @progbits
