#include "arch/x86/cpuid.h"

#include <string.h>

#define B(n) (1u << (n))

/* XSAVE components kite knows and their standard-format layout (Intel SDM
 * vol. 1, 13.4): x87 and SSE live in the legacy region, the rest after the
 * 64-byte header at 576. */
enum { XC_X87, XC_SSE, XC_AVX, XC_BNDREGS, XC_BNDCSR, XC_OPMASK, XC_ZMM_HI256, XC_HI16_ZMM,
       XC_PT, XC_PKRU };
#define XCR0_KITE (B(XC_X87) | B(XC_SSE) | B(XC_AVX) | B(XC_OPMASK) | B(XC_ZMM_HI256) | \
		   B(XC_HI16_ZMM) | B(XC_PKRU))

void cpuid_kite_features(struct cpu_features *f)
{
	memset(f, 0, sizeof(*f));
	/* SSE3 PCLMULQDQ SSSE3 FMA CX16 PCID SSE4.1 SSE4.2 x2APIC MOVBE POPCNT
	 * TSC-deadline AES XSAVE AVX F16C RDRAND. Not: MONITOR, VMX, SMX, EST,
	 * TM2, xTPR, PDCM, DCA, DS-CPL (no PMU, no power management). OSXSAVE
	 * is dynamic; the hypervisor bit is set by cpuid_leaf. */
	f->word[CPUID_1_ECX] = B(0) | B(1) | B(9) | B(12) | B(13) | B(17) | B(19) | B(20) |
			       B(21) | B(22) | B(23) | B(24) | B(25) | B(26) | B(28) | B(29) |
			       B(30);
	/* FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT
	 * PSE36 CLFSH MMX FXSR SSE SSE2. Not: PSN, DS, ACPI, SS, TM, PBE; HTT
	 * follows the topology. */
	f->word[CPUID_1_EDX] = B(0) | B(1) | B(2) | B(3) | B(4) | B(5) | B(6) | B(7) | B(8) |
			       B(9) | B(11) | B(12) | B(13) | B(14) | B(15) | B(16) | B(17) |
			       B(19) | B(23) | B(24) | B(25) | B(26);
	f->word[CPUID_6_EAX] = B(2); /* ARAT: the LAPIC timer runs in deep C-states */
	/* FSGSBASE TSC_ADJUST BMI1 AVX2 FDP_EXCPTN_ONLY SMEP BMI2 ERMS INVPCID
	 * FPU-CS/DS-deprecated AVX512F/DQ RDSEED ADX SMAP AVX512IFMA CLFLUSHOPT
	 * CLWB AVX512PF/ER/CD SHA AVX512BW/VL. Not: HLE, RTM, PQM/PQE, MPX, PT. */
	f->word[CPUID_7_0_EBX] = B(0) | B(1) | B(3) | B(5) | B(6) | B(7) | B(8) | B(9) |
				 B(10) | B(13) | B(16) | B(17) | B(18) | B(19) | B(20) | B(21) |
				 B(23) | B(24) | B(26) | B(27) | B(28) | B(29) | B(30) | B(31);
	/* PREFETCHWT1 AVX512VBMI UMIP PKU VBMI2 GFNI VAES VPCLMULQDQ VNNI BITALG
	 * VPOPCNTDQ LA57 RDPID CLDEMOTE MOVDIRI MOVDIR64B. Not: WAITPKG, CET,
	 * TME, KeyLocker, ENQCMD, SGX, PKS; OSPKE is dynamic. */
	f->word[CPUID_7_0_ECX] = B(0) | B(1) | B(2) | B(3) | B(6) | B(8) | B(9) | B(10) |
				 B(11) | B(12) | B(14) | B(16) | B(22) | B(25) | B(27) | B(28);
	/* AVX512_4VNNIW/4FMAPS FSRM VP2INTERSECT MD_CLEAR SERIALIZE FP16 and the
	 * speculation controls (SPEC_CTRL STIBP FLUSH_L1D ARCH_CAPABILITIES
	 * SSBD). Not: TSX, PCONFIG, LBR, IBT, AMX, CORE_CAPABILITIES. */
	f->word[CPUID_7_0_EDX] = B(2) | B(3) | B(4) | B(8) | B(10) | B(14) | B(23) | B(26) |
				 B(27) | B(28) | B(29) | B(31);
	f->word[CPUID_7_1_EAX] = B(4) | B(5) | B(10) | B(11) | B(12); /* AVX-VNNI BF16 FZRM FSRS FSRC */
	f->word[CPUID_D_1_EAX] = B(0) | B(1) | B(2) | B(3); /* XSAVEOPT XSAVEC XGETBV1 XSAVES */
	/* LAHF AltMovCr8 ABM SSE4A MisAlignSse 3DNowPrefetch XOP FMA4 TBM. Not:
	 * CmpLegacy (topology), SVM, ExtApicSpace, OSVW, IBS, SKINIT, WDT,
	 * LWP, TopoExt, perf counters. */
	f->word[CPUID_8000_0001_ECX] = B(0) | B(4) | B(5) | B(6) | B(7) | B(8) | B(11) |
				       B(16) | B(21);
	/* AMD's copies of the leaf 1 EDX bits, SYSCALL NX MmxExt FFXSR
	 * 1GB-pages RDTSCP LM. Not: 3DNow (gone from current CPUs). */
	f->word[CPUID_8000_0001_EDX] = (f->word[CPUID_1_EDX] & 0x0183F3FFu) | B(11) | B(20) |
				       B(22) | B(25) | B(26) | B(27) | B(29);
	f->word[CPUID_8000_0007_EDX] = B(8); /* invariant TSC */
	/* CLZERO XSAVEERPTR WBNOINVD IBPB IBRS STIBP SSBD VIRT_SSBD SSB_NO */
	f->word[CPUID_8000_0008_EBX] = B(0) | B(2) | B(9) | B(12) | B(14) | B(15) | B(24) |
				       B(25) | B(26);
	/* kvmclock (both MSR sets), NOP_IO_DELAY, PV_EOI, PV_UNHALT,
	 * PV_TLB_FLUSH, PV_SEND_IPI, PV_SCHED_YIELD, stable clock. Not: async
	 * page faults and steal time (need host setup kite does not do),
	 * MSI_EXT_DEST_ID (needs kite's IOAPIC/MSI routing to support it). */
	f->word[CPUID_4000_0001_EAX] = B(0) | B(1) | B(3) | B(6) | B(7) | B(9) | B(11) |
				       B(13) | B(24);

	f->xcr0_mask = XCR0_KITE;
	f->xss_mask = 0;
	static const struct { unsigned i; uint32_t size, offset; } std[] = {
		{ XC_AVX, 256, 576 },      { XC_OPMASK, 64, 1088 },
		{ XC_ZMM_HI256, 512, 1152 }, { XC_HI16_ZMM, 1024, 1664 },
		{ XC_PKRU, 8, 2688 },
	};
	f->xsave[XC_X87].size = 160;  /* legacy region parts, as 0xD.0/1 imply */
	f->xsave[XC_SSE].size = 256;
	f->xsave[XC_SSE].offset = 160;
	for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++) {
		f->xsave[std[i].i].size = std[i].size;
		f->xsave[std[i].i].offset = std[i].offset;
	}
}

void cpuid_features_and(struct cpu_features *f, const struct cpu_features *mask)
{
	for (int i = 0; i < CPUID_NR_WORDS; i++)
		f->word[i] &= mask->word[i];
	f->xcr0_mask &= mask->xcr0_mask;
	f->xss_mask &= mask->xss_mask;
	/* A component only exists together with its feature bit. */
	if (!(f->word[CPUID_1_ECX] & CPUID_1_ECX_XSAVE)) {
		f->xcr0_mask &= B(XC_X87) | B(XC_SSE);
		f->xss_mask = 0;
		f->word[CPUID_D_1_EAX] = 0;
	}
	if (!(f->word[CPUID_1_ECX] & B(28)))          /* AVX */
		f->xcr0_mask &= ~(uint64_t)B(XC_AVX);
	if (!(f->word[CPUID_7_0_EBX] & B(16)))        /* AVX512F */
		f->xcr0_mask &= ~(uint64_t)(B(XC_OPMASK) | B(XC_ZMM_HI256) | B(XC_HI16_ZMM));
	if (!(f->word[CPUID_7_0_ECX] & B(3)))         /* PKU */
		f->xcr0_mask &= ~(uint64_t)B(XC_PKRU);
	/* AVX-512 state is all or nothing in XCR0. */
	uint64_t avx512 = B(XC_OPMASK) | B(XC_ZMM_HI256) | B(XC_HI16_ZMM);
	if ((f->xcr0_mask & avx512) != avx512) {
		f->xcr0_mask &= ~avx512;
		f->word[CPUID_7_0_EBX] &= ~(B(16) | B(17) | B(21) | B(26) | B(27) | B(28) | B(30) | B(31));
		f->word[CPUID_7_0_ECX] &= ~(B(1) | B(6) | B(11) | B(12) | B(14));
		f->word[CPUID_7_0_EDX] &= ~(B(2) | B(3) | B(8) | B(23));
		f->word[CPUID_7_1_EAX] &= ~B(5);
	}
	if (!(f->xcr0_mask & B(XC_AVX))) {
		f->word[CPUID_1_ECX] &= ~(B(12) | B(28) | B(29));  /* FMA AVX F16C */
		f->word[CPUID_7_0_EBX] &= ~B(5);                   /* AVX2 */
		f->word[CPUID_7_1_EAX] &= ~B(4);                   /* AVX-VNNI */
	}
	uint64_t keep = f->xcr0_mask | f->xss_mask | B(XC_X87) | B(XC_SSE);
	for (unsigned i = 0; i < CPUID_XSAVE_COMPONENTS; i++)
		if (!(keep & (1ull << i)))
			f->xsave[i].size = f->xsave[i].offset = f->xsave[i].flags = 0;
}

void cpuid_features_from_table(struct cpu_features *f, cpuid_lookup_fn lookup, void *opaque)
{
	struct cpuid_regs r;
	memset(f, 0, sizeof(*f));
#define GET(l, s) (memset(&r, 0, sizeof(r)), lookup(opaque, (l), (s), &r))
	GET(1, 0);
	f->word[CPUID_1_ECX] = r.ecx;
	f->word[CPUID_1_EDX] = r.edx;
	GET(6, 0);
	f->word[CPUID_6_EAX] = r.eax;
	GET(7, 0);
	f->word[CPUID_7_0_EBX] = r.ebx;
	f->word[CPUID_7_0_ECX] = r.ecx;
	f->word[CPUID_7_0_EDX] = r.edx;
	GET(7, 1);
	f->word[CPUID_7_1_EAX] = r.eax;
	GET(0xD, 0);
	f->xcr0_mask = ((uint64_t)r.edx << 32) | r.eax;
	GET(0xD, 1);
	f->word[CPUID_D_1_EAX] = r.eax;
	f->xss_mask = ((uint64_t)r.edx << 32) | r.ecx;
	f->xsave[XC_X87].size = 160;
	f->xsave[XC_SSE].size = 256;
	f->xsave[XC_SSE].offset = 160;
	for (unsigned i = 2; i < CPUID_XSAVE_COMPONENTS; i++) {
		if (!((f->xcr0_mask | f->xss_mask) & (1ull << i)))
			continue;
		GET(0xD, i);
		f->xsave[i].size = r.eax;
		f->xsave[i].offset = r.ebx;
		f->xsave[i].flags = r.ecx;
	}
	GET(0x80000001, 0);
	f->word[CPUID_8000_0001_ECX] = r.ecx;
	f->word[CPUID_8000_0001_EDX] = r.edx;
	GET(0x80000007, 0);
	f->word[CPUID_8000_0007_EDX] = r.edx;
	GET(0x80000008, 0);
	f->word[CPUID_8000_0008_EBX] = r.ebx;
	/* Paravirt features only under KVM's own signature. */
	if (GET(0x40000000, 0) && r.ebx == 0x4b4d564b && r.ecx == 0x564b4d56 && r.edx == 0x4d) {
		GET(0x40000001, 0);
		f->word[CPUID_4000_0001_EAX] = r.eax;
	}
#undef GET
}

void cpuid_model_init(struct cpu_model *m, const struct cpu_features *engine, enum cpuid_hv hv)
{
	memset(m, 0, sizeof(*m));
	memcpy(m->vendor, "GenuineIntel", 13);
	/* Family 6 model 0x55 stepping 4: a plain server core every x86-64
	 * kernel knows; no quirks kite would need to emulate. */
	m->signature = 0x00050654;
	strncpy(m->brand, "kite virtual CPU", sizeof(m->brand) - 1);
	m->phys_bits = 40;
	m->virt_bits = 48;
	m->hv = hv;
	struct cpu_features kite;
	cpuid_kite_features(&kite);
	m->f = *engine;
	cpuid_features_and(&m->f, &kite);
	if (hv != CPUID_HV_KVM)
		m->f.word[CPUID_4000_0001_EAX] = 0;
}

static void put_str(uint32_t *regs[], size_t n, const char *s, size_t len)
{
	char buf[16] = { 0 };
	memcpy(buf, s, len < sizeof(buf) ? len : sizeof(buf));
	for (size_t i = 0; i < n; i++)
		memcpy(regs[i], buf + 4 * i, 4);
}

/* The fraction num/den closest to n/d with num <= max_num and den <=
 * UINT32_MAX (continued fractions: the last convergent within the bounds or
 * the best semiconvergent past it). n, d, max_num > 0. */
static void ratio_bounded(uint64_t n, uint64_t d, uint64_t max_num, uint32_t *pn, uint32_t *pd)
{
	const uint64_t N = n, D = d;
	uint64_t p0 = 0, q0 = 1, p1 = 1, q1 = 0;
	while (d) {
		uint64_t a = n / d;
		uint64_t p2 = a * p1 + p0, q2 = a * q1 + q0;
		if (p2 > max_num || q2 > UINT32_MAX) {
			uint64_t k = (max_num - p0) / p1;
			if (q1 && (UINT32_MAX - q0) / q1 < k)
				k = (UINT32_MAX - q0) / q1;
			uint64_t ps = k * p1 + p0, qs = k * q1 + q0;
			/* |p/q - N/D| compared as |p*D - q*N| / q */
			if (k && qs) {
				unsigned __int128 es = (unsigned __int128)ps * D > (unsigned __int128)qs * N ?
					(unsigned __int128)ps * D - (unsigned __int128)qs * N :
					(unsigned __int128)qs * N - (unsigned __int128)ps * D;
				unsigned __int128 e1 = (unsigned __int128)p1 * D > (unsigned __int128)q1 * N ?
					(unsigned __int128)p1 * D - (unsigned __int128)q1 * N :
					(unsigned __int128)q1 * N - (unsigned __int128)p1 * D;
				if (!q1 || es * q1 < e1 * qs) {
					p1 = ps;
					q1 = qs;
				}
			}
			break;
		}
		p0 = p1;
		q0 = q1;
		p1 = p2;
		q1 = q2;
		uint64_t r = n - a * d;
		n = d;
		d = r;
	}
	*pn = (uint32_t)p1;
	*pd = (uint32_t)q1;
}

static bool is_amd(const struct cpu_model *m)
{
	return !memcmp(m->vendor, "AuthenticAMD", 12) || !memcmp(m->vendor, "HygonGenuine", 12);
}

static unsigned core_shift(unsigned nr_cpus)
{
	unsigned s = 0;
	while ((1u << s) < nr_cpus)
		s++;
	return s;
}

static uint32_t basic_max(const struct cpu_model *m)
{
	return m->tsc_khz ? 0x16 : 0xD;
}

static uint32_t hv_max(const struct cpu_model *m)
{
	if (m->hv == CPUID_HV_KVM)
		return 0x40000001;
	return m->tsc_khz ? 0x40000010 : 0x40000000;
}

/* Intel leaf 4: L1d, L1i, L2 per core; L3 shared by the package. */
static void cache_leaf4(uint32_t subleaf, unsigned nr_cpus, struct cpuid_regs *r)
{
	static const struct { uint8_t type, level, ways; uint32_t sets; } c[] = {
		{ 1, 1, 8, 64 },     /* 32 KiB data */
		{ 2, 1, 8, 64 },     /* 32 KiB instruction */
		{ 3, 2, 16, 1024 },  /* 1 MiB unified */
		{ 3, 3, 16, 16384 }, /* 16 MiB unified, shared */
	};
	if (subleaf >= sizeof(c) / sizeof(c[0]))
		return;
	unsigned cores = nr_cpus > 64 ? 64 : nr_cpus;
	unsigned share = c[subleaf].level == 3 ? (1u << core_shift(nr_cpus)) : 1;
	if (share > 4096)
		share = 4096;
	r->eax = c[subleaf].type | (uint32_t)c[subleaf].level << 5 | B(8) |
		 (share - 1) << 14 | (uint32_t)(cores - 1) << 26;
	r->ebx = 63 | (uint32_t)(c[subleaf].ways - 1) << 22;
	r->ecx = c[subleaf].sets - 1;
	r->edx = c[subleaf].level == 3 ? B(1) : 0; /* L3 inclusive */
}

void cpuid_leaf(const struct cpu_model *m, uint32_t leaf, uint32_t subleaf,
		unsigned apic_id, unsigned nr_cpus, struct cpuid_regs *r)
{
	const struct cpu_features *f = &m->f;
	memset(r, 0, sizeof(*r));
	if (nr_cpus == 0)
		nr_cpus = 1;
	unsigned shift = core_shift(nr_cpus);
	uint32_t *vendor_regs[3] = { &r->ebx, &r->edx, &r->ecx };

	if (leaf >= 0x40000000 && leaf < 0x80000000 && leaf > hv_max(m))
		return;
	if (leaf < 0x40000000 && leaf > basic_max(m))
		return;
	if (leaf >= 0x80000000 && leaf > 0x80000008)
		return;

	switch (leaf) {
	case 0:
		r->eax = basic_max(m);
		put_str(vendor_regs, 3, m->vendor, 12);
		break;
	case 1: {
		unsigned logical = 1u << shift;
		r->eax = m->signature;
		r->ebx = 8u << 8 | (logical > 255 ? 255 : logical) << 16 | (apic_id & 0xff) << 24;
		r->ecx = f->word[CPUID_1_ECX] | CPUID_1_ECX_HYPERVISOR;
		r->edx = f->word[CPUID_1_EDX] | (nr_cpus > 1 ? CPUID_1_EDX_HTT : 0);
		break;
	}
	case 2:
		if (!is_amd(m))
			r->eax = 0x0000FF01; /* one round; 0xFF: see leaf 4 */
		break;
	case 4:
		if (!is_amd(m))
			cache_leaf4(subleaf, nr_cpus, r);
		break;
	case 6:
		r->eax = f->word[CPUID_6_EAX];
		break;
	case 7:
		if (subleaf == 0) {
			r->eax = 1;
			r->ebx = f->word[CPUID_7_0_EBX];
			r->ecx = f->word[CPUID_7_0_ECX];
			r->edx = f->word[CPUID_7_0_EDX];
		} else if (subleaf == 1) {
			r->eax = f->word[CPUID_7_1_EAX];
		}
		break;
	case 0xB:
		r->edx = apic_id;
		r->ecx = subleaf & 0xff;
		if (subleaf == 0) {        /* SMT level: one thread per core */
			r->eax = 0;
			r->ebx = 1;
			r->ecx |= 1u << 8;
		} else if (subleaf == 1) { /* core level: the whole package */
			r->eax = shift;
			r->ebx = nr_cpus;
			r->ecx |= 2u << 8;
		}
		break;
	case 0xD: {
		uint64_t all = f->xcr0_mask | f->xss_mask;
		if (subleaf == 0) {
			if (!(f->word[CPUID_1_ECX] & CPUID_1_ECX_XSAVE))
				break;
			uint32_t max = 576;
			for (unsigned i = 2; i < CPUID_XSAVE_COMPONENTS; i++)
				if ((f->xcr0_mask >> i) & 1 &&
				    f->xsave[i].offset + f->xsave[i].size > max)
					max = f->xsave[i].offset + f->xsave[i].size;
			r->eax = (uint32_t)f->xcr0_mask;
			r->edx = (uint32_t)(f->xcr0_mask >> 32);
			r->ebx = 576; /* XCR0 = x87|SSE at reset; dynamic */
			r->ecx = max;
		} else if (subleaf == 1) {
			r->eax = f->word[CPUID_D_1_EAX];
			r->ecx = (uint32_t)f->xss_mask;
			r->edx = (uint32_t)(f->xss_mask >> 32);
		} else if (subleaf < CPUID_XSAVE_COMPONENTS && (all >> subleaf) & 1) {
			r->eax = f->xsave[subleaf].size;
			r->ebx = f->xsave[subleaf].offset;
			r->ecx = f->xsave[subleaf].flags;
		}
		break;
	}
	case 0x15:
		/* TSC = crystal * EBX / EAX. The crystal is the LAPIC timer's
		 * clock: Linux derives the LAPIC timer period from it. Linux
		 * computes crystal_khz * EBX in 32 bits (native_calibrate_tsc),
		 * so EBX/EAX is the ratio TSC/crystal reduced, or its closest
		 * approximation whose product cannot overflow. */
		if (m->bus_khz && m->bus_khz <= UINT32_MAX / 1000u && m->tsc_khz) {
			uint32_t num, den;
			ratio_bounded(m->tsc_khz, m->bus_khz, UINT32_MAX / m->bus_khz, &num, &den);
			if (num && den) {
				r->eax = den;
				r->ebx = num;
				r->ecx = m->bus_khz * 1000u;
			}
		}
		break;
	case 0x16:
		r->eax = m->tsc_khz / 1000; /* base MHz */
		r->ebx = m->tsc_khz / 1000;
		r->ecx = m->bus_khz / 1000;
		break;
	case 0x40000000: {
		r->eax = hv_max(m);
		const char *sig = m->hv == CPUID_HV_KVM ? "KVMKVMKVM\0\0\0" : "KiteKiteKite";
		uint32_t *hv_regs[3] = { &r->ebx, &r->ecx, &r->edx };
		put_str(hv_regs, 3, sig, 12);
		break;
	}
	case 0x40000001:
		if (m->hv == CPUID_HV_KVM)
			r->eax = f->word[CPUID_4000_0001_EAX];
		break;
	case 0x40000010:
		if (m->hv == CPUID_HV_KITE) {
			r->eax = m->tsc_khz;
			r->ebx = m->bus_khz;
		}
		break;
	case 0x80000000:
		r->eax = 0x80000008;
		put_str(vendor_regs, 3, m->vendor, 12);
		break;
	case 0x80000001:
		r->eax = is_amd(m) ? m->signature : 0;
		r->ecx = f->word[CPUID_8000_0001_ECX];
		r->edx = f->word[CPUID_8000_0001_EDX];
		if (!is_amd(m)) /* Intel reports only the long-mode-era bits here */
			r->edx &= B(11) | B(20) | B(26) | B(27) | B(29);
		break;
	case 0x80000002:
	case 0x80000003:
	case 0x80000004: {
		uint32_t *regs[4] = { &r->eax, &r->ebx, &r->ecx, &r->edx };
		size_t off = (leaf - 0x80000002) * 16;
		size_t len = strnlen(m->brand, sizeof(m->brand) - 1);
		if (off < len)
			put_str(regs, 4, m->brand + off, len - off);
		break;
	}
	case 0x80000005:
		if (is_amd(m)) { /* L1: 32 KiB 8-way 64-byte lines, d and i */
			r->ecx = 32u << 24 | 8u << 16 | 1u << 8 | 64;
			r->edx = r->ecx;
		}
		break;
	case 0x80000006: /* L2: 1 MiB, 16-way (encoding 8), 64-byte lines */
		r->ecx = 1024u << 16 | 8u << 12 | 64;
		break;
	case 0x80000007:
		r->edx = f->word[CPUID_8000_0007_EDX];
		break;
	case 0x80000008:
		r->eax = m->phys_bits | (uint32_t)m->virt_bits << 8;
		r->ebx = f->word[CPUID_8000_0008_EBX];
		r->ecx = ((nr_cpus - 1) & 0xff) | shift << 12;
		break;
	default:
		break;
	}
}

size_t cpuid_table(const struct cpu_model *m, unsigned apic_id, unsigned nr_cpus,
		   struct cpuid_entry *out, size_t max)
{
	size_t n = 0;
#define EMIT(l, s, idx)                                                          \
	do {                                                                     \
		if (n < max) {                                                   \
			out[n].leaf = (l);                                       \
			out[n].subleaf = (s);                                    \
			out[n].significant_index = (idx);                        \
			cpuid_leaf(m, (l), (s), apic_id, nr_cpus, &out[n].r);    \
		}                                                                \
		n++;                                                             \
	} while (0)
	for (uint32_t l = 0; l <= basic_max(m); l++) {
		switch (l) {
		case 4:
			for (uint32_t s = 0; s < 5; s++)
				EMIT(l, s, true);
			break;
		case 7:
			EMIT(l, 0, true);
			EMIT(l, 1, true);
			break;
		case 0xB:
			for (uint32_t s = 0; s < 3; s++)
				EMIT(l, s, true);
			break;
		case 0xD: {
			uint64_t all = m->f.xcr0_mask | m->f.xss_mask;
			EMIT(l, 0, true);
			EMIT(l, 1, true);
			for (uint32_t s = 2; s < CPUID_XSAVE_COMPONENTS; s++)
				if ((all >> s) & 1)
					EMIT(l, s, true);
			break;
		}
		default:
			EMIT(l, 0, false);
		}
	}
	EMIT(0x40000000, 0, false);
	if (m->hv == CPUID_HV_KVM)
		EMIT(0x40000001, 0, false);
	else if (m->tsc_khz)
		EMIT(0x40000010, 0, false);
	for (uint32_t l = 0x80000000; l <= 0x80000008; l++)
		EMIT(l, 0, false);
#undef EMIT
	return n;
}

void cpuid_apply_dynamic(uint32_t leaf, uint32_t subleaf, uint64_t cr4, uint64_t xcr0,
			 bool apic_enabled, const struct cpu_model *m, struct cpuid_regs *r)
{
	if (leaf == 1) {
		if (cr4 & (1ull << 18)) /* CR4.OSXSAVE */
			r->ecx |= CPUID_1_ECX_OSXSAVE;
		if (!apic_enabled)
			r->edx &= ~CPUID_1_EDX_APIC;
	} else if (leaf == 7 && subleaf == 0) {
		if (cr4 & (1ull << 22)) /* CR4.PKE */
			r->ecx |= CPUID_7_0_ECX_OSPKE;
	} else if (leaf == 0xD && subleaf == 0) {
		uint32_t size = 576;
		for (unsigned i = 2; i < CPUID_XSAVE_COMPONENTS; i++)
			if ((xcr0 >> i) & 1 && m->f.xsave[i].offset + m->f.xsave[i].size > size)
				size = m->f.xsave[i].offset + m->f.xsave[i].size;
		r->ebx = size;
	}
}
