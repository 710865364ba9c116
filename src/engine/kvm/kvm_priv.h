/* The kvm engine's private state, shared by its files:
 *   kvm.c    /dev/kvm, capability checks, the VM (memory slots, in-kernel
 *            irqchip + PIT, CPUID model), interrupt delivery
 *   vcpu.c   vCPU creation, the KVM_RUN loop and its exits, kicks
 *   state.c  struct cpu_state <-> KVM regs/sregs/fpu/xcrs/msrs/mp_state */
#ifndef KITE_ENGINE_KVM_KVM_PRIV_H
#define KITE_ENGINE_KVM_KVM_PRIV_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpuid.h"

/* Where KVM's VMX helpers live: the real-mode TSS (3 pages) and the EPT
 * identity map (1 page), in the hole between the LAPIC page and 4 GiB that
 * kite maps nothing into (QEMU uses the same place). */
#define KVM_IDENTITY_MAP_ADDR 0xFEFFC000ULL
#define KVM_TSS_ADDR          0xFEFFD000ULL

/* kicks interrupt KVM_RUN with this signal (unblocked only inside KVM_RUN) */
#define KVM_KICK_SIGNAL SIGUSR1

struct kvm_vm {
	int sys_fd;             /* /dev/kvm */
	int vm_fd;
	int run_size;           /* KVM_GET_VCPU_MMAP_SIZE */
	struct kvm_cpuid2 *supported; /* KVM_GET_SUPPORTED_CPUID */
	uint32_t *msr_index;    /* KVM_GET_MSR_INDEX_LIST */
	unsigned nr_msr_index;
	struct cpu_model model; /* shared by every vCPU; topology per vCPU */
};

struct kvm_vcpu {
	int fd;
	struct kvm_run *run;
	size_t run_size;
	struct vcpu *vcpu;
	pthread_t thread;       /* valid once thread_known */
	atomic_bool thread_known;
	bool sigmask_set;       /* KVM_SET_SIGNAL_MASK done on this thread */
};

/* Open /dev/kvm and check every capability kite needs. Returns the fd or
 * a negative errno with a one-line reason in why. */
int kvm_open_checked(char *why, size_t why_len);

bool kvm_has_msr(const struct kvm_vm *k, uint32_t index);

/* state.c */
struct vcpu;
struct cpu_state;
int kvm_vcpu_set_state(struct vcpu *vcpu, const struct cpu_state *st);
int kvm_vcpu_get_state(struct vcpu *vcpu, struct cpu_state *st);

/* vcpu.c */
int kvm_vcpu_init(struct vcpu *vcpu);
void kvm_vcpu_destroy(struct vcpu *vcpu);
int kvm_vcpu_run(struct vcpu *vcpu);
void kvm_vcpu_kick(struct vcpu *vcpu);
void kvm_install_kick_handler(void);

#endif
