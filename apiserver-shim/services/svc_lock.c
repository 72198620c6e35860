/*
 * svc_lock.c: etcd's Lock service (/v3lockpb.Lock/Lock, /Unlock), as etcd
 * 3.4's v3lock server runs it on its in-process client (local_client.h):
 * concurrency.NewSession (lease 0: a new 60 s lease) and Mutex.Lock.
 *
 * Lock(name, lease): key = name/<lease in hex>; one Txn: if the key's
 * create revision is 0, put it (empty, with the lease) else read it, and
 * read the oldest key under name/ either way. The caller holds the lock if
 * that oldest key is its own; otherwise it waits (conc_wait: no thread, no
 * timer, the Watch service wakes it) until every key under name/ created
 * before its own is gone, and is answered with the header of the read that
 * found none. Unlock(key) deletes the key.
 *
 * A waiting client that goes away (cancel, deadline, connection lost) has
 * its key deleted, as Mutex.Lock's Unlock on a failed wait; if its Txn is
 * still in flight the delete follows the Txn's answer. Errors are what the
 * in-process requests answered (lc_outer_status), so auth is the KV
 * permission checks on the caller's token. Owns each lock_op_t (the list in
 * server_t.lock): the call reference, the identity, the key.
 */
#include <stdlib.h>
#include <string.h>

#include "conc.h"
#include "v3lock.pb-c.h"

typedef enum { LOCK_GRANT, LOCK_TXN, LOCK_WAIT, UNLOCK_DELETE } lock_state_t;

typedef struct lock_op {
    struct lock_op *prev, *next;
    server_t *s;
    grpc_call_t *call; /* one reference */
    lc_ident_t id;
    lock_state_t state;
    uint8_t *pfx, *key;
    size_t pfx_len, key_len;
    int64_t lease;
    lc_call_t *req;    /* the grant, Txn or delete in flight */
    conc_wait_t *wait; /* LOCK_WAIT */
    int gone;          /* the client went away during the Txn */
    conc_header_t hdr;
} lock_op_t;

struct svc_lock {
    lock_op_t *head;
};

static void op_free(lock_op_t *op) {
    lc_cancel(op->req);
    conc_wait_cancel(op->wait);
    struct svc_lock *l = op->s->lock;
    if (op->prev)
        op->prev->next = op->next;
    else
        l->head = op->next;
    if (op->next) op->next->prev = op->prev;
    if (op->call) {
        grpc_call_set_user(op->call, NULL, NULL);
        grpc_call_unref(op->call);
    }
    lc_ident_clear(&op->id);
    free(op->pfx);
    free(op->key);
    free(op);
}

static lock_op_t *op_new(server_t *s, grpc_call_t *call) {
    if (!s->lock && !(s->lock = calloc(1, sizeof *s->lock))) return NULL;
    lock_op_t *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    if (lc_ident_from_call(&op->id, call) != 0) {
        free(op);
        return NULL;
    }
    op->s = s;
    op->call = call;
    grpc_call_ref(call);
    grpc_call_set_user(call, op, NULL);
    op->next = s->lock->head;
    if (op->next) op->next->prev = op;
    s->lock->head = op;
    return op;
}

static void op_fail(lock_op_t *op, grpc_status_t st, const char *msg) {
    if (op->call && !grpc_call_is_closed(op->call)) grpc_call_finish(op->call, st, msg);
    op_free(op);
}

/* Mutex.Unlock on a failed or abandoned wait: the key goes, as the client's. */
static void delete_key(lock_op_t *op) {
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key.data = op->key;
    d.key.len = op->key_len;
    lc_unary(op->s, &op->id, CONC_KV_DELETE, &d.base, NULL, NULL, NULL);
}

static void reply_locked(lock_op_t *op, const conc_header_t *hdr) {
    Etcdserverpb__ResponseHeader h;
    conc_header_fill(&h, hdr);
    V3lockpb__LockResponse r = V3LOCKPB__LOCK_RESPONSE__INIT;
    r.header = &h;
    r.key.data = op->key;
    r.key.len = op->key_len;
    conc_reply(op->call, &r.base);
    op_free(op);
}

static void on_wait(void *arg, grpc_status_t st, const char *msg, const conc_header_t *hdr) {
    lock_op_t *op = arg;
    op->wait = NULL;
    if (st == GRPC_OK) {
        reply_locked(op, hdr);
        return;
    }
    delete_key(op);
    op_fail(op, st, msg);
}

/* The Txn's answer: my revision, and the oldest key under the prefix. */
static void on_txn(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    lock_op_t *op = arg;
    if (st != GRPC_OK) {
        op_fail(op, lc_outer_status(st, msg), msg);
        return;
    }
    Etcdserverpb__TxnResponse *r = resp ? etcdserverpb__txn_response__unpack(NULL, len, resp) : NULL;
    int64_t my_rev = -1;
    const Mvccpb__KeyValue *owner = NULL;
    int ok = r && r->n_responses == 2;
    for (size_t i = 0; ok && i < 2; i++)
        ok = r->responses[i]->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE ||
             (i == 0 && r->succeeded);
    if (ok) {
        conc_header_copy(&op->hdr, r->header);
        my_rev = op->hdr.revision;
        if (!r->succeeded) {
            const Etcdserverpb__RangeResponse *mine = r->responses[0]->response_range;
            ok = mine->n_kvs > 0;
            if (ok) my_rev = mine->kvs[0]->create_revision;
        }
        const Etcdserverpb__RangeResponse *oldest = r->responses[1]->response_range;
        if (oldest->n_kvs > 0) owner = oldest->kvs[0];
    }
    int held = ok && (!owner || owner->create_revision == my_rev);
    if (r) etcdserverpb__txn_response__free_unpacked(r, NULL);
    if (!ok) {
        op_fail(op, GRPC_INTERNAL, "kshim: bad TxnResponse");
    } else if (op->gone) {
        delete_key(op);
        op_free(op);
    } else if (held) {
        reply_locked(op, &op->hdr);
    } else {
        op->state = LOCK_WAIT;
        op->wait = conc_wait_start(op->s, &op->id, op->pfx, op->pfx_len, my_rev - 1, on_wait, op);
        if (!op->wait) {
            delete_key(op);
            op_fail(op, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        }
    }
}

static void start_txn(lock_op_t *op) {
    size_t klen;
    op->key = conc_key(op->pfx, op->pfx_len, op->lease, &klen);
    if (!op->key) {
        op_fail(op, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    op->key_len = klen;
    uint8_t end[op->pfx_len];
    Etcdserverpb__Compare cmp;
    Etcdserverpb__Compare *cmps[] = {&cmp};
    conc_cmp_create(&cmp, op->key, op->key_len, 0);
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key.data = op->key;
    put.key.len = op->key_len;
    put.lease = op->lease;
    Etcdserverpb__RangeRequest get = ETCDSERVERPB__RANGE_REQUEST__INIT, owner;
    get.key = put.key;
    conc_range_edge(&owner, op->pfx, op->pfx_len, end, 0);
    Etcdserverpb__RequestOp ops[3] = {ETCDSERVERPB__REQUEST_OP__INIT, ETCDSERVERPB__REQUEST_OP__INIT,
                                      ETCDSERVERPB__REQUEST_OP__INIT};
    ops[0].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    ops[0].request_put = &put;
    ops[1].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    ops[1].request_range = &get;
    ops[2].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    ops[2].request_range = &owner;
    Etcdserverpb__RequestOp *then[] = {&ops[0], &ops[2]}, *els[] = {&ops[1], &ops[2]};
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    txn.n_compare = 1;
    txn.compare = cmps;
    txn.n_success = 2;
    txn.success = then;
    txn.n_failure = 2;
    txn.failure = els;
    op->state = LOCK_TXN;
    lc_unary(op->s, &op->id, CONC_KV_TXN, &txn.base, on_txn, op, &op->req);
}

static void on_grant(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    lock_op_t *op = arg;
    if (st == GRPC_OK) op->lease = conc_granted(resp, len, &st, &msg);
    if (st != GRPC_OK) {
        op_fail(op, lc_outer_status(st, msg), msg);
        return;
    }
    start_txn(op);
}

static void lock_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    if (server_require_leader(s, call) != 0) return; /* etcd's interceptor, for every RPC */
    V3lockpb__LockRequest *req = v3lockpb__lock_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    lock_op_t *op = op_new(s, call);
    if (!op || !(op->pfx = conc_prefix(req->name.data, req->name.len, &op->pfx_len))) {
        if (op) op_free(op);
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
    } else if (req->lease == 0) {
        op->state = LOCK_GRANT;
        conc_grant(s, &op->id, on_grant, op, &op->req);
    } else {
        op->lease = req->lease;
        start_txn(op);
    }
    v3lockpb__lock_request__free_unpacked(req, NULL);
}

/* The client went away: a Txn in flight finishes first (its key is then
 * deleted), a wait ends with the delete, anything else just stops. On a
 * deadline the transport answers Unknown "context deadline exceeded", what
 * etcd's handler returns (ctx.Err()). */
static void lock_cancel(grpc_call_t *call, void *ctx) {
    lock_op_t *op = grpc_call_get_user(call);
    if (!op) return;
    if (op->state == LOCK_TXN) {
        op->gone = 1;
        grpc_call_set_user(call, NULL, NULL);
        grpc_call_unref(op->call);
        op->call = NULL;
        return;
    }
    if (op->state == LOCK_WAIT) delete_key(op);
    op_free(op);
}

/* ---- Unlock ---- */

static void on_unlock(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    lock_op_t *op = arg;
    if (st != GRPC_OK) {
        op_fail(op, lc_outer_status(st, msg), msg);
        return;
    }
    Etcdserverpb__DeleteRangeResponse *d =
        resp ? etcdserverpb__delete_range_response__unpack(NULL, len, resp) : NULL;
    if (!d) {
        op_fail(op, GRPC_INTERNAL, "kshim: bad DeleteRangeResponse");
        return;
    }
    V3lockpb__UnlockResponse r = V3LOCKPB__UNLOCK_RESPONSE__INIT;
    r.header = d->header;
    conc_reply(op->call, &r.base);
    etcdserverpb__delete_range_response__free_unpacked(d, NULL);
    op_free(op);
}

static void unlock_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    if (server_require_leader(s, call) != 0) return;
    V3lockpb__UnlockRequest *req = v3lockpb__unlock_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    lock_op_t *op = op_new(s, call);
    if (!op) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
    } else {
        Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
        d.key = req->key;
        op->state = UNLOCK_DELETE;
        lc_unary(s, &op->id, CONC_KV_DELETE, &d.base, on_unlock, op, &op->req);
    }
    v3lockpb__unlock_request__free_unpacked(req, NULL);
}

static void unlock_cancel(grpc_call_t *call, void *ctx) {
    lock_op_t *op = grpc_call_get_user(call);
    if (op) op_free(op);
}

void svc_lock_stop(server_t *s) {
    if (!s->lock) return;
    while (s->lock->head) op_free(s->lock->head);
    free(s->lock);
    s->lock = NULL;
}

static grpc_method_t lock_methods[] = {
    {.path = "/v3lockpb.Lock/Lock", .on_message = lock_call, .on_cancel = lock_cancel, .left_unknown = 1},
    {.path = "/v3lockpb.Lock/Unlock",
     .on_message = unlock_call,
     .on_cancel = unlock_cancel,
     .left_unknown = 1},
};

void svc_lock_register(server_t *s) {
    for (size_t i = 0; i < sizeof lock_methods / sizeof lock_methods[0]; i++) {
        lock_methods[i].ctx = s;
        grpc_server_register(s->grpc, &lock_methods[i]);
    }
}
