/* The kvm engine's standalone pieces: calibration and the raw exit loop.
 * They need /dev/kvm; without it they check the error message instead. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/kvm/kvm.h"

static bool have_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

Test(kvm_engine, probe_says_why)
{
	char why[256] = "";
	int ret = kvm_engine.probe(why, sizeof(why));
	if (have_kvm()) {
		cr_assert_eq(ret, 0, "%s", why);
	} else {
		cr_assert_lt(ret, 0);
		cr_assert(strstr(why, "/dev/kvm"), "%s", why);
	}
}

Test(kvm_engine, calibration)
{
	struct kvm_calibration c;
	char why[256] = "";
	if (!have_kvm()) {
		cr_assert_lt(kvm_calibrate(&c, why, sizeof(why)), 0);
		cr_assert(strstr(why, "/dev/kvm"), "%s", why);
		return;
	}
	cr_assert_eq(kvm_calibrate(&c, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(c.insns, 40000);
	cr_assert_gt(c.loop_ns, 0);
	cr_assert_gt(c.mips, 0.1, "%.2f MIPS", c.mips);
}

Test(kvm_engine, raw_exit_loop)
{
	double ns = 0;
	char why[256] = "";
	if (!have_kvm())
		cr_skip_test("no usable /dev/kvm");
	cr_assert_eq(kvm_raw_exit_bench(200, &ns, why, sizeof(why)), 0, "%s", why);
	cr_assert_gt(ns, 0.0);
	cr_assert_lt(ns, 10e6, "an exit should not take 10 ms: %.0f ns", ns);
}

#include "vmm/vm.h"

/* A VM made the normal way (vm_create with the kvm engine), no loader. */
static struct vm *make_vm(struct vm_config *cfg, unsigned cpus)
{
	vm_config_defaults(cfg);
	cfg->mem_size = 16ull << 20;
	cfg->nr_cpus = cpus;
	cfg->serial = SERIAL_NONE;
	cfg->engine = ENGINE_KVM;
	struct vm *vm = calloc(1, sizeof(*vm));
	cr_assert_not_null(vm);
	cr_assert_eq(vm_create(vm, cfg, &kvm_engine), 0);
	return vm;
}

static void flat32(struct cpu_state *st, uint64_t rip)
{
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < SEG_LDTR; i++)
		st->seg[i] = (struct segment){ .limit = 0xffffffff, .selector = 0x10, .type = 0x3,
					       .s = 1, .present = 1, .db = 1, .g = 1 };
	st->seg[SEG_CS].selector = 0x08;
	st->seg[SEG_CS].type = 0xb;
	st->seg[SEG_LDTR] = (struct segment){ .type = 2, .present = 1, .limit = 0xffff };
	st->seg[SEG_TR] = (struct segment){ .type = 11, .present = 1, .limit = 0xffff };
	st->cr0 = CR0_PE | CR0_ET;
	st->rflags = RFLAGS_FIXED;
	st->rip = rip;
}

Test(kvm_engine, state_round_trip)
{
	if (!have_kvm())
		cr_skip_test("no usable /dev/kvm");
	struct vm_config cfg;
	struct vm *vm = make_vm(&cfg, 2);
	struct cpu_state st, got;
	flat32(&st, 0x1000);
	for (int i = 0; i < 16; i++)
		st.gpr[i] = 0x1111111111111111ull * (uint64_t)(i + 1) & 0xffffffffull;
	st.gdt = (struct dtable){ 0x2000, 0x27 };
	st.idt = (struct dtable){ 0x3000, 0x7ff };
	st.cr2 = 0xdead000;
	st.msr.star = 0x0023001000000000ull;
	st.msr.lstar = 0xffffffff81000000ull;
	st.msr.sfmask = 0x47700;
	st.msr.kernel_gs_base = 0x12345000;
	st.msr.sysenter_cs = 0x10;
	st.fx.fcw = 0x27f;
	st.fx.mxcsr = 0x1fa0;
	memset(st.fx.xmm[3], 0xab, 16);
	st.xcr0 = 3;
	cr_assert_eq(kvm_engine.vcpu_set_state(&vm->vcpus[0], &st), 0);
	cr_assert_eq(kvm_engine.vcpu_get_state(&vm->vcpus[0], &got), 0);
	cr_assert_eq(memcmp(got.gpr, st.gpr, sizeof(st.gpr)), 0);
	cr_assert_eq(got.rip, 0x1000);
	cr_assert_eq(got.cr0 & (CR0_PE | CR0_PG), CR0_PE);
	cr_assert_eq(got.cr2, 0xdead000);
	cr_assert_eq(got.gdt.base, 0x2000);
	cr_assert_eq(got.gdt.limit, 0x27);
	cr_assert_eq(got.idt.limit, 0x7ff);
	cr_assert_eq(got.seg[SEG_CS].selector, 0x08);
	cr_assert_eq(got.seg[SEG_CS].db, 1);
	cr_assert_eq(got.seg[SEG_CS].limit, 0xffffffff);
	cr_assert_eq(got.msr.star, st.msr.star);
	cr_assert_eq(got.msr.lstar, st.msr.lstar);
	cr_assert_eq(got.msr.sfmask, st.msr.sfmask);
	cr_assert_eq(got.msr.kernel_gs_base, st.msr.kernel_gs_base);
	cr_assert_eq(got.msr.sysenter_cs, 0x10);
	cr_assert_eq(got.msr.apic_base & ~0xfffull, 0xFEE00000ull);
	cr_assert(got.msr.apic_base & (1 << 8), "vCPU 0 is the BSP");
	cr_assert_eq(got.fx.fcw, 0x27f);
	cr_assert_eq(got.fx.mxcsr, 0x1fa0, "mxcsr 0x%x xmm3[0] 0x%x fcw 0x%x", got.fx.mxcsr, got.fx.xmm[3][0], got.fx.fcw);
	cr_assert_eq(memcmp(got.fx.xmm[3], st.fx.xmm[3], 16), 0);
	cr_assert_eq(got.xcr0, 3);
	cr_assert(!got.wait_for_sipi && !got.halted);

	/* an AP waiting for SIPI keeps that state */
	st.wait_for_sipi = true;
	cr_assert_eq(kvm_engine.vcpu_set_state(&vm->vcpus[1], &st), 0);
	cr_assert_eq(kvm_engine.vcpu_get_state(&vm->vcpus[1], &got), 0);
	cr_assert(got.wait_for_sipi);
	cr_assert_eq(got.msr.apic_base & (1 << 8), 0, "vCPU 1 is no BSP");
	vm_destroy(vm);
	free(vm);
}

struct io_seen {
	struct vm *vm;
	unsigned writes;
	uint64_t val[8];
	unsigned size[8];
};

static void seen_write(void *opaque, uint64_t off, unsigned size, uint64_t v)
{
	struct io_seen *s = opaque;
	(void)off;
	if (s->writes < 8) {
		s->val[s->writes] = v;
		s->size[s->writes] = size;
	}
	if (++s->writes == 3)
		vm_request_stop(s->vm, VM_STOP_POWEROFF, 0);
}

static uint64_t seen_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque;
	(void)size;
	return 0x40 + off;
}

Test(kvm_engine, run_dispatches_port_io)
{
	if (!have_kvm())
		cr_skip_test("no usable /dev/kvm");
	struct vm_config cfg;
	struct vm *vm = make_vm(&cfg, 1);
	/* in $0xE9 -> al; out al,$0xE8; mov $0x1234,%ax; out %ax,$0xE8;
	 * mov $2,%ecx; mov $0xE8,%dx; mov $src,%esi; rep outsb; hlt
	 * (ports 0xE8/0xE9: nothing else of a kite PC lives there) */
	static const uint8_t code[] = {
		0xE4, 0xE9, 0xE6, 0xE8, 0x66, 0xB8, 0x34, 0x12, 0x66, 0xE7, 0xE8,
		0xB9, 0x02, 0x00, 0x00, 0x00, 0x66, 0xBA, 0xE8, 0x00,
		0xBE, 0x00, 0x11, 0x00, 0x00, 0xF3, 0x6E, 0xF4,
	};
	static const uint8_t src[2] = { 0x77, 0x99 };
	cr_assert_eq(gm_write(&vm->mem, 0x1000, code, sizeof(code)), 0);
	cr_assert_eq(gm_write(&vm->mem, 0x1100, src, sizeof(src)), 0);
	struct io_seen s = { .vm = vm };
	cr_assert_eq(bus_register(&vm->pio, 0xE8, 2, seen_read, seen_write, &s, "test"), 0);
	struct cpu_state st;
	flat32(&st, 0x1000);
	cr_assert_eq(kvm_engine.vcpu_set_state(&vm->vcpus[0], &st), 0);
	for (int i = 0; i < 100 && !vm_should_stop(vm); i++)
		cr_assert_eq(kvm_engine.vcpu_run(&vm->vcpus[0]), 0);
	cr_assert(vm_should_stop(vm));
	/* 1: the byte read from 0xE9 (0x40 + offset 1); 2: 0x1234; rep outsb: 0x77, 0x99
	 * (the stop request comes at the third write: 0x77) */
	cr_assert_geq(s.writes, 3);
	cr_assert_eq(s.val[0], 0x40 + 1, "IN from 0xE9 is offset 1 of the range");
	cr_assert_eq(s.size[0], 1);
	cr_assert_eq(s.val[1], 0x1234);
	cr_assert_eq(s.size[1], 2);
	cr_assert_eq(s.val[2], 0x77);
	if (s.writes > 3) /* string I/O arrives as one exit with count 2 */
		cr_assert_eq(s.val[3], 0x99);
	vm_destroy(vm);
	free(vm);
}
