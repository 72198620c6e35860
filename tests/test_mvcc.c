/*
 * test_mvcc.c: the MVCC store under kv.h: key encoding order, physical
 * compaction (checked by iterating the raw LevelDB), resuming an interrupted
 * compaction recorded by an old store (32-byte 'm' record), restart,
 * snapshot-consistent reads beside the apply thread, damaged records read
 * as errors (never as a shorter answer),
 * and a randomized test against a simple in-memory reference model (Range
 * at random revisions and ranges, with deletes, txns, compactions and
 * reopens).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <leveldb/c.h>

#include "kv.h"
#include "mvcc.h"

typedef struct fx {
    char dir[256];
    mvcc_t *m;
    uint64_t index;
    mvcc_options_t opts;
} fx_t;

static void fx_open(fx_t *f) {
    char err[256];
    assert_int_equal(mvcc_open(f->dir, &f->opts, &f->m, err, sizeof(err)), 0);
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    const char *base = getenv("KSHIM_TEST_TMP");
    if (!base) base = "/tmp";
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", base);
    assert_int_equal(system(cmd), 0);
    snprintf(f->dir, sizeof(f->dir), "%s/mvcctest-XXXXXX", base);
    assert_non_null(mkdtemp(f->dir));
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    mvcc_close(f->m);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static ProtobufCBinaryData BN(const void *s, size_t n) {
    ProtobufCBinaryData b = {n, (uint8_t *)s};
    return b;
}

static ProtobufCBinaryData B(const char *s) { return BN(s, strlen(s)); }

static void apply_ok(fx_t *f, Kshim__InternalRequest *ir) {
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, ++f->index, ir, NULL, &res), 0);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
}

static void put(fx_t *f, const void *k, size_t kn, const char *v) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = BN(k, kn);
    p.value = B(v);
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.put = &p;
    apply_ok(f, &ir);
}

/* end_kind: 0 single, 1 from key ("\0"), 2 [k, end) */
static void del(fx_t *f, const void *k, size_t kn, const void *e, size_t en) {
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = BN(k, kn);
    d.range_end = BN(e, en);
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.delete_range = &d;
    apply_ok(f, &ir);
}

static int compact(fx_t *f, int64_t rev) {
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    c.revision = rev;
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.compaction = &c;
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, ++f->index, &ir, NULL, &res), 0);
    int code = res.code;
    kv_result_clear(&res);
    return code;
}

/* Compact, then wait for the compactor's physical work. */
static int compact_wait(fx_t *f, int64_t rev) {
    int code = compact(f, rev);
    if (code == 0) assert_int_equal(mvcc_compact_wait(f->m, rev), MVCC_OK);
    return code;
}

static Etcdserverpb__RangeResponse *range_at(fx_t *f, const void *k, size_t kn, const void *e, size_t en,
                                             int64_t rev, int64_t limit, int *code) {
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = BN(k, kn);
    rq.range_end = BN(e, en);
    rq.revision = rev;
    rq.limit = limit;
    kv_result_t res;
    kv_range(f->m, &rq, NULL, &res);
    *code = res.code;
    if (res.code) return NULL;
    Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(r);
    kv_result_clear(&res);
    return r;
}

/* ---- key encoding ---- */

static int bcmp_len(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
    size_t n = an < bn ? an : bn;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c < 0 ? -1 : 1;
    return an < bn ? -1 : (an > bn ? 1 : 0);
}

static void test_key_encoding_order(void **state) {
    (void)state;
    static const uint8_t alphabet[] = {0x00, 0x01, 0x02, 'a', 0xfe, 0xff};
    srand(7);
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t a[6], b[6];
        size_t an = (size_t)(rand() % 6), bn = (size_t)(rand() % 6);
        for (size_t i = 0; i < an; i++) a[i] = alphabet[rand() % 6];
        for (size_t i = 0; i < bn; i++) b[i] = alphabet[rand() % 6];
        uint8_t ea[32], eb[32];
        size_t ean = mvcc_encode_key(ea, a, an), ebn = mvcc_encode_key(eb, b, bn);
        assert_true(ean <= mvcc_encoded_key_max(an));
        /* the encoded key plus any revision suffix keeps the user key order */
        ea[ean] = (uint8_t)rand();
        eb[ebn] = (uint8_t)rand();
        int want = bcmp_len(a, an, b, bn);
        if (want != 0)
            assert_int_equal(bcmp_len(ea, ean + 1, eb, ebn + 1), want);
        else
            assert_memory_equal(ea, eb, ean);
    }
}

/* ---- raw compaction check ---- */

typedef struct raw_entry {
    char space;
    int64_t main;
    char key[16];
} raw_entry_t;

/* Lists the 'k' and 'r' entries of the closed store f->dir. */
static size_t raw_list(fx_t *f, raw_entry_t *out, size_t max) {
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, f->dir, &err);
    assert_null(err);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    size_t n = 0;
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vl);
        if (k[0] != 'k' && k[0] != 'r') continue;
        assert_true(n < max);
        raw_entry_t *e = &out[n++];
        memset(e, 0, sizeof(*e));
        e->space = (char)k[0];
        uint64_t x = 0;
        if (k[0] == 'k') {
            for (int i = 0; i < 8; i++) x = (x << 8) | k[kl - 16 + i];
            e->main = (int64_t)~x;
            memcpy(e->key, k + 1, kl - 16 - 3); /* test keys have no 0x00 */
        } else {
            for (int i = 0; i < 8; i++) x = (x << 8) | k[1 + i];
            e->main = (int64_t)x;
            memcpy(e->key, v + 1, vl - 1);
        }
    }
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    return n;
}

static void expect_raw(fx_t *f, const char *want) {
    mvcc_close(f->m);
    raw_entry_t e[64];
    size_t n = raw_list(f, e, 64);
    char got[1024];
    size_t o = 0;
    got[0] = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(got + o, sizeof(got) - o, "%c:%s@%lld ", e[i].space, e[i].key,
                              (long long)e[i].main);
    assert_string_equal(got, want);
    fx_open(f);
}

static void build_history(fx_t *f) {
    for (int i = 0; i < 5; i++) put(f, "a", 1, "x"); /* a: 2..6 */
    put(f, "b", 1, "x");                             /* 7 */
    del(f, "b", 1, "", 0);                           /* 8 */
    put(f, "c", 1, "x");                             /* 9 */
    put(f, "c", 1, "y");                             /* 10 */
    put(f, "d", 1, "x");                             /* 11 */
    del(f, "d", 1, "", 0);                           /* 12 */
    put(f, "d", 1, "z");                             /* 13 */
    assert_int_equal(mvcc_revision(f->m), 13);
}

static void test_compaction_physical(void **state) {
    fx_t *f = *state;
    build_history(f);
    mvcc_set_compact_batch(f->m, 1); /* many small batches */
    assert_int_equal(compact_wait(f, 10), 0);
    expect_raw(f, "k:a@6 k:c@10 k:d@13 k:d@12 k:d@11 r:a@6 r:c@10 r:d@11 r:d@12 r:d@13 ");
    assert_int_equal(mvcc_compact_revision(f->m), 10);
    int code;
    Etcdserverpb__RangeResponse *r = range_at(f, "a", 1, "z", 1, 9, 0, &code);
    assert_int_equal(code, 11);
    r = range_at(f, "a", 1, "z", 1, 10, 0, &code);
    assert_int_equal(code, 0);
    assert_int_equal(r->count, 2);
    assert_int_equal(r->kvs[0]->version, 5);
    assert_int_equal(r->kvs[1]->mod_revision, 10);
    assert_int_equal(r->kvs[1]->create_revision, 9);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    r = range_at(f, "a", 1, "z", 1, 12, 0, &code);
    assert_int_equal(r->count, 2);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    r = range_at(f, "a", 1, "z", 1, 11, 0, &code);
    assert_int_equal(r->count, 3);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    assert_int_equal(compact_wait(f, 13), 0);
    expect_raw(f, "k:a@6 k:c@10 k:d@13 r:a@6 r:c@10 r:d@13 ");
    /* deleting everything and compacting leaves nothing */
    del(f, "\0", 1, "\0", 1);
    assert_int_equal(compact_wait(f, 14), 0);
    expect_raw(f, "");
    assert_int_equal(mvcc_revision(f->m), 14);
    assert_int_equal(mvcc_compact_revision(f->m), 14);
}

static void test_compaction_resume_and_restart(void **state) {
    fx_t *f = *state;
    build_history(f);
    assert_int_equal(compact_wait(f, 7), 0);
    uint64_t idx = mvcc_applied_index(f->m);
    /* Forge an old store (32-byte 'm' record, no compactor record 'c') that
     * crashed in the middle of a compaction to 13: the metadata says
     * compact_rev 13 but compaction only done up to 7. */
    mvcc_close(f->m);
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, f->dir, &err);
    assert_null(err);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    size_t len;
    char *v = leveldb_get(db, ro, "m", 1, &len, &err);
    assert_non_null(v);
    assert_int_equal(len, 24); /* applied | rev | compact_rev */
    uint8_t meta[32];
    memcpy(meta, v, 24);
    leveldb_free(v);
    assert_int_equal(meta[23], 7); /* compact_rev */
    meta[23] = 13;
    memset(meta + 24, 0, 8);
    meta[31] = 7; /* compact_done of the old format */
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_put(db, wo, "m", 1, (const char *)meta, 32, &err);
    assert_null(err);
    leveldb_delete(db, wo, "c", 1, &err);
    assert_null(err);
    leveldb_writeoptions_destroy(wo);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    fx_open(f); /* resumes the compaction */
    assert_int_equal(mvcc_compact_revision(f->m), 13);
    assert_int_equal(mvcc_compact_wait(f->m, 13), MVCC_OK);
    assert_int_equal(mvcc_revision(f->m), 13);
    assert_int_equal(mvcc_applied_index(f->m), idx);
    expect_raw(f, "k:a@6 k:c@10 k:d@13 r:a@6 r:c@10 r:d@13 ");
    int code;
    Etcdserverpb__RangeResponse *r = range_at(f, "d", 1, "", 0, 0, 0, &code);
    assert_int_equal(code, 0);
    assert_int_equal(r->kvs[0]->version, 1);
    assert_int_equal(r->kvs[0]->create_revision, 13);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    /* the next write continues from the restored revision */
    put(f, "e", 1, "x");
    assert_int_equal(mvcc_revision(f->m), 14);
}

/* ---- damaged records are errors, never a shorter or emptier answer ---- */

/* Writes one raw record straight into the closed store's LevelDB. */
static void raw_leveldb_put(fx_t *f, const char *k, size_t kl, const char *v, size_t vl) {
    mvcc_close(f->m);
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, f->dir, &err);
    assert_null(err);
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_put(db, wo, k, kl, v, vl, &err);
    assert_null(err);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    leveldb_options_destroy(o);
    fx_open(f);
}

static void test_damaged_records(void **state) {
    fx_t *f = *state;
    put(f, "a", 1, "1");
    put(f, "b", 1, "2");
    int code;
    /* a 'k' key too short to hold a revision, sorting between "a" and "b" */
    raw_leveldb_put(f, "ka\x00\x01x", 5, "", 0);
    assert_null(range_at(f, "a", 1, "c", 1, 0, 0, &code));
    assert_int_not_equal(code, 0);
    /* a version record shorter than its header: key "d" at revision 2 */
    put(f, "c", 1, "3");
    uint8_t kb[64];
    size_t n = mvcc_encode_key(kb, (const uint8_t *)"d", 1);
    memset(kb + n, 0xFF, 8);
    kb[n + 7] = (uint8_t)~2;     /* main = 2 */
    memset(kb + n + 8, 0xFF, 8); /* sub = 0 */
    raw_leveldb_put(f, (const char *)kb, n + 16, "\x00", 1);
    assert_null(range_at(f, "d", 1, "", 0, 0, 0, &code));
    assert_int_not_equal(code, 0);
}

/* ---- reads on other threads see one consistent snapshot ---- */

typedef struct reader_arg {
    fx_t *f;
    volatile int stop;
    int checks;
    int bad;
} reader_arg_t;

static void *reader_main(void *p) {
    reader_arg_t *a = p;
    while (!a->stop) {
        int code;
        Etcdserverpb__RangeResponse *r = range_at(a->f, "\0", 1, "\0", 1, 0, 3, &code);
        if (!r) {
            a->bad++;
            continue;
        }
        /* writer puts one new key per revision: count == revision - 1 */
        if (r->count != r->header->revision - 1) a->bad++;
        if (r->count > 3 && (r->n_kvs != 3 || !r->more)) a->bad++;
        etcdserverpb__range_response__free_unpacked(r, NULL);
        a->checks++;
    }
    return NULL;
}

static void test_concurrent_reads(void **state) {
    fx_t *f = *state;
    reader_arg_t a = {f, 0, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &a), 0);
    for (int i = 0; i < 1500; i++) {
        char k[16];
        snprintf(k, sizeof(k), "key%05d", i);
        put(f, k, strlen(k), "v");
    }
    while (a.checks < 20) usleep(1000);
    a.stop = 1;
    pthread_join(th, NULL);
    assert_int_equal(a.bad, 0);
}

/* ---- randomized model test ---- */

typedef struct mversion {
    uint8_t key[3];
    size_t klen;
    int64_t rev;
    int tomb;
    int64_t create, version;
    char value[12];
} mversion_t;

typedef struct model {
    mversion_t *v;
    size_t n, cap;
    int64_t rev;
} model_t;

static const mversion_t *model_get(const model_t *md, const uint8_t *k, size_t kn, int64_t at) {
    const mversion_t *best = NULL;
    for (size_t i = 0; i < md->n; i++) {
        const mversion_t *x = &md->v[i];
        if (x->klen == kn && memcmp(x->key, k, kn) == 0 && x->rev <= at && (!best || x->rev >= best->rev))
            best = x;
    }
    return best && !best->tomb ? best : NULL;
}

static void model_add(model_t *md, const uint8_t *k, size_t kn, int64_t rev, int tomb, const char *val) {
    const mversion_t *p = model_get(md, k, kn, rev);
    mversion_t prev_copy;
    const mversion_t *prev = NULL;
    if (p) {
        prev_copy = *p; /* md->v may move below */
        prev = &prev_copy;
    }
    if (md->n == md->cap) {
        md->cap = md->cap ? md->cap * 2 : 256;
        md->v = realloc(md->v, md->cap * sizeof(*md->v));
    }
    mversion_t *x = &md->v[md->n];
    memset(x, 0, sizeof(*x));
    memcpy(x->key, k, kn);
    x->klen = kn;
    x->rev = rev;
    x->tomb = tomb;
    if (!tomb) {
        x->create = prev ? prev->create : rev;
        x->version = prev ? prev->version + 1 : 1;
        snprintf(x->value, sizeof(x->value), "%s", val);
    }
    md->n++;
}

/* all distinct keys of the model, sorted */
static int key_cmp(const void *a, const void *b) {
    const mversion_t *x = *(const mversion_t *const *)a, *y = *(const mversion_t *const *)b;
    return bcmp_len(x->key, x->klen, y->key, y->klen);
}

static size_t model_live(const model_t *md, int64_t at, const uint8_t *k, size_t kn, const uint8_t *e,
                         size_t en, const mversion_t **out) {
    const mversion_t **all = malloc((md->n + 1) * sizeof(*all));
    size_t na = 0;
    for (size_t i = 0; i < md->n; i++) all[na++] = &md->v[i];
    qsort(all, na, sizeof(*all), key_cmp);
    size_t n = 0;
    for (size_t i = 0; i < na; i++) {
        if (i > 0 && key_cmp(&all[i - 1], &all[i]) == 0) continue;
        const mversion_t *x = all[i];
        int in;
        if (en == 0)
            in = bcmp_len(x->key, x->klen, k, kn) == 0;
        else if (en == 1 && e[0] == 0)
            in = bcmp_len(x->key, x->klen, k, kn) >= 0;
        else
            in = bcmp_len(x->key, x->klen, k, kn) >= 0 && bcmp_len(x->key, x->klen, e, en) < 0;
        if (!in) continue;
        const mversion_t *live = model_get(md, x->key, x->klen, at);
        if (live) out[n++] = live;
    }
    free(all);
    return n;
}

static void random_key(uint8_t *k, size_t *kn) {
    static const uint8_t alphabet[] = {0x00, 'a', 'b', 0xff};
    *kn = 1 + (size_t)(rand() % 3);
    for (size_t i = 0; i < *kn; i++) k[i] = alphabet[rand() % 4];
}

static void random_range(uint8_t *k, size_t *kn, uint8_t *e, size_t *en) {
    random_key(k, kn);
    int kind = rand() % 4;
    if (kind == 0) {
        *en = 0;
    } else if (kind == 1) {
        e[0] = 0;
        *en = 1;
    } else {
        random_key(e, en);
    }
}

static void check_against_model(fx_t *f, const model_t *md, int64_t compact_rev) {
    uint8_t k[3], e[3];
    size_t kn, en;
    random_range(k, &kn, e, &en);
    int64_t lo = compact_rev > 1 ? compact_rev : 1;
    int64_t at = lo + rand() % (md->rev - lo + 1);
    int64_t limit = rand() % 3 ? 0 : 1 + rand() % 4;
    int code;
    int64_t asked = rand() % 5 ? at : 0; /* 0: the current revision */
    Etcdserverpb__RangeResponse *r = range_at(f, k, kn, e, en, asked, limit, &code);
    assert_int_equal(code, 0);
    if (!r) return;
    if (r->header->revision != md->rev)
        fail_msg("header rev %lld want %lld", (long long)r->header->revision, (long long)md->rev);
    const mversion_t **want = malloc((md->n + 1) * sizeof(*want));
    size_t nw = model_live(md, asked ? asked : md->rev, k, kn, e, en, want);
    assert_int_equal(r->count, (int64_t)nw);
    size_t shown = limit > 0 && (size_t)limit < nw ? (size_t)limit : nw;
    assert_int_equal(r->n_kvs, shown);
    assert_int_equal(r->more, limit > 0 && (size_t)limit < nw);
    for (size_t i = 0; i < shown; i++) {
        const Mvccpb__KeyValue *kv = r->kvs[i];
        assert_int_equal(kv->key.len, want[i]->klen);
        assert_memory_equal(kv->key.data, want[i]->key, want[i]->klen);
        assert_int_equal(kv->mod_revision, want[i]->rev);
        assert_int_equal(kv->create_revision, want[i]->create);
        assert_int_equal(kv->version, want[i]->version);
        assert_int_equal(kv->value.len, strlen(want[i]->value));
        assert_memory_equal(kv->value.data, want[i]->value, kv->value.len);
    }
    free(want);
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

static void test_random_model(void **state) {
    fx_t *f = *state;
    model_t md = {0};
    md.rev = 1;
    int64_t compact_rev = 0;
    int compactions = 0, checks = 0;
    srand(12345);
    for (int step = 0; step < 1500; step++) {
        int op = rand() % 100;
        uint8_t k[3], e[3];
        size_t kn, en;
        char val[12];
        snprintf(val, sizeof(val), "v%d", step);
        if (op < 50) {
            random_key(k, &kn);
            put(f, k, kn, val);
            model_add(&md, k, kn, ++md.rev, 0, val);
        } else if (op < 65) {
            random_range(k, &kn, e, &en);
            const mversion_t **live = malloc((md.n + 1) * sizeof(*live));
            size_t n = model_live(&md, md.rev, k, kn, e, en, live);
            uint8_t(*keys)[3] = malloc((n + 1) * 3);
            size_t *lens = malloc((n + 1) * sizeof(size_t));
            for (size_t i = 0; i < n; i++) {
                memcpy(keys[i], live[i]->key, live[i]->klen);
                lens[i] = live[i]->klen;
            }
            del(f, k, kn, e, en);
            if (n) md.rev++;
            for (size_t i = 0; i < n; i++) model_add(&md, keys[i], lens[i], md.rev, 1, NULL);
            free(live);
            free(keys);
            free(lens);
        } else if (op < 80) {
            /* txn: put two distinct keys if the first key does not exist */
            uint8_t k2[3];
            size_t kn2;
            random_key(k, &kn);
            do random_key(k2, &kn2);
            while (kn2 == kn && memcmp(k, k2, kn) == 0);
            Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT;
            Etcdserverpb__Compare *cp = &c;
            c.key = BN(k, kn);
            c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
            c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
            Etcdserverpb__PutRequest p1 = ETCDSERVERPB__PUT_REQUEST__INIT,
                                     p2 = ETCDSERVERPB__PUT_REQUEST__INIT;
            p1.key = BN(k, kn);
            p1.value = B(val);
            p2.key = BN(k2, kn2);
            p2.value = B(val);
            Etcdserverpb__RequestOp o1 = ETCDSERVERPB__REQUEST_OP__INIT, o2 = ETCDSERVERPB__REQUEST_OP__INIT;
            o1.request_case = o2.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            o1.request_put = &p1;
            o2.request_put = &p2;
            Etcdserverpb__RequestOp *ops[2] = {&o1, &o2};
            Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
            t.n_compare = 1;
            t.compare = &cp;
            t.n_success = 2;
            t.success = ops;
            Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
            ir.txn = &t;
            apply_ok(f, &ir);
            if (!model_get(&md, k, kn, md.rev)) {
                md.rev++;
                model_add(&md, k, kn, md.rev, 0, val);
                model_add(&md, k2, kn2, md.rev, 0, val);
            }
        } else if (op < 83) {
            int64_t lo = compact_rev + 1;
            if (lo <= md.rev) {
                int64_t c = lo + rand() % (md.rev - lo + 1);
                assert_int_equal(compact(f, c), 0);
                compact_rev = c;
                compactions++;
                int code;
                if (c > 1) assert_null(range_at(f, "a", 1, "", 0, c - 1, 0, &code));
                if (c > 1) assert_int_equal(code, 11);
                assert_int_equal(compact(f, c), 11);
            }
        } else if (op < 85) {
            mvcc_close(f->m);
            fx_open(f);
        } else {
            assert_int_equal(mvcc_revision(f->m), md.rev);
            for (int i = 0; i < 3; i++) check_against_model(f, &md, compact_rev);
            checks += 3;
        }
    }
    assert_true(compactions >= 10);
    assert_true(checks >= 500);
    assert_true(md.rev >= 900);
    free(md.v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_encoding_order),
        cmocka_unit_test_setup_teardown(test_compaction_physical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_resume_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_model, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
