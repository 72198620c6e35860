/*
 * etcd_datadir.h: kshimd started on etcd 3.4's data dir takes it over
 * (etcd_datadir.c; target kshim_etcd_datadir).
 *
 * etcd's layout is member/snap/db (bbolt), member/snap/NNN.snap and
 * member/wal/NNN.wal; kshim's is member/kv (LevelDB) and member/wal (its own
 * WAL). A data dir with member/snap/db and no member/kv is converted before
 * anything opens it: the database is restored as `kshimctl snapshot restore`
 * does (every revision; the membership from this member's flags, so kshimd
 * bootstraps a fresh single-member log on it), and etcd's whole member dir is
 * kept as member/etcd-member.orig (its wal/ and snap/ untouched).
 *
 * Refused, the dir left untouched: an etcd WAL holding a normal entry with
 * data (a write, lease or auth request) past the database's consistent
 * index, or one that does not hold every entry after it, or that does not
 * decode: the database alone would lose acknowledged writes (a live etcd's
 * dir). A dir made by `etcdctl snapshot restore` holds only conf changes at
 * or below the snapshot's index and is taken over.
 *
 * Crash safety: the kshim member dir is built beside it in
 * <data-dir>/member.kshim-tmp/member, synced, and swapped with
 * <data-dir>/member in one renameat2(RENAME_EXCHANGE); a crash before the
 * swap leaves etcd's dir as it was (the next start removes the partial
 * build), after it the next start finishes moving etcd's dir to
 * member/etcd-member.orig.
 */
#ifndef KSHIM_ETCD_DATADIR_H
#define KSHIM_ETCD_DATADIR_H

#include <stddef.h>
#include <stdint.h>

#include "etcd_wal.h"
#include "snapshot_restore.h"

typedef struct etcd_datadir_opts {
    const char *data_dir;
    const char *wal_dir; /* --wal-dir (NULL or ""): a dedicated etcd WAL dir is refused */
    const char *name;
    const char *initial_cluster;
    const char *initial_cluster_token;
    const char *initial_advertise_peer_urls; /* comma list */
} etcd_datadir_opts_t;

typedef enum etcd_datadir_action {
    ETCD_DATADIR_NONE = 0,  /* not an etcd data dir: nothing done */
    ETCD_DATADIR_CONVERTED, /* taken over now */
    ETCD_DATADIR_FINISHED,  /* an interrupted take-over finished (etcd's dir moved aside) */
} etcd_datadir_action_t;

typedef struct etcd_datadir_result {
    etcd_datadir_action_t action;
    uint64_t consistent_index;    /* of etcd's database */
    etcd_wal_summary_t wal;       /* etcd's WAL */
    ctl_restore_result_t restore; /* what the database held */
    char orig[4096];              /* where etcd's member dir now is */
} etcd_datadir_result_t;

/* 0 (res->action says what happened), or -1 with err: kshimd must not
 * start. */
int etcd_datadir_take_over(const etcd_datadir_opts_t *o, etcd_datadir_result_t *res, char *err,
                           size_t errlen);

#endif
