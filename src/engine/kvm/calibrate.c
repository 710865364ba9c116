/* A tiny throwaway VM that tells how fast guest CPL0 code runs on this
 * host's KVM, for `--engine auto`, and a raw exit loop for bench/. Nothing
 * here touches a struct vm: plain ioctls on a one-page guest. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine/kvm/kvm.h"
#include "engine/kvm/kvm_priv.h"

#define CAL_PORT 0xE9

/* At 0, the calibration loop: dec %ecx; jnz 0; out %al, $CAL_PORT.
 * At EXIT_LOOP, the exit benchmark: out %al, $CAL_PORT; jmp EXIT_LOOP. */
#define EXIT_LOOP 0x10
static const uint8_t cal_code[] = {
	0x49,             /* 0x00 dec %ecx */
	0x75, 0xFD,       /* 0x01 jnz 0x00 */
	0xE6, CAL_PORT,   /* 0x03 out %al, $0xE9 */
	0xF4,             /* 0x05 hlt (never reached: the OUT exits first) */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0xE6, CAL_PORT,   /* 0x10 out %al, $0xE9 */
	0xEB, 0xFC,       /* 0x12 jmp 0x10 */
};

struct tiny_vm {
	int sys, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	void *mem;
};

static void tiny_destroy(struct tiny_vm *t)
{
	if (t->run)
		munmap(t->run, t->run_size);
	if (t->mem)
		munmap(t->mem, 4096);
	if (t->vcpu >= 0)
		close(t->vcpu);
	if (t->vm >= 0)
		close(t->vm);
	if (t->sys >= 0)
		close(t->sys);
}

static int tiny_create(struct tiny_vm *t, char *why, size_t len)
{
	memset(t, 0, sizeof(*t));
	t->vm = t->vcpu = -1;
	t->sys = kvm_open_checked(why, len);
	if (t->sys < 0)
		return t->sys;
	const char *step = "KVM_CREATE_VM";
	t->vm = ioctl(t->sys, KVM_CREATE_VM, 0);
	if (t->vm < 0)
		goto fail;
	step = "KVM_SET_TSS_ADDR";
	if (ioctl(t->vm, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)
		goto fail;
	step = "mmap";
	t->mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->mem == MAP_FAILED) {
		t->mem = NULL;
		goto fail;
	}
	memcpy(t->mem, cal_code, sizeof(cal_code));
	struct kvm_userspace_memory_region slot = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = 4096,
		.userspace_addr = (uint64_t)(uintptr_t)t->mem,
	};
	step = "KVM_SET_USER_MEMORY_REGION";
	if (ioctl(t->vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		goto fail;
	step = "KVM_CREATE_VCPU";
	t->vcpu = ioctl(t->vm, KVM_CREATE_VCPU, 0);
	if (t->vcpu < 0)
		goto fail;
	step = "KVM_GET_VCPU_MMAP_SIZE";
	int sz = ioctl(t->sys, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0)
		goto fail;
	t->run_size = (size_t)sz;
	step = "mmap kvm_run";
	t->run = mmap(NULL, t->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, t->vcpu, 0);
	if (t->run == MAP_FAILED) {
		t->run = NULL;
		goto fail;
	}
	/* flat 32-bit protected mode, paging off, CPL0 */
	struct kvm_sregs sr;
	step = "KVM_GET_SREGS";
	if (ioctl(t->vcpu, KVM_GET_SREGS, &sr) < 0)
		goto fail;
	struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 8, .type = 0xb,
				    .present = 1, .dpl = 0, .db = 1, .s = 1, .g = 1 };
	struct kvm_segment data = code;
	data.selector = 16;
	data.type = 0x3;
	sr.cs = code;
	sr.ds = sr.es = sr.fs = sr.gs = sr.ss = data;
	sr.cr0 = 0x11; /* PE | ET */
	sr.cr4 = 0;
	sr.efer = 0;
	step = "KVM_SET_SREGS";
	if (ioctl(t->vcpu, KVM_SET_SREGS, &sr) < 0)
		goto fail;
	return 0;
fail: {
	int err = errno ? errno : EIO;
	snprintf(why, len, "kvm calibration: %s failed: %s", step, strerror(err));
	tiny_destroy(t);
	return -err;
}
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Run from RIP 0 with ECX = n until the OUT; KVM_RUN time in *ns. */
static int run_loop(struct tiny_vm *t, uint32_t n, uint64_t *ns, char *why, size_t len)
{
	struct kvm_regs r = { .rip = 0, .rcx = n, .rflags = 2 };
	if (ioctl(t->vcpu, KVM_SET_REGS, &r) < 0) {
		snprintf(why, len, "kvm calibration: KVM_SET_REGS failed: %s", strerror(errno));
		return -errno;
	}
	uint64_t t0 = now_ns();
	int ret = ioctl(t->vcpu, KVM_RUN, 0);
	uint64_t t1 = now_ns();
	if (ret < 0) {
		int err = errno;
		snprintf(why, len, "kvm calibration: KVM_RUN failed: %s", strerror(err));
		return -err;
	}
	if (t->run->exit_reason != KVM_EXIT_IO || t->run->io.port != CAL_PORT) {
		snprintf(why, len, "kvm calibration: the guest stopped with exit %u, not its OUT",
			 t->run->exit_reason);
		return -EIO;
	}
	*ns = t1 - t0;
	return 0;
}

int kvm_calibrate(struct kvm_calibration *c, char *why, size_t why_len)
{
	struct tiny_vm t;
	int ret = tiny_create(&t, why, why_len);
	if (ret)
		return ret;
	enum { LOOP = 20000 };
	uint64_t base = 0, loop = 0, warm;
	/* the first entry pays for setting the vCPU up: run it untimed */
	if ((ret = run_loop(&t, 1, &warm, why, why_len)) ||
	    (ret = run_loop(&t, 1, &base, why, why_len)) ||
	    (ret = run_loop(&t, LOOP, &loop, why, why_len)))
		goto out;
	memset(c, 0, sizeof(*c));
	c->insns = 2ull * LOOP;
	c->loop_ns = loop;
	c->base_ns = base;
	uint64_t ns = loop > base ? loop - base : 1;
	c->mips = (double)c->insns * 1000.0 / (double)ns;
out:
	tiny_destroy(&t);
	return ret;
}

int kvm_raw_exit_bench(unsigned iterations, double *ns_per_exit, char *why, size_t why_len)
{
	struct tiny_vm t;
	int ret = tiny_create(&t, why, why_len);
	if (ret)
		return ret;
	struct kvm_regs r = { .rip = EXIT_LOOP, .rflags = 2 };
	if (ioctl(t.vcpu, KVM_SET_REGS, &r) < 0) {
		ret = -errno;
		snprintf(why, why_len, "raw exit loop: KVM_SET_REGS failed: %s", strerror(errno));
		goto out;
	}
	uint64_t t0 = 0;
	unsigned warmup = iterations / 10 + 1;
	for (unsigned i = 0; i < warmup + iterations; i++) {
		if (i == warmup)
			t0 = now_ns();
		if (ioctl(t.vcpu, KVM_RUN, 0) < 0 || t.run->exit_reason != KVM_EXIT_IO) {
			snprintf(why, why_len, "raw exit loop: KVM_RUN stopped unexpectedly");
			ret = -EIO;
			goto out;
		}
	}
	*ns_per_exit = (double)(now_ns() - t0) / (iterations ? iterations : 1);
out:
	tiny_destroy(&t);
	return ret;
}
