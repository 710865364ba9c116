/* --serial stdio: guest output to kite's stdout, host input from stdin.
 *
 * When stdin is a terminal it is put in raw mode (keys go to the guest
 * unchanged, Ctrl-C included) and restored on every way out: destroy
 * (normal return, VM error, SIGINT/SIGTERM taken by main.c's sigwait, all
 * of which end in vm_destroy) and an atexit handler for an exit() on any
 * other path. That handler needs the saved terminal settings in a static:
 * the one piece of global state here, because the terminal is process-wide.
 *
 * Escapes (as QEMU's -nographic): Ctrl-A x stops the VM, Ctrl-A Ctrl-A
 * sends one Ctrl-A; Ctrl-A followed by anything else sends both bytes.
 * stdin that is not pollable (a regular file, /dev/null) or reaches EOF
 * just means no input: output keeps working. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <termios.h>
#include <unistd.h>

#include "backends/char/char.h"
#include "util/event_loop.h"
#include "util/log.h"
#include "vmm/vm.h"

#define CTRL_A 0x01

struct char_stdio {
	struct char_backend be;
	int in_fd, out_fd;
	/* Input state, touched by the loop thread (reads, EOF) and by the
	 * frontend's set_rx from a vCPU thread. A paused input is taken out
	 * of epoll entirely: a hung-up pipe would otherwise report EPOLLHUP
	 * over and over while the guest is not reading. */
	pthread_mutex_t lock;
	bool watching;     /* stdin is in the event loop */
	bool paused;       /* the frontend is full */
	bool closed;       /* EOF, an error, or Ctrl-A x: no more input */
	bool escape;       /* the last input byte was Ctrl-A (loop thread only) */
	bool quit;         /* Ctrl-A x seen (loop thread only) */
	bool out_failed;
};

/* Process-wide terminal state (see above). */
static pthread_mutex_t tty_lock = PTHREAD_MUTEX_INITIALIZER;
static struct termios tty_saved;
static bool tty_raw;
static bool tty_atexit_registered;

static void tty_restore(void)
{
	pthread_mutex_lock(&tty_lock);
	if (tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
		tty_raw = false;
	}
	pthread_mutex_unlock(&tty_lock);
}

static void tty_make_raw(void)
{
	if (!isatty(STDIN_FILENO))
		return;
	pthread_mutex_lock(&tty_lock);
	struct termios t;
	if (!tty_raw && tcgetattr(STDIN_FILENO, &tty_saved) == 0) {
		t = tty_saved;
		cfmakeraw(&t);
		/* Keep output post-processing: guests that print a bare \n
		 * still get a new line at column 0. */
		t.c_oflag = tty_saved.c_oflag;
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
			tty_raw = true;
		if (!tty_atexit_registered) {
			atexit(tty_restore);
			tty_atexit_registered = true;
		}
	}
	pthread_mutex_unlock(&tty_lock);
}

static void stdio_write(struct char_backend *be, const uint8_t *buf, size_t len)
{
	struct char_stdio *s = (struct char_stdio *)be;
	int ret = char_write_all(s->out_fd, buf, len);
	if (ret && !s->out_failed) {
		/* A closed stdout (EPIPE) is the user's choice: say it once. */
		s->out_failed = true;
		kite_debug("serial: stdout write failed: %s", strerror(-ret));
	}
}

static void stdin_ready(void *opaque, int fd, uint32_t events);

/* Called with s->lock. */
static void update_watch(struct char_stdio *s)
{
	bool want = s->be.loop && !s->paused && !s->closed;
	if (want && !s->watching) {
		int ret = event_loop_add(s->be.loop, s->in_fd, EPOLLIN, stdin_ready, s);
		if (ret == 0) {
			s->watching = true;
		} else {
			/* A regular file or /dev/null cannot be polled: no input. */
			kite_debug("serial: stdin cannot be polled (%s): no console input",
				   strerror(-ret));
			s->closed = true;
		}
	} else if (!want && s->watching) {
		event_loop_del(s->be.loop, s->in_fd);
		s->watching = false;
	}
}

static void stop_input(struct char_stdio *s)
{
	pthread_mutex_lock(&s->lock);
	s->closed = true;
	update_watch(s);
	pthread_mutex_unlock(&s->lock);
}

/* Turn host bytes into guest bytes, acting on the escapes. Returns how
 * many bytes of out are to be delivered (never more than len). */
static size_t filter_escapes(struct char_stdio *s, const uint8_t *in, size_t len, uint8_t *out)
{
	size_t n = 0;
	for (size_t i = 0; i < len && !s->quit; i++) {
		uint8_t c = in[i];
		if (s->escape) {
			s->escape = false;
			if (c == 'x' || c == 'X') {
				s->quit = true;
				if (s->be.vm)
					vm_request_stop(s->be.vm, VM_STOP_SIGNAL, 0);
				break;
			}
			if (c != CTRL_A)
				out[n++] = CTRL_A;
			out[n++] = c;
		} else if (c == CTRL_A) {
			s->escape = true;
		} else {
			out[n++] = c;
		}
	}
	return n;
}

static void stdin_ready(void *opaque, int fd, uint32_t events)
{
	struct char_stdio *s = opaque;
	(void)events;
	size_t room = s->be.fe.can_receive ? s->be.fe.can_receive(s->be.fe.opaque) : 0;
	if (room == 0)
		return; /* the frontend paused us (see char.h) */
	uint8_t in[64], out[64 + 1];
	/* One byte less than the room: "Ctrl-A c" after a held Ctrl-A
	 * yields two bytes from one. */
	size_t want = room > 1 ? room - 1 : 1;
	if (want > sizeof(in))
		want = sizeof(in);
	ssize_t r = read(fd, in, want);
	if (r < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (r <= 0) {
		/* EOF or a hung-up terminal: no more input, not an error. */
		kite_debug("serial: stdin closed (%s)", r ? strerror(errno) : "EOF");
		stop_input(s);
		return;
	}
	size_t n = filter_escapes(s, in, (size_t)r, out);
	if (n > room) /* only when room was 1 and an escape doubled: keep one */
		n = room;
	if (n && s->be.fe.receive)
		s->be.fe.receive(s->be.fe.opaque, out, n);
	if (s->quit)
		stop_input(s);
}

static int stdio_start(struct char_backend *be)
{
	struct char_stdio *s = (struct char_stdio *)be;
	pthread_mutex_lock(&s->lock);
	update_watch(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void stdio_set_rx(struct char_backend *be, bool enable)
{
	struct char_stdio *s = (struct char_stdio *)be;
	pthread_mutex_lock(&s->lock);
	s->paused = !enable;
	update_watch(s);
	pthread_mutex_unlock(&s->lock);
}

static void stdio_destroy(struct char_backend *be)
{
	struct char_stdio *s = (struct char_stdio *)be;
	stop_input(s);
	tty_restore();
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct char_backend_ops stdio_ops = {
	.name = "stdio", .write = stdio_write, .start = stdio_start,
	.set_rx = stdio_set_rx, .destroy = stdio_destroy,
};

int char_stdio_create_fds(struct vm *vm, struct event_loop *loop, int in_fd, int out_fd,
			  struct char_backend **out)
{
	struct char_stdio *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->be.ops = &stdio_ops;
	s->be.vm = vm;
	s->be.loop = loop;
	s->in_fd = in_fd;
	s->out_fd = out_fd;
	if (loop && in_fd == STDIN_FILENO)
		tty_make_raw();
	*out = &s->be;
	return 0;
}

int char_stdio_create(struct vm *vm, struct event_loop *loop, struct char_backend **out)
{
	return char_stdio_create_fds(vm, loop, STDIN_FILENO, STDOUT_FILENO, out);
}
