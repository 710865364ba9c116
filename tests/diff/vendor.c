/* Behaviour that differs between CPU vendors, or that the SDM leaves open.
 *
 * The soft CPU is one model: the vendor it advertises in CPUID leaf 0
 * (GenuineIntel). On a host of that vendor the native result is the
 * reference as it is. On a host of another vendor, each case below that the
 * two vendors execute differently is either compared against the advertised
 * vendor's behaviour (the native result rewritten by the rule the SDM
 * states: DIFF_QUIRK_EXPECT) or, where no rule is known, masked
 * (DIFF_QUIRK_MASK). A few behaviours are open on every vendor: those are
 * masked on every host. main.c counts and prints every case a quirk touched,
 * per quirk, so nothing is adjusted silently; tests/diff/README.md lists
 * the table. */
#include <string.h>

#include <cpuid.h>

#include "diff.h"

#define STATUS_FLAGS 0x8d5ULL /* OF SF ZF AF PF CF */

const char *diff_vendor_name(enum diff_vendor v)
{
	switch (v) {
	case VENDOR_INTEL: return "intel";
	case VENDOR_AMD: return "amd";
	default: return "other";
	}
}

int diff_vendor_parse(const char *s, enum diff_vendor *v)
{
	if (!strcmp(s, "intel"))
		*v = VENDOR_INTEL;
	else if (!strcmp(s, "amd"))
		*v = VENDOR_AMD;
	else
		return -1;
	return 0;
}

enum diff_vendor diff_vendor_from_cpuid(const char id[12])
{
	if (!memcmp(id, "GenuineIntel", 12))
		return VENDOR_INTEL;
	/* Hygon's cores are AMD's Zen */
	if (!memcmp(id, "AuthenticAMD", 12) || !memcmp(id, "HygonGenuine", 12))
		return VENDOR_AMD;
	return VENDOR_OTHER;
}

enum diff_vendor diff_host_vendor(void)
{
	unsigned a, b, c, d;
	char id[12];
	__cpuid(0, a, b, c, d);
	memcpy(id, &b, 4);
	memcpy(id + 4, &d, 4);
	memcpy(id + 8, &c, 4);
	return diff_vendor_from_cpuid(id);
}

/* The string instruction of a case that is one (legacy prefixes, REX, then
 * A4-AF): its opcode, whether 67 and a REP prefix are present. */
struct str_insn {
	uint8_t op;
	bool a32, rep;
};

static bool string_insn(const struct diff_case *c, struct str_insn *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < c->code_len; i++) {
		uint8_t b = c->code[i];
		if (b == 0x67)
			s->a32 = true;
		else if (b == 0xf2 || b == 0xf3)
			s->rep = true;
		else if (b == 0x66 || (b >= 0x40 && b <= 0x4f))
			continue;
		else if (b >= 0xa4 && b <= 0xaf && b != 0xa8 && b != 0xa9) {
			s->op = b;
			return i + 1 == c->code_len;
		} else
			return false;
	}
	return false;
}

static bool uses_rsi(uint8_t op)
{
	return op <= 0xa7 || op == 0xac || op == 0xad; /* MOVS, CMPS, LODS */
}

static bool uses_rdi(uint8_t op)
{
	return op != 0xac && op != 0xad; /* all but LODS */
}

/* Intel: in 64-bit mode a REP string instruction with 32-bit addressing and
 * ECX=0 still writes ECX and the index registers it uses, which clears their
 * upper halves; AMD leaves the registers untouched. */
static bool rep_a32_count0_match(const struct diff_case *c, const struct diff_result *nat)
{
	struct str_insn s;
	return string_insn(c, &s) && s.a32 && s.rep && (uint32_t)c->in.gpr[RCX] == 0 &&
	       nat->stop == STOP_EXCEPTION && nat->vector == 3;
}

static void rep_a32_count0_expect(const struct diff_case *c, struct diff_result *nat)
{
	struct str_insn s;
	string_insn(c, &s);
	nat->out.gpr[RCX] = 0;
	if (uses_rsi(s.op))
		nat->out.gpr[RSI] = (uint32_t)nat->out.gpr[RSI];
	if (uses_rdi(s.op))
		nat->out.gpr[RDI] = (uint32_t)nat->out.gpr[RDI];
}

/* A REPE/REPNE CMPS/SCAS that takes #PF after at least one iteration: the
 * SDM defines RCX/RSI/RDI (the instruction restarts) but not the status
 * flags in the saved frame. AMD leaves those of the last completed
 * iteration (as the soft CPU does); Intel hosts differ (CI's Intel runs),
 * so the status flags are not compared on any host. */
static bool rep_cmps_fault_match(const struct diff_case *c, const struct diff_result *nat)
{
	struct str_insn s;
	return string_insn(c, &s) && s.rep && (s.op == 0xa6 || s.op == 0xa7 || s.op >= 0xae) &&
	       nat->stop == STOP_EXCEPTION && nat->vector == 14 &&
	       nat->out.gpr[RCX] != c->in.gpr[RCX];
}

static void rep_cmps_fault_mask(struct diff_case *c)
{
	c->flags_undef |= STATUS_FLAGS;
}

const struct diff_quirk diff_quirks[] = {
	{
		.name = "rep-a32-count0",
		.reason = "67-prefixed REP string op with ECX=0: Intel zero-extends RCX and the "
			  "index registers it uses, AMD leaves them",
		.vendor = VENDOR_INTEL,
		.action = DIFF_QUIRK_EXPECT,
		.match = rep_a32_count0_match,
		.expect = rep_a32_count0_expect,
	},
	{
		.name = "rep-cmps-fault-flags",
		.reason = "status flags saved by a #PF part-way through REPE/REPNE CMPS/SCAS: not "
			  "defined by the SDM, Intel and AMD differ",
		.vendor = VENDOR_OTHER, /* open on every vendor */
		.action = DIFF_QUIRK_MASK,
		.match = rep_cmps_fault_match,
		.mask = rep_cmps_fault_mask,
	},
};
const int diff_nquirks = sizeof(diff_quirks) / sizeof(diff_quirks[0]);

int diff_vendor_adjust(struct diff_case *c, struct diff_result *nat, enum diff_vendor host,
		       enum diff_vendor model)
{
	for (int i = 0; i < diff_nquirks; i++) {
		const struct diff_quirk *q = &diff_quirks[i];
		/* a vendor-specific behaviour of the model's vendor needs no
		 * help on a host of that vendor */
		if (q->vendor != VENDOR_OTHER && (q->vendor != model || host == model))
			continue;
		if (!q->match(c, nat))
			continue;
		if (q->action == DIFF_QUIRK_EXPECT)
			q->expect(c, nat);
		else
			q->mask(c);
		return i;
	}
	return -1;
}
