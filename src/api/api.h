/* kite's Firecracker-compatible management API: the configuration a client
 * builds up before InstanceStart, the request handlers (router.c and the
 * handlers_*.c files), and the hooks that reach the running VM.
 *
 * The handlers never touch the VM directly: they go through api_vmm_ops,
 * which instance.c implements over struct vm and tests/fuzzing replace
 * with fakes. Everything runs on the thread that owns the API (main). */
#ifndef KITE_API_API_H
#define KITE_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/http.h"
#include "util/metrics.h"
#include "vmm/placement.h"

struct json_object;

#define API_MAX_DRIVES 16
#define API_MAX_IFACES 8
#define API_MAX_VCPUS 32          /* Firecracker's limit */
#define API_DEFAULT_MEM_MIB 128   /* Firecracker's default */
#define API_MIN_MEM_MIB 16        /* kite's floor (VM_MIN_MEMORY) */

enum api_vm_state { API_NOT_STARTED, API_RUNNING, API_PAUSED };

struct api_drive {
	char *id;
	char *path;
	bool root, read_only;
	char *partuuid;            /* accepted, only used for root= */
};

struct api_iface {
	char *id;
	char *host_dev_name;       /* tap device, or NULL with user_net */
	char *guest_mac;
	bool user_net;             /* kite extension: "kite_user_net": true */
};

struct api_config {
	char *kernel, *initrd, *boot_args;
	unsigned vcpus, mem_mib;
	bool smt, track_dirty;
	/* kite extensions to machine-config: the --cpu-affinity, --io-affinity
	 * and --sched strings (NULL: not set) and what they parse to */
	char *cpu_affinity, *io_affinity, *sched;
	struct placement placement;
	struct api_drive drives[API_MAX_DRIVES];
	unsigned nr_drives;
	struct api_iface ifaces[API_MAX_IFACES];
	unsigned nr_ifaces;
	bool entropy;
	char *log_path, *log_level;
	bool logger_set, show_level, show_origin;
	char *metrics_path;
};

struct api;
struct api_vmm_ops {
	/* Build and start the VM from api->cfg; on failure write why to err. */
	int (*start)(struct api *api, char *err, size_t len);
	int (*pause)(struct api *api);
	int (*resume)(struct api *api);
	int (*ctrl_alt_del)(struct api *api, char *err, size_t len);
	int (*patch_drive)(struct api *api, unsigned index, const char *path, char *err, size_t len);
	/* Add VM-side counters (vCPUs, devices) to a metrics line. */
	void (*metrics)(struct api *api, struct json_object *line);
};

struct api {
	struct api_config cfg;
	enum api_vm_state state;
	const char *id;            /* --id, default "anonymous-instance" */
	const char *version;
	const struct api_vmm_ops *ops;
	void *vmm;                 /* the ops' own state */
	struct metrics metrics;
};

void api_init(struct api *api, const struct api_vmm_ops *ops, void *vmm, const char *id,
	      const char *version);
void api_destroy(struct api *api);

/* The http_server handler: route one request, fill resp (status, body). */
void api_handle(void *api, const struct http_request *req, struct http_response *resp);

/* Apply a Firecracker config file's JSON (the --config-file contents):
 * the same validation as the API. 0, or -EINVAL with why in err. */
int api_apply_config(struct api *api, const char *json, size_t len, char *err, size_t errlen);

/* Write one metrics line now (FlushMetrics, the 60 s timer). 0 or -errno;
 * -ENOENT when no metrics path is configured. */
int api_flush_metrics(struct api *api);

/* GET /vm/config's body: a malloc'ed JSON string. */
char *api_vm_config_json(const struct api *api);

/* Append root= and ro/rw for a root drive, as Firecracker does; returns a
 * malloc'ed command line. */
char *api_effective_cmdline(const struct api *api);

#endif
