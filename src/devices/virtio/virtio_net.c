#include "devices/virtio/virtio_net.h"

#include <endian.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/net/net.h"
#include "util/event_loop.h"
#include "util/log.h"

#define RXQ VIRTIO_NET_RXQ
#define TXQ VIRTIO_NET_TXQ
/* Segments per chain. Linux uses at most MAX_SKB_FRAGS + 2 (19); a chain
 * with more is a broken ring (NEEDS_RESET). */
#define RX_SEGS 32
#define TX_SEGS 64
/* TX chains taken per lock round, and per loop turn before yielding. */
#define TX_BATCH 32
#define TX_BUDGET 256

struct rx_buf {
	struct virtq_elem e;
	struct iovec iov[RX_SEGS];
};

struct frame {
	size_t len;                /* data bytes after the header */
	struct virtio_net_hdr hdr; /* as the guest will see it (num_buffers later) */
	uint8_t data[];
};

struct tx_slot {
	struct virtq_elem e;
	struct iovec iov[TX_SEGS];
};

struct virtio_net {
	struct virtio_device vdev;   /* first: container_of from ops */
	struct virtq vq[2];
	struct net_backend *be;
	char name[64];
	uint8_t config[VIRTIO_NET_CONFIG_LEN];

	/* Under vdev.lock. */
	uint64_t generation;         /* bumped by reset: in-flight TX is void */
	struct rx_buf *held;         /* popped receive buffers, FIFO */
	unsigned held_head, held_count;
	struct frame *backlog[VIRTIO_NET_RX_BACKLOG];
	unsigned bl_head, bl_count;
	bool logged_tx_drop, logged_rx_small;

	atomic_bool tx_scheduled, rx_scheduled;
	struct virtio_net_stats st;  /* relaxed atomics */

	/* Loop thread only. */
	struct tx_slot tx[TX_BATCH];
	struct iovec txiov[TX_SEGS + 1];
};

#define STAT(n, f, v) __atomic_fetch_add(&(n)->st.f, (v), __ATOMIC_RELAXED)

static struct virtio_net *to_net(struct virtio_device *vd)
{
	return (struct virtio_net *)((char *)vd - offsetof(struct virtio_net, vdev));
}

struct virtio_device *virtio_net_vdev(struct virtio_net *n)
{
	return &n->vdev;
}

void virtio_net_get_stats(struct virtio_net *n, struct virtio_net_stats *s)
{
	const uint64_t *src = (const uint64_t *)&n->st;
	uint64_t *dst = (uint64_t *)s;
	for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

static void net_config_read(struct virtio_device *vd, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, to_net(vd)->config + off, len);
}

/* Work for the loop thread; inline when there is no loop (tests). */
static void schedule(struct virtio_net *n, atomic_bool *flag, event_call_fn fn)
{
	if (!n->be->loop) {
		fn(n);
		return;
	}
	if (atomic_exchange(flag, true))
		return;
	if (event_loop_call(n->be->loop, fn, n))
		atomic_store(flag, false); /* out of memory: the next notify retries */
}

/* ---- receive: backend -> guest ---- */

/* Copy len bytes of src (starting at src_off) into dst. */
static size_t iov_copy(const struct iovec *dst, unsigned dn, const struct iovec *src,
		       unsigned sn, size_t src_off, size_t len)
{
	size_t done = 0, doff = 0;
	unsigned di = 0;
	for (unsigned si = 0; si < sn && done < len; si++) {
		if (src_off >= src[si].iov_len) {
			src_off -= src[si].iov_len;
			continue;
		}
		const uint8_t *p = (const uint8_t *)src[si].iov_base + src_off;
		size_t left = src[si].iov_len - src_off;
		src_off = 0;
		while (left && done < len && di < dn) {
			size_t room = dst[di].iov_len - doff;
			size_t c = left < room ? left : room;
			if (c > len - done)
				c = len - done;
			memcpy((uint8_t *)dst[di].iov_base + doff, p, c);
			p += c;
			left -= c;
			done += c;
			doff += c;
			if (doff == dst[di].iov_len) {
				di++;
				doff = 0;
			}
		}
	}
	return done;
}

static struct rx_buf *held_at(struct virtio_net *n, unsigned i)
{
	return &n->held[(n->held_head + i) % VIRTIO_NET_QUEUE_SIZE];
}

/* Make sure the held buffers can take `need` bytes. 1: yes; 0: not yet (the
 * guest has posted too few); -1: never (drop the frame). */
static int rx_reserve_locked(struct virtio_net *n, size_t need, bool mrg, bool *irq)
{
	struct virtq *q = &n->vq[RXQ];
	for (;;) {
		uint64_t have = 0;
		unsigned count = mrg ? n->held_count : (n->held_count ? 1 : 0);
		for (unsigned i = 0; i < count; i++)
			have += held_at(n, i)->e.in_bytes;
		if (count && have >= need)
			return 1;
		if (!mrg && n->held_count)
			return -1; /* one buffer per frame, and it is too small */
		if (n->held_count >= q->size || n->held_count >= VIRTIO_NET_QUEUE_SIZE)
			return -1; /* the whole ring cannot hold it */
		struct rx_buf *b = held_at(n, n->held_count);
		b->e.iov = b->iov;
		b->e.iov_cap = RX_SEGS;
		int got = virtq_pop(q, &b->e);
		if (got < 0) {
			virtio_set_needs_reset_locked(&n->vdev, virtq_error_str(q->error));
			return -1;
		}
		if (got == 0)
			return 0;
		if (b->e.in_bytes < VIRTIO_NET_HDR_LEN) {
			/* Not even room for a header: hand it back unused. */
			STAT(n, rx_bad_buffers, 1);
			virtq_push(q, b->e.head, 0);
			*irq = true;
			continue;
		}
		n->held_count++;
	}
}

/* Put one frame into the guest's buffers. 1 delivered, 0 wait for
 * buffers, -1 dropped. */
static int rx_put_locked(struct virtio_net *n, struct virtio_net_hdr *hdr,
			 const struct iovec *data, unsigned dn, size_t dlen, bool *irq)
{
	struct virtio_device *vd = &n->vdev;
	struct virtq *q = &n->vq[RXQ];
	if (!virtio_live_locked(vd) || !q->ready)
		return 0;
	bool mrg = virtio_has_feature(vd, VIRTIO_NET_F_MRG_RXBUF);
	size_t need = VIRTIO_NET_HDR_LEN + dlen;
	int r = rx_reserve_locked(n, need, mrg, irq);
	if (r < 0) {
		if (virtio_live_locked(vd)) {
			STAT(n, rx_too_small, 1);
			if (!n->logged_rx_small) {
				n->logged_rx_small = true;
				kite_warn("%s: guest receive buffers too small for a %zu-byte frame: "
					  "dropped (further drops only counted)", n->name, dlen);
			}
		}
		return -1;
	}
	if (r == 0)
		return 0;

	unsigned k = 0;
	for (size_t got = 0; got < need; k++)
		got += held_at(n, k)->e.in_bytes;
	hdr->num_buffers = htole16((uint16_t)k);

	struct iovec src[1 + RX_SEGS + 1];
	src[0] = (struct iovec){ hdr, VIRTIO_NET_HDR_LEN };
	unsigned sn = 1;
	for (unsigned i = 0; i < dn && sn < sizeof(src) / sizeof(src[0]); i++)
		src[sn++] = data[i];
	size_t off = 0;
	for (unsigned i = 0; i < k; i++) {
		struct rx_buf *b = held_at(n, i);
		size_t c = iov_copy(b->e.iov + b->e.n_out, b->e.n_in, src, sn, off, need - off);
		off += c;
		/* Reports the buffer to the engine (the soft engine drops code
		 * it decoded there), then pushes. */
		virtq_push_elem(q, &b->e, (uint32_t)c);
	}
	n->held_head = (n->held_head + k) % VIRTIO_NET_QUEUE_SIZE;
	n->held_count -= k;
	STAT(n, rx_frames, 1);
	STAT(n, rx_bytes, dlen);
	*irq = true;
	return 1;
}

/* Deliver what waits in the backlog, oldest first. */
static void backlog_flush_locked(struct virtio_net *n, bool *irq)
{
	while (n->bl_count) {
		struct frame *f = n->backlog[n->bl_head];
		struct iovec d = { f->data, f->len };
		int r = rx_put_locked(n, &f->hdr, &d, 1, f->len, irq);
		if (r == 0)
			return;
		free(f); /* delivered, or dropped and counted */
		n->bl_head = (n->bl_head + 1) % VIRTIO_NET_RX_BACKLOG;
		n->bl_count--;
	}
}

static void backlog_push_locked(struct virtio_net *n, const struct virtio_net_hdr *hdr,
				const struct iovec *data, unsigned dn, size_t dlen)
{
	if (n->bl_count == VIRTIO_NET_RX_BACKLOG) {
		STAT(n, rx_dropped, 1);
		return;
	}
	struct frame *f = malloc(sizeof(*f) + dlen);
	if (!f) {
		STAT(n, rx_dropped, 1);
		return;
	}
	f->len = dlen;
	f->hdr = *hdr;
	struct iovec d = { f->data, dlen };
	iov_copy(&d, 1, data, dn, 0, dlen);
	n->backlog[(n->bl_head + n->bl_count) % VIRTIO_NET_RX_BACKLOG] = f;
	n->bl_count++;
}

static void backlog_clear_locked(struct virtio_net *n)
{
	while (n->bl_count) {
		free(n->backlog[n->bl_head]);
		n->bl_head = (n->bl_head + 1) % VIRTIO_NET_RX_BACKLOG;
		n->bl_count--;
		STAT(n, rx_dropped, 1);
	}
}

static void raise_irq(struct virtio_net *n, unsigned q, bool maybe)
{
	if (!maybe)
		return;
	pthread_mutex_lock(&n->vdev.lock);
	bool irq = n->vq[q].ready && virtq_should_interrupt(&n->vq[q]);
	pthread_mutex_unlock(&n->vdev.lock);
	if (irq)
		virtio_queue_interrupt(&n->vdev, q);
}

static bool fe_can_receive(void *opaque)
{
	struct virtio_net *n = opaque;
	struct virtio_device *vd = &n->vdev;
	pthread_mutex_lock(&vd->lock);
	bool ok = n->bl_count == 0 && virtio_live_locked(vd) && n->vq[RXQ].ready &&
		  (n->held_count || virtq_pending(&n->vq[RXQ]));
	pthread_mutex_unlock(&vd->lock);
	return ok;
}

/* One frame from the backend (loop thread). */
static void fe_receive(void *opaque, const struct iovec *iov, int iovcnt)
{
	struct virtio_net *n = opaque;
	struct virtio_device *vd = &n->vdev;
	struct virtio_net_hdr hdr = { 0 };
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	size_t hl = n->be->vnet_hdr_len;
	if (total < hl + 14 || total - hl > NET_FRAME_MAX) {
		STAT(n, rx_dropped, 1);
		return;
	}
	if (hl)
		iov_to_buf(iov, (unsigned)iovcnt, 0, &hdr, VIRTIO_NET_HDR_LEN);
	struct iovec data[RX_SEGS];
	int dn = iov_slice(iov, (unsigned)iovcnt, hl, total - hl, data, RX_SEGS);
	if (dn < 0) {
		STAT(n, rx_dropped, 1);
		return;
	}

	bool irq = false;
	pthread_mutex_lock(&vd->lock);
	/* The guest sees only what it negotiated (5.1.6.3.1: flags zero
	 * without GUEST_CSUM); a GSO frame it cannot take is dropped (only
	 * possible while the offloads are being renegotiated). */
	if (!virtio_has_feature(vd, VIRTIO_NET_F_GUEST_CSUM))
		hdr.flags = 0;
	uint8_t gso = hdr.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	bool gso_ok = gso == VIRTIO_NET_HDR_GSO_NONE ||
		      (gso == VIRTIO_NET_HDR_GSO_TCPV4 && virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO4)) ||
		      (gso == VIRTIO_NET_HDR_GSO_TCPV6 && virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO6)) ||
		      (gso == VIRTIO_NET_HDR_GSO_UDP && virtio_has_feature(vd, VIRTIO_NET_F_GUEST_UFO));
	if (!gso_ok) {
		STAT(n, rx_dropped, 1);
	} else {
		if (n->bl_count)
			backlog_flush_locked(n, &irq);
		if (n->bl_count || rx_put_locked(n, &hdr, data, (unsigned)dn, total - hl, &irq) == 0)
			backlog_push_locked(n, &hdr, data, (unsigned)dn, total - hl);
	}
	pthread_mutex_unlock(&vd->lock);
	raise_irq(n, RXQ, irq);
}

/* The guest posted receive buffers (loop thread). */
static void rx_work(void *opaque)
{
	struct virtio_net *n = opaque;
	atomic_store(&n->rx_scheduled, false);
	bool irq = false;
	pthread_mutex_lock(&n->vdev.lock);
	backlog_flush_locked(n, &irq);
	bool room = n->bl_count == 0;
	pthread_mutex_unlock(&n->vdev.lock);
	raise_irq(n, RXQ, irq);
	if (room)
		net_backend_set_rx(n->be, true);
}

/* ---- transmit: guest -> backend ---- */

static void tx_drop(struct virtio_net *n, const char *why)
{
	STAT(n, tx_dropped, 1);
	if (!n->logged_tx_drop) {
		n->logged_tx_drop = true;
		kite_warn("%s: dropped a transmitted frame: %s (further drops only counted)",
			  n->name, why);
	}
}

/* Check and send one chain (unlocked). */
static void tx_one(struct virtio_net *n, struct virtq_elem *e, uint64_t features)
{
	struct virtio_net_hdr hdr;
	if (e->out_bytes < VIRTIO_NET_HDR_LEN) {
		tx_drop(n, "header too short");
		return;
	}
	uint64_t dlen = e->out_bytes - VIRTIO_NET_HDR_LEN;
	if (dlen < 14 || dlen > NET_FRAME_MAX) {
		tx_drop(n, dlen < 14 ? "frame shorter than an Ethernet header"
				     : "frame larger than 64 KiB");
		return;
	}
	iov_to_buf(e->iov, e->n_out, 0, &hdr, VIRTIO_NET_HDR_LEN);
	uint8_t gso = hdr.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
	bool ok = true;
	if (hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		uint32_t end = (uint32_t)le16toh(hdr.csum_start) + le16toh(hdr.csum_offset) + 2;
		ok = (features & VIRTIO_BIT(VIRTIO_NET_F_CSUM)) && end <= dlen;
	}
	if ((hdr.gso_type & VIRTIO_NET_HDR_GSO_ECN) && !(features & VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN)))
		ok = false;
	switch (gso) {
	case VIRTIO_NET_HDR_GSO_NONE: break;
	case VIRTIO_NET_HDR_GSO_TCPV4: ok &= !!(features & VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4)); break;
	case VIRTIO_NET_HDR_GSO_TCPV6: ok &= !!(features & VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6)); break;
	case VIRTIO_NET_HDR_GSO_UDP: ok &= !!(features & VIRTIO_BIT(VIRTIO_NET_F_HOST_UFO)); break;
	default: ok = false;
	}
	if (gso != VIRTIO_NET_HDR_GSO_NONE && (!hdr.gso_size || !(hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)))
		ok = false;
	if (!ok) {
		tx_drop(n, "offload not negotiated or malformed");
		return;
	}
	int cnt = iov_slice(e->iov, e->n_out, VIRTIO_NET_HDR_LEN, dlen, n->txiov + 1, TX_SEGS);
	if (cnt < 0) {
		tx_drop(n, "too many segments");
		return;
	}
	int ret;
	if (n->be->vnet_hdr_len) {
		hdr.flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
		hdr.num_buffers = 0;
		n->txiov[0] = (struct iovec){ &hdr, VIRTIO_NET_HDR_LEN };
		ret = n->be->ops->send(n->be, n->txiov, cnt + 1);
	} else {
		ret = n->be->ops->send(n->be, n->txiov + 1, cnt);
	}
	if (ret) {
		STAT(n, tx_errors, 1);
		return;
	}
	STAT(n, tx_frames, 1);
	STAT(n, tx_bytes, dlen);
}

static void tx_work(void *opaque)
{
	struct virtio_net *n = opaque;
	struct virtio_device *vd = &n->vdev;
	struct virtq *q = &n->vq[TXQ];
	atomic_store(&n->tx_scheduled, false);
	unsigned done = 0;
	bool sent = false;
	for (;;) {
		unsigned got = 0;
		pthread_mutex_lock(&vd->lock);
		if (!virtio_live_locked(vd) || !q->ready) {
			pthread_mutex_unlock(&vd->lock);
			break;
		}
		uint64_t gen = n->generation;
		uint64_t features = vd->driver_features;
		virtq_disable_notify(q);
		bool more = true;
		while (got < TX_BATCH) {
			struct tx_slot *s = &n->tx[got];
			s->e.iov = s->iov;
			s->e.iov_cap = TX_SEGS;
			int r = virtq_pop(q, &s->e);
			if (r < 0) {
				virtio_set_needs_reset_locked(vd, virtq_error_str(q->error));
				more = false;
				break;
			}
			if (r == 0) {
				/* Drained: ask for notifications again, and look
				 * once more for a chain that raced with that. */
				more = virtq_enable_notify(q);
				break;
			}
			got++;
		}
		pthread_mutex_unlock(&vd->lock);

		for (unsigned i = 0; i < got; i++)
			tx_one(n, &n->tx[i].e, features);
		sent |= got > 0;

		bool irq = false;
		pthread_mutex_lock(&vd->lock);
		if (n->generation == gen && q->ready) {
			for (unsigned i = 0; i < got; i++)
				virtq_push(q, n->tx[i].e.head, 0);
			irq = got && virtq_should_interrupt(q);
		}
		pthread_mutex_unlock(&vd->lock);
		if (irq)
			virtio_queue_interrupt(vd, TXQ);
		done += got;
		if (!more)
			break;
		if (done >= TX_BUDGET && n->be->loop) {
			/* Let receive and other devices have the loop; notifications
			 * stay off, the rescheduled call picks up the rest. */
			if (sent && n->be->ops->flush)
				n->be->ops->flush(n->be);
			schedule(n, &n->tx_scheduled, tx_work);
			return;
		}
	}
	if (sent && n->be->ops->flush)
		n->be->ops->flush(n->be);
}

/* ---- virtio ops ---- */

static void net_queue_notify(struct virtio_device *vd, unsigned q)
{
	struct virtio_net *n = to_net(vd);
	if (q == TXQ)
		schedule(n, &n->tx_scheduled, tx_work);
	else if (q == RXQ)
		schedule(n, &n->rx_scheduled, rx_work);
}

static unsigned guest_offloads(uint64_t f)
{
	unsigned o = 0;
	if (f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM)) o |= NET_OFFLOAD_CSUM;
	if (f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4)) o |= NET_OFFLOAD_TSO4;
	if (f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6)) o |= NET_OFFLOAD_TSO6;
	if (f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN))  o |= NET_OFFLOAD_ECN;
	if (f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO))  o |= NET_OFFLOAD_UFO;
	return o;
}

static int net_set_features(struct virtio_device *vd, uint64_t f)
{
	struct virtio_net *n = to_net(vd);
	/* 5.1.3.1 dependencies the driver must respect. */
	if ((f & (VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) |
		  VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO))) && !(f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM)))
		return -EINVAL;
	if ((f & (VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) |
		  VIRTIO_BIT(VIRTIO_NET_F_HOST_UFO))) && !(f & VIRTIO_BIT(VIRTIO_NET_F_CSUM)))
		return -EINVAL;
	if (n->be->ops->set_offload) {
		int ret = n->be->ops->set_offload(n->be, guest_offloads(f));
		if (ret) {
			kite_warn("%s: backend refused offloads 0x%x: %s", n->name, guest_offloads(f),
				  strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int net_activate(struct virtio_device *vd)
{
	struct virtio_net *n = to_net(vd);
	/* Called with the lock held: the delivery itself runs on the loop. */
	if (n->be->loop) {
		if (!atomic_exchange(&n->rx_scheduled, true) &&
		    event_loop_call(n->be->loop, rx_work, n))
			atomic_store(&n->rx_scheduled, false);
	}
	return 0;
}

static void net_reset(struct virtio_device *vd)
{
	struct virtio_net *n = to_net(vd);
	pthread_mutex_lock(&vd->lock);
	n->generation++;
	/* Held buffers belong to rings that are going away. */
	n->held_count = 0;
	n->held_head = 0;
	backlog_clear_locked(n);
	pthread_mutex_unlock(&vd->lock);
	if (n->be->ops->set_offload)
		n->be->ops->set_offload(n->be, 0);
}

void virtio_net_quiesce(struct virtio_net *n)
{
	struct virtio_device *vd = &n->vdev;
	bool irq = false;
	pthread_mutex_lock(&vd->lock);
	while (n->held_count) {
		struct rx_buf *b = held_at(n, 0);
		if (n->vq[RXQ].ready)
			virtq_push(&n->vq[RXQ], b->e.head, 0);
		n->held_head = (n->held_head + 1) % VIRTIO_NET_QUEUE_SIZE;
		n->held_count--;
		irq = true;
	}
	pthread_mutex_unlock(&vd->lock);
	raise_irq(n, RXQ, irq);
}

static const struct virtio_device_ops net_ops = {
	.name = "virtio-net",
	.config_read = net_config_read,
	.set_features = net_set_features,
	.activate = net_activate,
	.queue_notify = net_queue_notify,
	.reset = net_reset,
};

static uint64_t offered_features(const struct net_backend *be)
{
	uint64_t f = VIRTIO_BIT(VIRTIO_NET_F_MAC) | VIRTIO_BIT(VIRTIO_NET_F_STATUS) |
		     VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF) |
		     VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
	/* Offloads need a backend that carries the header (tap's vnet header);
	 * one that only moves complete frames (slirp) gets none. */
	if (!be->vnet_hdr_len || !(be->offloads & NET_OFFLOAD_CSUM))
		return f;
	f |= VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM);
	if (be->offloads & NET_OFFLOAD_TSO4)
		f |= VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4);
	if (be->offloads & NET_OFFLOAD_TSO6)
		f |= VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6);
	if (be->offloads & NET_OFFLOAD_ECN)
		f |= VIRTIO_BIT(VIRTIO_NET_F_HOST_ECN) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN);
	if (be->offloads & NET_OFFLOAD_UFO)
		f |= VIRTIO_BIT(VIRTIO_NET_F_HOST_UFO) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO);
	return f;
}

int virtio_net_create(struct virtio_net **out, const struct guest_memory *mem,
		      struct net_backend *be, const uint8_t mac[6], const char *name)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (n)
		n->held = calloc(VIRTIO_NET_QUEUE_SIZE, sizeof(*n->held));
	if (!n || !n->held) {
		if (n)
			free(n);
		net_backend_destroy(be);
		return -ENOMEM;
	}
	n->be = be;
	snprintf(n->name, sizeof(n->name), "virtio-net %s", name ? name : be->name);
	memcpy(n->config + VIRTIO_NET_CFG_MAC, mac, 6);
	uint16_t v = htole16(VIRTIO_NET_S_LINK_UP);
	memcpy(n->config + VIRTIO_NET_CFG_STATUS, &v, 2);
	v = htole16(1);
	memcpy(n->config + VIRTIO_NET_CFG_MAX_VQP, &v, 2);
	atomic_init(&n->tx_scheduled, false);
	atomic_init(&n->rx_scheduled, false);
	for (int i = 0; i < 2; i++)
		virtq_init(&n->vq[i], mem, VIRTIO_NET_QUEUE_SIZE);
	virtio_device_init(&n->vdev, &net_ops, n->name, VIRTIO_ID_NET, offered_features(be),
			   VIRTIO_NET_CONFIG_LEN, n->vq, 2);
	struct net_frontend fe = { fe_can_receive, fe_receive, n };
	net_backend_attach(be, &fe);
	int ret = net_backend_start(be);
	if (ret) {
		virtio_net_destroy(n);
		return ret;
	}
	*out = n;
	return 0;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	struct virtio_net_stats s;
	virtio_net_get_stats(n, &s);
	kite_info("%s: tx %llu frames %llu bytes (%llu dropped, %llu errors), rx %llu frames "
		  "%llu bytes (%llu dropped, %llu too small, %llu bad buffers)", n->name,
		  (unsigned long long)s.tx_frames, (unsigned long long)s.tx_bytes,
		  (unsigned long long)s.tx_dropped, (unsigned long long)s.tx_errors,
		  (unsigned long long)s.rx_frames, (unsigned long long)s.rx_bytes,
		  (unsigned long long)s.rx_dropped, (unsigned long long)s.rx_too_small,
		  (unsigned long long)s.rx_bad_buffers);
	net_backend_destroy(n->be);
	pthread_mutex_lock(&n->vdev.lock);
	backlog_clear_locked(n);
	pthread_mutex_unlock(&n->vdev.lock);
	free(n->held);
	virtio_device_fini(&n->vdev);
	free(n);
}
