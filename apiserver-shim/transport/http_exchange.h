/*
 * http_exchange.h: one plain-HTTP request and its response, the same for
 * HTTP/1.1 (http1.c) and for an HTTP/2 stream that is not gRPC (grpc.c), so
 * a handler (the client port's /health, /version, /metrics and the JSON
 * gateway) is written once for both.
 *
 * The request is complete when the handler runs (headers and the whole
 * body, bounded by the server). The handler answers at once or later: a
 * later answer takes a reference (http_exchange_ref) and checks
 * http_exchange_is_closed() first. An answer is either one reply
 * (http_exchange_reply) or a stream (http_exchange_start, then _write any
 * number of times, then _end): chunked over HTTP/1.1, DATA frames over
 * HTTP/2. Loop thread only.
 */
#ifndef KSHIM_HTTP_EXCHANGE_H
#define KSHIM_HTTP_EXCHANGE_H

#include <stddef.h>

typedef struct http_exchange http_exchange_t;

/* What a backend (http1.c, grpc.c) supplies. */
typedef struct http_exchange_ops {
    /* Status line and headers ("Name: value\r\n" lines, may be ""); len < 0:
     * a stream of unknown length. 0 or -1. */
    int (*start)(http_exchange_t *x, int status, const char *headers, long len);
    int (*write)(http_exchange_t *x, const char *data, size_t len);
    void (*end)(http_exchange_t *x);
    /* Answer bytes written and not yet sent (the peer's backlog). */
    size_t (*queued)(http_exchange_t *x);
} http_exchange_ops_t;

typedef struct http_header {
    char *name; /* lowercase */
    char *value;
} http_header_t;

struct http_exchange {
    const http_exchange_ops_t *ops;
    void *backend; /* the backend's connection or stream */
    int refs;
    int closed;  /* the peer went away (or the backend was freed) */
    int started; /* start ran */
    int ended;   /* end ran */
    char *method, *path, *query;
    http_header_t *headers;
    size_t nheaders, headers_cap;
    char *body;
    size_t body_len, body_cap;
    const char *peer_cn; /* the backend's; valid while not closed */
    /* The handler's: called once when the peer goes away before the end. */
    void (*on_close)(http_exchange_t *x, void *arg);
    void *on_close_arg;
};

/* Backend side. */
http_exchange_t *http_exchange_new(const http_exchange_ops_t *ops, void *backend);
int http_exchange_add_header(http_exchange_t *x, const char *name, size_t nlen, const char *value,
                             size_t vlen);
/* Appends body bytes; -1 past max (the request is too large) or out of memory. */
int http_exchange_add_body(http_exchange_t *x, const char *data, size_t len, size_t max);
/* The backend is done with x (peer gone or answer sent): runs on_close if the
 * answer did not end, and drops the backend's reference. */
void http_exchange_detach(http_exchange_t *x);

/* Handler side. */
const char *http_exchange_header(const http_exchange_t *x, const char *lowercase_name);
void http_exchange_ref(http_exchange_t *x);
void http_exchange_unref(http_exchange_t *x);
int http_exchange_is_closed(const http_exchange_t *x);
/* One whole answer (no-op once closed or answered). */
void http_exchange_reply(http_exchange_t *x, int status, const char *content_type, const char *extra_headers,
                         const char *body, size_t len);
int http_exchange_start(http_exchange_t *x, int status, const char *content_type, const char *extra_headers);
int http_exchange_write(http_exchange_t *x, const char *data, size_t len);
void http_exchange_end(http_exchange_t *x);
/* Bytes of the answer not yet sent (0 once closed): streams bound their
 * backlog with it, as gRPC streams do with grpc_call_send_queued. */
size_t http_exchange_queued(const http_exchange_t *x);

/* The reason phrase of a status code (Go's net/http text). */
const char *http_status_text(int status);

#endif
