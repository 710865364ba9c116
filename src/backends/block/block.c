#include "backends/block/block.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

const char *blk_engine_name(enum blk_engine e)
{
	switch (e) {
	case BLK_ENGINE_SYNC: return "sync";
	case BLK_ENGINE_THREADS: return "threads";
	case BLK_ENGINE_URING: return "uring";
	}
	return "?";
}

int blk_engine_parse(const char *text, enum blk_engine *out)
{
	static const enum blk_engine all[] = { BLK_ENGINE_SYNC, BLK_ENGINE_THREADS, BLK_ENGINE_URING };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (!strcmp(text, blk_engine_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

static const struct blk_engine_ops *engine_ops(enum blk_engine e)
{
	switch (e) {
	case BLK_ENGINE_SYNC: return &blk_engine_sync_ops;
	case BLK_ENGINE_THREADS: return &blk_engine_threads_ops;
	case BLK_ENGINE_URING: return &blk_engine_uring_ops;
	}
	return NULL;
}

int blk_open(struct blk_backend **out, const char *path, bool readonly, enum blk_engine engine)
{
	const struct blk_engine_ops *ops = engine_ops(engine);
	if (!ops) {
		kite_err("disk '%s': unknown I/O engine", path);
		return -EINVAL;
	}
	int fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		kite_err("cannot open disk '%s'%s: %s", path,
			 (err == EACCES || err == EROFS) && !readonly ? " for writing" : "",
			 strerror(err));
		return -err;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int err = errno;
		kite_err("cannot stat disk '%s': %s", path, strerror(err));
		close(fd);
		return -err;
	}
	uint64_t size;
	bool blockdev = S_ISBLK(st.st_mode);
	if (blockdev) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			int err = errno;
			kite_err("cannot get the size of block device '%s': %s", path, strerror(err));
			close(fd);
			return -err;
		}
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		kite_err("disk '%s' is not a regular file or block device", path);
		close(fd);
		return -EINVAL;
	}
	if (size % 512)
		kite_warn("disk '%s': size %llu is not a multiple of 512; the last %llu bytes are not visible",
			  path, (unsigned long long)size, (unsigned long long)(size % 512));

	struct blk_backend *be = calloc(1, sizeof(*be));
	char *p = strdup(path);
	if (!be || !p) {
		free(be);
		free(p);
		close(fd);
		return -ENOMEM;
	}
	be->ops = ops;
	be->path = p;
	be->fd = fd;
	be->size = size;
	be->readonly = readonly;
	be->is_blockdev = blockdev;
	int ret = ops->start ? ops->start(be) : 0;
	if (ret) {
		kite_err("disk '%s': cannot start the %s I/O engine: %s", path, ops->name,
			 strerror(-ret));
		close(fd);
		free(p);
		free(be);
		return ret;
	}
	*out = be;
	return 0;
}

void blk_close(struct blk_backend *be)
{
	if (!be)
		return;
	if (be->ops->stop)
		be->ops->stop(be);
	close(be->fd);
	free(be->path);
	free(be);
}

/* Checks every engine applies before doing anything. */
static int blk_check(const struct blk_backend *be, const struct blk_io *io)
{
	if (io->op != BLK_OP_READ && io->op != BLK_OP_FLUSH && be->readonly)
		return -EROFS;
	if (io->op == BLK_OP_FLUSH)
		return 0;
	if (io->offset > be->size || io->len > be->size - io->offset)
		return -ERANGE;
	return 0;
}

void blk_submit(struct blk_backend *be, struct blk_io *io)
{
	int err = blk_check(be, io);
	if (err) {
		io->done(io, err);
		return;
	}
	be->ops->submit(be, io);
}

void blk_kick(struct blk_backend *be)
{
	if (be->ops->kick)
		be->ops->kick(be);
}

/* preadv/pwritev until done: a regular file may return short counts. */
static int rw_full(struct blk_backend *be, struct blk_io *io)
{
	struct iovec local[64], *heap = NULL;
	struct iovec *iov = io->iov;
	int cnt = io->iovcnt;
	uint64_t off = io->offset, left = io->len;
	bool copied = false;
	while (left) {
		ssize_t n = io->op == BLK_OP_READ ? preadv(be->fd, iov, cnt, (off_t)off)
						   : pwritev(be->fd, iov, cnt, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			free(heap);
			return -errno;
		}
		if (n == 0) {
			free(heap);
			return -EIO; /* the image shrank under us */
		}
		left -= (uint64_t)n;
		off += (uint64_t)n;
		if (!left)
			break;
		/* Skip what was transferred. The caller's iov stays intact:
		 * an engine may retry a request from the start. */
		if (!copied) {
			struct iovec *dst = local;
			if (cnt > (int)(sizeof(local) / sizeof(local[0]))) {
				dst = heap = malloc((size_t)cnt * sizeof(*iov));
				if (!heap)
					return -ENOMEM;
			}
			memcpy(dst, iov, (size_t)cnt * sizeof(*iov));
			iov = dst;
			copied = true;
		}
		size_t skip = (size_t)n;
		while (cnt && skip >= iov->iov_len) {
			skip -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (uint8_t *)iov->iov_base + skip;
			iov->iov_len -= skip;
		}
	}
	free(heap);
	return 0;
}

static int write_zero_buffers(struct blk_backend *be, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];
	while (len) {
		size_t chunk = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		ssize_t n = pwrite(be->fd, zeros, chunk, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int blk_execute(struct blk_backend *be, struct blk_io *io)
{
	int err = blk_check(be, io);
	if (err)
		return err;
	switch (io->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		return rw_full(be, io);
	case BLK_OP_FLUSH:
		return fdatasync(be->fd) < 0 ? -errno : 0;
	case BLK_OP_DISCARD:
		if (!io->len)
			return 0;
		/* Discard is a hint: where the host cannot punch, do nothing. */
		if (fallocate(be->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)io->offset, (off_t)io->len) < 0 &&
		    errno != EOPNOTSUPP)
			return -errno;
		return 0;
	case BLK_OP_WRITE_ZEROES: {
		if (!io->len)
			return 0;
		int mode = (io->unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) |
			   FALLOC_FL_KEEP_SIZE;
		if (fallocate(be->fd, mode, (off_t)io->offset, (off_t)io->len) == 0)
			return 0;
		if (errno != EOPNOTSUPP && errno != EINVAL)
			return -errno;
		return write_zero_buffers(be, io->offset, io->len);
	}
	}
	return -EINVAL;
}

/* ---- the sync engine: inline in the submitter ---- */

static void sync_submit(struct blk_backend *be, struct blk_io *io)
{
	io->done(io, blk_execute(be, io));
}

const struct blk_engine_ops blk_engine_sync_ops = {
	.name = "sync",
	.submit = sync_submit,
};

/* ---- --disk option ---- */

int disk_config_parse(const char *text, struct disk_config *out)
{
	memset(out, 0, sizeof(*out));
	out->engine = BLK_ENGINE_DEFAULT;
	if (!text || !*text || *text == ',') {
		kite_err("--disk '%s': missing file name", text ? text : "");
		return -EINVAL;
	}
	const char *comma = strchr(text, ',');
	size_t plen = comma ? (size_t)(comma - text) : strlen(text);
	if (plen >= sizeof(out->path)) {
		kite_err("--disk '%s': file name too long", text);
		return -EINVAL;
	}
	memcpy(out->path, text, plen);
	bool have_id = false, have_ro = false, have_io = false;

	while (comma) {
		const char *opt = comma + 1;
		comma = strchr(opt, ',');
		size_t olen = comma ? (size_t)(comma - opt) : strlen(opt);
		if (olen == 8 && !strncmp(opt, "readonly", 8) && !have_ro) {
			out->readonly = have_ro = true;
		} else if (olen > 3 && !strncmp(opt, "id=", 3) && !have_id) {
			if (olen - 3 > DISK_ID_MAX) {
				kite_err("--disk '%s': id is longer than %d bytes", text, DISK_ID_MAX);
				return -EINVAL;
			}
			memcpy(out->id, opt + 3, olen - 3);
			have_id = true;
		} else if (olen > 3 && !strncmp(opt, "io=", 3) && !have_io) {
			char name[16] = "";
			if (olen - 3 < sizeof(name))
				memcpy(name, opt + 3, olen - 3);
			if (blk_engine_parse(name, &out->engine)) {
				kite_err("--disk '%s': io= takes sync, threads or uring", text);
				return -EINVAL;
			}
			have_io = true;
		} else {
			kite_err("--disk '%s': unknown or repeated option '%.*s' (expected readonly, id=NAME, io=ENGINE)",
				 text, (int)olen, opt);
			return -EINVAL;
		}
	}
	if (!have_id) {
		/* The serial defaults to the image's base name, which the guest
		 * sees in /dev/disk/by-id. */
		const char *base = strrchr(out->path, '/');
		base = base ? base + 1 : out->path;
		if (!*base) {
			kite_err("--disk '%s': not a file name", text);
			return -EINVAL;
		}
		strncpy(out->id, base, DISK_ID_MAX);
		out->id[DISK_ID_MAX] = 0;
	}
	return 0;
}
