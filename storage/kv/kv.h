/*
 * kv.h: the etcd KV state machine on top of the MVCC store.
 *
 * The write side applies committed Raft entries (kshim.InternalRequest) and
 * the read side answers Range and read-only Txn requests; both produce packed
 * etcd protobuf responses with full response headers, including the headers
 * of nested Txn responses. The service layer does no KV logic of its own.
 *
 * Threads: kv_apply() and mvcc_sync() only on the apply (Raft) thread;
 * kv_range(), kv_txn_readonly() and the mvcc_* getters on any thread
 * (LevelDB snapshots give each read a consistent view).
 */
#ifndef KSHIM_KV_H
#define KSHIM_KV_H

#include <stddef.h>
#include <stdint.h>

#include "kshim.pb-c.h"
#include "rpc.pb-c.h"
#include "kv.pb-c.h"
#include "mvcc.h"

typedef struct kv_header_info {
    uint64_t cluster_id;
    uint64_t member_id;
    uint64_t raft_term;
} kv_header_info_t;

/* The outcome of one request. On success code == 0 and resp/resp_len hold the
 * packed response message (malloc'd; the caller frees it). On failure code is
 * a gRPC status code and message etcd's exact error text (e.g. code 11,
 * "etcdserver: mvcc: required revision has been compacted"). */
typedef struct kv_result {
    int code;
    char message[160];
    uint8_t *resp;
    size_t resp_len;
    int64_t revision;     /* store revision after the request */
    int64_t physical_rev; /* a Compact with physical: answer only once
                              * mvcc_compacted_through() >= this (0: now) */
    int no_space;         /* refused by the space quota: the member raises
                           * the NOSPACE alarm (etcd's quotaAlarmer) */
} kv_result_t;

void kv_result_clear(kv_result_t *res);

/* Validation done before proposing, as etcd's API layer does: too many txn
 * ops, duplicate keys in a txn, empty key, bad ranges. Returns 0 or fills
 * res->code/message. */
int kv_validate_put(mvcc_t *m, const Etcdserverpb__PutRequest *req, kv_result_t *res);
int kv_validate_delete(mvcc_t *m, const Etcdserverpb__DeleteRangeRequest *req, kv_result_t *res);
int kv_validate_txn(mvcc_t *m, const Etcdserverpb__TxnRequest *req, kv_result_t *res);
int kv_validate_range(mvcc_t *m, const Etcdserverpb__RangeRequest *req, kv_result_t *res);

/* Apply thread. Apply the committed entry at raft index `index` (req may be
 * NULL for an empty entry: only the applied index moves). Entries at or below
 * the applied index are skipped (return 1, res untouched). Otherwise returns
 * 0 and fills res (success or an etcd error), or -1 on a storage error (a
 * failed LevelDB read or write): then nothing of the entry is recorded, the
 * applied index does not move, and the caller must stop applying
 * (fail-stop). Each call is one LevelDB write batch that includes the applied
 * index, or joins the current write group. */
int kv_apply(mvcc_t *m, uint64_t index, const Kshim__InternalRequest *req, const kv_header_info_t *hdr,
             kv_result_t *res);

/* etcd's quota cost of a request (quota.go): 256 + key + value per put, the
 * larger branch of a Txn, 64 for a LeaseGrant, 0 for anything else. */
uint64_t kv_request_cost(const Kshim__InternalRequest *req);

/* Any thread. */
int kv_range(mvcc_t *m, const Etcdserverpb__RangeRequest *req, const kv_header_info_t *hdr, kv_result_t *res);
/* True if every op (recursively) is a Range: such a Txn is served as a read. */
int kv_txn_is_readonly(const Etcdserverpb__TxnRequest *req);
int kv_txn_readonly(mvcc_t *m, const Etcdserverpb__TxnRequest *req, const kv_header_info_t *hdr,
                    kv_result_t *res);

#endif
