/*
 * member_table.h: the cluster's member table (etcd's membership.RaftCluster
 * store), a replicated side table of the MVCC LevelDB (member_table.c):
 *   'N'           -> cluster id (8B BE) | this member's id (8B BE) | flags
 *                    (8B BE, bit 0: joined an existing cluster)
 *   'N' | id (8B) -> packed kshim.Member (name, peer/client URLs, learner,
 *                    removed)
 * Every change is written in the apply write group with the applied index
 * (mvcc_txn_raw_put + mvcc_txn_commit), so the table is always the one at
 * the store's applied index. An in-memory copy (one mutex) serves the loop
 * thread; the apply thread changes it only after its write is in the group.
 * Validation follows etcd 3.4's ValidateConfigurationChange; the texts and
 * gRPC codes are the member layer's (member/membership.c).
 */
#ifndef KSHIM_MEMBER_TABLE_H
#define KSHIM_MEMBER_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "kshim.pb-c.h"
#include "mvcc.h"

enum {
    MEMBER_TABLE_OK = 0,
    MEMBER_TABLE_E_IO = -1, /* LevelDB failed: fail-stop */
    MEMBER_TABLE_E_NOMEM = -2,
    MEMBER_TABLE_E_EXISTS = -3,    /* membership: ID exists */
    MEMBER_TABLE_E_PEER_URL = -4,  /* membership: peerURL exists */
    MEMBER_TABLE_E_NOT_FOUND = -5, /* membership: ID not found */
    MEMBER_TABLE_E_REMOVED = -6,   /* membership: ID removed */
    MEMBER_TABLE_E_TOO_MANY_LEARNERS = -7,
    MEMBER_TABLE_E_NOT_LEARNER = -8,
    MEMBER_TABLE_E_CORRUPT = -9, /* a record that does not decode */
};

#define MEMBER_TABLE_MAX_LEARNERS 1 /* etcd 3.4's maxLearners */

typedef struct member_table member_table_t;

/* Loads the table from the store. MEMBER_TABLE_OK, _E_IO, _E_CORRUPT, _E_NOMEM. */
int member_table_open(mvcc_t *m, member_table_t **out);
void member_table_free(member_table_t *t);
/* Re-reads the store (after a snapshot install replaced it). */
int member_table_reload(member_table_t *t);

/* Whether the store holds a table (a member that started before). */
int member_table_exists(member_table_t *t);
uint64_t member_table_cluster_id(member_table_t *t);
uint64_t member_table_self_id(member_table_t *t);
/* This member joined an existing cluster (member_table_bootstrap's joined). */
int member_table_joined(member_table_t *t);

/* First start: writes the cluster id, our id and the members (a new
 * cluster's --initial-cluster, or the list fetched when joining: joined)
 * in one synced write at the store's applied index. */
int member_table_bootstrap(member_table_t *t, uint64_t cluster_id, uint64_t self_id, int joined,
                           const Kshim__Member *const *members, size_t n);

/* After a snapshot from another member replaced the store (its 'N' record
 * names the sender): records our own id again (one synced write at the
 * applied index). */
int member_table_set_self(member_table_t *t, uint64_t self_id);

/* Any thread: a copy of the table (removed members included, flagged);
 * free with kshim__member_list__free_unpacked. NULL: out of memory. */
Kshim__MemberList *member_table_list(member_table_t *t);
/* Any thread: the packed kshim.MemberList (malloc'd). */
int member_table_pack(member_table_t *t, uint8_t **out, size_t *out_len);
/* A copy of one member (removed ones too), or NULL. */
Kshim__Member *member_table_get(member_table_t *t, uint64_t id);
/* Counts of the live members: all, voters, learners, started (name set). */
void member_table_counts(member_table_t *t, size_t *members, size_t *voters, size_t *learners,
                         size_t *started_voters);

/* etcd's ValidateConfigurationChange against the current table. */
int member_table_check_add(member_table_t *t, const Kshim__Member *m);
int member_table_check_remove(member_table_t *t, uint64_t id);
int member_table_check_promote(member_table_t *t, uint64_t id);
int member_table_check_update(member_table_t *t, uint64_t id, char *const *peer_urls, size_t n);

/* Apply thread, inside the write group, for the entry at index (entries at
 * or below the applied index are skipped: MEMBER_TABLE_OK, nothing done).
 * Each checks as above first and, when the check fails, records only the
 * applied index and returns the check's error (the entry is applied as a
 * no-op on every member alike). _E_IO: fail-stop. */
int member_table_apply_add(member_table_t *t, uint64_t index, const Kshim__Member *m);
int member_table_apply_promote(member_table_t *t, uint64_t index, uint64_t id);
int member_table_apply_remove(member_table_t *t, uint64_t index, uint64_t id);
/* (as etcd 3.4, an update clears is_learner in the table) */
int member_table_apply_update(member_table_t *t, uint64_t index, uint64_t id, char *const *peer_urls,
                              size_t n);
int member_table_apply_attr(member_table_t *t, uint64_t index, uint64_t id, const char *name,
                            char *const *client_urls, size_t n);

#endif
