/*
 * lease.c: etcd's lessor as a replicated state machine (see lease.h).
 *
 * Follows etcd 3.4 lease/lessor.go and etcdserver/apply.go:
 *  - Grant: TTL above MaxLeaseTTL -> "too large lease TTL", an existing id ->
 *    "lease already exists", TTL below minLeaseTTL raised to it; the id is
 *    chosen by the proposer (never 0 here), so applying is deterministic.
 *  - Revoke: every attached key deleted, in key order, in ONE revision, with
 *    the lease record, in one LevelDB batch; no keys -> no new revision.
 *  - Checkpoint: remembers the remaining TTL in memory (3.4 does not persist
 *    checkpoints unless asked to; Promote uses it).
 * A request that fails still consumes its entry (the applied index moves).
 * A storage error (read or write) fails the apply (-1, fail-stop): it never
 * turns into "no such lease" or "no attached keys". Applies join the apply
 * thread's write group (mvcc.h); Revoke writes the group first, since it reads
 * the 'M' side table.
 *
 * The 'L' and 'M' side-table encodings are the store's (mvcc/lease_keys.c).
 * Owns: the lease table (chained hash
 * on id) and the expiry heap (min-heap on next_check_ms, positions stored in
 * the entries). One mutex guards both.
 */
#include "lease.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "grpc_status.h"
#include "kv_arena.h"
#include "lease_keys.h"

#define NOT_IN_HEAP ((size_t)-1)

typedef struct lease_entry {
    int64_t id;
    int64_t ttl;            /* granted TTL in seconds (after the minimum) */
    int64_t remaining_ttl;  /* from the last checkpoint, 0 = none */
    uint64_t expiry_ms;     /* deadline; 0 = never (not primary) */
    uint64_t next_check_ms; /* heap key: when the expiry scan looks again */
    size_t heap_pos;
    struct lease_entry *next; /* hash chain */
} lease_entry_t;

struct lessor {
    pthread_mutex_t mu;
    mvcc_t *m;
    int64_t min_ttl;
    int primary;
    lease_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    lease_entry_t **heap;
    size_t heap_n, heap_cap;
};

/* ---- encodings ---- */

int lease_error_code(int err) {
    switch (err) {
    case LEASE_E_NOT_FOUND: return GRPC_NOT_FOUND;
    case LEASE_E_EXISTS: return GRPC_FAILED_PRECONDITION;
    case LEASE_E_TTL_TOO_LARGE: return GRPC_OUT_OF_RANGE;
    case LEASE_OK: return 0;
    default: return GRPC_INTERNAL;
    }
}

const char *lease_error_message(int err) {
    switch (err) {
    case LEASE_E_NOT_FOUND: return "etcdserver: requested lease not found";
    case LEASE_E_EXISTS: return "etcdserver: lease already exists";
    case LEASE_E_TTL_TOO_LARGE: return "etcdserver: too large lease TTL";
    case LEASE_OK: return "";
    default: return "kshim: storage error";
    }
}

/* ---- expiry heap (caller holds mu) ---- */

static int heap_less(const lessor_t *l, size_t a, size_t b) {
    return l->heap[a]->next_check_ms < l->heap[b]->next_check_ms;
}

static void heap_swap(lessor_t *l, size_t a, size_t b) {
    lease_entry_t *x = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = x;
    l->heap[a]->heap_pos = a;
    l->heap[b]->heap_pos = b;
}

static void heap_up(lessor_t *l, size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(l, i, p)) break;
        heap_swap(l, i, p);
        i = p;
    }
}

static void heap_down(lessor_t *l, size_t i) {
    for (;;) {
        size_t c = 2 * i + 1, best = i;
        if (c < l->heap_n && heap_less(l, c, best)) best = c;
        if (c + 1 < l->heap_n && heap_less(l, c + 1, best)) best = c + 1;
        if (best == i) break;
        heap_swap(l, i, best);
        i = best;
    }
}

static void heap_remove(lessor_t *l, lease_entry_t *e) {
    size_t i = e->heap_pos;
    if (i == NOT_IN_HEAP) return;
    assert(i < l->heap_n && l->heap[i] == e);
    l->heap_n--;
    if (i != l->heap_n) {
        l->heap[i] = l->heap[l->heap_n];
        l->heap[i]->heap_pos = i;
        heap_down(l, i);
        heap_up(l, i);
    }
    e->heap_pos = NOT_IN_HEAP;
}

/* Put e in the heap at key `when` (or move it there). */
static void heap_set(lessor_t *l, lease_entry_t *e, uint64_t when) {
    e->next_check_ms = when;
    if (e->heap_pos != NOT_IN_HEAP) {
        heap_down(l, e->heap_pos);
        heap_up(l, e->heap_pos);
        return;
    }
    if (l->heap_n == l->heap_cap) {
        size_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
        lease_entry_t **h = realloc(l->heap, cap * sizeof *h);
        if (!h) abort();
        l->heap = h;
        l->heap_cap = cap;
    }
    e->heap_pos = l->heap_n;
    l->heap[l->heap_n++] = e;
    heap_up(l, e->heap_pos);
}

/* ---- lease table (caller holds mu) ---- */

static size_t bucket_of(const lessor_t *l, int64_t id) {
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 17) & (l->nbuckets - 1);
}

static lease_entry_t *table_find(const lessor_t *l, int64_t id) {
    for (lease_entry_t *e = l->buckets[bucket_of(l, id)]; e; e = e->next)
        if (e->id == id) return e;
    return NULL;
}

static void table_grow(lessor_t *l) {
    size_t old_n = l->nbuckets;
    lease_entry_t **old = l->buckets;
    l->nbuckets = old_n * 2;
    l->buckets = calloc(l->nbuckets, sizeof *l->buckets);
    if (!l->buckets) abort();
    for (size_t i = 0; i < old_n; i++) {
        lease_entry_t *e = old[i];
        while (e) {
            lease_entry_t *next = e->next;
            size_t b = bucket_of(l, e->id);
            e->next = l->buckets[b];
            l->buckets[b] = e;
            e = next;
        }
    }
    free(old);
}

static lease_entry_t *table_insert(lessor_t *l, int64_t id, int64_t ttl) {
    assert(!table_find(l, id));
    if (l->count + 1 > l->nbuckets) table_grow(l);
    lease_entry_t *e = calloc(1, sizeof *e);
    if (!e) abort();
    e->id = id;
    e->ttl = ttl;
    e->heap_pos = NOT_IN_HEAP;
    size_t b = bucket_of(l, id);
    e->next = l->buckets[b];
    l->buckets[b] = e;
    l->count++;
    return e;
}

static void table_remove(lessor_t *l, int64_t id) {
    lease_entry_t **pp = &l->buckets[bucket_of(l, id)];
    while (*pp && (*pp)->id != id) pp = &(*pp)->next;
    lease_entry_t *e = *pp;
    if (!e) return;
    *pp = e->next;
    heap_remove(l, e);
    free(e);
    l->count--;
}

/* etcd's Lease.refresh(extend): deadline = now + extend + (remaining or TTL). */
static void refresh(lessor_t *l, lease_entry_t *e, uint64_t now_ms, uint64_t extend_ms) {
    int64_t secs = e->remaining_ttl > 0 ? e->remaining_ttl : e->ttl;
    if (secs > LEASE_MAX_TTL) secs = LEASE_MAX_TTL; /* a checkpoint's: keeps the deadline in range */
    e->expiry_ms = now_ms + extend_ms + (uint64_t)secs * 1000u;
    heap_set(l, e, e->expiry_ms);
}

/* ---- open / free ---- */

typedef struct load_ctx {
    lessor_t *l;
    int corrupt;
} load_ctx_t;

/* One 'L' record. Only lease records live under 'L': another shape, or a
 * TTL above etcd's maximum (no grant writes one), is corruption, an error
 * (never "no such lease"). */
static int load_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    load_ctx_t *c = arg;
    lessor_t *l = c->l;
    if (key_len != 9 || val_len < 8) {
        fprintf(stderr, "lease: a lease record of %zu/%zu bytes: the store is corrupt\n", key_len, val_len);
        c->corrupt = 1;
        return 1;
    }
    int64_t id = (int64_t)get_be64(key + 1);
    int64_t ttl = (int64_t)get_be64(val);
    if (ttl > LEASE_MAX_TTL) {
        fprintf(stderr, "lease: lease %016llx has a TTL of %lld s: the store is corrupt\n",
                (unsigned long long)id, (long long)ttl);
        c->corrupt = 1;
        return 1;
    }
    if (ttl < l->min_ttl) ttl = l->min_ttl; /* lessor.initAndRecover does the same */
    if (!table_find(l, id)) table_insert(l, id, ttl);
    return 0;
}

int lessor_open(mvcc_t *m, int64_t min_ttl, lessor_t **out) {
    lessor_t *l = calloc(1, sizeof *l);
    if (!l) return LEASE_E_IO;
    pthread_mutex_init(&l->mu, NULL);
    l->m = m;
    l->min_ttl = min_ttl;
    l->nbuckets = 64;
    l->buckets = calloc(l->nbuckets, sizeof *l->buckets);
    if (!l->buckets) {
        lessor_free(l);
        return LEASE_E_IO;
    }
    const uint8_t prefix = 'L';
    load_ctx_t c = {l, 0};
    if (mvcc_raw_scan(m, &prefix, 1, load_one, &c) != MVCC_OK || c.corrupt) {
        lessor_free(l);
        return LEASE_E_IO;
    }
    *out = l;
    return LEASE_OK;
}

void lessor_free(lessor_t *l) {
    if (!l) return;
    for (size_t i = 0; l->buckets && i < l->nbuckets; i++) {
        lease_entry_t *e = l->buckets[i];
        while (e) {
            lease_entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(l->buckets);
    free(l->heap);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ---- queries ---- */

int lessor_exists(lessor_t *l, int64_t id) {
    pthread_mutex_lock(&l->mu);
    int found = table_find(l, id) != NULL;
    pthread_mutex_unlock(&l->mu);
    return found;
}

size_t lessor_count(lessor_t *l) {
    pthread_mutex_lock(&l->mu);
    size_t n = l->count;
    pthread_mutex_unlock(&l->mu);
    return n;
}

int lessor_is_primary(lessor_t *l) {
    pthread_mutex_lock(&l->mu);
    int p = l->primary;
    pthread_mutex_unlock(&l->mu);
    return p;
}

static int expired(const lease_entry_t *e, uint64_t now_ms) {
    return e->expiry_ms != 0 && e->expiry_ms <= now_ms;
}

int lessor_renew(lessor_t *l, int64_t id, uint64_t now_ms, int64_t *ttl) {
    pthread_mutex_lock(&l->mu);
    lease_entry_t *e = table_find(l, id);
    int rc = LEASE_E_NOT_FOUND;
    if (e && !expired(e, now_ms)) {
        e->remaining_ttl = 0;
        if (l->primary) refresh(l, e, now_ms, 0);
        *ttl = e->ttl;
        rc = LEASE_OK;
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int lessor_lookup(lessor_t *l, int64_t id, uint64_t now_ms, int64_t *granted_ttl, int64_t *remaining_s) {
    pthread_mutex_lock(&l->mu);
    lease_entry_t *e = table_find(l, id);
    if (e) {
        *granted_ttl = e->ttl;
        if (e->expiry_ms == 0)
            *remaining_s = INT64_MAX / 1000000000; /* etcd: math.MaxInt64 ns */
        else
            /* C division truncates toward zero, as Go's int64(float) does */
            *remaining_s = ((int64_t)e->expiry_ms - (int64_t)now_ms) / 1000;
    }
    pthread_mutex_unlock(&l->mu);
    return e ? LEASE_OK : LEASE_E_NOT_FOUND;
}

size_t lessor_take_expired(lessor_t *l, uint64_t now_ms, int64_t *ids, size_t max) {
    size_t n = 0;
    pthread_mutex_lock(&l->mu);
    while (l->primary && n < max && l->heap_n > 0 && l->heap[0]->next_check_ms <= now_ms) {
        lease_entry_t *e = l->heap[0];
        if (!expired(e, now_ms)) {
            /* renewed since it was scheduled: look again at its deadline */
            heap_set(l, e, e->expiry_ms ? e->expiry_ms : UINT64_MAX);
            continue;
        }
        ids[n++] = e->id;
        heap_set(l, e, now_ms + LEASE_RETRY_MS);
    }
    pthread_mutex_unlock(&l->mu);
    return n;
}

static int cmp_by_expiry(const void *a, const void *b) {
    const lease_entry_t *x = *(lease_entry_t *const *)a, *y = *(lease_entry_t *const *)b;
    if (x->expiry_ms != y->expiry_ms) return x->expiry_ms < y->expiry_ms ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* All entries, sorted by deadline (caller holds mu; malloc'd array). */
static lease_entry_t **sorted_entries(lessor_t *l) {
    lease_entry_t **v = malloc((l->count ? l->count : 1) * sizeof *v);
    if (!v) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < l->nbuckets; i++)
        for (lease_entry_t *e = l->buckets[i]; e; e = e->next) v[n++] = e;
    assert(n == l->count);
    qsort(v, n, sizeof *v, cmp_by_expiry);
    return v;
}

int lessor_list(lessor_t *l, int64_t **ids, size_t *n) {
    pthread_mutex_lock(&l->mu);
    lease_entry_t **v = sorted_entries(l);
    int64_t *out = v ? malloc((l->count ? l->count : 1) * sizeof *out) : NULL;
    if (!out) {
        free(v);
        pthread_mutex_unlock(&l->mu);
        return LEASE_E_IO;
    }
    for (size_t i = 0; i < l->count; i++) out[i] = v[i]->id;
    *n = l->count;
    *ids = out;
    free(v);
    pthread_mutex_unlock(&l->mu);
    return LEASE_OK;
}

void lessor_demote(lessor_t *l) {
    pthread_mutex_lock(&l->mu);
    l->primary = 0;
    for (size_t i = 0; i < l->nbuckets; i++)
        for (lease_entry_t *e = l->buckets[i]; e; e = e->next) {
            e->expiry_ms = 0;
            heap_set(l, e, UINT64_MAX);
        }
    pthread_mutex_unlock(&l->mu);
}

/* Swaps the contents of two lessors (the caller holds a->mu; b is private). */
static void lessor_swap_tables(lessor_t *a, lessor_t *b) {
    lease_entry_t **buckets = a->buckets, **heap = a->heap;
    size_t nbuckets = a->nbuckets, count = a->count, heap_n = a->heap_n, heap_cap = a->heap_cap;
    a->buckets = b->buckets;
    a->nbuckets = b->nbuckets;
    a->count = b->count;
    a->heap = b->heap;
    a->heap_n = b->heap_n;
    a->heap_cap = b->heap_cap;
    b->buckets = buckets;
    b->nbuckets = nbuckets;
    b->count = count;
    b->heap = heap;
    b->heap_n = heap_n;
    b->heap_cap = heap_cap;
}

int lessor_reload(lessor_t *l, uint64_t now_ms, uint64_t extend_ms) {
    lessor_t *fresh = NULL;
    int rc = lessor_open(l->m, l->min_ttl, &fresh);
    if (rc != LEASE_OK) return rc;
    pthread_mutex_lock(&l->mu);
    int primary = l->primary;
    lessor_swap_tables(l, fresh);
    l->primary = 0;
    pthread_mutex_unlock(&l->mu);
    lessor_free(fresh); /* now the old table */
    if (primary) lessor_promote(l, now_ms, extend_ms);
    return LEASE_OK;
}

/* etcd's Promote: refresh every lease by extend, then spread pile-ups so at
 * most 3/4 of the revoke rate expire in any one-second window. */
void lessor_promote(lessor_t *l, uint64_t now_ms, uint64_t extend_ms) {
    pthread_mutex_lock(&l->mu);
    l->primary = 1;
    for (size_t i = 0; i < l->nbuckets; i++)
        for (lease_entry_t *e = l->buckets[i]; e; e = e->next) refresh(l, e, now_ms, extend_ms);
    if (l->count >= LEASE_REVOKE_RATE) {
        lease_entry_t **v = sorted_entries(l);
        if (v) {
            const double target = (3.0 * LEASE_REVOKE_RATE) / 4;
            double base = (double)(v[0]->expiry_ms - now_ms);
            double next_window = base + 1000.0;
            size_t expires = 0;
            for (size_t i = 0; i < l->count; i++) {
                lease_entry_t *e = v[i];
                double remaining = (double)(e->expiry_ms - now_ms);
                if (remaining > next_window) {
                    base = remaining;
                    next_window = base + 1000.0;
                    expires = 1;
                    continue;
                }
                expires++;
                if ((double)expires <= target) continue;
                double delay = 1000.0 * ((double)expires / target) - (remaining - base);
                next_window = base + delay;
                refresh(l, e, now_ms, (uint64_t)(delay > 0 ? delay : 0) + extend_ms);
            }
            free(v);
        }
    }
    pthread_mutex_unlock(&l->mu);
}

/* ---- apply ---- */

int lessor_is_request(const Kshim__InternalRequest *req) {
    return req && (req->lease_grant || req->lease_revoke || req->lease_checkpoint);
}

static Etcdserverpb__ResponseHeader make_header(const kv_header_info_t *hdr, int64_t rev) {
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    if (hdr) {
        h.cluster_id = hdr->cluster_id;
        h.member_id = hdr->member_id;
        h.raft_term = hdr->raft_term;
    }
    h.revision = rev;
    return h;
}

static void pack(kv_result_t *res, const ProtobufCMessage *msg, int64_t rev) {
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) abort();
    protobuf_c_message_pack(msg, buf);
    res->code = 0;
    res->message[0] = 0;
    res->resp = buf;
    res->resp_len = len;
    res->revision = rev;
}

static void set_error(kv_result_t *res, int err, int64_t rev) {
    res->code = lease_error_code(err);
    snprintf(res->message, sizeof res->message, "%s", lease_error_message(err));
    res->revision = rev;
}

/* Commits an empty write txn at index (only the applied index moves). */
static int consume_entry(lessor_t *l, uint64_t index) {
    return mvcc_set_applied(l->m, index) == MVCC_OK ? LEASE_OK : LEASE_E_IO;
}

static int apply_grant(lessor_t *l, uint64_t index, const Etcdserverpb__LeaseGrantRequest *r,
                       const kv_header_info_t *hdr, kv_result_t *res, uint64_t now_ms) {
    int err = LEASE_OK;
    if (r->id == 0)
        err = LEASE_E_NOT_FOUND; /* lessor.Grant(NoLease); the proposer never sends it */
    else if (r->ttl > LEASE_MAX_TTL)
        err = LEASE_E_TTL_TOO_LARGE;
    else if (lessor_exists(l, r->id))
        err = LEASE_E_EXISTS;
    if (err != LEASE_OK) {
        if (consume_entry(l, index) != LEASE_OK) return LEASE_E_IO;
        set_error(res, err, mvcc_apply_revision(l->m));
        return LEASE_OK;
    }
    int64_t ttl = r->ttl < l->min_ttl ? l->min_ttl : r->ttl;
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    int rc = mvcc_txn_begin_write(l->m, &a, &t);
    if (rc == MVCC_OK) {
        uint8_t key[9], val[16];
        lease_record_key(key, r->id);
        put_be64(val, (uint64_t)ttl);
        put_be64(val + 8, 0);
        rc = mvcc_txn_raw_put(t, key, sizeof key, val, sizeof val);
        if (rc == MVCC_OK) rc = mvcc_txn_commit(t, index);
        mvcc_txn_end(t);
    }
    kv_arena_free(&a);
    if (rc != MVCC_OK) return LEASE_E_IO;

    pthread_mutex_lock(&l->mu);
    lease_entry_t *e = table_insert(l, r->id, ttl);
    if (l->primary) refresh(l, e, now_ms, 0);
    pthread_mutex_unlock(&l->mu);

    int64_t rev = mvcc_apply_revision(l->m);
    Etcdserverpb__ResponseHeader h = make_header(hdr, rev);
    Etcdserverpb__LeaseGrantResponse resp = ETCDSERVERPB__LEASE_GRANT_RESPONSE__INIT;
    resp.header = &h;
    resp.id = r->id;
    resp.ttl = ttl;
    pack(res, &resp.base, rev);
    return LEASE_OK;
}

typedef struct revoke_ctx {
    mvcc_txn_t *t;
    int64_t id;
    int rc;
} revoke_ctx_t;

/* One attached key: delete it (a DELETE event with prev_kv) and its 'M'
 * record. The scan is in key order, etcd sorts the keys the same way. */
static int revoke_key(void *arg, const uint8_t *key, size_t len) {
    revoke_ctx_t *c = arg;
    mvcc_range_t rg = mvcc_range_make(key, len, NULL, 0);
    mvcc_txn_count(c->t, MVCC_OP_DELETE); /* etcd's revoke: one DeleteRange per key */
    if (mvcc_txn_delete_range(c->t, &rg, NULL) < 0 || lease_txn_detach(c->t, c->id, key, len) != MVCC_OK) {
        c->rc = MVCC_ERR_IO;
        return 1;
    }
    return 0;
}

static int apply_revoke(lessor_t *l, uint64_t index, const Etcdserverpb__LeaseRevokeRequest *r,
                        const kv_header_info_t *hdr, kv_result_t *res) {
    if (!lessor_exists(l, r->id)) {
        if (consume_entry(l, index) != LEASE_OK) return LEASE_E_IO;
        set_error(res, LEASE_E_NOT_FOUND, mvcc_apply_revision(l->m));
        return LEASE_OK;
    }
    /* The attached keys are read from the 'M' side table, which holds only
     * what is written: write the apply group first (mvcc.h side tables). */
    int rc = mvcc_group_flush(l->m);
    if (rc != MVCC_OK) return LEASE_E_IO;
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    rc = mvcc_txn_begin_write(l->m, &a, &t);
    if (rc == MVCC_OK) {
        revoke_ctx_t c = {t, r->id, MVCC_OK};
        rc = lease_scan_keys(l->m, r->id, revoke_key, &c);
        if (rc == MVCC_OK) rc = c.rc;
        uint8_t key[9];
        lease_record_key(key, r->id);
        if (rc == MVCC_OK) rc = mvcc_txn_raw_delete(t, key, sizeof key);
        if (rc == MVCC_OK) rc = mvcc_txn_commit(t, index);
        mvcc_txn_end(t);
    }
    kv_arena_free(&a);
    if (rc != MVCC_OK) return LEASE_E_IO;

    pthread_mutex_lock(&l->mu);
    table_remove(l, r->id);
    pthread_mutex_unlock(&l->mu);

    int64_t rev = mvcc_apply_revision(l->m);
    Etcdserverpb__ResponseHeader h = make_header(hdr, rev);
    Etcdserverpb__LeaseRevokeResponse resp = ETCDSERVERPB__LEASE_REVOKE_RESPONSE__INIT;
    resp.header = &h;
    pack(res, &resp.base, rev);
    return LEASE_OK;
}

static int apply_checkpoint(lessor_t *l, uint64_t index, const Etcdserverpb__LeaseCheckpointRequest *r,
                            const kv_header_info_t *hdr, kv_result_t *res) {
    if (consume_entry(l, index) != LEASE_OK) return LEASE_E_IO;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < r->n_checkpoints; i++) {
        const Etcdserverpb__LeaseCheckpoint *cp = r->checkpoints[i];
        lease_entry_t *e = cp ? table_find(l, cp->id) : NULL;
        if (e) e->remaining_ttl = cp->remaining_ttl;
    }
    pthread_mutex_unlock(&l->mu);
    int64_t rev = mvcc_apply_revision(l->m);
    Etcdserverpb__ResponseHeader h = make_header(hdr, rev);
    Etcdserverpb__LeaseCheckpointResponse resp = ETCDSERVERPB__LEASE_CHECKPOINT_RESPONSE__INIT;
    resp.header = &h;
    pack(res, &resp.base, rev);
    return LEASE_OK;
}

int lessor_apply(lessor_t *l, uint64_t index, const Kshim__InternalRequest *req, const kv_header_info_t *hdr,
                 kv_result_t *res, uint64_t now_ms) {
    if (!lessor_is_request(req)) return 0;
    if (index <= mvcc_apply_index(l->m)) return 1;
    memset(res, 0, sizeof *res);
    int rc;
    if (req->lease_grant)
        rc = apply_grant(l, index, req->lease_grant, hdr, res, now_ms);
    else if (req->lease_revoke)
        rc = apply_revoke(l, index, req->lease_revoke, hdr, res);
    else
        rc = apply_checkpoint(l, index, req->lease_checkpoint, hdr, res);
    if (rc != LEASE_OK) {
        kv_result_clear(res);
        set_error(res, LEASE_E_IO, mvcc_apply_revision(l->m));
        return -1;
    }
    return 1;
}
