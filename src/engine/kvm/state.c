/* kvm engine: struct cpu_state (engine-neutral) <-> KVM's register ioctls.
 * Order on set: SREGS first (they decide the mode the rest is read in),
 * then REGS, XSAVE (x87/SSE), XCRS, MSRS, DEBUGREGS, VCPU_EVENTS, MP_STATE. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/cpu_state.h"
#include "engine/kvm/kvm_priv.h"
#include "util/log.h"
#include "vmm/vm.h"

#define MSR_IA32_TSC            0x10
#define MSR_IA32_APICBASE       0x1b
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_IA32_PAT            0x277
#define MSR_IA32_TSC_DEADLINE   0x6e0
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SFMASK              0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MSR_TSC_AUX             0xc0000103
#define MSR_KVM_WALL_CLOCK_NEW  0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01

#define APIC_BASE_DEFAULT 0xFEE00000ULL
#define APIC_BASE_BSP     (1ULL << 8)
#define APIC_BASE_ENABLE  (1ULL << 11)
#define PAT_DEFAULT       0x0007040600070406ULL
#define MISC_ENABLE_FAST_STRING 1ULL

static void seg_to_kvm(const struct segment *s, struct kvm_segment *k)
{
	*k = (struct kvm_segment){
		.base = s->base, .limit = s->limit, .selector = s->selector,
		.type = s->type, .present = s->present, .dpl = s->dpl, .db = s->db,
		.s = s->s, .l = s->l, .g = s->g, .avl = s->avl, .unusable = s->unusable,
	};
}

static void seg_from_kvm(const struct kvm_segment *k, struct segment *s)
{
	*s = (struct segment){
		.base = k->base, .limit = k->limit, .selector = k->selector,
		.type = k->type, .present = k->present, .dpl = k->dpl, .db = k->db,
		.s = k->s, .l = k->l, .g = k->g, .avl = k->avl, .unusable = k->unusable,
	};
}

static struct kvm_segment *sreg_seg(struct kvm_sregs *sr, int i)
{
	switch (i) {
	case SEG_ES: return &sr->es;
	case SEG_CS: return &sr->cs;
	case SEG_SS: return &sr->ss;
	case SEG_DS: return &sr->ds;
	case SEG_FS: return &sr->fs;
	case SEG_GS: return &sr->gs;
	case SEG_LDTR: return &sr->ldt;
	default: return &sr->tr;
	}
}

/* The MSRs of struct cpu_msrs, by index; pointers into one state. */
struct msr_map {
	uint32_t index;
	size_t off;
};
#define M(idx, field) { idx, offsetof(struct cpu_state, msr.field) }
static const struct msr_map msr_map[] = {
	M(MSR_IA32_SYSENTER_CS, sysenter_cs),   M(MSR_IA32_SYSENTER_ESP, sysenter_esp),
	M(MSR_IA32_SYSENTER_EIP, sysenter_eip), M(MSR_STAR, star),
	M(MSR_LSTAR, lstar),                    M(MSR_CSTAR, cstar),
	M(MSR_SFMASK, sfmask),                  M(MSR_KERNEL_GS_BASE, kernel_gs_base),
	M(MSR_TSC_AUX, tsc_aux),                M(MSR_IA32_PAT, pat),
	M(MSR_IA32_MISC_ENABLE, misc_enable),   M(MSR_IA32_TSC_DEADLINE, tsc_deadline),
	M(MSR_KVM_SYSTEM_TIME_NEW, kvm_system_time),
	M(MSR_KVM_WALL_CLOCK_NEW, kvm_wall_clock),
	{ MSR_IA32_TSC, offsetof(struct cpu_state, tsc) },
};
#undef M
#define NR_MSRS (sizeof(msr_map) / sizeof(msr_map[0]))

struct msr_buf {
	struct kvm_msrs h;
	struct kvm_msr_entry e[NR_MSRS];
};

/* The MSRs this host's KVM knows, each with its value from st (set) or
 * to be filled (get). */
static unsigned msr_list(const struct kvm_vm *k, const struct cpu_state *st, struct msr_buf *b,
			 const struct msr_map **which)
{
	unsigned n = 0;
	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < NR_MSRS; i++) {
		if (!kvm_has_msr(k, msr_map[i].index))
			continue;
		b->e[n].index = msr_map[i].index;
		if (st)
			memcpy(&b->e[n].data, (const char *)st + msr_map[i].off, 8);
		which[n++] = &msr_map[i];
	}
	b->h.nmsrs = n;
	return n;
}

/* x87/SSE state goes through KVM_{GET,SET}_XSAVE rather than the FPU
 * ioctls: the XSAVE buffer's first 512 bytes are the FXSAVE image that
 * struct fxsave_area is, and its header says which components hold state
 * (KVM_GET_FPU returned MXCSR as 0 after a set on this kernel). Components
 * beyond SSE (AVX, AVX-512, ...) are not part of cpu_state: a set puts them
 * in their init state. */
#define XSAVE_HDR_XSTATE_BV 512
#define XSAVE_X87_SSE 3ull

static int set_fpu_state(struct kvm_vcpu *kv, const struct cpu_state *st)
{
	struct kvm_xsave xs;
	memset(&xs, 0, sizeof(xs));
	memcpy(xs.region, &st->fx, sizeof(st->fx));
	uint64_t bv = XSAVE_X87_SSE;
	memcpy((char *)xs.region + XSAVE_HDR_XSTATE_BV, &bv, sizeof(bv));
	return ioctl(kv->fd, KVM_SET_XSAVE, &xs) < 0 ? -errno : 0;
}

static int get_fpu_state(struct kvm_vcpu *kv, struct cpu_state *st)
{
	struct kvm_xsave xs;
	if (ioctl(kv->fd, KVM_GET_XSAVE, &xs) < 0)
		return -errno;
	memcpy(&st->fx, xs.region, sizeof(st->fx));
	uint64_t bv;
	memcpy(&bv, (char *)xs.region + XSAVE_HDR_XSTATE_BV, sizeof(bv));
	/* components in their init state may hold stale bytes in the buffer */
	if (!(bv & 1)) {
		memset(st->fx.st, 0, sizeof(st->fx.st));
		st->fx.fcw = 0x37f;
		st->fx.fsw = 0;
		st->fx.ftw = 0;
		st->fx.fop = 0;
		st->fx.fip = st->fx.fdp = 0;
	}
	if (!(bv & 2))
		memset(st->fx.xmm, 0, sizeof(st->fx.xmm));
	return 0;
}

static int fail(struct vcpu *vcpu, const char *what)
{
	int err = errno ? errno : EIO;
	kite_err("vCPU %u: %s failed: %s", vcpu->id, what, strerror(err));
	return -err;
}

int kvm_vcpu_set_state(struct vcpu *vcpu, const struct cpu_state *st_in)
{
	struct kvm_vcpu *kv = vcpu->engine_data;
	struct kvm_vm *k = vcpu->vm->engine_data;
	struct cpu_state st = *st_in;
	int ret;

	/* A loader leaves these zero when it has no opinion: give the PC
	 * defaults (LAPIC enabled at its usual base, BSP flag on vCPU 0). */
	if (!st.msr.apic_base)
		st.msr.apic_base = APIC_BASE_DEFAULT | APIC_BASE_ENABLE |
				   (vcpu->id == 0 ? APIC_BASE_BSP : 0);
	if (!st.msr.pat)
		st.msr.pat = PAT_DEFAULT;
	if (!st.msr.misc_enable)
		st.msr.misc_enable = MISC_ENABLE_FAST_STRING; /* what firmware leaves on */
	if (!st.fx.fcw && !st.fx.mxcsr) {
		st.fx.fcw = 0x37f;
		st.fx.mxcsr = 0x1f80;
	}

	struct kvm_sregs sr;
	if (ioctl(kv->fd, KVM_GET_SREGS, &sr) < 0)
		return fail(vcpu, "KVM_GET_SREGS");
	for (int i = 0; i < SEG_COUNT; i++)
		seg_to_kvm(&st.seg[i], sreg_seg(&sr, i));
	sr.gdt = (struct kvm_dtable){ .base = st.gdt.base, .limit = st.gdt.limit };
	sr.idt = (struct kvm_dtable){ .base = st.idt.base, .limit = st.idt.limit };
	sr.cr0 = st.cr0;
	sr.cr2 = st.cr2;
	sr.cr3 = st.cr3;
	sr.cr4 = st.cr4;
	sr.cr8 = st.cr8;
	sr.efer = st.efer;
	sr.apic_base = st.msr.apic_base;
	memset(sr.interrupt_bitmap, 0, sizeof(sr.interrupt_bitmap));
	if (ioctl(kv->fd, KVM_SET_SREGS, &sr) < 0)
		return fail(vcpu, "KVM_SET_SREGS");

	struct kvm_regs r = {
		.rax = st.gpr[RAX], .rbx = st.gpr[RBX], .rcx = st.gpr[RCX], .rdx = st.gpr[RDX],
		.rsi = st.gpr[RSI], .rdi = st.gpr[RDI], .rsp = st.gpr[RSP], .rbp = st.gpr[RBP],
		.r8 = st.gpr[R8], .r9 = st.gpr[R9], .r10 = st.gpr[R10], .r11 = st.gpr[R11],
		.r12 = st.gpr[R12], .r13 = st.gpr[R13], .r14 = st.gpr[R14], .r15 = st.gpr[R15],
		.rip = st.rip, .rflags = st.rflags | RFLAGS_FIXED,
	};
	if (ioctl(kv->fd, KVM_SET_REGS, &r) < 0)
		return fail(vcpu, "KVM_SET_REGS");

	if ((ret = set_fpu_state(kv, &st)))
		return fail(vcpu, "KVM_SET_XSAVE");

	if (st.xcr0) {
		struct kvm_xcrs x = { .nr_xcrs = 1 };
		x.xcrs[0].xcr = 0;
		x.xcrs[0].value = st.xcr0;
		if (ioctl(kv->fd, KVM_SET_XCRS, &x) < 0)
			return fail(vcpu, "KVM_SET_XCRS");
	}

	struct msr_buf mb;
	const struct msr_map *which[NR_MSRS];
	unsigned n = msr_list(k, &st, &mb, which);
	int set = ioctl(kv->fd, KVM_SET_MSRS, &mb);
	if (set < 0)
		return fail(vcpu, "KVM_SET_MSRS");
	if ((unsigned)set < n) {
		kite_err("vCPU %u: KVM refused MSR 0x%x = 0x%llx", vcpu->id, mb.e[set].index,
			 (unsigned long long)mb.e[set].data);
		return -EINVAL;
	}

	struct kvm_debugregs dr;
	memset(&dr, 0, sizeof(dr));
	memcpy(dr.db, st.dr, sizeof(dr.db));
	dr.dr6 = st.dr[6] ? st.dr[6] : 0xFFFF0FF0;
	dr.dr7 = st.dr[7] ? st.dr[7] : 0x400;
	if (ioctl(kv->fd, KVM_SET_DEBUGREGS, &dr) < 0)
		return fail(vcpu, "KVM_SET_DEBUGREGS");

	struct kvm_vcpu_events ev;
	if (ioctl(kv->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return fail(vcpu, "KVM_GET_VCPU_EVENTS");
	ev.interrupt.shadow = st.interrupt_shadow ? KVM_X86_SHADOW_INT_STI : 0;
	ev.nmi.pending = st.nmi_pending;
	ev.flags = KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING;
	if (ioctl(kv->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
		return fail(vcpu, "KVM_SET_VCPU_EVENTS");

	struct kvm_mp_state mp = {
		.mp_state = st.wait_for_sipi ? KVM_MP_STATE_INIT_RECEIVED :
			    st.halted ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE,
	};
	if (ioctl(kv->fd, KVM_SET_MP_STATE, &mp) < 0)
		return fail(vcpu, "KVM_SET_MP_STATE");
	return 0;
}

int kvm_vcpu_get_state(struct vcpu *vcpu, struct cpu_state *st)
{
	struct kvm_vcpu *kv = vcpu->engine_data;
	struct kvm_vm *k = vcpu->vm->engine_data;
	memset(st, 0, sizeof(*st));

	struct kvm_regs r;
	if (ioctl(kv->fd, KVM_GET_REGS, &r) < 0)
		return fail(vcpu, "KVM_GET_REGS");
	uint64_t g[16] = { r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
			   r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15 };
	memcpy(st->gpr, g, sizeof(g));
	st->rip = r.rip;
	st->rflags = r.rflags;

	struct kvm_sregs sr;
	if (ioctl(kv->fd, KVM_GET_SREGS, &sr) < 0)
		return fail(vcpu, "KVM_GET_SREGS");
	for (int i = 0; i < SEG_COUNT; i++)
		seg_from_kvm(sreg_seg(&sr, i), &st->seg[i]);
	st->gdt = (struct dtable){ sr.gdt.base, sr.gdt.limit };
	st->idt = (struct dtable){ sr.idt.base, sr.idt.limit };
	st->cr0 = sr.cr0;
	st->cr2 = sr.cr2;
	st->cr3 = sr.cr3;
	st->cr4 = sr.cr4;
	st->cr8 = sr.cr8;
	st->efer = sr.efer;
	st->msr.apic_base = sr.apic_base;

	if (get_fpu_state(kv, st))
		return fail(vcpu, "KVM_GET_XSAVE");

	struct kvm_xcrs x;
	memset(&x, 0, sizeof(x));
	if (ioctl(kv->fd, KVM_GET_XCRS, &x) < 0)
		return fail(vcpu, "KVM_GET_XCRS");
	for (uint32_t i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++)
		if (x.xcrs[i].xcr == 0)
			st->xcr0 = x.xcrs[i].value;

	struct msr_buf mb;
	const struct msr_map *which[NR_MSRS];
	unsigned n = msr_list(k, NULL, &mb, which);
	int got = ioctl(kv->fd, KVM_GET_MSRS, &mb);
	if (got < 0)
		return fail(vcpu, "KVM_GET_MSRS");
	for (unsigned i = 0; i < (unsigned)got && i < n; i++)
		memcpy((char *)st + which[i]->off, &mb.e[i].data, 8);

	struct kvm_debugregs dr;
	if (ioctl(kv->fd, KVM_GET_DEBUGREGS, &dr) < 0)
		return fail(vcpu, "KVM_GET_DEBUGREGS");
	memcpy(st->dr, dr.db, sizeof(dr.db));
	st->dr[6] = dr.dr6;
	st->dr[7] = dr.dr7;

	struct kvm_vcpu_events ev;
	if (ioctl(kv->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return fail(vcpu, "KVM_GET_VCPU_EVENTS");
	st->interrupt_shadow = ev.interrupt.shadow != 0;
	st->nmi_pending = ev.nmi.pending != 0;

	struct kvm_mp_state mp;
	if (ioctl(kv->fd, KVM_GET_MP_STATE, &mp) < 0)
		return fail(vcpu, "KVM_GET_MP_STATE");
	st->wait_for_sipi = mp.mp_state == KVM_MP_STATE_INIT_RECEIVED;
	st->halted = mp.mp_state == KVM_MP_STATE_HALTED;
	return 0;
}
