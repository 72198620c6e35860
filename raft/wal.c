/*
 * wal.c: segment files, record encoding, replay with torn-tail cutting, group
 * commit and segment release (see wal.h for the format). Owns the segment
 * list, the active segment's fd and the append buffer.
 */
#include "wal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"

enum { REC_ENTRY = 1, REC_HARD_STATE = 2, REC_BASE = 3 };
#define REC_HEADER 9u
#define ENTRY_FIXED 17u           /* term, index, type */
#define MAX_RECORD_LEN (1u << 30)
#define SEGMENT_HEAD_BYTES (2 * REC_HEADER + 16 + 24)   /* BASE + HARD_STATE */

typedef struct wal_segment {
    uint64_t seq, first_index;
    uint64_t max_index;          /* highest entry index in it, 0 if none */
    uint64_t size;               /* bytes of valid records (the write offset) */
} wal_segment_t;

struct wal {
    char *dir;
    int dir_fd;
    int fd;                      /* active (last) segment */
    size_t seg_bytes;
    wal_segment_t *segs;
    size_t n_segs, cap_segs;

    uint8_t *buf;
    size_t buf_len, buf_cap;
    uint64_t buf_max_index;      /* highest entry index in buf, 0 if none */
    uint64_t buf_last_index, buf_last_term; /* log end after buf (valid if buf has entries) */
    int buf_has_entries;
    raft_hard_state_t buf_hs;
    int buf_has_hs;

    uint64_t last_index, last_term;  /* log end as written */
    raft_hard_state_t hs;            /* last hard state written */
    int unsynced;                    /* written to the active segment, not yet synced */
    int failed;
    char error[256];
    wal_stats_t stats;
};

/* ---------------------------------------------------------------- encoding */

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t record_crc(const uint8_t *rec, uint32_t len) {
    uint32_t c = crc32c(0, rec, 4);                 /* len */
    return crc32c(c, rec + 8, 1 + (size_t)len);     /* kind + payload */
}

/* Encodes one record at dst (REC_HEADER + len bytes); payload parts are
 * concatenated. */
static void record_encode(uint8_t *dst, uint8_t kind, const uint8_t *p1, size_t n1,
                          const uint8_t *p2, size_t n2) {
    uint32_t len = (uint32_t)(n1 + n2);
    put32(dst, len);
    dst[8] = kind;
    memcpy(dst + REC_HEADER, p1, n1);
    if (n2) memcpy(dst + REC_HEADER + n1, p2, n2);
    put32(dst + 4, record_crc(dst, len));
}

/* ---------------------------------------------------------------- errors */

static int fail(wal_t *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->error, sizeof(w->error), fmt, ap);
    va_end(ap);
    w->failed = 1;
    return -1;
}

const char *wal_last_error(const wal_t *w) { return w->error; }

/* ---------------------------------------------------------------- files */

static void segment_name(char *out, size_t n, uint64_t seq, uint64_t first) {
    snprintf(out, n, "%016llx-%016llx.wal", (unsigned long long)seq, (unsigned long long)first);
}

static int open_segment(wal_t *w, const wal_segment_t *s, int flags) {
    char name[64];
    segment_name(name, sizeof(name), s->seq, s->first_index);
    return openat(w->dir_fd, name, flags | O_CLOEXEC, 0644);
}

static int preallocate(int fd, size_t bytes) {
    int rc = posix_fallocate(fd, 0, (off_t)bytes);
    if (rc == 0 || rc == EOPNOTSUPP || rc == EINVAL) return 0;
    errno = rc;   /* posix_fallocate returns the error instead of setting errno */
    return -1;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
    while (n) {
        ssize_t k = pwrite(fd, p, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

static wal_segment_t *segs_push(wal_t *w) {
    if (w->n_segs == w->cap_segs) {
        size_t cap = w->cap_segs ? w->cap_segs * 2 : 8;
        wal_segment_t *s = realloc(w->segs, cap * sizeof(*s));
        if (!s) return NULL;
        w->segs = s;
        w->cap_segs = cap;
    }
    wal_segment_t *s = &w->segs[w->n_segs++];
    memset(s, 0, sizeof(*s));
    return s;
}

static wal_segment_t *active(wal_t *w) {
    assert(w->n_segs > 0);
    return &w->segs[w->n_segs - 1];
}

/* Creates the next segment, writes its BASE and current hard state, syncs it
 * and the directory, and makes it the active one. */
static int segment_create(wal_t *w) {
    uint64_t seq = w->n_segs ? active(w)->seq + 1 : 1;
    wal_segment_t tmp = { .seq = seq, .first_index = w->last_index + 1 };
    int fd = open_segment(w, &tmp, O_RDWR | O_CREAT | O_EXCL);
    if (fd < 0) return fail(w, "wal: create segment %llu: %s", (unsigned long long)seq, strerror(errno));
    uint8_t head[SEGMENT_HEAD_BYTES], p[24];
    /* the old segment must be durable before a newer one can hold data:
     * replay stops at the first bad record */
    if (w->fd >= 0 && w->unsynced) {
        if (fdatasync(w->fd) != 0) {
            close(fd);
            return fail(w, "wal: fdatasync before rollover: %s", strerror(errno));
        }
        w->unsynced = 0;
        w->stats.syncs++;
    }
    put64(p, w->last_index);
    put64(p + 8, w->last_term);
    record_encode(head, REC_BASE, p, 16, NULL, 0);
    put64(p, w->hs.term);
    put64(p + 8, w->hs.vote);
    put64(p + 16, w->hs.commit);
    record_encode(head + REC_HEADER + 16, REC_HARD_STATE, p, 24, NULL, 0);
    if (preallocate(fd, w->seg_bytes) != 0 || write_all(fd, head, sizeof(head), 0) != 0 ||
        fdatasync(fd) != 0 || fsync(w->dir_fd) != 0) {
        int e = errno;
        close(fd);
        return fail(w, "wal: init segment %llu: %s", (unsigned long long)seq, strerror(e));
    }
    wal_segment_t *s = segs_push(w);
    if (!s) {
        close(fd);
        return fail(w, "wal: out of memory");
    }
    *s = tmp;
    s->size = sizeof(head);
    if (w->fd >= 0) close(w->fd);
    w->fd = fd;
    w->stats.bytes_written += sizeof(head);
    return 0;
}

/* ---------------------------------------------------------------- replay */

typedef struct replay {
    wal_recovered_t *rec;
    size_t cap;
} replay_t;

static void rec_drop_from(wal_recovered_t *rec, size_t keep) {
    while (rec->n_ents > keep) free((void *)rec->ents[--rec->n_ents].data);
}

/* Applies one decoded entry to the recovered log. Returns 0 or -1 (gap). */
static int replay_entry(replay_t *rp, const raft_entry_t *e, char *err, size_t errlen) {
    wal_recovered_t *rec = rp->rec;
    uint64_t last = rec->base_index + rec->n_ents;
    if (e->index > last + 1) {
        snprintf(err, errlen, "wal: gap in log: entry %llu after %llu",
                 (unsigned long long)e->index, (unsigned long long)last);
        return -1;
    }
    if (e->index <= rec->base_index) {
        /* superseded below the oldest retained segment's base: restart the log */
        rec_drop_from(rec, 0);
        rec->base_index = e->index - 1;
        rec->base_term = 0;
    } else {
        rec_drop_from(rec, (size_t)(e->index - rec->base_index - 1));
    }
    uint64_t prev_term = rec->n_ents ? rec->ents[rec->n_ents - 1].term : rec->base_term;
    if (e->term < prev_term) {
        snprintf(err, errlen, "wal: entry %llu term %llu below previous term %llu",
                 (unsigned long long)e->index, (unsigned long long)e->term,
                 (unsigned long long)prev_term);
        return -1;
    }
    if (rec->n_ents == rp->cap) {
        size_t cap = rp->cap ? rp->cap * 2 : 1024;
        raft_entry_t *ents = realloc(rec->ents, cap * sizeof(*ents));
        if (!ents) {
            snprintf(err, errlen, "wal: out of memory");
            return -1;
        }
        rec->ents = ents;
        rp->cap = cap;
    }
    raft_entry_t *dst = &rec->ents[rec->n_ents];
    *dst = *e;
    dst->data = NULL;
    if (e->len) {
        uint8_t *d = malloc(e->len);
        if (!d) {
            snprintf(err, errlen, "wal: out of memory");
            return -1;
        }
        memcpy(d, e->data, e->len);
        dst->data = d;
    }
    rec->n_ents++;
    return 0;
}

/* Decodes records of one segment image. Sets *valid_end to the end of the
 * last good record. Returns 1 if the segment ended cleanly (zero length
 * field or end of file), 0 if torn/corrupt, -1 on a fatal error. */
static int replay_segment(replay_t *rp, wal_segment_t *seg, const uint8_t *img, size_t size,
                          int first_segment, uint64_t *valid_end, char *err, size_t errlen) {
    wal_recovered_t *rec = rp->rec;
    size_t off = 0;
    int seen_base = 0;
    for (;;) {
        *valid_end = off;
        if (off == size) return 1;
        if (size - off < REC_HEADER) {
            for (size_t i = off; i < size; i++)
                if (img[i]) return 0;
            return 1;
        }
        uint32_t len = get32(img + off);
        if (len == 0) return get32(img + off + 4) == 0 && img[off + 8] == 0 ? 1 : 0;
        if (len > MAX_RECORD_LEN || len > size - off - REC_HEADER) return 0;
        if (get32(img + off + 4) != record_crc(img + off, len)) return 0;
        const uint8_t *p = img + off + REC_HEADER;
        uint8_t kind = img[off + 8];
        if (kind == REC_BASE && len == 16) {
            uint64_t bi = get64(p), bt = get64(p + 8);
            if (first_segment && !seen_base && rec->n_ents == 0) {
                rec->base_index = bi;
                rec->base_term = bt;
            } else if (bi > rec->base_index + rec->n_ents) {
                snprintf(err, errlen, "wal: segment %llu starts after %llu but the log ends at %llu",
                         (unsigned long long)seg->seq, (unsigned long long)bi,
                         (unsigned long long)(rec->base_index + rec->n_ents));
                return -1;
            }
            seen_base = 1;
        } else if (kind == REC_HARD_STATE && len == 24) {
            rec->hard_state.term = get64(p);
            rec->hard_state.vote = get64(p + 8);
            rec->hard_state.commit = get64(p + 16);
        } else if (kind == REC_ENTRY && len >= ENTRY_FIXED) {
            raft_entry_t e = { .term = get64(p), .index = get64(p + 8), .type = p[16],
                               .data = p + ENTRY_FIXED, .len = len - ENTRY_FIXED };
            if (e.index == 0) return 0;
            if (replay_entry(rp, &e, err, errlen) != 0) return -1;
            if (e.index > seg->max_index) seg->max_index = e.index;
        } else {
            return 0;   /* checksummed but malformed: treat like corruption */
        }
        off += REC_HEADER + len;
    }
}

static int read_file(int fd, uint8_t **out, size_t *size) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, b + got, n - got, (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            free(b);
            return -1;
        }
        got += (size_t)k;
    }
    *out = b;
    *size = n;
    return 0;
}

/* Cuts a segment at off: stale bytes after it are discarded for good. */
static int cut_segment(wal_t *w, int fd, uint64_t off) {
    if (ftruncate(fd, (off_t)off) != 0) return -1;
    if (preallocate(fd, w->seg_bytes) != 0) return -1;
    return fsync(fd);
}

static int cmp_seq(const void *a, const void *b) {
    const wal_segment_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int list_segments(wal_t *w, char *err, size_t errlen) {
    DIR *d = opendir(w->dir);
    if (!d) {
        snprintf(err, errlen, "wal: opendir %s: %s", w->dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        unsigned long long seq, first;
        char tail[8];
        if (strlen(de->d_name) != 37 ||
            sscanf(de->d_name, "%16llx-%16llx%5s", &seq, &first, tail) != 3 || strcmp(tail, ".wal") != 0)
            continue;
        wal_segment_t *s = segs_push(w);
        if (!s) {
            closedir(d);
            snprintf(err, errlen, "wal: out of memory");
            return -1;
        }
        s->seq = seq;
        s->first_index = first;
    }
    closedir(d);
    if (w->n_segs > 1) qsort(w->segs, w->n_segs, sizeof(*w->segs), cmp_seq);
    for (size_t i = 1; i < w->n_segs; i++) {
        if (w->segs[i].seq != w->segs[i - 1].seq + 1) {
            snprintf(err, errlen, "wal: segment %llu missing (have %llu and %llu)",
                     (unsigned long long)(w->segs[i - 1].seq + 1),
                     (unsigned long long)w->segs[i - 1].seq, (unsigned long long)w->segs[i].seq);
            return -1;
        }
    }
    return 0;
}

/* Later segments after a corrupt record cannot be trusted to continue the
 * log: keep them for inspection under another name. */
static int set_aside(wal_t *w, size_t from, char *err, size_t errlen) {
    for (size_t i = from; i < w->n_segs; i++) {
        char name[64], broken[80];
        segment_name(name, sizeof(name), w->segs[i].seq, w->segs[i].first_index);
        snprintf(broken, sizeof(broken), "%s.broken", name);
        if (renameat(w->dir_fd, name, w->dir_fd, broken) != 0) {
            snprintf(err, errlen, "wal: rename %s: %s", name, strerror(errno));
            return -1;
        }
        fprintf(stderr, "wal: %s follows a corrupt record; set aside as %s\n", name, broken);
    }
    w->n_segs = from;
    return fsync(w->dir_fd);
}

static int replay_all(wal_t *w, wal_recovered_t *rec, char *err, size_t errlen) {
    replay_t rp = { .rec = rec };
    for (size_t i = 0; i < w->n_segs; i++) {
        wal_segment_t *seg = &w->segs[i];
        int fd = open_segment(w, seg, O_RDWR);
        uint8_t *img = NULL;
        size_t size = 0;
        if (fd < 0 || read_file(fd, &img, &size) != 0) {
            snprintf(err, errlen, "wal: read segment %llu: %s", (unsigned long long)seg->seq, strerror(errno));
            if (fd >= 0) close(fd);
            return -1;
        }
        uint64_t end = 0;
        int rc = replay_segment(&rp, seg, img, size, i == 0, &end, err, errlen);
        free(img);
        if (rc < 0) {
            close(fd);
            return -1;
        }
        seg->size = end;
        int last = (i + 1 == w->n_segs);
        if (rc == 0 || last) {
            if (rc == 0) {
                rec->tail_cut = 1;
                fprintf(stderr, "wal: segment %llu: torn or corrupt record at offset %llu; cut there\n",
                        (unsigned long long)seg->seq, (unsigned long long)end);
            }
            if (end < size && cut_segment(w, fd, end) != 0) {
                snprintf(err, errlen, "wal: cut segment %llu: %s", (unsigned long long)seg->seq, strerror(errno));
                close(fd);
                return -1;
            }
            if (!last) {
                rec->broken_segments = w->n_segs - i - 1;
                if (set_aside(w, i + 1, err, errlen) != 0) {
                    close(fd);
                    return -1;
                }
            }
            w->fd = fd;
            break;
        }
        close(fd);
    }
    return 0;
}

/* ---------------------------------------------------------------- open/close */

static int wal_init_dir(wal_t *w, const char *dir, char *err, size_t errlen) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "wal: mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    w->dir = strdup(dir);
    w->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!w->dir || w->dir_fd < 0) {
        snprintf(err, errlen, "wal: open %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int wal_open(const char *dir, size_t segment_bytes, wal_t **out, wal_recovered_t *rec,
             char *err, size_t errlen) {
    memset(rec, 0, sizeof(*rec));
    *out = NULL;
    wal_t *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "wal: out of memory");
        return -1;
    }
    w->fd = -1;
    w->dir_fd = -1;
    w->seg_bytes = segment_bytes ? segment_bytes : WAL_DEFAULT_SEGMENT_BYTES;
    if (wal_init_dir(w, dir, err, errlen) != 0 || list_segments(w, err, errlen) != 0 ||
        replay_all(w, rec, err, errlen) != 0)
        goto fail;
    w->hs = rec->hard_state;
    w->last_index = rec->base_index + rec->n_ents;
    w->last_term = rec->n_ents ? rec->ents[rec->n_ents - 1].term : rec->base_term;
    if (w->n_segs == 0 && segment_create(w) != 0) {
        snprintf(err, errlen, "%s", w->error);
        goto fail;
    }
    *out = w;
    return 0;
fail:
    wal_recovered_free(rec);
    wal_close(w);
    return -1;
}

void wal_recovered_free(wal_recovered_t *rec) {
    rec_drop_from(rec, 0);
    free(rec->ents);
    rec->ents = NULL;
}

void wal_close(wal_t *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->dir_fd >= 0) close(w->dir_fd);
    free(w->dir);
    free(w->segs);
    free(w->buf);
    free(w);
}

/* ---------------------------------------------------------------- append */

static uint8_t *buf_reserve(wal_t *w, size_t n) {
    if (w->buf_len + n > w->buf_cap) {
        size_t cap = w->buf_cap ? w->buf_cap : 64 * 1024;
        while (cap < w->buf_len + n) cap *= 2;
        uint8_t *b = realloc(w->buf, cap);
        if (!b) return NULL;
        w->buf = b;
        w->buf_cap = cap;
    }
    uint8_t *p = w->buf + w->buf_len;
    w->buf_len += n;
    return p;
}

int wal_append_entries(wal_t *w, const raft_entry_t *ents, size_t n) {
    if (w->failed) return -1;
    for (size_t i = 0; i < n; i++) {
        const raft_entry_t *e = &ents[i];
        assert(e->index > 0);
        if (e->len > MAX_RECORD_LEN - ENTRY_FIXED) return fail(w, "wal: entry %llu too large", (unsigned long long)e->index);
        uint8_t *dst = buf_reserve(w, REC_HEADER + ENTRY_FIXED + e->len);
        if (!dst) return fail(w, "wal: out of memory");
        uint8_t fixed[ENTRY_FIXED];
        put64(fixed, e->term);
        put64(fixed + 8, e->index);
        fixed[16] = e->type;
        record_encode(dst, REC_ENTRY, fixed, ENTRY_FIXED, e->data, e->len);
        if (e->index > w->buf_max_index) w->buf_max_index = e->index;
        w->buf_last_index = e->index;
        w->buf_last_term = e->term;
        w->buf_has_entries = 1;
        w->stats.records++;
    }
    return 0;
}

int wal_save_hard_state(wal_t *w, const raft_hard_state_t *hs) {
    if (w->failed) return -1;
    uint8_t *dst = buf_reserve(w, REC_HEADER + 24);
    if (!dst) return fail(w, "wal: out of memory");
    uint8_t p[24];
    put64(p, hs->term);
    put64(p + 8, hs->vote);
    put64(p + 16, hs->commit);
    record_encode(dst, REC_HARD_STATE, p, 24, NULL, 0);
    w->buf_hs = *hs;
    w->buf_has_hs = 1;
    w->stats.records++;
    return 0;
}

int wal_write(wal_t *w) {
    if (w->failed) return -1;
    if (w->buf_len == 0) return 0;
    wal_segment_t *s = active(w);
    if (s->size + w->buf_len > w->seg_bytes && s->size > SEGMENT_HEAD_BYTES) {
        if (segment_create(w) != 0) return -1;
        s = active(w);
    }
    if (write_all(w->fd, w->buf, w->buf_len, s->size) != 0)
        return fail(w, "wal: write segment %llu: %s", (unsigned long long)s->seq, strerror(errno));
    s->size += w->buf_len;
    w->unsynced = 1;
    if (w->buf_max_index > s->max_index) s->max_index = w->buf_max_index;
    if (w->buf_has_entries) {
        w->last_index = w->buf_last_index;
        w->last_term = w->buf_last_term;
    }
    if (w->buf_has_hs) w->hs = w->buf_hs;
    w->stats.bytes_written += w->buf_len;
    w->buf_len = 0;
    w->buf_max_index = 0;
    w->buf_has_entries = 0;
    w->buf_has_hs = 0;
    return 0;
}

int wal_sync(wal_t *w) {
    if (wal_write(w) != 0) return -1;
    if (fdatasync(w->fd) != 0) return fail(w, "wal: fdatasync: %s", strerror(errno));
    w->unsynced = 0;
    w->stats.syncs++;
    return 0;
}

/* ---------------------------------------------------------------- release */

int wal_release_to(wal_t *w, uint64_t index) {
    if (w->failed) return -1;
    size_t drop = 0;
    while (drop + 1 < w->n_segs && w->segs[drop].max_index <= index) drop++;
    if (drop == 0) return 0;
    for (size_t i = 0; i < drop; i++) {
        char name[64];
        segment_name(name, sizeof(name), w->segs[i].seq, w->segs[i].first_index);
        if (unlinkat(w->dir_fd, name, 0) != 0) return fail(w, "wal: unlink %s: %s", name, strerror(errno));
    }
    memmove(w->segs, w->segs + drop, (w->n_segs - drop) * sizeof(*w->segs));
    w->n_segs -= drop;
    if (fsync(w->dir_fd) != 0) return fail(w, "wal: fsync dir: %s", strerror(errno));
    return (int)drop;
}

void wal_get_stats(const wal_t *w, wal_stats_t *out) {
    *out = w->stats;
    out->segments = w->n_segs;
    out->live_bytes = 0;
    for (size_t i = 0; i < w->n_segs; i++) out->live_bytes += w->segs[i].size;
    out->last_index = w->last_index;
}
