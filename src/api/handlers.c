/* Request handlers: each resource has an apply_* function shared with the
 * config file (api_apply_config) and a thin HTTP wrapper. Messages follow
 * Firecracker's wording where it has one. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/handlers.h"
#include "api/json_util.h"
#include "util/log.h"

#define DESER "An error occurred when deserializing the json body of a request: "
#define AFTER_START "The requested operation is not supported after starting the microVM."
#define BEFORE_START "The requested operation is not supported before starting the microVM."

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
}

/* Check o against fields; wrap the reason as a deserialization error. */
static int check(struct json_object *o, const struct api_field *f, size_t n, char *err,
		 size_t errlen)
{
	char why[768];
	if (api_json_check(o, f, n, why, sizeof(why)))
		FAIL(DESER "%s.", why);
	return 0;
}

static int readable_file(const char *what, const char *path, char *err, size_t errlen)
{
	if (access(path, R_OK) != 0)
		FAIL("%s '%s' cannot be opened: %s.", what, path, strerror(errno));
	return 0;
}

/* ---- boot-source ---- */
static int apply_boot_source(struct api *api, struct json_object *o, char *err, size_t errlen)
{
	static const struct api_field f[] = {
		{ "kernel_image_path", F_STRING, true },
		{ "initrd_path", F_STRING, false },
		{ "boot_args", F_STRING, false },
	};
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	const char *kernel = NULL, *initrd = NULL, *args = NULL;
	api_json_str(o, "kernel_image_path", &kernel);
	api_json_str(o, "initrd_path", &initrd);
	api_json_str(o, "boot_args", &args);
	if (readable_file("The kernel file", kernel, err, errlen))
		return -EINVAL;
	if (initrd && readable_file("The initrd file", initrd, err, errlen))
		return -EINVAL;
	set_str(&api->cfg.kernel, kernel);
	set_str(&api->cfg.initrd, initrd);
	set_str(&api->cfg.boot_args, args);
	return 0;
}

/* ---- machine-config ---- */
/* cpu_affinity, io_affinity and sched: parsed into a new placement, which
 * replaces the old one only when all of it is valid for vcpus vCPUs. PUT
 * starts from nothing, PATCH from what is set. */
static int apply_placement(struct api *api, struct json_object *o, bool patch, unsigned vcpus,
			   char *err, size_t errlen)
{
	struct api_config *c = &api->cfg;
	const char *text[3] = { patch ? c->cpu_affinity : NULL, patch ? c->io_affinity : NULL,
				patch ? c->sched : NULL };
	static const char *const names[3] = { "cpu_affinity", "io_affinity", "sched" };
	for (int i = 0; i < 3; i++)
		api_json_str(o, names[i], &text[i]);
	struct placement p;
	placement_init(&p);
	char why[256];
	int ret = 0;
	if (text[0] && (ret = placement_parse_cpu_affinity(&p, text[0], why, sizeof(why))))
		goto bad;
	if (text[1] && (ret = placement_parse_io_affinity(&p, text[1], why, sizeof(why))))
		goto bad;
	if (text[2] && (ret = placement_parse_sched(&p, text[2], why, sizeof(why))))
		goto bad;
	cpu_set_t allowed;
	if (pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed) == 0 &&
	    (ret = placement_check(&p, vcpus, &allowed, why, sizeof(why))))
		goto bad;
	char *copies[3] = { NULL, NULL, NULL };
	for (int i = 0; i < 3; i++)
		copies[i] = text[i] ? strdup(text[i]) : NULL;
	free(c->cpu_affinity);
	free(c->io_affinity);
	free(c->sched);
	c->cpu_affinity = copies[0];
	c->io_affinity = copies[1];
	c->sched = copies[2];
	placement_free(&c->placement);
	c->placement = p;
	return 0;
bad:
	placement_free(&p);
	FAIL("Invalid machine configuration: %s.", why);
}

static int apply_machine_config(struct api *api, struct json_object *o, bool patch, char *err,
				size_t errlen)
{
	static const struct api_field f[] = {
		{ "vcpu_count", F_UINT, true },
		{ "mem_size_mib", F_UINT, true },
		{ "smt", F_BOOL, false },
		{ "track_dirty_pages", F_BOOL, false },
		{ "cpu_template", F_STRING, false },
		{ "huge_pages", F_STRING, false },
		/* kite extensions, the same strings as the command line's flags */
		{ "cpu_affinity", F_STRING, false },
		{ "io_affinity", F_STRING, false },
		{ "sched", F_STRING, false },
	};
	struct api_field fp[N(f)];
	memcpy(fp, f, sizeof(f));
	if (patch) /* PATCH: every field optional, at least one given */
		for (size_t i = 0; i < N(fp); i++)
			fp[i].required = false;
	if (check(o, fp, N(fp), err, errlen))
		return -EINVAL;
	if (patch && json_object_object_length(o) == 0)
		FAIL("Empty PATCH request.");
	uint64_t vcpus = api->cfg.vcpus, mem = api->cfg.mem_mib;
	bool smt = patch ? api->cfg.smt : false, dirty = patch ? api->cfg.track_dirty : false;
	api_json_uint(o, "vcpu_count", &vcpus);
	api_json_uint(o, "mem_size_mib", &mem);
	api_json_bool(o, "smt", &smt);
	api_json_bool(o, "track_dirty_pages", &dirty);
	const char *tmpl = NULL, *huge = NULL;
	if (api_json_str(o, "cpu_template", &tmpl) && strcmp(tmpl, "None"))
		FAIL("CPU template '%.64s' is not supported by kite: only \"None\".", tmpl);
	if (api_json_str(o, "huge_pages", &huge) && strcmp(huge, "None"))
		FAIL("Huge pages '%.64s' are not supported by kite: only \"None\".", huge);
	if (vcpus < 1 || vcpus > API_MAX_VCPUS)
		FAIL("The vCPU number is invalid! The vCPU number can only be 1 or an even number when SMT is enabled. It must be between 1 and %d.",
		     API_MAX_VCPUS);
	if (smt && vcpus > 1 && (vcpus & 1))
		FAIL("The vCPU number is invalid! The vCPU number can only be 1 or an even number when SMT is enabled.");
	if (mem < API_MIN_MEM_MIB || mem > (1u << 20))
		FAIL("The memory size (MiB) is invalid: %llu; kite needs %d to %u MiB.",
		     (unsigned long long)mem, API_MIN_MEM_MIB, 1u << 20);
	if (apply_placement(api, o, patch, (unsigned)vcpus, err, errlen))
		return -EINVAL;
	api->cfg.vcpus = (unsigned)vcpus;
	api->cfg.mem_mib = (unsigned)mem;
	api->cfg.smt = smt;
	api->cfg.track_dirty = dirty;
	return 0;
}

/* ---- drives ---- */
static int find_drive(const struct api *api, const char *id)
{
	for (unsigned i = 0; i < api->cfg.nr_drives; i++)
		if (!strcmp(api->cfg.drives[i].id, id))
			return (int)i;
	return -1;
}

static int apply_drive(struct api *api, const char *path_id, struct json_object *o, char *err,
		       size_t errlen)
{
	static const struct api_field f[] = {
		{ "drive_id", F_STRING, true },
		{ "path_on_host", F_STRING, false },
		{ "is_root_device", F_BOOL, true },
		{ "is_read_only", F_BOOL, false },
		{ "partuuid", F_STRING, false },
		{ "cache_type", F_STRING, false },
		{ "io_engine", F_STRING, false },
		{ "rate_limiter", F_OBJECT, false },
		{ "socket", F_STRING, false },
	};
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	const char *id = NULL, *path = NULL, *partuuid = NULL, *s = NULL;
	bool root = false, ro = false;
	api_json_str(o, "drive_id", &id);
	if (path_id && strcmp(id, path_id))
		FAIL("The id from the path does not match the id from the body!");
	api_json_str(o, "path_on_host", &path);
	api_json_bool(o, "is_root_device", &root);
	api_json_bool(o, "is_read_only", &ro);
	api_json_str(o, "partuuid", &partuuid);
	if (api_json_str(o, "socket", &s))
		FAIL("vhost-user block devices (socket) are not supported by kite.");
	if (api_json_str(o, "cache_type", &s) && strcmp(s, "Unsafe") && strcmp(s, "Writeback"))
		FAIL(DESER "unknown variant `%.64s`, expected `Unsafe` or `Writeback`.", s);
	if (api_json_str(o, "io_engine", &s) && strcmp(s, "Sync") && strcmp(s, "Async"))
		FAIL(DESER "unknown variant `%.64s`, expected `Sync` or `Async`.", s);
	if (!path)
		FAIL("Unable to create the block device: path_on_host is required.");
	int fd = open(path, ro ? O_RDONLY : O_RDWR);
	if (fd < 0)
		FAIL("Unable to create the block device: cannot open '%s': %s.", path, strerror(errno));
	close(fd);
	int idx = find_drive(api, id);
	if (root)
		for (unsigned i = 0; i < api->cfg.nr_drives; i++)
			if ((int)i != idx && api->cfg.drives[i].root)
				FAIL("A root block device already exists!");
	if (idx < 0) {
		if (api->cfg.nr_drives >= API_MAX_DRIVES)
			FAIL("Unable to create the block device: at most %d drives.", API_MAX_DRIVES);
		idx = (int)api->cfg.nr_drives++;
		memset(&api->cfg.drives[idx], 0, sizeof(api->cfg.drives[idx]));
		set_str(&api->cfg.drives[idx].id, id);
	}
	struct api_drive *d = &api->cfg.drives[idx];
	set_str(&d->path, path);
	set_str(&d->partuuid, partuuid);
	d->root = root;
	d->read_only = ro;
	/* The root drive goes first: it is the guest's vda, as in Firecracker. */
	if (root && idx > 0) {
		struct api_drive t = *d;
		memmove(&api->cfg.drives[1], &api->cfg.drives[0], (size_t)idx * sizeof(t));
		api->cfg.drives[0] = t;
	}
	return 0;
}

/* ---- network interfaces ---- */
static int apply_iface(struct api *api, const char *path_id, struct json_object *o, char *err,
		       size_t errlen)
{
	static const struct api_field f[] = {
		{ "iface_id", F_STRING, true },
		{ "host_dev_name", F_STRING, false },
		{ "guest_mac", F_STRING, false },
		{ "rx_rate_limiter", F_OBJECT, false },
		{ "tx_rate_limiter", F_OBJECT, false },
		{ "kite_user_net", F_BOOL, false },
	};
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	const char *id = NULL, *tap = NULL, *mac = NULL;
	bool user = false;
	api_json_str(o, "iface_id", &id);
	if (path_id && strcmp(id, path_id))
		FAIL("The id from the path does not match the id from the body!");
	api_json_str(o, "host_dev_name", &tap);
	api_json_str(o, "guest_mac", &mac);
	api_json_bool(o, "kite_user_net", &user);
	if (!tap && !user)
		FAIL(DESER "missing field `host_dev_name`.");
	if (tap && user)
		FAIL("host_dev_name and kite_user_net are exclusive: a tap device or user-mode networking.");
	if (tap && (!*tap || strlen(tap) >= 16))
		FAIL("Could not create the network device: invalid tap name '%.64s'.", tap);
	if (mac) {
		unsigned b[6];
		char tail;
		if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
			   &tail) != 6 || strlen(mac) != 17)
			FAIL(DESER "invalid MAC address '%.64s'.", mac);
	}
	unsigned i;
	for (i = 0; i < api->cfg.nr_ifaces; i++) {
		if (!strcmp(api->cfg.ifaces[i].id, id))
			continue;
		if (mac && api->cfg.ifaces[i].guest_mac && !strcasecmp(api->cfg.ifaces[i].guest_mac, mac))
			FAIL("The guest MAC address %s is already in use.", mac);
		if (tap && api->cfg.ifaces[i].host_dev_name &&
		    !strcmp(api->cfg.ifaces[i].host_dev_name, tap))
			FAIL("Could not create the network device: the host device %s is already in use.", tap);
	}
	for (i = 0; i < api->cfg.nr_ifaces; i++)
		if (!strcmp(api->cfg.ifaces[i].id, id))
			break;
	if (i == api->cfg.nr_ifaces) {
		if (i >= API_MAX_IFACES)
			FAIL("Could not create the network device: at most %d interfaces.", API_MAX_IFACES);
		memset(&api->cfg.ifaces[i], 0, sizeof(api->cfg.ifaces[i]));
		set_str(&api->cfg.ifaces[i].id, id);
		api->cfg.nr_ifaces++;
	}
	set_str(&api->cfg.ifaces[i].host_dev_name, tap);
	set_str(&api->cfg.ifaces[i].guest_mac, mac);
	api->cfg.ifaces[i].user_net = user;
	return 0;
}

/* ---- logger ---- */
static int parse_level(const char *s, enum log_level *out, bool *off)
{
	static const struct { const char *name; enum log_level l; } t[] = {
		{ "Error", LOG_ERROR }, { "Warning", LOG_WARN }, { "Warn", LOG_WARN },
		{ "Info", LOG_INFO }, { "Debug", LOG_DEBUG }, { "Trace", LOG_DEBUG },
	};
	*off = !strcasecmp(s, "Off");
	if (*off) {
		*out = LOG_ERROR;
		return 0;
	}
	for (size_t i = 0; i < N(t); i++)
		if (!strcasecmp(s, t[i].name)) {
			*out = t[i].l;
			return 0;
		}
	return -EINVAL;
}

static int apply_logger(struct api *api, struct json_object *o, char *err, size_t errlen)
{
	static const struct api_field f[] = {
		{ "log_path", F_STRING, false },
		{ "level", F_STRING, false },
		{ "show_level", F_BOOL, false },
		{ "show_log_origin", F_BOOL, false },
		{ "module", F_STRING, false },
	};
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	const char *path = NULL, *level = "Info";
	bool show_level = false, show_origin = false, off;
	enum log_level l;
	api_json_str(o, "log_path", &path);
	api_json_str(o, "level", &level);
	api_json_bool(o, "show_level", &show_level);
	api_json_bool(o, "show_log_origin", &show_origin);
	if (parse_level(level, &l, &off))
		FAIL(DESER "unknown variant `%.64s`, expected one of `Off`, `Error`, `Warning`, `Info`, `Debug`, `Trace`.",
		     level);
	int ret = log_set_file(path, l, !off, show_level, show_origin);
	if (ret)
		FAIL("Cannot initialize the logger: cannot open '%s': %s.", path ? path : "",
		     strerror(-ret));
	set_str(&api->cfg.log_path, path);
	set_str(&api->cfg.log_level, level);
	api->cfg.logger_set = true;
	api->cfg.show_level = show_level;
	api->cfg.show_origin = show_origin;
	return 0;
}

/* ---- metrics ---- */
static int apply_metrics(struct api *api, struct json_object *o, char *err, size_t errlen)
{
	static const struct api_field f[] = { { "metrics_path", F_STRING, true } };
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	if (api->cfg.metrics_path)
		FAIL("Reinitialization of metrics not allowed.");
	const char *path = NULL;
	api_json_str(o, "metrics_path", &path);
	int ret = metrics_open(&api->metrics, path);
	if (ret)
		FAIL("Cannot initialize the metrics system: cannot open '%s': %s.", path,
		     strerror(-ret));
	set_str(&api->cfg.metrics_path, path);
	return 0;
}

/* ---- entropy ---- */
static int apply_entropy(struct api *api, struct json_object *o, char *err, size_t errlen)
{
	static const struct api_field f[] = { { "rate_limiter", F_OBJECT, false } };
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	api->cfg.entropy = true;
	return 0;
}

/* ---- HTTP wrappers ---- */
static struct json_object *parse_body(const struct api_body *b, struct http_response *resp)
{
	char why[256];
	struct json_object *o = api_json_parse(b->data, b->len, why, sizeof(why));
	if (!o)
		api_fault(resp, 400, DESER "%s.", why);
	return o;
}

static void done(struct api *api, int ret, const char *err, struct http_response *resp)
{
	if (ret) {
		atomic_fetch_add(&api->metrics.config_errors, 1);
		api_fault(resp, 400, "%s", err);
	} else {
		resp->status = 204;
		resp->body = NULL;
	}
}

static bool pre_boot_only(struct api *api, struct http_response *resp)
{
	if (api->state == API_NOT_STARTED)
		return true;
	api_fault(resp, 400, AFTER_START);
	return false;
}

static bool post_boot_only(struct api *api, struct http_response *resp)
{
	if (api->state != API_NOT_STARTED)
		return true;
	api_fault(resp, 400, BEFORE_START);
	return false;
}

#define WRAP(call) do {                                              \
		struct json_object *o = parse_body(b, resp);          \
		if (!o)                                               \
			return;                                       \
		char err[1024];                                       \
		size_t errlen = sizeof(err);                          \
		int ret = (call);                                     \
		json_object_put(o);                                   \
		done(api, ret, err, resp);                            \
	} while (0)

void api_put_boot_source(struct api *api, const struct api_body *b, struct http_response *resp)
{
	if (pre_boot_only(api, resp))
		WRAP(apply_boot_source(api, o, err, errlen));
}

void api_set_machine_config(struct api *api, const struct api_body *b, bool patch,
			    struct http_response *resp)
{
	if (pre_boot_only(api, resp))
		WRAP(apply_machine_config(api, o, patch, err, errlen));
}

void api_put_drive(struct api *api, const char *id, const struct api_body *b,
		   struct http_response *resp)
{
	if (pre_boot_only(api, resp))
		WRAP(apply_drive(api, id, o, err, errlen));
}

void api_put_iface(struct api *api, const char *id, const struct api_body *b,
		   struct http_response *resp)
{
	if (pre_boot_only(api, resp))
		WRAP(apply_iface(api, id, o, err, errlen));
}

void api_put_logger(struct api *api, const struct api_body *b, struct http_response *resp)
{
	if (pre_boot_only(api, resp))
		WRAP(apply_logger(api, o, err, errlen));
}

void api_put_metrics(struct api *api, const struct api_body *b, struct http_response *resp)
{
	if (pre_boot_only(api, resp))
		WRAP(apply_metrics(api, o, err, errlen));
}

void api_put_entropy(struct api *api, const struct api_body *b, struct http_response *resp)
{
	if (pre_boot_only(api, resp))
		WRAP(apply_entropy(api, o, err, errlen));
}

static int patch_drive(struct api *api, const char *path_id, struct json_object *o, char *err,
		       size_t errlen)
{
	static const struct api_field f[] = {
		{ "drive_id", F_STRING, true },
		{ "path_on_host", F_STRING, false },
		{ "rate_limiter", F_OBJECT, false },
	};
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	const char *id = NULL, *path = NULL;
	api_json_str(o, "drive_id", &id);
	if (strcmp(id, path_id))
		FAIL("The id from the path does not match the id from the body!");
	int idx = find_drive(api, id);
	if (idx < 0)
		FAIL("Unable to patch the block device: drive '%s' does not exist.", id);
	if (!api_json_str(o, "path_on_host", &path))
		return 0; /* a rate limiter alone: accepted, kite has none */
	struct api_drive *d = &api->cfg.drives[idx];
	int fd = open(path, d->read_only ? O_RDONLY : O_RDWR);
	if (fd < 0)
		FAIL("Unable to patch the block device: cannot open '%s': %s.", path, strerror(errno));
	close(fd);
	if (!api->ops->patch_drive)
		FAIL("Unable to patch the block device: not supported.");
	char why[512] = "";
	if (api->ops->patch_drive(api, (unsigned)idx, path, why, sizeof(why)))
		FAIL("Unable to patch the block device: %s", why[0] ? why : "failed.");
	set_str(&d->path, path);
	return 0;
}

void api_patch_drive(struct api *api, const char *id, const struct api_body *b,
		     struct http_response *resp)
{
	if (post_boot_only(api, resp))
		WRAP(patch_drive(api, id, o, err, errlen));
}

static int patch_iface(struct api *api, const char *path_id, struct json_object *o, char *err,
		       size_t errlen)
{
	static const struct api_field f[] = {
		{ "iface_id", F_STRING, true },
		{ "rx_rate_limiter", F_OBJECT, false },
		{ "tx_rate_limiter", F_OBJECT, false },
	};
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	const char *id = NULL;
	api_json_str(o, "iface_id", &id);
	if (strcmp(id, path_id))
		FAIL("The id from the path does not match the id from the body!");
	for (unsigned i = 0; i < api->cfg.nr_ifaces; i++)
		if (!strcmp(api->cfg.ifaces[i].id, id))
			return 0; /* rate limiters: accepted, kite has none */
	FAIL("Invalid interface ID - not found.");
}

void api_patch_iface(struct api *api, const char *id, const struct api_body *b,
		     struct http_response *resp)
{
	if (post_boot_only(api, resp))
		WRAP(patch_iface(api, id, o, err, errlen));
}

/* ---- actions ---- */
static int do_action(struct api *api, struct json_object *o, char *err, size_t errlen)
{
	static const struct api_field f[] = { { "action_type", F_STRING, true } };
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	const char *a = NULL;
	api_json_str(o, "action_type", &a);
	atomic_fetch_add(&api->metrics.actions, 1);
	if (!strcmp(a, "InstanceStart")) {
		if (api->state != API_NOT_STARTED)
			FAIL(AFTER_START);
		if (!api->cfg.kernel)
			FAIL("Cannot start microvm without kernel configuration.");
		char why[512] = "";
		if (api->ops->start(api, why, sizeof(why)))
			FAIL("Start microvm error: %s", why[0] ? why : "failed.");
		api->state = API_RUNNING;
		atomic_fetch_add(&api->metrics.instance_starts, 1);
		return 0;
	}
	if (!strcmp(a, "SendCtrlAltDel")) {
		if (api->state == API_NOT_STARTED)
			FAIL(BEFORE_START);
		char why[256] = "";
		if (api->ops->ctrl_alt_del(api, why, sizeof(why)))
			FAIL("Failed to send CTRL+ALT+DEL: %s", why[0] ? why : "failed.");
		atomic_fetch_add(&api->metrics.ctrl_alt_dels, 1);
		return 0;
	}
	if (!strcmp(a, "FlushMetrics")) {
		int ret = api_flush_metrics(api);
		if (ret == -ENOENT)
			FAIL("The metrics system is not initialized.");
		if (ret)
			FAIL("Cannot flush the metrics: %s.", strerror(-ret));
		return 0;
	}
	FAIL(DESER "unknown variant `%.64s`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel`.",
	     a);
}

void api_put_actions(struct api *api, const struct api_body *b, struct http_response *resp)
{
	WRAP(do_action(api, o, err, errlen));
}

/* ---- vm state ---- */
static int patch_vm(struct api *api, struct json_object *o, char *err, size_t errlen)
{
	static const struct api_field f[] = { { "state", F_STRING, true } };
	if (check(o, f, N(f), err, errlen))
		return -EINVAL;
	const char *s = NULL;
	api_json_str(o, "state", &s);
	bool pause;
	if (!strcmp(s, "Paused"))
		pause = true;
	else if (!strcmp(s, "Resumed"))
		pause = false;
	else
		FAIL(DESER "unknown variant `%.64s`, expected `Paused` or `Resumed`.", s);
	if (api->state == API_NOT_STARTED)
		FAIL(BEFORE_START);
	if (pause && api->state == API_RUNNING) {
		if (api->ops->pause(api))
			FAIL("Failed to pause the vCPUs.");
		api->state = API_PAUSED;
		atomic_fetch_add(&api->metrics.pauses, 1);
	} else if (!pause && api->state == API_PAUSED) {
		if (api->ops->resume(api))
			FAIL("Failed to resume the vCPUs.");
		api->state = API_RUNNING;
		atomic_fetch_add(&api->metrics.resumes, 1);
	}
	return 0; /* pausing a paused VM (resuming a running one) is a no-op */
}

void api_patch_vm(struct api *api, const struct api_body *b, struct http_response *resp)
{
	WRAP(patch_vm(api, o, err, errlen));
}

/* ---- reads ---- */
static const char *state_name(enum api_vm_state s)
{
	return s == API_RUNNING ? "Running" : s == API_PAUSED ? "Paused" : "Not started";
}

void api_get_instance(struct api *api, struct http_response *resp)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(api->id));
	json_object_object_add(o, "state", json_object_new_string(state_name(api->state)));
	json_object_object_add(o, "vmm_version", json_object_new_string(api->version));
	json_object_object_add(o, "app_name", json_object_new_string("kite"));
	api_reply_json(resp, 200, o);
}

void api_get_version(struct api *api, struct http_response *resp)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "firecracker_version", json_object_new_string(api->version));
	api_reply_json(resp, 200, o);
}

static struct json_object *machine_config_obj(const struct api *api)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "vcpu_count", json_object_new_int(api->cfg.vcpus));
	json_object_object_add(o, "mem_size_mib", json_object_new_int64(api->cfg.mem_mib));
	json_object_object_add(o, "smt", json_object_new_boolean(api->cfg.smt));
	json_object_object_add(o, "track_dirty_pages", json_object_new_boolean(api->cfg.track_dirty));
	json_object_object_add(o, "huge_pages", json_object_new_string("None"));
	if (api->cfg.cpu_affinity)
		json_object_object_add(o, "cpu_affinity", json_object_new_string(api->cfg.cpu_affinity));
	if (api->cfg.io_affinity)
		json_object_object_add(o, "io_affinity", json_object_new_string(api->cfg.io_affinity));
	if (api->cfg.sched)
		json_object_object_add(o, "sched", json_object_new_string(api->cfg.sched));
	return o;
}

void api_get_machine_config(struct api *api, struct http_response *resp)
{
	api_reply_json(resp, 200, machine_config_obj(api));
}

static struct json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

char *api_vm_config_json(const struct api *api)
{
	const struct api_config *c = &api->cfg;
	struct json_object *o = json_object_new_object();
	struct json_object *bs = NULL;
	if (c->kernel) {
		bs = json_object_new_object();
		json_object_object_add(bs, "kernel_image_path", json_object_new_string(c->kernel));
		json_object_object_add(bs, "initrd_path", str_or_null(c->initrd));
		json_object_object_add(bs, "boot_args", str_or_null(c->boot_args));
	}
	json_object_object_add(o, "balloon", NULL);
	json_object_object_add(o, "boot-source", bs);
	json_object_object_add(o, "cpu-config", NULL);
	struct json_object *drives = json_object_new_array();
	for (unsigned i = 0; i < c->nr_drives; i++) {
		const struct api_drive *d = &c->drives[i];
		struct json_object *j = json_object_new_object();
		json_object_object_add(j, "drive_id", json_object_new_string(d->id));
		json_object_object_add(j, "partuuid", str_or_null(d->partuuid));
		json_object_object_add(j, "is_root_device", json_object_new_boolean(d->root));
		json_object_object_add(j, "cache_type", json_object_new_string("Unsafe"));
		json_object_object_add(j, "is_read_only", json_object_new_boolean(d->read_only));
		json_object_object_add(j, "path_on_host", json_object_new_string(d->path));
		json_object_object_add(j, "rate_limiter", NULL);
		json_object_object_add(j, "io_engine", json_object_new_string("Async"));
		json_object_array_add(drives, j);
	}
	json_object_object_add(o, "drives", drives);
	struct json_object *lg = NULL;
	if (c->logger_set) {
		lg = json_object_new_object();
		json_object_object_add(lg, "log_path", str_or_null(c->log_path));
		json_object_object_add(lg, "level", str_or_null(c->log_level));
		json_object_object_add(lg, "show_level", json_object_new_boolean(c->show_level));
		json_object_object_add(lg, "show_log_origin", json_object_new_boolean(c->show_origin));
	}
	json_object_object_add(o, "logger", lg);
	json_object_object_add(o, "machine-config", machine_config_obj(api));
	struct json_object *m = NULL;
	if (c->metrics_path) {
		m = json_object_new_object();
		json_object_object_add(m, "metrics_path", json_object_new_string(c->metrics_path));
	}
	json_object_object_add(o, "metrics", m);
	json_object_object_add(o, "mmds-config", NULL);
	struct json_object *ifs = json_object_new_array();
	for (unsigned i = 0; i < c->nr_ifaces; i++) {
		const struct api_iface *f = &c->ifaces[i];
		struct json_object *j = json_object_new_object();
		json_object_object_add(j, "iface_id", json_object_new_string(f->id));
		json_object_object_add(j, "host_dev_name", str_or_null(f->host_dev_name));
		json_object_object_add(j, "guest_mac", str_or_null(f->guest_mac));
		json_object_object_add(j, "rx_rate_limiter", NULL);
		json_object_object_add(j, "tx_rate_limiter", NULL);
		if (f->user_net)
			json_object_object_add(j, "kite_user_net", json_object_new_boolean(true));
		json_object_array_add(ifs, j);
	}
	json_object_object_add(o, "network-interfaces", ifs);
	json_object_object_add(o, "vsock", NULL);
	struct json_object *e = NULL;
	if (c->entropy) {
		e = json_object_new_object();
		json_object_object_add(e, "rate_limiter", NULL);
	}
	json_object_object_add(o, "entropy", e);
	char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return s;
}

void api_get_vm_config(struct api *api, struct http_response *resp)
{
	resp->status = 200;
	resp->body = api_vm_config_json(api);
}

/* ---- the config file ---- */
int api_apply_config(struct api *api, const char *json, size_t len, char *err, size_t errlen)
{
	char why[256];
	struct json_object *o = api_json_parse(json, len, why, sizeof(why));
	if (!o)
		FAIL("invalid JSON: %s", why);
	static const struct api_field f[] = {
		{ "boot-source", F_OBJECT, true },
		{ "machine-config", F_OBJECT, false },
		{ "drives", F_ANY, false },
		{ "network-interfaces", F_ANY, false },
		{ "logger", F_OBJECT, false },
		{ "metrics", F_OBJECT, false },
		{ "entropy", F_OBJECT, false },
		{ "balloon", F_ANY, false },
		{ "vsock", F_ANY, false },
		{ "mmds-config", F_ANY, false },
		{ "cpu-config", F_ANY, false },
	};
	int ret = -EINVAL;
	struct json_object *v;
	if (api_json_check(o, f, N(f), why, sizeof(why))) {
		snprintf(err, errlen, "%s", why);
		goto out;
	}
#define SECTION(name, call) \
	if (json_object_object_get_ex(o, name, &v) && !json_object_is_type(v, json_type_null)) { \
		char inner[900]; size_t il = sizeof(inner); (void)il; \
		if (call) { snprintf(err, errlen, "%s: %s", name, inner); goto out; } \
	}
	SECTION("logger", apply_logger(api, v, inner, il))
	SECTION("metrics", apply_metrics(api, v, inner, il))
	SECTION("boot-source", apply_boot_source(api, v, inner, il))
	SECTION("machine-config", apply_machine_config(api, v, false, inner, il))
	SECTION("entropy", apply_entropy(api, v, inner, il))
	static const char *const lists[] = { "drives", "network-interfaces" };
	for (int k = 0; k < 2; k++) {
		if (!json_object_object_get_ex(o, lists[k], &v) || json_object_is_type(v, json_type_null))
			continue;
		if (!json_object_is_type(v, json_type_array)) {
			snprintf(err, errlen, "%s: expected a list", lists[k]);
			goto out;
		}
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			char inner[900];
			struct json_object *e = json_object_array_get_idx(v, i);
			int r = k == 0 ? apply_drive(api, NULL, e, inner, sizeof(inner))
				       : apply_iface(api, NULL, e, inner, sizeof(inner));
			if (r) {
				snprintf(err, errlen, "%s[%zu]: %s", lists[k], i, inner);
				goto out;
			}
		}
	}
	for (const char *const *u = (const char *const[]){ "balloon", "vsock", "mmds-config",
							     "cpu-config", NULL }; *u; u++)
		if (json_object_object_get_ex(o, *u, &v) && !json_object_is_type(v, json_type_null)) {
			snprintf(err, errlen, "%s is not supported by kite", *u);
			goto out;
		}
	ret = 0;
out:
	json_object_put(o);
	return ret;
}
