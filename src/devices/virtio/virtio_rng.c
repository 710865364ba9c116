#include "devices/virtio/virtio_rng.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/random.h>

struct virtio_rng {
	struct virtio_device vdev;
	struct virtq vq;
};

static struct virtio_rng *to_rng(struct virtio_device *vd)
{
	return (struct virtio_rng *)((char *)vd - offsetof(struct virtio_rng, vdev));
}

struct virtio_device *virtio_rng_vdev(struct virtio_rng *rng)
{
	return &rng->vdev;
}

static void rng_config_read(struct virtio_device *vd, uint32_t off, void *buf, uint32_t len)
{
	(void)vd; (void)off; (void)buf; (void)len; /* no config space */
}

/* Fill the writable buffers of one chain with up to VIRTIO_RNG_MAX_CHUNK
 * random bytes; returns the count written. */
static uint32_t fill(const struct virtq_elem *e)
{
	uint32_t total = 0;
	for (unsigned i = e->n_out; i < e->n_out + e->n_in && total < VIRTIO_RNG_MAX_CHUNK; i++) {
		size_t want = e->iov[i].iov_len;
		if (want > VIRTIO_RNG_MAX_CHUNK - total)
			want = VIRTIO_RNG_MAX_CHUNK - total;
		ssize_t n = getrandom(e->iov[i].iov_base, want, 0);
		if (n <= 0)
			break;
		total += (uint32_t)n;
		if ((size_t)n < want)
			break;
	}
	return total;
}

/* getrandom is fast and never blocks once the host pool is initialised, so
 * requests are served right in the notify. */
static void rng_queue_notify(struct virtio_device *vd, unsigned qi)
{
	struct virtio_rng *rng = to_rng(vd);
	struct iovec iov[64];
	struct virtq_elem e = { .iov = iov, .iov_cap = 64 };
	bool irq = false;
	(void)qi;
	pthread_mutex_lock(&vd->lock);
	while (virtio_live_locked(vd)) {
		int got = virtq_pop(&rng->vq, &e);
		if (got < 0) {
			virtio_set_needs_reset_locked(vd, virtq_error_str(rng->vq.error));
			break;
		}
		if (got == 0)
			break;
		virtq_push_elem(&rng->vq, &e, fill(&e));
		irq |= virtq_should_interrupt(&rng->vq);
	}
	pthread_mutex_unlock(&vd->lock);
	if (irq)
		virtio_queue_interrupt(vd, 0);
}

static const struct virtio_device_ops rng_ops = {
	.name = "virtio-rng",
	.config_read = rng_config_read,
	.queue_notify = rng_queue_notify,
};

int virtio_rng_create(struct virtio_rng **out, const struct guest_memory *mem)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	if (!rng)
		return -ENOMEM;
	virtq_init(&rng->vq, mem, VIRTIO_RNG_QUEUE_SIZE);
	virtio_device_init(&rng->vdev, &rng_ops, "virtio-rng", VIRTIO_ID_RNG,
			   VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX),
			   0, &rng->vq, 1);
	*out = rng;
	return 0;
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	if (!rng)
		return;
	virtio_device_fini(&rng->vdev);
	free(rng);
}
