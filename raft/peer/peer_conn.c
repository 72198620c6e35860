/*
 * peer_conn.c: URLs, sockets and wolfSSL connections of the peer transport
 * (peer_internal.h).
 *
 * Owns: the parsing of peer URLs (http://IP:port, http://localhost:port,
 * https://..., unix://path, unixs://path, as etcd accepts them), listening
 * and dialing sockets, the wolfSSL context of each side (--peer-* flags with
 * etcd 3.4's semantics, see peer_tls_ctx_new) and one blocking connection
 * object (socket + optional TLS session + a small read buffer) per
 * connection. Every call here blocks its caller's thread at most for the
 * timeouts set on the connection; peer_conn_shutdown wakes it from another.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include "peer_internal.h"
#include "tls_crl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct peer_tls_ctx {
    WOLFSSL_CTX *ctx;
    int server;
    int verify; /* the other side's certificate is verified against the trusted CA */
    char *allowed_cn, *allowed_hostname;
    tls_crl_t *crl; /* --peer-crl-file (the verify callback's context), or NULL */
};

struct peer_conn {
    int fd;
    WOLFSSL *ssl;
    size_t rpos, rlen;
    uint8_t rbuf[16384];
};

/* ---- URLs ---- */

static int parse_port(const char *s, char *out) {
    size_t n = strlen(s);
    if (n == 0 || n > 5) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535) return -1;
    snprintf(out, 8, "%u", (unsigned)v & 0xffffu);
    return 0;
}

/* host:port or [v6]:port, an optional trailing '/'. */
static int parse_hostport(const char *s, peer_url_t *u) {
    char buf[300];
    size_t n = strlen(s);
    if (n >= sizeof buf) return -1;
    memcpy(buf, s, n + 1);
    if (n && buf[n - 1] == '/') buf[--n] = '\0';
    if (strchr(buf, '/') || strchr(buf, '?') || strchr(buf, '@')) return -1;
    char *host = buf, *colon;
    if (buf[0] == '[') {
        char *end = strchr(buf, ']');
        if (!end || end[1] != ':') return -1;
        *end = '\0';
        host = buf + 1;
        colon = end + 1;
    } else {
        colon = strrchr(buf, ':');
        if (!colon) return -1;
        *colon = '\0';
    }
    if (!host[0] || strlen(host) >= sizeof u->host) return -1;
    memcpy(u->host, host, strlen(host) + 1);
    return parse_port(colon + 1, u->port);
}

int peer_url_parse(const char *url, peer_url_t *out) {
    static const struct {
        const char *prefix;
        int family, tls;
    } schemes[] = {{"http://", PEER_URL_TCP, 0},
                   {"https://", PEER_URL_TCP, 1},
                   {"unix://", PEER_URL_UNIX, 0},
                   {"unixs://", PEER_URL_UNIX, 1}};
    if (!url || !out) return PEER_ERR_INVALID;
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t pl = strlen(schemes[i].prefix);
        if (strncmp(url, schemes[i].prefix, pl) != 0) continue;
        const char *rest = url + pl;
        out->family = schemes[i].family;
        out->tls = schemes[i].tls;
        if (out->family == PEER_URL_TCP) return parse_hostport(rest, out) == 0 ? PEER_OK : PEER_ERR_INVALID;
        /* unix://NAME: the socket file NAME (etcd: unix://localhost:2380 is
         * the file "localhost:2380"; unix:///abs/path an absolute path). */
        if (!rest[0] || strlen(rest) >= sizeof out->path) return PEER_ERR_INVALID;
        snprintf(out->path, sizeof out->path, "%s", rest);
        return PEER_OK;
    }
    return PEER_ERR_INVALID;
}

/* ---- sockets ---- */

static void set_cloexec(int fd) { fcntl(fd, F_SETFD, FD_CLOEXEC); }

static void set_nonblock(int fd, int on) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

/* Dead peers are found by keepalive (idle 30 s, 3 probes 5 s apart). */
static void set_tcp_options(int fd) {
    int one = 1, idle = 30, intvl = 5, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

static int unix_addr(const char *path, struct sockaddr_un *sa) {
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) return -1;
    memcpy(sa->sun_path, path, strlen(path));
    return 0;
}

static int listen_unix(const peer_url_t *u, char *err, size_t errlen) {
    struct sockaddr_un sa;
    if (unix_addr(u->path, &sa) != 0) {
        snprintf(err, errlen, "unix socket path too long: %s", u->path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    unlink(u->path); /* as etcd: a stale socket file is replaced */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0) {
        snprintf(err, errlen, "listen unix://%s: %s", u->path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int listen_tcp(const peer_url_t *u, char *err, size_t errlen) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    const char *host = strcmp(u->host, "localhost") == 0 ? "127.0.0.1" : u->host;
    int rc = getaddrinfo(host, u->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "expected IP in URL for binding (%s): %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        snprintf(err, errlen, "listen tcp %s:%s: %s", u->host, u->port, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int peer_listen_socket(const peer_url_t *u, char *err, size_t errlen) {
    return u->family == PEER_URL_UNIX ? listen_unix(u, err, errlen) : listen_tcp(u, err, errlen);
}

int peer_socket_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Non-blocking connect, waiting on fd and wake_fd. 0, or -1 with errno. */
static int connect_wait(int fd, const struct sockaddr *sa, socklen_t len, unsigned timeout_ms, int wake_fd) {
    set_nonblock(fd, 1);
    if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) return -1;
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        struct pollfd p[2] = {{fd, POLLOUT, 0}, {wake_fd, POLLIN, 0}};
        uint64_t now = now_ms();
        if (now >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        int n = poll(p, wake_fd >= 0 ? 2 : 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (wake_fd >= 0 && (p[1].revents & POLLIN)) {
            errno = ECANCELED;
            return -1;
        }
        if (p[0].revents) break;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) return -1;
    if (soerr) {
        errno = soerr;
        return -1;
    }
    set_nonblock(fd, 0);
    return 0;
}

static int dial_unix(const peer_url_t *u, unsigned timeout_ms, int wake_fd, char *err, size_t errlen) {
    struct sockaddr_un sa;
    if (unix_addr(u->path, &sa) != 0) {
        snprintf(err, errlen, "unix socket path too long");
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect_wait(fd, (struct sockaddr *)&sa, sizeof sa, timeout_ms, wake_fd) != 0) {
        snprintf(err, errlen, "dial unix://%s: %s", u->path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int dial_tcp(const peer_url_t *u, unsigned timeout_ms, int wake_fd, char *err, size_t errlen) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (connect_wait(fd, a->ai_addr, a->ai_addrlen, timeout_ms, wake_fd) == 0) break;
        snprintf(err, errlen, "dial tcp %s:%s: %s", u->host, u->port, strerror(errno));
        close(fd);
        fd = -1;
        if (errno == ECANCELED) break;
    }
    freeaddrinfo(res);
    if (fd >= 0) set_tcp_options(fd);
    return fd;
}

/* ---- TLS contexts ---- */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static void tls_global_init(void) { wolfSSL_Init(); }

static int load_identity(WOLFSSL_CTX *ctx, const peer_tls_t *t, char *err, size_t errlen) {
    if (wolfSSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot load peer certificate %s", t->cert_file);
        return -1;
    }
    if (wolfSSL_CTX_use_PrivateKey_file(ctx, t->key_file, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot load peer private key %s", t->key_file);
        return -1;
    }
    if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "peer private key %s does not match %s", t->key_file, t->cert_file);
        return -1;
    }
    return 0;
}

/* The listener: like etcd's ServerConfig, a trusted CA or client-cert-auth
 * means RequireAndVerifyClientCert; the CRL is checked on accepted peers. */
static int setup_server(WOLFSSL_CTX *ctx, const peer_tls_t *t, peer_tls_ctx_t *c, char *err, size_t errlen) {
    if (t->client_cert_auth && !t->trusted_ca_file) {
        snprintf(err, errlen, "peer-client-cert-auth needs a peer trusted CA file");
        return -1;
    }
    wolfSSL_CTX_NoTicketTLSv12(ctx); /* nothing but our frames after the handshake */
    wolfSSL_CTX_no_ticket_TLSv13(ctx);
    if (!t->trusted_ca_file) {
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
        return 0;
    }
    c->verify = 1;
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           t->crl_file ? tls_crl_verify_cb : NULL);
    if (t->crl_file) {
        char why[96];
        c->crl = tls_crl_load(t->crl_file, why, sizeof why);
        if (!c->crl) {
            snprintf(err, errlen, "cannot load peer CRL %s: %s", t->crl_file, why);
            return -1;
        }
        wolfSSL_CTX_SetCertCbCtx(ctx, c->crl);
    }
    return 0;
}

peer_tls_ctx_t *peer_tls_ctx_new(const peer_tls_t *t, int server, char *err, size_t errlen) {
    pthread_once(&tls_once, tls_global_init);
    if (t->allowed_cn && t->allowed_hostname) {
        snprintf(err, errlen,
                 "AllowedCN and AllowedHostname are mutually exclusive (cn=\"%s\", hostname=\"%s\")",
                 t->allowed_cn, t->allowed_hostname);
        return NULL;
    }
    if (server && (!t->cert_file || !t->key_file)) {
        snprintf(err, errlen, "https/unixs peer URLs need --peer-cert-file and --peer-key-file");
        return NULL;
    }
    peer_tls_ctx_t *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->server = server;
    c->ctx = wolfSSL_CTX_new(server ? wolfSSLv23_server_method() : wolfSSLv23_client_method());
    if (!c->ctx) goto fail;
    if (wolfSSL_CTX_SetMinVersion(c->ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) goto fail;
    if (t->cert_file && t->key_file && load_identity(c->ctx, t, err, errlen) != 0) goto fail;
    if (t->trusted_ca_file &&
        wolfSSL_CTX_load_verify_locations(c->ctx, t->trusted_ca_file, NULL) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot load peer trusted CA %s", t->trusted_ca_file);
        goto fail;
    }
    if (server) {
        if (setup_server(c->ctx, t, c, err, errlen) != 0) goto fail;
    } else {
        c->verify = t->trusted_ca_file != NULL;
        wolfSSL_CTX_set_verify(c->ctx, c->verify ? WOLFSSL_VERIFY_PEER : WOLFSSL_VERIFY_NONE, NULL);
    }
    if (t->allowed_cn && !(c->allowed_cn = strdup(t->allowed_cn))) goto fail;
    if (t->allowed_hostname && !(c->allowed_hostname = strdup(t->allowed_hostname))) goto fail;
    return c;
fail:
    if (err[0] == '\0') snprintf(err, errlen, "cannot set up the peer TLS context");
    peer_tls_ctx_free(c);
    return NULL;
}

void peer_tls_ctx_free(peer_tls_ctx_t *c) {
    if (!c) return;
    if (c->ctx) wolfSSL_CTX_free(c->ctx);
    tls_crl_unref(c->crl);
    free(c->allowed_cn);
    free(c->allowed_hostname);
    free(c);
}

void peer_tls_thread_cleanup(void) {
#ifdef FP_ECC
    wc_ecc_fp_free();
#endif
}

/* ---- certificate checks after the handshake ---- */

static int is_ip(const char *host) {
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

/* Go's x509 VerifyHostname: an IP against the IP SANs, a name against the DNS SANs. */
static int cert_matches_host(WOLFSSL_X509 *x, const char *host) {
    if (is_ip(host)) return wolfSSL_X509_check_ip_asc(x, host, 0) == WOLFSSL_SUCCESS;
    return wolfSSL_X509_check_host(x, host, strlen(host), 0, NULL) == WOLFSSL_SUCCESS;
}

static int cert_cn_is(WOLFSSL_X509 *x, const char *cn) {
    char buf[256];
    WOLFSSL_X509_NAME *name = wolfSSL_X509_get_subject_name(x);
    if (!name || wolfSSL_X509_NAME_get_text_by_NID(name, NID_commonName, buf, (int)sizeof buf) <= 0) return 0;
    return strcmp(buf, cn) == 0;
}

/* etcd 3.4 (pkg/transport baseConfig, both directions): with allowed-cn or
 * allowed-hostname set, the other side's *verified* certificate must have
 * that CN / match that hostname; the dialer also checks the server against
 * the URL's host when it verifies at all. */
static int check_peer_cert(WOLFSSL *ssl, const peer_tls_ctx_t *c, const char *dial_host, char *err,
                           size_t errlen) {
    if (!c->allowed_cn && !c->allowed_hostname && !(c->verify && dial_host)) return 0;
    WOLFSSL_X509 *x = c->verify ? wolfSSL_get_peer_certificate(ssl) : NULL;
    int ok = x != NULL;
    if (ok && c->allowed_cn) ok = cert_cn_is(x, c->allowed_cn);
    if (ok && c->allowed_hostname) ok = cert_matches_host(x, c->allowed_hostname);
    if (!ok) snprintf(err, errlen, "client certificate authentication failed");
    if (ok && dial_host && !cert_matches_host(x, dial_host)) {
        snprintf(err, errlen, "x509: certificate is not valid for %s", dial_host);
        ok = 0;
    }
    if (x) wolfSSL_X509_free(x);
    return ok ? 0 : -1;
}

/* ---- connections ---- */

static void set_timeout(int fd, int opt, unsigned ms) {
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv);
}

void peer_conn_set_timeouts(peer_conn_t *c, unsigned recv_ms, unsigned send_ms) {
    set_timeout(c->fd, SO_RCVTIMEO, recv_ms);
    set_timeout(c->fd, SO_SNDTIMEO, send_ms);
}

/* Go's names of the fatal alerts a TLS peer sends when it refuses us
 * (crypto/tls alert.go), for its "remote error: tls: ..." text. */
static const char *alert_name(int code) {
    switch (code) {
    case 40: return "handshake failure";
    case 42: return "bad certificate";
    case 43: return "unsupported certificate";
    case 44: return "revoked certificate";
    case 45: return "expired certificate";
    case 46: return "unknown certificate";
    case 48: return "unknown certificate authority";
    case 70: return "protocol version not supported";
    case 116: return "certificate required";
    default: return NULL;
    }
}

static void tls_error(WOLFSSL *ssl, int ret, const char *what, char *err, size_t errlen) {
    WOLFSSL_ALERT_HISTORY h;
    memset(&h, 0, sizeof h);
    const char *alert =
        wolfSSL_get_alert_history(ssl, &h) == WOLFSSL_SUCCESS && h.last_rx.level == alert_fatal
            ? alert_name(h.last_rx.code)
            : NULL;
    if (alert) {
        snprintf(err, errlen, "remote error: tls: %s", alert);
        return;
    }
    int e = wolfSSL_get_error(ssl, ret);
    char buf[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)e, buf, sizeof buf);
    snprintf(err, errlen, "TLS %s: %d: %s", what, e, buf);
}

static int start_tls(peer_conn_t *c, peer_tls_ctx_t *ctx, const char *dial_host, char *err, size_t errlen) {
    c->ssl = wolfSSL_new(ctx->ctx);
    if (!c->ssl || wolfSSL_set_fd(c->ssl, c->fd) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "TLS: wolfSSL_new failed");
        return -1;
    }
    wolfSSL_SetIOWriteFlags(c->ssl, MSG_NOSIGNAL);
    int ret = ctx->server ? wolfSSL_accept(c->ssl) : wolfSSL_connect(c->ssl);
    if (ret != WOLFSSL_SUCCESS) {
        tls_error(c->ssl, ret, "handshake", err, errlen);
        return -1;
    }
    return check_peer_cert(c->ssl, ctx, dial_host, err, errlen) == 0 ? 0 : -2;
}

static peer_conn_t *conn_new(int fd) {
    peer_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    return c;
}

peer_conn_t *peer_conn_dial(const peer_url_t *u, unsigned timeout_ms, int wake_fd, char *err, size_t errlen) {
    int fd = u->family == PEER_URL_UNIX ? dial_unix(u, timeout_ms, wake_fd, err, errlen)
                                        : dial_tcp(u, timeout_ms, wake_fd, err, errlen);
    if (fd < 0) return NULL;
    peer_conn_t *c = conn_new(fd);
    if (c) peer_conn_set_timeouts(c, timeout_ms, timeout_ms);
    return c;
}

int peer_conn_client_tls(peer_conn_t *c, const peer_url_t *u, peer_tls_ctx_t *ctx, char *err, size_t errlen) {
    if (!ctx) {
        snprintf(err, errlen, "no TLS context for a TLS peer URL");
        return PEER_ERR_IO;
    }
    int rc = start_tls(c, ctx, u->family == PEER_URL_TCP ? u->host : NULL, err, errlen);
    return rc == 0 ? PEER_OK : rc == -2 ? PEER_ERR_REFUSED : PEER_ERR_IO;
}

peer_conn_t *peer_conn_wrap(int fd, unsigned timeout_ms) {
    set_cloexec(fd);
    set_nonblock(fd, 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family != AF_UNIX) set_tcp_options(fd);
    peer_conn_t *c = conn_new(fd);
    if (c) peer_conn_set_timeouts(c, timeout_ms, timeout_ms);
    return c;
}

int peer_conn_server_tls(peer_conn_t *c, peer_tls_ctx_t *ctx, char *err, size_t errlen) {
    int rc = start_tls(c, ctx, NULL, err, errlen);
    return rc == 0 ? PEER_OK : rc == -2 ? PEER_ERR_REFUSED : PEER_ERR_IO;
}

int peer_conn_fd(const peer_conn_t *c) { return c->fd; }

void peer_conn_remote(const peer_conn_t *c, char *out, size_t cap) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    snprintf(out, cap, "unix");
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(a->sin6_port));
    }
}

int peer_conn_wait_readable(peer_conn_t *c, unsigned timeout_ms, int cancel_fd) {
    if (c->rpos < c->rlen || (c->ssl && wolfSSL_pending(c->ssl) > 0)) return PEER_OK;
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        struct pollfd p[2] = {{c->fd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
        uint64_t now = now_ms();
        if (now >= deadline) return PEER_ERR_TIMEOUT;
        int n = poll(p, cancel_fd >= 0 ? 2 : 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return PEER_ERR_IO;
        if (cancel_fd >= 0 && (p[1].revents & POLLIN)) return PEER_ERR_IO;
        if (p[0].revents) return PEER_OK;
    }
}

void peer_conn_shutdown(peer_conn_t *c) {
    if (c && c->fd >= 0) shutdown(c->fd, SHUT_RDWR);
}

void peer_conn_free(peer_conn_t *c) {
    if (!c) return;
    if (c->ssl) wolfSSL_free(c->ssl);
    if (c->fd >= 0) close(c->fd);
    free(c);
}

int peer_conn_write(peer_conn_t *c, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t w;
        if (c->ssl) {
            w = wolfSSL_write(c->ssl, b, (int)chunk);
            if (w <= 0) return PEER_ERR_IO;
        } else {
            w = send(c->fd, b, chunk, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return PEER_ERR_IO;
        }
        b += w;
        n -= (size_t)w;
    }
    return PEER_OK;
}

/* One read of at most n bytes: > 0, or PEER_ERR_IO (end, error, timeout). */
static ssize_t raw_read(peer_conn_t *c, void *p, size_t n) {
    for (;;) {
        size_t want = n > (1u << 30) ? (1u << 30) : n;
        ssize_t r = c->ssl ? wolfSSL_read(c->ssl, p, (int)want) : recv(c->fd, p, want, 0);
        if (r > 0) return r;
        if (!c->ssl && r < 0 && errno == EINTR) continue;
        return PEER_ERR_IO;
    }
}

int peer_conn_read(peer_conn_t *c, void *p, size_t n) {
    uint8_t *out = p;
    while (n > 0) {
        if (c->rpos < c->rlen) {
            size_t k = c->rlen - c->rpos < n ? c->rlen - c->rpos : n;
            memcpy(out, c->rbuf + c->rpos, k);
            c->rpos += k;
            out += k;
            n -= k;
            continue;
        }
        if (n >= sizeof c->rbuf) { /* large reads go straight to the caller */
            ssize_t r = raw_read(c, out, n);
            if (r < 0) return PEER_ERR_IO;
            out += r;
            n -= (size_t)r;
            continue;
        }
        ssize_t r = raw_read(c, c->rbuf, sizeof c->rbuf);
        if (r < 0) return PEER_ERR_IO;
        c->rpos = 0;
        c->rlen = (size_t)r;
    }
    return PEER_OK;
}

/* Grows the payload buffer only as bytes arrive: a hostile length costs at
 * most twice what was actually sent (plus 64 KiB). */
static int read_payload(peer_conn_t *c, uint8_t **buf, size_t *cap, size_t need) {
    size_t got = 0;
    while (got < need) {
        if (got == *cap) {
            size_t ncap = *cap ? *cap * 2 : 65536;
            if (ncap > need) ncap = need;
            uint8_t *nb = realloc(*buf, ncap);
            if (!nb) return PEER_ERR_NOMEM;
            *buf = nb;
            *cap = ncap;
        }
        size_t want = (need < *cap ? need : *cap) - got;
        if (peer_conn_read(c, *buf + got, want) != PEER_OK) return PEER_ERR_IO;
        got += want;
    }
    return PEER_OK;
}

int peer_conn_read_frame(peer_conn_t *c, size_t max, uint8_t *kind, uint8_t **buf, size_t *cap, size_t *len) {
    uint8_t hdr[PEER_FRAME_HEADER];
    size_t n;
    if (peer_conn_read(c, hdr, sizeof hdr) != PEER_OK) return PEER_ERR_IO;
    if (peer_frame_parse_header(hdr, kind, &n) != PEER_OK || n > max) return PEER_ERR_INVALID;
    int rc = read_payload(c, buf, cap, n);
    if (rc != PEER_OK) return rc;
    if (peer_frame_check(hdr, *buf, n) != PEER_OK) return PEER_ERR_INVALID;
    *len = n;
    return PEER_OK;
}

int peer_conn_write_frame(peer_conn_t *c, uint8_t kind, const uint8_t *p, size_t n) {
    uint8_t hdr[PEER_FRAME_HEADER];
    peer_frame_header(hdr, kind, p, n);
    if (peer_conn_write(c, hdr, sizeof hdr) != PEER_OK) return PEER_ERR_IO;
    return n ? peer_conn_write(c, p, n) : PEER_OK;
}
