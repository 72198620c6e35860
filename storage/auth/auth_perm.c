/*
 * auth_perm.c: merged key-permission interval sets (see auth_perm.h).
 *
 * Owns: the interval normalisation of authpb.Permission, sort + merge of
 * overlapping/adjacent intervals, and the point/range coverage queries
 * (binary search for the last interval starting at or before the key).
 */
#include "auth_perm.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int auth_bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    if (alen == blen) return 0;
    return alen < blen ? -1 : 1;
}

static int ivset_push(auth_ivset_t *s, auth_interval_t iv) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        auth_interval_t *grown = realloc(s->iv, cap * sizeof *grown);
        if (!grown) return -ENOMEM;
        s->iv = grown;
        s->cap = cap;
    }
    s->iv[s->n++] = iv;
    return 0;
}

static void interval_free(auth_interval_t *iv) {
    free(iv->begin);
    free(iv->end);
    memset(iv, 0, sizeof *iv);
}

static void ivset_free(auth_ivset_t *s) {
    for (size_t i = 0; i < s->n; i++) interval_free(&s->iv[i]);
    free(s->iv);
    memset(s, 0, sizeof *s);
}

/* A copy of b (len bytes) followed by `extra` zero bytes; NULL on ENOMEM. */
static uint8_t *bytes_dup(const uint8_t *b, size_t len, size_t extra) {
    uint8_t *d = malloc(len + extra ? len + extra : 1);
    if (!d) return NULL;
    if (len) memcpy(d, b, len);
    memset(d + len, 0, extra);
    return d;
}

/* Builds the interval a permission grants. Returns 1 with *out filled, 0 if
 * the permission grants nothing, -ENOMEM. */
static int perm_interval(const uint8_t *key, size_t key_len, const uint8_t *end, size_t end_len,
                         auth_interval_t *out) {
    memset(out, 0, sizeof *out);
    if (key_len == 0) return 0;
    bool point = end_len == 0;
    bool inf = end_len == 1 && end[0] == 0;
    if (!point && !inf && auth_bytes_cmp(end, end_len, key, key_len) <= 0) return 0;
    out->begin = bytes_dup(key, key_len, 0);
    out->begin_len = key_len;
    if (!out->begin) return -ENOMEM;
    if (inf) {
        out->end_inf = true;
        return 1;
    }
    out->end = point ? bytes_dup(key, key_len, 1) : bytes_dup(end, end_len, 0);
    out->end_len = point ? key_len + 1 : end_len;
    if (!out->end) {
        interval_free(out);
        return -ENOMEM;
    }
    return 1;
}

void auth_perms_init(auth_perms_t *p) { memset(p, 0, sizeof *p); }

void auth_perms_free(auth_perms_t *p) {
    ivset_free(&p->read);
    ivset_free(&p->write);
    p->finished = false;
}

/* Adds a copy of iv (owned by the caller) to s. */
static int ivset_add_copy(auth_ivset_t *s, const auth_interval_t *iv) {
    auth_interval_t c = *iv;
    c.begin = bytes_dup(iv->begin, iv->begin_len, 0);
    c.end = iv->end_inf ? NULL : bytes_dup(iv->end, iv->end_len, 0);
    if (!c.begin || (!iv->end_inf && !c.end)) {
        interval_free(&c);
        return -ENOMEM;
    }
    int rc = ivset_push(s, c);
    if (rc != 0) interval_free(&c);
    return rc;
}

int auth_perms_add(auth_perms_t *p, int perm_type, const uint8_t *key, size_t key_len,
                   const uint8_t *range_end, size_t range_end_len) {
    if (p->finished) return -EINVAL;
    if (perm_type != AUTH_PERM_READ && perm_type != AUTH_PERM_WRITE && perm_type != AUTH_PERM_READWRITE)
        return -EINVAL;
    auth_interval_t iv;
    int rc = perm_interval(key, key_len, range_end, range_end_len, &iv);
    if (rc <= 0) return rc;
    rc = 0;
    if (perm_type == AUTH_PERM_READ || perm_type == AUTH_PERM_READWRITE) rc = ivset_add_copy(&p->read, &iv);
    if (rc == 0 && (perm_type == AUTH_PERM_WRITE || perm_type == AUTH_PERM_READWRITE))
        rc = ivset_add_copy(&p->write, &iv);
    interval_free(&iv);
    return rc;
}

static int interval_begin_cmp(const void *a, const void *b) {
    const auth_interval_t *x = a, *y = b;
    return auth_bytes_cmp(x->begin, x->begin_len, y->begin, y->begin_len);
}

/* End comparison with +inf above every byte string. */
static int end_cmp(const auth_interval_t *x, const auth_interval_t *y) {
    if (x->end_inf || y->end_inf) return (int)x->end_inf - (int)y->end_inf;
    return auth_bytes_cmp(x->end, x->end_len, y->end, y->end_len);
}

/* Does interval x reach (overlap or touch) the begin of y? */
static bool reaches(const auth_interval_t *x, const auth_interval_t *y) {
    return x->end_inf || auth_bytes_cmp(x->end, x->end_len, y->begin, y->begin_len) >= 0;
}

static void ivset_merge(auth_ivset_t *s) {
    if (s->n == 0) return;
    qsort(s->iv, s->n, sizeof s->iv[0], interval_begin_cmp);
    size_t out = 0;
    for (size_t i = 1; i < s->n; i++) {
        auth_interval_t *cur = &s->iv[out], *next = &s->iv[i];
        if (reaches(cur, next)) {
            if (end_cmp(next, cur) > 0) {
                free(cur->end);
                cur->end = next->end;
                cur->end_len = next->end_len;
                cur->end_inf = next->end_inf;
                next->end = NULL;
            }
            interval_free(next);
        } else {
            out++;
            if (out != i) {
                s->iv[out] = *next;
                memset(next, 0, sizeof *next);
            }
        }
    }
    s->n = out + 1;
    for (size_t i = 1; i < s->n; i++) {
        assert(!s->iv[i - 1].end_inf);
        assert(auth_bytes_cmp(s->iv[i - 1].end, s->iv[i - 1].end_len, s->iv[i].begin, s->iv[i].begin_len) <
               0);
    }
}

void auth_perms_finish(auth_perms_t *p) {
    assert(!p->finished);
    ivset_merge(&p->read);
    ivset_merge(&p->write);
    p->finished = true;
}

/* The interval containing key, or NULL. */
static const auth_interval_t *ivset_find(const auth_ivset_t *s, const uint8_t *key, size_t key_len) {
    /* Last interval whose begin <= key. */
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (auth_bytes_cmp(s->iv[mid].begin, s->iv[mid].begin_len, key, key_len) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return NULL;
    const auth_interval_t *iv = &s->iv[lo - 1];
    if (iv->end_inf || auth_bytes_cmp(key, key_len, iv->end, iv->end_len) < 0) return iv;
    return NULL;
}

static bool ivset_covers(const auth_ivset_t *s, const uint8_t *key, size_t key_len, const uint8_t *end,
                         size_t end_len, bool end_inf) {
    if (key_len == 0) return false;
    const auth_interval_t *iv = ivset_find(s, key, key_len);
    if (!iv) return false;
    if (iv->end_inf) return true;
    if (end_inf) return false;
    /* Merged sets: one interval must hold the whole range. end <= key
     * (an inverted request) degenerates to the point check above. */
    return auth_bytes_cmp(end, end_len, iv->end, iv->end_len) <= 0 ||
           auth_bytes_cmp(end, end_len, key, key_len) <= 0;
}

static bool check_one(const auth_ivset_t *s, const uint8_t *key, size_t key_len, const uint8_t *range_end,
                      size_t range_end_len) {
    if (range_end_len == 0) return key_len != 0 && ivset_find(s, key, key_len) != NULL;
    bool inf = range_end_len == 1 && range_end[0] == 0;
    return ivset_covers(s, key, key_len, range_end, range_end_len, inf);
}

bool auth_perms_can_range(const auth_perms_t *p, int want, const uint8_t *key, size_t key_len,
                          const uint8_t *range_end, size_t range_end_len) {
    assert(p->finished);
    bool ok = true;
    if (want == AUTH_PERM_READ || want == AUTH_PERM_READWRITE)
        ok = ok && check_one(&p->read, key, key_len, range_end, range_end_len);
    if (want == AUTH_PERM_WRITE || want == AUTH_PERM_READWRITE)
        ok = ok && check_one(&p->write, key, key_len, range_end, range_end_len);
    if (want != AUTH_PERM_READ && want != AUTH_PERM_WRITE && want != AUTH_PERM_READWRITE) return false;
    return ok;
}

bool auth_perms_can_key(const auth_perms_t *p, int want, const uint8_t *key, size_t key_len) {
    return auth_perms_can_range(p, want, key, key_len, NULL, 0);
}
