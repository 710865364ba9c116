/* Placeholder until the ACPI tables land. */
#include <errno.h>

#include "arch/x86/acpi.h"

int acpi_build(struct guest_memory *mem, unsigned nr_cpus, uint64_t *rsdp_addr)
{
	(void)mem; (void)nr_cpus; (void)rsdp_addr;
	return -ENOSYS;
}
