/*
 * test_bbolt.c: storage/bbolt (target kshim_bbolt): bbolt writer -> reader
 * round trips (empty buckets, 60,000 keys over three tree levels, values
 * from 0 bytes to 300 KB in overflow pages, a hand-made inline bucket),
 * the writer's order checks, hostile files refused without a crash
 * (truncations, every byte of the meta and page headers flipped, random
 * damage), and the store -> etcd database -> store round trip (etcd_db.c)
 * keeping every version, tombstone, revision, compaction, lease and user,
 * and a compaction recorded but not yet carried out dumped as etcd keeps it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.pb-c.h"
#include "bbolt.h"
#include "bytes.h"
#include "etcd_db.h"
#include "lease_keys.h"

static char tmpdir[256];

static int group_setup(void **state) {
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(tmpdir, sizeof tmpdir, "%s/bbolt-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int group_teardown(void **state) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd);
}

static int open_tmp(const char *name) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    return fd;
}

/* The value of key i: deterministic bytes, some sizes crossing pages. */
static size_t val_len(int i) {
    if (i % 9973 == 5) return 300000; /* overflow pages */
    if (i % 1001 == 3) return 5000;
    return (size_t)(i % 50);
}
static void fill_val(uint8_t *v, size_t n, int i) {
    for (size_t j = 0; j < n; j++) v[j] = (uint8_t)(i * 31 + j);
}
static size_t key_of(char *k, int i) { return (size_t)sprintf(k, "key/%08d", i); }

typedef struct check {
    int next, n, bad;
    uint8_t *buf;
} check_t;

static int check_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    check_t *c = arg;
    char want[32];
    size_t wl = key_of(want, c->next);
    size_t n = val_len(c->next);
    fill_val(c->buf, n, c->next);
    if (is_bucket || kl != wl || memcmp(k, want, wl) || vl != n || memcmp(v, c->buf, n)) c->bad++;
    c->next++;
    return 0;
}

static int count_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    (*(int *)arg)++;
    return 0;
}

/* Writes buckets "a" (empty), "big" (n keys) and "z" (one key). */
static uint64_t write_db(int fd, int n) {
    bbolt_writer_t *w = bbolt_writer_new(bbolt_fd_sink, &fd);
    assert_non_null(w);
    uint8_t *v = malloc(300000);
    char k[32];
    /* out of order on purpose: the root bucket is sorted by finish */
    assert_int_equal(bbolt_bucket_begin(w, (const uint8_t *)"z", 1), BBOLT_OK);
    assert_int_equal(bbolt_put(w, (const uint8_t *)"only", 4, (const uint8_t *)"1", 1), BBOLT_OK);
    assert_int_equal(bbolt_bucket_end(w), BBOLT_OK);
    assert_int_equal(bbolt_bucket_begin(w, (const uint8_t *)"big", 3), BBOLT_OK);
    for (int i = 0; i < n; i++) {
        size_t kl = key_of(k, i), vl = val_len(i);
        fill_val(v, vl, i);
        assert_int_equal(bbolt_put(w, (uint8_t *)k, kl, v, vl), BBOLT_OK);
    }
    assert_int_equal(bbolt_bucket_end(w), BBOLT_OK);
    assert_int_equal(bbolt_bucket_begin(w, (const uint8_t *)"a", 1), BBOLT_OK);
    assert_int_equal(bbolt_bucket_end(w), BBOLT_OK);
    uint64_t size = 0;
    assert_int_equal(bbolt_writer_finish(w, &size), BBOLT_OK);
    bbolt_writer_free(w);
    free(v);
    assert_int_equal(size % BBOLT_PAGE_SIZE, 0);
    assert_int_equal((uint64_t)lseek(fd, 0, SEEK_END), size);
    return size;
}

static void test_round_trip(void **state) {
    int fd = open_tmp("rt.db");
    const int n = 60000;
    uint64_t size = write_db(fd, n);
    bbolt_reader_t *r = NULL;
    assert_int_equal(bbolt_reader_open(fd, size, &r), BBOLT_OK);
    assert_int_equal(bbolt_reader_pages(r), size / BBOLT_PAGE_SIZE);
    check_t c = {.buf = malloc(300000)};
    assert_int_equal(bbolt_reader_scan(r, (const uint8_t *)"big", 3, check_one, &c), BBOLT_OK);
    assert_int_equal(c.next, n);
    assert_int_equal(c.bad, 0);
    int cnt = 0;
    assert_int_equal(bbolt_reader_scan(r, (const uint8_t *)"a", 1, count_one, &cnt), BBOLT_OK);
    assert_int_equal(cnt, 0);
    assert_int_equal(bbolt_reader_scan(r, (const uint8_t *)"z", 1, count_one, &cnt), BBOLT_OK);
    assert_int_equal(cnt, 1);
    assert_int_equal(bbolt_reader_scan(r, (const uint8_t *)"nope", 4, count_one, &cnt), BBOLT_E_NOT_FOUND);
    cnt = 0;
    assert_int_equal(bbolt_reader_buckets(r, count_one, &cnt), BBOLT_OK);
    assert_int_equal(cnt, 3);
    bbolt_reader_free(r);
    free(c.buf);
    close(fd);
}

/* 60,000 keys of ~12 bytes need more than one branch page: the tree has a
 * root branch over branches over leaves. Checked through the root page. */
static void test_multi_level(void **state) {
    int fd = open_tmp("ml.db");
    uint64_t size = write_db(fd, 60000);
    /* find the "big" bucket's root page through the reader's scan of the
     * root bucket: its value is {root pgid, sequence} */
    bbolt_reader_t *r = NULL;
    assert_int_equal(bbolt_reader_open(fd, size, &r), BBOLT_OK);
    uint8_t meta[80];
    assert_int_equal(pread(fd, meta, sizeof meta, 0), (ssize_t)sizeof meta);
    uint64_t root = get_le64(meta + 16 + 16);
    uint8_t page[BBOLT_PAGE_SIZE];
    assert_int_equal(pread(fd, page, sizeof page, (off_t)(root * BBOLT_PAGE_SIZE)), (ssize_t)sizeof page);
    assert_int_equal(page[8], 0x02); /* the root bucket: one leaf */
    uint16_t count = (uint16_t)(page[10] | page[11] << 8);
    assert_int_equal(count, 3);
    /* element 1 is "big" (sorted: a, big, z) */
    const uint8_t *el = page + 16 + 16;
    uint32_t pos = get_le32(el + 4), ks = get_le32(el + 8);
    uint64_t big_root = get_le64(el + pos + ks);
    assert_int_equal(pread(fd, page, sizeof page, (off_t)(big_root * BBOLT_PAGE_SIZE)), (ssize_t)sizeof page);
    assert_int_equal(page[8], 0x01); /* branch */
    uint64_t child = get_le64(page + 16 + 8);
    assert_int_equal(pread(fd, page, sizeof page, (off_t)(child * BBOLT_PAGE_SIZE)), (ssize_t)sizeof page);
    assert_int_equal(page[8], 0x01); /* a branch under the root branch */
    bbolt_reader_free(r);
    close(fd);
}

static void test_writer_order(void **state) {
    int fd = open_tmp("order.db");
    bbolt_writer_t *w = bbolt_writer_new(bbolt_fd_sink, &fd);
    assert_int_equal(bbolt_put(w, (const uint8_t *)"a", 1, NULL, 0), BBOLT_E_ORDER); /* no bucket */
    assert_int_equal(bbolt_bucket_begin(w, (const uint8_t *)"b", 1), BBOLT_OK);
    assert_int_equal(bbolt_bucket_begin(w, (const uint8_t *)"c", 1), BBOLT_E_ORDER); /* nested */
    assert_int_equal(bbolt_put(w, (const uint8_t *)"k2", 2, NULL, 0), BBOLT_OK);
    assert_int_equal(bbolt_put(w, (const uint8_t *)"k2", 2, NULL, 0), BBOLT_E_ORDER);
    assert_int_equal(bbolt_put(w, (const uint8_t *)"k1", 2, NULL, 0), BBOLT_E_ORDER);
    assert_int_equal(bbolt_put(w, (const uint8_t *)"", 0, NULL, 0), BBOLT_E_ORDER);
    assert_int_equal(bbolt_writer_finish(w, NULL), BBOLT_E_ORDER); /* bucket open */
    assert_int_equal(bbolt_bucket_end(w), BBOLT_OK);
    assert_int_equal(bbolt_bucket_begin(w, (const uint8_t *)"b", 1), BBOLT_E_ORDER); /* twice */
    bbolt_writer_free(w);
    close(fd);
}

/* A bucket stored inline (root 0, a leaf page in the value), as bbolt does
 * for small buckets: built by hand into the root bucket of a written file. */
static void test_inline_bucket(void **state) {
    int fd = open_tmp("inline.db");
    bbolt_writer_t *w = bbolt_writer_new(bbolt_fd_sink, &fd);
    /* a placeholder bucket whose root-bucket element we rewrite */
    assert_int_equal(bbolt_bucket_begin(w, (const uint8_t *)"in", 2), BBOLT_OK);
    assert_int_equal(bbolt_bucket_end(w), BBOLT_OK);
    uint64_t size = 0;
    assert_int_equal(bbolt_writer_finish(w, &size), BBOLT_OK);
    bbolt_writer_free(w);
    uint8_t meta[80];
    assert_int_equal(pread(fd, meta, sizeof meta, 0), (ssize_t)sizeof meta);
    uint64_t root = get_le64(meta + 32);
    /* root leaf: one element "in" -> 16-byte header + inline page (16 + 2*16 + data) */
    uint8_t page[BBOLT_PAGE_SIZE] = {0};
    put_le64(page, root);
    page[8] = 0x02;
    page[10] = 1;
    uint8_t val[16 + 16 + 32 + 8];
    memset(val, 0, sizeof val);
    uint8_t *ip = val + 16;    /* the inline page */
    ip[8] = 0x02;              /* leaf */
    ip[10] = 2;                /* two elements */
    put_le32(ip + 16 + 4, 32); /* elem 0 at 16: data at 48 */
    put_le32(ip + 16 + 8, 2), put_le32(ip + 16 + 12, 2);
    put_le32(ip + 32 + 4, 16 + 4); /* elem 1 at 32: data at 52 */
    put_le32(ip + 32 + 8, 2), put_le32(ip + 32 + 12, 2);
    memcpy(ip + 48, "k1v1k2v2", 8);
    uint8_t *el = page + 16;
    put_le32(el, 1); /* bucket */
    put_le32(el + 4, 16);
    put_le32(el + 8, 2);
    put_le32(el + 12, sizeof val);
    memcpy(page + 32, "in", 2);
    memcpy(page + 34, val, sizeof val);
    assert_int_equal(pwrite(fd, page, sizeof page, (off_t)(root * BBOLT_PAGE_SIZE)), (ssize_t)sizeof page);
    bbolt_reader_t *r = NULL;
    assert_int_equal(bbolt_reader_open(fd, size, &r), BBOLT_OK);
    int cnt = 0;
    assert_int_equal(bbolt_reader_scan(r, (const uint8_t *)"in", 2, count_one, &cnt), BBOLT_OK);
    assert_int_equal(cnt, 2);
    /* an inline page claiming more elements than its value holds */
    ip[10] = 200;
    memcpy(page + 34, val, sizeof val);
    assert_int_equal(pwrite(fd, page, sizeof page, (off_t)(root * BBOLT_PAGE_SIZE)), (ssize_t)sizeof page);
    assert_int_equal(bbolt_reader_scan(r, (const uint8_t *)"in", 2, count_one, &cnt), BBOLT_E_CORRUPT);
    bbolt_reader_free(r);
    close(fd);
}

/* Opens and walks everything; returns the first error or BBOLT_OK. */
static int read_all(int fd, uint64_t size) {
    bbolt_reader_t *r = NULL;
    int rc = bbolt_reader_open(fd, size, &r);
    if (rc != BBOLT_OK) return rc;
    int cnt = 0;
    rc = bbolt_reader_buckets(r, count_one, &cnt);
    const char *names[] = {"a", "big", "z"};
    for (int i = 0; i < 3 && rc == BBOLT_OK; i++) {
        rc = bbolt_reader_scan(r, (const uint8_t *)names[i], strlen(names[i]), count_one, &cnt);
        if (rc == BBOLT_E_NOT_FOUND) rc = BBOLT_OK;
    }
    bbolt_reader_free(r);
    return rc;
}

static void test_corrupt_files(void **state) {
    int fd = open_tmp("bad.db");
    uint64_t size = write_db(fd, 3000);
    uint8_t *orig = malloc(size);
    assert_int_equal(pread(fd, orig, size, 0), (ssize_t)size);
    assert_int_equal(read_all(fd, size), BBOLT_OK);
    /* truncated: every reader call fails cleanly */
    for (uint64_t cut = 0; cut < size; cut += 1000) assert_int_not_equal(read_all(fd, cut), 99);
    assert_int_equal(read_all(fd, 100), BBOLT_E_CORRUPT);
    /* both meta pages broken: refused */
    uint8_t b = 0xFF;
    assert_int_equal(pwrite(fd, &b, 1, 16), 1);
    assert_int_equal(pwrite(fd, &b, 1, 4096 + 16), 1);
    assert_int_equal(read_all(fd, size), BBOLT_E_CORRUPT);
    assert_int_equal(pwrite(fd, orig, size, 0), (ssize_t)size);
    /* one meta broken (checksum): the other is used */
    assert_int_equal(pwrite(fd, &b, 1, 16 + 40), 1);
    assert_int_equal(read_all(fd, size), BBOLT_OK);
    assert_int_equal(pwrite(fd, orig, size, 0), (ssize_t)size);
    /* every byte of every page header and of the first elements flipped */
    for (uint64_t pg = 2; pg < size / BBOLT_PAGE_SIZE; pg++) {
        for (int off = 0; off < 64; off++) {
            uint64_t at = pg * BBOLT_PAGE_SIZE + (uint64_t)off;
            uint8_t x = orig[at] ^ 0xA5;
            assert_int_equal(pwrite(fd, &x, 1, (off_t)at), 1);
            (void)read_all(fd, size); /* any answer but a crash */
            assert_int_equal(pwrite(fd, orig + at, 1, (off_t)at), 1);
        }
    }
    /* random damage, several bytes at once */
    srand(42);
    for (int round = 0; round < 300; round++) {
        for (int j = 0; j < 8; j++) {
            uint64_t at = 2 * BBOLT_PAGE_SIZE + (uint64_t)rand() % (size - 2 * BBOLT_PAGE_SIZE);
            uint8_t x = (uint8_t)rand();
            assert_int_equal(pwrite(fd, &x, 1, (off_t)at), 1);
        }
        (void)read_all(fd, size);
        assert_int_equal(pwrite(fd, orig, size, 0), (ssize_t)size);
    }
    /* the "big" bucket's root branch pointing at itself: refused (visit
     * bound), not an endless walk */
    uint64_t root = get_le64(orig + 32);
    const uint8_t *rp = orig + root * BBOLT_PAGE_SIZE;
    const uint8_t *el = rp + 16 + 16; /* "big" */
    uint64_t big_root = get_le64(el + get_le32(el + 4) + get_le32(el + 8));
    assert_int_equal(orig[big_root * BBOLT_PAGE_SIZE + 8], 0x01);
    uint8_t self[8];
    put_le64(self, big_root);
    assert_int_equal(pwrite(fd, self, 8, (off_t)(big_root * BBOLT_PAGE_SIZE + 16 + 8)), 8);
    assert_int_equal(read_all(fd, size), BBOLT_E_CORRUPT);
    free(orig);
    close(fd);
}

/* ---- store -> etcd database -> store ---- */

typedef struct store {
    char dir[300];
    mvcc_t *m;
    uint64_t index;
} store_t;

static void store_open(store_t *s, const char *name) {
    snprintf(s->dir, sizeof s->dir, "%s/%s", tmpdir, name);
    char err[256];
    assert_int_equal(mvcc_open(s->dir, NULL, &s->m, err, sizeof err), 0);
    s->index = 0;
}

static void s_put(store_t *s, const char *k, const char *v, int64_t lease) {
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_write(s->m, &a, &t), MVCC_OK);
    assert_int_equal(
        mvcc_txn_put(t, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v), lease, NULL), MVCC_OK);
    if (lease) assert_int_equal(lease_txn_attach(t, lease, (const uint8_t *)k, strlen(k)), MVCC_OK);
    assert_int_equal(mvcc_txn_commit(t, ++s->index), MVCC_OK);
    mvcc_txn_end(t);
    kv_arena_free(&a);
}

static void s_del(store_t *s, const char *k) {
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_write(s->m, &a, &t), MVCC_OK);
    mvcc_range_t r = mvcc_range_make((const uint8_t *)k, strlen(k), NULL, 0);
    assert_int_equal(mvcc_txn_delete_range(t, &r, NULL), 1);
    assert_int_equal(mvcc_txn_commit(t, ++s->index), MVCC_OK);
    mvcc_txn_end(t);
    kv_arena_free(&a);
}

static void s_raw(store_t *s, const char *k, size_t kl, const void *v, size_t vl) {
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_write(s->m, &a, &t), MVCC_OK);
    assert_int_equal(mvcc_txn_raw_put(t, (const uint8_t *)k, kl, v, vl), MVCC_OK);
    assert_int_equal(mvcc_txn_commit(t, ++s->index), MVCC_OK);
    mvcc_txn_end(t);
    kv_arena_free(&a);
}

typedef struct vlist {
    char lines[64][160];
    int n;
} vlist_t;

static int list_version(void *arg, const Mvccpb__KeyValue *kv, int64_t sub, int tomb) {
    vlist_t *l = arg;
    if (l->n < 64)
        snprintf(l->lines[l->n++], 160, "%.*s c%lld m%lld.%lld v%lld l%lld t%d %.*s", (int)kv->key.len,
                 (const char *)kv->key.data, (long long)kv->create_revision, (long long)kv->mod_revision,
                 (long long)sub, (long long)kv->version, (long long)kv->lease, tomb, (int)kv->value.len,
                 (const char *)kv->value.data);
    return 0;
}

typedef struct rawlist {
    char lines[32][96];
    int n;
} rawlist_t;

static int list_raw(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    rawlist_t *l = arg;
    if (l->n < 32) {
        int o = 0;
        for (size_t i = 0; i < kl && o < 60; i++)
            o += snprintf(l->lines[l->n] + o, 96 - (size_t)o, "%02x", k[i]);
        snprintf(l->lines[l->n] + o, 96 - (size_t)o, "=%zu", vl);
        l->n++;
    }
    return 0;
}

static void dump(mvcc_t *m, vlist_t *v, rawlist_t *raw, mvcc_meta_t *meta) {
    mvcc_dump_t *d = NULL;
    assert_int_equal(mvcc_dump_begin(m, &d, meta), MVCC_OK);
    memset(v, 0, sizeof *v);
    memset(raw, 0, sizeof *raw);
    assert_int_equal(mvcc_dump_versions(d, list_version, v), MVCC_OK);
    const char *pre[] = {"L", "M", "U", "R", "E"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(mvcc_dump_raw(d, (const uint8_t *)pre[i], 1, list_raw, raw), MVCC_OK);
    mvcc_dump_end(d);
}

static void test_etcd_db_round_trip(void **state) {
    store_t a, b;
    store_open(&a, "store-a");
    /* revisions 2..: puts, a delete, a compaction, a lease, a user */
    uint8_t lrec[16];
    lease_record_encode(lrec, 60, 0);
    uint8_t lkey[9];
    lease_record_key(lkey, 0x1234);
    s_raw(&a, (const char *)lkey, 9, lrec, 16);
    s_put(&a, "foo", "1", 0);         /* rev 2 */
    s_put(&a, "foo", "2", 0);         /* rev 3 */
    s_put(&a, "bar", "x", 0);         /* rev 4 */
    s_del(&a, "bar");                 /* rev 5 */
    s_put(&a, "foo", "3", 0);         /* rev 6 */
    s_put(&a, "leased", "v", 0x1234); /* rev 7 */
    s_put(&a, "gone", "g", 0);        /* rev 8 */
    s_del(&a, "gone");                /* rev 9 */
    Authpb__User u = AUTHPB__USER__INIT;
    u.name = (ProtobufCBinaryData){5, (uint8_t *)"alice"};
    u.password = (ProtobufCBinaryData){4, (uint8_t *)"hash"};
    uint8_t ubuf[64];
    size_t ul = authpb__user__pack(&u, ubuf);
    s_raw(&a, "Ualice", 6, ubuf, ul);
    uint8_t rv[8];
    put_be64(rv, 3);
    s_raw(&a, "Erevision", 9, rv, 8);
    assert_int_equal(mvcc_compact(a.m, 4, ++a.index), MVCC_OK);
    assert_int_equal(mvcc_compact_wait(a.m, 4), MVCC_OK);

    int fd = open_tmp("etcd.db");
    etcd_db_stats_t st;
    char err[256];
    assert_int_equal(etcd_db_write(a.m, NULL, bbolt_fd_sink, &fd, &st, err, sizeof err), ETCD_DB_OK);
    assert_int_equal(st.revision, 9);
    assert_int_equal(st.compact_rev, 4);
    assert_int_equal(st.leases, 1);
    assert_int_equal(st.users, 1);
    /* compacted at 4: foo@3 (newest <= 4), bar@4 are kept; foo@2 is not */
    assert_int_equal(st.versions, 7);

    store_open(&b, "store-b");
    etcd_db_stats_t st2;
    assert_int_equal(etcd_db_restore(fd, st.size, b.m, &st2, err, sizeof err), ETCD_DB_OK);
    assert_int_equal(st2.revision, 9);
    assert_int_equal(st2.compact_rev, 4);
    assert_int_equal(st2.versions, 7);
    assert_int_equal(st2.live_keys, 2);
    assert_int_equal(mvcc_revision(b.m), 9);
    assert_int_equal(mvcc_compact_revision(b.m), 4);
    assert_int_equal(mvcc_applied_index(b.m), 0);

    vlist_t va, vb;
    rawlist_t ra, rb;
    mvcc_meta_t ma, mb;
    dump(a.m, &va, &ra, &ma);
    dump(b.m, &vb, &rb, &mb);
    assert_int_equal(va.n, vb.n);
    for (int i = 0; i < va.n; i++) assert_string_equal(va.lines[i], vb.lines[i]);
    /* the side tables: L, M, U, E ("Eenabled" is added by the restore) */
    assert_int_equal(ra.n + 1, rb.n);
    assert_string_equal(va.lines[0], "foo c2 m3.0 v2 l0 t0 2");
    /* a store that is not empty is refused */
    assert_int_equal(etcd_db_restore(fd, st.size, b.m, &st2, err, sizeof err), ETCD_DB_E_NOT_EMPTY);
    mvcc_close(a.m);
    mvcc_close(b.m);

    /* a damaged key bucket record is refused, not loaded */
    uint8_t *buf = malloc(st.size);
    assert_int_equal(pread(fd, buf, st.size, 0), (ssize_t)st.size);
    srand(7);
    int refused = 0;
    for (int round = 0; round < 40; round++) {
        uint8_t *copy = malloc(st.size);
        memcpy(copy, buf, st.size);
        for (int j = 0; j < 6; j++)
            copy[2 * BBOLT_PAGE_SIZE + (size_t)rand() % (st.size - 2 * BBOLT_PAGE_SIZE)] ^= 0x5A;
        int cfd = open_tmp("etcd-bad.db");
        assert_int_equal(pwrite(cfd, copy, st.size, 0), (ssize_t)st.size);
        store_t c;
        char name[32];
        snprintf(name, sizeof name, "store-c%d", round);
        store_open(&c, name);
        if (etcd_db_restore(cfd, st.size, c.m, &st2, err, sizeof err) != ETCD_DB_OK) refused++;
        mvcc_close(c.m);
        close(cfd);
        free(copy);
    }
    assert_true(refused > 0);
    free(buf);
    close(fd);
}

/* A compaction recorded but not yet carried out (the compactor held) dumps
 * what etcd keeps after it: the same versions as once it ran. */
static void test_dump_logical_compaction(void **state) {
    store_t a;
    store_open(&a, "store-held");
    mvcc_compact_hold_after(a.m, 0);
    s_put(&a, "k", "1", 0); /* 2 */
    s_put(&a, "k", "2", 0); /* 3 */
    s_put(&a, "t", "x", 0); /* 4 */
    s_del(&a, "t");         /* 5: a tombstone at the compact revision */
    s_put(&a, "k", "3", 0); /* 6 */
    assert_int_equal(mvcc_compact(a.m, 5, ++a.index), MVCC_OK);
    vlist_t v;
    rawlist_t raw;
    mvcc_meta_t meta;
    dump(a.m, &v, &raw, &meta);
    assert_int_equal(meta.compact_rev, 5);
    assert_int_equal(v.n, 2); /* k@3 (newest <= 5) and k@6; t's tombstone and k@2 dropped */
    assert_string_equal(v.lines[0], "k c2 m3.0 v2 l0 t0 2");
    assert_string_equal(v.lines[1], "k c2 m6.0 v3 l0 t0 3");
    /* and etcdctl's status of the written file */
    int fd = open_tmp("held.db");
    etcd_db_stats_t st;
    char err[256];
    assert_int_equal(etcd_db_write(a.m, NULL, bbolt_fd_sink, &fd, &st, err, sizeof err), ETCD_DB_OK);
    etcd_db_status_t ss;
    assert_int_equal(etcd_db_status(fd, st.size, &ss, err, sizeof err), ETCD_DB_OK);
    assert_int_equal(ss.revision, 6);
    /* 2 versions + auth 2 + cluster 1 + meta 3 (consistent index, both compact revisions) */
    assert_int_equal(ss.total_keys, 8);
    assert_int_equal(ss.total_size, st.size);
    mvcc_compact_hold_after(a.m, -1);
    mvcc_close(a.m);
    close(fd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_multi_level),
        cmocka_unit_test(test_writer_order),
        cmocka_unit_test(test_inline_bucket),
        cmocka_unit_test(test_corrupt_files),
        cmocka_unit_test(test_etcd_db_round_trip),
        cmocka_unit_test(test_dump_logical_compaction),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
