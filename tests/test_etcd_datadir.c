/*
 * test_etcd_datadir.c: kshimd's take-over of an etcd data dir (target
 * kshim_etcd_datadir: cmd/etcd_datadir.c on raft/etcd_wal.c and the
 * restore). etcd's WAL reader on a WAL written by real `etcdctl snapshot
 * restore` (from a database our writer made), on hand-encoded WALs (writes
 * past the consistent index counted, conf changes and empty entries not,
 * padding, the CRC chain across files), and on every truncation and byte
 * flip of a real one and random garbage (an error or a clean summary, never
 * a crash). The take-over: a restored dir is converted keeping the
 * revisions and etcd's files, a second start does nothing, a build
 * interrupted before the swap is redone, a swap not finished is finished,
 * and a dir with a write past the consistent index (or a gap) is refused
 * with the dir left byte for byte as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bbolt.h"
#include "crc32c.h"
#include "etcd_datadir.h"
#include "etcd_db.h"
#include "etcd_wal.h"
#include "kv_arena.h"
#include "mvcc.h"

static char tmpdir[256];
static int have_etcdctl;

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

static int group_setup(void **state) {
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    if (system(cmd) != 0) return -1;
    snprintf(tmpdir, sizeof tmpdir, "%s/etcddir-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) return -1;
    have_etcdctl = system("command -v etcdctl >/dev/null 2>&1") == 0;
    return 0;
}

static int group_teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

/* ---- a database from our writer, a data dir from real etcdctl ---- */

static void put(mvcc_t *m, const char *k, const char *v, uint64_t index) {
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_write(m, &a, &t), MVCC_OK);
    assert_int_equal(mvcc_txn_put(t, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v), 0, NULL),
                     MVCC_OK);
    assert_int_equal(mvcc_txn_commit(t, index), MVCC_OK);
    mvcc_txn_end(t);
    kv_arena_free(&a);
}

/* <tmpdir>/src.db: foo1..foo3 at revisions 2..4, foo1 again at 5. */
static void make_db(void) {
    char dir[512], path[512], err[256];
    snprintf(dir, sizeof dir, "%s/src-store", tmpdir);
    snprintf(path, sizeof path, "%s/src.db", tmpdir);
    if (access(path, F_OK) == 0) return;
    mvcc_t *m = NULL;
    assert_int_equal(mvcc_open(dir, NULL, &m, err, sizeof err), 0);
    put(m, "foo1", "val1", 1);
    put(m, "foo2", "val2", 2);
    put(m, "foo3", "val3", 3);
    put(m, "foo1", "val1b", 4);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    etcd_db_stats_t st;
    assert_int_equal(etcd_db_write(m, NULL, bbolt_fd_sink, &fd, &st, err, sizeof err), ETCD_DB_OK);
    assert_int_equal(st.revision, 5);
    close(fd);
    mvcc_close(m);
}

/* dir: what `etcdctl snapshot restore` makes of src.db (member n1). */
static void etcdctl_restore(const char *dir) {
    make_db();
    sh("rm -rf %s && ETCDCTL_API=3 etcdctl snapshot restore %s/src.db --skip-hash-check --name n1 "
       "--initial-cluster n1=http://localhost:2380 --initial-advertise-peer-urls http://localhost:2380 "
       "--initial-cluster-token tok --data-dir %s >/dev/null 2>&1",
       dir, tmpdir, dir);
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void write_file(const char *path, const uint8_t *b, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
}

/* ---- a hand-made WAL (etcd's encoder) ---- */

typedef struct enc {
    uint8_t buf[8192];
    size_t len;
    uint32_t crc;
} enc_t;

static size_t varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* n bytes of a walpb.Record as etcd's encoder writes them: the length
 * word, the record, zeros to 8 bytes. */
static void frame(enc_t *e, const uint8_t *rec, size_t n) {
    size_t pad = (8 - n % 8) % 8;
    uint64_t word = n | (pad ? (uint64_t)(0x80 | pad) << 56 : 0);
    for (int i = 0; i < 8; i++) e->buf[e->len++] = (uint8_t)(word >> (8 * i));
    memcpy(e->buf + e->len, rec, n);
    e->len += n;
    memset(e->buf + e->len, 0, pad);
    e->len += pad;
}

static void record(enc_t *e, int type, const uint8_t *data, size_t dlen) {
    uint32_t crc = type == 4 ? e->crc : crc32c(e->crc, data, dlen);
    e->crc = crc;
    uint8_t rec[1024];
    size_t n = 0;
    rec[n++] = 0x08;
    n += varint(rec + n, (uint64_t)type);
    rec[n++] = 0x10;
    n += varint(rec + n, crc);
    if (dlen) {
        rec[n++] = 0x1a;
        n += varint(rec + n, dlen);
        memcpy(rec + n, data, dlen);
        n += dlen;
    }
    frame(e, rec, n);
}


/* A raftpb.Entry record: type, term 2, index, data. */
static void entry(enc_t *e, int type, uint64_t index, const char *data) {
    uint8_t b[512];
    size_t n = 0;
    b[n++] = 0x08;
    n += varint(b + n, (uint64_t)type);
    b[n++] = 0x10;
    n += varint(b + n, 2);
    b[n++] = 0x18;
    n += varint(b + n, index);
    if (data) {
        b[n++] = 0x22;
        n += varint(b + n, strlen(data));
        memcpy(b + n, data, strlen(data));
        n += strlen(data);
    }
    record(e, 2, b, n);
}

static void snapshot_rec(enc_t *e, uint64_t index) {
    uint8_t b[16];
    size_t n = 0;
    b[n++] = 0x08;
    n += varint(b + n, index);
    b[n++] = 0x10;
    n += varint(b + n, 1);
    record(e, 5, b, n);
}

static int scan(const enc_t *e, uint64_t after, etcd_wal_summary_t *s) {
    memset(s, 0, sizeof *s);
    uint32_t crc = 0;
    char err[256];
    return etcd_wal_scan_buf(e->buf, e->len, 1, after, &crc, s, err, sizeof err);
}

/* ---- the reader ---- */

/* Records without a data field (fuzz_etcd_wal found it: UBSan's "zero
 * offset to null pointer" in the entry and snapshot decoders) decode as
 * empty messages. */
static void test_records_without_data(void **state) {
    (void)state;
    enc_t e = {0};
    record(&e, 5, NULL, 0);
    record(&e, 2, NULL, 0);
    snapshot_rec(&e, 7);
    etcd_wal_summary_t s;
    assert_int_equal(scan(&e, 0, &s), ETCD_WAL_OK);
    assert_int_equal(s.records, 3);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.snapshot_index, 7);
}

static void test_wal_from_etcdctl(void **state) {
    if (!have_etcdctl) skip();
    char dir[512], wal[600], db[600], err[256];
    snprintf(dir, sizeof dir, "%s/restored", tmpdir);
    etcdctl_restore(dir);
    snprintf(wal, sizeof wal, "%s/member/wal", dir);
    snprintf(db, sizeof db, "%s/member/snap/db", dir);
    int fd = open(db, O_RDONLY);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    uint64_t ci = 99;
    assert_int_equal(etcd_db_consistent_index(fd, (uint64_t)sb.st_size, &ci, err, sizeof err), ETCD_DB_OK);
    close(fd);
    assert_int_equal(ci, 1); /* one member: one conf change, the snapshot at 1 */
    etcd_wal_summary_t s;
    assert_int_equal(etcd_wal_scan_dir(wal, ci, &s, err, sizeof err), ETCD_WAL_OK);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.first_index, 1);
    assert_int_equal(s.last_index, 1);
    assert_int_equal(s.snapshot_index, 1);
    assert_int_equal(s.writes_after, 0);
    assert_int_equal(s.torn_tail, 0);
    /* crc, metadata, snapshot 0 (a new WAL's), the entry, state, snapshot 1 */
    assert_int_equal(s.records, 6);
    /* the database's index, 0 for ours (applied index 0 written as is) */
    snprintf(db, sizeof db, "%s/src.db", tmpdir);
    fd = open(db, O_RDONLY);
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal(etcd_db_consistent_index(fd, (uint64_t)sb.st_size, &ci, err, sizeof err), ETCD_DB_OK);
    close(fd);
}

static void test_wal_hand_made(void **state) {
    enc_t e = {0};
    record(&e, 4, NULL, 0);
    entry(&e, 1, 1, "confchange");
    snapshot_rec(&e, 1);
    entry(&e, 0, 2, NULL);      /* a leader's empty entry */
    entry(&e, 0, 3, "put foo"); /* a write */
    entry(&e, 2, 4, "confv2");  /* a conf change v2 */
    entry(&e, 0, 5, "put bar"); /* a write */
    etcd_wal_summary_t s;
    assert_int_equal(scan(&e, 1, &s), ETCD_WAL_OK);
    assert_int_equal(s.entries, 5);
    assert_int_equal(s.first_index, 1);
    assert_int_equal(s.last_index, 5);
    assert_int_equal(s.snapshot_index, 1);
    assert_int_equal(s.writes_after, 2);
    assert_int_equal(s.first_write_after, 3);
    assert_int_equal(scan(&e, 3, &s), ETCD_WAL_OK);
    assert_int_equal(s.writes_after, 1);
    assert_int_equal(s.first_write_after, 5);
    assert_int_equal(scan(&e, 5, &s), ETCD_WAL_OK);
    assert_int_equal(s.writes_after, 0);
    /* preallocated zeros after the records end the file */
    enc_t z = e;
    memset(z.buf + z.len, 0, 1024);
    z.len += 1024;
    assert_int_equal(scan(&z, 5, &s), ETCD_WAL_OK);
    assert_int_equal(s.entries, 5);
    /* the CRC runs on across files: a second file starting with a crc
     * record carrying the running value */
    enc_t f2 = {.crc = e.crc};
    record(&f2, 4, NULL, 0);
    entry(&f2, 0, 6, "put baz");
    uint32_t crc = 0;
    char err[256];
    memset(&s, 0, sizeof s);
    assert_int_equal(etcd_wal_scan_buf(e.buf, e.len, 0, 5, &crc, &s, err, sizeof err), ETCD_WAL_OK);
    assert_int_equal(etcd_wal_scan_buf(f2.buf, f2.len, 1, 5, &crc, &s, err, sizeof err), ETCD_WAL_OK);
    assert_int_equal(s.files, 2);
    assert_int_equal(s.writes_after, 1);
    /* a second file whose crc record does not continue the chain */
    crc = 0x1234;
    assert_int_equal(etcd_wal_scan_buf(f2.buf, f2.len, 1, 5, &crc, &s, err, sizeof err), ETCD_WAL_E_CORRUPT);
}

/* A field of a known number with another wire type is refused, as etcd's
 * generated Unmarshal refuses it ("proto: wrong wireType"). */
static void test_wal_wrong_wire_type(void **state) {
    enc_t e = {0};
    record(&e, 4, NULL, 0);
    /* a metadata record whose data (field 3) is a varint; its CRC is right */
    uint8_t rec[16] = {0x08, 0x01, 0x10};
    size_t n = 3 + varint(rec + 3, e.crc);
    rec[n++] = 0x18;
    rec[n++] = 0x00;
    enc_t bad = e;
    frame(&bad, rec, n);
    etcd_wal_summary_t s;
    assert_int_equal(scan(&bad, 0, &s), ETCD_WAL_E_CORRUPT);
    /* an entry whose Index (field 3) is length-delimited */
    const uint8_t ent[] = {0x08, 0x00, 0x10, 0x02, 0x1a, 0x01, 0x33, 0x22, 0x01, 'x'};
    bad = e;
    record(&bad, 2, ent, sizeof ent);
    assert_int_equal(scan(&bad, 0, &s), ETCD_WAL_E_CORRUPT);
    /* the same entry with its Index a varint reads */
    const uint8_t good[] = {0x08, 0x00, 0x10, 0x02, 0x18, 0x03, 0x22, 0x01, 'x'};
    record(&e, 2, good, sizeof good);
    assert_int_equal(scan(&e, 0, &s), ETCD_WAL_OK);
    assert_int_equal(s.writes_after, 1);
    assert_int_equal(s.first_write_after, 3);
}

/* Every truncation and every single-byte flip of a real WAL: an error or a
 * summary, never a crash or a read past the buffer (ASan). */
static void test_wal_damaged(void **state) {
    if (!have_etcdctl) skip();
    char dir[512], path[700];
    snprintf(dir, sizeof dir, "%s/restored-dmg", tmpdir);
    etcdctl_restore(dir);
    snprintf(path, sizeof path, "%s/member/wal/0000000000000000-0000000000000000.wal", dir);
    size_t len;
    uint8_t *full = read_file(path, &len);
    size_t used = 0; /* the bytes before the preallocated zeros */
    for (size_t i = 0; i < len; i++)
        if (full[i]) used = i + 1;
    assert_true(used > 0 && used < 4096);
    used = (used + 7) & ~(size_t)7;
    char err[256];
    etcd_wal_summary_t s;
    for (size_t cut = 0; cut <= used; cut++) {
        uint8_t *b = malloc(cut ? cut : 1);
        memcpy(b, full, cut);
        uint32_t crc = 0;
        memset(&s, 0, sizeof s);
        /* the last file: a cut record is a torn tail */
        int rc = etcd_wal_scan_buf(b, cut, 1, 1, &crc, &s, err, sizeof err);
        assert_true(rc == ETCD_WAL_OK || rc == ETCD_WAL_E_CORRUPT);
        assert_true(s.entries <= 1);
        /* not the last file: a cut record is corruption */
        crc = 0;
        memset(&s, 0, sizeof s);
        rc = etcd_wal_scan_buf(b, cut, 0, 1, &crc, &s, err, sizeof err);
        assert_true(rc == ETCD_WAL_OK || rc == ETCD_WAL_E_CORRUPT);
        free(b);
    }
    uint8_t *b = malloc(used);
    int corrupt = 0;
    for (size_t i = 0; i < used; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(b, full, used);
            b[i] ^= (uint8_t)(1 << bit);
            uint32_t crc = 0;
            memset(&s, 0, sizeof s);
            int rc = etcd_wal_scan_buf(b, used, 0, 1, &crc, &s, err, sizeof err);
            assert_true(rc == ETCD_WAL_OK || rc == ETCD_WAL_E_CORRUPT);
            corrupt += rc == ETCD_WAL_E_CORRUPT;
        }
    }
    assert_true(corrupt > (int)used); /* most flips are caught (CRC, framing) */
    srand(7);
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rand() % 600);
        for (size_t i = 0; i < n; i++) b[i % used] = (uint8_t)rand();
        uint32_t crc = (uint32_t)rand();
        memset(&s, 0, sizeof s);
        int rc = etcd_wal_scan_buf(b, n < used ? n : used, round & 1, 0, &crc, &s, err, sizeof err);
        assert_true(rc == ETCD_WAL_OK || rc == ETCD_WAL_E_CORRUPT);
    }
    free(b);
    free(full);
}

/* ---- the take-over ---- */

static etcd_datadir_opts_t opts(const char *dir) {
    return (etcd_datadir_opts_t){.data_dir = dir,
                                 .name = "n1",
                                 .initial_cluster = "n1=http://localhost:2380",
                                 .initial_cluster_token = "tok",
                                 .initial_advertise_peer_urls = "http://localhost:2380"};
}

static int64_t store_revision(const char *dir) {
    char kv[600], err[256];
    snprintf(kv, sizeof kv, "%s/member/kv", dir);
    mvcc_t *m = NULL;
    assert_int_equal(mvcc_open(kv, NULL, &m, err, sizeof err), 0);
    int64_t rev = mvcc_revision(m);
    /* a restored store: kshimd's log starts after index 1 (raft/node.c) */
    assert_int_equal(mvcc_applied_index(m), 1);
    mvcc_close(m);
    return rev;
}

static void assert_exists(const char *dir, const char *rel, int want) {
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    if (want != (access(p, F_OK) == 0)) fail_msg("%s: expected %s", p, want ? "present" : "absent");
}

static void test_take_over_restored(void **state) {
    if (!have_etcdctl) skip();
    char dir[512], err[8192];
    snprintf(dir, sizeof dir, "%s/take", tmpdir);
    etcdctl_restore(dir);
    etcd_datadir_opts_t o = opts(dir);
    etcd_datadir_result_t r;
    assert_int_equal(etcd_datadir_take_over(&o, &r, err, sizeof err), 0);
    assert_int_equal(r.action, ETCD_DATADIR_CONVERTED);
    assert_int_equal(r.consistent_index, 1);
    assert_int_equal(r.restore.revision, 5);
    assert_int_equal(r.restore.live_keys, 3);
    assert_int_equal(r.restore.versions, 4);
    assert_exists(dir, "member/kv", 1);
    assert_exists(dir, "member/wal", 0);
    assert_exists(dir, "member/snap", 0);
    assert_exists(dir, "member/etcd-member.orig/wal/0000000000000000-0000000000000000.wal", 1);
    assert_exists(dir, "member/etcd-member.orig/snap/db", 1);
    assert_exists(dir, "member/etcd-member.orig/snap/0000000000000001-0000000000000001.snap", 1);
    assert_exists(dir, "member.kshim-tmp", 0);
    assert_int_equal(store_revision(dir), 5);
    /* a second start: a kshim dir, nothing to do */
    assert_int_equal(etcd_datadir_take_over(&o, &r, err, sizeof err), 0);
    assert_int_equal(r.action, ETCD_DATADIR_NONE);
    /* a crash after the swap, before etcd's dir moved into the new one */
    sh("mkdir -p %s/member.kshim-tmp && mv %s/member/etcd-member.orig %s/member.kshim-tmp/member", dir, dir,
       dir);
    assert_int_equal(etcd_datadir_take_over(&o, &r, err, sizeof err), 0);
    assert_int_equal(r.action, ETCD_DATADIR_FINISHED);
    assert_exists(dir, "member/etcd-member.orig/snap/db", 1);
    assert_exists(dir, "member.kshim-tmp", 0);
    /* not a data dir at all: nothing */
    char empty[600];
    snprintf(empty, sizeof empty, "%s/none", tmpdir);
    etcd_datadir_opts_t on = opts(empty);
    assert_int_equal(etcd_datadir_take_over(&on, &r, err, sizeof err), 0);
    assert_int_equal(r.action, ETCD_DATADIR_NONE);
}

static void test_take_over_interrupted_build(void **state) {
    if (!have_etcdctl) skip();
    char dir[512], err[8192];
    snprintf(dir, sizeof dir, "%s/take-crash", tmpdir);
    etcdctl_restore(dir);
    /* a crash before the swap: a partial store in the temp dir */
    sh("mkdir -p %s/member.kshim-tmp/member/kv && echo junk > %s/member.kshim-tmp/member/kv/CURRENT", dir,
       dir);
    etcd_datadir_opts_t o = opts(dir);
    etcd_datadir_result_t r;
    assert_int_equal(etcd_datadir_take_over(&o, &r, err, sizeof err), 0);
    assert_int_equal(r.action, ETCD_DATADIR_CONVERTED);
    assert_int_equal(store_revision(dir), 5);
    /* a temp dir holding something else is not ours to remove */
    char foreign[512];
    snprintf(foreign, sizeof foreign, "%s/take-foreign", tmpdir);
    etcdctl_restore(foreign);
    sh("mkdir -p %s/member.kshim-tmp/other", foreign);
    etcd_datadir_opts_t of = opts(foreign);
    assert_int_equal(etcd_datadir_take_over(&of, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "did not put there"));
    assert_exists(foreign, "member.kshim-tmp/other", 1);
    assert_exists(foreign, "member/kv", 0);
}

/* dir's listing with sizes and checksums, to compare before and after. */
static void fingerprint(const char *dir, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd %s && find . -print0 | sort -z | xargs -0 ls -ld --time-style=+%%s.%%N | "
             "awk '{print $1, $5, $6, $7}' && find . -type f -print0 | sort -z | xargs -0 md5sum",
             dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    pclose(p);
}

static void test_refuse_writes_past_index(void **state) {
    if (!have_etcdctl) skip();
    char dir[512], err[8192], wal[700];
    snprintf(dir, sizeof dir, "%s/refuse", tmpdir);
    etcdctl_restore(dir);
    /* etcd's WAL with a write at index 2, past the database's index 1 */
    enc_t e = {0};
    record(&e, 4, NULL, 0);
    entry(&e, 1, 1, "confchange");
    entry(&e, 0, 2, NULL);
    entry(&e, 0, 3, "a put");
    snprintf(wal, sizeof wal, "%s/member/wal/0000000000000000-0000000000000000.wal", dir);
    write_file(wal, e.buf, e.len);
    static char before[65536], after[65536];
    fingerprint(dir, before, sizeof before);
    etcd_datadir_opts_t o = opts(dir);
    etcd_datadir_result_t r;
    assert_int_equal(etcd_datadir_take_over(&o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "1 write(s) past the consistent index 1"));
    assert_non_null(strstr(err, "first at index 3"));
    assert_non_null(strstr(err, "etcdctl snapshot save"));
    assert_non_null(strstr(err, "kshimctl migrate"));
    fingerprint(dir, after, sizeof after);
    assert_string_equal(before, after);

    /* entries 2..6 not in the WAL (a snapshot at 6, entries from 7) */
    enc_t g = {0};
    record(&g, 4, NULL, 0);
    snapshot_rec(&g, 6);
    entry(&g, 0, 7, NULL);
    write_file(wal, g.buf, g.len);
    assert_int_equal(etcd_datadir_take_over(&o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not hold entries 2..6"));

    /* a WAL that does not decode */
    enc_t b = e;
    b.buf[20] ^= 0xff;
    write_file(wal, b.buf, b.len);
    assert_int_equal(etcd_datadir_take_over(&o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read etcd's WAL"));

    /* --wal-dir */
    o.wal_dir = "/elsewhere";
    assert_int_equal(etcd_datadir_take_over(&o, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "--wal-dir"));
    assert_exists(dir, "member/kv", 0);
    assert_exists(dir, "member.kshim-tmp", 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wal_from_etcdctl),         cmocka_unit_test(test_wal_hand_made),
        cmocka_unit_test(test_wal_wrong_wire_type),      cmocka_unit_test(test_wal_damaged),
        cmocka_unit_test(test_take_over_restored),       cmocka_unit_test(test_take_over_interrupted_build),
        cmocka_unit_test(test_refuse_writes_past_index), cmocka_unit_test(test_records_without_data),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
