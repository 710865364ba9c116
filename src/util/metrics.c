#include "util/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
}

void metrics_close(struct metrics *m)
{
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

int metrics_open(struct metrics *m, const char *path)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	path = "/dev/null"; /* the fuzzer must not create files */
#endif
	/* O_NONBLOCK: Firecracker's users often point this at a FIFO, and a
	 * reader that went away must not hang the VMM. */
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
	if (fd < 0)
		return -errno;
	metrics_close(m);
	m->fd = fd;
	return 0;
}

bool metrics_active(const struct metrics *m)
{
	return m->fd >= 0;
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

void metrics_add_api(const struct metrics *m, struct json_object *line)
{
	struct json_object *a = json_object_new_object();
	add_u64(a, "requests", atomic_load(&m->api_requests));
	add_u64(a, "errors", atomic_load(&m->api_errors));
	add_u64(a, "get_count", atomic_load(&m->api_get));
	add_u64(a, "put_count", atomic_load(&m->api_put));
	add_u64(a, "patch_count", atomic_load(&m->api_patch));
	add_u64(a, "actions_count", atomic_load(&m->actions));
	add_u64(a, "instance_starts", atomic_load(&m->instance_starts));
	add_u64(a, "pauses", atomic_load(&m->pauses));
	add_u64(a, "resumes", atomic_load(&m->resumes));
	add_u64(a, "ctrl_alt_dels", atomic_load(&m->ctrl_alt_dels));
	add_u64(a, "flush_metrics", atomic_load(&m->flush_metrics));
	add_u64(a, "config_errors", atomic_load(&m->config_errors));
	json_object_object_add(line, "api_server", a);
}

int metrics_write(struct metrics *m, struct json_object *line)
{
	if (m->fd < 0)
		return -ENOENT;
	size_t len;
	const char *s = json_object_to_json_string_length(line, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	/* one write per line: a reader never sees half a line from us */
	char *buf = malloc(len + 1);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, s, len);
	buf[len] = '\n';
	ssize_t w = write(m->fd, buf, len + 1);
	int err = w < 0 ? -errno : 0;
	free(buf);
	if (!err)
		m->lines++;
	return err;
}
