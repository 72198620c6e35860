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
    const char *peer_urls[SERVER_MAX_URLS];
    size_t n_peer_urls;
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

/* Sends res on call (response or error) and finishes it; clears res. */
void server_finish_result(grpc_call_t *call, kv_result_t *res);

/* Service registration (svc_*.c). */
void svc_kv_register(server_t *s);
void svc_maintenance_register(server_t *s);
void svc_cluster_register(server_t *s);

#endif
