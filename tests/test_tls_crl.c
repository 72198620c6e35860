/*
 * test_tls_crl.c: tls/tls_crl.c, the serial-number CRL check.
 *
 * On etcd's own test fixtures (golang-etcd-server-dev, the files etcd's
 * TestCtlV3GetRevokedCRL uses): revoke.crl, whose nextUpdate is in 2021,
 * still revokes server-revoked.crt and not server.crt, read as PEM and as
 * DER (made with openssl); a CRL without entries revokes nothing; every
 * truncation and many byte flips of the DER are refused or parsed without
 * reading out of bounds (ASan in make test).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls_crl.h"

#define FIXTURES "/usr/share/gocode/src/go.etcd.io/etcd/integration/fixtures"

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* The serial of the certificate at path, as wolfSSL hands it to the callback. */
static size_t cert_serial(const char *path, uint8_t *out, int cap) {
    WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_file(path, WOLFSSL_FILETYPE_PEM);
    assert_non_null(x);
    int len = cap;
    assert_int_equal(wolfSSL_X509_get_serial_number(x, out, &len), WOLFSSL_SUCCESS);
    wolfSSL_X509_free(x);
    return (size_t)len;
}

static void check_revokes_only_the_revoked_cert(const tls_crl_t *crl) {
    uint8_t serial[64];
    size_t n = cert_serial(FIXTURES "/server-revoked.crt", serial, sizeof serial);
    assert_true(tls_crl_is_revoked(crl, serial, n));
    n = cert_serial(FIXTURES "/server.crt", serial, sizeof serial);
    assert_false(tls_crl_is_revoked(crl, serial, n));
    n = cert_serial(FIXTURES "/server2.crt", serial, sizeof serial);
    assert_false(tls_crl_is_revoked(crl, serial, n));
}

static void test_stale_pem_crl_still_revokes(void **state) {
    (void)state;
    char err[128] = "";
    tls_crl_t *crl = tls_crl_load(FIXTURES "/revoke.crl", err, sizeof err);
    assert_non_null(crl);
    assert_int_equal(tls_crl_count(crl), 1);
    check_revokes_only_the_revoked_cert(crl);
    /* A leading zero octet (DER's sign byte) does not change the serial. */
    uint8_t serial[65] = {0};
    size_t n = cert_serial(FIXTURES "/server-revoked.crt", serial + 1, 64);
    assert_true(tls_crl_is_revoked(crl, serial, n + 1));
    tls_crl_unref(crl);
}

static char tmp_dir[256];

static int make_der(const char *pem, const char *der) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "openssl crl -in '%s' -outform DER -out '%s' 2>/dev/null", pem, der);
    return system(cmd);
}

static void test_der_crl_and_truncations(void **state) {
    (void)state;
    char der_path[512], err[128];
    snprintf(der_path, sizeof der_path, "%s/revoke.der", tmp_dir);
    assert_int_equal(make_der(FIXTURES "/revoke.crl", der_path), 0);
    tls_crl_t *crl = tls_crl_load(der_path, err, sizeof err);
    assert_non_null(crl);
    check_revokes_only_the_revoked_cert(crl);
    tls_crl_unref(crl);

    size_t len;
    uint8_t *der = read_file(der_path, &len);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
        memcpy(copy, der, cut);
        assert_null(tls_crl_parse(copy, cut, err, sizeof err));
        free(copy);
    }
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(len);
            memcpy(copy, der, len);
            copy[i] ^= (uint8_t)(1u << bit);
            tls_crl_unref(tls_crl_parse(copy, len, err, sizeof err)); /* refused or not: no crash */
            free(copy);
        }
    }
    free(der);
}

static void test_empty_and_garbage(void **state) {
    (void)state;
    char err[128];
    /* SEQUENCE { SEQUENCE { AlgId, Name, UTCTime } } : no revoked entries */
    static const uint8_t empty[] = {0x30, 0x14, 0x30, 0x12, 0x30, 0x00, 0x30, 0x00, 0x17, 0x0c, '2',
                                    '1',  '0',  '1',  '0',  '1',  '0',  '0',  '0',  '0',  '0',  'Z'};
    tls_crl_t *crl = tls_crl_parse(empty, sizeof empty, err, sizeof err);
    assert_non_null(crl);
    assert_int_equal(tls_crl_count(crl), 0);
    uint8_t serial[] = {0x01};
    assert_false(tls_crl_is_revoked(crl, serial, 1));
    assert_ptr_equal(tls_crl_ref(crl), crl);
    tls_crl_unref(crl);
    tls_crl_unref(crl);

    static const uint8_t not_pem[] = "-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n";
    assert_null(tls_crl_parse(not_pem, sizeof not_pem - 1, err, sizeof err));
    static const uint8_t no_end[] = "-----BEGIN X509 CRL-----\nMAA=\n";
    assert_null(tls_crl_parse(no_end, sizeof no_end - 1, err, sizeof err));
    static const uint8_t huge_len[] = {0x30, 0x84, 0xff, 0xff, 0xff, 0xff};
    assert_null(tls_crl_parse(huge_len, sizeof huge_len, err, sizeof err));
    assert_null(tls_crl_load("/nonexistent/crl.pem", err, sizeof err));
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("KSHIM_TEST_TMP");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tls_crl-XXXXXX", base && *base ? base : "/tmp");
    mkdir(base && *base ? base : "/tmp", 0755);
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/revoke.der", tmp_dir);
    unlink(path);
    return rmdir(tmp_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_pem_crl_still_revokes),
        cmocka_unit_test(test_der_crl_and_truncations),
        cmocka_unit_test(test_empty_and_garbage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
