/*
 * auth_store.h: etcd's auth store (users, roles, auth enabled flag, auth
 * revision) as a replicated state machine beside the MVCC keys.
 *
 * Records live in the mvcc side tables, written in the same LevelDB batch as
 * the applied index:
 *   'U' + name      -> packed authpb.User (password = bcrypt hash, "" with
 *                      no_password)
 *   'R' + name      -> packed authpb.Role (permissions sorted by key)
 *   "Eenabled"      -> one byte, 1 when auth is enabled
 *   "Erevision"     -> 8 bytes big endian, the auth revision
 * The auth revision starts at 1 (etcd's NewAuthStore) and grows by one on
 * every successful change except AuthEnable (etcd 3.4 does not bump it there).
 *
 * Threads: auth_store_apply() runs on the apply (raft) thread; every other
 * call may run on any thread. One mutex guards the in-memory copy, which is
 * rebuilt from LevelDB after every applied change (auth changes are rare).
 *
 * Passwords never reach this file in clear: the proposer hashes them and the
 * Raft entry carries the bcrypt hash in the request's password field
 * (kshim.proto has no hashed_password field; the field is only ever read here).
 * Permission checks are made by the proposer before proposing and again at
 * apply with the user and auth revision the entry's header carries
 * (auth_request.h; auth_store_apply itself checks nothing of the caller).
 */
#ifndef KSHIM_AUTH_STORE_H
#define KSHIM_AUTH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.pb-c.h"
#include "kshim.pb-c.h"
#include "kv.h"

/* Errors, each one of etcd's (auth_store_code/auth_store_strerror give the
 * gRPC code and text). */
enum {
    AUTH_OK = 0,
    AUTH_E_ROOT_USER_NOT_EXIST = -1, /* FailedPrecondition */
    AUTH_E_ROOT_ROLE_NOT_EXIST = -2,
    AUTH_E_USER_ALREADY_EXIST = -3,
    AUTH_E_USER_EMPTY = -4, /* InvalidArgument */
    AUTH_E_USER_NOT_FOUND = -5,
    AUTH_E_ROLE_ALREADY_EXIST = -6,
    AUTH_E_ROLE_NOT_FOUND = -7,
    AUTH_E_ROLE_EMPTY = -8,
    AUTH_E_AUTH_FAILED = -9,
    AUTH_E_PERMISSION_DENIED = -10, /* PermissionDenied */
    AUTH_E_ROLE_NOT_GRANTED = -11,
    AUTH_E_PERMISSION_NOT_GRANTED = -12,
    AUTH_E_AUTH_NOT_ENABLED = -13,
    AUTH_E_INVALID_AUTH_TOKEN = -14, /* Unauthenticated */
    AUTH_E_INVALID_AUTH_MGMT = -15,
    AUTH_E_OLD_REVISION = -16,
    AUTH_E_NO_PASSWORD_USER =
        -17,         /* Unknown "auth: authentication failed, password was given for no password user" */
    AUTH_E_IO = -18, /* storage failure */
    AUTH_E_NOMEM = -19
};
const char *auth_store_strerror(int err);
int auth_store_code(int err); /* gRPC status code of err */

typedef struct auth_store auth_store_t;

/* Loads the auth state of m. Returns 0 or AUTH_E_IO / AUTH_E_NOMEM. */
int auth_store_open(mvcc_t *m, auth_store_t **out);
void auth_store_free(auth_store_t *as);
/* Rebuilds the in-memory copy from the store (after a Raft snapshot replaced
 * it). AUTH_OK or the load's error (the copy is then empty: fail-stop). */
int auth_store_reload(auth_store_t *as);

/* 1 when req is one of the auth management requests auth_store_apply takes. */
int auth_store_is_request(const Kshim__InternalRequest *req);

/* What an applied change means for token holders (the caller owns the token
 * provider): invalidate_user names a user whose tokens must go (deleted,
 * password changed); enable_changed with enabled the new state. */
typedef struct auth_effect {
    char *invalidate_user; /* malloc'd or NULL */
    int enable_changed;
    int enabled;
} auth_effect_t;
void auth_effect_clear(auth_effect_t *e);

/* Apply thread: applies req (an auth request) as Raft entry index. On
 * success res holds the packed etcd response with header hdr and the store
 * revision; on an etcd error res->code/message hold it and only the applied
 * index is recorded. Entries at or below the applied index are skipped
 * (returns 1, res untouched: replay after a restart). Returns 1 if applied,
 * 0 if req is not an auth request, -1 on a storage failure. eff may be NULL. */
int auth_store_apply(auth_store_t *as, uint64_t index, const Kshim__InternalRequest *req,
                     const kv_header_info_t *hdr, kv_result_t *res, auth_effect_t *eff);

bool auth_store_enabled(auth_store_t *as);
uint64_t auth_store_revision(auth_store_t *as);

/* Key permission check, etcd's isOpPermitted: AUTH_OK when auth is off, or
 * user (with token revision rev) may do want (AUTH_PERM_READ/WRITE) on
 * [key, end) (end_len 0: the single key; "\0": everything from key).
 * rev 0 -> AUTH_E_USER_EMPTY; rev older than the store's ->
 * AUTH_E_OLD_REVISION; unknown user or missing permission ->
 * AUTH_E_PERMISSION_DENIED. The root role may do everything. */
int auth_store_check_range(auth_store_t *as, const char *user, uint64_t rev, int want, const uint8_t *key,
                           size_t key_len, const uint8_t *end, size_t end_len);

/* etcd's IsAdminPermitted: AUTH_OK when auth is off or user has the root
 * role; AUTH_E_USER_EMPTY (no user), AUTH_E_USER_NOT_FOUND,
 * AUTH_E_PERMISSION_DENIED otherwise. */
int auth_store_check_admin(auth_store_t *as, const char *user);

bool auth_store_has_role(auth_store_t *as, const char *user, const char *role);

/* Copies user's bcrypt hash for Authenticate (password check happens off
 * the lock, by the caller). AUTH_E_AUTH_NOT_ENABLED, AUTH_E_AUTH_FAILED (no
 * such user), AUTH_E_NO_PASSWORD_USER, or AUTH_OK with *hash malloc'd and
 * *rev the current auth revision. */
int auth_store_user_hash(auth_store_t *as, const char *user, char **hash, size_t *hash_len, uint64_t *rev);

/* Copies of the records for the read-only RPCs (free with
 * authpb__user__free_unpacked / authpb__role__free_unpacked). NULL when not
 * found (or out of memory). */
Authpb__User *auth_store_get_user(auth_store_t *as, const char *name);
Authpb__Role *auth_store_get_role(auth_store_t *as, const char *name);

/* Sorted names of every user or role; *names is a malloc'd array of malloc'd
 * strings (free with auth_store_free_names). Returns 0 or AUTH_E_NOMEM. */
int auth_store_list_users(auth_store_t *as, char ***names, size_t *n);
int auth_store_list_roles(auth_store_t *as, char ***names, size_t *n);
void auth_store_free_names(char **names, size_t n);

#endif
