/*
 * test_member_answer.c: answers before the write (member.c). server_apply
 * answers a batch of KV writes before its write group is in LevelDB and any
 * other batch after it; server_when_written holds a read until the store
 * holds every answered write, releases it (in order) when the apply thread
 * says the group is written, and releases it with ok=0 at shutdown;
 * server_revision never goes below an answered write's revision. The test
 * thread plays the apply thread; loop-only state is touched on the loop.
 */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv.h"
#include "loop.h"
#include "mvcc.h"
#include "pending.h"
#include "server_internal.h"

#define MEMBER 7

typedef struct fx {
    char base[256];
    server_t s;
    pthread_t loop_thread;
    sem_t done;
    int calls[4]; /* waiter i: times called with ok=1 (+100 per ok=0) */
    int order[4], n_order;
    server_written_wait_t w[4]; /* waiter i's node */
} fx_t;

static void *run_loop(void *arg) {
    loop_run(arg);
    return NULL;
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[600], dir[400], err[256];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(f->base, sizeof f->base, "%s/memberanswer-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->base));
    snprintf(dir, sizeof dir, "%s/store", f->base);
    assert_int_equal(mvcc_open(dir, NULL, &f->s.mvcc, err, sizeof err), 0);
    f->s.member_id = MEMBER;
    f->s.pending = pending_new(16);
    f->s.loop = loop_new();
    assert_non_null(f->s.pending);
    assert_non_null(f->s.loop);
    assert_int_equal(sem_init(&f->done, 0, 0), 0);
    assert_int_equal(pthread_create(&f->loop_thread, NULL, run_loop, f->s.loop), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    loop_stop(f->s.loop);
    pthread_join(f->loop_thread, NULL);
    server_written_stop(&f->s);
    loop_free(f->s.loop);
    pending_free(f->s.pending);
    mvcc_close(f->s.mvcc);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->base);
    assert_int_equal(system(cmd), 0);
    sem_destroy(&f->done);
    free(f);
    return 0;
}

/* Runs fn(f) on the loop thread and waits for it. */
typedef struct {
    fx_t *f;
    void (*fn)(fx_t *f);
} on_loop_t;

static void on_loop_run(void *arg) {
    on_loop_t *o = arg;
    if (o->fn) o->fn(o->f);
    sem_post(&o->f->done);
}

static void on_loop(fx_t *f, void (*fn)(fx_t *f)) {
    on_loop_t o = {f, fn};
    assert_int_equal(loop_post(f->s.loop, on_loop_run, &o), 0);
    assert_int_equal(sem_wait(&f->done), 0);
}

/* Applies one entry (ours) at index: a Put of key, or a Compact. */
static void apply(fx_t *f, uint64_t index, const char *key, int compact) {
    Kshim__RequestHeader h = KSHIM__REQUEST_HEADER__INIT;
    h.id = index;
    h.proposer = MEMBER;
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = (ProtobufCBinaryData){strlen(key), (uint8_t *)key};
    p.value = (ProtobufCBinaryData){1, (uint8_t *)"v"};
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    c.revision = 1;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.header = &h;
    if (compact)
        req.compaction = &c;
    else
        req.put = &p;
    uint8_t buf[512];
    size_t len = kshim__internal_request__pack(&req, buf);
    raft_entry_t e = {.term = 1, .index = index, .type = RAFT_ENTRY_NORMAL, .data = buf, .len = len};
    server_apply(&f->s, &e, 1, 1);
    on_loop(f, NULL); /* what it posted has run */
}

static fx_t *cur;

static void waiter(server_t *s, void *arg, int ok) {
    (void)s;
    int i = (int)(intptr_t)arg;
    cur->calls[i] += ok ? 1 : 100;
    cur->order[cur->n_order++] = i;
}

/* Nothing to wait for: waiter 0 runs at once. */
static void expect_read_now(fx_t *f) {
    int before = f->calls[0];
    assert_int_equal(server_when_written(&f->s, &f->w[0], waiter, (void *)0), 0);
    assert_int_equal(f->calls[0], before + 1);
}

/* Two waiters behind an answered-but-unwritten index (forced ahead here). */
static void wait_two(fx_t *f) {
    f->s.answered_index = atomic_load(&f->s.written_index) + 1;
    assert_int_equal(server_when_written(&f->s, &f->w[1], waiter, (void *)1), 1);
    assert_int_equal(server_when_written(&f->s, &f->w[2], waiter, (void *)2), 1);
}

static void server_stops(fx_t *f) { server_written_stop(&f->s); }

static void test_kv_write_answered_before_its_write(void **state) {
    fx_t *f = *state;
    cur = f;
    apply(f, 1, "a", 0);
    assert_int_equal(atomic_load(&f->s.written_index), 1);
    assert_int_equal(f->s.answered_index, 1); /* a Put batch: answered before the write */
    assert_int_equal(atomic_load(&f->s.answered_rev), 2);
    assert_int_equal(server_revision(&f->s), 2);
    on_loop(f, expect_read_now); /* written: nothing to wait for */
    apply(f, 2, "", 1);          /* a Compact: answered after its write */
    assert_int_equal(atomic_load(&f->s.written_index), 2);
    assert_int_equal(f->s.answered_index, 1);
}

static void test_waiters_released_in_order_when_written(void **state) {
    fx_t *f = *state;
    cur = f;
    apply(f, 1, "a", 0);
    on_loop(f, wait_two); /* answered 2, written 1 */
    assert_int_equal(f->calls[1] + f->calls[2], 0);
    apply(f, 2, "b", 0); /* written 2: the apply thread's notice runs them */
    assert_int_equal(f->calls[1], 1);
    assert_int_equal(f->calls[2], 1);
    assert_int_equal(f->order[0], 1);
    assert_int_equal(f->order[1], 2);
    on_loop(f, expect_read_now);
}

static void test_waiters_dropped_at_shutdown(void **state) {
    fx_t *f = *state;
    cur = f;
    on_loop(f, wait_two);
    on_loop(f, server_stops); /* ok = 0, in order */
    assert_int_equal(f->calls[1], 100);
    assert_int_equal(f->calls[2], 100);
    assert_int_equal(f->order[0], 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kv_write_answered_before_its_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiters_released_in_order_when_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiters_dropped_at_shutdown, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
