/* The worker-pool engine: requests go on a FIFO, a few threads run them
 * with blocking preadv/pwritev/fdatasync and call the completion. Several
 * requests are in flight at once (one per worker). The pool is also used
 * by the io_uring engine for buffered writes (see block_uring.c). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "backends/block/block.h"

#define BLK_POOL_THREADS 4

struct blk_pool {
	struct blk_backend *be;
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct blk_io *head, *tail;
	bool stopping;
	int nr_threads;
	pthread_t threads[BLK_POOL_THREADS];
};

static void *worker(void *arg)
{
	struct blk_pool *p = arg;
	struct blk_backend *be = p->be;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->work, &p->lock);
		struct blk_io *io = p->head;
		if (!io)
			break; /* stopping and drained */
		p->head = io->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		io->done(io, blk_execute(be, io));
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct blk_pool *blk_pool_create(struct blk_backend *be, int threads, int *err)
{
	struct blk_pool *p = calloc(1, sizeof(*p));
	if (!p) {
		*err = -ENOMEM;
		return NULL;
	}
	p->be = be;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	if (threads > BLK_POOL_THREADS)
		threads = BLK_POOL_THREADS;
	for (int i = 0; i < threads; i++) {
		int e = pthread_create(&p->threads[i], NULL, worker, p);
		if (e) {
			blk_pool_destroy(p);
			*err = -e;
			return NULL;
		}
		p->nr_threads++;
	}
	return p;
}

void blk_pool_submit(struct blk_pool *p, struct blk_io *io)
{
	io->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = io;
	else
		p->head = io;
	p->tail = io;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

/* Runs what is queued, then joins the workers. */
void blk_pool_destroy(struct blk_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nr_threads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static int pool_start(struct blk_backend *be)
{
	int err = 0;
	be->priv = blk_pool_create(be, BLK_POOL_THREADS, &err);
	return be->priv ? 0 : err;
}

static void pool_submit(struct blk_backend *be, struct blk_io *io)
{
	blk_pool_submit(be->priv, io);
}

static void pool_stop(struct blk_backend *be)
{
	blk_pool_destroy(be->priv);
	be->priv = NULL;
}

const struct blk_engine_ops blk_engine_threads_ops = {
	.name = "threads",
	.start = pool_start,
	.submit = pool_submit,
	.stop = pool_stop,
};
