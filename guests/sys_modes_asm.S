/* The mode trips of sys_modes. modes_trip(flags) is called from 64-bit
 * code and far-calls a 32-bit code segment (compatibility mode); with
 * flags bit 0 that code turns paging off (leaving IA-32e mode for legacy
 * protected mode) and clears EFER.LME; with bit 1 it then goes on to real
 * mode through a 16-bit segment (the blob at rm_blob, copied to 0x10000 by
 * the C side, which also bases selectors 0x48/0x50 there) and back; then
 * it re-enters IA-32e mode and returns to 64-bit code by a far return.
 * What each stage saw is stored in modes_seen (see sys_modes.c). */
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define RM_BASE  0x10000

	.text
	.code64
	.globl modes_trip
modes_trip:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movl %edi, modes_flags(%rip)
	lcall *compat_ptr(%rip)         /* m16:32: to compat_entry, CS 0x08 */
	movl $0x18, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movabsq $0x123456789, %rax      /* 64-bit again */
	movq %rax, modes_seen + 40(%rip)
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

	.code32
compat_entry:
	/* 0x48 is DEC EAX here, a REX prefix in 64-bit mode */
	xorl %eax, %eax
	.byte 0x48
	nop
	movl %eax, modes_seen + 0       /* compat_dec: 0xffffffff */
	xorl %eax, %eax
	movw %cs, %ax
	movl %eax, modes_seen + 4       /* compat_cs */
	movl $MSR_EFER, %ecx
	rdmsr
	movl %eax, modes_seen + 8       /* compat_efer */
	testl $1, modes_flags
	jz 9f

	/* paging off: IA-32e mode ends (LMA clears), legacy protected mode */
	movl %cr0, %eax
	andl $0x7fffffff, %eax
	movl %eax, %cr0
	movl $MSR_EFER, %ecx
	rdmsr
	movl %eax, modes_seen + 12      /* legacy_efer: LME=1 LMA=0 */
	andl $~EFER_LME, %eax
	wrmsr
	rdmsr
	movl %eax, modes_seen + 16      /* legacy_efer2: LME=0 */
	movl %cr0, %eax
	movl %eax, modes_seen + 20      /* legacy_cr0: PE=1 PG=0 */

	testl $2, modes_flags
	jz 5f
	movl %esp, modes_esp32
	ljmp $0x48, $0                  /* pm16 at RM_BASE */
	.globl back32
back32:
	movw $0x18, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl modes_esp32, %esp
	movl %cr0, %eax
	movl %eax, modes_seen + 24      /* cr0 after real mode: PE=1 */

5:	/* back into IA-32e mode: LME, then paging (CR3 and CR4.PAE kept) */
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000000, %eax
	movl %eax, %cr0
	rdmsr
	movl %eax, modes_seen + 28      /* back_efer: LMA=1 */
9:	lret

/* Real-mode blob: runs at RM_BASE. Offsets inside it are relative. */
	.code16
	.globl rm_blob, rm_blob_end
rm_blob:
	/* 16-bit protected mode, CS 0x48 based at RM_BASE */
	movw $0x50, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl %cr0, %eax
	andl $~1, %eax
	movl %eax, %cr0
	ljmp $(RM_BASE >> 4), $(rm - rm_blob)
rm:
	movw $(RM_BASE >> 4), %ax
	movw %ax, %ds
	movw %ax, %ss
	movw $0xf00, %sp
	movl %cr0, %eax
	movl %eax, (rm_cr0 - rm_blob)
	/* segment arithmetic: ES 0x1100 -> physical 0x11000 = DS:0x1000 */
	movw $((RM_BASE + 0x1000) >> 4), %ax
	movw %ax, %es
	movw $0xbeef, %es:0
	movw 0x1000, %ax
	movw %ax, (rm_seg - rm_blob)
	/* 16-bit stack */
	pushw $0x1234
	popw %bx
	movw %bx, (rm_push - rm_blob)
	movw %sp, (rm_sp - rm_blob)
	/* a 32-bit operand by prefix */
	movl $0x12345678, %eax
	movl %eax, (rm_op32 - rm_blob)
	movw $1, (rm_done - rm_blob)
	/* back to protected mode */
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $back32
	.align 4
	.globl rm_cr0, rm_seg, rm_push, rm_sp, rm_op32, rm_done
rm_cr0:		.long 0
rm_op32:	.long 0
rm_seg:		.word 0
rm_push:	.word 0
rm_sp:		.word 0
rm_done:	.word 0
rm_blob_end:

	.data
	.align 8
compat_ptr:
	.long compat_entry
	.word 0x08
	.align 8
	.globl modes_seen
modes_seen:	.space 48
modes_flags:	.long 0
modes_esp32:	.long 0

	.section .note.GNU-stack, "", @progbits
