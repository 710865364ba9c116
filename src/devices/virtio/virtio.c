#include "devices/virtio/virtio.h"

#include <errno.h>
#include <string.h>

#include "util/log.h"

void virtio_device_init(struct virtio_device *vd, const struct virtio_device_ops *ops,
			const char *name, uint32_t device_id, uint64_t host_features,
			uint32_t config_len, struct virtq *queues, unsigned nr_queues)
{
	memset(vd, 0, sizeof(*vd));
	vd->ops = ops;
	vd->name = name;
	vd->device_id = device_id;
	/* Every modern device offers VERSION_1; kite has no legacy interface. */
	vd->host_features = host_features | VIRTIO_BIT(VIRTIO_F_VERSION_1);
	vd->config_len = config_len;
	vd->queues = queues;
	vd->nr_queues = nr_queues;
	pthread_mutex_init(&vd->lock, NULL);
}

void virtio_device_fini(struct virtio_device *vd)
{
	pthread_mutex_destroy(&vd->lock);
}

void virtio_set_transport(struct virtio_device *vd, const struct virtio_transport_hooks *h)
{
	pthread_mutex_lock(&vd->lock);
	vd->hooks = *h;
	for (unsigned i = 0; i < vd->nr_queues; i++)
		virtq_set_written_hook(&vd->queues[i], h->mem_written, h->opaque);
	pthread_mutex_unlock(&vd->lock);
}

uint32_t virtio_get_device_features(struct virtio_device *vd, unsigned sel)
{
	if (sel > 1)
		return 0;
	return (uint32_t)(vd->host_features >> (32 * sel));
}

uint32_t virtio_get_driver_features(struct virtio_device *vd, unsigned sel)
{
	pthread_mutex_lock(&vd->lock);
	uint32_t v = sel > 1 ? 0 : (uint32_t)(vd->driver_features >> (32 * sel));
	pthread_mutex_unlock(&vd->lock);
	return v;
}

void virtio_set_driver_features(struct virtio_device *vd, unsigned sel, uint32_t val)
{
	pthread_mutex_lock(&vd->lock);
	if (sel <= 1 && !(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
		uint64_t mask = 0xffffffffULL << (32 * sel);
		vd->driver_features = (vd->driver_features & ~mask) |
				      ((uint64_t)val << (32 * sel));
	}
	pthread_mutex_unlock(&vd->lock);
}

uint8_t virtio_get_status(struct virtio_device *vd)
{
	pthread_mutex_lock(&vd->lock);
	uint8_t s = vd->status;
	pthread_mutex_unlock(&vd->lock);
	return s;
}

bool virtio_live_locked(const struct virtio_device *vd)
{
	return (vd->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vd->status & VIRTIO_STATUS_NEEDS_RESET);
}

bool virtio_has_feature(const struct virtio_device *vd, unsigned bit)
{
	return bit < 64 && (vd->driver_features & VIRTIO_BIT(bit)) &&
	       (vd->status & VIRTIO_STATUS_FEATURES_OK);
}

void virtio_set_needs_reset_locked(struct virtio_device *vd, const char *why)
{
	if (vd->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	/* A guest can break and reset the device in a loop: the first few
	 * errors are worth a warning, the rest only a debug line. */
	if (vd->guest_errors++ < 8)
		kite_warn("%s: guest error, device needs reset: %s", vd->name, why);
	else
		kite_debug("%s: guest error, device needs reset: %s", vd->name, why);
	vd->status |= VIRTIO_STATUS_NEEDS_RESET;
	/* 2.1.2: a device that sets NEEDS_RESET after DRIVER_OK sends a
	 * configuration change notification. */
	if ((vd->status & VIRTIO_STATUS_DRIVER_OK) && vd->hooks.config_irq)
		vd->hooks.config_irq(vd->hooks.opaque);
}

static bool features_acceptable(struct virtio_device *vd)
{
	uint64_t f = vd->driver_features;
	if (f & ~vd->host_features) {
		kite_debug("%s: driver accepted features never offered (0x%llx)", vd->name,
			  (unsigned long long)(f & ~vd->host_features));
		return false;
	}
	if (!(f & VIRTIO_BIT(VIRTIO_F_VERSION_1))) {
		kite_debug("%s: driver did not accept VIRTIO_F_VERSION_1 (legacy drivers unsupported)",
			  vd->name);
		return false;
	}
	return !vd->ops->set_features || vd->ops->set_features(vd, f) == 0;
}

void virtio_reset(struct virtio_device *vd)
{
	/* Status 0 first, so no notification starts new work; then the device
	 * drains (unlocked: completions need the lock); then the common state
	 * goes back to its initial values. */
	pthread_mutex_lock(&vd->lock);
	vd->status = 0;
	pthread_mutex_unlock(&vd->lock);
	if (vd->ops->reset)
		vd->ops->reset(vd);
	pthread_mutex_lock(&vd->lock);
	vd->status = 0;
	vd->driver_features = 0;
	for (unsigned i = 0; i < vd->nr_queues; i++)
		virtq_reset(&vd->queues[i]);
	pthread_mutex_unlock(&vd->lock);
}

void virtio_set_status(struct virtio_device *vd, uint8_t val)
{
	if (val == 0) {
		virtio_reset(vd);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	uint8_t old = vd->status;
	uint8_t add = val & ~old & ~VIRTIO_STATUS_NEEDS_RESET;

	if (add & VIRTIO_STATUS_FEATURES_OK) {
		if (!features_acceptable(vd))
			add &= ~VIRTIO_STATUS_FEATURES_OK;
		else {
			bool indirect = vd->driver_features & VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC);
			bool evidx = vd->driver_features & VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
			for (unsigned i = 0; i < vd->nr_queues; i++) {
				vd->queues[i].indirect = indirect;
				vd->queues[i].event_idx = evidx;
			}
		}
	}
	vd->status |= add & ~VIRTIO_STATUS_DRIVER_OK;

	if (add & VIRTIO_STATUS_DRIVER_OK) {
		if (!(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
			vd->status |= VIRTIO_STATUS_DRIVER_OK;
			virtio_set_needs_reset_locked(vd, "DRIVER_OK without FEATURES_OK");
		} else {
			vd->status |= VIRTIO_STATUS_DRIVER_OK;
			if (vd->ops->activate && vd->ops->activate(vd))
				virtio_set_needs_reset_locked(vd, "activation failed");
		}
	}
	pthread_mutex_unlock(&vd->lock);
}

int virtio_config_read(struct virtio_device *vd, uint32_t off, void *buf, uint32_t len)
{
	if (off > vd->config_len || len > vd->config_len - off) {
		memset(buf, 0, len);
		return -EINVAL;
	}
	pthread_mutex_lock(&vd->lock);
	vd->ops->config_read(vd, off, buf, len);
	pthread_mutex_unlock(&vd->lock);
	return 0;
}

int virtio_config_write(struct virtio_device *vd, uint32_t off, const void *buf, uint32_t len)
{
	if (off > vd->config_len || len > vd->config_len - off || !vd->ops->config_write)
		return -EINVAL;
	pthread_mutex_lock(&vd->lock);
	vd->ops->config_write(vd, off, buf, len);
	pthread_mutex_unlock(&vd->lock);
	return 0;
}

uint8_t virtio_config_generation(struct virtio_device *vd)
{
	pthread_mutex_lock(&vd->lock);
	uint8_t g = vd->config_generation;
	pthread_mutex_unlock(&vd->lock);
	return g;
}

void virtio_config_changed(struct virtio_device *vd)
{
	pthread_mutex_lock(&vd->lock);
	vd->config_generation++;
	bool live = vd->status & VIRTIO_STATUS_DRIVER_OK;
	struct virtio_transport_hooks h = vd->hooks;
	pthread_mutex_unlock(&vd->lock);
	if (live && h.config_irq)
		h.config_irq(h.opaque);
}

/* Queue set-up registers are writable only before the queue is enabled
 * and before DRIVER_OK (4.1.4.3.2). */
static struct virtq *setup_queue(struct virtio_device *vd, unsigned q)
{
	if (q >= vd->nr_queues || (vd->status & VIRTIO_STATUS_DRIVER_OK))
		return NULL;
	struct virtq *vq = &vd->queues[q];
	return vq->ready ? NULL : vq;
}

int virtio_queue_set_size(struct virtio_device *vd, unsigned q, uint16_t size)
{
	pthread_mutex_lock(&vd->lock);
	struct virtq *vq = setup_queue(vd, q);
	int ret = vq ? virtq_set_size(vq, size) : -EINVAL;
	pthread_mutex_unlock(&vd->lock);
	return ret;
}

int virtio_queue_set_addr(struct virtio_device *vd, unsigned q, uint64_t desc,
			  uint64_t avail, uint64_t used)
{
	pthread_mutex_lock(&vd->lock);
	struct virtq *vq = setup_queue(vd, q);
	if (vq) {
		vq->desc_gpa = desc;
		vq->avail_gpa = avail;
		vq->used_gpa = used;
	}
	pthread_mutex_unlock(&vd->lock);
	return vq ? 0 : -EINVAL;
}

int virtio_queue_set_ready(struct virtio_device *vd, unsigned q)
{
	pthread_mutex_lock(&vd->lock);
	struct virtq *vq = setup_queue(vd, q);
	int ret = -EINVAL;
	if (vq) {
		uint64_t f = vd->driver_features & vd->host_features;
		ret = virtq_enable(vq, f & VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC),
				   f & VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX));
		if (ret)
			virtio_set_needs_reset_locked(vd, virtq_error_str(vq->error));
	}
	pthread_mutex_unlock(&vd->lock);
	return ret;
}

void virtio_queue_notify(struct virtio_device *vd, unsigned q)
{
	pthread_mutex_lock(&vd->lock);
	bool go = q < vd->nr_queues && virtio_live_locked(vd) && vd->queues[q].ready;
	pthread_mutex_unlock(&vd->lock);
	if (go && vd->ops->queue_notify)
		vd->ops->queue_notify(vd, q);
}

void virtio_queue_interrupt(struct virtio_device *vd, unsigned q)
{
	void (*fn)(void *, unsigned) = vd->hooks.queue_irq;
	if (fn)
		fn(vd->hooks.opaque, q);
}

/* ---- save / restore ---- */

#define VIRTIO_SAVE_MAGIC 0x4f495456u /* "VTIO" */
#define VIRTIO_SAVE_VERSION 1

struct virtio_saved {
	uint32_t magic, version, device_id, nr_queues;
	uint64_t host_features, driver_features;
	uint8_t status, config_generation, pad[6];
	struct virtq_state q[];
};

size_t virtio_save(struct virtio_device *vd, void *buf, size_t len)
{
	size_t need = sizeof(struct virtio_saved) + vd->nr_queues * sizeof(struct virtq_state);
	if (len < need)
		return need;
	struct virtio_saved *s = buf;
	memset(s, 0, need);
	pthread_mutex_lock(&vd->lock);
	s->magic = VIRTIO_SAVE_MAGIC;
	s->version = VIRTIO_SAVE_VERSION;
	s->device_id = vd->device_id;
	s->nr_queues = vd->nr_queues;
	s->host_features = vd->host_features;
	s->driver_features = vd->driver_features;
	s->status = vd->status;
	s->config_generation = vd->config_generation;
	for (unsigned i = 0; i < vd->nr_queues; i++)
		virtq_save(&vd->queues[i], &s->q[i]);
	pthread_mutex_unlock(&vd->lock);
	return need;
}

int virtio_restore(struct virtio_device *vd, const void *buf, size_t len)
{
	const struct virtio_saved *s = buf;
	if (len < sizeof(*s) || s->magic != VIRTIO_SAVE_MAGIC ||
	    s->version != VIRTIO_SAVE_VERSION || s->device_id != vd->device_id ||
	    s->nr_queues != vd->nr_queues ||
	    len < sizeof(*s) + s->nr_queues * sizeof(struct virtq_state) ||
	    (s->driver_features & ~vd->host_features))
		return -EINVAL;
	pthread_mutex_lock(&vd->lock);
	int ret = 0;
	vd->driver_features = s->driver_features;
	vd->status = s->status;
	vd->config_generation = s->config_generation;
	for (unsigned i = 0; i < vd->nr_queues && !ret; i++)
		ret = virtq_restore(&vd->queues[i], &s->q[i]);
	pthread_mutex_unlock(&vd->lock);
	return ret;
}
