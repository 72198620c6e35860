/*
 * auth_store.c: etcd's auth store as a replicated state machine (see
 * auth_store.h for the record layout and threading).
 *
 * Every change follows one pattern: under the mutex, check the request
 * against the in-memory copy (etcd's auth/store.go rules and errors), write
 * the changed records and the new revision in one mvcc write txn committed
 * as the Raft entry, then rebuild the in-memory copy (users, roles and each
 * user's merged permission intervals) from LevelDB.
 */
#include "auth_store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_perm.h"
#include "bytes.h"
#include "grpc_status.h"
#include "mvcc.h"
#include "rpc.pb-c.h"

#define ROOT_NAME "root"
static const uint8_t KEY_ENABLED[] = "Eenabled";
static const uint8_t KEY_REVISION[] = "Erevision";

typedef struct auth_user {
    char *name;
    Authpb__User *rec;
    auth_perms_t perms;
    bool root; /* has the root role */
} auth_user_t;

typedef struct auth_role {
    char *name;
    Authpb__Role *rec;
} auth_role_t;

struct auth_store {
    mvcc_t *m;
    pthread_mutex_t mu;
    bool enabled;
    uint64_t rev;
    auth_user_t *users; /* sorted by name (LevelDB key order) */
    size_t n_users;
    auth_role_t *roles; /* sorted by name */
    size_t n_roles;
};

/* ---- errors ------------------------------------------------------------ */

typedef struct auth_err_info {
    int err;
    int code; /* gRPC status */
    const char *text;
} auth_err_info_t;

static const auth_err_info_t err_table[] = {
    {AUTH_E_ROOT_USER_NOT_EXIST, GRPC_FAILED_PRECONDITION, "etcdserver: root user does not exist"},
    {AUTH_E_ROOT_ROLE_NOT_EXIST, GRPC_FAILED_PRECONDITION, "etcdserver: root user does not have root role"},
    {AUTH_E_USER_ALREADY_EXIST, GRPC_FAILED_PRECONDITION, "etcdserver: user name already exists"},
    {AUTH_E_USER_EMPTY, GRPC_INVALID_ARGUMENT, "etcdserver: user name is empty"},
    {AUTH_E_USER_NOT_FOUND, GRPC_FAILED_PRECONDITION, "etcdserver: user name not found"},
    {AUTH_E_ROLE_ALREADY_EXIST, GRPC_FAILED_PRECONDITION, "etcdserver: role name already exists"},
    {AUTH_E_ROLE_NOT_FOUND, GRPC_FAILED_PRECONDITION, "etcdserver: role name not found"},
    {AUTH_E_ROLE_EMPTY, GRPC_INVALID_ARGUMENT, "etcdserver: role name is empty"},
    {AUTH_E_AUTH_FAILED, GRPC_INVALID_ARGUMENT,
     "etcdserver: authentication failed, invalid user ID or password"},
    {AUTH_E_PERMISSION_DENIED, GRPC_PERMISSION_DENIED, "etcdserver: permission denied"},
    {AUTH_E_ROLE_NOT_GRANTED, GRPC_FAILED_PRECONDITION, "etcdserver: role is not granted to the user"},
    {AUTH_E_PERMISSION_NOT_GRANTED, GRPC_FAILED_PRECONDITION,
     "etcdserver: permission is not granted to the role"},
    {AUTH_E_AUTH_NOT_ENABLED, GRPC_FAILED_PRECONDITION, "etcdserver: authentication is not enabled"},
    {AUTH_E_INVALID_AUTH_TOKEN, GRPC_UNAUTHENTICATED, "etcdserver: invalid auth token"},
    {AUTH_E_INVALID_AUTH_MGMT, GRPC_INVALID_ARGUMENT, "etcdserver: invalid auth management"},
    {AUTH_E_OLD_REVISION, GRPC_INVALID_ARGUMENT, "etcdserver: revision of auth store is old"},
    {AUTH_E_NO_PASSWORD_USER, GRPC_UNKNOWN,
     "auth: authentication failed, password was given for no password user"},
    {AUTH_E_IO, GRPC_INTERNAL, "etcdserver: auth store I/O error"},
    {AUTH_E_NOMEM, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory"},
};

static const auth_err_info_t *err_info(int err) {
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].err == err) return &err_table[i];
    return NULL;
}

const char *auth_store_strerror(int err) {
    const auth_err_info_t *e = err_info(err);
    return e ? e->text : "";
}

int auth_store_code(int err) {
    const auth_err_info_t *e = err_info(err);
    return e ? e->code : 0;
}

/* ---- in-memory copy ---------------------------------------------------- */

static char *bytes_to_str(const ProtobufCBinaryData *b) {
    char *s = malloc(b->len + 1);
    if (s) {
        if (b->len) memcpy(s, b->data, b->len);
        s[b->len] = '\0';
    }
    return s;
}

static void clear_state(auth_store_t *as) {
    for (size_t i = 0; i < as->n_users; i++) {
        free(as->users[i].name);
        authpb__user__free_unpacked(as->users[i].rec, NULL);
        auth_perms_free(&as->users[i].perms);
    }
    free(as->users);
    for (size_t i = 0; i < as->n_roles; i++) {
        free(as->roles[i].name);
        authpb__role__free_unpacked(as->roles[i].rec, NULL);
    }
    free(as->roles);
    as->users = NULL;
    as->roles = NULL;
    as->n_users = as->n_roles = 0;
}

static auth_user_t *find_user(auth_store_t *as, const char *name) {
    for (size_t i = 0; i < as->n_users; i++)
        if (strcmp(as->users[i].name, name) == 0) return &as->users[i];
    return NULL;
}

static auth_role_t *find_role(auth_store_t *as, const char *name) {
    for (size_t i = 0; i < as->n_roles; i++)
        if (strcmp(as->roles[i].name, name) == 0) return &as->roles[i];
    return NULL;
}

static bool user_has_role(const Authpb__User *u, const char *role) {
    for (size_t i = 0; i < u->n_roles; i++)
        if (strcmp(u->roles[i], role) == 0) return true;
    return false;
}

typedef struct load_ctx {
    auth_store_t *as;
    int err;
} load_ctx_t;

static int load_user(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    load_ctx_t *c = arg;
    (void)key;
    (void)key_len;
    Authpb__User *u = authpb__user__unpack(NULL, val_len, val);
    auth_user_t *grown = u ? realloc(c->as->users, (c->as->n_users + 1) * sizeof *grown) : NULL;
    char *name = u ? bytes_to_str(&u->name) : NULL;
    if (!u || !grown || !name) {
        if (grown) c->as->users = grown;
        if (u) authpb__user__free_unpacked(u, NULL);
        free(name);
        c->err = AUTH_E_IO;
        return 1;
    }
    c->as->users = grown;
    auth_user_t *e = &grown[c->as->n_users++];
    memset(e, 0, sizeof *e);
    e->name = name;
    e->rec = u;
    auth_perms_init(&e->perms);
    return 0;
}

static int load_role(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    load_ctx_t *c = arg;
    (void)key;
    (void)key_len;
    Authpb__Role *r = authpb__role__unpack(NULL, val_len, val);
    auth_role_t *grown = r ? realloc(c->as->roles, (c->as->n_roles + 1) * sizeof *grown) : NULL;
    char *name = r ? bytes_to_str(&r->name) : NULL;
    if (!r || !grown || !name) {
        if (grown) c->as->roles = grown;
        if (r) authpb__role__free_unpacked(r, NULL);
        free(name);
        c->err = AUTH_E_IO;
        return 1;
    }
    c->as->roles = grown;
    auth_role_t *e = &grown[c->as->n_roles++];
    e->name = name;
    e->rec = r;
    return 0;
}

/* etcd's refreshRangePermCache: each user's roles merged into intervals. */
static int build_perms(auth_store_t *as) {
    for (size_t i = 0; i < as->n_users; i++) {
        auth_user_t *u = &as->users[i];
        u->root = user_has_role(u->rec, ROOT_NAME);
        for (size_t r = 0; r < u->rec->n_roles; r++) {
            auth_role_t *role = find_role(as, u->rec->roles[r]);
            if (!role) continue;
            for (size_t p = 0; p < role->rec->n_keypermission; p++) {
                const Authpb__Permission *perm = role->rec->keypermission[p];
                int rc = auth_perms_add(&u->perms, perm->permtype, perm->key.data, perm->key.len,
                                        perm->range_end.data, perm->range_end.len);
                if (rc == -ENOMEM) return AUTH_E_NOMEM;
            }
        }
        auth_perms_finish(&u->perms);
    }
    return AUTH_OK;
}

/* Replaces the in-memory copy with what LevelDB holds. Caller holds mu (or
 * owns as exclusively). */
static int reload(auth_store_t *as) {
    clear_state(as);
    uint8_t *val = NULL;
    size_t len = 0;
    int rc = mvcc_raw_get(as->m, KEY_ENABLED, sizeof KEY_ENABLED - 1, &val, &len);
    if (rc == MVCC_ERR_IO || (rc == MVCC_OK && len != 1)) {
        free(val);
        return AUTH_E_IO; /* unreadable or corrupt: never "disabled" */
    }
    as->enabled = rc == MVCC_OK && val[0] == 1;
    free(val);
    val = NULL;
    rc = mvcc_raw_get(as->m, KEY_REVISION, sizeof KEY_REVISION - 1, &val, &len);
    if (rc == MVCC_ERR_IO || (rc == MVCC_OK && len != 8)) {
        free(val);
        return AUTH_E_IO;
    }
    as->rev = 1; /* etcd's NewAuthStore commits revision 1 on a fresh store */
    if (rc == MVCC_OK && len == 8) {
        as->rev = get_be64(val);
    }
    free(val);

    load_ctx_t c = {as, AUTH_OK};
    if (mvcc_raw_scan(as->m, (const uint8_t *)"U", 1, load_user, &c) != MVCC_OK && c.err == AUTH_OK)
        c.err = AUTH_E_IO;
    if (c.err == AUTH_OK && mvcc_raw_scan(as->m, (const uint8_t *)"R", 1, load_role, &c) != MVCC_OK &&
        c.err == AUTH_OK)
        c.err = AUTH_E_IO;
    if (c.err != AUTH_OK) return c.err;
    return build_perms(as);
}

int auth_store_open(mvcc_t *m, auth_store_t **out) {
    auth_store_t *as = calloc(1, sizeof *as);
    if (!as) return AUTH_E_NOMEM;
    as->m = m;
    pthread_mutex_init(&as->mu, NULL);
    int rc = reload(as);
    if (rc != AUTH_OK) {
        auth_store_free(as);
        return rc;
    }
    *out = as;
    return AUTH_OK;
}

int auth_store_reload(auth_store_t *as) {
    pthread_mutex_lock(&as->mu);
    int rc = reload(as);
    pthread_mutex_unlock(&as->mu);
    return rc;
}

void auth_store_free(auth_store_t *as) {
    if (!as) return;
    clear_state(as);
    pthread_mutex_destroy(&as->mu);
    free(as);
}

void auth_effect_clear(auth_effect_t *e) {
    free(e->invalidate_user);
    memset(e, 0, sizeof *e);
}

/* ---- writing records ---------------------------------------------------- */

static int put_record(mvcc_txn_t *t, char space, const char *name, const ProtobufCMessage *msg) {
    size_t nl = strlen(name);
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *key = malloc(nl + 1);
    uint8_t *val = malloc(len ? len : 1);
    int rc = AUTH_E_NOMEM;
    if (key && val) {
        key[0] = (uint8_t)space;
        memcpy(key + 1, name, nl);
        protobuf_c_message_pack(msg, val);
        rc = mvcc_txn_raw_put(t, key, nl + 1, val, len) == MVCC_OK ? AUTH_OK : AUTH_E_IO;
    }
    free(key);
    free(val);
    return rc;
}

static int delete_record(mvcc_txn_t *t, char space, const char *name) {
    size_t nl = strlen(name);
    uint8_t *key = malloc(nl + 1);
    if (!key) return AUTH_E_NOMEM;
    key[0] = (uint8_t)space;
    memcpy(key + 1, name, nl);
    int rc = mvcc_txn_raw_delete(t, key, nl + 1) == MVCC_OK ? AUTH_OK : AUTH_E_IO;
    free(key);
    return rc;
}

static int put_revision(mvcc_txn_t *t, uint64_t rev) {
    uint8_t v[8];
    put_be64(v, rev);
    return mvcc_txn_raw_put(t, KEY_REVISION, sizeof KEY_REVISION - 1, v, 8) == MVCC_OK ? AUTH_OK : AUTH_E_IO;
}

static int put_enabled(mvcc_txn_t *t, bool on) {
    uint8_t v = on ? 1 : 0;
    return mvcc_txn_raw_put(t, KEY_ENABLED, sizeof KEY_ENABLED - 1, &v, 1) == MVCC_OK ? AUTH_OK : AUTH_E_IO;
}

/* A user record with roles replaced (roles borrowed, not owned). */
static Authpb__User user_with_roles(const Authpb__User *u, char **roles, size_t n_roles) {
    Authpb__User nu = *u;
    nu.roles = roles;
    nu.n_roles = n_roles;
    return nu;
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- the operations (etcd auth/store.go) ------------------------------ */

typedef struct op_ctx {
    auth_store_t *as;
    mvcc_txn_t *t;
    bool bump;  /* the revision grows with this change */
    bool wrote; /* something to commit */
    auth_effect_t *eff;
} op_ctx_t;

static int op_enable(op_ctx_t *c) {
    auth_store_t *as = c->as;
    if (as->enabled) return AUTH_OK;
    auth_user_t *root = find_user(as, ROOT_NAME);
    if (!root) return AUTH_E_ROOT_USER_NOT_EXIST;
    if (!root->root) return AUTH_E_ROOT_ROLE_NOT_EXIST;
    c->wrote = true;
    if (c->eff) {
        c->eff->enable_changed = 1;
        c->eff->enabled = 1;
    }
    return put_enabled(c->t, true);
}

static int op_disable(op_ctx_t *c) {
    if (!c->as->enabled) return AUTH_OK;
    c->wrote = c->bump = true;
    if (c->eff) {
        c->eff->enable_changed = 1;
        c->eff->enabled = 0;
    }
    return put_enabled(c->t, false);
}

static int op_user_add(op_ctx_t *c, const Etcdserverpb__AuthUserAddRequest *r) {
    if (!r->name || !*r->name) return AUTH_E_USER_EMPTY;
    if (find_user(c->as, r->name)) return AUTH_E_USER_ALREADY_EXIST;
    bool nopass = r->options && r->options->no_password;
    Authpb__UserAddOptions opts = AUTHPB__USER_ADD_OPTIONS__INIT;
    opts.no_password = nopass;
    Authpb__User u = AUTHPB__USER__INIT;
    u.name.data = (uint8_t *)r->name;
    u.name.len = strlen(r->name);
    if (!nopass && r->password) {
        u.password.data = (uint8_t *)r->password;
        u.password.len = strlen(r->password);
    }
    u.options = &opts;
    c->wrote = c->bump = true;
    return put_record(c->t, 'U', r->name, &u.base);
}

static int set_invalidate(op_ctx_t *c, const char *user) {
    if (!c->eff) return AUTH_OK;
    free(c->eff->invalidate_user);
    c->eff->invalidate_user = strdup(user);
    return c->eff->invalidate_user ? AUTH_OK : AUTH_E_NOMEM;
}

static int op_user_delete(op_ctx_t *c, const Etcdserverpb__AuthUserDeleteRequest *r) {
    const char *name = r->name ? r->name : "";
    if (c->as->enabled && strcmp(name, ROOT_NAME) == 0) return AUTH_E_INVALID_AUTH_MGMT;
    if (!find_user(c->as, name)) return AUTH_E_USER_NOT_FOUND;
    c->wrote = c->bump = true;
    int rc = delete_record(c->t, 'U', name);
    return rc == AUTH_OK ? set_invalidate(c, name) : rc;
}

static int op_user_passwd(op_ctx_t *c, const Etcdserverpb__AuthUserChangePasswordRequest *r) {
    const char *name = r->name ? r->name : "";
    auth_user_t *u = find_user(c->as, name);
    if (!u) return AUTH_E_USER_NOT_FOUND;
    Authpb__User nu = *u->rec;
    nu.password.data = (uint8_t *)(r->password ? r->password : "");
    nu.password.len = r->password ? strlen(r->password) : 0;
    c->wrote = c->bump = true;
    int rc = put_record(c->t, 'U', name, &nu.base);
    return rc == AUTH_OK ? set_invalidate(c, name) : rc;
}

static int op_user_grant(op_ctx_t *c, const Etcdserverpb__AuthUserGrantRoleRequest *r) {
    const char *name = r->user ? r->user : "";
    const char *role = r->role ? r->role : "";
    auth_user_t *u = find_user(c->as, name);
    if (!u) return AUTH_E_USER_NOT_FOUND;
    if (strcmp(role, ROOT_NAME) != 0 && !find_role(c->as, role)) return AUTH_E_ROLE_NOT_FOUND;
    if (user_has_role(u->rec, role)) return AUTH_OK; /* etcd: ignored, no revision change */
    size_t n = u->rec->n_roles + 1;
    char **roles = malloc(n * sizeof *roles);
    if (!roles) return AUTH_E_NOMEM;
    if (u->rec->n_roles) memcpy(roles, u->rec->roles, u->rec->n_roles * sizeof *roles);
    roles[n - 1] = (char *)role;
    qsort(roles, n, sizeof *roles, cmp_strp);
    Authpb__User nu = user_with_roles(u->rec, roles, n);
    c->wrote = c->bump = true;
    int rc = put_record(c->t, 'U', name, &nu.base);
    free(roles);
    return rc;
}

/* Writes user u without role (role must be among its roles). */
static int put_user_without_role(op_ctx_t *c, const auth_user_t *u, const char *role) {
    char **roles = malloc((u->rec->n_roles ? u->rec->n_roles : 1) * sizeof *roles);
    if (!roles) return AUTH_E_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < u->rec->n_roles; i++)
        if (strcmp(u->rec->roles[i], role) != 0) roles[n++] = u->rec->roles[i];
    Authpb__User nu = user_with_roles(u->rec, roles, n);
    int rc = put_record(c->t, 'U', u->name, &nu.base);
    free(roles);
    return rc;
}

static int op_user_revoke(op_ctx_t *c, const Etcdserverpb__AuthUserRevokeRoleRequest *r) {
    const char *name = r->name ? r->name : "";
    const char *role = r->role ? r->role : "";
    if (c->as->enabled && strcmp(name, ROOT_NAME) == 0 && strcmp(role, ROOT_NAME) == 0)
        return AUTH_E_INVALID_AUTH_MGMT;
    auth_user_t *u = find_user(c->as, name);
    if (!u) return AUTH_E_USER_NOT_FOUND;
    if (!user_has_role(u->rec, role)) return AUTH_E_ROLE_NOT_GRANTED;
    c->wrote = c->bump = true;
    return put_user_without_role(c, u, role);
}

static int op_role_add(op_ctx_t *c, const Etcdserverpb__AuthRoleAddRequest *r) {
    if (!r->name || !*r->name) return AUTH_E_ROLE_EMPTY;
    if (find_role(c->as, r->name)) return AUTH_E_ROLE_ALREADY_EXIST;
    Authpb__Role role = AUTHPB__ROLE__INIT;
    role.name.data = (uint8_t *)r->name;
    role.name.len = strlen(r->name);
    c->wrote = c->bump = true;
    return put_record(c->t, 'R', r->name, &role.base);
}

static int op_role_delete(op_ctx_t *c, const Etcdserverpb__AuthRoleDeleteRequest *r) {
    const char *name = r->role ? r->role : "";
    if (c->as->enabled && strcmp(name, ROOT_NAME) == 0) return AUTH_E_INVALID_AUTH_MGMT;
    if (!find_role(c->as, name)) return AUTH_E_ROLE_NOT_FOUND;
    c->wrote = c->bump = true;
    int rc = delete_record(c->t, 'R', name);
    for (size_t i = 0; rc == AUTH_OK && i < c->as->n_users; i++)
        if (user_has_role(c->as->users[i].rec, name)) rc = put_user_without_role(c, &c->as->users[i], name);
    return rc;
}

static int cmp_bin(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
    return auth_bytes_cmp(a->data, a->len, b->data, b->len);
}

static bool bin_equal(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static int cmp_perm_key(const void *a, const void *b) {
    const Authpb__Permission *x = *(Authpb__Permission *const *)a;
    const Authpb__Permission *y = *(Authpb__Permission *const *)b;
    return cmp_bin(&x->key, &y->key);
}

static int op_role_grant(op_ctx_t *c, const Etcdserverpb__AuthRoleGrantPermissionRequest *r) {
    const char *name = r->name ? r->name : "";
    auth_role_t *role = find_role(c->as, name);
    if (!role) return AUTH_E_ROLE_NOT_FOUND;
    Authpb__Permission empty = AUTHPB__PERMISSION__INIT;
    const Authpb__Permission *want = r->perm ? r->perm : &empty;
    size_t n = role->rec->n_keypermission;
    Authpb__Permission **perms = malloc((n + 1) * sizeof *perms);
    Authpb__Permission *copies = malloc((n + 1) * sizeof *copies);
    if (!perms || !copies) {
        free(perms);
        free(copies);
        return AUTH_E_NOMEM;
    }
    /* etcd: the first permission with key >= the new key is updated in
     * place when key and range_end both match; otherwise the new one is
     * appended and the list sorted by key (stable enough: keys differ or
     * range ends differ). */
    size_t idx = 0;
    while (idx < n && cmp_bin(&role->rec->keypermission[idx]->key, &want->key) < 0) idx++;
    bool update = idx < n && bin_equal(&role->rec->keypermission[idx]->key, &want->key) &&
                  bin_equal(&role->rec->keypermission[idx]->range_end, &want->range_end);
    for (size_t i = 0; i < n; i++) {
        copies[i] = *role->rec->keypermission[i];
        perms[i] = &copies[i];
    }
    size_t total = n;
    if (update) {
        copies[idx].permtype = want->permtype;
    } else {
        copies[n] = *want;
        perms[n] = &copies[n];
        total = n + 1;
        qsort(perms, total, sizeof *perms, cmp_perm_key);
    }
    Authpb__Role nr = *role->rec;
    nr.keypermission = perms;
    nr.n_keypermission = total;
    c->wrote = c->bump = true;
    int rc = put_record(c->t, 'R', name, &nr.base);
    free(perms);
    free(copies);
    return rc;
}

static int op_role_revoke(op_ctx_t *c, const Etcdserverpb__AuthRoleRevokePermissionRequest *r) {
    const char *name = r->role ? r->role : "";
    auth_role_t *role = find_role(c->as, name);
    if (!role) return AUTH_E_ROLE_NOT_FOUND;
    size_t n = role->rec->n_keypermission;
    Authpb__Permission **kept = malloc((n ? n : 1) * sizeof *kept);
    if (!kept) return AUTH_E_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        Authpb__Permission *p = role->rec->keypermission[i];
        if (!bin_equal(&p->key, &r->key) || !bin_equal(&p->range_end, &r->range_end)) kept[k++] = p;
    }
    int rc = AUTH_E_PERMISSION_NOT_GRANTED;
    if (k != n) {
        Authpb__Role nr = *role->rec;
        nr.keypermission = kept;
        nr.n_keypermission = k;
        c->wrote = c->bump = true;
        rc = put_record(c->t, 'R', name, &nr.base);
    }
    free(kept);
    return rc;
}

int auth_store_is_request(const Kshim__InternalRequest *r) {
    return r->auth_enable || r->auth_disable || r->auth_user_add || r->auth_user_delete ||
           r->auth_user_change_password || r->auth_user_grant_role || r->auth_user_revoke_role ||
           r->auth_role_add || r->auth_role_delete || r->auth_role_grant_permission ||
           r->auth_role_revoke_permission;
}

static int run_op(op_ctx_t *c, const Kshim__InternalRequest *r, const ProtobufCMessageDescriptor **resp) {
    if (r->auth_enable) {
        *resp = &etcdserverpb__auth_enable_response__descriptor;
        return op_enable(c);
    }
    if (r->auth_disable) {
        *resp = &etcdserverpb__auth_disable_response__descriptor;
        return op_disable(c);
    }
    if (r->auth_user_add) {
        *resp = &etcdserverpb__auth_user_add_response__descriptor;
        return op_user_add(c, r->auth_user_add);
    }
    if (r->auth_user_delete) {
        *resp = &etcdserverpb__auth_user_delete_response__descriptor;
        return op_user_delete(c, r->auth_user_delete);
    }
    if (r->auth_user_change_password) {
        *resp = &etcdserverpb__auth_user_change_password_response__descriptor;
        return op_user_passwd(c, r->auth_user_change_password);
    }
    if (r->auth_user_grant_role) {
        *resp = &etcdserverpb__auth_user_grant_role_response__descriptor;
        return op_user_grant(c, r->auth_user_grant_role);
    }
    if (r->auth_user_revoke_role) {
        *resp = &etcdserverpb__auth_user_revoke_role_response__descriptor;
        return op_user_revoke(c, r->auth_user_revoke_role);
    }
    if (r->auth_role_add) {
        *resp = &etcdserverpb__auth_role_add_response__descriptor;
        return op_role_add(c, r->auth_role_add);
    }
    if (r->auth_role_delete) {
        *resp = &etcdserverpb__auth_role_delete_response__descriptor;
        return op_role_delete(c, r->auth_role_delete);
    }
    if (r->auth_role_grant_permission) {
        *resp = &etcdserverpb__auth_role_grant_permission_response__descriptor;
        return op_role_grant(c, r->auth_role_grant_permission);
    }
    assert(r->auth_role_revoke_permission);
    *resp = &etcdserverpb__auth_role_revoke_permission_response__descriptor;
    return op_role_revoke(c, r->auth_role_revoke_permission);
}

/* Every auth management response is just {header}: build one generically
 * from its descriptor. */
static int pack_header_only(const ProtobufCMessageDescriptor *desc, const kv_header_info_t *hdr,
                            int64_t revision, kv_result_t *res) {
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    h.cluster_id = hdr->cluster_id;
    h.member_id = hdr->member_id;
    h.raft_term = hdr->raft_term;
    h.revision = revision;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, "header");
    ProtobufCMessage *msg = calloc(1, desc->sizeof_message);
    if (!f || !msg) {
        free(msg);
        return AUTH_E_NOMEM;
    }
    protobuf_c_message_init(desc, msg);
    *(Etcdserverpb__ResponseHeader **)((char *)msg + f->offset) = &h;
    size_t len = protobuf_c_message_get_packed_size(msg);
    res->resp = malloc(len ? len : 1);
    if (!res->resp) {
        free(msg);
        return AUTH_E_NOMEM;
    }
    protobuf_c_message_pack(msg, res->resp);
    res->resp_len = len;
    res->revision = revision;
    free(msg);
    return AUTH_OK;
}

static void set_error(kv_result_t *res, int err) {
    res->code = auth_store_code(err);
    snprintf(res->message, sizeof res->message, "%s", auth_store_strerror(err));
}

int auth_store_apply(auth_store_t *as, uint64_t index, const Kshim__InternalRequest *req,
                     const kv_header_info_t *hdr, kv_result_t *res, auth_effect_t *eff) {
    if (!req || !auth_store_is_request(req)) return 0;
    if (index <= mvcc_apply_index(as->m)) return 1;
    kv_arena_t arena;
    kv_arena_init(&arena);
    mvcc_txn_t *t = NULL;
    if (mvcc_txn_begin_write(as->m, &arena, &t) != MVCC_OK) {
        kv_arena_free(&arena);
        return -1;
    }
    pthread_mutex_lock(&as->mu);
    op_ctx_t c = {.as = as, .t = t, .eff = eff};
    const ProtobufCMessageDescriptor *desc = NULL;
    int err = run_op(&c, req, &desc);
    int storage_failed = err == AUTH_E_IO; /* never taken for a refusal */
    if (storage_failed) {
        mvcc_txn_end(t);
    } else if (err == AUTH_OK && c.wrote) {
        if (c.bump) err = put_revision(t, as->rev + 1);
        /* The caches are reloaded from what LevelDB holds: write the apply
         * group (mvcc.h), this change included, first. */
        if (err == AUTH_OK && (mvcc_txn_commit(t, index) != MVCC_OK || mvcc_group_flush(as->m) != MVCC_OK))
            err = AUTH_E_IO;
        if (err == AUTH_OK && reload(as) != AUTH_OK) err = AUTH_E_IO;
        storage_failed = err == AUTH_E_IO;
        mvcc_txn_end(t);
    } else {
        /* Refused (or nothing to change): drop the batch, keep the index. */
        mvcc_txn_end(t);
        storage_failed = mvcc_set_applied(as->m, index) != MVCC_OK;
    }
    pthread_mutex_unlock(&as->mu);
    kv_arena_free(&arena);
    if (storage_failed) return -1;
    if (err == AUTH_OK) err = pack_header_only(desc, hdr, mvcc_apply_revision(as->m), res);
    if (err != AUTH_OK) {
        set_error(res, err);
        if (eff) auth_effect_clear(eff);
    }
    return 1;
}

/* ---- queries -------------------------------------------------------------- */

bool auth_store_enabled(auth_store_t *as) {
    pthread_mutex_lock(&as->mu);
    bool on = as->enabled;
    pthread_mutex_unlock(&as->mu);
    return on;
}

uint64_t auth_store_revision(auth_store_t *as) {
    pthread_mutex_lock(&as->mu);
    uint64_t rev = as->rev;
    pthread_mutex_unlock(&as->mu);
    return rev;
}

int auth_store_check_range(auth_store_t *as, const char *user, uint64_t rev, int want, const uint8_t *key,
                           size_t key_len, const uint8_t *end, size_t end_len) {
    int rc = AUTH_OK;
    pthread_mutex_lock(&as->mu);
    if (!as->enabled) {
        rc = AUTH_OK;
    } else if (rev == 0) {
        rc = AUTH_E_USER_EMPTY;
    } else if (rev < as->rev) {
        rc = AUTH_E_OLD_REVISION;
    } else {
        auth_user_t *u = find_user(as, user ? user : "");
        if (!u)
            rc = AUTH_E_PERMISSION_DENIED;
        else if (!u->root && !auth_perms_can_range(&u->perms, want, key, key_len, end, end_len))
            rc = AUTH_E_PERMISSION_DENIED;
    }
    pthread_mutex_unlock(&as->mu);
    return rc;
}

int auth_store_check_admin(auth_store_t *as, const char *user) {
    int rc = AUTH_OK;
    pthread_mutex_lock(&as->mu);
    if (as->enabled) {
        if (!user || !*user) {
            rc = AUTH_E_USER_EMPTY;
        } else {
            auth_user_t *u = find_user(as, user);
            rc = !u ? AUTH_E_USER_NOT_FOUND : !u->root ? AUTH_E_PERMISSION_DENIED : AUTH_OK;
        }
    }
    pthread_mutex_unlock(&as->mu);
    return rc;
}

bool auth_store_has_role(auth_store_t *as, const char *user, const char *role) {
    pthread_mutex_lock(&as->mu);
    auth_user_t *u = user ? find_user(as, user) : NULL;
    bool has = u && role && user_has_role(u->rec, role);
    pthread_mutex_unlock(&as->mu);
    return has;
}

int auth_store_user_hash(auth_store_t *as, const char *user, char **hash, size_t *hash_len, uint64_t *rev) {
    int rc = AUTH_OK;
    pthread_mutex_lock(&as->mu);
    auth_user_t *u = find_user(as, user ? user : "");
    if (!as->enabled)
        rc = AUTH_E_AUTH_NOT_ENABLED;
    else if (!u)
        rc = AUTH_E_AUTH_FAILED;
    else if (u->rec->options && u->rec->options->no_password)
        rc = AUTH_E_NO_PASSWORD_USER;
    else if (!(*hash = bytes_to_str(&u->rec->password)))
        rc = AUTH_E_NOMEM;
    else {
        *hash_len = u->rec->password.len;
        *rev = as->rev;
    }
    pthread_mutex_unlock(&as->mu);
    return rc;
}

/* Deep copy through the wire format: simple and obviously independent. */
static ProtobufCMessage *copy_message(const ProtobufCMessage *msg) {
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return NULL;
    protobuf_c_message_pack(msg, buf);
    ProtobufCMessage *copy = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
    free(buf);
    return copy;
}

Authpb__User *auth_store_get_user(auth_store_t *as, const char *name) {
    pthread_mutex_lock(&as->mu);
    auth_user_t *u = find_user(as, name ? name : "");
    Authpb__User *copy = u ? (Authpb__User *)copy_message(&u->rec->base) : NULL;
    pthread_mutex_unlock(&as->mu);
    return copy;
}

Authpb__Role *auth_store_get_role(auth_store_t *as, const char *name) {
    pthread_mutex_lock(&as->mu);
    auth_role_t *r = find_role(as, name ? name : "");
    Authpb__Role *copy = r ? (Authpb__Role *)copy_message(&r->rec->base) : NULL;
    pthread_mutex_unlock(&as->mu);
    return copy;
}

void auth_store_free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static int list_names(auth_store_t *as, bool users, char ***names, size_t *n) {
    pthread_mutex_lock(&as->mu);
    size_t count = users ? as->n_users : as->n_roles;
    char **out = calloc(count ? count : 1, sizeof *out);
    int rc = out ? AUTH_OK : AUTH_E_NOMEM;
    for (size_t i = 0; rc == AUTH_OK && i < count; i++) {
        out[i] = strdup(users ? as->users[i].name : as->roles[i].name);
        if (!out[i]) rc = AUTH_E_NOMEM;
    }
    pthread_mutex_unlock(&as->mu);
    if (rc != AUTH_OK) {
        if (out) auth_store_free_names(out, count);
        return rc;
    }
    *names = out;
    *n = count;
    return AUTH_OK;
}

int auth_store_list_users(auth_store_t *as, char ***names, size_t *n) {
    return list_names(as, true, names, n);
}

int auth_store_list_roles(auth_store_t *as, char ***names, size_t *n) {
    return list_names(as, false, names, n);
}
