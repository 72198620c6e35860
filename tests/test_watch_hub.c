/*
 * test_watch_hub.c: unit tests for the watch hub (apiserver-shim/watch/watch_hub.c)
 * and its interval index (apiserver-shim/watch/interval_index.c).
 *
 * A fake in-memory store plays the MVCC history (a log of revision batches
 * with a compaction point) and fake streams play the consumers (a capacity in
 * responses; deliver refuses when full). Randomized, seeded runs compare what
 * every watcher received with a brute-force scan of the log, also with
 * catch-up reads done asynchronously (ops.history_async: reads held and
 * completed later, in random order, while writes keep arriving) and with
 * revisions whose post was lost (watch_hub_notify_missed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "interval_index.h"
#include "rpc.pb-c.h"
#include "watch_hub.h"

/* ---------------------------------------------------------------------------
 * Fake store: revision log + model of current values
 * ------------------------------------------------------------------------- */

#define MAX_REV 20000
#define NKEYS 30

typedef struct fake_store {
    watch_batch_t *log[MAX_REV + 1]; /* log[r]: events of revision r (NULL: none) */
    int64_t rev;
    int64_t compact_rev;
    int history_calls;
    int64_t max_span; /* largest to-from+1 asked for */
    int fail_next;    /* make the next history call fail */
    int sloppy;       /* emit revisions around [from, to] too: the hub must drop them */
    /* model of the current values, for prev kv */
    int present[NKEYS];
    int64_t create_rev[NKEYS], mod_rev[NKEYS], version[NKEYS];
    char value[NKEYS][16];
} fake_store_t;

/* Reads started by ops.history_async, completed by env_complete_read. */
typedef struct pending_read {
    watch_read_t *rd;
    char key[16], end[16];
    size_t key_len, end_len;
    int64_t from, to;
    int prev_kv;
    size_t max_bytes;
} pending_read_t;

#define MAX_PENDING 64
static pending_read_t g_pending[MAX_PENDING];
static int g_npending;
static int g_async_refuse; /* history_async refuses: the hub reads at once */

static void key_name(int k, char *out) { snprintf(out, 16, "k%02d", k); }

static void store_free(fake_store_t *st) {
    for (int64_t r = 0; r <= st->rev; r++) watch_batch_unref(st->log[r]);
    free(st);
}

static int fake_history(void *ctx, const watch_history_req_t *req, watch_emit_fn emit, void *emit_arg,
                        int64_t *compact_rev) {
    fake_store_t *st = ctx;
    st->history_calls++;
    if (st->fail_next) {
        st->fail_next = 0;
        return WATCH_ERR_HISTORY;
    }
    assert_true(req->from_rev <= req->to_rev);
    assert_true(req->to_rev <= st->rev);
    if (req->to_rev - req->from_rev + 1 > st->max_span) st->max_span = req->to_rev - req->from_rev + 1;
    if (req->from_rev < st->compact_rev) {
        *compact_rev = st->compact_rev;
        return WATCH_ERR_COMPACTED;
    }
    int64_t from = req->from_rev, to = req->to_rev;
    if (st->sloppy) {
        from = from > 3 ? from - 2 : 1;
        to = to + 2 < st->rev ? to + 2 : st->rev; /* the store may be ahead of the hub */
    }
    for (int64_t r = from; r <= to; r++) {
        watch_batch_t *b = st->log[r];
        if (!b || b->n == 0) continue;
        if (emit(emit_arg, r, b->events, b->n)) return WATCH_OK; /* superset: the hub filters */
    }
    return WATCH_OK;
}

static int fake_history_async(void *ctx, const watch_history_req_t *req, watch_read_t *rd) {
    (void)ctx;
    if (g_async_refuse || g_npending == MAX_PENDING) return WATCH_ERR_NOMEM;
    pending_read_t *p = &g_pending[g_npending++];
    assert_true(req->key_len < sizeof(p->key) && req->range_end_len < sizeof(p->end));
    memset(p, 0, sizeof(*p));
    p->rd = rd;
    memcpy(p->key, req->key, req->key_len);
    p->key_len = req->key_len;
    if (req->range_end_len) memcpy(p->end, req->range_end, req->range_end_len);
    p->end_len = req->range_end_len;
    p->from = req->from_rev;
    p->to = req->to_rev;
    p->prev_kv = req->prev_kv;
    p->max_bytes = req->max_bytes;
    return WATCH_OK;
}

/* An async read's batch, stopping as svc_watch's reader does: after the
 * revision that brings it to max_bytes (then its revision is the end). */
typedef struct acc_read {
    watch_batch_t *acc;
    int64_t from, to;
    size_t max_bytes;
} acc_read_t;

static int acc_emit(void *arg, int64_t rev, const watch_event_t *events, size_t n) {
    acc_read_t *a = arg;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(watch_batch_add(a->acc, events[i].type, &events[i].kv,
                                         events[i].has_prev ? &events[i].prev : NULL),
                         0);
    if (a->max_bytes && rev >= a->from && rev < a->to && a->acc->bytes >= a->max_bytes) {
        a->acc->revision = rev;
        return 1;
    }
    return 0;
}

/* Completes pending read i now, reading the store as it is (the log is
 * immutable, so a late read sees what an early one would have). */
static void complete_read(fake_store_t *st, watch_hub_t *hub, int i) {
    pending_read_t p = g_pending[i];
    g_pending[i] = g_pending[--g_npending];
    watch_history_req_t req = {.key = (uint8_t *)p.key,
                               .key_len = p.key_len,
                               .range_end = (uint8_t *)p.end,
                               .range_end_len = p.end_len,
                               .from_rev = p.from,
                               .to_rev = p.to,
                               .prev_kv = p.prev_kv};
    acc_read_t a = {.acc = watch_batch_new(p.to), .from = p.from, .to = p.to, .max_bytes = p.max_bytes};
    assert_non_null(a.acc);
    int64_t compact_rev = 0;
    int rc = fake_history(st, &req, acc_emit, &a, &compact_rev);
    watch_hub_history_done(hub, p.rd, rc, a.acc, compact_rev);
    watch_batch_unref(a.acc);
}

/* One transaction of up to nops puts/deletes on distinct keys. Returns the new
 * revision, or 0 if it changed nothing (a delete of absent keys only). */
typedef struct op {
    int key;
    int del;
} op_t;

static int64_t store_txn(fake_store_t *st, const op_t *ops, int nops) {
    watch_batch_t *b = watch_batch_new(st->rev + 1);
    assert_non_null(b);
    for (int i = 0; i < nops; i++) {
        int k = ops[i].key;
        char key[16];
        key_name(k, key);
        watch_kv_t prev = {.key = (uint8_t *)key,
                           .key_len = strlen(key),
                           .value = (uint8_t *)st->value[k],
                           .value_len = strlen(st->value[k]),
                           .create_revision = st->create_rev[k],
                           .mod_revision = st->mod_rev[k],
                           .version = st->version[k]};
        watch_kv_t kv = {.key = (uint8_t *)key, .key_len = strlen(key), .mod_revision = b->revision};
        if (ops[i].del) {
            if (!st->present[k]) continue;
            assert_int_equal(watch_batch_add(b, WATCH_DELETE, &kv, &prev), 0);
            st->present[k] = 0;
            continue;
        }
        char val[16];
        snprintf(val, sizeof(val), "v%lld", (long long)b->revision);
        kv.value = (uint8_t *)val;
        kv.value_len = strlen(val);
        kv.create_revision = st->present[k] ? st->create_rev[k] : b->revision;
        kv.version = st->present[k] ? st->version[k] + 1 : 1;
        assert_int_equal(watch_batch_add(b, WATCH_PUT, &kv, st->present[k] ? &prev : NULL), 0);
        st->present[k] = 1;
        st->create_rev[k] = kv.create_revision;
        st->mod_rev[k] = b->revision;
        st->version[k] = kv.version;
        snprintf(st->value[k], sizeof(st->value[k]), "%s", val);
    }
    if (b->n == 0) {
        watch_batch_unref(b);
        return 0;
    }
    assert_true(b->revision <= MAX_REV);
    st->rev = b->revision;
    st->log[st->rev] = b;
    return st->rev;
}

/* ---------------------------------------------------------------------------
 * Fake streams: record every response per watcher
 * ------------------------------------------------------------------------- */

#define MAX_IDS 256

typedef struct rec_event {
    int64_t rev;
    int type;
    char key[16];
    int has_prev;
} rec_event_t;

typedef struct rec {
    rec_event_t *ev;
    size_t n, cap;
    int responses;
    int64_t last_rev; /* mod revision of the last response with events */
    int progress;     /* empty non-cancel responses */
    int canceled;
    int64_t compact_rev;
    int batches; /* responses spanning more than one revision (catch-up) */
} rec_t;

typedef struct fake_stream {
    watch_stream_t *hs;
    int capacity; /* responses queued before deliver refuses */
    int queued;
    int refused;
    rec_t rec[MAX_IDS];
    int ignore_big_ids; /* count, do not record, ids >= MAX_IDS */
    int big_id_deliveries;
    int stream_progress; /* watch_id -1 replies */
    int64_t stream_progress_rev;
} fake_stream_t;

static int fake_deliver(void *ctx, const watch_resp_t *r) {
    fake_stream_t *fs = ctx;
    if (fs->queued >= fs->capacity) {
        fs->refused++;
        return WATCH_FULL;
    }
    fs->queued++;
    if (r->watch_id == -1) {
        assert_int_equal(r->n_events, 0);
        fs->stream_progress++;
        fs->stream_progress_rev = r->revision;
        return WATCH_ACCEPTED;
    }
    if (fs->ignore_big_ids && r->watch_id >= MAX_IDS) {
        fs->big_id_deliveries++;
        return WATCH_ACCEPTED;
    }
    assert_true(r->watch_id >= 0 && r->watch_id < MAX_IDS);
    rec_t *rc = &fs->rec[r->watch_id];
    assert_false(rc->canceled); /* nothing after a cancel */
    rc->responses++;
    if (r->canceled) {
        rc->canceled = 1;
        rc->compact_rev = r->compact_revision;
        assert_int_equal(r->revision, 0);
        return WATCH_ACCEPTED;
    }
    if (r->n_events == 0) {
        rc->progress++;
        return WATCH_ACCEPTED;
    }
    /* In revision order; a revision is never split across responses (a
     * live response holds one revision, a catch-up response a window). */
    assert_true(r->events[0]->kv.mod_revision > rc->last_rev);
    rc->batches += r->events[0]->kv.mod_revision != r->events[r->n_events - 1]->kv.mod_revision;
    for (size_t i = 0; i < r->n_events; i++) {
        const watch_event_t *e = r->events[i];
        int64_t rev = e->kv.mod_revision;
        assert_true(rev >= rc->last_rev);
        assert_true(rev <= r->revision);
        rc->last_rev = rev;
        if (rc->n == rc->cap) {
            rc->cap = rc->cap ? rc->cap * 2 : 16;
            rc->ev = realloc(rc->ev, rc->cap * sizeof(*rc->ev));
            assert_non_null(rc->ev);
        }
        rec_event_t *o = &rc->ev[rc->n++];
        o->rev = rev;
        o->type = e->type;
        o->has_prev = e->has_prev;
        assert_true(e->kv.key_len < sizeof(o->key));
        memcpy(o->key, e->kv.key, e->kv.key_len);
        o->key[e->kv.key_len] = 0;
    }
    return WATCH_ACCEPTED;
}

static void stream_reset_recs(fake_stream_t *fs) {
    for (int i = 0; i < MAX_IDS; i++) free(fs->rec[i].ev);
    memset(fs->rec, 0, sizeof(fs->rec));
}

/* ---------------------------------------------------------------------------
 * Test fixture
 * ------------------------------------------------------------------------- */

typedef struct env {
    fake_store_t *st;
    watch_hub_t *hub;
    int schedules;
    uint64_t last_delay;
    int lag;                /* the apply side runs ahead: notify only on env_flush */
    int64_t notified;       /* last revision handed to the hub */
    _Atomic int64_t missed; /* svc_watch's lost-post mark */
} env_t;

static env_t *g_env; /* the schedule callback's view of the running test */

static void env_schedule(void *ctx, uint64_t delay_ms) {
    (void)ctx;
    if (g_env) {
        g_env->schedules++;
        g_env->last_delay = delay_ms;
    }
}

static env_t *env_new_ops(const watch_hub_options_t *opts, int async) {
    env_t *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->st = calloc(1, sizeof(*e->st));
    assert_non_null(e->st);
    e->st->rev = 1; /* an empty etcd store is at revision 1 */
    e->notified = 1;
    watch_hub_ops_t ops = {
        .deliver = fake_deliver, .history = fake_history, .schedule = env_schedule, .ctx = e->st};
    if (async) ops.history_async = fake_history_async;
    e->hub = watch_hub_new(&ops, opts, e->st->rev);
    assert_non_null(e->hub);
    g_env = e;
    g_npending = 0;
    g_async_refuse = 0;
    return e;
}

static env_t *env_new(const watch_hub_options_t *opts) { return env_new_ops(opts, 0); }

/* Revisions the store has and the hub was never told of (their post was
 * lost): mark them as svc_watch does and let the hub check the mark. */
static void env_miss(env_t *e) {
    if (e->notified == e->st->rev) return;
    for (int64_t r = e->notified + 1; r <= e->st->rev; r++) watch_missed_note(&e->missed, r);
    watch_hub_check_missed(e->hub, &e->missed);
    e->notified = e->st->rev;
}

static void env_complete_all(env_t *e) {
    while (g_npending > 0) complete_read(e->st, e->hub, rand() % g_npending);
}

static void env_free(env_t *e) {
    watch_hub_free(e->hub);
    store_free(e->st);
    free(e);
    g_env = NULL;
}

static int64_t env_txn(env_t *e, const op_t *ops, int nops) {
    int64_t rev = store_txn(e->st, ops, nops);
    if (rev && !e->lag) {
        watch_hub_notify_batch(e->hub, e->st->log[rev]);
        e->notified = rev;
    }
    return rev;
}

static void env_flush(env_t *e) {
    while (e->notified < e->st->rev) {
        e->notified++;
        watch_hub_notify_batch(e->hub, e->st->log[e->notified]);
    }
}

static int64_t env_put(env_t *e, int k) {
    op_t op = {k, 0};
    return env_txn(e, &op, 1);
}

static int64_t env_del(env_t *e, int k) {
    op_t op = {k, 1};
    return env_txn(e, &op, 1);
}

static void env_drain_passes(env_t *e) {
    for (int i = 0; i < 100000; i++) {
        int more = watch_hub_run_pass(e->hub);
        if (g_npending > 0) {
            env_complete_all(e);
            continue;
        }
        if (!more) break;
    }
}

static fake_stream_t *fs_new(env_t *e, int capacity) {
    fake_stream_t *fs = calloc(1, sizeof(*fs));
    assert_non_null(fs);
    fs->capacity = capacity;
    fs->hs = watch_hub_stream_open(e->hub, fs);
    assert_non_null(fs->hs);
    return fs;
}

static void fs_free(env_t *e, fake_stream_t *fs) {
    if (fs->hs) watch_hub_stream_close(e->hub, fs->hs);
    stream_reset_recs(fs);
    free(fs);
}

static void fs_drain(env_t *e, fake_stream_t *fs) {
    fs->queued = 0;
    watch_hub_stream_writable(e->hub, fs->hs);
}

/* range: "" single key, "\0" from key, else end. */
static int64_t watch_on(env_t *e, fake_stream_t *fs, const char *key, const char *end, size_t end_len,
                        int64_t start, int filters) {
    watch_create_t c = {.key = (const uint8_t *)key,
                        .key_len = strlen(key),
                        .range_end = (const uint8_t *)end,
                        .range_end_len = end_len,
                        .start_revision = start,
                        .filters = filters,
                        .prev_kv = 1};
    int64_t id = -1;
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_OK);
    return id;
}

/* ---------------------------------------------------------------------------
 * Interval index
 * ------------------------------------------------------------------------- */

typedef struct ivx_item {
    ivx_link_t link;
    ivx_kind_t kind;
    char key[16], end[16];
    int hit;
} ivx_item_t;

static void mark_hit(void *arg, ivx_link_t *link) {
    (void)arg;
    ((ivx_item_t *)link)->hit++;
}

static void test_index_random_vs_bruteforce(void **state) {
    (void)state;
    enum { N = 400 };
    ivx_item_t *items = calloc(N, sizeof(*items));
    assert_non_null(items);
    ivx_t *x = ivx_new(7);
    assert_non_null(x);
    srand(12345);
    for (int round = 0; round < 2000; round++) {
        ivx_item_t *it = &items[rand() % N];
        if (it->link.node) {
            ivx_remove(x, &it->link);
        } else {
            it->kind = (ivx_kind_t)(rand() % 3);
            int a = rand() % 40, b = a + 1 + rand() % 10;
            snprintf(it->key, sizeof(it->key), "k%02d", a);
            snprintf(it->end, sizeof(it->end), "k%02d", b);
            if (rand() % 4 == 0) snprintf(it->end, sizeof(it->end), "k%02d\x01", a); /* tight range */
            assert_int_equal(ivx_insert(x, &it->link, it->kind, (uint8_t *)it->key, strlen(it->key),
                                        (uint8_t *)it->end, strlen(it->end)),
                             0);
        }
        if (round % 50 != 0) continue;
        assert_int_equal(ivx_check(x), 0);
        for (int q = 0; q < 60; q++) {
            char key[16];
            if (q % 3 == 0)
                snprintf(key, sizeof(key), "k%02d", q);
            else
                snprintf(key, sizeof(key), "k%02d%c", q % 50, 'a' + q % 3);
            for (int i = 0; i < N; i++) items[i].hit = 0;
            size_t n = ivx_stab(x, (uint8_t *)key, strlen(key), mark_hit, NULL);
            size_t want = 0;
            for (int i = 0; i < N; i++) {
                int in = items[i].link.node &&
                         ivx_range_contains(items[i].kind, (uint8_t *)items[i].key, strlen(items[i].key),
                                            (uint8_t *)items[i].end, strlen(items[i].end), (uint8_t *)key,
                                            strlen(key));
                assert_int_equal(items[i].hit, in);
                want += (size_t)in;
            }
            assert_int_equal(n, want);
        }
    }
    ivx_stats_t s;
    ivx_get_stats(x, &s);
    size_t linked = 0;
    for (int i = 0; i < N; i++) linked += items[i].link.node != NULL;
    assert_int_equal(s.links, linked);
    for (int i = 0; i < N; i++)
        if (items[i].link.node) ivx_remove(x, &items[i].link);
    ivx_get_stats(x, &s);
    assert_int_equal(s.keys + s.ranges + s.links, 0);
    ivx_free(x);
    free(items);
}

/* ---------------------------------------------------------------------------
 * Hub: matching kinds
 * ------------------------------------------------------------------------- */

static void test_key_range_prefix_fromkey(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    fake_stream_t *fs = fs_new(e, 1000);
    int64_t w_key = watch_on(e, fs, "k05", "", 0, 0, 0);
    int64_t w_range = watch_on(e, fs, "k03", "k07", 3, 0, 0);
    int64_t w_prefix = watch_on(e, fs, "k1", "k2", 3, 0, 0);
    int64_t w_from = watch_on(e, fs, "k20", "\0", 1, 0, 0);
    int64_t w_all = watch_on(e, fs, "", "\0", 1, 0, 0);
    /* server-assigned ids count from 0, as etcd */
    assert_int_equal(w_key, 0);
    assert_int_equal(w_all, 4);
    for (int k = 0; k < NKEYS; k++) env_put(e, k);
    assert_int_equal(fs->rec[w_key].n, 1);
    assert_string_equal(fs->rec[w_key].ev[0].key, "k05");
    assert_int_equal(fs->rec[w_range].n, 4); /* k03..k06 */
    assert_string_equal(fs->rec[w_range].ev[0].key, "k03");
    assert_string_equal(fs->rec[w_range].ev[3].key, "k06");
    assert_int_equal(fs->rec[w_prefix].n, 10);
    assert_int_equal(fs->rec[w_from].n, 10);
    assert_string_equal(fs->rec[w_from].ev[0].key, "k20");
    assert_int_equal(fs->rec[w_all].n, NKEYS);
    /* a delete carries its prev kv and reaches the range watcher too */
    env_del(e, 5);
    assert_int_equal(fs->rec[w_key].n, 2);
    assert_int_equal(fs->rec[w_key].ev[1].type, WATCH_DELETE);
    assert_int_equal(fs->rec[w_key].ev[1].has_prev, 1);
    assert_int_equal(fs->rec[w_range].n, 5);
    watch_hub_stats_t s;
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.watchers, 5);
    assert_int_equal(s.synced, 5);
    fs_free(e, fs);
    env_free(e);
}

static void test_txn_one_response_per_revision(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    fake_stream_t *fs = fs_new(e, 1000);
    int64_t a = watch_on(e, fs, "k0", "k1", 2, 0, 0); /* k00..k09 */
    int64_t b = watch_on(e, fs, "k02", "", 0, 0, 0);
    op_t ops[4] = {{7, 0}, {2, 0}, {15, 0}, {4, 0}};
    int64_t rev = env_txn(e, ops, 4);
    assert_int_equal(fs->rec[a].responses, 1);
    assert_int_equal(fs->rec[a].n, 3);
    /* events keep their order inside the transaction */
    assert_string_equal(fs->rec[a].ev[0].key, "k07");
    assert_string_equal(fs->rec[a].ev[1].key, "k02");
    assert_string_equal(fs->rec[a].ev[2].key, "k04");
    assert_int_equal(fs->rec[a].ev[0].rev, rev);
    assert_int_equal(fs->rec[b].responses, 1);
    assert_int_equal(fs->rec[b].n, 1);
    fs_free(e, fs);
    env_free(e);
}

static void test_filters(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    fake_stream_t *fs = fs_new(e, 1000);
    int64_t noput = watch_on(e, fs, "k0", "k1", 2, 0, WATCH_FILTER_NOPUT);
    int64_t nodel = watch_on(e, fs, "k0", "k1", 2, 0, WATCH_FILTER_NODELETE);
    int64_t none = watch_on(e, fs, "k0", "k1", 2, 0, WATCH_FILTER_NOPUT | WATCH_FILTER_NODELETE);
    env_put(e, 1);
    env_put(e, 2);
    op_t mixed[2] = {{1, 1}, {3, 0}};
    env_txn(e, mixed, 2);
    assert_int_equal(fs->rec[noput].n, 1);
    assert_int_equal(fs->rec[noput].ev[0].type, WATCH_DELETE);
    assert_int_equal(fs->rec[nodel].n, 3);
    assert_int_equal(fs->rec[nodel].responses, 3);
    /* everything filtered out: no response at all, not an empty one */
    assert_int_equal(fs->rec[none].responses, 0);
    fs_free(e, fs);
    env_free(e);
}

static void test_ids_errors_cancel(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    fake_stream_t *fs = fs_new(e, 1000);
    fake_stream_t *other = fs_new(e, 1000);
    watch_create_t c = {.key = (const uint8_t *)"k01", .key_len = 3, .watch_id = 5};
    int64_t id = -1;
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_OK);
    assert_int_equal(id, 5);
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_ERR_DUPLICATE_ID);
    /* ids are per stream */
    assert_int_equal(watch_hub_create(e->hub, other->hs, &c, &id), WATCH_OK);
    assert_int_equal(id, 5);
    /* auto ids skip ids taken by the client */
    c.watch_id = 0;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_OK);
        assert_int_equal(id, i < 5 ? i : 6);
    }
    /* an empty range */
    c.range_end = (const uint8_t *)"k00";
    c.range_end_len = 3;
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_ERR_EMPTY_RANGE);
    assert_string_equal(watch_hub_strerror(WATCH_ERR_EMPTY_RANGE), "mvcc: watcher range is empty");
    c.range_end = (const uint8_t *)"k01";
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_ERR_EMPTY_RANGE);
    /* cancel */
    assert_int_equal(watch_hub_cancel(e->hub, fs->hs, 5), WATCH_OK);
    assert_int_equal(watch_hub_cancel(e->hub, fs->hs, 5), WATCH_ERR_NOT_FOUND);
    assert_int_equal(watch_hub_cancel(e->hub, fs->hs, 99), WATCH_ERR_NOT_FOUND);
    env_put(e, 1);
    assert_int_equal(fs->rec[5].n, 0);    /* canceled: nothing more */
    assert_int_equal(other->rec[5].n, 1); /* the other stream's id 5 still works */
    assert_int_equal(fs->rec[0].n, 1);
    watch_hub_stats_t s;
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.watchers, 7);
    fs_free(e, fs);
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.watchers, 1);
    assert_int_equal(s.streams, 1);
    fs_free(e, other);
    env_free(e);
}

/* ---------------------------------------------------------------------------
 * Hub: history replay, slow consumers, compaction
 * ------------------------------------------------------------------------- */

static void test_past_start_replay_then_live(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    e->st->sloppy = 1;                              /* history hands back revisions before from_rev too */
    for (int i = 0; i < 20; i++) env_put(e, i % 4); /* revisions 2..21 */
    fake_stream_t *fs = fs_new(e, 1000);
    int schedules = e->schedules;
    int64_t w = watch_on(e, fs, "k01", "", 0, 5, 0);
    assert_true(e->schedules > schedules); /* asked for a pass */
    /* nothing delivered at create: the created reply goes first */
    assert_int_equal(fs->rec[w].responses, 0);
    assert_false(watch_hub_stream_caught_up(e->hub, fs->hs));
    env_put(e, 1); /* revision 22 arrives while the watcher is behind */
    assert_int_equal(fs->rec[w].n, 0);
    env_drain_passes(e);
    assert_true(watch_hub_stream_caught_up(e->hub, fs->hs));
    env_put(e, 1);
    /* k01 was written at 3, 7, 11, 15, 19, then 22 and 23: from 5 on */
    int64_t want[] = {7, 11, 15, 19, 22, 23};
    assert_int_equal(fs->rec[w].n, 6);
    for (int i = 0; i < 6; i++) assert_int_equal(fs->rec[w].ev[i].rev, want[i]);
    fs_free(e, fs);
    env_free(e);
}

/* Revisions applied while nobody watched are posted without their events
 * (watch_hub_notify_elided); a watcher created before they reach the hub
 * gets them from history, once, then live events with no gap. */
static void test_elided_revisions_caught_up(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    env_put(e, 1); /* rev 2, delivered normally */
    e->lag = 1;
    int64_t r3 = env_put(e, 1); /* applied with no watcher: elided */
    fake_stream_t *fs = fs_new(e, 1000);
    int64_t w = watch_on(e, fs, "k01", "", 0, 0, 0); /* from hub rev 2: wants 3 on */
    int64_t r4 = env_put(e, 1);                      /* also elided (count not yet seen) */
    watch_hub_notify_elided(e->hub, r3);
    watch_hub_notify_elided(e->hub, r4);
    e->notified = r4;
    e->lag = 0;
    assert_int_equal(fs->rec[w].n, 0);
    assert_false(watch_hub_stream_caught_up(e->hub, fs->hs));
    env_drain_passes(e);
    assert_true(watch_hub_stream_caught_up(e->hub, fs->hs));
    int64_t r5 = env_put(e, 1); /* live again */
    assert_int_equal(fs->rec[w].n, 3);
    assert_int_equal(fs->rec[w].ev[0].rev, r3);
    assert_int_equal(fs->rec[w].ev[1].rev, r4);
    assert_int_equal(fs->rec[w].ev[2].rev, r5);
    /* a watcher created after the elided revisions reached the hub is not
     * affected by them */
    int64_t w2 = watch_on(e, fs, "k02", "", 0, 0, 0);
    e->lag = 1;
    int64_t r6 = env_put(e, 3);
    watch_hub_notify_elided(e->hub, r6); /* k03: no watcher wants it */
    e->notified = r6;
    e->lag = 0;
    env_drain_passes(e);
    env_put(e, 2);
    assert_int_equal(fs->rec[w2].n, 1);
    assert_int_equal(fs->rec[w].n, 3);
    fs_free(e, fs);
    env_free(e);
}

static void test_chunked_catch_up(void **state) {
    (void)state;
    watch_hub_options_t o = {.chunk_revisions = 10, .max_watchers_per_pass = 1};
    env_t *e = env_new(&o);
    for (int i = 0; i < 100; i++) env_put(e, 0);
    fake_stream_t *fs = fs_new(e, 1000);
    int64_t w1 = watch_on(e, fs, "k00", "", 0, 2, 0);
    int64_t w2 = watch_on(e, fs, "k00", "", 0, 50, 0);
    int passes = 0;
    while (watch_hub_run_pass(e->hub)) passes++;
    assert_int_equal(e->st->max_span, 10);
    assert_true(passes >= 10 + 5 - 1);
    assert_int_equal(fs->rec[w1].n, 100);
    assert_int_equal(fs->rec[w2].n, 52);
    /* one response per chunk holding every event of the window (etcd batches
     * catch-up the same way) */
    assert_int_equal(fs->rec[w1].responses, 10);
    assert_int_equal(fs->rec[w1].batches, 10);
    assert_int_equal(fs->rec[w2].responses, 6);
    env_put(e, 0);
    assert_int_equal(fs->rec[w1].n, 101);
    assert_int_equal(fs->rec[w2].n, 53);
    fs_free(e, fs);
    env_free(e);
}

/* chunk_bytes ends a catch-up response early, on a revision boundary, on
 * the loop and on the async path; the watcher still gets every revision
 * once, in order. An event here is "k00" + "vN" (5-7 bytes, + prev). */
static void test_catch_up_bounded_by_bytes(void **state) {
    (void)state;
    for (int async = 0; async <= 1; async++) {
        watch_hub_options_t o = {.chunk_revisions = 1000, .chunk_bytes = 40, .sync_tail_revisions = 1};
        env_t *e = env_new_ops(&o, async);
        for (int i = 0; i < 100; i++) env_put(e, 0);
        fake_stream_t *fs = fs_new(e, 1000);
        int64_t w = watch_on(e, fs, "k00", "", 0, 1, 0);
        env_drain_passes(e);
        assert_int_equal(fs->rec[w].n, 100);
        for (int i = 0; i < 100; i++)
            assert_int_equal(fs->rec[w].ev[i].rev, i + 2); /* the store starts at revision 1 */
        /* 40 bytes: 3 revisions of ~14 (with prev) per response, not 100 in one */
        assert_true(fs->rec[w].responses >= 20);
        assert_true(fs->rec[w].responses <= 50);
        env_put(e, 0);
        assert_int_equal(fs->rec[w].n, 101); /* synced again */
        fs_free(e, fs);
        env_free(e);
    }
}

/* max_watchers_per_stream: a create past it fails, the stream's watchers
 * keep working, another stream is not limited by it, a cancel makes room. */
static void test_watchers_per_stream_limit(void **state) {
    (void)state;
    watch_hub_options_t o = {.max_watchers_per_stream = 3};
    env_t *e = env_new(&o);
    fake_stream_t *fs = fs_new(e, 1000), *other = fs_new(e, 1000);
    int64_t ids[3];
    for (int i = 0; i < 3; i++) ids[i] = watch_on(e, fs, "k00", "", 0, 0, 0);
    watch_create_t c = {.key = (const uint8_t *)"k01", .key_len = 3};
    int64_t id = -1;
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_ERR_TOO_MANY);
    assert_string_equal(watch_hub_strerror(WATCH_ERR_TOO_MANY),
                        "kshim: too many watchers on this stream (--max-watchers-per-stream)");
    int64_t w_other = watch_on(e, other, "k00", "", 0, 0, 0);
    env_put(e, 0);
    for (int i = 0; i < 3; i++) assert_int_equal(fs->rec[ids[i]].n, 1);
    assert_int_equal(other->rec[w_other].n, 1);
    assert_int_equal(watch_hub_cancel(e->hub, fs->hs, ids[0]), WATCH_OK);
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_OK);
    fs_free(e, other);
    fs_free(e, fs);
    env_free(e);
}

static void test_slow_consumer_catches_up(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    fake_stream_t *fs = fs_new(e, 2);
    int64_t w = watch_on(e, fs, "k0", "k1", 2, 0, 0);
    int64_t w2 = watch_on(e, fs, "k1", "k2", 2, 0, 0);
    for (int i = 0; i < 50; i++) env_put(e, i % 10);
    /* two responses fit, then the stream is blocked: no more deliver calls */
    assert_int_equal(fs->rec[w].n, 2);
    assert_int_equal(fs->refused, 1);
    watch_hub_stats_t s;
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.unsynced, 1);
    assert_int_equal(s.synced, 1); /* w2 had nothing to miss */
    /* a pass does nothing for a blocked stream */
    int calls = e->st->history_calls;
    assert_int_equal(watch_hub_run_pass(e->hub), 0);
    assert_int_equal(e->st->history_calls, calls);
    env_put(e, 11); /* w2's stream is blocked: it falls behind too */
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.unsynced, 2);
    /* drain a little at a time */
    for (int i = 0; i < 200 && (fs->rec[w].n < 50 || fs->rec[w2].n < 1); i++) {
        fs_drain(e, fs);
        env_drain_passes(e);
        if (i % 3 == 0) env_put(e, 3);
    }
    fs->capacity = 1000000;
    fs_drain(e, fs);
    env_drain_passes(e);
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.unsynced, 0);
    assert_true(watch_hub_stream_caught_up(e->hub, fs->hs));
    /* every revision that touched k0x, once, in order */
    size_t n = 0;
    for (int64_t r = 2; r <= e->st->rev; r++) {
        watch_batch_t *b = e->st->log[r];
        if (b && b->events[0].kv.key[1] == '0') {
            assert_true(n < fs->rec[w].n);
            assert_int_equal(fs->rec[w].ev[n].rev, r);
            n++;
        }
    }
    assert_int_equal(fs->rec[w].n, n);
    assert_int_equal(fs->rec[w2].n, 1);
    fs_free(e, fs);
    env_free(e);
}

static void test_compaction_cancels(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    for (int i = 0; i < 10; i++) env_put(e, 0); /* revisions 2..11 */
    e->st->compact_rev = 6;
    fake_stream_t *fs = fs_new(e, 1000);
    int64_t old = watch_on(e, fs, "k00", "", 0, 3, 0);
    int64_t ok = watch_on(e, fs, "k00", "", 0, 6, 0);
    env_drain_passes(e);
    assert_int_equal(fs->rec[old].canceled, 1);
    assert_int_equal(fs->rec[old].compact_rev, 6);
    assert_int_equal(fs->rec[old].n, 0);
    assert_int_equal(watch_hub_cancel(e->hub, fs->hs, old), WATCH_ERR_NOT_FOUND); /* gone */
    assert_int_equal(fs->rec[ok].canceled, 0);
    assert_int_equal(fs->rec[ok].n, 6); /* 6..11 */
    /* a refused cancel is retried once the stream drains */
    fake_stream_t *full = fs_new(e, 0);
    int64_t w = watch_on(e, full, "k00", "", 0, 2, 0);
    env_drain_passes(e);
    assert_int_equal(full->rec[w].canceled, 0);
    full->capacity = 10;
    fs_drain(e, full);
    env_drain_passes(e);
    assert_int_equal(full->rec[w].canceled, 1);
    assert_int_equal(full->rec[w].responses, 1);
    fs_free(e, full);
    fs_free(e, fs);
    env_free(e);
}

static void test_history_error_retried(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    for (int i = 0; i < 5; i++) env_put(e, 0);
    fake_stream_t *fs = fs_new(e, 1000);
    int64_t w = watch_on(e, fs, "k00", "", 0, 2, 0);
    e->st->fail_next = 1;
    assert_int_equal(watch_hub_run_pass(e->hub), 1);
    assert_int_equal(e->last_delay, 100); /* retried after retry_delay_ms */
    assert_int_equal(fs->rec[w].n, 0);
    env_drain_passes(e);
    assert_int_equal(fs->rec[w].n, 5);
    fs_free(e, fs);
    env_free(e);
}

/* ---------------------------------------------------------------------------
 * Hub: progress
 * ------------------------------------------------------------------------- */

static void test_progress_request(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    for (int i = 0; i < 10; i++) env_put(e, 0);
    fake_stream_t *fs = fs_new(e, 1000);
    /* no watchers: etcd sends nothing */
    watch_hub_request_progress(e->hub, fs->hs);
    assert_int_equal(fs->stream_progress, 0);
    watch_on(e, fs, "k00", "", 0, 0, 0);
    watch_hub_request_progress(e->hub, fs->hs);
    assert_int_equal(fs->stream_progress, 1);
    assert_int_equal(fs->stream_progress_rev, e->st->rev);
    /* a watcher behind: deferred until it has caught up, answered once */
    int64_t behind = watch_on(e, fs, "k00", "", 0, 2, 0);
    watch_hub_request_progress(e->hub, fs->hs);
    watch_hub_request_progress(e->hub, fs->hs);
    assert_int_equal(fs->stream_progress, 1);
    env_put(e, 0);
    env_drain_passes(e);
    assert_int_equal(fs->stream_progress, 2);
    assert_int_equal(fs->stream_progress_rev, e->st->rev);
    assert_int_equal(fs->rec[behind].n, 11); /* all its events came before */
    /* a blocked stream answers when writable */
    fs->capacity = fs->queued;
    env_put(e, 0);
    watch_hub_request_progress(e->hub, fs->hs);
    assert_int_equal(fs->stream_progress, 2);
    fs->capacity = 1000;
    fs_drain(e, fs);
    env_drain_passes(e);
    assert_int_equal(fs->stream_progress, 3);
    assert_int_equal(fs->rec[behind].n, 12);
    /* canceling the only watcher behind also releases it */
    int64_t late = watch_on(e, fs, "k00", "", 0, 2, 0);
    watch_hub_request_progress(e->hub, fs->hs);
    assert_int_equal(fs->stream_progress, 3);
    assert_int_equal(watch_hub_cancel(e->hub, fs->hs, late), WATCH_OK);
    env_drain_passes(e);
    assert_int_equal(fs->stream_progress, 4);
    fs_free(e, fs);
    env_free(e);
}

static void test_progress_notify_tick(void **state) {
    (void)state;
    watch_hub_options_t o = {.progress_interval_ms = 250};
    env_t *e = env_new(&o);
    assert_int_equal(watch_hub_progress_interval_ms(e->hub), 250);
    fake_stream_t *fs = fs_new(e, 1000);
    watch_create_t c = {.key = (const uint8_t *)"k01", .key_len = 3, .progress_notify = 1};
    int64_t idle = -1, busy = -1, plain = -1;
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &idle), WATCH_OK);
    c.key = (const uint8_t *)"k02";
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &busy), WATCH_OK);
    c.progress_notify = 0;
    assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &plain), WATCH_OK);
    env_put(e, 2);
    watch_hub_progress_tick(e->hub);
    assert_int_equal(fs->rec[idle].progress, 1);
    assert_int_equal(fs->rec[busy].progress, 0); /* got an event this interval */
    assert_int_equal(fs->rec[plain].progress, 0);
    watch_hub_progress_tick(e->hub);
    assert_int_equal(fs->rec[idle].progress, 2);
    assert_int_equal(fs->rec[busy].progress, 1);
    fs_free(e, fs);
    env_free(e);
}

/* ---------------------------------------------------------------------------
 * Randomized: every watcher gets exactly its events, through slow consumers
 * ------------------------------------------------------------------------- */

typedef struct wspec {
    fake_stream_t *fs;
    int64_t id;
    char key[16], end[16];
    size_t end_len;
    int filters;
    int64_t from;  /* first revision it must see */
    int64_t until; /* last revision it may see (canceled), or INT64_MAX */
    int canceled;
} wspec_t;

static int spec_wants(const wspec_t *w, const watch_event_t *ev) {
    if ((w->filters & WATCH_FILTER_NOPUT) && ev->type == WATCH_PUT) return 0;
    if ((w->filters & WATCH_FILTER_NODELETE) && ev->type == WATCH_DELETE) return 0;
    const char *k = (const char *)ev->kv.key;
    size_t kl = ev->kv.key_len;
    int ge = memcmp(k, w->key, strlen(w->key) < kl ? strlen(w->key) : kl);
    ge = ge > 0 || (ge == 0 && kl >= strlen(w->key));
    if (w->end_len == 0) return kl == strlen(w->key) && memcmp(k, w->key, kl) == 0;
    if (!ge) return 0;
    if (w->end_len == 1 && w->end[0] == 0) return 1;
    int c = memcmp(k, w->end, w->end_len < kl ? w->end_len : kl);
    return c < 0 || (c == 0 && kl < w->end_len);
}

static void random_run(unsigned seed, int async) {
    enum { NSTREAMS = 4, NWATCHERS = 80, STEPS = 3000 };
    watch_hub_options_t o = {.chunk_revisions = 1 + seed % 7, .max_watchers_per_pass = 1 + seed % 5};
    if (seed % 3 == 1) o.chunk_bytes = 1 + seed % 50; /* windows cut short by bytes too */
    if (async) {
        o.chunk_revisions = 2 + seed % 20;
        o.sync_tail_revisions = 1;
        o.max_async_reads = 1 + seed % 6;
    }
    env_t *e = env_new_ops(&o, async);
    srand(seed);
    e->lag = seed % 2;
    e->st->sloppy = seed % 3 == 0;
    fake_stream_t *fs[NSTREAMS];
    for (int i = 0; i < NSTREAMS; i++) fs[i] = fs_new(e, i == 0 ? 1000000 : 1 + rand() % 4);
    wspec_t *ws = calloc(NWATCHERS, sizeof(*ws));
    assert_non_null(ws);
    int nw = 0;
    for (int step = 0; step < STEPS; step++) {
        int dice = rand() % 100;
        if (dice < 55) {
            op_t ops[3];
            int n = 1 + rand() % 3;
            for (int i = 0; i < n; i++) {
                ops[i].key = (rand() % 10) + 10 * i; /* distinct keys */
                ops[i].del = rand() % 3 == 0;
            }
            env_txn(e, ops, n);
        } else if (dice < 62 && nw < NWATCHERS) {
            wspec_t *w = &ws[nw++];
            w->fs = fs[rand() % NSTREAMS];
            int a = rand() % NKEYS, kind = rand() % 5;
            key_name(a, w->key);
            if (kind == 1) {
                key_name(a + 1 + rand() % 8, w->end);
                w->end_len = strlen(w->end);
            } else if (kind == 2) { /* prefix "k1" */
                snprintf(w->key, sizeof(w->key), "k%d", a % 3);
                snprintf(w->end, sizeof(w->end), "k%d", a % 3 + 1);
                w->end_len = 2;
            } else if (kind == 3) {
                w->end_len = 1; /* from key: end = "\0" */
            } else if (kind == 4) {
                w->key[0] = 0; /* everything */
                w->end_len = 1;
            }
            w->filters = rand() % 6 == 0 ? WATCH_FILTER_NOPUT : (rand() % 6 == 0 ? WATCH_FILTER_NODELETE : 0);
            int64_t hub_rev = watch_hub_revision(e->hub);
            int64_t start = rand() % 2 ? 0 : 1 + rand() % (int)hub_rev;
            if (rand() % 10 == 0) start = hub_rev + 1 + rand() % 5; /* the future */
            w->id = watch_on(e, w->fs, w->key, w->end, w->end_len, start, w->filters);
            w->from = start > 0 ? start : watch_hub_revision(e->hub) + 1;
            w->until = INT64_MAX;
        } else if (dice < 64 && nw > 0) {
            wspec_t *w = &ws[rand() % nw];
            if (!w->canceled) {
                assert_int_equal(watch_hub_cancel(e->hub, w->fs->hs, w->id), WATCH_OK);
                w->canceled = 1;
                w->until = watch_hub_revision(e->hub);
            }
        } else if (dice < 70) {
            env_flush(e);
        } else if (async && dice < 73 && g_npending > 0) {
            complete_read(e->st, e->hub, rand() % g_npending); /* any order */
        } else if (async && dice < 74) {
            env_miss(e);
        } else if (dice < 82) {
            fs_drain(e, fs[rand() % NSTREAMS]);
        } else {
            watch_hub_run_pass(e->hub);
        }
        if (step % 500 == 0) {
            watch_hub_stats_t s;
            watch_hub_get_stats(e->hub, &s);
            assert_int_equal(s.synced + s.unsynced, s.watchers);
        }
    }
    /* let everybody catch up */
    env_flush(e);
    for (int i = 0; i < NSTREAMS; i++) {
        fs[i]->capacity = 1000000;
        fs_drain(e, fs[i]);
    }
    env_drain_passes(e);
    watch_hub_stats_t s;
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.unsynced, 0);
    /* the run went through the slow-consumer and catch-up paths */
    assert_true(s.refusals > 10);
    assert_true(s.history_reads > 10);
    if (async) assert_true(s.async_reads > 10);
    assert_int_equal(g_npending, 0);
    if (getenv("WATCH_TEST_VERBOSE"))
        fprintf(stderr,
                "seed %u: watchers %d deliveries %llu refusals %llu history %llu passes %llu rev %lld\n",
                seed, nw, (unsigned long long)s.deliveries, (unsigned long long)s.refusals,
                (unsigned long long)s.history_reads, (unsigned long long)s.passes, (long long)e->st->rev);
    for (int i = 0; i < nw; i++) {
        wspec_t *w = &ws[i];
        rec_t *rc = &w->fs->rec[w->id];
        size_t n = 0;
        for (int64_t r = w->from; r <= e->st->rev && r <= w->until; r++) {
            watch_batch_t *b = e->st->log[r];
            for (size_t j = 0; b && j < b->n; j++) {
                if (!spec_wants(w, &b->events[j])) continue;
                if (w->canceled && n == rc->n) break; /* a canceled watcher saw a prefix */
                assert_true(n < rc->n);
                assert_int_equal(rc->ev[n].rev, r);
                assert_int_equal(rc->ev[n].type, b->events[j].type);
                assert_memory_equal(rc->ev[n].key, b->events[j].kv.key, b->events[j].kv.key_len);
                n++;
            }
        }
        assert_int_equal(n, rc->n);
    }
    for (int i = 0; i < NSTREAMS; i++) fs_free(e, fs[i]);
    free(ws);
    env_free(e);
}

static void test_random_vs_bruteforce(void **state) {
    (void)state;
    for (unsigned seed = 1; seed <= 12; seed++) random_run(seed, 0);
}

/* The same with catch-up reads completing later, in any order, while live
 * revisions keep reaching the hub, and with lost posts: still no gap, no
 * duplicate, every watcher's exact history. */
static void test_random_async_reads_vs_bruteforce(void **state) {
    (void)state;
    for (unsigned seed = 1; seed <= 12; seed++) random_run(seed, 1);
}

/* A revision whose post to the loop failed is not lost: the hub learns of
 * it through the missed mark, its synced watchers catch it up from storage,
 * once, then take live revisions again. */
static void test_missed_revisions_caught_up(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    fake_stream_t *fs = fs_new(e, 1000);
    env_put(e, 2); /* before the watchers: deleted below */
    int64_t a = watch_on(e, fs, "k01", "", 0, 0, 0);
    int64_t b = watch_on(e, fs, "k0", "k1", 2, 0, 0);
    int64_t r2 = env_put(e, 1);
    e->lag = 1;
    int64_t r3 = env_put(e, 1); /* these two never reach the hub */
    int64_t r4 = env_del(e, 2);
    e->lag = 0;
    assert_int_equal(watch_hub_revision(e->hub), r2);
    env_miss(e);
    assert_int_equal(watch_hub_revision(e->hub), r4);
    watch_hub_stats_t s;
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.unsynced, 2);
    env_drain_passes(e);
    int64_t r5 = env_put(e, 1);
    assert_int_equal(fs->rec[a].n, 3);
    assert_int_equal(fs->rec[a].ev[0].rev, r2);
    assert_int_equal(fs->rec[a].ev[1].rev, r3);
    assert_int_equal(fs->rec[a].ev[2].rev, r5);
    assert_int_equal(fs->rec[b].n, 4);
    assert_int_equal(fs->rec[b].ev[2].rev, r4);
    assert_int_equal(fs->rec[b].ev[2].type, WATCH_DELETE);
    /* A stale mark (already behind the hub) changes nothing. */
    watch_missed_note(&e->missed, r3);
    watch_hub_check_missed(e->hub, &e->missed);
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.unsynced, 0);
    fs_free(e, fs);
    env_free(e);
}

/* An async read in flight while its watcher is cancelled: the result is
 * dropped; while writes arrive: the watcher continues exactly after the
 * window (the short rest read at once). */
static void test_async_read_races(void **state) {
    (void)state;
    watch_hub_options_t o = {.sync_tail_revisions = 2};
    env_t *e = env_new_ops(&o, 1);
    fake_stream_t *fs = fs_new(e, 1000);
    for (int i = 0; i < 10; i++) env_put(e, 3);
    int64_t gone = watch_on(e, fs, "k03", "", 0, 2, 0);
    int64_t w = watch_on(e, fs, "k03", "", 0, 2, 0);
    watch_hub_run_pass(e->hub);
    assert_int_equal(g_npending, 2);
    assert_int_equal(watch_hub_cancel(e->hub, fs->hs, gone), WATCH_OK);
    int64_t r12 = env_put(e, 3); /* live while reads run: w gets it after its window */
    int64_t r13 = env_put(e, 3);
    env_complete_all(e);
    env_drain_passes(e);
    assert_int_equal(fs->rec[gone].n, 0);
    assert_int_equal(fs->rec[w].n, 12);
    for (size_t i = 0; i < 12; i++) assert_int_equal(fs->rec[w].ev[i].rev, 2 + (int64_t)i);
    assert_int_equal(fs->rec[w].ev[11].rev, r13);
    (void)r12;
    int64_t r14 = env_put(e, 3);
    assert_int_equal(fs->rec[w].n, 13);
    assert_int_equal(fs->rec[w].ev[12].rev, r14);
    fs_free(e, fs);
    env_free(e);
}

/* ---------------------------------------------------------------------------
 * Cost: 100k watchers that do not match are never touched
 * ------------------------------------------------------------------------- */

static void test_cost_nonmatching_watchers(void **state) {
    (void)state;
    env_t *e = env_new(NULL);
    fake_stream_t *fs = fs_new(e, 1000000);
    fs->ignore_big_ids = 1;
    enum { N = 100000 };
    char key[32], end[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "/a/%06d/", i);
        snprintf(end, sizeof(end), "/a/%06d0", i); /* prefix range of "/a/NNNNNN/" */
        watch_create_t c = {.key = (uint8_t *)key,
                            .key_len = strlen(key),
                            .range_end = (uint8_t *)end,
                            .range_end_len = strlen(end),
                            .watch_id = i + 1};
        int64_t id;
        assert_int_equal(watch_hub_create(e->hub, fs->hs, &c, &id), WATCH_OK);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        watch_hub_create(e->hub, fs->hs, &(watch_create_t){.key = (uint8_t *)key, .key_len = strlen(key)},
                         &(int64_t){0});
    }
    watch_hub_reset_counters(e->hub);
    /* keys past every range: not one index node is examined */
    for (int r = 0; r < 100; r++) {
        snprintf(key, sizeof(key), "/b/%d", r);
        watch_event_t ev = {.type = WATCH_PUT,
                            .kv = {.key = (uint8_t *)key, .key_len = strlen(key), .mod_revision = 2 + r}};
        watch_hub_notify(e->hub, 2 + r, &ev, 1);
    }
    watch_hub_stats_t s;
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.index_visits, 0);
    assert_int_equal(s.matched, 0);
    assert_int_equal(s.deliveries, 0);
    /* keys between ranges: a root-to-leaf walk, no watcher */
    watch_hub_reset_counters(e->hub);
    for (int r = 0; r < 100; r++) {
        snprintf(key, sizeof(key), "/a/%06d", r * 997); /* sorts before "/a/NNNNNN/" */
        watch_event_t ev = {.type = WATCH_PUT,
                            .kv = {.key = (uint8_t *)key, .key_len = strlen(key), .mod_revision = 102 + r}};
        watch_hub_notify(e->hub, 102 + r, &ev, 1);
    }
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.matched, 0);
    assert_true(s.index_visits <= 100 * 80); /* ~ 2 * depth per key, depth ~ 2 log2(1e5) */
    /* a match touches exactly the matching watcher */
    watch_hub_reset_counters(e->hub);
    snprintf(key, sizeof(key), "/a/%06d/x", 4242);
    watch_event_t ev = {.type = WATCH_PUT,
                        .kv = {.key = (uint8_t *)key, .key_len = strlen(key), .mod_revision = 300}};
    watch_hub_notify(e->hub, 300, &ev, 1);
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.matched, 1);
    assert_int_equal(s.deliveries, 1);
    assert_int_equal(fs->rec[0].n, 0);
    assert_true(s.index_visits <= 80);
    /* a single-key write: one hash hit */
    watch_hub_reset_counters(e->hub);
    ev.kv.key = (uint8_t *)"k7";
    ev.kv.key_len = 2;
    ev.kv.mod_revision = 301;
    watch_hub_notify(e->hub, 301, &ev, 1);
    watch_hub_get_stats(e->hub, &s);
    assert_int_equal(s.matched, 1);
    assert_true(s.index_visits <= 1 + 80);
    fs_free(e, fs);
    env_free(e);
}

/* ---------------------------------------------------------------------------
 * Wire sizes against protobuf-c, and etcd's fragment rule
 * ------------------------------------------------------------------------- */

static void test_wire_size_and_fragments(void **state) {
    (void)state;
    static uint8_t big[3000];
    watch_event_t evs[6];
    const watch_event_t *evp[6];
    memset(evs, 0, sizeof(evs));
    for (int i = 0; i < 6; i++) {
        evs[i].type = i % 2 ? WATCH_DELETE : WATCH_PUT;
        evs[i].kv = (watch_kv_t){.key = (uint8_t *)"/registry/pods/x",
                                 .key_len = 16,
                                 .value = big,
                                 .value_len = i % 2 ? 0 : 1000 + 300 * (size_t)i,
                                 .create_revision = i % 2 ? 0 : 5,
                                 .mod_revision = 1000000 + i,
                                 .version = i % 2 ? 0 : 3,
                                 .lease = i == 4 ? -1 : 0};
        evs[i].has_prev = 1;
        evs[i].prev = (watch_kv_t){.key = (uint8_t *)"/registry/pods/x",
                                   .key_len = 16,
                                   .value = big,
                                   .value_len = 200,
                                   .create_revision = 5,
                                   .mod_revision = 9,
                                   .version = 2};
        evp[i] = &evs[i];
    }
    for (int with_prev = 0; with_prev < 2; with_prev++) {
        Mvccpb__Event pe[6], *pep[6];
        Mvccpb__KeyValue kv[6], pkv[6];
        size_t sum = 0;
        for (int i = 0; i < 6; i++) {
            mvccpb__event__init(&pe[i]);
            mvccpb__key_value__init(&kv[i]);
            mvccpb__key_value__init(&pkv[i]);
            pe[i].type = (Mvccpb__Event__EventType)evs[i].type;
            kv[i].key.data = (uint8_t *)evs[i].kv.key;
            kv[i].key.len = evs[i].kv.key_len;
            kv[i].value.data = (uint8_t *)evs[i].kv.value;
            kv[i].value.len = evs[i].kv.value_len;
            kv[i].create_revision = evs[i].kv.create_revision;
            kv[i].mod_revision = evs[i].kv.mod_revision;
            kv[i].version = evs[i].kv.version;
            kv[i].lease = evs[i].kv.lease;
            pe[i].kv = &kv[i];
            if (with_prev) {
                pkv[i].key.data = (uint8_t *)evs[i].prev.key;
                pkv[i].key.len = evs[i].prev.key_len;
                pkv[i].value.data = (uint8_t *)evs[i].prev.value;
                pkv[i].value.len = evs[i].prev.value_len;
                pkv[i].create_revision = evs[i].prev.create_revision;
                pkv[i].mod_revision = evs[i].prev.mod_revision;
                pkv[i].version = evs[i].prev.version;
                pe[i].prev_kv = &pkv[i];
            }
            pep[i] = &pe[i];
            sum += watch_event_wire_size(&evs[i], with_prev);
        }
        Etcdserverpb__WatchResponse wr;
        etcdserverpb__watch_response__init(&wr);
        wr.watch_id = 3;
        size_t base = etcdserverpb__watch_response__get_packed_size(&wr);
        wr.n_events = 6;
        wr.events = pep;
        assert_int_equal(etcdserverpb__watch_response__get_packed_size(&wr), base + sum);
        /* fragments: etcd's rule, every fragment under the limit unless it
         * holds a single event */
        watch_resp_t r = {.watch_id = 3, .prev_kv = with_prev, .fragment = 1, .events = evp, .n_events = 6};
        size_t limit = 2500, start = 0;
        int frags = 0;
        while (start < 6) {
            size_t end = watch_fragment_end(&r, start, base, limit);
            assert_true(end > start);
            wr.events = pep + start;
            wr.n_events = end - start;
            size_t sz = etcdserverpb__watch_response__get_packed_size(&wr);
            assert_true(end - start == 1 || sz < limit);
            if (end < 6) { /* one more event would have reached the limit */
                wr.n_events++;
                assert_true(etcdserverpb__watch_response__get_packed_size(&wr) >= limit);
            }
            start = end;
            frags++;
        }
        assert_true(frags >= 3);
    }
}

static void test_batch_refcount(void **state) {
    (void)state;
    watch_batch_t *b = watch_batch_new(9);
    assert_non_null(b);
    char key[] = "abc", val[] = "value";
    watch_kv_t kv = {
        .key = (uint8_t *)key, .key_len = 3, .value = (uint8_t *)val, .value_len = 5, .mod_revision = 9};
    assert_int_equal(watch_batch_add(b, WATCH_PUT, &kv, NULL), 0);
    assert_int_equal(watch_batch_add(b, WATCH_DELETE, &kv, &kv), 0);
    key[0] = 'X'; /* the batch owns copies */
    assert_memory_equal(b->events[0].kv.key, "abc", 3);
    assert_memory_equal(b->events[1].prev.value, "value", 5);
    assert_int_equal(b->events[0].has_prev, 0);
    assert_int_equal(b->events[1].has_prev, 1);
    watch_batch_ref(b);
    watch_batch_unref(b);
    assert_int_equal(b->refs, 1);
    watch_batch_unref(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_random_vs_bruteforce),
        cmocka_unit_test(test_key_range_prefix_fromkey),
        cmocka_unit_test(test_txn_one_response_per_revision),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_ids_errors_cancel),
        cmocka_unit_test(test_past_start_replay_then_live),
        cmocka_unit_test(test_elided_revisions_caught_up),
        cmocka_unit_test(test_chunked_catch_up),
        cmocka_unit_test(test_catch_up_bounded_by_bytes),
        cmocka_unit_test(test_watchers_per_stream_limit),
        cmocka_unit_test(test_slow_consumer_catches_up),
        cmocka_unit_test(test_compaction_cancels),
        cmocka_unit_test(test_history_error_retried),
        cmocka_unit_test(test_progress_request),
        cmocka_unit_test(test_progress_notify_tick),
        cmocka_unit_test(test_random_vs_bruteforce),
        cmocka_unit_test(test_random_async_reads_vs_bruteforce),
        cmocka_unit_test(test_missed_revisions_caught_up),
        cmocka_unit_test(test_async_read_races),
        cmocka_unit_test(test_cost_nonmatching_watchers),
        cmocka_unit_test(test_wire_size_and_fragments),
        cmocka_unit_test(test_batch_refcount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
