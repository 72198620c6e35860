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
typedef struct readers readers_t;

typedef struct server server_t;
/* An applier (see server_add_applier) and the physical-Compact hook (see
 * svc_kv_wait_physical in services.h). */
typedef int (*server_applier_fn)(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                                 const kv_header_info_t *hdr, kv_result_t *res);
typedef int (*server_wait_physical_fn)(server_t *s, grpc_call_t *call, kv_result_t *res);
#define SERVER_MAX_APPLIERS 4

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
    /* Registered by the wiring before Raft starts (server_run). */
    server_applier_fn appliers[SERVER_MAX_APPLIERS];
    size_t n_appliers;
    server_wait_physical_fn wait_physical; /* NULL: answer a physical Compact at once */
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

/* raft_node_config_t.apply and .persist_state for this member (ctx = s). */
void server_apply(void *ctx, const raft_entry_t *ents, size_t n, uint64_t term);
uint64_t server_persist_state(void *ctx);

#endif
