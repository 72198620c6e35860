/*
 * test_autotls.c: etcd-style --auto-tls (apiserver-shim/transport/autotls.c). The
 * generated certificate is inspected with the openssl CLI (SANs, subject,
 * validity, key usages, self-signature, key/cert match), file modes, reuse of
 * an existing pair byte for byte, regeneration when one file is missing,
 * failure paths, URL host parsing, and loading the pair into a wolfSSL server
 * context plus a TLS handshake against it with the certificate as the only
 * trust anchor (what a client given --cacert=cert.pem does).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "autotls.h"

static const char *const HOSTS[] = {"127.0.0.1", "::1", "localhost"};
enum { N_HOSTS = 3, DAYS = 365 };

static char g_base[PATH_MAX];

/* ---- helpers ---- */

static void make_base(void) {
    const char *root = getenv("KSHIM_TEST_TMP");
    char cmd[PATH_MAX + 32];
    if (!root || !root[0]) root = "/tmp";
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", root);
    assert_int_equal(system(cmd), 0);
    snprintf(g_base, sizeof g_base, "%s/autotls-XXXXXX", root);
    assert_non_null(mkdtemp(g_base));
}

static int setup(void **state) {
    make_base();
    return 0;
}

static int teardown(void **state) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_base);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs cmd through the shell, captures stdout (and stderr if the command
 * redirects it) into out, returns the exit status. */
static int run(const char *cmd, char *out, size_t outlen) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static size_t read_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return n;
}

static void ensure_ok(const char *dir, char *cert, char *key) {
    char err[256] = "";
    int rc = autotls_ensure(dir, HOSTS, N_HOSTS, DAYS, cert, key, err, sizeof err);
    if (rc != 0) print_error("autotls_ensure: %s\n", err);
    assert_int_equal(rc, 0);
}

static void assert_key_matches_cert(const char *cert, const char *key) {
    char cmd[3 * PATH_MAX], a[1024], b[1024];
    snprintf(cmd, sizeof cmd, "openssl pkey -in '%s' -pubout 2>&1", key);
    assert_int_equal(run(cmd, a, sizeof a), 0);
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -pubkey 2>&1", cert);
    assert_int_equal(run(cmd, b, sizeof b), 0);
    assert_non_null(strstr(a, "BEGIN PUBLIC KEY"));
    assert_string_equal(a, b);
}

/* "Nov 23 21:30:19 2026 GMT" -> time_t */
static time_t parse_openssl_date(const char *s) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%b %d %H:%M:%S %Y GMT", &tm);
    assert_non_null(end);
    return timegm(&tm);
}

/* ---- tests ---- */

static void test_certificate_contents(void **state) {
    char dir[PATH_MAX + 32], cert[PATH_MAX], key[PATH_MAX], cmd[3 * PATH_MAX];
    static char text[16384];
    snprintf(dir, sizeof dir, "%s/data/fixtures/client", g_base);
    time_t before = time(NULL);
    ensure_ok(dir, cert, key);
    time_t after = time(NULL);

    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/cert.pem", dir);
    assert_string_equal(cert, want);
    snprintf(want, sizeof want, "%s/key.pem", dir);
    assert_string_equal(key, want);

    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -text 2>&1", cert);
    assert_int_equal(run(cmd, text, sizeof text), 0);
    assert_non_null(strstr(text, "Version: 3"));
    assert_non_null(strstr(text, "Issuer: O = etcd\n"));
    assert_non_null(strstr(text, "Subject: O = etcd\n"));
    assert_non_null(strstr(text, "ecdsa-with-SHA256"));
    assert_non_null(strstr(text, "prime256v1"));
    assert_non_null(strstr(text, "CA:FALSE"));
    assert_non_null(strstr(text, "X509v3 Key Usage: critical\n"
                                 "                Digital Signature, Key Encipherment\n"));
    assert_non_null(strstr(text, "X509v3 Extended Key Usage: \n"
                                 "                TLS Web Server Authentication\n"));
    assert_non_null(strstr(text, "X509v3 Subject Alternative Name: \n"
                                 "                DNS:localhost, IP Address:127.0.0.1, "
                                 "IP Address:0:0:0:0:0:0:0:1\n"));

    /* Validity: from now for exactly DAYS days. */
    char line[256];
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -startdate 2>&1", cert);
    assert_int_equal(run(cmd, line, sizeof line), 0);
    assert_true(strncmp(line, "notBefore=", 10) == 0);
    time_t nb = parse_openssl_date(line + 10);
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -enddate 2>&1", cert);
    assert_int_equal(run(cmd, line, sizeof line), 0);
    assert_true(strncmp(line, "notAfter=", 9) == 0);
    time_t na = parse_openssl_date(line + 9);
    assert_true(nb >= before - 1 && nb <= after);
    assert_int_equal((long long)(na - nb), (long long)DAYS * 86400);

    /* Self-signed: verifies against itself as the only CA. */
    snprintf(cmd, sizeof cmd, "openssl verify -CAfile '%s' '%s' 2>&1", cert, cert);
    assert_int_equal(run(cmd, line, sizeof line), 0);
    assert_non_null(strstr(line, ": OK"));

    assert_key_matches_cert(cert, key);
    char pem[2048];
    read_file(key, pem, sizeof pem);
    assert_true(strncmp(pem, "-----BEGIN EC PRIVATE KEY-----\n", 31) == 0);

    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_false(access(cert, F_OK) != 0);
    snprintf(want, sizeof want, "%s.tmp", cert);
    assert_int_equal(access(want, F_OK), -1);
}

static void test_second_call_reuses_files(void **state) {
    char dir[PATH_MAX + 32], cert[PATH_MAX], key[PATH_MAX], err[256] = "";
    static char c1[8192], k1[2048], c2[8192], k2[2048];
    snprintf(dir, sizeof dir, "%s/reuse", g_base);
    ensure_ok(dir, cert, key);
    size_t cl = read_file(cert, c1, sizeof c1), kl = read_file(key, k1, sizeof k1);
    assert_true(cl > 100 && kl > 100);

    /* Even with other hosts the existing pair is kept, as etcd does. */
    const char *other[] = {"10.1.2.3"};
    assert_int_equal(autotls_ensure(dir, other, 1, 30, cert, key, err, sizeof err), 0);
    assert_int_equal(read_file(cert, c2, sizeof c2), cl);
    assert_int_equal(read_file(key, k2, sizeof k2), kl);
    assert_memory_equal(c1, c2, cl);
    assert_memory_equal(k1, k2, kl);
}

static void test_missing_file_regenerates_both(void **state) {
    char dir[PATH_MAX + 32], cert[PATH_MAX], key[PATH_MAX];
    static char c1[8192], k1[2048], c2[8192], k2[2048];
    snprintf(dir, sizeof dir, "%s/regen", g_base);
    ensure_ok(dir, cert, key);
    read_file(cert, c1, sizeof c1);
    read_file(key, k1, sizeof k1);

    /* Cert present, key missing. */
    assert_int_equal(unlink(key), 0);
    ensure_ok(dir, cert, key);
    read_file(cert, c2, sizeof c2);
    read_file(key, k2, sizeof k2);
    assert_string_not_equal(c1, c2);
    assert_string_not_equal(k1, k2);
    assert_key_matches_cert(cert, key);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Key present, cert missing. */
    assert_int_equal(unlink(cert), 0);
    ensure_ok(dir, cert, key);
    read_file(cert, c1, sizeof c1);
    read_file(key, k1, sizeof k1);
    assert_string_not_equal(c1, c2);
    assert_string_not_equal(k1, k2);
    assert_key_matches_cert(cert, key);
}

static void test_bracketed_and_no_hosts(void **state) {
    char dir[PATH_MAX + 32], cert[PATH_MAX], key[PATH_MAX], err[256] = "";
    char cmd[2 * PATH_MAX];
    static char text[16384];
    const char *hosts[] = {"[fd00::5]",    "", "etcd-0.example", "10.0.0.1", "[::2]:2380", "127.0.0.2:2379",
                           "node-1.x:2379"};
    snprintf(dir, sizeof dir, "%s/brackets", g_base);
    assert_int_equal(autotls_ensure(dir, hosts, 7, 1, cert, key, err, sizeof err), 0);
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -ext subjectAltName 2>&1", cert);
    assert_int_equal(run(cmd, text, sizeof text), 0);
    assert_non_null(strstr(text, "DNS:etcd-0.example, DNS:node-1.x, "
                                 "IP Address:FD00:0:0:0:0:0:0:5, IP Address:10.0.0.1, "
                                 "IP Address:0:0:0:0:0:0:0:2, IP Address:127.0.0.2\n"));

    /* No hosts at all: a valid certificate without the SAN extension. */
    snprintf(dir, sizeof dir, "%s/nohosts", g_base);
    assert_int_equal(autotls_ensure(dir, NULL, 0, 1, cert, key, err, sizeof err), 0);
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -text 2>&1", cert);
    assert_int_equal(run(cmd, text, sizeof text), 0);
    assert_null(strstr(text, "Subject Alternative Name"));
    assert_key_matches_cert(cert, key);
}

static void test_failures(void **state) {
    char path[PATH_MAX + 32], cert[PATH_MAX], key[PATH_MAX], err[256];

    /* A directory below a regular file cannot be created (even as root). */
    snprintf(path, sizeof path, "%s/plainfile", g_base);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/plainfile/fixtures/client", g_base);
    err[0] = '\0';
    assert_int_equal(autotls_ensure(path, HOSTS, N_HOSTS, DAYS, cert, key, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot create"));
    assert_non_null(strstr(err, "plainfile"));

    /* dir itself is a regular file. */
    snprintf(path, sizeof path, "%s/plainfile", g_base);
    err[0] = '\0';
    assert_int_equal(autotls_ensure(path, HOSTS, N_HOSTS, DAYS, cert, key, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a directory"));

    /* A read-only directory (only meaningful when not root). */
    if (geteuid() != 0) {
        snprintf(path, sizeof path, "%s/readonly", g_base);
        assert_int_equal(mkdir(path, 0500), 0);
        err[0] = '\0';
        assert_int_equal(autotls_ensure(path, HOSTS, N_HOSTS, DAYS, cert, key, err, sizeof err), -1);
        assert_true(err[0] != '\0');
        chmod(path, 0700);
    }

    snprintf(path, sizeof path, "%s/zero-days", g_base);
    err[0] = '\0';
    assert_int_equal(autotls_ensure(path, HOSTS, N_HOSTS, 0, cert, key, err, sizeof err), -1);
    assert_non_null(strstr(err, "day"));

    /* Bad hosts are rejected and nothing is written. */
    const char *bad[] = {"[]", "[not-v6]", "1:2:zz", "host name", "h\xc3\xa9", ":2379"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "%s/bad-host-%zu", g_base, i);
        const char *one[] = {"localhost", bad[i]};
        err[0] = '\0';
        assert_int_equal(autotls_ensure(path, one, 2, 1, cert, key, err, sizeof err), -1);
        assert_non_null(strstr(err, "bad host"));
        assert_int_equal(access(cert, F_OK), -1);
        assert_int_equal(access(key, F_OK), -1);
    }
}

static void expect_host(const char *url, const char *want) {
    char out[256];
    memset(out, 'x', sizeof out);
    int rc = autotls_url_host(url, out, sizeof out);
    if (rc != 0) print_error("url %s\n", url);
    assert_int_equal(rc, 0);
    assert_string_equal(out, want);
}

static void test_url_host(void **state) {
    expect_host("https://127.0.0.1:2379", "127.0.0.1");
    expect_host("https://[::1]:2379", "::1");
    expect_host("https://localhost:2379", "localhost");
    expect_host("https://localhost", "localhost");
    expect_host("https://[fe80::1%25eth0]", "fe80::1%25eth0");
    expect_host("https://[2001:db8::7]", "2001:db8::7");
    expect_host("http://10.0.0.1:2380/", "10.0.0.1");
    expect_host("https://user:pw@etcd-0.example:2379/v3?x=1", "etcd-0.example");
    expect_host("127.0.0.1:2379", "127.0.0.1");
    expect_host("unixs://node1", "node1");

    char out[16];
    assert_int_equal(autotls_url_host("https://:2379", out, sizeof out), -1);
    assert_int_equal(autotls_url_host("https://", out, sizeof out), -1);
    assert_int_equal(autotls_url_host("https://[::1:2379", out, sizeof out), -1);
    assert_int_equal(autotls_url_host("https://[::1]x:2379", out, sizeof out), -1);
    assert_int_equal(autotls_url_host("https://[]:2379", out, sizeof out), -1);
    char tiny[9];
    assert_int_equal(autotls_url_host("https://127.0.0.1:2379", tiny, sizeof tiny), -1);
    char fits[10];
    assert_int_equal(autotls_url_host("https://127.0.0.1:2379", fits, sizeof fits), 0);
    assert_string_equal(fits, "127.0.0.1");
}

/* ---- wolfSSL ---- */

static WOLFSSL_CTX *server_ctx(const char *cert, const char *key) {
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    assert_non_null(ctx);
    assert_int_equal(wolfSSL_CTX_use_certificate_file(ctx, cert, WOLFSSL_FILETYPE_PEM), WOLFSSL_SUCCESS);
    assert_int_equal(wolfSSL_CTX_use_PrivateKey_file(ctx, key, WOLFSSL_FILETYPE_PEM), WOLFSSL_SUCCESS);
    return ctx;
}

typedef struct {
    WOLFSSL_CTX *ctx;
    int fd;
    int rc;
} server_arg_t;

static void *serve_one(void *p) {
    server_arg_t *a = p;
    WOLFSSL *ssl = wolfSSL_new(a->ctx);
    a->rc = -1;
    if (ssl && wolfSSL_set_fd(ssl, a->fd) == WOLFSSL_SUCCESS && wolfSSL_accept(ssl) == WOLFSSL_SUCCESS) {
        char b[4];
        if (wolfSSL_read(ssl, b, 4) == 4 && memcmp(b, "ping", 4) == 0 && wolfSSL_write(ssl, "pong", 4) == 4)
            a->rc = 0;
    }
    if (ssl) wolfSSL_free(ssl);
    close(a->fd);
    wc_ecc_fp_free(); /* this thread's ECC fixed-point cache (FP_ECC) */
    return NULL;
}

/* Client trusting only cert.pem connects to a server using the pair; with
 * server_name set, the name must be in the SANs. Returns 0 on success. */
static int handshake(WOLFSSL_CTX *sctx, const char *cert, const char *server_name) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    server_arg_t a = {.ctx = sctx, .fd = sv[0], .rc = -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve_one, &a), 0);

    WOLFSSL_CTX *cctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
    assert_non_null(cctx);
    assert_int_equal(wolfSSL_CTX_load_verify_locations(cctx, cert, NULL), WOLFSSL_SUCCESS);
    wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_PEER, NULL);
    WOLFSSL *ssl = wolfSSL_new(cctx);
    assert_non_null(ssl);
    assert_int_equal(wolfSSL_set_fd(ssl, sv[1]), WOLFSSL_SUCCESS);
    if (server_name) assert_int_equal(wolfSSL_check_domain_name(ssl, server_name), WOLFSSL_SUCCESS);
    int rc = -1;
    if (wolfSSL_connect(ssl) == WOLFSSL_SUCCESS) {
        char b[4];
        if (wolfSSL_write(ssl, "ping", 4) == 4 && wolfSSL_read(ssl, b, 4) == 4 && memcmp(b, "pong", 4) == 0)
            rc = 0;
    }
    wolfSSL_free(ssl);
    wolfSSL_CTX_free(cctx);
    close(sv[1]);
    pthread_join(th, NULL);
    return rc == 0 && a.rc == 0 ? 0 : -1;
}

static void test_wolfssl_loads_and_serves(void **state) {
    char dir[PATH_MAX + 32], cert[PATH_MAX], key[PATH_MAX];
    char dir2[PATH_MAX + 32], cert2[PATH_MAX], key2[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/wolf", g_base);
    snprintf(dir2, sizeof dir2, "%s/wolf2", g_base);
    ensure_ok(dir, cert, key);
    ensure_ok(dir2, cert2, key2);
    assert_int_equal(wolfSSL_Init(), WOLFSSL_SUCCESS);

    WOLFSSL_CTX *ctx = server_ctx(cert, key);
    assert_int_equal(wolfSSL_CTX_check_private_key(ctx), WOLFSSL_SUCCESS);
    assert_int_equal(handshake(ctx, cert, NULL), 0);
    assert_int_equal(handshake(ctx, cert, "localhost"), 0);
    /* A name that is not in the SANs is refused by the client. */
    assert_int_equal(handshake(ctx, cert, "other.example"), -1);
    /* A client trusting a different auto-tls certificate refuses it. */
    assert_int_equal(handshake(ctx, cert2, NULL), -1);
    wolfSSL_CTX_free(ctx);

    /* Mismatched pair: the key of another generation does not fit. wolfSSL
     * 5.5.4's wolfSSL_CTX_check_private_key() accepts a mismatched ECC pair
     * (it does catch RSA), so the mismatch only shows in the handshake. */
    ctx = server_ctx(cert, key2);
    assert_int_equal(handshake(ctx, cert, NULL), -1);
    wolfSSL_CTX_free(ctx);
    wolfSSL_Cleanup();
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_certificate_contents),
        cmocka_unit_test(test_second_call_reuses_files),
        cmocka_unit_test(test_missing_file_regenerates_both),
        cmocka_unit_test(test_bracketed_and_no_hosts),
        cmocka_unit_test(test_failures),
        cmocka_unit_test(test_url_host),
        cmocka_unit_test(test_wolfssl_loads_and_serves),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
