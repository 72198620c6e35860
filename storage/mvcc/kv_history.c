/*
 * kv_history.c: the watch catch-up read (kv_history in mvcc.h).
 *
 * Owns the walk of the MVCC revision table ('r' | main | sub -> type | key,
 * see mvcc_keys.h) for a revision window, and turns each change of a watched
 * range into an etcd event: the version itself (PUT) or a key-only
 * tombstone (DELETE), plus, when asked, the previous version read at
 * rev - 1, which is what etcd's watch server does for every non-create
 * event.
 *
 * Consistency: values come from one read txn (a LevelDB snapshot) taken
 * first. The encoding is storage/mvcc_keys.h's. The revision table is
 * walked with mvcc_raw_scan on the live DB;
 * its entries at or below the snapshot revision never change except that
 * compaction deletes superseded ones, so the compaction revision is checked
 * again after the walk and a window that compaction overtook meanwhile is
 * reported as compacted, never as silently incomplete.
 *
 * The window is walked as aligned blocks of the big-endian revision (a
 * block of 256^k revisions is one prefix), so a read costs a few seeks per
 * 256-fold of the window, never a walk from revision 1.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mvcc.h"
#include "mvcc_keys.h"

typedef struct hist {
    mvcc_t *m;
    mvcc_txn_t *t;
    kv_arena_t arena;
    int arena_used;
    mvcc_range_t range;
    int with_prev;
    int64_t from, to;
    int64_t cur_rev; /* revision whose events are being collected */
    mvcc_event_t *evs;
    size_t n, cap;
    kv_history_fn fn;
    void *arg;
    int stopped;
    int io_err;
} hist_t;

/* Hands the collected revision to fn, then frees its memory. */
static void hist_flush(hist_t *h) {
    if (h->n > 0 && !h->stopped) {
        if (h->fn(h->arg, h->cur_rev, h->evs, h->n) != 0) h->stopped = 1;
    }
    h->n = 0;
    if (h->arena_used) {
        kv_arena_free(&h->arena);
        kv_arena_init(&h->arena);
        h->arena_used = 0;
    }
}

/* The version of key at revision rev, or NULL (absent, deleted, compacted). */
static const Mvccpb__KeyValue *version_at(hist_t *h, const uint8_t *key, size_t key_len, int64_t rev,
                                          int *io_err) {
    if (rev <= 0) return NULL;
    mvcc_range_t r = mvcc_range_make(key, key_len, NULL, 0);
    mvcc_kv_list_t l = {0};
    int64_t count = 0;
    h->arena_used = 1;
    int rc = mvcc_txn_range(h->t, &r, rev, 1, 0, &l, &count);
    if (rc == MVCC_ERR_IO) *io_err = 1;
    if (rc != MVCC_OK || l.n == 0) return NULL;
    return l.kvs[0];
}

/* The record of exactly (main, sub) of key: the 'k' entry, read directly so
 * a key changed twice in one revision (put then delete in a txn) still
 * yields the put. NULL if it is gone. */
static const Mvccpb__KeyValue *exact_version(hist_t *h, const uint8_t *key, size_t key_len, int64_t main,
                                             int64_t sub) {
    uint8_t *ek = malloc(mvcc_key_max(key_len));
    if (!ek) abort();
    size_t n = mvcc_key_version(ek, key, key_len, main, sub);
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    int rc = mvcc_raw_get(h->m, ek, n, &rec, &rec_len);
    free(ek);
    if (rc == MVCC_ERR_IO) h->io_err = 1;
    if (rc != MVCC_OK) return NULL;
    Mvccpb__KeyValue *kv = NULL;
    if (rec_len < REC_HDR)
        h->io_err = 1; /* a version record this short: corruption, not "gone" */
    else if (!(rec[0] & 1)) {
        h->arena_used = 1;
        kv = kv_arena_alloc(&h->arena, sizeof(*kv));
        mvccpb__key_value__init(kv);
        kv->key.data = kv_arena_dup(&h->arena, key, key_len);
        kv->key.len = key_len;
        kv->create_revision = (int64_t)get_be64(rec + 1);
        kv->version = (int64_t)get_be64(rec + 9);
        kv->lease = (int64_t)get_be64(rec + 17);
        kv->mod_revision = main;
        kv->value.len = rec_len - REC_HDR;
        kv->value.data = kv_arena_dup(&h->arena, rec + REC_HDR, kv->value.len);
    }
    free(rec);
    return kv;
}

static mvcc_event_t *hist_add(hist_t *h) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        mvcc_event_t *v = realloc(h->evs, cap * sizeof(*v));
        if (!v) abort();
        h->evs = v;
        h->cap = cap;
    }
    mvcc_event_t *ev = &h->evs[h->n++];
    memset(ev, 0, sizeof(*ev));
    return ev;
}

/* One revision-table record: 'r' | main | sub -> type | user key. Another
 * shape is corruption: an I/O error, never a revision without its change. */
static int hist_record(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    hist_t *h = arg;
    if (kl != REV_KEY_LEN || vl < 1 || v[0] > 1) {
        fprintf(stderr, "mvcc: a revision record of %zu/%zu bytes: the store is corrupt\n", kl, vl);
        h->io_err = 1;
        return 1;
    }
    int64_t main = (int64_t)get_be64(k + 1);
    if (main < h->from) return 0;
    if (main > h->to) return 1;
    if (main != h->cur_rev) {
        hist_flush(h);
        h->cur_rev = main;
    }
    if (h->stopped) return 1;
    const uint8_t *key = v + 1;
    size_t key_len = vl - 1;
    if (!mvcc_range_contains(&h->range, key, key_len)) return 0;
    int type = v[0] ? MVCCPB__EVENT__EVENT_TYPE__DELETE : MVCCPB__EVENT__EVENT_TYPE__PUT;
    int64_t sub = (int64_t)get_be64(k + 9);
    const Mvccpb__KeyValue *kv;
    if (type == MVCCPB__EVENT__EVENT_TYPE__PUT) {
        kv = exact_version(h, key, key_len, main, sub);
        if (!kv) /* compacted under the walk (reported below) or I/O error */
            return h->io_err ? 1 : 0;
    } else {
        h->arena_used = 1;
        Mvccpb__KeyValue *t = kv_arena_alloc(&h->arena, sizeof(*t));
        mvccpb__key_value__init(t);
        t->key.data = kv_arena_dup(&h->arena, key, key_len);
        t->key.len = key_len;
        t->mod_revision = main;
        kv = t;
    }
    const Mvccpb__KeyValue *prev = NULL;
    int is_create = type == MVCCPB__EVENT__EVENT_TYPE__PUT && kv->version == 1;
    if (h->with_prev && !is_create) prev = version_at(h, key, key_len, main - 1, &h->io_err);
    if (h->io_err) return 1;
    mvcc_event_t *ev = hist_add(h);
    ev->type = type;
    ev->kv = kv;
    ev->prev_kv = prev;
    return 0;
}

/* Walks [lo, hi] of the revision table as aligned prefix blocks. */
static int hist_walk(mvcc_t *m, hist_t *h, uint64_t lo, uint64_t hi) {
    while (lo <= hi && !h->stopped && !h->io_err) {
        int k = 0; /* block of 256^k revisions */
        while (k < 7) {
            uint64_t size = (uint64_t)1 << (8 * (k + 1));
            if (lo % size != 0 || lo + size - 1 > hi) break;
            k++;
        }
        uint8_t prefix[9];
        prefix[0] = MVCC_SPACE_REV;
        for (int i = 0; i < 8; i++) prefix[1 + i] = (uint8_t)(lo >> (8 * (7 - i)));
        if (mvcc_raw_scan(m, prefix, (size_t)(9 - k), hist_record, h) != MVCC_OK) return -1;
        uint64_t step = (uint64_t)1 << (8 * k);
        if (lo + step < lo) break;
        lo += step;
    }
    return h->io_err ? -1 : 0;
}

int kv_history(mvcc_t *m, const uint8_t *key, size_t key_len, const uint8_t *range_end, size_t range_end_len,
               int64_t from_rev, int64_t to_rev, int with_prev, kv_history_fn fn, void *arg,
               int64_t *compact_rev) {
    assert(fn);
    static const uint8_t zero = 0;
    if (key_len == 0) { /* etcd: an empty key means "\0" */
        key = &zero;
        key_len = 1;
    }
    hist_t h = {0};
    kv_arena_init(&h.arena);
    h.m = m;
    h.range = mvcc_range_make(key, key_len, range_end, range_end_len);
    h.with_prev = with_prev;
    h.fn = fn;
    h.arg = arg;
    h.from = from_rev > 0 ? from_rev : 1;
    h.cur_rev = -1;
    if (mvcc_txn_begin_read(m, &h.arena, &h.t) != MVCC_OK) {
        kv_arena_free(&h.arena);
        return KV_HISTORY_IO;
    }
    int64_t cr = mvcc_txn_compact_rev(h.t);
    int rc = KV_HISTORY_OK;
    if (cr > 0 && h.from < cr) {
        *compact_rev = cr;
        rc = KV_HISTORY_COMPACTED;
        goto out;
    }
    h.to = to_rev < mvcc_txn_rev(h.t) ? to_rev : mvcc_txn_rev(h.t);
    if (h.from <= h.to) {
        if (hist_walk(m, &h, (uint64_t)h.from, (uint64_t)h.to) != 0) {
            rc = KV_HISTORY_IO;
            goto out;
        }
        hist_flush(&h);
    }
    /* Compaction may have deleted records of the window during the walk. */
    int64_t cr_now = mvcc_compact_revision(m);
    if (!h.stopped && cr_now > cr && h.from < cr_now) {
        *compact_rev = cr_now;
        rc = KV_HISTORY_COMPACTED;
    }
out:
    mvcc_txn_end(h.t);
    kv_arena_free(&h.arena);
    free(h.evs);
    return rc;
}
