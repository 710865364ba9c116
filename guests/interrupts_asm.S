/* Interrupt entry stubs for the interrupts guest (32-bit, flat). Each
 * pushes its vector and calls isr_common(vector, error_code). */
	.text
	.code32

.macro STUB vec, has_err
	.globl isr_\vec
isr_\vec:
	.if \has_err == 0
	pushl $0
	.endif
	pushl $\vec
	jmp isr_entry
.endm

/* exceptions with an error code: 8, 10-14, 17, 21 */
STUB 0, 0
STUB 1, 0
STUB 2, 0
STUB 3, 0
STUB 4, 0
STUB 5, 0
STUB 6, 0
STUB 7, 0
STUB 8, 1
STUB 9, 0
STUB 10, 1
STUB 11, 1
STUB 12, 1
STUB 13, 1
STUB 14, 1
STUB 15, 0
STUB 16, 0
STUB 17, 1
STUB 18, 0
STUB 19, 0
STUB 20, 0
STUB 21, 1
STUB 32, 0
STUB 33, 0
STUB 255, 0

isr_entry:
	pushal
	cld
	pushl 36(%esp)   /* error code */
	pushl 36(%esp)   /* vector (moved up by the first push) */
	call isr_common
	addl $8, %esp
	popal
	addl $8, %esp    /* vector, error code */
	/* Return without IRET: the software KVM on kite's development hosts
	 * (kvm_pvm, which emulates guest CPL0 code) cannot emulate a
	 * protected-mode IRET. Same privilege, no stack switch, so the frame
	 * is EIP, CS, EFLAGS: turn it into EFLAGS, EIP and popf; ret. */
	pushl %eax
	movl 4(%esp), %eax   /* EIP */
	xchgl %eax, 12(%esp) /* EIP -> EFLAGS slot, EFLAGS -> eax */
	movl %eax, 8(%esp)   /* EFLAGS -> CS slot */
	popl %eax
	addl $4, %esp
	popfl
	ret

	.section .rodata
	.globl isr_table
isr_table:
	.long isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7
	.long isr_8, isr_9, isr_10, isr_11, isr_12, isr_13, isr_14, isr_15
	.long isr_16, isr_17, isr_18, isr_19, isr_20, isr_21

	.section .note.GNU-stack, "", @progbits
