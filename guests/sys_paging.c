/* sys_paging: 4-level paging built by the guest. A test area at 512 GiB
 * (PML4 slot 1 -> its own PDPT, PD and a PT of 4 KiB pages) is mapped onto
 * frames filled with known patterns. Page faults, each checked for its
 * error code (P, W/R, U/S, RSVD, I/D) and CR2, after which the #PF handler
 * fixes the mapping and the access is retried: not present (read, write,
 * fetch, from CPL0 and CPL3), write to a read-only page at CPL0 with
 * CR0.WP (and no fault without it) and at CPL3, a user access to a
 * supervisor page, an instruction fetch from an NX page (EFER.NXE), a
 * reserved bit in a PTE. Then the CPU's A and D bits, INVLPG after a PTE
 * change, a CR3 reload, global pages flushed by toggling CR4.PGE, SMEP and
 * SMAP (or the #GP for enabling them when not advertised), and a 2 MiB
 * page. */
#include "sys_lib.h"

const char *const sys_name = "sys_paging";

#define TVA 0x8000000000ull /* PML4 slot 1 */
#define PG_P (1ull << 0)
#define PG_W (1ull << 1)
#define PG_U (1ull << 2)
#define PG_A (1ull << 5)
#define PG_D (1ull << 6)
#define PG_PS (1ull << 7)
#define PG_G (1ull << 8)
#define PG_NX (1ull << 63)

#define PF_P (1u << 0)
#define PF_W (1u << 1)
#define PF_U (1u << 2)
#define PF_RSVD (1u << 3)
#define PF_I (1u << 4)

static uint64_t t_pdpt[512] __attribute__((aligned(4096)));
static uint64_t t_pd[512] __attribute__((aligned(4096)));
static uint64_t t_pt[512] __attribute__((aligned(4096)));
#define NFRAMES 8
static uint8_t frames[NFRAMES][4096] __attribute__((aligned(4096)));
static uint8_t user_stack[8192] __attribute__((aligned(16)));
#define USER_TOP ((uint64_t)&user_stack[sizeof(user_stack)])

#define PATTERN(k) (0x0101010101010101ull * (0x10 + (k)))
#define FRAME(k) ((uint64_t)frames[k])
#define VA(i) (TVA + 4096ull * (i))

volatile uint64_t sink, wval;

/* What the #PF handler saw, and how it repairs PTE fix_idx */
static volatile unsigned pf_count;
static volatile uint64_t pf_err, pf_cr2, pf_rip;
static volatile int fix_idx = -1;
static volatile uint64_t fix_set, fix_clear;

static void pf_handler(struct trap_frame *f)
{
	pf_count++;
	pf_err = f->error;
	pf_cr2 = READ_CR(2);
	pf_rip = f->rip;
	if (fix_idx < 0 || pf_count > 3) {
		trap_land(f);
		return;
	}
	t_pt[fix_idx] = (t_pt[fix_idx] | fix_set) & ~fix_clear;
	invlpg(pf_cr2);
}

static void set_pte(int i, uint64_t v)
{
	t_pt[i] = v;
	invlpg(VA(i));
}

static void do_read(void *p) { sink = *(volatile uint64_t *)p; }
static void do_write(void *p) { *(volatile uint64_t *)p = wval; }
static void do_exec(void *p) { ((void (*)(void))p)(); }

/* Run an access to va that must fault once with error err, at CR2 va, be
 * fixed by setting/clearing bits of PTE idx, and then succeed. */
static void fault_fix(const char *what, void (*fn)(void *), int user, uint64_t va, int idx,
		      uint64_t set, uint64_t clear, unsigned err)
{
	pf_count = 0;
	pf_err = pf_cr2 = 0;
	fix_idx = idx;
	fix_set = set;
	fix_clear = clear;
	long r = user ? catch_user(fn, (void *)va, USER_TOP, 0x2) : catch_call(fn, (void *)va);
	fix_idx = -1;
	check(r == -1 && pf_count == 1 && pf_err == err && pf_cr2 == va,
	      "%s: #PF error 0x%x cr2 0x%llx, %u fault(s), then %s (want error 0x%x cr2 0x%llx, "
	      "one fault, retry succeeds)",
	      what, (unsigned)pf_err, U64(pf_cr2), pf_count,
	      r == -1 ? "retry succeeded" : "it ended in a trap", err, U64(va));
}

/* An access that must not fault */
static void no_fault(const char *what, void (*fn)(void *), int user, uint64_t va)
{
	pf_count = 0;
	fix_idx = -1;
	long r = user ? catch_user(fn, (void *)va, USER_TOP, 0x2) : catch_call(fn, (void *)va);
	check(r == -1, "%s: no fault (vector %d error 0x%x cr2 0x%llx)", what, (int)r,
	      (unsigned)last_trap.error, U64(last_trap.cr2));
}

static unsigned maxphyaddr(void)
{
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000008u), "c"(0));
	return a & 0xff;
}

static void cpuid7(uint32_t *ebx)
{
	uint32_t a, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(*ebx), "=c"(c), "=d"(d) : "a"(7), "c"(0));
}

__asm__(".text\n.globl f_stac\nf_stac: stac\n clac\n ret\n");

static void set_cr4(void *v) { WRITE_CR(4, (uint64_t)v); }

void guest_main(const struct multiboot_info *mbi)
{
	sys_init(mbi);
	set_handler(14, pf_handler);
	for (int k = 0; k < NFRAMES; k++)
		for (int j = 0; j < 512; j++)
			((uint64_t *)frames[k])[j] = PATTERN(k);
	boot_pml4[1] = (uint64_t)t_pdpt | PG_P | PG_W | PG_U;
	t_pdpt[0] = (uint64_t)t_pd | PG_P | PG_W | PG_U;
	t_pd[0] = (uint64_t)t_pt | PG_P | PG_W | PG_U;
	WRITE_CR(3, READ_CR(3));
	printf("%s: test area at 0x%llx, PT at 0x%llx, MAXPHYADDR %u\n", sys_name, U64(TVA),
	       U64((uint64_t)t_pt), maxphyaddr());

	uint64_t cr0 = READ_CR(0);
	if (want("not_present")) {
		set_pte(0, 0);
		fault_fix("not-present read at CPL0", do_read, 0, VA(0) + 0x128, 0,
			  FRAME(0) | PG_P | PG_W, 0, 0);
		check(sink == PATTERN(0), "the retried read sees frame 0 (0x%llx)", U64(sink));
		set_pte(1, 0);
		wval = 0x1234;
		fault_fix("not-present write at CPL0", do_write, 0, VA(1) + 0x800, 1,
			  FRAME(1) | PG_P | PG_W, 0, PF_W);
		check(((uint64_t *)frames[1])[0x100] == 0x1234, "the retried write reached frame 1");
		set_pte(2, 0);
		fault_fix("not-present read at CPL3", do_read, 1, VA(2) + 0x10, 2,
			  FRAME(2) | PG_P | PG_W | PG_U, 0, PF_U);
		set_pte(2, 0);
		fault_fix("not-present write at CPL3", do_write, 1, VA(2) + 0x18, 2,
			  FRAME(2) | PG_P | PG_W | PG_U, 0, PF_U | PF_W);
		frames[3][0] = 0xc3; /* ret */
		set_pte(3, 0);
		fault_fix("not-present instruction fetch at CPL0", do_exec, 0, VA(3), 3,
			  FRAME(3) | PG_P, 0, PF_I);
	}
	if (want("read_only")) {
		WRITE_CR(0, cr0 | CR0_WP);
		set_pte(4, FRAME(4) | PG_P);
		wval = 0x5555;
		fault_fix("write to a read-only page at CPL0 with CR0.WP", do_write, 0, VA(4) + 8, 4,
			  PG_W, 0, PF_P | PF_W);
		check(((uint64_t *)frames[4])[1] == 0x5555, "the retried write reached frame 4");
		WRITE_CR(0, cr0 & ~CR0_WP);
		set_pte(4, FRAME(4) | PG_P);
		wval = 0x6666;
		no_fault("write to a read-only page at CPL0 without CR0.WP", do_write, 0, VA(4) + 16);
		check(((uint64_t *)frames[4])[2] == 0x6666, "the write without CR0.WP reached frame 4");
		set_pte(4, FRAME(4) | PG_P | PG_U);
		fault_fix("write to a read-only page at CPL3 (CR0.WP clear)", do_write, 1,
			  VA(4) + 24, 4, PG_W, 0, PF_P | PF_W | PF_U);
		WRITE_CR(0, cr0 | CR0_WP);
	}
	if (want("supervisor")) {
		set_pte(5, FRAME(5) | PG_P | PG_W);
		fault_fix("read of a supervisor page at CPL3", do_read, 1, VA(5) + 0x40, 5, PG_U, 0,
			  PF_P | PF_U);
		check(sink == PATTERN(5), "the retried user read sees frame 5");
		set_pte(5, FRAME(5) | PG_P | PG_W);
		fault_fix("write to a supervisor page at CPL3", do_write, 1, VA(5) + 0x48, 5, PG_U, 0,
			  PF_P | PF_W | PF_U);
		/* the U/S bit of a higher level counts too */
		set_pte(5, FRAME(5) | PG_P | PG_W | PG_U);
		t_pd[0] &= ~PG_U;
		WRITE_CR(3, READ_CR(3));
		pf_count = 0;
		long r = catch_user(do_read, (void *)(VA(5) + 0x50), USER_TOP, 0x2);
		check(r == 14 && pf_err == (PF_P | PF_U) && pf_cr2 == VA(5) + 0x50,
		      "user read through a supervisor PDE: #PF error 0x%x cr2 0x%llx",
		      (unsigned)pf_err, U64(pf_cr2));
		t_pd[0] |= PG_U;
		WRITE_CR(3, READ_CR(3));
	}
	if (want("nx")) {
		check(rdmsr(MSR_EFER) & EFER_NXE, "EFER.NXE is set");
		frames[6][0x20] = 0xc3;
		set_pte(6, FRAME(6) | PG_P | PG_NX);
		fault_fix("instruction fetch from an NX page", do_exec, 0, VA(6) + 0x20, 6, 0, PG_NX,
			  PF_P | PF_I);
		set_pte(6, FRAME(6) | PG_P | PG_NX);
		no_fault("read of an NX page", do_read, 0, VA(6) + 0x28);
	}
	if (want("reserved")) {
		unsigned m = maxphyaddr();
		if (m < 52) {
			uint64_t bit = 1ull << m;
			set_pte(7, FRAME(7) | PG_P | PG_W | bit);
			fault_fix("read through a PTE with reserved bit set (bit MAXPHYADDR)", do_read, 0,
				  VA(7) + 0x30, 7, 0, bit, PF_P | PF_RSVD);
			set_pte(7, FRAME(7) | PG_P | PG_W | bit);
			wval = 7;
			fault_fix("write through a PTE with reserved bit set", do_write, 0, VA(7) + 0x38, 7,
				  0, bit, PF_P | PF_W | PF_RSVD);
		} else {
			check(0, "MAXPHYADDR %u leaves no reserved PTE bit", m);
		}
	}
	if (want("accessed_dirty")) {
		t_pd[0] &= ~(PG_A | PG_D);
		set_pte(8, FRAME(0) | PG_P | PG_W);
		WRITE_CR(3, READ_CR(3));
		check(!(t_pt[8] & (PG_A | PG_D)), "fresh PTE has A and D clear");
		do_read((void *)VA(8));
		check((t_pt[8] & (PG_A | PG_D)) == PG_A, "a read sets A, not D (PTE 0x%llx)",
		      U64(t_pt[8]));
		check(t_pd[0] & PG_A, "the walk sets A in the PDE (0x%llx)", U64(t_pd[0]));
		wval = PATTERN(0);
		do_write((void *)VA(8));
		check((t_pt[8] & (PG_A | PG_D)) == (PG_A | PG_D), "a write sets D (PTE 0x%llx)",
		      U64(t_pt[8]));
		set_pte(9, FRAME(0) | PG_P | PG_W);
		do_write((void *)VA(9));
		check((t_pt[9] & (PG_A | PG_D)) == (PG_A | PG_D),
		      "a first write sets A and D (PTE 0x%llx)", U64(t_pt[9]));
	}
	if (want("invlpg")) {
		set_pte(10, FRAME(1) | PG_P | PG_W);
		do_read((void *)VA(10));
		check(sink == PATTERN(1), "page 10 -> frame 1 reads 0x%llx", U64(sink));
		t_pt[10] = FRAME(2) | PG_P | PG_W;
		invlpg(VA(10));
		do_read((void *)VA(10));
		check(sink == PATTERN(2), "after PTE change + INVLPG page 10 reads frame 2 (0x%llx)",
		      U64(sink));
	}
	if (want("cr3_reload")) {
		set_pte(11, FRAME(3) | PG_P | PG_W);
		do_read((void *)(VA(11) + 8));
		t_pt[11] = FRAME(4) | PG_P | PG_W;
		WRITE_CR(3, READ_CR(3));
		do_read((void *)(VA(11) + 0x800));
		check(sink == PATTERN(4), "after PTE change + CR3 reload page 11 reads frame 4 (0x%llx)",
		      U64(sink));
	}
	if (want("global")) {
		uint64_t cr4 = READ_CR(4);
		WRITE_CR(4, cr4 | CR4_PGE);
		set_pte(12, FRAME(5) | PG_P | PG_W | PG_G);
		do_read((void *)(VA(12) + 0x100));
		check(sink == PATTERN(5), "global page 12 -> frame 5");
		t_pt[12] = FRAME(6) | PG_P | PG_W | PG_G;
		WRITE_CR(4, cr4 & ~CR4_PGE);
		WRITE_CR(4, cr4 | CR4_PGE);
		do_read((void *)(VA(12) + 0x100));
		check(sink == PATTERN(6), "toggling CR4.PGE flushes the global entry: frame 6 (0x%llx)",
		      U64(sink));
		WRITE_CR(4, cr4);
	}
	if (want("smep_smap")) {
		uint32_t ebx;
		cpuid7(&ebx);
		uint64_t cr4 = READ_CR(4);
		const uint64_t SMEP = 1ull << 20, SMAP = 1ull << 21;
		frames[3][0x40] = 0xc3;
		set_pte(13, FRAME(3) | PG_P | PG_W | PG_U);
		/* the 1:1 map (code, data, stacks) supervisor-only meanwhile */
		boot_pml4[0] &= ~PG_U;
		WRITE_CR(3, READ_CR(3));
		if (ebx & (1u << 7)) {
			WRITE_CR(4, cr4 | SMEP);
			pf_count = 0;
			long r = catch_call(do_exec, (void *)(VA(13) + 0x40));
			check(r == 14 && pf_err == (PF_P | PF_I) && pf_cr2 == VA(13) + 0x40,
			      "SMEP: CPL0 fetch from a user page: #PF error 0x%x", (unsigned)pf_err);
			WRITE_CR(4, cr4);
		} else {
			long r = catch_call(set_cr4, (void *)(cr4 | SMEP));
			check(r == 13, "SMEP not advertised: setting CR4.SMEP raises #GP (vector %d)",
			      (int)r);
		}
		if (ebx & (1u << 20)) {
			WRITE_CR(4, cr4 | SMAP);
			pf_count = 0;
			long r = catch_call(do_read, (void *)(VA(13) + 0x48));
			check(r == 14 && pf_err == PF_P && pf_cr2 == VA(13) + 0x48,
			      "SMAP: CPL0 read of a user page: #PF error 0x%x", (unsigned)pf_err);
			WRITE_CR(4, cr4);
		} else {
			long r = catch_call(set_cr4, (void *)(cr4 | SMAP));
			check(r == 13, "SMAP not advertised: setting CR4.SMAP raises #GP (vector %d)",
			      (int)r);
		}
		boot_pml4[0] |= PG_U;
		WRITE_CR(3, READ_CR(3));
	}
	if (want("smap_stac")) {
		uint32_t ebx;
		cpuid7(&ebx);
		if (ebx & (1u << 20)) {
			uint64_t cr4 = READ_CR(4);
			set_pte(13, FRAME(3) | PG_P | PG_W | PG_U);
			boot_pml4[0] &= ~PG_U;
			WRITE_CR(3, READ_CR(3));
			WRITE_CR(4, cr4 | (1ull << 21));
			__asm__ volatile("stac");
			long r = catch_call(do_read, (void *)(VA(13) + 0x48));
			__asm__ volatile("clac");
			check(r == -1, "SMAP: CPL0 read of a user page allowed after STAC (vector %d)",
			      (int)r);
			r = catch_call(do_read, (void *)(VA(13) + 0x48));
			check(r == 14, "SMAP: refused again after CLAC (vector %d)", (int)r);
			WRITE_CR(4, cr4);
			boot_pml4[0] |= PG_U;
			WRITE_CR(3, READ_CR(3));
		} else {
			extern char f_stac[];
			long r = catch_call((void (*)(void *))f_stac, NULL);
			check(r == 6, "SMAP not advertised: STAC raises #UD (vector %d)", (int)r);
		}
	}
	if (want("large_page")) {
		/* TVA + 2 MiB -> physical 16 MiB as one 2 MiB page */
		const uint64_t phys = 16ull << 20;
		volatile uint64_t *direct = (volatile uint64_t *)(phys + 0x12340);
		*direct = 0xfeedface12345678ull;
		direct[0x1000 / 8] = 0x0badcafe;
		t_pd[1] = phys | PG_P | PG_W | PG_PS;
		invlpg(TVA + (2ull << 20) + 0x12000);
		volatile uint64_t *alias = (volatile uint64_t *)(TVA + (2ull << 20) + 0x12340);
		check(*alias == 0xfeedface12345678ull, "2 MiB page maps 16 MiB: read 0x%llx",
		      U64(*alias));
		check(alias[0x1000 / 8] == 0x0badcafe, "2 MiB page: the next 4 KiB is contiguous");
		alias[1] = 0x77;
		check(direct[1] == 0x77, "write through the 2 MiB page reaches 16 MiB");
		check((t_pd[1] & (PG_A | PG_D)) == (PG_A | PG_D), "A and D set in the 2 MiB PDE (0x%llx)",
		      U64(t_pd[1]));
		t_pd[1] = 0;
		invlpg(TVA + (2ull << 20));
		pf_count = 0;
		long r = catch_call(do_read, (void *)(TVA + (2ull << 20) + 0x12340));
		check(r == 14 && pf_err == 0 && pf_cr2 == TVA + (2ull << 20) + 0x12340,
		      "2 MiB page unmapped + INVLPG: #PF error 0x%x", (unsigned)pf_err);
	}
	WRITE_CR(0, cr0);
	sys_finish();
}
