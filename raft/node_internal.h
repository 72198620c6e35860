/*
 * node_internal.h: the raft node's state, shared by node.c (the raft and
 * apply threads, proposals, start and stop) and node_peers.c (what a
 * cluster adds: the inbound message queue, sending a ready's messages,
 * ReadIndex requests, admin requests run on the raft thread, snapshot
 * reports and the snapshot points the WAL may be released to). Not part of
 * the API: only raft/node*.c include it.
 */
#ifndef KSHIM_RAFT_NODE_INTERNAL_H
#define KSHIM_RAFT_NODE_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "wal.h"

typedef struct proposal {
    struct proposal *next;
    uint64_t queued_ms; /* when raft_node_propose queued it (the no-leader wait) */
    uint64_t from;      /* the member that forwarded it here (raft_node_propose_forwarded), 0: made here */
    size_t len;
    uint8_t data[];
} proposal_t;

/* A snapshot point with its membership, in fixed slots (no allocation). */
typedef struct node_meta {
    uint64_t index, term;
    size_t nv, nl;
    uint64_t ids[RAFT_MAX_MEMBERS]; /* voters, then learners */
} node_meta_t;

/* Committed entries on their way to the apply thread: the entries and one
 * buffer holding copies of their data (the core may drop its copy once the
 * batch is handed over); or (install) a snapshot to install first. */
typedef struct apply_batch {
    struct apply_batch *next;
    uint64_t term;
    size_t n;
    raft_entry_t *ents;
    uint8_t *data;
    int install;
    node_meta_t snap;
} apply_batch_t;

/* A message from a peer, copied with everything it points to in one block. */
typedef struct inbound {
    struct inbound *next;
    size_t bytes;
    raft_msg_t m;
} inbound_t;

enum { READ_NEW = 1, READ_ASKED, READ_APPLY };

/* A raft_node_read_index request. */
typedef struct read_req {
    uint64_t rctx;     /* the caller's */
    uint64_t ctx;      /* the core's round it was asked in (shared by a batch) */
    uint64_t index;    /* READ_APPLY: serve once applied >= index */
    uint64_t leader;   /* READ_ASKED: the leader it was asked of */
    uint64_t first_ms; /* queued */
    uint64_t asked_ms; /* last asked */
    int state;
} read_req_t;

/* What a finished read tells its caller (collected under mu, called after). */
typedef struct read_done {
    uint64_t rctx;
    int ok;
} read_done_t;

enum { ADMIN_CONF_CHANGE = 1, ADMIN_TRANSFER, ADMIN_PROGRESS };

/* An admin call executed by the raft thread; the caller waits on admin_cv. */
typedef struct admin_req {
    struct admin_req *next;
    int kind;
    uint8_t op;
    uint64_t id;
    const void *ctx;
    size_t len;
    raft_peer_progress_t *out;
    int rc, done;
} admin_req_t;

/* Proposals forwarded to the leader, counted in flight until the applied
 * index passes where they can be at the latest, or their wait expires. */
typedef struct fwd_batch {
    size_t n;
    uint64_t release_index, deadline_ms;
} fwd_batch_t;

#define NODE_MAX_READS 1024       /* outstanding raft_node_read_index requests */
#define NODE_READ_RETRY_MS 500    /* a read not answered is asked again */
#define NODE_READ_TIMEOUT_MS 5000 /* and fails (read_ready(rctx, 0)) after this */
#define NODE_INBOUND_MSGS 4096    /* peer messages queued for the raft thread */
#define NODE_INBOUND_BYTES (64u << 20)
#define NODE_FWD_BATCHES 64
#define NODE_META_HISTORY 8           /* recent compaction points the WAL may be released to */
#define NODE_MAX_MSG_BYTES (1u << 20) /* entry data per App (etcd's MaxSizePerMsg); at least one entry */

struct raft_node {
    raft_node_config_t cfg;
    uint64_t *peers;
    raft_t *raft;
    wal_t *wal;
    uint64_t applied_since_persist; /* apply thread only */
    uint64_t no_leader_wait_ms;     /* two election timeouts */

    /* raft thread only */
    node_meta_t hist[NODE_META_HISTORY]; /* newest last */
    size_t n_hist;
    uint64_t wal_snap_index; /* last snapshot point written to the WAL */
    read_done_t r_done[NODE_MAX_READS];
    node_meta_t start_install; /* the WAL's snapshot, newer than the state machine */
    int has_start_install;

    pthread_t apply_thread;
    pthread_mutex_t amu;
    pthread_cond_t acv; /* apply queue non-empty or stopping */
    /* guarded by amu */
    apply_batch_t *a_head, *a_tail;
    size_t a_entries;
    int a_stopping;
    read_done_t a_done[NODE_MAX_READS]; /* apply thread only */

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* raft thread: work arrived */
    pthread_cond_t admin_cv; /* admin callers: a request finished */
    /* guarded by mu */
    proposal_t *q_head, *q_tail;
    size_t q_len;       /* proposals queued */
    size_t q_taken;     /* proposals taken by the raft thread, not yet in status.last_index */
    uint64_t queued_to; /* last index handed to the apply queue */
    int stopping;
    int thread_done; /* the raft thread left its loop (stopped or failed) */
    raft_node_status_t status;
    uint64_t applied;    /* last index the apply thread finished */
    uint64_t release_to; /* state machine durable to here: WAL may go */
    inbound_t *in_head, *in_tail;
    size_t in_count, in_bytes;
    admin_req_t *admin_head, *admin_tail;
    struct {
        uint64_t to;
        int ok;
    } reports[RAFT_MAX_MEMBERS];
    size_t n_reports;
    read_req_t reads[NODE_MAX_READS];
    size_t n_reads;
    size_t n_read_apply; /* reads in READ_APPLY */
    int reads_new;       /* a read was queued since the raft thread last looked */
    uint64_t read_round; /* the core's ReadIndex ctx, one per round */
    fwd_batch_t fwd[NODE_FWD_BATCHES];
    size_t fwd_start, fwd_n;
    uint64_t fwd_total;
};

uint64_t node_now_ms(void);

/* node_peers.c */
int node_peer_work_locked(const raft_node_t *n);
void node_take_peer_work_locked(raft_node_t *n, inbound_t **in, admin_req_t **admin, size_t *n_reports,
                                uint64_t *report_to, int *report_ok);
void node_step_inbound(raft_node_t *n, inbound_t *in);
void node_run_admin(raft_node_t *n, admin_req_t *list);
void node_send_msgs(raft_node_t *n, const raft_ready_t *rd, int leader, int early);
void node_ask_reads(raft_node_t *n, uint64_t now);
void node_read_states(raft_node_t *n, const raft_read_state_t *rs, size_t count);
void node_reads_applied(raft_node_t *n, uint64_t applied); /* apply thread */
void node_fwd_add_locked(raft_node_t *n, size_t count, uint64_t now);
void node_fwd_expire_locked(raft_node_t *n, uint64_t now);
void node_fwd_refused_locked(raft_node_t *n);
void node_meta_from(node_meta_t *dst, const raft_snapshot_meta_t *src);
void node_meta_view(const node_meta_t *m, raft_snapshot_meta_t *out);
void node_hist_push(raft_node_t *n);
const node_meta_t *node_hist_find(const raft_node_t *n, uint64_t index);
void node_peers_exit(raft_node_t *n); /* raft thread, leaving: fail what waits */

#endif
