/* Entry of the 64-bit system test guests (sys_*): a multiboot v1 ELF64
 * kernel entered in 32-bit protected mode. Loads a Linux-like GDT, maps
 * the first 4 GiB 1:1 with 2 MiB pages (user-accessible, writable), turns
 * on PAE, EFER.LME/NXE and CR0.PG, far-jumps to 64-bit code and calls the
 * runtime's guest_entry(magic, mbi) on a 64-bit stack. The values seen on
 * the way are kept in boot_state for sys_modes to check. Also holds the
 * trap entry stubs and catch_call/catch_user (see sys_lib.h). */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003

#define MSR_EFER 0xC0000080
#define EFER_LME (1 << 8)
#define EFER_NXE (1 << 11)
#define CR4_PAE  (1 << 5)
#define CR0_PG   (1 << 31)

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
	movl %eax, boot_magic
	movl %ebx, boot_mbi
	lgdt gdt_desc32
	ljmp $0x08, $1f
1:	movw $0x18, %cx
	movw %cx, %ds
	movw %cx, %es
	movw %cx, %ss
	xorl %ecx, %ecx
	movw %cx, %fs
	movw %cx, %gs
	movl $boot_stack_top, %esp

	/* state in 32-bit protected mode, before paging */
	movl %cr0, %eax
	movl %eax, boot_state + 0       /* cr0_prot */
	movl $MSR_EFER, %ecx
	rdmsr
	movl %eax, boot_state + 8       /* efer_prot */

	/* PD entries: 2 MiB pages, P|W|U|PS; 4 PDs cover 4 GiB */
	movl $boot_pd, %ebx
	xorl %ecx, %ecx
2:	movl %ecx, %eax
	shll $21, %eax
	orl $0x87, %eax
	movl %eax, (%ebx,%ecx,8)
	movl %ecx, %eax
	shrl $11, %eax                  /* bits 32+ of the address */
	movl %eax, 4(%ebx,%ecx,8)
	incl %ecx
	cmpl $2048, %ecx
	jb 2b
	/* PDPT entries 0..3 -> the PDs; PML4[0] -> PDPT */
	xorl %ecx, %ecx
3:	movl %ecx, %eax
	shll $12, %eax
	addl $boot_pd + 0x7, %eax
	movl %eax, boot_pdpt(,%ecx,8)
	incl %ecx
	cmpl $4, %ecx
	jb 3b
	movl $boot_pdpt + 0x7, boot_pml4

	movl $boot_pml4, %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $MSR_EFER, %ecx
	rdmsr
	orl $(EFER_LME | EFER_NXE), %eax
	wrmsr
	movl %cr0, %eax
	orl $CR0_PG, %eax
	movl %eax, %cr0                 /* IA-32e mode, compatibility mode */
	movl $MSR_EFER, %ecx
	rdmsr
	movl %eax, boot_state + 16      /* efer_compat: LMA must be set */
	ljmp $0x10, $long_entry

	.code64
long_entry:
	movl $0x18, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movabsq $boot_stack_top, %rsp
	movq %cr0, %rax
	movq %rax, boot_state + 24      /* cr0_long */
	movq %cr4, %rax
	movq %rax, boot_state + 32      /* cr4_long */
	movl $MSR_EFER, %ecx
	rdmsr
	shlq $32, %rdx
	orq %rdx, %rax
	movq %rax, boot_state + 40      /* efer_long */
	movl boot_mbi, %esi
	movl boot_magic, %edi
	call guest_entry
	movb $0x7f, %al
	outb %al, $0xf4
4:	cli
	hlt
	jmp 4b

/* ---- trap entry ---------------------------------------------------- */
/* Every vector has a stub that pushes a zero error code where the CPU
 * pushes none, then the vector, then the general registers: the result is
 * a struct trap_frame (sys_lib.h), handed to trap_dispatch(). */
.macro STUB vec
	.align 16
isr_\vec:
	.if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) \
	    || (\vec == 29) || (\vec == 30)
	.else
	pushq $0
	.endif
	pushq $\vec
	jmp isr_common
.endm

	.altmacro
	.align 16
	.globl isr_stubs
isr_stubs:
	.set v, 0
	.rept 256
	STUB %v
	.set v, v + 1
	.endr

isr_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	cld
	movq %rsp, %rdi
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp
	iretq

/* long catch_call(void (*fn)(void *), void *arg): runs fn(arg) at CPL0.
 * -1 when it returns, else the vector of the trap that ended it (the
 * trap handler sends the CPU to catch_landing on this stack frame). */
	.globl catch_call
catch_call:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	subq $8, %rsp
	movq %rsp, catch_rsp(%rip)
	movl $1, catch_active(%rip)
	movq %rdi, %rax
	movq %rsi, %rdi
	call *%rax
	movl $0, catch_active(%rip)
	movq $-1, %rax
	jmp catch_out

/* long catch_user(fn, arg, user_stack_top, rflags): IRETQ to fn(arg) at
 * CPL3 (CS 0x33, SS 0x2b) with the given RFLAGS; fn returns into
 * user_exit (UD2: kvm_pvm turns a CPL3 INT n other than INT3 into #UD, so
 * a software interrupt cannot be the way back) and catch_user returns -1;
 * any other trap from CPL3 ends it like catch_call. */
	.globl catch_user
catch_user:
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	subq $8, %rsp
	movq %rsp, catch_rsp(%rip)
	movl $1, catch_active(%rip)
	subq $8, %rdx
	leaq user_exit(%rip), %rax
	movq %rax, (%rdx)
	pushq $0x2b
	pushq %rdx
	pushq %rcx
	pushq $0x33
	pushq %rdi
	movq %rsi, %rdi
	xorl %eax, %eax
	xorl %ebx, %ebx
	xorl %ecx, %ecx
	xorl %edx, %edx
	xorl %esi, %esi
	xorl %ebp, %ebp
	iretq

	.globl catch_landing
catch_landing:
	movl $0, catch_active(%rip)
	movq last_trap(%rip), %rax      /* last_trap.vector */
	cmpq $6, %rax
	jne catch_out
	leaq user_exit(%rip), %rcx
	cmpq %rcx, last_trap+16(%rip)   /* last_trap.rip */
	jne catch_out
	movq $-1, %rax
catch_out:
	addq $8, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	ret

	.globl user_exit
user_exit:
	ud2

	.data
	.align 16
	.globl gdt64
gdt64:
	.quad 0                     /* 0x00 null */
	.quad 0x00cf9a000000ffff    /* 0x08 kernel 32-bit code */
	.quad 0x00af9a000000ffff    /* 0x10 kernel 64-bit code */
	.quad 0x00cf92000000ffff    /* 0x18 kernel data */
	.quad 0x00cffa000000ffff    /* 0x20 user 32-bit code */
	.quad 0x00cff2000000ffff    /* 0x28 user data */
	.quad 0x00affa000000ffff    /* 0x30 user 64-bit code */
	.quad 0, 0                  /* 0x38 TSS (filled by sys_init) */
	.quad 0x00009a000000ffff    /* 0x48 16-bit code, base 0 */
	.quad 0x000092000000ffff    /* 0x50 16-bit data, base 0 */
gdt64_end:
	.globl gdt_desc32
gdt_desc32:
	.word gdt64_end - gdt64 - 1
	.quad gdt64

	.globl boot_state
	.align 8
boot_state:
	.space 64
boot_magic:	.long 0
boot_mbi:	.long 0

	.bss
	.align 4096
	.globl boot_pml4, boot_pdpt, boot_pd
boot_pml4:	.space 4096
boot_pdpt:	.space 4096
boot_pd:	.space 4 * 4096
	.align 16
	.globl catch_rsp, catch_active
catch_rsp:	.quad 0
catch_active:	.long 0
	.align 16
	.space 32768
	.globl boot_stack_top
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
