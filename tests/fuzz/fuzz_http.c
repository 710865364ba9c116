/* libFuzzer harness for the API: arbitrary bytes into the HTTP parser and
 * the request handlers (through the same http_server_feed the socket
 * uses), plus the config-file path. The VMM hooks are fakes that keep the
 * state machine moving (InstanceStart succeeds, pause/resume count).
 *
 * Input: byte 0 picks the mode, the rest is data.
 *   mode 0-1: a raw byte stream on one connection, split in two reads
 *   mode 2:   data as the body of PUT/PATCH to one of the routes (byte 1)
 *   mode 3:   data as a config file
 * Built with FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION: log and metrics
 * paths then go to /dev/null, so the fuzzer cannot create files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/log.h"

static int fake_start(struct api *a, char *e, size_t l) { (void)a; (void)e; (void)l; return 0; }
static int fake_ok(struct api *a) { (void)a; return 0; }
static int fake_cad(struct api *a, char *e, size_t l) { (void)a; (void)e; (void)l; return 0; }
static int fake_patch(struct api *a, unsigned i, const char *p, char *e, size_t l)
{
	(void)a; (void)i; (void)p; (void)e; (void)l;
	return 0;
}
static const struct api_vmm_ops ops = {
	.start = fake_start, .pause = fake_ok, .resume = fake_ok, .ctrl_alt_del = fake_cad,
	.patch_drive = fake_patch,
};

static const char *const routes[] = {
	"PUT /boot-source", "PUT /machine-config", "PATCH /machine-config", "PUT /drives/rootfs",
	"PATCH /drives/rootfs", "PUT /network-interfaces/eth0", "PATCH /network-interfaces/eth0",
	"PUT /logger", "PUT /metrics", "PUT /entropy", "PUT /actions", "PATCH /vm",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	if (!once) {
		log_set_level(LOG_ERROR);
		once = true;
	}
	if (size < 1)
		return 0;
	struct api api;
	api_init(&api, &ops, NULL, NULL, "fuzz");
	struct http_server s = { .listen_fd = -1, .handler = api_handle, .opaque = &api };
	s.buf = malloc(HTTP_MAX_HEAD + HTTP_MAX_BODY + 1);
	unsigned mode = data[0] & 3;
	data++;
	size--;
	if (mode <= 1) {
		size_t cut = size ? data[0] % (size + 1) : 0;
		if (http_server_feed(&s, (const char *)data, cut, -1))
			http_server_feed(&s, (const char *)data + cut, size - cut, -1);
	} else if (mode == 2 && size >= 1) {
		const char *r = routes[data[0] % (sizeof(routes) / sizeof(routes[0]))];
		/* a kernel that exists, so InstanceStart gets past its check */
		static const char boot[] =
			"PUT /boot-source HTTP/1.1\r\nContent-Length: 36\r\n\r\n"
			"{\"kernel_image_path\": \"/dev/null\"}  ";
		http_server_feed(&s, boot, sizeof(boot) - 1, -1);
		char head[128];
		int n = snprintf(head, sizeof(head), "%s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", r,
				 size - 1);
		if (http_server_feed(&s, head, (size_t)n, -1))
			http_server_feed(&s, (const char *)data + 1, size - 1, -1);
		/* then start, and the same request again after start */
		static const char start[] =
			"PUT /actions HTTP/1.1\r\nContent-Length: 33\r\n\r\n{\"action_type\": \"InstanceStart\"}";
		s.buf_len = 0;
		if (http_server_feed(&s, start, sizeof(start) - 1, -1) &&
		    http_server_feed(&s, head, (size_t)n, -1))
			http_server_feed(&s, (const char *)data + 1, size - 1, -1);
	} else if (mode == 3) {
		char err[512];
		api_apply_config(&api, (const char *)data, size, err, sizeof(err));
		char *c = api_vm_config_json(&api);
		free(c);
	}
	free(s.buf);
	api_destroy(&api);
	log_close_file();
	return 0;
}
