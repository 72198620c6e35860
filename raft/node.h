/*
 * node.h: a Raft member as a running thing: the loop that drives the pure
 * Raft core (raft.c) with ticks, peer messages and proposals, persists what
 * it must to the write-ahead log (wal.c) with group commit, sends messages
 * to peers, and hands committed entries to the state machine in log order.
 *
 * The node owns two threads: the "raft thread" (core, WAL, sending) and the
 * "apply thread" (cfg.apply, cfg.install_snapshot, cfg.persist_state).
 * Proposals arrive from any thread through raft_node_propose(); everything
 * queued while an fdatasync is in flight is appended and synced together
 * (group commit). Committed entries are delivered to cfg.apply on the apply
 * thread, in index order, exactly once per process lifetime; after a
 * restart, entries above cfg.applied_index are delivered again, so apply
 * must be idempotent by index.
 *
 * A cluster: peer messages come in through raft_node_step (copied into a
 * bounded queue the raft thread steps); the ready's messages go out through
 * cfg.send (the leader's Apps and heartbeats while its own WAL write is in
 * flight, every other message only after the sync: a vote or an
 * acknowledgement promises durable state). A follower forwards proposals to
 * its leader (cfg.forward); without a leader they wait two election timeouts
 * and then come back through cfg.dropped, as does anything the core refuses:
 * no proposal is lost silently. The leader's driver proposes what a follower
 * forwarded with raft_node_propose_forwarded; if the leader cannot take it
 * after all, it comes back through cfg.refused, for the driver to tell the
 * follower at once. Reads: raft_node_read_index -> read_ready
 * once a quorum confirmed the read point and this member applied up to it.
 * Callbacks never run under a node lock; none may block.
 *
 * Bounded: at most cfg.max_inflight entries may be proposed but not yet
 * applied (etcd's maxGapBetweenApplyAndCommitIndex, 5000; on a follower
 * forwarded proposals count until they can have been applied); past it
 * raft_node_propose() refuses at once with RAFT_NODE_ERR_BUSY. The apply
 * queue, the inbound queue and the outstanding reads are bounded too, and
 * the raft thread never waits for the apply thread or a peer: while the
 * apply queue is full, committed entries stay in the core and the thread
 * keeps ticking, stepping, persisting and committing.
 *
 * raft/ knows nothing of etcd requests or storage: entry data is opaque bytes.
 */
#ifndef KSHIM_RAFT_NODE_H
#define KSHIM_RAFT_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"
#include "wal.h"

typedef struct raft_node raft_node_t;

typedef struct raft_node_config {
    uint64_t id;              /* this member's id, non-zero */
    const uint64_t *peer_ids; /* all voters including id; n_peers >= 1 */
    size_t n_peers;
    const char *wal_dir;      /* created if missing */
    uint64_t applied_index;   /* state machine's durable-or-not applied index; with an empty WAL
                               * and join = 0, non-zero means the state machine already holds
                               * everything up to it (a restored store): the new log starts there
                               * (a snapshot point with peer_ids), without bootstrap entries */
    unsigned tick_ms;         /* default 100 */
    unsigned election_ticks;  /* default 10 */
    unsigned heartbeat_ticks; /* default 1 */

    /* Apply thread: committed entries in order (normal entries with data,
     * empty entries a new leader appends, which must still advance the
     * applied index, and CONF_CHANGE entries: op byte, 8-byte big-endian id,
     * driver context). term is the node's current term, for response headers. */
    void (*apply)(void *ctx, const raft_entry_t *ents, size_t n, uint64_t term);
    /* Apply thread, every persist_every applied entries: make the state
     * machine durable and return the index it now covers; the WAL may then
     * drop entries at or below it (after a SNAPSHOT record there, so a
     * restart knows the membership). May be NULL (the log is then never
     * truncated). */
    uint64_t (*persist_state)(void *ctx);
    void *ctx;

    /* Added after the first version; zero means the default. */
    size_t wal_segment_bytes;   /* WAL segment preallocation, default 16 MiB */
    uint64_t persist_every;     /* applied entries between persist_state calls, default 10000 */
    size_t max_inflight;        /* entries proposed but not applied before BUSY, default 5000 */
    size_t apply_queue_entries; /* committed entries queued for the apply thread, default 16384 */

    /* ---- Peers (a cluster). All optional for a single voter. ----
     * Bootstrap: a new cluster's members all start with the same peer_ids
     * (the voters) and write the bootstrap entries; a member joining an
     * existing cluster (join = 1, etcd's --initial-cluster-state existing)
     * writes none and waits for the leader to send it the log or a
     * snapshot, accepting messages from members it does not know yet
     * (peer_ids may be empty). It restarts with join = 1 too: its WAL then
     * holds what it learned. */
    int join;
    int pre_vote, check_quorum; /* etcd-raft's PreVote / CheckQuorum (kshim sets both for clusters) */
    /* Raft thread: a message for a peer (m->to). Must not block: queue or
     * drop (Raft retries). m and what it points to are valid only during
     * the call. */
    void (*send)(void *ctx, const raft_msg_t *m);
    /* Raft thread: a proposal made on this follower, for the leader. Must not
     * block; the leader's driver hands the bytes to raft_node_propose (and
     * answers the client itself if that fails). Proposals on a follower are
     * queued only when forward and dropped are both set; otherwise
     * raft_node_propose refuses them with RAFT_NODE_ERR_NOT_LEADER. */
    void (*forward)(void *ctx, uint64_t leader, const void *data, size_t len);
    /* A proposal that will not reach the log (refused by the core, no leader
     * within the node's wait, the node stopping): the bytes as proposed, so
     * the owner answers its client at once (reason: RAFT_NODE_ERR_*). Called
     * from the raft thread, never under a node lock. */
    void (*dropped)(void *ctx, const void *data, size_t len, int reason);
    /* The same for a proposal another member forwarded here
     * (raft_node_propose_forwarded, from = that member) that will not reach
     * the log: refused by the core (no longer leader, a leader transfer
     * running, ...), no leader within the wait, the node stopping. The
     * driver tells the forwarder at once (which calls
     * raft_node_forward_refused and answers its client) instead of letting
     * its client wait for the request timeout. Raft thread, never under a
     * node lock. NULL: such proposals are lost silently (the forwarder's
     * timeout answers). */
    void (*refused)(void *ctx, uint64_t from, const void *data, size_t len, int reason);
    /* A linearizable read point asked with raft_node_read_index: ok = 1 once
     * a quorum confirmed it and the applied index reached it (serve the read
     * now), ok = 0 when it failed (no leader for two election timeouts, no
     * answer within 5 s although asked again every 500 ms, the node
     * stopping; the caller answers or retries). Called from the raft or the
     * apply thread, never under a node lock. */
    void (*read_ready)(void *ctx, uint64_t rctx, int ok);
    /* Raft thread: the core wants snapshot m (RAFT_MSG_SNAP, m->snapshot) sent
     * to m->to. The driver streams its state machine (any applied index >=
     * m->snapshot->index will do: apply is idempotent by index) and later
     * calls raft_node_report_snapshot. Must not block. */
    void (*send_snapshot)(void *ctx, const raft_msg_t *m);
    /* Apply thread, in log order: replace the state machine by the snapshot
     * the driver received and staged for meta (before raft_node_step of the
     * MsgSnap). 0 ok; -1 stops the node (fail-stop). The node logs meta in
     * its WAL first; if it restarts with cfg.applied_index below that
     * snapshot (a crash before the install finished), it calls this again
     * before anything else, so the staged data must survive until then. */
    int (*install_snapshot)(void *ctx, const raft_snapshot_meta_t *meta);
} raft_node_config_t;

typedef struct raft_node_status {
    uint64_t id;
    uint64_t leader; /* 0 if unknown */
    /* Times the node saw a new leader (0 -> X counts; etcd's
     * leader_changes_seen_total: compared at each status refresh). */
    uint64_t leader_changes;
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t last_index;
    /* Every log entry up to here is in the WAL and synced; the apply thread
     * is never handed an entry above it (nothing unsynced is applied). */
    uint64_t durable_index;
    uint64_t wal_bytes;     /* size of live WAL segments */
    uint64_t wal_syncs;     /* fdatasync calls for log appends (group commit) */
    uint64_t proposals;     /* proposals handed to the core */
    uint64_t inflight;      /* proposed (queued or in the log) but not applied */
    uint64_t busy_refusals; /* raft_node_propose calls refused with RAFT_NODE_ERR_BUSY */
    uint64_t ticks;         /* raft_tick calls on the raft thread */
    uint64_t log_entries;   /* entries held in the core's in-memory log */
    int failed;             /* a WAL error stopped the node (fail-stop) */
    raft_role_t role;
    int is_learner; /* this member is a learner in the applied configuration */
} raft_node_status_t;

enum {
    RAFT_NODE_OK = 0,
    RAFT_NODE_ERR_NOT_LEADER = -1, /* "etcdserver: no leader" / forwarding later */
    RAFT_NODE_ERR_STOPPED = -2,
    RAFT_NODE_ERR_NOMEM = -3,
    RAFT_NODE_ERR_BUSY = -4, /* too many entries in flight: "etcdserver: too many requests" */
    RAFT_NODE_ERR_INVALID =
        -5, /* a request that makes no sense (remove a non-member, transfer to a learner) */
};

#define RAFT_NODE_DEFAULT_MAX_INFLIGHT 5000 /* etcd's maxGapBetweenApplyAndCommitIndex */

/* Opens (or creates) the WAL, replays it, starts the raft thread. Entries
 * committed but not yet applied are delivered to apply before new ones.
 * Returns 0, or -1 with a message in err. */
int raft_node_start(const raft_node_config_t *cfg, raft_node_t **out, char *err, size_t errlen);

/* Thread-safe, never blocks on the log or the state machine. Copies data;
 * the entry is appended, synced and, once committed, passed to apply. Returns
 * RAFT_NODE_OK or an error above: RAFT_NODE_ERR_BUSY when max_inflight entries
 * are already proposed and not applied (try again later). On a follower
 * (with cfg.forward and cfg.dropped) RAFT_NODE_OK means queued: forwarded
 * to the leader, or handed to cfg.dropped later. An entry that reached the
 * log and is overwritten by a new leader is not reported (as with etcd, the
 * owner's request timeout answers it). */
int raft_node_propose(raft_node_t *node, const void *data, size_t len);
/* A proposal member `from` forwarded here (its cfg.forward): as
 * raft_node_propose, but when it later cannot reach the log it goes to
 * cfg.refused (with from), not cfg.dropped. An error returned here is the
 * caller's to report to the forwarder. */
int raft_node_propose_forwarded(raft_node_t *node, uint64_t from, const void *data, size_t len);
/* The leader refused one of the proposals this member forwarded (its
 * cfg.refused reached us): it no longer counts against max_inflight. */
void raft_node_forward_refused(raft_node_t *node);

/* ---- Peers. All thread-safe. None blocks, except that the three admin
 * calls (conf change, transfer, progress) run on the raft thread and wait
 * for it (one round: milliseconds). ---- */

/* A message from a peer (copied). RAFT_NODE_ERR_BUSY: the inbound queue is
 * full and the message was dropped (as a lost one). */
int raft_node_step(raft_node_t *node, const raft_msg_t *m);
/* Membership change (RAFT_CONF_*; ctx = driver context carried in the
 * entry, e.g. the member's URLs and the request id). On the leader only:
 * RAFT_NODE_ERR_NOT_LEADER elsewhere, RAFT_NODE_ERR_BUSY while another change
 * is not applied. The outcome is the CONF_CHANGE entry reaching apply. */
int raft_node_propose_conf_change(raft_node_t *node, uint8_t op, uint64_t id, const void *ctx, size_t len);
/* Asks for a linearizable read point; cfg.read_ready(rctx) answers (once).
 * RAFT_NODE_ERR_BUSY past 1024 outstanding, RAFT_NODE_ERR_INVALID without
 * cfg.read_ready. On any member; a follower asks its leader. */
int raft_node_read_index(raft_node_t *node, uint64_t rctx);
/* Leader only: hand leadership to voter `to` (etcd's MoveLeader);
 * RAFT_NODE_ERR_INVALID for a learner or a non-member. */
int raft_node_transfer_leader(raft_node_t *node, uint64_t to);
/* Leader only: a member's replication progress (RAFT_NODE_ERR_NOT_LEADER). */
int raft_node_peer_progress(raft_node_t *node, uint64_t id, raft_peer_progress_t *out);
/* The driver's report on a snapshot it streamed (ok = 0: failed). */
void raft_node_report_snapshot(raft_node_t *node, uint64_t to, int ok);

/* Thread-safe snapshot of the node's state. */
void raft_node_status(raft_node_t *node, raft_node_status_t *out);
/* The WAL's fdatasync durations and bytes written (wal_disk_stats): any
 * thread, until raft_node_stop. */
void raft_node_disk_stats(raft_node_t *node, wal_disk_stats_t *out);

/* Stops the thread after the current batch; queued proposals go to
 * cfg.dropped (RAFT_NODE_ERR_STOPPED), outstanding reads to read_ready(0)
 * (never acknowledged), both called from the raft thread while this call
 * waits for it: the caller must not hold a lock those callbacks take.
 * Committed entries already queued are applied.
 * Frees the node; no other call on it may run concurrently. */
void raft_node_stop(raft_node_t *node);

#endif
