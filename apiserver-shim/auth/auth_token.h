/*
 * auth_token.h: etcd's auth token providers (--auth-token), pure and clocked.
 *
 * "simple" (etcd's default): Authenticate hands out "<16 letters>.<raft
 * index>" (auth_token_gen_prefix() before proposing, auth_token_assign()
 * when the entry applies). The provider maps token -> user; a token lives
 * ttl (etcd --auth-token-ttl, default 300 s) after its last use.
 * "jwt,pub-key=P,priv-key=P,sign-method=RS256,ttl=10m": a signed JWT with
 * claims {"exp","revision","username"} as etcd signs them (RS/PS/ES/HS
 * 256/384/512 via wolfCrypt); only a public key given means verify-only.
 * "" (empty): the nop provider, which never issues or accepts tokens.
 *
 * No clocks or threads inside: every call takes now_ms (CLOCK_REALTIME in
 * ms for JWT "exp"; any monotonic clock will do for simple tokens). The
 * owner calls auth_token_expire() about once a second (etcd's 1 s sweep).
 * Not thread-safe: one owner thread (the apply thread, or the loop thread
 * with a lock) calls everything.
 *
 * Errors are negative AUTH_TOKEN_E* values; auth_token_strerror() gives
 * etcd's error text ("auth: invalid auth token", ...).
 */
#ifndef KSHIM_AUTH_TOKEN_H
#define KSHIM_AUTH_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    AUTH_TOKEN_OK = 0,
    AUTH_TOKEN_EINVALID = -1,     /* auth: invalid auth token (unknown, expired, forged, malformed) */
    AUTH_TOKEN_EOPTS = -2,        /* auth: invalid auth options */
    AUTH_TOKEN_EMETHOD = -3,      /* auth: invalid auth signature method */
    AUTH_TOKEN_EMISSINGKEY = -4,  /* auth: missing key data */
    AUTH_TOKEN_EKEYMISMATCH = -5, /* auth: public and private keys don't match */
    AUTH_TOKEN_EVERIFYONLY = -6,  /* auth: token signing attempted with verify-only key */
    AUTH_TOKEN_EAUTHFAILED = -7,  /* auth: authentication failed, ... (nop provider assign) */
    AUTH_TOKEN_ENOMEM = -8,
    AUTH_TOKEN_EEXIST = -9,  /* simple: token already assigned (etcd panics) */
    AUTH_TOKEN_EKEY = -10,   /* key file unreadable or not a usable PEM key */
    AUTH_TOKEN_ECRYPTO = -11 /* wolfCrypt failure while signing */
};
const char *auth_token_strerror(int err);

typedef enum auth_token_kind {
    AUTH_TOKEN_NOP = 0,
    AUTH_TOKEN_SIMPLE = 1,
    AUTH_TOKEN_JWT = 2
} auth_token_kind_t;

#define AUTH_SIMPLE_PREFIX_LEN 16
#define AUTH_SIMPLE_TTL_DEFAULT_MS 300000ULL /* etcd --auth-token-ttl 300 */
#define AUTH_JWT_TTL_DEFAULT_MS 300000ULL    /* etcd jwt DefaultTTL 5m */

/* --auth-token parsed like etcd's decomposeOpts(): "type,k=v,k=v". A
 * non-first item without exactly one '=' or a repeated key is an error;
 * unknown keys are kept count of (etcd only warns). Strings are malloc'd. */
typedef struct auth_token_opts {
    char *type;        /* "simple", "jwt", "" or anything (rejected by auth_token_new) */
    char *sign_method; /* jwt: sign-method */
    char *pub_key;     /* jwt: pub-key path */
    char *priv_key;    /* jwt: priv-key path */
    char *ttl;         /* jwt: ttl, a Go duration ("10m", "1h30m", "300s") */
    int unknown;       /* number of unknown keys */
} auth_token_opts_t;

int auth_token_opts_parse(const char *optstr, auth_token_opts_t *out);
void auth_token_opts_free(auth_token_opts_t *o);

/* Go time.ParseDuration subset (decimal fractions, units ns us ms s m h,
 * several terms, optional sign) rounded down to ms; 0 or -EINVAL (also for
 * negative durations). */
int auth_parse_duration_ms(const char *s, uint64_t *out_ms);

typedef struct auth_token auth_token_t;

/* The user a token stands for; user is malloc'd, free with
 * auth_token_info_clear(). */
typedef struct auth_token_info {
    char *user;
    uint64_t revision;
} auth_token_info_t;
void auth_token_info_clear(auth_token_info_t *info);

/* Builds the provider for --auth-token optstr (NULL means "simple").
 * simple_ttl_ms is --auth-token-ttl (0: default 300 s). JWT key files are
 * read here. On error returns the AUTH_TOKEN_E* value and, if err is not
 * NULL, a human-readable reason. */
int auth_token_new(const char *optstr, uint64_t simple_ttl_ms, auth_token_t **out, char *err, size_t errlen);
void auth_token_free(auth_token_t *t);
auth_token_kind_t auth_token_kind(const auth_token_t *t);

/* etcd's enable()/disable() (auth enable/disable): disable forgets every
 * simple token; a disabled simple provider hands out tokens it does not
 * remember (as etcd does). Providers start enabled. */
void auth_token_enable(auth_token_t *t);
void auth_token_disable(auth_token_t *t);

/* simple: 16 random letters [a-zA-Z] + NUL into out; others: "". */
int auth_token_gen_prefix(auth_token_t *t, char out[AUTH_SIMPLE_PREFIX_LEN + 1]);

/* Issues a token for user. simple: "<prefix>.<index>" (prefix from
 * gen_prefix, index the raft index of the Authenticate entry); jwt: signed
 * with claims {exp: now + ttl (s), revision, username}. *token is
 * malloc'd. */
int auth_token_assign(auth_token_t *t, const char *prefix, uint64_t index, const char *user,
                      uint64_t auth_revision, uint64_t now_ms, char **token);

/* Resolves a token. simple: known and unexpired (the TTL restarts), the
 * revision reported is cur_auth_revision (etcd); jwt: valid signature with
 * this provider's key and method, unexpired, username and revision claims
 * present. AUTH_TOKEN_EINVALID otherwise. */
int auth_token_info(auth_token_t *t, const char *token, uint64_t cur_auth_revision, uint64_t now_ms,
                    auth_token_info_t *info);

/* simple: drops expired tokens (etcd's 1 s sweep); returns how many. */
size_t auth_token_expire(auth_token_t *t, uint64_t now_ms);

/* simple: forgets every token of user (user deleted or password changed). */
void auth_token_invalidate_user(auth_token_t *t, const char *user);

/* Base64url without padding (JWT segments), exposed for tests.
 * encode: out needs 4 * ceil(len / 3) + 1 bytes; returns the length.
 * decode: returns the length or -1 (bad alphabet, padding, length). */
size_t auth_b64url_encode(const uint8_t *in, size_t len, char *out);
long auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t outcap);

#endif
