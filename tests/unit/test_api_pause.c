/* PATCH /vm's machinery: vm_pause parks every vCPU thread outside
 * vcpu_run until vm_resume; a stop wakes paused vCPUs. Driven with a
 * counting engine whose vcpu_run returns on a kick (sticky, as both real
 * engines' kicks are) or after 1 ms. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "engine/engine.h"
#include "vmm/vm.h"

struct cvcpu {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool kicked;
	_Atomic uint64_t runs;
};

static int c_vm_init(struct vm *vm) { (void)vm; return 0; }
static void c_vm_destroy(struct vm *vm) { (void)vm; }
static int c_vcpu_init(struct vcpu *v)
{
	struct cvcpu *c = calloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	v->engine_data = c;
	return 0;
}
static void c_vcpu_destroy(struct vcpu *v) { free(v->engine_data); v->engine_data = NULL; }
static int c_set(struct vcpu *v, const struct cpu_state *s) { (void)v; (void)s; return 0; }
static int c_run(struct vcpu *v)
{
	struct cvcpu *c = v->engine_data;
	atomic_fetch_add(&c->runs, 1);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 1000000;
	if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
	pthread_mutex_lock(&c->lock);
	while (!c->kicked && pthread_cond_timedwait(&c->cond, &c->lock, &ts) != ETIMEDOUT)
		;
	c->kicked = false;
	pthread_mutex_unlock(&c->lock);
	return 0;
}
static void c_kick(struct vcpu *v)
{
	struct cvcpu *c = v->engine_data;
	pthread_mutex_lock(&c->lock);
	c->kicked = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}
static int c_irq(struct vm *vm, unsigned gsi, bool level) { (void)vm; (void)gsi; (void)level; return 0; }
static int c_msi(struct vm *vm, uint64_t a, uint32_t d) { (void)vm; (void)a; (void)d; return 0; }

static const struct engine_ops counting = {
	.name = "counting", .vm_init = c_vm_init, .vm_destroy = c_vm_destroy,
	.vcpu_init = c_vcpu_init, .vcpu_destroy = c_vcpu_destroy, .vcpu_set_state = c_set,
	.vcpu_get_state = NULL, .vcpu_run = c_run, .vcpu_kick = c_kick, .irq_line = c_irq,
	.irq_msi = c_msi,
};

static uint64_t total_runs(struct vm *vm)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		n += atomic_load(&((struct cvcpu *)vm->vcpus[i].engine_data)->runs);
	return n;
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

Test(api_pause, vcpus_stop_and_resume)
{
	struct vm_config cfg;
	vm_config_defaults(&cfg);
	cfg.serial = SERIAL_NONE;
	cfg.mem_size = 16 << 20;
	cfg.nr_cpus = 3;
	struct vm *vm = calloc(1, sizeof(*vm));
	cr_assert_eq(vm_create(vm, &cfg, &counting), 0);
	cr_assert_eq(vm_run(vm), 0);
	msleep(20);
	cr_assert_gt(total_runs(vm), 0);
	for (int round = 0; round < 5; round++) {
		cr_assert_eq(vm_pause(vm), 0);
		cr_assert(vm_is_paused(vm));
		cr_assert_eq(vm->parked, 3, "every vCPU thread parked");
		uint64_t n = total_runs(vm);
		msleep(30);
		cr_assert_eq(total_runs(vm), n, "no vcpu_run while paused");
		cr_assert_eq(vm_resume(vm), 0);
		msleep(30);
		cr_assert_gt(total_runs(vm), n, "running again after resume");
		cr_assert_gt(vm->vcpu_exits[0] + vm->vcpu_exits[1] + vm->vcpu_exits[2], 0);
	}
	/* a stop while paused ends the threads */
	cr_assert_eq(vm_pause(vm), 0);
	vm_request_stop(vm, VM_STOP_SIGNAL, 0);
	vm_join(vm);
	cr_assert_eq(vm_exit_status(vm), 0);
	vm_destroy(vm);
	free(vm);
}
