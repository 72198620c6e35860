/*
 * test_kv.c: etcd KV semantics of storage/kv/kv.h, request in / response out
 * through protobuf-c exactly as the services use it: revisions and versions,
 * Range flags (limit, more, count, sort, filters, keys_only, count_only),
 * binary keys, past revisions, Put options and errors, DeleteRange, Txn
 * compares (incl. ranges) and nested txns, request validation, idempotent
 * apply by index, the events hook and the quota.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv.h"

/* ---- fixture ---- */

typedef struct fx {
    char dir[256];
    mvcc_t *m;
    uint64_t index;
    kv_header_info_t hdr;
    mvcc_options_t opts;
} fx_t;

static int lease_exists_77(void *ctx, int64_t id) {
    (void)ctx;
    return id == 77;
}

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
    snprintf(f->dir, sizeof(f->dir), "%s/kvtest-XXXXXX", base);
    assert_non_null(mkdtemp(f->dir));
    f->hdr.cluster_id = 111;
    f->hdr.member_id = 222;
    f->hdr.raft_term = 3;
    f->opts.lease_exists = lease_exists_77;
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

/* ---- request helpers ---- */

static ProtobufCBinaryData B(const char *s) {
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

static ProtobufCBinaryData BN(const char *s, size_t n) {
    ProtobufCBinaryData b = {n, (uint8_t *)s};
    return b;
}

static int apply(fx_t *f, Kshim__InternalRequest *ir, kv_result_t *res) {
    int rc = kv_apply(f->m, ++f->index, ir, &f->hdr, res);
    assert_int_equal(rc, 0);
    return res->code;
}

static Etcdserverpb__PutResponse *put_full(fx_t *f, Etcdserverpb__PutRequest *p, int expect_code) {
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.put = p;
    kv_result_t res;
    assert_int_equal(apply(f, &ir, &res), expect_code);
    if (expect_code) {
        kv_result_clear(&res);
        return NULL;
    }
    Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(r);
    assert_int_equal(res.revision, r->header->revision);
    kv_result_clear(&res);
    return r;
}

static int64_t put(fx_t *f, const char *k, const char *v) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(k);
    p.value = B(v);
    Etcdserverpb__PutResponse *r = put_full(f, &p, 0);
    int64_t rev = r->header->revision;
    assert_int_equal(r->header->cluster_id, 111);
    assert_int_equal(r->header->member_id, 222);
    assert_int_equal(r->header->raft_term, 3);
    etcdserverpb__put_response__free_unpacked(r, NULL);
    return rev;
}

static int64_t putn(fx_t *f, const char *k, size_t klen, const char *v) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = BN(k, klen);
    p.value = B(v);
    Etcdserverpb__PutResponse *r = put_full(f, &p, 0);
    int64_t rev = r->header->revision;
    etcdserverpb__put_response__free_unpacked(r, NULL);
    return rev;
}

static Etcdserverpb__DeleteRangeResponse *del_full(fx_t *f, const char *k, const char *end, int prev) {
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B(k);
    if (end) d.range_end = end[0] ? B(end) : BN("", 1);
    d.prev_kv = prev;
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.delete_range = &d;
    kv_result_t res;
    assert_int_equal(apply(f, &ir, &res), 0);
    Etcdserverpb__DeleteRangeResponse *r =
        etcdserverpb__delete_range_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(r);
    kv_result_clear(&res);
    return r;
}

static Etcdserverpb__RangeResponse *range_req(fx_t *f, Etcdserverpb__RangeRequest *rq, int expect_code) {
    kv_result_t res;
    int rc = kv_range(f->m, rq, &f->hdr, &res);
    assert_int_equal(res.code, expect_code);
    if (expect_code) {
        assert_int_equal(rc, -1);
        kv_result_clear(&res);
        return NULL;
    }
    assert_int_equal(rc, 0);
    Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(r);
    kv_result_clear(&res);
    return r;
}

/* end: NULL single key, "" means "\0" (from key), else range_end */
static Etcdserverpb__RangeResponse *get(fx_t *f, const char *k, const char *end, int64_t rev) {
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = B(k);
    if (end) rq.range_end = end[0] ? B(end) : BN("", 1);
    rq.revision = rev;
    return range_req(f, &rq, 0);
}

static void assert_kv(const Mvccpb__KeyValue *kv, const char *k, size_t klen, const char *v, int64_t create,
                      int64_t mod, int64_t ver) {
    assert_int_equal(kv->key.len, klen);
    assert_memory_equal(kv->key.data, k, klen);
    if (v) {
        assert_int_equal(kv->value.len, strlen(v));
        assert_memory_equal(kv->value.data, v, strlen(v));
    }
    assert_int_equal(kv->create_revision, create);
    assert_int_equal(kv->mod_revision, mod);
    assert_int_equal(kv->version, ver);
}

/* ---- tests ---- */

static void test_revisions_versions(void **state) {
    fx_t *f = *state;
    assert_int_equal(mvcc_revision(f->m), 1);
    assert_int_equal(put(f, "a", "1"), 2);
    assert_int_equal(put(f, "a", "2"), 3);
    assert_int_equal(put(f, "b", "x"), 4);
    Etcdserverpb__RangeResponse *r = get(f, "a", NULL, 0);
    assert_int_equal(r->n_kvs, 1);
    assert_int_equal(r->count, 1);
    assert_false(r->more);
    assert_int_equal(r->header->revision, 4);
    assert_int_equal(r->header->cluster_id, 111);
    assert_kv(r->kvs[0], "a", 1, "2", 2, 3, 2);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* prev_kv on put */
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B("a");
    p.value = B("3");
    p.prev_kv = 1;
    Etcdserverpb__PutResponse *pr = put_full(f, &p, 0);
    assert_non_null(pr->prev_kv);
    assert_kv(pr->prev_kv, "a", 1, "2", 2, 3, 2);
    assert_int_equal(pr->header->revision, 5);
    etcdserverpb__put_response__free_unpacked(pr, NULL);

    /* delete, then re-create: version restarts, new create revision */
    Etcdserverpb__DeleteRangeResponse *d = del_full(f, "a", NULL, 1);
    assert_int_equal(d->deleted, 1);
    assert_int_equal(d->header->revision, 6);
    assert_int_equal(d->header->member_id, 222);
    assert_int_equal(d->n_prev_kvs, 1);
    assert_kv(d->prev_kvs[0], "a", 1, "3", 2, 5, 3);
    etcdserverpb__delete_range_response__free_unpacked(d, NULL);
    r = get(f, "a", NULL, 0);
    assert_int_equal(r->n_kvs, 0);
    assert_int_equal(r->count, 0);
    assert_int_equal(r->header->revision, 6);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    assert_int_equal(put(f, "a", "new"), 7);
    r = get(f, "a", NULL, 0);
    assert_kv(r->kvs[0], "a", 1, "new", 7, 7, 1);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* deleting nothing does not bump the revision */
    d = del_full(f, "zzz", NULL, 0);
    assert_int_equal(d->deleted, 0);
    assert_int_equal(d->header->revision, 7);
    etcdserverpb__delete_range_response__free_unpacked(d, NULL);
    assert_int_equal(mvcc_revision(f->m), 7);

    /* past revisions */
    r = get(f, "a", NULL, 3);
    assert_int_equal(r->n_kvs, 1);
    assert_kv(r->kvs[0], "a", 1, "2", 2, 3, 2);
    assert_int_equal(r->header->revision, 7); /* header: current revision */
    etcdserverpb__range_response__free_unpacked(r, NULL);
    r = get(f, "a", NULL, 6);
    assert_int_equal(r->n_kvs, 0);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    r = get(f, "a", NULL, 1);
    assert_int_equal(r->n_kvs, 0);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* future revision */
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = B("a");
    rq.revision = 8;
    kv_result_t res;
    assert_int_equal(kv_range(f->m, &rq, &f->hdr, &res), -1);
    assert_int_equal(res.code, 11);
    assert_string_equal(res.message, "etcdserver: mvcc: required revision is a future revision");
    kv_result_clear(&res);
}

static void test_delete_range_one_revision(void **state) {
    fx_t *f = *state;
    put(f, "k1", "a");
    put(f, "k2", "b");
    put(f, "k3", "c");
    put(f, "x", "d");
    Etcdserverpb__DeleteRangeResponse *d = del_full(f, "k", "l", 1);
    assert_int_equal(d->deleted, 3);
    assert_int_equal(d->header->revision, 6);
    assert_int_equal(d->n_prev_kvs, 3);
    assert_kv(d->prev_kvs[1], "k2", 2, "b", 3, 3, 1);
    etcdserverpb__delete_range_response__free_unpacked(d, NULL);
    /* from-key delete of everything >= "a" */
    d = del_full(f, "a", "", 0);
    assert_int_equal(d->deleted, 1);
    assert_int_equal(d->n_prev_kvs, 0);
    assert_int_equal(d->header->revision, 7);
    etcdserverpb__delete_range_response__free_unpacked(d, NULL);
    Etcdserverpb__RangeResponse *r = get(f, "\0", "", 0);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = BN("\0", 1);
    rq.range_end = BN("\0", 1);
    r = range_req(f, &rq, 0);
    assert_int_equal(r->count, 0);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    rq.revision = 5;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->count, 4);
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

/* Binary keys: every listed key in byte order. */
static const struct {
    const char *k;
    size_t n;
} BKEYS[] = {
    {"\0", 1},    {"\0\0", 2}, {"\0\x01", 2}, {"a", 1},       {"a\0", 2}, {"a\0\0", 3}, {"a\0\xff", 3},
    {"a\x01", 2}, {"ab", 2},   {"a\xff", 2},  {"a\xff\0", 3}, {"b", 1},   {"\xff", 1},  {"\xff\xff", 2},
};
#define NBKEYS (sizeof(BKEYS) / sizeof(BKEYS[0]))

static void put_bkeys(fx_t *f) {
    /* in a scrambled order so revisions differ from key order */
    for (size_t i = 0; i < NBKEYS; i++) {
        size_t j = (i * 5) % NBKEYS;
        char v[16];
        snprintf(v, sizeof(v), "v%zu", j);
        putn(f, BKEYS[j].k, BKEYS[j].n, v);
    }
}

static size_t bkey_index(const ProtobufCBinaryData *b) {
    for (size_t i = 0; i < NBKEYS; i++)
        if (b->len == BKEYS[i].n && memcmp(b->data, BKEYS[i].k, b->len) == 0) return i;
    fail_msg("unknown key");
    return 0;
}

static void check_range_indexes(fx_t *f, const char *k, size_t kn, const char *e, size_t en, size_t first,
                                size_t last_excl) {
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = BN(k, kn);
    rq.range_end = BN(e, en);
    Etcdserverpb__RangeResponse *r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, last_excl - first);
    assert_int_equal(r->count, (int64_t)(last_excl - first));
    for (size_t i = 0; i < r->n_kvs; i++) assert_int_equal(bkey_index(&r->kvs[i]->key), first + i);
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

static void test_binary_keys_order(void **state) {
    fx_t *f = *state;
    put_bkeys(f);
    check_range_indexes(f, "\0", 1, "\0", 1, 0, NBKEYS);    /* all */
    check_range_indexes(f, "a", 1, "b", 1, 3, 11);          /* prefix a */
    check_range_indexes(f, "a\0", 2, "a\x01", 2, 4, 7);     /* prefix a\0 */
    check_range_indexes(f, "a\xff", 2, "\0", 1, 9, NBKEYS); /* from key */
    check_range_indexes(f, "\0", 1, "\0\x01", 2, 0, 2);
    check_range_indexes(f, "\xff", 1, "\xff\xff\xff", 3, 12, NBKEYS);
    check_range_indexes(f, "b", 1, "a", 1, 0, 0); /* end < key: empty */
    /* single keys */
    for (size_t i = 0; i < NBKEYS; i++) check_range_indexes(f, BKEYS[i].k, BKEYS[i].n, "", 0, i, i + 1);
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = BN("a\0\x01", 3);
    Etcdserverpb__RangeResponse *r = range_req(f, &rq, 0);
    assert_int_equal(r->count, 0);
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

static void test_range_limit_sort_filters(void **state) {
    fx_t *f = *state;
    /* keys k0..k9, versions: ki written (i % 3) + 1 times */
    char key[8];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 10; i++) {
            if (round > i % 3) continue;
            snprintf(key, sizeof(key), "k%d", i);
            char v[8];
            snprintf(v, sizeof(v), "%c", 'z' - i);
            put(f, key, v);
        }
    put(f, "l", "outside");
    int64_t cur = mvcc_revision(f->m);
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = B("k");
    rq.range_end = B("l");
    rq.limit = 3;
    Etcdserverpb__RangeResponse *r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 3);
    assert_true(r->more);
    assert_int_equal(r->count, 10);
    assert_int_equal(r->header->revision, cur);
    assert_memory_equal(r->kvs[2]->key.data, "k2", 2);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    rq.limit = 10;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 10);
    assert_false(r->more);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* the largest limit is no limit (fuzz_kv_request: limit + 1 overflowed) */
    rq.limit = INT64_MAX;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 10);
    assert_false(r->more);
    assert_int_equal(r->count, 10);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* keys_only, count_only */
    rq.limit = 0;
    rq.keys_only = 1;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 10);
    for (size_t i = 0; i < r->n_kvs; i++) {
        assert_int_equal(r->kvs[i]->value.len, 0);
        assert_true(r->kvs[i]->version >= 1);
    }
    etcdserverpb__range_response__free_unpacked(r, NULL);
    rq.keys_only = 0;
    rq.count_only = 1;
    rq.limit = 2;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 0);
    assert_int_equal(r->count, 10);
    assert_false(r->more);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    rq.count_only = 0;

    /* sort by value descending with limit: values z..q for k0..k9 */
    rq.limit = 2;
    rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 2);
    assert_true(r->more);
    assert_int_equal(r->count, 10);
    assert_memory_equal(r->kvs[0]->key.data, "k9", 2);
    assert_memory_equal(r->kvs[1]->key.data, "k8", 2);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* sort_order NONE with a non-key target means ascending */
    rq.limit = 0;
    rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 10);
    for (size_t i = 1; i < r->n_kvs; i++) assert_true(r->kvs[i - 1]->version <= r->kvs[i]->version);
    assert_int_equal(r->kvs[9]->version, 3);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* descending by key */
    rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
    r = range_req(f, &rq, 0);
    assert_memory_equal(r->kvs[0]->key.data, "k9", 2);
    assert_memory_equal(r->kvs[9]->key.data, "k0", 2);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* descending by mod revision */
    rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
    r = range_req(f, &rq, 0);
    for (size_t i = 1; i < r->n_kvs; i++) assert_true(r->kvs[i - 1]->mod_revision > r->kvs[i]->mod_revision);
    etcdserverpb__range_response__free_unpacked(r, NULL);

    /* filters: count stays the number of keys in the range (etcd) */
    rq.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    rq.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
    rq.min_mod_revision = 12; /* writes of round 1 and 2 */
    rq.limit = 1;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->count, 10);
    assert_int_equal(r->n_kvs, 1);
    assert_true(r->more);
    assert_memory_equal(r->kvs[0]->key.data, "k1", 2);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    rq.limit = 0;
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 6); /* k1 k2 k4 k5 k7 k8 */
    assert_false(r->more);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    rq.min_mod_revision = 0;
    rq.max_create_revision = 4; /* k0 k1 k2 created at 2 3 4 */
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 3);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    rq.max_create_revision = 0;
    rq.min_create_revision = 10; /* k8 k9 */
    rq.max_mod_revision = 11;    /* and not rewritten: k9 */
    r = range_req(f, &rq, 0);
    assert_int_equal(r->n_kvs, 1);
    assert_memory_equal(r->kvs[0]->key.data, "k9", 2);
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

static void test_put_options_errors(void **state) {
    fx_t *f = *state;
    kv_result_t res;
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    /* validation */
    assert_int_equal(kv_validate_put(f->m, &p, &res), -1);
    assert_int_equal(res.code, 3);
    assert_string_equal(res.message, "etcdserver: key is not provided");
    p.key = B("a");
    p.ignore_value = 1;
    p.value = B("x");
    assert_int_equal(kv_validate_put(f->m, &p, &res), -1);
    assert_string_equal(res.message, "etcdserver: value is provided");
    p.value = B("");
    p.ignore_value = 0;
    p.ignore_lease = 1;
    p.lease = 5;
    assert_int_equal(kv_validate_put(f->m, &p, &res), -1);
    assert_string_equal(res.message, "etcdserver: lease is provided");
    p.lease = 0;
    assert_int_equal(kv_validate_put(f->m, &p, &res), 0);

    /* ignore_lease on a missing key */
    put_full(f, &p, 3);
    assert_int_equal(mvcc_revision(f->m), 1);
    /* unknown lease */
    Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
    q.key = B("a");
    q.value = B("v");
    q.lease = 5;
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.put = &q;
    assert_int_equal(apply(f, &ir, &res), 5);
    assert_string_equal(res.message, "etcdserver: requested lease not found");
    assert_int_equal(res.revision, 1);
    kv_result_clear(&res);
    /* known lease (hook says 77 exists) */
    q.lease = 77;
    Etcdserverpb__PutResponse *r = put_full(f, &q, 0);
    assert_int_equal(r->header->revision, 2);
    etcdserverpb__put_response__free_unpacked(r, NULL);
    /* ignore_value keeps value, takes new lease; ignore_lease keeps lease */
    Etcdserverpb__PutRequest iv = ETCDSERVERPB__PUT_REQUEST__INIT;
    iv.key = B("a");
    iv.ignore_lease = 1;
    iv.value = B("w");
    r = put_full(f, &iv, 0);
    etcdserverpb__put_response__free_unpacked(r, NULL);
    Etcdserverpb__RangeResponse *g = get(f, "a", NULL, 0);
    assert_kv(g->kvs[0], "a", 1, "w", 2, 3, 2);
    assert_int_equal(g->kvs[0]->lease, 77);
    etcdserverpb__range_response__free_unpacked(g, NULL);
    iv.ignore_lease = 0;
    iv.ignore_value = 1;
    iv.value = B("");
    r = put_full(f, &iv, 0);
    etcdserverpb__put_response__free_unpacked(r, NULL);
    g = get(f, "a", NULL, 0);
    assert_kv(g->kvs[0], "a", 1, "w", 2, 4, 3);
    assert_int_equal(g->kvs[0]->lease, 0);
    etcdserverpb__range_response__free_unpacked(g, NULL);

    /* empty key on range / delete */
    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    assert_int_equal(kv_validate_range(f->m, &rq, &res), -1);
    assert_string_equal(res.message, "etcdserver: key is not provided");
    Etcdserverpb__DeleteRangeRequest dq = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    assert_int_equal(kv_validate_delete(f->m, &dq, &res), -1);
    assert_int_equal(res.code, 3);
}

/* ---- txn helpers ---- */

typedef struct txb {
    Etcdserverpb__TxnRequest t;
    Etcdserverpb__Compare cmp[8];
    Etcdserverpb__Compare *cmpp[8];
    Etcdserverpb__RequestOp ops[2][140];
    Etcdserverpb__RequestOp *opp[2][140];
    Etcdserverpb__PutRequest puts[2][140];
    Etcdserverpb__DeleteRangeRequest dels[2][8];
    Etcdserverpb__RangeRequest ranges[2][8];
} txb_t;

static void txb_init(txb_t *b) {
    memset(b, 0, sizeof(*b));
    etcdserverpb__txn_request__init(&b->t);
    b->t.compare = b->cmpp;
    b->t.success = b->opp[0];
    b->t.failure = b->opp[1];
}

static Etcdserverpb__Compare *txb_cmp(txb_t *b, const char *k, int target, int result) {
    Etcdserverpb__Compare *c = &b->cmp[b->t.n_compare];
    etcdserverpb__compare__init(c);
    c->key = B(k);
    c->target = target;
    c->result = result;
    b->cmpp[b->t.n_compare++] = c;
    return c;
}

static Etcdserverpb__RequestOp *txb_op(txb_t *b, int branch) {
    size_t *n = branch ? &b->t.n_failure : &b->t.n_success;
    Etcdserverpb__RequestOp *op = &b->ops[branch][*n];
    etcdserverpb__request_op__init(op);
    b->opp[branch][*n] = op;
    (*n)++;
    return op;
}

static Etcdserverpb__PutRequest *txb_put(txb_t *b, int branch, const char *k, const char *v) {
    Etcdserverpb__RequestOp *op = txb_op(b, branch);
    size_t i = (size_t)(op - b->ops[branch]);
    Etcdserverpb__PutRequest *p = &b->puts[branch][i];
    etcdserverpb__put_request__init(p);
    p->key = B(k);
    p->value = B(v);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op->request_put = p;
    return p;
}

static Etcdserverpb__DeleteRangeRequest *txb_del(txb_t *b, int branch, const char *k, const char *end) {
    Etcdserverpb__RequestOp *op = txb_op(b, branch);
    size_t i = 0;
    while (b->dels[branch][i].base.descriptor) i++;
    Etcdserverpb__DeleteRangeRequest *d = &b->dels[branch][i];
    etcdserverpb__delete_range_request__init(d);
    d->key = B(k);
    if (end) d->range_end = end[0] ? B(end) : BN("", 1);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op->request_delete_range = d;
    return d;
}

static Etcdserverpb__RangeRequest *txb_range(txb_t *b, int branch, const char *k, const char *end) {
    Etcdserverpb__RequestOp *op = txb_op(b, branch);
    size_t i = 0;
    while (b->ranges[branch][i].base.descriptor) i++;
    Etcdserverpb__RangeRequest *r = &b->ranges[branch][i];
    etcdserverpb__range_request__init(r);
    r->key = B(k);
    if (end) r->range_end = end[0] ? B(end) : BN("", 1);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op->request_range = r;
    return r;
}

static void txb_nest(txb_t *b, int branch, txb_t *inner) {
    Etcdserverpb__RequestOp *op = txb_op(b, branch);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
    op->request_txn = &inner->t;
}

static Etcdserverpb__TxnResponse *txn_apply(fx_t *f, txb_t *b, int expect_code) {
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.txn = &b->t;
    kv_result_t res;
    assert_int_equal(apply(f, &ir, &res), expect_code);
    if (expect_code) {
        kv_result_clear(&res);
        return NULL;
    }
    Etcdserverpb__TxnResponse *r = etcdserverpb__txn_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(r);
    assert_int_equal(r->header->revision, res.revision);
    kv_result_clear(&res);
    return r;
}

static int txn_succeeds(fx_t *f, txb_t *b) {
    Etcdserverpb__TxnResponse *r = txn_apply(f, b, 0);
    int ok = r->succeeded;
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    return ok;
}

static void test_txn_compares(void **state) {
    fx_t *f = *state;
    put(f, "a", "apple");  /* 2 */
    put(f, "b", "banana"); /* 3 */
    put(f, "b", "berry");  /* 4 */
    txb_t *b = malloc(sizeof(*b));
    struct {
        const char *k;
        int target, result;
        int64_t val;
        const char *sval;
        int want;
    } cases[] = {
        {"a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 1,
         0, 1},
        {"b", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION, ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER,
         1, 0, 1},
        {"b", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION, ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS, 2,
         0, 0},
        {"a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 2,
         0, 1},
        {"b", ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 4, 0,
         1},
        {"b", ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD, ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL, 4,
         0, 0},
        {"zz", ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 0, 0,
         1},
        {"zz", ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE, ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS, 1,
         0, 1},
        {"a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 0,
         0, 1},
        {"a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE, ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL, 0,
         "apple", 1},
        {"a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE, ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER, 0,
         "apple", 0},
        {"a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE, ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS, 0,
         "b", 1},
        /* a value compare on a missing key always fails, even NOT_EQUAL */
        {"zz", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE, ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL,
         0, "x", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        txb_init(b);
        Etcdserverpb__Compare *c = txb_cmp(b, cases[i].k, cases[i].target, cases[i].result);
        switch (cases[i].target) {
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
            c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
            c->version = cases[i].val;
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
            c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
            c->create_revision = cases[i].val;
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
            c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
            c->mod_revision = cases[i].val;
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
            c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
            c->lease = cases[i].val;
            break;
        default:
            c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
            c->value = B(cases[i].sval);
        }
        txb_range(b, 0, "a", NULL);
        txb_range(b, 1, "b", NULL);
        Etcdserverpb__TxnResponse *r = txn_apply(f, b, 0);
        assert_int_equal(r->succeeded, cases[i].want);
        assert_int_equal(r->header->revision, 4); /* read-only: no bump */
        assert_int_equal(r->n_responses, 1);
        Etcdserverpb__RangeResponse *rr = r->responses[0]->response_range;
        assert_non_null(rr);
        assert_memory_equal(rr->kvs[0]->key.data, cases[i].want ? "a" : "b", 1);
        etcdserverpb__txn_response__free_unpacked(r, NULL);
    }
    /* range compares: all keys in [a, c) must match */
    txb_init(b);
    Etcdserverpb__Compare *c = txb_cmp(b, "a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE,
                                       ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS);
    c->range_end = B("c");
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    c->create_revision = 4;
    assert_true(txn_succeeds(f, b));
    c->create_revision = 3;
    assert_false(txn_succeeds(f, b));
    c->range_end = B("b");
    assert_true(txn_succeeds(f, b));
    /* empty range: compared as a zero KeyValue */
    c->key = B("x");
    c->range_end = BN("", 1);
    c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    c->create_revision = 0;
    assert_true(txn_succeeds(f, b));
    /* target union of another type compares against 0 */
    c->key = B("a");
    c->range_end = BN("", 0);
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
    c->version = 2;
    c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
    assert_true(txn_succeeds(f, b));
    free(b);
}

static void test_txn_writes_nested(void **state) {
    fx_t *f = *state;
    put(f, "a", "1"); /* 2 */
    txb_t *b = malloc(sizeof(*b)), *in1 = malloc(sizeof(*in1)), *in2 = malloc(sizeof(*in2));
    /* If(mod(a) == 2) Then(put b, range [a,z), del a, txn{If(version(a)==1) Then(put c)}, range a)
     * The nested compare sees the state before the txn (a exists with version 1). */
    txb_init(b);
    Etcdserverpb__Compare *c = txb_cmp(b, "a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD,
                                       ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL);
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    c->mod_revision = 2;
    txb_put(b, 0, "b", "2")->prev_kv = 1;
    txb_range(b, 0, "a", "z");
    txb_del(b, 0, "a", NULL)->prev_kv = 1;
    txb_init(in1);
    Etcdserverpb__Compare *c1 = txb_cmp(in1, "a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
                                        ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL);
    c1->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
    c1->version = 1;
    txb_put(in1, 0, "c", "3");
    txb_range(in1, 1, "a", NULL);
    txb_nest(b, 0, in1);
    txb_range(b, 0, "a", "z");
    txb_range(b, 1, "a", NULL);
    kv_result_t vres;
    assert_int_equal(kv_validate_txn(f->m, &b->t, &vres), 0);
    assert_false(kv_txn_is_readonly(&b->t));
    Etcdserverpb__TxnResponse *r = txn_apply(f, b, 0);
    assert_true(r->succeeded);
    assert_int_equal(r->header->revision, 3);
    assert_int_equal(r->header->cluster_id, 111);
    assert_int_equal(r->n_responses, 5);
    Etcdserverpb__PutResponse *pr = r->responses[0]->response_put;
    assert_int_equal(pr->header->revision, 3);
    assert_int_equal(pr->header->cluster_id, 0); /* nested headers: revision only (etcd) */
    assert_null(pr->prev_kv);
    Etcdserverpb__RangeResponse *rr = r->responses[1]->response_range;
    assert_int_equal(rr->header->revision, 3);
    assert_int_equal(rr->count, 2); /* sees the txn's own put of b */
    assert_kv(rr->kvs[1], "b", 1, "2", 3, 3, 1);
    Etcdserverpb__DeleteRangeResponse *dr = r->responses[2]->response_delete_range;
    assert_int_equal(dr->deleted, 1);
    assert_int_equal(dr->header->revision, 3);
    assert_kv(dr->prev_kvs[0], "a", 1, "1", 2, 2, 1);
    Etcdserverpb__TxnResponse *nt = r->responses[3]->response_txn;
    assert_true(nt->succeeded);
    assert_non_null(nt->header);
    assert_int_equal(nt->header->revision, 0); /* etcd leaves nested txn headers empty */
    assert_int_equal(nt->n_responses, 1);
    assert_int_equal(nt->responses[0]->response_put->header->revision, 3);
    rr = r->responses[4]->response_range;
    assert_int_equal(rr->count, 2); /* a deleted, b and c put */
    assert_kv(rr->kvs[0], "b", 1, "2", 3, 3, 1);
    assert_kv(rr->kvs[1], "c", 1, "3", 3, 3, 1);
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    assert_int_equal(mvcc_revision(f->m), 3);

    /* past revision inside the txn still reads the stored state */
    Etcdserverpb__RangeResponse *g = get(f, "a", "z", 2);
    assert_int_equal(g->count, 1);
    etcdserverpb__range_response__free_unpacked(g, NULL);

    /* failure branch with a put: revision bumps; failure with only ranges: none */
    txb_init(b);
    c = txb_cmp(b, "a", ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION,
                ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER);
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
    txb_put(b, 0, "x", "1");
    txb_range(b, 1, "b", NULL);
    r = txn_apply(f, b, 0);
    assert_false(r->succeeded);
    assert_int_equal(r->header->revision, 3);
    assert_int_equal(r->responses[0]->response_range->header->revision, 3);
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    txb_put(b, 1, "y", "1");
    r = txn_apply(f, b, 0);
    assert_false(r->succeeded);
    assert_int_equal(r->header->revision, 4);
    assert_int_equal(r->responses[0]->response_range->header->revision, 3); /* before the put */
    assert_int_equal(r->responses[1]->response_put->header->revision, 4);
    etcdserverpb__txn_response__free_unpacked(r, NULL);

    /* a failing check inside a txn fails the whole txn, with no change */
    txb_init(b);
    txb_put(b, 0, "p", "1");
    txb_put(b, 0, "q", "1")->lease = 12345;
    txn_apply(f, b, 5);
    assert_int_equal(mvcc_revision(f->m), 4);
    txb_init(b);
    txb_put(b, 0, "p", "1");
    Etcdserverpb__PutRequest *ip = txb_put(b, 0, "nokey", "");
    ip->ignore_value = 1;
    txn_apply(f, b, 3);
    txb_init(b);
    txb_range(b, 0, "a", NULL)->revision = 99;
    txb_put(b, 0, "p", "1");
    txn_apply(f, b, 11);
    assert_int_equal(mvcc_revision(f->m), 4);
    g = get(f, "p", NULL, 0);
    assert_int_equal(g->count, 0);
    etcdserverpb__range_response__free_unpacked(g, NULL);

    /* read-only txn served as a read */
    txb_init(b);
    txb_range(b, 0, "b", "d");
    txb_init(in2);
    txb_range(in2, 0, "c", NULL);
    txb_nest(b, 0, in2);
    assert_true(kv_txn_is_readonly(&b->t));
    kv_result_t res;
    assert_int_equal(kv_txn_readonly(f->m, &b->t, &f->hdr, &res), 0);
    r = etcdserverpb__txn_response__unpack(NULL, res.resp_len, res.resp);
    kv_result_clear(&res);
    assert_int_equal(r->header->revision, 4);
    assert_int_equal(r->header->member_id, 222);
    assert_int_equal(r->responses[0]->response_range->count, 2);
    assert_int_equal(r->responses[1]->response_txn->responses[0]->response_range->count, 1);
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    free(b);
    free(in1);
    free(in2);
}

static void expect_txn_invalid(fx_t *f, txb_t *b, const char *msg) {
    kv_result_t res;
    assert_int_equal(kv_validate_txn(f->m, &b->t, &res), -1);
    assert_int_equal(res.code, 3);
    assert_string_equal(res.message, msg);
}

static void expect_txn_valid(fx_t *f, txb_t *b) {
    kv_result_t res;
    assert_int_equal(kv_validate_txn(f->m, &b->t, &res), 0);
}

static void test_txn_validation(void **state) {
    fx_t *f = *state;
    const char *dup = "etcdserver: duplicate key given in txn request";
    txb_t *b = malloc(sizeof(*b)), *in = malloc(sizeof(*in)), *in2 = malloc(sizeof(*in2));
    char keys[130][8];
    txb_init(b);
    for (int i = 0; i < 128; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        txb_put(b, 0, keys[i], "v");
    }
    expect_txn_valid(f, b);
    txb_put(b, 0, "k128", "v");
    expect_txn_invalid(f, b, "etcdserver: too many operations in txn request");

    txb_init(b);
    txb_put(b, 0, "a", "1");
    txb_put(b, 0, "a", "2");
    expect_txn_invalid(f, b, dup);
    /* then/else may put the same key */
    txb_init(b);
    txb_put(b, 0, "a", "1");
    txb_put(b, 1, "a", "2");
    expect_txn_valid(f, b);
    /* put overlapping a delete range at the same level */
    txb_init(b);
    txb_del(b, 0, "a", "c");
    txb_put(b, 0, "b", "2");
    expect_txn_invalid(f, b, dup);
    txb_init(b);
    txb_del(b, 0, "a", "c");
    txb_put(b, 0, "c", "2");
    expect_txn_valid(f, b);
    txb_init(b);
    txb_del(b, 0, "a", NULL);
    txb_put(b, 0, "a", "2");
    expect_txn_invalid(f, b, dup);
    /* delete/delete overlap is fine */
    txb_init(b);
    txb_del(b, 0, "a", "z");
    txb_del(b, 0, "b", NULL);
    expect_txn_valid(f, b);
    /* nested put vs outer put / outer delete */
    txb_init(b);
    txb_init(in);
    txb_put(in, 0, "k", "1");
    txb_nest(b, 0, in);
    txb_put(b, 0, "k", "2");
    expect_txn_invalid(f, b, dup);
    txb_init(b);
    txb_del(b, 0, "j", "l");
    txb_nest(b, 0, in);
    expect_txn_invalid(f, b, dup);
    /* nested delete vs outer put */
    txb_init(b);
    txb_init(in2);
    txb_del(in2, 1, "a", "z");
    txb_nest(b, 0, in2);
    txb_put(b, 0, "q", "1");
    expect_txn_invalid(f, b, dup);
    /* etcd quirk: a from-key delete (range_end "\0") is an empty interval to
     * checkIntervals, so it never conflicts */
    txb_init(b);
    txb_del(b, 0, "a", "");
    txb_put(b, 0, "q", "1");
    expect_txn_valid(f, b);
    /* nested then/else same key fine, two nested txns putting the same key not */
    txb_init(b);
    txb_init(in);
    txb_put(in, 0, "k", "1");
    txb_put(in, 1, "k", "2");
    txb_nest(b, 0, in);
    expect_txn_valid(f, b);
    txb_nest(b, 0, in);
    expect_txn_invalid(f, b, dup);
    /* empty key in compare or op; empty op */
    txb_init(b);
    txb_cmp(b, "", 0, 0);
    expect_txn_invalid(f, b, "etcdserver: key is not provided");
    txb_init(b);
    txb_op(b, 1);
    expect_txn_invalid(f, b, "etcdserver: key not found");
    free(b);
    free(in);
    free(in2);
}

static void test_compaction_errors(void **state) {
    fx_t *f = *state;
    for (int i = 0; i < 5; i++) put(f, "a", "x"); /* revisions 2..6 */
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.compaction = &c;
    kv_result_t res;
    c.revision = 7;
    assert_int_equal(apply(f, &ir, &res), 11);
    assert_string_equal(res.message, "etcdserver: mvcc: required revision is a future revision");
    kv_result_clear(&res);
    c.revision = 4;
    assert_int_equal(apply(f, &ir, &res), 0);
    Etcdserverpb__CompactionResponse *cr =
        etcdserverpb__compaction_response__unpack(NULL, res.resp_len, res.resp);
    assert_int_equal(cr->header->revision, 6);
    assert_int_equal(cr->header->cluster_id, 111);
    etcdserverpb__compaction_response__free_unpacked(cr, NULL);
    kv_result_clear(&res);
    assert_int_equal(mvcc_compact_revision(f->m), 4);
    assert_int_equal(mvcc_applied_index(f->m), f->index);
    assert_int_equal(apply(f, &ir, &res), 11);
    assert_string_equal(res.message, "etcdserver: mvcc: required revision has been compacted");
    kv_result_clear(&res);
    c.revision = 3;
    assert_int_equal(apply(f, &ir, &res), 11);
    kv_result_clear(&res);
    assert_int_equal(mvcc_applied_index(f->m), f->index); /* refused entries are consumed */

    Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rq.key = B("a");
    rq.revision = 3;
    range_req(f, &rq, 11);
    rq.revision = 4; /* reading at the compact revision is allowed */
    Etcdserverpb__RangeResponse *r = range_req(f, &rq, 0);
    assert_int_equal(r->kvs[0]->mod_revision, 4);
    assert_int_equal(r->kvs[0]->version, 3);
    etcdserverpb__range_response__free_unpacked(r, NULL);
    /* same check for a range inside a txn */
    txb_t *b = malloc(sizeof(*b));
    txb_init(b);
    txb_range(b, 0, "a", NULL)->revision = 3;
    Kshim__InternalRequest tr = KSHIM__INTERNAL_REQUEST__INIT;
    tr.txn = &b->t;
    assert_int_equal(apply(f, &tr, &res), 11);
    assert_string_equal(res.message, "etcdserver: mvcc: required revision has been compacted");
    kv_result_clear(&res);
    free(b);
}

static void test_idempotent_index(void **state) {
    fx_t *f = *state;
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B("a");
    p.value = B("1");
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    ir.put = &p;
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, 5, &ir, &f->hdr, &res), 0);
    kv_result_clear(&res);
    assert_int_equal(mvcc_applied_index(f->m), 5);
    assert_int_equal(mvcc_revision(f->m), 2);
    memset(&res, 0x5a, sizeof(res));
    assert_int_equal(kv_apply(f->m, 5, &ir, &f->hdr, &res), 1);
    assert_int_equal(kv_apply(f->m, 3, &ir, &f->hdr, &res), 1);
    assert_int_equal(mvcc_revision(f->m), 2);
    /* empty entry moves only the index */
    assert_int_equal(kv_apply(f->m, 6, NULL, &f->hdr, &res), 0);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
    assert_int_equal(mvcc_applied_index(f->m), 6);
    assert_int_equal(mvcc_revision(f->m), 2);
    assert_int_equal(mvcc_sync(f->m), 6);
    /* survives a restart */
    mvcc_close(f->m);
    fx_open(f);
    assert_int_equal(mvcc_applied_index(f->m), 6);
    assert_int_equal(mvcc_revision(f->m), 2);
    assert_int_equal(kv_apply(f->m, 6, &ir, &f->hdr, &res), 1);
}

/* ---- events hook ---- */

typedef struct ev_log {
    int calls;
    int64_t rev[8];
    size_t n[8];
    char text[8][256];
} ev_log_t;

static void record_events(void *ctx, int64_t rev, const mvcc_event_t *evs, size_t n) {
    ev_log_t *l = ctx;
    int i = l->calls++;
    l->rev[i] = rev;
    l->n[i] = n;
    size_t o = 0;
    for (size_t j = 0; j < n; j++) {
        const Mvccpb__KeyValue *kv = evs[j].kv;
        o += (size_t)snprintf(l->text[i] + o, sizeof(l->text[i]) - o, "%s %.*s m%lld v%lld prev%lld;",
                              evs[j].type == MVCCPB__EVENT__EVENT_TYPE__PUT ? "PUT" : "DEL", (int)kv->key.len,
                              (const char *)kv->key.data, (long long)kv->mod_revision, (long long)kv->version,
                              evs[j].prev_kv ? (long long)evs[j].prev_kv->mod_revision : -1LL);
    }
}

static void test_events_hook(void **state) {
    fx_t *f = *state;
    ev_log_t *l = calloc(1, sizeof(*l));
    mvcc_close(f->m);
    f->opts.on_events = record_events;
    f->opts.events_ctx = l;
    fx_open(f);
    put(f, "a", "1");
    put(f, "a", "2");
    put(f, "b", "3");
    Etcdserverpb__DeleteRangeResponse *d = del_full(f, "a", "c", 0);
    etcdserverpb__delete_range_response__free_unpacked(d, NULL);
    d = del_full(f, "a", "c", 0); /* nothing: no event */
    etcdserverpb__delete_range_response__free_unpacked(d, NULL);
    txb_t *b = malloc(sizeof(*b));
    txb_init(b);
    txb_put(b, 0, "x", "1");
    txb_put(b, 0, "y", "1");
    txn_succeeds(f, b);
    free(b);
    assert_int_equal(l->calls, 5);
    assert_string_equal(l->text[0], "PUT a m2 v1 prev-1;");
    assert_string_equal(l->text[1], "PUT a m3 v2 prev2;");
    assert_string_equal(l->text[3], "DEL a m5 v0 prev3;DEL b m5 v0 prev4;");
    assert_int_equal(l->rev[3], 5);
    assert_string_equal(l->text[4], "PUT x m6 v1 prev-1;PUT y m6 v1 prev-1;");
    assert_int_equal(l->rev[4], 6);
    mvcc_close(f->m);
    f->opts.on_events = NULL;
    fx_open(f);
    free(l);
}

static void test_quota(void **state) {
    fx_t *f = *state;
    mvcc_close(f->m);
    f->opts.quota_backend_bytes = 300; /* below one put's cost (256 + key + value) */
    fx_open(f);
    kv_result_t res;
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B("a");
    p.value = B("1234567890123456789012345678901234567890123456789012345678901234567890");
    assert_int_equal(kv_validate_put(f->m, &p, &res), -1);
    assert_int_equal(res.code, 8);
    assert_string_equal(res.message, "etcdserver: mvcc: database space exceeded");
    txb_t *b = malloc(sizeof(*b));
    txb_init(b);
    txb_range(b, 0, "a", NULL);
    txb_del(b, 1, "a", NULL);
    expect_txn_valid(f, b); /* no puts: no cost, passes as in etcd */
    txb_put(b, 1, "b", "12345678901234567890123456789012345678901234567890");
    assert_int_equal(kv_validate_txn(f->m, &b->t, &res), -1);
    assert_int_equal(res.code, 8);
    free(b);
    Etcdserverpb__DeleteRangeRequest dq = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    dq.key = B("a");
    assert_int_equal(kv_validate_delete(f->m, &dq, &res), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_revisions_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_range_one_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_keys_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_limit_sort_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_options_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_compares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_writes_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
