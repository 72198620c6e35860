/*
 * raft.h: the Raft consensus core, free of I/O (in the style of etcd-io/raft).
 *
 * No clocks, sockets, files or threads: the driver (node.c, or a test harness)
 * feeds it ticks, peer messages and proposals, and collects a "ready" batch:
 *   1. hard state and entries to persist  (persist BEFORE step 2 and 3),
 *   2. messages to send to peers,
 *   3. committed entries to apply, read states to release,
 * then calls raft_advance(), which tells the core that everything in the batch
 * is durable. The leader counts its own log as replicated only up to what was
 * persisted this way (self-ack after persist), so a single voter commits an
 * entry exactly when it is durable. Same inputs give the same outputs: the
 * only randomness (election jitter) comes from a seeded PRNG.
 *
 * Multi-member features, as etcd-raft: pre-vote and check-quorum (opt-in
 * config flags), replication flow control (probe/replicate/snapshot progress,
 * in-flight window, bytes per message, max uncommitted size), ReadIndex
 * batched per ready and forwarded by followers, leader transfer
 * (MsgTimeoutNow), learners and membership changes one at a time (conf-change
 * entries applied when applied; no joint consensus), snapshots (metadata
 * only: the driver owns and ships the data) and compaction gated on follower
 * progress. Proven by tests/test_raft_sim.c (randomized, thousands of seeds)
 * and tests/test_raft_features.c (scenarios).
 */
#ifndef KSHIM_RAFT_RAFT_H
#define KSHIM_RAFT_RAFT_H

#include <stddef.h>
#include <stdint.h>

enum { RAFT_ENTRY_NORMAL = 0, RAFT_ENTRY_CONF_CHANGE = 1 };

typedef struct raft_entry {
    uint64_t term;
    uint64_t index;
    uint8_t type; /* RAFT_ENTRY_NORMAL=0, RAFT_ENTRY_CONF_CHANGE=1 */
    const uint8_t *data;
    size_t len;
} raft_entry_t;

typedef struct raft_hard_state {
    uint64_t term;
    uint64_t vote; /* 0 = voted for nobody in this term */
    uint64_t commit;
} raft_hard_state_t;

typedef enum raft_msg_type {
    RAFT_MSG_VOTE = 1,
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_APP,
    RAFT_MSG_APP_RESP,
    RAFT_MSG_HEARTBEAT,
    RAFT_MSG_HEARTBEAT_RESP,
    RAFT_MSG_PRE_VOTE,        /* term = the term the sender would campaign in; changes nobody's term */
    RAFT_MSG_PRE_VOTE_RESP,   /* granted: term = the request's term; refused: the responder's term */
    RAFT_MSG_READ_INDEX,      /* follower -> leader: ctx = the follower's read request id */
    RAFT_MSG_READ_INDEX_RESP, /* leader -> follower: index = the confirmed read index, ctx echoed */
    RAFT_MSG_TIMEOUT_NOW, /* leader -> transfer target: campaign now (its Vote carries ctx = RAFT_VOTE_TRANSFER) */
    RAFT_MSG_SNAP,        /* leader -> follower: install the snapshot m->snapshot (index/term/conf);
                              * the driver attaches the state-machine data at that index */
} raft_msg_type_t;

/* What the core knows of a snapshot: the state machine after applying
 * entries <= index, and the membership at that point. The data itself is
 * the driver's (the core never sees it). */
typedef struct raft_snapshot_meta {
    uint64_t index, term;
    const uint64_t *voters;
    size_t n_voters;
    const uint64_t *learners;
    size_t n_learners;
} raft_snapshot_meta_t;

/* Vote ctx: a campaign asked for by the leader (transfer); bypasses the leader lease. */
#define RAFT_VOTE_TRANSFER 1

/* Membership changes, one at a time (no joint consensus). A
 * RAFT_ENTRY_CONF_CHANGE entry's data is: op byte (RAFT_CONF_*), the 8-byte
 * big-endian member id, then any driver context (ignored by the core; e.g.
 * the member's URLs). Every member applies it when the entry is applied
 * (handed out in a ready and acknowledged by raft_advance, or below
 * raft_config_t.applied at raft_new): adding an existing voter is a no-op. */
enum {
    RAFT_CONF_ADD_VOTER = 1, /* also promotes a learner */
    RAFT_CONF_ADD_LEARNER = 2,
    RAFT_CONF_REMOVE = 3,
};
#define RAFT_CONF_CHANGE_LEN 9
/* Voters + learners at most (the core keeps membership in fixed slots so
 * that applying a change never allocates). */
#define RAFT_MAX_MEMBERS 32

/* A message between peers. entries/data are owned by whoever built the
 * message (in a ready: by the core, until raft_advance). raft_step() copies
 * what it keeps. ctx: the ReadIndex round a heartbeat (response) belongs to. */
typedef struct raft_msg {
    raft_msg_type_t type;
    uint64_t from, to, term;
    uint64_t log_term; /* App: term of index; Vote: last log term; AppResp reject: hint term */
    uint64_t index;    /* App: index preceding entries; Vote: last index; AppResp: match/rejected index */
    uint64_t commit;
    raft_entry_t *entries;
    size_t n_entries;
    int reject;
    uint64_t reject_hint; /* AppResp reject: follower's probe hint (its last index or lower) */
    uint64_t ctx;
    const raft_snapshot_meta_t *snapshot; /* RAFT_MSG_SNAP only */
} raft_msg_t;

typedef enum raft_role { RAFT_FOLLOWER = 0, RAFT_CANDIDATE, RAFT_LEADER, RAFT_PRE_CANDIDATE } raft_role_t;

typedef struct raft_read_state {
    uint64_t index; /* serve the read once applied >= index */
    uint64_t ctx;   /* the caller's request id from raft_read_index */
} raft_read_state_t;

typedef struct raft_config {
    uint64_t id; /* non-zero */
    /* All voters (at log_base_index), normally including id. None (n_voters
     * 0) for a member joining an existing cluster: it accepts the leader's
     * messages and learns the membership from its log or snapshot. */
    const uint64_t *voters;
    size_t n_voters;
    const uint64_t *learners; /* non-voting members receiving the log (may be NULL) */
    size_t n_learners;
    unsigned election_ticks;  /* > heartbeat_ticks; timeout drawn from [e, 2e) */
    unsigned heartbeat_ticks; /* >= 1 */
    uint64_t seed;            /* election jitter PRNG seed */
    /* State recovered from the WAL (all zero/NULL for a fresh member). */
    raft_hard_state_t hard_state;
    uint64_t log_base_index; /* index preceding log[0] (0 for a full log) */
    uint64_t log_base_term;  /* term at log_base_index */
    const raft_entry_t *log; /* contiguous, log[0].index == log_base_index + 1; copied */
    size_t n_log;
    uint64_t applied;       /* entries <= applied are never handed out to apply */
    size_t max_msg_entries; /* entries per App message; 0 -> 256 */
    /* Replication flow control (etcd-raft's MaxSizePerMsg, MaxInflightMsgs,
     * MaxUncommittedEntriesSize). An App carries at least one entry. */
    size_t max_msg_bytes;     /* entry data bytes per App; 0 -> no limit */
    size_t max_inflight_msgs; /* Apps in flight per follower in replicate state; 0 -> 256 (also the cap) */
    size_t max_uncommitted_bytes; /* leader refuses proposals beyond this (RAFT_ERR_DROPPED); 0 -> no limit */
    /* The log a leader keeps past a snapshot it sent, for that follower to
     * catch up by appends (raft_compact_to): at most this many entries and
     * data bytes; 0 -> 65,536 entries, 64 MiB. */
    size_t snapshot_hold_entries, snapshot_hold_bytes;
    /* etcd-raft's PreVote: an election timeout first asks for pre-votes
     * (term unchanged) and campaigns only if a quorum would vote for it, so
     * a member rejoining from a partition does not bump the term. */
    int pre_vote;
    /* etcd-raft's CheckQuorum: a leader that heard from no quorum of voters
     * for an election timeout steps down; and a member that heard from a
     * leader within the last election timeout ignores (pre-)vote requests
     * of higher terms (leader lease). */
    int check_quorum;
    /* TEST ONLY: deliberately broken behaviour (RAFT_DEBUG_*), so the
     * simulation can show that its checker catches real bugs. 0 in production. */
    unsigned debug_break;
} raft_config_t;

/* raft_config_t.debug_break bits (test only). */
enum {
    RAFT_DEBUG_COMMIT_NO_QUORUM = 1u << 0, /* leader commits with one ack fewer than a quorum */
    RAFT_DEBUG_VOTE_SKIP_TERM = 1u << 1,   /* grant a vote although already voted in this term */
    RAFT_DEBUG_READ_NO_QUORUM = 1u << 2,   /* answer ReadIndex without a quorum confirming leadership */
};

typedef struct raft_ready {
    int hard_state_changed;
    raft_hard_state_t hard_state;
    int must_sync;               /* entries, term or vote changed: fdatasync before sending/applying */
    const raft_entry_t *entries; /* to append to the log (may overwrite a suffix) */
    size_t n_entries;
    const raft_entry_t *committed; /* to apply, in order */
    size_t n_committed;
    const raft_msg_t *msgs;
    size_t n_msgs;
    const raft_read_state_t *read_states;
    size_t n_read_states;
    /* A snapshot received from the leader (NULL if none): replace the state
     * machine by the snapshot's data and persist this metadata (log base,
     * membership) BEFORE the entries of this ready; committed entries then
     * follow the snapshot index. */
    const raft_snapshot_meta_t *snapshot;
} raft_ready_t;

typedef struct raft_status {
    uint64_t id, term, vote, leader, commit, applied;
    uint64_t first_index, last_index, stabled;
    raft_role_t role;
    uint64_t msgs_rejected;   /* peer messages refused as malformed (raft_step) */
    int is_voter, is_learner; /* this member in its current (applied) configuration */
    size_t n_voters, n_learners;
    uint64_t lead_transferee; /* leader: transfer target in progress, 0 none */
    uint64_t nomem;           /* allocations that failed (the action was dropped, see raft.c) */
} raft_status_t;

typedef struct raft raft_t;

enum {
    RAFT_OK = 0,
    RAFT_ERR_NOT_LEADER = -1,
    RAFT_ERR_NOMEM = -2,
    RAFT_ERR_INVALID = -3,
    RAFT_ERR_DROPPED = -4, /* proposal refused (flow control, transfer in progress, ...): retry later */
};

/* A follower's replication progress as the leader sees it. */
typedef enum raft_progress_state {
    RAFT_PROGRESS_PROBE = 0, /* one App at a time until the follower's log position is found */
    RAFT_PROGRESS_REPLICATE, /* streaming, up to max_inflight_msgs Apps in flight */
    RAFT_PROGRESS_SNAPSHOT,  /* needs a snapshot: no Apps until it reports the snapshot applied */
} raft_progress_state_t;

typedef struct raft_peer_progress {
    uint64_t id, match, next;
    raft_progress_state_t state;
    size_t inflight; /* Apps sent and not yet acknowledged */
    int recent_active;
} raft_peer_progress_t;

/* Builds a core from cfg (copies everything). NULL with a message in err. */
raft_t *raft_new(const raft_config_t *cfg, char *err, size_t errlen);
void raft_free(raft_t *r);

/* Logical clock. */
void raft_tick(raft_t *r);
/* Starts an election now (tests, leadership transfer later). */
void raft_campaign(raft_t *r);
/* A message from a peer (m->to must be this id). Everything in it is checked
 * first: a message no correct peer can send (unknown sender, bad type, an
 * index or term out of range, entries that do not follow m->index, a success
 * for entries this leader never had, an App from a second leader of the same
 * term) changes nothing, is counted in raft_status().msgs_rejected and
 * returns RAFT_ERR_INVALID. RAFT_ERR_NOMEM when memory ran out on the way
 * (what could not be done was dropped, as a lost message). RAFT_OK otherwise. */
int raft_step(raft_t *r, const raft_msg_t *m);
/* Leader only: appends an entry (data copied). RAFT_ERR_NOT_LEADER otherwise;
 * RAFT_ERR_DROPPED past max_uncommitted_bytes or during a leader transfer;
 * RAFT_ERR_NOMEM (nothing changed) out of memory. */
int raft_propose(raft_t *r, const void *data, size_t len);
int raft_propose_type(raft_t *r, uint8_t type, const void *data, size_t len);
/* Request a linearizable read point; a read state {index, ctx} appears in a
 * later ready once a quorum confirmed the leadership (serve the read once
 * applied >= index). On the leader, every read requested before the next
 * raft_ready shares one heartbeat round. A follower forwards the request to
 * its leader and gets the read state back from it; RAFT_ERR_NOT_LEADER when
 * no leader is known. A request can be lost (leader change, lost message):
 * the driver times out and retries, as with etcd. */
int raft_read_index(raft_t *r, uint64_t ctx);

/* Leader only: proposes a membership change (see RAFT_CONF_*). Refused
 * with RAFT_ERR_DROPPED while another change is not applied yet (or this
 * leader has not applied its whole log of election time, as etcd-raft),
 * RAFT_ERR_INVALID for a change that makes no sense (remove a non-member,
 * learner for a voter, the last voter). ctx/ctx_len: driver context. */
int raft_propose_conf_change(raft_t *r, uint8_t op, uint64_t id, const void *ctx, size_t ctx_len);
/* Members of the applied configuration: fills up to cap ids, returns the count. */
size_t raft_voters(const raft_t *r, uint64_t *out, size_t cap);
size_t raft_learners(const raft_t *r, uint64_t *out, size_t cap);

/* Leader only: hands leadership to voter `to` (etcd's MoveLeader): once its
 * log is caught up it gets MsgTimeoutNow and campaigns at once. Proposals
 * are dropped meanwhile; the transfer is abandoned after an election timeout. */
int raft_transfer_leader(raft_t *r, uint64_t to);

int raft_has_ready(const raft_t *r);
/* Fills rd; everything it points to stays valid until raft_advance(). No other
 * raft_* call that changes state may happen between raft_ready and raft_advance. */
void raft_ready(raft_t *r, raft_ready_t *rd);
/* The driver persisted (and synced) the last ready's hard state and entries,
 * sent its messages and applied its committed entries. */
void raft_advance(raft_t *r);

/* Flow control for the driver: each following ready hands out at most n
 * committed entries (SIZE_MAX, the default, means no limit). With
 * n == 0 committed entries stay in the core and raft_has_ready() does not
 * report them; persisting, messages and ticks go on as usual. */
void raft_set_apply_budget(raft_t *r, size_t n);

/* The driver holds a snapshot of its state machine at index (<= applied,
 * <= stabled): entries up to there may go. Gated on follower progress: a
 * leader keeps the entries an active follower still needs (a follower not
 * heard from in two check-quorum rounds, or already behind the log start,
 * is sent the snapshot instead; one sent a snapshot keeps the entries after
 * it, up to snapshot_hold_entries / _bytes of them, to catch up by appends
 * once it installed it); and the membership at the new base must be the
 * current one (index >= the last applied conf change). Compacts to the
 * highest allowed index <= index; returns that new log base. */
uint64_t raft_compact_to(raft_t *r, uint64_t index);
/* Same, for the old callers. */
void raft_compact(raft_t *r, uint64_t index);
/* The snapshot the core would send: that of the log base. Pointers valid
 * until the next raft_* call that changes state. */
void raft_snapshot_meta(const raft_t *r, raft_snapshot_meta_t *out);
/* Driver's report on a snapshot it sent to id (0 failed): a failed one is
 * retried (from probe). Without a report, the leader retries after two
 * election timeouts. */
void raft_report_snapshot(raft_t *r, uint64_t id, int ok);

void raft_status(const raft_t *r, raft_status_t *out);
/* TEST ONLY: every n-th allocation of the core fails (0: none), to show
 * that running out of memory only ever drops work, never breaks safety. */
void raft_debug_fail_alloc(raft_t *r, unsigned every);
/* Leader only: the progress of member id; RAFT_ERR_NOT_LEADER / RAFT_ERR_INVALID. */
int raft_peer_progress(const raft_t *r, uint64_t id, raft_peer_progress_t *out);
/* Term of a log index, 0 if unknown (compacted or beyond the last index). */
uint64_t raft_term_at(const raft_t *r, uint64_t index);
/* Entry at index, NULL if not in the in-memory log. */
const raft_entry_t *raft_entry_at(const raft_t *r, uint64_t index);

#endif
