/*
 * grpc.c: the gRPC server on top of h2_conn (implements grpc.h).
 *
 * Owns: the server (method table, listeners, TLS contexts), and one call
 * object per HTTP/2 stream: its request metadata, message reassembly, the
 * queue of framed response messages, deadline timer and status.
 *
 * Call lifetime: the transport holds one reference from HEADERS until the
 * stream closes (or its connection goes away); services take more with
 * grpc_call_ref. A call is "finished" once grpc_call_finish ran (status
 * queued) and "closed" once the stream is gone; after closing, sends are
 * no-ops. on_cancel runs once if the call closes before it was finished
 * (RST_STREAM, connection closed, deadline exceeded).
 *
 * A stream that is not gRPC (content-type not application/grpc), when an
 * HTTP handler is set, becomes an http_exchange_t backed by the same call
 * object (call->http): its body is collected, its answer queued as raw DATA.
 * HTTP/1.1 connections of the client port go to an http1 server (srv->http1)
 * that h2_conn hands them to after protocol detection. A local call
 * (grpc_call_local_new) has no stream: call->sink gets what the service
 * sends.
 *
 * Error texts follow grpc-go, which etcd clients see from real etcd.
 */
#include "grpc.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_frame.h"
#include "h2_conn.h"
#include "http1.h"
#include "tls.h"

enum {
    GRPC_OVERHEAD_BYTES = 512 * 1024, /* etcd: MaxRecvMsgSize = max-request-bytes + 512 KiB */
    DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024,
    STREAM_WINDOW = 1 << 20,
    CONN_WINDOW = 16 << 20,
    MAX_HEADER_LIST = 16 << 20,
    MAX_LISTENERS = 16,
    /* Request bytes one connection may hold in messages not yet complete
     * (summed over its streams). A stream holds at most one message under
     * max-request-bytes + 512 KiB, but streams are not limited by default:
     * without this, one client could make us hold any amount. Past it:
     * GOAWAY ENHANCE_YOUR_CALM. */
    MAX_CONN_PARTIAL_BYTES = 64 << 20,
};

/* A queued response message. Copied (grpc_call_send): data holds the 5-byte
 * prefix and the message. Owned (grpc_call_send_owned): data holds only the
 * prefix and ext points at the service's buffer, read in place and freed
 * with ext_free once sent: the message is not copied before HTTP/2 framing. */
typedef struct out_chunk {
    struct out_chunk *next;
    size_t len, off;    /* len: 5 + message length */
    const uint8_t *ext; /* owned message, or NULL */
    void (*ext_free)(void *);
    uint8_t data[]; /* 5-byte prefix [+ message when copied] */
} out_chunk_t;

typedef struct md_entry {
    char *name, *value;
} md_entry_t;

struct grpc_call {
    int refs;
    grpc_server_t *srv;
    h2_conn_t *conn; /* NULL once closed */
    int32_t stream_id;
    grpc_call_t *conn_prev, *conn_next;

    const grpc_method_t *method; /* NULL until dispatched */
    char *path;
    char *peer_cn;
    md_entry_t *md;
    size_t md_len, md_cap;
    uint64_t deadline_ms;
    loop_timer_t *deadline_timer;

    grpc_msg_reader_t reader;
    int messages_in;
    int half_closed; /* client sent END_STREAM */

    out_chunk_t *out_head, *out_tail;
    size_t out_bytes;
    int headers_sent;
    int data_deferred; /* data provider returned DEFERRED */
    int finished;
    int closed;
    int cancel_notified;
    grpc_status_t status;
    char *status_msg; /* percent-encoded, may be NULL */

    void *user;
    void (*user_free)(void *);

    http_exchange_t *http;        /* a plain HTTP/2 request (not gRPC), or NULL */
    const grpc_call_sink_t *sink; /* a local call: where answers go */
    void *sink_arg;
    size_t method_index; /* into srv->stats, valid once counted_start */
    int counted_start;   /* started counted, handled not yet */
    int uncounted;       /* a server-internal local call: not in the method stats */
    size_t partial;      /* reader bytes counted in conn_calls_t.partial */
};

typedef struct conn_calls {
    grpc_call_t *head;
    size_t partial; /* bytes of incomplete request messages, every call's */
} conn_calls_t;

struct grpc_server {
    loop_t *loop;
    grpc_server_config_t cfg;
    const grpc_method_t **methods;
    grpc_method_stats_t *stats; /* one per method, same index */
    size_t nmethods, methods_cap;
    nghttp2_session_callbacks *callbacks;
    h2_conn_hooks_t hooks;
    size_t conns_open; /* over every listener: hooks.open_count */
    h2_listener_t *listeners[MAX_LISTENERS];
    tls_server_t *tls[MAX_LISTENERS];
    size_t nlisteners;
    grpc_guard_fn guard; /* optional, see grpc_server_set_guard */
    void *guard_ctx;
    grpc_http_fn http_fn; /* plain HTTP requests, or NULL */
    void *http_ctx;
    http1_server_t *http1; /* HTTP/1.1 connections handed over by h2_conn */
};

static void call_close(grpc_call_t *call, int notify_cancel);

/* ---- per-method counters (grpc_server_method_stats) ---- */

static void stats_start(grpc_call_t *call, size_t index) {
    call->method_index = index;
    call->counted_start = 1;
    call->srv->stats[index].started++;
}

/* The call's outcome, once: its status, or Canceled when the client went
 * away first (what grpc-go's handler returns then). */
static void stats_handled(grpc_call_t *call, grpc_status_t status) {
    if (!call->counted_start) return;
    call->counted_start = 0;
    if ((unsigned)status >= GRPC_STATUS_COUNT) status = GRPC_UNKNOWN;
    call->srv->stats[call->method_index].handled[status]++;
}

/* What a call whose client left first counts as (grpc_method_t.left_unknown). */
static grpc_status_t left_status(const grpc_call_t *call) {
    return call->method && call->method->left_unknown ? GRPC_UNKNOWN : GRPC_CANCELLED;
}

static void stats_msg(grpc_call_t *call, int sent, size_t len) {
    if (!call->method || call->uncounted) return; /* a method is set together with stats_start */
    grpc_method_stats_t *st = &call->srv->stats[call->method_index];
    if (sent) {
        st->msg_sent++;
        st->bytes_sent += len;
    } else {
        st->msg_received++;
        st->bytes_received += len;
    }
}

/* A plain HTTP request body: room for a JSON request whose message is at
 * the gRPC limit (base64 is 4/3 of the bytes, plus the JSON around them),
 * so the limit answers as for gRPC (grpc_call_local_message). */
static size_t http_body_max(const grpc_server_t *srv) {
    return 2 * (srv->cfg.max_request_bytes + GRPC_OVERHEAD_BYTES) + 65536;
}
static void reject_stream(grpc_call_t *call);
static int queue_chunk(grpc_call_t *call, out_chunk_t *c);

/* ---- calls ---- */

static void chunk_free(out_chunk_t *c) {
    if (c->ext && c->ext_free) c->ext_free((void *)c->ext);
    free(c);
}

/* The contiguous bytes of c at its offset: the prefix, then the message. */
static const uint8_t *chunk_at(const out_chunk_t *c, size_t *avail) {
    if (!c->ext || c->off >= 5) {
        *avail = c->len - c->off;
        return c->ext ? c->ext + (c->off - 5) : c->data + c->off;
    }
    *avail = 5 - c->off;
    return c->data + c->off;
}

static grpc_call_t *call_new(grpc_server_t *srv, h2_conn_t *conn, int32_t stream_id) {
    grpc_call_t *call = calloc(1, sizeof(*call));
    if (!call) return NULL;
    call->refs = 1; /* the transport's */
    call->srv = srv;
    call->conn = conn;
    call->stream_id = stream_id;
    grpc_msg_reader_init(&call->reader, srv->cfg.max_request_bytes + GRPC_OVERHEAD_BYTES);
    const char *cn = h2_conn_peer_cn(conn);
    if (cn) call->peer_cn = strdup(cn);
    conn_calls_t *cc = h2_conn_get_user(conn);
    call->conn_next = cc->head;
    if (cc->head) cc->head->conn_prev = call;
    cc->head = call;
    return call;
}

static void call_free(grpc_call_t *call) {
    assert(call->closed && !call->conn);
    assert(!call->http);
    if (call->user_free) call->user_free(call->user);
    for (size_t i = 0; i < call->md_len; i++) {
        free(call->md[i].name);
        free(call->md[i].value);
    }
    free(call->md);
    free(call->path);
    free(call->peer_cn);
    free(call->status_msg);
    grpc_msg_reader_free(&call->reader);
    out_chunk_t *c = call->out_head;
    while (c) {
        out_chunk_t *next = c->next;
        chunk_free(c);
        c = next;
    }
    free(call);
}

void grpc_call_ref(grpc_call_t *call) { call->refs++; }

void grpc_call_unref(grpc_call_t *call) {
    assert(call->refs > 0);
    if (--call->refs == 0) call_free(call);
}

int grpc_call_is_closed(grpc_call_t *call) { return call->closed; }
const char *grpc_call_path(grpc_call_t *call) { return call->path; }
const char *grpc_call_peer_cn(grpc_call_t *call) { return call->peer_cn; }
uint64_t grpc_call_deadline_ms(grpc_call_t *call) { return call->deadline_ms; }
loop_t *grpc_call_loop(grpc_call_t *call) { return call->srv->loop; }
size_t grpc_call_send_queued(grpc_call_t *call) {
    if (call->sink) return call->sink->queued ? call->sink->queued(call->sink_arg) : 0;
    return call->out_bytes;
}
size_t grpc_server_max_request_bytes(grpc_server_t *srv) { return srv->cfg.max_request_bytes; }

const char *grpc_call_metadata(grpc_call_t *call, const char *name) {
    for (size_t i = 0; i < call->md_len; i++)
        if (strcmp(call->md[i].name, name) == 0) return call->md[i].value;
    return NULL;
}

void grpc_call_set_user(grpc_call_t *call, void *user, void (*free_fn)(void *)) {
    call->user = user;
    call->user_free = free_fn;
}

void *grpc_call_get_user(grpc_call_t *call) { return call->user; }

static int md_add(grpc_call_t *call, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    if (call->md_len == call->md_cap) {
        size_t cap = call->md_cap ? call->md_cap * 2 : 8;
        md_entry_t *md = realloc(call->md, cap * sizeof(*md));
        if (!md) return -1;
        call->md = md;
        call->md_cap = cap;
    }
    char *n = strndup((const char *)name, nlen);
    char *v = strndup((const char *)value, vlen);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    call->md[call->md_len++] = (md_entry_t){n, v};
    return 0;
}

/* ---- sending ---- */

#define NV(n, v) \
    { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

static ssize_t call_data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                              uint32_t *data_flags, nghttp2_data_source *source, void *user_data);

static void call_kick(grpc_call_t *call) {
    if (call->conn) h2_conn_kick(call->conn);
}

static const char *status_str(grpc_status_t st) {
    static const char *const text[] = {"0", "1",  "2",  "3",  "4",  "5",  "6",  "7", "8",
                                       "9", "10", "11", "12", "13", "14", "15", "16"};
    return (int)st >= 0 && (int)st <= 16 ? text[st] : "2";
}

static int submit_trailers(grpc_call_t *call) {
    nghttp2_nv nv[2] = {NV("grpc-status", status_str(call->status))};
    size_t n = 1;
    if (call->status_msg && call->status_msg[0]) nv[n++] = (nghttp2_nv)NV("grpc-message", call->status_msg);
    return nghttp2_submit_trailer(h2_conn_session(call->conn), call->stream_id, nv, n);
}

static int submit_headers(grpc_call_t *call) {
    nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = call_data_read};
    call->headers_sent = 1;
    return nghttp2_submit_response(h2_conn_session(call->conn), call->stream_id, nv, 2, &prd);
}

static int submit_trailers_only(grpc_call_t *call) {
    nghttp2_nv nv[4] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                        NV("grpc-status", status_str(call->status))};
    size_t n = 3;
    if (call->status_msg && call->status_msg[0]) nv[n++] = (nghttp2_nv)NV("grpc-message", call->status_msg);
    call->headers_sent = 1;
    return nghttp2_submit_response(h2_conn_session(call->conn), call->stream_id, nv, n, NULL);
}

/* nghttp2's data source of a call: sizes the next DATA frame from the queued
 * chunks without copying them (NGHTTP2_DATA_FLAG_NO_COPY; call_data_send
 * writes the frame), and ends the stream once the call is finished and every
 * queued byte is in a frame. */
static ssize_t call_data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                              uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
    grpc_call_t *call = source->ptr;
    size_t n = call->out_bytes < length ? call->out_bytes : length;
    if (n > 0) *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n < call->out_bytes) return (ssize_t)n;
    if (call->finished && call->http) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF; /* plain HTTP: no trailers */
        return (ssize_t)n;
    }
    if (call->finished) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        if (submit_trailers(call) != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return (ssize_t)n;
    }
    if (n > 0) return (ssize_t)n;
    call->data_deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
}

/* nghttp2_send_data_callback: the DATA frame call_data_read sized, its
 * header and then `length` bytes of the call's queued chunks, straight into
 * the connection's output buffer (one copy of a response's bytes on their
 * way to the socket, not two). nghttp2 calls it only while the stream is
 * open, and again with the same frame after NGHTTP2_ERR_WOULDBLOCK. */
static int call_data_send(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                          size_t length, nghttp2_data_source *source, void *user_data) {
    h2_conn_t *conn = user_data;
    grpc_call_t *call = source->ptr;
    assert(frame->data.padlen == 0); /* no select_padding callback */
    assert(length <= call->out_bytes);
    if (!h2_conn_out_has_room(conn)) return NGHTTP2_ERR_WOULDBLOCK;
    if (h2_conn_out_write(conn, framehd, 9) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    while (length > 0) {
        out_chunk_t *c = call->out_head;
        size_t take;
        const uint8_t *src = chunk_at(c, &take);
        if (take > length) take = length;
        if (h2_conn_out_write(conn, src, take) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
        c->off += take;
        length -= take;
        call->out_bytes -= take;
        if (c->off == c->len) {
            call->out_head = c->next;
            if (!call->out_head) call->out_tail = NULL;
            chunk_free(c);
        }
    }
    return 0;
}

static void resume_data(grpc_call_t *call) {
    if (!call->data_deferred) return;
    call->data_deferred = 0;
    nghttp2_session_resume_data(h2_conn_session(call->conn), call->stream_id);
}

static int queue_chunk(grpc_call_t *call, out_chunk_t *c);

int grpc_call_send(grpc_call_t *call, const uint8_t *msg, size_t len) {
    if (call->closed || call->finished || len > UINT32_MAX) return -1;
    stats_msg(call, 1, len);
    if (call->sink) {
        call->sink->on_message(call->sink_arg, msg, len);
        return 0;
    }
    out_chunk_t *c = malloc(sizeof(*c) + 5 + len);
    if (!c) return -1;
    c->next = NULL;
    c->len = 5 + len;
    c->off = 0;
    c->ext = NULL;
    c->ext_free = NULL;
    grpc_frame_prefix(c->data, (uint32_t)len);
    if (len) memcpy(c->data + 5, msg, len);
    return queue_chunk(call, c);
}

int grpc_call_send_owned(grpc_call_t *call, uint8_t *msg, size_t len, void (*free_fn)(void *)) {
    out_chunk_t *c = NULL;
    if (!call->closed && !call->finished && len <= UINT32_MAX) c = malloc(sizeof(*c) + 5);
    if (c) stats_msg(call, 1, len);
    if (c && call->sink) {
        free(c);
        call->sink->on_message(call->sink_arg, msg, len);
        if (free_fn) free_fn(msg);
        return 0;
    }
    if (!c) {
        if (free_fn) free_fn(msg);
        return -1;
    }
    c->next = NULL;
    c->len = 5 + len;
    c->off = 0;
    c->ext = msg;
    c->ext_free = free_fn;
    grpc_frame_prefix(c->data, (uint32_t)len);
    return queue_chunk(call, c);
}

static int queue_chunk(grpc_call_t *call, out_chunk_t *c) {
    if (call->out_tail)
        call->out_tail->next = c;
    else
        call->out_head = c;
    call->out_tail = c;
    call->out_bytes += c->len;
    if (!call->headers_sent) {
        if (submit_headers(call) != 0) return -1;
    } else {
        resume_data(call);
    }
    call_kick(call);
    return 0;
}

/* Finish without running on_cancel (transport-detected errors too). */
static void call_finish(grpc_call_t *call, grpc_status_t status, const char *message) {
    if (call->finished) return;
    call->finished = 1;
    if (call->deadline_timer) {
        loop_timer_cancel(call->srv->loop, call->deadline_timer);
        call->deadline_timer = NULL;
    }
    if (call->closed) return;
    stats_handled(call, status);
    call->status = status;
    if (call->sink) {
        call->sink->on_finish(call->sink_arg, status, message);
        return;
    }
    call->status_msg = message && message[0] ? grpc_percent_encode(message) : NULL;
    if (!call->headers_sent) {
        if (submit_trailers_only(call) != 0)
            nghttp2_submit_rst_stream(h2_conn_session(call->conn), NGHTTP2_FLAG_NONE, call->stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
    } else {
        resume_data(call);
    }
    call_kick(call);
}

void grpc_call_finish(grpc_call_t *call, grpc_status_t status, const char *message) {
    call_finish(call, status, message);
}

/* The stream is gone (or its connection). Drops the transport's reference. */
static void call_close(grpc_call_t *call, int notify_cancel) {
    if (call->closed) return;
    call->closed = 1;
    if (call->deadline_timer) {
        loop_timer_cancel(call->srv->loop, call->deadline_timer);
        call->deadline_timer = NULL;
    }
    conn_calls_t *cc = h2_conn_get_user(call->conn);
    cc->partial -= call->partial;
    call->partial = 0;
    if (call->conn_prev)
        call->conn_prev->conn_next = call->conn_next;
    else
        cc->head = call->conn_next;
    if (call->conn_next) call->conn_next->conn_prev = call->conn_prev;
    nghttp2_session_set_stream_user_data(h2_conn_session(call->conn), call->stream_id, NULL);
    call->conn = NULL;
    if (call->http) {
        http_exchange_t *x = call->http;
        call->http = NULL;
        call->finished = 1;
        http_exchange_detach(x);
    }
    if (!call->finished) stats_handled(call, left_status(call));
    if (notify_cancel && !call->finished && call->method && call->method->on_cancel &&
        !call->cancel_notified) {
        call->cancel_notified = 1;
        call->method->on_cancel(call, call->method->ctx);
    }
    call->finished = 1;
    grpc_call_unref(call);
}

static void deadline_fired(loop_t *loop, void *arg) {
    grpc_call_t *call = arg;
    call->deadline_timer = NULL;
    if (call->finished || call->closed) return;
    grpc_call_ref(call);
    if (call->method && call->method->on_cancel && !call->cancel_notified) {
        call->cancel_notified = 1;
        call->method->on_cancel(call, call->method->ctx);
    }
    /* The default when on_cancel did not finish the call itself: what etcd
     * 3.4 answers on a Watch stream whose grpc-timeout passed. */
    call_finish(call, GRPC_UNKNOWN, "context deadline exceeded");
    grpc_call_unref(call);
}

/* ---- receiving ---- */

static grpc_call_t *stream_call(nghttp2_session *session, int32_t stream_id) {
    return nghttp2_session_get_stream_user_data(session, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    h2_conn_t *conn = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    conn_calls_t *cc = h2_conn_get_user(conn);
    grpc_server_t *srv = *(grpc_server_t **)(cc + 1);
    grpc_call_t *call = call_new(srv, conn, frame->hd.stream_id);
    if (!call) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
    grpc_call_t *call = stream_call(session, frame->hd.stream_id);
    if (!call || frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0; /* client trailers: ignored */
    if (md_add(call, name, namelen, value, valuelen) != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

/* The index of the method registered at path, or -1. */
static long find_method_index(grpc_server_t *srv, const char *path) {
    for (size_t i = 0; i < srv->nmethods; i++)
        if (strcmp(srv->methods[i]->path, path) == 0) return (long)i;
    return -1;
}

static const grpc_method_t *find_method(grpc_server_t *srv, const char *path) {
    long i = find_method_index(srv, path);
    return i < 0 ? NULL : srv->methods[i];
}

/* grpc-go's texts for a path it cannot route. */
static void reject_unknown_path(grpc_call_t *call, const char *path) {
    char msg[512];
    const char *sm = path[0] == '/' ? path + 1 : path;
    const char *slash = strrchr(sm, '/');
    if (!slash) {
        snprintf(msg, sizeof(msg), "malformed method name: \"%s\"", path);
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, msg); /* sic: grpc-go 1.26 */
        return;
    } else {
        int slen = (int)(slash - sm);
        int known_service = 0;
        for (size_t i = 0; i < call->srv->nmethods; i++) {
            const char *p = call->srv->methods[i]->path + 1;
            if (strncmp(p, sm, (size_t)slen + 1) == 0) known_service = 1;
        }
        if (known_service)
            snprintf(msg, sizeof(msg), "unknown method %s for service %.*s", slash + 1, slen, sm);
        else
            snprintf(msg, sizeof(msg), "unknown service %.*s", slen, sm);
    }
    call_finish(call, GRPC_UNIMPLEMENTED, msg);
}

/* ---- plain HTTP/2 requests (http_exchange_t over a stream) ---- */

static int h2x_start(http_exchange_t *x, int status, const char *headers, long len) {
    grpc_call_t *call = x->backend;
    enum { MAX_NV = 16 };
    nghttp2_nv nv[MAX_NV];
    char st[8], clen[24], *copy = strdup(headers);
    if (!copy) return -1;
    snprintf(st, sizeof st, "%d", status);
    size_t n = 0;
    nv[n++] = (nghttp2_nv)NV(":status", st);
    /* "Name: value\r\n" lines; HTTP/2 wants lowercase names. */
    for (char *line = copy, *next; line && *line && n < MAX_NV - 1; line = next) {
        next = strstr(line, "\r\n");
        if (next) *next = 0, next += 2;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        for (char *p = line; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        char *value = colon + 1;
        while (*value == ' ') value++;
        nv[n++] = (nghttp2_nv){(uint8_t *)line, (uint8_t *)value, strlen(line), strlen(value),
                               NGHTTP2_NV_FLAG_NONE};
    }
    if (len >= 0) {
        snprintf(clen, sizeof clen, "%ld", len);
        nv[n++] = (nghttp2_nv)NV("content-length", clen);
    }
    nghttp2_data_provider prd = {.source.ptr = call, .read_callback = call_data_read};
    call->headers_sent = 1;
    int rc = nghttp2_submit_response(h2_conn_session(call->conn), call->stream_id, nv, n, &prd);
    free(copy); /* nghttp2 copied the header block */
    call_kick(call);
    return rc == 0 ? 0 : -1;
}

static int h2x_write(http_exchange_t *x, const char *data, size_t len) {
    grpc_call_t *call = x->backend;
    out_chunk_t *c = malloc(sizeof(*c) + len);
    if (!c) return -1;
    *c = (out_chunk_t){.len = len};
    memcpy(c->data, data, len);
    return queue_chunk(call, c);
}

static void h2x_end(http_exchange_t *x) {
    grpc_call_t *call = x->backend;
    call->finished = 1;
    resume_data(call);
    call_kick(call);
}

static size_t h2x_queued(http_exchange_t *x) { return ((grpc_call_t *)x->backend)->out_bytes; }

static const http_exchange_ops_t h2x_ops = {h2x_start, h2x_write, h2x_end, h2x_queued};

/* A request that is not gRPC: an exchange on this stream, handed to the
 * HTTP handler once its body is complete (END_STREAM). */
static void start_http_stream(grpc_call_t *call, const char *method, const char *path) {
    http_exchange_t *x = http_exchange_new(&h2x_ops, call);
    const char *q = strchr(path, '?');
    if (x) {
        x->method = strdup(method);
        x->path = q ? strndup(path, (size_t)(q - path)) : strdup(path);
        x->query = strdup(q ? q + 1 : "");
        x->peer_cn = call->peer_cn;
    }
    for (size_t i = 0; x && i < call->md_len; i++) {
        const char *name = call->md[i].name, *value = call->md[i].value;
        if (name[0] == ':') continue;
        if (http_exchange_add_header(x, name, strlen(name), value, strlen(value)) != 0) break;
    }
    if (!x || !x->method || !x->path || !x->query) {
        if (x) http_exchange_unref(x);
        reject_stream(call);
        return;
    }
    call->http = x;
}

/* Not a gRPC request at all: etcd (grpc-go) resets the stream. */
static void reject_stream(grpc_call_t *call) {
    call->finished = 1;
    nghttp2_submit_rst_stream(h2_conn_session(call->conn), NGHTTP2_FLAG_NONE, call->stream_id,
                              NGHTTP2_PROTOCOL_ERROR);
}

static int is_grpc_request(const char *method, const char *ctype) {
    return method && strcmp(method, "POST") == 0 && ctype && strncmp(ctype, "application/grpc", 16) == 0 &&
           (ctype[16] == 0 || ctype[16] == '+' || ctype[16] == ';');
}

static void dispatch_headers(nghttp2_session *session, grpc_call_t *call) {
    const char *method = grpc_call_metadata(call, ":method");
    const char *path = grpc_call_metadata(call, ":path");
    const char *ctype = grpc_call_metadata(call, "content-type");
    if (call->srv->http_fn && path && method && !is_grpc_request(method, ctype)) {
        start_http_stream(call, method, path);
        return;
    }
    if (!method || strcmp(method, "POST") != 0) {
        reject_stream(call);
        return;
    }
    if (!ctype || strncmp(ctype, "application/grpc", 16) != 0 ||
        (ctype[16] != 0 && ctype[16] != '+' && ctype[16] != ';')) {
        reject_stream(call);
        return;
    }
    if (!path) {
        reject_stream(call);
        return;
    }
    call->path = strdup(path);
    const char *enc = grpc_call_metadata(call, "grpc-encoding");
    if (enc && strcmp(enc, "identity") != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "grpc: Decompressor is not installed for grpc-encoding \"%s\"", enc);
        call_finish(call, GRPC_UNIMPLEMENTED, msg);
        return;
    }
    const char *timeout = grpc_call_metadata(call, "grpc-timeout");
    if (timeout) {
        int64_t ms = grpc_parse_timeout_ms(timeout);
        if (ms < 0) {
            reject_stream(call);
            return;
        }
        loop_t *loop = call->srv->loop;
        call->deadline_ms = loop_now_ms(loop) + (uint64_t)ms;
        call->deadline_timer = loop_timer_add(loop, (uint64_t)ms, deadline_fired, call);
    }
    long mi = find_method_index(call->srv, path);
    if (mi < 0) {
        reject_unknown_path(call, path);
        return;
    }
    call->method = call->srv->methods[mi];
    stats_start(call, (size_t)mi);
}

static int on_one_message(const uint8_t *msg, size_t len, int compressed, void *arg) {
    grpc_call_t *call = arg;
    if (compressed) {
        /* No grpc-encoding (or identity) was announced: grpc-go's answer. */
        call_finish(call, GRPC_INTERNAL, "grpc: compressed flag set with identity or empty encoding");
        return 1;
    }
    call->messages_in++;
    /* etcd 3.4 (grpc-go 1.26) reads one message of a unary call and ignores
     * anything after it. */
    if (!call->method->client_streaming && call->messages_in > 1) return 0;
    stats_msg(call, 0, len);
    if (call->messages_in == 1 && call->srv->guard &&
        call->srv->guard(call, call->method->path, msg, len, call->srv->guard_ctx))
        return 1;
    call->method->on_message(call, msg, len, call->method->ctx);
    return call->finished || call->closed;
}

/* After feeding: the call's partial message bytes into its connection's sum;
 * a connection past MAX_CONN_PARTIAL_BYTES is ended (GOAWAY). */
static void count_partial(grpc_call_t *call) {
    if (!call->conn) return; /* closed meanwhile: call_close took it out */
    conn_calls_t *cc = h2_conn_get_user(call->conn);
    size_t now = call->reader.have;
    cc->partial = cc->partial - call->partial + now;
    call->partial = now;
    if (cc->partial > MAX_CONN_PARTIAL_BYTES)
        nghttp2_session_terminate_session(h2_conn_session(call->conn), NGHTTP2_ENHANCE_YOUR_CALM);
}

static void deliver_data(grpc_call_t *call, const uint8_t *data, size_t len) {
    if (call->http) {
        if (!call->http->started &&
            http_exchange_add_body(call->http, (const char *)data, len, http_body_max(call->srv)) != 0)
            http_exchange_reply(call->http, 413, "text/plain; charset=utf-8", NULL, "request too large\n",
                                18);
        return;
    }
    if (call->finished || call->closed || !call->method) return;
    if (!call->method->client_streaming && call->messages_in > 0) return;
    grpc_call_ref(call);
    int rc = grpc_msg_reader_feed(&call->reader, data, len, on_one_message, call);
    count_partial(call);
    if (rc == GRPC_READ_TOO_LARGE) {
        char msg[128];
        snprintf(msg, sizeof(msg), "grpc: received message larger than max (%u vs. %zu)",
                 call->reader.too_large, call->reader.max_len);
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, msg);
    } else if (rc == GRPC_READ_NOMEM) {
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, "grpc: out of memory");
    }
    grpc_call_unref(call);
}

static void deliver_half_close(grpc_call_t *call) {
    call->half_closed = 1;
    if (call->http) {
        if (!call->http->started) call->srv->http_fn(call->srv->http_ctx, call->http);
        return;
    }
    if (call->finished || call->closed || !call->method) return;
    if (grpc_msg_reader_partial(&call->reader)) {
        /* etcd 3.4: io.ErrUnexpectedEOF from grpc-go's parser, as Unknown. */
        call_finish(call, GRPC_UNKNOWN, "unexpected EOF");
        return;
    }
    if (!call->method->client_streaming) {
        if (call->messages_in == 0) call_finish(call, GRPC_UNKNOWN, "EOF"); /* etcd 3.4 */
        return;
    }
    if (call->method->on_half_close) {
        grpc_call_ref(call);
        call->method->on_half_close(call, call->method->ctx);
        grpc_call_unref(call);
    }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    grpc_call_t *call = stream_call(session, frame->hd.stream_id);
    if (!call) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        dispatch_headers(session, call);
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) deliver_half_close(call);
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data) {
    grpc_call_t *call = stream_call(session, stream_id);
    if (call) deliver_data(call, data, len);
    return 0;
}

/* grpc-go ends a stream it finished while the client still sends with
 * RST_STREAM(NO_ERROR), so the client stops sending. */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    if (!nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id))
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
    grpc_call_t *call = stream_call(session, stream_id);
    if (call) call_close(call, 1);
    return 0;
}

/* ---- connections ---- */

static void conn_opened(h2_conn_t *conn, void *arg) {
    /* conn_calls_t followed by the server pointer, in one allocation. */
    conn_calls_t *cc = calloc(1, sizeof(conn_calls_t) + sizeof(grpc_server_t *));
    assert(cc); /* tiny; a failure here is not recoverable sensibly */
    *(grpc_server_t **)(cc + 1) = arg;
    h2_conn_set_user(conn, cc);
}

static void conn_closed(h2_conn_t *conn, void *arg) {
    conn_calls_t *cc = h2_conn_get_user(conn);
    if (!cc) return;
    while (cc->head) call_close(cc->head, 1);
    free(cc);
    h2_conn_set_user(conn, NULL);
}

/* h2_conn found HTTP/1.1 on a client connection. */
static void conn_http1(int fd, tls_conn_t *tls, const uint8_t *pre, size_t n, void *arg) {
    grpc_server_t *srv = arg;
    http1_server_adopt(srv->http1, fd, tls, (const char *)pre, n);
}

int grpc_server_set_http_handler(grpc_server_t *srv, grpc_http_fn fn, void *ctx) {
    if (srv->http1 || srv->nlisteners) return -1;
    srv->http1 = http1_server_new_async(srv->loop, fn, ctx, http_body_max(srv));
    if (!srv->http1) return -1;
    srv->http_fn = fn;
    srv->http_ctx = ctx;
    srv->hooks.on_http1 = conn_http1;
    return 0;
}

/* ---- local calls ---- */

grpc_call_t *grpc_call_local_new(grpc_server_t *srv, const char *path, const char *const *md,
                                 const char *peer_cn, const grpc_call_sink_t *sink, void *arg) {
    long mi = find_method_index(srv, path);
    if (mi < 0) return NULL;
    const grpc_method_t *m = srv->methods[mi];
    grpc_call_t *call = calloc(1, sizeof(*call));
    if (!call) return NULL;
    call->refs = 1; /* the caller's */
    call->srv = srv;
    call->method = m;
    call->sink = sink;
    call->sink_arg = arg;
    call->path = strdup(path);
    if (peer_cn) call->peer_cn = strdup(peer_cn);
    int ok = call->path && (!peer_cn || call->peer_cn);
    for (size_t i = 0; ok && md && md[i]; i += 2)
        ok = md_add(call, (const uint8_t *)md[i], strlen(md[i]), (const uint8_t *)md[i + 1],
                    strlen(md[i + 1])) == 0;
    if (!ok) {
        call->closed = 1;
        grpc_call_unref(call);
        return NULL;
    }
    stats_start(call, (size_t)mi);
    return call;
}

void grpc_call_local_uncounted(grpc_call_t *call) {
    if (call->counted_start) call->srv->stats[call->method_index].started--;
    call->counted_start = 0;
    call->uncounted = 1;
}

void grpc_call_local_message(grpc_call_t *call, const uint8_t *msg, size_t len) {
    if (call->finished || call->closed) return;
    if (!call->method->client_streaming && call->messages_in > 0) return;
    size_t max = call->srv->cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    if (len > max) { /* the same limit and text as a gRPC request's */
        char text[128];
        snprintf(text, sizeof(text), "grpc: received message larger than max (%zu vs. %zu)", len, max);
        grpc_call_ref(call);
        call_finish(call, GRPC_RESOURCE_EXHAUSTED, text);
        grpc_call_unref(call);
        return;
    }
    call->messages_in++;
    stats_msg(call, 0, len);
    grpc_call_ref(call);
    call->method->on_message(call, msg, len, call->method->ctx);
    grpc_call_unref(call);
}

void grpc_call_local_half_close(grpc_call_t *call) {
    call->half_closed = 1;
    if (call->finished || call->closed || !call->method->client_streaming || !call->method->on_half_close)
        return;
    grpc_call_ref(call);
    call->method->on_half_close(call, call->method->ctx);
    grpc_call_unref(call);
}

void grpc_call_local_close(grpc_call_t *call) {
    if (call->closed) return;
    call->closed = 1;
    call->sink = NULL;
    if (call->deadline_timer) {
        loop_timer_cancel(call->srv->loop, call->deadline_timer);
        call->deadline_timer = NULL;
    }
    if (!call->finished) stats_handled(call, left_status(call));
    if (!call->finished && call->method->on_cancel && !call->cancel_notified) {
        call->cancel_notified = 1;
        call->method->on_cancel(call, call->method->ctx);
    }
    call->finished = 1;
    grpc_call_unref(call);
}

/* ---- server ---- */

grpc_server_t *grpc_server_new(loop_t *loop, const grpc_server_config_t *cfg) {
    grpc_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv) return NULL;
    srv->loop = loop;
    if (cfg) srv->cfg = *cfg;
    if (!srv->cfg.max_request_bytes) srv->cfg.max_request_bytes = DEFAULT_MAX_REQUEST_BYTES;
    if (!srv->cfg.max_concurrent_streams) srv->cfg.max_concurrent_streams = UINT32_MAX; /* etcd's default */
    if (!srv->cfg.max_connections) srv->cfg.max_connections = GRPC_DEFAULT_MAX_CONNECTIONS;
    if (nghttp2_session_callbacks_new(&srv->callbacks) != 0) {
        free(srv);
        return NULL;
    }
    nghttp2_session_callbacks *cb = srv->callbacks;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cb, call_data_send);
    srv->hooks = (h2_conn_hooks_t){
        .callbacks = srv->callbacks,
        .on_open = conn_opened,
        .on_close = conn_closed,
        .arg = srv,
        .max_concurrent_streams = srv->cfg.max_concurrent_streams,
        .initial_window_size = STREAM_WINDOW,
        .connection_window_size = CONN_WINDOW,
        .max_header_list_size = MAX_HEADER_LIST,
        .max_connections = srv->cfg.max_connections,
        .open_count = &srv->conns_open,
    };
    return srv;
}

void grpc_server_free(grpc_server_t *srv) {
    if (!srv) return;
    http1_server_free(srv->http1); /* its TLS sessions hold the listeners' contexts */
    for (size_t i = 0; i < srv->nlisteners; i++) {
        h2_listener_free(srv->listeners[i]);
        tls_server_free(srv->tls[i]);
    }
    nghttp2_session_callbacks_del(srv->callbacks);
    free(srv->methods);
    free(srv->stats);
    free(srv);
}

void grpc_server_set_guard(grpc_server_t *srv, grpc_guard_fn fn, void *ctx) {
    srv->guard = fn;
    srv->guard_ctx = ctx;
}

int grpc_server_register(grpc_server_t *srv, const grpc_method_t *method) {
    if (!method || !method->path || method->path[0] != '/' || !method->on_message) return -1;
    if (find_method(srv, method->path)) return -1;
    if (srv->nmethods == srv->methods_cap) {
        size_t cap = srv->methods_cap ? srv->methods_cap * 2 : 32;
        const grpc_method_t **m = realloc(srv->methods, cap * sizeof(*m));
        if (!m) return -1;
        srv->methods = m;
        grpc_method_stats_t *st = realloc(srv->stats, cap * sizeof(*st));
        if (!st) return -1;
        srv->stats = st;
        srv->methods_cap = cap;
    }
    memset(&srv->stats[srv->nmethods], 0, sizeof(*srv->stats));
    srv->methods[srv->nmethods++] = method;
    return 0;
}

size_t grpc_server_method_count(grpc_server_t *srv) { return srv->nmethods; }

const grpc_method_t *grpc_server_method_stats(grpc_server_t *srv, size_t i, grpc_method_stats_t *out) {
    if (i >= srv->nmethods) return NULL;
    *out = srv->stats[i];
    return srv->methods[i];
}

/* "http://127.0.0.1:2379", "https://[::1]:2379" -> scheme flag, host, port. */
static int parse_url(const char *url, int *is_tls, char *host, size_t hostlen, int *port) {
    const char *p;
    if (strncmp(url, "http://", 7) == 0)
        *is_tls = 0, p = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        *is_tls = 1, p = url + 8;
    else
        return -1;
    const char *hend, *colon;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend || hend[1] != ':') return -1;
        colon = hend + 1;
        p++;
    } else {
        colon = strrchr(p, ':');
        if (!colon) return -1;
        hend = colon;
    }
    size_t hl = (size_t)(hend - p);
    if (hl == 0 || hl >= hostlen) return -1;
    memcpy(host, p, hl);
    host[hl] = 0;
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || (*end && *end != '/') || v < 0 || v > 65535) return -1;
    *port = (int)v;
    return 0;
}

int grpc_server_listen(grpc_server_t *srv, const char *url, const grpc_tls_config_t *tls, char *err,
                       size_t errlen) {
    int is_tls, port;
    char host[256];
    if (srv->nlisteners == MAX_LISTENERS) {
        snprintf(err, errlen, "too many listeners");
        return -1;
    }
    if (parse_url(url, &is_tls, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "bad listen URL %s (want http(s)://IP:PORT)", url);
        return -1;
    }
    tls_server_t *ts = NULL;
    if (is_tls) {
        if (!tls) {
            snprintf(err, errlen, "%s needs TLS certificate and key", url);
            return -1;
        }
        ts = tls_server_new(tls, err, errlen);
        if (!ts) return -1;
    }
    h2_listener_t *l = h2_listen(srv->loop, host, port, ts, &srv->hooks, err, errlen);
    if (!l) {
        tls_server_free(ts);
        return -1;
    }
    srv->listeners[srv->nlisteners] = l;
    srv->tls[srv->nlisteners] = ts;
    srv->nlisteners++;
    return 0;
}

/* One HTTP/2 connection being drained: its streaming calls (Watch,
 * LeaseKeepAlive) never end by themselves, so each is cancelled as a
 * deadline cancels it (on_cancel, then the default status) with etcd's
 * "server stopped"; unary calls run on. */
static void drain_conn_calls(h2_conn_t *conn, void *arg) {
    (void)arg;
    conn_calls_t *cc = h2_conn_get_user(conn);
    if (!cc) return;
    for (grpc_call_t *call = cc->head; call; call = call->conn_next) {
        if (call->finished || call->closed || !call->method || !call->method->client_streaming) continue;
        grpc_call_ref(call);
        if (call->method->on_cancel && !call->cancel_notified) {
            call->cancel_notified = 1;
            call->method->on_cancel(call, call->method->ctx);
        }
        call_finish(call, GRPC_UNAVAILABLE, "etcdserver: server stopped");
        grpc_call_unref(call);
    }
}

void grpc_server_drain(grpc_server_t *srv) {
    for (size_t i = 0; i < srv->nlisteners; i++) h2_listener_drain(srv->listeners[i], drain_conn_calls, srv);
}

size_t grpc_server_session_bytes(grpc_server_t *srv) {
    size_t n = 0;
    for (size_t i = 0; i < srv->nlisteners; i++) n += h2_listener_session_bytes(srv->listeners[i]);
    return n;
}

size_t grpc_server_conn_count(grpc_server_t *srv) {
    size_t n = 0;
    for (size_t i = 0; i < srv->nlisteners; i++) n += h2_listener_conn_count(srv->listeners[i]);
    return n;
}

int grpc_server_port(grpc_server_t *srv, size_t index) {
    return index < srv->nlisteners ? h2_listener_port(srv->listeners[index]) : -1;
}

int grpc_server_reload_tls(grpc_server_t *srv, char *err, size_t errlen) {
    int rc = 0;
    for (size_t i = 0; i < srv->nlisteners; i++)
        if (srv->tls[i] && tls_server_reload(srv->tls[i], err, errlen) != 0) rc = -1;
    return rc;
}

void grpc_thread_cleanup(void) { tls_thread_cleanup(); }
