/*
 * http_exchange.c: the backend-neutral part of http_exchange.h: the request
 * (method, path, query, headers, body), the reference count and the order
 * of an answer (start once, writes, end once). Owns the request's copies.
 */
#include "http_exchange.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

http_exchange_t *http_exchange_new(const http_exchange_ops_t *ops, void *backend) {
    http_exchange_t *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->ops = ops;
    x->backend = backend;
    x->refs = 1; /* the backend's */
    return x;
}

int http_exchange_add_header(http_exchange_t *x, const char *name, size_t nlen, const char *value,
                             size_t vlen) {
    if (x->nheaders == x->headers_cap) {
        size_t cap = x->headers_cap ? x->headers_cap * 2 : 8;
        http_header_t *h = realloc(x->headers, cap * sizeof *h);
        if (!h) return -1;
        x->headers = h;
        x->headers_cap = cap;
    }
    char *n = strndup(name, nlen), *v = strndup(value, vlen);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    for (char *p = n; *p; p++) *p = (char)tolower((unsigned char)*p);
    x->headers[x->nheaders++] = (http_header_t){n, v};
    return 0;
}

int http_exchange_add_body(http_exchange_t *x, const char *data, size_t len, size_t max) {
    if (x->body_len + len > max) return -1;
    if (x->body_len + len + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 1024;
        while (cap < x->body_len + len + 1) cap *= 2;
        char *b = realloc(x->body, cap);
        if (!b) return -1;
        x->body = b;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, len);
    x->body_len += len;
    x->body[x->body_len] = 0;
    return 0;
}

const char *http_exchange_header(const http_exchange_t *x, const char *name) {
    for (size_t i = 0; i < x->nheaders; i++)
        if (strcmp(x->headers[i].name, name) == 0) return x->headers[i].value;
    return NULL;
}

void http_exchange_ref(http_exchange_t *x) { x->refs++; }

void http_exchange_unref(http_exchange_t *x) {
    if (--x->refs > 0) return;
    for (size_t i = 0; i < x->nheaders; i++) {
        free(x->headers[i].name);
        free(x->headers[i].value);
    }
    free(x->headers);
    free(x->method);
    free(x->path);
    free(x->query);
    free(x->body);
    free(x);
}

void http_exchange_detach(http_exchange_t *x) {
    if (!x->closed) {
        x->closed = 1;
        x->peer_cn = NULL;
        if (!x->ended && x->on_close) {
            http_exchange_ref(x);
            x->on_close(x, x->on_close_arg);
            http_exchange_unref(x);
        }
    }
    http_exchange_unref(x);
}

int http_exchange_is_closed(const http_exchange_t *x) { return x->closed; }

static void headers_for(char *out, size_t outlen, const char *content_type, const char *extra) {
    snprintf(out, outlen, "%s%s%s%s", content_type ? "Content-Type: " : "", content_type ? content_type : "",
             content_type ? "\r\n" : "", extra ? extra : "");
}

void http_exchange_reply(http_exchange_t *x, int status, const char *content_type, const char *extra_headers,
                         const char *body, size_t len) {
    if (x->closed || x->started) return;
    char h[1024];
    headers_for(h, sizeof h, content_type, extra_headers);
    x->started = 1;
    if (x->ops->start(x, status, h, (long)len) == 0 && len) x->ops->write(x, body, len);
    x->ended = 1;
    x->ops->end(x);
}

int http_exchange_start(http_exchange_t *x, int status, const char *content_type, const char *extra_headers) {
    if (x->closed || x->started) return -1;
    char h[1024];
    headers_for(h, sizeof h, content_type, extra_headers);
    x->started = 1;
    return x->ops->start(x, status, h, -1);
}

int http_exchange_write(http_exchange_t *x, const char *data, size_t len) {
    if (x->closed || !x->started || x->ended) return -1;
    return len ? x->ops->write(x, data, len) : 0;
}

void http_exchange_end(http_exchange_t *x) {
    if (x->closed || !x->started || x->ended) return;
    x->ended = 1;
    x->ops->end(x);
}

size_t http_exchange_queued(const http_exchange_t *x) {
    return x->closed || x->ended ? 0 : x->ops->queued((http_exchange_t *)x);
}

const char *http_status_text(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 414: return "Request URI Too Long";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
