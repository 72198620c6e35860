/*
 * test_apply_auth.c: permissions checked again at apply (etcd's
 * authApplierV3): the member's appliers as server_apply chains them
 * (svc_auth_check_apply, then svc_auth_apply, then kv_apply), each entry
 * carrying the identity and auth revision it was checked with before
 * proposing (RequestHeader.username / auth_revision). A Put checked at auth
 * revision N and applied after a permission revoke (N+1) is refused
 * "etcdserver: revision of auth store is old" and not applied; checked at
 * N+1 it is refused "permission denied"; a Txn likewise; an entry without
 * identity once auth is on gets "user name is empty" (one from an older
 * kshimd, without auth_checked, is applied as before); a management request
 * from a user who is not root (any more) is refused at apply; so is a
 * LeaseRevoke by a user who may no longer write a key attached to the
 * lease (but not the leader's revoke of an expired lease); replayed
 * entries are left alone; with auth off nothing is checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth_check.h"
#include "grpc_status.h"
#include "kv_fixture.h"
#include "services.h"

/* The store (kv_fixture.h) under a member's auth appliers. */
typedef struct afx {
    fx_t kv;
    server_config_t cfg;
    server_t s;
} afx_t;

/* Every lease exists (no lessor here: Puts may attach keys to any id). */
static int any_lease(void *ctx, int64_t id) {
    (void)ctx;
    (void)id;
    return 1;
}

static int setup(void **state) {
    afx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    server_config_defaults(&f->cfg);
    f->s.cfg = &f->cfg;
    f->s.member_id = 42;
    mvcc_options_t o = {.lease_exists = any_lease};
    assert_int_equal(svc_auth_init(&f->s, &o), 0);
    fx_open(&f->kv, "applyauth", &o);
    f->s.mvcc = f->kv.m;
    /* the first entry offered opens the auth store (svc_auth_start would) */
    Kshim__InternalRequest none = KSHIM__INTERNAL_REQUEST__INIT;
    kv_header_info_t hdr = {0};
    kv_result_t res = {0};
    assert_int_equal(svc_auth_check_apply(&f->s, 0, &none, &hdr, &res), 0);
    assert_non_null(svc_auth_store(&f->s));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    afx_t *f = *state;
    svc_auth_stop(&f->s);
    fx_close(&f->kv);
    free(f);
    return 0;
}

static uint64_t auth_rev(afx_t *f) { return auth_store_revision(svc_auth_store(&f->s)); }

/* Applies req at index as the member does, proposed by user at auth
 * revision rev (user NULL: no header at all, an older kshimd's entry); returns the result's code and
 * copies its message to msg. */
static int apply_at(afx_t *f, uint64_t index, Kshim__InternalRequest *req, const char *user, uint64_t rev,
                    char *msg) {
    Kshim__RequestHeader h = KSHIM__REQUEST_HEADER__INIT;
    h.id = index;
    h.proposer = 42;
    h.username = (char *)user;
    h.auth_revision = rev;
    h.auth_checked = 1;
    req->header = user ? &h : NULL;
    kv_header_info_t hdr = {1, 42, 1};
    kv_result_t res = {0};
    int rc = svc_auth_check_apply(&f->s, index, req, &hdr, &res);
    if (rc == 0) rc = svc_auth_apply(&f->s, index, req, &hdr, &res);
    if (rc == 0)
        rc = kv_apply(f->s.mvcc, index, req, &hdr, &res);
    else
        rc = rc > 0 ? 0 : rc;
    assert_int_equal(rc, 0);
    req->header = NULL;
    int code = res.code;
    if (msg) snprintf(msg, 160, "%s", res.message);
    kv_result_clear(&res);
    return code;
}

static int apply_as(afx_t *f, Kshim__InternalRequest *req, const char *user, uint64_t rev, char *msg) {
    int code = apply_at(f, ++f->kv.index, req, user, rev, msg);
    assert_int_equal(mvcc_apply_index(f->s.mvcc), f->kv.index); /* refused or not, the index moves */
    return code;
}

/* As root at the current auth revision (what the proposer checked). */
static int apply_root(afx_t *f, Kshim__InternalRequest *req) {
    return apply_as(f, req, "root", auth_rev(f), NULL);
}

static void user_add(afx_t *f, const char *name) {
    Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
    o.no_password = 1;
    r.name = (char *)name;
    r.password = "";
    r.options = &o;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_user_add = &r;
    assert_int_equal(apply_root(f, &req), 0);
}

static Kshim__InternalRequest role_add_req(Etcdserverpb__AuthRoleAddRequest *r, const char *name) {
    *r = (Etcdserverpb__AuthRoleAddRequest)ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
    r->name = (char *)name;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_add = r;
    return req;
}

static void role_add(afx_t *f, const char *name) {
    Etcdserverpb__AuthRoleAddRequest r;
    Kshim__InternalRequest req = role_add_req(&r, name);
    assert_int_equal(apply_root(f, &req), 0);
}

static void grant_role(afx_t *f, const char *user, const char *role) {
    Etcdserverpb__AuthUserGrantRoleRequest r = ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
    r.user = (char *)user;
    r.role = (char *)role;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_user_grant_role = &r;
    assert_int_equal(apply_root(f, &req), 0);
}

/* readwrite on the prefix "foo" */
static void grant_foo(afx_t *f, const char *role) {
    Etcdserverpb__AuthRoleGrantPermissionRequest r = ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
    Authpb__Permission p = AUTHPB__PERMISSION__INIT;
    p.permtype = AUTHPB__PERMISSION__TYPE__READWRITE;
    p.key = B("foo");
    p.range_end = B("fop");
    r.name = (char *)role;
    r.perm = &p;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_grant_permission = &r;
    assert_int_equal(apply_root(f, &req), 0);
}

static void revoke_foo(afx_t *f, const char *role) {
    Etcdserverpb__AuthRoleRevokePermissionRequest r = ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_REQUEST__INIT;
    r.role = (char *)role;
    r.key = B("foo");
    r.range_end = B("fop");
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_revoke_permission = &r;
    assert_int_equal(apply_root(f, &req), 0);
}

static void enable(afx_t *f) {
    Etcdserverpb__AuthEnableRequest e = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_enable = &e;
    assert_int_equal(apply_root(f, &req), 0);
    assert_true(auth_store_enabled(svc_auth_store(&f->s)));
}

/* root (root role), alice (role rw: readwrite on foo*), auth enabled. */
static void setup_users(afx_t *f) {
    user_add(f, "root");
    role_add(f, "root");
    grant_role(f, "root", "root");
    user_add(f, "alice");
    role_add(f, "rw");
    grant_foo(f, "rw");
    grant_role(f, "alice", "rw");
    enable(f);
}

static Kshim__InternalRequest put_req(Etcdserverpb__PutRequest *p, const char *key) {
    *p = (Etcdserverpb__PutRequest)ETCDSERVERPB__PUT_REQUEST__INIT;
    p->key = B(key);
    p->value = B("v");
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = p;
    return req;
}


/* The case: checked at N, a revoke applied at N+1, then the Put. */
static void test_put_checked_before_revoke(void **state) {
    afx_t *f = *state;
    setup_users(f);
    uint64_t n = auth_rev(f);
    char msg[160];
    Etcdserverpb__PutRequest p;
    Kshim__InternalRequest put = put_req(&p, "foo1");
    assert_int_equal(apply_as(f, &put, "alice", n, msg), 0); /* permitted at N */
    assert_int_equal(fx_count_key(f->s.mvcc, "foo1"), 1);

    revoke_foo(f, "rw"); /* applied between alice's check and her next Put */
    assert_int_equal(auth_rev(f), n + 1);
    put = put_req(&p, "foo2");
    assert_int_equal(apply_as(f, &put, "alice", n, msg), GRPC_INVALID_ARGUMENT);
    assert_string_equal(msg, "etcdserver: revision of auth store is old");
    assert_int_equal(fx_count_key(f->s.mvcc, "foo2"), 0); /* never applied */
    /* checked again at N+1 (clientv3's retry after a new token): denied */
    assert_int_equal(apply_as(f, &put, "alice", n + 1, msg), GRPC_PERMISSION_DENIED);
    assert_string_equal(msg, "etcdserver: permission denied");
    assert_int_equal(fx_count_key(f->s.mvcc, "foo2"), 0);
    /* root may still write, at the current revision only */
    assert_int_equal(apply_as(f, &put, "root", n, msg), GRPC_INVALID_ARGUMENT);
    assert_int_equal(apply_as(f, &put, "root", n + 1, msg), 0);
    assert_int_equal(fx_count_key(f->s.mvcc, "foo2"), 1);
}

static void test_txn_and_delete(void **state) {
    afx_t *f = *state;
    setup_users(f);
    uint64_t n = auth_rev(f);
    char msg[160];
    Etcdserverpb__PutRequest p;
    Kshim__InternalRequest put = put_req(&p, "foo1");
    assert_int_equal(apply_as(f, &put, "alice", n, msg), 0);

    Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT;
    op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    Etcdserverpb__PutRequest tp = ETCDSERVERPB__PUT_REQUEST__INIT;
    tp.key = B("foo3");
    tp.value = B("v");
    op.request_put = &tp;
    Etcdserverpb__RequestOp *ops[] = {&op};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.success = ops;
    t.n_success = 1;
    Kshim__InternalRequest txn = KSHIM__INTERNAL_REQUEST__INIT;
    txn.txn = &t;
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B("foo1");
    Kshim__InternalRequest del = KSHIM__INTERNAL_REQUEST__INIT;
    del.delete_range = &d;

    revoke_foo(f, "rw");
    assert_int_equal(apply_as(f, &txn, "alice", n, msg), GRPC_INVALID_ARGUMENT);
    assert_string_equal(msg, "etcdserver: revision of auth store is old");
    assert_int_equal(apply_as(f, &del, "alice", n, msg), GRPC_INVALID_ARGUMENT);
    assert_int_equal(apply_as(f, &del, "alice", n + 1, msg), GRPC_PERMISSION_DENIED);
    assert_int_equal(fx_count_key(f->s.mvcc, "foo3"), 0);
    assert_int_equal(fx_count_key(f->s.mvcc, "foo1"), 1);
}

/* Auth enabled between the check (no identity: auth was off) and apply. */
static void test_no_identity_once_enabled(void **state) {
    afx_t *f = *state;
    char msg[160];
    Etcdserverpb__PutRequest p;
    Kshim__InternalRequest put = put_req(&p, "k0");
    assert_int_equal(apply_as(f, &put, NULL, 0, msg), 0); /* auth off: nothing checked */
    assert_int_equal(apply_as(f, &put, "", 0, msg), 0);
    setup_users(f);
    put = put_req(&p, "k1");
    assert_int_equal(apply_as(f, &put, "", 0, msg), GRPC_INVALID_ARGUMENT);
    assert_string_equal(msg, "etcdserver: user name is empty");
    assert_int_equal(fx_count_key(f->s.mvcc, "k1"), 0);
    /* an entry from a kshimd before the apply-time check (no auth_checked)
     * is applied as it was checked then */
    assert_int_equal(apply_as(f, &put, NULL, 0, msg), 0);
    assert_int_equal(fx_count_key(f->s.mvcc, "k1"), 1);
}

/* A management request needs the root role at apply too. */
static void test_admin_at_apply(void **state) {
    afx_t *f = *state;
    setup_users(f);
    char msg[160];
    Etcdserverpb__AuthRoleAddRequest r;
    Kshim__InternalRequest req = role_add_req(&r, "extra");
    assert_int_equal(apply_as(f, &req, "alice", auth_rev(f), msg), GRPC_PERMISSION_DENIED);
    assert_string_equal(msg, "etcdserver: permission denied");
    assert_null(auth_store_get_role(svc_auth_store(&f->s), "extra"));
    assert_int_equal(apply_as(f, &req, "", auth_rev(f), msg), GRPC_INVALID_ARGUMENT);
    assert_int_equal(apply_as(f, &req, "nobody", auth_rev(f), msg), GRPC_FAILED_PRECONDITION);
    assert_string_equal(msg, "etcdserver: user name not found");
    assert_int_equal(apply_as(f, &req, "root", auth_rev(f), msg), 0);
    Authpb__Role *role = auth_store_get_role(svc_auth_store(&f->s), "extra");
    assert_non_null(role);
    authpb__role__free_unpacked(role, NULL);
}

/* LeaseRevoke needs write permission on every attached key at apply too
 * (etcd's checkLeasePuts); the leader's expiry revoke (no auth_checked)
 * is not checked. */
static void test_lease_revoke_attached_keys(void **state) {
    afx_t *f = *state;
    setup_users(f);
    uint64_t n = auth_rev(f);
    Etcdserverpb__PutRequest p;
    Kshim__InternalRequest put = put_req(&p, "foo5");
    p.lease = 7;
    assert_int_equal(apply_root(f, &put), 0);
    Etcdserverpb__LeaseRevokeRequest r = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    r.id = 7;
    Kshim__InternalRequest rv = KSHIM__INTERNAL_REQUEST__INIT;
    rv.lease_revoke = &r;
    Kshim__RequestHeader h = KSHIM__REQUEST_HEADER__INIT;
    h.username = "alice";
    h.auth_revision = n;
    h.auth_checked = 1;
    rv.header = &h;
    kv_header_info_t hdr = {1, 42, 1};
    kv_result_t res = {0};
    assert_int_equal(svc_auth_check_apply(&f->s, f->kv.index + 1, &rv, &hdr, &res), 0); /* may write foo5 */
    revoke_foo(f, "rw");
    assert_int_equal(svc_auth_check_apply(&f->s, ++f->kv.index, &rv, &hdr, &res), 1);
    assert_int_equal(res.code, GRPC_INVALID_ARGUMENT);
    assert_string_equal(res.message, "etcdserver: revision of auth store is old");
    kv_result_clear(&res);
    h.auth_revision = n + 1;
    assert_int_equal(svc_auth_check_apply(&f->s, ++f->kv.index, &rv, &hdr, &res), 1);
    assert_int_equal(res.code, GRPC_PERMISSION_DENIED);
    kv_result_clear(&res);
    h.username = "root";
    assert_int_equal(svc_auth_check_apply(&f->s, f->kv.index + 1, &rv, &hdr, &res), 0);
    Kshim__RequestHeader expiry = KSHIM__REQUEST_HEADER__INIT; /* the leader's, for an expired lease */
    rv.header = &expiry;
    assert_int_equal(svc_auth_check_apply(&f->s, f->kv.index + 1, &rv, &hdr, &res), 0);
    /* a lease without keys needs nothing */
    r.id = 8;
    rv.header = &h;
    h.username = "alice";
    assert_int_equal(svc_auth_check_apply(&f->s, f->kv.index + 1, &rv, &hdr, &res), 0);
}

/* An entry at or below the applied index (a replay) is not refused again:
 * the appliers skip it. */
static void test_replay_left_alone(void **state) {
    afx_t *f = *state;
    setup_users(f);
    uint64_t n = auth_rev(f);
    revoke_foo(f, "rw");
    Etcdserverpb__PutRequest p;
    Kshim__InternalRequest put = put_req(&p, "foo9");
    Kshim__RequestHeader h = KSHIM__REQUEST_HEADER__INIT;
    h.username = "alice";
    h.auth_revision = n;
    h.auth_checked = 1;
    put.header = &h;
    kv_header_info_t hdr = {1, 42, 1};
    kv_result_t res = {0};
    assert_int_equal(svc_auth_check_apply(&f->s, f->kv.index, &put, &hdr, &res), 0);
    assert_int_equal(res.code, 0);
    assert_int_equal(svc_auth_check_apply(&f->s, f->kv.index + 1, &put, &hdr, &res), 1);
    assert_int_equal(res.code, GRPC_INVALID_ARGUMENT);
    kv_result_clear(&res);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_checked_before_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_identity_once_enabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_at_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_revoke_attached_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_left_alone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
