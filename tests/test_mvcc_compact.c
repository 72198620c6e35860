/*
 * test_mvcc_compact.c: the background compactor (storage/mvcc/mvcc_compact.c),
 * checked on the raw LevelDB contents: a hot key with thousands of versions
 * is compacted in many batches with every superseded version gone and each
 * key looked up once per run; a compaction held after a few batches (as if
 * the member had crashed there) resumes at the next open where it stopped;
 * a storage error stops the compactor for good and marks the store failed
 * (fail-stop), and the next open resumes after the last written batch;
 * writes and further compactions applied while the compactor runs are
 * correct; the Compact apply returns before the physical work and marks a
 * physical request; and a randomized history with compactions at random
 * revisions, batch sizes, holds and reopens always leaves exactly the
 * versions etcd keeps (per key: every version above C, plus the newest
 * version <= C unless it is a tombstone).
 */
#include "kv_fixture.h"

#include <leveldb/c.h>

#include "bytes.h"
#include "mvcc.h"

/* ---- raw contents ---- */

typedef struct rawv {
    char key[24];
    int64_t main, sub;
    int tomb;
} rawv_t;

typedef struct raw {
    rawv_t *k; /* 'k' entries, in LevelDB order */
    size_t nk;
    rawv_t *r; /* 'r' entries (key from the value) */
    size_t nr;
} raw_t;

static void raw_push(rawv_t **v, size_t *n, const rawv_t *e) {
    if (*n == 0 || (*n >= 64 && (*n & (*n - 1)) == 0)) {
        *v = realloc(*v, (*n ? *n * 2 : 64) * sizeof **v);
        assert_non_null(*v);
    }
    (*v)[(*n)++] = *e;
}

/* Closes the store, lists its 'k' and 'r' spaces, reopens it. Test keys have
 * no 0x00 bytes, so the escaped key is the key. */
static void raw_read(fx_t *f, raw_t *out) {
    mvcc_close(f->m);
    memset(out, 0, sizeof *out);
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, f->dir, &err);
    assert_null(err);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vl);
        rawv_t e;
        memset(&e, 0, sizeof e);
        if (k[0] == 'k') {
            assert_true(kl >= 19 && kl - 19 < sizeof e.key);
            memcpy(e.key, k + 1, kl - 19);
            e.main = (int64_t)~get_be64(k + kl - 16);
            e.sub = (int64_t)~get_be64(k + kl - 8);
            e.tomb = v[0] & 1;
            raw_push(&out->k, &out->nk, &e);
        } else if (k[0] == 'r') {
            assert_int_equal(kl, 17);
            assert_true(vl - 1 < sizeof e.key);
            memcpy(e.key, v + 1, vl - 1);
            e.main = (int64_t)get_be64(k + 1);
            e.sub = (int64_t)get_be64(k + 9);
            e.tomb = v[0];
            raw_push(&out->r, &out->nr, &e);
        }
    }
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    char e2[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, e2, sizeof e2), 0);
}

static void raw_free(raw_t *r) {
    free(r->k);
    free(r->r);
}

static size_t raw_count_key(const raw_t *r, const char *key) {
    size_t n = 0;
    for (size_t i = 0; i < r->nk; i++) n += strcmp(r->k[i].key, key) == 0;
    return n;
}

/* ---- a model of the history ---- */

typedef struct model {
    rawv_t *v; /* every version ever written, in revision order */
    size_t n;
    int64_t rev; /* store revision */
} model_t;

static void model_add(model_t *md, const char *key, int64_t main, int64_t sub, int tomb) {
    rawv_t e;
    memset(&e, 0, sizeof e);
    snprintf(e.key, sizeof e.key, "%s", key);
    e.main = main;
    e.sub = sub;
    e.tomb = tomb;
    raw_push(&md->v, &md->n, &e);
}

static int model_alive(const model_t *md, const char *key) {
    for (size_t i = md->n; i-- > 0;)
        if (strcmp(md->v[i].key, key) == 0) return !md->v[i].tomb;
    return 0;
}

/* kept[i]: is version i kept by a compaction at c? Per key: every version
 * above c, and the newest version <= c unless it is a tombstone. */
static void model_kept(const model_t *md, int64_t c, char *kept) {
    const char **seen = calloc(md->n + 1, sizeof *seen);
    size_t nseen = 0;
    assert_non_null(seen);
    for (size_t i = md->n; i-- > 0;) {
        const rawv_t *x = &md->v[i];
        kept[i] = 0;
        if (x->main > c) {
            kept[i] = 1;
            continue;
        }
        size_t j = 0;
        while (j < nseen && strcmp(seen[j], x->key) != 0) j++;
        if (j < nseen) continue; /* a newer version <= c supersedes it */
        seen[nseen++] = x->key;
        kept[i] = !x->tomb;
    }
    free(seen);
}

static int rawv_cmp_rev(const void *a, const void *b) {
    const rawv_t *x = a, *y = b;
    if (x->main != y->main) return x->main < y->main ? -1 : 1;
    return x->sub < y->sub ? -1 : (x->sub > y->sub);
}

/* The raw store holds exactly the versions the model keeps at c. */
static void expect_compacted(fx_t *f, const model_t *md, int64_t c) {
    raw_t r;
    raw_read(f, &r);
    rawv_t *want = NULL;
    size_t nw = 0;
    char *kept = malloc(md->n + 1);
    assert_non_null(kept);
    model_kept(md, c, kept);
    for (size_t i = 0; i < md->n; i++)
        if (kept[i]) raw_push(&want, &nw, &md->v[i]);
    free(kept);
    assert_int_equal(r.nr, nw);
    for (size_t i = 0; i < nw; i++) { /* 'r' is in revision order, as the model */
        if (strcmp(r.r[i].key, want[i].key) != 0 || r.r[i].main != want[i].main ||
            r.r[i].sub != want[i].sub || r.r[i].tomb != want[i].tomb)
            fail_msg("r[%zu]: got %s@%lld.%lld want %s@%lld.%lld", i, r.r[i].key, (long long)r.r[i].main,
                     (long long)r.r[i].sub, want[i].key, (long long)want[i].main, (long long)want[i].sub);
    }
    /* 'k' holds the same versions (sorted by key, newest first) */
    assert_int_equal(r.nk, nw);
    qsort(r.k, r.nk, sizeof *r.k, rawv_cmp_rev);
    for (size_t i = 0; i < nw; i++) {
        assert_string_equal(r.k[i].key, want[i].key);
        assert_int_equal(r.k[i].main, want[i].main);
        assert_int_equal(r.k[i].sub, want[i].sub);
        assert_int_equal(r.k[i].tomb, want[i].tomb);
    }
    free(want);
    raw_free(&r);
}

/* Model-tracked writes. */
static void m_put(fx_t *f, model_t *md, const char *k, const char *v) {
    fx_put(f, k, v);
    model_add(md, k, ++md->rev, 0, 0);
}

static void m_del(fx_t *f, model_t *md, const char *k) {
    int alive = model_alive(md, k);
    fx_del(f, k, NULL);
    if (alive) model_add(md, k, ++md->rev, 0, 1);
}

static void m_put_del(fx_t *f, model_t *md, const char *k) {
    fx_put_then_delete_in_txn(f, k, "t");
    md->rev++;
    model_add(md, k, md->rev, 0, 0);
    model_add(md, k, md->rev, 1, 1);
}

/* Applies a Compact; returns the result code, *physical_rev its mark. */
static int apply_compact(fx_t *f, int64_t rev, int physical, int64_t *physical_rev) {
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    c.revision = rev;
    c.physical = physical;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.compaction = &c;
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, ++f->index, &req, &f->hdr, &res), 0);
    int code = res.code;
    if (physical_rev) *physical_rev = res.physical_rev;
    kv_result_clear(&res);
    return code;
}

static void compact_now(fx_t *f, int64_t rev) {
    assert_int_equal(apply_compact(f, rev, 0, NULL), 0);
    assert_int_equal(mvcc_compact_wait(f->m, rev), MVCC_OK);
    assert_true(mvcc_compacted_through(f->m) >= rev);
}

/* The live value of k through kv_range at rev (0: current): version or 0. */
static int64_t version_of(fx_t *f, const char *k, int64_t rev, int *code) {
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = B(k);
    rq.revision = rev;
    kv_result_t res;
    kv_range(f->m, &rq, &f->hdr, &res);
    *code = res.code;
    int64_t v = 0;
    if (res.code == 0) {
        Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, res.resp_len, res.resp);
        assert_non_null(r);
        if (r->n_kvs == 1) v = r->kvs[0]->version;
        etcdserverpb__range_response__free_unpacked(r, NULL);
    }
    kv_result_clear(&res);
    return v;
}

/* hot: 3000 versions; o000..o199 once each, o000..o049 deleted again. */
static void build_hot(fx_t *f, model_t *md) {
    char k[16], v[16];
    for (int i = 0; i < 3000; i++) {
        snprintf(v, sizeof v, "h%d", i);
        m_put(f, md, "hot", v);
    }
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "o%03d", i);
        m_put(f, md, k, "x");
    }
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "o%03d", i);
        m_del(f, md, k);
    }
}

/* ---- tests ---- */

static void test_hot_key_linear(void **state) {
    fx_t *f = *state;
    model_t md = {.rev = 1};
    build_hot(f, &md);
    mvcc_set_compact_batch(f->m, 100);
    mvcc_set_compact_pause_ms(f->m, 0);
    compact_now(f, md.rev);
    mvcc_compact_stats_t st;
    mvcc_compact_stats(f->m, &st);
    assert_int_equal(st.records, 3250);
    assert_int_equal(st.keys_visited, 201); /* each key once */
    assert_int_equal(st.versions_deleted, 2999 + 100);
    assert_int_equal(st.batches, 33); /* the hot key spans most of them */
    expect_compacted(f, &md, md.rev);
    raw_t r;
    raw_read(f, &r);
    assert_int_equal(raw_count_key(&r, "hot"), 1);
    raw_free(&r);
    int code;
    assert_int_equal(version_of(f, "hot", 0, &code), 3000);
    assert_int_equal(version_of(f, "o000", 0, &code), 0);
    assert_int_equal(version_of(f, "o199", 0, &code), 1);

    /* a second run deletes the version the first one kept (v0) */
    mvcc_set_compact_batch(f->m, 100);
    mvcc_set_compact_pause_ms(f->m, 0);
    for (int i = 0; i < 500; i++) m_put(f, &md, "hot", "again");
    compact_now(f, md.rev);
    mvcc_compact_stats(f->m, &st); /* counters restart at open */
    assert_int_equal(st.records, 500);
    assert_int_equal(st.keys_visited, 1);
    assert_int_equal(st.versions_deleted, 500);
    expect_compacted(f, &md, md.rev);
    assert_int_equal(version_of(f, "hot", 0, &code), 3500);
    free(md.v);
}

static void test_resume_after_crash(void **state) {
    fx_t *f = *state;
    model_t md = {.rev = 1};
    build_hot(f, &md);
    int64_t c = md.rev - 150; /* o100..o199 and the deletes stay above c */
    mvcc_set_compact_batch(f->m, 100);
    mvcc_set_compact_pause_ms(f->m, 0);
    mvcc_compact_hold_after(f->m, 3);
    assert_int_equal(apply_compact(f, c, 0, NULL), 0);
    /* held after 3 batches: the compactor stops there, as in a crash */
    assert_int_equal(mvcc_compact_wait(f->m, c), MVCC_ERR_IO);
    mvcc_compact_stats_t st;
    mvcc_compact_stats(f->m, &st);
    assert_int_equal(st.batches, 3);
    assert_int_equal(st.records, 300);
    assert_int_equal(mvcc_compacted_through(f->m), 0);
    /* reads are right meanwhile: at c and now, and below c refused */
    int code;
    assert_int_equal(version_of(f, "hot", c, &code), 3000);
    assert_int_equal(code, 0);
    version_of(f, "hot", c - 1, &code);
    assert_int_equal(code, 11);
    /* "crash": close while held (nothing more is written), reopen: the run
     * resumes at its recorded position, not from the start */
    mvcc_close(f->m);
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
    assert_int_equal(mvcc_compact_revision(f->m), c);
    assert_int_equal(mvcc_compact_wait(f->m, c), MVCC_OK);
    mvcc_compact_stats(f->m, &st);
    assert_int_equal(st.records, (3000 + 100) - 300); /* records in (0, c] after the first 300 */
    expect_compacted(f, &md, c);
    assert_int_equal(version_of(f, "hot", 0, &code), 3000);
    free(md.v);
}

static void test_storage_error_stops(void **state) {
    fx_t *f = *state;
    model_t md = {.rev = 1};
    build_hot(f, &md);
    int64_t c = md.rev - 150;
    mvcc_set_compact_batch(f->m, 100);
    mvcc_set_compact_pause_ms(f->m, 0);
    mvcc_arm_compact_error(f->m, 3);
    assert_int_equal(mvcc_failed(f->m), 0);
    assert_int_equal(apply_compact(f, c, 0, NULL), 0);
    /* the third batch fails: the compactor stops for good (no retry), the
     * store reports it so the member stops, and a physical wait ends */
    assert_int_equal(mvcc_compact_wait(f->m, c), MVCC_ERR_IO);
    assert_int_equal(mvcc_failed(f->m), 1);
    mvcc_compact_stats_t st;
    mvcc_compact_stats(f->m, &st);
    assert_int_equal(st.batches, 2);
    /* restart: the run resumes after the two written batches and finishes */
    mvcc_close(f->m);
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
    assert_int_equal(mvcc_failed(f->m), 0);
    assert_int_equal(mvcc_compact_wait(f->m, c), MVCC_OK);
    mvcc_compact_stats(f->m, &st);
    assert_int_equal(st.records, (3000 + 100) - 200);
    expect_compacted(f, &md, c);
    free(md.v);
}

static void test_writes_during_compaction(void **state) {
    fx_t *f = *state;
    model_t md = {.rev = 1};
    build_hot(f, &md);
    int64_t c1 = md.rev;
    mvcc_set_compact_batch(f->m, 100);
    mvcc_set_compact_pause_ms(f->m, 0);
    mvcc_compact_hold_after(f->m, 2);
    assert_int_equal(apply_compact(f, c1, 0, NULL), 0);
    assert_int_equal(mvcc_compact_wait(f->m, c1), MVCC_ERR_IO);
    /* applied while the run to c1 is half done */
    for (int i = 0; i < 50; i++) m_put(f, &md, "hot", "during");
    m_del(f, &md, "o150");
    m_put(f, &md, "o000", "back");
    m_put(f, &md, "new", "n");
    m_put_del(f, &md, "txn");
    int64_t c2 = md.rev - 10;
    assert_int_equal(apply_compact(f, c2, 0, NULL), 0); /* queued behind the run to c1 */
    m_put(f, &md, "hot", "after");
    int code;
    assert_int_equal(version_of(f, "hot", 0, &code), 3051);
    assert_int_equal(version_of(f, "o000", 0, &code), 1);
    version_of(f, "hot", c2 - 1, &code);
    assert_int_equal(code, 11);
    /* release; the compactor runs while more writes arrive */
    mvcc_set_compact_batch(f->m, 7);
    mvcc_set_compact_pause_ms(f->m, 1);
    mvcc_compact_hold_after(f->m, -1);
    for (int i = 0; i < 200; i++) m_put(f, &md, i % 2 ? "hot" : "o199", "racing");
    assert_int_equal(mvcc_compact_wait(f->m, c2), MVCC_OK);
    expect_compacted(f, &md, c2);
    assert_int_equal(version_of(f, "hot", 0, &code), 3151);
    assert_int_equal(version_of(f, "o199", 0, &code), 101);
    assert_int_equal(version_of(f, "txn", 0, &code), 0);
    free(md.v);
}

static void test_physical_mark(void **state) {
    fx_t *f = *state;
    model_t md = {.rev = 1};
    for (int i = 0; i < 20; i++) m_put(f, &md, "a", "x");
    mvcc_compact_hold_after(f->m, 0); /* no physical work at all */
    int64_t pr = -1;
    /* the apply answers at once, the physical request carries its mark */
    assert_int_equal(apply_compact(f, 5, 1, &pr), 0);
    assert_int_equal(pr, 5);
    assert_int_equal(mvcc_compact_revision(f->m), 5);
    assert_int_equal(mvcc_compacted_through(f->m), 0);
    assert_int_equal(apply_compact(f, 8, 0, &pr), 0);
    assert_int_equal(pr, 0);
    assert_int_equal(apply_compact(f, 8, 1, &pr), 11); /* already compacted */
    assert_int_equal(pr, 0);
    assert_int_equal(apply_compact(f, 100, 1, &pr), 11); /* future revision */
    assert_int_equal(pr, 0);
    mvcc_compact_hold_after(f->m, -1);
    assert_int_equal(mvcc_compact_wait(f->m, 8), MVCC_OK);
    expect_compacted(f, &md, 8);
    free(md.v);
}

static void test_random_histories(void **state) {
    fx_t *f = *state;
    static const char *keys[] = {"hot", "hot", "hot", "a", "b", "c", "d", "e"};
    model_t md = {.rev = 1};
    int64_t c = 0;
    int compactions = 0, holds = 0;
    srand(4242);
    for (int step = 0; step < 4000; step++) {
        const char *k = keys[rand() % 8];
        int op = rand() % 100;
        if (op < 70) {
            m_put(f, &md, k, "v");
        } else if (op < 85) {
            m_del(f, &md, k);
        } else if (op < 90) {
            m_put_del(f, &md, k);
        } else if (op < 93 && md.rev > c) {
            int64_t nc = c + 1 + rand() % (md.rev - c);
            mvcc_set_compact_batch(f->m, (size_t)(1 + rand() % 40));
            mvcc_set_compact_pause_ms(f->m, (unsigned)(rand() % 2));
            int hold = rand() % 4 == 0;
            if (hold) mvcc_compact_hold_after(f->m, rand() % 3);
            assert_int_equal(apply_compact(f, nc, 0, NULL), 0);
            c = nc;
            compactions++;
            if (hold) {
                holds++;
                mvcc_compact_wait(f->m, c); /* returns once held (or done) */
                for (int i = 0; i < 5; i++) m_put(f, &md, keys[rand() % 8], "h");
                mvcc_close(f->m); /* crash there; the reopen resumes */
                char err[256];
                assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
            }
            if (rand() % 2) {
                assert_int_equal(mvcc_compact_wait(f->m, c), MVCC_OK);
                expect_compacted(f, &md, c);
            }
        }
    }
    assert_int_equal(mvcc_compact_wait(f->m, c), MVCC_OK);
    expect_compacted(f, &md, c);
    assert_int_equal(mvcc_revision(f->m), md.rev);
    assert_true(compactions >= 50);
    assert_true(holds >= 10);
    free(md.v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hot_key_linear, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_crash, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_storage_error_stops, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_writes_during_compaction, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_physical_mark, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_random_histories, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
