/*
 * wal.c: segment files, record encoding, replay (torn tail of the last
 * segment cut, damage anywhere else refused), group commit, segment sealing
 * and release (see wal.h for the format). Owns the segment
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "latency_hist.h"

enum { REC_ENTRY = 1, REC_HARD_STATE = 2, REC_BASE = 3, REC_SNAPSHOT = 4 };
#define REC_HEADER 9u
#define ENTRY_FIXED 17u /* term, index, type */
#define MAX_RECORD_LEN (1u << 30)
#define SEGMENT_HEAD_BYTES (2 * REC_HEADER + 16 + 24) /* BASE + HARD_STATE (+ SNAPSHOT, if any) */
#define BUF_KEEP (1u << 20) /* an encode buffer grown past this by a burst is freed after its write */
#define SNAP_FIXED 24u      /* index, term, u32 n_voters, u32 n_learners */
#define SNAP_MAX (SNAP_FIXED + 8u * RAFT_MAX_MEMBERS)

typedef struct wal_segment {
    uint64_t seq, first_index;
    uint64_t max_index; /* highest entry index in it, 0 if none */
    uint64_t size;      /* bytes of valid records (the write offset) */
    uint64_t head_len;  /* bytes of its head records (segments created by this process) */
} wal_segment_t;

struct wal {
    char *dir;
    int dir_fd;
    int fd; /* active (last) segment */
    size_t seg_bytes;
    wal_segment_t *segs;
    size_t n_segs, cap_segs;

    uint8_t *buf;
    size_t buf_len, buf_cap;
    uint64_t buf_max_index;                 /* highest entry index in buf, 0 if none */
    uint64_t buf_last_index, buf_last_term; /* log end after buf (valid if buf has entries) */
    int buf_has_entries;
    raft_hard_state_t buf_hs;
    int buf_has_hs;
    uint8_t buf_snap[SNAP_MAX]; /* payload of the last SNAPSHOT record in buf */
    size_t buf_snap_len;        /* 0: none in buf */

    uint64_t last_index, last_term; /* log end as written */
    raft_hard_state_t hs;           /* last hard state written */
    uint8_t snap[SNAP_MAX];         /* payload of the last SNAPSHOT record written */
    size_t snap_len;                /* 0: none (repeated at the head of every new segment) */
    int unsynced;                   /* written to the active segment, not yet synced */
    int failed;
    char error[256];
    wal_stats_t stats;
    lat_hist_t fsync_hist;        /* every fdatasync of a segment (wal_disk_stats) */
    _Atomic uint64_t write_bytes; /* = stats.bytes_written, for other threads */
};

/* fdatasync of the active segment, its duration in fsync_hist. */
static int timed_fdatasync(wal_t *w) {
    uint64_t t0 = lat_hist_now_ns();
    int rc = fdatasync(w->fd);
    lat_hist_since(&w->fsync_hist, t0);
    return rc;
}

void wal_disk_stats(const wal_t *w, wal_disk_stats_t *out) {
    lat_hist_read(&w->fsync_hist, &out->fsync);
    out->write_bytes = atomic_load_explicit(&w->write_bytes, memory_order_relaxed);
}

static void count_written(wal_t *w, size_t n) {
    w->stats.bytes_written += n;
    atomic_fetch_add_explicit(&w->write_bytes, n, memory_order_relaxed);
}

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
    uint32_t c = crc32c(0, rec, 4);             /* len */
    return crc32c(c, rec + 8, 1 + (size_t)len); /* kind + payload */
}

/* Encodes one record at dst (REC_HEADER + len bytes); payload parts are
 * concatenated. */
static void record_encode(uint8_t *dst, uint8_t kind, const uint8_t *p1, size_t n1, const uint8_t *p2,
                          size_t n2) {
    uint32_t len = (uint32_t)(n1 + n2);
    put32(dst, len);
    dst[8] = kind;
    memcpy(dst + REC_HEADER, p1, n1);
    if (n2) memcpy(dst + REC_HEADER + n1, p2, n2);
    put32(dst + 4, record_crc(dst, len));
}

/* SNAPSHOT payload: index, term, u32 n_voters, u32 n_learners, the ids. */
static size_t snapshot_encode(const raft_snapshot_meta_t *meta, uint8_t *p) {
    put64(p, meta->index);
    put64(p + 8, meta->term);
    put32(p + 16, (uint32_t)meta->n_voters);
    put32(p + 20, (uint32_t)meta->n_learners);
    for (size_t i = 0; i < meta->n_voters; i++) put64(p + SNAP_FIXED + 8 * i, meta->voters[i]);
    for (size_t i = 0; i < meta->n_learners; i++)
        put64(p + SNAP_FIXED + 8 * (meta->n_voters + i), meta->learners[i]);
    return SNAP_FIXED + 8 * (meta->n_voters + meta->n_learners);
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
    errno = rc; /* posix_fallocate returns the error instead of setting errno */
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

/* Seals the active segment: everything written to it is synced before a
 * newer segment exists, so a sealed segment never has a torn tail and replay
 * may treat any bad record in it as damage. */
static int segment_seal(wal_t *w) {
    if (w->fd < 0 || !w->unsynced) return 0;
    if (timed_fdatasync(w) != 0) return fail(w, "wal: fdatasync before rollover: %s", strerror(errno));
    w->unsynced = 0;
    w->stats.syncs++;
    return 0;
}

/* Writes a new segment's head (BASE, the hard state and the last snapshot
 * record, if any) under a temporary name, syncs it, then renames it into
 * place and syncs the directory: a segment under its real name always has
 * its head. Returns the fd (head bytes in *head_len), or -1 (w failed). */
static int segment_write_new(wal_t *w, const wal_segment_t *s, size_t *head_len) {
    char name[64], tmpname[72];
    segment_name(name, sizeof(name), s->seq, s->first_index);
    snprintf(tmpname, sizeof(tmpname), "%s.tmp", name);
    struct stat st;
    if (fstatat(w->dir_fd, name, &st, 0) == 0) return fail(w, "wal: segment %s already exists", name);
    int fd = openat(w->dir_fd, tmpname, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail(w, "wal: create %s: %s", tmpname, strerror(errno));
    uint8_t head[SEGMENT_HEAD_BYTES + REC_HEADER + SNAP_MAX], p[24];
    put64(p, w->last_index);
    put64(p + 8, w->last_term);
    record_encode(head, REC_BASE, p, 16, NULL, 0);
    put64(p, w->hs.term);
    put64(p + 8, w->hs.vote);
    put64(p + 16, w->hs.commit);
    record_encode(head + REC_HEADER + 16, REC_HARD_STATE, p, 24, NULL, 0);
    size_t len = SEGMENT_HEAD_BYTES;
    if (w->snap_len) {
        record_encode(head + len, REC_SNAPSHOT, w->snap, w->snap_len, NULL, 0);
        len += REC_HEADER + w->snap_len;
    }
    if (preallocate(fd, w->seg_bytes) != 0 || write_all(fd, head, len, 0) != 0 || fdatasync(fd) != 0 ||
        renameat(w->dir_fd, tmpname, w->dir_fd, name) != 0 || fsync(w->dir_fd) != 0) {
        int e = errno;
        close(fd);
        return fail(w, "wal: init segment %s: %s", name, strerror(e));
    }
    *head_len = len;
    return fd;
}

/* Creates the next segment (after sealing the active one) and makes it the
 * active one. */
static int segment_create(wal_t *w) {
    uint64_t seq = w->n_segs ? active(w)->seq + 1 : 1;
    wal_segment_t tmp = {.seq = seq, .first_index = w->last_index + 1};
    if (segment_seal(w) != 0) return -1;
    size_t head_len = 0;
    int fd = segment_write_new(w, &tmp, &head_len);
    if (fd < 0) return -1;
    wal_segment_t *s = segs_push(w);
    if (!s) {
        close(fd);
        return fail(w, "wal: out of memory");
    }
    *s = tmp;
    s->size = head_len;
    s->head_len = head_len;
    if (w->fd >= 0) close(w->fd);
    w->fd = fd;
    count_written(w, head_len);
    return 0;
}

/* ---------------------------------------------------------------- replay */

typedef struct replay {
    wal_recovered_t *rec;
    size_t cap;
    uint64_t no_data_to; /* entries up to it keep no data (wal_open_from) */
} replay_t;

static void rec_drop_from(wal_recovered_t *rec, size_t keep) {
    while (rec->n_ents > keep) free((void *)rec->ents[--rec->n_ents].data);
}

/* Applies one decoded entry to the recovered log. Returns 0 or -1 (gap). */
static int replay_entry(replay_t *rp, const raft_entry_t *e, char *err, size_t errlen) {
    wal_recovered_t *rec = rp->rec;
    uint64_t last = rec->base_index + rec->n_ents;
    if (e->index > last + 1) {
        snprintf(err, errlen, "wal: gap in log: entry %llu after %llu", (unsigned long long)e->index,
                 (unsigned long long)last);
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
                 (unsigned long long)e->index, (unsigned long long)e->term, (unsigned long long)prev_term);
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
    if (e->index <= rp->no_data_to && e->type != RAFT_ENTRY_CONF_CHANGE) dst->len = 0; /* applied already */
    if (dst->len) {
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

/* Decodes a SNAPSHOT payload into rec->snapshot (ids in rec->snap_ids).
 * 0, or -1 if malformed. */
static int snapshot_decode(wal_recovered_t *rec, const uint8_t *p, uint32_t len) {
    if (len < SNAP_FIXED) return -1;
    uint32_t nv = get32(p + 16), nl = get32(p + 20);
    if (nv > RAFT_MAX_MEMBERS || nl > RAFT_MAX_MEMBERS - nv || len != SNAP_FIXED + 8u * (nv + nl)) return -1;
    for (uint32_t i = 0; i < nv + nl; i++) rec->snap_ids[i] = get64(p + SNAP_FIXED + 8 * i);
    rec->snapshot = (raft_snapshot_meta_t){.index = get64(p),
                                           .term = get64(p + 8),
                                           .voters = rec->snap_ids,
                                           .n_voters = nv,
                                           .learners = rec->snap_ids + nv,
                                           .n_learners = nl};
    rec->has_snapshot = 1;
    return 0;
}

/* A snapshot record at (index, term), as the Raft core treats one: if the
 * log holds that entry, the entries up to it are compacted away and the
 * rest kept; otherwise the log restarts after it (a snapshot installed from
 * the leader). A record older than the log's start (repeated in a segment
 * head after its entries were released) changes nothing. */
static int replay_snapshot(replay_t *rp, const uint8_t *p, uint32_t len) {
    wal_recovered_t *rec = rp->rec;
    if (len < SNAP_FIXED || get64(p) == 0 || get64(p) == UINT64_MAX) return -1; /* no log position */
    uint64_t index = get64(p), term = get64(p + 8);
    if (index < rec->base_index) return 0;
    if (snapshot_decode(rec, p, len) != 0) return -1;
    uint64_t last = rec->base_index + rec->n_ents;
    uint64_t t = index == rec->base_index ? rec->base_term
                 : index <= last          ? rec->ents[index - rec->base_index - 1].term
                                          : 0;
    if (index <= last && t == term) {
        size_t drop = (size_t)(index - rec->base_index);
        for (size_t i = 0; i < drop; i++) free((void *)rec->ents[i].data);
        if (rec->n_ents > drop)
            memmove(rec->ents, rec->ents + drop, (rec->n_ents - drop) * sizeof(*rec->ents));
        rec->n_ents -= drop;
    } else {
        rec_drop_from(rec, 0);
    }
    rec->base_index = index;
    rec->base_term = term;
    return 0;
}

/* One segment image being replayed. zero_from is where the file's trailing
 * run of zero bytes begins (preallocated space never written). */
typedef struct extent {
    size_t from, to;
} extent_t;

typedef struct seg_image {
    const uint8_t *img;
    size_t size, zero_from;
    const char *path;
    int last;       /* the last segment: only its tail may be torn */
    extent_t *exts; /* the data extents read (read_file); the rest is holes */
    size_t n_exts;
} seg_image_t;

#define SECTOR 512u

/* The end of the last non-zero byte of img[from, to), or from if none. */
static size_t last_nonzero_end(const uint8_t *img, size_t from, size_t to) {
    size_t i = to;
    while (i >= from + 8) {
        uint64_t v;
        memcpy(&v, img + i - 8, 8);
        if (v) break;
        i -= 8;
    }
    while (i > from && img[i - 1] == 0) i--;
    return i;
}

/* Where the trailing run of zeros begins: holes are zeros, so only the
 * data extents are looked at, last first. */
static size_t zero_tail_start(const seg_image_t *si) {
    for (size_t i = si->n_exts; i-- > 0;) {
        size_t end = last_nonzero_end(si->img, si->exts[i].from, si->exts[i].to);
        if (end > si->exts[i].from) return end;
    }
    return 0;
}

/* etcd's isTornEntry, plus the byte-prefix case: the bad record at off whose
 * bytes run to rec_end (may be past the file) is a torn write if it runs past
 * the end of the file, if its tail lies in the zero run that ends the file
 * (a write cut short, nothing written after it), or if one of its 512-byte
 * file sectors after the length field is entirely zero (a sector never
 * written). A torn record can only be the last thing written: only the last
 * segment may have one. */
static int is_torn(const seg_image_t *si, size_t off, uint64_t rec_end) {
    if (!si->last) return 0;
    if (rec_end > si->size) return 1;
    if (si->zero_from < rec_end) return 1;
    for (size_t p = off + 4; p < rec_end;) {
        size_t chunk_end = (p / SECTOR + 1) * SECTOR;
        if (chunk_end > rec_end) chunk_end = (size_t)rec_end;
        size_t i = p;
        while (i < chunk_end && si->img[i] == 0) i++;
        if (i == chunk_end) return 1;
        p = chunk_end;
    }
    return 0;
}

/* An all-zero header at off followed by data: a torn write (the batch's
 * first sector never written) only in the last segment and only if the rest
 * of that sector is zero too. */
static int zero_sector_from(const seg_image_t *si, size_t off) {
    if (!si->last) return 0;
    size_t end = (off / SECTOR + 1) * SECTOR;
    if (end < off + REC_HEADER) end = off + REC_HEADER;
    if (end > si->size) end = si->size;
    for (size_t i = off; i < end; i++)
        if (si->img[i]) return 0;
    return 1;
}

/* Last segment only: the bytes from off to the end of its sector are zero
 * (that part of the sector never written). */
static int zero_to_sector_end(const seg_image_t *si, size_t off) {
    if (!si->last) return 0;
    size_t end = (off / SECTOR + 1) * SECTOR;
    if (end > si->size) end = si->size;
    for (size_t i = off; i < end; i++)
        if (si->img[i]) return 0;
    return 1;
}

/* A damaged record that is not a torn tail: refuse, naming file and offset. */
static int damaged(const seg_image_t *si, size_t off, const char *what, char *err, size_t errlen) {
    snprintf(err, errlen,
             "wal: %s in %s at offset %zu (%s); refusing to start: the log is damaged "
             "before its end, so acknowledged entries could be lost",
             what, si->path, off, si->last ? "not a torn write" : "sealed segment");
    return -1;
}

/* A record that failed to decode at off: 0 (torn tail: cut there) or -1. */
static int bad_record(const seg_image_t *si, size_t off, uint64_t rec_end, const char *what, char *err,
                      size_t errlen) {
    return is_torn(si, off, rec_end) ? 0 : damaged(si, off, what, err, errlen);
}

/* Applies one decoded record (crc checked). Returns 0, or -1 with err. */
static int replay_record(replay_t *rp, wal_segment_t *seg, const seg_image_t *si, size_t off,
                         int first_segment, int *seen_base, char *err, size_t errlen) {
    wal_recovered_t *rec = rp->rec;
    uint32_t len = get32(si->img + off);
    const uint8_t *p = si->img + off + REC_HEADER;
    uint8_t kind = si->img[off + 8];
    if (kind == REC_BASE && len == 16) {
        uint64_t bi = get64(p), bt = get64(p + 8);
        if (first_segment && !*seen_base && rec->n_ents == 0) {
            rec->base_index = bi;
            rec->base_term = bt;
        } else if (bi > rec->base_index + rec->n_ents) {
            snprintf(err, errlen, "wal: gap in log: %s starts after %llu but the log ends at %llu", si->path,
                     (unsigned long long)bi, (unsigned long long)(rec->base_index + rec->n_ents));
            return -1;
        }
        *seen_base = 1;
    } else if (kind == REC_SNAPSHOT && replay_snapshot(rp, p, len) == 0) {
        /* applied above */
    } else if (kind == REC_HARD_STATE && len == 24) {
        rec->hard_state.term = get64(p);
        rec->hard_state.vote = get64(p + 8);
        rec->hard_state.commit = get64(p + 16);
    } else if (kind == REC_ENTRY && len >= ENTRY_FIXED && get64(p + 8) != 0) {
        raft_entry_t e = {.term = get64(p),
                          .index = get64(p + 8),
                          .type = p[16],
                          .data = p + ENTRY_FIXED,
                          .len = len - ENTRY_FIXED};
        if (replay_entry(rp, &e, err, errlen) != 0) return -1;
        if (e.index > seg->max_index) seg->max_index = e.index;
    } else {
        /* checksummed, so written like this: never a torn write */
        char what[64];
        snprintf(what, sizeof what, "invalid record (kind %u, %u bytes)", kind, len);
        return damaged(si, off, what, err, errlen);
    }
    return 0;
}

/* Decodes the records of one segment image. Sets *valid_end to the end of
 * the last good record. Returns 1 if the records ended cleanly (an all-zero
 * header or the end of the file), 0 if the last segment ends in a torn write
 * (cut it at *valid_end), -1 on damage or another fatal error (err says). */
static int replay_segment(replay_t *rp, wal_segment_t *seg, const seg_image_t *si, int first_segment,
                          uint64_t *valid_end, char *err, size_t errlen) {
    const uint8_t *img = si->img;
    size_t size = si->size, off = 0;
    int seen_base = 0;
    for (;;) {
        *valid_end = off;
        if (off == size) return 1;
        if (si->zero_from <= off) return 1; /* the rest is zero: the normal end */
        if (size - off < REC_HEADER) return bad_record(si, off, size + 1, "unexpected EOF", err, errlen);
        uint32_t len = get32(img + off);
        if (len == 0 && get32(img + off + 4) == 0 && img[off + 8] == 0) {
            /* an all-zero header ends the records; anything non-zero after it
             * is a torn write in the last segment, damage in a sealed one */
            return zero_sector_from(si, off) ? 0
                                             : damaged(si, off, "data after the end of records", err, errlen);
        }
        if (len == 0) {
            /* No record has an empty payload: a zero length field is bytes
             * never written. In the last segment, with the rest of its
             * sector zero too, that is a write cut short where the header
             * straddles a page the disk did not write and one it did (seen
             * in e2e/test_power_loss: the first 4 bytes of a header at the
             * end of a reverted page, its checksum on the next, kept page);
             * etcd's decoder stops at a zero length as well. */
            return zero_to_sector_end(si, off) ? 0 : damaged(si, off, "zero record length", err, errlen);
        }
        if (len > MAX_RECORD_LEN)
            return bad_record(si, off, off + REC_HEADER, "record length out of range", err, errlen);
        uint64_t rec_end = (uint64_t)off + REC_HEADER + len;
        if (rec_end > size) return bad_record(si, off, rec_end, "unexpected EOF", err, errlen);
        if (get32(img + off + 4) != record_crc(img + off, len))
            return bad_record(si, off, rec_end, "crc mismatch", err, errlen);
        if (replay_record(rp, seg, si, off, first_segment, &seen_base, err, errlen) != 0) return -1;
        off = (size_t)rec_end;
    }
}

static int pread_all(int fd, uint8_t *b, size_t n, size_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, b + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

/* The next data extent at or after off: [*from, *to), 0; or 1 when only a
 * hole is left. Where the file system cannot tell, everything is data. */
static int next_extent(int fd, size_t off, size_t size, size_t *from, size_t *to) {
    off_t d = lseek(fd, (off_t)off, SEEK_DATA);
    if (d < 0 && errno == ENXIO) return 1;
    off_t h = d < 0 ? -1 : lseek(fd, d, SEEK_HOLE);
    if (d < 0 || h < 0 || (size_t)h > size || h < d) {
        *from = off;
        *to = size;
    } else {
        *from = (size_t)d;
        *to = (size_t)h;
    }
    return *from >= *to ? 1 : 0;
}

/* A zeroed image of n bytes: an anonymous mapping, zero until written, with
 * huge pages where the kernel allows (20 MiB read in ten faults, not 5,000). */
static uint8_t *image_alloc(size_t n) {
    void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n ? n : 1, MADV_HUGEPAGE); /* a hint: without it, small pages */
#endif
    return p;
}

static void image_free(uint8_t *img, size_t n) {
    if (img) munmap(img, n ? n : 1);
}

/* The whole file as an image, but only its data extents are read: holes
 * (a segment's preallocated, never written space, which SEEK_HOLE reports
 * as such on ext4 and xfs) are zeros by definition and stay untouched in
 * the image (no memory behind them unless looked at). Up to a segment of
 * zeros per start are neither read nor copied. */
static int read_file(int fd, seg_image_t *si, uint8_t **out) {
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    size_t n = (size_t)st.st_size, cap = 0;
    uint8_t *b = image_alloc(n);
    if (!b) return -1;
    for (size_t off = 0, from, to; off < n && next_extent(fd, off, n, &from, &to) == 0; off = to) {
        if (si->n_exts == cap) {
            cap = cap ? 2 * cap : 4;
            extent_t *e = realloc(si->exts, cap * sizeof(*e));
            if (!e) goto fail;
            si->exts = e;
        }
        si->exts[si->n_exts++] = (extent_t){from, to};
        if (pread_all(fd, b + from, to - from, from) != 0) goto fail;
    }
    *out = b;
    si->img = b;
    si->size = n;
    return 0;
fail:
    image_free(b, n);
    free(si->exts);
    si->exts = NULL;
    return -1;
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
        size_t nl = strlen(de->d_name);
        if (nl == 41 && strcmp(de->d_name + 37, ".tmp") == 0) {
            unlinkat(w->dir_fd, de->d_name, 0); /* a segment whose creation did not finish */
            continue;
        }
        if (strlen(de->d_name) != 37 || sscanf(de->d_name, "%16llx-%16llx%5s", &seq, &first, tail) != 3 ||
            strcmp(tail, ".wal") != 0)
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
                     (unsigned long long)(w->segs[i - 1].seq + 1), (unsigned long long)w->segs[i - 1].seq,
                     (unsigned long long)w->segs[i].seq);
            return -1;
        }
    }
    return 0;
}

/* Replays segment i (opened as fd). Returns 1 clean, 0 torn tail (*end
 * is where to cut), -1 with err. */
static int replay_one(wal_t *w, replay_t *rp, size_t i, int fd, uint64_t *end, char *err, size_t errlen) {
    wal_segment_t *seg = &w->segs[i];
    char name[64], path[4200];
    segment_name(name, sizeof(name), seg->seq, seg->first_index);
    snprintf(path, sizeof(path), "%s/%s", w->dir, name);
    uint8_t *img = NULL;
    seg_image_t si = {.path = path, .last = i + 1 == w->n_segs};
    if (read_file(fd, &si, &img) != 0) {
        snprintf(err, errlen, "wal: read %s: %s", path, strerror(errno));
        return -1;
    }
    si.zero_from = zero_tail_start(&si);
    int rc = replay_segment(rp, seg, &si, i == 0, end, err, errlen);
    image_free(img, si.size);
    free(si.exts);
    if (rc == 0)
        fprintf(stderr,
                "wal: %s: torn write at offset %llu (the last records were never synced); cut there\n", path,
                (unsigned long long)*end);
    return rc;
}

/* Replays every segment in order. Damage anywhere refuses to open; only the
 * last segment's tail may be a torn write, and it is cut (truncated and
 * preallocated again, so stale bytes can never be read later). */
static int replay_all(wal_t *w, wal_recovered_t *rec, uint64_t no_data_to, char *err, size_t errlen) {
    replay_t rp = {.rec = rec, .no_data_to = no_data_to};
    for (size_t i = 0; i < w->n_segs; i++) {
        wal_segment_t *seg = &w->segs[i];
        int fd = open_segment(w, seg, O_RDWR);
        if (fd < 0) {
            snprintf(err, errlen, "wal: open segment %llu: %s", (unsigned long long)seg->seq,
                     strerror(errno));
            return -1;
        }
        uint64_t end = 0;
        int rc = replay_one(w, &rp, i, fd, &end, err, errlen);
        if (rc < 0) {
            close(fd);
            return -1;
        }
        seg->size = end;
        if (i + 1 < w->n_segs) {
            close(fd);
            continue;
        }
        /* a clean end is followed only by zeros; a torn one is cut */
        if (rc == 0) rec->tail_cut = 1;
        if (rc == 0 && cut_segment(w, fd, end) != 0) {
            snprintf(err, errlen, "wal: cut segment %llu: %s", (unsigned long long)seg->seq, strerror(errno));
            close(fd);
            return -1;
        }
        w->fd = fd;
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

int wal_open(const char *dir, size_t segment_bytes, wal_t **out, wal_recovered_t *rec, char *err,
             size_t errlen) {
    return wal_open_from(dir, segment_bytes, 0, out, rec, err, errlen);
}

int wal_open_from(const char *dir, size_t segment_bytes, uint64_t no_data_to, wal_t **out,
                  wal_recovered_t *rec, char *err, size_t errlen) {
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
        replay_all(w, rec, no_data_to, err, errlen) != 0)
        goto fail;
    w->hs = rec->hard_state;
    if (rec->has_snapshot) w->snap_len = snapshot_encode(&rec->snapshot, w->snap);
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
        if (e->len > MAX_RECORD_LEN - ENTRY_FIXED)
            return fail(w, "wal: entry %llu too large", (unsigned long long)e->index);
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

int wal_save_snapshot(wal_t *w, const raft_snapshot_meta_t *meta, int install) {
    if (w->failed) return -1;
    if (meta->index == 0 || meta->n_voters > RAFT_MAX_MEMBERS ||
        meta->n_learners > RAFT_MAX_MEMBERS - meta->n_voters)
        return fail(w, "wal: invalid snapshot record");
    w->buf_snap_len = snapshot_encode(meta, w->buf_snap);
    uint8_t *dst = buf_reserve(w, REC_HEADER + w->buf_snap_len);
    if (!dst) return fail(w, "wal: out of memory");
    record_encode(dst, REC_SNAPSHOT, w->buf_snap, w->buf_snap_len, NULL, 0);
    if (install) { /* the log restarts after it */
        w->buf_last_index = meta->index;
        w->buf_last_term = meta->term;
        w->buf_has_entries = 1;
    }
    w->stats.records++;
    return 0;
}

int wal_write(wal_t *w) {
    if (w->failed) return -1;
    if (w->buf_len == 0) return 0;
    wal_segment_t *s = active(w);
    if (s->size + w->buf_len > w->seg_bytes && s->size > (s->head_len ? s->head_len : SEGMENT_HEAD_BYTES)) {
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
    if (w->buf_snap_len) {
        memcpy(w->snap, w->buf_snap, w->buf_snap_len);
        w->snap_len = w->buf_snap_len;
        w->buf_snap_len = 0;
    }
    count_written(w, w->buf_len);
    w->buf_len = 0;
    if (w->buf_cap > BUF_KEEP) {
        free(w->buf);
        w->buf = NULL;
        w->buf_cap = 0;
    }
    w->buf_max_index = 0;
    w->buf_has_entries = 0;
    w->buf_has_hs = 0;
    return 0;
}

int wal_sync(wal_t *w) {
    if (wal_write(w) != 0) return -1;
    if (timed_fdatasync(w) != 0) return fail(w, "wal: fdatasync: %s", strerror(errno));
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
