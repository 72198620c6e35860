/*
 * test_kv_stats.c: mvcc_stats as the kv state machine reports it, with
 * etcd 3.4's metricsTxnWrite semantics: one put per Put, one delete per
 * DeleteRange call (not per key), one range per Range, compare, prev_kv
 * read; a txn counted when one etcd txn did more than one op (a write Txn
 * is two: compares, then ops). The live-keys gauge follows creates and
 * deletes, is stored with the metadata ("mk", written in the same LevelDB
 * write as 'm') and read back when the store reopens, without a scan; a
 * store without it, or whose "mk" was not written with its 'm' (an older
 * kshimd applied entries since), is counted once at open and gets it;
 * an aborted write group leaves the count as it was. The commit histogram
 * (latency_hist.h) counts every synced write, cumulative buckets.
 */
#include "kv_fixture.h"

#include "latency_hist.h"

#include <leveldb/c.h>

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

/* ---- the stored count, checked on the raw LevelDB with the store closed ---- */

static leveldb_t *raw_open(const char *dir, leveldb_options_t **opts) {
    *opts = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(*opts, dir, &err);
    assert_null(err);
    return db;
}

static void raw_close(leveldb_t *db, leveldb_options_t *opts) {
    leveldb_close(db);
    leveldb_options_destroy(opts);
}

/* The 'l' entries (one per live key). */
static int64_t raw_scan_live(leveldb_t *db) {
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    int64_t n = 0;
    for (leveldb_iter_seek(it, "l", 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == 0 || k[0] != 'l') break;
        n++;
    }
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    return n;
}

static uint64_t be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static void put_be(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

/* key's value, which must be len bytes, into out; 0 if absent. */
static int raw_get(leveldb_t *db, const char *key, uint8_t *out, size_t len) {
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    char *err = NULL;
    size_t vl = 0;
    char *v = leveldb_get(db, ro, key, strlen(key), &vl, &err);
    leveldb_readoptions_destroy(ro);
    assert_null(err);
    if (!v) return 0;
    assert_int_equal(vl, len);
    memcpy(out, v, len);
    leveldb_free(v);
    return 1;
}

static void raw_put(leveldb_t *db, const char *key, size_t klen, const void *val, size_t vlen) {
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    char *err = NULL;
    leveldb_put(db, wo, key, klen, val, vlen, &err);
    leveldb_writeoptions_destroy(wo);
    assert_null(err);
}

static void raw_delete(leveldb_t *db, const char *key, size_t klen) {
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    char *err = NULL;
    leveldb_delete(db, wo, key, klen, &err);
    leveldb_writeoptions_destroy(wo);
    assert_null(err);
}

/* "mk" holds the scanned count and names the 'm' record beside it. */
static void assert_count_stored(leveldb_t *db) {
    uint8_t m[24], mk[24];
    assert_true(raw_get(db, "m", m, sizeof m));
    assert_true(raw_get(db, "mk", mk, sizeof mk));
    assert_int_equal(be64(mk), raw_scan_live(db));
    assert_int_equal(be64(mk + 8), be64(m));      /* applied index */
    assert_int_equal(be64(mk + 16), be64(m + 8)); /* revision */
}

static void reopen(fx_t *f) {
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
}

static void test_keys_stored_with_meta(void **state) {
    fx_t *f = *state;
    fx_put(f, "a", "1");
    fx_put(f, "b", "1");
    mvcc_group_begin(f->m); /* one write for three entries, as the apply thread */
    fx_put(f, "c", "1");
    fx_put(f, "a", "2");
    fx_del(f, "b", NULL);
    assert_int_equal(mvcc_group_end(f->m), 0);
    assert_int_equal(stats(f).keys, 2);
    mvcc_close(f->m);
    leveldb_options_t *o;
    leveldb_t *db = raw_open(f->dir, &o);
    assert_count_stored(db);
    assert_int_equal(raw_scan_live(db), 2);
    /* Take an 'l' entry away behind the store's back: open must read the
     * stored count (2), not scan (which would find 1). */
    raw_delete(db, "lc\x00\x01", 4);
    assert_int_equal(raw_scan_live(db), 1);
    raw_close(db, o);
    reopen(f);
    assert_int_equal(stats(f).keys, 2);
}

static void test_keys_counted_once_without_record(void **state) {
    fx_t *f = *state;
    fx_put(f, "a", "1");
    fx_put(f, "b", "1");
    fx_put(f, "c", "1");
    fx_del(f, "a", NULL);
    mvcc_close(f->m);
    leveldb_options_t *o;
    leveldb_t *db = raw_open(f->dir, &o);
    raw_delete(db, "mk", 2); /* a store from before the record */
    raw_close(db, o);
    reopen(f);
    assert_int_equal(stats(f).keys, 2);
    mvcc_close(f->m);
    db = raw_open(f->dir, &o);
    assert_count_stored(db); /* written at that open */
    raw_close(db, o);
    reopen(f);
    assert_int_equal(stats(f).keys, 2);
    fx_put(f, "d", "1");
    assert_int_equal(stats(f).keys, 3);
}

/* An older kshimd opening the store applies entries and moves 'm' without
 * touching "mk": the count no longer names 'm' and is counted again. */
static void test_keys_recounted_when_meta_moved(void **state) {
    fx_t *f = *state;
    fx_put(f, "a", "1");
    fx_put(f, "b", "1");
    mvcc_close(f->m);
    leveldb_options_t *o;
    leveldb_t *db = raw_open(f->dir, &o);
    uint8_t m[24];
    assert_true(raw_get(db, "m", m, sizeof m));
    put_be(m, be64(m) + 1);         /* applied index + 1 */
    put_be(m + 8, be64(m + 8) + 1); /* revision + 1: a put of a new key */
    raw_put(db, "m", 1, m, sizeof m);
    raw_put(db, "lz\x00\x01", 4, "", 0);
    raw_close(db, o);
    reopen(f);
    assert_int_equal(stats(f).keys, 3);
    mvcc_close(f->m);
    db = raw_open(f->dir, &o);
    assert_count_stored(db);
    raw_close(db, o);
    reopen(f);
}

static void test_keys_group_abort(void **state) {
    fx_t *f = *state;
    fx_put(f, "a", "1");
    mvcc_group_begin(f->m);
    fx_put(f, "b", "1");
    fx_put(f, "c", "1");
    mvcc_group_abort(f->m); /* nothing of it stored */
    f->index -= 2;
    assert_int_equal(stats(f).keys, 1);
    fx_put(f, "d", "1");
    assert_int_equal(stats(f).keys, 2);
    mvcc_close(f->m);
    leveldb_options_t *o;
    leveldb_t *db = raw_open(f->dir, &o);
    assert_count_stored(db);
    assert_int_equal(raw_scan_live(db), 2);
    raw_close(db, o);
    reopen(f);
    assert_int_equal(stats(f).keys, 2);
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
        cmocka_unit_test_setup_teardown(test_keys_stored_with_meta, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keys_counted_once_without_record, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keys_recounted_when_meta_moved, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_keys_group_abort, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_histogram, fx_setup, fx_teardown),
        cmocka_unit_test(test_latency_hist_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
