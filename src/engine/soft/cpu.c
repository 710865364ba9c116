/* The soft engine's core loop: decode into the translation cache, run
 * blocks, raise exceptions, track code pages. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include <Zydis/Zydis.h>

#include "engine/soft/fpu/soft_glue.h"
#include "engine/soft/soft_cpu.h"
#include "util/log.h"

/* The handler table is filled once (pthread_once) and then only read; the
 * x87/SSE library adds its entries through soft_register_handler before any
 * vCPU runs. */
static soft_handler handlers[ZYDIS_MNEMONIC_MAX_VALUE + 1];
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void handlers_init(void)
{
	soft_int_handlers(handlers);
	soft_sys_handlers(handlers);
	soft_sse_handlers(handlers);
	/* the x87/SSE library (fpu/) over the core's minimal SSE moves; it
	 * routes the SSE forms of MOVSD/CMPSD through soft_set_sse_alias */
	fpu_soft_handlers(handlers);
}

void soft_register_handler(unsigned mnemonic, soft_handler fn)
{
	pthread_once(&handlers_once, handlers_init);
	if (mnemonic == ZYDIS_MNEMONIC_MOVSD || mnemonic == ZYDIS_MNEMONIC_CMPSD)
		soft_set_sse_alias(mnemonic, fn);
	else if (mnemonic <= ZYDIS_MNEMONIC_MAX_VALUE)
		handlers[mnemonic] = fn;
}

/* The core's own handler for a mnemonic (specialized forms replace only
 * these, never a handler the x87/SSE library installed). */
static soft_handler core_handlers[ZYDIS_MNEMONIC_MAX_VALUE + 1];
static pthread_once_t core_once = PTHREAD_ONCE_INIT;
static void core_init(void)
{
	soft_int_handlers(core_handlers);
}
soft_handler soft_handlers_generic(unsigned mnemonic)
{
	pthread_once(&core_once, core_init);
	return mnemonic <= ZYDIS_MNEMONIC_MAX_VALUE ? core_handlers[mnemonic] : NULL;
}

soft_handler soft_lookup_handler(unsigned mnemonic)
{
	pthread_once(&handlers_once, handlers_init);
	return mnemonic <= ZYDIS_MNEMONIC_MAX_VALUE ? handlers[mnemonic] : NULL;
}

/* ---- exceptions ---- */

void soft_raise(struct soft_cpu *cpu, int vector, uint32_t err, bool has_err)
{
	cpu->exc_vector = (uint8_t)vector;
	cpu->exc_error = has_err ? err : 0;
	cpu->exc_has_error = has_err;
	longjmp(cpu->jb, EXIT_EXCEPTION);
}

void soft_exit(struct soft_cpu *cpu, int code)
{
	longjmp(cpu->jb, code);
}

static int h_unimpl(struct soft_cpu *cpu, const struct sinsn *in)
{
	struct soft_vm *svm = cpu->svm;
	unsigned m = in->mnemonic;
	if (m < sizeof(svm->ud_logged) * 8) {
		pthread_mutex_lock(&svm->log_lock);
		bool first = !(svm->ud_logged[m / 8] & (1u << (m % 8)));
		svm->ud_logged[m / 8] |= (uint8_t)(1u << (m % 8));
		pthread_mutex_unlock(&svm->log_lock);
		if (first)
			kite_debug("soft: unimplemented instruction %s (#UD)",
				   ZydisMnemonicGetString((ZydisMnemonic)m));
	}
	soft_ud(cpu);
}

static int h_invalid(struct soft_cpu *cpu, const struct sinsn *in)
{
	(void)in;
	soft_ud(cpu);
}

/* More than 15 bytes (prefixes included): #GP(0) (SDM Vol. 2, 2.3.11). */
static int h_too_long(struct soft_cpu *cpu, const struct sinsn *in)
{
	(void)in;
	soft_gp(cpu, 0);
}

/* ---- mode ---- */

void soft_mode_changed(struct soft_cpu *cpu)
{
	struct cpu_state *s = &cpu->s;
	cpu->long_mode = (s->efer & EFER_LMA) != 0;
	cpu->paging = (s->cr0 & CR0_PG) && (s->cr0 & CR0_PE);
	if (!(s->cr0 & CR0_PE)) {
		cpu->cpl = 0;
		cpu->code_size = 2;
		cpu->stack_size = 2;
		cpu->mode64 = false;
	} else {
		cpu->mode64 = cpu->long_mode && s->seg[SEG_CS].l;
		cpu->code_size = cpu->mode64 ? 8 : s->seg[SEG_CS].db ? 4 : 2;
		cpu->stack_size = cpu->mode64 ? 8 : s->seg[SEG_SS].db ? 4 : 2;
		if (s->rflags & RFLAGS_VM)
			cpu->cpl = 3;
	}
	bool align = cpu->cpl == 3 && (s->cr0 & CR0_AM) && (s->rflags & RFLAGS_AC);
	if (cpu->dbg_data || align)
		cpu->mmu_view = cpu->cpl == 3 ? MMU_USER_SLOW : MMU_SUP_SLOW;
	else if (cpu->cpl == 3)
		cpu->mmu_view = MMU_USER;
	else if ((s->cr4 & CR4_SMAP) && (s->rflags & RFLAGS_AC))
		cpu->mmu_view = MMU_SUP_AC;
	else
		cpu->mmu_view = MMU_SUP;
	cpu->mode_dirty = true;
}

void soft_debug_changed(struct soft_cpu *cpu)
{
	uint64_t dr7 = cpu->s.dr[7];
	cpu->dbg_exec = cpu->dbg_data = 0;
	for (int i = 0; i < 4; i++) {
		if (!((dr7 >> (i * 2)) & 3))
			continue;
		if (((dr7 >> (16 + i * 4)) & 3) == 0)
			cpu->dbg_exec |= (uint8_t)(1u << i);
		else if (((dr7 >> (16 + i * 4)) & 3) != 2) /* 2: I/O breakpoints, not modelled */
			cpu->dbg_data |= (uint8_t)(1u << i);
	}
	soft_mode_changed(cpu);
}

void soft_ss_noncanonical(struct soft_cpu *cpu, uint64_t la)
{
	(void)la;
	soft_raise(cpu, 12, 0, true);
}

/* An instruction breakpoint at the current instruction (a fault). */
static void check_exec_bp(struct soft_cpu *cpu)
{
	if (cpu->s.rflags & RFLAGS_RF)
		return;
	uint64_t la = cpu->mode64 ? cpu->s.rip : (uint32_t)(cpu->s.seg[SEG_CS].base + cpu->s.rip);
	for (int i = 0; i < 4; i++) {
		if ((cpu->dbg_exec >> i) & 1 && cpu->s.dr[i] == la) {
			cpu->s.dr[6] |= 1u << i;
			soft_raise(cpu, 1, 0, false);
		}
	}
}

/* ---- translation cache ---- */

static inline unsigned tc_hash(uint64_t pa, unsigned mode)
{
	return (unsigned)(((pa * 4 + mode) * 0x9E3779B97F4A7C15ULL) >> (64 - TC_HASH_BITS));
}

static inline unsigned tc_phash(uint64_t pfn)
{
	return (unsigned)((pfn * 0x9E3779B97F4A7C15ULL) >> (64 - TC_PAGE_HASH_BITS));
}

void soft_tc_flush(struct soft_cpu *cpu)
{
	memset(cpu->tc.hash, 0, sizeof(cpu->tc.hash));
	memset(cpu->tc.pages, 0, sizeof(cpu->tc.pages));
	cpu->tc.used = 0;
	cpu->tc.flushes++;
	cpu->block_dirty = true;
	cpu->jc_gen++;
}

void soft_tc_invalidate_page(struct soft_cpu *cpu, uint64_t pa)
{
	uint64_t pfn = pa >> 12;
	struct tblock **pp = &cpu->tc.pages[tc_phash(pfn)];
	while (*pp) {
		struct tblock *b = *pp;
		if ((b->pa >> 12) != pfn) {
			pp = &b->pnext;
			continue;
		}
		*pp = b->pnext;
		struct tblock **hp = &cpu->tc.hash[tc_hash(b->pa, b->mode)];
		while (*hp && *hp != b)
			hp = &(*hp)->hnext;
		if (*hp)
			*hp = b->hnext;
		b->valid = 0;
	}
	cpu->block_dirty = true;
	cpu->jc_gen++;
}

void soft_mark_code(struct soft_cpu *cpu, uint64_t pa)
{
	uint64_t pfn = pa >> 12;
	if (pfn >= cpu->nr_pages)
		return;
	uint8_t bit = (uint8_t)(1u << (cpu->id & 7));
	if (!(atomic_load_explicit(&cpu->code_pages[pfn], memory_order_relaxed) & bit))
		atomic_fetch_or(&cpu->code_pages[pfn], bit);
}

void soft_code_written(struct soft_cpu *cpu, uint64_t pa, unsigned size)
{
	for (uint64_t pfn = pa >> 12; pfn <= (pa + size - 1) >> 12; pfn++) {
		if (pfn >= cpu->nr_pages)
			continue;
		uint8_t mask = atomic_exchange(&cpu->code_pages[pfn], 0);
		if (!mask)
			continue;
		uint8_t self = (uint8_t)(1u << (cpu->id & 7));
		if (mask & self)
			soft_tc_invalidate_page(cpu, pfn << 12);
		if (mask & ~self)
			soft_cpu_notify_code_write(cpu, mask & ~self);
	}
}

static ZydisMachineMode zmode(struct soft_cpu *cpu)
{
	if (cpu->code_size == 8)
		return ZYDIS_MACHINE_MODE_LONG_64;
	if (cpu->long_mode)
		return cpu->code_size == 4 ? ZYDIS_MACHINE_MODE_LONG_COMPAT_32 : ZYDIS_MACHINE_MODE_LONG_COMPAT_16;
	return cpu->code_size == 4 ? ZYDIS_MACHINE_MODE_LEGACY_32 : ZYDIS_MACHINE_MODE_LEGACY_16;
}

static uint8_t gpr_num(ZydisRegister r, uint8_t *size)
{
	if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_R15B) {
		unsigned i = r - ZYDIS_REGISTER_AL;
		*size = 1;
		if (i < 4) return (uint8_t)i;
		if (i < 8) return (uint8_t)(REG_AH + i - 4);
		return (uint8_t)(i - 4);
	}
	if (r >= ZYDIS_REGISTER_AX && r <= ZYDIS_REGISTER_R15W) { *size = 2; return (uint8_t)(r - ZYDIS_REGISTER_AX); }
	if (r >= ZYDIS_REGISTER_EAX && r <= ZYDIS_REGISTER_R15D) { *size = 4; return (uint8_t)(r - ZYDIS_REGISTER_EAX); }
	if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15) { *size = 8; return (uint8_t)(r - ZYDIS_REGISTER_RAX); }
	return 0xff;
}

static uint8_t mem_reg(ZydisRegister r)
{
	uint8_t sz;
	if (r == ZYDIS_REGISTER_NONE)
		return MEM_NOREG;
	if (r == ZYDIS_REGISTER_RIP || r == ZYDIS_REGISTER_EIP || r == ZYDIS_REGISTER_IP)
		return MEM_RIP;
	uint8_t n = gpr_num(r, &sz);
	return n;
}

static int seg_num(ZydisRegister r)
{
	if (r >= ZYDIS_REGISTER_ES && r <= ZYDIS_REGISTER_GS)
		return r - ZYDIS_REGISTER_ES;
	return SEG_DS;
}

/* Convert one Zydis instruction into the compact form. */
static void convert(struct soft_cpu *cpu, const ZydisDecodedInstruction *zi,
		    const ZydisDecodedOperand *zo, struct sinsn *in)
{
	(void)cpu;
	memset(in, 0, sizeof(*in));
	in->mnemonic = (uint16_t)zi->mnemonic;
	in->len = zi->length;
	in->osz = (uint8_t)(zi->operand_width / 8);
	if (!in->osz)
		in->osz = cpu->code_size == 2 ? 2 : 4;
	in->asz = (uint8_t)(zi->address_width / 8);
	in->opcode = zi->opcode;
	in->opmap = (uint8_t)zi->opcode_map;
	in->modrm_reg = zi->raw.modrm.reg;
	in->base = in->index = MEM_NOREG;
	in->seg = SEG_DS;
	if (zi->attributes & ZYDIS_ATTRIB_HAS_LOCK) in->pfx |= PFX_LOCK;
	if (zi->attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE)) in->pfx |= PFX_REP;
	if (zi->attributes & ZYDIS_ATTRIB_HAS_REPNE) in->pfx |= PFX_REPNE;
	if (zi->attributes & ZYDIS_ATTRIB_HAS_OPERANDSIZE) in->pfx |= PFX_OSZ;
	if (zi->attributes & ZYDIS_ATTRIB_HAS_SEGMENT) {
		in->pfx |= PFX_SEGOV;
		if (zi->attributes & ZYDIS_ATTRIB_HAS_SEGMENT_ES) in->seg = SEG_ES;
		else if (zi->attributes & ZYDIS_ATTRIB_HAS_SEGMENT_CS) in->seg = SEG_CS;
		else if (zi->attributes & ZYDIS_ATTRIB_HAS_SEGMENT_SS) in->seg = SEG_SS;
		else if (zi->attributes & ZYDIS_ATTRIB_HAS_SEGMENT_FS) in->seg = SEG_FS;
		else if (zi->attributes & ZYDIS_ATTRIB_HAS_SEGMENT_GS) in->seg = SEG_GS;
	}
	bool have_imm = false, have_mem = false;
	unsigned n = zi->operand_count_visible < 3 ? zi->operand_count_visible : 3;
	for (unsigned i = 0; i < zi->operand_count_visible; i++) {
		const ZydisDecodedOperand *o = &zo[i];
		struct sop tmp = { 0 }, *d = i < 3 ? &in->op[i] : &tmp;
		d->size = (uint8_t)(o->size / 8);
		switch (o->type) {
		case ZYDIS_OPERAND_TYPE_REGISTER: {
			ZydisRegister r = o->reg.value;
			uint8_t sz;
			uint8_t g = gpr_num(r, &sz);
			if (g != 0xff) {
				d->kind = OP_REG;
				d->reg = g;
			} else if (r >= ZYDIS_REGISTER_ES && r <= ZYDIS_REGISTER_GS) {
				d->kind = OP_SREG;
				d->reg = (uint8_t)(r - ZYDIS_REGISTER_ES);
			} else if (r >= ZYDIS_REGISTER_CR0 && r <= ZYDIS_REGISTER_CR15) {
				d->kind = OP_CR;
				d->reg = (uint8_t)(r - ZYDIS_REGISTER_CR0);
			} else if (r >= ZYDIS_REGISTER_DR0 && r <= ZYDIS_REGISTER_DR15) {
				d->kind = OP_DR;
				d->reg = (uint8_t)(r - ZYDIS_REGISTER_DR0);
			} else if (r >= ZYDIS_REGISTER_XMM0 && r <= ZYDIS_REGISTER_XMM15) {
				d->kind = OP_XMM;
				d->reg = (uint8_t)(r - ZYDIS_REGISTER_XMM0);
			} else if (r >= ZYDIS_REGISTER_MM0 && r <= ZYDIS_REGISTER_MM7) {
				d->kind = OP_MMX;
				d->reg = (uint8_t)(r - ZYDIS_REGISTER_MM0);
			} else if (r >= ZYDIS_REGISTER_ST0 && r <= ZYDIS_REGISTER_ST7) {
				d->kind = OP_ST;
				d->reg = (uint8_t)(r - ZYDIS_REGISTER_ST0);
			} else {
				in->fn = h_invalid; /* AVX-512 and friends */
			}
			break;
		}
		case ZYDIS_OPERAND_TYPE_MEMORY:
			d->kind = OP_MEM;
			if (!have_mem) {
				have_mem = true;
				in->seg = (uint8_t)seg_num(o->mem.segment);
				in->base = mem_reg(o->mem.base);
				in->index = mem_reg(o->mem.index);
				in->scale = o->mem.scale == 8 ? 3 : o->mem.scale == 4 ? 2 : o->mem.scale == 2 ? 1 : 0;
				in->disp = o->mem.disp.value;
			}
			break;
		case ZYDIS_OPERAND_TYPE_IMMEDIATE:
			d->kind = OP_IMM;
			if (!have_imm) {
				in->imm = o->imm.value.u;
				have_imm = true;
			} else {
				in->imm2 = (uint32_t)o->imm.value.u;
			}
			break;
		case ZYDIS_OPERAND_TYPE_POINTER:
			d->kind = OP_IMM;
			in->imm = o->ptr.offset;
			in->imm2 = o->ptr.segment;
			break;
		default:
			break;
		}
	}
	in->nops = (uint8_t)n;
	/* String instructions have only hidden memory operands: take the
	 * source segment (DS or the override) from them. */
	if (!have_mem) {
		for (unsigned i = zi->operand_count_visible; i < zi->operand_count; i++) {
			const ZydisDecodedOperand *o = &zo[i];
			if (o->type == ZYDIS_OPERAND_TYPE_MEMORY && o->mem.segment != ZYDIS_REGISTER_ES &&
			    o->mem.segment != ZYDIS_REGISTER_SS) {
				in->seg = (uint8_t)seg_num(o->mem.segment);
				break;
			}
		}
	}
	if (!in->fn) {
		soft_handler h = soft_lookup_handler(zi->mnemonic);
		in->fn = h ? h : h_unimpl;
		if (h == soft_handlers_generic(zi->mnemonic)) {
			soft_specialize(in);
			soft_specialize_store(in);
		}
	}
}

static bool ends_block(const ZydisDecodedInstruction *zi)
{
	if (zi->meta.branch_type != ZYDIS_BRANCH_TYPE_NONE)
		return true;
	switch (zi->meta.category) {
	case ZYDIS_CATEGORY_SYSTEM: case ZYDIS_CATEGORY_INTERRUPT: case ZYDIS_CATEGORY_SYSCALL:
	case ZYDIS_CATEGORY_SYSRET: case ZYDIS_CATEGORY_RET: case ZYDIS_CATEGORY_CALL:
	case ZYDIS_CATEGORY_COND_BR: case ZYDIS_CATEGORY_UNCOND_BR: case ZYDIS_CATEGORY_IO:
	case ZYDIS_CATEGORY_IOSTRINGOP: case ZYDIS_CATEGORY_SEGOP: case ZYDIS_CATEGORY_FLAGOP:
		return true;
	default:
		return false;
	}
}

/* Decode one instruction at linear address la (physical pa). Returns its
 * length, 0 when the bytes cross into the next page (cross set). */
static int decode_one(struct soft_cpu *cpu, const ZydisDecoder *dec, uint64_t la, uint64_t pa,
		      struct sinsn *out, bool *end)
{
	uint8_t buf[16];
	unsigned avail = 4096 - (pa & 0xfff);
	const uint8_t *p = gm_ptr(cpu->mem, pa, 1);
	if (!p) {
		/* Executing outside RAM: standalone runs stop; in a VM the bus
		 * reads all ones there, and FF FF is an invalid opcode. */
		if (!cpu->svm->vm)
			soft_exit(cpu, EXIT_IO);
		memset(out, 0, sizeof(*out));
		out->fn = h_invalid;
		out->len = 1;
		*end = true;
		return 1;
	}
	unsigned n = avail < 15 ? avail : 15;
	if (!gm_ptr(cpu->mem, pa, n))
		n = 1;
	memcpy(buf, p, n);
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
	ZyanStatus st = ZydisDecoderDecodeFull(dec, buf, n, &zi, zo);
	if (st == ZYDIS_STATUS_NO_MORE_DATA && n < 15) {
		/* The instruction continues on the next page. */
		uint64_t la2 = (la | 0xfff) + 1;
		if (!cpu->long_mode)
			la2 = (uint32_t)la2;
		uint64_t pa2 = soft_translate(cpu, la2, ACC_EXEC);
		const uint8_t *p2 = gm_ptr(cpu->mem, pa2, 15 - n);
		if (!p2 && !cpu->svm->vm)
			soft_exit(cpu, EXIT_IO);
		if (p2)
			memcpy(buf + n, p2, 15 - n);
		else
			memset(buf + n, 0xff, 15 - n);
		n = 15;
		st = ZydisDecoderDecodeFull(dec, buf, 15, &zi, zo);
		if (ZYAN_SUCCESS(st)) {
			convert(cpu, &zi, zo, out);
			*end = true;
			return 0;
		}
	}
	if (!ZYAN_SUCCESS(st)) {
		memset(out, 0, sizeof(*out));
		/* 15 bytes were there and still not enough */
		out->fn = (st == ZYDIS_STATUS_NO_MORE_DATA || st == ZYDIS_STATUS_INSTRUCTION_TOO_LONG) &&
			  n == 15 ? h_too_long : h_invalid;
		out->len = 1;
		*end = true;
		return 1;
	}
	convert(cpu, &zi, zo, out);
	*end = ends_block(&zi);
	return zi.length;
}

static struct tblock *tc_build(struct soft_cpu *cpu, uint64_t la, uint64_t pa)
{
	ZydisDecoder dec;
	ZydisDecoderInit(&dec, zmode(cpu), cpu->code_size == 8 ? ZYDIS_STACK_WIDTH_64 :
			 cpu->code_size == 4 ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16);
	size_t max = sizeof(struct tblock) + TC_MAX_BLOCK * sizeof(struct sinsn);
	if (cpu->tc.used + max > TC_ARENA_SIZE)
		soft_tc_flush(cpu);
	struct tblock *b = (struct tblock *)(cpu->tc.arena + cpu->tc.used);
	/* Mark the page before reading its bytes: a writer on another vCPU
	 * then either sees the mark or wrote before we decode. */
	soft_mark_code(cpu, pa);
	unsigned n = 0;
	uint64_t off = 0;
	bool cross = false;
	while (n < TC_MAX_BLOCK) {
		bool end = false;
		int len = decode_one(cpu, &dec, la + off, pa + off, &b->insn[n], &end);
		b->insn[n].off = (uint16_t)off;
		n++;
		if (len == 0) {
			cross = true;
			break;
		}
		off += (unsigned)len;
		if (end || ((pa + off) & 0xfff) == 0)
			break;
		if (cpu->code_size != 8 && cpu->code_size == 2 && ((cpu->s.rip + off) >> 16))
			break;
	}
	soft_fuse_block(b->insn, n);
	b->pa = pa;
	/* no links yet: a key no lookup uses */
	b->link_key[0] = b->link_key[1] = ~0u;
	b->link_gen[0] = b->link_gen[1] = 0;
	b->mode = cpu->code_size;
	b->ninsn = (uint16_t)n;
	b->valid = 1;
	if (cross) {
		/* A block ending in an instruction that spans two pages is not
		 * cached: it would need invalidation from either page. Run it
		 * from the arena scratch space (not committed). */
		b->valid = 2;
		return b;
	}
	cpu->tc.used += (sizeof(struct tblock) + n * sizeof(struct sinsn) + 15) & ~(size_t)15;
	unsigned h = tc_hash(pa, b->mode);
	b->hnext = cpu->tc.hash[h];
	cpu->tc.hash[h] = b;
	unsigned ph = tc_phash(pa >> 12);
	b->pnext = cpu->tc.pages[ph];
	cpu->tc.pages[ph] = b;
	return b;
}

static inline struct tblock *tc_lookup(struct soft_cpu *cpu)
{
	uint64_t la;
	if (cpu->mode64) {
		la = cpu->s.rip;
	} else {
		uint32_t lim = cpu->s.seg[SEG_CS].limit;
		if (cpu->s.rip > lim && (cpu->s.cr0 & CR0_PE))
			soft_gp(cpu, 0);
		la = (uint32_t)(cpu->s.seg[SEG_CS].base + cpu->s.rip);
	}
	uint32_t key = cpu->code_size | (uint32_t)cpu->mmu_view << 4;
	struct jc_entry *j = &cpu->jc[(la ^ (la >> 12)) & (JC_SIZE - 1)];
	if (j->la == la && j->key == key && j->gen == cpu->jc_gen)
		return j->b;
	struct tlbe *e = tlb_entry(cpu, la);
	uint64_t pa = e->tag_x == (la >> 12) ? (e->pa | (la & 0xfff)) : soft_translate(cpu, la, ACC_EXEC);
	struct tblock *b;
	for (b = cpu->tc.hash[tc_hash(pa, cpu->code_size)]; b; b = b->hnext)
		if (b->pa == pa && b->mode == cpu->code_size)
			break;
	if (!b)
		b = tc_build(cpu, la, pa);
	if (b->valid == 1) {
		j->la = la;
		j->key = key;
		j->gen = cpu->jc_gen;
		j->b = b;
	}
	return b;
}

/* ---- run loop ---- */

/* Exception classes for the double-fault rules (SDM vol. 3, 6.15). */
static int exc_class(int v)
{
	switch (v) {
	case 0: case 10: case 11: case 12: case 13: return 1; /* contributory */
	case 14: return 2;                                     /* page fault */
	default: return 0;                                     /* benign */
	}
}

static void handle_exception(struct soft_cpu *cpu)
{
	int vec = cpu->exc_vector;
	uint32_t err = cpu->exc_error;
	int flags = (cpu->exc_has_error ? INT_ERR : 0) | INT_EXT;
	if (cpu->exc_depth) {
		/* a fault while delivering cpu->exc_first */
		int first = cpu->exc_first, c1 = exc_class(first), c2 = exc_class(vec);
		if (first == 8)
			soft_exit(cpu, EXIT_SHUTDOWN);
		if ((c1 == 1 && c2 == 1) || (c1 == 2 && c2 != 0)) {
			vec = 8;
			err = 0;
			flags = INT_ERR | INT_EXT;
		}
	}
	/* SDM 17.3.1.1: every fault except an instruction breakpoint saves
	 * RF=1, so the faulting instruction's breakpoint does not fire again
	 * when it restarts. #DB (instruction breakpoints are its only fault
	 * form) saves RF as it is; NMI, #BP, #OF, #DF and #MC are not faults. */
	if (vec != 1 && vec != 2 && vec != 3 && vec != 4 && vec != 8 && vec != 18)
		flags |= INT_FAULT;
	cpu->exc_depth = 1;
	cpu->exc_first = (uint8_t)vec;
	soft_deliver(cpu, vec, err, flags);
	cpu->exc_depth = 0;
}

int soft_exec(struct soft_cpu *cpu)
{
	int code = setjmp(cpu->jb);
	if (code) {
		/* the instructions before the one that left retired */
		if (cpu->cur_first) {
			cpu->insns += (uint64_t)(cpu->cur_in - cpu->cur_first);
			cpu->cur_first = NULL;
		}
		soft_flags_commit(cpu);
		if (code != EXIT_EXCEPTION) {
			cpu->exc_depth = 0;
			return code;
		}
		if (!cpu->deliver) {
			cpu->exc_depth = 0;
			return EXIT_EXCEPTION;
		}
		handle_exception(cpu);
	}
	/* the block that ran last, and the jump-cache generation then: its
	 * arena memory is intact while the generation has not moved */
	struct tblock *prev = NULL;
	uint32_t prev_gen = 0;
	for (;;) {
		if (atomic_load_explicit(&cpu->pending, memory_order_relaxed)) {
			int r = soft_cpu_pending(cpu);
			if (r)
				return r;
		}
		if (cpu->lapic) {
			/* RDTSC is slow on some hosts (nested VMs): look at the
			 * clock every few thousand instructions only */
			if (cpu->insns >= cpu->timer_check) {
				cpu->timer_check = cpu->insns + 4096;
				if (__builtin_ia32_rdtsc() >= cpu->timer_tsc)
					soft_platform_timers(cpu);
			}
			if (atomic_load_explicit(cpu->lapic_hint, memory_order_acquire))
				soft_platform_accept(cpu);
		}
		if (cpu->deliver && (cpu->s.halted || cpu->s.wait_for_sipi))
			return EXIT_HLT;
		if (cpu->insns >= cpu->max_insns)
			return EXIT_LIMIT;
		struct tblock *b;
		if (prev && prev_gen == cpu->jc_gen && cpu->mode64) {
			/* follow or make a direct link from the previous block */
			uint32_t key = cpu->code_size | (uint32_t)cpu->mmu_view << 4;
			uint64_t rip = cpu->s.rip;
			if (prev->link_rip[0] == rip && prev->link_gen[0] == prev_gen && prev->link_key[0] == key) {
				b = prev->link[0];
			} else if (prev->link_rip[1] == rip && prev->link_gen[1] == prev_gen && prev->link_key[1] == key) {
				b = prev->link[1];
			} else {
				b = tc_lookup(cpu);
				/* a lookup that built or flushed changes nothing
				 * here unless the generation moved */
				if (b->valid == 1 && prev_gen == cpu->jc_gen) {
					int i = prev->link_gen[0] != prev_gen || prev->link_key[0] == ~0u ? 0 : 1;
					prev->link[i] = b;
					prev->link_rip[i] = rip;
					prev->link_key[i] = key;
					prev->link_gen[i] = prev_gen;
				}
			}
		} else {
			b = tc_lookup(cpu);
		}
		prev = b->valid == 1 ? b : NULL;
		prev_gen = cpu->jc_gen;
		unsigned n = b->ninsn;
		bool shadow = cpu->shadow;
		bool tf = cpu->s.rflags & RFLAGS_TF;
		if (__builtin_expect(shadow || tf || cpu->dbg_exec || cpu->dbg_data, 0)) {
			n = 1;
			if (cpu->dbg_exec)
				check_exec_bp(cpu);
		}
		/* RF suppresses the instruction breakpoints of one instruction
		 * (checked just above): cleared before that instruction runs,
		 * so an IRET that loads RF=1 (or a REP yielding part-way) keeps
		 * it for the instruction after. A translator must clear it at
		 * the same point: before the first instruction of a block. */
		if (__builtin_expect(cpu->s.rflags & RFLAGS_RF, 0))
			cpu->s.rflags &= ~RFLAGS_RF;
		cpu->dbg_hit = 0;
		if (__builtin_expect(cpu->max_insns - cpu->insns < n, 0))
			n = (unsigned)(cpu->max_insns - cpu->insns);
		cpu->mode_dirty = false;
		cpu->block_dirty = false;
		/* RIP of each instruction is the block's start plus its offset
		 * (masked outside 64-bit code), stored before the handler runs:
		 * no read-modify-write chain through memory per instruction. */
		const uint64_t base = cpu->s.rip;
		const uint64_t mask = cpu->code_size == 8 ? ~0ULL : cpu->code_size == 4 ? 0xffffffffULL : 0xffff;
		const struct sinsn *in = b->insn, *end = b->insn + n;
		cpu->cur_first = in;
		cpu->cur_end = end;
		for (; in < end; in++) {
			cpu->cur_in = in;
			cpu->s.rip = (base + in->off) & mask;
			int r = in->fn(cpu, in);
			if (__builtin_expect(r != SOFT_NEXT, 0)) {
				in++;
				goto done;
			}
			if (__builtin_expect(cpu->mode_dirty | cpu->block_dirty, 0)) {
				/* the handler may have changed the code size */
				cpu->s.rip += in->len;
				if (cpu->code_size != 8)
					cpu->s.rip &= cpu->code_size == 2 ? 0xffff : 0xffffffffULL;
				in++;
				goto done;
			}
		}
		if (n) {
			const struct sinsn *last = end - 1;
			cpu->s.rip = (base + last->off + last->len) & mask;
		}
done:
		cpu->cur_first = NULL;
		cpu->insns += (uint64_t)(in - b->insn);
		if (shadow)
			cpu->shadow = false;
		if (__builtin_expect((tf || cpu->dbg_hit) && !cpu->exit_code, 0)) {
			/* single-step or data-breakpoint trap after the instruction */
			if (tf)
				cpu->s.dr[6] |= 0x4000;
			cpu->s.dr[6] |= cpu->dbg_hit;
			cpu->dbg_hit = 0;
			soft_raise(cpu, 1, 0, false);
		}
		if (cpu->exit_code) {
			int c = cpu->exit_code;
			cpu->exit_code = 0;
			return c;
		}
	}
}

int soft_cpu_init(struct soft_cpu *cpu, struct soft_vm *svm, unsigned id)
{
	memset(cpu, 0, sizeof(*cpu));
	cpu->svm = svm;
	cpu->mem = svm->mem;
	cpu->code_pages = svm->code_pages;
	cpu->nr_pages = svm->nr_pages;
	cpu->id = id;
	cpu->tc.arena = mmap(NULL, TC_ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (cpu->tc.arena == MAP_FAILED) {
		cpu->tc.arena = NULL;
		return -ENOMEM;
	}
	atomic_init(&cpu->pending, 0);
	atomic_init(&cpu->intr_vector, -1);
	atomic_init(&cpu->sipi_vector, -1);
	pthread_mutex_init(&cpu->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cpu->cond, &ca);
	pthread_condattr_destroy(&ca);
	cpu->max_insns = UINT64_MAX;
	cpu->jc_gen = 1;
	soft_tlb_flush(cpu, true);
	soft_mode_changed(cpu);
	return 0;
}

void soft_cpu_destroy(struct soft_cpu *cpu)
{
	if (cpu->tc.arena)
		munmap(cpu->tc.arena, TC_ARENA_SIZE);
	cpu->tc.arena = NULL;
	pthread_mutex_destroy(&cpu->lock);
	pthread_cond_destroy(&cpu->cond);
}

void soft_set_state(struct soft_cpu *cpu, const struct cpu_state *st)
{
	cpu->s = *st;
	cpu->lf_op = LF_NONE;
	cpu->s.rflags |= RFLAGS_FIXED;
	cpu->cpl = (st->cr0 & CR0_PE) ? st->seg[SEG_SS].dpl : 0;
	if ((st->cr0 & CR0_PE) && (st->rflags & RFLAGS_VM))
		cpu->cpl = 3;
	cpu->shadow = st->interrupt_shadow;
	soft_debug_changed(cpu);
	soft_tlb_flush(cpu, true);
	/* A state without a TSC (power-on, INIT) runs on the VM's common TSC,
	 * so every vCPU reads the same clock; a saved TSC is restored. */
	cpu->tsc_offset = st->tsc ? st->tsc - soft_host_tsc() : cpu->svm->tsc_offset;
}

void soft_get_state(struct soft_cpu *cpu, struct cpu_state *st)
{
	soft_flags_commit(cpu);
	cpu->s.interrupt_shadow = cpu->shadow;
	cpu->s.tsc = soft_read_tsc(cpu);
	*st = cpu->s;
}
