#include <criterion/criterion.h>

#include "arch/x86/boot_priv.h"

Test(boot_reset, bsp_is_in_real_mode_at_fffffff0)
{
	struct cpu_state s;
	x86_reset_state(&s, 0);
	cr_assert_eq(s.seg[SEG_CS].selector, 0xF000);
	cr_assert_eq(s.seg[SEG_CS].base, 0xFFFF0000);
	cr_assert_eq(s.seg[SEG_CS].limit, 0xFFFF);
	cr_assert_eq(s.seg[SEG_CS].base + s.rip, 0xFFFFFFF0);
	cr_assert(s.seg[SEG_CS].present && s.seg[SEG_CS].s);
	cr_assert_eq(s.seg[SEG_CS].type, 0xB);
	cr_assert_eq(s.rip, 0xFFF0);
	cr_assert_eq(s.cr0, 0x60000010);
	cr_assert_eq(s.cr3, 0);
	cr_assert_eq(s.cr4, 0);
	cr_assert_eq(s.efer, 0);
	cr_assert_eq(s.rflags, 2);
	for (int i = SEG_ES; i <= SEG_GS; i++) {
		if (i == SEG_CS)
			continue;
		cr_assert_eq(s.seg[i].selector, 0);
		cr_assert_eq(s.seg[i].base, 0);
		cr_assert_eq(s.seg[i].limit, 0xFFFF);
		cr_assert_eq(s.seg[i].type, 0x3, "segment %d: read/write, accessed", i);
		cr_assert(s.seg[i].present && s.seg[i].s && !s.seg[i].unusable);
	}
	cr_assert_eq(s.seg[SEG_LDTR].type, 2);
	cr_assert_eq(s.seg[SEG_TR].type, 11);
	cr_assert_eq(s.gdt.limit, 0xFFFF);
	cr_assert_eq(s.idt.limit, 0xFFFF);
	cr_assert_eq(s.gpr[RDX], KITE_CPU_SIGNATURE);
	cr_assert_eq((s.gpr[RDX] >> 8) & 0xF, 6, "family 6");
	cr_assert_eq(s.gpr[RAX], 0);
	cr_assert_eq(s.dr[6], 0xFFFF0FF0);
	cr_assert_eq(s.dr[7], 0x400);
	cr_assert_eq(s.msr.apic_base, 0xFEE00900);
	cr_assert_eq(s.msr.pat, 0x0007040600070406ULL);
	cr_assert_eq(s.fx.fcw, 0x37F);
	cr_assert_eq(s.fx.mxcsr, 0x1F80);
	cr_assert_eq(s.xcr0, 1);
	cr_assert(!s.halted && !s.wait_for_sipi);
}

Test(boot_reset, aps_are_not_bsp)
{
	struct cpu_state s;
	x86_reset_state(&s, 3);
	cr_assert_eq(s.msr.apic_base, 0xFEE00800);
	cr_assert_eq(s.rip, 0xFFF0);
}
