/* The soft engine behind engine.h: VM and vCPU lifecycle, the run loop
 * with HLT sleeping and kicks, interrupt entry points, and the standalone
 * runner used by the differential tests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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

int soft_svm_init(struct soft_vm *svm, struct guest_memory *mem, struct vm *vm)
{
	memset(svm, 0, sizeof(*svm));
	svm->mem = mem;
	svm->vm = vm;
	svm->nr_pages = ram_pages(mem);
	svm->nr_cpus = vm ? vm->nr_vcpus : 1;
	svm->tsc_offset = -soft_host_tsc();
	struct cpu_features f;
	soft_cpu_features(&f);
	cpuid_model_init(&svm->model, &f, CPUID_HV_KITE);
	svm->code_pages = calloc(svm->nr_pages ? svm->nr_pages : 1, 1);
	if (!svm->code_pages)
		return -ENOMEM;
	pthread_mutex_init(&svm->log_lock, NULL);
	return 0;
}

void soft_svm_destroy(struct soft_vm *svm)
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
	int ret = soft_svm_init(&p->svm, &vm->mem, vm);
	if (ret) {
		free(p);
		return ret;
	}
	ret = soft_platform_create(&p->svm, vm);
	if (ret) {
		soft_svm_destroy(&p->svm);
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
	soft_platform_destroy(&p->svm);
	soft_svm_destroy(&p->svm);
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
	ret = soft_platform_vcpu_init(cpu);
	if (ret) {
		soft_cpu_destroy(cpu);
		free(cpu);
		return ret;
	}
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
	soft_platform_vcpu_destroy(cpu);
	soft_cpu_destroy(cpu);
	free(cpu);
	vcpu->engine_data = NULL;
}

static int soft_vcpu_set_state(struct vcpu *vcpu, const struct cpu_state *st)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	soft_set_state(cpu, st);
	/* the APIC base lives in the LAPIC model; a zero base means "not
	 * given" (a loader's state), not "disable the APIC" */
	if (cpu->lapic && st->msr.apic_base && soft_platform_wrmsr(cpu, 0x1b, st->msr.apic_base) < 0)
		return -EINVAL;
	return 0;
}

static int soft_vcpu_get_state(struct vcpu *vcpu, struct cpu_state *st)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	soft_get_state(cpu, st);
	if (cpu->lapic)
		soft_platform_rdmsr(cpu, 0x1b, &st->msr.apic_base);
	return 0;
}

void soft_cpu_wake(struct soft_cpu *cpu, unsigned bits)
{
	pthread_mutex_lock(&cpu->lock);
	atomic_fetch_or(&cpu->pending, bits);
	pthread_cond_broadcast(&cpu->cond);
	pthread_mutex_unlock(&cpu->lock);
}

static void soft_vcpu_kick(struct vcpu *vcpu)
{
	if (vcpu->engine_data)
		soft_cpu_wake(vcpu->engine_data, PEND_KICK);
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

/* Pause: remember when (host ns and TSC). Resume: the guest's platform
 * clock skips the pause and every vCPU's TSC offset drops by its ticks, so
 * guest time continues from where it stopped. vCPUs are parked meanwhile. */
static void soft_vm_pause_time(struct vm *vm, bool paused)
{
	struct soft_vm_priv *p = vm->engine_data;
	if (!p)
		return;
	struct soft_vm *svm = &p->svm;
	if (paused) {
		svm->pause_start_ns = soft_now_ns();
		svm->pause_start_tsc = soft_host_tsc();
		return;
	}
	uint64_t d_ns = soft_now_ns() - svm->pause_start_ns;
	uint64_t d_tsc = soft_host_tsc() - svm->pause_start_tsc;
	atomic_fetch_add(&svm->paused_ns, d_ns);
	svm->tsc_offset -= d_tsc;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct soft_cpu *cpu = vm->vcpus[i].engine_data;
		if (cpu)
			cpu->tsc_offset -= d_tsc;
	}
}

void soft_mem_written(struct vm *vm, uint64_t gpa, uint64_t len)
{
	struct soft_vm_priv *p = vm->engine_data;
	if (!p || !len)
		return;
	struct soft_vm *svm = &p->svm;
	uint64_t last = gpa + len - 1;
	if (last < gpa)
		last = UINT64_MAX;
	for (uint64_t pfn = gpa >> 12; pfn <= (last >> 12) && pfn < svm->nr_pages; pfn++) {
		if (!atomic_load_explicit(&svm->code_pages[pfn], memory_order_relaxed))
			continue;
		uint8_t mask = atomic_exchange(&svm->code_pages[pfn], 0);
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			if (p->cpus[i] && (mask & (1u << (i & 7))))
				atomic_fetch_or(&p->cpus[i]->pending, PEND_FLUSH);
	}
}

static bool intr_ready(struct soft_cpu *cpu)
{
	return (cpu->s.rflags & RFLAGS_IF) && !cpu->shadow;
}

/* The architectural reset state's segments and registers, for a state that
 * has none (a loader that left an AP's state zeroed). */
static void reset_defaults(struct cpu_state *st)
{
	for (int i = 0; i < SEG_LDTR; i++)
		st->seg[i] = (struct segment){ .limit = 0xffff, .type = i == SEG_CS ? 0xb : 0x3,
					       .s = 1, .present = 1 };
	st->seg[SEG_LDTR] = (struct segment){ .limit = 0xffff, .type = 2, .present = 1 };
	st->seg[SEG_TR] = (struct segment){ .limit = 0xffff, .type = 0xb, .present = 1 };
	st->idt.limit = 0x3ff;
	st->gdt.limit = 0xffff;
	st->cr0 = 0x60000010;
	st->rflags = 2;
	st->gpr[RDX] = 0x600;
	st->msr.pat = 0x0007040600070406ULL;
}

static void do_init(struct soft_cpu *cpu)
{
	struct cpu_state st;
	x86_reset_state(&st, cpu->id);
	if (!st.seg[SEG_CS].limit)
		reset_defaults(&st);
	st.wait_for_sipi = true;
	st.msr.apic_base = cpu->s.msr.apic_base;
	soft_set_state(cpu, &st);
}

static void do_sipi(struct soft_cpu *cpu, int vector)
{
	if (!cpu->s.seg[SEG_DS].limit) {
		struct cpu_state st = cpu->s;
		reset_defaults(&st);
		soft_set_state(cpu, &st);
	}
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
		/* The BSP does not wait for a SIPI after INIT: it restarts at
		 * the reset vector (SDM 8.4.1), where a PC's firmware sees a
		 * warm reset. kite has no firmware there: a reset request. */
		if (cpu->s.msr.apic_base & (1u << 8))
			return EXIT_RESET;
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
	if ((p & PEND_NMI) && !cpu->nmi_blocked) {
		atomic_fetch_and(&cpu->pending, ~PEND_NMI);
		cpu->s.halted = false;
		cpu->nmi_blocked = true;
		soft_deliver(cpu, 2, 0, INT_EXT);
		return 0;
	}
	if (p & PEND_INTR) {
		bool legacy = cpu->intr_ack || atomic_load(&cpu->intr_vector) >= 0;
		if (legacy && intr_ready(cpu)) {
			int v;
			atomic_fetch_and(&cpu->pending, ~PEND_INTR);
			if (cpu->intr_ack)
				v = cpu->intr_ack(cpu->intr_opaque);
			else
				v = atomic_exchange(&cpu->intr_vector, -1);
			if (v >= 0) {
				cpu->s.halted = false;
				soft_deliver(cpu, v, 0, INT_EXT);
			}
		} else if (!legacy && cpu->lapic) {
			/* a LAPIC kick: its state is polled at every block */
			atomic_fetch_and(&cpu->pending, ~PEND_INTR);
		}
	}
	return 0;
}

/* Sleep while halted (or waiting for SIPI) until there is work: a kick,
 * INIT/SIPI, NMI, an interrupt the vCPU would take, or the next timer
 * deadline (the run loop then polls the timers). */
static void halt_wait(struct soft_cpu *cpu, struct vm *vm)
{
	pthread_mutex_lock(&cpu->lock);
	for (;;) {
		unsigned p = atomic_load(&cpu->pending);
		if (vm_should_stop(vm) || (p & (PEND_KICK | PEND_INIT | PEND_FLUSH)))
			break;
		/* Each wake-up below must be one the run loop consumes, or this
		 * loop spins: a SIPI-waiting vCPU takes only INIT and SIPI (no
		 * NMI, no interrupt, and no timer of its own: INIT reset its
		 * LAPIC, and the PIT is run by the BSP, which never waits for
		 * SIPI); an NMI wakes only when NMIs are not blocked; an
		 * interrupt from the PIC only with IF=1. */
		if (cpu->s.wait_for_sipi) {
			if (p & PEND_SIPI)
				break;
			pthread_cond_wait(&cpu->cond, &cpu->lock);
			continue;
		}
		if ((p & PEND_NMI) && !cpu->nmi_blocked)
			break;
		bool legacy = cpu->intr_ack || atomic_load(&cpu->intr_vector) >= 0;
		if ((p & PEND_INTR) && ((cpu->s.rflags & RFLAGS_IF) || (cpu->lapic && !legacy)))
			break;
		if (cpu->lapic && soft_platform_intr_ready(cpu))
			break;
		uint64_t deadline = cpu->lapic ? soft_platform_deadline(cpu) : UINT64_MAX;
		if (deadline == UINT64_MAX) {
			pthread_cond_wait(&cpu->cond, &cpu->lock);
			continue;
		}
		if (soft_guest_ns(cpu->svm) >= deadline)
			break;
		uint64_t host = deadline + atomic_load(&cpu->svm->paused_ns);
		struct timespec ts = { (time_t)(host / 1000000000ULL), (long)(host % 1000000000ULL) };
		if (pthread_cond_timedwait(&cpu->cond, &cpu->lock, &ts) == ETIMEDOUT)
			break;
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
			if (atomic_load(&cpu->pending) & PEND_KICK) {
				atomic_fetch_and(&cpu->pending, ~PEND_KICK);
				return 0;
			}
			/* run the timers now, before anything can return to
			 * this wait: the deadline that ended it must move */
			cpu->timer_tsc = 0;
			cpu->timer_check = 0;
			if (cpu->lapic)
				soft_platform_timers(cpu);
		}
		int r = soft_exec(cpu);
		switch (r) {
		case EXIT_HLT:
			continue;
		case EXIT_KICK:
			return 0;
		case EXIT_RESET:
			kite_info("vCPU %u: INIT restarted it at the reset vector (no firmware "
				  "there): a reset request", vcpu->id);
			vm_request_stop(vm, VM_STOP_RESET, 0);
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
	if (p->svm.plat)
		return soft_platform_irq_line(&p->svm, gsi, level);
	if (gsi >= 64)
		return -EINVAL;
	/* no interrupt controllers: only recorded */
	if (level)
		atomic_fetch_or(&p->svm.irq_lines, 1ULL << gsi);
	else
		atomic_fetch_and(&p->svm.irq_lines, ~(1ULL << gsi));
	return 0;
}

static int soft_irq_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct soft_vm_priv *p = vm->engine_data;
	if (p->svm.plat)
		return soft_platform_msi(&p->svm, addr, data);
	/* no interrupt controllers: fixed delivery to the addressed vCPU */
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
	soft_cpu_wake(vcpu->engine_data, PEND_INTR);
}

void soft_vcpu_raise_intr(struct vcpu *vcpu, uint8_t vector)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	atomic_store(&cpu->intr_vector, vector);
	soft_cpu_wake(cpu, PEND_INTR);
}

void soft_vcpu_nmi(struct vcpu *vcpu)
{
	soft_cpu_wake(vcpu->engine_data, PEND_NMI);
}

void soft_vcpu_init_signal(struct vcpu *vcpu)
{
	soft_cpu_wake(vcpu->engine_data, PEND_INIT);
}

void soft_vcpu_sipi(struct vcpu *vcpu, uint8_t vector)
{
	struct soft_cpu *cpu = vcpu->engine_data;
	atomic_store(&cpu->sipi_vector, vector);
	soft_cpu_wake(cpu, PEND_SIPI);
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
	.mem_written = soft_mem_written,
	.vm_pause_time = soft_vm_pause_time,
};

/* ---- standalone ---- */

int soft_run_standalone(struct guest_memory *mem, struct cpu_state *state,
			uint64_t max_insns, struct soft_run_result *res)
{
	struct soft_vm svm;
	int ret = soft_svm_init(&svm, mem, NULL);
	if (ret)
		return ret;
	struct soft_cpu *cpu = calloc(1, sizeof(*cpu));
	if (!cpu) {
		soft_svm_destroy(&svm);
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
	soft_svm_destroy(&svm);
	return ret;
}
