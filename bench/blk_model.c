/* bench (a) of issue 5: virtio-blk device-model throughput in-process.
 *
 * A synthetic driver (tests/unit/virtq_driver.h) lays out a split ring in
 * guest RAM and keeps QD requests in flight against a virtio-blk device on
 * a raw image; the same I/O (same offsets, same sizes) is then done
 * directly on the host file with pread/pwrite. The ratio device/host is
 * kite's device overhead: ring parsing, request checks, the engine's
 * hand-off and completion, interrupts. Both go through the host page cache
 * (the image is warmed first), so the numbers are about the device model,
 * not about the disk.
 *
 * Usage: blk_model [seconds-per-case (default 0.4)] [image path]
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/virtio_blk.h"
#include "util/log.h"
#include "virtq_driver.h"

#define IMAGE_SIZE (256ULL << 20)
#define GUEST_RAM (128ULL << 20)
#define RING_GPA 0x100000ULL
#define BUF_GPA (4ULL << 20)
#define QSIZE 256
#define MAX_QD 32

struct workload {
	const char *name;
	uint32_t block;   /* bytes per request */
	bool write, random;
};

static const struct workload workloads[] = {
	{ "4k-rand-read", 4096, false, true },
	{ "4k-rand-write", 4096, true, true },
	{ "1m-seq-read", 1 << 20, false, false },
	{ "1m-seq-write", 1 << 20, true, false },
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The k-th offset of a workload: sequential wraps around, random is a
 * fixed pseudo-random sequence, so host and device do the same I/O. */
static uint64_t offset_of(const struct workload *w, uint64_t k)
{
	uint64_t blocks = IMAGE_SIZE / w->block;
	if (!w->random)
		return (k % blocks) * w->block;
	uint64_t x = k * 0x9E3779B97F4A7C15ULL + 0x1234567;
	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ULL;
	x ^= x >> 32;
	return (x % blocks) * w->block;
}

/* ---- direct host I/O ---- */

static double run_host(int fd, const struct workload *w, double secs, void *buf)
{
	uint64_t k = 0, bytes = 0;
	double t0 = now(), t;
	do {
		for (int i = 0; i < 16; i++, k++) {
			uint64_t off = offset_of(w, k);
			ssize_t n = w->write ? pwrite(fd, buf, w->block, (off_t)off)
					     : pread(fd, buf, w->block, (off_t)off);
			if (n != (ssize_t)w->block) {
				perror("host I/O");
				exit(1);
			}
			bytes += w->block;
		}
		t = now();
	} while (t - t0 < secs);
	return bytes / (t - t0) / 1e6;
}

/* ---- the synthetic driver ---- */

struct irq_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned long count;
};

static void on_irq(void *opaque, unsigned q)
{
	struct irq_wait *iw = opaque;
	(void)q;
	pthread_mutex_lock(&iw->lock);
	iw->count++;
	pthread_cond_signal(&iw->cond);
	pthread_mutex_unlock(&iw->lock);
}

struct bench_dev {
	struct guest_memory mem;
	struct virtio_blk *blk;
	struct virtio_device *vd;
	struct vdrv drv;
	struct irq_wait iw;
};

static void dev_open(struct bench_dev *b, const char *path, enum blk_engine engine)
{
	if (guest_memory_init(&b->mem, GUEST_RAM)) {
		fprintf(stderr, "guest memory\n");
		exit(1);
	}
	struct blk_backend *be;
	if (blk_open(&be, path, false, engine))
		exit(1);
	if (virtio_blk_create(&b->blk, &b->mem, be, "bench"))
		exit(1);
	b->vd = virtio_blk_vdev(b->blk);
	pthread_mutex_init(&b->iw.lock, NULL);
	pthread_cond_init(&b->iw.cond, NULL);
	b->iw.count = 0;
	struct virtio_transport_hooks h = { &b->iw, on_irq, NULL };
	virtio_set_transport(b->vd, &h);
	vdrv_init(&b->drv, &b->mem, QSIZE, RING_GPA, GUEST_RAM);
	uint64_t f = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_RING_F_EVENT_IDX) |
		     VIRTIO_BIT(VIRTIO_BLK_F_FLUSH);
	if (vdrv_bring_up(b->vd, &b->drv, f)) {
		fprintf(stderr, "bring-up failed\n");
		exit(1);
	}
}

static void dev_close(struct bench_dev *b)
{
	virtio_blk_destroy(b->blk);
	pthread_cond_destroy(&b->iw.cond);
	pthread_mutex_destroy(&b->iw.lock);
	guest_memory_destroy(&b->mem);
}

/* Slot s: descriptors 3s..3s+2, header/status at a small area, data at
 * BUF_GPA + s MiB. */
static uint64_t hdr_gpa(int s) { return RING_GPA + 0x10000 + 32ULL * s; }
static uint64_t status_gpa(int s) { return hdr_gpa(s) + 16; }
static uint64_t data_gpa(int s) { return BUF_GPA + ((uint64_t)s << 20); }

static void post_slot(struct bench_dev *b, int s, const struct workload *w, uint64_t off)
{
	struct vdrv *d = &b->drv;
	uint32_t h[4] = { htole32(w->write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN), 0,
			  htole32((uint32_t)(off / 512)), htole32((uint32_t)((off / 512) >> 32)) };
	memcpy(vdrv_host(d, hdr_gpa(s), 16), h, 16);
	*(uint8_t *)vdrv_host(d, status_gpa(s), 1) = 0xff;
	uint16_t i = (uint16_t)(3 * s);
	vdrv_set_desc(d, i, hdr_gpa(s), 16, VIRTQ_DESC_F_NEXT, i + 1);
	vdrv_set_desc(d, i + 1, data_gpa(s), w->block,
		      VIRTQ_DESC_F_NEXT | (w->write ? 0 : VIRTQ_DESC_F_WRITE), i + 2);
	vdrv_set_desc(d, i + 2, status_gpa(s), 1, VIRTQ_DESC_F_WRITE, 0);
	vdrv_post(d, i);
}

static double run_device(struct bench_dev *b, const struct workload *w, int qd, double secs)
{
	struct vdrv *d = &b->drv;
	int free_slots[MAX_QD], nfree = qd;
	for (int i = 0; i < qd; i++)
		free_slots[i] = i;
	uint64_t k = 0, bytes = 0;
	int in_flight = 0;
	bool stopping = false;
	double t0 = now(), t = t0;
	unsigned long seen_irq = 0;
	for (;;) {
		bool posted = false;
		while (!stopping && nfree) {
			post_slot(b, free_slots[--nfree], w, offset_of(w, k++));
			in_flight++;
			posted = true;
		}
		if (posted)
			virtio_queue_notify(b->vd, 0);
		if (!in_flight)
			break;
		/* Ask for an interrupt at the next used entry, then look
		 * again before sleeping (the event-index handshake). */
		vdrv_set_used_event(d, d->used_seen);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		pthread_mutex_lock(&b->iw.lock);
		while (vdrv_used_idx(d) == d->used_seen && b->iw.count == seen_irq)
			pthread_cond_wait(&b->iw.cond, &b->iw.lock);
		seen_irq = b->iw.count;
		pthread_mutex_unlock(&b->iw.lock);
		uint32_t id, len;
		while (vdrv_get_used(d, &id, &len)) {
			int s = (int)id / 3;
			if (*(uint8_t *)vdrv_host(d, status_gpa(s), 1) != VIRTIO_BLK_S_OK) {
				fprintf(stderr, "request failed\n");
				exit(1);
			}
			free_slots[nfree++] = s;
			in_flight--;
			bytes += w->block;
		}
		t = now();
		if (t - t0 >= secs)
			stopping = true;
	}
	return bytes / (t - t0) / 1e6;
}

struct dev_case {
	enum blk_engine engine;
	int qd;
};

static const struct dev_case cases[] = {
	{ BLK_ENGINE_SYNC, 1 },
	{ BLK_ENGINE_THREADS, 1 },
	{ BLK_ENGINE_URING, 1 },
	{ BLK_ENGINE_THREADS, 16 },
	{ BLK_ENGINE_URING, 16 },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 0.4;
	const char *path = argc > 2 ? argv[2] : "/var/tmp/kite-bench-blk.img";
	log_set_level(LOG_ERROR);

	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		fprintf(stderr, "blk_model: cannot create '%s': %s\n", path, strerror(errno));
		return 1;
	}
	void *buf = aligned_alloc(4096, 1 << 20);
	memset(buf, 0x5a, 1 << 20);
	for (uint64_t off = 0; off < IMAGE_SIZE; off += 1 << 20)
		if (pwrite(fd, buf, 1 << 20, (off_t)off) != 1 << 20) {
			perror("blk_model: fill");
			return 1;
		}
	fdatasync(fd);

	printf("virtio-blk device model vs direct host I/O (page cache, %llu MiB image, %.1f s per case)\n",
	       (unsigned long long)(IMAGE_SIZE >> 20), secs);
	printf("%-14s %10s", "workload", "host MB/s");
	for (size_t c = 0; c < NCASES; c++) {
		char h[32];
		snprintf(h, sizeof(h), "%s qd%d", blk_engine_name(cases[c].engine), cases[c].qd);
		printf(" %16s", h);
	}
	printf("\n");

	for (size_t wi = 0; wi < sizeof(workloads) / sizeof(workloads[0]); wi++) {
		const struct workload *w = &workloads[wi];
		/* Best of two runs each, interleaved, against noise from other
		 * processes on the host. */
		double host = 0, dev[NCASES] = { 0 };
		for (int rep = 0; rep < 2; rep++) {
			double h = run_host(fd, w, secs, buf);
			if (h > host)
				host = h;
			for (size_t c = 0; c < NCASES; c++) {
				struct bench_dev b;
				dev_open(&b, path, cases[c].engine);
				double v = run_device(&b, w, cases[c].qd, secs);
				dev_close(&b);
				if (v > dev[c])
					dev[c] = v;
			}
		}
		printf("%-14s %10.0f", w->name, host);
		for (size_t c = 0; c < NCASES; c++) {
			char cell[32];
			snprintf(cell, sizeof(cell), "%.0f (%.2fx)", dev[c], dev[c] / host);
			printf(" %16s", cell);
		}
		printf("\n");
		fflush(stdout);
	}
	close(fd);
	unlink(path);
	free(buf);
	return 0;
}
