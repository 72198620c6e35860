/*
 * test_wal.c: the write-ahead log: round trip, torn tails of the last
 * segment at every byte (cut), damage anywhere else refused with the file and
 * offset (a flipped byte in a sealed segment or in the middle of the last one,
 * data after a sealed segment's end), segment rollover and release, conflict
 * supersession, hard state survival, refusing a log with a gap, and
 * snapshot records (compaction points, installed snapshots, kept across
 * release). Replay reads only the data extents of a segment (its
 * preallocated space is a hole): bytes written after a hole are still seen
 * (cut as a torn tail in the last segment, refused in a sealed one); and
 * wal_open_from leaves out the data of the entries a state machine holds
 * (not a CONF_CHANGE's), keeping their positions and terms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "crc32c.h"
#include "test_raft_util.h"
#include "latency_hist.h"
#include "wal.h"

#define SEG_SMALL 4096

static void make_entry(raft_entry_t *e, char *buf, uint64_t term, uint64_t index, const char *tag) {
    snprintf(buf, 64, "%s-%llu", tag, (unsigned long long)index);
    *e = (raft_entry_t){.term = term,
                        .index = index,
                        .type = RAFT_ENTRY_NORMAL,
                        .data = (const uint8_t *)buf,
                        .len = strlen(buf)};
}

/* Appends [lo, hi] with term and tag, then syncs. */
static void append_range(wal_t *w, uint64_t term, uint64_t lo, uint64_t hi, const char *tag) {
    for (uint64_t i = lo; i <= hi; i++) {
        char buf[64];
        raft_entry_t e;
        make_entry(&e, buf, term, i, tag);
        assert_int_equal(wal_append_entries(w, &e, 1), 0);
    }
    assert_int_equal(wal_sync(w), 0);
}

static void check_entry(const raft_entry_t *e, uint64_t term, uint64_t index, const char *tag) {
    char buf[64];
    snprintf(buf, sizeof(buf), "%s-%llu", tag, (unsigned long long)index);
    assert_int_equal(e->index, index);
    assert_int_equal(e->term, term);
    assert_int_equal(e->len, strlen(buf));
    assert_memory_equal(e->data, buf, e->len);
}

static wal_t *reopen(const char *dir, wal_recovered_t *rec) {
    wal_t *w = NULL;
    char err[256] = "";
    int rc = wal_open(dir, SEG_SMALL, &w, rec, err, sizeof(err));
    if (rc != 0) fprintf(stderr, "wal_open: %s\n", err);
    assert_int_equal(rc, 0);
    return w;
}

/* Path of the only (or last) segment file. */
static void last_segment(const char *dir, char *out) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    char best[256] = "";
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strlen(de->d_name) == 37 && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", de->d_name);
    closedir(d);
    assert_true(best[0]);
    snprintf(out, 512, "%s/%s", dir, best);
}

static void test_crc32c(void **state) {
    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c_sw(0, "123456789", 9), 0xE3069283u);
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t len = 0; len < sizeof(buf); len += 37)
        assert_int_equal(crc32c(0, buf, len), crc32c_sw(0, buf, len));
    /* incremental == one shot */
    assert_int_equal(crc32c(crc32c(0, buf, 100), buf + 100, 900), crc32c(0, buf, 1000));
}

static void test_round_trip(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "wal-rt");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 0);
    assert_int_equal(rec.base_index, 0);
    assert_int_equal(rec.hard_state.term, 0);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 20, "a");
    raft_hard_state_t hs = {.term = 3, .vote = 7, .commit = 15};
    assert_int_equal(wal_save_hard_state(w, &hs), 0);
    assert_int_equal(wal_sync(w), 0);
    wal_close(w);

    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 20);
    assert_int_equal(rec.tail_cut, 0);
    for (size_t i = 0; i < 20; i++) check_entry(&rec.ents[i], 1, i + 1, "a");
    assert_int_equal(rec.hard_state.term, 3);
    assert_int_equal(rec.hard_state.vote, 7);
    assert_int_equal(rec.hard_state.commit, 15);
    wal_recovered_free(&rec);
    append_range(w, 2, 21, 30, "b");
    wal_close(w);

    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 30);
    check_entry(&rec.ents[29], 2, 30, "b");
    wal_recovered_free(&rec);
    /* buffered but never written: dropped on close, never half-read */
    char buf[64];
    raft_entry_t e;
    make_entry(&e, buf, 2, 31, "lost");
    assert_int_equal(wal_append_entries(w, &e, 1), 0);
    wal_close(w);
    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 30);
    wal_recovered_free(&rec);
    wal_close(w);
    test_rm_rf(dir);
}

/* Opening dir must fail; the error names path and a byte offset, which is
 * returned. */
static uint64_t open_refused(const char *dir, const char *path) {
    wal_t *w = NULL;
    wal_recovered_t rec;
    char err[512] = "";
    assert_int_equal(wal_open(dir, SEG_SMALL, &w, &rec, err, sizeof(err)), -1);
    assert_null(w);
    if (!strstr(err, path)) fprintf(stderr, "error does not name %s: %s\n", path, err);
    assert_non_null(strstr(err, path));
    const char *o = strstr(err, "at offset ");
    assert_non_null(o);
    return strtoull(o + 10, NULL, 10);
}

static void flip_byte(const char *path, uint64_t off) {
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

/* Every prefix of the last record followed by zeros (a write cut short) is
 * cut back to the previous record and a later append lands cleanly in its
 * place. The same prefixes followed by non-zero garbage are not a torn write
 * (no sector of the record is zero, it does not run past the file): open is
 * refused, naming the file and the record's offset, and nothing is cut. */
static void test_torn_tail_every_offset(void **state) {
    (void)state;
    /* find the byte range of record 6 */
    char dir[256], seg[512];
    test_mkdtemp(dir, "wal-torn");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 5, "t");
    wal_stats_t st;
    wal_get_stats(w, &st);
    uint64_t start = st.live_bytes;
    append_range(w, 1, 6, 6, "t");
    wal_get_stats(w, &st);
    uint64_t end = st.live_bytes;
    wal_close(w);
    last_segment(dir, seg);
    int fd = open(seg, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t good[4096];
    assert_int_equal(pread(fd, good, end, 0), (ssize_t)end);
    close(fd);
    test_rm_rf(dir);

    for (int garbage = 0; garbage < 2; garbage++) {
        for (uint64_t cut = start; cut < end; cut++) {
            test_mkdtemp(dir, "wal-torn");
            w = reopen(dir, &rec);
            wal_recovered_free(&rec);
            wal_close(w);
            last_segment(dir, seg);
            fd = open(seg, O_RDWR);
            assert_true(fd >= 0);
            uint8_t img[4096];
            memcpy(img, good, end);
            memset(img + cut, garbage ? 0xA5 : 0, end - cut);
            assert_int_equal(pwrite(fd, img, end, 0), (ssize_t)end);
            close(fd);

            if (garbage) {
                assert_int_equal(open_refused(dir, seg), start);
                assert_int_equal(open_refused(dir, seg), start); /* nothing was cut */
                test_rm_rf(dir);
                continue;
            }
            w = reopen(dir, &rec);
            assert_int_equal(rec.n_ents, 5);
            check_entry(&rec.ents[4], 1, 5, "t");
            assert_int_equal(rec.tail_cut, cut > start);
            wal_recovered_free(&rec);
            append_range(w, 2, 6, 7, "n");
            wal_close(w);
            w = reopen(dir, &rec);
            assert_int_equal(rec.n_ents, 7);
            assert_int_equal(rec.tail_cut, 0);
            check_entry(&rec.ents[4], 1, 5, "t");
            check_entry(&rec.ents[5], 2, 6, "n");
            check_entry(&rec.ents[6], 2, 7, "n");
            wal_recovered_free(&rec);
            wal_close(w);
            test_rm_rf(dir);
        }
    }
}

/* A flipped byte in the middle of the last segment (valid records after it,
 * no zero sector) is damage, not a torn write: open is refused with the
 * file and the bad record's offset, and the log is left as it was. */
static void test_flip_in_last_segment_refused(void **state) {
    (void)state;
    char dir[256], seg[512];
    test_mkdtemp(dir, "wal-mid");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 4, "m");
    wal_stats_t st;
    wal_get_stats(w, &st);
    uint64_t rec5 = st.live_bytes;
    append_range(w, 1, 5, 10, "m");
    wal_close(w);
    last_segment(dir, seg);
    flip_byte(seg, rec5 + 20);
    assert_int_equal(open_refused(dir, seg), rec5);
    assert_int_equal(open_refused(dir, seg), rec5);
    flip_byte(seg, rec5 + 20); /* repaired by hand: every entry is still there */
    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 10);
    assert_int_equal(rec.tail_cut, 0);
    check_entry(&rec.ents[9], 1, 10, "m");
    wal_recovered_free(&rec);
    wal_close(w);
    test_rm_rf(dir);
}

/* The last batch spans several sectors and one sector in its middle never
 * reached the disk (still zero): a torn write, cut before the record that
 * holds the zero sector; the earlier batches survive. */
static void test_torn_sector_in_last_batch(void **state) {
    (void)state;
    char dir[256], seg[512];
    test_mkdtemp(dir, "wal-sector");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 3, "s");
    wal_stats_t st;
    wal_get_stats(w, &st);
    uint64_t batch = st.live_bytes;
    append_range(w, 1, 4, 80, "sector-padding-padding");
    wal_get_stats(w, &st);
    assert_true(st.segments == 1 && st.live_bytes > batch + 3 * 512);
    wal_close(w);
    last_segment(dir, seg);
    uint64_t sec = (batch / 512 + 2) * 512;
    uint8_t zero[512] = {0};
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, zero, 512, (off_t)sec), 512);
    close(fd);
    w = reopen(dir, &rec);
    assert_int_equal(rec.tail_cut, 1);
    assert_true(rec.n_ents >= 3 && rec.n_ents < 80);
    for (size_t i = 3; i < rec.n_ents; i++) check_entry(&rec.ents[i], 1, i + 1, "sector-padding-padding");
    uint64_t n = rec.n_ents;
    wal_recovered_free(&rec);
    append_range(w, 2, n + 1, n + 1, "after");
    wal_close(w);
    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, n + 1);
    assert_int_equal(rec.tail_cut, 0);
    check_entry(&rec.ents[n], 2, n + 1, "after");
    wal_recovered_free(&rec);
    wal_close(w);
    test_rm_rf(dir);
}

/* End of the records in a segment file: after its last non-zero byte (the
 * last record here is an entry whose data is text). */
static size_t records_end(const char *seg) {
    int fd = open(seg, O_RDONLY);
    assert_true(fd >= 0);
    static uint8_t img[1 << 20];
    ssize_t n = read(fd, img, sizeof img);
    close(fd);
    assert_true(n > 0);
    while (n > 0 && img[n - 1] == 0) n--;
    return (size_t)n;
}

/* Appends one synced entry at index whose record is exactly size bytes. */
static void append_sized(wal_t *w, uint64_t index, size_t size) {
    char buf[4096];
    size_t data = size - 9 - 17; /* record header, entry's term/index/type */
    assert_true(data >= 1 && data < sizeof buf);
    memset(buf, 'p', data);
    raft_entry_t e = {
        .term = 1, .index = index, .type = RAFT_ENTRY_NORMAL, .data = (const uint8_t *)buf, .len = data};
    assert_int_equal(wal_append_entries(w, &e, 1), 0);
    assert_int_equal(wal_sync(w), 0);
}

/* A power cut that reverts the page holding the start of the last batch but
 * keeps the next one, when the batch's first record header straddles the
 * two pages: its length field (the first d bytes of the header on the
 * reverted page) reads zero, its checksum is there. Found by
 * e2e/test_power_loss (d = 4). A torn write: cut before it, every synced
 * entry kept. A zero length field followed by data in its own sector is
 * damage, not a torn write. */
static void test_header_straddling_reverted_page(void **state) {
    (void)state;
    size_t ds[] = {1, 4, 8};
    for (size_t k = 0; k < sizeof ds / sizeof ds[0]; k++) {
        char dir[256], seg[512], err[256];
        test_mkdtemp(dir, "wal-straddle");
        wal_t *w = NULL;
        wal_recovered_t rec;
        assert_int_equal(wal_open(dir, 1 << 20, &w, &rec, err, sizeof err), 0);
        wal_recovered_free(&rec);
        last_segment(dir, seg);
        uint64_t index = 1;
        /* Synced batches until the records end exactly d bytes before a page. */
        for (;;) {
            size_t end = records_end(seg), gap = 4096 - end % 4096;
            if (gap == ds[k]) break;
            append_sized(w, index++, gap > ds[k] + 27 ? gap - ds[k] : 100);
        }
        size_t batch = records_end(seg);
        uint64_t synced = index - 1;
        append_range(w, 1, index, index + 40, "after-the-cut"); /* runs onto the next page */
        wal_close(w);
        uint8_t zero[8] = {0};
        int fd = open(seg, O_RDWR);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, zero, ds[k], (off_t)batch),
                         (ssize_t)ds[k]); /* the reverted page's part */
        close(fd);
        assert_int_equal(wal_open(dir, 1 << 20, &w, &rec, err, sizeof err), 0);
        assert_int_equal(rec.tail_cut, 1);
        assert_int_equal(rec.n_ents, synced);
        wal_recovered_free(&rec);
        wal_close(w);
        test_rm_rf(dir);
    }
    /* The same zero length field in the middle of a written sector: refused. */
    char dir[256], seg[512], err[256];
    test_mkdtemp(dir, "wal-zerolen");
    wal_t *w = NULL;
    wal_recovered_t rec;
    assert_int_equal(wal_open(dir, 1 << 20, &w, &rec, err, sizeof err), 0);
    wal_recovered_free(&rec);
    last_segment(dir, seg);
    append_sized(w, 1, 60);
    size_t at = records_end(seg);
    append_sized(w, 2, 60);
    append_sized(w, 3, 60);
    wal_close(w);
    assert_true(at % 512 < 512 - 60);
    uint8_t zero[4] = {0};
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, zero, 4, (off_t)at), 4);
    close(fd);
    assert_int_equal(wal_open(dir, 1 << 20, &w, &rec, err, sizeof err), -1);
    assert_non_null(strstr(err, "zero record length"));
    test_rm_rf(dir);
}

static size_t count_files(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), s = strlen(suffix);
        if (l > s && strcmp(de->d_name + l - s, suffix) == 0) n++;
    }
    closedir(d);
    return n;
}

static void test_rollover_and_release(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "wal-roll");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    raft_hard_state_t hs = {.term = 1, .vote = 1, .commit = 0};
    assert_int_equal(wal_save_hard_state(w, &hs), 0);
    for (uint64_t i = 1; i <= 500; i += 10) append_range(w, 1, i, i + 9, "roll-padding-padding-padding");
    wal_stats_t st;
    wal_get_stats(w, &st);
    assert_true(st.segments > 3);
    assert_int_equal(count_files(dir, ".wal"), st.segments);
    assert_int_equal(st.last_index, 500);
    wal_close(w);

    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 500);
    for (size_t i = 0; i < 500; i++) check_entry(&rec.ents[i], 1, i + 1, "roll-padding-padding-padding");
    wal_recovered_free(&rec);

    int dropped = wal_release_to(w, 250);
    assert_true(dropped > 0);
    wal_stats_t st2;
    wal_get_stats(w, &st2);
    assert_int_equal(st2.segments, st.segments - (uint64_t)dropped);
    assert_int_equal(count_files(dir, ".wal"), st2.segments);
    wal_close(w);

    w = reopen(dir, &rec);
    assert_true(rec.base_index > 0 && rec.base_index <= 250);
    assert_int_equal(rec.base_term, 1);
    assert_int_equal(rec.base_index + rec.n_ents, 500);
    check_entry(&rec.ents[0], 1, rec.base_index + 1, "roll-padding-padding-padding");
    /* the hard state was written only in the first segment: carried over */
    assert_int_equal(rec.hard_state.term, 1);
    assert_int_equal(rec.hard_state.vote, 1);
    wal_recovered_free(&rec);

    /* releasing everything keeps the active segment and the log position */
    assert_true(wal_release_to(w, 500) >= 0);
    wal_get_stats(w, &st2);
    assert_int_equal(st2.segments, 1);
    wal_close(w);
    w = reopen(dir, &rec);
    assert_int_equal(rec.base_index + rec.n_ents, 500);
    assert_int_equal(rec.hard_state.term, 1);
    wal_recovered_free(&rec);
    append_range(w, 2, 501, 502, "after");
    wal_close(w);
    w = reopen(dir, &rec);
    assert_int_equal(rec.base_index + rec.n_ents, 502);
    check_entry(&rec.ents[rec.n_ents - 1], 2, 502, "after");
    wal_recovered_free(&rec);
    wal_close(w);
    test_rm_rf(dir);
}

static void test_conflict_supersedes(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "wal-conf");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 10, "old");
    append_range(w, 2, 6, 8, "new");
    wal_close(w);
    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 8);
    check_entry(&rec.ents[4], 1, 5, "old");
    check_entry(&rec.ents[5], 2, 6, "new");
    check_entry(&rec.ents[7], 2, 8, "new");
    wal_recovered_free(&rec);
    wal_close(w);
    test_rm_rf(dir);
}

/* A hole in the indices is not a torn tail: refuse to open, don't guess. */
static void test_gap_refused(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "wal-gap");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 3, "g");
    append_range(w, 1, 5, 5, "g");
    wal_close(w);
    char err[256] = "";
    assert_int_equal(wal_open(dir, SEG_SMALL, &w, &rec, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "gap"));
    test_rm_rf(dir);
}

/* Fills three or more segments with entries 1..200; path of the first. */
static void three_segments(char *dir, char *first) {
    test_mkdtemp(dir, "wal-old");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    for (uint64_t i = 1; i <= 200; i += 10) append_range(w, 1, i, i + 9, "seg-padding-padding-padding");
    wal_stats_t st;
    wal_get_stats(w, &st);
    assert_true(st.segments >= 3);
    wal_close(w);
    snprintf(first, 512, "%s/%016x-%016x.wal", dir, 1, 1);
}

static void check_all_200(const char *dir) {
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 200);
    assert_int_equal(rec.tail_cut, 0);
    for (size_t i = 0; i < 200; i++) check_entry(&rec.ents[i], 1, i + 1, "seg-padding-padding-padding");
    wal_recovered_free(&rec);
    wal_close(w);
}

/* A flipped byte in a sealed segment refuses to open, naming the segment and
 * the offset of the damaged record; nothing is cut or set aside, so once the
 * byte is repaired every entry is back. */
static void test_flip_in_sealed_segment_refused(void **state) {
    (void)state;
    char dir[256], first[512];
    three_segments(dir, first);
    flip_byte(first, 200);
    uint64_t off = open_refused(dir, first);
    assert_true(off <= 200 && off + 64 > 200);
    assert_int_equal(open_refused(dir, first), off);
    assert_int_equal(count_files(dir, ".broken"), 0);
    flip_byte(first, 200);
    check_all_200(dir);
    test_rm_rf(dir);
}

/* What would be a torn tail in the last segment is damage in a sealed one
 * (it was synced before the next segment was created): zeros over its last
 * record, or a zeroed header with records after it, refuse to open. */
static void test_sealed_segment_tail_refused(void **state) {
    (void)state;
    char dir[256], first[512];
    three_segments(dir, first);
    struct stat sb;
    assert_int_equal(stat(first, &sb), 0);
    uint8_t img[SEG_SMALL];
    int fd = open(first, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, img, SEG_SMALL, 0), SEG_SMALL);
    size_t end = SEG_SMALL;
    while (end > 0 && img[end - 1] == 0) end--;
    uint8_t zero[16] = {0};
    assert_int_equal(pwrite(fd, zero, 16, (off_t)end - 16), 16); /* last record's tail */
    close(fd);
    uint64_t off = open_refused(dir, first);
    assert_true(off < end - 16);
    fd = open(first, O_RDWR);
    assert_int_equal(pwrite(fd, img + end - 16, 16, (off_t)end - 16), 16);
    assert_int_equal(pwrite(fd, zero, 9, 200), 9); /* likely mid-record: damage either way */
    close(fd);
    open_refused(dir, first);
    fd = open(first, O_RDWR);
    assert_int_equal(pwrite(fd, img + 200, 9, 200), 9);
    close(fd);
    check_all_200(dir);
    test_rm_rf(dir);
}

#define SEG_HOLES (1u << 20) /* room for a hole after the records */

static void write_at(const char *path, const void *p, size_t n, uint64_t off) {
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

/* Junk far after the last record, past the never written (hole) part of
 * the preallocated segment: in the last segment it is a torn tail, cut (and
 * gone from the file); once the segment is sealed it is damage, refused. */
static void test_data_after_hole(void **state) {
    (void)state;
    char dir[256], seg[512], err[512] = "";
    test_mkdtemp(dir, "wal-hole");
    wal_recovered_t rec;
    wal_t *w = NULL;
    assert_int_equal(wal_open(dir, SEG_HOLES, &w, &rec, err, sizeof err), 0);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 20, "a");
    wal_close(w);
    last_segment(dir, seg);
    const uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    write_at(seg, junk, sizeof junk, SEG_HOLES / 2);
    assert_int_equal(wal_open(dir, SEG_HOLES, &w, &rec, err, sizeof err), 0);
    assert_int_equal(rec.tail_cut, 1);
    assert_int_equal(rec.n_ents, 20);
    check_entry(&rec.ents[19], 1, 20, "a");
    wal_recovered_free(&rec);
    uint8_t back[8];
    int fd = open(seg, O_RDONLY);
    assert_int_equal(pread(fd, back, sizeof back, SEG_HOLES / 2), (ssize_t)sizeof back);
    close(fd);
    assert_memory_equal(back, (uint8_t[8]){0}, sizeof back); /* cut, preallocated again */
    /* fill the segment so the next one starts: the first is sealed */
    static char big[64 * 1024];
    memset(big, 'x', sizeof big);
    uint64_t index = 21;
    for (; index < 21 + 2 * SEG_HOLES / sizeof big; index++) {
        raft_entry_t e = {.term = 1, .index = index, .data = (const uint8_t *)big, .len = sizeof big};
        assert_int_equal(wal_append_entries(w, &e, 1), 0);
        assert_int_equal(wal_sync(w), 0);
    }
    wal_close(w);
    char first[512];
    snprintf(first, sizeof first, "%s/0000000000000001-0000000000000001.wal", dir);
    struct stat st;
    assert_int_equal(stat(first, &st), 0);
    write_at(first, junk, sizeof junk, (uint64_t)st.st_size - sizeof junk);
    assert_int_equal(wal_open(dir, SEG_HOLES, &w, &rec, err, sizeof err), -1);
    assert_non_null(strstr(err, first));
    test_rm_rf(dir);
}

/* wal_open_from(N): entries up to N come without data, CONF_CHANGE entries
 * with theirs; entries after N, the positions, terms and the hard state as
 * wal_open gives them. */
static void test_open_without_applied_data(void **state) {
    (void)state;
    char dir[256], err[256] = "";
    test_mkdtemp(dir, "wal-from");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 4, "a");
    const uint8_t cc[9] = {1, 0, 0, 0, 0, 0, 0, 0, 9};
    raft_entry_t conf = {.term = 2, .index = 5, .type = RAFT_ENTRY_CONF_CHANGE, .data = cc, .len = sizeof cc};
    assert_int_equal(wal_append_entries(w, &conf, 1), 0);
    append_range(w, 2, 6, 12, "b");
    raft_hard_state_t hs = {.term = 2, .vote = 1, .commit = 12};
    assert_int_equal(wal_save_hard_state(w, &hs), 0);
    assert_int_equal(wal_sync(w), 0);
    wal_close(w);
    assert_int_equal(wal_open_from(dir, SEG_SMALL, 8, &w, &rec, err, sizeof err), 0);
    assert_int_equal(rec.base_index, 0);
    assert_int_equal(rec.n_ents, 12);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(rec.ents[i].index, i + 1);
        assert_int_equal(rec.ents[i].term, i < 4 ? 1 : 2);
        if (i == 4) continue;
        assert_int_equal(rec.ents[i].len, 0);
        assert_null(rec.ents[i].data);
    }
    assert_int_equal(rec.ents[4].type, RAFT_ENTRY_CONF_CHANGE);
    assert_int_equal(rec.ents[4].len, sizeof cc);
    assert_memory_equal(rec.ents[4].data, cc, sizeof cc);
    for (size_t i = 8; i < 12; i++) check_entry(&rec.ents[i], 2, i + 1, "b");
    assert_int_equal(rec.hard_state.commit, 12);
    wal_recovered_free(&rec);
    wal_close(w);
    w = reopen(dir, &rec); /* nothing of it was lost */
    check_entry(&rec.ents[0], 1, 1, "a");
    check_entry(&rec.ents[7], 2, 8, "b");
    wal_recovered_free(&rec);
    wal_close(w);
    test_rm_rf(dir);
}

static void check_snapshot(const wal_recovered_t *rec, uint64_t index, uint64_t term, size_t nv, size_t nl) {
    assert_true(rec->has_snapshot);
    assert_int_equal(rec->snapshot.index, index);
    assert_int_equal(rec->snapshot.term, term);
    assert_int_equal(rec->snapshot.n_voters, nv);
    assert_int_equal(rec->snapshot.n_learners, nl);
    assert_int_equal(rec->base_index, index);
    assert_int_equal(rec->base_term, term);
}

/* SNAPSHOT records: a compaction point inside the log drops the entries up
 * to it and keeps the rest; an installed snapshot restarts the log after
 * it (even over a longer log); the last one survives the release of the
 * segments before it (it is repeated at every new segment's head). */
static void test_snapshot_records(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "wal-snap");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    assert_false(rec.has_snapshot);
    wal_recovered_free(&rec);
    append_range(w, 1, 1, 10, "a");
    const uint64_t ids[] = {1, 2, 3, 4};
    raft_snapshot_meta_t sm = {
        .index = 6, .term = 1, .voters = ids, .n_voters = 3, .learners = ids + 3, .n_learners = 1};
    assert_int_equal(wal_save_snapshot(w, &sm, 0), 0);
    assert_int_equal(wal_sync(w), 0);
    wal_close(w);
    w = reopen(dir, &rec);
    check_snapshot(&rec, 6, 1, 3, 1);
    assert_int_equal(rec.snapshot.voters[2], 3);
    assert_int_equal(rec.snapshot.learners[0], 4);
    assert_int_equal(rec.n_ents, 4);
    check_entry(&rec.ents[0], 1, 7, "a");
    wal_recovered_free(&rec);
    /* a snapshot from the leader at 20 (term 3), over a log ending at 10 */
    sm = (raft_snapshot_meta_t){.index = 20, .term = 3, .voters = ids, .n_voters = 2};
    assert_int_equal(wal_save_snapshot(w, &sm, 1), 0);
    append_range(w, 3, 21, 22, "b");
    wal_close(w);
    w = reopen(dir, &rec);
    check_snapshot(&rec, 20, 3, 2, 0);
    assert_int_equal(rec.n_ents, 2);
    check_entry(&rec.ents[1], 3, 22, "b");
    wal_recovered_free(&rec);
    /* and one at 21 over a longer log ending at 22 with another term at 21 */
    sm = (raft_snapshot_meta_t){.index = 21, .term = 4, .voters = ids, .n_voters = 1};
    assert_int_equal(wal_save_snapshot(w, &sm, 1), 0);
    assert_int_equal(wal_sync(w), 0);
    for (uint64_t i = 22; i <= 400; i += 20) append_range(w, 4, i, i + 19 > 400 ? 400 : i + 19, "c");
    wal_stats_t ws;
    wal_get_stats(w, &ws);
    assert_true(ws.segments > 2);
    sm = (raft_snapshot_meta_t){.index = 300, .term = 4, .voters = ids, .n_voters = 4};
    assert_int_equal(wal_save_snapshot(w, &sm, 0), 0);
    assert_int_equal(wal_sync(w), 0);
    assert_true(wal_release_to(w, 300) > 0);
    for (uint64_t i = 401; i <= 600; i += 20) /* new segments repeat the snapshot at their head */
        append_range(w, 4, i, i + 19, "c");
    wal_close(w);
    w = reopen(dir, &rec);
    check_snapshot(&rec, 300, 4, 4, 0);
    assert_int_equal(rec.n_ents, 300);
    check_entry(&rec.ents[0], 4, 301, "c");
    check_entry(&rec.ents[299], 4, 600, "c");
    wal_recovered_free(&rec);
    /* a snapshot at the log end: the segment holding it can go once the
     * next one (whose head repeats it) exists */
    sm = (raft_snapshot_meta_t){.index = 600, .term = 4, .voters = ids, .n_voters = 3};
    assert_int_equal(wal_save_snapshot(w, &sm, 0), 0);
    assert_int_equal(wal_sync(w), 0);
    for (uint64_t i = 601; i <= 700; i += 20) append_range(w, 5, i, i + 19, "d");
    assert_true(wal_release_to(w, 600) > 0);
    wal_close(w);
    w = reopen(dir, &rec);
    check_snapshot(&rec, 600, 4, 3, 0);
    assert_int_equal(rec.n_ents, 100);
    check_entry(&rec.ents[0], 5, 601, "d");
    wal_recovered_free(&rec);
    wal_close(w);
    test_rm_rf(dir);
}

/* Every wal_sync is one observation of the fsync histogram (latency_hist.h);
 * write_bytes follows bytes_written. */
static void test_fsync_histogram(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "wal-hist");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    wal_disk_stats_t d0, d1;
    wal_disk_stats(w, &d0);
    for (uint64_t i = 1; i <= 3; i++) append_range(w, 1, i, i, "h");
    wal_disk_stats(w, &d1);
    assert_int_equal(d1.fsync.count - d0.fsync.count, 3);
    assert_true(d1.fsync.sum_ns > d0.fsync.sum_ns);
    assert_true(d1.fsync.bucket[LAT_HIST_BUCKETS - 1] <= d1.fsync.count);
    wal_stats_t ws;
    wal_get_stats(w, &ws);
    assert_int_equal(d1.write_bytes, ws.bytes_written);
    assert_true(d1.write_bytes > d0.write_bytes);
    wal_close(w);
    test_rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fsync_histogram),
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_flip_in_last_segment_refused),
        cmocka_unit_test(test_torn_sector_in_last_batch),
        cmocka_unit_test(test_header_straddling_reverted_page),
        cmocka_unit_test(test_rollover_and_release),
        cmocka_unit_test(test_conflict_supersedes),
        cmocka_unit_test(test_gap_refused),
        cmocka_unit_test(test_flip_in_sealed_segment_refused),
        cmocka_unit_test(test_sealed_segment_tail_refused),
        cmocka_unit_test(test_snapshot_records),
        cmocka_unit_test(test_data_after_hole),
        cmocka_unit_test(test_open_without_applied_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
