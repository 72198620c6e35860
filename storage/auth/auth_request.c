/*
 * auth_request.c: whole-request permission checks (see auth_request.h):
 * which ranges of a request need which permission, in etcd's order
 * (apply_auth.go's Put, DeleteRange, checkTxnAuth, needAdminPermission).
 */
#include "auth_request.h"

#include <stdio.h>
#include <string.h>

#include "auth_perm.h"
#include "lease_keys.h"
#include "mvcc.h"

static int check_key(auth_store_t *as, const char *user, uint64_t rev, int want, ProtobufCBinaryData key,
                     ProtobufCBinaryData end) {
    return auth_store_check_range(as, user, rev, want, key.data, key.len, end.data, end.len);
}

static const ProtobufCBinaryData NO_END = {0, NULL};

int auth_request_check_put(auth_store_t *as, const char *user, uint64_t rev,
                           const Etcdserverpb__PutRequest *r, int prev_kv_read) {
    int rc = check_key(as, user, rev, AUTH_PERM_WRITE, r->key, NO_END);
    if (rc == AUTH_OK && prev_kv_read && r->prev_kv)
        rc = check_key(as, user, rev, AUTH_PERM_READ, r->key, NO_END);
    return rc;
}

int auth_request_check_delete(auth_store_t *as, const char *user, uint64_t rev,
                              const Etcdserverpb__DeleteRangeRequest *r, int in_txn) {
    int rc = AUTH_OK;
    if (in_txn && r->prev_kv) rc = check_key(as, user, rev, AUTH_PERM_READ, r->key, r->range_end);
    if (rc == AUTH_OK) rc = check_key(as, user, rev, AUTH_PERM_WRITE, r->key, r->range_end);
    if (rc == AUTH_OK && !in_txn && r->prev_kv)
        rc = check_key(as, user, rev, AUTH_PERM_READ, r->key, r->range_end);
    return rc;
}

static int check_ops(auth_store_t *as, const char *user, uint64_t rev, Etcdserverpb__RequestOp **ops,
                     size_t n) {
    int rc = AUTH_OK;
    for (size_t i = 0; rc == AUTH_OK && i < n; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            if (op->request_range)
                rc = check_key(as, user, rev, AUTH_PERM_READ, op->request_range->key,
                               op->request_range->range_end);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            if (op->request_put) rc = auth_request_check_put(as, user, rev, op->request_put, 0);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            if (op->request_delete_range)
                rc = auth_request_check_delete(as, user, rev, op->request_delete_range, 1);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
            if (op->request_txn) rc = auth_request_check_txn(as, user, rev, op->request_txn);
            break;
        default: break;
        }
    }
    return rc;
}

int auth_request_check_txn(auth_store_t *as, const char *user, uint64_t rev,
                           const Etcdserverpb__TxnRequest *r) {
    int rc = AUTH_OK;
    for (size_t i = 0; rc == AUTH_OK && i < r->n_compare; i++)
        rc = check_key(as, user, rev, AUTH_PERM_READ, r->compare[i]->key, r->compare[i]->range_end);
    if (rc == AUTH_OK) rc = check_ops(as, user, rev, r->success, r->n_success);
    if (rc == AUTH_OK) rc = check_ops(as, user, rev, r->failure, r->n_failure);
    return rc;
}

/* etcd's needAdminPermission (AuthUserList/RoleList are reads here, served
 * without Raft). */
static int needs_admin(const Kshim__InternalRequest *req) {
    return req->auth_enable || req->auth_disable || req->auth_user_add || req->auth_user_delete ||
           req->auth_user_change_password || req->auth_user_grant_role || req->auth_user_revoke_role ||
           req->auth_role_add || req->auth_role_grant_permission || req->auth_role_revoke_permission ||
           req->auth_role_delete;
}

int auth_request_check(auth_store_t *as, const Kshim__InternalRequest *req) {
    if (!req->header || !req->header->auth_checked) return AUTH_OK; /* an older kshimd's entry */
    if (!auth_store_enabled(as)) return AUTH_OK;                    /* every check below would say so */
    const char *user = req->header->username ? req->header->username : "";
    uint64_t rev = req->header->auth_revision;
    if (req->put) return auth_request_check_put(as, user, rev, req->put, 1);
    if (req->delete_range) return auth_request_check_delete(as, user, rev, req->delete_range, 0);
    if (req->txn) return auth_request_check_txn(as, user, rev, req->txn);
    if (needs_admin(req)) return auth_store_check_admin(as, user);
    return AUTH_OK;
}

typedef struct lease_check {
    auth_store_t *as;
    const char *user;
    uint64_t rev;
    int err;
} lease_check_t;

static int check_attached(void *arg, const uint8_t *key, size_t len) {
    lease_check_t *c = arg;
    c->err = auth_store_check_range(c->as, c->user, c->rev, AUTH_PERM_WRITE, key, len, NULL, 0);
    return c->err != AUTH_OK;
}

/* etcd's checkLeasePuts for LeaseRevoke: write permission on every key
 * attached to the lease, as the store holds them now (the group written
 * first: the scan reads committed state). AUTH_E_IO on a storage error. */
static int check_lease_revoke(auth_store_t *as, mvcc_t *m, const Kshim__InternalRequest *req) {
    if (!req->lease_revoke || !req->header || !req->header->auth_checked || !auth_store_enabled(as))
        return AUTH_OK;
    lease_check_t c = {as, req->header->username ? req->header->username : "", req->header->auth_revision,
                       AUTH_OK};
    if (mvcc_group_flush(m) != MVCC_OK) return AUTH_E_IO;
    if (lease_scan_keys(m, req->lease_revoke->id, check_attached, &c) != MVCC_OK && c.err == AUTH_OK)
        return AUTH_E_IO;
    return c.err;
}

int auth_request_refuse(auth_store_t *as, mvcc_t *m, uint64_t index, const Kshim__InternalRequest *req,
                        kv_result_t *res) {
    if (index <= mvcc_apply_index(m)) return 0;
    int err = auth_request_check(as, req);
    if (err == AUTH_OK) err = check_lease_revoke(as, m, req);
    if (err == AUTH_OK) return 0;
    if (err == AUTH_E_IO) return -1;
    if (mvcc_set_applied(m, index) != MVCC_OK) return -1;
    memset(res, 0, sizeof *res);
    res->code = auth_store_code(err);
    snprintf(res->message, sizeof res->message, "%s", auth_store_strerror(err));
    res->revision = mvcc_apply_revision(m);
    return 1;
}
