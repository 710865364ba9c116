/* virtio-console: guest output reaches the char backend, host input waits
 * for guest buffers (backpressure through set_rx) and lands in them. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "backends/char/char.h"
#include "devices/virtio/virtio_console.h"
#include "virtq_driver.h"

struct fake_be {
	struct char_backend be;
	char out[4096];
	size_t out_len;
	int rx_on, rx_off;
	bool started, destroyed;
};

static void fb_write(struct char_backend *be, const uint8_t *buf, size_t len)
{
	struct fake_be *f = (struct fake_be *)be;
	if (f->out_len + len <= sizeof(f->out)) {
		memcpy(f->out + f->out_len, buf, len);
		f->out_len += len;
	}
}
static int fb_start(struct char_backend *be) { ((struct fake_be *)be)->started = true; return 0; }
static void fb_set_rx(struct char_backend *be, bool on)
{
	struct fake_be *f = (struct fake_be *)be;
	if (on)
		f->rx_on++;
	else
		f->rx_off++;
}
static void fb_destroy(struct char_backend *be) { ((struct fake_be *)be)->destroyed = true; }

static const struct char_backend_ops fb_ops = {
	.name = "fake", .write = fb_write, .start = fb_start, .set_rx = fb_set_rx,
	.destroy = fb_destroy,
};

static struct guest_memory mem;
static struct fake_be fb;
static struct virtio_console *con;
static struct virtio_device *vd;
static struct vdrv rx, tx;
static int irqs[2];

static void on_queue_irq(void *o, unsigned q) { (void)o; if (q < 2) irqs[q]++; }
static void on_config_irq(void *o) { (void)o; }

static void setup(void)
{
	cr_assert_eq(guest_memory_init(&mem, 16 << 20), 0);
	memset(&fb, 0, sizeof(fb));
	fb.be.ops = &fb_ops;
	irqs[0] = irqs[1] = 0;
	cr_assert_eq(virtio_console_create(&con, &mem, &fb.be), 0);
	cr_assert(fb.started);
	vd = virtio_console_vdev(con);
	struct virtio_transport_hooks h = { NULL, on_queue_irq, on_config_irq, NULL };
	virtio_set_transport(vd, &h);
	vdrv_init(&rx, &mem, 16, 0x100000, 0x200000);
	vdrv_init(&tx, &mem, 16, 0x200000, 0x300000);
	/* bring-up by hand: two queues */
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_set_driver_features(vd, 1, 1);
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK);
	struct vdrv *d[2] = { &rx, &tx };
	for (unsigned q = 0; q < 2; q++) {
		cr_assert_eq(virtio_queue_set_size(vd, q, 16), 0);
		cr_assert_eq(virtio_queue_set_addr(vd, q, d[q]->desc, d[q]->avail, d[q]->used), 0);
		cr_assert_eq(virtio_queue_set_ready(vd, q), 0);
	}
}

static void go_live(void)
{
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	cr_assert_eq(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void teardown(void)
{
	virtio_console_destroy(con);
	cr_assert(fb.destroyed);
	guest_memory_destroy(&mem);
}

TestSuite(vcon, .init = setup, .fini = teardown);

Test(vcon, config_and_identity)
{
	cr_assert_eq(vd->device_id, VIRTIO_ID_CONSOLE);
	cr_assert_eq(vd->nr_queues, 2);
	uint8_t cfgb[VIRTIO_CONSOLE_CONFIG_LEN];
	memset(cfgb, 0xAA, sizeof(cfgb));
	cr_assert_eq(virtio_config_read(vd, 0, cfgb, sizeof(cfgb)), 0);
	for (size_t i = 0; i < sizeof(cfgb); i++)
		cr_assert_eq(cfgb[i], 0);
	cr_assert_eq(virtio_config_write(vd, 0, cfgb, 4), -EINVAL, "read-only");
}

Test(vcon, transmit_reaches_backend)
{
	go_live();
	uint64_t a = vdrv_alloc(&tx, 16), b = vdrv_alloc(&tx, 16);
	memcpy(gm_ptr(&mem, a, 6), "hello ", 6);
	memcpy(gm_ptr(&mem, b, 5), "hvc0\n", 5);
	vdrv_set_desc(&tx, 0, a, 6, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&tx, 1, b, 5, 0, 0);
	vdrv_post(&tx, 0);
	virtio_queue_notify(vd, 1);
	cr_assert_eq(fb.out_len, 11);
	cr_assert_eq(memcmp(fb.out, "hello hvc0\n", 11), 0);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&tx, &id, &len), 1);
	cr_assert_eq(id, 0);
	cr_assert_eq(irqs[1], 1);
}

Test(vcon, receive_waits_for_buffers)
{
	struct char_frontend *fe = &fb.be.fe;
	/* not live yet: nothing taken, input paused */
	cr_assert_eq(fe->can_receive(fe->opaque), 0);
	cr_assert_eq(fb.rx_off, 1);
	go_live();
	cr_assert_eq(fb.rx_on, 1, "DRIVER_OK resumes input");
	cr_assert_eq(fe->can_receive(fe->opaque), 0, "no buffer posted");
	cr_assert_eq(fb.rx_off, 2);
	uint64_t buf = vdrv_alloc(&rx, 8);
	vdrv_set_desc(&rx, 0, buf, 8, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&rx, 0);
	virtio_queue_notify(vd, 0);
	cr_assert_eq(fb.rx_on, 2, "a posted buffer resumes input");
	size_t room = fe->can_receive(fe->opaque);
	cr_assert_eq(room, 8);
	fe->receive(fe->opaque, (const uint8_t *)"ls\n", 3);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(len, 3);
	cr_assert_eq(memcmp(gm_ptr(&mem, buf, 3), "ls\n", 3), 0);
	cr_assert_eq(irqs[0], 1);
	cr_assert_eq(fe->can_receive(fe->opaque), 0, "buffer used up");
}

Test(vcon, hostile_rings)
{
	go_live();
	/* a read-only buffer on the receive queue is returned unused */
	uint64_t buf = vdrv_alloc(&rx, 8);
	vdrv_set_desc(&rx, 0, buf, 8, 0, 0);
	vdrv_post(&rx, 0);
	struct char_frontend *fe = &fb.be.fe;
	cr_assert_eq(fe->can_receive(fe->opaque), 0);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(len, 0);
	/* a transmit buffer outside RAM: NEEDS_RESET, nothing written */
	vdrv_set_desc(&tx, 0, 0xFFFFFFFF000ULL, 64, 0, 0);
	vdrv_post(&tx, 0);
	virtio_queue_notify(vd, 1);
	cr_assert(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(fb.out_len, 0);
	/* reset drops the held state; the device comes back */
	virtio_set_status(vd, 0);
	cr_assert_eq(virtio_get_status(vd), 0);
}

Test(vcon, quiesce_returns_a_held_buffer)
{
	go_live();
	uint64_t buf = vdrv_alloc(&rx, 8);
	vdrv_set_desc(&rx, 0, buf, 8, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&rx, 0);
	struct char_frontend *fe = &fb.be.fe;
	cr_assert_eq(fe->can_receive(fe->opaque), 8);
	virtio_console_quiesce(con);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 1);
	cr_assert_eq(len, 0);
	fe->receive(fe->opaque, (const uint8_t *)"x", 1);   /* late data: dropped, no crash */
	cr_assert_eq(vdrv_get_used(&rx, &id, &len), 0);
}
