/*
 * mvcc_compact.h: the background compactor of the MVCC store (internal to
 * storage/; mvcc.c owns one, see mvcc_compact.c for the algorithm and why it
 * may run beside the apply thread).
 *
 * mvcc.c records the compact revision (apply thread, 'm' record) and calls
 * mvcc_compactor_wake(); the compactor thread then deletes the superseded
 * versions in bounded batches, each one synced LevelDB write that also moves
 * its own progress record ('c'), so a crash resumes where it stopped.
 */
#ifndef KSHIM_MVCC_COMPACT_H
#define KSHIM_MVCC_COMPACT_H

#include <leveldb/c.h>
#include <stddef.h>
#include <stdint.h>

#include "mvcc.h"

typedef struct mvcc_compactor mvcc_compactor_t;

/* Reads the progress record and starts the thread. compact_rev is the
 * compact revision of the 'm' record; legacy_done the compact_done of an old
 * 32-byte 'm' record (-1 if none), used only when there is no 'c' record.
 * *target_out gets the revision the store must treat as compacted: the
 * larger of compact_rev and the target the compactor had already recorded.
 * Returns 0, or -1 with err filled. */
int mvcc_compactor_open(leveldb_t *db, int64_t compact_rev, int64_t legacy_done, mvcc_compactor_t **out,
                        int64_t *target_out, char *err, size_t errlen);
/* Stops the thread (after the batch in progress) and frees. NULL is fine. */
void mvcc_compactor_close(mvcc_compactor_t *c);

/* Apply thread, after the compact revision rev is recorded: work up to rev. */
void mvcc_compactor_wake(mvcc_compactor_t *c, int64_t rev);

/* Every superseded version <= this revision is physically gone (-1: none). */
int64_t mvcc_compactor_done(mvcc_compactor_t *c);
/* Blocks until done >= rev; MVCC_OK, or MVCC_ERR_IO if the compactor is
 * stopping or held by mvcc_compactor_hold_after. */
int mvcc_compactor_wait(mvcc_compactor_t *c, int64_t rev);

/* 1 once a batch hit a storage error: the compactor has stopped and the
 * member must stop too (fail-stop). Any thread. */
int mvcc_compactor_failed(mvcc_compactor_t *c);
/* Tests: the nth batch from now fails as an I/O error (failpoint.h). */
void mvcc_compactor_arm_error(mvcc_compactor_t *c, uint64_t n);
/* Tests: the nth batch from now fails as an I/O error (failpoint.h). */
void mvcc_compactor_arm_error(mvcc_compactor_t *c, uint64_t n);
void mvcc_compactor_stats(mvcc_compactor_t *c, mvcc_compact_stats_t *out);

/* Knobs (tests, benchmarks): versions per batch, pause between batches,
 * and a hold after n more batches (n < 0: never). */
void mvcc_compactor_set_batch(mvcc_compactor_t *c, size_t n);
void mvcc_compactor_set_pause_ms(mvcc_compactor_t *c, unsigned ms);
void mvcc_compactor_hold_after(mvcc_compactor_t *c, int64_t n);

#endif
