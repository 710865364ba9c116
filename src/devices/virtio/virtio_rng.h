/* virtio-rng (virtio 1.2, section 5.4): one queue of device-writable
 * buffers, filled from the host's getrandom(). */
#ifndef KITE_DEVICES_VIRTIO_VIRTIO_RNG_H
#define KITE_DEVICES_VIRTIO_VIRTIO_RNG_H

#include "devices/virtio/virtio.h"

#define VIRTIO_RNG_QUEUE_SIZE 64
/* Bytes given per buffer: a guest asking for gigabytes gets this much at a
 * time (the used length tells it), so one notify never stalls a vCPU long. */
#define VIRTIO_RNG_MAX_CHUNK 4096

struct virtio_rng;

int virtio_rng_create(struct virtio_rng **out, const struct guest_memory *mem);
void virtio_rng_destroy(struct virtio_rng *rng);
struct virtio_device *virtio_rng_vdev(struct virtio_rng *rng);

#endif
