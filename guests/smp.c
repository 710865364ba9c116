/* smp: starts every AP with INIT-SIPI-SIPI through the LAPIC (the APs wait
 * for SIPI, as on a PC after reset), each AP reports its APIC ID over the
 * serial port and counts itself in; the BSP waits for all of them. The
 * number of vCPUs comes from CPUID leaf 0xB (kite's topology). Exits
 * GUEST_OK when all APs came up, GUEST_FAIL otherwise. */
#include "lib/runtime.h"

#define LAPIC_BASE 0xFEE00000u
#define LAPIC_ID 0x020
#define LAPIC_SVR 0x0F0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_BUSY (1u << 12)
#define ICR_ALL_BUT_SELF (3u << 18)
#define ICR_INIT_ASSERT (0x5u << 8 | 1u << 14 | 1u << 15) /* INIT, assert, level */
#define ICR_SIPI (0x6u << 8)
#define AP_TRAMPOLINE 0x10000u
#define MAX_CPUS 64

extern const char ap_trampoline[], ap_trampoline_end[];
uint8_t ap_stacks[MAX_CPUS * 4096] __attribute__((aligned(4096)));
volatile uint32_t ap_next;
static volatile uint32_t online, print_lock;
static volatile uint32_t seen[MAX_CPUS];

void ap_main(uint32_t index);

static void lock(void)
{
	while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE))
		__asm__ volatile("pause");
}

static void unlock(void)
{
	__atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE);
}

void ap_main(uint32_t index)
{
	uint32_t id = mmio_read32(LAPIC_BASE + LAPIC_ID) >> 24;
	lock();
	printf("smp: AP %u up, apic id %u\n", index, id);
	unlock();
	if (id < MAX_CPUS)
		seen[id] = 1;
	__atomic_add_fetch(&online, 1, __ATOMIC_SEQ_CST);
}

static void icr(uint32_t lo)
{
	mmio_write32(LAPIC_BASE + LAPIC_ICR_HI, 0);
	mmio_write32(LAPIC_BASE + LAPIC_ICR_LO, lo);
	for (int i = 0; i < 1000 && (mmio_read32(LAPIC_BASE + LAPIC_ICR_LO) & ICR_BUSY); i++)
		;
}

static void delay(uint64_t cycles)
{
	uint64_t t0 = rdtsc();
	while (rdtsc() - t0 < cycles)
		__asm__ volatile("pause");
}

static uint32_t nr_cpus(void)
{
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
	if (a < 0xB)
		return 1;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0xB), "c"(1));
	return (b & 0xffff) ? (b & 0xffff) : 1;
}

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	uint32_t cpus = nr_cpus();
	if (cpus > MAX_CPUS)
		cpus = MAX_CPUS;
	printf("smp: %u vCPUs, starting %u APs\n", cpus, cpus - 1);
	if (cpus > 1) {
		memcpy((void *)AP_TRAMPOLINE, ap_trampoline,
		       (size_t)(ap_trampoline_end - ap_trampoline));
		mmio_write32(LAPIC_BASE + LAPIC_SVR, 0x1FF);
		icr(ICR_ALL_BUT_SELF | ICR_INIT_ASSERT);
		delay(10000000);
		for (int i = 0; i < 2; i++) {
			icr(ICR_ALL_BUT_SELF | ICR_SIPI | (AP_TRAMPOLINE >> 12));
			delay(1000000);
		}
		/* at least a few seconds at any plausible TSC rate */
		uint64_t t0 = rdtsc();
		while (online < cpus - 1 && rdtsc() - t0 < 10000000000ull)
			__asm__ volatile("pause");
	}
	uint32_t ids_ok = 1;
	for (uint32_t i = 1; i < cpus; i++)
		ids_ok &= seen[i];
	lock();
	printf("smp: %u of %u APs online%s\n", online, cpus - 1, ids_ok ? "" : " (missing APIC IDs)");
	unlock();
	guest_exit(online == cpus - 1 && ids_ok ? GUEST_OK : GUEST_FAIL);
}
