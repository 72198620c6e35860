/*
 * mvcc_snapshot.c: the store as a snapshot stream, its import into a staged
 * copy and the install of that copy (see mvcc_snapshot.h for the format and
 * the guarantees). Owns the names beside the store directory:
 *   <dir>.snap-tmp    an import being written (removed on failure, at open)
 *   <dir>.snap-ready  a complete, synced import waiting for its install
 *   <dir>.snap-old    the old store during a two-rename swap
 * and mvcc_snapshot_recover, which mvcc_open runs first.
 */
#include "mvcc_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <leveldb/c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "failpoint.h"
#include "mvcc_swap.h"

#define SNAP_MAGIC "KSHIMSN1"
#define HDR_LEN 16    /* magic | applied index */
#define REC_HDR_LEN 9 /* tag | key_len | val_len */
#define END_LEN 13    /* tag | records | crc */
#define TAG_RECORD 1
#define TAG_END 2
#define WRITE_BATCH_BYTES (1u << 20) /* the import writes synced batches of about this size */

/* ---- crc32c (Castagnoli), the running checksum of the stream ---- */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_init);
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- directories ---- */

static void side_path(char *out, size_t cap, const char *dir, const char *suffix) {
    snprintf(out, cap, "%s%s", dir, suffix);
}

static int path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Removes a flat directory (a LevelDB) and what is in it; 0 if gone. */
static int remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
    return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int fsync_parent(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash) return fsync_path(".");
    if (slash == buf)
        slash[1] = 0;
    else
        *slash = 0;
    return fsync_path(buf);
}

/* ---- export ---- */

enum { PH_HEADER, PH_RECORDS, PH_END, PH_DONE };

struct mvcc_snap_reader {
    mvcc_user_t user; /* first: the store invalidates it on a swap */
    mvcc_t *m;
    leveldb_t *db;
    const leveldb_snapshot_t *snap;
    leveldb_readoptions_t *ro;
    leveldb_iterator_t *it;
    int stale; /* an install closed the database under it */
    int phase;
    uint64_t index, records;
    uint32_t crc;
    uint8_t small[HDR_LEN > END_LEN ? HDR_LEN : END_LEN]; /* header or end record */
    size_t small_len;
    int in_record; /* the iterator's current record is being emitted */
    uint8_t rec_hdr[REC_HDR_LEN];
    const uint8_t *key, *val;
    size_t key_len, val_len, off; /* off: bytes of the record emitted */
};

static void reader_release(mvcc_snap_reader_t *r) {
    if (r->it) leveldb_iter_destroy(r->it);
    if (r->ro) leveldb_readoptions_destroy(r->ro);
    if (r->snap) leveldb_release_snapshot(r->db, r->snap);
    r->it = NULL;
    r->ro = NULL;
    r->snap = NULL;
}

static void reader_invalidate(mvcc_user_t *u) {
    mvcc_snap_reader_t *r = (mvcc_snap_reader_t *)u;
    reader_release(r);
    r->stale = 1;
}

/* The applied index in the snapshot's 'm' record (0 for an empty store).
 * MVCC_OK, MVCC_ERR_IO, or MVCC_ERR_CORRUPT for a record of another length
 * than mvcc.c's (24 bytes, or 32 in stores of older versions): mvcc_open
 * would refuse it. */
static int snapshot_index(leveldb_t *db, const leveldb_readoptions_t *ro, uint64_t *index) {
    char *err = NULL;
    size_t len = 0;
    char *v = leveldb_get(db, ro, "m", 1, &len, &err);
    if (err) {
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    int rc = !v || len == 24 || len == 32 ? MVCC_OK : MVCC_ERR_CORRUPT;
    *index = v && rc == MVCC_OK ? get_be64((const uint8_t *)v) : 0;
    if (v) leveldb_free(v);
    return rc;
}

int mvcc_snapshot_export(mvcc_t *m, mvcc_snap_reader_t **out) {
    mvcc_snap_reader_t *r = calloc(1, sizeof(*r));
    if (!r) return MVCC_ERR_IO;
    r->m = m;
    r->user.invalidate = reader_invalidate;
    mvcc_gate_enter(m);
    r->db = mvcc_db(m);
    int rc = MVCC_ERR_IO;
    if (r->db) {
        r->snap = leveldb_create_snapshot(r->db);
        r->ro = leveldb_readoptions_create();
        leveldb_readoptions_set_verify_checksums(r->ro, 1);
        leveldb_readoptions_set_fill_cache(r->ro, 0); /* a full scan must not evict the hot blocks */
        leveldb_readoptions_set_snapshot(r->ro, r->snap);
        rc = snapshot_index(r->db, r->ro, &r->index);
        if (rc == MVCC_ERR_CORRUPT) rc = MVCC_ERR_IO; /* the open store's own record */
    }
    if (rc == MVCC_OK) {
        r->it = leveldb_create_iterator(r->db, r->ro);
        leveldb_iter_seek_to_first(r->it);
        mvcc_user_add(m, &r->user);
    }
    mvcc_gate_leave(m);
    if (rc != MVCC_OK) {
        reader_release(r);
        free(r);
        return rc;
    }
    memcpy(r->small, SNAP_MAGIC, 8);
    put_be64(r->small + 8, r->index);
    r->small_len = HDR_LEN;
    r->phase = PH_HEADER;
    *out = r;
    return MVCC_OK;
}

uint64_t mvcc_snap_reader_index(const mvcc_snap_reader_t *r) { return r->index; }

static size_t emit(mvcc_snap_reader_t *r, uint8_t *dst, size_t cap, const uint8_t *src, size_t len,
                   size_t *off) {
    size_t n = len - *off < cap ? len - *off : cap;
    memcpy(dst, src + *off, n);
    *off += n;
    return n;
}

/* Starts the record the iterator is at, or the end record after the last. */
static int next_record(mvcc_snap_reader_t *r) {
    if (!leveldb_iter_valid(r->it)) {
        char *err = NULL;
        leveldb_iter_get_error(r->it, &err);
        if (err) {
            fprintf(stderr, "mvcc: snapshot export: %s\n", err);
            leveldb_free(err);
            return -1;
        }
        r->small[0] = TAG_END;
        put_be64(r->small + 1, r->records);
        r->crc = crc_update(r->crc, r->small, 9);
        put_be32(r->small + 9, r->crc);
        r->small_len = END_LEN;
        r->off = 0;
        r->phase = PH_END;
        return 0;
    }
    r->key = (const uint8_t *)leveldb_iter_key(r->it, &r->key_len);
    r->val = (const uint8_t *)leveldb_iter_value(r->it, &r->val_len);
    if (r->key_len + r->val_len > MVCC_SNAP_MAX_RECORD) {
        fprintf(stderr, "mvcc: snapshot export: a record of %zu bytes is over the limit\n",
                r->key_len + r->val_len);
        return -1;
    }
    r->rec_hdr[0] = TAG_RECORD;
    put_be32(r->rec_hdr + 1, (uint32_t)r->key_len);
    put_be32(r->rec_hdr + 5, (uint32_t)r->val_len);
    r->off = 0;
    r->in_record = 1;
    return 0;
}

/* Emits as much of the current record as fits. */
static size_t emit_record(mvcc_snap_reader_t *r, uint8_t *dst, size_t cap) {
    size_t done = 0;
    const uint8_t *parts[3] = {r->rec_hdr, r->key, r->val};
    size_t lens[3] = {REC_HDR_LEN, r->key_len, r->val_len};
    size_t start = 0;
    for (int i = 0; i < 3 && done < cap; i++) {
        if (r->off < start + lens[i]) {
            size_t in = r->off - start;
            size_t n = emit(r, dst + done, cap - done, parts[i], lens[i], &in);
            r->off += n;
            done += n;
        }
        start += lens[i];
    }
    if (r->off == REC_HDR_LEN + r->key_len + r->val_len) {
        r->in_record = 0;
        r->records++;
        leveldb_iter_next(r->it);
    }
    return done;
}

static long reader_fill(mvcc_snap_reader_t *r, uint8_t *buf, size_t cap) {
    size_t done = 0;
    while (done < cap && r->phase != PH_DONE) {
        size_t n = 0;
        if (r->phase == PH_HEADER || r->phase == PH_END) {
            n = emit(r, buf + done, cap - done, r->small, r->small_len, &r->off);
            if (r->phase == PH_HEADER) r->crc = crc_update(r->crc, buf + done, n);
            if (r->off == r->small_len) {
                r->off = 0;
                r->phase = r->phase == PH_HEADER ? PH_RECORDS : PH_DONE;
            }
        } else if (!r->in_record) {
            if (next_record(r) != 0) return -1;
        } else {
            n = emit_record(r, buf + done, cap - done);
            r->crc = crc_update(r->crc, buf + done, n);
        }
        done += n;
    }
    return (long)done;
}

long mvcc_snap_reader_read(mvcc_snap_reader_t *r, uint8_t *buf, size_t cap) {
    if (cap > (size_t)1 << 30) cap = (size_t)1 << 30;
    mvcc_gate_enter(r->m);
    long n = r->stale ? -1 : reader_fill(r, buf, cap);
    mvcc_gate_leave(r->m);
    return n;
}

void mvcc_snap_reader_free(mvcc_snap_reader_t *r) {
    if (!r) return;
    mvcc_gate_enter(r->m);
    mvcc_user_remove(r->m, &r->user);
    if (!r->stale) reader_release(r);
    mvcc_gate_leave(r->m);
    free(r);
}

/* ---- crash points (tests) ----
 * mvcc_snapshot_test_crash arms the nth point to return as a crash (the
 * caller leaves everything as it is); the failpoint mvcc_snapshot_crash=N
 * (KSHIM_FAILPOINTS, read at mvcc_open) makes the process _exit there. */

static failpoint_t crash_fp;
static _Atomic int crash_exit; /* armed from the environment: exit, not return */
static int test_no_exchange;

void mvcc_snapshot_test_crash(uint64_t nth, int no_exchange) {
    atomic_store(&crash_exit, 0);
    failpoint_arm(&crash_fp, nth);
    test_no_exchange = no_exchange;
}

static void crash_arm_from_env(void) {
    uint64_t n = failpoint_parse(getenv(FAILPOINTS_ENV), "mvcc_snapshot_crash");
    if (n == 0) return;
    atomic_store(&crash_exit, 1);
    failpoint_arm(&crash_fp, n);
}

/* A point where an import or install may stop as a crash would. */
static int crash_here(void) {
    if (!failpoint_hit(&crash_fp)) return 0;
    if (atomic_load(&crash_exit)) {
        fprintf(stderr, "mvcc: failpoint mvcc_snapshot_crash: exiting\n");
        _exit(86);
    }
    return 1;
}

/* ---- import ---- */

struct mvcc_snap_writer {
    char tmp[4096], ready[4096];
    leveldb_t *db;
    leveldb_options_t *opts;
    leveldb_writeoptions_t *wo;
    leveldb_writebatch_t *wb;
    size_t wb_bytes;
    int failed;
    int ended; /* the end record was read */
    uint32_t crc;
    uint64_t index, records;
    uint8_t hdr[HDR_LEN > END_LEN ? HDR_LEN : END_LEN]; /* header, record header or end record */
    size_t hdr_have;
    uint8_t *rec; /* key | value of the record being read (malloc) */
    size_t rec_cap, rec_need, rec_have, key_len;
    int in_body; /* reading a record's key and value */
    int got_header;
};

static void writer_close_db(mvcc_snap_writer_t *w) {
    if (w->wb) leveldb_writebatch_destroy(w->wb);
    if (w->db) leveldb_close(w->db);
    if (w->wo) leveldb_writeoptions_destroy(w->wo);
    if (w->opts) leveldb_options_destroy(w->opts);
    w->wb = NULL;
    w->db = NULL;
    w->wo = NULL;
    w->opts = NULL;
}

static void writer_free(mvcc_snap_writer_t *w) {
    writer_close_db(w);
    free(w->rec);
    free(w);
}

int mvcc_snapshot_import(mvcc_t *m, mvcc_snap_writer_t **out, char *err, size_t errlen) {
    mvcc_snap_writer_t *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return MVCC_ERR_IO;
    }
    side_path(w->tmp, sizeof w->tmp, mvcc_dir(m), ".snap-tmp");
    side_path(w->ready, sizeof w->ready, mvcc_dir(m), ".snap-ready");
    /* An older staged copy stays until this one is complete (finish). */
    if (remove_tree(w->tmp) != 0) {
        snprintf(err, errlen, "cannot remove an unfinished import beside %s: %s", mvcc_dir(m),
                 strerror(errno));
        free(w);
        return MVCC_ERR_IO;
    }
    w->opts = leveldb_options_create();
    leveldb_options_set_create_if_missing(w->opts, 1);
    leveldb_options_set_error_if_exists(w->opts, 1);
    leveldb_options_set_write_buffer_size(w->opts, 4 << 20);
    w->wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(w->wo, 1);
    w->wb = leveldb_writebatch_create();
    char *lerr = NULL;
    w->db = leveldb_open(w->opts, w->tmp, &lerr);
    if (lerr) {
        snprintf(err, errlen, "leveldb open %s: %s", w->tmp, lerr);
        leveldb_free(lerr);
        w->db = NULL;
        writer_free(w);
        return MVCC_ERR_IO;
    }
    *out = w;
    return MVCC_OK;
}

static int flush_batch(mvcc_snap_writer_t *w) {
    if (w->wb_bytes == 0) return MVCC_OK;
    char *err = NULL;
    leveldb_write(w->db, w->wo, w->wb, &err);
    leveldb_writebatch_clear(w->wb);
    w->wb_bytes = 0;
    if (err) {
        fprintf(stderr, "mvcc: snapshot import: %s\n", err);
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    return MVCC_OK;
}

/* A record header is complete: make room for its key and value. */
static int start_body(mvcc_snap_writer_t *w) {
    if (w->hdr[0] != TAG_RECORD) return MVCC_ERR_CORRUPT;
    size_t kl = get_be32(w->hdr + 1), vl = get_be32(w->hdr + 5);
    if (kl == 0 || kl + vl > MVCC_SNAP_MAX_RECORD) return MVCC_ERR_CORRUPT;
    if (kl + vl > w->rec_cap) {
        uint8_t *p = realloc(w->rec, kl + vl);
        if (!p) return MVCC_ERR_IO;
        w->rec = p;
        w->rec_cap = kl + vl;
    }
    w->key_len = kl;
    w->rec_need = kl + vl;
    w->rec_have = 0;
    w->in_body = 1;
    return MVCC_OK;
}

static int end_record(mvcc_snap_writer_t *w) {
    uint32_t want = crc_update(w->crc, w->hdr, 9);
    if (get_be64(w->hdr + 1) != w->records || get_be32(w->hdr + 9) != want) return MVCC_ERR_CORRUPT;
    w->ended = 1;
    return MVCC_OK;
}

/* How many header bytes the next framing element needs (its tag decides). */
static size_t hdr_need(const mvcc_snap_writer_t *w) {
    if (!w->got_header) return HDR_LEN;
    if (w->hdr_have == 0) return 1;
    return w->hdr[0] == TAG_END ? END_LEN : REC_HDR_LEN;
}

static int on_hdr_complete(mvcc_snap_writer_t *w) {
    if (!w->got_header) {
        if (memcmp(w->hdr, SNAP_MAGIC, 8) != 0) return MVCC_ERR_CORRUPT;
        w->index = get_be64(w->hdr + 8);
        w->crc = crc_update(0, w->hdr, HDR_LEN);
        w->got_header = 1;
        return MVCC_OK;
    }
    if (w->hdr[0] == TAG_END) return end_record(w);
    w->crc = crc_update(w->crc, w->hdr, REC_HDR_LEN);
    return start_body(w);
}

static int write_chunk(mvcc_snap_writer_t *w, const uint8_t *p, size_t len) {
    while (len > 0) {
        if (w->ended) return MVCC_ERR_CORRUPT; /* bytes after the end record */
        if (w->in_body) {
            size_t n = w->rec_need - w->rec_have < len ? w->rec_need - w->rec_have : len;
            memcpy(w->rec + w->rec_have, p, n);
            w->rec_have += n;
            p += n;
            len -= n;
            if (w->rec_have < w->rec_need) continue;
            w->crc = crc_update(w->crc, w->rec, w->rec_need);
            leveldb_writebatch_put(w->wb, (const char *)w->rec, w->key_len, (const char *)w->rec + w->key_len,
                                   w->rec_need - w->key_len);
            w->wb_bytes += w->rec_need;
            w->records++;
            w->in_body = 0;
            w->hdr_have = 0;
            if (w->wb_bytes >= WRITE_BATCH_BYTES && flush_batch(w) != MVCC_OK) return MVCC_ERR_IO;
            continue;
        }
        size_t need = hdr_need(w);
        if (w->hdr_have == 0 && w->got_header && p[0] != TAG_RECORD && p[0] != TAG_END)
            return MVCC_ERR_CORRUPT;
        size_t n = need - w->hdr_have < len ? need - w->hdr_have : len;
        memcpy(w->hdr + w->hdr_have, p, n);
        w->hdr_have += n;
        p += n;
        len -= n;
        if (w->hdr_have < hdr_need(w)) continue;
        int rc = on_hdr_complete(w);
        if (rc != MVCC_OK) return rc;
        if (!w->in_body) w->hdr_have = 0;
    }
    return MVCC_OK;
}

int mvcc_snap_writer_write(mvcc_snap_writer_t *w, const uint8_t *data, size_t len) {
    if (w->failed) return MVCC_ERR_CORRUPT;
    int rc = write_chunk(w, data, len);
    if (rc != MVCC_OK) w->failed = 1;
    return rc;
}

/* The copy's own 'm' record must carry the index its header announced. */
static int check_copy_index(mvcc_snap_writer_t *w) {
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(ro, 1);
    uint64_t index = 0;
    int rc = snapshot_index(w->db, ro, &index);
    leveldb_readoptions_destroy(ro);
    if (rc != MVCC_OK) return rc;
    return index == w->index ? MVCC_OK : MVCC_ERR_CORRUPT;
}

int mvcc_snap_writer_finish(mvcc_snap_writer_t *w, uint64_t *applied_index) {
    int rc = w->failed ? MVCC_ERR_CORRUPT : !w->ended ? MVCC_ERR_CORRUPT : flush_batch(w);
    if (rc == MVCC_OK) rc = check_copy_index(w);
    writer_close_db(w);
    /* LevelDB syncs its files; the directory entries need a sync too. */
    if (rc == MVCC_OK && fsync_path(w->tmp) != 0) rc = MVCC_ERR_IO;
    if (rc == MVCC_OK && crash_here()) goto crashed;
    if (rc == MVCC_OK && remove_tree(w->ready) != 0) rc = MVCC_ERR_IO; /* an older staged copy */
    if (rc == MVCC_OK && rename(w->tmp, w->ready) != 0) rc = MVCC_ERR_IO;
    if (rc == MVCC_OK && crash_here()) goto crashed;
    if (rc == MVCC_OK && fsync_parent(w->ready) != 0) rc = MVCC_ERR_IO;
    if (rc != MVCC_OK) {
        remove_tree(w->tmp);
    } else if (applied_index) {
        *applied_index = w->index;
    }
    writer_free(w);
    return rc;
crashed: /* tests: everything stays as a crash leaves it */
    writer_free(w);
    return MVCC_ERR_IO;
}

uint64_t mvcc_snap_writer_index(const mvcc_snap_writer_t *w) { return w->got_header ? w->index : 0; }

void mvcc_snap_writer_abort(mvcc_snap_writer_t *w) {
    if (!w) return;
    writer_close_db(w);
    remove_tree(w->tmp);
    writer_free(w);
}

/* ---- install ---- */

static int exchange(const char *a, const char *b) {
    if (test_no_exchange) {
        errno = EINVAL;
        return -1;
    }
    return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

/* With the store closed: the staged copy takes dir's place. */
static int swap_dirs(void *arg, const char *dir, char *err, size_t errlen) {
    (void)arg;
    char ready[4096], old[4096];
    side_path(ready, sizeof ready, dir, ".snap-ready");
    side_path(old, sizeof old, dir, ".snap-old");
    if (crash_here()) return MVCC_SWAP_CRASHED;
    const char *old_now = ready; /* where the old store is after the swap */
    if (exchange(ready, dir) != 0) {
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
            snprintf(err, errlen, "snapshot install: exchange %s and %s: %s", ready, dir, strerror(errno));
            return -1;
        }
        /* No RENAME_EXCHANGE: dir -> .snap-old, ready -> dir; a crash in
         * between leaves no dir, which mvcc_snapshot_recover resolves to
         * the new store (ready is complete). */
        if (rename(dir, old) != 0) {
            snprintf(err, errlen, "snapshot install: rename %s: %s", dir, strerror(errno));
            return -1;
        }
        if (crash_here()) return MVCC_SWAP_CRASHED;
        if (rename(ready, dir) != 0) {
            snprintf(err, errlen, "snapshot install: rename %s: %s", ready, strerror(errno));
            if (rename(old, dir) != 0) return MVCC_SWAP_CRASHED; /* left to the recovery at the next open */
            return -1;
        }
        old_now = old;
    }
    if (crash_here()) return MVCC_SWAP_CRASHED;
    if (fsync_parent(dir) != 0) {
        /* The swap may or may not be durable: stop; the next open sees the old or the new store. */
        snprintf(err, errlen, "snapshot install: fsync of the parent of %s: %s", dir, strerror(errno));
        return MVCC_SWAP_CRASHED;
    }
    if (crash_here()) return MVCC_SWAP_CRASHED;
    remove_tree(old_now);
    if (crash_here()) return MVCC_SWAP_CRASHED;
    return 0;
}

int mvcc_snapshot_install(mvcc_t *m, char *err, size_t errlen) {
    char ready[4096];
    side_path(ready, sizeof ready, mvcc_dir(m), ".snap-ready");
    if (!path_exists(ready)) {
        snprintf(err, errlen, "snapshot install: nothing staged in %s", ready);
        return MVCC_ERR_NOT_FOUND;
    }
    return mvcc_swap_store(m, swap_dirs, NULL, err, errlen);
}

static int dir_index(const char *path, uint64_t *index);

int mvcc_snapshot_staged_index(mvcc_t *m, uint64_t *index) {
    char ready[4096];
    side_path(ready, sizeof ready, mvcc_dir(m), ".snap-ready");
    if (!path_exists(ready)) return MVCC_ERR_NOT_FOUND;
    return dir_index(ready, index);
}

void mvcc_snapshot_discard(mvcc_t *m) {
    char p[4096];
    side_path(p, sizeof p, mvcc_dir(m), ".snap-tmp");
    remove_tree(p);
    side_path(p, sizeof p, mvcc_dir(m), ".snap-ready");
    remove_tree(p);
}

/* The applied index of the LevelDB in path (opened and closed here). */
static int dir_index(const char *path, uint64_t *index) {
    leveldb_options_t *o = leveldb_options_create();
    char *err = NULL;
    leveldb_t *db = leveldb_open(o, path, &err);
    leveldb_options_destroy(o);
    if (err) {
        leveldb_free(err);
        return MVCC_ERR_IO;
    }
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(ro, 1);
    int rc = snapshot_index(db, ro, index);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    return rc == MVCC_ERR_CORRUPT ? MVCC_ERR_IO : rc;
}

/* A staged copy beside an existing store is worth keeping only if it is
 * ahead of it: a copy received and synced whose install the crash cut off
 * before the swap. After an exchange-swap the old store sits under the
 * staged name until it is removed, behind the new one: not worth keeping. */
static int staged_copy_ahead(const char *dir, const char *ready) {
    uint64_t store = 0, staged = 0;
    if (!path_exists(ready)) return 0;
    if (dir_index(dir, &store) != MVCC_OK || dir_index(ready, &staged) != MVCC_OK) return 0;
    return staged > store;
}

int mvcc_snapshot_recover(const char *dir, char *err, size_t errlen) {
    crash_arm_from_env();
    char tmp[4096], ready[4096], old[4096];
    side_path(tmp, sizeof tmp, dir, ".snap-tmp");
    side_path(ready, sizeof ready, dir, ".snap-ready");
    side_path(old, sizeof old, dir, ".snap-old");
    if (!path_exists(dir)) {
        /* A two-rename swap stopped between its renames: the staged copy is
         * complete, so the install is finished; without one, the old store
         * goes back. */
        const char *from = path_exists(ready) ? ready : path_exists(old) ? old : NULL;
        if (from && (rename(from, dir) != 0 || fsync_parent(dir) != 0)) {
            snprintf(err, errlen, "snapshot recovery: rename %s to %s: %s", from, dir, strerror(errno));
            return -1;
        }
    }
    /* Whatever else is beside the store is an unfinished import or the old
     * store of a finished install. A staged copy ahead of the store stays: it
     * is complete (renamed into place only after its end record checked out), and
     * the node may install it again at start, when its WAL already records
     * the snapshot but the crash came before the install (see
     * mvcc_snapshot_staged_index); unless it is the old store after an
     * exchange, or otherwise not ahead of the store. */
    if (remove_tree(tmp) != 0 || remove_tree(old) != 0 ||
        (!staged_copy_ahead(dir, ready) && remove_tree(ready) != 0)) {
        snprintf(err, errlen, "snapshot recovery: cannot remove the staged copies beside %s: %s", dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}
