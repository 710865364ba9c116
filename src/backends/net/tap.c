/* tap backend: frames to and from an existing tap device. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backends/net/net.h"
#include "util/event_loop.h"
#include "util/log.h"

/* Frames read per wake-up before giving other fds a turn. */
#define TAP_RX_BATCH 64

struct tap {
	struct net_backend be;   /* first */
	int fd;
	bool watching, paused, dead;
	bool logged;             /* one message per tap, whatever fails */
	uint8_t *rxbuf;          /* vnet header + one frame */
	size_t rxbuf_len;
};

static struct tap *to_tap(struct net_backend *be) { return (struct tap *)be; }

/* The tap is gone (deleted at runtime) or broken: say so once, stop
 * watching it; sends fail and are counted from now on. */
static void tap_kill(struct tap *t, const char *what, int err)
{
	if (t->dead)
		return;
	t->dead = true;
	if (!t->logged)
		kite_warn("tap '%s': %s: %s; the NIC is disconnected (the VM keeps running)",
			  t->be.name, what, strerror(err));
	t->logged = true;
	if (t->watching && t->be.loop) {
		event_loop_del(t->be.loop, t->fd);
		t->watching = false;
	}
}

static void tap_readable(void *opaque, int fd, uint32_t events)
{
	struct tap *t = opaque;
	(void)fd;
	if ((events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN)) {
		t->be.rx_errors++;
		tap_kill(t, "device error", EBADFD);
		return;
	}
	for (int i = 0; i < TAP_RX_BATCH && !t->dead; i++) {
		if (!t->be.fe.can_receive(t->be.fe.opaque)) {
			/* The guest has no room: let the kernel's queue hold
			 * frames until the frontend calls set_rx(true). */
			if (!t->paused) {
				t->paused = true;
				event_loop_mod(t->be.loop, t->fd, 0);
			}
			return;
		}
		ssize_t n = read(t->fd, t->rxbuf, t->rxbuf_len);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			t->be.rx_errors++;
			tap_kill(t, "read failed", errno);
			return;
		}
		if ((size_t)n <= t->be.vnet_hdr_len) {
			t->be.rx_errors++;
			continue;
		}
		struct iovec iov = { t->rxbuf, (size_t)n };
		t->be.fe.receive(t->be.fe.opaque, &iov, 1);
	}
}

static int tap_start(struct net_backend *be)
{
	struct tap *t = to_tap(be);
	if (!be->loop || t->watching)
		return 0;
	int ret = event_loop_add(be->loop, t->fd, EPOLLIN, tap_readable, t);
	if (ret) {
		kite_err("tap '%s': cannot watch it: %s", be->name, strerror(-ret));
		return ret;
	}
	t->watching = true;
	return 0;
}

static void tap_set_rx(struct net_backend *be, bool enable)
{
	struct tap *t = to_tap(be);
	if (!t->watching || t->dead || t->paused == !enable)
		return;
	t->paused = !enable;
	event_loop_mod(be->loop, t->fd, enable ? EPOLLIN : 0);
}

static int tap_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	struct tap *t = to_tap(be);
	if (t->dead) {
		be->tx_errors++;
		return -EBADFD;
	}
	ssize_t n = writev(t->fd, iov, iovcnt);
	if (n >= 0)
		return 0;
	int err = errno;
	be->tx_errors++;
	if (err == EBADFD || err == ENODEV || err == EIO) {
		tap_kill(t, "write failed", err);
	} else if (!t->logged) {
		/* Transient (a full queue, a frame the kernel refuses): once. */
		t->logged = true;
		kite_warn("tap '%s': write failed: %s (further errors only counted)", be->name,
			  strerror(err));
	}
	return -err;
}

static unsigned to_tun_flags(unsigned off)
{
	unsigned f = 0;
	if (off & NET_OFFLOAD_CSUM) f |= TUN_F_CSUM;
	if (off & NET_OFFLOAD_TSO4) f |= TUN_F_TSO4;
	if (off & NET_OFFLOAD_TSO6) f |= TUN_F_TSO6;
	if (off & NET_OFFLOAD_ECN)  f |= TUN_F_TSO_ECN;
	if (off & NET_OFFLOAD_UFO)  f |= TUN_F_UFO;
	return f;
}

static int tap_set_offload(struct net_backend *be, unsigned off)
{
	struct tap *t = to_tap(be);
	if (!be->vnet_hdr_len)
		return off ? -EINVAL : 0;
	/* TSO without checksum offload makes no sense to the kernel. */
	if (!(off & NET_OFFLOAD_CSUM))
		off = 0;
	if (ioctl(t->fd, TUNSETOFFLOAD, (unsigned long)to_tun_flags(off & be->offloads)))
		return -errno;
	return 0;
}

static void tap_destroy(struct net_backend *be)
{
	struct tap *t = to_tap(be);
	if (t->watching && be->loop)
		event_loop_del(be->loop, t->fd);
	close(t->fd);
	free(t->rxbuf);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.name = "tap",
	.start = tap_start,
	.send = tap_send,
	.set_rx = tap_set_rx,
	.set_offload = tap_set_offload,
	.destroy = tap_destroy,
};

/* Offloads the kernel accepts on this tap: try the full set, then without
 * UFO (removed from some kernels), then without ECN. */
static unsigned probe_offloads(int fd)
{
	static const unsigned tries[] = {
		NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN | NET_OFFLOAD_UFO,
		NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN,
		NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6,
		NET_OFFLOAD_CSUM,
	};
	unsigned got = 0;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		if (!ioctl(fd, TUNSETOFFLOAD, (unsigned long)to_tun_flags(tries[i]))) {
			got = tries[i];
			break;
		}
	}
	/* Nothing is negotiated yet: the guest gets only complete frames. */
	ioctl(fd, TUNSETOFFLOAD, 0UL);
	return got;
}

int net_tap_create(const char *ifname, struct event_loop *loop, struct net_backend **out)
{
	/* TUNSETIFF would create a missing device (we may be root): insist on
	 * an existing one, as the option promises. */
	if (if_nametoindex(ifname) == 0) {
		kite_err("--net tap=%s: no network interface '%s' (create it first, e.g. "
			 "`ip tuntap add dev %s mode tap`)", ifname, ifname, ifname);
		return -ENODEV;
	}
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		kite_err("--net tap=%s: cannot open /dev/net/tun: %s", ifname, strerror(err));
		return -err;
	}
	unsigned features = 0;
	if (ioctl(fd, TUNGETFEATURES, &features))
		features = 0;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (features & IFF_VNET_HDR)
		ifr.ifr_flags |= IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		int err = errno;
		kite_err("--net tap=%s: cannot attach to '%s': %s%s", ifname, ifname, strerror(err),
			 err == EINVAL ? " (is it a tap device, not tun?)" :
			 err == EBUSY ? " (is another program attached to it?)" :
			 err == EPERM ? " (not permitted: is it owned by another user?)" : "");
		close(fd);
		return -err;
	}
	struct tap *t = calloc(1, sizeof(*t));
	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	t->fd = fd;
	t->be.ops = &tap_ops;
	t->be.loop = loop;
	snprintf(t->be.name, sizeof(t->be.name), "%s", ifname);
	if (ifr.ifr_flags & IFF_VNET_HDR) {
		int len = NET_VNET_HDR_LEN;
		if (ioctl(fd, TUNSETVNETHDRSZ, &len) == 0) {
			t->be.vnet_hdr_len = NET_VNET_HDR_LEN;
			t->be.offloads = probe_offloads(fd);
		} else {
			kite_warn("tap '%s': no 12-byte vnet header (%s): offloads off", ifname,
				  strerror(errno));
			/* The kernel still prepends its 10-byte header: reopen without. */
			close(fd);
			free(t);
			fd = -1;
		}
	}
	if (fd < 0) {
		fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
		if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr)) {
			int err = errno;
			kite_err("--net tap=%s: cannot attach to '%s': %s", ifname, ifname,
				 strerror(err));
			if (fd >= 0)
				close(fd);
			return -err;
		}
		t = calloc(1, sizeof(*t));
		if (!t) {
			close(fd);
			return -ENOMEM;
		}
		t->fd = fd;
		t->be.ops = &tap_ops;
		t->be.loop = loop;
		snprintf(t->be.name, sizeof(t->be.name), "%s", ifname);
	}
	t->rxbuf_len = t->be.vnet_hdr_len + NET_FRAME_MAX;
	t->rxbuf = malloc(t->rxbuf_len);
	if (!t->rxbuf) {
		tap_destroy(&t->be);
		return -ENOMEM;
	}
	kite_info("tap '%s': attached%s, offloads 0x%x", ifname,
		  t->be.vnet_hdr_len ? " with vnet header" : "", t->be.offloads);
	*out = &t->be;
	return 0;
}
