/*
 * live_filter.c: the filter of keys that may be alive and its builder
 * thread (live_filter.h says why the answers are exact).
 *
 * States, all changed on the apply side: no filter; a build running into
 * `next` (puts go to `next` and to `cur`, if any); `cur` answering. A
 * finished build replaces `cur` at the next tick. A build's scan reads the
 * 'l' keys ('l' | esc(key) | 00 01, mvcc_keys.h) of its snapshot, turns
 * each back into the user key and adds it; a read error fails the build
 * (logged; the store runs on without the filter, and the next tick tries
 * again). A filter holding more keys than it was sized for still answers
 * (more "maybe"s) while a larger one is built.
 */
#include "live_filter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key_filter.h"
#include "mvcc_keys.h"

enum { BUILD_RUNNING, BUILD_DONE, BUILD_FAILED };

#define MIN_KEYS 65536
#define CANCEL_EVERY 4096 /* keys scanned between looks at the cancel flag */

typedef struct build {
    leveldb_t *db;
    const leveldb_snapshot_t *snap;
    key_filter_t *f;
    uint64_t scanned;
    pthread_t thread;
    atomic_int cancel;
    atomic_int state;
    pthread_mutex_t mu; /* for live_filter_wait_build */
    pthread_cond_t cv;
} build_t;

struct live_filter {
    key_filter_t *cur;     /* answering, or NULL */
    uint64_t cur_keys;     /* keys added to cur */
    build_t *build;        /* running or finished, not yet taken */
    uint64_t build_new;    /* new keys added to the build's filter meanwhile */
    uint64_t last_scanned; /* keys the last finished build's scan found */
    _Atomic int ready;
    _Atomic uint64_t builds, skipped, capacity, keys;
};

live_filter_t *live_filter_new(void) { return calloc(1, sizeof(live_filter_t)); }

static void build_finish(build_t *b, int state) {
    pthread_mutex_lock(&b->mu);
    atomic_store(&b->state, state);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* The user key of an 'l' key, into *buf (grown as needed). */
static size_t unescape(const uint8_t *lk, size_t lklen, uint8_t **buf, size_t *cap) {
    size_t n = lklen - 3; /* without 'l' and 00 01 */
    if (n > *cap) {
        uint8_t *p = realloc(*buf, n);
        if (!p) abort();
        *buf = p;
        *cap = n;
    }
    return unescape_into(*buf, lk + 1, n);
}

static void *build_main(void *arg) {
    build_t *b = arg;
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(ro, b->snap);
    leveldb_readoptions_set_fill_cache(ro, 0);
    leveldb_readoptions_set_verify_checksums(ro, 1);
    leveldb_iterator_t *it = leveldb_create_iterator(b->db, ro);
    uint8_t *key = NULL;
    size_t cap = 0;
    const char space = MVCC_SPACE_LIVE;
    int state = BUILD_DONE;
    for (leveldb_iter_seek(it, &space, 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen;
        const uint8_t *k = (const uint8_t *)leveldb_iter_key(it, &klen);
        if (klen == 0 || k[0] != MVCC_SPACE_LIVE) break;
        if (klen < 3) continue; /* not a key of ours: the store's checks report it */
        size_t n = unescape(k, klen, &key, &cap);
        key_filter_add(b->f, key_filter_hash(key, n));
        if (++b->scanned % CANCEL_EVERY == 0 && atomic_load(&b->cancel)) {
            state = BUILD_FAILED;
            break;
        }
    }
    char *err = NULL;
    leveldb_iter_get_error(it, &err);
    if (err) {
        fprintf(stderr, "mvcc: building the live-key filter: %s (running without it)\n", err);
        leveldb_free(err);
        state = BUILD_FAILED;
    }
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    free(key);
    build_finish(b, state);
    return NULL;
}

/* Ends a build: cancelled if still running, joined, freed with its filter
 * unless *taken gets it. */
static void build_end(live_filter_t *lf, key_filter_t **taken) {
    build_t *b = lf->build;
    if (!b) return;
    atomic_store(&b->cancel, 1);
    pthread_join(b->thread, NULL);
    leveldb_release_snapshot(b->db, b->snap);
    if (taken && atomic_load(&b->state) == BUILD_DONE) {
        *taken = b->f;
        lf->cur_keys = b->scanned + lf->build_new;
        lf->last_scanned = b->scanned;
    } else {
        key_filter_free(b->f);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
    lf->build = NULL;
    lf->build_new = 0;
}

static void build_start(live_filter_t *lf, leveldb_t *db, uint64_t keys) {
    build_t *b = calloc(1, sizeof *b);
    if (!b) return;
    b->f = key_filter_new(keys);
    if (!b->f) {
        free(b);
        return;
    }
    b->db = db;
    b->snap = leveldb_create_snapshot(db);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    atomic_init(&b->state, BUILD_RUNNING);
    if (pthread_create(&b->thread, NULL, build_main, b) != 0) {
        leveldb_release_snapshot(db, b->snap);
        key_filter_free(b->f);
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cv);
        free(b);
        return;
    }
    lf->build = b;
    lf->build_new = 0;
}

void live_filter_tick(live_filter_t *lf, leveldb_t *db, int64_t live_keys) {
    if (!lf) return;
    if (lf->build && atomic_load(&lf->build->state) != BUILD_RUNNING) {
        key_filter_t *f = NULL;
        build_end(lf, &f);
        if (f) {
            key_filter_free(lf->cur);
            lf->cur = f;
            atomic_store(&lf->capacity, key_filter_capacity(f));
            atomic_store(&lf->keys, lf->cur_keys);
            atomic_fetch_add(&lf->builds, 1);
            atomic_store(&lf->ready, 1);
        }
    }
    if (lf->build) return;
    if (lf->cur && lf->cur_keys <= key_filter_capacity(lf->cur)) return;
    /* Twice the keys alive, not twice the keys added: under churn (keys
     * created and deleted) cur_keys grows without bound, the live ones do
     * not. The last scan's count guards a live-key count that is short. */
    uint64_t want = live_keys >= 0 ? (uint64_t)live_keys : lf->cur_keys;
    if (want < lf->last_scanned) want = lf->last_scanned;
    want *= 2;
    build_start(lf, db, want < MIN_KEYS ? MIN_KEYS : want);
}

void live_filter_drop(live_filter_t *lf) {
    if (!lf) return;
    build_end(lf, NULL);
    key_filter_free(lf->cur);
    lf->cur = NULL;
    lf->cur_keys = 0;
    atomic_store(&lf->ready, 0);
}

void live_filter_free(live_filter_t *lf) {
    live_filter_drop(lf);
    free(lf);
}

void live_filter_add(live_filter_t *lf, const uint8_t *key, size_t len, int is_new) {
    if (!lf || (!lf->cur && !lf->build)) return;
    uint64_t h = key_filter_hash(key, len);
    if (lf->cur) {
        key_filter_add(lf->cur, h);
        if (is_new) atomic_store(&lf->keys, ++lf->cur_keys);
    }
    if (lf->build) {
        key_filter_add(lf->build->f, h);
        if (is_new) lf->build_new++;
    }
}

int live_filter_may_be_live(live_filter_t *lf, uint64_t hash) {
    if (!lf || !lf->cur) return 1;
    if (key_filter_may_contain(lf->cur, hash)) return 1;
    atomic_fetch_add_explicit(&lf->skipped, 1, memory_order_relaxed);
    return 0;
}

void live_filter_stats(live_filter_t *lf, live_filter_stats_t *out) {
    memset(out, 0, sizeof *out);
    if (!lf) return;
    out->ready = atomic_load(&lf->ready);
    out->builds = atomic_load(&lf->builds);
    out->skipped = atomic_load(&lf->skipped);
    out->capacity = atomic_load(&lf->capacity);
    out->keys = atomic_load(&lf->keys);
}

void live_filter_wait_build(live_filter_t *lf) {
    build_t *b = lf ? lf->build : NULL;
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    while (atomic_load(&b->state) == BUILD_RUNNING) pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}
