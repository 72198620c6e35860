/*
 * etcd_import.h: a live etcd's lease table and users/roles written onto a
 * kshim store (etcd_import.c; target kshim_bbolt), for the cut-over of
 * `kshimctl migrate`: the watch carries keys but not leases granted or
 * revoked, nor users/roles changed, after the snapshot.
 */
#ifndef KSHIM_ETCD_IMPORT_H
#define KSHIM_ETCD_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "auth.pb-c.h"
#include "mvcc.h"

typedef struct etcd_import_lease {
    int64_t id, granted_ttl, remaining_ttl;
} etcd_import_lease_t;

/* The store's lease records become exactly ls (the 'M' attachments are the
 * events'); one synced write. MVCC_OK or an mvcc error. */
int etcd_import_leases(mvcc_t *m, const etcd_import_lease_t *ls, size_t n);

typedef struct etcd_import_user {
    const char *name;
    char **roles;
    size_t n_roles;
} etcd_import_user_t;

/* The users become exactly us, with their roles; a user the store already
 * has keeps its password hash and options, a new one has none (the gRPC API
 * does not give hashes out: set it with `user passwd`). *no_password gets
 * the number of such new users. */
int etcd_import_users(mvcc_t *m, const etcd_import_user_t *us, size_t n, size_t *no_password);

/* The roles become exactly rs (name and permissions as RoleGet gives them). */
int etcd_import_roles(mvcc_t *m, const Authpb__Role *const *rs, size_t n);

#endif
