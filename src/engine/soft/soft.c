/* The soft engine behind engine.h: VM and vCPU lifecycle, the run loop
 * with HLT sleeping and kicks, interrupt entry points, and the standalone
 * runner used by the differential tests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "arch/x86/boot.h"
#include "engine/engine.h"
#include "engine/soft/soft.h"
#include "engine/soft/soft_cpu.h"
#include "util/log.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define SOFT_MAX_VCPUS 64

struct soft_vm_priv {
	struct soft_vm svm;
	struct soft_cpu *cpus[SOFT_MAX_VCPUS];
};

static int soft_probe(char *why, size_t len)
{
	(void)why;
	(void)len;
	return 0;
}

static uint64_t ram_pages(const struct guest_memory *mem)
{
	uint64_t end = 0;
	for (int i = 0; i < mem->nr_regions; i++)
		if (mem->region[i].gpa + mem->region[i].size > end)
			end = mem->region[i].gpa + mem->region[i].size;
	return (end + 4095) >> 12;
}

static int svm_init(struct soft_vm *svm, struct guest_memory *mem, struct vm *vm)
{
	memset(svm, 0, sizeof(*svm));
	svm->mem = mem;
	svm->vm = vm;
	svm->nr_pages = ram_pages(mem);
	svm->code_pages = calloc(svm->nr_pages ? svm->nr_pages : 1, 1);
	if (!svm->code_pages)
		return -ENOMEM;
	pthread_mutex_init(&svm->log_lock, NULL);
	return 0;
}

static void svm_destroy(struct soft_vm *svm)
{
	free((void *)svm->code_pages);
	svm->code_pages = NULL;
	pthread_mutex_destroy(&svm->log_lock);
}

static int soft_vm_init(struct vm *vm)
{
	if (vm->nr_vcpus > SOFT_MAX_VCPUS) {
		kite_err("the soft engine runs at most %d vCPUs", SOFT_MAX_VCPUS);
		return -EINVAL;
	}
	struct soft_vm_priv *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	int ret = svm_init(&p->svm, &vm->mem, vm);
	if (ret) {
		free(p);
		return ret;
	}
	vm->engine_data = p;
	return 0;
}

static void soft_vm_destroy(struct vm *vm)
{
	struct soft_vm_priv *p = vm->engine_data;
	if (!p)
		return;
	svm_destroy(&p->svm);
	free(p);
	vm->engine_data = NULL;
}

static int soft_vcpu_init(struct vcpu *vcpu)
{
	struct soft_vm_priv *p = vcpu->vm->engine_data;
	struct soft_cpu *cpu = calloc(1, sizeof(*cpu));
	if (!cpu)
		return -ENOMEM;
	int ret = soft_cpu_init(cpu, &p->svm, vcpu->id);
	if (ret) {
		free(cpu);
		return ret;
	}
	cpu->deliver = true;
	p->cpus[vcpu->id] = cpu;
	vcpu->engine_data = cpu;
	return 0;
}

static void soft_vcpu_destroy(struct vcpu *vcpu)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	struct soft_vm_priv *p = vcpu->vm->engine_data;
	if (!cpu)
		return;
	if (p)
		p->cpus[vcpu->id] = NULL;
	soft_cpu_destroy(cpu);
	free(cpu);
	vcpu->engine_data = NULL;
}

static int soft_vcpu_set_state(struct vcpu *vcpu, const struct cpu_state *st)
{
	soft_set_state(vcpu->engine_data, st);
	return 0;
}

static int soft_vcpu_get_state(struct vcpu *vcpu, struct cpu_state *st)
{
	soft_get_state(vcpu->engine_data, st);
	return 0;
}

static void wake(struct soft_cpu *cpu, unsigned bits)
{
	pthread_mutex_lock(&cpu->lock);
	atomic_fetch_or(&cpu->pending, bits);
	pthread_cond_broadcast(&cpu->cond);
	pthread_mutex_unlock(&cpu->lock);
}

static void soft_vcpu_kick(struct vcpu *vcpu)
{
	if (vcpu->engine_data)
		wake(vcpu->engine_data, PEND_KICK);
}

void soft_cpu_notify_code_write(struct soft_cpu *cpu, uint8_t mask)
{
	struct vm *vm = cpu->svm->vm;
	if (!vm)
		return;
	struct soft_vm_priv *p = vm->engine_data;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct soft_cpu *o = p->cpus[i];
		if (o && o != cpu && (mask & (1u << (i & 7))))
			atomic_fetch_or(&o->pending, PEND_FLUSH);
	}
}

static bool intr_ready(struct soft_cpu *cpu)
{
	return (cpu->s.rflags & RFLAGS_IF) && !cpu->shadow;
}

static void do_init(struct soft_cpu *cpu)
{
	struct cpu_state st;
	x86_reset_state(&st, cpu->id);
	st.wait_for_sipi = true;
	st.msr.apic_base = cpu->s.msr.apic_base;
	soft_set_state(cpu, &st);
}

static void do_sipi(struct soft_cpu *cpu, int vector)
{
	struct segment *cs = &cpu->s.seg[SEG_CS];
	cs->selector = (uint16_t)(vector << 8);
	cs->base = (uint64_t)vector << 12;
	cs->limit = 0xffff;
	cs->present = 1;
	cs->s = 1;
	cs->type = 0xb;
	cpu->s.rip = 0;
	cpu->s.wait_for_sipi = false;
	cpu->s.halted = false;
	soft_mode_changed(cpu);
}

int soft_cpu_pending(struct soft_cpu *cpu)
{
	unsigned p = atomic_load(&cpu->pending);
	if (p & PEND_FLUSH) {
		atomic_fetch_and(&cpu->pending, ~PEND_FLUSH);
		soft_tc_flush(cpu);
	}
	if (p & PEND_KICK) {
		atomic_fetch_and(&cpu->pending, ~PEND_KICK);
		return EXIT_KICK;
	}
	if (p & PEND_INIT) {
		atomic_fetch_and(&cpu->pending, ~PEND_INIT);
		do_init(cpu);
		return EXIT_HLT;
	}
	if (p & PEND_SIPI) {
		atomic_fetch_and(&cpu->pending, ~PEND_SIPI);
		int v = atomic_exchange(&cpu->sipi_vector, -1);
		if (v >= 0 && cpu->s.wait_for_sipi)
			do_sipi(cpu, v);
	}
	if (cpu->s.wait_for_sipi)
		return EXIT_HLT;
	if (p & PEND_NMI) {
		atomic_fetch_and(&cpu->pending, ~PEND_NMI);
		cpu->s.halted = false;
		soft_deliver(cpu, 2, 0, INT_EXT);
		return 0;
	}
	if ((p & PEND_INTR) && intr_ready(cpu)) {
		int v;
		if (cpu->intr_ack) {
			atomic_fetch_and(&cpu->pending, ~PEND_INTR);
			v = cpu->intr_ack(cpu->intr_opaque);
		} else {
			v = atomic_exchange(&cpu->intr_vector, -1);
			atomic_fetch_and(&cpu->pending, ~PEND_INTR);
		}
		if (v >= 0) {
			cpu->s.halted = false;
			soft_deliver(cpu, v, 0, INT_EXT);
		}
	}
	return 0;
}

/* Sleep while halted (or waiting for SIPI) until there is work. */
static void halt_wait(struct soft_cpu *cpu, struct vm *vm)
{
	pthread_mutex_lock(&cpu->lock);
	for (;;) {
		unsigned p = atomic_load(&cpu->pending);
		if (vm_should_stop(vm) || (p & (PEND_KICK | PEND_INIT | PEND_NMI)))
			break;
		if (cpu->s.wait_for_sipi ? (p & PEND_SIPI) : ((p & PEND_INTR) && (cpu->s.rflags & RFLAGS_IF)))
			break;
		pthread_cond_wait(&cpu->cond, &cpu->lock);
	}
	pthread_mutex_unlock(&cpu->lock);
}

static int soft_vcpu_run(struct vcpu *vcpu)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	struct vm *vm = vcpu->vm;
	while (!vm_should_stop(vm)) {
		if (cpu->s.halted || cpu->s.wait_for_sipi) {
			halt_wait(cpu, vm);
			if (vm_should_stop(vm))
				break;
			unsigned p = atomic_load(&cpu->pending);
			if (p & PEND_KICK) {
				atomic_fetch_and(&cpu->pending, ~PEND_KICK);
				return 0;
			}
			if (!cpu->s.wait_for_sipi && !(p & PEND_INIT))
				cpu->s.halted = false;
		}
		int r = soft_exec(cpu);
		switch (r) {
		case EXIT_HLT:
			continue;
		case EXIT_KICK:
			return 0;
		case EXIT_SHUTDOWN:
			kite_info("vCPU %u: triple fault", vcpu->id);
			vm_request_stop(vm, VM_STOP_TRIPLE_FAULT, 0);
			return 0;
		case EXIT_IO:
			kite_err("vCPU %u: executing outside RAM at rip %#llx", vcpu->id,
				 (unsigned long long)cpu->s.rip);
			return -EFAULT;
		default:
			return 0;
		}
	}
	return 0;
}

static int soft_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	struct soft_vm_priv *p = vm->engine_data;
	if (gsi >= 64)
		return -EINVAL;
	/* Recorded until the IOAPIC/PIC models land and route it. */
	if (level)
		atomic_fetch_or(&p->svm.irq_lines, 1ULL << gsi);
	else
		atomic_fetch_and(&p->svm.irq_lines, ~(1ULL << gsi));
	return 0;
}

static int soft_irq_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	/* Fixed-destination MSI straight to the addressed vCPU until the LAPIC
	 * model takes over delivery. */
	unsigned dest = (addr >> 12) & 0xff;
	if (dest >= vm->nr_vcpus)
		return -EINVAL;
	soft_vcpu_raise_intr(&vm->vcpus[dest], data & 0xff);
	return 0;
}

void soft_vcpu_set_intr_source(struct vcpu *vcpu, int (*ack)(void *opaque), void *opaque)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	cpu->intr_ack = ack;
	cpu->intr_opaque = opaque;
}

void soft_vcpu_intr_pending(struct vcpu *vcpu)
{
	wake(vcpu->engine_data, PEND_INTR);
}

void soft_vcpu_raise_intr(struct vcpu *vcpu, uint8_t vector)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	atomic_store(&cpu->intr_vector, vector);
	wake(cpu, PEND_INTR);
}

void soft_vcpu_nmi(struct vcpu *vcpu)
{
	wake(vcpu->engine_data, PEND_NMI);
}

void soft_vcpu_init_signal(struct vcpu *vcpu)
{
	wake(vcpu->engine_data, PEND_INIT);
}

void soft_vcpu_sipi(struct vcpu *vcpu, uint8_t vector)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	atomic_store(&cpu->sipi_vector, vector);
	wake(cpu, PEND_SIPI);
}

const struct engine_ops soft_engine = {
	.name = "soft",
	.probe = soft_probe,
	.vm_init = soft_vm_init,
	.vm_destroy = soft_vm_destroy,
	.vcpu_init = soft_vcpu_init,
	.vcpu_destroy = soft_vcpu_destroy,
	.vcpu_set_state = soft_vcpu_set_state,
	.vcpu_get_state = soft_vcpu_get_state,
	.vcpu_run = soft_vcpu_run,
	.vcpu_kick = soft_vcpu_kick,
	.irq_line = soft_irq_line,
	.irq_msi = soft_irq_msi,
};

/* ---- standalone ---- */

int soft_run_standalone(struct guest_memory *mem, struct cpu_state *state,
			uint64_t max_insns, struct soft_run_result *res)
{
	struct soft_vm svm;
	int ret = svm_init(&svm, mem, NULL);
	if (ret)
		return ret;
	struct soft_cpu *cpu = calloc(1, sizeof(*cpu));
	if (!cpu) {
		svm_destroy(&svm);
		return -ENOMEM;
	}
	ret = soft_cpu_init(cpu, &svm, 0);
	if (ret)
		goto out;
	soft_set_state(cpu, state);
	cpu->deliver = false;
	cpu->max_insns = max_insns;
	memset(res, 0, sizeof(*res));
	int r = cpu->max_insns ? soft_exec(cpu) : EXIT_LIMIT;
	switch (r) {
	case EXIT_HLT: res->stop = SOFT_STOP_HLT; break;
	case EXIT_EXCEPTION:
		res->stop = SOFT_STOP_EXCEPTION;
		res->vector = cpu->exc_vector;
		res->error_code = cpu->exc_error;
		res->cr2 = cpu->s.cr2;
		break;
	case EXIT_IO: res->stop = SOFT_STOP_IO; break;
	default: res->stop = SOFT_STOP_LIMIT; break;
	}
	res->insns = cpu->insns;
	soft_get_state(cpu, state);
	soft_cpu_destroy(cpu);
out:
	free(cpu);
	svm_destroy(&svm);
	return ret;
}
