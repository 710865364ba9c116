/* ivshmem: a driver-less guest for kite's ivshmem device (1af4:1110).
 * Command line (one role):
 *   role=write seed=S      fill the whole shared BAR2 with bytes from seed S
 *   role=read seed=S       check the whole BAR2 holds seed S's bytes
 *   role=wait count=K      doorbell mode: announce this peer in the shared
 *                          memory, then answer K doorbells, each by ringing
 *                          the sender back (vector 0, MSI-X -> vector 32)
 *   role=hostile           ring peers and vectors that do not exist, write the
 *                          read-only and reserved registers, read past BAR2's
 *                          end: kite must drop all of it and keep running
 *   role=ring count=K      doorbell mode: wait for a waiting peer, then ring
 *                          it K times, each time waiting for its answer; prints
 *                          the round trip in TSC ticks (min/median/max)
 * Shared memory layout used by wait/ring (32-bit words at BAR2):
 *   [0] 'REDY' once the waiter is set up  [1] the waiter's IVPosition
 *   [2] the ringer's IVPosition            [3] doorbells the waiter took
 * Prints "ivshmem: ..." lines; exits GUEST_OK, or GUEST_FAIL on a mismatch
 * or a timeout. */
#include "lib/idt.h"
#include "lib/pci.h"
#include "lib/runtime.h"

#define LAPIC_BASE  0xFEE00000u
#define LAPIC_EOI   0x0B0
#define LAPIC_SVR   0x0F0
#define VEC_DOORBELL 32
#define VEC_SPURIOUS 255
#define READY_MAGIC 0x59444552u /* "REDY" */
#define SPIN_LIMIT  400000000u
#define MAX_SAMPLES 256

static uint32_t regs, shm, shm_size, msix_table;
static unsigned dev;
static int msix_cap;
static volatile uint32_t interrupts;
static int waiter;

static const char *arg(const char *cmdline, const char *key)
{
	for (const char *s = cmdline; *s; s++) {
		unsigned k = 0;
		while (key[k] && s[k] == key[k])
			k++;
		if (!key[k] && (s == cmdline || s[-1] == ' '))
			return s + k;
	}
	return NULL;
}

static uint32_t num(const char *s, uint32_t dflt)
{
	if (!s || *s < '0' || *s > '9')
		return dflt;
	uint32_t v = 0;
	while (*s >= '0' && *s <= '9')
		v = v * 10 + (uint32_t)(*s++ - '0');
	return v;
}

static void check(int ok, const char *what)
{
	if (!ok) {
		printf("ivshmem: FAILED: %s\n", what);
		guest_exit(GUEST_FAIL);
	}
}

static volatile uint32_t *word(unsigned i) { return (volatile uint32_t *)(shm + 4 * i); }

static void ring(uint32_t peer)
{
	mmio_write32(regs + 12, (peer << 16) | 0);
}

void isr_common(uint32_t vector, uint32_t error)
{
	if (vector == VEC_SPURIOUS)
		return;
	if (vector != VEC_DOORBELL) {
		printf("ivshmem: unexpected exception %u (error 0x%x)\n", vector, error);
		guest_exit(GUEST_FAIL);
	}
	interrupts++;
	if (waiter) {
		/* answer at once, from the handler: the ringer measures this */
		*word(3) = interrupts;
		ring(*word(2));
	}
	mmio_write32(LAPIC_BASE + LAPIC_EOI, 0);
}

static int find_device(void)
{
	for (unsigned d = 0; d < 32; d++)
		if (pci_read(d, 0) == 0x11101af4u)
			return (int)d;
	return -1;
}

/* The MSI-X capability's config offset, or -1. */
static int find_msix(void)
{
	if (!(pci_read(dev, 4) & (0x10u << 16)))
		return -1;
	for (unsigned at = pci_read8(dev, 0x34) & 0xfc, n = 0; at && n < 48; n++) {
		if (pci_read8(dev, at) == 0x11)
			return (int)at;
		at = pci_read8(dev, at + 1) & 0xfc;
	}
	return -1;
}

static void msix_setup(void)
{
	uint32_t tbl = pci_read(dev, (unsigned)msix_cap + 4);
	uint32_t bar = pci_read(dev, 0x10 + 4 * (tbl & 7)) & ~0xfu;
	msix_table = bar + (tbl & ~7u);
	mmio_write32(msix_table + 0, LAPIC_BASE); /* APIC 0, physical */
	mmio_write32(msix_table + 4, 0);
	mmio_write32(msix_table + 8, VEC_DOORBELL);
	mmio_write32(msix_table + 12, 0);        /* unmasked */
	uint32_t ctl = pci_read(dev, (unsigned)msix_cap);
	pci_write(dev, (unsigned)msix_cap, ctl | (0x8000u << 16));
}

static uint8_t pattern(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return (uint8_t)(*state >> 16);
}

static void sort(uint32_t *a, unsigned n)
{
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && a[j - 1] > a[j]; j--) {
			uint32_t t = a[j];
			a[j] = a[j - 1];
			a[j - 1] = t;
		}
}

void guest_main(const struct multiboot_info *mbi)
{
	const char *cmdline = (mbi->flags & (1u << 2)) && mbi->cmdline ?
				      (const char *)mbi->cmdline : "";
	int found = find_device();
	check(found >= 0, "no ivshmem device (1af4:1110) on bus 0");
	dev = (unsigned)found;
	pci_write(dev, 4, pci_read(dev, 4) | 0x6); /* memory decode, bus master */
	regs = pci_read(dev, 0x10) & ~0xfu;
	shm = pci_read(dev, 0x18) & ~0xfu;
	check(pci_read(dev, 0x1c) == 0, "BAR2 above 4 GiB");
	/* BAR sizing as firmware does it, on BAR2's low half */
	uint32_t old = pci_read(dev, 0x18);
	pci_write(dev, 4, pci_read(dev, 4) & ~0x2u);
	pci_write(dev, 0x18, 0xffffffffu);
	shm_size = ~(pci_read(dev, 0x18) & ~0xfu) + 1;
	pci_write(dev, 0x18, old);
	pci_write(dev, 4, pci_read(dev, 4) | 0x6);
	msix_cap = find_msix();
	uint32_t position = mmio_read32(regs + 8);
	printf("ivshmem: device %u, registers at 0x%x, %u KiB shared at 0x%x, position %u, %s\n",
	       dev, regs, shm_size >> 10, shm, position, msix_cap >= 0 ? "msi-x" : "no msi-x");

	const char *role = arg(cmdline, "role=");
	check(role != 0, "no role= on the command line");
	uint32_t seed = num(arg(cmdline, "seed="), 1), count = num(arg(cmdline, "count="), 10);
	if (role[0] == 'w' && role[1] == 'r') { /* write */
		uint32_t st = seed;
		for (uint32_t i = 0; i < shm_size; i++)
			*(volatile uint8_t *)(shm + i) = pattern(&st);
		printf("ivshmem: wrote %u bytes, seed %u\n", shm_size, seed);
		guest_exit(GUEST_OK);
	}
	if (role[0] == 'r' && role[1] == 'e') { /* read */
		uint32_t st = seed;
		for (uint32_t i = 0; i < shm_size; i++) {
			uint8_t want = pattern(&st), got = *(volatile uint8_t *)(shm + i);
			if (got != want) {
				printf("ivshmem: mismatch at %u: 0x%x, expected 0x%x\n", i, got, want);
				guest_exit(GUEST_FAIL);
			}
		}
		printf("ivshmem: verified %u bytes, seed %u\n", shm_size, seed);
		guest_exit(GUEST_OK);
	}
	if (role[0] == 'h') { /* hostile */
		for (uint32_t peer = 0; peer < 70000; peer += 997)
			mmio_write32(regs + 12, (peer << 16) | (peer & 0xffff));
		mmio_write32(regs + 12, 0xffffffffu);
		mmio_write32(regs + 8, 0x12345678u);   /* IVPosition is read-only */
		mmio_write32(regs + 16, 0xdeadbeefu);  /* reserved */
		mmio_write16(regs + 12, 0x1);          /* not a 32-bit access */
		check(mmio_read32(regs + 8) == position, "IVPosition changed by a write");
		check(mmio_read32(regs + 16) == 0, "a reserved register kept a write");
		/* kite places BAR2 last: past its end nothing answers */
		check(mmio_read32(shm + shm_size) == 0xffffffffu, "BAR2 reaches past its end");
		*(volatile uint32_t *)(shm + shm_size - 4) = 0xa5a5a5a5u; /* the last word is fine */
		check(*(volatile uint32_t *)(shm + shm_size - 4) == 0xa5a5a5a5u, "the last word of BAR2");
		printf("ivshmem: hostile accesses survived\n");
		guest_exit(GUEST_OK);
	}
	check(msix_cap >= 0, "doorbell roles need the server mode (MSI-X)");
	idt_load();
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	msix_setup();
	if (count > MAX_SAMPLES)
		count = MAX_SAMPLES;
	if (role[0] == 'w' && role[1] == 'a') { /* wait */
		waiter = 1;
		*word(3) = 0;
		*word(1) = position;
		*word(0) = READY_MAGIC;
		__asm__ volatile("sti");
		printf("ivshmem: waiting for %u doorbells\n", count);
		uint32_t spins = 0;
		while (interrupts < count && spins++ < SPIN_LIMIT)
			__asm__ volatile("pause");
		__asm__ volatile("cli");
		check(interrupts >= count, "timed out waiting for doorbells");
		printf("ivshmem: answered %u doorbells\n", interrupts);
		guest_exit(GUEST_OK);
	}
	/* ring */
	uint32_t spins = 0;
	while (*word(0) != READY_MAGIC && spins++ < SPIN_LIMIT)
		__asm__ volatile("pause");
	check(*word(0) == READY_MAGIC, "timed out waiting for a waiting peer");
	uint32_t peer = *word(1);
	*word(2) = position;
	printf("ivshmem: peer %u is waiting\n", peer);
	static uint32_t rtt[MAX_SAMPLES];
	__asm__ volatile("sti");
	for (uint32_t i = 0; i < count; i++) {
		uint32_t before = interrupts;
		uint64_t t0 = rdtsc();
		ring(peer);
		spins = 0;
		while (interrupts == before && spins++ < SPIN_LIMIT)
			__asm__ volatile("pause");
		uint64_t t1 = rdtsc();
		check(interrupts != before, "timed out waiting for the peer's answer");
		check(*word(3) == i + 1, "the peer's count does not match the doorbells rung");
		rtt[i] = t1 - t0 > 0xffffffffu ? 0xffffffffu : (uint32_t)(t1 - t0);
	}
	__asm__ volatile("cli");
	sort(rtt, count);
	printf("ivshmem: rang %u times, all answered; round trip ticks min %u median %u max %u\n",
	       count, rtt[0], rtt[count / 2], rtt[count - 1]);
	guest_exit(GUEST_OK);
}
