/*
 * fuzz_auth_token.c: every string an operator or a client hands the token
 * layer (apiserver-shim/auth/auth_token.c): a token checked by a JWT (RS256)
 * and by a simple-token provider, the --auth-token option string and a Go
 * duration. The first byte picks the parser. A token never resolves to a
 * user unless it is one this provider issued.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_token.h"
#include "fuzz.h"

static auth_token_t *jwt, *simple;
static char *issued; /* a valid JWT, so mutations start from a real one */

static char *key_path(const char *name) {
    static char path[2][4200];
    static int which;
    char *p = path[which++ & 1];
    snprintf(p, 4200, "%s/%s", fuzz_tmpdir(), name);
    return p;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *priv = key_path("jwt.key");
    const char *pub = key_path("jwt.pub");
    char cmd[9000];
    snprintf(
        cmd, sizeof cmd,
        "openssl genrsa -out '%s' 2048 2>/dev/null && openssl rsa -in '%s' -pubout -out '%s' 2>/dev/null",
        priv, priv, pub);
    if (system(cmd) != 0) abort();
    char opts[9000], err[256];
    snprintf(opts, sizeof opts, "jwt,pub-key=%s,priv-key=%s,sign-method=RS256,ttl=10m", pub, priv);
    if (auth_token_new(opts, 0, &jwt, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_auth_token: %s\n", err);
        abort();
    }
    if (auth_token_new("simple", 0, &simple, err, sizeof err) != 0) abort();
    if (auth_token_assign(jwt, "", 7, "root", 3, 1000, &issued) != 0) abort();
    char prefix[AUTH_SIMPLE_PREFIX_LEN + 1];
    char *st = NULL;
    if (auth_token_gen_prefix(simple, prefix) != 0 ||
        auth_token_assign(simple, prefix, 9, "alice", 1, 1000, &st))
        abort();
    free(st);
    return 0;
}

static void check_token(auth_token_t *t, const char *tok) {
    auth_token_info_t info = {0};
    if (auth_token_info(t, tok, 3, 2000, &info) == 0) {
        assert(info.user != NULL);
        /* Only the tokens issued in LLVMFuzzerInitialize can be valid: the
         * JWT one says root (a mutation that still verifies changed no
         * signed byte), the simple one alice. */
        assert(strcmp(info.user, t == jwt ? "root" : "alice") == 0);
    }
    auth_token_info_clear(&info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char *s = malloc(size);
    if (!s) return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0: check_token(jwt, s); break;
    case 1: check_token(simple, s); break;
    case 2: { /* the valid JWT with the input spliced into its middle */
        size_t n = strlen(issued), at = size % (n + 1);
        char *t = malloc(n + size + 1);
        if (t) {
            memcpy(t, issued, at);
            memcpy(t + at, s, size - 1);
            strcpy(t + at + size - 1, issued + at);
            check_token(jwt, t);
            free(t);
        }
        break;
    }
    case 3: {
        auth_token_opts_t o;
        if (auth_token_opts_parse(s, &o) == 0) auth_token_opts_free(&o);
        break;
    }
    default: {
        uint64_t ms;
        (void)auth_parse_duration_ms(s, &ms);
        break;
    }
    }
    free(s);
    return 0;
}
