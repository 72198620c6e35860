/*
 * ctl_snapshot.h: kshimctl's `snapshot save` and `snapshot status`
 * (ctl_snapshot.c): etcd's snapshot file (a bbolt database with a SHA-256
 * trailer) from Maintenance.Snapshot; `snapshot restore` is
 * snapshot_restore.h.
 */
#ifndef KSHIM_CTL_SNAPSHOT_H
#define KSHIM_CTL_SNAPSHOT_H

#include <stdint.h>

#include "grpc_client.h"
#include "snapshot_restore.h"

/* Streams the snapshot into path (through path.part, synced, renamed). 0,
 * or -1 with err. */
int ctl_snapshot_save(gc_conn_t *conn, const char *path, int timeout_ms, uint64_t *bytes, char *err,
                      size_t errlen);

/* snapshot status FILE: what etcdctl prints (simple: "hash, revision, total
 * keys, total size"; json: {"hash":..,"revision":..,"totalKey":..,
 * "totalSize":..}). 0, or -1 with err. */
int ctl_snapshot_status(const char *file, int json, char *err, size_t errlen);

#endif
