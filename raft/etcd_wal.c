/*
 * etcd_wal.c: the etcd WAL reader (see etcd_wal.h): record framing, the
 * CRC chain and etcd's torn-tail rule. The messages (walpb.Record,
 * raftpb.Entry, walpb.Snapshot) are protobuf-c's, generated from
 * proto/etcd_walpb.proto and proto/etcd_raftpb.proto.
 */
#include "etcd_wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "etcd_raftpb.pb-c.h"
#include "etcd_walpb.pb-c.h"

#define FRAME_BYTES 8
#define MAX_RECORD_BYTES (10u * 1024 * 1024) /* etcd's maxWALEntrySizeLimit */
#define SECTOR 512

enum { REC_METADATA = 1, REC_ENTRY = 2, REC_STATE = 3, REC_CRC = 4, REC_SNAPSHOT = 5 };

/* One file's scan: what etcd_wal_scan_buf was given. */
typedef struct scan {
    const uint8_t *buf;
    int last;
    uint64_t after;
    uint32_t *crc;
    etcd_wal_summary_t *s;
    char *err;
    size_t errlen;
} scan_t;

/* ---- records ---- */

/* etcd's isTornEntry: some 512-byte sector of the record (counted from the
 * file's start) is all zeros, i.e. the write did not reach it. */
static int torn(const uint8_t *buf, size_t off, size_t n) {
    for (size_t o = off; o < off + n;) {
        size_t chunk = SECTOR - o % SECTOR;
        if (chunk > off + n - o) chunk = off + n - o;
        size_t i = 0;
        while (i < chunk && buf[o + i] == 0) i++;
        if (i == chunk) return 1;
        o += chunk;
    }
    return 0;
}

static int corrupt(const scan_t *sc, size_t off, const char *what) {
    snprintf(sc->err, sc->errlen, "offset %zu: %s", off, what);
    return ETCD_WAL_E_CORRUPT;
}

/* An entry record's raftpb.Entry. */
static int note_entry(const scan_t *sc, const ProtobufCBinaryData *data, size_t off) {
    Raftpb__Entry *e = raftpb__entry__unpack(NULL, data->len, data->data);
    if (!e) return corrupt(sc, off, "bad raftpb.Entry");
    etcd_wal_summary_t *s = sc->s;
    s->entries++;
    if (!s->first_index || e->index < s->first_index) s->first_index = e->index;
    if (e->index > s->last_index) s->last_index = e->index;
    if (e->type == RAFTPB__ENTRY_TYPE__EntryNormal && e->data.len > 0 && e->index > sc->after) {
        if (!s->writes_after || e->index < s->first_write_after) s->first_write_after = e->index;
        s->writes_after++;
    }
    raftpb__entry__free_unpacked(e, NULL);
    return ETCD_WAL_OK;
}

/* A snapshot record's walpb.Snapshot. */
static int note_snapshot(const scan_t *sc, const ProtobufCBinaryData *data, size_t off) {
    Walpb__Snapshot *snap = walpb__snapshot__unpack(NULL, data->len, data->data);
    if (!snap) return corrupt(sc, off, "bad walpb.Snapshot");
    if (snap->index > sc->s->snapshot_index) sc->s->snapshot_index = snap->index;
    walpb__snapshot__free_unpacked(snap, NULL);
    return ETCD_WAL_OK;
}

/* One decoded record with a good CRC. */
static int note_record(const scan_t *sc, const Walpb__Record *r, size_t off) {
    sc->s->records++;
    if (r->type == REC_ENTRY) return note_entry(sc, &r->data, off);
    if (r->type == REC_SNAPSHOT) return note_snapshot(sc, &r->data, off);
    if (r->type < REC_METADATA || r->type > REC_SNAPSHOT) return corrupt(sc, off, "unknown record type");
    return ETCD_WAL_OK;
}

enum { CHAIN_OK = 0, CHAIN_BAD = 1, CHAIN_MISMATCH = 2 };

/* The CRC chain through one decoded record: a crc record carries the
 * running value (CHAIN_MISMATCH if it is another), every other record the
 * value after its data (CHAIN_BAD if not). */
static int chain(const Walpb__Record *r, uint32_t *crc) {
    if (r->type == REC_CRC) {
        if (*crc != 0 && r->crc != *crc) return CHAIN_MISMATCH;
        *crc = r->crc;
        return CHAIN_OK;
    }
    uint32_t next = crc32c(*crc, r->data.data, r->data.len);
    if (next != r->crc) return CHAIN_BAD;
    *crc = next;
    return CHAIN_OK;
}

enum { NEXT = 1, END = 2 };

/* The record at off, whose n bytes (with padding) are in the file: NEXT,
 * END (a torn tail: the rest of the last file is ignored) or
 * ETCD_WAL_E_CORRUPT. */
static int scan_record(const scan_t *sc, size_t off, size_t rec, size_t n) {
    size_t body = off + FRAME_BYTES;
    Walpb__Record *r = walpb__record__unpack(NULL, rec, sc->buf + body);
    int c = r ? chain(r, sc->crc) : CHAIN_BAD;
    int rc = NEXT;
    if (c == CHAIN_BAD && sc->last && torn(sc->buf, body, n)) {
        sc->s->torn_tail = 1;
        rc = END;
    } else if (c == CHAIN_BAD) {
        rc = corrupt(sc, off, "bad record or CRC mismatch");
    } else if (c == CHAIN_MISMATCH) {
        rc = corrupt(sc, off, "crc record mismatch");
    } else if ((rc = note_record(sc, r, off)) == ETCD_WAL_OK) {
        rc = NEXT;
    }
    walpb__record__free_unpacked(r, NULL);
    return rc;
}

int etcd_wal_scan_buf(const uint8_t *buf, size_t len, int last, uint64_t after, uint32_t *crc,
                      etcd_wal_summary_t *s, char *err, size_t errlen) {
    const scan_t sc = {buf, last, after, crc, s, err, errlen};
    s->files++;
    for (size_t off = 0; len - off >= FRAME_BYTES;) {
        uint64_t word = 0;
        for (int i = 0; i < 8; i++) word |= (uint64_t)buf[off + i] << (8 * i);
        if (word == 0) return ETCD_WAL_OK; /* preallocated space */
        uint64_t rec = word & ~(0xffull << 56);
        uint64_t pad = (word >> 63) ? (word >> 56) & 7 : 0;
        if (rec + pad >= MAX_RECORD_BYTES) return corrupt(&sc, off, "record larger than 10 MiB");
        if (rec + pad > len - off - FRAME_BYTES) {
            if (!last) return corrupt(&sc, off, "record past the end of the file");
            s->torn_tail = 1;
            return ETCD_WAL_OK;
        }
        int rc = scan_record(&sc, off, (size_t)rec, (size_t)(rec + pad));
        if (rc == END) return ETCD_WAL_OK;
        if (rc != NEXT) return rc;
        off += FRAME_BYTES + (size_t)(rec + pad);
    }
    return ETCD_WAL_OK;
}

/* ---- files ---- */

static int is_wal_name(const char *n) {
    size_t l = strlen(n);
    return l > 4 && !strcmp(n + l - 4, ".wal");
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The *.wal names of dir, sorted (the caller frees each and the array). */
static int list_wal_files(const char *dir, char ***names, size_t *n) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -1;
    size_t cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_wal_name(e->d_name)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **grown = realloc(*names, cap * sizeof **names);
            if (!grown) {
                rc = -1;
                break;
            }
            *names = grown;
        }
        if (!((*names)[*n] = strdup(e->d_name))) {
            rc = -1;
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(*names, *n, sizeof **names, cmp_names);
    return rc;
}

static int scan_file(const char *path, int last, uint64_t after, uint32_t *crc, etcd_wal_summary_t *s,
                     char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return ETCD_WAL_E_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "stat %s: %s", path, strerror(errno));
        close(fd);
        return ETCD_WAL_E_IO;
    }
    size_t len = (size_t)sb.st_size;
    const uint8_t *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "mmap %s: %s", path, strerror(errno));
        return ETCD_WAL_E_IO;
    }
    char why[256] = "";
    int rc = len ? etcd_wal_scan_buf(map, len, last, after, crc, s, why, sizeof why) : ETCD_WAL_OK;
    if (len) munmap((void *)map, len);
    if (rc != ETCD_WAL_OK) snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

int etcd_wal_scan_dir(const char *dir, uint64_t after, etcd_wal_summary_t *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    char **names = NULL;
    size_t n = 0;
    if (list_wal_files(dir, &names, &n) != 0) {
        snprintf(err, errlen, "cannot list %s: %s", dir, strerror(errno));
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        return ETCD_WAL_E_IO;
    }
    uint32_t crc = 0;
    int rc = ETCD_WAL_OK;
    for (size_t i = 0; i < n && rc == ETCD_WAL_OK; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = scan_file(path, i + 1 == n, after, &crc, s, err, errlen);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}
