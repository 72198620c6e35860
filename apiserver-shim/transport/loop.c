/*
 * loop.c: the epoll event loop (implements loop.h).
 *
 * Owns: the epoll instance, the table of watched fds (level-triggered), a
 * binary min-heap of one-shot millisecond timers, and the cross-thread post
 * queue (a mutex-protected FIFO list plus an eventfd that wakes epoll_wait).
 * loop_stop() only writes to a second eventfd, so it is async-signal-safe.
 *
 * Everything but loop_post() and loop_stop() must be called on the loop
 * thread (or before loop_run starts).
 */
#include "loop.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct loop_fd {
    loop_fd_fn fn;
    void *arg;
    int events;
    int active;
} loop_fd_t;

struct loop_timer {
    uint64_t when;
    uint64_t seq; /* FIFO order among timers due at the same ms */
    size_t heap_index;
    loop_timer_fn fn;
    void *arg;
};

typedef struct loop_post_item {
    struct loop_post_item *next;
    loop_post_fn fn;
    void *arg;
} loop_post_item_t;

struct loop {
    int epfd;
    int post_efd; /* wakes the loop for posted work */
    int stop_efd; /* written by loop_stop (signal-safe) */
    uint64_t now_ms;

    loop_fd_t *fds; /* indexed by fd */
    size_t nfds;

    loop_timer_t **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;

    pthread_mutex_t post_lock;
    loop_post_item_t *post_head, *post_tail;
    int stopping; /* under post_lock */
    volatile sig_atomic_t stop_requested;
};

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int epoll_mask(int events) {
    int m = 0;
    if (events & LOOP_READ) m |= EPOLLIN | EPOLLRDHUP;
    if (events & LOOP_WRITE) m |= EPOLLOUT;
    return m;
}

loop_t *loop_new(void) {
    loop_t *loop = calloc(1, sizeof(*loop));
    if (!loop) return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->post_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    loop->stop_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || loop->post_efd < 0 || loop->stop_efd < 0) goto fail;
    pthread_mutex_init(&loop->post_lock, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = loop->post_efd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->post_efd, &ev) < 0) goto fail;
    ev.data.fd = loop->stop_efd;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->stop_efd, &ev) < 0) goto fail;
    loop->now_ms = monotonic_ms();
    return loop;
fail:
    if (loop->epfd >= 0) close(loop->epfd);
    if (loop->post_efd >= 0) close(loop->post_efd);
    if (loop->stop_efd >= 0) close(loop->stop_efd);
    free(loop);
    return NULL;
}

void loop_free(loop_t *loop) {
    if (!loop) return;
    for (size_t i = 0; i < loop->heap_len; i++) free(loop->heap[i]);
    free(loop->heap);
    loop_post_item_t *it = loop->post_head;
    while (it) {
        loop_post_item_t *next = it->next;
        free(it);
        it = next;
    }
    pthread_mutex_destroy(&loop->post_lock);
    free(loop->fds);
    close(loop->epfd);
    close(loop->post_efd);
    close(loop->stop_efd);
    free(loop);
}

/* ---- file descriptors ---- */

static int fd_table_reserve(loop_t *loop, int fd) {
    if ((size_t)fd < loop->nfds) return 0;
    size_t n = loop->nfds ? loop->nfds : 64;
    while (n <= (size_t)fd) n *= 2;
    loop_fd_t *t = realloc(loop->fds, n * sizeof(*t));
    if (!t) return -ENOMEM;
    memset(t + loop->nfds, 0, (n - loop->nfds) * sizeof(*t));
    loop->fds = t;
    loop->nfds = n;
    return 0;
}

int loop_add_fd(loop_t *loop, int fd, int events, loop_fd_fn fn, void *arg) {
    if (fd < 0 || !fn) return -EINVAL;
    int rc = fd_table_reserve(loop, fd);
    if (rc) return rc;
    struct epoll_event ev = {.events = (uint32_t)epoll_mask(events), .data.fd = fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return -errno;
    loop->fds[fd] = (loop_fd_t){.fn = fn, .arg = arg, .events = events, .active = 1};
    return 0;
}

int loop_mod_fd(loop_t *loop, int fd, int events) {
    if (fd < 0 || (size_t)fd >= loop->nfds || !loop->fds[fd].active) return -EBADF;
    if (loop->fds[fd].events == events) return 0;
    struct epoll_event ev = {.events = (uint32_t)epoll_mask(events), .data.fd = fd};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) return -errno;
    loop->fds[fd].events = events;
    return 0;
}

void loop_del_fd(loop_t *loop, int fd) {
    if (fd < 0 || (size_t)fd >= loop->nfds || !loop->fds[fd].active) return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    loop->fds[fd].active = 0;
}

/* ---- timers: a binary min-heap ordered by (when, seq) ---- */

static int timer_before(const loop_timer_t *a, const loop_timer_t *b) {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(loop_t *loop, size_t i, loop_timer_t *t) {
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_sift_up(loop_t *loop, size_t i) {
    loop_timer_t *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent])) break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_sift_down(loop_t *loop, size_t i) {
    loop_timer_t *t = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        loop_timer_t *bt = t;
        if (l < loop->heap_len && timer_before(loop->heap[l], bt)) best = l, bt = loop->heap[l];
        if (r < loop->heap_len && timer_before(loop->heap[r], bt)) best = r, bt = loop->heap[r];
        if (best == i) break;
        heap_set(loop, i, bt);
        i = best;
    }
    heap_set(loop, i, t);
}

static void heap_remove(loop_t *loop, size_t i) {
    assert(i < loop->heap_len);
    loop->heap_len--;
    if (i == loop->heap_len) return;
    heap_set(loop, i, loop->heap[loop->heap_len]);
    heap_sift_up(loop, i);
    heap_sift_down(loop, loop->heap[i]->heap_index);
}

loop_timer_t *loop_timer_add(loop_t *loop, uint64_t ms, loop_timer_fn fn, void *arg) {
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        loop_timer_t **h = realloc(loop->heap, cap * sizeof(*h));
        if (!h) return NULL;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    loop_timer_t *t = malloc(sizeof(*t));
    if (!t) return NULL;
    t->when = loop->now_ms + ms;
    t->seq = loop->timer_seq++;
    t->fn = fn;
    t->arg = arg;
    loop->heap[loop->heap_len] = t;
    t->heap_index = loop->heap_len++;
    heap_sift_up(loop, t->heap_index);
    return t;
}

void loop_timer_cancel(loop_t *loop, loop_timer_t *t) {
    if (!t) return;
    assert(t->heap_index < loop->heap_len && loop->heap[t->heap_index] == t);
    heap_remove(loop, t->heap_index);
    free(t);
}

uint64_t loop_now_ms(loop_t *loop) { return loop->now_ms; }

static void run_due_timers(loop_t *loop) {
    while (loop->heap_len > 0 && loop->heap[0]->when <= loop->now_ms) {
        loop_timer_t *t = loop->heap[0];
        heap_remove(loop, 0);
        loop_timer_fn fn = t->fn;
        void *arg = t->arg;
        free(t); /* the handle is invalid once the timer fires */
        fn(loop, arg);
    }
}

static int next_timeout_ms(loop_t *loop) {
    if (loop->heap_len == 0) return -1;
    uint64_t when = loop->heap[0]->when;
    if (when <= loop->now_ms) return 0;
    uint64_t d = when - loop->now_ms;
    return d > 60000 ? 60000 : (int)d;
}

/* ---- cross-thread posts ---- */

int loop_post(loop_t *loop, loop_post_fn fn, void *arg) {
    loop_post_item_t *it = malloc(sizeof(*it));
    if (!it) return -1;
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&loop->post_lock);
    if (loop->stopping) {
        pthread_mutex_unlock(&loop->post_lock);
        free(it);
        return -1;
    }
    int was_empty = loop->post_head == NULL;
    if (loop->post_tail)
        loop->post_tail->next = it;
    else
        loop->post_head = it;
    loop->post_tail = it;
    pthread_mutex_unlock(&loop->post_lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t n = write(loop->post_efd, &one, sizeof(one));
        (void)n; /* EAGAIN means the counter is already non-zero: still woken */
    }
    return 0;
}

static void run_posts(loop_t *loop) {
    uint64_t v;
    ssize_t n = read(loop->post_efd, &v, sizeof(v));
    (void)n;
    pthread_mutex_lock(&loop->post_lock);
    loop_post_item_t *it = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_lock);
    while (it) {
        loop_post_item_t *next = it->next;
        it->fn(it->arg);
        free(it);
        it = next;
    }
}

/* ---- running ---- */

void loop_stop(loop_t *loop) {
    loop->stop_requested = 1;
    uint64_t one = 1;
    ssize_t n = write(loop->stop_efd, &one, sizeof(one));
    (void)n;
}

int loop_run(loop_t *loop) {
    enum { MAX_EVENTS = 128 };
    struct epoll_event evs[MAX_EVENTS];
    pthread_mutex_lock(&loop->post_lock);
    loop->stopping = 0;
    pthread_mutex_unlock(&loop->post_lock);
    while (!loop->stop_requested) {
        loop->now_ms = monotonic_ms();
        run_due_timers(loop);
        int n = epoll_wait(loop->epfd, evs, MAX_EVENTS, next_timeout_ms(loop));
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        loop->now_ms = monotonic_ms();
        for (int i = 0; i < n && !loop->stop_requested; i++) {
            int fd = evs[i].data.fd;
            if (fd == loop->post_efd) {
                run_posts(loop);
                continue;
            }
            if (fd == loop->stop_efd) continue;
            /* An earlier callback in this batch may have removed the fd. */
            if ((size_t)fd >= loop->nfds || !loop->fds[fd].active) continue;
            loop_fd_t *f = &loop->fds[fd];
            int ev = 0;
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ev |= LOOP_READ;
            if (evs[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) ev |= LOOP_WRITE;
            ev &= f->events ? f->events : (LOOP_READ | LOOP_WRITE);
            if (!ev) continue; /* stale readiness for an interest just dropped */
            f->fn(loop, fd, ev, f->arg);
        }
    }
    uint64_t v;
    ssize_t r = read(loop->stop_efd, &v, sizeof(v));
    (void)r;
    loop->stop_requested = 0;
    /* Run what was posted before the stop so posters' args are not leaked;
     * later posts are refused. */
    pthread_mutex_lock(&loop->post_lock);
    loop->stopping = 1;
    pthread_mutex_unlock(&loop->post_lock);
    run_posts(loop);
    return 0;
}
