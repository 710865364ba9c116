#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtio.h"
#include "devices/virtio/virtqueue.h"
#include "virtq_driver.h"

#define MEM_SIZE (16ULL << 20)
#define RING_BASE 0x100000ULL
#define QSIZE 16

static struct guest_memory mem;
static struct vdrv drv;
static struct virtq q;
static struct iovec iov[64];
static struct virtq_elem elem;

static void setup(void)
{
	cr_assert_eq(guest_memory_init(&mem, MEM_SIZE), 0);
	vdrv_init(&drv, &mem, QSIZE, RING_BASE, MEM_SIZE);
	virtq_init(&q, &mem, 256);
	cr_assert_eq(virtq_set_size(&q, QSIZE), 0);
	q.desc_gpa = drv.desc;
	q.avail_gpa = drv.avail;
	q.used_gpa = drv.used;
	cr_assert_eq(virtq_enable(&q, true, false), 0);
	memset(&elem, 0, sizeof(elem));
	elem.iov = iov;
	elem.iov_cap = 64;
}

static void teardown(void)
{
	guest_memory_destroy(&mem);
}

/* Pop expecting a broken queue with the given reason, and that it stays
 * broken. */
static void expect_broken(enum virtq_error why)
{
	cr_assert_eq(virtq_pop(&q, &elem), -EIO);
	cr_assert_eq(q.error, why, "error %s, expected %s", virtq_error_str(q.error),
		     virtq_error_str(why));
	cr_assert(virtq_broken(&q));
	cr_assert_eq(virtq_pop(&q, &elem), -EIO, "a broken queue stays broken");
}

TestSuite(virtq, .init = setup, .fini = teardown);

Test(virtq, size_must_be_power_of_two_up_to_max)
{
	struct virtq t;
	virtq_init(&t, &mem, 256);
	cr_assert_eq(t.size, 256);
	cr_assert_eq(virtq_set_size(&t, 0), -EINVAL);
	cr_assert_eq(virtq_set_size(&t, 3), -EINVAL);
	cr_assert_eq(virtq_set_size(&t, 512), -EINVAL);
	cr_assert_eq(virtq_set_size(&t, 100), -EINVAL);
	cr_assert_eq(t.size, 256);
	cr_assert_eq(virtq_set_size(&t, 1), 0);
	cr_assert_eq(virtq_set_size(&t, 128), 0);
}

Test(virtq, ring_areas_must_be_ram_and_aligned)
{
	struct virtq t;
	virtq_init(&t, &mem, 16);
	t.desc_gpa = MEM_SIZE - 100; /* table runs off the end of RAM */
	t.avail_gpa = drv.avail;
	t.used_gpa = drv.used;
	cr_assert_eq(virtq_enable(&t, false, false), -EINVAL);
	cr_assert_eq(t.error, VIRTQ_ERR_RING_ADDR);
	cr_assert_not(t.ready);
	t.desc_gpa = drv.desc + 8; /* misaligned */
	cr_assert_eq(virtq_enable(&t, false, false), -EINVAL);
	t.desc_gpa = drv.desc;
	t.used_gpa = drv.used + 2;
	cr_assert_eq(virtq_enable(&t, false, false), -EINVAL);
	t.used_gpa = UINT64_MAX - 8;
	cr_assert_eq(virtq_enable(&t, false, false), -EINVAL);
	t.used_gpa = drv.used;
	cr_assert_eq(virtq_enable(&t, false, false), 0);
	cr_assert(t.ready);
}

Test(virtq, empty_ring_pops_nothing)
{
	cr_assert_eq(virtq_pop(&q, &elem), 0);
	cr_assert_not(virtq_broken(&q));
}

Test(virtq, chain_pops_into_iovecs_and_push_fills_used_ring)
{
	uint64_t a = vdrv_alloc(&drv, 16), b = vdrv_alloc(&drv, 512), c = vdrv_alloc(&drv, 1);
	memcpy(vdrv_host(&drv, a, 16), "0123456789abcdef", 16);
	vdrv_set_desc(&drv, 5, a, 16, VIRTQ_DESC_F_NEXT, 9);
	vdrv_set_desc(&drv, 9, b, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	vdrv_set_desc(&drv, 2, c, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, 5);
	cr_assert_eq(virtq_pending(&q), 1);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	cr_assert_eq(elem.head, 5);
	cr_assert_eq(elem.n_out, 1);
	cr_assert_eq(elem.n_in, 2);
	cr_assert_eq(elem.out_bytes, 16);
	cr_assert_eq(elem.in_bytes, 513);
	cr_assert_eq(elem.iov[0].iov_base, vdrv_host(&drv, a, 16));
	cr_assert_eq(elem.iov[1].iov_base, vdrv_host(&drv, b, 512));
	cr_assert_eq(elem.iov[2].iov_len, 1);
	cr_assert_eq(virtq_pop(&q, &elem), 0);

	cr_assert_eq(virtq_push(&q, 5, 513), 0);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&drv, &id, &len), 1);
	cr_assert_eq(id, 5);
	cr_assert_eq(len, 513);
	cr_assert_eq(vdrv_get_used(&drv, &id, &len), 0);
	cr_assert_eq(virtq_push(&q, 5, 1), -EINVAL, "nothing left in flight");
}

Test(virtq, indices_wrap_around_65536)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 0, a, 8, 0, 0);
	q.last_avail = q.used_idx = 65530;
	drv.avail_idx = drv.used_seen = 65530;
	for (int i = 0; i < 20; i++) {
		vdrv_post(&drv, 0);
		cr_assert_eq(virtq_pop(&q, &elem), 1);
		cr_assert_eq(virtq_push(&q, elem.head, 0), 0);
		uint32_t id, len;
		cr_assert_eq(vdrv_get_used(&drv, &id, &len), 1);
	}
	cr_assert_eq(q.last_avail, (uint16_t)(65530 + 20));
}

Test(virtq, looping_chain_breaks_queue)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 0, a, 8, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&drv, 1, a, 8, VIRTQ_DESC_F_NEXT, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_CHAIN_LOOP);
}

Test(virtq, self_loop_breaks_queue)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 3, a, 8, VIRTQ_DESC_F_NEXT, 3);
	vdrv_post(&drv, 3);
	expect_broken(VIRTQ_ERR_CHAIN_LOOP);
}

Test(virtq, chain_longer_than_queue_is_a_loop)
{
	/* All 16 descriptors chained, the last pointing back: 17+ links. */
	uint64_t a = vdrv_alloc(&drv, 8);
	for (int i = 0; i < QSIZE; i++)
		vdrv_set_desc(&drv, i, a, 8, VIRTQ_DESC_F_NEXT, (i + 1) % QSIZE);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_CHAIN_LOOP);
}

Test(virtq, full_length_chain_is_fine)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	for (int i = 0; i < QSIZE; i++)
		vdrv_set_desc(&drv, i, a, 8, i < QSIZE - 1 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	vdrv_post(&drv, 0);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	cr_assert_eq(elem.n_out, QSIZE);
}

Test(virtq, head_index_beyond_queue_breaks_queue)
{
	vdrv_post(&drv, QSIZE);
	expect_broken(VIRTQ_ERR_HEAD_INDEX);
}

Test(virtq, next_index_beyond_queue_breaks_queue)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 0, a, 8, VIRTQ_DESC_F_NEXT, 0xffff);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_NEXT_INDEX);
}

Test(virtq, buffer_outside_ram_breaks_queue)
{
	vdrv_set_desc(&drv, 0, MEM_SIZE - 4, 8, 0, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_BAD_ADDR);
}

Test(virtq, buffer_in_pci_hole_breaks_queue)
{
	vdrv_set_desc(&drv, 0, MEM_PCI_HOLE_START, 8, 0, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_BAD_ADDR);
}

Test(virtq, wrapping_address_breaks_queue)
{
	vdrv_set_desc(&drv, 0, UINT64_MAX - 7, 0x100, 0, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_BAD_ADDR);
}

Test(virtq, huge_length_breaks_queue)
{
	vdrv_set_desc(&drv, 0, 0x1000, UINT32_MAX, 0, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_BAD_ADDR);
}

Test(virtq, readable_after_writable_breaks_queue)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 0, a, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	vdrv_set_desc(&drv, 1, a, 8, 0, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_ORDER);
}

Test(virtq, avail_idx_jump_breaks_queue)
{
	vdrv_set_avail_idx(&drv, QSIZE + 1);
	expect_broken(VIRTQ_ERR_AVAIL_IDX);
	cr_assert_eq(virtq_pending(&q), 0);
}

Test(virtq, avail_idx_backwards_breaks_queue)
{
	vdrv_set_avail_idx(&drv, 0xffff); /* "-1": 65535 entries pending */
	expect_broken(VIRTQ_ERR_AVAIL_IDX);
}

Test(virtq, exactly_queue_size_pending_is_fine)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	for (int i = 0; i < QSIZE; i++) {
		vdrv_set_desc(&drv, i, a, 8, 0, 0);
		vdrv_post(&drv, i);
	}
	for (int i = 0; i < QSIZE; i++)
		cr_assert_eq(virtq_pop(&q, &elem), 1);
	cr_assert_eq(virtq_pop(&q, &elem), 0);
}

Test(virtq, too_many_segments_breaks_queue)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	for (int i = 0; i < 4; i++)
		vdrv_set_desc(&drv, i, a, 8, i < 3 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	vdrv_post(&drv, 0);
	elem.iov_cap = 3;
	expect_broken(VIRTQ_ERR_TOO_MANY_SEGS);
}

Test(virtq, zero_length_descriptors_are_skipped)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 0, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&drv, 1, a, 8, 0, 0);
	vdrv_post(&drv, 0);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	cr_assert_eq(elem.n_out, 1);
}

/* ---- indirect descriptors ---- */

static uint64_t indirect_table(int n)
{
	uint64_t t = vdrv_alloc(&drv, 16ULL * n);
	return t;
}

Test(virtq, indirect_table_is_walked)
{
	uint64_t t = indirect_table(3);
	uint64_t a = vdrv_alloc(&drv, 16), b = vdrv_alloc(&drv, 4096), c = vdrv_alloc(&drv, 1);
	vdrv_set_desc_at(&drv, t, 0, a, 16, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc_at(&drv, t, 1, b, 4096, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	vdrv_set_desc_at(&drv, t, 2, c, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_set_desc(&drv, 7, t, 48, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&drv, 7);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	cr_assert_eq(elem.head, 7);
	cr_assert_eq(elem.n_out, 1);
	cr_assert_eq(elem.n_in, 2);
	cr_assert_eq(elem.in_bytes, 4097);
}

Test(virtq, indirect_table_may_be_unaligned_and_after_direct_descriptors)
{
	uint64_t t = indirect_table(2) + 4;
	vdrv_alloc(&drv, 16);
	uint64_t a = vdrv_alloc(&drv, 16);
	vdrv_set_desc_at(&drv, t, 0, a, 16, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc_at(&drv, t, 1, a, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_set_desc(&drv, 0, a, 4, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&drv, 1, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&drv, 0);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	cr_assert_eq(elem.n_out, 2);
	cr_assert_eq(elem.n_in, 1);
}

Test(virtq, indirect_without_negotiation_breaks_queue)
{
	q.indirect = false;
	uint64_t t = indirect_table(1), a = vdrv_alloc(&drv, 8);
	vdrv_set_desc_at(&drv, t, 0, a, 8, 0, 0);
	vdrv_set_desc(&drv, 0, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_INDIRECT_OFF);
}

Test(virtq, nested_indirect_breaks_queue)
{
	uint64_t t = indirect_table(1), u = indirect_table(1), a = vdrv_alloc(&drv, 8);
	vdrv_set_desc_at(&drv, u, 0, a, 8, 0, 0);
	vdrv_set_desc_at(&drv, t, 0, u, 16, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_set_desc(&drv, 0, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_INDIRECT_NEST);
}

Test(virtq, indirect_bad_lengths_break_queue)
{
	static const uint32_t bad[] = { 0, 15, 17, 24 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		teardown();
		setup();
		uint64_t t = indirect_table(2);
		vdrv_set_desc(&drv, 0, t, bad[i], VIRTQ_DESC_F_INDIRECT, 0);
		vdrv_post(&drv, 0);
		expect_broken(VIRTQ_ERR_INDIRECT_LEN);
	}
}

Test(virtq, indirect_with_next_breaks_queue)
{
	uint64_t t = indirect_table(1), a = vdrv_alloc(&drv, 8);
	vdrv_set_desc_at(&drv, t, 0, a, 8, 0, 0);
	vdrv_set_desc(&drv, 0, t, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&drv, 1, a, 8, 0, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_INDIRECT_NEXT);
}

Test(virtq, indirect_table_outside_ram_breaks_queue)
{
	vdrv_set_desc(&drv, 0, MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_BAD_ADDR);
}

Test(virtq, loop_inside_indirect_table_breaks_queue)
{
	uint64_t t = indirect_table(4), a = vdrv_alloc(&drv, 8);
	for (int i = 0; i < 4; i++)
		vdrv_set_desc_at(&drv, t, i, a, 8, VIRTQ_DESC_F_NEXT, (i + 1) % 4);
	vdrv_set_desc(&drv, 0, t, 64, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_CHAIN_LOOP);
}

Test(virtq, indirect_next_beyond_table_breaks_queue)
{
	uint64_t t = indirect_table(2), a = vdrv_alloc(&drv, 8);
	vdrv_set_desc_at(&drv, t, 0, a, 8, VIRTQ_DESC_F_NEXT, 2);
	vdrv_set_desc(&drv, 0, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&drv, 0);
	expect_broken(VIRTQ_ERR_NEXT_INDEX);
}

/* ---- notification suppression ---- */

Test(virtq, no_interrupt_flag_without_event_idx)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 0, a, 8, 0, 0);
	vdrv_post(&drv, 0);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	virtq_push(&q, 0, 0);
	cr_assert(virtq_should_interrupt(&q));
	vdrv_avail(&drv)[0] = htole16(VIRTQ_AVAIL_F_NO_INTERRUPT);
	vdrv_post(&drv, 0);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	virtq_push(&q, 0, 0);
	cr_assert_not(virtq_should_interrupt(&q));
}

Test(virtq, device_sets_no_notify_while_draining)
{
	virtq_disable_notify(&q);
	cr_assert_eq(le16toh(vdrv_used16(&drv)[0]), VIRTQ_USED_F_NO_NOTIFY);
	cr_assert_not(virtq_enable_notify(&q));
	cr_assert_eq(le16toh(vdrv_used16(&drv)[0]), 0);
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 0, a, 8, 0, 0);
	virtq_disable_notify(&q);
	vdrv_post(&drv, 0);
	cr_assert(virtq_enable_notify(&q), "a buffer arrived while notifications were off");
}

Test(virtq, event_idx_interrupts_when_used_event_crossed)
{
	q.event_idx = true;
	uint64_t a = vdrv_alloc(&drv, 8);
	for (int i = 0; i < 8; i++)
		vdrv_set_desc(&drv, i, a, 8, 0, 0);
	/* Driver wants an interrupt once entry 3 is used (used idx 3 -> 4). */
	vdrv_set_used_event(&drv, 3);
	bool irq[6];
	for (int i = 0; i < 6; i++) {
		vdrv_post(&drv, i);
		cr_assert_eq(virtq_pop(&q, &elem), 1);
		cr_assert_eq(vdrv_avail_event(&drv), i + 1, "device publishes avail_event");
		virtq_push(&q, elem.head, 0);
		irq[i] = virtq_should_interrupt(&q);
	}
	cr_assert(irq[0], "first check always signals");
	cr_assert_not(irq[1]);
	cr_assert_not(irq[2]);
	cr_assert(irq[3]);
	cr_assert_not(irq[4]);
	cr_assert_not(irq[5]);
	/* Two pushes at once still cross the event exactly once. */
	vdrv_set_used_event(&drv, 6);
	for (int i = 0; i < 2; i++) {
		vdrv_post(&drv, i);
		cr_assert_eq(virtq_pop(&q, &elem), 1);
		virtq_push(&q, elem.head, 0);
	}
	cr_assert(virtq_should_interrupt(&q));
}

/* ---- iovec helpers ---- */

Test(virtq, iov_helpers_cross_segment_boundaries)
{
	char a[3], b[5], c[4];
	struct iovec v[3] = { { a, 3 }, { b, 5 }, { c, 4 } };
	cr_assert_eq(iov_from_buf(v, 3, 2, "HELLOWORLD", 10), 10);
	char out[12] = { 0 };
	cr_assert_eq(iov_to_buf(v, 3, 2, out, 20), 10);
	cr_assert_str_eq(out, "HELLOWORLD");
	struct iovec s[3];
	cr_assert_eq(iov_slice(v, 3, 2, 6, s, 3), 2);
	cr_assert_eq(s[0].iov_base, a + 2);
	cr_assert_eq(s[0].iov_len, 1);
	cr_assert_eq(s[1].iov_len, 5);
	cr_assert_eq(iov_slice(v, 3, 0, 13, s, 3), -1, "beyond the list");
	cr_assert_eq(iov_slice(v, 3, 0, 12, s, 2), -1, "does not fit");
	cr_assert_eq(iov_slice(v, 3, 12, 0, s, 3), 0);
}

/* ---- save / restore ---- */

Test(virtq, save_restore_keeps_indices)
{
	uint64_t a = vdrv_alloc(&drv, 8);
	vdrv_set_desc(&drv, 0, a, 8, 0, 0);
	for (int i = 0; i < 3; i++) {
		vdrv_post(&drv, 0);
		cr_assert_eq(virtq_pop(&q, &elem), 1);
		virtq_push(&q, 0, 0);
	}
	struct virtq_state s;
	virtq_save(&q, &s);
	struct virtq r;
	virtq_init(&r, &mem, 256);
	cr_assert_eq(virtq_restore(&r, &s), 0);
	cr_assert_eq(r.last_avail, 3);
	cr_assert_eq(r.used_idx, 3);
	cr_assert(r.ready);
	vdrv_post(&drv, 0);
	cr_assert_eq(virtq_pop(&r, &elem), 1);
	s.size = 3;
	cr_assert_eq(virtq_restore(&r, &s), -EINVAL);
}

/* ---- random garbage never hurts the host ---- */

Test(virtq, random_rings_never_crash)
{
	struct virtq t;
	unsigned seed = 12345;
	for (int round = 0; round < 2000; round++) {
		uint8_t *ring = vdrv_host(&drv, RING_BASE, 0x10000);
		for (int i = 0; i < 0x1000; i++) {
			seed = seed * 1103515245 + 12345;
			uint32_t r = seed >> 8;
			/* Mostly small addresses inside RAM, some wild. */
			ring[i] = (i % 16 < 8 && (r & 3)) ? (uint8_t)(r >> 4) & 0x1f : (uint8_t)r;
		}
		virtq_init(&t, &mem, 256);
		virtq_set_size(&t, QSIZE);
		t.desc_gpa = drv.desc;
		t.avail_gpa = drv.avail;
		t.used_gpa = drv.used;
		virtq_enable(&t, round & 1, round & 2);
		for (int k = 0; k < 20; k++) {
			int ret = virtq_pop(&t, &elem);
			if (ret <= 0)
				break;
			virtq_push(&t, elem.head, 0);
			virtq_should_interrupt(&t);
		}
	}
}

/* ---- the device interface (virtio.h) ---- */

struct fake {
	struct virtio_device vd;
	struct virtq q;
	uint8_t cfg[8];
	int notifies, resets, config_irqs, queue_irqs;
};

static void fake_cfg_read(struct virtio_device *vd, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, ((struct fake *)vd)->cfg + off, len);
}
static void fake_cfg_write(struct virtio_device *vd, uint32_t off, const void *buf, uint32_t len)
{
	memcpy(((struct fake *)vd)->cfg + off, buf, len);
}
static void fake_notify(struct virtio_device *vd, unsigned qi)
{
	(void)qi;
	((struct fake *)vd)->notifies++;
}
static void fake_reset(struct virtio_device *vd)
{
	((struct fake *)vd)->resets++;
}
static void fake_config_irq(void *opaque)
{
	((struct fake *)opaque)->config_irqs++;
}
static void fake_queue_irq(void *opaque, unsigned qi)
{
	(void)qi;
	((struct fake *)opaque)->queue_irqs++;
}

static const struct virtio_device_ops fake_ops = {
	.name = "fake",
	.config_read = fake_cfg_read,
	.config_write = fake_cfg_write,
	.queue_notify = fake_notify,
	.reset = fake_reset,
};

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	virtq_init(&f->q, &mem, 64);
	virtio_device_init(&f->vd, &fake_ops, "fake", 99,
			   VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) | VIRTIO_BIT(3), sizeof(f->cfg), &f->q, 1);
	struct virtio_transport_hooks h = { f, fake_queue_irq, fake_config_irq, NULL };
	virtio_set_transport(&f->vd, &h);
}

Test(virtq, device_offers_version_1)
{
	struct fake f;
	fake_init(&f);
	cr_assert_eq(virtio_get_device_features(&f.vd, 1), 1, "VERSION_1 is bit 32");
	cr_assert_eq(virtio_get_device_features(&f.vd, 0), (1u << 29) | (1u << 3));
	cr_assert_eq(virtio_get_device_features(&f.vd, 2), 0);
	virtio_device_fini(&f.vd);
}

Test(virtq, features_never_offered_are_refused)
{
	struct fake f;
	fake_init(&f);
	virtio_set_status(&f.vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_set_driver_features(&f.vd, 0, 1u << 5);
	virtio_set_driver_features(&f.vd, 1, 1);
	virtio_set_status(&f.vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	cr_assert_not(virtio_get_status(&f.vd) & VIRTIO_STATUS_FEATURES_OK);
	/* Fix the features: now accepted. */
	virtio_set_driver_features(&f.vd, 0, 1u << 3);
	virtio_set_status(&f.vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	cr_assert(virtio_get_status(&f.vd) & VIRTIO_STATUS_FEATURES_OK);
	/* Frozen after FEATURES_OK. */
	virtio_set_driver_features(&f.vd, 0, 0);
	cr_assert_eq(virtio_get_driver_features(&f.vd, 0), 1u << 3);
	virtio_device_fini(&f.vd);
}

Test(virtq, version_1_is_required)
{
	struct fake f;
	fake_init(&f);
	virtio_set_driver_features(&f.vd, 0, 1u << 3);
	virtio_set_status(&f.vd, VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	cr_assert_not(virtio_get_status(&f.vd) & VIRTIO_STATUS_FEATURES_OK);
	virtio_device_fini(&f.vd);
}

Test(virtq, driver_ok_without_features_ok_needs_reset)
{
	struct fake f;
	fake_init(&f);
	virtio_set_status(&f.vd, VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
	cr_assert(virtio_get_status(&f.vd) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(f.config_irqs, 1, "NEEDS_RESET after DRIVER_OK raises a config interrupt");
	virtio_queue_notify(&f.vd, 0);
	cr_assert_eq(f.notifies, 0);
	virtio_set_status(&f.vd, 0);
	cr_assert_eq(virtio_get_status(&f.vd), 0);
	cr_assert_eq(f.resets, 1);
	virtio_device_fini(&f.vd);
}

Test(virtq, driver_cannot_set_needs_reset_or_clear_bits)
{
	struct fake f;
	fake_init(&f);
	virtio_set_status(&f.vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(virtio_get_status(&f.vd), VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_set_status(&f.vd, VIRTIO_STATUS_DRIVER);
	cr_assert_eq(virtio_get_status(&f.vd), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	virtio_device_fini(&f.vd);
}

Test(virtq, config_access_is_bounded)
{
	struct fake f;
	fake_init(&f);
	uint32_t v = 0x11223344;
	cr_assert_eq(virtio_config_write(&f.vd, 4, &v, 4), 0);
	uint32_t r = 0;
	cr_assert_eq(virtio_config_read(&f.vd, 4, &r, 4), 0);
	cr_assert_eq(r, v);
	cr_assert_eq(virtio_config_write(&f.vd, 6, &v, 4), -EINVAL);
	cr_assert_eq(virtio_config_write(&f.vd, UINT32_MAX - 1, &v, 4), -EINVAL);
	r = 0xdead;
	cr_assert_eq(virtio_config_read(&f.vd, 8, &r, 4), -EINVAL);
	cr_assert_eq(r, 0, "out-of-range reads return zeros");
	cr_assert_eq(virtio_config_read(&f.vd, 4, &r, 4), 0);
	cr_assert_eq(r, v, "failed write changed nothing");
	virtio_device_fini(&f.vd);
}

Test(virtq, queue_setup_rules)
{
	struct fake f;
	fake_init(&f);
	cr_assert_eq(virtio_queue_set_size(&f.vd, 1, 16), -EINVAL, "no queue 1");
	cr_assert_eq(virtio_queue_set_size(&f.vd, 0, 100), -EINVAL);
	cr_assert_eq(virtio_queue_set_size(&f.vd, 0, 128), -EINVAL, "above max 64");
	cr_assert_eq(virtio_queue_set_size(&f.vd, 0, 16), 0);
	cr_assert_eq(virtio_queue_set_addr(&f.vd, 0, MEM_SIZE, drv.avail, drv.used), 0);
	cr_assert_eq(virtio_queue_set_ready(&f.vd, 0), -EINVAL);
	cr_assert(virtio_get_status(&f.vd) & VIRTIO_STATUS_NEEDS_RESET);
	virtio_set_status(&f.vd, 0);

	vdrv_init(&drv, &mem, 16, RING_BASE, MEM_SIZE);
	cr_assert_eq(vdrv_bring_up(&f.vd, &drv, VIRTIO_BIT(VIRTIO_F_VERSION_1) |
					       VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX)), 0);
	cr_assert(f.q.event_idx);
	cr_assert_eq(virtio_queue_set_size(&f.vd, 0, 8), -EINVAL, "queue is live");
	cr_assert_eq(virtio_queue_set_addr(&f.vd, 0, 0, 0, 0), -EINVAL);
	virtio_queue_notify(&f.vd, 0);
	virtio_queue_notify(&f.vd, 7);
	cr_assert_eq(f.notifies, 1);
	virtio_set_status(&f.vd, 0);
	cr_assert_not(f.q.ready);
	cr_assert_eq(f.q.size, 64);
	virtio_device_fini(&f.vd);
}

Test(virtq, device_save_restore_roundtrip)
{
	struct fake f, g;
	fake_init(&f);
	fake_init(&g);
	cr_assert_eq(vdrv_bring_up(&f.vd, &drv, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
	uint8_t buf[512];
	size_t n = virtio_save(&f.vd, NULL, 0);
	cr_assert(n > 0 && n <= sizeof(buf));
	cr_assert_eq(virtio_save(&f.vd, buf, sizeof(buf)), n);
	cr_assert_eq(virtio_restore(&g.vd, buf, n), 0);
	cr_assert_eq(virtio_get_status(&g.vd), virtio_get_status(&f.vd));
	cr_assert(g.q.ready);
	cr_assert_eq(g.q.size, QSIZE);
	cr_assert_eq(virtio_restore(&g.vd, buf, n - 1), -EINVAL);
	buf[0] ^= 1;
	cr_assert_eq(virtio_restore(&g.vd, buf, n), -EINVAL);
	virtio_device_fini(&f.vd);
	virtio_device_fini(&g.vd);
}

/* ---- virtio-rng ---- */

#include "devices/virtio/virtio_rng.h"

static int rng_irqs;
static void rng_irq(void *o, unsigned qi) { (void)o; (void)qi; rng_irqs++; }

Test(virtq, rng_fills_writable_buffers)
{
	struct virtio_rng *rng;
	cr_assert_eq(virtio_rng_create(&rng, &mem), 0);
	struct virtio_device *rvd = virtio_rng_vdev(rng);
	cr_assert_eq(rvd->device_id, VIRTIO_ID_RNG);
	struct virtio_transport_hooks h = { NULL, rng_irq, NULL, NULL };
	virtio_set_transport(rvd, &h);
	rng_irqs = 0;
	cr_assert_eq(vdrv_bring_up(rvd, &drv, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
	uint64_t a = vdrv_alloc(&drv, 64), big = vdrv_alloc(&drv, 1 << 20);
	memset(vdrv_host(&drv, a, 64), 0, 64);
	vdrv_set_desc(&drv, 0, a, 64, VIRTQ_DESC_F_WRITE, 0);
	vdrv_set_desc(&drv, 1, big, 1 << 20, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, 0);
	vdrv_post(&drv, 1);
	virtio_queue_notify(rvd, 0);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&drv, &id, &len), 1);
	cr_assert_eq(id, 0);
	cr_assert_eq(len, 64);
	int nonzero = 0;
	for (int i = 0; i < 64; i++)
		nonzero += ((uint8_t *)vdrv_host(&drv, a, 64))[i] != 0;
	cr_assert(nonzero > 32, "random bytes");
	cr_assert_eq(vdrv_get_used(&drv, &id, &len), 1);
	cr_assert_eq(len, VIRTIO_RNG_MAX_CHUNK, "large buffers get a bounded chunk");
	cr_assert(rng_irqs >= 1);
	/* A loop puts it into NEEDS_RESET. */
	vdrv_set_desc(&drv, 2, a, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	vdrv_post(&drv, 2);
	virtio_queue_notify(rvd, 0);
	cr_assert(virtio_get_status(rvd) & VIRTIO_STATUS_NEEDS_RESET);
	virtio_rng_destroy(rng);
}

/* ---- device writes reported through the queue's written hook ---- */

static struct { uint64_t gpa, len; } wr_seen[8];
static int wr_n;
static void *wr_opaque;

static void on_written(void *opaque, uint64_t gpa, uint64_t len)
{
	wr_opaque = opaque;
	if (wr_n < 8)
		wr_seen[wr_n] = (typeof(wr_seen[0])){ gpa, len };
	wr_n++;
}

Test(virtq, push_elem_reports_every_writable_segment)
{
	int token;
	wr_n = 0;
	virtq_set_written_hook(&q, on_written, &token);
	uint64_t a = vdrv_alloc(&drv, 16), b = vdrv_alloc(&drv, 512), c = vdrv_alloc(&drv, 1);
	vdrv_set_desc(&drv, 5, a, 16, VIRTQ_DESC_F_NEXT, 9);
	vdrv_set_desc(&drv, 9, b, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	vdrv_set_desc(&drv, 2, c, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, 5);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	/* a used length that does not describe where the device wrote (a
	 * failed read: status only) still reports both writable buffers */
	cr_assert_eq(virtq_push_elem(&q, &elem, 1), 0);
	cr_assert_eq(wr_n, 2, "the readable header is not reported");
	cr_assert_eq(wr_opaque, &token);
	cr_assert(wr_seen[0].gpa == b && wr_seen[0].len == 512);
	cr_assert(wr_seen[1].gpa == c && wr_seen[1].len == 1);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&drv, &id, &len), 1);
	cr_assert(id == 5 && len == 1);

	/* plain virtq_push reports nothing; the hook survives a reset */
	vdrv_post(&drv, 5);
	cr_assert_eq(virtq_pop(&q, &elem), 1);
	cr_assert_eq(virtq_push(&q, elem.head, 0), 0);
	cr_assert_eq(wr_n, 2);
	virtq_reset(&q);
	cr_assert(q.written_fn == on_written && q.written_opaque == &token);
}

Test(virtq, transport_hook_reaches_every_queue)
{
	struct virtq qs[3];
	for (int i = 0; i < 3; i++)
		virtq_init(&qs[i], &mem, 16);
	struct virtio_device vd;
	memset(&vd, 0, sizeof(vd));
	pthread_mutex_init(&vd.lock, NULL);
	vd.queues = qs;
	vd.nr_queues = 3;
	int token;
	struct virtio_transport_hooks h = { .opaque = &token, .mem_written = on_written };
	virtio_set_transport(&vd, &h);
	for (int i = 0; i < 3; i++)
		cr_assert(qs[i].written_fn == on_written && qs[i].written_opaque == &token);
	pthread_mutex_destroy(&vd.lock);
}
