/*
 * mvcc_internal.h: what mvcc.c shares with mvcc_dump.c and mvcc_import.c only (not for the
 * layers above): the LevelDB handle, the one encoder of a version's
 * 'k'/'r'/'l' records, and writing the 'm' metadata record.
 */
#ifndef KSHIM_MVCC_INTERNAL_H
#define KSHIM_MVCC_INTERNAL_H

#include <leveldb/c.h>

#include "mvcc.h"

leveldb_t *mvcc_internal_db(mvcc_t *m);
/* flags of mvcc_internal_batch_version */
#define MVCC_VERSION_TOMBSTONE 1u /* a delete */
#define MVCC_VERSION_WAS_LIVE 2u  /* a put of a key alive before it: its 'l' entry stands */
size_t mvcc_internal_batch_version(leveldb_writebatch_t *wb, const Mvccpb__KeyValue *kv, int64_t sub,
                                   unsigned flags);
/* Reads the 'm' record through ro (a snapshot's read options). */
int mvcc_internal_meta_read(mvcc_t *m, const leveldb_readoptions_t *ro, mvcc_meta_t *mt);
/* The loaders write keys past mvcc_txn_put: the live-key filter forgets
 * everything (live_filter.h). mvcc_load_begin calls it; the importer's
 * writes (mvcc_internal_write_with_meta) drop it themselves. */
void mvcc_internal_live_drop(mvcc_t *m);
/* Writes mt as the 'm' record with the live-key count ("mk", mvcc.c;
 * synced) and publishes it. */
int mvcc_internal_write_meta(mvcc_t *m, const mvcc_meta_t *mt);
/* Adds mt as the 'm' record to wb, writes wb (synced if sync) and publishes
 * mt (mvcc_import.c: one etcd revision per write); drops the live-key
 * filter, as wb's keys do not pass mvcc_txn_put. */
int mvcc_internal_write_with_meta(mvcc_t *m, leveldb_writebatch_t *wb, const mvcc_meta_t *mt, int sync);
/* The apply thread's metadata. */
mvcc_meta_t mvcc_internal_meta(mvcc_t *m);
/* The loaders change 'l' entries without counting them: the next writes
 * drop "mk" (the next open counts) until mvcc_internal_count_keys counts
 * the 'l' space again (the loaders' finish, before its last write). */
void mvcc_internal_keys_unknown(mvcc_t *m);
int mvcc_internal_count_keys(mvcc_t *m);

#endif
