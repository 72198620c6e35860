/*
 * tls_crl.c: the revoked serial numbers of a CRL (tls_crl.h), and the
 * verify callback that refuses them.
 *
 * Owns: tls_crl_t (a sorted array of serials, reference counted) and the
 * small DER reader it is parsed with. wolfSSL parses CRLs too, but only
 * into its own CRL engine, which we cannot use (see tls_crl.h), and it has
 * no API listing the revoked entries (X509_CRL_get_REVOKED is a stub in
 * Debian 12's 5.5.4). The reader walks only the structure RFC 5280 gives:
 *
 *   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signature }
 *   TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgId,
 *       issuer Name, thisUpdate Time, nextUpdate Time OPTIONAL,
 *       revokedCertificates SEQUENCE OF SEQUENCE {
 *           userCertificate INTEGER, revocationDate Time,
 *           crlEntryExtensions Extensions OPTIONAL } OPTIONAL,
 *       crlExtensions [0] EXPLICIT Extensions OPTIONAL }
 *
 * Every length is checked against its enclosing element; anything else is
 * refused as malformed (tests/test_tls_crl.c, tests/fuzz/fuzz_tls_crl.c).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/coding.h>

#include "tls_crl.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DER_INTEGER 0x02
#define DER_SEQUENCE 0x30
#define DER_UTCTIME 0x17
#define DER_GENTIME 0x18
#define MAX_SERIAL 64 /* RFC 5280 allows 20 octets; be lenient as Go is */
#define MAX_CRL_FILE (64u << 20)

typedef struct {
    uint8_t len;
    uint8_t b[MAX_SERIAL];
} serial_t;

struct tls_crl {
    atomic_int refs;
    size_t n;
    serial_t *serials; /* sorted by (len, bytes) */
};

/* One DER element: tag, and its content [p, p+len). */
typedef struct {
    uint8_t tag;
    const uint8_t *p;
    size_t len;
} der_t;

/* Reads the element at *pos in [*pos, end); advances *pos past it. */
static int der_next(const uint8_t **pos, const uint8_t *end, der_t *out) {
    const uint8_t *p = *pos;
    if (end - p < 2) return -1;
    out->tag = *p++;
    if ((out->tag & 0x1f) == 0x1f) return -1; /* high tag numbers: not in a CRL */
    size_t len = *p++;
    if (len & 0x80) {
        size_t nbytes = len & 0x7f;
        if (nbytes == 0 || nbytes > 4 || (size_t)(end - p) < nbytes) return -1;
        len = 0;
        for (size_t i = 0; i < nbytes; i++) len = (len << 8) | *p++;
    }
    if (len > (size_t)(end - p)) return -1;
    out->p = p;
    out->len = len;
    *pos = p + len;
    return 0;
}

static int is_time(uint8_t tag) { return tag == DER_UTCTIME || tag == DER_GENTIME; }

static int serial_cmp(const void *a, const void *b) {
    const serial_t *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return memcmp(x->b, y->b, x->len);
}

/* big.Int.Bytes(): the magnitude without leading zero octets. */
static int serial_set(serial_t *s, const uint8_t *p, size_t len) {
    while (len > 0 && *p == 0) {
        p++;
        len--;
    }
    if (len > MAX_SERIAL) return -1;
    s->len = (uint8_t)len;
    memcpy(s->b, p, len);
    return 0;
}

/* revokedCertificates: every entry's serial into crl->serials. */
static int parse_revoked(tls_crl_t *crl, const der_t *seq, char *err, size_t errlen) {
    size_t cap = 0;
    const uint8_t *p = seq->p, *end = seq->p + seq->len;
    while (p < end) {
        der_t entry, serial, when;
        if (der_next(&p, end, &entry) != 0 || entry.tag != DER_SEQUENCE) goto bad;
        const uint8_t *q = entry.p, *qend = entry.p + entry.len;
        if (der_next(&q, qend, &serial) != 0 || serial.tag != DER_INTEGER || serial.len == 0) goto bad;
        if (der_next(&q, qend, &when) != 0 || !is_time(when.tag)) goto bad;
        if (crl->n == cap) {
            cap = cap ? cap * 2 : 16;
            serial_t *grown = realloc(crl->serials, cap * sizeof *grown);
            if (!grown) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            crl->serials = grown;
        }
        if (serial_set(&crl->serials[crl->n], serial.p, serial.len) != 0) goto bad;
        crl->n++;
    }
    return 0;
bad:
    snprintf(err, errlen, "malformed revoked certificate entry");
    return -1;
}

/* TBSCertList, up to and including revokedCertificates. */
static int parse_tbs(tls_crl_t *crl, const der_t *tbs, char *err, size_t errlen) {
    const uint8_t *p = tbs->p, *end = tbs->p + tbs->len;
    der_t e;
    if (der_next(&p, end, &e) != 0) goto bad;
    if (e.tag == DER_INTEGER && der_next(&p, end, &e) != 0) goto bad; /* version */
    if (e.tag != DER_SEQUENCE) goto bad;                                /* signature */
    if (der_next(&p, end, &e) != 0 || e.tag != DER_SEQUENCE) goto bad;  /* issuer */
    if (der_next(&p, end, &e) != 0 || !is_time(e.tag)) goto bad;        /* thisUpdate */
    if (p == end) return 0;
    if (der_next(&p, end, &e) != 0) goto bad;
    if (is_time(e.tag)) { /* nextUpdate */
        if (p == end) return 0;
        if (der_next(&p, end, &e) != 0) goto bad;
    }
    if (e.tag == DER_SEQUENCE) return parse_revoked(crl, &e, err, errlen);
    if (e.tag == 0xa0) return 0; /* crlExtensions only */
bad:
    snprintf(err, errlen, "malformed CRL");
    return -1;
}

static tls_crl_t *parse_der(const uint8_t *buf, size_t len, char *err, size_t errlen) {
    const uint8_t *p = buf, *end = buf + len;
    der_t list, tbs;
    if (der_next(&p, end, &list) != 0 || list.tag != DER_SEQUENCE) {
        snprintf(err, errlen, "not a DER CRL");
        return NULL;
    }
    const uint8_t *q = list.p;
    if (der_next(&q, list.p + list.len, &tbs) != 0 || tbs.tag != DER_SEQUENCE) {
        snprintf(err, errlen, "malformed CRL");
        return NULL;
    }
    tls_crl_t *crl = calloc(1, sizeof *crl);
    if (!crl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&crl->refs, 1);
    if (parse_tbs(crl, &tbs, err, errlen) != 0) {
        tls_crl_unref(crl);
        return NULL;
    }
    if (crl->n > 1) qsort(crl->serials, crl->n, sizeof *crl->serials, serial_cmp);
    return crl;
}

/* The base64 body of the first "-----BEGIN X509 CRL-----" block, decoded
 * into a new buffer (*out, *outlen). */
static int pem_decode(const uint8_t *buf, size_t len, uint8_t **out, word32 *outlen) {
    static const char begin[] = "-----BEGIN X509 CRL-----", endm[] = "-----END X509 CRL-----";
    const uint8_t *b = memmem(buf, len, begin, sizeof begin - 1);
    if (!b) return -1;
    b += sizeof begin - 1;
    const uint8_t *e = memmem(b, len - (size_t)(b - buf), endm, sizeof endm - 1);
    if (!e) return -1;
    /* Base64_Decode skips line breaks but not other blanks: keep the
     * alphabet, '=' and newlines only. */
    size_t n = (size_t)(e - b);
    uint8_t *text = malloc(n + 1), *der = malloc(n + 1);
    if (!text || !der) goto fail;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (b[i] != ' ' && b[i] != '\t' && b[i] != '\r' && b[i] != '\n') text[m++] = b[i];
    word32 dlen = (word32)(n + 1);
    if (m == 0 || Base64_Decode(text, (word32)m, der, &dlen) != 0) goto fail;
    free(text);
    *out = der;
    *outlen = dlen;
    return 0;
fail:
    free(text);
    free(der);
    return -1;
}

tls_crl_t *tls_crl_parse(const uint8_t *buf, size_t len, char *err, size_t errlen) {
    static const char pem[] = "-----BEGIN X509 CRL";
    if (len >= sizeof pem - 1 && memcmp(buf, pem, sizeof pem - 1) == 0) {
        uint8_t *der = NULL;
        word32 dlen = 0;
        if (pem_decode(buf, len, &der, &dlen) != 0) {
            snprintf(err, errlen, "malformed PEM CRL");
            return NULL;
        }
        tls_crl_t *crl = parse_der(der, dlen, err, errlen);
        free(der);
        return crl;
    }
    return parse_der(buf, len, err, errlen);
}

tls_crl_t *tls_crl_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return NULL;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap || cap >= MAX_CRL_FILE) break;
        uint8_t *grown = realloc(buf, cap * 2);
        if (!grown) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    int failed = !buf || ferror(f) || len == cap;
    fclose(f);
    if (failed) {
        free(buf);
        snprintf(err, errlen, "cannot read %s", path);
        return NULL;
    }
    tls_crl_t *crl = tls_crl_parse(buf, len, err, errlen);
    free(buf);
    return crl;
}

int tls_crl_is_revoked(const tls_crl_t *crl, const uint8_t *serial, size_t len) {
    serial_t key;
    if (!crl || crl->n == 0 || serial_set(&key, serial, len) != 0) return 0;
    return bsearch(&key, crl->serials, crl->n, sizeof key, serial_cmp) != NULL;
}

size_t tls_crl_count(const tls_crl_t *crl) { return crl ? crl->n : 0; }

tls_crl_t *tls_crl_ref(tls_crl_t *crl) {
    if (crl) atomic_fetch_add(&crl->refs, 1);
    return crl;
}

void tls_crl_unref(tls_crl_t *crl) {
    if (!crl || atomic_fetch_sub(&crl->refs, 1) != 1) return;
    free(crl->serials);
    free(crl);
}

int tls_crl_verify_cb(int preverify, struct WOLFSSL_X509_STORE_CTX *store) {
    if (!preverify) return 0; /* the chain itself failed: no opinion */
    const tls_crl_t *crl = store->userCtx;
    WOLFSSL_X509 *cert = wolfSSL_X509_STORE_CTX_get_current_cert(store);
    if (!crl || !cert) return 1;
    unsigned char serial[MAX_SERIAL + 1];
    int len = (int)sizeof serial;
    if (wolfSSL_X509_get_serial_number(cert, serial, &len) != WOLFSSL_SUCCESS) return 0;
    return !tls_crl_is_revoked(crl, serial, (size_t)len);
}
