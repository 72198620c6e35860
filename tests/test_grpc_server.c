/*
 * test_grpc_server.c: the gRPC server end to end over real sockets.
 *
 * The server (grpc.c on h2_conn.c, tls.c, loop.c) runs on a loop thread with
 * three listeners: h2c, TLS, TLS + client-cert-auth (certificates made with
 * the openssl command line in a temp dir). The client is an nghttp2 client
 * session written here, on blocking sockets, with wolfSSL for TLS.
 * /test.Echo/Reader answers from a reader thread (readers.h) through
 * grpc_call_send_owned, also after its client went away.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "grpc.h"
#include "loop.h"
#include "readers.h"

/* ---- the server side: test methods ---- */

static atomic_int g_cancels;
static atomic_int g_later_send_rc = 99;
static atomic_int g_later_calls; /* Later calls started */
static atomic_int g_half_closes;
static atomic_int g_server_errors; /* checks on the loop thread (no cmocka there) */

static void server_check(int ok) {
    if (!ok) g_server_errors++;
}

static void echo_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_check(grpc_call_send(call, msg, len) == 0);
    grpc_call_finish(call, GRPC_OK, NULL);
    server_check(grpc_call_send(call, msg, len) == -1); /* finished */
}

static void fail_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "bad 100% \xe2\x98\x83\n");
    grpc_call_finish(call, GRPC_OK, NULL); /* idempotent: first status wins */
}

static atomic_int g_bidi_msgs;

static void bidi_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    g_bidi_msgs++;
    server_check(grpc_call_send(call, msg, len) == 0);
}

static void bidi_half_close(grpc_call_t *call, void *ctx) {
    g_half_closes++;
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void peer_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    char out[512];
    const char *cn = grpc_call_peer_cn(call);
    const char *x = grpc_call_metadata(call, "x-test");
    int n = snprintf(out, sizeof(out), "cn=%s;x=%s;deadline=%d;path=%s", cn ? cn : "-", x ? x : "-",
                     grpc_call_deadline_ms(call) != 0, grpc_call_path(call));
    grpc_call_send(call, (const uint8_t *)out, (size_t)n);
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void slow_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {}
static void count_cancel(grpc_call_t *call, void *ctx) {
    server_check(grpc_call_is_closed(call) || grpc_call_deadline_ms(call) != 0);
    g_cancels++;
}

static void timeout_cancel(grpc_call_t *call, void *ctx) {
    g_cancels++;
    if (!grpc_call_is_closed(call) && loop_now_ms(grpc_call_loop(call)) >= grpc_call_deadline_ms(call))
        grpc_call_finish(call, GRPC_UNAVAILABLE, "etcdserver: request timed out");
}

static atomic_int g_big_calls;

/* Byte i of a Big answer: a pattern that shows a byte lost, repeated or out
 * of order (a frame's payload is cut from the call's chunks in place). */
static uint8_t big_byte(size_t i) { return (uint8_t)(i * 31 + (i >> 12)); }

/* Answers 1 MiB of big_byte, every other call as a buffer handed over
 * (grpc_call_send_owned: the chunk holds the gRPC prefix, the bytes stay in
 * the caller's buffer), the others copied (grpc_call_send). */
static void big_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    int n = ++g_big_calls;
    uint8_t *b = malloc(1 << 20);
    server_check(b != NULL);
    for (size_t i = 0; i < 1 << 20; i++) b[i] = big_byte(i);
    if (n % 2) {
        server_check(grpc_call_send_owned(call, b, 1 << 20, free) == 0);
    } else {
        server_check(grpc_call_send(call, b, 1 << 20) == 0);
        free(b);
    }
    grpc_call_finish(call, GRPC_OK, NULL);
}

static void later_fire(loop_t *loop, void *arg) {
    grpc_call_t *call = arg;
    g_later_send_rc = grpc_call_send(call, (const uint8_t *)"later", 5);
    grpc_call_finish(call, GRPC_OK, NULL);
    grpc_call_unref(call);
}

static void later_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    g_later_calls++;
    grpc_call_ref(call);
    grpc_call_set_user(call, strdup("owned by the call"), free);
    loop_timer_add(grpc_call_loop(call), 500, later_fire, call); /* the test closes well before */
}

/* Reader: the request repeated READER_REPEAT times, built on a reader
 * thread and sent without a copy. "wait" blocks the reader until the test
 * opens the gate. */
enum { READER_REPEAT = 50000 };
static readers_t *g_readers;
static pthread_mutex_t g_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_cv = PTHREAD_COND_INITIALIZER;
static int g_gate_open = 1;
static atomic_int g_reader_cancels, g_reader_closed_done, g_reader_send_rc = 99;

typedef struct echo_job {
    reader_job_t job;
    grpc_call_t *call;
    uint8_t msg[16];
    size_t len;
    uint8_t *out;
    size_t out_len;
} echo_job_t;

static void echo_job_run(reader_job_t *job) {
    echo_job_t *j = (echo_job_t *)job;
    if (j->len == 4 && memcmp(j->msg, "wait", 4) == 0) {
        pthread_mutex_lock(&g_gate_mu);
        while (!g_gate_open) pthread_cond_wait(&g_gate_cv, &g_gate_mu);
        pthread_mutex_unlock(&g_gate_mu);
    }
    j->out_len = j->len * READER_REPEAT;
    j->out = malloc(j->out_len);
    for (size_t i = 0; j->out && i < READER_REPEAT; i++) memcpy(j->out + i * j->len, j->msg, j->len);
}

static void echo_job_done(reader_job_t *job, int status) {
    echo_job_t *j = (echo_job_t *)job;
    server_check(status == READER_DONE && j->out != NULL);
    if (grpc_call_is_closed(j->call)) g_reader_closed_done++;
    /* Owned: freed by the call once sent, or at once when it is closed. */
    int rc = grpc_call_send_owned(j->call, j->out, j->out_len, free);
    g_reader_send_rc = rc;
    grpc_call_finish(j->call, GRPC_OK, NULL);
    grpc_call_unref(j->call);
    free(j);
}

static void reader_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    echo_job_t *j = calloc(1, sizeof(*j));
    if (!j || len > sizeof(j->msg) || len == 0) {
        free(j);
        grpc_call_finish(call, GRPC_INVALID_ARGUMENT, "1..16 bytes");
        return;
    }
    memcpy(j->msg, msg, len);
    j->len = len;
    j->call = call;
    j->job.run = echo_job_run;
    j->job.done = echo_job_done;
    grpc_call_ref(call);
    if (readers_submit(g_readers, &j->job) != READERS_OK) {
        grpc_call_unref(call);
        free(j);
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
    }
}

static void reader_cancel(grpc_call_t *call, void *ctx) { g_reader_cancels++; }

static const grpc_method_t m_reader = {
    .path = "/test.Echo/Reader", .on_message = reader_message, .on_cancel = reader_cancel};

static const grpc_method_t m_unary = {.path = "/test.Echo/Unary", .on_message = echo_message};
static const grpc_method_t m_fail = {.path = "/test.Echo/Fail", .on_message = fail_message};
static const grpc_method_t m_bidi = {.path = "/test.Echo/Bidi",
                                     .client_streaming = 1,
                                     .server_streaming = 1,
                                     .on_message = bidi_message,
                                     .on_half_close = bidi_half_close};
static const grpc_method_t m_peer = {.path = "/test.Echo/Peer", .on_message = peer_message};
static const grpc_method_t m_slow = {
    .path = "/test.Echo/Slow", .on_message = slow_message, .on_cancel = count_cancel};
static const grpc_method_t m_slow2 = {
    .path = "/test.Echo/SlowOwnTimeout", .on_message = slow_message, .on_cancel = timeout_cancel};
static const grpc_method_t m_big = {.path = "/test.Echo/Big", .on_message = big_message};
static const grpc_method_t m_later = {.path = "/test.Echo/Later", .on_message = later_message};

enum { MAX_REQ = 1024, RECV_LIMIT = MAX_REQ + 512 * 1024 };

typedef struct fixture {
    char dir[256];
    loop_t *loop;
    grpc_server_t *srv;
    pthread_t thread;
    int port_h2c, port_tls, port_mtls;
} fixture_t;

static fixture_t F;

/* SessionBytes: what the server's nghttp2 sessions hold, in decimal (on the loop thread). */
static void session_bytes_message(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    char out[32];
    int n = snprintf(out, sizeof(out), "%zu", grpc_server_session_bytes(F.srv));
    grpc_call_send(call, (const uint8_t *)out, (size_t)n);
    grpc_call_finish(call, GRPC_OK, NULL);
}
static const grpc_method_t m_session_bytes = {.path = "/test.Echo/SessionBytes",
                                              .on_message = session_bytes_message};

static void *loop_thread(void *arg) {
    loop_run(F.loop);
    grpc_thread_cleanup();
    return NULL;
}

static int run_cmd(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int make_certs(const char *d) {
    return run_cmd(
        "cd %s && "
        "openssl ecparam -name prime256v1 -genkey -noout -out ca.key && "
        "openssl req -x509 -new -key ca.key -subj /CN=test-ca -days 2 -out ca.crt && "
        "openssl ecparam -name prime256v1 -genkey -noout -out server.key && "
        "openssl req -new -key server.key -subj /CN=localhost -out server.csr && "
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext && "
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "  -extfile server.ext -out server.crt 2>/dev/null && "
        "openssl ecparam -name prime256v1 -genkey -noout -out client.key && "
        "openssl req -new -key client.key -subj /CN=alice -out client.csr && "
        "printf 'extendedKeyUsage=clientAuth\\n' > client.ext && "
        "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        "  -extfile client.ext -out client.crt 2>/dev/null",
        d);
}

static int setup(void **state) {
    snprintf(F.dir, sizeof(F.dir), "/tmp/kshim-grpc-test-XXXXXX");
    if (!mkdtemp(F.dir)) return -1;
    if (make_certs(F.dir) != 0) return -1;
    F.loop = loop_new();
    /* streams per connection unlimited, etcd's default */
    grpc_server_config_t cfg = {.max_request_bytes = MAX_REQ};
    F.srv = grpc_server_new(F.loop, &cfg);
    const grpc_method_t *ms[] = {&m_unary, &m_fail,  &m_bidi, &m_peer,          &m_slow,
                                 &m_later, &m_slow2, &m_big,  &m_session_bytes, &m_reader};
    g_readers = readers_new(F.loop, &(readers_config_t){.threads = 2});
    if (!g_readers) return -1;
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (grpc_server_register(F.srv, ms[i]) != 0) return -1;
    if (grpc_server_register(F.srv, &m_unary) == 0) return -1; /* duplicate refused */
    char err[256], cert[300], key[300], ca[300];
    snprintf(cert, sizeof(cert), "%s/server.crt", F.dir);
    snprintf(key, sizeof(key), "%s/server.key", F.dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", F.dir);
    grpc_tls_config_t tls = {.cert_file = cert, .key_file = key};
    grpc_tls_config_t mtls = {
        .cert_file = cert, .key_file = key, .trusted_ca_file = ca, .client_cert_auth = 1};
    if (grpc_server_listen(F.srv, "http://127.0.0.1:0", NULL, err, sizeof(err)) != 0 ||
        grpc_server_listen(F.srv, "https://127.0.0.1:0", &tls, err, sizeof(err)) != 0 ||
        grpc_server_listen(F.srv, "https://127.0.0.1:0", &mtls, err, sizeof(err)) != 0) {
        fprintf(stderr, "listen: %s\n", err);
        return -1;
    }
    /* Failure paths of listen. */
    if (grpc_server_listen(F.srv, "https://127.0.0.1:0", NULL, err, sizeof(err)) == 0) return -1;
    if (grpc_server_listen(F.srv, "unix:///x", NULL, err, sizeof(err)) == 0) return -1;
    /* etcd refuses host names other than localhost for binding */
    if (grpc_server_listen(F.srv, "http://etcd.example:0", NULL, err, sizeof(err)) == 0) return -1;
    grpc_tls_config_t bad = {.cert_file = "/nonexistent", .key_file = key};
    if (grpc_server_listen(F.srv, "https://127.0.0.1:0", &bad, err, sizeof(err)) == 0) return -1;
    F.port_h2c = grpc_server_port(F.srv, 0);
    F.port_tls = grpc_server_port(F.srv, 1);
    F.port_mtls = grpc_server_port(F.srv, 2);
    /* localhost binds 127.0.0.1, as etcd's listeners do */
    if (grpc_server_listen(F.srv, "http://localhost:0", NULL, err, sizeof(err)) != 0) return -1;
    if (grpc_server_port(F.srv, 3) <= 0 || grpc_server_port(F.srv, 4) != -1) return -1;
    wolfSSL_Init();
    return pthread_create(&F.thread, NULL, loop_thread, NULL);
}

static int teardown(void **state) {
    loop_stop(F.loop);
    pthread_join(F.thread, NULL);
    readers_free(g_readers); /* before the calls go: completions hold them */
    grpc_server_free(F.srv);
    loop_free(F.loop);
    wolfSSL_Cleanup(); /* also this thread's ECC cache (the client side) */
    run_cmd("rm -rf %s", F.dir);
    if (g_server_errors) fprintf(stderr, "server-side checks failed: %d\n", (int)g_server_errors);
    return g_server_errors ? -1 : 0;
}

/* ---- the client: nghttp2 client session on a blocking socket ---- */

typedef struct stream {
    int32_t id;
    int header_frames;
    int first_headers_ended; /* Trailers-Only */
    char status[8], ctype[64], grpc_status[8], grpc_message[512];
    uint8_t *data;
    size_t data_len, data_cap;
    int closed;
    uint32_t close_code;
    uint8_t *out; /* request bytes to send */
    size_t out_len, out_off, out_cap;
    int out_eof;
    int deferred;
} stream_t;

typedef struct client {
    int fd;
    WOLFSSL_CTX *ctx;
    WOLFSSL *ssl;
    nghttp2_session *s;
    stream_t *streams[128];
    int nstreams;
    int pings_acked;
    int goaway;
    int eof;
} client_t;

static stream_t *find_stream(client_t *c, int32_t id) {
    for (int i = 0; i < c->nstreams; i++)
        if (c->streams[i]->id == id) return c->streams[i];
    return NULL;
}

static void buf_add(uint8_t **b, size_t *len, size_t *cap, const uint8_t *p, size_t n) {
    if (n == 0) return;
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *b = realloc(*b, *cap);
    }
    memcpy(*b + *len, p, n);
    *len += n;
}

static ssize_t cl_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *u) {
    client_t *c = u;
    if (c->ssl) {
        int n = wolfSSL_write(c->ssl, data, (int)len);
        return n > 0 ? n : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return NGHTTP2_ERR_WOULDBLOCK;
    return n >= 0 ? n : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int cl_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                        const uint8_t *value, size_t vl, uint8_t flags, void *u) {
    stream_t *st = find_stream(u, f->hd.stream_id);
    if (!st) return 0;
    char *dst = NULL;
    size_t cap = 0;
    if (nl == 7 && !memcmp(name, ":status", 7)) dst = st->status, cap = sizeof(st->status);
    if (nl == 12 && !memcmp(name, "content-type", 12)) dst = st->ctype, cap = sizeof(st->ctype);
    if (nl == 11 && !memcmp(name, "grpc-status", 11)) dst = st->grpc_status, cap = sizeof(st->grpc_status);
    if (nl == 12 && !memcmp(name, "grpc-message", 12)) dst = st->grpc_message, cap = sizeof(st->grpc_message);
    if (dst) snprintf(dst, cap, "%.*s", (int)vl, value);
    return 0;
}

static int cl_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u) {
    client_t *c = u;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) c->pings_acked++;
    if (f->hd.type == NGHTTP2_GOAWAY) c->goaway = 1;
    stream_t *st = find_stream(c, f->hd.stream_id);
    if (st && f->hd.type == NGHTTP2_HEADERS) {
        if (st->header_frames++ == 0 && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) st->first_headers_ended = 1;
    }
    return 0;
}

static int cl_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t len, void *u) {
    stream_t *st = find_stream(u, id);
    if (st) buf_add(&st->data, &st->data_len, &st->data_cap, d, len);
    return 0;
}

static int cl_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *u) {
    stream_t *st = find_stream(u, id);
    if (st) {
        st->closed = 1;
        st->close_code = code;
    }
    return 0;
}

static ssize_t cl_data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                            nghttp2_data_source *src, void *u) {
    stream_t *st = src->ptr;
    size_t n = st->out_len - st->out_off;
    if (n > len) n = len;
    if (n) memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out_len) {
        if (st->out_eof)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        else if (n == 0) {
            st->deferred = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

static int tcp_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {0, 20000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

typedef struct tls_opts {
    const char *alpn; /* NULL: send no ALPN */
    int client_cert;
} tls_opts_t;

/* TLS handshake; returns 0 or -1 (the client is still valid for cleanup). */
static int client_tls(client_t *c, const tls_opts_t *o) {
    char path[300];
    c->ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
    snprintf(path, sizeof(path), "%s/ca.crt", F.dir);
    assert_int_equal(wolfSSL_CTX_load_verify_locations(c->ctx, path, NULL), WOLFSSL_SUCCESS);
    if (o->client_cert) {
        snprintf(path, sizeof(path), "%s/client.crt", F.dir);
        assert_int_equal(wolfSSL_CTX_use_certificate_file(c->ctx, path, WOLFSSL_FILETYPE_PEM),
                         WOLFSSL_SUCCESS);
        snprintf(path, sizeof(path), "%s/client.key", F.dir);
        assert_int_equal(wolfSSL_CTX_use_PrivateKey_file(c->ctx, path, WOLFSSL_FILETYPE_PEM),
                         WOLFSSL_SUCCESS);
    }
    c->ssl = wolfSSL_new(c->ctx);
    wolfSSL_set_fd(c->ssl, c->fd);
    if (o->alpn)
        wolfSSL_UseALPN(c->ssl, (char *)o->alpn, (unsigned)strlen(o->alpn), WOLFSSL_ALPN_FAILED_ON_MISMATCH);
    for (int i = 0; i < 500; i++) {
        int r = wolfSSL_connect(c->ssl);
        if (r == WOLFSSL_SUCCESS) {
            if (o->alpn) {
                char *proto = NULL;
                unsigned short plen = 0;
                if (wolfSSL_ALPN_GetProtocol(c->ssl, &proto, &plen) != WOLFSSL_SUCCESS || plen != 2 ||
                    memcmp(proto, "h2", 2) != 0)
                    return -1;
            }
            return 0;
        }
        int e = wolfSSL_get_error(c->ssl, r);
        if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) return -1;
    }
    return -1;
}

static client_t *client_new_fd(int fd) {
    client_t *c = calloc(1, sizeof(*c));
    c->fd = fd;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, cl_send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, cl_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cl_on_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cl_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, cl_on_close);
    nghttp2_session_client_new(&c->s, cb, c);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, NULL, 0);
    return c;
}

static client_t *client_connect(int port, const tls_opts_t *tls, int *tls_failed) {
    int fd = tcp_connect(port);
    client_t *c = client_new_fd(fd);
    if (tls && client_tls(c, tls) != 0) {
        if (tls_failed) *tls_failed = 1;
    }
    return c;
}

static void stream_free(stream_t *st) {
    free(st->data);
    free(st->out);
    free(st);
}

static void client_free(client_t *c) {
    nghttp2_session_del(c->s);
    if (c->ssl) wolfSSL_free(c->ssl);
    if (c->ctx) wolfSSL_CTX_free(c->ctx);
    close(c->fd);
    for (int i = 0; i < c->nstreams; i++) stream_free(c->streams[i]);
    free(c);
}

/* Send what nghttp2 has, then read once (20 ms receive timeout). */
static void client_pump(client_t *c) {
    if (c->eof) return;
    if (nghttp2_session_send(c->s) != 0) {
        c->eof = 1;
        return;
    }
    uint8_t buf[16384];
    ssize_t n;
    if (c->ssl) {
        int r = wolfSSL_read(c->ssl, buf, sizeof(buf));
        if (r > 0)
            n = r;
        else {
            int e = wolfSSL_get_error(c->ssl, r);
            n = (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) ? -1 : 0;
        }
    } else {
        n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) n = 0;
    }
    if (n == 0) {
        c->eof = 1;
        return;
    }
    if (n > 0 && nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0) c->eof = 1;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int pump_until_closed(client_t *c, stream_t *st, int timeout_ms) {
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (!st->closed && !c->eof && now_ms() < end) client_pump(c);
    return st->closed;
}

/* The :authority start_call sends (tests change it for one call). */
static const char *g_authority = "127.0.0.1";

static stream_t *start_call(client_t *c, const char *path, const char *timeout, const char *xtest) {
    stream_t *st = calloc(1, sizeof(*st));
    nghttp2_nv nv[8];
    size_t n = 0;
#define ADD(k, v) nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
    ADD(":method", "POST");
    ADD(":scheme", c->ssl ? "https" : "http");
    ADD(":path", path);
    ADD(":authority", g_authority);
    ADD("content-type", "application/grpc");
    ADD("te", "trailers");
    if (timeout) ADD("grpc-timeout", timeout);
    if (xtest) ADD("x-test", xtest);
#undef ADD
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = cl_data_read};
    st->id = nghttp2_submit_request(c->s, NULL, nv, n, &prd, NULL);
    assert_true(st->id > 0);
    c->streams[c->nstreams++] = st;
    return st;
}

static void stream_write(client_t *c, stream_t *st, const void *p, size_t n, int eof) {
    buf_add(&st->out, &st->out_len, &st->out_cap, p, n);
    if (eof) st->out_eof = 1;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(c->s, st->id);
    }
}

static void stream_write_msg(client_t *c, stream_t *st, const void *msg, size_t n, int eof) {
    uint8_t pfx[5];
    grpc_frame_prefix(pfx, (uint32_t)n);
    stream_write(c, st, pfx, 5, 0);
    stream_write(c, st, msg, n, eof);
}

/* One unary call: returns the stream after it closed. */
static stream_t *unary(client_t *c, const char *path, const void *msg, size_t n) {
    stream_t *st = start_call(c, path, NULL, NULL);
    stream_write_msg(c, st, msg, n, 1);
    assert_true(pump_until_closed(c, st, 5000));
    return st;
}

static void assert_echo_ok(stream_t *st, const void *msg, size_t n) {
    assert_string_equal(st->status, "200");
    assert_string_equal(st->ctype, "application/grpc");
    assert_int_equal(st->header_frames, 2); /* headers + trailers */
    assert_false(st->first_headers_ended);
    assert_string_equal(st->grpc_status, "0");
    assert_int_equal(st->data_len, n + 5);
    assert_int_equal(st->data[0], 0);
    assert_int_equal((uint32_t)st->data[1] << 24 | (uint32_t)st->data[2] << 16 | (uint32_t)st->data[3] << 8 |
                         st->data[4],
                     n);
    assert_memory_equal(st->data + 5, msg, n);
    assert_int_equal(st->close_code, 0);
}

/* ---- tests ---- */

static void test_unary_echo_h2c(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = unary(c, "/test.Echo/Unary", "hello", 5);
    assert_echo_ok(st, "hello", 5);
    st = unary(c, "/test.Echo/Unary", "", 0); /* empty message */
    assert_echo_ok(st, "", 0);
    client_free(c);
}

/* Forget the client's closed streams (a long run of calls on one client). */
static void client_forget_closed(client_t *c) {
    int kept = 0;
    for (int i = 0; i < c->nstreams; i++) {
        stream_t *st = c->streams[i];
        if (st->closed)
            stream_free(st);
        else
            c->streams[kept++] = st;
    }
    c->nstreams = kept;
}

static size_t session_bytes(client_t *c) {
    stream_t *st = unary(c, "/test.Echo/SessionBytes", "", 0);
    assert_string_equal(st->grpc_status, "0");
    assert_true(st->data_len > 5 && st->data_len < 30);
    char text[32] = {0};
    memcpy(text, st->data + 5, st->data_len - 5);
    client_forget_closed(c);
    return strtoull(text, NULL, 10);
}

/* A connection's HTTP/2 state does not grow with the calls made on it:
 * nghttp2 keeps no closed streams (it kept every one of them, ~250 bytes
 * each, while the streams per connection are unlimited). */
static void test_closed_streams_not_kept(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    for (int i = 0; i < 100; i++) {
        assert_echo_ok(unary(c, "/test.Echo/Unary", "warm", 4), "warm", 4);
        client_forget_closed(c);
    }
    size_t before = session_bytes(c);
    assert_true(before > 0);
    for (int i = 0; i < 2000; i++) {
        assert_echo_ok(unary(c, "/test.Echo/Unary", "again", 5), "again", 5);
        client_forget_closed(c);
    }
    size_t after = session_bytes(c);
    assert_true(after < before + 16 * 1024);
    client_free(c);
}

static void test_large_message_flow_control(void **state) {
    /* Larger than the 64 KiB default windows both ways, below the 1024 + 512 KiB limit. */
    size_t n = 500 * 1024;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (uint8_t)(i * 7);
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = unary(c, "/test.Echo/Unary", big, n);
    assert_echo_ok(st, big, n);
    client_free(c);
    free(big);
}

static void test_trailers_only_error(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = unary(c, "/test.Echo/Fail", "x", 1);
    assert_int_equal(st->header_frames, 1);
    assert_true(st->first_headers_ended);
    assert_string_equal(st->status, "200");
    assert_string_equal(st->ctype, "application/grpc");
    assert_string_equal(st->grpc_status, "3");
    assert_string_equal(st->grpc_message, "bad 100%25 %E2%98%83%0A");
    assert_int_equal(st->data_len, 0);
    client_free(c);
}

static void test_unknown_method_and_service(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = unary(c, "/test.Echo/Nope", "x", 1);
    assert_string_equal(st->grpc_status, "12");
    assert_string_equal(st->grpc_message, "unknown method Nope for service test.Echo");
    assert_true(st->first_headers_ended);
    st = unary(c, "/etcdserverpb.Foo/Range", "x", 1);
    assert_string_equal(st->grpc_status, "12");
    assert_string_equal(st->grpc_message, "unknown service etcdserverpb.Foo");
    st = unary(c, "/test.Echo/Unary", "still fine", 10);
    assert_echo_ok(st, "still fine", 10);
    client_free(c);
}

static void test_garbage_preface_isolated(void **state) {
    client_t *good = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = unary(good, "/test.Echo/Unary", "a", 1);
    assert_echo_ok(st, "a", 1);

    int fd = tcp_connect(F.port_h2c);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(fd, junk, sizeof(junk) - 1, 0), (ssize_t)sizeof(junk) - 1);
    /* The server closes it (after at most a GOAWAY). */
    uint8_t buf[4096];
    uint64_t end = now_ms() + 3000;
    int closed = 0;
    while (now_ms() < end) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            closed = 1;
            break;
        }
    }
    assert_true(closed);
    close(fd);

    st = unary(good, "/test.Echo/Unary", "b", 1);
    assert_echo_ok(st, "b", 1);
    client_free(good);
}

static void test_truncated_message(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = start_call(c, "/test.Echo/Unary", NULL, NULL);
    uint8_t pfx[5];
    grpc_frame_prefix(pfx, 10);
    stream_write(c, st, pfx, 5, 0);
    stream_write(c, st, "abc", 3, 1); /* 3 of 10 bytes, then END_STREAM */
    assert_true(pump_until_closed(c, st, 5000));
    assert_string_equal(st->grpc_status, "2"); /* etcd 3.4: Unknown */
    assert_string_equal(st->grpc_message, "unexpected EOF");
    /* A prefix cut short too. */
    st = start_call(c, "/test.Echo/Unary", NULL, NULL);
    stream_write(c, st, pfx, 2, 1);
    assert_true(pump_until_closed(c, st, 5000));
    assert_string_equal(st->grpc_status, "2");
    assert_string_equal(st->grpc_message, "unexpected EOF");
    /* No message at all on a unary call. */
    st = start_call(c, "/test.Echo/Unary", NULL, NULL);
    stream_write(c, st, "", 0, 1);
    assert_true(pump_until_closed(c, st, 5000));
    assert_string_equal(st->grpc_status, "2");
    assert_string_equal(st->grpc_message, "EOF");
    assert_true(st->first_headers_ended);
    client_free(c);
}

static void test_oversized_message(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = start_call(c, "/test.Echo/Unary", NULL, NULL);
    uint8_t pfx[5];
    grpc_frame_prefix(pfx, RECV_LIMIT + 1);
    stream_write(c, st, pfx, 5, 0);
    stream_write(c, st, "zzzz", 4, 0); /* never finishes: the prefix is enough */
    assert_true(pump_until_closed(c, st, 5000));
    assert_string_equal(st->grpc_status, "8");
    char want[128];
    snprintf(want, sizeof(want), "grpc: received message larger than max (%d vs. %d)", RECV_LIMIT + 1,
             RECV_LIMIT);
    assert_string_equal(st->grpc_message, want);
    /* The server ended the stream while we were still sending: RST NO_ERROR
     * may follow the trailers; the connection stays usable. */
    st = unary(c, "/test.Echo/Unary", "ok", 2);
    assert_echo_ok(st, "ok", 2);
    client_free(c);
}

static void test_compressed_flag_rejected(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = start_call(c, "/test.Echo/Unary", NULL, NULL);
    uint8_t m[7] = {1, 0, 0, 0, 2, 'h', 'i'};
    stream_write(c, st, m, 7, 1);
    assert_true(pump_until_closed(c, st, 5000));
    assert_string_equal(st->grpc_status, "13");
    assert_string_equal(st->grpc_message, "grpc: compressed flag set with identity or empty encoding");
    client_free(c);
}

static void test_second_message_on_unary(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    /* etcd 3.4 answers the first and ignores the rest. */
    stream_t *st = start_call(c, "/test.Echo/Unary", NULL, NULL);
    stream_write_msg(c, st, "a", 1, 0);
    stream_write_msg(c, st, "b", 1, 1);
    assert_true(pump_until_closed(c, st, 5000));
    assert_echo_ok(st, "a", 1);
    client_free(c);
}

static void test_bidi_many_messages(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = start_call(c, "/test.Echo/Bidi", NULL, NULL);
    char msg[64];
    size_t expect = 0;
    /* Ping-pong: each echo arrives before the next message is sent. */
    for (int i = 0; i < 200; i++) {
        int n = snprintf(msg, sizeof(msg), "message %d", i);
        stream_write_msg(c, st, msg, (size_t)n, 0);
        expect += 5 + (size_t)n;
        uint64_t end = now_ms() + 3000;
        while (st->data_len < expect && now_ms() < end && !c->eof) client_pump(c);
        assert_int_equal(st->data_len, expect);
        assert_memory_equal(st->data + expect - (size_t)n, msg, (size_t)n);
    }
    /* Then a burst of 2000, half-closed at the end. */
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(msg, sizeof(msg), "burst %d", i);
        stream_write_msg(c, st, msg, (size_t)n, i == 1999);
        expect += 5 + (size_t)n;
    }
    int before = g_half_closes;
    assert_true(pump_until_closed(c, st, 10000));
    assert_int_equal(st->data_len, expect);
    assert_string_equal(st->grpc_status, "0");
    assert_int_equal(g_half_closes, before + 1);
    /* Spot-check the order of the burst. */
    size_t off = 0;
    int idx = 0;
    while (off < st->data_len) {
        uint32_t n = (uint32_t)st->data[off + 1] << 24 | (uint32_t)st->data[off + 2] << 16 |
                     (uint32_t)st->data[off + 3] << 8 | st->data[off + 4];
        if (idx >= 200) {
            int m = snprintf(msg, sizeof(msg), "burst %d", idx - 200);
            assert_int_equal(n, m);
            assert_memory_equal(st->data + off + 5, msg, n);
        }
        off += 5 + n;
        idx++;
    }
    assert_int_equal(idx, 2200);
    client_free(c);
}

/* Big volume both ways on one stream while the client does not read: flow
 * control stalls the sender; once the client reads everything arrives. */
static void test_bidi_volume_stall(void **state) {
    enum { MSG = 64 * 1024, COUNT = 128 }; /* 8 MiB each way */
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    struct timeval tv = {0, 20000};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1u << 31) - 1}};
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 1);
    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 0x7fffffff);
    int before = g_bidi_msgs;
    stream_t *st = start_call(c, "/test.Echo/Bidi", NULL, NULL);
    uint8_t *m = malloc(MSG);
    for (int i = 0; i < COUNT; i++) {
        memset(m, 'a' + i % 26, MSG);
        stream_write_msg(c, st, m, MSG, i == COUNT - 1);
    }
    free(m);
    /* Let the server read until it saturates; our first read only takes the
     * SETTINGS exchange so our windows are in effect. */
    for (int i = 0; i < 5; i++) client_pump(c);
    uint64_t end = now_ms() + 1000;
    while (now_ms() < end) nghttp2_session_send(c->s);
    int stalled_at = g_bidi_msgs - before;
    assert_true(stalled_at < COUNT);
    assert_false(st->closed);
    end = now_ms() + 15000;
    while (!st->closed && !c->eof && now_ms() < end) client_pump(c);
    assert_true(st->closed);
    assert_string_equal(st->grpc_status, "0");
    assert_int_equal(g_bidi_msgs - before, COUNT);
    assert_int_equal(st->data_len, (size_t)COUNT * (MSG + 5));
    for (int i = 0; i < COUNT; i++)
        assert_int_equal(st->data[(size_t)i * (MSG + 5) + 5 + MSG / 2], 'a' + i % 26);
    client_free(c);
}

static void start_big(client_t *c, int n) {
    for (int i = 0; i < n; i++) {
        stream_t *st = start_call(c, "/test.Echo/Big", NULL, NULL);
        stream_write_msg(c, st, "", 0, 1);
    }
}

/* Sends what the client has queued until the server has started no new Big
 * call for 500 ms (it stopped reading the connection, or read all of it);
 * returns the calls started since before. A fixed wait is not enough: on a
 * loaded machine it can end while the server is still reading. */
static int big_calls_settled(client_t *c, int before) {
    uint64_t deadline = now_ms() + 10000, since = now_ms();
    int seen = g_big_calls;
    while (now_ms() < deadline && now_ms() - since < 500) {
        nghttp2_session_send(c->s);
        if (g_big_calls != seen) {
            seen = g_big_calls;
            since = now_ms();
        }
    }
    return seen - before;
}

/* Each Big call answers 1 MiB. A client that keeps opening calls but does not
 * read: once the server's output buffer is full it stops reading the
 * connection, so the later calls are not even started until the client
 * drains; then all of them complete. */
static void test_backpressure_stops_reading(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    struct timeval tv = {0, 20000};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0x7fffffff}};
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 1);
    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 0x7fffffff);
    for (int i = 0; i < 5; i++) client_pump(c); /* SETTINGS exchanged */
    int before = g_big_calls;
    start_big(c, 30); /* 30 MiB: more than the socket buffers and ours */
    int first = big_calls_settled(c, before);
    assert_true(first > 0);
    start_big(c, 40);
    assert_int_equal(big_calls_settled(c, before), first); /* nothing more was read */
    uint64_t end = now_ms() + 15000;
    int done = 0;
    while (done < 70 && !c->eof && now_ms() < end) {
        client_pump(c);
        done = 0;
        for (int i = 0; i < c->nstreams; i++) done += c->streams[i]->closed;
    }
    assert_int_equal(done, 70);
    assert_int_equal(g_big_calls - before, 70);
    for (int i = 0; i < c->nstreams; i++) {
        assert_string_equal(c->streams[i]->grpc_status, "0");
        assert_int_equal(c->streams[i]->data_len, (1 << 20) + 5);
        const uint8_t *d = c->streams[i]->data + 5;
        size_t bad = 0;
        for (size_t j = 0; j < 1 << 20; j++) bad += d[j] != big_byte(j);
        assert_int_equal(bad, 0);
    }
    client_free(c);
}

static void test_pings_acked(void **state) {
    int cancels = g_cancels;
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = start_call(c, "/test.Echo/Slow", NULL, NULL); /* an open stream */
    stream_write_msg(c, st, "x", 1, 1);
    for (int i = 0; i < 100; i++) {
        uint8_t opaque[8] = {(uint8_t)i};
        nghttp2_submit_ping(c->s, NGHTTP2_FLAG_NONE, opaque);
        client_pump(c);
    }
    uint64_t end = now_ms() + 3000;
    while (c->pings_acked < 100 && now_ms() < end && !c->eof) client_pump(c);
    assert_int_equal(c->pings_acked, 100);
    assert_false(c->goaway);
    assert_false(c->eof);
    client_free(c);
    /* The open Slow call is cancelled by the disconnect. */
    end = now_ms() + 3000;
    while (g_cancels < cancels + 1 && now_ms() < end) usleep(1000);
    assert_int_equal(g_cancels, cancels + 1);
}

static void test_deadline_and_cancel(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    int before = g_cancels;
    stream_t *st = start_call(c, "/test.Echo/Slow", "50m", NULL);
    stream_write_msg(c, st, "x", 1, 1);
    uint64_t t0 = now_ms();
    assert_true(pump_until_closed(c, st, 5000));
    assert_true(now_ms() - t0 >= 45);
    assert_string_equal(st->grpc_status, "2"); /* etcd 3.4 on Watch */
    assert_string_equal(st->grpc_message, "context deadline exceeded");
    assert_int_equal(g_cancels, before + 1);
    assert_true(st->first_headers_ended);

    /* A service may answer the deadline itself from on_cancel. */
    st = start_call(c, "/test.Echo/SlowOwnTimeout", "20m", NULL);
    stream_write_msg(c, st, "x", 1, 1);
    assert_true(pump_until_closed(c, st, 5000));
    assert_string_equal(st->grpc_status, "14");
    assert_string_equal(st->grpc_message, "etcdserver: request timed out");
    assert_int_equal(g_cancels, before + 2);
    before++;

    /* RST_STREAM from the client cancels an open call. */
    st = start_call(c, "/test.Echo/Slow", NULL, NULL);
    stream_write_msg(c, st, "x", 1, 1);
    for (int i = 0; i < 5; i++) client_pump(c);
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    uint64_t end = now_ms() + 3000;
    while (g_cancels < before + 2 && now_ms() < end) client_pump(c);
    assert_int_equal(g_cancels, before + 2);

    /* Closing the connection cancels its open calls. */
    st = start_call(c, "/test.Echo/Slow", NULL, NULL);
    stream_write_msg(c, st, "x", 1, 1);
    for (int i = 0; i < 5; i++) client_pump(c);
    client_free(c);
    end = now_ms() + 3000;
    while (g_cancels < before + 3 && now_ms() < end) usleep(1000);
    assert_int_equal(g_cancels, before + 3);
}

/* grpc_server_method_stats, read on the loop thread (its contract). */
typedef struct stats_req {
    size_t index;
    grpc_method_stats_t st;
    const grpc_method_t *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} stats_req_t;

static void stats_on_loop(void *arg) {
    stats_req_t *r = arg;
    pthread_mutex_lock(&r->mu);
    r->m = grpc_server_method_stats(F.srv, r->index, &r->st);
    r->done = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static grpc_method_stats_t method_stats(size_t index, const char *path) {
    stats_req_t r = {.index = index, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    assert_int_equal(loop_post(F.loop, stats_on_loop, &r), 0);
    pthread_mutex_lock(&r.mu);
    while (!r.done) pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    assert_non_null(r.m);
    assert_string_equal(r.m->path, path);
    return r.st;
}

/* Started, handled by code (Canceled for a client's RST_STREAM), messages
 * and bytes per method; an unknown method counts nowhere. */
static void test_method_stats(void **state) {
    grpc_method_stats_t u0 = method_stats(0, "/test.Echo/Unary"), f0 = method_stats(1, "/test.Echo/Fail"),
                        s0 = method_stats(4, "/test.Echo/Slow");
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    assert_echo_ok(unary(c, "/test.Echo/Unary", "hello", 5), "hello", 5);
    assert_echo_ok(unary(c, "/test.Echo/Unary", "ab", 2), "ab", 2);
    assert_string_equal(unary(c, "/test.Echo/Fail", "x", 1)->grpc_status, "3");
    assert_string_equal(unary(c, "/test.Echo/Nope", "x", 1)->grpc_status, "12");
    int cancels = g_cancels;
    stream_t *st = start_call(c, "/test.Echo/Slow", NULL, NULL);
    stream_write_msg(c, st, "x", 1, 1);
    for (int i = 0; i < 5; i++) client_pump(c);
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    uint64_t end = now_ms() + 3000;
    while (g_cancels == cancels && now_ms() < end) client_pump(c);
    client_free(c);
    grpc_method_stats_t u1 = method_stats(0, "/test.Echo/Unary"), f1 = method_stats(1, "/test.Echo/Fail"),
                        s1 = method_stats(4, "/test.Echo/Slow");
    assert_int_equal(u1.started - u0.started, 2);
    assert_int_equal(u1.handled[GRPC_OK] - u0.handled[GRPC_OK], 2);
    assert_int_equal(u1.msg_received - u0.msg_received, 2);
    assert_int_equal(u1.msg_sent - u0.msg_sent, 2);
    assert_int_equal(u1.bytes_received - u0.bytes_received, 7);
    assert_int_equal(u1.bytes_sent - u0.bytes_sent, 7);
    assert_int_equal(f1.started - f0.started, 1);
    assert_int_equal(f1.handled[GRPC_INVALID_ARGUMENT] - f0.handled[GRPC_INVALID_ARGUMENT], 1);
    assert_int_equal(f1.handled[GRPC_OK] - f0.handled[GRPC_OK], 0);
    assert_int_equal(s1.started - s0.started, 1);
    assert_int_equal(s1.handled[GRPC_CANCELLED] - s0.handled[GRPC_CANCELLED], 1);
    uint64_t handled = 0;
    for (int i = 0; i < GRPC_STATUS_COUNT; i++) handled += s1.handled[i] - s0.handled[i];
    assert_int_equal(handled, 1); /* once, whatever on_cancel did */
}

static void test_deferred_answer_and_closed_call(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = unary(c, "/test.Echo/Later", "q", 1);
    assert_echo_ok(st, "later", 5);
    assert_int_equal(g_later_send_rc, 0);
    /* The client leaves before the answer: sending is a no-op returning -1.
     * It leaves once the server started the call: a close with unread data
     * is a TCP reset, which may drop the request unread. */
    int started = g_later_calls;
    st = start_call(c, "/test.Echo/Later", NULL, NULL);
    stream_write_msg(c, st, "q", 1, 1);
    uint64_t end = now_ms() + 5000;
    while (g_later_calls == started && !c->eof && now_ms() < end) client_pump(c);
    assert_int_equal(g_later_calls, started + 1);
    client_free(c);
    end = now_ms() + 3000;
    while (g_later_send_rc != -1 && now_ms() < end) usleep(1000);
    assert_int_equal(g_later_send_rc, -1);
}

static void test_reader_answers_and_closed_call(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    /* A large answer from a reader thread, sent in place (many DATA frames). */
    stream_t *st = unary(c, "/test.Echo/Reader", "abc", 3);
    uint8_t *want = malloc(3 * READER_REPEAT);
    assert_non_null(want);
    for (size_t i = 0; i < READER_REPEAT; i++) memcpy(want + 3 * i, "abc", 3);
    assert_echo_ok(st, want, 3 * READER_REPEAT);
    free(want);
    assert_int_equal(g_reader_send_rc, 0);
    /* The client leaves while the read runs: the completion finds the call
     * closed, the owned buffer is freed (ASan: no leak), nothing crashes. */
    pthread_mutex_lock(&g_gate_mu);
    g_gate_open = 0;
    pthread_mutex_unlock(&g_gate_mu);
    int cancels = g_reader_cancels;
    st = start_call(c, "/test.Echo/Reader", NULL, NULL);
    stream_write_msg(c, st, "wait", 4, 1);
    for (int i = 0; i < 5; i++) client_pump(c);
    client_free(c);
    uint64_t end = now_ms() + 3000;
    while (g_reader_cancels == cancels && now_ms() < end) usleep(1000);
    assert_int_equal(g_reader_cancels, cancels + 1);
    pthread_mutex_lock(&g_gate_mu);
    g_gate_open = 1;
    pthread_cond_broadcast(&g_gate_cv);
    pthread_mutex_unlock(&g_gate_mu);
    end = now_ms() + 3000;
    while (g_reader_closed_done == 0 && now_ms() < end) usleep(1000);
    assert_int_equal(g_reader_closed_done, 1);
    while (g_reader_send_rc != -1 && now_ms() < end) usleep(1000);
    assert_int_equal(g_reader_send_rc, -1);
}

static void test_bad_http_requests(void **state) {
    client_t *c = client_connect(F.port_h2c, NULL, NULL);
    stream_t *st = calloc(1, sizeof(*st));
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":path", (uint8_t *)"/test.Echo/Unary", 5, 16, 0},
        {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
        {(uint8_t *)"content-type", (uint8_t *)"text/html", 12, 9, 0},
    };
    st->id = nghttp2_submit_request(c->s, NULL, nv, 5, NULL, NULL);
    c->streams[c->nstreams++] = st;
    assert_true(pump_until_closed(c, st, 3000));
    assert_int_equal(st->close_code, NGHTTP2_PROTOCOL_ERROR); /* like etcd */
    assert_string_equal(st->status, "");
    /* A malformed grpc-timeout: reset too. */
    st = start_call(c, "/test.Echo/Unary", "12x", NULL);
    stream_write_msg(c, st, "x", 1, 1);
    assert_true(pump_until_closed(c, st, 3000));
    assert_int_equal(st->close_code, NGHTTP2_PROTOCOL_ERROR);
    /* A :path not starting with '/': grpc-go's answer, as etcd gives it. */
    st = unary(c, "nopath", "x", 1);
    assert_string_equal(st->grpc_status, "8");
    assert_string_equal(st->grpc_message, "malformed method name: \"nopath\"");
    /* An :authority with a scheme, as grpc-go sends for an endpoint dialled
     * as http://host:port (etcdctl --endpoints http://... endpoint status):
     * served, as etcd serves it (nghttp2's HTTP rules would reset it). */
    g_authority = "http://127.0.0.1:2379";
    st = unary(c, "/test.Echo/Unary", "a", 1);
    g_authority = "127.0.0.1";
    assert_echo_ok(st, "a", 1);
    st = unary(c, "/test.Echo/Unary", "z", 1);
    assert_echo_ok(st, "z", 1);
    client_free(c);
}

static void test_tls_echo_alpn(void **state) {
    int failed = 0;
    tls_opts_t o = {.alpn = "h2"};
    client_t *c = client_connect(F.port_tls, &o, &failed);
    assert_false(failed);
    stream_t *st = unary(c, "/test.Echo/Peer", "", 0);
    const char *want = "cn=-;x=-;deadline=0;path=/test.Echo/Peer";
    assert_echo_ok(st, want, strlen(want));
    client_free(c);

    /* No ALPN at all: accepted. */
    tls_opts_t none = {0};
    failed = 0;
    c = client_connect(F.port_tls, &none, &failed);
    assert_false(failed);
    st = unary(c, "/test.Echo/Unary", "tls", 3);
    assert_echo_ok(st, "tls", 3);
    client_free(c);

    /* ALPN http/1.1 alone: the server selects http/1.1 (plain HTTP on the
     * client port), not h2, so this HTTP/2 client gives up. */
    tls_opts_t h1 = {.alpn = "http/1.1"};
    failed = 0;
    c = client_connect(F.port_tls, &h1, &failed);
    assert_true(failed);
    client_free(c);

    /* Plain h2c against the TLS port does not get an HTTP/2 answer. */
    c = client_connect(F.port_tls, NULL, NULL);
    st = start_call(c, "/test.Echo/Unary", NULL, NULL);
    stream_write_msg(c, st, "x", 1, 1);
    uint64_t end = now_ms() + 3000;
    while (!c->eof && now_ms() < end) client_pump(c);
    assert_true(c->eof);
    assert_false(st->closed);
    client_free(c);
}

static void test_client_cert_auth(void **state) {
    int failed = 0;
    tls_opts_t o = {.alpn = "h2", .client_cert = 1};
    client_t *c = client_connect(F.port_mtls, &o, &failed);
    assert_false(failed);
    stream_t *st = start_call(c, "/test.Echo/Peer", "2S", "meta-value");
    stream_write_msg(c, st, "", 0, 1);
    assert_true(pump_until_closed(c, st, 5000));
    const char *want = "cn=alice;x=meta-value;deadline=1;path=/test.Echo/Peer";
    assert_echo_ok(st, want, strlen(want));
    client_free(c);

    /* Without a client certificate the server refuses (during the handshake,
     * or with TLS 1.3 right after it: no request ever succeeds). */
    tls_opts_t nocert = {.alpn = "h2"};
    failed = 0;
    c = client_connect(F.port_mtls, &nocert, &failed);
    if (!failed) {
        st = start_call(c, "/test.Echo/Unary", NULL, NULL);
        stream_write_msg(c, st, "x", 1, 1);
        uint64_t end = now_ms() + 3000;
        while (!c->eof && !st->closed && now_ms() < end) client_pump(c);
        assert_true(c->eof);
        assert_string_equal(st->grpc_status, "");
    }
    client_free(c);
}

static atomic_int g_reload_rc = 99;

static void do_reload(void *arg) {
    char err[256];
    g_reload_rc = grpc_server_reload_tls(F.srv, err, sizeof(err));
}

static int reload_on_loop(void) {
    g_reload_rc = 99;
    assert_int_equal(loop_post(F.loop, do_reload, NULL), 0);
    uint64_t end = now_ms() + 3000;
    while (g_reload_rc == 99 && now_ms() < end) usleep(1000);
    return g_reload_rc;
}

static void server_cn(client_t *c, char *out, size_t len) {
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
    assert_non_null(x);
    assert_true(wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(x), NID_commonName, out,
                                                  (int)len) > 0);
    wolfSSL_X509_free(x);
}

/* New certificate files are picked up by new connections only; a broken
 * file keeps the previous context. */
static void test_tls_reload(void **state) {
    tls_opts_t o = {.alpn = "h2"};
    int failed = 0;
    client_t *old = client_connect(F.port_tls, &o, &failed);
    assert_false(failed);
    char cn[128];
    server_cn(old, cn, sizeof(cn));
    assert_string_equal(cn, "localhost");
    assert_int_equal(
        run_cmd("cd %s && openssl ecparam -name prime256v1 -genkey -noout -out server2.key && "
                "openssl req -new -key server2.key -subj /CN=reloaded -out server2.csr && "
                "openssl x509 -req -in server2.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                "  -extfile server.ext -out server2.crt 2>/dev/null && "
                "cp server2.crt server.crt && cp server2.key server.key",
                F.dir),
        0);
    assert_int_equal(reload_on_loop(), 0);
    client_t *c = client_connect(F.port_tls, &o, &failed);
    assert_false(failed);
    server_cn(c, cn, sizeof(cn));
    assert_string_equal(cn, "reloaded");
    stream_t *st = unary(c, "/test.Echo/Unary", "new", 3);
    assert_echo_ok(st, "new", 3);
    client_free(c);
    st = unary(old, "/test.Echo/Unary", "old", 3); /* the old connection lives on */
    assert_echo_ok(st, "old", 3);
    client_free(old);

    assert_int_equal(run_cmd("echo garbage > %s/server.crt", F.dir), 0);
    assert_int_equal(reload_on_loop(), -1);
    c = client_connect(F.port_tls, &o, &failed);
    assert_false(failed);
    server_cn(c, cn, sizeof(cn));
    assert_string_equal(cn, "reloaded");
    client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_echo_h2c),
        cmocka_unit_test(test_closed_streams_not_kept),
        cmocka_unit_test(test_large_message_flow_control),
        cmocka_unit_test(test_trailers_only_error),
        cmocka_unit_test(test_unknown_method_and_service),
        cmocka_unit_test(test_garbage_preface_isolated),
        cmocka_unit_test(test_truncated_message),
        cmocka_unit_test(test_oversized_message),
        cmocka_unit_test(test_compressed_flag_rejected),
        cmocka_unit_test(test_second_message_on_unary),
        cmocka_unit_test(test_bidi_many_messages),
        cmocka_unit_test(test_bidi_volume_stall),
        cmocka_unit_test(test_backpressure_stops_reading),
        cmocka_unit_test(test_pings_acked),
        cmocka_unit_test(test_deadline_and_cancel),
        cmocka_unit_test(test_method_stats),
        cmocka_unit_test(test_deferred_answer_and_closed_call),
        cmocka_unit_test(test_reader_answers_and_closed_call),
        cmocka_unit_test(test_bad_http_requests),
        cmocka_unit_test(test_tls_echo_alpn),
        cmocka_unit_test(test_client_cert_auth),
        cmocka_unit_test(test_tls_reload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
