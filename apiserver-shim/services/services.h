/*
 * services.h: the etcd gRPC services (svc_*.c) as the wiring (server.c)
 * sees them: registration, the init/start/stop phases, and the appliers and
 * hooks server_run registers with the member (server_add_applier,
 * server_t.wait_physical). Loop thread only, except the appliers.
 */
#ifndef KSHIM_SERVICES_H
#define KSHIM_SERVICES_H

#include "server_internal.h"

/* Service registration (svc_*.c). */
void svc_kv_register(server_t *s);
/* An applied Compact with physical=true (res->physical_rev > 0): if the
 * compactor is not through that revision yet, takes over call (its
 * reference) and res and answers when it is (or drops the call once the
 * client is gone); returns 0. Returns -1 when the caller answers now. */
int svc_kv_wait_physical(server_t *s, grpc_call_t *call, kv_result_t *res);
/* Loop thread: the node's answer for a linearizable read's read index
 * (raft_node_config_t.read_ready, posted to the loop): submit the read,
 * or answer it Unavailable. */
void svc_kv_read_ready(server_t *s, uint64_t rctx, int ok);
/* Drops the calls still waiting (loop stopped). */
void svc_kv_stop(server_t *s);
void svc_maintenance_register(server_t *s);
/* Maintenance (svc_maintenance.c): init before the store opens (parses the
 * auto-compaction flags; -1 logged on a bad value), register after the
 * replay (methods, auto-compaction timer), stop after the loop (joins a
 * defragment in progress: before the store closes). */
int svc_maintenance_init(server_t *s);
void svc_maintenance_stop(server_t *s);
/* Loop thread: a write was refused by the space quota; proposes this
 * member's NOSPACE alarm unless it is active (etcd's quotaAlarmer). */
void svc_maintenance_raise_nospace(server_t *s);
/* Proposes the activation of alarm type (Etcdserverpb__AlarmType) for
 * member_id, nobody waiting for the answer. 0, or -1 (not proposed now). */
int svc_maintenance_propose_alarm(server_t *s, int type, uint64_t member_id);
/* Any thread: the active alarms (kv_alarm.h), at most max copied; returns
 * how many there are. */
struct kv_alarm;
size_t svc_maintenance_alarms(server_t *s, struct kv_alarm *out, size_t max);
/* Corruption checks (svc_corrupt.c, etcd 3.4's etcdserver/corrupt.go):
 * init before the peer transport starts (registers the answer to a peer's
 * HashKV request; -1 out of memory); the initial check after the store,
 * the member table and the transport are up and before Raft starts
 * (--experimental-initial-corrupt-check on a member of an earlier run: 0
 * passed or not asked for, -1 "found data inconsistency with peers" or no
 * hash of our own, logged: the member must not start); start after Raft
 * started (--experimental-corrupt-check-time: the periodic check's thread;
 * -1 logged); stop before the transport stops (joins the thread). */
int svc_corrupt_init(server_t *s);
int svc_corrupt_initial_check(server_t *s);
int svc_corrupt_start(server_t *s);
void svc_corrupt_stop(server_t *s);
void svc_cluster_register(server_t *s);
/* etcd's Lock and Election services (svc_lock.c, svc_election.c) on the
 * in-process client (local_client.h). stop (after the loop, before the
 * KV, Lease and Watch services stop) drops the calls in progress, then
 * local_client_stop (local_client.h) their requests. */
void svc_lock_register(server_t *s);
void svc_lock_stop(server_t *s);
void svc_election_register(server_t *s);
void svc_election_stop(server_t *s);
/* Maintenance.Snapshot (svc_snapshot.c); stop waits for its workers. */
void svc_snapshot_register(server_t *s);
void svc_snapshot_stop(server_t *s);

/* Services with state have three phases, called by server_run():
 *   init  (before the store opens): allocate, set store hooks in *mopts;
 *   start (store open, Raft running, loop not yet): load state, register
 *         methods, start timers;
 *   stop  (loop stopped, Raft stopped): free everything. Safe after a failed
 *         or missing init.
 * Each returns 0 or -1 (logged). */
/* Loop thread: the hub's counters (watch_hub.h) for /metrics; -1 before start. */
struct watch_hub_stats;
int svc_watch_stats(server_t *s, struct watch_hub_stats *out);
int svc_watch_init(server_t *s, mvcc_options_t *mopts);
int svc_watch_start(server_t *s);
void svc_watch_stop(server_t *s);
int svc_lease_init(server_t *s, mvcc_options_t *mopts);
int svc_lease_start(server_t *s);
void svc_lease_stop(server_t *s);
int svc_auth_init(server_t *s, mvcc_options_t *mopts);
int svc_auth_start(server_t *s);
void svc_auth_stop(server_t *s);
/* --listen-metrics-urls (svc_metrics.c): /health and /metrics over
 * HTTP/1.1. start listens on every metrics URL (0, or -1 logged). */
int svc_metrics_start(server_t *s);
void svc_metrics_stop(server_t *s);
/* /health and /metrics for any HTTP listener: 1 and r filled when req->path
 * is one of them, else 0. After svc_metrics_start. */
struct http1_request;
struct http1_reply;
int svc_metrics_serve(server_t *s, const struct http1_request *req, struct http1_reply *r);
/* The client port's plain HTTP (svc_gateway.c): /health, /version,
 * /metrics and etcd's grpc-gateway JSON API under /v3/ (and /v3beta/),
 * routed to the registered gRPC methods. Call before the client listeners
 * open. 0 or -1 (logged). */
int svc_gateway_start(server_t *s);
/* Drops the gateway requests still waiting for a stream (loop stopped,
 * before the gRPC server and its connections are freed). */
void svc_gateway_stop(server_t *s);

/* Raft thread, for every committed entry before the KV store sees it:
 * returns 1 if req belongs to this state machine and was applied at index
 * (res filled, the applied index recorded in the same LevelDB write), 0 if
 * req is not its kind, -1 on a storage failure. */
int svc_lease_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                    const kv_header_info_t *hdr, kv_result_t *res);
int svc_auth_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                   const kv_header_info_t *hdr, kv_result_t *res);
/* The same contract, in etcd's order of appliers (capped, auth, quota),
 * registered before the others: svc_maintenance_apply takes alarm requests
 * and the writes an active alarm refuses (only the applied index moves);
 * svc_auth_check_apply refuses an entry whose identity may not (or no
 * longer) do it (storage/auth/auth_request.h; only the applied index moves);
 * svc_maintenance_quota_apply applies a Put/Txn/LeaseGrant over the quota
 * (applied, answered ErrNoSpace, the alarm raised). */
int svc_maintenance_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                          const kv_header_info_t *hdr, kv_result_t *res);
int svc_auth_check_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                         const kv_header_info_t *hdr, kv_result_t *res);
int svc_maintenance_quota_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                                const kv_header_info_t *hdr, kv_result_t *res);

#endif
