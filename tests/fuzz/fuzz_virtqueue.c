/* libFuzzer harness for the split-virtqueue parser: the input is the raw
 * content of a small guest's ring area (descriptor table, avail ring,
 * indirect tables), as a hostile driver would write it. Whatever it holds,
 * virtq_pop must return a chain that lies inside guest RAM, or an error,
 * in bounded time. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtqueue.h"
#include "util/log.h"
#include "vmm/memory.h"

#define RAM (1u << 20)
#define RING 0x1000u

static struct guest_memory mem;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc; (void)argv;
	log_set_level(LOG_ERROR);
	if (guest_memory_init(&mem, RAM))
		abort();
	return 0;
}

static void check_in_ram(const struct virtq_elem *e)
{
	const uint8_t *lo = mem.region[0].host, *hi = lo + mem.region[0].size;
	for (unsigned i = 0; i < e->n_out + e->n_in; i++) {
		const uint8_t *p = e->iov[i].iov_base;
		if (p < lo || p > hi || e->iov[i].iov_len > (size_t)(hi - p))
			abort();
		/* Touch both ends so ASan sees any escape. */
		volatile uint8_t x = p[0];
		x = p[e->iov[i].iov_len - 1];
		(void)x;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	uint8_t cfg = data[0];
	uint16_t qsize = (uint16_t)(1u << (cfg & 7));       /* 1..128 */
	bool indirect = cfg & 0x08, event_idx = cfg & 0x10;
	uint16_t start = (uint16_t)(data[1] | data[2] << 8); /* initial indices */
	unsigned pops = data[3];
	data += 4;
	size -= 4;

	/* The ring area at RING: descriptors, then avail, then used (page
	 * aligned). The fuzz input overwrites descriptors and avail ring and
	 * spills into RAM after them (indirect tables, buffers). */
	uint8_t *ram = mem.region[0].host;
	memset(ram, 0, 0x40000);
	size_t n = size < 0x30000 ? size : 0x30000;
	memcpy(ram + RING, data, n);

	struct virtq q;
	virtq_init(&q, &mem, 256);
	virtq_set_size(&q, qsize);
	q.desc_gpa = RING;
	q.avail_gpa = RING + 16u * qsize;
	q.used_gpa = (q.avail_gpa + 6 + 2u * qsize + 4095) & ~4095u;
	if (virtq_enable(&q, indirect, event_idx))
		abort();
	q.last_avail = q.used_idx = start;

	struct iovec iov[300];
	struct virtq_elem e = { .iov = iov, .iov_cap = 300 };
	for (unsigned i = 0; i <= pops; i++) {
		virtq_disable_notify(&q);
		int r = virtq_pop(&q, &e);
		if (r < 0) {
			if (!virtq_broken(&q) || virtq_pop(&q, &e) != -EIO)
				abort();
			break;
		}
		if (r == 0) {
			virtq_enable_notify(&q);
			break;
		}
		if (e.head >= qsize)
			abort();
		check_in_ram(&e);
		uint8_t hdr[16];
		iov_to_buf(e.iov, e.n_out, 0, hdr, sizeof(hdr));
		uint8_t zero[8] = { 0 };
		iov_from_buf(e.iov + e.n_out, e.n_in, 0, zero, sizeof(zero));
		if (virtq_push(&q, e.head, (uint32_t)e.in_bytes))
			abort();
		virtq_should_interrupt(&q);
	}
	return 0;
}
