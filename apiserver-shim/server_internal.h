/*
 * server_internal.h: what the etcd services (svc_*.c) share with server.c:
 * the member's state, the write path into Raft (server_propose) and helpers
 * to answer a call from a kv_result. Loop thread only, except where noted.
 */
#ifndef KSHIM_SERVER_INTERNAL_H
#define KSHIM_SERVER_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "grpc.h"
#include "kv.h"
#include "loop.h"
#include "node.h"
#include "server.h"

typedef struct pending_table pending_table_t;
typedef struct readers readers_t;

typedef struct server {
    const server_config_t *cfg;
    loop_t *loop;
    grpc_server_t *grpc;
    mvcc_t *mvcc;
    raft_node_t *raft;
    uint64_t member_id;
    uint64_t cluster_id;
    _Atomic uint64_t term;        /* term of the last applied batch (raft thread writes) */
    uint64_t req_id_prefix;       /* random high bits: ids never repeat across restarts */
    uint32_t req_id_counter;
    pending_table_t *pending;     /* request id -> waiting call */
    readers_t *readers;           /* reader threads (readers.h); NULL: read on the loop */
    int fatal;                    /* the member must exit with an error */
    int64_t tls_mtime;            /* newest mtime of the TLS files at last load */
    _Atomic int apply_failed;     /* raft thread: the store refused an entry */
    const char *peer_urls[SERVER_MAX_URLS];
    size_t n_peer_urls;
    /* Service state, each owned by its svc_*.c. */
    struct svc_watch *watch;
    struct svc_lease *lease;
    struct svc_auth *auth;
    struct svc_kv *kv;
} server_t;

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

/* Service registration (svc_*.c). */
void svc_kv_register(server_t *s);
/* An applied Compact with physical=true (res->physical_rev > 0): if the
 * compactor is not through that revision yet, takes over call (its
 * reference) and res and answers when it is (or drops the call once the
 * client is gone); returns 0. Returns -1 when the caller answers now. */
int svc_kv_wait_physical(server_t *s, grpc_call_t *call, kv_result_t *res);
/* Drops the calls still waiting (loop stopped). */
void svc_kv_stop(server_t *s);
void svc_maintenance_register(server_t *s);
void svc_cluster_register(server_t *s);

/* Services with state have three phases, called by server_run():
 *   init  (before the store opens): allocate, set store hooks in *mopts;
 *   start (store open, Raft running, loop not yet): load state, register
 *         methods, start timers;
 *   stop  (loop stopped, Raft stopped): free everything. Safe after a failed
 *         or missing init.
 * Each returns 0 or -1 (logged). */
int svc_watch_init(server_t *s, mvcc_options_t *mopts);
int svc_watch_start(server_t *s);
void svc_watch_stop(server_t *s);
int svc_lease_init(server_t *s, mvcc_options_t *mopts);
int svc_lease_start(server_t *s);
void svc_lease_stop(server_t *s);
int svc_auth_init(server_t *s, mvcc_options_t *mopts);
int svc_auth_start(server_t *s);
void svc_auth_stop(server_t *s);

/* Raft thread, for every committed entry before the KV store sees it:
 * returns 1 if req belongs to this state machine and was applied at index
 * (res filled, the applied index recorded in the same LevelDB write), 0 if
 * req is not its kind, -1 on a storage failure. */
int svc_lease_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                    const kv_header_info_t *hdr, kv_result_t *res);
int svc_auth_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                   const kv_header_info_t *hdr, kv_result_t *res);

#endif
