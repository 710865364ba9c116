/* sys_xmc: cross-modifying code, with two CPUs (run with --cpus 2). The
 * BSP starts the AP (INIT-SIPI-SIPI, sys_xmc_asm.S) into 64-bit mode; the
 * AP runs a function in a code page the BSP rewrites.
 * - serialized: the BSP rewrites the function, then bumps a generation
 *   count; the AP, seeing it, executes CPUID (serializing, as the SDM asks
 *   of the executing CPU) and runs the function: it must see every version.
 * - eventual: the AP calls the function in a tight loop with nothing
 *   serializing; the BSP changes one immediate byte and the AP must come to
 *   run the new code (x86 keeps instruction fetch coherent with other
 *   CPUs' stores). */
#include "sys_lib.h"

const char *const sys_name = "sys_xmc";

#define LAPIC 0xFEE00000ull
#define LAPIC_SVR 0x0F0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define TRAMPOLINE 0x10000ull
#define ROUNDS 50

typedef uint32_t (*fn_t)(void);

extern const char xmc_trampoline[], xmc_trampoline_end[];
static uint8_t xcode[2][4096] __attribute__((aligned(4096)));
static volatile uint32_t ap_up, mode, gen, ack, result;
static volatile uint64_t spins;
static struct {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed)) idtr;

static void emit_mov_ret(uint8_t *p, uint32_t imm)
{
	p[0] = 0xb8; /* mov $imm32, %eax */
	memcpy(p + 1, &imm, 4);
	p[5] = 0xc3; /* ret */
}

static void serialize(void)
{
	uint32_t a = 0, b, c = 0, d;
	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d) :: "memory");
}

void xmc_ap_main(void);
void xmc_ap_main(void)
{
	__asm__ volatile("lidt %0" :: "m"(idtr));
	ap_up = 1;
	uint32_t seen = 0;
	for (;;) {
		if (mode == 1 && gen != seen) {
			seen = gen;
			serialize();
			result = ((fn_t)(uint64_t)xcode[0])();
			__atomic_store_n(&ack, seen, __ATOMIC_RELEASE);
		} else if (mode == 2) {
			result = ((fn_t)(uint64_t)xcode[1])();
			spins++;
		} else {
			__asm__ volatile("pause");
		}
	}
}

static void icr(uint32_t lo)
{
	*(volatile uint32_t *)(LAPIC + LAPIC_ICR_HI) = 0;
	*(volatile uint32_t *)(LAPIC + LAPIC_ICR_LO) = lo;
	for (int i = 0; i < 1000 && (*(volatile uint32_t *)(LAPIC + LAPIC_ICR_LO) & (1u << 12)); i++)
		;
}

static void delay(uint64_t cycles)
{
	uint64_t t0 = rdtsc();
	while (rdtsc() - t0 < cycles)
		__asm__ volatile("pause");
}

/* wait until *p == v, at most a few seconds at any plausible TSC rate */
static int wait_for(volatile uint32_t *p, uint32_t v)
{
	uint64_t t0 = rdtsc();
	while (*p != v && rdtsc() - t0 < 10000000000ull)
		__asm__ volatile("pause");
	return *p == v;
}

void guest_main(const struct multiboot_info *mbi)
{
	sys_init(mbi);
	__asm__ volatile("sidt %0" : "=m"(idtr));
	emit_mov_ret(xcode[0], 0);
	emit_mov_ret(xcode[1], 0x100);

	if (want("start_ap")) {
		memcpy((void *)TRAMPOLINE, xmc_trampoline,
		       (size_t)(xmc_trampoline_end - xmc_trampoline));
		*(volatile uint32_t *)(LAPIC + LAPIC_SVR) = 0x1FF;
		icr((3u << 18) | (5u << 8) | (1u << 14) | (1u << 15)); /* INIT to all but self */
		delay(10000000);
		for (int i = 0; i < 2; i++) {
			icr((3u << 18) | (6u << 8) | (TRAMPOLINE >> 12)); /* SIPI */
			delay(1000000);
		}
		check(wait_for(&ap_up, 1), "AP up in 64-bit mode (run with --cpus 2)");
	}
	if (!ap_up)
		sys_finish();

	if (want("serialized")) {
		unsigned bad = 0, lost = 0;
		uint32_t first_bad = 0;
		mode = 1;
		for (uint32_t i = 1; i <= ROUNDS; i++) {
			/* alternate a whole new function and one changed byte */
			if (i & 1)
				emit_mov_ret(xcode[0], 0x1000 + i);
			else
				xcode[0][1] = (uint8_t)(0x1000 + i);
			__atomic_store_n(&gen, i, __ATOMIC_RELEASE);
			if (!wait_for(&ack, i)) {
				lost++;
				break;
			}
			if (result != 0x1000 + i && !bad++)
				first_bad = i;
		}
		mode = 0;
		check(!lost && !bad,
		      "AP runs each of %u versions the BSP wrote (%u wrong, first in round %u; %u "
		      "unanswered)",
		      ROUNDS, bad, first_bad, lost);
	}
	if (want("eventual")) {
		unsigned missed = 0;
		mode = 2;
		uint64_t s0 = spins;
		uint64_t t0 = rdtsc();
		while (spins - s0 < 1000 && rdtsc() - t0 < 10000000000ull)
			__asm__ volatile("pause");
		check(result == 0x100, "AP spinning on the function: 0x%x", result);
		for (uint32_t i = 1; i <= 10; i++) {
			xcode[1][1] = (uint8_t)i; /* the low byte of the immediate */
			if (!wait_for(&result, 0x100 + i))
				missed++;
		}
		mode = 0;
		check(!missed, "AP saw each of 10 byte changes without serializing (%u missed; %llu calls)",
		      missed, U64(spins - s0));
	}
	sys_finish();
}
