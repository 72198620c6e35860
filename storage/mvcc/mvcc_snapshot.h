/*
 * mvcc_snapshot.h: the whole store as a byte stream, for Raft snapshots
 * (target kshim_mvcc): export on the leader, import and install on a
 * follower.
 *
 * Export: a streaming reader over one LevelDB snapshot of every key kshim
 * keeps (the MVCC tables, the 'm' applied index, the compactor's progress,
 * leases, auth, every side table), read in chunks of the caller's size; it
 * never holds more than one record in memory. The stream:
 *
 *   header  "KSHIMSN1" | applied_index (8B BE)
 *   record  0x01 | key_len (4B BE) | val_len (4B BE) | key | value   (key order)
 *   end     0x02 | records (8B BE) | crc32c (4B BE) of every byte before it
 *
 * Import: a writer that builds a new LevelDB in <dir>.snap-tmp beside the
 * store from the chunks in order (synced writes), checks the end record and
 * the applied index in the data against the header, then renames it to
 * <dir>.snap-ready (fsync of the parent directory). Until the install the
 * store is untouched; a failure or a corrupt chunk removes the staged copy.
 *
 * Install (apply thread): the store closes, the staged directory takes the
 * place of the store (one renameat2 RENAME_EXCHANGE, or two renames where
 * the file system lacks it), the parent directory is synced, the old data
 * removed and the store reopened under the same mvcc_t (readers wait at the
 * store's gate meanwhile). A crash at any point leaves the old or the new
 * store: mvcc_open finishes or undoes a cut-short install first, and keeps
 * a complete staged copy (the node installs it again at start when its WAL
 * recorded the snapshot before the crash).
 */
#ifndef KSHIM_MVCC_SNAPSHOT_H
#define KSHIM_MVCC_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "mvcc.h"

/* Beyond mvcc.h's errors: the stream is damaged (bad checksum, bad
 * framing, truncated, or its data does not match its header). */
#define MVCC_ERR_CORRUPT (-5)

/* Longest key + value of one record the writer accepts. */
#define MVCC_SNAP_MAX_RECORD (64u << 20)

typedef struct mvcc_snap_reader mvcc_snap_reader_t;

/* Starts an export of the store as it is now (any thread). MVCC_OK or
 * MVCC_ERR_IO. The reader may be read from another thread than the one
 * that made it (one at a time). A snapshot install on this store
 * invalidates it (its reads then fail). */
int mvcc_snapshot_export(mvcc_t *m, mvcc_snap_reader_t **out);
/* The applied Raft index the export covers. */
uint64_t mvcc_snap_reader_index(const mvcc_snap_reader_t *r);
/* Fills buf with up to cap bytes of the stream: bytes written, 0 at the
 * end, -1 on a read error (or after an install invalidated it). */
long mvcc_snap_reader_read(mvcc_snap_reader_t *r, uint8_t *buf, size_t cap);
void mvcc_snap_reader_free(mvcc_snap_reader_t *r);

typedef struct mvcc_snap_writer mvcc_snap_writer_t;

/* Starts an import for store m (any thread; one at a time per store): an
 * empty LevelDB in <dir>.snap-tmp (an older staged copy stays until finish
 * replaces it).
 * MVCC_OK, or MVCC_ERR_IO with err filled. */
int mvcc_snapshot_import(mvcc_t *m, mvcc_snap_writer_t **out, char *err, size_t errlen);
/* The next chunk of the stream. MVCC_OK, MVCC_ERR_CORRUPT (bad framing or
 * data after the end) or MVCC_ERR_IO. After an error only _abort. */
int mvcc_snap_writer_write(mvcc_snap_writer_t *w, const uint8_t *data, size_t len);
/* The applied index the stream's header announced (0 before the header). */
uint64_t mvcc_snap_writer_index(const mvcc_snap_writer_t *w);
/* The stream is complete: checks the end record, syncs and stages the copy
 * as <dir>.snap-ready (replacing an older staged copy). *applied_index gets
 * the index it covers. Frees w. MVCC_OK, MVCC_ERR_CORRUPT (incomplete,
 * checksum, header/data mismatch, an 'm' record mvcc_open would refuse; the copy is removed, an older staged one
 * stays) or MVCC_ERR_IO. Not concurrently with mvcc_snapshot_install. */
int mvcc_snap_writer_finish(mvcc_snap_writer_t *w, uint64_t *applied_index);
/* Drops an unfinished import (removes <dir>.snap-tmp) and frees w. */
void mvcc_snap_writer_abort(mvcc_snap_writer_t *w);

/* Apply thread, between applied batches: replaces the store by the staged
 * copy (see above) and reopens it. MVCC_OK; MVCC_ERR_NOT_FOUND when nothing
 * is staged (store untouched); MVCC_ERR_IO when the swap failed (the old
 * store is open again) or the store cannot be reopened (then mvcc_failed()
 * is 1: fail-stop). */
int mvcc_snapshot_install(mvcc_t *m, char *err, size_t errlen);
/* A staged copy left by an earlier run (mvcc_open keeps it): the applied
 * index it covers. MVCC_OK, MVCC_ERR_NOT_FOUND (none) or MVCC_ERR_IO. */
int mvcc_snapshot_staged_index(mvcc_t *m, uint64_t *index);
/* Removes a staged copy that will not be installed. */
void mvcc_snapshot_discard(mvcc_t *m);

/* Tests: the nth crash point from now (1 = the next; the last steps of
 * mvcc_snap_writer_finish and every step of the install) stops as a crash
 * would: finish returns MVCC_ERR_IO leaving its files, the install returns
 * MVCC_ERR_IO with the store closed (mvcc_failed is 1); mvcc_close and
 * mvcc_open then recover. 0 disarms. no_exchange = 1 uses the two-rename
 * swap instead of RENAME_EXCHANGE. The failpoint mvcc_snapshot_crash=N
 * (failpoint.h) does the same with _exit(86) at the nth point. */
void mvcc_snapshot_test_crash(uint64_t nth, int no_exchange);

#endif
