#include "util/event_loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"

struct watch {
	int fd;
	bool removed;       /* freed by the loop thread after its batch */
	event_fd_fn fn;
	void *opaque;
	struct watch *next;
};

struct call {
	event_call_fn fn;
	void *opaque;
	struct call *next;
};

struct event_loop {
	int epfd;
	int wakefd;         /* eventfd: queued calls or stop */
	pthread_t thread;
	bool running;
	pthread_mutex_t lock; /* watches, calls, stop */
	struct watch *watches;
	struct call *calls, **calls_tail;
	bool stop;
};

int event_loop_create(struct event_loop **out)
{
	struct event_loop *el = calloc(1, sizeof(*el));
	if (!el)
		return -ENOMEM;
	el->epfd = epoll_create1(EPOLL_CLOEXEC);
	el->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (el->epfd < 0 || el->wakefd < 0) {
		int ret = -errno;
		if (el->epfd >= 0)
			close(el->epfd);
		if (el->wakefd >= 0)
			close(el->wakefd);
		free(el);
		return ret;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(el->epfd, EPOLL_CTL_ADD, el->wakefd, &ev)) {
		int ret = -errno;
		close(el->epfd);
		close(el->wakefd);
		free(el);
		return ret;
	}
	pthread_mutex_init(&el->lock, NULL);
	el->calls_tail = &el->calls;
	*out = el;
	return 0;
}

static void wake(struct event_loop *el)
{
	uint64_t one = 1;
	ssize_t n = write(el->wakefd, &one, sizeof(one));
	(void)n; /* EAGAIN only when the counter is saturated: already awake */
}

/* Run every queued call; new ones queued meanwhile run too. */
static void run_calls(struct event_loop *el)
{
	for (;;) {
		pthread_mutex_lock(&el->lock);
		struct call *c = el->calls;
		el->calls = NULL;
		el->calls_tail = &el->calls;
		pthread_mutex_unlock(&el->lock);
		if (!c)
			return;
		while (c) {
			struct call *next = c->next;
			c->fn(c->opaque);
			free(c);
			c = next;
		}
	}
}

static void free_removed(struct event_loop *el)
{
	pthread_mutex_lock(&el->lock);
	for (struct watch **p = &el->watches; *p;) {
		if ((*p)->removed) {
			struct watch *w = *p;
			*p = w->next;
			free(w);
		} else {
			p = &(*p)->next;
		}
	}
	pthread_mutex_unlock(&el->lock);
}

static void *loop_thread(void *arg)
{
	struct event_loop *el = arg;
	struct epoll_event evs[16];
	for (;;) {
		int n = epoll_wait(el->epfd, evs, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kite_err("event loop: epoll_wait failed: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct watch *w = evs[i].data.ptr;
			if (!w) {
				uint64_t v;
				ssize_t r = read(el->wakefd, &v, sizeof(v));
				(void)r;
				continue;
			}
			pthread_mutex_lock(&el->lock);
			bool live = !w->removed;
			pthread_mutex_unlock(&el->lock);
			if (live)
				w->fn(w->opaque, w->fd, evs[i].events);
		}
		run_calls(el);
		free_removed(el);
		pthread_mutex_lock(&el->lock);
		bool stop = el->stop;
		pthread_mutex_unlock(&el->lock);
		if (stop)
			break;
	}
	run_calls(el);
	return NULL;
}

int event_loop_start(struct event_loop *el)
{
	if (el->running)
		return 0;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	el->stop = false;
	int ret = -pthread_create(&el->thread, NULL, loop_thread, el);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		return ret;
	el->running = true;
	return 0;
}

void event_loop_stop(struct event_loop *el)
{
	if (!el)
		return;
	if (el->running) {
		pthread_mutex_lock(&el->lock);
		el->stop = true;
		pthread_mutex_unlock(&el->lock);
		wake(el);
		pthread_join(el->thread, NULL);
		el->running = false;
	}
	run_calls(el);
	free_removed(el);
}

void event_loop_destroy(struct event_loop *el)
{
	if (!el)
		return;
	event_loop_stop(el);
	while (el->watches) {
		struct watch *w = el->watches;
		el->watches = w->next;
		free(w);
	}
	close(el->epfd);
	close(el->wakefd);
	pthread_mutex_destroy(&el->lock);
	free(el);
}

static struct watch *find_live(struct event_loop *el, int fd)
{
	for (struct watch *w = el->watches; w; w = w->next)
		if (w->fd == fd && !w->removed)
			return w;
	return NULL;
}

int event_loop_add(struct event_loop *el, int fd, uint32_t events, event_fd_fn fn, void *opaque)
{
	struct watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct watch){ .fd = fd, .fn = fn, .opaque = opaque };
	pthread_mutex_lock(&el->lock);
	int ret = 0;
	if (find_live(el, fd)) {
		ret = -EEXIST;
	} else {
		struct epoll_event ev = { .events = events, .data.ptr = w };
		if (epoll_ctl(el->epfd, EPOLL_CTL_ADD, fd, &ev))
			ret = -errno;
	}
	if (!ret) {
		w->next = el->watches;
		el->watches = w;
	}
	pthread_mutex_unlock(&el->lock);
	if (ret)
		free(w);
	return ret;
}

int event_loop_mod(struct event_loop *el, int fd, uint32_t events)
{
	pthread_mutex_lock(&el->lock);
	int ret = 0;
	struct watch *w = find_live(el, fd);
	if (!w) {
		ret = -ENOENT;
	} else {
		struct epoll_event ev = { .events = events, .data.ptr = w };
		if (epoll_ctl(el->epfd, EPOLL_CTL_MOD, fd, &ev))
			ret = -errno;
	}
	pthread_mutex_unlock(&el->lock);
	return ret;
}

int event_loop_del(struct event_loop *el, int fd)
{
	pthread_mutex_lock(&el->lock);
	int ret = 0;
	struct watch *w = find_live(el, fd);
	if (!w) {
		ret = -ENOENT;
	} else {
		/* The fd may be closed already (EBADF): the watch goes anyway. */
		epoll_ctl(el->epfd, EPOLL_CTL_DEL, fd, NULL);
		w->removed = true;
	}
	pthread_mutex_unlock(&el->lock);
	return ret;
}

int event_loop_call(struct event_loop *el, event_call_fn fn, void *opaque)
{
	struct call *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = (struct call){ fn, opaque, NULL };
	pthread_mutex_lock(&el->lock);
	*el->calls_tail = c;
	el->calls_tail = &c->next;
	pthread_mutex_unlock(&el->lock);
	wake(el);
	return 0;
}

bool event_loop_on_thread(struct event_loop *el)
{
	return el->running && pthread_equal(pthread_self(), el->thread);
}
