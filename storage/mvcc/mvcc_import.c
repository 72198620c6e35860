/*
 * mvcc_import.c: another etcd's history applied to the store at its own
 * revisions (see mvcc.h "import"), for `kshimctl migrate`, which follows a
 * live etcd's watch after restoring its snapshot.
 *
 * Owns: turning one etcd revision's events into one LevelDB batch through
 * the one version encoder of mvcc.c (mvcc_internal_batch_version: the 'k',
 * 'r' and 'l' records), the 'M' lease attachments (lease_keys.h) and the
 * 'm' metadata (the store revision), written at once; and replacing a side
 * table at the cut-over (leases, users, roles). The key's previous lease
 * comes from the store itself (its newest version), or from an earlier
 * event of the same revision, so a missing prev_kv does not matter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease_keys.h"
#include "mvcc.h"
#include "mvcc_internal.h"
#include "mvcc_keys.h"

/* The lease of key's newest version in LevelDB (0: none, deleted or a
 * tombstone). MVCC_OK or MVCC_ERR_IO. */
static int stored_lease(leveldb_iterator_t *it, const uint8_t *key, size_t key_len, int64_t *lease) {
    *lease = 0;
    uint8_t *ek = malloc(mvcc_key_max(key_len));
    if (!ek) abort();
    size_t pre = mvcc_key_prefix(ek, MVCC_SPACE_KEY, key, key_len);
    leveldb_iter_seek(it, (const char *)ek, pre);
    int rc = MVCC_OK;
    if (leveldb_iter_valid(it)) {
        size_t kl = 0, vl = 0;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vl);
        if (kl == pre + REV_SUFFIX && memcmp(k, ek, pre) == 0) {
            if (vl < REC_HDR)
                rc = MVCC_ERR_IO; /* not our layout */
            else if (!(v[0] & 1))
                *lease = (int64_t)get_be64(v + 17);
        }
    } else {
        char *err = NULL;
        leveldb_iter_get_error(it, &err);
        if (err) {
            fprintf(stderr, "mvcc: import: %s\n", err);
            leveldb_free(err);
            rc = MVCC_ERR_IO;
        }
    }
    free(ek);
    return rc;
}

/* The key's lease before event i: an earlier event of this revision on the
 * same key, else the store. */
static int prev_lease(leveldb_iterator_t *it, const Mvccpb__Event *const *evs, size_t i, int64_t *lease) {
    const Mvccpb__KeyValue *kv = evs[i]->kv;
    for (size_t j = i; j-- > 0;) {
        const Mvccpb__KeyValue *o = evs[j]->kv;
        if (o->key.len == kv->key.len && !memcmp(o->key.data, kv->key.data, kv->key.len)) {
            *lease = evs[j]->type == MVCCPB__EVENT__EVENT_TYPE__PUT ? o->lease : 0;
            return MVCC_OK;
        }
    }
    return stored_lease(it, kv->key.data, kv->key.len, lease);
}

static int event_fits(const Mvccpb__Event *ev, int64_t rev) {
    const Mvccpb__KeyValue *kv = ev->kv;
    if (!kv || kv->key.len == 0 || kv->mod_revision != rev) return 0;
    if (ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT)
        return kv->create_revision >= 1 && kv->create_revision <= rev && kv->version >= 1;
    return ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE;
}

static void batch_member(leveldb_writebatch_t *wb, int64_t id, const Mvccpb__KeyValue *kv, int put) {
    uint8_t *k = lease_member_key(id, kv->key.data, kv->key.len);
    if (put)
        leveldb_writebatch_put(wb, (const char *)k, 9 + kv->key.len, "", 0);
    else
        leveldb_writebatch_delete(wb, (const char *)k, 9 + kv->key.len);
    free(k);
}

/* One event into wb: the version (a tombstone keeps only key and
 * mod_revision, as etcd's) and the lease attachment moves. */
static int batch_event(leveldb_writebatch_t *wb, leveldb_iterator_t *it, const Mvccpb__Event *const *evs,
                       size_t i) {
    const Mvccpb__KeyValue *kv = evs[i]->kv;
    int del = evs[i]->type == MVCCPB__EVENT__EVENT_TYPE__DELETE;
    int64_t before = 0;
    int rc = prev_lease(it, evs, i, &before);
    if (rc != MVCC_OK) return rc;
    int64_t after = del ? 0 : kv->lease;
    if (del) {
        Mvccpb__KeyValue tomb = MVCCPB__KEY_VALUE__INIT;
        tomb.key = kv->key;
        tomb.mod_revision = kv->mod_revision;
        mvcc_internal_batch_version(wb, &tomb, (int64_t)i, MVCC_VERSION_TOMBSTONE);
    } else {
        mvcc_internal_batch_version(wb, kv, (int64_t)i, 0);
    }
    if (before != 0 && before != after) batch_member(wb, before, kv, 0);
    if (after != 0) batch_member(wb, after, kv, 1);
    return MVCC_OK;
}

int mvcc_import_revision(mvcc_t *m, int64_t rev, const Mvccpb__Event *const *evs, size_t n, int sync) {
    mvcc_meta_t mt = mvcc_internal_meta(m);
    if (rev <= mt.rev) return 1;
    if (n == 0) return MVCC_ERR_BAD_EVENT;
    for (size_t i = 0; i < n; i++)
        if (!event_fits(evs[i], rev)) return MVCC_ERR_BAD_EVENT;
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_fill_cache(ro, 0);
    leveldb_iterator_t *it = leveldb_create_iterator(mvcc_internal_db(m), ro);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    int rc = MVCC_OK;
    for (size_t i = 0; i < n && rc == MVCC_OK; i++) rc = batch_event(wb, it, evs, i);
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    if (rc == MVCC_OK) {
        mt.rev = rev;
        mvcc_internal_keys_unknown(m); /* counted again at mvcc_import_finish */
        rc = mvcc_internal_write_with_meta(m, wb, &mt, sync);
    }
    leveldb_writebatch_destroy(wb);
    return rc;
}

int mvcc_import_finish(mvcc_t *m, int64_t rev) {
    mvcc_meta_t mt = mvcc_internal_meta(m);
    if (rev > mt.rev) mt.rev = rev;
    int rc = mvcc_internal_count_keys(m);
    return rc == MVCC_OK ? mvcc_internal_write_meta(m, &mt) : rc;
}

static int own_space(uint8_t c) {
    return c == MVCC_SPACE_KEY || c == MVCC_SPACE_REV || c == MVCC_SPACE_META || c == MVCC_SPACE_LIVE ||
           c == MVCC_SPACE_COMPACT;
}

static int delete_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    (void)val;
    (void)val_len;
    leveldb_writebatch_delete(arg, (const char *)key, key_len);
    return 0;
}

int mvcc_import_replace_raw(mvcc_t *m, const uint8_t *prefix, size_t prefix_len, const mvcc_raw_rec_t *recs,
                            size_t n) {
    if (prefix_len == 0 || own_space(prefix[0])) return MVCC_ERR_NOT_FOUND;
    for (size_t i = 0; i < n; i++)
        if (recs[i].key_len < prefix_len || memcmp(recs[i].key, prefix, prefix_len) != 0)
            return MVCC_ERR_NOT_FOUND;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    int rc = mvcc_raw_scan(m, prefix, prefix_len, delete_one, wb);
    for (size_t i = 0; i < n && rc == MVCC_OK; i++)
        leveldb_writebatch_put(wb, (const char *)recs[i].key, recs[i].key_len, (const char *)recs[i].val,
                               recs[i].val_len);
    if (rc == MVCC_OK) {
        mvcc_meta_t mt = mvcc_internal_meta(m);
        rc = mvcc_internal_write_with_meta(m, wb, &mt, 1);
    }
    leveldb_writebatch_destroy(wb);
    return rc;
}
