/*
 * grpc.h: the boundary between the gRPC transport and the etcd services.
 *
 * The transport (TLS, HTTP/2 via nghttp2, gRPC message framing) lives in
 * tls.c, h2_conn.c and grpc.c; the services (svc_*.c) see only this API: a
 * method table keyed by gRPC path, calls that deliver whole request messages,
 * and functions to send response messages and finish with a status.
 *
 * All functions run on the loop thread. A call stays valid while it holds a
 * reference: a service that answers later (after a Raft round trip) takes a
 * ref, and when it answers, checks grpc_call_is_closed() first (the client may
 * have gone away: then sending is a no-op).
 */
#ifndef KSHIM_GRPC_H
#define KSHIM_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "grpc_status.h"
#include "http_exchange.h"
#include "loop.h"

typedef struct grpc_call grpc_call_t;
typedef struct grpc_server grpc_server_t;

typedef struct grpc_method {
    const char *path;     /* "/etcdserverpb.KV/Range" */
    int client_streaming; /* 0: exactly one request message is accepted */
    int server_streaming; /* informational */
    /* A complete, decompressed request message. msg is valid only during the
     * callback. For unary methods it is called once, as soon as the message is
     * complete. */
    void (*on_message)(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx);
    /* Optional: the client half-closed (END_STREAM) a streaming call. */
    void (*on_half_close)(grpc_call_t *call, void *ctx);
    /* Optional: the call ended without grpc_call_finish (RST_STREAM, connection
     * closed, deadline exceeded, server draining a streaming call). Called once;
     * refs stay valid. On a deadline
     * the call is still open during the callback: the service may finish it
     * with its own status (etcd: Unavailable "etcdserver: request timed out"),
     * else the transport sends Unknown "context deadline exceeded". */
    void (*on_cancel)(grpc_call_t *call, void *ctx);
    void *ctx;
    /* grpc_server_method_stats counts a call whose client left before it
     * finished as Canceled (what etcd's KV handlers return), or with
     * left_unknown as Unknown (a handler returning Go's raw ctx.Err(), as
     * etcd's Lock and Election servers do). */
    int left_unknown;
} grpc_method_t;

typedef struct grpc_tls_config {
    const char *cert_file;
    const char *key_file;
    const char *trusted_ca_file; /* NULL: no client certificate checks */
    int client_cert_auth;        /* require and verify a client certificate */
    const char *crl_file;        /* --client-crl-file (PEM or DER), NULL: none */
} grpc_tls_config_t;

typedef struct grpc_server_config {
    size_t max_request_bytes; /* etcd --max-request-bytes (default 1.5 MiB) */
    /* SETTINGS_MAX_CONCURRENT_STREAMS per connection (etcd
     * --max-concurrent-streams); 0 = UINT32_MAX = unlimited (advertised as
     * 4294967295, as etcd 3.4's grpc-go does). A client opening more is refused by nghttp2: RST_STREAM
     * REFUSED_STREAM while our SETTINGS is unacknowledged, a connection
     * error (GOAWAY PROTOCOL_ERROR) after. */
    uint32_t max_concurrent_streams;
    /* Connections open at once over all the server's listeners
     * (h2_conn_hooks_t.max_connections, open_count);
     * 0 = GRPC_DEFAULT_MAX_CONNECTIONS. HTTP/1.1 connections handed to the
     * gateway count until they are told apart. */
    size_t max_connections;
} grpc_server_config_t;

enum { GRPC_DEFAULT_MAX_CONNECTIONS = 10000 };

grpc_server_t *grpc_server_new(loop_t *loop, const grpc_server_config_t *cfg);
void grpc_server_free(grpc_server_t *srv);

/* Optional: runs on the loop before a call's first message reaches its
 * method (path as registered). Returns non-zero when it finished the call
 * itself (the method then never sees it), 0 to let it through. */
typedef int (*grpc_guard_fn)(grpc_call_t *call, const char *path, const uint8_t *msg, size_t len, void *ctx);
void grpc_server_set_guard(grpc_server_t *srv, grpc_guard_fn fn, void *ctx);

/* The method table must outlive the server. Unknown paths get UNIMPLEMENTED. */
int grpc_server_register(grpc_server_t *srv, const grpc_method_t *method);

/* Per registered method, what go-grpc-prometheus counts (loop thread):
 * calls started, calls handled by final status (a call whose client went
 * away before it finished: GRPC_CANCELLED), request messages delivered and
 * response messages queued (and their bytes). Local calls count as gRPC
 * calls. */
#define GRPC_STATUS_COUNT 17
typedef struct grpc_method_stats {
    uint64_t started, msg_received, msg_sent;
    uint64_t bytes_received, bytes_sent; /* message bytes, without the 5-byte prefix */
    uint64_t handled[GRPC_STATUS_COUNT];
} grpc_method_stats_t;
size_t grpc_server_method_count(grpc_server_t *srv);
/* The i-th registered method and a copy of its counters; NULL past the end. */
const grpc_method_t *grpc_server_method_stats(grpc_server_t *srv, size_t i, grpc_method_stats_t *out);

/* Listen on an etcd-style URL: "http://127.0.0.1:2379" (h2c prior knowledge) or
 * "https://..." (TLS, ALPN h2; tls must be non-NULL). Returns 0 or -1 with
 * a message in err. */
int grpc_server_listen(grpc_server_t *srv, const char *url, const grpc_tls_config_t *tls, char *err,
                       size_t errlen);

/* Per call. */
const char *grpc_call_path(grpc_call_t *call);
/* Request metadata (lowercase name), NULL if absent. */
const char *grpc_call_metadata(grpc_call_t *call, const char *name);
/* CN of the verified TLS client certificate ("" if it has none), NULL
 * without a certificate. */
const char *grpc_call_peer_cn(grpc_call_t *call);
/* Absolute loop-clock deadline in ms from grpc-timeout, 0 if none. */
uint64_t grpc_call_deadline_ms(grpc_call_t *call);
loop_t *grpc_call_loop(grpc_call_t *call);

void grpc_call_ref(grpc_call_t *call);
void grpc_call_unref(grpc_call_t *call);
int grpc_call_is_closed(grpc_call_t *call);

/* One opaque pointer for the service, freed with free_fn when the call dies. */
void grpc_call_set_user(grpc_call_t *call, void *user, void (*free_fn)(void *));
void *grpc_call_get_user(grpc_call_t *call);

/* Queue one response message (copied, framed, sent under flow control).
 * Returns 0, or -1 if the call is closed. */
int grpc_call_send(grpc_call_t *call, const uint8_t *msg, size_t len);
/* The same without the copy: msg (len bytes) is queued in place and handed
 * to free_fn (may be NULL) once sent or when the call dies. Ownership passes
 * in every case: on failure (-1: the call is closed or finished, or no
 * memory) msg is freed at once. For large responses packed once by the
 * service (Range). */
int grpc_call_send_owned(grpc_call_t *call, uint8_t *msg, size_t len, void (*free_fn)(void *));
/* End the call with a status and (for errors) a message; sends trailers, or a
 * Trailers-Only response if nothing was sent yet. Idempotent. */
void grpc_call_finish(grpc_call_t *call, grpc_status_t status, const char *message);

/* Additions (transport owner): bytes queued on a call and not yet handed to
 * HTTP/2 (streaming services use it to bound what a slow client buffers). */
size_t grpc_call_send_queued(grpc_call_t *call);
/* The configured --max-request-bytes (services answer "request is too large"
 * above it; the transport itself rejects messages above it + 512 KiB). */
size_t grpc_server_max_request_bytes(grpc_server_t *srv);
/* Bound port of the index-th successful grpc_server_listen (for port 0), or -1. */
int grpc_server_port(grpc_server_t *srv, size_t index);
/* Graceful shutdown, step one: stop accepting connections, cancel the
 * streaming calls (Unavailable "etcdserver: server stopped", on_cancel run
 * first) and send GOAWAY on every HTTP/2 connection; unary calls in flight
 * are answered as usual. The connections close themselves once their
 * streams are done: grpc_server_conn_count() says how many are left. */
void grpc_server_drain(grpc_server_t *srv);
size_t grpc_server_conn_count(grpc_server_t *srv);
/* Bytes held by the nghttp2 sessions of all its connections (loop thread). */
size_t grpc_server_session_bytes(grpc_server_t *srv);
/* Re-read the certificate files of every TLS listener; new connections use the
 * new context, live ones keep theirs. 0, or -1 with err (old context kept). */
int grpc_server_reload_tls(grpc_server_t *srv, char *err, size_t errlen);

/* Plain HTTP on the client port (etcd serves HTTP/1.1 and non-gRPC HTTP/2
 * requests there too). Without a handler (the default) a connection that
 * does not start with the HTTP/2 preface is closed and a non-gRPC HTTP/2
 * stream is reset, as before. With one: every listener tells the protocols
 * apart once per connection (TLS: by ALPN, h2 or http/1.1; without ALPN or
 * plain: whether the first bytes are the HTTP/2 preface) and hands every
 * HTTP/1.1 request, and every HTTP/2 request whose content-type is not
 * application/grpc, to fn with its whole body (up to twice max_request_bytes
 * + 512 KiB, room for JSON). Set it before grpc_server_listen. */
typedef void (*grpc_http_fn)(void *ctx, http_exchange_t *x);
int grpc_server_set_http_handler(grpc_server_t *srv, grpc_http_fn fn, void *ctx);

/* Local calls: a request that does not arrive as gRPC (the JSON gateway)
 * run by the same registered method as the gRPC request of that path. The
 * service sees an ordinary grpc_call_t; its response messages and its final
 * status go to the sink instead of HTTP/2. */
typedef struct grpc_call_sink {
    /* One response message, valid during the callback. */
    void (*on_message)(void *arg, const uint8_t *msg, size_t len);
    /* grpc_call_finish ran (once). The sink may call grpc_call_local_close. */
    void (*on_finish)(void *arg, grpc_status_t status, const char *message);
    /* Optional: what grpc_call_send_queued reports (the sink's backlog, so a
     * streaming service slows down for a slow reader); NULL: 0. */
    size_t (*queued)(void *arg);
} grpc_call_sink_t;
/* NULL if no method is registered at path (or no memory). md: request
 * metadata as lowercase name/value pairs, NULL-terminated (may be NULL).
 * The caller holds one reference, released by grpc_call_local_close. */
grpc_call_t *grpc_call_local_new(grpc_server_t *srv, const char *path, const char *const *md,
                                 const char *peer_cn, const grpc_call_sink_t *sink, void *arg);
/* Right after grpc_call_local_new: the call is the server's own (etcd's
 * in-process client, which bypasses the gRPC interceptors), so it is not
 * counted in grpc_server_method_stats. */
void grpc_call_local_uncounted(grpc_call_t *call);
/* One request message to the method (ignored once finished or closed, and
 * after the first for a unary method). Above max_request_bytes + 512 KiB the
 * call finishes with gRPC's ResourceExhausted "grpc: received message larger
 * than max (N vs. M)", as the same request over gRPC would. */
void grpc_call_local_message(grpc_call_t *call, const uint8_t *msg, size_t len);
/* No more request messages (the method's on_half_close). */
void grpc_call_local_half_close(grpc_call_t *call);
/* The caller is done: a call that has not finished is cancelled (the
 * method's on_cancel); the sink is not called again; the caller's reference
 * is dropped. */
void grpc_call_local_close(grpc_call_t *call);

/* Call on the loop thread after loop_run returns (frees wolfSSL's per-thread
 * ECC cache, which otherwise leaks once per thread). */
void grpc_thread_cleanup(void);

/* Framing helpers, exposed for tests: the 5-byte gRPC message prefix. */
void grpc_frame_prefix(uint8_t out[5], uint32_t len);
/* Percent-encode a grpc-message value per the gRPC spec; returns a malloc'd string. */
char *grpc_percent_encode(const char *msg);
/* Parse a grpc-timeout header value ("100m", "5S", ...) into ms; -1 if invalid. */
int64_t grpc_parse_timeout_ms(const char *value);

#endif
