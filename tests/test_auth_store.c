/*
 * test_auth_store.c: storage/auth/auth_store.h, etcd 3.4's auth store rules as a
 * replicated state machine: every auth request applied through
 * auth_store_apply (users, roles, permissions, enable/disable), etcd's
 * errors and their gRPC codes, the auth revision (bumped on each change, not
 * on AuthEnable or ignored changes), permission checks (root bypass, old
 * revision, empty user), replay by index, and persistence across reopen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth_perm.h"
#include "auth_store.h"
#include "kv.h"

typedef struct fx {
    char dir[256];
    mvcc_t *m;
    auth_store_t *as;
    uint64_t index;
    kv_header_info_t hdr;
} fx_t;

static void fx_open(fx_t *f) {
    char err[256];
    mvcc_options_t opts = {0};
    assert_int_equal(mvcc_open(f->dir, &opts, &f->m, err, sizeof err), 0);
    assert_int_equal(auth_store_open(f->m, &f->as), AUTH_OK);
    f->index = mvcc_applied_index(f->m);
}

static void fx_close(fx_t *f) {
    auth_store_free(f->as);
    mvcc_close(f->m);
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    const char *base = getenv("KSHIM_TEST_TMP");
    if (!base) base = "/tmp";
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base);
    assert_int_equal(system(cmd), 0);
    snprintf(f->dir, sizeof f->dir, "%s/authstore-XXXXXX", base);
    assert_non_null(mkdtemp(f->dir));
    f->hdr.cluster_id = 1;
    f->hdr.member_id = 2;
    f->hdr.raft_term = 3;
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    fx_close(f);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Applies req as the next entry; returns the etcd error (0 on success). */
static int apply(fx_t *f, Kshim__InternalRequest *req) {
    kv_result_t res = {0};
    int rc = auth_store_apply(f->as, ++f->index, req, &f->hdr, &res, NULL);
    assert_int_equal(rc, 1);
    assert_int_equal(mvcc_applied_index(f->m), f->index);
    int code = res.code;
    if (code == 0) {
        assert_non_null(res.resp);
        Etcdserverpb__AuthUserAddResponse *r =
            etcdserverpb__auth_user_add_response__unpack(NULL, res.resp_len, res.resp);
        assert_non_null(r);
        assert_non_null(r->header);
        assert_int_equal(r->header->cluster_id, 1);
        assert_int_equal(r->header->revision, mvcc_revision(f->m));
        etcdserverpb__auth_user_add_response__free_unpacked(r, NULL);
    } else {
        assert_null(res.resp);
    }
    kv_result_clear(&res);
    return code;
}

static int user_add(fx_t *f, const char *name, const char *hash, int nopass) {
    Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
    o.no_password = nopass;
    r.name = (char *)name;
    r.password = (char *)hash;
    r.options = &o;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_user_add = &r;
    return apply(f, &req);
}

static int role_add(fx_t *f, const char *name) {
    Etcdserverpb__AuthRoleAddRequest r = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
    r.name = (char *)name;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_add = &r;
    return apply(f, &req);
}

static int grant_role(fx_t *f, const char *user, const char *role) {
    Etcdserverpb__AuthUserGrantRoleRequest r = ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
    r.user = (char *)user;
    r.role = (char *)role;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_user_grant_role = &r;
    return apply(f, &req);
}

static int revoke_role(fx_t *f, const char *user, const char *role) {
    Etcdserverpb__AuthUserRevokeRoleRequest r = ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
    r.name = (char *)user;
    r.role = (char *)role;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_user_revoke_role = &r;
    return apply(f, &req);
}

static int grant_perm(fx_t *f, const char *role, int type, const char *key, const char *end) {
    Etcdserverpb__AuthRoleGrantPermissionRequest r = ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
    Authpb__Permission p = AUTHPB__PERMISSION__INIT;
    p.permtype = (Authpb__Permission__Type)type;
    p.key.data = (uint8_t *)key;
    p.key.len = strlen(key);
    p.range_end.data = (uint8_t *)end;
    p.range_end.len = end ? (end[0] ? strlen(end) : 1) : 0; /* "" means "\0" */
    r.name = (char *)role;
    r.perm = &p;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_grant_permission = &r;
    return apply(f, &req);
}

static int revoke_perm(fx_t *f, const char *role, const char *key, const char *end) {
    Etcdserverpb__AuthRoleRevokePermissionRequest r = ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_REQUEST__INIT;
    r.role = (char *)role;
    r.key.data = (uint8_t *)key;
    r.key.len = strlen(key);
    r.range_end.data = (uint8_t *)end;
    r.range_end.len = end ? (end[0] ? strlen(end) : 1) : 0;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_revoke_permission = &r;
    return apply(f, &req);
}

static int enable(fx_t *f, int on) {
    Etcdserverpb__AuthEnableRequest e = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
    Etcdserverpb__AuthDisableRequest d = ETCDSERVERPB__AUTH_DISABLE_REQUEST__INIT;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    if (on)
        req.auth_enable = &e;
    else
        req.auth_disable = &d;
    return apply(f, &req);
}

static int user_delete(fx_t *f, const char *name) {
    Etcdserverpb__AuthUserDeleteRequest r = ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
    r.name = (char *)name;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_user_delete = &r;
    return apply(f, &req);
}

static int role_delete(fx_t *f, const char *name) {
    Etcdserverpb__AuthRoleDeleteRequest r = ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
    r.role = (char *)name;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_delete = &r;
    return apply(f, &req);
}

static int passwd(fx_t *f, const char *name, const char *hash, auth_effect_t *eff) {
    Etcdserverpb__AuthUserChangePasswordRequest r = ETCDSERVERPB__AUTH_USER_CHANGE_PASSWORD_REQUEST__INIT;
    r.name = (char *)name;
    r.password = (char *)hash;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_user_change_password = &r;
    kv_result_t res = {0};
    assert_int_equal(auth_store_apply(f->as, ++f->index, &req, &f->hdr, &res, eff), 1);
    int code = res.code;
    kv_result_clear(&res);
    return code;
}

static int can(fx_t *f, const char *user, int want, const char *key, const char *end) {
    size_t el = end ? (end[0] ? strlen(end) : 1) : 0;
    return auth_store_check_range(f->as, user, auth_store_revision(f->as), want, (const uint8_t *)key,
                                  strlen(key), (const uint8_t *)end, el);
}

#define HASH "$2b$04$abcdefghijklmnopqrstuu5Rzh7Y0bJ0XvE7r2R6A2Yxqz0F9dY6a"

static void test_users_and_errors(void **state) {
    fx_t *f = *state;
    assert_int_equal(auth_store_revision(f->as), 1);
    assert_int_equal(user_add(f, "", HASH, 0), 3);
    assert_int_equal(user_add(f, "alice", HASH, 0), 0);
    assert_int_equal(auth_store_revision(f->as), 2);
    assert_int_equal(user_add(f, "alice", HASH, 0), 9);
    assert_int_equal(auth_store_revision(f->as), 2);
    assert_int_equal(user_add(f, "nopw", "ignored", 1), 0);
    Authpb__User *u = auth_store_get_user(f->as, "nopw");
    assert_non_null(u);
    assert_int_equal(u->password.len, 0);
    assert_true(u->options && u->options->no_password);
    authpb__user__free_unpacked(u, NULL);
    u = auth_store_get_user(f->as, "alice");
    assert_int_equal(u->password.len, strlen(HASH));
    authpb__user__free_unpacked(u, NULL);
    assert_null(auth_store_get_user(f->as, "bob"));

    assert_int_equal(grant_role(f, "bob", "r1"), 9);   /* user not found */
    assert_int_equal(grant_role(f, "alice", "r1"), 9); /* role not found */
    assert_int_equal(role_add(f, ""), 3);
    assert_int_equal(role_add(f, "r1"), 0);
    assert_int_equal(role_add(f, "r1"), 9);
    assert_int_equal(grant_role(f, "alice", "r1"), 0);
    uint64_t rev = auth_store_revision(f->as);
    assert_int_equal(grant_role(f, "alice", "r1"), 0); /* ignored, no bump */
    assert_int_equal(auth_store_revision(f->as), rev);
    assert_int_equal(grant_role(f, "alice", "root"), 0); /* root needs no role record */
    u = auth_store_get_user(f->as, "alice");
    assert_int_equal(u->n_roles, 2);
    assert_string_equal(u->roles[0], "r1");
    assert_string_equal(u->roles[1], "root");
    authpb__user__free_unpacked(u, NULL);
    assert_int_equal(revoke_role(f, "alice", "nope"), 9);
    assert_int_equal(revoke_role(f, "ghost", "r1"), 9);
    assert_int_equal(revoke_role(f, "alice", "root"), 0);

    char **names;
    size_t n;
    assert_int_equal(auth_store_list_users(f->as, &names, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "alice");
    assert_string_equal(names[1], "nopw");
    auth_store_free_names(names, n);

    /* password change: new hash stored, the user's tokens must go */
    auth_effect_t eff = {0};
    assert_int_equal(passwd(f, "ghost", HASH, &eff), 9);
    assert_null(eff.invalidate_user);
    uint64_t before = auth_store_revision(f->as);
    assert_int_equal(passwd(f, "alice", "$2b$04$other", &eff), 0);
    assert_string_equal(eff.invalidate_user, "alice");
    auth_effect_clear(&eff);
    assert_int_equal(auth_store_revision(f->as), before + 1);
    u = auth_store_get_user(f->as, "alice");
    assert_int_equal(u->password.len, strlen("$2b$04$other"));
    assert_int_equal(u->n_roles, 1); /* roles kept */
    authpb__user__free_unpacked(u, NULL);

    assert_int_equal(user_delete(f, "ghost"), 9);
    kv_result_t dres = {0};
    Etcdserverpb__AuthUserDeleteRequest dr = ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
    dr.name = "nopw";
    Kshim__InternalRequest dreq = KSHIM__INTERNAL_REQUEST__INIT;
    dreq.auth_user_delete = &dr;
    assert_int_equal(auth_store_apply(f->as, ++f->index, &dreq, &f->hdr, &dres, &eff), 1);
    assert_int_equal(dres.code, 0);
    assert_string_equal(eff.invalidate_user, "nopw");
    auth_effect_clear(&eff);
    kv_result_clear(&dres);
    assert_null(auth_store_get_user(f->as, "nopw"));
    /* error texts */
    assert_string_equal(auth_store_strerror(AUTH_E_USER_EMPTY), "etcdserver: user name is empty");
    assert_int_equal(auth_store_code(AUTH_E_PERMISSION_DENIED), 7);
    assert_int_equal(auth_store_code(AUTH_E_INVALID_AUTH_TOKEN), 16);
}

static void test_enable_rules(void **state) {
    fx_t *f = *state;
    assert_int_equal(enable(f, 1), 9); /* root user does not exist */
    assert_int_equal(user_add(f, "root", HASH, 0), 0);
    kv_result_t res = {0};
    Etcdserverpb__AuthEnableRequest e = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_enable = &e;
    assert_int_equal(auth_store_apply(f->as, ++f->index, &req, &f->hdr, &res, NULL), 1);
    assert_string_equal(res.message, "etcdserver: root user does not have root role");
    kv_result_clear(&res);
    assert_int_equal(grant_role(f, "root", "root"), 0);
    uint64_t rev = auth_store_revision(f->as);
    auth_effect_t eff = {0};
    assert_int_equal(auth_store_apply(f->as, ++f->index, &req, &f->hdr, &res, &eff), 1);
    assert_int_equal(res.code, 0);
    assert_true(eff.enable_changed && eff.enabled);
    kv_result_clear(&res);
    assert_true(auth_store_enabled(f->as));
    assert_int_equal(auth_store_revision(f->as), rev); /* etcd 3.4: no bump on enable */
    assert_int_equal(enable(f, 1), 0);                 /* already enabled: ignored */

    /* root is protected while enabled */
    assert_int_equal(user_delete(f, "root"), 3);
    assert_int_equal(revoke_role(f, "root", "root"), 3);
    assert_int_equal(role_delete(f, "root"), 3);
    assert_int_equal(auth_store_check_admin(f->as, "root"), AUTH_OK);
    assert_int_equal(auth_store_check_admin(f->as, ""), AUTH_E_USER_EMPTY);
    assert_int_equal(auth_store_check_admin(f->as, "zed"), AUTH_E_USER_NOT_FOUND);
    assert_int_equal(user_add(f, "bob", HASH, 0), 0);
    assert_int_equal(auth_store_check_admin(f->as, "bob"), AUTH_E_PERMISSION_DENIED);

    char *hash = NULL;
    size_t hl = 0;
    uint64_t hrev = 0;
    assert_int_equal(auth_store_user_hash(f->as, "bob", &hash, &hl, &hrev), AUTH_OK);
    assert_string_equal(hash, HASH);
    assert_int_equal(hrev, auth_store_revision(f->as));
    free(hash);
    assert_int_equal(auth_store_user_hash(f->as, "zed", &hash, &hl, &hrev), AUTH_E_AUTH_FAILED);

    rev = auth_store_revision(f->as);
    memset(&eff, 0, sizeof eff);
    Etcdserverpb__AuthDisableRequest d = ETCDSERVERPB__AUTH_DISABLE_REQUEST__INIT;
    Kshim__InternalRequest dreq = KSHIM__INTERNAL_REQUEST__INIT;
    dreq.auth_disable = &d;
    assert_int_equal(auth_store_apply(f->as, ++f->index, &dreq, &f->hdr, &res, &eff), 1);
    assert_true(eff.enable_changed && !eff.enabled);
    kv_result_clear(&res);
    assert_int_equal(auth_store_revision(f->as), rev + 1);
    assert_int_equal(auth_store_check_admin(f->as, ""), AUTH_OK); /* disabled: anyone */
    assert_int_equal(auth_store_user_hash(f->as, "bob", &hash, &hl, &hrev), AUTH_E_AUTH_NOT_ENABLED);
    assert_int_equal(user_delete(f, "root"), 0); /* allowed when disabled */
}

static void test_permissions(void **state) {
    fx_t *f = *state;
    assert_int_equal(user_add(f, "root", HASH, 0), 0);
    assert_int_equal(grant_role(f, "root", "root"), 0);
    assert_int_equal(user_add(f, "reader", HASH, 0), 0);
    assert_int_equal(user_add(f, "writer", HASH, 0), 0);
    assert_int_equal(role_add(f, "ro"), 0);
    assert_int_equal(role_add(f, "wo"), 0);
    assert_int_equal(grant_perm(f, "nope", AUTH_PERM_READ, "a", NULL), 9);
    assert_int_equal(grant_perm(f, "ro", AUTH_PERM_READ, "/app/", "/app0"), 0);
    assert_int_equal(grant_perm(f, "wo", AUTH_PERM_WRITE, "k", NULL), 0);
    assert_int_equal(grant_role(f, "reader", "ro"), 0);
    assert_int_equal(grant_role(f, "writer", "wo"), 0);

    /* auth off: everything allowed */
    assert_int_equal(can(f, "", AUTH_PERM_WRITE, "x", NULL), AUTH_OK);
    assert_int_equal(enable(f, 1), 0);
    assert_int_equal(can(f, "reader", AUTH_PERM_READ, "/app/x", NULL), AUTH_OK);
    assert_int_equal(can(f, "reader", AUTH_PERM_READ, "/app/", "/app0"), AUTH_OK);
    assert_int_equal(can(f, "reader", AUTH_PERM_READ, "/app/", ""), AUTH_E_PERMISSION_DENIED);
    assert_int_equal(can(f, "reader", AUTH_PERM_WRITE, "/app/x", NULL), AUTH_E_PERMISSION_DENIED);
    assert_int_equal(can(f, "writer", AUTH_PERM_WRITE, "k", NULL), AUTH_OK);
    assert_int_equal(can(f, "writer", AUTH_PERM_READ, "k", NULL), AUTH_E_PERMISSION_DENIED);
    assert_int_equal(can(f, "root", AUTH_PERM_WRITE, "anything", ""), AUTH_OK);
    assert_int_equal(can(f, "ghost", AUTH_PERM_READ, "k", NULL), AUTH_E_PERMISSION_DENIED);
    uint64_t rev = auth_store_revision(f->as);
    assert_int_equal(
        auth_store_check_range(f->as, "writer", 0, AUTH_PERM_WRITE, (const uint8_t *)"k", 1, NULL, 0),
        AUTH_E_USER_EMPTY);
    assert_int_equal(
        auth_store_check_range(f->as, "writer", rev - 1, AUTH_PERM_WRITE, (const uint8_t *)"k", 1, NULL, 0),
        AUTH_E_OLD_REVISION);
    assert_true(auth_store_has_role(f->as, "reader", "ro"));
    assert_false(auth_store_has_role(f->as, "reader", "wo"));

    /* upgrade in place: same key and range end -> one permission, new type */
    assert_int_equal(grant_perm(f, "wo", AUTH_PERM_READWRITE, "k", NULL), 0);
    assert_int_equal(grant_perm(f, "wo", AUTH_PERM_READ, "a", NULL), 0);
    Authpb__Role *r = auth_store_get_role(f->as, "wo");
    assert_non_null(r);
    assert_int_equal(r->n_keypermission, 2);
    assert_memory_equal(r->keypermission[0]->key.data, "a", 1); /* sorted by key */
    assert_int_equal(r->keypermission[1]->permtype, AUTH_PERM_READWRITE);
    authpb__role__free_unpacked(r, NULL);
    assert_int_equal(can(f, "writer", AUTH_PERM_READ, "k", NULL), AUTH_OK);

    assert_int_equal(revoke_perm(f, "wo", "k", "z"), 9); /* range end differs */
    assert_int_equal(revoke_perm(f, "wo", "k", NULL), 0);
    assert_int_equal(can(f, "writer", AUTH_PERM_WRITE, "k", NULL), AUTH_E_PERMISSION_DENIED);
    assert_int_equal(revoke_perm(f, "ghost", "k", NULL), 9);

    /* deleting a role strips it from its users */
    assert_int_equal(role_delete(f, "ro"), 0);
    assert_false(auth_store_has_role(f->as, "reader", "ro"));
    assert_int_equal(can(f, "reader", AUTH_PERM_READ, "/app/x", NULL), AUTH_E_PERMISSION_DENIED);
    assert_int_equal(role_delete(f, "ro"), 9);
}

static void test_persistence_and_replay(void **state) {
    fx_t *f = *state;
    assert_int_equal(user_add(f, "root", HASH, 0), 0);
    assert_int_equal(grant_role(f, "root", "root"), 0);
    assert_int_equal(role_add(f, "p"), 0);
    assert_int_equal(grant_perm(f, "p", AUTH_PERM_READWRITE, "/x/", "/x0"), 0);
    assert_int_equal(user_add(f, "u", HASH, 0), 0);
    assert_int_equal(grant_role(f, "u", "p"), 0);
    assert_int_equal(enable(f, 1), 0);
    uint64_t rev = auth_store_revision(f->as);
    uint64_t idx = f->index;

    /* Replay of an applied entry changes nothing and answers nothing. */
    Etcdserverpb__AuthRoleAddRequest ra = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
    ra.name = "late";
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_add = &ra;
    kv_result_t res = {0};
    assert_int_equal(auth_store_apply(f->as, idx, &req, &f->hdr, &res, NULL), 1);
    assert_null(res.resp);
    assert_null(auth_store_get_role(f->as, "late"));
    /* Not an auth request. */
    Kshim__InternalRequest other = KSHIM__INTERNAL_REQUEST__INIT;
    assert_int_equal(auth_store_apply(f->as, idx + 1, &other, &f->hdr, &res, NULL), 0);

    fx_close(f);
    fx_open(f);
    assert_int_equal(f->index, idx);
    assert_true(auth_store_enabled(f->as));
    assert_int_equal(auth_store_revision(f->as), rev);
    assert_int_equal(can(f, "u", AUTH_PERM_WRITE, "/x/1", NULL), AUTH_OK);
    assert_int_equal(can(f, "u", AUTH_PERM_WRITE, "/y", NULL), AUTH_E_PERMISSION_DENIED);
    assert_int_equal(auth_store_check_admin(f->as, "root"), AUTH_OK);
    char **names;
    size_t n;
    assert_int_equal(auth_store_list_roles(f->as, &names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "p");
    auth_store_free_names(names, n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_users_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enable_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence_and_replay, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
