/*
 * etcd_db.h: the kshim store as etcd 3.4's backend database (a bbolt file)
 * and back (etcd_db.c; target kshim_bbolt): what `etcdctl snapshot save`
 * receives from the Maintenance.Snapshot RPC and what `snapshot restore`
 * reads.
 *
 * etcd's buckets: alarm, auth (authEnabled, authRevision), authRoles and
 * authUsers (packed authpb.Role / authpb.User), cluster (clusterVersion),
 * key (main rev 8B BE | '_' | sub 8B BE [| 't' for a tombstone] -> packed
 * mvccpb.KeyValue), lease (id 8B BE -> packed leasepb.Lease), members (hex
 * id -> JSON), members_removed, meta (consistent_index 8B BE,
 * scheduledCompactRev / finishedCompactRev as a revision key).
 */
#ifndef KSHIM_ETCD_DB_H
#define KSHIM_ETCD_DB_H

#include <stddef.h>
#include <stdint.h>

#include "bbolt.h"
#include "mvcc.h"

enum {
    ETCD_DB_OK = 0,
    ETCD_DB_E_IO = -1,      /* the store or the file */
    ETCD_DB_E_CORRUPT = -2, /* not an etcd database we can read */
    ETCD_DB_E_NOT_EMPTY = -3,
};

/* This member, for the members bucket (NULL: the bucket stays empty). */
typedef struct etcd_db_member {
    uint64_t id;
    const char *name;
    const char *const *peer_urls;
    size_t n_peer_urls;
    const char *const *client_urls;
    size_t n_client_urls;
} etcd_db_member_t;

typedef struct etcd_db_stats {
    int64_t revision;    /* the store revision */
    int64_t compact_rev; /* -1: none */
    uint64_t versions;   /* entries of the key bucket */
    uint64_t live_keys;
    uint64_t leases, users, roles;
    uint64_t size; /* bytes of the bbolt file */
} etcd_db_stats_t;

/* Writes one consistent snapshot of the store (any thread; the store keeps
 * serving) as an etcd database through write_at. */
int etcd_db_write(mvcc_t *m, const etcd_db_member_t *member, bbolt_write_fn write_at, void *ctx,
                  etcd_db_stats_t *st, char *err, size_t errlen);

/* Fills the EMPTY store m from the etcd database in fd (size bytes, no
 * trailer): every version with its revisions, the compact revision, leases
 * with their keys, users, roles, the auth flag and revision; applied index
 * 0. Every record is checked: a bad one is ETCD_DB_E_CORRUPT. */
int etcd_db_restore(int fd, uint64_t size, mvcc_t *m, etcd_db_stats_t *st, char *err, size_t errlen);

/* What `etcdctl snapshot status` computes: the CRC-32C (Castagnoli) of
 * every bucket name, key and value in order, the main revision of the key
 * bucket's last key, the number of keys in all buckets and the database's
 * size (pages * page size). size: the file's bytes (a trailer is ignored). */
typedef struct etcd_db_status {
    uint32_t hash;
    int64_t revision;
    uint64_t total_keys;
    uint64_t total_size;
} etcd_db_status_t;
int etcd_db_status(int fd, uint64_t size, etcd_db_status_t *st, char *err, size_t errlen);

/* The meta bucket's consistent_index (8 bytes big-endian: the last Raft
 * index etcd applied to this database); 0 when absent. */
int etcd_db_consistent_index(int fd, uint64_t size, uint64_t *ci, char *err, size_t errlen);

#endif
