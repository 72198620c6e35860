/*
 * fuzz_etcd_wal.c: etcd's WAL reader (raft/etcd_wal.c) on a hostile file.
 * The input is one file's bytes, scanned as the last file (a torn tail
 * allowed) and as an earlier one: either a summary that holds together
 * (writes past the index among the entries, first <= last) or
 * ETCD_WAL_E_CORRUPT, never a crash or a read past the input. Seeds: WALs
 * written by real etcd 3.4 (`etcdctl snapshot restore`, and a member with
 * puts), their preallocated zeros cut.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_wal.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a copy of exactly size bytes, so a read past it is caught */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    for (int last = 0; last < 2; last++) {
        etcd_wal_summary_t s;
        memset(&s, 0, sizeof s);
        uint32_t crc = 0;
        char err[256];
        int rc = etcd_wal_scan_buf(buf, size, last, 2, &crc, &s, err, sizeof err);
        assert(rc == ETCD_WAL_OK || rc == ETCD_WAL_E_CORRUPT);
        assert(s.writes_after <= s.entries);
        assert(s.entries <= s.records);
        if (s.entries) assert(s.first_index <= s.last_index);
        if (s.writes_after) assert(s.first_write_after > 2);
        if (!last) assert(!s.torn_tail);
    }
    free(buf);
    return 0;
}
