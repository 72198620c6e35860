/*
 * bbolt.c: bbolt's file format, the writer and the bounds-checked reader
 * (see bbolt.h). The one owner of the page layout here, little endian as
 * bbolt on amd64/arm64:
 *
 *   page header (16): id u64 | flags u16 (branch 0x01, leaf 0x02, meta 0x04,
 *                     freelist 0x10) | count u16 | overflow u32
 *   leaf element (16):   flags u32 (bucket 0x01) | pos u32 | ksize u32 | vsize u32
 *   branch element (16): pos u32 | ksize u32 | child pgid u64
 *     pos: from the element to its key (the value follows the key)
 *   meta (64, after the header of pages 0 and 1): magic 0xED0CDAED |
 *     version 2 | page size | flags | root bucket {pgid, sequence} |
 *     freelist pgid | high-water pgid | txid | FNV-1a 64 of the 56 bytes before
 *   bucket value: {root pgid u64, sequence u64}, root 0 = inline: a leaf
 *     page follows in the value
 *
 * Writer layout: pages 0-1 meta, then every bucket's tree bottom-up (leaves
 * in key order, each branch after its children), the root bucket's tree,
 * the freelist (empty). Each tree level keeps the node being filled; a full
 * node is written as a page and its first key goes to the level above.
 */
#include "bbolt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"

#define PAGE_HDR 16
#define ELEM_SIZE 16
#define META_OFF PAGE_HDR
#define META_SUM_LEN 56
#define BOLT_MAGIC 0xED0CDAEDu
#define BOLT_VERSION 2
#define FLAG_BRANCH 0x01
#define FLAG_LEAF 0x02
#define FLAG_META 0x04
#define FLAG_FREELIST 0x10
#define ELEM_BUCKET 0x01
#define BUCKET_HDR 16
#define MAX_KEY 32768

static void put_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int bbolt_fd_sink(void *ctx, uint64_t off, const void *buf, size_t len) {
    int fd = *(int *)ctx;
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

/* ======================= writer ======================= */

typedef struct elem {
    size_t koff, klen, voff, vlen; /* in the level's data buffer */
    uint32_t flags;
    uint64_t pgid; /* branch: the child */
} elem_t;

/* The node being filled at one tree level (0: leaves). */
typedef struct level {
    elem_t *e;
    size_t n, cap;
    uint8_t *data; /* keys and values */
    size_t len, data_cap;
    size_t bytes;     /* the page span so far: header + elements + data */
    uint64_t flushed; /* pages written at this level in this tree */
} level_t;

typedef struct bucket_ref {
    uint8_t *name;
    size_t len;
    uint64_t root;
} bucket_ref_t;

struct bbolt_writer {
    bbolt_write_fn write_at;
    void *ctx;
    uint64_t next_pgid;
    level_t lv[BBOLT_MAX_DEPTH];
    int nlv;
    int in_bucket;
    uint8_t *last; /* the previous key of the open bucket */
    size_t last_len, last_cap;
    int have_last;
    bucket_ref_t *buckets;
    size_t nb, cap_b;
    uint8_t *page; /* scratch for one page span */
    size_t page_cap;
};

bbolt_writer_t *bbolt_writer_new(bbolt_write_fn write_at, void *ctx) {
    bbolt_writer_t *w = calloc(1, sizeof(*w));
    if (!w) return NULL;
    w->write_at = write_at;
    w->ctx = ctx;
    w->next_pgid = 2; /* 0 and 1: meta */
    return w;
}

void bbolt_writer_free(bbolt_writer_t *w) {
    if (!w) return;
    for (int i = 0; i < BBOLT_MAX_DEPTH; i++) {
        free(w->lv[i].e);
        free(w->lv[i].data);
    }
    for (size_t i = 0; i < w->nb; i++) free(w->buckets[i].name);
    free(w->buckets);
    free(w->last);
    free(w->page);
    free(w);
}

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * size);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static uint8_t *page_buf(bbolt_writer_t *w, size_t len) {
    if (grow((void **)&w->page, &w->page_cap, len, 1) != 0) return NULL;
    memset(w->page, 0, len);
    return w->page;
}

/* Writes level L's node as one page span; *pgid gets its id. */
static int write_node(bbolt_writer_t *w, int L, uint64_t *pgid) {
    level_t *lv = &w->lv[L];
    size_t pages = (lv->bytes + BBOLT_PAGE_SIZE - 1) / BBOLT_PAGE_SIZE;
    if (pages == 0) pages = 1;
    size_t span = pages * BBOLT_PAGE_SIZE;
    uint8_t *p = page_buf(w, span);
    if (!p) return BBOLT_E_NOMEM;
    *pgid = w->next_pgid;
    put_le64(p, *pgid);
    put_le16(p + 8, L == 0 ? FLAG_LEAF : FLAG_BRANCH);
    put_le16(p + 10, (uint16_t)lv->n);
    put_le32(p + 12, (uint32_t)(pages - 1));
    size_t data = PAGE_HDR + lv->n * ELEM_SIZE;
    for (size_t i = 0; i < lv->n; i++) {
        const elem_t *e = &lv->e[i];
        uint8_t *el = p + PAGE_HDR + i * ELEM_SIZE;
        uint32_t pos = (uint32_t)(data - (size_t)(el - p));
        if (L == 0) {
            put_le32(el, e->flags);
            put_le32(el + 4, pos);
            put_le32(el + 8, (uint32_t)e->klen);
            put_le32(el + 12, (uint32_t)e->vlen);
        } else {
            put_le32(el, pos);
            put_le32(el + 4, (uint32_t)e->klen);
            put_le64(el + 8, e->pgid);
        }
        memcpy(p + data, lv->data + e->koff, e->klen);
        data += e->klen;
        if (L == 0 && e->vlen) {
            memcpy(p + data, lv->data + e->voff, e->vlen);
            data += e->vlen;
        }
    }
    if (w->write_at(w->ctx, *pgid * BBOLT_PAGE_SIZE, p, span) != 0) return BBOLT_E_IO;
    w->next_pgid += pages;
    lv->flushed++;
    return BBOLT_OK;
}

static void level_reset(level_t *lv) {
    lv->n = 0;
    lv->len = 0;
    lv->bytes = PAGE_HDR;
}

static int level_add(bbolt_writer_t *w, int L, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                     uint32_t flags, uint64_t child);

/* Writes level L's node and hands its first key to level L + 1. */
static int flush_level(bbolt_writer_t *w, int L) {
    level_t *lv = &w->lv[L];
    uint64_t pgid = 0;
    int rc = write_node(w, L, &pgid);
    if (rc != BBOLT_OK) return rc;
    if (L + 1 >= BBOLT_MAX_DEPTH) return BBOLT_E_ORDER;
    rc = level_add(w, L + 1, lv->data + lv->e[0].koff, lv->e[0].klen, NULL, 0, 0, pgid);
    level_reset(lv);
    return rc;
}

static int level_add(bbolt_writer_t *w, int L, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
                     uint32_t flags, uint64_t child) {
    if (L >= w->nlv) {
        w->nlv = L + 1;
        level_reset(&w->lv[L]);
        w->lv[L].flushed = 0;
    }
    level_t *lv = &w->lv[L];
    size_t add = ELEM_SIZE + kl + vl;
    if (lv->n > 0 && lv->bytes + add > BBOLT_PAGE_SIZE) {
        int rc = flush_level(w, L);
        if (rc != BBOLT_OK) return rc;
    }
    if (grow((void **)&lv->e, &lv->cap, lv->n + 1, sizeof(elem_t)) != 0 ||
        grow((void **)&lv->data, &lv->data_cap, lv->len + kl + vl, 1) != 0)
        return BBOLT_E_NOMEM;
    elem_t *e = &lv->e[lv->n++];
    e->koff = lv->len;
    e->klen = kl;
    memcpy(lv->data + lv->len, k, kl);
    lv->len += kl;
    e->voff = lv->len;
    e->vlen = vl;
    if (vl) memcpy(lv->data + lv->len, v, vl);
    lv->len += vl;
    e->flags = flags;
    e->pgid = child;
    lv->bytes += add;
    return BBOLT_OK;
}

/* Writes what is left of the tree, bottom-up; *root gets the top page. */
static int finish_tree(bbolt_writer_t *w, uint64_t *root) {
    if (w->nlv == 0) {
        w->nlv = 1;
        level_reset(&w->lv[0]);
        w->lv[0].flushed = 0;
    }
    int rc = BBOLT_OK;
    for (int L = 0;; L++) {
        if (w->lv[L].flushed == 0) {
            rc = write_node(w, L, root);
            break;
        }
        rc = flush_level(w, L);
        if (rc != BBOLT_OK) break;
    }
    w->nlv = 0;
    return rc;
}

int bbolt_bucket_begin(bbolt_writer_t *w, const uint8_t *name, size_t len) {
    if (w->in_bucket || len == 0 || len > MAX_KEY) return BBOLT_E_ORDER;
    for (size_t i = 0; i < w->nb; i++)
        if (bytes_cmp(w->buckets[i].name, w->buckets[i].len, name, len) == 0) return BBOLT_E_ORDER;
    if (grow((void **)&w->buckets, &w->cap_b, w->nb + 1, sizeof(bucket_ref_t)) != 0) return BBOLT_E_NOMEM;
    bucket_ref_t *b = &w->buckets[w->nb];
    b->name = malloc(len);
    if (!b->name) return BBOLT_E_NOMEM;
    memcpy(b->name, name, len);
    b->len = len;
    b->root = 0;
    w->nb++;
    w->in_bucket = 1;
    w->have_last = 0;
    w->nlv = 0;
    return BBOLT_OK;
}

int bbolt_put(bbolt_writer_t *w, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen) {
    if (!w->in_bucket || klen == 0 || klen > MAX_KEY || vlen > 0x7FFFFFFEu) return BBOLT_E_ORDER;
    if (w->have_last && bytes_cmp(w->last, w->last_len, key, klen) >= 0) return BBOLT_E_ORDER;
    if (grow((void **)&w->last, &w->last_cap, klen, 1) != 0) return BBOLT_E_NOMEM;
    memcpy(w->last, key, klen);
    w->last_len = klen;
    w->have_last = 1;
    return level_add(w, 0, key, klen, val, vlen, 0, 0);
}

int bbolt_bucket_end(bbolt_writer_t *w) {
    if (!w->in_bucket) return BBOLT_E_ORDER;
    w->in_bucket = 0;
    return finish_tree(w, &w->buckets[w->nb - 1].root);
}

static int cmp_bucket(const void *a, const void *b) {
    const bucket_ref_t *x = a, *y = b;
    return bytes_cmp(x->name, x->len, y->name, y->len);
}

static int write_meta(bbolt_writer_t *w, uint64_t id, uint64_t root, uint64_t freelist, uint64_t txid) {
    uint8_t *p = page_buf(w, BBOLT_PAGE_SIZE);
    if (!p) return BBOLT_E_NOMEM;
    put_le64(p, id);
    put_le16(p + 8, FLAG_META);
    uint8_t *m = p + META_OFF;
    put_le32(m, BOLT_MAGIC);
    put_le32(m + 4, BOLT_VERSION);
    put_le32(m + 8, BBOLT_PAGE_SIZE);
    put_le32(m + 12, 0);
    put_le64(m + 16, root);
    put_le64(m + 24, 0);
    put_le64(m + 32, freelist);
    put_le64(m + 40, w->next_pgid);
    put_le64(m + 48, txid);
    put_le64(m + 56, fnv1a64(m, META_SUM_LEN));
    return w->write_at(w->ctx, id * BBOLT_PAGE_SIZE, p, BBOLT_PAGE_SIZE) != 0 ? BBOLT_E_IO : BBOLT_OK;
}

int bbolt_writer_finish(bbolt_writer_t *w, uint64_t *size) {
    if (w->in_bucket) return BBOLT_E_ORDER;
    qsort(w->buckets, w->nb, sizeof(bucket_ref_t), cmp_bucket);
    w->nlv = 0;
    for (size_t i = 0; i < w->nb; i++) {
        uint8_t hdr[BUCKET_HDR];
        put_le64(hdr, w->buckets[i].root);
        put_le64(hdr + 8, 0);
        int rc = level_add(w, 0, w->buckets[i].name, w->buckets[i].len, hdr, sizeof hdr, ELEM_BUCKET, 0);
        if (rc != BBOLT_OK) return rc;
    }
    uint64_t root = 0;
    int rc = finish_tree(w, &root);
    if (rc != BBOLT_OK) return rc;
    uint64_t freelist = w->next_pgid++;
    uint8_t *p = page_buf(w, BBOLT_PAGE_SIZE);
    if (!p) return BBOLT_E_NOMEM;
    put_le64(p, freelist);
    put_le16(p + 8, FLAG_FREELIST);
    if (w->write_at(w->ctx, freelist * BBOLT_PAGE_SIZE, p, BBOLT_PAGE_SIZE) != 0) return BBOLT_E_IO;
    /* txid 2 on page 0, 1 on page 1 (bbolt: page id = txid % 2) */
    if ((rc = write_meta(w, 0, root, freelist, 2)) != BBOLT_OK) return rc;
    if ((rc = write_meta(w, 1, root, freelist, 1)) != BBOLT_OK) return rc;
    if (size) *size = w->next_pgid * BBOLT_PAGE_SIZE;
    return BBOLT_OK;
}

/* ======================= reader ======================= */

struct bbolt_reader {
    int fd;
    uint64_t size;
    uint32_t ps;
    uint64_t root, pgid, txid;
    uint64_t visits; /* pages read by the current walk */
};

uint64_t bbolt_reader_txid(const bbolt_reader_t *r) { return r->txid; }
uint64_t bbolt_reader_pages(const bbolt_reader_t *r) { return r->pgid; }
uint32_t bbolt_reader_page_size(const bbolt_reader_t *r) { return r->ps; }
void bbolt_reader_free(bbolt_reader_t *r) { free(r); }

static int pread_all(int fd, uint8_t *buf, size_t len, uint64_t off) {
    while (len) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return BBOLT_E_IO;
        if (n == 0) return BBOLT_E_CORRUPT; /* shorter than it said */
        buf += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return BBOLT_OK;
}

typedef struct meta_v {
    uint32_t ps;
    uint64_t root, freelist, pgid, txid;
} meta_v;

/* Reads and validates the meta at byte offset off. */
static int read_meta(bbolt_reader_t *r, uint64_t off, meta_v *mv) {
    uint8_t b[PAGE_HDR + 64];
    if (off + sizeof b > r->size) return BBOLT_E_CORRUPT;
    int rc = pread_all(r->fd, b, sizeof b, off);
    if (rc != BBOLT_OK) return rc;
    const uint8_t *m = b + META_OFF;
    if (!(get_le16(b + 8) & FLAG_META) || get_le32(m) != BOLT_MAGIC || get_le32(m + 4) != BOLT_VERSION)
        return BBOLT_E_CORRUPT;
    uint64_t sum = get_le64(m + 56);
    if (sum != 0 && sum != fnv1a64(m, META_SUM_LEN)) return BBOLT_E_CORRUPT;
    mv->ps = get_le32(m + 8);
    mv->root = get_le64(m + 16);
    mv->freelist = get_le64(m + 32);
    mv->pgid = get_le64(m + 40);
    mv->txid = get_le64(m + 48);
    if (mv->ps < 512 || mv->ps > 65536 || (mv->ps & (mv->ps - 1))) return BBOLT_E_CORRUPT;
    if (mv->pgid < 3 || mv->pgid > r->size / mv->ps) return BBOLT_E_CORRUPT;
    if (mv->root < 2 || mv->root >= mv->pgid) return BBOLT_E_CORRUPT;
    return BBOLT_OK;
}

int bbolt_reader_open(int fd, uint64_t size, bbolt_reader_t **out) {
    *out = NULL;
    bbolt_reader_t *r = calloc(1, sizeof(*r));
    if (!r) return BBOLT_E_NOMEM;
    r->fd = fd;
    r->size = size;
    meta_v a, b;
    int ra = read_meta(r, 0, &a);
    if (ra == BBOLT_E_IO) {
        free(r);
        return ra;
    }
    int rb = read_meta(r, ra == BBOLT_OK ? a.ps : BBOLT_PAGE_SIZE, &b);
    if (rb == BBOLT_E_IO) {
        free(r);
        return rb;
    }
    if (ra != BBOLT_OK && rb != BBOLT_OK) {
        free(r);
        return BBOLT_E_CORRUPT;
    }
    const meta_v *m = ra != BBOLT_OK ? &b : rb != BBOLT_OK ? &a : (b.txid > a.txid ? &b : &a);
    r->ps = m->ps;
    r->root = m->root;
    r->pgid = m->pgid;
    r->txid = m->txid;
    *out = r;
    return BBOLT_OK;
}

/* Reads the page span at pgid (the page and its overflow) into a malloc'd
 * buffer, every bound checked. */
static int read_span(bbolt_reader_t *r, uint64_t pgid, uint8_t **buf, size_t *len) {
    *buf = NULL;
    if (pgid < 2 || pgid >= r->pgid) return BBOLT_E_CORRUPT;
    if (++r->visits > r->pgid) return BBOLT_E_CORRUPT; /* a page reached twice: a cycle */
    uint8_t hdr[PAGE_HDR];
    int rc = pread_all(r->fd, hdr, sizeof hdr, pgid * r->ps);
    if (rc != BBOLT_OK) return rc;
    uint64_t overflow = get_le32(hdr + 12);
    if (get_le64(hdr) != pgid || pgid + overflow + 1 > r->pgid) return BBOLT_E_CORRUPT;
    uint64_t span = (overflow + 1) * r->ps;
    if (span > SIZE_MAX) return BBOLT_E_CORRUPT;
    uint8_t *p = malloc((size_t)span);
    if (!p) return BBOLT_E_NOMEM;
    rc = pread_all(r->fd, p, (size_t)span, pgid * r->ps);
    if (rc != BBOLT_OK) {
        free(p);
        return rc;
    }
    *buf = p;
    *len = (size_t)span;
    return BBOLT_OK;
}

static int walk_page(bbolt_reader_t *r, const uint8_t *p, size_t len, int depth, bbolt_kv_fn fn, void *arg);

static int walk_child(bbolt_reader_t *r, uint64_t pgid, int depth, bbolt_kv_fn fn, void *arg) {
    if (depth > BBOLT_MAX_DEPTH) return BBOLT_E_CORRUPT;
    uint8_t *p = NULL;
    size_t len = 0;
    int rc = read_span(r, pgid, &p, &len);
    if (rc == BBOLT_OK) rc = walk_page(r, p, len, depth, fn, arg);
    free(p);
    return rc;
}

/* Every element of the page (a branch: of its subtree), in order. */
static int walk_page(bbolt_reader_t *r, const uint8_t *p, size_t len, int depth, bbolt_kv_fn fn, void *arg) {
    if (len < PAGE_HDR) return BBOLT_E_CORRUPT;
    uint16_t flags = get_le16(p + 8);
    uint64_t count = get_le16(p + 10);
    if (PAGE_HDR + count * ELEM_SIZE > len) return BBOLT_E_CORRUPT;
    for (uint64_t i = 0; i < count; i++) {
        const uint8_t *el = p + PAGE_HDR + i * ELEM_SIZE;
        uint64_t eoff = PAGE_HDR + i * ELEM_SIZE;
        int rc;
        if (flags == FLAG_LEAF) {
            uint64_t pos = get_le32(el + 4), ks = get_le32(el + 8), vs = get_le32(el + 12);
            if (eoff + pos + ks + vs > len) return BBOLT_E_CORRUPT;
            const uint8_t *k = p + eoff + pos;
            rc = fn(arg, k, (size_t)ks, k + ks, (size_t)vs, (get_le32(el) & ELEM_BUCKET) != 0);
        } else if (flags == FLAG_BRANCH) {
            uint64_t pos = get_le32(el), ks = get_le32(el + 4);
            if (eoff + pos + ks > len) return BBOLT_E_CORRUPT;
            rc = walk_child(r, get_le64(el + 8), depth + 1, fn, arg);
        } else {
            return BBOLT_E_CORRUPT;
        }
        if (rc != 0) return rc;
    }
    return BBOLT_OK;
}

/* Each walk counts its own page reads; a walk started from a callback of
 * another leaves the outer one's count as it was. */
int bbolt_reader_buckets(bbolt_reader_t *r, bbolt_kv_fn fn, void *arg) {
    uint64_t outer = r->visits;
    r->visits = 0;
    int rc = walk_child(r, r->root, 0, fn, arg);
    r->visits = outer;
    return rc;
}

typedef struct find {
    const uint8_t *name;
    size_t nlen;
    uint8_t *val; /* malloc'd copy of the bucket's value */
    size_t vlen;
    int found;
} find_t;

static int find_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    find_t *f = arg;
    if (!is_bucket || bytes_cmp(k, kl, f->name, f->nlen) != 0) return 0;
    if (vl < BUCKET_HDR) return BBOLT_E_CORRUPT;
    f->val = malloc(vl);
    if (!f->val) return BBOLT_E_NOMEM;
    memcpy(f->val, v, vl);
    f->vlen = vl;
    f->found = 1;
    return 1;
}

int bbolt_reader_scan(bbolt_reader_t *r, const uint8_t *name, size_t nlen, bbolt_kv_fn fn, void *arg) {
    find_t f = {.name = name, .nlen = nlen};
    int rc = bbolt_reader_buckets(r, find_one, &f);
    if (rc < 0) {
        free(f.val);
        return rc;
    }
    if (!f.found) return BBOLT_E_NOT_FOUND;
    uint64_t root = get_le64(f.val);
    uint64_t outer = r->visits;
    r->visits = 0;
    if (root == 0) {
        /* inline: a leaf page after the header, inside the value */
        const uint8_t *p = f.val + BUCKET_HDR;
        size_t len = f.vlen - BUCKET_HDR;
        rc = len >= PAGE_HDR && get_le16(p + 8) == FLAG_LEAF ? walk_page(r, p, len, 0, fn, arg)
                                                             : BBOLT_E_CORRUPT;
    } else {
        rc = walk_child(r, root, 0, fn, arg);
    }
    r->visits = outer;
    free(f.val);
    return rc;
}
