/* The mode switch and the 64-bit half of the longmode guest. */
#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define EFER_LMA (1 << 10)
#define CR4_PAE  (1 << 5)
#define CR0_PG   (1 << 31)
#define COM1     0x3F8
#define LAPIC    0xFEE00000
#define VEC      32
#define TICKS    5

	.text
	.code32
	.globl enter_long_mode
enter_long_mode:
	movl 4(%esp), %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $CR0_PG, %eax
	movl %eax, %cr0          /* now IA-32e compatibility mode */
	ljmp $0x18, $long_entry

	.code64
long_entry:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	leaq stack_top(%rip), %rsp

	leaq msg_hello(%rip), %rsi
	call puts64

	/* EFER.LMA must be set now */
	movl $MSR_EFER, %ecx
	rdmsr
	shlq $32, %rdx
	orq %rax, %rdx
	movq %rdx, %rbx
	leaq msg_efer(%rip), %rsi
	call puts64
	movq %rbx, %rdi
	call puthex64
	testq $EFER_LMA, %rbx
	jz fail

	/* 64-bit arithmetic that 32-bit code cannot do in one register */
	movabsq $0x123456789abcdef0, %rax
	rolq $32, %rax
	movabsq $0x9abcdef012345678, %rcx
	cmpq %rcx, %rax
	jne fail
	leaq msg_rax(%rip), %rsi
	call puts64
	movq %rax, %rdi
	call puthex64

	/* LAPIC timer interrupts through a 64-bit IDT, returning with IRETQ */
	call timer_test
	cmpl $TICKS, ticks(%rip)
	jb fail
	leaq msg_ticks(%rip), %rsi
	call puts64

	leaq msg_ok(%rip), %rsi
	call puts64
	movb $0x10, %al          /* GUEST_OK */
	outb %al, $0xf4
	jmp halt
fail:
	leaq msg_fail(%rip), %rsi
	call puts64
	movb $0x7e, %al          /* GUEST_FAIL */
	outb %al, $0xf4
halt:
	cli
	hlt
	jmp halt

/* timer_test: vector 32 -> isr64; LAPIC timer periodic until TICKS
 * interrupts arrived or 1000 wake-ups passed; then the timer is masked. */
timer_test:
	leaq idt64(%rip), %rdi
	leaq isr64(%rip), %rax
	movw %ax, VEC*16(%rdi)           /* offset 15:0 */
	movw $0x18, VEC*16+2(%rdi)       /* 64-bit code selector */
	movb $0, VEC*16+4(%rdi)          /* no IST */
	movb $0x8E, VEC*16+5(%rdi)       /* present, DPL0, interrupt gate */
	shrq $16, %rax
	movw %ax, VEC*16+6(%rdi)         /* offset 31:16 */
	shrq $16, %rax
	movl %eax, VEC*16+8(%rdi)        /* offset 63:32 */
	movl $0, VEC*16+12(%rdi)
	leaq idt64_desc(%rip), %rax
	movq %rdi, 2(%rax)
	lidt (%rax)
	movl $LAPIC, %edi
	movl $0x1FF, 0xF0(%rdi)          /* SVR: enable, spurious vector 0xFF */
	movl $0x3, 0x3E0(%rdi)           /* divide by 16 */
	movl $(1 << 17) | VEC, 0x320(%rdi) /* LVT timer: periodic */
	movl $200000, 0x380(%rdi)        /* initial count */
	movl $1000, %ecx
1:	cmpl $TICKS, ticks(%rip)
	jae 2f
	sti
	hlt
	cli
	loop 1b
2:	movl $(1 << 16) | VEC, 0x320(%rdi) /* mask */
	ret

isr64:
	pushq %rax
	incl ticks(%rip)
	movl $LAPIC, %eax
	movl $0, 0xB0(%rax)              /* EOI */
	popq %rax
	iretq

/* putc64: byte in %dil. Polls LSR.THRE (bounded). Clobbers rax, rcx, rdx. */
putc64:
	movl $100000, %ecx
1:	movw $COM1 + 5, %dx
	inb %dx, %al
	testb $0x20, %al
	jnz 2f
	loop 1b
2:	movw $COM1, %dx
	movb %dil, %al
	outb %al, %dx
	ret

/* puts64: NUL-terminated string at %rsi; "\n" becomes "\r\n". */
puts64:
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rdi
3:	movzbl (%rsi), %edi
	testb %dil, %dil
	jz 5f
	cmpb $'\n', %dil
	jne 4f
	movb $'\r', %dil
	call putc64
	movb $'\n', %dil
4:	call putc64
	incq %rsi
	jmp 3b
5:	popq %rdi
	popq %rdx
	popq %rcx
	popq %rax
	ret

/* puthex64: "0x" and 16 hex digits of %rdi, then "\n". */
puthex64:
	pushq %rax
	pushq %rcx
	pushq %rdx
	pushq %rdi
	pushq %rbx
	pushq %r8
	movq %rdi, %rbx
	movb $'0', %dil
	call putc64
	movb $'x', %dil
	call putc64
	movl $16, %r8d
6:	rolq $4, %rbx
	movl %ebx, %eax
	andl $0xf, %eax
	leaq hexdigits(%rip), %rdi
	movzbl (%rdi,%rax), %edi
	call putc64
	decl %r8d
	jnz 6b
	movb $'\r', %dil
	call putc64
	movb $'\n', %dil
	call putc64
	popq %r8
	popq %rbx
	popq %rdi
	popq %rdx
	popq %rcx
	popq %rax
	ret

	.bss
	.align 16
idt64:		.space 256 * 16
ticks:		.long 0

	.data
	.align 16
idt64_desc:	.word 256 * 16 - 1
		.quad 0

	.section .rodata
msg_ticks:	.asciz "longmode: 5 LAPIC timer interrupts in 64-bit mode (IRETQ)\n"
hexdigits:	.ascii "0123456789abcdef"
msg_hello:	.asciz "longmode: hello from 64-bit mode\n"
msg_efer:	.asciz "longmode: EFER="
msg_rax:	.asciz "longmode: 64-bit rotate gives "
msg_ok:		.asciz "longmode: all passed\n"
msg_fail:	.asciz "longmode: FAILED\n"

	.section .note.GNU-stack, "", @progbits
