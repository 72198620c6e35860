/*
 * mvcc_swap.h: internal to storage/mvcc (mvcc.c and mvcc_snapshot.c): the
 * gate between the threads that read the store and a snapshot install that
 * replaces the whole LevelDB under the same mvcc_t.
 *
 * Every read entry point of mvcc.c that may run off the apply thread (read
 * txns from begin to end, raw reads, the compactor getters) enters the gate;
 * mvcc_swap_store closes it, waits until no reader is in, invalidates the
 * export readers (they hold a snapshot of the old database), closes the
 * database, lets swap() replace the directory and reopens it. Nested enters
 * on one thread pass (kv_history reads inside a read txn).
 */
#ifndef KSHIM_MVCC_SWAP_H
#define KSHIM_MVCC_SWAP_H

#include <leveldb/c.h>
#include <stddef.h>

#include "mvcc.h"

void mvcc_gate_enter(mvcc_t *m);
void mvcc_gate_leave(mvcc_t *m);

/* An export reader: invalidate() runs under the gate's lock during a swap,
 * before the database closes (release LevelDB handles; call no gate). */
typedef struct mvcc_user {
    struct mvcc_user *next;
    void (*invalidate)(struct mvcc_user *u);
} mvcc_user_t;
void mvcc_user_add(mvcc_t *m, mvcc_user_t *u);
void mvcc_user_remove(mvcc_t *m, mvcc_user_t *u);

/* The open database (NULL after a failed swap); inside the gate. */
leveldb_t *mvcc_db(mvcc_t *m);
const char *mvcc_dir(const mvcc_t *m);

/* swap(arg, dir): with the database closed, put the new store at dir.
 * Returns 0 (swapped), -1 (failed, dir still holds the old store) or
 * MVCC_SWAP_CRASHED (tests: stop as a crash would, nothing reopened). */
#define MVCC_SWAP_CRASHED (-100)
typedef int (*mvcc_swap_fn)(void *arg, const char *dir, char *err, size_t errlen);
/* Apply thread, between batches. MVCC_OK: the store reopened (on the new or,
 * if swap failed, the old data: err says which); MVCC_ERR_IO: swap failed
 * or the reopen failed, and then the store is closed and mvcc_failed is 1. */
int mvcc_swap_store(mvcc_t *m, mvcc_swap_fn swap, void *arg, char *err, size_t errlen);

/* mvcc_open: finish or undo a snapshot install a crash cut short (see
 * mvcc_snapshot.c). 0, or -1 with err filled. */
int mvcc_snapshot_recover(const char *dir, char *err, size_t errlen);

#endif
