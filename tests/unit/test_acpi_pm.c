#include <criterion/criterion.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/post_port.h"
#include "fake_vm.h"

static struct vm vm;
static struct vm_config cfg;
static struct fake_engine fe;
static struct acpi_pm *pm;

static void setup(void)
{
	fake_vm_init(&vm, &cfg, &fe, 0);
	cr_assert_eq(acpi_pm_create(&vm, &pm), 0);
	cr_assert_eq(post_port_create(&vm, NULL), 0);
}

static void teardown(void)
{
	vm_destroy(&vm);
}

TestSuite(acpi_pm, .init = setup, .fini = teardown);

Test(acpi_pm, sci_en_always_set)
{
	cr_assert_eq(pio_in(&vm, PORT_ACPI_PM1_CNT, 2) & ACPI_PM1_CNT_SCI_EN, ACPI_PM1_CNT_SCI_EN);
	pio_out(&vm, PORT_ACPI_PM1_CNT, 2, 0);
	cr_assert_eq(pio_in(&vm, PORT_ACPI_PM1_CNT, 2) & ACPI_PM1_CNT_SCI_EN, ACPI_PM1_CNT_SCI_EN);
}

Test(acpi_pm, s5_powers_off)
{
	/* Another sleep type is ignored. */
	pio_out(&vm, PORT_ACPI_PM1_CNT, 2, (1 << ACPI_PM1_CNT_SLP_TYP_SHIFT) | ACPI_PM1_CNT_SLP_EN);
	cr_assert_eq(stop_reason(&vm), VM_RUNNING);
	/* SLP_TYP without SLP_EN does nothing yet. */
	pio_out(&vm, PORT_ACPI_PM1_CNT, 2, ACPI_PM_SLP_TYP_S5 << ACPI_PM1_CNT_SLP_TYP_SHIFT);
	cr_assert_eq(stop_reason(&vm), VM_RUNNING);
	cr_assert_eq(pio_in(&vm, PORT_ACPI_PM1_CNT, 2) & ACPI_PM1_CNT_SLP_EN, 0);
	/* ACPICA writes SLP_TYP then SLP_TYP|SLP_EN, as 16-bit writes. */
	pio_out(&vm, PORT_ACPI_PM1_CNT, 2,
		(ACPI_PM_SLP_TYP_S5 << ACPI_PM1_CNT_SLP_TYP_SHIFT) | ACPI_PM1_CNT_SLP_EN);
	cr_assert_eq(stop_reason(&vm), VM_STOP_POWEROFF);
}

Test(acpi_pm, s5_by_byte_writes)
{
	pio_out(&vm, PORT_ACPI_PM1_CNT, 1, 0);
	pio_out(&vm, PORT_ACPI_PM1_CNT + 1, 1,
		((ACPI_PM_SLP_TYP_S5 << ACPI_PM1_CNT_SLP_TYP_SHIFT) | ACPI_PM1_CNT_SLP_EN) >> 8);
	cr_assert_eq(stop_reason(&vm), VM_STOP_POWEROFF);
}

Test(acpi_pm, status_is_write_one_to_clear)
{
	uint8_t blob[16] = { 1 };
	/* Put bits in through restore (no event source sets them). */
	uint16_t regs[3] = { ACPI_PM1_STS_TMR | ACPI_PM1_STS_PWRBTN, 0, 0 };
	memcpy(blob + 1, regs, sizeof(regs));
	cr_assert_eq(acpi_pm_ops.save(pm, NULL, 0), 1 + sizeof(regs));
	cr_assert_eq(acpi_pm_ops.restore(pm, blob, 1 + sizeof(regs)), 0);
	cr_assert_eq(pio_in(&vm, PORT_ACPI_PM1_EVT, 2), ACPI_PM1_STS_TMR | ACPI_PM1_STS_PWRBTN);
	pio_out(&vm, PORT_ACPI_PM1_EVT, 2, ACPI_PM1_STS_TMR);
	cr_assert_eq(pio_in(&vm, PORT_ACPI_PM1_EVT, 2), ACPI_PM1_STS_PWRBTN);
	pio_out(&vm, PORT_ACPI_PM1_EVT + 2, 2, 0x0121);
	cr_assert_eq(pio_in(&vm, PORT_ACPI_PM1_EVT + 2, 2), 0x0121, "enable is plain read/write");
	cr_assert_eq(pio_in(&vm, PORT_ACPI_PM1_EVT, 4), 0x01210000u | ACPI_PM1_STS_PWRBTN);
	acpi_pm_ops.reset(pm);
	cr_assert_eq(pio_in(&vm, PORT_ACPI_PM1_EVT, 4), 0);
}

Test(acpi_pm, timer_runs_at_3_58_mhz)
{
	uint32_t a = (uint32_t)pio_in(&vm, PORT_ACPI_PM_TMR, 4);
	usleep(20000);
	uint32_t b = (uint32_t)pio_in(&vm, PORT_ACPI_PM_TMR, 4);
	cr_assert_eq(a & ~0xFFFFFFu, 0, "24 bits");
	uint32_t ticks = (b - a) & 0xFFFFFF;
	/* 20 ms is 71591 ticks; allow a slow, busy machine. */
	cr_assert(ticks >= 71000 && ticks < 71591 * 20, "ticks %u", ticks);
	pio_out(&vm, PORT_ACPI_PM_TMR, 4, 0);
	cr_assert_neq(pio_in(&vm, PORT_ACPI_PM_TMR, 4), 0, "read-only");
}

Test(acpi_pm, post_port_sink)
{
	pio_out(&vm, PORT_POST, 1, 0x42);
	cr_assert_eq(pio_in(&vm, PORT_POST, 1), 0x42);
	cr_assert_eq(stop_reason(&vm), VM_RUNNING);
}
