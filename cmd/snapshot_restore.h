/*
 * snapshot_restore.h: `snapshot restore` (snapshot_restore.c; target
 * kshim_restore, used by kshimctl and kshimd): from an etcd snapshot file
 * or backend database (made by real etcd or kshimd) a kshim data dir a fresh
 * single member starts from, every revision kept.
 */
#ifndef KSHIM_SNAPSHOT_RESTORE_H
#define KSHIM_SNAPSHOT_RESTORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ctl_restore_opts {
    const char *file;
    const char *data_dir;                    /* default "<name>.etcd" */
    const char *name;                        /* default "default" */
    const char *initial_cluster;             /* default "<name>=<first peer URL>" */
    const char *initial_cluster_token;       /* default "etcd-cluster" */
    const char *initial_advertise_peer_urls; /* default "http://localhost:2380" */
    int skip_hash_check;
} ctl_restore_opts_t;

typedef struct ctl_restore_result {
    int64_t revision, compact_rev;
    uint64_t versions, live_keys, leases, users, roles, db_bytes;
    int hash_checked;
} ctl_restore_result_t;

/* 0, or -1 with err (etcdctl's texts where it has one). */
int ctl_snapshot_restore(const ctl_restore_opts_t *o, ctl_restore_result_t *res, char *err, size_t errlen);

#endif
