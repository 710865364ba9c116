/* A minimal virtio driver, as a guest would be, for tests, benchmarks and
 * fuzz harnesses: lays out a split ring in guest RAM, writes descriptors
 * and avail entries, reads the used ring. Header-only (static functions) so
 * unit tests, bench/ and tests/fuzz/ share it without a library. */
#ifndef KITE_TESTS_VIRTQ_DRIVER_H
#define KITE_TESTS_VIRTQ_DRIVER_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#include "devices/virtio/virtio.h"
#include "vmm/memory.h"

struct vdrv {
	const struct guest_memory *mem;
	uint16_t size;
	uint64_t desc, avail, used;  /* ring areas (gpa) */
	uint64_t heap, heap_end;     /* bump allocator for buffers (gpa) */
	uint16_t avail_idx;          /* next avail index the driver publishes */
	uint16_t used_seen;          /* used entries consumed so far */
	uint16_t next_desc;          /* next free descriptor (round robin) */
};

static inline void *vdrv_host(const struct vdrv *d, uint64_t gpa, uint64_t len)
{
	return gm_ptr(d->mem, gpa, len);
}

/* Rings at `base` (page aligned), buffers from base + 64 KiB up to `end`. */
static inline void vdrv_init(struct vdrv *d, const struct guest_memory *mem, uint16_t size,
			     uint64_t base, uint64_t end)
{
	memset(d, 0, sizeof(*d));
	d->mem = mem;
	d->size = size;
	d->desc = base;
	d->avail = base + 16ULL * size;
	d->used = (d->avail + 6 + 2ULL * size + 4095) & ~4095ULL;
	d->heap = (d->used + 6 + 8ULL * size + 4095) & ~4095ULL;
	d->heap_end = end;
	memset(vdrv_host(d, base, d->heap - base), 0, d->heap - base);
}

static inline uint64_t vdrv_alloc(struct vdrv *d, uint64_t len)
{
	uint64_t p = d->heap;
	d->heap = (d->heap + len + 15) & ~15ULL;
	if (d->heap > d->heap_end)
		return 0;
	return p;
}

static inline void vdrv_reset_heap(struct vdrv *d, uint64_t start)
{
	d->heap = start;
}

/* Write descriptor idx of the table at table_gpa. */
static inline void vdrv_set_desc_at(struct vdrv *d, uint64_t table_gpa, uint16_t idx,
				    uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc v = { htole64(addr), htole32(len), htole16(flags), htole16(next) };
	memcpy(vdrv_host(d, table_gpa + 16ULL * idx, 16), &v, 16);
}

static inline void vdrv_set_desc(struct vdrv *d, uint16_t idx, uint64_t addr, uint32_t len,
				 uint16_t flags, uint16_t next)
{
	vdrv_set_desc_at(d, d->desc, idx, addr, len, flags, next);
}

static inline uint16_t *vdrv_avail(const struct vdrv *d)
{
	return vdrv_host(d, d->avail, 6 + 2ULL * d->size);
}
static inline uint16_t *vdrv_used16(const struct vdrv *d)
{
	return vdrv_host(d, d->used, 6 + 8ULL * d->size);
}

/* Publish a chain head (release: descriptors before the index). */
static inline void vdrv_post(struct vdrv *d, uint16_t head)
{
	uint16_t *a = vdrv_avail(d);
	a[2 + (d->avail_idx & (d->size - 1))] = htole16(head);
	d->avail_idx++;
	__atomic_store_n(&a[1], htole16(d->avail_idx), __ATOMIC_RELEASE);
}

static inline void vdrv_set_avail_idx(struct vdrv *d, uint16_t idx)
{
	__atomic_store_n(&vdrv_avail(d)[1], htole16(idx), __ATOMIC_RELEASE);
}

static inline void vdrv_set_used_event(struct vdrv *d, uint16_t v)
{
	__atomic_store_n(&vdrv_avail(d)[2 + d->size], htole16(v), __ATOMIC_RELAXED);
}
static inline uint16_t vdrv_avail_event(const struct vdrv *d)
{
	return le16toh(__atomic_load_n(&vdrv_used16(d)[2 + 4 * (unsigned)d->size], __ATOMIC_RELAXED));
}

static inline uint16_t vdrv_used_idx(const struct vdrv *d)
{
	return le16toh(__atomic_load_n(&vdrv_used16(d)[1], __ATOMIC_ACQUIRE));
}

/* Next used element: 1 with id/len, 0 when none. */
static inline int vdrv_get_used(struct vdrv *d, uint32_t *id, uint32_t *len)
{
	if (vdrv_used_idx(d) == d->used_seen)
		return 0;
	uint32_t *e = (uint32_t *)&vdrv_used16(d)[2] + 2 * (d->used_seen & (d->size - 1));
	*id = le32toh(e[0]);
	*len = le32toh(e[1]);
	d->used_seen++;
	return 1;
}

/* Take a device through the initialisation sequence (3.1.1) with queue 0
 * (and every other queue, all with the same layout size) on this ring. */
static inline int vdrv_bring_up(struct virtio_device *vd, struct vdrv *d, uint64_t features)
{
	virtio_set_status(vd, 0);
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_set_driver_features(vd, 0, (uint32_t)features);
	virtio_set_driver_features(vd, 1, (uint32_t)(features >> 32));
	uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	virtio_set_status(vd, s);
	if (!(virtio_get_status(vd) & VIRTIO_STATUS_FEATURES_OK))
		return -1;
	if (virtio_queue_set_size(vd, 0, d->size) ||
	    virtio_queue_set_addr(vd, 0, d->desc, d->avail, d->used) ||
	    virtio_queue_set_ready(vd, 0))
		return -1;
	virtio_set_status(vd, s | VIRTIO_STATUS_DRIVER_OK);
	return (virtio_get_status(vd) & VIRTIO_STATUS_DRIVER_OK) ? 0 : -1;
}

#endif
