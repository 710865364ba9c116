/* libFuzzer harness for virtio-blk request parsing: the input describes a
 * batch of requests as a hostile driver would build them (descriptor count,
 * flags, lengths, buffer placement including addresses outside RAM, and the
 * bytes of each readable buffer, so headers and discard segments are fuzz
 * controlled). The device runs on the synchronous engine over a small
 * scratch image; it must complete or fail each request, or enter
 * NEEDS_RESET, without touching anything outside guest RAM. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio/virtio_blk.h"
#include "util/log.h"
#include "virtq_driver.h"

#define RAM (4u << 20)
#define RING 0x1000u
#define QSIZE 32
#define SLOT_BASE 0x100000u
#define SLOT_SIZE 0x2000u
#define NSLOTS 64

static struct guest_memory mem;
static struct virtio_blk *blk;
static struct virtio_device *vd;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc; (void)argv;
	log_set_level(LOG_ERROR);
	if (guest_memory_init(&mem, RAM))
		abort();
	char path[] = "/tmp/kite-fuzz-blk-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, 64 * 1024))
		abort();
	close(fd);
	struct blk_backend *be;
	if (blk_open(&be, path, false, BLK_ENGINE_SYNC))
		abort();
	unlink(path); /* the open fd keeps it alive */
	if (virtio_blk_create(&blk, &mem, be, "fuzz"))
		abort();
	vd = virtio_blk_vdev(blk);
	return 0;
}

struct in {
	const uint8_t *p;
	size_t left;
};

static uint64_t take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v |= (uint64_t)(in->left ? *in->p : 0) << (8 * i);
		if (in->left) {
			in->p++;
			in->left--;
		}
	}
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct vdrv d;
	vdrv_init(&d, &mem, QSIZE, RING, RAM);
	memset(gm_ptr(&mem, SLOT_BASE, NSLOTS * SLOT_SIZE), 0, NSLOTS * SLOT_SIZE);
	uint64_t features = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
	uint8_t fsel = (uint8_t)take(&in, 1);
	if (fsel & 1) features |= VIRTIO_BIT(VIRTIO_RING_F_INDIRECT_DESC);
	if (fsel & 2) features |= VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX);
	if (fsel & 4) features |= VIRTIO_BIT(VIRTIO_BLK_F_DISCARD);
	if (fsel & 8) features |= VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES);
	if (vdrv_bring_up(vd, &d, features))
		abort();

	unsigned nreq = 1 + (unsigned)take(&in, 1) % 8;
	uint16_t desc = 0;
	unsigned slot = 0;
	for (unsigned r = 0; r < nreq && in.left; r++) {
		unsigned nd = 1 + (unsigned)take(&in, 1) % 6;
		uint8_t shape = (uint8_t)take(&in, 1);
		uint16_t head = desc;
		uint8_t *first = NULL;
		uint32_t first_len = 0;
		for (unsigned k = 0; k < nd; k++) {
			uint8_t fl = (uint8_t)take(&in, 1);
			uint32_t len = (uint32_t)take(&in, 2) % (SLOT_SIZE + 1);
			uint64_t addr;
			if ((fl & 0xf0) == 0xf0) {
				addr = take(&in, 8); /* anywhere at all... */
				/* ...but the rings: a device writing where the driver
				 * told it may overwrite them, which is the driver's
				 * own doing and would defeat the used-ring check. */
				if (addr < SLOT_BASE && addr + len > RING)
					addr = SLOT_BASE + NSLOTS * SLOT_SIZE + (addr & 0xfff);
			} else
				addr = SLOT_BASE + (uint64_t)(slot++ % NSLOTS) * SLOT_SIZE + (fl >> 4);
			uint16_t flags = fl & (VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT);
			if (k + 1 < nd)
				flags |= VIRTQ_DESC_F_NEXT;
			uint16_t next = (fl & 8) ? (uint16_t)take(&in, 1) : (uint16_t)((desc + 1) % QSIZE);
			/* Readable buffers get fuzz bytes: headers, segments, or
			 * descriptor tables when the buffer is indirect. */
			uint8_t *host = gm_ptr(&mem, addr, len ? len : 1);
			if (host && !(flags & VIRTQ_DESC_F_WRITE)) {
				size_t n = len < 48 ? len : 48;
				for (size_t i = 0; i < n; i++)
					host[i] = (uint8_t)take(&in, 1);
			}
			if (k == 0 && host && !(flags & VIRTQ_DESC_F_WRITE)) {
				first = host;
				first_len = len;
			}
			vdrv_set_desc(&d, desc, addr, len, flags, next);
			desc = (uint16_t)((desc + 1) % QSIZE);
		}
		/* Steer most headers to real request types and small sectors so
		 * a short run reaches every request path; shape 0xff keeps the
		 * raw fuzz bytes. */
		static const uint32_t types[] = {
			VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
			VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES, 10, 0x80000000u,
		};
		if (first && shape != 0xff && first_len >= 16) {
			uint32_t t = htole32(types[shape & 7]);
			memcpy(first, &t, 4);
			if (shape & 8) {
				uint64_t sec = htole64((shape >> 4) * 9u);
				memcpy(first + 8, &sec, 8);
			}
		}
		vdrv_post(&d, head);
		if (take(&in, 1) & 1)
			virtio_queue_notify(vd, 0);
	}
	if (take(&in, 1) & 1)
		vdrv_set_avail_idx(&d, (uint16_t)take(&in, 2));
	virtio_queue_notify(vd, 0);
	virtio_blk_drain(blk);

	/* Every used element names a head the driver posted. */
	uint32_t id, len;
	while (vdrv_get_used(&d, &id, &len))
		if (id >= QSIZE)
			abort();
	virtio_set_status(vd, 0);
	return 0;
}
