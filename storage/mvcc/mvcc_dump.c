/*
 * mvcc_dump.c: the whole store out and in, for snapshots in other formats
 * (storage/bbolt/etcd_db.c writes etcd's): see mvcc.h "dump and load".
 *
 * Dump: one LevelDB snapshot; the versions in revision order (the 'r'
 * space, each version's record read from 'k'), leaving out what etcd's
 * compaction drops (a version at or below the compact revision that is not
 * the key's newest there, or is a tombstone), so the dump is what etcd
 * would hold; and the side tables, raw, from the same snapshot.
 * Load: into an empty store, in bounded batches, each version through the
 * one encoder of mvcc.c (mvcc_internal_batch_version), then the metadata.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvcc.h"
#include "mvcc_internal.h"
#include "mvcc_swap.h"
#include "mvcc_keys.h"

struct mvcc_dump {
    mvcc_t *m;
    const leveldb_snapshot_t *snap;
    leveldb_readoptions_t *ro;
    mvcc_meta_t meta;
};

int mvcc_dump_begin(mvcc_t *m, mvcc_dump_t **out, mvcc_meta_t *meta) {
    *out = NULL;
    mvcc_dump_t *d = calloc(1, sizeof(*d));
    if (!d) return MVCC_ERR_IO;
    /* The dump reads the store for as long as it runs: a snapshot install
     * waits at the gate until it ends (begin and end on one thread). */
    mvcc_gate_enter(m);
    leveldb_t *db = mvcc_internal_db(m);
    d->m = m;
    d->snap = leveldb_create_snapshot(db);
    d->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(d->ro, d->snap);
    leveldb_readoptions_set_verify_checksums(d->ro, 1);
    leveldb_readoptions_set_fill_cache(d->ro, 0);
    if (mvcc_internal_meta_read(m, d->ro, &d->meta) != MVCC_OK) {
        mvcc_dump_end(d);
        return MVCC_ERR_IO;
    }
    *meta = d->meta;
    *out = d;
    return MVCC_OK;
}

void mvcc_dump_end(mvcc_dump_t *d) {
    if (!d) return;
    leveldb_readoptions_destroy(d->ro);
    leveldb_release_snapshot(mvcc_internal_db(d->m), d->snap);
    mvcc_gate_leave(d->m);
    free(d);
}

static int iter_close(leveldb_iterator_t *it) {
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    leveldb_iter_destroy(it);
    if (err) {
        fprintf(stderr, "mvcc: dump: %s\n", err);
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    return MVCC_OK;
}

/* Is (main, sub) of key the newest version at or below rev, and live? */
static int survives_compaction(leveldb_iterator_t *seek, const uint8_t *ek, size_t pre, int64_t rev,
                               int64_t main, int64_t sub) {
    uint8_t *target = malloc(pre + REV_SUFFIX);
    if (!target) abort();
    memcpy(target, ek, pre);
    encode_rev_seek(target + pre, rev);
    leveldb_iter_seek(seek, (const char *)target, pre + REV_SUFFIX);
    free(target);
    if (!leveldb_iter_valid(seek)) return 0;
    size_t kl = 0, vl = 0;
    const uint8_t *k = (const uint8_t *)leveldb_iter_key(seek, &kl);
    const uint8_t *v = (const uint8_t *)leveldb_iter_value(seek, &vl);
    if (kl != pre + REV_SUFFIX || memcmp(k, ek, pre) != 0 || vl < REC_HDR) return 0;
    int64_t m2, s2;
    decode_rev_suffix(k, kl, &m2, &s2);
    return m2 == main && s2 == sub && !(v[0] & 1);
}

int mvcc_dump_versions(mvcc_dump_t *d, mvcc_version_fn fn, void *arg) {
    leveldb_t *db = mvcc_internal_db(d->m);
    leveldb_iterator_t *it = leveldb_create_iterator(db, d->ro);
    leveldb_iterator_t *seek = leveldb_create_iterator(db, d->ro);
    int64_t compact = d->meta.compact_rev;
    int rc = MVCC_OK;
    const char first = MVCC_SPACE_REV;
    for (leveldb_iter_seek(it, &first, 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t rkl = 0, rvl = 0;
        const uint8_t *rk = (const uint8_t *)leveldb_iter_key(it, &rkl);
        if (rkl == 0 || rk[0] != MVCC_SPACE_REV) break;
        const uint8_t *rv = (const uint8_t *)leveldb_iter_value(it, &rvl);
        if (rkl != REV_KEY_LEN || rvl < 1) {
            rc = MVCC_ERR_IO; /* not our layout: corrupt */
            break;
        }
        int64_t main = (int64_t)get_be64(rk + 1), sub = (int64_t)get_be64(rk + 9);
        const uint8_t *ukey = rv + 1;
        size_t uklen = rvl - 1;
        uint8_t *ek = malloc(mvcc_key_max(uklen));
        if (!ek) abort();
        size_t pre = mvcc_key_prefix(ek, MVCC_SPACE_KEY, ukey, uklen);
        encode_rev_suffix(ek + pre, main, sub);
        if (main <= compact && !survives_compaction(seek, ek, pre, compact, main, sub)) {
            free(ek);
            continue;
        }
        char *err = NULL;
        size_t vl = 0;
        char *rec = leveldb_get(db, d->ro, (const char *)ek, pre + REV_SUFFIX, &vl, &err);
        free(ek);
        if (err) {
            fprintf(stderr, "mvcc: dump: %s\n", err);
            leveldb_free(err);
            rc = MVCC_ERR_IO;
            break;
        }
        if (!rec) continue; /* physically compacted: its 'r' record goes next */
        if (vl < REC_HDR) {
            leveldb_free(rec);
            rc = MVCC_ERR_IO;
            break;
        }
        const uint8_t *p = (const uint8_t *)rec;
        Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
        int tomb = p[0] & 1;
        kv.key.data = (uint8_t *)ukey;
        kv.key.len = uklen;
        kv.mod_revision = main;
        if (!tomb) {
            kv.create_revision = (int64_t)get_be64(p + 1);
            kv.version = (int64_t)get_be64(p + 9);
            kv.lease = (int64_t)get_be64(p + 17);
            kv.value.data = (uint8_t *)p + REC_HDR;
            kv.value.len = vl - REC_HDR;
        }
        int stop = fn(arg, &kv, sub, tomb);
        leveldb_free(rec);
        if (stop) {
            rc = stop;
            break;
        }
    }
    int rc2 = iter_close(seek);
    int rc1 = iter_close(it);
    if (rc == MVCC_OK) rc = rc1 != MVCC_OK ? rc1 : rc2;
    return rc;
}

int mvcc_dump_raw(mvcc_dump_t *d, const uint8_t *prefix, size_t plen, mvcc_raw_fn fn, void *arg) {
    leveldb_iterator_t *it = leveldb_create_iterator(mvcc_internal_db(d->m), d->ro);
    int rc = MVCC_OK;
    for (leveldb_iter_seek(it, (const char *)prefix, plen); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0) break;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vl);
        int stop = fn(arg, k, kl, v, vl);
        if (stop) {
            rc = stop;
            break;
        }
    }
    int rc1 = iter_close(it);
    return rc == MVCC_OK ? rc1 : rc;
}

/* ---- load ---- */

#define LOAD_BATCH_BYTES (4u << 20)

struct mvcc_load {
    mvcc_t *m;
    leveldb_writebatch_t *wb;
    size_t bytes;
};

int mvcc_load_begin(mvcc_t *m, mvcc_load_t **out) {
    *out = NULL;
    mvcc_load_t *l = calloc(1, sizeof(*l));
    if (!l) return MVCC_ERR_IO;
    l->m = m;
    l->wb = leveldb_writebatch_create();
    mvcc_internal_live_drop(m);
    *out = l;
    return MVCC_OK;
}

static int load_flush(mvcc_load_t *l) {
    if (!l->bytes) return MVCC_OK;
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    char *err = NULL;
    leveldb_write(mvcc_internal_db(l->m), wo, l->wb, &err);
    leveldb_writeoptions_destroy(wo);
    leveldb_writebatch_clear(l->wb);
    l->bytes = 0;
    if (err) {
        fprintf(stderr, "mvcc: load: %s\n", err);
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    return MVCC_OK;
}

int mvcc_load_version(mvcc_load_t *l, const Mvccpb__KeyValue *kv, int64_t sub, int tombstone) {
    l->bytes += mvcc_internal_batch_version(l->wb, kv, sub, tombstone ? MVCC_VERSION_TOMBSTONE : 0);
    return l->bytes >= LOAD_BATCH_BYTES ? load_flush(l) : MVCC_OK;
}

int mvcc_load_raw(mvcc_load_t *l, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen) {
    if (klen == 0 || key[0] == MVCC_SPACE_KEY || key[0] == MVCC_SPACE_REV || key[0] == MVCC_SPACE_META ||
        key[0] == MVCC_SPACE_LIVE || key[0] == MVCC_SPACE_COMPACT)
        return MVCC_ERR_NOT_FOUND; /* not a side table */
    leveldb_writebatch_put(l->wb, (const char *)key, klen, (const char *)val, vlen);
    l->bytes += klen + vlen + 16;
    return l->bytes >= LOAD_BATCH_BYTES ? load_flush(l) : MVCC_OK;
}

int mvcc_load_finish(mvcc_load_t *l, int64_t rev, int64_t compact_rev) {
    int rc = load_flush(l);
    if (rc == MVCC_OK) rc = mvcc_internal_count_keys(l->m); /* the 'l' entries written */
    if (rc != MVCC_OK) return rc;
    mvcc_meta_t mt = {.applied_index = 0, .rev = rev < 1 ? 1 : rev, .compact_rev = compact_rev};
    return mvcc_internal_write_meta(l->m, &mt);
}

void mvcc_load_free(mvcc_load_t *l) {
    if (!l) return;
    leveldb_writebatch_destroy(l->wb);
    free(l);
}
