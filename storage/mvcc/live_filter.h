/*
 * live_filter.h: which keys may have been alive, so that a write txn's
 * read of a key that never was (a put of a new key, the compare of a
 * Kubernetes create) skips LevelDB's iterator seek (mvcc.c db_range).
 *
 * Owns: a key_filter of every key alive when it was built or put since,
 * and the thread that builds it from the 'l' (live-key) space of a LevelDB
 * snapshot. Apply side only (the thread that runs write txns and groups),
 * except the builder, which only reads its snapshot and adds to the filter
 * being built.
 *
 * Why it is exact: a build starts at a group boundary (live_filter_tick,
 * from mvcc_group_begin), when every change made so far is in LevelDB, and
 * takes its snapshot there; every put from then on is added to the filter
 * being built as well (live_filter_add). A key alive now either was alive
 * at the snapshot (the scan adds it) or became alive through a put since
 * (added). Deletes remove nothing (a deleted key stays "maybe"). Until a
 * build has finished, and after live_filter_drop (a snapshot install, the
 * loaders), every key is "maybe": the filter only ever saves reads.
 */
#ifndef KSHIM_LIVE_FILTER_H
#define KSHIM_LIVE_FILTER_H

#include <leveldb/c.h>
#include <stddef.h>
#include <stdint.h>

typedef struct live_filter live_filter_t;

typedef struct live_filter_stats {
    int ready;         /* a finished filter answers */
    uint64_t builds;   /* builds finished */
    uint64_t skipped;  /* reads answered "never alive" */
    uint64_t capacity; /* keys the answering filter is sized for */
    uint64_t keys;     /* keys added to it (its scan and the new keys since) */
} live_filter_stats_t;

/* NULL: out of memory (the store then runs without one). */
live_filter_t *live_filter_new(void);
/* Stops a running build; the database must still be open. */
void live_filter_free(live_filter_t *lf);
/* Forgets everything and stops a running build: every key is "maybe"
 * until a later tick's build has finished. */
void live_filter_drop(live_filter_t *lf);
/* At a group boundary (nothing written to the txns that is not in db):
 * takes a finished build, and starts one when there is no filter or the
 * one there holds more keys than it was sized for (sized for twice
 * live_keys, the store's live-key count, or -1: unknown). */
void live_filter_tick(live_filter_t *lf, leveldb_t *db, int64_t live_keys);
/* key is alive now (a put); is_new: it was not alive before. */
void live_filter_add(live_filter_t *lf, const uint8_t *key, size_t len, int is_new);
/* 0: the key of hash (key_filter_hash) has not been alive since the
 * filter's snapshot; 1: maybe. */
int live_filter_may_be_live(live_filter_t *lf, uint64_t hash);
void live_filter_stats(live_filter_t *lf, live_filter_stats_t *out);
/* Tests: waits until a started build has finished (then a tick takes it). */
void live_filter_wait_build(live_filter_t *lf);

#endif
