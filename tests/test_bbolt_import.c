/*
 * test_bbolt_import.c: the event-apply store API (storage/mvcc/mvcc_import.c)
 * and the cut-over tables (storage/bbolt/etcd_import.c), target kshim_bbolt:
 * etcd events applied at their own revisions keep key, value, create/mod
 * revision, version and lease, and older revisions stay readable; deletes
 * write tombstones; lease attachments follow puts, lease changes and
 * deletes; a revision already applied is skipped; events that do not fit
 * their revision are refused; a revision's events land in one write;
 * finish raises the revision; lease, user and role tables are replaced
 * (a known user keeps its password hash).
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

#include "auth.pb-c.h"
#include "etcd_import.h"
#include "kv_arena.h"
#include "lease_keys.h"
#include "mvcc.h"

typedef struct st {
    char dir[256];
    mvcc_t *m;
} st_t;

static int setup(void **state) {
    static int seq;
    st_t *s = calloc(1, sizeof *s);
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[600];
    snprintf(s->dir, sizeof s->dir, "%s/import-%d-%d", base ? base : "/tmp", (int)getpid(), seq++);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", s->dir, s->dir);
    assert_int_equal(system(cmd), 0);
    char err[256];
    assert_int_equal(mvcc_open(s->dir, NULL, &s->m, err, sizeof err), 0);
    *state = s;
    return 0;
}

static int teardown(void **state) {
    st_t *s = *state;
    if (s->m) mvcc_close(s->m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
    int rc = system(cmd);
    free(s);
    return rc;
}

/* An event of etcd's shape (static storage per slot). */
static Mvccpb__Event evbuf[16];
static Mvccpb__KeyValue kvbuf[16];
static Mvccpb__Event *ev(int slot, int del, const char *key, const char *val, int64_t create, int64_t mod,
                         int64_t version, int64_t lease) {
    Mvccpb__Event *e = &evbuf[slot];
    Mvccpb__KeyValue *kv = &kvbuf[slot];
    mvccpb__event__init(e);
    mvccpb__key_value__init(kv);
    e->type = del ? MVCCPB__EVENT__EVENT_TYPE__DELETE : MVCCPB__EVENT__EVENT_TYPE__PUT;
    kv->key.data = (uint8_t *)key;
    kv->key.len = strlen(key);
    if (!del) {
        kv->value.data = (uint8_t *)val;
        kv->value.len = strlen(val);
        kv->create_revision = create;
        kv->version = version;
        kv->lease = lease;
    }
    kv->mod_revision = mod;
    e->kv = kv;
    return e;
}

static int apply1(mvcc_t *m, Mvccpb__Event *e, int64_t rev) {
    const Mvccpb__Event *evs[1] = {e};
    return mvcc_import_revision(m, rev, evs, 1, 1);
}

/* Get key at rev (0: current) into *out (arena memory) or NULL. */
static int get(mvcc_t *m, kv_arena_t *a, const char *key, int64_t rev, const Mvccpb__KeyValue **out) {
    mvcc_txn_t *t;
    assert_int_equal(mvcc_txn_begin_read(m, a, &t), 0);
    mvcc_range_t r = mvcc_range_make((const uint8_t *)key, strlen(key), NULL, 0);
    mvcc_kv_list_t l = {0};
    int64_t count = 0;
    int rc = mvcc_txn_range(t, &r, rev, 0, 0, &l, &count);
    *out = l.n ? l.kvs[0] : NULL;
    mvcc_txn_end(t);
    return rc;
}

static int count_keys(void *arg, const uint8_t *key, size_t len) {
    (void)key;
    (void)len;
    ++*(int *)arg;
    return 0;
}

static int attached(mvcc_t *m, int64_t lease) {
    int n = 0;
    assert_int_equal(lease_scan_keys(m, lease, count_keys, &n), 0);
    return n;
}

static void test_revisions_kept(void **state) {
    st_t *s = *state;
    /* etcd's history: rev 5 puts a (created 5), rev 9 puts a again and b in
     * one txn, rev 12 deletes a. Revisions jump as they do after a restore. */
    assert_int_equal(apply1(s->m, ev(0, 0, "a", "v1", 5, 5, 1, 0), 5), 0);
    const Mvccpb__Event *r9[2] = {ev(0, 0, "a", "v2", 5, 9, 2, 0), ev(1, 0, "b", "x", 9, 9, 1, 0)};
    assert_int_equal(mvcc_import_revision(s->m, 9, r9, 2, 0), 0);
    assert_int_equal(mvcc_revision(s->m), 9);
    assert_int_equal(apply1(s->m, ev(0, 1, "a", NULL, 0, 12, 0, 0), 12), 0);
    assert_int_equal(mvcc_revision(s->m), 12);
    kv_arena_t a;
    kv_arena_init(&a);
    const Mvccpb__KeyValue *kv;
    assert_int_equal(get(s->m, &a, "a", 0, &kv), 0);
    assert_null(kv);
    assert_int_equal(get(s->m, &a, "a", 11, &kv), 0);
    assert_non_null(kv);
    assert_int_equal(kv->create_revision, 5);
    assert_int_equal(kv->mod_revision, 9);
    assert_int_equal(kv->version, 2);
    assert_memory_equal(kv->value.data, "v2", 2);
    assert_int_equal(get(s->m, &a, "a", 5, &kv), 0);
    assert_int_equal(kv->mod_revision, 5);
    assert_int_equal(kv->version, 1);
    assert_int_equal(get(s->m, &a, "b", 0, &kv), 0);
    assert_int_equal(kv->create_revision, 9);
    assert_int_equal(kv->mod_revision, 9);
    kv_arena_free(&a);
}

static void test_duplicate_and_bad_events(void **state) {
    st_t *s = *state;
    assert_int_equal(apply1(s->m, ev(0, 0, "k", "1", 3, 3, 1, 0), 3), 0);
    /* the same revision again (a watch resumed too early): skipped */
    assert_int_equal(apply1(s->m, ev(0, 0, "k", "other", 3, 3, 1, 0), 3), 1);
    assert_int_equal(apply1(s->m, ev(0, 0, "k", "old", 2, 2, 1, 0), 2), 1);
    /* mod_revision not the revision, create in the future, version 0, no key */
    assert_int_equal(apply1(s->m, ev(0, 0, "k", "2", 3, 5, 2, 0), 4), MVCC_ERR_BAD_EVENT);
    assert_int_equal(apply1(s->m, ev(0, 0, "k", "2", 7, 4, 2, 0), 4), MVCC_ERR_BAD_EVENT);
    assert_int_equal(apply1(s->m, ev(0, 0, "k", "2", 3, 4, 0, 0), 4), MVCC_ERR_BAD_EVENT);
    assert_int_equal(apply1(s->m, ev(0, 0, "", "2", 4, 4, 1, 0), 4), MVCC_ERR_BAD_EVENT);
    assert_int_equal(mvcc_import_revision(s->m, 4, NULL, 0, 1), MVCC_ERR_BAD_EVENT);
    /* one bad event refuses the whole revision: nothing of it written */
    const Mvccpb__Event *r4[2] = {ev(0, 0, "n", "x", 4, 4, 1, 0), ev(1, 0, "k", "2", 3, 5, 2, 0)};
    assert_int_equal(mvcc_import_revision(s->m, 4, r4, 2, 1), MVCC_ERR_BAD_EVENT);
    assert_int_equal(mvcc_revision(s->m), 3);
    kv_arena_t a;
    kv_arena_init(&a);
    const Mvccpb__KeyValue *kv;
    assert_int_equal(get(s->m, &a, "n", 0, &kv), 0);
    assert_null(kv);
    assert_int_equal(get(s->m, &a, "k", 0, &kv), 0);
    assert_memory_equal(kv->value.data, "1", 1);
    kv_arena_free(&a);
}

static void test_lease_attachments(void **state) {
    st_t *s = *state;
    assert_int_equal(apply1(s->m, ev(0, 0, "x", "1", 2, 2, 1, 100), 2), 0);
    assert_int_equal(apply1(s->m, ev(0, 0, "y", "1", 3, 3, 1, 100), 3), 0);
    assert_int_equal(attached(s->m, 100), 2);
    /* x moves to lease 200, then y is deleted (a revoke's delete) */
    assert_int_equal(apply1(s->m, ev(0, 0, "x", "2", 2, 4, 2, 200), 4), 0);
    assert_int_equal(attached(s->m, 100), 1);
    assert_int_equal(attached(s->m, 200), 1);
    assert_int_equal(apply1(s->m, ev(0, 1, "y", NULL, 0, 5, 0, 0), 5), 0);
    assert_int_equal(attached(s->m, 100), 0);
    /* put without lease, then a delete and a leased put in one revision */
    assert_int_equal(apply1(s->m, ev(0, 0, "x", "3", 2, 6, 3, 0), 6), 0);
    assert_int_equal(attached(s->m, 200), 0);
    const Mvccpb__Event *r7[2] = {ev(0, 0, "z", "1", 7, 7, 1, 300), ev(1, 1, "z", NULL, 0, 7, 0, 0)};
    assert_int_equal(mvcc_import_revision(s->m, 7, r7, 2, 1), 0);
    assert_int_equal(attached(s->m, 300), 0);
}

static void test_finish_and_tables(void **state) {
    st_t *s = *state;
    assert_int_equal(apply1(s->m, ev(0, 0, "x", "1", 2, 2, 1, 7), 2), 0);
    assert_int_equal(mvcc_import_finish(s->m, 10), 0);
    assert_int_equal(mvcc_revision(s->m), 10);
    assert_int_equal(mvcc_import_finish(s->m, 4), 0);
    assert_int_equal(mvcc_revision(s->m), 10);
    /* leases: 5 (from the snapshot, gone on the source) replaced by 7 and 8 */
    uint8_t k[9], v[16];
    lease_record_key(k, 5);
    lease_record_encode(v, 60, 60);
    mvcc_raw_rec_t old = {k, 9, v, 16};
    assert_int_equal(mvcc_import_replace_raw(s->m, (const uint8_t *)"L", 1, &old, 1), 0);
    etcd_import_lease_t ls[2] = {{7, 100, 42}, {8, 30, 30}};
    assert_int_equal(etcd_import_leases(s->m, ls, 2), 0);
    uint8_t *val;
    size_t vl;
    assert_int_equal(mvcc_raw_get(s->m, k, 9, &val, &vl), MVCC_ERR_NOT_FOUND);
    lease_record_key(k, 7);
    assert_int_equal(mvcc_raw_get(s->m, k, 9, &val, &vl), 0);
    int64_t g, r;
    assert_int_equal(lease_record_decode(val, vl, &g, &r), 0);
    assert_int_equal(g, 100);
    assert_int_equal(r, 42);
    free(val);
    /* the store's own spaces are refused */
    assert_int_equal(mvcc_import_replace_raw(s->m, (const uint8_t *)"k", 1, NULL, 0), MVCC_ERR_NOT_FOUND);
    /* users: alice (known, keeps her hash) and bob (new, no password) */
    Authpb__User alice = AUTHPB__USER__INIT;
    alice.name.data = (uint8_t *)"alice";
    alice.name.len = 5;
    alice.password.data = (uint8_t *)"$2a$hash";
    alice.password.len = 8;
    uint8_t packed[128];
    size_t pl = authpb__user__pack(&alice, packed);
    mvcc_raw_rec_t ur = {(const uint8_t *)"Ualice", 6, packed, pl};
    assert_int_equal(mvcc_import_replace_raw(s->m, (const uint8_t *)"U", 1, &ur, 1), 0);
    char *roles[] = {"r1"};
    etcd_import_user_t us[2] = {{"alice", roles, 1}, {"bob", NULL, 0}};
    size_t nopw = 9;
    assert_int_equal(etcd_import_users(s->m, us, 2, &nopw), 0);
    assert_int_equal(nopw, 1);
    assert_int_equal(mvcc_raw_get(s->m, (const uint8_t *)"Ualice", 6, &val, &vl), 0);
    Authpb__User *u = authpb__user__unpack(NULL, vl, val);
    free(val);
    assert_non_null(u);
    assert_int_equal(u->password.len, 8);
    assert_int_equal(u->n_roles, 1);
    assert_string_equal(u->roles[0], "r1");
    authpb__user__free_unpacked(u, NULL);
    assert_int_equal(mvcc_raw_get(s->m, (const uint8_t *)"Ubob", 4, &val, &vl), 0);
    free(val);
    /* roles */
    Authpb__Permission p = AUTHPB__PERMISSION__INIT;
    p.key.data = (uint8_t *)"a";
    p.key.len = 1;
    Authpb__Permission *pp[1] = {&p};
    Authpb__Role r1 = AUTHPB__ROLE__INIT;
    r1.name.data = (uint8_t *)"r1";
    r1.name.len = 2;
    r1.keypermission = pp;
    r1.n_keypermission = 1;
    const Authpb__Role *rs[1] = {&r1};
    assert_int_equal(etcd_import_roles(s->m, rs, 1), 0);
    assert_int_equal(mvcc_raw_get(s->m, (const uint8_t *)"Rr1", 3, &val, &vl), 0);
    Authpb__Role *got = authpb__role__unpack(NULL, vl, val);
    free(val);
    assert_non_null(got);
    assert_int_equal(got->n_keypermission, 1);
    authpb__role__free_unpacked(got, NULL);
    assert_int_equal(etcd_import_roles(s->m, NULL, 0), 0);
    assert_int_equal(mvcc_raw_get(s->m, (const uint8_t *)"Rr1", 3, &val, &vl), MVCC_ERR_NOT_FOUND);
    assert_int_equal(mvcc_revision(s->m), 10);
}

/* Reopened, the store holds what was applied (the revision record is in
 * the revision's write). */
static void test_reopen(void **state) {
    st_t *s = *state;
    for (int64_t rev = 2; rev <= 50; rev++) {
        char val[16];
        snprintf(val, sizeof val, "%lld", (long long)rev);
        assert_int_equal(apply1(s->m, ev(0, 0, "c", val, 2, rev, rev - 1, 0), rev), 0);
    }
    mvcc_close(s->m);
    char err[256];
    assert_int_equal(mvcc_open(s->dir, NULL, &s->m, err, sizeof err), 0);
    assert_int_equal(mvcc_revision(s->m), 50);
    kv_arena_t a;
    kv_arena_init(&a);
    const Mvccpb__KeyValue *kv;
    assert_int_equal(get(s->m, &a, "c", 0, &kv), 0);
    assert_int_equal(kv->version, 49);
    assert_int_equal(get(s->m, &a, "c", 20, &kv), 0);
    assert_int_equal(kv->version, 19);
    kv_arena_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_revisions_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_bad_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_attachments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_and_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
