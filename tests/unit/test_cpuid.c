#include <criterion/criterion.h>
#include <string.h>

#include "arch/x86/cpuid.h"
#include "devices/legacy/test_device.h"

/* An engine that claims everything: the model must still hide what kite
 * never shows. */
static void all_features(struct cpu_features *f)
{
	memset(f, 0xff, sizeof(*f));
	struct cpu_features kite;
	cpuid_kite_features(&kite);
	memcpy(f->xsave, kite.xsave, sizeof(f->xsave));
}

static void model(struct cpu_model *m, enum cpuid_hv hv)
{
	struct cpu_features f;
	all_features(&f);
	cpuid_model_init(m, &f, hv);
}

static struct cpuid_regs leaf(const struct cpu_model *m, uint32_t l, uint32_t s, unsigned id,
			      unsigned n)
{
	struct cpuid_regs r;
	cpuid_leaf(m, l, s, id, n, &r);
	return r;
}

Test(cpuid, vendor_and_max_leaves)
{
	struct cpu_model m;
	model(&m, CPUID_HV_KITE);
	struct cpuid_regs r = leaf(&m, 0, 0, 0, 1);
	char v[13] = { 0 };
	memcpy(v, &r.ebx, 4);
	memcpy(v + 4, &r.edx, 4);
	memcpy(v + 8, &r.ecx, 4);
	cr_assert_str_eq(v, "GenuineIntel");
	cr_assert_eq(r.eax, 0xD);
	m.tsc_khz = 2000000;
	m.bus_khz = 1000000;
	cr_assert_eq(leaf(&m, 0, 0, 0, 1).eax, 0x16);
	cr_assert_eq(leaf(&m, 0x80000000, 0, 0, 1).eax, 0x80000008);
	/* beyond the maxima: zeroes */
	r = leaf(&m, 0x17, 0, 0, 1);
	cr_assert(r.eax == 0 && r.ebx == 0 && r.ecx == 0 && r.edx == 0);
	r = leaf(&m, 0x80000009, 0, 0, 1);
	cr_assert(r.eax == 0 && r.ebx == 0 && r.ecx == 0 && r.edx == 0);
}

Test(cpuid, tsc_leaves)
{
	struct cpu_model m;
	model(&m, CPUID_HV_KITE);
	m.tsc_khz = 2500000;
	m.bus_khz = 1000000;
	struct cpuid_regs r = leaf(&m, 0x15, 0, 0, 1);
	/* TSC = crystal * EBX / EAX */
	cr_assert_eq((uint64_t)r.ecx * r.ebx / r.eax, 2500000000ull);
	cr_assert_eq(r.ecx, 1000000000u); /* crystal = LAPIC clock */
	cr_assert_eq(leaf(&m, 0x16, 0, 0, 1).eax, 2500);
	r = leaf(&m, 0x40000010, 0, 0, 1);
	cr_assert_eq(r.eax, 2500000);
	cr_assert_eq(r.ebx, 1000000);
}

/* Linux's native_calibrate_tsc: crystal_khz = ECX / 1000, then
 * crystal_khz * EBX / EAX in unsigned 32-bit arithmetic. */
static uint64_t linux_tsc_khz(const struct cpuid_regs *r, bool *overflow)
{
	uint64_t crystal_khz = r->ecx / 1000;
	uint64_t prod = crystal_khz * r->ebx;
	*overflow = prod > UINT32_MAX;
	return (uint32_t)prod / r->eax;
}

Test(cpuid, tsc_leaf_15_fits_linux_arithmetic)
{
	static const uint32_t cases[][2] = {
		{ 2500000, 1000000 }, /* KVM: 1 GHz LAPIC clock, 2.5 GHz TSC */
		{ 2893437, 1000000 }, /* no small exact ratio */
		{ 3000000, 187500 },  /* soft engine: TSC = 16 x crystal */
		{ 4294967, 4294967 }, /* largest crystal ECX can hold */
		{ 1999999, 3 },
		{ 3700001, 1000003 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cpu_model m;
		model(&m, CPUID_HV_KITE);
		m.tsc_khz = cases[i][0];
		m.bus_khz = cases[i][1];
		struct cpuid_regs r = leaf(&m, 0x15, 0, 0, 1);
		cr_assert(r.eax && r.ebx, "case %zu: leaf 0x15 empty", i);
		cr_assert_eq(r.ecx, m.bus_khz * 1000u);
		bool ovf;
		uint64_t khz = linux_tsc_khz(&r, &ovf);
		cr_assert(!ovf, "case %zu: %u * %u overflows 32 bits", i, r.ecx / 1000, r.ebx);
		/* within 10 ppm (exact where the ratio is small) */
		uint64_t err = khz > m.tsc_khz ? khz - m.tsc_khz : m.tsc_khz - khz;
		cr_assert(err * 100000 <= m.tsc_khz, "case %zu: %lu kHz for %u", i,
			  (unsigned long)khz, m.tsc_khz);
	}
	/* exact ratios come out exact and reduced */
	struct cpu_model m;
	model(&m, CPUID_HV_KITE);
	m.tsc_khz = 3000000;
	m.bus_khz = 187500;
	struct cpuid_regs r = leaf(&m, 0x15, 0, 0, 1);
	cr_assert(r.eax == 1 && r.ebx == 16);
	m.tsc_khz = 2500000;
	m.bus_khz = 1000000;
	r = leaf(&m, 0x15, 0, 0, 1);
	cr_assert(r.eax == 2 && r.ebx == 5);
}

Test(cpuid, hides_what_kite_never_shows)
{
	struct cpu_model m;
	model(&m, CPUID_HV_KITE);
	struct cpuid_regs r = leaf(&m, 1, 0, 0, 1);
	cr_assert_eq(r.ecx & (1u << 5), 0, "VMX");
	cr_assert_eq(r.ecx & (1u << 3), 0, "MONITOR");
	cr_assert_eq(r.ecx & CPUID_1_ECX_OSXSAVE, 0, "OSXSAVE is dynamic");
	cr_assert(r.ecx & CPUID_1_ECX_HYPERVISOR);
	cr_assert(r.edx & CPUID_1_EDX_SSE2);
	r = leaf(&m, 0x80000001, 0, 0, 1);
	cr_assert(r.edx & CPUID_8000_0001_EDX_LM);
	r = leaf(&m, 7, 0, 0, 1);
	cr_assert_eq(r.ebx & (1u << 11), 0, "RTM");
	cr_assert_eq(r.ecx & CPUID_7_0_ECX_OSPKE, 0, "OSPKE is dynamic");
}

Test(cpuid, engine_mask_applies)
{
	struct cpu_features f;
	all_features(&f);
	f.word[CPUID_1_ECX] &= ~(1u << 28); /* no AVX */
	struct cpu_model m;
	cpuid_model_init(&m, &f, CPUID_HV_KITE);
	struct cpuid_regs r = leaf(&m, 1, 0, 0, 1);
	cr_assert_eq(r.ecx & (1u << 28), 0);
	cr_assert_eq(r.ecx & (1u << 12), 0, "FMA needs AVX");
	cr_assert_eq(leaf(&m, 7, 0, 0, 1).ebx & (1u << 5), 0, "AVX2 needs AVX");
	cr_assert_eq(leaf(&m, 0xD, 0, 0, 1).eax & 4, 0, "no AVX state in XCR0");
	r = leaf(&m, 0xD, 2, 0, 1);
	cr_assert_eq(r.eax, 0, "no AVX component leaf");
}

Test(cpuid, avx512_all_or_nothing)
{
	struct cpu_features f;
	all_features(&f);
	f.xcr0_mask &= ~(1ull << 6); /* engine lacks ZMM_Hi256 */
	struct cpu_model m;
	cpuid_model_init(&m, &f, CPUID_HV_KITE);
	cr_assert_eq(leaf(&m, 7, 0, 0, 1).ebx & (1u << 16), 0, "AVX512F");
	cr_assert_eq(leaf(&m, 0xD, 0, 0, 1).eax & 0xe0, 0);
	cr_assert(leaf(&m, 0xD, 0, 0, 1).eax & 4, "AVX stays");
}

Test(cpuid, xsave_layout)
{
	struct cpu_model m;
	model(&m, CPUID_HV_KITE);
	struct cpuid_regs r = leaf(&m, 0xD, 0, 0, 1);
	cr_assert_eq(r.eax, 0x2e7, "x87 SSE AVX opmask ZMM PKRU");
	cr_assert_eq(r.ebx, 576);
	cr_assert_eq(r.ecx, 2696, "PKRU ends the standard layout");
	r = leaf(&m, 0xD, 2, 0, 1);
	cr_assert_eq(r.eax, 256);
	cr_assert_eq(r.ebx, 576);
	r = leaf(&m, 0xD, 0, 0, 1);
	cpuid_apply_dynamic(0xD, 0, 0, 0x7, true, &m, &r);
	cr_assert_eq(r.ebx, 832, "x87|SSE|AVX enabled");
}

Test(cpuid, topology_per_vcpu)
{
	struct cpu_model m;
	model(&m, CPUID_HV_KITE);
	struct cpuid_regs r = leaf(&m, 1, 0, 5, 6);
	cr_assert_eq(r.ebx >> 24, 5, "initial APIC ID");
	cr_assert_eq((r.ebx >> 16) & 0xff, 8, "logical count, power of two");
	cr_assert(r.edx & CPUID_1_EDX_HTT);
	cr_assert_eq(leaf(&m, 1, 0, 0, 1).edx & CPUID_1_EDX_HTT, 0, "one vCPU: no HTT");

	r = leaf(&m, 0xB, 0, 5, 6);
	cr_assert_eq(r.ebx, 1);
	cr_assert_eq((r.ecx >> 8) & 0xff, 1, "SMT level");
	cr_assert_eq(r.edx, 5);
	r = leaf(&m, 0xB, 1, 5, 6);
	cr_assert_eq(r.eax, 3, "shift: 6 cores need 3 bits");
	cr_assert_eq(r.ebx, 6);
	cr_assert_eq((r.ecx >> 8) & 0xff, 2, "core level");
	r = leaf(&m, 0xB, 2, 5, 6);
	cr_assert_eq((r.ecx >> 8) & 0xff, 0, "end of levels");

	r = leaf(&m, 4, 0, 5, 6);
	cr_assert_eq(r.eax >> 26, 5, "cores per package - 1");
	r = leaf(&m, 0x80000008, 0, 5, 6);
	cr_assert_eq(r.ecx & 0xff, 5);
	cr_assert_eq(r.eax & 0xff, 40);
	/* 255 vCPUs: fields saturate, never wrap */
	r = leaf(&m, 1, 0, 254, 255);
	cr_assert_eq(r.ebx >> 24, 254);
	cr_assert_eq((r.ebx >> 16) & 0xff, 255);
	cr_assert_eq(leaf(&m, 0xB, 1, 254, 255).ebx, 255);
}

static void hv_sig(const struct cpu_model *m, char out[13])
{
	struct cpuid_regs r = leaf(m, 0x40000000, 0, 0, 1);
	memcpy(out, &r.ebx, 4);
	memcpy(out + 4, &r.ecx, 4);
	memcpy(out + 8, &r.edx, 4);
	out[12] = 0;
}

Test(cpuid, hypervisor_leaves)
{
	struct cpu_model m;
	char sig[13];
	model(&m, CPUID_HV_KVM);
	hv_sig(&m, sig);
	cr_assert_eq(memcmp(sig, "KVMKVMKVM\0\0\0", 12), 0);
	cr_assert_eq(leaf(&m, 0x40000000, 0, 0, 1).eax, 0x40000001);
	uint32_t kvm = leaf(&m, 0x40000001, 0, 0, 1).eax;
	cr_assert(kvm & (1u << 3), "kvmclock2");
	cr_assert_eq(kvm & (1u << 4), 0, "no async PF");

	model(&m, CPUID_HV_KITE);
	hv_sig(&m, sig);
	cr_assert_str_eq(sig, "KiteKiteKite");
	cr_assert_eq(leaf(&m, 0x40000001, 0, 0, 1).eax, 0, "no KVM features without KVM's signature");
}

Test(cpuid, brand_string)
{
	struct cpu_model m;
	model(&m, CPUID_HV_KITE);
	char b[49] = { 0 };
	for (uint32_t l = 0; l < 3; l++) {
		struct cpuid_regs r = leaf(&m, 0x80000002 + l, 0, 0, 1);
		memcpy(b + 16 * l, &r, 16);
	}
	cr_assert_str_eq(b, "kite virtual CPU");
}

Test(cpuid, table_matches_leaves)
{
	struct cpu_model m;
	model(&m, CPUID_HV_KVM);
	size_t n = cpuid_table(&m, 3, 4, NULL, 0);
	cr_assert_gt(n, 20);
	struct cpuid_entry e[128];
	cr_assert_leq(n, 128);
	cr_assert_eq(cpuid_table(&m, 3, 4, e, n), n);
	bool saw_b1 = false, saw_hv = false;
	for (size_t i = 0; i < n; i++) {
		struct cpuid_regs r = leaf(&m, e[i].leaf, e[i].subleaf, 3, 4);
		cr_assert_eq(memcmp(&r, &e[i].r, sizeof(r)), 0, "leaf 0x%x.%u", e[i].leaf,
			     e[i].subleaf);
		if (e[i].leaf == 0xB && e[i].subleaf == 1) {
			saw_b1 = true;
			cr_assert(e[i].significant_index);
		}
		if (e[i].leaf == 0x40000001)
			saw_hv = true;
	}
	cr_assert(saw_b1 && saw_hv);
	/* a short array is filled as far as it goes; the count stays */
	cr_assert_eq(cpuid_table(&m, 3, 4, e, 2), n);
}

struct fake_table {
	uint32_t leaf, subleaf;
	struct cpuid_regs r;
};

static bool fake_lookup(void *opaque, uint32_t l, uint32_t s, struct cpuid_regs *out)
{
	for (const struct fake_table *t = opaque; t->leaf != 0xffffffff; t++) {
		if (t->leaf == l && t->subleaf == s) {
			*out = t->r;
			return true;
		}
	}
	return false;
}

Test(cpuid, features_from_table)
{
	static const struct fake_table t[] = {
		{ 1, 0, { 0, 0, 0x04000001 /* SSE3 XSAVE */, 0x02000001 /* FPU SSE */ } },
		{ 0xD, 0, { 0x7, 0, 0, 0 } },
		{ 0xD, 2, { 256, 576, 0, 0 } },
		{ 0x40000000, 0, { 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d } },
		{ 0x40000001, 0, { 0x8, 0, 0, 0 } },
		{ 0xffffffff, 0, { 0, 0, 0, 0 } },
	};
	struct cpu_features f;
	cpuid_features_from_table(&f, fake_lookup, (void *)t);
	cr_assert_eq(f.word[CPUID_1_ECX], 0x04000001);
	cr_assert_eq(f.word[CPUID_1_EDX], 0x02000001);
	cr_assert_eq(f.xcr0_mask, 0x7);
	cr_assert_eq(f.xsave[2].size, 256);
	cr_assert_eq(f.xsave[2].offset, 576);
	cr_assert_eq(f.word[CPUID_4000_0001_EAX], 0x8);
	struct cpu_model m;
	cpuid_model_init(&m, &f, CPUID_HV_KVM);
	struct cpuid_regs r = leaf(&m, 1, 0, 0, 1);
	cr_assert_eq(r.ecx, 0x04000001 | CPUID_1_ECX_HYPERVISOR);
	cr_assert_eq(leaf(&m, 0xD, 0, 0, 1).eax, 0x3, "AVX state without the AVX bit is dropped");
}

Test(cpuid, dynamic_bits)
{
	struct cpu_model m;
	model(&m, CPUID_HV_KITE);
	struct cpuid_regs r = leaf(&m, 1, 0, 0, 1);
	cpuid_apply_dynamic(1, 0, 1ull << 18, 3, false, &m, &r);
	cr_assert(r.ecx & CPUID_1_ECX_OSXSAVE);
	cr_assert_eq(r.edx & CPUID_1_EDX_APIC, 0);
	r = leaf(&m, 7, 0, 0, 1);
	cpuid_apply_dynamic(7, 0, 1ull << 22, 3, true, &m, &r);
	cr_assert(r.ecx & CPUID_7_0_ECX_OSPKE);
}

/* The register-echo device used by the test guests. */
Test(test_device, echo_and_bounds)
{
	struct test_device d;
	test_device_init(&d);
	test_device_write(&d, 0, 4, 0x11223344);
	cr_assert_eq(test_device_read(&d, 0, 4), 0x11223344);
	cr_assert_eq(test_device_read(&d, 1, 1), 0x33);
	test_device_write(&d, 8, 8, 0x0102030405060708ull);
	cr_assert_eq(test_device_read(&d, 8, 8), 0x0102030405060708ull);
	cr_assert_eq(test_device_read(&d, TEST_DEVICE_REG_ID, 4), TEST_DEVICE_ID);
	cr_assert_eq(test_device_read(&d, TEST_DEVICE_REG_COUNT, 4), 2);
	test_device_write(&d, TEST_DEVICE_REG_INVERT, 2, 0x00ff);
	cr_assert_eq(test_device_read(&d, TEST_DEVICE_REG_INVERT, 2), 0xff00);
	/* crossing the end of the echo register: all ones, write ignored */
	cr_assert_eq(test_device_read(&d, 14, 4), 0xffffffff);
	test_device_write(&d, 12, 8, ~0ull);
	cr_assert_eq(test_device_read(&d, 12, 4), 0x01020304);
	/* bad sizes and far offsets */
	cr_assert_eq(test_device_read(&d, 0, 3), ~0ull);
	cr_assert_eq(test_device_read(&d, 0xffffffffffffffffull, 1), 0);
	test_device_write(&d, 0xfff, 8, 1);
	cr_assert_eq(test_device_read(&d, TEST_DEVICE_REG_COUNT, 4), 3);
	test_device_fini(&d);
}
