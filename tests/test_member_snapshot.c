/*
 * test_member_snapshot.c: member/snapshot.h without a cluster: a leader's
 * outgoing stream (server_snapshot_stream_*) fed in chunks into a
 * follower's receive callbacks (server_snapshot_begin/chunk/end), then
 * server_install_snapshot: the follower's store becomes the leader's, the
 * reload hooks run on the loop thread while the apply side waits, and a
 * second stream is refused while one is being received. A broken or
 * corrupt stream stages nothing: the install then fails (fail-stop) and
 * the follower's store is untouched; a copy already staged survives a later
 * broken or corrupt stream. A stream for an index the store does not cover
 * is not started.
 */
#include <pthread.h>
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
#include "server_internal.h"
#include "snapshot.h"

typedef struct fx {
    char base[256];
    server_t leader, follower;
    loop_t *loop;
    pthread_t loop_thread;
    pthread_t hook_thread; /* the thread the last reload hook ran on */
    int hook_calls;
    int hook_saw_rev;
} fx_t;

static fx_t *the_fx;

static int hook(server_t *s) {
    the_fx->hook_calls++;
    the_fx->hook_thread = pthread_self();
    the_fx->hook_saw_rev = (int)mvcc_revision(s->mvcc);
    return 0;
}

static void *run_loop(void *arg) {
    loop_run(arg);
    return NULL;
}

static void put(mvcc_t *m, uint64_t index, const char *k, const char *v) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = (ProtobufCBinaryData){strlen(k), (uint8_t *)k};
    p.value = (ProtobufCBinaryData){strlen(v), (uint8_t *)v};
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = &p;
    kv_header_info_t hdr = {0};
    kv_result_t res;
    assert_int_equal(kv_apply(m, index, &req, &hdr, &res), 0);
    kv_result_clear(&res);
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    the_fx = f;
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[600], dir[400], err[256];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(f->base, sizeof f->base, "%s/membersnap-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->base));
    snprintf(dir, sizeof dir, "%s/leader", f->base);
    assert_int_equal(mvcc_open(dir, NULL, &f->leader.mvcc, err, sizeof err), 0);
    snprintf(dir, sizeof dir, "%s/follower", f->base);
    assert_int_equal(mvcc_open(dir, NULL, &f->follower.mvcc, err, sizeof err), 0);
    for (uint64_t i = 1; i <= 300; i++) {
        char k[32], v[64];
        snprintf(k, sizeof k, "k%03llu", (unsigned long long)(i % 100));
        snprintf(v, sizeof v, "value %llu", (unsigned long long)i);
        put(f->leader.mvcc, i, k, v);
    }
    put(f->follower.mvcc, 1, "old", "x");
    f->loop = loop_new();
    f->follower.loop = f->loop;
    assert_int_equal(server_add_reload_hook(&f->follower, hook), 0);
    assert_int_equal(pthread_create(&f->loop_thread, NULL, run_loop, f->loop), 0);
    *state = f;
    return 0;
}

/* A running member: start-up replay is over, the loop runs the hooks. */
static int setup_serving(void **state) {
    setup(state);
    fx_t *f = *state;
    assert_int_equal(server_snapshot_loop_serves(&f->follower), 0);
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    loop_stop(f->loop);
    pthread_join(f->loop_thread, NULL);
    loop_free(f->loop);
    server_snapshot_free(&f->follower);
    mvcc_close(f->leader.mvcc);
    mvcc_close(f->follower.mvcc);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->base);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static const uint64_t voters[] = {1, 2, 3};

static raft_msg_t snap_msg(raft_snapshot_meta_t *meta, uint64_t index) {
    *meta = (raft_snapshot_meta_t){.index = index, .term = 4, .voters = voters, .n_voters = 3};
    return (raft_msg_t){.type = RAFT_MSG_SNAP, .from = 1, .to = 2, .term = 4, .snapshot = meta};
}

/* Streams the leader's store into the follower; flip >= 0 corrupts that
 * byte of the stream. Returns the sink's chunk result (0 all accepted). */
static int stream_once(fx_t *f, uint64_t index, long flip, int end_ok) {
    raft_snapshot_meta_t meta;
    raft_msg_t m = snap_msg(&meta, index);
    server_snapshot_stream_t *out = server_snapshot_stream_new(&f->leader, 2, index);
    assert_non_null(out);
    peer_snapshot_sink_t *sink = server_snapshot_begin(&f->follower, &m);
    assert_non_null(sink);
    /* one stream at a time */
    assert_null(server_snapshot_begin(&f->follower, &m));
    uint8_t buf[777];
    long n, off = 0;
    int rc = 0;
    while ((n = server_snapshot_stream_read(out, buf, sizeof buf)) > 0) {
        if (flip >= off && flip < off + n) buf[flip - off] ^= 1;
        off += n;
        if (rc == 0) rc = server_snapshot_chunk(&f->follower, sink, buf, (size_t)n);
    }
    assert_int_equal(n, 0);
    server_snapshot_end(&f->follower, sink, end_ok);
    server_snapshot_stream_done(out, 2, 1);
    return rc;
}

static void test_stream_install_reload(void **state) {
    fx_t *f = *state;
    assert_int_equal(stream_once(f, 250, -1, 1), 0);
    raft_snapshot_meta_t meta = {.index = 250, .term = 4, .voters = voters, .n_voters = 3};
    assert_int_equal(server_install_snapshot(&f->follower, &meta), 0);
    assert_int_equal(mvcc_applied_index(f->follower.mvcc), 300);
    assert_int_equal(mvcc_revision(f->follower.mvcc), mvcc_revision(f->leader.mvcc));
    assert_int_equal(f->hook_calls, 1);
    assert_true(pthread_equal(f->hook_thread, f->loop_thread));
    assert_int_equal(f->hook_saw_rev, (int)mvcc_revision(f->leader.mvcc));
    /* the store reads the leader's data */
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_read(f->follower.mvcc, &a, &t), MVCC_OK);
    mvcc_range_t r = mvcc_range_make((const uint8_t *)"k", 1, (const uint8_t *)"l", 1);
    mvcc_kv_list_t l = {0};
    int64_t count = 0;
    assert_int_equal(mvcc_txn_range(t, &r, 0, 0, 0, &l, &count), MVCC_OK);
    assert_int_equal(count, 100);
    mvcc_range_t old = mvcc_range_make((const uint8_t *)"old", 3, NULL, 0);
    assert_int_equal(mvcc_txn_range(t, &old, 0, 0, 1, NULL, &count), MVCC_OK);
    assert_int_equal(count, 0);
    mvcc_txn_end(t);
    kv_arena_free(&a);
    /* nothing staged any more: a second install of the same meta fails */
    assert_int_equal(server_install_snapshot(&f->follower, &meta), -1);
}

/* During start-up replay (before server_snapshot_loop_serves) the main
 * thread waits for the apply thread and runs no loop: an install runs the
 * hooks on the installing thread instead of waiting for the loop (which
 * timed out after 60 s and stopped the member). */
static void test_install_during_startup_replay(void **state) {
    fx_t *f = *state;
    assert_int_equal(stream_once(f, 250, -1, 1), 0);
    raft_snapshot_meta_t meta = {.index = 250, .term = 4, .voters = voters, .n_voters = 3};
    assert_int_equal(server_install_snapshot(&f->follower, &meta), 0);
    assert_int_equal(f->hook_calls, 1);
    assert_true(pthread_equal(f->hook_thread, pthread_self()));
    assert_int_equal(f->hook_saw_rev, (int)mvcc_revision(f->leader.mvcc));
}

static void test_broken_streams_stage_nothing(void **state) {
    fx_t *f = *state;
    raft_snapshot_meta_t meta = {.index = 250, .term = 4, .voters = voters, .n_voters = 3};
    /* the transport reports a broken stream */
    assert_int_equal(stream_once(f, 250, -1, 0), 0);
    assert_int_equal(server_install_snapshot(&f->follower, &meta), -1);
    /* a flipped byte in the middle */
    stream_once(f, 250, 5000, 1);
    assert_int_equal(server_install_snapshot(&f->follower, &meta), -1);
    assert_int_equal(f->hook_calls, 0);
    assert_int_equal(mvcc_applied_index(f->follower.mvcc), 1);
    assert_int_equal(mvcc_revision(f->follower.mvcc), 2);
    /* an index beyond what the leader's store holds: no stream */
    assert_null(server_snapshot_stream_new(&f->leader, 2, 301));
}

/* A copy staged (its MsgSnap stepped) stays installable while a newer
 * stream is received, and after that stream breaks or is corrupt. */
static void test_staged_copy_survives_later_streams(void **state) {
    fx_t *f = *state;
    assert_int_equal(stream_once(f, 250, -1, 1), 0);
    assert_int_equal(stream_once(f, 250, -1, 0), 0); /* broken */
    stream_once(f, 250, 3000, 1);                    /* corrupt */
    raft_snapshot_meta_t meta = {.index = 250, .term = 4, .voters = voters, .n_voters = 3};
    assert_int_equal(server_install_snapshot(&f->follower, &meta), 0);
    assert_int_equal(mvcc_applied_index(f->follower.mvcc), 300);
    assert_int_equal(f->hook_calls, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_install_reload, setup_serving, teardown),
        cmocka_unit_test_setup_teardown(test_install_during_startup_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_streams_stage_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staged_copy_survives_later_streams, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
