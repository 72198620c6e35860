/*
 * conc.c: clientv3/concurrency's shared pieces for svc_lock.c and
 * svc_election.c (conc.h). Owns each waitDeletes waiter: its prefix, the
 * key it watches and its one in-process request (a Range, then a Watch of
 * the newest older key until it is deleted, then the Range again).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conc.h"

uint8_t *conc_prefix(const uint8_t *name, size_t n, size_t *len) {
    uint8_t *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, name, n);
    p[n] = '/';
    *len = n + 1;
    return p;
}

uint8_t *conc_key(const uint8_t *pfx, size_t n, int64_t lease, size_t *len) {
    char hex[24];
    uint64_t mag = lease < 0 ? (uint64_t)0 - (uint64_t)lease : (uint64_t)lease;
    int h = snprintf(hex, sizeof hex, "%s%" PRIx64, lease < 0 ? "-" : "", mag);
    uint8_t *k = malloc(n + (size_t)h);
    if (!k) return NULL;
    memcpy(k, pfx, n);
    memcpy(k + n, hex, (size_t)h);
    *len = n + (size_t)h;
    return k;
}

void conc_range_edge(Etcdserverpb__RangeRequest *r, const uint8_t *pfx, size_t n, uint8_t *end, int descend) {
    Etcdserverpb__RangeRequest init = ETCDSERVERPB__RANGE_REQUEST__INIT;
    *r = init;
    r->key.data = (uint8_t *)pfx;
    r->key.len = n;
    r->range_end.data = end;
    r->range_end.len = lc_prefix_end(pfx, n, end);
    r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
    r->sort_order = descend ? ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND
                            : ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    r->limit = 1;
}

void conc_cmp_create(Etcdserverpb__Compare *c, const uint8_t *key, size_t n, int64_t rev) {
    Etcdserverpb__Compare init = ETCDSERVERPB__COMPARE__INIT;
    *c = init;
    c->key.data = (uint8_t *)key;
    c->key.len = n;
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    c->create_revision = rev;
}

void conc_grant(server_t *s, const lc_ident_t *id, lc_done_fn done, void *arg, lc_call_t **slot) {
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.ttl = CONC_SESSION_TTL;
    lc_unary(s, id, CONC_LEASE_GRANT, &g.base, done, arg, slot);
}

int64_t conc_granted(const uint8_t *resp, size_t len, grpc_status_t *st, const char **msg) {
    Etcdserverpb__LeaseGrantResponse *g =
        resp ? etcdserverpb__lease_grant_response__unpack(NULL, len, resp) : NULL;
    int64_t id = g ? g->id : 0;
    if (g) etcdserverpb__lease_grant_response__free_unpacked(g, NULL);
    if (id == 0) {
        *st = GRPC_INTERNAL;
        *msg = "kshim: bad LeaseGrant response";
    }
    return id;
}

void conc_header_copy(conc_header_t *out, const Etcdserverpb__ResponseHeader *h) {
    memset(out, 0, sizeof *out);
    if (!h) return;
    out->cluster_id = h->cluster_id;
    out->member_id = h->member_id;
    out->raft_term = h->raft_term;
    out->revision = h->revision;
}

void conc_header_fill(Etcdserverpb__ResponseHeader *h, const conc_header_t *c) {
    Etcdserverpb__ResponseHeader init = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    *h = init;
    h->cluster_id = c->cluster_id;
    h->member_id = c->member_id;
    h->raft_term = c->raft_term;
    h->revision = c->revision;
}

void conc_reply(grpc_call_t *call, const ProtobufCMessage *m) {
    if (grpc_call_is_closed(call)) return;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    protobuf_c_message_pack(m, buf);
    if (grpc_call_send_owned(call, buf, n, free) == 0)
        grpc_call_finish(call, GRPC_OK, NULL);
    else
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "kshim: cannot queue the response message");
}

/* ---- waitDeletes ---- */

struct conc_wait {
    server_t *s;
    const lc_ident_t *id;
    uint8_t *pfx;
    size_t pfx_len;
    int64_t max_rev;
    lc_call_t *call; /* the Range or the Watch in flight */
    conc_wait_fn done;
    void *arg;
};

static void wait_range(conc_wait_t *w);

void conc_wait_cancel(conc_wait_t *w) {
    if (!w) return;
    lc_cancel(w->call);
    free(w->pfx);
    free(w);
}

static void wait_finish(conc_wait_t *w, grpc_status_t st, const char *msg, const conc_header_t *hdr) {
    conc_wait_fn done = w->done;
    void *arg = w->arg;
    conc_wait_cancel(w);
    done(arg, st, msg, hdr);
}

/* waitDelete: the first DELETE event ends the watch; a cancelled watcher
 * (compacted) is the watch channel's error. */
static void on_watch_msg(void *arg, const uint8_t *msg, size_t len) {
    conc_wait_t *w = arg;
    Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(NULL, len, msg);
    if (!r) {
        wait_finish(w, GRPC_INTERNAL, "kshim: bad WatchResponse", NULL);
        return;
    }
    int deleted = 0;
    for (size_t i = 0; i < r->n_events && !deleted; i++)
        deleted = r->events[i]->type == MVCCPB__EVENT__EVENT_TYPE__DELETE;
    if (deleted) {
        lc_cancel(w->call);
        w->call = NULL;
        wait_range(w);
    } else if (r->canceled) {
        char text[256];
        if (r->compact_revision > 0)
            snprintf(text, sizeof text, "mvcc: required revision has been compacted");
        else
            snprintf(text, sizeof text, "%s",
                     r->cancel_reason && r->cancel_reason[0] ? r->cancel_reason
                                                             : "lost watcher waiting for delete");
        wait_finish(w, GRPC_UNKNOWN, text, NULL);
    }
    etcdserverpb__watch_response__free_unpacked(r, NULL);
}

static void on_watch_done(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    conc_wait_t *w = arg;
    if (st == GRPC_OK) msg = "lost watcher waiting for delete";
    wait_finish(w, st == GRPC_OK ? GRPC_UNKNOWN : lc_outer_status(st, msg), msg, NULL);
}

static void wait_watch(conc_wait_t *w, const ProtobufCBinaryData *key, int64_t rev) {
    Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    c.key = *key;
    c.start_revision = rev;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = &c;
    lc_stream(w->s, w->id, CONC_WATCH, &req.base, on_watch_msg, NULL, on_watch_done, w, &w->call);
}

static void on_range(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len) {
    conc_wait_t *w = arg;
    if (st != GRPC_OK) {
        wait_finish(w, lc_outer_status(st, msg), msg, NULL);
        return;
    }
    Etcdserverpb__RangeResponse *r = resp ? etcdserverpb__range_response__unpack(NULL, len, resp) : NULL;
    if (!r) {
        wait_finish(w, GRPC_INTERNAL, "kshim: bad RangeResponse", NULL);
        return;
    }
    conc_header_t hdr;
    conc_header_copy(&hdr, r->header);
    if (r->n_kvs == 0)
        wait_finish(w, GRPC_OK, NULL, &hdr);
    else
        wait_watch(w, &r->kvs[0]->key, hdr.revision);
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

/* clientv3 Get(pfx, WithLastCreate(), WithMaxCreateRev(max)). */
static void wait_range(conc_wait_t *w) {
    uint8_t end[w->pfx_len];
    Etcdserverpb__RangeRequest r;
    conc_range_edge(&r, w->pfx, w->pfx_len, end, 1);
    r.max_create_revision = w->max_rev;
    lc_unary(w->s, w->id, CONC_KV_RANGE, &r.base, on_range, w, &w->call);
}

conc_wait_t *conc_wait_start(server_t *s, const lc_ident_t *id, const uint8_t *pfx, size_t n,
                             int64_t max_create_rev, conc_wait_fn done, void *arg) {
    conc_wait_t *w = calloc(1, sizeof *w);
    if (!w || !(w->pfx = malloc(n))) {
        free(w);
        return NULL;
    }
    memcpy(w->pfx, pfx, n);
    w->s = s;
    w->id = id;
    w->pfx_len = n;
    w->max_rev = max_create_rev;
    w->done = done;
    w->arg = arg;
    wait_range(w);
    return w;
}
