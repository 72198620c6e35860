/*
 * conc.h: what etcd's Lock and Election servers share from clientv3's
 * concurrency package, on the in-process client (local_client.h):
 * the waiter's key (prefix + lease id in hex), the requests that read the
 * oldest or newest key under a prefix, the session's lease grant (lease 0:
 * a new 60 s lease, concurrency.NewSession), and waitDeletes (wait until
 * no key under the prefix with a create revision <= max is left).
 * Loop thread only.
 */
#ifndef KSHIM_CONC_H
#define KSHIM_CONC_H

#include "local_client.h"
#include "rpc.pb-c.h"

#define CONC_SESSION_TTL 60 /* concurrency.defaultSessionTTL */

/* name + "/" (etcd: pfx), malloc'd; NULL: no memory. */
uint8_t *conc_prefix(const uint8_t *name, size_t n, size_t *len);
/* prefix + the lease id as Go's %x prints an int64 (a minus sign for a
 * negative one), malloc'd; NULL: no memory. */
uint8_t *conc_key(const uint8_t *pfx, size_t n, int64_t lease, size_t *len);

/* A Range of the prefix (end: n bytes of room) for clientv3's
 * WithFirstCreate (descend = 0) or WithLastCreate (descend = 1): sorted by
 * create revision, limit 1. */
void conc_range_edge(Etcdserverpb__RangeRequest *r, const uint8_t *pfx, size_t n, uint8_t *end, int descend);
/* Compare create_revision(key) == rev. */
void conc_cmp_create(Etcdserverpb__Compare *c, const uint8_t *key, size_t n, int64_t rev);

/* Starts a LeaseGrant of CONC_SESSION_TTL (as lc_unary). */
void conc_grant(server_t *s, const lc_ident_t *id, lc_done_fn done, void *arg, lc_call_t **slot);
/* The id of a LeaseGrantResponse, or 0 with *st / *msg set. */
int64_t conc_granted(const uint8_t *resp, size_t len, grpc_status_t *st, const char **msg);

/* A header copied out of a response (clusters ids, revision, term). */
typedef struct conc_header {
    uint64_t cluster_id, member_id, raft_term;
    int64_t revision;
} conc_header_t;
void conc_header_copy(conc_header_t *out, const Etcdserverpb__ResponseHeader *h);
/* h filled from c (the caller's storage, for a response). */
void conc_header_fill(Etcdserverpb__ResponseHeader *h, const conc_header_t *c);

/* waitDeletes: done(OK, header of the Range that found none) or an error
 * (status as the Lock/Election servers answer it). The waiter is freed
 * before done runs; conc_wait_cancel before then frees it without done. */
typedef struct conc_wait conc_wait_t;
typedef void (*conc_wait_fn)(void *arg, grpc_status_t st, const char *msg, const conc_header_t *hdr);
/* id is borrowed: it must outlive the waiter. NULL: no memory. */
conc_wait_t *conc_wait_start(server_t *s, const lc_ident_t *id, const uint8_t *pfx, size_t n,
                             int64_t max_create_rev, conc_wait_fn done, void *arg);
void conc_wait_cancel(conc_wait_t *w);

/* Packs m and finishes call OK with it (or ResourceExhausted). */
void conc_reply(grpc_call_t *call, const ProtobufCMessage *m);

#define CONC_KV_RANGE "/etcdserverpb.KV/Range"
#define CONC_KV_TXN "/etcdserverpb.KV/Txn"
#define CONC_KV_DELETE "/etcdserverpb.KV/DeleteRange"
#define CONC_WATCH "/etcdserverpb.Watch/Watch"
#define CONC_LEASE_GRANT "/etcdserverpb.Lease/LeaseGrant"

#endif
