/*
 * tls.c: wolfSSL server contexts and non-blocking TLS connections (tls.h).
 *
 * Owns: the WOLFSSL_CTX of each TLS listener (swappable for certificate
 * reloads) with the client CRL read with it (tls/tls_crl.h: checked from
 * the verify callback, as etcd checks serials), and one WOLFSSL object per
 * TLS connection, holding a reference to the CRL it was made with. The
 * socket fd itself belongs to the connection (h2_conn.c).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfio.h>

#include "tls.h"
#include "tls_crl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct tls_server {
    WOLFSSL_CTX *ctx; /* current context; connections hold refs */
    tls_crl_t *crl;   /* the --client-crl-file read with ctx, or NULL */
    char *cert_file, *key_file, *ca_file, *crl_file;
    int client_cert_auth;
};

struct tls_conn {
    WOLFSSL *ssl;
    WOLFSSL_CTX *ctx; /* our reference */
    tls_crl_t *crl;   /* our reference to the CRL ssl checks, or NULL */
    int handshake_done;
    char peer_cn[256];
    int have_cn;
    char err[128];
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static void tls_global_init(void) { wolfSSL_Init(); }

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* A new context from ts's files; with a CRL file, *crl gets the list read
 * with it (the verify callback's context). */
static WOLFSSL_CTX *build_ctx(const tls_server_t *ts, tls_crl_t **crl, char *err, size_t errlen) {
    *crl = NULL;
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (!ctx) {
        snprintf(err, errlen, "wolfSSL_CTX_new failed");
        return NULL;
    }
    if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot restrict TLS to >= 1.2");
        goto fail;
    }
    if (wolfSSL_CTX_use_certificate_chain_file(ctx, ts->cert_file) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot load certificate %s", ts->cert_file);
        goto fail;
    }
    if (wolfSSL_CTX_use_PrivateKey_file(ctx, ts->key_file, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot load private key %s", ts->key_file);
        goto fail;
    }
    if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "private key %s does not match %s", ts->key_file, ts->cert_file);
        goto fail;
    }
    if (ts->ca_file && wolfSSL_CTX_load_verify_locations(ctx, ts->ca_file, NULL) != WOLFSSL_SUCCESS) {
        snprintf(err, errlen, "cannot load trusted CA %s", ts->ca_file);
        goto fail;
    }
    /* Like etcd: a client certificate is requested only with client-cert-auth. */
    if (ts->client_cert_auth) {
        if (!ts->ca_file) {
            snprintf(err, errlen, "client-cert-auth needs a trusted CA file");
            goto fail;
        }
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                               ts->crl_file ? tls_crl_verify_cb : NULL);
        if (ts->crl_file) {
            char why[96];
            *crl = tls_crl_load(ts->crl_file, why, sizeof why);
            if (!*crl) {
                snprintf(err, errlen, "cannot load client CRL %s: %s", ts->crl_file, why);
                goto fail;
            }
            wolfSSL_CTX_SetCertCbCtx(ctx, *crl);
        }
    } else {
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    }
    return ctx;
fail:
    wolfSSL_CTX_free(ctx);
    tls_crl_unref(*crl);
    *crl = NULL;
    return NULL;
}

tls_server_t *tls_server_new(const grpc_tls_config_t *cfg, char *err, size_t errlen) {
    pthread_once(&tls_once, tls_global_init);
    if (!cfg || !cfg->cert_file || !cfg->key_file) {
        snprintf(err, errlen, "TLS needs a certificate and a key file");
        return NULL;
    }
    tls_server_t *ts = calloc(1, sizeof(*ts));
    if (!ts) return NULL;
    ts->cert_file = dup_or_null(cfg->cert_file);
    ts->key_file = dup_or_null(cfg->key_file);
    ts->ca_file = dup_or_null(cfg->trusted_ca_file);
    ts->client_cert_auth = cfg->client_cert_auth;
    ts->crl_file = dup_or_null(cfg->crl_file);
    ts->ctx = build_ctx(ts, &ts->crl, err, errlen);
    if (!ts->ctx) {
        tls_server_free(ts);
        return NULL;
    }
    return ts;
}

int tls_server_reload(tls_server_t *ts, char *err, size_t errlen) {
    tls_crl_t *crl;
    WOLFSSL_CTX *ctx = build_ctx(ts, &crl, err, errlen);
    if (!ctx) return -1;
    wolfSSL_CTX_free(ts->ctx); /* drops our ref; live connections keep theirs */
    tls_crl_unref(ts->crl);
    ts->ctx = ctx;
    ts->crl = crl;
    return 0;
}

void tls_server_free(tls_server_t *ts) {
    if (!ts) return;
    if (ts->ctx) wolfSSL_CTX_free(ts->ctx);
    tls_crl_unref(ts->crl);
    free(ts->cert_file);
    free(ts->key_file);
    free(ts->ca_file);
    free(ts->crl_file);
    free(ts);
}

tls_conn_t *tls_conn_new(tls_server_t *ts, int fd) {
    tls_conn_t *tc = calloc(1, sizeof(*tc));
    if (!tc) return NULL;
    if (wolfSSL_CTX_up_ref(ts->ctx) != WOLFSSL_SUCCESS) {
        free(tc);
        return NULL;
    }
    tc->ctx = ts->ctx;
    tc->crl = tls_crl_ref(ts->crl);
    tc->ssl = wolfSSL_new(tc->ctx); /* takes ctx's callback context: tc->crl */
    if (!tc->ssl) goto fail;
    if (wolfSSL_set_fd(tc->ssl, fd) != WOLFSSL_SUCCESS) goto fail;
    wolfSSL_set_using_nonblock(tc->ssl, 1);
    wolfSSL_SetIOWriteFlags(tc->ssl, MSG_NOSIGNAL); /* a vanished peer is EPIPE, not SIGPIPE */
    /* h2 first: a client offering both gets h2 (grpc-go offers h2 only). */
    char protos[] = "h2,http/1.1";
    if (wolfSSL_UseALPN(tc->ssl, protos, sizeof protos - 1, WOLFSSL_ALPN_FAILED_ON_MISMATCH) !=
        WOLFSSL_SUCCESS)
        goto fail;
    return tc;
fail:
    tls_conn_free(tc);
    return NULL;
}

void tls_conn_free(tls_conn_t *tc) {
    if (!tc) return;
    if (tc->ssl) wolfSSL_free(tc->ssl);
    if (tc->ctx) wolfSSL_CTX_free(tc->ctx);
    tls_crl_unref(tc->crl);
    free(tc);
}

/* Map a wolfSSL return value to TLS_WANT_* / TLS_ERROR. */
static int map_error(tls_conn_t *tc, int ret) {
    int e = wolfSSL_get_error(tc->ssl, ret);
    if (e == WOLFSSL_ERROR_WANT_READ) return TLS_WANT_READ;
    if (e == WOLFSSL_ERROR_WANT_WRITE) return TLS_WANT_WRITE;
    if (e == WOLFSSL_ERROR_ZERO_RETURN) return 0;
    char buf[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)e, buf, sizeof(buf));
    snprintf(tc->err, sizeof(tc->err), "%d: %s", e, buf);
    return TLS_ERROR;
}

static void capture_peer_cn(tls_conn_t *tc) {
    WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(tc->ssl);
    if (!x) return;
    /* A verified certificate without a CN is the identity "" (etcd takes
     * Subject.CommonName as it is). */
    tc->have_cn = 1;
    tc->peer_cn[0] = '\0';
    WOLFSSL_X509_NAME *name = wolfSSL_X509_get_subject_name(x);
    if (name &&
        wolfSSL_X509_NAME_get_text_by_NID(name, NID_commonName, tc->peer_cn, (int)sizeof(tc->peer_cn)) <= 0)
        tc->peer_cn[0] = '\0';
    wolfSSL_X509_free(x);
}

int tls_conn_handshake(tls_conn_t *tc) {
    if (tc->handshake_done) return 1;
    int ret = wolfSSL_accept(tc->ssl);
    if (ret != WOLFSSL_SUCCESS) {
        int m = map_error(tc, ret);
        return m == 0 ? TLS_ERROR : m;
    }
    tc->handshake_done = 1;
    if (wolfSSL_get_verify_mode(tc->ssl) & WOLFSSL_VERIFY_PEER) capture_peer_cn(tc);
    return 1;
}

ssize_t tls_conn_read(tls_conn_t *tc, void *buf, size_t len) {
    int n = wolfSSL_read(tc->ssl, buf, len > 0x7fffffff ? 0x7fffffff : (int)len);
    if (n > 0) return n;
    return map_error(tc, n);
}

ssize_t tls_conn_write(tls_conn_t *tc, const void *buf, size_t len) {
    int n = wolfSSL_write(tc->ssl, buf, len > 0x7fffffff ? 0x7fffffff : (int)len);
    if (n > 0) return n;
    int m = map_error(tc, n);
    return m == 0 ? TLS_ERROR : m;
}

int tls_conn_pending(tls_conn_t *tc) { return wolfSSL_pending(tc->ssl); }

const char *tls_conn_peer_cn(tls_conn_t *tc) { return tc->have_cn ? tc->peer_cn : NULL; }

const char *tls_conn_error(tls_conn_t *tc) { return tc->err; }

void tls_thread_cleanup(void) {
#ifdef FP_ECC
    wc_ecc_fp_free(); /* the per-thread ECC fixed-point cache */
#endif
}

const char *tls_conn_alpn(tls_conn_t *tc) {
    char *proto = NULL;
    unsigned short len = 0;
    if (wolfSSL_ALPN_GetProtocol(tc->ssl, &proto, &len) != WOLFSSL_SUCCESS || !proto) return NULL;
    if (len == 2 && memcmp(proto, "h2", 2) == 0) return "h2";
    if (len == 8 && memcmp(proto, "http/1.1", 8) == 0) return "http/1.1";
    return NULL;
}
