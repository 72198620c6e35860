/*
 * svc_election.c: etcd's Election service (/v3electionpb.Election/...), as
 * etcd 3.4's v3election server runs it on its in-process client
 * (local_client.h) with clientv3/concurrency's Election:
 *   Campaign(name, lease, value): key = name/<lease in hex>; a Txn puts it
 *     (value, lease) if its create revision is 0, else reads it (a
 *     different value is proclaimed); then waits (conc_wait) until every
 *     key under name/ created before it is gone. Answers the first Txn's
 *     header and the LeaderKey {name, key, create revision, lease}.
 *   Proclaim(leader, value): Txn create_revision(key) == rev -> put;
 *     false: Unknown "election: not leader".
 *   Resign(leader): Txn create_revision(key) == rev -> delete.
 *   Leader(name): the oldest key under name/, or Unknown "election: no
 *     leader".
 *   Observe(name): streams the leader: the oldest key (or the first put
 *     under name/ when there is none), then each put of that key until it
 *     is deleted, then again. Ends OK when a request fails, as etcd's.
 * A missing leader field is Unknown "\"leader\" field must be provided";
 * lease 0 gets a new 60 s lease first (concurrency.NewSession), in
 * Proclaim and Resign too. A campaigner whose client goes away resigns.
 * Errors of the in-process requests pass as lc_outer_status says, so auth
 * is the KV permission checks on the caller's token. Owns each el_op_t
 * (the list in server_t.election): call reference, identity, keys, value.
 */
#include <stdlib.h>
#include <string.h>

#include "conc.h"
#include "v3election.pb-c.h"

#define ERR_NOT_LEADER "election: not leader"
#define ERR_NO_LEADER "election: no leader"
#define ERR_MISSING_LEADER "\"leader\" field must be provided"

typedef enum { EL_CAMPAIGN, EL_PROCLAIM, EL_RESIGN, EL_LEADER, EL_OBSERVE } el_kind_t;
typedef enum { ST_GRANT, ST_TXN, ST_PROCLAIM, ST_WAIT, ST_READ, ST_WATCH_FIRST, ST_WATCH_KEY } el_state_t;

typedef struct el_op {
    struct el_op *prev, *next;
    server_t *s;
    grpc_call_t *call; /* one reference; NULL once the client left a Txn in flight */
    lc_ident_t id;
    el_kind_t kind;
    el_state_t state;
    ProtobufCBinaryData name, pfx, key, value;
    int64_t lease;
    int64_t rev; /* the leader key's create revision; Observe: the last revision sent */
    lc_call_t *req;
    conc_wait_t *wait;
    int gone;
    conc_header_t hdr;
} el_op_t;

struct svc_election {
    el_op_t *head;
};

static void op_free(el_op_t *op) {
    lc_cancel(op->req);
    conc_wait_cancel(op->wait);
    struct svc_election *e = op->s->election;
    if (op->prev)
        op->prev->next = op->next;
    else
        e->head = op->next;
    if (op->next) op->next->prev = op->prev;
    if (op->call) {
        grpc_call_set_user(op->call, NULL, NULL);
        grpc_call_unref(op->call);
    }
    lc_ident_clear(&op->id);
    free(op->name.data);
    free(op->pfx.data);
    free(op->key.data);
    free(op->value.data);
    free(op);
}

static int dup_bytes(ProtobufCBinaryData *out, const ProtobufCBinaryData *in) {
    out->len = in->len;
    out->data = malloc(in->len ? in->len : 1);
    if (!out->data) return -1;
    if (in->len) memcpy(out->data, in->data, in->len);
    return 0;
}

static el_op_t *op_new(server_t *s, grpc_call_t *call, el_kind_t kind, const ProtobufCBinaryData *name) {
    if (!s->election && !(s->election = calloc(1, sizeof *s->election))) return NULL;
    el_op_t *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    if (lc_ident_from_call(&op->id, call) != 0) {
        free(op);
        return NULL;
    }
    op->s = s;
    op->kind = kind;
    op->call = call;
    grpc_call_ref(call);
    grpc_call_set_user(call, op, NULL);
    op->next = s->election->head;
    if (op->next) op->next->prev = op;
    s->election->head = op;
    if (name && (dup_bytes(&op->name, name) != 0 ||
                 !(op->pfx.data = conc_prefix(name->data, name->len, &op->pfx.len)))) {
        op_free(op);
        return NULL;
    }
    return op;
}

static void op_fail(el_op_t *op, grpc_status_t st, const char *msg) {
    if (op->call && !grpc_call_is_closed(op->call)) grpc_call_finish(op->call, st, msg);
    op_free(op);
}

static void op_nomem(el_op_t *op) { op_fail(op, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory"); }

/* ---- the Txns: one compare create_revision(key) == rev, then one op ---- */

typedef struct el_txn {
    Etcdserverpb__TxnRequest txn;
    Etcdserverpb__Compare cmp, *cmps[1];
    Etcdserverpb__RequestOp then, els, *thens[1], *elses[1];
    Etcdserverpb__PutRequest put;
    Etcdserverpb__RangeRequest get;
    Etcdserverpb__DeleteRangeRequest del;
} el_txn_t;

/* then: put(key, value, lease) (put = 1) or delete(key); with_else: read key. */
static void txn_build(el_txn_t *t, const el_op_t *op, int64_t rev, int put, int with_else) {
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__RequestOp ro = ETCDSERVERPB__REQUEST_OP__INIT;
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__RangeRequest g = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    t->txn = txn;
    t->then = t->els = ro;
    t->put = p;
    t->get = g;
    t->del = d;
    conc_cmp_create(&t->cmp, op->key.data, op->key.len, rev);
    t->cmps[0] = &t->cmp;
    t->txn.n_compare = 1;
    t->txn.compare = t->cmps;
    if (put) {
        t->put.key = op->key;
        t->put.value = op->value;
        t->put.lease = op->lease;
        t->then.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        t->then.request_put = &t->put;
    } else {
        t->del.key = op->key;
        t->then.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
        t->then.request_delete_range = &t->del;
    }
    t->thens[0] = &t->then;
    t->txn.n_success = 1;
    t->txn.success = t->thens;
    if (with_else) {
        t->get.key = op->key;
        t->els.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
        t->els.request_range = &t->get;
        t->elses[0] = &t->els;
        t->txn.n_failure = 1;
        t->txn.failure = t->elses;
    }
}

static void txn_start(el_op_t *op, int64_t rev, int put, int with_else, lc_done_fn done) {
    el_txn_t t;
    txn_build(&t, op, rev, put, with_else);
    lc_unary(op->s, &op->id, CONC_KV_TXN, &t.txn.base, done, op, &op->req);
}

/* Election.Resign on the op's key, answered to nobody (a campaign that
 * failed or whose client left). */
static void resign_quietly(el_op_t *op) {
    el_txn_t t;
    txn_build(&t, op, op->rev, 0, 0);
    lc_unary(op->s, &op->id, CONC_KV_TXN, &t.txn.base, NULL, NULL, NULL);
}

/* A Txn's answer: 1 and *r, or 0 after failing op. */
static int txn_result(el_op_t *op, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len,
                      Etcdserverpb__TxnResponse **r) {
    if (st != GRPC_OK) {
        op_fail(op, lc_outer_status(st, msg), msg);
        return 0;
    }
    *r = resp ? etcdserverpb__txn_response__unpack(NULL, len, resp) : NULL;
    if (!*r) {
        op_fail(op, GRPC_INTERNAL, "kshim: bad TxnResponse");
        return 0;
    }
    return 1;
}

static void reply_header(el_op_t *op, const ProtobufCMessageDescriptor *d,
                         const Etcdserverpb__ResponseHeader *h) {
    /* ProclaimResponse and ResignResponse are {header = 1}. */
    V3electionpb__ProclaimResponse p = V3ELECTIONPB__PROCLAIM_RESPONSE__INIT;
    V3electionpb__ResignResponse r = V3ELECTIONPB__RESIGN_RESPONSE__INIT;
    p.header = r.header = (Etcdserverpb__ResponseHeader *)h;
    conc_reply(op->call, d == &v3electionpb__proclaim_response__descriptor ? &p.base : &r.base);
}

/* ---- Campaign ---- */

static void campaign_reply(el_op_t *op) {
    Etcdserverpb__ResponseHeader h;
    conc_header_fill(&h, &op->hdr);
    V3electionpb__LeaderKey lk = V3ELECTIONPB__LEADER_KEY__INIT;
    lk.name = op->name;
    lk.key = op->key;
    lk.rev = op->rev;
    lk.lease = op->lease;
    V3electionpb__CampaignResponse r = V3ELECTIONPB__CAMPAIGN_RESPONSE__INIT;
    r.header = &h;
    r.leader = &lk;
    conc_reply(op->call, &r.base);
    op_free(op);
}

static void campaign_on_wait(void *arg, grpc_status_t st, const char *msg, const conc_header_t *hdr) {
    el_op_t *op = arg;
    op->wait = NULL;
    if (st == GRPC_OK) {
        campaign_reply(op);
        return;
    }
    resign_quietly(op);
    op_fail(op, st, msg);
}

static void campaign_wait(el_op_t *op) {
    if (op->gone) { /* the client left while a Txn was in flight */
        resign_quietly(op);
        op_free(op);
        return;
    }
    op->state = ST_WAIT;
    op->wait = conc_wait_start(op->s, &op->id, op->pfx.data, op->pfx.len, op->rev - 1, campaign_on_wait, op);
    if (!op->wait) {
        resign_quietly(op);
        op_nomem(op);
    }
}

static void campaign_on_proclaim(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp,
                                 size_t len) {
    el_op_t *op = arg;
    Etcdserverpb__TxnResponse *r;
    if (st != GRPC_OK) resign_quietly(op);
    if (!txn_result(op, st, msg, resp, len, &r)) return;
    int ok = r->succeeded;
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    if (ok)
        campaign_wait(op);
    else
        op_fail(op, GRPC_UNKNOWN, ERR_NOT_LEADER);
}

static void campaign_on_txn(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    el_op_t *op = arg;
    Etcdserverpb__TxnResponse *r;
    if (!txn_result(op, st, msg, resp, len, &r)) return;
    conc_header_copy(&op->hdr, r->header);
    op->rev = op->hdr.revision;
    int proclaim = 0, ok = 1;
    if (!r->succeeded) {
        const Etcdserverpb__ResponseOp *ro = r->n_responses == 1 ? r->responses[0] : NULL;
        const Etcdserverpb__RangeResponse *g =
            ro && ro->response_case == ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE ? ro->response_range
                                                                                          : NULL;
        ok = g && g->n_kvs > 0;
        if (ok) {
            const Mvccpb__KeyValue *kv = g->kvs[0];
            op->rev = kv->create_revision;
            proclaim = kv->value.len != op->value.len ||
                       (kv->value.len && memcmp(kv->value.data, op->value.data, kv->value.len) != 0);
        }
    }
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    if (!ok) {
        op_fail(op, GRPC_INTERNAL, "kshim: bad TxnResponse");
    } else if (proclaim && !op->gone) {
        op->state = ST_PROCLAIM;
        txn_start(op, op->rev, 1, 0, campaign_on_proclaim);
    } else {
        campaign_wait(op);
    }
}

static void campaign_start(el_op_t *op) {
    size_t n;
    op->key.data = conc_key(op->pfx.data, op->pfx.len, op->lease, &n);
    if (!op->key.data) {
        op_nomem(op);
        return;
    }
    op->key.len = n;
    op->state = ST_TXN;
    txn_start(op, 0, 1, 1, campaign_on_txn);
}

/* ---- Proclaim and Resign ---- */

static void proclaim_on_txn(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    el_op_t *op = arg;
    Etcdserverpb__TxnResponse *r;
    if (!txn_result(op, st, msg, resp, len, &r)) return;
    if (r->succeeded)
        reply_header(op, &v3electionpb__proclaim_response__descriptor, r->header);
    else if (op->call)
        grpc_call_finish(op->call, GRPC_UNKNOWN, ERR_NOT_LEADER);
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    op_free(op);
}

static void resign_on_txn(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    el_op_t *op = arg;
    Etcdserverpb__TxnResponse *r;
    if (!txn_result(op, st, msg, resp, len, &r)) return;
    reply_header(op, &v3electionpb__resign_response__descriptor, r->header);
    etcdserverpb__txn_response__free_unpacked(r, NULL);
    op_free(op);
}

/* The op's next step once its lease is known. */
static void with_lease(el_op_t *op) {
    op->state = ST_TXN;
    if (op->kind == EL_CAMPAIGN)
        campaign_start(op);
    else if (op->kind == EL_PROCLAIM)
        txn_start(op, op->rev, 1, 0, proclaim_on_txn);
    else
        txn_start(op, op->rev, 0, 0, resign_on_txn);
}

static void on_grant(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    el_op_t *op = arg;
    if (st == GRPC_OK) op->lease = conc_granted(resp, len, &st, &msg);
    if (st != GRPC_OK) {
        op_fail(op, lc_outer_status(st, msg), msg);
        return;
    }
    with_lease(op);
}

/* concurrency.NewSession: lease 0 is a new lease. */
static void session(el_op_t *op) {
    if (op->lease != 0) {
        with_lease(op);
        return;
    }
    op->state = ST_GRANT;
    conc_grant(op->s, &op->id, on_grant, op, &op->req);
}

/* ---- Leader and Observe ---- */

static void observe_read(el_op_t *op);

/* Sends one LeaderResponse on the Observe stream; 0, or -1 (the op ended). */
static int observe_send(el_op_t *op, const Etcdserverpb__ResponseHeader *h, Mvccpb__KeyValue *kv) {
    V3electionpb__LeaderResponse r = V3ELECTIONPB__LEADER_RESPONSE__INIT;
    r.header = (Etcdserverpb__ResponseHeader *)h;
    r.kv = kv;
    size_t n = protobuf_c_message_get_packed_size(&r.base);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        op_nomem(op);
        return -1;
    }
    protobuf_c_message_pack(&r.base, buf);
    if (grpc_call_send_owned(op->call, buf, n, free) != 0) {
        op_fail(op, GRPC_RESOURCE_EXHAUSTED, "kshim: cannot queue the response message");
        return -1;
    }
    return 0;
}

static size_t observe_queued(void *arg) {
    el_op_t *op = arg;
    return grpc_call_send_queued(op->call);
}

/* The Observe goroutine's channel closed: the stream ends OK. */
static void observe_end(el_op_t *op) { op_fail(op, GRPC_OK, NULL); }

static void observe_watch_done(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp,
                               size_t len) {
    observe_end(arg);
}

static void observe_watch(el_op_t *op, const ProtobufCBinaryData *key, int prefix, int64_t rev,
                          lc_msg_fn on_msg) {
    uint8_t end[key->len ? key->len : 1];
    Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    c.key = *key;
    if (prefix) {
        c.range_end.data = end;
        c.range_end.len = lc_prefix_end(key->data, key->len, end);
    }
    c.start_revision = rev;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &c;
    lc_stream(op->s, &op->id, CONC_WATCH, &req.base, on_msg, observe_queued, observe_watch_done, op,
              &op->req);
}

/* Leader's key: each put is sent; its delete starts over. */
static void observe_key_msg(void *arg, const uint8_t *msg, size_t len) {
    el_op_t *op = arg;
    Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, msg);
    if (!r) {
        observe_end(op);
        return;
    }
    int deleted = 0, canceled = r->canceled, sent_failed = 0;
    for (size_t i = 0; i < r->n_events && !deleted && !sent_failed; i++) {
        if (r->events[i]->type == MVCCPB__EVENT__EVENT_TYPE__DELETE)
            deleted = 1;
        else
            sent_failed = observe_send(op, r->header, r->events[i]->kv) != 0;
    }
    etcdserverpb__watch_response__free_unpacked(r, NULL);
    if (sent_failed) return; /* observe_send ended the op */
    if (deleted) {
        lc_cancel(op->req);
        observe_read(op);
    } else if (canceled) {
        observe_end(op);
    }
}

static void observe_leader(el_op_t *op, Etcdserverpb__ResponseHeader *h, Mvccpb__KeyValue *kv) {
    if (observe_send(op, h, kv) != 0) return;
    free(op->key.data);
    if (dup_bytes(&op->key, &kv->key) != 0) {
        op->key.data = NULL;
        op_nomem(op);
        return;
    }
    op->state = ST_WATCH_KEY;
    observe_watch(op, &op->key, 0, (h ? h->revision : 0) + 1, observe_key_msg);
}

/* No leader yet: the first put under the prefix is. */
static void observe_first_msg(void *arg, const uint8_t *msg, size_t len) {
    el_op_t *op = arg;
    Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, msg);
    if (!r || r->canceled) {
        if (r) etcdserverpb__watch_response__free_unpacked(r, NULL);
        observe_end(op);
        return;
    }
    for (size_t i = 0; i < r->n_events; i++) {
        Mvccpb__Event *ev = r->events[i];
        if (ev->type != MVCCPB__EVENT__EVENT_TYPE__PUT || !ev->kv) continue;
        Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        if (r->header) h = *r->header;
        h.revision = ev->kv->mod_revision;
        lc_cancel(op->req);
        observe_leader(op, &h, ev->kv);
        break;
    }
    etcdserverpb__watch_response__free_unpacked(r, NULL);
}

static Etcdserverpb__RangeResponse *read_result(el_op_t *op, grpc_status_t st, const uint8_t *resp,
                                                size_t len) {
    return st == GRPC_OK && resp ? etcdserverpb__range_response__unpack(NULL, len, resp) : NULL;
}

static void observe_on_read(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    el_op_t *op = arg;
    Etcdserverpb__RangeResponse *r = read_result(op, st, resp, len);
    if (!r) {
        observe_end(op);
        return;
    }
    if (r->n_kvs > 0) {
        observe_leader(op, r->header, r->kvs[0]);
    } else {
        op->state = ST_WATCH_FIRST;
        observe_watch(op, &op->pfx, 1, r->header ? r->header->revision : 0, observe_first_msg);
    }
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

/* clientv3 Get(pfx, WithFirstCreate()). */
static void read_oldest(el_op_t *op, lc_done_fn done) {
    uint8_t end[op->pfx.len];
    Etcdserverpb__RangeRequest r;
    conc_range_edge(&r, op->pfx.data, op->pfx.len, end, 0);
    op->state = ST_READ;
    lc_unary(op->s, &op->id, CONC_KV_RANGE, &r.base, done, op, &op->req);
}

static void observe_read(el_op_t *op) { read_oldest(op, observe_on_read); }

static void leader_on_read(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    el_op_t *op = arg;
    if (st != GRPC_OK) {
        op_fail(op, lc_outer_status(st, msg), msg);
        return;
    }
    Etcdserverpb__RangeResponse *r = read_result(op, st, resp, len);
    if (!r) {
        op_fail(op, GRPC_INTERNAL, "kshim: bad RangeResponse");
        return;
    }
    if (r->n_kvs == 0) {
        op_fail(op, GRPC_UNKNOWN, ERR_NO_LEADER);
    } else {
        V3electionpb__LeaderResponse l = V3ELECTIONPB__LEADER_RESPONSE__INIT;
        l.header = r->header;
        l.kv = r->kvs[0];
        conc_reply(op->call, &l.base);
        op_free(op);
    }
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

/* ---- methods ---- */

static void campaign_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    if (server_require_leader(ctx, call) != 0) return; /* etcd's interceptor, for every RPC */
    V3electionpb__CampaignRequest *req = v3electionpb__campaign_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    el_op_t *op = op_new(ctx, call, EL_CAMPAIGN, &req->name);
    if (!op || dup_bytes(&op->value, &req->value) != 0) {
        if (op) op_free(op);
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
    } else {
        op->lease = req->lease;
        session(op);
    }
    v3electionpb__campaign_request__free_unpacked(req, NULL);
}

/* Proclaim and Resign: ResumeElection(leader.name, leader.key, leader.rev). */
static void leader_key_call(grpc_call_t *call, void *ctx, el_kind_t kind, const V3electionpb__LeaderKey *lk,
                            const ProtobufCBinaryData *value) {
    if (!lk) {
        grpc_call_finish(call, GRPC_UNKNOWN, ERR_MISSING_LEADER);
        return;
    }
    el_op_t *op = op_new(ctx, call, kind, NULL);
    if (!op || dup_bytes(&op->key, &lk->key) != 0 || (value && dup_bytes(&op->value, value) != 0)) {
        if (op) op_free(op);
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    op->lease = lk->lease;
    op->rev = lk->rev;
    session(op);
}

static void proclaim_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    if (server_require_leader(ctx, call) != 0) return; /* etcd's interceptor, for every RPC */
    V3electionpb__ProclaimRequest *req = v3electionpb__proclaim_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    leader_key_call(call, ctx, EL_PROCLAIM, req->leader, &req->value);
    v3electionpb__proclaim_request__free_unpacked(req, NULL);
}

static void resign_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    if (server_require_leader(ctx, call) != 0) return; /* etcd's interceptor, for every RPC */
    V3electionpb__ResignRequest *req = v3electionpb__resign_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    leader_key_call(call, ctx, EL_RESIGN, req->leader, NULL);
    v3electionpb__resign_request__free_unpacked(req, NULL);
}

static void leader_or_observe(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx, el_kind_t kind) {
    if (server_require_leader(ctx, call) != 0) return;
    V3electionpb__LeaderRequest *req = v3electionpb__leader_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    el_op_t *op = op_new(ctx, call, kind, &req->name);
    if (!op)
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
    else
        read_oldest(op, kind == EL_LEADER ? leader_on_read : observe_on_read);
    v3electionpb__leader_request__free_unpacked(req, NULL);
}

static void leader_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    leader_or_observe(call, msg, len, ctx, EL_LEADER);
}

static void observe_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    leader_or_observe(call, msg, len, ctx, EL_OBSERVE);
}

/* The client went away. A campaign resigns: after its Txn if that is in
 * flight (its answer decides the revision), at once if it was waiting. */
static void election_cancel(grpc_call_t *call, void *ctx) {
    el_op_t *op = grpc_call_get_user(call);
    if (!op) return;
    if (op->kind == EL_CAMPAIGN && (op->state == ST_TXN || op->state == ST_PROCLAIM)) {
        op->gone = 1;
        grpc_call_set_user(call, NULL, NULL);
        grpc_call_unref(op->call);
        op->call = NULL;
        return;
    }
    if (op->kind == EL_CAMPAIGN && op->state == ST_WAIT) resign_quietly(op);
    op_free(op);
}

void svc_election_stop(server_t *s) {
    if (!s->election) return;
    while (s->election->head) op_free(s->election->head);
    free(s->election);
    s->election = NULL;
}

static grpc_method_t election_methods[] = {
    {.path = "/v3electionpb.Election/Campaign",
     .on_message = campaign_call,
     .on_cancel = election_cancel,
     .left_unknown = 1},
    {.path = "/v3electionpb.Election/Proclaim",
     .on_message = proclaim_call,
     .on_cancel = election_cancel,
     .left_unknown = 1},
    {.path = "/v3electionpb.Election/Leader",
     .on_message = leader_call,
     .on_cancel = election_cancel,
     .left_unknown = 1},
    {.path = "/v3electionpb.Election/Observe",
     .server_streaming = 1,
     .on_message = observe_call,
     .on_cancel = election_cancel,
     .left_unknown = 1},
    {.path = "/v3electionpb.Election/Resign",
     .on_message = resign_call,
     .on_cancel = election_cancel,
     .left_unknown = 1},
};

void svc_election_register(server_t *s) {
    for (size_t i = 0; i < sizeof election_methods / sizeof election_methods[0]; i++) {
        election_methods[i].ctx = s;
        grpc_server_register(s->grpc, &election_methods[i]);
    }
}
