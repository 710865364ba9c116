/* virtio-console (virtio 1.2, section 5.3) with a single port and no
 * multiport support: the guest's hvc0. Queue 0 (receiveq) carries host
 * input from a char backend to the guest, queue 1 (transmitq) guest output
 * to the backend.
 *
 * Backpressure: the backend asks how much the device takes; the device
 * answers with the room in one guest buffer it holds, or 0 (and pauses the
 * backend) while the guest has posted none. A receiveq notification (the
 * guest posted buffers) resumes it, so host input is never dropped. */
#ifndef KITE_DEVICES_VIRTIO_VIRTIO_CONSOLE_H
#define KITE_DEVICES_VIRTIO_VIRTIO_CONSOLE_H

#include "devices/virtio/virtio.h"

struct char_backend;
struct virtio_console;

#define VIRTIO_CONSOLE_QUEUE_SIZE 128
#define VIRTIO_CONSOLE_CONFIG_LEN 12  /* cols, rows, max_nr_ports, emerg_wr */
#define VIRTIO_CONSOLE_RX_CHUNK   4096 /* bytes handed over per receive */

/* The device takes the backend (attaches as its frontend and starts it;
 * destroys it with itself). be may be NULL: output is dropped. */
int virtio_console_create(struct virtio_console **out, const struct guest_memory *mem,
			  struct char_backend *be);
void virtio_console_destroy(struct virtio_console *con);
struct virtio_device *virtio_console_vdev(struct virtio_console *con);
/* Before save: a receive buffer taken for the backend goes back to the
 * guest unused, so the rings alone describe the state. */
void virtio_console_quiesce(struct virtio_console *con);

#endif
