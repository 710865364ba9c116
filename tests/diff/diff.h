/* Differential testing of the soft CPU against the host CPU.
 *
 * One case = a few instruction bytes plus a complete input state (GPRs,
 * RFLAGS, XMM/MXCSR, the contents of a small data area). The same case runs
 * natively in a child process (native.c) and on soft_run_standalone
 * (soft_side.c); compare.c checks the two results.
 *
 * Address space, identical on both sides (the soft side maps these with
 * identity-mapped 4-level user pages and nothing else, so an access
 * anywhere else is #PF on both):
 *   DIFF_CODE_BASE  one page, read + execute; the case's bytes, then INT3s
 *   DIFF_DATA_BASE  DIFF_DATA_SIZE bytes, read + write, no execute; memory
 *                   operands, string buffers and the stack live here
 */
#ifndef KITE_TESTS_DIFF_DIFF_H
#define KITE_TESTS_DIFF_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpu_state.h" /* enum gpr, RFLAGS_* */

#define DIFF_CODE_BASE  UINT64_C(0x10000000)
#define DIFF_CODE_SIZE  UINT64_C(0x1000)
#define DIFF_DATA_BASE  UINT64_C(0x20000000)
#define DIFF_DATA_SIZE  UINT64_C(0x4000)
#define DIFF_STACK_TOP  (DIFF_DATA_BASE + 0x3800)  /* initial RSP */
#define DIFF_MAX_CODE   64
#define DIFF_MAX_PATCH  4

/* Register file exchanged with the native trampoline: the field offsets are
 * used by the asm in native.c (checked by static asserts there). */
struct diff_regs {
	uint64_t gpr[16];    /* 0: RAX..R15 in encoding order */
	uint64_t rip;        /* 128 */
	uint64_t rflags;     /* 136 */
	uint32_t mxcsr;      /* 144 */
	uint32_t pad;
	uint64_t pad2;
	uint8_t xmm[16][16]; /* 160 */
	/* x87, output only (every case starts from FNINIT): FXSAVE-style
	 * abridged tag byte and ST0-7 in stack order, 80 bits each */
	uint16_t fcw, fsw;
	uint8_t ftw;
	uint8_t st[8][10];
};

/* How the data area is filled before a case (deterministic from seed). */
enum diff_fill { FILL_RANDOM, FILL_SMALL /* bytes 0/1: equal runs */, FILL_ZERO };

struct diff_patch {
	uint16_t off;   /* offset in the data area */
	uint8_t len;    /* 0 = unused */
	uint8_t bytes[16];
};

struct diff_case {
	uint8_t code[DIFF_MAX_CODE];
	uint8_t code_len;
	uint8_t native_trailer; /* falls through: native may end it without a trap */
	uint8_t fill;          /* enum diff_fill */
	uint64_t fill_seed;
	struct diff_patch patch[DIFF_MAX_PATCH];
	struct diff_regs in;
	/* what the comparison ignores for this case (undefined by the SDM) */
	uint64_t flags_undef;  /* RFLAGS bits */
	uint16_t gpr_undef;    /* bit per GPR whose value is undefined */
	uint16_t fsw_undef;    /* x87 status word bits (C0-C3) undefined */
	struct { uint16_t off, len; } mem_undef[2]; /* data bytes not compared */
	int form;              /* index into the form table (gen.c) */
	/* sequences: where each instruction ends and what is undefined then
	 * (to find the first instruction after which the two sides differ) */
	uint8_t nseq;
	uint8_t seq_end[8];
	uint64_t seq_undef[8];
};

enum diff_stop {
	STOP_EXCEPTION, /* vector says which; INT3 at the end is vector 3 */
	STOP_TIMEOUT,   /* native: ran too long; soft: instruction limit */
	STOP_IO,        /* soft only: port I/O or MMIO */
	STOP_HLT,       /* soft only */
	STOP_CRASH,     /* native child died / soft returned an error */
};

struct diff_result {
	uint8_t stop;       /* enum diff_stop */
	uint8_t vector;
	uint32_t err;
	uint64_t cr2;
	int32_t soft_errno; /* STOP_CRASH on the soft side */
	struct diff_regs out;
	uint8_t data[DIFF_DATA_SIZE];
};

/* ---- the data area ---- */
void diff_fill_data(const struct diff_case *c, uint8_t *data);
/* byte `off` of the data area is excluded from the comparison */
static inline bool diff_mem_undef(const struct diff_case *c, uint64_t off)
{
	for (int i = 0; i < 2; i++)
		if (off >= c->mem_undef[i].off && off < (uint64_t)c->mem_undef[i].off + c->mem_undef[i].len)
			return true;
	return false;
}

/* ---- native.c ---- */
/* Run cases[0..n) natively, filling res[0..n). 0 or a negative errno. */
int diff_native_run(const struct diff_case *cases, struct diff_result *res, int n);
/* End the worker child (it also ends by itself when we exit). */
void diff_native_shutdown(void);

/* ---- soft_side.c ---- */
struct diff_soft_env;
struct diff_soft_env *diff_soft_env_new(void);
void diff_soft_env_free(struct diff_soft_env *e);
void diff_soft_run(struct diff_soft_env *e, const struct diff_case *c, struct diff_result *r);
int diff_soft_cpuid(struct diff_soft_env *e, uint32_t leaf, uint32_t sub, uint32_t out[4]);

/* ---- flags.c: RFLAGS bits the SDM leaves undefined ---- */
/* mnemonic is a ZydisMnemonic; opsize in bits; count is the masked count
 * for shifts/rotates (ignored elsewhere). */
uint64_t diff_undef_flags(int mnemonic, int opsize, unsigned count);

/* ---- compare.c ---- */
#define RFLAGS_COMPARED 0x240DD5ULL /* CF PF AF ZF SF TF DF OF AC ID */
bool diff_compare(const struct diff_case *c, const struct diff_result *nat,
		  const struct diff_result *soft, char *why, size_t len);
void diff_report(const struct diff_case *c, const struct diff_result *nat,
		 const struct diff_result *soft, const char *why);
void diff_disasm(const uint8_t *code, int len, char *out, size_t outlen);
const char *diff_stop_name(const struct diff_result *r, char *buf, size_t len);

/* ---- vendor.c: vendor-specific and SDM-open behaviour ---- */
enum diff_vendor { VENDOR_INTEL, VENDOR_AMD, VENDOR_OTHER };
enum diff_quirk_action {
	DIFF_QUIRK_EXPECT, /* compare against the model vendor's rule */
	DIFF_QUIRK_MASK,   /* leave the named part out of the comparison */
};
struct diff_quirk {
	const char *name, *reason;
	/* the vendor whose behaviour the rule describes; VENDOR_OTHER: open
	 * on every vendor (applied on every host) */
	enum diff_vendor vendor;
	enum diff_quirk_action action;
	bool (*match)(const struct diff_case *c, const struct diff_result *nat);
	void (*expect)(const struct diff_case *c, struct diff_result *nat);
	void (*mask)(struct diff_case *c);
};
extern const struct diff_quirk diff_quirks[];
extern const int diff_nquirks;
const char *diff_vendor_name(enum diff_vendor v);
int diff_vendor_parse(const char *s, enum diff_vendor *v);
enum diff_vendor diff_vendor_from_cpuid(const char id[12]);
enum diff_vendor diff_host_vendor(void);
/* Before comparing: apply the quirk that covers this case on this host,
 * rewriting the native result (EXPECT) or the case's masks (MASK). The
 * quirk's index, or -1 when none applies. */
int diff_vendor_adjust(struct diff_case *c, struct diff_result *nat, enum diff_vendor host,
		       enum diff_vendor model);

/* ---- small deterministic PRNG (splitmix64) ---- */
static inline uint64_t diff_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

#endif
