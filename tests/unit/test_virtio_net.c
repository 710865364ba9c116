/* virtio-net: header and buffer handling, mergeable receive buffers, the
 * backlog and drops while the guest posts no buffers, malformed chains.
 * The backend is a fake without an event loop, so all work runs inline. */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>

#include "backends/net/net.h"
#include "devices/virtio/virtio_net.h"
#include "virtq_driver.h"

struct fake_net {
	struct net_backend be;
	uint8_t sent[8][NET_FRAME_MAX + 16];
	size_t sent_len[8];
	unsigned nsent;
	unsigned offload_calls, last_offload;
	int rx_on;
	bool destroyed;
};

static int fn_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	struct fake_net *f = (struct fake_net *)be;
	if (f->nsent == 8)
		return -ENOBUFS;
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(f->sent[f->nsent] + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	f->sent_len[f->nsent++] = off;
	return 0;
}
static void fn_set_rx(struct net_backend *be, bool on) { if (on) ((struct fake_net *)be)->rx_on++; }
static int fn_set_offload(struct net_backend *be, unsigned o)
{
	struct fake_net *f = (struct fake_net *)be;
	f->offload_calls++;
	f->last_offload = o;
	return 0;
}
static void fn_destroy(struct net_backend *be) { ((struct fake_net *)be)->destroyed = true; }

static const struct net_backend_ops fn_ops = {
	.name = "fake", .send = fn_send, .set_rx = fn_set_rx, .set_offload = fn_set_offload,
	.destroy = fn_destroy,
};

static const uint8_t MAC[6] = { 0x52, 0x4b, 1, 2, 3, 4 };
static struct guest_memory mem;
static struct fake_net *fb;
static struct virtio_net *net;
static struct virtio_device *vd;
static struct vdrv rx, tx;
static int irqs[2], cfg_irqs;

static void on_queue_irq(void *o, unsigned q) { (void)o; if (q < 2) irqs[q]++; }
static void on_config_irq(void *o) { (void)o; cfg_irqs++; }
static uint64_t written_gpa, written_len;
static void on_written(void *o, uint64_t gpa, uint64_t len) { (void)o; written_gpa = gpa; written_len = len; }

static void make(bool vnet)
{
	cr_assert_eq(guest_memory_init(&mem, 16 << 20), 0);
	fb = calloc(1, sizeof(*fb));
	fb->be.ops = &fn_ops;
	strcpy(fb->be.name, "fake");
	if (vnet) {
		fb->be.vnet_hdr_len = NET_VNET_HDR_LEN;
		fb->be.offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6;
	}
	irqs[0] = irqs[1] = cfg_irqs = 0;
	cr_assert_eq(virtio_net_create(&net, &mem, &fb->be, MAC, "test"), 0);
	vd = virtio_net_vdev(net);
	struct virtio_transport_hooks h = { NULL, on_queue_irq, on_config_irq, on_written };
	virtio_set_transport(vd, &h);
	vdrv_init(&rx, &mem, 16, 0x100000, 0x400000);
	vdrv_init(&tx, &mem, 16, 0x400000, 0x800000);
}

static int bring_up(uint64_t features)
{
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	features |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
	virtio_set_driver_features(vd, 0, (uint32_t)features);
	virtio_set_driver_features(vd, 1, (uint32_t)(features >> 32));
	uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	virtio_set_status(vd, s);
	if (!(virtio_get_status(vd) & VIRTIO_STATUS_FEATURES_OK))
		return -1;
	struct vdrv *d[2] = { &rx, &tx };
	for (unsigned q = 0; q < 2; q++) {
		cr_assert_eq(virtio_queue_set_size(vd, q, 16), 0);
		cr_assert_eq(virtio_queue_set_addr(vd, q, d[q]->desc, d[q]->avail, d[q]->used), 0);
		cr_assert_eq(virtio_queue_set_ready(vd, q), 0);
	}
	virtio_set_status(vd, s | VIRTIO_STATUS_DRIVER_OK);
	return (virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET) ? -1 : 0;
}

static void setup_plain(void) { make(false); }
static void setup_vnet(void) { make(true); }

static void teardown(void)
{
	virtio_net_destroy(net);
	cr_assert(fb->destroyed);
	free(fb);
	guest_memory_destroy(&mem);
}

static struct virtio_net_stats stats(void)
{
	struct virtio_net_stats s;
	virtio_net_get_stats(net, &s);
	return s;
}

/* Post one TX chain: header (split in two descriptors when split) + data. */
static uint16_t tx_slot;
static void post_tx(const struct virtio_net_hdr *h, size_t hlen, const uint8_t *data, size_t dlen,
		    bool split)
{
	uint16_t d0 = tx_slot;
	uint64_t a = vdrv_alloc(&tx, hlen ? hlen : 1), b = vdrv_alloc(&tx, dlen ? dlen : 1);
	memcpy(gm_ptr(&mem, a, hlen ? hlen : 1), h, hlen);
	if (dlen)
		memcpy(gm_ptr(&mem, b, dlen), data, dlen);
	if (split && hlen > 4) {
		vdrv_set_desc(&tx, d0, a, 4, VIRTQ_DESC_F_NEXT, (uint16_t)(d0 + 1));
		vdrv_set_desc(&tx, (uint16_t)(d0 + 1), a + 4, (uint32_t)(hlen - 4), VIRTQ_DESC_F_NEXT,
			      (uint16_t)(d0 + 2));
		vdrv_set_desc(&tx, (uint16_t)(d0 + 2), b, (uint32_t)dlen, 0, 0);
		tx_slot += 3;
	} else {
		vdrv_set_desc(&tx, d0, a, (uint32_t)hlen, VIRTQ_DESC_F_NEXT, (uint16_t)(d0 + 1));
		vdrv_set_desc(&tx, (uint16_t)(d0 + 1), b, (uint32_t)dlen, 0, 0);
		tx_slot += 2;
	}
	vdrv_post(&tx, d0);
}

/* Post n single-descriptor RX buffers of `size` bytes; returns the gpa of the first. */
static uint16_t rx_slot;
static uint64_t rx_gpa[16];
static void post_rx(unsigned n, uint32_t size)
{
	for (unsigned i = 0; i < n; i++) {
		uint16_t d = rx_slot++ % 16;
		rx_gpa[d] = vdrv_alloc(&rx, size);
		vdrv_set_desc(&rx, d, rx_gpa[d], size, VIRTQ_DESC_F_WRITE, 0);
		vdrv_post(&rx, d);
	}
}

static void deliver(const uint8_t *frame, size_t len)
{
	struct iovec iov = { (void *)frame, len };
	fb->be.fe.receive(fb->be.fe.opaque, &iov, 1);
}

static void fill_frame(uint8_t *f, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		f[i] = (uint8_t)(seed + i * 7);
}

TestSuite(vnet, .init = setup_plain, .fini = teardown);
TestSuite(vnet_offload, .init = setup_vnet, .fini = teardown);

Test(vnet, identity_config_and_features)
{
	cr_assert_eq(vd->device_id, VIRTIO_ID_NET);
	cr_assert_eq(vd->nr_queues, 2);
	uint8_t c[VIRTIO_NET_CONFIG_LEN];
	cr_assert_eq(virtio_config_read(vd, 0, c, sizeof(c)), 0);
	cr_assert_eq(memcmp(c, MAC, 6), 0);
	cr_assert_eq(c[6] | c[7] << 8, VIRTIO_NET_S_LINK_UP);
	cr_assert_eq(c[8] | c[9] << 8, 1);
	cr_assert_eq(virtio_config_write(vd, 0, c, 6), -EINVAL, "config is read-only");
	uint64_t f = vd->host_features;
	cr_assert(f & VIRTIO_BIT(VIRTIO_NET_F_MAC));
	cr_assert(f & VIRTIO_BIT(VIRTIO_NET_F_STATUS));
	cr_assert(f & VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF));
	/* A backend without a vnet header gets no offloads at all. */
	cr_assert_eq(f & (VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) |
			  VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
			  VIRTIO_BIT(VIRTIO_NET_F_HOST_UFO) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO)), 0);
}

Test(vnet_offload, offloads_offered_and_passed_to_backend)
{
	uint64_t f = vd->host_features;
	cr_assert(f & VIRTIO_BIT(VIRTIO_NET_F_CSUM));
	cr_assert(f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4));
	cr_assert(f & VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO6));
	cr_assert_eq(f & VIRTIO_BIT(VIRTIO_NET_F_GUEST_UFO), 0, "UFO not offered: backend lacks it");
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
			      VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	cr_assert_eq(fb->last_offload, NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4);
	/* GUEST_TSO4 without GUEST_CSUM breaks 5.1.3.1: refused. */
	virtio_set_status(vd, 0);
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4)), -1);
}

Test(vnet, transmit_strips_header_for_plain_backend)
{
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	uint8_t frame[60];
	fill_frame(frame, sizeof(frame), 1);
	struct virtio_net_hdr h = { 0 };
	post_tx(&h, VIRTIO_NET_HDR_LEN, frame, sizeof(frame), true);
	virtio_queue_notify(vd, VIRTIO_NET_TXQ);
	cr_assert_eq(fb->nsent, 1);
	cr_assert_eq(fb->sent_len[0], sizeof(frame));
	cr_assert_eq(memcmp(fb->sent[0], frame, sizeof(frame)), 0);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&tx, &id, &len), 1);
	cr_assert_eq(id, 0);
	cr_assert_eq(len, 0);
	cr_assert_eq(irqs[VIRTIO_NET_TXQ], 1);
	cr_assert_eq(stats().tx_frames, 1);
}

Test(vnet_offload, transmit_keeps_header_for_vnet_backend)
{
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_HOST_TSO4)), 0);
	uint8_t frame[200];
	fill_frame(frame, sizeof(frame), 3);
	struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
				    .gso_type = VIRTIO_NET_HDR_GSO_TCPV4, .hdr_len = htole16(54),
				    .gso_size = htole16(1448), .csum_start = htole16(34),
				    .csum_offset = htole16(16), .num_buffers = htole16(77) };
	post_tx(&h, VIRTIO_NET_HDR_LEN, frame, sizeof(frame), false);
	virtio_queue_notify(vd, VIRTIO_NET_TXQ);
	cr_assert_eq(fb->nsent, 1);
	cr_assert_eq(fb->sent_len[0], VIRTIO_NET_HDR_LEN + sizeof(frame));
	struct virtio_net_hdr got;
	memcpy(&got, fb->sent[0], sizeof(got));
	cr_assert_eq(got.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
	cr_assert_eq(le16toh(got.gso_size), 1448);
	cr_assert_eq(got.num_buffers, 0, "num_buffers means nothing on transmit");
	cr_assert_eq(memcmp(fb->sent[0] + VIRTIO_NET_HDR_LEN, frame, sizeof(frame)), 0);

	/* UFO never negotiated: dropped, counted, the queue goes on. */
	h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
	post_tx(&h, VIRTIO_NET_HDR_LEN, frame, sizeof(frame), false);
	virtio_queue_notify(vd, VIRTIO_NET_TXQ);
	cr_assert_eq(fb->nsent, 1);
	cr_assert_eq(stats().tx_dropped, 1);
	/* A checksum position outside the frame: dropped. */
	h.gso_type = 0;
	h.csum_start = htole16(190);
	post_tx(&h, VIRTIO_NET_HDR_LEN, frame, sizeof(frame), false);
	virtio_queue_notify(vd, VIRTIO_NET_TXQ);
	cr_assert_eq(stats().tx_dropped, 2);
	cr_assert_eq(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

Test(vnet, malformed_transmit_is_dropped_and_counted)
{
	cr_assert_eq(bring_up(0), 0);
	static uint8_t big[NET_FRAME_MAX + 1];
	struct virtio_net_hdr h = { 0 };
	post_tx(&h, 6, big, 0, false);                  /* header too short */
	post_tx(&h, VIRTIO_NET_HDR_LEN, big, 10, false); /* no room for an Ethernet header */
	post_tx(&h, VIRTIO_NET_HDR_LEN, big, sizeof(big), false); /* over 64 KiB + headers */
	h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;           /* CSUM never negotiated */
	post_tx(&h, VIRTIO_NET_HDR_LEN, big, 60, false);
	h.flags = 0;
	post_tx(&h, VIRTIO_NET_HDR_LEN, big, 60, false); /* a good one after all that */
	virtio_queue_notify(vd, VIRTIO_NET_TXQ);
	struct virtio_net_stats s = stats();
	cr_assert_eq(s.tx_dropped, 4);
	cr_assert_eq(s.tx_frames, 1);
	cr_assert_eq(fb->nsent, 1);
	uint32_t id, len;
	unsigned used = 0;
	while (vdrv_get_used(&tx, &id, &len))
		used++;
	cr_assert_eq(used, 5, "every chain goes back to the driver");
	cr_assert_eq(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

Test(vnet, broken_ring_needs_reset)
{
	cr_assert_eq(bring_up(0), 0);
	vdrv_set_desc(&tx, 0, 0x7fffffff0ULL, 64, 0, 0); /* outside RAM */
	vdrv_post(&tx, 0);
	virtio_queue_notify(vd, VIRTIO_NET_TXQ);
	cr_assert(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(cfg_irqs, 1);
	/* The device recovers after a reset. */
	virtio_set_status(vd, 0);
	vdrv_init(&tx, &mem, 16, 0x400000, 0x800000);
	tx_slot = 0;
	cr_assert_eq(bring_up(0), 0);
	uint8_t frame[64] = { 0 };
	struct virtio_net_hdr h = { 0 };
	post_tx(&h, VIRTIO_NET_HDR_LEN, frame, sizeof(frame), false);
	virtio_queue_notify(vd, VIRTIO_NET_TXQ);
	cr_assert_eq(fb->nsent, 1);
}

Test(vnet, receive_into_single_buffer)
{
	tx_slot = rx_slot = 0;
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	cr_assert_not(fb->be.fe.can_receive(fb->be.fe.opaque), "no buffers posted yet");
	post_rx(2, 2048);
	cr_assert(fb->be.fe.can_receive(fb->be.fe.opaque));
	uint8_t frame[100];
	fill_frame(frame, sizeof(frame), 9);
	deliver(frame, sizeof(frame));
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(len, VIRTIO_NET_HDR_LEN + sizeof(frame));
	struct virtio_net_hdr h;
	memcpy(&h, gm_ptr(&mem, rx_gpa[id], sizeof(h)), sizeof(h));
	cr_assert_eq(le16toh(h.num_buffers), 1);
	cr_assert_eq(h.flags, 0);
	cr_assert_eq(memcmp(gm_ptr(&mem, rx_gpa[id] + 12, sizeof(frame)), frame, sizeof(frame)), 0);
	cr_assert_eq(irqs[VIRTIO_NET_RXQ], 1);
	cr_assert_eq(written_gpa, rx_gpa[id], "the engine hears of the write");
	cr_assert_eq(written_len, 2048);
}

Test(vnet, mergeable_receive_spreads_over_buffers)
{
	tx_slot = rx_slot = 0;
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	post_rx(4, 1000);
	static uint8_t frame[2900];
	fill_frame(frame, sizeof(frame), 5);
	deliver(frame, sizeof(frame));
	uint32_t id[3], len[3];
	for (int i = 0; i < 3; i++)
		cr_assert_eq(vdrv_get_used(&rx, &id[i], &len[i]), 1, "buffer %d", i);
	uint32_t x, y;
	cr_assert_eq(vdrv_get_used(&rx, &x, &y), 0, "only three buffers used");
	cr_assert_eq(len[0], 1000);
	cr_assert_eq(len[1], 1000);
	cr_assert_eq(len[2], 12 + 2900 - 2000);
	struct virtio_net_hdr h;
	memcpy(&h, gm_ptr(&mem, rx_gpa[id[0]], sizeof(h)), sizeof(h));
	cr_assert_eq(le16toh(h.num_buffers), 3);
	/* Reassemble and compare. */
	static uint8_t back[3000];
	memcpy(back, gm_ptr(&mem, rx_gpa[id[0]] + 12, 988), 988);
	memcpy(back + 988, gm_ptr(&mem, rx_gpa[id[1]], 1000), 1000);
	memcpy(back + 1988, gm_ptr(&mem, rx_gpa[id[2]], 912), 912);
	cr_assert_eq(memcmp(back, frame, sizeof(frame)), 0);
	/* The fourth buffer is still held for the next frame. */
	uint8_t small[60];
	fill_frame(small, sizeof(small), 1);
	deliver(small, sizeof(small));
	cr_assert_eq(vdrv_get_used(&rx, &x, &y), 1);
	cr_assert_eq(x, 3);
	cr_assert_eq(y, 72);
}

Test(vnet, no_buffers_backlog_then_drop_then_deliver_in_order)
{
	tx_slot = rx_slot = 0;
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	uint8_t frame[64];
	for (unsigned i = 0; i < VIRTIO_NET_RX_BACKLOG + 5; i++) {
		memset(frame, (int)i, sizeof(frame));
		deliver(frame, sizeof(frame));
	}
	struct virtio_net_stats s = stats();
	cr_assert_eq(s.rx_frames, 0);
	cr_assert_eq(s.rx_dropped, 5, "beyond the backlog: dropped and counted");
	cr_assert_not(fb->be.fe.can_receive(fb->be.fe.opaque));
	/* The guest posts buffers and notifies: the backlog drains in order. */
	int before = fb->rx_on;
	post_rx(8, 256);
	virtio_queue_notify(vd, VIRTIO_NET_RXQ);
	uint32_t id, len;
	for (unsigned i = 0; i < 8; i++) {
		cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
		cr_assert_eq(*(uint8_t *)gm_ptr(&mem, rx_gpa[id] + 12, 1), i, "frame %u got %u (id %u len %u)", i, *(uint8_t *)gm_ptr(&mem, rx_gpa[id] + 12, 1), id, len);
	}
	cr_assert_eq(fb->rx_on, before, "backlog not empty yet: backend stays paused");
	for (unsigned i = 8; i < VIRTIO_NET_RX_BACKLOG; i++) {
		if (i % 8 == 0) {
			post_rx(8, 256);
			virtio_queue_notify(vd, VIRTIO_NET_RXQ);
		}
		cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
		cr_assert_eq(*(uint8_t *)gm_ptr(&mem, rx_gpa[id] + 12, 1), i);
	}
	cr_assert_gt(fb->rx_on, before, "backlog empty: backend resumed");
	cr_assert_eq(stats().rx_frames, VIRTIO_NET_RX_BACKLOG);
}

Test(vnet, buffers_too_small)
{
	tx_slot = rx_slot = 0;
	/* Without MRG_RXBUF one buffer must hold the whole frame. */
	cr_assert_eq(bring_up(0), 0);
	post_rx(1, 512);
	static uint8_t frame[1500];
	deliver(frame, sizeof(frame));
	cr_assert_eq(stats().rx_too_small, 1);
	/* The buffer stays for a frame that fits. */
	deliver(frame, 100);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(len, 112);
	/* A buffer shorter than the header goes back empty, counted. */
	post_rx(1, 8);
	post_rx(1, 512);
	deliver(frame, 100);
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(len, 0);
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(len, 112);
	cr_assert_eq(stats().rx_bad_buffers, 1);
	cr_assert_eq(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

Test(vnet, mergeable_whole_ring_too_small_drops)
{
	tx_slot = rx_slot = 0;
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	post_rx(16, 64); /* 1 KiB in all */
	static uint8_t frame[4000];
	deliver(frame, sizeof(frame));
	cr_assert_eq(stats().rx_too_small, 1);
	/* The buffers were kept and still serve frames that fit. */
	deliver(frame, 100);
	uint32_t id, len;
	unsigned n = 0;
	while (vdrv_get_used(&rx, &id, &len))
		n++;
	cr_assert_eq(n, 2);
}

Test(vnet, runt_and_oversized_input_from_backend)
{
	tx_slot = rx_slot = 0;
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	post_rx(4, 2048);
	uint8_t runt[10] = { 0 };
	deliver(runt, sizeof(runt));
	cr_assert_eq(stats().rx_dropped, 1);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 0);
}

Test(vnet_offload, receive_header_follows_negotiation)
{
	tx_slot = rx_slot = 0;
	/* No GUEST_CSUM: the backend's flags must not reach the guest. */
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	post_rx(4, 2048);
	uint8_t buf[12 + 80];
	memset(buf, 0, sizeof(buf));
	buf[0] = VIRTIO_NET_HDR_F_DATA_VALID;
	deliver(buf, sizeof(buf));
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(len, 92);
	cr_assert_eq(*(uint8_t *)gm_ptr(&mem, rx_gpa[id], 1), 0);
	/* A GSO frame the guest cannot take is dropped. */
	buf[1] = VIRTIO_NET_HDR_GSO_TCPV4;
	deliver(buf, sizeof(buf));
	cr_assert_eq(stats().rx_dropped, 1);
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 0);
}

Test(vnet, reset_forgets_held_buffers)
{
	tx_slot = rx_slot = 0;
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	post_rx(1, 64);
	uint8_t frame[64] = { 0 };
	static uint8_t big[100];
	deliver(big, sizeof(big)); /* holds the one buffer, waits in the backlog */
	cr_assert_eq(stats().rx_frames, 0);
	virtio_set_status(vd, 0);
	vdrv_init(&rx, &mem, 16, 0x100000, 0x400000);
	rx_slot = 0;
	cr_assert_eq(bring_up(VIRTIO_BIT(VIRTIO_NET_F_MRG_RXBUF)), 0);
	post_rx(1, 2048);
	deliver(frame, sizeof(frame));
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(id, 0);
	cr_assert_eq(len, 76);
}
