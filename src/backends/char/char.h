/* Character backends: the host side of a serial port (stdio, a file, or
 * nothing). A backend knows nothing of UARTs; a frontend (serial8250)
 * attaches to it and is called back with input on the event loop thread.
 *
 * Flow control: the backend asks fe_can_receive() how many bytes the
 * frontend takes now and reads no more than that. A frontend that is full
 * calls char_backend_set_rx(be, false) and turns it back on when the guest
 * has made room, so host input is never dropped while the guest is slow. */
#ifndef KITE_BACKENDS_CHAR_CHAR_H
#define KITE_BACKENDS_CHAR_CHAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"

struct vm;
struct event_loop;
struct char_backend;

struct char_frontend {
	/* Bytes the frontend can take right now (loop thread). */
	size_t (*can_receive)(void *opaque);
	/* Deliver len <= can_receive() bytes (loop thread). */
	void (*receive)(void *opaque, const uint8_t *buf, size_t len);
	void *opaque;
};

struct char_backend_ops {
	const char *name;
	/* Write guest output; all of it, blocking if the host is slow. */
	void (*write)(struct char_backend *be, const uint8_t *buf, size_t len);
	/* Start watching host input (after the frontend attached). */
	int (*start)(struct char_backend *be);
	/* Pause/resume reading host input. */
	void (*set_rx)(struct char_backend *be, bool enable);
	void (*destroy)(struct char_backend *be);
};

struct char_backend {
	const struct char_backend_ops *ops;
	struct vm *vm;              /* for Ctrl-A x: vm_request_stop */
	struct event_loop *loop;
	struct char_frontend fe;
};

/* Create the backend for cfg->serial / cfg->serial_path. Errors are
 * reported to the user (naming the path) and returned as a negative errno.
 * vm and loop may be NULL for a backend with no input (tests). */
int char_backend_create(const struct vm_config *cfg, struct vm *vm, struct event_loop *loop,
			struct char_backend **out);

int char_stdio_create(struct vm *vm, struct event_loop *loop, struct char_backend **out);
/* The same over any pair of fds (tests); raw mode only for stdin. */
int char_stdio_create_fds(struct vm *vm, struct event_loop *loop, int in_fd, int out_fd,
			  struct char_backend **out);
int char_file_create(const char *path, struct char_backend **out);
int char_null_create(struct char_backend **out);

static inline void char_backend_attach(struct char_backend *be, const struct char_frontend *fe)
{
	be->fe = *fe;
}
static inline void char_backend_write(struct char_backend *be, const uint8_t *buf, size_t len)
{
	be->ops->write(be, buf, len);
}
static inline int char_backend_start(struct char_backend *be)
{
	return be->ops->start ? be->ops->start(be) : 0;
}
static inline void char_backend_set_rx(struct char_backend *be, bool enable)
{
	if (be->ops->set_rx)
		be->ops->set_rx(be, enable);
}
static inline void char_backend_destroy(struct char_backend *be)
{
	if (be)
		be->ops->destroy(be);
}

/* Write all of buf to fd, retrying short writes and EINTR. 0 or -errno. */
int char_write_all(int fd, const uint8_t *buf, size_t len);

#endif
