/*
 * auth_request.h: the permission checks of whole etcd requests, etcd's
 * authApplierV3 (etcdserver/apply_auth.go) on top of the auth store's
 * single-range checks (auth_store_check_range / _check_admin).
 *
 * The same rules run twice, as in etcd: before proposing, with the caller's
 * identity (apiserver-shim/services/auth_check.c), and again at apply with
 * the identity the entry carries (RequestHeader.username / auth_revision,
 * auth_request_check). Between the two, an auth change may have been
 * applied (a role revoked while the write was on its way, a write checked
 * on a follower that had not applied the revoke yet): the store's auth
 * revision is then newer than the entry's and the write is refused with
 * "etcdserver: revision of auth store is old" (AUTH_E_OLD_REVISION, which
 * clientv3 answers by refreshing its token and retrying), never applied
 * with permissions it no longer has. Every member decides alike: the store
 * and the entry are the same everywhere.
 *
 * Thread-safe (the store's own lock); return AUTH_OK or the first refusal,
 * in etcd's order.
 */
#ifndef KSHIM_AUTH_REQUEST_H
#define KSHIM_AUTH_REQUEST_H

#include <stdint.h>

#include "auth_store.h"

/* Put: write on the key, then read when prev_kv is asked (prev_kv_read 0:
 * inside a Txn, where etcd checks the write only). */
int auth_request_check_put(auth_store_t *as, const char *user, uint64_t rev,
                           const Etcdserverpb__PutRequest *r, int prev_kv_read);
/* DeleteRange: write on the range and read when prev_kv is asked (etcd
 * checks write first, the reverse inside a Txn: in_txn). */
int auth_request_check_delete(auth_store_t *as, const char *user, uint64_t rev,
                              const Etcdserverpb__DeleteRangeRequest *r, int in_txn);
/* Txn: read for every compare, then each op of success and failure
 * (nested txns included). */
int auth_request_check_txn(auth_store_t *as, const char *user, uint64_t rev,
                           const Etcdserverpb__TxnRequest *r);

/* At apply: req as its header says it was checked. Put, DeleteRange and
 * Txn get their key checks at the header's auth revision; the auth
 * management requests etcd's needAdminPermission names get the admin
 * check (the root role, no revision). Every other request: AUTH_OK, and
 * so is an entry whose header lacks auth_checked (proposed by a kshimd from
 * before this check: applied as it was checked then). */
int auth_request_check(auth_store_t *as, const Kshim__InternalRequest *req);

/* Apply thread, entry index of m (the store the auth store lives in):
 * auth_request_check, plus for a LeaseRevoke that carries its identity
 * write permission on every key attached to the lease (etcd's
 * checkLeasePuts; read from m, after writing the open group; a revoke the
 * leader proposes for an expired lease has no auth_checked and passes), and when it refuses, the refusal as the entry's
 * outcome: only the applied index is recorded (in the open write group),
 * res holds etcd's code and text. Returns 1 (refused), 0 (permitted, or an
 * entry at or below the applied index: replay, the appliers skip it), -1
 * when the index cannot be recorded (storage failure: stop applying). */
int auth_request_refuse(auth_store_t *as, mvcc_t *m, uint64_t index, const Kshim__InternalRequest *req,
                        kv_result_t *res);

#endif
