/* Split virtqueue, device side (virtio 1.2, section 2.7).
 *
 * The driver owns three areas in guest RAM: the descriptor table, the
 * available ring and the used ring. The device reads descriptors and the
 * available ring, and writes the used ring. Every guest-controlled value
 * (indices, addresses, lengths, flags) is untrusted: a violation marks the
 * queue broken, virtq_pop() returns an error from then on, and the caller
 * puts the device into NEEDS_RESET. Nothing a guest writes can make the
 * device loop without bound or touch memory outside guest RAM.
 *
 * Threads: the driver (a vCPU) writes the rings concurrently with the device.
 * The avail index is read with acquire semantics (descriptors and ring
 * entries written before it are then visible), the used index is published
 * with release semantics. A virtq is not itself locked: its owner
 * serialises virtq_pop / virtq_push on one queue (the device lock). */
#ifndef KITE_DEVICES_VIRTIO_VIRTQUEUE_H
#define KITE_DEVICES_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/memory.h"

/* Largest queue size a split ring may have (2.7: Queue Size <= 32768). */
#define VIRTQ_SIZE_LIMIT 32768u

/* Ring feature bits negotiated through the device's feature word. */
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX     29

/* Descriptor flags (2.7.5). */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
/* avail->flags / used->flags (without EVENT_IDX). */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

/* Guest-visible layouts, little-endian. */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/* Bytes each area needs for a queue of `size` entries (with the event-index
 * fields, which are always laid out). */
static inline uint64_t virtq_desc_bytes(unsigned size) { return 16ULL * size; }
static inline uint64_t virtq_avail_bytes(unsigned size) { return 6 + 2ULL * size; }
static inline uint64_t virtq_used_bytes(unsigned size) { return 6 + 8ULL * size; }

/* Why a queue stopped (for logs and tests). */
enum virtq_error {
	VIRTQ_OK = 0,
	VIRTQ_ERR_AVAIL_IDX,      /* avail idx moved by more than the queue size */
	VIRTQ_ERR_HEAD_INDEX,     /* ring entry >= queue size */
	VIRTQ_ERR_NEXT_INDEX,     /* next field >= table size */
	VIRTQ_ERR_CHAIN_LOOP,     /* chain longer than its table: a loop */
	VIRTQ_ERR_TOO_MANY_SEGS,  /* more segments than the element can hold */
	VIRTQ_ERR_BAD_ADDR,       /* buffer not inside guest RAM, or wrapping */
	VIRTQ_ERR_INDIRECT_OFF,   /* INDIRECT used but never negotiated */
	VIRTQ_ERR_INDIRECT_NEST,  /* indirect descriptor inside an indirect table */
	VIRTQ_ERR_INDIRECT_LEN,   /* indirect table length 0, not a multiple of 16, or too big */
	VIRTQ_ERR_INDIRECT_NEXT,  /* INDIRECT together with NEXT */
	VIRTQ_ERR_ORDER,          /* device-readable buffer after a writable one */
	VIRTQ_ERR_RING_ADDR,      /* ring areas not in RAM or misaligned */
	VIRTQ_ERR_PUSH,           /* pushing more elements than were popped */
};
const char *virtq_error_str(enum virtq_error e);

/* One descriptor chain as host buffers: iov[0, n_out) are device-readable
 * (driver -> device), iov[n_out, n_out + n_in) device-writable. */
struct virtq_elem {
	uint16_t head;          /* id pushed back in the used ring */
	unsigned n_out, n_in;
	uint64_t out_bytes, in_bytes;
	unsigned iov_cap;
	struct iovec *iov;      /* iov_cap entries, owned by the caller */
};

/* Guest RAM [gpa, gpa + len) was written by the device through a buffer of
 * this queue (see virtq_push_elem). */
typedef void (*virtq_written_fn)(void *opaque, uint64_t gpa, uint64_t len);

struct virtq {
	/* Set once by the transport (kept across resets): told about device
	 * writes into guest RAM, so a CPU engine can drop code it decoded
	 * there. NULL: nobody cares. */
	virtq_written_fn written_fn;
	void *written_opaque;

	/* Set by the transport while the queue is not ready. */
	uint16_t size;          /* entries; a power of two <= max_size */
	uint16_t max_size;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;

	/* Negotiated ring features. */
	bool indirect, event_idx;

	/* Device-side state. */
	const struct guest_memory *mem;
	struct virtq_desc *desc;
	uint16_t *avail;        /* flags, idx, ring[size], used_event */
	uint16_t *used;         /* flags, idx, ring (as u32 pairs), avail_event */
	uint16_t last_avail;    /* next avail ring entry to consume */
	uint16_t used_idx;      /* next used ring entry to fill */
	uint16_t in_flight;     /* popped and not yet pushed */
	uint16_t signalled_used;
	bool signalled_valid;   /* signalled_used meaningful (event idx) */
	bool notify_off;        /* device asked the driver not to notify */
	enum virtq_error error; /* VIRTQ_OK, or why the queue is broken */
};

/* Reset to the state after device reset: not ready, size = max_size. */
void virtq_init(struct virtq *q, const struct guest_memory *mem, uint16_t max_size);
void virtq_reset(struct virtq *q);

/* The transport writes the queue size: accepted only for a power of two in
 * [1, max_size]. Returns 0 or -EINVAL (size unchanged). */
int virtq_set_size(struct virtq *q, uint16_t size);

/* Enable the queue with the addresses the driver wrote. Checks that each
 * area lies in RAM and is aligned (desc 16, avail 2, used 4). Returns 0, or
 * -EINVAL with q->error = VIRTQ_ERR_RING_ADDR (queue stays not ready). */
int virtq_enable(struct virtq *q, bool indirect, bool event_idx);

static inline bool virtq_broken(const struct virtq *q) { return q->error != VIRTQ_OK; }

/* Pop the next available chain into `e` (whose iov/iov_cap the caller sets).
 * Returns 1 with a chain, 0 when the ring is empty, or -EIO when the queue
 * is (now) broken: q->error says why; the caller sets NEEDS_RESET. */
int virtq_pop(struct virtq *q, struct virtq_elem *e);

/* Return a chain to the driver with `written` bytes written into its
 * device-writable buffers. Publishes the used index with release order.
 * Reports no memory writes: a device that wrote into the chain's buffers
 * uses virtq_push_elem. */
int virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* virtq_push for a popped element whose device-writable buffers the device
 * may have written: first reports every device-writable segment to the
 * queue's written hook (all of them, not only the first `written` bytes:
 * the used length need not describe where the device wrote, e.g. a failed
 * block read reports 1 for its status byte after partly filling the data
 * buffers), then pushes. */
int virtq_push_elem(struct virtq *q, const struct virtq_elem *e, uint32_t written);

void virtq_set_written_hook(struct virtq *q, virtq_written_fn fn, void *opaque);

/* After pushes: must the driver be interrupted? (EVENT_IDX: used_event
 * crossed since the last interrupt; otherwise unless NO_INTERRUPT.) Records
 * the interrupt as sent when it answers true. */
bool virtq_should_interrupt(struct virtq *q);

/* Driver-notification suppression while the device is draining the ring.
 * virtq_enable_notify returns true when more buffers arrived meanwhile (the
 * caller must pop again instead of sleeping). */
void virtq_disable_notify(struct virtq *q);
bool virtq_enable_notify(struct virtq *q);

/* Avail entries not yet popped (0 when broken or not ready). */
uint16_t virtq_pending(const struct virtq *q);

/* Byte-stream helpers over an iovec list (a request's header or status may
 * straddle descriptors; the spec forbids assuming any framing). */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *src, size_t len);
/* Describe bytes [off, off+len) of `iov` as a new list in `out` (at most
 * cap entries). Returns the entry count, or -1 when it does not fit or the
 * range exceeds the list. */
int iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
	      struct iovec *out, unsigned cap);

/* Serialised queue state for save/restore (host byte order). */
struct virtq_state {
	uint16_t size, last_avail, used_idx, signalled_used;
	uint8_t ready, signalled_valid, indirect, event_idx;
	uint64_t desc_gpa, avail_gpa, used_gpa;
};
void virtq_save(const struct virtq *q, struct virtq_state *s);
int virtq_restore(struct virtq *q, const struct virtq_state *s);

#endif
