/* The 64-bit system test guests' library: IDT, TSS, trap dispatch, checks
 * and the command line's only=/skip= parts. See sys_lib.h. */
#include "sys_lib.h"

struct idt_gate {
	uint16_t off0, sel;
	uint8_t ist, attr;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
static trap_fn handlers[256];
struct tss64 tss __attribute__((aligned(16)));
uint8_t ist_stack[4][8192] __attribute__((aligned(16)));
volatile struct trap_info last_trap;
volatile unsigned trap_count;
static unsigned passed, failed;
static char cmdline[256];

extern char isr_stubs[];
extern void catch_landing(void);
extern uint64_t catch_rsp;
extern uint32_t catch_active;

uint64_t stub_addr(unsigned vec)
{
	return (uint64_t)isr_stubs + 16 * vec;
}

void set_gate_addr(unsigned vec, uint64_t h, unsigned ist, unsigned dpl, int present)
{
	idt[vec] = (struct idt_gate){
		.off0 = (uint16_t)h, .sel = SEL_KCODE, .ist = (uint8_t)ist,
		.attr = (uint8_t)((present ? 0x80 : 0) | (dpl << 5) | 0xE),
		.off1 = (uint16_t)(h >> 16), .off2 = (uint32_t)(h >> 32),
	};
}

void set_gate(unsigned vec, unsigned ist, unsigned dpl, int present, int trap_gate)
{
	set_gate_addr(vec, stub_addr(vec), ist, dpl, present);
	if (trap_gate)
		idt[vec].attr |= 1; /* 0xF: trap gate, IF stays as it was */
}

void set_handler(unsigned vec, trap_fn fn)
{
	handlers[vec & 255] = fn;
}

void allow_port(uint16_t port, int allow)
{
	if (allow)
		tss.iomap[port / 8] &= (uint8_t)~(1u << (port % 8));
	else
		tss.iomap[port / 8] |= (uint8_t)(1u << (port % 8));
}

void trap_land(struct trap_frame *f)
{
	f->rip = (uint64_t)catch_landing;
	f->cs = SEL_KCODE;
	f->ss = SEL_KDATA;
	f->rsp = catch_rsp;
	f->rflags = 0x2;
}

void trap_dispatch(struct trap_frame *f);
void trap_dispatch(struct trap_frame *f)
{
	last_trap.vector = f->vector;
	last_trap.error = f->error;
	last_trap.rip = f->rip;
	last_trap.cs = f->cs;
	last_trap.rflags = f->rflags;
	last_trap.rsp = f->rsp;
	last_trap.ss = f->ss;
	last_trap.cr2 = READ_CR(2);
	last_trap.frame = (uint64_t)f;
	trap_count++;
	if (handlers[f->vector & 255]) {
		handlers[f->vector & 255](f);
		return;
	}
	if (catch_active) {
		trap_land(f);
		return;
	}
	printf("%s: FAIL: unexpected trap: vector %u error 0x%x rip 0x%llx cs 0x%x cr2 0x%llx\n",
	       sys_name, (unsigned)f->vector, (unsigned)f->error, U64(f->rip), (unsigned)f->cs,
	       U64(last_trap.cr2));
	failed++;
	sys_finish();
}

void sys_init(const struct multiboot_info *mbi)
{
	if (mbi->flags & (1u << 2)) {
		const char *s = (const char *)(uint64_t)mbi->cmdline;
		size_t i = 0;
		for (; s[i] && i < sizeof(cmdline) - 1; i++)
			cmdline[i] = s[i];
		cmdline[i] = 0;
	}
	for (unsigned v = 0; v < 256; v++)
		set_gate(v, 0, 0, 1, 0);
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d = { sizeof(idt) - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" :: "m"(d));

	memset(&tss, 0, sizeof(tss));
	tss.rsp[0] = IST_TOP(3);
	tss.ist[1] = IST_TOP(0);
	tss.ist[2] = IST_TOP(1);
	tss.ist[3] = IST_TOP(2);
	tss.iomap_base = (uint16_t)__builtin_offsetof(struct tss64, iomap);
	memset(tss.iomap, 0xff, sizeof(tss.iomap));
	uint64_t base = (uint64_t)&tss, limit = sizeof(tss) - 1;
	gdt64[SEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
			     (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt64[SEL_TSS / 8 + 1] = base >> 32;
	__asm__ volatile("ltr %w0" :: "r"(SEL_TSS));
}

/* Is word w (ended by ',', ' ' or NUL) in the comma list at s? */
static int in_list(const char *s, const char *w)
{
	size_t n = strlen(w);
	while (*s && *s != ' ') {
		if (!memcmp(s, w, n) && (s[n] == ',' || s[n] == ' ' || !s[n]))
			return 1;
		while (*s && *s != ',' && *s != ' ')
			s++;
		if (*s == ',')
			s++;
	}
	return 0;
}

static const char *option(const char *key)
{
	size_t n = strlen(key);
	for (const char *s = cmdline; *s;) {
		if (!memcmp(s, key, n))
			return s + n;
		while (*s && *s != ' ')
			s++;
		while (*s == ' ')
			s++;
	}
	return NULL;
}

int want(const char *part)
{
	const char *only = option("only="), *skip = option("skip=");
	if ((only && !in_list(only, part)) || (skip && in_list(skip, part))) {
		printf("%s: SKIP: %s (command line)\n", sys_name, part);
		return 0;
	}
	printf("%s: --- %s\n", sys_name, part);
	return 1;
}

void check(int ok, const char *fmt, ...)
{
	va_list ap;
	printf("%s: %s: ", sys_name, ok ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	puts("\n");
	if (ok)
		passed++;
	else
		failed++;
}

void sys_finish(void)
{
	printf("%s: done: %u passed, %u failed\n", sys_name, passed, failed);
	guest_exit(failed ? GUEST_FAIL : GUEST_OK);
}
