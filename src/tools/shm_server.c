/* `kite shm-server`: an ivshmem server speaking the protocol of QEMU's
 * docs/specs/ivshmem-spec.rst, so kite and QEMU guests can be its peers.
 * Each message is an 8-byte little-endian signed number, some with one file
 * descriptor (SCM_RIGHTS). A new client gets: the version (0), its ID, -1
 * with the shared memory, then for every other peer its ID N times with the
 * eventfds that interrupt it, then its own ID N times with the eventfds it
 * is interrupted through; the other peers get the new one's ID N times with
 * its eventfds. A client leaving: its ID without an fd to the rest.
 * IDs: the lowest free one (the first client gets 0). */
#include "tools/shm_server.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/pci/ivshmem.h"
#include "util/log.h"
#include "util/size.h"

#define MAX_CLIENTS 64

struct client {
	int sock;                          /* -1: free slot */
	uint16_t id;
	int efd[IVSHMEM_MAX_VECTORS];
};

struct server {
	int listen_fd, shm_fd;
	unsigned vectors;
	struct client c[MAX_CLIENTS];
};

static const char usage[] =
	"usage: kite shm-server SOCKET [--size SIZE] [--vectors N] [--path FILE]\n"
	"\n"
	"Serve shared memory and doorbell eventfds to ivshmem peers (kite's\n"
	"--shm server=SOCKET, QEMU's ivshmem-doorbell) on the Unix socket SOCKET.\n"
	"\n"
	"  --size SIZE    the shared memory, a power of two from 4K to 256M (default 4M)\n"
	"  --vectors N    interrupt vectors per peer, 1..64 (default 1)\n"
	"  --path FILE    back the memory with FILE (default: anonymous memory)\n"
	"  -v             say when peers come and go\n"
	"Stops on SIGINT or SIGTERM.\n";

static int send_msg(int sock, int64_t value, int fd)
{
	uint8_t buf[8];
	uint64_t v = (uint64_t)value;
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(v >> (8 * i));
	char ctl[CMSG_SPACE(sizeof(int))];
	memset(ctl, 0, sizeof(ctl));
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		mh.msg_control = ctl;
		mh.msg_controllen = sizeof(ctl);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	/* a peer that does not read is dropped, never waited for */
	ssize_t n = sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n == (ssize_t)sizeof(buf) ? 0 : -1;
}

static void drop_client(struct server *s, struct client *c)
{
	uint16_t id = c->id;
	close(c->sock);
	c->sock = -1;
	for (unsigned v = 0; v < s->vectors; v++)
		close(c->efd[v]);
	kite_info("shm-server: peer %u left", id);
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (s->c[i].sock >= 0 && send_msg(s->c[i].sock, id, -1))
			drop_client(s, &s->c[i]);
}

static int lowest_free_id(const struct server *s)
{
	for (int id = 0; id < IVSHMEM_MAX_PEERS; id++) {
		bool used = false;
		for (int i = 0; i < MAX_CLIENTS && !used; i++)
			used = s->c[i].sock >= 0 && s->c[i].id == id;
		if (!used)
			return id;
	}
	return -1;
}

static void accept_client(struct server *s)
{
	int sock = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (sock < 0)
		return;
	struct client *c = NULL;
	for (int i = 0; i < MAX_CLIENTS && !c; i++)
		if (s->c[i].sock < 0)
			c = &s->c[i];
	int id = lowest_free_id(s);
	if (!c || id < 0) {
		kite_warn("shm-server: a peer was refused: %d peers already", MAX_CLIENTS);
		close(sock);
		return;
	}
	unsigned made = 0;
	for (; made < s->vectors; made++)
		if ((c->efd[made] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
			break;
	if (made < s->vectors) {
		kite_warn("shm-server: cannot create eventfds for a peer: %s", strerror(errno));
		while (made)
			close(c->efd[--made]);
		close(sock);
		return;
	}
	c->id = (uint16_t)id;
	c->sock = sock;
	bool ok = !send_msg(sock, 0, -1) && !send_msg(sock, id, -1) && !send_msg(sock, -1, s->shm_fd);
	/* the others to the new one, the new one to the others */
	for (int i = 0; i < MAX_CLIENTS && ok; i++) {
		struct client *o = &s->c[i];
		if (o == c || o->sock < 0)
			continue;
		for (unsigned v = 0; v < s->vectors && ok; v++)
			ok = !send_msg(sock, o->id, o->efd[v]);
	}
	for (unsigned v = 0; v < s->vectors && ok; v++)
		ok = !send_msg(sock, id, c->efd[v]);
	if (!ok) {
		drop_client(s, c);
		return;
	}
	kite_info("shm-server: peer %d joined", id);
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *o = &s->c[i];
		if (o == c || o->sock < 0)
			continue;
		bool sent = true;
		for (unsigned v = 0; v < s->vectors && sent; v++)
			sent = !send_msg(o->sock, id, c->efd[v]);
		if (!sent)
			drop_client(s, o);
	}
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int make_memory(const char *path, uint64_t size)
{
	int fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)
		      : memfd_create("kite-ivshmem", MFD_CLOEXEC);
	if (fd < 0) {
		kite_err("shm-server: cannot create the shared memory%s%s: %s", path ? " " : "",
			 path ? path : "", strerror(errno));
		return -1;
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		kite_err("shm-server: cannot size the shared memory to %llu bytes: %s",
			 (unsigned long long)size, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Bind path, replacing a stale socket nobody listens on. */
static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		kite_err("shm-server: socket path '%s' is too long", path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct stat st;
	if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			kite_err("shm-server: '%s' is served already", path);
			close(probe);
			close(fd);
			return -1;
		}
		if (probe >= 0)
			close(probe);
		unlink(path);
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		kite_err("shm-server: cannot listen on '%s': %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int shm_server_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "vectors", required_argument, NULL, 'n' },
		{ "path", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t size = 4ULL << 20;
	unsigned long vectors = 1;
	const char *path = NULL;
	int verbose = 0;
	opterr = 0;
	optind = 1;
	for (int c; (c = getopt_long(argc, argv, ":hv", opts, NULL)) != -1;) {
		char *end;
		switch (c) {
		case 'h': fputs(usage, stdout); return 0;
		case 'v': verbose++; break;
		case 'p': path = optarg; break;
		case 's':
			if (parse_size_mib_default(optarg, &size) || size < IVSHMEM_MIN_SIZE ||
			    size > IVSHMEM_MAX_SIZE || (size & (size - 1))) {
				kite_err("shm-server: bad --size '%s': a power of two from 4K to 256M", optarg);
				return 1;
			}
			break;
		case 'n':
			vectors = strtoul(optarg, &end, 10);
			if (!*optarg || *end || vectors < 1 || vectors > IVSHMEM_MAX_VECTORS) {
				kite_err("shm-server: bad --vectors '%s': 1..%d", optarg, IVSHMEM_MAX_VECTORS);
				return 1;
			}
			break;
		case ':':
			kite_err("shm-server: option '%s' needs a value", argv[optind - 1]);
			return 1;
		default:
			kite_err("shm-server: unknown option '%s' (see kite shm-server --help)",
				 argv[optind - 1]);
			return 1;
		}
	}
	if (optind + 1 != argc) {
		kite_err("shm-server: give one SOCKET path (see kite shm-server --help)");
		return 1;
	}
	log_set_level(verbose ? LOG_INFO : LOG_WARN);
	const char *sock_path = argv[optind];
	struct server s = { .vectors = (unsigned)vectors };
	for (int i = 0; i < MAX_CLIENTS; i++)
		s.c[i].sock = -1;
	if ((s.shm_fd = make_memory(path, size)) < 0)
		return 1;
	if ((s.listen_fd = listen_on(sock_path)) < 0)
		return 1;
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "kite shm-server: listening on %s, %llu KiB, %lu vector%s\n", sock_path,
		(unsigned long long)(size >> 10), vectors, vectors == 1 ? "" : "s");
	while (!stop) {
		struct pollfd pfd[MAX_CLIENTS + 1];
		struct client *who[MAX_CLIENTS + 1];
		nfds_t n = 0;
		pfd[n++] = (struct pollfd){ s.listen_fd, POLLIN, 0 };
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (s.c[i].sock >= 0) {
				who[n] = &s.c[i];
				pfd[n++] = (struct pollfd){ s.c[i].sock, POLLIN, 0 };
			}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		/* clients never speak: anything readable is a hang-up or junk */
		for (nfds_t i = 1; i < n; i++)
			if (pfd[i].revents && who[i]->sock == pfd[i].fd) {
				char junk[64];
				if (recv(pfd[i].fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
					drop_client(&s, who[i]);
			}
		if (pfd[0].revents & POLLIN)
			accept_client(&s);
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (s.c[i].sock >= 0) {
			close(s.c[i].sock);
			for (unsigned v = 0; v < s.vectors; v++)
				close(s.c[i].efd[v]);
		}
	close(s.listen_fd);
	unlink(sock_path);
	close(s.shm_fd);
	return 0;
}
