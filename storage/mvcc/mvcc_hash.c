/*
 * mvcc_hash.c: the store's hashes (mvcc_hash_kv, mvcc_hash_all in mvcc.h):
 * etcd's HashByRev and Hash, computed from one LevelDB snapshot.
 *
 * HashByRev hashes etcd's key bucket: records keyed by revision (main 8B BE
 * | '_' | sub 8B BE, 't' appended for a tombstone) holding the packed
 * mvccpb.KeyValue. Our layout keeps the same facts in two places: the
 * revision table ('r' | main | sub -> type | key, see mvcc_keys.h) gives the
 * order and the key, and the version itself is read back at its revision
 * through the snapshot. So the bytes hashed are exactly etcd's for the same
 * history, and members with the same history agree whatever their
 * compactor's progress (which versions are kept at or below the compact
 * revision is decided from the versions themselves, as etcd's kvindex.Keep).
 *
 * Owns the CRC-32C (Castagnoli) table (storage cannot link raft/crc32c).
 */
#include <stdlib.h>
#include <string.h>

#include "mvcc.h"
#include "mvcc_keys.h"

/* ---- CRC-32C (reflected polynomial 0x82F63B78), one table ---- */

static uint32_t crc_table[256];
static int crc_ready; /* benign race: every thread writes the same table */

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t mvcc_crc32c(uint32_t crc, const void *buf, size_t len) {
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE)) crc_init();
    const uint8_t *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- HashByRev ---- */

typedef struct hash_kv {
    mvcc_txn_t *t;
    kv_arena_t *arena;
    int64_t rev;         /* hash up to here */
    int64_t compact_rev; /* C: at or below, only kept versions */
    int64_t keep_at;     /* the revision whose newest versions are kept (rev, or C, see mvcc.h) */
    uint32_t crc;
    uint8_t *buf; /* packing buffer */
    size_t cap;
    int err; /* MVCC_ERR_* of a failed read */
} hash_kv_t;

/* The live version of key at revision at (NULL: absent or a tombstone). */
static const Mvccpb__KeyValue *version_at(hash_kv_t *h, const uint8_t *key, size_t key_len, int64_t at) {
    mvcc_range_t r = mvcc_range_make(key, key_len, NULL, 0);
    mvcc_kv_list_t l = {0};
    int64_t count = 0;
    int rc = mvcc_txn_range(h->t, &r, at, 1, 0, &l, &count);
    if (rc != MVCC_OK) {
        h->err = rc;
        return NULL;
    }
    return l.n ? l.kvs[0] : NULL;
}

/* The version (main, sub) of key as its 'k' record holds it; kv points into
 * *rec (the caller frees it). A revision record without its version is
 * damage: MVCC_ERR_IO in h->err, -1. */
static int exact_version(hash_kv_t *h, const uint8_t *key, size_t key_len, int64_t main, int64_t sub,
                         Mvccpb__KeyValue *kv, uint8_t **rec, size_t *rec_len) {
    uint8_t *ek = malloc(mvcc_key_max(key_len));
    if (!ek) abort();
    size_t n = mvcc_key_version(ek, key, key_len, main, sub);
    int rc = mvcc_txn_raw_get(h->t, ek, n, rec, rec_len);
    free(ek);
    if (rc == MVCC_OK && (*rec_len < REC_HDR || ((*rec)[0] & 1))) {
        free(*rec);
        rc = MVCC_ERR_IO; /* too short, or a tombstone where the revision table has a put */
    }
    if (rc != MVCC_OK) {
        h->err = MVCC_ERR_IO;
        return -1;
    }
    const uint8_t *r = *rec;
    kv->key.data = (uint8_t *)key;
    kv->key.len = key_len;
    kv->create_revision = (int64_t)get_be64(r + 1);
    kv->version = (int64_t)get_be64(r + 9);
    kv->lease = (int64_t)get_be64(r + 17);
    kv->mod_revision = main;
    kv->value.data = (uint8_t *)r + REC_HDR;
    kv->value.len = *rec_len - REC_HDR;
    return 0;
}

static void hash_record(hash_kv_t *h, int64_t main, int64_t sub, int tombstone, const Mvccpb__KeyValue *kv) {
    uint8_t rk[18];
    put_be64(rk, (uint64_t)main);
    rk[8] = '_';
    put_be64(rk + 9, (uint64_t)sub);
    if (tombstone) rk[17] = 't';
    h->crc = mvcc_crc32c(h->crc, rk, tombstone ? 18 : 17);
    size_t n = mvccpb__key_value__get_packed_size(kv);
    if (n > h->cap) {
        uint8_t *b = realloc(h->buf, n);
        if (!b) abort();
        h->buf = b;
        h->cap = n;
    }
    mvccpb__key_value__pack(kv, h->buf);
    h->crc = mvcc_crc32c(h->crc, h->buf, n);
}

/* One revision-table record: 'r' | main | sub -> type | user key. */
static int hash_kv_record(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    hash_kv_t *h = arg;
    if (kl != REV_KEY_LEN || vl < 1) {
        h->err = MVCC_ERR_IO; /* a damaged revision record: never hash around it */
        return 1;
    }
    int64_t main = (int64_t)get_be64(k + 1), sub = (int64_t)get_be64(k + 9);
    if (main > h->rev) return 1;
    const uint8_t *key = v + 1;
    size_t key_len = vl - 1;
    int tombstone = v[0] != 0;
    if (main <= h->compact_rev) {
        /* kept only as the key's newest live version at keep_at */
        if (tombstone) return 0;
        const Mvccpb__KeyValue *kv = version_at(h, key, key_len, h->keep_at);
        if (h->err) return 1;
        if (kv && kv->mod_revision == main) hash_record(h, main, sub, 0, kv);
    } else if (tombstone) {
        Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
        kv.key.data = (uint8_t *)key;
        kv.key.len = key_len;
        hash_record(h, main, sub, 1, &kv);
    } else {
        Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
        uint8_t *rec = NULL;
        size_t rec_len = 0;
        if (exact_version(h, key, key_len, main, sub, &kv, &rec, &rec_len) != 0) return 1;
        hash_record(h, main, sub, 0, &kv);
        free(rec);
    }
    kv_arena_free(h->arena); /* one record's versions at a time */
    kv_arena_init(h->arena);
    return 0;
}

/* Is any key alive at rev? (etcd: len(kvindex.Keep(rev)) > 0) */
static int any_alive(mvcc_txn_t *t, int64_t rev, int *alive) {
    static const uint8_t zero = 0;
    mvcc_range_t all = mvcc_range_make(&zero, 1, &zero, 1);
    mvcc_kv_list_t l = {0};
    int64_t count = 0;
    int rc = mvcc_txn_range(t, &all, rev, 1, 1, &l, &count);
    *alive = count > 0;
    return rc;
}

int mvcc_hash_kv(mvcc_t *m, int64_t rev, uint32_t *hash, int64_t *cur_rev, int64_t *compact_rev) {
    kv_arena_t arena;
    kv_arena_init(&arena);
    mvcc_txn_t *t = NULL;
    if (mvcc_txn_begin_read(m, &arena, &t) != MVCC_OK) {
        kv_arena_free(&arena);
        return MVCC_ERR_IO;
    }
    hash_kv_t h = {.t = t, .arena = &arena};
    h.compact_rev = mvcc_txn_compact_rev(t);
    *cur_rev = mvcc_txn_rev(t);
    *compact_rev = h.compact_rev;
    int rc = MVCC_OK;
    if (rev > 0 && rev <= h.compact_rev) {
        rc = MVCC_ERR_COMPACTED;
    } else if (rev > 0 && rev > *cur_rev) {
        rc = MVCC_ERR_FUTURE_REV;
    } else {
        h.rev = rev > 0 ? rev : *cur_rev;
        h.keep_at = h.rev;
        int alive = 1;
        if (h.compact_rev >= 0) rc = any_alive(t, h.rev, &alive);
        if (!alive) h.keep_at = h.compact_rev;
        h.crc = mvcc_crc32c(0, "key", 3);
        const uint8_t prefix = MVCC_SPACE_REV;
        if (rc == MVCC_OK) rc = mvcc_txn_raw_scan(t, &prefix, 1, hash_kv_record, &h);
        if (rc == MVCC_OK && h.err) rc = h.err == MVCC_ERR_COMPACTED ? MVCC_ERR_IO : h.err;
        *hash = h.crc;
    }
    free(h.buf);
    mvcc_txn_end(t);
    kv_arena_free(&arena);
    return rc;
}

/* ---- Hash (the whole database) ---- */

static int hash_all_record(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    uint32_t *crc = arg;
    /* the metadata ('m', the key count "mk") and the compactor's progress */
    if ((kl >= 1 && k[0] == MVCC_SPACE_META) || (kl == 1 && k[0] == MVCC_SPACE_COMPACT)) return 0;
    /* The member table names this member (its own record) and the URLs
     * of the cluster it runs in: not the data Hash compares across members. */
    if (kl >= 1 && k[0] == MVCC_SPACE_MEMBERS) return 0;
    *crc = mvcc_crc32c(*crc, k, kl);
    *crc = mvcc_crc32c(*crc, v, vl);
    return 0;
}

int mvcc_hash_all(mvcc_t *m, uint32_t *hash, int64_t *rev) {
    kv_arena_t arena;
    kv_arena_init(&arena);
    mvcc_txn_t *t = NULL;
    if (mvcc_txn_begin_read(m, &arena, &t) != MVCC_OK) {
        kv_arena_free(&arena);
        return MVCC_ERR_IO;
    }
    uint32_t crc = 0;
    *rev = mvcc_txn_rev(t);
    static const uint8_t everything = 0; /* an empty prefix */
    int rc = mvcc_txn_raw_scan(t, &everything, 0, hash_all_record, &crc);
    *hash = crc;
    mvcc_txn_end(t);
    kv_arena_free(&arena);
    return rc;
}
