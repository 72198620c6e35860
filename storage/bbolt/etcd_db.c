/*
 * etcd_db.c: the kshim store <-> etcd 3.4's bbolt database (see etcd_db.h).
 *
 * Write: one mvcc dump (a LevelDB snapshot) feeds the bbolt writer bucket
 * by bucket in bbolt's key order; nothing but one page per tree level and
 * the current record is in memory.
 * Restore: the meta bucket first (compact revision), then the key bucket in
 * revision order into an mvcc load, then the live keys with a lease (read
 * back from the loaded store, a page at a time) and the lease and auth
 * buckets into a second load.
 *
 * The side tables written here are the store's: 'L'/'M' through
 * lease_keys.h; the auth records ('U' + name, 'R' + name, "Eenabled",
 * "Erevision") are auth/auth_store.h's layout, copied here because this
 * layer sits beside the auth layer, not above it.
 */
#include "etcd_db.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.pb-c.h"
#include "bytes.h"
#include "kv.pb-c.h"
#include "lease_keys.h"

static const char *const BUCKETS[] = {"alarm", "auth",  "authRoles", "authUsers",       "cluster",
                                      "key",   "lease", "members",   "members_removed", "meta"};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])

#define AUTH_KEY_ENABLED "Eenabled"
#define AUTH_KEY_REVISION "Erevision"
#define REV_BYTES 17
#define LIVE_PAGE 1000

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static void rev_bytes(uint8_t out[REV_BYTES], int64_t main, int64_t sub) {
    put_be64(out, (uint64_t)main);
    out[8] = '_';
    put_be64(out + 9, (uint64_t)sub);
}

/* ---- leasepb.Lease: ID = 1, TTL = 2, RemainingTTL = 3 (int64 varints) ---- */

static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t lease_pack(uint8_t out[33], int64_t id, int64_t ttl, int64_t remaining) {
    size_t n = 0;
    const int64_t f[3] = {id, ttl, remaining};
    for (int i = 0; i < 3; i++) {
        if (!f[i]) continue;
        out[n++] = (uint8_t)((i + 1) << 3);
        n += put_varint(out + n, (uint64_t)f[i]);
    }
    return n;
}

static int get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len) return -1;
        uint8_t b = p[(*pos)++];
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Decodes the three fields; unknown varint fields are skipped, anything
 * else is -1. */
static int lease_unpack(const uint8_t *p, size_t len, int64_t f[3]) {
    f[0] = f[1] = f[2] = 0;
    size_t pos = 0;
    while (pos < len) {
        uint64_t tag, v;
        if (get_varint(p, len, &pos, &tag) != 0 || (tag & 7) != 0) return -1;
        if (get_varint(p, len, &pos, &v) != 0) return -1;
        if (tag >> 3 >= 1 && tag >> 3 <= 3) f[(tag >> 3) - 1] = (int64_t)v;
    }
    return 0;
}

/* ======================= store -> etcd ======================= */

typedef struct wctx {
    bbolt_writer_t *w;
    etcd_db_stats_t *st;
    int rc; /* the first bbolt error */
    uint8_t *buf;
    size_t cap;
} wctx_t;

static uint8_t *wbuf(wctx_t *c, size_t n) {
    if (n > c->cap) {
        uint8_t *p = realloc(c->buf, n);
        if (!p) return NULL;
        c->buf = p;
        c->cap = n;
    }
    return c->buf;
}

static int put(wctx_t *c, const void *k, size_t kl, const void *v, size_t vl) {
    int rc = bbolt_put(c->w, k, kl, v, vl);
    if (rc != BBOLT_OK && !c->rc) c->rc = rc;
    return rc;
}

static int put_str(wctx_t *c, const char *k, const void *v, size_t vl) { return put(c, k, strlen(k), v, vl); }

static int one_version(void *arg, const Mvccpb__KeyValue *kv, int64_t sub, int tombstone) {
    wctx_t *c = arg;
    uint8_t k[REV_BYTES + 1];
    rev_bytes(k, kv->mod_revision, sub);
    Mvccpb__KeyValue out = MVCCPB__KEY_VALUE__INIT;
    out.key = kv->key;
    if (!tombstone) {
        out.create_revision = kv->create_revision;
        out.mod_revision = kv->mod_revision;
        out.version = kv->version;
        out.value = kv->value;
        out.lease = kv->lease;
    }
    k[REV_BYTES] = 't';
    size_t n = mvccpb__key_value__get_packed_size(&out);
    uint8_t *v = wbuf(c, n ? n : 1);
    if (!v) return c->rc = BBOLT_E_NOMEM;
    mvccpb__key_value__pack(&out, v);
    c->st->versions++;
    return put(c, k, tombstone ? REV_BYTES + 1 : REV_BYTES, v, n) != BBOLT_OK;
}

static int one_lease(void *arg, const uint8_t *key, size_t kl, const uint8_t *val, size_t vl) {
    wctx_t *c = arg;
    int64_t ttl = 0, rem = 0;
    if (kl != 9 || lease_record_decode(val, vl, &ttl, &rem) != 0) return c->rc = BBOLT_E_CORRUPT;
    uint8_t v[33];
    size_t n = lease_pack(v, (int64_t)get_be64(key + 1), ttl, rem);
    c->st->leases++;
    return put(c, key + 1, 8, v, n) != BBOLT_OK;
}

static int one_auth_record(void *arg, const uint8_t *key, size_t kl, const uint8_t *val, size_t vl) {
    wctx_t *c = arg;
    if (kl < 2) return 0;
    if (key[0] == 'U') c->st->users++;
    if (key[0] == 'R') c->st->roles++;
    return put(c, key + 1, kl - 1, val, vl) != BBOLT_OK;
}

typedef struct raw_val {
    uint8_t v[16];
    size_t len;
} raw_val_t;

static int one_raw(void *arg, const uint8_t *key, size_t kl, const uint8_t *val, size_t vl) {
    raw_val_t *r = arg;
    r->len = vl < sizeof r->v ? vl : sizeof r->v;
    memcpy(r->v, val, r->len);
    return 1;
}

/* The exact side-table record key (first of the prefix scan), or len 0. */
static int raw_get(mvcc_dump_t *d, const char *key, raw_val_t *out) {
    out->len = 0;
    int rc = mvcc_dump_raw(d, (const uint8_t *)key, strlen(key), one_raw, out);
    return rc < 0 ? rc : MVCC_OK;
}

static int write_auth(wctx_t *c, mvcc_dump_t *d) {
    raw_val_t en, rev;
    if (raw_get(d, AUTH_KEY_ENABLED, &en) != MVCC_OK || raw_get(d, AUTH_KEY_REVISION, &rev) != MVCC_OK)
        return ETCD_DB_E_IO;
    uint8_t enabled = en.len == 1 && en.v[0] == 1;
    uint8_t rb[8];
    put_be64(rb, rev.len == 8 ? get_be64(rev.v) : 1);
    put_str(c, "authEnabled", &enabled, 1);
    put_str(c, "authRevision", rb, 8);
    return ETCD_DB_OK;
}

static size_t json_urls(char *out, size_t cap, const char *const *urls, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (size_t i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", i ? "," : "", urls[i]);
    if (o < cap) o += (size_t)snprintf(out + o, cap - o, "]");
    return o;
}

static void write_member(wctx_t *c, const etcd_db_member_t *mb) {
    char key[32], val[4096], peers[1800], clients[1800];
    snprintf(key, sizeof key, "%" PRIx64, mb->id);
    json_urls(peers, sizeof peers, mb->peer_urls, mb->n_peer_urls);
    json_urls(clients, sizeof clients, mb->client_urls, mb->n_client_urls);
    int n =
        snprintf(val, sizeof val, "{\"id\":%" PRIu64 ",\"peerURLs\":%s,\"name\":\"%s\",\"clientURLs\":%s}",
                 mb->id, peers, mb->name ? mb->name : "", clients);
    if (n > 0 && (size_t)n < sizeof val) put_str(c, key, val, (size_t)n);
}

static int write_bucket(wctx_t *c, mvcc_dump_t *d, const mvcc_meta_t *meta, const etcd_db_member_t *mb,
                        const char *name) {
    int rc = bbolt_bucket_begin(c->w, (const uint8_t *)name, strlen(name));
    if (rc != BBOLT_OK) return c->rc = rc;
    int mrc = MVCC_OK;
    if (!strcmp(name, "auth")) {
        mrc = write_auth(c, d);
    } else if (!strcmp(name, "authRoles")) {
        mrc = mvcc_dump_raw(d, (const uint8_t *)"R", 1, one_auth_record, c);
    } else if (!strcmp(name, "authUsers")) {
        mrc = mvcc_dump_raw(d, (const uint8_t *)"U", 1, one_auth_record, c);
    } else if (!strcmp(name, "cluster")) {
        put_str(c, "clusterVersion", "3.4.0", 5);
    } else if (!strcmp(name, "key")) {
        mrc = mvcc_dump_versions(d, one_version, c);
    } else if (!strcmp(name, "lease")) {
        mrc = mvcc_dump_raw(d, (const uint8_t *)"L", 1, one_lease, c);
    } else if (!strcmp(name, "members")) {
        if (mb) write_member(c, mb);
    } else if (!strcmp(name, "meta")) {
        uint8_t ci[8], cr[REV_BYTES];
        put_be64(ci, meta->applied_index);
        put_str(c, "consistent_index", ci, 8);
        if (meta->compact_rev > 0) {
            rev_bytes(cr, meta->compact_rev, 0);
            put_str(c, "finishedCompactRev", cr, REV_BYTES);
            put_str(c, "scheduledCompactRev", cr, REV_BYTES);
        }
    }
    if (c->rc) return c->rc;
    if (mrc < 0) return ETCD_DB_E_IO;
    rc = bbolt_bucket_end(c->w);
    return rc != BBOLT_OK ? (c->rc = rc) : BBOLT_OK;
}

int etcd_db_write(mvcc_t *m, const etcd_db_member_t *member, bbolt_write_fn write_at, void *ctx,
                  etcd_db_stats_t *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    mvcc_dump_t *d = NULL;
    mvcc_meta_t meta;
    if (mvcc_dump_begin(m, &d, &meta) != MVCC_OK)
        return fail(err, errlen, ETCD_DB_E_IO, "cannot read the store");
    st->revision = meta.rev;
    st->compact_rev = meta.compact_rev;
    wctx_t c = {.w = bbolt_writer_new(write_at, ctx), .st = st};
    int rc = c.w ? ETCD_DB_OK : ETCD_DB_E_IO;
    for (size_t i = 0; i < N_BUCKETS && rc == ETCD_DB_OK; i++) {
        int brc = write_bucket(&c, d, &meta, member, BUCKETS[i]);
        if (brc != 0) rc = fail(err, errlen, ETCD_DB_E_IO, "writing bucket %s: error %d", BUCKETS[i], brc);
    }
    if (rc == ETCD_DB_OK && bbolt_writer_finish(c.w, &st->size) != BBOLT_OK)
        rc = fail(err, errlen, ETCD_DB_E_IO, "writing the database file");
    bbolt_writer_free(c.w);
    free(c.buf);
    mvcc_dump_end(d);
    return rc;
}

/* ======================= etcd -> store ======================= */

typedef struct rctx {
    mvcc_load_t *l;
    etcd_db_stats_t *st;
    int rc;     /* first error: ETCD_DB_E_* */
    char *what; /* what was wrong, for the message */
    size_t whatlen;
    uint8_t last_key[REV_BYTES]; /* the previous revision, for the order check */
    int have_last;
} rctx_t;

static int bad(rctx_t *c, const char *what) {
    if (!c->rc) {
        c->rc = ETCD_DB_E_CORRUPT;
        snprintf(c->what, c->whatlen, "%s", what);
    }
    return 1;
}

static int load_failed(rctx_t *c) {
    if (!c->rc) {
        c->rc = ETCD_DB_E_IO;
        snprintf(c->what, c->whatlen, "writing the store failed");
    }
    return 1;
}

static int meta_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    rctx_t *c = arg;
    if (is_bucket) return 0;
    int fin = kl == 18 && !memcmp(k, "finishedCompactRev", 18);
    int sch = kl == 19 && !memcmp(k, "scheduledCompactRev", 19);
    if (!fin && !sch) return 0;
    if (vl != REV_BYTES) return bad(c, "meta: a compact revision of the wrong size");
    int64_t rev = (int64_t)get_be64(v);
    if (rev < 0) return bad(c, "meta: a negative compact revision");
    if (rev > c->st->compact_rev) c->st->compact_rev = rev;
    return 0;
}

static int key_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    rctx_t *c = arg;
    if (is_bucket) return bad(c, "key: a nested bucket");
    int tomb = kl == REV_BYTES + 1 && k[REV_BYTES] == 't';
    if ((kl != REV_BYTES && !tomb) || k[8] != '_') return bad(c, "key: a revision key of the wrong shape");
    if (c->have_last && memcmp(c->last_key, k, REV_BYTES) >= 0) return bad(c, "key: revisions out of order");
    memcpy(c->last_key, k, REV_BYTES);
    c->have_last = 1;
    int64_t main = (int64_t)get_be64(k), sub = (int64_t)get_be64(k + 9);
    if (main <= 0 || sub < 0) return bad(c, "key: a revision out of range");
    Mvccpb__KeyValue *kv = mvccpb__key_value__unpack(NULL, vl, v);
    if (!kv) return bad(c, "key: a value that is not an mvccpb.KeyValue");
    int stop = 0;
    if (kv->key.len == 0) {
        stop = bad(c, "key: an empty key");
    } else {
        Mvccpb__KeyValue in = MVCCPB__KEY_VALUE__INIT;
        in.key = kv->key;
        in.mod_revision = main;
        if (!tomb) {
            in.create_revision = kv->create_revision;
            in.version = kv->version;
            in.value = kv->value;
            in.lease = kv->lease;
        }
        if (mvcc_load_version(c->l, &in, sub, tomb) != MVCC_OK) stop = load_failed(c);
        c->st->versions++;
        if (main > c->st->revision) c->st->revision = main;
    }
    mvccpb__key_value__free_unpacked(kv, NULL);
    return stop;
}

static int lease_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    rctx_t *c = arg;
    int64_t f[3];
    if (is_bucket || kl != 8 || lease_unpack(v, vl, f) != 0)
        return bad(c, "lease: a record of the wrong shape");
    int64_t id = (int64_t)get_be64(k);
    if (id == 0 || f[0] != id) return bad(c, "lease: a record whose id does not match its key");
    if (lease_load_record(c->l, id, f[1], f[2]) != MVCC_OK) return load_failed(c);
    c->st->leases++;
    return 0;
}

static int auth_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    rctx_t *c = arg;
    if (is_bucket) return bad(c, "auth: a nested bucket");
    if (kl == 11 && !memcmp(k, "authEnabled", 11)) {
        if (vl != 1) return bad(c, "auth: authEnabled of the wrong size");
        uint8_t e = v[0] == 1;
        const char *key = AUTH_KEY_ENABLED;
        if (mvcc_load_raw(c->l, (const uint8_t *)key, strlen(key), &e, 1) != MVCC_OK) return load_failed(c);
    } else if (kl == 12 && !memcmp(k, "authRevision", 12)) {
        if (vl != 8) return bad(c, "auth: authRevision of the wrong size");
        const char *key = AUTH_KEY_REVISION;
        if (mvcc_load_raw(c->l, (const uint8_t *)key, strlen(key), v, 8) != MVCC_OK) return load_failed(c);
    }
    return 0;
}

/* authUsers / authRoles: 'U' or 'R' + name -> the packed record as is, once
 * it unpacks and its name is its key. */
static int auth_record(rctx_t *c, char space, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    ProtobufCBinaryData name = {0};
    ProtobufCMessage *msg = NULL;
    if (space == 'U') {
        Authpb__User *u = authpb__user__unpack(NULL, vl, v);
        if (u) {
            name = u->name;
            msg = &u->base;
        }
        c->st->users++;
    } else {
        Authpb__Role *r = authpb__role__unpack(NULL, vl, v);
        if (r) {
            name = r->name;
            msg = &r->base;
        }
        c->st->roles++;
    }
    if (!msg) return bad(c, space == 'U' ? "authUsers: not an authpb.User" : "authRoles: not an authpb.Role");
    int ok = name.len == kl && kl > 0 && !memcmp(name.data, k, kl);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (!ok) return bad(c, "auth: a record whose name does not match its key");
    uint8_t *key = malloc(kl + 1);
    if (!key) abort();
    key[0] = (uint8_t)space;
    memcpy(key + 1, k, kl);
    int rc = mvcc_load_raw(c->l, key, kl + 1, v, vl);
    free(key);
    return rc != MVCC_OK ? load_failed(c) : 0;
}

static int user_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    return is_bucket ? bad(arg, "authUsers: a nested bucket") : auth_record(arg, 'U', k, kl, v, vl);
}

static int role_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    return is_bucket ? bad(arg, "authRoles: a nested bucket") : auth_record(arg, 'R', k, kl, v, vl);
}

/* Scans one bucket; a missing bucket is empty. */
static int scan(bbolt_reader_t *r, const char *bucket, bbolt_kv_fn fn, rctx_t *c) {
    int rc = bbolt_reader_scan(r, (const uint8_t *)bucket, strlen(bucket), fn, c);
    if (c->rc) return c->rc;
    if (rc == BBOLT_E_NOT_FOUND || rc == BBOLT_OK) return ETCD_DB_OK;
    snprintf(c->what, c->whatlen, "bucket %s: %s", bucket,
             rc == BBOLT_E_IO      ? "read error"
             : rc == BBOLT_E_NOMEM ? "out of memory"
                                   : "corrupt page");
    return c->rc = rc == BBOLT_E_IO ? ETCD_DB_E_IO : ETCD_DB_E_CORRUPT;
}

/* The live keys with a lease, attached in the second load ('M'). */
static int attach_leases(mvcc_t *m, rctx_t *c) {
    kv_arena_t arena;
    kv_arena_init(&arena);
    uint8_t *from = calloc(1, 1);
    size_t from_len = 1; /* "\0": from the first key */
    int rc = ETCD_DB_OK;
    for (;;) {
        mvcc_txn_t *t = NULL;
        if (mvcc_txn_begin_read(m, &arena, &t) != MVCC_OK) {
            rc = ETCD_DB_E_IO;
            break;
        }
        mvcc_range_t rg = mvcc_range_make(from, from_len, (const uint8_t *)"\0", 1);
        mvcc_kv_list_t l = {0};
        int64_t count = 0;
        int r = mvcc_txn_range(t, &rg, 0, LIVE_PAGE, 0, &l, &count);
        for (size_t i = 0; r == MVCC_OK && i < l.n; i++) {
            c->st->live_keys++;
            if (l.kvs[i]->lease &&
                lease_load_attach(c->l, l.kvs[i]->lease, l.kvs[i]->key.data, l.kvs[i]->key.len) != MVCC_OK)
                r = MVCC_ERR_IO;
        }
        size_t n = l.n;
        if (r == MVCC_OK && n) {
            const Mvccpb__KeyValue *last = l.kvs[n - 1];
            uint8_t *nf = malloc(last->key.len + 1);
            if (!nf) abort();
            memcpy(nf, last->key.data, last->key.len);
            nf[last->key.len] = 0; /* the next key after it */
            free(from);
            from = nf;
            from_len = last->key.len + 1;
        }
        mvcc_txn_end(t);
        kv_arena_free(&arena);
        kv_arena_init(&arena);
        if (r != MVCC_OK) {
            rc = ETCD_DB_E_IO;
            break;
        }
        if (n < LIVE_PAGE) break;
    }
    free(from);
    kv_arena_free(&arena);
    return rc;
}

int etcd_db_restore(int fd, uint64_t size, mvcc_t *m, etcd_db_stats_t *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    st->compact_rev = -1;
    st->size = size;
    if (mvcc_revision(m) != 1 || mvcc_applied_index(m) != 0)
        return fail(err, errlen, ETCD_DB_E_NOT_EMPTY, "the store is not empty");
    bbolt_reader_t *r = NULL;
    int brc = bbolt_reader_open(fd, size, &r);
    if (brc != BBOLT_OK)
        return fail(err, errlen, brc == BBOLT_E_IO ? ETCD_DB_E_IO : ETCD_DB_E_CORRUPT,
                    "not a valid bbolt database (%s)", brc == BBOLT_E_IO ? "read error" : "bad meta pages");
    char what[256] = "";
    rctx_t c = {.st = st, .what = what, .whatlen = sizeof what};
    int rc = mvcc_load_begin(m, &c.l) == MVCC_OK ? ETCD_DB_OK : ETCD_DB_E_IO;
    if (rc == ETCD_DB_OK) rc = scan(r, "meta", meta_one, &c);
    if (rc == ETCD_DB_OK) rc = scan(r, "key", key_one, &c);
    if (st->compact_rev == 0) st->compact_rev = -1;
    if (st->revision < st->compact_rev) st->revision = st->compact_rev; /* as etcd's restore */
    if (st->revision < 1) st->revision = 1;
    if (rc == ETCD_DB_OK && mvcc_load_finish(c.l, st->revision, st->compact_rev) != MVCC_OK)
        rc = ETCD_DB_E_IO;
    mvcc_load_free(c.l);
    c.l = NULL;
    if (rc == ETCD_DB_OK) rc = mvcc_load_begin(m, &c.l) == MVCC_OK ? ETCD_DB_OK : ETCD_DB_E_IO;
    if (rc == ETCD_DB_OK) rc = attach_leases(m, &c);
    if (rc == ETCD_DB_OK) rc = scan(r, "lease", lease_one, &c);
    if (rc == ETCD_DB_OK) rc = scan(r, "auth", auth_one, &c);
    if (rc == ETCD_DB_OK) rc = scan(r, "authUsers", user_one, &c);
    if (rc == ETCD_DB_OK) rc = scan(r, "authRoles", role_one, &c);
    if (rc == ETCD_DB_OK && mvcc_load_finish(c.l, st->revision, st->compact_rev) != MVCC_OK)
        rc = ETCD_DB_E_IO;
    mvcc_load_free(c.l);
    bbolt_reader_free(r);
    if (rc != ETCD_DB_OK) return fail(err, errlen, rc, "%s", what[0] ? what : "writing the store failed");
    return ETCD_DB_OK;
}

/* ======================= snapshot status ======================= */

static uint32_t crc32c_table[256];

static void crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
        crc32c_table[i] = c;
    }
}

static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc32c_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

#define STATUS_MAX_BUCKETS 64
#define STATUS_MAX_NAME 256

typedef struct status_ctx {
    etcd_db_status_t *st;
    int in_key;
    uint8_t names[STATUS_MAX_BUCKETS][STATUS_MAX_NAME];
    size_t lens[STATUS_MAX_BUCKETS];
    size_t n;
    int too_many;
} status_ctx_t;

static int status_kv(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    status_ctx_t *c = arg;
    c->st->hash = crc32c(c->st->hash, k, kl);
    if (!is_bucket) c->st->hash = crc32c(c->st->hash, v, vl); /* bbolt hands a nested bucket's value as nil */
    if (c->in_key && kl >= 8) c->st->revision = (int64_t)get_be64(k);
    c->st->total_keys++;
    return 0;
}

static int status_name(void *arg, const uint8_t *name, size_t nl, const uint8_t *v, size_t vl,
                       int is_bucket) {
    status_ctx_t *c = arg;
    if (!is_bucket) return 0;
    if (c->n == STATUS_MAX_BUCKETS || nl > STATUS_MAX_NAME) {
        c->too_many = 1;
        return 1;
    }
    memcpy(c->names[c->n], name, nl);
    c->lens[c->n++] = nl;
    return 0;
}

int etcd_db_status(int fd, uint64_t size, etcd_db_status_t *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (!crc32c_table[1]) crc32c_init();
    bbolt_reader_t *r = NULL;
    if (bbolt_reader_open(fd, size, &r) != BBOLT_OK)
        return fail(err, errlen, ETCD_DB_E_CORRUPT, "not a valid bbolt database");
    status_ctx_t *c = calloc(1, sizeof *c);
    if (!c) {
        bbolt_reader_free(r);
        return fail(err, errlen, ETCD_DB_E_IO, "out of memory");
    }
    c->st = st;
    int rc = bbolt_reader_buckets(r, status_name, c);
    for (size_t i = 0; i < c->n && rc == BBOLT_OK; i++) {
        st->hash = crc32c(st->hash, c->names[i], c->lens[i]);
        c->in_key = c->lens[i] == 3 && !memcmp(c->names[i], "key", 3);
        rc = bbolt_reader_scan(r, c->names[i], c->lens[i], status_kv, c);
    }
    int too_many = c->too_many;
    free(c);
    st->total_size = bbolt_reader_pages(r) * bbolt_reader_page_size(r);
    bbolt_reader_free(r);
    if (too_many) return fail(err, errlen, ETCD_DB_E_CORRUPT, "more than %d buckets", STATUS_MAX_BUCKETS);
    if (rc != BBOLT_OK)
        return fail(err, errlen, rc == BBOLT_E_IO ? ETCD_DB_E_IO : ETCD_DB_E_CORRUPT, "corrupt database");
    return ETCD_DB_OK;
}

/* ---- consistent index ---- */

static int ci_one(void *arg, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, int is_bucket) {
    if (is_bucket || kl != 16 || memcmp(k, "consistent_index", 16)) return 0;
    if (vl != 8) return 1;
    *(uint64_t *)arg = get_be64(v);
    return 0;
}

int etcd_db_consistent_index(int fd, uint64_t size, uint64_t *ci, char *err, size_t errlen) {
    *ci = 0;
    bbolt_reader_t *r = NULL;
    int brc = bbolt_reader_open(fd, size, &r);
    if (brc != BBOLT_OK)
        return fail(err, errlen, brc == BBOLT_E_IO ? ETCD_DB_E_IO : ETCD_DB_E_CORRUPT,
                    "not a valid bbolt database");
    int rc = bbolt_reader_scan(r, (const uint8_t *)"meta", 4, ci_one, ci);
    bbolt_reader_free(r);
    if (rc == BBOLT_E_NOT_FOUND) return ETCD_DB_OK;
    if (rc == 1) return fail(err, errlen, ETCD_DB_E_CORRUPT, "meta/consistent_index is not 8 bytes");
    if (rc != BBOLT_OK)
        return fail(err, errlen, rc == BBOLT_E_IO ? ETCD_DB_E_IO : ETCD_DB_E_CORRUPT, "corrupt database");
    return ETCD_DB_OK;
}
