/*
 * lease.h: etcd's lessor (lease/lessor.go) as a replicated state machine
 * beside the MVCC keys, plus the in-memory expiry schedule the leader uses.
 *
 * Persistent state (side tables of the MVCC LevelDB, written in the same
 * batch as the key changes and the applied index; their encoding is the
 * store's, mvcc/lease_keys.h): the 'L' lease records and the 'M' table of
 * attached keys, which kv.c keeps in step with every Put/Delete.
 * LeaseRevoke deletes every attached key in one revision through the MVCC
 * write txn, so the DELETE events (with prev_kv) reach the on_events hook.
 *
 * In memory (guarded by one mutex: applies run on the Raft thread, renewals
 * and expiry scans on the loop thread): every lease's TTL and its expiry
 * deadline in monotonic milliseconds, and a min-heap of "when to look at
 * this lease next" for the expiry scan. Until lessor_promote() (becoming
 * leader) leases never expire, exactly as etcd's non-primary lessor.
 *
 * Time is always passed in (now_ms, monotonic), so tests drive the clock.
 */
#ifndef KSHIM_LEASE_H
#define KSHIM_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "lease_keys.h"
#include "mvcc.h"

/* etcd's lease.MaxLeaseTTL */
#define LEASE_MAX_TTL 9000000000LL
/* etcd's leaseRevokeRate (revokes per second the leader proposes) */
#define LEASE_REVOKE_RATE 1000
/* etcd's expiredLeaseRetryInterval: an expired lease whose revoke has not
 * been applied is offered for revocation again after this long. */
#define LEASE_RETRY_MS 3000

enum {
    LEASE_OK = 0,
    LEASE_E_IO = -1,            /* storage failure (Internal) */
    LEASE_E_NOT_FOUND = -2,     /* NotFound "etcdserver: requested lease not found" */
    LEASE_E_EXISTS = -3,        /* FailedPrecondition "etcdserver: lease already exists" */
    LEASE_E_TTL_TOO_LARGE = -4, /* OutOfRange "etcdserver: too large lease TTL" */
};

typedef struct lessor lessor_t;

/* Loads every lease record of m. min_ttl: etcd's minLeaseTTL in seconds
 * (grants below it are raised to it). Returns LEASE_OK or LEASE_E_IO. */
int lessor_open(mvcc_t *m, int64_t min_ttl, lessor_t **out);
void lessor_free(lessor_t *l);

/* Is the request one this state machine applies (grant/revoke/checkpoint)? */
int lessor_is_request(const Kshim__InternalRequest *req);

/* Apply thread. Applies a lease request committed at `index`: returns 0 if
 * req is not a lease request, 1 if applied (res filled: packed response or
 * etcd's error; entries at or below the applied index are skipped and res
 * left empty), -1 on a storage failure (res holds an internal error). */
int lessor_apply(lessor_t *l, uint64_t index, const Kshim__InternalRequest *req, const kv_header_info_t *hdr,
                 kv_result_t *res, uint64_t now_ms);

/* Any thread. */
int lessor_exists(lessor_t *l, int64_t id);
size_t lessor_count(lessor_t *l);
/* etcd's Promote(extend): this member became leader; every lease now
 * expires extend_ms + its TTL from now (remaining TTL if checkpointed), and
 * when 1000 or more leases would pile up, later ones are spread so that at
 * most 750 expire per second. */
void lessor_promote(lessor_t *l, uint64_t now_ms, uint64_t extend_ms);
int lessor_is_primary(lessor_t *l);
/* etcd's Demote: this member stopped leading; no lease expires here any
 * more (every deadline is "never") until the next promote. */
void lessor_demote(lessor_t *l);
/* Replaces every lease by the store's lease records (a Raft snapshot
 * replaced the store). A primary lessor stays primary, promoted again with
 * now_ms and extend_ms. LEASE_OK or LEASE_E_IO (the old table is kept). */
int lessor_reload(lessor_t *l, uint64_t now_ms, uint64_t extend_ms);
/* KeepAlive: resets the deadline to now + TTL and gives the TTL. An unknown
 * lease, or one already expired (its revoke is on its way), is
 * LEASE_E_NOT_FOUND. */
int lessor_renew(lessor_t *l, int64_t id, uint64_t now_ms, int64_t *ttl);
/* TimeToLive: granted TTL and whole seconds left (truncated toward zero,
 * like Go's int64(d.Seconds())); LEASE_E_NOT_FOUND if unknown. */
int lessor_lookup(lessor_t *l, int64_t id, uint64_t now_ms, int64_t *granted_ttl, int64_t *remaining_s);
/* Up to max ids of leases whose deadline has passed (primary only); each is
 * re-offered after LEASE_RETRY_MS if its revoke has not been applied by then. */
size_t lessor_take_expired(lessor_t *l, uint64_t now_ms, int64_t *ids, size_t max);
/* Every lease id ordered by deadline (malloc'd array, caller frees). */
int lessor_list(lessor_t *l, int64_t **ids, size_t *n);

/* gRPC code and etcd's message for a LEASE_E_* value. */
int lease_error_code(int err);
const char *lease_error_message(int err);

#endif
