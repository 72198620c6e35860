/*
 * local_client.c: the in-process client of local_client.h.
 *
 * Each lc_call_t owns one local call of the gRPC server and the queue of
 * what the call answered and its caller has not been handed yet. The sink
 * only queues (copies) and arms the call's 0 ms timer; the timer hands the
 * queue over in order. A cancelled or finished call is destroyed from that
 * timer too: grpc_call_local_close then runs the method's on_cancel outside
 * any other service's callback. Every call is in the registry
 * (server_t.lclient) until destroyed, so local_client_stop frees what is
 * left when the loop has stopped.
 */
#include <stdlib.h>
#include <string.h>

#include "local_client.h"
#include "log.h"

typedef struct lc_event {
    struct lc_event *next;
    int finish; /* 1: the status; 0: a stream message */
    grpc_status_t status;
    char *text;
    uint8_t *data;
    size_t len;
} lc_event_t;

struct lc_call {
    struct lc_call *prev, *next; /* the registry */
    server_t *s;
    grpc_call_t *call; /* NULL once closed */
    lc_call_t **slot;
    lc_done_fn done;
    lc_msg_fn on_msg; /* NULL: unary */
    lc_queued_fn queued;
    void *arg;
    int live;      /* callbacks may still run */
    int in_flush;  /* the timer is handing events over */
    int finished;  /* the sink saw the status */
    uint8_t *resp; /* a unary call's response */
    size_t resp_len;
    lc_event_t *head, *tail;
    loop_timer_t *timer;
};

struct local_client {
    lc_call_t *head;
};

int lc_ident_from_call(lc_ident_t *id, grpc_call_t *call) {
    const char *tok = grpc_call_metadata(call, "token");
    const char *cn = grpc_call_peer_cn(call);
    id->token = tok ? strdup(tok) : NULL;
    id->peer_cn = cn ? strdup(cn) : NULL;
    if ((tok && !id->token) || (cn && !id->peer_cn)) {
        lc_ident_clear(id);
        return -1;
    }
    return 0;
}

void lc_ident_clear(lc_ident_t *id) {
    free(id->token);
    free(id->peer_cn);
    id->token = id->peer_cn = NULL;
}

size_t lc_prefix_end(const uint8_t *p, size_t n, uint8_t *out) {
    memcpy(out, p, n);
    for (size_t i = n; i > 0; i--) {
        if (out[i - 1] < 0xff) {
            out[i - 1]++;
            return i;
        }
    }
    out[0] = 0;
    return 1;
}

grpc_status_t lc_outer_status(grpc_status_t st, const char *msg) {
    if (st == GRPC_OK || !msg) return st;
    if (strncmp(msg, "etcdserver: ", 12) == 0 || strncmp(msg, "mvcc: ", 6) == 0) return GRPC_UNKNOWN;
    return st;
}

/* ---- the registry and destruction ---- */

static struct local_client *registry(server_t *s) {
    if (!s->lclient) s->lclient = calloc(1, sizeof *s->lclient);
    return s->lclient;
}

static void destroy(lc_call_t *c) {
    if (c->timer) loop_timer_cancel(c->s->loop, c->timer);
    if (c->call) grpc_call_local_close(c->call);
    while (c->head) {
        lc_event_t *e = c->head;
        c->head = e->next;
        free(e->text);
        free(e->data);
        free(e);
    }
    free(c->resp);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->s->lclient->head = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c);
}

static void flush(loop_t *loop, void *arg);

static void arm(lc_call_t *c) {
    if (c->timer || c->in_flush) return;
    c->timer = loop_timer_add(c->s->loop, 0, flush, c);
    if (!c->timer) log_error("local client: cannot arm a loop timer (out of memory)");
}

static void detach(lc_call_t *c) {
    c->live = 0;
    if (c->slot) *c->slot = NULL;
    c->slot = NULL;
}

/* Hands the queue over while the caller wants it; destroys a call that is
 * done with. */
static void flush(loop_t *loop, void *arg) {
    lc_call_t *c = arg;
    c->timer = NULL;
    c->in_flush = 1;
    while (c->live && c->head) {
        lc_event_t *e = c->head;
        c->head = e->next;
        if (!c->head) c->tail = NULL;
        if (e->finish) {
            lc_done_fn done = c->done;
            detach(c);
            if (done) done(c->arg, e->status, e->text, c->resp, c->resp_len);
        } else {
            c->on_msg(c->arg, e->data, e->len);
        }
        free(e->text);
        free(e->data);
        free(e);
    }
    c->in_flush = 0;
    if (!c->live) destroy(c);
}

static int enqueue(lc_call_t *c, int finish, grpc_status_t st, const char *text, const uint8_t *data,
                   size_t len) {
    lc_event_t *e = calloc(1, sizeof *e);
    if (!e) return -1;
    e->finish = finish;
    e->status = st;
    if (text && !(e->text = strdup(text))) {
        free(e);
        return -1;
    }
    if (len && !(e->data = malloc(len))) {
        free(e->text);
        free(e);
        return -1;
    }
    if (len) memcpy(e->data, data, len);
    e->len = len;
    if (c->tail)
        c->tail->next = e;
    else
        c->head = e;
    c->tail = e;
    arm(c);
    return 0;
}

/* The status could not be queued (no memory): the caller still hears. */
static void enqueue_finish(lc_call_t *c, grpc_status_t st, const char *text) {
    if (enqueue(c, 1, st, text, NULL, 0) == 0) return;
    if (enqueue(c, 1, GRPC_RESOURCE_EXHAUSTED, NULL, NULL, 0) != 0)
        log_error("local client: a call's status was lost (out of memory)");
}

/* ---- the sink ---- */

static void sink_message(void *arg, const uint8_t *msg, size_t len) {
    lc_call_t *c = arg;
    if (!c->live || c->finished) return;
    if (c->on_msg) {
        if (enqueue(c, 0, GRPC_OK, NULL, msg, len) != 0) {
            c->finished = 1;
            enqueue_finish(c, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        }
        return;
    }
    if (c->resp) return; /* a unary method sends one */
    c->resp = malloc(len ? len : 1);
    if (!c->resp) return; /* answered below as OK without a message: the caller refuses that */
    memcpy(c->resp, msg, len);
    c->resp_len = len;
}

static void sink_finish(void *arg, grpc_status_t status, const char *message) {
    lc_call_t *c = arg;
    if (c->finished) return;
    c->finished = 1;
    enqueue_finish(c, status, message);
}

static size_t sink_queued(void *arg) {
    lc_call_t *c = arg;
    return c->live && c->queued ? c->queued(c->arg) : 0;
}

static const grpc_call_sink_t lc_sink = {sink_message, sink_finish, sink_queued};

/* ---- starting and cancelling ---- */

static void start(server_t *s, const lc_ident_t *id, const char *path, const ProtobufCMessage *req,
                  lc_msg_fn on_msg, lc_queued_fn queued, lc_done_fn done, void *arg, lc_call_t **slot) {
    struct local_client *reg = registry(s);
    lc_call_t *c = reg ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        /* Nothing to hand the failure over with: the caller's own state
         * stays as it is, and its client call ends by its deadline or when
         * the client goes away. */
        log_error("local client: cannot start %s (out of memory)", path);
        if (slot) *slot = NULL;
        return;
    }
    c->s = s;
    c->done = done;
    c->on_msg = on_msg;
    c->queued = queued;
    c->arg = arg;
    c->live = 1;
    c->slot = done ? slot : NULL;
    if (c->slot) *c->slot = c;
    c->next = reg->head;
    if (reg->head) reg->head->prev = c;
    reg->head = c;

    const char *md[] = {"token", id ? id->token : NULL, NULL};
    c->call = grpc_call_local_new(s->grpc, path, md[1] ? md : NULL, id ? id->peer_cn : NULL, &lc_sink, c);
    if (!c->call) {
        c->finished = 1;
        enqueue_finish(c, GRPC_UNIMPLEMENTED, "kshim: cannot start an in-process request");
        return;
    }
    grpc_call_local_uncounted(c->call); /* etcd's v3client calls the servers directly */
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        c->finished = 1;
        enqueue_finish(c, GRPC_RESOURCE_EXHAUSTED, "etcdserver: out of memory");
        return;
    }
    protobuf_c_message_pack(req, buf);
    grpc_call_local_message(c->call, buf, n);
    free(buf);
    if (!done) detach(c); /* fire and forget: destroyed once answered */
    if (!done && c->finished) arm(c);
}

void lc_unary(server_t *s, const lc_ident_t *id, const char *path, const ProtobufCMessage *req,
              lc_done_fn done, void *arg, lc_call_t **slot) {
    start(s, id, path, req, NULL, NULL, done, arg, slot);
}

void lc_stream(server_t *s, const lc_ident_t *id, const char *path, const ProtobufCMessage *req,
               lc_msg_fn on_msg, lc_queued_fn queued, lc_done_fn done, void *arg, lc_call_t **slot) {
    start(s, id, path, req, on_msg, queued, done, arg, slot);
}

void lc_cancel(lc_call_t *c) {
    if (!c || !c->live) return;
    detach(c);
    arm(c);
}

void local_client_stop(server_t *s) {
    struct local_client *reg = s->lclient;
    if (!reg) return;
    while (reg->head) destroy(reg->head);
    free(reg);
    s->lclient = NULL;
}
