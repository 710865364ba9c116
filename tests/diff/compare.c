/* Comparison of a native and a soft result, and the mismatch report. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "diff.h"

static const char *const gpr_name[16] = { "rax", "rcx", "rdx", "rbx", "rsp", "rbp",
	"rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15" };

static const char *const vec_name[32] = { "#DE", "#DB", "NMI", "#BP", "#OF", "#BR",
	"#UD", "#NM", "#DF", "?9", "#TS", "#NP", "#SS", "#GP", "#PF", "?15", "#MF",
	"#AC", "#MC", "#XM", "#VE", "#CP" };

const char *diff_stop_name(const struct diff_result *r, char *buf, size_t len)
{
	switch (r->stop) {
	case STOP_EXCEPTION: {
		const char *n = r->vector < 32 && vec_name[r->vector] ? vec_name[r->vector] : "?";
		if (r->vector == 14)
			snprintf(buf, len, "%s(vec %u) err=%#x cr2=%#" PRIx64, n, r->vector,
				 r->err, r->cr2);
		else if (r->vector == 13 || r->vector == 12 || r->vector == 17)
			snprintf(buf, len, "%s(vec %u) err=%#x", n, r->vector, r->err);
		else
			snprintf(buf, len, "%s(vec %u)", n, r->vector);
		break;
	}
	case STOP_TIMEOUT: snprintf(buf, len, "timeout/limit"); break;
	case STOP_IO: snprintf(buf, len, "I/O stop"); break;
	case STOP_HLT: snprintf(buf, len, "HLT"); break;
	default: snprintf(buf, len, "crash (errno %d)", r->soft_errno); break;
	}
	return buf;
}

void diff_disasm(const uint8_t *code, int len, char *out, size_t outlen)
{
	size_t pos = 0;
	int off = 0;
	out[0] = 0;
	while (off < len && pos + 2 < outlen) {
		ZydisDisassembledInstruction insn;
		if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64,
				DIFF_CODE_BASE + off, code + off, len - off, &insn))) {
			pos += snprintf(out + pos, outlen - pos, "%s(bad %02x)", off ? "; " : "", code[off]);
			break;
		}
		pos += snprintf(out + pos, outlen - pos, "%s%s", off ? "; " : "", insn.text);
		off += insn.info.length;
	}
}

static bool stop_equal(const struct diff_result *a, const struct diff_result *b)
{
	if (a->stop != b->stop)
		return false;
	if (a->stop != STOP_EXCEPTION)
		return true;
	if (a->vector != b->vector)
		return false;
	/* #PF: address and the P/W/U/RSVD/I bits; #GP/#SS/#AC: the code */
	if (a->vector == 14) {
		/* the host's kernel half is mapped (supervisor pages: P=1);
		 * the soft side maps nothing there (P=0) */
		uint32_t m = a->cr2 >= 0xffff800000000000ULL ? 0x1e : 0x1f;
		return a->cr2 == b->cr2 && (a->err & m) == (b->err & m);
	}
	if (a->vector == 13 || a->vector == 12)
		return a->err == b->err;
	return true;
}

bool diff_compare(const struct diff_case *c, const struct diff_result *nat,
		  const struct diff_result *soft, char *why, size_t len)
{
	char a[96], b[96];
	why[0] = 0;
	if (!stop_equal(nat, soft)) {
		snprintf(why, len, "stop: native %s, soft %s", diff_stop_name(nat, a, sizeof(a)),
			 diff_stop_name(soft, b, sizeof(b)));
		return false;
	}
	if (nat->stop == STOP_TIMEOUT)
		return true; /* both ran away: nothing stable to compare */
	if (nat->out.rip != soft->out.rip) {
		snprintf(why, len, "rip");
		return false;
	}
	for (int i = 0; i < 16; i++) {
		if (c->gpr_undef & (1u << i))
			continue;
		if (nat->out.gpr[i] != soft->out.gpr[i]) {
			snprintf(why, len, "%s", gpr_name[i]);
			return false;
		}
	}
	uint64_t fm = RFLAGS_COMPARED & ~c->flags_undef;
	if ((nat->out.rflags & fm) != (soft->out.rflags & fm)) {
		snprintf(why, len, "rflags");
		return false;
	}
	if (nat->out.mxcsr != soft->out.mxcsr) {
		snprintf(why, len, "mxcsr");
		return false;
	}
	for (int i = 0; i < 16; i++) {
		if (memcmp(nat->out.xmm[i], soft->out.xmm[i], 16)) {
			snprintf(why, len, "xmm%d", i);
			return false;
		}
	}
	if (nat->out.fcw != soft->out.fcw) {
		snprintf(why, len, "x87 fcw");
		return false;
	}
	if ((nat->out.fsw ^ soft->out.fsw) & ~c->fsw_undef) {
		snprintf(why, len, "x87 fsw");
		return false;
	}
	if (nat->out.ftw != soft->out.ftw) {
		snprintf(why, len, "x87 tag word");
		return false;
	}
	/* ST(i) only where the register is in use: an empty one keeps
	 * whatever an earlier program left there */
	unsigned top = (nat->out.fsw >> 11) & 7;
	for (int i = 0; i < 8; i++) {
		if (!(nat->out.ftw & (1u << ((top + i) & 7))))
			continue;
		if (memcmp(nat->out.st[i], soft->out.st[i], 10)) {
			snprintf(why, len, "x87 st%d", i);
			return false;
		}
	}
	for (uint64_t off = 0; off < DIFF_DATA_SIZE; off += 64) {
		if (!memcmp(nat->data + off, soft->data + off, 64))
			continue;
		for (uint64_t b = off; b < off + 64; b++) {
			if (nat->data[b] == soft->data[b])
				continue;
			if (diff_mem_undef(c, b))
				continue;
			snprintf(why, len, "memory");
			return false;
		}
	}
	return true;
}

static void print_flags(const char *tag, uint64_t f)
{
	printf("%s=%#06" PRIx64 "[%s%s%s%s%s%s%s]", tag, f, f & 0x800 ? "O" : "-",
	       f & 0x400 ? "D" : "-", f & 0x80 ? "S" : "-", f & 0x40 ? "Z" : "-",
	       f & 0x10 ? "A" : "-", f & 0x4 ? "P" : "-", f & 0x1 ? "C" : "-");
}

void diff_report(const struct diff_case *c, const struct diff_result *nat,
		 const struct diff_result *soft, const char *why)
{
	char dis[256], a[96], b[96];
	diff_disasm(c->code, c->code_len, dis, sizeof(dis));
	printf("  MISMATCH (%s): %s   bytes:", why, dis);
	for (int i = 0; i < c->code_len; i++)
		printf(" %02x", c->code[i]);
	printf("\n    stop: native %s | soft %s\n", diff_stop_name(nat, a, sizeof(a)),
	       diff_stop_name(soft, b, sizeof(b)));
	printf("    in:  ");
	print_flags("rflags", c->in.rflags);
	printf(" fill=%d seed=%#" PRIx64 " undef-flags=%#" PRIx64 "\n", c->fill, c->fill_seed,
	       c->flags_undef);
	printf("    rip native %#" PRIx64 " soft %#" PRIx64 "   ", nat->out.rip, soft->out.rip);
	print_flags("native", nat->out.rflags);
	printf(" ");
	print_flags("soft", soft->out.rflags);
	printf("\n");
	for (int i = 0; i < 16; i++) {
		bool d = nat->out.gpr[i] != soft->out.gpr[i] && !(c->gpr_undef & (1u << i));
		bool chg = nat->out.gpr[i] != c->in.gpr[i] || soft->out.gpr[i] != c->in.gpr[i];
		if (d || chg || i < 4)
			printf("    %-3s in %016" PRIx64 "  native %016" PRIx64 "  soft %016" PRIx64 "%s\n",
			       gpr_name[i], c->in.gpr[i], nat->out.gpr[i], soft->out.gpr[i],
			       d ? "  <--" : (c->gpr_undef & (1u << i)) ? "  (undefined)" : "");
	}
	for (int i = 0; i < DIFF_MAX_PATCH; i++)
		if (c->patch[i].len) {
			printf("    mem[%#" PRIx64 "] in:", DIFF_DATA_BASE + c->patch[i].off);
			for (int j = 0; j < c->patch[i].len; j++)
				printf(" %02x", c->patch[i].bytes[j]);
			printf("\n");
		}
	if (nat->out.mxcsr != soft->out.mxcsr)
		printf("    mxcsr native %#x soft %#x\n", nat->out.mxcsr, soft->out.mxcsr);
	for (int i = 0; i < 16; i++)
		if (memcmp(nat->out.xmm[i], soft->out.xmm[i], 16)) {
			uint64_t n[2], s[2];
			memcpy(n, nat->out.xmm[i], 16);
			memcpy(s, soft->out.xmm[i], 16);
			printf("    xmm%-2d native %016" PRIx64 "%016" PRIx64 " soft %016" PRIx64
			       "%016" PRIx64 "\n", i, n[1], n[0], s[1], s[0]);
		}
	if (nat->out.fcw != soft->out.fcw || nat->out.fsw != soft->out.fsw ||
	    nat->out.ftw != soft->out.ftw)
		printf("    x87 fcw/fsw/ftw native %04x/%04x/%02x soft %04x/%04x/%02x (fsw undef %04x)\n",
		       nat->out.fcw, nat->out.fsw, nat->out.ftw, soft->out.fcw, soft->out.fsw,
		       soft->out.ftw, c->fsw_undef);
	for (int i = 0; i < 8; i++)
		if (memcmp(nat->out.st[i], soft->out.st[i], 10)) {
			uint16_t ne, se;
			uint64_t nm, sm;
			memcpy(&nm, nat->out.st[i], 8);
			memcpy(&ne, nat->out.st[i] + 8, 2);
			memcpy(&sm, soft->out.st[i], 8);
			memcpy(&se, soft->out.st[i] + 8, 2);
			printf("    st%d native %04x:%016" PRIx64 " soft %04x:%016" PRIx64 "\n", i, ne,
			       nm, se, sm);
		}
	int shown = 0;
	for (uint64_t off = 0; off < DIFF_DATA_SIZE && shown < 4; off += 8) {
		bool differs = false;
		for (uint64_t b = off; b < off + 8; b++)
			differs |= nat->data[b] != soft->data[b] && !diff_mem_undef(c, b);
		if (!differs)
			continue;
		uint64_t n, s;
		memcpy(&n, nat->data + off, 8);
		memcpy(&s, soft->data + off, 8);
		printf("    mem[%#" PRIx64 "] native %016" PRIx64 " soft %016" PRIx64 "\n",
		       DIFF_DATA_BASE + off, n, s);
		shown++;
	}
}
