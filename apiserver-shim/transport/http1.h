/*
 * http1.h: a small HTTP/1.1 server on the event loop, for the metrics URLs
 * (--listen-metrics-urls: /health, /metrics).
 *
 * Requests are parsed by Debian's libhttp-parser (never by hand); every
 * connection is a non-blocking socket driven by loop callbacks, so a slow or
 * partial request holds only its own connection. Keep-alive and pipelined
 * requests are answered in order. A request that does not parse gets Go's
 * "400 Bad Request" and the connection is closed, as Go's net/http does.
 * Listeners are plain http:// only; a connection taken over from the
 * client port (http1_server_adopt, after protocol detection there) may be
 * TLS. Handlers are synchronous (http1_handler_fn: the metrics URLs) or
 * answer an http_exchange_t later (http1_server_new_async: the client
 * port); while an answer is pending, later pipelined requests wait. A
 * client that closes its connection closes its pending exchange (the
 * handler's on_close). Loop thread only.
 */
#ifndef KSHIM_HTTP1_H
#define KSHIM_HTTP1_H

#include <stddef.h>

#include "http_exchange.h"
#include "loop.h"
#include "tls.h"

typedef struct http1_server http1_server_t;

typedef struct http1_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* "/health" (no query) */
    const char *query;  /* "exclude=NOSPACE&serializable=true", "" if none */
} http1_request_t;

/* What a handler answers. body is malloc'd by the handler and owned by the
 * server afterwards (NULL: empty). */
typedef struct http1_reply {
    int status;               /* 200, 404, ... */
    const char *content_type; /* NULL: none */
    const char *extra_header; /* e.g. "Allow: GET\r\n", NULL: none */
    int nosniff;              /* X-Content-Type-Options: nosniff (Go's http.Error) */
    char *body;
    size_t body_len;
} http1_reply_t;

typedef void (*http1_handler_fn)(void *ctx, const http1_request_t *req, http1_reply_t *reply);

http1_server_t *http1_server_new(loop_t *loop, http1_handler_fn fn, void *ctx);
/* Asynchronous: fn gets every complete request (body up to max_body bytes;
 * larger: 413) and answers it through the exchange, now or later. */
typedef void (*http1_exchange_fn)(void *ctx, http_exchange_t *x);
http1_server_t *http1_server_new_async(loop_t *loop, http1_exchange_fn fn, void *ctx, size_t max_body);
/* Takes over an accepted non-blocking socket fd (and its established TLS
 * session tls, or NULL) whose first n bytes pre were already read. Owns fd
 * and tls from here on, also on failure (-1). */
int http1_server_adopt(http1_server_t *srv, int fd, tls_conn_t *tls, const char *pre, size_t n);
/* Listens on "http://IP:PORT" (or localhost). Returns 0, or -1 with err. */
int http1_server_listen(http1_server_t *srv, const char *url, char *err, size_t errlen);
/* Bound port of the index-th listener, or -1. */
int http1_server_port(http1_server_t *srv, size_t index);
/* Closes the listeners and every connection. */
void http1_server_free(http1_server_t *srv);

#endif
