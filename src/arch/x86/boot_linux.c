#include <errno.h>
#include "arch/x86/boot_priv.h"
bool bzimage_probe(const uint8_t *img, size_t size) { (void)img; (void)size; return false; }
int boot_bzimage(struct boot_ctx *ctx) { (void)ctx; return -ENOSYS; }
bool elf64_probe(const uint8_t *img, size_t size) { (void)img; (void)size; return false; }
int boot_elf64(struct boot_ctx *ctx) { (void)ctx; return -ENOSYS; }
