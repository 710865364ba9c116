/* Kernel loaders. x86_boot_load reads the kernel named in the config,
 * recognises its format (Linux bzImage, ELF vmlinux with 64-bit or PVH
 * entry, multiboot v1), writes it, the initrd, the command line and the
 * boot structures into guest memory, and fills the boot vCPU's state. */
#ifndef KITE_ARCH_X86_BOOT_H
#define KITE_ARCH_X86_BOOT_H

#include <stddef.h>

#include "arch/x86/cpu_state.h"
#include "vmm/config.h"
#include "vmm/memory.h"

/* Returns 0, or a negative errno with a one-line message for the user in
 * err (naming the file and, for an unknown format, what kite accepts). */
int x86_boot_load(struct guest_memory *mem, const struct vm_config *cfg,
		  struct cpu_state *bsp, char *err, size_t err_len);

/* The state every vCPU starts from at reset (real mode, CS:IP F000:FFF0),
 * which the loaders then adjust. Also what APs sit in before INIT/SIPI. */
void x86_reset_state(struct cpu_state *s, unsigned apic_id);

#endif
