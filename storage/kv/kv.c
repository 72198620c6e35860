/*
 * kv.c: etcd's KV semantics (Range, Put, DeleteRange, Txn, Compact) on the
 * MVCC store, following etcd 3.4/3.5: etcdserver/apply.go (Range filters and
 * sorting, Put, DeleteRange, Txn with compare paths and nested txns),
 * etcdserver/api/v3rpc/key.go (request validation, duplicate-key intervals)
 * and etcdserver/quota.go (backend quota). Builds protobuf responses in a
 * per-request arena and packs them into kv_result_t.
 *
 * Headers: the top-level response header carries cluster_id, member_id,
 * raft_term and revision; nested Txn responses carry only the revision, and
 * a nested TxnResponse's header is empty (revision 0), exactly like etcd.
 */
#include "kv.h"

#include <assert.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_status.h"
#include "kv_arena.h"
#include "lease_keys.h"
#include "mvcc.h"

#define ERR_EMPTY_KEY "etcdserver: key is not provided"
#define ERR_KEY_NOT_FOUND "etcdserver: key not found"
#define ERR_VALUE_PROVIDED "etcdserver: value is provided"
#define ERR_LEASE_PROVIDED "etcdserver: lease is provided"
#define ERR_TOO_MANY_OPS "etcdserver: too many operations in txn request"
#define ERR_DUPLICATE_KEY "etcdserver: duplicate key given in txn request"
#define ERR_COMPACTED "etcdserver: mvcc: required revision has been compacted"
#define ERR_FUTURE_REV "etcdserver: mvcc: required revision is a future revision"
#define ERR_NO_SPACE "etcdserver: mvcc: database space exceeded"
#define ERR_LEASE_NOT_FOUND "etcdserver: requested lease not found"

/* Internal error values carried through the txn code (0 = ok, errors
 * negative as everywhere; -1 is left to set_error: "an etcd error is in
 * res"). */
enum {
    KV_OK = 0,
    KV_E_COMPACTED = -2,
    KV_E_FUTURE_REV = -3,
    KV_E_KEY_NOT_FOUND = -4,
    KV_E_LEASE_NOT_FOUND = -5,
    KV_E_IO = -6,
};

void kv_result_clear(kv_result_t *res) {
    free(res->resp);
    memset(res, 0, sizeof(*res));
}

static int set_error(kv_result_t *res, int code, const char *msg) {
    res->code = code;
    snprintf(res->message, sizeof(res->message), "%s", msg);
    return -1;
}

static void set_kv_error(kv_result_t *res, int e) {
    switch (e) {
    case KV_E_COMPACTED: set_error(res, GRPC_OUT_OF_RANGE, ERR_COMPACTED); break;
    case KV_E_FUTURE_REV: set_error(res, GRPC_OUT_OF_RANGE, ERR_FUTURE_REV); break;
    case KV_E_KEY_NOT_FOUND: set_error(res, GRPC_INVALID_ARGUMENT, ERR_KEY_NOT_FOUND); break;
    case KV_E_LEASE_NOT_FOUND: set_error(res, GRPC_NOT_FOUND, ERR_LEASE_NOT_FOUND); break;
    default: set_error(res, GRPC_INTERNAL, "kshim: storage error"); break;
    }
}

static int mvcc_to_kv_error(int rc) {
    switch (rc) {
    case MVCC_OK: return KV_OK;
    case MVCC_ERR_COMPACTED: return KV_E_COMPACTED;
    case MVCC_ERR_FUTURE_REV: return KV_E_FUTURE_REV;
    default: return KV_E_IO;
    }
}

static Etcdserverpb__ResponseHeader *new_header(kv_arena_t *a, int64_t rev) {
    Etcdserverpb__ResponseHeader *h = kv_arena_alloc(a, sizeof(*h));
    etcdserverpb__response_header__init(h);
    h->revision = rev;
    return h;
}

static void fill_header(Etcdserverpb__ResponseHeader *h, const kv_header_info_t *hdr) {
    if (!hdr) return;
    h->cluster_id = hdr->cluster_id;
    h->member_id = hdr->member_id;
    h->raft_term = hdr->raft_term;
}

static void pack_result(kv_result_t *res, const ProtobufCMessage *msg, int64_t rev) {
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

static int lease_exists(mvcc_t *m, int64_t id) {
    const mvcc_options_t *o = mvcc_options(m);
    return o->lease_exists ? o->lease_exists(o->lease_ctx, id) : 0;
}

/* ---- Range (apply.go Range) ---- */

static int64_t kv_sort_field(const Mvccpb__KeyValue *kv, int target) {
    switch (target) {
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION: return kv->version;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE: return kv->create_revision;
    case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD: return kv->mod_revision;
    default: return 0;
    }
}

static int bin_cmp(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->data, b->data, n) : 0;
    if (c) return c;
    return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
}

typedef struct kv_sort_spec {
    int target;
    int descend;
} kv_sort_spec_t;

/* Orders by the target (reversed for DESCEND); equal targets stay in
 * ascending key order in both directions. That is what etcd's sort.Sort and
 * sort.Sort(sort.Reverse()) give for up to 12 results (Go sorts those by
 * insertion, which is stable, and the scan is in key order); for more, Go's
 * pdqsort leaves ties in no documented order, and key order is a valid one. */
static int kv_cmp_target(const void *pa, const void *pb, void *ctx) {
    const Mvccpb__KeyValue *a = *(Mvccpb__KeyValue *const *)pa;
    const Mvccpb__KeyValue *b = *(Mvccpb__KeyValue *const *)pb;
    const kv_sort_spec_t *spec = ctx;
    int c;
    if (spec->target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY) {
        c = bin_cmp(&a->key, &b->key);
    } else if (spec->target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE) {
        c = bin_cmp(&a->value, &b->value);
    } else {
        int64_t x = kv_sort_field(a, spec->target), y = kv_sort_field(b, spec->target);
        c = x < y ? -1 : (x > y ? 1 : 0);
    }
    if (spec->descend) c = -c;
    if (c == 0) c = bin_cmp(&a->key, &b->key);
    return c;
}

static void sort_kvs(Mvccpb__KeyValue **kvs, size_t n, int target, int descend) {
    if (n < 2) return; /* also: an empty result has kvs == NULL, which qsort_r must not get */
    kv_sort_spec_t spec = {target, descend};
    qsort_r(kvs, n, sizeof(*kvs), kv_cmp_target, &spec);
}

static void prune_kvs(mvcc_kv_list_t *l, int (*drop)(const Mvccpb__KeyValue *, int64_t), int64_t arg) {
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++)
        if (!drop(l->kvs[i], arg)) l->kvs[j++] = l->kvs[i];
    l->n = j;
}

static int drop_mod_above(const Mvccpb__KeyValue *kv, int64_t v) { return kv->mod_revision > v; }
static int drop_mod_below(const Mvccpb__KeyValue *kv, int64_t v) { return kv->mod_revision < v; }
static int drop_create_above(const Mvccpb__KeyValue *kv, int64_t v) { return kv->create_revision > v; }
static int drop_create_below(const Mvccpb__KeyValue *kv, int64_t v) { return kv->create_revision < v; }

static int do_range(mvcc_txn_t *t, kv_arena_t *a, const Etcdserverpb__RangeRequest *r,
                    Etcdserverpb__RangeResponse **out) {
    int64_t limit = r->limit;
    if (r->sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE || r->min_mod_revision != 0 ||
        r->max_mod_revision != 0 || r->min_create_revision != 0 || r->max_create_revision != 0)
        limit = 0;
    if (limit > 0 && limit < INT64_MAX) limit++; /* one more tells `more`; INT64_MAX: no limit in effect */
    mvcc_range_t rg = mvcc_range_make(r->key.data, r->key.len, r->range_end.data, r->range_end.len);
    mvcc_kv_list_t l = {0};
    int64_t count = 0;
    mvcc_txn_count(t, MVCC_OP_RANGE);
    int rc = mvcc_txn_range(t, &rg, r->revision, limit, r->count_only, &l, &count);
    if (rc != MVCC_OK) return mvcc_to_kv_error(rc);
    if (r->max_mod_revision != 0) prune_kvs(&l, drop_mod_above, r->max_mod_revision);
    if (r->min_mod_revision != 0) prune_kvs(&l, drop_mod_below, r->min_mod_revision);
    if (r->max_create_revision != 0) prune_kvs(&l, drop_create_above, r->max_create_revision);
    if (r->min_create_revision != 0) prune_kvs(&l, drop_create_below, r->min_create_revision);
    int order = r->sort_order;
    if (r->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE)
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    if (order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND ||
        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND) {
        /* the scan is in ascending key order already */
        if (!(r->sort_target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
              order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND))
            sort_kvs(l.kvs, l.n, r->sort_target, order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);
    }
    Etcdserverpb__RangeResponse *resp = kv_arena_alloc(a, sizeof(*resp));
    etcdserverpb__range_response__init(resp);
    if (r->limit > 0 && (int64_t)l.n > r->limit) {
        l.n = (size_t)r->limit;
        resp->more = 1;
    }
    resp->header = new_header(a, mvcc_txn_rev(t));
    resp->count = count;
    if (r->keys_only) {
        /* copies: the same KeyValue may be shared with an event or prev_kv */
        for (size_t i = 0; i < l.n; i++) {
            Mvccpb__KeyValue *kv = kv_arena_dup(a, l.kvs[i], sizeof(*kv));
            kv->value.data = NULL;
            kv->value.len = 0;
            l.kvs[i] = kv;
        }
    }
    resp->n_kvs = l.n;
    resp->kvs = l.kvs;
    *out = resp;
    return KV_OK;
}

/* ---- Put / DeleteRange (apply.go) ---- */

/* Keeps the lease membership ('M' side table, mvcc/lease_keys.h) in step with a key
 * whose lease changes from `from` to `to` (0 = none) in this txn. */
static int reattach(mvcc_txn_t *t, const uint8_t *key, size_t key_len, int64_t from, int64_t to) {
    if (from == to) return MVCC_OK;
    if (from != 0 && lease_txn_detach(t, from, key, key_len) != MVCC_OK) return MVCC_ERR_IO;
    if (to != 0 && lease_txn_attach(t, to, key, key_len) != MVCC_OK) return MVCC_ERR_IO;
    return MVCC_OK;
}

static int do_put(mvcc_txn_t *t, kv_arena_t *a, const Etcdserverpb__PutRequest *p,
                  Etcdserverpb__PutResponse **out) {
    const uint8_t *val = p->value.data;
    size_t val_len = p->value.len;
    int64_t lease = p->lease;
    const Mvccpb__KeyValue *cur = NULL;
    if (p->ignore_value || p->ignore_lease || p->prev_kv) {
        mvcc_range_t rg = mvcc_range_make(p->key.data, p->key.len, NULL, 0);
        mvcc_kv_list_t l = {0};
        int64_t count;
        mvcc_txn_count(t, MVCC_OP_RANGE);
        int rc = mvcc_txn_range(t, &rg, 0, 0, 0, &l, &count);
        if (rc != MVCC_OK) return mvcc_to_kv_error(rc);
        cur = l.n ? l.kvs[0] : NULL;
    }
    if ((p->ignore_value || p->ignore_lease) && !cur) return KV_E_KEY_NOT_FOUND;
    if (p->ignore_value) {
        val = cur->value.data;
        val_len = cur->value.len;
    }
    if (p->ignore_lease) lease = cur->lease;
    Etcdserverpb__PutResponse *resp = kv_arena_alloc(a, sizeof(*resp));
    etcdserverpb__put_response__init(resp);
    if (p->prev_kv && cur) resp->prev_kv = (Mvccpb__KeyValue *)cur;
    const Mvccpb__KeyValue *replaced = NULL;
    mvcc_txn_count(t, MVCC_OP_PUT);
    int rc = mvcc_txn_put(t, p->key.data, p->key.len, val, val_len, lease, &replaced);
    if (rc != MVCC_OK) return mvcc_to_kv_error(rc);
    if (reattach(t, p->key.data, p->key.len, replaced ? replaced->lease : 0, lease) != MVCC_OK)
        return KV_E_IO;
    resp->header = new_header(a, mvcc_txn_rev(t));
    *out = resp;
    return KV_OK;
}

static int do_delete(mvcc_txn_t *t, kv_arena_t *a, const Etcdserverpb__DeleteRangeRequest *d,
                     Etcdserverpb__DeleteRangeResponse **out) {
    mvcc_range_t rg = mvcc_range_make(d->key.data, d->key.len, d->range_end.data, d->range_end.len);
    mvcc_kv_list_t prev = {0};
    if (d->prev_kv) mvcc_txn_count(t, MVCC_OP_RANGE);
    mvcc_txn_count(t, MVCC_OP_DELETE);
    int64_t n = mvcc_txn_delete_range(t, &rg, &prev);
    if (n < 0) return KV_E_IO;
    for (size_t i = 0; i < prev.n; i++)
        if (reattach(t, prev.kvs[i]->key.data, prev.kvs[i]->key.len, prev.kvs[i]->lease, 0) != MVCC_OK)
            return KV_E_IO;
    if (!d->prev_kv) {
        prev.n = 0;
        prev.kvs = NULL;
    }
    Etcdserverpb__DeleteRangeResponse *resp = kv_arena_alloc(a, sizeof(*resp));
    etcdserverpb__delete_range_response__init(resp);
    resp->deleted = n;
    resp->n_prev_kvs = prev.n;
    resp->prev_kvs = prev.kvs;
    resp->header = new_header(a, mvcc_txn_rev(t));
    *out = resp;
    return KV_OK;
}

/* ---- Txn (apply.go Txn, compareToPath, checkRequests, applyTxn) ---- */

typedef struct txn_path {
    unsigned char *v; /* one entry per txn visited, in visiting order */
    size_t n, cap;
} txn_path_t;

static void path_push(txn_path_t *p, int ok) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        unsigned char *v = realloc(p->v, cap);
        if (!v) abort();
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (unsigned char)ok;
}

static int cmp_i64(int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); }

static int compare_kv(const Etcdserverpb__Compare *c, const Mvccpb__KeyValue *kv) {
    int result = 0;
    int64_t want = 0;
    switch (c->target) {
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
        ProtobufCBinaryData v = {0, NULL};
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE) v = c->value;
        result = bin_cmp(&kv->value, &v);
        break;
    }
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION)
            want = c->create_revision;
        result = cmp_i64(kv->create_revision, want);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION) want = c->mod_revision;
        result = cmp_i64(kv->mod_revision, want);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION) want = c->version;
        result = cmp_i64(kv->version, want);
        break;
    case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
        if (c->target_union_case == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE) want = c->lease;
        result = cmp_i64(kv->lease, want);
        break;
    default: break;
    }
    switch (c->result) {
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL: return result == 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL: return result != 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER: return result > 0;
    case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS: return result < 0;
    default: return 1;
    }
}

/* *ok gets the compare's outcome; returns KV_OK or the error of the read
 * (a failed read is an error, never "false"). */
static int apply_compare(mvcc_txn_t *t, const Etcdserverpb__Compare *c, int *ok) {
    mvcc_range_t rg = mvcc_range_make(c->key.data, c->key.len, c->range_end.data, c->range_end.len);
    mvcc_kv_list_t l = {0};
    int64_t count;
    mvcc_txn_count(t, MVCC_OP_RANGE);
    int rc = mvcc_txn_range(t, &rg, 0, 0, 0, &l, &count);
    if (rc != MVCC_OK) return mvcc_to_kv_error(rc);
    *ok = 1;
    if (l.n == 0) {
        Mvccpb__KeyValue empty = MVCCPB__KEY_VALUE__INIT;
        *ok = c->target != ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE && compare_kv(c, &empty);
        return KV_OK;
    }
    for (size_t i = 0; i < l.n && *ok; i++) *ok = compare_kv(c, l.kvs[i]);
    return KV_OK;
}

static Etcdserverpb__RequestOp **txn_branch(const Etcdserverpb__TxnRequest *rt, int ok, size_t *n) {
    *n = ok ? rt->n_success : rt->n_failure;
    return ok ? rt->success : rt->failure;
}

static int compare_to_path(mvcc_txn_t *t, const Etcdserverpb__TxnRequest *rt, txn_path_t *path) {
    int ok = 1;
    for (size_t i = 0; i < rt->n_compare && ok; i++) {
        int e = apply_compare(t, rt->compare[i], &ok);
        if (e) return e;
    }
    path_push(path, ok);
    size_t n;
    Etcdserverpb__RequestOp **ops = txn_branch(rt, ok, &n);
    for (size_t i = 0; i < n; i++) {
        if (ops[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN || !ops[i]->request_txn)
            continue;
        int e = compare_to_path(t, ops[i]->request_txn, path);
        if (e) return e;
    }
    return KV_OK;
}

typedef int (*check_fn)(mvcc_txn_t *t, mvcc_t *m, const Etcdserverpb__RequestOp *op);

static int check_put(mvcc_txn_t *t, mvcc_t *m, const Etcdserverpb__RequestOp *op) {
    if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT || !op->request_put) return KV_OK;
    const Etcdserverpb__PutRequest *p = op->request_put;
    if (p->ignore_value || p->ignore_lease) {
        mvcc_range_t rg = mvcc_range_make(p->key.data, p->key.len, NULL, 0);
        mvcc_kv_list_t l = {0};
        int64_t count;
        mvcc_txn_count(t, MVCC_OP_RANGE);
        int rc = mvcc_txn_range(t, &rg, 0, 1, 0, &l, &count);
        if (rc != MVCC_OK) return mvcc_to_kv_error(rc);
        if (l.n == 0) return KV_E_KEY_NOT_FOUND;
    }
    if (p->lease != 0 && !lease_exists(m, p->lease)) return KV_E_LEASE_NOT_FOUND;
    return KV_OK;
}

static int check_range(mvcc_txn_t *t, mvcc_t *m, const Etcdserverpb__RequestOp *op) {
    (void)m;
    if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE || !op->request_range)
        return KV_OK;
    int64_t rev = op->request_range->revision;
    if (rev == 0) return KV_OK;
    if (rev > mvcc_txn_rev(t)) return KV_E_FUTURE_REV;
    if (rev < mvcc_txn_compact_rev(t)) return KV_E_COMPACTED;
    return KV_OK;
}

static int check_requests(mvcc_txn_t *t, mvcc_t *m, const Etcdserverpb__TxnRequest *rt,
                          const txn_path_t *path, size_t *pos, check_fn f) {
    assert(*pos < path->n);
    int ok = path->v[(*pos)++];
    size_t n;
    Etcdserverpb__RequestOp **ops = txn_branch(rt, ok, &n);
    for (size_t i = 0; i < n; i++) {
        if (ops[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN && ops[i]->request_txn) {
            int e = check_requests(t, m, ops[i]->request_txn, path, pos, f);
            if (e) return e;
            continue;
        }
        int e = f(t, m, ops[i]);
        if (e) return e;
    }
    return KV_OK;
}

static int apply_txn_ops(mvcc_txn_t *t, kv_arena_t *a, const Etcdserverpb__TxnRequest *rt,
                         const txn_path_t *path, size_t *pos, Etcdserverpb__TxnResponse *resp) {
    int ok = path->v[(*pos)++];
    size_t n;
    Etcdserverpb__RequestOp **ops = txn_branch(rt, ok, &n);
    resp->succeeded = ok;
    resp->n_responses = n;
    resp->responses = kv_arena_alloc(a, (n ? n : 1) * sizeof(*resp->responses));
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__ResponseOp *ro = kv_arena_alloc(a, sizeof(*ro));
        etcdserverpb__response_op__init(ro);
        resp->responses[i] = ro;
        const Etcdserverpb__RequestOp *op = ops[i];
        int e = KV_OK;
        switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
            if (op->request_range) e = do_range(t, a, op->request_range, &ro->response_range);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
            if (op->request_put) e = do_put(t, a, op->request_put, &ro->response_put);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
            if (op->request_delete_range)
                e = do_delete(t, a, op->request_delete_range, &ro->response_delete_range);
            break;
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
            ro->response_case = ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
            Etcdserverpb__TxnResponse *sub = kv_arena_alloc(a, sizeof(*sub));
            etcdserverpb__txn_response__init(sub);
            sub->header = new_header(a, 0); /* etcd leaves nested txn headers empty */
            ro->response_txn = sub;
            if (op->request_txn) e = apply_txn_ops(t, a, op->request_txn, path, pos, sub);
            break;
        }
        default: break;
        }
        /* etcd panics here; checks before applying rule these out */
        if (e) return e;
    }
    return KV_OK;
}

static int txn_is_readonly(const Etcdserverpb__TxnRequest *rt) {
    for (int b = 0; b < 2; b++) {
        size_t n;
        Etcdserverpb__RequestOp **ops = txn_branch(rt, b, &n);
        for (size_t i = 0; i < n; i++) {
            const Etcdserverpb__RequestOp *op = ops[i];
            if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT ||
                op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE)
                return 0;
            if (op->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN && op->request_txn &&
                !txn_is_readonly(op->request_txn))
                return 0;
        }
    }
    return 1;
}

int kv_txn_is_readonly(const Etcdserverpb__TxnRequest *req) { return txn_is_readonly(req); }

/* Runs a whole Txn in t (a read txn when the request is read-only). */
static int do_txn(mvcc_txn_t *t, mvcc_t *m, kv_arena_t *a, const Etcdserverpb__TxnRequest *rt,
                  Etcdserverpb__TxnResponse **out) {
    txn_path_t path = {0};
    int e = compare_to_path(t, rt, &path);
    size_t pos = 0;
    if (!e && !txn_is_readonly(rt)) e = check_requests(t, m, rt, &path, &pos, check_put);
    pos = 0;
    if (!e) e = check_requests(t, m, rt, &path, &pos, check_range);
    /* etcd reads the compares and checks in a read txn of their own and
     * applies the ops in a second one (apply.go Txn) */
    if (!txn_is_readonly(rt)) mvcc_txn_count_end(t);
    if (!e) {
        Etcdserverpb__TxnResponse *resp = kv_arena_alloc(a, sizeof(*resp));
        etcdserverpb__txn_response__init(resp);
        pos = 0;
        e = apply_txn_ops(t, a, rt, &path, &pos, resp);
        resp->header = new_header(a, mvcc_txn_rev(t));
        *out = resp;
    }
    free(path.v);
    return e;
}

/* ---- validation (v3rpc/key.go, quota.go) ---- */

static int check_put_request(const Etcdserverpb__PutRequest *r, kv_result_t *res) {
    if (r->key.len == 0) return set_error(res, GRPC_INVALID_ARGUMENT, ERR_EMPTY_KEY);
    if (r->ignore_value && r->value.len != 0)
        return set_error(res, GRPC_INVALID_ARGUMENT, ERR_VALUE_PROVIDED);
    if (r->ignore_lease && r->lease != 0) return set_error(res, GRPC_INVALID_ARGUMENT, ERR_LEASE_PROVIDED);
    return 0;
}

static int check_txn_request(const Etcdserverpb__TxnRequest *r, size_t max_ops, kv_result_t *res);

static int check_request_op(const Etcdserverpb__RequestOp *u, size_t max_ops, kv_result_t *res) {
    switch (u->request_case) {
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
        if (!u->request_range || u->request_range->key.len == 0)
            return set_error(res, GRPC_INVALID_ARGUMENT, ERR_EMPTY_KEY);
        return 0;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
        if (!u->request_put) return set_error(res, GRPC_INVALID_ARGUMENT, ERR_EMPTY_KEY);
        return check_put_request(u->request_put, res);
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
        if (!u->request_delete_range || u->request_delete_range->key.len == 0)
            return set_error(res, GRPC_INVALID_ARGUMENT, ERR_EMPTY_KEY);
        return 0;
    case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
        if (!u->request_txn) return 0;
        return check_txn_request(u->request_txn, max_ops, res);
    default: return set_error(res, GRPC_INVALID_ARGUMENT, ERR_KEY_NOT_FOUND);
    }
}

static int check_txn_request(const Etcdserverpb__TxnRequest *r, size_t max_ops, kv_result_t *res) {
    size_t opc = r->n_compare;
    if (opc < r->n_success) opc = r->n_success;
    if (opc < r->n_failure) opc = r->n_failure;
    if (opc > max_ops) return set_error(res, GRPC_INVALID_ARGUMENT, ERR_TOO_MANY_OPS);
    for (size_t i = 0; i < r->n_compare; i++)
        if (r->compare[i]->key.len == 0) return set_error(res, GRPC_INVALID_ARGUMENT, ERR_EMPTY_KEY);
    for (size_t i = 0; i < r->n_success; i++)
        if (check_request_op(r->success[i], max_ops - opc, res)) return -1;
    for (size_t i = 0; i < r->n_failure; i++)
        if (check_request_op(r->failure[i], max_ops - opc, res)) return -1;
    return 0;
}

/* checkIntervals: a key set (puts) and an interval list (deletes). */
typedef struct bin_vec {
    const ProtobufCBinaryData **v; /* puts: keys; dels: pairs (key, end) */
    size_t n, cap;
} bin_vec_t;

static void vec_push(bin_vec_t *s, const ProtobufCBinaryData *b) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        const ProtobufCBinaryData **v = realloc(s->v, cap * sizeof(*v));
        if (!v) abort();
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = b;
}

static int vec_has(const bin_vec_t *s, const ProtobufCBinaryData *k) {
    for (size_t i = 0; i < s->n; i++)
        if (bin_cmp(s->v[i], k) == 0) return 1;
    return 0;
}

/* Does point k intersect a delete interval? etcd's adt affine intervals:
 * [key, end) with end "" meaning +inf; a single key is [key, key+"\0"). */
static int dels_intersect(const bin_vec_t *dels, const ProtobufCBinaryData *k) {
    for (size_t i = 0; i + 1 < dels->n; i += 2) {
        const ProtobufCBinaryData *b = dels->v[i], *e = dels->v[i + 1];
        if (bin_cmp(b, k) > 0) continue;
        if (e->len == 0) {
            if (bin_cmp(b, k) == 0) return 1; /* point delete */
            continue;
        }
        if (bin_cmp(k, e) < 0) return 1;
    }
    return 0;
}

static int check_intervals(Etcdserverpb__RequestOp **reqs, size_t n, bin_vec_t *puts, bin_vec_t *dels) {
    for (size_t i = 0; i < n; i++) {
        if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE ||
            !reqs[i]->request_delete_range)
            continue;
        vec_push(dels, &reqs[i]->request_delete_range->key);
        vec_push(dels, &reqs[i]->request_delete_range->range_end);
    }
    int dup = 0;
    for (size_t i = 0; i < n && !dup; i++) {
        if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN || !reqs[i]->request_txn)
            continue;
        const Etcdserverpb__TxnRequest *sub = reqs[i]->request_txn;
        bin_vec_t puts_then = {0}, dels_then = {0}, puts_else = {0}, dels_else = {0};
        dup = check_intervals(sub->success, sub->n_success, &puts_then, &dels_then) ||
              check_intervals(sub->failure, sub->n_failure, &puts_else, &dels_else);
        for (size_t j = 0; j < puts_then.n && !dup; j++) {
            if (vec_has(puts, puts_then.v[j]) || dels_intersect(dels, puts_then.v[j]))
                dup = 1;
            else
                vec_push(puts, puts_then.v[j]);
        }
        for (size_t j = 0; j < puts_else.n && !dup; j++) {
            if (vec_has(puts, puts_else.v[j]) && !vec_has(&puts_then, puts_else.v[j]))
                dup = 1;
            else if (dels_intersect(dels, puts_else.v[j]))
                dup = 1;
            else
                vec_push(puts, puts_else.v[j]);
        }
        for (size_t j = 0; j < dels_then.n; j++) vec_push(dels, dels_then.v[j]);
        for (size_t j = 0; j < dels_else.n; j++) vec_push(dels, dels_else.v[j]);
        free(puts_then.v);
        free(dels_then.v);
        free(puts_else.v);
        free(dels_else.v);
    }
    for (size_t i = 0; i < n && !dup; i++) {
        if (reqs[i]->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT || !reqs[i]->request_put)
            continue;
        const ProtobufCBinaryData *k = &reqs[i]->request_put->key;
        if (vec_has(puts, k) || dels_intersect(dels, k))
            dup = 1;
        else
            vec_push(puts, k);
    }
    return dup;
}

static int has_duplicates(Etcdserverpb__RequestOp **reqs, size_t n) {
    bin_vec_t puts = {0}, dels = {0};
    int dup = check_intervals(reqs, n, &puts, &dels);
    free(puts.v);
    free(dels.v);
    return dup;
}

static uint64_t cost_put(const Etcdserverpb__PutRequest *p) { return 256 + p->key.len + p->value.len; }

static uint64_t cost_txn(const Etcdserverpb__TxnRequest *r) {
    uint64_t s = 0, f = 0;
    for (size_t i = 0; i < r->n_success; i++)
        if (r->success[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT &&
            r->success[i]->request_put)
            s += cost_put(r->success[i]->request_put);
    for (size_t i = 0; i < r->n_failure; i++)
        if (r->failure[i]->request_case == ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT &&
            r->failure[i]->request_put)
            f += cost_put(r->failure[i]->request_put);
    return f > s ? f : s;
}

uint64_t kv_request_cost(const Kshim__InternalRequest *req) {
    if (req->put) return cost_put(req->put);
    if (req->txn) return cost_txn(req->txn);
    if (req->lease_grant) return 64; /* etcd's leaseOverhead */
    return 0;
}

static int check_quota(mvcc_t *m, uint64_t cost, kv_result_t *res) {
    if (cost == 0) return 0;
    if (mvcc_db_size(m) + cost < mvcc_options(m)->quota_backend_bytes) return 0;
    res->no_space = 1;
    return set_error(res, GRPC_RESOURCE_EXHAUSTED, ERR_NO_SPACE);
}

int kv_validate_put(mvcc_t *m, const Etcdserverpb__PutRequest *req, kv_result_t *res) {
    if (check_put_request(req, res)) return -1;
    return check_quota(m, cost_put(req), res);
}

int kv_validate_delete(mvcc_t *m, const Etcdserverpb__DeleteRangeRequest *req, kv_result_t *res) {
    (void)m;
    if (req->key.len == 0) return set_error(res, GRPC_INVALID_ARGUMENT, ERR_EMPTY_KEY);
    return 0;
}

int kv_validate_range(mvcc_t *m, const Etcdserverpb__RangeRequest *req, kv_result_t *res) {
    (void)m;
    if (req->key.len == 0) return set_error(res, GRPC_INVALID_ARGUMENT, ERR_EMPTY_KEY);
    return 0;
}

int kv_validate_txn(mvcc_t *m, const Etcdserverpb__TxnRequest *req, kv_result_t *res) {
    if (check_txn_request(req, mvcc_options(m)->max_txn_ops, res)) return -1;
    if (has_duplicates(req->success, req->n_success) || has_duplicates(req->failure, req->n_failure))
        return set_error(res, GRPC_INVALID_ARGUMENT, ERR_DUPLICATE_KEY);
    return check_quota(m, cost_txn(req), res);
}

/* ---- entry points ---- */

static int apply_put(mvcc_t *m, mvcc_txn_t *t, kv_arena_t *a, const Etcdserverpb__PutRequest *p,
                     const kv_header_info_t *hdr, kv_result_t *res) {
    if (p->lease != 0 && !lease_exists(m, p->lease)) {
        set_kv_error(res, KV_E_LEASE_NOT_FOUND);
        return KV_E_LEASE_NOT_FOUND;
    }
    Etcdserverpb__PutResponse *resp = NULL;
    int e = do_put(t, a, p, &resp);
    if (e) {
        set_kv_error(res, e);
        return e;
    }
    fill_header(resp->header, hdr);
    pack_result(res, &resp->base, resp->header->revision);
    return 0;
}

static int apply_delete(mvcc_txn_t *t, kv_arena_t *a, const Etcdserverpb__DeleteRangeRequest *d,
                        const kv_header_info_t *hdr, kv_result_t *res) {
    Etcdserverpb__DeleteRangeResponse *resp = NULL;
    int e = do_delete(t, a, d, &resp);
    if (e) {
        set_kv_error(res, e);
        return e;
    }
    fill_header(resp->header, hdr);
    pack_result(res, &resp->base, resp->header->revision);
    return 0;
}

static int apply_txn(mvcc_t *m, mvcc_txn_t *t, kv_arena_t *a, const Etcdserverpb__TxnRequest *rt,
                     const kv_header_info_t *hdr, kv_result_t *res) {
    Etcdserverpb__TxnResponse *resp = NULL;
    int e = do_txn(t, m, a, rt, &resp);
    if (e) {
        set_kv_error(res, e);
        return e;
    }
    fill_header(resp->header, hdr);
    pack_result(res, &resp->base, resp->header->revision);
    return 0;
}

/* A Compact entry is a write-group boundary: the group is written first,
 * then the compaction writes on its own. */
static int apply_compaction(mvcc_t *m, uint64_t index, const Etcdserverpb__CompactionRequest *c,
                            const kv_header_info_t *hdr, kv_result_t *res) {
    int rc = mvcc_group_flush(m);
    if (rc == MVCC_OK) rc = mvcc_compact(m, c->revision, index);
    if (rc != MVCC_OK) {
        /* the entry is consumed even when the compaction is refused */
        if (rc != MVCC_ERR_IO && mvcc_set_applied(m, index) != MVCC_OK) rc = MVCC_ERR_IO;
        set_kv_error(res, mvcc_to_kv_error(rc));
        res->revision = mvcc_apply_revision(m);
        return rc == MVCC_ERR_IO ? -1 : 0;
    }
    kv_arena_t a;
    kv_arena_init(&a);
    Etcdserverpb__CompactionResponse resp = ETCDSERVERPB__COMPACTION_RESPONSE__INIT;
    resp.header = new_header(&a, mvcc_apply_revision(m));
    fill_header(resp.header, hdr);
    pack_result(res, &resp.base, resp.header->revision);
    kv_arena_free(&a);
    /* The physical work runs on the compactor thread; with physical the
     * answer waits for it (etcd's Compact: <-result.physc). */
    if (c->physical) res->physical_rev = c->revision;
    return 0;
}

int kv_apply(mvcc_t *m, uint64_t index, const Kshim__InternalRequest *req, const kv_header_info_t *hdr,
             kv_result_t *res) {
    if (index <= mvcc_apply_index(m)) return 1;
    memset(res, 0, sizeof(*res));
    if (req && req->compaction) return apply_compaction(m, index, req->compaction, hdr, res) ? -1 : 0;
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    if (mvcc_txn_begin_write(m, &a, &t) != MVCC_OK) {
        kv_arena_free(&a);
        set_kv_error(res, KV_E_IO);
        return -1;
    }
    int e = KV_OK;
    if (!req) {
        /* empty entry: only the applied index moves */
    } else if (req->put) {
        e = apply_put(m, t, &a, req->put, hdr, res);
    } else if (req->delete_range) {
        e = apply_delete(t, &a, req->delete_range, hdr, res);
    } else if (req->txn) {
        e = apply_txn(m, t, &a, req->txn, hdr, res);
    } else {
        set_error(res, GRPC_UNIMPLEMENTED, "kshim: request not handled by the kv store");
    }
    if (e == KV_E_IO) {
        /* A read failed: the outcome is unknown, so nothing of the entry is
         * recorded and the applied index stays (the caller fail-stops). */
        fprintf(stderr, "kv: storage error applying entry %llu; nothing recorded\n",
                (unsigned long long)index);
        mvcc_txn_end(t);
        kv_arena_free(&a);
        kv_result_clear(res);
        set_kv_error(res, KV_E_IO);
        return -1;
    }
    /* A failed request must leave no change behind (etcd checks first). */
    if (res->code != 0 && mvcc_txn_changes(t) != 0) {
        mvcc_txn_end(t);
        t = NULL;
        if (mvcc_txn_begin_write(m, &a, &t) != MVCC_OK) abort();
    }
    int rc = mvcc_txn_commit(t, index);
    mvcc_txn_end(t);
    kv_arena_free(&a);
    if (rc != MVCC_OK) {
        kv_result_clear(res);
        set_kv_error(res, KV_E_IO);
        return -1;
    }
    if (res->code != 0) res->revision = mvcc_apply_revision(m);
    return 0;
}

int kv_range(mvcc_t *m, const Etcdserverpb__RangeRequest *req, const kv_header_info_t *hdr,
             kv_result_t *res) {
    memset(res, 0, sizeof(*res));
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    if (mvcc_txn_begin_read(m, &a, &t) != MVCC_OK) {
        kv_arena_free(&a);
        set_kv_error(res, KV_E_IO);
        return -1;
    }
    Etcdserverpb__RangeResponse *resp = NULL;
    int e = do_range(t, &a, req, &resp);
    if (e) {
        set_kv_error(res, e);
        res->revision = mvcc_txn_rev(t);
    } else {
        fill_header(resp->header, hdr);
        pack_result(res, &resp->base, resp->header->revision);
    }
    mvcc_txn_end(t);
    kv_arena_free(&a);
    return e ? -1 : 0;
}

int kv_txn_readonly(mvcc_t *m, const Etcdserverpb__TxnRequest *req, const kv_header_info_t *hdr,
                    kv_result_t *res) {
    memset(res, 0, sizeof(*res));
    if (!txn_is_readonly(req)) return set_error(res, GRPC_INVALID_ARGUMENT, "kshim: txn is not read-only");
    kv_arena_t a;
    kv_arena_init(&a);
    mvcc_txn_t *t = NULL;
    if (mvcc_txn_begin_read(m, &a, &t) != MVCC_OK) {
        kv_arena_free(&a);
        set_kv_error(res, KV_E_IO);
        return -1;
    }
    int rc = apply_txn(m, t, &a, req, hdr, res) ? -1 : 0;
    if (rc) res->revision = mvcc_txn_rev(t);
    mvcc_txn_end(t);
    kv_arena_free(&a);
    return rc;
}
