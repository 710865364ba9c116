/* The API object: configuration storage, metrics lines, the command line
 * kite hands the guest. */
#include "api/api.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void api_init(struct api *api, const struct api_vmm_ops *ops, void *vmm, const char *id,
	      const char *version)
{
	memset(api, 0, sizeof(*api));
	api->ops = ops;
	api->vmm = vmm;
	api->id = id ? id : "anonymous-instance";
	api->version = version;
	api->cfg.vcpus = 1;
	api->cfg.mem_mib = API_DEFAULT_MEM_MIB;
	metrics_init(&api->metrics);
}

void api_destroy(struct api *api)
{
	struct api_config *c = &api->cfg;
	free(c->kernel);
	free(c->initrd);
	free(c->boot_args);
	free(c->cpu_affinity);
	free(c->io_affinity);
	free(c->sched);
	placement_free(&c->placement);
	for (unsigned i = 0; i < c->nr_drives; i++) {
		free(c->drives[i].id);
		free(c->drives[i].path);
		free(c->drives[i].partuuid);
	}
	for (unsigned i = 0; i < c->nr_ifaces; i++) {
		free(c->ifaces[i].id);
		free(c->ifaces[i].host_dev_name);
		free(c->ifaces[i].guest_mac);
	}
	free(c->log_path);
	free(c->log_level);
	free(c->metrics_path);
	metrics_close(&api->metrics);
	memset(c, 0, sizeof(*c));
}

int api_flush_metrics(struct api *api)
{
	if (!metrics_active(&api->metrics))
		return -ENOENT;
	atomic_fetch_add(&api->metrics.flush_metrics, 1);
	struct json_object *line = json_object_new_object();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	json_object_object_add(line, "utc_timestamp_ms",
			       json_object_new_uint64((uint64_t)ts.tv_sec * 1000 +
						      (uint64_t)ts.tv_nsec / 1000000));
	json_object_object_add(line, "instance_id", json_object_new_string(api->id));
	json_object_object_add(line, "state",
			       json_object_new_string(api->state == API_RUNNING ? "Running"
						      : api->state == API_PAUSED ? "Paused"
						      : "Not started"));
	metrics_add_api(&api->metrics, line);
	if (api->ops && api->ops->metrics && api->state != API_NOT_STARTED)
		api->ops->metrics(api, line);
	int ret = metrics_write(&api->metrics, line);
	json_object_put(line);
	return ret;
}

char *api_effective_cmdline(const struct api *api)
{
	const char *base = api->cfg.boot_args ? api->cfg.boot_args : "";
	const struct api_drive *root = NULL;
	for (unsigned i = 0; i < api->cfg.nr_drives; i++)
		if (api->cfg.drives[i].root)
			root = &api->cfg.drives[i];
	char *out = NULL;
	int n;
	if (!root)
		n = asprintf(&out, "%s", base);
	else if (root->partuuid)
		n = asprintf(&out, "%s%sroot=PARTUUID=%s %s", base, *base ? " " : "", root->partuuid,
			     root->read_only ? "ro" : "rw");
	else /* the root drive is always first: vda */
		n = asprintf(&out, "%s%sroot=/dev/vda %s", base, *base ? " " : "",
			     root->read_only ? "ro" : "rw");
	return n < 0 ? NULL : out;
}
