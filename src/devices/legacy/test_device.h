/* A register-echo device for test guests, on port I/O and MMIO, created
 * only with --debug-exit (test runs). Two independent instances share the
 * same register layout:
 *
 *   PIO  ports 0x0500..0x051F   (TEST_DEVICE_PIO_BASE, 32 ports)
 *   MMIO 0xFEB00000..0xFEB00FFF (TEST_DEVICE_MMIO_BASE, one page in the
 *        PCI hole, below the IOAPIC; nothing else lives there)
 *
 * Registers (offsets from the base; little-endian):
 *   0x00..0x0F  ECHO    16 bytes of scratch: any access of 1, 2, 4 or 8
 *                       bytes inside it stores / returns those bytes
 *   0x10        ID      read-only 32-bit 0x4B495445 ("KITE" as a number)
 *   0x14        COUNT   read-only: number of writes the device accepted
 *   0x18        INVERT  write v, read back ~v (proves the device computed
 *                       the value rather than memory echoing it)
 *   elsewhere           reads 0, writes ignored (counted as rejected)
 * An access that crosses the end of a register reads all ones and is
 * ignored on write: the guest controls offsets and sizes. */
#ifndef KITE_DEVICES_LEGACY_TEST_DEVICE_H
#define KITE_DEVICES_LEGACY_TEST_DEVICE_H

#define TEST_DEVICE_PIO_BASE  0x0500
#define TEST_DEVICE_PIO_LEN   0x20
#define TEST_DEVICE_MMIO_BASE 0xFEB00000ULL
#define TEST_DEVICE_MMIO_LEN  0x1000
#define TEST_DEVICE_ID        0x4B495445u

#define TEST_DEVICE_REG_ECHO   0x00
#define TEST_DEVICE_ECHO_LEN   0x10
#define TEST_DEVICE_REG_ID     0x10
#define TEST_DEVICE_REG_COUNT  0x14
#define TEST_DEVICE_REG_INVERT 0x18

#include <pthread.h>
#include <stdint.h>

struct vm;

/* One instance; public so unit tests can drive the callbacks directly. */
struct test_device {
	pthread_mutex_t lock;
	struct test_device_regs {
		uint8_t echo[TEST_DEVICE_ECHO_LEN];
		uint32_t count;
		uint64_t invert;
	} regs;
};

void test_device_init(struct test_device *d);
void test_device_fini(struct test_device *d);
/* Bus callbacks; opaque is a struct test_device. */
uint64_t test_device_read(void *opaque, uint64_t offset, unsigned size);
void test_device_write(void *opaque, uint64_t offset, unsigned size, uint64_t value);

/* Create both instances (PIO and MMIO) and register them. 0 or -errno. */
int test_device_create(struct vm *vm);

#endif
