/* Shared between the loaders (boot.c, boot_linux.c, boot_multiboot.c) and
 * their unit tests; not part of kite's interface. */
#ifndef KITE_ARCH_X86_BOOT_PRIV_H
#define KITE_ARCH_X86_BOOT_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/boot.h"

/* CPUID leaf 1 EAX reported in EDX at reset: family 6, model 6, stepping 3,
 * the signature of QEMU's generic qemu64 CPU model. */
#define KITE_CPU_SIGNATURE 0x00000663u

/* GDT written at LAYOUT_BOOT_GDT. The Linux boot protocol wants __BOOT_CS
 * 0x10 and __BOOT_DS 0x18; the same selectors serve the 32-bit entries. */
#define BOOT_SEL_CODE32 0x08
#define BOOT_SEL_CODE   0x10
#define BOOT_SEL_DATA   0x18
#define BOOT_SEL_TSS    0x20

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

struct boot_ctx {
	struct guest_memory *mem;
	const struct vm_config *cfg;
	const char *kernel_path;
	const uint8_t *kernel;
	size_t kernel_size;
	const char *initrd_path; /* NULL: no initrd */
	const uint8_t *initrd;
	size_t initrd_size;
	struct cpu_state *cpu;
	char *err;
	size_t err_len;
};

/* The loader proper, on images already in memory (what the tests call). */
int x86_boot_load_image(struct boot_ctx *ctx);

int boot_error(struct boot_ctx *ctx, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Format probes and loaders. */
int boot_bzimage(struct boot_ctx *ctx);
bool elf64_probe(const uint8_t *img, size_t size);
int boot_elf64(struct boot_ctx *ctx);
/* Offset of a valid-magic multiboot header in the first 8 KiB, or -1. */
long multiboot_find_header(const uint8_t *img, size_t size);
int boot_multiboot(struct boot_ctx *ctx, size_t hdr_off);

/* An ELF executable loaded from its PT_LOAD program headers at their
 * physical addresses (p_paddr). */
struct boot_elf {
	uint64_t lo, hi;     /* guest-physical range the segments cover */
	uint64_t entry;      /* e_entry, translated to physical when it lies in
			      * a segment linked at a different virtual address */
	bool is64;
	bool has_pvh;        /* XEN_ELFNOTE_PHYS32_ENTRY note present */
	uint32_t pvh_entry;
};
/* Loads ELF32 (when allow32) or ELF64 x86 executables; every offset, size
 * and destination is checked against the file and guest RAM (destinations
 * must be at or above 1 MiB and below 4 GiB). */
int boot_load_elf(struct boot_ctx *ctx, bool allow32, struct boot_elf *out);
/* 0 when [addr, addr+len) is guest RAM at or above 1 MiB and below 4 GiB,
 * else an error naming `what`. */
int boot_check_dest(struct boot_ctx *ctx, uint64_t addr, uint64_t len, const char *what);

/* Helpers shared by the loaders. */
int boot_write_gdt(struct guest_memory *mem, bool long_mode);
int boot_write_page_tables(struct guest_memory *mem);
void boot_enter_prot32(struct cpu_state *s, uint32_t eip);
void boot_enter_long64(struct cpu_state *s, uint64_t rip);
/* Writes cfg->cmdline (NUL-terminated) at LAYOUT_CMDLINE; max_len counts
 * the NUL. Returns its length without the NUL, or a negative errno. */
long boot_write_cmdline(struct boot_ctx *ctx, uint64_t max_len);
/* Copies the initrd to the highest page-aligned address in [lo, hi) where
 * it fits in RAM. Returns 0 and *addr, or an error naming the initrd. */
int boot_place_initrd(struct boot_ctx *ctx, uint64_t lo, uint64_t hi, uint64_t *addr);

#endif
