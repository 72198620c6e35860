/*
 * test_node.c: the raft thread with a real WAL in a temp dir: 4 concurrent
 * proposers, apply sees every entry exactly once in contiguous index order,
 * group commit batches (fewer fdatasyncs than proposals), restart re-delivers
 * everything above applied_index (and the core keeps nothing at or below
 * it), a new log on a state machine already at index 7 starts after it,
 * persist_state releases WAL segments, and
 * start refuses what it cannot serve. Bounds: past max_inflight a proposal
 * is refused with RAFT_NODE_ERR_BUSY at once while the in-memory log stays
 * bounded, and a blocked apply callback with a full apply queue does not stop
 * the raft thread from ticking, syncing and committing. The send rule: only
 * the leader's Apps and heartbeats may leave before the ready's fdatasync.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "node.h"
#include "node_internal.h"
#include "test_raft_util.h"

#define THREADS 4
#define PER_THREAD 2500
#define TOTAL (THREADS * PER_THREAD)
#define MAX_IDX 40000

typedef struct applied {
    pthread_mutex_t mu;
    uint64_t first, last; /* indices delivered this run */
    uint64_t n_data;      /* non-empty entries delivered */
    uint8_t seen[THREADS][PER_THREAD];
    char *payload[MAX_IDX]; /* by index */
    size_t n_conf;          /* CONF_CHANGE entries seen */
    uint64_t persisted;     /* what persist_state reported */
    uint64_t persist_calls;
    int errors;
} applied_t;

static void applied_init(applied_t *a, uint64_t applied_index) {
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
    a->last = applied_index;
}

static void applied_free(applied_t *a) {
    for (size_t i = 0; i < MAX_IDX; i++) free(a->payload[i]);
    pthread_mutex_destroy(&a->mu);
}

/* A state machine at applied_index on the heap (applied_drop frees it). */
static applied_t *applied_new(uint64_t applied_index) {
    applied_t *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    applied_init(a, applied_index);
    return a;
}

static void applied_drop(applied_t *a) {
    applied_free(a);
    free(a);
}

static void on_apply(void *ctx, const raft_entry_t *ents, size_t n, uint64_t term) {
    applied_t *a = ctx;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < n; i++) {
        const raft_entry_t *e = &ents[i];
        if (e->index != a->last + 1 || e->term > term || e->index >= MAX_IDX) a->errors++;
        if (!a->first) a->first = e->index;
        a->last = e->index;
        if (e->index < MAX_IDX) {
            free(a->payload[e->index]);
            a->payload[e->index] = e->len ? strndup((const char *)e->data, e->len) : strdup("");
        }
        if (e->type == RAFT_ENTRY_CONF_CHANGE) {
            a->n_conf++; /* the bootstrap membership entry of a new log */
            continue;
        }
        if (!e->len) continue;
        a->n_data++;
        int t, k;
        if (sscanf(a->payload[e->index], "t%d-%d", &t, &k) == 2 && t >= 0 && t < THREADS && k >= 0 &&
            k < PER_THREAD)
            a->seen[t][k]++;
    }
    pthread_mutex_unlock(&a->mu);
}

static uint64_t on_persist(void *ctx) {
    applied_t *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->persisted = a->last;
    a->persist_calls++;
    uint64_t v = a->last;
    pthread_mutex_unlock(&a->mu);
    return v;
}

typedef struct proposer {
    raft_node_t *node;
    int t, lo, hi;
    int errors;
} proposer_t;

static void *propose_thread(void *arg) {
    proposer_t *p = arg;
    for (int k = p->lo; k < p->hi; k++) {
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "t%d-%d", p->t, k);
        int rc;
        while ((rc = raft_node_propose(p->node, buf, (size_t)len)) == RAFT_NODE_ERR_BUSY) {
            struct timespec ts = {0, 100 * 1000}; /* too many in flight: a client retries */
            nanosleep(&ts, NULL);
        }
        if (rc != RAFT_NODE_OK) p->errors++;
    }
    return NULL;
}

static raft_node_t *start(const char *dir, applied_t *a, uint64_t applied_index, int with_persist) {
    static const uint64_t peers[] = {1};
    raft_node_config_t cfg = {.id = 1,
                              .peer_ids = peers,
                              .n_peers = 1,
                              .wal_dir = dir,
                              .applied_index = applied_index,
                              .tick_ms = 10,
                              .apply = on_apply,
                              .persist_state = with_persist ? on_persist : NULL,
                              .ctx = a,
                              .wal_segment_bytes = 64 * 1024,
                              .persist_every = 1000};
    raft_node_t *n = NULL;
    char err[256] = "";
    int rc = raft_node_start(&cfg, &n, err, sizeof(err));
    if (rc != 0) fprintf(stderr, "start: %s\n", err);
    assert_int_equal(rc, 0);
    return n;
}

static void wait_applied(applied_t *a, uint64_t index) {
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&a->mu);
        uint64_t last = a->last;
        pthread_mutex_unlock(&a->mu);
        if (last >= index) return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("timed out waiting for index %llu", (unsigned long long)index);
}

static void wait_data(applied_t *a, uint64_t n) {
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&a->mu);
        uint64_t got = a->n_data;
        pthread_mutex_unlock(&a->mu);
        if (got >= n) return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("timed out waiting for %llu entries", (unsigned long long)n);
}

/* A restart on dir with a new state machine *b at k: waits until `until`
 * is applied, without errors, delivery starting at k + 1. */
static raft_node_t *restart(const char *dir, uint64_t k, int with_persist, uint64_t until, applied_t **b) {
    *b = applied_new(k);
    raft_node_t *n = start(dir, *b, k, with_persist);
    wait_applied(*b, until);
    pthread_mutex_lock(&(*b)->mu);
    assert_int_equal((*b)->errors, 0);
    assert_int_equal((*b)->first, k + 1);
    pthread_mutex_unlock(&(*b)->mu);
    return n;
}

static void run_proposers(raft_node_t *n, int lo, int hi) {
    pthread_t th[THREADS];
    proposer_t p[THREADS];
    for (int t = 0; t < THREADS; t++) {
        p[t] = (proposer_t){.node = n, .t = t, .lo = lo, .hi = hi};
        assert_int_equal(pthread_create(&th[t], NULL, propose_thread, &p[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(p[t].errors, 0);
    }
}

static void test_propose_apply_restart(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "node");
    applied_t *a = applied_new(0);
    raft_node_t *n = start(dir, a, 0, 0);
    raft_node_status_t st;
    raft_node_status(n, &st);
    assert_int_equal(st.leader, 1); /* a single voter leads at once */
    run_proposers(n, 0, PER_THREAD);
    wait_data(a, TOTAL);
    raft_node_status(n, &st);
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->errors, 0);
    assert_int_equal(a->first, 1);
    assert_int_equal(a->n_data, TOTAL);
    assert_int_equal(a->n_conf, 1); /* a new single-voter log starts with its membership */
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < PER_THREAD; k++) assert_int_equal(a->seen[t][k], 1);
    uint64_t last = a->last;
    pthread_mutex_unlock(&a->mu);
    /* The status is refreshed after the apply callback returns: wait for it. */
    for (int i = 0; i < 500 && st.applied_index < last; i++) {
        usleep(2000);
        raft_node_status(n, &st);
    }
    assert_int_equal(st.applied_index, last);
    assert_int_equal(st.proposals, TOTAL);
    fprintf(stderr, "group commit: %llu fdatasyncs for %d proposals\n", (unsigned long long)st.wal_syncs,
            TOTAL);
    assert_true(st.wal_syncs > 0);
    assert_true(st.wal_syncs < TOTAL);
    raft_node_stop(n);

    /* restart with the state machine at k: k+1.. come again, same data, in
     * order; the core's log starts at k (the WAL's entries up to it were
     * read for their terms only) */
    uint64_t k = 4321;
    applied_t *b = applied_new(k);
    n = start(dir, b, k, 0);
    raft_node_status(n, &st);
    assert_true(st.log_entries <= last + 1 - k);
    wait_applied(b, last + 1); /* + the new term's empty entry */
    pthread_mutex_lock(&b->mu);
    assert_int_equal(b->errors, 0);
    assert_int_equal(b->first, k + 1);
    for (uint64_t i = k + 1; i <= last; i++) assert_string_equal(b->payload[i], a->payload[i]);
    assert_string_equal(b->payload[last + 1], "");
    pthread_mutex_unlock(&b->mu);
    /* new proposals land after the recovered ones */
    assert_int_equal(raft_node_propose(n, "after", 5), RAFT_NODE_OK);
    wait_applied(b, last + 2);
    pthread_mutex_lock(&b->mu);
    assert_string_equal(b->payload[last + 2], "after");
    pthread_mutex_unlock(&b->mu);
    raft_node_stop(n);

    /* a state machine ahead of the log means the log lost data: refuse */
    applied_t *c = applied_new(0);
    static const uint64_t peers[] = {1};
    raft_node_config_t cfg = {.id = 1,
                              .peer_ids = peers,
                              .n_peers = 1,
                              .wal_dir = dir,
                              .applied_index = last + 1000,
                              .apply = on_apply,
                              .ctx = c};
    char err[256] = "";
    assert_int_equal(raft_node_start(&cfg, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "applied"));

    applied_drop(a);
    applied_drop(b);
    applied_drop(c);
    test_rm_rf(dir);
}

/* A new member whose state machine already holds index 7 (a restored
 * store): its log starts after 7, with no bootstrap entries; a restart
 * keeps it there. */
static void test_bootstrap_at_applied(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "node-at");
    applied_t *a = applied_new(7);
    raft_node_t *n = start(dir, a, 7, 0);
    assert_int_equal(raft_node_propose(n, "x", 1), RAFT_NODE_OK);
    wait_applied(a, 9); /* 8: the new leader's empty entry, 9: x */
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->errors, 0);
    assert_int_equal(a->first, 8);
    assert_int_equal(a->n_conf, 0);
    assert_string_equal(a->payload[9], "x");
    pthread_mutex_unlock(&a->mu);
    raft_node_status_t st;
    raft_node_status(n, &st);
    assert_int_equal(st.leader, 1);
    raft_node_stop(n);
    applied_t *b;
    n = restart(dir, 9, 0, 10, &b); /* 10: the next term's empty entry */
    raft_node_stop(n);
    applied_drop(a);
    applied_drop(b);
    test_rm_rf(dir);
}

/* persist_state every 1000 entries lets the WAL drop segments; a restart at
 * the persisted index still delivers everything after it. */
static void test_persist_and_release(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "node-rel");
    applied_t *a = applied_new(0);
    raft_node_t *n = start(dir, a, 0, 1);
    for (int wave = 0; wave < 10; wave++) {
        run_proposers(n, wave * PER_THREAD / 10, (wave + 1) * PER_THREAD / 10);
        wait_data(a, (uint64_t)(wave + 1) * TOTAL / 10);
    }
    raft_node_status_t st;
    raft_node_status(n, &st);
    raft_node_stop(n);
    pthread_mutex_lock(&a->mu);
    assert_true(a->persist_calls >= 5);
    uint64_t persisted = a->persisted, last = a->last;
    pthread_mutex_unlock(&a->mu);
    /* 10000 entries of ~30 bytes would be ~300 KiB: most segments are gone */
    assert_true(st.wal_bytes < 200 * 1024);

    applied_t *b;
    n = restart(dir, persisted, 1, last + 1, &b);
    pthread_mutex_lock(&b->mu);
    for (uint64_t i = persisted + 1; i <= last; i++) assert_string_equal(b->payload[i], a->payload[i]);
    pthread_mutex_unlock(&b->mu);
    raft_node_stop(n);
    applied_drop(a);
    applied_drop(b);
    test_rm_rf(dir);
}

static void test_start_refusals(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "node-bad");
    applied_t *a = applied_new(0);
    static const uint64_t three[] = {1, 2, 3}, other[] = {2};
    raft_node_config_t cfg = {
        .id = 1, .peer_ids = three, .n_peers = 3, .wal_dir = dir, .apply = on_apply, .ctx = a};
    raft_node_t *n = NULL;
    char err[256] = "";
    assert_int_equal(raft_node_start(&cfg, &n, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cfg.send")); /* a cluster member needs a transport */
    assert_null(n);
    cfg.peer_ids = other;
    cfg.n_peers = 1;
    assert_int_equal(raft_node_start(&cfg, &n, err, sizeof(err)), -1);
    cfg.peer_ids = three;
    cfg.n_peers = 1;
    cfg.apply = NULL;
    assert_int_equal(raft_node_start(&cfg, &n, err, sizeof(err)), -1);
    applied_drop(a);
    test_rm_rf(dir);
}

/* ---------------------------------------------------------------- bounds */

/* An apply callback that can be held shut (a stalled state machine). */
typedef struct gated {
    applied_t a;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int closed;
    int blocked; /* the apply thread is waiting at the gate */
} gated_t;

static void on_apply_gated(void *ctx, const raft_entry_t *ents, size_t n, uint64_t term) {
    gated_t *g = ctx;
    pthread_mutex_lock(&g->mu);
    while (g->closed) {
        g->blocked = 1;
        pthread_cond_wait(&g->cv, &g->mu);
    }
    g->blocked = 0;
    pthread_mutex_unlock(&g->mu);
    on_apply(&g->a, ents, n, term);
}

static void gate_set(gated_t *g, int closed) {
    pthread_mutex_lock(&g->mu);
    g->closed = closed;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static raft_node_t *start_gated(const char *dir, gated_t *g, size_t max_inflight, size_t apply_queue) {
    static const uint64_t peers[] = {1};
    raft_node_config_t cfg = {.id = 1,
                              .peer_ids = peers,
                              .n_peers = 1,
                              .wal_dir = dir,
                              .tick_ms = 10,
                              .apply = on_apply_gated,
                              .ctx = g,
                              .wal_segment_bytes = 64 * 1024,
                              .max_inflight = max_inflight,
                              .apply_queue_entries = apply_queue};
    raft_node_t *n = NULL;
    char err[256] = "";
    int rc = raft_node_start(&cfg, &n, err, sizeof(err));
    if (rc != 0) fprintf(stderr, "start: %s\n", err);
    assert_int_equal(rc, 0);
    return n;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Polls the status until done(st) (no timing assertion: a generous cap). */
static void wait_status(raft_node_t *n, int (*done)(const raft_node_status_t *, uint64_t), uint64_t arg,
                        raft_node_status_t *st) {
    for (int i = 0; i < 3000; i++) {
        raft_node_status(n, st);
        if (done(st, arg)) return;
        sleep_ms(5);
    }
    fail_msg("node status never reached the expected state");
}

static int all_applied(const raft_node_status_t *st, uint64_t arg) {
    (void)arg;
    return st->inflight == 0 && st->applied_index == st->last_index && st->commit_index == st->last_index;
}

static int committed_to(const raft_node_status_t *st, uint64_t index) { return st->commit_index >= index; }
static int ticks_past(const raft_node_status_t *st, uint64_t ticks) { return st->ticks >= ticks; }

static void gated_init(gated_t *g) {
    applied_init(&g->a, 0);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

static void gated_drop(gated_t *g) {
    applied_free(&g->a);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

/* A gated node on dir with its bootstrap entries applied, then the gate
 * shut: *base is its last index then (gated_drop frees g). */
static raft_node_t *start_shut(const char *dir, gated_t **g, size_t max_inflight, size_t apply_queue,
                               uint64_t *base) {
    *g = calloc(1, sizeof(**g));
    assert_non_null(*g);
    gated_init(*g);
    raft_node_t *n = start_gated(dir, *g, max_inflight, apply_queue);
    raft_node_status_t st;
    wait_status(n, all_applied, 0, &st);
    *base = st.last_index;
    gate_set(*g, 1);
    return n;
}

/* With the state machine stalled, max_inflight proposals are accepted and
 * every later one is refused with BUSY at once (the call returns: it never
 * waits for room); once apply resumes, proposals are accepted again and the
 * in-memory log never holds much more than the bound. */
static void test_busy_past_bound(void **state) {
    (void)state;
    enum { BOUND = 16, REFUSED = 10000, MORE = 3000 };
    char dir[256];
    test_mkdtemp(dir, "node-busy");
    gated_t *g;
    uint64_t base;
    raft_node_t *n = start_shut(dir, &g, BOUND, 0, &base);
    raft_node_status_t st;
    for (int i = 0; i < BOUND; i++) assert_int_equal(raft_node_propose(n, "in", 2), RAFT_NODE_OK);
    for (int i = 0; i < REFUSED; i++) assert_int_equal(raft_node_propose(n, "over", 4), RAFT_NODE_ERR_BUSY);
    raft_node_status(n, &st);
    assert_int_equal(st.busy_refusals, REFUSED);
    assert_true(st.inflight <= BOUND);
    wait_status(n, committed_to, base + BOUND, &st); /* accepted ones still commit */
    assert_true(st.inflight <= BOUND);
    assert_true(st.log_entries <= BOUND + 256 + 8);
    gate_set(g, 0);
    wait_status(n, all_applied, 0, &st);
    assert_int_equal(st.inflight, 0);

    /* a steady stream with retries: the in-memory log stays bounded */
    uint64_t max_log = 0, busy = 0;
    for (int i = 0; i < MORE; i++) {
        int rc;
        while ((rc = raft_node_propose(n, "more", 4)) == RAFT_NODE_ERR_BUSY) {
            busy++;
            sleep_ms(1);
        }
        assert_int_equal(rc, RAFT_NODE_OK);
        raft_node_status(n, &st);
        if (st.log_entries > max_log) max_log = st.log_entries;
    }
    wait_status(n, all_applied, 0, &st);
    fprintf(stderr,
            "bounded log: max %llu in-memory entries over %d proposals (bound %d), %llu BUSY retries\n",
            (unsigned long long)max_log, MORE, BOUND, (unsigned long long)busy);
    assert_true(max_log <= BOUND + 256 + 8);
    pthread_mutex_lock(&g->a.mu);
    assert_int_equal(g->a.errors, 0);
    assert_int_equal(g->a.n_data, BOUND + MORE);
    pthread_mutex_unlock(&g->a.mu);
    raft_node_stop(n);
    gated_drop(g);
    test_rm_rf(dir);
}

/* The apply callback blocks and the apply queue (4 entries) fills up: the
 * raft thread must not wait for it. Each proposal is its own ready round (we
 * wait for its commit before the next), so a hand-off that waited for room
 * would stop at the fifth; instead every one commits, ticks go on, and the
 * entries are applied, in order, once the callback returns. */
static void test_blocked_apply_does_not_stop_ticks(void **state) {
    (void)state;
    enum { PROPOSALS = 50 };
    char dir[256];
    test_mkdtemp(dir, "node-tick");
    gated_t *g;
    uint64_t base;
    raft_node_t *n = start_shut(dir, &g, 1000, 4, &base);
    raft_node_status_t st;
    for (int i = 0; i < PROPOSALS; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof(buf), "t0-%d", i);
        assert_int_equal(raft_node_propose(n, buf, (size_t)len), RAFT_NODE_OK);
        wait_status(n, committed_to, base + (uint64_t)i + 1, &st);
    }
    uint64_t ticks = st.ticks;
    wait_status(n, ticks_past, ticks + 10, &st); /* still ticking with apply stuck */
    assert_true(st.applied_index < base + PROPOSALS);
    assert_int_equal(st.inflight, st.last_index - st.applied_index);
    pthread_mutex_lock(&g->mu);
    assert_true(g->blocked);
    pthread_mutex_unlock(&g->mu);
    gate_set(g, 0);
    wait_status(n, all_applied, 0, &st);
    pthread_mutex_lock(&g->a.mu);
    assert_int_equal(g->a.errors, 0);
    assert_int_equal(g->a.n_data, PROPOSALS);
    for (int i = 0; i < PROPOSALS; i++) assert_int_equal(g->a.seen[0][i], 1);
    pthread_mutex_unlock(&g->a.mu);
    raft_node_stop(n);
    gated_drop(g);
    test_rm_rf(dir);
}

/* ---------------------------------------------------------------- send order */

typedef struct sent {
    raft_msg_type_t types[16];
    int snap[16]; /* went to send_snapshot */
    size_t n;
} sent_t;

static void rec_send(void *ctx, const raft_msg_t *m) {
    sent_t *s = ctx;
    s->snap[s->n] = 0;
    s->types[s->n++] = m->type;
}

static void rec_snap(void *ctx, const raft_msg_t *m) {
    sent_t *s = ctx;
    s->snap[s->n] = 1;
    s->types[s->n++] = m->type;
}

/* node_send_msgs (node_peers.c), as handle_ready calls it: early = 1 before
 * the fdatasync, early = 0 after it. */
static void test_send_order(void **state) {
    (void)state;
    raft_msg_t msgs[] = {{.type = RAFT_MSG_APP},         {.type = RAFT_MSG_VOTE_RESP},
                         {.type = RAFT_MSG_HEARTBEAT},   {.type = RAFT_MSG_APP_RESP},
                         {.type = RAFT_MSG_SNAP},        {.type = RAFT_MSG_READ_INDEX_RESP},
                         {.type = RAFT_MSG_TIMEOUT_NOW}, {.type = RAFT_MSG_HEARTBEAT_RESP}};
    raft_ready_t rd = {.msgs = msgs, .n_msgs = 8};
    raft_node_t *n = calloc(1, sizeof(*n));
    sent_t s = {0};
    n->cfg.send = rec_send;
    n->cfg.send_snapshot = rec_snap;
    n->cfg.ctx = &s;
    /* the leader: its log may go out while it is written ... */
    node_send_msgs(n, &rd, 1, 1);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.types[0], RAFT_MSG_APP);
    assert_int_equal(s.types[1], RAFT_MSG_HEARTBEAT);
    /* ... everything else after the sync, the snapshot to send_snapshot */
    node_send_msgs(n, &rd, 1, 0);
    assert_int_equal(s.n, 8);
    for (size_t i = 2; i < 8; i++) {
        assert_true(s.types[i] != RAFT_MSG_APP && s.types[i] != RAFT_MSG_HEARTBEAT);
        assert_int_equal(s.snap[i], s.types[i] == RAFT_MSG_SNAP);
    }
    /* a follower (or candidate) sends nothing before the sync, all after */
    s.n = 0;
    node_send_msgs(n, &rd, 0, 1);
    assert_int_equal(s.n, 0);
    node_send_msgs(n, &rd, 0, 0);
    assert_int_equal(s.n, 8);
    free(n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_refusals),       cmocka_unit_test(test_propose_apply_restart),
        cmocka_unit_test(test_bootstrap_at_applied), cmocka_unit_test(test_persist_and_release),
        cmocka_unit_test(test_busy_past_bound),      cmocka_unit_test(test_blocked_apply_does_not_stop_ticks),
        cmocka_unit_test(test_send_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
