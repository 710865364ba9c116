/* --serial file:PATH: guest output goes to PATH (created or truncated, as
 * QEMU's file chardev does); there is no input. Output is written through
 * with write(2), so nothing is buffered in kite and nothing is lost at exit. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/char/char.h"
#include "util/log.h"

struct char_file {
	struct char_backend be;
	int fd;
	bool failed; /* a write error was reported once already */
};

static void file_write(struct char_backend *be, const uint8_t *buf, size_t len)
{
	struct char_file *f = (struct char_file *)be;
	int ret = char_write_all(f->fd, buf, len);
	if (ret && !f->failed) {
		f->failed = true;
		kite_err("serial output file: write failed: %s", strerror(-ret));
	}
}

static void file_destroy(struct char_backend *be)
{
	struct char_file *f = (struct char_file *)be;
	close(f->fd);
	free(f);
}

static const struct char_backend_ops file_ops = {
	.name = "file", .write = file_write, .destroy = file_destroy,
};

int char_file_create(const char *path, struct char_backend **out)
{
	struct char_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (f->fd < 0) {
		int ret = -errno;
		kite_err("cannot open serial output file '%s': %s", path, strerror(errno));
		free(f);
		return ret;
	}
	f->be.ops = &file_ops;
	*out = &f->be;
	return 0;
}
