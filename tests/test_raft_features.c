/*
 * test_raft_features.c: scenario tests of the Raft core's cluster features
 * on a small in-memory cluster (no faults but the link cuts a test asks
 * for; every message is delivered in order): pre-vote keeps a rejoining
 * member from disrupting a stable leader, check-quorum makes a cut-off
 * leader step down; replication flow control (in-flight window, bytes per
 * message, probe/replicate, max uncommitted size); ReadIndex batched in one
 * heartbeat round and answered for followers through the leader; leader
 * transfer; learners, membership changes one at a time, a removed leader
 * stepping down, a member joining with an empty configuration; snapshots sent to a follower behind the log start,
 * compaction gated on follower progress (and held after a snapshot sent, so the follower catches up by appends). The randomized safety checks live in test_raft_sim.c.
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

#define CL_MAX 5

typedef struct cl_msg {
    raft_msg_t m;
} cl_msg_t;

typedef struct cluster {
    int n;
    uint64_t ids[CL_MAX];
    raft_t *r[CL_MAX];
    int cut[CL_MAX][CL_MAX]; /* link from -> to drops everything */
    cl_msg_t *q;
    size_t n_q, cap_q;
    size_t apps_to[CL_MAX]; /* App messages with entries sent to a member */
    size_t heartbeats;      /* heartbeats sent by anyone */
    raft_read_state_t reads[CL_MAX][64];
    uint64_t snap_index[CL_MAX]; /* last snapshot a member was told to install */
    size_t n_reads[CL_MAX];
    size_t max_app_bytes; /* largest entry data carried by one App */
    raft_config_t tmpl;   /* extra settings for every member */
    int n_boot;           /* voters of the boot configuration */
    int drop_type;        /* messages of this type are lost (0: none) */
} cluster_t;

static void cl_start(cluster_t *c, int i) {
    raft_config_t cfg = c->tmpl;
    cfg.id = c->ids[i];
    cfg.voters = c->ids;
    cfg.n_voters = (size_t)c->n_boot;
    cfg.election_ticks = 10;
    cfg.heartbeat_ticks = 1;
    cfg.seed = 7;
    char err[128];
    c->r[i] = raft_new(&cfg, err, sizeof(err));
    assert_non_null(c->r[i]);
}

/* A new member (id n+1) joins with an empty log and the boot configuration. */
static int cl_add(cluster_t *c) {
    assert_true(c->n < CL_MAX);
    int i = c->n++;
    c->ids[i] = (uint64_t)i + 1;
    cl_start(c, i);
    return i;
}

static void cl_init_with(cluster_t *c, int n, const raft_config_t *tmpl) {
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->n_boot = n;
    c->tmpl = *tmpl;
    for (int i = 0; i < CL_MAX; i++) c->ids[i] = (uint64_t)i + 1;
    for (int i = 0; i < n; i++) {
        raft_config_t cfg = *tmpl;
        cfg.id = c->ids[i];
        cfg.voters = c->ids;
        cfg.n_voters = (size_t)n;
        cfg.election_ticks = 10;
        cfg.heartbeat_ticks = 1;
        cfg.seed = 7;
        char err[128];
        c->r[i] = raft_new(&cfg, err, sizeof(err));
        assert_non_null(c->r[i]);
    }
}

static void cl_init(cluster_t *c, int n, int pre_vote, int check_quorum) {
    raft_config_t t = {.pre_vote = pre_vote, .check_quorum = check_quorum};
    cl_init_with(c, n, &t);
}

static void cl_destroy(cluster_t *c) {
    for (size_t k = 0; k < c->n_q; k++) test_msg_free(&c->q[k].m);
    free(c->q);
    for (int i = 0; i < c->n; i++) raft_free(c->r[i]);
}

/* Collects every member's ready (persisting is implicit) and queues its messages. */
static int cl_collect(cluster_t *c) {
    int any = 0;
    for (int i = 0; i < c->n; i++) {
        if (!raft_has_ready(c->r[i])) continue;
        any = 1;
        raft_ready_t rd;
        raft_ready(c->r[i], &rd);
        for (size_t k = 0; k < rd.n_msgs; k++) {
            if (c->n_q == c->cap_q) {
                c->cap_q = c->cap_q ? c->cap_q * 2 : 64;
                c->q = realloc(c->q, c->cap_q * sizeof(*c->q));
                assert_non_null(c->q);
            }
            const raft_msg_t *m = &rd.msgs[k];
            if (m->type == RAFT_MSG_HEARTBEAT) c->heartbeats++;
            if (m->type == RAFT_MSG_APP && m->n_entries) {
                c->apps_to[m->to - 1]++;
                size_t bytes = 0;
                for (size_t e = 0; e < m->n_entries; e++) bytes += m->entries[e].len;
                if (bytes > c->max_app_bytes) c->max_app_bytes = bytes;
            }
            test_msg_copy(&c->q[c->n_q++].m, m);
        }
        if (rd.snapshot) c->snap_index[i] = rd.snapshot->index;
        for (size_t k = 0; k < rd.n_read_states && c->n_reads[i] < 64; k++)
            c->reads[i][c->n_reads[i]++] = rd.read_states[k];
        raft_advance(c->r[i]);
    }
    return any;
}

static int cl_knows(const raft_t *r, uint64_t id) {
    uint64_t ids[CL_MAX];
    size_t n = raft_voters(r, ids, CL_MAX);
    for (size_t k = 0; k < n && k < CL_MAX; k++)
        if (ids[k] == id) return 1;
    n = raft_learners(r, ids, CL_MAX);
    for (size_t k = 0; k < n && k < CL_MAX; k++)
        if (ids[k] == id) return 1;
    return 0;
}

/* Delivers until nothing moves. */
static void cl_settle(cluster_t *c) {
    for (int guard = 0; guard < 10000; guard++) {
        cl_collect(c);
        if (!c->n_q) return;
        cl_msg_t one = c->q[0];
        memmove(c->q, c->q + 1, (c->n_q - 1) * sizeof(*c->q));
        c->n_q--;
        int from = (int)one.m.from - 1, to = (int)one.m.to - 1;
        if (!c->cut[from][to] && (int)one.m.type != c->drop_type) {
            int rc = raft_step(c->r[to], &one.m);
            if (rc == RAFT_ERR_INVALID && !cl_knows(c->r[to], one.m.from))
                rc = RAFT_OK; /* a removed member's late answer */
            assert_int_equal(rc, RAFT_OK);
        }
        test_msg_free(&one.m);
    }
    fail_msg("cluster did not settle");
}

static void cl_tick(cluster_t *c, int i) {
    raft_tick(c->r[i]);
    cl_settle(c);
}

static void cl_tick_all(cluster_t *c, int times) {
    for (int t = 0; t < times; t++)
        for (int i = 0; i < c->n; i++) cl_tick(c, i);
}

static void cl_isolate(cluster_t *c, int x, int on) {
    for (int i = 0; i < c->n; i++)
        if (i != x) c->cut[i][x] = c->cut[x][i] = on;
}

static raft_status_t cl_status(cluster_t *c, int i) {
    raft_status_t st;
    raft_status(c->r[i], &st);
    return st;
}

/* Member 0 campaigns and wins. */
static void cl_elect_first(cluster_t *c) {
    raft_campaign(c->r[0]);
    cl_settle(c);
    assert_int_equal(cl_status(c, 0).role, RAFT_LEADER);
}

/* ---------------------------------------------------------------- pre-vote */

/* An isolated member times out again and again; back in the cluster it
 * must not unseat the leader (pre-vote: its term never moved). */
static void rejoin_after_isolation(int pre_vote, uint64_t *term_before, uint64_t *term_after,
                                   int *still_leader) {
    cluster_t c;
    cl_init(&c, 3, pre_vote, 0);
    cl_elect_first(&c);
    *term_before = cl_status(&c, 0).term;
    cl_isolate(&c, 2, 1);
    for (int t = 0; t < 100; t++) cl_tick(&c, 2);
    cl_isolate(&c, 2, 0);
    cl_tick_all(&c, 3);
    *term_after = cl_status(&c, 0).term;
    *still_leader = cl_status(&c, 0).role == RAFT_LEADER;
    cl_destroy(&c);
}

static void test_pre_vote_rejoin_does_not_disrupt(void **state) {
    (void)state;
    uint64_t before, after;
    int leader;
    rejoin_after_isolation(1, &before, &after, &leader);
    assert_int_equal(after, before);
    assert_true(leader);
    /* without pre-vote the same scenario does disrupt: the test means something */
    rejoin_after_isolation(0, &before, &after, &leader);
    assert_true(after > before);
}

/* A pre-candidate that can win still becomes leader (one term up). */
static void test_pre_vote_elects(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    cl_isolate(&c, 0, 1); /* the leader is gone */
    for (int t = 0; t < 40; t++) {
        cl_tick(&c, 1);
        cl_tick(&c, 2);
    }
    int leaders = (cl_status(&c, 1).role == RAFT_LEADER) + (cl_status(&c, 2).role == RAFT_LEADER);
    assert_int_equal(leaders, 1);
    cl_destroy(&c);
}

/* Check-quorum's lease: followers that hear from the leader ignore a
 * higher-term vote request (a raw campaign of a rejoining member). */
static void test_check_quorum_lease_ignores_votes(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 0, 1);
    cl_elect_first(&c);
    uint64_t term = cl_status(&c, 0).term;
    raft_campaign(c.r[2]); /* term + 1, but nobody listens */
    cl_settle(&c);
    assert_int_equal(cl_status(&c, 1).term, term);
    assert_int_equal(cl_status(&c, 1).leader, 1);
    cl_destroy(&c);
}

/* ---------------------------------------------------------------- check-quorum */

static void test_check_quorum_leader_steps_down(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    cl_isolate(&c, 0, 1);
    for (int t = 0; t < 25; t++) cl_tick(&c, 0);
    raft_status_t st = cl_status(&c, 0);
    assert_int_not_equal(st.role, RAFT_LEADER);
    assert_int_equal(st.leader, 0);
    /* with one follower still reachable, the leader stays */
    cl_isolate(&c, 0, 0);
    cl_tick_all(&c, 30);
    int lead = -1;
    for (int i = 0; i < 3; i++)
        if (cl_status(&c, i).role == RAFT_LEADER) lead = i;
    assert_true(lead >= 0);
    int other = (lead + 1) % 3;
    cl_isolate(&c, other, 1);
    for (int t = 0; t < 25; t++) {
        cl_tick(&c, lead);
        cl_tick(&c, (lead + 2) % 3);
    }
    assert_int_equal(cl_status(&c, lead).role, RAFT_LEADER);
    cl_destroy(&c);
}

/* ---------------------------------------------------------------- flow control */

static raft_peer_progress_t cl_progress(cluster_t *c, int leader, int of) {
    raft_peer_progress_t p;
    assert_int_equal(raft_peer_progress(c->r[leader], c->ids[of], &p), RAFT_OK);
    return p;
}

/* A follower that stops answering gets at most max_inflight_msgs Apps;
 * each App is at most max_msg_bytes; once it answers it catches up. */
static void test_inflight_window_and_msg_bytes(void **state) {
    (void)state;
    cluster_t c;
    raft_config_t t = {.max_inflight_msgs = 3, .max_msg_bytes = 25};
    cl_init_with(&c, 3, &t);
    cl_elect_first(&c);
    assert_int_equal(cl_progress(&c, 0, 1).state, RAFT_PROGRESS_REPLICATE);
    c.cut[1][0] = 1; /* follower 2's answers are lost */
    size_t before = c.apps_to[1];
    for (int k = 0; k < 20; k++) {
        assert_int_equal(raft_propose(c.r[0], "0123456789", 10), RAFT_OK);
        cl_settle(&c);
    }
    assert_int_equal(c.apps_to[1] - before, 3);
    assert_int_equal(cl_progress(&c, 0, 1).inflight, 3);
    c.cut[1][0] = 0;
    cl_tick_all(&c, 10);
    assert_true(c.max_app_bytes <= 25);
    assert_true(c.max_app_bytes >= 20); /* catching up, batches do form */
    assert_int_equal(cl_status(&c, 1).last_index, cl_status(&c, 0).last_index);
    assert_int_equal(cl_status(&c, 1).commit, cl_status(&c, 0).commit);
    cl_destroy(&c);
}

/* A follower whose log diverges goes to probe (one App at a time), then back. */
static void test_probe_then_replicate(void **state) {
    (void)state;
    cluster_t c;
    raft_config_t t = {.max_inflight_msgs = 4};
    cl_init_with(&c, 3, &t);
    cl_elect_first(&c);
    cl_isolate(&c, 2, 1);
    for (int k = 0; k < 10; k++) assert_int_equal(raft_propose(c.r[0], "x", 1), RAFT_OK);
    cl_settle(&c);
    cl_tick(&c, 0);
    assert_int_equal(cl_progress(&c, 0, 1).state, RAFT_PROGRESS_REPLICATE);
    cl_isolate(&c, 2, 0);
    cl_tick(&c, 0); /* heartbeat -> empty App -> reject -> probe -> catch up */
    cl_tick(&c, 0);
    raft_peer_progress_t p = cl_progress(&c, 0, 2);
    assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
    assert_int_equal(p.match, cl_status(&c, 0).last_index);
    cl_destroy(&c);
}

/* Past max_uncommitted_bytes, proposals are dropped (not queued forever);
 * once entries commit there is room again. */
static void test_max_uncommitted_size(void **state) {
    (void)state;
    cluster_t c;
    raft_config_t t = {.max_uncommitted_bytes = 30};
    cl_init_with(&c, 3, &t);
    cl_elect_first(&c);
    cl_isolate(&c, 0, 1);
    int ok = 0, dropped = 0;
    for (int k = 0; k < 6; k++) {
        int rc = raft_propose(c.r[0], "0123456789", 10);
        if (rc == RAFT_OK)
            ok++;
        else if (rc == RAFT_ERR_DROPPED)
            dropped++;
    }
    assert_int_equal(ok, 3);
    assert_int_equal(dropped, 3);
    cl_isolate(&c, 0, 0);
    cl_tick(&c, 0);
    cl_tick(&c, 0);
    assert_int_equal(raft_propose(c.r[0], "0123456789", 10), RAFT_OK);
    cl_destroy(&c);
}

/* ---------------------------------------------------------------- ReadIndex */

/* Many reads requested before one ready share a single heartbeat round. */
static void test_read_index_batched(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 5, 1, 1);
    cl_elect_first(&c);
    assert_int_equal(raft_propose(c.r[0], "v", 1), RAFT_OK);
    cl_settle(&c);
    uint64_t commit = cl_status(&c, 0).commit;
    size_t hb = c.heartbeats;
    for (uint64_t k = 1; k <= 50; k++) assert_int_equal(raft_read_index(c.r[0], k), RAFT_OK);
    cl_settle(&c);
    assert_int_equal(c.heartbeats - hb, 4); /* one round: one heartbeat per follower */
    assert_int_equal(c.n_reads[0], 50);
    for (size_t k = 0; k < 50; k++) {
        assert_int_equal(c.reads[0][k].ctx, k + 1);
        assert_int_equal(c.reads[0][k].index, commit);
    }
    cl_destroy(&c);
}

/* A follower's read goes through the leader and its read state comes back
 * to the follower; a follower without a leader refuses. */
static void test_read_index_on_follower(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    assert_int_equal(raft_read_index(c.r[1], 5), RAFT_ERR_NOT_LEADER);
    cl_elect_first(&c);
    assert_int_equal(raft_propose(c.r[0], "v", 1), RAFT_OK);
    c.cut[0][1] = 1; /* follower 2 lags: it has not seen the new commit */
    cl_settle(&c);
    c.cut[0][1] = 0;
    uint64_t commit = cl_status(&c, 0).commit;
    assert_true(cl_status(&c, 1).commit < commit);
    assert_int_equal(raft_read_index(c.r[1], 42), RAFT_OK);
    cl_settle(&c);
    assert_int_equal(c.n_reads[1], 1);
    assert_int_equal(c.n_reads[0], 0);
    assert_int_equal(c.reads[1][0].ctx, 42);
    assert_int_equal(c.reads[1][0].index, commit); /* the leader's, not the follower's commit */
    cl_destroy(&c);
}

/* ---------------------------------------------------------------- transfer */

static void test_leader_transfer(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    uint64_t term = cl_status(&c, 0).term;
    c.cut[0][2] = 1; /* member 3 lags behind */
    assert_int_equal(raft_propose(c.r[0], "a", 1), RAFT_OK);
    cl_settle(&c);
    c.cut[0][2] = 0;
    assert_int_equal(raft_transfer_leader(c.r[0], 3), RAFT_OK);
    assert_int_equal(raft_propose(c.r[0], "b", 1), RAFT_ERR_DROPPED); /* during the transfer */
    cl_settle(&c);
    cl_tick(&c, 0); /* a heartbeat round catches member 3 up, then TimeoutNow */
    assert_int_equal(cl_status(&c, 2).role, RAFT_LEADER);
    assert_int_equal(cl_status(&c, 2).term, term + 1); /* despite the lease of check-quorum */
    assert_int_equal(cl_status(&c, 0).role, RAFT_FOLLOWER);
    assert_int_equal(cl_status(&c, 0).leader, 3);
    assert_int_equal(raft_transfer_leader(c.r[2], 9), RAFT_ERR_INVALID);
    assert_int_equal(raft_transfer_leader(c.r[0], 3), RAFT_ERR_NOT_LEADER);
    cl_destroy(&c);
}

/* ---------------------------------------------------------------- membership */

static void cl_apply_all(cluster_t *c) {
    for (int k = 0; k < 3; k++) cl_tick_all(c, 1);
}

/* A learner gets the log but never votes, campaigns or counts for commit;
 * promoted, it is a voter. One change at a time. */
static void test_learner_then_promote(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    cl_tick_all(&c, 1);
    int l = cl_add(&c);
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_ADD_LEARNER, 4, "peer-url", 8), RAFT_OK);
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_REMOVE, 2, NULL, 0), RAFT_ERR_DROPPED);
    cl_settle(&c);
    cl_apply_all(&c);
    raft_status_t st = cl_status(&c, l);
    assert_true(st.is_learner);
    assert_false(st.is_voter);
    assert_int_equal(cl_status(&c, 0).n_voters, 3);
    assert_int_equal(cl_status(&c, 0).n_learners, 1);
    assert_int_equal(st.last_index, cl_status(&c, 0).last_index);
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_ADD_LEARNER, 4, NULL, 0), RAFT_ERR_INVALID);
    /* the learner's ack does not make a quorum */
    cl_isolate(&c, 1, 1);
    cl_isolate(&c, 2, 1);
    uint64_t commit = cl_status(&c, 0).commit;
    assert_int_equal(raft_propose(c.r[0], "x", 1), RAFT_OK);
    cl_settle(&c);
    assert_int_equal(cl_status(&c, l).last_index, cl_status(&c, 0).last_index);
    assert_int_equal(cl_status(&c, 0).commit, commit);
    /* an isolated learner never campaigns */
    cl_isolate(&c, 1, 0);
    cl_isolate(&c, 2, 0);
    cl_apply_all(&c);
    cl_isolate(&c, l, 1);
    uint64_t term = cl_status(&c, l).term;
    for (int t = 0; t < 50; t++) cl_tick(&c, l);
    assert_int_equal(cl_status(&c, l).term, term);
    assert_int_equal(cl_status(&c, l).role, RAFT_FOLLOWER);
    cl_isolate(&c, l, 0);
    /* promotion */
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_ADD_VOTER, 4, NULL, 0), RAFT_OK);
    cl_settle(&c);
    cl_apply_all(&c);
    assert_true(cl_status(&c, l).is_voter);
    assert_int_equal(cl_status(&c, 0).n_voters, 4);
    assert_int_equal(cl_status(&c, 0).n_learners, 0);
    cl_destroy(&c);
}

/* A removed follower gets nothing more and the smaller quorum commits. */
static void test_remove_follower(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    cl_tick_all(&c, 1);
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_REMOVE, 3, NULL, 0), RAFT_OK);
    cl_settle(&c);
    cl_apply_all(&c);
    assert_int_equal(cl_status(&c, 0).n_voters, 2);
    assert_false(cl_status(&c, 2).is_voter);
    uint64_t last3 = cl_status(&c, 2).last_index;
    cl_isolate(&c, 1, 1); /* 1 of 2 voters left: no commit ... */
    uint64_t commit = cl_status(&c, 0).commit;
    assert_int_equal(raft_propose(c.r[0], "x", 1), RAFT_OK);
    cl_settle(&c);
    assert_int_equal(cl_status(&c, 0).commit, commit);
    cl_isolate(&c, 1, 0); /* ... 2 of 2 commit, without member 3 */
    cl_tick_all(&c, 2);
    assert_true(cl_status(&c, 0).commit > commit);
    assert_int_equal(cl_status(&c, 2).last_index, last3);
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_REMOVE, 3, NULL, 0), RAFT_ERR_INVALID);
    cl_destroy(&c);
}

/* A leader that removes itself steps down once the change is applied; the
 * others elect a leader among themselves. */
static void test_remove_leader_steps_down(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    cl_tick_all(&c, 1);
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_REMOVE, 1, NULL, 0), RAFT_OK);
    cl_settle(&c);
    cl_tick_all(&c, 1);
    raft_status_t st = cl_status(&c, 0);
    assert_int_not_equal(st.role, RAFT_LEADER);
    assert_false(st.is_voter);
    /* it handed over at once (TimeoutNow to a caught-up voter), no election timeout */
    int leaders = (cl_status(&c, 1).role == RAFT_LEADER) + (cl_status(&c, 2).role == RAFT_LEADER);
    assert_int_equal(leaders, 1);
    cl_tick_all(&c, 40);
    leaders = (cl_status(&c, 1).role == RAFT_LEADER) + (cl_status(&c, 2).role == RAFT_LEADER);
    assert_int_equal(leaders, 1);
    assert_int_not_equal(cl_status(&c, 0).role, RAFT_LEADER);
    assert_int_equal(cl_status(&c, 1).n_voters, 2);
    cl_destroy(&c);
}

/* A member joining an existing cluster starts with no configuration at
 * all (etcd's --initial-cluster-state existing): it never campaigns, takes
 * the leader's messages although it knows no member yet, and learns the
 * membership from the log (here) or a snapshot (after compaction). */
static void test_join_with_empty_configuration(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    cl_tick_all(&c, 1);
    for (int k = 0; k < 5; k++) assert_int_equal(raft_propose(c.r[0], "e", 1), RAFT_OK);
    cl_settle(&c);
    c.n_boot = 0;
    int j = cl_add(&c); /* member 4, no voters, no log */
    raft_status_t st = cl_status(&c, j);
    assert_int_equal(st.n_voters, 0);
    assert_false(st.is_voter);
    cl_isolate(&c, j, 1);
    for (int t = 0; t < 50; t++) cl_tick(&c, j);
    assert_int_equal(cl_status(&c, j).term, 0);
    assert_int_equal(cl_status(&c, j).role, RAFT_FOLLOWER);
    cl_isolate(&c, j, 0);
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_ADD_LEARNER, 4, NULL, 0), RAFT_OK);
    cl_settle(&c);
    cl_apply_all(&c);
    st = cl_status(&c, j);
    assert_int_equal(st.leader, 1);
    assert_int_equal(st.last_index, cl_status(&c, 0).last_index);
    assert_int_equal(st.commit, cl_status(&c, 0).commit);
    assert_true(st.is_learner); /* (this cluster's voters are in no log entry: no bootstrap entries) */
    assert_int_equal(st.msgs_rejected, 0);

    /* a second joiner after compaction gets the snapshot instead */
    cl_tick_all(&c, 1);
    st = cl_status(&c, 0);
    assert_int_equal(raft_compact_to(c.r[0], st.applied), st.applied);
    int k = cl_add(&c); /* member 5 */
    assert_int_equal(raft_propose_conf_change(c.r[0], RAFT_CONF_ADD_LEARNER, 5, NULL, 0), RAFT_OK);
    cl_settle(&c);
    cl_apply_all(&c);
    assert_int_equal(c.snap_index[k], st.applied);
    st = cl_status(&c, k);
    assert_true(st.is_learner);
    assert_int_equal(st.n_voters, 3);
    assert_int_equal(st.n_learners, 2);
    assert_int_equal(st.last_index, cl_status(&c, 0).last_index);
    cl_destroy(&c);
}

/* ---------------------------------------------------------------- snapshots */

/* Compaction keeps what an active follower needs; once the follower is
 * silent for two check-quorum rounds the entries go, and on its return it gets
 * the snapshot, installs it and catches up. */
static void test_snapshot_for_lagging_follower(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    cl_tick_all(&c, 1);
    uint64_t behind = cl_status(&c, 2).last_index;
    cl_isolate(&c, 2, 1);
    for (int k = 0; k < 20; k++) assert_int_equal(raft_propose(c.r[0], "entry", 5), RAFT_OK);
    cl_settle(&c);
    cl_tick(&c, 0);
    raft_status_t st = cl_status(&c, 0);
    assert_int_equal(st.applied, st.last_index);
    /* member 3 was heard from recently: its entries stay */
    assert_int_equal(raft_compact_to(c.r[0], st.applied), behind);
    /* silent for two check-quorum rounds (election timeouts): compaction goes ahead */
    for (int t = 0; t < 22; t++) cl_tick(&c, 0);
    st = cl_status(&c, 0);
    assert_int_equal(raft_compact_to(c.r[0], st.applied), st.applied);
    raft_snapshot_meta_t sm;
    raft_snapshot_meta(c.r[0], &sm);
    assert_int_equal(sm.index, st.applied);
    assert_int_equal(sm.n_voters, 3);
    cl_isolate(&c, 2, 0);
    for (int t = 0; t < 3; t++) cl_tick(&c, 0);
    assert_int_equal(c.snap_index[2], sm.index);
    raft_status_t f = cl_status(&c, 2);
    assert_int_equal(f.first_index, sm.index + 1);
    assert_int_equal(f.commit, cl_status(&c, 0).commit);
    assert_int_equal(f.last_index, cl_status(&c, 0).last_index);
    raft_peer_progress_t p;
    assert_int_equal(raft_peer_progress(c.r[0], 3, &p), RAFT_OK);
    assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
    cl_destroy(&c);
}

/* A lost snapshot is tried again (report or timeout). */
static void test_snapshot_retry(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    cl_isolate(&c, 2, 1);
    for (int k = 0; k < 5; k++) assert_int_equal(raft_propose(c.r[0], "e", 1), RAFT_OK);
    cl_settle(&c);
    for (int t = 0; t < 22; t++) cl_tick(&c, 0);
    raft_status_t st = cl_status(&c, 0);
    assert_int_equal(raft_compact_to(c.r[0], st.applied), st.applied);
    cl_isolate(&c, 2, 0);
    c.drop_type = RAFT_MSG_SNAP; /* the snapshot is lost */
    cl_tick(&c, 0);
    cl_tick(&c, 0);
    raft_peer_progress_t p;
    assert_int_equal(raft_peer_progress(c.r[0], 3, &p), RAFT_OK);
    assert_int_equal(p.state, RAFT_PROGRESS_SNAPSHOT);
    /* no report: after two election timeouts the leader tries again */
    for (int t = 0; t < 19; t++) cl_tick(&c, 0);
    assert_int_equal(raft_peer_progress(c.r[0], 3, &p), RAFT_OK);
    assert_int_equal(p.state, RAFT_PROGRESS_SNAPSHOT);
    cl_tick(&c, 0);
    cl_tick(&c, 0); /* back to probe, the next heartbeat answer sends it again (lost again) */
    assert_int_equal(raft_peer_progress(c.r[0], 3, &p), RAFT_OK);
    assert_int_equal(p.state, RAFT_PROGRESS_SNAPSHOT);
    /* the driver's report of the failure also retries */
    raft_report_snapshot(c.r[0], 3, 0);
    assert_int_equal(raft_peer_progress(c.r[0], 3, &p), RAFT_OK);
    assert_int_equal(p.state, RAFT_PROGRESS_PROBE);
    c.drop_type = 0;
    for (int t = 0; t < 3; t++) cl_tick(&c, 0);
    assert_int_equal(c.snap_index[2], st.applied);
    assert_int_equal(cl_status(&c, 2).last_index, cl_status(&c, 0).last_index);
    cl_destroy(&c);
}

/* On an elected cluster c: member 3 misses n entries (cut off for two
 * check-quorum rounds, so the leader compacts them), then is back and sent
 * a snapshot that stays in flight (never delivered: drop_type). Returns the
 * snapshot's index. */
static uint64_t snapshot_in_flight(cluster_t *c, int n) {
    cl_isolate(c, 2, 1);
    for (int k = 0; k < n; k++) assert_int_equal(raft_propose(c->r[0], "entry", 5), RAFT_OK);
    cl_settle(c);
    for (int t = 0; t < 22; t++) cl_tick(c, 0);
    uint64_t snap = cl_status(c, 0).applied;
    assert_int_equal(raft_compact_to(c->r[0], snap), snap);
    cl_isolate(c, 2, 0);
    c->drop_type = RAFT_MSG_SNAP;
    cl_tick(c, 0);
    cl_tick(c, 0);
    raft_peer_progress_t p;
    assert_int_equal(raft_peer_progress(c->r[0], 3, &p), RAFT_OK);
    assert_int_equal(p.state, RAFT_PROGRESS_SNAPSHOT);
    return snap;
}

/* A follower being sent a snapshot keeps the entries after it: writes go on
 * while the snapshot is in flight (and when its answer is late past the
 * leader's retry timeout), and once installed the follower catches up by
 * appends, not by a second snapshot (a treadmill under steady load). One
 * that goes silent releases the entries. */
static void test_snapshot_holds_catch_up_entries(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    uint64_t snap = snapshot_in_flight(&c, 20);
    raft_peer_progress_t p;
    for (int k = 0; k < 30; k++) assert_int_equal(raft_propose(c.r[0], "later", 5), RAFT_OK);
    cl_settle(&c);
    raft_status_t st = cl_status(&c, 0);
    assert_int_equal(st.applied, snap + 30);
    assert_int_equal(raft_compact_to(c.r[0], st.applied), snap); /* held */
    /* past the leader's retry timeout (two election timeouts) the hold stays,
     * at every tick: also right after a check-quorum round forgot who was
     * heard from, before the follower's next heartbeat answer */
    for (int t = 0; t < 25; t++) {
        raft_tick(c.r[0]);
        assert_int_equal(raft_compact_to(c.r[0], cl_status(&c, 0).applied), snap);
        cl_settle(&c);
    }
    /* the stream completes: installed at snap, then appends, no second snapshot */
    c.drop_type = 0;
    raft_report_snapshot(c.r[0], 3, 0);
    size_t apps = c.apps_to[2];
    for (int t = 0; t < 3; t++) cl_tick(&c, 0);
    assert_int_equal(c.snap_index[2], snap);
    assert_true(c.apps_to[2] > apps);
    assert_int_equal(cl_status(&c, 2).last_index, cl_status(&c, 0).last_index);
    assert_int_equal(raft_peer_progress(c.r[0], 3, &p), RAFT_OK);
    assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
    /* caught up: nothing held any more */
    st = cl_status(&c, 0);
    assert_int_equal(raft_compact_to(c.r[0], st.applied), st.applied);
    cl_destroy(&c);
}

/* A follower sent a snapshot that then goes silent for two check-quorum rounds
 * holds nothing: the entries go, as for any inactive follower. */
static void test_snapshot_hold_released_when_silent(void **state) {
    (void)state;
    cluster_t c;
    cl_init(&c, 3, 1, 1);
    cl_elect_first(&c);
    uint64_t snap = snapshot_in_flight(&c, 5);
    for (int k = 0; k < 5; k++) assert_int_equal(raft_propose(c.r[0], "f", 1), RAFT_OK);
    cl_settle(&c);
    assert_int_equal(raft_compact_to(c.r[0], cl_status(&c, 0).applied), snap);
    cl_isolate(&c, 2, 1);
    for (int t = 0; t < 22; t++) cl_tick(&c, 0);
    raft_status_t st = cl_status(&c, 0);
    assert_int_equal(raft_compact_to(c.r[0], st.applied), st.applied);
    cl_destroy(&c);
}

/* The hold is bounded: past snapshot_hold_entries entries, or past
 * snapshot_hold_bytes of their data, compaction goes ahead (and the
 * follower, once it installed the snapshot, gets a newer one). */
static void hold_bounded(size_t hold_entries, size_t hold_bytes, size_t entry_len, int n) {
    cluster_t c;
    raft_config_t t = {.pre_vote = 1,
                       .check_quorum = 1,
                       .snapshot_hold_entries = hold_entries,
                       .snapshot_hold_bytes = hold_bytes};
    cl_init_with(&c, 3, &t);
    cl_elect_first(&c);
    uint64_t snap = snapshot_in_flight(&c, 1);
    char *data = calloc(1, entry_len);
    assert_non_null(data);
    for (int k = 0; k < n - 1; k++) assert_int_equal(raft_propose(c.r[0], data, entry_len), RAFT_OK);
    cl_settle(&c);
    uint64_t applied = cl_status(&c, 0).applied;
    assert_int_equal(raft_compact_to(c.r[0], applied), snap); /* at the bound: held */
    assert_int_equal(raft_propose(c.r[0], data, entry_len), RAFT_OK);
    cl_settle(&c);
    applied = cl_status(&c, 0).applied;
    assert_int_equal(raft_compact_to(c.r[0], applied), applied); /* past it: not */
    free(data);
    cl_destroy(&c);
}

static void test_snapshot_hold_bounded(void **state) {
    (void)state;
    hold_bounded(10, 0, 1, 11);     /* 10 entries held, the 11th lets go */
    hold_bounded(0, 4000, 1000, 5); /* 4,000 bytes held, 5,000 let go */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pre_vote_rejoin_does_not_disrupt),
        cmocka_unit_test(test_pre_vote_elects),
        cmocka_unit_test(test_check_quorum_lease_ignores_votes),
        cmocka_unit_test(test_check_quorum_leader_steps_down),
        cmocka_unit_test(test_inflight_window_and_msg_bytes),
        cmocka_unit_test(test_probe_then_replicate),
        cmocka_unit_test(test_max_uncommitted_size),
        cmocka_unit_test(test_read_index_batched),
        cmocka_unit_test(test_read_index_on_follower),
        cmocka_unit_test(test_leader_transfer),
        cmocka_unit_test(test_learner_then_promote),
        cmocka_unit_test(test_remove_follower),
        cmocka_unit_test(test_remove_leader_steps_down),
        cmocka_unit_test(test_join_with_empty_configuration),
        cmocka_unit_test(test_snapshot_for_lagging_follower),
        cmocka_unit_test(test_snapshot_retry),
        cmocka_unit_test(test_snapshot_holds_catch_up_entries),
        cmocka_unit_test(test_snapshot_hold_released_when_silent),
        cmocka_unit_test(test_snapshot_hold_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
