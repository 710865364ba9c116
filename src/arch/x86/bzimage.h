/* The Linux x86 boot protocol's setup header (Documentation/x86/boot.rst):
 * where its fields sit in a bzImage and in boot_params (the "zero page"),
 * and a parser that checks a bzImage against what kite's 64-bit loader
 * needs. Pure: no guest memory, no I/O, so tests can run it on any image. */
#ifndef KITE_ARCH_X86_BZIMAGE_H
#define KITE_ARCH_X86_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Setup header offsets (identical in the file and in boot_params). */
#define BZ_SETUP_SECTS      0x1F1
#define BZ_SYSSIZE          0x1F4
#define BZ_VID_MODE         0x1FA
#define BZ_BOOT_FLAG        0x1FE
#define BZ_JUMP             0x200
#define BZ_HEADER           0x202
#define BZ_VERSION          0x206
#define BZ_TYPE_OF_LOADER   0x210
#define BZ_LOADFLAGS        0x211
#define BZ_CODE32_START     0x214
#define BZ_RAMDISK_IMAGE    0x218
#define BZ_RAMDISK_SIZE     0x21C
#define BZ_HEAP_END_PTR     0x224
#define BZ_CMD_LINE_PTR     0x228
#define BZ_INITRD_ADDR_MAX  0x22C
#define BZ_KERNEL_ALIGNMENT 0x230
#define BZ_RELOCATABLE      0x234
#define BZ_MIN_ALIGNMENT    0x235
#define BZ_XLOADFLAGS       0x236
#define BZ_CMDLINE_SIZE     0x238
#define BZ_PAYLOAD_OFFSET   0x248
#define BZ_PAYLOAD_LENGTH   0x24C
#define BZ_PREF_ADDRESS     0x258
#define BZ_INIT_SIZE        0x260
#define BZ_HEADER_MIN_END   0x264 /* through init_size: all kite reads */
#define BZ_HEADER_MAX_END   0x280 /* setup header never extends past this */

/* boot_params fields outside the setup header. */
#define BP_ACPI_RSDP_ADDR    0x070
#define BP_EXT_RAMDISK_IMAGE 0x0C0
#define BP_EXT_RAMDISK_SIZE  0x0C4
#define BP_EXT_CMD_LINE_PTR  0x0C8
#define BP_ALT_MEM_K         0x1E0
#define BP_E820_ENTRIES      0x1E8
#define BP_E820_TABLE        0x2D0
#define BP_E820_MAX          128
#define BP_SIZE              0x1000

#define BZ_BOOT_FLAG_MAGIC   0xAA55
#define BZ_HEADER_MAGIC      0x53726448u /* "HdrS" */
#define BZ_MIN_VERSION       0x020C      /* 2.12: xloadflags, 64-bit entry */

#define LOADED_HIGH   (1u << 0)
#define CAN_USE_HEAP  (1u << 7)
#define XLF_KERNEL_64 (1u << 0)
#define XLF_CAN_BE_LOADED_ABOVE_4G (1u << 1)

struct bzimage_hdr {
	unsigned setup_sects;   /* 0 in the file means 4 */
	uint32_t syssize;       /* protected-mode code, 16-byte units */
	uint16_t version;
	uint8_t loadflags;
	uint32_t initrd_addr_max;
	uint32_t kernel_alignment;
	bool relocatable;
	uint8_t min_alignment;
	uint16_t xloadflags;
	uint32_t cmdline_size;
	uint32_t payload_offset, payload_length; /* from the protected-mode start */
	uint64_t pref_address;
	uint32_t init_size;
	size_t setup_size;      /* (setup_sects + 1) * 512: where the kernel starts */
	size_t kernel_size;     /* file bytes after the setup code */
	size_t header_end;      /* end of the setup header (0x202 + jump offset) */
};

/* Recognises a bzImage by its boot sector flag or "HdrS" (and no ELF magic). */
bool bzimage_probe(const uint8_t *img, size_t size);

/* Parses and checks the setup header. Returns 0, or -ENOEXEC with a reason
 * (without the file name) in why. */
int bzimage_parse(const uint8_t *img, size_t size, struct bzimage_hdr *h,
		  char *why, size_t why_len);

#endif
