#include "api/instance.h"

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "api/api.h"
#include "backends/block/block.h"
#include "backends/net/net.h"
#include "devices/legacy/i8042.h"
#include "devices/virtio/virtio_blk.h"
#include "engine/engine.h"
#include "util/log.h"
#include "vmm/config_file.h"
#include "vmm/vm.h"

struct instance {
	const struct api_options *opts;
	struct vm *vm;
	struct vm_config cfg;
	struct disk_config *disks;
	struct net_config *nets;
	char *cmdline;
};

static void free_vm_config(struct instance *in)
{
	free(in->disks);
	free(in->nets);
	free(in->cmdline);
	in->nets = NULL;
	in->disks = NULL;
	in->cmdline = NULL;
}

static int inst_start(struct api *api, char *err, size_t len)
{
	struct instance *in = api->vmm;
	const struct api_config *c = &api->cfg;
	struct vm_config *cfg = &in->cfg;
	vm_config_defaults(cfg);
	cfg->kernel_path = c->kernel;
	cfg->initrd_path = c->initrd;
	in->cmdline = api_effective_cmdline(api);
	in->disks = calloc(c->nr_drives ? c->nr_drives : 1, sizeof(*in->disks));
	if (!in->cmdline || !in->disks) {
		free_vm_config(in);
		snprintf(err, len, "out of memory.");
		return -ENOMEM;
	}
	cfg->cmdline = in->cmdline;
	cfg->mem_size = (uint64_t)c->mem_mib << 20;
	cfg->nr_cpus = c->vcpus;
	cfg->engine = in->opts->engine;
	cfg->serial = in->opts->serial;
	cfg->serial_path = in->opts->serial_path;
	cfg->rng = c->entropy;
	if (!placement_is_default(&c->placement))
		cfg->placement = &c->placement;
	for (unsigned i = 0; i < c->nr_drives; i++) {
		struct disk_config *d = &in->disks[i];
		snprintf(d->path, sizeof(d->path), "%s", c->drives[i].path);
		d->readonly = c->drives[i].read_only;
		snprintf(d->id, sizeof(d->id), "%s", c->drives[i].id);
		d->engine = BLK_ENGINE_DEFAULT;
	}
	cfg->disks = in->disks;
	cfg->nr_disks = c->nr_drives;
	/* network interfaces: the same configuration as `--net tap=NAME` or
	 * `--net user` (kite_user_net), with guest_mac as mac= */
	in->nets = calloc(c->nr_ifaces ? c->nr_ifaces : 1, sizeof(*in->nets));
	if (!in->nets) {
		free_vm_config(in);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < c->nr_ifaces; i++) {
		const struct api_iface *f = &c->ifaces[i];
		char text[128];
		snprintf(text, sizeof(text), "%s%s%s%s", f->user_net ? "user" : "tap=",
			 f->user_net ? "" : f->host_dev_name, f->guest_mac ? ",mac=" : "",
			 f->guest_mac ? f->guest_mac : "");
		if (net_config_parse(text, i, &in->nets[i])) {
			snprintf(err, len, "network interface %s: invalid configuration (see kite's stderr).",
				 f->id);
			free_vm_config(in);
			return -EINVAL;
		}
	}
	cfg->nets = in->nets;
	cfg->nr_nets = c->nr_ifaces;

	const struct engine_ops *engine;
	if (engine_select(cfg, &engine)) {
		snprintf(err, len, "no usable CPU engine (see kite's stderr).");
		free_vm_config(in);
		return -ENODEV;
	}
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		free_vm_config(in);
		return -ENOMEM;
	}
	int ret = vm_create(vm, cfg, engine);
	if (!ret)
		ret = vm_load(vm);
	if (!ret) {
		vm->main_thread = pthread_self();
		vm->notify_main = true;
		ret = vm_run(vm);
	}
	if (ret) {
		vm_request_stop(vm, VM_STOP_ERROR, 0);
		vm_destroy(vm);
		free(vm);
		free_vm_config(in);
		snprintf(err, len, "%s (see kite's stderr).", strerror(-ret));
		return ret;
	}
	in->vm = vm;
	log_msg(LOG_INFO, "VM started: %u vCPUs, %u MiB, %s engine", c->vcpus, c->mem_mib,
		engine->name);
	return 0;
}

static int inst_pause(struct api *api)
{
	struct instance *in = api->vmm;
	return vm_pause(in->vm);
}

static int inst_resume(struct api *api)
{
	struct instance *in = api->vmm;
	return vm_resume(in->vm);
}

static int inst_ctrl_alt_del(struct api *api, char *err, size_t len)
{
	struct instance *in = api->vmm;
	for (size_t i = 0; i < in->vm->nr_devices; i++) {
		if (in->vm->devices[i].ops == &i8042_ops) {
			int ret = i8042_send_ctrl_alt_del(in->vm->devices[i].dev);
			if (ret)
				snprintf(err, len, "the guest is not reading its keyboard.");
			return ret;
		}
	}
	snprintf(err, len, "no i8042 keyboard controller.");
	return -ENODEV;
}

static int inst_patch_drive(struct api *api, unsigned index, const char *path, char *err,
			    size_t len)
{
	struct instance *in = api->vmm;
	struct vm *vm = in->vm;
	if (index >= vm->cfg->nr_disks || !vm->disks[index]) {
		snprintf(err, len, "the drive has no device.");
		return -ENODEV;
	}
	const struct disk_config *d = &vm->cfg->disks[index];
	struct blk_backend *be, *old;
	int ret = blk_open(&be, path, d->readonly, d->engine);
	if (ret) {
		snprintf(err, len, "cannot open '%s': %s.", path, strerror(-ret));
		return ret;
	}
	/* No queue notification may run during the switch: park the vCPUs. */
	bool was_paused = vm_is_paused(vm);
	if (!was_paused && vm_pause(vm)) {
		blk_close(be);
		snprintf(err, len, "the VM is stopping.");
		return -ESHUTDOWN;
	}
	ret = virtio_blk_swap_backend(vm->disks[index], be, &old);
	if (!was_paused)
		vm_resume(vm);
	if (ret) {
		blk_close(be);
		snprintf(err, len, "the new file must have the same read-only setting.");
		return ret;
	}
	blk_close(old);
	snprintf(in->disks[index].path, sizeof(in->disks[index].path), "%s", path);
	log_msg(LOG_INFO, "drive %s now backed by %s", api->cfg.drives[index].id, path);
	return 0;
}

struct dev_acc {
	struct json_object *devices;
	const char *key; /* "pio_accesses" or "mmio_accesses" */
};

/* Sum a bus range's accesses into devices[name][key]. */
static void add_range(void *opaque, const struct bus_range *r)
{
	struct dev_acc *a = opaque;
	const char *name = r->name ? r->name : "unnamed";
	struct json_object *e, *v;
	if (!json_object_object_get_ex(a->devices, name, &e)) {
		e = json_object_new_object();
		json_object_object_add(a->devices, name, e);
	}
	uint64_t n = r->accesses;
	if (json_object_object_get_ex(e, a->key, &v))
		n += json_object_get_uint64(v);
	json_object_object_add(e, a->key, json_object_new_uint64(n));
}

static void inst_metrics(struct api *api, struct json_object *line)
{
	struct instance *in = api->vmm;
	struct vm *vm = in->vm;
	if (!vm)
		return;
	struct json_object *v = json_object_new_object();
	json_object_object_add(v, "vcpu_count", json_object_new_int((int)vm->nr_vcpus));
	json_object_object_add(v, "paused", json_object_new_boolean(vm_is_paused(vm)));
	json_object_object_add(v, "engine", json_object_new_string(vm->engine->name));
	struct json_object *ex = json_object_new_array();
	uint64_t total = 0;
	for (unsigned i = 0; i < vm->nr_vcpus && vm->vcpu_exits; i++) {
		uint64_t n = atomic_load(&vm->vcpu_exits[i]);
		total += n;
		json_object_array_add(ex, json_object_new_uint64(n));
	}
	json_object_object_add(v, "exits_per_vcpu", ex);
	json_object_object_add(v, "exits", json_object_new_uint64(total));
	json_object_object_add(line, "vcpu", v);
	/* per device: guest accesses to its port and MMIO ranges */
	struct dev_acc a = { json_object_new_object(), "pio_accesses" };
	bus_for_each(&vm->pio, add_range, &a);
	a.key = "mmio_accesses";
	bus_for_each(&vm->mmio, add_range, &a);
	json_object_object_add(line, "devices", a.devices);
}

static const struct api_vmm_ops inst_ops = {
	.start = inst_start,
	.pause = inst_pause,
	.resume = inst_resume,
	.ctrl_alt_del = inst_ctrl_alt_del,
	.patch_drive = inst_patch_drive,
	.metrics = inst_metrics,
};

int api_main(const struct api_options *opts)
{
	struct instance in = { .opts = opts };
	struct api api;
	struct http_server srv = { .listen_fd = -1 };
	int status = 1, sfd = -1, tfd = -1;
	bool have_srv = false;
	api_init(&api, &inst_ops, &in, opts->id, opts->version);
	if (opts->id)
		log_set_instance_id(opts->id);

	/* Signals end the VM cleanly: taken through a signalfd here, never by a
	 * vCPU thread. SIGUSR2 is the VM's "I stopped" (vm_request_stop). */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (sfd < 0 || tfd < 0) {
		kite_err("cannot create the API's signal or timer descriptors: %s", strerror(errno));
		goto out;
	}
	struct itimerspec period = { { METRICS_PERIOD_SECS, 0 }, { METRICS_PERIOD_SECS, 0 } };
	timerfd_settime(tfd, 0, &period, NULL);

	if (opts->config_file) {
		char err[1024];
		if (config_file_load(&api, opts->config_file, err, sizeof(err))) {
			kite_err("config file '%s': %s", opts->config_file, err);
			goto out;
		}
	}
	if (!opts->no_api) {
		if (http_server_init(&srv, opts->sock_path, api_handle, &api))
			goto out; /* reported */
		have_srv = true;
	}
	if (opts->config_file) {
		char err[512] = "";
		if (inst_start(&api, err, sizeof(err))) {
			kite_err("cannot start the VM from '%s': %s", opts->config_file, err);
			goto out;
		}
		api.state = API_RUNNING;
		atomic_fetch_add(&api.metrics.instance_starts, 1);
	}
	status = 0;
	for (;;) {
		struct pollfd p[2 + 1 + HTTP_MAX_CONNS] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = tfd, .events = POLLIN },
		};
		int np = 2 + (have_srv ? http_server_pollfds(&srv, p + 2) : 0);
		if (poll(p, (nfds_t)np, -1) < 0) {
			if (errno == EINTR)
				continue;
			kite_err("poll: %s", strerror(errno));
			status = 1;
			break;
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGUSR2) {
				if (!in.vm)
					break; /* nothing to stop: just leave */
				vm_request_stop(in.vm, VM_STOP_SIGNAL, 0);
			}
		}
		if (in.vm && vm_should_stop(in.vm))
			break;
		if (p[1].revents) {
			uint64_t ticks;
			if (read(tfd, &ticks, sizeof(ticks)) > 0 && metrics_active(&api.metrics))
				api_flush_metrics(&api);
		}
		if (have_srv)
			http_server_service(&srv, p + 2, np - 2);
		if (in.vm && vm_should_stop(in.vm))
			break;
	}
	if (in.vm) {
		vm_join(in.vm);
		status = vm_exit_status(in.vm);
		if (atomic_load(&in.vm->stop_reason) == VM_STOP_TRIPLE_FAULT)
			kite_err("guest triple fault: the VM shut down");
		log_msg(LOG_INFO, "VM stopped, kite exits with status %d", status);
		if (metrics_active(&api.metrics))
			api_flush_metrics(&api); /* the last line, as Firecracker does on exit */
	}
out:
	if (have_srv)
		http_server_destroy(&srv);
	if (in.vm) {
		vm_destroy(in.vm);
		free(in.vm);
	}
	free_vm_config(&in);
	api_destroy(&api);
	log_close_file();
	if (sfd >= 0)
		close(sfd);
	if (tfd >= 0)
		close(tfd);
	return status;
}
