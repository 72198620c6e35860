/*
 * autotls.c: etcd's --auto-tls, a self-signed certificate and its ECDSA key
 * made with wolfSSL's certificate API (see autotls.h for what the
 * certificate holds and why).
 *
 * Owns: creating the fixtures directory, generating the key and certificate,
 * encoding the SubjectAltName extension (wolfSSL takes it as raw DER), and
 * writing both PEM files through a temporary file and rename(): any old
 * cert.pem is removed first, then the key is written, then the certificate,
 * so a crash never leaves a certificate next to a key that is not its own
 * (a lone key is replaced on the next start).
 */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "autotls.h"

enum {
    DER_MAX = 4096 + CTC_MAX_ALT_SIZE, /* certificate DER */
    PEM_MAX = 2 * DER_MAX,             /* base64 + headers + newlines */
    KEY_DER_MAX = 256,                 /* SEC1 P-256 key is ~121 bytes */
    KEY_PEM_MAX = 1024,
    SERIAL_BYTES = 16, /* 128 bits, as etcd */
};

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- URL host ---- */

int autotls_url_host(const char *url, char *out, size_t outlen) {
    const char *p = strstr(url, "://");
    const char *auth = p ? p + 3 : url;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', (size_t)(end - auth));
    if (at) auth = at + 1;

    const char *host = auth, *host_end;
    if (*auth == '[') {
        host = auth + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end) return -1;
        if (host_end + 1 != end && host_end[1] != ':') return -1;
    } else {
        host_end = memchr(auth, ':', (size_t)(end - auth));
        if (!host_end) host_end = end;
    }
    size_t n = (size_t)(host_end - host);
    if (n == 0 || n + 1 > outlen) return -1;
    memcpy(out, host, n);
    out[n] = '\0';
    return 0;
}

/* ---- SubjectAltName DER ---- */

/* Appends tag, DER length and value at buf[*len]; -1 if cap is exceeded. */
static int der_put(unsigned char *buf, size_t cap, size_t *len, unsigned char tag, const void *val,
                   size_t vlen) {
    unsigned char hdr[4];
    size_t hlen = 0;
    hdr[hlen++] = tag;
    if (vlen < 0x80) {
        hdr[hlen++] = (unsigned char)vlen;
    } else if (vlen <= 0xff) {
        hdr[hlen++] = 0x81;
        hdr[hlen++] = (unsigned char)vlen;
    } else if (vlen <= 0xffff) {
        hdr[hlen++] = 0x82;
        hdr[hlen++] = (unsigned char)(vlen >> 8);
        hdr[hlen++] = (unsigned char)vlen;
    } else {
        return -1;
    }
    if (*len + hlen + vlen > cap) return -1;
    memcpy(buf + *len, hdr, hlen);
    if (vlen) memmove(buf + *len + hlen, val, vlen);
    *len += hlen + vlen;
    return 0;
}

/* Strips brackets and a port from host ("[::1]:2379" -> "::1",
 * "node:2379" -> "node"; a bare IPv6 literal has several colons and is kept
 * whole) into out; 0 if it is an IP literal (ip/iplen filled), 1 if it is a
 * DNS name (printable ASCII, as IA5String requires), -1 if it is neither. */
static int classify_host(const char *host, char *out, size_t outlen, unsigned char ip[16], size_t *iplen) {
    const char *colon = strchr(host, ':');
    int bare_v6 = host[0] != '[' && colon && strchr(colon + 1, ':');
    if (bare_v6) {
        if (strlen(host) + 1 > outlen) return -1;
        strcpy(out, host);
    } else if (autotls_url_host(host, out, outlen) != 0) {
        return -1;
    }
    if (inet_pton(AF_INET, out, ip) == 1) {
        *iplen = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, out, ip) == 1) {
        *iplen = 16;
        return 0;
    }
    if (host[0] == '[' || bare_v6) return -1; /* brackets or colons, yet not an IPv6 address */
    for (const char *c = out; *c; c++)
        if (*c <= ' ' || *c > '~') return -1;
    return 1;
}

/* Builds GeneralNames (SEQUENCE of dNSName [2] then iPAddress [7]) into
 * san; *san_len is 0 if there are no hosts. */
static int build_san(const char *const *hosts, size_t n_hosts, unsigned char *san, size_t cap,
                     size_t *san_len, char *err, size_t errlen) {
    unsigned char *body = malloc(cap);
    if (!body) return fail(err, errlen, "auto-tls: out of memory");
    size_t len = 0;
    char name[256];
    unsigned char ip[16];
    size_t iplen;
    for (int want_ip = 0; want_ip <= 1; want_ip++) {
        for (size_t i = 0; i < n_hosts; i++) {
            if (!hosts[i] || !hosts[i][0]) continue;
            int kind = classify_host(hosts[i], name, sizeof name, ip, &iplen);
            int rc = 0;
            if (kind < 0) {
                free(body);
                return fail(err, errlen, "auto-tls: bad host \"%s\"", hosts[i]);
            }
            if (want_ip && kind == 0)
                rc = der_put(body, cap, &len, 0x87, ip, iplen);
            else if (!want_ip && kind == 1)
                rc = der_put(body, cap, &len, 0x82, name, strlen(name));
            if (rc != 0) {
                free(body);
                return fail(err, errlen, "auto-tls: too many hosts for the certificate");
            }
        }
    }
    *san_len = 0;
    int rc = 0;
    if (len > 0) rc = der_put(san, cap, san_len, 0x30, body, len);
    free(body);
    if (rc != 0) return fail(err, errlen, "auto-tls: too many hosts for the certificate");
    return 0;
}

/* ---- validity ---- */

/* Encodes t as DER UTCTime (years 1950..2049) or GeneralizedTime, with tag
 * and length, as Go's x509 does; returns the size or -1. */
static int der_time(time_t t, unsigned char *out, size_t cap) {
    struct tm tm;
    char s[32];
    if (!gmtime_r(&t, &tm)) return -1;
    int year = tm.tm_year + 1900;
    unsigned char tag;
    int n;
    if (year >= 1950 && year < 2050) {
        tag = 0x17;
        n = snprintf(s, sizeof s, "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    } else if (year <= 9999) {
        tag = 0x18;
        n = snprintf(s, sizeof s, "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
    } else {
        return -1;
    }
    if (n <= 0 || (size_t)n + 2 > cap) return -1;
    out[0] = tag;
    out[1] = (unsigned char)n;
    memcpy(out + 2, s, (size_t)n);
    return n + 2;
}

/* ---- files ---- */

/* mkdir -p with mode 0700 for the directories it creates. */
static int make_dirs(const char *dir, char *err, size_t errlen) {
    char path[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) return fail(err, errlen, "auto-tls: bad directory \"%s\"", dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return fail(err, errlen, "auto-tls: cannot create %s: %s", path, strerror(errno));
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0) return fail(err, errlen, "auto-tls: cannot create %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return fail(err, errlen, "auto-tls: %s is not a directory", dir);
    return 0;
}

static int write_all(int fd, const unsigned char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes buf to path.tmp with mode, fsyncs it and renames it over path. */
static int write_file_atomic(const char *path, const unsigned char *buf, size_t len, mode_t mode, char *err,
                             size_t errlen) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return fail(err, errlen, "auto-tls: path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return fail(err, errlen, "auto-tls: cannot create %s: %s", tmp, strerror(errno));
    int ok = fchmod(fd, mode) == 0 && write_all(fd, buf, len) == 0 && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok || rename(tmp, path) != 0) {
        if (ok) saved = errno;
        unlink(tmp);
        return fail(err, errlen, "auto-tls: cannot write %s: %s", path, strerror(saved));
    }
    return 0;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* ---- generation ---- */

/* A freshly generated pair, PEM encoded. */
typedef struct {
    unsigned char key_pem[KEY_PEM_MAX];
    int key_pem_len;
    unsigned char cert_pem[PEM_MAX];
    int cert_pem_len;
} pem_pair_t;

static int fill_cert_fields(Cert *cert, const char *const *hosts, size_t n_hosts, unsigned days, WC_RNG *rng,
                            char *err, size_t errlen) {
    if (wc_InitCert(cert) != 0) return fail(err, errlen, "auto-tls: wc_InitCert failed");
    cert->sigType = CTC_SHA256wECDSA;
    cert->selfSigned = 1;
    cert->isCA = 0;
    cert->basicConstSet = 1;
    cert->daysValid = (int)days;
    snprintf(cert->subject.org, sizeof cert->subject.org, "etcd");

    /* Random positive 128-bit serial (top bit clear keeps it positive). */
    if (wc_RNG_GenerateBlock(rng, cert->serial, SERIAL_BYTES) != 0)
        return fail(err, errlen, "auto-tls: cannot generate a serial number");
    cert->serial[0] &= 0x7f;
    if (cert->serial[0] == 0) cert->serial[0] = 0x01;
    cert->serialSz = SERIAL_BYTES;

    time_t now = time(NULL);
    time_t until = now + (time_t)days * 24 * 60 * 60;
    int b = der_time(now, cert->beforeDate, sizeof cert->beforeDate);
    int a = der_time(until, cert->afterDate, sizeof cert->afterDate);
    if (b < 0 || a < 0) return fail(err, errlen, "auto-tls: validity of %u days is out of range", days);
    cert->beforeDateSz = b;
    cert->afterDateSz = a;

    if (wc_SetKeyUsage(cert, "digitalSignature,keyEncipherment") != 0)
        return fail(err, errlen, "auto-tls: cannot set key usage");
    if (wc_SetExtKeyUsage(cert, "serverAuth") != 0)
        return fail(err, errlen, "auto-tls: cannot set extended key usage");

    size_t san_len = 0;
    if (build_san(hosts, n_hosts, cert->altNames, sizeof cert->altNames, &san_len, err, errlen) != 0)
        return -1;
    cert->altNamesSz = (int)san_len;
    return 0;
}

/* Makes a P-256 key and a certificate signed by it, both as PEM. */
static int generate_pair(const char *const *hosts, size_t n_hosts, unsigned days, pem_pair_t *out, char *err,
                         size_t errlen) {
    WC_RNG rng;
    ecc_key key;
    Cert *cert = NULL;
    unsigned char *der = NULL;
    unsigned char key_der[KEY_DER_MAX];
    int rc = -1, ret;

    if (wc_InitRng(&rng) != 0) return fail(err, errlen, "auto-tls: cannot initialise the RNG");
    if (wc_ecc_init(&key) != 0) {
        wc_FreeRng(&rng);
        return fail(err, errlen, "auto-tls: wc_ecc_init failed");
    }
    cert = malloc(sizeof *cert);
    der = malloc(DER_MAX);
    if (!cert || !der) {
        fail(err, errlen, "auto-tls: out of memory");
        goto done;
    }
    ret = wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1);
    if (ret != 0) {
        fail(err, errlen, "auto-tls: cannot generate an ECDSA key: %s", wc_GetErrorString(ret));
        goto done;
    }
    (void)wc_ecc_set_rng(&key, &rng);
    if (fill_cert_fields(cert, hosts, n_hosts, days, &rng, err, errlen) != 0) goto done;
    ret = wc_MakeCert_ex(cert, der, DER_MAX, ECC_TYPE, &key, &rng);
    if (ret < 0) {
        fail(err, errlen, "auto-tls: cannot build the certificate: %s", wc_GetErrorString(ret));
        goto done;
    }
    ret = wc_SignCert_ex(cert->bodySz, cert->sigType, der, DER_MAX, ECC_TYPE, &key, &rng);
    if (ret < 0) {
        fail(err, errlen, "auto-tls: cannot sign the certificate: %s", wc_GetErrorString(ret));
        goto done;
    }
    out->cert_pem_len = wc_DerToPem(der, (word32)ret, out->cert_pem, PEM_MAX, CERT_TYPE);
    ret = wc_EccKeyToDer(&key, key_der, sizeof key_der);
    if (out->cert_pem_len <= 0 || ret <= 0) {
        fail(err, errlen, "auto-tls: cannot encode the certificate or key");
        goto done;
    }
    out->key_pem_len = wc_DerToPem(key_der, (word32)ret, out->key_pem, KEY_PEM_MAX, ECC_PRIVATEKEY_TYPE);
    if (out->key_pem_len <= 0) {
        fail(err, errlen, "auto-tls: cannot encode the key");
        goto done;
    }
    rc = 0;
done:
    explicit_bzero(key_der, sizeof key_der);
    free(der);
    free(cert);
    wc_ecc_free(&key);
    wc_FreeRng(&rng);
#ifdef FP_ECC
    wc_ecc_fp_free(); /* this thread's fixed-point cache; the caller may be a short-lived thread */
#endif
    return rc;
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int autotls_ensure(const char *dir, const char *const *hosts, size_t n_hosts, unsigned days, char *cert_path,
                   char *key_path, char *err, size_t errlen) {
    assert(dir && cert_path && key_path);
    assert(hosts || n_hosts == 0);
    if (days == 0) return fail(err, errlen, "auto-tls: validity must be at least one day");
    if (make_dirs(dir, err, errlen) != 0) return -1;
    if (snprintf(cert_path, PATH_MAX, "%s/cert.pem", dir) >= PATH_MAX ||
        snprintf(key_path, PATH_MAX, "%s/key.pem", dir) >= PATH_MAX)
        return fail(err, errlen, "auto-tls: path too long: %s", dir);
    if (is_regular_file(cert_path) && is_regular_file(key_path)) return 0;

    pem_pair_t *pair = malloc(sizeof *pair);
    if (!pair) return fail(err, errlen, "auto-tls: out of memory");
    int rc = generate_pair(hosts, n_hosts, days, pair, err, errlen);
    if (rc == 0 && unlink(cert_path) != 0 && errno != ENOENT)
        rc = fail(err, errlen, "auto-tls: cannot remove %s: %s", cert_path, strerror(errno));
    if (rc == 0)
        rc = write_file_atomic(key_path, pair->key_pem, (size_t)pair->key_pem_len, 0600, err, errlen);
    if (rc == 0)
        rc = write_file_atomic(cert_path, pair->cert_pem, (size_t)pair->cert_pem_len, 0644, err, errlen);
    if (rc == 0) fsync_dir(dir);
    explicit_bzero(pair, sizeof *pair);
    free(pair);
    return rc;
}
