#include "vmm/vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "backends/char/char.h"
#include "backends/net/net.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/post_port.h"
#include "devices/legacy/reset_cf9.h"
#include "devices/legacy/serial8250.h"
#include "devices/legacy/test_device.h"
#include "devices/pci/host_bridge.h"
#include "devices/pci/ivshmem.h"
#include "devices/virtio/virtio_blk.h"
#include "devices/virtio/virtio_console.h"
#include "devices/virtio/virtio_net.h"
#include "devices/virtio/virtio_pci.h"
#include "devices/virtio/virtio_rng.h"
#include "util/event_loop.h"
#include "util/log.h"
#include "vmm/irq.h"
#include "vmm/placement.h"

void vm_config_defaults(struct vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cmdline = "";
	cfg->mem_size = VM_DEFAULT_MEMORY;
	cfg->nr_cpus = 1;
	cfg->engine = ENGINE_AUTO;
	cfg->serial = SERIAL_STDIO;
	cfg->on_reboot = REBOOT_EXIT;
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, uint32_t code)
{
	int expected = VM_RUNNING;
	if (atomic_compare_exchange_strong(&vm->stop_reason, &expected, (int)reason))
		vm->stop_code = code;
	if (atomic_load(&vm->notify_main) && !pthread_equal(pthread_self(), vm->main_thread))
		pthread_kill(vm->main_thread, SIGUSR2);
	/* a paused vCPU thread must wake up to see the stop */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i].engine_data)
			vm->engine->vcpu_kick(&vm->vcpus[i]);
}

int vm_pause(struct vm *vm)
{
	unsigned threads = 0;
	atomic_store(&vm->pause_requested, true);
	/* Kicks are sticky on both engines: a vCPU about to enter vcpu_run
	 * returns from it at once, then sees the flag. */
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].thread_started)
			threads++;
		if (vm->vcpus[i].engine_data)
			vm->engine->vcpu_kick(&vm->vcpus[i]);
	}
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->parked < threads && !vm_should_stop(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
	if (vm_should_stop(vm))
		return -ESHUTDOWN;
	if (vm->engine->vm_pause_time)
		vm->engine->vm_pause_time(vm, true);
	return 0;
}

int vm_resume(struct vm *vm)
{
	if (vm->engine->vm_pause_time && atomic_load(&vm->pause_requested))
		vm->engine->vm_pause_time(vm, false);
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_requested, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return 0;
}

/* A vCPU thread waits here while the VM is paused. */
static void vcpu_park(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_requested) && !vm_should_stop(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

int vm_exit_status(struct vm *vm)
{
	switch ((enum vm_stop_reason)atomic_load(&vm->stop_reason)) {
	case VM_STOP_POWEROFF:
	case VM_STOP_RESET:
	case VM_STOP_SIGNAL:
		return 0;
	case VM_STOP_DEBUG_EXIT:
		return (int)(((vm->stop_code << 1) | 1) & 0xff);
	case VM_STOP_TRIPLE_FAULT:
		return 2;
	case VM_RUNNING:
	case VM_STOP_ERROR:
		break;
	}
	return 1;
}

int vm_irq_line(struct vm *vm, unsigned gsi, bool level)
{
	return vm->engine->irq_line(vm, gsi, level);
}

int vm_irq_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	return vm->engine->irq_msi(vm, addr, data);
}

int vm_add_device(struct vm *vm, const struct device_ops *ops, void *dev)
{
	struct device *n = realloc(vm->devices, (vm->nr_devices + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	vm->devices = n;
	vm->devices[vm->nr_devices++] = (struct device){ ops, dev };
	return 0;
}

static void destroy_blk(void *p) { virtio_blk_destroy(p); }
static void quiesce_blk(void *p) { virtio_blk_drain(p); }
static void destroy_rng(void *p) { virtio_rng_destroy(p); }
static void destroy_console(void *p) { virtio_console_destroy(p); }
static void quiesce_console(void *p) { virtio_console_quiesce(p); }
static void destroy_net(void *p) { virtio_net_destroy(p); }
static void quiesce_net(void *p) { virtio_net_quiesce(p); }

/* One NIC per --net, after every other virtio device (so adding a NIC
 * never moves the others' slots); the first is the guest's eth0. */
static int vm_create_nics(struct vm *vm, struct pci_mmio_window *win, unsigned *slot)
{
	for (unsigned i = 0; i < vm->cfg->nr_nets; i++) {
		const struct net_config *nc = &vm->cfg->nets[i];
		struct net_backend *be;
		int ret = net_backend_create(nc, vm->loop, &be);
		if (ret)
			return ret; /* reported, naming the tap or forward */
		char mac[18];
		net_format_mac(nc->mac, mac);
		struct virtio_net *net;
		ret = virtio_net_create(&net, &vm->mem, be, nc->mac, NULL);
		if (!ret) {
			struct virtio_pci_owner owner = { net, destroy_net, quiesce_net };
			ret = virtio_pci_create(vm, virtio_net_vdev(net), (*slot)++,
						pci_mmio_alloc(win, VIRTIO_PCI_BAR_SIZE), &owner, NULL);
		}
		if (ret) {
			kite_err("cannot create the virtio-net device %u (%s): %s", i, mac,
				 strerror(-ret));
			return ret;
		}
		kite_info("virtio-net %u: %s backend, MAC %s", i, be->name, mac);
	}
	return 0;
}

/* The virtio devices on PCI bus 0: disks first (slot 1 up, so the first
 * --disk is the guest's vda), then virtio-rng, then virtio-console. BARs
 * are placed one after the other in the 32-bit PCI window. */
static int vm_create_virtio(struct vm *vm, struct char_backend *console_be)
{
	struct pci_mmio_window win = { LAYOUT_PCI_MMIO32_START, LAYOUT_PCI_MMIO32_END };
	unsigned slot = 1;
	int ret;
	for (unsigned i = 0; i < vm->cfg->nr_disks; i++) {
		const struct disk_config *d = &vm->cfg->disks[i];
		struct virtio_blk *blk;
		ret = virtio_blk_create_from_config(&blk, &vm->mem, d);
		if (ret) {
			char_backend_destroy(console_be);
			return ret; /* reported, with the path */
		}
		vm->disks[i] = blk;
		struct virtio_pci_owner owner = { blk, destroy_blk, quiesce_blk };
		ret = virtio_pci_create(vm, virtio_blk_vdev(blk), slot++,
					pci_mmio_alloc(&win, VIRTIO_PCI_BAR_SIZE), &owner, NULL);
		if (ret) {
			kite_err("cannot create the virtio-blk device for disk '%s': %s", d->path,
				 strerror(-ret));
			char_backend_destroy(console_be);
			return ret;
		}
	}
	if (vm->cfg->rng) {
		struct virtio_rng *rng;
		ret = virtio_rng_create(&rng, &vm->mem);
		if (!ret) {
			struct virtio_pci_owner owner = { rng, destroy_rng, NULL };
			ret = virtio_pci_create(vm, virtio_rng_vdev(rng), slot++,
						pci_mmio_alloc(&win, VIRTIO_PCI_BAR_SIZE), &owner, NULL);
		}
		if (ret) {
			kite_err("cannot create the virtio-rng device: %s", strerror(-ret));
			char_backend_destroy(console_be);
			return ret;
		}
	}
	if (console_be) {
		struct virtio_console *con;
		ret = virtio_console_create(&con, &vm->mem, console_be);
		if (!ret) {
			struct virtio_pci_owner owner = { con, destroy_console, quiesce_console };
			ret = virtio_pci_create(vm, virtio_console_vdev(con), slot++,
						pci_mmio_alloc(&win, VIRTIO_PCI_BAR_SIZE), &owner, NULL);
		}
		if (ret) {
			kite_err("cannot create the virtio-console device: %s", strerror(-ret));
			return ret;
		}
	}
	ret = vm_create_nics(vm, &win, &slot);
	/* ivshmem devices last, so that they never move the others' slots */
	for (unsigned i = 0; !ret && i < vm->cfg->nr_shms; i++)
		ret = ivshmem_create(vm, &vm->cfg->shms[i], slot++, &win);
	return ret;
}

/* The devices every kite PC has, on both engines. */
static int vm_create_devices(struct vm *vm)
{
	struct reset_cf9 *cf9;
	struct char_backend *serial_be;
	int ret = event_loop_create(&vm->loop);
	if (ret) {
		kite_err("cannot create the event loop: %s", strerror(-ret));
		return ret;
	}
	if ((ret = post_port_create(vm, NULL)) || (ret = cmos_rtc_create(vm, NULL)) ||
	    (ret = i8042_create(vm, NULL)) || (ret = acpi_pm_create(vm, NULL)) ||
	    (ret = reset_cf9_create(vm, &cf9)) || (ret = pci_host_bridge_create(vm, cf9, NULL))) {
		kite_err("cannot create the legacy devices: %s", strerror(-ret));
		return ret;
	}
	ret = char_backend_create(vm->cfg, vm, vm->loop, &serial_be);
	if (ret)
		return ret; /* reported, with the path */
	/* --console virtio: the backend goes to hvc0, COM1 gets nothing. */
	struct char_backend *console_be = NULL;
	if (vm->cfg->console == CONSOLE_VIRTIO) {
		console_be = serial_be;
		if ((ret = char_null_create(&serial_be))) {
			char_backend_destroy(console_be);
			return ret;
		}
	}
	ret = serial8250_create(vm, PORT_COM1, IRQ_COM1, serial_be, NULL);
	if (ret) {
		kite_err("cannot create the serial port: %s", strerror(-ret));
		char_backend_destroy(console_be);
		return ret;
	}
	ret = vm_create_virtio(vm, console_be);
	if (ret)
		return ret;
	/* test-run devices: the debug-exit port and the register-echo device */
	if (vm->cfg->debug_exit && !(ret = debug_exit_create(vm)))
		ret = test_device_create(vm);
	return ret;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, const struct engine_ops *engine)
{
	int ret;
	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->engine = engine;
	atomic_init(&vm->stop_reason, VM_RUNNING);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	CPU_ZERO(&vm->startup_cpus);
	pthread_getaffinity_np(pthread_self(), sizeof(vm->startup_cpus), &vm->startup_cpus);
	if (cfg->placement) {
		char why[512];
		ret = placement_check(cfg->placement, cfg->nr_cpus, &vm->startup_cpus, why, sizeof(why));
		if (ret) {
			kite_err("%s", why);
			goto fail;
		}
		/* before any I/O thread exists, so that every one inherits it */
		ret = placement_io_self(cfg->placement);
		if (ret) {
			kite_err("cannot pin kite's I/O threads (--io-affinity): %s", strerror(-ret));
			goto fail;
		}
	}

	ret = guest_memory_init(&vm->mem, cfg->mem_size);
	if (ret) {
		kite_err("cannot allocate %llu MiB of guest memory: %s",
			 (unsigned long long)(cfg->mem_size >> 20), strerror(-ret));
		goto fail;
	}
	vm->vcpus = calloc(cfg->nr_cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto fail;
	}
	vm->nr_vcpus = cfg->nr_cpus;
	vm->vcpu_exits = calloc(cfg->nr_cpus, sizeof(*vm->vcpu_exits));
	if (!vm->vcpu_exits) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].id = i;
	}

	ret = engine->vm_init(vm);
	if (ret)
		goto fail;
	ret = vm_create_devices(vm);
	if (ret)
		goto fail;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		ret = engine->vcpu_init(&vm->vcpus[i]);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	vm_destroy(vm);
	return ret;
}

/* Firmware tables, the kernel and the boot vCPU's state; APs wait for SIPI. */
int vm_load(struct vm *vm)
{
	uint64_t rsdp;
	char err[512] = "";
	int ret = acpi_build(&vm->mem, vm->nr_vcpus, &rsdp);
	if (ret) {
		kite_err("cannot build ACPI tables: %s", strerror(-ret));
		return ret;
	}
	struct cpu_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	ret = x86_boot_load(&vm->mem, vm->cfg, st, err, sizeof(err));
	if (ret) {
		kite_err("%s", err[0] ? err : strerror(-ret));
		goto out;
	}
	ret = vm->engine->vcpu_set_state(&vm->vcpus[0], st);
	for (unsigned i = 1; i < vm->nr_vcpus && !ret; i++) {
		x86_reset_state(st, i);
		st->wait_for_sipi = true;
		ret = vm->engine->vcpu_set_state(&vm->vcpus[i], st);
	}
	if (ret)
		kite_err("cannot set the boot vCPU state: %s", strerror(-ret));
out:
	free(st);
	return ret;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%u", vcpu->id);
	pthread_setname_np(pthread_self(), name);
	if (vm->cfg->placement) {
		int ret = placement_vcpu_self(vm->cfg->placement);
		if (ret) {
			kite_err("cannot give vCPU %u nice %d (--sched normal:%u): %s%s", vcpu->id,
				 vm->cfg->placement->nice, vm->cfg->placement->weight, strerror(-ret),
				 ret == -EACCES || ret == -EPERM ?
				 " (a weight above 100 needs CAP_SYS_NICE)" : "");
			vm_request_stop(vm, VM_STOP_ERROR, 0);
			return NULL;
		}
	}
	while (!vm_should_stop(vm)) {
		if (atomic_load(&vm->pause_requested)) {
			vcpu_park(vm);
			continue;
		}
		int ret = vm->engine->vcpu_run(vcpu);
		if (vm->vcpu_exits)
			atomic_fetch_add_explicit(&vm->vcpu_exits[vcpu->id], 1, memory_order_relaxed);
		if (ret) {
			kite_err("vCPU %u: %s engine failed: %s", vcpu->id, vm->engine->name,
				 strerror(-ret));
			vm_request_stop(vm, VM_STOP_ERROR, 0);
		}
	}
	return NULL;
}

int vm_run(struct vm *vm)
{
	int ret = event_loop_start(vm->loop);
	if (ret) {
		kite_err("cannot start the event loop: %s", strerror(-ret));
		return ret;
	}
	/* vCPU threads must not take the process-directed signals (SIGINT,
	 * SIGTERM): main.c waits for them. Kicks use a signal the engine
	 * unblocks on its own thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		const struct placement *pl = vm->cfg->placement;
		ret = pl ? placement_vcpu_attr(pl, i, &vm->startup_cpus, &attr) : 0;
		if (!ret)
			ret = -pthread_create(&vm->vcpus[i].thread, &attr, vcpu_thread, &vm->vcpus[i]);
		pthread_attr_destroy(&attr);
		if (ret) {
			if (pl && pl->sched == SCHED_KIND_RT && ret == -EPERM)
				kite_err("cannot start vCPU %u with SCHED_FIFO priority %d (--sched rt:%d): %s "
					 "(needs CAP_SYS_NICE or RLIMIT_RTPRIO >= %d, and real-time "
					 "runtime in kite's cgroup)", i, pl->rt_priority, pl->rt_priority,
					 strerror(-ret), pl->rt_priority);
			else
				kite_err("cannot start vCPU %u thread: %s", i, strerror(-ret));
			vm_request_stop(vm, VM_STOP_ERROR, 0);
			break;
		}
		vm->vcpus[i].thread_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

void vm_join(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].thread_started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
	}
}

void vm_destroy(struct vm *vm)
{
	vm_join(vm);
	/* No backend callback may run while devices go away. */
	event_loop_stop(vm->loop);
	for (size_t i = vm->nr_devices; i-- > 0;)
		if (vm->devices[i].ops->destroy)
			vm->devices[i].ops->destroy(vm->devices[i].dev);
	free(vm->devices);
	vm->devices = NULL;
	vm->nr_devices = 0;
	event_loop_destroy(vm->loop);
	vm->loop = NULL;
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->nr_vcpus; i++)
			if (vm->vcpus[i].engine_data)
				vm->engine->vcpu_destroy(&vm->vcpus[i]);
		free(vm->vcpus);
		vm->vcpus = NULL;
		free((void *)vm->vcpu_exits);
		vm->vcpu_exits = NULL;
		vm->nr_vcpus = 0; /* main.c may still call vm_request_stop */
	}
	if (vm->engine_data)
		vm->engine->vm_destroy(vm);
	guest_memory_destroy(&vm->mem);
	if (vm->cfg && vm->cfg->placement && vm->cfg->placement->io_pinned && CPU_COUNT(&vm->startup_cpus))
		pthread_setaffinity_np(pthread_self(), sizeof(vm->startup_cpus), &vm->startup_cpus);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
}
