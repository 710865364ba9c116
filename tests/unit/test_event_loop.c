#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "util/event_loop.h"

struct counter {
	struct event_loop *el;
	_Atomic int reads, calls;
	bool on_thread;
};

static void on_readable(void *opaque, int fd, uint32_t events)
{
	struct counter *c = opaque;
	char b;
	(void)events;
	if (read(fd, &b, 1) == 1)
		c->reads++;
	c->on_thread = event_loop_on_thread(c->el);
}

static void on_call(void *opaque)
{
	struct counter *c = opaque;
	c->calls++;
}

static void wait_for(_Atomic int *v, int want)
{
	for (int i = 0; i < 400 && atomic_load(v) < want; i++)
		usleep(5000);
}

Test(event_loop, fds_calls_and_stop)
{
	struct counter c = { 0 };
	int p[2];
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(event_loop_create(&c.el), 0);
	cr_assert_eq(event_loop_add(c.el, p[0], EPOLLIN, on_readable, &c), 0);
	cr_assert_eq(event_loop_add(c.el, p[0], EPOLLIN, on_readable, &c), -EEXIST);
	cr_assert_eq(event_loop_call(c.el, on_call, &c), 0); /* queued before start */
	cr_assert_eq(event_loop_start(c.el), 0);
	wait_for(&c.calls, 1);
	cr_assert_eq(c.calls, 1);
	cr_assert_eq(write(p[1], "ab", 2), 2);
	wait_for(&c.reads, 2);
	cr_assert_eq(c.reads, 2);
	cr_assert(c.on_thread);
	/* Paused: no more callbacks, data stays in the pipe. */
	cr_assert_eq(event_loop_mod(c.el, p[0], 0), 0);
	cr_assert_eq(write(p[1], "c", 1), 1);
	usleep(30000);
	cr_assert_eq(c.reads, 2);
	cr_assert_eq(event_loop_mod(c.el, p[0], EPOLLIN), 0);
	wait_for(&c.reads, 3);
	cr_assert_eq(c.reads, 3);
	cr_assert_eq(event_loop_del(c.el, p[0]), 0);
	cr_assert_eq(event_loop_del(c.el, p[0]), -ENOENT);
	cr_assert_eq(write(p[1], "d", 1), 1);
	usleep(30000);
	cr_assert_eq(c.reads, 3);
	event_loop_stop(c.el);
	cr_assert_eq(event_loop_call(c.el, on_call, &c), 0);
	event_loop_destroy(c.el); /* runs what was queued */
	cr_assert_eq(c.calls, 2);
	close(p[0]);
	close(p[1]);
}

Test(event_loop, regular_files_cannot_be_watched)
{
	struct event_loop *el;
	cr_assert_eq(event_loop_create(&el), 0);
	FILE *f = tmpfile();
	cr_assert_eq(event_loop_add(el, fileno(f), EPOLLIN, on_readable, NULL), -EPERM);
	fclose(f);
	event_loop_destroy(el);
	event_loop_destroy(NULL);
}
