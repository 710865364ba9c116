/* ACPI fixed-hardware PM registers (the FADT points here):
 *   PM1a_EVT_BLK 0x600: PM1_STS (2 bytes, write 1 to clear), PM1_EN (2)
 *   PM1a_CNT_BLK 0x604: PM1_CNT (2): SCI_EN reads 1 (SMI_CMD is 0: ACPI is
 *                       always on); SLP_EN with SLP_TYP = ACPI_PM_SLP_TYP_S5
 *                       powers off; other sleep states are ignored.
 *   PM_TMR_BLK   0x608: PM timer (4), 24 bits at 3.579545 MHz from
 *                       CLOCK_MONOTONIC. */
#ifndef KITE_DEVICES_LEGACY_ACPI_PM_H
#define KITE_DEVICES_LEGACY_ACPI_PM_H

#include <stdint.h>

#include "vmm/device.h"

struct vm;
struct acpi_pm;

/* The SLP_TYP value of \_S5 in the DSDT (arch/x86/acpi.c uses it). */
#define ACPI_PM_SLP_TYP_S5 5
#define ACPI_PM_TIMER_HZ 3579545ULL

#define ACPI_PM1_STS_TMR    0x0001
#define ACPI_PM1_STS_PWRBTN 0x0100
#define ACPI_PM1_STS_WAK    0x8000
#define ACPI_PM1_CNT_SCI_EN 0x0001
#define ACPI_PM1_CNT_SLP_TYP_SHIFT 10
#define ACPI_PM1_CNT_SLP_EN 0x2000

int acpi_pm_create(struct vm *vm, struct acpi_pm **out);
extern const struct device_ops acpi_pm_ops;

#endif
