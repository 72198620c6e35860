/*
 * svc_auth.c: the etcd Auth service (/etcdserverpb.Auth/...): all 16 RPCs
 * plus AuthStatus, the auth token provider and the auth state machine hook.
 *
 * Management requests (enable/disable, user/role changes) need the root
 * role while auth is enabled (checked here before proposing), then go
 * through Raft and are applied by storage/auth/auth_store.c on the raft thread
 * (svc_auth_apply). Every entry carries the identity it was checked with,
 * and svc_auth_check_apply checks it again at apply (etcd's authApplierV3,
 * storage/auth/auth_request.h): a write checked before an auth change that
 * is applied after it is refused "etcdserver: revision of auth store is
 * old", a management request by a user who lost the root role meanwhile
 * "etcdserver: permission denied". Passwords are bcrypt-hashed before proposing, on a
 * short-lived worker thread so the loop never blocks (~60 ms at cost 10);
 * the Raft entry carries the hash in the request's password field.
 * Reads (UserGet/List, RoleGet/List, AuthStatus) are served from the store
 * on the loop thread (single voter: applied == committed).
 *
 * Authenticate checks the password on a worker thread, then issues a token
 * from the provider (--auth-token simple or jwt; a JWT is signed on that
 * worker too, a simple token made on the loop). Simple tokens live in this
 * member's memory only ("<16 letters>.<applied index>"): kshim.proto has no
 * InternalAuthenticateRequest, which is fine for a single voter; a
 * multi-member cluster needs it to replicate simple tokens. Failed attempts
 * are answered after AUTH_FAIL_DELAY_MS (a loop timer, not a sleep).
 *
 * Threads: the token provider is shared by the loop thread (issue, resolve,
 * expire) and the raft thread (invalidate on user delete / password change,
 * enable/disable): tok_mu guards it. The store has its own lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth_check.h"
#include "auth_hash.h"
#include "auth_request.h"
#include "auth_token.h"
#include "log.h"
#include "services.h"

#define AUTH_FAIL_DELAY_MS 200
#define TOKEN_SWEEP_MS 1000
#define MAX_WORKERS 32 /* concurrent bcrypt threads; more calls are refused */

typedef struct svc_auth {
    server_t *s;
    pthread_mutex_t store_mu; /* guards opening the store (raft thread may apply first) */
    auth_store_t *store;
    pthread_mutex_t tok_mu;
    auth_token_t *tokens;
    loop_timer_t *sweep;
    atomic_int workers; /* hashing threads still running */
} svc_auth_t;

static uint64_t now_realtime_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- store and tokens (any thread) ------------------------------------- */

static auth_store_t *open_store(svc_auth_t *a) {
    pthread_mutex_lock(&a->store_mu);
    if (!a->store) {
        int rc = auth_store_open(a->s->mvcc, &a->store);
        if (rc != AUTH_OK) log_error("cannot load the auth store: %s", auth_store_strerror(rc));
    }
    auth_store_t *as = a->store;
    pthread_mutex_unlock(&a->store_mu);
    return as;
}

auth_store_t *svc_auth_store(server_t *s) { return s->auth ? s->auth->store : NULL; }

int svc_auth_token_info(server_t *s, const char *token, auth_token_info_t *info) {
    svc_auth_t *a = s->auth;
    if (!a || !a->store) return AUTH_TOKEN_EINVALID;
    uint64_t rev = auth_store_revision(a->store);
    pthread_mutex_lock(&a->tok_mu);
    int rc = auth_token_info(a->tokens, token, rev, now_realtime_ms(), info);
    pthread_mutex_unlock(&a->tok_mu);
    return rc;
}

/* ---- answering --------------------------------------------------------- */

static void finish_store_error(grpc_call_t *call, int err) {
    grpc_call_finish(call, (grpc_status_t)auth_store_code(err), auth_store_strerror(err));
}

/* ---- the RPC table ------------------------------------------------------- */

typedef enum rpc_kind {
    RPC_ENABLE,
    RPC_DISABLE,
    RPC_STATUS,
    RPC_AUTHENTICATE,
    RPC_USER_ADD,
    RPC_USER_GET,
    RPC_USER_LIST,
    RPC_USER_DELETE,
    RPC_USER_PASSWD,
    RPC_USER_GRANT,
    RPC_USER_REVOKE,
    RPC_ROLE_ADD,
    RPC_ROLE_GET,
    RPC_ROLE_LIST,
    RPC_ROLE_DELETE,
    RPC_ROLE_GRANT,
    RPC_ROLE_REVOKE,
    RPC_COUNT
} rpc_kind_t;

typedef struct auth_rpc {
    const char *path;
    const ProtobufCMessageDescriptor *req_desc;
    rpc_kind_t kind;
    server_t *s;
} auth_rpc_t;

static auth_rpc_t rpcs[RPC_COUNT] = {
    {"/etcdserverpb.Auth/AuthEnable", &etcdserverpb__auth_enable_request__descriptor, RPC_ENABLE, NULL},
    {"/etcdserverpb.Auth/AuthDisable", &etcdserverpb__auth_disable_request__descriptor, RPC_DISABLE, NULL},
    {"/etcdserverpb.Auth/AuthStatus", &etcdserverpb__auth_status_request__descriptor, RPC_STATUS, NULL},
    {"/etcdserverpb.Auth/Authenticate", &etcdserverpb__authenticate_request__descriptor, RPC_AUTHENTICATE,
     NULL},
    {"/etcdserverpb.Auth/UserAdd", &etcdserverpb__auth_user_add_request__descriptor, RPC_USER_ADD, NULL},
    {"/etcdserverpb.Auth/UserGet", &etcdserverpb__auth_user_get_request__descriptor, RPC_USER_GET, NULL},
    {"/etcdserverpb.Auth/UserList", &etcdserverpb__auth_user_list_request__descriptor, RPC_USER_LIST, NULL},
    {"/etcdserverpb.Auth/UserDelete", &etcdserverpb__auth_user_delete_request__descriptor, RPC_USER_DELETE,
     NULL},
    {"/etcdserverpb.Auth/UserChangePassword", &etcdserverpb__auth_user_change_password_request__descriptor,
     RPC_USER_PASSWD, NULL},
    {"/etcdserverpb.Auth/UserGrantRole", &etcdserverpb__auth_user_grant_role_request__descriptor,
     RPC_USER_GRANT, NULL},
    {"/etcdserverpb.Auth/UserRevokeRole", &etcdserverpb__auth_user_revoke_role_request__descriptor,
     RPC_USER_REVOKE, NULL},
    {"/etcdserverpb.Auth/RoleAdd", &etcdserverpb__auth_role_add_request__descriptor, RPC_ROLE_ADD, NULL},
    {"/etcdserverpb.Auth/RoleGet", &etcdserverpb__auth_role_get_request__descriptor, RPC_ROLE_GET, NULL},
    {"/etcdserverpb.Auth/RoleList", &etcdserverpb__auth_role_list_request__descriptor, RPC_ROLE_LIST, NULL},
    {"/etcdserverpb.Auth/RoleDelete", &etcdserverpb__auth_role_delete_request__descriptor, RPC_ROLE_DELETE,
     NULL},
    {"/etcdserverpb.Auth/RoleGrantPermission", &etcdserverpb__auth_role_grant_permission_request__descriptor,
     RPC_ROLE_GRANT, NULL},
    {"/etcdserverpb.Auth/RoleRevokePermission",
     &etcdserverpb__auth_role_revoke_permission_request__descriptor, RPC_ROLE_REVOKE, NULL},
};

/* Puts msg (of kind) into its InternalRequest field and proposes it as
 * id's (the admin check is made again at apply). */
static void propose_request(server_t *s, grpc_call_t *call, rpc_kind_t kind, ProtobufCMessage *msg,
                            const auth_identity_t *id) {
    Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
    switch (kind) {
    case RPC_ENABLE: ir.auth_enable = (Etcdserverpb__AuthEnableRequest *)msg; break;
    case RPC_DISABLE: ir.auth_disable = (Etcdserverpb__AuthDisableRequest *)msg; break;
    case RPC_USER_ADD: ir.auth_user_add = (Etcdserverpb__AuthUserAddRequest *)msg; break;
    case RPC_USER_DELETE: ir.auth_user_delete = (Etcdserverpb__AuthUserDeleteRequest *)msg; break;
    case RPC_USER_PASSWD:
        ir.auth_user_change_password = (Etcdserverpb__AuthUserChangePasswordRequest *)msg;
        break;
    case RPC_USER_GRANT: ir.auth_user_grant_role = (Etcdserverpb__AuthUserGrantRoleRequest *)msg; break;
    case RPC_USER_REVOKE: ir.auth_user_revoke_role = (Etcdserverpb__AuthUserRevokeRoleRequest *)msg; break;
    case RPC_ROLE_ADD: ir.auth_role_add = (Etcdserverpb__AuthRoleAddRequest *)msg; break;
    case RPC_ROLE_DELETE: ir.auth_role_delete = (Etcdserverpb__AuthRoleDeleteRequest *)msg; break;
    case RPC_ROLE_GRANT:
        ir.auth_role_grant_permission = (Etcdserverpb__AuthRoleGrantPermissionRequest *)msg;
        break;
    case RPC_ROLE_REVOKE:
        ir.auth_role_revoke_permission = (Etcdserverpb__AuthRoleRevokePermissionRequest *)msg;
        break;
    default: grpc_call_finish(call, GRPC_INTERNAL, "etcdserver: not a proposal"); return;
    }
    server_propose_as(s, call, &ir, id->user, id->revision);
}

/* ---- worker jobs: bcrypt off the loop ---------------------------------- */

typedef enum job_kind { JOB_HASH, JOB_VERIFY } job_kind_t;

typedef struct auth_job {
    server_t *s;
    grpc_call_t *call; /* referenced */
    job_kind_t kind;
    rpc_kind_t rpc;        /* JOB_HASH: what to propose */
    ProtobufCMessage *req; /* JOB_HASH: the request, password replaced on success */
    char *password;        /* owned copy, wiped before free */
    size_t password_len;
    char *hash; /* JOB_VERIFY: stored hash */
    size_t hash_len;
    char user[AUTH_USER_MAX]; /* JOB_VERIFY */
    uint64_t auth_rev;
    auth_identity_t proposer; /* JOB_HASH: who asked (the entry carries it) */
    int cost;
    int rc;
    char out[AUTH_HASH_BUF];
    char *token; /* JOB_VERIFY with JWT: signed on the worker */
    int token_rc;
} auth_job_t;

static void job_free(auth_job_t *j) {
    if (j->password) {
        memset(j->password, 0, j->password_len);
        free(j->password);
    }
    free(j->hash);
    free(j->token);
    if (j->req) protobuf_c_message_free_unpacked(j->req, NULL);
    free(j);
}

static void job_done(void *arg);

static int assign_token(server_t *s, const char *user, uint64_t rev, char **token);

static void *job_thread(void *arg) {
    auth_job_t *j = arg;
    svc_auth_t *a = j->s->auth;
    if (j->kind == JOB_HASH)
        j->rc = auth_hash_password(j->password, j->password_len, j->cost, j->out, sizeof j->out);
    else
        j->rc = auth_hash_verify(j->password, j->password_len, j->hash, j->hash_len);
    /* A JWT is an RSA/ECDSA signature (milliseconds for RS256): sign it
     * here, not on the loop. Simple tokens are cheap and stay there. */
    if (j->kind == JOB_VERIFY && j->rc == 0 && auth_token_kind(a->tokens) == AUTH_TOKEN_JWT)
        j->token_rc = assign_token(j->s, j->user, j->auth_rev, &j->token);
    if (j->token) grpc_thread_cleanup(); /* wolfCrypt's per-thread ECC cache */
    if (loop_post(j->s->loop, job_done, j) != 0) {
        /* Shutting down: nobody will answer; the call reference is the
         * loop's to drop and dies with the connections. */
        job_free(j);
    }
    atomic_fetch_sub(&a->workers, 1);
    return NULL;
}

/* Starts j on a worker thread; -1 when too many run already or no thread
 * could be made (the caller answers and frees j). */
static int job_start(auth_job_t *j) {
    svc_auth_t *a = j->s->auth;
    if (atomic_load(&a->workers) >= MAX_WORKERS) return -1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    grpc_call_ref(j->call);
    atomic_fetch_add(&a->workers, 1);
    pthread_t th;
    int rc = pthread_create(&th, &attr, job_thread, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        atomic_fetch_sub(&a->workers, 1);
        grpc_call_unref(j->call);
        return -1;
    }
    return 0;
}

static void auth_failed_later(loop_t *loop, void *arg) {
    (void)loop;
    auth_job_t *j = arg;
    int err = j->rc;
    if (!grpc_call_is_closed(j->call)) finish_store_error(j->call, err);
    grpc_call_unref(j->call);
    job_free(j);
}

/* Answers a failed Authenticate after a delay (j->rc holds the error; the
 * job holds a call reference). */
static void fail_slowly(auth_job_t *j) {
    if (!loop_timer_add(j->s->loop, AUTH_FAIL_DELAY_MS, auth_failed_later, j))
        auth_failed_later(j->s->loop, j);
}

/* Any thread: a new token for user (the provider is shared under tok_mu). */
static int assign_token(server_t *s, const char *user, uint64_t rev, char **token) {
    svc_auth_t *a = s->auth;
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    *token = NULL;
    int rc = AUTH_TOKEN_EEXIST;
    pthread_mutex_lock(&a->tok_mu);
    for (int attempt = 0; attempt < 3 && rc == AUTH_TOKEN_EEXIST; attempt++) {
        char prefix[AUTH_SIMPLE_PREFIX_LEN + 1];
        rc = auth_token_gen_prefix(a->tokens, prefix);
        if (rc == AUTH_TOKEN_OK)
            rc = auth_token_assign(a->tokens, prefix, st.applied_index, user, rev, now_realtime_ms(), token);
    }
    pthread_mutex_unlock(&a->tok_mu);
    return rc;
}

/* Answers Authenticate with the token the worker signed (JWT), or with a
 * new one made here (simple). */
static void issue_token(server_t *s, auth_job_t *j) {
    grpc_call_t *call = j->call;
    char *token = j->token;
    int rc = j->token_rc;
    j->token = NULL;
    /* etcd checks the password, then proposes the Authenticate, which like
     * every Raft request refuses a token in the metadata that is not valid */
    const char *why = NULL;
    grpc_status_t st = auth_check_token(s, call, &why);
    if (st != GRPC_OK) {
        free(token);
        grpc_call_finish(call, st, why);
        return;
    }
    if (!token && rc == AUTH_TOKEN_OK) rc = assign_token(s, j->user, j->auth_rev, &token);
    if (rc != AUTH_TOKEN_OK) {
        free(token);
        grpc_call_finish(call, GRPC_UNKNOWN, auth_token_strerror(rc));
        return;
    }
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    Etcdserverpb__AuthenticateResponse resp = ETCDSERVERPB__AUTHENTICATE_RESPONSE__INIT;
    resp.header = &hdr;
    resp.token = token;
    server_send_message(call, &resp.base, 1);
    free(token);
}

static void job_done(void *arg) {
    auth_job_t *j = arg;
    server_t *s = j->s;
    if (grpc_call_is_closed(j->call)) {
        grpc_call_unref(j->call);
        job_free(j);
        return;
    }
    if (j->kind == JOB_VERIFY) {
        if (j->rc != 0) {
            j->rc = AUTH_E_AUTH_FAILED;
            fail_slowly(j);
            return;
        }
        issue_token(s, j);
    } else if (j->rc != 0) {
        grpc_call_finish(j->call, GRPC_INVALID_ARGUMENT,
                         j->rc == -EINVAL ? "etcdserver: password contains a NUL byte"
                                          : "etcdserver: cannot hash the password");
    } else {
        /* The entry carries the hash, never the password; the unpacked
         * request gets its own string back before it is freed. */
        char **field = j->rpc == RPC_USER_ADD
                           ? &((Etcdserverpb__AuthUserAddRequest *)j->req)->password
                           : &((Etcdserverpb__AuthUserChangePasswordRequest *)j->req)->password;
        char *orig = *field;
        *field = j->out;
        propose_request(s, j->call, j->rpc, j->req, &j->proposer);
        *field = orig;
    }
    grpc_call_unref(j->call);
    job_free(j);
}

/* ---- handlers ------------------------------------------------------------ */

static void on_authenticate(server_t *s, grpc_call_t *call, Etcdserverpb__AuthenticateRequest *r) {
    svc_auth_t *a = s->auth;
    auth_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    j->s = s;
    j->call = call;
    j->kind = JOB_VERIFY;
    const char *name = r->name ? r->name : "";
    int rc = strlen(name) < sizeof j->user
                 ? auth_store_user_hash(a->store, name, &j->hash, &j->hash_len, &j->auth_rev)
                 : AUTH_E_AUTH_FAILED;
    if (rc == AUTH_E_AUTH_NOT_ENABLED || rc == AUTH_E_NOMEM) {
        finish_store_error(call, rc);
        job_free(j);
        return;
    }
    if (rc != AUTH_OK) {
        /* unknown user or no-password user: answered as slowly as a bad password */
        grpc_call_ref(call);
        j->rc = rc;
        fail_slowly(j);
        return;
    }
    snprintf(j->user, sizeof j->user, "%s", name);
    const char *pw = r->password ? r->password : "";
    j->password_len = strlen(pw);
    j->password = strdup(pw);
    if (!j->password || job_start(j) != 0) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
        job_free(j);
    }
}

/* UserAdd (with a password) and ChangePassword: hash, then propose. Takes
 * ownership of msg. */
static void hash_then_propose(server_t *s, grpc_call_t *call, rpc_kind_t kind, ProtobufCMessage *msg,
                              const char *password, const auth_identity_t *id) {
    auth_job_t *j = calloc(1, sizeof *j);
    char *copy = strdup(password ? password : "");
    if (!j || !copy) {
        free(j);
        free(copy);
        protobuf_c_message_free_unpacked(msg, NULL);
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    j->s = s;
    j->call = call;
    j->kind = JOB_HASH;
    j->proposer = *id;
    j->rpc = kind;
    j->req = msg;
    j->password = copy;
    j->password_len = strlen(copy);
    j->cost = auth_hash_cost_or_default((int)s->cfg->bcrypt_cost);
    if (job_start(j) != 0) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
        job_free(j);
    }
}

static void on_user_get(server_t *s, grpc_call_t *call, const auth_identity_t *id,
                        const Etcdserverpb__AuthUserGetRequest *r) {
    const char *msg = NULL;
    const char *name = r->name ? r->name : "";
    grpc_status_t st = auth_check_admin_as(s, id, &msg);
    if (st != GRPC_OK && strcmp(name, id->user) != 0) {
        grpc_call_finish(call, st, msg);
        return;
    }
    Authpb__User *u = auth_store_get_user(s->auth->store, name);
    if (!u) {
        finish_store_error(call, AUTH_E_USER_NOT_FOUND);
        return;
    }
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    Etcdserverpb__AuthUserGetResponse resp = ETCDSERVERPB__AUTH_USER_GET_RESPONSE__INIT;
    resp.header = &hdr;
    resp.roles = u->roles;
    resp.n_roles = u->n_roles;
    server_send_message(call, &resp.base, 1);
    authpb__user__free_unpacked(u, NULL);
}

static void on_role_get(server_t *s, grpc_call_t *call, const auth_identity_t *id,
                        const Etcdserverpb__AuthRoleGetRequest *r) {
    const char *msg = NULL;
    const char *name = r->role ? r->role : "";
    grpc_status_t st = auth_check_admin_as(s, id, &msg);
    if (st != GRPC_OK && !auth_store_has_role(s->auth->store, id->user, name)) {
        grpc_call_finish(call, st, msg);
        return;
    }
    Authpb__Role *role = auth_store_get_role(s->auth->store, name);
    if (!role) {
        finish_store_error(call, AUTH_E_ROLE_NOT_FOUND);
        return;
    }
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    Etcdserverpb__AuthRoleGetResponse resp = ETCDSERVERPB__AUTH_ROLE_GET_RESPONSE__INIT;
    resp.header = &hdr;
    resp.perm = role->keypermission;
    resp.n_perm = role->n_keypermission;
    server_send_message(call, &resp.base, 1);
    authpb__role__free_unpacked(role, NULL);
}

static void on_list(server_t *s, grpc_call_t *call, int users) {
    char **names = NULL;
    size_t n = 0;
    int rc = users ? auth_store_list_users(s->auth->store, &names, &n)
                   : auth_store_list_roles(s->auth->store, &names, &n);
    if (rc != AUTH_OK) {
        finish_store_error(call, rc);
        return;
    }
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    if (users) {
        Etcdserverpb__AuthUserListResponse resp = ETCDSERVERPB__AUTH_USER_LIST_RESPONSE__INIT;
        resp.header = &hdr;
        resp.users = names;
        resp.n_users = n;
        server_send_message(call, &resp.base, 1);
    } else {
        Etcdserverpb__AuthRoleListResponse resp = ETCDSERVERPB__AUTH_ROLE_LIST_RESPONSE__INIT;
        resp.header = &hdr;
        resp.roles = names;
        resp.n_roles = n;
        server_send_message(call, &resp.base, 1);
    }
    auth_store_free_names(names, n);
}

static void on_status(server_t *s, grpc_call_t *call) {
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    server_fill_header(s, &hdr);
    Etcdserverpb__AuthStatusResponse resp = ETCDSERVERPB__AUTH_STATUS_RESPONSE__INIT;
    resp.header = &hdr;
    resp.enabled = auth_store_enabled(s->auth->store);
    resp.authrevision = auth_store_revision(s->auth->store);
    server_send_message(call, &resp.base, 1);
}

/* Handles one call; returns 1 when msg was handed on (and must not be freed
 * by the caller). */
static int dispatch(server_t *s, grpc_call_t *call, rpc_kind_t kind, ProtobufCMessage *msg) {
    if (kind == RPC_STATUS) {
        on_status(s, call);
        return 0;
    }
    if (kind == RPC_AUTHENTICATE) {
        on_authenticate(s, call, (Etcdserverpb__AuthenticateRequest *)msg);
        return 0;
    }
    auth_identity_t id;
    const char *err = NULL;
    grpc_status_t st = auth_identity(s, call, &id, &err);
    if (st != GRPC_OK) {
        grpc_call_finish(call, st, err);
        return 0;
    }
    if (kind == RPC_USER_GET) {
        on_user_get(s, call, &id, (Etcdserverpb__AuthUserGetRequest *)msg);
        return 0;
    }
    if (kind == RPC_ROLE_GET) {
        on_role_get(s, call, &id, (Etcdserverpb__AuthRoleGetRequest *)msg);
        return 0;
    }
    st = auth_check_admin_as(s, &id, &err);
    if (st != GRPC_OK) {
        grpc_call_finish(call, st, err);
        return 0;
    }
    if (kind == RPC_USER_LIST || kind == RPC_ROLE_LIST) {
        on_list(s, call, kind == RPC_USER_LIST);
        return 0;
    }
    if (kind == RPC_USER_ADD) {
        Etcdserverpb__AuthUserAddRequest *r = (Etcdserverpb__AuthUserAddRequest *)msg;
        if (!r->name || !*r->name) {
            finish_store_error(call, AUTH_E_USER_EMPTY);
            return 0;
        }
        if (!(r->options && r->options->no_password)) {
            hash_then_propose(s, call, kind, msg, r->password, &id);
            return 1;
        }
        /* no_password: whatever password was sent stays out of the log */
        char *orig = r->password;
        r->password = "";
        propose_request(s, call, kind, msg, &id);
        r->password = orig;
        return 0;
    }
    if (kind == RPC_USER_PASSWD) {
        Etcdserverpb__AuthUserChangePasswordRequest *r = (Etcdserverpb__AuthUserChangePasswordRequest *)msg;
        Authpb__User *u = auth_store_get_user(s->auth->store, r->name);
        if (!u) { /* etcd finds out at apply, after hashing: same answer */
            finish_store_error(call, AUTH_E_USER_NOT_FOUND);
            return 0;
        }
        authpb__user__free_unpacked(u, NULL);
        hash_then_propose(s, call, kind, msg, r->password, &id);
        return 1;
    }
    propose_request(s, call, kind, msg, &id);
    return 0;
}

static void auth_call(grpc_call_t *call, const uint8_t *data, size_t len, void *ctx) {
    auth_rpc_t *rpc = ctx;
    server_t *s = rpc->s;
    if (!s->auth || !s->auth->store) {
        grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: auth store not loaded");
        return;
    }
    ProtobufCMessage *msg = protobuf_c_message_unpack(rpc->req_desc, NULL, len, data);
    if (!msg) {
        grpc_call_finish(call, GRPC_INTERNAL, "grpc: error unmarshalling request: unexpected EOF");
        return;
    }
    if (server_require_leader(s, call) != 0 || dispatch(s, call, rpc->kind, msg) == 0)
        protobuf_c_message_free_unpacked(msg, NULL);
}

static grpc_method_t auth_methods[RPC_COUNT];

/* ---- lifecycle ----------------------------------------------------------- */

static void sweep_tokens(loop_t *loop, void *arg) {
    svc_auth_t *a = arg;
    pthread_mutex_lock(&a->tok_mu);
    auth_token_expire(a->tokens, now_realtime_ms());
    pthread_mutex_unlock(&a->tok_mu);
    a->sweep = loop_timer_add(loop, TOKEN_SWEEP_MS, sweep_tokens, a);
}

static int auth_reload(server_t *s);

int svc_auth_init(server_t *s, mvcc_options_t *mopts) {
    (void)mopts;
    svc_auth_t *a = calloc(1, sizeof *a);
    if (!a) return -1;
    a->s = s;
    pthread_mutex_init(&a->store_mu, NULL);
    pthread_mutex_init(&a->tok_mu, NULL);
    char err[256] = "";
    int rc = auth_token_new(s->cfg->auth_token, (uint64_t)s->cfg->auth_token_ttl_s * 1000u, &a->tokens, err,
                            sizeof err);
    s->auth = a;
    server_add_reload_hook(s, auth_reload);
    if (rc != AUTH_TOKEN_OK) {
        log_error("--auth-token %s: %s (%s)", s->cfg->auth_token ? s->cfg->auth_token : "",
                  auth_token_strerror(rc), err);
        return -1;
    }
    return 0;
}

/* Reload hook (a Raft snapshot replaced the store): users, roles, the
 * enabled flag and the auth revision come from the new store (tokens are
 * checked against the new revision). */
static int auth_reload(server_t *s) {
    svc_auth_t *a = s->auth;
    auth_store_t *as = a ? open_store(a) : NULL;
    if (!as) return -1;
    int rc = auth_store_reload(as);
    if (rc != AUTH_OK) {
        log_error("snapshot: cannot reload the auth store: %s", auth_store_strerror(rc));
        return -1;
    }
    pthread_mutex_lock(&a->tok_mu);
    if (auth_store_enabled(as))
        auth_token_enable(a->tokens);
    else
        auth_token_disable(a->tokens);
    pthread_mutex_unlock(&a->tok_mu);
    return 0;
}

int svc_auth_start(server_t *s) {
    svc_auth_t *a = s->auth;
    if (!a || !open_store(a)) return -1;
    pthread_mutex_lock(&a->tok_mu);
    if (auth_store_enabled(a->store))
        auth_token_enable(a->tokens);
    else
        auth_token_disable(a->tokens);
    pthread_mutex_unlock(&a->tok_mu);
    for (size_t i = 0; i < RPC_COUNT; i++) {
        rpcs[i].s = s;
        auth_methods[i].path = rpcs[i].path;
        auth_methods[i].on_message = auth_call;
        auth_methods[i].ctx = &rpcs[i];
        grpc_server_register(s->grpc, &auth_methods[i]);
    }
    a->sweep = loop_timer_add(s->loop, TOKEN_SWEEP_MS, sweep_tokens, a);
    return 0;
}

void svc_auth_stop(server_t *s) {
    svc_auth_t *a = s->auth;
    if (!a) return;
    for (int i = 0; i < 500 && atomic_load(&a->workers) > 0; i++)
        usleep(10000); /* bcrypt jobs finish in well under a second */
    if (a->sweep && s->loop) loop_timer_cancel(s->loop, a->sweep);
    if (atomic_load(&a->workers) == 0) {
        auth_token_free(a->tokens);
        auth_store_free(a->store);
        pthread_mutex_destroy(&a->store_mu);
        pthread_mutex_destroy(&a->tok_mu);
        free(a);
    } /* else: a stuck worker still points at a; leak it rather than crash */
    s->auth = NULL;
}

int svc_auth_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                   const kv_header_info_t *hdr, kv_result_t *res) {
    svc_auth_t *a = s->auth;
    if (!a || !auth_store_is_request(req)) return 0;
    auth_store_t *as = open_store(a);
    if (!as) return -1;
    auth_effect_t eff = {0};
    int rc = auth_store_apply(as, index, req, hdr, res, &eff);
    if (rc == 1 && (eff.invalidate_user || eff.enable_changed)) {
        pthread_mutex_lock(&a->tok_mu);
        if (eff.invalidate_user) auth_token_invalidate_user(a->tokens, eff.invalidate_user);
        if (eff.enable_changed) {
            if (eff.enabled)
                auth_token_enable(a->tokens);
            else
                auth_token_disable(a->tokens);
        }
        pthread_mutex_unlock(&a->tok_mu);
    }
    auth_effect_clear(&eff);
    return rc;
}

int svc_auth_check_apply(server_t *s, uint64_t index, const Kshim__InternalRequest *req,
                         const kv_header_info_t *hdr, kv_result_t *res) {
    (void)hdr;
    svc_auth_t *a = s->auth;
    auth_store_t *as = a ? open_store(a) : NULL;
    if (!as) return a ? -1 : 0;
    return auth_request_refuse(as, s->mvcc, index, req, res);
}
