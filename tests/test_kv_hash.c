/*
 * test_kv_hash.c: the store's hashes (mvcc_hash_kv, mvcc_hash_all,
 * storage/mvcc/mvcc_hash.c), driven through kv_apply as the apply path does.
 *
 * The expected HashKV values were read from real etcd 3.4.23 after the same
 * requests (`etcdctl endpoint hashkv`), so they pin the byte-for-byte
 * definition: put a=1, put b=2, del a -> 1562576432 at rev 4 and 2587454935
 * at rev 2; then put c=3, put b=22, compact 5 -> 3591282918 at rev 6; then
 * delete everything and compact 7 -> 1084519789 (etcd's "no key kept" case).
 */
#include "kv_fixture.h"

static int setup(void **state) { return fx_setup(state); }
static int teardown(void **state) { return fx_teardown(state); }

static uint32_t hash_at(fx_t *f, int64_t rev, int expect_rc) {
    uint32_t h = 0;
    int64_t cur = 0, compact = 0;
    assert_int_equal(mvcc_hash_kv(f->m, rev, &h, &cur, &compact), expect_rc);
    return h;
}

static void fx_compact(fx_t *f, int64_t rev) {
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    c.revision = rev;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.compaction = &c;
    assert_int_equal(fx_apply(f, &req), 0);
}

static void test_crc32c_known_value(void **state) {
    (void)state;
    assert_int_equal(mvcc_crc32c(0, "123456789", 9), 0xE3069283u);
    /* continued in pieces as Go's crc32.Update */
    assert_int_equal(mvcc_crc32c(mvcc_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

static void test_hashkv_matches_etcd(void **state) {
    fx_t *f = *state;
    fx_put(f, "a", "1");
    fx_put(f, "b", "2");
    fx_del(f, "a", NULL);
    assert_int_equal(hash_at(f, 0, MVCC_OK), 1562576432u);
    assert_int_equal(hash_at(f, 4, MVCC_OK), 1562576432u);
    assert_int_equal(hash_at(f, 2, MVCC_OK), 2587454935u);
    hash_at(f, 5, MVCC_ERR_FUTURE_REV);

    fx_put(f, "c", "3");
    fx_put(f, "b", "22");
    fx_compact(f, 5);
    assert_int_equal(mvcc_compact_wait(f->m, 5), MVCC_OK);
    assert_int_equal(hash_at(f, 0, MVCC_OK), 3591282918u);
    assert_int_equal(hash_at(f, 6, MVCC_OK), 3591282918u);
    hash_at(f, 5, MVCC_ERR_COMPACTED); /* etcd: rev <= compact revision */
    hash_at(f, 3, MVCC_ERR_COMPACTED);

    fx_del(f, "a", "z"); /* everything (b and c): rev 7 */
    fx_compact(f, 7);
    assert_int_equal(hash_at(f, 0, MVCC_OK), 1084519789u);
    uint32_t h;
    int64_t cur, compact;
    assert_int_equal(mvcc_hash_kv(f->m, 0, &h, &cur, &compact), MVCC_OK);
    assert_int_equal(cur, 7);
    assert_int_equal(compact, 7);
}

/* The hash does not depend on the compactor's progress: before and after
 * the physical compaction of the same compact revision it is the same. */
static void test_hashkv_independent_of_compactor(void **state) {
    fx_t *f = *state;
    for (int i = 0; i < 50; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "k%d", i % 7);
        snprintf(v, sizeof v, "v%d", i);
        fx_put(f, k, v);
    }
    fx_del(f, "k3", NULL);
    mvcc_compact_hold_after(f->m, 0); /* the compactor writes nothing */
    fx_compact(f, 30);
    uint32_t before = hash_at(f, 0, MVCC_OK);
    mvcc_compact_hold_after(f->m, -1);
    assert_int_equal(mvcc_compact_wait(f->m, 30), MVCC_OK);
    assert_int_equal(hash_at(f, 0, MVCC_OK), before);
}

/* The same history gives the same hash; another value, another hash; and
 * the whole-store Hash changes with the content too. */
static void test_hash_same_history_same_hash(void **state) {
    fx_t *f = *state;
    fx_t *g = NULL;
    fx_setup((void **)&g);
    const char *keys[] = {"x", "y", "z", "x", "w"};
    for (int i = 0; i < 5; i++) {
        fx_put(f, keys[i], "same");
        fx_put(g, keys[i], "same");
    }
    assert_int_equal(hash_at(f, 0, MVCC_OK), hash_at(g, 0, MVCC_OK));
    uint32_t hf, hg;
    int64_t rf, rg;
    assert_int_equal(mvcc_hash_all(f->m, &hf, &rf), MVCC_OK);
    assert_int_equal(mvcc_hash_all(g->m, &hg, &rg), MVCC_OK);
    assert_int_equal(hf, hg);
    assert_int_equal(rf, rg);
    fx_put(f, "w", "one");
    fx_put(g, "w", "two");
    assert_int_not_equal(hash_at(f, 0, MVCC_OK), hash_at(g, 0, MVCC_OK));
    assert_int_equal(hash_at(f, 6, MVCC_OK), hash_at(g, 6, MVCC_OK)); /* the common prefix */
    assert_int_equal(mvcc_hash_all(f->m, &hf, &rf), MVCC_OK);
    assert_int_equal(mvcc_hash_all(g->m, &hg, &rg), MVCC_OK);
    assert_int_not_equal(hf, hg);
    fx_teardown((void **)&g);
}

/* The value of key k at the store's revision (into buf). */
static void value_of(fx_t *f, const char *k, char *buf, size_t cap) {
    kv_arena_t arena;
    kv_arena_init(&arena);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_read(f->m, &arena, &t), MVCC_OK);
    mvcc_range_t r = mvcc_range_make((const uint8_t *)k, strlen(k), NULL, 0);
    mvcc_kv_list_t out = {0};
    int64_t count = 0;
    assert_int_equal(mvcc_txn_range(t, &r, 0, 0, 0, &out, &count), MVCC_OK);
    assert_int_equal(out.n, 1);
    snprintf(buf, cap, "%.*s", (int)out.kvs[0]->value.len, (const char *)out.kvs[0]->value.data);
    mvcc_txn_end(t);
    kv_arena_free(&arena);
}

/* The failpoint mvcc_put_corrupt: one store writes another value for the
 * same entry (its second put), so the two stores' HashKV differ at the
 * same revision and compact revision, which is what the corruption check
 * looks for; the puts before it hash alike. */
static void test_put_corrupt_failpoint_diverges(void **state) {
    fx_t *f = *state;
    fx_t *g = NULL;
    fx_setup((void **)&g);
    mvcc_arm_put_corrupt(g->m, 2);
    fx_put(f, "a", "one");
    fx_put(g, "a", "one");
    assert_int_equal(hash_at(f, 0, MVCC_OK), hash_at(g, 0, MVCC_OK));
    fx_put(f, "b", "two");
    fx_put(g, "b", "two");
    fx_put(f, "c", ""); /* the failpoint fired once: later puts are stored as given */
    fx_put(g, "c", "");
    char vf[16], vg[16];
    value_of(f, "b", vf, sizeof vf);
    value_of(g, "b", vg, sizeof vg);
    assert_string_equal(vf, "two");
    assert_string_equal(vg, "twO");
    value_of(g, "c", vg, sizeof vg);
    assert_string_equal(vg, "");
    uint32_t hf, hg;
    int64_t rf, rg, cf, cg;
    assert_int_equal(mvcc_hash_kv(f->m, 0, &hf, &rf, &cf), MVCC_OK);
    assert_int_equal(mvcc_hash_kv(g->m, 0, &hg, &rg, &cg), MVCC_OK);
    assert_int_equal(rf, rg);
    assert_int_equal(cf, cg);
    assert_int_not_equal(hf, hg);
    assert_int_equal(hash_at(f, 2, MVCC_OK), hash_at(g, 2, MVCC_OK)); /* before the altered put */
    /* An empty value is altered too. */
    mvcc_arm_put_corrupt(g->m, 1);
    fx_put(g, "d", "");
    value_of(g, "d", vg, sizeof vg);
    assert_string_equal(vg, "!");
    fx_teardown((void **)&g);
}

/* A put and a delete of one key in one txn (possible at apply, refused by
 * the API's duplicate check): both versions are hashed, no error. */
static void test_hashkv_put_then_delete_in_txn(void **state) {
    fx_t *f = *state;
    fx_put(f, "a", "1");
    fx_put_then_delete_in_txn(f, "t", "v");
    hash_at(f, 0, MVCC_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known_value),
        cmocka_unit_test_setup_teardown(test_hashkv_matches_etcd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hashkv_independent_of_compactor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_same_history_same_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hashkv_put_then_delete_in_txn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_corrupt_failpoint_diverges, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
