/*
 * test_kv_count.c: exact `count` and `more` for limited and count-only reads
 * at the current revision, which storage/mvcc.c answers from the live-key
 * index ('l' space) instead of walking every version. Checked against the
 * full walk (reads at an explicit revision take the version path) through
 * puts, deletes, re-creates, txn put+delete of one key and compaction.
 */
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
    uint64_t index;
    kv_header_info_t hdr;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(f->dir, sizeof f->dir, "%s/kvcount-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    mvcc_close(f->m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static ProtobufCBinaryData B(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

static void apply(fx_t *f, Kshim__InternalRequest *req)
{
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, ++f->index, req, &f->hdr, &res), 0);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
}

static void put(fx_t *f, const char *k)
{
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(k);
    p.value = B("v");
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = &p;
    apply(f, &req);
}

static void del(fx_t *f, const char *k, const char *end)
{
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B(k);
    if (end)
        d.range_end = B(end);
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.delete_range = &d;
    apply(f, &req);
}

/* A txn that puts k then deletes it: the key must end up not alive. */
static void put_then_delete_in_txn(fx_t *f, const char *k)
{
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(k);
    p.value = B("v");
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
    apply(f, &req);
}

/* count and more of [key, end) with limit (0 = none), count_only, at rev. */
static void range_bin(fx_t *f, ProtobufCBinaryData key, ProtobufCBinaryData end, int64_t limit,
                      int count_only, int64_t rev, int64_t *count, int *more, size_t *nkvs)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = key;
    r.range_end = end;
    r.limit = limit;
    r.count_only = count_only;
    r.revision = rev;
    kv_result_t res;
    assert_int_equal(kv_range(f->m, &r, &f->hdr, &res), 0);
    assert_int_equal(res.code, 0);
    Etcdserverpb__RangeResponse *resp = etcdserverpb__range_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(resp);
    *count = resp->count;
    *more = resp->more;
    *nkvs = resp->n_kvs;
    etcdserverpb__range_response__free_unpacked(resp, NULL);
    kv_result_clear(&res);
}

static void range(fx_t *f, const char *key, const char *end, int64_t limit, int count_only, int64_t rev,
                  int64_t *count, int *more, size_t *nkvs)
{
    range_bin(f, B(key), B(end), limit, count_only, rev, count, more, nkvs);
}

/* Unlimited, count-only and limit-1 reads of [key, end) at the current
 * revision all report `want` keys; the unlimited read returns them all. */
static void check_counts_bin(fx_t *f, ProtobufCBinaryData key, ProtobufCBinaryData end, int64_t want)
{
    int64_t count;
    int more;
    size_t n;
    range_bin(f, key, end, 0, 0, 0, &count, &more, &n);
    assert_int_equal(count, want);
    assert_int_equal(n, (size_t)want);
    range_bin(f, key, end, 0, 1, 0, &count, &more, &n);
    assert_int_equal(count, want);
    assert_int_equal(n, 0);
    range_bin(f, key, end, 1, 0, 0, &count, &more, &n);
    assert_int_equal(count, want);
    assert_int_equal(n, want > 0 ? 1 : 0);
    assert_int_equal(more, want > 1);
}

static void check_counts(fx_t *f, const char *key, const char *end, int64_t want)
{
    check_counts_bin(f, B(key), B(end), want);
}

static void test_live_count_follows_writes(void **state)
{
    fx_t *f = *state;
    check_counts(f, "a", "z", 0);
    put(f, "a/1");
    put(f, "a/2");
    put(f, "a/3");
    put(f, "b/1");
    check_counts(f, "a/", "a0", 3);
    check_counts(f, "a", "z", 4);
    put(f, "a/2");                     /* a new version is not a new key */
    check_counts(f, "a/", "a0", 3);
    del(f, "a/2", NULL);
    check_counts(f, "a/", "a0", 2);
    put(f, "a/2");                     /* re-created */
    check_counts(f, "a/", "a0", 3);
    del(f, "a/", "a0");                /* range delete */
    check_counts(f, "a/", "a0", 0);
    check_counts(f, "a", "z", 1);
    put_then_delete_in_txn(f, "a/9");
    check_counts(f, "a/", "a0", 0);
}

static void test_past_revision_counts_use_versions(void **state)
{
    fx_t *f = *state;
    put(f, "k1");                      /* rev 2 */
    put(f, "k2");                      /* rev 3 */
    del(f, "k1", NULL);                /* rev 4 */
    int64_t count;
    int more;
    size_t n;
    range(f, "k", "l", 1, 0, 3, &count, &more, &n);
    assert_int_equal(count, 2);        /* both alive at rev 3 */
    assert_true(more);
    range(f, "k", "l", 1, 0, 0, &count, &more, &n);
    assert_int_equal(count, 1);
    assert_false(more);
}

static void test_from_key_and_all_keys(void **state)
{
    fx_t *f = *state;
    put(f, "x");
    put(f, "y");
    put(f, "\x01");
    ProtobufCBinaryData nul = {1, (uint8_t *)"\0"};
    check_counts_bin(f, B("x"), nul, 2);   /* from key: x, y */
    check_counts_bin(f, nul, nul, 3);      /* every key */
    del(f, "y", NULL);
    check_counts_bin(f, B("x"), nul, 1);
    check_counts_bin(f, nul, nul, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_live_count_follows_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_past_revision_counts_use_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_from_key_and_all_keys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
