/*
 * ctl_snapshot.h: kshimctl's `snapshot save` and `snapshot restore`
 * (ctl_snapshot.c): etcd's snapshot file (a bbolt database with a SHA-256
 * trailer) from Maintenance.Snapshot, and from such a file (made by real
 * etcd or kshimd) a kshim data dir a fresh single member starts from.
 */
#ifndef KSHIM_CTL_SNAPSHOT_H
#define KSHIM_CTL_SNAPSHOT_H

#include <stdint.h>

#include "grpc_client.h"

/* Streams the snapshot into path (through path.part, synced, renamed). 0,
 * or -1 with err. */
int ctl_snapshot_save(gc_conn_t *conn, const char *path, int timeout_ms, uint64_t *bytes, char *err,
                      size_t errlen);

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

/* snapshot status FILE: what etcdctl prints (simple: "hash, revision, total
 * keys, total size"; json: {"hash":..,"revision":..,"totalKey":..,
 * "totalSize":..}). 0, or -1 with err. */
int ctl_snapshot_status(const char *file, int json, char *err, size_t errlen);

#endif
