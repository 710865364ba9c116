/* build/diff-test: the soft CPU against the host CPU.
 *
 *   diff-test [--quick|--long] [--seed N] [--filter GROUPS] [--skip GROUPS]
 *             [--cases N] [--show N] [--native-selftest] [--list] [--dump]
 *             [--assume-host-vendor intel|amd] [--vendor-selftest]
 *
 * --assume-host-vendor overrides CPUID's answer about the host, to check the
 * vendor table (vendor.c) from a host of the other vendor: on an AMD host,
 * `--assume-host-vendor intel` turns the Intel-only rules off and the cases
 * they cover must then fail. --vendor-selftest checks the table's rules on
 * hand-made cases.
 *
 * --dump prints one line per case (bytes, where, how each side stopped).
 *
 * --filter/--skip take mnemonic groups as printed in the table,
 * comma-separated; a trailing '*' matches a prefix (--filter 'x87*,fxsave').
 *
 * Prints per mnemonic group the forms and cases run and the mismatches (each
 * with a precise diff), then "N passed, M failed" (cases) and the number of
 * instruction forms covered. Exit status 1 on any mismatch. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cpuid.h>

#include "diff.h"
#include "gen.h"

#define BATCH 512

struct group_stats {
	const char *name;
	int forms, variants;
	uint64_t cases, failed;
	uint64_t soft_ud; /* failed because the soft CPU raised #UD: not implemented */
	int shown;
};

/* a small string set for form keys */
#define FORMSET_SIZE 32768
static char *formset[FORMSET_SIZE];

static bool formset_add(const char *key)
{
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = key; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	for (uint64_t i = 0; i < FORMSET_SIZE; i++) {
		char **slot = &formset[(h + i) % FORMSET_SIZE];
		if (!*slot) {
			*slot = strdup(key);
			return true;
		}
		if (!strcmp(*slot, key))
			return false;
	}
	return false;
}

static int native_selftest(void);
static int vendor_selftest(void);

/* A sequence differs at the end: run its prefixes to name the first
 * instruction after which native and soft differ. */
static void localize(struct diff_soft_env *env, const struct diff_case *c)
{
	static struct diff_case p;
	static struct diff_result n, s;
	for (int i = 0; i < c->nseq - 1; i++) {
		p = *c;
		p.code_len = c->seq_end[i];
		p.flags_undef = c->seq_undef[i];
		p.nseq = 0;
		if (diff_native_run(&p, &n, 1) < 0)
			return;
		diff_soft_run(env, &p, &s);
		char why[128];
		if (!diff_compare(&p, &n, &s, why, sizeof(why))) {
			char dis[256];
			int start = i ? c->seq_end[i - 1] : 0;
			diff_disasm(c->code + start, c->seq_end[i] - start, dis, sizeof(dis));
			printf("    first difference (%s) after instruction %d: %s\n", why, i + 1, dis);
			return;
		}
	}
	printf("    first difference after the last instruction\n");
}

/* Instructions that exist only where CPUID says so: tested when both the
 * host and the soft CPU advertise them (without the feature, e.g. TZCNT
 * decodes as BSF, so the two would legitimately differ). */
static const struct {
	const char *group;
	uint32_t leaf, sub;
	int reg, bit; /* reg: 0 eax 1 ebx 2 ecx 3 edx */
	const char *feature;
} features[] = {
	{ "popcnt", 1, 0, 2, 23, "POPCNT" },
	{ "movbe", 1, 0, 2, 22, "MOVBE" },
	{ "cmpxchg16b", 1, 0, 2, 13, "CX16" },
	{ "lzcnt", 0x80000001, 0, 2, 5, "ABM/LZCNT" },
	{ "tzcnt", 7, 0, 1, 3, "BMI1/TZCNT" },
	{ "clflush", 1, 0, 3, 19, "CLFSH" },
	{ "lahf", 0x80000001, 0, 2, 0, "LAHF-SAHF in 64-bit mode" },
	{ "sahf", 0x80000001, 0, 2, 0, "LAHF-SAHF in 64-bit mode" },
};

static bool host_has(uint32_t leaf, uint32_t sub, int reg, int bit)
{
	unsigned r[4];
	if (__get_cpuid_max(leaf & 0x80000000, NULL) < leaf)
		return false;
	__cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
	return (r[reg] >> bit) & 1;
}

static bool soft_has(struct diff_soft_env *env, uint32_t leaf, uint32_t sub, int reg, int bit)
{
	uint32_t max[4], r[4];
	if (diff_soft_cpuid(env, leaf & 0x80000000, 0, max) < 0 || max[0] < leaf)
		return false;
	if (diff_soft_cpuid(env, leaf, sub, r) < 0)
		return false;
	return (r[reg] >> bit) & 1;
}

/* The feature a group needs is missing on one side: the reason, or NULL. */
static const char *group_skip(struct diff_soft_env *env, const char *group, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
		if (strcmp(features[i].group, group))
			continue;
		bool h = host_has(features[i].leaf, features[i].sub, features[i].reg, features[i].bit);
		bool s = soft_has(env, features[i].leaf, features[i].sub, features[i].reg,
				  features[i].bit);
		if (h && s)
			return NULL;
		snprintf(buf, len, "%s not advertised by the %s", features[i].feature,
			 !h && !s ? "host nor the soft CPU" : !h ? "host" : "soft CPU");
		return buf;
	}
	return NULL;
}

/* --filter: comma-separated mnemonic groups; "x87*" matches a prefix */
static bool filter_match(const char *filter, const char *group)
{
	const char *p = filter;
	while (*p) {
		size_t n = strcspn(p, ",");
		if (n > 0 && p[n - 1] == '*') {
			if (!strncmp(p, group, n - 1))
				return true;
		} else if (strlen(group) == n && !strncmp(p, group, n)) {
			return true;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return false;
}

static void usage(void)
{
	fprintf(stderr, "usage: diff-test [--quick|--long] [--seed N] [--filter GROUPS] "
			"[--skip GROUPS] [--cases N] [--show N] [--native-selftest] [--list] [--dump]\n"
			"                 [--assume-host-vendor intel|amd] [--vendor-selftest]\n");
}

int main(int argc, char **argv)
{
	uint64_t seed = (uint64_t)time(NULL);
	bool seed_given = false, list = false, dump = false;
	int per_variant = 16, show = 3;
	const char *filter = NULL, *skip_list = NULL;
	const char *mode = "quick";
	enum diff_vendor host = diff_host_vendor();
	bool host_assumed = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			per_variant = 16;
			mode = "quick";
		} else if (!strcmp(argv[i], "--long")) {
			per_variant = 400;
			mode = "long";
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			seed = strtoull(argv[++i], NULL, 0);
			seed_given = true;
		} else if (!strcmp(argv[i], "--filter") && i + 1 < argc) {
			filter = argv[++i];
		} else if (!strcmp(argv[i], "--skip") && i + 1 < argc) {
			skip_list = argv[++i];
		} else if (!strcmp(argv[i], "--cases") && i + 1 < argc) {
			per_variant = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--show") && i + 1 < argc) {
			show = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--native-selftest")) {
			return native_selftest();
		} else if (!strcmp(argv[i], "--assume-host-vendor") && i + 1 < argc) {
			if (diff_vendor_parse(argv[++i], &host) < 0) {
				usage();
				return 2;
			}
			host_assumed = true;
		} else if (!strcmp(argv[i], "--vendor-selftest")) {
			return vendor_selftest();
		} else if (!strcmp(argv[i], "--list")) {
			list = true;
		} else if (!strcmp(argv[i], "--dump")) {
			dump = true;
		} else {
			usage();
			return 2;
		}
	}
	/* the quick pass runs in the test suite: same cases every time unless
	 * a seed is given */
	if (!seed_given && !strcmp(mode, "quick"))
		seed = 1;

	if (gen_init() < 0) {
		fprintf(stderr, "diff-test: too many variants\n");
		return 2;
	}
	int nv = gen_variant_count();
	printf("diff-test: %s pass, seed %" PRIu64 " (rerun with --seed %" PRIu64 "), "
	       "%d variants, %d cases each\n", mode, seed, seed, nv, per_variant);

	struct group_stats *groups = calloc(nv, sizeof(*groups));
	int ngroups = 0;
	int *vgroup = calloc(nv, sizeof(int));
	for (int v = 0; v < nv; v++) {
		const char *g = gen_variant_group(v);
		int gi;
		for (gi = 0; gi < ngroups; gi++)
			if (!strcmp(groups[gi].name, g))
				break;
		if (gi == ngroups)
			groups[ngroups++].name = g;
		vgroup[v] = gi;
	}

	struct diff_case *cases = calloc(BATCH, sizeof(*cases));
	struct diff_result *nat = calloc(BATCH, sizeof(*nat));
	struct diff_result *soft = malloc(sizeof(*soft));
	struct diff_soft_env *env = diff_soft_env_new();
	if (!cases || !nat || !soft || !env || !groups || !vgroup) {
		fprintf(stderr, "diff-test: out of memory (soft guest memory: 1 GiB)\n");
		return 2;
	}

	uint32_t id[4];
	char model_id[13] = { 0 };
	if (diff_soft_cpuid(env, 0, 0, id) < 0) {
		fprintf(stderr, "diff-test: CPUID on the soft CPU failed\n");
		return 2;
	}
	memcpy(model_id, &id[1], 4);
	memcpy(model_id + 4, &id[3], 4);
	memcpy(model_id + 8, &id[2], 4);
	enum diff_vendor model = diff_vendor_from_cpuid(model_id);
	printf("host vendor %s (%s), soft CPU advertises %s: %s\n", diff_vendor_name(host),
	       host_assumed ? "assumed" : "CPUID", model_id,
	       host == model ? "compared with the host as it is"
			     : "vendor-specific cases compared with the soft CPU's vendor (vendor.c)");
	uint64_t *quirk_hits = calloc(diff_nquirks, sizeof(uint64_t));

	bool *skip = calloc(ngroups, sizeof(bool));
	for (int g = 0; g < ngroups; g++) {
		char why[96];
		const char *w = group_skip(env, groups[g].name, why, sizeof(why));
		if (w && (!filter || filter_match(filter, groups[g].name))) {
			printf("skipping %s: %s\n", groups[g].name, w);
			skip[g] = true;
		}
		if (skip_list && filter_match(skip_list, groups[g].name)) {
			printf("skipping %s: --skip\n", groups[g].name);
			skip[g] = true;
		}
	}

	uint64_t passed = 0, failed = 0;
	int forms = 0, nb = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	int v = 0, n = 0;
	for (;;) {
		nb = 0;
		while (nb < BATCH && v < nv) {
			if ((filter && !filter_match(filter, gen_variant_group(v))) || skip[vgroup[v]] ||
			    n >= per_variant) {
				v++;
				n = 0;
				continue;
			}
			if (n == 0)
				groups[vgroup[v]].variants++;
			if (gen_case(v, seed, (uint64_t)n++, &cases[nb]) < 0)
				continue;
			char key[256];
			gen_form_key(&cases[nb], key, sizeof(key));
			/* sequences recombine forms counted elsewhere */
			if (strcmp(gen_variant_group(v), "seq") &&
			    strcmp(gen_variant_group(v), "fetch-edge") && formset_add(key)) {
				forms++;
				groups[vgroup[v]].forms++;
				if (list)
					printf("  form %-10s %s\n", gen_variant_group(v), key);
			}
			nb++;
		}
		if (nb == 0)
			break;
		int rc = diff_native_run(cases, nat, nb);
		if (rc < 0) {
			fprintf(stderr, "diff-test: native runner failed: %s\n", strerror(-rc));
			return 2;
		}
		for (int i = 0; i < nb; i++) {
			struct group_stats *gs = &groups[vgroup[cases[i].form]];
			diff_soft_run(env, &cases[i], soft);
			char why[128];
			gs->cases++;
			int q = diff_vendor_adjust(&cases[i], &nat[i], host, model);
			if (q >= 0)
				quirk_hits[q]++;
			if (dump) {
				char dis[256], a[96], b[96];
				diff_disasm(cases[i].code, cases[i].code_len, dis, sizeof(dis));
				printf("  %-10s %-50s at +%#" PRIx64 ": native %s rip +%#" PRIx64
				       " | soft %s rip +%#" PRIx64 "\n", gs->name, dis,
				       cases[i].in.rip - DIFF_CODE_BASE, diff_stop_name(&nat[i], a, sizeof(a)),
				       nat[i].out.rip - DIFF_CODE_BASE, diff_stop_name(soft, b, sizeof(b)),
				       soft->out.rip - DIFF_CODE_BASE);
			}
			if (diff_compare(&cases[i], &nat[i], soft, why, sizeof(why))) {
				passed++;
				continue;
			}
			failed++;
			gs->failed++;
			if (soft->stop == STOP_EXCEPTION && soft->vector == 6 &&
			    !(nat[i].stop == STOP_EXCEPTION && nat[i].vector == 6))
				gs->soft_ud++;
			if (gs->shown++ < show) {
				printf("[%s]\n", gs->name);
				diff_report(&cases[i], &nat[i], soft, why);
				if (cases[i].nseq > 1)
					localize(env, &cases[i]);
			}
		}
	}

	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("\n%-12s %6s %9s %9s %8s %8s\n", "mnemonic", "forms", "variants", "cases", "failed",
	       "soft#UD");
	uint64_t ud_total = 0;
	int ud_groups = 0, bad_groups = 0;
	for (int g = 0; g < ngroups; g++) {
		if (!groups[g].variants)
			continue;
		printf("%-12s %6d %9d %9" PRIu64 " %8" PRIu64 " %8" PRIu64 "%s\n", groups[g].name,
		       groups[g].forms, groups[g].variants, groups[g].cases, groups[g].failed,
		       groups[g].soft_ud, groups[g].failed ? "  <-- MISMATCH" : "");
		ud_total += groups[g].soft_ud;
		ud_groups += groups[g].soft_ud > 0;
		bad_groups += groups[g].failed > groups[g].soft_ud;
	}
	if (failed)
		printf("\nof the failures, %" PRIu64 " are soft #UD where the host raised no #UD "
		       "(not implemented, %d groups); %d groups have other mismatches\n",
		       ud_total, ud_groups, bad_groups);
	for (int q = 0; q < diff_nquirks; q++)
		if (quirk_hits[q])
			printf("\n%" PRIu64 " cases %s by %s: %s", quirk_hits[q],
			       diff_quirks[q].action == DIFF_QUIRK_EXPECT ? "compared with the rule"
									  : "partly masked",
			       diff_quirks[q].name, diff_quirks[q].reason);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("\n%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
	printf("%d instruction forms covered, %.1f s, seed %" PRIu64 "\n", forms, secs, seed);
	diff_native_shutdown();
	diff_soft_env_free(env);
	free(skip);
	free(quirk_hits);
	free(soft);
	free(nat);
	free(cases);
	free(vgroup);
	free(groups);
	for (int i = 0; i < FORMSET_SIZE; i++)
		free(formset[i]);
	return failed ? 1 : 0;
}

/* ---- native self-test: known sequences with hand-computed results ---- */

struct selftest {
	const char *name;
	uint8_t code[16];
	int len;
	uint64_t rax, rcx, rdx, rflags;
	/* expected */
	uint8_t vector;
	uint64_t e_rax, e_rdx, e_rip_off;
	uint64_t e_flags_mask, e_flags;
	uint64_t e_cr2;
};

static int native_selftest(void)
{
	static const struct selftest t[] = {
		/* add eax, ecx: 0xffffffff + 1 = 0, CF ZF PF AF set */
		{ "add eax,ecx", { 0x01, 0xc8 }, 2, 0xffffffff, 1, 0, 0x202, 3,
		  0, 0, 3, 0x8d5, 0x55, 0 },
		/* sub al, 1 from 0x80 -> 0x7f, OF set, AF set */
		{ "sub al,1", { 0x2c, 0x01 }, 2, 0x80, 0, 0, 0x202, 3,
		  0x7f, 0, 3, 0x8d5, 0x810, 0 },
		/* div ecx with ecx=0: #DE at the instruction */
		{ "div ecx (0)", { 0xf7, 0xf1 }, 2, 10, 0, 0, 0x202, 0,
		  10, 0, 0, 0, 0, 0 },
		/* div ecx: 100/7 = 14 r 2 */
		{ "div ecx", { 0xf7, 0xf1 }, 2, 100, 7, 0, 0x202, 3,
		  14, 2, 3, 0, 0, 0 },
		/* ud2 */
		{ "ud2", { 0x0f, 0x0b }, 2, 0, 0, 0, 0x202, 6, 0, 0, 0, 0, 0, 0 },
		/* mov eax, [0x1000]: #PF, cr2 0x1000 */
		{ "mov eax,[0x1000]", { 0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00 }, 7,
		  5, 0, 0, 0x202, 14, 5, 0, 0, 0, 0, 0x1000 },
		/* hlt at CPL3: #GP */
		{ "hlt", { 0xf4 }, 1, 0, 0, 0, 0x202, 13, 0, 0, 0, 0, 0, 0 },
		/* std; pushf; pop rax: DF visible */
		{ "std;pushf;pop", { 0xfd, 0x9c, 0x58 }, 3, 0, 0, 0, 0x202, 3,
		  0x602, 0, 4, 0x400, 0x400, 0 },
		/* the child exits under us (exit_group(2)): a crashed case,
		 * the batch goes on */
		{ "exit_group", { 0xb8, 0xe7, 0, 0, 0, 0xbf, 2, 0, 0, 0, 0x0f, 0x05 }, 12,
		  0, 0, 0, 0x202, 0xff, 0, 0, 0, 0, 0, 0 },
		/* jmp $: the timer stops it */
		{ "hang", { 0xeb, 0xfe }, 2, 0, 0, 0, 0x202, 0xfe, 0, 0, 0, 0, 0, 0 },
		{ "int3 after", { 0xcc }, 1, 7, 0, 0, 0x202, 3, 7, 0, 1, 0, 0, 0 },
	};
	int n = sizeof(t) / sizeof(t[0]), bad = 0;
	struct diff_case *c = calloc(n, sizeof(*c));
	struct diff_result *r = calloc(n, sizeof(*r));
	for (int i = 0; i < n; i++) {
		memcpy(c[i].code, t[i].code, t[i].len);
		c[i].code_len = (uint8_t)t[i].len;
		c[i].in.gpr[RAX] = t[i].rax;
		c[i].in.gpr[RCX] = t[i].rcx;
		c[i].in.gpr[RDX] = t[i].rdx;
		c[i].in.gpr[RSP] = DIFF_STACK_TOP;
		c[i].in.rip = DIFF_CODE_BASE;
		c[i].in.rflags = t[i].rflags;
		c[i].in.mxcsr = 0x1f80;
		c[i].fill = FILL_ZERO;
	}
	if (diff_native_run(c, r, n) < 0) {
		printf("native runner failed\n");
		free(c);
		free(r);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char buf[96];
		bool ok = r[i].stop == STOP_EXCEPTION && r[i].vector == t[i].vector &&
			  r[i].out.gpr[RAX] == t[i].e_rax && r[i].out.gpr[RDX] == t[i].e_rdx &&
			  r[i].out.rip == DIFF_CODE_BASE + t[i].e_rip_off &&
			  (r[i].out.rflags & t[i].e_flags_mask) == t[i].e_flags &&
			  r[i].cr2 == t[i].e_cr2;
		if (t[i].vector == 0xff)
			ok = r[i].stop == STOP_CRASH;
		if (t[i].vector == 0xfe)
			ok = r[i].stop == STOP_TIMEOUT;
		if (!strcmp(t[i].name, "std;pushf;pop"))
			ok = r[i].stop == STOP_EXCEPTION && r[i].vector == 3 &&
			     (r[i].out.gpr[RAX] & 0x400) && (r[i].out.rflags & 0x400);
		printf("%-20s %s  stop %s rax %#" PRIx64 " rdx %#" PRIx64 " rip +%#" PRIx64
		       " rflags %#" PRIx64 "\n", t[i].name, ok ? "ok  " : "FAIL",
		       diff_stop_name(&r[i], buf, sizeof(buf)), r[i].out.gpr[RAX],
		       r[i].out.gpr[RDX], r[i].out.rip - DIFF_CODE_BASE, r[i].out.rflags);
		bad += !ok;
	}
	/* generator: every variant encodes and decodes */
	if (gen_init() < 0)
		return 1;
	struct diff_case gc;
	int gv = 0;
	for (int v = 0; v < gen_variant_count(); v++)
		gv += gen_case(v, 42, 0, &gc) == 0;
	printf("generator: %d variants, %d generated a case\n", gen_variant_count(), gv);
	diff_native_shutdown();
	free(c);
	free(r);
	printf("%d passed, %d failed\n", n - bad, bad);
	return bad ? 1 : 0;
}

/* ---- vendor self-test: the vendor table's rules on hand-made cases ---- */

struct vendor_check {
	const char *name;
	const char *hex; /* the case's bytes */
	uint64_t rcx, rsi, rdi;
	uint8_t vector;  /* how the native side stopped */
	uint64_t out_rcx; /* native RCX after (the input RCX unless it ran) */
	enum diff_vendor host;
	int quirk;        /* expected index, -1 none */
	uint64_t e_rcx, e_rsi, e_rdi, e_undef;
};

static int vendor_selftest(void)
{
	const uint64_t hi = 0xdead000000000000ULL, si = DIFF_DATA_BASE + 0x800,
		       di = DIFF_DATA_BASE + 0x2000;
	static const struct vendor_check t[] = {
		{ "amd host, 67 rep stosb, ecx 0", "67 f3 aa", 0xdead000000000000ULL, 0, 0, 3,
		  0xdead000000000000ULL, VENDOR_AMD, 0, 0, 0, 0, 0 },
		{ "intel host, 67 rep stosb, ecx 0", "67 f3 aa", 0xdead000000000000ULL, 0, 0, 3,
		  0xdead000000000000ULL, VENDOR_INTEL, -1, 0, 0, 0, 0 },
		{ "amd host, 67 rep lodsw, ecx 0", "67 f3 66 ad", 0xdead000000000000ULL, 0, 0, 3,
		  0xdead000000000000ULL, VENDOR_AMD, 0, 0, 0, 0, 0 },
		{ "amd host, 67 repne cmpsq, ecx 0", "67 f2 48 a7", 0xdead000000000000ULL, 0, 0, 3,
		  0xdead000000000000ULL, VENDOR_AMD, 0, 0, 0, 0, 0 },
		{ "amd host, rep stosb (64-bit addressing), ecx 0", "f3 aa", 0xdead000000000000ULL,
		  0, 0, 3, 0xdead000000000000ULL, VENDOR_AMD, -1, 0, 0, 0, 0 },
		{ "amd host, 67 rep stosb, ecx 5", "67 f3 aa", 0xdead000000000005ULL, 0, 0, 3, 0,
		  VENDOR_AMD, -1, 0, 0, 0, 0 },
		{ "amd host, 67 stosb without rep", "67 aa", 0xdead000000000000ULL, 0, 0, 3,
		  0xdead000000000000ULL, VENDOR_AMD, -1, 0, 0, 0, 0 },
		{ "intel host, repne scasb #PF part-way", "f2 ae", 9, 0, 0, 14, 4, VENDOR_INTEL, 1,
		  0, 0, 0, 0x8d5 },
		{ "amd host, repe cmpsd #PF part-way", "f3 a7", 9, 0, 0, 14, 4, VENDOR_AMD, 1, 0, 0,
		  0, 0x8d5 },
		{ "amd host, repne scasb #PF at the first element", "f2 ae", 9, 0, 0, 14, 9,
		  VENDOR_AMD, -1, 0, 0, 0, 0 },
		{ "amd host, rep movsb #PF part-way", "f3 a4", 9, 0, 0, 14, 4, VENDOR_AMD, -1, 0, 0,
		  0, 0 },
	};
	int n = sizeof(t) / sizeof(t[0]), bad = 0;
	for (int i = 0; i < n; i++) {
		struct diff_case c;
		static struct diff_result r;
		memset(&c, 0, sizeof(c));
		memset(&r, 0, sizeof(r));
		for (const char *p = t[i].hex; *p;) {
			char *end;
			c.code[c.code_len++] = (uint8_t)strtoul(p, &end, 16);
			p = end;
			while (*p == ' ')
				p++;
		}
		c.in.gpr[RCX] = t[i].rcx;
		c.in.gpr[RSI] = si | hi;
		c.in.gpr[RDI] = di | hi;
		r.stop = STOP_EXCEPTION;
		r.vector = t[i].vector;
		r.out = c.in;
		r.out.gpr[RCX] = t[i].out_rcx;
		int q = diff_vendor_adjust(&c, &r, t[i].host, VENDOR_INTEL);
		bool ok = q == t[i].quirk;
		if (ok && q == 0) {
			bool rsi = !strstr(t[i].hex, "aa") && !strstr(t[i].hex, "ae");
			bool rdi = !strstr(t[i].hex, "ad") && !strstr(t[i].hex, "ac");
			ok = r.out.gpr[RCX] == 0 && r.out.gpr[RSI] == (rsi ? si : si | hi) &&
			     r.out.gpr[RDI] == (rdi ? di : di | hi);
		} else if (ok && q < 0) {
			ok = r.out.gpr[RCX] == t[i].out_rcx && r.out.gpr[RSI] == (si | hi) &&
			     r.out.gpr[RDI] == (di | hi) && c.flags_undef == 0;
		}
		if (ok)
			ok = (c.flags_undef & t[i].e_undef) == t[i].e_undef;
		printf("%-50s %s (quirk %d)\n", t[i].name, ok ? "ok  " : "FAIL", q);
		bad += !ok;
	}
	static const struct { const char *id; enum diff_vendor v; } ids[] = {
		{ "GenuineIntel", VENDOR_INTEL }, { "AuthenticAMD", VENDOR_AMD },
		{ "HygonGenuine", VENDOR_AMD }, { "CentaurHauls", VENDOR_OTHER },
	};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		bool ok = diff_vendor_from_cpuid(ids[i].id) == ids[i].v;
		printf("vendor of %-40s %s\n", ids[i].id, ok ? "ok  " : "FAIL");
		bad += !ok;
		n++;
	}
	printf("%d passed, %d failed\n", n - bad, bad);
	return bad ? 1 : 0;
}
