/*
 * watch_hub.c: the watch hub (see watch_hub.h for the model and bounds).
 *
 * Owns: streams, watchers (with copies of their key ranges), the interval
 * index of synced watchers, the per-stream lists of unsynced watchers, the
 * list of streams that need a catch-up pass, the (stream, watch_id) map, and
 * reusable notify scratch. Does not own events (borrowed per call) or the
 * stream contexts (the service's).
 *
 * Watcher states: synced (in the index, min_rev > hub revision, or a future
 * start revision) and unsynced (on its stream's unsynced list, min_rev <=
 * hub revision). min_rev is always the next revision the watcher has not
 * been given yet.
 */
#include "watch_hub.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "interval_index.h"

typedef struct watcher watcher_t;

struct watcher {
    ivx_link_t link; /* in hub->index while synced */
    watch_stream_t *stream;
    int64_t id;
    ivx_kind_t kind;
    uint8_t *key; /* normalised: never empty */
    size_t key_len;
    uint8_t *end; /* IVX_RANGE only */
    size_t end_len;
    int filters;
    int prev_kv;
    int progress_notify;
    int fragment;
    int64_t min_rev;
    int synced;
    watch_read_t *read; /* async catch-up read in flight, or NULL */
    int sent_since_tick;
    watcher_t *snext, *sprev; /* stream's watchers */
    watcher_t *unext, *uprev; /* stream's unsynced list */
    watcher_t *idnext;        /* hub id map chain */
    watcher_t *pnext, *pprev; /* hub progress_notify list */
    /* notify scratch */
    uint64_t gen;
    size_t touch_idx;
    size_t npairs;
    size_t off;
};

struct watch_stream {
    watch_hub_t *hub;
    void *ctx;
    watcher_t *watchers;
    size_t nwatchers;
    watcher_t *uhead, *utail;
    size_t nunsynced;
    size_t nreading; /* unsynced watchers with a read in flight */
    int64_t next_id;
    int blocked;
    int progress_pending;
    int in_ready;
    watch_stream_t *rnext, *rprev; /* hub ready list */
    watch_stream_t *next, *prev;   /* hub stream list */
};

typedef struct pair {
    size_t touch_idx;
    size_t ev_idx;
} pair_t;

struct watch_hub {
    watch_hub_ops_t ops;
    watch_hub_options_t opts;
    int64_t rev;
    ivx_t *index;
    watch_stream_t *streams;
    size_t nstreams;
    watch_stream_t *rhead, *rtail; /* streams a pass should look at */
    int pass_scheduled;
    int in_pass;
    int history_failed;
    int reads_full;  /* this pass reached max_async_reads */
    watcher_t **ids; /* (stream, id) -> watcher */
    size_t nids_buckets;
    size_t nwatchers;
    size_t nunsynced;
    size_t nreads; /* async reads in flight */
    watcher_t *progress_list;
    /* notify scratch */
    uint64_t gen;
    size_t cur_ev;
    pair_t *pairs;
    size_t npairs, cap_pairs;
    watcher_t **touched;
    size_t ntouched, cap_touched;
    const watch_event_t **evp;
    size_t cap_evp;
    int scratch_failed;
    /* counters */
    uint64_t matched, deliveries, refusals, history_reads, async_reads, passes;
};

struct watch_read {
    watcher_t *w;   /* NULL once the watcher is gone */
    int64_t to_rev; /* the window is [w->min_rev, to_rev] */
};

/* ---- small helpers ---- */

static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p) return -1;
    *arr = p;
    *cap = n;
    return 0;
}

static int bytes_lt(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    return c < 0 || (c == 0 && alen < blen);
}

static int watcher_matches(const watcher_t *w, const watch_event_t *ev) {
    if ((w->filters & WATCH_FILTER_NOPUT) && ev->type == WATCH_PUT) return 0;
    if ((w->filters & WATCH_FILTER_NODELETE) && ev->type == WATCH_DELETE) return 0;
    return ivx_range_contains(w->kind, w->key, w->key_len, w->end, w->end_len, ev->kv.key, ev->kv.key_len);
}

static void request_pass(watch_hub_t *hub, uint64_t delay_ms) {
    if (hub->pass_scheduled || hub->in_pass || !hub->ops.schedule) return;
    hub->pass_scheduled = 1;
    hub->ops.schedule(hub->ops.ctx, delay_ms);
}

/* ---- the ready list: streams a pass should visit ---- */

static void ready_add(watch_hub_t *hub, watch_stream_t *s) {
    if (s->in_ready || s->blocked) return;
    if (s->nunsynced > 0 && s->nunsynced == s->nreading) return; /* back when a read ends */
    s->in_ready = 1;
    s->rnext = NULL;
    s->rprev = hub->rtail;
    if (hub->rtail)
        hub->rtail->rnext = s;
    else
        hub->rhead = s;
    hub->rtail = s;
    request_pass(hub, 0);
}

static void ready_remove(watch_hub_t *hub, watch_stream_t *s) {
    if (!s->in_ready) return;
    if (s->rprev)
        s->rprev->rnext = s->rnext;
    else
        hub->rhead = s->rnext;
    if (s->rnext)
        s->rnext->rprev = s->rprev;
    else
        hub->rtail = s->rprev;
    s->rnext = s->rprev = NULL;
    s->in_ready = 0;
}

/* ---- the (stream, id) map ---- */

static size_t id_bucket(const watch_hub_t *hub, const watch_stream_t *s, int64_t id) {
    uint64_t h = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ULL ^ (uint64_t)id * 0xc2b2ae3d27d4eb4fULL;
    h ^= h >> 31;
    return h & (hub->nids_buckets - 1);
}

static watcher_t *id_find(const watch_hub_t *hub, const watch_stream_t *s, int64_t id) {
    for (watcher_t *w = hub->ids[id_bucket(hub, s, id)]; w; w = w->idnext)
        if (w->stream == s && w->id == id) return w;
    return NULL;
}

static int id_grow(watch_hub_t *hub) {
    size_t old_n = hub->nids_buckets;
    watcher_t **old = hub->ids;
    watcher_t **b = calloc(old_n * 2, sizeof(*b));
    if (!b) return -1;
    hub->ids = b;
    hub->nids_buckets = old_n * 2;
    for (size_t i = 0; i < old_n; i++) {
        watcher_t *w = old[i];
        while (w) {
            watcher_t *next = w->idnext;
            size_t j = id_bucket(hub, w->stream, w->id);
            w->idnext = b[j];
            b[j] = w;
            w = next;
        }
    }
    free(old);
    return 0;
}

static void id_insert(watch_hub_t *hub, watcher_t *w) {
    size_t j = id_bucket(hub, w->stream, w->id);
    w->idnext = hub->ids[j];
    hub->ids[j] = w;
}

static void id_remove(watch_hub_t *hub, watcher_t *w) {
    watcher_t **pp = &hub->ids[id_bucket(hub, w->stream, w->id)];
    while (*pp != w) {
        assert(*pp);
        pp = &(*pp)->idnext;
    }
    *pp = w->idnext;
}

/* ---- synced / unsynced transitions ---- */

static void unsynced_append(watch_stream_t *s, watcher_t *w) {
    w->unext = NULL;
    w->uprev = s->utail;
    if (s->utail)
        s->utail->unext = w;
    else
        s->uhead = w;
    s->utail = w;
    s->nunsynced++;
    s->hub->nunsynced++;
}

static void unsynced_unlink(watch_stream_t *s, watcher_t *w) {
    if (w->uprev)
        w->uprev->unext = w->unext;
    else
        s->uhead = w->unext;
    if (w->unext)
        w->unext->uprev = w->uprev;
    else
        s->utail = w->uprev;
    w->unext = w->uprev = NULL;
    assert(s->nunsynced > 0);
    s->nunsynced--;
    s->hub->nunsynced--;
}

/* w has been given every revision before min_rev and nothing after. */
static void make_unsynced(watch_hub_t *hub, watcher_t *w, int64_t min_rev) {
    assert(w->synced);
    ivx_remove(hub->index, &w->link);
    w->synced = 0;
    w->min_rev = min_rev;
    unsynced_append(w->stream, w);
    ready_add(hub, w->stream);
}

static int index_insert(watch_hub_t *hub, watcher_t *w) {
    return ivx_insert(hub->index, &w->link, w->kind, w->key, w->key_len, w->end, w->end_len);
}

/* Returns 0, or -1 (no memory: w stays unsynced and is retried). */
static int make_synced(watch_hub_t *hub, watcher_t *w) {
    assert(!w->synced && w->min_rev > hub->rev);
    if (index_insert(hub, w) != 0) return -1;
    unsynced_unlink(w->stream, w);
    w->synced = 1;
    return 0;
}

/* ---- delivery ---- */

static void stream_block(watch_hub_t *hub, watch_stream_t *s) {
    s->blocked = 1;
    ready_remove(hub, s);
}

static int send_resp(watch_hub_t *hub, watch_stream_t *s, const watch_resp_t *r) {
    assert(!s->blocked);
    if (hub->ops.deliver(s->ctx, r) == WATCH_ACCEPTED) {
        hub->deliveries++;
        return 0;
    }
    hub->refusals++;
    stream_block(hub, s);
    return -1;
}

static void resp_init(watch_resp_t *r, const watcher_t *w, int64_t revision) {
    memset(r, 0, sizeof(*r));
    r->watch_id = w->id;
    r->revision = revision;
    r->prev_kv = w->prev_kv;
    r->fragment = w->fragment;
}

/* A pending progress request goes out once the stream is caught up. */
static void stream_try_progress(watch_hub_t *hub, watch_stream_t *s) {
    if (!s->progress_pending || s->blocked || s->nunsynced > 0) return;
    if (s->nwatchers == 0) { /* etcd sends nothing for a stream without watchers */
        s->progress_pending = 0;
        return;
    }
    watch_resp_t r;
    memset(&r, 0, sizeof(r));
    r.watch_id = -1;
    r.revision = hub->rev;
    if (send_resp(hub, s, &r) == 0) s->progress_pending = 0;
}

/* ---- watchers ---- */

static void progress_list_add(watch_hub_t *hub, watcher_t *w) {
    w->pprev = NULL;
    w->pnext = hub->progress_list;
    if (hub->progress_list) hub->progress_list->pprev = w;
    hub->progress_list = w;
}

static void progress_list_remove(watch_hub_t *hub, watcher_t *w) {
    if (w->pprev)
        w->pprev->pnext = w->pnext;
    else
        hub->progress_list = w->pnext;
    if (w->pnext) w->pnext->pprev = w->pprev;
}

static void watcher_destroy(watch_hub_t *hub, watcher_t *w) {
    watch_stream_t *s = w->stream;
    if (w->read) { /* its result is dropped when it arrives */
        w->read->w = NULL;
        w->read = NULL;
        s->nreading--;
    }
    if (w->synced)
        ivx_remove(hub->index, &w->link);
    else
        unsynced_unlink(s, w);
    id_remove(hub, w);
    if (w->progress_notify) progress_list_remove(hub, w);
    if (w->sprev)
        w->sprev->snext = w->snext;
    else
        s->watchers = w->snext;
    if (w->snext) w->snext->sprev = w->sprev;
    s->nwatchers--;
    hub->nwatchers--;
    free(w->key);
    free(w->end);
    free(w);
}

const char *watch_hub_strerror(int err) {
    switch (err) {
    case WATCH_OK: return "";
    case WATCH_ERR_NOMEM: return "etcdserver: out of memory";
    case WATCH_ERR_DUPLICATE_ID: return "mvcc: duplicate watch ID provided on the WatchStream";
    case WATCH_ERR_EMPTY_RANGE: return "mvcc: watcher range is empty";
    case WATCH_ERR_NOT_FOUND: return "mvcc: watcher does not exist";
    case WATCH_ERR_COMPACTED: return "mvcc: required revision has been compacted";
    case WATCH_ERR_TOO_MANY: return "kshim: too many watchers on this stream (--max-watchers-per-stream)";
    default: return "mvcc: watch history read failed";
    }
}

/* etcd's normalisation: empty key = "\0"; range_end "" = one key, "\0" = no
 * upper bound. */
static int watcher_set_range(watcher_t *w, const watch_create_t *req) {
    static const uint8_t zero = 0;
    const uint8_t *key = req->key_len ? req->key : &zero;
    size_t key_len = req->key_len ? req->key_len : 1;
    if (req->range_end_len == 0)
        w->kind = IVX_KEY;
    else if (req->range_end_len == 1 && req->range_end[0] == 0)
        w->kind = IVX_FROM;
    else if (bytes_lt(key, key_len, req->range_end, req->range_end_len))
        w->kind = IVX_RANGE;
    else
        return WATCH_ERR_EMPTY_RANGE;
    w->key = malloc(key_len);
    if (!w->key) return WATCH_ERR_NOMEM;
    memcpy(w->key, key, key_len);
    w->key_len = key_len;
    if (w->kind == IVX_RANGE) {
        w->end = malloc(req->range_end_len);
        if (!w->end) return WATCH_ERR_NOMEM;
        memcpy(w->end, req->range_end, req->range_end_len);
        w->end_len = req->range_end_len;
    }
    return WATCH_OK;
}

static int64_t next_auto_id(const watch_hub_t *hub, watch_stream_t *s) {
    while (id_find(hub, s, s->next_id)) s->next_id++;
    return s->next_id++;
}

int watch_hub_create(watch_hub_t *hub, watch_stream_t *s, const watch_create_t *req, int64_t *id_out) {
    if (req->watch_id != 0 && id_find(hub, s, req->watch_id)) return WATCH_ERR_DUPLICATE_ID;
    if (hub->opts.max_watchers_per_stream && s->nwatchers >= hub->opts.max_watchers_per_stream)
        return WATCH_ERR_TOO_MANY;
    watcher_t *w = calloc(1, sizeof(*w));
    if (!w) return WATCH_ERR_NOMEM;
    int rc = watcher_set_range(w, req);
    if (rc == WATCH_OK && hub->nwatchers + 1 > hub->nids_buckets && id_grow(hub) != 0) rc = WATCH_ERR_NOMEM;
    if (rc != WATCH_OK) {
        free(w->key);
        free(w);
        return rc;
    }
    w->stream = s;
    w->filters = req->filters;
    w->prev_kv = req->prev_kv != 0;
    w->progress_notify = req->progress_notify != 0;
    w->fragment = req->fragment != 0;
    int synced = req->start_revision <= 0 || req->start_revision > hub->rev;
    if (synced) {
        w->min_rev = req->start_revision > hub->rev + 1 ? req->start_revision : hub->rev + 1;
        if (index_insert(hub, w) != 0) {
            free(w->key);
            free(w->end);
            free(w);
            return WATCH_ERR_NOMEM;
        }
        w->synced = 1;
    } else {
        w->min_rev = req->start_revision;
        unsynced_append(s, w);
        ready_add(hub, s);
    }
    w->id = req->watch_id != 0 ? req->watch_id : next_auto_id(hub, s);
    id_insert(hub, w);
    w->snext = s->watchers;
    if (s->watchers) s->watchers->sprev = w;
    s->watchers = w;
    s->nwatchers++;
    hub->nwatchers++;
    if (w->progress_notify) progress_list_add(hub, w);
    *id_out = w->id;
    return WATCH_OK;
}

int watch_hub_cancel(watch_hub_t *hub, watch_stream_t *s, int64_t watch_id) {
    watcher_t *w = id_find(hub, s, watch_id);
    if (!w) return WATCH_ERR_NOT_FOUND;
    watcher_destroy(hub, w);
    if (s->progress_pending) ready_add(hub, s); /* the pass may now answer it */
    return WATCH_OK;
}

/* ---- hub and streams ---- */

watch_hub_t *watch_hub_new(const watch_hub_ops_t *ops, const watch_hub_options_t *opts, int64_t current_rev) {
    assert(ops && ops->deliver && ops->history);
    watch_hub_t *hub = calloc(1, sizeof(*hub));
    if (!hub) return NULL;
    hub->ops = *ops;
    if (opts) hub->opts = *opts;
    if (hub->opts.chunk_revisions <= 0) hub->opts.chunk_revisions = 1000;
    if (hub->opts.chunk_bytes == 0) hub->opts.chunk_bytes = 1 << 20;
    if (hub->opts.max_watchers_per_pass == 0) hub->opts.max_watchers_per_pass = 128;
    if (hub->opts.retry_delay_ms == 0) hub->opts.retry_delay_ms = 100;
    if (hub->opts.progress_interval_ms == 0) hub->opts.progress_interval_ms = 600000;
    if (hub->opts.sync_tail_revisions <= 0) hub->opts.sync_tail_revisions = 64;
    if (hub->opts.max_async_reads == 0) hub->opts.max_async_reads = 32;
    hub->rev = current_rev;
    hub->index = ivx_new(0x6b7368696d);
    hub->nids_buckets = 64;
    hub->ids = calloc(hub->nids_buckets, sizeof(*hub->ids));
    if (!hub->index || !hub->ids) {
        watch_hub_free(hub);
        return NULL;
    }
    return hub;
}

void watch_hub_free(watch_hub_t *hub) {
    if (!hub) return;
    while (hub->streams) watch_hub_stream_close(hub, hub->streams);
    ivx_free(hub->index);
    free(hub->ids);
    free(hub->pairs);
    free(hub->touched);
    free(hub->evp);
    free(hub);
}

int64_t watch_hub_revision(const watch_hub_t *hub) { return hub->rev; }

uint64_t watch_hub_progress_interval_ms(const watch_hub_t *hub) { return hub->opts.progress_interval_ms; }

watch_stream_t *watch_hub_stream_open(watch_hub_t *hub, void *stream_ctx) {
    watch_stream_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->hub = hub;
    s->ctx = stream_ctx;
    s->next = hub->streams;
    if (hub->streams) hub->streams->prev = s;
    hub->streams = s;
    hub->nstreams++;
    return s;
}

void watch_hub_stream_close(watch_hub_t *hub, watch_stream_t *s) {
    while (s->watchers) watcher_destroy(hub, s->watchers);
    ready_remove(hub, s);
    if (s->prev)
        s->prev->next = s->next;
    else
        hub->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    hub->nstreams--;
    free(s);
}

void watch_hub_stream_writable(watch_hub_t *hub, watch_stream_t *s) {
    if (!s->blocked) return;
    s->blocked = 0;
    if (s->nunsynced > 0 || s->progress_pending) ready_add(hub, s);
}

/* ---- notify ---- */

static void collect_match(void *arg, ivx_link_t *link) {
    watch_hub_t *hub = arg;
    watcher_t *w = (watcher_t *)((char *)link - offsetof(watcher_t, link));
    if (hub->scratch_failed) return;
    if (w->gen != hub->gen) {
        if (grow((void **)&hub->touched, &hub->cap_touched, hub->ntouched + 1, sizeof(*hub->touched)) != 0) {
            hub->scratch_failed = 1;
            return;
        }
        w->gen = hub->gen;
        w->touch_idx = hub->ntouched;
        w->npairs = 0;
        hub->touched[hub->ntouched++] = w;
    }
    if (grow((void **)&hub->pairs, &hub->cap_pairs, hub->npairs + 1, sizeof(*hub->pairs)) != 0) {
        hub->scratch_failed = 1;
        return;
    }
    hub->pairs[hub->npairs].touch_idx = w->touch_idx;
    hub->pairs[hub->npairs].ev_idx = hub->cur_ev;
    hub->npairs++;
    w->npairs++;
}

/* Keep the events w wants (filters), in place. */
static size_t filter_events(const watcher_t *w, const watch_event_t **evp, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (watcher_matches(w, evp[i])) evp[k++] = evp[i];
    return k;
}

static void notify_watcher(watch_hub_t *hub, watcher_t *w, int64_t rev) {
    if (w->min_rev > rev) return; /* starts at a later revision */
    const watch_event_t **evp = hub->evp + w->off;
    size_t k = filter_events(w, evp, w->npairs);
    if (k == 0) return;
    if (w->stream->blocked) {
        make_unsynced(hub, w, rev);
        return;
    }
    watch_resp_t r;
    resp_init(&r, w, rev);
    r.events = evp;
    r.n_events = k;
    if (send_resp(hub, w->stream, &r) == 0) {
        w->min_rev = rev + 1;
        w->sent_since_tick = 1;
    } else {
        make_unsynced(hub, w, rev);
    }
}

/* Out of memory for scratch: every synced watcher the revision may concern
 * falls back to catch-up, so nothing is lost. */
static void notify_degrade(watch_hub_t *hub, int64_t rev) {
    for (watch_stream_t *s = hub->streams; s; s = s->next)
        for (watcher_t *w = s->watchers; w; w = w->snext)
            if (w->synced && w->min_rev <= rev) make_unsynced(hub, w, rev);
}

void watch_hub_notify(watch_hub_t *hub, int64_t rev, const watch_event_t *events, size_t n) {
    assert(rev > hub->rev);
    hub->rev = rev;
    if (n == 0) return;
    hub->gen++;
    hub->npairs = 0;
    hub->ntouched = 0;
    hub->scratch_failed = 0;
    for (size_t i = 0; i < n; i++) {
        hub->cur_ev = i;
        ivx_stab(hub->index, events[i].kv.key, events[i].kv.key_len, collect_match, hub);
    }
    if (!hub->scratch_failed && grow((void **)&hub->evp, &hub->cap_evp, hub->npairs, sizeof(*hub->evp)) != 0)
        hub->scratch_failed = 1;
    if (hub->scratch_failed) {
        notify_degrade(hub, rev);
        return;
    }
    hub->matched += hub->npairs;
    /* Counting sort of the pairs by watcher, keeping event order. */
    size_t off = 0;
    for (size_t t = 0; t < hub->ntouched; t++) {
        watcher_t *w = hub->touched[t];
        w->off = off;
        off += w->npairs;
        w->npairs = 0;
    }
    for (size_t p = 0; p < hub->npairs; p++) {
        watcher_t *w = hub->touched[hub->pairs[p].touch_idx];
        hub->evp[w->off + w->npairs++] = &events[hub->pairs[p].ev_idx];
    }
    for (size_t t = 0; t < hub->ntouched; t++) notify_watcher(hub, hub->touched[t], rev);
}

void watch_hub_notify_batch(watch_hub_t *hub, const watch_batch_t *b) {
    watch_hub_notify(hub, b->revision, b->events, b->n);
}

void watch_hub_notify_elided(watch_hub_t *hub, int64_t rev) {
    assert(rev > hub->rev);
    hub->rev = rev;
    notify_degrade(hub, rev);
}

void watch_hub_notify_missed(watch_hub_t *hub, int64_t to_rev) {
    if (to_rev <= hub->rev) return;
    int64_t first = hub->rev + 1;
    hub->rev = to_rev;
    /* A synced watcher's next revision is >= first: keep it, so it catches
     * up from exactly there. */
    for (watch_stream_t *s = hub->streams; s; s = s->next)
        for (watcher_t *w = s->watchers; w; w = w->snext)
            if (w->synced && w->min_rev <= to_rev)
                make_unsynced(hub, w, w->min_rev > first ? w->min_rev : first);
}

void watch_missed_note(_Atomic int64_t *missed, int64_t rev) {
    int64_t cur = atomic_load(missed);
    while (cur < rev && !atomic_compare_exchange_weak(missed, &cur, rev)) {
    }
}

void watch_hub_check_missed(watch_hub_t *hub, _Atomic int64_t *missed) {
    int64_t m = atomic_load(missed);
    if (m > hub->rev) watch_hub_notify_missed(hub, m);
}

size_t watch_hub_watchers(const watch_hub_t *hub) { return hub->nwatchers; }

/* ---- catch-up ---- */

/* Catch-up sends one response per watcher per history read holding every
 * matching event of the window, as etcd's syncWatchers does (it batches up
 * to 1000 revisions per response), but ends the window early once the
 * response holds chunk_bytes (to_rev moves back to that revision): events
 * are copied into a batch because history's memory lives only during emit. */
typedef struct catchup {
    watch_hub_t *hub;
    watcher_t *w;
    int64_t to_rev; /* the window's end; lowered when the response is full */
    watch_batch_t *acc;
    int stopped; /* out of memory: nothing of the window is sent */
} catchup_t;

static int catchup_emit(void *arg, int64_t rev, const watch_event_t *events, size_t n) {
    catchup_t *c = arg;
    watch_hub_t *hub = c->hub;
    watcher_t *w = c->w;
    if (c->stopped) return 1;
    if (rev < w->min_rev || rev > c->to_rev) return 0; /* not asked for: never a duplicate */
    for (size_t i = 0; i < n; i++) {
        const watch_event_t *ev = &events[i];
        if (!watcher_matches(w, ev)) continue;
        if (watch_batch_add(c->acc, ev->type, &ev->kv, ev->has_prev ? &ev->prev : NULL) != 0) {
            c->stopped = 1; /* retried on a later pass */
            hub->history_failed = 1;
            return 1;
        }
    }
    if (c->acc->bytes >= hub->opts.chunk_bytes && rev < c->to_rev) {
        c->to_rev = rev; /* full: the rest of the window is read next time */
        return 1;
    }
    return 0;
}

/* Sends the accumulated events as one response. 0, or -1 if refused. */
static int catchup_flush(watch_hub_t *hub, watcher_t *w, const watch_batch_t *acc) {
    if (acc->n == 0) return 0;
    if (grow((void **)&hub->evp, &hub->cap_evp, acc->n, sizeof(*hub->evp)) != 0) {
        hub->history_failed = 1;
        return -1;
    }
    for (size_t i = 0; i < acc->n; i++) hub->evp[i] = &acc->events[i];
    watch_resp_t r;
    resp_init(&r, w, hub->rev);
    r.events = hub->evp;
    r.n_events = acc->n;
    if (send_resp(hub, w->stream, &r) != 0) return -1;
    w->sent_since_tick = 1;
    return 0;
}

static void history_req(const watch_hub_t *hub, const watcher_t *w, int64_t to, watch_history_req_t *req) {
    static const uint8_t zero = 0;
    *req = (watch_history_req_t){.key = w->key,
                                 .key_len = w->key_len,
                                 .from_rev = w->min_rev,
                                 .to_rev = to,
                                 .prev_kv = w->prev_kv,
                                 .max_bytes = hub->opts.chunk_bytes};
    if (w->kind == IVX_RANGE) {
        req->range_end = w->end;
        req->range_end_len = w->end_len;
    } else if (w->kind == IVX_FROM) {
        req->range_end = &zero;
        req->range_end_len = 1;
    }
}

/* The compaction reply; the watcher is removed once it is accepted. */
static void catchup_compacted(watch_hub_t *hub, watcher_t *w, int64_t compact_rev) {
    watch_resp_t r;
    resp_init(&r, w, 0); /* etcd's compaction reply has header revision 0 */
    r.compact_revision = compact_rev;
    r.canceled = 1;
    if (send_resp(hub, w->stream, &r) == 0) watcher_destroy(hub, w);
}

/* Starts an async read of [min_rev, to] for w: 1 if started, 0 to read
 * here, -1 to wait (max_async_reads in flight: a finishing read asks for
 * the next pass). */
static int catch_up_async(watch_hub_t *hub, watcher_t *w, int64_t to) {
    if (!hub->ops.history_async || to - w->min_rev + 1 <= hub->opts.sync_tail_revisions) return 0;
    if (hub->nreads >= hub->opts.max_async_reads) {
        hub->reads_full = 1;
        return -1;
    }
    watch_read_t *rd = calloc(1, sizeof(*rd));
    if (!rd) return 0;
    rd->w = w;
    rd->to_rev = to;
    watch_history_req_t req;
    history_req(hub, w, to, &req);
    if (hub->ops.history_async(hub->ops.ctx, &req, rd) != WATCH_OK) {
        free(rd);
        return 0;
    }
    w->read = rd;
    w->stream->nreading++;
    hub->nreads++;
    hub->history_reads++;
    hub->async_reads++;
    return 1;
}

static void catch_up(watch_hub_t *hub, watcher_t *w) {
    assert(!w->synced && !w->stream->blocked && !w->read);
    if (w->min_rev <= hub->rev) {
        int64_t to = hub->rev;
        if (to - w->min_rev + 1 > hub->opts.chunk_revisions) to = w->min_rev + hub->opts.chunk_revisions - 1;
        if (catch_up_async(hub, w, to) != 0) return;
        watch_history_req_t req;
        history_req(hub, w, to, &req);
        catchup_t c = {.hub = hub, .w = w, .to_rev = to, .acc = watch_batch_new(to)};
        if (!c.acc) {
            hub->history_failed = 1;
            return;
        }
        int64_t compact_rev = 0;
        hub->history_reads++;
        int rc = hub->ops.history(hub->ops.ctx, &req, catchup_emit, &c, &compact_rev);
        if (rc == WATCH_ERR_COMPACTED) {
            watch_batch_unref(c.acc);
            catchup_compacted(hub, w, compact_rev);
            return;
        }
        if (rc != WATCH_OK) {
            watch_batch_unref(c.acc);
            hub->history_failed = 1;
            return;
        }
        int refused = c.stopped || catchup_flush(hub, w, c.acc) != 0;
        watch_batch_unref(c.acc);
        if (refused) return; /* nothing of the window was delivered: re-read later */
        w->min_rev = c.to_rev + 1;
    }
    if (w->min_rev > hub->rev && make_synced(hub, w) != 0) hub->history_failed = 1;
}

int watch_hub_run_pass(watch_hub_t *hub) {
    hub->pass_scheduled = 0;
    hub->in_pass = 1;
    hub->history_failed = 0;
    hub->reads_full = 0;
    hub->passes++;
    size_t budget = hub->opts.max_watchers_per_pass;
    while (budget > 0 && hub->rhead) {
        watch_stream_t *s = hub->rhead;
        ready_remove(hub, s);
        if (s->nunsynced > s->nreading) {
            watcher_t *w = s->uhead;
            while (w->read) { /* round robin within the stream, skipping reads in flight */
                unsynced_unlink(s, w);
                unsynced_append(s, w);
                w = s->uhead;
            }
            unsynced_unlink(s, w);
            unsynced_append(s, w);
            catch_up(hub, w);
            budget--;
        }
        if (s->blocked) continue; /* back on the list when writable */
        if (s->nunsynced > 0)
            ready_add(hub, s); /* round robin across streams */
        else
            stream_try_progress(hub, s);
        if (hub->history_failed || hub->reads_full) break;
    }
    hub->in_pass = 0;
    if (!hub->rhead) return 0;
    if (hub->reads_full && !hub->history_failed) return 1; /* watch_hub_history_done asks */
    request_pass(hub, hub->history_failed ? hub->opts.retry_delay_ms : 0);
    return 1;
}

/* Copies the events of acc that w asked for into a response-sized batch
 * and sends them; 0 (*to: the end of what was sent), or -1 if refused or
 * out of memory. acc's revisions come whole: the response ends at one. */
static int async_flush(watch_hub_t *hub, watcher_t *w, int64_t *to, const watch_batch_t *acc) {
    catchup_t c = {.hub = hub, .w = w, .to_rev = *to, .acc = watch_batch_new(*to)};
    if (!c.acc) return -1;
    for (size_t i = 0; i < acc->n && !c.stopped; i++) {
        const watch_event_t *ev = &acc->events[i];
        if (ev->kv.mod_revision > c.to_rev) break; /* the response filled up */
        int64_t rev = ev->kv.mod_revision;
        size_t j = i;
        while (j + 1 < acc->n && acc->events[j + 1].kv.mod_revision == rev) j++;
        catchup_emit(&c, rev, ev, j - i + 1);
        i = j;
    }
    int rc = c.stopped || catchup_flush(hub, w, c.acc) != 0 ? -1 : 0;
    *to = c.to_rev;
    watch_batch_unref(c.acc);
    return rc;
}

void watch_hub_history_done(watch_hub_t *hub, watch_read_t *rd, int rc, const watch_batch_t *acc,
                            int64_t compact_rev) {
    watcher_t *w = rd->w;
    int64_t to = rd->to_rev;
    if (rc == WATCH_OK && acc && acc->revision < to) to = acc->revision; /* stopped at max_bytes */
    free(rd);
    assert(hub->nreads > 0);
    hub->nreads--;
    if (!w) { /* cancelled meanwhile */
        if (hub->rhead) request_pass(hub, 0);
        return;
    }
    watch_stream_t *s = w->stream;
    w->read = NULL;
    s->nreading--;
    if (s->blocked) {
        /* re-read once writable: nothing was given */
    } else if (rc == WATCH_ERR_COMPACTED) {
        catchup_compacted(hub, w, compact_rev);
    } else if (rc != WATCH_OK || async_flush(hub, w, &to, acc) != 0) {
        if (!s->blocked) request_pass(hub, hub->opts.retry_delay_ms);
    } else {
        /* [min_rev, to] delivered; live revisions after to reached the hub
         * while w was unsynced, so w was given none of them. */
        w->min_rev = to + 1;
        if (w->min_rev > hub->rev) {
            if (make_synced(hub, w) != 0) request_pass(hub, hub->opts.retry_delay_ms);
        } else if (hub->rev - w->min_rev + 1 <= hub->opts.sync_tail_revisions) {
            catch_up(hub, w); /* the short rest, here */
        }
    }
    if (!s->blocked) {
        if (s->nunsynced > 0)
            ready_add(hub, s);
        else
            stream_try_progress(hub, s);
    }
    if (hub->rhead) request_pass(hub, 0); /* reads may have waited for this one */
}

/* ---- progress ---- */

int watch_hub_stream_caught_up(const watch_hub_t *hub, const watch_stream_t *s) {
    (void)hub;
    return s->nunsynced == 0;
}

void watch_hub_request_progress(watch_hub_t *hub, watch_stream_t *s) {
    s->progress_pending = 1;
    stream_try_progress(hub, s);
}

void watch_hub_progress_tick(watch_hub_t *hub) {
    for (watcher_t *w = hub->progress_list; w; w = w->pnext) {
        if (w->synced && !w->sent_since_tick && !w->stream->blocked) {
            watch_resp_t r;
            resp_init(&r, w, hub->rev);
            send_resp(hub, w->stream, &r);
        }
        w->sent_since_tick = 0;
    }
}

/* ---- wire sizes and fragments ---- */

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t bytes_field(size_t len) { return len ? 1 + varint_size(len) + len : 0; }

static size_t int_field(int64_t v) { return v ? 1 + varint_size((uint64_t)v) : 0; }

static size_t kv_size(const watch_kv_t *kv) {
    return bytes_field(kv->key_len) + int_field(kv->create_revision) + int_field(kv->mod_revision) +
           int_field(kv->version) + bytes_field(kv->value_len) + int_field(kv->lease);
}

size_t watch_event_wire_size(const watch_event_t *ev, int with_prev) {
    size_t kvs = kv_size(&ev->kv);
    size_t n = int_field(ev->type) + 1 + varint_size(kvs) + kvs;
    if (with_prev && ev->has_prev) {
        size_t ps = kv_size(&ev->prev);
        n += 1 + varint_size(ps) + ps;
    }
    return 1 + varint_size(n) + n; /* WatchResponse field 11 */
}

size_t watch_fragment_end(const watch_resp_t *r, size_t start, size_t base_size, size_t max_bytes) {
    size_t size = base_size;
    for (size_t i = start; i < r->n_events; i++) {
        size += watch_event_wire_size(r->events[i], r->prev_kv);
        if (i > start && size >= max_bytes) return i;
    }
    return r->n_events;
}

/* ---- revision batches ---- */

watch_batch_t *watch_batch_new(int64_t revision) {
    watch_batch_t *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->revision = revision;
    b->refs = 1;
    return b;
}

/* Copies a kv's bytes into *p (advancing it) and points copy at them. */
static void kv_copy(watch_kv_t *copy, const watch_kv_t *kv, uint8_t **p) {
    *copy = *kv;
    copy->key = *p;
    if (kv->key_len) memcpy(*p, kv->key, kv->key_len);
    *p += kv->key_len;
    copy->value = *p;
    if (kv->value_len) memcpy(*p, kv->value, kv->value_len);
    *p += kv->value_len;
}

int watch_batch_add(watch_batch_t *b, int type, const watch_kv_t *kv, const watch_kv_t *prev) {
    if (grow((void **)&b->events, &b->cap, b->n + 1, sizeof(*b->events)) != 0) return -1;
    size_t len = kv->key_len + kv->value_len + (prev ? prev->key_len + prev->value_len : 0);
    uint8_t *mem = malloc(len ? len : 1); /* one block per event, found again at kv.key */
    if (!mem) return -1;
    b->bytes += len;
    watch_event_t *ev = &b->events[b->n];
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    uint8_t *p = mem;
    kv_copy(&ev->kv, kv, &p);
    if (prev) {
        ev->has_prev = 1;
        kv_copy(&ev->prev, prev, &p);
    }
    assert(ev->kv.key == mem);
    b->n++;
    return 0;
}

void watch_batch_ref(watch_batch_t *b) { b->refs++; }

void watch_batch_unref(watch_batch_t *b) {
    if (!b) return;
    assert(b->refs > 0);
    if (--b->refs > 0) return;
    for (size_t i = 0; i < b->n; i++) free((void *)b->events[i].kv.key);
    free(b->events);
    free(b);
}

/* ---- statistics ---- */

void watch_hub_get_stats(const watch_hub_t *hub, watch_hub_stats_t *out) {
    ivx_stats_t is;
    ivx_get_stats(hub->index, &is);
    memset(out, 0, sizeof(*out));
    out->index_visits = is.visits;
    out->matched = hub->matched;
    out->deliveries = hub->deliveries;
    out->refusals = hub->refusals;
    out->history_reads = hub->history_reads;
    out->async_reads = hub->async_reads;
    out->passes = hub->passes;
    out->streams = hub->nstreams;
    out->watchers = hub->nwatchers;
    out->unsynced = hub->nunsynced;
    out->synced = hub->nwatchers - hub->nunsynced;
}

void watch_hub_reset_counters(watch_hub_t *hub) {
    ivx_reset_visit_stats(hub->index);
    hub->matched = hub->deliveries = hub->refusals = hub->history_reads = hub->async_reads = hub->passes = 0;
}
