#include "devices/pci/ivshmem.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/pci/msix.h"
#include "devices/pci/pci.h"
#include "devices/virtio/virtio_pci.h" /* pci_mmio_alloc, the INTx routing */
#include "util/event_loop.h"
#include "util/log.h"
#include "util/size.h"
#include "vmm/irq.h"
#include "vmm/vm.h"

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)

#define BAR_REGS 0
#define BAR_MSIX 1
#define BAR_SHM  2
#define MSIX_BAR_SIZE 4096
#define MSIX_PBA_OFF  2048
#define MSIX_CAP_AT   0x40
/* a hostile or broken server cannot make kite track unbounded peers */
#define MAX_TRACKED_PEERS 4096

int shm_config_parse(const char *text, struct shm_config *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	char *copy = strdup(text);
	if (!copy)
		FAIL("out of memory");
	char *rest = copy, *opt;
	int ret = 0;
	bool has_vectors = false, has_size = false;
	while (!ret && (opt = strsep(&rest, ","))) {
		const char *v = strchr(opt, '=');
		if (!v) {
			snprintf(err, errlen, "bad --shm option '%s': expected KEY=VALUE", opt);
			ret = -EINVAL;
			break;
		}
		size_t klen = (size_t)(v - opt);
		v++;
		if (klen == 4 && !strncmp(opt, "path", 4) && *v && strlen(v) < sizeof(out->path)) {
			snprintf(out->path, sizeof(out->path), "%s", v);
		} else if (klen == 6 && !strncmp(opt, "server", 6) && *v &&
			   strlen(v) < sizeof(out->server)) {
			snprintf(out->server, sizeof(out->server), "%s", v);
		} else if (klen == 4 && !strncmp(opt, "size", 4)) {
			if (parse_size_mib_default(v, &out->size) || out->size < IVSHMEM_MIN_SIZE ||
			    out->size > IVSHMEM_MAX_SIZE || (out->size & (out->size - 1))) {
				snprintf(err, errlen, "bad --shm size '%s': a power of two from 4K to 256M", v);
				ret = -EINVAL;
			}
			has_size = true;
		} else if (klen == 7 && !strncmp(opt, "vectors", 7)) {
			char *end;
			unsigned long n = strtoul(v, &end, 10);
			if (!*v || *end || n < 1 || n > IVSHMEM_MAX_VECTORS) {
				snprintf(err, errlen, "bad --shm vectors '%s': 1..%d", v, IVSHMEM_MAX_VECTORS);
				ret = -EINVAL;
			}
			out->vectors = (unsigned)n;
			has_vectors = true;
		} else {
			snprintf(err, errlen, "bad --shm option '%s': expected path=FILE[,size=SIZE] or "
				 "server=SOCKET[,vectors=N]", opt);
			ret = -EINVAL;
		}
	}
	free(copy);
	if (ret)
		return ret;
	if (!*out->path == !*out->server)
		FAIL("--shm '%s': give either path=FILE or server=SOCKET", text);
	if (*out->path && has_vectors)
		FAIL("--shm '%s': vectors= needs server= (a plain shared file has no interrupts)", text);
	if (*out->server && has_size)
		FAIL("--shm '%s': with server= the server decides the size", text);
	if (!out->vectors)
		out->vectors = 1;
	return 0;
}

struct ivshmem;

/* One of our own interrupt vectors: a peer's doorbell write to it makes
 * this eventfd readable. */
struct own_vector {
	struct ivshmem *dev;
	unsigned n;
	int fd;
};

struct peer {
	uint16_t id;
	unsigned nr;                 /* connected vectors */
	int fds[IVSHMEM_MAX_VECTORS];/* write 1 to interrupt the peer */
};

struct ivshmem {
	struct vm *vm;
	struct pci_device pdev;
	struct msix msix;
	bool doorbell;               /* server mode: BAR1, interrupts */
	char name[48];
	unsigned gsi;

	uint8_t *shm;
	uint64_t size;
	int shm_fd;
	int mem_index;               /* vm->mem's device memory region */

	pthread_mutex_t lock;        /* everything below */
	uint32_t intr_mask, intr_status;
	bool intx_level;
	int32_t position;            /* our peer ID (0 in plain mode) */
	int server_fd;               /* -1 once the server is gone */
	unsigned vectors;            /* configured */
	struct own_vector own[IVSHMEM_MAX_VECTORS];
	unsigned nr_own;
	struct peer *peers;
	unsigned nr_peers;
	uint64_t doorbells, dropped, received;
	bool warned_drop;

	/* mappings, under the PCI bus lock (hooks) */
	bool mapped[3];
	uint64_t mapped_at[3];
	uint64_t bar_init[3];
};

/* ---- interrupts ---- */

static void update_intx_locked(struct ivshmem *d)
{
	uint16_t cmd = pci_get_word(d->pdev.config, PCI_COMMAND);
	bool level = (d->intr_status & d->intr_mask) && !(cmd & PCI_COMMAND_INTX_DISABLE) &&
		     !msix_enabled(&d->msix);
	if (level != d->intx_level) {
		d->intx_level = level;
		vm_irq_line(d->vm, d->gsi, level);
	}
}

/* A peer rang our vector n: MSI-X vector n, or IntrStatus and INTx. */
static void raise_vector(struct ivshmem *d, unsigned n)
{
	pthread_mutex_lock(&d->lock);
	d->received++;
	uint16_t cmd = pci_get_word(d->pdev.config, PCI_COMMAND);
	int r = -ENODEV;
	if (msix_enabled(&d->msix))
		r = (cmd & PCI_COMMAND_MASTER) ? msix_notify(&d->msix, n) : 0;
	if (r == -ENODEV) {
		d->intr_status |= 1;
		update_intx_locked(d);
	}
	pthread_mutex_unlock(&d->lock);
}

static void own_vector_event(void *opaque, int fd, uint32_t events)
{
	struct own_vector *v = opaque;
	(void)events;
	uint64_t count;
	/* an eventfd reads once to zero however often it was written */
	if (read(fd, &count, sizeof(count)) == sizeof(count))
		raise_vector(v->dev, v->n);
}

/* ---- the server's messages ---- */

static struct peer *find_peer(struct ivshmem *d, uint16_t id)
{
	for (unsigned i = 0; i < d->nr_peers; i++)
		if (d->peers[i].id == id)
			return &d->peers[i];
	return NULL;
}

static void drop_peer_locked(struct ivshmem *d, uint16_t id)
{
	struct peer *p = find_peer(d, id);
	if (!p)
		return;
	for (unsigned i = 0; i < p->nr; i++)
		close(p->fds[i]);
	*p = d->peers[--d->nr_peers];
	kite_info("%s: peer %u left", d->name, id);
}

/* One message: a little-endian signed 64-bit number, maybe with an fd. */
static int recv_msg(int sock, int64_t *value, int *fd)
{
	uint8_t buf[8];
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
			     .msg_controllen = sizeof(ctl) };
	*fd = -1;
	ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	if (n == 0)
		return -EPIPE;
	if (n != 8 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EPROTO;
	}
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | buf[i];
	*value = (int64_t)v;
	return 0;
}

static void server_gone_locked(struct ivshmem *d, const char *why)
{
	if (d->server_fd < 0)
		return;
	event_loop_del(d->vm->loop, d->server_fd);
	close(d->server_fd);
	d->server_fd = -1;
	/* as the spec allows: connected peers keep working */
	kite_warn("%s: ivshmem server connection ended (%s); connected peers keep working", d->name,
		  why);
}

/* After the handshake: a peer ID with an fd is a vector of that peer (our
 * own ID: one of ours), without an fd that peer left. */
static void handle_msg_locked(struct ivshmem *d, int64_t value, int fd)
{
	if (value < 0 || value >= IVSHMEM_MAX_PEERS) {
		if (fd >= 0)
			close(fd);
		server_gone_locked(d, "protocol error: a peer ID out of range");
		return;
	}
	uint16_t id = (uint16_t)value;
	if (fd < 0) {
		if (id != d->position)
			drop_peer_locked(d, id);
		return;
	}
	if (id == d->position) {
		if (d->nr_own >= d->vectors) {
			close(fd); /* more vectors than configured: unused */
			return;
		}
		struct own_vector *v = &d->own[d->nr_own];
		v->dev = d;
		v->n = d->nr_own;
		v->fd = fd;
		if (event_loop_add(d->vm->loop, fd, EPOLLIN, own_vector_event, v)) {
			close(fd);
			return;
		}
		d->nr_own++;
		return;
	}
	struct peer *p = find_peer(d, id);
	if (!p) {
		if (d->nr_peers >= MAX_TRACKED_PEERS) {
			close(fd);
			return;
		}
		struct peer *n = realloc(d->peers, (d->nr_peers + 1) * sizeof(*n));
		if (!n) {
			close(fd);
			return;
		}
		d->peers = n;
		p = &d->peers[d->nr_peers++];
		p->id = id;
		p->nr = 0;
		kite_info("%s: peer %u joined", d->name, id);
	}
	if (p->nr >= d->vectors || p->nr >= IVSHMEM_MAX_VECTORS) {
		close(fd);
		return;
	}
	p->fds[p->nr++] = fd;
}

static void server_event(void *opaque, int fd, uint32_t events)
{
	struct ivshmem *d = opaque;
	(void)events;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < 64 && d->server_fd == fd; i++) {
		int64_t value;
		int msg_fd;
		int r = recv_msg(fd, &value, &msg_fd);
		if (r == -EAGAIN || r == -EWOULDBLOCK)
			break;
		if (r) {
			server_gone_locked(d, r == -EPIPE ? "closed by the server" : strerror(-r));
			break;
		}
		handle_msg_locked(d, value, msg_fd);
	}
	pthread_mutex_unlock(&d->lock);
}

/* Connect and take the first three messages: version 0, our ID, the shared
 * memory. Blocking, bounded by a timeout: the VM cannot start without. */
static int server_handshake(struct ivshmem *d, const char *path, int *shm_fd)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		kite_err("--shm server=%s: cannot connect: %s", path, strerror(-e));
		close(s);
		return e;
	}
	int64_t want[3] = { 0, -2, -1 }; /* -2: any ID */
	int64_t v[3];
	for (int i = 0; i < 3; i++) {
		struct pollfd p = { s, POLLIN, 0 };
		int fd = -1, r = poll(&p, 1, 5000) == 1 ? recv_msg(s, &v[i], &fd) : -ETIMEDOUT;
		bool bad = r || (want[i] != -2 && v[i] != want[i]) ||
			   (i == 1 && (v[i] < 0 || v[i] >= IVSHMEM_MAX_PEERS)) ||
			   ((i == 2) != (fd >= 0));
		if (bad) {
			static const char *const step[] = { "the protocol version (0)", "this peer's ID",
							    "the shared memory" };
			kite_err("--shm server=%s: expected %s, got %s", path, step[i],
				 r ? strerror(-r) : "something else");
			if (fd >= 0)
				close(fd);
			close(s);
			return r ? r : -EPROTO;
		}
		if (i == 2)
			*shm_fd = fd;
	}
	d->position = (int32_t)v[1];
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	d->server_fd = s;
	return 0;
}

/* ---- BAR0: the registers ---- */

static uint64_t regs_read(void *opaque, uint64_t off, unsigned size)
{
	struct ivshmem *d = opaque;
	if (size != 4 || (off & 3))
		return ~0ULL;
	pthread_mutex_lock(&d->lock);
	uint32_t v = 0;
	switch (off) {
	case IVSHMEM_INTR_MASK: v = d->intr_mask; break;
	case IVSHMEM_INTR_STATUS:
		v = d->intr_status;
		d->intr_status = 0; /* reading clears it */
		update_intx_locked(d);
		break;
	case IVSHMEM_IV_POSITION: v = (uint32_t)d->position; break;
	default: v = 0; break; /* Doorbell is write-only, the rest reserved */
	}
	pthread_mutex_unlock(&d->lock);
	return v;
}

static void ring_doorbell_locked(struct ivshmem *d, uint32_t value)
{
	uint16_t peer = ivshmem_doorbell_peer(value), vec = ivshmem_doorbell_vector(value);
	struct peer *p = d->doorbell ? find_peer(d, peer) : NULL;
	if (!p || vec >= p->nr) {
		/* the spec: a peer or vector not connected ignores the write */
		d->dropped++;
		if (!d->warned_drop) {
			d->warned_drop = true;
			kite_info("%s: doorbell to peer %u vector %u dropped: not connected", d->name,
				  peer, vec);
		}
		return;
	}
	uint64_t one = 1;
	if (write(p->fds[vec], &one, sizeof(one)) == sizeof(one))
		d->doorbells++;
	else
		d->dropped++;
}

static void regs_write(void *opaque, uint64_t off, unsigned size, uint64_t value)
{
	struct ivshmem *d = opaque;
	if (size != 4 || (off & 3))
		return;
	pthread_mutex_lock(&d->lock);
	switch (off) {
	case IVSHMEM_INTR_MASK:
		d->intr_mask = (uint32_t)value;
		update_intx_locked(d);
		break;
	case IVSHMEM_INTR_STATUS:
		d->intr_status = (uint32_t)value;
		update_intx_locked(d);
		break;
	case IVSHMEM_DOORBELL:
		ring_doorbell_locked(d, (uint32_t)value);
		break;
	default:
		break; /* IVPosition is read-only, the rest reserved */
	}
	pthread_mutex_unlock(&d->lock);
}

/* ---- BAR1: MSI-X ---- */

static uint64_t msix_bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct ivshmem *d = opaque;
	if (off >= MSIX_PBA_OFF)
		return msix_pba_read(&d->msix, off - MSIX_PBA_OFF, size);
	return msix_table_read(&d->msix, off, size);
}

static void msix_bar_write(void *opaque, uint64_t off, unsigned size, uint64_t value)
{
	struct ivshmem *d = opaque;
	if (off < MSIX_PBA_OFF)
		msix_table_write(&d->msix, off, size, value);
}

/* ---- mapping the BARs (PCI bus lock held) ---- */

static uint64_t bar_size(const struct ivshmem *d, unsigned bar)
{
	return bar == BAR_REGS ? IVSHMEM_REG_SIZE : bar == BAR_MSIX ? MSIX_BAR_SIZE : d->size;
}

/* Not 0, below the 48-bit limit, clear of RAM and of the APIC/HPET pages
 * (device memory would shadow them: gm_ptr resolves before MMIO). */
static bool sane_place(const struct ivshmem *d, uint64_t addr, uint64_t len)
{
	if (!addr || addr >= (1ULL << 48) || len > (1ULL << 48) - addr)
		return false;
	if (addr < MEM_4G && addr + len > 0xFEC00000ULL)
		return false;
	for (int i = 0; i < d->vm->mem.nr_regions; i++) {
		const struct mem_region *r = &d->vm->mem.region[i];
		if (addr < r->gpa + r->size && r->gpa < addr + len)
			return false;
	}
	return true;
}

static void shm_mapping_changed(struct ivshmem *d)
{
	const struct engine_ops *e = d->vm->engine;
	if (e && e->device_mem_changed) {
		int r = e->device_mem_changed(d->vm, (unsigned)d->mem_index);
		if (r)
			kite_warn("%s: the engine cannot map the shared memory: %s", d->name, strerror(-r));
	}
}

static void map_bar_locked(struct ivshmem *d, unsigned bar, uint64_t addr, bool enabled)
{
	uint64_t len = bar_size(d, bar);
	if (d->mapped[bar] && (!enabled || addr != d->mapped_at[bar])) {
		if (bar == BAR_SHM) {
			gm_map_device_mem(&d->vm->mem, (unsigned)d->mem_index, 0, false);
			shm_mapping_changed(d);
		} else {
			bus_unregister(&d->vm->mmio, d->mapped_at[bar], d);
		}
		d->mapped[bar] = false;
	}
	if (!enabled || d->mapped[bar])
		return;
	if (!sane_place(d, addr, len)) {
		kite_debug("%s: BAR %u at 0x%llx not mapped", d->name, bar, (unsigned long long)addr);
		return;
	}
	if (bar == BAR_SHM) {
		gm_map_device_mem(&d->vm->mem, (unsigned)d->mem_index, addr, true);
		shm_mapping_changed(d);
	} else {
		int r = bus_register(&d->vm->mmio, addr, len, bar == BAR_REGS ? regs_read : msix_bar_read,
				     bar == BAR_REGS ? regs_write : msix_bar_write, d, d->name);
		if (r) {
			kite_debug("%s: BAR %u at 0x%llx not mapped: %s", d->name, bar,
				   (unsigned long long)addr, strerror(-r));
			return;
		}
	}
	d->mapped[bar] = true;
	d->mapped_at[bar] = addr;
}

static void hook_bar_update(struct pci_device *dev, unsigned bar, uint64_t addr, bool enabled)
{
	struct ivshmem *d = dev->opaque;
	if (bar == BAR_REGS || bar == BAR_SHM || (bar == BAR_MSIX && d->doorbell))
		map_bar_locked(d, bar, addr, enabled);
}

static void hook_config_write(struct pci_device *dev, unsigned off, unsigned size, uint32_t value)
{
	struct ivshmem *d = dev->opaque;
	(void)value;
	if (d->doorbell)
		msix_config_write(&d->msix, dev, off, size);
	pthread_mutex_lock(&d->lock);
	update_intx_locked(d);
	pthread_mutex_unlock(&d->lock);
}

static const struct pci_device_hooks ivshmem_hooks = {
	.bar_update = hook_bar_update,
	.config_write = hook_config_write,
};

/* As firmware would: every BAR at its place, memory decode and bus
 * mastering on. */
static void program_bars_locked(struct ivshmem *d)
{
	uint8_t *c = d->pdev.config;
	for (unsigned bar = 0; bar < 3; bar++) {
		if (!d->bar_init[bar])
			continue;
		if (bar == BAR_SHM) {
			pci_set_long(c, PCI_BAR0 + 4 * bar, (uint32_t)d->bar_init[bar] | 0x4 | PCI_BAR_PREFETCH);
			pci_set_long(c, PCI_BAR0 + 4 * (bar + 1), (uint32_t)(d->bar_init[bar] >> 32));
		} else {
			pci_set_long(c, PCI_BAR0 + 4 * bar, (uint32_t)d->bar_init[bar]);
		}
		map_bar_locked(d, bar, d->bar_init[bar], true);
	}
	pci_set_word(c, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

/* ---- device ops ---- */

static void ivshmem_reset(void *opaque)
{
	struct ivshmem *d = opaque;
	pthread_mutex_lock(&d->lock);
	d->intr_mask = d->intr_status = 0;
	update_intx_locked(d);
	pthread_mutex_unlock(&d->lock);
	if (d->doorbell) {
		msix_reset(&d->msix, NULL);
		pci_set_word(d->pdev.config, MSIX_CAP_AT + PCI_MSIX_FLAGS, (uint16_t)(d->vectors - 1));
	}
	pthread_mutex_lock(&d->vm->pci->lock);
	program_bars_locked(d);
	pthread_mutex_unlock(&d->vm->pci->lock);
}

/* State: the two registers, the config space (BAR addresses, command) and
 * MSI-X. The memory lives in the shared file and the server's peers are the
 * server's: a restore reconnects nothing (as QEMU: interrupts regress to
 * "not set up" after migration). */
#define IVSHMEM_STATE_MAGIC 0x4956534dU /* "IVSM" */
struct ivshmem_state {
	uint32_t magic, version;
	uint32_t intr_mask, intr_status;
	uint64_t size;
	uint8_t config[PCI_CONFIG_SIZE];
};

static size_t ivshmem_save(void *opaque, void *buf, size_t len)
{
	struct ivshmem *d = opaque;
	size_t mlen = d->doorbell ? msix_save(&d->msix, NULL, 0) : 0;
	size_t need = sizeof(struct ivshmem_state) + mlen;
	if (len < need)
		return need;
	struct ivshmem_state st = { IVSHMEM_STATE_MAGIC, 1, 0, 0, d->size, { 0 } };
	pthread_mutex_lock(&d->lock);
	st.intr_mask = d->intr_mask;
	st.intr_status = d->intr_status;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&d->vm->pci->lock);
	memcpy(st.config, d->pdev.config, sizeof(st.config));
	pthread_mutex_unlock(&d->vm->pci->lock);
	memcpy(buf, &st, sizeof(st));
	if (mlen)
		msix_save(&d->msix, (uint8_t *)buf + sizeof(st), mlen);
	return need;
}

static int ivshmem_restore(void *opaque, const void *buf, size_t len)
{
	struct ivshmem *d = opaque;
	struct ivshmem_state st;
	if (len < sizeof(st))
		return -EINVAL;
	memcpy(&st, buf, sizeof(st));
	if (st.magic != IVSHMEM_STATE_MAGIC || st.version != 1 || st.size != d->size)
		return -EINVAL;
	if (d->doorbell && msix_restore(&d->msix, (const uint8_t *)buf + sizeof(st), len - sizeof(st)))
		return -EINVAL;
	if (!d->doorbell && len != sizeof(st))
		return -EINVAL;
	pthread_mutex_lock(&d->vm->pci->lock);
	/* only what the guest may write comes from the blob */
	for (unsigned i = 0; i < PCI_CONFIG_SIZE; i++)
		d->pdev.config[i] = (uint8_t)((d->pdev.config[i] & ~d->pdev.wmask[i]) |
					      (st.config[i] & d->pdev.wmask[i]));
	bool mem_on = pci_get_word(d->pdev.config, PCI_COMMAND) & PCI_COMMAND_MEMORY;
	for (unsigned bar = 0; bar < 3; bar++)
		if (d->bar_init[bar])
			map_bar_locked(d, bar, pci_device_bar_address(&d->pdev, bar), mem_on);
	pthread_mutex_unlock(&d->vm->pci->lock);
	pthread_mutex_lock(&d->lock);
	d->intr_mask = st.intr_mask;
	d->intr_status = st.intr_status;
	update_intx_locked(d);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static void ivshmem_destroy(void *opaque)
{
	struct ivshmem *d = opaque;
	if (d->vm->pci)
		pci_bus_remove(d->vm->pci, &d->pdev);
	for (unsigned bar = 0; bar < 2; bar++)
		if (d->mapped[bar])
			bus_unregister(&d->vm->mmio, d->mapped_at[bar], d);
	if (d->mem_index >= 0)
		gm_map_device_mem(&d->vm->mem, (unsigned)d->mem_index, 0, false);
	for (unsigned i = 0; i < d->nr_own; i++)
		close(d->own[i].fd); /* the event loop is stopped by now */
	while (d->nr_peers)
		drop_peer_locked(d, d->peers[0].id);
	free(d->peers);
	if (d->server_fd >= 0)
		close(d->server_fd);
	if (d->shm)
		munmap(d->shm, d->size);
	if (d->shm_fd >= 0)
		close(d->shm_fd);
	if (d->doorbell)
		msix_fini(&d->msix);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static const struct device_ops ivshmem_device_ops = {
	.name = "ivshmem",
	.reset = ivshmem_reset,
	.save = ivshmem_save,
	.restore = ivshmem_restore,
	.destroy = ivshmem_destroy,
};

/* ---- creation ---- */

static int open_plain(struct ivshmem *d, const struct shm_config *cfg)
{
	int fd = open(cfg->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = -errno;
		kite_err("--shm: cannot open '%s': %s", cfg->path, strerror(-e));
		return e;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		kite_err("--shm: '%s' is not a regular file", cfg->path);
		close(fd);
		return -EINVAL;
	}
	uint64_t size = cfg->size ? cfg->size : (uint64_t)st.st_size;
	if (size < IVSHMEM_MIN_SIZE || size > IVSHMEM_MAX_SIZE || (size & (size - 1))) {
		kite_err("--shm: '%s' has %llu bytes: give size= (a power of two from 4K to 256M) or "
			 "a file of such a size", cfg->path, (unsigned long long)st.st_size);
		close(fd);
		return -EINVAL;
	}
	if (st.st_size == 0 && cfg->size) {
		if (ftruncate(fd, (off_t)cfg->size) < 0) {
			int e = -errno;
			kite_err("--shm: cannot size '%s' to %llu bytes: %s", cfg->path,
				 (unsigned long long)cfg->size, strerror(-e));
			close(fd);
			return e;
		}
	} else if ((uint64_t)st.st_size != size) {
		kite_err("--shm: '%s' has %llu bytes, not the size=%llu asked for", cfg->path,
			 (unsigned long long)st.st_size, (unsigned long long)size);
		close(fd);
		return -EINVAL;
	}
	d->shm_fd = fd;
	d->size = size;
	return 0;
}

int ivshmem_create(struct vm *vm, const struct shm_config *cfg, unsigned slot,
		   struct pci_mmio_window *win)
{
	if (!vm->pci || slot == 0 || slot >= PCI_SLOTS)
		return -EINVAL;
	struct ivshmem *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->vm = vm;
	d->shm_fd = d->server_fd = -1;
	d->mem_index = -1;
	d->doorbell = cfg->server[0] != 0;
	d->vectors = d->doorbell ? cfg->vectors : 0;
	d->gsi = virtio_pci_intx_gsi(slot);
	snprintf(d->name, sizeof(d->name), "ivshmem (pci 00:%02x.0)", slot);
	pthread_mutex_init(&d->lock, NULL);
	int ret;
	if (d->doorbell) {
		ret = server_handshake(d, cfg->server, &d->shm_fd);
		if (!ret) {
			struct stat st;
			if (fstat(d->shm_fd, &st) < 0)
				ret = -errno;
			d->size = ret ? 0 : (uint64_t)st.st_size;
			if (!ret && (d->size < IVSHMEM_MIN_SIZE || d->size > IVSHMEM_MAX_SIZE ||
				     (d->size & (d->size - 1)))) {
				kite_err("--shm server=%s: the server's memory has %llu bytes; kite needs a "
					 "power of two from 4K to 256M", cfg->server,
					 (unsigned long long)d->size);
				ret = -EINVAL;
			}
		}
	} else {
		ret = open_plain(d, cfg);
	}
	if (!ret) {
		d->shm = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED, d->shm_fd, 0);
		if (d->shm == MAP_FAILED) {
			d->shm = NULL;
			ret = -errno;
			kite_err("%s: cannot map %llu bytes of shared memory: %s", d->name,
				 (unsigned long long)d->size, strerror(-ret));
		}
	}
	if (!ret && (d->mem_index = gm_add_device_mem(&vm->mem, d->shm, d->size)) < 0) {
		ret = d->mem_index;
		kite_err("%s: too many device memory regions", d->name);
	}
	struct pci_device *p = &d->pdev;
	if (!ret) {
		p->devfn = PCI_DEVFN(slot, 0);
		p->hooks = &ivshmem_hooks;
		p->opaque = d;
		pci_device_init(p, d->name, IVSHMEM_VENDOR_ID, IVSHMEM_DEVICE_ID, 0x050000, 1, false);
		pci_set_word(p->config, PCI_SUBSYSTEM_VENDOR_ID, 0x1af4);
		pci_set_word(p->config, PCI_SUBSYSTEM_ID, 0x1100);
		pci_set_byte(p->config, PCI_INTERRUPT_PIN, 1);
		pci_set_byte(p->config, PCI_INTERRUPT_LINE, (uint8_t)d->gsi);
		ret = pci_device_set_bar(p, BAR_REGS, PCI_BAR_MEM32, IVSHMEM_REG_SIZE, 0);
		if (!ret)
			ret = pci_device_set_bar(p, BAR_SHM, PCI_BAR_MEM64, d->size, PCI_BAR_PREFETCH);
		if (!ret && d->doorbell) {
			ret = pci_device_set_bar(p, BAR_MSIX, PCI_BAR_MEM32, MSIX_BAR_SIZE, 0);
			pci_set_word(p->config, PCI_STATUS, PCI_STATUS_CAP_LIST);
			pci_set_byte(p->config, PCI_CAPABILITY_LIST, MSIX_CAP_AT);
			if (!ret)
				ret = msix_init(&d->msix, vm, p, MSIX_CAP_AT, d->vectors, BAR_MSIX, 0,
						MSIX_PBA_OFF);
		}
		d->bar_init[BAR_REGS] = pci_mmio_alloc(win, IVSHMEM_REG_SIZE);
		if (d->doorbell)
			d->bar_init[BAR_MSIX] = pci_mmio_alloc(win, MSIX_BAR_SIZE);
		d->bar_init[BAR_SHM] = pci_mmio_alloc(win, d->size);
		if (!ret && (!d->bar_init[BAR_REGS] || !d->bar_init[BAR_SHM] ||
			     (d->doorbell && !d->bar_init[BAR_MSIX]))) {
			kite_err("%s: no room for its BARs in the PCI window", d->name);
			ret = -ENOSPC;
		}
	}
	if (!ret) {
		pthread_mutex_lock(&vm->pci->lock);
		program_bars_locked(d);
		pthread_mutex_unlock(&vm->pci->lock);
		ret = pci_bus_add(vm->pci, p);
	}
	if (!ret && d->doorbell)
		ret = event_loop_add(vm->loop, d->server_fd, EPOLLIN, server_event, d);
	if (!ret)
		ret = vm_add_device(vm, &ivshmem_device_ops, d);
	if (ret) {
		kite_debug("%s: not created: %s", d->name, strerror(-ret));
		if (d->server_fd >= 0)
			event_loop_del(vm->loop, d->server_fd);
		ivshmem_destroy(d);
		return ret;
	}
	kite_info("%s: %llu KiB of shared memory from %s%s, peer ID %d", d->name,
		  (unsigned long long)(d->size >> 10), d->doorbell ? "server " : "",
		  d->doorbell ? cfg->server : cfg->path, d->position);
	return 0;
}
