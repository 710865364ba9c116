/* Soft MMU: page walks (4-level, PAE, 32-bit), the soft TLB, and the slow
 * paths of linear-memory accesses (page crossings, MMIO, code pages). */
#include <errno.h>

#include "engine/soft/soft_cpu.h"

#define PTE_P   (1ULL << 0)
#define PTE_RW  (1ULL << 1)
#define PTE_US  (1ULL << 2)
#define PTE_A   (1ULL << 5)
#define PTE_D   (1ULL << 6)
#define PTE_PS  (1ULL << 7)
#define PTE_G   (1ULL << 8)
#define PTE_NX  (1ULL << 63)
#define PHYS_BITS 40
#define ADDR_MASK (((1ULL << PHYS_BITS) - 1) & ~0xfffULL)
#define RSVD_HIGH (((1ULL << 63) - 1) & ~((1ULL << PHYS_BITS) - 1))

#define PFEC_P    1
#define PFEC_W    2
#define PFEC_U    4
#define PFEC_RSVD 8
#define PFEC_I    16

void soft_tlb_flush(struct soft_cpu *cpu, bool global)
{
	cpu->jc_gen++;
	for (int v = 0; v < MMU_VIEWS; v++)
		for (unsigned i = 0; i < TLB_SIZE; i++) {
			struct tlbe *e = &cpu->tlb[v][i];
			if (global || !e->global)
				e->tag_r = e->tag_w = e->tag_x = TLB_NONE;
		}
}

void soft_tlb_flush_page(struct soft_cpu *cpu, uint64_t la)
{
	/* Entries are 4 KiB pieces even of large pages, and INVLPG drops the
	 * whole large page: drop every entry whose page is in the same 2 MiB
	 * or (rarely) 1 GiB region by flushing all non-matching views cheaply. */
	uint64_t pn = la >> 12;
	cpu->jc_gen++;
	for (int v = 0; v < MMU_VIEWS; v++)
		for (unsigned i = 0; i < TLB_SIZE; i++) {
			struct tlbe *e = &cpu->tlb[v][i];
			uint64_t t = e->tag_r != TLB_NONE ? e->tag_r : e->tag_x != TLB_NONE ? e->tag_x : e->tag_w;
			if (t == TLB_NONE)
				continue;
			if (t == pn || (t >> 9) == (pn >> 9))
				e->tag_r = e->tag_w = e->tag_x = TLB_NONE;
		}
}

static __attribute__((noreturn)) void page_fault(struct soft_cpu *cpu, uint64_t la, uint32_t err)
{
	cpu->s.cr2 = la;
	soft_raise(cpu, 14, err, true);
}

/* Read a paging-structure entry; an entry outside RAM reads as 0 (absent). */
static void *pte_ptr(struct soft_cpu *cpu, uint64_t pa, unsigned size)
{
	return gm_ptr(cpu->mem, pa, size);
}

struct walk {
	uint64_t pa;
	bool user, write, nx, global, dirty;
};

static void set_ad(void *p, unsigned size, uint64_t bits, uint64_t cur)
{
	if ((cur & bits) == bits)
		return;
	if (size == 8)
		__atomic_fetch_or((uint64_t *)p, bits, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_or((uint32_t *)p, (uint32_t)bits, __ATOMIC_SEQ_CST);
}

/* Walk the page tables for la. pfec carries the access's W/U/I bits for a
 * fault. Sets A bits on the path and D on the leaf for writes. */
static void walk(struct soft_cpu *cpu, uint64_t la, uint32_t pfec, bool is_write, struct walk *w)
{
	const struct cpu_state *s = &cpu->s;
	bool nxe = s->efer & EFER_NXE;
	uint64_t rsvd_nx = nxe ? 0 : PTE_NX;
	w->user = w->write = true;
	w->nx = false;
	w->global = false;
	void *ptrs[5];
	uint64_t ents[5];
	int n = 0;
	unsigned esz = 8;
	uint64_t pa, pte;
	int level;

	if (cpu->long_mode || (s->cr4 & CR4_PAE)) {
		uint64_t table;
		if (cpu->long_mode) {
			table = s->cr3 & ADDR_MASK;
			level = 4;
		} else {
			uint64_t pdpt = (s->cr3 & 0xffffffe0ULL) + ((la >> 30) & 3) * 8;
			void *p = pte_ptr(cpu, pdpt, 8);
			pte = 0;
			if (p)
				memcpy(&pte, p, 8);
			if (!(pte & PTE_P))
				page_fault(cpu, la, pfec);
			if (pte & (RSVD_HIGH | 0x1e6ULL | PTE_NX))
				page_fault(cpu, la, pfec | PFEC_P | PFEC_RSVD);
			table = pte & ADDR_MASK;
			level = 2;
		}
		for (;;) {
			unsigned shift = 12 + 9 * (level - 1);
			uint64_t ea = table + ((la >> shift) & 511) * 8;
			void *p = pte_ptr(cpu, ea, 8);
			pte = 0;
			if (p)
				memcpy(&pte, p, 8);
			if (!(pte & PTE_P))
				page_fault(cpu, la, pfec);
			uint64_t rsvd = RSVD_HIGH | rsvd_nx;
			bool leaf = level == 1 || ((pte & PTE_PS) && level <= 3);
			if (level == 4 && (pte & PTE_PS))
				rsvd |= PTE_PS;
			if (leaf && level == 2)
				rsvd |= 0x1fe000ULL;
			if (leaf && level == 3)
				rsvd |= 0x3fffe000ULL;
			if (pte & rsvd)
				page_fault(cpu, la, pfec | PFEC_P | PFEC_RSVD);
			if (!(pte & PTE_US)) w->user = false;
			if (!(pte & PTE_RW)) w->write = false;
			if (nxe && (pte & PTE_NX)) w->nx = true;
			ptrs[n] = p;
			ents[n++] = pte;
			if (leaf) {
				uint64_t off_mask = (1ULL << shift) - 1;
				pa = ((pte & ADDR_MASK) & ~off_mask) | (la & off_mask);
				break;
			}
			table = pte & ADDR_MASK;
			level--;
		}
	} else {
		esz = 4;
		uint64_t ea = (s->cr3 & 0xfffff000ULL) + ((la >> 22) & 1023) * 4;
		uint32_t e32 = 0;
		void *p = pte_ptr(cpu, ea, 4);
		if (p)
			memcpy(&e32, p, 4);
		pte = e32;
		if (!(pte & PTE_P))
			page_fault(cpu, la, pfec);
		if (!(pte & PTE_US)) w->user = false;
		if (!(pte & PTE_RW)) w->write = false;
		ptrs[n] = p;
		ents[n++] = pte;
		if ((pte & PTE_PS) && (s->cr4 & CR4_PSE)) {
			pa = ((pte & 0xffc00000ULL) | ((pte >> 13) & 0xffULL) << 32) | (la & 0x3fffff);
		} else {
			ea = (pte & 0xfffff000ULL) + ((la >> 12) & 1023) * 4;
			p = pte_ptr(cpu, ea, 4);
			e32 = 0;
			if (p)
				memcpy(&e32, p, 4);
			pte = e32;
			if (!(pte & PTE_P))
				page_fault(cpu, la, pfec);
			if (!(pte & PTE_US)) w->user = false;
			if (!(pte & PTE_RW)) w->write = false;
			ptrs[n] = p;
			ents[n++] = pte;
			pa = (pte & 0xfffff000ULL) | (la & 0xfff);
		}
	}
	w->global = (ents[n - 1] & PTE_G) && (s->cr4 & CR4_PGE);
	w->pa = pa;
	w->dirty = (ents[n - 1] & PTE_D) != 0;
	/* A/D are set only once the access is known to be allowed: the caller
	 * checks permissions first and calls walk_commit. Keep it simple: set
	 * them here after the permission check done by the caller is repeated
	 * cheaply below. */
	cpu->walk_n = n;
	cpu->walk_esz = esz;
	for (int i = 0; i < n; i++) {
		cpu->walk_ptr[i] = ptrs[i];
		cpu->walk_ent[i] = ents[i];
	}
	(void)is_write;
}

static void walk_commit(struct soft_cpu *cpu, bool is_write)
{
	for (int i = 0; i < cpu->walk_n; i++) {
		uint64_t bits = PTE_A;
		if (i == cpu->walk_n - 1 && is_write)
			bits |= PTE_D;
		set_ad(cpu->walk_ptr[i], cpu->walk_esz, bits, cpu->walk_ent[i]);
	}
}

static bool canonical(uint64_t la)
{
	return (uint64_t)((int64_t)(la << 16) >> 16) == la;
}

/* Is the access allowed by a walk result for a given privilege view? */
static uint32_t check(struct soft_cpu *cpu, const struct walk *w, int kind, int view, bool implicit)
{
	const struct cpu_state *s = &cpu->s;
	bool user = (view == MMU_USER || view == MMU_USER_SLOW) && !implicit;
	bool sup_ac = view == MMU_SUP_AC || (view == MMU_SUP_SLOW && (s->rflags & RFLAGS_AC));
	if (user && !w->user)
		return PFEC_P;
	switch (kind) {
	case ACC_WRITE:
		if (!w->write && (user || (s->cr0 & CR0_WP)))
			return PFEC_P;
		break;
	case ACC_EXEC:
		if (w->nx)
			return PFEC_P;
		if (!user && w->user && (s->cr4 & CR4_SMEP))
			return PFEC_P;
		return 0;
	}
	if (!user && w->user && (s->cr4 & CR4_SMAP) && (implicit || !sup_ac))
		return PFEC_P;
	return 0;
}

uint64_t soft_translate(struct soft_cpu *cpu, uint64_t la, int acc)
{
	int kind = acc & 3;
	bool implicit = acc & ACC_IMPLICIT;
	uint64_t pn = la >> 12;
	struct tlbe *e = tlb_entry(cpu, la);
	if (!implicit) {
		uint64_t tag = kind == ACC_READ ? e->tag_r : kind == ACC_WRITE ? e->tag_w : e->tag_x;
		if (tag == pn)
			return e->pa | (la & 0xfff);
	}
	if (cpu->long_mode && !canonical(la))
		soft_gp(cpu, 0);
	struct walk w;
	int view = implicit ? MMU_SUP : cpu->mmu_view;
	if (!cpu->paging) {
		w = (struct walk){ .pa = la, .user = true, .write = true, .dirty = true };
		cpu->walk_n = 0;
	} else {
		uint32_t pfec = 0;
		if (kind == ACC_WRITE) pfec |= PFEC_W;
		if ((view == MMU_USER || view == MMU_USER_SLOW) && !implicit) pfec |= PFEC_U;
		if (kind == ACC_EXEC && ((cpu->s.efer & EFER_NXE) || (cpu->s.cr4 & CR4_SMEP)))
			pfec |= PFEC_I;
		walk(cpu, la, pfec, kind == ACC_WRITE, &w);
		uint32_t bad = check(cpu, &w, kind, view, implicit);
		if (bad)
			page_fault(cpu, la, pfec | bad);
		walk_commit(cpu, kind == ACC_WRITE);
		if (kind == ACC_WRITE)
			w.dirty = true;
	}
	if (implicit || view >= MMU_SUP_SLOW)
		return w.pa;
	/* Fill the entry for this view with every access kind it allows now. */
	uint64_t ppage = w.pa & ~0xfffULL;
	void *host = gm_ptr(cpu->mem, ppage, 4096);
	if (e->tag_r != pn && e->tag_w != pn && e->tag_x != pn)
		e->tag_r = e->tag_w = e->tag_x = TLB_NONE;
	e->pa = ppage;
	e->global = w.global;
	e->ram = host != NULL;
	e->addend = host ? (uintptr_t)host - (pn << 12) : 0;
	if (host) {
		e->tag_r = check(cpu, &w, ACC_READ, view, false) ? TLB_NONE : pn;
		/* The write fast path indexes code_pages by the physical page:
		 * device memory beyond RAM (an ivshmem BAR) writes through the
		 * slow path, which checks the bound. */
		e->tag_w = (w.dirty && !check(cpu, &w, ACC_WRITE, view, false) &&
			    (ppage >> 12) < cpu->nr_pages) ? pn : TLB_NONE;
		e->tag_x = check(cpu, &w, ACC_EXEC, view, false) ? TLB_NONE : pn;
	} else {
		/* MMIO: never on the fast path; remember the translation for this
		 * kind only (the slow path looks at pa). */
		e->tag_r = e->tag_w = e->tag_x = TLB_NONE;
	}
	return w.pa;
}

uint64_t soft_phys_read(struct soft_cpu *cpu, uint64_t pa, unsigned size)
{
	uint64_t v = 0;
	void *p = gm_ptr(cpu->mem, pa, size);
	if (p) {
		memcpy(&v, p, size);
		return v;
	}
	if (!soft_mmio_read(cpu, pa, size, &v))
		soft_exit(cpu, EXIT_IO);
	return v;
}

void soft_phys_write(struct soft_cpu *cpu, uint64_t pa, unsigned size, uint64_t v)
{
	void *p = gm_ptr(cpu->mem, pa, size);
	if (p) {
		if ((pa >> 12) < cpu->nr_pages && atomic_load_explicit(&cpu->code_pages[pa >> 12], memory_order_relaxed))
			soft_code_written(cpu, pa, size);
		memcpy(p, &v, size);
		return;
	}
	if (!soft_mmio_write(cpu, pa, size, v))
		soft_exit(cpu, EXIT_IO);
}

/* One in-page piece. */
static void piece_read(struct soft_cpu *cpu, uint64_t pa, uint8_t *dst, unsigned n)
{
	void *p = gm_ptr(cpu->mem, pa, n);
	if (p) {
		memcpy(dst, p, n);
		return;
	}
	if (n == 1 || n == 2 || n == 4 || n == 8) {
		uint64_t v = soft_phys_read(cpu, pa, n);
		memcpy(dst, &v, n);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		dst[i] = (uint8_t)soft_phys_read(cpu, pa + i, 1);
}

static void piece_write(struct soft_cpu *cpu, uint64_t pa, const uint8_t *src, unsigned n)
{
	if (n == 1 || n == 2 || n == 4 || n == 8) {
		uint64_t v = 0;
		memcpy(&v, src, n);
		soft_phys_write(cpu, pa, n, v);
		return;
	}
	void *p = gm_ptr(cpu->mem, pa, n);
	if (p) {
		for (uint64_t pg = pa >> 12; pg <= (pa + n - 1) >> 12; pg++)
			if (pg < cpu->nr_pages && atomic_load_explicit(&cpu->code_pages[pg], memory_order_relaxed))
				soft_code_written(cpu, pg << 12, 1);
		memcpy(p, src, n);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		soft_phys_write(cpu, pa + i, 1, src[i]);
}

/* Alignment check and data breakpoints (the SLOW views only). */
static void slow_checks(struct soft_cpu *cpu, uint64_t la, unsigned size, int acc)
{
	if (cpu->mmu_view < MMU_SUP_SLOW || (acc & ACC_IMPLICIT))
		return;
	if (cpu->mmu_view == MMU_USER_SLOW && (cpu->s.cr0 & CR0_AM) && (cpu->s.rflags & RFLAGS_AC) &&
	    (size == 2 || size == 4 || size == 8) && (la & (size - 1)))
		soft_raise(cpu, 17, 0, true);
	uint64_t dr7 = cpu->s.dr[7];
	for (int i = 0; i < 4; i++) {
		if (!((cpu->dbg_data >> i) & 1))
			continue;
		unsigned rw = (dr7 >> (16 + i * 4)) & 3;
		if (rw == 1 && (acc & 3) != ACC_WRITE)
			continue;
		static const unsigned lens[4] = { 1, 2, 8, 4 };
		unsigned len = lens[(dr7 >> (18 + i * 4)) & 3];
		uint64_t b = cpu->s.dr[i] & ~(uint64_t)(len - 1);
		if (la < b + len && b < la + size)
			cpu->dbg_hit |= (uint8_t)(1u << i);
	}
	if (cpu->dbg_hit)
		cpu->block_dirty = true;
}

void soft_lin_read(struct soft_cpu *cpu, uint64_t la, void *dst, unsigned size, int acc)
{
	slow_checks(cpu, la, size, acc);
	unsigned first = 4096 - (la & 0xfff);
	if (first >= size) {
		piece_read(cpu, soft_translate(cpu, la, acc), dst, size);
		return;
	}
	uint64_t pa1 = soft_translate(cpu, la, acc);
	uint64_t la2 = la + first;
	if (!cpu->long_mode)
		la2 = (uint32_t)la2;
	uint64_t pa2 = soft_translate(cpu, la2, acc);
	piece_read(cpu, pa1, dst, first);
	piece_read(cpu, pa2, (uint8_t *)dst + first, size - first);
}

void soft_lin_write(struct soft_cpu *cpu, uint64_t la, const void *src, unsigned size, int acc)
{
	acc = (acc & ~3) | ACC_WRITE;
	slow_checks(cpu, la, size, acc);
	unsigned first = 4096 - (la & 0xfff);
	if (first >= size) {
		piece_write(cpu, soft_translate(cpu, la, acc), src, size);
		return;
	}
	uint64_t pa1 = soft_translate(cpu, la, acc);
	uint64_t la2 = la + first;
	if (!cpu->long_mode)
		la2 = (uint32_t)la2;
	uint64_t pa2 = soft_translate(cpu, la2, acc);
	piece_write(cpu, pa1, src, first);
	piece_write(cpu, pa2, (const uint8_t *)src + first, size - first);
}

void *soft_lin_ptr(struct soft_cpu *cpu, uint64_t la, unsigned size, int acc)
{
	slow_checks(cpu, la, size, acc);
	if ((la & 0xfff) + size > 4096) {
		/* Check both pages now so a later split access cannot fault
		 * half-way. */
		/* the second page is probed at its first byte: that is
		 * the address a #PF reports in CR2 */
		soft_translate(cpu, la, acc);
		uint64_t la2 = (la | 0xfff) + 1;
		if (!cpu->long_mode)
			la2 = (uint32_t)la2;
		soft_translate(cpu, la2, acc);
		return NULL;
	}
	uint64_t pa = soft_translate(cpu, la, acc);
	void *p = gm_ptr(cpu->mem, pa, size);
	if (p && (acc & 3) == ACC_WRITE && (pa >> 12) < cpu->nr_pages &&
	    atomic_load_explicit(&cpu->code_pages[pa >> 12], memory_order_relaxed))
		soft_code_written(cpu, pa, size);
	return p;
}
