/*
 * server_internal.h: the member layer's API (member/member.c), what the etcd
 * services (services/svc_*.c) and the wiring (server.c) share: the member's
 * state, the write path into Raft (server_propose), helpers to answer a call
 * from a kv_result, and the registration of the services' appliers and
 * hooks (the member calls no service directly). Loop thread only, except
 * where noted.
 */
#ifndef KSHIM_SERVER_INTERNAL_H
#define KSHIM_SERVER_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "grpc.h"
#include "kv.h"
#include "loop.h"
#include "node.h"
#include "server_config.h"

typedef struct pending_table pending_table_t;
typedef struct member_table member_table_t;
typedef struct readers readers_t;

typedef struct server server_t;
/* An applier (see server_add_applier) and the physical-Compact hook (see
 * svc_kv_wait_physical in services.h). */
typedef int (*server_applier_fn)(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                                 const kv_header_info_t *hdr, kv_result_t *res);
typedef int (*server_wait_physical_fn)(server_t *s, grpc_call_t *call, kv_result_t *res);
#define SERVER_MAX_APPLIERS 8

/* Member-to-member application messages (the peer transport's opaque
 * "app" frames; the kind byte is ours). Payloads are defined by their
 * owners; a handler runs on the loop thread. */
enum {
    SERVER_PEER_FORWARD = 1,     /* follower -> leader: proposal bytes (forward.c) */
    SERVER_PEER_LEASE_RENEW = 2, /* follower -> leader: LeaseKeepAlive (svc_lease.c) */
    SERVER_PEER_LEASE_RENEW_RESP = 3,
    SERVER_PEER_LEASE_TTL = 4, /* follower -> leader: LeaseTimeToLive (svc_lease.c) */
    SERVER_PEER_LEASE_TTL_RESP = 5,
    SERVER_PEER_CONF_CHANGE = 6,      /* follower -> leader: a membership change (membership.c) */
    SERVER_PEER_CONF_CHANGE_RESP = 7, /* leader -> follower: the change was refused before Raft */
    SERVER_PEER_FORWARD_REFUSED =
        8, /* leader -> proposer: a forwarded proposal will not reach the log (forward.c) */
    SERVER_PEER_KINDS = 16,
};
typedef void (*server_peer_handler_fn)(server_t *s, uint64_t from, const uint8_t *data, size_t len);
/* Member-to-member requests with an answer (peer_request, raft/peer/peer.h;
 * a kind space of its own). A handler runs on a transport reader thread
 * and may block; 0 with *out (malloc'd or NULL), or -1: not answered. */
enum {
    SERVER_PEER_REQ_HASHKV = 1, /* a peer's HashKV at a revision (svc_corrupt.c; etcd's /members/hashkv) */
    SERVER_PEER_REQ_KINDS = 8,
};
typedef int (*server_peer_request_fn)(server_t *s, uint64_t from, const uint8_t *data, size_t len,
                                      uint8_t **out, size_t *out_len);
/* After a snapshot from the leader replaced the store (and at no other
 * time), each service rebuilds what it derives from the store (lessor,
 * auth caches, watchers' positions). Loop thread; 0 ok, -1 fail-stop. */
typedef int (*server_reload_fn)(server_t *s);
#define SERVER_MAX_RELOAD_HOOKS 8

struct server {
    const server_config_t *cfg;
    loop_t *loop;
    grpc_server_t *grpc;
    mvcc_t *mvcc;
    raft_node_t *raft;
    uint64_t member_id;
    uint64_t cluster_id;
    _Atomic uint64_t term;  /* term of the last applied batch (raft thread writes) */
    uint64_t req_id_prefix; /* random high bits: ids never repeat across restarts */
    uint32_t req_id_counter;
    pending_table_t *pending; /* request id -> waiting call */
    readers_t *readers;       /* reader threads (readers.h); NULL: read on the loop */
    int fatal;                /* the member must exit with an error */
    int64_t tls_mtime;        /* newest mtime of the TLS files at last load */
    _Atomic int apply_failed; /* raft thread: the store refused an entry */
    /* etcd_server_proposals_failed_total: proposals refused by Raft (no
     * leader, stopped) or timed out waiting to apply. */
    uint64_t proposals_failed;
    const char *peer_urls[SERVER_MAX_URLS];
    size_t n_peer_urls;
    /* Service state, each owned by its svc_*.c. */
    struct svc_watch *watch;
    struct svc_lease *lease;
    struct svc_auth *auth;
    struct svc_kv *kv;
    struct svc_metrics *metrics;
    struct svc_maintenance *maint;
    struct svc_gateway *gateway;
    struct svc_corrupt *corrupt;
    struct svc_lock *lock;         /* v3lockpb.Lock calls in progress */
    struct svc_election *election; /* v3electionpb.Election calls in progress */
    struct local_client *lclient;  /* their in-process requests (local_client.h) */
    /* Registered by the wiring before Raft starts (server_run). */
    server_applier_fn appliers[SERVER_MAX_APPLIERS];
    size_t n_appliers;
    server_wait_physical_fn wait_physical; /* NULL: answer a physical Compact at once */
    /* Peers (a cluster): see "peers" below. */
    struct peer_transport *peer; /* NULL: a single member without peers */
    server_peer_handler_fn peer_handlers[SERVER_PEER_KINDS];
    server_peer_request_fn peer_request_handlers[SERVER_PEER_REQ_KINDS];
    server_reload_fn reload_hooks[SERVER_MAX_RELOAD_HOOKS];
    size_t n_reload_hooks;
    /* Membership (membership.c). */
    member_table_t *members;     /* the replicated member table (storage/cluster) */
    int join;                    /* started with --initial-cluster-state existing */
    int initialized;             /* the data dir held a member of an earlier run (etcd's memberInitialized) */
    int published;               /* our name and client URLs are in the applied table */
    _Atomic int publish_applied; /* apply thread: a publish proposed by this run was applied */
    _Atomic int removed;         /* this member's removal was applied, or a peer refused us as removed */
    uint64_t move_leader_to;     /* MoveLeader in progress (loop) */
    /* The wiring's transport start (server.c), for a single member that
     * gets a second one (loop thread; 0 or -1 logged). */
    int (*start_peers)(server_t *s);
    /* The wiring's client listeners (server.c), started once published when
     * the member has peers (etcd serves clients only after its publish);
     * NULL once started. Loop thread; 0, or -1 (logged; the member stops). */
    int (*on_published)(server_t *s);
    struct server_snapshot *snapshot; /* receive state of Raft snapshots (member/snapshot.c) */
    /* Answers before the write (member.c, server_when_written): the last
     * entry whose write group LevelDB holds (apply thread), the last entry
     * answered before that (loop thread), and the reads waiting for it. */
    _Atomic uint64_t written_index;
    uint64_t answered_index;
    _Atomic int64_t answered_rev; /* the store revision after the last batch answered before its write */
    struct server_written_wait *written_head, *written_tail;
};

/* Header fields for responses produced on the loop thread. */
void server_header_info(server_t *s, kv_header_info_t *out);

/* Refuses a call when the client asked for a leader (metadata hasleader=true)
 * and there is none: finishes it with Unavailable "etcdserver: no leader" and
 * returns -1. */
int server_require_leader(server_t *s, grpc_call_t *call);

/* Proposes req (its header is filled here) through Raft; when the entry is
 * applied, the packed response is sent on call and the call finished. On
 * failure (too large, no leader) the call is finished with etcd's error. The
 * caller keeps ownership of req. */
void server_propose(server_t *s, grpc_call_t *call, Kshim__InternalRequest *req);
/* The same for a request whose permissions were checked for user at auth
 * revision auth_revision: the header carries both, and the entry is checked
 * again at apply against the auth store as it is then (etcd's
 * RequestHeader.username / auth_revision). server_propose = user "", 0. */
void server_propose_as(server_t *s, grpc_call_t *call, Kshim__InternalRequest *req, const char *user,
                       uint64_t auth_revision);

/* A response header for this member at the store's current revision. */
void server_fill_header(server_t *s, Etcdserverpb__ResponseHeader *h);

/* Packs msg, sends it on call and, if finish is set, finishes the call OK.
 * Returns 0, or -1 (out of memory: the call is finished with an error; or
 * the call is already closed). */
int server_send_message(grpc_call_t *call, const ProtobufCMessage *msg, int finish);

/* grpc-go's answer to a request that does not unmarshal. */
void server_reply_bad_request(grpc_call_t *call);

/* Sends res on call (response or error) and finishes it; clears res. */
void server_finish_result(grpc_call_t *call, kv_result_t *res);

/* ---- registration: how the wiring (server.c) plugs the services in ---- */

/* Adds fn to the appliers server_apply offers every committed entry, in
 * the order added, before the KV store sees it. fn (raft thread) returns 1
 * if req belongs to its state machine and was applied at index (res filled,
 * the applied index recorded in the same LevelDB write), 0 if req is not its
 * kind, -1 on a storage failure. Call before Raft starts. Returns 0, or -1
 * when SERVER_MAX_APPLIERS are registered. */
int server_add_applier(server_t *s, server_applier_fn fn);

/* ---- peers ---- */

/* Sends an app message to member `to` (any thread). 0, or a negative
 * PEER_ERR_* (no peers: PEER_ERR_UNKNOWN). */
int server_peer_send(server_t *s, uint64_t to, uint8_t kind, const void *data, size_t len);
/* s->peer for a use on any thread: NULL, or the transport, valid until
 * server_peer_release (which must follow either way). */
struct peer_transport *server_peer_acquire(server_t *s);
void server_peer_release(void);
/* Registers the loop-thread handler of kind (before the transport starts). */
void server_peer_handle(server_t *s, uint8_t kind, server_peer_handler_fn fn);
/* Registers the answer to requests of kind (before the transport starts). */
void server_peer_handle_request(server_t *s, uint8_t kind, server_peer_request_fn fn);
/* The transport's on_request (ctx = s): the registered handler of kind. */
int server_peer_answer(void *ctx, uint64_t from, uint8_t kind, const uint8_t *data, size_t len, uint8_t **out,
                       size_t *out_len);
/* The leader's id as this member knows it (0: none), and whether it is us. */
uint64_t server_leader(server_t *s);
int server_is_leader(server_t *s);
/* Registers a reload hook (see server_reload_fn). Before Raft starts;
 * 0, or -1 when SERVER_MAX_RELOAD_HOOKS are registered. */
int server_add_reload_hook(server_t *s, server_reload_fn fn);

/* ---- membership (membership.c) ---- */

/* After the store opened, before Raft starts: this member's id, the cluster
 * id and the member table, from the store (a restart: the flags are
 * ignored, as etcd), else from --initial-cluster (state new: etcd's
 * bootstrap checks) or from the other members (state existing: the table
 * fetched over the peer port, our id found by our peer URLs, s->join set).
 * 0, or -1 with etcd's start error in err. */
int server_membership_init(server_t *s, char *err, size_t errlen);
/* The voters (not learners, not removed) of the table; returns the count. */
size_t server_voter_ids(server_t *s, uint64_t *out, size_t cap);
/* Every URL of every live member but us, in the peer transport (server.c,
 * once it started; again after a snapshot install), removed ones out. */
void server_membership_add_peers(server_t *s);
/* The transport's on_removed (any thread, ctx = s): a peer refused this
 * member as removed from the cluster (removed while it was cut off, it
 * never applied its removal): it stops as if it had applied it. */
void server_membership_removed_by_peer(void *ctx, uint64_t by);
/* A membership change from a service (MemberAdd/Remove/Promote: op is
 * RAFT_CONF_*, cc its context, whose header is filled here): checked as
 * etcd does on the leader (or forwarded to it) and proposed; call is
 * answered when the entry applies here, or at once with etcd's error. */
void server_propose_conf_change(server_t *s, grpc_call_t *call, uint8_t op, uint64_t id,
                                Kshim__ConfChangeContext *cc);
/* The table's live members as etcdserverpb.Member (an unstarted member has
 * no name and no client URLs, as etcd), for responses; any thread.
 * server_members_get returns 0 or -1 (out of memory). */
typedef struct server_members {
    Kshim__MemberList *list;
    Etcdserverpb__Member *pb;
    Etcdserverpb__Member **ptrs;
    size_t n;
} server_members_t;
int server_members_get(server_t *s, server_members_t *out);
void server_members_release(server_members_t *m);
/* etcd's learner interceptors, as the gRPC server's guard (ctx = s,
 * grpc_server_set_guard): a learner answers only Status, serializable
 * Range and Snapshot; anything else is finished with Unavailable
 * "etcdserver: rpc not supported for learner" (returns 1). */
int server_learner_guard(grpc_call_t *call, const char *path, const uint8_t *msg, size_t len, void *ctx);
/* The apply-side of membership (member.c's apply_entry): a CONF_CHANGE
 * entry, or a normal entry with member_attr / member_update. Returns 1
 * (applied, res filled for the proposer, *req_id / *ours set), 0 (not a
 * membership entry), -1 (storage failure: fail-stop). */
int server_membership_apply(server_t *s, const raft_entry_t *e, const Kshim__InternalRequest *req,
                            const kv_header_info_t *hdr, kv_result_t *res, uint64_t *req_id, int *ours);
/* Loop timer: proposes our name and client URLs (etcd's publish) until
 * the table holds them. */
void server_publish_start(server_t *s);
/* The packed kshim.MemberList (for a joining member's fetch); 0 or -1. */
int server_members_pack(server_t *s, uint8_t **out, size_t *out_len);
/* Reload hook: the table after a snapshot install. */
int server_membership_reload(server_t *s);
void server_membership_free(server_t *s);

/* Forwarded proposals (forward.c): raft_node_config_t.forward, .dropped
 * and .refused for this member (ctx = s; raft thread), and the peer
 * handlers of SERVER_PEER_FORWARD / _REFUSED (before the transport starts).
 * A follower's client whose proposal the leader refuses is answered at
 * once ("etcdserver: too many requests" / "etcdserver: leader changed"). */
void server_node_forward(void *ctx, uint64_t leader, const void *data, size_t len);
void server_node_dropped(void *ctx, const void *data, size_t len, int reason);
void server_node_refused(void *ctx, uint64_t from, const void *data, size_t len, int reason);
void server_forward_register(server_t *s);

/* Loop thread. A KV write's answer goes out once its entry is applied and
 * durable in the Raft WAL, before its write group reaches LevelDB
 * (server_apply): a read of the store that must see every write answered
 * so far (linearizable on a single voter, read-your-writes on any member)
 * starts from server_when_written. It runs fn(s, arg, 1) at once if the
 * store holds everything answered (returns 0), else queues w (returns 1):
 * then fn(s, arg, 1) runs on the loop once the store holds it, or fn(s,
 * arg, 0) at shutdown (the callee then only releases what arg holds). w
 * lives in the caller's job, so waiting allocates nothing and cannot fail;
 * it must stay put until fn ran. */
typedef void (*server_written_fn)(server_t *s, void *arg, int ok);
typedef struct server_written_wait {
    struct server_written_wait *next;
    uint64_t index; /* fn runs once written_index reaches it */
    server_written_fn fn;
    void *arg;
} server_written_wait_t;
int server_when_written(server_t *s, server_written_wait_t *w, server_written_fn fn, void *arg);
/* At shutdown, after Raft stopped: every waiter gets fn(s, arg, 0). */
void server_written_stop(server_t *s);
/* The revision a client may have heard of: the store's, or the revision of
 * a write answered before its group is in the store, if higher. Response
 * headers and a watch starting "now" use it, so neither goes back in time. */
int64_t server_revision(server_t *s);

/* raft_node_config_t.apply and .persist_state for this member (ctx = s). */
void server_apply(void *ctx, const raft_entry_t *ents, size_t n, uint64_t term);
uint64_t server_persist_state(void *ctx);

#endif
