#include "devices/virtio/virtio_console.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backends/char/char.h"

#define RXQ 0
#define TXQ 1
#define MAX_SEGS 64

struct virtio_console {
	struct virtio_device vdev;
	struct virtq vq[2];
	struct char_backend *be;
	/* Under vdev.lock: one receive buffer taken from the receiveq and
	 * promised to the backend by can_receive. */
	bool holding;
	struct virtq_elem rx;
	struct iovec rx_iov[MAX_SEGS];
	bool rx_paused;
};

static struct virtio_console *to_con(struct virtio_device *vd)
{
	return (struct virtio_console *)((char *)vd - offsetof(struct virtio_console, vdev));
}

struct virtio_device *virtio_console_vdev(struct virtio_console *con)
{
	return &con->vdev;
}

static void con_config_read(struct virtio_device *vd, uint32_t off, void *buf, uint32_t len)
{
	/* No SIZE, MULTIPORT or EMERG_WRITE: the fields read as zeros. */
	(void)vd; (void)off;
	memset(buf, 0, len);
}

/* Resume host input (vd->lock held). */
static void rx_resume_locked(struct virtio_console *con)
{
	if (con->rx_paused && con->be) {
		con->rx_paused = false;
		char_backend_set_rx(con->be, true);
	}
}

/* Backend callbacks, on the event loop thread. */
static size_t fe_can_receive(void *opaque)
{
	struct virtio_console *con = opaque;
	struct virtio_device *vd = &con->vdev;
	size_t room = 0;
	pthread_mutex_lock(&vd->lock);
	if (virtio_live_locked(vd) && con->vq[RXQ].ready) {
		if (!con->holding) {
			int got = virtq_pop(&con->vq[RXQ], &con->rx);
			if (got < 0)
				virtio_set_needs_reset_locked(vd, virtq_error_str(con->vq[RXQ].error));
			else if (got > 0 && con->rx.in_bytes == 0) /* nowhere to write: return it */
				virtq_push(&con->vq[RXQ], con->rx.head, 0);
			else if (got > 0)
				con->holding = true;
		}
		if (con->holding)
			room = con->rx.in_bytes < VIRTIO_CONSOLE_RX_CHUNK ? con->rx.in_bytes
									  : VIRTIO_CONSOLE_RX_CHUNK;
	}
	if (!room && !con->rx_paused && con->be) {
		con->rx_paused = true;
		char_backend_set_rx(con->be, false);
	}
	pthread_mutex_unlock(&vd->lock);
	return room;
}

static void fe_receive(void *opaque, const uint8_t *buf, size_t len)
{
	struct virtio_console *con = opaque;
	struct virtio_device *vd = &con->vdev;
	bool irq = false;
	pthread_mutex_lock(&vd->lock);
	if (con->holding && virtio_live_locked(vd)) {
		size_t n = iov_from_buf(con->rx.iov + con->rx.n_out, con->rx.n_in, 0, buf, len);
		con->holding = false;
		virtq_push_elem(&con->vq[RXQ], &con->rx, (uint32_t)n);
		irq = virtq_should_interrupt(&con->vq[RXQ]);
	}
	pthread_mutex_unlock(&vd->lock);
	if (irq)
		virtio_queue_interrupt(vd, RXQ);
}

static void transmit(struct virtio_console *con)
{
	struct virtio_device *vd = &con->vdev;
	struct iovec iov[MAX_SEGS];
	struct virtq_elem e = { .iov = iov, .iov_cap = MAX_SEGS };
	bool irq = false;
	pthread_mutex_lock(&vd->lock);
	while (virtio_live_locked(vd)) {
		int got = virtq_pop(&con->vq[TXQ], &e);
		if (got < 0) {
			virtio_set_needs_reset_locked(vd, virtq_error_str(con->vq[TXQ].error));
			break;
		}
		if (got == 0)
			break;
		for (unsigned i = 0; i < e.n_out && con->be; i++)
			char_backend_write(con->be, e.iov[i].iov_base, e.iov[i].iov_len);
		virtq_push(&con->vq[TXQ], e.head, 0);
		irq |= virtq_should_interrupt(&con->vq[TXQ]);
	}
	pthread_mutex_unlock(&vd->lock);
	if (irq)
		virtio_queue_interrupt(vd, TXQ);
}

static void con_queue_notify(struct virtio_device *vd, unsigned q)
{
	struct virtio_console *con = to_con(vd);
	if (q == TXQ) {
		transmit(con);
	} else {
		pthread_mutex_lock(&vd->lock);
		rx_resume_locked(con);
		pthread_mutex_unlock(&vd->lock);
	}
}

static int con_activate(struct virtio_device *vd)
{
	rx_resume_locked(to_con(vd));
	return 0;
}

static void con_reset(struct virtio_device *vd)
{
	struct virtio_console *con = to_con(vd);
	pthread_mutex_lock(&vd->lock);
	con->holding = false; /* the ring it came from is going away */
	pthread_mutex_unlock(&vd->lock);
}

void virtio_console_quiesce(struct virtio_console *con)
{
	struct virtio_device *vd = &con->vdev;
	bool irq = false;
	pthread_mutex_lock(&vd->lock);
	if (con->holding) {
		con->holding = false;
		virtq_push(&con->vq[RXQ], con->rx.head, 0);
		irq = virtq_should_interrupt(&con->vq[RXQ]);
	}
	pthread_mutex_unlock(&vd->lock);
	if (irq)
		virtio_queue_interrupt(vd, RXQ);
}

static const struct virtio_device_ops con_ops = {
	.name = "virtio-console",
	.config_read = con_config_read,
	.activate = con_activate,
	.queue_notify = con_queue_notify,
	.reset = con_reset,
};

int virtio_console_create(struct virtio_console **out, const struct guest_memory *mem,
			  struct char_backend *be)
{
	struct virtio_console *con = calloc(1, sizeof(*con));
	if (!con) {
		char_backend_destroy(be);
		return -ENOMEM;
	}
	for (int i = 0; i < 2; i++)
		virtq_init(&con->vq[i], mem, VIRTIO_CONSOLE_QUEUE_SIZE);
	virtio_device_init(&con->vdev, &con_ops, "virtio-console", VIRTIO_ID_CONSOLE,
			   VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX),
			   VIRTIO_CONSOLE_CONFIG_LEN, con->vq, 2);
	con->rx.iov = con->rx_iov;
	con->rx.iov_cap = MAX_SEGS;
	con->be = be;
	if (be) {
		struct char_frontend fe = { fe_can_receive, fe_receive, con };
		char_backend_attach(be, &fe);
		int ret = char_backend_start(be);
		if (ret) {
			virtio_console_destroy(con);
			return ret;
		}
	}
	*out = con;
	return 0;
}

void virtio_console_destroy(struct virtio_console *con)
{
	if (!con)
		return;
	char_backend_destroy(con->be);
	virtio_device_fini(&con->vdev);
	free(con);
}
