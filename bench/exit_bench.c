/* bench (b): the cost of one port-I/O exit through kite against a raw
 * KVM_RUN loop, in the same program run.
 *
 *   raw:  a throwaway one-page VM (engine/kvm/calibrate.c) whose guest does
 *         `out %al, $0xE9; jmp back`, re-entered with KVM_RUN in a tight
 *         loop: no kite code at all between exits.
 *   kite: a VM made by vm_create with the kvm engine, the same two guest
 *         instructions in guest RAM, a counting device on port 0xE9 on
 *         kite's PIO bus, run by the engine's vcpu_run (exit decode, bus
 *         lookup, device callback) until the device has seen N writes.
 *
 * Prints ns per exit for both and the ratio. Usage: exit_bench [N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/kvm/kvm.h"
#include "util/log.h"
#include "vmm/config.h"
#include "vmm/vm.h"

#define PORT 0xE9
#define CODE_GPA 0x10000

struct counter {
	struct vm *vm;
	unsigned long n, limit;
};

static void counter_write(void *opaque, uint64_t off, unsigned size, uint64_t v)
{
	struct counter *c = opaque;
	(void)off; (void)size; (void)v;
	if (++c->n == c->limit)
		vm_request_stop(c->vm, VM_STOP_POWEROFF, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void flat32(struct cpu_state *st)
{
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < SEG_LDTR; i++) {
		st->seg[i] = (struct segment){ .base = 0, .limit = 0xffffffff, .selector = 0x10,
					       .type = 0x3, .s = 1, .present = 1, .db = 1, .g = 1 };
	}
	st->seg[SEG_CS].selector = 0x08;
	st->seg[SEG_CS].type = 0xb;
	st->seg[SEG_LDTR] = (struct segment){ .type = 2, .present = 1, .limit = 0xffff };
	st->seg[SEG_TR] = (struct segment){ .type = 11, .present = 1, .limit = 0xffff };
	st->cr0 = CR0_PE | CR0_ET;
	st->rflags = RFLAGS_FIXED;
	st->rip = CODE_GPA;
}

static int kite_exits(unsigned long n, double *ns_per_exit)
{
	struct vm_config cfg;
	vm_config_defaults(&cfg);
	cfg.mem_size = 16ull << 20;
	cfg.serial = SERIAL_NONE;
	cfg.engine = ENGINE_KVM;
	struct vm *vm = calloc(1, sizeof(*vm));
	struct counter c = { vm, 0, 0 };
	struct cpu_state st;
	int ret = vm_create(vm, &cfg, &kvm_engine);
	if (ret)
		goto out_free;
	static const uint8_t code[] = { 0xE6, PORT, 0xEB, 0xFC }; /* out; jmp back */
	if ((ret = gm_write(&vm->mem, CODE_GPA, code, sizeof(code))))
		goto out;
	if ((ret = bus_register(&vm->pio, PORT, 1, NULL, counter_write, &c, "bench-counter")))
		goto out;
	flat32(&st);
	if ((ret = kvm_engine.vcpu_set_state(&vm->vcpus[0], &st)))
		goto out;
	/* warm up: the first entries pay for the vCPU's setup */
	c.limit = n / 10 + 1;
	if ((ret = kvm_engine.vcpu_run(&vm->vcpus[0])))
		goto out;
	atomic_store(&vm->stop_reason, VM_RUNNING);
	c.n = 0;
	c.limit = n;
	uint64_t t0 = now_ns();
	while (!vm_should_stop(vm) && !ret)
		ret = kvm_engine.vcpu_run(&vm->vcpus[0]);
	*ns_per_exit = (double)(now_ns() - t0) / (double)n;
out:
	vm_destroy(vm);
out_free:
	free(vm);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
	char why[256] = "";
	double raw = 0, kite = 0;
	/* Alternate the two a few times and keep each one's best: the host is
	 * shared and noisy, the best run is the one least disturbed. */
	double best_raw = 1e30, best_kite = 1e30;
	for (int round = 0; round < 3; round++) {
		if (kvm_raw_exit_bench((unsigned)n, &raw, why, sizeof(why))) {
			fprintf(stderr, "exit_bench: %s\n", why);
			return 1;
		}
		if (kite_exits(n, &kite)) {
			fprintf(stderr, "exit_bench: the kite run failed\n");
			return 1;
		}
		if (raw < best_raw)
			best_raw = raw;
		if (kite < best_kite)
			best_kite = kite;
	}
	printf("exits=%lu raw_ns=%.0f kite_ns=%.0f ratio=%.3f\n", n, best_raw, best_kite,
	       best_kite / best_raw);
	return 0;
}
