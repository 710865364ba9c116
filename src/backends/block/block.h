/* Block backends: the host side of a disk, knowing nothing of virtio.
 *
 * A backend is a raw image (regular file or block device) plus an engine
 * that executes requests, chosen by configuration:
 *   sync    - the request runs inline in blk_submit (tests, fuzzing, tools);
 *   threads - a small pool of worker threads doing preadv/pwritev;
 *   uring   - io_uring (liburing) with one completion thread.
 * Every engine calls io->done(io, res) exactly once per submitted request,
 * res = 0 or a negative errno, possibly on another thread (and, for sync,
 * before blk_submit returns). */
#ifndef KITE_BACKENDS_BLOCK_BLOCK_H
#define KITE_BACKENDS_BLOCK_BLOCK_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

enum blk_engine { BLK_ENGINE_SYNC, BLK_ENGINE_THREADS, BLK_ENGINE_URING };
/* The default for real disks, picked by bench/blk_model (see RESULTS.md). */
#define BLK_ENGINE_DEFAULT BLK_ENGINE_URING

enum blk_op {
	BLK_OP_READ,
	BLK_OP_WRITE,
	BLK_OP_FLUSH,        /* fdatasync */
	BLK_OP_DISCARD,      /* punch a hole; a no-op where unsupported */
	BLK_OP_WRITE_ZEROES, /* zero the range (unmap: may punch a hole) */
};

struct blk_io {
	enum blk_op op;
	bool unmap;              /* WRITE_ZEROES may deallocate */
	uint64_t offset, len;    /* bytes; len is the iov total for READ/WRITE */
	struct iovec *iov;
	int iovcnt;
	void (*done)(struct blk_io *io, int res);
	void *opaque;
	struct blk_io *next;     /* engine-private queue link */
};

struct blk_backend;

struct blk_engine_ops {
	const char *name;
	int (*start)(struct blk_backend *be);
	void (*submit)(struct blk_backend *be, struct blk_io *io);
	void (*kick)(struct blk_backend *be);  /* submit what was queued */
	void (*stop)(struct blk_backend *be);  /* waits for in-flight requests */
};

struct blk_backend {
	const struct blk_engine_ops *ops;
	char *path;
	int fd;
	uint64_t size;           /* bytes */
	bool readonly;
	bool is_blockdev;
	void *priv;              /* engine state */
};

/* Open `path` (O_RDONLY when readonly) with the given engine. Errors are
 * reported once with the path: missing file, permission, not a regular file
 * or block device, engine start failure. Returns 0 or a negative errno. */
int blk_open(struct blk_backend **out, const char *path, bool readonly, enum blk_engine engine);
void blk_close(struct blk_backend *be);

/* Queue a request; the engine may hold it until blk_kick. Requests beyond
 * the image size or writes to a read-only image complete with an error. */
void blk_submit(struct blk_backend *be, struct blk_io *io);
void blk_kick(struct blk_backend *be);

/* Execute one request synchronously in the calling thread: 0 or -errno.
 * Short transfers are retried; EOF inside the image reads as an error. */
int blk_execute(struct blk_backend *be, struct blk_io *io);

/* The worker pool behind the threads engine, reusable by other engines:
 * requests run in FIFO order on up to 4 threads (block_threads.c). */
struct blk_pool;
struct blk_pool *blk_pool_create(struct blk_backend *be, int threads, int *err);
void blk_pool_submit(struct blk_pool *p, struct blk_io *io);
void blk_pool_destroy(struct blk_pool *p);

const char *blk_engine_name(enum blk_engine e);
int blk_engine_parse(const char *text, enum blk_engine *out);

extern const struct blk_engine_ops blk_engine_sync_ops;
extern const struct blk_engine_ops blk_engine_threads_ops;
extern const struct blk_engine_ops blk_engine_uring_ops;

/* `--disk PATH[,readonly][,id=NAME][,io=sync|threads|uring]` */
#define DISK_ID_MAX 20 /* virtio-blk serial: 20 bytes, NUL-terminated only if shorter */
struct disk_config {
	char path[PATH_MAX];
	bool readonly;
	char id[DISK_ID_MAX + 1]; /* id=NAME, or the file's base name (truncated) */
	enum blk_engine engine;
};

/* Parse the text of one --disk option. Returns 0, or -EINVAL after one
 * kite_err line naming the offending text. */
int disk_config_parse(const char *text, struct disk_config *out);

#endif
