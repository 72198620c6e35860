/*
 * ctl_migrate.h: `kshimctl migrate` (ctl_migrate.c): a live etcd moved
 * online into a new kshim data dir, keeping every revision: its snapshot
 * restored as `snapshot restore` does, then its watch followed (each etcd
 * revision applied at its own revision), then, at the cut-over, the
 * source's current revision reached, its leases and users/roles copied,
 * the store synced.
 */
#ifndef KSHIM_CTL_MIGRATE_H
#define KSHIM_CTL_MIGRATE_H

#include <stdint.h>

#include "ctl_snapshot.h"
#include "grpc_client.h"

/* Dials the source (TLS, --user login): NULL with st filled. */
typedef gc_conn_t *(*ctl_dial_fn)(void *arg, gc_status_t *st);

typedef struct ctl_migrate_opts {
    ctl_restore_opts_t restore; /* .file is ignored: the snapshot goes to <data-dir>.snapshot */
    ctl_dial_fn dial;
    void *dial_arg;
    const char *cutover_file; /* cut over when it exists (NULL: not used) */
    int64_t duration_ms;      /* cut over after this long following (0: not used) */
    int sync_every;           /* sync the store at least every N revisions (<= 0: 100) */
    int timeout_ms;           /* per unary call (<= 0: 5000) */
} ctl_migrate_opts_t;

typedef struct ctl_migrate_result {
    ctl_restore_result_t restore; /* the snapshot */
    int64_t final_rev;            /* the store's revision at the end = the source's at the cut-over */
    uint64_t revisions, events;   /* applied from the watch */
    uint64_t keys;                /* live keys at the end */
    uint64_t leases, users, roles;
    uint64_t users_without_password; /* created after the snapshot: no hash over gRPC */
    uint64_t reconnects;
    int auth_copied; /* 0: the source refused the auth reads (the snapshot's users/roles kept) */
} ctl_migrate_result_t;

/* SIGINT/SIGTERM cut over (installed here). 0, or -1 with err. */
int ctl_migrate(const ctl_migrate_opts_t *o, ctl_migrate_result_t *res, char *err, size_t errlen);

#endif
