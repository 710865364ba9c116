/* One epoll thread per VM for backends and timers: file descriptors with
 * callbacks, and callbacks queued to run on the loop thread. Callbacks run
 * on the loop thread only, without any loop lock held, so they may add,
 * modify or remove watches (their own included). */
#ifndef KITE_UTIL_EVENT_LOOP_H
#define KITE_UTIL_EVENT_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct event_loop;

/* events: EPOLLIN/EPOLLOUT/EPOLLHUP/EPOLLERR as reported by epoll. */
typedef void (*event_fd_fn)(void *opaque, int fd, uint32_t events);
typedef void (*event_call_fn)(void *opaque);

/* Create the loop (no thread yet). 0 or a negative errno. */
int event_loop_create(struct event_loop **out);
/* Start the loop thread. Every signal is blocked on it. */
int event_loop_start(struct event_loop *el);
/* Stop and join the loop thread (no-op when not started). Pending queued
 * calls are run before it returns, so nothing queued is lost. */
void event_loop_stop(struct event_loop *el);
/* Stop, then free every watch and the loop itself. NULL is fine. */
void event_loop_destroy(struct event_loop *el);

/* Watch fd for events (level-triggered). -EEXIST when fd is watched
 * already; -EPERM when epoll cannot watch it (a regular file). */
int event_loop_add(struct event_loop *el, int fd, uint32_t events, event_fd_fn fn, void *opaque);
/* Change the events of a watched fd (0: keep it but report nothing). */
int event_loop_mod(struct event_loop *el, int fd, uint32_t events);
/* Stop watching fd: once this returns on the loop thread, or once the loop
 * thread has finished its current batch elsewhere, fn is not called again. */
int event_loop_del(struct event_loop *el, int fd);

/* Run fn(opaque) on the loop thread soon (FIFO order). Safe from any
 * thread. When the loop is not running, the call waits for start (or runs
 * at stop/destroy). */
int event_loop_call(struct event_loop *el, event_call_fn fn, void *opaque);

/* True on the loop's own thread. */
bool event_loop_on_thread(struct event_loop *el);

#endif
