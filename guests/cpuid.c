/* cpuid: prints what the CPU model shows the boot vCPU: vendor, the
 * hypervisor bit and signature, its APIC ID and the topology (leaf 0xB),
 * the long-mode bit. Exits GUEST_OK when the basics a kernel relies on are
 * there (hypervisor bit, a signature, long mode, APIC ID 0 on the BSP). */
#include "lib/runtime.h"

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	uint32_t r[4];
	char vendor[13], sig[13];
	cpuid(0, 0, r);
	uint32_t max_basic = r[0];
	memcpy(vendor, &r[1], 4);
	memcpy(vendor + 4, &r[3], 4);
	memcpy(vendor + 8, &r[2], 4);
	vendor[12] = 0;
	cpuid(1, 0, r);
	uint32_t apic_id = r[1] >> 24, hv = r[2] >> 31;
	cpuid(0x40000000, 0, r);
	memcpy(sig, &r[1], 12);
	sig[12] = 0;
	for (int i = 0; i < 12; i++)
		if (sig[i] == 0)
			sig[i] = '.';
	uint32_t hv_max = r[0];
	uint32_t cores = 0;
	if (max_basic >= 0xB) {
		cpuid(0xB, 1, r);
		cores = r[1] & 0xffff;
	}
	cpuid(0x80000001, 0, r);
	uint32_t lm = (r[3] >> 29) & 1;
	printf("cpuid: vendor=%s max_basic=0x%x hypervisor=%u signature=%s hv_max=0x%x\n",
	       vendor, max_basic, hv, sig, hv_max);
	printf("cpuid: apic_id=%u cpus=%u longmode=%u\n", apic_id, cores, lm);
	int ok = hv && sig[0] != '.' && lm && apic_id == 0;
	guest_exit(ok ? GUEST_OK : GUEST_FAIL);
}
