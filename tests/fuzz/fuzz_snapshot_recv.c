/*
 * fuzz_snapshot_recv.c: the receiving end of a Raft snapshot stream
 * (storage/mvcc/mvcc_snapshot.c's writer, which the member feeds with the
 * chunks of a peer's SNAP frames: apiserver-shim/member/snapshot.c).
 *
 * Input: one byte n (low 3 bits: how many chunk-size bytes follow), n bytes
 * of chunk sizes (1..255, used in turn; none: the whole stream in one
 * write), then the stream itself. A fresh store gets the stream through
 * mvcc_snapshot_import / mvcc_snap_writer_write in those chunks, then
 * mvcc_snap_writer_finish. An independent parser of the format
 * (mvcc_snapshot.h) says whether the stream is valid: a valid one must be
 * staged, any other refused with MVCC_ERR_CORRUPT. A staged copy is
 * installed: either the store reopens on it at the stream's applied index
 * and a full range and the hash answer (OK or an I/O error: the data may be
 * damaged under good framing), or the install fails and the store is
 * marked failed (fail-stop). Never a crash, a leak or an abort.
 * The peer transport hands the chunk frames' bytes to the writer as they
 * come (raft/peer/peer_listen.c, receive_chunks); the SNAP_BEGIN message and
 * the SNAP_END record it decodes itself are fuzz_peer_codec's.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "kv_arena.h"
#include "mvcc.h"
#include "mvcc_snapshot.h"
#include "test_raft_util.h"

#define FUZZ_MAX_INPUT (256u * 1024)

static char base[4200], dir[4300];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

/* ---- the format, parsed independently ---- */

static uint32_t crc32c_ref(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static uint64_t be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* 1 if s is a complete, well-framed stream whose 'm' record (the last one
 * put wins in LevelDB; none: index 0) has mvcc.c's length (24 or 32) and
 * the header's index. */
static int stream_valid(const uint8_t *s, size_t n) {
    if (n < 16 || memcmp(s, "KSHIMSN1", 8) != 0) return 0;
    uint64_t index = be64(s + 8), records = 0, m_index = 0;
    int m_ok = 1;
    size_t off = 16;
    for (;;) {
        if (off >= n) return 0;
        if (s[off] == 2) {
            if (n - off != 13) return 0;
            if (be64(s + off + 1) != records) return 0;
            if (be32(s + off + 9) != crc32c_ref(0, s, off + 9)) return 0;
            return m_ok && m_index == index;
        }
        if (s[off] != 1 || n - off < 9) return 0;
        size_t kl = be32(s + off + 1), vl = be32(s + off + 5);
        if (kl == 0 || kl + vl > MVCC_SNAP_MAX_RECORD || n - off - 9 < kl + vl) return 0;
        const uint8_t *k = s + off + 9;
        if (kl == 1 && k[0] == 'm') {
            m_ok = vl == 24 || vl == 32;
            m_index = m_ok ? be64(k + 1) : 0;
        }
        off += 9 + kl + vl;
        records++;
    }
}

/* ---- the store ---- */

static void check_store(mvcc_t *m, uint64_t index) {
    assert(mvcc_applied_index(m) == index);
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    if (mvcc_txn_begin_read(m, &a, &t) == MVCC_OK) {
        static const uint8_t zero[1] = {0};
        mvcc_range_t r = mvcc_range_make(zero, 1, zero, 1);
        mvcc_kv_list_t out = {0};
        int64_t count = 0;
        int rc = mvcc_txn_range(t, &r, 0, 0, 0, &out, &count);
        assert(rc == MVCC_OK || rc == MVCC_ERR_IO || rc == MVCC_ERR_COMPACTED);
        mvcc_txn_end(t);
    }
    kv_arena_free(&a);
    uint32_t hash;
    int64_t rev;
    (void)mvcc_hash_all(m, &hash, &rev);
}

static void feed(mvcc_t *m, const uint8_t *sizes, size_t n_sizes, const uint8_t *s, size_t n) {
    char err[256];
    mvcc_snap_writer_t *w = NULL;
    if (mvcc_snapshot_import(m, &w, err, sizeof err) != MVCC_OK) abort(); /* the scratch dir is ours */
    int valid = stream_valid(s, n);
    size_t off = 0, i = 0;
    int rc = MVCC_OK;
    while (off < n && rc == MVCC_OK) {
        size_t c = n_sizes ? sizes[i++ % n_sizes] : n - off;
        if (c == 0) c = 1;
        if (c > n - off) c = n - off;
        rc = mvcc_snap_writer_write(w, s + off, c);
        off += c;
    }
    if (rc != MVCC_OK) {
        assert(rc == MVCC_ERR_CORRUPT);
        assert(!valid);
        mvcc_snap_writer_abort(w);
        return;
    }
    uint64_t index = 0;
    rc = mvcc_snap_writer_finish(w, &index);
    if (valid) {
        assert(rc == MVCC_OK);
    } else {
        assert(rc == MVCC_ERR_CORRUPT);
        return;
    }
    assert(index == be64(s + 8));
    rc = mvcc_snapshot_install(m, err, sizeof err);
    if (rc == MVCC_OK) {
        check_store(m, index);
    } else {
        assert(rc == MVCC_ERR_IO);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > FUZZ_MAX_INPUT) return 0;
    size_t n_sizes = data[0] & 7;
    if (size < 1 + n_sizes) return 0;
    if (!base[0]) {
        snprintf(base, sizeof base, "%s/snaprecv", fuzz_tmpdir());
        snprintf(dir, sizeof dir, "%s/store", base);
    }
    test_rm_rf(base);
    if (mkdir(base, 0700) != 0) abort();
    char err[256];
    mvcc_t *m = NULL;
    if (mvcc_open(dir, NULL, &m, err, sizeof err) != MVCC_OK) abort();
    feed(m, data + 1, n_sizes, data + 1 + n_sizes, size - 1 - n_sizes);
    mvcc_close(m);
    return 0;
}
