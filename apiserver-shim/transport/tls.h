/*
 * tls.h: server-side TLS for the gRPC listeners, on wolfSSL.
 *
 * A tls_server holds the current WOLFSSL_CTX built from a grpc_tls_config
 * (cert, key, optional CA and client-cert-auth, optional client CRL: with
 * client-cert-auth a client whose certificate chain has a certificate the CRL
 * revokes fails the handshake). tls_server_reload() builds a
 * fresh context and swaps it in: new connections use it, live connections
 * keep theirs (each connection holds a reference on its context).
 *
 * A tls_conn wraps one non-blocking socket: the handshake and every read and
 * write return TLS_WANT_READ / TLS_WANT_WRITE instead of blocking, so the
 * event loop drives them. TLS 1.2 and 1.3 only; ALPN "h2" is selected, else
 * "http/1.1" (the client port serves HTTP/1.1 too); a client offering
 * neither fails the handshake, a client sending no ALPN is accepted.
 */
#ifndef KSHIM_TLS_H
#define KSHIM_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "grpc.h"

enum { TLS_WANT_READ = -2, TLS_WANT_WRITE = -3, TLS_ERROR = -4 };

typedef struct tls_server tls_server_t;
typedef struct tls_conn tls_conn_t;

tls_server_t *tls_server_new(const grpc_tls_config_t *cfg, char *err, size_t errlen);
/* Re-read the files of the original config; on failure the old context stays. */
int tls_server_reload(tls_server_t *ts, char *err, size_t errlen);
void tls_server_free(tls_server_t *ts);

/* Wrap an accepted non-blocking fd (not owned: the caller closes it). */
tls_conn_t *tls_conn_new(tls_server_t *ts, int fd);
void tls_conn_free(tls_conn_t *tc);

/* 1 when the handshake is complete, or TLS_WANT_READ/WANT_WRITE/ERROR. */
int tls_conn_handshake(tls_conn_t *tc);
/* >0 bytes, 0 on a clean close, or TLS_WANT_READ/WANT_WRITE/ERROR. */
ssize_t tls_conn_read(tls_conn_t *tc, void *buf, size_t len);
/* >0 bytes written, or TLS_WANT_READ/WANT_WRITE/ERROR. After WANT_*, retry
 * with the same buffer and length. */
ssize_t tls_conn_write(tls_conn_t *tc, const void *buf, size_t len);
/* Decrypted bytes buffered inside wolfSSL (readable without socket input). */
int tls_conn_pending(tls_conn_t *tc);
/* CN of the verified client certificate (only with client_cert_auth; "" if
 * it has no CN), or NULL. */
const char *tls_conn_peer_cn(tls_conn_t *tc);
/* Free wolfSSL's per-thread caches (FP_ECC); call on a thread that did TLS
 * before it exits. */
void tls_thread_cleanup(void);
/* The ALPN protocol agreed on: "h2", "http/1.1", or NULL (none). */
const char *tls_conn_alpn(tls_conn_t *tc);
/* Last error text, for logs. */
const char *tls_conn_error(tls_conn_t *tc);

#endif
