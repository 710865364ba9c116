/* The PC interrupt and timer devices on the soft engine: one LAPIC per
 * vCPU on an APIC bus, the IOAPIC, the 8259 pair and the 8254 PIT
 * (src/devices/platform). The kvm engine has these in the kernel; here the
 * engine owns them because they are wired into the CPU: LAPIC MMIO is per
 * vCPU, x2APIC/TSC-deadline are MSRs, CR8 is the TPR, interrupts are
 * accepted at block boundaries and the timers are polled by the run loop.
 *
 * Routing: a GSI drives the IOAPIC pin of the same number and, below 16,
 * the PIC line of the same number (the PIT's IRQ0 arrives on IOAPIC pin 2,
 * as the MADT's override says). The PIC's INTR goes to the BSP's LINT0.
 *
 * Time: timers are polled from the run loop when the host TSC passes
 * cpu->timer_tsc (the next LAPIC/PIT deadline, at most 1 ms ahead), and a
 * halted vCPU sleeps until the next deadline. The PIT is polled by vCPU 0. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

#include "arch/x86/layout.h"
#include "devices/platform/ioapic.h"
#include "devices/platform/lapic.h"
#include "devices/platform/pic8259.h"
#include "devices/platform/pit8254.h"
#include "engine/soft/soft_cpu.h"
#include "util/log.h"
#include "vmm/bus.h"
#include "vmm/vm.h"

struct soft_platform {
	struct soft_vm *svm;
	struct vm *vm;
	struct apic_bus bus;
	struct ioapic *ioapic;
	struct pic *pic;
	struct pit *pit;
	struct soft_cpu *cpus[APIC_BUS_MAX];
	uint64_t tsc_hz;
	uint64_t bus_hz;   /* LAPIC timer clock = CPUID 0x15 crystal = TSC / TSC_PER_BUS */
};

/* The TSC runs at TSC_PER_BUS times the LAPIC timer clock (a whole number
 * of kHz), so CPUID 0x15 (cpuid.c) says TSC = crystal * TSC_PER_BUS / 1
 * exactly. */
#define TSC_PER_BUS 16

uint64_t soft_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

uint64_t soft_guest_ns(const struct soft_vm *svm)
{
	return soft_now_ns() - atomic_load_explicit(&svm->paused_ns, memory_order_relaxed);
}

static uint64_t clock_cb(void *opaque)
{
	struct soft_platform *p = opaque;
	return soft_guest_ns(p->svm);
}

/* The guest TSC runs at the host TSC's rate: measure it once. */
static uint64_t measure_tsc_hz(void)
{
	uint64_t n0 = soft_now_ns(), t0 = __rdtsc();
	struct timespec d = { 0, 10 * 1000 * 1000 };
	nanosleep(&d, NULL);
	uint64_t n1 = soft_now_ns(), t1 = __rdtsc();
	if (n1 <= n0 || t1 <= t0)
		return 0;
	return (uint64_t)((double)(t1 - t0) * 1e9 / (double)(n1 - n0));
}

/* ---- LAPIC callbacks ---- */

static void lapic_kick(void *opaque, unsigned apic_id)
{
	struct soft_platform *p = opaque;
	if (apic_id < APIC_BUS_MAX && p->cpus[apic_id])
		soft_cpu_wake(p->cpus[apic_id], PEND_INTR);
}

static void lapic_eoi(void *opaque, uint8_t vector)
{
	struct soft_platform *p = opaque;
	ioapic_eoi(p->ioapic, vector);
}

static void lapic_init_sipi(void *opaque, unsigned apic_id, bool sipi, uint8_t vector)
{
	struct soft_platform *p = opaque;
	if (apic_id >= APIC_BUS_MAX || !p->cpus[apic_id])
		return;
	struct soft_cpu *cpu = p->cpus[apic_id];
	if (sipi) {
		atomic_store(&cpu->sipi_vector, vector);
		soft_cpu_wake(cpu, PEND_SIPI);
	} else {
		soft_cpu_wake(cpu, PEND_INIT);
	}
}

static int lapic_extint(void *opaque)
{
	struct soft_platform *p = opaque;
	return pic_ack(p->pic);
}

static const struct lapic_ops lapic_ops = {
	.kick = lapic_kick,
	.eoi = lapic_eoi,
	.init_sipi = lapic_init_sipi,
	.extint_ack = lapic_extint,
};

/* ---- PIC and PIT wiring ---- */

static void pic_output(void *opaque, bool level)
{
	struct soft_platform *p = opaque;
	struct lapic *bsp = p->cpus[0] ? p->cpus[0]->lapic : NULL;
	if (bsp)
		lapic_set_lint(bsp, 0, level);
}

static void pit_irq(void *opaque, unsigned line, bool level)
{
	struct soft_platform *p = opaque;
	(void)line;
	pic_set_irq(p->pic, 0, level);
	ioapic_set_irq(p->ioapic, 2, level);
}

int soft_platform_create(struct soft_vm *svm, struct vm *vm)
{
	struct soft_platform *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->svm = svm;
	p->vm = vm;
	apic_bus_init(&p->bus);
	p->tsc_hz = measure_tsc_hz();
	p->bus_hz = p->tsc_hz / TSC_PER_BUS / 1000 * 1000;
	if (!p->bus_hz)
		p->bus_hz = 100000000; /* unmeasurable TSC: a plausible 100 MHz */
	struct ioapic_config ic = { .id = 0, .version = 0x20, .deliver = apic_bus_deliver,
				    .deliver_opaque = &p->bus };
	struct pic_config pc = { .output = pic_output, .opaque = p };
	struct pit_config tc = { .set_irq = pit_irq, .opaque = p, .clock = clock_cb, .clock_opaque = p };
	int ret = -ENOMEM;
	p->ioapic = ioapic_create(&ic);
	p->pic = pic_create(&pc);
	p->pit = pit_create(&tc);
	if (!p->ioapic || !p->pic || !p->pit)
		goto fail;
	if ((ret = bus_register(&vm->mmio, LAYOUT_IOAPIC_BASE, IOAPIC_MMIO_SIZE, ioapic_mmio_read,
				ioapic_mmio_write, p->ioapic, "ioapic")) ||
	    (ret = bus_register(&vm->pio, 0x20, 2, pic_master_read, pic_master_write, p->pic, "pic-master")) ||
	    (ret = bus_register(&vm->pio, 0xa0, 2, pic_slave_read, pic_slave_write, p->pic, "pic-slave")) ||
	    (ret = bus_register(&vm->pio, 0x4d0, 2, pic_elcr_read, pic_elcr_write, p->pic, "elcr")) ||
	    (ret = bus_register(&vm->pio, 0x40, 4, pit_io_read, pit_io_write, p->pit, "pit")) ||
	    (ret = bus_register(&vm->pio, 0x61, 1, pit_port61_io_read, pit_port61_io_write, p->pit, "port61")))
		goto fail;
	svm->plat = p;
	/* CPUID: the APIC, x2APIC, TSC-deadline and ARAT exist now, and the
	 * TSC and LAPIC timer frequencies are known. */
	struct cpu_features f;
	soft_cpu_features(&f);
	f.word[CPUID_1_EDX] |= CPUID_1_EDX_APIC;
	f.word[CPUID_1_ECX] |= CPUID_1_ECX_X2APIC | CPUID_1_ECX_TSC_DEADLINE;
	f.word[CPUID_6_EAX] |= 1u << 2;
	cpuid_model_init(&svm->model, &f, CPUID_HV_KITE);
	svm->model.bus_khz = (uint32_t)(p->bus_hz / 1000);
	svm->model.tsc_khz = svm->model.bus_khz * TSC_PER_BUS;
	return 0;
fail:
	kite_err("cannot create the soft engine's interrupt controllers and PIT: %s", strerror(-ret));
	svm->plat = p;
	soft_platform_destroy(svm);
	return ret;
}

void soft_platform_destroy(struct soft_vm *svm)
{
	struct soft_platform *p = svm->plat;
	if (!p)
		return;
	if (p->vm) {
		bus_unregister(&p->vm->mmio, LAYOUT_IOAPIC_BASE, p->ioapic);
		bus_unregister(&p->vm->pio, 0x20, p->pic);
		bus_unregister(&p->vm->pio, 0xa0, p->pic);
		bus_unregister(&p->vm->pio, 0x4d0, p->pic);
		bus_unregister(&p->vm->pio, 0x40, p->pit);
		bus_unregister(&p->vm->pio, 0x61, p->pit);
	}
	if (p->pit) pit_destroy(p->pit);
	if (p->pic) pic_destroy(p->pic);
	if (p->ioapic) ioapic_destroy(p->ioapic);
	free(p);
	svm->plat = NULL;
}

int soft_platform_vcpu_init(struct soft_cpu *cpu)
{
	struct soft_platform *p = cpu->svm->plat;
	if (!p)
		return 0;
	if (cpu->id >= APIC_BUS_MAX)
		return -EINVAL;
	struct lapic_config c = {
		.apic_id = cpu->id, .bsp = cpu->id == 0, .bus_hz = p->bus_hz, .tsc_hz = p->tsc_hz,
		.phys_addr_bits = 40, .bus = &p->bus, .ops = &lapic_ops, .opaque = p,
		.clock = clock_cb, .clock_opaque = p,
	};
	p->cpus[cpu->id] = cpu;
	cpu->lapic = lapic_create(&c);
	if (!cpu->lapic) {
		p->cpus[cpu->id] = NULL;
		return -ENOMEM;
	}
	cpu->lapic_hint = lapic_hint_ptr(cpu->lapic);
	return 0;
}

void soft_platform_vcpu_destroy(struct soft_cpu *cpu)
{
	struct soft_platform *p = cpu->svm->plat;
	if (p && cpu->id < APIC_BUS_MAX)
		p->cpus[cpu->id] = NULL;
	if (cpu->lapic)
		lapic_destroy(cpu->lapic);
	cpu->lapic = NULL;
	cpu->lapic_hint = NULL;
}

int soft_platform_irq_line(struct soft_vm *svm, unsigned gsi, bool level)
{
	struct soft_platform *p = svm->plat;
	if (gsi >= IOAPIC_NUM_PINS)
		return -EINVAL;
	if (gsi == 0) {
		/* ISA IRQ0 is on IOAPIC pin 2 */
		pit_irq(p, 0, level);
		return 0;
	}
	if (gsi < 16 && gsi != 2)
		pic_set_irq(p->pic, gsi, level);
	ioapic_set_irq(p->ioapic, gsi, level);
	return 0;
}

int soft_platform_msi(struct soft_vm *svm, uint64_t addr, uint32_t data)
{
	return apic_bus_msi(&svm->plat->bus, addr, data);
}

/* ---- run-loop side ---- */

/* Earliest timer deadline (ns) this vCPU must poll for. */
uint64_t soft_platform_deadline(struct soft_cpu *cpu)
{
	struct soft_platform *p = cpu->svm->plat;
	uint64_t d = lapic_next_deadline(cpu->lapic);
	if (cpu->id == 0) {
		uint64_t t = pit_next_deadline(p->pit);
		if (t < d)
			d = t;
	}
	return d;
}

void soft_platform_timers(struct soft_cpu *cpu)
{
	struct soft_platform *p = cpu->svm->plat;
	uint64_t now = soft_guest_ns(cpu->svm);
	lapic_poll(cpu->lapic, now);
	if (cpu->id == 0)
		pit_poll(p->pit, now);
	uint64_t d = soft_platform_deadline(cpu);
	uint64_t ahead = d > now ? d - now : 0;
	if (ahead > 1000000)
		ahead = 1000000; /* re-read deadlines at least every ms */
	cpu->timer_tsc = __rdtsc() + (p->tsc_hz ? ahead * (p->tsc_hz / 1000) / 1000000 : 0);
}

/* Accept what the LAPIC has at an instruction boundary. */
void soft_platform_accept(struct soft_cpu *cpu)
{
	struct lapic *l = cpu->lapic;
	if (!cpu->nmi_blocked && lapic_take_nmi(l)) {
		cpu->s.halted = false;
		cpu->nmi_blocked = true;
		soft_deliver(cpu, 2, 0, INT_EXT);
		return;
	}
	if ((cpu->s.rflags & RFLAGS_IF) && !cpu->shadow && lapic_has_interrupt(l)) {
		int v = lapic_get_interrupt(l);
		if (v >= 0) {
			cpu->s.halted = false;
			soft_deliver(cpu, v, 0, INT_EXT);
		}
	}
}

/* A maskable interrupt the vCPU would take now (halt wake-up test). */
bool soft_platform_intr_ready(struct soft_cpu *cpu)
{
	return (cpu->s.rflags & RFLAGS_IF) && lapic_has_interrupt(cpu->lapic);
}

bool soft_platform_mmio(struct soft_cpu *cpu, uint64_t pa, unsigned size, uint64_t *v, bool write)
{
	struct lapic *l = cpu->lapic;
	if (!l || (pa & ~0xfffULL) != lapic_get_base(l))
		return false;
	if (write) {
		lapic_mmio_write(l, pa & 0xfff, size, *v);
		cpu->timer_tsc = 0;
		cpu->timer_check = 0;
	} else {
		*v = lapic_mmio_read(l, pa & 0xfff, size);
	}
	return true;
}

/* MSRs the LAPIC owns. Returns 1 handled, 0 not a LAPIC MSR, -1 #GP. */
int soft_platform_rdmsr(struct soft_cpu *cpu, uint32_t idx, uint64_t *v)
{
	struct lapic *l = cpu->lapic;
	if (!l)
		return 0;
	if (idx == MSR_IA32_APIC_BASE) {
		*v = lapic_get_apic_base(l);
		return 1;
	}
	if (idx == MSR_IA32_TSC_DEADLINE) {
		*v = lapic_tsc_deadline_read(l);
		return 1;
	}
	if (idx >= MSR_X2APIC_FIRST && idx <= MSR_X2APIC_LAST)
		return lapic_msr_read(l, idx, v, soft_guest_ns(cpu->svm)) ? -1 : 1;
	return 0;
}

int soft_platform_wrmsr(struct soft_cpu *cpu, uint32_t idx, uint64_t v)
{
	struct lapic *l = cpu->lapic;
	if (!l)
		return 0;
	int r = 1;
	if (idx == MSR_IA32_APIC_BASE)
		r = lapic_set_apic_base(l, v) ? -1 : 1;
	else if (idx == MSR_IA32_TSC_DEADLINE)
		lapic_tsc_deadline_write(l, v, soft_guest_ns(cpu->svm), soft_read_tsc(cpu));
	else if (idx >= MSR_X2APIC_FIRST && idx <= MSR_X2APIC_LAST)
		r = lapic_msr_write(l, idx, v, soft_guest_ns(cpu->svm)) ? -1 : 1;
	else
		return 0;
	cpu->timer_tsc = 0;
		cpu->timer_check = 0;
	return r;
}

bool soft_lapic_maybe_pending(struct soft_cpu *cpu)
{
	return lapic_maybe_pending(cpu->lapic);
}

uint8_t soft_platform_get_cr8(struct soft_cpu *cpu)
{
	return lapic_get_cr8(cpu->lapic);
}

void soft_platform_set_cr8(struct soft_cpu *cpu, uint8_t v)
{
	lapic_set_cr8(cpu->lapic, v);
}

