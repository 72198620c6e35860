/*
 * watch_hub.h: fan-out of committed revisions to etcd watchers.
 *
 * Owns every watcher and its state; knows nothing of gRPC or protobuf. The
 * Watch service (svc_watch.c) is a thin adapter: it opens one hub stream per
 * gRPC Watch call, turns create/cancel/progress requests into the calls
 * below, and encodes each watch_resp_t the hub hands to ops.deliver into a
 * WatchResponse in the call's send buffer.
 *
 * Threads: every function runs on the loop thread (events are posted to it
 * from the apply thread with loop_post and passed to watch_hub_notify),
 * except watch_missed_note (any thread). ops.history_async starts a read on
 * another thread; its result comes back through watch_hub_history_done on
 * the loop. Callbacks (deliver, history, history_async, schedule) must not
 * call back into the hub.
 *
 * The design follows etcd's watchable store (synced / unsynced / victim):
 * - synced watchers have seen every revision up to the hub's revision. They
 *   sit in an interval index (interval_index.h), so watch_hub_notify touches
 *   only the watchers whose range contains a written key: O(events * log W +
 *   matches), never O(W).
 * - unsynced watchers are behind: created with a start revision in the past,
 *   or their stream refused a delivery (the consumer was full: etcd's victim).
 *   The hub keeps no events for them; a pass (watch_hub_run_pass, driven by a
 *   loop timer through ops.schedule) reads their missing revisions back from
 *   storage with ops.history, at most chunk_revisions revisions per watcher
 *   and max_watchers_per_pass watchers per pass, and moves each one back to
 *   synced when it reaches the hub's revision. The hand-over is exact because
 *   history is read only up to the hub's revision and notify delivers only
 *   later revisions: no gap, no duplicate. Long windows may be read
 *   asynchronously (ops.history_async): the watcher stays unsynced until the
 *   result is delivered, so revisions notified meanwhile are read after it.
 * - a stream whose consumer refused a response is "blocked": the hub stops
 *   calling deliver for it (its watchers fall behind to unsynced) until the
 *   service calls watch_hub_stream_writable.
 *
 * Memory: the hub holds no event data beyond one watch_hub_notify or history
 * emit call (fan-out hands the same event structs to every watcher, nothing
 * is copied). Per stream, pending output is bounded by the consumer's
 * high-water mark plus one response (one revision for one watcher, or one
 * fragment), because deliver refuses once over the mark. Hub memory is
 * O(watchers + distinct watched ranges) plus scratch O(matches of the largest
 * revision), reused across calls.
 */
#ifndef KSHIM_WATCH_HUB_H
#define KSHIM_WATCH_HUB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- events ---- */

enum { WATCH_PUT = 0, WATCH_DELETE = 1 }; /* mvccpb.Event.EventType values */

typedef struct watch_kv {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t create_revision;
    int64_t mod_revision;
    int64_t version;
    int64_t lease;
} watch_kv_t;

/* One event of one revision. For a DELETE, kv holds the key and mod_revision
 * = the deleting revision (other fields 0), as etcd sends it. prev is the
 * key's previous value when the producer knows it (has_prev). */
typedef struct watch_event {
    int type;
    watch_kv_t kv;
    int has_prev;
    watch_kv_t prev;
} watch_event_t;

/* A revision batch: every event of one transaction, in apply order, built on
 * the apply thread and handed to the loop thread. Each event's bytes are
 * owned by the batch; the batch is reference counted (not atomically: it is
 * only shared on the loop thread) so a consumer may keep it alive. */
typedef struct watch_batch {
    int64_t revision;
    size_t n;
    size_t bytes; /* keys and values copied (watch_batch_add) */
    size_t cap;
    watch_event_t *events;
    int refs;
} watch_batch_t;

watch_batch_t *watch_batch_new(int64_t revision);
/* Copies key/value (and prev when non-NULL). Returns 0 or -1 (no memory). */
int watch_batch_add(watch_batch_t *b, int type, const watch_kv_t *kv, const watch_kv_t *prev);
void watch_batch_ref(watch_batch_t *b);
void watch_batch_unref(watch_batch_t *b);

/* ---- responses handed to the service ---- */

/* One WatchResponse. events point into memory valid only during deliver. */
typedef struct watch_resp {
    int64_t watch_id;         /* -1 for a stream-wide progress reply */
    int64_t revision;         /* header revision (0 on a compaction cancel, as etcd) */
    int64_t compact_revision; /* > 0: the watcher was compacted (canceled too) */
    int canceled;             /* the hub removed the watcher after this */
    int prev_kv;              /* encode each event's prev (when has_prev) */
    int fragment;             /* the watcher asked for fragmentation */
    const watch_event_t *const *events;
    size_t n_events; /* 0: progress notification or cancel */
} watch_resp_t;

enum {
    WATCH_ACCEPTED = 0, /* deliver queued the response */
    WATCH_FULL = 1,     /* deliver refused it (over the high-water mark) */
};

/* ---- history (the catch-up read, implemented over the MVCC revision table) ---- */

typedef struct watch_history_req {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *range_end; /* as in watch_create_t after normalisation */
    size_t range_end_len;
    int64_t from_rev; /* inclusive */
    int64_t to_rev;   /* inclusive, <= the hub's revision */
    int prev_kv;      /* the watcher wants prev values */
    /* An asynchronous read (ops.history_async) may stop after the first
     * revision that brings its batch's bytes to max_bytes (0: no bound); it
     * then sets the batch's revision to that revision, the window's end. */
    size_t max_bytes;
} watch_history_req_t;

/* history calls emit once per revision that has events in the range (it may
 * include events outside the range: the hub filters them), in increasing
 * revision order, all events of that revision in one call. emit returns 0 to
 * go on, 1 to stop (the consumer filled up): then history returns 0 at once. */
typedef int (*watch_emit_fn)(void *emit_arg, int64_t rev, const watch_event_t *events, size_t n);

enum {
    WATCH_OK = 0,
    WATCH_ERR_NOMEM = -1,
    WATCH_ERR_DUPLICATE_ID = -2,
    WATCH_ERR_EMPTY_RANGE = -3,
    WATCH_ERR_NOT_FOUND = -4,
    WATCH_ERR_COMPACTED = -5, /* history: from_rev is below the compaction point */
    WATCH_ERR_HISTORY = -6,   /* history: read failed; the hub retries later */
    WATCH_ERR_TOO_MANY = -7,  /* create: the stream has max_watchers_per_stream */
};

/* An asynchronous catch-up read in flight (ops.history_async): the hub's
 * token, handed back to watch_hub_history_done. */
typedef struct watch_read watch_read_t;

typedef struct watch_hub_ops {
    /* Queue r on the stream's consumer. Returns WATCH_ACCEPTED or WATCH_FULL. */
    int (*deliver)(void *stream_ctx, const watch_resp_t *r);
    /* Read revisions [from_rev, to_rev] for one watcher. Returns WATCH_OK,
     * WATCH_ERR_COMPACTED with *compact_rev set, or WATCH_ERR_HISTORY. */
    int (*history)(void *ctx, const watch_history_req_t *req, watch_emit_fn emit, void *emit_arg,
                   int64_t *compact_rev);
    /* Optional: start the same read on another thread and return WATCH_OK;
     * req and its bytes are valid only during the call (copy them). Later,
     * on the loop thread, the service calls watch_hub_history_done(hub, rd,
     * ...) exactly once. Any other return: the hub reads with ops.history
     * now instead. Used for windows longer than sync_tail_revisions. */
    int (*history_async)(void *ctx, const watch_history_req_t *req, watch_read_t *rd);
    /* Optional: call watch_hub_run_pass after delay_ms (a one-shot loop
     * timer). Asked for at most once until that pass runs. */
    void (*schedule)(void *ctx, uint64_t delay_ms);
    void *ctx;
} watch_hub_ops_t;

typedef struct watch_hub_options {
    int64_t chunk_revisions; /* revisions read per watcher per pass; default 1000 */
    /* ... and bytes: a catch-up response ends with the revision whose events
     * bring it to chunk_bytes (keys + values + prev); default 1 MiB. So a
     * watcher that is far behind costs O(chunk_bytes) per read, however large
     * the values in its window. */
    size_t chunk_bytes;
    size_t max_watchers_per_pass;  /* unsynced watchers served per pass; default 128 */
    uint64_t retry_delay_ms;       /* pass delay after a history error; default 100 */
    uint64_t progress_interval_ms; /* progress_notify period; default 600000 (etcd: 10 min) */
    /* With ops.history_async: windows of at most this many revisions are
     * read on the loop (ops.history), longer ones asynchronously; default 64.
     * At most max_async_reads reads are in flight; default 32. */
    int64_t sync_tail_revisions;
    size_t max_async_reads;
    /* Watchers one stream may hold (kshim --max-watchers-per-stream; etcd
     * has no limit); a create past it is WATCH_ERR_TOO_MANY. 0: no limit. */
    size_t max_watchers_per_stream;
} watch_hub_options_t;

typedef struct watch_hub watch_hub_t;
typedef struct watch_stream watch_stream_t;

/* current_rev: the store revision events will follow (notify gets > it). */
watch_hub_t *watch_hub_new(const watch_hub_ops_t *ops, const watch_hub_options_t *opts, int64_t current_rev);
void watch_hub_free(watch_hub_t *hub); /* frees every stream and watcher */

/* The last revision notified: header revision for created/cancel replies. */
int64_t watch_hub_revision(const watch_hub_t *hub);
uint64_t watch_hub_progress_interval_ms(const watch_hub_t *hub);

/* ---- streams (one per gRPC Watch call) ---- */

watch_stream_t *watch_hub_stream_open(watch_hub_t *hub, void *stream_ctx);
/* Removes every watcher of the stream; no deliver calls. */
void watch_hub_stream_close(watch_hub_t *hub, watch_stream_t *s);
/* The consumer drained below its mark: resume deliveries and catch-up. */
void watch_hub_stream_writable(watch_hub_t *hub, watch_stream_t *s);

/* ---- watchers ---- */

enum { WATCH_FILTER_NOPUT = 1, WATCH_FILTER_NODELETE = 2 };

/* A WatchCreateRequest, as received. range_end: empty = the single key,
 * "\0" = every key >= key; an empty key means "\0", as in etcd. */
typedef struct watch_create {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *range_end;
    size_t range_end_len;
    int64_t start_revision; /* 0: from the next revision */
    int64_t watch_id;       /* 0: the hub assigns one */
    int filters;            /* WATCH_FILTER_* bits */
    int prev_kv;
    int progress_notify;
    int fragment;
} watch_create_t;

/* Never delivers anything itself, so the service sends the created reply
 * (header revision = watch_hub_revision) right after and before any event.
 * Returns WATCH_OK with *id_out set, WATCH_ERR_DUPLICATE_ID,
 * WATCH_ERR_EMPTY_RANGE (key >= range_end), WATCH_ERR_TOO_MANY or
 * WATCH_ERR_NOMEM. */
int watch_hub_create(watch_hub_t *hub, watch_stream_t *s, const watch_create_t *req, int64_t *id_out);
/* WATCH_OK or WATCH_ERR_NOT_FOUND. Delivers nothing; the service replies
 * {watch_id, canceled: true}. */
int watch_hub_cancel(watch_hub_t *hub, watch_stream_t *s, int64_t watch_id);
/* etcd's error text for a hub error, for cancel_reason. */
const char *watch_hub_strerror(int err);

/* ---- writes ---- */

/* All events of revision rev (rev > watch_hub_revision; n may be 0). Each
 * matching synced watcher gets one response holding its events of rev in
 * event order, after its filters. The events are only borrowed. */
void watch_hub_notify(watch_hub_t *hub, int64_t rev, const watch_event_t *events, size_t n);
void watch_hub_notify_batch(watch_hub_t *hub, const watch_batch_t *b);
/* Revision rev (> watch_hub_revision) was applied but its events were not
 * copied, because no watcher existed when it was applied. A watcher created
 * since then that expects rev falls back to catch-up from history, so it
 * still gets rev's events, once. */
void watch_hub_notify_elided(watch_hub_t *hub, int64_t rev);
/* Revisions (watch_hub_revision, to_rev] were applied but never reached the
 * hub (their loop_post failed). Every synced watcher that expects one of
 * them becomes unsynced at its next revision and catches up from storage;
 * the hub revision becomes to_rev. No-op if to_rev <= the hub revision. */
void watch_hub_notify_missed(watch_hub_t *hub, int64_t to_rev);

/* The apply-thread side of that: note_missed records (atomically, any
 * thread) that revision rev could not be posted; check_missed (loop thread)
 * applies the highest recorded one with watch_hub_notify_missed. */
void watch_missed_note(_Atomic int64_t *missed, int64_t rev);
void watch_hub_check_missed(watch_hub_t *hub, _Atomic int64_t *missed);

/* Number of watchers on every stream. */
size_t watch_hub_watchers(const watch_hub_t *hub);

/* ---- catch-up and progress ---- */

/* One bounded catch-up pass over unsynced watchers. Returns 1 if work remains
 * (the hub has already asked ops.schedule for the next pass), 0 if idle. */
int watch_hub_run_pass(watch_hub_t *hub);

/* Loop thread: the asynchronous read rd finished. rc is WATCH_OK (acc holds
 * every event of the requested range and window, in revision order, the
 * window ending at acc->revision (see max_bytes); the hub only borrows it), WATCH_ERR_COMPACTED (compact_rev set) or another
 * error (retried later). The hand-over stays exact: the watcher was
 * unsynced during the read, so live revisions that arrived meanwhile were
 * not given to it; it continues from the window's end (on the loop when
 * the rest is short, else with another read). If the watcher went away
 * meanwhile, the result is dropped. */
void watch_hub_history_done(watch_hub_t *hub, watch_read_t *rd, int rc, const watch_batch_t *acc,
                            int64_t compact_rev);

/* True if every watcher of the stream is synced at the hub revision. */
int watch_hub_stream_caught_up(const watch_hub_t *hub, const watch_stream_t *s);
/* progress_request: delivers {watch_id -1, revision} now if the stream is
 * caught up, otherwise as soon as it is (once, however many requests came). */
void watch_hub_request_progress(watch_hub_t *hub, watch_stream_t *s);
/* The progress_notify timer (every progress_interval_ms): every synced
 * watcher with progress_notify that got nothing since the last tick gets an
 * empty response with the hub revision. */
void watch_hub_progress_tick(watch_hub_t *hub);

/* ---- fragmentation helpers for the encoder ---- */

/* Exact protobuf size of ev as a WatchResponse.events entry (tag included). */
size_t watch_event_wire_size(const watch_event_t *ev, int with_prev);
/* etcd's sendFragments rule: with base_size the encoded response without
 * events, returns the end index of the fragment starting at start (at least
 * one event; stops before the response would reach max_bytes). The service
 * fragments only when r->fragment, n_events > 1 and the whole response is
 * >= max_bytes; every fragment but the last has fragment = true. */
size_t watch_fragment_end(const watch_resp_t *r, size_t start, size_t base_size, size_t max_bytes);

/* ---- statistics ---- */

typedef struct watch_hub_stats {
    uint64_t index_visits;  /* interval-index nodes examined by notify */
    uint64_t matched;       /* (watcher, event) pairs found by notify */
    uint64_t deliveries;    /* responses accepted */
    uint64_t refusals;      /* responses refused (stream blocked) */
    uint64_t history_reads; /* ops.history and ops.history_async calls */
    uint64_t async_reads;   /* of those, ops.history_async */
    uint64_t passes;
    size_t streams;
    size_t watchers;
    size_t synced;
    size_t unsynced;
} watch_hub_stats_t;

void watch_hub_get_stats(const watch_hub_t *hub, watch_hub_stats_t *out);
void watch_hub_reset_counters(watch_hub_t *hub);

#endif
