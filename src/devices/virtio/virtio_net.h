/* virtio-net (virtio 1.2, section 5.1): one receive/transmit queue pair
 * over a net backend.
 *
 * Threads: all frame work runs on the event-loop thread. A transmitq
 * notification (a vCPU) only schedules the loop to drain the queue; a
 * receiveq notification schedules it to deliver what was waiting. Frames
 * from the backend are written straight into the guest's receive buffers
 * (mergeable: spread over as many as needed) or, while the guest has none,
 * kept in a small backlog; beyond that they are dropped and counted.
 *
 * Offloads (checksum, TSO, UFO) are offered only when the backend can honour
 * them (tap with a vnet header); over slirp the device offers none and the
 * guest sends and receives complete frames.
 *
 * The guest is hostile: a TX chain whose header is short, whose frame is
 * empty or bigger than NET_FRAME_MAX, or which asks for offloads never
 * negotiated is dropped and counted (the queue keeps going); receive
 * buffers too small for the header are returned empty and counted. Ring
 * corruption (a virtq error) puts the device into NEEDS_RESET. */
#ifndef KITE_DEVICES_VIRTIO_VIRTIO_NET_H
#define KITE_DEVICES_VIRTIO_VIRTIO_NET_H

#include <stdint.h>

#include "devices/virtio/virtio.h"

struct net_backend;
struct virtio_net;

/* Feature bits (5.1.3). */
#define VIRTIO_NET_F_CSUM       0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC        5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN  9
#define VIRTIO_NET_F_GUEST_UFO  10
#define VIRTIO_NET_F_HOST_TSO4  11
#define VIRTIO_NET_F_HOST_TSO6  12
#define VIRTIO_NET_F_HOST_ECN   13
#define VIRTIO_NET_F_HOST_UFO   14
#define VIRTIO_NET_F_MRG_RXBUF  15
#define VIRTIO_NET_F_STATUS     16

#define VIRTIO_NET_S_LINK_UP    1

/* struct virtio_net_hdr (5.1.6), 12 bytes with VERSION_1. */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE     0
#define VIRTIO_NET_HDR_GSO_TCPV4    1
#define VIRTIO_NET_HDR_GSO_UDP      3
#define VIRTIO_NET_HDR_GSO_TCPV6    4
#define VIRTIO_NET_HDR_GSO_ECN      0x80

struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};
#define VIRTIO_NET_HDR_LEN 12

/* Config space: mac[6], status, max_virtqueue_pairs, mtu. */
#define VIRTIO_NET_CFG_MAC      0
#define VIRTIO_NET_CFG_STATUS   6
#define VIRTIO_NET_CFG_MAX_VQP  8
#define VIRTIO_NET_CONFIG_LEN   12

#define VIRTIO_NET_QUEUE_SIZE   256
#define VIRTIO_NET_RXQ 0
#define VIRTIO_NET_TXQ 1
/* Frames kept while the guest posts no receive buffers. */
#define VIRTIO_NET_RX_BACKLOG   32

struct virtio_net_stats {
	uint64_t tx_frames, tx_bytes, rx_frames, rx_bytes;
	uint64_t tx_dropped;       /* malformed: short header, bad size, bad offload */
	uint64_t tx_errors;        /* the backend refused */
	uint64_t rx_dropped;       /* no buffers and the backlog full, or the guest not ready */
	uint64_t rx_too_small;     /* the guest's buffers cannot hold the frame */
	uint64_t rx_bad_buffers;   /* buffers too short for a header, returned empty */
};

/* Create the device on a backend (which it owns from then on and starts);
 * mac: the address the guest reads. */
int virtio_net_create(struct virtio_net **out, const struct guest_memory *mem,
		      struct net_backend *be, const uint8_t mac[6], const char *name);
void virtio_net_destroy(struct virtio_net *n);
struct virtio_device *virtio_net_vdev(struct virtio_net *n);
void virtio_net_get_stats(struct virtio_net *n, struct virtio_net_stats *s);
/* Before save: receive buffers taken from the ring go back empty. */
void virtio_net_quiesce(struct virtio_net *n);

#endif
