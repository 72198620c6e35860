/* tests/test_lincheck.c: unit tests of the linearizability checker
 * (e2e/lincheck, a test tool). Owns hand-made histories that are and are
 * not linearizable, and generated large histories (a simulated register
 * with real linearization points) to show the search stays bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "lincheck.h"

/* check: the verdict on TEXT (parsed, checked with LIMITS or defaults). */
static int check_lim(const char *text, const lc_limits_t *lim, lc_summary_t *sum) {
    lc_history_t *h = NULL;
    char err[128] = "";
    int rc = lc_history_parse(text, &h, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "parse: %s\n", err);
        return rc;
    }
    lc_summary_t s;
    rc = lc_check(h, lim, NULL, sum ? sum : &s);
    lc_history_free(h);
    return rc;
}

static int check(const char *text) { return check_lim(text, NULL, NULL); }

/* ---- linearizable ---------------------------------------------------- */

static void test_empty_and_comments(void **state) {
    assert_int_equal(check(""), LC_OK);
    assert_int_equal(check("# nothing\n\n"), LC_OK);
}

static void test_sequential_register(void **state) {
    assert_int_equal(check("1 get x - - 0 1 -\n"
                           "1 put x a - 2 3 ok\n"
                           "1 get x - - 4 5 a\n"
                           "1 del x - - 6 7 1\n"
                           "1 del x - - 8 9 0\n"
                           "1 get x - - 10 11 -\n"
                           "1 cas x b - 12 13 true\n"
                           "1 cas x c a 14 15 false\n"
                           "1 cas x c b 16 17 true\n"
                           "1 get x - - 18 19 c\n"),
                     LC_OK);
}

/* Two overlapping puts: later reads may see either one, as long as all
 * agree once both are done. */
static void test_concurrent_puts_either_order(void **state) {
    const char *base = "1 put x a - 0 100 ok\n"
                       "2 put x b - 10 90 ok\n";
    char buf[512];
    snprintf(buf, sizeof(buf), "%s3 get x - - 120 130 a\n4 get x - - 140 150 a\n", base);
    assert_int_equal(check(buf), LC_OK);
    snprintf(buf, sizeof(buf), "%s3 get x - - 120 130 b\n4 get x - - 140 150 b\n", base);
    assert_int_equal(check(buf), LC_OK);
    /* reads during the puts see a, then b (a first, b overwrote it) */
    snprintf(buf, sizeof(buf), "%s3 get x - - 20 30 a\n3 get x - - 40 50 b\n4 get x - - 140 150 b\n", base);
    assert_int_equal(check(buf), LC_OK);
    /* or b, then a */
    snprintf(buf, sizeof(buf), "%s3 get x - - 20 30 b\n3 get x - - 40 50 a\n4 get x - - 140 150 a\n", base);
    assert_int_equal(check(buf), LC_OK);
    /* a read overlapping a put may see the old or the new value */
    assert_int_equal(check("1 put x a - 0 10 ok\n1 put x b - 20 60 ok\n2 get x - - 30 40 a\n"), LC_OK);
    assert_int_equal(check("1 put x a - 0 10 ok\n1 put x b - 20 60 ok\n2 get x - - 30 40 b\n"), LC_OK);
    /* ties at the same nanosecond count as concurrent */
    assert_int_equal(check("1 put x a - 0 10 ok\n2 get x - - 10 20 -\n"), LC_OK);
}

static void test_timeouts(void **state) {
    /* a timed-out put that took effect (seen later) */
    assert_int_equal(check("1 put x a - 0 10 ok\n"
                           "1 put x b - 20 unknown ?\n"
                           "2 get x - - 30 40 a\n"
                           "2 get x - - 1000 1010 b\n"
                           "3 get x - - 2000 2010 b\n"),
                     LC_OK);
    /* one that did not (never seen, later writes go on) */
    assert_int_equal(check("1 put x a - 0 10 ok\n"
                           "1 put x b - 20 unknown ?\n"
                           "2 get x - - 30 40 a\n"
                           "2 put x c - 50 60 ok\n"
                           "2 get x - - 1000 1010 c\n"),
                     LC_OK);
    /* a timed-out cas, applied and not applied */
    assert_int_equal(check("1 put x a - 0 10 ok\n1 cas x b a 20 unknown ?\n2 get x - - 30 40 b\n"), LC_OK);
    assert_int_equal(check("1 put x a - 0 10 ok\n1 cas x b a 20 unknown ?\n2 get x - - 30 40 a\n"), LC_OK);
    /* a timed-out delete, and a get with unknown outcome (ignored) */
    assert_int_equal(check("1 put x a - 0 10 ok\n1 del x - - 20 unknown ?\n2 get x - - 30 40 -\n"
                           "3 get x - - 5 unknown ?\n"),
                     LC_OK);
    /* a failed cas explained only by an unknown put of an unread value */
    assert_int_equal(check("1 put x a - 0 10 ok\n"
                           "2 put x z - 20 unknown ?\n"
                           "3 cas x b a 30 40 false\n"
                           "3 put x c - 50 60 ok\n"
                           "3 get x - - 70 80 c\n"),
                     LC_OK);
}

/* Thirty clients time out on puts nobody reads (a crash), then reads go on:
 * the search must not try every subset of the unknown puts. */
static void test_many_unknowns_bounded(void **state) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    len += snprintf(buf + len, cap - len, "0 put x a - 0 10 ok\n");
    for (int c = 1; c <= 30; c++)
        len += snprintf(buf + len, cap - len, "%d put x u%d - %d unknown ?\n", c, c, 20 + c);
    for (int i = 0; i < 200; i++)
        len += snprintf(buf + len, cap - len, "99 get x - - %d %d a\n", 100 + 10 * i, 105 + 10 * i);
    lc_limits_t lim = {.max_steps = 200000};
    lc_summary_t sum;
    assert_int_equal(check_lim(buf, &lim, &sum), LC_OK);
    /* the same with one unknown put read at the end */
    len += snprintf(buf + len, cap - len, "99 get x - - 5000 5010 u17\n");
    assert_int_equal(check_lim(buf, &lim, &sum), LC_OK);
    free(buf);
}

/* ---- not linearizable ------------------------------------------------- */

static void test_stale_read(void **state) {
    lc_summary_t sum;
    assert_int_equal(check_lim("1 put x a - 0 10 ok\n"
                               "1 put x b - 20 30 ok\n"
                               "2 get x - - 40 50 a\n",
                               NULL, &sum),
                     LC_VIOLATION);
    assert_string_equal(sum.bad_key, "x");
    assert_int_equal(sum.window_ops, 3);
}

static void test_reads_in_opposite_orders(void **state) {
    assert_int_equal(check("1 put x a - 0 100 ok\n"
                           "2 put x b - 0 100 ok\n"
                           "3 get x - - 10 20 a\n"
                           "3 get x - - 30 40 b\n"
                           "4 get x - - 10 20 b\n"
                           "4 get x - - 30 40 a\n"),
                     LC_VIOLATION);
}

static void test_read_of_unwritten_value(void **state) {
    assert_int_equal(check("1 put x a - 0 10 ok\n2 get x - - 20 30 q\n"), LC_VIOLATION);
    /* a value written to another key */
    assert_int_equal(check("1 put y q - 0 10 ok\n2 get x - - 20 30 q\n"), LC_VIOLATION);
    /* a value whose (unknown) put started only after the read ended */
    assert_int_equal(check("1 get x - - 0 10 b\n2 put x b - 20 unknown ?\n"), LC_VIOLATION);
}

static void test_lost_acknowledged_write(void **state) {
    assert_int_equal(check("1 put x a - 0 10 ok\n2 get x - - 20 30 -\n"), LC_VIOLATION);
    assert_int_equal(check("1 put x a - 0 10 ok\n1 put x b - 20 30 ok\n2 get x - - 40 50 -\n"), LC_VIOLATION);
    /* an acknowledged delete that did not delete */
    assert_int_equal(check("1 put x a - 0 10 ok\n1 del x - - 20 30 1\n2 get x - - 40 50 a\n"), LC_VIOLATION);
}

static void test_bad_cas_and_delete_results(void **state) {
    assert_int_equal(check("1 put x a - 0 10 ok\n1 cas x b a 20 30 false\n"), LC_VIOLATION);
    assert_int_equal(check("1 put x a - 0 10 ok\n1 cas x b - 20 30 true\n"), LC_VIOLATION);
    assert_int_equal(check("1 cas x b a 0 10 true\n"), LC_VIOLATION);
    assert_int_equal(check("1 put x a - 0 10 ok\n1 cas x b a 20 30 true\n2 get x - - 40 50 a\n"),
                     LC_VIOLATION);
    assert_int_equal(check("1 del x - - 0 10 1\n"), LC_VIOLATION);
    assert_int_equal(check("1 put x a - 0 10 ok\n1 del x - - 20 30 0\n"), LC_VIOLATION);
}

/* P-compositionality: one bad key among good ones is named. */
static void test_bad_key_named(void **state) {
    lc_summary_t sum;
    assert_int_equal(check_lim("1 put x a - 0 10 ok\n"
                               "1 put y a - 0 10 ok\n"
                               "2 get x - - 20 30 a\n"
                               "2 get y - - 20 30 -\n",
                               NULL, &sum),
                     LC_VIOLATION);
    assert_string_equal(sum.bad_key, "y");
    assert_int_equal(sum.n_keys, 2);
}

static void test_parse_errors(void **state) {
    lc_history_t *h = NULL;
    char err[128];
    static const char *bad[] = {
        "1 put x a - 0 10\n",          "1 put x - - 0 10 ok\n",  "1 get x a - 0 10 -\n",
        "1 zap x - - 0 10 ok\n",       "1 put x a - 10 5 ok\n",  "1 cas x a b 0 10 maybe\n",
        "1 del x - - 0 10 2\n",        "a put x a - 0 10 ok\n",  "1 put x a b 0 10 ok\n",
        "1 put x a - 0 10 ok extra\n", "1 put x a - -5 10 ok\n", "1 get x - - 0 10 a\n1 put x - - 0 1 ok\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(lc_history_parse(bad[i], &h, err, sizeof(err)), LC_ERR_PARSE);
        assert_true(strncmp(err, "line ", 5) == 0);
    }
    assert_int_equal(lc_history_parse("1 get x a - 0 10 -\n", &h, err, sizeof(err)), LC_ERR_PARSE);
    assert_string_equal(err, "line 1: VALUE must be - for get/del");
    /* a trailing comment is fine (the checker prints windows that way) */
    assert_int_equal(check("1 put x a - 0 10 ok    # line 7\n"), LC_OK);
}

/* The printed window is history lines: re-checked alone it is a violation
 * too, and the stale read's window is exactly its three ops. */
static void test_window_rechecks(void **state) {
    const char *text = "1 put x a - 0 10 ok\n"
                       "2 put y q - 0 10 ok\n"
                       "1 put x b - 20 30 ok\n"
                       "3 get x - - 25 35 a\n"
                       "2 get y - - 40 50 q\n"
                       "3 get x - - 40 50 a\n"
                       "1 put x c - 60 70 ok\n"
                       "3 get x - - 80 90 c\n";
    lc_history_t *h = NULL;
    char err[128];
    assert_int_equal(lc_history_parse(text, &h, err, sizeof(err)), 0);
    char *report = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&report, &len);
    assert_non_null(f);
    lc_summary_t sum;
    assert_int_equal(lc_check(h, NULL, f, &sum), LC_VIOLATION);
    fclose(f);
    lc_history_free(h);
    assert_string_equal(sum.bad_key, "x");
    assert_int_equal(sum.window_ops, 3);
    assert_non_null(strstr(report, "VIOLATION on key x"));
    assert_non_null(strstr(report, "1 put x a - 0 10 ok    # line 1\n"));
    assert_non_null(strstr(report, "1 put x b - 20 30 ok    # line 3\n"));
    assert_non_null(strstr(report, "3 get x - - 40 50 a    # line 6\n"));
    assert_int_equal(check(report), LC_ERR_PARSE); /* the report has a header line */
    char *window = strchr(report, '\n') + 1;
    char *tail = strstr(window, "(the op of line");
    assert_non_null(tail);
    *tail = '\0';
    assert_int_equal(check(window), LC_VIOLATION);
    free(report);
}

/* ---- generated histories ---------------------------------------------- */

typedef struct {
    int client, kind, key;
    int64_t call, lp, ret;
    int unknown; /* 0 known, 1 unknown and applied, 2 unknown and not applied */
    char value[24], expect[24], result[24];
} gen_op_t;

static uint64_t rng_state;
static uint64_t rnd(uint64_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (rng_state >> 33) % n;
}

static int cmp_lp(const void *a, const void *b) {
    const gen_op_t *x = a, *y = b;
    return x->lp < y->lp ? -1 : x->lp > y->lp;
}

/* generate: N ops of CLIENTS sequential clients on NKEYS keys, each op
 * taking effect at a random point inside its interval; UNKNOWN_PCT of the
 * writes time out (half of them applied). Returns the history text. */
static char *generate(size_t n, int clients, int nkeys, int unknown_pct, gen_op_t **out_ops) {
    gen_op_t *ops = calloc(n, sizeof(*ops));
    int64_t *t = calloc((size_t)clients, sizeof(*t));
    assert_non_null(ops);
    assert_non_null(t);
    for (size_t i = 0; i < n; i++) {
        gen_op_t *o = &ops[i];
        o->client = (int)rnd((uint64_t)clients);
        o->key = (int)rnd((uint64_t)nkeys);
        uint64_t p = rnd(100);
        o->kind = p < 40 ? 1 : p < 75 ? 0 : p < 95 ? 3 : 2; /* get, put, cas, del */
        o->call = t[o->client] + (int64_t)rnd(20);
        o->lp = o->call + 1 + (int64_t)rnd(100);
        o->ret = o->lp + 1 + (int64_t)rnd(100);
        if (o->kind != 1 && (int)rnd(100) < unknown_pct) o->unknown = 1 + (int)rnd(2);
        t[o->client] = o->ret + 1;
        snprintf(o->value, sizeof(o->value), "v%zu", i);
    }
    qsort(ops, n, sizeof(*ops), cmp_lp);
    char(*state)[24] = calloc((size_t)nkeys, 24);
    char(*seen)[24] = calloc((size_t)clients * (size_t)nkeys, 24);
    assert_non_null(state);
    assert_non_null(seen);
    for (int k = 0; k < nkeys; k++) strcpy(state[k], "-");
    for (int i = 0; i < clients * nkeys; i++) strcpy(seen[i], "-");
    for (size_t i = 0; i < n; i++) {
        gen_op_t *o = &ops[i];
        char *st = state[o->key], *sn = seen[o->client * nkeys + o->key];
        int apply = o->unknown != 2;
        switch (o->kind) {
        case 0:
            if (apply) strcpy(st, o->value);
            strcpy(o->result, "ok");
            break;
        case 1: strcpy(o->result, st); break;
        case 2:
            strcpy(o->result, strcmp(st, "-") ? "1" : "0");
            if (apply) strcpy(st, "-");
            break;
        default:
            strcpy(o->expect, sn);
            strcpy(o->result, strcmp(st, sn) == 0 ? "true" : "false");
            if (apply && strcmp(st, sn) == 0) strcpy(st, o->value);
        }
        strcpy(sn, o->kind == 1                                            ? o->result
                   : o->kind == 0 || (o->kind == 3 && o->result[0] == 't') ? o->value
                                                                           : "-");
        if (o->unknown) strcpy(sn, "-");
    }
    size_t cap = n * 64 + 1, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    static const char *names[] = {"put", "get", "del", "cas"};
    for (size_t i = 0; i < n; i++) {
        gen_op_t *o = &ops[i];
        int w = o->kind == 0 || o->kind == 3;
        char ret[24];
        snprintf(ret, sizeof(ret), "%lld", (long long)o->ret);
        len += snprintf(text + len, cap - len, "%d %s k%d %s %s %lld %s %s\n", o->client, names[o->kind],
                        o->key, w ? o->value : "-", o->kind == 3 ? o->expect : "-", (long long)o->call,
                        o->unknown ? "unknown" : ret, o->unknown ? "?" : o->result);
    }
    free(t);
    free(state);
    free(seen);
    if (out_ops)
        *out_ops = ops;
    else
        free(ops);
    return text;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 20,000 ops on 8 keys, 10,000 on one key and 10,000 by 32 clients on 4
 * keys, 2% timeouts: linearizable, found within a step budget (a step is
 * one list entry visited; the ~100 unknowns pending on a key are visited
 * again and again, hence up to ~900 per op). The time is printed (0.5 s
 * for all three here), not asserted. */
static void test_generated_large_ok(void **state) {
    struct {
        size_t n;
        int clients, keys;
    } cases[] = {{20000, 8, 8}, {10000, 8, 1}, {10000, 32, 4}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        rng_state = 42 + c;
        char *text = generate(cases[c].n, cases[c].clients, cases[c].keys, 2, NULL);
        lc_limits_t lim = {.max_steps = 2000 * cases[c].n};
        lc_summary_t sum;
        double t0 = now_s();
        assert_int_equal(check_lim(text, &lim, &sum), LC_OK);
        printf("# %zu ops, %d clients, %d keys: OK in %.2f s, %llu steps, %zu unknown outcomes\n", cases[c].n,
               cases[c].clients, cases[c].keys, now_s() - t0, (unsigned long long)sum.steps, sum.n_unknown);
        assert_int_equal(sum.n_ops, cases[c].n);
        free(text);
    }
}

/* A key whose search hits its bound is UNKNOWN (exit code 2), not a hang;
 * the other keys are still checked and a violation still wins. */
static void test_search_limit_is_unknown(void **state) {
    rng_state = 99;
    char *text = generate(2000, 8, 1, 2, NULL);
    lc_limits_t lim = {.max_steps = 100};
    lc_summary_t sum;
    assert_int_equal(check_lim(text, &lim, &sum), LC_UNKNOWN);
    assert_int_equal(sum.n_keys_unknown, 1);
    size_t len = strlen(text);
    char *more = malloc(len + 64);
    assert_non_null(more);
    memcpy(more, text, len);
    strcpy(more + len, "1 get other - - 0 10 never\n");
    assert_int_equal(check_lim(more, &lim, &sum), LC_VIOLATION);
    assert_string_equal(sum.bad_key, "other");
    free(more);
    free(text);
}

/* The same history with one read turned stale (it returns a value that two
 * completed writes before it replaced): a violation, in a small window. */
static void test_generated_corrupted_read(void **state) {
    rng_state = 7;
    size_t n = 10000;
    gen_op_t *ops;
    char *text = generate(n, 8, 8, 2, &ops);
    free(text);
    /* find get g, put w, put x on one key: w.ret < x.call, x.ret < g.call */
    size_t g = n, w = n;
    for (size_t i = n / 2; i < n && g == n; i++) {
        if (ops[i].kind != 1) continue;
        for (size_t j = 0; j < n && g == n; j++) {
            gen_op_t *pw = &ops[j];
            if (pw->kind != 0 || pw->unknown || pw->key != ops[i].key ||
                strcmp(pw->value, ops[i].result) == 0)
                continue;
            for (size_t k = 0; k < n; k++) {
                gen_op_t *px = &ops[k];
                if (px->kind == 0 && !px->unknown && px->key == pw->key && px->call > pw->ret &&
                    px->ret < ops[i].call) {
                    g = i;
                    w = j;
                    break;
                }
            }
        }
    }
    assert_true(g < n);
    strcpy(ops[g].result, ops[w].value);
    size_t cap = n * 64 + 1, len = 0;
    text = malloc(cap);
    assert_non_null(text);
    static const char *names[] = {"put", "get", "del", "cas"};
    for (size_t i = 0; i < n; i++) {
        gen_op_t *o = &ops[i];
        char ret[24];
        snprintf(ret, sizeof(ret), "%lld", (long long)o->ret);
        len += snprintf(text + len, cap - len, "%d %s k%d %s %s %lld %s %s\n", o->client, names[o->kind],
                        o->key, o->kind == 0 || o->kind == 3 ? o->value : "-", o->kind == 3 ? o->expect : "-",
                        (long long)o->call, o->unknown ? "unknown" : ret, o->unknown ? "?" : o->result);
    }
    lc_summary_t sum;
    lc_limits_t lim = {.minimize_seconds = 20};
    assert_int_equal(check_lim(text, &lim, &sum), LC_VIOLATION);
    char key[16];
    snprintf(key, sizeof(key), "k%d", ops[g].key);
    assert_string_equal(sum.bad_key, key);
    printf("# corrupted read: violation on %s, window of %zu ops\n", key, sum.window_ops);
    assert_true(sum.window_ops >= 2 && sum.window_ops <= 8);
    free(text);
    free(ops);
}

/* ---- cross-check with a brute-force search ---------------------------- */

/* A small random history on one key, values from a pool of 3 (not
 * unique), half of them from a real execution (mostly linearizable), half
 * with random results (mostly not). */
typedef struct {
    int kind;                  /* 0 put, 1 get, 2 del, 3 cas */
    int value, expect, result; /* values 0..2, -1 absent; del result -1 "ok" */
    int unknown;
    int call, ret;
} bf_op_t;

static int bf_step(const bf_op_t *o, int st, int *next) {
    *next = st;
    switch (o->kind) {
    case 0: *next = o->value; return 1;
    case 1: return o->unknown || o->result == st;
    case 2: *next = -1; return o->unknown || o->result == -1 || o->result == (st != -1);
    default: {
        int holds = st == o->expect;
        if (holds) *next = o->value;
        return o->unknown || o->result == holds;
    }
    }
}

/* bf_search: is there an order of the unused ops (each after every op that
 * returned before it was called; unknown ops may be left out) that the
 * register accepts? */
static int bf_search(const bf_op_t *ops, int n, int used, int st) {
    int all_known = 1;
    for (int i = 0; i < n; i++)
        if (!(used & (1 << i)) && !ops[i].unknown) all_known = 0;
    if (all_known) return 1;
    for (int i = 0; i < n; i++) {
        if (used & (1 << i)) continue;
        int ready = 1;
        for (int j = 0; j < n && ready; j++)
            if (j != i && !(used & (1 << j)) && !ops[j].unknown && ops[j].ret < ops[i].call) ready = 0;
        int next;
        if (ready && bf_step(&ops[i], st, &next) && bf_search(ops, n, used | (1 << i), next)) return 1;
    }
    return 0;
}

static void bf_generate(bf_op_t *ops, int n, int real) {
    int st = -1;
    for (int i = 0; i < n; i++) {
        bf_op_t *o = &ops[i];
        o->kind = (int)rnd(4);
        o->value = (int)rnd(3);
        o->expect = (int)rnd(4) - 1;
        o->call = (int)rnd(12);
        o->ret = o->call + (int)rnd(6);
        o->unknown = o->kind != 1 && rnd(3) == 0;
        o->result = o->kind == 1 ? (int)rnd(4) - 1 : o->kind == 2 ? (int)rnd(3) - 1 : (int)rnd(2);
    }
    if (!real) return;
    /* results from executing in the order of a random point inside each
     * interval (ties broken by index) */
    int order[8], lp[8];
    for (int i = 0; i < n; i++) {
        order[i] = i;
        lp[i] = ops[i].call * 2 + (int)rnd((uint64_t)(ops[i].ret - ops[i].call) * 2 + 1);
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (lp[order[j]] < lp[order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    for (int i = 0; i < n; i++) {
        bf_op_t *o = &ops[order[i]];
        if (o->unknown && rnd(2)) continue; /* did not take effect */
        if (o->kind == 1) o->result = st;
        if (o->kind == 2) o->result = rnd(4) ? st != -1 : -1;
        if (o->kind == 3) o->result = st == o->expect;
        int next;
        bf_step(o, st, &next);
        st = next;
    }
}

static void test_agrees_with_brute_force(void **state) {
    static const char *names[] = {"put", "get", "del", "cas"};
    static const char *vals[] = {"-", "a", "b", "c"};
    int agree[2] = {0, 0};
    /* LINCHECK_BF_ROUNDS / LINCHECK_BF_SEED: run longer or other cases */
    int rounds = getenv("LINCHECK_BF_ROUNDS") ? atoi(getenv("LINCHECK_BF_ROUNDS")) : 4000;
    rng_state = getenv("LINCHECK_BF_SEED") ? strtoull(getenv("LINCHECK_BF_SEED"), NULL, 10) : 12345;
    for (int round = 0; round < rounds; round++) {
        int n = 1 + (int)rnd(8);
        bf_op_t ops[8];
        bf_generate(ops, n, round % 2);
        char text[1024];
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            const bf_op_t *o = &ops[i];
            const char *res = o->kind == 0   ? "ok"
                              : o->kind == 1 ? vals[o->result + 1]
                              : o->kind == 2 ? (o->result < 0 ? "ok"
                                                : o->result   ? "1"
                                                              : "0")
                                             : (o->result ? "true" : "false");
            char ret[16];
            snprintf(ret, sizeof(ret), "%d", o->ret);
            len += snprintf(text + len, sizeof(text) - len, "%d %s k %s %s %d %s %s\n", i, names[o->kind],
                            o->kind == 0 || o->kind == 3 ? vals[o->value + 1] : "-",
                            o->kind == 3 ? vals[o->expect + 1] : "-", o->call, o->unknown ? "unknown" : ret,
                            o->unknown ? "?" : res);
        }
        int want = bf_search(ops, n, 0, -1) ? LC_OK : LC_VIOLATION;
        int got = check(text);
        if (got != want) fprintf(stderr, "brute force says %d, lincheck %d on:\n%s", want, got, text);
        assert_int_equal(got, want);
        agree[want == LC_OK]++;
    }
    printf("# brute force and lincheck agree on %d histories (%d linearizable, %d not)\n", rounds, agree[1],
           agree[0]);
    assert_true(agree[0] > rounds / 8 && agree[1] > rounds / 8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_comments),
        cmocka_unit_test(test_sequential_register),
        cmocka_unit_test(test_concurrent_puts_either_order),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_many_unknowns_bounded),
        cmocka_unit_test(test_stale_read),
        cmocka_unit_test(test_reads_in_opposite_orders),
        cmocka_unit_test(test_read_of_unwritten_value),
        cmocka_unit_test(test_lost_acknowledged_write),
        cmocka_unit_test(test_bad_cas_and_delete_results),
        cmocka_unit_test(test_bad_key_named),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_window_rechecks),
        cmocka_unit_test(test_generated_large_ok),
        cmocka_unit_test(test_search_limit_is_unknown),
        cmocka_unit_test(test_generated_corrupted_read),
        cmocka_unit_test(test_agrees_with_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
