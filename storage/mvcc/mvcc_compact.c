/*
 * mvcc_compact.c: the background compactor of the MVCC store (see
 * mvcc_compact.h). Owns its thread, the progress record and the physical
 * deletion of superseded versions.
 *
 * Progress record ('c', its own LevelDB key, written only here):
 *   done(8) | run_target(8) | pos_main(8) | pos_sub(8)
 * Every superseded version <= done is gone. While run_target > done, a run
 * over the window (done, run_target] is in progress and its next revision
 * record is at or after (pos_main, pos_sub). No 'c' record: nothing was
 * ever compacted physically (or an old store: the compact_done of its
 * 32-byte 'm' record).
 *
 * A run over (D, C] walks the revision table ('r' | main | sub -> type |
 * key) from D+1 to C once. Each record is one version (main, sub) of a key
 * K; with v_n = the newest version of K with main <= C:
 *   - a version other than v_n is deleted ('k' and 'r' entries);
 *   - v_n itself is deleted if it is a tombstone, and at v_n (the last
 *     record of K in the window) the one version of K at or below D that an
 *     earlier run kept, v0, is deleted as well: K changed after D, so v0 is
 *     superseded.
 * v_n is found with one seek to K|~C and cached per run (a bounded table, so
 * a key is looked up once per run unless the run touches more keys than the
 * table holds). v_n is never deleted before its own record is processed, so
 * the seek always lands on it directly, and the cost of a run is
 * O(records in the window) = O(versions removed + keys kept), never a walk
 * over a key's older versions per record.
 *
 * Batches: at most `batch` records (and deletes) per batch, each batch one
 * LevelDB write with sync=true that holds its deletes and the new progress
 * record, then a short pause (etcd: 1,000 per batch, 10 ms). A key with more
 * versions than a batch is simply split over batches: the position is a
 * revision record, not a key. Each batch reads through a fresh iterator, so
 * it sees the deletes of the batches before it; within a batch nothing reads
 * what the batch deleted (v_n is deleted last, and v0 sits below D).
 *
 * Why this may run beside the apply thread without locks:
 *   - the compactor deletes only versions with main <= C that are superseded
 *     at C (or tombstones that are the newest at C, with everything older);
 *     apply only adds versions above the current revision >= C and writes
 *     'm', 'l' and side tables, which the compactor never touches; each side
 *     writes disjoint keys and LevelDB serializes the writes.
 *   - the compact revision is recorded (and published) by apply before the
 *     compactor is woken, so no new read at a revision below C starts; a
 *     read at >= C never needs a deleted version (the newest version <= R
 *     of every key is kept, or is a tombstone whose removal leaves the key
 *     absent either way). Reads that started earlier use LevelDB snapshots.
 *   - the watch catch-up reads the revision table on the live database and
 *     re-checks the compact revision after its walk (kv_history.c).
 */
#include "mvcc_compact.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "failpoint.h"
#include "mvcc_keys.h"

#define PROGRESS_LEN 32
#define DEFAULT_BATCH 1000
#define DEFAULT_PAUSE_MS 10
#define CACHE_SLOTS 16384 /* power of two; cleared when half full */

static const char PROGRESS_KEY[1] = {MVCC_SPACE_COMPACT};

/* v_n of one key in the current run. */
typedef struct newest {
    uint64_t hash;
    uint8_t *key; /* malloc, NULL: free slot */
    size_t key_len;
    int found; /* the key has a version <= C */
    int64_t main, sub;
    int tombstone;
} newest_t;

/* The run in progress (compactor thread only). */
typedef struct run {
    int active;
    int64_t from;              /* D: compacted through here before the run */
    int64_t target;            /* C */
    int64_t pos_main, pos_sub; /* next revision record to process */
    newest_t *cache;           /* CACHE_SLOTS entries */
    size_t cache_used;
} run_t;

struct mvcc_compactor {
    leveldb_t *db;
    failpoint_t fp_error; /* mvcc_compact_error (failpoint.h) */
    leveldb_readoptions_t *ro;
    leveldb_writeoptions_t *wo_sync;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t wake;     /* new target, stop, release */
    pthread_cond_t progress; /* done moved, or the thread stopped/held */
    int stop;
    _Atomic int failed; /* a batch hit a storage error: stopped */
    int64_t target;     /* compact revision to reach (under mu) */
    int64_t hold_after; /* batches until a test hold, < 0 never (under mu) */
    int held;
    _Atomic int64_t done;
    _Atomic size_t batch;
    _Atomic unsigned pause_ms;
    _Atomic uint64_t n_batches, n_records, n_keys, n_deleted;
    run_t run;
    uint8_t *buf; /* scratch for encoded keys */
    size_t buf_cap;
    int corrupt; /* this batch met a record that does not decode (compactor thread) */
};

/* ---- small helpers ---- */

static uint8_t *scratch(mvcc_compactor_t *c, size_t n) {
    if (n > c->buf_cap) {
        size_t cap = n < 256 ? 256 : n * 2;
        uint8_t *p = realloc(c->buf, cap);
        if (!p) abort();
        c->buf = p;
        c->buf_cap = cap;
    }
    return c->buf;
}

static uint64_t key_hash(const uint8_t *k, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= k[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void cache_clear(run_t *r) {
    if (!r->cache) return;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        free(r->cache[i].key);
        r->cache[i].key = NULL;
    }
    r->cache_used = 0;
}

/* The slot of key (found or free). */
static newest_t *cache_slot(run_t *r, const uint8_t *key, size_t key_len, uint64_t h) {
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        newest_t *e = &r->cache[i];
        if (!e->key || (e->hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)) return e;
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
}

static void timespec_after_ms(struct timespec *ts, unsigned ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* ---- the progress record ---- */

static void progress_put(leveldb_writebatch_t *wb, int64_t done, const run_t *r) {
    uint8_t v[PROGRESS_LEN];
    put_be64(v, (uint64_t)done);
    put_be64(v + 8, (uint64_t)(r->active ? r->target : done));
    put_be64(v + 16, (uint64_t)(r->active ? r->pos_main : 0));
    put_be64(v + 24, (uint64_t)(r->active ? r->pos_sub : 0));
    leveldb_writebatch_put(wb, PROGRESS_KEY, sizeof PROGRESS_KEY, (const char *)v, sizeof v);
}

/* Loads 'c' into c->done and c->run. 0 or -1. */
static int progress_load(mvcc_compactor_t *c, int64_t legacy_done) {
    char *err = NULL;
    size_t len = 0;
    char *v = leveldb_get(c->db, c->ro, PROGRESS_KEY, sizeof PROGRESS_KEY, &len, &err);
    if (err) {
        leveldb_free(err);
        return -1;
    }
    if (!v) {
        atomic_store(&c->done, legacy_done);
        return 0;
    }
    int rc = -1;
    if (len == PROGRESS_LEN) {
        const uint8_t *p = (const uint8_t *)v;
        int64_t done = (int64_t)get_be64(p);
        int64_t target = (int64_t)get_be64(p + 8);
        atomic_store(&c->done, done);
        if (target > done) {
            c->run.active = 1;
            c->run.from = done;
            c->run.target = target;
            c->run.pos_main = (int64_t)get_be64(p + 16);
            c->run.pos_sub = (int64_t)get_be64(p + 24);
        }
        rc = 0;
    }
    leveldb_free(v);
    return rc;
}

/* ---- one batch ---- */

static void delete_version(leveldb_writebatch_t *wb, const uint8_t *ek, size_t eklen, int64_t main,
                           int64_t sub) {
    uint8_t rk[REV_KEY_LEN];
    encode_rev_key(rk, main, sub);
    leveldb_writebatch_delete(wb, (const char *)ek, eklen);
    leveldb_writebatch_delete(wb, (const char *)rk, sizeof rk);
}

/* Seeks kit to the newest version of the key with prefix kp (kp_len bytes,
 * in c->buf) whose main is <= rev. Returns 1 if found (main/sub/tombstone
 * set), else 0. */
static int seek_newest(mvcc_compactor_t *c, leveldb_iterator_t *kit, size_t kp_len, int64_t rev,
                       int64_t *main, int64_t *sub, int *tombstone) {
    uint8_t *p = scratch(c, kp_len + REV_SUFFIX);
    encode_rev_seek(p + kp_len, rev);
    leveldb_iter_seek(kit, (const char *)p, kp_len + REV_SUFFIX);
    if (!leveldb_iter_valid(kit)) return 0;
    size_t eklen, reclen;
    const uint8_t *ek = (const uint8_t *)leveldb_iter_key(kit, &eklen);
    if (eklen != kp_len + REV_SUFFIX || memcmp(ek, c->buf, kp_len) != 0) return 0;
    const uint8_t *rec = (const uint8_t *)leveldb_iter_value(kit, &reclen);
    if (reclen < REC_HDR) {
        fprintf(stderr, "mvcc compactor: a version record of %zu bytes: the store is corrupt\n", reclen);
        c->corrupt = 1; /* the batch fails: never compact around it */
        return 0;
    }
    decode_rev_suffix(ek, eklen, main, sub);
    *tombstone = rec[0] & 1;
    return 1;
}

/* v_n of key in this run: from the cache, else one seek. */
static const newest_t *newest_of(mvcc_compactor_t *c, leveldb_iterator_t *kit, const uint8_t *key,
                                 size_t key_len) {
    run_t *r = &c->run;
    uint64_t h = key_hash(key, key_len);
    newest_t *e = cache_slot(r, key, key_len, h);
    if (e->key) return e;
    if (r->cache_used >= CACHE_SLOTS / 2) {
        cache_clear(r);
        e = cache_slot(r, key, key_len, h);
    }
    e->key = malloc(key_len ? key_len : 1);
    if (!e->key) abort();
    if (key_len) memcpy(e->key, key, key_len);
    e->key_len = key_len;
    e->hash = h;
    r->cache_used++;
    size_t kp_len = mvcc_key_prefix(scratch(c, mvcc_key_max(key_len)), MVCC_SPACE_KEY, key, key_len);
    e->found = seek_newest(c, kit, kp_len, r->target, &e->main, &e->sub, &e->tombstone);
    atomic_fetch_add(&c->n_keys, 1);
    return e;
}

/* One revision record (main, sub) of key: adds its deletes to wb. Returns
 * the number of versions deleted. */
static size_t compact_record(mvcc_compactor_t *c, leveldb_iterator_t *kit, leveldb_writebatch_t *wb,
                             const uint8_t *key, size_t key_len, int64_t main, int64_t sub) {
    const newest_t *n = newest_of(c, kit, key, key_len);
    int is_newest = n->found && n->main == main && n->sub == sub;
    int tombstone = n->tombstone;
    size_t deleted = 0;
    uint8_t *ek = scratch(c, mvcc_key_max(key_len));
    size_t eklen = mvcc_key_version(ek, key, key_len, main, sub);
    if (!is_newest || tombstone) {
        delete_version(wb, ek, eklen, main, sub);
        deleted++;
    }
    if (is_newest && c->run.from > 0) {
        /* v0: the version an earlier run kept, superseded now */
        int64_t m0, s0;
        int t0;
        size_t kp_len = eklen - REV_SUFFIX;
        if (seek_newest(c, kit, kp_len, c->run.from, &m0, &s0, &t0)) {
            eklen = mvcc_key_version(scratch(c, mvcc_key_max(key_len)), key, key_len, m0, s0);
            delete_version(wb, c->buf, eklen, m0, s0);
            deleted++;
        }
    }
    return deleted;
}

static int iter_error(leveldb_iterator_t *it) {
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (!err) return 0;
    fprintf(stderr, "mvcc compactor: iterator: %s\n", err);
    leveldb_free(err);
    return -1;
}

/* Processes up to `batch` records of the run and writes them with the new
 * progress (sync). Returns 0 (run->active cleared when the run is over) or
 * -1 on a LevelDB error (nothing moved). */
static int run_batch(mvcc_compactor_t *c) {
    if (failpoint_hit(&c->fp_error)) {
        fprintf(stderr, "mvcc compactor: injected I/O error (failpoint mvcc_compact_error)\n");
        return -1;
    }
    run_t *r = &c->run;
    size_t limit = atomic_load(&c->batch);
    leveldb_iterator_t *rit = leveldb_create_iterator(c->db, c->ro);
    leveldb_iterator_t *kit = leveldb_create_iterator(c->db, c->ro);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    uint8_t start[REV_KEY_LEN];
    encode_rev_key(start, r->pos_main, r->pos_sub);
    leveldb_iter_seek(rit, (const char *)start, sizeof start);
    size_t records = 0, deleted = 0;
    int finished = 1;
    int64_t next_main = 0, next_sub = 0;
    while (leveldb_iter_valid(rit)) {
        size_t rklen, rvlen;
        const uint8_t *rk = (const uint8_t *)leveldb_iter_key(rit, &rklen);
        if (rklen == 0 || rk[0] != MVCC_SPACE_REV) break;
        if (rklen != REV_KEY_LEN) {
            c->corrupt = 1;
            break;
        }
        int64_t main = (int64_t)get_be64(rk + 1), sub = (int64_t)get_be64(rk + 9);
        if (main > r->target) break;
        if (records >= limit || deleted >= limit) {
            finished = 0;
            next_main = main;
            next_sub = sub;
            break;
        }
        const uint8_t *rv = (const uint8_t *)leveldb_iter_value(rit, &rvlen);
        if (rvlen < 1 || rv[0] > 1) { /* type: 0 put, 1 delete */
            c->corrupt = 1;
            break;
        }
        deleted += compact_record(c, kit, wb, rv + 1, rvlen - 1, main, sub);
        if (c->corrupt) break;
        records++;
        leveldb_iter_next(rit);
    }
    int rc = iter_error(rit) || iter_error(kit) ? -1 : 0;
    if (c->corrupt) {
        fprintf(stderr, "mvcc compactor: a revision record that does not decode: the store is corrupt\n");
        c->corrupt = 0;
        rc = -1;
    }
    leveldb_iter_destroy(kit);
    leveldb_iter_destroy(rit);
    run_t after = *r;
    if (finished) {
        after.active = 0;
    } else {
        after.pos_main = next_main;
        after.pos_sub = next_sub;
    }
    int64_t done = finished ? r->target : r->from;
    if (rc == 0) {
        progress_put(wb, done, &after);
        char *err = NULL;
        leveldb_write(c->db, c->wo_sync, wb, &err);
        if (err) {
            fprintf(stderr, "mvcc compactor: leveldb write: %s\n", err);
            leveldb_free(err);
            rc = -1;
        }
    }
    leveldb_writebatch_destroy(wb);
    if (rc != 0) return -1;
    r->active = after.active;
    r->pos_main = after.pos_main;
    r->pos_sub = after.pos_sub;
    if (!r->active) cache_clear(r);
    atomic_fetch_add(&c->n_batches, 1);
    atomic_fetch_add(&c->n_records, records);
    atomic_fetch_add(&c->n_deleted, deleted);
    atomic_store(&c->done, done);
    return 0;
}

/* ---- the thread ---- */

/* Under mu: is there a batch to run? Starts a run when the target moved. */
static int have_work(mvcc_compactor_t *c) {
    if (c->held || c->stop) return 0;
    if (c->run.active) return 1;
    int64_t done = atomic_load(&c->done);
    if (c->target <= done) return 0;
    c->run.active = 1;
    c->run.from = done;
    c->run.target = c->target;
    c->run.pos_main = done < 0 ? 0 : done + 1;
    c->run.pos_sub = 0;
    return 1;
}

static void *compactor_main(void *arg) {
    mvcc_compactor_t *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        if (!have_work(c)) {
            pthread_cond_broadcast(&c->progress);
            pthread_cond_wait(&c->wake, &c->mu);
            continue;
        }
        pthread_mutex_unlock(&c->mu);
        int rc = run_batch(c);
        pthread_mutex_lock(&c->mu);
        if (rc != 0) {
            /* A storage error the compactor cannot handle: it stops for good
             * and mvcc_compactor_failed() tells the member to stop
             * (fail-stop). The batch wrote nothing, so a restart resumes at
             * the recorded position. */
            fprintf(stderr, "mvcc compactor: storage error; compaction stopped, the member must stop\n");
            atomic_store(&c->failed, 1);
            break;
        }
        if (c->hold_after > 0 && --c->hold_after == 0) c->held = 1;
        pthread_cond_broadcast(&c->progress);
        /* the pause between batches */
        unsigned ms = atomic_load(&c->pause_ms);
        if (ms > 0 && !c->stop && (c->run.active || c->target > atomic_load(&c->done))) {
            struct timespec ts;
            timespec_after_ms(&ts, ms);
            while (!c->stop && pthread_cond_timedwait(&c->wake, &c->mu, &ts) != ETIMEDOUT) {
            }
        }
    }
    pthread_cond_broadcast(&c->progress);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- interface ---- */

int mvcc_compactor_open(leveldb_t *db, int64_t compact_rev, int64_t legacy_done, mvcc_compactor_t **out,
                        int64_t *target_out, char *err, size_t errlen) {
    mvcc_compactor_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->db = db;
    failpoint_arm(&c->fp_error, failpoint_parse(getenv(FAILPOINTS_ENV), "mvcc_compact_error"));
    c->ro = leveldb_readoptions_create();
    leveldb_readoptions_set_fill_cache(c->ro, 0);
    leveldb_readoptions_set_verify_checksums(c->ro, 1);
    c->wo_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(c->wo_sync, 1);
    c->run.cache = calloc(CACHE_SLOTS, sizeof *c->run.cache);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->progress, NULL);
    atomic_store(&c->batch, DEFAULT_BATCH);
    atomic_store(&c->pause_ms, DEFAULT_PAUSE_MS);
    c->hold_after = -1;
    if (!c->run.cache || progress_load(c, legacy_done) != 0) {
        snprintf(err, errlen, "mvcc: bad or unreadable compaction progress record");
        mvcc_compactor_close(c);
        return -1;
    }
    int64_t recorded = c->run.active ? c->run.target : atomic_load(&c->done);
    c->target = compact_rev > recorded ? compact_rev : recorded;
    *target_out = c->target;
    if (pthread_create(&c->thread, NULL, compactor_main, c) != 0) {
        snprintf(err, errlen, "mvcc: cannot start the compactor thread");
        mvcc_compactor_close(c);
        return -1;
    }
    c->thread_started = 1;
    *out = c;
    return 0;
}

void mvcc_compactor_close(mvcc_compactor_t *c) {
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_broadcast(&c->wake);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    cache_clear(&c->run);
    free(c->run.cache);
    free(c->buf);
    pthread_cond_destroy(&c->progress);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->mu);
    leveldb_writeoptions_destroy(c->wo_sync);
    leveldb_readoptions_destroy(c->ro);
    free(c);
}

void mvcc_compactor_wake(mvcc_compactor_t *c, int64_t rev) {
    pthread_mutex_lock(&c->mu);
    if (rev > c->target) c->target = rev;
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->mu);
}

int64_t mvcc_compactor_done(mvcc_compactor_t *c) { return atomic_load(&c->done); }

int mvcc_compactor_wait(mvcc_compactor_t *c, int64_t rev) {
    int rc = MVCC_OK;
    pthread_mutex_lock(&c->mu);
    while (atomic_load(&c->done) < rev) {
        if (c->stop || c->held || atomic_load(&c->failed)) {
            rc = MVCC_ERR_IO;
            break;
        }
        pthread_cond_wait(&c->progress, &c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void mvcc_compactor_stats(mvcc_compactor_t *c, mvcc_compact_stats_t *out) {
    out->batches = atomic_load(&c->n_batches);
    out->records = atomic_load(&c->n_records);
    out->keys_visited = atomic_load(&c->n_keys);
    out->versions_deleted = atomic_load(&c->n_deleted);
    out->done = atomic_load(&c->done);
}

void mvcc_compactor_set_batch(mvcc_compactor_t *c, size_t n) { atomic_store(&c->batch, n ? n : 1); }

void mvcc_compactor_set_pause_ms(mvcc_compactor_t *c, unsigned ms) { atomic_store(&c->pause_ms, ms); }

void mvcc_compactor_hold_after(mvcc_compactor_t *c, int64_t n) {
    pthread_mutex_lock(&c->mu);
    c->hold_after = n;
    c->held = n == 0;
    pthread_cond_broadcast(&c->wake);
    pthread_cond_broadcast(&c->progress);
    pthread_mutex_unlock(&c->mu);
}

int mvcc_compactor_failed(mvcc_compactor_t *c) { return atomic_load(&c->failed); }

void mvcc_compactor_arm_error(mvcc_compactor_t *c, uint64_t n) { failpoint_arm(&c->fp_error, n); }
