#include <errno.h>
#include "arch/x86/boot_priv.h"
long multiboot_find_header(const uint8_t *img, size_t size) { (void)img; (void)size; return -1; }
int boot_multiboot(struct boot_ctx *ctx, size_t off) { (void)ctx; (void)off; return -ENOSYS; }
