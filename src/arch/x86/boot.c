/* Placeholder until the loaders land. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "arch/x86/boot.h"

int x86_boot_load(struct guest_memory *mem, const struct vm_config *cfg,
		  struct cpu_state *bsp, char *err, size_t err_len)
{
	(void)mem; (void)bsp;
	snprintf(err, err_len, "cannot load '%s': no loader built yet", cfg->kernel_path);
	return -ENOSYS;
}

void x86_reset_state(struct cpu_state *s, unsigned apic_id)
{
	(void)apic_id;
	memset(s, 0, sizeof(*s));
}
