/*
 * test_token.c: apiserver-shim/auth_token (etcd --auth-token providers).
 *
 * Option and duration parsing; simple tokens (format, TTL refreshed on use,
 * sweep, invalidate, disable, duplicates, malformed); JWT with keys made by
 * the openssl CLI in a temp dir (RS256/RS512/PS256/ES256/ES384/HS256):
 * issue/verify/expire, exact claims JSON, tokens from another key, verify-
 * only providers, key mismatch, public keys given as a certificate or a
 * PKCS#1 "RSA PUBLIC KEY" (as etcd accepts them), PS256 with any salt length
 * (golang-jwt's PSSSaltLengthAuto), and a corpus of malformed or forged tokens
 * (HS256 tokens crafted here with wolfCrypt HMAC).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "auth_token.h"

static char tmpdir[256];

static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

static int make_keys(void **state) {
    (void)state;
    const char *base = getenv("KSHIM_TEST_TMP");
    char tmpl[256];
    if (base) {
        sh("mkdir -p '%s'", base);
        snprintf(tmpl, sizeof tmpl, "%s/token-XXXXXX", base);
    } else {
        snprintf(tmpl, sizeof tmpl, "/tmp/kshim-token-XXXXXX");
    }
    if (!mkdtemp(tmpl)) return -1;
    snprintf(tmpdir, sizeof tmpdir, "%s", tmpl);
    sh("cd '%s' && openssl genrsa -traditional -out rsa.pem 2048 2>/dev/null"
       " && openssl rsa -in rsa.pem -pubout -out rsa.pub 2>/dev/null"
       " && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2.pem 2>/dev/null"
       " && openssl pkey -in rsa2.pem -pubout -out rsa2.pub"
       " && openssl ecparam -name prime256v1 -genkey -noout -out ec.pem"
       " && openssl ec -in ec.pem -pubout -out ec.pub 2>/dev/null"
       " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec2.pem"
       " && openssl pkey -in ec2.pem -pubout -out ec2.pub"
       " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec384.pem"
       " && openssl pkey -in ec384.pem -pubout -out ec384.pub"
       " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec384b.pem"
       " && openssl req -new -x509 -key rsa.pem -subj /CN=jwt -days 30 -out rsa.crt 2>/dev/null"
       " && openssl req -new -x509 -key rsa2.pem -subj /CN=jwt2 -days 30 -out rsa2.crt 2>/dev/null"
       " && openssl rsa -in rsa.pem -RSAPublicKey_out -out rsa.rsapub 2>/dev/null"
       " && openssl req -new -x509 -key ec.pem -subj /CN=jwtec -days 30 -out ec.crt 2>/dev/null"
       " && printf 'hmac-secret-key' > hmac.key && printf 'other-secret' > hmac2.key",
       tmpdir);
    return 0;
}

static int remove_keys(void **state) {
    (void)state;
    if (tmpdir[0]) sh("rm -rf '%s'", tmpdir);
    return 0;
}

static auth_token_t *provider(const char *fmt, ...) {
    char opts[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(opts, sizeof opts, fmt, ap);
    va_end(ap);
    auth_token_t *t = NULL;
    char err[256];
    int rc = auth_token_new(opts, 0, &t, err, sizeof err);
    if (rc != 0) fprintf(stderr, "auth_token_new(%s): %d %s\n", opts, rc, err);
    assert_int_equal(rc, 0);
    return t;
}

static int provider_rc(const char *fmt, ...) {
    char opts[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(opts, sizeof opts, fmt, ap);
    va_end(ap);
    auth_token_t *t = NULL;
    char err[256];
    int rc = auth_token_new(opts, 0, &t, err, sizeof err);
    if (rc == 0)
        auth_token_free(t);
    else
        assert_true(err[0] != 0);
    return rc;
}

/* ---- options ---- */

static void test_opts(void **state) {
    (void)state;
    auth_token_opts_t o;
    assert_int_equal(
        auth_token_opts_parse("jwt,pub-key=/a.pub,priv-key=/b.pem,sign-method=RS256,ttl=10m", &o), 0);
    assert_string_equal(o.type, "jwt");
    assert_string_equal(o.pub_key, "/a.pub");
    assert_string_equal(o.priv_key, "/b.pem");
    assert_string_equal(o.sign_method, "RS256");
    assert_string_equal(o.ttl, "10m");
    assert_int_equal(o.unknown, 0);
    auth_token_opts_free(&o);

    assert_int_equal(auth_token_opts_parse("jwt,foo=bar,sign-method=", &o), 0);
    assert_int_equal(o.unknown, 1);
    assert_string_equal(o.sign_method, "");
    auth_token_opts_free(&o);
    assert_int_equal(auth_token_opts_parse("simple", &o), 0);
    assert_string_equal(o.type, "simple");
    assert_null(o.ttl);
    auth_token_opts_free(&o);

    assert_int_equal(auth_token_opts_parse("jwt,foo", &o), AUTH_TOKEN_EOPTS);
    assert_int_equal(auth_token_opts_parse("jwt,ttl=1m,ttl=2m", &o), AUTH_TOKEN_EOPTS);
    assert_int_equal(auth_token_opts_parse("jwt,ttl=a=b", &o), AUTH_TOKEN_EOPTS);
    assert_int_equal(auth_token_opts_parse("jwt,", &o), AUTH_TOKEN_EOPTS);

    assert_int_equal(provider_rc("bogus"), AUTH_TOKEN_EOPTS);
    assert_int_equal(provider_rc("jwt,sign-method=XX512,priv-key=%s/rsa.pem", tmpdir), AUTH_TOKEN_EMETHOD);
    assert_int_equal(provider_rc("jwt,priv-key=%s/rsa.pem", tmpdir), AUTH_TOKEN_EMETHOD);
    assert_int_equal(provider_rc("jwt,sign-method=RS256"), AUTH_TOKEN_EMISSINGKEY);
    assert_int_equal(provider_rc("jwt,sign-method=HS256,pub-key=%s/hmac.key", tmpdir),
                     AUTH_TOKEN_EMISSINGKEY);
    assert_int_equal(provider_rc("jwt,sign-method=RS256,priv-key=%s/nope.pem", tmpdir), AUTH_TOKEN_EKEY);
    assert_int_equal(provider_rc("jwt,sign-method=RS256,priv-key=%s/ec.pem", tmpdir), AUTH_TOKEN_EKEY);
    assert_int_equal(provider_rc("jwt,sign-method=ES256,priv-key=%s/rsa.pem", tmpdir), AUTH_TOKEN_EKEY);
    assert_int_equal(provider_rc("jwt,sign-method=ES384,priv-key=%s/ec.pem", tmpdir), AUTH_TOKEN_EKEY);
    assert_int_equal(provider_rc("jwt,sign-method=RS256,priv-key=%s/hmac.key", tmpdir), AUTH_TOKEN_EKEY);
    assert_int_equal(provider_rc("jwt,sign-method=RS256,priv-key=%s/rsa.pem,ttl=5parsecs", tmpdir),
                     AUTH_TOKEN_EOPTS);
    assert_int_equal(
        provider_rc("jwt,sign-method=RS256,priv-key=%s/rsa.pem,pub-key=%s/rsa2.pub", tmpdir, tmpdir),
        AUTH_TOKEN_EKEYMISMATCH);
    assert_int_equal(
        provider_rc("jwt,sign-method=ES256,priv-key=%s/ec.pem,pub-key=%s/ec2.pub", tmpdir, tmpdir),
        AUTH_TOKEN_EKEYMISMATCH);
    assert_int_equal(
        provider_rc("jwt,sign-method=ES256,priv-key=%s/ec.pem,pub-key=%s/ec.pub", tmpdir, tmpdir), 0);

    /* etcd accepts a CERTIFICATE or an "RSA PUBLIC KEY" as pub-key */
    assert_int_equal(
        provider_rc("jwt,sign-method=RS256,priv-key=%s/rsa.pem,pub-key=%s/rsa.crt", tmpdir, tmpdir), 0);
    assert_int_equal(
        provider_rc("jwt,sign-method=RS256,priv-key=%s/rsa.pem,pub-key=%s/rsa.rsapub", tmpdir, tmpdir), 0);
    assert_int_equal(
        provider_rc("jwt,sign-method=ES256,priv-key=%s/ec.pem,pub-key=%s/ec.crt", tmpdir, tmpdir), 0);
    assert_int_equal(
        provider_rc("jwt,sign-method=RS256,priv-key=%s/rsa.pem,pub-key=%s/rsa2.crt", tmpdir, tmpdir),
        AUTH_TOKEN_EKEYMISMATCH);
    assert_int_equal(
        provider_rc("jwt,sign-method=ES256,priv-key=%s/ec.pem,pub-key=%s/rsa.crt", tmpdir, tmpdir),
        AUTH_TOKEN_EKEYMISMATCH);

    auth_token_t *t = provider("");
    assert_int_equal(auth_token_kind(t), AUTH_TOKEN_NOP);
    char *tok = NULL;
    auth_token_info_t info;
    assert_int_equal(auth_token_assign(t, "", 1, "u", 1, 0, &tok), AUTH_TOKEN_EAUTHFAILED);
    assert_int_equal(auth_token_info(t, "x.1", 1, 0, &info), AUTH_TOKEN_EINVALID);
    auth_token_free(t);
    assert_string_equal(auth_token_strerror(AUTH_TOKEN_EINVALID), "auth: invalid auth token");
}

static void test_duration(void **state) {
    (void)state;
    uint64_t ms = 1;
    assert_int_equal(auth_parse_duration_ms("10m", &ms), 0);
    assert_int_equal(ms, 600000);
    assert_int_equal(auth_parse_duration_ms("1h30m", &ms), 0);
    assert_int_equal(ms, 5400000);
    assert_int_equal(auth_parse_duration_ms("1.5s", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(auth_parse_duration_ms("300ms", &ms), 0);
    assert_int_equal(ms, 300);
    assert_int_equal(auth_parse_duration_ms("2m3s4ms", &ms), 0);
    assert_int_equal(ms, 123004);
    assert_int_equal(auth_parse_duration_ms("1500us", &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(auth_parse_duration_ms("0", &ms), 0);
    assert_int_equal(ms, 0);
    const char *bad[] = {"", "10", "5x", "-1s", "m", ".s", "1..2s", "1s5", "1 s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(auth_parse_duration_ms(bad[i], &ms), -EINVAL);
}

/* ---- simple tokens ---- */

static void test_simple(void **state) {
    (void)state;
    auth_token_t *t = NULL;
    assert_int_equal(auth_token_new("simple", 1000, &t, NULL, 0), 0);
    assert_int_equal(auth_token_kind(t), AUTH_TOKEN_SIMPLE);
    char p1[17], p2[17];
    assert_int_equal(auth_token_gen_prefix(t, p1), 0);
    assert_int_equal(auth_token_gen_prefix(t, p2), 0);
    assert_int_equal(strlen(p1), 16);
    assert_string_not_equal(p1, p2);
    for (int i = 0; i < 16; i++)
        assert_true((p1[i] >= 'a' && p1[i] <= 'z') || (p1[i] >= 'A' && p1[i] <= 'Z'));

    char *tok = NULL, *tok2 = NULL, *tok3 = NULL;
    assert_int_equal(auth_token_assign(t, "abcdefghijklmnop", 42, "alice", 9, 0, &tok), 0);
    assert_string_equal(tok, "abcdefghijklmnop.42");
    assert_int_equal(auth_token_assign(t, "abcdefghijklmnop", 42, "bob", 9, 0, &tok2), AUTH_TOKEN_EEXIST);
    assert_null(tok2);
    assert_int_equal(auth_token_assign(t, p1, 43, "bob", 9, 0, &tok2), 0);
    assert_int_equal(auth_token_assign(t, p2, 44, "alice", 9, 0, &tok3), 0);

    auth_token_info_t info;
    assert_int_equal(auth_token_info(t, tok, 17, 500, &info), 0);
    assert_string_equal(info.user, "alice");
    assert_int_equal(info.revision, 17); /* current auth revision, as etcd */
    auth_token_info_clear(&info);
    /* used at 500: lives until 1500 (TTL restarts on use) */
    assert_int_equal(auth_token_info(t, tok, 17, 1500, &info), 0);
    auth_token_info_clear(&info);
    /* tok2 unused since 0: expires after 1000 */
    assert_int_equal(auth_token_info(t, tok2, 17, 1001, &info), AUTH_TOKEN_EINVALID);
    assert_null(info.user);
    /* sweep: tok expires after 2500, tok3 after 1000 */
    assert_int_equal(auth_token_expire(t, 2000), 1);
    assert_int_equal(auth_token_info(t, tok3, 17, 2000, &info), AUTH_TOKEN_EINVALID);
    assert_int_equal(auth_token_info(t, tok, 17, 2500, &info), 0);
    auth_token_info_clear(&info);
    assert_int_equal(auth_token_expire(t, 3500), 0);
    assert_int_equal(auth_token_expire(t, 3501), 1);
    assert_int_equal(auth_token_info(t, tok, 17, 3501, &info), AUTH_TOKEN_EINVALID);
    free(tok);
    free(tok2);
    free(tok3);

    /* invalidate one user */
    char *a1, *a2, *b1;
    assert_int_equal(auth_token_assign(t, "x", 1, "alice", 1, 5000, &a1), 0);
    assert_int_equal(auth_token_assign(t, "y", 2, "alice", 1, 5000, &a2), 0);
    assert_int_equal(auth_token_assign(t, "z", 3, "bob", 1, 5000, &b1), 0);
    auth_token_invalidate_user(t, "alice");
    assert_int_equal(auth_token_info(t, a1, 1, 5000, &info), AUTH_TOKEN_EINVALID);
    assert_int_equal(auth_token_info(t, a2, 1, 5000, &info), AUTH_TOKEN_EINVALID);
    assert_int_equal(auth_token_info(t, b1, 1, 5000, &info), 0);
    auth_token_info_clear(&info);

    /* malformed */
    const char *bad[] = {"", "z", "z.", "z.3.3", "z.x", ".", "z.3 ", "z3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(auth_token_info(t, bad[i], 1, 5000, &info), AUTH_TOKEN_EINVALID);

    /* disable forgets everything and remembers nothing new */
    auth_token_disable(t);
    assert_int_equal(auth_token_info(t, b1, 1, 5000, &info), AUTH_TOKEN_EINVALID);
    char *d;
    assert_int_equal(auth_token_assign(t, "w", 9, "bob", 1, 5000, &d), 0);
    assert_string_equal(d, "w.9");
    auth_token_enable(t);
    assert_int_equal(auth_token_info(t, d, 1, 5000, &info), AUTH_TOKEN_EINVALID);
    assert_int_equal(auth_token_info(t, b1, 1, 5000, &info), AUTH_TOKEN_EINVALID);
    free(a1);
    free(a2);
    free(b1);
    free(d);
    auth_token_free(t);

    /* default TTL 300 s */
    assert_int_equal(auth_token_new(NULL, 0, &t, NULL, 0), 0);
    assert_int_equal(auth_token_assign(t, "q", 1, "u", 1, 0, &d), 0);
    assert_int_equal(auth_token_info(t, d, 1, 300000, &info), 0);
    auth_token_info_clear(&info);
    assert_int_equal(auth_token_info(t, d, 1, 600001, &info), AUTH_TOKEN_EINVALID);
    free(d);
    auth_token_free(t);
}

/* ---- JWT ---- */

static char *claims_of(const char *tok) {
    const char *d1 = strchr(tok, '.');
    const char *d2 = strchr(d1 + 1, '.');
    size_t n = (size_t)(d2 - d1 - 1);
    char *out = calloc(1, n + 1);
    assert_true(auth_b64url_decode(d1 + 1, n, (uint8_t *)out, n) > 0);
    return out;
}

static void jwt_round_trip(const char *method, const char *priv, const char *pub, const char *other_priv) {
    auth_token_t *t = provider("jwt,sign-method=%s,priv-key=%s/%s,ttl=10m", method, tmpdir, priv);
    assert_int_equal(auth_token_kind(t), AUTH_TOKEN_JWT);
    const uint64_t now = 1700000000123ULL;
    char *tok = NULL;
    assert_int_equal(auth_token_assign(t, "ignored", 5, "ali\"ce<>", 7, now, &tok), 0);

    char header[64];
    uint8_t hb[64];
    long hn = auth_b64url_decode(tok, (size_t)(strchr(tok, '.') - tok), hb, sizeof hb);
    assert_true(hn > 0);
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", method);
    assert_int_equal(hn, strlen(header));
    assert_memory_equal(hb, header, (size_t)hn);
    char *claims = claims_of(tok);
    assert_string_equal(claims,
                        "{\"exp\":1700000600,\"revision\":7,\"username\":\"ali\\\"ce\\u003c\\u003e\"}");
    free(claims);

    auth_token_info_t info;
    assert_int_equal(auth_token_info(t, tok, 99, now, &info), 0);
    assert_string_equal(info.user, "ali\"ce<>");
    assert_int_equal(info.revision, 7); /* from the claims, not the current revision */
    auth_token_info_clear(&info);
    assert_int_equal(auth_token_info(t, tok, 99, 1700000599999ULL, &info), 0);
    auth_token_info_clear(&info);
    /* golang-jwt: valid while now < exp (seconds) */
    assert_int_equal(auth_token_info(t, tok, 99, 1700000600000ULL, &info), AUTH_TOKEN_EINVALID);

    /* a verify-only provider with the public key accepts it, cannot sign */
    if (pub) {
        auth_token_t *v = provider("jwt,sign-method=%s,pub-key=%s/%s", method, tmpdir, pub);
        assert_int_equal(auth_token_info(v, tok, 99, now, &info), 0);
        assert_string_equal(info.user, "ali\"ce<>");
        auth_token_info_clear(&info);
        char *x = NULL;
        assert_int_equal(auth_token_assign(v, "", 1, "u", 1, now, &x), AUTH_TOKEN_EVERIFYONLY);
        assert_null(x);
        auth_token_free(v);
    }

    /* signed by another key: rejected both ways */
    auth_token_t *o = provider("jwt,sign-method=%s,priv-key=%s/%s", method, tmpdir, other_priv);
    assert_int_equal(auth_token_info(o, tok, 99, now, &info), AUTH_TOKEN_EINVALID);
    char *otok = NULL;
    assert_int_equal(auth_token_assign(o, "", 1, "mallory", 1, now, &otok), 0);
    assert_int_equal(auth_token_info(t, otok, 99, now, &info), AUTH_TOKEN_EINVALID);
    /* header and claims of one token with the signature of another */
    char *mixed = malloc(strlen(tok) + strlen(otok) + 1);
    size_t body = (size_t)(strrchr(tok, '.') - tok);
    memcpy(mixed, tok, body);
    strcpy(mixed + body, strrchr(otok, '.'));
    assert_int_equal(auth_token_info(t, mixed, 99, now, &info), AUTH_TOKEN_EINVALID);
    free(mixed);

    /* tampering with any byte of the claims or signature */
    char *bad = strdup(tok);
    size_t n = strlen(bad);
    for (size_t i = (size_t)(strchr(tok, '.') - tok) + 1; i < n; i += 7) {
        /* the last char of a segment may carry unused bits (Go ignores them too) */
        if (bad[i] == '.' || bad[i + 1] == '.' || i + 1 == n) continue;
        char saved = bad[i];
        bad[i] = saved == 'A' ? 'B' : 'A';
        assert_int_equal(auth_token_info(t, bad, 99, now, &info), AUTH_TOKEN_EINVALID);
        bad[i] = saved;
    }
    /* truncated signature */
    bad[n - 4] = 0;
    assert_int_equal(auth_token_info(t, bad, 99, now, &info), AUTH_TOKEN_EINVALID);
    free(bad);
    free(otok);
    free(tok);
    auth_token_free(o);
    auth_token_free(t);
}

static void test_jwt_rs256(void **s) {
    (void)s;
    jwt_round_trip("RS256", "rsa.pem", "rsa.pub", "rsa2.pem");
    jwt_round_trip("RS256", "rsa.pem", "rsa.crt", "rsa2.pem");
    jwt_round_trip("RS256", "rsa.pem", "rsa.rsapub", "rsa2.pem");
}
static void test_jwt_rs512(void **s) {
    (void)s;
    jwt_round_trip("RS512", "rsa2.pem", "rsa2.pub", "rsa.pem");
}
static void test_jwt_ps256(void **s) {
    (void)s;
    jwt_round_trip("PS256", "rsa.pem", "rsa.pub", "rsa2.pem");
}
/* PS256 signed by the openssl CLI with salt length SALT ("0", "max",
 * "digest"): golang-jwt verifies PSS with any salt length. */
static char *pss_token(const char *salt) {
    const char *header = "{\"alg\":\"PS256\",\"typ\":\"JWT\"}";
    const char *claims = "{\"revision\":4,\"username\":\"pss\"}";
    char input[256];
    size_t n = auth_b64url_encode((const uint8_t *)header, strlen(header), input);
    input[n++] = '.';
    n += auth_b64url_encode((const uint8_t *)claims, strlen(claims), input + n);
    char path[512];
    snprintf(path, sizeof path, "%s/pss.in", tmpdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(input, 1, n, f), n);
    fclose(f);
    sh("cd '%s' && openssl dgst -sha256 -sign rsa.pem -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:%s"
       " -out pss.sig pss.in",
       tmpdir, salt);
    snprintf(path, sizeof path, "%s/pss.sig", tmpdir);
    f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t sig[512];
    size_t sig_len = fread(sig, 1, sizeof sig, f);
    fclose(f);
    char *tok = malloc(n + 1 + 4 * sig_len / 3 + 8);
    memcpy(tok, input, n);
    tok[n] = '.';
    auth_b64url_encode(sig, sig_len, tok + n + 1);
    return tok;
}

static void test_jwt_pss_any_salt(void **s) {
    (void)s;
    auth_token_t *t = provider("jwt,sign-method=PS256,priv-key=%s/rsa.pem", tmpdir);
    const char *salts[] = {"digest", "0", "max", "7"};
    for (size_t i = 0; i < sizeof salts / sizeof salts[0]; i++) {
        char *tok = pss_token(salts[i]);
        auth_token_info_t info;
        assert_int_equal(auth_token_info(t, tok, 0, 1000, &info), 0);
        assert_string_equal(info.user, "pss");
        auth_token_info_clear(&info);
        tok[strlen(tok) - 2] = tok[strlen(tok) - 2] == 'A' ? 'B' : 'A'; /* and never a broken one */
        assert_int_equal(auth_token_info(t, tok, 0, 1000, &info), AUTH_TOKEN_EINVALID);
        free(tok);
    }
    auth_token_free(t);
}

static void test_jwt_es256(void **s) {
    (void)s;
    jwt_round_trip("ES256", "ec.pem", "ec.pub", "ec2.pem");
    jwt_round_trip("ES256", "ec.pem", "ec.crt", "ec2.pem");
}
static void test_jwt_es256_pkcs8(void **s) {
    (void)s;
    jwt_round_trip("ES256", "ec2.pem", "ec2.pub", "ec.pem");
}
static void test_jwt_es384(void **s) {
    (void)s;
    jwt_round_trip("ES384", "ec384.pem", "ec384.pub", "ec384b.pem");
}
static void test_jwt_hs256(void **s) {
    (void)s;
    jwt_round_trip("HS256", "hmac.key", NULL, "hmac2.key");
}

/* Builds an HS256 token over arbitrary header and claims JSON, signed with
 * key (wolfCrypt HMAC), so the corpus reaches the claim checks. */
static char *hs256_token(const char *header, const char *claims, const char *key) {
    size_t cap = 4 * (strlen(header) + strlen(claims)) + 128;
    char *tok = malloc(cap);
    size_t n = auth_b64url_encode((const uint8_t *)header, strlen(header), tok);
    tok[n++] = '.';
    n += auth_b64url_encode((const uint8_t *)claims, strlen(claims), tok + n);
    Hmac h;
    uint8_t mac[32];
    assert_int_equal(wc_HmacInit(&h, NULL, INVALID_DEVID), 0);
    assert_int_equal(wc_HmacSetKey(&h, WC_SHA256, (const uint8_t *)key, (word32)strlen(key)), 0);
    assert_int_equal(wc_HmacUpdate(&h, (const uint8_t *)tok, (word32)n), 0);
    assert_int_equal(wc_HmacFinal(&h, mac), 0);
    wc_HmacFree(&h);
    tok[n++] = '.';
    auth_b64url_encode(mac, sizeof mac, tok + n);
    return tok;
}

static void test_jwt_corpus(void **state) {
    (void)state;
    /* fixed-key ES256 verification fails gracefully on the whole corpus too */
    auth_token_t *t = provider("jwt,sign-method=HS256,priv-key=%s/hmac.key", tmpdir);
    auth_token_t *e = provider("jwt,sign-method=ES256,priv-key=%s/ec.pem", tmpdir);
    const uint64_t now = 1000000;
    const char *H = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    auth_token_info_t info;

    /* the crafting helper itself produces accepted tokens */
    char *ok = hs256_token(H, "{\"exp\":2000,\"revision\":3,\"username\":\"u\\u00e9\\ud83d\\ude00\"}",
                           "hmac-secret-key");
    assert_int_equal(auth_token_info(t, ok, 0, now, &info), 0);
    assert_string_equal(info.user, "u\xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(info.revision, 3);
    auth_token_info_clear(&info);
    assert_int_equal(auth_token_info(e, ok, 0, now, &info), AUTH_TOKEN_EINVALID); /* alg mismatch */
    free(ok);
    /* no exp at all is accepted (golang-jwt), extra members are ignored */
    ok = hs256_token(" {\"typ\":\"JWT\", \"alg\" : \"HS256\", \"kid\":[1,{\"a\":null}]} ",
                     "{\"username\":\"u\",\"revision\":1e2,\"x\":{\"y\":[true,false]}}", "hmac-secret-key");
    assert_int_equal(auth_token_info(t, ok, 0, now, &info), 0);
    assert_int_equal(info.revision, 100);
    auth_token_info_clear(&info);
    free(ok);

    const char *claims_bad[] = {
        "{\"exp\":1000,\"revision\":3,\"username\":\"u\"}",     /* expired (now == exp) */
        "{\"exp\":\"2000\",\"revision\":3,\"username\":\"u\"}", /* exp not a number */
        "{\"exp\":2000,\"revision\":3}",                        /* no username */
        "{\"exp\":2000,\"revision\":\"3\",\"username\":\"u\"}", /* revision a string */
        "{\"exp\":2000,\"username\":\"u\"}",                    /* no revision */
        "{\"exp\":2000,\"revision\":3,\"username\":7}",         /* username a number */
        "{\"nbf\":1500,\"revision\":3,\"username\":\"u\"}",     /* not yet valid */
        "{\"iat\":1500,\"revision\":3,\"username\":\"u\"}",     /* issued in the future */
        "{\"exp\":1000.5,\"revision\":3,\"username\":\"u\"}",   /* exp counts whole seconds */
        "{\"exp\":1e300,\"revision\":3,\"username\":\"u\"}",    /* Go: int64(1e300) is the past */
        "{\"exp\":1e400,\"revision\":3,\"username\":\"u\"}",    /* Go: out of float64 range */
        "{\"x\":[-1e999],\"revision\":3,\"username\":\"u\"}",   /* anywhere in the claims */
        "{\"revision\":3,\"username\":\"u\\u0000x\"}",          /* not the user "u" */
        "{\"revision\":3,\"username\\u0000\":\"u\"}",           /* not the member "username" */
        "{\"exp\":2000,\"revision\":3,\"username\":\"u\",}",    /* trailing comma */
        "{\"exp\":2000,\"revision\":03,\"username\":\"u\"}",    /* bad number */
        "{\"exp\":2000,\"revision\":3,\"username\":\"u\x01\"}", /* control char */
        "{\"exp\":2000,\"revision\":3,\"username\":\"u\\x\"}",  /* bad escape */
        "{\"exp\":2000,\"revision\":3,\"username\":\"u}",       /* unterminated */
        "[\"exp\",2000]",                                       /* not an object */
        "",
        "null",
    };
    for (size_t i = 0; i < sizeof claims_bad / sizeof claims_bad[0]; i++) {
        char *tok = hs256_token(H, claims_bad[i], "hmac-secret-key");
        assert_int_equal(auth_token_info(t, tok, 0, now, &info), AUTH_TOKEN_EINVALID);
        assert_null(info.user);
        free(tok);
    }
    /* accepted as golang-jwt and etcd's uint64(float64) take them */
    const struct {
        const char *claims;
        uint64_t revision;
    } claims_go[] = {
        {"{\"exp\":2000,\"revision\":3,\"username\":\"u\"} x", 3}, /* Decoder reads one value */
        {"{\"exp\":2000,\"revision\":-1,\"username\":\"u\"}", UINT64_MAX},
        {"{\"exp\":2000,\"revision\":1e30,\"username\":\"u\"}", UINT64_C(1) << 63},
        {"{\"exp\":2000,\"revision\":3.9,\"username\":\"u\"}", 3},
        {"{\"iat\":1000.5,\"revision\":3,\"username\":\"u\"}", 3}, /* iat 1000 after truncation */
        {"{\"nbf\":1e300,\"revision\":3,\"username\":\"u\"}", 3},
        {"{\"exp\":1001.5,\"nbf\":-5.5,\"revision\":3,\"username\":\"u\"}", 3},
    };
    for (size_t i = 0; i < sizeof claims_go / sizeof claims_go[0]; i++) {
        char *tok = hs256_token(H, claims_go[i].claims, "hmac-secret-key");
        assert_int_equal(auth_token_info(t, tok, 0, now, &info), 0);
        assert_true(info.revision == claims_go[i].revision);
        auth_token_info_clear(&info);
        free(tok);
    }
    const char *headers_bad[] = {
        "{\"alg\":\"HS256\"} x", /* json.Unmarshal: nothing after the value */
        "{\"alg\":\"HS256\\u0000\"}", "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS384\"}",        "{\"alg\":\"RS256\"}",
        "{\"typ\":\"JWT\"}",          "{\"alg\":256}",
        "{\"alg\":\"HS256\"",         "not json",
    };
    const char *good_claims = "{\"exp\":2000,\"revision\":3,\"username\":\"u\"}";
    for (size_t i = 0; i < sizeof headers_bad / sizeof headers_bad[0]; i++) {
        char *tok = hs256_token(headers_bad[i], good_claims, "hmac-secret-key");
        assert_int_equal(auth_token_info(t, tok, 0, now, &info), AUTH_TOKEN_EINVALID);
        free(tok);
    }
    /* right shape, wrong secret */
    char *forged = hs256_token(H, good_claims, "other-secret");
    assert_int_equal(auth_token_info(t, forged, 0, now, &info), AUTH_TOKEN_EINVALID);
    free(forged);

    /* structural garbage */
    char *good = hs256_token(H, good_claims, "hmac-secret-key");
    assert_int_equal(auth_token_info(t, good, 0, now, &info), 0);
    auth_token_info_clear(&info);
    char buf[512];
    snprintf(buf, sizeof buf, "%s.", good);
    const char *structural[] = {"",      ".",     "..", "...", "a", "a.b", "a.b.c.d", "eyJ!.eyJ.abc",
                                "e.e.e", "=.=.=", buf};
    for (size_t i = 0; i < sizeof structural / sizeof structural[0]; i++) {
        assert_int_equal(auth_token_info(t, structural[i], 0, now, &info), AUTH_TOKEN_EINVALID);
        assert_int_equal(auth_token_info(e, structural[i], 0, now, &info), AUTH_TOKEN_EINVALID);
    }
    /* padding is not base64url-raw */
    snprintf(buf, sizeof buf, "%s=", good);
    assert_int_equal(auth_token_info(t, buf, 0, now, &info), AUTH_TOKEN_EINVALID);
    /* an ES256 signature of the wrong length */
    char *etok = NULL;
    assert_int_equal(auth_token_assign(e, "", 0, "u", 1, now, &etok), 0);
    snprintf(buf, sizeof buf, "%sAAAA", etok);
    assert_int_equal(auth_token_info(e, buf, 0, now, &info), AUTH_TOKEN_EINVALID);
    assert_int_equal(auth_token_info(e, etok, 0, now, &info), 0);
    auth_token_info_clear(&info);
    free(etok);
    free(good);
    auth_token_free(t);
    auth_token_free(e);
}

static void test_b64url(void **state) {
    (void)state;
    char out[16];
    uint8_t back[16];
    assert_int_equal(auth_b64url_encode((const uint8_t *)"", 0, out), 0);
    assert_int_equal(auth_b64url_encode((const uint8_t *)"\xfb\xff", 2, out), 3);
    assert_string_equal(out, "-_8");
    assert_int_equal(auth_b64url_encode((const uint8_t *)"abcd", 4, out), 6);
    assert_string_equal(out, "YWJjZA");
    assert_int_equal(auth_b64url_decode("YWJjZA", 6, back, sizeof back), 4);
    assert_memory_equal(back, "abcd", 4);
    assert_int_equal(auth_b64url_decode("-_8", 3, back, sizeof back), 2);
    assert_memory_equal(back, "\xfb\xff", 2);
    assert_int_equal(auth_b64url_decode("YWJjZ", 5, back, sizeof back), -1);
    assert_int_equal(auth_b64url_decode("YW+j", 4, back, sizeof back), -1);
    assert_int_equal(auth_b64url_decode("YWJjZA==", 8, back, sizeof back), -1);
    assert_int_equal(auth_b64url_decode("YWJjZA", 6, back, 3), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),   cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_opts),       cmocka_unit_test(test_simple),
        cmocka_unit_test(test_jwt_rs256),  cmocka_unit_test(test_jwt_rs512),
        cmocka_unit_test(test_jwt_ps256),  cmocka_unit_test(test_jwt_pss_any_salt),
        cmocka_unit_test(test_jwt_es256),  cmocka_unit_test(test_jwt_es256_pkcs8),
        cmocka_unit_test(test_jwt_es384),  cmocka_unit_test(test_jwt_hs256),
        cmocka_unit_test(test_jwt_corpus),
    };
    return cmocka_run_group_tests(tests, make_keys, remove_keys);
}
