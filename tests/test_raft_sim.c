/*
 * test_raft_sim.c: deterministic simulation of Raft clusters (3 and 5
 * members) driving the I/O-free core (raft/raft.c) through a seeded,
 * hostile network: per-seed message loss, duplication, delay and
 * reordering; partitions into groups, isolated members and one-way
 * (asymmetric) link cuts; crashes, also in the middle of a ready (before
 * it was persisted), and restarts from only what was persisted before
 * raft_advance. After every step the checker verifies:
 *   - election safety: at most one leader per term;
 *   - log matching: an (index, term) pair names the same entry (same data,
 *     same preceding term) on every member at every time;
 *   - leader completeness: a leader of term T holds every entry known
 *     committed in a term below T;
 *   - state machine safety: applied entries are identical on every member
 *     at each index, applied in order, and committed entries never change;
 *   - ReadIndex linearizability: a read state's index >= every entry known
 *     committed before the read was requested;
 * and after healing: one leader, every member caught up (liveness).
 * make test runs RAFT_SIM_SEEDS seeds (default 10000, split between 3 and
 * 5 members); a failure prints its seed (rerun one with RAFT_SIM_SEED=n).
 * With every 5th allocation of the cores failing, the same checks hold.
 * The core's test-only debug switches (raft_config_t.debug_break) must be
 * caught: the checker has to FAIL with them on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "test_raft_util.h"

#define MAX_NODES 7 /* 3 or 5 initial voters, the rest join later */
#define MAX_LOG 2048
#define MAX_READS 32
#define SIM_STEPS 600 /* faulty steps per seed, then healing */

/* ---------------------------------------------------------------- model */

typedef struct sim_msg {
    raft_msg_t m;
    uint64_t deliver_at;
} sim_msg_t;

typedef struct durable_entry {
    uint64_t term;
    uint8_t type;
    uint8_t *data;
    size_t len;
} durable_entry_t;

typedef struct sim_node {
    raft_t *r;
    int up;
    raft_hard_state_t hs;             /* persisted hard state */
    durable_entry_t log[MAX_LOG + 1]; /* persisted log, 1-based */
    uint64_t last;
    uint64_t applied;     /* in-memory state machine (rebuilt on restart) */
    uint64_t seen_commit; /* commit index already recorded by the checker */
    int gone;             /* removed from the cluster and stopped for good */
    int ever_member;      /* in a committed configuration at some point */
    /* persisted snapshot (log base): state machine at base, membership there */
    int has_snap;
    uint64_t base, base_term;
    uint64_t snap_ids[2 * MAX_NODES];
    size_t snap_nv, snap_nl;
    uint64_t snapshots_installed, compactions;
} sim_node_t;

/* What the checker knows about an (index, term) pair ever seen in a log. */
typedef struct pair_fact {
    uint64_t term, prev_term, hash;
    struct pair_fact *next;
} pair_fact_t;

typedef struct committed {
    int set;
    uint64_t term, hash;
    uint64_t known_in_term; /* term of the member that first reported it committed */
    uint8_t conf_op;        /* a conf change: RAFT_CONF_* and the member id */
    uint64_t conf_id;
} committed_t;

typedef struct sim_read {
    int active, node;
    uint64_t ctx, min_index;
} sim_read_t;

typedef struct sim_opts {
    int n; /* members */
    int steps;
    unsigned debug_break; /* RAFT_DEBUG_* passed to every member */
    unsigned fail_alloc;  /* every n-th allocation of a core fails (until healing) */
} sim_opts_t;

typedef struct sim {
    sim_opts_t o;
    uint64_t seed, rng, now;
    int n_slots; /* members ever started: ids 1..n_slots */
    uint64_t ids[MAX_NODES];
    sim_node_t nodes[MAX_NODES];
    int blocked[MAX_NODES][MAX_NODES]; /* link from -> to cut */
    unsigned loss_pct, dup_pct, max_delay;
    int pre_vote, check_quorum; /* per seed */
    size_t max_msg_bytes, max_inflight, max_uncommitted;
    sim_msg_t *net;
    size_t n_net, cap_net;
    pair_fact_t *facts[MAX_LOG + 1];
    committed_t committed[MAX_LOG + 1];
    uint64_t max_known_commit;
    uint64_t *leader_of_term;
    size_t n_terms;
    sim_read_t reads[MAX_READS];
    uint64_t next_ctx, proposals, reads_done, dropped, conf_changes, nomem;
    int settling; /* no more faults: the cluster must converge */
    int compact;  /* this seed takes snapshots and compacts logs */
    int failed;
    char why[256];
} sim_t;

typedef struct sim_result {
    int failed;
    char why[256];
    uint64_t committed, reads, conf_changes, snapshots, compactions, nomem;
} sim_result_t;

/* ---------------------------------------------------------------- helpers */

static uint64_t srand64(sim_t *s) {
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned pick(sim_t *s, unsigned n) { return (unsigned)(srand64(s) % n); }

static void sim_fail(sim_t *s, const char *fmt, ...) {
    if (s->failed) return;
    s->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
}

static uint64_t entry_hash(uint8_t type, const uint8_t *data, size_t len) {
    uint64_t h = 1469598103934665603ull ^ type;
    for (size_t i = 0; i < len; i++) h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

static int node_of(const sim_t *s, uint64_t id) {
    for (int i = 0; i < s->n_slots; i++)
        if (s->ids[i] == id) return i;
    return -1;
}

static void net_remove(sim_t *s, size_t i) {
    test_msg_free(&s->net[i].m);
    s->net[i] = s->net[--s->n_net];
}

static void net_push(sim_t *s, const raft_msg_t *m) {
    if (s->n_net == s->cap_net) {
        s->cap_net = s->cap_net ? s->cap_net * 2 : 256;
        s->net = realloc(s->net, s->cap_net * sizeof(*s->net));
        assert_non_null(s->net);
    }
    sim_msg_t *sm = &s->net[s->n_net++];
    test_msg_copy(&sm->m, m);
    sm->deliver_at = s->now + pick(s, s->max_delay + 1);
}

/* ---------------------------------------------------------------- checker */

/* Log matching, across members and time: (index, term) always names the
 * same data with the same preceding term. */
static void check_pair(sim_t *s, uint64_t index, uint64_t term, uint64_t prev_term, uint64_t hash) {
    if (index > MAX_LOG) {
        sim_fail(s, "log longer than the model (%llu)", (unsigned long long)index);
        return;
    }
    for (pair_fact_t *f = s->facts[index]; f; f = f->next) {
        if (f->term != term) continue;
        if (f->prev_term != prev_term || f->hash != hash)
            sim_fail(s, "log matching: index %llu term %llu differs between members",
                     (unsigned long long)index, (unsigned long long)term);
        return;
    }
    pair_fact_t *f = malloc(sizeof(*f));
    assert_non_null(f);
    *f = (pair_fact_t){.term = term, .prev_term = prev_term, .hash = hash, .next = s->facts[index]};
    s->facts[index] = f;
}

static uint64_t *term_slot(sim_t *s, uint64_t term) {
    if (term >= s->n_terms) {
        size_t n = s->n_terms ? s->n_terms : 64;
        while (n <= term) n *= 2;
        s->leader_of_term = realloc(s->leader_of_term, n * sizeof(uint64_t));
        assert_non_null(s->leader_of_term);
        memset(s->leader_of_term + s->n_terms, 0, (n - s->n_terms) * sizeof(uint64_t));
        s->n_terms = n;
    }
    return &s->leader_of_term[term];
}

/* The leader's log holds committed entry k (if committed below its term). */
static void check_leader_has(sim_t *s, raft_t *r, uint64_t term, uint64_t k) {
    committed_t *c = &s->committed[k];
    if (!c->set || c->known_in_term >= term) return;
    raft_status_t st;
    raft_status(r, &st);
    if (k < st.first_index) { /* compacted: in the leader's snapshot */
        if (k == st.first_index - 1 && raft_term_at(r, k) != c->term)
            sim_fail(s, "leader completeness: leader of term %llu has a snapshot at %llu of another term",
                     (unsigned long long)term, (unsigned long long)k);
        return;
    }
    const raft_entry_t *e = raft_entry_at(r, k);
    if (!e || e->term != c->term || entry_hash(e->type, e->data, e->len) != c->hash)
        sim_fail(s, "leader completeness: leader of term %llu lacks committed entry %llu",
                 (unsigned long long)term, (unsigned long long)k);
}

/* Commit index k is known: it never changes afterwards. */
static void record_committed(sim_t *s, const raft_entry_t *e, uint64_t in_term) {
    uint64_t k = e->index, term = e->term, hash = entry_hash(e->type, e->data, e->len);
    committed_t *c = &s->committed[k];
    if (c->set) {
        if (c->term != term || c->hash != hash)
            sim_fail(s, "state machine safety: committed entry %llu changed", (unsigned long long)k);
        return;
    }
    *c = (committed_t){.set = 1, .term = term, .hash = hash, .known_in_term = in_term};
    if (e->type == RAFT_ENTRY_CONF_CHANGE && e->len >= RAFT_CONF_CHANGE_LEN) {
        c->conf_op = e->data[0];
        for (int b = 0; b < 8; b++) c->conf_id = (c->conf_id << 8) | e->data[1 + b];
    }
    if (k > s->max_known_commit) s->max_known_commit = k;
    /* every current leader of a later term must already hold it */
    for (int i = 0; i < s->n_slots; i++) {
        if (!s->nodes[i].up) continue;
        raft_status_t st;
        raft_status(s->nodes[i].r, &st);
        if (st.role == RAFT_LEADER) check_leader_has(s, s->nodes[i].r, st.term, k);
    }
}

static void observe_commit(sim_t *s, sim_node_t *nd, const raft_status_t *st) {
    while (nd->seen_commit < st->commit && !s->failed) {
        uint64_t k = ++nd->seen_commit;
        const raft_entry_t *e = raft_entry_at(nd->r, k);
        if (!e) continue; /* compacted: its apply was checked */
        record_committed(s, e, st->term);
    }
}

static void check_leader(sim_t *s, sim_node_t *nd, const raft_status_t *st) {
    uint64_t *slot = term_slot(s, st->term);
    if (*slot == st->id) return;
    if (*slot != 0) {
        sim_fail(s, "election safety: leaders %llu and %llu in term %llu", (unsigned long long)*slot,
                 (unsigned long long)st->id, (unsigned long long)st->term);
        return;
    }
    *slot = st->id;
    for (uint64_t k = 1; k <= s->max_known_commit && !s->failed; k++) check_leader_has(s, nd->r, st->term, k);
}

static void check_invariants(sim_t *s) {
    for (int i = 0; i < s->n_slots && !s->failed; i++) {
        sim_node_t *nd = &s->nodes[i];
        if (!nd->up) continue;
        raft_status_t st;
        raft_status(nd->r, &st);
        if (st.role == RAFT_LEADER) check_leader(s, nd, &st);
        observe_commit(s, nd, &st);
    }
}

/* ---------------------------------------------------------------- driver */

/* Drops persisted entries up to b (they are in the snapshot now). */
static void durable_compact(sim_node_t *nd, uint64_t b, uint64_t term, const raft_snapshot_meta_t *sm) {
    for (uint64_t k = nd->base + 1; k <= b && k <= nd->last; k++) {
        free(nd->log[k].data);
        nd->log[k].data = NULL;
    }
    if (nd->last < b) nd->last = b;
    nd->base = b;
    nd->base_term = term;
    nd->has_snap = 1;
    nd->snap_nv = sm->n_voters < MAX_NODES ? sm->n_voters : MAX_NODES;
    nd->snap_nl = sm->n_learners < MAX_NODES ? sm->n_learners : MAX_NODES;
    memcpy(nd->snap_ids, sm->voters, nd->snap_nv * sizeof(uint64_t));
    memcpy(nd->snap_ids + nd->snap_nv, sm->learners, nd->snap_nl * sizeof(uint64_t));
}

/* A snapshot from the leader: the state machine jumps to its index, which
 * must be committed with that term. */
static void install_snapshot(sim_t *s, sim_node_t *nd, const raft_snapshot_meta_t *sm) {
    committed_t *c = sm->index <= MAX_LOG ? &s->committed[sm->index] : NULL;
    if (!c || !c->set || c->term != sm->term) {
        sim_fail(s, "snapshot at %llu (term %llu) is not of committed state", (unsigned long long)sm->index,
                 (unsigned long long)sm->term);
        return;
    }
    for (uint64_t k = nd->base + 1; k <= nd->last; k++) {
        free(nd->log[k].data);
        nd->log[k].data = NULL;
    }
    nd->last = nd->base;
    durable_compact(nd, sm->index, sm->term, sm);
    nd->last = sm->index;
    nd->applied = sm->index;
    if (nd->seen_commit < sm->index) nd->seen_commit = sm->index;
    nd->snapshots_installed++;
}

static void persist(sim_t *s, sim_node_t *nd, const raft_ready_t *rd) {
    if (rd->snapshot) install_snapshot(s, nd, rd->snapshot);
    for (size_t k = 0; k < rd->n_entries; k++) {
        const raft_entry_t *e = &rd->entries[k];
        if (e->index > nd->last + 1 || e->index > MAX_LOG) {
            sim_fail(s, "ready entry %llu leaves a gap", (unsigned long long)e->index);
            return;
        }
        while (nd->last >= e->index) {
            free(nd->log[nd->last].data);
            nd->log[nd->last--].data = NULL;
        }
        if (e->index <= nd->base) {
            sim_fail(s, "ready entry %llu below the snapshot", (unsigned long long)e->index);
            return;
        }
        uint64_t prev_term = e->index - 1 == nd->base ? nd->base_term : nd->log[e->index - 1].term;
        check_pair(s, e->index, e->term, prev_term, entry_hash(e->type, e->data, e->len));
        durable_entry_t *d = &nd->log[e->index];
        *d = (durable_entry_t){.term = e->term, .type = e->type, .len = e->len};
        d->data = e->len ? malloc(e->len) : NULL;
        if (e->len) memcpy(d->data, e->data, e->len);
        nd->last = e->index;
    }
    if (rd->hard_state_changed) nd->hs = rd->hard_state;
}

static void apply_entry(sim_t *s, sim_node_t *nd, const raft_entry_t *e, uint64_t term) {
    if (e->index != nd->applied + 1) {
        sim_fail(s, "apply out of order: %llu after %llu", (unsigned long long)e->index,
                 (unsigned long long)nd->applied);
        return;
    }
    nd->applied = e->index;
    record_committed(s, e, term);
}

static void release_reads(sim_t *s, int i, const raft_ready_t *rd) {
    for (size_t k = 0; k < rd->n_read_states; k++) {
        const raft_read_state_t *rs = &rd->read_states[k];
        for (int q = 0; q < MAX_READS; q++) {
            sim_read_t *pr = &s->reads[q];
            if (!pr->active || pr->ctx != rs->ctx) continue;
            if (pr->node != i)
                sim_fail(s, "read state for ctx %llu on the wrong member", (unsigned long long)rs->ctx);
            if (rs->index < pr->min_index)
                sim_fail(s, "ReadIndex not linearizable: index %llu < %llu committed before the read",
                         (unsigned long long)rs->index, (unsigned long long)pr->min_index);
            pr->active = 0;
            s->reads_done++;
        }
    }
}

static void node_crash(sim_t *s, int i);

static void handle_ready(sim_t *s, int i) {
    sim_node_t *nd = &s->nodes[i];
    raft_ready_t rd;
    raft_ready(nd->r, &rd);
    if (!s->settling && pick(s, 400) == 0) { /* power loss before the ready was persisted */
        node_crash(s, i);
        return;
    }
    persist(s, nd, &rd);
    raft_status_t st;
    raft_status(nd->r, &st);
    for (size_t k = 0; k < rd.n_msgs; k++) {
        const raft_msg_t *m = &rd.msgs[k];
        int to = node_of(s, m->to);
        if (m->from != s->ids[i] || to < 0) {
            sim_fail(s, "message with bad addresses %llu -> %llu", (unsigned long long)m->from,
                     (unsigned long long)m->to);
            continue;
        }
        if (pick(s, 100) < s->loss_pct) continue;
        net_push(s, m);
        if (pick(s, 100) < s->dup_pct) net_push(s, m);
    }
    for (size_t k = 0; k < rd.n_committed && !s->failed; k++) apply_entry(s, nd, &rd.committed[k], st.term);
    release_reads(s, i, &rd);
    raft_advance(nd->r);
    if (s->compact && pick(s, 12) == 0 && nd->applied > nd->base + 2) { /* snapshot + compaction */
        uint64_t b = raft_compact_to(nd->r, nd->applied - pick(s, 3));
        if (b > nd->base) {
            raft_snapshot_meta_t sm;
            raft_snapshot_meta(nd->r, &sm);
            if (sm.index != b)
                sim_fail(s, "snapshot meta %llu after compacting to %llu", (unsigned long long)sm.index,
                         (unsigned long long)b);
            durable_compact(nd, b, sm.term, &sm);
            nd->compactions++;
        }
    }
}

static void drain(sim_t *s) {
    for (int rounds = 0; rounds < 50 && !s->failed; rounds++) {
        int any = 0;
        for (int i = 0; i < s->n_slots; i++) {
            if (s->nodes[i].up && raft_has_ready(s->nodes[i].r)) {
                handle_ready(s, i);
                any = 1;
            }
        }
        check_invariants(s);
        if (!any) return;
    }
}

static void node_start(sim_t *s, int i) {
    sim_node_t *nd = &s->nodes[i];
    raft_entry_t *log = calloc(nd->last - nd->base + 1, sizeof(raft_entry_t));
    assert_non_null(log);
    for (uint64_t k = nd->base + 1; k <= nd->last; k++)
        log[k - nd->base - 1] = (raft_entry_t){.term = nd->log[k].term,
                                               .index = k,
                                               .type = nd->log[k].type,
                                               .data = nd->log[k].data,
                                               .len = nd->log[k].len};
    raft_config_t c = {.id = s->ids[i],
                       .voters = s->ids,
                       .n_voters = (size_t)s->o.n,
                       .election_ticks = 6,
                       .heartbeat_ticks = 2,
                       .seed = s->seed * 31 + s->now,
                       .hard_state = nd->hs,
                       .log = log,
                       .n_log = nd->last - nd->base,
                       .log_base_index = nd->base,
                       .log_base_term = nd->base_term,
                       .applied = nd->base,
                       .max_msg_entries = 1 + pick(s, 8),
                       .debug_break = s->o.debug_break,
                       .pre_vote = s->pre_vote,
                       .check_quorum = s->check_quorum,
                       .max_msg_bytes = s->max_msg_bytes,
                       .max_inflight_msgs = s->max_inflight,
                       .max_uncommitted_bytes = s->max_uncommitted};
    if (nd->has_snap) { /* membership from the snapshot */
        c.voters = nd->snap_ids;
        c.n_voters = nd->snap_nv;
        c.learners = nd->snap_ids + nd->snap_nv;
        c.n_learners = nd->snap_nl;
    }
    char err[128];
    nd->r = raft_new(&c, err, sizeof(err));
    free(log);
    if (!nd->r) {
        sim_fail(s, "restart of %llu refused: %s", (unsigned long long)s->ids[i], err);
        return;
    }
    if (s->o.fail_alloc && !s->settling) raft_debug_fail_alloc(nd->r, s->o.fail_alloc);
    nd->applied = nd->base; /* the state machine: the snapshot, then the log replayed */
    nd->seen_commit = nd->base;
    nd->up = 1;
}

static void node_crash(sim_t *s, int i) {
    raft_status_t st;
    raft_status(s->nodes[i].r, &st);
    s->nomem += st.nomem;
    raft_free(s->nodes[i].r);
    s->nodes[i].r = NULL;
    s->nodes[i].up = 0;
    for (int q = 0; q < MAX_READS; q++)
        if (s->reads[q].active && s->reads[q].node == i) s->reads[q].active = 0;
}

static int is_member_of(const raft_t *r, uint64_t id) {
    uint64_t ids[MAX_NODES];
    size_t nv = raft_voters(r, ids, MAX_NODES);
    for (size_t k = 0; k < nv && k < MAX_NODES; k++)
        if (ids[k] == id) return 1;
    size_t nl = raft_learners(r, ids, MAX_NODES);
    for (size_t k = 0; k < nl && k < MAX_NODES; k++)
        if (ids[k] == id) return 1;
    return 0;
}

static void deliver_one(sim_t *s, int ignore_links) {
    if (!s->n_net) return;
    size_t i = pick(s, (unsigned)s->n_net); /* any message: reordering */
    if (!ignore_links && s->net[i].deliver_at > s->now) return;
    raft_msg_t *m = &s->net[i].m;
    int from = node_of(s, m->from), to = node_of(s, m->to);
    if (s->nodes[to].up && (ignore_links || !s->blocked[from][to])) {
        int rc = raft_step(s->nodes[to].r, m);
        if (rc == RAFT_ERR_NOMEM) rc = RAFT_OK; /* injected: work dropped */
        if (rc == RAFT_ERR_INVALID && !is_member_of(s->nodes[to].r, m->from))
            rc = RAFT_OK; /* late answer of a removed member */
        if (rc != RAFT_OK)
            sim_fail(s, "member %llu refused a correct peer's message type %d (rc %d)",
                     (unsigned long long)m->to, m->type, rc);
    }
    net_remove(s, i);
}

static uint64_t max_commit(sim_t *s) {
    uint64_t m = s->max_known_commit;
    for (int i = 0; i < s->n_slots; i++) {
        if (!s->nodes[i].up) continue;
        raft_status_t st;
        raft_status(s->nodes[i].r, &st);
        if (st.commit > m) m = st.commit;
    }
    return m;
}

/* A read dropped by the core (leader stepped down) just ages out of its slot. */
static void read_some(sim_t *s, int i) {
    uint64_t min = max_commit(s);
    uint64_t ctx = ++s->next_ctx;
    if (raft_read_index(s->nodes[i].r, ctx) != RAFT_OK) return;
    s->reads[ctx % MAX_READS] = (sim_read_t){.active = 1, .node = i, .ctx = ctx, .min_index = min};
}

static void propose_some(sim_t *s) {
    for (int i = 0; i < s->n_slots; i++) {
        if (!s->nodes[i].up) continue;
        raft_status_t st;
        raft_status(s->nodes[i].r, &st);
        if (st.role != RAFT_LEADER) continue;
        char buf[48];
        int len = snprintf(buf, sizeof(buf), "p%llu-n%d", (unsigned long long)s->proposals, i);
        if (st.last_index < MAX_LOG - 64) {
            int rc = raft_propose(s->nodes[i].r, buf, (size_t)len);
            if (rc == RAFT_OK)
                s->proposals++;
            else if (rc == RAFT_ERR_DROPPED || rc == RAFT_ERR_NOMEM)
                s->dropped++;
            else
                sim_fail(s, "leader refused a proposal: %d", rc);
        }
    }
    for (int i = 0; i < s->n_slots; i++) /* reads on any member: followers forward */
        if (s->nodes[i].up && pick(s, 3) == 0) read_some(s, i);
}

static void heal(sim_t *s) { memset(s->blocked, 0, sizeof(s->blocked)); }

static void network_event(sim_t *s) {
    int n = s->n_slots;
    switch (pick(s, 6)) {
    case 0: { /* split into two groups */
        int group[MAX_NODES];
        for (int i = 0; i < n; i++) group[i] = (int)pick(s, 2);
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) s->blocked[a][b] = group[a] != group[b];
        break;
    }
    case 1: { /* isolate one member */
        int x = (int)pick(s, (unsigned)n);
        heal(s);
        for (int a = 0; a < n; a++) s->blocked[a][x] = s->blocked[x][a] = a != x;
        break;
    }
    case 2:
    case 3: { /* cut one direction of one link */
        int a = (int)pick(s, (unsigned)n), b = (int)pick(s, (unsigned)n);
        if (a != b) s->blocked[a][b] = 1;
        break;
    }
    default: heal(s); break;
    }
}

/* Membership in the committed prefix of the log (what the cluster agreed on). */
static void committed_config(sim_t *s, int *member, int *voter) {
    for (int i = 0; i < MAX_NODES; i++) {
        member[i] = voter[i] = i < s->o.n;
        if (member[i]) s->nodes[i].ever_member = 1;
    }
    for (uint64_t k = 1; k <= s->max_known_commit; k++) {
        committed_t *c = &s->committed[k];
        if (!c->set || !c->conf_op || c->conf_id == 0 || c->conf_id > MAX_NODES) continue;
        int x = (int)c->conf_id - 1;
        if (c->conf_op == RAFT_CONF_ADD_VOTER)
            member[x] = voter[x] = 1;
        else if (c->conf_op == RAFT_CONF_ADD_LEARNER && !member[x])
            member[x] = 1;
        else if (c->conf_op == RAFT_CONF_REMOVE) {
            int voters = 0;
            for (int i = 0; i < MAX_NODES; i++) voters += voter[i];
            if (voter[x] && voters == 1) continue;
            member[x] = voter[x] = 0;
        }
        if (member[x]) s->nodes[x].ever_member = 1;
    }
}

static int leader_index(sim_t *s) {
    for (int i = 0; i < s->n_slots; i++) {
        if (!s->nodes[i].up) continue;
        raft_status_t st;
        raft_status(s->nodes[i].r, &st);
        if (st.role == RAFT_LEADER) return i;
    }
    return -1;
}

/* The leader adds a member (a new id, learner or voter), promotes a
 * learner, removes a member (itself too) or hands leadership over. */
static void change_membership(sim_t *s) {
    int l = leader_index(s);
    if (l < 0) return;
    raft_t *r = s->nodes[l].r;
    uint64_t voters[MAX_NODES], learners[MAX_NODES];
    size_t nv = raft_voters(r, voters, MAX_NODES), nl = raft_learners(r, learners, MAX_NODES);
    int rc = RAFT_OK;
    switch (pick(s, 4)) {
    case 0:
        if (s->n_slots >= MAX_NODES) return;
        rc = raft_propose_conf_change(r, pick(s, 3) ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER,
                                      s->ids[s->n_slots], "url", 3);
        if (rc == RAFT_OK) node_start(s, s->n_slots++); /* joins with an empty log */
        break;
    case 1:
        if (!nl) return;
        rc = raft_propose_conf_change(r, RAFT_CONF_ADD_VOTER, learners[pick(s, (unsigned)nl)], NULL, 0);
        break;
    case 2: {
        uint64_t id = pick(s, 2) && nl ? learners[pick(s, (unsigned)nl)] : voters[pick(s, (unsigned)nv)];
        int is_voter = 0;
        for (size_t k = 0; k < nv; k++) is_voter |= voters[k] == id;
        if (is_voter && nv <= 2) return; /* keep two voters */
        rc = raft_propose_conf_change(r, RAFT_CONF_REMOVE, id, NULL, 0);
        break;
    }
    default: rc = raft_transfer_leader(r, voters[pick(s, (unsigned)nv)]); break;
    }
    if (rc != RAFT_OK && rc != RAFT_ERR_DROPPED && rc != RAFT_ERR_NOMEM)
        sim_fail(s, "leader refused a sensible membership change or transfer: %d", rc);
    if (rc == RAFT_OK) s->conf_changes++;
}

/* One step of simulated time: some deliveries, then one random event. */
static void sim_step(sim_t *s) {
    s->now++;
    for (int k = 0; k < 3; k++) deliver_one(s, 0);
    unsigned a = pick(s, 1000);
    if (a < 350) {
        for (int i = 0; i < s->n_slots; i++)
            if (s->nodes[i].up && pick(s, 2)) raft_tick(s->nodes[i].r);
    } else if (a < 550) {
        propose_some(s);
    } else if (a < 580) {
        network_event(s);
    } else if (a < 590) {
        int i = (int)pick(s, (unsigned)s->n_slots);
        if (s->nodes[i].up)
            node_crash(s, i);
        else if (!s->nodes[i].gone)
            node_start(s, i);
    } else if (a < 595) {
        for (int i = 0; i < s->n_slots; i++)
            if (!s->nodes[i].up && !s->nodes[i].gone) node_start(s, i);
    } else if (a < 610) {
        change_membership(s);
    }
    drain(s);
}

/* Heal everything and let the cluster settle: it must converge. */
static void settle(sim_t *s) {
    heal(s);
    for (int i = 0; i < s->n_slots; i++)
        if (!s->nodes[i].up && !s->nodes[i].gone) node_start(s, i);
    s->loss_pct = 0;
    s->dup_pct = 0;
    s->settling = 1;
    for (int i = 0; i < s->n_slots; i++)
        if (s->nodes[i].up) raft_debug_fail_alloc(s->nodes[i].r, 0);
    int member[MAX_NODES], voter[MAX_NODES];
    for (int k = 0; k < 400 && !s->failed; k++) {
        s->now++;
        /* members whose removal committed stop for good (they would only disrupt) */
        committed_config(s, member, voter);
        for (int i = 0; i < s->n_slots; i++) {
            if (member[i] || !s->nodes[i].ever_member || s->nodes[i].gone) continue;
            if (s->nodes[i].up) node_crash(s, i);
            s->nodes[i].gone = 1;
        }
        if (k % 2 == 0)
            for (int i = 0; i < s->n_slots; i++)
                if (s->nodes[i].up) raft_tick(s->nodes[i].r);
        while (s->n_net && !s->failed) {
            deliver_one(s, 1);
            drain(s);
        }
        drain(s);
        if (k % 40 == 0) propose_some(s); /* a new-term entry lets old ones commit */
    }
    if (s->failed) return;
    committed_config(s, member, voter);
    int leaders = 0, lead = -1;
    raft_status_t st[MAX_NODES];
    for (int i = 0; i < s->n_slots; i++) {
        if (!member[i]) continue;
        if (!s->nodes[i].up) {
            sim_fail(s, "member %d is down after healing", i + 1);
            return;
        }
        raft_status(s->nodes[i].r, &st[i]);
        if (st[i].role == RAFT_LEADER) {
            leaders++;
            lead = i;
        }
    }
    if (leaders != 1) {
        sim_fail(s, "liveness: %d leaders among the members after healing", leaders);
        return;
    }
    for (int i = 0; i < s->n_slots; i++) {
        if (!member[i]) continue;
        if (st[i].commit != st[lead].commit || st[i].last_index != st[lead].last_index ||
            s->nodes[i].applied != st[lead].commit)
            sim_fail(s, "liveness: member %d not caught up (commit %llu vs %llu)", i + 1,
                     (unsigned long long)st[i].commit, (unsigned long long)st[lead].commit);
    }
}

static void sim_free(sim_t *s) {
    for (int i = 0; i < s->n_slots; i++) {
        if (s->nodes[i].up) node_crash(s, i);
        for (uint64_t k = 1; k <= s->nodes[i].last; k++) free(s->nodes[i].log[k].data);
    }
    while (s->n_net) net_remove(s, 0);
    free(s->net);
    for (size_t k = 0; k <= MAX_LOG; k++) {
        while (s->facts[k]) {
            pair_fact_t *f = s->facts[k];
            s->facts[k] = f->next;
            free(f);
        }
    }
    free(s->leader_of_term);
}

static void run_seed(uint64_t seed, const sim_opts_t *o, sim_result_t *res) {
    sim_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->o = *o;
    s->seed = seed;
    s->rng = seed * 0x2545F4914F6CDD1Dull + (uint64_t)o->n;
    for (int i = 0; i < MAX_NODES; i++) s->ids[i] = (uint64_t)i + 1;
    s->n_slots = o->n;
    s->loss_pct = pick(s, 25);
    s->dup_pct = pick(s, 10);
    s->max_delay = 1 + pick(s, 8);
    s->pre_vote = (int)pick(s, 2);
    s->check_quorum = (int)pick(s, 2);
    s->max_msg_bytes = pick(s, 2) ? 0 : 8 + pick(s, 40);
    s->max_inflight = 1 + pick(s, 8);
    s->max_uncommitted = pick(s, 2) ? 0 : 30 + pick(s, 200);
    s->compact = pick(s, 4) != 0;
    for (int i = 0; i < o->n; i++) node_start(s, i);
    for (int k = 0; k < o->steps && !s->failed; k++) sim_step(s);
    if (!s->failed) settle(s);
    memset(res, 0, sizeof(*res));
    res->failed = s->failed;
    memcpy(res->why, s->why, sizeof(res->why));
    res->committed = s->max_known_commit;
    res->reads = s->reads_done;
    res->conf_changes = s->conf_changes;
    for (int i = 0; i < MAX_NODES; i++) {
        res->snapshots += s->nodes[i].snapshots_installed;
        res->compactions += s->nodes[i].compactions;
    }
    sim_free(s);
    res->nomem = s->nomem;
    free(s);
}

/* ---------------------------------------------------------------- tests */

static uint64_t env_u64(const char *name, uint64_t dflt) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : dflt;
}

static void run_many(int n, uint64_t first, uint64_t count, int steps) {
    sim_opts_t o = {.n = n, .steps = steps};
    uint64_t committed = 0, reads = 0, confs = 0, snaps = 0, compactions = 0;
    for (uint64_t seed = first; seed < first + count; seed++) {
        sim_result_t res;
        run_seed(seed, &o, &res);
        if (res.failed) {
            fprintf(stderr,
                    "raft sim: %d members, seed %llu FAILED: %s\n"
                    "  rerun: RAFT_SIM_SEED=%llu tests/test_raft_sim\n",
                    n, (unsigned long long)seed, res.why, (unsigned long long)seed);
            fail();
        }
        committed += res.committed;
        reads += res.reads;
        confs += res.conf_changes;
        snaps += res.snapshots;
        compactions += res.compactions;
    }
    fprintf(stderr,
            "raft sim: %d members, %llu seeds: %llu entries committed, %llu reads checked, "
            "%llu membership changes/transfers, %llu compactions, %llu snapshots installed\n",
            n, (unsigned long long)count, (unsigned long long)committed, (unsigned long long)reads,
            (unsigned long long)confs, (unsigned long long)compactions, (unsigned long long)snaps);
    assert_true(snaps > 0);
    assert_true(committed > count * 5);
}

static uint64_t seeds_for(int n) {
    uint64_t total = env_u64("RAFT_SIM_SEEDS", 10000);
    return n == 3 ? total - total / 2 : total / 2;
}

static void test_sim_3(void **state) {
    (void)state;
    uint64_t one = env_u64("RAFT_SIM_SEED", 0);
    if (one)
        run_many(3, one, 1, SIM_STEPS);
    else
        run_many(3, 1, seeds_for(3), SIM_STEPS);
}

static void test_sim_5(void **state) {
    (void)state;
    uint64_t one = env_u64("RAFT_SIM_SEED", 0);
    if (one)
        run_many(5, one, 1, SIM_STEPS);
    else
        run_many(5, 1, seeds_for(5), SIM_STEPS);
}

/* The same seed gives the same run. */
static void test_sim_deterministic(void **state) {
    (void)state;
    sim_opts_t o = {.n = 5, .steps = 600};
    sim_result_t a, b;
    run_seed(99, &o, &a);
    run_seed(99, &o, &b);
    assert_false(a.failed);
    assert_int_equal(a.committed, b.committed);
    assert_int_equal(a.reads, b.reads);
}

/* A deliberately broken core must be caught within a few hundred seeds. */
static void expect_caught(unsigned debug_break, int n, const char *what) {
    sim_opts_t o = {.n = n, .steps = 400, .debug_break = debug_break};
    for (uint64_t seed = 1; seed <= 2000; seed++) {
        sim_result_t res;
        run_seed(seed, &o, &res);
        if (res.failed) {
            fprintf(stderr, "raft sim: %s caught at seed %llu: %s\n", what, (unsigned long long)seed,
                    res.why);
            return;
        }
    }
    fprintf(stderr, "raft sim: %s NOT caught in 2000 seeds\n", what);
    fail();
}

static void test_sim_catches_commit_without_quorum(void **state) {
    (void)state;
    expect_caught(RAFT_DEBUG_COMMIT_NO_QUORUM, 3, "commit without quorum");
}

static void test_sim_catches_double_vote(void **state) {
    (void)state;
    expect_caught(RAFT_DEBUG_VOTE_SKIP_TERM, 5, "vote without term check");
}

static void test_sim_catches_read_without_quorum(void **state) {
    (void)state;
    expect_caught(RAFT_DEBUG_READ_NO_QUORUM, 3, "ReadIndex without quorum");
}

/* Allocation failures inside the core only drop work (proposals, reads,
 * messages): every safety check still holds, and after healing (no more
 * failures) the cluster converges. */
static void test_sim_out_of_memory(void **state) {
    (void)state;
    uint64_t nomem = 0;
    for (int n = 3; n <= 5; n += 2) {
        sim_opts_t o = {.n = n, .steps = SIM_STEPS, .fail_alloc = 5};
        for (uint64_t seed = 1; seed <= 300; seed++) {
            sim_result_t res;
            run_seed(seed, &o, &res);
            if (res.failed) {
                fprintf(stderr, "raft sim: out of memory, %d members, seed %llu FAILED: %s\n", n,
                        (unsigned long long)seed, res.why);
                fail();
            }
            nomem += res.nomem;
        }
    }
    fprintf(stderr, "raft sim: 600 seeds with every 5th core allocation failing: %llu failures survived\n",
            (unsigned long long)nomem);
    assert_true(nomem > 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sim_deterministic),
        cmocka_unit_test(test_sim_catches_commit_without_quorum),
        cmocka_unit_test(test_sim_catches_double_vote),
        cmocka_unit_test(test_sim_catches_read_without_quorum),
        cmocka_unit_test(test_sim_out_of_memory),
        cmocka_unit_test(test_sim_3),
        cmocka_unit_test(test_sim_5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
