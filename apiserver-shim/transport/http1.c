/*
 * http1.c: the HTTP/1.1 server of http1.h.
 *
 * Owns: the listening sockets, the accepted or adopted connections (a list,
 * freed with the server), each connection's http_parser, TLS session (if
 * adopted with one), unparsed input, request line buffer and output
 * buffer, and the exchange being parsed. libhttp-parser does all the
 * parsing; this file collects the URL, method, headers and body into an
 * http_exchange_t, hands it to the handler at the end of each message and
 * writes the answer out as the socket takes it. One exchange is answered at
 * a time: the parser is paused at each message's end and resumed on the
 * input left over once the answer ended. A client that sends requests
 * without reading the answers is not read from while more than
 * HTTP1_HIGH_WATER of answers wait to be sent. A request head (request line
 * and headers) must be complete within HTTP1_HEAD_MS of the connection's
 * start (the first request) or of its first byte (the next ones), else the
 * connection is closed (slowloris); an idle keep-alive connection waits
 * without limit, as with Go's http.Server.
 */
#include "http1.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTP1_MAX_LISTENERS 16
#define HTTP1_MAX_URL 8192
#define HTTP1_MAX_HEADER 8192
#define HTTP1_MAX_OUT (64u << 20)     /* unread answers before the connection is dropped */
#define HTTP1_HIGH_WATER (256u << 10) /* unsent answers above which reading pauses */
#define HTTP1_MAX_IN (256u << 10)     /* unparsed input held while an answer is pending */
#define HTTP1_HEAD_MS 10000           /* for a request's line and headers */

typedef struct http1_conn http1_conn_t;

typedef struct http1_listener {
    http1_server_t *srv;
    int fd;
    int port;
} http1_listener_t;

struct http1_server {
    loop_t *loop;
    http1_handler_fn sync_fn;
    http1_exchange_fn fn;
    void *ctx;
    size_t max_body;
    http1_listener_t listeners[HTTP1_MAX_LISTENERS];
    size_t nlisteners;
    http1_conn_t *conns;
};

struct http1_conn {
    http1_server_t *srv;
    int fd;
    tls_conn_t *tls; /* NULL: plain */
    http_parser parser;
    char url[HTTP1_MAX_URL + 1];
    size_t url_len;
    int url_too_long;
    char hname[HTTP1_MAX_HEADER], hvalue[HTTP1_MAX_HEADER];
    size_t hname_len, hvalue_len;
    int in_value;             /* the last header callback was a value */
    int request_bad;          /* 413 or 431 to answer at the message's end */
    http_exchange_t *parsing; /* the request being parsed */
    http_exchange_t *active;  /* the request being answered */
    int chunked;              /* the active answer is chunked */
    int head;                 /* the active request is HEAD: no body */
    char *in;                 /* input not parsed yet */
    size_t in_len, in_off, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    int close_after;          /* close once out is written */
    int eof;                  /* the peer closed its side */
    int writing;              /* LOOP_WRITE is registered */
    loop_timer_t *head_timer; /* the request head being waited for */
    http1_conn_t *prev, *next;
};

static void conn_on_io(loop_t *loop, int fd, int events, void *arg);

static void conn_free(http1_conn_t *c) {
    if (c->head_timer) loop_timer_cancel(c->srv->loop, c->head_timer);
    if (c->parsing) http_exchange_detach(c->parsing);
    if (c->active) http_exchange_detach(c->active);
    loop_del_fd(c->srv->loop, c->fd);
    tls_conn_free(c->tls);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->in);
    free(c->out);
    free(c);
}

static int buf_append(char **buf, size_t *len, size_t *off, size_t *cap, const char *data, size_t n,
                      size_t max) {
    if (n == 0) return 0;
    if (*off > 0 && *off == *len) *off = *len = 0;
    if (*off > 0 && *len + n > *cap) {
        memmove(*buf, *buf + *off, *len - *off);
        *len -= *off;
        *off = 0;
    }
    if (*len - *off + n > max) return -1;
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n) c *= 2;
        char *p = realloc(*buf, c);
        if (!p) return -1;
        *buf = p;
        *cap = c;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    return 0;
}

static int out_append(http1_conn_t *c, const char *data, size_t len) {
    return buf_append(&c->out, &c->out_len, &c->out_off, &c->out_cap, data, len, HTTP1_MAX_OUT);
}

/* Output was queued outside the I/O handler: flush from the next loop pass. */
static void conn_want_write(http1_conn_t *c) {
    if (c->writing) return;
    c->writing = 1;
    loop_mod_fd(c->srv->loop, c->fd, LOOP_READ | LOOP_WRITE);
}

/* ---- the exchange backend ---- */

static int h1_start(http_exchange_t *x, int status, const char *headers, long len) {
    http1_conn_t *c = x->backend;
    char date[64], head[2048], length[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    c->chunked = len < 0 && !c->head;
    if (len >= 0)
        snprintf(length, sizeof length, "Content-Length: %ld\r\n", len);
    else
        snprintf(length, sizeof length, "%s", c->chunked ? "Transfer-Encoding: chunked\r\n" : "");
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%sDate: %s\r\n%s%s\r\n", status,
                     http_status_text(status), headers, date, length,
                     c->close_after ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head) return -1;
    conn_want_write(c);
    return out_append(c, head, (size_t)n);
}

static int h1_write(http_exchange_t *x, const char *data, size_t len) {
    http1_conn_t *c = x->backend;
    if (c->head) return 0; /* HEAD: the headers of the GET answer, no body (RFC 9110 9.3.2) */
    conn_want_write(c);
    if (!c->chunked) return out_append(c, data, len);
    char size[32];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    if (out_append(c, size, (size_t)n) != 0 || out_append(c, data, len) != 0) return -1;
    return out_append(c, "\r\n", 2);
}

static void h1_end(http_exchange_t *x) {
    http1_conn_t *c = x->backend;
    if (c->chunked && out_append(c, "0\r\n\r\n", 5) != 0) c->close_after = 1;
    c->chunked = 0;
    c->active = NULL;
    conn_want_write(c); /* also resumes parsing what was pipelined */
    http_exchange_detach(x);
}

static size_t h1_queued(http_exchange_t *x) {
    http1_conn_t *c = x->backend;
    return c->out_len - c->out_off;
}

static const http_exchange_ops_t h1_ops = {h1_start, h1_write, h1_end, h1_queued};

/* Go's answer to a request it cannot parse. */
static int queue_bad_request(http1_conn_t *c) {
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              "Connection: close\r\n\r\n400 Bad Request";
    c->close_after = 1;
    return out_append(c, bad, sizeof bad - 1);
}

/* ---- the request head's time limit ---- */

static void head_expired(loop_t *loop, void *arg) {
    (void)loop;
    http1_conn_t *c = arg;
    c->head_timer = NULL;
    conn_free(c);
}

/* 0, or -1 without memory for the timer. */
static int head_timer_start(http1_conn_t *c) {
    if (!c->head_timer) c->head_timer = loop_timer_add(c->srv->loop, HTTP1_HEAD_MS, head_expired, c);
    return c->head_timer ? 0 : -1;
}

/* ---- parser callbacks ---- */

static int on_message_begin(http_parser *p) {
    http1_conn_t *c = p->data;
    if (head_timer_start(c) != 0) return -1;
    c->url_len = 0;
    c->url_too_long = 0;
    c->hname_len = c->hvalue_len = 0;
    c->in_value = 0;
    c->request_bad = 0;
    c->parsing = http_exchange_new(&h1_ops, c);
    return c->parsing ? 0 : -1;
}

static int on_url(http_parser *p, const char *at, size_t len) {
    http1_conn_t *c = p->data;
    if (c->url_len + len > HTTP1_MAX_URL) {
        c->url_too_long = 1;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static void flush_header(http1_conn_t *c) {
    if (c->hname_len && !c->request_bad &&
        http_exchange_add_header(c->parsing, c->hname, c->hname_len, c->hvalue, c->hvalue_len) != 0)
        c->request_bad = 431;
    c->hname_len = c->hvalue_len = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
    http1_conn_t *c = p->data;
    if (c->in_value) flush_header(c);
    c->in_value = 0;
    if (c->hname_len + len > HTTP1_MAX_HEADER) {
        c->request_bad = 431;
        return 0;
    }
    memcpy(c->hname + c->hname_len, at, len);
    c->hname_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
    http1_conn_t *c = p->data;
    c->in_value = 1;
    if (c->hvalue_len + len > HTTP1_MAX_HEADER) {
        c->request_bad = 431;
        return 0;
    }
    memcpy(c->hvalue + c->hvalue_len, at, len);
    c->hvalue_len += len;
    return 0;
}

static int on_headers_complete(http_parser *p) {
    http1_conn_t *c = p->data;
    flush_header(c);
    if (c->head_timer) loop_timer_cancel(c->srv->loop, c->head_timer);
    c->head_timer = NULL;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
    http1_conn_t *c = p->data;
    if (!c->request_bad && http_exchange_add_body(c->parsing, at, len, c->srv->max_body) != 0)
        c->request_bad = 413;
    return 0;
}

/* The synchronous handler's answer through the exchange. */
static void run_sync(http1_server_t *srv, http_exchange_t *x) {
    http1_request_t req = {.method = x->method, .path = x->path, .query = x->query};
    http1_reply_t r = {0};
    srv->sync_fn(srv->ctx, &req, &r);
    char extra[512];
    snprintf(extra, sizeof extra, "%s%s", r.nosniff ? "X-Content-Type-Options: nosniff\r\n" : "",
             r.extra_header ? r.extra_header : "");
    http_exchange_reply(x, r.status, r.content_type, extra, r.body, r.body_len);
    free(r.body);
}

static int fill_request(http1_conn_t *c, http_exchange_t *x) {
    struct http_parser_url u;
    http_parser_url_init(&u);
    c->url[c->url_len] = '\0';
    if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) return 400;
    x->path = strndup(c->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (u.field_set & (1 << UF_QUERY))
        x->query = strndup(c->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    else
        x->query = strdup("");
    x->method = strdup(http_method_str((enum http_method)c->parser.method));
    if (!x->path || !x->query || !x->method) return 503;
    x->peer_cn = c->tls ? tls_conn_peer_cn(c->tls) : NULL;
    return 0;
}

static int on_message_complete(http_parser *p) {
    http1_conn_t *c = p->data;
    http_exchange_t *x = c->parsing;
    c->parsing = NULL;
    if (!http_should_keep_alive(p)) c->close_after = 1;
    c->head = p->method == HTTP_HEAD;
    c->active = x;
    int status = c->url_too_long ? 414 : c->request_bad ? c->request_bad : fill_request(c, x);
    if (status) {
        c->close_after = 1;
        http_exchange_reply(x, status, NULL, NULL, NULL, 0);
    } else if (c->srv->sync_fn) {
        run_sync(c->srv, x);
    } else {
        c->srv->fn(c->srv->ctx, x);
    }
    /* Stop here: what follows is parsed once this answer ended (and never
     * after a closing one). */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- socket I/O ---- */

/* >0 bytes, 0 EOF, -1 would block, -2 error. */
static ssize_t io_recv(http1_conn_t *c, char *buf, size_t len) {
    if (c->tls) {
        ssize_t n = tls_conn_read(c->tls, buf, len);
        return n >= 0 ? n : (n == TLS_WANT_READ || n == TLS_WANT_WRITE) ? -1 : -2;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
}

static ssize_t io_send(http1_conn_t *c, const char *buf, size_t len) {
    if (c->tls) {
        ssize_t n = tls_conn_write(c->tls, buf, len);
        return n > 0 ? n : (n == TLS_WANT_READ || n == TLS_WANT_WRITE) ? -1 : -2;
    }
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) return n;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    }
}

/* Parses buffered input while no answer is pending. -1: drop the connection. */
static int conn_parse(http1_conn_t *c) {
    while (!c->active && !c->close_after && c->in_off < c->in_len &&
           c->out_len - c->out_off <= HTTP1_HIGH_WATER) {
        http_parser_pause(&c->parser, 0);
        size_t avail = c->in_len - c->in_off;
        size_t used = http_parser_execute(&c->parser, &parser_settings, c->in + c->in_off, avail);
        c->in_off += used;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) continue;
        if (e != HPE_OK) {
            if (e == HPE_CB_message_begin) return -1; /* out of memory */
            if (c->parsing) {
                http_exchange_detach(c->parsing);
                c->parsing = NULL;
            }
            c->in_off = c->in_len;
            return queue_bad_request(c);
        }
        if (c->parser.upgrade) c->close_after = 1;
        if (used == avail) break;
    }
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    return 0;
}

/* Reads what arrived into the input buffer. -1: drop the connection. */
static int conn_read(http1_conn_t *c) {
    char buf[16384];
    for (;;) {
        if (c->close_after && !c->active) return 0;               /* ignore whatever follows */
        if (c->out_len - c->out_off > HTTP1_HIGH_WATER) return 0; /* the client is not reading */
        if (c->in_len - c->in_off > HTTP1_MAX_IN) return 0;       /* wait for the pending answer */
        ssize_t n = io_recv(c, buf, sizeof buf);
        if (n == -1) return 0;
        if (n <= 0) {
            /* EOF: answer what is complete, then close; a pending answer
             * has no one to go to (Go cancels its request). */
            c->eof = 1;
            c->close_after = 1;
            if (c->active) return -1;
            return 0;
        }
        if (buf_append(&c->in, &c->in_len, &c->in_off, &c->in_cap, buf, (size_t)n,
                       HTTP1_MAX_IN + sizeof buf) != 0 ||
            conn_parse(c) != 0)
            return -1;
    }
}

/* Writes what the socket takes; then either waits for more room, closes,
 * or goes back to reading only. Returns -1 when the connection was freed. */
static int conn_flush(http1_conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = io_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n == -1) {
            /* Closing or over the high-water mark: stop reading (a
             * level-triggered read would spin, or buffer without bound). */
            int stop_reading = (c->close_after && !c->active) || c->out_len - c->out_off > HTTP1_HIGH_WATER;
            loop_mod_fd(c->srv->loop, c->fd, stop_reading ? LOOP_WRITE : LOOP_READ | LOOP_WRITE);
            c->writing = 1;
            return 0;
        }
        conn_free(c);
        return -1;
    }
    c->out_off = c->out_len = 0;
    if (c->close_after && !c->active) {
        conn_free(c);
        return -1;
    }
    if (c->writing) {
        c->writing = 0;
        loop_mod_fd(c->srv->loop, c->fd, LOOP_READ);
    }
    return 0;
}

static void conn_on_io(loop_t *loop, int fd, int events, void *arg) {
    (void)loop;
    (void)fd;
    http1_conn_t *c = arg;
    if ((events & LOOP_READ) && conn_read(c) != 0) {
        conn_free(c);
        return;
    }
    for (int round = 0; round < 64; round++) {
        if (conn_flush(c) != 0) return;
        /* An answer ended (or room freed): parse what was pipelined. */
        size_t before = c->out_len;
        if (conn_parse(c) != 0) {
            conn_free(c);
            return;
        }
        if (c->out_len == before) break;
    }
    if (c->tls && !c->eof && !c->active && tls_conn_pending(c->tls) > 0 && conn_read(c) != 0) conn_free(c);
}

static http1_conn_t *conn_new(http1_server_t *srv, int fd, tls_conn_t *tls) {
    http1_conn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = srv;
    c->fd = fd;
    c->tls = tls;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (head_timer_start(c) != 0) { /* the first request's head */
        free(c);
        return NULL;
    }
    if (loop_add_fd(srv->loop, fd, LOOP_READ, conn_on_io, c) != 0) {
        loop_timer_cancel(srv->loop, c->head_timer);
        free(c);
        return NULL;
    }
    c->next = srv->conns;
    if (c->next) c->next->prev = c;
    srv->conns = c;
    return c;
}

int http1_server_adopt(http1_server_t *srv, int fd, tls_conn_t *tls, const char *pre, size_t n) {
    http1_conn_t *c = conn_new(srv, fd, tls);
    if (!c) {
        tls_conn_free(tls);
        close(fd);
        return -1;
    }
    if (buf_append(&c->in, &c->in_len, &c->in_off, &c->in_cap, pre, n, HTTP1_MAX_IN) != 0 ||
        conn_parse(c) != 0) {
        conn_free(c);
        return -1;
    }
    conn_want_write(c); /* flush from the loop (never free c from here) */
    return 0;
}

static void listener_on_io(loop_t *loop, int fd, int events, void *arg) {
    (void)events;
    (void)loop;
    http1_listener_t *l = arg;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) return; /* EAGAIN, or out of fds: try on the next event */
        if (!conn_new(l->srv, cfd, NULL)) close(cfd);
    }
}

http1_server_t *http1_server_new(loop_t *loop, http1_handler_fn fn, void *ctx) {
    http1_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->loop = loop;
    srv->sync_fn = fn;
    srv->ctx = ctx;
    srv->max_body = HTTP1_MAX_IN; /* read and ignored */
    return srv;
}

http1_server_t *http1_server_new_async(loop_t *loop, http1_exchange_fn fn, void *ctx, size_t max_body) {
    http1_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->loop = loop;
    srv->fn = fn;
    srv->ctx = ctx;
    srv->max_body = max_body;
    return srv;
}

/* "http://127.0.0.1:2381" -> host, port. Go's net.Listen binds "localhost"
 * to its first IPv4 address. */
static int parse_http_url(const char *url, struct sockaddr_storage *ss, socklen_t *sslen) {
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (strncmp(url, "http://", 7) != 0 || http_parser_parse_url(url, strlen(url), 0, &u) != 0) return -1;
    if (!(u.field_set & (1 << UF_HOST)) || !(u.field_set & (1 << UF_PORT))) return -1;
    char host[256];
    size_t hl = u.field_data[UF_HOST].len;
    if (hl >= sizeof host) return -1;
    memcpy(host, url + u.field_data[UF_HOST].off, hl);
    host[hl] = '\0';
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(u.port);
        *sslen = sizeof *sin;
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(u.port);
        *sslen = sizeof *sin6;
    } else {
        return -1;
    }
    return 0;
}

int http1_server_listen(http1_server_t *srv, const char *url, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (srv->nlisteners == HTTP1_MAX_LISTENERS) {
        snprintf(err, errlen, "too many listeners");
        return -1;
    }
    if (parse_http_url(url, &ss, &sslen) != 0) {
        snprintf(err, errlen, "bad metrics URL %s (want http://IP:PORT; https is not supported yet)", url);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 128) != 0) {
        snprintf(err, errlen, "listen %s: %s", url, strerror(errno));
        close(fd);
        return -1;
    }
    sslen = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sslen);
    http1_listener_t *l = &srv->listeners[srv->nlisteners];
    l->srv = srv;
    l->fd = fd;
    l->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                            : ((struct sockaddr_in6 *)&ss)->sin6_port);
    int rc = loop_add_fd(srv->loop, fd, LOOP_READ, listener_on_io, l);
    if (rc != 0) {
        snprintf(err, errlen, "loop: %s", strerror(-rc));
        close(fd);
        return -1;
    }
    srv->nlisteners++;
    return 0;
}

int http1_server_port(http1_server_t *srv, size_t index) {
    return index < srv->nlisteners ? srv->listeners[index].port : -1;
}

void http1_server_free(http1_server_t *srv) {
    if (!srv) return;
    while (srv->conns) conn_free(srv->conns);
    for (size_t i = 0; i < srv->nlisteners; i++) {
        loop_del_fd(srv->loop, srv->listeners[i].fd);
        close(srv->listeners[i].fd);
    }
    free(srv);
}
