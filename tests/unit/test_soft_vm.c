/* The soft engine inside a VM: HLT sleeps without spinning, an interrupt
 * raised from another thread wakes the vCPU and is delivered through the
 * IDT, port I/O reaches the bus, and a stop request ends vcpu_run. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/soft/soft.h"
#include "vmm/bus.h"
#include "vmm/vm.h"

/* 64-bit at 0x10000:
 * sti
 * 1: hlt
 * jmp 1b
 * .org 0x40
 * handler: mov al, 0x5a
 * out 0xe9, al
 * iretq
 */
static const uint8_t code_vm_idle[] = {
	0xfb, 0xf4, 0xeb, 0xfd, [0x40] = 0xb0, 0x5a, 0xe6, 0xe9, 0x48, 0xcf,
};

struct port_log {
	_Atomic int count;
	_Atomic int last;
};

static void port_write(void *opaque, uint64_t off, unsigned size, uint64_t v)
{
	(void)off;
	(void)size;
	struct port_log *l = opaque;
	atomic_store(&l->last, (int)v);
	atomic_fetch_add(&l->count, 1);
}

static void *vcpu_main(void *arg)
{
	struct vcpu *vcpu = arg;
	while (!vm_should_stop(vcpu->vm))
		cr_assert_eq(soft_engine.vcpu_run(vcpu), 0);
	return NULL;
}

static void w64(struct vm *vm, uint64_t gpa, uint64_t v)
{
	cr_assert_eq(gm_write(&vm->mem, gpa, &v, 8), 0);
}

static bool wait_count(struct port_log *l, int n)
{
	for (int i = 0; i < 2000; i++) {
		if (atomic_load(&l->count) >= n)
			return true;
		usleep(1000);
	}
	return false;
}

static double cpu_seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* 64-bit at 0x10000: the LAPIC timer in periodic mode, EOI from the handler
 * mov eax, 0xfee00000
 * mov dword ptr [rax + 0xf0], 0x1ff
 * mov dword ptr [rax + 0x3e0], 0xb
 * mov dword ptr [rax + 0x320], 0x20040
 * mov dword ptr [rax + 0x380], 200000
 * sti
 * 1: hlt
 * jmp 1b
 * .org 0x40
 * handler:
 * push rax
 * mov al, 0x5a
 * out 0xe9, al
 * mov eax, 0xfee00000
 * mov dword ptr [rax + 0xb0], 0
 * pop rax
 * iretq
 */
static const uint8_t code_lapic_timer[] = {
	0xb8, 0x00, 0x00, 0xe0, 0xfe, 0xc7, 0x80, 0xf0, 0x00, 0x00, 0x00, 0xff,
	0x01, 0x00, 0x00, 0xc7, 0x80, 0xe0, 0x03, 0x00, 0x00, 0x0b, 0x00, 0x00,
	0x00, 0xc7, 0x80, 0x20, 0x03, 0x00, 0x00, 0x40, 0x00, 0x02, 0x00, 0xc7,
	0x80, 0x80, 0x03, 0x00, 0x00, 0x40, 0x0d, 0x03, 0x00, 0xfb, 0xf4, 0xeb,
	0xfd,
	[0x40] = 0x50, 0xb0, 0x5a, 0xe6, 0xe9, 0xb8, 0x00, 0x00,
	0xe0, 0xfe, 0xc7, 0x80, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x58, 0x48, 0xcf,
};

static struct vm vm;
static struct vcpu vcpu;
static struct port_log port_log;

/* A one-vCPU VM on the soft engine in long mode: identity map of the first
 * 2 MiB and of 3-4 GiB (a 1 GiB page: LAPIC and IOAPIC), IDT gate 0x40 at
 * code + 0x40, a port-0xe9 logger. */
static void vm_setup(const uint8_t *code, size_t len)
{
	memset(&vm, 0, sizeof(vm));
	memset(&vcpu, 0, sizeof(vcpu));
	memset(&port_log, 0, sizeof(port_log));
	atomic_init(&vm.stop_reason, VM_RUNNING);
	vm.engine = &soft_engine;
	bus_init(&vm.pio, "pio");
	bus_init(&vm.mmio, "mmio");
	cr_assert_eq(guest_memory_init(&vm.mem, 4 << 20), 0);
	vcpu.vm = &vm;
	vm.vcpus = &vcpu;
	vm.nr_vcpus = 1;
	cr_assert_eq(bus_register(&vm.pio, 0xe9, 1, NULL, port_write, &port_log, "log"), 0);
	cr_assert_eq(soft_engine.vm_init(&vm), 0);
	cr_assert_eq(soft_engine.vcpu_init(&vcpu), 0);

	w64(&vm, 0x1000, 0x2000 | 3);
	w64(&vm, 0x2000, 0x3000 | 3);
	w64(&vm, 0x2018, 0xc0000000ULL | 0x83);
	w64(&vm, 0x3000, 0x83);
	w64(&vm, 0x6008, 0x00af9a000000ffffULL);
	w64(&vm, 0x6010, 0x00cf92000000ffffULL);
	uint64_t h = 0x10040;
	w64(&vm, 0x5000 + 0x40 * 16, (h & 0xffff) | (0x08ULL << 16) | (0x8eULL << 40) | ((h >> 16) << 48));
	cr_assert_eq(gm_write(&vm.mem, 0x10000, code, len), 0);
	struct cpu_state st;
	memset(&st, 0, sizeof(st));
	st.cr0 = CR0_PE | CR0_ET | CR0_PG;
	st.cr3 = 0x1000;
	st.cr4 = CR4_PAE;
	st.efer = EFER_LME | EFER_LMA;
	st.seg[SEG_CS] = (struct segment){ .limit = 0xffffffff, .selector = 8, .type = 0xb, .s = 1, .present = 1, .l = 1, .g = 1 };
	st.seg[SEG_SS] = (struct segment){ .limit = 0xffffffff, .selector = 0x10, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1 };
	st.seg[SEG_DS] = st.seg[SEG_ES] = st.seg[SEG_SS];
	st.seg[SEG_TR] = (struct segment){ .limit = 0x67, .type = 0xb, .present = 1 };
	st.gdt = (struct dtable){ 0x6000, 0x17 };
	st.idt = (struct dtable){ 0x5000, 0xfff };
	st.rflags = 2;
	st.gpr[RSP] = 0x80000;
	st.rip = 0x10000;
	cr_assert_eq(soft_engine.vcpu_set_state(&vcpu, &st), 0);
}

static void vm_teardown(void)
{
	soft_engine.vcpu_destroy(&vcpu);
	soft_engine.vm_destroy(&vm);
	guest_memory_destroy(&vm.mem);
	bus_destroy(&vm.pio);
	bus_destroy(&vm.mmio);
}

Test(soft_vm, hlt_sleeps_and_interrupt_wakes)
{
	vm_setup(code_vm_idle, sizeof(code_vm_idle));
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, vcpu_main, &vcpu), 0);
	usleep(20000);
	double c0 = cpu_seconds();
	usleep(100000);
	double idle = cpu_seconds() - c0;
	cr_expect_lt(idle, 0.03, "halted vCPU used %.3f s of CPU in 0.1 s", idle);
	cr_assert_eq(atomic_load(&port_log.count), 0);

	soft_vcpu_raise_intr(&vcpu, 0x40);
	cr_assert(wait_count(&port_log, 1), "interrupt not delivered");
	cr_assert_eq(atomic_load(&port_log.last), 0x5a);
	soft_vcpu_raise_intr(&vcpu, 0x40);
	cr_assert(wait_count(&port_log, 2), "second interrupt not delivered");

	vm_request_stop(&vm, VM_STOP_POWEROFF, 0);
	pthread_join(t, NULL);
	struct cpu_state st;
	soft_engine.vcpu_get_state(&vcpu, &st);
	cr_assert(st.halted);
	cr_assert_eq(st.rip, 0x10002);
	vm_teardown();
}

Test(soft_vm, lapic_timer_wakes_halted_vcpu)
{
	vm_setup(code_lapic_timer, sizeof(code_lapic_timer));
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, vcpu_main, &vcpu), 0);
	/* 200000 ticks of the LAPIC clock (TSC/16): well under a millisecond */
	cr_assert(wait_count(&port_log, 5), "LAPIC timer interrupts: %d", atomic_load(&port_log.count));
	vm_request_stop(&vm, VM_STOP_POWEROFF, 0);
	pthread_join(t, NULL);
	vm_teardown();
}

/* 64-bit at 0x10000: print a byte, halt, repeat; IRETQ handler at 0x40
 * sti
 * 1: mov al, 0x11
 * out 0xe9, al
 * hlt
 * jmp 1b
 * .org 0x40
 * iretq
 */
static const uint8_t code_print_loop[] = {
	0xfb, 0xb0, 0x11, 0xe6, 0xe9, 0xf4, 0xeb, 0xf9,
	[0x40] = 0x48, 0xcf,
};

Test(soft_vm, device_write_drops_decoded_code)
{
	vm_setup(code_print_loop, sizeof(code_print_loop));
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, vcpu_main, &vcpu), 0);
	cr_assert(wait_count(&port_log, 1));
	cr_assert_eq(atomic_load(&port_log.last), 0x11);
	/* a "device" rewrites the immediate behind the vCPU's back */
	uint8_t v = 0x22;
	usleep(10000); /* let it reach HLT */
	cr_assert_eq(gm_write(&vm.mem, 0x10002, &v, 1), 0);
	soft_engine.mem_written(&vm, 0x10002, 1);
	soft_vcpu_raise_intr(&vcpu, 0x40);
	cr_assert(wait_count(&port_log, 2));
	cr_assert_eq(atomic_load(&port_log.last), 0x22, "stale code ran");
	vm_request_stop(&vm, VM_STOP_POWEROFF, 0);
	pthread_join(t, NULL);
	vm_teardown();
}
