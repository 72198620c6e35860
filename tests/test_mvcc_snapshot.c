/*
 * test_mvcc_snapshot.c: storage/mvcc/mvcc_snapshot.h, the store as a Raft
 * snapshot stream: export a store with revisions, deletes, a compaction,
 * leases with attached keys and auth users/roles; import it into another
 * store in chunks of several sizes and install it: every LevelDB key and
 * value equal, the metadata, the lessor and the auth store reload from it;
 * a corrupt, truncated or over-long stream is refused and leaves the store
 * as it was; an export made before an install fails afterwards; readers on
 * other threads see the old or the new store whole; and a crash at every
 * point of the import's end and of the install (RENAME_EXCHANGE and the
 * two-rename swap; returned early, and a child process exiting there), and
 * a simulated power loss at many points of a child's import and install
 * (tests/powercut, release build only) reopen either the old or the new
 * store, whole.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <leveldb/c.h>

#include "auth_store.h"
#include "kv.h"
#include "lease.h"
#include "mvcc.h"
#include "mvcc_snapshot.h"

typedef struct fx {
    char base[256];
    char src_dir[300], dst_dir[300];
    mvcc_t *src, *dst;
    lessor_t *lessor;
    uint64_t index;
    kv_header_info_t hdr;
} fx_t;

static int src_lease_exists(void *ctx, int64_t id) {
    fx_t *f = ctx;
    return f->lessor && lessor_exists(f->lessor, id);
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(f->base, sizeof f->base, "%s/mvccsnap-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->base));
    snprintf(f->src_dir, sizeof f->src_dir, "%s/src", f->base);
    snprintf(f->dst_dir, sizeof f->dst_dir, "%s/dst", f->base);
    char err[256];
    mvcc_options_t opts = {.lease_exists = src_lease_exists, .lease_ctx = f};
    assert_int_equal(mvcc_open(f->src_dir, &opts, &f->src, err, sizeof err), 0);
    assert_int_equal(lessor_open(f->src, 1, &f->lessor), LEASE_OK);
    assert_int_equal(mvcc_open(f->dst_dir, NULL, &f->dst, err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    mvcc_snapshot_test_crash(0, 0);
    lessor_free(f->lessor);
    mvcc_close(f->src);
    mvcc_close(f->dst);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->base);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static ProtobufCBinaryData B(const char *s) {
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

static void kv_put(mvcc_t *m, uint64_t *index, const kv_header_info_t *hdr, const char *k, const char *v,
                   int64_t lease) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(k);
    p.value = B(v);
    p.lease = lease;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = &p;
    kv_result_t res;
    assert_int_equal(kv_apply(m, ++*index, &req, hdr, &res), 0);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
}

static void src_put(fx_t *f, const char *k, const char *v, int64_t lease) {
    kv_put(f->src, &f->index, &f->hdr, k, v, lease);
}

static void src_del(fx_t *f, const char *k) {
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B(k);
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.delete_range = &d;
    kv_result_t res;
    assert_int_equal(kv_apply(f->src, ++f->index, &req, &f->hdr, &res), 0);
    kv_result_clear(&res);
}

static void src_grant(fx_t *f, int64_t id, int64_t ttl) {
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.id = id;
    g.ttl = ttl;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.lease_grant = &g;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    assert_int_equal(lessor_apply(f->lessor, ++f->index, &req, &f->hdr, &res, 1000), 1);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
}

static void src_auth(fx_t *f) {
    auth_store_t *as = NULL;
    assert_int_equal(auth_store_open(f->src, &as), AUTH_OK);
    Etcdserverpb__AuthRoleAddRequest r = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
    r.name = "reader";
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_role_add = &r;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    assert_int_equal(auth_store_apply(as, ++f->index, &req, &f->hdr, &res, NULL), 1);
    kv_result_clear(&res);
    Etcdserverpb__AuthUserAddRequest u = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
    o.no_password = 1;
    u.name = "alice";
    u.password = "";
    u.options = &o;
    Kshim__InternalRequest ureq = KSHIM__INTERNAL_REQUEST__INIT;
    ureq.auth_user_add = &u;
    memset(&res, 0, sizeof res);
    assert_int_equal(auth_store_apply(as, ++f->index, &ureq, &f->hdr, &res, NULL), 1);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
    auth_store_free(as);
}

/* A store with history: versions, deletes, a txn-less compaction, a big
 * value spanning many chunks, keys with 0x00 bytes, leases and auth. */
static void fill_source(fx_t *f) {
    f->hdr = (kv_header_info_t){.cluster_id = 1, .member_id = 2, .raft_term = 3};
    src_grant(f, 0x1234, 60);
    src_grant(f, 0x99, 3600);
    for (int i = 0; i < 200; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "key/%03d", i % 50);
        snprintf(v, sizeof v, "value-%d", i);
        src_put(f, k, v, i % 7 == 0 ? 0x1234 : 0);
    }
    src_del(f, "key/007");
    assert_int_equal(mvcc_compact(f->src, 120, ++f->index), MVCC_OK);
    assert_int_equal(mvcc_compact_wait(f->src, 120), MVCC_OK);
    char *big = malloc(300000);
    memset(big, 'x', 299999);
    big[299999] = 0;
    src_put(f, "big", big, 0);
    free(big);
    src_put(f, "lease/key", "v", 0x99);
    src_auth(f);
}

/* Streams src into dst in chunks of `chunk` bytes; returns finish's code. */
static int transfer(fx_t *f, size_t chunk, uint64_t *index) {
    mvcc_snap_reader_t *r = NULL;
    assert_int_equal(mvcc_snapshot_export(f->src, &r), MVCC_OK);
    assert_int_equal(mvcc_snap_reader_index(r), mvcc_applied_index(f->src));
    mvcc_snap_writer_t *w = NULL;
    char err[256];
    assert_int_equal(mvcc_snapshot_import(f->dst, &w, err, sizeof err), MVCC_OK);
    uint8_t *buf = malloc(chunk);
    long n;
    while ((n = mvcc_snap_reader_read(r, buf, chunk)) > 0)
        assert_int_equal(mvcc_snap_writer_write(w, buf, n), 0);
    assert_int_equal(n, 0);
    free(buf);
    mvcc_snap_reader_free(r);
    return mvcc_snap_writer_finish(w, index);
}

/* Every LevelDB key and value of two stores, compared in order. */
static int raw_copy(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    leveldb_writebatch_t *wb = arg;
    leveldb_writebatch_put(wb, (const char *)k, kl, (const char *)v, vl);
    return 0;
}

typedef struct dump {
    size_t n;
    uint8_t *buf;
    size_t len, cap;
} dump_t;

static void dump_iter(void *state, const char *k, size_t kl, const char *v, size_t vl) {
    dump_t *d = state;
    size_t need = d->len + kl + vl + 16;
    if (need > d->cap) {
        d->cap = need * 2;
        d->buf = realloc(d->buf, d->cap);
    }
    memcpy(d->buf + d->len, &kl, sizeof kl);
    memcpy(d->buf + d->len + 8, &vl, sizeof vl);
    memcpy(d->buf + d->len + 16, k, kl);
    memcpy(d->buf + d->len + 16 + kl, v, vl);
    d->len += 16 + kl + vl;
    d->n++;
}

static void dump_deleted(void *state, const char *k, size_t kl) {
    (void)state;
    (void)k;
    (void)kl;
    fail_msg("a write batch of puts only");
}

/* Every key of m (all spaces: prefixes 0x00..0xFF). */
static void dump_store(mvcc_t *m, dump_t *d) {
    memset(d, 0, sizeof *d);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    for (int p = 0; p < 256; p++) {
        uint8_t prefix = (uint8_t)p;
        assert_int_equal(mvcc_raw_scan(m, &prefix, 1, raw_copy, wb), MVCC_OK);
    }
    leveldb_writebatch_iterate(wb, d, dump_iter, dump_deleted);
    leveldb_writebatch_destroy(wb);
}

static void assert_same_store(mvcc_t *a, mvcc_t *b) {
    dump_t da, db;
    dump_store(a, &da);
    dump_store(b, &db);
    assert_true(da.n > 250);
    assert_int_equal(da.n, db.n);
    assert_int_equal(da.len, db.len);
    assert_memory_equal(da.buf, db.buf, da.len);
    free(da.buf);
    free(db.buf);
    assert_int_equal(mvcc_applied_index(a), mvcc_applied_index(b));
    assert_int_equal(mvcc_revision(a), mvcc_revision(b));
    assert_int_equal(mvcc_compact_revision(a), mvcc_compact_revision(b));
}

static void test_export_import_every_key(void **state) {
    fx_t *f = *state;
    fill_source(f);
    /* dst has its own older data, which the install replaces. */
    uint64_t di = 0;
    kv_header_info_t h = {0};
    kv_put(f->dst, &di, &h, "stale", "x", 0);
    size_t chunks[] = {1, 7, 4096, 1 << 20};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        uint64_t index = 0;
        assert_int_equal(transfer(f, chunks[c], &index), MVCC_OK);
        assert_int_equal(index, f->index);
        char err[256];
        assert_int_equal(mvcc_snapshot_install(f->dst, err, sizeof err), MVCC_OK);
        assert_false(mvcc_failed(f->dst));
        assert_same_store(f->src, f->dst);
    }
    /* The state machines reload from the new store. */
    lessor_t *l = NULL;
    assert_int_equal(lessor_open(f->dst, 1, &l), LEASE_OK);
    assert_int_equal(lessor_count(l), 2);
    assert_true(lessor_exists(l, 0x1234));
    lessor_free(l);
    auth_store_t *as = NULL;
    assert_int_equal(auth_store_open(f->dst, &as), AUTH_OK);
    auth_store_t *src_as = NULL;
    assert_int_equal(auth_store_open(f->src, &src_as), AUTH_OK);
    assert_true(auth_store_revision(as) >= 2);
    assert_int_equal(auth_store_revision(as), auth_store_revision(src_as));
    auth_store_free(src_as);
    auth_store_free(as);
    /* A read below the copied compaction is refused; the new writes go on. */
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    assert_int_equal(mvcc_txn_begin_read(f->dst, &a, &t), MVCC_OK);
    mvcc_range_t r = mvcc_range_make((const uint8_t *)"key/001", 7, NULL, 0);
    mvcc_kv_list_t out = {0};
    int64_t count = 0;
    assert_int_equal(mvcc_txn_range(t, &r, 100, 0, 0, &out, &count), MVCC_ERR_COMPACTED);
    assert_int_equal(mvcc_txn_range(t, &r, 0, 0, 0, &out, &count), MVCC_OK);
    assert_int_equal(count, 1);
    mvcc_txn_end(t);
    kv_arena_free(&a);
    uint64_t next = mvcc_applied_index(f->dst);
    kv_put(f->dst, &next, &h, "after", "y", 0);
    assert_int_equal(mvcc_revision(f->dst), mvcc_revision(f->src) + 1);
}

/* A copy staged (received and synced) but not installed when the member
 * stops: the node's WAL may already record the snapshot, so the reopened
 * store keeps the copy, reports its index, and installs it. A copy not
 * ahead of the store (the old store after an exchange, or an older copy)
 * is removed at open. */
static void test_staged_copy_survives_reopen(void **state) {
    fx_t *f = *state;
    fill_source(f);
    uint64_t index = 0, staged = 0;
    assert_int_equal(transfer(f, 4096, &index), MVCC_OK);
    mvcc_close(f->dst);
    char err[256];
    assert_int_equal(mvcc_open(f->dst_dir, NULL, &f->dst, err, sizeof err), 0);
    assert_int_equal(mvcc_snapshot_staged_index(f->dst, &staged), MVCC_OK);
    assert_int_equal(staged, f->index);
    assert_true(mvcc_applied_index(f->dst) < staged);
    assert_int_equal(mvcc_snapshot_install(f->dst, err, sizeof err), MVCC_OK);
    assert_same_store(f->src, f->dst);
    assert_int_equal(mvcc_snapshot_staged_index(f->dst, &staged), MVCC_ERR_NOT_FOUND);

    /* Staged again, now not ahead of the store it would replace: dropped. */
    assert_int_equal(transfer(f, 4096, &index), MVCC_OK);
    mvcc_close(f->dst);
    assert_int_equal(mvcc_open(f->dst_dir, NULL, &f->dst, err, sizeof err), 0);
    assert_int_equal(mvcc_snapshot_staged_index(f->dst, &staged), MVCC_ERR_NOT_FOUND);
    assert_same_store(f->src, f->dst);
}

/* Flipping a byte of each region of the stream, cutting it short or
 * adding bytes after its end: refused, nothing staged, the store as it was. */
static void test_corrupt_stream_refused(void **state) {
    fx_t *f = *state;
    fill_source(f);
    uint64_t di = 0;
    kv_header_info_t h = {0};
    kv_put(f->dst, &di, &h, "mine", "1", 0);
    kv_put(f->dst, &di, &h, "mine", "2", 0);

    mvcc_snap_reader_t *r = NULL;
    assert_int_equal(mvcc_snapshot_export(f->src, &r), MVCC_OK);
    size_t cap = 4 << 20, len = 0;
    uint8_t *stream = malloc(cap);
    long n;
    while ((n = mvcc_snap_reader_read(r, stream + len, 65536)) > 0) len += (size_t)n;
    assert_int_equal(n, 0);
    mvcc_snap_reader_free(r);
    assert_true(len > 300000);

    size_t flips[] = {3, 12, 40, len / 2, len - 5, len - 1};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0] + 2; i++) {
        uint8_t *copy = malloc(len + 1);
        memcpy(copy, stream, len);
        size_t clen = len;
        if (i < sizeof flips / sizeof flips[0])
            copy[flips[i]] ^= 0x20;
        else if (i == sizeof flips / sizeof flips[0])
            clen = len - 100; /* truncated */
        else
            copy[clen++] = 0; /* a byte after the end */
        mvcc_snap_writer_t *w = NULL;
        char err[256];
        assert_int_equal(mvcc_snapshot_import(f->dst, &w, err, sizeof err), MVCC_OK);
        int rc = MVCC_OK;
        for (size_t off = 0; off < clen && rc == MVCC_OK; off += 1000)
            rc = mvcc_snap_writer_write(w, copy + off, clen - off < 1000 ? clen - off : 1000);
        if (rc == MVCC_OK) {
            assert_int_equal(mvcc_snap_writer_finish(w, NULL), MVCC_ERR_CORRUPT);
        } else {
            assert_int_equal(rc, MVCC_ERR_CORRUPT);
            mvcc_snap_writer_abort(w);
        }
        free(copy);
        assert_int_equal(mvcc_snapshot_install(f->dst, err, sizeof err), MVCC_ERR_NOT_FOUND);
        assert_int_equal(mvcc_revision(f->dst), 3);
        assert_int_equal(mvcc_applied_index(f->dst), 2);
    }
    /* The intact stream still installs after all that. */
    mvcc_snap_writer_t *w = NULL;
    char err[256];
    assert_int_equal(mvcc_snapshot_import(f->dst, &w, err, sizeof err), MVCC_OK);
    assert_int_equal(mvcc_snap_writer_write(w, stream, len), MVCC_OK);
    assert_int_equal(mvcc_snap_writer_finish(w, NULL), MVCC_OK);
    assert_int_equal(mvcc_snapshot_install(f->dst, err, sizeof err), MVCC_OK);
    assert_same_store(f->src, f->dst);
    free(stream);
}

/* An export of a store that then installs a snapshot fails cleanly (its
 * LevelDB snapshot belonged to the closed database). */
static void test_export_invalidated_by_install(void **state) {
    fx_t *f = *state;
    fill_source(f);
    uint64_t di = 0;
    kv_header_info_t h = {0};
    kv_put(f->dst, &di, &h, "mine", "1", 0);
    mvcc_snap_reader_t *old = NULL;
    assert_int_equal(mvcc_snapshot_export(f->dst, &old), MVCC_OK);
    uint8_t buf[8];
    assert_int_equal(mvcc_snap_reader_read(old, buf, sizeof buf), 8);
    assert_int_equal(transfer(f, 65536, NULL), MVCC_OK);
    char err[256];
    assert_int_equal(mvcc_snapshot_install(f->dst, err, sizeof err), MVCC_OK);
    assert_int_equal(mvcc_snap_reader_read(old, buf, sizeof buf), -1);
    mvcc_snap_reader_free(old);
}

/* Readers on other threads during installs: each read sees the old or the
 * new store whole (never a closed database), through the store's gate. */
typedef struct reader_arg {
    mvcc_t *m;
    _Atomic int stop;
    long reads, old_seen, new_seen;
    int bad;
} reader_arg_t;

static void *reader_main(void *p) {
    reader_arg_t *r = p;
    while (!atomic_load(&r->stop)) {
        kv_arena_t a;
        kv_arena_init(&a);
        mvcc_txn_t *t = NULL;
        if (mvcc_txn_begin_read(r->m, &a, &t) != MVCC_OK) {
            r->bad++;
            kv_arena_free(&a);
            continue;
        }
        mvcc_range_t all = mvcc_range_make((const uint8_t *)"", 0, (const uint8_t *)"\0", 1);
        int64_t count = 0;
        if (mvcc_txn_range(t, &all, 0, 0, 1, NULL, &count) != MVCC_OK) r->bad++;
        if (count == 1)
            r->old_seen++;
        else if (count == 51)
            r->new_seen++;
        else
            r->bad++;
        mvcc_txn_end(t);
        kv_arena_free(&a);
        uint8_t *v = NULL;
        size_t vl = 0;
        if (mvcc_raw_get(r->m, (const uint8_t *)"m", 1, &v, &vl) != MVCC_OK) r->bad++;
        free(v);
        r->reads++;
    }
    return NULL;
}

static void test_readers_during_install(void **state) {
    fx_t *f = *state;
    fill_source(f);
    uint64_t di = 0;
    kv_header_info_t h = {0};
    kv_put(f->dst, &di, &h, "mine", "1", 0);
    reader_arg_t r[2] = {{.m = f->dst}, {.m = f->dst}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, reader_main, &r[i]), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(transfer(f, 65536, NULL), MVCC_OK);
        char err[256];
        assert_int_equal(mvcc_snapshot_install(f->dst, err, sizeof err), MVCC_OK);
    }
    for (int i = 0; i < 2; i++) {
        atomic_store(&r[i].stop, 1);
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].bad, 0);
        assert_true(r[i].reads > 0);
    }
    assert_same_store(f->src, f->dst);
}

static uint64_t reopen_and_index(fx_t *f) {
    mvcc_close(f->dst);
    char err[256];
    assert_int_equal(mvcc_open(f->dst_dir, NULL, &f->dst, err, sizeof err), 0);
    char p[400];
    /* A staged copy survives the reopen only if it is ahead of the store
     * (a crash before the swap: the node installs it at start). */
    uint64_t staged = 0;
    if (mvcc_snapshot_staged_index(f->dst, &staged) == MVCC_OK)
        assert_true(staged > mvcc_applied_index(f->dst));
    snprintf(p, sizeof p, "%s.snap-old", f->dst_dir);
    assert_int_not_equal(access(p, F_OK), 0);
    return mvcc_applied_index(f->dst);
}

static void reset_dst(fx_t *f) {
    mvcc_close(f->dst);
    char cmd[700], err[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dst_dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mvcc_open(f->dst_dir, NULL, &f->dst, err, sizeof err), 0);
    uint64_t di = 0;
    kv_header_info_t h = {0};
    kv_put(f->dst, &di, &h, "mine", "1", 0);
    kv_put(f->dst, &di, &h, "mine", "2", 0);
}

/* After a crash: the store is the old one (index 2, two revisions) or the
 * new one, whole. Returns 1 for the new one. */
static int check_old_or_new(fx_t *f, uint64_t index) {
    if (index == 2) {
        assert_int_equal(mvcc_revision(f->dst), 3);
        return 0;
    }
    assert_same_store(f->src, f->dst);
    return 1;
}

/* A crash at each point of the import's end and of the install. */
static void crash_each_point(fx_t *f, int no_exchange) {
    fill_source(f);
    reset_dst(f);
    int saw_old = 0, saw_new = 0;
    for (uint64_t point = 1;; point++) {
        mvcc_snapshot_test_crash(point, no_exchange);
        int rc = transfer(f, 65536, NULL);
        char err[256];
        if (rc == MVCC_OK) rc = mvcc_snapshot_install(f->dst, err, sizeof err);
        if (rc == MVCC_OK) { /* past the last crash point */
            mvcc_snapshot_test_crash(0, 0);
            assert_true(point > 5);
            assert_same_store(f->src, f->dst);
            break;
        }
        assert_int_equal(rc, MVCC_ERR_IO);
        mvcc_snapshot_test_crash(0, 0);
        if (check_old_or_new(f, reopen_and_index(f))) {
            saw_new++;
            reset_dst(f);
        } else {
            saw_old++;
        }
    }
    assert_true(saw_old >= 3);
    assert_true(saw_new >= 2);
}

static void test_crash_during_install_exchange(void **state) { crash_each_point(*state, 0); }
static void test_crash_during_install_two_renames(void **state) { crash_each_point(*state, 1); }

/* The same with a real process exit at each point (the failpoint
 * mvcc_snapshot_crash=N): a child process imports and installs, the parent
 * reopens what it left. */
static const char *self_exe;

static int child_install(const char *src_dir, const char *dst_dir) {
    char err[256];
    mvcc_t *src = NULL, *dst = NULL;
    if (mvcc_open(src_dir, NULL, &src, err, sizeof err) != 0) return 2;
    if (mvcc_open(dst_dir, NULL, &dst, err, sizeof err) != 0) return 3;
    mvcc_snap_reader_t *r = NULL;
    mvcc_snap_writer_t *w = NULL;
    if (mvcc_snapshot_export(src, &r) != MVCC_OK || mvcc_snapshot_import(dst, &w, err, sizeof err) != MVCC_OK)
        return 4;
    uint8_t buf[65536];
    long n;
    while ((n = mvcc_snap_reader_read(r, buf, sizeof buf)) > 0)
        if (mvcc_snap_writer_write(w, buf, (size_t)n) != MVCC_OK) return 5;
    mvcc_snap_reader_free(r);
    if (n != 0 || mvcc_snap_writer_finish(w, NULL) != MVCC_OK) return 6;
    if (mvcc_snapshot_install(dst, err, sizeof err) != MVCC_OK) return 7;
    mvcc_close(src);
    mvcc_close(dst);
    return 0;
}

static int run_child(fx_t *f, uint64_t point) {
    char fp[64];
    snprintf(fp, sizeof fp, "KSHIM_FAILPOINTS=mvcc_snapshot_crash=%llu", (unsigned long long)point);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        putenv(fp);
        execl(self_exe, self_exe, "--install-child", f->src_dir, f->dst_dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_crash_by_process_exit(void **state) {
    fx_t *f = *state;
    fill_source(f);
    reset_dst(f);
    /* the child opens both stores: close them here */
    lessor_free(f->lessor);
    f->lessor = NULL;
    mvcc_close(f->src);
    mvcc_close(f->dst);
    char err[256];
    int saw_old = 0, saw_new = 0;
    for (uint64_t point = 1;; point++) {
        int code = run_child(f, point);
        assert_true(code == 0 || code == 86);
        assert_int_equal(mvcc_open(f->src_dir, NULL, &f->src, err, sizeof err), 0);
        assert_int_equal(mvcc_open(f->dst_dir, NULL, &f->dst, err, sizeof err), 0);
        int is_new = check_old_or_new(f, mvcc_applied_index(f->dst));
        if (code == 0) {
            assert_true(is_new);
            assert_true(point > 5);
            break;
        }
        if (is_new) {
            saw_new++;
            reset_dst(f);
        } else {
            saw_old++;
        }
        mvcc_close(f->src);
        mvcc_close(f->dst);
    }
    assert_true(saw_old >= 3);
    assert_true(saw_new >= 1);
}

/* A power loss at many points of a child's import and install
 * (tests/powercut: unsynced data lost in any pattern of pages): the store
 * is the old or the new one, whole. In the sanitizer build the child runs
 * under ASan too: ASan wants its runtime first in the library list, and the
 * preloaded layer (built without sanitizers) only forwards libc calls, so
 * its link-order check is turned off for the child. */
static void allow_preload_under_asan(void) {
#if defined(__SANITIZE_ADDRESS__)
    const char *o = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", o ? o : "", o && *o ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
#endif
}

static int run_child_powercut(fx_t *f, const char *cut_dir, uint64_t at) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char at_s[32];
        snprintf(at_s, sizeof at_s, "%llu", (unsigned long long)at);
        allow_preload_under_asan();
        setenv("LD_PRELOAD", POWERCUT_LIB, 1);
        setenv("POWERCUT_DIR", cut_dir, 1);
        setenv("POWERCUT_AT", at_s, 1);
        setenv("POWERCUT_SEED", at_s, 1);
        execl(self_exe, self_exe, "--install-child", f->src_dir, f->dst_dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_power_cut_during_snapshot(void **state) {
    fx_t *f = *state;
    fill_source(f);
    char cut_dir[280];
    snprintf(cut_dir, sizeof cut_dir, "%s/pc", f->base);
    assert_int_equal(mkdir(cut_dir, 0700), 0);
    mvcc_close(f->dst);
    f->dst = NULL;
    snprintf(f->dst_dir, sizeof f->dst_dir, "%.280s/dst", cut_dir);
    char err[256];
    assert_int_equal(mvcc_open(f->dst_dir, NULL, &f->dst, err, sizeof err), 0);
    reset_dst(f);
    lessor_free(f->lessor);
    f->lessor = NULL;
    mvcc_close(f->src);
    mvcc_close(f->dst);
    int cuts = 0, saw_old = 0, saw_new = 0;
    for (uint64_t at = 1;; at += 1 + at / 10) {
        int code = run_child_powercut(f, cut_dir, at);
        assert_true(code == 0 || code == 77);
        assert_int_equal(mvcc_open(f->src_dir, NULL, &f->src, err, sizeof err), 0);
        assert_int_equal(mvcc_open(f->dst_dir, NULL, &f->dst, err, sizeof err), 0);
        int is_new = check_old_or_new(f, mvcc_applied_index(f->dst));
        if (code == 0) { /* no cut: the child finished */
            assert_true(is_new);
            break;
        }
        cuts++;
        if (is_new) {
            saw_new++;
            reset_dst(f);
        } else {
            saw_old++;
        }
        mvcc_close(f->src);
        mvcc_close(f->dst);
    }
    assert_true(cuts >= 10);
    assert_true(saw_old >= 1);
    print_message("power cuts: %d (old store %d, new store %d)\n", cuts, saw_old, saw_new);
}

int main(int argc, char **argv) {
    self_exe = argv[0];
    if (argc == 4 && strcmp(argv[1], "--install-child") == 0) return child_install(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_export_import_every_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staged_copy_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_stream_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_invalidated_by_install, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_during_install, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_during_install_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_during_install_two_renames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_by_process_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_cut_during_snapshot, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
