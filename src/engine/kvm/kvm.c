/* The kvm engine: /dev/kvm with the in-kernel irqchip (PIC, IOAPIC, LAPIC)
 * and PIT, kite's CPU model intersected with what KVM supports, exits
 * dispatched to kite's buses. This file: opening and checking KVM, the VM,
 * interrupt delivery. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/kvm/kvm_priv.h"
#include "util/log.h"
#include "vmm/vm.h"

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
	{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE" },
	{ KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI" },
	{ KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS" },
	{ KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS" },
	{ KVM_CAP_XCRS, "KVM_CAP_XCRS" },
	{ KVM_CAP_XSAVE, "KVM_CAP_XSAVE" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
};

int kvm_open_checked(char *why, size_t why_len)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		if (err == ENOENT || err == ENXIO || err == ENODEV)
			snprintf(why, why_len, "no /dev/kvm: the kvm engine needs KVM (try --engine soft)");
		else if (err == EACCES || err == EPERM)
			snprintf(why, why_len, "/dev/kvm: Permission denied (add your user to group kvm)");
		else
			snprintf(why, why_len, "/dev/kvm: %s", strerror(err));
		return -err;
	}
	int api = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(why, why_len, "/dev/kvm speaks API version %d, kite needs %d", api,
			 KVM_API_VERSION);
		close(fd);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			snprintf(why, why_len, "/dev/kvm lacks %s, which kite needs",
				 required_caps[i].name);
			close(fd);
			return -ENOTSUP;
		}
	}
	return fd;
}

static int kvm_probe(char *why, size_t why_len)
{
	int fd = kvm_open_checked(why, why_len);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static int get_supported_cpuid(struct kvm_vm *k)
{
	for (unsigned n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(k->sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			k->supported = c;
			return 0;
		}
		int err = errno;
		free(c);
		if (err != E2BIG)
			return -err;
	}
	return -E2BIG;
}

static int get_msr_index_list(struct kvm_vm *k)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(k->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	if (ioctl(k->sys_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int err = errno;
		free(l);
		return -err;
	}
	k->msr_index = malloc(l->nmsrs * sizeof(uint32_t) + 1);
	if (!k->msr_index) {
		free(l);
		return -ENOMEM;
	}
	memcpy(k->msr_index, l->indices, l->nmsrs * sizeof(uint32_t));
	k->nr_msr_index = l->nmsrs;
	free(l);
	return 0;
}

bool kvm_has_msr(const struct kvm_vm *k, uint32_t index)
{
	for (unsigned i = 0; i < k->nr_msr_index; i++)
		if (k->msr_index[i] == index)
			return true;
	return false;
}

static bool supported_lookup(void *opaque, uint32_t leaf, uint32_t subleaf, struct cpuid_regs *out)
{
	const struct kvm_cpuid2 *c = opaque;
	for (unsigned i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function != leaf)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e->index != subleaf)
			continue;
		*out = (struct cpuid_regs){ e->eax, e->ebx, e->ecx, e->edx };
		return true;
	}
	return false;
}

/* kite's model over what KVM can run. Vendor, family/model/stepping and
 * address widths are the host's: guest code runs on the real CPU, and
 * vendor-specific instruction behaviour (SYSCALL in compat mode, ...) must
 * match what the guest was told. */
static void build_model(struct kvm_vm *k)
{
	struct cpu_features f;
	cpuid_features_from_table(&f, supported_lookup, k->supported);
	cpuid_model_init(&k->model, &f, CPUID_HV_KVM);
	struct cpuid_regs r = { 0 };
	if (supported_lookup(k->supported, 0, 0, &r)) {
		memcpy(k->model.vendor, &r.ebx, 4);
		memcpy(k->model.vendor + 4, &r.edx, 4);
		memcpy(k->model.vendor + 8, &r.ecx, 4);
		k->model.vendor[12] = 0;
	}
	if (supported_lookup(k->supported, 1, 0, &r))
		k->model.signature = r.eax;
	if (supported_lookup(k->supported, 0x80000008, 0, &r) && (r.eax & 0xff)) {
		k->model.phys_bits = r.eax & 0xff;
		k->model.virt_bits = (r.eax >> 8) & 0xff;
	}
	k->model.bus_khz = 1000000; /* KVM's LAPIC timer counts at 1 GHz */
}

static void kvm_vm_destroy(struct vm *vm)
{
	struct kvm_vm *k = vm->engine_data;
	if (!k)
		return;
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->sys_fd >= 0)
		close(k->sys_fd);
	free(k->supported);
	free(k->msr_index);
	free(k);
	vm->engine_data = NULL;
}

/* The PC's interrupt wiring, matching the MADT (ISA IRQ n = GSI n on the
 * IOAPIC, except the PIT's IRQ 0 which is IOAPIC pin 2: the usual
 * interrupt source override). KVM's default routing sends GSI 0 to IOAPIC
 * pin 0, so kite sets its own: GSI 0 -> PIC IRQ 0 and IOAPIC pin 2; GSI n
 * -> PIC IRQ n (n < 16, not the cascade 2) and IOAPIC pin n (n < 24). */
static int set_gsi_routing(struct kvm_vm *k)
{
	enum { MAX_ROUTES = 48 };
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + MAX_ROUTES * sizeof(r->entries[0]));
	if (!r)
		return -ENOMEM;
	unsigned n = 0;
	for (unsigned gsi = 0; gsi < 24; gsi++) {
		if (gsi < 16 && gsi != 2) {
			r->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
					       gsi % 8 },
			};
		}
		if (gsi != 2) {
			r->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi },
			};
		}
	}
	r->nr = n;
	int ret = ioctl(k->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
	free(r);
	return ret;
}

static int kvm_vm_init(struct vm *vm)
{
	char why[256] = "";
	int ret;
	struct kvm_vm *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->sys_fd = k->vm_fd = -1;
	vm->engine_data = k;

	k->sys_fd = kvm_open_checked(why, sizeof(why));
	if (k->sys_fd < 0) {
		ret = k->sys_fd;
		kite_err("%s", why);
		goto fail;
	}
	int max_vcpus = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus <= 0)
		max_vcpus = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max_vcpus > 0 && vm->nr_vcpus > (unsigned)max_vcpus) {
		kite_err("--cpus %u: this host's KVM allows at most %d vCPUs", vm->nr_vcpus, max_vcpus);
		ret = -EINVAL;
		goto fail;
	}
	k->run_size = ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->run_size < (int)sizeof(struct kvm_run)) {
		ret = k->run_size < 0 ? -errno : -EINVAL;
		kite_err("KVM_GET_VCPU_MMAP_SIZE failed: %s", strerror(-ret));
		goto fail;
	}
	if ((ret = get_supported_cpuid(k))) {
		kite_err("KVM_GET_SUPPORTED_CPUID failed: %s", strerror(-ret));
		goto fail;
	}
	if ((ret = get_msr_index_list(k))) {
		kite_err("KVM_GET_MSR_INDEX_LIST failed: %s", strerror(-ret));
		goto fail;
	}
	build_model(k);

	k->vm_fd = ioctl(k->sys_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		ret = -errno;
		kite_err("KVM_CREATE_VM failed: %s", strerror(errno));
		goto fail;
	}
	if (ioctl(k->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
		ret = -errno;
		kite_err("KVM_SET_TSS_ADDR failed: %s", strerror(errno));
		goto fail;
	}
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(k->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		ret = -errno;
		kite_err("KVM_SET_IDENTITY_MAP_ADDR failed: %s", strerror(errno));
		goto fail;
	}
	if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		ret = -errno;
		kite_err("KVM_CREATE_IRQCHIP failed: %s", strerror(errno));
		goto fail;
	}
	if ((ret = set_gsi_routing(k))) {
		kite_err("KVM_SET_GSI_ROUTING failed: %s", strerror(-ret));
		goto fail;
	}
	/* The speaker port 0x61 stays in the kernel with the PIT: Linux gates
	 * PIT channel 2 through it to calibrate the TSC. */
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		kite_err("KVM_CREATE_PIT2 failed: %s", strerror(errno));
		goto fail;
	}
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct mem_region *r = &vm->mem.region[i];
		struct kvm_userspace_memory_region slot = {
			.slot = (uint32_t)i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->host,
		};
		if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0) {
			ret = -errno;
			kite_err("KVM_SET_USER_MEMORY_REGION (slot %d, %llu MiB at 0x%llx) failed: %s",
				 i, (unsigned long long)(r->size >> 20),
				 (unsigned long long)r->gpa, strerror(errno));
			goto fail;
		}
	}
	kvm_install_kick_handler();
	return 0;
fail:
	kvm_vm_destroy(vm);
	return ret;
}

static int kvm_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	struct kvm_vm *k = vm->engine_data;
	struct kvm_irq_level irq = { .irq = gsi, .level = level ? 1 : 0 };
	if (ioctl(k->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}

/* Device memory (vmm/memory.h) sits in the slots after RAM's. KVM moves a
 * slot only by deleting it (size 0) and adding it again. */
#define KVM_DEVICE_MEM_SLOT0 8

static int kvm_device_mem_changed(struct vm *vm, unsigned index)
{
	struct kvm_vm *k = vm->engine_data;
	if (index >= GUEST_MEMORY_MAX_DEVICE_REGIONS)
		return -EINVAL;
	const struct device_mem *d = &vm->mem.dev[index];
	struct kvm_userspace_memory_region slot = {
		.slot = KVM_DEVICE_MEM_SLOT0 + index,
		.userspace_addr = (uint64_t)(uintptr_t)d->host,
	};
	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0 && errno != EINVAL)
		return -errno;
	if (!atomic_load(&d->mapped))
		return 0;
	slot.guest_phys_addr = atomic_load(&d->gpa);
	slot.memory_size = d->size;
	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		return -errno;
	return 0;
}

static int kvm_irq_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_vm *k = vm->engine_data;
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};
	/* 0: the message was blocked (e.g. masked by the guest); fine. */
	if (ioctl(k->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		return -errno;
	return 0;
}

const struct engine_ops kvm_engine = {
	.name = "kvm",
	.probe = kvm_probe,
	.vm_init = kvm_vm_init,
	.vm_destroy = kvm_vm_destroy,
	.vcpu_init = kvm_vcpu_init,
	.vcpu_destroy = kvm_vcpu_destroy,
	.vcpu_set_state = kvm_vcpu_set_state,
	.vcpu_get_state = kvm_vcpu_get_state,
	.vcpu_run = kvm_vcpu_run,
	.vcpu_kick = kvm_vcpu_kick,
	.irq_line = kvm_irq_line,
	.irq_msi = kvm_irq_msi,
	.device_mem_changed = kvm_device_mem_changed,
};
