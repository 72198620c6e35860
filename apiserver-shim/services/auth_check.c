/*
 * auth_check.c: identity resolution and permission checks for the services
 * (see auth_check.h). The rules are the auth store's
 * (storage/auth/auth_store.c); this file only finds out who is asking and maps
 * the store's answer to a gRPC status and etcd's text.
 */
#include "auth_check.h"

#include <stdio.h>
#include <string.h>

#include "auth_request.h"
#include "auth_token.h"
#include "kv.h"

static const char MSG_INVALID_TOKEN[] = "etcdserver: invalid auth token";

bool auth_is_enabled(server_t *s) {
    auth_store_t *as = svc_auth_store(s);
    return as && auth_store_enabled(as);
}

static grpc_status_t from_store(int err, const char **errmsg) {
    if (err == AUTH_OK) return GRPC_OK;
    *errmsg = auth_store_strerror(err);
    return (grpc_status_t)auth_store_code(err);
}

/* etcd reads the token from the "token" metadata, else "authorization"
 * (its swagger name, which gRPC clients can send as well). */
static const char *call_token(grpc_call_t *call) {
    const char *token = grpc_call_metadata(call, "token");
    return token ? token : grpc_call_metadata(call, "authorization");
}

grpc_status_t auth_identity(server_t *s, grpc_call_t *call, auth_identity_t *id, const char **errmsg) {
    id->user[0] = '\0';
    id->revision = 0;
    auth_store_t *as = svc_auth_store(s);
    if (!as) return GRPC_OK;
    const char *token = call_token(call);
    if (token) {
        auth_token_info_t info = {0};
        if (svc_auth_token_info(s, token, &info) != AUTH_TOKEN_OK) {
            *errmsg = MSG_INVALID_TOKEN;
            return GRPC_UNAUTHENTICATED;
        }
        snprintf(id->user, sizeof id->user, "%s", info.user ? info.user : "");
        id->revision = info.revision;
        auth_token_info_clear(&info);
        return GRPC_OK;
    }
    /* etcd's AuthInfoFromTLS: the CN as it is ("" for a certificate without
     * one: a user nobody can be), never for a gRPC-gateway request. */
    if (s->cfg->client_cert_auth && !grpc_call_metadata(call, "grpcgateway-accept")) {
        const char *cn = grpc_call_peer_cn(call);
        if (cn && strlen(cn) < sizeof id->user) {
            snprintf(id->user, sizeof id->user, "%s", cn);
            id->revision = auth_store_revision(as);
        }
    }
    return GRPC_OK;
}

/* Resolves the identity, or answers OK at once when auth is off and no
 * token was sent (the common fast path). *skip is set when no check is
 * needed. */
static grpc_status_t resolve(server_t *s, grpc_call_t *call, auth_identity_t *id, int *skip,
                             const char **errmsg) {
    *skip = 0;
    if (!auth_is_enabled(s) && !call_token(call)) {
        *skip = 1;
        return GRPC_OK;
    }
    return auth_identity(s, call, id, errmsg);
}

grpc_status_t auth_check_range_as(server_t *s, const auth_identity_t *id, const uint8_t *key, size_t key_len,
                                  const uint8_t *end, size_t end_len, int want, const char **errmsg) {
    auth_store_t *as = svc_auth_store(s);
    if (!as) return GRPC_OK;
    return from_store(auth_store_check_range(as, id->user, id->revision, want, key, key_len, end, end_len),
                      errmsg);
}

grpc_status_t auth_check_admin_as(server_t *s, const auth_identity_t *id, const char **errmsg) {
    auth_store_t *as = svc_auth_store(s);
    if (!as) return GRPC_OK;
    return from_store(auth_store_check_admin(as, id->user), errmsg);
}

grpc_status_t auth_check_range(server_t *s, grpc_call_t *call, const uint8_t *key, size_t key_len,
                               const uint8_t *end, size_t end_len, int want, const char **errmsg) {
    auth_identity_t id;
    int skip;
    grpc_status_t st = resolve(s, call, &id, &skip, errmsg);
    if (st != GRPC_OK || skip) return st;
    return auth_check_range_as(s, &id, key, key_len, end, end_len, want, errmsg);
}

grpc_status_t auth_check_range_read(server_t *s, grpc_call_t *call, const uint8_t *key, size_t key_len,
                                    const uint8_t *end, size_t end_len, const char **errmsg) {
    auth_identity_t id;
    int skip;
    grpc_status_t st = resolve(s, call, &id, &skip, errmsg);
    if (st != GRPC_OK || skip) return st;
    st = auth_check_range_as(s, &id, key, key_len, end, end_len, AUTH_PERM_READ, errmsg);
    return st != GRPC_OK ? st : auth_check_read_revision(s, &id, errmsg);
}

/* The request-level rules are the store's (auth_request.h): the same ones
 * run again at apply with the identity the entry carries. */
static grpc_status_t check_request_as(server_t *s, const auth_identity_t *id,
                                      const Etcdserverpb__PutRequest *put,
                                      const Etcdserverpb__DeleteRangeRequest *del,
                                      const Etcdserverpb__TxnRequest *txn, const char **errmsg) {
    auth_store_t *as = svc_auth_store(s);
    if (!as) return GRPC_OK;
    int err = put   ? auth_request_check_put(as, id->user, id->revision, put, 1)
              : del ? auth_request_check_delete(as, id->user, id->revision, del, 0)
                    : auth_request_check_txn(as, id->user, id->revision, txn);
    return from_store(err, errmsg);
}

/* Resolves the caller into *who (empty when auth is off and no token was
 * sent) and checks one write request. */
static grpc_status_t check_write(server_t *s, grpc_call_t *call, const Etcdserverpb__PutRequest *put,
                                 const Etcdserverpb__DeleteRangeRequest *del,
                                 const Etcdserverpb__TxnRequest *txn, auth_identity_t *who,
                                 const char **errmsg) {
    int skip;
    who->user[0] = '\0';
    who->revision = 0;
    grpc_status_t st = resolve(s, call, who, &skip, errmsg);
    if (st != GRPC_OK || skip) return st;
    return check_request_as(s, who, put, del, txn, errmsg);
}

grpc_status_t auth_check_put(server_t *s, grpc_call_t *call, const Etcdserverpb__PutRequest *req,
                             auth_identity_t *who, const char **errmsg) {
    return check_write(s, call, req, NULL, NULL, who, errmsg);
}

grpc_status_t auth_check_delete(server_t *s, grpc_call_t *call, const Etcdserverpb__DeleteRangeRequest *req,
                                auth_identity_t *who, const char **errmsg) {
    return check_write(s, call, NULL, req, NULL, who, errmsg);
}

grpc_status_t auth_check_txn(server_t *s, grpc_call_t *call, const Etcdserverpb__TxnRequest *req,
                             auth_identity_t *who, const char **errmsg) {
    grpc_status_t st = check_write(s, call, NULL, NULL, req, who, errmsg);
    if (st == GRPC_OK && kv_txn_is_readonly(req)) st = auth_check_read_revision(s, who, errmsg);
    return st;
}

grpc_status_t auth_check_admin(server_t *s, grpc_call_t *call, const char **errmsg) {
    auth_identity_t id;
    int skip;
    grpc_status_t st = resolve(s, call, &id, &skip, errmsg);
    if (st != GRPC_OK || skip) return st;
    return auth_check_admin_as(s, &id, errmsg);
}

grpc_status_t auth_check_token(server_t *s, grpc_call_t *call, const char **errmsg) {
    auth_identity_t id;
    int skip;
    return resolve(s, call, &id, &skip, errmsg);
}

/* etcd's auth package errors, as the maintenance server leaks them. */
static const char *const raw_auth_errors[][2] = {
    {"etcdserver: user name is empty", "auth: user name is empty"},
    {"etcdserver: user name not found", "auth: user not found"},
    {"etcdserver: permission denied", "auth: permission denied"},
    {"etcdserver: invalid auth token", "auth: invalid auth token"},
};

static grpc_status_t untranslated(grpc_status_t st, const char **errmsg) {
    if (st == GRPC_OK) return st;
    for (size_t i = 0; i < sizeof raw_auth_errors / sizeof raw_auth_errors[0]; i++)
        if (strcmp(*errmsg, raw_auth_errors[i][0]) == 0) {
            *errmsg = raw_auth_errors[i][1];
            return GRPC_UNKNOWN;
        }
    return st;
}

grpc_status_t auth_check_read_revision(server_t *s, const auth_identity_t *id, const char **errmsg) {
    auth_store_t *as = svc_auth_store(s);
    /* etcd checks this even while auth is disabled (a JWT still resolves). */
    if (!as || id->revision == 0 || id->revision == auth_store_revision(as)) return GRPC_OK;
    return from_store(AUTH_E_OLD_REVISION, errmsg);
}

const char *auth_watch_cancel_reason(const char *errmsg) {
    static const char *const reasons[][2] = {
        {"etcdserver: invalid auth token",
         "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"},
        {"etcdserver: revision of auth store is old",
         "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old"},
        {"etcdserver: user name is empty",
         "rpc error: code = InvalidArgument desc = etcdserver: user name is empty"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (errmsg && strcmp(errmsg, reasons[i][0]) == 0) return reasons[i][1];
    return "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
}

grpc_status_t auth_check_admin_maintenance(server_t *s, grpc_call_t *call, const char **errmsg) {
    return untranslated(auth_check_admin(s, call, errmsg), errmsg);
}

grpc_status_t auth_check_token_maintenance(server_t *s, grpc_call_t *call, const char **errmsg) {
    return untranslated(auth_check_token(s, call, errmsg), errmsg);
}
