/*
 * test_store_values.c: corrupt values read back from the store's LevelDB,
 * the regressions of tests/fuzz/fuzz_store_values.c. Each test writes raw
 * records into a store's LevelDB (the leveldb C API, the store closed), then
 * opens the store and the state machine that owns the space: a value that
 * does not decode is an error return (fail-stop), never "not found", a
 * crash or undefined behaviour (this runs under UBSan in build-asan).
 * Also the snapshot receiver's check of the 'm' record a stream carries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <leveldb/c.h>

#include "kv.h"
#include "kv_alarm.h"
#include "lease.h"
#include "mvcc.h"
#include "mvcc_snapshot.h"

typedef struct fx {
    char base[256], dir[300];
} fx_t;

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    const char *base = getenv("KSHIM_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    snprintf(f->base, sizeof f->base, "%s/store-values-XXXXXX", base);
    assert_non_null(mkdtemp(f->base));
    snprintf(f->dir, sizeof f->dir, "%s/store", f->base);
    char err[256];
    mvcc_t *m = NULL;
    assert_int_equal(mvcc_open(f->dir, NULL, &m, err, sizeof err), MVCC_OK);
    mvcc_close(m);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->base);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Puts one raw record into the closed store's LevelDB. */
static void raw_put(fx_t *f, const void *key, size_t klen, const void *val, size_t vlen) {
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, f->dir, &err);
    assert_null(err);
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_put(db, wo, key, klen, val, vlen, &err);
    assert_null(err);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    leveldb_options_destroy(o);
}

/* 'r' | main | sub (mvcc_keys.h's layout, spelled out: that header is
 * internal to storage/). */
static void encode_rev_key_for_test(uint8_t out[17], uint64_t main, uint64_t sub) {
    out[0] = 'r';
    for (int i = 0; i < 8; i++) out[1 + i] = (uint8_t)(main >> (56 - 8 * i));
    for (int i = 0; i < 8; i++) out[9 + i] = (uint8_t)(sub >> (56 - 8 * i));
}

/* Removes the store and makes an empty one. */
static void test_rm_store(fx_t *f) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    char err[256];
    mvcc_t *m = NULL;
    assert_int_equal(mvcc_open(f->dir, NULL, &m, err, sizeof err), MVCC_OK);
    mvcc_close(m);
}

static void lease_record(fx_t *f, int64_t id, uint64_t ttl) {
    uint8_t key[9], val[16];
    lease_record_key(key, id);
    lease_record_encode(val, (int64_t)ttl, 0);
    raw_put(f, key, sizeof key, val, sizeof val);
}

/* An 'L' record with a TTL no grant writes (above etcd's MaxLeaseTTL)
 * opened and then overflowed the deadline arithmetic (lessor_lookup after
 * lessor_promote: signed overflow); it is corruption: lessor_open fails. */
static void test_lease_ttl_above_max(void **state) {
    fx_t *f = *state;
    lease_record(f, 7, 1152921504606846970ull); /* fuzz_store_values' regress_lease_ttl_overflow */
    char err[256];
    mvcc_t *m = NULL;
    assert_int_equal(mvcc_open(f->dir, NULL, &m, err, sizeof err), MVCC_OK);
    lessor_t *l = NULL;
    assert_int_equal(lessor_open(m, 1, &l), LEASE_E_IO);
    mvcc_close(m);
}

/* The largest TTL a grant accepts loads, and its deadline stays in range. */
static void test_lease_ttl_at_max(void **state) {
    fx_t *f = *state;
    lease_record(f, 7, (uint64_t)LEASE_MAX_TTL);
    char err[256];
    mvcc_t *m = NULL;
    assert_int_equal(mvcc_open(f->dir, NULL, &m, err, sizeof err), MVCC_OK);
    lessor_t *l = NULL;
    assert_int_equal(lessor_open(m, 1, &l), LEASE_OK);
    lessor_promote(l, 5000, 1000);
    int64_t granted = 0, remaining = 0;
    assert_int_equal(lessor_lookup(l, 7, 5000, &granted, &remaining), LEASE_OK);
    assert_int_equal(granted, LEASE_MAX_TTL);
    assert_int_equal(remaining, LEASE_MAX_TTL + 1);
    lessor_free(l);
    mvcc_close(m);
}

static mvcc_t *open_store(fx_t *f) {
    char err[256];
    mvcc_t *m = NULL;
    assert_int_equal(mvcc_open(f->dir, NULL, &m, err, sizeof err), MVCC_OK);
    return m;
}

/* Puts k=v as entry index (through kv_apply). */
static void put(mvcc_t *m, uint64_t index, const char *k, const char *v) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = (ProtobufCBinaryData){strlen(k), (uint8_t *)k};
    p.value = (ProtobufCBinaryData){strlen(v), (uint8_t *)v};
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = &p;
    kv_header_info_t hdr = {.cluster_id = 1, .member_id = 2, .raft_term = 3};
    kv_result_t res;
    memset(&res, 0, sizeof res);
    assert_int_equal(kv_apply(m, index, &req, &hdr, &res), 0);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
}

/* Alarm records of another shape were skipped (the alarm lost in silence):
 * now each fails the load. */
static void test_alarm_record_shapes(void **state) {
    fx_t *f = *state;
    static const struct {
        uint8_t key[12];
        size_t klen, vlen;
    } bad[] = {
        {{'a', 1, 0, 0, 0, 0, 0, 0, 0}, 9, 0},        /* key too short */
        {{'a', 1, 0, 0, 0, 0, 0, 0, 0, 2, 0}, 11, 0}, /* key too long */
        {{'a', 1, 0, 0, 0, 0, 0, 0, 0, 2}, 10, 1},    /* a value */
        {{'a', 0, 0, 0, 0, 0, 0, 0, 0, 2}, 10, 0},    /* type NONE, never stored */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_put(f, bad[i].key, bad[i].klen, "x", bad[i].vlen);
        mvcc_t *m = open_store(f);
        kv_alarms_t *a = NULL;
        assert_int_equal(kv_alarms_open(m, &a), -1);
        mvcc_close(m);
        leveldb_options_t *o = leveldb_options_create();
        char *err = NULL;
        leveldb_t *db = leveldb_open(o, f->dir, &err);
        assert_null(err);
        leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
        leveldb_delete(db, wo, (const char *)bad[i].key, bad[i].klen, &err);
        assert_null(err);
        leveldb_writeoptions_destroy(wo);
        leveldb_close(db);
        leveldb_options_destroy(o);
    }
    /* The shape kv_alarms_apply writes loads. */
    static const uint8_t good[10] = {'a', 1, 0, 0, 0, 0, 0, 0, 0, 2};
    raw_put(f, good, sizeof good, "", 0);
    mvcc_t *m = open_store(f);
    kv_alarms_t *a = NULL;
    assert_int_equal(kv_alarms_open(m, &a), 0);
    kv_alarm_t got[4];
    assert_int_equal(kv_alarms_get(a, 0, got, 4), 1);
    assert_int_equal(got[0].member_id, 2);
    kv_alarms_free(a);
    mvcc_close(m);
}

static int count_events(void *arg, int64_t rev, const mvcc_event_t *evs, size_t n) {
    (void)rev;
    (void)evs;
    *(size_t *)arg += n;
    return 0;
}

/* A revision record without its event type, of another key length or with
 * an unknown type was skipped by the watch catch-up read (a change missing
 * from the history) and the compactor: now an I/O error, and the compactor
 * stops (the member with it). */
static void test_revision_record_shapes(void **state) {
    fx_t *f = *state;
    mvcc_t *m = open_store(f);
    put(m, 1, "a", "1");
    put(m, 2, "a", "2");
    put(m, 3, "b", "3");
    mvcc_close(m);
    static const uint8_t zero[1] = {0};
    uint8_t rk[18];
    encode_rev_key_for_test(rk, 3, 0);
    static const struct {
        size_t klen;
        const char *val;
        size_t vlen;
    } bad[] = {{17, "", 0},
               {17,
                "\x07"
                "b",
                2},
               {18,
                "\x00"
                "b",
                2}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_put(f, rk, bad[i].klen, bad[i].val, bad[i].vlen);
        m = open_store(f);
        size_t n = 0;
        int64_t cr = 0;
        assert_int_equal(kv_history(m, zero, 1, zero, 1, 1, 10, 0, count_events, &n, &cr), KV_HISTORY_IO);
        assert_int_equal(mvcc_compact(m, 3, 10), MVCC_OK);
        assert_int_equal(mvcc_compact_wait(m, 3), MVCC_ERR_IO);
        assert_int_equal(mvcc_failed(m), 1);
        mvcc_close(m);
        test_rm_store(f);
        m = open_store(f);
        put(m, 1, "a", "1");
        put(m, 2, "a", "2");
        put(m, 3, "b", "3");
        mvcc_close(m);
    }
}

/* A snapshot stream whose 'm' record is not mvcc.c's 24 (or 32) bytes was
 * staged (its first 8 bytes read as the index) and then failed the store
 * at the install (mvcc_open refuses it): now the receiver refuses it. */
static void test_snapshot_meta_length(void **state) {
    fx_t *f = *state;
    for (int good = 0; good < 2; good++) {
        uint8_t s[128];
        size_t n = 0;
        memcpy(s, "KSHIMSN1", 8);
        memset(s + 8, 0, 8);
        s[15] = 5; /* applied index 5 */
        n = 16;
        size_t vl = good ? 24 : 8;
        s[n++] = 1;
        s[n++] = 0, s[n++] = 0, s[n++] = 0, s[n++] = 1;
        s[n++] = 0, s[n++] = 0, s[n++] = 0, s[n++] = (uint8_t)vl;
        s[n++] = 'm';
        memset(s + n, 0, vl);
        s[n + 7] = 5;                          /* applied index */
        if (good) s[n + 15] = 1;               /* revision 1 */
        if (good) memset(s + n + 16, 0xff, 8); /* never compacted: -1 */
        n += vl;
        s[n++] = 2;
        memset(s + n, 0, 8);
        s[n + 7] = 1; /* one record */
        n += 8;
        uint32_t crc = mvcc_crc32c(0, s, n);
        s[n++] = (uint8_t)(crc >> 24), s[n++] = (uint8_t)(crc >> 16), s[n++] = (uint8_t)(crc >> 8);
        s[n++] = (uint8_t)crc;
        mvcc_t *m = open_store(f);
        char err[256];
        mvcc_snap_writer_t *w = NULL;
        assert_int_equal(mvcc_snapshot_import(m, &w, err, sizeof err), MVCC_OK);
        assert_int_equal(mvcc_snap_writer_write(w, s, n), MVCC_OK);
        uint64_t index = 0;
        assert_int_equal(mvcc_snap_writer_finish(w, &index), good ? MVCC_OK : MVCC_ERR_CORRUPT);
        if (good) {
            assert_int_equal(index, 5);
            assert_int_equal(mvcc_snapshot_install(m, err, sizeof err), MVCC_OK);
            assert_int_equal(mvcc_applied_index(m), 5);
            assert_int_equal(mvcc_failed(m), 0);
        } else {
            assert_int_equal(mvcc_snapshot_install(m, err, sizeof err), MVCC_ERR_NOT_FOUND);
        }
        mvcc_close(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lease_ttl_above_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_ttl_at_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_record_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revision_record_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_meta_length, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
