/*
 * test_wal.c: the write-ahead log: round trip, torn tails at every byte,
 * corruption in the middle, segment rollover and release, conflict
 * supersession, hard state survival, and refusing a log with a gap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>

#include "crc32c.h"
#include "test_raft_util.h"
#include "wal.h"

#define SEG_SMALL 4096

static void make_entry(raft_entry_t *e, char *buf, uint64_t term, uint64_t index, const char *tag) {
    snprintf(buf, 64, "%s-%llu", tag, (unsigned long long)index);
    *e = (raft_entry_t){ .term = term, .index = index, .type = RAFT_ENTRY_NORMAL,
                         .data = (const uint8_t *)buf, .len = strlen(buf) };
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
        if (strlen(de->d_name) == 37 && strcmp(de->d_name, best) > 0) snprintf(best, sizeof(best), "%s", de->d_name);
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
    raft_hard_state_t hs = { .term = 3, .vote = 7, .commit = 15 };
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

/* Every prefix of the last record (rest zero, or rest garbage) is cut back
 * to the previous record; a later append lands cleanly in its place. */
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

            w = reopen(dir, &rec);
            assert_int_equal(rec.n_ents, 5);
            check_entry(&rec.ents[4], 1, 5, "t");
            if (garbage || cut > start) assert_int_equal(rec.tail_cut, 1);
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

/* A bad checksum in the middle ends the log there; records after it never
 * come back, even once new records are written over the cut. */
static void test_corrupt_middle(void **state) {
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
    int fd = open(seg, O_RDWR);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)rec5 + 20), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)rec5 + 20), 1);
    close(fd);

    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 4);
    assert_int_equal(rec.tail_cut, 1);
    wal_recovered_free(&rec);
    append_range(w, 2, 5, 5, "x");
    wal_close(w);
    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, 5);
    check_entry(&rec.ents[4], 2, 5, "x");
    wal_recovered_free(&rec);
    wal_close(w);
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
    raft_hard_state_t hs = { .term = 1, .vote = 1, .commit = 0 };
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

/* Corruption in an old segment: later segments are set aside, not read. */
static void test_corrupt_old_segment(void **state) {
    (void)state;
    char dir[256];
    test_mkdtemp(dir, "wal-old");
    wal_recovered_t rec;
    wal_t *w = reopen(dir, &rec);
    wal_recovered_free(&rec);
    for (uint64_t i = 1; i <= 200; i += 10) append_range(w, 1, i, i + 9, "seg-padding-padding-padding");
    wal_stats_t st;
    wal_get_stats(w, &st);
    assert_true(st.segments >= 3);
    wal_close(w);
    char first[512];
    snprintf(first, sizeof(first), "%s/%016x-%016x.wal", dir, 1, 1);
    int fd = open(first, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, 200), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 200), 1);
    close(fd);
    w = reopen(dir, &rec);
    assert_true(rec.n_ents < 200);
    assert_true(rec.broken_segments >= 2);
    assert_int_equal(count_files(dir, ".broken"), rec.broken_segments);
    uint64_t n = rec.n_ents;
    wal_recovered_free(&rec);
    append_range(w, 2, n + 1, n + 1, "fresh");
    wal_close(w);
    w = reopen(dir, &rec);
    assert_int_equal(rec.n_ents, n + 1);
    check_entry(&rec.ents[n], 2, n + 1, "fresh");
    wal_recovered_free(&rec);
    wal_close(w);
    test_rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_corrupt_middle),
        cmocka_unit_test(test_rollover_and_release),
        cmocka_unit_test(test_conflict_supersedes),
        cmocka_unit_test(test_gap_refused),
        cmocka_unit_test(test_corrupt_old_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
