/*
 * wal.h: the durable Raft log (write-ahead log).
 *
 * A directory of segment files named <seq:016x>-<firstindex:016x>.wal, each
 * preallocated (fallocate) to segment_bytes. A segment is a sequence of
 * records   [u32 len][u32 crc32c][u8 kind][payload: len bytes]   (little
 * endian; crc over len, kind and payload). Kinds: ENTRY (term, index, type,
 * data), HARD_STATE (term, vote, commit), BASE (index, term of the entry
 * preceding the segment; first record of every segment, followed by the hard
 * state current at creation, so deleting old segments never loses either) and
 * SNAPSHOT (index, term, u32 n_voters, u32 n_learners, the member ids: a
 * state-machine snapshot point and the membership there; the last one is
 * repeated after the hard state at the head of every new segment). Replay
 * treats a SNAPSHOT as the Raft core does: if the log holds (index, term) the
 * entries up to it are dropped, otherwise the log restarts after it.
 *
 * Appends are buffered; wal_sync() writes them and issues ONE fdatasync for
 * all of them (group commit). Order matters: a hard state's commit must only
 * name entries appended before it (the node appends entries, then the state).
 *
 * A new segment is written under a temporary name (head synced) and renamed
 * into place only after the previous segment is synced, so every segment but
 * the last is sealed: completely durable.
 *
 * Open replays every segment in order, verifying each record. An all-zero
 * header (preallocated space) or the end of the file ends a segment's
 * records. Only the last segment's tail may be cut, and only when the bad
 * record is a torn write (etcd's isTornEntry): it runs past the end of the
 * file, one of its 512-byte sectors is entirely zero, or its tail lies in the
 * zero run that ends the file. The file is cut there (truncated and
 * preallocated again, so stale bytes can never be misread later). Anything
 * else -- a bad record in a sealed segment, a flipped byte in the last one,
 * data after the end of a sealed segment's records, a gap -- refuses to open
 * with an error naming the file and byte offset. An entry whose index is
 * already in the log supersedes it and everything after it (Raft conflict
 * truncation).
 *
 * Not thread-safe: one owner (the raft thread). After an I/O error the WAL is
 * failed and every later call returns -1 (the caller must stop: fail-stop).
 */
#ifndef KSHIM_RAFT_WAL_H
#define KSHIM_RAFT_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "latency_hist.h"
#include "raft.h"

/* 16 MiB (etcd: 64): a start reads every record of the segments not yet
 * released, and the active one is never released, so this bounds what a
 * restart reads (~10 ms per 20 MiB here); a rotation every 16 MiB costs a
 * file creation and two syncs. */
#define WAL_DEFAULT_SEGMENT_BYTES (16u * 1024 * 1024)

typedef struct wal wal_t;

/* What replay found. ents[i].data are heap copies owned by this struct
 * (none for the entries wal_open_from leaves without data). */
typedef struct wal_recovered {
    raft_hard_state_t hard_state;
    uint64_t base_index, base_term; /* position preceding ents[0] */
    raft_entry_t *ents;
    size_t n_ents;
    int tail_cut; /* a torn write at the end of the last segment was cut */
    /* The last snapshot record replayed (has_snapshot): when its index is
     * base_index it gives the membership at the log base. voters/learners
     * point into snap_ids (do not copy the struct). */
    int has_snapshot;
    raft_snapshot_meta_t snapshot;
    uint64_t snap_ids[RAFT_MAX_MEMBERS];
} wal_recovered_t;

typedef struct wal_stats {
    uint64_t syncs;   /* fdatasync calls for appends */
    uint64_t records; /* records written since open */
    uint64_t bytes_written;
    uint64_t segments;   /* live segment files */
    uint64_t live_bytes; /* bytes of records in live segments */
    uint64_t last_index; /* last entry index written */
} wal_stats_t;

/* Opens or creates dir (one level) and replays it into rec (free with
 * wal_recovered_free). segment_bytes 0 means WAL_DEFAULT_SEGMENT_BYTES.
 * Returns 0, or -1 with a message in err (e.g. a gap in the log). */
int wal_open(const char *dir, size_t segment_bytes, wal_t **out, wal_recovered_t *rec, char *err,
             size_t errlen);
/* The same, for a state machine that holds every entry up to no_data_to:
 * those entries are replayed (checked, positioned, their terms kept) but
 * come without their data (len 0, data NULL), except CONF_CHANGE entries
 * (the membership is rebuilt from them). The caller must never apply or
 * send such an entry: the node drops them from the core at once. Saves a
 * copy of every applied entry still in the WAL. */
int wal_open_from(const char *dir, size_t segment_bytes, uint64_t no_data_to, wal_t **out,
                  wal_recovered_t *rec, char *err, size_t errlen);
void wal_recovered_free(wal_recovered_t *rec);

/* Buffer records (nothing reaches the file until wal_write/wal_sync). */
int wal_append_entries(wal_t *w, const raft_entry_t *ents, size_t n);
int wal_save_hard_state(wal_t *w, const raft_hard_state_t *hs);
/* A snapshot point: the state machine holds everything <= meta->index, the
 * membership there is meta's. install = 1: a snapshot from the leader, the
 * log restarts after it (entries follow from index + 1); 0: a compaction
 * point inside the log (the log end is unchanged), written before
 * wal_release_to(meta->index) so the segments released are never needed.
 * The last one is repeated at the head of every new segment. */
int wal_save_snapshot(wal_t *w, const raft_snapshot_meta_t *meta, int install);

/* Write the buffer; wal_sync also fdatasyncs (once, however many records). */
int wal_write(wal_t *w);
int wal_sync(wal_t *w);

/* Deletes whole old segments whose entries are all <= index (never the
 * active one). Returns the number deleted, or -1. */
int wal_release_to(wal_t *w, uint64_t index);

void wal_get_stats(const wal_t *w, wal_stats_t *out);
/* For monitoring, any thread while the WAL is open: the durations of
 * every fdatasync of a segment file (latency_hist.h) and the bytes written
 * to segment files since open (etcd's wal_write_bytes_total). */
typedef struct wal_disk_stats {
    lat_hist_snapshot_t fsync;
    uint64_t write_bytes;
} wal_disk_stats_t;
void wal_disk_stats(const wal_t *w, wal_disk_stats_t *out);
const char *wal_last_error(const wal_t *w);
/* Closes without syncing buffered records (they are dropped). */
void wal_close(wal_t *w);

#endif
