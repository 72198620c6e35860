/*
 * etcd_wal.c: the etcd WAL reader (see etcd_wal.h): record framing, the
 * CRC chain, and a minimal bounds-checked protobuf decoder for the three
 * messages it needs (walpb.Record, raftpb.Entry, walpb.Snapshot).
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

#define FRAME_BYTES 8
#define MAX_RECORD_BYTES (10u * 1024 * 1024) /* etcd's maxWALEntrySizeLimit */
#define SECTOR 512

enum { REC_METADATA = 1, REC_ENTRY = 2, REC_STATE = 3, REC_CRC = 4, REC_SNAPSHOT = 5 };

/* ---- protobuf ---- */

typedef struct pb {
    const uint8_t *p, *end;
} pb_t;

static int pb_varint(pb_t *b, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return -1;
        uint8_t c = *b->p++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return 0;
    }
    return -1;
}

/* One field: *num, *wire; a varint's value in *v, a length-delimited
 * field's bytes in data and dlen. Fixed 32- and 64-bit fields are skipped. */
static int pb_field(pb_t *b, uint32_t *num, int *wire, uint64_t *v, const uint8_t **data, size_t *dlen) {
    uint64_t tag;
    if (pb_varint(b, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX) return -1;
    *num = (uint32_t)(tag >> 3);
    *wire = (int)(tag & 7);
    switch (*wire) {
    case 0: return pb_varint(b, v);
    case 1:
    case 5: {
        size_t n = *wire == 1 ? 8 : 4;
        if ((size_t)(b->end - b->p) < n) return -1;
        b->p += n;
        return 0;
    }
    case 2:
        if (pb_varint(b, v) != 0 || *v > (uint64_t)(b->end - b->p)) return -1;
        *data = b->p;
        *dlen = (size_t)*v;
        b->p += *dlen;
        return 0;
    default: return -1;
    }
}

typedef struct record {
    int64_t type;
    uint32_t crc;
    const uint8_t *data;
    size_t dlen;
} record_t;

static int decode_record(const uint8_t *p, size_t n, record_t *r) {
    memset(r, 0, sizeof *r);
    pb_t b = {p, p + n};
    while (b.p < b.end) {
        uint32_t num;
        int wire;
        uint64_t v = 0;
        const uint8_t *d = NULL;
        size_t dl = 0;
        if (pb_field(&b, &num, &wire, &v, &d, &dl) != 0) return -1;
        if (num == 1 && wire == 0) r->type = (int64_t)v;
        if (num == 2 && wire == 0) r->crc = (uint32_t)v;
        if (num == 3 && wire == 2) r->data = d, r->dlen = dl;
    }
    return 0;
}

typedef struct entry {
    uint64_t type, term, index;
    size_t dlen;
} entry_t;

/* A record without data (p NULL, n 0) decodes as the empty message. */
static int decode_entry(const uint8_t *p, size_t n, entry_t *e) {
    memset(e, 0, sizeof *e);
    if (n == 0) return 0; /* p may be NULL: no pointer arithmetic on it */
    pb_t b = {p, p + n};
    while (b.p < b.end) {
        uint32_t num;
        int wire;
        uint64_t v = 0;
        const uint8_t *d = NULL;
        size_t dl = 0;
        if (pb_field(&b, &num, &wire, &v, &d, &dl) != 0) return -1;
        if (num == 1 && wire == 0) e->type = v;
        if (num == 2 && wire == 0) e->term = v;
        if (num == 3 && wire == 0) e->index = v;
        if (num == 4 && wire == 2) e->dlen = dl;
    }
    return 0;
}

/* walpb.Snapshot's index (field 1). */
static int decode_snapshot_index(const uint8_t *p, size_t n, uint64_t *index) {
    *index = 0;
    if (n == 0) return 0; /* p may be NULL (a record without data) */
    pb_t b = {p, p + n};
    while (b.p < b.end) {
        uint32_t num;
        int wire;
        uint64_t v = 0;
        const uint8_t *d = NULL;
        size_t dl = 0;
        if (pb_field(&b, &num, &wire, &v, &d, &dl) != 0) return -1;
        if (num == 1 && wire == 0) *index = v;
    }
    return 0;
}

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

static int corrupt(char *err, size_t errlen, size_t off, const char *what) {
    snprintf(err, errlen, "offset %zu: %s", off, what);
    return ETCD_WAL_E_CORRUPT;
}

static void note_entry(etcd_wal_summary_t *s, const entry_t *e, uint64_t after) {
    s->entries++;
    if (!s->first_index || e->index < s->first_index) s->first_index = e->index;
    if (e->index > s->last_index) s->last_index = e->index;
    if (e->type == ETCD_WAL_ENTRY_NORMAL && e->dlen > 0 && e->index > after) {
        if (!s->writes_after || e->index < s->first_write_after) s->first_write_after = e->index;
        s->writes_after++;
    }
}

/* One decoded record with a good CRC. */
static int note_record(etcd_wal_summary_t *s, const record_t *r, uint64_t after, size_t off, char *err,
                       size_t errlen) {
    s->records++;
    if (r->type == REC_ENTRY) {
        entry_t e;
        if (decode_entry(r->data, r->dlen, &e) != 0) return corrupt(err, errlen, off, "bad raftpb.Entry");
        note_entry(s, &e, after);
    } else if (r->type == REC_SNAPSHOT) {
        uint64_t idx;
        if (decode_snapshot_index(r->data, r->dlen, &idx) != 0)
            return corrupt(err, errlen, off, "bad walpb.Snapshot");
        if (idx > s->snapshot_index) s->snapshot_index = idx;
    } else if (r->type < REC_METADATA || r->type > REC_SNAPSHOT) {
        return corrupt(err, errlen, off, "unknown record type");
    }
    return ETCD_WAL_OK;
}

int etcd_wal_scan_buf(const uint8_t *buf, size_t len, int last, uint64_t after, uint32_t *crc,
                      etcd_wal_summary_t *s, char *err, size_t errlen) {
    s->files++;
    for (size_t off = 0; len - off >= FRAME_BYTES;) {
        uint64_t word = 0;
        for (int i = 0; i < 8; i++) word |= (uint64_t)buf[off + i] << (8 * i);
        if (word == 0) return ETCD_WAL_OK; /* preallocated space */
        uint64_t rec = word & ~(0xffull << 56);
        uint64_t pad = (word >> 63) ? (word >> 56) & 7 : 0;
        if (rec + pad >= MAX_RECORD_BYTES) return corrupt(err, errlen, off, "record larger than 10 MiB");
        size_t body = off + FRAME_BYTES;
        if (rec + pad > len - body) {
            if (!last) return corrupt(err, errlen, off, "record past the end of the file");
            s->torn_tail = 1;
            return ETCD_WAL_OK;
        }
        record_t r;
        int bad = decode_record(buf + body, (size_t)rec, &r) != 0;
        if (!bad && r.type != REC_CRC) {
            uint32_t next = crc32c(*crc, r.data, r.dlen);
            bad = next != r.crc;
            if (!bad) *crc = next;
        } else if (!bad) {
            if (*crc != 0 && r.crc != *crc) return corrupt(err, errlen, off, "crc record mismatch");
            *crc = r.crc;
        }
        if (bad) {
            if (last && torn(buf, body, (size_t)(rec + pad))) {
                s->torn_tail = 1;
                return ETCD_WAL_OK;
            }
            return corrupt(err, errlen, off, "bad record or CRC mismatch");
        }
        int rc = note_record(s, &r, after, off, err, errlen);
        if (rc != ETCD_WAL_OK) return rc;
        off = body + (size_t)(rec + pad);
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
