/*
 * test_loop.c: the epoll event loop: timers in order and cancelled timers,
 * fd readiness (level-triggered), loop_post FIFO order from another thread,
 * loop_stop from a signal handler, posts refused after stop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "loop.h"

typedef struct order {
    int seen[64];
    int n;
} order_t;

typedef struct targ {
    order_t *o;
    int id;
} targ_t;

static void record_timer(loop_t *loop, void *arg) {
    targ_t *t = arg;
    t->o->seen[t->o->n++] = t->id;
}

static void stop_timer(loop_t *loop, void *arg) { loop_stop(loop); }

static void test_timers_fire_in_deadline_order(void **state) {
    loop_t *loop = loop_new();
    assert_non_null(loop);
    order_t o = {0};
    targ_t a[6];
    uint64_t delays[6] = {30, 10, 20, 10, 5, 40};
    loop_timer_t *h[6];
    for (int i = 0; i < 6; i++) {
        a[i] = (targ_t){&o, i};
        h[i] = loop_timer_add(loop, delays[i], record_timer, &a[i]);
        assert_non_null(h[i]);
    }
    loop_timer_cancel(loop, h[2]); /* the 20 ms one never fires */
    loop_timer_add(loop, 60, stop_timer, NULL);
    uint64_t t0 = loop_now_ms(loop);
    assert_int_equal(loop_run(loop), 0);
    assert_true(loop_now_ms(loop) - t0 >= 60);
    int want[] = {4, 1, 3, 0, 5}; /* 5, 10 (FIFO on ties), 10, 30, 40 */
    assert_int_equal(o.n, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(o.seen[i], want[i]);
    loop_free(loop);
}

typedef struct fdstate {
    int rfd;
    int reads;
} fdstate_t;

static void on_readable(loop_t *loop, int fd, int events, void *arg) {
    fdstate_t *s = arg;
    assert_true(events & LOOP_READ);
    /* Level-triggered: consume one byte per call; we are called again. */
    char c;
    assert_int_equal(read(fd, &c, 1), 1);
    if (++s->reads == 3) {
        loop_del_fd(loop, fd);
        loop_stop(loop);
    }
}

static void test_fd_level_triggered(void **state) {
    loop_t *loop = loop_new();
    int p[2];
    assert_int_equal(pipe(p), 0);
    fdstate_t s = {p[0], 0};
    assert_int_equal(write(p[1], "abc", 3), 3);
    assert_int_equal(loop_add_fd(loop, p[0], LOOP_READ, on_readable, &s), 0);
    assert_true(loop_add_fd(loop, -1, LOOP_READ, on_readable, &s) < 0);
    assert_int_equal(loop_run(loop), 0);
    assert_int_equal(s.reads, 3);
    assert_true(loop_mod_fd(loop, p[0], LOOP_READ) < 0); /* deleted */
    close(p[0]);
    close(p[1]);
    loop_free(loop);
}

typedef struct posts {
    loop_t *loop;
    int next_expected;
    int bad;
} posts_t;

static posts_t g_posts;

static void on_post(void *arg) {
    int v = (int)(intptr_t)arg;
    if (v != g_posts.next_expected) g_posts.bad++;
    g_posts.next_expected++;
    if (v == 9999) loop_stop(g_posts.loop);
}

static void *poster(void *arg) {
    loop_t *loop = arg;
    for (int i = 0; i < 10000; i++) {
        if (loop_post(loop, on_post, (void *)(intptr_t)i) != 0) abort();
        if (i % 1000 == 0) usleep(1000);
    }
    return NULL;
}

static void test_post_fifo_across_threads(void **state) {
    loop_t *loop = loop_new();
    g_posts = (posts_t){loop, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, poster, loop);
    assert_int_equal(loop_run(loop), 0);
    pthread_join(th, NULL);
    assert_int_equal(g_posts.bad, 0);
    assert_int_equal(g_posts.next_expected, 10000);
    /* Stopped: further posts are refused and never run. */
    assert_int_equal(loop_post(loop, on_post, (void *)(intptr_t)5), -1);
    loop_free(loop);
}

static loop_t *g_sig_loop;
static void on_alarm(int sig) { loop_stop(g_sig_loop); }

static void test_stop_from_signal(void **state) {
    loop_t *loop = loop_new();
    g_sig_loop = loop;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    loop_timer_add(loop, 5000, stop_timer, NULL); /* fallback: the test would be slow */
    uint64_t t0 = loop_now_ms(loop);
    assert_int_equal(loop_run(loop), 0);
    assert_true(loop_now_ms(loop) - t0 < 4000);
    loop_free(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_fd_level_triggered),
        cmocka_unit_test(test_post_fifo_across_threads),
        cmocka_unit_test(test_stop_from_signal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
