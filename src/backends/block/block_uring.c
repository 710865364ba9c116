/* The io_uring engine: requests become SQEs (queued by blk_submit, handed to
 * the kernel in one io_uring_enter by blk_kick). Completions are reaped in
 * two places: right after submission by the submitting thread (io_uring
 * finishes page-cache hits inside io_uring_enter, and handing those to
 * another thread costs two wake-ups, more than the I/O itself), and by a
 * completion thread for everything else. The completion thread sleeps on
 * a condition variable while nothing is outstanding, so inline completions
 * never wake it, and in the kernel while something is.
 * sq_lock guards the submission half and the counters, cq_lock the
 * consumption of CQEs; the two halves are independent in io_uring.
 *
 * Buffered writes bypass the ring: ext4 cannot do them without blocking,
 * so io_uring punts them to its io-wq, which runs buffered writes to one
 * file on a single worker. A small thread pool runs them 2-3x faster at
 * depth (bench/RESULTS.md); reads, flushes and fallocate stay on the ring. */
#include <errno.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "backends/block/block.h"

#define URING_DEPTH 256
#define URING_WRITE_THREADS 4

struct uring {
	struct io_uring ring;
	pthread_mutex_t sq_lock;
	pthread_mutex_t cq_lock;
	pthread_cond_t outstanding;  /* in_flight became non-zero, or stop */
	unsigned queued;          /* SQEs prepared, not yet submitted */
	unsigned in_flight;       /* prepared SQEs whose CQE is not yet consumed */
	bool stop;
	pthread_t reaper;
	struct blk_pool *writes;
	int stop_marker;          /* its address tags the final NOP */
};

static void complete(struct blk_backend *be, struct blk_io *io, int res)
{
	switch (io->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		/* A short or interrupted transfer: finish it the simple way;
		 * reads and writes of the same range are idempotent. */
		if (res == -EAGAIN || res == -EINTR || (res >= 0 && (uint64_t)res < io->len))
			res = blk_execute(be, io);
		else if (res > 0)
			res = 0;
		break;
	case BLK_OP_DISCARD:
		if (res == -EOPNOTSUPP)
			res = 0;
		break;
	case BLK_OP_WRITE_ZEROES:
		if (res == -EOPNOTSUPP || res == -EINVAL)
			res = blk_execute(be, io); /* falls back to writing zeros */
		break;
	case BLK_OP_FLUSH:
		break;
	}
	io->done(io, res < 0 ? res : 0);
}

/* Consume every CQE already posted. `wait`: block on cq_lock, or give up
 * when another thread is reaping (it will see these CQEs). */
static void reap_ready(struct blk_backend *be, bool wait)
{
	struct uring *u = be->priv;
	if (wait)
		pthread_mutex_lock(&u->cq_lock);
	else if (pthread_mutex_trylock(&u->cq_lock))
		return;
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		void *data = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		if (data != &u->stop_marker)
			complete(be, data, res);
		pthread_mutex_lock(&u->sq_lock);
		u->in_flight--;
		pthread_mutex_unlock(&u->sq_lock);
	}
	pthread_mutex_unlock(&u->cq_lock);
}

static void *reaper(void *arg)
{
	struct blk_backend *be = arg;
	struct uring *u = be->priv;
	for (;;) {
		pthread_mutex_lock(&u->sq_lock);
		while (!u->in_flight && !u->stop)
			pthread_cond_wait(&u->outstanding, &u->sq_lock);
		bool done = u->stop && !u->in_flight;
		pthread_mutex_unlock(&u->sq_lock);
		if (done)
			break;
		/* Something is outstanding: sleep in the kernel until the CQ
		 * holds a CQE, then consume under cq_lock (the submitter may
		 * have taken it meanwhile; then this loop just goes round).
		 * The raw enter, not io_uring_wait_cqe: that one reads the CQ
		 * head without the lock, racing with the other consumer. */
		int ret = io_uring_enter((unsigned)u->ring.ring_fd, 0, 1,
					 IORING_ENTER_GETEVENTS, NULL);
		if (ret < 0 && ret != -EINTR && errno != EINTR)
			break;
		reap_ready(be, true);
	}
	return NULL;
}

static int uring_start(struct blk_backend *be)
{
	struct uring *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	int ret = io_uring_queue_init(URING_DEPTH, &u->ring, 0);
	if (ret < 0) {
		free(u);
		return ret;
	}
	pthread_mutex_init(&u->sq_lock, NULL);
	pthread_mutex_init(&u->cq_lock, NULL);
	pthread_cond_init(&u->outstanding, NULL);
	be->priv = u;
	u->writes = blk_pool_create(be, URING_WRITE_THREADS, &ret);
	ret = u->writes ? pthread_create(&u->reaper, NULL, reaper, be) : -ret;
	if (ret) {
		blk_pool_destroy(u->writes);
		io_uring_queue_exit(&u->ring);
		pthread_cond_destroy(&u->outstanding);
		pthread_mutex_destroy(&u->sq_lock);
		pthread_mutex_destroy(&u->cq_lock);
		free(u);
		be->priv = NULL;
		return -ret;
	}
	return 0;
}

/* Caller holds sq_lock. Returns NULL only when the SQ is full even after
 * handing the queued entries to the kernel. */
static struct io_uring_sqe *get_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe && u->queued) {
		int n = io_uring_submit(&u->ring);
		if (n > 0)
			u->queued -= (unsigned)n < u->queued ? (unsigned)n : u->queued;
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static void uring_submit(struct blk_backend *be, struct blk_io *io)
{
	struct uring *u = be->priv;
	if (io->op == BLK_OP_WRITE) {
		blk_pool_submit(u->writes, io);
		return;
	}
	pthread_mutex_lock(&u->sq_lock);
	struct io_uring_sqe *sqe = get_sqe(u);
	if (!sqe) {
		pthread_mutex_unlock(&u->sq_lock);
		io->done(io, blk_execute(be, io)); /* ring saturated: do it here */
		return;
	}
	switch (io->op) {
	case BLK_OP_READ:
		io_uring_prep_readv(sqe, be->fd, io->iov, (unsigned)io->iovcnt, io->offset);
		break;
	case BLK_OP_WRITE:
		io_uring_prep_writev(sqe, be->fd, io->iov, (unsigned)io->iovcnt, io->offset);
		break;
	case BLK_OP_FLUSH:
		io_uring_prep_fsync(sqe, be->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLK_OP_DISCARD:
		io_uring_prep_fallocate(sqe, be->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)io->offset, (off_t)io->len);
		break;
	case BLK_OP_WRITE_ZEROES:
		io_uring_prep_fallocate(sqe, be->fd,
					(io->unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) |
						FALLOC_FL_KEEP_SIZE,
					(off_t)io->offset, (off_t)io->len);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
	u->queued++;
	u->in_flight++;
	pthread_mutex_unlock(&u->sq_lock);
}

static void submit_queued(struct uring *u)
{
	pthread_mutex_lock(&u->sq_lock);
	while (u->queued) {
		int n = io_uring_submit(&u->ring);
		if (n == -EINTR || n == -EAGAIN || n == -EBUSY)
			continue;
		if (n <= 0)
			break;
		u->queued -= (unsigned)n < u->queued ? (unsigned)n : u->queued;
	}
	pthread_mutex_unlock(&u->sq_lock);
}

static void uring_kick(struct blk_backend *be)
{
	struct uring *u = be->priv;
	submit_queued(u);
	reap_ready(be, false);
	/* What did not complete inline is the completion thread's job. */
	pthread_mutex_lock(&u->sq_lock);
	if (u->in_flight)
		pthread_cond_signal(&u->outstanding);
	pthread_mutex_unlock(&u->sq_lock);
}

static void uring_stop(struct blk_backend *be)
{
	struct uring *u = be->priv;
	if (!u)
		return;
	blk_pool_destroy(u->writes); /* finishes queued writes */
	/* A final NOP guarantees one more CQE, so a reaper asleep in the
	 * kernel wakes up; it then reaps until nothing is in flight. */
	pthread_mutex_lock(&u->sq_lock);
	struct io_uring_sqe *sqe = get_sqe(u);
	while (!sqe) {
		pthread_mutex_unlock(&u->sq_lock);
		usleep(1000);
		pthread_mutex_lock(&u->sq_lock);
		sqe = get_sqe(u);
	}
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data(sqe, &u->stop_marker);
	u->queued++;
	u->in_flight++;
	u->stop = true;
	pthread_cond_signal(&u->outstanding);
	pthread_mutex_unlock(&u->sq_lock);
	submit_queued(u);
	pthread_join(u->reaper, NULL);
	io_uring_queue_exit(&u->ring);
	pthread_cond_destroy(&u->outstanding);
	pthread_mutex_destroy(&u->sq_lock);
	pthread_mutex_destroy(&u->cq_lock);
	free(u);
	be->priv = NULL;
}

const struct blk_engine_ops blk_engine_uring_ops = {
	.name = "uring",
	.start = uring_start,
	.submit = uring_submit,
	.kick = uring_kick,
	.stop = uring_stop,
};
