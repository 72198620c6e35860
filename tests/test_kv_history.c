/*
 * test_kv_history.c: kv_history (storage/mvcc/kv_history.c), the watch catch-up
 * read: events of a range for a revision window in revision order, grouped
 * per revision, prev_kv as etcd's watch server fills it (rev - 1, none for
 * creates), stop requests, window clamping, a key put then deleted in one
 * txn, windows crossing 256-revision block boundaries, and etcd's
 * compaction rule (from < compact revision -> compacted; from == compact
 * revision is served).
 */
#include "kv_fixture.h"
#include "mvcc.h"

static void txn_put2(fx_t *f, const char *k1, const char *k2) {
    Etcdserverpb__PutRequest p1 = ETCDSERVERPB__PUT_REQUEST__INIT, p2 = ETCDSERVERPB__PUT_REQUEST__INIT;
    p1.key = B(k1);
    p1.value = B("t1");
    p2.key = B(k2);
    p2.value = B("t2");
    Etcdserverpb__RequestOp op1 = ETCDSERVERPB__REQUEST_OP__INIT, op2 = ETCDSERVERPB__REQUEST_OP__INIT;
    op1.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op1.request_put = &p1;
    op2.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op2.request_put = &p2;
    Etcdserverpb__RequestOp *ops[2] = {&op1, &op2};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.n_success = 2;
    t.success = ops;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.txn = &t;
    assert_int_equal(fx_apply(f, &req), 0);
}

/* Compacts at rev and waits for the physical work (the background
 * compactor), as a Compact with physical=true does. */
static int compact(fx_t *f, int64_t rev) {
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    c.revision = rev;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.compaction = &c;
    int code = fx_apply(f, &req);
    if (code == 0) assert_int_equal(mvcc_compact_wait(f->m, rev), MVCC_OK);
    return code;
}

/* The collected history as text: "rev:[P|D]key=value(prev)" items. */
typedef struct out {
    char text[8192];
    size_t len;
    int calls;
    int stop_after; /* > 0: stop after that many calls */
    int64_t last_rev;
} out_t;

static int collect(void *arg, int64_t rev, const mvcc_event_t *evs, size_t n) {
    out_t *o = arg;
    assert_true(n > 0);
    assert_true(rev > o->last_rev); /* increasing, one call per revision */
    o->last_rev = rev;
    o->calls++;
    for (size_t i = 0; i < n; i++) {
        const mvcc_event_t *e = &evs[i];
        assert_int_equal(e->kv->mod_revision, rev);
        if (o->len > sizeof o->text - 256) continue; /* long runs are checked by counts only */
        int w = snprintf(o->text + o->len, sizeof o->text - o->len, "%lld:%c%.*s", (long long)rev,
                         e->type == MVCCPB__EVENT__EVENT_TYPE__PUT ? 'P' : 'D', (int)e->kv->key.len,
                         (const char *)e->kv->key.data);
        o->len += (size_t)w;
        if (e->type == MVCCPB__EVENT__EVENT_TYPE__PUT) {
            w = snprintf(o->text + o->len, sizeof o->text - o->len, "=%.*s/v%lld/c%lld",
                         (int)e->kv->value.len, (const char *)e->kv->value.data, (long long)e->kv->version,
                         (long long)e->kv->create_revision);
            o->len += (size_t)w;
        } else {
            assert_int_equal(e->kv->value.len, 0);
            assert_int_equal(e->kv->version, 0);
        }
        if (e->prev_kv) {
            w = snprintf(o->text + o->len, sizeof o->text - o->len, "(%.*s@%lld)", (int)e->prev_kv->value.len,
                         (const char *)e->prev_kv->value.data, (long long)e->prev_kv->mod_revision);
            o->len += (size_t)w;
        }
        o->text[o->len++] = ' ';
        o->text[o->len] = 0;
    }
    return o->stop_after > 0 && o->calls >= o->stop_after;
}

static int hist(fx_t *f, const char *key, const char *end, int64_t from, int64_t to, int prev, out_t *o,
                int64_t *crev) {
    return kv_history(f->m, (const uint8_t *)key, strlen(key), (const uint8_t *)end, end ? strlen(end) : 0,
                      from, to, prev, collect, o, crev);
}

/* rev 2 a=1, 3 b=1, 4 a=2, 5 txn{a=t1,c=t2}, 6 del a, 7 b=2, 8 del [b,d) */
static void load(fx_t *f) {
    fx_put(f, "a", "1");
    fx_put(f, "b", "1");
    fx_put(f, "a", "2");
    txn_put2(f, "a", "c");
    fx_del(f, "a", NULL);
    fx_put(f, "b", "2");
    fx_del(f, "b", "d");
}

static void test_single_key_with_prev(void **state) {
    fx_t *f = *state;
    load(f);
    out_t o = {0};
    int64_t crev = 0;
    assert_int_equal(hist(f, "a", NULL, 1, 100, 1, &o, &crev), KV_HISTORY_OK);
    assert_string_equal(o.text, "2:Pa=1/v1/c2 4:Pa=2/v2/c2(1@2) 5:Pa=t1/v3/c2(2@4) 6:Da(t1@5) ");
    memset(&o, 0, sizeof o);
    assert_int_equal(hist(f, "a", NULL, 1, 100, 0, &o, &crev), KV_HISTORY_OK);
    assert_string_equal(o.text, "2:Pa=1/v1/c2 4:Pa=2/v2/c2 5:Pa=t1/v3/c2 6:Da ");
}

static void test_range_and_window(void **state) {
    fx_t *f = *state;
    load(f);
    out_t o = {0};
    int64_t crev = 0;
    /* [b, d): both txn events of rev 5 that match, in one call */
    assert_int_equal(hist(f, "b", "d", 3, 8, 1, &o, &crev), KV_HISTORY_OK);
    assert_string_equal(o.text, "3:Pb=1/v1/c3 5:Pc=t2/v1/c5 7:Pb=2/v2/c3(1@3) 8:Db(2@7) 8:Dc(t2@5) ");
    assert_int_equal(o.calls, 4);
    /* the whole keyspace via range_end "\0" and an empty key, window [5, 5] */
    memset(&o, 0, sizeof o);
    assert_int_equal(kv_history(f->m, NULL, 0, (const uint8_t *)"", 1, 5, 5, 0, collect, &o, &crev),
                     KV_HISTORY_OK);
    assert_string_equal(o.text, "5:Pa=t1/v3/c2 5:Pc=t2/v1/c5 ");
    assert_int_equal(o.calls, 1);
    /* to beyond the store revision is clamped; from past it yields nothing */
    memset(&o, 0, sizeof o);
    assert_int_equal(hist(f, "b", NULL, 8, 1000, 0, &o, &crev), KV_HISTORY_OK);
    assert_string_equal(o.text, "8:Db ");
    memset(&o, 0, sizeof o);
    assert_int_equal(hist(f, "a", "z", 9, 1000, 0, &o, &crev), KV_HISTORY_OK);
    assert_int_equal(o.calls, 0);
    /* a key nobody wrote */
    memset(&o, 0, sizeof o);
    assert_int_equal(hist(f, "zz", NULL, 1, 8, 1, &o, &crev), KV_HISTORY_OK);
    assert_int_equal(o.calls, 0);
}

static void test_stop(void **state) {
    fx_t *f = *state;
    load(f);
    out_t o = {.stop_after = 2};
    int64_t crev = 0;
    assert_int_equal(hist(f, "a", "z", 1, 100, 0, &o, &crev), KV_HISTORY_OK);
    assert_int_equal(o.calls, 2);
    assert_string_equal(o.text, "2:Pa=1/v1/c2 3:Pb=1/v1/c3 ");
}

static void test_put_then_delete_same_txn(void **state) {
    fx_t *f = *state;
    fx_put(f, "k", "old");                      /* rev 2 */
    fx_put_then_delete_in_txn(f, "k", "short"); /* rev 3 */
    out_t o = {0};
    int64_t crev = 0;
    assert_int_equal(hist(f, "k", NULL, 3, 3, 1, &o, &crev), KV_HISTORY_OK);
    /* both changes; prev as etcd reads it: the version at rev - 1 */
    assert_string_equal(o.text, "3:Pk=short/v2/c2(old@2) 3:Dk(old@2) ");
}

static void test_block_boundaries(void **state) {
    fx_t *f = *state;
    char v[16];
    for (int i = 0; i < 700; i++) { /* revisions 2..701 */
        snprintf(v, sizeof v, "%d", i + 2);
        fx_put(f, i % 2 ? "odd" : "even", v);
    }
    /* windows around 256 and 512: every revision exactly once */
    int64_t windows[][2] = {{250, 260}, {255, 256}, {256, 511}, {1, 701}, {300, 700}, {511, 513}};
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        out_t o = {0};
        int64_t crev = 0;
        assert_int_equal(hist(f, "even", "oddz", windows[w][0], windows[w][1], 0, &o, &crev), KV_HISTORY_OK);
        int64_t lo = windows[w][0] < 2 ? 2 : windows[w][0];
        assert_int_equal(o.calls, windows[w][1] - lo + 1);
        assert_int_equal(o.last_rev, windows[w][1]);
    }
}

static void test_compaction_boundary(void **state) {
    fx_t *f = *state;
    load(f);
    assert_int_equal(compact(f, 5), 0);
    out_t o = {0};
    int64_t crev = 0;
    assert_int_equal(hist(f, "a", "z", 4, 100, 1, &o, &crev), KV_HISTORY_COMPACTED);
    assert_int_equal(crev, 5);
    assert_int_equal(o.calls, 0);
    /* from == compact revision is served (etcd: compacted only if start < compact) */
    crev = 0;
    assert_int_equal(hist(f, "a", "z", 5, 100, 1, &o, &crev), KV_HISTORY_OK);
    assert_int_equal(crev, 0);
    /* rev 5's versions survive; prev of rev 6's delete is a's version at 5 */
    assert_string_equal(o.text,
                        "5:Pa=t1/v3/c2 5:Pc=t2/v1/c5 6:Da(t1@5) 7:Pb=2/v2/c3(1@3) 8:Db(2@7) 8:Dc(t2@5) ");
    /* prev at a compacted revision is simply absent (as etcd) */
    assert_int_equal(compact(f, 8), 0);
    memset(&o, 0, sizeof o);
    assert_int_equal(hist(f, "a", "z", 8, 100, 1, &o, &crev), KV_HISTORY_OK);
    assert_string_equal(o.text, "");
    assert_int_equal(hist(f, "a", "z", 7, 100, 1, &o, &crev), KV_HISTORY_COMPACTED);
    assert_int_equal(crev, 8);
    fx_put(f, "a", "new"); /* rev 9: a create, never a prev */
    memset(&o, 0, sizeof o);
    assert_int_equal(hist(f, "a", NULL, 8, 9, 1, &o, &crev), KV_HISTORY_OK);
    assert_string_equal(o.text, "9:Pa=new/v1/c9 ");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_single_key_with_prev, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_range_and_window, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stop, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_put_then_delete_same_txn, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_block_boundaries, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_compaction_boundary, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
