/*
 * fuzz_store_values.c: every decoder of a value read back from the store's
 * LevelDB: the 'k' versions and 'r' records (mvcc.c, kv_history.c, the
 * hashes, the compactor thread), 'm' and "mk", the compactor's 'c', the lease tables 'L'/'M', the
 * auth 'U'/'R'/'E' records, the alarms 'a' and the member table 'N'.
 *
 * The input is a list of raw records written straight into a fresh LevelDB
 * (the leveldb C API) before the store is opened:
 *   flags(1: bit 0 = first write the base store: fuzz_store_fill's records)
 *   then records: sel(1) | key_len(1) | val_len(2 BE) | key | value
 *   sel >> 6: 0 = key is space[sel & 63 mod 12] + key bytes; 1 = key is the
 *   base record number (key bytes BE) and value replaces its value; 2 = the
 *   same base record, deleted (val_len 0) or cut to value[0] mod (length+1)
 *   bytes with value[1..] appended; 3 = raw key.
 * Then mvcc_open, lessor_open, auth_store_open, kv_alarms_open and
 * member_table_open, and reads through each (ranges at several revisions,
 * the watch catch-up read kv_history, hashes, lease list and lookups, users and permission checks, alarms, the
 * member list), then a Put, a DeleteRange and a compaction. A malformed value must come back
 * as an error return (the member stops, fail-stop), never a crash, a read
 * out of bounds, a leak or an abort.
 */
#include <assert.h>
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auth_store.h"
#include "fuzz.h"
#include "fuzz_store_fill.h"
#include "kv.h"
#include "kv_alarm.h"
#include "lease.h"
#include "member_table.h"
#include "test_raft_util.h"

#define FUZZ_MAX_INPUT (64u * 1024)

typedef struct rec {
    char *key, *val;
    size_t klen, vlen;
} rec_t;

static rec_t *base;
static size_t n_base;
static char root[4200], dir[4300];

static const char spaces[] = "krlmcLMUREaN";

/* The base store's records, read once. */
static void load_base(void) {
    char src[4300];
    snprintf(src, sizeof src, "%s/base", root);
    if (fuzz_store_fill(src) != 0) abort();
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, src, &err);
    if (err) abort();
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        base = realloc(base, (n_base + 1) * sizeof *base);
        rec_t *r = &base[n_base++];
        const char *k = leveldb_iter_key(it, &r->klen), *v = leveldb_iter_value(it, &r->vlen);
        r->key = malloc(r->klen + 1);
        r->val = malloc(r->vlen + 1);
        memcpy(r->key, k, r->klen);
        memcpy(r->val, v, r->vlen);
    }
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    test_rm_rf(src);
}

static void free_base(void) {
    for (size_t i = 0; i < n_base; i++) free(base[i].key), free(base[i].val);
    free(base);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    snprintf(root, sizeof root, "%s/values", fuzz_tmpdir());
    snprintf(dir, sizeof dir, "%s/store", root);
    if (mkdir(root, 0700) != 0) abort();
    load_base();
    atexit(free_base);
    return 0;
}

/* ---- the raw records ---- */

static void add_record(leveldb_writebatch_t *wb, uint8_t sel, const uint8_t *k, size_t kl, const uint8_t *v,
                       size_t vl) {
    uint8_t key[1 + 255];
    int mode = sel >> 6;
    if (mode == 0) {
        key[0] = (uint8_t)spaces[(sel & 63) % (sizeof spaces - 1)];
        memcpy(key + 1, k, kl);
        leveldb_writebatch_put(wb, (const char *)key, kl + 1, (const char *)v, vl);
        return;
    }
    if (mode == 3) {
        if (kl) leveldb_writebatch_put(wb, (const char *)k, kl, (const char *)v, vl);
        return;
    }
    if (n_base == 0) return;
    size_t idx = 0;
    for (size_t i = 0; i < kl && i < 2; i++) idx = idx << 8 | k[i];
    const rec_t *b = &base[idx % n_base];
    if (mode == 1) {
        leveldb_writebatch_put(wb, b->key, b->klen, (const char *)v, vl);
    } else if (vl == 0) {
        leveldb_writebatch_delete(wb, b->key, b->klen);
    } else {
        size_t keep = v[0] % (b->vlen + 1);
        char *nv = malloc(keep + vl);
        memcpy(nv, b->val, keep);
        memcpy(nv + keep, v + 1, vl - 1);
        leveldb_writebatch_put(wb, b->key, b->klen, nv, keep + vl - 1);
        free(nv);
    }
}

/* Writes the input's LevelDB; 0, or -1 for an input too short to use. */
static int write_db(const uint8_t *data, size_t size) {
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, 1);
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, dir, &err);
    if (err) abort();
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    if (data[0] & 1)
        for (size_t i = 0; i < n_base; i++)
            leveldb_writebatch_put(wb, base[i].key, base[i].klen, base[i].val, base[i].vlen);
    size_t off = 1;
    while (size - off >= 4) {
        uint8_t sel = data[off];
        size_t kl = data[off + 1], vl = (size_t)data[off + 2] << 8 | data[off + 3];
        off += 4;
        if (kl > size - off) kl = size - off;
        const uint8_t *k = data + off;
        off += kl;
        if (vl > size - off) vl = size - off;
        add_record(wb, sel, k, kl, data + off, vl);
        off += vl;
    }
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_write(db, wo, wb, &err);
    if (err) abort();
    leveldb_writeoptions_destroy(wo);
    leveldb_writebatch_destroy(wb);
    leveldb_close(db);
    leveldb_options_destroy(o);
    return 0;
}

/* ---- reads through every layer ---- */

static lessor_t *lessor;

static int lease_exists(void *ctx, int64_t id) {
    (void)ctx;
    return lessor && lessor_exists(lessor, id);
}

static int count_events(void *arg, int64_t rev, const mvcc_event_t *evs, size_t n) {
    (void)rev;
    (void)evs;
    *(size_t *)arg += n;
    return 0;
}

static void mvcc_reads(mvcc_t *m) {
    static const uint8_t zero[1] = {0};
    int64_t rev = mvcc_revision(m), compact = mvcc_compact_revision(m);
    int64_t revs[] = {0, rev - 1, compact, compact + 1, 2};
    for (size_t i = 0; i < sizeof revs / sizeof revs[0]; i++) {
        kv_arena_t a;
        kv_arena_init(&a);
        mvcc_txn_t *t = NULL;
        if (mvcc_txn_begin_read(m, &a, &t) == MVCC_OK) {
            mvcc_range_t all = mvcc_range_make(zero, 1, zero, 1);
            mvcc_range_t one = mvcc_range_make((const uint8_t *)"key/01", 6, NULL, 0);
            mvcc_range_t some = mvcc_range_make((const uint8_t *)"key/", 4, (const uint8_t *)"key0", 4);
            mvcc_kv_list_t out = {0};
            int64_t count = 0;
            (void)mvcc_txn_range(t, &all, revs[i], 0, 0, &out, &count);
            (void)mvcc_txn_range(t, &one, revs[i], 0, 0, &out, &count);
            (void)mvcc_txn_range(t, &some, revs[i], 2, 0, &out, &count);
            (void)mvcc_txn_range(t, &some, revs[i], 0, 1, &out, &count);
            mvcc_txn_end(t);
        }
        kv_arena_free(&a);
    }
    int64_t compacted = 0;
    size_t events = 0;
    (void)kv_history(m, zero, 1, zero, 1, compact + 1, rev, 1, count_events, &events, &compacted);
    (void)kv_history(m, (const uint8_t *)"key/", 4, (const uint8_t *)"key0", 4, 1, rev, 0, count_events,
                     &events, &compacted);
    uint32_t hash;
    int64_t cur, cr;
    (void)mvcc_hash_kv(m, 0, &hash, &cur, &cr);
    (void)mvcc_hash_kv(m, rev - 1, &hash, &cur, &cr);
    (void)mvcc_hash_all(m, &hash, &cur);
}

static int count_key(void *arg, const uint8_t *key, size_t len) {
    (void)key;
    (void)len;
    ++*(size_t *)arg;
    return 0;
}

static void lease_reads(mvcc_t *m, lessor_t *l) {
    int64_t *ids = NULL;
    size_t n = 0;
    lessor_promote(l, 5000, 1000);
    if (lessor_list(l, &ids, &n) != LEASE_OK) return;
    for (size_t i = 0; i < n; i++) {
        int64_t granted, remaining;
        (void)lessor_lookup(l, ids[i], 5000, &granted, &remaining);
        size_t keys = 0;
        (void)lease_scan_keys(m, ids[i], count_key, &keys);
    }
    free(ids);
    int64_t expired[16];
    (void)lessor_take_expired(l, 1ull << 40, expired, 16);
}

static void auth_reads(auth_store_t *as) {
    char **names = NULL;
    size_t n = 0;
    if (auth_store_list_users(as, &names, &n) == AUTH_OK) {
        for (size_t i = 0; i < n; i++) {
            char *hash = NULL;
            size_t hl = 0;
            uint64_t rev = 0;
            if (auth_store_user_hash(as, names[i], &hash, &hl, &rev) == AUTH_OK) free(hash);
            (void)auth_store_check_range(as, names[i], auth_store_revision(as), 1, (const uint8_t *)"key/01",
                                         6, NULL, 0);
            (void)auth_store_check_admin(as, names[i]);
            Authpb__User *u = auth_store_get_user(as, names[i]);
            if (u) authpb__user__free_unpacked(u, NULL);
        }
        auth_store_free_names(names, n);
    }
    if (auth_store_list_roles(as, &names, &n) == AUTH_OK) {
        for (size_t i = 0; i < n; i++) {
            Authpb__Role *r = auth_store_get_role(as, names[i]);
            if (r) authpb__role__free_unpacked(r, NULL);
        }
        auth_store_free_names(names, n);
    }
}

static void member_reads(member_table_t *t) {
    uint8_t *packed = NULL;
    size_t len = 0;
    if (member_table_pack(t, &packed, &len) == MEMBER_TABLE_OK) free(packed);
    Kshim__MemberList *l = member_table_list(t);
    if (l) kshim__member_list__free_unpacked(l, NULL);
    size_t members, voters, learners, started;
    member_table_counts(t, &members, &voters, &learners, &started);
}

/* One Put (reads the replaced version), a DeleteRange and a compaction, as
 * applied entries. */
static void writes(mvcc_t *m) {
    kv_header_info_t hdr = {.cluster_id = 0xc1, .member_id = 2, .raft_term = 3};
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = (ProtobufCBinaryData){6, (uint8_t *)"key/01"};
    p.value = (ProtobufCBinaryData){1, (uint8_t *)"v"};
    p.prev_kv = 1;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = &p;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    int rc = kv_apply(m, mvcc_applied_index(m) + 1, &req, &hdr, &res);
    kv_result_clear(&res);
    if (rc != 0) return; /* fail-stop: nothing more is applied */
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = (ProtobufCBinaryData){4, (uint8_t *)"key/"};
    d.range_end = (ProtobufCBinaryData){4, (uint8_t *)"key0"};
    d.prev_kv = 1;
    Kshim__InternalRequest dreq = KSHIM__INTERNAL_REQUEST__INIT;
    dreq.delete_range = &d;
    memset(&res, 0, sizeof res);
    rc = kv_apply(m, mvcc_applied_index(m) + 1, &dreq, &hdr, &res);
    kv_result_clear(&res);
    if (rc != 0) return;
    /* A compaction the compactor thread carries out over the records. */
    int64_t at = mvcc_revision(m) - 1;
    if (mvcc_compact(m, at, mvcc_applied_index(m) + 1) == MVCC_OK) (void)mvcc_compact_wait(m, at);
}

static void open_and_read(void) {
    char err[256];
    mvcc_t *m = NULL;
    mvcc_options_t opts = {.lease_exists = lease_exists};
    if (mvcc_open(dir, &opts, &m, err, sizeof err) != MVCC_OK) return;
    int rc = lessor_open(m, 1, &lessor);
    assert(rc == LEASE_OK || rc == LEASE_E_IO);
    auth_store_t *as = NULL;
    rc = auth_store_open(m, &as);
    assert(rc == AUTH_OK || rc == AUTH_E_IO || rc == AUTH_E_NOMEM);
    kv_alarms_t *alarms = NULL;
    rc = kv_alarms_open(m, &alarms);
    assert(rc == 0 || rc == -1);
    member_table_t *mt = NULL;
    rc = member_table_open(m, &mt);
    assert(rc == MEMBER_TABLE_OK || rc == MEMBER_TABLE_E_IO || rc == MEMBER_TABLE_E_CORRUPT ||
           rc == MEMBER_TABLE_E_NOMEM);
    mvcc_reads(m);
    if (rc == MEMBER_TABLE_OK) member_reads(mt);
    if (lessor) lease_reads(m, lessor);
    if (as) auth_reads(as);
    if (alarms) {
        kv_alarm_t got[KV_ALARMS_MAX];
        (void)kv_alarms_get(alarms, ETCDSERVERPB__ALARM_TYPE__NONE, got, KV_ALARMS_MAX);
    }
    writes(m);
    if (mt) member_table_free(mt);
    if (alarms) kv_alarms_free(alarms);
    if (as) auth_store_free(as);
    if (lessor) lessor_free(lessor);
    lessor = NULL;
    mvcc_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > FUZZ_MAX_INPUT) return 0;
    test_rm_rf(dir);
    if (write_db(data, size) != 0) return 0;
    open_and_read();
    return 0;
}
