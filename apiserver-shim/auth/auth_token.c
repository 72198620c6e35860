/*
 * auth_token.c: etcd's auth token providers (see auth_token.h).
 *
 * Owns: --auth-token option parsing, Go duration parsing, the simple token
 * table (chained hash map token -> user + expiry), JWT issue/verify
 * (base64url, a small strict JSON reader for header and claims, wolfCrypt
 * RSA PKCS#1 v1.5 / RSA-PSS / ECDSA (raw r||s) / HMAC signatures).
 */
#include "auth_token.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/signature.h>

/* ------------------------------------------------------------------ */
/* errors                                                               */

const char *auth_token_strerror(int err) {
    switch (err) {
    case AUTH_TOKEN_OK: return "ok";
    case AUTH_TOKEN_EINVALID: return "auth: invalid auth token";
    case AUTH_TOKEN_EOPTS: return "auth: invalid auth options";
    case AUTH_TOKEN_EMETHOD: return "auth: invalid auth signature method";
    case AUTH_TOKEN_EMISSINGKEY: return "auth: missing key data";
    case AUTH_TOKEN_EKEYMISMATCH: return "auth: public and private keys don't match";
    case AUTH_TOKEN_EVERIFYONLY: return "auth: token signing attempted with verify-only key";
    case AUTH_TOKEN_EAUTHFAILED: return "auth: authentication failed, invalid user ID or password";
    case AUTH_TOKEN_ENOMEM: return "auth: out of memory";
    case AUTH_TOKEN_EEXIST: return "auth: token is already used";
    case AUTH_TOKEN_EKEY: return "auth: cannot load key";
    case AUTH_TOKEN_ECRYPTO: return "auth: failed to sign token";
    default: return "auth: unknown error";
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* option and duration parsing                                          */

void auth_token_opts_free(auth_token_opts_t *o) {
    free(o->type);
    free(o->sign_method);
    free(o->pub_key);
    free(o->priv_key);
    free(o->ttl);
    memset(o, 0, sizeof *o);
}

static char *dup_range(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Stores one "k=v" item; the slot for a known key, or counts it unknown. */
static int opts_set(auth_token_opts_t *o, const char *item, size_t len) {
    const char *eq = memchr(item, '=', len);
    if (!eq || memchr(eq + 1, '=', len - (size_t)(eq + 1 - item))) return AUTH_TOKEN_EOPTS;
    size_t klen = (size_t)(eq - item);
    char **slot = NULL;
    if (klen == 11 && memcmp(item, "sign-method", 11) == 0)
        slot = &o->sign_method;
    else if (klen == 7 && memcmp(item, "pub-key", 7) == 0)
        slot = &o->pub_key;
    else if (klen == 8 && memcmp(item, "priv-key", 8) == 0)
        slot = &o->priv_key;
    else if (klen == 3 && memcmp(item, "ttl", 3) == 0)
        slot = &o->ttl;
    if (!slot) {
        /* etcd also rejects a repeated unknown key; we only count them. */
        o->unknown++;
        return 0;
    }
    if (*slot) return AUTH_TOKEN_EOPTS; /* duplicated parameter */
    *slot = dup_range(eq + 1, len - klen - 1);
    return *slot ? 0 : AUTH_TOKEN_ENOMEM;
}

int auth_token_opts_parse(const char *optstr, auth_token_opts_t *out) {
    memset(out, 0, sizeof *out);
    const char *comma = strchr(optstr, ',');
    size_t tlen = comma ? (size_t)(comma - optstr) : strlen(optstr);
    out->type = dup_range(optstr, tlen);
    if (!out->type) return AUTH_TOKEN_ENOMEM;
    while (comma) {
        const char *item = comma + 1;
        comma = strchr(item, ',');
        size_t len = comma ? (size_t)(comma - item) : strlen(item);
        int rc = opts_set(out, item, len);
        if (rc != 0) {
            auth_token_opts_free(out);
            return rc;
        }
    }
    return 0;
}

/* Unit length and its size in nanoseconds, longest names first. */
static const struct {
    const char *name;
    double ns;
} duration_units[] = {
    {"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
    {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9},
};

int auth_parse_duration_ms(const char *s, uint64_t *out_ms) {
    const char *p = s;
    bool neg = false;
    if (*p == '-' || *p == '+') neg = *p++ == '-';
    if (strcmp(p, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    if (*p == 0) return -EINVAL;
    double total_ns = 0;
    while (*p) {
        const char *num = p;
        while ((*p >= '0' && *p <= '9') || *p == '.') p++;
        if (p == num || (p - num == 1 && *num == '.')) return -EINVAL;
        char buf[64];
        if ((size_t)(p - num) >= sizeof buf) return -EINVAL;
        memcpy(buf, num, (size_t)(p - num));
        buf[p - num] = 0;
        if (strchr(buf, '.') != strrchr(buf, '.')) return -EINVAL;
        double v = strtod(buf, NULL);
        size_t best = 0;
        double unit = 0;
        for (size_t i = 0; i < sizeof duration_units / sizeof duration_units[0]; i++) {
            size_t n = strlen(duration_units[i].name);
            if (strncmp(p, duration_units[i].name, n) == 0 && n > best) {
                best = n;
                unit = duration_units[i].ns;
            }
        }
        /* "m" must not swallow the "m" of "ms": longest match wins above. */
        if (best == 0) return -EINVAL;
        p += best;
        total_ns += v * unit;
    }
    if (neg && total_ns > 0) return -EINVAL;
    if (total_ns > 9.2e18) return -EINVAL; /* Go: invalid duration (overflow) */
    *out_ms = (uint64_t)(total_ns / 1e6);
    return 0;
}

/* ------------------------------------------------------------------ */
/* base64url                                                            */

static const char b64url_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t auth_b64url_encode(const uint8_t *in, size_t len, char *out) {
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
        out[o++] = b64url_chars[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_chars[v >> 18 & 63];
        out[o++] = b64url_chars[v >> 12 & 63];
        out[o++] = b64url_chars[v >> 6 & 63];
    }
    out[o] = 0;
    return o;
}

static int b64url_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

long auth_b64url_decode(const char *in, size_t len, uint8_t *out, size_t outcap) {
    if (len % 4 == 1) return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > outcap) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    assert(o == need);
    return (long)o;
}

/* ------------------------------------------------------------------ */
/* a strict JSON reader for one flat object (nested values are skipped) */

typedef struct jreader {
    const char *p, *end;
} jreader_t;

typedef enum jtype { J_ABSENT = 0, J_STRING, J_NUMBER, J_OTHER } jtype_t;

/* The members of a JWT header/claims object we look at (last one wins). */
typedef struct jfield {
    const char *name;
    jtype_t type;
    double num;
    char *str;
    bool has_nul; /* the string holds a \u0000 (str ends there) */
} jfield_t;

static void jskip_ws(jreader_t *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int jhex4(jreader_t *r, uint32_t *v) {
    if (r->end - r->p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *r->p++;
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

/* Reads a string at r->p (which is '"'). If out is not NULL, *out gets a
 * malloc'd NUL-terminated decoding and *out_len its length. Returns 0 or -1. */
static int jstring(jreader_t *r, char **out, size_t *out_len) {
    if (r->p >= r->end || *r->p != '"') return -1;
    r->p++;
    size_t cap = (size_t)(r->end - r->p) + 1;
    char *buf = out ? malloc(cap) : NULL;
    if (out && !buf) return -1;
    size_t n = 0;
    char tmp[4];
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p++;
        size_t k = 1;
        tmp[0] = (char)c;
        if (c < 0x20) goto fail;
        if (c == '\\') {
            if (r->p >= r->end) goto fail;
            char e = *r->p++;
            switch (e) {
            case '"':
            case '\\':
            case '/': tmp[0] = e; break;
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (jhex4(r, &cp) != 0) goto fail;
                if (cp >= 0xd800 && cp < 0xdc00 && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') {
                    jreader_t save = *r;
                    uint32_t lo;
                    r->p += 2;
                    if (jhex4(r, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000)
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    else
                        *r = save, cp = 0xfffd;
                } else if (cp >= 0xd800 && cp < 0xe000) {
                    cp = 0xfffd; /* lone surrogate, as Go */
                }
                k = utf8_put(cp, tmp);
                break;
            }
            default: goto fail;
            }
        }
        if (buf) {
            assert(n + k < cap + 4);
            memcpy(buf + n, tmp, k);
        }
        n += k;
    }
    if (r->p >= r->end) goto fail;
    r->p++;
    if (buf) {
        buf[n] = 0;
        *out = buf;
        *out_len = n;
    }
    return 0;
fail:
    free(buf);
    return -1;
}

/* JSON number grammar, then strtod. */
static int jnumber(jreader_t *r, double *v) {
    const char *s = r->p;
    const char *p = s;
    if (p < r->end && *p == '-') p++;
    if (p >= r->end) return -1;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    else
        return -1;
    if (p < r->end && *p == '.') {
        p++;
        if (p >= r->end || *p < '0' || *p > '9') return -1;
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < r->end && (*p == '+' || *p == '-')) p++;
        if (p >= r->end || *p < '0' || *p > '9') return -1;
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    }
    char buf[64];
    if ((size_t)(p - s) >= sizeof buf) return -1;
    memcpy(buf, s, (size_t)(p - s));
    buf[p - s] = 0;
    *v = strtod(buf, NULL);
    if (isinf(*v)) return -1; /* Go: "cannot unmarshal number 1e400 into float64" */
    r->p = p;
    return 0;
}

static int jliteral(jreader_t *r, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0) return -1;
    r->p += n;
    return 0;
}

static int jvalue(jreader_t *r, int depth, jfield_t *f);

static int jcontainer(jreader_t *r, int depth, char close, bool is_object, jfield_t *fields, size_t nfields) {
    if (depth > 32) return -1;
    r->p++;
    jskip_ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return 0;
    }
    for (;;) {
        jfield_t *target = NULL;
        if (is_object) {
            jskip_ws(r);
            char *name = NULL;
            size_t name_len = 0;
            if (jstring(r, fields ? &name : NULL, &name_len) != 0) return -1;
            for (size_t i = 0; name && strlen(name) == name_len && i < nfields; i++)
                if (strcmp(name, fields[i].name) == 0) target = &fields[i];
            free(name);
            jskip_ws(r);
            if (r->p >= r->end || *r->p != ':') return -1;
            r->p++;
        }
        if (jvalue(r, depth + 1, target) != 0) return -1;
        jskip_ws(r);
        if (r->p >= r->end) return -1;
        if (*r->p == close) {
            r->p++;
            return 0;
        }
        if (*r->p != ',') return -1;
        r->p++;
    }
}

/* Reads any value; when f is not NULL records its type and content. */
static int jvalue(jreader_t *r, int depth, jfield_t *f) {
    jskip_ws(r);
    if (r->p >= r->end) return -1;
    jtype_t type = J_OTHER;
    int rc;
    double num = 0;
    char *str = NULL;
    size_t str_len = 0;
    switch (*r->p) {
    case '"':
        rc = jstring(r, f ? &str : NULL, &str_len);
        type = J_STRING;
        break;
    case '{': rc = jcontainer(r, depth, '}', true, NULL, 0); break;
    case '[': rc = jcontainer(r, depth, ']', false, NULL, 0); break;
    case 't': rc = jliteral(r, "true"); break;
    case 'f': rc = jliteral(r, "false"); break;
    case 'n': rc = jliteral(r, "null"); break;
    default:
        rc = jnumber(r, &num);
        type = J_NUMBER;
        break;
    }
    if (rc != 0) return -1;
    if (f) {
        free(f->str);
        f->type = type;
        f->num = num;
        f->str = str;
        f->has_nul = str && strlen(str) != str_len;
    }
    return 0;
}

/* Parses a document that must be one object: nothing may follow it but
 * white space (json.Unmarshal, the JWT header), or anything may
 * (json.Decoder.Decode, the JWT claims: golang-jwt never reads past the
 * first value). */
static int jparse_object(const char *s, size_t len, bool trailing_ok, jfield_t *fields, size_t nfields) {
    jreader_t r = {s, s + len};
    jskip_ws(&r);
    if (r.p >= r.end || *r.p != '{') return -1;
    if (jcontainer(&r, 0, '}', true, fields, nfields) != 0) return -1;
    jskip_ws(&r);
    return r.p == r.end || trailing_ok ? 0 : -1;
}

static void jfields_free(jfield_t *fields, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(fields[i].str);
        fields[i].str = NULL;
    }
}

/* Appends s as a JSON string the way Go's encoding/json writes it. */
static size_t json_quote(const char *s, char *out) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    out[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if (c == '\t') {
            out[o++] = '\\';
            out[o++] = 't';
        } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            memcpy(out + o, "\\u00", 4);
            o += 4;
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = 0;
    return o;
}

/* ------------------------------------------------------------------ */
/* provider state                                                       */

typedef struct simple_entry {
    char *token;
    char *user;
    uint64_t expires_ms;
    struct simple_entry *next;
} simple_entry_t;

typedef enum jwt_family { JWT_RSA, JWT_PSS, JWT_ECDSA, JWT_HMAC } jwt_family_t;

typedef struct jwt_method {
    const char *alg;
    jwt_family_t family;
    enum wc_HashType hash;
    int hmac_type;
    int mgf;
    int ec_bytes; /* ECDSA: curve size in bytes (r and s each) */
} jwt_method_t;

static const jwt_method_t jwt_methods[] = {
    {"RS256", JWT_RSA, WC_HASH_TYPE_SHA256, 0, 0, 0},
    {"RS384", JWT_RSA, WC_HASH_TYPE_SHA384, 0, 0, 0},
    {"RS512", JWT_RSA, WC_HASH_TYPE_SHA512, 0, 0, 0},
    {"PS256", JWT_PSS, WC_HASH_TYPE_SHA256, 0, WC_MGF1SHA256, 0},
    {"PS384", JWT_PSS, WC_HASH_TYPE_SHA384, 0, WC_MGF1SHA384, 0},
    {"PS512", JWT_PSS, WC_HASH_TYPE_SHA512, 0, WC_MGF1SHA512, 0},
    {"ES256", JWT_ECDSA, WC_HASH_TYPE_SHA256, 0, 0, 32},
    {"ES384", JWT_ECDSA, WC_HASH_TYPE_SHA384, 0, 0, 48},
    {"ES512", JWT_ECDSA, WC_HASH_TYPE_SHA512, 0, 0, 66},
    {"HS256", JWT_HMAC, WC_HASH_TYPE_SHA256, WC_SHA256, 0, 0},
    {"HS384", JWT_HMAC, WC_HASH_TYPE_SHA384, WC_SHA384, 0, 0},
    {"HS512", JWT_HMAC, WC_HASH_TYPE_SHA512, WC_SHA512, 0, 0},
};

static const jwt_method_t *jwt_method_find(const char *alg) {
    for (size_t i = 0; alg && i < sizeof jwt_methods / sizeof jwt_methods[0]; i++)
        if (strcmp(alg, jwt_methods[i].alg) == 0) return &jwt_methods[i];
    return NULL;
}

#define SIMPLE_BUCKETS 1024

struct auth_token {
    auth_token_kind_t kind;
    bool enabled;
    /* simple */
    uint64_t ttl_ms;
    simple_entry_t **buckets; /* SIMPLE_BUCKETS chains */
    size_t count;
    /* jwt */
    const jwt_method_t *method;
    bool verify_only;
    bool have_rsa, have_ecc, have_rng;
    RsaKey rsa;
    ecc_key ecc;
    uint8_t *hmac_key;
    size_t hmac_len;
    WC_RNG rng;
};

auth_token_kind_t auth_token_kind(const auth_token_t *t) { return t->kind; }

void auth_token_info_clear(auth_token_info_t *info) {
    free(info->user);
    memset(info, 0, sizeof *info);
}

/* ------------------------------------------------------------------ */
/* simple tokens                                                        */

static size_t token_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return (size_t)(h % SIMPLE_BUCKETS);
}

static void simple_entry_free(simple_entry_t *e) {
    free(e->token);
    free(e->user);
    free(e);
}

static void simple_clear(auth_token_t *t) {
    for (size_t i = 0; t->buckets && i < SIMPLE_BUCKETS; i++) {
        simple_entry_t *e = t->buckets[i];
        while (e) {
            simple_entry_t *next = e->next;
            simple_entry_free(e);
            e = next;
        }
        t->buckets[i] = NULL;
    }
    t->count = 0;
}

static simple_entry_t **simple_find(auth_token_t *t, const char *token) {
    simple_entry_t **pp = &t->buckets[token_hash(token)];
    while (*pp && strcmp((*pp)->token, token) != 0) pp = &(*pp)->next;
    return pp;
}

static void simple_unlink(auth_token_t *t, simple_entry_t **pp) {
    simple_entry_t *e = *pp;
    *pp = e->next;
    simple_entry_free(e);
    t->count--;
}

/* etcd's isValidSimpleToken(): "<prefix>.<int>" (strconv.Atoi). */
static bool simple_token_well_formed(const char *token) {
    const char *dot = strchr(token, '.');
    if (!dot || strchr(dot + 1, '.')) return false;
    const char *p = dot + 1;
    if (*p == '+' || *p == '-') p++;
    if (*p == 0) return false;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

static int simple_gen_prefix(char out[AUTH_SIMPLE_PREFIX_LEN + 1]) {
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    size_t n = 0;
    while (n < AUTH_SIMPLE_PREFIX_LEN) {
        uint8_t buf[32];
        ssize_t got = getrandom(buf, sizeof buf, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return AUTH_TOKEN_ECRYPTO;
        }
        for (ssize_t i = 0; i < got && n < AUTH_SIMPLE_PREFIX_LEN; i++)
            if (buf[i] < 208) out[n++] = letters[buf[i] % 52]; /* 208 = 4 * 52: unbiased */
    }
    out[n] = 0;
    return 0;
}

static int simple_assign(auth_token_t *t, const char *prefix, uint64_t index, const char *user,
                         uint64_t now_ms, char **token) {
    size_t len = strlen(prefix) + 22;
    char *tok = malloc(len);
    if (!tok) return AUTH_TOKEN_ENOMEM;
    snprintf(tok, len, "%s.%" PRIu64, prefix, index);
    if (!t->enabled) { /* etcd: a disabled keeper does not remember it */
        *token = tok;
        return 0;
    }
    simple_entry_t **pp = simple_find(t, tok);
    if (*pp) {
        free(tok);
        return AUTH_TOKEN_EEXIST;
    }
    simple_entry_t *e = calloc(1, sizeof *e);
    char *tcopy = strdup(tok);
    char *ucopy = strdup(user);
    if (!e || !tcopy || !ucopy) {
        free(e);
        free(tcopy);
        free(ucopy);
        free(tok);
        return AUTH_TOKEN_ENOMEM;
    }
    e->token = tcopy;
    e->user = ucopy;
    e->expires_ms = now_ms + t->ttl_ms;
    *pp = e;
    t->count++;
    *token = tok;
    return 0;
}

static int simple_info(auth_token_t *t, const char *token, uint64_t cur_rev, uint64_t now_ms,
                       auth_token_info_t *info) {
    if (!simple_token_well_formed(token) || !t->enabled) return AUTH_TOKEN_EINVALID;
    simple_entry_t **pp = simple_find(t, token);
    if (!*pp) return AUTH_TOKEN_EINVALID;
    if (now_ms > (*pp)->expires_ms) {
        simple_unlink(t, pp);
        return AUTH_TOKEN_EINVALID;
    }
    info->user = strdup((*pp)->user);
    if (!info->user) return AUTH_TOKEN_ENOMEM;
    info->revision = cur_rev;
    (*pp)->expires_ms = now_ms + t->ttl_ms;
    return 0;
}

static size_t simple_expire(auth_token_t *t, uint64_t now_ms) {
    size_t dropped = 0;
    for (size_t i = 0; t->buckets && i < SIMPLE_BUCKETS; i++) {
        simple_entry_t **pp = &t->buckets[i];
        while (*pp) {
            if (now_ms > (*pp)->expires_ms) {
                simple_unlink(t, pp);
                dropped++;
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    return dropped;
}

static void simple_invalidate_user(auth_token_t *t, const char *user) {
    for (size_t i = 0; t->buckets && i < SIMPLE_BUCKETS; i++) {
        simple_entry_t **pp = &t->buckets[i];
        while (*pp) {
            if (strcmp((*pp)->user, user) == 0)
                simple_unlink(t, pp);
            else
                pp = &(*pp)->next;
        }
    }
}

/* ------------------------------------------------------------------ */
/* JWT keys                                                             */

static int read_file(const char *path, uint8_t **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        uint8_t *grown = realloc(buf, cap + 1);
        if (!grown) {
            free(buf);
            buf = NULL;
        } else {
            buf = grown;
        }
    }
    bool failed = !buf || ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

/* Loads a PEM private key of the method's family into t. */
static int load_private(auth_token_t *t, const uint8_t *pem, size_t pem_len) {
    uint8_t *der = malloc(pem_len);
    if (!der) return AUTH_TOKEN_ENOMEM;
    int rc = AUTH_TOKEN_EKEY;
    int der_len = wc_KeyPemToDer(pem, (int)pem_len, der, (int)pem_len, NULL);
    if (der_len > 0) {
        word32 idx = 0;
        if (wc_GetPkcs8TraditionalOffset(der, &idx, (word32)der_len) < 0) idx = 0;
        if (t->method->family == JWT_ECDSA) {
            if (wc_EccPrivateKeyDecode(der, &idx, &t->ecc, (word32)der_len) == 0 &&
                wc_ecc_size(&t->ecc) == t->method->ec_bytes)
                rc = 0;
        } else if (wc_RsaPrivateKeyDecode(der, &idx, &t->rsa, (word32)der_len) == 0) {
            rc = 0;
        }
    }
    free(der);
    return rc;
}

/* The public key's DER (SubjectPublicKeyInfo, or PKCS#1 RSAPublicKey) from
 * a PEM "PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE" (golang-jwt's
 * ParseRSAPublicKeyFromPEM / ParseECPublicKeyFromPEM accept all three).
 * der has room for pem_len bytes; returns its length, or <= 0. */
static int public_der(const uint8_t *pem, size_t pem_len, uint8_t *der) {
    if (!strstr((const char *)pem, "-----BEGIN CERTIFICATE-----"))
        return wc_PubKeyPemToDer(pem, (int)pem_len, der, (int)pem_len);
    WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_buffer(pem, (int)pem_len, WOLFSSL_FILETYPE_PEM);
    if (!x) return -1;
    int len = (int)pem_len;
    if (wolfSSL_X509_get_pubkey_buffer(x, der, &len) != WOLFSSL_SUCCESS) len = -1;
    wolfSSL_X509_free(x);
    return len;
}

static int load_public(const jwt_method_t *m, const uint8_t *pem, size_t pem_len, RsaKey *rsa, ecc_key *ecc) {
    uint8_t *der = malloc(pem_len);
    if (!der) return AUTH_TOKEN_ENOMEM;
    int rc = AUTH_TOKEN_EKEY;
    int der_len = public_der(pem, pem_len, der);
    word32 idx = 0;
    if (der_len > 0) {
        if (m->family == JWT_ECDSA) {
            if (wc_EccPublicKeyDecode(der, &idx, ecc, (word32)der_len) == 0 &&
                wc_ecc_size(ecc) == m->ec_bytes)
                rc = 0;
        } else if (wc_RsaPublicKeyDecode(der, &idx, rsa, (word32)der_len) == 0) {
            rc = 0;
        }
    }
    free(der);
    return rc;
}

static bool rsa_same_public(RsaKey *a, RsaKey *b) {
    uint8_t ea[16], eb[16], na[1024], nb[1024];
    word32 eal = sizeof ea, ebl = sizeof eb, nal = sizeof na, nbl = sizeof nb;
    if (wc_RsaFlattenPublicKey(a, ea, &eal, na, &nal) != 0) return false;
    if (wc_RsaFlattenPublicKey(b, eb, &ebl, nb, &nbl) != 0) return false;
    return eal == ebl && nal == nbl && memcmp(ea, eb, eal) == 0 && memcmp(na, nb, nal) == 0;
}

static bool ecc_same_public(ecc_key *a, ecc_key *b) {
    uint8_t pa[160], pb[160];
    word32 la = sizeof pa, lb = sizeof pb;
    if (wc_ecc_export_x963(a, pa, &la) != 0) return false;
    if (wc_ecc_export_x963(b, pb, &lb) != 0) return false;
    return la == lb && memcmp(pa, pb, la) == 0;
}

/* etcd's jwtOptions.Key(): private key if given (checked against the public
 * key if both are given), else public key only (verify-only). */
static int jwt_load_keys(auth_token_t *t, const auth_token_opts_t *o, char *err, size_t errlen) {
    uint8_t *priv = NULL, *pub = NULL;
    size_t priv_len = 0, pub_len = 0;
    int rc = 0;
    if (o->priv_key && *o->priv_key && read_file(o->priv_key, &priv, &priv_len) != 0) {
        set_err(err, errlen, "cannot read priv-key %s", o->priv_key);
        return AUTH_TOKEN_EKEY;
    }
    if (o->pub_key && *o->pub_key && read_file(o->pub_key, &pub, &pub_len) != 0) {
        free(priv);
        set_err(err, errlen, "cannot read pub-key %s", o->pub_key);
        return AUTH_TOKEN_EKEY;
    }
    if (t->method->family == JWT_HMAC) {
        if (!priv || priv_len == 0) {
            rc = AUTH_TOKEN_EMISSINGKEY;
        } else {
            t->hmac_key = priv;
            t->hmac_len = priv_len;
            priv = NULL;
        }
        goto out;
    }
    if (!priv && !pub) {
        rc = AUTH_TOKEN_EMISSINGKEY;
        goto out;
    }
    bool ec = t->method->family == JWT_ECDSA;
    if (ec)
        t->have_ecc = wc_ecc_init(&t->ecc) == 0;
    else
        t->have_rsa = wc_InitRsaKey(&t->rsa, NULL) == 0;
    if (!t->have_ecc && !t->have_rsa) {
        rc = AUTH_TOKEN_ECRYPTO;
        goto out;
    }
    if (priv) {
        rc = load_private(t, priv, priv_len);
        if (rc != 0) {
            set_err(err, errlen, "priv-key %s is not a %s private key", o->priv_key, t->method->alg);
            goto out;
        }
        if (pub) {
            RsaKey rsa;
            ecc_key ecc;
            bool same = false;
            if (ec && wc_ecc_init(&ecc) == 0) {
                same =
                    load_public(t->method, pub, pub_len, NULL, &ecc) == 0 && ecc_same_public(&t->ecc, &ecc);
                wc_ecc_free(&ecc);
            } else if (!ec && wc_InitRsaKey(&rsa, NULL) == 0) {
                same =
                    load_public(t->method, pub, pub_len, &rsa, NULL) == 0 && rsa_same_public(&t->rsa, &rsa);
                wc_FreeRsaKey(&rsa);
            }
            if (!same) rc = AUTH_TOKEN_EKEYMISMATCH;
        }
    } else {
        rc = load_public(t->method, pub, pub_len, &t->rsa, &t->ecc);
        if (rc != 0) set_err(err, errlen, "pub-key %s is not a %s public key", o->pub_key, t->method->alg);
        t->verify_only = true;
    }
out:
    free(priv);
    free(pub);
    if (rc != 0 && err && errlen && !*err) set_err(err, errlen, "%s", auth_token_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------------ */
/* JWT signing and verification                                         */

#define JWT_SIG_MAX 1024 /* RSA up to 8192 bits */

static int jwt_digest(const jwt_method_t *m, const uint8_t *data, size_t len, uint8_t *out, word32 *out_len) {
    int n = wc_HashGetDigestSize(m->hash);
    if (n <= 0 || wc_Hash(m->hash, data, (word32)len, out, (word32)n) != 0) return -1;
    *out_len = (word32)n;
    return 0;
}

static int jwt_hmac(auth_token_t *t, const uint8_t *data, size_t len, uint8_t *out, word32 *out_len) {
    Hmac h;
    int ok = wc_HmacInit(&h, NULL, INVALID_DEVID) == 0;
    ok = ok && wc_HmacSetKey(&h, t->method->hmac_type, t->hmac_key, (word32)t->hmac_len) == 0 &&
         wc_HmacUpdate(&h, data, (word32)len) == 0 && wc_HmacFinal(&h, out) == 0;
    wc_HmacFree(&h);
    *out_len = (word32)wc_HashGetDigestSize(t->method->hash);
    return ok ? 0 : -1;
}

/* Signs data into sig (JWT form: ECDSA as fixed-size r || s). */
static int jwt_sign(auth_token_t *t, const uint8_t *data, size_t len, uint8_t *sig, word32 *sig_len) {
    const jwt_method_t *m = t->method;
    uint8_t digest[WC_MAX_DIGEST_SIZE];
    word32 dlen;
    switch (m->family) {
    case JWT_HMAC: return jwt_hmac(t, data, len, sig, sig_len);
    case JWT_RSA:
        return wc_SignatureGenerate(m->hash, WC_SIGNATURE_TYPE_RSA_W_ENC, data, (word32)len, sig, sig_len,
                                    &t->rsa, sizeof t->rsa, &t->rng) == 0
                   ? 0
                   : -1;
    case JWT_PSS: {
        if (jwt_digest(m, data, len, digest, &dlen) != 0) return -1;
        int n = wc_RsaPSS_Sign_ex(digest, dlen, sig, *sig_len, m->hash, m->mgf, RSA_PSS_SALT_LEN_DEFAULT,
                                  &t->rsa, &t->rng);
        if (n <= 0) return -1;
        *sig_len = (word32)n;
        return 0;
    }
    case JWT_ECDSA: {
        uint8_t der[256];
        word32 der_len = sizeof der;
        if (wc_SignatureGenerate(m->hash, WC_SIGNATURE_TYPE_ECC, data, (word32)len, der, &der_len, &t->ecc,
                                 sizeof t->ecc, &t->rng) != 0)
            return -1;
        uint8_t r[80], s[80];
        word32 rl = sizeof r, sl = sizeof s;
        int n = m->ec_bytes;
        if (wc_ecc_sig_to_rs(der, der_len, r, &rl, s, &sl) != 0 || rl > (word32)n || sl > (word32)n)
            return -1;
        memset(sig, 0, (size_t)(2 * n));
        memcpy(sig + n - rl, r, rl);
        memcpy(sig + 2 * n - sl, s, sl);
        *sig_len = (word32)(2 * n);
        return 0;
    }
    }
    return -1;
}

/* The modulus of t's RSA key, big-endian without leading zeros; 0 on error. */
static size_t rsa_modulus(auth_token_t *t, uint8_t n[JWT_SIG_MAX]) {
    uint8_t e[16];
    word32 elen = sizeof e, nlen = JWT_SIG_MAX;
    if (wc_RsaFlattenPublicKey(&t->rsa, e, &elen, n, &nlen) != 0) return 0;
    size_t skip = 0;
    while (skip < nlen && n[skip] == 0) skip++;
    memmove(n, n + skip, nlen - skip);
    return nlen - skip;
}

/* s (k bytes, as N) reduced mod N in place, as Go 1.19's crypto/rsa does
 * without a word (its verify raises s to e mod N, s >= N included);
 * wolfCrypt refuses s >= N, so that one is reduced first. */
static void rsa_reduce(uint8_t *s, const uint8_t *n, size_t k) {
    for (int round = 0; round < 256 && memcmp(s, n, k) >= 0; round++) {
        int borrow = 0;
        for (size_t i = k; i-- > 0;) {
            int d = s[i] - n[i] - borrow;
            borrow = d < 0;
            s[i] = (uint8_t)(d + (borrow ? 256 : 0));
        }
    }
}

/* MGF1 (RFC 8017 B.2.1) of seed XORed into db. */
static int mgf1_xor(enum wc_HashType hash, const uint8_t *seed, size_t seed_len, uint8_t *db, size_t db_len) {
    uint8_t in[WC_MAX_DIGEST_SIZE + 4], out[WC_MAX_DIGEST_SIZE];
    int hl = wc_HashGetDigestSize(hash);
    if (hl <= 0 || seed_len > WC_MAX_DIGEST_SIZE) return -1;
    memcpy(in, seed, seed_len);
    size_t done = 0;
    for (uint32_t c = 0; done < db_len; c++) {
        in[seed_len] = (uint8_t)(c >> 24);
        in[seed_len + 1] = (uint8_t)(c >> 16);
        in[seed_len + 2] = (uint8_t)(c >> 8);
        in[seed_len + 3] = (uint8_t)c;
        if (wc_Hash(hash, in, (word32)seed_len + 4, out, (word32)hl) != 0) return -1;
        for (int i = 0; i < hl && done < db_len; i++) db[done++] ^= out[i];
    }
    return 0;
}

/* EMSA-PSS-VERIFY with the salt length read from the encoding, as Go's
 * rsa.VerifyPSS with PSSSaltLengthAuto (golang-jwt's PS* VerifyOptions):
 * em is emLen bytes of an emBits-bit encoding. */
static bool pss_verify_auto(enum wc_HashType hash, const uint8_t *digest, size_t hlen, const uint8_t *em,
                            size_t em_len, size_t em_bits) {
    if (em_len < hlen + 2 || em[em_len - 1] != 0xbc) return false;
    size_t db_len = em_len - hlen - 1;
    uint8_t db[JWT_SIG_MAX];
    memcpy(db, em, db_len);
    const uint8_t *h = em + db_len;
    uint8_t bit_mask = (uint8_t)(0xff >> (8 * em_len - em_bits));
    if (em[0] & ~bit_mask) return false;
    if (mgf1_xor(hash, h, hlen, db, db_len) != 0) return false;
    db[0] &= bit_mask;
    size_t ps_len = 0;
    while (ps_len < db_len && db[ps_len] == 0) ps_len++;
    if (ps_len == db_len || db[ps_len] != 0x01) return false;
    size_t salt_len = db_len - ps_len - 1;
    uint8_t mprime[8 + WC_MAX_DIGEST_SIZE + JWT_SIG_MAX];
    memset(mprime, 0, 8);
    memcpy(mprime + 8, digest, hlen);
    memcpy(mprime + 8 + hlen, db + ps_len + 1, salt_len);
    uint8_t h2[WC_MAX_DIGEST_SIZE];
    if (wc_Hash(hash, mprime, (word32)(8 + hlen + salt_len), h2, (word32)hlen) != 0) return false;
    return memcmp(h2, h, hlen) == 0;
}

/* RSA-PSS as golang-jwt verifies it (any salt length, s mod N). */
static bool rsa_pss_verify(auth_token_t *t, const jwt_method_t *m, const uint8_t *digest, size_t dlen,
                           const uint8_t *sig, size_t sig_len) {
    uint8_t n[JWT_SIG_MAX], s[JWT_SIG_MAX], out[JWT_SIG_MAX];
    size_t k = rsa_modulus(t, n);
    if (k == 0 || sig_len != k) return false;
    memcpy(s, sig, k);
    rsa_reduce(s, n, k);
    word32 out_len = sizeof out; /* wc_RsaDirect returns the length, leaves out_len */
    int got = wc_RsaDirect(s, (word32)k, out, &out_len, &t->rsa, RSA_PUBLIC_DECRYPT, NULL);
    if (got < 0 || (size_t)got != k) return false;
    size_t mod_bits = 8 * k;
    for (uint8_t top = n[0]; !(top & 0x80); top <<= 1) mod_bits--;
    size_t em_bits = mod_bits - 1, em_len = (em_bits + 7) / 8;
    for (size_t i = 0; i < k - em_len; i++) /* Go: m.BitLen() > emLen * 8 */
        if (out[i] != 0) return false;
    return pss_verify_auto(m->hash, digest, dlen, out + (k - em_len), em_len, em_bits);
}

/* RSA PKCS#1 v1.5, with s mod N as Go 1.19 takes it. */
static bool rsa_pkcs1_verify(auth_token_t *t, const jwt_method_t *m, const uint8_t *data, size_t len,
                             const uint8_t *sig, size_t sig_len) {
    uint8_t n[JWT_SIG_MAX], s[JWT_SIG_MAX];
    size_t k = rsa_modulus(t, n);
    if (k == 0 || sig_len != k) return false;
    memcpy(s, sig, k);
    rsa_reduce(s, n, k);
    return wc_SignatureVerify(m->hash, WC_SIGNATURE_TYPE_RSA_W_ENC, data, (word32)len, s, (word32)k, &t->rsa,
                              sizeof t->rsa) == 0;
}

static bool jwt_verify_sig(auth_token_t *t, const uint8_t *data, size_t len, const uint8_t *sig,
                           size_t sig_len) {
    const jwt_method_t *m = t->method;
    uint8_t digest[WC_MAX_DIGEST_SIZE];
    word32 dlen;
    switch (m->family) {
    case JWT_HMAC: {
        uint8_t mac[WC_MAX_DIGEST_SIZE];
        word32 mlen;
        if (jwt_hmac(t, data, len, mac, &mlen) != 0 || mlen != sig_len) return false;
        uint8_t diff = 0;
        for (size_t i = 0; i < sig_len; i++) diff |= (uint8_t)(mac[i] ^ sig[i]);
        return diff == 0;
    }
    case JWT_RSA: return rsa_pkcs1_verify(t, m, data, len, sig, sig_len);
    case JWT_PSS:
        if (jwt_digest(m, data, len, digest, &dlen) != 0) return false;
        return rsa_pss_verify(t, m, digest, dlen, sig, sig_len);
    case JWT_ECDSA: {
        size_t n = (size_t)m->ec_bytes;
        if (sig_len != 2 * n) return false; /* golang-jwt: ErrECDSAVerification */
        uint8_t der[256];
        word32 der_len = sizeof der;
        if (wc_ecc_rs_raw_to_sig(sig, (word32)n, sig + n, (word32)n, der, &der_len) != 0) return false;
        return wc_SignatureVerify(m->hash, WC_SIGNATURE_TYPE_ECC, data, (word32)len, der, der_len, &t->ecc,
                                  sizeof t->ecc) == 0;
    }
    }
    return false;
}

static int jwt_assign(auth_token_t *t, const char *user, uint64_t rev, uint64_t now_ms, char **token) {
    if (t->verify_only) return AUTH_TOKEN_EVERIFYONLY;
    char header[64];
    int hlen = snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", t->method->alg);
    size_t ulen = strlen(user);
    size_t cap = 6 * ulen + 128;
    char *claims = malloc(cap);
    if (!claims) return AUTH_TOKEN_ENOMEM;
    int64_t exp = (int64_t)((now_ms + t->ttl_ms) / 1000);
    size_t clen = (size_t)snprintf(claims, cap,
                                   "{\"exp\":%" PRId64 ",\"revision\":%" PRIu64 ",\"username\":", exp, rev);
    clen += json_quote(user, claims + clen);
    claims[clen++] = '}';
    claims[clen] = 0;

    size_t tcap = (size_t)hlen * 2 + clen * 2 + JWT_SIG_MAX * 2 + 8;
    char *tok = malloc(tcap);
    if (!tok) {
        free(claims);
        return AUTH_TOKEN_ENOMEM;
    }
    size_t n = auth_b64url_encode((const uint8_t *)header, (size_t)hlen, tok);
    tok[n++] = '.';
    n += auth_b64url_encode((const uint8_t *)claims, clen, tok + n);
    free(claims);
    uint8_t sig[JWT_SIG_MAX];
    word32 sig_len = sizeof sig;
    if (jwt_sign(t, (const uint8_t *)tok, n, sig, &sig_len) != 0) {
        free(tok);
        return AUTH_TOKEN_ECRYPTO;
    }
    tok[n++] = '.';
    n += auth_b64url_encode(sig, sig_len, tok + n);
    assert(n < tcap);
    *token = tok;
    return 0;
}

/* Decodes one base64url segment into a fresh buffer (NUL-terminated). */
static uint8_t *segment_decode(const char *s, size_t len, size_t *out_len) {
    uint8_t *buf = malloc(len + 1);
    if (!buf) return NULL;
    long n = auth_b64url_decode(s, len, buf, len);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *out_len = (size_t)n;
    return buf;
}

/* Go's int64(f) on amd64: out of range (and NaN) gives INT64_MIN. */
static int64_t go_float_to_int64(double f) {
    if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)f;
}

/* Go's uint64(f) on amd64 (the compiler's two-range conversion: below 2^63
 * through int64, else int64(f - 2^63) | 1 << 63, so 1e30 gives 2^63). */
static uint64_t go_float_to_uint64(double f) {
    if (f < 9223372036854775808.0) return (uint64_t)go_float_to_int64(f);
    return (uint64_t)go_float_to_int64(f - 9223372036854775808.0) | UINT64_C(1) << 63;
}

/* A claim time as golang-jwt compares it: newNumericDateFromSeconds(f) =
 * time.Unix(int64(whole), int64(frac * 1e9)) truncated to the second, as
 * Go's internal seconds since year 1 (which wrap, as Go's addition does):
 * a fraction never counts, 1e300 is far in the past. */
static int64_t go_claim_seconds(double f) {
    double whole;
    double frac = modf(f, &whole);
    uint64_t sec = (uint64_t)go_float_to_int64(whole);
    if ((int64_t)(frac * 1e9) < 0) sec--; /* time.Unix borrows a second */
    return (int64_t)(sec + UINT64_C(62135596800));
}

/* golang-jwt MapClaims time checks at now (whole seconds): exp (now before
 * exp), iat and nbf (now not before them); absent or 0 passes; a
 * non-number fails. */
static bool claims_time_ok(const jfield_t *exp, const jfield_t *iat, const jfield_t *nbf, uint64_t now_ms) {
    int64_t now = go_claim_seconds((double)(now_ms / 1000));
    if (exp->type != J_ABSENT && exp->type != J_NUMBER) return false;
    if (iat->type != J_ABSENT && iat->type != J_NUMBER) return false;
    if (nbf->type != J_ABSENT && nbf->type != J_NUMBER) return false;
    if (exp->type == J_NUMBER && exp->num != 0 && !(now < go_claim_seconds(exp->num))) return false;
    if (iat->type == J_NUMBER && iat->num != 0 && now < go_claim_seconds(iat->num)) return false;
    if (nbf->type == J_NUMBER && nbf->num != 0 && now < go_claim_seconds(nbf->num)) return false;
    return true;
}

static int jwt_info(auth_token_t *t, const char *token, uint64_t now_ms, auth_token_info_t *info) {
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.')) return AUTH_TOKEN_EINVALID;
    size_t hlen = 0, clen = 0, slen = 0;
    uint8_t *header = segment_decode(token, (size_t)(d1 - token), &hlen);
    uint8_t *claims = segment_decode(d1 + 1, (size_t)(d2 - d1 - 1), &clen);
    uint8_t *sig = segment_decode(d2 + 1, strlen(d2 + 1), &slen);
    jfield_t hf[] = {{.name = "alg"}};
    jfield_t cf[] = {
        {.name = "username"}, {.name = "revision"}, {.name = "exp"}, {.name = "iat"}, {.name = "nbf"}};
    int rc = AUTH_TOKEN_EINVALID;
    if (!header || !claims || !sig) goto out;
    if (jparse_object((const char *)header, hlen, false, hf, 1) != 0 || hf[0].type != J_STRING) goto out;
    if (hf[0].has_nul) goto out; /* "RS256\u0000" is no method golang-jwt knows */
    if (strcmp(hf[0].str, t->method->alg) != 0) goto out;
    if (jparse_object((const char *)claims, clen, true, cf, 5) != 0) goto out;
    if (!jwt_verify_sig(t, (const uint8_t *)token, (size_t)(d2 - token), sig, slen)) goto out;
    if (!claims_time_ok(&cf[2], &cf[3], &cf[4], now_ms)) goto out;
    /* etcd: claims["username"].(string), claims["revision"].(float64) */
    if (cf[0].type != J_STRING || cf[1].type != J_NUMBER) goto out;
    /* etcd would look up "root\u0000x" as itself (no such user); user names
     * are C strings here, so such a token is refused rather than let it
     * stand for "root". */
    if (cf[0].has_nul) goto out;
    info->user = cf[0].str;
    cf[0].str = NULL;
    info->revision = go_float_to_uint64(cf[1].num); /* etcd: uint64(claims["revision"].(float64)) */
    rc = 0;
out:
    jfields_free(hf, 1);
    jfields_free(cf, 5);
    free(header);
    free(claims);
    free(sig);
    return rc;
}

/* ------------------------------------------------------------------ */
/* provider dispatch                                                    */

static int jwt_init(auth_token_t *t, const auth_token_opts_t *o, char *err, size_t errlen) {
    t->ttl_ms = AUTH_JWT_TTL_DEFAULT_MS;
    if (o->ttl && *o->ttl && auth_parse_duration_ms(o->ttl, &t->ttl_ms) != 0) {
        set_err(err, errlen, "invalid jwt ttl %s", o->ttl);
        return AUTH_TOKEN_EOPTS;
    }
    t->method = jwt_method_find(o->sign_method);
    if (!t->method) {
        set_err(err, errlen, "invalid jwt sign-method %s", o->sign_method ? o->sign_method : "(none)");
        return AUTH_TOKEN_EMETHOD;
    }
    if (wc_InitRng(&t->rng) != 0) return AUTH_TOKEN_ECRYPTO;
    t->have_rng = true;
    int rc = jwt_load_keys(t, o, err, errlen);
    if (rc != 0) return rc;
    if (t->have_rsa && !t->verify_only && wc_RsaSetRNG(&t->rsa, &t->rng) != 0) return AUTH_TOKEN_ECRYPTO;
    return 0;
}

int auth_token_new(const char *optstr, uint64_t simple_ttl_ms, auth_token_t **out, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    auth_token_opts_t o;
    int rc = auth_token_opts_parse(optstr ? optstr : "simple", &o);
    if (rc != 0) {
        set_err(err, errlen, "%s", auth_token_strerror(rc));
        return rc;
    }
    auth_token_t *t = calloc(1, sizeof *t);
    if (!t) {
        auth_token_opts_free(&o);
        return AUTH_TOKEN_ENOMEM;
    }
    t->enabled = true;
    if (strcmp(o.type, "simple") == 0) {
        t->kind = AUTH_TOKEN_SIMPLE;
        t->ttl_ms = simple_ttl_ms ? simple_ttl_ms : AUTH_SIMPLE_TTL_DEFAULT_MS;
        t->buckets = calloc(SIMPLE_BUCKETS, sizeof *t->buckets);
        if (!t->buckets) rc = AUTH_TOKEN_ENOMEM;
    } else if (strcmp(o.type, "jwt") == 0) {
        t->kind = AUTH_TOKEN_JWT;
        rc = jwt_init(t, &o, err, errlen);
    } else if (o.type[0] == 0) {
        t->kind = AUTH_TOKEN_NOP;
    } else {
        set_err(err, errlen, "unknown token type %s", o.type);
        rc = AUTH_TOKEN_EOPTS;
    }
    auth_token_opts_free(&o);
    if (rc != 0) {
        if (err && errlen && !*err) set_err(err, errlen, "%s", auth_token_strerror(rc));
        auth_token_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void auth_token_free(auth_token_t *t) {
    if (!t) return;
    simple_clear(t);
    free(t->buckets);
    if (t->have_rsa) wc_FreeRsaKey(&t->rsa);
    if (t->have_ecc) wc_ecc_free(&t->ecc);
    if (t->have_rng) wc_FreeRng(&t->rng);
    if (t->hmac_key) {
        memset(t->hmac_key, 0, t->hmac_len);
        free(t->hmac_key);
    }
    free(t);
}

void auth_token_enable(auth_token_t *t) { t->enabled = true; }

void auth_token_disable(auth_token_t *t) {
    t->enabled = false;
    simple_clear(t);
}

int auth_token_gen_prefix(auth_token_t *t, char out[AUTH_SIMPLE_PREFIX_LEN + 1]) {
    if (t->kind != AUTH_TOKEN_SIMPLE) {
        out[0] = 0;
        return 0;
    }
    return simple_gen_prefix(out);
}

int auth_token_assign(auth_token_t *t, const char *prefix, uint64_t index, const char *user,
                      uint64_t auth_revision, uint64_t now_ms, char **token) {
    *token = NULL;
    switch (t->kind) {
    case AUTH_TOKEN_SIMPLE: return simple_assign(t, prefix ? prefix : "", index, user, now_ms, token);
    case AUTH_TOKEN_JWT: return jwt_assign(t, user, auth_revision, now_ms, token);
    default: return AUTH_TOKEN_EAUTHFAILED;
    }
}

int auth_token_info(auth_token_t *t, const char *token, uint64_t cur_auth_revision, uint64_t now_ms,
                    auth_token_info_t *info) {
    memset(info, 0, sizeof *info);
    switch (t->kind) {
    case AUTH_TOKEN_SIMPLE: return simple_info(t, token, cur_auth_revision, now_ms, info);
    case AUTH_TOKEN_JWT: return jwt_info(t, token, now_ms, info);
    default: return AUTH_TOKEN_EINVALID;
    }
}

size_t auth_token_expire(auth_token_t *t, uint64_t now_ms) {
    return t->kind == AUTH_TOKEN_SIMPLE ? simple_expire(t, now_ms) : 0;
}

void auth_token_invalidate_user(auth_token_t *t, const char *user) {
    if (t->kind == AUTH_TOKEN_SIMPLE) simple_invalidate_user(t, user);
}
