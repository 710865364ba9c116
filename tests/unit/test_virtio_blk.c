#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices/virtio/virtio_blk.h"
#include "virtq_driver.h"

#define MEM_SIZE (16ULL << 20)
#define RING_BASE 0x100000ULL
#define QSIZE 64
#define SECTORS 64

static struct guest_memory mem;
static struct vdrv drv;
static struct virtio_blk *blk;
static struct virtio_device *vd;
static char path[64];
static uint16_t next_desc;
static int queue_irqs, config_irqs;

static const uint64_t FEATURES = VIRTIO_BIT(VIRTIO_F_VERSION_1) |
				 VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC) |
				 VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |
				 VIRTIO_BIT(VIRTIO_BLK_F_FLUSH) |
				 VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) |
				 VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);

static uint8_t pattern(uint64_t i) { return (uint8_t)(i * 7 + i / 512); }

static void on_queue_irq(void *o, unsigned q) { (void)o; (void)q; __atomic_add_fetch(&queue_irqs, 1, __ATOMIC_RELAXED); }
static void on_config_irq(void *o) { (void)o; config_irqs++; }

static void make_image(void)
{
	strcpy(path, "/tmp/kite-vblk-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	uint8_t buf[SECTORS * 512];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	close(fd);
}

static void start(enum blk_engine engine, bool readonly, uint64_t features)
{
	cr_assert_eq(guest_memory_init(&mem, MEM_SIZE), 0);
	vdrv_init(&drv, &mem, QSIZE, RING_BASE, MEM_SIZE);
	make_image();
	struct blk_backend *be;
	cr_assert_eq(blk_open(&be, path, readonly, engine), 0);
	cr_assert_eq(virtio_blk_create(&blk, &mem, be, "kite-test-disk"), 0);
	vd = virtio_blk_vdev(blk);
	struct virtio_transport_hooks h = { NULL, on_queue_irq, on_config_irq, NULL };
	virtio_set_transport(vd, &h);
	next_desc = 0;
	queue_irqs = config_irqs = 0;
	if (readonly)
		features &= ~(VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) | VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES));
	cr_assert_eq(vdrv_bring_up(vd, &drv, features), 0);
}

static void stop(void)
{
	virtio_blk_destroy(blk);
	unlink(path);
	guest_memory_destroy(&mem);
}

static uint16_t alloc_desc(void)
{
	uint16_t d = next_desc;
	next_desc = (uint16_t)((next_desc + 1) % QSIZE);
	return d;
}

struct req {
	uint16_t head;
	uint64_t data;
	uint8_t *status;
};

/* Post a request: [header R][data R or W][status W], as Linux lays it out. */
static struct req post(uint32_t type, uint64_t sector, uint32_t len, bool data_writable)
{
	struct req r;
	uint64_t hdr = vdrv_alloc(&drv, 16);
	uint32_t h[4] = { htole32(type), 0, htole32((uint32_t)sector), htole32((uint32_t)(sector >> 32)) };
	memcpy(vdrv_host(&drv, hdr, 16), h, 16);
	r.data = len ? vdrv_alloc(&drv, len) : 0;
	uint64_t st = vdrv_alloc(&drv, 1);
	r.status = vdrv_host(&drv, st, 1);
	*r.status = 0xee;
	uint16_t d0 = alloc_desc(), d1 = alloc_desc(), d2 = len ? alloc_desc() : d1;
	r.head = d0;
	vdrv_set_desc(&drv, d0, hdr, 16, VIRTQ_DESC_F_NEXT, d1);
	if (len)
		vdrv_set_desc(&drv, d1, r.data, len,
			      VIRTQ_DESC_F_NEXT | (data_writable ? VIRTQ_DESC_F_WRITE : 0), d2);
	vdrv_set_desc(&drv, d2, st, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, d0);
	return r;
}

/* Notify, wait for completion, return the used length. */
static uint32_t run_one(const struct req *r)
{
	virtio_queue_notify(vd, 0);
	virtio_blk_drain(blk);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&drv, &id, &len), 1, "request completed");
	cr_assert_eq(id, r->head);
	return len;
}

static void file_read(uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

Test(vblk, config_space)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t cap;
	uint32_t v;
	cr_assert_eq(virtio_config_read(vd, VIRTIO_BLK_CFG_CAPACITY, &cap, 8), 0);
	cr_assert_eq(le64toh(cap), SECTORS);
	virtio_config_read(vd, VIRTIO_BLK_CFG_SEG_MAX, &v, 4);
	cr_assert_eq(le32toh(v), VIRTIO_BLK_SEG_MAX);
	virtio_config_read(vd, VIRTIO_BLK_CFG_BLK_SIZE, &v, 4);
	cr_assert_eq(le32toh(v), 512);
	virtio_config_read(vd, VIRTIO_BLK_CFG_MAX_DISCARD_SEG, &v, 4);
	cr_assert_eq(le32toh(v), 1);
	cr_assert_eq(virtio_config_read(vd, VIRTIO_BLK_CONFIG_LEN - 2, &v, 4), -EINVAL);
	cr_assert_eq(virtio_config_write(vd, 0, &v, 4), -EINVAL, "config is read-only");
	uint64_t f = virtio_get_device_features(vd, 0) | (uint64_t)virtio_get_device_features(vd, 1) << 32;
	cr_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_FLUSH));
	cr_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	cr_assert_not(f & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	stop();
}

Test(vblk, read_returns_file_contents)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct req r = post(VIRTIO_BLK_T_IN, 3, 1024, true);
	cr_assert_eq(run_one(&r), 1025);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	uint8_t *p = vdrv_host(&drv, r.data, 1024);
	for (int i = 0; i < 1024; i++)
		cr_assert_eq(p[i], pattern(3 * 512 + i), "byte %d", i);
	cr_assert(queue_irqs >= 1);
	stop();
}

static struct { uint64_t gpa, len; } vblk_wr[8];
static int vblk_nwr;
static void on_mem_written(void *o, uint64_t gpa, uint64_t len)
{
	(void)o;
	if (vblk_nwr < 8)
		vblk_wr[vblk_nwr].gpa = gpa, vblk_wr[vblk_nwr].len = len;
	vblk_nwr++;
}

/* A read fills guest RAM: the device reports the data buffer and the status
 * byte (so a CPU engine can drop code decoded there); a write reports only
 * the status byte. */
Test(vblk, reads_report_the_guest_memory_they_fill)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct virtio_transport_hooks h = { NULL, on_queue_irq, on_config_irq, on_mem_written };
	virtio_set_transport(vd, &h);
	vblk_nwr = 0;
	struct req r = post(VIRTIO_BLK_T_IN, 3, 1024, true);
	cr_assert_eq(run_one(&r), 1025);
	cr_assert_eq(vblk_nwr, 2);
	cr_assert(vblk_wr[0].gpa == r.data && vblk_wr[0].len == 1024);
	cr_assert(vblk_wr[1].len == 1 && vdrv_host(&drv, vblk_wr[1].gpa, 1) == r.status);
	vblk_nwr = 0;
	r = post(VIRTIO_BLK_T_OUT, 3, 512, false);
	cr_assert_eq(run_one(&r), 1);
	cr_assert_eq(vblk_nwr, 1);
	cr_assert(vblk_wr[0].len == 1 && vdrv_host(&drv, vblk_wr[0].gpa, 1) == r.status);
	stop();
}

Test(vblk, write_reaches_the_file)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct req r = post(VIRTIO_BLK_T_OUT, 10, 512, false);
	memset(vdrv_host(&drv, r.data, 512), 0xab, 512);
	cr_assert_eq(run_one(&r), 1);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	uint8_t buf[1024];
	file_read(10 * 512 - 512, buf, 1024);
	cr_assert_eq(buf[511], pattern(10 * 512 - 1), "sector before untouched");
	for (int i = 512; i < 1024; i++)
		cr_assert_eq(buf[i], 0xab);
	struct req f = post(VIRTIO_BLK_T_FLUSH, 0, 0, false);
	cr_assert_eq(run_one(&f), 1);
	cr_assert_eq(*f.status, VIRTIO_BLK_S_OK);
	stop();
}

Test(vblk, last_sector_ok_one_past_is_ioerr)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct req r = post(VIRTIO_BLK_T_IN, SECTORS - 1, 512, true);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	r = post(VIRTIO_BLK_T_IN, SECTORS - 1, 1024, true);
	cr_assert_eq(run_one(&r), 1);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	r = post(VIRTIO_BLK_T_OUT, SECTORS, 512, false);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	cr_assert_not(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET, "request error only");
	stop();
}

Test(vblk, sector_overflow_is_ioerr)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t bad[] = { UINT64_MAX, UINT64_MAX / 512 + 1, (1ULL << 55) };
	for (size_t i = 0; i < 3; i++) {
		struct req r = post(VIRTIO_BLK_T_IN, bad[i], 512, true);
		run_one(&r);
		cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	}
	stop();
}

Test(vblk, data_not_multiple_of_512_is_ioerr)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct req r = post(VIRTIO_BLK_T_IN, 0, 100, true);
	cr_assert_eq(run_one(&r), 1);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	r = post(VIRTIO_BLK_T_OUT, 0, 513, false);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	uint8_t b;
	file_read(0, &b, 1);
	cr_assert_eq(b, pattern(0));
	stop();
}

Test(vblk, header_too_short_is_ioerr)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t hdr = vdrv_alloc(&drv, 16), st = vdrv_alloc(&drv, 1);
	memset(vdrv_host(&drv, hdr, 16), 0, 16);
	vdrv_set_desc(&drv, 0, hdr, 8, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&drv, 1, st, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, 0);
	struct req r = { .head = 0, .status = vdrv_host(&drv, st, 1) };
	cr_assert_eq(run_one(&r), 1);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	stop();
}

Test(vblk, no_status_descriptor_needs_reset)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t hdr = vdrv_alloc(&drv, 16);
	memset(vdrv_host(&drv, hdr, 16), 0, 16);
	vdrv_set_desc(&drv, 0, hdr, 16, 0, 0);
	vdrv_post(&drv, 0);
	virtio_queue_notify(vd, 0);
	virtio_blk_drain(blk);
	cr_assert(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET);
	cr_assert_eq(config_irqs, 1);
	/* Further notifies do nothing until the driver resets. */
	struct req r = post(VIRTIO_BLK_T_IN, 0, 512, true);
	virtio_queue_notify(vd, 0);
	cr_assert_eq(*r.status, 0xee);
	/* After reset and re-initialisation the device works again. */
	vdrv_init(&drv, &mem, QSIZE, RING_BASE, MEM_SIZE);
	next_desc = 0;
	cr_assert_eq(vdrv_bring_up(vd, &drv, FEATURES), 0);
	r = post(VIRTIO_BLK_T_IN, 0, 512, true);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	stop();
}

Test(vblk, read_only_status_descriptor_needs_reset)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t hdr = vdrv_alloc(&drv, 16), st = vdrv_alloc(&drv, 1);
	memset(vdrv_host(&drv, hdr, 16), 0, 16);
	vdrv_set_desc(&drv, 0, hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&drv, 1, st, 1, 0, 0);
	vdrv_post(&drv, 0);
	virtio_queue_notify(vd, 0);
	virtio_blk_drain(blk);
	cr_assert(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET);
	stop();
}

Test(vblk, writable_before_readable_needs_reset)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t hdr = vdrv_alloc(&drv, 16), st = vdrv_alloc(&drv, 1);
	vdrv_set_desc(&drv, 0, st, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&drv, 1, hdr, 16, 0, 0);
	vdrv_post(&drv, 0);
	virtio_queue_notify(vd, 0);
	cr_assert(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET);
	uint32_t id, len;
	cr_assert_eq(vdrv_get_used(&drv, &id, &len), 0);
	stop();
}

Test(vblk, looping_chain_needs_reset_and_other_devices_live_on)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t hdr = vdrv_alloc(&drv, 16);
	vdrv_set_desc(&drv, 0, hdr, 16, VIRTQ_DESC_F_NEXT, 0);
	vdrv_post(&drv, 0);
	virtio_queue_notify(vd, 0);
	cr_assert(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET);
	stop();
}

Test(vblk, framing_independent_header_and_status_in_data)
{
	/* Header split 4+12 across descriptors; status byte shares the data
	 * descriptor (513 writable bytes). */
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t hdr = vdrv_alloc(&drv, 16), buf = vdrv_alloc(&drv, 513);
	uint32_t h[4] = { htole32(VIRTIO_BLK_T_IN), 0, htole32(5), 0 };
	memcpy(vdrv_host(&drv, hdr, 16), h, 16);
	vdrv_set_desc(&drv, 0, hdr, 4, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc(&drv, 1, hdr + 4, 12, VIRTQ_DESC_F_NEXT, 2);
	vdrv_set_desc(&drv, 2, buf, 513, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(&drv, 0);
	struct req r = { .head = 0 };
	cr_assert_eq(run_one(&r), 513);
	uint8_t *p = vdrv_host(&drv, buf, 513);
	cr_assert_eq(p[512], VIRTIO_BLK_S_OK);
	cr_assert_eq(p[0], pattern(5 * 512));
	cr_assert_eq(p[511], pattern(5 * 512 + 511));
	stop();
}

Test(vblk, indirect_request)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	uint64_t t = vdrv_alloc(&drv, 64), hdr = vdrv_alloc(&drv, 16);
	uint64_t d1 = vdrv_alloc(&drv, 512), d2 = vdrv_alloc(&drv, 512), st = vdrv_alloc(&drv, 1);
	uint32_t h[4] = { htole32(VIRTIO_BLK_T_IN), 0, htole32(1), 0 };
	memcpy(vdrv_host(&drv, hdr, 16), h, 16);
	vdrv_set_desc_at(&drv, t, 0, hdr, 16, VIRTQ_DESC_F_NEXT, 1);
	vdrv_set_desc_at(&drv, t, 1, d1, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	vdrv_set_desc_at(&drv, t, 2, d2, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 3);
	vdrv_set_desc_at(&drv, t, 3, st, 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_set_desc(&drv, 0, t, 64, VIRTQ_DESC_F_INDIRECT, 0);
	vdrv_post(&drv, 0);
	struct req r = { .head = 0 };
	cr_assert_eq(run_one(&r), 1025);
	cr_assert_eq(*(uint8_t *)vdrv_host(&drv, st, 1), VIRTIO_BLK_S_OK);
	cr_assert_eq(*(uint8_t *)vdrv_host(&drv, d2, 1), pattern(1024));
	stop();
}

Test(vblk, get_id_returns_serial)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct req r = post(VIRTIO_BLK_T_GET_ID, 0, 20, true);
	cr_assert_eq(run_one(&r), 21);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	char id[21] = { 0 };
	memcpy(id, vdrv_host(&drv, r.data, 20), 20);
	cr_assert_str_eq(id, "kite-test-disk");
	stop();
}

Test(vblk, unknown_type_is_unsupp)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct req r = post(77, 0, 0, false);
	cr_assert_eq(run_one(&r), 1);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_UNSUPP);
	stop();
}

static struct req post_dwz(uint32_t type, uint64_t sector, uint32_t n, uint32_t flags)
{
	struct req r = post(type, 0, 16, false);
	uint32_t seg[4] = { htole32((uint32_t)sector), htole32((uint32_t)(sector >> 32)),
			    htole32(n), htole32(flags) };
	memcpy(vdrv_host(&drv, r.data, 16), seg, 16);
	return r;
}

Test(vblk, write_zeroes_and_discard)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct req r = post_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 8, 8, 0);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	uint8_t buf[8 * 512 + 2];
	file_read(8 * 512 - 1, buf, sizeof(buf));
	cr_assert_eq(buf[0], pattern(8 * 512 - 1));
	for (int i = 1; i <= 8 * 512; i++)
		cr_assert_eq(buf[i], 0, "byte %d", i);
	cr_assert_eq(buf[8 * 512 + 1], pattern(16 * 512));

	r = post_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 20, 8, VIRTIO_BLK_DWZ_F_UNMAP);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	file_read(20 * 512, buf, 8 * 512);
	for (int i = 0; i < 8 * 512; i++)
		cr_assert_eq(buf[i], 0);

	r = post_dwz(VIRTIO_BLK_T_DISCARD, 32, 8, 0);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	r = post_dwz(VIRTIO_BLK_T_DISCARD, 32, 8, VIRTIO_BLK_DWZ_F_UNMAP);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_UNSUPP, "unmap flag on discard");
	r = post_dwz(VIRTIO_BLK_T_DISCARD, SECTORS - 4, 8, 0);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR, "beyond capacity");
	r = post_dwz(VIRTIO_BLK_T_WRITE_ZEROES, UINT64_MAX - 2, 8, 0);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR, "sector overflow");
	r = post(VIRTIO_BLK_T_DISCARD, 0, 32, false); /* two segments: max is 1 */
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	stop();
}

Test(vblk, discard_unsupp_when_not_negotiated)
{
	start(BLK_ENGINE_SYNC, false, FEATURES & ~VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	struct req r = post_dwz(VIRTIO_BLK_T_DISCARD, 0, 8, 0);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_UNSUPP);
	stop();
}

Test(vblk, readonly_disk_rejects_writes_and_file_is_untouched)
{
	start(BLK_ENGINE_SYNC, true, FEATURES);
	uint64_t f = virtio_get_device_features(vd, 0);
	cr_assert(f & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	cr_assert_not(f & VIRTIO_BIT(VIRTIO_BLK_F_DISCARD));
	struct req r = post(VIRTIO_BLK_T_OUT, 0, 512, false);
	memset(vdrv_host(&drv, r.data, 512), 0x55, 512);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	r = post_dwz(VIRTIO_BLK_T_DISCARD, 0, 8, 0);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	r = post_dwz(VIRTIO_BLK_T_WRITE_ZEROES, 0, 8, 0);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_IOERR);
	r = post(VIRTIO_BLK_T_IN, 0, 512, true);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	r = post(VIRTIO_BLK_T_FLUSH, 0, 0, false);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	uint8_t buf[SECTORS * 512];
	file_read(0, buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], pattern(i));
	stop();
}

/* Many requests in flight on the asynchronous engines. */
static void many_in_flight(enum blk_engine engine)
{
	start(engine, false, FEATURES);
	enum { N = 20 };
	struct req w[N];
	for (int i = 0; i < N; i++) {
		w[i] = post(VIRTIO_BLK_T_OUT, (uint64_t)i * 2, 1024, false);
		memset(vdrv_host(&drv, w[i].data, 1024), 0x10 + i, 1024);
	}
	virtio_queue_notify(vd, 0);
	virtio_blk_drain(blk);
	cr_assert_eq(virtio_blk_in_flight(blk), 0);
	uint32_t id, len;
	int n = 0;
	while (vdrv_get_used(&drv, &id, &len))
		n++;
	cr_assert_eq(n, N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(*w[i].status, VIRTIO_BLK_S_OK);
	struct req f = post(VIRTIO_BLK_T_FLUSH, 0, 0, false);
	cr_assert_eq(run_one(&f), 1);
	cr_assert_eq(*f.status, VIRTIO_BLK_S_OK);

	struct req r[N];
	for (int i = 0; i < N; i++)
		r[i] = post(VIRTIO_BLK_T_IN, (uint64_t)i * 2, 1024, true);
	virtio_queue_notify(vd, 0);
	virtio_blk_drain(blk);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(*r[i].status, VIRTIO_BLK_S_OK);
		uint8_t *p = vdrv_host(&drv, r[i].data, 1024);
		cr_assert_eq(p[0], 0x10 + i);
		cr_assert_eq(p[1023], 0x10 + i);
	}
	uint8_t b;
	file_read(2 * 512 * (N - 1) + 1023, &b, 1);
	cr_assert_eq(b, 0x10 + N - 1);
	cr_assert(queue_irqs >= 1);
	stop();
}

Test(vblk, many_in_flight_threads) { many_in_flight(BLK_ENGINE_THREADS); }
Test(vblk, many_in_flight_uring) { many_in_flight(BLK_ENGINE_URING); }

Test(vblk, reset_waits_for_in_flight_requests)
{
	start(BLK_ENGINE_URING, false, FEATURES);
	for (int i = 0; i < 10; i++)
		post(VIRTIO_BLK_T_IN, (uint64_t)i, 512, true);
	virtio_queue_notify(vd, 0);
	virtio_set_status(vd, 0);
	cr_assert_eq(virtio_blk_in_flight(blk), 0);
	cr_assert_eq(virtio_get_status(vd), 0);
	stop();
}

Test(vblk, save_restore)
{
	start(BLK_ENGINE_SYNC, false, FEATURES);
	struct req r = post(VIRTIO_BLK_T_IN, 0, 512, true);
	run_one(&r);
	uint8_t buf[256];
	size_t n = virtio_blk_save(blk, buf, sizeof(buf));
	cr_assert(n <= sizeof(buf));
	virtio_set_status(vd, 0);
	cr_assert_eq(virtio_blk_restore(blk, buf, n), 0);
	cr_assert(virtio_get_status(vd) & VIRTIO_STATUS_DRIVER_OK);
	r = post(VIRTIO_BLK_T_IN, 1, 512, true);
	run_one(&r);
	cr_assert_eq(*r.status, VIRTIO_BLK_S_OK);
	stop();
}

/* Notifications from several threads at once (several vCPUs kicking the
 * same queue) while completions arrive on the engine's threads. */
struct kicker {
	volatile bool stop;
	long kicks;
};

static void *kick_loop(void *arg)
{
	struct kicker *k = arg;
	while (!k->stop) {
		virtio_queue_notify(vd, 0);
		k->kicks++;
	}
	return NULL;
}

static void concurrent_notifiers(enum blk_engine engine)
{
	start(engine, false, FEATURES);
	struct kicker k = { false, 0 };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, kick_loop, &k), 0);
	enum { ROUNDS = 200, BATCH = 8 };
	int done = 0;
	for (int round = 0; round < ROUNDS; round++) {
		vdrv_reset_heap(&drv, drv.heap_end - (8ULL << 20));
		struct req r[BATCH];
		for (int i = 0; i < BATCH; i++)
			r[i] = post(i & 1 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, (uint64_t)(i * 4), 2048, !(i & 1));
		virtio_queue_notify(vd, 0);
		uint32_t id, len;
		int got = 0;
		while (got < BATCH) {
			if (vdrv_get_used(&drv, &id, &len))
				got++;
			else
				virtio_queue_notify(vd, 0);
		}
		for (int i = 0; i < BATCH; i++)
			cr_assert_eq(*r[i].status, VIRTIO_BLK_S_OK, "round %d req %d", round, i);
		done += got;
	}
	k.stop = true;
	pthread_join(t, NULL);
	cr_assert_eq(done, ROUNDS * BATCH);
	cr_assert_not(virtio_get_status(vd) & VIRTIO_STATUS_NEEDS_RESET);
	stop();
}

Test(vblk, concurrent_notifiers_uring) { concurrent_notifiers(BLK_ENGINE_URING); }
Test(vblk, concurrent_notifiers_threads) { concurrent_notifiers(BLK_ENGINE_THREADS); }

Test(vblk, create_from_disk_option)
{
	cr_assert_eq(guest_memory_init(&mem, MEM_SIZE), 0);
	make_image();
	char opt[128];
	snprintf(opt, sizeof(opt), "%s,readonly,id=from-opt,io=threads", path);
	struct disk_config cfg;
	cr_assert_eq(disk_config_parse(opt, &cfg), 0);
	cr_assert_eq(virtio_blk_create_from_config(&blk, &mem, &cfg), 0);
	vd = virtio_blk_vdev(blk);
	cr_assert(virtio_get_device_features(vd, 0) & VIRTIO_BIT(VIRTIO_BLK_F_RO));
	vdrv_init(&drv, &mem, QSIZE, RING_BASE, MEM_SIZE);
	next_desc = 0;
	cr_assert_eq(vdrv_bring_up(vd, &drv, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
	struct req r = post(VIRTIO_BLK_T_GET_ID, 0, 20, true);
	run_one(&r);
	cr_assert_eq(memcmp(vdrv_host(&drv, r.data, 9), "from-opt", 9), 0);
	stop();
	snprintf(opt, sizeof(opt), "%s.missing", path);
	cr_assert_eq(disk_config_parse(opt, &cfg), 0);
	cr_assert_eq(virtio_blk_create_from_config(&blk, &mem, &cfg), -ENOENT);
}
