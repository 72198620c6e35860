/* grpc_client.c: blocking gRPC client over nghttp2 + wolfSSL.
 *
 * Owns: the socket (non-blocking underneath, every wait is a poll() with a
 * deadline), the wolfSSL context/session, the nghttp2 client session and the
 * gc_stream_t objects of one connection. Streams keep their own send queue
 * (gRPC-framed bytes) and receive buffer; messages are unframed on demand in
 * gc_stream_recv. The final status comes from the trailers (grpc-status,
 * grpc-message), or, when they are missing, from the HTTP status or the
 * RST_STREAM code, following the gRPC HTTP/2 spec.
 */
#include "grpc_client.h"

#include "bytes.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#define GC_WINDOW (16 * 1024 * 1024) /* our stream and connection windows */

struct gc_stream {
    gc_conn_t *conn;
    int32_t id;
    gc_stream_t *next; /* in conn->streams */
    uint8_t *out;      /* framed messages not yet given to nghttp2 */
    size_t out_len, out_off, out_cap;
    int out_end;  /* half-close after out is drained */
    int deferred; /* data provider returned DEFERRED */
    uint8_t *in;  /* received DATA bytes not yet unframed */
    size_t in_len, in_cap;
    int http_status;
    int have_grpc_status;
    int grpc_status;
    char grpc_message[512];
    int closed; /* nghttp2 closed the stream */
    uint32_t rst_code;
};

struct gc_conn {
    int fd;
    WOLFSSL_CTX *ctx;
    WOLFSSL *ssl;
    nghttp2_session *h2;
    int tls;
    char authority[300];
    char alpn[16];
    char md_key[GC_MAX_METADATA][64];
    char *md_val[GC_MAX_METADATA];
    int nmd;
    gc_stream_t *streams;
    int broken; /* transport failed: no more I/O */
    char broken_msg[256];
};

/* ---------- small helpers ---------- */

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void set_status(gc_status_t *st, int code, const char *fmt, ...) {
    if (!st) return;
    st->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_after(int timeout_ms) { return timeout_ms > 0 ? now_ms() + timeout_ms : 0; }

/* Grow *buf so that it can hold need bytes. 0 or -1 (out of memory). */
static int reserve(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 1024;
    while (ncap < need) ncap *= 2;
    uint8_t *nb = realloc(*buf, ncap);
    if (!nb) return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

const char *gc_code_name(int code) {
    static const char *names[] = {
        "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
        "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
        "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
        "DataLoss", "Unauthenticated"};
    if (code < 0 || code > 16) return "Unknown";
    return names[code];
}

/* ---------- endpoint parsing, grpc-message, grpc-timeout ---------- */

int gc_parse_endpoint(const char *s, gc_endpoint_t *ep, char *err, size_t errlen) {
    memset(ep, 0, sizeof *ep);
    ep->tls = -1;
    if (!s || !*s) {
        seterr(err, errlen, "empty endpoint");
        return -1;
    }
    if (strncmp(s, "http://", 7) == 0) {
        ep->tls = 0;
        s += 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        ep->tls = 1;
        s += 8;
    } else if (strstr(s, "://")) {
        seterr(err, errlen, "unsupported scheme in endpoint '%s'", s);
        return -1;
    }
    const char *host = s, *hend, *colon;
    if (*s == '[') {
        host = s + 1;
        hend = strchr(host, ']');
        if (!hend || hend[1] != ':') {
            seterr(err, errlen, "bad IPv6 endpoint '%s' (want [addr]:port)", s);
            return -1;
        }
        colon = hend + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            seterr(err, errlen, "endpoint '%s' has no port", s);
            return -1;
        }
        hend = colon;
        if (memchr(s, ':', (size_t)(colon - s))) {
            seterr(err, errlen, "IPv6 endpoint '%s' needs brackets", s);
            return -1;
        }
    }
    size_t hlen = (size_t)(hend - host);
    if (hlen == 0 || hlen >= sizeof ep->host) {
        seterr(err, errlen, "bad host in endpoint '%s'", s);
        return -1;
    }
    memcpy(ep->host, host, hlen);
    ep->host[hlen] = 0;
    const char *p = colon + 1;
    char *end;
    /* A trailing "/" (as in "http://h:p/") is tolerated. */
    long port = strtol(p, &end, 10);
    if (end == p || (*end && strcmp(end, "/") != 0) || port <= 0 || port > 65535) {
        seterr(err, errlen, "bad port in endpoint '%s'", s);
        return -1;
    }
    ep->port = (int)port;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void gc_percent_decode(const char *in, size_t inlen, char *out, size_t outlen) {
    assert(outlen > 0);
    size_t o = 0;
    for (size_t i = 0; i < inlen && o + 1 < outlen; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < inlen && (hi = hexval(in[i + 1])) >= 0 && (lo = hexval(in[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = 0;
}

void gc_format_timeout(int timeout_ms, char *out, size_t outlen) {
    /* At most 8 digits are allowed; fall back to seconds when needed. */
    if (timeout_ms < 0) timeout_ms = 0;
    if (timeout_ms < 100000000)
        snprintf(out, outlen, "%dm", timeout_ms);
    else
        snprintf(out, outlen, "%dS", timeout_ms / 1000);
}

/* ---------- transport: poll, read, write ---------- */

/* Wait for events on fd until deadline (0 = forever): 1 ready, 0 timeout. */
static int wait_fd(int fd, short events, int64_t deadline) {
    for (;;) {
        int ms = -1;
        if (deadline) {
            int64_t left = deadline - now_ms();
            if (left <= 0) return 0;
            ms = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return 1; /* let the I/O call fail */
    }
}

static void mark_broken(gc_conn_t *c, const char *fmt, ...) {
    if (c->broken) return;
    c->broken = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->broken_msg, sizeof c->broken_msg, fmt, ap);
    va_end(ap);
}

/* One TLS operation's outcome: 1 retry after waiting for *events, -1 fail. */
static int tls_retry(gc_conn_t *c, int ret, short *events) {
    int e = wolfSSL_get_error(c->ssl, ret);
    if (e == WOLFSSL_ERROR_WANT_READ) {
        *events = POLLIN;
        return 1;
    }
    if (e == WOLFSSL_ERROR_WANT_WRITE) {
        *events = POLLOUT;
        return 1;
    }
    return -1;
}

/* Write all n bytes: 0, -1 broken, -2 timeout. */
static int io_write_all(gc_conn_t *c, const uint8_t *p, size_t n, int64_t deadline) {
    while (n > 0) {
        short ev = POLLOUT;
        ssize_t w;
        if (c->ssl) {
            int r = wolfSSL_write(c->ssl, p, n > 65536 ? 65536 : (int)n);
            if (r <= 0 && tls_retry(c, r, &ev) < 0) {
                char why[96];
                wolfSSL_ERR_error_string_n((unsigned long)wolfSSL_get_error(c->ssl, r), why, sizeof why);
                mark_broken(c, "TLS write failed: %s", why);
                return -1;
            }
            w = r;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                mark_broken(c, "write: %s", strerror(errno));
                return -1;
            }
        }
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (!wait_fd(c->fd, ev, deadline)) return -2;
    }
    return 0;
}

/* Read some bytes: >0 count, 0 EOF, -1 broken, -2 timeout. */
static ssize_t io_read(gc_conn_t *c, uint8_t *buf, size_t n, int64_t deadline) {
    for (;;) {
        short ev = POLLIN;
        if (c->ssl) {
            int r = wolfSSL_read(c->ssl, buf, (int)n);
            if (r > 0) return r;
            int e = wolfSSL_get_error(c->ssl, r);
            if (e == WOLFSSL_ERROR_ZERO_RETURN) return 0;
            if (tls_retry(c, r, &ev) < 0) {
                if (r == 0) return 0;
                char why[96];
                wolfSSL_ERR_error_string_n((unsigned long)e, why, sizeof why);
                mark_broken(c, "TLS read failed: %s", why);
                return -1;
            }
        } else {
            ssize_t r = recv(c->fd, buf, n, 0);
            if (r >= 0) return r;
            if (errno != EAGAIN && errno != EINTR) {
                mark_broken(c, "read: %s", strerror(errno));
                return -1;
            }
        }
        if (!wait_fd(c->fd, ev, deadline)) return -2;
    }
}

/* ---------- TCP and TLS set-up ---------- */

static int connect_one(const struct addrinfo *ai, int64_t deadline, char *err, size_t errlen) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        seterr(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        seterr(err, errlen, "connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (!wait_fd(fd, POLLOUT, deadline)) {
        seterr(err, errlen, "context deadline exceeded (connect timed out)");
        close(fd);
        return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr) {
        seterr(err, errlen, "connect: %s", strerror(soerr));
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int tcp_connect(const gc_endpoint_t *ep, int64_t deadline, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    char port[16];
    snprintf(port, sizeof port, "%d", ep->port);
    int rc = getaddrinfo(ep->host, port, &hints, &res);
    if (rc != 0) {
        seterr(err, errlen, "cannot resolve %s: %s", ep->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = connect_one(ai, deadline, err, errlen);
    freeaddrinfo(res);
    return fd;
}

static int host_is_ip(const char *host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void tls_error(gc_conn_t *c, int ret, const char *what, char *err, size_t errlen) {
    char buf[128];
    int e = wolfSSL_get_error(c->ssl, ret);
    wolfSSL_ERR_error_string_n((unsigned long)e, buf, sizeof buf);
    seterr(err, errlen, "%s: %s (%d)", what, buf, e);
}

static int tls_context(gc_conn_t *c, const gc_options_t *o, char *err, size_t errlen) {
    static int inited;
    if (!inited) {
        wolfSSL_Init();
        inited = 1;
    }
    c->ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (!c->ctx) {
        seterr(err, errlen, "cannot create TLS context");
        return -1;
    }
    if (o->insecure_skip_verify) {
        wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_NONE, NULL);
    } else {
        wolfSSL_CTX_set_verify(c->ctx, WOLFSSL_VERIFY_PEER, NULL);
        int ok = o->cacert ? wolfSSL_CTX_load_verify_locations(c->ctx, o->cacert, NULL)
                           : wolfSSL_CTX_load_system_CA_certs(c->ctx);
        if (ok != WOLFSSL_SUCCESS) {
            seterr(err, errlen, "cannot load CA certificates from %s",
                   o->cacert ? o->cacert : "the system store");
            return -1;
        }
    }
    if (o->cert && wolfSSL_CTX_use_certificate_chain_file(c->ctx, o->cert) != WOLFSSL_SUCCESS) {
        seterr(err, errlen, "cannot load client certificate %s", o->cert);
        return -1;
    }
    if (o->key && wolfSSL_CTX_use_PrivateKey_file(c->ctx, o->key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        seterr(err, errlen, "cannot load client key %s", o->key);
        return -1;
    }
    return 0;
}

/* The server certificate must name the host we dialled (DNS or IP SAN). */
static int tls_check_name(gc_conn_t *c, const char *host, char *err, size_t errlen) {
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
    if (!x) {
        seterr(err, errlen, "server sent no certificate");
        return -1;
    }
    int ok = host_is_ip(host) ? wolfSSL_X509_check_ip_asc(x, host, 0) == WOLFSSL_SUCCESS
                              : wolfSSL_X509_check_host(x, host, strlen(host), 0, NULL) == WOLFSSL_SUCCESS;
    wolfSSL_X509_free(x);
    if (!ok) {
        seterr(err, errlen, "x509: certificate is not valid for %s", host);
        return -1;
    }
    return 0;
}

/* wolfSSL's socket writer, with MSG_NOSIGNAL: a peer that hangs up must
 * give an error, not kill the process with SIGPIPE. */
static int tls_send(WOLFSSL *ssl, char *buf, int sz, void *ctx) {
    gc_conn_t *c = ctx;
    ssize_t n = send(c->fd, buf, (size_t)sz, MSG_NOSIGNAL);
    if (n >= 0) return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return WOLFSSL_CBIO_ERR_WANT_WRITE;
    if (errno == EINTR) return WOLFSSL_CBIO_ERR_ISR;
    if (errno == ECONNRESET || errno == EPIPE) return WOLFSSL_CBIO_ERR_CONN_RST;
    return WOLFSSL_CBIO_ERR_GENERAL;
}

static int tls_handshake(gc_conn_t *c, const gc_options_t *o, const gc_endpoint_t *ep, int64_t deadline,
                         char *err, size_t errlen) {
    if (tls_context(c, o, err, errlen) < 0) return -1;
    c->ssl = wolfSSL_new(c->ctx);
    if (!c->ssl) {
        seterr(err, errlen, "cannot create TLS session");
        return -1;
    }
    wolfSSL_set_fd(c->ssl, c->fd);
    wolfSSL_SSLSetIOSend(c->ssl, tls_send);
    wolfSSL_SetIOWriteCtx(c->ssl, c);
    if (!host_is_ip(ep->host))
        wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, ep->host, (unsigned short)strlen(ep->host));
    char alpn[] = "h2";
    wolfSSL_UseALPN(c->ssl, alpn, 2, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
    for (;;) {
        int r = wolfSSL_connect(c->ssl);
        if (r == WOLFSSL_SUCCESS) break;
        short ev;
        if (tls_retry(c, r, &ev) < 0) {
            tls_error(c, r, "TLS handshake failed", err, errlen);
            return -1;
        }
        if (!wait_fd(c->fd, ev, deadline)) {
            seterr(err, errlen, "context deadline exceeded (TLS handshake timed out)");
            return -1;
        }
    }
    char *proto = NULL;
    unsigned short plen = 0;
    if (wolfSSL_ALPN_GetProtocol(c->ssl, &proto, &plen) != WOLFSSL_SUCCESS || plen != 2 ||
        memcmp(proto, "h2", 2) != 0) {
        seterr(err, errlen, "server did not negotiate ALPN h2");
        return -1;
    }
    strcpy(c->alpn, "h2");
    if (!o->insecure_skip_verify && tls_check_name(c, ep->host, err, errlen) < 0) return -1;
    return 0;
}

/* ---------- nghttp2 callbacks ---------- */

static gc_stream_t *stream_of(nghttp2_session *s, int32_t id) {
    return nghttp2_session_get_stream_user_data(s, id);
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data) {
    gc_stream_t *s = stream_of(session, frame->hd.stream_id);
    if (!s) return 0;
    char v[32];
    size_t n = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
    memcpy(v, value, n);
    v[n] = 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        s->http_status = atoi(v);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        s->have_grpc_status = 1;
        s->grpc_status = atoi(v);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        gc_percent_decode((const char *)value, valuelen, s->grpc_message, sizeof s->grpc_message);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data) {
    gc_stream_t *s = stream_of(session, stream_id);
    if (!s) return 0;
    if (s->in_len + len > GC_MAX_MESSAGE + 5 || reserve(&s->in, &s->in_cap, s->in_len + len) < 0) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
        return 0;
    }
    memcpy(s->in + s->in_len, data, len);
    s->in_len += len;
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
    gc_stream_t *s = stream_of(session, stream_id);
    if (!s) return 0;
    s->closed = 1;
    s->rst_code = error_code;
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    gc_conn_t *c = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR)
        mark_broken(c, "server sent GOAWAY (error code %u)", frame->goaway.error_code);
    return 0;
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
    gc_stream_t *s = source->ptr;
    size_t avail = s->out_len - s->out_off;
    if (avail == 0) {
        if (s->out_end) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    if (s->out_off == s->out_len) {
        s->out_off = s->out_len = 0;
        if (s->out_end) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int h2_session(gc_conn_t *c, char *err, size_t errlen) {
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        seterr(err, errlen, "out of memory");
        return -1;
    }
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    int rc = nghttp2_session_client_new(&c->h2, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0) {
        seterr(err, errlen, "nghttp2: %s", nghttp2_strerror(rc));
        return -1;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GC_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 1 << 20},
    };
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, GC_WINDOW);
    return 0;
}

/* ---------- pumping the session ---------- */

/* Send everything nghttp2 has queued: 0, -1 broken, -2 timeout. */
static int flush(gc_conn_t *c, int64_t deadline) {
    if (c->broken) return -1;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) {
            mark_broken(c, "nghttp2: %s", nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0) return 0;
        int r = io_write_all(c, data, (size_t)n, deadline);
        if (r < 0) {
            if (r == -1) return -1;
            mark_broken(c, "write timed out");
            return -2;
        }
    }
}

/* Flush, then read once and feed nghttp2: 0 progress, -1 broken, -2 timeout. */
static int pump(gc_conn_t *c, int64_t deadline) {
    int r = flush(c, deadline);
    if (r < 0) return r;
    uint8_t buf[16384];
    ssize_t n = io_read(c, buf, sizeof buf, deadline);
    if (n == -2) return -2;
    if (n == 0) mark_broken(c, "connection closed by server");
    if (n <= 0) return -1;
    ssize_t used = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
    if (used < 0) {
        mark_broken(c, "nghttp2: %s", nghttp2_strerror((int)used));
        return -1;
    }
    return flush(c, deadline);
}

/* ---------- connection ---------- */

static int want_tls(const gc_options_t *o, const gc_endpoint_t *ep) {
    if (ep->tls >= 0) return ep->tls;
    return o->cacert || o->cert || o->key || o->insecure_skip_verify;
}

gc_conn_t *gc_connect(const gc_options_t *o, char *err, size_t errlen) {
    gc_endpoint_t ep;
    if (gc_parse_endpoint(o->endpoint, &ep, err, errlen) < 0) return NULL;
    gc_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        seterr(err, errlen, "out of memory");
        return NULL;
    }
    c->fd = -1;
    c->tls = want_tls(o, &ep);
    if (strchr(ep.host, ':'))
        snprintf(c->authority, sizeof c->authority, "[%s]:%d", ep.host, ep.port);
    else
        snprintf(c->authority, sizeof c->authority, "%s:%d", ep.host, ep.port);
    int64_t deadline = deadline_after(o->dial_timeout_ms > 0 ? o->dial_timeout_ms : 2000);
    char why[400] = "";
    c->fd = tcp_connect(&ep, deadline, why, sizeof why);
    if (c->fd < 0 || (c->tls && tls_handshake(c, o, &ep, deadline, why, sizeof why) < 0) ||
        h2_session(c, why, sizeof why) < 0 || flush(c, deadline) < 0) {
        seterr(err, errlen, "dial %s: %s", o->endpoint, why[0] ? why : c->broken_msg);
        gc_close(c);
        return NULL;
    }
    return c;
}

int gc_set_metadata(gc_conn_t *c, const char *key, const char *value) {
    int i;
    for (i = 0; i < c->nmd; i++)
        if (strcmp(c->md_key[i], key) == 0) break;
    if (i == GC_MAX_METADATA || strlen(key) >= sizeof c->md_key[0]) return -1;
    char *v = strdup(value);
    if (!v) return -1;
    if (i == c->nmd) c->nmd++;
    snprintf(c->md_key[i], sizeof c->md_key[i], "%s", key);
    free(c->md_val[i]);
    c->md_val[i] = v;
    return 0;
}

const char *gc_alpn(const gc_conn_t *c) { return c->alpn; }

void gc_close(gc_conn_t *c) {
    if (!c) return;
    while (c->streams) gc_stream_close(c->streams);
    if (c->h2) {
        if (!c->broken) {
            nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
            flush(c, deadline_after(200));
        }
        nghttp2_session_del(c->h2);
    }
    if (c->ssl) {
        if (!c->broken) wolfSSL_shutdown(c->ssl);
        wolfSSL_free(c->ssl);
    }
    if (c->ctx) wolfSSL_CTX_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
    for (int i = 0; i < c->nmd; i++) free(c->md_val[i]);
    free(c);
}

/* ---------- streams ---------- */

static nghttp2_nv make_nv(const char *name, const char *value) {
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value), NGHTTP2_NV_FLAG_NONE};
    return nv;
}

gc_stream_t *gc_stream_open(gc_conn_t *c, const char *path, int timeout_ms, gc_status_t *st) {
    if (c->broken) {
        set_status(st, GC_UNAVAILABLE, "%s", c->broken_msg);
        return NULL;
    }
    gc_stream_t *s = calloc(1, sizeof *s);
    if (!s) {
        set_status(st, GC_INTERNAL, "out of memory");
        return NULL;
    }
    s->conn = c;
    char tmo[32];
    nghttp2_nv nva[8 + GC_MAX_METADATA];
    size_t n = 0;
    nva[n++] = make_nv(":method", "POST");
    nva[n++] = make_nv(":scheme", c->tls ? "https" : "http");
    nva[n++] = make_nv(":path", path);
    nva[n++] = make_nv(":authority", c->authority);
    nva[n++] = make_nv("content-type", "application/grpc");
    nva[n++] = make_nv("te", "trailers");
    nva[n++] = make_nv("user-agent", "kshimctl-grpc-c/0.1");
    if (timeout_ms > 0) {
        gc_format_timeout(timeout_ms, tmo, sizeof tmo);
        nva[n++] = make_nv("grpc-timeout", tmo);
    }
    for (int i = 0; i < c->nmd; i++) nva[n++] = make_nv(c->md_key[i], c->md_val[i]);
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_body};
    s->id = nghttp2_submit_request(c->h2, NULL, nva, n, &prd, s);
    if (s->id < 0) {
        set_status(st, GC_UNAVAILABLE, "nghttp2: %s", nghttp2_strerror(s->id));
        free(s);
        return NULL;
    }
    s->next = c->streams;
    c->streams = s;
    return s;
}

int gc_stream_send(gc_stream_t *s, const uint8_t *msg, size_t len, int end) {
    assert(!s->out_end);
    if (len > GC_MAX_MESSAGE) return -1;
    if (s->out_off > 0) { /* compact the queue before growing it */
        memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
        s->out_len -= s->out_off;
        s->out_off = 0;
    }
    if (reserve(&s->out, &s->out_cap, s->out_len + 5 + len) < 0) return -1;
    uint8_t *p = s->out + s->out_len;
    p[0] = 0;
    put_be32(p + 1, (uint32_t)len);
    if (len) memcpy(p + 5, msg, len);
    s->out_len += 5 + len;
    s->out_end = end;
    if (s->deferred && !s->closed) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->conn->h2, s->id);
    }
    return 0;
}

/* Take one complete message off s->in: 1 taken, 0 need more, -1 bad frame. */
static int take_message(gc_stream_t *s, uint8_t **msg, size_t *len, gc_status_t *st) {
    if (s->in_len < 5) return 0;
    uint32_t n = get_be32(s->in + 1);
    if (s->in[0] != 0) {
        set_status(st, GC_INTERNAL, "compressed gRPC message received but not negotiated");
        return -1;
    }
    if (n > GC_MAX_MESSAGE) {
        set_status(st, GC_RESOURCE_EXHAUSTED, "received message larger than max (%u)", n);
        return -1;
    }
    if (s->in_len < 5 + (size_t)n) return 0;
    uint8_t *m = malloc(n ? n : 1);
    if (!m) {
        set_status(st, GC_INTERNAL, "out of memory");
        return -1;
    }
    memcpy(m, s->in + 5, n);
    memmove(s->in, s->in + 5 + n, s->in_len - 5 - n);
    s->in_len -= 5 + n;
    *msg = m;
    *len = n;
    return 1;
}

static int http_to_grpc(int http) {
    switch (http) {
    case 400: return GC_INTERNAL;
    case 401: return GC_UNAUTHENTICATED;
    case 403: return GC_PERMISSION_DENIED;
    case 404: return GC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504: return GC_UNAVAILABLE;
    default: return GC_UNKNOWN;
    }
}

/* The final status of a closed stream. */
static void final_status(gc_stream_t *s, gc_status_t *st) {
    if (s->have_grpc_status) {
        set_status(st, s->grpc_status, "%s", s->grpc_message);
    } else if (s->http_status && s->http_status != 200) {
        set_status(st, http_to_grpc(s->http_status), "unexpected HTTP status code received from server: %d",
                   s->http_status);
    } else if (s->rst_code == NGHTTP2_REFUSED_STREAM) {
        set_status(st, GC_UNAVAILABLE, "stream refused by server");
    } else if (s->rst_code == NGHTTP2_CANCEL) {
        set_status(st, GC_CANCELLED, "stream cancelled by server");
    } else if (s->rst_code) {
        set_status(st, GC_INTERNAL, "stream terminated by RST_STREAM with error code: %u", s->rst_code);
    } else {
        set_status(st, GC_INTERNAL, "server closed the stream without sending trailers");
    }
    if (st && st->code == GC_OK && s->in_len > 0)
        set_status(st, GC_INTERNAL, "stream ended inside a message");
}

int gc_stream_recv(gc_stream_t *s, uint8_t **msg, size_t *len, gc_status_t *st, int timeout_ms) {
    gc_conn_t *c = s->conn;
    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        int t = take_message(s, msg, len, st);
        if (t != 0) return t;
        if (s->closed) {
            final_status(s, st);
            return 0;
        }
        int r = pump(c, deadline);
        if (r == -2) {
            set_status(st, GC_DEADLINE_EXCEEDED, "context deadline exceeded");
            return -1;
        }
        if (r == -1) {
            set_status(st, GC_UNAVAILABLE, "%s", c->broken_msg);
            return -1;
        }
    }
}

void gc_stream_close(gc_stream_t *s) {
    gc_conn_t *c = s->conn;
    for (gc_stream_t **pp = &c->streams; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (!c->broken && !s->closed) {
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        flush(c, deadline_after(200));
    }
    if (c->h2 && nghttp2_session_find_stream(c->h2, s->id))
        nghttp2_session_set_stream_user_data(c->h2, s->id, NULL);
    free(s->out);
    free(s->in);
    free(s);
}

/* ---------- unary ---------- */

int gc_unary(gc_conn_t *c, const char *path, const uint8_t *req, size_t len, uint8_t **resp, size_t *resp_len,
             gc_status_t *st, int timeout_ms) {
    *resp = NULL;
    *resp_len = 0;
    gc_stream_t *s = gc_stream_open(c, path, timeout_ms, st);
    if (!s) return -1;
    if (gc_stream_send(s, req, len, 1) < 0) {
        set_status(st, GC_INTERNAL, "request too large or out of memory");
        gc_stream_close(s);
        return -1;
    }
    uint8_t *m = NULL, *extra = NULL;
    size_t mlen = 0, elen;
    int r = gc_stream_recv(s, &m, &mlen, st, timeout_ms);
    if (r == 1) {
        /* Drain to the trailers; a second message is a protocol error. */
        r = gc_stream_recv(s, &extra, &elen, st, timeout_ms);
        if (r == 1) {
            free(extra);
            set_status(st, GC_INTERNAL, "unary call returned more than one message");
            r = 0;
        }
    } else if (r == 0 && st->code == GC_OK) {
        set_status(st, GC_INTERNAL, "server returned no response message");
    }
    gc_stream_close(s);
    if (r < 0) {
        free(m);
        return -1;
    }
    if (st->code != GC_OK) {
        free(m);
        return 0;
    }
    *resp = m;
    *resp_len = mlen;
    return 0;
}
