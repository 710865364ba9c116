/* Soft side: the same case on soft_run_standalone.
 *
 * Guest memory is 1 GiB (anonymous, touched lazily) so the native addresses
 * can be identity-mapped. Page tables (4-level, 4 KiB pages) map exactly the
 * code page (user, read-only, executable) and the data area (user, writable,
 * NX), like the native child; everything else is not present, except a
 * supervisor TSS and IDT page as Linux has. The vCPU is in 64-bit mode at
 * CPL3 with the control registers Linux gives user code. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "engine/soft/soft.h"

#define PT_P   (1ULL << 0)
#define PT_RW  (1ULL << 1)
#define PT_US  (1ULL << 2)
#define PT_NX  (1ULL << 63)

/* page-table pages (guest-physical), far below the mapped addresses */
#define PML4_GPA  0x1000ULL
#define PDPT_GPA  0x2000ULL
#define PD_GPA    0x3000ULL
#define PT_CODE   0x4000ULL
#define PT_DATA   0x5000ULL
#define TSS_GPA   0x6000ULL  /* supervisor-only, identity-mapped */
#define PT_LOW    0x7000ULL
#define IDT_GPA   0x8000ULL  /* supervisor-only, identity-mapped */

#define SOFT_MEM_SIZE (1ULL << 30)
#define SOFT_MAX_INSNS 100000

struct diff_soft_env {
	struct guest_memory mem;
};

static void put64(struct diff_soft_env *e, uint64_t gpa, uint64_t v)
{
	gm_write(&e->mem, gpa, &v, 8);
}

/* Rebuilt before every case: clears A/D bits a previous case set. */
static void build_page_tables(struct diff_soft_env *e)
{
	uint8_t zero[4096] = { 0 };
	for (uint64_t p = PML4_GPA; p <= IDT_GPA; p += 0x1000)
		gm_write(&e->mem, p, zero, sizeof(zero));
	const uint64_t up = PT_P | PT_RW | PT_US;
	put64(e, PML4_GPA, PDPT_GPA | up);
	put64(e, PDPT_GPA, PD_GPA | up);
	put64(e, PD_GPA + 8 * ((DIFF_CODE_BASE >> 21) & 511), PT_CODE | up);
	put64(e, PD_GPA + 8 * ((DIFF_DATA_BASE >> 21) & 511), PT_DATA | up);
	/* the 64-bit TSS, as Linux has one: supervisor page; its I/O map base
	 * (offset 0x66) lies beyond the limit, so IN/OUT at CPL3 is #GP */
	put64(e, PD_GPA, PT_LOW | up);
	put64(e, PT_LOW + 8 * (TSS_GPA >> 12), TSS_GPA | PT_P | PT_RW | PT_NX);
	uint16_t iomap = 0x68;
	gm_write(&e->mem, TSS_GPA + 0x66, &iomap, 2);
	/* an IDT like Linux's: 64-bit interrupt gates, DPL 0 except 3 (#BP),
	 * 4 (#OF) and 0x80, so INT n from CPL3 is #GP(n*8+2) as natively.
	 * The handlers are never reached (exceptions are not delivered). */
	put64(e, PT_LOW + 8 * (IDT_GPA >> 12), IDT_GPA | PT_P | PT_RW | PT_NX);
	for (int v = 0; v < 256; v++) {
		uint64_t handler = 0xffffffff81000000ULL + 16 * (uint64_t)v;
		unsigned dpl = (v == 3 || v == 4 || v == 0x80) ? 3 : 0;
		uint64_t lo = (handler & 0xffff) | (0x10ULL << 16) |
			      ((uint64_t)(0x8e | dpl << 5) << 40) | ((handler >> 16) & 0xffff) << 48;
		put64(e, IDT_GPA + 16 * v, lo);
		put64(e, IDT_GPA + 16 * v + 8, handler >> 32);
	}
	for (uint64_t off = 0; off < DIFF_CODE_SIZE; off += 4096) {
		uint64_t va = DIFF_CODE_BASE + off;
		put64(e, PT_CODE + 8 * ((va >> 12) & 511), va | PT_P | PT_US);
	}
	for (uint64_t off = 0; off < DIFF_DATA_SIZE; off += 4096) {
		uint64_t va = DIFF_DATA_BASE + off;
		put64(e, PT_DATA + 8 * ((va >> 12) & 511), va | PT_P | PT_RW | PT_US | PT_NX);
	}
}

struct diff_soft_env *diff_soft_env_new(void)
{
	struct diff_soft_env *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	if (guest_memory_init(&e->mem, SOFT_MEM_SIZE) < 0) {
		free(e);
		return NULL;
	}
	return e;
}

void diff_soft_env_free(struct diff_soft_env *e)
{
	if (!e)
		return;
	guest_memory_destroy(&e->mem);
	free(e);
}

static void user_seg(struct segment *s, uint16_t sel, uint8_t type, bool code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->s = 1;
	s->dpl = 3;
	s->present = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

static void build_state(const struct diff_case *c, struct cpu_state *st)
{
	memset(st, 0, sizeof(*st));
	memcpy(st->gpr, c->in.gpr, sizeof(st->gpr));
	st->rip = c->in.rip;
	st->rflags = c->in.rflags;
	/* Linux's 64-bit user selectors: CS 0x33, SS 0x2b; DS/ES/FS/GS null */
	user_seg(&st->seg[SEG_CS], 0x33, 0xb, true);
	user_seg(&st->seg[SEG_SS], 0x2b, 0x3, false);
	for (int s = 0; s < SEG_COUNT; s++) {
		if (s == SEG_CS || s == SEG_SS)
			continue;
		memset(&st->seg[s], 0, sizeof(st->seg[s]));
		st->seg[s].unusable = 1;
	}
	st->seg[SEG_TR].type = 0xb; /* busy 64-bit TSS */
	st->seg[SEG_TR].present = 1;
	st->seg[SEG_TR].unusable = 0;
	st->seg[SEG_TR].selector = 0x40;
	st->seg[SEG_TR].base = TSS_GPA;
	st->seg[SEG_TR].limit = 0x67;
	st->idt.base = IDT_GPA;
	st->idt.limit = 0xfff;
	st->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	st->cr3 = PML4_GPA;
	st->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	st->efer = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;
	st->xcr0 = 1;
	st->fx.fcw = 0x37f;
	st->fx.mxcsr = c->in.mxcsr;
	st->fx.mxcsr_mask = 0xffff;
	memcpy(st->fx.xmm, c->in.xmm, sizeof(st->fx.xmm));
	st->msr.pat = 0x0007040600070406ULL;
}

void diff_soft_run(struct diff_soft_env *e, const struct diff_case *c, struct diff_result *r)
{
	memset(r, 0, offsetof(struct diff_result, data));
	build_page_tables(e);
	uint8_t *code = gm_ptr(&e->mem, DIFF_CODE_BASE, DIFF_CODE_SIZE);
	uint8_t *data = gm_ptr(&e->mem, DIFF_DATA_BASE, DIFF_DATA_SIZE);
	memset(code, 0xCC, DIFF_CODE_SIZE);
	uint64_t off = c->in.rip - DIFF_CODE_BASE;
	if (off < DIFF_CODE_SIZE)
		memcpy(code + off, c->code,
		       c->code_len < DIFF_CODE_SIZE - off ? c->code_len : DIFF_CODE_SIZE - off);
	diff_fill_data(c, data);

	static struct cpu_state st; /* large; one case at a time */
	build_state(c, &st);
	struct soft_run_result sr;
	memset(&sr, 0, sizeof(sr));
	int rc = soft_run_standalone(&e->mem, &st, SOFT_MAX_INSNS, &sr);

	memcpy(r->out.gpr, st.gpr, sizeof(r->out.gpr));
	r->out.rip = st.rip;
	r->out.rflags = st.rflags;
	r->out.mxcsr = st.fx.mxcsr;
	memcpy(r->out.xmm, st.fx.xmm, sizeof(r->out.xmm));
	r->out.fcw = st.fx.fcw;
	r->out.fsw = st.fx.fsw;
	r->out.ftw = st.fx.ftw;
	for (int i = 0; i < 8; i++)
		memcpy(r->out.st[i], st.fx.st[i], 10);
	memcpy(r->data, data, DIFF_DATA_SIZE);
	if (rc < 0) {
		r->stop = STOP_CRASH;
		r->soft_errno = rc;
		return;
	}
	switch (sr.stop) {
	case SOFT_STOP_EXCEPTION:
		r->stop = STOP_EXCEPTION;
		r->vector = sr.vector;
		r->err = sr.error_code;
		r->cr2 = sr.vector == 14 ? sr.cr2 : 0;
		break;
	case SOFT_STOP_LIMIT:
		r->stop = STOP_TIMEOUT;
		break;
	case SOFT_STOP_HLT:
		r->stop = STOP_HLT;
		break;
	default:
		r->stop = STOP_IO;
	}
}

/* CPUID as the soft CPU answers it (CPUID; INT3 at CPL3). 0 or -1. */
int diff_soft_cpuid(struct diff_soft_env *e, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	static struct diff_case c;
	static struct diff_result r;
	memset(&c, 0, sizeof(c));
	c.code[0] = 0x0f;
	c.code[1] = 0xa2;
	c.code_len = 2;
	c.in.gpr[RAX] = leaf;
	c.in.gpr[RCX] = sub;
	c.in.gpr[RSP] = DIFF_STACK_TOP;
	c.in.rip = DIFF_CODE_BASE;
	c.in.rflags = 0x202;
	c.in.mxcsr = 0x1f80;
	c.fill = FILL_ZERO;
	diff_soft_run(e, &c, &r);
	if (r.stop != STOP_EXCEPTION || r.vector != 3)
		return -1;
	out[0] = (uint32_t)r.out.gpr[RAX];
	out[1] = (uint32_t)r.out.gpr[RBX];
	out[2] = (uint32_t)r.out.gpr[RCX];
	out[3] = (uint32_t)r.out.gpr[RDX];
	return 0;
}
