/* Network backends: the host side of a NIC, knowing nothing of virtio.
 *
 *   tap  - an existing tap device (/dev/net/tun, IFF_TAP | IFF_NO_PI, and
 *          IFF_VNET_HDR when the kernel has it: then frames carry a 12-byte
 *          virtio_net_hdr_v1 both ways and checksum/TSO offloads work);
 *   user - user-mode networking through libslirp: DHCP, DNS to the host's
 *          resolver, NAT, host port forwards. Needs no privilege.
 *
 * Threads: every backend call (send, set_rx, flush, destroy) and every
 * frontend callback happens on the VM's event-loop thread, except
 * set_offload (any thread; an ioctl). A backend with loop == NULL (tests)
 * never delivers input by itself.
 *
 * Flow control: the backend asks fe.can_receive() before reading a frame
 * from a source that can wait (tap: the kernel queues); a frontend that
 * answered false calls set_rx(true) once it has room again. Sources that
 * cannot wait (slirp) call fe.receive() anyway and the frontend drops
 * beyond its own small backlog. */
#ifndef KITE_BACKENDS_NET_NET_H
#define KITE_BACKENDS_NET_NET_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct event_loop;
struct net_backend;

/* Largest Ethernet frame either direction carries: a 64 KiB GSO packet
 * plus its Ethernet and VLAN headers. */
#define NET_FRAME_MAX (65536 + 14 + 4)
/* The virtio_net_hdr_v1 that vnet-header backends put before each frame. */
#define NET_VNET_HDR_LEN 12

/* Offloads a backend may honour (what tap calls TUN_F_*). */
#define NET_OFFLOAD_CSUM 0x01
#define NET_OFFLOAD_TSO4 0x02
#define NET_OFFLOAD_TSO6 0x04
#define NET_OFFLOAD_ECN  0x08
#define NET_OFFLOAD_UFO  0x10

struct net_frontend {
	/* Would a frame be taken right now? */
	bool (*can_receive)(void *opaque);
	/* One frame (with the vnet header first when be->vnet_hdr_len). */
	void (*receive)(void *opaque, const struct iovec *iov, int iovcnt);
	void *opaque;
};

struct net_backend_ops {
	const char *name;
	/* Start delivering input (after the frontend attached). */
	int (*start)(struct net_backend *be);
	/* Send one frame (vnet header first when be->vnet_hdr_len). 0 or a
	 * negative errno; the frame is gone either way. */
	int (*send)(struct net_backend *be, const struct iovec *iov, int iovcnt);
	/* After a batch of sends (slirp: look at its sockets again). */
	void (*flush)(struct net_backend *be);
	void (*set_rx)(struct net_backend *be, bool enable);
	/* Offloads the guest accepts on receive (NET_OFFLOAD_*), a subset of
	 * be->offloads. 0 or a negative errno. May be NULL. */
	int (*set_offload)(struct net_backend *be, unsigned offloads);
	void (*destroy)(struct net_backend *be);
};

struct net_backend {
	const struct net_backend_ops *ops;
	struct event_loop *loop;
	struct net_frontend fe;
	unsigned vnet_hdr_len;   /* 0, or NET_VNET_HDR_LEN */
	unsigned offloads;       /* NET_OFFLOAD_* the backend can honour */
	char name[48];           /* for messages: "tap0", "user" */
	/* Errors from the host side (send failures, a vanished tap). */
	uint64_t tx_errors, rx_errors;
};

/* ---- configuration: one --net option ---- */

enum net_kind { NET_TAP, NET_USER };

#define NET_MAX_HOSTFWD 16

struct net_hostfwd {
	bool udp;
	uint32_t host_addr;      /* network byte order; default 127.0.0.1 */
	uint16_t host_port;
	uint32_t guest_addr;     /* network byte order; 0: the DHCP address */
	uint16_t guest_port;
};

struct net_config {
	enum net_kind kind;
	char ifname[IFNAMSIZ];   /* tap */
	uint8_t mac[6];
	bool mac_given;          /* mac= was written (else generated) */
	unsigned nr_hostfwd;     /* user */
	struct net_hostfwd hostfwd[NET_MAX_HOSTFWD];
};

/* Parse the text of the index-th --net option:
 *   tap=NAME[,mac=XX:XX:XX:XX:XX:XX]
 *   user[,hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,mac=..]
 * Without mac= the MAC is generated from the text and the index: stable
 * across runs, locally administered, unicast. Returns 0, or -EINVAL after
 * one kite_err line naming the offending text. */
int net_config_parse(const char *text, unsigned index, struct net_config *out);
/* "52:4b:..." into buf (at least 18 bytes). */
void net_format_mac(const uint8_t mac[6], char *buf);

/* Open the backend a config describes. Errors are reported once, naming the
 * tap or forward. Returns 0 or a negative errno. */
int net_backend_create(const struct net_config *cfg, struct event_loop *loop,
		       struct net_backend **out);
int net_tap_create(const char *ifname, struct event_loop *loop, struct net_backend **out);
int net_user_create(const struct net_config *cfg, struct event_loop *loop,
		    struct net_backend **out);

static inline void net_backend_attach(struct net_backend *be, const struct net_frontend *fe)
{
	be->fe = *fe;
}
static inline int net_backend_start(struct net_backend *be)
{
	return be->ops->start ? be->ops->start(be) : 0;
}
static inline void net_backend_set_rx(struct net_backend *be, bool enable)
{
	if (be->ops->set_rx)
		be->ops->set_rx(be, enable);
}
static inline void net_backend_destroy(struct net_backend *be)
{
	if (be)
		be->ops->destroy(be);
}

#endif
