/* kite's CPU model: the CPUID leaves a guest sees, the same code for both
 * engines. A model is kite's own choices (topology, cache description,
 * hypervisor leaves, which features kite is willing to show at all) applied
 * to a feature set the engine supplies:
 *
 *   - kvm: kite's feature mask AND what KVM_GET_SUPPORTED_CPUID reports,
 *     with the host's vendor, family/model/stepping and XSAVE layout (guest
 *     XSAVE runs on the real CPU, so its layout is the hardware's);
 *   - soft: kite's feature mask AND what the emulator implements, with the
 *     standard (non-compacted, Intel) XSAVE offsets.
 *
 * Topology: one package with nr_cpus cores of one thread each; APIC ID ==
 * vCPU index. Leaf 1 EBX, leaf 0xB, leaf 4 and 0x80000008 ECX say so.
 *
 * Hypervisor leaves (0x40000000..): with CPUID_HV_KVM the model presents
 * KVM's signature "KVMKVMKVM\0\0\0" and the KVM paravirt feature leaf. On
 * the kvm engine this is the better choice for Linux guests: kvmclock (a
 * stable clocksource with no TSC calibration against the PIT, which is slow
 * and fragile nested), PV EOI and the NOP I/O delay are implemented by the
 * host kernel, so kite gets them for free and a stock kernel takes its
 * well-tested KVM guest paths. The soft engine implements none of that, so
 * it uses CPUID_HV_KITE: signature "KiteKiteKite" and the timing leaf
 * 0x40000010 (TSC and LAPIC bus frequency in kHz, as VMware defined it),
 * plus leaves 0x15/0x16 with the TSC frequency when known.
 *
 * Dynamic bits (OSXSAVE in 1.ECX, OSPKE in 7.ECX, the enabled-size in
 * 0xD.0.EBX, the APIC bit after APIC_BASE.EN is cleared) depend on the
 * vCPU's live state: KVM updates them itself; the soft engine must patch
 * them at CPUID time (see cpuid_apply_dynamic). */
#ifndef KITE_ARCH_X86_CPUID_H
#define KITE_ARCH_X86_CPUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cpuid_regs {
	uint32_t eax, ebx, ecx, edx;
};

/* The CPUID registers that carry feature flags. */
enum cpuid_word {
	CPUID_1_ECX,
	CPUID_1_EDX,
	CPUID_6_EAX,
	CPUID_7_0_EBX,
	CPUID_7_0_ECX,
	CPUID_7_0_EDX,
	CPUID_7_1_EAX,
	CPUID_D_1_EAX,
	CPUID_8000_0001_ECX,
	CPUID_8000_0001_EDX,
	CPUID_8000_0007_EDX,
	CPUID_8000_0008_EBX,
	CPUID_4000_0001_EAX, /* KVM paravirt features (CPUID_HV_KVM only) */
	CPUID_NR_WORDS,
};

/* A few named bits the code and tests refer to. */
#define CPUID_1_ECX_X2APIC      (1u << 21)
#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_ECX_XSAVE       (1u << 26)
#define CPUID_1_ECX_OSXSAVE     (1u << 27)
#define CPUID_1_ECX_HYPERVISOR  (1u << 31)
#define CPUID_1_EDX_APIC        (1u << 9)
#define CPUID_1_EDX_HTT         (1u << 28)
#define CPUID_1_EDX_SSE2        (1u << 26)
#define CPUID_7_0_ECX_OSPKE     (1u << 4)
#define CPUID_8000_0001_EDX_LM  (1u << 29)

#define CPUID_XSAVE_COMPONENTS 32

/* What an engine can run. Feature words are masks; xsave_* describe the
 * XSAVE components the engine supports and their standard-format layout. */
struct cpu_features {
	uint32_t word[CPUID_NR_WORDS];
	uint64_t xcr0_mask;            /* XSAVE components usable in XCR0 */
	uint64_t xss_mask;             /* components usable in IA32_XSS */
	struct {
		uint32_t size, offset, flags; /* 0xD.i EAX, EBX, ECX */
	} xsave[CPUID_XSAVE_COMPONENTS];
};

enum cpuid_hv { CPUID_HV_KITE, CPUID_HV_KVM };

/* A CPU model: what the guest sees, apart from per-vCPU topology. */
struct cpu_model {
	char vendor[13];        /* "GenuineIntel", "AuthenticAMD" */
	uint32_t signature;     /* 1.EAX: family/model/stepping */
	char brand[49];         /* 0x80000002..4 */
	uint8_t phys_bits, virt_bits;
	uint32_t tsc_khz;       /* 0: unknown (no 0x15/0x16, no timing leaf) */
	uint32_t bus_khz;       /* LAPIC timer input clock, for the timing leaf */
	enum cpuid_hv hv;
	struct cpu_features f;  /* already intersected with kite's mask */
};

/* kite's own feature mask: every feature kite is willing to show a guest
 * (no VMX/SVM, MONITOR, PMU, TSX, SGX, debug-store, ...). XSAVE layout:
 * x87, SSE, AVX, AVX-512 and PKRU at their standard offsets. */
void cpuid_kite_features(struct cpu_features *f);

/* f &= mask (feature words and XSAVE masks; the layout is kept from f). */
void cpuid_features_and(struct cpu_features *f, const struct cpu_features *mask);

/* Build a feature set from an existing CPUID table (e.g. what
 * KVM_GET_SUPPORTED_CPUID returns), via a lookup that answers one leaf.
 * The lookup returns false for a leaf the table does not have (zeroes). */
typedef bool (*cpuid_lookup_fn)(void *opaque, uint32_t leaf, uint32_t subleaf,
				struct cpuid_regs *out);
void cpuid_features_from_table(struct cpu_features *f, cpuid_lookup_fn lookup, void *opaque);

/* A model with kite's defaults (vendor "GenuineIntel", brand "kite virtual
 * CPU", 40/48 address bits, hv as given) over the features `engine` can run
 * (intersected with kite's mask here). */
void cpuid_model_init(struct cpu_model *m, const struct cpu_features *engine, enum cpuid_hv hv);

/* The leaf a vCPU with APIC ID apic_id in a VM of nr_cpus sees. Leaves the
 * model does not have read as zeroes (the caller decides whether an out of
 * range leaf repeats the highest basic leaf, as Intel CPUs do). */
void cpuid_leaf(const struct cpu_model *m, uint32_t leaf, uint32_t subleaf,
		unsigned apic_id, unsigned nr_cpus, struct cpuid_regs *out);

/* Every leaf/subleaf the model defines, for tables such as KVM_SET_CPUID2.
 * significant_index: the leaf is indexed by ECX. */
struct cpuid_entry {
	uint32_t leaf, subleaf;
	bool significant_index;
	struct cpuid_regs r;
};
/* Fills up to max entries; returns the number the model has (which may be
 * more than max: call again with a bigger array). */
size_t cpuid_table(const struct cpu_model *m, unsigned apic_id, unsigned nr_cpus,
		   struct cpuid_entry *out, size_t max);

/* Patch the bits that follow live vCPU state (soft engine; KVM does this
 * itself). xcr0 selects the enabled XSAVE size in 0xD.0.EBX. */
void cpuid_apply_dynamic(uint32_t leaf, uint32_t subleaf, uint64_t cr4, uint64_t xcr0,
			 bool apic_enabled, const struct cpu_model *m, struct cpuid_regs *r);

#endif
