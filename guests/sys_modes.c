/* sys_modes: the CPU's modes and the switches between them. The entry
 * (sys_start64.S) went from the multiboot 32-bit protected mode to long
 * mode: PAE, EFER.LME, CR0.PG, a far jump to a 64-bit code segment; its
 * readings on the way are checked here, with CS.L (LAR) and the control
 * registers read back, and the writes to them the CPU must refuse; the
 * descriptors' L and D bits by LAR. Then sys_modes_asm.S: a far call into a 32-bit code
 * segment (compatibility mode) and a far return; leaving IA-32e mode
 * (paging off, LMA clears, LME off) for legacy protected mode and coming
 * back; and on to real mode through a 16-bit segment and back. */
#include "sys_lib.h"

const char *const sys_name = "sys_modes";

#define RM_BASE 0x10000ull

void modes_trip(uint32_t flags);
extern volatile uint32_t modes_seen[12];
extern char rm_blob[], rm_blob_end[], rm_cr0[], rm_seg[], rm_push[], rm_sp[], rm_op32[],
	rm_done[];

/* where a blob variable lives once copied to RM_BASE */
#define RM_VAR(type, sym) (*(volatile type *)(RM_BASE + (uint64_t)((sym) - rm_blob)))

static uint32_t lar(uint16_t sel)
{
	uint32_t ar = 0;
	__asm__ volatile("lar %1, %0" : "=r"(ar) : "r"((uint32_t)sel) : "cc");
	return ar;
}

/* Control register and EFER writes the CPU must refuse: the value comes
 * in RDI (catch_call's argument) */
#define FN(name, body) \
	extern char f_##name[], f_##name##_at[]; \
	__asm__(".text\n.globl f_" #name ", f_" #name "_at\n" \
		"f_" #name ":\n" body "\nret\n")
FN(wcr0, "f_wcr0_at: movq %rdi, %cr0");
FN(wcr3, "f_wcr3_at: movq %rdi, %cr3");
FN(wcr4, "f_wcr4_at: movq %rdi, %cr4");
FN(wefer, "movl $0xc0000080, %ecx\n movl %edi, %eax\n shrq $32, %rdi\n movl %edi, %edx\n"
	  "f_wefer_at: wrmsr");

static void refused(const char *what, char *fn, char *at, uint64_t v)
{
	last_trap.vector = 0xdead;
	long r = catch_call((void (*)(void *))fn, (void *)v);
	check(r == 13 && last_trap.error == 0 && last_trap.rip == (uint64_t)at,
	      "%s (0x%llx): vector %d error 0x%x (want #GP(0))", what, U64(v), (int)r,
	      (unsigned)last_trap.error);
}

/* Base a flat-limit 16-bit descriptor at RM_BASE */
static void base16(unsigned sel, uint64_t type)
{
	gdt64[sel / 8] = 0xffffull | ((RM_BASE & 0xffffff) << 16) | (type << 40);
}

void guest_main(const struct multiboot_info *mbi)
{
	sys_init(mbi);

	if (want("boot_switch")) {
		uint64_t cr0p = boot_state.cr0_prot, efp = boot_state.efer_prot;
		check((cr0p & CR0_PE) && !(cr0p & CR0_PG),
		      "multiboot entry in protected mode, paging off (CR0 0x%llx)", U64(cr0p));
		check(!(efp & (EFER_LME | EFER_LMA)), "EFER.LME/LMA clear at entry (EFER 0x%llx)",
		      U64(efp));
		check((boot_state.efer_compat & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA),
		      "after CR0.PG with LME: EFER.LMA set before the far jump (EFER 0x%llx)",
		      U64(boot_state.efer_compat));
		check((boot_state.cr0_long & (CR0_PE | CR0_PG)) == (CR0_PE | CR0_PG),
		      "CR0 in long mode 0x%llx: PE, PG", U64(boot_state.cr0_long));
		check(boot_state.cr4_long & CR4_PAE, "CR4 in long mode 0x%llx: PAE",
		      U64(boot_state.cr4_long));
		check((boot_state.efer_long & (EFER_LME | EFER_LMA | EFER_NXE)) ==
			      (EFER_LME | EFER_LMA | EFER_NXE),
		      "EFER in 64-bit mode 0x%llx: LME, LMA, NXE", U64(boot_state.efer_long));
	}
	if (want("long_mode")) {
		uint16_t cs;
		__asm__ volatile("mov %%cs, %0" : "=r"(cs));
		check(cs == SEL_KCODE, "CS is 0x%x", cs);
		uint32_t eax;
		__asm__ volatile("xorl %0, %0\n .byte 0x48\n nop" : "=a"(eax));
		check(eax == 0, "0x48 is a REX prefix in 64-bit mode (EAX %u)", eax);
		uint64_t x = 0x123456789abcdefull, y;
		__asm__ volatile("rolq $8, %0" : "=r"(y) : "0"(x));
		check(y == 0x23456789abcdef01ull, "64-bit register arithmetic: 0x%llx", U64(y));
		check(READ_CR(3) == (uint64_t)boot_pml4, "CR3 reads back 0x%llx", U64(READ_CR(3)));
		uint64_t cr4 = READ_CR(4);
		WRITE_CR(4, cr4 | CR4_OSFXSR | CR4_PGE);
		check((READ_CR(4) & (CR4_OSFXSR | CR4_PGE)) == (CR4_OSFXSR | CR4_PGE),
		      "CR4 OSFXSR|PGE set and read back (0x%llx)", U64(READ_CR(4)));
		WRITE_CR(4, cr4);
		check(READ_CR(4) == cr4, "CR4 restored (0x%llx)", U64(READ_CR(4)));
		uint64_t cr0 = READ_CR(0);
		WRITE_CR(0, cr0 ^ CR0_WP);
		check((READ_CR(0) ^ cr0) == CR0_WP, "CR0.WP toggles (0x%llx)", U64(READ_CR(0)));
		WRITE_CR(0, cr0);
		check(rdmsr(MSR_EFER) & EFER_LMA, "EFER.LMA set");
	}
	if (want("lar")) {
		uint32_t ar = lar(SEL_KCODE);
		check((ar & (1u << 21)) && !(ar & (1u << 22)), "LAR CS: L=1 D=0 (0x%x)", ar);
		check(!(lar(SEL_KCODE32) & (1u << 21)) && (lar(SEL_KCODE32) & (1u << 22)),
		      "LAR 0x08: L=0 D=1 (0x%x)", lar(SEL_KCODE32));
	}
	if (want("cr_checks")) {
		uint64_t cr0 = READ_CR(0), cr3 = READ_CR(3), cr4 = READ_CR(4), efer = rdmsr(MSR_EFER);
		refused("clearing CR0.PG in 64-bit mode", f_wcr0, f_wcr0_at, cr0 & ~CR0_PG);
		refused("CR0.NW without CR0.CD", f_wcr0, f_wcr0_at, (cr0 | (1ull << 29)) & ~(1ull << 30));
		refused("clearing CR4.PAE in long mode", f_wcr4, f_wcr4_at, cr4 & ~CR4_PAE);
		refused("CR3 bit 55 (reserved)", f_wcr3, f_wcr3_at, cr3 | (1ull << 55));
		refused("clearing EFER.LME while paging", f_wefer, f_wefer_at, efer & ~EFER_LME);
		check(READ_CR(0) == cr0 && READ_CR(3) == cr3 && READ_CR(4) == cr4 &&
			      rdmsr(MSR_EFER) == efer,
		      "CR0, CR3, CR4, EFER unchanged");
	}
	if (want("cr_reserved")) {
		uint64_t cr0 = READ_CR(0), cr4 = READ_CR(4);
		refused("CR0 bit 32 (reserved)", f_wcr0, f_wcr0_at, cr0 | (1ull << 32));
		refused("CR4 bit 32 (reserved)", f_wcr4, f_wcr4_at, cr4 | (1ull << 32));
		check(READ_CR(0) == cr0 && READ_CR(4) == cr4, "CR0, CR4 unchanged");
	}
	if (want("compat_mode")) {
		memset((void *)modes_seen, 0, 48);
		modes_trip(0);
		check(modes_seen[0] == 0xffffffffu, "0x48 is DEC EAX in the 32-bit segment (EAX 0x%x)",
		      modes_seen[0]);
		check(modes_seen[1] == SEL_KCODE32, "compatibility mode CS 0x%x", modes_seen[1]);
		check((modes_seen[2] & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA),
		      "EFER.LMA still set in compatibility mode (0x%x)", modes_seen[2]);
		check(modes_seen[10] == 0x23456789u && modes_seen[11] == 1,
		      "far return to 64-bit code: MOVABS works again");
	}
	if (want("leave_long_mode")) {
		memset((void *)modes_seen, 0, 48);
		modes_trip(1);
		check((modes_seen[3] & (EFER_LME | EFER_LMA)) == EFER_LME,
		      "paging off in compatibility mode: EFER.LMA clears, LME stays (0x%x)",
		      modes_seen[3]);
		check(!(modes_seen[4] & EFER_LME), "EFER.LME cleared (0x%x)", modes_seen[4]);
		check((modes_seen[5] & (CR0_PE | CR0_PG)) == CR0_PE,
		      "legacy protected mode: CR0 0x%x (PE, no PG)", modes_seen[5]);
		check((modes_seen[7] & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA),
		      "LME + PG again: EFER.LMA set (0x%x)", modes_seen[7]);
		check(modes_seen[10] == 0x23456789u && modes_seen[11] == 1, "back in 64-bit code");
	}
	if (want("real_mode")) {
		memcpy((void *)RM_BASE, rm_blob, (size_t)(rm_blob_end - rm_blob));
		base16(SEL_CODE16, 0x9a);
		base16(SEL_DATA16, 0x92);
		memset((void *)modes_seen, 0, 48);
		modes_trip(3);
		check(RM_VAR(uint16_t, rm_done) == 1, "reached real mode through a 16-bit segment");
		check(!(RM_VAR(uint32_t, rm_cr0) & CR0_PE), "real mode CR0 0x%x (PE clear)",
		      RM_VAR(uint32_t, rm_cr0));
		check(RM_VAR(uint16_t, rm_seg) == 0xbeef,
		      "real-mode segments: ES 0x1100:0 is DS 0x1000:0x1000 (0x%x)",
		      RM_VAR(uint16_t, rm_seg));
		check(RM_VAR(uint16_t, rm_push) == 0x1234 && RM_VAR(uint16_t, rm_sp) == 0xf00,
		      "16-bit PUSH/POP: 0x%x, SP 0x%x", RM_VAR(uint16_t, rm_push),
		      RM_VAR(uint16_t, rm_sp));
		check(RM_VAR(uint32_t, rm_op32) == 0x12345678u,
		      "32-bit operand in real mode: 0x%x", RM_VAR(uint32_t, rm_op32));
		check(modes_seen[6] & CR0_PE, "back in protected mode (CR0 0x%x)", modes_seen[6]);
		check((modes_seen[7] & EFER_LMA) && modes_seen[10] == 0x23456789u,
		      "and back in 64-bit mode (EFER 0x%x)", modes_seen[7]);
	}
	sys_finish();
}
