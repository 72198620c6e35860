/*
 * svc_cluster.c: the etcd Cluster service (/etcdserverpb.Cluster/...) and
 * Maintenance.MoveLeader, as etcd 3.4's v3rpc/member.go:
 *   MemberList    the member table (an unstarted member has no name and no
 *                 client URLs), served locally;
 *   MemberAdd     a new member's id (SHA-1 of its sorted peer URLs and the
 *                 time, etcd's NewMember), a Raft CONF_CHANGE ADD_VOTER or
 *                 ADD_LEARNER; MemberRemove (REMOVE), MemberPromote
 *                 (ADD_VOTER of a learner): server_propose_conf_change,
 *                 checked on the leader as etcd does;
 *   MemberUpdate  a normal entry with the new peer URLs.
 * Each answers with the full member list once its entry is applied here.
 * Membership changes need the root role when auth is on, as etcd's
 * checkMembershipOperationPermission (its errors translated to etcdserver:
 * codes and texts, as togRPCError); MoveLeader checks no identity at all in
 * etcd 3.4 (authMaintenanceServer passes it through).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_check.h"
#include "services.h"

static int refused(server_t *s, grpc_call_t *call, int admin) {
    if (!admin) return 0;
    const char *why = NULL;
    grpc_status_t st = auth_check_admin(s, call, &why);
    if (st == GRPC_OK) return 0;
    grpc_call_finish(call, st, why);
    return 1;
}

static void member_list_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    (void)msg;
    (void)len;
    if (refused(s, call, 0)) return;
    server_members_t ms;
    if (server_members_get(s, &ms) != 0) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    Etcdserverpb__MemberListResponse resp = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    resp.header = &hdr;
    resp.n_members = ms.n;
    resp.members = ms.ptrs;
    server_send_message(call, &resp.base, 1);
    server_members_release(&ms);
}

/* types.NewURLs: http/https/unix/unixs with host:port and no path. */
static int valid_url(const char *u) {
    const char *schemes[] = {"http://", "https://", "unix://", "unixs://"};
    const char *rest = NULL;
    for (size_t i = 0; i < 4 && !rest; i++)
        if (strncmp(u, schemes[i], strlen(schemes[i])) == 0) rest = u + strlen(schemes[i]);
    if (!rest) return 0;
    const char *colon = strrchr(rest, ':'), *slash = strchr(rest, '/');
    if (!colon || colon == rest || (slash && slash < colon)) return 0;
    return !slash || slash[1] == '\0';
}

static int valid_urls(char **urls, size_t n) {
    if (n == 0 || n > SERVER_MAX_URLS) return 0;
    for (size_t i = 0; i < n; i++)
        if (!valid_url(urls[i])) return 0;
    return 1;
}

static void member_add_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__MemberAddRequest *req = etcdserverpb__member_add_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    if (!refused(s, call, 1)) {
        if (!valid_urls(req->peerurls, req->n_peerurls)) {
            grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "etcdserver: given member URLs are invalid");
        } else {
            /* etcd's NewMember("", urls, "", now): sorted URLs + the Unix time. */
            char now[32];
            snprintf(now, sizeof now, "%lld", (long long)time(NULL));
            Kshim__Member m = KSHIM__MEMBER__INIT;
            m.id = server_member_id((const char *const *)req->peerurls, req->n_peerurls, now);
            m.peer_urls = req->peerurls;
            m.n_peer_urls = req->n_peerurls;
            m.is_learner = req->islearner;
            Kshim__ConfChangeContext cc = KSHIM__CONF_CHANGE_CONTEXT__INIT;
            cc.member = &m;
            server_propose_conf_change(s, call, req->islearner ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER,
                                       m.id, &cc);
        }
    }
    etcdserverpb__member_add_request__free_unpacked(req, NULL);
}

static void member_remove_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__MemberRemoveRequest *req = etcdserverpb__member_remove_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    if (!refused(s, call, 1)) {
        Kshim__ConfChangeContext cc = KSHIM__CONF_CHANGE_CONTEXT__INIT;
        server_propose_conf_change(s, call, RAFT_CONF_REMOVE, req->id, &cc);
    }
    etcdserverpb__member_remove_request__free_unpacked(req, NULL);
}

static void member_promote_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__MemberPromoteRequest *req = etcdserverpb__member_promote_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    if (!refused(s, call, 1)) {
        Kshim__ConfChangeContext cc = KSHIM__CONF_CHANGE_CONTEXT__INIT;
        cc.is_promote = 1;
        server_propose_conf_change(s, call, RAFT_CONF_ADD_VOTER, req->id, &cc);
    }
    etcdserverpb__member_promote_request__free_unpacked(req, NULL);
}

static void member_update_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__MemberUpdateRequest *req = etcdserverpb__member_update_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    if (!refused(s, call, 1)) {
        if (!valid_urls(req->peerurls, req->n_peerurls)) {
            grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "etcdserver: given member URLs are invalid");
        } else {
            Kshim__MemberUpdateRequest u = KSHIM__MEMBER_UPDATE_REQUEST__INIT;
            u.id = req->id;
            u.peer_urls = req->peerurls;
            u.n_peer_urls = req->n_peerurls;
            Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
            ir.member_update = &u;
            server_propose(s, call, &ir);
        }
    }
    etcdserverpb__member_update_request__free_unpacked(req, NULL);
}

/* ---- Maintenance.MoveLeader ---- */

typedef struct move_wait {
    server_t *s;
    grpc_call_t *call; /* one reference */
    uint64_t target;
    uint64_t deadline_ms;
} move_wait_t;

static void move_poll(loop_t *loop, void *arg) {
    move_wait_t *w = arg;
    const char *err = NULL;
    if (grpc_call_is_closed(w->call)) {
        err = "";
    } else if (server_leader(w->s) == w->target) {
        Etcdserverpb__MoveLeaderResponse resp = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
        server_send_message(w->call, &resp.base, 1);
        err = "";
    } else if (loop_now_ms(loop) >= w->deadline_ms) {
        err = "etcdserver: request timed out, leader transfer took too long";
        grpc_call_finish(w->call, GRPC_UNAVAILABLE, err);
    }
    if (!err) {
        loop_timer_add(loop, w->s->cfg->heartbeat_interval_ms ? w->s->cfg->heartbeat_interval_ms : 100,
                       move_poll, w);
        return;
    }
    w->s->move_leader_to = 0;
    grpc_call_unref(w->call);
    free(w);
}

static void move_leader_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__MoveLeaderRequest *req = etcdserverpb__move_leader_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    uint64_t target = req->targetid;
    etcdserverpb__move_leader_request__free_unpacked(req, NULL);
    if (!server_is_leader(s)) {
        grpc_call_finish(call, GRPC_FAILED_PRECONDITION, "etcdserver: not leader");
        return;
    }
    server_members_t ms;
    int ok = 0;
    if (server_members_get(s, &ms) == 0) {
        for (size_t i = 0; i < ms.n; i++)
            if (ms.ptrs[i]->id == target && !ms.ptrs[i]->islearner) ok = 1;
        server_members_release(&ms);
    }
    if (!ok) {
        grpc_call_finish(call, GRPC_FAILED_PRECONDITION, "etcdserver: bad leader transferee");
        return;
    }
    if (target == s->member_id) {
        Etcdserverpb__MoveLeaderResponse resp = ETCDSERVERPB__MOVE_LEADER_RESPONSE__INIT;
        server_send_message(call, &resp.base, 1);
        return;
    }
    move_wait_t *w = calloc(1, sizeof *w);
    if (!w || raft_node_transfer_leader(s->raft, target) != RAFT_NODE_OK) {
        free(w);
        grpc_call_finish(call, GRPC_FAILED_PRECONDITION, "etcdserver: not leader");
        return;
    }
    w->s = s;
    w->call = call;
    w->target = target;
    w->deadline_ms = loop_now_ms(s->loop) + server_request_timeout_ms(s->cfg);
    s->move_leader_to = target;
    grpc_call_ref(call);
    loop_timer_add(s->loop, 10, move_poll, w);
}

static grpc_method_t cluster_methods[] = {
    {.path = "/etcdserverpb.Cluster/MemberList", .on_message = member_list_call},
    {.path = "/etcdserverpb.Cluster/MemberAdd", .on_message = member_add_call},
    {.path = "/etcdserverpb.Cluster/MemberRemove", .on_message = member_remove_call},
    {.path = "/etcdserverpb.Cluster/MemberUpdate", .on_message = member_update_call},
    {.path = "/etcdserverpb.Cluster/MemberPromote", .on_message = member_promote_call},
    {.path = "/etcdserverpb.Maintenance/MoveLeader", .on_message = move_leader_call},
};

void svc_cluster_register(server_t *s) {
    for (size_t i = 0; i < sizeof cluster_methods / sizeof cluster_methods[0]; i++) {
        cluster_methods[i].ctx = s;
        grpc_server_register(s->grpc, &cluster_methods[i]);
    }
}
