/*
 * node_peers.c: what a cluster adds to the raft node (see node.h): the
 * bounded inbound queue of peer messages (raft_node_step copies, the raft
 * thread steps), sending a ready's messages (the leader's Apps and
 * heartbeats before its own fdatasync, everything else after), ReadIndex
 * requests (batched into one core request per round, asked again every
 * NODE_READ_RETRY_MS, failed after NODE_READ_TIMEOUT_MS or without a
 * leader for two election timeouts, answered once the applied index
 * reaches the read point), admin calls executed on the raft thread
 * (membership change, leader transfer, peer progress), snapshot reports,
 * the accounting of forwarded proposals, and the recent compaction points
 * the WAL may be released to. Owns nothing beyond the node's fields it
 * names (node_internal.h).
 */
#include <stdlib.h>
#include <string.h>

#include "node_internal.h"

/* ---------------------------------------------------------------- inbound */

/* One block: the message, its entries, their data, the snapshot meta. */
static inbound_t *inbound_copy(const raft_msg_t *m) {
    size_t data = 0, ids = 0;
    for (size_t i = 0; i < m->n_entries; i++) data += m->entries[i].len;
    if (m->snapshot) ids = m->snapshot->n_voters + m->snapshot->n_learners;
    size_t bytes = sizeof(inbound_t) + m->n_entries * sizeof(raft_entry_t) +
                   (m->snapshot ? sizeof(raft_snapshot_meta_t) + ids * sizeof(uint64_t) : 0) + data;
    inbound_t *in = malloc(bytes);
    if (!in) return NULL;
    in->next = NULL;
    in->bytes = bytes;
    in->m = *m;
    uint8_t *p = (uint8_t *)(in + 1);
    if (m->n_entries) {
        in->m.entries = (raft_entry_t *)p;
        p += m->n_entries * sizeof(raft_entry_t);
    } else {
        in->m.entries = NULL;
    }
    if (m->snapshot) {
        raft_snapshot_meta_t *sm = (raft_snapshot_meta_t *)p;
        p += sizeof(*sm);
        uint64_t *v = (uint64_t *)p;
        p += ids * sizeof(uint64_t);
        *sm = *m->snapshot;
        if (m->snapshot->n_voters) memcpy(v, m->snapshot->voters, m->snapshot->n_voters * sizeof(uint64_t));
        if (m->snapshot->n_learners)
            memcpy(v + m->snapshot->n_voters, m->snapshot->learners,
                   m->snapshot->n_learners * sizeof(uint64_t));
        sm->voters = v;
        sm->learners = v + m->snapshot->n_voters;
        in->m.snapshot = sm;
    }
    for (size_t i = 0; i < m->n_entries; i++) {
        in->m.entries[i] = m->entries[i];
        in->m.entries[i].data = m->entries[i].len ? p : NULL;
        if (m->entries[i].len) memcpy(p, m->entries[i].data, m->entries[i].len);
        p += m->entries[i].len;
    }
    return in;
}

int raft_node_step(raft_node_t *n, const raft_msg_t *m) {
    /* malformed pointers: dropped as a lost message (the core checks the rest) */
    if (m->n_entries && !m->entries) return RAFT_NODE_ERR_BUSY;
    for (size_t i = 0; i < m->n_entries; i++)
        if (m->entries[i].len && !m->entries[i].data) return RAFT_NODE_ERR_BUSY;
    const raft_snapshot_meta_t *sm = m->snapshot;
    if (sm && (sm->n_voters > RAFT_MAX_MEMBERS || sm->n_learners > RAFT_MAX_MEMBERS ||
               (sm->n_voters && !sm->voters) || (sm->n_learners && !sm->learners)))
        return RAFT_NODE_ERR_BUSY;
    inbound_t *in = inbound_copy(m);
    if (!in) return RAFT_NODE_ERR_NOMEM;
    pthread_mutex_lock(&n->mu);
    int rc = RAFT_NODE_OK;
    if (n->stopping || n->thread_done)
        rc = RAFT_NODE_ERR_STOPPED;
    else if (n->in_count >= NODE_INBOUND_MSGS ||
             (n->in_count && n->in_bytes + in->bytes > NODE_INBOUND_BYTES))
        rc = RAFT_NODE_ERR_BUSY;
    if (rc == RAFT_NODE_OK) {
        if (n->in_tail)
            n->in_tail->next = in;
        else
            n->in_head = in;
        n->in_tail = in;
        n->in_count++;
        n->in_bytes += in->bytes;
        pthread_cond_signal(&n->cv);
    }
    pthread_mutex_unlock(&n->mu);
    if (rc != RAFT_NODE_OK) free(in);
    return rc;
}

void node_step_inbound(raft_node_t *n, inbound_t *in) {
    while (in) {
        inbound_t *next = in->next;
        (void)raft_step(n->raft, &in->m); /* refused or dropped: as a lost message */
        free(in);
        in = next;
    }
}

/* Under mu: anything for the raft thread besides proposals and ticks. */
int node_peer_work_locked(const raft_node_t *n) {
    return n->in_head || n->admin_head || n->n_reports || n->reads_new;
}

void node_take_peer_work_locked(raft_node_t *n, inbound_t **in, admin_req_t **admin, size_t *n_reports,
                                uint64_t *report_to, int *report_ok) {
    *in = n->in_head;
    n->in_head = n->in_tail = NULL;
    n->in_count = n->in_bytes = 0;
    *admin = n->admin_head;
    n->admin_head = n->admin_tail = NULL;
    *n_reports = n->n_reports;
    for (size_t i = 0; i < n->n_reports; i++) {
        report_to[i] = n->reports[i].to;
        report_ok[i] = n->reports[i].ok;
    }
    n->n_reports = 0;
}

void raft_node_report_snapshot(raft_node_t *n, uint64_t to, int ok) {
    pthread_mutex_lock(&n->mu);
    size_t i = 0;
    while (i < n->n_reports && n->reports[i].to != to) i++;
    if (i < RAFT_MAX_MEMBERS) {
        n->reports[i].to = to;
        n->reports[i].ok = ok; /* the latest report wins */
        if (i == n->n_reports) n->n_reports++;
        pthread_cond_signal(&n->cv);
    }
    pthread_mutex_unlock(&n->mu);
}

/* ---------------------------------------------------------------- outbound */

/* Thesis 10.2.1: the leader may send its log (Apps, heartbeats) while it
 * writes it, since it counts itself only after the write is durable; every
 * other message (votes, acknowledgements, ...) promises durable state and
 * leaves only after the sync. early = 1: those that may go first; 0: the
 * rest (or, for a non-leader, all). */
void node_send_msgs(raft_node_t *n, const raft_ready_t *rd, int leader, int early) {
    for (size_t i = 0; i < rd->n_msgs; i++) {
        const raft_msg_t *m = &rd->msgs[i];
        int may_go_first = leader && (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT);
        if (may_go_first != early) continue;
        if (m->type == RAFT_MSG_SNAP) {
            if (n->cfg.send_snapshot) n->cfg.send_snapshot(n->cfg.ctx, m);
        } else if (n->cfg.send) {
            n->cfg.send(n->cfg.ctx, m);
        }
    }
}

/* ---------------------------------------------------------------- admin */

static int admin_call(raft_node_t *n, admin_req_t *r) {
    pthread_mutex_lock(&n->mu);
    if (n->stopping || n->thread_done) {
        pthread_mutex_unlock(&n->mu);
        return RAFT_NODE_ERR_STOPPED;
    }
    r->next = NULL;
    if (n->admin_tail)
        n->admin_tail->next = r;
    else
        n->admin_head = r;
    n->admin_tail = r;
    pthread_cond_signal(&n->cv);
    while (!r->done) pthread_cond_wait(&n->admin_cv, &n->mu);
    pthread_mutex_unlock(&n->mu);
    return r->rc;
}

static int map_core_rc(int rc) {
    switch (rc) {
    case RAFT_OK: return RAFT_NODE_OK;
    case RAFT_ERR_NOT_LEADER: return RAFT_NODE_ERR_NOT_LEADER;
    case RAFT_ERR_NOMEM: return RAFT_NODE_ERR_NOMEM;
    case RAFT_ERR_DROPPED: return RAFT_NODE_ERR_BUSY;
    default: return RAFT_NODE_ERR_INVALID;
    }
}

static int admin_exec(raft_node_t *n, admin_req_t *r) {
    switch (r->kind) {
    case ADMIN_CONF_CHANGE:
        return map_core_rc(raft_propose_conf_change(n->raft, r->op, r->id, r->ctx, r->len));
    case ADMIN_TRANSFER: return map_core_rc(raft_transfer_leader(n->raft, r->id));
    case ADMIN_PROGRESS: return map_core_rc(raft_peer_progress(n->raft, r->id, r->out));
    default: return RAFT_NODE_ERR_INVALID;
    }
}

static void admin_finish(raft_node_t *n, admin_req_t *list, int stopped) {
    pthread_mutex_lock(&n->mu);
    for (admin_req_t *r = list; r;) {
        admin_req_t *next = r->next; /* r belongs to its caller once done */
        if (stopped) r->rc = RAFT_NODE_ERR_STOPPED;
        r->done = 1;
        r = next;
    }
    pthread_cond_broadcast(&n->admin_cv);
    pthread_mutex_unlock(&n->mu);
}

void node_run_admin(raft_node_t *n, admin_req_t *list) {
    if (!list) return;
    for (admin_req_t *r = list; r; r = r->next) r->rc = admin_exec(n, r);
    admin_finish(n, list, 0);
}

int raft_node_propose_conf_change(raft_node_t *n, uint8_t op, uint64_t id, const void *ctx, size_t len) {
    admin_req_t r = {.kind = ADMIN_CONF_CHANGE, .op = op, .id = id, .ctx = ctx, .len = len};
    return admin_call(n, &r);
}

int raft_node_transfer_leader(raft_node_t *n, uint64_t to) {
    admin_req_t r = {.kind = ADMIN_TRANSFER, .id = to};
    return admin_call(n, &r);
}

int raft_node_peer_progress(raft_node_t *n, uint64_t id, raft_peer_progress_t *out) {
    admin_req_t r = {.kind = ADMIN_PROGRESS, .id = id, .out = out};
    return admin_call(n, &r);
}

/* ---------------------------------------------------------------- reads */

int raft_node_read_index(raft_node_t *n, uint64_t rctx) {
    pthread_mutex_lock(&n->mu);
    int rc = RAFT_NODE_OK;
    if (n->stopping || n->thread_done || n->status.failed)
        rc = RAFT_NODE_ERR_STOPPED;
    else if (!n->cfg.read_ready)
        rc = RAFT_NODE_ERR_INVALID;
    else if (n->n_reads >= NODE_MAX_READS)
        rc = RAFT_NODE_ERR_BUSY;
    if (rc == RAFT_NODE_OK) {
        n->reads[n->n_reads++] = (read_req_t){.rctx = rctx, .first_ms = node_now_ms(), .state = READ_NEW};
        n->reads_new = 1;
        pthread_cond_signal(&n->cv);
    }
    pthread_mutex_unlock(&n->mu);
    return rc;
}

/* Under mu: read i is finished; collected into done (called later). */
static void read_finish_locked(raft_node_t *n, size_t i, int ok, read_done_t *done, size_t *n_done) {
    done[(*n_done)++] = (read_done_t){.rctx = n->reads[i].rctx, .ok = ok};
    if (n->reads[i].state == READ_APPLY) n->n_read_apply--;
    n->reads[i] = n->reads[--n->n_reads];
}

static void reads_report(raft_node_t *n, const read_done_t *done, size_t n_done) {
    for (size_t i = 0; i < n_done; i++) n->cfg.read_ready(n->cfg.ctx, done[i].rctx, done[i].ok);
}

/* Raft thread, every round: ask new reads and those not answered for
 * NODE_READ_RETRY_MS (or whose leader changed) in ONE core request; fail
 * those past NODE_READ_TIMEOUT_MS (also one still waiting for the applied
 * index: a member cut off after the answer), or waiting for an answer with
 * no leader for two election timeouts. The core's ctx is the round number,
 * which starts at the wall-clock time at start, so a late answer to an
 * earlier incarnation's request never matches a new one. */
void node_ask_reads(raft_node_t *n, uint64_t now) {
    raft_status_t rs;
    raft_status(n->raft, &rs);
    size_t n_done = 0;
    int ask = 0;
    pthread_mutex_lock(&n->mu);
    n->reads_new = 0;
    uint64_t round = n->read_round + 1;
    for (size_t i = 0; i < n->n_reads;) {
        read_req_t *r = &n->reads[i];
        uint64_t age = now - r->first_ms;
        int no_leader = r->state != READ_APPLY && rs.leader == 0 && age >= n->no_leader_wait_ms;
        if (age >= NODE_READ_TIMEOUT_MS || no_leader) {
            read_finish_locked(n, i, 0, n->r_done, &n_done);
            continue;
        }
        int due =
            r->state == READ_NEW ||
            (r->state == READ_ASKED && (now - r->asked_ms >= NODE_READ_RETRY_MS || r->leader != rs.leader));
        if (due && rs.leader) {
            r->state = READ_ASKED;
            r->ctx = round;
            r->leader = rs.leader;
            r->asked_ms = now;
            ask = 1;
        } else if (due) {
            r->state = READ_NEW; /* asked again once a leader is known */
        }
        i++;
    }
    if (ask) n->read_round = round;
    pthread_mutex_unlock(&n->mu);
    /* lost (no leader after all, out of memory): asked again after the retry delay */
    if (ask) (void)raft_read_index(n->raft, round);
    reads_report(n, n->r_done, n_done);
}

/* Raft thread: read states out of a ready. */
void node_read_states(raft_node_t *n, const raft_read_state_t *rs, size_t count) {
    if (!count) return;
    size_t n_done = 0;
    pthread_mutex_lock(&n->mu);
    for (size_t k = 0; k < count; k++) {
        for (size_t i = 0; i < n->n_reads;) {
            read_req_t *r = &n->reads[i];
            if (r->state != READ_ASKED || r->ctx != rs[k].ctx) {
                i++;
                continue;
            }
            if (n->applied >= rs[k].index) {
                read_finish_locked(n, i, 1, n->r_done, &n_done);
                continue;
            }
            r->state = READ_APPLY;
            r->index = rs[k].index;
            n->n_read_apply++;
            i++;
        }
    }
    pthread_mutex_unlock(&n->mu);
    reads_report(n, n->r_done, n_done);
}

/* Apply thread, after applying up to applied: serve the reads waiting for it. */
void node_reads_applied(raft_node_t *n, uint64_t applied) {
    size_t n_done = 0;
    pthread_mutex_lock(&n->mu);
    for (size_t i = 0; n->n_read_apply && i < n->n_reads;) {
        if (n->reads[i].state == READ_APPLY && n->reads[i].index <= applied)
            read_finish_locked(n, i, 1, n->a_done, &n_done);
        else
            i++;
    }
    pthread_mutex_unlock(&n->mu);
    reads_report(n, n->a_done, n_done);
}

/* ---------------------------------------------------------------- forwarded proposals */

void node_fwd_add_locked(raft_node_t *n, size_t count, uint64_t now) {
    if (!count) return;
    /* at the latest they sit right after what this member has now */
    uint64_t release = n->status.last_index + count;
    uint64_t deadline = now + n->no_leader_wait_ms;
    n->fwd_total += count;
    if (n->fwd_n == NODE_FWD_BATCHES) { /* full: merge into the newest */
        fwd_batch_t *b = &n->fwd[(n->fwd_start + n->fwd_n - 1) % NODE_FWD_BATCHES];
        b->n += count;
        if (release > b->release_index) b->release_index = release;
        b->deadline_ms = deadline;
        return;
    }
    n->fwd[(n->fwd_start + n->fwd_n) % NODE_FWD_BATCHES] =
        (fwd_batch_t){.n = count, .release_index = release, .deadline_ms = deadline};
    n->fwd_n++;
}

void node_fwd_expire_locked(raft_node_t *n, uint64_t now) {
    while (n->fwd_n) {
        fwd_batch_t *b = &n->fwd[n->fwd_start];
        if (n->applied < b->release_index && now < b->deadline_ms) break;
        n->fwd_total -= b->n;
        n->fwd_start = (n->fwd_start + 1) % NODE_FWD_BATCHES;
        n->fwd_n--;
    }
}

/* The leader refused one forwarded proposal: out of the oldest batch (the
 * refusal may be for any of them; the count is what bounds). */
void node_fwd_refused_locked(raft_node_t *n) {
    if (!n->fwd_n) return;
    fwd_batch_t *b = &n->fwd[n->fwd_start];
    n->fwd_total--;
    if (--b->n) return;
    n->fwd_start = (n->fwd_start + 1) % NODE_FWD_BATCHES;
    n->fwd_n--;
}

/* ---------------------------------------------------------------- snapshot points */

void node_meta_from(node_meta_t *dst, const raft_snapshot_meta_t *src) {
    dst->index = src->index;
    dst->term = src->term;
    dst->nv = src->n_voters < RAFT_MAX_MEMBERS ? src->n_voters : RAFT_MAX_MEMBERS;
    dst->nl = src->n_learners < RAFT_MAX_MEMBERS - dst->nv ? src->n_learners : RAFT_MAX_MEMBERS - dst->nv;
    if (dst->nv) memcpy(dst->ids, src->voters, dst->nv * sizeof(uint64_t));
    if (dst->nl) memcpy(dst->ids + dst->nv, src->learners, dst->nl * sizeof(uint64_t));
}

void node_meta_view(const node_meta_t *m, raft_snapshot_meta_t *out) {
    *out = (raft_snapshot_meta_t){.index = m->index,
                                  .term = m->term,
                                  .voters = m->ids,
                                  .n_voters = m->nv,
                                  .learners = m->ids + m->nv,
                                  .n_learners = m->nl};
}

/* Raft thread: remembers the core's log base (after a compaction or an
 * install) as a point the WAL may later be released to. */
void node_hist_push(raft_node_t *n) {
    raft_snapshot_meta_t sm;
    raft_snapshot_meta(n->raft, &sm);
    if (n->n_hist && n->hist[n->n_hist - 1].index == sm.index) return;
    if (n->n_hist == NODE_META_HISTORY) {
        memmove(n->hist, n->hist + 1, (NODE_META_HISTORY - 1) * sizeof(*n->hist));
        n->n_hist--;
    }
    node_meta_from(&n->hist[n->n_hist++], &sm);
}

/* The newest remembered point at or below index, NULL if none. */
const node_meta_t *node_hist_find(const raft_node_t *n, uint64_t index) {
    for (size_t i = n->n_hist; i > 0; i--)
        if (n->hist[i - 1].index <= index && n->hist[i - 1].index > 0) return &n->hist[i - 1];
    return NULL;
}

/* ---------------------------------------------------------------- exit */

/* Raft thread, leaving its loop: every admin caller and read gets an answer. */
void node_peers_exit(raft_node_t *n) {
    size_t n_done = 0;
    pthread_mutex_lock(&n->mu);
    n->thread_done = 1;
    admin_req_t *admin = n->admin_head;
    n->admin_head = n->admin_tail = NULL;
    inbound_t *in = n->in_head;
    n->in_head = n->in_tail = NULL;
    n->in_count = n->in_bytes = 0;
    while (n->n_reads) read_finish_locked(n, n->n_reads - 1, 0, n->r_done, &n_done);
    pthread_mutex_unlock(&n->mu);
    admin_finish(n, admin, 1);
    while (in) {
        inbound_t *next = in->next;
        free(in);
        in = next;
    }
    if (n->cfg.read_ready) reads_report(n, n->r_done, n_done);
}
