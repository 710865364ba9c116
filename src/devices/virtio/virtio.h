/* The device side of virtio 1.x, independent of the transport.
 *
 * A transport (PCI now, MMIO possibly later) owns the registers the driver
 * sees and translates their accesses into the virtio_* calls below: feature
 * words, device status, config space, queue set-up and notifications. The
 * device logic (blk, rng, ...) fills a struct virtio_device_ops and never
 * learns which transport it sits behind. Interrupts go the other way through
 * the hooks the transport installs (MSI-X vector or INTx + ISR bit).
 *
 * Locking: vd->lock guards status, features, config and the queues. The
 * transport calls every virtio_* function below without holding it. Device
 * ops are called with the lock held, except queue_notify and reset, which
 * run unlocked (they take it themselves: reset may wait for I/O whose
 * completion needs the lock). */
#ifndef KITE_DEVICES_VIRTIO_VIRTIO_H
#define KITE_DEVICES_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/virtqueue.h"

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED      128

/* Reserved feature bits (6). */
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED     34
#define VIRTIO_F_IN_ORDER        35

#define VIRTIO_BIT(b) (1ULL << (b))

/* Device IDs (5). */
enum virtio_device_id {
	VIRTIO_ID_NET = 1,
	VIRTIO_ID_BLOCK = 2,
	VIRTIO_ID_CONSOLE = 3,
	VIRTIO_ID_RNG = 4,
};

struct virtio_device;

struct virtio_device_ops {
	const char *name;
	/* Config space access, already bounds-checked against config_len. A
	 * NULL config_write makes the config space read-only. */
	void (*config_read)(struct virtio_device *vd, uint32_t off, void *buf, uint32_t len);
	void (*config_write)(struct virtio_device *vd, uint32_t off, const void *buf, uint32_t len);
	/* The driver sets FEATURES_OK with `features` (already a subset of the
	 * offered ones, VERSION_1 included). Return 0 to accept, -EINVAL to
	 * refuse a combination. May be NULL. */
	int (*set_features)(struct virtio_device *vd, uint64_t features);
	/* DRIVER_OK: queues are set up. 0, or an error (NEEDS_RESET). May be NULL. */
	int (*activate)(struct virtio_device *vd);
	/* The driver notified queue q (q < nr_queues, ready, device live).
	 * Runs on the notifying thread, unlocked; hands work off quickly. */
	void (*queue_notify)(struct virtio_device *vd, unsigned q);
	/* Stop the device and wait for in-flight work; unlocked. The core
	 * then clears status, features and queues. May be NULL. */
	void (*reset)(struct virtio_device *vd);
};

/* Installed by the transport. queue_irq: used buffers on queue q;
 * config_irq: config changed (also raised on NEEDS_RESET). */
struct virtio_transport_hooks {
	void *opaque;
	void (*queue_irq)(void *opaque, unsigned q);
	void (*config_irq)(void *opaque);
	/* The device wrote guest RAM [gpa, gpa + len) (every queue's
	 * virtq_push_elem reports here). May be NULL. */
	void (*mem_written)(void *opaque, uint64_t gpa, uint64_t len);
};

struct virtio_device {
	const struct virtio_device_ops *ops;
	const char *name;          /* for messages: "virtio-blk vda" */
	uint32_t device_id;
	uint64_t host_features;    /* offered */
	uint64_t driver_features;  /* written by the driver */
	uint8_t status;
	uint8_t config_generation;
	uint32_t config_len;
	unsigned nr_queues;
	struct virtq *queues;      /* nr_queues entries, owned by the device */
	struct virtio_transport_hooks hooks;
	unsigned guest_errors;     /* NEEDS_RESET events, to bound the log */
	pthread_mutex_t lock;
};

/* Fill the common state. queues[] must already be virtq_init()ed. */
void virtio_device_init(struct virtio_device *vd, const struct virtio_device_ops *ops,
			const char *name, uint32_t device_id, uint64_t host_features,
			uint32_t config_len, struct virtq *queues, unsigned nr_queues);
void virtio_device_fini(struct virtio_device *vd);
void virtio_set_transport(struct virtio_device *vd, const struct virtio_transport_hooks *h);

/* ---- called by the transport ---- */

/* 32-bit feature windows (sel 0: bits 0-31, 1: bits 32-63; others read 0 /
 * writes ignored). Driver feature writes are ignored once FEATURES_OK is set. */
uint32_t virtio_get_device_features(struct virtio_device *vd, unsigned sel);
uint32_t virtio_get_driver_features(struct virtio_device *vd, unsigned sel);
void virtio_set_driver_features(struct virtio_device *vd, unsigned sel, uint32_t val);

/* Status: writing 0 resets the device. FEATURES_OK latches only when the
 * driver's features are acceptable (read status back to learn); DRIVER_OK
 * without FEATURES_OK, or a failing activation, sets NEEDS_RESET. Bits the
 * driver tries to clear (other than by writing 0) and NEEDS_RESET itself are
 * ignored. */
uint8_t virtio_get_status(struct virtio_device *vd);
void virtio_set_status(struct virtio_device *vd, uint8_t status);
void virtio_reset(struct virtio_device *vd);

/* Device config space; an access not inside [0, config_len) reads as zeros
 * / is ignored and returns -EINVAL. */
int virtio_config_read(struct virtio_device *vd, uint32_t off, void *buf, uint32_t len);
int virtio_config_write(struct virtio_device *vd, uint32_t off, const void *buf, uint32_t len);
uint8_t virtio_config_generation(struct virtio_device *vd);

/* Queue set-up, allowed only while the queue is not ready and the device is
 * not DRIVER_OK; -EINVAL otherwise (or for a bad queue index/size). */
int virtio_queue_set_size(struct virtio_device *vd, unsigned q, uint16_t size);
int virtio_queue_set_addr(struct virtio_device *vd, unsigned q, uint64_t desc,
			  uint64_t avail, uint64_t used);
/* Enable the queue (ready = 1). Ring areas outside RAM: NEEDS_RESET. */
int virtio_queue_set_ready(struct virtio_device *vd, unsigned q);
/* Driver notification; ignored unless the device is live and q ready. */
void virtio_queue_notify(struct virtio_device *vd, unsigned q);

/* ---- called by device logic ---- */

/* The guest broke the protocol: set NEEDS_RESET, stop processing, tell the
 * driver through a config interrupt. Caller holds vd->lock. */
void virtio_set_needs_reset_locked(struct virtio_device *vd, const char *why);
/* Device live: DRIVER_OK and not NEEDS_RESET. Caller holds vd->lock. */
bool virtio_live_locked(const struct virtio_device *vd);
bool virtio_has_feature(const struct virtio_device *vd, unsigned bit);
/* Raise the queue interrupt (caller decided with virtq_should_interrupt). */
void virtio_queue_interrupt(struct virtio_device *vd, unsigned q);
/* The device changed its config space: bump the generation, interrupt. */
void virtio_config_changed(struct virtio_device *vd);

/* Common state as an opaque blob (device quiesced: nothing in flight).
 * virtio_save returns the bytes needed (writes nothing if len is short);
 * virtio_restore returns 0 or -EINVAL. */
size_t virtio_save(struct virtio_device *vd, void *buf, size_t len);
int virtio_restore(struct virtio_device *vd, const void *buf, size_t len);

#endif
