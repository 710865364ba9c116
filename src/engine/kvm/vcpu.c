/* kvm engine: vCPUs, the KVM_RUN loop and its exits, kicks.
 *
 * Kicks: vcpu_kick sets kvm_run.immediate_exit (covers a kick that lands
 * just before KVM_RUN) and sends KVM_KICK_SIGNAL to the vCPU thread (covers
 * a vCPU blocked inside KVM_RUN, e.g. in a guest HLT). The signal stays
 * blocked on the vCPU thread except inside KVM_RUN (KVM_SET_SIGNAL_MASK),
 * so it never interrupts kite's own code; a kick that arrives outside
 * KVM_RUN stays pending and makes the next KVM_RUN return at once, after
 * which it is consumed with sigtimedwait. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "engine/kvm/kvm_priv.h"
#include "util/log.h"
#include "vmm/vm.h"

static void kick_handler(int sig)
{
	(void)sig; /* only there so the signal interrupts KVM_RUN */
}

void kvm_install_kick_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: KVM_RUN must return EINTR */
	sigaction(KVM_KICK_SIGNAL, &sa, NULL);
}

static int set_cpuid(struct kvm_vm *k, struct kvm_vcpu *kv, unsigned apic_id, unsigned nr_cpus)
{
	size_t n = cpuid_table(&k->model, apic_id, nr_cpus, NULL, 0);
	struct cpuid_entry *e = calloc(n, sizeof(*e));
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
	int ret = 0;
	if (!e || !c) {
		ret = -ENOMEM;
		goto out;
	}
	cpuid_table(&k->model, apic_id, nr_cpus, e, n);
	c->nent = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		c->entries[i] = (struct kvm_cpuid_entry2){
			.function = e[i].leaf,
			.index = e[i].subleaf,
			.flags = e[i].significant_index ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
			.eax = e[i].r.eax, .ebx = e[i].r.ebx, .ecx = e[i].r.ecx, .edx = e[i].r.edx,
		};
	}
	if (ioctl(kv->fd, KVM_SET_CPUID2, c) < 0) {
		ret = -errno;
		kite_err("vCPU %u: KVM_SET_CPUID2 failed: %s", apic_id, strerror(errno));
	}
out:
	free(e);
	free(c);
	return ret;
}

void kvm_vcpu_destroy(struct vcpu *vcpu)
{
	struct kvm_vcpu *kv = vcpu->engine_data;
	if (!kv)
		return;
	if (kv->run && kv->run != MAP_FAILED)
		munmap(kv->run, kv->run_size);
	if (kv->fd >= 0)
		close(kv->fd);
	free(kv);
	vcpu->engine_data = NULL;
}

int kvm_vcpu_init(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct kvm_vm *k = vm->engine_data;
	struct kvm_vcpu *kv = calloc(1, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	kv->fd = -1;
	kv->vcpu = vcpu;
	atomic_init(&kv->thread_known, false);
	int ret;

	kv->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)vcpu->id);
	if (kv->fd < 0) {
		ret = -errno;
		kite_err("vCPU %u: KVM_CREATE_VCPU failed: %s", vcpu->id, strerror(errno));
		goto fail;
	}
	kv->run_size = (size_t)k->run_size;
	kv->run = mmap(NULL, kv->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, kv->fd, 0);
	if (kv->run == MAP_FAILED) {
		kv->run = NULL;
		ret = -errno;
		kite_err("vCPU %u: cannot map kvm_run: %s", vcpu->id, strerror(errno));
		goto fail;
	}
	if (!k->model.tsc_khz) {
		int khz = ioctl(kv->fd, KVM_GET_TSC_KHZ, 0);
		if (khz > 0)
			k->model.tsc_khz = (uint32_t)khz;
	}
	if ((ret = set_cpuid(k, kv, vcpu->id, vm->nr_vcpus)))
		goto fail;
	/* Only now visible to vcpu_kick (vm_request_stop may run at any time). */
	vcpu->engine_data = kv;
	return 0;
fail:
	vcpu->engine_data = kv;
	kvm_vcpu_destroy(vcpu);
	return ret;
}

void kvm_vcpu_kick(struct vcpu *vcpu)
{
	struct kvm_vcpu *kv = vcpu->engine_data;
	if (!kv)
		return;
	__atomic_store_n(&kv->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (atomic_load(&kv->thread_known))
		pthread_kill(kv->thread, KVM_KICK_SIGNAL);
}

/* KVM_RUN runs with the thread's mask minus the kick signal. */
static int setup_thread(struct kvm_vcpu *kv)
{
	sigset_t cur;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	/* keep the kick signal blocked outside KVM_RUN */
	sigset_t kick;
	sigemptyset(&kick);
	sigaddset(&kick, KVM_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &kick, NULL);

	struct {
		struct kvm_signal_mask h;
		uint64_t bits;
	} m = { .h.len = 8, .bits = 0 };
	for (int sig = 1; sig <= 64; sig++)
		if (sig != KVM_KICK_SIGNAL && sigismember(&cur, sig) == 1)
			m.bits |= 1ull << (sig - 1);
	if (ioctl(kv->fd, KVM_SET_SIGNAL_MASK, &m) < 0)
		return -errno;
	kv->thread = pthread_self();
	atomic_store(&kv->thread_known, true);
	kv->sigmask_set = true;
	return 0;
}

static void eat_kick(void)
{
	sigset_t kick;
	sigemptyset(&kick);
	sigaddset(&kick, KVM_KICK_SIGNAL);
	struct timespec zero = { 0, 0 };
	while (sigtimedwait(&kick, NULL, &zero) == KVM_KICK_SIGNAL)
		;
}

static void handle_io(struct vm *vm, struct kvm_vcpu *kv)
{
	struct kvm_run *run = kv->run;
	unsigned size = run->io.size;
	uint64_t total = (uint64_t)run->io.count * size;
	if ((size != 1 && size != 2 && size != 4) || run->io.data_offset > kv->run_size ||
	    total > kv->run_size - run->io.data_offset) {
		kite_warn("kvm: malformed I/O exit (port 0x%x size %u count %u)", run->io.port,
			  size, run->io.count);
		return;
	}
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			uint64_t v = 0;
			memcpy(&v, data, size);
			bus_write(&vm->pio, run->io.port, size, v);
		} else {
			uint64_t v = ~0ull;
			bus_read(&vm->pio, run->io.port, size, &v);
			memcpy(data, &v, size);
		}
	}
}

static void handle_mmio(struct vm *vm, struct kvm_run *run)
{
	unsigned len = run->mmio.len;
	uint64_t addr = run->mmio.phys_addr;
	if (len == 0 || len > 8)
		return;
	if (len == 1 || len == 2 || len == 4 || len == 8) {
		uint64_t v = 0;
		if (run->mmio.is_write) {
			memcpy(&v, run->mmio.data, len);
			bus_write(&vm->mmio, addr, len, v);
		} else {
			v = ~0ull;
			bus_read(&vm->mmio, addr, len, &v);
			memcpy(run->mmio.data, &v, len);
		}
		return;
	}
	/* odd sizes: byte by byte */
	for (unsigned i = 0; i < len; i++) {
		uint64_t v = 0;
		if (run->mmio.is_write) {
			bus_write(&vm->mmio, addr + i, 1, run->mmio.data[i]);
		} else {
			v = 0xff;
			bus_read(&vm->mmio, addr + i, 1, &v);
			run->mmio.data[i] = (uint8_t)v;
		}
	}
}

/* The vCPU sits at the reset vector (CS base 0xFFFF0000, IP 0xFFF0): an INIT
 * restarted it there (on the BSP, INIT does not wait for a SIPI). */
static bool at_reset_vector(struct kvm_vcpu *kv)
{
	struct kvm_sregs sr;
	struct kvm_regs r;
	if (ioctl(kv->fd, KVM_GET_SREGS, &sr) < 0 || ioctl(kv->fd, KVM_GET_REGS, &r) < 0)
		return false;
	return sr.cs.base == 0xFFFF0000u && r.rip == 0xFFF0 && !(sr.cr0 & 1);
}

static int report_internal_error(struct vcpu *vcpu, struct kvm_run *run)
{
	char extra[160] = "";
	size_t off = 0;
	for (uint32_t i = 0; i < run->internal.ndata && i < 4 && off < sizeof(extra); i++)
		off += (size_t)snprintf(extra + off, sizeof(extra) - off, " 0x%llx",
					(unsigned long long)run->internal.data[i]);
	const char *what = run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
				   "instruction emulation failed" :
			   run->internal.suberror == KVM_INTERNAL_ERROR_SIMUL_EX ?
				   "exception while delivering an exception" :
			   run->internal.suberror == KVM_INTERNAL_ERROR_DELIVERY_EV ?
				   "event delivery failed" :
				   "internal error";
	kite_err("vCPU %u: KVM internal error: %s (suberror %u, data%s)", vcpu->id, what,
		 run->internal.suberror, extra[0] ? extra : " none");
	return -EIO;
}

int kvm_vcpu_run(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct kvm_vcpu *kv = vcpu->engine_data;
	struct kvm_run *run = kv->run;

	if (!kv->sigmask_set) {
		int ret = setup_thread(kv);
		if (ret) {
			kite_err("vCPU %u: KVM_SET_SIGNAL_MASK failed: %s", vcpu->id, strerror(-ret));
			return ret;
		}
	}
	while (!vm_should_stop(vm)) {
		if (ioctl(kv->fd, KVM_RUN, 0) < 0) {
			int err = errno;
			if (err == EINTR || err == EAGAIN) {
				/* a kick: let the caller look at the VM state */
				__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				eat_kick();
				return 0;
			}
			kite_err("vCPU %u: KVM_RUN failed: %s", vcpu->id, strerror(err));
			return -err;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(vm, kv);
			break;
		case KVM_EXIT_MMIO:
			handle_mmio(vm, run);
			break;
		case KVM_EXIT_HLT:
			/* Only without an in-kernel LAPIC; kite always has one. */
			break;
		case KVM_EXIT_INTR:
			__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
			eat_kick();
			return 0;
		case KVM_EXIT_SHUTDOWN:
			vm_request_stop(vm, VM_STOP_TRIPLE_FAULT, 0);
			return 0;
		case KVM_EXIT_SYSTEM_EVENT:
			switch (run->system_event.type) {
			case KVM_SYSTEM_EVENT_SHUTDOWN:
				vm_request_stop(vm, VM_STOP_POWEROFF, 0);
				break;
			case KVM_SYSTEM_EVENT_RESET:
				vm_request_stop(vm, VM_STOP_RESET, 0);
				break;
			case KVM_SYSTEM_EVENT_CRASH:
				vm_request_stop(vm, VM_STOP_TRIPLE_FAULT, 0);
				break;
			default:
				kite_warn("vCPU %u: unknown KVM system event %u", vcpu->id,
					  run->system_event.type);
			}
			return 0;
		case KVM_EXIT_FAIL_ENTRY:
			kite_err("vCPU %u: KVM could not enter the guest (hardware reason 0x%llx, cpu %u)",
				 vcpu->id,
				 (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
				 run->fail_entry.cpu);
			return -EIO;
		case KVM_EXIT_INTERNAL_ERROR:
			/* kite has no firmware at the reset vector: a guest that
			 * INITs its BSP asked, as on a PC, for a restart */
			if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
			    at_reset_vector(kv)) {
				kite_info("vCPU %u: INIT restarted it at the reset vector (no "
					  "firmware there): a reset request", vcpu->id);
				vm_request_stop(vm, VM_STOP_RESET, 0);
				return 0;
			}
			return report_internal_error(vcpu, run);
		case KVM_EXIT_UNKNOWN:
			kite_err("vCPU %u: unknown KVM exit (hardware reason 0x%llx)", vcpu->id,
				 (unsigned long long)run->hw.hardware_exit_reason);
			return -EIO;
		case KVM_EXIT_DEBUG:
		case KVM_EXIT_IRQ_WINDOW_OPEN:
			break;
		default:
			kite_err("vCPU %u: unexpected KVM exit %u", vcpu->id, run->exit_reason);
			return -EIO;
		}
	}
	return 0;
}
