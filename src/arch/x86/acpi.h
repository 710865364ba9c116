#ifndef KITE_ARCH_X86_ACPI_H
#define KITE_ARCH_X86_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"

/* Write RSDP, XSDT, FADT (+FACS), DSDT, MADT and MCFG for nr_cpus vCPUs
 * into [LAYOUT_ACPI_START, LAYOUT_ACPI_END). Returns 0 or a negative errno
 * (-EINVAL for nr_cpus outside 1..255, -EFAULT when the area is not RAM).
 * On success *rsdp_addr holds the RSDP's guest-physical address (for
 * boot_params.acpi_rsdp_addr): LAYOUT_ACPI_START. */
int acpi_build(struct guest_memory *mem, unsigned nr_cpus, uint64_t *rsdp_addr);

uint8_t acpi_checksum(const void *data, size_t len);

/* What the tables promise (the devices implement it). */
#define ACPI_SCI_IRQ   9
#define ACPI_OEM_ID    "KITE  "
#define ACPI_OEM_TABLE "KITEVM  "
#define ACPI_CMOS_CENTURY 0x32

#endif
