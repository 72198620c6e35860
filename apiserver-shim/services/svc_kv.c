/*
 * svc_kv.c: the etcd KV service (/etcdserverpb.KV/...).
 *
 * Decodes requests, validates them as etcd's API layer does, then either
 * reads locally (Range, read-only Txn) or proposes through Raft (Put,
 * DeleteRange, Txn with writes, Compact). All KV semantics live in
 * storage/kv.c; this file only routes.
 *
 * Reads: decoding, validation and the auth check run on the loop; the read
 * itself (kv_range / kv_txn_readonly on a LevelDB snapshot, building and
 * packing the response) runs on a reader thread (readers.h), and the packed
 * buffer goes to the call without another copy (grpc_call_send_owned). The
 * loop keeps the call (a reference is held while the read runs). Past the
 * pool's bound a read gets etcd's "etcdserver: too many requests". On a
 * single voter this is linearizable: a write is acknowledged only after it
 * is applied, and a read starts only once the store holds every write
 * answered before it (server_when_written: a KV write is answered before
 * its write group is in LevelDB), so every read submitted after an
 * acknowledgement sees it; a serializable read on any member likewise sees
 * the writes this member answered. A
 * member with peers puts Raft's ReadIndex in front of a linearizable read
 * (serializable=false Range, a read-only Txn with one such range or none):
 * raft_node_read_index, and the read is submitted only when the node's
 * read_ready says a quorum confirmed the index and it is applied here
 * (svc_kv_read_ready). Serializable reads stay local. (A learner refuses
 * all but a serializable Range before this: server_learner_guard.)
 *
 * Auth (auth_check.h) runs after validation, as in etcd: key permissions
 * for Range/Put/DeleteRange/Txn, only the token's validity for Compact. A
 * write carries the identity it was checked with (server_propose_as) and
 * is checked again at apply (svc_auth_check_apply).
 *
 * Compact is answered when its entry is applied (the compact revision is
 * recorded; the physical deletes run on the store's compactor thread), as
 * etcd does; with physical=true the answer waits until the compactor is
 * through that revision (etcd: <-result.physc). Such calls wait in a list
 * owned here, checked by a 5 ms loop timer while it is not empty; a call
 * whose client went away meanwhile is dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "auth_check.h"
#include "readers.h"
#include "services.h"

/* Finishes call with the auth refusal, if any; returns -1 when refused.
 * (*msg is read only after the check ran.) */
static int refuse(grpc_call_t *call, grpc_status_t st, const char *const *msg) {
    if (st == GRPC_OK) return 0;
    grpc_call_finish(call, st, *msg);
    return -1;
}

/* ---- reads on a reader thread ---- */

/* One read in flight: owns the decoded request and a call reference. */
typedef struct kv_read {
    reader_job_t job; /* first: the job is the read */
    server_t *s;
    grpc_call_t *call;
    Etcdserverpb__RangeRequest *range; /* exactly one of range / txn */
    Etcdserverpb__TxnRequest *txn;
    kv_header_info_t hdr;
    kv_result_t res;
    struct kv_read *next_wait;     /* waiting for its read index (svc_kv.waiting) */
    server_written_wait_t written; /* waiting for the store (server_when_written) */
    uint64_t rctx;
    int cancelled; /* the client went away (kv_read_cancel): answer nothing */
} kv_read_t;

struct svc_kv;
static struct svc_kv *kv_state(server_t *s);
static void wait_read_index(server_t *s, kv_read_t *r);

static void read_run(reader_job_t *job) {
    kv_read_t *r = (kv_read_t *)job;
    if (r->range)
        kv_range(r->s->mvcc, r->range, &r->hdr, &r->res);
    else
        kv_txn_readonly(r->s->mvcc, r->txn, &r->hdr, &r->res);
}

/* Sends res (packed once on the reader) without copying it, then finishes. */
static void finish_owned(grpc_call_t *call, kv_result_t *res) {
    if (grpc_call_is_closed(call)) {
        kv_result_clear(res);
        return;
    }
    if (res->code != 0) {
        grpc_call_finish(call, (grpc_status_t)res->code, res->message);
    } else {
        uint8_t *buf = res->resp;
        res->resp = NULL;
        if (grpc_call_send_owned(call, buf, res->resp_len, free) == 0)
            grpc_call_finish(call, GRPC_OK, NULL);
        else
            grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
    }
    kv_result_clear(res);
}

static void read_free(kv_read_t *r) {
    if (r->range) etcdserverpb__range_request__free_unpacked(r->range, NULL);
    if (r->txn) etcdserverpb__txn_request__free_unpacked(r->txn, NULL);
    kv_result_clear(&r->res);
    free(r);
}

static void read_done(reader_job_t *job, int status) {
    kv_read_t *r = (kv_read_t *)job;
    grpc_call_set_user(r->call, NULL, NULL);
    if (r->cancelled) {
        /* the transport ends the call (reset, deadline) */
    } else if (status == READER_DONE) {
        finish_owned(r->call, &r->res);
    } else if (!grpc_call_is_closed(r->call)) {
        grpc_call_finish(r->call, GRPC_UNAVAILABLE, "etcdserver: server stopped");
    }
    grpc_call_unref(r->call);
    read_free(r);
}

/* on_cancel of Range and Txn: a read still queued for a reader is dropped,
 * so requests the client reset (a rapid-reset flood) neither run nor keep
 * the reader queue full for other clients. */
static void kv_read_cancel(grpc_call_t *call, void *ctx) {
    server_t *s = ctx;
    kv_read_t *r = grpc_call_get_user(call);
    if (!r || !s->readers) return;
    r->cancelled = 1;
    if (!readers_cancel(s->readers, &r->job)) r->cancelled = 0; /* running: answers as usual */
}

static void start_read(server_t *s, kv_read_t *r);
static void read_after_written(server_t *s, void *arg, int ok);

/* etcd's isTxnSerializable: a Txn whose every Range is serializable. */
static int read_is_serializable(const Etcdserverpb__RangeRequest *range,
                                const Etcdserverpb__TxnRequest *txn) {
    if (range) return range->serializable;
    for (size_t i = 0; i < txn->n_success; i++)
        if (txn->success[i]->request_range && !txn->success[i]->request_range->serializable) return 0;
    for (size_t i = 0; i < txn->n_failure; i++)
        if (txn->failure[i]->request_range && !txn->failure[i]->request_range->serializable) return 0;
    return 1;
}

/* Runs the read on a reader thread; takes ownership of range or txn (the
 * other NULL). Without a pool (unit tests of the services) it reads here. */
static void submit_read(server_t *s, grpc_call_t *call, Etcdserverpb__RangeRequest *range,
                        Etcdserverpb__TxnRequest *txn) {
    kv_read_t *r = calloc(1, sizeof *r);
    if (!r) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        if (range) etcdserverpb__range_request__free_unpacked(range, NULL);
        if (txn) etcdserverpb__txn_request__free_unpacked(txn, NULL);
        return;
    }
    r->job.run = read_run;
    r->job.done = read_done;
    r->s = s;
    r->call = call;
    r->range = range;
    r->txn = txn; /* r->hdr: filled when the read starts (read_after_written, read_ready) */
    if (s->peer && s->readers && !read_is_serializable(range, txn)) {
        wait_read_index(s, r); /* read_ready comes after the read index is applied and written */
        return;
    }
    grpc_call_ref(call); /* read_after_written's */
    server_when_written(s, &r->written, read_after_written, r);
}

/* The store holds every write answered before the read came (ok), or the
 * member is stopping. */
static void read_after_written(server_t *s, void *arg, int ok) {
    kv_read_t *r = arg;
    grpc_call_t *call = r->call;
    if (!ok || grpc_call_is_closed(call)) {
        read_free(r);
    } else {
        server_header_info(s, &r->hdr);
        start_read(s, r);
    }
    grpc_call_unref(call);
}

static void start_read(server_t *s, kv_read_t *r) {
    grpc_call_t *call = r->call;
    if (!s->readers) {
        read_run(&r->job);
        finish_owned(call, &r->res);
        read_free(r);
        return;
    }
    grpc_call_ref(call);
    int rc = readers_submit(s->readers, &r->job);
    if (rc == READERS_OK) {
        grpc_call_set_user(call, r, NULL); /* for kv_read_cancel, until read_done */
        return;
    }
    grpc_call_unref(call);
    if (rc == READERS_FULL)
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
    else
        grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: server stopped");
    read_free(r);
}

/* ---- methods ---- */

static void kv_range_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__RangeRequest *req = etcdserverpb__range_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    kv_result_t res = {0};
    if (server_require_leader(s, call) == 0) {
        const char *msg = NULL;
        if (kv_validate_range(s->mvcc, req, &res) != 0) {
            server_finish_result(call, &res);
        } else if (refuse(call,
                          auth_check_range_read(s, call, req->key.data, req->key.len, req->range_end.data,
                                                req->range_end.len, &msg),
                          &msg) == 0) {
            submit_read(s, call, req, NULL);
            return;
        }
    }
    etcdserverpb__range_request__free_unpacked(req, NULL);
}

static void kv_put_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__PutRequest *req = etcdserverpb__put_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    kv_result_t res = {0};
    if (server_require_leader(s, call) == 0) {
        const char *msg = NULL;
        auth_identity_t who;
        if (kv_validate_put(s->mvcc, req, &res) != 0) {
            if (res.no_space) svc_maintenance_raise_nospace(s);
            server_finish_result(call, &res);
        } else if (refuse(call, auth_check_put(s, call, req, &who, &msg), &msg) == 0) {
            Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
            ir.put = req;
            server_propose_as(s, call, &ir, who.user, who.revision);
        }
    }
    etcdserverpb__put_request__free_unpacked(req, NULL);
}

static void kv_delete_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__DeleteRangeRequest *req = etcdserverpb__delete_range_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    kv_result_t res = {0};
    if (server_require_leader(s, call) == 0) {
        const char *msg = NULL;
        auth_identity_t who;
        if (kv_validate_delete(s->mvcc, req, &res) != 0) {
            server_finish_result(call, &res);
        } else if (refuse(call, auth_check_delete(s, call, req, &who, &msg), &msg) == 0) {
            Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
            ir.delete_range = req;
            server_propose_as(s, call, &ir, who.user, who.revision);
        }
    }
    etcdserverpb__delete_range_request__free_unpacked(req, NULL);
}

static void kv_txn_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__TxnRequest *req = etcdserverpb__txn_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    kv_result_t res = {0};
    if (server_require_leader(s, call) == 0) {
        const char *msg = NULL;
        auth_identity_t who;
        if (kv_validate_txn(s->mvcc, req, &res) != 0) {
            if (res.no_space) svc_maintenance_raise_nospace(s);
            server_finish_result(call, &res);
        } else if (refuse(call, auth_check_txn(s, call, req, &who, &msg), &msg) != 0) {
            /* refused whole */
        } else if (kv_txn_is_readonly(req)) {
            submit_read(s, call, NULL, req);
            return;
        } else {
            Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
            ir.txn = req;
            server_propose_as(s, call, &ir, who.user, who.revision);
        }
    }
    etcdserverpb__txn_request__free_unpacked(req, NULL);
}

static void kv_compact_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__CompactionRequest *req = etcdserverpb__compaction_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    const char *why = NULL;
    if (server_require_leader(s, call) == 0 && refuse(call, auth_check_token(s, call, &why), &why) == 0) {
        Kshim__InternalRequest ir = KSHIM__INTERNAL_REQUEST__INIT;
        ir.compaction = req;
        server_propose(s, call, &ir);
    }
    etcdserverpb__compaction_request__free_unpacked(req, NULL);
}

/* ---- Compact with physical=true ---- */

#define PHYSICAL_POLL_MS 5

typedef struct physical_waiter {
    struct physical_waiter *next;
    grpc_call_t *call; /* one reference */
    kv_result_t res;   /* the answer, sent when through */
} physical_waiter_t;

struct svc_kv {
    physical_waiter_t *waiters;
    loop_timer_t *timer; /* armed while waiters is not empty */
    kv_read_t *waiting;  /* linearizable reads waiting for their read index */
    uint64_t next_rctx;
};

static struct svc_kv *kv_state(server_t *s) {
    if (!s->kv) s->kv = calloc(1, sizeof *s->kv);
    return s->kv;
}

/* ---- linearizable reads with peers: ReadIndex first ---- */

static void wait_read_index(server_t *s, kv_read_t *r) {
    struct svc_kv *kv = kv_state(s);
    if (!kv) {
        grpc_call_finish(r->call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        read_free(r);
        return;
    }
    r->rctx = ++kv->next_rctx;
    grpc_call_ref(r->call);
    r->next_wait = kv->waiting;
    kv->waiting = r;
    int rc = raft_node_read_index(s->raft, r->rctx);
    if (rc != RAFT_NODE_OK) svc_kv_read_ready(s, r->rctx, 0);
}

void svc_kv_read_ready(server_t *s, uint64_t rctx, int ok) {
    struct svc_kv *kv = s->kv;
    if (!kv) return;
    kv_read_t **pp = &kv->waiting;
    while (*pp && (*pp)->rctx != rctx) pp = &(*pp)->next_wait;
    kv_read_t *r = *pp;
    if (!r) return;
    *pp = r->next_wait;
    grpc_call_t *call = r->call;
    if (grpc_call_is_closed(call)) {
        read_free(r);
    } else if (ok) {
        server_header_info(s, &r->hdr);
        start_read(s, r);
    } else {
        grpc_call_finish(call, GRPC_UNAVAILABLE,
                         server_leader(s) ? "etcdserver: leader changed" : "etcdserver: no leader");
        read_free(r);
    }
    grpc_call_unref(call);
}

static void physical_poll(loop_t *loop, void *arg) {
    server_t *s = arg;
    struct svc_kv *kv = s->kv;
    kv->timer = NULL;
    int64_t through = mvcc_compacted_through(s->mvcc);
    physical_waiter_t **pp = &kv->waiters;
    while (*pp) {
        physical_waiter_t *w = *pp;
        int closed = grpc_call_is_closed(w->call);
        if (!closed && w->res.physical_rev > through) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (closed)
            kv_result_clear(&w->res);
        else
            server_finish_result(w->call, &w->res);
        grpc_call_unref(w->call);
        free(w);
    }
    if (kv->waiters) kv->timer = loop_timer_add(loop, PHYSICAL_POLL_MS, physical_poll, s);
}

int svc_kv_wait_physical(server_t *s, grpc_call_t *call, kv_result_t *res) {
    if (res->code != 0 || mvcc_compacted_through(s->mvcc) >= res->physical_rev) return -1;
    if (!kv_state(s)) return -1; /* out of memory: answer now rather than never */
    physical_waiter_t *w = calloc(1, sizeof *w);
    if (!w) return -1;
    w->call = call;
    w->res = *res;
    memset(res, 0, sizeof *res);
    w->next = s->kv->waiters;
    s->kv->waiters = w;
    if (!s->kv->timer) s->kv->timer = loop_timer_add(s->loop, PHYSICAL_POLL_MS, physical_poll, s);
    return 0;
}

void svc_kv_stop(server_t *s) {
    struct svc_kv *kv = s->kv;
    if (!kv) return;
    if (kv->timer) loop_timer_cancel(s->loop, kv->timer);
    while (kv->waiters) {
        physical_waiter_t *w = kv->waiters;
        kv->waiters = w->next;
        kv_result_clear(&w->res);
        grpc_call_unref(w->call);
        free(w);
    }
    while (kv->waiting) {
        kv_read_t *r = kv->waiting;
        kv->waiting = r->next_wait;
        grpc_call_unref(r->call);
        read_free(r);
    }
    free(kv);
    s->kv = NULL;
}

static grpc_method_t kv_methods[] = {
    {.path = "/etcdserverpb.KV/Range", .on_message = kv_range_call, .on_cancel = kv_read_cancel},
    {.path = "/etcdserverpb.KV/Put", .on_message = kv_put_call},
    {.path = "/etcdserverpb.KV/DeleteRange", .on_message = kv_delete_call},
    {.path = "/etcdserverpb.KV/Txn", .on_message = kv_txn_call, .on_cancel = kv_read_cancel},
    {.path = "/etcdserverpb.KV/Compact", .on_message = kv_compact_call},
};

void svc_kv_register(server_t *s) {
    for (size_t i = 0; i < sizeof kv_methods / sizeof kv_methods[0]; i++) {
        kv_methods[i].ctx = s;
        grpc_server_register(s->grpc, &kv_methods[i]);
    }
}
