/*
 * tls_crl.h: a certificate revocation list as etcd uses one
 * (--client-crl-file, --peer-crl-file): the set of revoked serial numbers.
 *
 * etcd (pkg/transport/listener_tls.go checkCRL) parses the CRL with
 * x509.ParseCRL and refuses a connection when any certificate the peer
 * presents has a serial number in it. It does not look at the CRL's
 * signature, issuer or dates. wolfSSL's own CRL engine also refuses every
 * certificate once the CRL's nextUpdate has passed (etcd's own test
 * fixtures have such a CRL), so kshim checks serials itself, with this
 * module, from wolfSSL's verify callback.
 *
 * Owns: the parsed list (tls_crl_t), shared by reference between a TLS
 * context and the connections made from it.
 */
#ifndef KSHIM_TLS_CRL_H
#define KSHIM_TLS_CRL_H

#include <stddef.h>
#include <stdint.h>

typedef struct tls_crl tls_crl_t;

/* Parses a DER CRL, or a PEM one (text starting with "-----BEGIN X509 CRL",
 * as x509.ParseCRL accepts). Returns a list with one reference, or NULL on a
 * malformed input (err says why). */
tls_crl_t *tls_crl_parse(const uint8_t *buf, size_t len, char *err, size_t errlen);
/* Reads and parses the file at path. */
tls_crl_t *tls_crl_load(const char *path, char *err, size_t errlen);

/* 1 if serial (big-endian, leading zero bytes ignored) is revoked. */
int tls_crl_is_revoked(const tls_crl_t *crl, const uint8_t *serial, size_t len);
size_t tls_crl_count(const tls_crl_t *crl);

tls_crl_t *tls_crl_ref(tls_crl_t *crl);
void tls_crl_unref(tls_crl_t *crl);

/* A wolfSSL verify callback (wolfSSL_CTX_set_verify) refusing any
 * certificate of the chain whose serial the CRL lists; the CRL is the
 * callback context (wolfSSL_SetCertCbCtx / wolfSSL_CTX_SetCertCbCtx). wolfSSL
 * calls it for every certificate (WOLFSSL_ALWAYS_VERIFY_CB). The store is a
 * WOLFSSL_X509_STORE_CTX. */
struct WOLFSSL_X509_STORE_CTX;
int tls_crl_verify_cb(int preverify, struct WOLFSSL_X509_STORE_CTX *store);

#endif
