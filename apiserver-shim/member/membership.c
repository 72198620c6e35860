/*
 * membership.c: the cluster's membership as etcd 3.4 runs it, on the member
 * table (storage/cluster/member_table.c):
 *   - start: our id, the cluster id and the table from the store (restart),
 *     from --initial-cluster (new) or fetched from the members (existing);
 *   - changes: MemberAdd/Remove/Promote as Raft CONF_CHANGE entries (ctx: a
 *     kshim.ConfChangeContext), checked first on the leader as etcd does
 *     (--strict-reconfig-check, learner readiness), forwarded there from a
 *     follower; MemberUpdate and the post-start "publish" as normal entries;
 *   - apply: the table change in the entry's write group, the transport's
 *     peers kept in step, and the proposer's answer built from the table.
 */
#include "server_internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bytes.h"
#include "log.h"
#include "member_table.h"
#include "peer.h"
#include "pending.h"

#define HEALTH_INTERVAL_MS 5000 /* etcd's HealthInterval */

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* etcd's gRPC answer to a refused membership change. */
static grpc_status_t table_error(int rc, const char **text) {
    switch (rc) {
    case MEMBER_TABLE_E_EXISTS:
        *text = "etcdserver: member ID already exist";
        return GRPC_FAILED_PRECONDITION;
    case MEMBER_TABLE_E_PEER_URL:
        *text = "etcdserver: Peer URLs already exists";
        return GRPC_FAILED_PRECONDITION;
    case MEMBER_TABLE_E_NOT_FOUND:
    case MEMBER_TABLE_E_REMOVED: *text = "etcdserver: member not found"; return GRPC_NOT_FOUND;
    case MEMBER_TABLE_E_TOO_MANY_LEARNERS:
        *text = "etcdserver: too many learner members in cluster";
        return GRPC_FAILED_PRECONDITION;
    case MEMBER_TABLE_E_NOT_LEARNER:
        *text = "etcdserver: can only promote a learner member";
        return GRPC_FAILED_PRECONDITION;
    default: *text = "etcdserver: server stopped"; return GRPC_INTERNAL;
    }
}

/* ---- start ---- */

static int dir_has_files(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));) found = e->d_name[0] != '.';
    closedir(d);
    return found;
}

static void peer_tls_from(const server_config_t *cfg, peer_tls_t *tls) {
    memset(tls, 0, sizeof *tls);
    tls->cert_file = cfg->peer_cert_file;
    tls->key_file = cfg->peer_key_file;
    tls->trusted_ca_file = cfg->peer_trusted_ca_file;
    tls->client_cert_auth = cfg->peer_client_cert_auth;
    tls->crl_file = cfg->peer_crl_file;
    tls->allowed_cn = cfg->peer_cert_allowed_cn;
    tls->allowed_hostname = cfg->peer_cert_allowed_host;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Same URL set (etcd compares the sorted peer URLs). */
static int same_urls(const char *const *a, size_t na, char *const *b, size_t nb) {
    if (na != nb || na > SERVER_MAX_URLS) return 0;
    const char *x[SERVER_MAX_URLS], *y[SERVER_MAX_URLS];
    memcpy(x, a, na * sizeof *x);
    memcpy(y, b, nb * sizeof *y);
    qsort(x, na, sizeof *x, cmp_str);
    qsort(y, nb, sizeof *y, cmp_str);
    for (size_t i = 0; i < na; i++)
        if (strcmp(x[i], y[i]) != 0) return 0;
    return 1;
}

/* A new cluster: every --initial-cluster member, ids as etcd computes them. */
static int bootstrap_new(server_t *s, const server_initial_cluster_t *ic, char *err, size_t errlen) {
    Kshim__Member rows[SERVER_MAX_MEMBERS];
    const Kshim__Member *ptrs[SERVER_MAX_MEMBERS];
    uint64_t ids[SERVER_MAX_MEMBERS];
    for (size_t i = 0; i < ic->n; i++) {
        kshim__member__init(&rows[i]);
        rows[i].id = ids[i] = ic->m[i].id;
        rows[i].peer_urls = (char **)ic->m[i].urls;
        rows[i].n_peer_urls = ic->m[i].n_urls;
        ptrs[i] = &rows[i];
    }
    s->member_id = server_initial_cluster_find(ic, s->cfg->name)->id;
    s->cluster_id = server_cluster_id(ids, ic->n);
    if (member_table_bootstrap(s->members, s->cluster_id, s->member_id, 0, ptrs, ic->n) != MEMBER_TABLE_OK) {
        snprintf(err, errlen, "cannot write the member table to the store");
        return -1;
    }
    return 0;
}

/* etcd's ValidateClusterAndAssignIDs: the live members fetched must be
 * exactly --initial-cluster's, matched by peer URLs; we take our id. */
static int match_fetched(server_t *s, const server_initial_cluster_t *ic, const Kshim__MemberList *list,
                         char *err, size_t errlen) {
    size_t live = 0;
    for (size_t i = 0; i < list->n_members; i++) live += !list->members[i]->removed;
    if (live != ic->n) {
        snprintf(err, errlen, "error validating peerURLs: member count is unequal");
        return -1;
    }
    for (size_t i = 0; i < ic->n; i++) {
        const Kshim__Member *found = NULL;
        for (size_t j = 0; j < list->n_members && !found; j++) {
            const Kshim__Member *r = list->members[j];
            if (!r->removed && same_urls(ic->m[i].urls, ic->m[i].n_urls, r->peer_urls, r->n_peer_urls))
                found = r;
        }
        if (!found) {
            snprintf(err, errlen, "error validating peerURLs: unmatched member while checking PeerURLs");
            return -1;
        }
        if (strcmp(ic->m[i].name, s->cfg->name) == 0) s->member_id = found->id;
    }
    return 0;
}

/* Joining (--initial-cluster-state existing): the table from the others. */
static int bootstrap_join(server_t *s, const server_initial_cluster_t *ic, char *err, size_t errlen) {
    const char *urls[SERVER_MAX_MEMBERS * SERVER_MAX_URLS];
    size_t n = 0;
    for (size_t i = 0; i < ic->n; i++)
        if (strcmp(ic->m[i].name, s->cfg->name) != 0)
            for (size_t j = 0; j < ic->m[i].n_urls; j++) urls[n++] = ic->m[i].urls[j];
    if (n == 0) {
        snprintf(err, errlen,
                 "cannot fetch cluster info from peer urls: no other member in --initial-cluster");
        return -1;
    }
    peer_tls_t tls;
    peer_tls_from(s->cfg, &tls);
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t cid = 0;
    char perr[256] = "";
    if (peer_fetch_members(&tls, urls, n, 10000, &cid, &buf, &len, perr, sizeof perr) != PEER_OK) {
        snprintf(err, errlen, "cannot fetch cluster info from peer urls: %s", perr);
        return -1;
    }
    Kshim__MemberList *list = kshim__member_list__unpack(NULL, len, buf);
    free(buf);
    if (!list) {
        snprintf(err, errlen, "cannot fetch cluster info from peer urls: the member list does not decode");
        return -1;
    }
    int rc = match_fetched(s, ic, list, err, errlen);
    if (rc == 0) {
        s->cluster_id = cid ? cid : list->cluster_id;
        if (member_table_bootstrap(s->members, s->cluster_id, s->member_id, 1,
                                   (const Kshim__Member *const *)list->members,
                                   list->n_members) != MEMBER_TABLE_OK) {
            snprintf(err, errlen, "cannot write the member table to the store");
            rc = -1;
        }
    }
    kshim__member_list__free_unpacked(list, NULL);
    s->join = 1;
    return rc;
}

/* A data dir from before the member table (a single voter): its id from the flags. */
static int bootstrap_legacy(server_t *s, char *err, size_t errlen) {
    s->member_id = server_member_id(s->peer_urls, s->n_peer_urls, s->cfg->initial_cluster_token);
    s->cluster_id = server_cluster_id(&s->member_id, 1);
    Kshim__Member me = KSHIM__MEMBER__INIT;
    me.id = s->member_id;
    me.peer_urls = (char **)s->peer_urls;
    me.n_peer_urls = s->n_peer_urls;
    const Kshim__Member *ptrs[1] = {&me};
    if (member_table_bootstrap(s->members, s->cluster_id, s->member_id, 0, ptrs, 1) != MEMBER_TABLE_OK) {
        snprintf(err, errlen, "cannot write the member table to the store");
        return -1;
    }
    return 0;
}

int server_membership_init(server_t *s, char *err, size_t errlen) {
    const server_config_t *cfg = s->cfg;
    s->n_peer_urls = cfg->n_initial_advertise_peer_urls;
    for (size_t i = 0; i < s->n_peer_urls; i++) s->peer_urls[i] = cfg->initial_advertise_peer_urls[i];
    if (member_table_open(s->mvcc, &s->members) != MEMBER_TABLE_OK) {
        snprintf(err, errlen, "cannot read the member table from the store");
        return -1;
    }
    char wal[4096];
    if (cfg->wal_dir && *cfg->wal_dir)
        snprintf(wal, sizeof wal, "%s", cfg->wal_dir);
    else
        snprintf(wal, sizeof wal, "%s/member/wal", cfg->data_dir);
    if (member_table_exists(s->members)) {
        /* A restart: the table decides, the --initial-* flags are ignored.
         * A member that joined restarts with join = 1 (node.h): it never
         * bootstraps a log of its own, its WAL holds what it learned. */
        s->member_id = member_table_self_id(s->members);
        s->cluster_id = member_table_cluster_id(s->members);
        s->join = member_table_joined(s->members);
        s->initialized = 1;
        Kshim__Member *me = member_table_get(s->members, s->member_id);
        int removed = me && me->removed;
        if (me) kshim__member__free_unpacked(me, NULL);
        if (removed) { /* as etcd, which stops with exit status 0 once its peers refuse it */
            atomic_store(&s->removed, 1);
            snprintf(err, errlen, "the member has been permanently removed from the cluster");
            return -1;
        }
        return 0;
    }
    if (dir_has_files(wal)) {
        s->initialized = 1;
        return bootstrap_legacy(s, err, errlen);
    }

    int joining = cfg->initial_cluster_state && strcmp(cfg->initial_cluster_state, "existing") == 0;
    if (cfg->initial_cluster_state && !joining && strcmp(cfg->initial_cluster_state, "new") != 0) {
        snprintf(
            err, errlen,
            "invalid value \"%s\" for flag -initial-cluster-state: valid values are \"new\" or \"existing\"",
            cfg->initial_cluster_state);
        return -1;
    }
    char deflt[4096];
    const char *text = cfg->initial_cluster;
    if (!text || !*text) {
        /* etcd's default: this member alone, at its advertised peer URLs. */
        size_t off = 0;
        deflt[0] = '\0';
        for (size_t i = 0; i < s->n_peer_urls && off < sizeof deflt; i++)
            off += (size_t)snprintf(deflt + off, sizeof deflt - off, "%s%s=%s", i ? "," : "", cfg->name,
                                    s->peer_urls[i]);
        text = deflt;
    }
    server_initial_cluster_t ic;
    if (server_initial_cluster_parse(text, cfg->initial_cluster_token, &ic, err, errlen) != 0) return -1;
    int rc = server_initial_cluster_check(&ic, cfg, joining, err, errlen);
    if (rc == 0) rc = joining ? bootstrap_join(s, &ic, err, errlen) : bootstrap_new(s, &ic, err, errlen);
    server_initial_cluster_free(&ic);
    return rc;
}

size_t server_voter_ids(server_t *s, uint64_t *out, size_t cap) {
    Kshim__MemberList *l = member_table_list(s->members);
    size_t n = 0;
    for (size_t i = 0; l && i < l->n_members && n < cap; i++)
        if (!l->members[i]->removed && !l->members[i]->is_learner) out[n++] = l->members[i]->id;
    if (l) kshim__member_list__free_unpacked(l, NULL);
    return n;
}

void server_membership_add_peers(server_t *s) {
    Kshim__MemberList *l = member_table_list(s->members);
    peer_transport_t *t = server_peer_acquire(s);
    for (size_t i = 0; t && l && i < l->n_members; i++) {
        const Kshim__Member *r = l->members[i];
        if (r->id == s->member_id) continue;
        if (r->removed)
            peer_remove(t, r->id); /* (a snapshot may carry a removal we never applied) */
        else
            peer_add(t, r->id, (const char *const *)r->peer_urls, r->n_peer_urls);
    }
    server_peer_release();
    if (l) kshim__member_list__free_unpacked(l, NULL);
}

int server_members_pack(server_t *s, uint8_t **out, size_t *out_len) {
    return member_table_pack(s->members, out, out_len) == MEMBER_TABLE_OK ? 0 : -1;
}

int server_membership_reload(server_t *s) {
    if (member_table_reload(s->members) != MEMBER_TABLE_OK) return -1;
    /* the snapshot's meta record names the member that sent it */
    if (member_table_set_self(s->members, s->member_id) != MEMBER_TABLE_OK) return -1;
    server_membership_add_peers(s);
    return 0;
}

void server_membership_free(server_t *s) {
    member_table_free(s->members);
    s->members = NULL;
}

/* The transport's view of a member (0: no transport or no such peer). */
static int peer_stats_of(server_t *s, uint64_t id, peer_stats_t *st) {
    peer_transport_t *t = server_peer_acquire(s);
    int ok = t && peer_get_stats(t, id, st) == PEER_OK;
    server_peer_release();
    return ok;
}

static void peer_update(server_t *s, uint64_t id, char *const *urls, size_t n, int remove) {
    if (id == s->member_id) return;
    peer_transport_t *t = server_peer_acquire(s);
    if (t && remove)
        peer_remove(t, id);
    else if (t)
        peer_add(t, id, (const char *const *)urls, n);
    server_peer_release();
}

/* ---- members as etcdserverpb ---- */

int server_members_get(server_t *s, server_members_t *out) {
    memset(out, 0, sizeof *out);
    out->list = member_table_list(s->members);
    if (!out->list) return -1;
    size_t n = out->list->n_members;
    out->pb = calloc(n ? n : 1, sizeof *out->pb);
    out->ptrs = calloc(n ? n : 1, sizeof *out->ptrs);
    if (!out->pb || !out->ptrs) {
        server_members_release(out);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const Kshim__Member *r = out->list->members[i];
        if (r->removed) continue;
        Etcdserverpb__Member *m = &out->pb[out->n];
        etcdserverpb__member__init(m);
        m->id = r->id;
        m->name = r->name;
        m->peerurls = r->peer_urls;
        m->n_peerurls = r->n_peer_urls;
        m->clienturls = r->client_urls;
        m->n_clienturls = r->n_client_urls;
        m->islearner = r->is_learner;
        out->ptrs[out->n++] = m;
    }
    return 0;
}

void server_members_release(server_members_t *m) {
    if (m->list) kshim__member_list__free_unpacked(m->list, NULL);
    free(m->pb);
    free(m->ptrs);
    memset(m, 0, sizeof *m);
}

int server_learner_guard(grpc_call_t *call, const char *path, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    if (!s->peer || !s->raft) return 0; /* a single voter is never a learner */
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    if (!st.is_learner) return 0;
    /* etcd's isRPCSupportedForLearner, and Snapshot for the stream interceptor */
    if (strcmp(path, "/etcdserverpb.Maintenance/Status") == 0 ||
        strcmp(path, "/etcdserverpb.Maintenance/Snapshot") == 0)
        return 0;
    if (strcmp(path, "/etcdserverpb.KV/Range") == 0) {
        Etcdserverpb__RangeRequest *r = etcdserverpb__range_request__unpack(NULL, len, msg);
        int serializable = r && r->serializable;
        if (r) etcdserverpb__range_request__free_unpacked(r, NULL);
        if (serializable || !r) return 0; /* undecodable: the method answers it */
    }
    grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: rpc not supported for learner");
    return 1;
}

/* ---- checks before proposing (the leader), as etcd's may*Member ---- */

/* Peers connected for at least HealthInterval, counting us. */
static size_t connected_since(server_t *s, const uint64_t *ids, size_t n) {
    size_t c = 0;
    uint64_t now = mono_ms();
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == s->member_id) {
            c++;
            continue;
        }
        peer_stats_t st;
        if (peer_stats_of(s, ids[i], &st) && st.connected && st.active_since_ms &&
            st.active_since_ms + HEALTH_INTERVAL_MS <= now)
            c++;
    }
    return c;
}

static int peer_active(server_t *s, uint64_t id) {
    peer_stats_t st;
    return peer_stats_of(s, id, &st) && st.connected && st.active_since_ms;
}

typedef struct voters {
    uint64_t ids[SERVER_MAX_MEMBERS];
    int started[SERVER_MAX_MEMBERS];
    size_t n;
} voters_t;

static void get_voters(server_t *s, voters_t *v) {
    v->n = 0;
    Kshim__MemberList *l = member_table_list(s->members);
    for (size_t i = 0; l && i < l->n_members && v->n < SERVER_MAX_MEMBERS; i++) {
        const Kshim__Member *r = l->members[i];
        if (r->removed || r->is_learner) continue;
        v->ids[v->n] = r->id;
        v->started[v->n] = r->name && *r->name;
        v->n++;
    }
    if (l) kshim__member_list__free_unpacked(l, NULL);
}

static grpc_status_t fail(const char **text, const char *t, grpc_status_t code) {
    *text = t;
    return code;
}

#define NOT_ENOUGH_STARTED "etcdserver: re-configuration failed due to not enough started members"

static grpc_status_t check_add(server_t *s, const Kshim__Member *m, const char **text) {
    if (s->cfg->strict_reconfig_check) {
        voters_t v;
        get_voters(s, &v);
        size_t started = 0;
        for (size_t i = 0; i < v.n; i++) started += v.started[i];
        size_t members = v.n + 1;
        int ready = (started == 1 && members == 2) || started >= members / 2 + 1;
        if (!m->is_learner && !ready) return fail(text, NOT_ENOUGH_STARTED, GRPC_FAILED_PRECONDITION);
        /* etcd checks the voters' connections for a learner too */
        if (connected_since(s, v.ids, v.n) != v.n)
            return fail(text, "etcdserver: unhealthy cluster", GRPC_UNAVAILABLE);
    }
    int rc = member_table_check_add(s->members, m);
    return rc == MEMBER_TABLE_OK ? GRPC_OK : table_error(rc, text);
}

static grpc_status_t check_remove(server_t *s, uint64_t id, const char **text) {
    Kshim__Member *r = member_table_get(s->members, id);
    int learner = r && !r->removed && r->is_learner;
    if (r) kshim__member__free_unpacked(r, NULL);
    if (s->cfg->strict_reconfig_check && !learner) {
        voters_t v;
        get_voters(s, &v);
        size_t members = 0, started = 0;
        for (size_t i = 0; i < v.n; i++) {
            if (v.ids[i] == id) continue;
            members++;
            started += v.started[i];
        }
        if (started < members / 2 + 1) return fail(text, NOT_ENOUGH_STARTED, GRPC_FAILED_PRECONDITION);
        if (id == s->member_id || peer_active(s, id)) {
            size_t active = connected_since(s, v.ids, v.n);
            if (active - 1 < 1 + (v.n - 1) / 2)
                return fail(text, "etcdserver: unhealthy cluster", GRPC_UNAVAILABLE);
        }
    }
    int rc = member_table_check_remove(s->members, id);
    return rc == MEMBER_TABLE_OK ? GRPC_OK : table_error(rc, text);
}

static grpc_status_t check_promote(server_t *s, uint64_t id, const char **text) {
    raft_peer_progress_t pr;
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    if (raft_node_peer_progress(s->raft, id, &pr) == RAFT_NODE_OK &&
        (double)pr.match < (double)st.last_index * 0.9)
        return fail(text, "etcdserver: can only promote a learner member which is in sync with leader",
                    GRPC_FAILED_PRECONDITION);
    if (s->cfg->strict_reconfig_check) {
        voters_t v;
        get_voters(s, &v);
        size_t members = v.n + 1, started = 1;
        for (size_t i = 0; i < v.n; i++) started += v.started[i];
        if (started < members / 2 + 1) return fail(text, NOT_ENOUGH_STARTED, GRPC_FAILED_PRECONDITION);
    }
    int rc = member_table_check_promote(s->members, id);
    return rc == MEMBER_TABLE_OK ? GRPC_OK : table_error(rc, text);
}

/* On the leader: check and propose. GRPC_OK, or the refusal. */
static grpc_status_t leader_conf_change(server_t *s, uint8_t op, uint64_t id, const uint8_t *ctx, size_t len,
                                        const char **text) {
    Kshim__ConfChangeContext *cc = kshim__conf_change_context__unpack(NULL, len, ctx);
    if (!cc) return fail(text, "etcdserver: request is too large", GRPC_INVALID_ARGUMENT);
    grpc_status_t code = GRPC_OK;
    if (op == RAFT_CONF_REMOVE)
        code = check_remove(s, id, text);
    else if (cc->is_promote)
        code = check_promote(s, id, text);
    else if (cc->member)
        code = check_add(s, cc->member, text);
    kshim__conf_change_context__free_unpacked(cc, NULL);
    if (code != GRPC_OK) return code;
    int rc = raft_node_propose_conf_change(s->raft, op, id, ctx, len);
    if (rc == RAFT_NODE_OK) return GRPC_OK;
    if (rc == RAFT_NODE_ERR_NOT_LEADER) return fail(text, "etcdserver: no leader", GRPC_UNAVAILABLE);
    if (rc ==
        RAFT_NODE_ERR_BUSY) /* another change not applied yet: etcd's raft drops it, the caller times out */
        return fail(text, "etcdserver: request timed out", GRPC_UNAVAILABLE);
    return fail(text, "etcdserver: server stopped", GRPC_UNAVAILABLE);
}

static void answer_pending(server_t *s, uint64_t req_id, grpc_status_t code, const char *text) {
    grpc_call_t *c = pending_take(s->pending, req_id);
    if (!c) return;
    s->proposals_failed++;
    grpc_call_finish(c, code, text);
    grpc_call_unref(c);
}

void server_propose_conf_change(server_t *s, grpc_call_t *call, uint8_t op, uint64_t id,
                                Kshim__ConfChangeContext *cc) {
    Kshim__RequestHeader hdr = KSHIM__REQUEST_HEADER__INIT;
    hdr.id = s->req_id_prefix | ++s->req_id_counter;
    hdr.proposer = s->member_id;
    cc->header = &hdr;
    size_t len = kshim__conf_change_context__get_packed_size(cc);
    uint8_t *buf = malloc(9 + len);
    if (!buf) {
        cc->header = NULL;
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    buf[0] = op;
    put_be64(buf + 1, id);
    kshim__conf_change_context__pack(cc, buf + 9);
    cc->header = NULL;
    uint64_t deadline = loop_now_ms(s->loop) + server_request_timeout_ms(s->cfg);
    if (pending_add(s->pending, hdr.id, call, deadline) != 0) {
        free(buf);
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
        return;
    }
    uint64_t leader = server_leader(s);
    const char *text = NULL;
    grpc_status_t code = GRPC_OK;
    if (leader == s->member_id)
        code = leader_conf_change(s, op, id, buf + 9, len, &text);
    else if (leader == 0 || server_peer_send(s, leader, SERVER_PEER_CONF_CHANGE, buf, 9 + len) != 0)
        code = fail(&text, "etcdserver: no leader", GRPC_UNAVAILABLE);
    free(buf);
    if (code != GRPC_OK) answer_pending(s, hdr.id, code, text);
}

/* Leader: a follower's membership change. */
static void on_conf_change(server_t *s, uint64_t from, const uint8_t *data, size_t len) {
    if (len < 9) return;
    Kshim__ConfChangeContext *cc = kshim__conf_change_context__unpack(NULL, len - 9, data + 9);
    if (!cc) return;
    uint64_t req_id = cc->header ? cc->header->id : 0;
    kshim__conf_change_context__free_unpacked(cc, NULL);
    const char *text = NULL;
    grpc_status_t code = leader_conf_change(s, data[0], get_be64(data + 1), data + 9, len - 9, &text);
    if (code == GRPC_OK) return; /* the follower answers when the entry applies there */
    size_t tl = strlen(text);
    uint8_t *resp = malloc(9 + tl);
    if (!resp) return;
    put_be64(resp, req_id);
    resp[8] = (uint8_t)code;
    memcpy(resp + 9, text, tl);
    server_peer_send(s, from, SERVER_PEER_CONF_CHANGE_RESP, resp, 9 + tl);
    free(resp);
}

static void on_conf_change_resp(server_t *s, uint64_t from, const uint8_t *data, size_t len) {
    (void)from;
    if (len < 9) return;
    char text[256];
    size_t tl = len - 9 < sizeof text - 1 ? len - 9 : sizeof text - 1;
    memcpy(text, data + 9, tl);
    text[tl] = '\0';
    answer_pending(s, get_be64(data), (grpc_status_t)data[8], text);
}

/* ---- publish (etcd's publish: name and client URLs after start) ---- */

/* As etcd, on every start, a restart too: the member serves clients only
 * once a publish it proposed in this run is applied, i.e. once it is part of
 * a quorum again and caught up to that point (a member restarted while cut
 * off, or removed meanwhile, never serves its stale view). */
static int published(server_t *s) {
    if (!atomic_load(&s->publish_applied)) return 0;
    Kshim__Member *me = member_table_get(s->members, s->member_id);
    if (!me) return 0;
    const server_config_t *cfg = s->cfg;
    int same = me->name && strcmp(me->name, cfg->name) == 0 &&
               same_urls(cfg->advertise_client_urls, cfg->n_advertise_client_urls, me->client_urls,
                         me->n_client_urls);
    kshim__member__free_unpacked(me, NULL);
    return same;
}

static void publish_tick(loop_t *loop, void *arg) {
    server_t *s = arg;
    if (published(s)) {
        s->published = 1;
        log_info("published local member to cluster: name=%s", s->cfg->name);
        int (*start)(server_t *) = s->on_published;
        s->on_published = NULL;
        if (start && start(s) != 0) {
            s->fatal = 1;
            loop_stop(loop);
        }
        return;
    }
    if (server_leader(s) != 0) {
        Kshim__MemberAttrRequest attr = KSHIM__MEMBER_ATTR_REQUEST__INIT;
        attr.id = s->member_id;
        attr.name = (char *)s->cfg->name;
        attr.client_urls = (char **)s->cfg->advertise_client_urls;
        attr.n_client_urls = s->cfg->n_advertise_client_urls;
        Kshim__RequestHeader hdr = KSHIM__REQUEST_HEADER__INIT;
        hdr.id = s->req_id_prefix | ++s->req_id_counter;
        hdr.proposer = s->member_id;
        Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
        req.header = &hdr;
        req.member_attr = &attr;
        size_t len = kshim__internal_request__get_packed_size(&req);
        uint8_t *buf = malloc(len);
        if (buf) {
            kshim__internal_request__pack(&req, buf);
            raft_node_propose(s->raft, buf, len);
            free(buf);
        }
    }
    loop_timer_add(loop, 1000, publish_tick, s);
}

void server_publish_start(server_t *s) {
    server_peer_handle(s, SERVER_PEER_CONF_CHANGE, on_conf_change);
    server_peer_handle(s, SERVER_PEER_CONF_CHANGE_RESP, on_conf_change_resp);
    loop_timer_add(s->loop, 100, publish_tick, s);
}

/* ---- apply ---- */

static int pack_into(kv_result_t *res, const ProtobufCMessage *msg) {
    res->resp_len = protobuf_c_message_get_packed_size(msg);
    res->resp = malloc(res->resp_len ? res->resp_len : 1);
    if (!res->resp) return -1;
    protobuf_c_message_pack(msg, res->resp);
    return 0;
}

/* The proposer's answer: the response of its kind with the table after the change. */
static void build_response(server_t *s, int kind, const Kshim__Member *added, const kv_header_info_t *hi,
                           kv_result_t *res) {
    server_members_t ms;
    if (server_members_get(s, &ms) != 0) {
        res->code = GRPC_RESOURCE_EXHAUSTED;
        snprintf(res->message, sizeof res->message, "etcdserver: out of memory");
        return;
    }
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    h.cluster_id = hi->cluster_id;
    h.member_id = hi->member_id;
    h.raft_term = hi->raft_term;
    h.revision = mvcc_apply_revision(s->mvcc);
    int rc = 0;
    if (kind == 'a') {
        Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
        m.id = added->id;
        m.peerurls = added->peer_urls;
        m.n_peerurls = added->n_peer_urls;
        m.islearner = added->is_learner;
        Etcdserverpb__MemberAddResponse r = ETCDSERVERPB__MEMBER_ADD_RESPONSE__INIT;
        r.header = &h;
        r.member = &m;
        r.members = ms.ptrs;
        r.n_members = ms.n;
        rc = pack_into(res, &r.base);
    } else if (kind == 'r') {
        Etcdserverpb__MemberRemoveResponse r = ETCDSERVERPB__MEMBER_REMOVE_RESPONSE__INIT;
        r.header = &h;
        r.members = ms.ptrs;
        r.n_members = ms.n;
        rc = pack_into(res, &r.base);
    } else if (kind == 'p') {
        Etcdserverpb__MemberPromoteResponse r = ETCDSERVERPB__MEMBER_PROMOTE_RESPONSE__INIT;
        r.header = &h;
        r.members = ms.ptrs;
        r.n_members = ms.n;
        rc = pack_into(res, &r.base);
    } else {
        Etcdserverpb__MemberUpdateResponse r = ETCDSERVERPB__MEMBER_UPDATE_RESPONSE__INIT;
        r.header = &h;
        r.members = ms.ptrs;
        r.n_members = ms.n;
        rc = pack_into(res, &r.base);
    }
    server_members_release(&ms);
    if (rc != 0) {
        res->code = GRPC_RESOURCE_EXHAUSTED;
        snprintf(res->message, sizeof res->message, "etcdserver: out of memory");
    }
}

static void stop_removed(loop_t *loop, void *arg) {
    (void)arg;
    loop_stop(loop);
}

/* Loop: our removal was applied. The batch's answers (the removal's own,
 * when a client asked us) are posted after this: stop a little later. */
/* Loop: a member was added to a single member that runs no transport yet. */
static void start_peers_now(void *arg) {
    server_t *s = arg;
    if (!s->peer && s->start_peers && s->start_peers(s) != 0) log_error("cannot start the peer transport");
}

/* etcd's words (etcdserver: the error its run loop gets, then the advice). */
static void self_removed(void *arg) {
    server_t *s = arg;
    log_error("the member has been permanently removed from the cluster");
    log_info("the data-dir used by this member must be removed.");
    loop_timer_add(s->loop, 500, stop_removed, s);
}

/* Once, whichever way the member learns it first. */
static void stop_as_removed(server_t *s) {
    if (atomic_exchange(&s->removed, 1) == 0 && loop_post(s->loop, self_removed, s) != 0) loop_stop(s->loop);
}

void server_membership_removed_by_peer(void *ctx, uint64_t by) {
    server_t *s = ctx;
    log_warn("member %016llx refused this member: it was removed from the cluster", (unsigned long long)by);
    stop_as_removed(s);
}

/* A table change's outcome: storage failure, a refusal (the proposer hears
 * etcd's error), or done. */
static int finish_apply(int rc, kv_result_t *res) {
    if (rc == MEMBER_TABLE_E_IO || rc == MEMBER_TABLE_E_NOMEM) return -1;
    if (rc != MEMBER_TABLE_OK) {
        const char *text;
        res->code = table_error(rc, &text);
        snprintf(res->message, sizeof res->message, "%s", text);
        return 1;
    }
    return 0;
}

static int apply_conf_change(server_t *s, const raft_entry_t *e, const kv_header_info_t *hdr,
                             kv_result_t *res, uint64_t *req_id, int *ours) {
    /* entries at or below the applied index come again after a snapshot install: skip them */
    if (e->index <= mvcc_apply_index(s->mvcc)) return 1;
    if (e->len < RAFT_CONF_CHANGE_LEN) return mvcc_set_applied(s->mvcc, e->index) == MVCC_OK ? 1 : -1;
    uint8_t op = e->data[0];
    uint64_t id = get_be64(e->data + 1);
    Kshim__ConfChangeContext *cc =
        e->len > RAFT_CONF_CHANGE_LEN
            ? kshim__conf_change_context__unpack(NULL, e->len - RAFT_CONF_CHANGE_LEN,
                                                 e->data + RAFT_CONF_CHANGE_LEN)
            : NULL;
    if (cc && cc->header) {
        *req_id = cc->header->id;
        *ours = cc->header->proposer == s->member_id;
    }
    int rc, kind;
    if (op == RAFT_CONF_REMOVE) {
        kind = 'r';
        rc = member_table_apply_remove(s->members, e->index, id);
        if (rc == MEMBER_TABLE_OK) peer_update(s, id, NULL, 0, 1);
        if (rc == MEMBER_TABLE_OK && id == s->member_id) stop_as_removed(s);
    } else if (cc && cc->is_promote) {
        kind = 'p';
        rc = member_table_apply_promote(s->members, e->index, id);
    } else if (cc && cc->member) {
        kind = 'a';
        cc->member->id = id;
        cc->member->is_learner = op == RAFT_CONF_ADD_LEARNER;
        rc = member_table_apply_add(s->members, e->index, cc->member);
        if (rc == MEMBER_TABLE_OK) peer_update(s, id, cc->member->peer_urls, cc->member->n_peer_urls, 0);
        if (rc == MEMBER_TABLE_OK && !s->peer) loop_post(s->loop, start_peers_now, s);
    } else {
        /* A bootstrap entry (no context): the member is in the table already. */
        kind = 0;
        rc = mvcc_set_applied(s->mvcc, e->index) == MVCC_OK ? MEMBER_TABLE_OK : MEMBER_TABLE_E_IO;
    }
    int out = finish_apply(rc, res);
    if (out == 0 && *ours && kind) build_response(s, kind, cc ? cc->member : NULL, hdr, res);
    if (cc) kshim__conf_change_context__free_unpacked(cc, NULL);
    return out < 0 ? -1 : 1;
}

int server_membership_apply(server_t *s, const raft_entry_t *e, const Kshim__InternalRequest *req,
                            const kv_header_info_t *hdr, kv_result_t *res, uint64_t *req_id, int *ours) {
    *req_id = 0;
    *ours = 0;
    if (e->type == RAFT_ENTRY_CONF_CHANGE) return apply_conf_change(s, e, hdr, res, req_id, ours);
    if (!req || (!req->member_attr && !req->member_update)) return 0;
    if (req->header) {
        *req_id = req->header->id;
        *ours = req->header->proposer == s->member_id;
    }
    int rc;
    if (req->member_attr) {
        const Kshim__MemberAttrRequest *a = req->member_attr;
        rc = member_table_apply_attr(s->members, e->index, a->id, a->name, a->client_urls, a->n_client_urls);
        if (rc == MEMBER_TABLE_OK && *ours && a->id == s->member_id &&
            (req->header->id & ~(uint64_t)UINT32_MAX) == s->req_id_prefix)
            atomic_store(&s->publish_applied, 1);
        *ours = 0; /* nobody waits for a publish */
        return finish_apply(rc, res) < 0 ? -1 : 1;
    }
    const Kshim__MemberUpdateRequest *u = req->member_update;
    rc = member_table_apply_update(s->members, e->index, u->id, u->peer_urls, u->n_peer_urls);
    if (rc == MEMBER_TABLE_OK) peer_update(s, u->id, u->peer_urls, u->n_peer_urls, 0);
    int out = finish_apply(rc, res);
    if (out == 0 && *ours) build_response(s, 'u', NULL, hdr, res);
    return out < 0 ? -1 : 1;
}
