/*
 * http1.c: the HTTP/1.1 server of http1.h.
 *
 * Owns: the listening sockets, the accepted connections (a list, freed with
 * the server), each connection's http_parser, its request line buffer and
 * its output buffer. libhttp-parser does all the parsing; this file only
 * collects the URL and method, calls the handler at the end of each
 * message and writes the answers out as the socket takes them. A client
 * that sends requests without reading the answers is not read from while
 * more than HTTP1_HIGH_WATER of answers wait to be sent.
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
#define HTTP1_MAX_OUT (64u << 20)     /* unread answers before the connection is dropped */
#define HTTP1_HIGH_WATER (256u << 10) /* unsent answers above which reading pauses */

typedef struct http1_conn http1_conn_t;

typedef struct http1_listener {
    http1_server_t *srv;
    int fd;
    int port;
} http1_listener_t;

struct http1_server {
    loop_t *loop;
    http1_handler_fn fn;
    void *ctx;
    http1_listener_t listeners[HTTP1_MAX_LISTENERS];
    size_t nlisteners;
    http1_conn_t *conns;
};

struct http1_conn {
    http1_server_t *srv;
    int fd;
    http_parser parser;
    char url[HTTP1_MAX_URL + 1];
    size_t url_len;
    int url_too_long;
    char *out;
    size_t out_len, out_off, out_cap;
    int close_after; /* close once out is written */
    int writing;     /* LOOP_WRITE is registered */
    http1_conn_t *prev, *next;
};

static const char *status_text(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "Request URI Too Long";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void conn_free(http1_conn_t *c) {
    loop_del_fd(c->srv->loop, c->fd);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->out);
    free(c);
}

static int out_reserve(http1_conn_t *c, size_t more) {
    if (c->out_off > 0 && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + more > HTTP1_MAX_OUT) return -1;
    if (c->out_len + more <= c->out_cap) return 0;
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + more) cap *= 2;
    char *p = realloc(c->out, cap);
    if (!p) return -1;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

static int out_append(http1_conn_t *c, const char *data, size_t len) {
    if (out_reserve(c, len) != 0) return -1;
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

/* Queues the status line, Go's headers and the body. */
static int queue_reply(http1_conn_t *c, const http1_reply_t *r) {
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char head[1024];
    int n = snprintf(
        head, sizeof head, "HTTP/1.1 %d %s\r\n%s%s%s%s%sDate: %s\r\nContent-Length: %zu\r\n%s\r\n", r->status,
        status_text(r->status), r->content_type ? "Content-Type: " : "",
        r->content_type ? r->content_type : "", r->content_type ? "\r\n" : "",
        r->nosniff ? "X-Content-Type-Options: nosniff\r\n" : "", r->extra_header ? r->extra_header : "", date,
        r->body_len, c->close_after ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head) return -1;
    if (out_append(c, head, (size_t)n) != 0) return -1;
    /* HEAD: the headers of the GET answer, no body (RFC 9110 9.3.2). */
    if (c->parser.method == HTTP_HEAD) return 0;
    return r->body_len ? out_append(c, r->body, r->body_len) : 0;
}

/* Go's answer to a request it cannot parse. */
static int queue_bad_request(http1_conn_t *c) {
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              "Connection: close\r\n\r\n400 Bad Request";
    c->close_after = 1;
    return out_append(c, bad, sizeof bad - 1);
}

static int on_message_begin(http_parser *p) {
    http1_conn_t *c = p->data;
    c->url_len = 0;
    c->url_too_long = 0;
    return 0;
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

static int on_message_complete(http_parser *p) {
    http1_conn_t *c = p->data;
    http1_reply_t reply = {0};
    if (!http_should_keep_alive(p)) c->close_after = 1;
    c->url[c->url_len] = '\0';
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (c->url_too_long) {
        reply.status = 414;
        c->close_after = 1;
    } else if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
        reply.status = 400;
        c->close_after = 1;
    } else {
        char path[HTTP1_MAX_URL + 1], query[HTTP1_MAX_URL + 1] = "";
        memcpy(path, c->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
        path[u.field_data[UF_PATH].len] = '\0';
        if (u.field_set & (1 << UF_QUERY)) {
            memcpy(query, c->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
            query[u.field_data[UF_QUERY].len] = '\0';
        }
        http1_request_t req = {
            .method = http_method_str((enum http_method)p->method), .path = path, .query = query};
        c->srv->fn(c->srv->ctx, &req, &reply);
    }
    int rc = queue_reply(c, &reply);
    free(reply.body);
    /* Nothing after a closing answer is parsed (or answered). */
    if (rc == 0 && c->close_after) http_parser_pause(p, 1);
    return rc == 0 ? 0 : -1;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_message_complete = on_message_complete,
};

static void conn_on_io(loop_t *loop, int fd, int events, void *arg);

/* Writes what the socket takes; then either waits for more room, closes,
 * or goes back to reading only. Returns -1 when the connection was freed. */
static int conn_flush(http1_conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* Closing or over the high-water mark: stop reading (a
             * level-triggered read would spin, or buffer without bound). */
            int stop_reading = c->close_after || c->out_len - c->out_off > HTTP1_HIGH_WATER;
            loop_mod_fd(c->srv->loop, c->fd, stop_reading ? LOOP_WRITE : LOOP_READ | LOOP_WRITE);
            c->writing = 1;
            return 0;
        }
        conn_free(c);
        return -1;
    }
    if (c->close_after) {
        conn_free(c);
        return -1;
    }
    if (c->writing) {
        c->writing = 0;
        loop_mod_fd(c->srv->loop, c->fd, LOOP_READ);
    }
    return 0;
}

/* Reads and parses what arrived. Returns -1 when the connection was freed. */
static int conn_read(http1_conn_t *c) {
    char buf[16384];
    for (;;) {
        if (c->close_after) return 0;                             /* ignore whatever follows */
        if (c->out_len - c->out_off > HTTP1_HIGH_WATER) return 0; /* the client is not reading */
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n <= 0) {
            /* EOF: answer what is complete, then close. */
            c->close_after = 1;
            return 0;
        }
        size_t used = http_parser_execute(&c->parser, &parser_settings, buf, (size_t)n);
        if (c->parser.http_errno == HPE_PAUSED) return 0; /* closing: see on_message_complete */
        if (c->parser.http_errno != HPE_OK || used != (size_t)n) {
            if (c->parser.http_errno == HPE_CB_message_complete) { /* out of memory */
                conn_free(c);
                return -1;
            }
            if (queue_bad_request(c) != 0) {
                conn_free(c);
                return -1;
            }
            return 0;
        }
        if (c->parser.upgrade) {
            c->close_after = 1;
            return 0;
        }
    }
}

static void conn_on_io(loop_t *loop, int fd, int events, void *arg) {
    (void)loop;
    (void)fd;
    http1_conn_t *c = arg;
    if ((events & LOOP_READ) && conn_read(c) != 0) return;
    conn_flush(c);
}

static void listener_on_io(loop_t *loop, int fd, int events, void *arg) {
    (void)events;
    http1_listener_t *l = arg;
    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) return; /* EAGAIN, or out of fds: try on the next event */
        http1_conn_t *c = calloc(1, sizeof *c);
        if (!c) {
            close(cfd);
            continue;
        }
        c->srv = l->srv;
        c->fd = cfd;
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        if (loop_add_fd(loop, cfd, LOOP_READ, conn_on_io, c) != 0) {
            close(cfd);
            free(c);
            continue;
        }
        c->next = l->srv->conns;
        if (c->next) c->next->prev = c;
        l->srv->conns = c;
    }
}

http1_server_t *http1_server_new(loop_t *loop, http1_handler_fn fn, void *ctx) {
    http1_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->loop = loop;
    srv->fn = fn;
    srv->ctx = ctx;
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
