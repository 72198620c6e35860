/*
 * mvcc.c: the multi-version key-value store on LevelDB (see mvcc.h).
 *
 * On-disk layout: storage/mvcc_keys.h (the one owner of the encoding):
 * 'k' versions, 'r' revision table, 'l' live keys, 'm' metadata, 'c' the
 * compactor's progress. "Key K at revision R" is one seek to K|~R; a range
 * at R walks keys in order, one seek per key at most. The 'r' space lists
 * every change in revision order for compaction and watch replay; values
 * live only in the 'k' space.
 *
 *   'm' -> applied_index(8) | rev(8) | compact_rev(8)
 *          (older stores: a 32-byte record with compact_done(8) after it,
 *          read once at open to seed the compactor)
 *   "mk" -> live_keys(8) | applied_index(8) | rev(8): the number of 'l'
 *          entries when 'm' held that (applied_index, rev)
 *
 * Every LevelDB write carries the 'm' record with its changes (so the applied
 * index never disagrees with the data), and every write is synced. Each one
 * carries "mk" too, so open reads the live-key count (the keys_total gauge)
 * instead of scanning the 'l' space. A count that does not name the 'm'
 * record's (applied_index, rev) was not written with it (a store from before
 * "mk", or written by an older kshimd after it) and is counted again at open,
 * then written; so is a store the loaders changed (mvcc_dump.c, mvcc_import.c:
 * they count at their end). "mk" is its own record, not a longer 'm', so an
 * older kshimd still opens the store and a Raft snapshot (a raw copy) from
 * either version installs on the other. Physical
 * compaction runs on the compactor thread (mvcc_compact.c), which writes
 * only deletes of superseded versions and its own 'c' record.
 *
 * Write groups (apply thread): between mvcc_group_begin and mvcc_group_end
 * the commits of several entries (one applied Raft batch) collect in ONE
 * write batch, written with sync=true at the end. Reads of a write txn see,
 * newest first: its own changes (the txn overlay), the changes of the
 * group's earlier entries (the group overlay: latest version of each key,
 * copied into the group arena), then LevelDB. A read at a revision strictly
 * inside the group (older than its newest but newer than LevelDB) cannot be
 * answered from the overlays: the group is written first. A single-key
 * read at LevelDB's newest revision may be answered without LevelDB: by the
 * live-key filter (a key never alive, live_filter.h) or by the group's memo
 * of the reads it made while LevelDB did not change. Nothing of a group
 * is visible to other threads (snapshots, published revision, watch events)
 * before its write returned.
 *
 * Read errors: every LevelDB read (get or iterator) that fails is
 * MVCC_ERR_IO, never "absent". Reads verify block checksums. The failpoint
 * mvcc_read_error (storage/failpoint.h) injects such errors.
 */
#include "mvcc.h"

#include "failpoint.h"
#include "latency_hist.h"

#include <assert.h>
#include <dirent.h>
#include <leveldb/c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "key_filter.h"
#include "live_filter.h"
#include "mvcc_compact.h"
#include "mvcc_internal.h"
#include "mvcc_keys.h"
#include "mvcc_swap.h"

#define META_KEY "m"
#define META_LEN 24
#define META_LEN_V1 32 /* with compact_done, before the compactor thread */
#define KEYS_KEY "mk"
#define KEYS_LEN 24

/* Changes in sub order plus an index of the latest change per key, sorted by
 * key: a write txn's own changes, and the changes of a write group. */
typedef struct overlay {
    mvcc_event_t *events; /* malloc */
    size_t n_events, cap_events;
    size_t *idx; /* indexes into events, sorted by key */
    size_t n_idx, cap_idx;
} overlay_t;

/* One revision of a group: its events are events[first .. first + n). */
typedef struct group_rev {
    int64_t rev;
    size_t first, n;
} group_rev_t;

/* One single-key read a write txn of the group made of LevelDB (see
 * memo_find). */
typedef struct read_memo {
    uint64_t hash; /* key_filter_hash of the key; 0 with key NULL: empty */
    const uint8_t *key;
    size_t key_len;
    const Mvccpb__KeyValue *kv; /* the key's newest version there, NULL: none */
} read_memo_t;

#define GROUP_MEMO_SLOTS 64

/* Entries committed but not yet written (apply thread only). */
typedef struct mvcc_group {
    int active;               /* between mvcc_group_begin and _end */
    leveldb_writebatch_t *wb; /* kept between groups (cleared), so it does not regrow each time */
    size_t entries;           /* entries in wb; 0: no entry joined */
    size_t bytes;             /* approximate bytes in wb */
    mvcc_meta_t base;         /* the metadata LevelDB holds */
    int64_t base_keys;        /* and its live-key count */
    kv_arena_t arena;         /* copies of the events' versions */
    overlay_t ov;
    group_rev_t *revs;
    size_t n_revs, cap_revs;
    /* The write txns' iterator over the live DB, created at the group's
     * first read and kept until the next write (db_write) or the group's
     * end: LevelDB does not change under it meanwhile (the group's changes
     * wait in wb; the txns read them from the overlays), so every put's seek
     * for its previous version reuses it instead of building a merging
     * iterator over the memtables and every table of level 0 each time.
     * The compactor's deletes it does not see only remove versions no read
     * at or after the compact revision returns. */
    leveldb_iterator_t *it;
    /* The single-key reads at LevelDB's newest revision made while `it`
     * lived, key and version copied into the arena; cleared with `it`. A
     * Txn's compare, its put and its "else get" read the same key, which is
     * every Kubernetes update. */
    read_memo_t memo[GROUP_MEMO_SLOTS];
} mvcc_group_t;

/* A group is written once it holds this much, even inside one Raft batch. */
#define GROUP_MAX_EVENTS 8192
#define GROUP_MAX_BYTES (16u << 20)
/* A written group's batch is kept for the next one (cleared: its buffer
 * stays allocated) up to this size; a larger one is freed. */
#define GROUP_KEEP_BYTES (1u << 20)

struct mvcc {
    leveldb_t *db;
    leveldb_options_t *opts;
    leveldb_cache_t *cache;
    leveldb_readoptions_t *ro;       /* apply-thread reads of the live DB */
    leveldb_writeoptions_t *wo;      /* sync = false */
    leveldb_writeoptions_t *wo_sync; /* sync = true */
    mvcc_options_t options;
    mvcc_meta_t meta; /* apply thread's copy, incl. the group */
    int64_t keys;     /* its live-key count ('l' entries), -1 = not known (the loaders) */
    mvcc_group_t grp;
    live_filter_t *live;         /* keys that may be alive (live_filter.h); NULL: none */
    failpoint_t fp_read;         /* mvcc_read_error */
    failpoint_t fp_put_corrupt;  /* mvcc_put_corrupt */
    mvcc_compactor_t *compactor; /* physical compaction, its own thread */
    _Atomic int64_t rev;
    _Atomic int64_t compact_rev;
    _Atomic uint64_t applied;
    char *dir;                   /* the LevelDB directory, for its size */
    _Atomic uint64_t size_cache; /* bytes on disk, refreshed at most once a second */
    _Atomic uint64_t size_cache_ms;
    /* The gate between the threads that read the store and a snapshot
     * install (mvcc_swap.h): readers count themselves in `users`; a swap
     * sets `swapping` (new readers wait), waits for users == 0, replaces
     * the database, then opens the gate again. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int users, swapping;
    mvcc_user_t *exports;          /* export readers, invalidated by a swap */
    _Atomic int swap_failed;       /* the store could not be reopened: fail-stop */
    _Atomic uint64_t size_pending; /* bytes committed since the last look at the files */
    /* mvcc_stats: etcd's metricsTxnWrite counters, the live keys ('l'
     * entries: "mk" at open and after a swap, then m->keys as each write
     * is stored), and the durations of every synced LevelDB write. */
    _Atomic uint64_t n_ranges, n_puts, n_deletes, n_txns, put_bytes;
    _Atomic int64_t live_keys;
    lat_hist_t commit_hist;
    uint64_t opened_ms;         /* monotonic, at the last db_open: live_filter_delay_ms counts from it */
    _Atomic uint64_t memo_hits; /* reads the group memo answered */
};

struct mvcc_txn {
    mvcc_t *m;
    kv_arena_t *arena;
    const leveldb_snapshot_t *snap; /* read txn only */
    leveldb_readoptions_t *ro;      /* owned by a read txn */
    mvcc_meta_t meta;               /* at begin */
    leveldb_writebatch_t *wb;       /* write txn only */
    overlay_t ov;                   /* the txn's own changes */
    size_t bytes;                   /* approximate bytes in wb */
    int gated;                      /* a read txn: counted in the store's gate */
    unsigned ops[3];                /* mvcc_txn_count, by mvcc_op_t, not yet published */
    uint64_t put_bytes;             /* key + value bytes of its puts, not yet published */
};

/* ---- key encoding ---- */

size_t mvcc_encoded_key_max(size_t key_len) { return mvcc_key_max(key_len); }

size_t mvcc_encode_key(uint8_t *out, const uint8_t *key, size_t key_len) {
    return mvcc_key_prefix(out, MVCC_SPACE_KEY, key, key_len);
}

/* Decodes the user key of a 'k' entry into arena memory. */
static uint8_t *decode_user_key(kv_arena_t *a, const uint8_t *ek, size_t eklen, size_t *out_len) {
    assert(eklen >= 1 + 2 + REV_SUFFIX); /* checked by the caller (db_range) */
    size_t esc_len = eklen - 1 - 2 - REV_SUFFIX;
    uint8_t *out = kv_arena_alloc(a, esc_len + 1);
    *out_len = unescape_into(out, ek + 1, esc_len);
    return out;
}

/* ---- ranges ---- */

mvcc_range_t mvcc_range_make(const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len) {
    mvcc_range_t r = {key, key_len, end, end_len, MVCC_RANGE_HALF_OPEN};
    if (end_len == 0)
        r.kind = MVCC_RANGE_SINGLE;
    else if (end_len == 1 && end[0] == 0)
        r.kind = MVCC_RANGE_TO_END;
    return r;
}

int mvcc_range_contains(const mvcc_range_t *r, const uint8_t *key, size_t key_len) {
    int c = bytes_cmp(key, key_len, r->key, r->key_len);
    if (r->kind == MVCC_RANGE_SINGLE) return c == 0;
    if (c < 0) return 0;
    if (r->kind == MVCC_RANGE_TO_END) return 1;
    return bytes_cmp(key, key_len, r->end, r->end_len) < 0;
}

/* ---- metadata ---- */

static void meta_encode(uint8_t out[META_LEN], const mvcc_meta_t *mt) {
    put_be64(out, mt->applied_index);
    put_be64(out + 8, (uint64_t)mt->rev);
    put_be64(out + 16, (uint64_t)mt->compact_rev);
}

/* Reads 'm'. *legacy_done (may be NULL) gets the compact_done of an old
 * 32-byte record, else -1. */
static int meta_read_v(leveldb_t *db, const leveldb_readoptions_t *ro, mvcc_meta_t *mt,
                       int64_t *legacy_done) {
    char *err = NULL;
    size_t len = 0;
    if (legacy_done) *legacy_done = -1;
    char *v = leveldb_get(db, ro, META_KEY, 1, &len, &err);
    if (err) {
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    if (!v) {
        mt->applied_index = 0;
        mt->rev = 1;
        mt->compact_rev = -1;
        return MVCC_OK;
    }
    int rc = MVCC_ERR_IO;
    if (len == META_LEN || len == META_LEN_V1) {
        const uint8_t *p = (const uint8_t *)v;
        mt->applied_index = get_be64(p);
        mt->rev = (int64_t)get_be64(p + 8);
        mt->compact_rev = (int64_t)get_be64(p + 16);
        if (len == META_LEN_V1 && legacy_done) *legacy_done = (int64_t)get_be64(p + 24);
        rc = MVCC_OK;
    }
    leveldb_free(v);
    return rc;
}

static int meta_read(leveldb_t *db, const leveldb_readoptions_t *ro, mvcc_meta_t *mt) {
    return meta_read_v(db, ro, mt, NULL);
}

/* 'm' and, with it, the live-key count at that record ("mk"; deleted when
 * the count is not known, keys < 0). */
static void meta_put(leveldb_writebatch_t *wb, const mvcc_meta_t *mt, int64_t keys) {
    uint8_t buf[META_LEN];
    meta_encode(buf, mt);
    leveldb_writebatch_put(wb, META_KEY, 1, (const char *)buf, META_LEN);
    if (keys < 0) {
        leveldb_writebatch_delete(wb, KEYS_KEY, 2);
        return;
    }
    uint8_t kb[KEYS_LEN];
    put_be64(kb, (uint64_t)keys);
    put_be64(kb + 8, mt->applied_index);
    put_be64(kb + 16, (uint64_t)mt->rev);
    leveldb_writebatch_put(wb, KEYS_KEY, 2, (const char *)kb, KEYS_LEN);
}

/* Reads "mk": its count if it was written with mt, else -1. */
static int keys_read(leveldb_t *db, const leveldb_readoptions_t *ro, const mvcc_meta_t *mt, int64_t *keys) {
    char *err = NULL;
    size_t len = 0;
    *keys = -1;
    char *v = leveldb_get(db, ro, KEYS_KEY, 2, &len, &err);
    if (err) {
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    if (!v) return MVCC_OK;
    const uint8_t *p = (const uint8_t *)v;
    if (len == KEYS_LEN && get_be64(p + 8) == mt->applied_index && (int64_t)get_be64(p + 16) == mt->rev &&
        (int64_t)get_be64(p) >= 0)
        *keys = (int64_t)get_be64(p);
    leveldb_free(v);
    return MVCC_OK;
}

static void publish_meta(mvcc_t *m) {
    atomic_store(&m->compact_rev, m->meta.compact_rev);
    atomic_store(&m->rev, m->meta.rev);
    atomic_store(&m->applied, m->meta.applied_index);
    if (m->keys >= 0) atomic_store(&m->live_keys, m->keys);
}

/* Every write is synced (m->wo has sync set too): LevelDB recovers a synced
 * write whole, but promises nothing for unsynced ones, and a later sync does
 * not cover a log file LevelDB closed at a memtable switch. */
static void group_iter_drop(mvcc_t *m) {
    if (m->grp.it) leveldb_iter_destroy(m->grp.it);
    m->grp.it = NULL;
    memset(m->grp.memo, 0, sizeof m->grp.memo); /* LevelDB may change now */
}

static int db_write_raw(mvcc_t *m, leveldb_writebatch_t *wb, int sync) {
    char *err = NULL;
    uint64_t t0 = lat_hist_now_ns();
    leveldb_write(m->db, sync ? m->wo_sync : m->wo, wb, &err);
    lat_hist_since(&m->commit_hist, t0); /* every write syncs (above) */
    if (err) {
        fprintf(stderr, "mvcc: leveldb write: %s\n", err);
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    return MVCC_OK;
}

/* A write of the apply thread (or of open, before it runs): the group's
 * iterator would not see it. */
static int db_write(mvcc_t *m, leveldb_writebatch_t *wb, int sync) {
    group_iter_drop(m);
    return db_write_raw(m, wb, sync);
}

/* ---- reads: every LevelDB read of the store goes through these ---- */

/* 1 if the failpoint mvcc_read_error fails this read (and says so). */
static int read_fails(mvcc_t *m) {
    if (!failpoint_hit(&m->fp_read)) return 0;
    fprintf(stderr, "mvcc: leveldb read: injected I/O error (failpoint mvcc_read_error)\n");
    return 1;
}

/* leveldb_get: MVCC_OK with a leveldb-malloc'd *val (leveldb_free), or
 * MVCC_ERR_NOT_FOUND, or MVCC_ERR_IO (a LevelDB error or the failpoint). */
static int db_get(mvcc_t *m, const leveldb_readoptions_t *ro, const uint8_t *key, size_t key_len, char **val,
                  size_t *val_len) {
    *val = NULL;
    if (read_fails(m)) return MVCC_ERR_IO;
    char *err = NULL;
    *val = leveldb_get(m->db, ro, (const char *)key, key_len, val_len, &err);
    if (err) {
        fprintf(stderr, "mvcc: leveldb read: %s\n", err);
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    return *val ? MVCC_OK : MVCC_ERR_NOT_FOUND;
}

/* A LevelDB iterator, or NULL: an I/O error (the failpoint). Callers check
 * leveldb_iter_get_error when done (iter_error). */
static leveldb_iterator_t *db_iter(mvcc_t *m, const leveldb_readoptions_t *ro) {
    return read_fails(m) ? NULL : leveldb_create_iterator(m->db, ro);
}

/* MVCC_ERR_IO (and says so) if the iteration hit an error, else MVCC_OK. */
static int iter_error(leveldb_iterator_t *it) {
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (!err) return MVCC_OK;
    fprintf(stderr, "mvcc: leveldb iterator: %s\n", err);
    leveldb_free(err);
    return MVCC_ERR_IO;
}

/* Destroys it; MVCC_ERR_IO if the iteration hit an error. */
static int iter_done(leveldb_iterator_t *it) {
    int rc = iter_error(it);
    leveldb_iter_destroy(it);
    return rc;
}

/* A txn's iterator: a write txn inside a group shares the group's (see
 * mvcc_group_t.it); any other reader gets its own. The failpoint counts
 * every call either way. */
static leveldb_iterator_t *txn_iter(mvcc_txn_t *t, const leveldb_readoptions_t *ro) {
    mvcc_t *m = t->m;
    if (!t->wb || !m->grp.active || ro != m->ro) return db_iter(m, ro);
    if (read_fails(m)) return NULL;
    if (!m->grp.it) m->grp.it = leveldb_create_iterator(m->db, ro);
    return m->grp.it;
}

/* Done with txn_iter's it: MVCC_ERR_IO if the iteration hit an error (the
 * group's iterator is then dropped, so the next read starts afresh). */
static int txn_iter_done(mvcc_txn_t *t, leveldb_iterator_t *it) {
    if (it != t->m->grp.it) return iter_done(it);
    int rc = iter_error(it);
    if (rc != MVCC_OK) group_iter_drop(t->m);
    return rc;
}

/* ---- the gate (mvcc_swap.h) ----
 * Reads nest (kv_history scans inside a read txn), so a thread that is in
 * already passes without waiting (a per-thread depth per store); only its
 * outermost enter counts as a user. */

#define GATE_TLS 4
static _Thread_local struct {
    const mvcc_t *m;
    int depth;
} gate_tls[GATE_TLS];

static int *gate_depth(const mvcc_t *m) {
    for (int i = 0; i < GATE_TLS; i++)
        if (gate_tls[i].m == m && gate_tls[i].depth > 0) return &gate_tls[i].depth;
    for (int i = 0; i < GATE_TLS; i++)
        if (gate_tls[i].depth == 0) {
            gate_tls[i].m = m;
            return &gate_tls[i].depth;
        }
    return NULL; /* more than GATE_TLS stores at once on one thread: count every enter */
}

void mvcc_gate_enter(mvcc_t *m) {
    int *d = gate_depth(m);
    if (d && (*d)++ > 0) return;
    pthread_mutex_lock(&m->gate_mu);
    while (m->swapping) pthread_cond_wait(&m->gate_cv, &m->gate_mu);
    m->users++;
    pthread_mutex_unlock(&m->gate_mu);
}

void mvcc_gate_leave(mvcc_t *m) {
    int *d = gate_depth(m);
    if (d && *d > 0 && --(*d) > 0) return;
    pthread_mutex_lock(&m->gate_mu);
    if (--m->users == 0) pthread_cond_broadcast(&m->gate_cv);
    pthread_mutex_unlock(&m->gate_mu);
}

void mvcc_user_add(mvcc_t *m, mvcc_user_t *u) {
    pthread_mutex_lock(&m->gate_mu);
    u->next = m->exports;
    m->exports = u;
    pthread_mutex_unlock(&m->gate_mu);
}

void mvcc_user_remove(mvcc_t *m, mvcc_user_t *u) {
    pthread_mutex_lock(&m->gate_mu);
    for (mvcc_user_t **p = &m->exports; *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            break;
        }
    pthread_mutex_unlock(&m->gate_mu);
}

leveldb_t *mvcc_db(mvcc_t *m) { return m->db; }
const char *mvcc_dir(const mvcc_t *m) { return m->dir; }

void mvcc_arm_read_error(mvcc_t *m, uint64_t n) { failpoint_arm(&m->fp_read, n); }

void mvcc_arm_put_corrupt(mvcc_t *m, uint64_t n) { failpoint_arm(&m->fp_put_corrupt, n); }

/* The failpoint mvcc_put_corrupt: this member stores a value other than the
 * one the entry carries (its last byte's bit 0x20 flipped, "v" -> "V"; an
 * empty value becomes "!"), as a disk or a bug that corrupts data would. */
static void corrupt_value(kv_arena_t *arena, ProtobufCBinaryData *v) {
    fprintf(stderr, "mvcc: failpoint mvcc_put_corrupt: storing an altered value\n");
    if (v->len == 0) {
        v->data = kv_arena_dup(arena, (const uint8_t *)"!", 1);
        v->len = 1;
        return;
    }
    v->data[v->len - 1] ^= 0x20;
}
void mvcc_arm_compact_error(mvcc_t *m, uint64_t n) { mvcc_compactor_arm_error(m->compactor, n); }
int mvcc_read_error_armed(mvcc_t *m) { return atomic_load(&m->fp_read.countdown) != 0; }

/* ---- open / close / getters ---- */

static int start_compactor(mvcc_t *m, int64_t legacy_done, char *err, size_t errlen);
static int db_open(mvcc_t *m, char *err, size_t errlen);
static uint64_t monotonic_ms(void);

int mvcc_open(const char *dir, const mvcc_options_t *opts, mvcc_t **out, char *err, size_t errlen) {
    mvcc_t *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    m->dir = strdup(dir);
    if (!m->dir) {
        free(m);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (opts) m->options = *opts;
    if (m->options.max_txn_ops == 0) m->options.max_txn_ops = 128;
    if (m->options.quota_backend_bytes == 0) m->options.quota_backend_bytes = 2ULL << 30;
    m->opts = leveldb_options_create();
    m->cache = leveldb_cache_create_lru(32 << 20);
    leveldb_options_set_create_if_missing(m->opts, 1);
    leveldb_options_set_cache(m->opts, m->cache);
    /* A 64 MiB memtable: fewer, larger level-0 files and less compaction work
     * per write (measured ~15% less CPU per put than 16 MiB, for ~35 MB more
     * peak RSS, still below etcd's). */
    leveldb_options_set_write_buffer_size(m->opts, 64 << 20);
    leveldb_options_set_max_open_files(m->opts, 500);
    m->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(m->ro, 1); /* corruption is an error */
    m->wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(m->wo, 1); /* see db_write */
    m->wo_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(m->wo_sync, 1);
    kv_arena_init(&m->grp.arena);
    m->live = live_filter_new();
    pthread_mutex_init(&m->gate_mu, NULL);
    pthread_cond_init(&m->gate_cv, NULL);
    failpoint_arm(&m->fp_read, failpoint_parse(getenv(FAILPOINTS_ENV), "mvcc_read_error"));
    failpoint_arm(&m->fp_put_corrupt, failpoint_parse(getenv(FAILPOINTS_ENV), "mvcc_put_corrupt"));
    /* A snapshot install cut short by a crash leaves the old or the new
     * store under dir and maybe a staged or old one beside it. */
    if (mvcc_snapshot_recover(dir, err, errlen) != 0 || db_open(m, err, errlen) != 0) {
        mvcc_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

/* m->keys = the 'l' entries (one per live key). A raw scan, outside the
 * read failpoint (it counts client-visible reads). 0, or -1 with err. */
static int count_live_keys(mvcc_t *m, char *err, size_t errlen) {
    leveldb_iterator_t *it = leveldb_create_iterator(m->db, m->ro);
    const char prefix = MVCC_SPACE_LIVE;
    int64_t n = 0;
    for (leveldb_iter_seek(it, &prefix, 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen;
        const char *k = leveldb_iter_key(it, &klen);
        if (klen == 0 || k[0] != prefix) break;
        n++;
    }
    char *lerr = NULL;
    leveldb_iter_get_error(it, &lerr);
    leveldb_iter_destroy(it);
    if (lerr) {
        snprintf(err, errlen, "mvcc: counting keys: %s", lerr);
        leveldb_free(lerr);
        return -1;
    }
    m->keys = n;
    return 0;
}

/* At open: the live-key count stored with 'm', or (none, or not written
 * with this 'm') a scan of the 'l' space, then written with 'm' (synced),
 * so the next open reads it. 0, or -1 with err. */
static int keys_open(mvcc_t *m, char *err, size_t errlen) {
    if (keys_read(m->db, m->ro, &m->meta, &m->keys) != MVCC_OK) {
        snprintf(err, errlen, "mvcc: unreadable key count in %s", m->dir);
        return -1;
    }
    if (m->keys >= 0) return 0;
    if (count_live_keys(m, err, errlen) != 0) return -1;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    meta_put(wb, &m->meta, m->keys);
    int rc = db_write(m, wb, 1);
    leveldb_writebatch_destroy(wb);
    if (rc != MVCC_OK) {
        snprintf(err, errlen, "mvcc: cannot record the key count in %s", m->dir);
        return -1;
    }
    return 0;
}

/* Opens the LevelDB in m->dir, reads its metadata and starts the compactor
 * (a compaction interrupted by a crash resumes on that thread). */
static int db_open(mvcc_t *m, char *err, size_t errlen) {
    char *lerr = NULL;
    m->db = leveldb_open(m->opts, m->dir, &lerr);
    if (lerr) {
        snprintf(err, errlen, "leveldb open %s: %s", m->dir, lerr);
        leveldb_free(lerr);
        m->db = NULL;
        return -1;
    }
    int64_t legacy_done = -1;
    if (meta_read_v(m->db, m->ro, &m->meta, &legacy_done) != MVCC_OK) {
        snprintf(err, errlen, "mvcc: bad or unreadable metadata in %s", m->dir);
        return -1;
    }
    if (keys_open(m, err, errlen) != 0 || start_compactor(m, legacy_done, err, errlen) != 0) return -1;
    atomic_store(&m->size_cache_ms, 0);
    m->opened_ms = monotonic_ms();
    publish_meta(m);
    return 0;
}

/* A key no space uses (above mvcc_defrag's FF FF FF FF): a compaction of
 * [FLUSH_KEY, FLUSH_KEY] has no table to merge. */
#define FLUSH_KEY "\xff\xff\xff\xff\xff"

/* Writes LevelDB's memtable into a table: LevelDB's compact_range flushes
 * it first, then merges the tables overlapping the range (none here). The
 * next open then has no LevelDB log to replay (replaying up to the 64 MiB
 * memtable's log, and writing it as a table, is most of an open's time). */
static void db_flush(mvcc_t *m) { leveldb_compact_range(m->db, FLUSH_KEY, 5, FLUSH_KEY, 5); }

/* Stops the compactor and closes the LevelDB (a swap or mvcc_close; flush:
 * the memtable into a table first, for the next open). */
static void db_close(mvcc_t *m, int flush) {
    group_iter_drop(m);                 /* LevelDB's iterators go before the database */
    live_filter_drop(m->live);          /* and the filter's builder, which reads it */
    mvcc_compactor_close(m->compactor); /* before the database it writes */
    m->compactor = NULL;
    if (m->db && flush) db_flush(m);
    if (m->db) leveldb_close(m->db);
    m->db = NULL;
}

static void group_reset(mvcc_t *m);

void mvcc_close(mvcc_t *m) {
    if (!m) return;
    db_close(m, 1);
    live_filter_free(m->live);
    group_reset(m);
    if (m->grp.wb) leveldb_writebatch_destroy(m->grp.wb);
    kv_arena_free(&m->grp.arena);
    free(m->grp.ov.events);
    free(m->grp.ov.idx);
    free(m->grp.revs);
    if (m->ro) leveldb_readoptions_destroy(m->ro);
    if (m->wo) leveldb_writeoptions_destroy(m->wo);
    if (m->wo_sync) leveldb_writeoptions_destroy(m->wo_sync);
    if (m->opts) leveldb_options_destroy(m->opts);
    if (m->cache) leveldb_cache_destroy(m->cache);
    pthread_mutex_destroy(&m->gate_mu);
    pthread_cond_destroy(&m->gate_cv);
    free(m->dir);
    free(m);
}

uint64_t mvcc_applied_index(mvcc_t *m) { return atomic_load(&m->applied); }
int64_t mvcc_revision(mvcc_t *m) { return atomic_load(&m->rev); }
int64_t mvcc_compact_revision(mvcc_t *m) {
    int64_t c = atomic_load(&m->compact_rev);
    return c < 0 ? 0 : c;
}
const mvcc_options_t *mvcc_options(const mvcc_t *m) { return &m->options; }
void mvcc_set_compact_batch(mvcc_t *m, size_t n) { mvcc_compactor_set_batch(m->compactor, n); }
void mvcc_set_compact_pause_ms(mvcc_t *m, unsigned ms) { mvcc_compactor_set_pause_ms(m->compactor, ms); }
void mvcc_compact_hold_after(mvcc_t *m, int64_t n) { mvcc_compactor_hold_after(m->compactor, n); }
int64_t mvcc_compacted_through(mvcc_t *m) {
    mvcc_gate_enter(m);
    int64_t d = m->compactor ? mvcc_compactor_done(m->compactor) : -1;
    mvcc_gate_leave(m);
    return d < 0 ? 0 : d;
}
int mvcc_compact_wait(mvcc_t *m, int64_t rev) { return mvcc_compactor_wait(m->compactor, rev); }
int mvcc_failed(mvcc_t *m) {
    if (atomic_load(&m->swap_failed)) return 1;
    mvcc_gate_enter(m);
    int failed = m->compactor && mvcc_compactor_failed(m->compactor);
    mvcc_gate_leave(m);
    return failed;
}
void mvcc_compact_stats(mvcc_t *m, mvcc_compact_stats_t *out) { mvcc_compactor_stats(m->compactor, out); }

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sum of the sizes of the files in the LevelDB directory: tables, the
 * write-ahead log and the manifest. That is what the store occupies on disk
 * (and what the space quota is about); LevelDB's own approximate sizes miss
 * everything still in the memtable. Cached for a second: the quota check asks
 * on every write; until the next look the bytes committed since are added
 * (LevelDB's log grows by about that much at once), so a burst of writes
 * cannot overrun the quota by a second's worth of data. */
uint64_t mvcc_db_size(mvcc_t *m) {
    uint64_t now = monotonic_ms();
    uint64_t at = atomic_load(&m->size_cache_ms);
    if (at != 0 && now - at < 1000) return atomic_load(&m->size_cache) + atomic_load(&m->size_pending);
    atomic_store(&m->size_pending, 0);
    uint64_t size = 0;
    DIR *d = opendir(m->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            struct stat st;
            if (de->d_name[0] == '.') continue;
            if (fstatat(dirfd(d), de->d_name, &st, 0) == 0 && S_ISREG(st.st_mode))
                size += (uint64_t)st.st_size;
        }
        closedir(d);
    }
    atomic_store(&m->size_cache, size);
    atomic_store(&m->size_cache_ms, now ? now : 1);
    return size;
}

uint64_t mvcc_sync(mvcc_t *m) {
    if (mvcc_group_flush(m) != MVCC_OK) return 0;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    meta_put(wb, &m->meta, m->keys);
    int rc = db_write(m, wb, 1);
    leveldb_writebatch_destroy(wb);
    if (rc != MVCC_OK) return 0;
    return m->meta.applied_index;
}

static void group_join(mvcc_t *m);

int mvcc_set_applied(mvcc_t *m, uint64_t index) {
    if (m->grp.active) {
        group_join(m);
        m->meta.applied_index = index;
        return MVCC_OK;
    }
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    mvcc_meta_t mt = m->meta;
    mt.applied_index = index;
    meta_put(wb, &mt, m->keys);
    int rc = db_write(m, wb, 0);
    leveldb_writebatch_destroy(wb);
    if (rc != MVCC_OK) return rc;
    m->meta = mt;
    publish_meta(m);
    return MVCC_OK;
}

/* ---- side tables ---- */

static int raw_key_ok(const uint8_t *key, size_t key_len) {
    return key_len > 0 && key[0] != MVCC_SPACE_KEY && key[0] != MVCC_SPACE_REV && key[0] != MVCC_SPACE_META &&
           key[0] != MVCC_SPACE_LIVE && key[0] != MVCC_SPACE_COMPACT;
}

int mvcc_txn_raw_put(mvcc_txn_t *t, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    if (!t->wb || !raw_key_ok(key, key_len)) return MVCC_ERR_IO;
    leveldb_writebatch_put(t->wb, (const char *)key, key_len, (const char *)val, val_len);
    t->bytes += key_len + val_len;
    return MVCC_OK;
}

int mvcc_txn_raw_delete(mvcc_txn_t *t, const uint8_t *key, size_t key_len) {
    if (!t->wb || !raw_key_ok(key, key_len)) return MVCC_ERR_IO;
    leveldb_writebatch_delete(t->wb, (const char *)key, key_len);
    return MVCC_OK;
}

int mvcc_raw_get(mvcc_t *m, const uint8_t *key, size_t key_len, uint8_t **val, size_t *val_len) {
    size_t n = 0;
    char *v = NULL;
    mvcc_gate_enter(m);
    int rc = m->db ? db_get(m, m->ro, key, key_len, &v, &n) : MVCC_ERR_IO;
    mvcc_gate_leave(m);
    if (rc != MVCC_OK) return rc;
    *val = malloc(n ? n : 1);
    if (!*val) {
        leveldb_free(v);
        return MVCC_ERR_IO;
    }
    memcpy(*val, v, n);
    leveldb_free(v);
    *val_len = n;
    return MVCC_OK;
}

static int raw_scan(mvcc_t *m, const uint8_t *prefix, size_t prefix_len, mvcc_raw_fn fn, void *arg);

int mvcc_raw_scan(mvcc_t *m, const uint8_t *prefix, size_t prefix_len, mvcc_raw_fn fn, void *arg) {
    mvcc_gate_enter(m);
    int rc = m->db ? raw_scan(m, prefix, prefix_len, fn, arg) : MVCC_ERR_IO;
    mvcc_gate_leave(m);
    return rc;
}

static int raw_scan(mvcc_t *m, const uint8_t *prefix, size_t prefix_len, mvcc_raw_fn fn, void *arg) {
    leveldb_iterator_t *it = db_iter(m, m->ro);
    if (!it) return MVCC_ERR_IO;
    for (leveldb_iter_seek(it, (const char *)prefix, prefix_len); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &kl);
        if (kl < prefix_len || memcmp(k, prefix, prefix_len) != 0) break;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vl);
        if (fn(arg, k, kl, v, vl)) break;
    }
    return iter_done(it);
}

/* The same walk through a read txn's snapshot (consistent with its
 * metadata); a write txn reads the live DB. */
int mvcc_txn_raw_scan(mvcc_txn_t *t, const uint8_t *prefix, size_t prefix_len, mvcc_raw_fn fn, void *arg) {
    leveldb_iterator_t *it = db_iter(t->m, t->ro ? t->ro : t->m->ro);
    if (!it) return MVCC_ERR_IO;
    for (leveldb_iter_seek(it, (const char *)prefix, prefix_len); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &kl);
        if (kl < prefix_len || memcmp(k, prefix, prefix_len) != 0) break;
        const uint8_t *v = (const uint8_t *)leveldb_iter_value(it, &vl);
        if (fn(arg, k, kl, v, vl)) break;
    }
    return iter_done(it);
}

int mvcc_txn_raw_get(mvcc_txn_t *t, const uint8_t *key, size_t key_len, uint8_t **val, size_t *val_len) {
    size_t n = 0;
    char *v = NULL;
    int rc = db_get(t->m, t->ro ? t->ro : t->m->ro, key, key_len, &v, &n);
    if (rc != MVCC_OK) return rc;
    *val = malloc(n ? n : 1);
    if (!*val) {
        leveldb_free(v);
        return MVCC_ERR_IO;
    }
    memcpy(*val, v, n);
    leveldb_free(v);
    *val_len = n;
    return MVCC_OK;
}

/* LevelDB's manual compaction of the whole key space. A first
 * leveldb_compact_range flushes the memtable, but LevelDB may place that
 * table at level 2 (nothing overlaps it) and only compacts the levels above
 * the deepest one holding files, so a table flushed with its own shadowed
 * entries (puts deleted later, compacted versions) would stay as it is. So:
 * flush, then write deletion markers for the lowest and highest possible
 * keys (no space uses them), whose table spans the key space and lands above
 * every other, and compact again: every level then merges down into the
 * deepest one, dropping deleted and overwritten entries. LevelDB serializes
 * this with its own background compaction; reads and writes go on. */
int mvcc_defrag(mvcc_t *m) {
    leveldb_compact_range(m->db, NULL, 0, NULL, 0);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_writebatch_delete(wb, "\x00", 1);
    leveldb_writebatch_delete(wb, "\xff\xff\xff\xff", 4);
    /* a worker thread's write (not db_write: the apply thread owns the
     * group's iterator, and these deletes of keys that never exist change
     * nothing it could read) */
    int rc = db_write_raw(m, wb, 0);
    leveldb_writebatch_destroy(wb);
    if (rc == MVCC_OK) leveldb_compact_range(m->db, NULL, 0, NULL, 0);
    atomic_store(&m->size_cache_ms, 0); /* the next mvcc_db_size looks again */
    return rc;
}

/* ---- txns ---- */

int mvcc_txn_begin_read(mvcc_t *m, kv_arena_t *arena, mvcc_txn_t **out) {
    mvcc_txn_t *t = calloc(1, sizeof(*t));
    if (!t) return MVCC_ERR_IO;
    t->m = m;
    t->arena = arena;
    mvcc_gate_enter(m);
    t->gated = 1;
    if (!m->db) {
        mvcc_txn_end(t);
        return MVCC_ERR_IO;
    }
    t->snap = leveldb_create_snapshot(m->db);
    t->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(t->ro, 1);
    leveldb_readoptions_set_snapshot(t->ro, t->snap);
    if (meta_read(m->db, t->ro, &t->meta) != MVCC_OK) {
        mvcc_txn_end(t);
        return MVCC_ERR_IO;
    }
    *out = t;
    return MVCC_OK;
}

int mvcc_txn_begin_write(mvcc_t *m, kv_arena_t *arena, mvcc_txn_t **out) {
    mvcc_txn_t *t = calloc(1, sizeof(*t));
    if (!t) return MVCC_ERR_IO;
    t->m = m;
    t->arena = arena;
    t->meta = m->meta;
    t->wb = leveldb_writebatch_create();
    *out = t;
    return MVCC_OK;
}

void mvcc_txn_count(mvcc_txn_t *t, mvcc_op_t op) { t->ops[op]++; }

void mvcc_txn_count_end(mvcc_txn_t *t) {
    mvcc_t *m = t->m;
    unsigned r = t->ops[MVCC_OP_RANGE], p = t->ops[MVCC_OP_PUT], d = t->ops[MVCC_OP_DELETE];
    if (r + p + d > 1) atomic_fetch_add_explicit(&m->n_txns, 1, memory_order_relaxed);
    if (r) atomic_fetch_add_explicit(&m->n_ranges, r, memory_order_relaxed);
    if (p) atomic_fetch_add_explicit(&m->n_puts, p, memory_order_relaxed);
    if (d) atomic_fetch_add_explicit(&m->n_deletes, d, memory_order_relaxed);
    if (t->put_bytes) atomic_fetch_add_explicit(&m->put_bytes, t->put_bytes, memory_order_relaxed);
    memset(t->ops, 0, sizeof t->ops);
    t->put_bytes = 0;
}

void mvcc_live_filter_stats(mvcc_t *m, live_filter_stats_t *out) { live_filter_stats(m->live, out); }
void mvcc_live_filter_wait(mvcc_t *m) { live_filter_wait_build(m->live); }
uint64_t mvcc_read_memo_hits(mvcc_t *m) { return atomic_load_explicit(&m->memo_hits, memory_order_relaxed); }

void mvcc_stats(mvcc_t *m, mvcc_stats_t *out) {
    out->ranges = atomic_load_explicit(&m->n_ranges, memory_order_relaxed);
    out->puts = atomic_load_explicit(&m->n_puts, memory_order_relaxed);
    out->deletes = atomic_load_explicit(&m->n_deletes, memory_order_relaxed);
    out->txns = atomic_load_explicit(&m->n_txns, memory_order_relaxed);
    out->put_bytes = atomic_load_explicit(&m->put_bytes, memory_order_relaxed);
    int64_t k = atomic_load_explicit(&m->live_keys, memory_order_relaxed);
    out->keys = k > 0 ? (uint64_t)k : 0;
    lat_hist_read(&m->commit_hist, &out->commit);
}

void mvcc_txn_end(mvcc_txn_t *t) {
    if (!t) return;
    mvcc_txn_count_end(t);
    if (t->ro) leveldb_readoptions_destroy(t->ro);
    if (t->snap) leveldb_release_snapshot(t->m->db, t->snap);
    if (t->wb) leveldb_writebatch_destroy(t->wb);
    if (t->gated) mvcc_gate_leave(t->m);
    free(t->ov.events);
    free(t->ov.idx);
    free(t);
}

static const leveldb_readoptions_t *txn_ro(const mvcc_txn_t *t) { return t->ro ? t->ro : t->m->ro; }

int64_t mvcc_txn_begin_rev(const mvcc_txn_t *t) { return t->meta.rev; }
int64_t mvcc_txn_rev(const mvcc_txn_t *t) { return t->meta.rev + (t->ov.n_events > 0 ? 1 : 0); }
int64_t mvcc_txn_compact_rev(const mvcc_txn_t *t) { return t->meta.compact_rev; }
size_t mvcc_txn_changes(const mvcc_txn_t *t) { return t->ov.n_events; }

/* The newest revision LevelDB holds as this txn reads it: the snapshot's for
 * a read txn; for a write txn, the one before the group's entries. */
static int64_t txn_db_rev(const mvcc_txn_t *t) {
    if (t->wb && t->m->grp.entries) return t->m->grp.base.rev;
    return t->meta.rev;
}

static void kv_list_push(kv_arena_t *a, mvcc_kv_list_t *l, Mvccpb__KeyValue *kv) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        Mvccpb__KeyValue **v = kv_arena_alloc(a, cap * sizeof(*v));
        if (l->n) memcpy(v, l->kvs, l->n * sizeof(*v));
        l->kvs = v;
        l->cap = cap;
    }
    l->kvs[l->n++] = kv;
}

/* Builds a KeyValue from one 'k' entry (key and value copied to the arena).
 * Returns NULL for a tombstone. */
static Mvccpb__KeyValue *kv_from_entry(kv_arena_t *a, const uint8_t *ek, size_t eklen, const uint8_t *rec,
                                       size_t reclen, int64_t main) {
    assert(reclen >= REC_HDR); /* checked by the caller (db_range) */
    if (rec[0] & 1) return NULL;
    Mvccpb__KeyValue *kv = kv_arena_alloc(a, sizeof(*kv));
    mvccpb__key_value__init(kv);
    kv->key.data = decode_user_key(a, ek, eklen, &kv->key.len);
    kv->create_revision = (int64_t)get_be64(rec + 1);
    kv->version = (int64_t)get_be64(rec + 9);
    kv->lease = (int64_t)get_be64(rec + 17);
    kv->mod_revision = main;
    kv->value.len = reclen - REC_HDR;
    kv->value.data = kv_arena_dup(a, rec + REC_HDR, kv->value.len);
    return kv;
}

/* Growable scratch buffer for encoded keys. */
typedef struct keybuf {
    uint8_t *p;
    size_t cap;
} keybuf_t;

static uint8_t *keybuf_reserve(keybuf_t *b, size_t n) {
    if (n > b->cap) {
        size_t cap = n < 256 ? 256 : n * 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) abort();
        b->p = p;
        b->cap = cap;
    }
    return b->p;
}

/* Number of keys alive now in r, from the live-key index ('l' space: one
 * small entry per live key, no values), through the txn's snapshot. Exact for
 * the snapshot's current revision only; ranges, not single keys. Returns -1
 * on a LevelDB error. */
static int64_t live_count(mvcc_txn_t *t, const mvcc_range_t *r) {
    leveldb_iterator_t *it = txn_iter(t, txn_ro(t));
    if (!it) return -1;
    keybuf_t seek = {0}, end = {0};
    uint8_t *sp = keybuf_reserve(&seek, mvcc_encoded_key_max(r->key_len));
    size_t seek_len = mvcc_encode_key(sp, r->key, r->key_len);
    sp[0] = 'l';
    size_t end_len = 0;
    if (r->kind == MVCC_RANGE_HALF_OPEN) {
        uint8_t *p = keybuf_reserve(&end, 1 + 2 * r->end_len);
        p[0] = 'l';
        end_len = 1 + escape_into(p + 1, r->end, r->end_len);
    }
    int64_t n = 0;
    assert(r->kind != MVCC_RANGE_SINGLE);
    for (leveldb_iter_seek(it, (const char *)seek.p, seek_len); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t klen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen == 0 || k[0] != 'l') break;
        if (r->kind == MVCC_RANGE_HALF_OPEN && bytes_cmp(k, klen - 2, end.p, end_len) >= 0) break;
        n++;
    }
    int rc = txn_iter_done(t, it);
    free(seek.p);
    free(end.p);
    return rc == MVCC_OK ? n : -1;
}

/* ---- single-key reads of write txns without LevelDB ----
 * Both answer a write txn's read of one key at LevelDB's newest revision:
 * the live-key filter (live_filter.h) a key never alive, the group's memo
 * a key read already while LevelDB has not changed. Both are off while the
 * read failpoint is armed, so that every read it counts happens. */

static uint8_t *bytes_copy(kv_arena_t *a, const uint8_t *p, size_t n);
static Mvccpb__KeyValue *kv_copy(kv_arena_t *a, const Mvccpb__KeyValue *kv);

static int shortcuts_apply(const mvcc_txn_t *t, const mvcc_range_t *r, int64_t rev) {
    return r->kind == MVCC_RANGE_SINGLE && t->wb && rev == txn_db_rev(t) && !mvcc_read_error_armed(t->m);
}

/* The memo slot of r's key: *hit when it holds that key. NULL outside a
 * group (no iterator whose lifetime bounds the memo). */
static read_memo_t *memo_find(mvcc_txn_t *t, const mvcc_range_t *r, uint64_t hash, int *hit) {
    *hit = 0;
    if (!t->m->grp.active) return NULL;
    read_memo_t *s = &t->m->grp.memo[hash % GROUP_MEMO_SLOTS];
    *hit = s->key && s->hash == hash && s->key_len == r->key_len && memcmp(s->key, r->key, r->key_len) == 0;
    return s;
}

static void memo_store(mvcc_t *m, read_memo_t *s, const mvcc_range_t *r, uint64_t hash,
                       const Mvccpb__KeyValue *kv) {
    s->hash = hash;
    s->key = bytes_copy(&m->grp.arena, r->key, r->key_len);
    s->key_len = r->key_len;
    s->kv = kv ? kv_copy(&m->grp.arena, kv) : NULL;
}

static int db_range_scan(mvcc_txn_t *t, const mvcc_range_t *r, int64_t rev, int64_t limit, int count_only,
                         mvcc_kv_list_t *out, int64_t *count);

/* The stored versions of range r at revision rev (no overlay). */
static int db_range(mvcc_txn_t *t, const mvcc_range_t *r, int64_t rev, int64_t limit, int count_only,
                    mvcc_kv_list_t *out, int64_t *count) {
    if (!shortcuts_apply(t, r, rev)) return db_range_scan(t, r, rev, limit, count_only, out, count);
    uint64_t hash = key_filter_hash(r->key, r->key_len); /* the filter's and the memo's */
    if (!live_filter_may_be_live(t->m->live, hash)) {
        *count = 0;
        return MVCC_OK;
    }
    int hit;
    read_memo_t *s = memo_find(t, r, hash, &hit);
    if (hit) {
        atomic_fetch_add_explicit(&t->m->memo_hits, 1, memory_order_relaxed);
        if (s->kv && !count_only && (limit <= 0 || (int64_t)out->n < limit))
            kv_list_push(t->arena, out, kv_copy(t->arena, s->kv));
        *count = s->kv ? 1 : 0;
        return MVCC_OK;
    }
    size_t before = out->n;
    int rc = db_range_scan(t, r, rev, limit, count_only, out, count);
    /* kept only when the list says what the count says (not past a limit) */
    size_t got = out->n - before;
    if (rc == MVCC_OK && s && !count_only && (int64_t)got == *count)
        memo_store(t->m, s, r, hash, got ? out->kvs[before] : NULL);
    return rc;
}

static int db_range_scan(mvcc_txn_t *t, const mvcc_range_t *r, int64_t rev, int64_t limit, int count_only,
                         mvcc_kv_list_t *out, int64_t *count) {
    /* At the current revision the count comes from the live-key index, so a
     * limited or count-only read never walks the values of the whole range. */
    int64_t live = -1;
    if (rev == txn_db_rev(t) && r->kind != MVCC_RANGE_SINGLE && (count_only || limit > 0)) {
        live = live_count(t, r);
        if (live < 0) return MVCC_ERR_IO;
        if (count_only) {
            *count = live;
            return MVCC_OK;
        }
    }
    leveldb_iterator_t *it = txn_iter(t, txn_ro(t));
    if (!it) return MVCC_ERR_IO;
    keybuf_t seek = {0}, end = {0}, single = {0};
    size_t end_len = 0, single_len = 0;
    if (r->kind == MVCC_RANGE_HALF_OPEN) {
        uint8_t *p = keybuf_reserve(&end, 1 + 2 * r->end_len);
        p[0] = 'k';
        end_len = 1 + escape_into(p + 1, r->end, r->end_len);
    } else if (r->kind == MVCC_RANGE_SINGLE) {
        single_len =
            mvcc_encode_key(keybuf_reserve(&single, mvcc_encoded_key_max(r->key_len)), r->key, r->key_len);
    }
    uint8_t *sp = keybuf_reserve(&seek, 1 + 2 * r->key_len);
    sp[0] = 'k';
    size_t seek_len = 1 + escape_into(sp + 1, r->key, r->key_len);
    if (r->kind == MVCC_RANGE_SINGLE) {
        /* straight to the newest version <= rev */
        memcpy(keybuf_reserve(&seek, single_len + REV_SUFFIX), single.p, single_len);
        encode_rev_suffix(seek.p + single_len, rev, 0);
        memset(seek.p + single_len + 8, 0, 8); /* ~sub of UINT64_MAX: first suffix at main=rev */
        seek_len = single_len + REV_SUFFIX;
    }
    int64_t n = 0;
    int corrupt = 0;
    leveldb_iter_seek(it, (const char *)seek.p, seek_len);
    while (leveldb_iter_valid(it)) {
        size_t eklen;
        const uint8_t *ek = (const uint8_t *)leveldb_iter_key(it, &eklen);
        if (eklen == 0 || ek[0] != 'k') break; /* past the 'k' space */
        if (eklen < 1 + 2 + REV_SUFFIX) {
            fprintf(stderr, "mvcc: a version key of %zu bytes: the store is corrupt\n", eklen);
            corrupt = 1;
            break;
        }
        size_t prefix_len = eklen - REV_SUFFIX; /* 'k' | esc(key) | 00 01 */
        if (r->kind == MVCC_RANGE_SINGLE) {
            if (prefix_len != single_len || memcmp(ek, single.p, single_len) != 0) break;
        } else if (r->kind == MVCC_RANGE_HALF_OPEN) {
            if (bytes_cmp(ek, prefix_len, end.p, end_len) >= 0) break;
        }
        int64_t main, sub;
        decode_rev_suffix(ek, eklen, &main, &sub);
        if (main > rev) {
            /* newer than wanted: jump to this key's newest version <= rev */
            uint8_t *p = keybuf_reserve(&seek, eklen);
            memmove(p, ek, prefix_len);
            encode_rev_suffix(p + prefix_len, rev, 0);
            memset(p + prefix_len + 8, 0, 8);
            leveldb_iter_seek(it, (const char *)p, eklen);
            continue;
        }
        size_t reclen;
        const uint8_t *rec = (const uint8_t *)leveldb_iter_value(it, &reclen);
        if (reclen < REC_HDR) {
            fprintf(stderr, "mvcc: a version record of %zu bytes: the store is corrupt\n", reclen);
            corrupt = 1;
            break;
        }
        if (!(rec[0] & 1)) {
            n++;
            if (!count_only && (limit <= 0 || (int64_t)out->n < limit)) {
                Mvccpb__KeyValue *kv = kv_from_entry(t->arena, ek, eklen, rec, reclen, main);
                kv_list_push(t->arena, out, kv);
            }
            if (live >= 0 && (int64_t)out->n >= limit) break; /* count known already */
        }
        if (r->kind == MVCC_RANGE_SINGLE) break;
        /* skip the older versions of this key: one step, else a seek */
        uint8_t *p = keybuf_reserve(&seek, prefix_len);
        memmove(p, ek, prefix_len);
        leveldb_iter_next(it);
        if (!leveldb_iter_valid(it)) break;
        size_t nklen;
        const uint8_t *nk = (const uint8_t *)leveldb_iter_key(it, &nklen);
        if (nklen == eklen && memcmp(nk, p, prefix_len) == 0) {
            p[prefix_len - 1] = 0x02; /* 'k'|esc|00 02: past every version */
            leveldb_iter_seek(it, (const char *)p, prefix_len);
        }
    }
    int rc = txn_iter_done(t, it);
    free(seek.p);
    free(end.p);
    free(single.p);
    if (rc != MVCC_OK || corrupt) return MVCC_ERR_IO;
    *count = live >= 0 ? live : n;
    return MVCC_OK;
}

/* ---- overlays: a txn's own changes, a group's changes ---- */

static mvcc_event_t *overlay_add_event(overlay_t *ov) {
    if (ov->n_events == ov->cap_events) {
        size_t cap = ov->cap_events ? ov->cap_events * 2 : 8;
        mvcc_event_t *v = realloc(ov->events, cap * sizeof(*v));
        if (!v) abort();
        ov->events = v;
        ov->cap_events = cap;
    }
    mvcc_event_t *ev = &ov->events[ov->n_events];
    memset(ev, 0, sizeof(*ev));
    return ev;
}

/* Position of key in the index (or where it would be inserted). */
static size_t overlay_find(const overlay_t *ov, const uint8_t *key, size_t key_len, int *found) {
    size_t lo = 0, hi = ov->n_idx;
    *found = 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const Mvccpb__KeyValue *kv = ov->events[ov->idx[mid]].kv;
        int c = bytes_cmp(kv->key.data, kv->key.len, key, key_len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Makes events[ev_index] the latest change of its key. */
static void overlay_set(overlay_t *ov, size_t ev_index) {
    const Mvccpb__KeyValue *kv = ov->events[ev_index].kv;
    int found;
    size_t pos = overlay_find(ov, kv->key.data, kv->key.len, &found);
    if (found) {
        ov->idx[pos] = ev_index;
        return;
    }
    if (ov->n_idx == ov->cap_idx) {
        size_t cap = ov->cap_idx ? ov->cap_idx * 2 : 16;
        size_t *v = realloc(ov->idx, cap * sizeof(*v));
        if (!v) abort();
        ov->idx = v;
        ov->cap_idx = cap;
    }
    memmove(ov->idx + pos + 1, ov->idx + pos, (ov->n_idx - pos) * sizeof(size_t));
    ov->idx[pos] = ev_index;
    ov->n_idx++;
}

/* The latest change of key, or NULL. */
static const mvcc_event_t *overlay_get(const overlay_t *ov, const uint8_t *key, size_t key_len) {
    int found;
    size_t pos = overlay_find(ov, key, key_len, &found);
    return found ? &ov->events[ov->idx[pos]] : NULL;
}

/* Does ov change a key of r? */
static int overlay_touches(const overlay_t *ov, const mvcc_range_t *r) {
    int found;
    size_t pos = overlay_find(ov, r->key, r->key_len, &found);
    if (pos >= ov->n_idx) return 0;
    const Mvccpb__KeyValue *kv = ov->events[ov->idx[pos]].kv;
    return mvcc_range_contains(r, kv->key.data, kv->key.len);
}

static uint8_t *bytes_copy(kv_arena_t *a, const uint8_t *p, size_t n) {
    return n ? kv_arena_dup(a, p, n) : kv_arena_alloc(a, 1);
}

/* A deep copy of kv (key and value) in a; NULL stays NULL. */
static Mvccpb__KeyValue *kv_copy(kv_arena_t *a, const Mvccpb__KeyValue *kv) {
    if (!kv) return NULL;
    Mvccpb__KeyValue *c = kv_arena_dup(a, kv, sizeof(*c));
    c->key.data = bytes_copy(a, kv->key.data, kv->key.len);
    c->value.data = bytes_copy(a, kv->value.data, kv->value.len);
    return c;
}

/* Merges `in` (versions of keys of r, ascending) with ov's changes inside r:
 * a change replaces the key's version, a delete removes it. Versions taken
 * from ov are copied into a when copy is set (a group's arena does not live
 * as long as the txn reading it). */
static void overlay_merge(kv_arena_t *a, const overlay_t *ov, const mvcc_range_t *r, int copy,
                          const mvcc_kv_list_t *in, mvcc_kv_list_t *out) {
    int found;
    size_t oi = overlay_find(ov, r->key, r->key_len, &found);
    size_t bi = 0;
    for (;;) {
        const mvcc_event_t *ev = NULL;
        if (oi < ov->n_idx) {
            ev = &ov->events[ov->idx[oi]];
            if (!mvcc_range_contains(r, ev->kv->key.data, ev->kv->key.len)) ev = NULL;
        }
        Mvccpb__KeyValue *b = bi < in->n ? in->kvs[bi] : NULL;
        if (!ev && !b) break;
        Mvccpb__KeyValue *pick = NULL;
        int c = !ev ? -1 : (!b ? 1 : bytes_cmp(b->key.data, b->key.len, ev->kv->key.data, ev->kv->key.len));
        if (c < 0) {
            pick = b;
            bi++;
        } else {
            if (ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT)
                pick = copy ? kv_copy(a, ev->kv) : (Mvccpb__KeyValue *)ev->kv;
            oi++;
            if (c == 0) bi++;
        }
        if (pick) kv_list_push(a, out, pick);
    }
}

/* Range at the newest revision a write txn sees (with_txn: including its own
 * changes): LevelDB merged with the group's and the txn's changes. When no
 * change touches r, LevelDB answers alone (limit and count included). */
static int overlay_range(mvcc_txn_t *t, const mvcc_range_t *r, int with_txn, int64_t limit, int count_only,
                         mvcc_kv_list_t *out, int64_t *count) {
    const overlay_t *gov = &t->m->grp.ov;
    int in_grp = t->m->grp.entries && overlay_touches(gov, r);
    int in_txn = with_txn && overlay_touches(&t->ov, r);
    int64_t db_rev = txn_db_rev(t);
    if (!in_grp && !in_txn) return db_range(t, r, db_rev, limit, count_only, out, count);
    mvcc_kv_list_t cur = {0};
    int64_t n = 0;
    int rc = db_range(t, r, db_rev, 0, 0, &cur, &n);
    if (rc != MVCC_OK) return rc;
    if (in_grp) {
        mvcc_kv_list_t next = {0};
        overlay_merge(t->arena, gov, r, 1, &cur, &next);
        cur = next;
    }
    if (in_txn) {
        mvcc_kv_list_t next = {0};
        overlay_merge(t->arena, &t->ov, r, 0, &cur, &next);
        cur = next;
    }
    *count = (int64_t)cur.n;
    for (size_t i = 0; !count_only && i < cur.n && (limit <= 0 || (int64_t)out->n < limit); i++)
        kv_list_push(t->arena, out, cur.kvs[i]);
    return MVCC_OK;
}

int mvcc_txn_range(mvcc_txn_t *t, const mvcc_range_t *r, int64_t at_rev, int64_t limit, int count_only,
                   mvcc_kv_list_t *out, int64_t *count) {
    int64_t cur = mvcc_txn_rev(t);
    if (at_rev > cur) return MVCC_ERR_FUTURE_REV;
    if (at_rev <= 0) at_rev = cur;
    if (at_rev < t->meta.compact_rev) return MVCC_ERR_COMPACTED;
    if (!t->wb || at_rev <= txn_db_rev(t)) return db_range(t, r, at_rev, limit, count_only, out, count);
    if (at_rev < t->meta.rev) {
        /* A revision inside the group: the overlay keeps only each key's
         * latest change, so write the group and read LevelDB. */
        int rc = mvcc_group_flush(t->m);
        if (rc != MVCC_OK) return rc;
        return db_range(t, r, at_rev, limit, count_only, out, count);
    }
    return overlay_range(t, r, at_rev > t->meta.rev, limit, count_only, out, count);
}

/* ---- writes ---- */

/* Adds the 'k', 'r' and 'l' entries of one change to wb; returns the
 * approximate bytes added. Also the loaders' (mvcc_dump.c, mvcc_import.c).
 * The encodings are built in one buffer, on the stack for changes of up to
 * a few KiB (leveldb_writebatch_put copies). A put of a key that was alive
 * (MVCC_VERSION_WAS_LIVE) leaves its 'l' entry as it is: rewriting the same
 * empty value would cost a third memtable insert per update. */
size_t mvcc_internal_batch_version(leveldb_writebatch_t *wb, const Mvccpb__KeyValue *kv, int64_t sub,
                                   unsigned flags) {
    int tombstone = (flags & MVCC_VERSION_TOMBSTONE) != 0;
    size_t klen = mvcc_encoded_key_max(kv->key.len), reclen = REC_HDR + kv->value.len;
    size_t need = klen + reclen + 1 + kv->key.len;
    uint8_t stack[4096];
    uint8_t *buf = need <= sizeof(stack) ? stack : malloc(need);
    if (!buf) abort();
    uint8_t *k = buf, *rec = buf + klen, *rv = rec + reclen;
    size_t n = mvcc_key_version(k, kv->key.data, kv->key.len, kv->mod_revision, sub);
    rec[0] = tombstone ? 1 : 0;
    put_be64(rec + 1, (uint64_t)kv->create_revision);
    put_be64(rec + 9, (uint64_t)kv->version);
    put_be64(rec + 17, (uint64_t)kv->lease);
    if (kv->value.len) memcpy(rec + REC_HDR, kv->value.data, kv->value.len);
    leveldb_writebatch_put(wb, (const char *)k, n, (const char *)rec, reclen);
    uint8_t rk[REV_KEY_LEN];
    encode_rev_key(rk, kv->mod_revision, sub);
    rv[0] = tombstone ? 1 : 0;
    if (kv->key.len) memcpy(rv + 1, kv->key.data, kv->key.len);
    leveldb_writebatch_put(wb, (const char *)rk, sizeof(rk), (const char *)rv, 1 + kv->key.len);
    /* the live-key index: 'l' | esc(key) | 00 01 for every key alive now */
    size_t lk_len = n - REV_SUFFIX;
    k[0] = MVCC_SPACE_LIVE;
    if (tombstone)
        leveldb_writebatch_delete(wb, (const char *)k, lk_len);
    else if (!(flags & MVCC_VERSION_WAS_LIVE))
        leveldb_writebatch_put(wb, (const char *)k, lk_len, "", 0);
    if (buf != stack) free(buf);
    return 3 * n + reclen + 1 + kv->key.len + 32;
}

static void batch_change(mvcc_txn_t *t, const Mvccpb__KeyValue *kv, int64_t sub, unsigned flags) {
    t->bytes += mvcc_internal_batch_version(t->wb, kv, sub, flags);
}

/* The latest live version of key as this txn sees it: *out is NULL when the
 * key does not exist. MVCC_OK or MVCC_ERR_IO (never "absent" on an error). */
static int txn_get(mvcc_txn_t *t, const uint8_t *key, size_t key_len, const Mvccpb__KeyValue **out) {
    *out = NULL;
    const mvcc_event_t *ev = overlay_get(&t->ov, key, key_len);
    int from_group = 0;
    if (!ev && t->m->grp.entries) {
        ev = overlay_get(&t->m->grp.ov, key, key_len);
        from_group = 1;
    }
    if (ev) {
        if (ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT)
            *out = from_group ? kv_copy(t->arena, ev->kv) : ev->kv;
        return MVCC_OK;
    }
    mvcc_range_t r = mvcc_range_make(key, key_len, NULL, 0);
    mvcc_kv_list_t l = {0};
    int64_t count = 0;
    int rc = db_range(t, &r, txn_db_rev(t), 1, 0, &l, &count);
    if (rc != MVCC_OK) return rc;
    *out = l.n ? l.kvs[0] : NULL;
    return MVCC_OK;
}

int mvcc_txn_put(mvcc_txn_t *t, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                 int64_t lease, const Mvccpb__KeyValue **prev_out) {
    assert(t->wb);
    t->put_bytes += key_len + val_len; /* etcd's total_put_size: every Put call */
    int64_t rev = t->meta.rev + 1;
    const Mvccpb__KeyValue *prev = NULL;
    int rc = txn_get(t, key, key_len, &prev);
    if (rc != MVCC_OK) return rc;
    live_filter_add(t->m->live, key, key_len, prev == NULL);
    Mvccpb__KeyValue *kv = kv_arena_alloc(t->arena, sizeof(*kv));
    mvccpb__key_value__init(kv);
    kv->key.data = kv_arena_dup(t->arena, key, key_len);
    kv->key.len = key_len;
    kv->value.data = kv_arena_dup(t->arena, val, val_len);
    kv->value.len = val_len;
    if (failpoint_hit(&t->m->fp_put_corrupt)) corrupt_value(t->arena, &kv->value);
    kv->create_revision = prev ? prev->create_revision : rev;
    kv->version = prev ? prev->version + 1 : 1;
    kv->mod_revision = rev;
    kv->lease = lease;
    int64_t sub = (int64_t)t->ov.n_events;
    batch_change(t, kv, sub, prev ? MVCC_VERSION_WAS_LIVE : 0);
    mvcc_event_t *ev = overlay_add_event(&t->ov);
    ev->type = MVCCPB__EVENT__EVENT_TYPE__PUT;
    ev->kv = kv;
    ev->prev_kv = prev;
    t->ov.n_events++;
    overlay_set(&t->ov, t->ov.n_events - 1);
    if (prev_out) *prev_out = prev;
    return MVCC_OK;
}

int64_t mvcc_txn_delete_range(mvcc_txn_t *t, const mvcc_range_t *r, mvcc_kv_list_t *prev_kvs) {
    assert(t->wb);
    mvcc_kv_list_t live = {0};
    int64_t count = 0;
    if (mvcc_txn_range(t, r, 0, 0, 0, &live, &count) != MVCC_OK) return -1;
    int64_t rev = t->meta.rev + 1;
    for (size_t i = 0; i < live.n; i++) {
        const Mvccpb__KeyValue *prev = live.kvs[i];
        Mvccpb__KeyValue *kv = kv_arena_alloc(t->arena, sizeof(*kv));
        mvccpb__key_value__init(kv);
        kv->key = prev->key;
        kv->mod_revision = rev;
        batch_change(t, kv, (int64_t)t->ov.n_events, MVCC_VERSION_TOMBSTONE);
        mvcc_event_t *ev = overlay_add_event(&t->ov);
        ev->type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
        ev->kv = kv;
        ev->prev_kv = prev;
        t->ov.n_events++;
        overlay_set(&t->ov, t->ov.n_events - 1);
        if (prev_kvs) kv_list_push(t->arena, prev_kvs, (Mvccpb__KeyValue *)prev);
    }
    return (int64_t)live.n;
}

/* ---- write groups ---- */

static void group_reset(mvcc_t *m) {
    mvcc_group_t *g = &m->grp;
    group_iter_drop(m);
    if (g->wb && g->bytes <= GROUP_KEEP_BYTES) {
        leveldb_writebatch_clear(g->wb);
    } else if (g->wb) {
        leveldb_writebatch_destroy(g->wb);
        g->wb = NULL;
    }
    g->entries = 0;
    g->bytes = 0;
    g->ov.n_events = 0;
    g->ov.n_idx = 0;
    g->n_revs = 0;
    kv_arena_free(&g->arena);
    kv_arena_init(&g->arena);
}

/* One more entry joins the group (its first: the group's write batch). */
static void group_join(mvcc_t *m) {
    mvcc_group_t *g = &m->grp;
    if (!g->entries) {
        if (!g->wb) g->wb = leveldb_writebatch_create();
        g->base = m->meta;
        g->base_keys = m->keys;
    }
    g->entries++;
}

/* A committed txn joins the group: its batch, and its events copied into
 * the group's arena (the txn's arena dies with the request). */
static void group_add(mvcc_t *m, const mvcc_txn_t *t, int64_t rev) {
    mvcc_group_t *g = &m->grp;
    group_join(m);
    leveldb_writebatch_append(g->wb, t->wb);
    g->bytes += t->bytes;
    if (!t->ov.n_events) return;
    if (g->n_revs == g->cap_revs) {
        size_t cap = g->cap_revs ? g->cap_revs * 2 : 64;
        group_rev_t *v = realloc(g->revs, cap * sizeof(*v));
        if (!v) abort();
        g->revs = v;
        g->cap_revs = cap;
    }
    g->revs[g->n_revs++] = (group_rev_t){rev, g->ov.n_events, t->ov.n_events};
    for (size_t i = 0; i < t->ov.n_events; i++) {
        const mvcc_event_t *src = &t->ov.events[i];
        mvcc_event_t *ev = overlay_add_event(&g->ov);
        ev->type = src->type;
        ev->kv = kv_copy(&g->arena, src->kv);
        ev->prev_kv = kv_copy(&g->arena, src->prev_kv);
        g->ov.n_events++;
        overlay_set(&g->ov, g->ov.n_events - 1);
    }
}

/* A group boundary: everything applied so far is in LevelDB, so the
 * live-key filter may start a build here (live_filter.h). */
void mvcc_group_begin(mvcc_t *m) {
    assert(!m->grp.entries);
    if (m->db && monotonic_ms() - m->opened_ms >= m->options.live_filter_delay_ms)
        live_filter_tick(m->live, m->db, m->keys);
    m->grp.active = 1;
}

int mvcc_group_flush(mvcc_t *m) {
    mvcc_group_t *g = &m->grp;
    if (!g->entries) return MVCC_OK;
    meta_put(g->wb, &m->meta, m->keys);
    int rc = db_write(m, g->wb, 1);
    if (rc != MVCC_OK) {
        m->meta = g->base; /* nothing of the group is stored */
        m->keys = g->base_keys;
        group_reset(m);
        return rc;
    }
    publish_meta(m);
    if (m->options.on_events)
        for (size_t i = 0; i < g->n_revs; i++)
            m->options.on_events(m->options.events_ctx, g->revs[i].rev, g->ov.events + g->revs[i].first,
                                 g->revs[i].n);
    group_reset(m);
    return MVCC_OK;
}

int mvcc_group_end(mvcc_t *m) {
    int rc = mvcc_group_flush(m);
    group_iter_drop(m); /* a group of reads only: no flush dropped it */
    m->grp.active = 0;
    return rc;
}

void mvcc_group_abort(mvcc_t *m) {
    if (m->grp.entries) {
        m->meta = m->grp.base;
        m->keys = m->grp.base_keys;
    }
    group_reset(m);
    m->grp.active = 0;
}

uint64_t mvcc_apply_index(mvcc_t *m) { return m->meta.applied_index; }
int64_t mvcc_apply_revision(mvcc_t *m) { return m->meta.rev; }

/* Live keys a txn's events add: a put of a key not live, minus deletes. */
static int64_t keys_delta(const mvcc_txn_t *t) {
    int64_t d = 0;
    for (size_t i = 0; i < t->ov.n_events; i++) {
        const mvcc_event_t *ev = &t->ov.events[i];
        if (ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE)
            d--;
        else if (!ev->prev_kv)
            d++;
    }
    return d;
}

int mvcc_txn_commit(mvcc_txn_t *t, uint64_t index) {
    assert(t->wb);
    mvcc_t *m = t->m;
    atomic_fetch_add(&m->size_pending, (uint64_t)t->bytes);
    mvcc_meta_t mt = m->meta;
    mt.applied_index = index;
    mt.rev = mvcc_txn_rev(t);
    int64_t keys = m->keys >= 0 ? m->keys + keys_delta(t) : -1;
    if (m->grp.active) {
        group_add(m, t, mt.rev);
        m->meta = mt;
        m->keys = keys;
        if (m->grp.ov.n_events >= GROUP_MAX_EVENTS || m->grp.bytes >= GROUP_MAX_BYTES)
            return mvcc_group_flush(m);
        return MVCC_OK;
    }
    meta_put(t->wb, &mt, keys);
    int rc = db_write(m, t->wb, 1);
    if (rc != MVCC_OK) return rc;
    m->meta = mt;
    m->keys = keys;
    publish_meta(m);
    if (t->ov.n_events && m->options.on_events)
        m->options.on_events(m->options.events_ctx, mt.rev, t->ov.events, t->ov.n_events);
    return MVCC_OK;
}

/* ---- compaction ----
 *
 * The apply side only: record the compact revision with the applied index
 * (one write, as every apply) and wake the compactor thread
 * (mvcc_compact.c), which owns the physical deletes and their progress.
 */

static int start_compactor(mvcc_t *m, int64_t legacy_done, char *err, size_t errlen) {
    int64_t target = -1;
    if (mvcc_compactor_open(m->db, m->meta.compact_rev, legacy_done, &m->compactor, &target, err, errlen) !=
        0)
        return -1;
    if (target <= m->meta.compact_rev) return 0;
    /* The compactor recorded (synced) a target the 'm' record lost in a
     * crash: reads below it must be refused, so record it again. */
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    mvcc_meta_t mt = m->meta;
    mt.compact_rev = target;
    meta_put(wb, &mt, m->keys);
    int rc = db_write(m, wb, 1);
    leveldb_writebatch_destroy(wb);
    if (rc != MVCC_OK) {
        snprintf(err, errlen, "mvcc: cannot record the compact revision");
        return -1;
    }
    m->meta = mt;
    return 0;
}

int mvcc_compact(mvcc_t *m, int64_t rev, uint64_t index) {
    if (rev <= m->meta.compact_rev) return MVCC_ERR_COMPACTED;
    if (rev > m->meta.rev) return MVCC_ERR_FUTURE_REV;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    mvcc_meta_t mt = m->meta;
    mt.applied_index = index;
    mt.compact_rev = rev;
    meta_put(wb, &mt, m->keys);
    int rc = db_write(m, wb, 0);
    leveldb_writebatch_destroy(wb);
    if (rc != MVCC_OK) return rc;
    m->meta = mt;
    publish_meta(m);
    mvcc_compactor_wake(m->compactor, rev);
    return MVCC_OK;
}

/* ---- snapshot install: replacing the whole database (mvcc_swap.h) ---- */

int mvcc_swap_store(mvcc_t *m, mvcc_swap_fn swap, void *arg, char *err, size_t errlen) {
    group_reset(m); /* entries of an unwritten group are older than the snapshot */
    pthread_mutex_lock(&m->gate_mu);
    m->swapping = 1;
    while (m->users > 0) pthread_cond_wait(&m->gate_cv, &m->gate_mu);
    for (mvcc_user_t *u = m->exports; u; u = u->next) u->invalidate(u);
    pthread_mutex_unlock(&m->gate_mu);

    db_close(m, 0); /* about to be replaced: no flush */
    int rc = swap(arg, m->dir, err, errlen);
    int orc = -1;
    if (rc != MVCC_SWAP_CRASHED) {
        char oerr[256] = "";
        orc = db_open(m, oerr, sizeof oerr);
        if (orc != 0) snprintf(err, errlen, "mvcc: cannot reopen the store after a snapshot: %s", oerr);
    }
    if (orc != 0) {
        db_close(m, 0);
        atomic_store(&m->swap_failed, 1); /* nothing can read the store: fail-stop */
    }
    pthread_mutex_lock(&m->gate_mu);
    m->swapping = 0;
    pthread_cond_broadcast(&m->gate_cv);
    pthread_mutex_unlock(&m->gate_mu);
    if (orc != 0) return MVCC_ERR_IO;
    return rc == 0 ? MVCC_OK : MVCC_ERR_IO;
}

/* ---- for mvcc_dump.c (mvcc_internal.h) ---- */

leveldb_t *mvcc_internal_db(mvcc_t *m) { return m->db; }

int mvcc_internal_meta_read(mvcc_t *m, const leveldb_readoptions_t *ro, mvcc_meta_t *mt) {
    return meta_read(m->db, ro, mt);
}

void mvcc_internal_live_drop(mvcc_t *m) { live_filter_drop(m->live); }

int mvcc_internal_write_meta(mvcc_t *m, const mvcc_meta_t *mt) {
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    meta_put(wb, mt, m->keys);
    int rc = db_write(m, wb, 1);
    leveldb_writebatch_destroy(wb);
    if (rc != MVCC_OK) return rc;
    m->meta = *mt;
    publish_meta(m);
    return MVCC_OK;
}

int mvcc_internal_write_with_meta(mvcc_t *m, leveldb_writebatch_t *wb, const mvcc_meta_t *mt, int sync) {
    live_filter_drop(m->live); /* the importer's keys did not pass mvcc_txn_put */
    meta_put(wb, mt, m->keys);
    int rc = db_write(m, wb, sync);
    if (rc != MVCC_OK) return rc;
    m->meta = *mt;
    publish_meta(m);
    return MVCC_OK;
}

mvcc_meta_t mvcc_internal_meta(mvcc_t *m) { return m->meta; }

void mvcc_internal_keys_unknown(mvcc_t *m) { m->keys = -1; }

int mvcc_internal_count_keys(mvcc_t *m) {
    char err[256];
    if (count_live_keys(m, err, sizeof err) == 0) return MVCC_OK;
    fprintf(stderr, "%s\n", err);
    return MVCC_ERR_IO;
}
