/*
 * kv.h: the etcd KV state machine on top of the MVCC store.
 *
 * The write side applies committed Raft entries (kshim.InternalRequest) and
 * the read side answers Range and read-only Txn requests; both produce packed
 * etcd protobuf responses with full response headers, including the headers
 * of nested Txn responses. The service layer does no KV logic of its own.
 *
 * Threads: kv_apply() and mvcc_sync() only on the apply (Raft) thread;
 * kv_range(), kv_txn_readonly() and the mvcc_* getters on any thread
 * (LevelDB snapshots give each read a consistent view).
 */
#ifndef KSHIM_KV_H
#define KSHIM_KV_H

#include <stddef.h>
#include <stdint.h>

#include "kshim.pb-c.h"
#include "rpc.pb-c.h"
#include "kv.pb-c.h"

typedef struct mvcc mvcc_t;

typedef struct kv_header_info {
    uint64_t cluster_id;
    uint64_t member_id;
    uint64_t raft_term;
} kv_header_info_t;

/* The outcome of one request. On success code == 0 and resp/resp_len hold the
 * packed response message (malloc'd; the caller frees it). On failure code is
 * a gRPC status code and message etcd's exact error text (e.g. code 11,
 * "etcdserver: mvcc: required revision has been compacted"). */
typedef struct kv_result {
    int code;
    char message[160];
    uint8_t *resp;
    size_t resp_len;
    int64_t revision;        /* store revision after the request */
    int64_t physical_rev;    /* a Compact with physical: answer only once
                              * mvcc_compacted_through() >= this (0: now) */
} kv_result_t;

void kv_result_clear(kv_result_t *res);

/* One change of an applied revision, handed to mvcc_options_t.on_events.
 * kv of a DELETE carries only key and mod_revision (as etcd's events);
 * prev_kv is the version it replaced (NULL when the key did not exist). */
typedef struct mvcc_event {
    int type;                        /* MVCCPB__EVENT__EVENT_TYPE__PUT / __DELETE */
    const Mvccpb__KeyValue *kv;
    const Mvccpb__KeyValue *prev_kv;
} mvcc_event_t;

typedef struct mvcc_options {
    size_t max_txn_ops;              /* etcd --max-txn-ops, default 128 */
    uint64_t quota_backend_bytes;    /* 0: default 2 GiB, as etcd */
    /* Lease hook: does lease `id` exist? NULL means no lease exists (every
     * Put with a lease fails "requested lease not found"). Apply thread. */
    int (*lease_exists)(void *ctx, int64_t id);
    void *lease_ctx;
    /* Watch hook: called on the apply thread after the write batch of
     * revision `rev` is committed, with its events in sub-revision order.
     * The events are valid only during the call. */
    void (*on_events)(void *ctx, int64_t rev, const mvcc_event_t *evs, size_t n);
    void *events_ctx;
} mvcc_options_t;

int mvcc_open(const char *dir, const mvcc_options_t *opts, mvcc_t **out, char *err, size_t errlen);
void mvcc_close(mvcc_t *m);

uint64_t mvcc_applied_index(mvcc_t *m);      /* last applied Raft index */
int64_t mvcc_revision(mvcc_t *m);            /* current store revision (1 when empty) */
int64_t mvcc_compact_revision(mvcc_t *m);    /* 0 if never compacted */
int64_t mvcc_compacted_through(mvcc_t *m);   /* physically compacted up to here (0: nothing) */
/* 1 once a background writer of the store (the compactor) hit a storage
 * error it cannot handle: the member must stop (fail-stop). Any thread. */
int mvcc_failed(mvcc_t *m);
uint64_t mvcc_db_size(mvcc_t *m);            /* approximate bytes on disk */
/* Make everything applied so far durable (LevelDB sync write); returns the
 * applied index it covers, or 0 on error. Apply thread only. Every write is
 * synced already; this writes a pending group and the metadata once more. */
uint64_t mvcc_sync(mvcc_t *m);

/* Write groups, apply thread only: the entries applied between
 * mvcc_group_begin and mvcc_group_end (kv_apply, the lease and auth apply)
 * become ONE LevelDB write with sync=true, done by mvcc_group_end (or
 * earlier: mvcc_group_flush, which writes the group and starts a new one;
 * the store does so itself before a read it cannot answer from the group and
 * when a group is over its size bound). Until then nothing of the group is
 * visible to other threads: snapshots, mvcc_revision, mvcc_applied_index
 * and the on_events hook (which runs per revision once the write returned).
 * A failed write (MVCC_ERR_IO) stores nothing of the group. mvcc_group_abort
 * drops the group unwritten (after a fatal apply error). */
void mvcc_group_begin(mvcc_t *m);
int mvcc_group_flush(mvcc_t *m);
int mvcc_group_end(mvcc_t *m);
void mvcc_group_abort(mvcc_t *m);

/* Validation done before proposing, as etcd's API layer does: too many txn
 * ops, duplicate keys in a txn, empty key, bad ranges. Returns 0 or fills
 * res->code/message. */
int kv_validate_put(mvcc_t *m, const Etcdserverpb__PutRequest *req, kv_result_t *res);
int kv_validate_delete(mvcc_t *m, const Etcdserverpb__DeleteRangeRequest *req, kv_result_t *res);
int kv_validate_txn(mvcc_t *m, const Etcdserverpb__TxnRequest *req, kv_result_t *res);
int kv_validate_range(mvcc_t *m, const Etcdserverpb__RangeRequest *req, kv_result_t *res);

/* Apply thread. Apply the committed entry at raft index `index` (req may be
 * NULL for an empty entry: only the applied index moves). Entries at or below
 * the applied index are skipped (return 1, res untouched). Otherwise returns
 * 0 and fills res (success or an etcd error), or -1 on a storage error (a
 * failed LevelDB read or write): then nothing of the entry is recorded, the
 * applied index does not move, and the caller must stop applying
 * (fail-stop). Each call is one LevelDB write batch that includes the applied
 * index, or joins the current write group. */
int kv_apply(mvcc_t *m, uint64_t index, const Kshim__InternalRequest *req,
             const kv_header_info_t *hdr, kv_result_t *res);

/* Any thread. */
int kv_range(mvcc_t *m, const Etcdserverpb__RangeRequest *req, const kv_header_info_t *hdr,
             kv_result_t *res);
/* True if every op (recursively) is a Range: such a Txn is served as a read. */
int kv_txn_is_readonly(const Etcdserverpb__TxnRequest *req);
int kv_txn_readonly(mvcc_t *m, const Etcdserverpb__TxnRequest *req, const kv_header_info_t *hdr,
                    kv_result_t *res);

/* ---- history (storage/kv_history.c): the catch-up read for watchers ----
 *
 * kv_history calls fn once per revision in [from_rev, to_rev] that changed a
 * key of the range (etcd's range_end rules), in revision order, with that
 * revision's events of the range in sub-revision order. A PUT's kv is the
 * full version; a DELETE's kv holds the key and mod_revision only. With
 * with_prev each event's prev_kv is the key's version at rev - 1 (NULL for
 * a create or when that revision is compacted), as etcd's watch server
 * fills it. fn returns 0 to go on, non-zero to stop (then kv_history
 * returns KV_HISTORY_OK at once). Event memory is valid only during fn.
 * etcd's rule: from_rev < compact revision -> KV_HISTORY_COMPACTED with
 * *compact_rev set (a watch from exactly the compact revision is served).
 * to_rev is clamped to the store revision. Any thread. */
enum { KV_HISTORY_OK = 0, KV_HISTORY_COMPACTED = 1, KV_HISTORY_IO = -1 };
typedef int (*kv_history_fn)(void *arg, int64_t rev, const mvcc_event_t *evs, size_t n);
int kv_history(mvcc_t *m, const uint8_t *key, size_t key_len, const uint8_t *range_end,
               size_t range_end_len, int64_t from_rev, int64_t to_rev, int with_prev,
               kv_history_fn fn, void *arg, int64_t *compact_rev);

#endif
