#include "devices/virtio/virtio_blk.h"

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define BLK_REQ_IOV (VIRTIO_BLK_SEG_MAX + 2) /* header + data + status */

struct virtio_blk {
	struct virtio_device vdev;   /* first: container_of from ops */
	struct virtq vq;
	struct blk_backend *be;
	uint64_t capacity;           /* 512-byte sectors */
	char id[VIRTIO_BLK_ID_BYTES];
	char name[48];
	uint8_t config[VIRTIO_BLK_CONFIG_LEN];
	unsigned in_flight;          /* under vdev.lock */
	pthread_cond_t idle;
};

struct virtio_blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct virtio_blk_dwz_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

struct blk_req {
	struct virtio_blk *blk;
	struct blk_io io;
	uint8_t *status;
	uint32_t written;            /* used length when the I/O succeeds */
	struct virtq_elem elem;
	struct iovec data[BLK_REQ_IOV];
	struct iovec iov[BLK_REQ_IOV];
};

static struct virtio_blk *to_blk(struct virtio_device *vd)
{
	return (struct virtio_blk *)((char *)vd - offsetof(struct virtio_blk, vdev));
}

struct virtio_device *virtio_blk_vdev(struct virtio_blk *blk)
{
	return &blk->vdev;
}

static void put_le32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put_le64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static void put_le16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }

static void blk_config_read(struct virtio_device *vd, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, to_blk(vd)->config + off, len);
}

/* Hand the request back to the driver: status byte, used element, maybe an
 * interrupt. Runs on whichever thread finished the request. */
static void finish(struct blk_req *r, uint8_t status, uint32_t written)
{
	struct virtio_blk *b = r->blk;
	if (r->status)
		*r->status = status;
	pthread_mutex_lock(&b->vdev.lock);
	virtq_push_elem(&b->vq, &r->elem, written);
	bool irq = virtq_should_interrupt(&b->vq);
	if (--b->in_flight == 0)
		pthread_cond_broadcast(&b->idle);
	pthread_mutex_unlock(&b->vdev.lock);
	if (irq)
		virtio_queue_interrupt(&b->vdev, 0);
	free(r);
}

static void io_done(struct blk_io *io, int res)
{
	struct blk_req *r = io->opaque;
	if (res < 0)
		finish(r, VIRTIO_BLK_S_IOERR, 1);
	else
		finish(r, VIRTIO_BLK_S_OK, r->written);
}

/* A sector range [sector, sector + nsect) lies inside the disk. */
static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t nsect)
{
	return sector <= b->capacity && nsect <= b->capacity - sector;
}

static void submit(struct blk_req *r, enum blk_op op, uint64_t offset, uint64_t len, int iovcnt)
{
	r->io = (struct blk_io){ .op = op, .offset = offset, .len = len, .iov = r->data,
				 .iovcnt = iovcnt, .done = io_done, .opaque = r };
	blk_submit(r->blk->be, &r->io);
}

/* Discard / write zeroes: one segment per request (max_*_seg = 1). */
static void handle_dwz(struct blk_req *r, uint32_t type, size_t seg_bytes)
{
	struct virtio_blk *b = r->blk;
	bool discard = type == VIRTIO_BLK_T_DISCARD;
	if (b->be->readonly) {
		finish(r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	if (!virtio_has_feature(&b->vdev, discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES)) {
		finish(r, VIRTIO_BLK_S_UNSUPP, 1);
		return;
	}
	struct virtio_blk_dwz_seg seg;
	if (seg_bytes != sizeof(seg)) {
		finish(r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	iov_to_buf(r->elem.iov, r->elem.n_out, sizeof(struct virtio_blk_req_hdr), &seg, sizeof(seg));
	uint64_t sector = le64toh(seg.sector);
	uint32_t nsect = le32toh(seg.num_sectors);
	uint32_t flags = le32toh(seg.flags);
	/* 5.2.6.2: unmap is meaningless for discard; other flag bits unknown. */
	if ((discard && flags) || (flags & ~VIRTIO_BLK_DWZ_F_UNMAP)) {
		finish(r, VIRTIO_BLK_S_UNSUPP, 1);
		return;
	}
	if (nsect > VIRTIO_BLK_MAX_DWZ_SECTORS || !in_range(b, sector, nsect)) {
		finish(r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	r->io = (struct blk_io){ .op = discard ? BLK_OP_DISCARD : BLK_OP_WRITE_ZEROES,
				 .unmap = flags & VIRTIO_BLK_DWZ_F_UNMAP,
				 .offset = sector * 512, .len = (uint64_t)nsect * 512,
				 .done = io_done, .opaque = r };
	r->written = 1;
	blk_submit(b->be, &r->io);
}

/* Check one popped request and start it. The caller counted it in flight;
 * every path ends in finish() (now or on completion) or NEEDS_RESET. */
static void handle(struct blk_req *r)
{
	struct virtio_blk *b = r->blk;
	struct virtq_elem *e = &r->elem;

	if (e->in_bytes == 0) {
		/* No writable byte for the status: the driver cannot be told
		 * anything about this request, so the device stops. */
		pthread_mutex_lock(&b->vdev.lock);
		virtio_set_needs_reset_locked(&b->vdev, "virtio-blk request without a status byte");
		pthread_mutex_unlock(&b->vdev.lock);
		finish(r, 0, 0);
		return;
	}
	struct iovec *last = &e->iov[e->n_out + e->n_in - 1];
	r->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	uint64_t in_data = e->in_bytes - 1;

	struct virtio_blk_req_hdr hdr;
	if (e->out_bytes < sizeof(hdr)) {
		finish(r, VIRTIO_BLK_S_IOERR, 1);
		return;
	}
	iov_to_buf(e->iov, e->n_out, 0, &hdr, sizeof(hdr));
	uint32_t type = le32toh(hdr.type);
	uint64_t sector = le64toh(hdr.sector);
	uint64_t out_data = e->out_bytes - sizeof(hdr);
	const struct iovec *in_iov = e->iov + e->n_out;

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool write = type == VIRTIO_BLK_T_OUT;
		uint64_t len = write ? out_data : in_data;
		if (write && b->be->readonly) {
			finish(r, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		if (len % 512 || !in_range(b, sector, len / 512)) {
			finish(r, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		int n = write ? iov_slice(e->iov, e->n_out, sizeof(hdr), len, r->data, BLK_REQ_IOV)
			      : iov_slice(in_iov, e->n_in, 0, len, r->data, BLK_REQ_IOV);
		if (n < 0) {
			finish(r, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		/* Used length: bytes written into the driver's buffers (a
		 * 32-bit field; only a hostile driver's overlapping buffers
		 * could exceed it). */
		r->written = write ? 1 : (len >= UINT32_MAX ? UINT32_MAX : (uint32_t)len + 1);
		submit(r, write ? BLK_OP_WRITE : BLK_OP_READ, sector * 512, len, n);
		return;
	}
	case VIRTIO_BLK_T_FLUSH:
		r->written = 1;
		submit(r, BLK_OP_FLUSH, 0, 0, 0);
		return;
	case VIRTIO_BLK_T_GET_ID: {
		size_t n = in_data < VIRTIO_BLK_ID_BYTES ? (size_t)in_data : VIRTIO_BLK_ID_BYTES;
		iov_from_buf(in_iov, e->n_in, 0, b->id, n);
		finish(r, VIRTIO_BLK_S_OK, (uint32_t)n + 1);
		return;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		handle_dwz(r, type, out_data);
		return;
	default:
		finish(r, VIRTIO_BLK_S_UNSUPP, 1);
		return;
	}
}

static void blk_queue_notify(struct virtio_device *vd, unsigned qi)
{
	struct virtio_blk *b = to_blk(vd);
	struct blk_req *r = NULL;
	bool started = false;
	(void)qi;
	for (;;) {
		if (!r) {
			r = malloc(sizeof(*r));
			if (!r) {
				/* The ring keeps the request; the next notify
				 * retries, so notifications must be on. */
				pthread_mutex_lock(&vd->lock);
				virtq_enable_notify(&b->vq);
				pthread_mutex_unlock(&vd->lock);
				break;
			}
		}
		r->blk = b;
		r->status = NULL;
		r->elem.iov = r->iov;
		r->elem.iov_cap = BLK_REQ_IOV;

		pthread_mutex_lock(&vd->lock);
		if (!virtio_live_locked(vd)) {
			pthread_mutex_unlock(&vd->lock);
			break;
		}
		virtq_disable_notify(&b->vq);
		int got = virtq_pop(&b->vq, &r->elem);
		if (got < 0) {
			virtio_set_needs_reset_locked(vd, virtq_error_str(b->vq.error));
			pthread_mutex_unlock(&vd->lock);
			break;
		}
		if (got == 0) {
			bool more = virtq_enable_notify(&b->vq);
			pthread_mutex_unlock(&vd->lock);
			if (more)
				continue;
			break;
		}
		b->in_flight++;
		pthread_mutex_unlock(&vd->lock);
		handle(r);
		r = NULL;
		started = true;
	}
	free(r);
	if (started)
		blk_kick(b->be);
}

static void wait_idle_locked(struct virtio_blk *b)
{
	while (b->in_flight)
		pthread_cond_wait(&b->idle, &b->vdev.lock);
}

static void blk_reset(struct virtio_device *vd)
{
	struct virtio_blk *b = to_blk(vd);
	pthread_mutex_lock(&vd->lock);
	wait_idle_locked(b);
	pthread_mutex_unlock(&vd->lock);
}

void virtio_blk_drain(struct virtio_blk *b)
{
	blk_kick(b->be);
	pthread_mutex_lock(&b->vdev.lock);
	wait_idle_locked(b);
	pthread_mutex_unlock(&b->vdev.lock);
}

unsigned virtio_blk_in_flight(struct virtio_blk *b)
{
	pthread_mutex_lock(&b->vdev.lock);
	unsigned n = b->in_flight;
	pthread_mutex_unlock(&b->vdev.lock);
	return n;
}

static const struct virtio_device_ops blk_ops = {
	.name = "virtio-blk",
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
};

int virtio_blk_create(struct virtio_blk **out, const struct guest_memory *mem,
		      struct blk_backend *be, const char *id)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->be = be;
	b->capacity = be->size / 512;
	strncpy(b->id, id ? id : "", sizeof(b->id)); /* not NUL-terminated at 20 bytes: as the spec says */
	snprintf(b->name, sizeof(b->name), "virtio-blk %.20s", id ? id : "");

	uint64_t f = VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) | VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) |
		     VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
		     VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
	if (be->readonly)
		f |= VIRTIO_BIT(VIRTIO_BLK_F_RO);
	else
		f |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);

	uint8_t *c = b->config;
	put_le64(c + VIRTIO_BLK_CFG_CAPACITY, b->capacity);
	put_le32(c + VIRTIO_BLK_CFG_SIZE_MAX, VIRTIO_BLK_SIZE_MAX);
	put_le32(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
	put_le32(c + VIRTIO_BLK_CFG_BLK_SIZE, 512);
	put_le16(c + VIRTIO_BLK_CFG_NUM_QUEUES, 1);
	if (!be->readonly) {
		put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DWZ_SECTORS);
		put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, 1);
		put_le32(c + VIRTIO_BLK_CFG_DISCARD_ALIGN, 8); /* 4 KiB: host page granularity */
		put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VIRTIO_BLK_MAX_DWZ_SECTORS);
		put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, 1);
		c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
	}

	virtq_init(&b->vq, mem, VIRTIO_BLK_QUEUE_SIZE);
	virtio_device_init(&b->vdev, &blk_ops, b->name, VIRTIO_ID_BLOCK, f,
			   VIRTIO_BLK_CONFIG_LEN, &b->vq, 1);
	pthread_cond_init(&b->idle, NULL);
	*out = b;
	return 0;
}

int virtio_blk_create_from_config(struct virtio_blk **out, const struct guest_memory *mem,
				  const struct disk_config *cfg)
{
	struct blk_backend *be;
	int ret = blk_open(&be, cfg->path, cfg->readonly, cfg->engine);
	if (ret)
		return ret;
	ret = virtio_blk_create(out, mem, be, cfg->id);
	if (ret)
		blk_close(be);
	return ret;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	virtio_blk_drain(b);
	blk_close(b->be);
	pthread_cond_destroy(&b->idle);
	virtio_device_fini(&b->vdev);
	free(b);
}

int virtio_blk_swap_backend(struct virtio_blk *b, struct blk_backend *be,
			    struct blk_backend **old)
{
	/* The feature bits (RO, discard) were offered already: keep them true. */
	if (be->readonly != b->be->readonly)
		return -EINVAL;
	blk_kick(b->be);
	pthread_mutex_lock(&b->vdev.lock);
	wait_idle_locked(b);
	*old = b->be;
	b->be = be;
	b->capacity = be->size / 512;
	put_le64(b->config + VIRTIO_BLK_CFG_CAPACITY, b->capacity);
	pthread_mutex_unlock(&b->vdev.lock);
	/* the driver re-reads the capacity (Linux: "capacity change") */
	virtio_config_changed(&b->vdev);
	return 0;
}

size_t virtio_blk_save(struct virtio_blk *b, void *buf, size_t len)
{
	virtio_blk_drain(b);
	return virtio_save(&b->vdev, buf, len);
}

int virtio_blk_restore(struct virtio_blk *b, const void *buf, size_t len)
{
	virtio_blk_drain(b);
	return virtio_restore(&b->vdev, buf, len);
}
