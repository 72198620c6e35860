/*
 * svc_watch.c: the etcd Watch service (/etcdserverpb.Watch/Watch), a thin
 * adapter between gRPC and the watch hub (watch_hub.h).
 *
 * Owns: the hub, the store hook that turns each applied revision into a
 * watch_batch (apply thread) and posts it to the loop, one svc_stream per
 * Watch call (its call reference and hub stream), the WatchRequest decoding
 * and the WatchResponse encoding (fragments included), the pass, progress
 * and drain timers, and the history read the hub uses for catch-up
 * (storage/kv_history.c).
 *
 * Replies follow etcd 3.4's v3rpc/watch.go: created {header rev, watch_id,
 * created} (a failed create: {watch_id -1, created, canceled,
 * cancel_reason}); cancel {watch_id, canceled} only for a known id;
 * progress_request answered {watch_id -1, header rev} once the stream is
 * caught up (3.5's rule); compaction {header rev 0, compact_revision,
 * canceled}. A client half-close leaves the stream open, as in etcd.
 *
 * Backpressure: a stream whose call has more than STREAM_HIGH_WATER bytes
 * queued refuses deliveries (the hub moves its watchers to unsynced, to be
 * caught up from storage); a drain timer polls blocked streams and resumes
 * them below STREAM_LOW_WATER.
 *
 * Catch-up windows longer than the hub's sync tail are read on a reader
 * thread (hist_job_*: kv_history into a batch) and handed back with
 * watch_hub_history_done. A revision whose post fails is marked missed
 * (w->missed) and the loop hands the mark to the hub (on the next post and
 * on a 100 ms timer), so it is caught up from storage, never dropped.
 *
 * Threads: watch_on_events runs on the apply thread and only builds and
 * posts a batch; hist_job_run on a reader; everything else on the loop.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "auth_check.h"
#include "log.h"
#include "readers.h"
#include "services.h"
#include "watch_hub.h"

enum {
    STREAM_HIGH_WATER = 4 * 1024 * 1024,
    STREAM_LOW_WATER = 1024 * 1024,
    DRAIN_POLL_MS = 5,
    MISSED_POLL_MS = 100,
    /* --max-watchers-per-stream's default: far above what kube-apiserver
     * puts on one stream (one per resource with the watch cache). */
    SVC_WATCH_MAX_WATCHERS = 100000,
};

typedef struct svc_stream svc_stream_t;

typedef struct svc_watch {
    server_t *s;
    watch_hub_t *hub; /* NULL until start */
    loop_timer_t *pass_timer;
    loop_timer_t *progress_timer;
    loop_timer_t *drain_timer;
    svc_stream_t *streams;  /* every open stream */
    watch_event_t *scratch; /* history conversion buffer */
    size_t scratch_cap;
    /* Watchers in the hub, published by the loop after every create (the
     * only change that raises it) and cancel/close, read by the apply thread:
     * while it is 0 a revision's events are not copied at all. */
    _Atomic size_t n_watchers;
    /* Highest revision whose post to the loop failed (apply thread writes,
     * watch_missed_note); the loop applies it with watch_hub_check_missed. */
    _Atomic int64_t missed;
    loop_timer_t *missed_timer;
} svc_watch_t;

struct svc_stream {
    svc_watch_t *w;
    grpc_call_t *call; /* one reference held */
    watch_stream_t *hs;
    int blocked; /* refused a delivery; waiting for drain */
    svc_stream_t *prev, *next;
};

/* ---- apply thread: revision batches ---- */

static void kv_to_watch(const Mvccpb__KeyValue *kv, watch_kv_t *out) {
    out->key = kv->key.data;
    out->key_len = kv->key.len;
    out->value = kv->value.data;
    out->value_len = kv->value.len;
    out->create_revision = kv->create_revision;
    out->mod_revision = kv->mod_revision;
    out->version = kv->version;
    out->lease = kv->lease;
}

/* etcd's watch server reads prev_kv at rev - 1: when an earlier change of
 * the same revision replaced the key (txn put then delete), use the version
 * that change replaced. */
static const Mvccpb__KeyValue *prev_at_rev_minus_1(int64_t rev, const mvcc_event_t *evs, size_t i) {
    const Mvccpb__KeyValue *prev = evs[i].prev_kv;
    while (prev && prev->mod_revision == rev) {
        const Mvccpb__KeyValue *earlier = NULL;
        for (size_t j = 0; j < i; j++) {
            if (evs[j].kv == prev) {
                earlier = evs[j].prev_kv;
                i = j;
                break;
            }
        }
        prev = earlier;
        if (!earlier) break;
    }
    return prev;
}

typedef struct posted {
    svc_watch_t *w;
    watch_batch_t *b;
    int elided; /* b holds no events: nobody was watching */
} posted_t;

static void posted_run(void *arg) {
    posted_t *p = arg;
    watch_hub_t *hub = p->w->hub;
    if (hub) watch_hub_check_missed(hub, &p->w->missed);
    /* Revisions applied before start are covered by the hub's start
     * revision; later ones arrive in order. */
    if (hub && p->b->revision > watch_hub_revision(hub)) {
        if (p->elided)
            watch_hub_notify_elided(hub, p->b->revision);
        else
            watch_hub_notify_batch(hub, p->b);
    }
    watch_batch_unref(p->b);
    free(p);
}

int svc_watch_stats(server_t *s, watch_hub_stats_t *out) {
    svc_watch_t *w = s->watch;
    if (!w || !w->hub) return -1;
    watch_hub_get_stats(w->hub, out);
    return 0;
}

/* Loop thread: publish the hub's watcher count for the apply thread. */
static void publish_watchers(svc_watch_t *w) {
    atomic_store(&w->n_watchers, w->hub ? watch_hub_watchers(w->hub) : 0);
}

static void watch_on_events(void *ctx, int64_t rev, const mvcc_event_t *evs, size_t n) {
    svc_watch_t *w = ctx;
    watch_batch_t *b = watch_batch_new(rev);
    posted_t *p = malloc(sizeof(*p));
    if (!b || !p) {
        log_error("watch: out of memory for revision %lld", (long long)rev);
        abort(); /* a lost revision would silently break every watcher */
    }
    /* Nobody watching: post the revision without copying its events; a
     * watcher created meanwhile catches it up from storage (the revision is
     * committed before this hook runs). */
    p->elided = atomic_load(&w->n_watchers) == 0;
    for (size_t i = 0; i < n && !p->elided; i++) {
        watch_kv_t kv, prev;
        kv_to_watch(evs[i].kv, &kv);
        const Mvccpb__KeyValue *pkv = prev_at_rev_minus_1(rev, evs, i);
        if (pkv) kv_to_watch(pkv, &prev);
        int type = evs[i].type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? WATCH_DELETE : WATCH_PUT;
        if (watch_batch_add(b, type, &kv, pkv ? &prev : NULL) != 0) {
            log_error("watch: out of memory for revision %lld", (long long)rev);
            abort();
        }
    }
    p->w = w;
    p->b = b;
    if (loop_post(w->s->loop, posted_run, p) != 0) {
        /* Not silently lost: the loop finds the mark (on the next post or
         * the missed timer) and every watcher that expects rev catches up
         * from storage, where rev is already committed. */
        watch_missed_note(&w->missed, rev);
        watch_batch_unref(b);
        free(p);
    }
}

/* ---- encoding ---- */

static void fill_kv(Mvccpb__KeyValue *out, const watch_kv_t *kv) {
    mvccpb__key_value__init(out);
    out->key.data = (uint8_t *)kv->key;
    out->key.len = kv->key_len;
    out->value.data = (uint8_t *)kv->value;
    out->value.len = kv->value_len;
    out->create_revision = kv->create_revision;
    out->mod_revision = kv->mod_revision;
    out->version = kv->version;
    out->lease = kv->lease;
}

/* Packs r's events [from, to) with the given fragment flag and sends it.
 * Returns 0 or -1 (out of memory: the response is dropped and logged). */
static int send_response(svc_watch_t *w, grpc_call_t *call, const watch_resp_t *r, size_t from, size_t to,
                         int fragment) {
    kv_header_info_t info;
    server_header_info(w->s, &info);
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = info.cluster_id;
    hdr.member_id = info.member_id;
    hdr.raft_term = info.raft_term;
    hdr.revision = r->revision;
    Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    resp.header = &hdr;
    resp.watch_id = r->watch_id;
    resp.compact_revision = r->compact_revision;
    resp.canceled = r->canceled != 0;
    resp.fragment = fragment != 0;
    size_t n = to - from;
    Mvccpb__Event *evs = NULL, **evp = NULL;
    Mvccpb__KeyValue *kvs = NULL;
    if (n > 0) {
        evs = malloc(n * sizeof(*evs));
        evp = malloc(n * sizeof(*evp));
        kvs = malloc(2 * n * sizeof(*kvs));
        if (!evs || !evp || !kvs) {
            free(evs);
            free(evp);
            free(kvs);
            log_error("watch: out of memory encoding a response");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            const watch_event_t *ev = r->events[from + i];
            mvccpb__event__init(&evs[i]);
            evs[i].type =
                ev->type == WATCH_DELETE ? MVCCPB__EVENT__EVENT_TYPE__DELETE : MVCCPB__EVENT__EVENT_TYPE__PUT;
            fill_kv(&kvs[2 * i], &ev->kv);
            evs[i].kv = &kvs[2 * i];
            if (r->prev_kv && ev->has_prev) {
                fill_kv(&kvs[2 * i + 1], &ev->prev);
                evs[i].prev_kv = &kvs[2 * i + 1];
            }
            evp[i] = &evs[i];
        }
    }
    resp.n_events = n;
    resp.events = evp;
    size_t len = etcdserverpb__watch_response__get_packed_size(&resp);
    uint8_t *buf = malloc(len ? len : 1);
    int rc = -1;
    if (buf) {
        etcdserverpb__watch_response__pack(&resp, buf);
        grpc_call_send_owned(call, buf, len, free); /* packed once, not copied again */
        rc = 0;
    } else {
        log_error("watch: out of memory encoding a response");
    }
    free(evs);
    free(evp);
    free(kvs);
    return rc;
}

/* etcd's sendFragments: only when the watcher asked for it, the response
 * has more than one event and is at least --max-request-bytes + 512 KiB
 * (the watch server's limit includes gRPC's overhead allowance). */
static void send_maybe_fragmented(svc_watch_t *w, grpc_call_t *call, const watch_resp_t *r) {
    /* etcd: maxRequestBytes = --max-request-bytes + grpcOverheadBytes */
    size_t max = grpc_server_max_request_bytes(w->s->grpc) + 512 * 1024;
    if (!r->fragment || r->n_events < 2) {
        send_response(w, call, r, 0, r->n_events, 0);
        return;
    }
    size_t base = 0, total = 0;
    {
        /* the response without events, fragment set (etcd sizes it so) */
        Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        kv_header_info_t info;
        server_header_info(w->s, &info);
        hdr.cluster_id = info.cluster_id;
        hdr.member_id = info.member_id;
        hdr.raft_term = info.raft_term;
        hdr.revision = r->revision;
        Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
        resp.header = &hdr;
        resp.watch_id = r->watch_id;
        resp.compact_revision = r->compact_revision;
        resp.canceled = r->canceled != 0;
        base = etcdserverpb__watch_response__get_packed_size(&resp);
        total = base;
        resp.fragment = 1;
        base = etcdserverpb__watch_response__get_packed_size(&resp);
    }
    for (size_t i = 0; i < r->n_events; i++) total += watch_event_wire_size(r->events[i], r->prev_kv);
    if (total < max) {
        send_response(w, call, r, 0, r->n_events, 0);
        return;
    }
    size_t start = 0;
    while (start < r->n_events) {
        size_t end = watch_fragment_end(r, start, base, max);
        assert(end > start);
        send_response(w, call, r, start, end, end < r->n_events);
        start = end;
    }
}

/* ---- hub callbacks ---- */

static void drain_fire(loop_t *loop, void *arg);

static void arm_drain(svc_watch_t *w) {
    if (!w->drain_timer) w->drain_timer = loop_timer_add(w->s->loop, DRAIN_POLL_MS, drain_fire, w);
}

static void drain_fire(loop_t *loop, void *arg) {
    (void)loop;
    svc_watch_t *w = arg;
    w->drain_timer = NULL;
    int still_blocked = 0;
    for (svc_stream_t *st = w->streams; st; st = st->next) {
        if (!st->blocked) continue;
        if (grpc_call_is_closed(st->call) || grpc_call_send_queued(st->call) <= STREAM_LOW_WATER) {
            st->blocked = 0;
            watch_hub_stream_writable(w->hub, st->hs);
        } else {
            still_blocked = 1;
        }
    }
    if (still_blocked) arm_drain(w);
}

static int hub_deliver(void *stream_ctx, const watch_resp_t *r) {
    svc_stream_t *st = stream_ctx;
    svc_watch_t *w = st->w;
    if (grpc_call_is_closed(st->call)) return WATCH_ACCEPTED; /* on_cancel closes the hub stream */
    if (grpc_call_send_queued(st->call) > STREAM_HIGH_WATER) {
        st->blocked = 1;
        arm_drain(w);
        return WATCH_FULL;
    }
    send_maybe_fragmented(w, st->call, r);
    return WATCH_ACCEPTED;
}

typedef struct history_conv {
    svc_watch_t *w;
    watch_emit_fn emit;
    void *emit_arg;
} history_conv_t;

static void mkv_to_watch(const Mvccpb__KeyValue *kv, watch_kv_t *out) { kv_to_watch(kv, out); }

static int history_event(void *arg, int64_t rev, const mvcc_event_t *evs, size_t n) {
    history_conv_t *c = arg;
    svc_watch_t *w = c->w;
    if (n > w->scratch_cap) {
        size_t cap = n < 64 ? 64 : n * 2;
        watch_event_t *v = realloc(w->scratch, cap * sizeof(*v));
        if (!v) return 1;
        w->scratch = v;
        w->scratch_cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        watch_event_t *e = &w->scratch[i];
        memset(e, 0, sizeof(*e));
        e->type = evs[i].type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? WATCH_DELETE : WATCH_PUT;
        mkv_to_watch(evs[i].kv, &e->kv);
        if (evs[i].prev_kv) {
            e->has_prev = 1;
            mkv_to_watch(evs[i].prev_kv, &e->prev);
        }
    }
    return c->emit(c->emit_arg, rev, w->scratch, n);
}

static int hub_history(void *ctx, const watch_history_req_t *req, watch_emit_fn emit, void *emit_arg,
                       int64_t *compact_rev) {
    svc_watch_t *w = ctx;
    history_conv_t c = {.w = w, .emit = emit, .emit_arg = emit_arg};
    int rc = kv_history(w->s->mvcc, req->key, req->key_len, req->range_end, req->range_end_len, req->from_rev,
                        req->to_rev, req->prev_kv, history_event, &c, compact_rev);
    if (rc == KV_HISTORY_OK) return WATCH_OK;
    if (rc == KV_HISTORY_COMPACTED) return WATCH_ERR_COMPACTED;
    return WATCH_ERR_HISTORY;
}

/* ---- catch-up reads on a reader thread ---- */

typedef struct hist_job {
    reader_job_t job; /* first: the job is the read */
    svc_watch_t *w;
    watch_read_t *rd;   /* the hub's token */
    uint8_t *key, *end; /* copies (one block) */
    size_t key_len, end_len;
    int64_t from, to;
    int prev_kv;
    size_t max_bytes;   /* the read stops after the revision that reaches it */
    watch_batch_t *acc; /* every event of the window (its revision: the window's end) */
    int rc;
    int64_t compact_rev;
} hist_job_t;

/* Reader thread: copy one revision's events into the job's batch. */
static int hist_job_event(void *arg, int64_t rev, const mvcc_event_t *evs, size_t n) {
    hist_job_t *j = arg;
    for (size_t i = 0; i < n; i++) {
        watch_kv_t kv, prev;
        kv_to_watch(evs[i].kv, &kv);
        if (evs[i].prev_kv) kv_to_watch(evs[i].prev_kv, &prev);
        int type = evs[i].type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? WATCH_DELETE : WATCH_PUT;
        if (watch_batch_add(j->acc, type, &kv, evs[i].prev_kv ? &prev : NULL) != 0) {
            j->rc = WATCH_ERR_HISTORY;
            return 1;
        }
    }
    if (j->max_bytes && j->acc->bytes >= j->max_bytes && rev < j->to) {
        j->acc->revision = rev; /* the window ends here; the hub reads on from rev + 1 */
        return 1;
    }
    return 0;
}

static void hist_job_run(reader_job_t *job) {
    hist_job_t *j = (hist_job_t *)job;
    int rc = kv_history(j->w->s->mvcc, j->key, j->key_len, j->end, j->end_len, j->from, j->to, j->prev_kv,
                        hist_job_event, j, &j->compact_rev);
    if (j->rc != WATCH_OK) return;
    j->rc = rc == KV_HISTORY_OK          ? WATCH_OK
            : rc == KV_HISTORY_COMPACTED ? WATCH_ERR_COMPACTED
                                         : WATCH_ERR_HISTORY;
}

static void hist_job_done(reader_job_t *job, int status) {
    hist_job_t *j = (hist_job_t *)job;
    int rc = status == READER_DONE ? j->rc : WATCH_ERR_HISTORY;
    if (j->w->hub) watch_hub_history_done(j->w->hub, j->rd, rc, j->acc, j->compact_rev);
    watch_batch_unref(j->acc);
    free(j->key);
    free(j);
}

static int hub_history_async(void *ctx, const watch_history_req_t *req, watch_read_t *rd) {
    svc_watch_t *w = ctx;
    if (!w->s->readers) return WATCH_ERR_HISTORY; /* read on the loop */
    hist_job_t *j = calloc(1, sizeof(*j));
    uint8_t *mem = malloc(req->key_len + req->range_end_len + 1);
    watch_batch_t *acc = watch_batch_new(req->to_rev);
    if (!j || !mem || !acc) {
        free(j);
        free(mem);
        watch_batch_unref(acc);
        return WATCH_ERR_NOMEM;
    }
    memcpy(mem, req->key, req->key_len);
    if (req->range_end_len) memcpy(mem + req->key_len, req->range_end, req->range_end_len);
    *j = (hist_job_t){.job = {.run = hist_job_run, .done = hist_job_done},
                      .w = w,
                      .rd = rd,
                      .key = mem,
                      .key_len = req->key_len,
                      .end = req->range_end_len ? mem + req->key_len : NULL,
                      .end_len = req->range_end_len,
                      .from = req->from_rev,
                      .to = req->to_rev,
                      .prev_kv = req->prev_kv,
                      .max_bytes = req->max_bytes,
                      .acc = acc};
    if (readers_submit(w->s->readers, &j->job) != READERS_OK) {
        watch_batch_unref(acc);
        free(mem);
        free(j);
        return WATCH_ERR_NOMEM; /* read on the loop instead */
    }
    return WATCH_OK;
}

static void missed_fire(loop_t *loop, void *arg) {
    svc_watch_t *w = arg;
    w->missed_timer = NULL;
    watch_hub_check_missed(w->hub, &w->missed);
    w->missed_timer = loop_timer_add(loop, MISSED_POLL_MS, missed_fire, w);
}

static void pass_fire(loop_t *loop, void *arg) {
    (void)loop;
    svc_watch_t *w = arg;
    w->pass_timer = NULL;
    watch_hub_run_pass(w->hub);
}

static void hub_schedule(void *ctx, uint64_t delay_ms) {
    svc_watch_t *w = ctx;
    if (!w->pass_timer) w->pass_timer = loop_timer_add(w->s->loop, delay_ms, pass_fire, w);
}

static void progress_fire(loop_t *loop, void *arg) {
    svc_watch_t *w = arg;
    w->progress_timer = NULL;
    watch_hub_progress_tick(w->hub);
    w->progress_timer = loop_timer_add(loop, watch_hub_progress_interval_ms(w->hub), progress_fire, w);
}

/* ---- streams ---- */

static void stream_close(svc_stream_t *st) {
    svc_watch_t *w = st->w;
    if (st->hs) {
        watch_hub_stream_close(w->hub, st->hs);
        publish_watchers(w);
    }
    if (st->prev)
        st->prev->next = st->next;
    else
        w->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    grpc_call_set_user(st->call, NULL, NULL);
    grpc_call_unref(st->call);
    free(st);
}

static svc_stream_t *stream_open(svc_watch_t *w, grpc_call_t *call) {
    svc_stream_t *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    st->w = w;
    st->call = call;
    st->hs = watch_hub_stream_open(w->hub, st);
    if (!st->hs) {
        free(st);
        return NULL;
    }
    grpc_call_ref(call);
    grpc_call_set_user(call, st, NULL);
    st->next = w->streams;
    if (w->streams) w->streams->prev = st;
    w->streams = st;
    return st;
}

static void send_simple(svc_watch_t *w, grpc_call_t *call, int64_t watch_id, int64_t rev, int created,
                        int canceled, const char *reason) {
    kv_header_info_t info;
    server_header_info(w->s, &info);
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = info.cluster_id;
    hdr.member_id = info.member_id;
    hdr.raft_term = info.raft_term;
    hdr.revision = rev;
    Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    resp.header = &hdr;
    resp.watch_id = watch_id;
    resp.created = created != 0;
    resp.canceled = canceled != 0;
    resp.cancel_reason = reason ? (char *)reason : (char *)"";
    uint8_t small[256];
    size_t len = etcdserverpb__watch_response__get_packed_size(&resp);
    uint8_t *buf = len <= sizeof small ? small : malloc(len);
    if (!buf) return;
    etcdserverpb__watch_response__pack(&resp, buf);
    grpc_call_send(call, buf, len);
    if (buf != small) free(buf);
}

static void handle_create(svc_stream_t *st, const Etcdserverpb__WatchCreateRequest *cr) {
    svc_watch_t *w = st->w;
    const char *denied = NULL;
    static const uint8_t zero = 0;
    const uint8_t *key = cr->key.data;
    size_t key_len = cr->key.len;
    if (key_len == 0) {
        key = &zero;
        key_len = 1;
    }
    if (auth_check_range(w->s, st->call, key, key_len, cr->range_end.data, cr->range_end.len, AUTH_PERM_READ,
                         &denied) != GRPC_OK) {
        send_simple(w, st->call, -1, watch_hub_revision(w->hub), 1, 1, auth_watch_cancel_reason(denied));
        return;
    }
    /* "From now" is after every write answered so far, also one whose
     * group is not in the store (and the hub) yet: server_revision. */
    int64_t now_rev = server_revision(w->s);
    if (now_rev < watch_hub_revision(w->hub)) now_rev = watch_hub_revision(w->hub);
    watch_create_t req = {
        .key = cr->key.data,
        .key_len = cr->key.len,
        .range_end = cr->range_end.data,
        .range_end_len = cr->range_end.len,
        .start_revision = cr->start_revision > 0 || now_rev == watch_hub_revision(w->hub) ? cr->start_revision
                                                                                          : now_rev + 1,
        .watch_id = cr->watch_id,
        .prev_kv = cr->prev_kv,
        .progress_notify = cr->progress_notify,
        .fragment = cr->fragment,
    };
    for (size_t i = 0; i < cr->n_filters; i++) {
        if (cr->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT)
            req.filters |= WATCH_FILTER_NOPUT;
        else if (cr->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE)
            req.filters |= WATCH_FILTER_NODELETE;
    }
    int64_t id = -1;
    int rc = watch_hub_create(w->hub, st->hs, &req, &id);
    publish_watchers(w);
    if (rc != WATCH_OK) {
        send_simple(w, st->call, -1, watch_hub_revision(w->hub), 1, 1, watch_hub_strerror(rc));
        return;
    }
    send_simple(w, st->call, id, now_rev, 1, 0, NULL);
}

static void watch_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    svc_watch_t *w = ctx;
    if (!w) { /* stopped: the transport may still be closing connections */
        grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: server stopped");
        return;
    }
    svc_stream_t *st = grpc_call_get_user(call);
    if (!st) {
        if (server_require_leader(w->s, call) != 0) return;
        st = stream_open(w, call);
        if (!st) {
            grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
            return;
        }
    }
    Etcdserverpb__WatchRequest *req = etcdserverpb__watch_request__unpack(NULL, len, msg);
    if (!req) {
        stream_close(st);
        grpc_call_finish(call, GRPC_INTERNAL, "grpc: error unmarshalling request: unexpected EOF");
        return;
    }
    switch (req->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
        handle_create(st, req->create_request);
        break;
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST: {
        int64_t id = req->cancel_request->watch_id;
        if (watch_hub_cancel(w->hub, st->hs, id) == WATCH_OK) {
            publish_watchers(w);
            send_simple(w, call, id, watch_hub_revision(w->hub), 0, 1, NULL);
        }
        break;
    }
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
        watch_hub_request_progress(w->hub, st->hs);
        break;
    default: break;
    }
    etcdserverpb__watch_request__free_unpacked(req, NULL);
}

static void watch_cancel(grpc_call_t *call, void *ctx) {
    (void)ctx;
    svc_stream_t *st = grpc_call_get_user(call);
    if (st) stream_close(st);
}

/* ---- lifecycle ---- */

/* The method table outlives the gRPC server (grpc.h), which closes its
 * connections after svc_watch_stop: static, with ctx cleared at stop. */
static grpc_method_t watch_method = {
    .path = "/etcdserverpb.Watch/Watch",
    .client_streaming = 1,
    .server_streaming = 1,
    .on_message = watch_message,
    .on_cancel = watch_cancel,
};

/* Reload hook (a Raft snapshot replaced the store): the revisions between
 * the hub's and the new store's never came as events, so every synced
 * watcher resumes from its next revision by catch-up from the new store, as
 * after missed posts; one whose next revision is below the new compact
 * revision is canceled with etcd's compacted reply by that catch-up. */
static int watch_reload(server_t *s) {
    svc_watch_t *w = s->watch;
    if (w && w->hub) watch_hub_notify_missed(w->hub, mvcc_revision(s->mvcc));
    return 0;
}

int svc_watch_init(server_t *s, mvcc_options_t *mopts) {
    svc_watch_t *w = calloc(1, sizeof(*w));
    if (!w) return -1;
    w->s = s;
    s->watch = w;
    server_add_reload_hook(s, watch_reload);
    mopts->on_events = watch_on_events;
    mopts->events_ctx = w;
    return 0;
}

int svc_watch_start(server_t *s) {
    svc_watch_t *w = s->watch;
    if (!w) return -1;
    watch_hub_ops_t ops = {.deliver = hub_deliver,
                           .history = hub_history,
                           .history_async = hub_history_async,
                           .schedule = hub_schedule,
                           .ctx = w};
    uint64_t interval = s->cfg->watch_progress_notify_interval_ms;
    size_t max_watchers = s->cfg->max_watchers_per_stream;
    watch_hub_options_t opts = {.progress_interval_ms = interval ? interval : 600000,
                                .max_watchers_per_stream =
                                    max_watchers ? max_watchers : SVC_WATCH_MAX_WATCHERS};
    w->hub = watch_hub_new(&ops, &opts, mvcc_revision(s->mvcc));
    if (!w->hub) return -1;
    watch_method.ctx = w;
    if (grpc_server_register(s->grpc, &watch_method) != 0) return -1;
    w->progress_timer = loop_timer_add(s->loop, watch_hub_progress_interval_ms(w->hub), progress_fire, w);
    w->missed_timer = loop_timer_add(s->loop, MISSED_POLL_MS, missed_fire, w);
    return 0;
}

void svc_watch_stop(server_t *s) {
    svc_watch_t *w = s->watch;
    if (!w) return;
    loop_timer_t **timers[] = {&w->pass_timer, &w->progress_timer, &w->drain_timer, &w->missed_timer};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++) {
        if (*timers[i]) loop_timer_cancel(s->loop, *timers[i]);
        *timers[i] = NULL;
    }
    while (w->streams) stream_close(w->streams);
    if (w->hub) watch_hub_free(w->hub);
    free(w->scratch);
    free(w);
    s->watch = NULL;
    watch_method.ctx = NULL;
}
