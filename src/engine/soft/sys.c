/* System instructions: segmentation, far transfers, interrupts and
 * exceptions, control registers, MSRs, CPUID, I/O, fast system calls. */
#include <x86intrin.h>

#include <Zydis/Zydis.h>

#include "engine/soft/soft_cpu.h"
#include "vmm/bus.h"
#include "vmm/vm.h"

#define H(name) static int name(struct soft_cpu *cpu, const struct sinsn *in)

uint64_t soft_host_tsc(void)
{
	return __rdtsc();
}

uint64_t soft_read_tsc(struct soft_cpu *cpu)
{
	return soft_host_tsc() + cpu->tsc_offset;
}

static inline void need_cpl0(struct soft_cpu *cpu)
{
	if (cpu->cpl)
		soft_gp(cpu, 0);
}

/* ---- descriptors ---- */

static uint64_t sys_read(struct soft_cpu *cpu, uint64_t la, unsigned size)
{
	uint64_t v = 0;
	soft_lin_read(cpu, la, &v, size, ACC_READ | ACC_IMPLICIT);
	return v;
}

static void sys_write(struct soft_cpu *cpu, uint64_t la, unsigned size, uint64_t v)
{
	soft_lin_write(cpu, la, &v, size, ACC_WRITE | ACC_IMPLICIT);
}

/* Address of the descriptor for sel, or raise #GP(sel) (vector vec). */
static uint64_t desc_addr(struct soft_cpu *cpu, uint16_t sel, unsigned size, int vec)
{
	uint64_t base, limit;
	if (sel & 4) {
		const struct segment *l = &cpu->s.seg[SEG_LDTR];
		if (l->unusable || !l->present)
			soft_raise(cpu, vec, sel & 0xfffc, true);
		base = l->base;
		limit = l->limit;
	} else {
		base = cpu->s.gdt.base;
		limit = cpu->s.gdt.limit;
	}
	if ((uint64_t)(sel & ~7u) + size - 1 > limit)
		soft_raise(cpu, vec, sel & 0xfffc, true);
	uint64_t a = base + (sel & ~7u);
	return cpu->long_mode ? a : (uint32_t)a;
}

static uint64_t read_desc(struct soft_cpu *cpu, uint16_t sel, int vec)
{
	return sys_read(cpu, desc_addr(cpu, sel, 8, vec), 8);
}

static void desc_to_seg(uint64_t d, uint16_t sel, struct segment *sg)
{
	uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
	sg->base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
	sg->type = (d >> 40) & 0xf;
	sg->s = (d >> 44) & 1;
	sg->dpl = (d >> 45) & 3;
	sg->present = (d >> 47) & 1;
	sg->avl = (d >> 52) & 1;
	sg->l = (d >> 53) & 1;
	sg->db = (d >> 54) & 1;
	sg->g = (d >> 55) & 1;
	sg->limit = sg->g ? (limit << 12) | 0xfff : limit;
	sg->selector = sel;
	sg->unusable = 0;
}

static void set_accessed(struct soft_cpu *cpu, uint16_t sel, uint64_t d)
{
	if (!(d & (1ULL << 40)))
		sys_write(cpu, desc_addr(cpu, sel, 8, 13) + 5, 1, ((d >> 40) & 0xff) | 1);
}

void soft_load_seg(struct soft_cpu *cpu, int seg, uint16_t sel)
{
	struct segment *sg = &cpu->s.seg[seg];
	if (!(cpu->s.cr0 & CR0_PE) || (cpu->s.rflags & RFLAGS_VM)) {
		sg->selector = sel;
		sg->base = (uint64_t)sel << 4;
		sg->present = 1;
		sg->unusable = 0;
		sg->s = 1;
		if (seg == SEG_CS) {
			sg->type = 0xb;
			soft_mode_changed(cpu);
		} else if (seg == SEG_SS) {
			soft_mode_changed(cpu);
		}
		return;
	}
	unsigned rpl = sel & 3;
	if (!(sel & 0xfffc)) {
		if (seg == SEG_SS && !(cpu->mode64 && cpu->cpl != 3 && rpl == cpu->cpl))
			soft_gp(cpu, 0);
		sg->selector = sel;
		sg->unusable = 1;
		sg->present = 0;
		if (seg == SEG_SS) {
			sg->dpl = (uint8_t)cpu->cpl;
			soft_mode_changed(cpu);
		}
		return;
	}
	uint64_t d = read_desc(cpu, sel, 13);
	struct segment n;
	desc_to_seg(d, sel, &n);
	bool code = n.type & 8;
	if (!n.s)
		soft_gp(cpu, sel & 0xfffc);
	if (seg == SEG_SS) {
		if (code || !(n.type & 2) || rpl != cpu->cpl || n.dpl != cpu->cpl)
			soft_gp(cpu, sel & 0xfffc);
		if (!n.present)
			soft_raise(cpu, 12, sel & 0xfffc, true);
	} else {
		if (code && !(n.type & 2))
			soft_gp(cpu, sel & 0xfffc);
		if ((!code || !(n.type & 4)) && (n.dpl < cpu->cpl || n.dpl < rpl))
			soft_gp(cpu, sel & 0xfffc);
		if (!n.present)
			soft_raise(cpu, 11, sel & 0xfffc, true);
	}
	set_accessed(cpu, sel, d);
	n.type |= 1;
	if (cpu->mode64 && (seg == SEG_FS || seg == SEG_GS)) {
		/* 64-bit mode keeps the 32-bit base from the descriptor */
	}
	*sg = n;
	if (seg == SEG_SS)
		soft_mode_changed(cpu);
}

/* Load CS for a far transfer to a code segment at privilege cpl. */
static void load_cs(struct soft_cpu *cpu, uint16_t sel, uint64_t d, unsigned cpl)
{
	struct segment n;
	desc_to_seg(d, (uint16_t)((sel & ~3) | cpl), &n);
	set_accessed(cpu, sel, d);
	n.type |= 1;
	cpu->s.seg[SEG_CS] = n;
	cpu->cpl = (uint8_t)cpl;
	soft_mode_changed(cpu);
}

/* Check a code-segment descriptor for a direct far JMP/CALL. */
static uint64_t check_code(struct soft_cpu *cpu, uint16_t sel)
{
	if (!(sel & 0xfffc))
		soft_gp(cpu, 0);
	uint64_t d = read_desc(cpu, sel, 13);
	unsigned type = (d >> 40) & 0xf, dpl = (d >> 45) & 3, rpl = sel & 3;
	if (!((d >> 44) & 1) || !(type & 8)) {
		/* call gates, task gates and TSS targets are not supported */
		soft_gp(cpu, sel & 0xfffc);
	}
	if (type & 4) {
		if (dpl > cpu->cpl)
			soft_gp(cpu, sel & 0xfffc);
	} else if (rpl > cpu->cpl || dpl != cpu->cpl) {
		soft_gp(cpu, sel & 0xfffc);
	}
	if (!((d >> 47) & 1))
		soft_raise(cpu, 11, sel & 0xfffc, true);
	if (cpu->long_mode && ((d >> 53) & 1) && ((d >> 54) & 1))
		soft_gp(cpu, sel & 0xfffc);
	return d;
}

static void far_target(struct soft_cpu *cpu, const struct sinsn *in, uint16_t *sel, uint64_t *off)
{
	if (in->op[0].kind == OP_IMM) {
		*off = in->imm & size_mask(in->osz);
		*sel = (uint16_t)in->imm2;
		return;
	}
	unsigned osz = in->osz;
	uint64_t la = ea_lin(cpu, in, osz + 2, false);
	*off = lin_read(cpu, la, osz);
	*sel = (uint16_t)lin_read(cpu, la + osz, 2);
}

static void real_far(struct soft_cpu *cpu, uint16_t sel, uint64_t off)
{
	struct segment *cs = &cpu->s.seg[SEG_CS];
	cs->selector = sel;
	cs->base = (uint64_t)sel << 4;
	cpu->s.rip = off;
	soft_mode_changed(cpu);
}

int soft_far_jmp(struct soft_cpu *cpu, const struct sinsn *in)
{
	uint16_t sel;
	uint64_t off;
	far_target(cpu, in, &sel, &off);
	if (!(cpu->s.cr0 & CR0_PE) || (cpu->s.rflags & RFLAGS_VM)) {
		real_far(cpu, sel, off);
		return SOFT_JUMP;
	}
	uint64_t d = check_code(cpu, sel);
	load_cs(cpu, sel, d, cpu->cpl);
	cpu->s.rip = cpu->mode64 ? off : (uint32_t)off;
	return SOFT_JUMP;
}

int soft_far_call(struct soft_cpu *cpu, const struct sinsn *in)
{
	uint16_t sel;
	uint64_t off;
	far_target(cpu, in, &sel, &off);
	unsigned sz = in->osz;
	uint64_t next = cpu->s.rip + in->len;
	uint16_t ocs = cpu->s.seg[SEG_CS].selector;
	if (!(cpu->s.cr0 & CR0_PE) || (cpu->s.rflags & RFLAGS_VM)) {
		soft_push(cpu, sz, ocs);
		soft_push(cpu, sz, next);
		real_far(cpu, sel, off);
		return SOFT_JUMP;
	}
	uint64_t d = check_code(cpu, sel);
	uint64_t osp = cpu->s.gpr[RSP];
	soft_push(cpu, sz, ocs);
	soft_push(cpu, sz, next);
	(void)osp;
	load_cs(cpu, sel, d, cpu->cpl);
	cpu->s.rip = cpu->mode64 ? off : (uint32_t)off;
	return SOFT_JUMP;
}

/* Null data segment registers the new privilege may not use. */
static void fix_data_segs(struct soft_cpu *cpu)
{
	static const int segs[] = { SEG_ES, SEG_DS, SEG_FS, SEG_GS };
	for (unsigned i = 0; i < 4; i++) {
		struct segment *sg = &cpu->s.seg[segs[i]];
		bool code_conf = (sg->type & 0xc) == 0xc;
		if (!sg->unusable && sg->s && !code_conf && sg->dpl < cpu->cpl) {
			sg->selector = 0;
			sg->unusable = 1;
			sg->present = 0;
		}
	}
}

int soft_far_ret(struct soft_cpu *cpu, const struct sinsn *in)
{
	unsigned sz = in->osz;
	uint64_t add = in->nops ? in->imm & 0xffff : 0;
	uint64_t off = soft_stack_peek(cpu, 0, sz);
	uint16_t sel = (uint16_t)soft_stack_peek(cpu, sz, sz);
	uint64_t m = size_mask(cpu->stack_size);
	if (!(cpu->s.cr0 & CR0_PE) || (cpu->s.rflags & RFLAGS_VM)) {
		cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | ((cpu->s.gpr[RSP] + 2 * sz + add) & m);
		real_far(cpu, sel, off);
		return SOFT_JUMP;
	}
	unsigned rpl = sel & 3;
	if (!(sel & 0xfffc) || rpl < cpu->cpl)
		soft_gp(cpu, sel & 0xfffc);
	uint64_t d = read_desc(cpu, sel, 13);
	unsigned type = (d >> 40) & 0xf, dpl = (d >> 45) & 3;
	if (!((d >> 44) & 1) || !(type & 8) || ((type & 4) ? dpl > rpl : dpl != rpl))
		soft_gp(cpu, sel & 0xfffc);
	if (!((d >> 47) & 1))
		soft_raise(cpu, 11, sel & 0xfffc, true);
	if (rpl == cpu->cpl) {
		cpu->s.gpr[RSP] = (cpu->s.gpr[RSP] & ~m) | ((cpu->s.gpr[RSP] + 2 * sz + add) & m);
		load_cs(cpu, sel, d, rpl);
	} else {
		uint64_t nsp = soft_stack_peek(cpu, 2 * sz + (unsigned)add, sz);
		uint16_t nss = (uint16_t)soft_stack_peek(cpu, 3 * sz + (unsigned)add, sz);
		load_cs(cpu, sel, d, rpl);
		soft_load_seg(cpu, SEG_SS, nss);
		cpu->s.gpr[RSP] = nsp + add;
		if (cpu->stack_size != 8)
			cpu->s.gpr[RSP] &= size_mask(cpu->stack_size);
		fix_data_segs(cpu);
	}
	cpu->s.rip = cpu->mode64 ? off : (uint32_t)off;
	return SOFT_JUMP;
}

/* ---- RFLAGS writes (POPF, IRET) ---- */

static void write_flags(struct soft_cpu *cpu, uint64_t v, unsigned sz, bool iret)
{
	uint64_t mask = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_TF |
			RFLAGS_DF | RFLAGS_OF | RFLAGS_NT | RFLAGS_AC | RFLAGS_ID;
	unsigned iopl = (cpu->s.rflags >> 12) & 3;
	if (!(cpu->s.cr0 & CR0_PE) || cpu->cpl == 0)
		mask |= RFLAGS_IOPL | RFLAGS_IF;
	else if (cpu->cpl <= iopl)
		mask |= RFLAGS_IF;
	if (iret)
		mask |= RFLAGS_RF;
	if (sz == 2)
		mask &= 0xffff;
	soft_flags_commit(cpu);
	uint64_t old = cpu->s.rflags;
	cpu->s.rflags = (old & ~mask) | (v & mask) | RFLAGS_FIXED;
	if ((old ^ cpu->s.rflags) & (RFLAGS_AC | RFLAGS_IF))
		soft_mode_changed(cpu);
}

H(h_pushf)
{
	unsigned sz = cpu->code_size == 8 ? (in->osz == 2 ? 2 : 8) : in->osz;
	if ((cpu->s.rflags & RFLAGS_VM) && ((cpu->s.rflags >> 12) & 3) < 3)
		soft_gp(cpu, 0);
	uint64_t f = soft_flags(cpu) & ~(RFLAGS_VM | RFLAGS_RF);
	soft_push(cpu, sz, f);
	return SOFT_NEXT;
}

H(h_popf)
{
	unsigned sz = cpu->code_size == 8 ? (in->osz == 2 ? 2 : 8) : in->osz;
	if ((cpu->s.rflags & RFLAGS_VM) && ((cpu->s.rflags >> 12) & 3) < 3)
		soft_gp(cpu, 0);
	uint64_t v = soft_pop(cpu, sz);
	uint64_t old = cpu->s.rflags;
	write_flags(cpu, v, sz, false);
	if ((~old & cpu->s.rflags) & (RFLAGS_IF | RFLAGS_TF))
		cpu->mode_dirty = true; /* a pending interrupt, or single-step from the next instruction */
	return SOFT_NEXT;
}

H(h_cli)
{
	(void)in;
	if ((cpu->s.cr0 & CR0_PE) && cpu->cpl > ((cpu->s.rflags >> 12) & 3))
		soft_gp(cpu, 0);
	cpu->s.rflags &= ~RFLAGS_IF;
	return SOFT_NEXT;
}

H(h_sti)
{
	(void)in;
	if ((cpu->s.cr0 & CR0_PE) && cpu->cpl > ((cpu->s.rflags >> 12) & 3))
		soft_gp(cpu, 0);
	if (!(cpu->s.rflags & RFLAGS_IF)) {
		cpu->s.rflags |= RFLAGS_IF;
		cpu->shadow = true;
		cpu->mode_dirty = true;
	}
	return SOFT_NEXT;
}

H(h_clac) { (void)in; need_cpl0(cpu); cpu->s.rflags &= ~RFLAGS_AC; soft_mode_changed(cpu); return SOFT_NEXT; }
H(h_stac) { (void)in; need_cpl0(cpu); cpu->s.rflags |= RFLAGS_AC; soft_mode_changed(cpu); return SOFT_NEXT; }

/* ---- interrupt and exception delivery ---- */

static uint64_t tss_read(struct soft_cpu *cpu, unsigned off, unsigned size)
{
	const struct segment *tr = &cpu->s.seg[SEG_TR];
	if (tr->unusable || off + size - 1 > tr->limit)
		soft_raise(cpu, 10, tr->selector & 0xfffc, true);
	return sys_read(cpu, tr->base + off, size);
}

static void deliver_real(struct soft_cpu *cpu, int vector, uint64_t orip)
{
	uint64_t a = cpu->s.idt.base + (uint64_t)vector * 4;
	if ((uint64_t)vector * 4 + 3 > cpu->s.idt.limit)
		soft_gp(cpu, 0);
	uint32_t ent = (uint32_t)sys_read(cpu, a, 4);
	soft_push(cpu, 2, soft_flags(cpu));
	soft_push(cpu, 2, cpu->s.seg[SEG_CS].selector);
	soft_push(cpu, 2, orip);
	cpu->s.rflags &= ~(RFLAGS_IF | RFLAGS_TF | RFLAGS_AC | RFLAGS_RF);
	real_far(cpu, (uint16_t)(ent >> 16), ent & 0xffff);
}

void soft_deliver(struct soft_cpu *cpu, int vector, uint32_t err, int flags)
{
	struct cpu_state *s = &cpu->s;
	soft_flags_commit(cpu);
	uint64_t orip = (flags & INT_TRAP) ? cpu->trap_rip : s->rip;
	if (!(s->cr0 & CR0_PE)) {
		deliver_real(cpu, vector, orip);
		return;
	}
	uint32_t ext = (flags & INT_EXT) ? 1 : 0;
	uint32_t idt_err = (uint32_t)vector * 8 + 2 + ext;
	unsigned gsz = cpu->long_mode ? 16 : 8;
	if ((uint64_t)vector * gsz + gsz - 1 > s->idt.limit)
		soft_gp(cpu, idt_err);
	uint64_t ga = s->idt.base + (uint64_t)vector * gsz;
	uint64_t lo = sys_read(cpu, ga, 8);
	uint64_t hi = cpu->long_mode ? sys_read(cpu, ga + 8, 8) : 0;
	unsigned type = (lo >> 40) & 0xf, dpl = (lo >> 45) & 3;
	bool present = (lo >> 47) & 1;
	bool trap = type & 1;
	bool g32 = type & 8;
	if (cpu->long_mode ? (type != 0xe && type != 0xf) : (type != 0xe && type != 0xf && type != 6 && type != 7))
		soft_gp(cpu, idt_err);
	if ((flags & INT_SOFT) && dpl < cpu->cpl)
		soft_gp(cpu, idt_err);
	if (!present)
		soft_raise(cpu, 11, idt_err, true);
	uint16_t sel = (uint16_t)(lo >> 16);
	uint64_t off = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ULL);
	if (cpu->long_mode)
		off |= hi << 32;
	unsigned ist = cpu->long_mode ? (lo >> 32) & 7 : 0;
	if (!(sel & 0xfffc))
		soft_gp(cpu, ext);
	uint64_t d = read_desc(cpu, sel, 13);
	unsigned cdpl = (d >> 45) & 3, ctype = (d >> 40) & 0xf;
	if (!((d >> 44) & 1) || !(ctype & 8) || cdpl > cpu->cpl)
		soft_gp(cpu, (sel & 0xfffc) + ext);
	if (!((d >> 47) & 1))
		soft_raise(cpu, 11, (sel & 0xfffc) + ext, true);
	if (cpu->long_mode && (!((d >> 53) & 1) || ((d >> 54) & 1)))
		soft_gp(cpu, (sel & 0xfffc) + ext);
	unsigned ncpl = (ctype & 4) ? cpu->cpl : cdpl;
	uint64_t oflags = soft_flags(cpu);
	if (flags & INT_FAULT)
		oflags |= RFLAGS_RF;
	uint16_t ocs = s->seg[SEG_CS].selector, oss = s->seg[SEG_SS].selector;
	uint64_t orsp = s->gpr[RSP];
	bool has_err = flags & INT_ERR;

	if (cpu->long_mode) {
		uint64_t rsp = orsp;
		if (ist)
			rsp = tss_read(cpu, 0x24 + (ist - 1) * 8, 8);
		else if (ncpl < cpu->cpl)
			rsp = tss_read(cpu, 4 + ncpl * 8, 8);
		rsp &= ~15ULL;
		uint64_t frame[6];
		int n = 0;
		if (has_err) frame[n++] = err;
		frame[n++] = orip;
		frame[n++] = ocs;
		frame[n++] = oflags;
		frame[n++] = orsp;
		frame[n++] = oss;
		/* switch privilege first so the pushes use the new view */
		uint8_t ocpl = cpu->cpl;
		cpu->cpl = (uint8_t)ncpl;
		soft_mode_changed(cpu);
		uint64_t top = rsp - (uint64_t)n * 8;
		for (int i = 0; i < n; i++) {
			uint64_t la = top + (uint64_t)i * 8;
			struct tlbe *e = tlb_entry(cpu, la);
			(void)e;
			lin_write(cpu, la, 8, frame[i]);
		}
		if (ncpl < ocpl) {
			s->seg[SEG_SS].selector = (uint16_t)ncpl;
			s->seg[SEG_SS].unusable = 1;
			s->seg[SEG_SS].dpl = (uint8_t)ncpl;
			s->seg[SEG_SS].base = 0;
		}
		s->gpr[RSP] = top;
		load_cs(cpu, sel, d, ncpl);
		s->rip = off;
	} else {
		unsigned psz = g32 ? 4 : 2;
		if (ncpl < cpu->cpl) {
			unsigned toff = 4 + ncpl * 8;
			uint64_t nsp = tss_read(cpu, toff, 4);
			uint16_t nss = (uint16_t)tss_read(cpu, toff + 4, 2);
			uint8_t ocpl = cpu->cpl;
			cpu->cpl = (uint8_t)ncpl;
			soft_load_seg(cpu, SEG_SS, nss);
			s->gpr[RSP] = nsp;
			soft_push(cpu, psz, oss);
			soft_push(cpu, psz, orsp);
			(void)ocpl;
		} else {
			cpu->cpl = (uint8_t)ncpl;
			soft_mode_changed(cpu);
		}
		soft_push(cpu, psz, oflags);
		soft_push(cpu, psz, ocs);
		soft_push(cpu, psz, orip);
		if (has_err)
			soft_push(cpu, psz, err);
		load_cs(cpu, sel, d, ncpl);
		s->rip = g32 ? (uint32_t)off : off & 0xffff;
		if (ncpl < 3)
			fix_data_segs(cpu);
	}
	s->rflags &= ~(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM);
	if (!trap)
		s->rflags &= ~RFLAGS_IF;
	soft_mode_changed(cpu);
}

/* INT n, INT3, INTO, INT1: traps. Standalone runs stop with RIP after the
 * instruction; in a VM they go through the IDT with the DPL check. */
static int soft_int(struct soft_cpu *cpu, const struct sinsn *in, int vector, bool soft)
{
	uint64_t orip = cpu->s.rip;
	uint64_t next = cpu->s.rip + in->len;
	if (cpu->code_size != 8)
		next &= size_mask(cpu->code_size);
	cpu->s.rip = next;
	if (!cpu->deliver) {
		cpu->exc_vector = (uint8_t)vector;
		cpu->exc_error = 0;
		cpu->exc_has_error = false;
		soft_exit(cpu, EXIT_EXCEPTION);
	}
	/* RIP stays at the instruction while the gate is checked, so a fault
	 * reports the INT itself; the frame gets the next RIP. */
	cpu->s.rip = orip;
	cpu->trap_rip = next;
	soft_deliver(cpu, vector, 0, (soft ? INT_SOFT : 0) | INT_TRAP);
	return SOFT_JUMP;
}

H(h_int) { return soft_int(cpu, in, (int)(in->imm & 0xff), true); }
H(h_int3) { return soft_int(cpu, in, 3, true); }
H(h_int1) { return soft_int(cpu, in, 1, false); }
H(h_into)
{
	if (!soft_cond(cpu, 0))
		return SOFT_NEXT;
	return soft_int(cpu, in, 4, true);
}

H(h_iret)
{
	struct cpu_state *s = &cpu->s;
	unsigned sz = in->osz;
	cpu->nmi_blocked = false;
	if (!(s->cr0 & CR0_PE)) {
		uint64_t ip = soft_stack_peek(cpu, 0, sz);
		uint16_t cs = (uint16_t)soft_stack_peek(cpu, sz, sz);
		uint64_t fl = soft_stack_peek(cpu, 2 * sz, sz);
		uint64_t m = size_mask(cpu->stack_size);
		s->gpr[RSP] = (s->gpr[RSP] & ~m) | ((s->gpr[RSP] + 3 * sz) & m);
		if (sz == 4)
			fl = (fl & ~(RFLAGS_VM | RFLAGS_VIP | RFLAGS_VIF)) | (s->rflags & (RFLAGS_VM | RFLAGS_VIP | RFLAGS_VIF));
		write_flags(cpu, fl, sz, true);
		real_far(cpu, cs, ip);
		cpu->mode_dirty = true;
		return SOFT_JUMP;
	}
	if (s->rflags & (RFLAGS_NT | RFLAGS_VM))
		soft_gp(cpu, 0); /* task return and virtual-8086 mode: not supported */
	uint64_t ip = soft_stack_peek(cpu, 0, sz);
	uint16_t sel = (uint16_t)soft_stack_peek(cpu, sz, sz);
	uint64_t fl = soft_stack_peek(cpu, 2 * sz, sz);
	unsigned rpl = sel & 3;
	if (!(sel & 0xfffc) || rpl < cpu->cpl)
		soft_gp(cpu, sel & 0xfffc);
	uint64_t d = read_desc(cpu, sel, 13);
	unsigned type = (d >> 40) & 0xf, dpl = (d >> 45) & 3;
	if (!((d >> 44) & 1) || !(type & 8) || ((type & 4) ? dpl > rpl : dpl != rpl))
		soft_gp(cpu, sel & 0xfffc);
	if (!((d >> 47) & 1))
		soft_raise(cpu, 11, sel & 0xfffc, true);
	if (!cpu->mode64 && (fl & RFLAGS_VM) && cpu->cpl == 0)
		soft_gp(cpu, 0);
	bool pop_ss = cpu->mode64 || rpl != cpu->cpl;
	uint64_t nsp = 0;
	uint16_t nss = 0;
	if (pop_ss) {
		nsp = soft_stack_peek(cpu, 3 * sz, sz);
		nss = (uint16_t)soft_stack_peek(cpu, 4 * sz, sz);
	}
	/* Validate the new SS before anything changes: IRET faults leave the
	 * state as it was. */
	uint64_t ssd = 0;
	bool null_ss = !(nss & 0xfffc);
	if (pop_ss) {
		if (null_ss) {
			if (!cpu->long_mode || !((d >> 53) & 1) || rpl == 3)
				soft_gp(cpu, 0);
		} else {
			ssd = read_desc(cpu, nss, 13);
			unsigned st = (ssd >> 40) & 0xf, sdpl = (ssd >> 45) & 3;
			if ((nss & 3) != rpl || !((ssd >> 44) & 1) || (st & 8) || !(st & 2) || sdpl != rpl)
				soft_gp(cpu, nss & 0xfffc);
			if (!((ssd >> 47) & 1))
				soft_raise(cpu, 12, nss & 0xfffc, true);
		}
	}
	uint8_t ocpl = cpu->cpl;
	write_flags(cpu, fl, sz, true);
	if (!pop_ss) {
		uint64_t m = size_mask(cpu->stack_size);
		s->gpr[RSP] = (s->gpr[RSP] & ~m) | ((s->gpr[RSP] + 3 * sz) & m);
		load_cs(cpu, sel, d, rpl);
	} else {
		load_cs(cpu, sel, d, rpl);
		struct segment *ss = &s->seg[SEG_SS];
		if (null_ss) {
			ss->selector = nss;
			ss->unusable = 1;
			ss->present = 0;
			ss->dpl = (uint8_t)rpl;
		} else {
			set_accessed(cpu, nss, ssd);
			desc_to_seg(ssd, nss, ss);
			ss->type |= 1;
		}
		soft_mode_changed(cpu);
		s->gpr[RSP] = sz == 8 ? nsp : (cpu->stack_size == 2 ? (s->gpr[RSP] & ~0xffffULL) | (nsp & 0xffff) : (uint32_t)nsp);
		if (rpl > ocpl)
			fix_data_segs(cpu);
	}
	s->rip = cpu->mode64 ? ip : (sz == 2 ? ip & 0xffff : (uint32_t)ip);
	cpu->mode_dirty = true;
	return SOFT_JUMP;
}

/* ---- descriptor tables and system registers ---- */

static bool canon(uint64_t v)
{
	return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

H(h_lgdt_lidt)
{
	need_cpl0(cpu);
	unsigned bsz = cpu->mode64 ? 8 : 4;
	uint64_t la = ea_lin(cpu, in, 2 + bsz, false);
	uint16_t limit = (uint16_t)lin_read(cpu, la, 2);
	uint64_t base = lin_read(cpu, la + 2, bsz);
	if (!cpu->mode64 && in->osz == 2)
		base &= 0xffffff;
	if (cpu->mode64 && !canon(base))
		soft_gp(cpu, 0);
	struct dtable *t = in->mnemonic == ZYDIS_MNEMONIC_LGDT ? &cpu->s.gdt : &cpu->s.idt;
	t->base = base;
	t->limit = limit;
	return SOFT_NEXT;
}

H(h_sgdt_sidt)
{
	if ((cpu->s.cr4 & CR4_UMIP) && cpu->cpl)
		soft_gp(cpu, 0);
	unsigned bsz = cpu->mode64 ? 8 : 4;
	const struct dtable *t = in->mnemonic == ZYDIS_MNEMONIC_SGDT ? &cpu->s.gdt : &cpu->s.idt;
	uint64_t la = ea_lin(cpu, in, 2 + bsz, true);
	uint8_t buf[10];
	memcpy(buf, &t->limit, 2);
	memcpy(buf + 2, &t->base, 8);
	soft_lin_write(cpu, la, buf, 2 + bsz, ACC_WRITE);
	return SOFT_NEXT;
}

static void load_system_seg(struct soft_cpu *cpu, int seg, uint16_t sel)
{
	struct segment *sg = &cpu->s.seg[seg];
	if (!(sel & 0xfffc)) {
		if (seg == SEG_TR)
			soft_gp(cpu, 0);
		sg->selector = sel;
		sg->unusable = 1;
		sg->present = 0;
		return;
	}
	if (sel & 4)
		soft_gp(cpu, sel & 0xfffc);
	uint64_t a = desc_addr(cpu, sel, cpu->long_mode ? 16 : 8, 13);
	uint64_t d = sys_read(cpu, a, 8);
	struct segment n;
	desc_to_seg(d, sel, &n);
	unsigned want = seg == SEG_LDTR ? 2 : 9;
	if (n.s || (seg == SEG_TR ? (n.type != 9 && n.type != 1) : n.type != want))
		soft_gp(cpu, sel & 0xfffc);
	if (!n.present)
		soft_raise(cpu, 11, sel & 0xfffc, true);
	if (cpu->long_mode) {
		n.base |= sys_read(cpu, a + 8, 4) << 32;
		if (!canon(n.base))
			soft_gp(cpu, sel & 0xfffc);
	}
	if (seg == SEG_TR) {
		/* mark busy */
		sys_write(cpu, a + 5, 1, ((d >> 40) & 0xff) | 2);
		n.type |= 2;
	}
	*sg = n;
}

H(h_lldt)
{
	need_cpl0(cpu);
	if (!(cpu->s.cr0 & CR0_PE))
		soft_ud(cpu);
	load_system_seg(cpu, SEG_LDTR, (uint16_t)rd_op(cpu, in, 0, 2));
	return SOFT_NEXT;
}

H(h_ltr)
{
	need_cpl0(cpu);
	if (!(cpu->s.cr0 & CR0_PE))
		soft_ud(cpu);
	load_system_seg(cpu, SEG_TR, (uint16_t)rd_op(cpu, in, 0, 2));
	return SOFT_NEXT;
}

static int store_sel(struct soft_cpu *cpu, const struct sinsn *in, uint16_t v)
{
	if (!(cpu->s.cr0 & CR0_PE))
		soft_ud(cpu);
	if ((cpu->s.cr4 & CR4_UMIP) && cpu->cpl)
		soft_gp(cpu, 0);
	if (in->op[0].kind == OP_REG)
		wr_gpr(cpu, in->op[0].reg, in->op[0].size, v);
	else
		wr_op(cpu, in, 0, 2, v);
	return SOFT_NEXT;
}
H(h_sldt) { return store_sel(cpu, in, cpu->s.seg[SEG_LDTR].selector); }
H(h_str) { return store_sel(cpu, in, cpu->s.seg[SEG_TR].selector); }

H(h_smsw)
{
	if ((cpu->s.cr4 & CR4_UMIP) && cpu->cpl)
		soft_gp(cpu, 0);
	if (in->op[0].kind == OP_REG)
		wr_gpr(cpu, in->op[0].reg, in->op[0].size, cpu->s.cr0);
	else
		wr_op(cpu, in, 0, 2, cpu->s.cr0 & 0xffff);
	return SOFT_NEXT;
}

H(h_lmsw)
{
	need_cpl0(cpu);
	uint64_t v = rd_op(cpu, in, 0, 2) & 0xf;
	/* LMSW cannot clear PE */
	uint64_t cr0 = (cpu->s.cr0 & ~0xeULL) | v | (cpu->s.cr0 & CR0_PE);
	soft_write_cr(cpu, 0, cr0);
	return SOFT_NEXT;
}

H(h_clts) { (void)in; need_cpl0(cpu); cpu->s.cr0 &= ~CR0_TS; return SOFT_NEXT; }

/* LAR/LSL/VERR/VERW: descriptor probes with ZF for success. */
static bool probe_desc(struct soft_cpu *cpu, uint16_t sel, uint64_t *d, bool lsl)
{
	if (!(sel & 0xfffc))
		return false;
	uint64_t base = (sel & 4) ? cpu->s.seg[SEG_LDTR].base : cpu->s.gdt.base;
	uint64_t limit = (sel & 4) ? cpu->s.seg[SEG_LDTR].limit : cpu->s.gdt.limit;
	if ((sel & 4) && cpu->s.seg[SEG_LDTR].unusable)
		return false;
	if ((uint64_t)(sel & ~7u) + 7 > limit)
		return false;
	*d = sys_read(cpu, base + (sel & ~7u), 8);
	unsigned type = (*d >> 40) & 0xf, dpl = (*d >> 45) & 3, s = (*d >> 44) & 1;
	if (!s) {
		static const uint16_t ok_lar = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 9) | (1 << 11) | (1 << 12) | (1 << 4) | (1 << 5) | (1 << 0xc);
		static const uint16_t ok_lsl = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 9) | (1 << 11);
		uint16_t ok = lsl ? ok_lsl : ok_lar;
		if (cpu->long_mode)
			ok &= (1 << 2) | (1 << 9) | (1 << 11) | (lsl ? 0 : (1 << 0xc));
		if (!(ok & (1u << type)))
			return false;
	}
	bool conforming = s && (type & 0xc) == 0xc;
	if (!conforming && (dpl < cpu->cpl || dpl < (sel & 3u)))
		return false;
	return true;
}

H(h_lar_lsl)
{
	if (!(cpu->s.cr0 & CR0_PE))
		soft_ud(cpu);
	uint16_t sel = (uint16_t)rd_op(cpu, in, 1, 2);
	uint64_t d;
	bool lsl = in->mnemonic == ZYDIS_MNEMONIC_LSL;
	bool ok = probe_desc(cpu, sel, &d, lsl);
	soft_flags_commit(cpu);
	if (!ok) {
		cpu->s.rflags &= ~RFLAGS_ZF;
		return SOFT_NEXT;
	}
	cpu->s.rflags |= RFLAGS_ZF;
	uint64_t v;
	if (lsl) {
		struct segment sg;
		desc_to_seg(d, sel, &sg);
		v = sg.limit;
	} else {
		v = (d >> 32) & 0x00f0ff00;
	}
	wr_gpr(cpu, in->op[0].reg, in->op[0].size, v);
	return SOFT_NEXT;
}

H(h_verr_verw)
{
	if (!(cpu->s.cr0 & CR0_PE))
		soft_ud(cpu);
	uint16_t sel = (uint16_t)rd_op(cpu, in, 0, 2);
	uint64_t d;
	bool ok = probe_desc(cpu, sel, &d, false) && ((d >> 44) & 1);
	if (ok) {
		unsigned type = (d >> 40) & 0xf;
		if (in->mnemonic == ZYDIS_MNEMONIC_VERW)
			ok = !(type & 8) && (type & 2);
		else
			ok = !(type & 8) || (type & 2);
	}
	soft_flags_commit(cpu);
	cpu->s.rflags = ok ? cpu->s.rflags | RFLAGS_ZF : cpu->s.rflags & ~RFLAGS_ZF;
	return SOFT_NEXT;
}

/* LDS/LES/LFS/LGS/LSS */
H(h_lxs)
{
	unsigned sz = in->osz;
	uint64_t la = ea_lin(cpu, in, sz + 2, false);
	uint64_t off = lin_read(cpu, la, sz);
	uint16_t sel = (uint16_t)lin_read(cpu, la + sz, 2);
	int seg;
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_LDS: seg = SEG_DS; break;
	case ZYDIS_MNEMONIC_LES: seg = SEG_ES; break;
	case ZYDIS_MNEMONIC_LFS: seg = SEG_FS; break;
	case ZYDIS_MNEMONIC_LGS: seg = SEG_GS; break;
	default: seg = SEG_SS; break;
	}
	soft_load_seg(cpu, seg, sel);
	wr_gpr(cpu, in->op[0].reg, sz, off);
	return SOFT_NEXT;
}

/* ---- control and debug registers ---- */

void soft_write_cr(struct soft_cpu *cpu, int n, uint64_t v)
{
	struct cpu_state *s = &cpu->s;
	switch (n) {
	case 0: {
		if (v >> 32)
			soft_gp(cpu, 0);
		if ((v & CR0_PG) && !(v & CR0_PE))
			soft_gp(cpu, 0);
		if ((v & CR0_NW) && !(v & CR0_CD))
			soft_gp(cpu, 0);
		uint64_t old = s->cr0;
		if ((v & CR0_PG) && !(old & CR0_PG) && (s->efer & EFER_LME)) {
			if (!(s->cr4 & CR4_PAE))
				soft_gp(cpu, 0);
			s->efer |= EFER_LMA;
		}
		if (!(v & CR0_PG) && (old & CR0_PG) && (s->efer & EFER_LMA)) {
			if (cpu->mode64)
				soft_gp(cpu, 0);
			s->efer &= ~EFER_LMA;
		}
		s->cr0 = v | CR0_ET;
		if ((old ^ s->cr0) & (CR0_PG | CR0_PE | CR0_WP))
			soft_tlb_flush(cpu, true);
		soft_mode_changed(cpu);
		break;
	}
	case 2: s->cr2 = v; break;
	case 3:
		/* bits above MAXPHYADDR are reserved (no PCID: bit 63 too) */
		if (cpu->long_mode && (v >> 40))
			soft_gp(cpu, 0);
		s->cr3 = cpu->long_mode ? v : (uint32_t)v;
		soft_tlb_flush(cpu, false);
		break;
	case 4: {
		uint64_t ok = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE |
			      CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_UMIP |
			      CR4_SMEP | CR4_SMAP;
		if (v & ~ok)
			soft_gp(cpu, 0);
		if ((s->efer & EFER_LMA) && !(v & CR4_PAE))
			soft_gp(cpu, 0);
		uint64_t old = s->cr4;
		s->cr4 = v;
		if ((old ^ v) & (CR4_PSE | CR4_PAE | CR4_PGE | CR4_SMEP | CR4_SMAP))
			soft_tlb_flush(cpu, true);
		soft_mode_changed(cpu);
		break;
	}
	case 8:
		if (v & ~0xfULL)
			soft_gp(cpu, 0);
		s->cr8 = v;
		if (cpu->lapic)
			soft_platform_set_cr8(cpu, (uint8_t)v);
		break;
	default:
		soft_ud(cpu);
	}
}

int soft_mov_crdr(struct soft_cpu *cpu, const struct sinsn *in)
{
	need_cpl0(cpu);
	unsigned sz = cpu->mode64 ? 8 : 4;
	const struct sop *d = &in->op[0], *s = &in->op[1];
	if (d->kind == OP_CR) {
		soft_write_cr(cpu, d->reg, rd_gpr(cpu, s->reg, sz));
		cpu->mode_dirty = true;
	} else if (s->kind == OP_CR) {
		uint64_t v;
		switch (s->reg) {
		case 0: v = cpu->s.cr0; break;
		case 2: v = cpu->s.cr2; break;
		case 3: v = cpu->s.cr3; break;
		case 4: v = cpu->s.cr4; break;
		case 8: v = cpu->lapic ? soft_platform_get_cr8(cpu) : cpu->s.cr8; break;
		default: soft_ud(cpu);
		}
		wr_gpr(cpu, d->reg, sz, v);
	} else if (d->kind == OP_DR) {
		unsigned r = d->reg;
		if (r == 4 || r == 5) {
			if (cpu->s.cr4 & CR4_DE)
				soft_ud(cpu);
			r += 2;
		}
		if (r > 7)
			soft_ud(cpu);
		uint64_t v = rd_gpr(cpu, s->reg, sz);
		if (r >= 6 && (v >> 32))
			soft_gp(cpu, 0);
		if (r == 6) v = (v & 0xe00f) | 0xffff0ff0ULL;
		if (r == 7) v = (v & ~0xd800ULL) | 0x400;
		cpu->s.dr[r] = v;
		if (r == 7) {
			soft_debug_changed(cpu);
			cpu->mode_dirty = true;
		}
	} else {
		unsigned r = s->reg;
		if (r == 4 || r == 5) {
			if (cpu->s.cr4 & CR4_DE)
				soft_ud(cpu);
			r += 2;
		}
		if (r > 7)
			soft_ud(cpu);
		wr_gpr(cpu, d->reg, sz, cpu->s.dr[r]);
	}
	return SOFT_NEXT;
}

H(h_invlpg)
{
	need_cpl0(cpu);
	soft_tlb_flush_page(cpu, ea_lin(cpu, in, 1, false));
	return SOFT_NEXT;
}

H(h_wbinvd) { (void)in; need_cpl0(cpu); return SOFT_NEXT; }

H(h_hlt)
{
	need_cpl0(cpu);
	cpu->s.rip += in->len;
	if (cpu->code_size != 8)
		cpu->s.rip &= size_mask(cpu->code_size);
	cpu->s.halted = true;
	cpu->exit_code = EXIT_HLT;
	return SOFT_JUMP;
}

H(h_ud) { (void)in; soft_ud(cpu); }

/* ---- MSRs ---- */

#define MSR_TSC            0x10
#define MSR_TSC_ADJUST     0x3b
#define MSR_APIC_BASE      0x1b
#define MSR_UCODE_REV      0x8b
#define MSR_SYSENTER_CS    0x174
#define MSR_SYSENTER_ESP   0x175
#define MSR_SYSENTER_EIP   0x176
#define MSR_MCG_CAP        0x179
#define MSR_MCG_STATUS     0x17a
#define MSR_MISC_ENABLE    0x1a0
#define MSR_PAT            0x277
#define MSR_TSC_DEADLINE   0x6e0
#define MSR_EFER           0xc0000080
#define MSR_STAR           0xc0000081
#define MSR_LSTAR          0xc0000082
#define MSR_CSTAR          0xc0000083
#define MSR_SFMASK         0xc0000084
#define MSR_FS_BASE        0xc0000100
#define MSR_GS_BASE        0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX        0xc0000103

static bool msr_read(struct soft_cpu *cpu, uint32_t idx, uint64_t *v)
{
	struct cpu_msrs *m = &cpu->s.msr;
	int lr = soft_platform_rdmsr(cpu, idx, v);
	if (lr)
		return lr > 0;
	switch (idx) {
	case MSR_TSC: *v = soft_read_tsc(cpu); break;
	case MSR_TSC_ADJUST: *v = cpu->tsc_adjust; break;
	case MSR_APIC_BASE: *v = m->apic_base; break;
	case MSR_UCODE_REV: *v = 0; break;
	/* CPUID says MCE and MCA: machine-check architecture with no banks
	 * and no MCG_CTL (nothing ever reports a machine check) */
	case MSR_MCG_CAP: *v = 0; break;
	case MSR_MCG_STATUS: *v = 0; break;
	case MSR_SYSENTER_CS: *v = m->sysenter_cs; break;
	case MSR_SYSENTER_ESP: *v = m->sysenter_esp; break;
	case MSR_SYSENTER_EIP: *v = m->sysenter_eip; break;
	case MSR_MISC_ENABLE: *v = m->misc_enable | 1; break; /* fast strings */
	case MSR_PAT: *v = m->pat; break;
	case MSR_TSC_DEADLINE: *v = m->tsc_deadline; break;
	case MSR_EFER: *v = cpu->s.efer; break;
	case MSR_STAR: *v = m->star; break;
	case MSR_LSTAR: *v = m->lstar; break;
	case MSR_CSTAR: *v = m->cstar; break;
	case MSR_SFMASK: *v = m->sfmask; break;
	case MSR_FS_BASE: *v = cpu->s.seg[SEG_FS].base; break;
	case MSR_GS_BASE: *v = cpu->s.seg[SEG_GS].base; break;
	case MSR_KERNEL_GS_BASE: *v = m->kernel_gs_base; break;
	case MSR_TSC_AUX: *v = m->tsc_aux; break;
	default: return false;
	}
	return true;
}

static bool msr_write(struct soft_cpu *cpu, uint32_t idx, uint64_t v)
{
	struct cpu_msrs *m = &cpu->s.msr;
	int lr = soft_platform_wrmsr(cpu, idx, v);
	if (lr)
		return lr > 0;
	switch (idx) {
	case MSR_TSC: {
		/* a TSC write moves IA32_TSC_ADJUST by the same amount (SDM 17.17.3) */
		uint64_t old = soft_read_tsc(cpu);
		cpu->tsc_offset = v - soft_host_tsc();
		cpu->tsc_adjust += soft_read_tsc(cpu) - old;
		break;
	}
	case MSR_TSC_ADJUST:
		cpu->tsc_offset += v - cpu->tsc_adjust;
		cpu->tsc_adjust = v;
		break;
	case MSR_APIC_BASE: m->apic_base = v; break;
	case MSR_UCODE_REV: break;
	/* no machine check is ever in progress: only clearing is meaningful */
	case MSR_MCG_STATUS: if (v) return false; break;
	case MSR_SYSENTER_CS: m->sysenter_cs = v & 0xffff; break;
	case MSR_SYSENTER_ESP: if (!canon(v)) return false; m->sysenter_esp = v; break;
	case MSR_SYSENTER_EIP: if (!canon(v)) return false; m->sysenter_eip = v; break;
	case MSR_MISC_ENABLE: m->misc_enable = v; break;
	case MSR_PAT:
		for (int i = 0; i < 8; i++) {
			unsigned t = (v >> (i * 8)) & 0xff;
			if (t == 2 || t == 3 || t > 7)
				return false;
		}
		m->pat = v;
		break;
	case MSR_TSC_DEADLINE: m->tsc_deadline = v; break;
	case MSR_EFER: {
		uint64_t ok = EFER_SCE | EFER_LME | EFER_NXE | EFER_LMA;
		if (v & ~ok)
			return false;
		/* LME cannot change while paging is on; LMA is read-only */
		if ((cpu->s.cr0 & CR0_PG) && ((v ^ cpu->s.efer) & EFER_LME))
			return false;
		v = (v & ~EFER_LMA) | (cpu->s.efer & EFER_LMA);
		if ((v ^ cpu->s.efer) & EFER_NXE)
			soft_tlb_flush(cpu, true);
		cpu->s.efer = v;
		soft_mode_changed(cpu);
		break;
	}
	case MSR_STAR: m->star = v; break;
	case MSR_LSTAR: if (!canon(v)) return false; m->lstar = v; break;
	case MSR_CSTAR: if (!canon(v)) return false; m->cstar = v; break;
	case MSR_SFMASK: m->sfmask = v & 0xffffffffULL; break;
	case MSR_FS_BASE: if (!canon(v)) return false; cpu->s.seg[SEG_FS].base = v; break;
	case MSR_GS_BASE: if (!canon(v)) return false; cpu->s.seg[SEG_GS].base = v; break;
	case MSR_KERNEL_GS_BASE: if (!canon(v)) return false; m->kernel_gs_base = v; break;
	case MSR_TSC_AUX: m->tsc_aux = v & 0xffffffffULL; break;
	default: return false;
	}
	return true;
}

H(h_rdmsr)
{
	(void)in;
	need_cpl0(cpu);
	uint64_t v;
	if (!msr_read(cpu, (uint32_t)cpu->s.gpr[RCX], &v))
		soft_gp(cpu, 0);
	cpu->s.gpr[RAX] = (uint32_t)v;
	cpu->s.gpr[RDX] = v >> 32;
	return SOFT_NEXT;
}

H(h_wrmsr)
{
	(void)in;
	need_cpl0(cpu);
	uint64_t v = (uint32_t)cpu->s.gpr[RAX] | (cpu->s.gpr[RDX] << 32);
	if (!msr_write(cpu, (uint32_t)cpu->s.gpr[RCX], v))
		soft_gp(cpu, 0);
	cpu->mode_dirty = true;
	return SOFT_NEXT;
}

H(h_rdtsc)
{
	(void)in;
	if ((cpu->s.cr4 & CR4_TSD) && cpu->cpl)
		soft_gp(cpu, 0);
	uint64_t t = soft_read_tsc(cpu);
	cpu->s.gpr[RAX] = (uint32_t)t;
	cpu->s.gpr[RDX] = t >> 32;
	if (in->mnemonic == ZYDIS_MNEMONIC_RDTSCP)
		cpu->s.gpr[RCX] = (uint32_t)cpu->s.msr.tsc_aux;
	return SOFT_NEXT;
}

H(h_rdpid)
{
	wr_gpr(cpu, in->op[0].reg, cpu->mode64 ? 8 : 4, cpu->s.msr.tsc_aux);
	return SOFT_NEXT;
}

/* ---- CPUID ---- */

/* Feature bits the soft engine implements (leaf 1 EDX/ECX, leaf 7 EBX,
 * leaf 0x80000001 EDX/ECX). The 64-bit kernel requires FPU, PSE, TSC, MSR,
 * PAE, CX8, PGE, CMOV, FXSR, SSE, SSE2 and LM to boot; the x87/SSE library
 * completes those units. */
#define F1_EDX SOFT_CPUID_1_EDX
#define F1_ECX SOFT_CPUID_1_ECX
#define F7_EBX SOFT_CPUID_7_EBX
#define F7_ECX SOFT_CPUID_7_ECX
#define FX_EDX SOFT_CPUID_X1_EDX
#define FX_ECX SOFT_CPUID_X1_ECX
_Static_assert(SOFT_CPUID_1_EDX == ((1u << 0) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) |
				    (1u << 11) | (1u << 13) | (1u << 15) | (1u << 16) | (1u << 19) |
				    (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26)), "leaf 1 EDX");
_Static_assert(SOFT_CPUID_1_ECX == ((1u << 13) | (1u << 22) | (1u << 23) | (1u << 31)), "leaf 1 ECX");
_Static_assert(SOFT_CPUID_X1_EDX == ((1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29)), "ext EDX");

void soft_cpu_features(struct cpu_features *f)
{
	memset(f, 0, sizeof(*f));
	f->word[CPUID_1_EDX] = F1_EDX;
	f->word[CPUID_1_ECX] = F1_ECX & ~CPUID_1_ECX_HYPERVISOR;
	f->word[CPUID_7_0_EBX] = F7_EBX;
	f->word[CPUID_7_0_ECX] = F7_ECX;
	f->word[CPUID_8000_0001_EDX] = FX_EDX;
	f->word[CPUID_8000_0001_ECX] = FX_ECX;
	f->word[CPUID_8000_0007_EDX] = 1u << 8; /* invariant TSC: the host's */
	/* no XSAVE: xcr0_mask and the layout stay empty */
}

void soft_cpuid(struct soft_cpu *cpu, uint32_t leaf, uint32_t sub, uint32_t o[4])
{
	const struct cpu_model *m = &cpu->svm->model;
	struct cpuid_regs r;
	cpuid_leaf(m, leaf, sub, cpu->id, cpu->svm->nr_cpus, &r);
	uint64_t apic_base = cpu->s.msr.apic_base;
	if (cpu->lapic)
		soft_platform_rdmsr(cpu, 0x1b, &apic_base);
	cpuid_apply_dynamic(leaf, sub, cpu->s.cr4, cpu->s.xcr0, (apic_base & (1ULL << 11)) != 0, m, &r);
	o[0] = r.eax;
	o[1] = r.ebx;
	o[2] = r.ecx;
	o[3] = r.edx;
}

H(h_cpuid)
{
	(void)in;
	uint32_t o[4];
	soft_cpuid(cpu, (uint32_t)cpu->s.gpr[RAX], (uint32_t)cpu->s.gpr[RCX], o);
	cpu->s.gpr[RAX] = o[0];
	cpu->s.gpr[RBX] = o[1];
	cpu->s.gpr[RCX] = o[2];
	cpu->s.gpr[RDX] = o[3];
	return SOFT_NEXT;
}

/* ---- fast system calls ---- */

static void flat_seg(struct segment *sg, uint16_t sel, uint8_t type, uint8_t dpl, bool l, bool db)
{
	sg->selector = sel;
	sg->base = 0;
	sg->limit = 0xffffffff;
	sg->type = type;
	sg->s = 1;
	sg->dpl = dpl;
	sg->present = 1;
	sg->l = l;
	sg->db = db;
	sg->g = 1;
	sg->avl = 0;
	sg->unusable = 0;
}

H(h_syscall)
{
	struct cpu_state *s = &cpu->s;
	if (!(s->efer & EFER_SCE) || !cpu->long_mode)
		soft_ud(cpu);
	uint64_t next = s->rip + in->len;
	uint16_t sel = (uint16_t)((s->msr.star >> 32) & 0xfffc);
	s->gpr[RCX] = next;
	s->gpr[R11] = soft_flags(cpu) & ~RFLAGS_RF;
	soft_flags_commit(cpu);
	flat_seg(&s->seg[SEG_CS], sel, 0xb, 0, true, false);
	flat_seg(&s->seg[SEG_SS], (uint16_t)(sel + 8), 0x3, 0, false, true);
	s->rip = cpu->mode64 ? s->msr.lstar : s->msr.cstar;
	s->rflags &= ~(s->msr.sfmask | RFLAGS_RF);
	s->rflags |= RFLAGS_FIXED;
	cpu->cpl = 0;
	soft_mode_changed(cpu);
	return SOFT_JUMP;
}

H(h_sysret)
{
	struct cpu_state *s = &cpu->s;
	if (!(s->efer & EFER_SCE) || !cpu->long_mode)
		soft_ud(cpu);
	need_cpl0(cpu);
	uint16_t base = (uint16_t)(s->msr.star >> 48);
	bool to64 = in->osz == 8;
	if (to64 && !canon(s->gpr[RCX]))
		soft_gp(cpu, 0);
	if (to64)
		flat_seg(&s->seg[SEG_CS], (uint16_t)((base + 16) | 3), 0xb, 3, true, false);
	else
		flat_seg(&s->seg[SEG_CS], (uint16_t)(base | 3), 0xb, 3, false, true);
	/* SS keeps its flat cached attributes, selector from STAR */
	flat_seg(&s->seg[SEG_SS], (uint16_t)((base + 8) | 3), 0x3, 3, false, true);
	s->rip = to64 ? s->gpr[RCX] : (uint32_t)s->gpr[RCX];
	cpu->lf_op = LF_NONE;
	s->rflags = (s->gpr[R11] & 0x3c7fd7ULL) | RFLAGS_FIXED;
	cpu->cpl = 3;
	soft_mode_changed(cpu);
	return SOFT_JUMP;
}

H(h_sysenter)
{
	(void)in;
	struct cpu_state *s = &cpu->s;
	if (!(s->cr0 & CR0_PE))
		soft_gp(cpu, 0);
	uint16_t cs = (uint16_t)(s->msr.sysenter_cs & 0xfffc);
	if (!cs)
		soft_gp(cpu, 0);
	soft_flags_commit(cpu);
	s->rflags &= ~(RFLAGS_VM | RFLAGS_IF | RFLAGS_RF);
	flat_seg(&s->seg[SEG_CS], cs, 0xb, 0, cpu->long_mode, !cpu->long_mode);
	flat_seg(&s->seg[SEG_SS], (uint16_t)(cs + 8), 0x3, 0, false, true);
	s->rip = cpu->long_mode ? s->msr.sysenter_eip : (uint32_t)s->msr.sysenter_eip;
	s->gpr[RSP] = cpu->long_mode ? s->msr.sysenter_esp : (uint32_t)s->msr.sysenter_esp;
	cpu->cpl = 0;
	soft_mode_changed(cpu);
	return SOFT_JUMP;
}

H(h_sysexit)
{
	struct cpu_state *s = &cpu->s;
	uint16_t cs = (uint16_t)(s->msr.sysenter_cs & 0xfffc);
	if (!(s->cr0 & CR0_PE) || !cs)
		soft_gp(cpu, 0);
	need_cpl0(cpu);
	bool to64 = in->osz == 8;
	if (to64) {
		flat_seg(&s->seg[SEG_CS], (uint16_t)((cs + 32) | 3), 0xb, 3, true, false);
		flat_seg(&s->seg[SEG_SS], (uint16_t)((cs + 40) | 3), 0x3, 3, false, true);
		s->rip = s->gpr[RDX];
		s->gpr[RSP] = s->gpr[RCX];
	} else {
		flat_seg(&s->seg[SEG_CS], (uint16_t)((cs + 16) | 3), 0xb, 3, false, true);
		flat_seg(&s->seg[SEG_SS], (uint16_t)((cs + 24) | 3), 0x3, 3, false, true);
		s->rip = (uint32_t)s->gpr[RDX];
		s->gpr[RSP] = (uint32_t)s->gpr[RCX];
	}
	cpu->cpl = 3;
	soft_mode_changed(cpu);
	return SOFT_JUMP;
}

H(h_swapgs)
{
	(void)in;
	if (!cpu->mode64)
		soft_ud(cpu);
	need_cpl0(cpu);
	uint64_t t = cpu->s.seg[SEG_GS].base;
	cpu->s.seg[SEG_GS].base = cpu->s.msr.kernel_gs_base;
	cpu->s.msr.kernel_gs_base = t;
	return SOFT_NEXT;
}

/* ---- port I/O ---- */

static void io_check(struct soft_cpu *cpu, uint16_t port, unsigned size)
{
	if (!(cpu->s.cr0 & CR0_PE))
		return;
	if (!(cpu->s.rflags & RFLAGS_VM) && cpu->cpl <= ((cpu->s.rflags >> 12) & 3))
		return;
	const struct segment *tr = &cpu->s.seg[SEG_TR];
	if (tr->unusable || tr->limit < 0x67)
		soft_gp(cpu, 0);
	uint16_t iomap = (uint16_t)sys_read(cpu, tr->base + 0x66, 2);
	uint32_t off = iomap + port / 8u;
	if (off + 1 > tr->limit)
		soft_gp(cpu, 0);
	uint16_t bits = (uint16_t)sys_read(cpu, tr->base + off, 2);
	if ((bits >> (port & 7)) & ((1u << size) - 1))
		soft_gp(cpu, 0);
}

uint64_t soft_io_in(struct soft_cpu *cpu, uint16_t port, unsigned size)
{
	struct vm *vm = cpu->svm->vm;
	if (!vm)
		soft_exit(cpu, EXIT_IO);
	uint64_t v = ~0ULL;
	bus_read(&vm->pio, port, size, &v);
	return v;
}

void soft_io_out(struct soft_cpu *cpu, uint16_t port, unsigned size, uint64_t v)
{
	struct vm *vm = cpu->svm->vm;
	if (!vm)
		soft_exit(cpu, EXIT_IO);
	bus_write(&vm->pio, port, size, v & size_mask(size));
	if (vm_should_stop(vm))
		cpu->exit_code = EXIT_KICK;
}

bool soft_mmio_read(struct soft_cpu *cpu, uint64_t pa, unsigned size, uint64_t *v)
{
	struct vm *vm = cpu->svm->vm;
	if (cpu->lapic && soft_platform_mmio(cpu, pa, size, v, false))
		return true;
	if (!vm)
		return false;
	*v = ~0ULL;
	bus_read(&vm->mmio, pa, size, v);
	*v &= size_mask(size);
	return true;
}

bool soft_mmio_write(struct soft_cpu *cpu, uint64_t pa, unsigned size, uint64_t v)
{
	struct vm *vm = cpu->svm->vm;
	if (cpu->lapic && soft_platform_mmio(cpu, pa, size, &v, true))
		return true;
	if (!vm)
		return false;
	bus_write(&vm->mmio, pa, size, v);
	if (vm_should_stop(vm))
		cpu->exit_code = EXIT_KICK;
	return true;
}

static uint16_t io_port(struct soft_cpu *cpu, const struct sinsn *in, int i)
{
	return in->op[i].kind == OP_IMM ? (uint16_t)(in->imm & 0xff) : (uint16_t)cpu->s.gpr[RDX];
}

H(h_in)
{
	unsigned sz = in->op[0].size;
	uint16_t port = io_port(cpu, in, 1);
	io_check(cpu, port, sz);
	wr_gpr(cpu, RAX, sz, soft_io_in(cpu, port, sz));
	return SOFT_NEXT;
}

H(h_out)
{
	unsigned sz = in->op[1].size;
	uint16_t port = io_port(cpu, in, 0);
	io_check(cpu, port, sz);
	soft_io_out(cpu, port, sz, rd_gpr(cpu, RAX, sz));
	return SOFT_NEXT;
}

static unsigned io_str_size(const struct sinsn *in)
{
	switch (in->mnemonic) {
	case ZYDIS_MNEMONIC_INSB: case ZYDIS_MNEMONIC_OUTSB: return 1;
	case ZYDIS_MNEMONIC_INSW: case ZYDIS_MNEMONIC_OUTSW: return 2;
	default: return 4;
	}
}

static int io_string(struct soft_cpu *cpu, const struct sinsn *in, bool out)
{
	unsigned sz = io_str_size(in), as = in->asz;
	uint16_t port = (uint16_t)cpu->s.gpr[RDX];
	io_check(cpu, port, sz);
	bool rep = in->pfx & (PFX_REP | PFX_REPNE);
	uint64_t cnt = rep ? rd_gpr(cpu, RCX, as) : 1;
	int64_t d = (cpu->s.rflags & RFLAGS_DF) ? -(int64_t)sz : (int64_t)sz;
	unsigned budget = 4096;
	while (cnt && budget--) {
		if (out) {
			uint64_t si = rd_gpr(cpu, RSI, as);
			uint64_t v = lin_read(cpu, seg_lin(cpu, in->seg, si, sz, false), sz);
			soft_io_out(cpu, port, sz, v);
			wr_gpr(cpu, RSI, as, si + (uint64_t)d);
		} else {
			uint64_t di = rd_gpr(cpu, RDI, as);
			uint64_t la = seg_lin(cpu, SEG_ES, di, sz, true);
			/* both pages are checked before the port is read */
			soft_lin_ptr(cpu, la, sz, ACC_WRITE);
			uint64_t v = soft_io_in(cpu, port, sz);
			lin_write(cpu, la, sz, v);
			wr_gpr(cpu, RDI, as, di + (uint64_t)d);
		}
		cnt--;
		if (rep)
			wr_gpr(cpu, RCX, as, cnt);
		if (cpu->exit_code)
			break;
	}
	return cnt ? SOFT_JUMP : SOFT_NEXT;
}
H(h_ins) { return io_string(cpu, in, false); }
H(h_outs) { return io_string(cpu, in, true); }

void soft_sys_handlers(soft_handler *t)
{
#define R(m, f) t[ZYDIS_MNEMONIC_##m] = f
	R(PUSHF, h_pushf); R(PUSHFD, h_pushf); R(PUSHFQ, h_pushf);
	R(POPF, h_popf); R(POPFD, h_popf); R(POPFQ, h_popf);
	R(CLI, h_cli); R(STI, h_sti); R(CLAC, h_clac); R(STAC, h_stac);
	R(INT, h_int); R(INT3, h_int3); R(INT1, h_int1); R(INTO, h_into);
	R(IRET, h_iret); R(IRETD, h_iret); R(IRETQ, h_iret);
	R(LGDT, h_lgdt_lidt); R(LIDT, h_lgdt_lidt); R(SGDT, h_sgdt_sidt); R(SIDT, h_sgdt_sidt);
	R(LLDT, h_lldt); R(LTR, h_ltr); R(SLDT, h_sldt); R(STR, h_str);
	R(SMSW, h_smsw); R(LMSW, h_lmsw); R(CLTS, h_clts);
	R(LAR, h_lar_lsl); R(LSL, h_lar_lsl); R(VERR, h_verr_verw); R(VERW, h_verr_verw);
	R(LDS, h_lxs); R(LES, h_lxs); R(LFS, h_lxs); R(LGS, h_lxs); R(LSS, h_lxs);
	R(INVLPG, h_invlpg); R(WBINVD, h_wbinvd); R(INVD, h_wbinvd);
	R(HLT, h_hlt); R(UD0, h_ud); R(UD1, h_ud); R(UD2, h_ud);
	R(RDMSR, h_rdmsr); R(WRMSR, h_wrmsr); R(RDTSC, h_rdtsc); R(RDTSCP, h_rdtsc); R(RDPID, h_rdpid);
	R(CPUID, h_cpuid);
	R(SYSCALL, h_syscall); R(SYSRET, h_sysret); R(SYSENTER, h_sysenter); R(SYSEXIT, h_sysexit);
	R(SWAPGS, h_swapgs);
	R(IN, h_in); R(OUT, h_out); R(INSB, h_ins); R(INSW, h_ins); R(INSD, h_ins);
	R(OUTSB, h_outs); R(OUTSW, h_outs); R(OUTSD, h_outs);
#undef R
}
