#ifndef KITE_ARCH_X86_ACPI_H
#define KITE_ARCH_X86_ACPI_H

#include <stdint.h>

#include "vmm/memory.h"

/* Write RSDP, XSDT, FADT (+FACS), DSDT and MADT for nr_cpus vCPUs into
 * [LAYOUT_ACPI_START, LAYOUT_ACPI_END). Returns 0 or a negative errno. On
 * success *rsdp_addr holds the RSDP's guest-physical address (for
 * boot_params.acpi_rsdp_addr). */
int acpi_build(struct guest_memory *mem, unsigned nr_cpus, uint64_t *rsdp_addr);

uint8_t acpi_checksum(const void *data, size_t len);

#endif
