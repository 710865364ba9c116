/* The API's routes and handlers against fake VMM hooks: status codes,
 * Firecracker's error shape, state rules, and the config file. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "devices/legacy/i8042.h"
#include "fake_vm.h"
#include "util/log.h"

static int starts, pauses, resumes, cads;
static int fake_start(struct api *a, char *e, size_t l) { (void)a; (void)e; (void)l; starts++; return 0; }
static int fake_pause(struct api *a) { (void)a; pauses++; return 0; }
static int fake_resume(struct api *a) { (void)a; resumes++; return 0; }
static int fake_cad(struct api *a, char *e, size_t l) { (void)a; (void)e; (void)l; cads++; return 0; }
static const struct api_vmm_ops fake_ops = {
	.start = fake_start, .pause = fake_pause, .resume = fake_resume, .ctrl_alt_del = fake_cad,
};

static struct api api;
static char tmpdir[] = "/tmp/kite-api-test-XXXXXX";
static char kernel[128];

static void setup(void)
{
	starts = pauses = resumes = cads = 0;
	api_init(&api, &fake_ops, NULL, NULL, "9.9.9");
	cr_assert(mkdtemp(tmpdir));
	snprintf(kernel, sizeof(kernel), "%s/vmlinux", tmpdir);
	FILE *f = fopen(kernel, "w");
	fputs("not a kernel", f);
	fclose(f);
}

static void teardown(void)
{
	api_destroy(&api);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
	strcpy(tmpdir, "/tmp/kite-api-test-XXXXXX");
}

static char last[4096]; /* the last response body */

/* One request; returns the status, *body the response body (static). */
static int req(const char *method, const char *path, const char *body, const char **out)
{
	struct http_request r;
	memset(&r, 0, sizeof(r));
	snprintf(r.method, sizeof(r.method), "%s", method);
	snprintf(r.path, sizeof(r.path), "%s", path);
	r.body = body;
	r.body_len = body ? strlen(body) : 0;
	struct http_response resp = { 0, NULL };
	api_handle(&api, &r, &resp);
	snprintf(last, sizeof(last), "%s", resp.body ? resp.body : "");
	free(resp.body);
	if (out)
		*out = last;
	return resp.status;
}

/* body is ignored: the argument order of assert_fault(req(.., &b), b, ..)
 * is unspecified, so the last response is read from `last`. */
static void assert_fault(int status, const char *ignored, const char *needle)
{
	(void)ignored;
	const char *body = last;
	cr_assert_eq(status, 400, "status %d body %s", status, body);
	struct json_object *o = json_tokener_parse(body);
	cr_assert(o, "fault body is JSON: %s", body);
	struct json_object *m;
	cr_assert(json_object_object_get_ex(o, "fault_message", &m), "%s", body);
	cr_assert(strstr(json_object_get_string(m), needle), "'%s' in '%s'", needle,
		  json_object_get_string(m));
	cr_assert_eq(json_object_object_length(o), 1);
	json_object_put(o);
}

TestSuite(api_handlers, .init = setup, .fini = teardown);

Test(api_handlers, instance_info)
{
	const char *b = last;
	cr_assert_eq(req("GET", "/", NULL, &b), 200);
	struct json_object *o = json_tokener_parse(b);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "state")), "Not started");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "app_name")), "kite");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "id")), "anonymous-instance");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "vmm_version")), "9.9.9");
	json_object_put(o);
}

Test(api_handlers, machine_config_put_get_patch)
{
	const char *b = last;
	cr_assert_eq(req("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 1024}", &b), 204);
	cr_assert_eq(req("PATCH", "/machine-config", "{\"mem_size_mib\": 512}", &b), 204);
	cr_assert_eq(req("GET", "/machine-config", NULL, &b), 200);
	struct json_object *o = json_tokener_parse(b);
	cr_assert_eq(json_object_get_int(json_object_object_get(o, "vcpu_count")), 2);
	cr_assert_eq(json_object_get_int(json_object_object_get(o, "mem_size_mib")), 512);
	cr_assert_eq(json_object_get_boolean(json_object_object_get(o, "smt")), 0);
	json_object_put(o);
}

/* kite's extension fields: the command line's strings, checked at PUT */
Test(api_handlers, machine_config_placement)
{
	const char *b = last;
	cr_assert_eq(req("PUT", "/machine-config",
			 "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"cpu_affinity\": \"0=0:1=0\","
			 " \"io_affinity\": \"0\", \"sched\": \"rt:5\"}", &b), 204, "%s", b);
	cr_assert_eq(api.cfg.placement.nr_pins, 2);
	cr_assert_eq(api.cfg.placement.sched, SCHED_KIND_RT);
	cr_assert_eq(req("GET", "/machine-config", NULL, &b), 200);
	struct json_object *o = json_tokener_parse(b);
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "cpu_affinity")), "0=0:1=0");
	cr_assert_str_eq(json_object_get_string(json_object_object_get(o, "sched")), "rt:5");
	json_object_put(o);
	/* PATCH keeps what it does not name */
	cr_assert_eq(req("PATCH", "/machine-config", "{\"sched\": \"normal:200\"}", &b), 204, "%s", b);
	cr_assert_eq(api.cfg.placement.nr_pins, 2);
	cr_assert_eq(api.cfg.placement.sched, SCHED_KIND_NORMAL);
	/* a vCPU the VM does not have; the old placement stays */
	int s = req("PATCH", "/machine-config", "{\"vcpu_count\": 1}", &b);
	assert_fault(s, b, "names vCPU 1 but the VM has 1 vCPU");
	cr_assert_eq(api.cfg.vcpus, 2);
	s = req("PATCH", "/machine-config", "{\"sched\": \"rt:100\"}", &b);
	assert_fault(s, b, "rt:PRIO takes a priority 1..99");
	cr_assert_eq(api.cfg.placement.sched, SCHED_KIND_NORMAL);
	s = req("PATCH", "/machine-config", "{\"cpu_affinity\": 3}", &b);
	assert_fault(s, b, "invalid type");
	/* PUT without them clears them */
	cr_assert_eq(req("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 128}", &b), 204);
	cr_assert(placement_is_default(&api.cfg.placement));
}

Test(api_handlers, machine_config_errors)
{
	const char *b = last;
	int s;
	s = req("PUT", "/machine-config", "{\"vcpu_count\": 2}", &b);
	assert_fault(s, b, "missing field `mem_size_mib`");
	s = req("PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 128, \"x\": 1}", &b);
	assert_fault(s, b, "unknown field `x`");
	s = req("PUT", "/machine-config", "{\"vcpu_count\": \"2\", \"mem_size_mib\": 128}", &b);
	assert_fault(s, b, "invalid type");
	s = req("PUT", "/machine-config", "{\"vcpu_count\": -1, \"mem_size_mib\": 128}", &b);
	assert_fault(s, b, "invalid type");
	s = req("PUT", "/machine-config", "{\"vcpu_count\": 1.5, \"mem_size_mib\": 128}", &b);
	assert_fault(s, b, "invalid type");
	s = req("PUT", "/machine-config", "{\"vcpu_count\": 0, \"mem_size_mib\": 128}", &b);
	assert_fault(s, b, "The vCPU number is invalid");
	s = req("PUT", "/machine-config", "{\"vcpu_count\": 33, \"mem_size_mib\": 128}", &b);
	assert_fault(s, b, "The vCPU number is invalid");
	s = req("PUT", "/machine-config", "{\"vcpu_count\": 3, \"mem_size_mib\": 128, \"smt\": true}", &b);
	assert_fault(s, b, "even number when SMT");
	cr_assert_eq(req("PUT", "/machine-config", "{\"vcpu_count\": 4, \"mem_size_mib\": 128, \"smt\": true}", &b), 204);
	s = req("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 0}", &b);
	assert_fault(s, b, "memory size");
	s = req("PUT", "/machine-config", "{\"vcpu_count\": 1, ", &b);
	assert_fault(s, b, "An error occurred when deserializing the json body");
	s = req("PUT", "/machine-config", "[1]", &b);
	assert_fault(s, b, "expected a map");
	s = req("PUT", "/machine-config", "{} x", &b);
	assert_fault(s, b, "offset 3");
	s = req("PATCH", "/machine-config", "{}", &b);
	assert_fault(s, b, "Empty PATCH request");
	s = req("PUT", "/machine-config", NULL, &b);
	assert_fault(s, b, "Empty PUT request");
	s = req("GET", "/machine-config", "{}", &b);
	assert_fault(s, b, "GET request cannot have a body");
	/* a rejected request changes nothing */
	cr_assert_eq(req("GET", "/machine-config", NULL, &b), 200);
	cr_assert(strstr(b, "\"vcpu_count\":4"));
}

Test(api_handlers, unknown_paths_and_methods)
{
	const char *b = last;
	assert_fault(req("GET", "/nope", NULL, &b), b, "Invalid request method and/or path: GET /nope.");
	assert_fault(req("DELETE", "/", NULL, &b), b, "Invalid request method and/or path");
	assert_fault(req("PUT", "/", "{}", &b), b, "Invalid request method and/or path");
	assert_fault(req("GET", "/actions", NULL, &b), b, "Invalid request method and/or path");
	assert_fault(req("PUT", "/drives/a/b", "{}", &b), b, "Invalid request method and/or path");
	assert_fault(req("PUT", "/drives/bad-id", "{}", &b), b, "Invalid ID");
	assert_fault(req("PUT", "/drives", "{}", &b), b, "Required key drive_id");
}

Test(api_handlers, boot_source)
{
	const char *b = last;
	char body[512];
	assert_fault(req("PUT", "/boot-source", "{\"kernel_image_path\": \"/no/such/kernel\"}", &b), b,
		     "/no/such/kernel");
	assert_fault(req("PUT", "/boot-source", "{\"boot_args\": \"x\"}", &b), b,
		     "missing field `kernel_image_path`");
	snprintf(body, sizeof(body), "{\"kernel_image_path\": \"%s\", \"boot_args\": \"console=ttyS0\"}", kernel);
	cr_assert_eq(req("PUT", "/boot-source", body, &b), 204);
	cr_assert_eq(req("GET", "/vm/config", NULL, &b), 200);
	cr_assert(strstr(b, "\"boot_args\":\"console=ttyS0\""), "%s", b);
}

Test(api_handlers, drives_and_root_cmdline)
{
	const char *b = last;
	char body[512];
	assert_fault(req("PUT", "/drives/rootfs", "{\"drive_id\": \"other\", \"path_on_host\": \"/x\", \"is_root_device\": true, \"is_read_only\": false}", &b),
		     b, "does not match");
	assert_fault(req("PUT", "/drives/rootfs", "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/no/file\", \"is_root_device\": true, \"is_read_only\": false}", &b),
		     b, "/no/file");
	snprintf(body, sizeof(body), "{\"drive_id\": \"data\", \"path_on_host\": \"%s\", \"is_root_device\": false, \"is_read_only\": true}", kernel);
	cr_assert_eq(req("PUT", "/drives/data", body, &b), 204);
	snprintf(body, sizeof(body), "{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", \"is_root_device\": true, \"is_read_only\": false}", kernel);
	cr_assert_eq(req("PUT", "/drives/rootfs", body, &b), 204);
	cr_assert_eq(api.cfg.nr_drives, 2);
	cr_assert_str_eq(api.cfg.drives[0].id, "rootfs", "the root drive is vda");
	snprintf(body, sizeof(body), "{\"drive_id\": \"data\", \"path_on_host\": \"%s\", \"is_root_device\": true}", kernel);
	assert_fault(req("PUT", "/drives/data", body, &b), b, "A root block device already exists!");
	char *cl = api_effective_cmdline(&api);
	cr_assert_str_eq(cl, "root=/dev/vda rw");
	free(cl);
	assert_fault(req("PATCH", "/drives/rootfs", "{\"drive_id\": \"rootfs\", \"path_on_host\": \"/x\"}", &b),
		     b, "not supported before starting");
}

Test(api_handlers, network_interfaces)
{
	const char *b = last;
	cr_assert_eq(req("PUT", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\", \"guest_mac\": \"AA:FC:00:00:00:01\", \"host_dev_name\": \"tap0\"}", &b), 204);
	cr_assert_eq(req("PUT", "/network-interfaces/eth1", "{\"iface_id\": \"eth1\", \"kite_user_net\": true}", &b), 204);
	assert_fault(req("PUT", "/network-interfaces/eth2", "{\"iface_id\": \"eth2\"}", &b), b,
		     "missing field `host_dev_name`");
	assert_fault(req("PUT", "/network-interfaces/eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap0\"}", &b), b,
		     "already in use");
	assert_fault(req("PUT", "/network-interfaces/eth2", "{\"iface_id\": \"eth2\", \"host_dev_name\": \"tap2\", \"guest_mac\": \"zz\"}", &b), b,
		     "invalid MAC");
	cr_assert_eq(req("GET", "/vm/config", NULL, &b), 200);
	cr_assert(strstr(b, "\"host_dev_name\":\"tap0\""), "%s", b);
}

Test(api_handlers, lifecycle_and_state_rules)
{
	const char *b = last;
	char body[512];
	assert_fault(req("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", &b), b,
		     "without kernel configuration");
	assert_fault(req("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", &b), b,
		     "not supported before starting");
	assert_fault(req("PATCH", "/vm", "{\"state\": \"Paused\"}", &b), b, "before starting");
	assert_fault(req("PUT", "/actions", "{\"action_type\": \"Reboot\"}", &b), b, "unknown variant");
	assert_fault(req("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", &b), b,
		     "metrics system is not initialized");
	snprintf(body, sizeof(body), "{\"kernel_image_path\": \"%s\"}", kernel);
	cr_assert_eq(req("PUT", "/boot-source", body, &b), 204);
	cr_assert_eq(req("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", &b), 204);
	cr_assert_eq(starts, 1);
	cr_assert_eq(req("GET", "/", NULL, &b), 200);
	cr_assert(strstr(b, "\"state\":\"Running\""));
	assert_fault(req("PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", &b), b,
		     "not supported after starting");
	assert_fault(req("PUT", "/boot-source", body, &b), b, "not supported after starting");
	assert_fault(req("PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 128}", &b), b,
		     "not supported after starting");
	assert_fault(req("PUT", "/metrics", "{\"metrics_path\": \"/tmp/x\"}", &b), b, "after starting");
	assert_fault(req("PUT", "/entropy", "{}", &b), b, "after starting");
	assert_fault(req("PATCH", "/vm", "{\"state\": \"Stopped\"}", &b), b, "unknown variant");
	cr_assert_eq(req("PATCH", "/vm", "{\"state\": \"Paused\"}", &b), 204);
	cr_assert_eq(req("PATCH", "/vm", "{\"state\": \"Paused\"}", &b), 204);
	cr_assert_eq(pauses, 1);
	cr_assert_eq(req("GET", "/", NULL, &b), 200);
	cr_assert(strstr(b, "\"state\":\"Paused\""));
	cr_assert_eq(req("PATCH", "/vm", "{\"state\": \"Resumed\"}", &b), 204);
	cr_assert_eq(resumes, 1);
	cr_assert_eq(req("PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", &b), 204);
	cr_assert_eq(cads, 1);
	cr_assert_eq(req("PATCH", "/machine-config", "{\"vcpu_count\": 1}", &b), 400);
}

Test(api_handlers, metrics_and_logger)
{
	const char *b = last;
	char body[512], mpath[128], lpath[128];
	snprintf(mpath, sizeof(mpath), "%s/metrics", tmpdir);
	snprintf(lpath, sizeof(lpath), "%s/log", tmpdir);
	snprintf(body, sizeof(body), "{\"metrics_path\": \"%s\"}", mpath);
	cr_assert_eq(req("PUT", "/metrics", body, &b), 204);
	assert_fault(req("PUT", "/metrics", body, &b), b, "Reinitialization of metrics not allowed");
	snprintf(body, sizeof(body), "{\"log_path\": \"%s\", \"level\": \"Info\", \"show_level\": true, \"show_log_origin\": true}", lpath);
	cr_assert_eq(req("PUT", "/logger", body, &b), 204);
	assert_fault(req("PUT", "/logger", "{\"level\": \"Loud\"}", &b), b, "unknown variant");
	req("GET", "/bogus", NULL, &b); /* an error the log file sees */
	cr_assert_eq(req("PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", &b), 204);
	log_close_file();
	FILE *f = fopen(mpath, "r");
	char line[4096];
	cr_assert(fgets(line, sizeof(line), f));
	fclose(f);
	struct json_object *o = json_tokener_parse(line);
	cr_assert(o, "metrics line is JSON: %s", line);
	struct json_object *a = json_object_object_get(o, "api_server");
	cr_assert(json_object_get_int(json_object_object_get(a, "requests")) >= 5);
	cr_assert(json_object_get_int(json_object_object_get(a, "errors")) >= 3);
	json_object_put(o);
	f = fopen(lpath, "r");
	cr_assert(f);
	bool seen = false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "/bogus") && strstr(line, ":INFO:") && strstr(line, "router.c"))
			seen = true;
	fclose(f);
	cr_assert(seen, "the API error is in the log file with level and origin");
}

Test(api_handlers, config_file)
{
	char json[1024], err[512];
	snprintf(json, sizeof(json),
		 "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"boot_args\": \"quiet\"},"
		 " \"drives\": [{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", \"is_root_device\": true, \"is_read_only\": true}],"
		 " \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256},"
		 " \"network-interfaces\": []}", kernel, kernel);
	cr_assert_eq(api_apply_config(&api, json, strlen(json), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(api.cfg.vcpus, 2);
	char *cl = api_effective_cmdline(&api);
	cr_assert_str_eq(cl, "quiet root=/dev/vda ro");
	free(cl);
	const char *bad = "{\"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256}}";
	cr_assert_neq(api_apply_config(&api, bad, strlen(bad), err, sizeof(err)), 0);
	cr_assert(strstr(err, "boot-source"), "%s", err);
	bad = "{\"boot-source\": {\"kernel_image_path\": 1}}";
	cr_assert_neq(api_apply_config(&api, bad, strlen(bad), err, sizeof(err)), 0);
	cr_assert(strstr(err, "invalid type"), "%s", err);
}

/* SendCtrlAltDel's keyboard side: the sequence reaches the guest, in scan
 * code set 1 when translation is on. */
Test(api_handlers, i8042_ctrl_alt_del)
{
	struct vm vm;
	struct vm_config cfg;
	struct fake_engine fe;
	struct i8042 *k;
	fake_vm_init(&vm, &cfg, &fe, 0);
	cr_assert_eq(i8042_create(&vm, &k), 0);
	pio_out(&vm, 0x64, 1, 0x60); /* write the command byte: xlate + kbd int */
	pio_out(&vm, 0x60, 1, I8042_CTR_XLATE | I8042_CTR_KBDINT);
	cr_assert_eq(i8042_send_ctrl_alt_del(k), 0);
	static const uint8_t want[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };
	for (size_t i = 0; i < sizeof(want); i++) {
		cr_assert(pio_in(&vm, 0x64, 1) & I8042_STR_OBF);
		cr_assert_eq(pio_in(&vm, 0x60, 1), want[i], "byte %zu", i);
	}
	cr_assert_eq(pio_in(&vm, 0x64, 1) & I8042_STR_OBF, 0);
	vm_destroy(&vm);
}
