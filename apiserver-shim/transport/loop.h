/*
 * loop.h: the single-threaded event loop that owns every client socket.
 *
 * One loop thread runs loop_run(); it multiplexes file descriptors (epoll)
 * and millisecond timers. Everything in apiserver-shim/ runs on that thread,
 * except loop_post(), the one thread-safe entry point: other threads (the Raft
 * apply thread) hand results back to the loop with it, and the function runs
 * later on the loop thread, in posting order.
 */
#ifndef KSHIM_LOOP_H
#define KSHIM_LOOP_H

#include <stdint.h>

typedef struct loop loop_t;
typedef struct loop_timer loop_timer_t;

enum { LOOP_READ = 1, LOOP_WRITE = 2 };

typedef void (*loop_fd_fn)(loop_t *loop, int fd, int events, void *arg);
typedef void (*loop_timer_fn)(loop_t *loop, void *arg);
typedef void (*loop_post_fn)(void *arg);

loop_t *loop_new(void);
void loop_free(loop_t *loop);

/* Watch fd for LOOP_READ/LOOP_WRITE (level-triggered). Returns 0 or -errno. */
int loop_add_fd(loop_t *loop, int fd, int events, loop_fd_fn fn, void *arg);
int loop_mod_fd(loop_t *loop, int fd, int events);
void loop_del_fd(loop_t *loop, int fd);

/* One-shot timer after ms milliseconds; the returned handle is valid until it
 * fires or is cancelled. */
loop_timer_t *loop_timer_add(loop_t *loop, uint64_t ms, loop_timer_fn fn, void *arg);
void loop_timer_cancel(loop_t *loop, loop_timer_t *t);

/* Monotonic milliseconds, cached per loop iteration. */
uint64_t loop_now_ms(loop_t *loop);

/* Thread-safe: run fn(arg) on the loop thread soon. Returns 0, or -1 once the
 * loop is stopping (then fn is never called and arg stays the caller's).
 * The queue has no limit of its own; it is bounded by its posters: each loop
 * iteration runs everything posted, the apply thread posts per applied batch
 * and revision (entries enter Raft only from the loop, under the node's
 * in-flight bound) and auth per bcrypt worker (at most 32). A new poster must
 * keep that property (bounded by something the loop controls). */
int loop_post(loop_t *loop, loop_post_fn fn, void *arg);

/* Run until loop_stop(); loop_stop is thread-safe and async-signal-safe. */
int loop_run(loop_t *loop);
void loop_stop(loop_t *loop);

#endif
