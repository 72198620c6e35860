/*
 * peer_codec.c: the peer wire format (peer.h, peer_internal.h).
 *
 * Owns: frame headers ([u32 len][u32 crc32c(kind, payload)][u8 kind], big-
 * endian, len = 1 + payload), HELLO, the encoding of raft_msg_t, and the
 * small payloads (APP, SNAP_END, MEMBERS). Decoders trust nothing: every
 * length and count is checked against the bytes there before anything is
 * allocated or read, so an allocation is never larger than a constant times
 * the input.
 *
 * Raft message: u8 type, u64 from, to, term, log_term, index, commit,
 * u8 reject, u64 reject_hint, u64 ctx, u32 n_entries, entries (u64 term,
 * u64 index, u8 type, u32 len, data), u8 has_snapshot, and if set: u64
 * index, term, u32 n_voters, u64 voters..., u32 n_learners, u64 learners...
 */
#include "peer_internal.h"

#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "crc32c.h"

#define MSG_FIXED (1 + 8 * 6 + 1 + 8 + 8 + 4 + 1) /* without entries and snapshot */
#define ENTRY_FIXED (8 + 8 + 1 + 4)
#define SNAP_FIXED (8 + 8 + 4 + 4)

/* ---- frames ---- */

static uint32_t frame_crc(uint8_t kind, const uint8_t *p, size_t n) {
    uint32_t c = crc32c(0, &kind, 1);
    return n ? crc32c(c, p, n) : c;
}

void peer_frame_header(uint8_t hdr[PEER_FRAME_HEADER], uint8_t kind, const uint8_t *p, size_t n) {
    put_be32(hdr, (uint32_t)(n + 1));
    put_be32(hdr + 4, frame_crc(kind, p, n));
    hdr[8] = kind;
}

uint8_t *peer_frame_build(uint8_t kind, const uint8_t *p, size_t n, size_t *out_len) {
    if (n + 1 > PEER_MAX_FRAME) return NULL;
    uint8_t *f = malloc(PEER_FRAME_HEADER + n);
    if (!f) return NULL;
    peer_frame_header(f, kind, p, n);
    if (n) memcpy(f + PEER_FRAME_HEADER, p, n);
    *out_len = PEER_FRAME_HEADER + n;
    return f;
}

int peer_frame_parse_header(const uint8_t hdr[PEER_FRAME_HEADER], uint8_t *kind, size_t *payload_len) {
    uint32_t len = get_be32(hdr);
    if (len < 1 || len > PEER_MAX_FRAME) return PEER_ERR_INVALID;
    *kind = hdr[8];
    *payload_len = len - 1;
    return PEER_OK;
}

int peer_frame_check(const uint8_t hdr[PEER_FRAME_HEADER], const uint8_t *p, size_t n) {
    if (get_be32(hdr) != n + 1) return PEER_ERR_INVALID;
    return frame_crc(hdr[8], p, n) == get_be32(hdr + 4) ? PEER_OK : PEER_ERR_INVALID;
}

/* ---- HELLO ---- */

void peer_hello_encode(const peer_hello_t *h, uint8_t out[PEER_HELLO_LEN]) {
    out[0] = (uint8_t)(h->version >> 8);
    out[1] = (uint8_t)h->version;
    out[2] = h->purpose;
    out[3] = h->status;
    put_be64(out + 4, h->cluster_id);
    put_be64(out + 12, h->from);
    put_be64(out + 20, h->to);
}

int peer_hello_decode(const uint8_t *p, size_t n, peer_hello_t *h) {
    if (n != PEER_HELLO_LEN) return PEER_ERR_INVALID;
    h->version = (uint16_t)(p[0] << 8 | p[1]);
    h->purpose = p[2];
    h->status = p[3];
    h->cluster_id = get_be64(p + 4);
    h->from = get_be64(p + 12);
    h->to = get_be64(p + 20);
    return PEER_OK;
}

/* ---- small payloads ---- */

void peer_snap_end_encode(uint64_t total, uint32_t crc, uint8_t out[12]) {
    put_be64(out, total);
    put_be32(out + 8, crc);
}

int peer_snap_end_decode(const uint8_t *p, size_t n, uint64_t *total, uint32_t *crc) {
    if (n != 12) return PEER_ERR_INVALID;
    *total = get_be64(p);
    *crc = get_be32(p + 8);
    return PEER_OK;
}

uint8_t *peer_members_encode(uint8_t status, uint64_t cluster_id, const uint8_t *data, size_t len,
                             size_t *out_len) {
    uint8_t *p = malloc(9 + len);
    if (!p) return NULL;
    p[0] = status;
    put_be64(p + 1, cluster_id);
    if (len) memcpy(p + 9, data, len);
    *out_len = 9 + len;
    return p;
}

int peer_members_decode(const uint8_t *p, size_t n, uint8_t *status, uint64_t *cluster_id,
                        const uint8_t **data, size_t *len) {
    if (n < 9) return PEER_ERR_INVALID;
    *status = p[0];
    *cluster_id = get_be64(p + 1);
    *data = p + 9;
    *len = n - 9;
    return PEER_OK;
}

int peer_app_decode(const uint8_t *p, size_t n, uint8_t *kind, const uint8_t **data, size_t *len) {
    if (n < 1) return PEER_ERR_INVALID;
    *kind = p[0];
    *data = p + 1;
    *len = n - 1;
    return PEER_OK;
}

/* ---- Raft messages: encoding ---- */

static int encoded_size(const raft_msg_t *m, size_t *out) {
    size_t n = MSG_FIXED;
    if (m->n_entries > UINT32_MAX || (m->n_entries && !m->entries)) return PEER_ERR_INVALID;
    for (size_t i = 0; i < m->n_entries; i++) {
        const raft_entry_t *e = &m->entries[i];
        if (e->len > PEER_MAX_FRAME || (e->len && !e->data)) return PEER_ERR_INVALID;
        n += ENTRY_FIXED + e->len;
        if (n > PEER_MAX_FRAME) return PEER_ERR_INVALID;
    }
    const raft_snapshot_meta_t *s = m->snapshot;
    if (s) {
        if (s->n_voters > RAFT_MAX_MEMBERS || s->n_learners > RAFT_MAX_MEMBERS) return PEER_ERR_INVALID;
        if ((s->n_voters && !s->voters) || (s->n_learners && !s->learners)) return PEER_ERR_INVALID;
        n += SNAP_FIXED + 8 * (s->n_voters + s->n_learners);
    }
    /* The frame adds one kind byte. */
    if (n + 1 > PEER_MAX_FRAME) return PEER_ERR_INVALID;
    *out = n;
    return PEER_OK;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v) {
    put_be64(p, v);
    return p + 8;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
    put_be32(p, v);
    return p + 4;
}

static uint8_t *put_ids(uint8_t *p, const uint64_t *ids, size_t n) {
    p = put_u32(p, (uint32_t)n);
    for (size_t i = 0; i < n; i++) p = put_u64(p, ids[i]);
    return p;
}

/* The encoding at buf + headroom; *out_len counts from there. */
static int encode_raft_at(const raft_msg_t *m, size_t headroom, uint8_t **out, size_t *out_len) {
    size_t n;
    if (!m || !out || !out_len) return PEER_ERR_INVALID;
    if ((m->type == RAFT_MSG_SNAP) != (m->snapshot != NULL)) return PEER_ERR_INVALID;
    int rc = encoded_size(m, &n);
    if (rc != PEER_OK) return rc;
    uint8_t *buf = malloc(headroom + n), *p = buf + headroom;
    if (!buf) return PEER_ERR_NOMEM;
    *p++ = (uint8_t)m->type;
    p = put_u64(p, m->from);
    p = put_u64(p, m->to);
    p = put_u64(p, m->term);
    p = put_u64(p, m->log_term);
    p = put_u64(p, m->index);
    p = put_u64(p, m->commit);
    *p++ = m->reject ? 1 : 0;
    p = put_u64(p, m->reject_hint);
    p = put_u64(p, m->ctx);
    p = put_u32(p, (uint32_t)m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++) {
        const raft_entry_t *e = &m->entries[i];
        p = put_u64(p, e->term);
        p = put_u64(p, e->index);
        *p++ = e->type;
        p = put_u32(p, (uint32_t)e->len);
        if (e->len) memcpy(p, e->data, e->len);
        p += e->len;
    }
    *p++ = m->snapshot ? 1 : 0;
    if (m->snapshot) {
        const raft_snapshot_meta_t *s = m->snapshot;
        p = put_u64(p, s->index);
        p = put_u64(p, s->term);
        p = put_ids(p, s->voters, s->n_voters);
        p = put_ids(p, s->learners, s->n_learners);
    }
    *out = buf;
    *out_len = (size_t)(p - buf) - headroom;
    return PEER_OK;
}

int peer_encode_raft(const raft_msg_t *m, uint8_t **out, size_t *out_len) {
    return encode_raft_at(m, 0, out, out_len);
}

int peer_encode_raft_frame(const raft_msg_t *m, uint8_t kind, size_t headroom, uint8_t **out,
                           size_t *frame_len) {
    size_t n;
    int rc = encode_raft_at(m, headroom + PEER_FRAME_HEADER, out, &n);
    if (rc != PEER_OK) return rc;
    uint8_t *f = *out + headroom;
    peer_frame_header(f, kind, f + PEER_FRAME_HEADER, n);
    *frame_len = PEER_FRAME_HEADER + n;
    return PEER_OK;
}

/* ---- Raft messages: decoding ---- */

typedef struct reader {
    const uint8_t *p;
    size_t left;
    int bad;
} reader_t;

static uint64_t rd_u64(reader_t *r) {
    if (r->left < 8) {
        r->bad = 1;
        r->left = 0;
        return 0;
    }
    uint64_t v = get_be64(r->p);
    r->p += 8;
    r->left -= 8;
    return v;
}

static uint32_t rd_u32(reader_t *r) {
    if (r->left < 4) {
        r->bad = 1;
        r->left = 0;
        return 0;
    }
    uint32_t v = get_be32(r->p);
    r->p += 4;
    r->left -= 4;
    return v;
}

static uint8_t rd_u8(reader_t *r) {
    if (r->left < 1) {
        r->bad = 1;
        return 0;
    }
    r->left--;
    return *r->p++;
}

static const uint8_t *rd_bytes(reader_t *r, size_t n) {
    if (r->left < n) {
        r->bad = 1;
        r->left = 0;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

/* First pass over the entries: checks every length and finds the count of
 * ids after them, so the scratch block is sized from bytes that exist. */
static int skip_entries(reader_t *r, uint32_t n) {
    if (n > r->left / ENTRY_FIXED) return PEER_ERR_INVALID;
    for (uint32_t i = 0; i < n; i++) {
        rd_bytes(r, 17);
        uint32_t len = rd_u32(r);
        rd_bytes(r, len);
        if (r->bad) return PEER_ERR_INVALID;
    }
    return PEER_OK;
}

static int read_ids(reader_t *r, uint64_t *ids, size_t *n) {
    uint32_t count = rd_u32(r);
    if (r->bad || count > RAFT_MAX_MEMBERS || count > r->left / 8) return PEER_ERR_INVALID;
    for (uint32_t i = 0; i < count; i++) ids[i] = rd_u64(r);
    *n = count;
    return PEER_OK;
}

typedef struct scratch {
    raft_snapshot_meta_t snap;
    uint64_t voters[RAFT_MAX_MEMBERS];
    uint64_t learners[RAFT_MAX_MEMBERS];
    raft_entry_t entries[]; /* n_entries */
} scratch_t;

static void read_header(reader_t *r, raft_msg_t *m) {
    m->type = (raft_msg_type_t)rd_u8(r);
    m->from = rd_u64(r);
    m->to = rd_u64(r);
    m->term = rd_u64(r);
    m->log_term = rd_u64(r);
    m->index = rd_u64(r);
    m->commit = rd_u64(r);
    m->reject = rd_u8(r);
    m->reject_hint = rd_u64(r);
    m->ctx = rd_u64(r);
}

static void read_entries(reader_t *r, raft_entry_t *es, size_t n) {
    for (size_t i = 0; i < n; i++) {
        es[i].term = rd_u64(r);
        es[i].index = rd_u64(r);
        es[i].type = rd_u8(r);
        es[i].len = rd_u32(r);
        es[i].data = es[i].len ? rd_bytes(r, es[i].len) : NULL;
    }
}

static int read_snapshot(reader_t *r, scratch_t *s) {
    s->snap.index = rd_u64(r);
    s->snap.term = rd_u64(r);
    if (r->bad) return PEER_ERR_INVALID;
    if (read_ids(r, s->voters, &s->snap.n_voters) != PEER_OK) return PEER_ERR_INVALID;
    if (read_ids(r, s->learners, &s->snap.n_learners) != PEER_OK) return PEER_ERR_INVALID;
    s->snap.voters = s->snap.n_voters ? s->voters : NULL;
    s->snap.learners = s->snap.n_learners ? s->learners : NULL;
    return PEER_OK;
}

int peer_decode_raft(const uint8_t *buf, size_t len, raft_msg_t *m, void **scratch) {
    if (!buf || !m || !scratch) return PEER_ERR_INVALID;
    *scratch = NULL;
    memset(m, 0, sizeof(*m));
    reader_t r = {buf, len, 0};
    read_header(&r, m);
    uint8_t reject = (uint8_t)m->reject;
    uint32_t n = rd_u32(&r);
    if (r.bad || reject > 1 || m->type < RAFT_MSG_VOTE || m->type > RAFT_MSG_SNAP) goto bad;
    reader_t entries_at = r;
    if (skip_entries(&r, n) != PEER_OK) goto bad;
    uint8_t has_snap = rd_u8(&r);
    if (r.bad || has_snap > 1 || (has_snap != 0) != (m->type == RAFT_MSG_SNAP)) goto bad;

    scratch_t *s = calloc(1, sizeof(*s) + (size_t)n * sizeof(raft_entry_t));
    if (!s) return PEER_ERR_NOMEM;
    read_entries(&entries_at, s->entries, n);
    if (has_snap && read_snapshot(&r, s) != PEER_OK) {
        free(s);
        goto bad;
    }
    if (r.bad || r.left != 0 || entries_at.bad) {
        free(s);
        goto bad;
    }
    m->entries = n ? s->entries : NULL;
    m->n_entries = n;
    m->snapshot = has_snap ? &s->snap : NULL;
    *scratch = s;
    return PEER_OK;
bad:
    memset(m, 0, sizeof(*m));
    return PEER_ERR_INVALID;
}
