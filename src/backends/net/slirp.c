/* user-mode backend: libslirp on kite's event loop.
 *
 * Everything slirp does happens on the loop thread: frames from the guest
 * (send), its sockets (watched fds), its timers (timerfds). kite's loop has
 * no "before sleeping" hook, so after anything that may change slirp's
 * socket set (a frame in, a socket event, a timer) the backend asks slirp
 * for its poll set again (slirp_pollfds_fill) and brings the loop's watches
 * in line; the fill's timeout arms one more timerfd for slirp's TCP timers.
 * When a watched fd fires, a zero-timeout poll() over the set gives slirp
 * the revents it expects. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <slirp/libslirp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "backends/net/net.h"
#include "util/event_loop.h"
#include "util/log.h"

struct watched {
	int fd;
	uint32_t events;     /* epoll events last set */
};

struct user_net;

struct user_timer {
	struct user_net *un;
	int fd;              /* timerfd, CLOCK_MONOTONIC */
	SlirpTimerId id;
	void *cb_opaque;
};

struct user_net {
	struct net_backend be;   /* first */
	Slirp *slirp;
	/* The poll set of the last fill. */
	struct pollfd *pfd;
	unsigned npfd, pfd_cap;
	/* What the loop watches for slirp. */
	struct watched *w;
	unsigned nw, w_cap;
	int poll_timer;          /* slirp's fill timeout */
	bool started, poll_scheduled, guest_err_logged;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- slirp's poll set <-> the loop's watches ---- */

static int add_poll_cb(int fd, int events, void *opaque)
{
	struct user_net *un = opaque;
	if (un->npfd == un->pfd_cap) {
		unsigned cap = un->pfd_cap ? 2 * un->pfd_cap : 16;
		struct pollfd *p = realloc(un->pfd, cap * sizeof(*p));
		if (!p)
			return -1;
		un->pfd = p;
		un->pfd_cap = cap;
	}
	short ev = 0;
	if (events & SLIRP_POLL_IN) ev |= POLLIN;
	if (events & SLIRP_POLL_OUT) ev |= POLLOUT;
	if (events & SLIRP_POLL_PRI) ev |= POLLPRI;
	un->pfd[un->npfd] = (struct pollfd){ .fd = fd, .events = ev };
	return (int)un->npfd++;
}

static int get_revents_cb(int idx, void *opaque)
{
	struct user_net *un = opaque;
	if (idx < 0 || (unsigned)idx >= un->npfd)
		return 0;
	short r = un->pfd[idx].revents;
	int ev = 0;
	if (r & POLLIN) ev |= SLIRP_POLL_IN;
	if (r & POLLOUT) ev |= SLIRP_POLL_OUT;
	if (r & POLLPRI) ev |= SLIRP_POLL_PRI;
	if (r & POLLERR) ev |= SLIRP_POLL_ERR;
	if (r & POLLHUP) ev |= SLIRP_POLL_HUP;
	return ev;
}

static void poll_now(struct user_net *un);

static void on_fd(void *opaque, int fd, uint32_t events)
{
	(void)fd; (void)events;
	poll_now(opaque);
}

static struct watched *find_watch(struct user_net *un, int fd)
{
	for (unsigned i = 0; i < un->nw; i++)
		if (un->w[i].fd == fd)
			return &un->w[i];
	return NULL;
}

static void unwatch(struct user_net *un, int fd)
{
	struct watched *w = find_watch(un, fd);
	if (!w)
		return;
	event_loop_del(un->be.loop, fd);
	*w = un->w[--un->nw];
}

static void watch(struct user_net *un, int fd, uint32_t events)
{
	struct watched *w = find_watch(un, fd);
	if (w) {
		if (w->events == events)
			return;
		/* The fd number may have been closed and reused behind our
		 * back: when MOD fails, start over. */
		if (event_loop_mod(un->be.loop, fd, events) == 0) {
			w->events = events;
			return;
		}
		unwatch(un, fd);
	}
	if (un->nw == un->w_cap) {
		unsigned cap = un->w_cap ? 2 * un->w_cap : 16;
		struct watched *n = realloc(un->w, cap * sizeof(*n));
		if (!n)
			return;
		un->w = n;
		un->w_cap = cap;
	}
	int ret = event_loop_add(un->be.loop, fd, events, on_fd, un);
	if (ret == -EEXIST) {
		event_loop_del(un->be.loop, fd);
		ret = event_loop_add(un->be.loop, fd, events, on_fd, un);
	}
	if (ret == 0)
		un->w[un->nw++] = (struct watched){ fd, events };
}

/* Ask slirp what it wants watched and for how long it may sleep. */
static void refill(struct user_net *un)
{
	if (!un->started)
		return;
	uint32_t timeout = UINT32_MAX;
	un->npfd = 0;
	slirp_pollfds_fill(un->slirp, &timeout, add_poll_cb, un);

	/* Drop watches slirp no longer asks for, then add/update the rest. */
	for (unsigned i = 0; i < un->nw;) {
		bool wanted = false;
		for (unsigned j = 0; j < un->npfd && !wanted; j++)
			wanted = un->pfd[j].fd == un->w[i].fd;
		if (wanted) {
			i++;
		} else {
			event_loop_del(un->be.loop, un->w[i].fd);
			un->w[i] = un->w[--un->nw];
		}
	}
	for (unsigned j = 0; j < un->npfd; j++) {
		uint32_t ev = 0;
		if (un->pfd[j].events & POLLIN) ev |= EPOLLIN;
		if (un->pfd[j].events & POLLOUT) ev |= EPOLLOUT;
		if (un->pfd[j].events & POLLPRI) ev |= EPOLLPRI;
		watch(un, un->pfd[j].fd, ev);
	}

	struct itimerspec its = { 0 };
	if (timeout != UINT32_MAX) {
		if (timeout == 0)
			timeout = 1;
		its.it_value.tv_sec = timeout / 1000;
		its.it_value.tv_nsec = (long)(timeout % 1000) * 1000000;
	}
	timerfd_settime(un->poll_timer, 0, &its, NULL);
}

static void poll_now(struct user_net *un)
{
	if (!un->started)
		return;
	int err = 0;
	if (un->npfd && poll(un->pfd, un->npfd, 0) < 0)
		err = 1;
	if (err)
		for (unsigned i = 0; i < un->npfd; i++)
			un->pfd[i].revents = 0;
	slirp_pollfds_poll(un->slirp, err, get_revents_cb, un);
	refill(un);
}

static void on_poll_timer(void *opaque, int fd, uint32_t events)
{
	uint64_t v;
	(void)events;
	ssize_t n = read(fd, &v, sizeof(v));
	(void)n;
	poll_now(opaque);
}

static void scheduled_poll(void *opaque)
{
	struct user_net *un = opaque;
	un->poll_scheduled = false;
	poll_now(un);
}

/* ---- slirp's callbacks ---- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct user_net *un = opaque;
	if (un->be.fe.receive) {
		struct iovec iov = { (void *)buf, len };
		un->be.fe.receive(un->be.fe.opaque, &iov, 1);
	}
	return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
	struct user_net *un = opaque;
	if (!un->guest_err_logged) {
		un->guest_err_logged = true;
		kite_warn("user net: guest error: %s (further ones at debug level)", msg);
	} else {
		kite_debug("user net: guest error: %s", msg);
	}
}

static int64_t cb_clock_get_ns(void *opaque)
{
	(void)opaque;
	return now_ns();
}

static void on_slirp_timer(void *opaque, int fd, uint32_t events)
{
	struct user_timer *t = opaque;
	uint64_t v;
	(void)events;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	slirp_handle_timer(t->un->slirp, t->id, t->cb_opaque);
	refill(t->un);
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct user_net *un = opaque;
	struct user_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->un = un;
	t->id = id;
	t->cb_opaque = cb_opaque;
	t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (t->fd < 0 || (un->be.loop && event_loop_add(un->be.loop, t->fd, EPOLLIN,
							on_slirp_timer, t))) {
		if (t->fd >= 0)
			close(t->fd);
		free(t);
		return NULL;
	}
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct user_timer *t = timer;
	(void)opaque;
	if (!t)
		return;
	if (t->un->be.loop)
		event_loop_del(t->un->be.loop, t->fd);
	close(t->fd);
	free(t);
}

/* expire_time: milliseconds on the clock_get_ns clock. */
static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	struct user_timer *t = timer;
	(void)opaque;
	if (!t)
		return;
	struct itimerspec its = { 0 };
	if (expire_ms <= 0)
		expire_ms = 1;
	its.it_value.tv_sec = expire_ms / 1000;
	its.it_value.tv_nsec = (long)(expire_ms % 1000) * 1000000;
	timerfd_settime(t->fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void cb_register_poll_fd(int fd, void *opaque)
{
	(void)fd; (void)opaque; /* the next refill picks it up */
}

/* slirp is about to close fd: forget it first, so a reused number is
 * never mistaken for it. */
static void cb_unregister_poll_fd(int fd, void *opaque)
{
	struct user_net *un = opaque;
	if (un->be.loop)
		unwatch(un, fd);
	for (unsigned i = 0; i < un->npfd; i++)
		if (un->pfd[i].fd == fd)
			un->pfd[i].fd = -1; /* poll() ignores it */
}

static void cb_notify(void *opaque)
{
	struct user_net *un = opaque;
	if (un->started && un->be.loop && !un->poll_scheduled &&
	    event_loop_call(un->be.loop, scheduled_poll, un) == 0)
		un->poll_scheduled = true;
}

static const SlirpCb user_callbacks = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_unregister_poll_fd,
	.notify = cb_notify,
	.timer_new_opaque = cb_timer_new_opaque,
};

/* ---- backend ops ---- */

static struct user_net *to_un(struct net_backend *be) { return (struct user_net *)be; }

static int user_start(struct net_backend *be)
{
	struct user_net *un = to_un(be);
	if (!be->loop || un->started)
		return 0;
	int ret = event_loop_add(be->loop, un->poll_timer, EPOLLIN, on_poll_timer, un);
	if (ret)
		return ret;
	un->started = true;
	/* slirp's first fill must run on the loop thread too. */
	cb_notify(un);
	return 0;
}

static int user_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	struct user_net *un = to_un(be);
	size_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > NET_FRAME_MAX)
		return -EMSGSIZE;
	if (iovcnt == 1) {
		slirp_input(un->slirp, iov[0].iov_base, (int)len);
		return 0;
	}
	uint8_t *buf = malloc(len);
	if (!buf) {
		be->tx_errors++;
		return -ENOMEM;
	}
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	slirp_input(un->slirp, buf, (int)len);
	free(buf);
	return 0;
}

static void user_flush(struct net_backend *be)
{
	refill(to_un(be));
}

static void user_destroy(struct net_backend *be)
{
	struct user_net *un = to_un(be);
	un->started = false;
	for (unsigned i = 0; i < un->nw; i++)
		event_loop_del(be->loop, un->w[i].fd);
	un->nw = 0;
	if (un->slirp)
		slirp_cleanup(un->slirp);
	if (be->loop && un->poll_timer >= 0)
		event_loop_del(be->loop, un->poll_timer);
	if (un->poll_timer >= 0)
		close(un->poll_timer);
	free(un->pfd);
	free(un->w);
	free(un);
}

static const struct net_backend_ops user_ops = {
	.name = "user",
	.start = user_start,
	.send = user_send,
	.flush = user_flush,
	.destroy = user_destroy,
};

static struct in_addr ip4(const char *s)
{
	struct in_addr a;
	inet_pton(AF_INET, s, &a);
	return a;
}

int net_user_create(const struct net_config *cfg, struct event_loop *loop,
		    struct net_backend **out)
{
	struct user_net *un = calloc(1, sizeof(*un));
	if (!un)
		return -ENOMEM;
	un->be.ops = &user_ops;
	un->be.loop = loop;
	snprintf(un->be.name, sizeof(un->be.name), "user");
	un->poll_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (un->poll_timer < 0) {
		int err = errno;
		free(un);
		return -err;
	}

	/* QEMU's classic layout: 10.0.2.0/24, gateway (the host) .2, DNS .3,
	 * DHCP from .15. IPv6 stays off: nothing here needs it. */
	SlirpConfig sc = {
		.version = 4,
		.in_enabled = true,
		.vnetwork = ip4("10.0.2.0"),
		.vnetmask = ip4("255.255.255.0"),
		.vhost = ip4("10.0.2.2"),
		.vhostname = "kite",
		.vdhcp_start = ip4("10.0.2.15"),
		.vnameserver = ip4("10.0.2.3"),
	};
	un->slirp = slirp_new(&sc, &user_callbacks, un);
	if (!un->slirp) {
		kite_err("--net user: libslirp failed to start");
		user_destroy(&un->be);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < cfg->nr_hostfwd; i++) {
		const struct net_hostfwd *f = &cfg->hostfwd[i];
		struct in_addr h = { f->host_addr }, g = { f->guest_addr };
		if (slirp_add_hostfwd(un->slirp, f->udp, h, f->host_port, g, f->guest_port) < 0) {
			int err = errno ? errno : EADDRINUSE;
			char hs[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &h, hs, sizeof(hs));
			kite_err("--net user: cannot forward host %s %s:%u to guest port %u: %s",
				 f->udp ? "udp" : "tcp", hs, f->host_port, f->guest_port, strerror(err));
			user_destroy(&un->be);
			return -err;
		}
	}
	*out = &un->be;
	return 0;
}
