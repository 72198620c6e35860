/*
 * auth_perm.h: per-user key permission sets, etcd's range_perm_cache.
 *
 * A user's roles grant permissions (authpb.Permission: READ, WRITE or
 * READWRITE on a key, a range [key, range_end), or everything from key when
 * range_end is "\0"). auth_perms_t merges them into two sorted sets of
 * disjoint, non-adjacent intervals (one for read, one for write) and answers
 * "may this user read/write key K" and "... the whole range [A, B)".
 *
 * Semantics are etcd 3.4's (auth/range_perm_cache.go over pkg/adt):
 *  - permission range_end empty: the single key; "\0": [key, +inf);
 *    otherwise [key, range_end). Permissions with an empty key or with
 *    range_end <= key grant nothing (etcd's interval tree never matches them).
 *  - request range_end empty: a point check on key; "\0": [key, +inf) must
 *    be covered; range_end <= key: etcd's tree answers "is key covered",
 *    so do we. An empty request key is never permitted.
 * The root role bypass and the auth revision check are the caller's job.
 *
 * Pure data structure over byte strings; no locking, no storage. Build with
 * auth_perms_add() for every permission, then auth_perms_finish() once;
 * after that the set is read-only and may be shared by readers.
 */
#ifndef KSHIM_AUTH_PERM_H
#define KSHIM_AUTH_PERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values of authpb.Permission.Type. */
typedef enum auth_perm_type {
    AUTH_PERM_READ = 0,
    AUTH_PERM_WRITE = 1,
    AUTH_PERM_READWRITE = 2
} auth_perm_type_t;

/* One half-open interval [begin, end); end_inf means no upper bound. */
typedef struct auth_interval {
    uint8_t *begin;
    size_t begin_len;
    uint8_t *end; /* NULL when end_inf */
    size_t end_len;
    bool end_inf;
} auth_interval_t;

typedef struct auth_ivset {
    auth_interval_t *iv;
    size_t n;
    size_t cap;
} auth_ivset_t;

typedef struct auth_perms {
    auth_ivset_t read;
    auth_ivset_t write;
    bool finished; /* auth_perms_finish() ran; no more adds */
} auth_perms_t;

void auth_perms_init(auth_perms_t *p);
void auth_perms_free(auth_perms_t *p); /* releases everything; p is reusable after init */

/* Adds one permission (bytes are copied). Returns 0, -EINVAL for an unknown
 * type or a finished set, -ENOMEM. Permissions that grant nothing (see above)
 * are accepted and dropped. */
int auth_perms_add(auth_perms_t *p, int perm_type, const uint8_t *key, size_t key_len,
                   const uint8_t *range_end, size_t range_end_len);

/* Sorts and merges overlapping and adjacent intervals. Call once. */
void auth_perms_finish(auth_perms_t *p);

/* want is AUTH_PERM_READ or AUTH_PERM_WRITE (READWRITE: both must hold). */
bool auth_perms_can_key(const auth_perms_t *p, int want, const uint8_t *key, size_t key_len);

/* etcd's isRangeOpPermitted(key, range_end): range_end_len == 0 is a point
 * check on key, otherwise the whole range must be covered. */
bool auth_perms_can_range(const auth_perms_t *p, int want, const uint8_t *key, size_t key_len,
                          const uint8_t *range_end, size_t range_end_len);

/* Byte-string order (memcmp, shorter prefix first), exposed for tests. */
int auth_bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

#endif
