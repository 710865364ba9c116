#ifndef KITE_UTIL_SIZE_H
#define KITE_UTIL_SIZE_H

#include <stdint.h>

/* Parse a memory size: "256M", "1G", "512K", "4096B"... or a plain number,
 * which means MiB (as QEMU's -m). Returns 0 and the size in bytes, or
 * -EINVAL for malformed text, -ERANGE for a size that overflows 64 bits. */
int parse_size_mib_default(const char *text, uint64_t *bytes);

#endif
