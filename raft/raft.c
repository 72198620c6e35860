/*
 * raft.c: the I/O-free Raft core (see raft.h). Owns the in-memory log (every
 * entry's data is a private heap copy), the per-peer replication progress, the
 * outbox of messages (each message owns a copy of the entries it carries),
 * pending ReadIndex requests and the bookkeeping that turns all of that into
 * ready batches. Deterministic: the only randomness is a seeded PRNG.
 */
#include "raft.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INFLIGHT 256
/* Defaults of raft_config_t's snapshot_hold_entries / _bytes. */
#define SNAPSHOT_HOLD_ENTRIES 65536
#define SNAPSHOT_HOLD_BYTES (64u << 20)

typedef struct raft_progress {
    uint64_t id;
    uint64_t match, next;
    raft_progress_state_t state;
    int paused; /* probe: an App is out, wait for a reply or a heartbeat */
    /* replicate: last index of each App in flight (ring buffer) */
    uint64_t inflight[MAX_INFLIGHT];
    size_t inflight_start, inflight_count;
    int vote;                  /* 0 none, 1 granted, -1 rejected (this election) */
    uint64_t read_ack;         /* highest ReadIndex round acknowledged */
    int recent_active;         /* heard from since the last check-quorum round */
    int prev_active;           /* ... or in the round before it (compaction's test) */
    int learner;               /* receives the log, never votes or counts for a quorum */
    uint64_t pending_snapshot; /* snapshot state: index of the snapshot sent */
    unsigned snap_elapsed;     /* snapshot state: ticks without an answer */
} raft_progress_t;

typedef struct raft_pending_read {
    uint64_t from; /* who asked: this member, or a follower to answer */
    uint64_t index, ctx;
    uint64_t seq; /* heartbeat round confirming it; 0 = waiting for a commit in this term */
} raft_pending_read_t;

struct raft {
    uint64_t id;
    raft_progress_t *prs;
    size_t n_prs;
    int self_voter;

    unsigned election_ticks, heartbeat_ticks, randomized_timeout;
    unsigned elapsed, hb_elapsed;
    uint64_t rng;

    uint64_t term, vote, lead;
    raft_role_t role;

    /* log: ents[i].index == base_index + 1 + i */
    raft_entry_t *ents;
    size_t n_ents, cap_ents;
    uint64_t base_index, base_term;
    uint64_t commit, applied, stabled;

    raft_msg_t *msgs;
    size_t n_msgs, cap_msgs;
    int bcast_pending;
    size_t max_msg_entries;
    size_t max_msg_bytes, max_inflight, max_uncommitted;
    size_t snapshot_hold_entries, snapshot_hold_bytes;
    size_t uncommitted; /* leader: data bytes proposed in this term and not committed */

    raft_pending_read_t *reads;
    size_t n_reads, cap_reads;
    uint64_t read_seq;
    raft_read_state_t *read_states;
    size_t n_read_states, cap_read_states;

    raft_hard_state_t prev_hs;
    /* what the outstanding ready handed out */
    int in_ready;
    raft_hard_state_t rd_hs;
    uint64_t rd_stabled_to, rd_applied_to;
    uint64_t msgs_rejected; /* peer messages refused by msg_check */
    size_t apply_budget;    /* committed entries a ready may hand out (driver's flow control) */
    unsigned debug_break;   /* RAFT_DEBUG_* (tests only) */
    int pre_vote, check_quorum;
    uint64_t pending_conf_index; /* leader: no new conf change until applied >= this */
    uint64_t lead_transferee;    /* leader: transfer target, 0 none */
    unsigned transfer_elapsed;
    /* the snapshot at the log base: membership there (voters, then learners) */
    uint64_t snap_ids[RAFT_MAX_MEMBERS];
    size_t snap_nv, snap_nl;
    uint64_t conf_index; /* index of the last applied conf change (or the log base) */
    int snap_pending;    /* a received snapshot for the next ready */
    raft_snapshot_meta_t snap_meta;
    uint64_t nomem;            /* allocations that failed (see try_realloc) */
    unsigned fail_alloc_every; /* test only: raft_debug_fail_alloc */
    uint64_t allocs;
    raft_msg_t msg_discard; /* where a message goes that could not be queued */
};

/* ---------------------------------------------------------------- helpers */

/* Every allocation of the running core goes through here. A failure is
 * counted (raft_status().nomem) and the caller backs out: a proposal or read
 * request fails with RAFT_ERR_NOMEM and changes nothing; a message that
 * cannot be built is dropped, as the network may drop it (Raft retries);
 * raft_step returns RAFT_ERR_NOMEM when it had to drop something.
 * Membership needs no allocation (RAFT_MAX_MEMBERS slots), so applying a
 * conf change or a snapshot never fails. */
static void *try_realloc(raft_t *r, void *p, size_t n) {
    if (r->fail_alloc_every && ++r->allocs % r->fail_alloc_every == 0) {
        r->nomem++;
        return NULL;
    }
    void *q = realloc(p, n);
    if (!q) r->nomem++;
    return q;
}

static uint64_t rng_next(raft_t *r) {
    /* splitmix64: deterministic for a given seed */
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t voter_count(const raft_t *r) {
    size_t n = 0;
    for (size_t i = 0; i < r->n_prs; i++) n += !r->prs[i].learner;
    return n;
}

static size_t quorum(const raft_t *r) { return voter_count(r) / 2 + 1; }

static uint64_t last_index(const raft_t *r) { return r->base_index + r->n_ents; }

uint64_t raft_term_at(const raft_t *r, uint64_t index) {
    if (index == r->base_index) return r->base_term;
    if (index < r->base_index || index > last_index(r)) return 0;
    return r->ents[index - r->base_index - 1].term;
}

const raft_entry_t *raft_entry_at(const raft_t *r, uint64_t index) {
    if (index <= r->base_index || index > last_index(r)) return NULL;
    return &r->ents[index - r->base_index - 1];
}

static uint64_t last_term(const raft_t *r) { return raft_term_at(r, last_index(r)); }

static raft_progress_t *progress_of(raft_t *r, uint64_t id) {
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id) return &r->prs[i];
    return NULL;
}

static void reset_election_timeout(raft_t *r) {
    r->elapsed = 0;
    r->randomized_timeout = r->election_ticks + (unsigned)(rng_next(r) % r->election_ticks);
}

/* Appends a copy of e (data duplicated) to the log; e->index must be next.
 * -1 (nothing changed) when out of memory. */
static int log_append_copy(raft_t *r, const raft_entry_t *e) {
    assert(e->index == last_index(r) + 1);
    assert(e->term >= last_term(r));
    if (r->n_ents == r->cap_ents) {
        size_t cap = r->cap_ents ? r->cap_ents * 2 : 64;
        raft_entry_t *ents = try_realloc(r, r->ents, cap * sizeof(*r->ents));
        if (!ents) return -1;
        r->ents = ents;
        r->cap_ents = cap;
    }
    uint8_t *d = NULL;
    if (e->len) {
        d = try_realloc(r, NULL, e->len);
        if (!d) return -1;
        memcpy(d, e->data, e->len);
    }
    raft_entry_t *dst = &r->ents[r->n_ents++];
    *dst = *e;
    dst->data = d;
    return 0;
}

/* Drops entries with index >= from (uncommitted conflicting suffix). */
static void log_truncate_from(raft_t *r, uint64_t from) {
    assert(from > r->commit); /* committed entries never change */
    assert(from > r->applied);
    assert(from > r->base_index);
    while (last_index(r) >= from) {
        raft_entry_t *e = &r->ents[--r->n_ents];
        free((void *)e->data);
    }
    if (r->stabled >= from) r->stabled = from - 1;
}

/* ---------------------------------------------------------------- outbox */

/* A new message in the outbox; out of memory, a scratch message that is
 * never sent (the message is lost, which Raft tolerates). */
static raft_msg_t *msg_new(raft_t *r, raft_msg_type_t type, uint64_t to) {
    raft_msg_t *m = &r->msg_discard;
    if (r->n_msgs == r->cap_msgs) {
        size_t cap = r->cap_msgs ? r->cap_msgs * 2 : 16;
        raft_msg_t *msgs = try_realloc(r, r->msgs, cap * sizeof(*r->msgs));
        if (msgs) {
            r->msgs = msgs;
            r->cap_msgs = cap;
        }
    }
    if (r->n_msgs < r->cap_msgs) m = &r->msgs[r->n_msgs++];
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = r->id;
    m->to = to;
    m->term = r->term;
    return m;
}

/* Gives m its own copy of log entries [lo, hi]: one block holding the entry
 * array followed by all data bytes, so freeing m->entries frees everything. */
static void msg_attach_entries(raft_t *r, raft_msg_t *m, uint64_t lo, uint64_t hi) {
    if (lo > hi || m == &r->msg_discard) return;
    size_t n = (size_t)(hi - lo + 1), bytes = 0;
    for (uint64_t i = lo; i <= hi; i++) bytes += raft_entry_at(r, i)->len;
    uint8_t *block = try_realloc(r, NULL, n * sizeof(raft_entry_t) + bytes);
    if (!block) { /* drop the whole App (it is the last message) */
        assert(m == &r->msgs[r->n_msgs - 1]);
        r->n_msgs--;
        return;
    }
    raft_entry_t *ents = (raft_entry_t *)block;
    uint8_t *data = block + n * sizeof(raft_entry_t);
    for (size_t k = 0; k < n; k++) {
        const raft_entry_t *src = raft_entry_at(r, lo + k);
        ents[k] = *src;
        if (src->len) {
            memcpy(data, src->data, src->len);
            ents[k].data = data;
            data += src->len;
        } else {
            ents[k].data = NULL;
        }
    }
    m->entries = ents;
    m->n_entries = n;
}

static void outbox_clear(raft_t *r) {
    for (size_t i = 0; i < r->n_msgs; i++) {
        free(r->msgs[i].entries);
        free((void *)r->msgs[i].snapshot);
    }
    r->n_msgs = 0;
}

/* ---------------------------------------------------------------- reads */

static void reads_clear(raft_t *r) { r->n_reads = 0; }

/* Out of memory the read state is lost: the driver's read times out, as
 * after a leader change. */
static void read_state_push(raft_t *r, uint64_t index, uint64_t ctx) {
    if (r->n_read_states == r->cap_read_states) {
        size_t cap = r->cap_read_states ? r->cap_read_states * 2 : 8;
        raft_read_state_t *rs = try_realloc(r, r->read_states, cap * sizeof(*r->read_states));
        if (!rs) return;
        r->read_states = rs;
        r->cap_read_states = cap;
    }
    r->read_states[r->n_read_states].index = index;
    r->read_states[r->n_read_states].ctx = ctx;
    r->n_read_states++;
}

static int committed_in_term(const raft_t *r) { return raft_term_at(r, r->commit) == r->term; }

/* Releases every pending read a quorum has confirmed (in FIFO order). */
static void reads_check(raft_t *r) {
    size_t done = 0;
    while (done < r->n_reads) {
        raft_pending_read_t *rd = &r->reads[done];
        if (rd->seq == 0) break;
        size_t acks = r->self_voter ? 1 : 0;
        for (size_t i = 0; i < r->n_prs; i++)
            if (r->prs[i].id != r->id && !r->prs[i].learner && r->prs[i].read_ack >= rd->seq) acks++;
        if (acks < quorum(r) && !(r->debug_break & RAFT_DEBUG_READ_NO_QUORUM)) break;
        if (rd->from == r->id) {
            read_state_push(r, rd->index, rd->ctx);
        } else {
            raft_msg_t *m = msg_new(r, RAFT_MSG_READ_INDEX_RESP, rd->from);
            m->index = rd->index;
            m->ctx = rd->ctx;
        }
        done++;
    }
    if (!done) return;
    memmove(r->reads, r->reads + done, (r->n_reads - done) * sizeof(*r->reads));
    r->n_reads -= done;
}

static void bcast_heartbeat(raft_t *r);
static int send_snapshot(raft_t *r, raft_progress_t *pr);
static void handle_snapshot(raft_t *r, const raft_msg_t *m);
static raft_progress_t *progress_add(raft_t *r, uint64_t id, int learner);
static void self_refresh(raft_t *r);
static int read_queue(raft_t *r, uint64_t from, uint64_t ctx);

/* A leader that has committed in its term holds reads waiting for a round. */
static int reads_startable(const raft_t *r) {
    if (r->role != RAFT_LEADER || !committed_in_term(r)) return 0;
    for (size_t i = 0; i < r->n_reads; i++)
        if (!r->reads[i].seq) return 1;
    return 0;
}
static void campaign(raft_t *r, int pre, int transfer);

/* Once the leader has committed in its term, waiting reads get their index
 * and a confirmation round. */
static void reads_start_waiting(raft_t *r) {
    if (r->role != RAFT_LEADER || !committed_in_term(r)) return;
    int started = 0;
    for (size_t i = 0; i < r->n_reads; i++) {
        if (r->reads[i].seq) continue;
        if (!started) r->read_seq++;
        started = 1;
        r->reads[i].index = r->commit;
        r->reads[i].seq = r->read_seq;
    }
    if (started) {
        if (r->n_prs > 1) bcast_heartbeat(r);
        reads_check(r);
    }
}

/* ---------------------------------------------------------------- replication */

/* ---- in-flight window (replicate state) */

static int inflight_full(const raft_t *r, const raft_progress_t *pr) {
    return pr->inflight_count >= r->max_inflight;
}

static void inflight_add(raft_progress_t *pr, uint64_t last) {
    pr->inflight[(pr->inflight_start + pr->inflight_count) % MAX_INFLIGHT] = last;
    pr->inflight_count++;
}

/* Frees every App whose last index is <= index (acknowledged). */
static void inflight_free_to(raft_progress_t *pr, uint64_t index) {
    while (pr->inflight_count && pr->inflight[pr->inflight_start] <= index) {
        pr->inflight_start = (pr->inflight_start + 1) % MAX_INFLIGHT;
        pr->inflight_count--;
    }
}

static void inflight_free_first(raft_progress_t *pr) {
    if (!pr->inflight_count) return;
    pr->inflight_start = (pr->inflight_start + 1) % MAX_INFLIGHT;
    pr->inflight_count--;
}

static void progress_become(raft_progress_t *pr, raft_progress_state_t state, uint64_t next) {
    pr->state = state;
    pr->next = next;
    pr->paused = 0;
    pr->inflight_start = pr->inflight_count = 0;
}

/* Last index of an App starting at next: at most max_msg_entries entries and
 * max_msg_bytes of data, but always at least one entry. */
static uint64_t app_last(const raft_t *r, uint64_t next) {
    uint64_t last = last_index(r);
    if (next > last) return next - 1;
    uint64_t hi = next;
    size_t bytes = raft_entry_at(r, next)->len;
    while (hi < last && hi - next + 1 < r->max_msg_entries) {
        size_t len = raft_entry_at(r, hi + 1)->len;
        if (bytes + len > r->max_msg_bytes) break;
        bytes += len;
        hi++;
    }
    return hi;
}

/* The follower needs entries already compacted: send the snapshot of the
 * log base (metadata; the driver attaches the data). Only to a follower
 * heard from recently (etcd-raft), then wait in snapshot state. */
static int send_snapshot(raft_t *r, raft_progress_t *pr) {
    if (!pr->recent_active) return 0;
    size_t n = r->snap_nv + r->snap_nl;
    raft_snapshot_meta_t *sm = try_realloc(r, NULL, sizeof(*sm) + n * sizeof(uint64_t));
    if (!sm) return 0;
    uint64_t *ids = (uint64_t *)(sm + 1);
    if (n) memcpy(ids, r->snap_ids, n * sizeof(uint64_t));
    *sm = (raft_snapshot_meta_t){.index = r->base_index,
                                 .term = r->base_term,
                                 .voters = ids,
                                 .n_voters = r->snap_nv,
                                 .learners = ids + r->snap_nv,
                                 .n_learners = r->snap_nl};
    raft_msg_t *m = msg_new(r, RAFT_MSG_SNAP, pr->id);
    if (m == &r->msg_discard) {
        free(sm);
        return 0;
    }
    m->index = r->base_index;
    m->log_term = r->base_term;
    m->commit = r->commit;
    m->snapshot = sm;
    progress_become(pr, RAFT_PROGRESS_SNAPSHOT, pr->next);
    pr->pending_snapshot = r->base_index;
    pr->snap_elapsed = 0;
    return 1;
}

/* Sends the entries after pr->next-1 (or an empty App carrying the commit).
 * Returns 1 if a message was sent. */
static int send_append(raft_t *r, raft_progress_t *pr, int allow_empty) {
    if (pr->state == RAFT_PROGRESS_SNAPSHOT) return 0;
    if (pr->state == RAFT_PROGRESS_PROBE && pr->paused) return 0;
    if (pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(r, pr)) return 0;
    if (pr->next <= r->base_index) return send_snapshot(r, pr);
    uint64_t prev = pr->next - 1;
    uint64_t hi = app_last(r, pr->next);
    if (hi < pr->next && !allow_empty) return 0;
    raft_msg_t *m = msg_new(r, RAFT_MSG_APP, pr->id);
    m->index = prev;
    m->log_term = raft_term_at(r, prev);
    m->commit = r->commit;
    msg_attach_entries(r, m, pr->next, hi);
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
        if (hi >= pr->next) {
            inflight_add(pr, hi);
            pr->next = hi + 1;
        }
    } else {
        pr->paused = 1;
    }
    return 1;
}

/* Replicate mode: send everything outstanding in message-sized batches. */
static void send_all(raft_t *r, raft_progress_t *pr, int allow_empty) {
    if (!send_append(r, pr, allow_empty)) return;
    while (pr->state == RAFT_PROGRESS_REPLICATE && pr->next <= last_index(r))
        if (!send_append(r, pr, 0)) break;
}

static void bcast_append(raft_t *r) {
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id != r->id) send_all(r, &r->prs[i], 1);
}

static void bcast_heartbeat(raft_t *r) {
    for (size_t i = 0; i < r->n_prs; i++) {
        raft_progress_t *pr = &r->prs[i];
        if (pr->id == r->id) continue;
        raft_msg_t *m = msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);
        m->commit = pr->match < r->commit ? pr->match : r->commit;
        m->ctx = r->read_seq;
    }
}

static int cmp_desc(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Leader: advance commit to the highest index a quorum holds durably, but
 * only by counting replicas of an entry of the current term (Raft 5.4.2). */
static int maybe_commit(raft_t *r) {
    assert(r->role == RAFT_LEADER);
    uint64_t matches[r->n_prs + 1];
    size_t nv = 0;
    for (size_t i = 0; i < r->n_prs; i++)
        if (!r->prs[i].learner) matches[nv++] = r->prs[i].id == r->id ? r->stabled : r->prs[i].match;
    if (nv == 0) return 0;
    qsort(matches, nv, sizeof(uint64_t), cmp_desc);
    size_t q = quorum(r);
    if ((r->debug_break & RAFT_DEBUG_COMMIT_NO_QUORUM) && q > 1) q--;
    uint64_t mci = matches[q - 1];
    if (mci <= r->commit || raft_term_at(r, mci) != r->term) return 0;
    assert(mci <= last_index(r));
    for (uint64_t k = r->commit + 1; k <= mci; k++) {
        const raft_entry_t *e = raft_entry_at(r, k);
        if (e && e->term == r->term) r->uncommitted -= e->len < r->uncommitted ? e->len : r->uncommitted;
    }
    r->commit = mci;
    return 1; /* waiting reads start their round at the next ready */
}

/* ---------------------------------------------------------------- roles */

static void become_follower(raft_t *r, uint64_t term, uint64_t lead) {
    assert(term >= r->term);
    if (term != r->term) {
        r->term = term;
        r->vote = 0;
    }
    r->role = RAFT_FOLLOWER;
    r->lead = lead;
    r->hb_elapsed = 0;
    r->lead_transferee = 0;
    r->bcast_pending = 0;
    reset_election_timeout(r);
    reads_clear(r);
}

static int append_own_entry(raft_t *r, uint8_t type, const void *data, size_t len) {
    raft_entry_t e = {.term = r->term, .index = last_index(r) + 1, .type = type, .data = data, .len = len};
    if (log_append_copy(r, &e) != 0) return -1;
    r->bcast_pending = 1;
    return 0;
}

static void become_leader(raft_t *r) {
    assert(r->role == RAFT_CANDIDATE);
    r->role = RAFT_LEADER;
    r->lead = r->id;
    r->uncommitted = 0;
    r->hb_elapsed = 0;
    reset_election_timeout(r);
    for (size_t i = 0; i < r->n_prs; i++) {
        raft_progress_t *pr = &r->prs[i];
        pr->match = pr->pending_snapshot = 0;
        progress_become(pr, RAFT_PROGRESS_PROBE, last_index(r) + 1);
        pr->read_ack = 0;
        pr->recent_active = pr->id == r->id;
        pr->prev_active = 1; /* as if heard from: the first round decides */
    }
    (void)append_own_entry(r, RAFT_ENTRY_NORMAL, NULL, 0); /* out of memory: a later entry commits the term */
    /* no conf change before this leader applied its whole log (incl. its empty entry) */
    r->pending_conf_index = last_index(r);
    r->lead_transferee = 0;
    if (r->n_prs > 1) {
        /* probes start at the new empty entry */
        bcast_append(r);
        r->bcast_pending = 0;
    }
}

static void count_vote(raft_t *r, uint64_t from, int granted) {
    raft_progress_t *pr = progress_of(r, from);
    if (!pr) return;
    if (pr->vote == 0) pr->vote = granted ? 1 : -1;
    size_t yes = 0, no = 0;
    for (size_t i = 0; i < r->n_prs; i++) {
        if (r->prs[i].learner) continue;
        if (r->prs[i].vote > 0) yes++;
        if (r->prs[i].vote < 0) no++;
    }
    if (yes >= quorum(r)) {
        if (r->role == RAFT_PRE_CANDIDATE)
            campaign(r, 0, 0);
        else
            become_leader(r);
    } else if (no >= quorum(r)) {
        become_follower(r, r->term, 0);
    }
}

/* pre = 1: ask for pre-votes for term+1 without changing any state that
 * persists; pre = 0: a real election in term+1. */
static void campaign(raft_t *r, int pre, int transfer) {
    if (r->term == UINT64_MAX) return;
    if (pre) {
        r->role = RAFT_PRE_CANDIDATE;
    } else {
        r->term++;
        r->vote = r->id;
        r->role = RAFT_CANDIDATE;
    }
    r->lead = 0;
    reset_election_timeout(r);
    reads_clear(r);
    for (size_t i = 0; i < r->n_prs; i++) r->prs[i].vote = 0;
    for (size_t i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == r->id) continue;
        raft_msg_t *m = msg_new(r, pre ? RAFT_MSG_PRE_VOTE : RAFT_MSG_VOTE, r->prs[i].id);
        if (pre) m->term = r->term + 1;
        if (transfer) m->ctx = RAFT_VOTE_TRANSFER;
        m->index = last_index(r);
        m->log_term = last_term(r);
    }
    count_vote(r, r->id, 1);
}

void raft_campaign(raft_t *r) {
    assert(!r->in_ready);
    if (!r->self_voter || r->role == RAFT_LEADER) return;
    campaign(r, 0, 0);
}

/* Leader, every election timeout: step down unless a quorum was heard from. */
static void check_quorum_round(raft_t *r) {
    size_t active = 0;
    for (size_t i = 0; i < r->n_prs; i++) {
        raft_progress_t *pr = &r->prs[i];
        if (!pr->learner && (pr->id == r->id ? r->self_voter : pr->recent_active)) active++;
        pr->prev_active = pr->recent_active;
        pr->recent_active = pr->id == r->id;
    }
    if (r->check_quorum && active < quorum(r)) become_follower(r, r->term, 0);
}

void raft_tick(raft_t *r) {
    assert(!r->in_ready);
    if (r->role == RAFT_LEADER) {
        if (r->lead_transferee && ++r->transfer_elapsed >= r->election_ticks) r->lead_transferee = 0;
        for (size_t i = 0; i < r->n_prs; i++) { /* a snapshot never answered is tried again */
            raft_progress_t *pr = &r->prs[i];
            if (pr->state == RAFT_PROGRESS_SNAPSHOT && ++pr->snap_elapsed >= 2 * r->election_ticks)
                progress_become(pr, RAFT_PROGRESS_PROBE, pr->match + 1);
        }
        if (++r->elapsed >= r->election_ticks) {
            r->elapsed = 0;
            check_quorum_round(r);
            if (r->role != RAFT_LEADER) return;
        }
        if (++r->hb_elapsed >= r->heartbeat_ticks) {
            r->hb_elapsed = 0;
            if (r->n_prs > 1) bcast_heartbeat(r);
        }
        return;
    }
    if (r->self_voter && voter_count(r) == 1) { /* the only voter: no one to wait for */
        raft_campaign(r);
        return;
    }
    if (++r->elapsed >= r->randomized_timeout && r->self_voter) campaign(r, r->pre_vote, 0);
}

/* ---------------------------------------------------------------- step */

static void commit_to(raft_t *r, uint64_t c) {
    if (c <= r->commit) return;
    assert(c <= last_index(r));
    r->commit = c;
}

/* Largest index <= index whose term <= term (or the log base). */
static uint64_t find_conflict_by_term(const raft_t *r, uint64_t index, uint64_t term) {
    if (index > last_index(r)) index = last_index(r);
    while (index > r->base_index && raft_term_at(r, index) > term) index--;
    return index;
}

static void handle_append(raft_t *r, const raft_msg_t *m) {
    if (m->index < r->commit) {
        raft_msg_t *out = msg_new(r, RAFT_MSG_APP_RESP, m->from);
        out->index = r->commit;
        return;
    }
    if (m->index <= last_index(r) && raft_term_at(r, m->index) == m->log_term) {
        for (size_t k = 0; k < m->n_entries; k++) {
            const raft_entry_t *e = &m->entries[k];
            if (e->index <= last_index(r)) {
                if (raft_term_at(r, e->index) == e->term) continue;
                log_truncate_from(r, e->index);
            }
            if (log_append_copy(r, e) != 0) return; /* no answer: the leader sends again */
        }
        uint64_t last_new = m->index + m->n_entries;
        commit_to(r, m->commit < last_new ? m->commit : last_new);
        raft_msg_t *out = msg_new(r, RAFT_MSG_APP_RESP, m->from);
        out->index = last_new;
        return;
    }
    uint64_t hint = m->index < last_index(r) ? m->index : last_index(r);
    hint = find_conflict_by_term(r, hint, m->log_term);
    raft_msg_t *out = msg_new(r, RAFT_MSG_APP_RESP, m->from);
    out->index = m->index;
    out->reject = 1;
    out->reject_hint = hint;
    out->log_term = raft_term_at(r, hint);
}

static void handle_app_resp(raft_t *r, raft_progress_t *pr, const raft_msg_t *m) {
    if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
        if (m->reject) return; /* an answer to an older App */
        if (m->index >= pr->pending_snapshot) progress_become(pr, RAFT_PROGRESS_PROBE, m->index + 1);
    }
    if (m->reject) {
        if (pr->state == RAFT_PROGRESS_REPLICATE) {
            if (m->index <= pr->match) return; /* stale */
            progress_become(pr, RAFT_PROGRESS_PROBE, pr->match + 1);
        } else {
            if (pr->next - 1 != m->index) return; /* stale */
            uint64_t probe = m->reject_hint;
            if (m->log_term > 0) probe = find_conflict_by_term(r, probe, m->log_term);
            uint64_t next = m->index < probe + 1 ? m->index : probe + 1;
            if (next < pr->match + 1) next = pr->match + 1;
            if (next < 1) next = 1;
            pr->next = next;
        }
        pr->paused = 0;
        send_append(r, pr, 1);
        return;
    }
    pr->paused = 0;
    if (m->index > pr->match) {
        pr->match = m->index;
        if (pr->state == RAFT_PROGRESS_PROBE) {
            progress_become(pr, RAFT_PROGRESS_REPLICATE, pr->match + 1);
        } else if (pr->state == RAFT_PROGRESS_REPLICATE) {
            inflight_free_to(pr, m->index);
            if (pr->next < m->index + 1) pr->next = m->index + 1;
        }
        if (pr->id == r->lead_transferee && pr->match == last_index(r))
            msg_new(r, RAFT_MSG_TIMEOUT_NOW, pr->id);
        if (maybe_commit(r)) {
            bcast_append(r);
            return;
        }
    }
    send_all(r, pr, 0);
}

static void step_leader(raft_t *r, const raft_msg_t *m) {
    raft_progress_t *pr = progress_of(r, m->from);
    if (!pr || pr->id == r->id) return;
    pr->recent_active = 1;
    switch (m->type) {
    case RAFT_MSG_APP_RESP: handle_app_resp(r, pr, m); break;
    case RAFT_MSG_READ_INDEX:
        (void)read_queue(r, m->from, m->ctx); /* out of memory: lost, the follower retries */
        break;
    case RAFT_MSG_HEARTBEAT_RESP:
        pr->paused = 0;
        /* a full window whose acks were lost must not stall the follower */
        if (pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(r, pr)) inflight_free_first(pr);
        if (m->ctx > pr->read_ack) pr->read_ack = m->ctx;
        /* an empty App at next-1 uncovers entries lost in flight (reject -> probe) */
        if (pr->match < last_index(r)) send_all(r, pr, 1);
        reads_check(r);
        break;
    default: break;
    }
}

/* A vote or pre-vote request (m->term >= r->term here). A pre-vote is
 * answered as the real vote would be in m->term, changing nothing. */
static void step_vote(raft_t *r, const raft_msg_t *m) {
    int pre = m->type == RAFT_MSG_PRE_VOTE;
    int can_vote = r->vote == m->from || (r->vote == 0 && r->lead == 0) || (pre && m->term > r->term);
    if (r->debug_break & RAFT_DEBUG_VOTE_SKIP_TERM) can_vote = 1;
    int log_ok = m->log_term > last_term(r) || (m->log_term == last_term(r) && m->index >= last_index(r));
    raft_msg_t *out = msg_new(r, pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
    if (can_vote && log_ok && r->role != RAFT_LEADER) {
        if (pre) {
            out->term = m->term;
        } else {
            r->vote = m->from;
            r->elapsed = 0;
        }
    } else {
        out->reject = 1;
    }
}

/* CheckQuorum's leader lease: a member that heard from its leader within
 * an election timeout does not help anyone unseat it. */
static int in_lease(const raft_t *r) {
    return r->check_quorum && r->lead != 0 && r->elapsed < r->election_ticks;
}

/* ---------------------------------------------------------------- peer input */

/* The entries of an App must follow m->index one by one, with terms that
 * never decrease, start at or above m->log_term and never exceed the
 * sender's term (a leader only has entries of its term or older). */
static int entries_check(const raft_msg_t *m) {
    if (m->n_entries && !m->entries) return 0;
    if (m->n_entries > UINT64_MAX - m->index) return 0;
    uint64_t prev_term = m->log_term;
    for (size_t k = 0; k < m->n_entries; k++) {
        const raft_entry_t *e = &m->entries[k];
        if (e->index != m->index + 1 + k || e->term < prev_term || e->term > m->term) return 0;
        if (e->len && !e->data) return 0;
        if (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_CONF_CHANGE) return 0;
        prev_term = e->term;
    }
    return 1;
}

/* A snapshot names its index and term (as the message does), is committed
 * on the sender, has at least one voter and no id 0. */
static int snapshot_check(const raft_msg_t *m) {
    const raft_snapshot_meta_t *sm = m->snapshot;
    if (!sm || sm->index == 0 || sm->index != m->index || sm->term != m->log_term) return 0;
    /* a leader's snapshot is of committed state; the top index is no log position */
    if (sm->index > m->commit || sm->index == UINT64_MAX) return 0;
    if (m->log_term > m->term || sm->n_voters == 0 || !sm->voters) return 0;
    if (sm->n_learners && !sm->learners) return 0;
    if (sm->n_voters > RAFT_MAX_MEMBERS || sm->n_learners > RAFT_MAX_MEMBERS - sm->n_voters) return 0;
    for (size_t i = 0; i < sm->n_voters; i++)
        if (sm->voters[i] == 0) return 0;
    for (size_t i = 0; i < sm->n_learners; i++)
        if (sm->learners[i] == 0) return 0;
    return 1;
}

/* Whatever a peer sends is checked here, before it can touch the state:
 * ids, type, terms and indexes that no correct peer can produce. A message
 * that fails is refused (RAFT_ERR_INVALID) and counted, never asserted on. */
static int msg_check(const raft_t *r, const raft_msg_t *m) {
    if (m->to != r->id || m->from == 0 || m->from == r->id) return 0;
    /* Requests may come from a member this one has not applied yet (a new
     * leader, a new voter campaigning); an answer must come from a member. */
    int request = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE || m->type == RAFT_MSG_APP ||
                  m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_TIMEOUT_NOW ||
                  m->type == RAFT_MSG_SNAP;
    if (!request && !progress_of((raft_t *)r, m->from)) return 0;
    if (m->term == 0 || m->term == UINT64_MAX) return 0; /* no term after it to campaign in */
    switch (m->type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PRE_VOTE: return m->log_term <= m->term;
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PRE_VOTE_RESP: return 1;
    case RAFT_MSG_APP: return m->log_term <= m->term && entries_check(m);
    case RAFT_MSG_SNAP: return m->n_entries == 0 && snapshot_check(m);
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_TIMEOUT_NOW:
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_READ_INDEX_RESP: return m->n_entries == 0;
    case RAFT_MSG_APP_RESP:
        /* a success can only acknowledge entries this leader sent */
        if (m->term == r->term && r->role == RAFT_LEADER && !m->reject && m->index > last_index(r)) return 0;
        return 1;
    case RAFT_MSG_HEARTBEAT_RESP:
        /* acknowledges a ReadIndex round; a round not started yet is a lie */
        return m->term != r->term || r->role != RAFT_LEADER || m->ctx <= r->read_seq;
    default: return 0;
    }
}

/* A second leader in our own term breaks election safety: a peer is broken
 * or lying. Refused, never obeyed. */
static int from_rival_leader(const raft_t *r, const raft_msg_t *m) {
    return r->role == RAFT_LEADER && m->term == r->term &&
           (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP);
}

static int step(raft_t *r, const raft_msg_t *m);

int raft_step(raft_t *r, const raft_msg_t *m) {
    uint64_t nomem = r->nomem;
    int rc = step(r, m);
    return rc == RAFT_OK && r->nomem != nomem ? RAFT_ERR_NOMEM : rc;
}

static int step(raft_t *r, const raft_msg_t *m) {
    assert(!r->in_ready);
    if (!msg_check(r, m) || from_rival_leader(r, m)) {
        r->msgs_rejected++;
        return RAFT_ERR_INVALID;
    }
    int vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PRE_VOTE;
    if (m->term > r->term) {
        /* ignored, as etcd-raft does, unless the leader itself asked for it */
        if (vote_req && in_lease(r) && m->ctx != RAFT_VOTE_TRANSFER) return RAFT_OK;
        /* a pre-vote (or a grant of ours) carries a future term: nobody moves to it */
        int future = m->type == RAFT_MSG_PRE_VOTE || (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject);
        if (!future) {
            uint64_t lead =
                (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP)
                    ? m->from
                    : 0;
            become_follower(r, m->term, lead);
        }
    } else if (m->term < r->term) {
        /* a stale leader learns of the newer term from our reply */
        if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP)
            msg_new(r, RAFT_MSG_APP_RESP, m->from);
        else if (m->type == RAFT_MSG_VOTE)
            msg_new(r, RAFT_MSG_VOTE_RESP, m->from)->reject = 1;
        else if (m->type == RAFT_MSG_PRE_VOTE)
            msg_new(r, RAFT_MSG_PRE_VOTE_RESP, m->from)->reject = 1;
        return RAFT_OK;
    }
    switch (m->type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PRE_VOTE: step_vote(r, m); return RAFT_OK;
    case RAFT_MSG_VOTE_RESP:
        if (r->role == RAFT_CANDIDATE) count_vote(r, m->from, !m->reject);
        return RAFT_OK;
    case RAFT_MSG_PRE_VOTE_RESP:
        /* a grant names the term we asked for; a refusal our current one */
        if (r->role == RAFT_PRE_CANDIDATE && m->term == (m->reject ? r->term : r->term + 1))
            count_vote(r, m->from, !m->reject);
        return RAFT_OK;
    default: break;
    }
    if (r->role == RAFT_LEADER) {
        step_leader(r, m);
        return RAFT_OK;
    }
    if (m->type == RAFT_MSG_READ_INDEX_RESP) {
        if (m->from == r->lead) read_state_push(r, m->index, m->ctx);
        return RAFT_OK;
    }
    if (m->type == RAFT_MSG_TIMEOUT_NOW) {
        if (r->self_voter) campaign(r, 0, 1);
        return RAFT_OK;
    }
    if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAP) {
        if (r->role == RAFT_CANDIDATE || r->role == RAFT_PRE_CANDIDATE) become_follower(r, m->term, m->from);
        r->lead = m->from;
        r->elapsed = 0;
        if (m->type == RAFT_MSG_SNAP) {
            handle_snapshot(r, m);
        } else if (m->type == RAFT_MSG_APP) {
            handle_append(r, m);
        } else {
            commit_to(r, m->commit < last_index(r) ? m->commit : last_index(r));
            raft_msg_t *out = msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
            out->ctx = m->ctx;
        }
    }
    return RAFT_OK;
}

int raft_propose_type(raft_t *r, uint8_t type, const void *data, size_t len) {
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER) return RAFT_ERR_NOT_LEADER;
    if (r->lead_transferee) return RAFT_ERR_DROPPED;
    if (type == RAFT_ENTRY_CONF_CHANGE && r->pending_conf_index > r->applied) return RAFT_ERR_DROPPED;
    /* as etcd-raft: one entry always fits in an empty budget */
    if (r->uncommitted > 0 && len > r->max_uncommitted - r->uncommitted) return RAFT_ERR_DROPPED;
    if (append_own_entry(r, type, data, len) != 0) return RAFT_ERR_NOMEM;
    r->uncommitted += len;
    if (type == RAFT_ENTRY_CONF_CHANGE) r->pending_conf_index = last_index(r);
    return RAFT_OK;
}

int raft_propose_conf_change(raft_t *r, uint8_t op, uint64_t id, const void *ctx, size_t ctx_len) {
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER) return RAFT_ERR_NOT_LEADER;
    const raft_progress_t *pr = progress_of(r, id);
    if (id == 0 || (ctx_len && !ctx)) return RAFT_ERR_INVALID;
    switch (op) {
    case RAFT_CONF_ADD_VOTER:
        if (pr && !pr->learner) return RAFT_ERR_INVALID;
        break;
    case RAFT_CONF_ADD_LEARNER:
        if (pr) return RAFT_ERR_INVALID;
        break;
    case RAFT_CONF_REMOVE:
        if (!pr || (!pr->learner && voter_count(r) == 1)) return RAFT_ERR_INVALID;
        break;
    default: return RAFT_ERR_INVALID;
    }
    if (!pr && r->n_prs >= RAFT_MAX_MEMBERS) return RAFT_ERR_INVALID; /* no slot left */
    if (ctx_len > SIZE_MAX - RAFT_CONF_CHANGE_LEN) return RAFT_ERR_INVALID;
    uint8_t *d = malloc(RAFT_CONF_CHANGE_LEN + ctx_len);
    if (!d) return RAFT_ERR_NOMEM;
    d[0] = op;
    for (int b = 0; b < 8; b++) d[1 + b] = (uint8_t)(id >> (56 - 8 * b));
    if (ctx_len) memcpy(d + RAFT_CONF_CHANGE_LEN, ctx, ctx_len);
    int rc = raft_propose_type(r, RAFT_ENTRY_CONF_CHANGE, d, RAFT_CONF_CHANGE_LEN + ctx_len);
    free(d);
    return rc;
}

int raft_transfer_leader(raft_t *r, uint64_t to) {
    assert(!r->in_ready);
    if (r->role != RAFT_LEADER) return RAFT_ERR_NOT_LEADER;
    raft_progress_t *pr = progress_of(r, to);
    if (!pr || pr->learner) return RAFT_ERR_INVALID;
    if (to == r->id) return RAFT_OK;
    r->lead_transferee = to;
    r->transfer_elapsed = 0;
    if (pr->match == last_index(r))
        msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
    else
        send_all(r, pr, 1);
    return RAFT_OK;
}

int raft_propose(raft_t *r, const void *data, size_t len) {
    return raft_propose_type(r, RAFT_ENTRY_NORMAL, data, len);
}

/* Leader: queues a read; its confirmation round starts at the next ready,
 * together with every other read queued until then. */
static int read_queue(raft_t *r, uint64_t from, uint64_t ctx) {
    if (r->n_reads == r->cap_reads) {
        size_t cap = r->cap_reads ? r->cap_reads * 2 : 8;
        raft_pending_read_t *reads = try_realloc(r, r->reads, cap * sizeof(*r->reads));
        if (!reads) return -1;
        r->reads = reads;
        r->cap_reads = cap;
    }
    r->reads[r->n_reads++] = (raft_pending_read_t){.from = from, .index = 0, .ctx = ctx, .seq = 0};
    return 0;
}

int raft_read_index(raft_t *r, uint64_t ctx) {
    assert(!r->in_ready);
    if (r->role == RAFT_LEADER) return read_queue(r, r->id, ctx) == 0 ? RAFT_OK : RAFT_ERR_NOMEM;
    if (r->lead == 0) return RAFT_ERR_NOT_LEADER;
    raft_msg_t *m = msg_new(r, RAFT_MSG_READ_INDEX, r->lead);
    m->ctx = ctx;
    return m == &r->msg_discard ? RAFT_ERR_NOMEM : RAFT_OK;
}

/* ---------------------------------------------------------------- membership */

static void self_refresh(raft_t *r) {
    const raft_progress_t *me = progress_of(r, r->id);
    r->self_voter = me && !me->learner;
}

/* NULL when all RAFT_MAX_MEMBERS slots are taken (refused at proposal time). */
static raft_progress_t *progress_add(raft_t *r, uint64_t id, int learner) {
    if (r->n_prs >= RAFT_MAX_MEMBERS) return NULL;
    raft_progress_t *pr = &r->prs[r->n_prs++];
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->learner = learner;
    pr->recent_active = 1; /* a new member gets one election timeout to answer */
    progress_become(pr, RAFT_PROGRESS_PROBE, last_index(r) + 1);
    return pr;
}

static void progress_remove(raft_t *r, uint64_t id) {
    for (size_t i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id != id) continue;
        memmove(&r->prs[i], &r->prs[i + 1], (r->n_prs - i - 1) * sizeof(*r->prs));
        r->n_prs--;
        return;
    }
}

/* Applies one committed conf change to this member's configuration. */
static void conf_apply(raft_t *r, const raft_entry_t *e) {
    if (e->type != RAFT_ENTRY_CONF_CHANGE || e->len < RAFT_CONF_CHANGE_LEN || !e->data) return;
    uint64_t id = 0;
    for (int b = 0; b < 8; b++) id = (id << 8) | e->data[1 + b];
    if (id == 0) return;
    raft_progress_t *pr = progress_of(r, id);
    switch (e->data[0]) {
    case RAFT_CONF_ADD_VOTER:
        if (pr)
            pr->learner = 0;
        else
            pr = progress_add(r, id, 0);
        break;
    case RAFT_CONF_ADD_LEARNER:
        if (!pr) pr = progress_add(r, id, 1);
        break;
    case RAFT_CONF_REMOVE:
        if (!pr || (!pr->learner && voter_count(r) == 1)) return; /* never the last voter */
        progress_remove(r, id);
        pr = NULL;
        if (r->lead_transferee == id) r->lead_transferee = 0;
        break;
    default: return;
    }
    self_refresh(r);
    r->conf_index = e->index;
    if (r->role != RAFT_LEADER) return;
    if (!r->self_voter) {  /* removed (or demoted): step down, and let the */
        uint64_t heir = 0; /* most caught-up voter campaign at once */
        for (size_t i = 0; i < r->n_prs; i++)
            if (!r->prs[i].learner && r->prs[i].id != r->id && r->prs[i].match == last_index(r))
                heir = r->prs[i].id;
        become_follower(r, r->term, 0);
        if (heir) msg_new(r, RAFT_MSG_TIMEOUT_NOW, heir);
        return;
    }
    if (pr && pr->id != r->id && pr->match == 0) send_all(r, pr, 1);
    if (maybe_commit(r)) bcast_append(r); /* a smaller quorum may commit at once */
}

/* Remembers the current membership as that of the log base. */
static void snap_capture(raft_t *r) {
    r->snap_nv = raft_voters(r, r->snap_ids, r->n_prs);
    r->snap_nl = raft_learners(r, r->snap_ids + r->snap_nv, r->n_prs - r->snap_nv);
}

/* Follower: a snapshot from the leader replaces the log (unless we already
 * have its index and term) and the membership. */
static void handle_snapshot(raft_t *r, const raft_msg_t *m) {
    const raft_snapshot_meta_t *sm = m->snapshot;
    raft_msg_t *out = msg_new(r, RAFT_MSG_APP_RESP, m->from);
    if (sm->index <= r->commit) {
        out->index = r->commit;
        return;
    }
    if (sm->index <= last_index(r) && raft_term_at(r, sm->index) == sm->term) {
        commit_to(r, sm->index);
        out->index = r->commit;
        return;
    }
    for (size_t i = 0; i < r->n_ents; i++) free((void *)r->ents[i].data);
    r->n_ents = 0;
    r->base_index = r->commit = r->applied = r->stabled = r->conf_index = sm->index;
    r->base_term = sm->term;
    r->n_prs = 0;
    for (size_t i = 0; i < sm->n_voters; i++)
        if (!progress_of(r, sm->voters[i])) progress_add(r, sm->voters[i], 0);
    for (size_t i = 0; i < sm->n_learners; i++)
        if (!progress_of(r, sm->learners[i])) progress_add(r, sm->learners[i], 1);
    self_refresh(r);
    snap_capture(r);
    r->snap_pending = 1;
    out->index = sm->index;
}

void raft_snapshot_meta(const raft_t *r, raft_snapshot_meta_t *out) {
    *out = (raft_snapshot_meta_t){.index = r->base_index,
                                  .term = r->base_term,
                                  .voters = r->snap_ids,
                                  .n_voters = r->snap_nv,
                                  .learners = r->snap_ids + r->snap_nv,
                                  .n_learners = r->snap_nl};
}

void raft_report_snapshot(raft_t *r, uint64_t id, int ok) {
    assert(!r->in_ready);
    raft_progress_t *pr = progress_of(r, id);
    if (r->role != RAFT_LEADER || !pr || pr->state != RAFT_PROGRESS_SNAPSHOT) return;
    progress_become(pr, RAFT_PROGRESS_PROBE, ok ? pr->pending_snapshot + 1 : pr->match + 1);
    pr->paused = 1; /* the next heartbeat answer resumes it */
}

size_t raft_voters(const raft_t *r, uint64_t *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < r->n_prs; i++)
        if (!r->prs[i].learner) {
            if (n < cap) out[n] = r->prs[i].id;
            n++;
        }
    return n;
}

size_t raft_learners(const raft_t *r, uint64_t *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].learner) {
            if (n < cap) out[n] = r->prs[i].id;
            n++;
        }
    return n;
}

/* ---------------------------------------------------------------- ready */

static raft_hard_state_t hard_state(const raft_t *r) {
    return (raft_hard_state_t){.term = r->term, .vote = r->vote, .commit = r->commit};
}

static int hs_equal(raft_hard_state_t a, raft_hard_state_t b) {
    return a.term == b.term && a.vote == b.vote && a.commit == b.commit;
}

static uint64_t apply_limit(const raft_t *r) {
    uint64_t last = last_index(r);
    uint64_t hi = r->commit < last ? r->commit : last;
    if (hi > r->applied && hi - r->applied > r->apply_budget) hi = r->applied + r->apply_budget;
    return hi;
}

void raft_set_apply_budget(raft_t *r, size_t n) { r->apply_budget = n; }

int raft_has_ready(const raft_t *r) {
    if (!hs_equal(hard_state(r), r->prev_hs)) return 1;
    if (last_index(r) > r->stabled) return 1;
    if (apply_limit(r) > r->applied) return 1;
    if (r->n_msgs || r->n_read_states) return 1;
    if (r->bcast_pending && r->role == RAFT_LEADER && r->n_prs > 1) return 1;
    if (reads_startable(r)) return 1;
    if (r->snap_pending) return 1;
    return 0;
}

void raft_ready(raft_t *r, raft_ready_t *rd) {
    assert(!r->in_ready);
    if (reads_startable(r)) reads_start_waiting(r);
    if (r->bcast_pending) {
        if (r->role == RAFT_LEADER) bcast_append(r);
        r->bcast_pending = 0;
    }
    memset(rd, 0, sizeof(*rd));
    rd->hard_state = hard_state(r);
    rd->hard_state_changed = !hs_equal(rd->hard_state, r->prev_hs);
    uint64_t last = last_index(r);
    assert(r->stabled >= r->base_index);
    if (last > r->stabled) {
        rd->entries = &r->ents[r->stabled - r->base_index];
        rd->n_entries = (size_t)(last - r->stabled);
    }
    uint64_t hi = apply_limit(r);
    if (hi > r->applied) {
        assert(r->applied >= r->base_index);
        rd->committed = &r->ents[r->applied - r->base_index];
        rd->n_committed = (size_t)(hi - r->applied);
    }
    rd->msgs = r->msgs;
    rd->n_msgs = r->n_msgs;
    rd->read_states = r->read_states;
    rd->n_read_states = r->n_read_states;
    if (r->snap_pending) {
        raft_snapshot_meta(r, &r->snap_meta);
        rd->snapshot = &r->snap_meta;
    }
    rd->must_sync = rd->n_entries > 0 || rd->snapshot || rd->hard_state.term != r->prev_hs.term ||
                    rd->hard_state.vote != r->prev_hs.vote;
    r->in_ready = 1;
    r->rd_hs = rd->hard_state;
    r->rd_stabled_to = last;
    r->rd_applied_to = hi > r->applied ? hi : r->applied;
}

void raft_advance(raft_t *r) {
    assert(r->in_ready);
    r->in_ready = 0;
    r->snap_pending = 0;
    r->prev_hs = r->rd_hs;
    r->stabled = r->rd_stabled_to;
    assert(r->rd_applied_to <= r->commit);
    uint64_t from = r->applied;
    r->applied = r->rd_applied_to;
    outbox_clear(r);
    r->n_read_states = 0;
    /* the driver applied these entries: conf changes take effect now (after
     * the outbox was cleared: what they send goes into the next ready) */
    for (uint64_t k = from + 1; k <= r->applied; k++) {
        const raft_entry_t *e = raft_entry_at(r, k);
        if (e) conf_apply(r, e);
    }
    if (r->role == RAFT_LEADER && r->self_voter && maybe_commit(r) && r->n_prs > 1) bcast_append(r);
}

/* Data bytes of the entries lo..hi (all in the log). */
static size_t entries_bytes(const raft_t *r, uint64_t lo, uint64_t hi) {
    size_t bytes = 0;
    for (uint64_t i = lo; i <= hi; i++) bytes += raft_entry_at(r, i)->len;
    return bytes;
}

/* Leader: how far the log may be compacted (at most index) for what the
 * follower pr still needs. Nothing for one not heard from in this
 * check-quorum round nor the one before (a round's start forgets everyone
 * until their next answer, which must not look like silence): it gets a
 * snapshot when it is back. An active one keeps the
 * entries after its match; one that was sent a snapshot and has not got
 * past it keeps the entries after the snapshot, so that once installed it
 * catches up by appends: compacting them would make it need another
 * snapshot, and under a steady write load each new one is as far behind
 * when installed (a snapshot treadmill), for as long as the load lasts.
 * That hold stops at snapshot_hold_entries past the snapshot or
 * snapshot_hold_bytes of their data (memory bound; etcd keeps a fixed
 * 5,000-entry tail for the same purpose). */
static uint64_t compact_limit(const raft_t *r, const raft_progress_t *pr, uint64_t index) {
    if (pr->id == r->id || !(pr->recent_active || pr->prev_active)) return index;
    if (pr->pending_snapshot > pr->match) {
        if (pr->pending_snapshot >= r->base_index && pr->pending_snapshot < index &&
            index - pr->pending_snapshot <= r->snapshot_hold_entries &&
            entries_bytes(r, pr->pending_snapshot + 1, index) <= r->snapshot_hold_bytes)
            return pr->pending_snapshot;
        return index;
    }
    if (pr->state != RAFT_PROGRESS_SNAPSHOT && pr->match >= r->base_index && pr->match < index)
        return pr->match;
    return index;
}

uint64_t raft_compact_to(raft_t *r, uint64_t index) {
    assert(!r->in_ready);
    if (index > r->applied) index = r->applied;
    if (index > r->stabled) index = r->stabled;
    if (r->role == RAFT_LEADER)
        for (size_t i = 0; i < r->n_prs; i++) index = compact_limit(r, &r->prs[i], index);
    if (index < r->conf_index || index <= r->base_index) return r->base_index;
    size_t drop = (size_t)(index - r->base_index);
    uint64_t t = raft_term_at(r, index);
    for (size_t i = 0; i < drop; i++) free((void *)r->ents[i].data);
    memmove(r->ents, r->ents + drop, (r->n_ents - drop) * sizeof(*r->ents));
    r->n_ents -= drop;
    r->base_index = index;
    r->base_term = t;
    snap_capture(r);
    return index;
}

void raft_compact(raft_t *r, uint64_t index) { (void)raft_compact_to(r, index); }

int raft_peer_progress(const raft_t *r, uint64_t id, raft_peer_progress_t *out) {
    if (r->role != RAFT_LEADER) return RAFT_ERR_NOT_LEADER;
    const raft_progress_t *pr = progress_of((raft_t *)r, id);
    if (!pr) return RAFT_ERR_INVALID;
    *out = (raft_peer_progress_t){.id = pr->id,
                                  .match = pr->id == r->id ? r->stabled : pr->match,
                                  .next = pr->next,
                                  .state = pr->state,
                                  .inflight = pr->inflight_count,
                                  .recent_active = pr->recent_active};
    return RAFT_OK;
}

void raft_debug_fail_alloc(raft_t *r, unsigned every) { r->fail_alloc_every = every; }

void raft_status(const raft_t *r, raft_status_t *out) {
    out->id = r->id;
    out->term = r->term;
    out->vote = r->vote;
    out->leader = r->lead;
    out->commit = r->commit;
    out->applied = r->applied;
    out->first_index = r->base_index + 1;
    out->last_index = last_index(r);
    out->stabled = r->stabled;
    out->role = r->role;
    out->msgs_rejected = r->msgs_rejected;
    const raft_progress_t *me = progress_of((raft_t *)r, r->id);
    out->is_voter = me && !me->learner;
    out->is_learner = me && me->learner;
    out->n_voters = voter_count(r);
    out->n_learners = r->n_prs - out->n_voters;
    out->lead_transferee = r->lead_transferee;
    out->nomem = r->nomem;
}

/* ---------------------------------------------------------------- life cycle */

static int config_error(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "raft: %s", msg);
    return -1;
}

static int config_check(const raft_config_t *c, char *err, size_t errlen) {
    if (c->id == 0) return config_error(err, errlen, "id must be non-zero");
    /* no voters: a member joining a cluster, which learns the membership
     * from the leader's log or snapshot (it never campaigns meanwhile) */
    if (c->n_voters && !c->voters) return config_error(err, errlen, "voters missing");
    for (size_t i = 0; i < c->n_voters; i++) {
        if (c->voters[i] == 0) return config_error(err, errlen, "voter id 0");
        for (size_t j = 0; j < i; j++)
            if (c->voters[i] == c->voters[j]) return config_error(err, errlen, "duplicate voter id");
    }
    if (c->n_learners && !c->learners) return config_error(err, errlen, "learners missing");
    if (c->n_voters > RAFT_MAX_MEMBERS || c->n_learners > RAFT_MAX_MEMBERS - c->n_voters)
        return config_error(err, errlen, "more than RAFT_MAX_MEMBERS members");
    for (size_t i = 0; i < c->n_learners; i++) {
        if (c->learners[i] == 0) return config_error(err, errlen, "learner id 0");
        for (size_t j = 0; j < c->n_voters; j++)
            if (c->learners[i] == c->voters[j]) return config_error(err, errlen, "learner is also a voter");
        for (size_t j = 0; j < i; j++)
            if (c->learners[i] == c->learners[j]) return config_error(err, errlen, "duplicate learner id");
    }
    if (c->heartbeat_ticks == 0 || c->election_ticks <= c->heartbeat_ticks)
        return config_error(err, errlen, "need 1 <= heartbeat_ticks < election_ticks");
    uint64_t prev_term = c->log_base_term;
    for (size_t i = 0; i < c->n_log; i++) {
        if (c->log[i].index != c->log_base_index + 1 + i)
            return config_error(err, errlen, "recovered log is not contiguous");
        if (c->log[i].term < prev_term || c->log[i].term > c->hard_state.term)
            return config_error(err, errlen, "recovered log terms out of order");
        prev_term = c->log[i].term;
    }
    uint64_t last = c->log_base_index + c->n_log;
    if (c->hard_state.commit > last)
        return config_error(err, errlen, "hard state commit beyond the recovered log");
    if (c->applied > last)
        return config_error(err, errlen, "applied index beyond the recovered log (log lost entries?)");
    if (c->applied < c->log_base_index)
        return config_error(err, errlen, "applied index below the start of the recovered log");
    return 0;
}

raft_t *raft_new(const raft_config_t *c, char *err, size_t errlen) {
    if (config_check(c, err, errlen) != 0) return NULL;
    raft_t *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->id = c->id;
    r->n_prs = c->n_voters + c->n_learners;
    r->prs = calloc(RAFT_MAX_MEMBERS, sizeof(*r->prs));
    if (!r->prs) {
        free(r);
        if (err && errlen) snprintf(err, errlen, "raft: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < c->n_voters; i++) r->prs[i].id = c->voters[i];
    for (size_t i = 0; i < c->n_learners; i++) {
        r->prs[c->n_voters + i].id = c->learners[i];
        r->prs[c->n_voters + i].learner = 1;
    }
    self_refresh(r);
    r->election_ticks = c->election_ticks;
    r->heartbeat_ticks = c->heartbeat_ticks;
    r->rng = c->seed ^ (c->id * 0xD1B54A32D192ED03ull);
    r->max_msg_entries = c->max_msg_entries ? c->max_msg_entries : 256;
    r->max_msg_bytes = c->max_msg_bytes ? c->max_msg_bytes : SIZE_MAX;
    r->max_inflight =
        c->max_inflight_msgs && c->max_inflight_msgs < MAX_INFLIGHT ? c->max_inflight_msgs : MAX_INFLIGHT;
    r->max_uncommitted = c->max_uncommitted_bytes ? c->max_uncommitted_bytes : SIZE_MAX;
    r->snapshot_hold_entries = c->snapshot_hold_entries ? c->snapshot_hold_entries : SNAPSHOT_HOLD_ENTRIES;
    r->snapshot_hold_bytes = c->snapshot_hold_bytes ? c->snapshot_hold_bytes : SNAPSHOT_HOLD_BYTES;
    r->apply_budget = SIZE_MAX;
    r->debug_break = c->debug_break;
    r->pre_vote = c->pre_vote;
    r->check_quorum = c->check_quorum;
    r->term = c->hard_state.term;
    r->vote = c->hard_state.vote;
    r->base_index = c->log_base_index;
    r->base_term = c->log_base_term;
    for (size_t i = 0; i < c->n_log; i++) {
        if (log_append_copy(r, &c->log[i]) != 0) {
            raft_free(r);
            config_error(err, errlen, "out of memory copying the recovered log");
            return NULL;
        }
    }
    r->stabled = last_index(r);
    /* Everything up to the applied index and the log base was committed. */
    r->commit = c->hard_state.commit;
    if (r->commit < c->applied) r->commit = c->applied;
    if (r->commit < r->base_index) r->commit = r->base_index;
    r->applied = c->applied;
    snap_capture(r); /* the membership given is that of the log base */
    r->conf_index = r->base_index;
    /* the configuration at the applied index: replay applied conf changes */
    for (uint64_t k = r->base_index + 1; k <= r->applied; k++) conf_apply(r, raft_entry_at(r, k));
    r->prev_hs = c->hard_state;
    r->role = RAFT_FOLLOWER;
    reset_election_timeout(r);
    return r;
}

void raft_free(raft_t *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_ents; i++) free((void *)r->ents[i].data);
    free(r->ents);
    outbox_clear(r);
    free(r->msgs);
    free(r->reads);
    free(r->read_states);
    free(r->prs);
    free(r);
}
