/* virtio_console: a minimal virtio-console driver (one port, no multiport)
 * over the modern PCI transport, polling both queues. Writes a greeting to
 * the transmitq, then echoes every line that arrives on the receiveq as
 * "echo: LINE (LENGTH)" (the first 127 bytes of it) until the line "quit",
 * and exits GUEST_OK. With kite's
 * --console virtio, this is the stdio console. */
#include "lib/pci.h"
#include "lib/runtime.h"

#define QSIZE 8
#define RXBUF 64

#define C_DFSELECT 0x00
#define C_DF       0x04
#define C_GFSELECT 0x08
#define C_GF       0x0C
#define C_STATUS   0x14
#define C_QSELECT  0x16
#define C_QSIZE    0x18
#define C_QENABLE  0x1C
#define C_QNOFF    0x1E
#define C_QDESC    0x20
#define C_QAVAIL   0x28
#define C_QUSED    0x30
#define DESC_WRITE 2

struct desc { uint32_t addr_lo, addr_hi, len; uint16_t flags, next; };

struct queue {
	struct desc desc[QSIZE] __attribute__((aligned(4096)));
	volatile uint16_t avail[2 + QSIZE + 1] __attribute__((aligned(4096)));
	volatile uint16_t used[2 + 4 * QSIZE + 1] __attribute__((aligned(4096)));
	uint16_t avail_idx, used_seen;
	uint32_t notify;
};

static struct queue rxq, txq;
static uint8_t rxbuf[QSIZE][RXBUF];
static char txbuf[256];
static uint32_t common, notify_base, notify_mult;

static void barrier(void) { __asm__ volatile("" ::: "memory"); }

static int probe(void)
{
	int dev = virtio_pci_find(3);
	if (dev < 0)
		return -1;
	struct virtio_pci v;
	virtio_pci_map((unsigned)dev, pci_read((unsigned)dev, 0x10) & ~0xFu, &v);
	common = v.common;
	notify_base = v.notify;
	notify_mult = v.notify_mult;
	return common && notify_base ? 0 : -1;
}

static void setup_queue(unsigned qi, struct queue *q)
{
	mmio_write16(common + C_QSELECT, (uint16_t)qi);
	mmio_write16(common + C_QSIZE, QSIZE);
	mmio_write32(common + C_QDESC, (uint32_t)q->desc);
	mmio_write32(common + C_QDESC + 4, 0);
	mmio_write32(common + C_QAVAIL, (uint32_t)q->avail);
	mmio_write32(common + C_QAVAIL + 4, 0);
	mmio_write32(common + C_QUSED, (uint32_t)q->used);
	mmio_write32(common + C_QUSED + 4, 0);
	q->notify = notify_base + mmio_read16(common + C_QNOFF) * notify_mult;
	mmio_write16(common + C_QENABLE, 1);
}

static int bring_up(void)
{
	mmio_write8(common + C_STATUS, 0);
	mmio_write8(common + C_STATUS, 1);
	mmio_write8(common + C_STATUS, 1 | 2);
	mmio_write32(common + C_GFSELECT, 0);
	mmio_write32(common + C_GF, 0);
	mmio_write32(common + C_GFSELECT, 1);
	mmio_write32(common + C_GF, 1);      /* VERSION_1 only */
	mmio_write8(common + C_STATUS, 1 | 2 | 8);
	if (!(mmio_read8(common + C_STATUS) & 8))
		return -1;
	setup_queue(0, &rxq);
	setup_queue(1, &txq);
	mmio_write8(common + C_STATUS, 1 | 2 | 8 | 4);
	return mmio_read8(common + C_STATUS) == (1 | 2 | 8 | 4) ? 0 : -1;
}

static void post(struct queue *q, uint16_t d)
{
	q->avail[2 + q->avail_idx % QSIZE] = d;
	barrier();
	q->avail[1] = ++q->avail_idx;
	barrier();
}

/* Wait for the next used element of q: its id and length (bounded). */
static int next_used(struct queue *q, uint32_t *id, uint32_t *len, uint32_t spins)
{
	for (uint32_t i = 0; i < spins; i++) {
		barrier();
		if (q->used[1] != q->used_seen) {
			volatile uint32_t *e = (volatile uint32_t *)&q->used[2] + 2 * (q->used_seen % QSIZE);
			*id = e[0];
			*len = e[1];
			q->used_seen++;
			return 1;
		}
		__asm__ volatile("pause");
	}
	return 0;
}

static void con_write(const char *s, size_t n)
{
	if (n > sizeof(txbuf))
		n = sizeof(txbuf);
	memcpy(txbuf, s, n);
	txq.desc[0] = (struct desc){ (uint32_t)txbuf, 0, (uint32_t)n, 0, 0 };
	post(&txq, 0);
	mmio_write16(txq.notify, 1);
	uint32_t id, len;
	if (!next_used(&txq, &id, &len, 100000000u)) {
		printf("virtio_console: transmit never completed\n");
		guest_exit(GUEST_FAIL);
	}
}

static void con_puts(const char *s) { con_write(s, strlen(s)); }

void guest_main(const struct multiboot_info *mbi)
{
	(void)mbi;
	if (probe() || bring_up()) {
		printf("virtio_console: no usable virtio-console device\n");
		guest_exit(GUEST_FAIL);
	}
	for (uint16_t i = 0; i < QSIZE; i++) {
		rxq.desc[i] = (struct desc){ (uint32_t)rxbuf[i], 0, RXBUF, DESC_WRITE, 0 };
		post(&rxq, i);
	}
	mmio_write16(rxq.notify, 0);
	con_puts("hello from hvc0\r\n");

	char line[128];
	size_t n = 0, total = 0;
	for (;;) {
		uint32_t id, len;
		if (!next_used(&rxq, &id, &len, 0xFFFFFFFFu))
			continue;
		if (id >= QSIZE || len > RXBUF) {
			printf("virtio_console: bad used element %u len %u\n", id, len);
			guest_exit(GUEST_FAIL);
		}
		for (uint32_t i = 0; i < len; i++) {
			char c = (char)rxbuf[id][i];
			if (c == '\r' || c == '\n') {
				line[n] = 0;
				if (n == 4 && !memcmp(line, "quit", 4)) {
					con_puts("bye\r\n");
					guest_exit(GUEST_OK);
				}
				if (total) {
					/* the count shows that no input byte was lost */
					char num[16];
					int k = 15;
					num[k] = 0;
					do {
						num[--k] = (char)('0' + total % 10);
						total /= 10;
					} while (total && k > 1);
					num[--k] = '(';
					con_puts("echo: ");
					con_write(line, n);
					con_puts(" ");
					con_puts(num + k);
					con_puts(")\r\n");
				}
				n = total = 0;
			} else {
				if (n < sizeof(line) - 1)
					line[n++] = c;
				total++;
			}
		}
		post(&rxq, (uint16_t)id);   /* give the buffer back */
		mmio_write16(rxq.notify, 0);
	}
}
