/*
 * kv_fixture.h: the fixture shared by the storage tests that drive kv.h as
 * the apply path does: a fresh MVCC store in a temporary directory (under
 * $KSHIM_TEST_TMP, else /tmp) per test (fx_open / fx_close for a fixture
 * that holds one inside its own), and helpers that apply Put,
 * DeleteRange and Txn requests at consecutive Raft indexes, and
 * fx_count_key. Header-only
 * (static inline), included by one test file each.
 */
#ifndef KSHIM_TESTS_KV_FIXTURE_H
#define KSHIM_TESTS_KV_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv.h"

typedef struct fx {
    char dir[256];
    mvcc_t *m;
    uint64_t index; /* last applied Raft index */
    kv_header_info_t hdr;
} fx_t;

/* A fresh store in a new directory <tmp>/<prefix>-XXXXXX, opened with o (NULL: defaults). */
static inline void fx_open(fx_t *f, const char *prefix, const mvcc_options_t *o) {
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(f->dir, sizeof f->dir, "%s/%s-XXXXXX", base ? base : "/tmp", prefix);
    assert_non_null(mkdtemp(f->dir));
    char err[256];
    assert_int_equal(mvcc_open(f->dir, o, &f->m, err, sizeof err), 0);
}

/* Closes the store and removes its directory. */
static inline void fx_close(fx_t *f) {
    mvcc_close(f->m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
}

static inline int fx_setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    fx_open(f, "kvfx", NULL);
    *state = f;
    return 0;
}

static inline int fx_teardown(void **state) {
    fx_t *f = *state;
    fx_close(f);
    free(f);
    return 0;
}

static inline ProtobufCBinaryData B(const char *s) {
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* How many keys k the store m holds at its revision (0 or 1). */
static inline int64_t fx_count_key(mvcc_t *m, const char *k) {
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = B(k);
    r.count_only = 1;
    kv_result_t res;
    assert_int_equal(kv_range(m, &r, NULL, &res), 0);
    Etcdserverpb__RangeResponse *resp = etcdserverpb__range_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(resp);
    int64_t n = resp->count;
    etcdserverpb__range_response__free_unpacked(resp, NULL);
    kv_result_clear(&res);
    return n;
}

/* Applies req at the next index; returns the result's gRPC code. */
static inline int fx_apply(fx_t *f, Kshim__InternalRequest *req) {
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, ++f->index, req, &f->hdr, &res), 0);
    int code = res.code;
    kv_result_clear(&res);
    return code;
}

static inline void fx_put(fx_t *f, const char *k, const char *v) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(k);
    p.value = B(v);
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = &p;
    assert_int_equal(fx_apply(f, &req), 0);
}

/* Deletes k, or [k, end) when end is not NULL. */
static inline void fx_del(fx_t *f, const char *k, const char *end) {
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B(k);
    if (end) d.range_end = B(end);
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.delete_range = &d;
    assert_int_equal(fx_apply(f, &req), 0);
}

/* One txn that puts k = v then deletes k: one revision, k not alive after. */
static inline void fx_put_then_delete_in_txn(fx_t *f, const char *k, const char *v) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(k);
    p.value = B(v);
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B(k);
    Etcdserverpb__RequestOp op1 = ETCDSERVERPB__REQUEST_OP__INIT, op2 = ETCDSERVERPB__REQUEST_OP__INIT;
    op1.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op1.request_put = &p;
    op2.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op2.request_delete_range = &d;
    Etcdserverpb__RequestOp *ops[2] = {&op1, &op2};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.n_success = 2;
    t.success = ops;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.txn = &t;
    assert_int_equal(fx_apply(f, &req), 0);
}

#endif
