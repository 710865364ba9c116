#include "backends/char/char.h"

#include <errno.h>
#include <unistd.h>

int char_write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int char_backend_create(const struct vm_config *cfg, struct vm *vm, struct event_loop *loop,
			struct char_backend **out)
{
	switch (cfg->serial) {
	case SERIAL_STDIO:
		return char_stdio_create(vm, loop, out);
	case SERIAL_FILE:
		return char_file_create(cfg->serial_path, out);
	case SERIAL_NONE:
		break;
	}
	return char_null_create(out);
}
