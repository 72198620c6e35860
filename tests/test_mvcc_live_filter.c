/*
 * test_mvcc_live_filter.c: the single-key reads of write txns that skip
 * LevelDB (storage/mvcc/mvcc.c): the live-key filter (key_filter.c,
 * live_filter.c) for keys never alive, and the write group's read memo for
 * a key read again while LevelDB has not changed. The Bloom filter itself:
 * no false negatives (also with two threads adding), few false positives.
 * Then the store, applying in write groups as the apply thread does: a put
 * of a new key is answered by the filter and a Txn's put after its compare
 * by the memo, while every version, create and mod revision stays what etcd
 * gives (checked against a model through random puts, deletes, Kubernetes
 * compare-and-puts and writes of a group in its middle, across reopens that
 * build the filter again from the 'l' space, with puts while that build
 * runs); keys with 00 bytes survive the scan's unescaping; a filter over
 * its size is rebuilt larger, but not for keys that died (churn); the memo
 * forgets at a write; the loaders drop the filter; and with the read
 * failpoint armed both step aside so the counted reads happen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <cmocka.h>

#include "key_filter.h"
#include "kv_fixture.h"
#include "mvcc.h"

/* ---- the Bloom filter ---- */

static void key_of(uint64_t i, uint8_t out[24], size_t *n) {
    *n = (size_t)snprintf((char *)out, 24, "/registry/k%llu", (unsigned long long)i);
}

static void test_bloom_no_false_negatives(void **state) {
    (void)state;
    key_filter_t *f = key_filter_new(100000);
    assert_non_null(f);
    assert_true(key_filter_capacity(f) >= 100000);
    uint8_t k[24];
    size_t n;
    for (uint64_t i = 0; i < 100000; i++) {
        key_of(i, k, &n);
        key_filter_add(f, key_filter_hash(k, n));
    }
    for (uint64_t i = 0; i < 100000; i++) {
        key_of(i, k, &n);
        assert_true(key_filter_may_contain(f, key_filter_hash(k, n)));
    }
    unsigned fp = 0;
    for (uint64_t i = 100000; i < 200000; i++) {
        key_of(i, k, &n);
        fp += (unsigned)key_filter_may_contain(f, key_filter_hash(k, n));
    }
    printf("false positives at capacity: %u of 100000\n", fp);
    assert_true(fp < 1000); /* under 1% */
    key_filter_free(f);
}

typedef struct adder {
    key_filter_t *f;
    uint64_t from, to;
} adder_t;

static void *adder_main(void *p) {
    adder_t *a = p;
    uint8_t k[24];
    size_t n;
    for (uint64_t i = a->from; i < a->to; i++) {
        key_of(i, k, &n);
        key_filter_add(a->f, key_filter_hash(k, n));
    }
    return NULL;
}

static void test_bloom_concurrent_adds(void **state) {
    (void)state;
    key_filter_t *f = key_filter_new(1000); /* small: the two threads share words */
    adder_t a = {f, 0, 50000}, b = {f, 50000, 100000};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, adder_main, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, adder_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    uint8_t k[24];
    size_t n;
    for (uint64_t i = 0; i < 100000; i++) {
        key_of(i, k, &n);
        assert_true(key_filter_may_contain(f, key_filter_hash(k, n)));
    }
    assert_int_equal(key_filter_hash((const uint8_t *)"", 0), key_filter_hash((const uint8_t *)"x", 0));
    assert_int_not_equal(key_filter_hash((const uint8_t *)"a\0", 2),
                         key_filter_hash((const uint8_t *)"a", 1));
    key_filter_free(f);
}

/* ---- the store ---- */

static ProtobufCBinaryData BN(const void *s, size_t n) {
    ProtobufCBinaryData b = {n, (uint8_t *)s};
    return b;
}

static void put(fx_t *f, const void *k, size_t kn) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = BN(k, kn);
    p.value = BN("v", 1);
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.put = &p;
    assert_int_equal(fx_apply(f, &ir), 0);
}

static void del(fx_t *f, const void *k, size_t kn) {
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = BN(k, kn);
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.delete_range = &d;
    assert_int_equal(fx_apply(f, &ir), 0);
}

/* A Txn as kube-apiserver writes: mod_revision == mod ? put : get (mod 0: a
 * create). *ok: the put ran; else *cur_mod (if not NULL) gets the key's mod
 * revision from the "else get" (0: absent). */
static void cas_put(fx_t *f, const void *k, size_t kn, int64_t mod, int *ok, int64_t *cur_mod) {
    Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT;
    c.key = BN(k, kn);
    c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    c.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    c.mod_revision = mod;
    Etcdserverpb__Compare *cs[] = {&c};
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = BN(k, kn);
    p.value = BN("c", 1);
    Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op.request_put = &p;
    Etcdserverpb__RequestOp *ops[] = {&op};
    Etcdserverpb__RangeRequest g = ETCDSERVERPB__RANGE_REQUEST__INIT;
    g.key = BN(k, kn);
    Etcdserverpb__RequestOp gop = ETCDSERVERPB__REQUEST_OP__INIT;
    gop.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    gop.request_range = &g;
    Etcdserverpb__RequestOp *fails[] = {&gop};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.n_compare = 1;
    t.compare = cs;
    t.n_success = 1;
    t.success = ops;
    t.n_failure = 1;
    t.failure = fails;
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.txn = &t;
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, ++f->index, &ir, NULL, &res), 0);
    assert_int_equal(res.code, 0);
    Etcdserverpb__TxnResponse *r = etcdserverpb__txn_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(r);
    *ok = r->succeeded;
    if (!*ok && cur_mod) {
        assert_int_equal(r->n_responses, 1);
        Etcdserverpb__RangeResponse *g = r->responses[0]->response_range;
        assert_non_null(g);
        *cur_mod = g->n_kvs ? g->kvs[0]->mod_revision : 0;
    }
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    kv_result_clear(&res);
}

/* The key's newest version: 0 when absent. */
static void get(fx_t *f, const void *k, size_t kn, int64_t *version, int64_t *create_rev) {
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = BN(k, kn);
    kv_result_t res;
    kv_range(f->m, &rq, NULL, &res);
    assert_int_equal(res.code, 0);
    Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(r);
    *version = r->n_kvs ? r->kvs[0]->version : 0;
    *create_rev = r->n_kvs ? r->kvs[0]->create_revision : 0;
    etcdserverpb__range_response__free_unpacked(r, NULL);
    kv_result_clear(&res);
}

static live_filter_stats_t stats(fx_t *f) {
    live_filter_stats_t s;
    mvcc_live_filter_stats(f->m, &s);
    return s;
}

/* One empty group: a group boundary, where a finished build is taken. */
static void boundary(fx_t *f) {
    mvcc_group_begin(f->m);
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
}

/* Until the filter answers: a boundary starts a build, wait, a boundary takes it. */
static void filter_ready(fx_t *f) {
    boundary(f);
    mvcc_live_filter_wait(f->m);
    boundary(f);
    assert_true(stats(f).ready);
}

static void reopen(fx_t *f) {
    mvcc_close(f->m);
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
}

static void test_new_and_old_keys(void **state) {
    fx_t *f = *state;
    const uint8_t nul_key[] = {'n', 0, 'u', 0, 0, 'l'}; /* escaped as 00 FF in 'l' */
    mvcc_group_begin(f->m);
    put(f, "old", 3);
    put(f, nul_key, sizeof nul_key);
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    filter_ready(f);
    uint64_t skipped = stats(f).skipped;
    mvcc_group_begin(f->m);
    put(f, "new", 3); /* never alive: no seek */
    put(f, "old", 3); /* alive: version 2 */
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    assert_true(stats(f).skipped > skipped);
    int64_t v, c;
    get(f, "old", 3, &v, &c);
    assert_int_equal(v, 2);
    assert_int_equal(c, 2);
    get(f, "new", 3, &v, &c);
    assert_int_equal(v, 1);

    /* Reopen: the build scans the 'l' space; a key with 00 bytes comes back whole. */
    reopen(f);
    filter_ready(f);
    mvcc_group_begin(f->m);
    put(f, nul_key, sizeof nul_key);
    put(f, "new", 3);
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    get(f, nul_key, sizeof nul_key, &v, &c);
    assert_int_equal(v, 2);
    assert_int_equal(c, 3);
    get(f, "new", 3, &v, &c);
    assert_int_equal(v, 2);

    /* A Kubernetes create of an existing key fails its compare; of a new one, succeeds. */
    int created;
    mvcc_group_begin(f->m);
    cas_put(f, "old", 3, 0, &created, NULL);
    assert_false(created);
    cas_put(f, "pod-1", 5, 0, &created, NULL);
    assert_true(created);
    cas_put(f, "pod-1", 5, 0, &created, NULL); /* the group's own put, from the overlay */
    assert_false(created);
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    cas_put(f, "pod-1", 5, 0, &created, NULL); /* outside a group: written, read back */
    assert_false(created);
}

/* The reference: each key's version and create revision (0: absent). */
#define MODEL_KEYS 400

typedef struct model {
    int64_t version[MODEL_KEYS], create[MODEL_KEYS], mod[MODEL_KEYS];
} model_t;

static size_t model_key(unsigned i, char out[16]) { return (size_t)snprintf(out, 16, "mk%u", i); }

static void check_model(fx_t *f, const model_t *md) {
    for (unsigned i = 0; i < MODEL_KEYS; i++) {
        char k[16];
        size_t kn = model_key(i, k);
        int64_t v, c;
        get(f, k, kn, &v, &c);
        if (v != md->version[i] || c != md->create[i])
            fail_msg("key %s: version %lld create %lld, want %lld %lld", k, (long long)v, (long long)c,
                     (long long)md->version[i], (long long)md->create[i]);
    }
}

static void model_put(model_t *md, unsigned i, int64_t rev) {
    if (!md->version[i]) md->create[i] = rev;
    md->version[i]++;
    md->mod[i] = rev;
}

/* Puts, deletes and Kubernetes-style compare-and-puts (with the right mod
 * revision: applied; a wrong one: refused, the "else get" checked), with a
 * write of the group in the middle now and then (LevelDB changes under the
 * memo: it must forget). */
static void random_group(fx_t *f, model_t *md, unsigned *seed, int64_t *rev) {
    mvcc_group_begin(f->m);
    unsigned n = 1 + (unsigned)rand_r(seed) % 20;
    for (unsigned j = 0; j < n; j++) {
        unsigned i = (unsigned)rand_r(seed) % MODEL_KEYS;
        char k[16];
        size_t kn = model_key(i, k);
        int op = rand_r(seed) % 10, ok;
        int64_t cur = -1;
        if (op == 0) {
            if (!md->version[i]) continue; /* a delete of nothing makes no revision */
            del(f, k, kn);
            ++*rev;
            md->version[i] = md->create[i] = md->mod[i] = 0;
        } else if (op <= 3) {
            put(f, k, kn);
            model_put(md, i, ++*rev);
        } else if (op <= 7) {
            cas_put(f, k, kn, md->mod[i], &ok, NULL);
            assert_true(ok);
            model_put(md, i, ++*rev);
        } else if (op == 8) {
            cas_put(f, k, kn, md->mod[i] + 1, &ok, &cur);
            assert_false(ok);
            assert_int_equal(cur, md->mod[i]);
        } else {
            assert_int_equal(mvcc_group_flush(f->m), MVCC_OK);
        }
    }
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
}

static void test_random_against_model(void **state) {
    fx_t *f = *state;
    model_t *md = calloc(1, sizeof *md);
    unsigned seed = 12345;
    int64_t rev = 1;
    uint64_t skipped = 0, memo_hits = 0;
    for (int round = 0; round < 6; round++) {
        /* the first boundary starts a build; these groups run beside it */
        for (int g = 0; g < 40; g++) random_group(f, md, &seed, &rev);
        mvcc_live_filter_wait(f->m);
        for (int g = 0; g < 40; g++) random_group(f, md, &seed, &rev);
        assert_true(stats(f).ready);
        check_model(f, md);
        skipped += stats(f).skipped; /* counted per open */
        memo_hits += mvcc_read_memo_hits(f->m);
        reopen(f);
        check_model(f, md);
    }
    assert_true(skipped > 0);   /* the filter answered some of the reads */
    assert_true(memo_hits > 0); /* and the memo some */
    free(md);
}

/* Puts the keys <prefix>0 .. <prefix>n-1 in write groups of 1000, each
 * deleted right after its put when churn is set; k gets the last key. */
static void put_keys(fx_t *f, const char *prefix, uint64_t n, int churn, char k[24]) {
    for (uint64_t i = 0; i < n;) {
        mvcc_group_begin(f->m);
        for (int j = 0; j < 1000 && i < n; j++, i++) {
            size_t kn = (size_t)snprintf(k, 24, "%s%llu", prefix, (unsigned long long)i);
            put(f, k, kn);
            if (churn) del(f, k, kn);
        }
        assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    }
}

static void test_rebuilt_when_full(void **state) {
    fx_t *f = *state;
    filter_ready(f);
    uint64_t cap = stats(f).capacity;
    assert_true(cap >= 65536);
    char k[24];
    put_keys(f, "f", cap + 1, 0, k);
    assert_true(stats(f).keys > cap);
    filter_ready(f); /* over its size: a larger one is built */
    live_filter_stats_t s = stats(f);
    assert_true(s.capacity > cap);
    assert_true(s.builds >= 2);
    /* the new filter holds the keys: puts of them find their versions */
    mvcc_group_begin(f->m);
    put(f, "f7", 2);
    put(f, k, strlen(k));
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    int64_t v, c;
    get(f, "f7", 2, &v, &c);
    assert_int_equal(v, 2);
    get(f, k, strlen(k), &v, &c);
    assert_int_equal(v, 2);
}

/* A Txn's compare reads the key; its put reads it again from the group's
 * memo. After a write of the group in its middle the memo must not answer
 * with the version from before it. */
static void test_memo_forgets_at_a_write(void **state) {
    fx_t *f = *state;
    put(f, "cm", 2); /* rev 2, outside a group */
    uint64_t hits = mvcc_read_memo_hits(f->m);
    int ok;
    mvcc_group_begin(f->m);
    cas_put(f, "cm", 2, 2, &ok, NULL); /* compare, then the put from the memo */
    assert_true(ok);
    assert_true(mvcc_read_memo_hits(f->m) > hits);
    assert_int_equal(mvcc_group_flush(f->m), MVCC_OK); /* "cm" at rev 3 now in LevelDB */
    int64_t cur = -1;
    cas_put(f, "cm", 2, 2, &ok, &cur); /* the memo said mod 2 before the write */
    assert_false(ok);
    assert_int_equal(cur, 3);
    cas_put(f, "cm", 2, 3, &ok, NULL);
    assert_true(ok);
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    int64_t v, c;
    get(f, "cm", 2, &v, &c);
    assert_int_equal(v, 3);
    assert_int_equal(c, 2);
}

/* Keys created and deleted (Kubernetes events): the filter fills up with
 * dead keys; the one built next is sized for the keys alive, not for all
 * that were ever added, so churn does not grow it. */
static void test_churn_does_not_grow_it(void **state) {
    fx_t *f = *state;
    filter_ready(f);
    live_filter_stats_t s0 = stats(f);
    char k[24];
    put_keys(f, "ev", s0.capacity + 1, 1, k);
    assert_true(stats(f).keys > s0.capacity);
    filter_ready(f);
    live_filter_stats_t s1 = stats(f);
    assert_int_equal(s1.builds, s0.builds + 1);
    assert_int_equal(s1.capacity, s0.capacity);
    assert_int_equal(s1.keys, 0); /* none alive at its scan, none put since */
}

static void test_loader_drops_it(void **state) {
    fx_t *f = *state;
    filter_ready(f);
    mvcc_load_t *l = NULL;
    assert_int_equal(mvcc_load_begin(f->m, &l), MVCC_OK);
    assert_false(stats(f).ready);
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    kv.key = BN("loaded", 6);
    kv.value = BN("x", 1);
    kv.create_revision = kv.mod_revision = 2;
    kv.version = 1;
    assert_int_equal(mvcc_load_version(l, &kv, 0, 0), MVCC_OK);
    assert_int_equal(mvcc_load_finish(l, 2, 0), MVCC_OK);
    mvcc_load_free(l);
    f->index = 0;
    filter_ready(f); /* built again, from the loaded store */
    mvcc_group_begin(f->m);
    put(f, "loaded", 6);
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    int64_t v, c;
    get(f, "loaded", 6, &v, &c);
    assert_int_equal(v, 2);
    assert_int_equal(c, 2);
}

static void test_read_failpoint_bypasses_it(void **state) {
    fx_t *f = *state;
    filter_ready(f);
    uint64_t skipped = stats(f).skipped;
    mvcc_arm_read_error(f->m, 1);
    mvcc_group_begin(f->m);
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = BN("brand-new", 9);
    p.value = BN("v", 1);
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.put = &p;
    kv_result_t res;
    int rc = kv_apply(f->m, ++f->index, &ir, NULL, &res);
    kv_result_clear(&res);
    mvcc_group_abort(f->m);
    assert_int_not_equal(rc, 0); /* the read happened, and failed */
    assert_false(mvcc_read_error_armed(f->m));
    assert_int_equal(stats(f).skipped, skipped);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bloom_no_false_negatives),
        cmocka_unit_test(test_bloom_concurrent_adds),
        cmocka_unit_test_setup_teardown(test_new_and_old_keys, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_random_against_model, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rebuilt_when_full, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_churn_does_not_grow_it, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_memo_forgets_at_a_write, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_loader_drops_it, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_failpoint_bypasses_it, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
