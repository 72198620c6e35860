/* grpc_client.h: a small blocking gRPC client (HTTP/2 via nghttp2, TLS via
 * wolfSSL) for kshimctl and tests.
 *
 * Owns: one TCP (optionally TLS) connection per gc_conn_t, its nghttp2
 * client session, the per-connection metadata sent with every call, and the
 * streams opened on it. Everything is blocking with explicit timeouts; a
 * connection is used by one thread at a time.
 *
 * Endpoints are "host:port", "http://host:port" or "https://host:port"
 * (IPv6 as "[::1]:2379"). A bare endpoint uses TLS only when a CA, client
 * certificate or insecure-skip-verify is given, like etcdctl.
 */
#ifndef KSHIM_GRPC_CLIENT_H
#define KSHIM_GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* gRPC status codes (the subset that has names here is all of them). */
enum {
    GC_OK = 0,
    GC_CANCELLED = 1,
    GC_UNKNOWN = 2,
    GC_INVALID_ARGUMENT = 3,
    GC_DEADLINE_EXCEEDED = 4,
    GC_NOT_FOUND = 5,
    GC_ALREADY_EXISTS = 6,
    GC_PERMISSION_DENIED = 7,
    GC_RESOURCE_EXHAUSTED = 8,
    GC_FAILED_PRECONDITION = 9,
    GC_ABORTED = 10,
    GC_OUT_OF_RANGE = 11,
    GC_UNIMPLEMENTED = 12,
    GC_INTERNAL = 13,
    GC_UNAVAILABLE = 14,
    GC_DATA_LOSS = 15,
    GC_UNAUTHENTICATED = 16
};

#define GC_MAX_MESSAGE (256u * 1024 * 1024) /* largest message accepted */
#define GC_MAX_METADATA 8

typedef struct gc_options {
    const char *endpoint;     /* see above; required */
    const char *cacert;       /* PEM CA bundle; NULL = system roots */
    const char *cert, *key;   /* PEM client certificate and key, or NULL */
    int insecure_skip_verify; /* TLS without verifying the server */
    int dial_timeout_ms;      /* TCP connect + TLS + HTTP/2 preface; <=0: 2000 */
} gc_options_t;

typedef struct gc_status {
    int code;          /* gRPC status code, GC_OK on success */
    char message[512]; /* percent-decoded grpc-message */
} gc_status_t;

/* A parsed endpoint. */
typedef struct gc_endpoint {
    char host[256]; /* without IPv6 brackets */
    int port;
    int tls; /* 1 https, 0 http, -1 bare (caller decides) */
} gc_endpoint_t;

typedef struct gc_conn gc_conn_t;
typedef struct gc_stream gc_stream_t;

/* Parse an endpoint; 0 on success, -1 with err filled. */
int gc_parse_endpoint(const char *s, gc_endpoint_t *ep, char *err, size_t errlen);

/* Decode a percent-encoded grpc-message into out (always NUL-terminated). */
void gc_percent_decode(const char *in, size_t inlen, char *out, size_t outlen);

/* Format a grpc-timeout header value ("123m") for a timeout in ms. */
void gc_format_timeout(int timeout_ms, char *out, size_t outlen);

/* Name of a status code ("OutOfRange"), for messages. */
const char *gc_code_name(int code);

/* Connect; NULL with err filled on failure. */
gc_conn_t *gc_connect(const gc_options_t *opt, char *err, size_t errlen);

/* Add (or replace) metadata sent with every later call, e.g. "token".
 * Keys must be lowercase. 0 on success, -1 if the table is full. */
int gc_set_metadata(gc_conn_t *c, const char *key, const char *value);

/* One unary call. Returns 0 when the call completed (st says how; on
 * GC_OK *resp holds the response, malloc'd, owned by the caller), -1 on a
 * transport failure (st->code = GC_UNAVAILABLE or GC_DEADLINE_EXCEEDED and
 * the message says why; the connection is then unusable). timeout_ms <= 0
 * means no deadline. */
int gc_unary(gc_conn_t *c, const char *path, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len,
             gc_status_t *st, int timeout_ms);

/* Streaming calls (server-streaming or bidi). Open sends the headers;
 * send queues one message (end = 1 half-closes); recv waits for the next
 * message: 1 = *msg set (caller frees), 0 = stream finished (st filled),
 * -1 = transport failure or timeout (st filled). close frees the stream,
 * cancelling it if still open. timeout_ms as for gc_unary, per call. */
gc_stream_t *gc_stream_open(gc_conn_t *c, const char *path, int timeout_ms, gc_status_t *st);
int gc_stream_send(gc_stream_t *s, const uint8_t *msg, size_t len, int end);
int gc_stream_recv(gc_stream_t *s, uint8_t **msg, size_t *len, gc_status_t *st, int timeout_ms);
void gc_stream_close(gc_stream_t *s);

/* ALPN protocol the TLS handshake chose ("h2"), or "" without TLS. */
const char *gc_alpn(const gc_conn_t *c);

void gc_close(gc_conn_t *c);

#endif
