/* sys_ist: interrupt stack tables and the double fault. IST1 serves #DF,
 * IST2 #UD, IST3 NMI and an external vector. An exception and an
 * interrupt at CPL0 through an IST gate land on their IST stack (a switch
 * even without a privilege change, from the same top each time). Double
 * faults, each handled on IST1 with error code 0: a #PF whose IDT gate is
 * not present (#PF then #NP), a #DE likewise (two contributory faults), and
 * a kernel stack overflow (#PF while pushing the #PF frame). A benign #UD
 * through a not-present gate gives #NP (EXT, IDT, vector in the error
 * code), not #DF. And the STI interrupt shadow. */
#include "sys_lib.h"

const char *const sys_name = "sys_ist";

#define LAPIC 0xFEE00000ull
#define LAPIC_EOI 0x0B0
#define LAPIC_SVR 0x0F0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3E0
#define VEC_EXT 0x41
#define VEC_ALARM 0x42
#define UNMAPPED 0x8000002000ull /* PML4 slot 1 is empty */

#define FN(name, body) \
	extern char f_##name[], f_##name##_at[]; \
	__asm__(".text\n.globl f_" #name ", f_" #name "_at\n" \
		"f_" #name ":\n" body "\nret\n")

volatile uint64_t fn_rsp;
FN(ud2, "movq %rsp, fn_rsp(%rip)\nf_ud2_at: ud2");
FN(pf, "movabsq $0x8000002000, %rax\nf_pf_at: movq (%rax), %rax");
FN(de, "xorl %ecx, %ecx\n xorl %edx, %edx\n movl $1, %eax\nf_de_at: divl %ecx");
FN(overflow, "movabsq $0x8000002000, %rsp\nf_overflow_at: pushq $0");

extern char boot_stack_top[];

/* The STI interrupt shadow: an interrupt pending while IF=0 waits one
 * more instruction after STI */
volatile uint32_t shadow_flag;
FN(sti_shadow, "movl $0, shadow_flag(%rip)\n sti\n movl $1, shadow_flag(%rip)\n"
	       "f_sti_shadow_at: nop\n cli");

static void lapic_write(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(LAPIC + reg) = v; }

static volatile uint64_t irq_top, irq_rsp, irq_cs, irq_rip;
static volatile uint32_t irq_flag;
static volatile unsigned irq_count;
static void note_irq(struct trap_frame *f)
{
	irq_top = (uint64_t)&f->ss + 8;
	irq_rsp = f->rsp;
	irq_cs = f->cs;
	irq_rip = f->rip;
	irq_flag = shadow_flag;
	irq_count++;
	if (f->vector == VEC_EXT)
		lapic_write(LAPIC_EOI, 0);
}

static uint64_t frame_top(void)
{
	return last_trap.frame + sizeof(struct trap_frame);
}

/* Wait for an interrupt in STI; HLT, a LAPIC timer one-shot as the
 * alarm clock should the interrupt never come. */
static volatile unsigned alarms;
static void alarm(struct trap_frame *f)
{
	(void)f;
	alarms++;
	lapic_write(LAPIC_EOI, 0);
}

static void wait_irq(unsigned before)
{
	set_handler(VEC_ALARM, alarm);
	lapic_write(LAPIC_SVR, 0x1FF);
	lapic_write(LAPIC_TIMER_DIV, 0x3);
	lapic_write(LAPIC_LVT_TIMER, VEC_ALARM); /* one-shot */
	for (unsigned i = 0; i < 20 && irq_count == before; i++) {
		lapic_write(LAPIC_TIMER_INIT, 1000000);
		__asm__ volatile("sti; hlt; cli");
	}
	lapic_write(LAPIC_LVT_TIMER, (1u << 16) | VEC_ALARM);
}

static void double_fault(const char *what, char *fn, unsigned gate)
{
	set_gate(gate, 0, 0, 0, 0);
	last_trap.vector = 0xdead;
	long v = catch_call((void (*)(void *))fn, NULL);
	set_gate(gate, 0, 0, 1, 0);
	check(v == 8 && last_trap.error == 0 && last_trap.cs == SEL_KCODE,
	      "%s: #DF vector %d error 0x%x cs 0x%x", what, (int)v, (unsigned)last_trap.error,
	      (unsigned)last_trap.cs);
	check(frame_top() == IST_TOP(0), "%s: #DF frame on the IST1 stack (top 0x%llx, IST1 0x%llx)",
	      what, U64(frame_top()), U64(IST_TOP(0)));
}

void guest_main(const struct multiboot_info *mbi)
{
	sys_init(mbi);
	set_gate(8, 1, 0, 1, 0);
	set_gate(6, 2, 0, 1, 0);
	set_gate(2, 3, 0, 1, 0);
	set_gate(VEC_EXT, 3, 0, 1, 0);
	printf("%s: IST1 top 0x%llx, IST2 0x%llx, IST3 0x%llx, RSP0 0x%llx\n", sys_name,
	       U64(tss.ist[1]), U64(tss.ist[2]), U64(tss.ist[3]), U64(tss.rsp[0]));

	if (want("ist_exception")) {
		for (int i = 1; i <= 2; i++) {
			long v = catch_call((void (*)(void *))f_ud2, NULL);
			check(v == 6 && last_trap.rip == (uint64_t)f_ud2_at,
			      "#UD at CPL0 through an IST2 gate (run %d): vector %d", i, (int)v);
			check(frame_top() == IST_TOP(1),
			      "run %d: frame on the IST2 stack (top 0x%llx, want 0x%llx)", i,
			      U64(frame_top()), U64(IST_TOP(1)));
			check(last_trap.rsp == fn_rsp && last_trap.ss == SEL_KDATA,
			      "run %d: saved RSP 0x%llx is the interrupted stack 0x%llx, SS 0x%x", i,
			      U64(last_trap.rsp), U64(fn_rsp), (unsigned)last_trap.ss);
		}
	}
	if (want("sti_shadow")) {
		set_handler(VEC_EXT, note_irq);
		lapic_write(LAPIC_SVR, 0x1FF);
		unsigned before = irq_count;
		lapic_write(LAPIC_ICR_HI, 0);
		lapic_write(LAPIC_ICR_LO, (1u << 18) | VEC_EXT); /* pending while IF=0 */
		/* wait until it is pending in the IRR */
		volatile uint32_t *irr = (volatile uint32_t *)(LAPIC + 0x200 + (VEC_EXT / 32) * 0x10);
		for (int i = 0; i < 100000 && !(*irr & (1u << (VEC_EXT % 32))); i++)
			;
		check(*irr & (1u << (VEC_EXT % 32)), "self-IPI pending in the IRR while IF=0");
		catch_call((void (*)(void *))f_sti_shadow, NULL);
		check(irq_count == before + 1 && irq_flag == 1 && irq_rip == (uint64_t)f_sti_shadow_at,
		      "pending interrupt taken one instruction after STI (%u taken, flag %u, RIP 0x%llx "
		      "want 0x%llx)",
		      irq_count - before, irq_flag, U64(irq_rip), U64((uint64_t)f_sti_shadow_at));
		set_handler(VEC_EXT, NULL);
	}
	if (want("ist_interrupt")) {
		set_handler(VEC_EXT, note_irq);
		lapic_write(LAPIC_SVR, 0x1FF);
		unsigned before = irq_count;
		lapic_write(LAPIC_ICR_HI, 0);
		lapic_write(LAPIC_ICR_LO, (1u << 18) | VEC_EXT); /* fixed, to self */
		wait_irq(before);
		check(irq_count == before + 1, "self-IPI vector 0x%x delivered (%u)", VEC_EXT,
		      irq_count - before);
		check(irq_top == IST_TOP(2), "interrupt frame on the IST3 stack (top 0x%llx, want 0x%llx)",
		      U64(irq_top), U64(IST_TOP(2)));
		check(irq_cs == SEL_KCODE && irq_rsp > (uint64_t)&boot_stack_top - 32768 &&
			      irq_rsp <= (uint64_t)&boot_stack_top,
		      "interrupted CPL0 context: CS 0x%x RSP 0x%llx on the boot stack", (unsigned)irq_cs,
		      U64(irq_rsp));
		set_handler(VEC_EXT, NULL);
	}
	if (want("ist_nmi")) {
		set_handler(2, note_irq);
		unsigned before = irq_count;
		irq_top = 0;
		lapic_write(LAPIC_ICR_HI, 0);               /* APIC ID 0: this CPU */
		lapic_write(LAPIC_ICR_LO, (4u << 8) | (1u << 14)); /* NMI, assert */
		wait_irq(before);
		check(irq_count == before + 1, "NMI by IPI to this CPU delivered (%u)",
		      irq_count - before);
		check(irq_top == IST_TOP(2), "NMI frame on the IST3 stack (top 0x%llx, want 0x%llx)",
		      U64(irq_top), U64(IST_TOP(2)));
		set_handler(2, NULL);
	}
	if (want("np_benign")) {
		set_gate(6, 0, 0, 0, 0);
		long v = catch_call((void (*)(void *))f_ud2, NULL);
		set_gate(6, 2, 0, 1, 0);
		check(v == 11 && last_trap.error == (6 * 8 + 2 + 1) && last_trap.rip == (uint64_t)f_ud2_at,
		      "#UD through a not-present gate: #NP vector %d error 0x%x (want 11, 0x33: "
		      "IDT|EXT) rip 0x%llx",
		      (int)v, (unsigned)last_trap.error, U64(last_trap.rip));
	}
	if (want("double_fault")) {
		double_fault("#PF with its gate not present", f_pf, 14);
		double_fault("#DE with its gate not present", f_de, 0);
	}
	if (want("stack_overflow")) {
		long v = catch_call((void (*)(void *))f_overflow, NULL);
		check(v == 8 && last_trap.error == 0 && frame_top() == IST_TOP(0),
		      "kernel stack overflow (#PF pushing the #PF frame): #DF vector %d error 0x%x on "
		      "IST1",
		      (int)v, (unsigned)last_trap.error);
		/* CR2 is the push that faulted first, or the part of the #PF frame
		 * the CPU wrote first when delivery faulted: implementation specific */
		check(last_trap.cr2 >= UNMAPPED - 48 && last_trap.cr2 <= UNMAPPED - 8,
		      "CR2 0x%llx is in the stack just below 0x%llx", U64(last_trap.cr2),
		      U64(UNMAPPED));
	}
	sys_finish();
}
