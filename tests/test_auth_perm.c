/*
 * test_auth_perm.c: storage/auth_perm (etcd's range_perm_cache semantics).
 *
 * etcd's own TestRangePermission/TestKeyPermission cases, prefix and
 * "\0" range ends, READ/WRITE/READWRITE separation, and a randomized check
 * of the merged sets against two oracles over the unmerged permissions:
 * a brute-force enumeration of every key over a small alphabet, and a port
 * of etcd's adt Contains/Intersects logic.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth_perm.h"

#define S(x) (const uint8_t *)(x), strlen(x)

static bool can_range_str(const auth_perms_t *p, int want, const char *a, const char *b) {
    return auth_perms_can_range(p, want, S(a), S(b));
}

static void build(auth_perms_t *p, int type, const char *const *ivs, size_t n) {
    auth_perms_init(p);
    for (size_t i = 0; i < n; i += 2) assert_int_equal(auth_perms_add(p, type, S(ivs[i]), S(ivs[i + 1])), 0);
    auth_perms_finish(p);
}

static void test_etcd_range_cases(void **state) {
    (void)state;
    auth_perms_t p;
    const char *c1[] = {"a", "c", "x", "z"};
    build(&p, AUTH_PERM_READ, c1, 4);
    assert_false(can_range_str(&p, AUTH_PERM_READ, "a", "z"));
    auth_perms_free(&p);

    const char *c2[] = {"a", "f", "c", "d", "f", "z"};
    build(&p, AUTH_PERM_READ, c2, 6);
    assert_true(can_range_str(&p, AUTH_PERM_READ, "a", "z"));
    assert_int_equal(p.read.n, 1); /* adjacent [a,f) [f,z) merged */
    auth_perms_free(&p);

    const char *c3[] = {"a", "d", "a", "b", "c", "f"};
    build(&p, AUTH_PERM_READ, c3, 6);
    assert_true(can_range_str(&p, AUTH_PERM_READ, "a", "f"));
    assert_false(can_range_str(&p, AUTH_PERM_READ, "a", "g"));
    assert_false(can_range_str(&p, AUTH_PERM_WRITE, "a", "f"));
    auth_perms_free(&p);
}

static void test_etcd_key_cases(void **state) {
    (void)state;
    auth_perms_t p;
    const char *c1[] = {"a", "c", "x", "z"};
    build(&p, AUTH_PERM_READ, c1, 4);
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READ, S("f")));
    auth_perms_free(&p);

    const char *c2[] = {"a", "f", "c", "d", "f", "z"};
    build(&p, AUTH_PERM_READ, c2, 6);
    assert_true(auth_perms_can_key(&p, AUTH_PERM_READ, S("b")));
    auth_perms_free(&p);

    const char *c3[] = {"a", "d", "a", "b", "c", "f"};
    build(&p, AUTH_PERM_READ, c3, 6);
    assert_true(auth_perms_can_key(&p, AUTH_PERM_READ, S("d")));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READ, S("f")));
    auth_perms_free(&p);
}

static void test_prefix_point_and_from_key(void **state) {
    (void)state;
    auth_perms_t p;
    auth_perms_init(&p);
    /* etcdctl role grant-permission --prefix r readwrite /registry/ */
    assert_int_equal(auth_perms_add(&p, AUTH_PERM_READWRITE, S("/registry/"), S("/registry0")), 0);
    /* single key, write only */
    assert_int_equal(auth_perms_add(&p, AUTH_PERM_WRITE, S("compact_rev_key"), NULL, 0), 0);
    /* --from-key: range_end "\0" */
    assert_int_equal(auth_perms_add(&p, AUTH_PERM_READ, S("zz"), (const uint8_t *)"", 1), 0);
    assert_int_equal(auth_perms_add(&p, 7, S("q"), NULL, 0), -EINVAL);
    auth_perms_finish(&p);
    assert_int_equal(auth_perms_add(&p, AUTH_PERM_READ, S("q"), NULL, 0), -EINVAL);

    assert_true(auth_perms_can_key(&p, AUTH_PERM_READ, S("/registry/pods/a")));
    assert_true(auth_perms_can_key(&p, AUTH_PERM_WRITE, S("/registry/pods/a")));
    assert_true(auth_perms_can_key(&p, AUTH_PERM_READWRITE, S("/registry/")));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READ, S("/registry")));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READ, S("/registry0")));
    assert_true(can_range_str(&p, AUTH_PERM_READ, "/registry/pods/", "/registry/pods0"));
    assert_true(can_range_str(&p, AUTH_PERM_WRITE, "/registry/", "/registry0"));
    assert_false(can_range_str(&p, AUTH_PERM_READ, "/registry/", "/registry1"));

    assert_true(auth_perms_can_key(&p, AUTH_PERM_WRITE, S("compact_rev_key")));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READ, S("compact_rev_key")));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_WRITE, S("compact_rev_key0")));
    /* [k, k\0) is exactly the single key */
    assert_true(auth_perms_can_range(&p, AUTH_PERM_WRITE, S("compact_rev_key"),
                                     (const uint8_t *)"compact_rev_key\0", 16));
    assert_false(auth_perms_can_range(&p, AUTH_PERM_WRITE, S("compact_rev_key"),
                                      (const uint8_t *)"compact_rev_key\0\0", 17));

    assert_true(auth_perms_can_key(&p, AUTH_PERM_READ, S("zz")));
    assert_true(auth_perms_can_key(&p, AUTH_PERM_READ, (const uint8_t *)"\xff\xff\xff", 3));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READ, S("zy")));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_WRITE, S("zz")));
    /* request range_end "\0": everything from key */
    assert_true(auth_perms_can_range(&p, AUTH_PERM_READ, S("zzz"), (const uint8_t *)"", 1));
    assert_false(auth_perms_can_range(&p, AUTH_PERM_READ, S("/registry/"), (const uint8_t *)"", 1));
    /* empty request key is never permitted */
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READ, NULL, 0));
    /* an inverted request range answers for its start key, as etcd's tree does */
    assert_true(can_range_str(&p, AUTH_PERM_READ, "/registry/x", "/a"));
    assert_false(can_range_str(&p, AUTH_PERM_READ, "/a", "/a"));
    assert_int_equal(auth_perms_add(&p, 9, NULL, 0, NULL, 0), -EINVAL);
    auth_perms_free(&p);
}

static void test_all_keys_and_nothing_grants(void **state) {
    (void)state;
    auth_perms_t p;
    auth_perms_init(&p);
    /* --prefix "" in etcdctl sends key "\0" range_end "\0": all keys */
    assert_int_equal(auth_perms_add(&p, AUTH_PERM_READ, (const uint8_t *)"", 1, (const uint8_t *)"", 1), 0);
    /* grants nothing: empty key, inverted and empty ranges */
    assert_int_equal(auth_perms_add(&p, AUTH_PERM_WRITE, NULL, 0, S("z")), 0);
    assert_int_equal(auth_perms_add(&p, AUTH_PERM_WRITE, S("m"), S("c")), 0);
    assert_int_equal(auth_perms_add(&p, AUTH_PERM_WRITE, S("m"), S("m")), 0);
    auth_perms_finish(&p);
    assert_int_equal(p.write.n, 0);
    assert_int_equal(p.read.n, 1);
    assert_true(auth_perms_can_range(&p, AUTH_PERM_READ, (const uint8_t *)"", 1, (const uint8_t *)"", 1));
    assert_true(auth_perms_can_key(&p, AUTH_PERM_READ, (const uint8_t *)"", 1));
    assert_true(can_range_str(&p, AUTH_PERM_READ, "a", "b"));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_WRITE, S("d")));
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READWRITE, S("d")));
    auth_perms_free(&p);

    /* an empty set denies everything */
    auth_perms_init(&p);
    auth_perms_finish(&p);
    assert_false(auth_perms_can_key(&p, AUTH_PERM_READ, S("a")));
    assert_false(auth_perms_can_range(&p, AUTH_PERM_WRITE, (const uint8_t *)"", 1, (const uint8_t *)"", 1));
    auth_perms_free(&p);
}

/* ---- randomized check against oracles ---- */

#define MAXK 4
typedef struct bkey {
    uint8_t b[MAXK + 1];
    size_t n;
} bkey_t;

typedef struct rperm {
    int type;
    bkey_t key, end;
} rperm_t;

static const uint8_t alphabet[] = {0x00, 'a', 'b', 0xff};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static bkey_t random_key(size_t minlen, size_t maxlen) {
    bkey_t k;
    k.n = minlen + rnd((uint32_t)(maxlen - minlen + 1));
    for (size_t i = 0; i < k.n; i++) k.b[i] = alphabet[rnd(4)];
    return k;
}

static int kcmp(const bkey_t *a, const bkey_t *b) { return auth_bytes_cmp(a->b, a->n, b->b, b->n); }

/* A permission's interval in oracle form: end_inf or [begin, end). */
typedef struct oiv {
    bkey_t b, e;
    bool inf, valid;
} oiv_t;

static oiv_t perm_to_oiv(const rperm_t *p) {
    oiv_t o = {.b = p->key, .valid = p->key.n > 0};
    if (p->end.n == 0) {
        o.e = p->key;
        o.e.b[o.e.n++] = 0;
    } else if (p->end.n == 1 && p->end.b[0] == 0) {
        o.inf = true;
    } else {
        o.e = p->end;
        if (kcmp(&o.e, &o.b) <= 0) o.valid = false;
    }
    return o;
}

static bool grants(const rperm_t *p, int want) { return p->type == AUTH_PERM_READWRITE || p->type == want; }

static bool oracle_key_in(const rperm_t *perms, size_t n, int want, const bkey_t *k) {
    for (size_t i = 0; i < n; i++) {
        if (!grants(&perms[i], want)) continue;
        oiv_t o = perm_to_oiv(&perms[i]);
        if (!o.valid) continue;
        if (kcmp(&o.b, k) <= 0 && (o.inf || kcmp(k, &o.e) < 0)) return true;
    }
    return false;
}

/* Oracle 1: every key of the enumerated universe in [a, end) is granted.
 * All interval endpoints lie in the universe, so this is exact. */
static bkey_t universe[4 + 16 + 64 + 256 + 1024];
static size_t universe_n;

static void build_universe(void) {
    universe_n = 0;
    for (size_t len = 1; len <= MAXK; len++) {
        size_t count = 1;
        for (size_t i = 0; i < len; i++) count *= 4;
        for (size_t c = 0; c < count; c++) {
            bkey_t k = {.n = len};
            size_t v = c;
            for (size_t i = 0; i < len; i++, v /= 4) k.b[len - 1 - i] = alphabet[v % 4];
            universe[universe_n++] = k;
        }
    }
}

static bool oracle_brute(const rperm_t *perms, size_t n, int want, const bkey_t *a, const bkey_t *e,
                         bool inf) {
    if (!oracle_key_in(perms, n, want, a)) return false;
    for (size_t i = 0; i < universe_n; i++) {
        const bkey_t *k = &universe[i];
        if (kcmp(k, a) < 0) continue;
        if (!inf && kcmp(k, e) >= 0) continue;
        if (!oracle_key_in(perms, n, want, k)) return false;
    }
    return true;
}

/* Oracle 2: etcd's adt.intervalTree.Contains over every intersecting
 * interval in begin order (BytesAffineComparable: empty = +inf). */
static int affine_cmp(const bkey_t *a, bool ainf, const bkey_t *b, bool binf) {
    if (ainf || binf) return (int)ainf - (int)binf;
    return kcmp(a, b);
}

static bool oracle_etcd(const rperm_t *perms, size_t n, int want, const bkey_t *a, const bkey_t *e,
                        bool inf) {
    oiv_t hits[64];
    size_t nh = 0;
    for (size_t i = 0; i < n; i++) {
        if (!grants(&perms[i], want)) continue;
        oiv_t x = perm_to_oiv(&perms[i]);
        if (!x.valid) continue;
        bool left = affine_cmp(a, false, &x.b, false) < 0 && affine_cmp(e, inf, &x.b, false) <= 0;
        bool right = affine_cmp(a, false, &x.e, x.inf) >= 0;
        if (!left && !right) hits[nh++] = x;
    }
    for (size_t i = 1; i < nh; i++) /* insertion sort by begin */
        for (size_t j = i; j > 0 && kcmp(&hits[j - 1].b, &hits[j].b) > 0; j--) {
            oiv_t t = hits[j];
            hits[j] = hits[j - 1];
            hits[j - 1] = t;
        }
    if (nh == 0) return false;
    bkey_t max_e = hits[0].e;
    bool max_inf = hits[0].inf;
    for (size_t i = 1; i < nh; i++) {
        if (affine_cmp(&max_e, max_inf, &hits[i].b, false) < 0) return false;
        if (affine_cmp(&hits[i].e, hits[i].inf, &max_e, max_inf) > 0) {
            max_e = hits[i].e;
            max_inf = hits[i].inf;
        }
    }
    return affine_cmp(&max_e, max_inf, e, inf) >= 0 && kcmp(&hits[0].b, a) <= 0;
}

static void test_random_vs_oracles(void **state) {
    (void)state;
    build_universe();
    for (int trial = 0; trial < 400; trial++) {
        rperm_t perms[12];
        size_t n = 1 + rnd(12);
        auth_perms_t p;
        auth_perms_init(&p);
        for (size_t i = 0; i < n; i++) {
            perms[i].type = (int)rnd(3);
            perms[i].key = random_key(rnd(8) == 0 ? 0 : 1, 3);
            uint32_t shape = rnd(6);
            if (shape == 0)
                perms[i].end.n = 0;
            else if (shape == 1)
                perms[i].end = (bkey_t){.b = {0}, .n = 1};
            else
                perms[i].end = random_key(1, 3);
            assert_int_equal(auth_perms_add(&p, perms[i].type, perms[i].key.b, perms[i].key.n, perms[i].end.b,
                                            perms[i].end.n),
                             0);
        }
        auth_perms_finish(&p);
        for (int q = 0; q < 12; q++) {
            int want = rnd(2) ? AUTH_PERM_READ : AUTH_PERM_WRITE;
            bkey_t a = random_key(1, 3);
            /* point query */
            assert_int_equal(auth_perms_can_key(&p, want, a.b, a.n), oracle_key_in(perms, n, want, &a));
            /* proper range or from-key query */
            bool inf = rnd(5) == 0;
            bkey_t e = random_key(1, 4);
            if (!inf && kcmp(&e, &a) <= 0) continue;
            const uint8_t zero = 0;
            bool got = inf ? auth_perms_can_range(&p, want, a.b, a.n, &zero, 1)
                           : auth_perms_can_range(&p, want, a.b, a.n, e.b, e.n);
            bool brute = oracle_brute(perms, n, want, &a, &e, inf);
            bool etcd = oracle_etcd(perms, n, want, &a, &e, inf);
            assert_int_equal(brute, etcd);
            assert_int_equal(got, brute);
            /* READWRITE is the conjunction */
            bool rw = inf ? auth_perms_can_range(&p, AUTH_PERM_READWRITE, a.b, a.n, &zero, 1)
                          : auth_perms_can_range(&p, AUTH_PERM_READWRITE, a.b, a.n, e.b, e.n);
            assert_int_equal(rw, oracle_brute(perms, n, AUTH_PERM_READ, &a, &e, inf) &&
                                     oracle_brute(perms, n, AUTH_PERM_WRITE, &a, &e, inf));
        }
        /* merged sets are sorted, disjoint and non-adjacent */
        for (size_t i = 1; i < p.read.n; i++)
            assert_true(auth_bytes_cmp(p.read.iv[i - 1].end, p.read.iv[i - 1].end_len, p.read.iv[i].begin,
                                       p.read.iv[i].begin_len) < 0);
        auth_perms_free(&p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etcd_range_cases),          cmocka_unit_test(test_etcd_key_cases),
        cmocka_unit_test(test_prefix_point_and_from_key), cmocka_unit_test(test_all_keys_and_nothing_grants),
        cmocka_unit_test(test_random_vs_oracles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
