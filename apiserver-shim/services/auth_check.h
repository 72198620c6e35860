/*
 * auth_check.h: who is calling and may they do this: the identity and
 * permission checks every etcd service runs before serving or proposing a
 * request (etcd's AuthInfoFromCtx + auth store Is*Permitted). Writes are
 * checked again at apply (svc_auth_check_apply, storage/auth/auth_request.h)
 * with the identity the proposal carries.
 *
 * Identity (auth_identity): the "token" gRPC metadata (else "authorization",
 * as etcd) when present (an unknown, expired or forged token is
 * Unauthenticated "etcdserver: invalid auth token", even while auth is
 * disabled, as etcd does), else the CN of the verified client certificate
 * when --client-cert-auth is on ("" for one without a CN; not for requests
 * carrying grpcgateway-accept), else none.
 *
 * Every check returns a grpc_status_t: GRPC_OK, or the etcd error with
 * *errmsg pointing at etcd's text (static storage). Typical use:
 *     const char *msg;
 *     grpc_status_t st = auth_check_range(s, call, key, klen, end, elen,
 *                                         AUTH_PERM_READ, &msg);
 *     if (st != GRPC_OK) { grpc_call_finish(call, st, msg); return; }
 * While auth is disabled and no token is sent every check is one flag read.
 * Loop thread only.
 */
#ifndef KSHIM_AUTH_CHECK_H
#define KSHIM_AUTH_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth_perm.h"
#include "auth_store.h"
#include "auth_token.h"
#include "server_internal.h"

#define AUTH_USER_MAX 1024 /* longer user names (etcd has no limit) cannot authenticate */

typedef struct auth_identity {
    char user[AUTH_USER_MAX]; /* "" when the caller has no identity */
    uint64_t revision;        /* auth revision the identity was issued at; 0 without */
} auth_identity_t;

/* Resolves the caller's identity (see above). */
grpc_status_t auth_identity(server_t *s, grpc_call_t *call, auth_identity_t *id, const char **errmsg);

/* etcd's IsRangePermitted / IsPutPermitted / IsDeleteRangePermitted:
 * want is AUTH_PERM_READ or AUTH_PERM_WRITE on [key, end) (end_len 0: the
 * single key, "\0": every key from key). Errors: "etcdserver: user name is
 * empty" (no identity), "etcdserver: permission denied", "etcdserver:
 * revision of auth store is old", "etcdserver: invalid auth token". */
grpc_status_t auth_check_range(server_t *s, grpc_call_t *call, const uint8_t *key, size_t key_len,
                               const uint8_t *end, size_t end_len, int want, const char **errmsg);

/* Range: read on [key, end), then auth_check_read_revision. */
grpc_status_t auth_check_range_read(server_t *s, grpc_call_t *call, const uint8_t *key, size_t key_len,
                                    const uint8_t *end, size_t end_len, const char **errmsg);

/* Put: write on key, plus read when prev_kv is asked. *who gets the
 * identity the check was made with (user "" and revision 0 when auth is
 * off and no token was sent): the proposal carries it, and the entry is
 * checked again with it at apply (auth_request.h). */
grpc_status_t auth_check_put(server_t *s, grpc_call_t *call, const Etcdserverpb__PutRequest *req,
                             auth_identity_t *who, const char **errmsg);
/* DeleteRange: write on the range, plus read when prev_kv is asked. */
grpc_status_t auth_check_delete(server_t *s, grpc_call_t *call, const Etcdserverpb__DeleteRangeRequest *req,
                                auth_identity_t *who, const char **errmsg);
/* Txn: read for every compare, each op's permission in success and failure,
 * nested txns included. One refusal refuses the whole txn. A read-only txn
 * then gets auth_check_read_revision. */
grpc_status_t auth_check_txn(server_t *s, grpc_call_t *call, const Etcdserverpb__TxnRequest *req,
                             auth_identity_t *who, const char **errmsg);

/* etcd's IsAdminPermitted (root role): Defragment, Hash*, Snapshot,
 * Member*, auth management. */
grpc_status_t auth_check_admin(server_t *s, grpc_call_t *call, const char **errmsg);

/* The same check as etcd 3.4's maintenance server does it (Defragment,
 * Hash, HashKV, Snapshot): its auth errors reach the client untranslated,
 * as code Unknown with the auth package's text ("auth: permission denied",
 * "auth: user name is empty", "auth: invalid auth token", ...). */
grpc_status_t auth_check_admin_maintenance(server_t *s, grpc_call_t *call, const char **errmsg);

/* auth_check_token with the error untranslated, as etcd 3.4's Alarm (a
 * Raft request whose AuthInfoFromCtx error the maintenance server returns
 * as is): Unknown "auth: invalid auth token". */
grpc_status_t auth_check_token_maintenance(server_t *s, grpc_call_t *call, const char **errmsg);

/* Only validates a token if one is sent (etcd's Compact and other requests
 * that carry the identity without checking it). */
grpc_status_t auth_check_token(server_t *s, grpc_call_t *call, const char **errmsg);

/* Same checks with an identity already resolved (for services that check
 * several ranges, e.g. Watch creation or LeaseRevoke's attached keys). */
grpc_status_t auth_check_range_as(server_t *s, const auth_identity_t *id, const uint8_t *key, size_t key_len,
                                  const uint8_t *end, size_t end_len, int want, const char **errmsg);
grpc_status_t auth_check_admin_as(server_t *s, const auth_identity_t *id, const char **errmsg);

/* etcd's doSerialize() after a Range or read-only Txn: an identity issued
 * at another auth revision than the current one (a JWT's "revision" claim,
 * older or newer) is refused with "etcdserver: revision of auth store is
 * old", after the permission checks passed. */
grpc_status_t auth_check_read_revision(server_t *s, const auth_identity_t *id, const char **errmsg);

/* A refused Watch create's cancel_reason as etcd 3.4 writes it: the gRPC
 * error's text ("rpc error: code = PermissionDenied desc = etcdserver:
 * permission denied"); errmsg is the refusal's message. */
const char *auth_watch_cancel_reason(const char *errmsg);

bool auth_is_enabled(server_t *s);

/* Provided by svc_auth.c: the store (NULL before svc_auth_start) and token
 * resolution (AUTH_TOKEN_* result, info filled on success). */
auth_store_t *svc_auth_store(server_t *s);
int svc_auth_token_info(server_t *s, const char *token, auth_token_info_t *info);

#endif
