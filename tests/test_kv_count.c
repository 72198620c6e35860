/*
 * test_kv_count.c: exact `count` and `more` for limited and count-only reads
 * at the current revision, which storage/mvcc/mvcc.c answers from the live-key
 * index ('l' space) instead of walking every version. Checked against the
 * full walk (reads at an explicit revision take the version path) through
 * puts, deletes, re-creates, a range delete and a txn put+delete of one key.
 */
#include "kv_fixture.h"

/* count and more of [key, end) with limit (0 = none), count_only, at rev. */
static void range_bin(fx_t *f, ProtobufCBinaryData key, ProtobufCBinaryData end, int64_t limit,
                      int count_only, int64_t rev, int64_t *count, int *more, size_t *nkvs) {
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
                  int64_t *count, int *more, size_t *nkvs) {
    range_bin(f, B(key), B(end), limit, count_only, rev, count, more, nkvs);
}

/* Unlimited, count-only and limit-1 reads of [key, end) at the current
 * revision all report `want` keys; the unlimited read returns them all. */
static void check_counts_bin(fx_t *f, ProtobufCBinaryData key, ProtobufCBinaryData end, int64_t want) {
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

static void check_counts(fx_t *f, const char *key, const char *end, int64_t want) {
    check_counts_bin(f, B(key), B(end), want);
}

static void test_live_count_follows_writes(void **state) {
    fx_t *f = *state;
    check_counts(f, "a", "z", 0);
    fx_put(f, "a/1", "v");
    fx_put(f, "a/2", "v");
    fx_put(f, "a/3", "v");
    fx_put(f, "b/1", "v");
    check_counts(f, "a/", "a0", 3);
    check_counts(f, "a", "z", 4);
    fx_put(f, "a/2", "v"); /* a new version is not a new key */
    check_counts(f, "a/", "a0", 3);
    fx_del(f, "a/2", NULL);
    check_counts(f, "a/", "a0", 2);
    fx_put(f, "a/2", "v"); /* re-created */
    check_counts(f, "a/", "a0", 3);
    fx_del(f, "a/", "a0"); /* range delete */
    check_counts(f, "a/", "a0", 0);
    check_counts(f, "a", "z", 1);
    fx_put_then_delete_in_txn(f, "a/9", "v");
    check_counts(f, "a/", "a0", 0);
}

static void test_past_revision_counts_use_versions(void **state) {
    fx_t *f = *state;
    fx_put(f, "k1", "v");  /* rev 2 */
    fx_put(f, "k2", "v");  /* rev 3 */
    fx_del(f, "k1", NULL); /* rev 4 */
    int64_t count;
    int more;
    size_t n;
    range(f, "k", "l", 1, 0, 3, &count, &more, &n);
    assert_int_equal(count, 2); /* both alive at rev 3 */
    assert_true(more);
    range(f, "k", "l", 1, 0, 0, &count, &more, &n);
    assert_int_equal(count, 1);
    assert_false(more);
}

static void test_from_key_and_all_keys(void **state) {
    fx_t *f = *state;
    fx_put(f, "x", "v");
    fx_put(f, "y", "v");
    fx_put(f, "\x01", "v");
    ProtobufCBinaryData nul = {1, (uint8_t *)"\0"};
    check_counts_bin(f, B("x"), nul, 2); /* from key: x, y */
    check_counts_bin(f, nul, nul, 3);    /* every key */
    fx_del(f, "y", NULL);
    check_counts_bin(f, B("x"), nul, 1);
    check_counts_bin(f, nul, nul, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_live_count_follows_writes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_past_revision_counts_use_versions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_from_key_and_all_keys, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
