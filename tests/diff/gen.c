/* Case generation.
 *
 * Templates name a mnemonic and the operand shapes to try ("r,r r,m m,r r,i
 * m,i": register, memory, immediate, CL, fixed-size r8/m16...) in operand
 * sizes 8/16/32/64. gen_init() expands them into variants and keeps those
 * the Zydis encoder accepts; each variant then yields cases with random
 * registers, addressing and edge/random operand values. Instructions the
 * encoder cannot express well (string ops with prefixes, branches, implicit
 * operand forms, invalid and privileged opcodes) are raw byte templates.
 *
 * Not generated (not meaningful at CPL3 in a Linux process, or not
 * comparable with the host): SYSCALL/SYSENTER/INT 0x80 (enter the host
 * kernel), IRET, far jumps/calls, MOV/POP to segment registers, LDS & co.,
 * WRFSBASE/WRGSBASE and FS/GS overrides (host TLS), SGDT/SIDT/SMSW/STR/SLDT
 * (UMIP: Linux emulates them), CPUID, RDTSC(P), RDPID, RDRAND/RDSEED, RDPMC
 * (host-specific values), XGETBV/XSAVE (the host's XCR0), INT n other
 * than INT3 (standalone runs stop before the gate check), INT1 (see the
 * raw table), BMI/ADX/AVX (not in the list). Privileged
 * instructions are generated as "expect #GP at CPL3" cases (HLT, CLI/STI,
 * MOV CR/DR, RDMSR/WRMSR, INVLPG, LGDT/LIDT, SWAPGS, SYSRET, WBINVD/INVD,
 * CLTS, LMSW, IN/OUT); invalid-in-64-bit opcodes (BCD, PUSHA, segment
 * pushes, INTO, ...) and LOCK on non-RMW forms as "expect #UD". SSE and x87
 * coverage and its exclusions are described at their tables below.
 *
 * Beyond single instructions: page-straddling operands, stack and REP
 * string operations that run off the data area (fault mid-way), overlapping
 * REP MOVS, random register-only sequences (flags flowing between
 * instructions, undefined flags tracked), and instruction fetch at the end
 * of the code page. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "gen.h"

/* special handling */
enum {
	S_DIV = 1 << 0,      /* divisor/dividend so that some cases do not #DE */
	S_COUNT = 1 << 1,    /* immediate / CL is a shift count */
	S_BIT = 1 << 2,      /* immediate / register is a bit offset */
	S_BSF = 1 << 3,      /* zero source leaves the destination undefined */
	S_CMPXCHG = 1 << 4,  /* make the compare succeed half of the time */
	S_STACK = 1 << 5,    /* uses the stack: keep RSP out of the operands */
	S_LEA = 1 << 6,      /* every addressing form, no memory access */
	S_STRING = 1 << 7,   /* RSI/RDI/RCX for string ops, DF random */
	S_LOCK = 1 << 8,     /* also a LOCK-prefixed variant of memory forms */
	S_CC8B = 1 << 9,     /* CMPXCHG8B/16B */
	S_LOOP = 1 << 10,    /* RCX small */
	S_RAXCODE = 1 << 11, /* RAX = a code address (indirect jump/call) */
	S_RETADDR = 1 << 12, /* the stack top holds a code address */
	S_RBPDATA = 1 << 13, /* RBP points into the data area (LEAVE/ENTER) */
	S_RBXDATA = 1 << 14, /* RBX points into the data area (XLAT) */
	S_RAXDATA = 1 << 15, /* RAX points into the data area */
	S_POPF = 1 << 16,    /* the stack top holds a random RFLAGS image */
	S_SHLD = 1 << 17,    /* count <= operand size */
	S_IMM64 = 1 << 18,   /* also 64-bit immediates */
	S_SSE = 1 << 19,     /* SSE/SSE2: XMM operands, random MXCSR */
	S_PS = 1 << 20,      /* XMM lanes are floats */
	S_PD = 1 << 21,      /* XMM lanes are doubles */
	S_CMPP = 1 << 22,    /* imm8 is a compare predicate 0-7 */
	S_PSHIFT = 1 << 23,  /* XMM shift count: often small */
	S_MXCSR = 1 << 24,   /* LDMXCSR: the memory operand is an MXCSR image */
	S_RDIDATA = 1 << 25, /* RDI points into the data area (MASKMOVDQU) */
	S_X87 = 1 << 26,     /* RAX -> x87 operand block (see x87_operands) */
	S_FXSAVE = 1 << 27,  /* FXSAVE image at [rax+0x100]: FOP/FIP/FDP vary */
	S_SEQ = 1 << 28,     /* a random sequence of register-only instructions */
	S_FENV = 1 << 29,    /* FNSTENV/FNSAVE image at [rax+64]: FIP/FDP & co. vary */
	S_FETCH = 1 << 30,   /* an instruction at the end of the code page */
};

#define SZ8 1
#define SZ16 2
#define SZ32 4
#define SZ64 8
#define SZ_ALL (SZ8 | SZ16 | SZ32 | SZ64)
#define SZ_W (SZ16 | SZ32 | SZ64)
#define SZX 16 /* SSE: operand sizes come from the shape */

struct tmpl {
	const char *group;
	ZydisMnemonic mn;     /* 0 (INVALID) for raw templates */
	const char *shapes;   /* encoder shapes, or the raw bytes in hex */
	uint8_t sizes;
	uint32_t spec;
	uint16_t fswu;        /* x87 status bits left undefined (raw x87 templates) */
};

enum { IMM_NONE, IMM_SMALL, IMM_LARGE, IMM_HUGE, IMM_COUNT, IMM_BIT, IMM_ANY8, IMM_PRED };

struct variant {
	int t;
	int size;       /* operand size in bits */
	char shape[24]; /* one shape */
	int imm;
	bool lock;
};

#define MAX_TMPL 1024
#define MAX_VARIANTS 8192
static struct tmpl tmpls[MAX_TMPL];
static int ntmpl;
static struct variant variants[MAX_VARIANTS];
static int nvariants;
static char rawbuf[MAX_TMPL][160]; /* hex of up to DIFF_MAX_CODE bytes... enough for ours */

static void add(const char *group, ZydisMnemonic mn, const char *shapes, uint8_t sizes, uint32_t spec)
{
	if (!group)
		group = ZydisMnemonicGetString(mn);
	if (ntmpl < MAX_TMPL)
		tmpls[ntmpl++] = (struct tmpl){ group, mn, shapes, sizes, spec, 0 };
}

static void add_raw(const char *group, uint32_t spec, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void add_raw(const char *group, uint32_t spec, const char *fmt, ...)
{
	if (ntmpl >= MAX_TMPL)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(rawbuf[ntmpl], sizeof(rawbuf[ntmpl]), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(rawbuf[ntmpl])) {
		fprintf(stderr, "diff-test: raw template too long: %s\n", fmt);
		abort();
	}
	tmpls[ntmpl] = (struct tmpl){ group, ZYDIS_MNEMONIC_INVALID, rawbuf[ntmpl], 0, spec, 0 };
	ntmpl++;
}

static const ZydisMnemonic cmov_mn[16] = { ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO,
	ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVNB, ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ,
	ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVNBE, ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVNS,
	ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVNP, ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVNL,
	ZYDIS_MNEMONIC_CMOVLE, ZYDIS_MNEMONIC_CMOVNLE };
static const ZydisMnemonic set_mn[16] = { ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO,
	ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETNB, ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ,
	ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE, ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETNS,
	ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETNP, ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL,
	ZYDIS_MNEMONIC_SETLE, ZYDIS_MNEMONIC_SETNLE };

static void build_sse_templates(void);
static void build_x87_templates(void);

static void build_templates(void)
{
	const char *alu = "r,r r,m m,r r,i m,i";
	add("add", ZYDIS_MNEMONIC_ADD, alu, SZ_ALL, S_LOCK);
	add("or", ZYDIS_MNEMONIC_OR, alu, SZ_ALL, S_LOCK);
	add("adc", ZYDIS_MNEMONIC_ADC, alu, SZ_ALL, S_LOCK);
	add("sbb", ZYDIS_MNEMONIC_SBB, alu, SZ_ALL, S_LOCK);
	add("and", ZYDIS_MNEMONIC_AND, alu, SZ_ALL, S_LOCK);
	add("sub", ZYDIS_MNEMONIC_SUB, alu, SZ_ALL, S_LOCK);
	add("xor", ZYDIS_MNEMONIC_XOR, alu, SZ_ALL, S_LOCK);
	add("cmp", ZYDIS_MNEMONIC_CMP, alu, SZ_ALL, 0);
	add("test", ZYDIS_MNEMONIC_TEST, "r,r m,r r,i m,i", SZ_ALL, 0);
	add("mov", ZYDIS_MNEMONIC_MOV, alu, SZ_ALL, S_IMM64);
	add("xchg", ZYDIS_MNEMONIC_XCHG, "r,r m,r r,m", SZ_ALL, S_LOCK);
	add("xadd", ZYDIS_MNEMONIC_XADD, "r,r m,r", SZ_ALL, S_LOCK);
	add("cmpxchg", ZYDIS_MNEMONIC_CMPXCHG, "r,r m,r", SZ_ALL, S_LOCK | S_CMPXCHG);
	add("inc", ZYDIS_MNEMONIC_INC, "r m", SZ_ALL, S_LOCK);
	add("dec", ZYDIS_MNEMONIC_DEC, "r m", SZ_ALL, S_LOCK);
	add("neg", ZYDIS_MNEMONIC_NEG, "r m", SZ_ALL, S_LOCK);
	add("not", ZYDIS_MNEMONIC_NOT, "r m", SZ_ALL, S_LOCK);
	add("mul", ZYDIS_MNEMONIC_MUL, "r m", SZ_ALL, 0);
	add("imul", ZYDIS_MNEMONIC_IMUL, "r m r,r r,m r,r,i r,m,i", SZ_ALL, 0);
	add("div", ZYDIS_MNEMONIC_DIV, "r m", SZ_ALL, S_DIV);
	add("idiv", ZYDIS_MNEMONIC_IDIV, "r m", SZ_ALL, S_DIV);
	const char *sh = "r,i m,i r,cl m,cl";
	add("rol", ZYDIS_MNEMONIC_ROL, sh, SZ_ALL, S_COUNT);
	add("ror", ZYDIS_MNEMONIC_ROR, sh, SZ_ALL, S_COUNT);
	add("rcl", ZYDIS_MNEMONIC_RCL, sh, SZ_ALL, S_COUNT);
	add("rcr", ZYDIS_MNEMONIC_RCR, sh, SZ_ALL, S_COUNT);
	add("shl", ZYDIS_MNEMONIC_SHL, sh, SZ_ALL, S_COUNT);
	add("shr", ZYDIS_MNEMONIC_SHR, sh, SZ_ALL, S_COUNT);
	add("sar", ZYDIS_MNEMONIC_SAR, sh, SZ_ALL, S_COUNT);
	add("shld", ZYDIS_MNEMONIC_SHLD, "r,r,i m,r,i r,r,cl m,r,cl", SZ_W, S_COUNT | S_SHLD);
	add("shrd", ZYDIS_MNEMONIC_SHRD, "r,r,i m,r,i r,r,cl m,r,cl", SZ_W, S_COUNT | S_SHLD);
	add("bt", ZYDIS_MNEMONIC_BT, "r,r m,r r,i m,i", SZ_W, S_BIT);
	add("bts", ZYDIS_MNEMONIC_BTS, "r,r m,r r,i m,i", SZ_W, S_BIT | S_LOCK);
	add("btr", ZYDIS_MNEMONIC_BTR, "r,r m,r r,i m,i", SZ_W, S_BIT | S_LOCK);
	add("btc", ZYDIS_MNEMONIC_BTC, "r,r m,r r,i m,i", SZ_W, S_BIT | S_LOCK);
	add("bsf", ZYDIS_MNEMONIC_BSF, "r,r r,m", SZ_W, S_BSF);
	add("bsr", ZYDIS_MNEMONIC_BSR, "r,r r,m", SZ_W, S_BSF);
	add("popcnt", ZYDIS_MNEMONIC_POPCNT, "r,r r,m", SZ_W, 0);
	add("lzcnt", ZYDIS_MNEMONIC_LZCNT, "r,r r,m", SZ_W, 0);
	add("tzcnt", ZYDIS_MNEMONIC_TZCNT, "r,r r,m", SZ_W, 0);
	add("movzx", ZYDIS_MNEMONIC_MOVZX, "r,r8 r,m8 r,r16 r,m16", SZ_W, 0);
	add("movsx", ZYDIS_MNEMONIC_MOVSX, "r,r8 r,m8 r,r16 r,m16", SZ_W, 0);
	add("movsxd", ZYDIS_MNEMONIC_MOVSXD, "r,r32 r,m32", SZ64, 0);
	add("bswap", ZYDIS_MNEMONIC_BSWAP, "r", SZ32 | SZ64, 0);
	add("movbe", ZYDIS_MNEMONIC_MOVBE, "r,m m,r", SZ_W, 0);
	add("lea", ZYDIS_MNEMONIC_LEA, "r,m", SZ_W, S_LEA);
	add("push", ZYDIS_MNEMONIC_PUSH, "r m i", SZ16 | SZ64, S_STACK);
	add("pop", ZYDIS_MNEMONIC_POP, "r m", SZ16 | SZ64, S_STACK | S_RETADDR);
	add("cmpxchg8b", ZYDIS_MNEMONIC_CMPXCHG8B, "m", SZ64, S_CC8B | S_LOCK);
	add("cmpxchg16b", ZYDIS_MNEMONIC_CMPXCHG16B, "m", SZ64, S_CC8B | S_LOCK);
	add("nop", ZYDIS_MNEMONIC_NOP, "r m", SZ16 | SZ32, 0);
	for (int cc = 0; cc < 16; cc++) {
		add("cmovcc", cmov_mn[cc], "r,r r,m", SZ_W, 0);
		add("setcc", set_mn[cc], "r m", SZ8, 0);
		add_raw("jcc", 0, "%02x 01", 0x70 + cc);
		add_raw("jcc", 0, "0f %02x 01 00 00 00", 0x80 + cc);
	}

	/* no-operand and implicit-operand instructions */
	static const struct { const char *g, *hex; uint32_t spec; } raw[] = {
		{ "cbw", "66 98", 0 }, { "cwde", "98", 0 }, { "cdqe", "48 98", 0 },
		{ "cwd", "66 99", 0 }, { "cdq", "99", 0 }, { "cqo", "48 99", 0 },
		{ "lahf", "9f", 0 }, { "sahf", "9e", 0 },
		{ "clc", "f8", 0 }, { "stc", "f9", 0 }, { "cmc", "f5", 0 },
		{ "cld", "fc", 0 }, { "std", "fd", 0 },
		{ "nop", "90", 0 }, { "pause", "f3 90", 0 },
		{ "pushf", "9c", S_STACK }, { "pushf", "66 9c", S_STACK },
		{ "popf", "9d", S_STACK | S_POPF }, { "popf", "66 9d", S_STACK | S_POPF },
		{ "xlat", "d7", S_RBXDATA }, { "xlat", "48 d7", S_RBXDATA },
		{ "mov-moffs", "a0 00 01 00 20 00 00 00 00", 0 },
		{ "mov-moffs", "a1 04 01 00 20 00 00 00 00", 0 },
		{ "mov-moffs", "66 a1 06 01 00 20 00 00 00 00", 0 },
		{ "mov-moffs", "48 a1 08 01 00 20 00 00 00 00", 0 },
		{ "mov-moffs", "a2 01 01 00 20 00 00 00 00", 0 },
		{ "mov-moffs", "48 a3 10 01 00 20 00 00 00 00", 0 },
		{ "mov-moffs", "67 a1 00 02 00 20", 0 },
		{ "jmp", "eb 01", 0 }, { "jmp", "e9 01 00 00 00", 0 },
		{ "jmp", "eb 80", 0 },   /* to before the code page: fetch #PF */
		{ "jmp", "ff e0", S_RAXCODE }, { "jmp", "ff 20", S_RAXDATA | S_RETADDR },
		{ "call", "e8 01 00 00 00", S_STACK }, { "call", "ff d0", S_STACK | S_RAXCODE },
		{ "ret", "c3", S_STACK | S_RETADDR }, { "ret", "c2 10 00", S_STACK | S_RETADDR },
		{ "loop", "e2 01", S_LOOP }, { "loope", "e1 01", S_LOOP },
		{ "loopne", "e0 01", S_LOOP }, { "jrcxz", "e3 01", S_LOOP },
		{ "jrcxz", "67 e3 01", S_LOOP }, { "loop", "67 e2 01", S_LOOP },
		{ "leave", "c9", S_STACK | S_RBPDATA }, { "leave", "66 c9", S_STACK | S_RBPDATA },
		{ "enter", "c8 10 00 00", S_STACK | S_RBPDATA },
		{ "enter", "c8 08 00 01", S_STACK | S_RBPDATA },
		{ "enter", "c8 00 00 03", S_STACK | S_RBPDATA },
		{ "push", "6a 80", S_STACK }, { "push", "68 78 56 34 92", S_STACK },
		{ "push", "66 6a ff", S_STACK },
		/* INT1 (F1) is not generated: on this host (a PVM guest) the
		 * #DB reaches user space with RIP at the instruction, where the
		 * SDM has a trap (RIP after it) */
		{ "int3", "cc", 0 }, { "int3", "cd 03", 0 },
		/* INT n (n != 3) is not generated: natively it is #GP(n*8+2)
		 * (Linux's gates are DPL0 but for 3, 4 and 0x80, a system
		 * call), while soft_run_standalone stops on INT n before the
		 * gate check, by design; the system tests cover it */
		{ "fence", "0f ae f0", 0 }, { "fence", "0f ae e8", 0 }, { "fence", "0f ae f8", 0 },
		{ "prefetch", "0f 18 00", S_RAXDATA }, { "prefetch", "0f 18 08", S_RAXDATA },
		{ "prefetch", "0f 0d 08", S_RAXDATA }, { "clflush", "0f ae 38", S_RAXDATA },
		/* prefixes: ignored segment overrides, operand size, REX
		 * placement, the 15-byte limit (#GP beyond it) */
		{ "prefix", "2e 8b 00", S_RAXDATA }, { "prefix", "36 8b 00", S_RAXDATA },
		{ "prefix", "3e 8b 00", S_RAXDATA }, { "prefix", "26 89 08", S_RAXDATA },
		{ "prefix", "66 66 01 c8", 0 }, { "prefix", "48 66 01 c8", 0 },
		{ "prefix", "66 48 01 c8", 0 }, { "prefix", "40 66 01 c8", 0 },
		{ "prefix", "66 66 66 66 66 66 66 66 66 66 66 66 66 01 c8", 0 },
		{ "prefix", "66 66 66 66 66 66 66 66 66 66 66 66 66 66 01 c8", 0 },
		{ "prefix", "67 8b 00", S_RAXDATA }, { "prefix", "67 8d 04 08", 0 },
		/* invalid in 64-bit mode or always: #UD */
		{ "ud", "0f 0b", 0 }, { "ud", "0f ff c0", 0 }, { "ud", "0f b9 c0", 0 },
		{ "ud", "06", 0 }, { "ud", "07", 0 }, { "ud", "0e", 0 }, { "ud", "16", 0 },
		{ "ud", "1e", 0 }, { "ud", "1f", 0 }, { "ud", "27", 0 }, { "ud", "2f", 0 },
		{ "ud", "37", 0 }, { "ud", "3f", 0 }, { "ud", "60", 0 }, { "ud", "61", 0 },
		{ "ud", "ce", 0 }, { "ud", "d4 0a", 0 }, { "ud", "d5 0a", 0 }, { "ud", "d6", 0 },
		{ "ud", "f0 01 c0", 0 }, { "ud", "f0 90", 0 }, { "ud", "f0 8b 00", S_RAXDATA },
		{ "ud", "8d c0", 0 }, { "ud", "0f 01 f9", 0 } /* rdtscp: not here */,
		/* privileged at CPL3: #GP(0) */
		{ "priv", "f4", 0 }, { "priv", "fa", 0 }, { "priv", "fb", 0 },
		{ "priv", "0f 32", 0 }, { "priv", "0f 30", 0 }, { "priv", "0f 22 c0", 0 },
		{ "priv", "0f 20 c0", 0 }, { "priv", "0f 22 d8", 0 }, { "priv", "0f 21 c0", 0 },
		{ "priv", "0f 23 c0", 0 }, { "priv", "0f 09", 0 }, { "priv", "0f 08", 0 },
		{ "priv", "0f 06", 0 }, { "priv", "0f 01 38", S_RAXDATA },
		{ "priv", "0f 01 10", S_RAXDATA }, { "priv", "0f 01 18", S_RAXDATA },
		{ "priv", "0f 01 f8", 0 }, { "priv", "0f 01 f0", 0 }, { "priv", "0f 07", 0 },
		{ "priv", "ec", 0 }, { "priv", "ee", 0 }, { "priv", "e4 80", 0 }, { "priv", "e6 80", 0 },
		{ "priv", "ed", 0 }, { "priv", "66 ef", 0 },
	};
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
		if (strcmp(raw[i].hex, "0f 01 f9"))  /* RDTSCP is not comparable */
			add_raw(raw[i].g, raw[i].spec, "%s", raw[i].hex);

	/* string instructions: every size, REP/REPE/REPNE, 64- and 32-bit
	 * addressing; DF is random per case */
	static const struct { const char *g; uint8_t op; bool cond; } str[] = {
		{ "movs", 0xa4, false }, { "cmps", 0xa6, true }, { "stos", 0xaa, false },
		{ "lods", 0xac, false }, { "scas", 0xae, true },
	};
	for (size_t i = 0; i < sizeof(str) / sizeof(str[0]); i++)
		for (int sz = 0; sz < 4; sz++)
			for (int rep = 0; rep < 3; rep++)
				for (int a32 = 0; a32 < 2; a32++) {
					if (rep == 2 && !str[i].cond)
						continue;
					add_raw(str[i].g, S_STRING, "%s%s%s%s%02x",
						a32 ? "67 " : "",
						rep == 1 ? "f3 " : rep == 2 ? "f2 " : "",
						sz == 1 ? "66 " : "", sz == 3 ? "48 " : "",
						str[i].op + (sz ? 1 : 0));
				}
	build_sse_templates();
	build_x87_templates();
	/* sequences: flags produced by one instruction and consumed by the
	 * next (lazy flags), 2-6 instructions each */
	for (int i = 0; i < 50; i++)
		add_raw("seq", S_SEQ, "90");
	/* instruction fetch at the end of the code page: an instruction that
	 * straddles into the unmapped next page (#PF on fetch, CR2 = the page),
	 * one that ends exactly there (the INT3 after it faults) or a few
	 * bytes before (no fault: a decoder must not fetch ahead) */
	for (int i = 0; i < 10; i++)
		add_raw("fetch-edge", S_FETCH, "90");
}


/* SSE/SSE2 (the x86-64 baseline). Not generated: RCPPS/RCPSS/RSQRTPS/
 * RSQRTSS (approximations whose exact bits are implementation-specific:
 * the SDM only bounds the relative error), MMX-register forms (CVTPI2PS &
 * co., MOVQ2DQ, MOVDQ2Q: x87/MMX state is a later pass). */
static void build_sse_templates(void)
{
	const uint32_t ps = S_SSE | S_PS, pd = S_SSE | S_PD, in = S_SSE;
	static const ZydisMnemonic ps_ar[] = { ZYDIS_MNEMONIC_ADDPS, ZYDIS_MNEMONIC_SUBPS,
		ZYDIS_MNEMONIC_MULPS, ZYDIS_MNEMONIC_DIVPS, ZYDIS_MNEMONIC_MINPS,
		ZYDIS_MNEMONIC_MAXPS, ZYDIS_MNEMONIC_SQRTPS, ZYDIS_MNEMONIC_ANDPS,
		ZYDIS_MNEMONIC_ANDNPS, ZYDIS_MNEMONIC_ORPS, ZYDIS_MNEMONIC_XORPS,
		ZYDIS_MNEMONIC_UNPCKLPS, ZYDIS_MNEMONIC_UNPCKHPS, ZYDIS_MNEMONIC_CVTDQ2PS,
		ZYDIS_MNEMONIC_CVTPS2DQ, ZYDIS_MNEMONIC_CVTTPS2DQ };
	for (size_t i = 0; i < sizeof(ps_ar) / sizeof(ps_ar[0]); i++)
		add(NULL, ps_ar[i], "x,x x,m128", SZX, ps);
	static const ZydisMnemonic pd_ar[] = { ZYDIS_MNEMONIC_ADDPD, ZYDIS_MNEMONIC_SUBPD,
		ZYDIS_MNEMONIC_MULPD, ZYDIS_MNEMONIC_DIVPD, ZYDIS_MNEMONIC_MINPD,
		ZYDIS_MNEMONIC_MAXPD, ZYDIS_MNEMONIC_SQRTPD, ZYDIS_MNEMONIC_ANDPD,
		ZYDIS_MNEMONIC_ANDNPD, ZYDIS_MNEMONIC_ORPD, ZYDIS_MNEMONIC_XORPD,
		ZYDIS_MNEMONIC_UNPCKLPD, ZYDIS_MNEMONIC_UNPCKHPD, ZYDIS_MNEMONIC_CVTPD2PS,
		ZYDIS_MNEMONIC_CVTPD2DQ, ZYDIS_MNEMONIC_CVTTPD2DQ };
	for (size_t i = 0; i < sizeof(pd_ar) / sizeof(pd_ar[0]); i++)
		add(NULL, pd_ar[i], "x,x x,m128", SZX, pd);
	static const ZydisMnemonic ss_ar[] = { ZYDIS_MNEMONIC_ADDSS, ZYDIS_MNEMONIC_SUBSS,
		ZYDIS_MNEMONIC_MULSS, ZYDIS_MNEMONIC_DIVSS, ZYDIS_MNEMONIC_MINSS,
		ZYDIS_MNEMONIC_MAXSS, ZYDIS_MNEMONIC_SQRTSS, ZYDIS_MNEMONIC_COMISS,
		ZYDIS_MNEMONIC_UCOMISS, ZYDIS_MNEMONIC_CVTSS2SD };
	for (size_t i = 0; i < sizeof(ss_ar) / sizeof(ss_ar[0]); i++)
		add(NULL, ss_ar[i], "x,x x,m32", SZX, ps);
	static const ZydisMnemonic sd_ar[] = { ZYDIS_MNEMONIC_ADDSD, ZYDIS_MNEMONIC_SUBSD,
		ZYDIS_MNEMONIC_MULSD, ZYDIS_MNEMONIC_DIVSD, ZYDIS_MNEMONIC_MINSD,
		ZYDIS_MNEMONIC_MAXSD, ZYDIS_MNEMONIC_SQRTSD, ZYDIS_MNEMONIC_COMISD,
		ZYDIS_MNEMONIC_UCOMISD, ZYDIS_MNEMONIC_CVTSD2SS };
	for (size_t i = 0; i < sizeof(sd_ar) / sizeof(sd_ar[0]); i++)
		add(NULL, sd_ar[i], "x,x x,m64", SZX, pd);
	add(NULL, ZYDIS_MNEMONIC_CVTPS2PD, "x,x x,m64", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_CVTDQ2PD, "x,x x,m64", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_CMPPS, "x,x,i x,m128,i", SZX, ps | S_CMPP);
	add(NULL, ZYDIS_MNEMONIC_CMPPD, "x,x,i x,m128,i", SZX, pd | S_CMPP);
	add(NULL, ZYDIS_MNEMONIC_CMPSS, "x,x,i x,m32,i", SZX, ps | S_CMPP);
	add("cmpsd-sse", ZYDIS_MNEMONIC_CMPSD, "x,x,i x,m64,i", SZX, pd | S_CMPP);
	add(NULL, ZYDIS_MNEMONIC_SHUFPS, "x,x,i x,m128,i", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_SHUFPD, "x,x,i x,m128,i", SZX, pd);
	add(NULL, ZYDIS_MNEMONIC_CVTSI2SS, "x,r32 x,r64 x,m32 x,m64", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_CVTSI2SD, "x,r32 x,r64 x,m32 x,m64", SZX, pd);
	add(NULL, ZYDIS_MNEMONIC_CVTSS2SI, "r32,x r64,x r32,m32 r64,m32", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_CVTTSS2SI, "r32,x r64,x r32,m32 r64,m32", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_CVTSD2SI, "r32,x r64,x r32,m64 r64,m64", SZX, pd);
	add(NULL, ZYDIS_MNEMONIC_CVTTSD2SI, "r32,x r64,x r32,m64 r64,m64", SZX, pd);
	/* moves */
	static const ZydisMnemonic mv[] = { ZYDIS_MNEMONIC_MOVAPS, ZYDIS_MNEMONIC_MOVUPS,
		ZYDIS_MNEMONIC_MOVAPD, ZYDIS_MNEMONIC_MOVUPD, ZYDIS_MNEMONIC_MOVDQA,
		ZYDIS_MNEMONIC_MOVDQU };
	for (size_t i = 0; i < sizeof(mv) / sizeof(mv[0]); i++)
		add(NULL, mv[i], "x,x x,m128 m128,x", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_MOVSS, "x,x x,m32 m32,x", SZX, ps);
	add("movsd-sse", ZYDIS_MNEMONIC_MOVSD, "x,x x,m64 m64,x", SZX, pd);
	add(NULL, ZYDIS_MNEMONIC_MOVLPS, "x,m64 m64,x", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_MOVHPS, "x,m64 m64,x", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_MOVLPD, "x,m64 m64,x", SZX, pd);
	add(NULL, ZYDIS_MNEMONIC_MOVHPD, "x,m64 m64,x", SZX, pd);
	add(NULL, ZYDIS_MNEMONIC_MOVHLPS, "x,x", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_MOVLHPS, "x,x", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_MOVD, "x,r32 r32,x x,m32 m32,x", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_MOVQ, "x,r64 r64,x x,x x,m64 m64,x", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_MOVMSKPS, "r32,x r64,x", SZX, ps);
	add(NULL, ZYDIS_MNEMONIC_MOVMSKPD, "r32,x r64,x", SZX, pd);
	add(NULL, ZYDIS_MNEMONIC_PMOVMSKB, "r32,x r64,x", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_MOVNTI, "m32,r32 m64,r64", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_MOVNTPS, "m128,x", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_MOVNTPD, "m128,x", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_MOVNTDQ, "m128,x", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_MASKMOVDQU, "x,x", SZX, in | S_RDIDATA);
	/* integer */
	static const ZydisMnemonic pi[] = { ZYDIS_MNEMONIC_PADDB, ZYDIS_MNEMONIC_PADDW,
		ZYDIS_MNEMONIC_PADDD, ZYDIS_MNEMONIC_PADDQ, ZYDIS_MNEMONIC_PSUBB,
		ZYDIS_MNEMONIC_PSUBW, ZYDIS_MNEMONIC_PSUBD, ZYDIS_MNEMONIC_PSUBQ,
		ZYDIS_MNEMONIC_PADDSB, ZYDIS_MNEMONIC_PADDSW, ZYDIS_MNEMONIC_PADDUSB,
		ZYDIS_MNEMONIC_PADDUSW, ZYDIS_MNEMONIC_PSUBSB, ZYDIS_MNEMONIC_PSUBSW,
		ZYDIS_MNEMONIC_PSUBUSB, ZYDIS_MNEMONIC_PSUBUSW, ZYDIS_MNEMONIC_PMULLW,
		ZYDIS_MNEMONIC_PMULHW, ZYDIS_MNEMONIC_PMULHUW, ZYDIS_MNEMONIC_PMULUDQ,
		ZYDIS_MNEMONIC_PMADDWD, ZYDIS_MNEMONIC_PAVGB, ZYDIS_MNEMONIC_PAVGW,
		ZYDIS_MNEMONIC_PMINUB, ZYDIS_MNEMONIC_PMAXUB, ZYDIS_MNEMONIC_PMINSW,
		ZYDIS_MNEMONIC_PMAXSW, ZYDIS_MNEMONIC_PSADBW, ZYDIS_MNEMONIC_PCMPEQB,
		ZYDIS_MNEMONIC_PCMPEQW, ZYDIS_MNEMONIC_PCMPEQD, ZYDIS_MNEMONIC_PCMPGTB,
		ZYDIS_MNEMONIC_PCMPGTW, ZYDIS_MNEMONIC_PCMPGTD, ZYDIS_MNEMONIC_PAND,
		ZYDIS_MNEMONIC_PANDN, ZYDIS_MNEMONIC_POR, ZYDIS_MNEMONIC_PXOR,
		ZYDIS_MNEMONIC_PUNPCKLBW, ZYDIS_MNEMONIC_PUNPCKLWD, ZYDIS_MNEMONIC_PUNPCKLDQ,
		ZYDIS_MNEMONIC_PUNPCKLQDQ, ZYDIS_MNEMONIC_PUNPCKHBW, ZYDIS_MNEMONIC_PUNPCKHWD,
		ZYDIS_MNEMONIC_PUNPCKHDQ, ZYDIS_MNEMONIC_PUNPCKHQDQ, ZYDIS_MNEMONIC_PACKSSWB,
		ZYDIS_MNEMONIC_PACKSSDW, ZYDIS_MNEMONIC_PACKUSWB };
	for (size_t i = 0; i < sizeof(pi) / sizeof(pi[0]); i++)
		add(NULL, pi[i], "x,x x,m128", SZX, in);
	static const ZydisMnemonic psh[] = { ZYDIS_MNEMONIC_PSLLW, ZYDIS_MNEMONIC_PSLLD,
		ZYDIS_MNEMONIC_PSLLQ, ZYDIS_MNEMONIC_PSRLW, ZYDIS_MNEMONIC_PSRLD,
		ZYDIS_MNEMONIC_PSRLQ, ZYDIS_MNEMONIC_PSRAW, ZYDIS_MNEMONIC_PSRAD };
	for (size_t i = 0; i < sizeof(psh) / sizeof(psh[0]); i++)
		add(NULL, psh[i], "x,x x,m128 x,i", SZX, in | S_PSHIFT);
	add(NULL, ZYDIS_MNEMONIC_PSLLDQ, "x,i", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_PSRLDQ, "x,i", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_PSHUFD, "x,x,i x,m128,i", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_PSHUFHW, "x,x,i x,m128,i", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_PSHUFLW, "x,x,i x,m128,i", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_PEXTRW, "r32,x,i", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_PINSRW, "x,r32,i x,m16,i", SZX, in);
	add(NULL, ZYDIS_MNEMONIC_LDMXCSR, "m32", SZX, in | S_MXCSR);
	add(NULL, ZYDIS_MNEMONIC_STMXCSR, "m32", SZX, in);
}

/* ---- encoding helpers ---- */

static ZydisRegister gpr_reg(int bits, int id)
{
	switch (bits) {
	case 8: return (ZydisRegister)(ZYDIS_REGISTER_AL + id); /* 0-19: AL..BH, SPL.., R8B.. */
	case 16: return (ZydisRegister)(ZYDIS_REGISTER_AX + id);
	case 32: return (ZydisRegister)(ZYDIS_REGISTER_EAX + id);
	default: return (ZydisRegister)(ZYDIS_REGISTER_RAX + id);
	}
}

/* Which GPR an 8-bit register id (0-19 in Zydis order) lives in, and
 * whether it is the high byte (AH..BH). */
static int r8_gpr(int id, bool *high)
{
	*high = id >= 4 && id < 8;
	if (id < 4)
		return id;
	if (id < 8)
		return id - 4;
	return id - 4; /* SPL=8 -> 4 ... R15B=19 -> 15 */
}

static uint64_t mask_bits(int bits)
{
	return bits >= 64 ? ~0ULL : (1ULL << bits) - 1;
}

static uint64_t pick_val(uint64_t *s, int bits)
{
	static const uint64_t edges[] = { 0, 1, 2, 3, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff,
		0x7fffffff, 0x80000000, 0xffffffff, 0x7fffffffffffffffULL,
		0x8000000000000000ULL, ~0ULL, ~0ULL - 1 };
	uint64_t r = diff_rand(s);
	uint64_t v;
	switch (r & 7) {
	case 0: case 1: case 2:
		v = edges[(r >> 8) % (sizeof(edges) / sizeof(edges[0]))];
		break;
	case 3: /* this size's sign boundaries */
		v = (1ULL << (bits - 1)) - ((r >> 8) & 1) + ((r >> 9) & 1 ? 0 : 0);
		break;
	case 4:
		v = (r >> 8) & 0xff;
		break;
	case 5:
		v = -((r >> 8) & 0xff);
		break;
	default:
		v = diff_rand(s);
	}
	return v & mask_bits(bits);
}

/* SSE lane values: float/double edge cases (zeros, infinities, NaNs,
 * denormals, integer-conversion boundaries) or ordinary numbers. */
static void pick_lanes(uint64_t *s, uint32_t spec, uint8_t out[16])
{
	static const uint32_t f32[] = { 0, 0x80000000, 0x3f800000, 0xbf800000, 0x3fc00000,
		0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000,
		0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff, 0x4f000000, 0xcf000000,
		0x4effffff, 0xdf000000, 0x5f000000, 0x3f000000, 0x4b000000 };
	static const uint64_t f64[] = { 0, 0x8000000000000000ULL, 0x3ff0000000000000ULL,
		0xbff0000000000000ULL, 0x3ff8000000000000ULL, 0x7ff0000000000000ULL,
		0xfff0000000000000ULL, 0x7ff8000000000000ULL, 0xfff8000000000000ULL,
		0x7ff0000000000001ULL, 0x7ff4000000000000ULL, 1, 0x800fffffffffffffULL,
		0x0010000000000000ULL, 0x7fefffffffffffffULL, 0x41e0000000000000ULL,
		0xc1e0000000000000ULL, 0x43e0000000000000ULL, 0xc3e0000000000000ULL,
		0x41dfffffffc00000ULL, 0x3fe0000000000000ULL, 0x3e70000000000000ULL,
		0x47efffffe0000000ULL, 0x3800000000000000ULL };
	for (int i = 0; i < 16; i += 8) {
		uint64_t r = diff_rand(s), v;
		if (spec & S_PS) {
			uint32_t l[2];
			for (int k = 0; k < 2; k++) {
				uint64_t q = diff_rand(s);
				if (q & 1)
					l[k] = f32[(q >> 8) % (sizeof(f32) / 4)];
				else /* sign, exponent near 1.0, random mantissa */
					l[k] = (uint32_t)(((q >> 1) & 1) << 31) |
					       (uint32_t)((127 - 40 + (q >> 2) % 80) << 23) |
					       (uint32_t)((q >> 20) & 0x7fffff);
			}
			v = l[0] | (uint64_t)l[1] << 32;
		} else if (spec & S_PD) {
			if (r & 1)
				v = f64[(r >> 8) % (sizeof(f64) / 8)];
			else
				v = ((r >> 1) & 1) << 63 | (uint64_t)(1023 - 80 + (r >> 2) % 160) << 52 |
				    (diff_rand(s) & 0xfffffffffffffULL);
		} else {
			v = (r & 3) == 0 ? pick_val(s, 64) : diff_rand(s);
		}
		memcpy(out + i, &v, 8);
	}
}

struct gen_ctx {
	uint64_t *rng;
	struct diff_case *c;
	uint16_t used;   /* GPRs already taken */
	int npatch;
};

static int pick_gpr(struct gen_ctx *g, uint16_t exclude)
{
	for (int tries = 0; tries < 64; tries++) {
		int r = diff_rand(g->rng) & 15;
		if (!((g->used | exclude) & (1u << r))) {
			g->used |= 1u << r;
			return r;
		}
	}
	return -1;
}

static void patch(struct gen_ctx *g, uint64_t off, const void *bytes, int len)
{
	if (g->npatch >= DIFF_MAX_PATCH || off + len > DIFF_DATA_SIZE)
		return;
	struct diff_patch *p = &g->c->patch[g->npatch++];
	p->off = (uint16_t)off;
	p->len = (uint8_t)len;
	memcpy(p->bytes, bytes, len);
}

static void set_gpr_part(struct diff_case *c, int gpr, bool high, int bits, uint64_t v)
{
	if (high) {
		c->in.gpr[gpr] = (c->in.gpr[gpr] & ~0xff00ULL) | ((v & 0xff) << 8);
	} else {
		c->in.gpr[gpr] = (c->in.gpr[gpr] & ~mask_bits(bits)) | (v & mask_bits(bits));
	}
}

/* A data-area offset for a memory operand of `bytes` bytes. */
static uint64_t pick_ea(struct gen_ctx *g, int bytes)
{
	uint64_t r = diff_rand(g->rng);
	/* now and then straddle the end or the start of the data area: #PF
	 * at the first unmapped byte */
	if ((r & 63) == 0)
		return DIFF_DATA_SIZE - 1 - ((r >> 8) % (uint64_t)(bytes > 1 ? bytes - 1 : 1));
	if ((r & 63) == 1)
		return (uint64_t)-(int64_t)(1 + (r >> 8) % (uint64_t)(bytes > 1 ? bytes - 1 : 1));
	uint64_t off = 0x100 + diff_rand(g->rng) % 0x2c00;
	if (diff_rand(g->rng) & 1)
		off &= ~(uint64_t)(bytes > 1 ? bytes - 1 : 0);
	return off;
}

/* Fill mem operand `op` so that it addresses DIFF_DATA_BASE + off. */
static void make_mem(struct gen_ctx *g, ZydisEncoderOperand *op, uint64_t off, int bytes,
		     uint16_t exclude, bool allow_rip)
{
	uint64_t ea = DIFF_DATA_BASE + off;
	uint64_t r = diff_rand(g->rng);
	op->type = ZYDIS_OPERAND_TYPE_MEMORY;
	op->mem.size = (ZyanU16)bytes;
	if (allow_rip && (r & 7) == 0) {
		op->mem.base = ZYDIS_REGISTER_RIP;
		op->mem.displacement = (int64_t)ea; /* fixed up after encoding */
		return;
	}
	int64_t disp;
	switch ((r >> 3) & 3) {
	case 0: disp = 0; break;
	case 1: case 2: disp = (int8_t)(r >> 8); break;
	default: disp = (int32_t)(r >> 16) % 0x100000; break;
	}
	uint64_t idxval = 0;
	int index = -1, scale = 1;
	if ((r >> 5) & 1) {
		index = pick_gpr(g, exclude | (1u << RSP));
		scale = 1 << ((r >> 40) & 3);
		idxval = (r >> 44) & 0xff;
		if ((r >> 52) & 1)
			idxval = -idxval; /* negative index */
	}
	int base = pick_gpr(g, exclude | (1u << RSP));
	if (base < 0)
		base = RBX;
	if (index >= 0) {
		g->c->in.gpr[index] = idxval;
		op->mem.index = gpr_reg(64, index);
		op->mem.scale = (ZyanU8)scale;
	}
	g->c->in.gpr[base] = ea - disp - idxval * scale;
	op->mem.base = gpr_reg(64, base);
	op->mem.displacement = disp;
}

static int imm_class_for(const struct tmpl *t, int size, int k)
{
	if (t->spec & S_SSE)
		return k == 0 ? ((t->spec & S_CMPP) ? IMM_PRED : IMM_ANY8) : -1;
	if (t->spec & S_COUNT)
		return IMM_COUNT;
	if (t->spec & S_BIT)
		return IMM_BIT;
	if (size == 8)
		return k == 0 ? IMM_SMALL : -1;
	if (k == 0)
		return IMM_SMALL;
	if (k == 1)
		return IMM_LARGE;
	if (k == 2 && size == 64 && (t->spec & S_IMM64))
		return IMM_HUGE;
	return -1;
}

static int64_t pick_imm(struct gen_ctx *g, int cls, int size)
{
	uint64_t r = diff_rand(g->rng);
	switch (cls) {
	case IMM_SMALL: {
		static const int64_t e[] = { 0, 1, -1, 0x7f, -0x80, 2 };
		return (r & 1) ? e[(r >> 1) % 6] : (int8_t)(r >> 8);
	}
	case IMM_LARGE: {
		if (size == 16) {
			static const int64_t e[] = { 0x80, 0x7fff, -0x8000, -0x81, 0x1234 };
			int64_t v = (r & 1) ? e[(r >> 1) % 5] : (int16_t)(r >> 8);
			return (v >= -128 && v < 128) ? 0x4321 : v;
		}
		static const int64_t e[] = { 0x80, 0x7fffffff, -0x80000000LL, -0x81, 0x12345678 };
		int64_t v = (r & 1) ? e[(r >> 1) % 5] : (int32_t)(r >> 8);
		return (v >= -128 && v < 128) ? 0x76543210 : v;
	}
	case IMM_HUGE:
		return (int64_t)(diff_rand(g->rng) | 0x100000000ULL);
	case IMM_COUNT: {
		static const int64_t e[] = { 0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255 };
		return (r & 3) ? e[(r >> 2) % 16] : (int64_t)((r >> 8) & 0xff);
	}
	case IMM_BIT:
		return (r & 1) ? (int64_t)((r >> 8) % size) : (int64_t)((r >> 8) & 0xff);
	case IMM_ANY8: {
		static const int64_t e[] = { 0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 0x1b };
		return (r & 1) ? e[(r >> 1) % 14] : (int64_t)((r >> 8) & 0xff);
	}
	case IMM_PRED:
		return (int64_t)((r >> 8) & 7);
	}
	return 0;
}


/* x87: short sequences on an operand block at RAX (x87_operands()):
 *   +0 m64 A  +8 m64 B  +16 m32 float  +20 m32 int  +24 m16 int
 *   +32 m80  +48 m64 int  +56 control word  +64 store target
 *   +0x100 FXSAVE image.
 * Every case starts from FNINIT. The fsw mask is the last instruction's
 * undefined condition codes: SDM "FPU Flags Affected", e.g. FADD: "C1 Set to
 * 0 if stack underflow occurred; set if result was rounded up. C0, C2, C3
 * Undefined."; FFREE/FNCLEX/FLDCW/FNSTCW: "C0, C1, C2, C3 undefined";
 * compares, FXAM, FTST, FPREM define them. Not generated: transcendentals
 * (FSIN FCOS FSINCOS FPTAN FPATAN F2XM1 FYL2X FYL2XP1: results are only
 * bounded by the manuals, not bit-exact across implementations), FBLD
 * (undefined for invalid BCD digits), FNSAVE/FRSTOR/FLDENV/FNSTENV. */
#define C023 0x4500
#define CALL4 0x4700
static const struct { const char *g, *hex; uint16_t fswu; uint32_t spec; } x87_tmpl[] = {
	{ "x87-load", "dd 00", C023, 0 }, { "x87-load", "d9 40 10", C023, 0 },
	{ "x87-load", "db 68 20", C023, 0 }, { "x87-load", "df 68 30", C023, 0 },
	{ "x87-load", "db 40 14", C023, 0 }, { "x87-load", "df 40 18", C023, 0 },
	{ "x87-load", "d9 e8", C023, 0 }, { "x87-load", "d9 ee", C023, 0 },
	{ "x87-load", "d9 eb", C023, 0 }, { "x87-load", "d9 e9", C023, 0 },
	{ "x87-load", "d9 ea", C023, 0 }, { "x87-load", "d9 ec", C023, 0 },
	{ "x87-load", "d9 ed", C023, 0 }, { "x87-load", "d9 68 38 d9 eb", C023, 0 },
	{ "x87-load", "d9 68 38 d9 ea", C023, 0 },
	{ "x87-load", "d9 e8 d9 e8 d9 e8 d9 e8 d9 e8 d9 e8 d9 e8 d9 e8 d9 e8", C023, 0 },
	{ "x87-arith", "de c1", C023, 0 }, /* stack underflow */
	{ "x87-arith", "dd 00 dd 40 08 de c1", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 de e9", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 de e1", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 de c9", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 de f9", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 de f1", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 d8 c1", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 dc c1", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 d8 e1", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 dc e1", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 dc e9", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 d8 f1", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 dc f9", C023, 0 },
	{ "x87-arith", "dd 00 dc 40 08", C023, 0 }, { "x87-arith", "dd 00 dc 48 08", C023, 0 },
	{ "x87-arith", "dd 00 dc 60 08", C023, 0 }, { "x87-arith", "dd 00 dc 68 08", C023, 0 },
	{ "x87-arith", "dd 00 dc 70 08", C023, 0 }, { "x87-arith", "dd 00 dc 78 08", C023, 0 },
	{ "x87-arith", "dd 00 d8 40 10", C023, 0 }, { "x87-arith", "dd 00 d8 70 10", C023, 0 },
	{ "x87-arith", "dd 00 da 40 14", C023, 0 }, { "x87-arith", "dd 00 de 48 18", C023, 0 },
	{ "x87-arith", "dd 00 da 70 14", C023, 0 }, { "x87-arith", "dd 00 de 78 18", C023, 0 },
	{ "x87-arith", "dd 00 d9 e0", C023, 0 }, { "x87-arith", "dd 00 d9 e1", C023, 0 },
	{ "x87-arith", "dd 00 d9 fa", C023, 0 }, { "x87-arith", "dd 00 d9 fc", C023, 0 },
	{ "x87-arith", "dd 00 d9 f4", C023, 0 }, { "x87-arith", "db 68 20 d9 fa", C023, 0 },
	{ "x87-arith", "db 68 20 d9 fc", C023, 0 },
	{ "x87-arith", "db 68 20 dd 00 de c9", C023, 0 },
	{ "x87-arith", "db 68 20 dd 00 de f9", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 d9 fd", C023, 0 },
	{ "x87-arith", "dd 00 dd 40 08 d9 f8", 0, 0 },
	{ "x87-arith", "dd 00 dd 40 08 d9 f5", 0, 0 },
	{ "x87-arith", "d9 68 38 dd 00 dd 40 08 de f9", C023, 0 },
	{ "x87-arith", "d9 68 38 dd 00 dd 40 08 de c1", C023, 0 },
	{ "x87-arith", "d9 68 38 dd 00 dd 40 08 de c9", C023, 0 },
	{ "x87-arith", "d9 68 38 db 68 20 d9 fc", C023, 0 },
	{ "x87-arith", "d9 68 38 db 68 20 d9 fa", C023, 0 },
	{ "x87-store", "dd 00 d9 58 40", C023, 0 }, { "x87-store", "dd 00 dd 58 40", C023, 0 },
	{ "x87-store", "dd 00 db 78 40", C023, 0 }, { "x87-store", "db 68 20 dd 58 40", C023, 0 },
	{ "x87-store", "db 68 20 d9 58 40", C023, 0 }, { "x87-store", "dd 00 df 78 40", C023, 0 },
	{ "x87-store", "dd 00 db 58 40", C023, 0 }, { "x87-store", "dd 00 df 58 40", C023, 0 },
	{ "x87-store", "dd 00 dd 48 40", C023, 0 }, { "x87-store", "dd 00 db 48 40", C023, 0 },
	{ "x87-store", "dd 00 df 48 40", C023, 0 }, { "x87-store", "dd 00 dd 50 40", C023, 0 },
	{ "x87-store", "db 68 20 db 78 40", C023, 0 },
	{ "x87-store", "d9 68 38 dd 00 df 78 40", C023, 0 },
	{ "x87-store", "d9 68 38 db 68 20 db 58 40", C023, 0 },
	{ "x87-store", "d9 68 38 db 68 20 dd 58 40", C023, 0 },
	{ "x87-store", "dd 00 df 70 40", C023, 0 },
	{ "x87-cmp", "dd 00 dd 40 08 de d9", 0, 0 }, { "x87-cmp", "dd 00 dd 40 08 da e9", 0, 0 },
	{ "x87-cmp", "dd 00 dd 40 08 d8 d1", 0, 0 }, { "x87-cmp", "dd 00 dd 40 08 d8 d9", 0, 0 },
	{ "x87-cmp", "dd 00 dd 40 08 dd e1", 0, 0 }, { "x87-cmp", "dd 00 dd 40 08 dd e9", 0, 0 },
	{ "x87-cmp", "dd 00 dc 50 08", 0, 0 }, { "x87-cmp", "dd 00 d8 58 10", 0, 0 },
	{ "x87-cmp", "dd 00 da 50 14", 0, 0 }, { "x87-cmp", "dd 00 d9 e4", 0, 0 },
	{ "x87-cmp", "dd 00 d9 e5", 0, 0 }, { "x87-cmp", "d9 e5", 0, 0 },
	{ "x87-cmp", "db 68 20 d9 e5", 0, 0 }, { "x87-cmp", "db 68 20 d9 e4", 0, 0 },
	{ "x87-cmp", "dd 00 dd 40 08 db f1", C023, 0 }, { "x87-cmp", "dd 00 dd 40 08 df f1", C023, 0 },
	{ "x87-cmp", "dd 00 dd 40 08 db e9", C023, 0 }, { "x87-cmp", "dd 00 dd 40 08 df e9", C023, 0 },
	{ "x87-cmp", "dd 00 dd 40 08 de d9 df e0", 0, 0 },
	{ "x87-cmp", "dd 00 dd 40 08 de d9 9b df e0", 0, 0 },
	{ "x87-cmp", "dd 00 dd 40 08 de d9 dd 78 40", 0, 0 },
	{ "x87-misc", "dd 00 dd 40 08 d9 c9", C023, 0 }, { "x87-misc", "dd 00 dd c0", CALL4, 0 },
	{ "x87-misc", "dd 00 d9 f7", C023, 0 }, { "x87-misc", "dd 00 d9 f6", C023, 0 },
	{ "x87-misc", "dd 00 db e3", 0, 0 }, { "x87-misc", "dd 00 dd 40 08 de f9 db e2", CALL4, 0 },
	{ "x87-misc", "dd 00 d9 d0", CALL4, 0 },
	{ "x87-misc", "dd 00 dd 40 08 da c1", C023, 0 }, { "x87-misc", "dd 00 dd 40 08 da c9", C023, 0 },
	{ "x87-misc", "dd 00 dd 40 08 da d1", C023, 0 }, { "x87-misc", "dd 00 dd 40 08 da d9", C023, 0 },
	{ "x87-misc", "dd 00 dd 40 08 db c1", C023, 0 }, { "x87-misc", "dd 00 dd 40 08 db c9", C023, 0 },
	{ "x87-misc", "dd 00 dd 40 08 db d1", C023, 0 }, { "x87-misc", "dd 00 dd 40 08 db d9", C023, 0 },
	{ "x87-ctrl", "d9 78 40", CALL4, 0 }, { "x87-ctrl", "d9 68 38", CALL4, 0 },
	{ "x87-ctrl", "d9 68 38 d9 78 40", CALL4, 0 },
	/* the 28-byte environment (32-bit format in 64-bit mode) and the
	 * 108-byte FNSAVE image, as glibc's fenv functions use them */
	{ "fnstenv", "dd 00 d9 70 40", C023, S_FENV },
	{ "fnstenv", "dd 00 dd 40 08 de f9 d9 70 40 db e3 d9 60 40", C023, S_FENV },
	{ "fnsave", "dd 00 dd 40 08 dd 70 40", 0, S_FENV },
	{ "fnsave", "dd 00 dd 40 08 dd 70 40 dd 60 40", C023, S_FENV },
	{ "fxsave", "0f ae 80 00 01 00 00", 0, S_FXSAVE },
	{ "fxsave", "48 0f ae 80 00 01 00 00", 0, S_FXSAVE },
	{ "fxrstor", "0f ae 80 00 01 00 00 0f ae 88 00 01 00 00", 0, S_FXSAVE },
	{ "fxsave", "dd 00 dd 40 08 0f ae 80 00 01 00 00", C023, S_FXSAVE },
	{ "fxsave", "dd 00 dd 40 08 48 0f ae 80 00 01 00 00", C023, S_FXSAVE },
	{ "fxrstor", "dd 00 dd 40 08 0f ae 80 00 01 00 00 db e3 0f ae 88 00 01 00 00", C023, S_FXSAVE },
	{ "fxrstor", "dd 00 0f ae 80 00 01 00 00 db e3 48 0f ae 88 00 01 00 00", C023, S_FXSAVE },
};

/* An 80-bit extended value: edge cases or random numbers near 1. */
static void pick_f80(uint64_t *s, uint8_t out[10])
{
	uint64_t r = diff_rand(s), m = diff_rand(s) | (1ULL << 63);
	uint16_t e;
	switch (r & 7) {
	case 0: e = 0; m = 0; break;                          /* zero */
	case 1: e = 0x7fff; m = 1ULL << 63; break;            /* infinity */
	case 2: e = 0x7fff; m |= 1ULL << 62; break;           /* QNaN */
	case 3: e = 0; m &= ~(1ULL << 63); break;             /* denormal */
	case 4: e = (uint16_t)(1 + (r >> 8) % 0x7ffe); m &= ~(1ULL << 63); break; /* unnormal */
	default: e = (uint16_t)(16383 - 70 + (r >> 8) % 140); break;
	}
	if ((r >> 20) & 1)
		e |= 0x8000;
	memcpy(out, &m, 8);
	memcpy(out + 8, &e, 2);
}

static void x87_operands(struct gen_ctx *g)
{
	struct diff_case *c = g->c;
	uint8_t b[16];
	uint64_t base = 0x1000 + (diff_rand(g->rng) & 0x7c0);
	c->in.gpr[RAX] = DIFF_DATA_BASE + base;
	pick_lanes(g->rng, S_PD, b);                 /* A, B */
	patch(g, base, b, 16);
	pick_lanes(g->rng, S_PS, b);                 /* float, int32, int16 */
	uint64_t iv = pick_val(g->rng, 32), hv = pick_val(g->rng, 16);
	memcpy(b + 4, &iv, 4);
	memcpy(b + 8, &hv, 2);
	patch(g, base + 16, b, 16);
	pick_f80(g->rng, b);                         /* m80 */
	patch(g, base + 32, b, 10);
	uint64_t q = pick_val(g->rng, 64), r = diff_rand(g->rng);
	uint16_t cw = 0x037f;                        /* RC, PC, sometimes unmasked */
	if (r & 1)
		cw = (uint16_t)((cw & ~0xf00) | (((r >> 1) & 0xf) << 8));
	if (((r >> 5) & 7) == 0)
		cw &= (uint16_t)~((r >> 8) & 0x3f);
	memcpy(b, &q, 8);
	memcpy(b + 8, &cw, 2);
	patch(g, base + 48, b, 10);
}

static void build_x87_templates(void)
{
	for (size_t i = 0; i < sizeof(x87_tmpl) / sizeof(x87_tmpl[0]); i++) {
		add_raw(x87_tmpl[i].g, S_X87 | x87_tmpl[i].spec, "%s", x87_tmpl[i].hex);
		tmpls[ntmpl - 1].fswu = x87_tmpl[i].fswu;
	}
}

static void spec_fixups_raw(struct gen_ctx *g, uint32_t spec);
static int gen_seq(struct diff_case *c, uint64_t *rng, int k);

/* Decode the bytes for the mnemonic and operand size. */
static bool decode(const struct diff_case *c, ZydisDecodedInstruction *in,
		   ZydisDecodedOperand *ops)
{
	static ZydisDecoder dec;
	static bool init;
	if (!init) {
		ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
		init = true;
	}
	return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, c->code, c->code_len, in, ops));
}

/* Undefined flags and registers, from the decoded instruction. */
static void finish_case(struct diff_case *c)
{
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	if (!decode(c, &in, ops))
		return;
	unsigned count = 0;
	int opsize = in.operand_width;
	switch (in.mnemonic) {
	case ZYDIS_MNEMONIC_SHL: case ZYDIS_MNEMONIC_SHR: case ZYDIS_MNEMONIC_SAR:
	case ZYDIS_MNEMONIC_ROL: case ZYDIS_MNEMONIC_ROR: case ZYDIS_MNEMONIC_RCL:
	case ZYDIS_MNEMONIC_RCR: case ZYDIS_MNEMONIC_SHLD: case ZYDIS_MNEMONIC_SHRD: {
		uint64_t raw = 1;
		for (int i = 0; i < in.operand_count; i++) {
			if (ops[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
				raw = ops[i].imm.value.u;
			else if (ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER &&
				 ops[i].reg.value == ZYDIS_REGISTER_CL)
				raw = c->in.gpr[RCX];
		}
		count = (unsigned)(raw & (opsize == 64 ? 0x3f : 0x1f));
		break;
	}
	default:
		break;
	}
	c->flags_undef = diff_undef_flags(in.mnemonic, opsize, count);
}

static int encode(ZydisEncoderRequest *req, struct diff_case *c)
{
	ZyanUSize len = sizeof(c->code);
	if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(req, c->code, &len)))
		return -1;
	/* RIP-relative: the displacement counts from the next instruction */
	bool rip = false;
	for (int i = 0; i < req->operand_count; i++)
		if (req->operands[i].type == ZYDIS_OPERAND_TYPE_MEMORY &&
		    req->operands[i].mem.base == ZYDIS_REGISTER_RIP)
			rip = true;
	if (rip) {
		for (int i = 0; i < req->operand_count; i++)
			if (req->operands[i].type == ZYDIS_OPERAND_TYPE_MEMORY &&
			    req->operands[i].mem.base == ZYDIS_REGISTER_RIP)
				req->operands[i].mem.displacement -= (int64_t)(DIFF_CODE_BASE + len);
		ZyanUSize len2 = sizeof(c->code);
		if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(req, c->code, &len2)) || len2 != len)
			return -1;
	}
	c->code_len = (uint8_t)len;
	return 0;
}

static void base_state(struct gen_ctx *g)
{
	struct diff_case *c = g->c;
	for (int i = 0; i < 16; i++)
		c->in.gpr[i] = diff_rand(g->rng);
	c->in.gpr[RSP] = DIFF_STACK_TOP;
	c->in.rip = DIFF_CODE_BASE;
	c->in.rflags = 0x202 | (diff_rand(g->rng) & 0x8d5);
	c->in.mxcsr = 0x1f80;
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 16; j += 8) {
			uint64_t v = diff_rand(g->rng);
			memcpy(&c->in.xmm[i][j], &v, 8);
		}
	c->fill = FILL_RANDOM;
	c->fill_seed = diff_rand(g->rng);
	g->used = 1u << RSP;
}

static int gen_raw(struct gen_ctx *g, const struct tmpl *t)
{
	struct diff_case *c = g->c;
	const char *p = t->shapes;
	int n = 0;
	while (*p && n < DIFF_MAX_CODE) {
		char *end;
		unsigned long b = strtoul(p, &end, 16);
		if (end == p)
			break;
		c->code[n++] = (uint8_t)b;
		p = end;
	}
	c->code_len = (uint8_t)n;
	spec_fixups_raw(g, t->spec);
	c->fsw_undef = t->fswu;
	return 0;
}

static void spec_fixups_raw(struct gen_ctx *g, uint32_t spec)
{
	struct diff_case *c = g->c;
	uint64_t r = diff_rand(g->rng);
	if (spec & S_X87)
		x87_operands(g);
	if (spec & S_FENV) {
		/* FIP, FCS/FOP, FDP, FDS: implementation-specific as above */
		c->mem_undef[0].off = (uint16_t)(c->in.gpr[RAX] - DIFF_DATA_BASE + 64 + 12);
		c->mem_undef[0].len = 16;
	}
	if (spec & S_FXSAVE) {
		/* FOP, FIP/FCS, FDP/FDS: AMD saves them only with an x87
		 * exception pending, Intel may store zero selectors
		 * (FCS/FDS deprecation): implementation-specific */
		uint16_t img = (uint16_t)(c->in.gpr[RAX] - DIFF_DATA_BASE + 0x100);
		c->mem_undef[0].off = img + 6;
		c->mem_undef[0].len = 18;
		/* MXCSR_MASK bits 16-23: AMD reports MM (bit 17) there */
		c->mem_undef[1].off = img + 30;
		c->mem_undef[1].len = 1;
	}
	if ((spec & S_STACK) && !(spec & S_POPF) && (r >> 60) == 0)
		c->in.gpr[RSP] = DIFF_DATA_BASE + ((r >> 50) & 7); /* push faults */
	if (spec & S_RAXCODE)
		c->in.gpr[RAX] = DIFF_CODE_BASE + 0x20;
	if (spec & S_RAXDATA) {
		c->in.gpr[RAX] = DIFF_DATA_BASE + 0x1000 + (r & 0x7f8);
		uint64_t tgt = DIFF_CODE_BASE + 0x20;
		patch(g, c->in.gpr[RAX] - DIFF_DATA_BASE, &tgt, 8);
	}
	if (spec & S_RETADDR) {
		uint64_t tgt = DIFF_CODE_BASE + 0x20 + (r & 0xf);
		patch(g, DIFF_STACK_TOP - DIFF_DATA_BASE, &tgt, 8);
	}
	if (spec & S_POPF) {
		/* random RFLAGS image; TF and AC stay 0 (single-step / alignment
		 * checks would also hit the harness) */
		uint64_t f = diff_rand(g->rng) & 0x3f7fd7 & ~0x40100ULL;
		f |= (r & 1) ? 0xffffffff00000000ULL : 0;
		patch(g, DIFF_STACK_TOP - DIFF_DATA_BASE, &f, 8);
	}
	if (spec & S_RBPDATA) {
		c->in.gpr[RBP] = DIFF_DATA_BASE + 0x2000 + (r & 0xff8);
	}
	if (spec & S_RBXDATA)
		c->in.gpr[RBX] = DIFF_DATA_BASE + 0x1000 + ((r >> 16) & 0x7ff);
	if (spec & S_LOOP) {
		static const uint64_t e[] = { 0, 1, 2, 0x100000000ULL, 0x100000001ULL, 0xffffffff };
		c->in.gpr[RCX] = (r & 1) ? e[(r >> 1) % 6] : diff_rand(g->rng);
	}
	if (spec & S_STRING) {
		bool df = r & 1;
		if (df)
			c->in.rflags |= RFLAGS_DF;
		else
			c->in.rflags &= ~RFLAGS_DF;
		uint64_t cnt = (r >> 1) % 10;
		if (((r >> 5) & 7) == 0)
			cnt = 0;
		uint64_t hi = (r >> 8) & 1 ? diff_rand(g->rng) & ~0xffffffffULL : 0;
		bool a32 = c->code[0] == 0x67;
		c->in.gpr[RCX] = cnt | (a32 ? hi : 0);
		c->in.gpr[RSI] = DIFF_DATA_BASE + 0x800 + ((r >> 10) & 0x3ff) + (a32 ? hi : 0);
		c->in.gpr[RDI] = DIFF_DATA_BASE + 0x2000 + ((r >> 20) & 0x3ff) + (a32 ? hi : 0);
		uint64_t r2 = diff_rand(g->rng);
		if ((r2 & 7) == 0) {
			/* overlapping source and destination (MOVS is defined
			 * element by element: patterns replicate), longer runs */
			int64_t d = (int64_t)((r2 >> 8) % 17) - 8;
			c->in.gpr[RDI] = c->in.gpr[RSI] + (uint64_t)d;
			c->in.gpr[RCX] = (c->in.gpr[RCX] & ~0xffffULL) | ((r2 >> 16) % 300);
		} else if ((r2 & 7) == 1) {
			c->in.gpr[RCX] = (c->in.gpr[RCX] & ~0xffffULL) | ((r2 >> 16) % 0x200);
		}
		if (((r >> 40) & 15) == 0) /* runs off the data area mid-way */
			c->in.gpr[RDI] = (df ? DIFF_DATA_BASE + 8 : DIFF_DATA_BASE + DIFF_DATA_SIZE - 9) +
					 (a32 ? hi : 0);
		if ((r >> 30) & 1) {
			/* low-entropy data so REPE/REPNE compares run for a while */
			c->fill = FILL_SMALL;
			c->in.gpr[RAX] = (c->in.gpr[RAX] & ~0xffffffffffffULL) |
					 ((r >> 31) & 1 ? 0x010101010101ULL : 0);
			if ((r >> 32) & 1)
				c->in.gpr[RAX] &= ~0xffffffffffff0000ULL;
		}
	}
}

static bool branches(const struct tmpl *t)
{
	static const char *const g[] = { "jcc", "jmp", "call", "ret", "loop", "loope",
		"loopne", "jrcxz" };
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		if (!strcmp(t->group, g[i]))
			return true;
	return false;
}

static int gen_case_inner(int vi, uint64_t seed, uint64_t n, struct diff_case *c);

int gen_case(int vi, uint64_t seed, uint64_t n, struct diff_case *c)
{
	int rc = gen_case_inner(vi, seed, n, c);
	/* a case that falls through may end natively on a jump to the
	 * capture code instead of INT3 (faster); branches land in the INT3
	 * fill after the code, so they keep it */
	c->native_trailer = rc == 0 && !branches(&tmpls[variants[vi].t]) &&
			    !(tmpls[variants[vi].t].spec & S_FETCH);
	return rc;
}

static int gen_case_inner(int vi, uint64_t seed, uint64_t n, struct diff_case *c)
{
	const struct variant *v = &variants[vi];
	const struct tmpl *t = &tmpls[v->t];
	uint64_t rng = seed ^ (0x51ed270b27f1ULL * (uint64_t)(vi + 1)) ^ (n * 0x9E3779B97F4A7C15ULL);
	diff_rand(&rng);
	struct gen_ctx g = { .rng = &rng, .c = c };
	memset(c, 0, sizeof(*c));
	c->form = vi;
	base_state(&g);
	if (t->spec & S_SEQ)
		return gen_seq(c, &rng, 2 + (vi % 5));
	if (t->spec & S_FETCH) {
		if (gen_seq(c, &rng, 1) < 0)
			return -1;
		uint64_t r = diff_rand(&rng);
		uint64_t end;
		if (r % 3 == 0 && c->code_len > 1) /* straddles */
			end = DIFF_CODE_SIZE + 1 + (r >> 8) % (uint64_t)(c->code_len - 1);
		else if (r % 3 == 1)
			end = DIFF_CODE_SIZE;
		else
			end = DIFF_CODE_SIZE - 1 - (r >> 8) % 14;
		c->in.rip = DIFF_CODE_BASE + end - c->code_len;
		c->form = vi;
		return 0;
	}
	if (t->mn == ZYDIS_MNEMONIC_INVALID) {
		gen_raw(&g, t);
		finish_case(c);
		return 0;
	}

	ZydisEncoderRequest req;
	memset(&req, 0, sizeof(req));
	req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
	req.mnemonic = t->mn;
	if (v->lock)
		req.prefixes = ZYDIS_ATTRIB_HAS_LOCK;

	uint16_t excl = 0;
	if (t->spec & S_DIV)
		excl |= (1u << RAX) | (1u << RDX);
	if (t->spec & S_COUNT)
		excl |= 1u << RCX;
	if (t->spec & S_CMPXCHG)
		excl |= 1u << RAX; /* the fix-up below sets the accumulator */
	if (t->spec & S_CC8B)
		excl |= (1u << RAX) | (1u << RDX) | (1u << RBX) | (1u << RCX);
	g.used |= excl;

	/* parse the shape */
	char shape[24];
	snprintf(shape, sizeof(shape), "%s", v->shape);
	int nops = 0;
	uint64_t src_val = 0;     /* value of the last source operand */
	int dest_gpr = -1;
	int mem_bytes = 0;
	uint16_t xused = 0;
	if (t->spec & S_SSE) {
		/* MXCSR: random rounding, FTZ/DAZ, sticky flags; now and then
		 * an unmasked exception (#XM) */
		uint64_t r = diff_rand(&rng);
		uint32_t m = 0x1f80;
		if (r & 1)
			m |= (uint32_t)((r >> 1) & 3) << 13;
		if (((r >> 3) & 3) == 0)
			m |= 0x8040;
		if (((r >> 5) & 3) == 0)
			m |= (uint32_t)(r >> 8) & 0x3f;
		if (((r >> 16) & 7) == 0)
			m &= ~((uint32_t)(r >> 20) & 0x1f80);
		c->in.mxcsr = m;
	}
	for (char *tok = strtok(shape, ","); tok && nops < 3; tok = strtok(NULL, ",")) {
		ZydisEncoderOperand *op = &req.operands[nops];
		int bits = v->size;
		char kind = tok[0];
		if (tok[1] >= '0' && tok[1] <= '9')
			bits = atoi(tok + 1);
		if (kind == 'x') {
			int id;
			do
				id = diff_rand(&rng) & 15;
			while (xused & (1u << id));
			xused |= 1u << id;
			op->type = ZYDIS_OPERAND_TYPE_REGISTER;
			op->reg.value = (ZydisRegister)(ZYDIS_REGISTER_XMM0 + id);
			pick_lanes(&rng, t->spec, c->in.xmm[id]);
			if ((t->spec & S_PSHIFT) && nops == 1 && (diff_rand(&rng) & 1)) {
				uint64_t cnt = diff_rand(&rng) % 70;
				memcpy(c->in.xmm[id], &cnt, 8);
			}
		} else if (!strcmp(tok, "cl")) {
			op->type = ZYDIS_OPERAND_TYPE_REGISTER;
			op->reg.value = ZYDIS_REGISTER_CL;
			uint64_t cnt = pick_imm(&g, IMM_COUNT, v->size);
			if ((t->spec & S_SHLD) && v->size == 16 && (cnt & 0x1f) > 16)
				cnt = 16;
			c->in.gpr[RCX] = (c->in.gpr[RCX] & ~0xffULL) | cnt;
		} else if (kind == 'r') {
			int id, gpr;
			bool high = false;
			if (bits == 8) {
				do {
					id = diff_rand(&rng) % 20;
					gpr = r8_gpr(id, &high);
				} while ((g.used | excl) & (1u << gpr) && (g.used | excl) != 0xffff);
				g.used |= 1u << gpr;
			} else {
				gpr = pick_gpr(&g, excl);
				id = gpr;
			}
			if (gpr < 0)
				return -1;
			op->type = ZYDIS_OPERAND_TYPE_REGISTER;
			op->reg.value = gpr_reg(bits, id);
			uint64_t val = pick_val(&rng, bits);
			set_gpr_part(c, gpr, high, bits, val);
			if (nops == 0)
				dest_gpr = gpr;
			src_val = val;
		} else if (kind == 'm') {
			int bytes = bits / 8;
			if (t->mn == ZYDIS_MNEMONIC_CMPXCHG16B)
				bytes = 16;
			if (t->spec & S_LEA) {
				/* every addressing form: base none/RIP/any GPR, index
				 * any but RSP, scales, disp 0/8/32, 32-bit addressing */
				uint64_t r = diff_rand(&rng);
				op->type = ZYDIS_OPERAND_TYPE_MEMORY;
				int b = (int)(r % 18);
				op->mem.base = b == 16 ? ZYDIS_REGISTER_NONE :
					       b == 17 ? ZYDIS_REGISTER_RIP : gpr_reg(64, b);
				int ix = (int)((r >> 8) % 17);
				if (ix < 16 && ix != RSP && b != 17) {
					op->mem.index = gpr_reg(64, ix);
					op->mem.scale = (ZyanU8)(1 << ((r >> 16) & 3));
				}
				switch ((r >> 20) & 3) {
				case 0: op->mem.displacement = 0; break;
				case 1: op->mem.displacement = (int8_t)(r >> 24); break;
				default: op->mem.displacement = (int32_t)(r >> 32); break;
				}
				if (b != 17 && ((r >> 22) & 1)) {
					req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_32;
					if (op->mem.base != ZYDIS_REGISTER_NONE)
						op->mem.base = gpr_reg(32, b);
					if (op->mem.index != ZYDIS_REGISTER_NONE)
						op->mem.index = gpr_reg(32, ix);
				}
				if (b == 16 && op->mem.index == ZYDIS_REGISTER_NONE)
					op->mem.displacement = (int32_t)op->mem.displacement;
				/* Zydis wants the address width here for LEA */
				op->mem.size = req.address_size_hint == ZYDIS_ADDRESS_SIZE_HINT_32 ? 4 : 8;
			} else {
				uint64_t off = pick_ea(&g, bytes);
				if ((t->spec & S_SSE) && (diff_rand(&rng) & 7))
					off &= ~(uint64_t)(bytes - 1); /* mostly aligned */
				if (t->spec & S_CC8B) {
					off &= ~15ULL;
					if (bytes == 16 && (diff_rand(&rng) & 15) == 0)
						off += 8; /* misaligned: #GP */
				}
				if (t->spec & S_BIT)
					off = 0x1000 + (off & 0x7ff);
				make_mem(&g, op, off, bytes, excl, true);
				uint8_t b[16];
				uint64_t val = pick_val(&rng, bits > 64 ? 64 : bits);
				uint64_t v2 = diff_rand(&rng);
				memcpy(b, &val, 8);
				memcpy(b + 8, &v2, 8);
				if (t->spec & S_SSE)
					pick_lanes(&rng, t->spec, b);
				if ((t->spec & S_PSHIFT) && (diff_rand(&rng) & 1)) {
					uint64_t cnt = diff_rand(&rng) % 70;
					memcpy(b, &cnt, 8);
				}
				if (t->spec & S_MXCSR) {
					uint32_t m = (uint32_t)diff_rand(&rng) & 0xffff;
					m |= 0x1f80; /* keep exceptions masked */
					/* a reserved bit: #GP. Not bit 17, which AMD
					 * implements (MM, misaligned SSE; its FXSAVE
					 * MXCSR_MASK is 0x2ffff) */
					if ((diff_rand(&rng) & 7) == 0)
						m |= 1u << (18 + diff_rand(&rng) % 14);
					memcpy(b, &m, 4);
				}
				patch(&g, off, b, bytes > 16 ? 16 : bytes);
				src_val = val;
				mem_bytes = bytes;
			}
		} else if (kind == 'i') {
			op->type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
			int64_t imm = pick_imm(&g, v->imm, v->size);
			if ((t->spec & S_SHLD) && v->size == 16 && (imm & 0x1f) > 16)
				imm = 16;
			if (v->imm == IMM_COUNT || v->imm == IMM_BIT || v->imm == IMM_ANY8 ||
			    v->imm == IMM_PRED)
				op->imm.u = (uint64_t)imm & 0xff;
			else
				op->imm.s = imm;
			if (v->size == 16 && nops == 0)
				req.operand_size_hint = ZYDIS_OPERAND_SIZE_HINT_16;
			src_val = (uint64_t)imm;
		}
		nops++;
	}
	req.operand_count = (ZyanU8)nops;
	if (nops == 1 && req.operands[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
		req.operand_size_hint = v->size == 16 ? ZYDIS_OPERAND_SIZE_HINT_16
						      : ZYDIS_OPERAND_SIZE_HINT_64;

	/* special operand relations */
	if (t->spec & S_DIV) {
		uint64_t r = diff_rand(&rng);
		uint64_t d = src_val & mask_bits(v->size);
		if ((r & 3) != 0 && d != 0) {
			/* make the quotient fit: high half below the divisor
			 * (DIV) or the sign extension of the low half (IDIV) */
			uint64_t lo = pick_val(&rng, v->size);
			uint64_t hi;
			if (t->mn == ZYDIS_MNEMONIC_DIV)
				hi = diff_rand(&rng) % d;
			else
				hi = (lo >> (v->size - 1)) & 1 ? mask_bits(v->size) : 0;
			if (v->size == 8) {
				c->in.gpr[RAX] = (c->in.gpr[RAX] & ~0xffffULL) | (lo & 0xff) | ((hi & 0xff) << 8);
			} else {
				set_gpr_part(c, RAX, false, v->size, lo);
				set_gpr_part(c, RDX, false, v->size, hi);
			}
		}
	}
	if ((t->spec & S_CMPXCHG) && (diff_rand(&rng) & 1)) {
		uint64_t dv = mem_bytes ? 0 : c->in.gpr[dest_gpr >= 0 ? dest_gpr : 0];
		if (mem_bytes)
			memcpy(&dv, g.c->patch[0].bytes, 8);
		if (dest_gpr != RAX)
			set_gpr_part(c, RAX, false, v->size, dv);
	}
	if ((t->spec & S_CC8B) && (diff_rand(&rng) & 1)) {
		uint64_t lo, hi;
		memcpy(&lo, c->patch[0].bytes, 8);
		memcpy(&hi, c->patch[0].bytes + 8, 8);
		if (mem_bytes == 8) {
			c->in.gpr[RAX] = lo & 0xffffffff;
			c->in.gpr[RDX] = lo >> 32;
		} else {
			c->in.gpr[RAX] = lo;
			c->in.gpr[RDX] = hi;
		}
	}
	if ((t->spec & S_BIT) && req.operand_count == 2 &&
	    req.operands[1].type == ZYDIS_OPERAND_TYPE_REGISTER && mem_bytes) {
		/* register bit offset into memory: signed, keep it near */
		int gpr = (int)(req.operands[1].reg.value - gpr_reg(v->size, 0));
		int64_t bo = (int64_t)(diff_rand(&rng) % 2048) - 1024;
		set_gpr_part(c, gpr, false, v->size, (uint64_t)bo);
	}
	if (t->spec & S_RDIDATA)
		c->in.gpr[RDI] = DIFF_DATA_BASE + 0x1000 + (diff_rand(&rng) & 0x7ff);

	if (encode(&req, c) < 0)
		return -1;
	finish_case(c);

	/* BSF/BSR: "If the content of the source operand is 0, the content of
	 * the destination operand is undefined." */
	if ((t->spec & S_BSF) && (src_val & mask_bits(v->size)) == 0 && dest_gpr >= 0)
		c->gpr_undef |= 1u << dest_gpr;
	return 0;
}


/* ---- sequences ---- */

static int seq_pool[MAX_VARIANTS];
static int seq_npool;

static bool seq_eligible(const struct variant *v)
{
	const struct tmpl *t = &tmpls[v->t];
	static const char *const raw_ok[] = { "cbw", "cwde", "cdqe", "cwd", "cdq", "cqo",
		"lahf", "sahf", "clc", "stc", "cmc", "cld", "std", "nop" };
	if (t->mn == ZYDIS_MNEMONIC_INVALID) {
		for (size_t i = 0; i < sizeof(raw_ok) / sizeof(raw_ok[0]); i++)
			if (!strcmp(t->group, raw_ok[i]))
				return true;
		return false;
	}
	/* register-only, flags knowable statically (no CL counts, no BSF
	 * zero-source destinations), no #DE, no stack, integer only */
	if (strchr(v->shape, 'm') || strstr(v->shape, "cl") || v->lock)
		return false;
	/* CPUID-gated (main.c tests them only where both sides have them) */
	if (!strcmp(t->group, "tzcnt") || !strcmp(t->group, "lzcnt") ||
	    !strcmp(t->group, "popcnt"))
		return false;
	return !(t->spec & (S_DIV | S_BSF | S_STACK | S_SSE | S_CC8B | S_STRING | S_X87));
}

static void seq_pool_init(void)
{
	for (int v = 0; v < nvariants; v++)
		if (seq_eligible(&variants[v]))
			seq_pool[seq_npool++] = v;
}

static bool is_shift(ZydisMnemonic m)
{
	switch (m) {
	case ZYDIS_MNEMONIC_SHL: case ZYDIS_MNEMONIC_SHR: case ZYDIS_MNEMONIC_SAR:
	case ZYDIS_MNEMONIC_ROL: case ZYDIS_MNEMONIC_ROR: case ZYDIS_MNEMONIC_RCL:
	case ZYDIS_MNEMONIC_RCR: case ZYDIS_MNEMONIC_SHLD: case ZYDIS_MNEMONIC_SHRD:
		return true;
	default:
		return false;
	}
}

/* Concatenate k register-only instructions. Undefined flags are tracked
 * through the sequence (Zydis' per-instruction flag access plus the SDM
 * masks of flags.c); an instruction that would read an undefined flag is
 * not used, and what is undefined at the end is masked. */
static int gen_seq(struct diff_case *c, uint64_t *rng, int k)
{
	if (seq_npool == 0)
		return -1;
	uint64_t undef = 0;
	int len = 0, got = 0;
	struct diff_case t;
	for (int tries = 0; got < k && tries < 8 * k; tries++) {
		int v = seq_pool[diff_rand(rng) % (uint64_t)seq_npool];
		if (gen_case(v, diff_rand(rng), 0, &t) < 0)
			continue;
		ZydisDecodedInstruction in;
		ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
		if (!decode(&t, &in, ops) || !in.cpu_flags || len + t.code_len > DIFF_MAX_CODE)
			continue;
		if (in.cpu_flags->tested & undef)
			continue;
		if (got == 0) {
			int form = c->form;
			*c = t;           /* the first one's full input state */
			c->form = form;
		} else {
			memcpy(c->code + len, t.code, t.code_len);
		}
		len += t.code_len;
		got++;
		uint64_t written = in.cpu_flags->modified | in.cpu_flags->set_0 | in.cpu_flags->set_1 |
				   in.cpu_flags->undefined;
		uint64_t u = t.flags_undef | in.cpu_flags->undefined;
		if (is_shift(in.mnemonic) && t.flags_undef == 0 &&
		    (in.mnemonic == ZYDIS_MNEMONIC_SHL || in.mnemonic == ZYDIS_MNEMONIC_SHR ||
		     in.mnemonic == ZYDIS_MNEMONIC_SAR || in.mnemonic == ZYDIS_MNEMONIC_SHLD ||
		     in.mnemonic == ZYDIS_MNEMONIC_SHRD || in.mnemonic == ZYDIS_MNEMONIC_RCL ||
		     in.mnemonic == ZYDIS_MNEMONIC_RCR)) {
			/* masked count 0 (or RCL/RCR 0/1 — conservative): flags
			 * left alone when the count is 0 */
			unsigned cnt = 0;
			for (int i = 0; i < in.operand_count; i++)
				if (ops[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
					cnt = (unsigned)(ops[i].imm.value.u & (in.operand_width == 64 ? 63 : 31));
			if (cnt == 0)
				written = 0, u = 0;
		}
		undef = (undef & ~(written & ~u)) | u;
		if (got <= 8) {
			c->seq_end[got - 1] = (uint8_t)len;
			c->seq_undef[got - 1] = undef;
			c->nseq = (uint8_t)got;
		}
	}
	if (got < (k < 2 ? k : 2))
		return -1;
	c->code_len = (uint8_t)len;
	c->flags_undef = undef;
	c->gpr_undef = 0;
	c->fsw_undef = 0;
	memset(c->patch, 0, sizeof(c->patch));
	return 0;
}

/* ---- variants ---- */

int gen_init(void)
{
	build_templates();
	struct diff_case c;
	for (int t = 0; t < ntmpl; t++) {
		const struct tmpl *tp = &tmpls[t];
		if (tp->mn == ZYDIS_MNEMONIC_INVALID) {
			if (nvariants < MAX_VARIANTS)
				variants[nvariants++] = (struct variant){ .t = t, .size = 0 };
			continue;
		}

		char shapes[128];
		snprintf(shapes, sizeof(shapes), "%s", tp->shapes);
		char *save;
		for (char *sh = strtok_r(shapes, " ", &save); sh; sh = strtok_r(NULL, " ", &save)) {
			for (int sz = 8; sz <= 128; sz *= 2) {
				if (!(tp->sizes & (sz / 8)))
					continue;
				bool has_imm = strchr(sh, 'i') != NULL;
				for (int k = 0; k < (has_imm ? 3 : 1); k++) {
					int imm = has_imm ? imm_class_for(tp, sz, k) : IMM_NONE;
					if (imm < 0 || (k > 0 && (imm == IMM_COUNT || imm == IMM_BIT)))
						continue;
					for (int lock = 0; lock < 2; lock++) {
						if (lock && (!(tp->spec & S_LOCK) || sh[0] != 'm'))
							continue;
						if (nvariants >= MAX_VARIANTS)
							return -1;
						struct variant *v = &variants[nvariants];
						*v = (struct variant){ .t = t, .size = sz, .imm = imm,
								       .lock = lock };
						snprintf(v->shape, sizeof(v->shape), "%s", sh);
						/* keep it if the encoder takes a few tries */
						bool ok = false;
						for (int n = 0; n < 8 && !ok; n++)
							ok = gen_case(nvariants, 1, n, &c) == 0;
						if (ok)
							nvariants++;
					}
				}
			}
		}
	}
	seq_pool_init();
	return 0;
}

int gen_variant_count(void)
{
	return nvariants;
}

const char *gen_variant_group(int v)
{
	return tmpls[variants[v].t].group;
}

void gen_form_key(const struct diff_case *c, char *key, size_t len)
{
	ZydisDecodedInstruction in;
	ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
	if (!decode(c, &in, ops)) {
		snprintf(key, len, "invalid %02x %02x %02x", c->code[0], c->code[1], c->code[2]);
		return;
	}
	/* a sequence (x87 set-up, then the instruction under test): the
	 * form is that of its last instruction */
	for (int off = in.length; off < c->code_len;) {
		struct diff_case tail;
		tail.code_len = (uint8_t)(c->code_len - off);
		memcpy(tail.code, c->code + off, tail.code_len);
		if (!decode(&tail, &in, ops))
			break;
		off += in.length;
	}
	bool modrm_reg_used = false, opcode_reg = false;
	for (int i = 0; i < in.operand_count_visible; i++) {
		if (ops[i].encoding == ZYDIS_OPERAND_ENCODING_MODRM_REG)
			modrm_reg_used = true;
		if (ops[i].encoding == ZYDIS_OPERAND_ENCODING_OPCODE)
			opcode_reg = true; /* 50+r, B8+r, C8+r...: one form */
	}
	size_t pos = snprintf(key, len, "%s m%d op%02x", ZydisMnemonicGetString(in.mnemonic),
			      in.opcode_map, opcode_reg ? in.opcode & 0xf8 : in.opcode);
	if ((in.attributes & ZYDIS_ATTRIB_HAS_MODRM) && !modrm_reg_used)
		pos += snprintf(key + pos, len - pos, "/%d", in.raw.modrm.reg);
	pos += snprintf(key + pos, len - pos, " w%d a%d", in.operand_width, in.address_width);
	if (in.attributes & ZYDIS_ATTRIB_HAS_LOCK)
		pos += snprintf(key + pos, len - pos, " lock");
	if (in.attributes & ZYDIS_ATTRIB_HAS_REP)
		pos += snprintf(key + pos, len - pos, " rep");
	if (in.attributes & ZYDIS_ATTRIB_HAS_REPE)
		pos += snprintf(key + pos, len - pos, " repe");
	if (in.attributes & ZYDIS_ATTRIB_HAS_REPNE)
		pos += snprintf(key + pos, len - pos, " repne");
	for (int i = 0; i < in.operand_count_visible && pos < len; i++) {
		const ZydisDecodedOperand *o = &ops[i];
		switch (o->type) {
		case ZYDIS_OPERAND_TYPE_REGISTER:
			pos += snprintf(key + pos, len - pos, " r%d", o->size);
			break;
		case ZYDIS_OPERAND_TYPE_MEMORY:
			pos += snprintf(key + pos, len - pos, " m%d", o->size);
			if (in.mnemonic == ZYDIS_MNEMONIC_LEA)
				pos += snprintf(key + pos, len - pos, "[mod%d rm%d%s%s%s d%d]",
						in.raw.modrm.mod, in.raw.modrm.rm & 7,
						o->mem.base == ZYDIS_REGISTER_RIP ? " rip" : "",
						(in.raw.modrm.rm & 7) == 4 ? (in.raw.sib.index == 4 ? " noidx" : " idx") : "",
						(in.raw.modrm.rm & 7) == 4 && in.raw.sib.base == 5 ? " sibb5" : "",
						in.raw.disp.size);
			break;
		case ZYDIS_OPERAND_TYPE_IMMEDIATE:
			pos += snprintf(key + pos, len - pos, " i%d", in.raw.imm[0].size);
			break;
		default:
			pos += snprintf(key + pos, len - pos, " ?");
		}
	}
}
