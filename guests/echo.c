/* echo: register echo through kite's test device, over port I/O (byte,
 * word, dword, string I/O) and MMIO (byte, word, dword). Prints one line
 * per check and exits GUEST_OK when all pass, GUEST_FAIL otherwise. */
#include "lib/runtime.h"

#define REG_ECHO   0x00
#define REG_ID     0x10
#define REG_COUNT  0x14
#define REG_INVERT 0x18

static int failures;

static void check(const char *what, uint32_t got, uint32_t want)
{
	if (got == want) {
		printf("echo: %s ok\n", what);
	} else {
		printf("echo: %s FAILED: got 0x%x want 0x%x\n", what, got, want);
		failures++;
	}
}

static void pio_tests(void)
{
	check("pio id", inl(TESTDEV_PIO + REG_ID), TESTDEV_ID);
	uint32_t count0 = inl(TESTDEV_PIO + REG_COUNT);
	outb(TESTDEV_PIO + REG_ECHO, 0x5a);
	check("pio byte", inb(TESTDEV_PIO + REG_ECHO), 0x5a);
	outw(TESTDEV_PIO + REG_ECHO + 2, 0xbeef);
	check("pio word", inw(TESTDEV_PIO + REG_ECHO + 2), 0xbeef);
	outl(TESTDEV_PIO + REG_ECHO + 4, 0xcafef00d);
	check("pio dword", inl(TESTDEV_PIO + REG_ECHO + 4), 0xcafef00d);
	check("pio bytes land in place", inl(TESTDEV_PIO + REG_ECHO), 0xbeef005a);
	outl(TESTDEV_PIO + REG_INVERT, 0x12345678);
	check("pio invert", inl(TESTDEV_PIO + REG_INVERT), ~0x12345678u);
	check("pio write count", inl(TESTDEV_PIO + REG_COUNT) - count0, 4);

	/* string I/O: rep outsb sends 8 bytes to one port (the last stays),
	 * rep insl reads the ID register 4 times. */
	static const char src[8] = "ABCDEFGH";
	uint32_t count1 = inl(TESTDEV_PIO + REG_COUNT);
	const void *s = src;
	uint32_t n = sizeof(src);
	__asm__ volatile("rep outsb" : "+S"(s), "+c"(n) : "d"(TESTDEV_PIO + REG_ECHO + 8) : "memory");
	check("pio rep outsb count", inl(TESTDEV_PIO + REG_COUNT) - count1, 8);
	check("pio rep outsb last byte", inb(TESTDEV_PIO + REG_ECHO + 8), 'H');
	uint32_t ids[4] = { 0, 0, 0, 0 };
	void *d = ids;
	n = 4;
	__asm__ volatile("rep insl" : "+D"(d), "+c"(n) : "d"(TESTDEV_PIO + REG_ID) : "memory");
	check("pio rep insl", ids[0] == TESTDEV_ID && ids[1] == TESTDEV_ID &&
	      ids[2] == TESTDEV_ID && ids[3] == TESTDEV_ID, 1);
	/* a port nobody claims reads all ones */
	check("pio unclaimed port", inb(0x0530), 0xff);
}

static void mmio_tests(void)
{
	check("mmio id", mmio_read32(TESTDEV_MMIO + REG_ID), TESTDEV_ID);
	uint32_t count0 = mmio_read32(TESTDEV_MMIO + REG_COUNT);
	mmio_write8(TESTDEV_MMIO + REG_ECHO, 0xa5);
	check("mmio byte", mmio_read8(TESTDEV_MMIO + REG_ECHO), 0xa5);
	mmio_write16(TESTDEV_MMIO + REG_ECHO + 2, 0x1234);
	check("mmio word", mmio_read16(TESTDEV_MMIO + REG_ECHO + 2), 0x1234);
	mmio_write32(TESTDEV_MMIO + REG_ECHO + 12, 0xdeadbeef);
	check("mmio dword", mmio_read32(TESTDEV_MMIO + REG_ECHO + 12), 0xdeadbeef);
	mmio_write32(TESTDEV_MMIO + REG_INVERT, 0x0f0f0f0f);
	check("mmio invert", mmio_read32(TESTDEV_MMIO + REG_INVERT), 0xf0f0f0f0);
	check("mmio write count", mmio_read32(TESTDEV_MMIO + REG_COUNT) - count0, 4);
	/* the PIO and MMIO instances are separate devices */
	check("mmio independent of pio", mmio_read8(TESTDEV_MMIO + REG_ECHO + 8), 0);
	/* an access crossing the end of the echo register is rejected */
	check("mmio crossing access", mmio_read32(TESTDEV_MMIO + REG_ECHO + 14), 0xffffffff);
}

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	pio_tests();
	mmio_tests();
	printf("echo: %s (%d failures)\n", failures ? "FAILED" : "all passed", failures);
	guest_exit(failures ? GUEST_FAIL : GUEST_OK);
}
