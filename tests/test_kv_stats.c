/*
 * test_kv_stats.c: mvcc_stats as the kv state machine reports it, with
 * etcd 3.4's metricsTxnWrite semantics: one put per Put, one delete per
 * DeleteRange call (not per key), one range per Range, compare, prev_kv
 * read; a txn counted when one etcd txn did more than one op (a write Txn
 * is two: compares, then ops). The live-keys gauge follows creates and
 * deletes and is recounted when the store reopens. The commit histogram
 * (latency_hist.h) counts every synced write, cumulative buckets.
 */
#include "kv_fixture.h"

#include "latency_hist.h"

static mvcc_stats_t stats(fx_t *f) {
    mvcc_stats_t st;
    mvcc_stats(f->m, &st);
    return st;
}

static void get(fx_t *f, const char *k) {
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = B(k);
    kv_result_t res;
    assert_int_equal(kv_range(f->m, &r, &f->hdr, &res), 0);
    kv_result_clear(&res);
}

static void test_counts_follow_requests(void **state) {
    fx_t *f = *state;
    mvcc_stats_t s0 = stats(f);
    fx_put(f, "a", "1");
    fx_put(f, "b", "1");
    fx_put(f, "a", "2");   /* an update: no new key */
    fx_del(f, "zz", NULL); /* deletes nothing, still one DeleteRange */
    fx_del(f, "a", "c");   /* two keys, one DeleteRange */
    get(f, "a");
    mvcc_stats_t s1 = stats(f);
    assert_int_equal(s1.puts - s0.puts, 3);
    assert_int_equal(s1.deletes - s0.deletes, 2);
    assert_int_equal(s1.ranges - s0.ranges, 1);
    assert_int_equal(s1.txns - s0.txns, 0);
    assert_int_equal(s1.put_bytes - s0.put_bytes, 6); /* key + value of each Put */
    assert_int_equal(s1.keys, 0);
    fx_put(f, "k", "v");
    assert_int_equal(stats(f).keys, 1);
}

/* value(k) = v -> put x, put y: the compare alone is one read txn (not
 * counted as a txn), the two puts one write txn (counted). */
static void test_txn_counts_as_etcd(void **state) {
    fx_t *f = *state;
    fx_put(f, "k", "v");
    mvcc_stats_t s0 = stats(f);
    Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT;
    c.key = B("k");
    c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
    c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
    c.value = B("v");
    Etcdserverpb__Compare *cmps[1] = {&c};
    Etcdserverpb__PutRequest px = ETCDSERVERPB__PUT_REQUEST__INIT, py = ETCDSERVERPB__PUT_REQUEST__INIT;
    px.key = B("x");
    px.value = B("1");
    py.key = B("y");
    py.value = B("1");
    Etcdserverpb__RequestOp ox = ETCDSERVERPB__REQUEST_OP__INIT, oy = ETCDSERVERPB__REQUEST_OP__INIT;
    ox.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    ox.request_put = &px;
    oy.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    oy.request_put = &py;
    Etcdserverpb__RequestOp *ops[2] = {&ox, &oy};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.n_compare = 1;
    t.compare = cmps;
    t.n_success = 2;
    t.success = ops;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.txn = &t;
    assert_int_equal(fx_apply(f, &req), 0);
    mvcc_stats_t s1 = stats(f);
    assert_int_equal(s1.ranges - s0.ranges, 1);
    assert_int_equal(s1.puts - s0.puts, 2);
    assert_int_equal(s1.txns - s0.txns, 1);
    assert_int_equal(s1.keys, 3);
}

static void test_keys_recounted_on_open(void **state) {
    fx_t *f = *state;
    fx_put(f, "a", "1");
    fx_put(f, "b", "1");
    fx_put(f, "c", "1");
    fx_del(f, "b", NULL);
    mvcc_close(f->m);
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
    mvcc_stats_t st = stats(f);
    assert_int_equal(st.keys, 2);
    assert_int_equal(st.puts, 0); /* counters start at zero with the process, as etcd's */
}

static void test_commit_histogram(void **state) {
    fx_t *f = *state;
    mvcc_stats_t s0 = stats(f);
    for (int i = 0; i < 4; i++) fx_put(f, "h", "v");
    mvcc_stats_t s1 = stats(f);
    assert_true(s1.commit.count - s0.commit.count >= 4); /* one synced write per applied entry at least */
    for (int i = 1; i < LAT_HIST_BUCKETS; i++) assert_true(s1.commit.bucket[i] >= s1.commit.bucket[i - 1]);
    assert_true(s1.commit.count >= s1.commit.bucket[LAT_HIST_BUCKETS - 1]);
    assert_true(s1.commit.sum_ns > 0);
}

static void test_latency_hist_buckets(void **state) {
    (void)state;
    lat_hist_t h = {0};
    lat_hist_observe(&h, 500000);        /* 0.5 ms -> le 0.001 */
    lat_hist_observe(&h, 1000000);       /* 1 ms exactly -> le 0.001 */
    lat_hist_observe(&h, 3000000);       /* 3 ms -> le 0.004 */
    lat_hist_observe(&h, 9000000000ull); /* 9 s -> only +Inf */
    lat_hist_snapshot_t s;
    lat_hist_read(&h, &s);
    assert_int_equal(s.count, 4);
    assert_int_equal(s.bucket[0], 2);
    assert_int_equal(s.bucket[1], 2);
    assert_int_equal(s.bucket[2], 3);
    assert_int_equal(s.bucket[LAT_HIST_BUCKETS - 1], 3);
    assert_int_equal(s.sum_ns, 500000 + 1000000 + 3000000 + 9000000000ull);
    assert_true(lat_hist_bound_s(0) == 0.001);
    assert_true(lat_hist_bound_s(LAT_HIST_BUCKETS - 1) == 8.192);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counts_follow_requests, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_txn_counts_as_etcd, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keys_recounted_on_open, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_histogram, fx_setup, fx_teardown),
        cmocka_unit_test(test_latency_hist_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
