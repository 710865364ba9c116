/* The test guests' runtime: port and MMIO access, COM1 output, a small
 * printf, the multiboot info, and the debug-exit port. Freestanding. */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

/* Exit statuses the integration tests assert: kite exits with (v<<1)|1. */
#define GUEST_OK        0x10 /* kite exits 33 */
#define GUEST_FAIL      0x7e /* kite exits 253 */
#define GUEST_BAD_BOOT  0x7d /* wrong magic or info: kite exits 251 */

/* Port of the register-echo device and its MMIO page (see kite's
 * src/devices/legacy/test_device.h). */
#define TESTDEV_PIO  0x0500
#define TESTDEV_MMIO 0xFEB00000u
#define TESTDEV_ID   0x4B495445u

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr;
} __attribute__((packed));

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline void mmio_write32(uint32_t addr, uint32_t v) { *(volatile uint32_t *)addr = v; }
static inline uint32_t mmio_read32(uint32_t addr) { return *(volatile uint32_t *)addr; }
static inline void mmio_write16(uint32_t addr, uint16_t v) { *(volatile uint16_t *)addr = v; }
static inline uint16_t mmio_read16(uint32_t addr) { return *(volatile uint16_t *)addr; }
static inline void mmio_write8(uint32_t addr, uint8_t v) { *(volatile uint8_t *)addr = v; }
static inline uint8_t mmio_read8(uint32_t addr) { return *(volatile uint8_t *)addr; }

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

void serial_init(void);
void putc(char c);
void puts(const char *s);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
size_t strlen(const char *s);
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* Write v to the debug-exit port: kite ends with status (v<<1)|1. */
__attribute__((noreturn)) void guest_exit(uint32_t v);

/* Each guest defines this; the runtime checks the boot magic first. */
__attribute__((noreturn)) void guest_main(const struct multiboot_info *mbi);

#endif
