#include "devices/virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

const char *virtq_error_str(enum virtq_error e)
{
	switch (e) {
	case VIRTQ_OK: return "ok";
	case VIRTQ_ERR_AVAIL_IDX: return "avail index jumped beyond the queue size";
	case VIRTQ_ERR_HEAD_INDEX: return "avail ring entry beyond the queue size";
	case VIRTQ_ERR_NEXT_INDEX: return "descriptor next beyond its table";
	case VIRTQ_ERR_CHAIN_LOOP: return "descriptor chain loops or is too long";
	case VIRTQ_ERR_TOO_MANY_SEGS: return "descriptor chain has too many segments";
	case VIRTQ_ERR_BAD_ADDR: return "buffer outside guest RAM";
	case VIRTQ_ERR_INDIRECT_OFF: return "indirect descriptor not negotiated";
	case VIRTQ_ERR_INDIRECT_NEST: return "indirect descriptor inside an indirect table";
	case VIRTQ_ERR_INDIRECT_LEN: return "bad indirect table length";
	case VIRTQ_ERR_INDIRECT_NEXT: return "indirect descriptor with NEXT";
	case VIRTQ_ERR_ORDER: return "device-readable buffer after a device-writable one";
	case VIRTQ_ERR_RING_ADDR: return "ring area outside guest RAM or misaligned";
	case VIRTQ_ERR_PUSH: return "used element without a popped chain";
	}
	return "?";
}

/* Ring field accessors. The guest writes these concurrently: every access is
 * a single atomic load/store of the naturally aligned field. */
static inline uint16_t ld16(const uint16_t *p, int order)
{
	return le16toh(__atomic_load_n(p, order));
}
static inline void st16(uint16_t *p, uint16_t v, int order)
{
	__atomic_store_n(p, htole16(v), order);
}

static inline uint16_t avail_flags(const struct virtq *q) { return ld16(&q->avail[0], __ATOMIC_RELAXED); }
static inline uint16_t avail_idx_acquire(const struct virtq *q) { return ld16(&q->avail[1], __ATOMIC_ACQUIRE); }
static inline uint16_t avail_ring(const struct virtq *q, uint16_t i) { return ld16(&q->avail[2 + i], __ATOMIC_RELAXED); }
static inline uint16_t used_event(const struct virtq *q) { return ld16(&q->avail[2 + q->size], __ATOMIC_RELAXED); }
static inline uint16_t *used_flags_p(const struct virtq *q) { return &q->used[0]; }
static inline uint16_t *used_idx_p(const struct virtq *q) { return &q->used[1]; }
static inline uint16_t *avail_event_p(const struct virtq *q) { return &q->used[2 + 4 * (unsigned)q->size]; }

void virtq_init(struct virtq *q, const struct guest_memory *mem, uint16_t max_size)
{
	memset(q, 0, sizeof(*q));
	q->mem = mem;
	q->max_size = max_size;
	virtq_reset(q);
}

void virtq_reset(struct virtq *q)
{
	const struct guest_memory *mem = q->mem;
	uint16_t max = q->max_size;
	virtq_written_fn fn = q->written_fn;
	void *opaque = q->written_opaque;
	memset(q, 0, sizeof(*q));
	q->mem = mem;
	q->max_size = max;
	q->size = max;
	q->written_fn = fn;
	q->written_opaque = opaque;
}

void virtq_set_written_hook(struct virtq *q, virtq_written_fn fn, void *opaque)
{
	q->written_fn = fn;
	q->written_opaque = opaque;
}

/* The guest-physical address of a host pointer into guest RAM (a buffer
 * virtq_pop mapped: it lies inside one region). */
static bool host_to_gpa(const struct guest_memory *mem, const void *p, uint64_t *gpa)
{
	const uint8_t *b = p;
	for (int i = 0; i < mem->nr_regions; i++) {
		const struct mem_region *r = &mem->region[i];
		if (b >= r->host && (uint64_t)(b - r->host) < r->size) {
			*gpa = r->gpa + (uint64_t)(b - r->host);
			return true;
		}
	}
	return false;
}

int virtq_set_size(struct virtq *q, uint16_t size)
{
	if (size == 0 || size > q->max_size || (size & (size - 1)))
		return -EINVAL;
	q->size = size;
	return 0;
}

int virtq_enable(struct virtq *q, bool indirect, bool event_idx)
{
	unsigned n = q->size;
	void *d = gm_ptr(q->mem, q->desc_gpa, virtq_desc_bytes(n));
	void *a = gm_ptr(q->mem, q->avail_gpa, virtq_avail_bytes(n));
	void *u = gm_ptr(q->mem, q->used_gpa, virtq_used_bytes(n));
	if (!d || !a || !u || (q->desc_gpa & 15) || (q->avail_gpa & 1) ||
	    (q->used_gpa & 3) || n == 0 || (n & (n - 1))) {
		q->error = VIRTQ_ERR_RING_ADDR;
		q->ready = false;
		return -EINVAL;
	}
	q->desc = d;
	q->avail = a;
	q->used = u;
	q->indirect = indirect;
	q->event_idx = event_idx;
	q->error = VIRTQ_OK;
	q->ready = true;
	return 0;
}

static int fail(struct virtq *q, enum virtq_error e)
{
	q->error = e;
	return -EIO;
}

uint16_t virtq_pending(const struct virtq *q)
{
	if (!q->ready || virtq_broken(q))
		return 0;
	uint16_t n = (uint16_t)(avail_idx_acquire(q) - q->last_avail);
	return n > q->size ? 0 : n;
}

/* Walk one chain. `table` has `table_size` entries; budget bounds the walk
 * so a loop in the next fields ends it. */
int virtq_pop(struct virtq *q, struct virtq_elem *e)
{
	if (!q->ready)
		return 0;
	if (virtq_broken(q))
		return -EIO;

	/* Acquire: the ring entry and descriptors the driver wrote before
	 * publishing this index are visible after the load. */
	uint16_t avail = avail_idx_acquire(q);
	uint16_t pending = (uint16_t)(avail - q->last_avail);
	if (pending > q->size)
		return fail(q, VIRTQ_ERR_AVAIL_IDX);
	if (pending == 0)
		return 0;

	uint16_t head = avail_ring(q, q->last_avail & (q->size - 1));
	if (head >= q->size)
		return fail(q, VIRTQ_ERR_HEAD_INDEX);

	e->head = head;
	e->n_out = e->n_in = 0;
	e->out_bytes = e->in_bytes = 0;

	/* Bytes, not structs: an indirect table need not be aligned. */
	const uint8_t *table = (const uint8_t *)q->desc;
	uint32_t table_size = q->size;
	uint32_t budget = q->size;
	bool in_indirect = false;
	uint32_t idx = head;

	for (;;) {
		if (budget-- == 0)
			return fail(q, VIRTQ_ERR_CHAIN_LOOP);
		/* One copy of the descriptor: the guest may rewrite it under us
		 * and every check below must be about the values we use. */
		struct virtq_desc d;
		memcpy(&d, table + (size_t)idx * sizeof(d), sizeof(d));
		uint64_t addr = le64toh(d.addr);
		uint32_t len = le32toh(d.len);
		uint16_t flags = le16toh(d.flags);
		uint16_t next = le16toh(d.next);

		if (flags & VIRTQ_DESC_F_INDIRECT) {
			if (!q->indirect)
				return fail(q, VIRTQ_ERR_INDIRECT_OFF);
			if (in_indirect)
				return fail(q, VIRTQ_ERR_INDIRECT_NEST);
			if (flags & VIRTQ_DESC_F_NEXT)
				return fail(q, VIRTQ_ERR_INDIRECT_NEXT);
			if (len == 0 || len % sizeof(struct virtq_desc) ||
			    len / sizeof(struct virtq_desc) > VIRTQ_SIZE_LIMIT)
				return fail(q, VIRTQ_ERR_INDIRECT_LEN);
			const uint8_t *t = gm_ptr(q->mem, addr, len);
			if (!t)
				return fail(q, VIRTQ_ERR_BAD_ADDR);
			table = t;
			table_size = len / sizeof(struct virtq_desc);
			budget = table_size;
			in_indirect = true;
			idx = 0;
			continue;
		}

		bool writable = flags & VIRTQ_DESC_F_WRITE;
		if (!writable && e->n_in)
			return fail(q, VIRTQ_ERR_ORDER);
		if (len) {
			void *p = gm_ptr(q->mem, addr, len);
			if (!p)
				return fail(q, VIRTQ_ERR_BAD_ADDR);
			if (e->n_out + e->n_in >= e->iov_cap)
				return fail(q, VIRTQ_ERR_TOO_MANY_SEGS);
			e->iov[e->n_out + e->n_in] = (struct iovec){ p, len };
			if (writable) {
				e->n_in++;
				e->in_bytes += len;
			} else {
				e->n_out++;
				e->out_bytes += len;
			}
		}
		if (!(flags & VIRTQ_DESC_F_NEXT))
			break;
		if (next >= table_size)
			return fail(q, VIRTQ_ERR_NEXT_INDEX);
		idx = next;
	}

	q->last_avail++;
	q->in_flight++;
	if (q->event_idx && !q->notify_off)
		st16(avail_event_p(q), q->last_avail, __ATOMIC_RELAXED);
	return 1;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	if (!q->ready || q->in_flight == 0 || head >= q->size) {
		q->error = VIRTQ_ERR_PUSH;
		return -EINVAL;
	}
	uint32_t *elem = (uint32_t *)&q->used[2] + 2 * (q->used_idx & (q->size - 1));
	__atomic_store_n(&elem[0], htole32(head), __ATOMIC_RELAXED);
	__atomic_store_n(&elem[1], htole32(written), __ATOMIC_RELAXED);
	q->used_idx++;
	q->in_flight--;
	/* Release: the element (and the data written into the buffers) is
	 * visible before the index that hands it to the driver. */
	st16(used_idx_p(q), q->used_idx, __ATOMIC_RELEASE);
	return 0;
}

int virtq_push_elem(struct virtq *q, const struct virtq_elem *e, uint32_t written)
{
	if (q->written_fn && e->n_out + e->n_in <= e->iov_cap) {
		for (unsigned i = e->n_out; i < e->n_out + e->n_in; i++) {
			uint64_t gpa;
			if (e->iov[i].iov_len && host_to_gpa(q->mem, e->iov[i].iov_base, &gpa))
				q->written_fn(q->written_opaque, gpa, e->iov[i].iov_len);
		}
	}
	return virtq_push(q, e->head, written);
}

/* 2.7.10: with event index, interrupt when the used index passed used_event
 * in the step from old to new. */
static inline bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool virtq_should_interrupt(struct virtq *q)
{
	if (!q->ready)
		return false;
	/* Full barrier: the used index store must be ordered before the load
	 * of the driver's suppression field, or both sides may sleep. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!q->event_idx)
		return !(avail_flags(q) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t old = q->signalled_used;
	bool valid = q->signalled_valid;
	q->signalled_used = q->used_idx;
	q->signalled_valid = true;
	if (!valid)
		return true;
	return need_event(used_event(q), q->used_idx, old);
}

void virtq_disable_notify(struct virtq *q)
{
	if (!q->ready)
		return;
	q->notify_off = true;
	if (!q->event_idx)
		st16(used_flags_p(q), VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
}

bool virtq_enable_notify(struct virtq *q)
{
	if (!q->ready)
		return false;
	q->notify_off = false;
	if (q->event_idx)
		st16(avail_event_p(q), q->last_avail, __ATOMIC_RELAXED);
	else
		st16(used_flags_p(q), 0, __ATOMIC_RELAXED);
	/* Publish the request for notifications before looking again, so a
	 * buffer added concurrently is either seen here or notified. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !virtq_broken(q) && avail_idx_acquire(q) != q->last_avail;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((uint8_t *)dst + done, (uint8_t *)iov[i].iov_base + off, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *src, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)src + done, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

int iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
	      struct iovec *out, unsigned cap)
{
	unsigned k = 0;
	size_t left = len;
	for (unsigned i = 0; i < n && left; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - off;
		if (chunk > left)
			chunk = left;
		if (k == cap)
			return -1;
		out[k++] = (struct iovec){ (uint8_t *)iov[i].iov_base + off, chunk };
		left -= chunk;
		off = 0;
	}
	return left ? -1 : (int)k;
}

void virtq_save(const struct virtq *q, struct virtq_state *s)
{
	memset(s, 0, sizeof(*s));
	s->size = q->size;
	s->last_avail = q->last_avail;
	s->used_idx = q->used_idx;
	s->signalled_used = q->signalled_used;
	s->ready = q->ready;
	s->signalled_valid = q->signalled_valid;
	s->indirect = q->indirect;
	s->event_idx = q->event_idx;
	s->desc_gpa = q->desc_gpa;
	s->avail_gpa = q->avail_gpa;
	s->used_gpa = q->used_gpa;
}

int virtq_restore(struct virtq *q, const struct virtq_state *s)
{
	virtq_reset(q);
	if (virtq_set_size(q, s->size))
		return -EINVAL;
	q->desc_gpa = s->desc_gpa;
	q->avail_gpa = s->avail_gpa;
	q->used_gpa = s->used_gpa;
	if (s->ready && virtq_enable(q, s->indirect, s->event_idx))
		return -EINVAL;
	q->last_avail = s->last_avail;
	q->used_idx = s->used_idx;
	q->signalled_used = s->signalled_used;
	q->signalled_valid = s->signalled_valid;
	return 0;
}
