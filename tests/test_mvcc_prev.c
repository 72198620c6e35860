/*
 * test_mvcc_prev.c: how a put finds its key's previous version in LevelDB
 * (mvcc.c db_latest): from the 'l' record's revision with two gets, and for
 * 'l' records of older stores (empty value) by seeking the versions, also
 * with both kinds in one store. A malformed 'l' value, an 'l' record naming
 * a version that is not there, and an injected LevelDB read error
 * (failpoint mvcc_read_error) are MVCC_ERR_IO, never "no previous version".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <leveldb/c.h>

#include "kv_arena.h"
#include "mvcc.h"

typedef struct fx {
    char dir[256];
    mvcc_t *m;
    uint64_t index;
} fx_t;

static void fx_open(fx_t *f) {
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof(err)), 0);
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    const char *base = getenv("KSHIM_TEST_TMP");
    if (!base) base = "/tmp";
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", base);
    assert_int_equal(system(cmd), 0);
    snprintf(f->dir, sizeof(f->dir), "%s/mvccprev-XXXXXX", base);
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

/* The previous version a put of key sees: *prev gets a copy (version,
 * create and mod revision, value) or stays zero with *had = 0. Returns the
 * put's result; the txn is committed only on MVCC_OK. */
typedef struct prev {
    int had;
    int64_t create, mod, version;
    char value[64];
} prev_t;

static int put(fx_t *f, const char *key, const char *val, prev_t *p) {
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_write(f->m, &a, &t), MVCC_OK);
    const Mvccpb__KeyValue *kv = NULL;
    int rc = mvcc_txn_put(t, (const uint8_t *)key, strlen(key), (const uint8_t *)val, strlen(val), 0, &kv);
    if (p) {
        memset(p, 0, sizeof(*p));
        if (rc == MVCC_OK && kv) {
            p->had = 1;
            p->create = kv->create_revision;
            p->mod = kv->mod_revision;
            p->version = kv->version;
            assert_true(kv->value.len < sizeof(p->value));
            memcpy(p->value, kv->value.data, kv->value.len);
        }
    }
    if (rc == MVCC_OK) assert_int_equal(mvcc_txn_commit(t, ++f->index), MVCC_OK);
    mvcc_txn_end(t);
    kv_arena_free(&a);
    return rc;
}

static void del(fx_t *f, const char *key) {
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_write(f->m, &a, &t), MVCC_OK);
    mvcc_range_t r = mvcc_range_make((const uint8_t *)key, strlen(key), NULL, 0);
    assert_int_equal(mvcc_txn_delete_range(t, &r, NULL), 1);
    assert_int_equal(mvcc_txn_commit(t, ++f->index), MVCC_OK);
    mvcc_txn_end(t);
    kv_arena_free(&a);
}

/* 'l' | key | 00 01 (test keys have no 0x00 byte). */
static size_t live_key(char *out, const char *key) {
    size_t n = strlen(key);
    out[0] = 'l';
    memcpy(out + 1, key, n);
    out[n + 1] = 0x00;
    out[n + 2] = 0x01;
    return n + 3;
}

/* Overwrites key's 'l' record in the closed store with val, then reopens. */
static void set_live_raw(fx_t *f, const char *key, const char *val, size_t vl) {
    mvcc_close(f->m);
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, f->dir, &err);
    assert_null(err);
    char k[64];
    size_t kl = live_key(k, key);
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_put(db, wo, k, kl, val, vl, &err);
    assert_null(err);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    leveldb_options_destroy(o);
    fx_open(f);
}

/* The length of key's 'l' value in the store (closed, then reopened), -1 if absent. */
static long live_len(fx_t *f, const char *key) {
    mvcc_close(f->m);
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, f->dir, &err);
    assert_null(err);
    char k[64];
    size_t kl = live_key(k, key), vl = 0;
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    char *v = leveldb_get(db, ro, k, kl, &vl, &err);
    assert_null(err);
    long out = v ? (long)vl : -1;
    leveldb_free(v);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    fx_open(f);
    return out;
}

static void assert_prev(const prev_t *p, int64_t create, int64_t mod, int64_t version, const char *value) {
    assert_true(p->had);
    assert_int_equal(p->create, create);
    assert_int_equal(p->mod, mod);
    assert_int_equal(p->version, version);
    assert_string_equal(p->value, value);
}

/* The new path: the 'l' record names the newest version (16 bytes). */
static void test_prev_from_live_record(void **state) {
    fx_t *f = *state;
    prev_t p;
    assert_int_equal(put(f, "a", "1", &p), MVCC_OK); /* rev 2 */
    assert_false(p.had);
    assert_int_equal(live_len(f, "a"), 16);
    assert_int_equal(put(f, "b", "x", NULL), MVCC_OK); /* rev 3 */
    assert_int_equal(put(f, "a", "2", &p), MVCC_OK);   /* rev 4 */
    assert_prev(&p, 2, 2, 1, "1");
    assert_int_equal(put(f, "a", "3", &p), MVCC_OK); /* rev 5 */
    assert_prev(&p, 2, 4, 2, "2");
    del(f, "a"); /* rev 6 */
    assert_int_equal(live_len(f, "a"), -1);
    assert_int_equal(put(f, "a", "4", &p), MVCC_OK); /* rev 7: a new life */
    assert_false(p.had);
    assert_int_equal(put(f, "a", "5", &p), MVCC_OK); /* rev 8 */
    assert_prev(&p, 7, 7, 1, "4");
    /* survives a reopen and a compaction of the older versions */
    mvcc_close(f->m);
    fx_open(f);
    assert_int_equal(mvcc_compact(f->m, 8, ++f->index), MVCC_OK);
    assert_int_equal(mvcc_compact_wait(f->m, 8), MVCC_OK);
    assert_int_equal(put(f, "a", "6", &p), MVCC_OK);
    assert_prev(&p, 7, 8, 2, "5");
    assert_int_equal(put(f, "b", "y", &p), MVCC_OK);
    assert_prev(&p, 3, 3, 1, "x");
}

/* Stores written before: an empty 'l' value, found by a seek; mixed with
 * keys of the new format in the same store. */
static void test_prev_old_format_fallback(void **state) {
    fx_t *f = *state;
    prev_t p;
    assert_int_equal(put(f, "old", "o1", NULL), MVCC_OK); /* rev 2 */
    assert_int_equal(put(f, "old", "o2", NULL), MVCC_OK); /* rev 3 */
    assert_int_equal(put(f, "new", "n1", NULL), MVCC_OK); /* rev 4 */
    set_live_raw(f, "old", "", 0);
    assert_int_equal(live_len(f, "old"), 0);
    assert_int_equal(put(f, "old", "o3", &p), MVCC_OK); /* rev 5, by the seek */
    assert_prev(&p, 2, 3, 2, "o2");
    assert_int_equal(live_len(f, "old"), 16); /* rewritten in the new format */
    assert_int_equal(put(f, "old", "o4", &p), MVCC_OK);
    assert_prev(&p, 2, 5, 3, "o3");
    assert_int_equal(put(f, "new", "n2", &p), MVCC_OK);
    assert_prev(&p, 4, 4, 1, "n1");
    /* an old record of a key deleted later is gone with the delete */
    set_live_raw(f, "new", "", 0);
    del(f, "new");
    assert_int_equal(live_len(f, "new"), -1);
    assert_int_equal(put(f, "new", "n3", &p), MVCC_OK);
    assert_false(p.had);
}

/* A put that fails must leave the store as it was. */
static void assert_put_fails(fx_t *f, const char *key) {
    int64_t rev = mvcc_apply_revision(f->m);
    prev_t p;
    assert_int_equal(put(f, key, "z", &p), MVCC_ERR_IO);
    assert_false(p.had);
    assert_int_equal(mvcc_apply_revision(f->m), rev);
}

static void test_prev_malformed_live_record(void **state) {
    fx_t *f = *state;
    assert_int_equal(put(f, "a", "1", NULL), MVCC_OK); /* rev 2 */
    assert_int_equal(put(f, "b", "1", NULL), MVCC_OK); /* rev 3 */
    /* a length no writer makes */
    set_live_raw(f, "a", "\x00\x00\x00\x00\x00", 5);
    assert_put_fails(f, "a");
    /* 16 bytes naming revision 0 */
    set_live_raw(f, "a", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    assert_put_fails(f, "a");
    /* a revision newer than the store's */
    set_live_raw(f, "a", "\x00\x00\x00\x00\x00\x00\x00\x63\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    assert_put_fails(f, "a");
    /* a revision with no version of the key: b's (3), not a's */
    set_live_raw(f, "a", "\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    assert_put_fails(f, "a");
    /* a key with no version at all but an 'l' record */
    set_live_raw(f, "ghost", "\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    assert_put_fails(f, "ghost");
    /* repaired: the right revision works again */
    set_live_raw(f, "a", "\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00", 16);
    prev_t p;
    assert_int_equal(put(f, "a", "2", &p), MVCC_OK);
    assert_prev(&p, 2, 2, 1, "1");
}

/* The failpoint fails the nth LevelDB read: the 'l' get (1), the version
 * get (2); an absent key has only the first. */
static void test_prev_read_error(void **state) {
    fx_t *f = *state;
    assert_int_equal(put(f, "a", "1", NULL), MVCC_OK);
    for (uint64_t n = 1; n <= 2; n++) {
        mvcc_arm_read_error(f->m, n);
        assert_put_fails(f, "a");
        assert_false(mvcc_read_error_armed(f->m));
    }
    mvcc_arm_read_error(f->m, 1);
    assert_put_fails(f, "absent");
    assert_false(mvcc_read_error_armed(f->m));
    /* the old-format path: the 'l' get, then the seek's iterator */
    set_live_raw(f, "a", "", 0);
    for (uint64_t n = 1; n <= 2; n++) {
        mvcc_arm_read_error(f->m, n);
        assert_put_fails(f, "a");
        assert_false(mvcc_read_error_armed(f->m));
    }
    mvcc_arm_read_error(f->m, 0);
    prev_t p;
    assert_int_equal(put(f, "a", "2", &p), MVCC_OK);
    assert_prev(&p, 2, 2, 1, "1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prev_from_live_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prev_old_format_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prev_malformed_live_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prev_read_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
