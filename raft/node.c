/*
 * node.c: the raft thread and the apply thread (see node.h); what a cluster
 * adds lives in node_peers.c, the shared state in node_internal.h.
 *
 * The raft thread owns the Raft core, the WAL and the proposal queue. One
 * loop: wait for a proposal, a peer message, a read or admin request, a
 * tick or pending work; tick; step the queued peer messages; run the admin
 * requests; hand ALL queued proposals on (propose them as the leader,
 * forward them to the leader as a follower, keep them while there is no
 * leader, for two election timeouts at most, then cfg.dropped); ask the
 * queued reads in one core request; take one ready: log a received
 * snapshot's point, append its entries and hard state to the WAL, send the
 * leader's Apps and heartbeats, hand the committed entries the WAL already
 * held synced to the apply thread, fdatasync once (group commit: whatever
 * queues up during the sync goes into the next round), send every other
 * message, hand the snapshot and the remaining committed entries (those
 * this sync made durable) to the apply thread, resolve read states; advance.
 *
 * The apply thread installs snapshots (cfg.install_snapshot) and calls
 * cfg.apply in index order, serves the reads waiting for its applied index,
 * and, every persist_every entries, calls cfg.persist_state, which returns
 * the index the state machine holds durably (kshim syncs every applied
 * batch, so that is simply its applied index). The raft thread then writes
 * a SNAPSHOT record (index, term, membership) at the newest log base it
 * compacted to at or below that index and releases the WAL segments below
 * it. Applying batch N while the raft thread syncs batch N+1 is what lets a
 * busy member apply and sync at the same time.
 *
 * Bounds (nothing grows with the load): raft_node_propose refuses with
 * RAFT_NODE_ERR_BUSY once cfg.max_inflight entries are queued, in the log
 * unapplied, being proposed or forwarded; the apply queue holds at most
 * cfg.apply_queue_entries, and the raft thread never waits for it: it sets
 * the core's apply budget to the room left, so while the queue is full
 * committed entries stay in the core and the thread keeps ticking, syncing
 * and committing (the apply thread wakes it when room frees). The core's
 * in-memory log is compacted up to the applied index every round (as far as
 * raft_compact_to allows: an active follower's entries stay), so a single
 * voter holds at most about max_inflight entries.
 *
 * A WAL error, or a snapshot that cannot be installed, is fatal to the node
 * (fail-stop): nothing unsynced is ever applied, so nothing unsynced is
 * ever acknowledged.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "node_internal.h"

#define APPLY_QUEUE_MAX_ENTRIES 16384
#define COMPACT_MIN_ENTRIES 256 /* applied entries worth a raft_compact */

uint64_t node_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void deadline_ts(uint64_t ms, struct timespec *ts) {
    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000;
}

static void free_queue(proposal_t *p) {
    while (p) {
        proposal_t *next = p->next;
        free(p);
        p = next;
    }
}

/* Under mu: entries proposed and not yet applied (queued, being proposed,
 * or in the log above the applied index). */
static uint64_t inflight_locked(const raft_node_t *n) {
    uint64_t in_log = n->status.last_index > n->applied ? n->status.last_index - n->applied : 0;
    return n->q_len + n->q_taken + in_log + n->fwd_total;
}

/* Under mu: committed entries the apply queue can still take. */
static size_t apply_room_locked(const raft_node_t *n) {
    uint64_t queued = n->queued_to > n->applied ? n->queued_to - n->applied : 0;
    return queued >= n->cfg.apply_queue_entries ? 0 : (size_t)(n->cfg.apply_queue_entries - queued);
}

/* Raft thread, under mu: refresh the status snapshot. */
static void status_refresh_locked(raft_node_t *n) {
    raft_status_t rs;
    raft_status(n->raft, &rs);
    wal_stats_t ws;
    wal_get_stats(n->wal, &ws);
    n->status.id = rs.id;
    if (rs.leader != 0 && rs.leader != n->status.leader) n->status.leader_changes++;
    n->status.leader = rs.leader;
    n->status.term = rs.term;
    n->status.commit_index = rs.commit;
    n->status.applied_index = n->applied;
    n->status.last_index = rs.last_index;
    n->status.wal_bytes = ws.live_bytes;
    n->status.wal_syncs = ws.syncs;
    n->status.log_entries = rs.last_index - (rs.first_index - 1);
    n->status.role = rs.role;
    n->status.is_learner = rs.is_learner;
    node_fwd_expire_locked(n, node_now_ms());
    n->status.inflight = inflight_locked(n);
}

static void status_refresh(raft_node_t *n) {
    pthread_mutex_lock(&n->mu);
    status_refresh_locked(n);
    pthread_mutex_unlock(&n->mu);
}

static void node_fail(raft_node_t *n, const char *what) {
    fprintf(stderr, "raft node %llu: %s: %s; stopping (fail-stop)\n", (unsigned long long)n->cfg.id, what,
            wal_last_error(n->wal));
    pthread_mutex_lock(&n->mu);
    n->status.failed = 1;
    n->status.leader = 0;
    pthread_mutex_unlock(&n->mu);
}

/* Apply thread: every persist_every applied entries, ask the state machine
 * how far it is durable and tell the raft thread how far the WAL may be
 * released (whole segments only, wal_release_to). */
static void maybe_persist(raft_node_t *n, uint64_t applied) {
    if (!n->cfg.persist_state || n->applied_since_persist < n->cfg.persist_every) return;
    n->applied_since_persist = 0;
    uint64_t idx = n->cfg.persist_state(n->cfg.ctx);
    if (idx > applied) idx = applied; /* never trust more than was applied */
    pthread_mutex_lock(&n->mu);
    if (idx > n->release_to) n->release_to = idx;
    pthread_mutex_unlock(&n->mu);
}

/* Raft thread: the state machine is durable up to release_to; drop the WAL
 * segments it no longer needs. The WAL first gets a snapshot point (index,
 * term, membership) at or below it, synced, so a restart starts from there
 * with the right membership: the core's log base if it is that low, else
 * the newest compaction point remembered at or below it. */
static int release_log(raft_node_t *n) {
    pthread_mutex_lock(&n->mu);
    uint64_t idx = n->release_to;
    n->release_to = 0;
    pthread_mutex_unlock(&n->mu);
    if (idx == 0) return 0;
    raft_status_t rs;
    raft_status(n->raft, &rs);
    if (rs.first_index - 1 < idx && raft_compact_to(n->raft, idx) != rs.first_index - 1) node_hist_push(n);
    const node_meta_t *m = node_hist_find(n, idx);
    if (!m || m->index <= n->wal_snap_index) return 0;
    raft_snapshot_meta_t sm;
    node_meta_view(m, &sm);
    if (wal_save_snapshot(n->wal, &sm, 0) != 0 || wal_sync(n->wal) != 0) return -1;
    n->wal_snap_index = m->index;
    return wal_release_to(n->wal, m->index) < 0 ? -1 : 0;
}

static void apply_batch_free(apply_batch_t *b) {
    if (!b) return;
    free(b->ents);
    free(b->data);
    free(b);
}

/* Raft thread: hands b to the apply thread; last is its last index. */
static void push_batch(raft_node_t *n, apply_batch_t *b, uint64_t last) {
    pthread_mutex_lock(&n->mu);
    n->queued_to = last;
    pthread_mutex_unlock(&n->mu);
    pthread_mutex_lock(&n->amu);
    if (n->a_tail)
        n->a_tail->next = b;
    else
        n->a_head = b;
    n->a_tail = b;
    n->a_entries += b->n;
    pthread_cond_broadcast(&n->acv);
    pthread_mutex_unlock(&n->amu);
}

/* Raft thread: copy committed entries into a batch and queue it for the apply
 * thread. Never waits: the apply budget (apply_room_locked) already kept the
 * batch within the queue's room. Returns 0, or -1 on no memory. */
static int queue_for_apply(raft_node_t *n, const raft_entry_t *ents, size_t count, uint64_t term) {
    apply_batch_t *b = calloc(1, sizeof(*b));
    size_t bytes = 0;
    for (size_t i = 0; i < count; i++) bytes += ents[i].len;
    if (b) {
        b->ents = malloc(count * sizeof(*b->ents));
        b->data = malloc(bytes ? bytes : 1);
    }
    if (!b || !b->ents || !b->data) {
        apply_batch_free(b);
        return -1;
    }
    b->term = term;
    b->n = count;
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        b->ents[i] = ents[i];
        b->ents[i].data = ents[i].len ? b->data + off : NULL;
        if (ents[i].len) memcpy(b->data + off, ents[i].data, ents[i].len);
        off += ents[i].len;
    }
    push_batch(n, b, ents[count - 1].index);
    return 0;
}

/* Raft thread: a snapshot for the apply thread to install, in order. */
static int queue_install(raft_node_t *n, const node_meta_t *meta) {
    apply_batch_t *b = calloc(1, sizeof(*b));
    if (!b) return -1;
    b->install = 1;
    b->snap = *meta;
    push_batch(n, b, meta->index);
    return 0;
}

/* Apply thread, under amu: takes the first queued batch and every batch of
 * the same term queued behind it, as one chain (a slow apply catches up in
 * one call, so in one synced state-machine write). NULL when empty. */
static apply_batch_t *take_batches_locked(raft_node_t *n, size_t *count) {
    apply_batch_t *first = n->a_head, *last = first;
    if (!first) return NULL;
    *count = first->n;
    while (!first->install && last->next && !last->next->install && last->next->term == first->term) {
        last = last->next;
        *count += last->n;
    }
    n->a_head = last->next;
    if (!n->a_head) n->a_tail = NULL;
    last->next = NULL;
    return first;
}

/* Calls cfg.apply once for a chain of batches (their entries are
 * consecutive). Returns the last index applied. */
static uint64_t apply_chain(raft_node_t *n, apply_batch_t *chain, size_t count) {
    raft_entry_t *ents = chain->ents;
    raft_entry_t *joined = NULL;
    if (chain->next) {
        joined = malloc(count * sizeof(*joined));
        if (joined) {
            size_t off = 0;
            for (apply_batch_t *b = chain; b; b = b->next) {
                memcpy(joined + off, b->ents, b->n * sizeof(*joined));
                off += b->n;
            }
            ents = joined;
        }
    }
    uint64_t last = 0;
    if (ents == joined) {
        n->cfg.apply(n->cfg.ctx, ents, count, chain->term);
        last = ents[count - 1].index;
    } else {
        for (apply_batch_t *b = chain; b; b = b->next) {
            n->cfg.apply(n->cfg.ctx, b->ents, b->n, b->term);
            last = b->ents[b->n - 1].index;
        }
    }
    free(joined);
    return last;
}

/* Apply thread: installs a snapshot (cfg.install_snapshot); -1 fails the
 * node (fail-stop). */
static int install_batch(raft_node_t *n, const apply_batch_t *b) {
    raft_snapshot_meta_t sm;
    node_meta_view(&b->snap, &sm);
    if (n->cfg.install_snapshot && n->cfg.install_snapshot(n->cfg.ctx, &sm) == 0) return 0;
    fprintf(stderr, "raft node %llu: cannot install the snapshot at index %llu; stopping (fail-stop)\n",
            (unsigned long long)n->cfg.id, (unsigned long long)b->snap.index);
    pthread_mutex_lock(&n->mu);
    n->status.failed = 1;
    n->status.leader = 0;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    return -1;
}

/* The apply thread: batches in order until stopped and drained. After a
 * failed install nothing more is applied. */
static void *apply_thread(void *arg) {
    raft_node_t *n = arg;
    int failed = 0;
    for (;;) {
        pthread_mutex_lock(&n->amu);
        while (!n->a_head && !n->a_stopping) pthread_cond_wait(&n->acv, &n->amu);
        size_t count = 0;
        apply_batch_t *chain = take_batches_locked(n, &count);
        if (!chain) {
            pthread_mutex_unlock(&n->amu);
            break; /* stopping and drained */
        }
        pthread_mutex_unlock(&n->amu);

        uint64_t last = 0;
        if (!failed && chain->install) {
            failed = install_batch(n, chain) != 0;
            last = chain->snap.index;
        } else if (!failed) {
            last = apply_chain(n, chain, count);
        }
        if (!failed) {
            n->applied_since_persist += count;
            pthread_mutex_lock(&n->mu);
            n->applied = last;
            n->status.applied_index = last;
            pthread_cond_signal(&n->cv); /* the raft thread may wait for apply room */
            pthread_mutex_unlock(&n->mu);
            node_reads_applied(n, last);
            maybe_persist(n, last);
        }

        pthread_mutex_lock(&n->amu);
        n->a_entries -= count;
        pthread_cond_broadcast(&n->acv);
        pthread_mutex_unlock(&n->amu);
        while (chain) {
            apply_batch_t *next = chain->next;
            apply_batch_free(chain);
            chain = next;
        }
    }
    return NULL;
}

/* How many of a ready's committed entries the WAL already holds durably:
 * every entry before the ready's own (rd->entries) was synced in an earlier
 * round (a round with entries always syncs, and a conflict truncation puts
 * the replaced entries back into rd->entries). None with a snapshot: it
 * installs first, after its point is logged. */
static size_t committed_durable(const raft_ready_t *rd) {
    if (rd->snapshot) return 0;
    if (!rd->n_entries) return rd->n_committed;
    size_t k = 0;
    while (k < rd->n_committed && rd->committed[k].index < rd->entries[0].index) k++;
    return k;
}

/* Raft thread: the WAL is durable up to index (status.durable_index). */
static void set_durable(raft_node_t *n, uint64_t index) {
    pthread_mutex_lock(&n->mu);
    n->status.durable_index = index;
    pthread_mutex_unlock(&n->mu);
}

/* One ready round: persist (a received snapshot's point first, then the
 * entries and the hard state; one write, one fdatasync), with the leader's
 * Apps and heartbeats sent before the sync and every other message after
 * it; then install/apply in order, read states, advance. Committed entries
 * that were durable before this round go to the apply thread before the
 * sync, as etcd's raftNode hands them to apply before wal.Save: the
 * leader's commits from the last round apply while it syncs the next batch
 * instead of waiting for that sync. The rest follow the sync. */
static int handle_ready(raft_node_t *n) {
    raft_status_t rs;
    raft_status(n->raft, &rs);
    int leader = rs.role == RAFT_LEADER;
    raft_ready_t rd;
    raft_ready(n->raft, &rd);
    for (size_t i = 1; i < rd.n_committed; i++)
        assert(rd.committed[i].index == rd.committed[i - 1].index + 1);
    if (rd.snapshot && wal_save_snapshot(n->wal, rd.snapshot, 1) != 0) return -1;
    if (rd.n_entries) {
        if (n->status.durable_index >= rd.entries[0].index) set_durable(n, rd.entries[0].index - 1);
        if (wal_append_entries(n->wal, rd.entries, rd.n_entries) != 0) return -1;
    }
    if (rd.hard_state_changed && wal_save_hard_state(n->wal, &rd.hard_state) != 0) return -1;
    if (leader) node_send_msgs(n, &rd, 1, 1);
    size_t early = committed_durable(&rd);
    if (early && queue_for_apply(n, rd.committed, early, rd.hard_state.term) != 0) return -1;
    if ((rd.must_sync ? wal_sync(n->wal) : wal_write(n->wal)) != 0) return -1;
    if (rd.n_entries) set_durable(n, rd.entries[rd.n_entries - 1].index);
    node_send_msgs(n, &rd, leader, 0);
    if (rd.snapshot) {
        node_meta_t m;
        node_meta_from(&m, rd.snapshot);
        if (queue_install(n, &m) != 0) return -1;
        n->wal_snap_index = m.index;
    }
    if (rd.n_committed > early &&
        queue_for_apply(n, rd.committed + early, rd.n_committed - early, rd.hard_state.term) != 0)
        return -1;
    node_read_states(n, rd.read_states, rd.n_read_states);
    int installed = rd.snapshot != NULL;
    raft_advance(n->raft);
    if (installed) node_hist_push(n);
    return release_log(n);
}

/* Raft thread, under mu: limit the next ready to the apply queue's room;
 * returns whether the core has work. */
static int core_busy_locked(raft_node_t *n) {
    raft_set_apply_budget(n->raft, apply_room_locked(n));
    return raft_has_ready(n->raft);
}

/* Raft thread: drop applied entries from the core's in-memory log, so it
 * holds no more than what is in flight; with followers, raft_compact_to
 * keeps what an active follower still needs (one silent for an election
 * timeout, or already behind, is sent a snapshot instead). Each new log
 * base is remembered as a point the WAL may be released to. */
static void compact_memory(raft_node_t *n) {
    pthread_mutex_lock(&n->mu);
    uint64_t applied = n->applied;
    pthread_mutex_unlock(&n->mu);
    raft_status_t rs;
    raft_status(n->raft, &rs);
    if (applied < rs.first_index - 1 + COMPACT_MIN_ENTRIES) return;
    if (raft_compact_to(n->raft, applied) != rs.first_index - 1) node_hist_push(n);
}

/* Raft thread: p will not reach the log; its owner hears why (a forwarded
 * one through cfg.refused, for the forwarder). */
static void give_back(raft_node_t *n, const proposal_t *p, int reason) {
    if (p->from) {
        if (n->cfg.refused) n->cfg.refused(n->cfg.ctx, p->from, p->data, p->len, reason);
    } else if (n->cfg.dropped) {
        n->cfg.dropped(n->cfg.ctx, p->data, p->len, reason);
    }
}

/* Raft thread: the proposals to hand on this round. The leader proposes
 * them; a follower forwards them to its leader (cfg.forward); without a
 * leader they stay queued, and those queued for longer than two election
 * timeouts go to cfg.dropped. Returns the number the core took. */
static uint64_t handle_proposals(raft_node_t *n, uint64_t now) {
    raft_status_t rs;
    raft_status(n->raft, &rs);
    int mine = rs.leader == n->cfg.id, forward = !mine && rs.leader && n->cfg.forward;
    proposal_t *batch = NULL, **tail = &batch;
    pthread_mutex_lock(&n->mu);
    if (mine || forward) {
        batch = n->q_head;
        n->q_taken = n->q_len;
        if (forward) {
            node_fwd_add_locked(n, n->q_len, now);
            n->q_taken = 0;
        }
        n->q_head = n->q_tail = NULL;
        n->q_len = 0;
    } else {
        while (n->q_head && now - n->q_head->queued_ms >= n->no_leader_wait_ms) {
            *tail = n->q_head;
            tail = &n->q_head->next;
            n->q_head = n->q_head->next;
            n->q_len--;
        }
        *tail = NULL;
        if (!n->q_head) n->q_tail = NULL;
    }
    pthread_mutex_unlock(&n->mu);
    uint64_t proposed = 0;
    for (proposal_t *p = batch; p; p = p->next) {
        if (forward) {
            n->cfg.forward(n->cfg.ctx, rs.leader, p->data, p->len);
            continue;
        }
        int rc = mine ? raft_propose(n->raft, p->data, p->len) : RAFT_ERR_NOT_LEADER;
        if (rc == RAFT_OK)
            proposed++;
        else
            give_back(n, p,
                      rc == RAFT_ERR_NOT_LEADER ? RAFT_NODE_ERR_NOT_LEADER
                      : rc == RAFT_ERR_NOMEM    ? RAFT_NODE_ERR_NOMEM
                                                : RAFT_NODE_ERR_BUSY);
    }
    free_queue(batch);
    return proposed;
}

/* Under mu: proposals the raft thread can hand on now. */
static int proposals_ready_locked(const raft_node_t *n) {
    if (!n->q_head || !n->status.leader) return 0;
    return n->status.leader == n->cfg.id || n->cfg.forward;
}

/* Raft thread, leaving: queued proposals go to cfg.dropped (STOPPED). */
static void drop_queued(raft_node_t *n) {
    pthread_mutex_lock(&n->mu);
    proposal_t *q = n->q_head;
    n->q_head = n->q_tail = NULL;
    n->q_len = 0;
    pthread_mutex_unlock(&n->mu);
    for (proposal_t *p = q; p; p = p->next) give_back(n, p, RAFT_NODE_ERR_STOPPED);
    free_queue(q);
}

static void *node_thread(void *arg) {
    raft_node_t *n = arg;
    uint64_t next_tick = node_now_ms() + n->cfg.tick_ms;
    uint64_t report_to[RAFT_MAX_MEMBERS];
    int report_ok[RAFT_MAX_MEMBERS];
    for (;;) {
        pthread_mutex_lock(&n->mu);
        int busy = core_busy_locked(n);
        while (!n->stopping && !n->status.failed && !proposals_ready_locked(n) && !node_peer_work_locked(n) &&
               !busy && node_now_ms() < next_tick) {
            struct timespec ts;
            deadline_ts(next_tick, &ts);
            pthread_cond_timedwait(&n->cv, &n->mu, &ts);
            busy = core_busy_locked(n); /* the apply thread may have made room */
        }
        if (n->stopping || n->status.failed) {
            pthread_mutex_unlock(&n->mu);
            break;
        }
        inbound_t *in;
        admin_req_t *admin;
        size_t n_reports;
        node_take_peer_work_locked(n, &in, &admin, &n_reports, report_to, report_ok);
        pthread_mutex_unlock(&n->mu);

        uint64_t now = node_now_ms(), ticked = 0;
        if (now >= next_tick) {
            raft_tick(n->raft);
            ticked = 1;
            next_tick = now + n->cfg.tick_ms;
        }
        node_step_inbound(n, in);
        for (size_t i = 0; i < n_reports; i++) raft_report_snapshot(n->raft, report_to[i], report_ok[i]);
        node_run_admin(n, admin);
        uint64_t proposed = handle_proposals(n, now);
        node_ask_reads(n, now);
        if (raft_has_ready(n->raft) && handle_ready(n) != 0) {
            node_fail(n, "WAL write failed");
            break;
        }
        compact_memory(n);
        pthread_mutex_lock(&n->mu);
        n->status.proposals += proposed;
        n->status.ticks += ticked;
        n->q_taken = 0;
        status_refresh_locked(n);
        pthread_mutex_unlock(&n->mu);
    }
    node_peers_exit(n);
    drop_queued(n);
    return NULL;
}

/* Lets the apply thread finish what is queued (committed, durable entries),
 * then joins it. */
static void stop_apply_thread(raft_node_t *n) {
    pthread_mutex_lock(&n->amu);
    n->a_stopping = 1;
    pthread_cond_broadcast(&n->acv);
    pthread_mutex_unlock(&n->amu);
    pthread_join(n->apply_thread, NULL);
}

/* ---------------------------------------------------------------- API */

static int start_error(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return -1;
}

static int config_check(const raft_node_config_t *cfg, char *err, size_t errlen) {
    if (cfg->id == 0) return start_error(err, errlen, "raft node: id must be non-zero");
    if (!cfg->apply) return start_error(err, errlen, "raft node: apply callback missing");
    if (!cfg->wal_dir) return start_error(err, errlen, "raft node: wal_dir missing");
    if (cfg->n_peers && !cfg->peer_ids) return start_error(err, errlen, "raft node: peer_ids missing");
    if (cfg->n_peers > RAFT_MAX_MEMBERS) return start_error(err, errlen, "raft node: too many peers");
    if (cfg->join) return 0; /* the membership comes from the leader */
    if (cfg->n_peers == 0) return start_error(err, errlen, "raft node: no peers");
    int self = 0;
    for (size_t i = 0; i < cfg->n_peers; i++) self |= cfg->peer_ids[i] == cfg->id;
    if (!self) return start_error(err, errlen, "raft node: peer_ids must include the node's own id");
    if (cfg->n_peers > 1 && !cfg->send) return start_error(err, errlen, "raft node: peers need cfg.send");
    return 0;
}

static void node_free(raft_node_t *n) {
    raft_free(n->raft);
    wal_close(n->wal);
    free_queue(n->q_head);
    while (n->a_head) {
        apply_batch_t *b = n->a_head;
        n->a_head = b->next;
        apply_batch_free(b);
    }
    free(n->peers);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    pthread_cond_destroy(&n->admin_cv);
    pthread_mutex_destroy(&n->amu);
    pthread_cond_destroy(&n->acv);
    free(n);
}

static int node_init_sync(raft_node_t *n) {
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) return -1;
    if (pthread_mutex_init(&n->mu, NULL) != 0) {
        pthread_cond_destroy(&n->cv);
        return -1;
    }
    if (pthread_mutex_init(&n->amu, NULL) != 0 || pthread_cond_init(&n->acv, NULL) != 0 ||
        pthread_cond_init(&n->admin_cv, NULL) != 0) {
        pthread_mutex_destroy(&n->mu);
        pthread_cond_destroy(&n->cv);
        return -1;
    }
    return 0;
}

/* A brand-new member's log starts, as etcd-raft's StartNode does, with one
 * committed CONF_CHANGE entry per initial voter at term 1 (data: op byte 1 =
 * add voter, then the 8-byte big-endian member id). The first election then
 * runs in term 2, and the membership is in the log from the start, ready for
 * replicated membership changes. Written and synced before the core starts. */
static int node_bootstrap(raft_node_t *n, wal_recovered_t *rec, char *err, size_t errlen) {
    size_t np = n->cfg.n_peers;
    raft_entry_t *ents = calloc(np, sizeof(*ents));
    if (!ents) return start_error(err, errlen, "raft node: out of memory");
    rec->ents = ents; /* owned by rec from here: wal_recovered_free frees all */
    for (size_t i = 0; i < np; i++) {
        uint8_t *d = malloc(9);
        if (!d) return start_error(err, errlen, "raft node: out of memory");
        d[0] = 1;
        for (int b = 0; b < 8; b++) d[1 + b] = (uint8_t)(n->peers[i] >> (56 - 8 * b));
        ents[i] =
            (raft_entry_t){.term = 1, .index = i + 1, .type = RAFT_ENTRY_CONF_CHANGE, .data = d, .len = 9};
        rec->n_ents = i + 1;
    }
    raft_hard_state_t hs = {.term = 1, .vote = 0, .commit = np};
    if (wal_append_entries(n->wal, ents, np) != 0 || wal_save_hard_state(n->wal, &hs) != 0 ||
        wal_sync(n->wal) != 0)
        return start_error(err, errlen, "raft node: cannot write the bootstrap entries to the WAL");
    rec->hard_state = hs;
    return 0;
}

/* A brand-new member whose state machine already holds everything up to
 * cfg.applied_index (a store restored from a snapshot, kshimctl snapshot
 * restore): its log starts there, as etcd's restore writes a snapshot at its
 * bootstrap entries, with a snapshot point (index, term 1, the initial
 * voters) and hard state {term 1, commit index}. The store is then not in
 * the log: a member that joins later is sent it as a snapshot. */
static int node_bootstrap_at(raft_node_t *n, wal_recovered_t *rec, char *err, size_t errlen) {
    uint64_t at = n->cfg.applied_index;
    raft_snapshot_meta_t sm = {.index = at, .term = 1, .voters = n->peers, .n_voters = n->cfg.n_peers};
    raft_hard_state_t hs = {.term = 1, .vote = 0, .commit = at};
    if (wal_save_snapshot(n->wal, &sm, 1) != 0 || wal_save_hard_state(n->wal, &hs) != 0 ||
        wal_sync(n->wal) != 0)
        return start_error(err, errlen, "raft node: cannot write the bootstrap snapshot point to the WAL");
    rec->base_index = at;
    rec->base_term = 1;
    rec->hard_state = hs;
    return 0;
}

/* The membership at the recovered log base: the WAL's snapshot point when
 * it is the base; else a joining member knows nobody, and a bootstrapped
 * one its initial voters (which its log's first entries add again). */
static void base_membership(raft_node_t *n, const wal_recovered_t *rec, raft_config_t *rc) {
    if (rec->has_snapshot && rec->snapshot.index == rec->base_index) {
        rc->voters = rec->snapshot.voters;
        rc->n_voters = rec->snapshot.n_voters;
        rc->learners = rec->snapshot.learners;
        rc->n_learners = rec->snapshot.n_learners;
    } else if (!n->cfg.join) {
        rc->voters = n->peers;
        rc->n_voters = n->cfg.n_peers;
    }
}

/* The state machine is older than the WAL's snapshot point (a crash after
 * a snapshot from the leader was logged, before it was installed): the
 * apply thread installs it again first. And a state machine installed from
 * a leader's snapshot may be ahead of the log: its entries come again. */
static uint64_t start_applied(raft_node_t *n, const wal_recovered_t *rec) {
    uint64_t applied = n->cfg.applied_index, last = rec->base_index + rec->n_ents;
    if (!rec->has_snapshot || rec->snapshot.index != rec->base_index) return applied;
    if (applied < rec->base_index) {
        node_meta_from(&n->start_install, &rec->snapshot);
        n->has_start_install = 1;
        return rec->base_index;
    }
    return applied > last ? last : applied;
}

/* The entries the state machine already holds came from the WAL without
 * their data (wal_open_from): the core drops them before it does anything
 * else, as its first compaction would (a follower that needs them gets a
 * snapshot), so none can be applied or sent. The core's log then starts
 * at the applied index, with that entry's term and the membership there.
 * 0, or -1 if the core kept one (it cannot: nothing is in flight yet). */
static int drop_applied(raft_node_t *n, uint64_t no_data_to, char *err, size_t errlen) {
    raft_status_t rs;
    raft_status(n->raft, &rs);
    if (no_data_to > rs.last_index) no_data_to = rs.last_index;
    if (no_data_to > rs.first_index - 1) raft_compact_to(n->raft, no_data_to);
    raft_status(n->raft, &rs);
    if (rs.first_index - 1 >= no_data_to) return 0;
    return start_error(err, errlen, "raft node: cannot drop the applied entries from the recovered log");
}

/* WAL replay -> core. Entries at or below the state machine's applied
 * index come without their data and leave the core at once (drop_applied):
 * only the hard state, the log's position and terms, the membership and
 * the entries after the applied index are kept. */
static int node_recover(raft_node_t *n, char *err, size_t errlen) {
    wal_recovered_t rec;
    uint64_t no_data_to = n->cfg.applied_index;
    if (wal_open_from(n->cfg.wal_dir, n->cfg.wal_segment_bytes, no_data_to, &n->wal, &rec, err, errlen) != 0)
        return -1;
    int fresh = rec.n_ents == 0 && rec.base_index == 0 && rec.hard_state.term == 0 && !rec.has_snapshot;
    int boot = fresh && !n->cfg.join;
    if (boot && (n->cfg.applied_index == 0 ? node_bootstrap(n, &rec, err, errlen)
                                           : node_bootstrap_at(n, &rec, err, errlen)) != 0) {
        wal_recovered_free(&rec);
        return -1;
    }
    raft_config_t rc = {
        .id = n->cfg.id,
        .election_ticks = n->cfg.election_ticks,
        .heartbeat_ticks = n->cfg.heartbeat_ticks,
        /* election jitter differs per member and per start */
        .seed = n->cfg.id * 0x9E3779B97F4A7C15ull ^ node_now_ms() ^ ((uint64_t)getpid() << 32) ^
                (uint64_t)(uintptr_t)n,
        .hard_state = rec.hard_state,
        .log_base_index = rec.base_index,
        .log_base_term = rec.base_term,
        .log = rec.ents,
        .n_log = rec.n_ents,
        .applied = start_applied(n, &rec),
        .pre_vote = n->cfg.pre_vote,
        .check_quorum = n->cfg.check_quorum,
        .max_msg_bytes = NODE_MAX_MSG_BYTES,
    };
    base_membership(n, &rec, &rc);
    n->wal_snap_index = rec.has_snapshot ? rec.snapshot.index : 0;
    n->raft = raft_new(&rc, err, errlen);
    wal_recovered_free(&rec);
    if (!n->raft || drop_applied(n, no_data_to, err, errlen) != 0) return -1;
    node_hist_push(n);
    return 0;
}

int raft_node_start(const raft_node_config_t *cfg, raft_node_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (config_check(cfg, err, errlen) != 0) return -1;
    raft_node_t *n = calloc(1, sizeof(*n));
    if (!n) return start_error(err, errlen, "raft node: out of memory");
    n->cfg = *cfg;
    if (!n->cfg.tick_ms) n->cfg.tick_ms = 100;
    if (!n->cfg.election_ticks) n->cfg.election_ticks = 10;
    if (!n->cfg.heartbeat_ticks) n->cfg.heartbeat_ticks = 1;
    if (!n->cfg.persist_every) n->cfg.persist_every = 10000;
    if (!n->cfg.max_inflight) n->cfg.max_inflight = RAFT_NODE_DEFAULT_MAX_INFLIGHT;
    if (!n->cfg.apply_queue_entries) n->cfg.apply_queue_entries = APPLY_QUEUE_MAX_ENTRIES;
    n->no_leader_wait_ms = 2ull * n->cfg.election_ticks * n->cfg.tick_ms;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    n->read_round = (uint64_t)wall.tv_sec * 1000000000ull + (uint64_t)wall.tv_nsec;
    n->peers = malloc((cfg->n_peers ? cfg->n_peers : 1) * sizeof(uint64_t));
    if (!n->peers || node_init_sync(n) != 0) {
        free(n->peers);
        free(n);
        return start_error(err, errlen, "raft node: out of memory");
    }
    if (cfg->n_peers) memcpy(n->peers, cfg->peer_ids, cfg->n_peers * sizeof(uint64_t));
    n->cfg.peer_ids = n->peers;
    if (node_recover(n, err, errlen) != 0) {
        node_free(n);
        return -1;
    }
    n->cfg.wal_dir = NULL; /* the caller's strings: only used during start */
    /* The only voter elects itself now, so proposals are accepted at once.
     * Its new empty entry commits (with every recovered entry before it) in
     * the thread's first round, before any entry proposed later. */
    raft_tick(n->raft);
    n->applied = cfg->applied_index;
    n->queued_to = cfg->applied_index;
    if (n->has_start_install && queue_install(n, &n->start_install) != 0) {
        node_free(n);
        return start_error(err, errlen, "raft node: out of memory");
    }
    status_refresh(n);
    n->status.durable_index = n->status.last_index; /* replayed from the WAL, or bootstrapped and synced */
    if (pthread_create(&n->apply_thread, NULL, apply_thread, n) != 0) {
        node_free(n);
        return start_error(err, errlen, "raft node: cannot start the apply thread");
    }
    if (pthread_create(&n->thread, NULL, node_thread, n) != 0) {
        stop_apply_thread(n);
        node_free(n);
        return start_error(err, errlen, "raft node: cannot start thread");
    }
    *out = n;
    return 0;
}

int raft_node_propose(raft_node_t *n, const void *data, size_t len) {
    return raft_node_propose_forwarded(n, 0, data, len);
}

void raft_node_forward_refused(raft_node_t *n) {
    pthread_mutex_lock(&n->mu);
    node_fwd_refused_locked(n);
    pthread_mutex_unlock(&n->mu);
}

int raft_node_propose_forwarded(raft_node_t *n, uint64_t from, const void *data, size_t len) {
    proposal_t *p = malloc(sizeof(*p) + len);
    if (!p) return RAFT_NODE_ERR_NOMEM;
    p->next = NULL;
    p->from = from;
    p->len = len;
    p->queued_ms = node_now_ms();
    if (len) memcpy(p->data, data, len);
    pthread_mutex_lock(&n->mu);
    int rc = RAFT_NODE_OK;
    if (n->stopping || n->status.failed || n->thread_done)
        rc = RAFT_NODE_ERR_STOPPED;
    else if (n->status.leader != n->status.id && (!n->cfg.forward || !n->cfg.dropped))
        rc = RAFT_NODE_ERR_NOT_LEADER; /* nobody to forward to or to tell later */
    else if (inflight_locked(n) >= n->cfg.max_inflight)
        rc = RAFT_NODE_ERR_BUSY;
    if (rc == RAFT_NODE_ERR_BUSY) n->status.busy_refusals++;
    if (rc == RAFT_NODE_OK) {
        int was_empty = n->q_head == NULL;
        if (n->q_tail)
            n->q_tail->next = p;
        else
            n->q_head = p;
        n->q_tail = p;
        n->q_len++;
        if (was_empty) pthread_cond_signal(&n->cv);
    }
    pthread_mutex_unlock(&n->mu);
    if (rc != RAFT_NODE_OK) free(p);
    return rc;
}

void raft_node_status(raft_node_t *n, raft_node_status_t *out) {
    pthread_mutex_lock(&n->mu);
    *out = n->status;
    out->inflight = inflight_locked(n);
    pthread_mutex_unlock(&n->mu);
}

void raft_node_disk_stats(raft_node_t *n, wal_disk_stats_t *out) { wal_disk_stats(n->wal, out); }

void raft_node_stop(raft_node_t *n) {
    if (!n) return;
    pthread_mutex_lock(&n->mu);
    n->stopping = 1;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->thread, NULL);
    stop_apply_thread(n);
    node_free(n);
}
