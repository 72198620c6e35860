/*
 * mvcc.h: the multi-version store under kv.c: the bottom of storage/
 * (target kshim_mvcc; kv, lease and auth build on it).
 *
 * Owns the LevelDB database, its on-disk layout (see mvcc.c), the store
 * revision / compaction / applied-index metadata, and transactions:
 *  - a read txn is a LevelDB snapshot plus the metadata read from it;
 *  - a write txn (apply thread only) reads the live DB (the only other
 *    writer is the compactor thread, which deletes only versions at or below
 *    the compact revision that are superseded there, never one a read at the
 *    current revision needs), collects its changes in one LevelDB write batch
 *    and keeps an in-memory overlay so later reads of the same txn see its
 *    own writes;
 *  - a write group (mvcc_group_begin/_end below) collects the commits of
 *    several entries in one synced LevelDB write; the reads of its later
 *    entries see the earlier ones (a group overlay);
 *  - physical compaction runs on the compactor thread (mvcc_compact.c),
 *    started by mvcc_open and stopped by mvcc_close.
 * A LevelDB read error is MVCC_ERR_IO everywhere, never "not found".
 * kv.c turns etcd requests into these calls; nothing here knows protobuf
 * requests, only Mvccpb__KeyValue for the versions it returns.
 */
#ifndef KSHIM_MVCC_H
#define KSHIM_MVCC_H

#include <stdint.h>
#include <stddef.h>

#include "kv.pb-c.h"
#include "kv_arena.h"
#include "latency_hist.h"
#include "live_filter.h"

typedef struct mvcc mvcc_t;

/* One change of an applied revision, handed to mvcc_options_t.on_events.
 * kv of a DELETE carries only key and mod_revision (as etcd's events);
 * prev_kv is the version it replaced (NULL when the key did not exist). */
typedef struct mvcc_event {
    int type; /* MVCCPB__EVENT__EVENT_TYPE__PUT / __DELETE */
    const Mvccpb__KeyValue *kv;
    const Mvccpb__KeyValue *prev_kv;
} mvcc_event_t;

typedef struct mvcc_options {
    size_t max_txn_ops;           /* etcd --max-txn-ops, default 128 */
    uint64_t quota_backend_bytes; /* 0: default 2 GiB, as etcd */
    /* Lease hook: does lease `id` exist? NULL means no lease exists (every
     * Put with a lease fails "requested lease not found"). Apply thread. */
    int (*lease_exists)(void *ctx, int64_t id);
    void *lease_ctx;
    /* Watch hook: called on the apply thread after the write batch of
     * revision `rev` is committed, with its events in sub-revision order.
     * The events are valid only during the call. */
    void (*on_events)(void *ctx, int64_t rev, const mvcc_event_t *evs, size_t n);
    void *events_ctx;
    /* The live-key filter's first build (live_filter.h) starts at the first
     * write group this long after the store opened (0: at the first one), so
     * a member's start does not share its CPU with the scan. */
    unsigned live_filter_delay_ms;
} mvcc_options_t;

int mvcc_open(const char *dir, const mvcc_options_t *opts, mvcc_t **out, char *err, size_t errlen);
void mvcc_close(mvcc_t *m);

uint64_t mvcc_applied_index(mvcc_t *m);    /* last applied Raft index */
int64_t mvcc_revision(mvcc_t *m);          /* current store revision (1 when empty) */
int64_t mvcc_compact_revision(mvcc_t *m);  /* 0 if never compacted */
int64_t mvcc_compacted_through(mvcc_t *m); /* physically compacted up to here (0: nothing) */
/* 1 once a background writer of the store (the compactor) hit a storage
 * error it cannot handle: the member must stop (fail-stop). Any thread. */
int mvcc_failed(mvcc_t *m);
uint64_t mvcc_db_size(mvcc_t *m); /* approximate bytes on disk */

/* Counters and the commit latency for monitoring, any thread (atomics).
 * ranges/puts/deletes/txns count what callers report with mvcc_txn_count
 * (etcd's metricsTxnWrite: one per Range, Put, DeleteRange call on a txn;
 * a txn that counted more than one op is one txn), keys the live keys, and
 * commit every synced LevelDB write (latency_hist.h). */
typedef struct mvcc_stats {
    uint64_t ranges, puts, deletes, txns, keys;
    uint64_t put_bytes; /* key + value bytes of every mvcc_txn_put */
    lat_hist_snapshot_t commit;
} mvcc_stats_t;
void mvcc_stats(mvcc_t *m, mvcc_stats_t *out);
/* The live-key filter (live_filter.h): whether it answers, and the
 * single-key reads of write txns it answered without LevelDB. */
void mvcc_live_filter_stats(mvcc_t *m, live_filter_stats_t *out);
/* Tests: waits for a running build of it (the next group takes it). */
void mvcc_live_filter_wait(mvcc_t *m);
/* Single-key reads of write txns a write group's memo answered (a Txn's
 * compare, then its put or "else get", of the same key: mvcc.c). */
uint64_t mvcc_read_memo_hits(mvcc_t *m);
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


/* Errors of mvcc calls (kv.c maps them to gRPC codes and etcd's texts).
 * The code base's convention (docs/ARCHITECTURE.md): 0 is success, errors
 * are negative, one enum per layer; a stray -1 means a storage failure. */
enum {
    MVCC_OK = 0,
    MVCC_ERR_IO = -1,
    MVCC_ERR_COMPACTED = -2,
    MVCC_ERR_FUTURE_REV = -3,
    MVCC_ERR_NOT_FOUND = -4,
    MVCC_ERR_BAD_EVENT = -5, /* mvcc_import_revision: an event that does not fit its revision */
};

/* A key range as etcd's requests give it. */
enum { MVCC_RANGE_SINGLE = 0, MVCC_RANGE_TO_END = 1, MVCC_RANGE_HALF_OPEN = 2 };
typedef struct mvcc_range {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *end;
    size_t end_len;
    int kind;
} mvcc_range_t;

/* range_end as in etcd: empty = the single key, "\0" = every key >= key,
 * otherwise [key, range_end). */
mvcc_range_t mvcc_range_make(const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len);
int mvcc_range_contains(const mvcc_range_t *r, const uint8_t *key, size_t key_len);

typedef struct mvcc_meta {
    uint64_t applied_index;
    int64_t rev;         /* current revision, 1 when empty */
    int64_t compact_rev; /* -1 when never compacted (as etcd) */
} mvcc_meta_t;

typedef struct mvcc_kv_list {
    Mvccpb__KeyValue **kvs; /* arena memory */
    size_t n;
    size_t cap;
} mvcc_kv_list_t;

typedef struct mvcc_txn mvcc_txn_t;

/* Read txn on any thread: a consistent snapshot. */
int mvcc_txn_begin_read(mvcc_t *m, kv_arena_t *arena, mvcc_txn_t **out);
/* Write txn, apply thread only. */
int mvcc_txn_begin_write(mvcc_t *m, kv_arena_t *arena, mvcc_txn_t **out);
void mvcc_txn_end(mvcc_txn_t *t); /* frees; a write txn not committed is dropped */
/* One etcd-level operation on t, for mvcc_stats (the store's own reads are
 * not counted); mvcc_txn_count_end publishes what t counted as one etcd txn
 * (mvcc_txn_end does it too), for a request that etcd runs in two txns. */
typedef enum { MVCC_OP_RANGE = 0, MVCC_OP_PUT = 1, MVCC_OP_DELETE = 2 } mvcc_op_t;
void mvcc_txn_count(mvcc_txn_t *t, mvcc_op_t op);
void mvcc_txn_count_end(mvcc_txn_t *t);

/* Revision seen by reads of this txn: begin revision, +1 once it wrote. */
int64_t mvcc_txn_rev(const mvcc_txn_t *t);
int64_t mvcc_txn_begin_rev(const mvcc_txn_t *t);
int64_t mvcc_txn_compact_rev(const mvcc_txn_t *t);
size_t mvcc_txn_changes(const mvcc_txn_t *t);

/* Range at revision at_rev (<= 0: the txn's revision). Appends at most
 * `limit` (0: no limit) versions to out unless count_only; *count gets the
 * number of keys in the range at that revision. Returns MVCC_OK or an error
 * (future revision, compacted, I/O). In a write group, a revision older than
 * the group's newest and newer than what LevelDB holds writes the group
 * first (mvcc_group_flush). */
int mvcc_txn_range(mvcc_txn_t *t, const mvcc_range_t *r, int64_t at_rev, int64_t limit, int count_only,
                   mvcc_kv_list_t *out, int64_t *count);

/* Writes (write txn only). prev (may be NULL) gets the replaced version or
 * NULL. Every write gets the txn's revision and the next sub revision.
 * MVCC_OK or MVCC_ERR_IO (reading the replaced version failed). */
int mvcc_txn_put(mvcc_txn_t *t, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                 int64_t lease, const Mvccpb__KeyValue **prev);
/* Deletes every live key of r; deleted versions appended to prev_kvs if not
 * NULL; returns the number of keys deleted or -1 on error. */
int64_t mvcc_txn_delete_range(mvcc_txn_t *t, const mvcc_range_t *r, mvcc_kv_list_t *prev_kvs);

/* Commit a write txn as Raft entry `index`. Outside a write group: one
 * LevelDB write (sync=true) holding the changes and the metadata, then the
 * on_events hook runs. In a group: the txn joins the group's batch (written
 * by mvcc_group_flush/_end, or at once when the group is over its size
 * bound); its events reach on_events after that write. */
int mvcc_txn_commit(mvcc_txn_t *t, uint64_t index);

/* Record compaction at rev as entry `index` (reads below rev are refused
 * from now on) and wake the background compactor (mvcc_compact.c), which
 * deletes every superseded version <= rev in bounded batches. Apply thread.
 * Returns MVCC_OK, MVCC_ERR_COMPACTED, MVCC_ERR_FUTURE_REV or MVCC_ERR_IO. */
int mvcc_compact(mvcc_t *m, int64_t rev, uint64_t index);

/* Blocks until mvcc_compacted_through(m) >= rev. MVCC_OK, or MVCC_ERR_IO if
 * the compactor stops or is held first. Not for the loop thread. */
int mvcc_compact_wait(mvcc_t *m, int64_t rev);

/* What the compactor did since open (tests, benchmarks). */
typedef struct mvcc_compact_stats {
    uint64_t batches;      /* synced LevelDB writes */
    uint64_t records;      /* revision records walked */
    uint64_t keys_visited; /* keys whose newest version was looked up */
    uint64_t versions_deleted;
    int64_t done; /* as mvcc_compacted_through, -1 if never */
} mvcc_compact_stats_t;
void mvcc_compact_stats(mvcc_t *m, mvcc_compact_stats_t *out);

/* Side tables: state machines that live beside the MVCC keys (leases 'L',
 * auth 'A', ...) keep their records in the same LevelDB, under a first byte
 * other than 'k', 'r' and 'm', and write them in a write txn's batch so they
 * commit atomically with the KV changes and the applied index. A write txn's
 * raw writes are not visible to raw reads until they are written (commit
 * outside a group, else the group's write): apply-thread callers that read
 * side tables call mvcc_group_flush first. */
int mvcc_txn_raw_put(mvcc_txn_t *t, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len);
int mvcc_txn_raw_delete(mvcc_txn_t *t, const uint8_t *key, size_t key_len);
/* Committed side-table reads, any thread. mvcc_raw_get returns MVCC_OK with
 * a malloc'd *val (caller frees), MVCC_ERR_NOT_FOUND, or MVCC_ERR_IO. */
int mvcc_raw_get(mvcc_t *m, const uint8_t *key, size_t key_len, uint8_t **val, size_t *val_len);
/* Calls fn for every record whose key starts with prefix, in key order,
 * until fn returns non-zero. Returns MVCC_OK or MVCC_ERR_IO. */
typedef int (*mvcc_raw_fn)(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len);
int mvcc_raw_scan(mvcc_t *m, const uint8_t *prefix, size_t prefix_len, mvcc_raw_fn fn, void *arg);

/* mvcc_raw_scan through a txn: a read txn's snapshot, so the records agree
 * with the txn's metadata. Any thread (read txn). */
int mvcc_txn_raw_scan(mvcc_txn_t *t, const uint8_t *prefix, size_t prefix_len, mvcc_raw_fn fn, void *arg);
/* mvcc_raw_get through a txn (a read txn's snapshot). */
int mvcc_txn_raw_get(mvcc_txn_t *t, const uint8_t *key, size_t key_len, uint8_t **val, size_t *val_len);

/* etcd's Defragment on LevelDB: a manual compaction of the whole key space
 * (leveldb_compact_range, see mvcc.c for how every level is reached), which
 * rewrites the tables without the deleted and overwritten entries, so the
 * files shrink after deletes and an MVCC compaction. Blocks for as long as
 * it takes: not for the loop or apply thread. Reads and writes of other
 * threads go on meanwhile. MVCC_OK or MVCC_ERR_IO. */
int mvcc_defrag(mvcc_t *m);

/* ---- hashes (storage/mvcc/mvcc_hash.c) ----
 *
 * mvcc_hash_kv is etcd 3.4's HashByRev (mvcc/kvstore.go), byte for byte:
 * CRC-32C (Castagnoli) over "key", then, in revision order, for every
 * version (main, sub) with main <= rev that is kept: etcd's key-bucket key
 * (main 8B BE | '_' | sub 8B BE, plus 't' for a tombstone) and its value
 * (the packed mvccpb.KeyValue; a tombstone's holds only the key). Kept: every
 * version above the compact revision C; at or below C only a key's newest
 * version at rev if it is not a tombstone (etcd's kvindex.Keep(rev)); when no
 * key is alive at rev, etcd hashes every version at or below C it still
 * holds, which after the compaction is each key's newest version at C that
 * is not a tombstone: that is what is hashed here, whatever the compactor's
 * progress. rev 0 is the current revision. MVCC_ERR_COMPACTED when
 * 0 < rev <= C (as etcd: even rev == C), MVCC_ERR_FUTURE_REV when rev is
 * above the current revision (*compact_rev / *cur_rev filled), MVCC_ERR_IO.
 * *cur_rev and *compact_rev (-1: never compacted) are the snapshot's. Any
 * thread; one LevelDB snapshot. */
int mvcc_hash_kv(mvcc_t *m, int64_t rev, uint32_t *hash, int64_t *cur_rev, int64_t *compact_rev);
/* etcd's Hash (the whole backend): CRC-32C over every record of the
 * database in key order (key bytes, then value bytes), except the
 * per-member bookkeeping records 'm' (applied index) and 'c' (compactor
 * progress), as etcd skips meta/consistent_index. Depends on the physical
 * compaction's progress, as etcd's does. *rev: the snapshot's revision. */
int mvcc_hash_all(mvcc_t *m, uint32_t *hash, int64_t *rev);
/* CRC-32C continued from crc (0 to start): Go's crc32.Update with the
 * Castagnoli table. */
uint32_t mvcc_crc32c(uint32_t crc, const void *buf, size_t len);

/* Record only the applied index (entries that change no key); in a write
 * group it joins the group. */
int mvcc_set_applied(mvcc_t *m, uint64_t index);

/* Apply thread: the applied index and revision including the entries of the
 * write group not yet written (mvcc_applied_index/mvcc_revision give what
 * LevelDB holds, for every thread). */
uint64_t mvcc_apply_index(mvcc_t *m);
int64_t mvcc_apply_revision(mvcc_t *m);

/* Fault injection for tests: the nth LevelDB read from now fails with
 * MVCC_ERR_IO (the failpoint mvcc_read_error, storage/failpoint.h). */
void mvcc_arm_read_error(mvcc_t *m, uint64_t n);
/* Tests: the nth mvcc_txn_put from now stores an altered value (the
 * failpoint mvcc_put_corrupt, failpoint.h). */
void mvcc_arm_put_corrupt(mvcc_t *m, uint64_t n);
/* Tests: the compactor's nth batch from now fails as an I/O error. */
void mvcc_arm_compact_error(mvcc_t *m, uint64_t n);
int mvcc_read_error_armed(mvcc_t *m); /* 1 until the armed read failed */

const mvcc_options_t *mvcc_options(const mvcc_t *m);

/* Key encoding, exposed for tests. */
size_t mvcc_encode_key(uint8_t *out, const uint8_t *key, size_t key_len); /* 'k'|escaped|terminator */
size_t mvcc_encoded_key_max(size_t key_len);
/* Compactor knobs (tests, benchmarks): records per batch (default 1,000),
 * pause between batches (default 10 ms), and a hold after n more batches
 * (n < 0: release; a held compactor writes nothing until released or
 * closed, as if the member had crashed there). */
void mvcc_set_compact_batch(mvcc_t *m, size_t n);
void mvcc_set_compact_pause_ms(mvcc_t *m, unsigned ms);
void mvcc_compact_hold_after(mvcc_t *m, int64_t n);

/* ---- history (storage/mvcc/kv_history.c): the catch-up read for watchers ----
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
enum { KV_HISTORY_OK = 0, KV_HISTORY_IO = -1, KV_HISTORY_COMPACTED = -2 };
typedef int (*kv_history_fn)(void *arg, int64_t rev, const mvcc_event_t *evs, size_t n);
int kv_history(mvcc_t *m, const uint8_t *key, size_t key_len, const uint8_t *range_end, size_t range_end_len,
               int64_t from_rev, int64_t to_rev, int with_prev, kv_history_fn fn, void *arg,
               int64_t *compact_rev);

/* ---- dump and load (storage/mvcc/mvcc_dump.c): the whole store, for
 * snapshots in another format (etcd's bbolt file, storage/bbolt/) ----
 *
 * A dump reads one LevelDB snapshot (any thread, the store keeps serving):
 * *meta gets its metadata; mvcc_dump_versions hands every version in
 * revision order (main, then sub) as etcd's compaction would have kept it
 * (nothing at or below the compact revision but each key's newest version
 * there, and no tombstone there); a tombstone's kv has key and
 * mod_revision only. fn returns 0 to go on, non-zero to stop (returned).
 * mvcc_dump_raw scans a side table (see mvcc_raw_scan) in the same
 * snapshot. A load fills a store that is not serving (the caller checks
 * it was empty): versions in revision order, raw side-table records, then
 * mvcc_load_finish records the revision and compact revision with applied
 * index 0 (a fresh Raft log applies from 1). Not synced per batch: finish
 * syncs, and a crash before it leaves a store to delete. Several loads may
 * follow each other (each finish writes the metadata). */
typedef struct mvcc_dump mvcc_dump_t;
typedef int (*mvcc_version_fn)(void *arg, const Mvccpb__KeyValue *kv, int64_t sub, int tombstone);
int mvcc_dump_begin(mvcc_t *m, mvcc_dump_t **out, mvcc_meta_t *meta);
int mvcc_dump_versions(mvcc_dump_t *d, mvcc_version_fn fn, void *arg);
int mvcc_dump_raw(mvcc_dump_t *d, const uint8_t *prefix, size_t prefix_len, mvcc_raw_fn fn, void *arg);
void mvcc_dump_end(mvcc_dump_t *d);

typedef struct mvcc_load mvcc_load_t;
int mvcc_load_begin(mvcc_t *m, mvcc_load_t **out);
int mvcc_load_version(mvcc_load_t *l, const Mvccpb__KeyValue *kv, int64_t sub, int tombstone);
int mvcc_load_raw(mvcc_load_t *l, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len);
int mvcc_load_finish(mvcc_load_t *l, int64_t rev, int64_t compact_rev);
void mvcc_load_free(mvcc_load_t *l);

/* ---- import (storage/mvcc/mvcc_import.c): another etcd's events applied
 * at their own revisions (kshimctl migrate follows a live etcd's watch).
 * Single writer (no kshimd on the store), after a load.
 *
 * mvcc_import_revision writes the n events of etcd revision rev (in their
 * sub-revision order) as they are: key, value, create_revision, version,
 * lease (a put) or a tombstone (a delete), the 'M' lease attachments kept in
 * step (the key's previous lease from the store), and the store revision
 * rev, in ONE LevelDB write (synced if sync). MVCC_OK; 1 when rev is not
 * newer than the store (already applied: nothing written);
 * MVCC_ERR_BAD_EVENT when an event's mod_revision is not rev, a put has no
 * key, create_revision > rev or version < 1, or n == 0; MVCC_ERR_IO.
 * mvcc_import_finish raises the store revision to rev if it is lower (the
 * source's revision at the cut-over) and syncs.
 * mvcc_import_replace_raw makes the side-table space `prefix` (e.g. "L",
 * "U", "R"; never the store's own spaces: MVCC_ERR_NOT_FOUND) hold exactly
 * the n records given (keys must start with prefix), in one synced write. */
typedef struct mvcc_raw_rec {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *val;
    size_t val_len;
} mvcc_raw_rec_t;
int mvcc_import_revision(mvcc_t *m, int64_t rev, const Mvccpb__Event *const *evs, size_t n, int sync);
int mvcc_import_finish(mvcc_t *m, int64_t rev);
int mvcc_import_replace_raw(mvcc_t *m, const uint8_t *prefix, size_t prefix_len, const mvcc_raw_rec_t *recs,
                            size_t n);

#endif
