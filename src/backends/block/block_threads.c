/* The worker-pool engine: requests go on a FIFO, a few threads run them
 * with blocking preadv/pwritev/fdatasync and call the completion. Several
 * requests are in flight at once (one per worker). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "backends/block/block.h"

#define BLK_POOL_THREADS 4

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct blk_io *head, *tail;
	bool stopping;
	int nr_threads;
	pthread_t threads[BLK_POOL_THREADS];
};

static void *worker(void *arg)
{
	struct blk_backend *be = arg;
	struct pool *p = be->priv;
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

static void pool_stop(struct blk_backend *be);

static int pool_start(struct blk_backend *be)
{
	struct pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	be->priv = p;
	for (int i = 0; i < BLK_POOL_THREADS; i++) {
		int err = pthread_create(&p->threads[i], NULL, worker, be);
		if (err) {
			pool_stop(be);
			return -err;
		}
		p->nr_threads++;
	}
	return 0;
}

static void pool_submit(struct blk_backend *be, struct blk_io *io)
{
	struct pool *p = be->priv;
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

static void pool_stop(struct blk_backend *be)
{
	struct pool *p = be->priv;
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
	be->priv = NULL;
}

const struct blk_engine_ops blk_engine_threads_ops = {
	.name = "threads",
	.start = pool_start,
	.submit = pool_submit,
	.stop = pool_stop,
};
