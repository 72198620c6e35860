/*
 * etcd_wal.h: reads etcd 3.4's write-ahead log (member/wal/NNN-NNN.wal), not
 * kshim's, far enough to say what it holds (etcd_wal.c; target kshim_raft).
 * kshimd uses it before taking over an etcd data dir: a committed write in
 * etcd's WAL past the backend database's consistent index would be lost if
 * only the database were imported.
 *
 * Format (etcd's wal/encoder.go and decoder.go): records one after the
 * other, each an 8-byte little-endian length word (low 56 bits: the record's
 * bytes; top bit set: the low 3 bits of the top byte are padding bytes after
 * it), then a walpb.Record {type = 1 int64, crc = 2 uint32, data = 3 bytes}.
 * A zero length word or the end of the file ends a file (files are
 * preallocated with zeros). Types: metadata 1, entry 2 (data: raftpb.Entry
 * {Type = 1, Term = 2, Index = 3, Data = 4}), state 3, crc 4, snapshot 5
 * (data: walpb.Snapshot {Index = 1, Term = 2}). The CRC-32C runs over the
 * data of every record but crc records, across files; a crc record (the
 * first of each file) carries the running value. The messages are decoded
 * by protobuf-c from proto/etcd_walpb.proto and proto/etcd_raftpb.proto
 * (kshim_proto); every length word is checked against the file and the
 * 10 MiB limit first, and a message that does not decode is corruption.
 * Beyond one file's mapping, the reader holds one record's messages at a
 * time (protobuf-c copies their bytes).
 */
#ifndef KSHIM_ETCD_WAL_H
#define KSHIM_ETCD_WAL_H

#include <stddef.h>
#include <stdint.h>

enum {
    ETCD_WAL_OK = 0,
    ETCD_WAL_E_IO = -1,      /* a file could not be listed, opened or read */
    ETCD_WAL_E_CORRUPT = -2, /* a record that does not decode or whose CRC is wrong */
};

typedef struct etcd_wal_summary {
    uint64_t files, records, entries;
    uint64_t first_index, last_index; /* of the entry records; 0: none */
    uint64_t snapshot_index;          /* the highest snapshot record's; 0: none */
    /* Normal entries with data (a write, lease or auth request) whose index
     * is above `after` (etcd_wal_scan_*), and the lowest such index. Empty
     * normal entries (a new leader's) and conf changes are not counted. */
    uint64_t writes_after, first_write_after;
    int torn_tail; /* the last file ended in a partly written record (ignored, as etcd) */
} etcd_wal_summary_t;

/* Scans one file's bytes, continuing s and the running CRC *crc (0 before
 * the first file). last: this is the last file (a torn record at its end is
 * the end, as etcd's decoder treats it). ETCD_WAL_OK, or ETCD_WAL_E_CORRUPT
 * with err naming the offset. */
int etcd_wal_scan_buf(const uint8_t *buf, size_t len, int last, uint64_t after, uint32_t *crc,
                      etcd_wal_summary_t *s, char *err, size_t errlen);

/* Scans every *.wal file of dir in name order (etcd's names,
 * %016x-%016x.wal). A missing dir is an empty summary. */
int etcd_wal_scan_dir(const char *dir, uint64_t after, etcd_wal_summary_t *s, char *err, size_t errlen);

#endif
