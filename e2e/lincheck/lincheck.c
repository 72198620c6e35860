/* e2e/lincheck/lincheck.c: a linearizability checker for recorded histories
 * of etcd-style key-value operations (test tool: e2e/test_lincheck_crash.sh,
 * tests/test_lincheck.c). Owns parsing the history, the register model,
 * the search and the violation report.
 *
 * History format: one operation per line, 8 fields separated by blanks;
 * '#' starts a comment (a whole line or after the 8 fields), blank lines
 * are ignored.
 *
 *     CLIENT OP KEY VALUE EXPECT CALL_NS RETURN_NS RESULT
 *
 *   CLIENT     integer, the client (worker) that issued the operation
 *   OP         put | get | del | cas
 *   KEY        the key (a token without blanks)
 *   VALUE      put: the value written; cas: the value written if the
 *              compare holds; get, del: "-"
 *   EXPECT     cas: the value compared with (etcd Txn "if value(KEY) ==
 *              EXPECT then put KEY VALUE"), or "-" for "KEY does not exist"
 *              (etcd: version(KEY) == 0); other ops: "-"
 *   CALL_NS    invocation time (ns, any monotonic clock shared by all lines)
 *   RETURN_NS  completion time (ns, >= CALL_NS), or "unknown": the outcome is
 *              not known (timeout, connection lost), so the operation may or
 *              may not have taken effect at any point after CALL_NS
 *   RESULT     put: "ok"; get: the value read, or "-" for "no such key";
 *              del: the number of keys deleted (0 or 1) or "ok"
 *              (unconstrained); cas: "true" (compare held, value written) or
 *              "false"; with RETURN_NS "unknown": ignored (write "?")
 *
 * Values are tokens without blanks; "-" is never a value. Every key starts
 * absent. A get with an unknown outcome has no effect and is dropped.
 *
 * Algorithm (Wing & Gong's search with Lowe's just-in-time linearization and
 * memoization, as in porcupine): linearizability is P-compositional (Herlihy
 * & Wing), so the history is split by key and each key is checked alone as a
 * register. A key's operations become a doubly linked list of call and
 * return entries sorted by time (a call before a return at the same
 * nanosecond: ties count as concurrent). The search walks the list: at a
 * call entry it tries to linearize that operation now (the register model
 * accepts it in the current state with its recorded result); if it does
 * and the pair (set of linearized operations, new state) has not been seen
 * before, the operation's call and return entries are lifted out of the
 * list, pushed on a stack, and the walk restarts at the head. At a return
 * entry the operation it belongs to should have been linearized already:
 * the search backtracks (pops the last linearized operation, puts its
 * entries back, continues after its call). An empty stack at a return
 * entry means no linearization exists: a violation. The search succeeds
 * once every operation with a known outcome is linearized (operations with
 * unknown outcomes have their return at +infinity and an unconstrained
 * result, so the rest can all go at the end). The memo keeps the set as a
 * 128-bit Zobrist fingerprint (24 bytes an entry, see memo_t).
 *
 * Reductions (each one keeps at least one linearization if any exists;
 * tests/test_lincheck.c checks the verdicts against a brute-force search):
 * (1) a value that no get returns and no cas compares with is
 * "unobserved": every such value is the same state (UNOBS), since no later
 * operation can tell them apart; (2) unknown operations with the same
 * effect on that state (puts, deletes, or cas ops with the same EXPECT, of
 * unobserved values) are interchangeable, so they form a class, kept out of
 * the list, whose members are linearized in invocation order only; (3) an
 * unknown operation that would leave the state as it is is not linearized
 * there, nor one right before a blind write (a known put or unconstrained
 * delete): either way it can as well go at the end; (4) a "pure" known
 * operation (a get, a failed cas, a delete of nothing: its result means it
 * changes no state wherever it goes) that the model accepts now is the
 * only choice tried at that point: moved ahead of the operations a
 * linearization puts before it, it changes nothing for them.
 *
 * Each key's search is bounded by steps, wall time and memo memory; a key
 * that hits a bound is "unknown" (exit code 2), never a hang. A violation is
 * shrunk (delta debugging: remove chunks of operations while the rest still
 * violates, never removing the writer of a value a remaining op reads, and
 * keeping the culprit: the op whose return ended the deepest dead end of
 * the search, as long as the window without it is linearizable) and printed
 * as history lines, a re-checkable minimal window. */
#include "lincheck.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { KIND_PUT, KIND_GET, KIND_DEL, KIND_CAS };
enum { ST_ABSENT = -1, ST_UNOBS = -2 };
enum { RES_ANY = -1 };                         /* del with "ok": count unconstrained */
enum { MEMO_FULL = -100 };                     /* the memo reached max_cache_bytes */
enum { TL_NO = 0, TL_ADDED = 1, TL_SEEN = 2 }; /* try_linearize results */

typedef struct {
    long client;
    int kind;
    int key;      /* key id */
    int value;    /* put/cas: value id written; else -1 */
    int expect;   /* cas: value id, or ST_ABSENT */
    int result;   /* get: value id or ST_ABSENT; del: 0, 1 or RES_ANY; cas: 0/1 */
    bool unknown; /* outcome unknown: return at +infinity */
    int64_t call; /* ns */
    int64_t ret;  /* ns; INT64_MAX if unknown */
    size_t line;  /* line in the input */
} lc_op_t;

/* Interned strings: id -> string, hash -> id. */
typedef struct {
    char **str;
    size_t n, cap;
    int *slot; /* open addressing, -1 empty */
    size_t nslot;
} strtab_t;

struct lc_history {
    lc_op_t *ops;
    size_t n, cap;
    strtab_t keys, values;
};

/* ---- strings ---------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int strtab_grow(strtab_t *t) {
    size_t nslot = t->nslot ? t->nslot * 2 : 64;
    int *slot = malloc(nslot * sizeof(*slot));
    if (!slot) return LC_ERR_NOMEM;
    for (size_t i = 0; i < nslot; i++) slot[i] = -1;
    for (size_t id = 0; id < t->n; id++) {
        size_t i = hash_str(t->str[id]) & (nslot - 1);
        while (slot[i] >= 0) i = (i + 1) & (nslot - 1);
        slot[i] = (int)id;
    }
    free(t->slot);
    t->slot = slot;
    t->nslot = nslot;
    return 0;
}

/* strtab_intern: the id of S, added if new; negative error. */
static int strtab_intern(strtab_t *t, const char *s) {
    if ((t->n + 1) * 2 > t->nslot && strtab_grow(t) < 0) return LC_ERR_NOMEM;
    size_t i = hash_str(s) & (t->nslot - 1);
    for (; t->slot[i] >= 0; i = (i + 1) & (t->nslot - 1))
        if (strcmp(t->str[t->slot[i]], s) == 0) return t->slot[i];
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **str = realloc(t->str, cap * sizeof(*str));
        if (!str) return LC_ERR_NOMEM;
        t->str = str;
        t->cap = cap;
    }
    char *copy = strdup(s);
    if (!copy) return LC_ERR_NOMEM;
    t->str[t->n] = copy;
    t->slot[i] = (int)t->n;
    return (int)t->n++;
}

static void strtab_free(strtab_t *t) {
    for (size_t i = 0; i < t->n; i++) free(t->str[i]);
    free(t->str);
    free(t->slot);
}

/* ---- parsing ---------------------------------------------------------- */

static int parse_kind(const char *s) {
    static const char *names[] = {"put", "get", "del", "cas"};
    for (int k = 0; k < 4; k++)
        if (strcmp(s, names[k]) == 0) return k;
    return -1;
}

static bool parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return false;
    *out = v;
    return true;
}

/* parse_value: "-" -> ST_ABSENT, else the interned id. */
static int parse_value(lc_history_t *h, const char *s) {
    return strcmp(s, "-") == 0 ? ST_ABSENT : strtab_intern(&h->values, s);
}

static int parse_result(lc_history_t *h, lc_op_t *op, const char *s) {
    if (op->unknown) return 0;
    switch (op->kind) {
    case KIND_PUT: return strcmp(s, "ok") == 0 ? 0 : LC_ERR_PARSE;
    case KIND_GET: op->result = parse_value(h, s); return op->result == LC_ERR_NOMEM ? LC_ERR_NOMEM : 0;
    case KIND_DEL:
        if (strcmp(s, "ok") == 0)
            op->result = RES_ANY;
        else if (strcmp(s, "0") == 0 || strcmp(s, "1") == 0)
            op->result = s[0] - '0';
        else
            return LC_ERR_PARSE;
        return 0;
    default:
        if (strcmp(s, "true") == 0)
            op->result = 1;
        else if (strcmp(s, "false") == 0)
            op->result = 0;
        else
            return LC_ERR_PARSE;
        return 0;
    }
}

/* parse_line: one non-comment line into OP; returns 0, LC_ERR_PARSE with a
 * reason in WHY, or LC_ERR_NOMEM. */
static int parse_line(lc_history_t *h, char *line, lc_op_t *op, const char **why) {
    char *f[9], *save = NULL;
    int n = 0;
    for (char *t = strtok_r(line, " \t\r\n", &save); t && n < 9 && t[0] != '#';
         t = strtok_r(NULL, " \t\r\n", &save))
        f[n++] = t;
    *why = "expected 8 fields: CLIENT OP KEY VALUE EXPECT CALL_NS RETURN_NS RESULT";
    if (n != 8) return LC_ERR_PARSE;
    int64_t client;
    *why = "bad client id";
    if (!parse_i64(f[0], &client)) return LC_ERR_PARSE;
    memset(op, 0, sizeof(*op));
    op->client = (long)client;
    *why = "unknown op (put, get, del, cas)";
    if ((op->kind = parse_kind(f[1])) < 0) return LC_ERR_PARSE;
    if ((op->key = strtab_intern(&h->keys, f[2])) < 0) return LC_ERR_NOMEM;
    bool writes = op->kind == KIND_PUT || op->kind == KIND_CAS;
    *why = writes ? "put/cas needs a VALUE (not -)" : "VALUE must be - for get/del";
    if (writes != (strcmp(f[3], "-") != 0)) return LC_ERR_PARSE;
    op->value = writes ? parse_value(h, f[3]) : -1;
    *why = "EXPECT must be - except for cas";
    if (op->kind != KIND_CAS && strcmp(f[4], "-") != 0) return LC_ERR_PARSE;
    op->expect = op->kind == KIND_CAS ? parse_value(h, f[4]) : ST_ABSENT;
    if (op->value == LC_ERR_NOMEM || op->expect == LC_ERR_NOMEM) return LC_ERR_NOMEM;
    *why = "bad CALL_NS";
    if (!parse_i64(f[5], &op->call)) return LC_ERR_PARSE;
    op->unknown = strcmp(f[6], "unknown") == 0;
    op->ret = INT64_MAX;
    *why = "bad RETURN_NS (ns >= CALL_NS, or unknown)";
    if (!op->unknown && (!parse_i64(f[6], &op->ret) || op->ret < op->call)) return LC_ERR_PARSE;
    *why = "bad RESULT for this op";
    return parse_result(h, op, f[7]);
}

static int history_add(lc_history_t *h, const lc_op_t *op) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        lc_op_t *ops = realloc(h->ops, cap * sizeof(*ops));
        if (!ops) return LC_ERR_NOMEM;
        h->ops = ops;
        h->cap = cap;
    }
    h->ops[h->n++] = *op;
    return 0;
}

int lc_history_read(FILE *f, lc_history_t **out, char *err, size_t err_len) {
    lc_history_t *h = calloc(1, sizeof(*h));
    if (!h) return LC_ERR_NOMEM;
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        size_t skip = strspn(line, " \t\r\n");
        if (line[skip] == '\0' || line[skip] == '#') continue;
        lc_op_t op;
        const char *why = "";
        rc = parse_line(h, line, &op, &why);
        if (rc == LC_ERR_PARSE && err) snprintf(err, err_len, "line %zu: %s", lineno, why);
        if (rc == 0) {
            op.line = lineno;
            rc = history_add(h, &op);
        }
    }
    free(line);
    if (rc == 0 && ferror(f)) rc = LC_ERR_IO;
    if (rc < 0) {
        lc_history_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

int lc_history_parse(const char *text, lc_history_t **out, char *err, size_t err_len) {
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    if (!f) return strlen(text) == 0 ? lc_history_parse("#", out, err, err_len) : LC_ERR_NOMEM;
    int rc = lc_history_read(f, out, err, err_len);
    fclose(f);
    return rc;
}

void lc_history_free(lc_history_t *h) {
    if (!h) return;
    free(h->ops);
    strtab_free(&h->keys);
    strtab_free(&h->values);
    free(h);
}

/* ---- one key: the register model ------------------------------------- */

/* An operation of the key being checked, with values mapped to states. */
typedef struct {
    int kind;
    int value;  /* state written (value id or ST_UNOBS) */
    int expect; /* cas */
    int result;
    bool unknown;
    int64_t call;        /* invocation time */
    int cls;             /* interchangeable-class of an unknown op, or -1 */
    int cls_rank;        /* position within its class (invocation order) */
    uint64_t zob1, zob2; /* random bits for the set's fingerprint */
} kop_t;

/* step: can OP be linearized in STATE? Sets *NEXT to the state after it. */
static bool step(const kop_t *op, int state, int *next) {
    *next = state;
    switch (op->kind) {
    case KIND_PUT: *next = op->value; return true;
    case KIND_GET: return op->unknown || op->result == state;
    case KIND_DEL:
        *next = ST_ABSENT;
        return op->unknown || op->result == RES_ANY || op->result == (state != ST_ABSENT);
    default: {
        bool holds = state == op->expect; /* a value never equals ST_ABSENT/UNOBS */
        if (holds) *next = op->value;
        return op->unknown || op->result == holds;
    }
    }
}

typedef struct entry {
    struct entry *prev, *next, *match;
    int op; /* index into the key's ops */
    bool is_call;
    int64_t time;
} entry_t;

/* The memo: the (set of linearized ops, state) pairs seen, the set as a
 * 128-bit Zobrist fingerprint (the xor of two random words per op), in an
 * open-addressing table. Two sets share a fingerprint with probability
 * 2^-128 per pair, so even 2^30 entries risk a wrong "seen" below 2^-68;
 * storing the fingerprint instead of a bitmap keeps a 10,000-op key's entry
 * at 24 bytes instead of 1.3 kB. */
typedef struct {
    uint64_t h1, h2;
    int32_t state;
    int32_t used;
} memo_entry_t;

typedef struct {
    memo_entry_t *slot;
    size_t nslot, count;
    size_t max_bytes;
} memo_t;

static size_t memo_index(uint64_t h1, int state, size_t nslot) {
    return (size_t)((h1 ^ ((uint64_t)(uint32_t)state * 0x9e3779b97f4a7c15ull)) & (nslot - 1));
}

static int memo_rehash(memo_t *m) {
    size_t nslot = m->nslot ? m->nslot * 2 : 4096;
    if (nslot * sizeof(memo_entry_t) > m->max_bytes) return MEMO_FULL;
    memo_entry_t *slot = calloc(nslot, sizeof(*slot));
    if (!slot) return LC_ERR_NOMEM;
    for (size_t i = 0; i < m->nslot; i++) {
        const memo_entry_t *e = &m->slot[i];
        if (!e->used) continue;
        size_t j = memo_index(e->h1, e->state, nslot);
        while (slot[j].used) j = (j + 1) & (nslot - 1);
        slot[j] = *e;
    }
    free(m->slot);
    m->slot = slot;
    m->nslot = nslot;
    return 0;
}

/* memo_add: 1 if (H1:H2, STATE) was new (now stored), 0 if seen,
 * LC_ERR_NOMEM or MEMO_FULL otherwise. */
static int memo_add(memo_t *m, uint64_t h1, uint64_t h2, int state) {
    if ((m->count + 1) * 2 > m->nslot) {
        int rc = memo_rehash(m);
        if (rc < 0) return rc;
    }
    size_t i = memo_index(h1, state, m->nslot);
    for (; m->slot[i].used; i = (i + 1) & (m->nslot - 1))
        if (m->slot[i].h1 == h1 && m->slot[i].h2 == h2 && m->slot[i].state == state) return 0;
    m->slot[i] = (memo_entry_t){h1, h2, state, 1};
    m->count++;
    return 1;
}

static void memo_free(memo_t *m) { free(m->slot); }

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One key's check: the ops (global indices into the history) and limits. */
typedef struct {
    const lc_history_t *h;
    const size_t *idx; /* global op indices of this key */
    size_t n;
    uint64_t max_steps;
    double deadline;
    size_t max_cache_bytes;
    uint64_t steps; /* out */
    size_t depth;   /* out: most ops linearized at a dead end */
    size_t blocked; /* out: the op (global index) whose return ended it */
} keycheck_t;

static int cmp_entry(const void *a, const void *b) {
    const entry_t *x = a, *y = b;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    if (x->is_call != y->is_call) return x->is_call ? -1 : 1;
    return x->op - y->op;
}

/* build_ops: the key's ops mapped to model states (a value no known get
 * returns and no cas compares with becomes ST_UNOBS); unknown ops of equal
 * effect on that state share a class (the puts, the deletes, the cas ops
 * with one EXPECT), numbered in the order of their first member's call.
 * Returns the number of ops with a known outcome, or LC_ERR_NOMEM. */
static long build_ops(const keycheck_t *k, kop_t *ops, int *ncls) {
    size_t nval = k->h->values.n;
    long known = 0;
    char *seen = calloc(
        nval + 1, 1); /* class of an effect + 1 (0: none yet): [0] puts, [1] deletes, [2 + expect + 1] cas */
    int *cls_of = calloc(nval + 3, sizeof(int)), *cls_count = calloc(nval + 3, sizeof(int));
    int next_cls = 0;
    if (!seen || !cls_of || !cls_count) {
        known = LC_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < k->n; i++) {
        const lc_op_t *o = &k->h->ops[k->idx[i]];
        if (o->kind == KIND_GET && !o->unknown && o->result >= 0) seen[o->result] = 1;
        if (o->kind == KIND_CAS && o->expect >= 0) seen[o->expect] = 1;
    }
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < k->n; i++) {
        const lc_op_t *o = &k->h->ops[k->idx[i]];
        kop_t *p = &ops[i];
        *p = (kop_t){.kind = o->kind,
                     .value = o->value >= 0 && !seen[o->value] ? ST_UNOBS : o->value,
                     .expect = o->expect,
                     .result = o->result,
                     .unknown = o->unknown,
                     .call = o->call,
                     .cls = -1,
                     .zob1 = mix(rng += 0x9e3779b97f4a7c15ull),
                     .zob2 = mix(rng += 0x9e3779b97f4a7c15ull)};
        known += !o->unknown;
        if (!o->unknown || p->value >= 0) continue; /* unique effect */
        int *c = &cls_of[o->kind == KIND_PUT ? 0 : o->kind == KIND_DEL ? 1 : 2 + o->expect + 1];
        if (!*c) *c = ++next_cls;
        p->cls = *c - 1;
        p->cls_rank = cls_count[p->cls]++;
    }
    *ncls = next_cls;
out:
    free(seen);
    free(cls_of);
    free(cls_count);
    return known;
}

/* cmp_call: op indices by call time (then input order). */
static int cmp_call(const void *a, const void *b, void *arg) {
    const lc_history_t *h = arg;
    const lc_op_t *x = &h->ops[*(const size_t *)a], *y = &h->ops[*(const size_t *)b];
    if (x->call != y->call) return x->call < y->call ? -1 : 1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

static void lift(entry_t *e) {
    e->prev->next = e->next;
    e->next->prev = e->prev;
    entry_t *m = e->match;
    m->prev->next = m->next;
    if (m->next) m->next->prev = m->prev;
}

static void unlift(entry_t *e) {
    entry_t *m = e->match;
    m->prev->next = m;
    if (m->next) m->next->prev = m;
    e->prev->next = e;
    e->next->prev = e;
}

typedef struct {
    entry_t *call; /* NULL for a class member (not in the list) */
    int op;
    int state;   /* before the op */
    bool forced; /* a pure observation: no other choice was needed here */
} frame_t;

/* The search's state: linearized ops (fingerprint, stack), the register's state. */
typedef struct {
    kop_t *ops;
    int ncls;
    int *cls_next;                      /* per class: how many members are linearized */
    const int *cls_start, *cls_members; /* class c: cls_members[cls_start[c]..cls_start[c + 1]) */
    int *cls_after, *cls_before;        /* classes with members left, linked in id order; end: ncls */
    uint64_t h1, h2;                    /* fingerprint of the linearized set: xor of their zob1, zob2 */
    frame_t *stack;
    size_t sp;
    long done; /* linearized ops with a known outcome */
    int state;
    memo_t memo;
} search_t;

/* blind: a known op whose result and effect do not depend on the state. */
static bool blind(const kop_t *op) {
    return !op->unknown && (op->kind == KIND_PUT || (op->kind == KIND_DEL && op->result == RES_ANY));
}

/* class_unlink, class_relink: take class C out of the list of classes with
 * members left, and put it back (in reverse order: dancing links). */
static void class_unlink(search_t *s, int c) {
    s->cls_after[s->cls_before[c]] = s->cls_after[c];
    s->cls_before[s->cls_after[c]] = s->cls_before[c];
}

static void class_relink(search_t *s, int c) {
    s->cls_after[s->cls_before[c]] = c;
    s->cls_before[s->cls_after[c]] = c;
}

/* pure: a known op whose recorded result means it changes no state,
 * wherever it is linearized: a get, a failed cas, a cas writing the value
 * it compared with, a delete of nothing. (A blind put or an unconstrained
 * delete is not: it changes the state elsewhere.) */
static bool pure(const kop_t *op) {
    if (op->unknown) return false;
    switch (op->kind) {
    case KIND_GET: return true;
    case KIND_DEL: return op->result == 0;
    case KIND_CAS: return op->result == 0 || op->value == op->expect;
    default: return false;
    }
}

/* try_linearize: linearizes op OP_INDEX (call entry E, NULL for a class
 * member) now if the model accepts it and the result is new: TL_ADDED;
 * TL_SEEN if the result was seen before, TL_NO if not possible, negative on
 * memo errors. */
static int try_linearize(search_t *s, entry_t *e, int op_index) {
    kop_t *op = &s->ops[op_index];
    int next;
    if (!step(op, s->state, &next)) return 0;
    if (op->unknown && next == s->state) return 0; /* it can as well go at the end */
    /* a blind write right after an unknown op: that op can as well go at the end */
    if (blind(op) && s->sp > 0 && s->ops[s->stack[s->sp - 1].op].unknown) return 0;
    int added = memo_add(&s->memo, s->h1 ^ op->zob1, s->h2 ^ op->zob2, next);
    if (added <= 0) return added == 0 ? TL_SEEN : added;
    s->h1 ^= op->zob1;
    s->h2 ^= op->zob2;
    s->stack[s->sp++] = (frame_t){e, op_index, s->state, pure(op)};
    s->state = next;
    if (e) lift(e);
    s->done += !op->unknown;
    if (op->cls >= 0 && ++s->cls_next[op->cls] == s->cls_start[op->cls + 1] - s->cls_start[op->cls])
        class_unlink(s, op->cls); /* exhausted */
    return TL_ADDED;
}

/* backtrack: undoes the last linearization; returns its frame. */
static frame_t backtrack(search_t *s) {
    frame_t f = s->stack[--s->sp];
    kop_t *op = &s->ops[f.op];
    s->h1 ^= op->zob1;
    s->h2 ^= op->zob2;
    s->state = f.state;
    if (f.call) unlift(f.call);
    s->done -= !op->unknown;
    if (op->cls >= 0 && s->cls_next[op->cls]-- == s->cls_start[op->cls + 1] - s->cls_start[op->cls])
        class_relink(s, op->cls);
    return f;
}

/* class_candidate: class C's next member if it is invoked by FRONTIER (the
 * earliest pending return), else -1. */
static int class_candidate(const search_t *s, int c, int64_t frontier) {
    int i = s->cls_start[c] + s->cls_next[c];
    if (i >= s->cls_start[c + 1]) return -1;
    int op = s->cls_members[i];
    return s->ops[op].call <= frontier ? op : -1;
}

/* frontier: the time of the first return entry (the list holds one while
 * any known op is unlinearized). */
static int64_t frontier(const entry_t *head) {
    const entry_t *e = head->next;
    while (e->is_call) e = e->next;
    return e->time;
}

/* retreat: backtracks to the last point with choices left; false if none.
 * A pure op (see pure()) the model accepts now may as well go first: moved
 * before the ops a linearization puts ahead of it, it changes nothing for
 * them, and real time allows it (it is invoked before every pending
 * return). So if that failed, its point failed too. */
static bool retreat(search_t *s, entry_t *head, entry_t **e, int *cls, int64_t *front) {
    frame_t f;
    do {
        if (s->sp == 0) return false;
        f = backtrack(s);
    } while (f.forced);
    *e = f.call ? f.call->next : NULL;
    if (!f.call) {
        *cls = s->cls_after[s->ops[f.op].cls];
        *front = frontier(head);
    }
    return true;
}

/* search: the DFS over linearization points (see the file header). At each
 * point the next member of each class with members left and invoked by the
 * frontier is tried first (CLS: the next class to try; classes are in the
 * order of their first member's call, so the walk stops at the first one
 * invoked later), then the list's call entries before the first return
 * (E; NULL while classes are tried). */
static int search(keycheck_t *k, search_t *s, long known, entry_t *head) {
    int rc = known == 0 ? LC_OK : LC_VIOLATION, cls = s->cls_after[s->ncls];
    entry_t *e = NULL;
    int64_t front = rc == LC_OK ? 0 : frontier(head);
    while (rc == LC_VIOLATION) {
        int added = TL_NO;
        bool dead = false;
        if (++k->steps > k->max_steps || ((k->steps & 1023) == 0 && now_s() > k->deadline)) {
            rc = LC_UNKNOWN;
            break;
        } else if (!e && (cls == s->ncls || s->ops[s->cls_members[s->cls_start[cls]]].call > front)) {
            e = head->next;
            continue;
        } else if (!e) {
            int op = class_candidate(s, cls, front);
            cls = s->cls_after[cls];
            if (op >= 0) added = try_linearize(s, NULL, op);
        } else if (!e->is_call) { /* its op is not linearized: a dead end */
            if (s->sp >= k->depth) {
                k->depth = s->sp;
                k->blocked = k->idx[e->op];
            }
            dead = true;
        } else {
            added = try_linearize(s, e, e->op);
            /* a pure op's result seen before: this point was a dead end */
            dead = added == TL_SEEN && pure(&s->ops[e->op]);
            if (added != TL_ADDED) e = e->next;
        }
        if (dead && !retreat(s, head, &e, &cls, &front)) break;
        if (added < 0) {
            rc = added == MEMO_FULL ? LC_UNKNOWN : added;
        } else if (added == TL_ADDED && s->done == known) {
            rc = LC_OK;
        } else if (added == TL_ADDED) { /* a new point: start over */
            e = NULL;
            cls = s->cls_after[s->ncls];
            front = frontier(head);
        }
    }
    return rc;
}

/* build_list: the call and return entries of the key's ops (unknown gets
 * and class members left out) in ENT[1..], sorted by time and doubly linked after
 * the sentinel ENT[0], each call matched with its return. */
static int build_list(const keycheck_t *k, const kop_t *ops, entry_t *ent) {
    entry_t *list = ent + 1;
    size_t ne = 0;
    for (size_t i = 0; i < k->n; i++) {
        const lc_op_t *o = &k->h->ops[k->idx[i]];
        if ((o->kind == KIND_GET && o->unknown) || ops[i].cls >= 0) continue; /* no effect; a class member */
        list[ne++] = (entry_t){.op = (int)i, .is_call = true, .time = o->call};
        list[ne++] = (entry_t){.op = (int)i, .is_call = false, .time = o->ret};
    }
    qsort(list, ne, sizeof(*list), cmp_entry);
    entry_t **call_of = calloc(k->n ? k->n : 1, sizeof(*call_of));
    if (!call_of) return LC_ERR_NOMEM;
    entry_t *prev = ent;
    ent->prev = NULL;
    for (size_t i = 0; i < ne; i++) {
        entry_t *e = &list[i];
        e->prev = prev;
        prev->next = e;
        prev = e;
        if (e->is_call) {
            call_of[e->op] = e;
        } else {
            call_of[e->op]->match = e;
            e->match = call_of[e->op];
        }
    }
    prev->next = NULL;
    free(call_of);
    return 0;
}

/* build_classes: the members of each class in rank (invocation) order. */
static int build_classes(const kop_t *ops, size_t n, int ncls, int **start, int **members) {
    *start = calloc((size_t)ncls + 1, sizeof(int));
    *members = malloc((n ? n : 1) * sizeof(int));
    if (!*start || !*members) return LC_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (ops[i].cls >= 0) (*start)[ops[i].cls + 1]++;
    for (int c = 0; c < ncls; c++) (*start)[c + 1] += (*start)[c];
    for (size_t i = 0; i < n; i++)
        if (ops[i].cls >= 0) (*members)[(*start)[ops[i].cls] + ops[i].cls_rank] = (int)i;
    return 0;
}

/* check_key: LC_OK, LC_VIOLATION, LC_UNKNOWN or LC_ERR_NOMEM. K->idx must
 * be sorted by call time (class ranks follow invocation order). */
static int check_key(keycheck_t *k) {
    kop_t *ops = calloc(k->n ? k->n : 1, sizeof(*ops));
    entry_t *ent = calloc(2 * k->n + 1, sizeof(*ent));
    int *start = NULL, *members = NULL, ncls = 0, rc = LC_ERR_NOMEM;
    search_t s = {.ops = ops,
                  .stack = malloc((k->n ? k->n : 1) * sizeof(frame_t)),
                  .state = ST_ABSENT,
                  .memo = {.max_bytes = k->max_cache_bytes}};
    long known = ops && ent && s.stack ? build_ops(k, ops, &ncls) : LC_ERR_NOMEM;
    if (known >= 0) {
        s.cls_next = calloc((size_t)ncls, sizeof(int));
        s.cls_after = malloc(((size_t)ncls + 1) * sizeof(int));
        s.cls_before = malloc(((size_t)ncls + 1) * sizeof(int));
    }
    if (s.cls_next && s.cls_after && s.cls_before && build_classes(ops, k->n, ncls, &start, &members) == 0 &&
        build_list(k, ops, ent) == 0) {
        s.ncls = ncls;
        s.cls_start = start;
        s.cls_members = members;
        for (int c = 0; c <= ncls; c++) { /* a ring through the sentinel ncls */
            s.cls_after[c] = c == ncls ? 0 : c + 1;
            s.cls_before[c] = c == 0 ? ncls : c - 1;
        }
        rc = search(k, &s, known, ent);
    }
    memo_free(&s.memo);
    free(s.stack);
    free(s.cls_next);
    free(s.cls_after);
    free(s.cls_before);
    free(start);
    free(members);
    free(ops);
    free(ent);
    return rc;
}

/* ---- reporting -------------------------------------------------------- */

static const char *value_str(const lc_history_t *h, int v) { return v >= 0 ? h->values.str[v] : "-"; }

static void print_result(FILE *f, const lc_history_t *h, const lc_op_t *o) {
    if (o->unknown)
        fprintf(f, "unknown ?");
    else if (o->kind == KIND_PUT)
        fprintf(f, "%lld ok", (long long)o->ret);
    else if (o->kind == KIND_GET)
        fprintf(f, "%lld %s", (long long)o->ret, value_str(h, o->result));
    else if (o->kind == KIND_DEL && o->result == RES_ANY)
        fprintf(f, "%lld ok", (long long)o->ret);
    else if (o->kind == KIND_DEL)
        fprintf(f, "%lld %d", (long long)o->ret, o->result);
    else
        fprintf(f, "%lld %s", (long long)o->ret, o->result ? "true" : "false");
}

/* print_op: O as a history line, with its input line number. */
static void print_op(FILE *f, const lc_history_t *h, const lc_op_t *o) {
    static const char *names[] = {"put", "get", "del", "cas"};
    fprintf(f, "%ld %s %s %s %s %lld ", o->client, names[o->kind], h->keys.str[o->key],
            o->kind == KIND_PUT || o->kind == KIND_CAS ? value_str(h, o->value) : "-",
            o->kind == KIND_CAS ? value_str(h, o->expect) : "-", (long long)o->call);
    print_result(f, h, o);
    fprintf(f, "    # line %zu\n", o->line);
}

static int check_subset(const keycheck_t *base, const size_t *keep, size_t n, double deadline) {
    keycheck_t k = *base;
    k.idx = keep;
    k.n = n;
    k.max_steps = 1000000;
    k.deadline = deadline;
    k.steps = 0;
    return check_key(&k);
}

/* still_violates: the subset KEEP[0..n) (sorted by call, holding the
 * blocked op F) violates, and without F it does not: F stays the culprit,
 * so shrinking cannot drift to another (smaller, made-up) violation. */
static bool still_violates(const keycheck_t *base, size_t *keep, size_t n, size_t f, double deadline) {
    if (check_subset(base, keep, n, deadline) != LC_VIOLATION) return false;
    if (f == SIZE_MAX) return true;
    size_t m = 0, *rest = malloc((n ? n : 1) * sizeof(*rest));
    if (!rest) return false;
    for (size_t i = 0; i < n; i++)
        if (keep[i] != f) rest[m++] = keep[i];
    bool ok = check_subset(base, rest, m, deadline) == LC_OK;
    free(rest);
    return ok;
}

/* closed: every value a kept get returns, or a kept successful cas
 * compares with, is written by a kept op (if the full history has a
 * writer of it): a window never "wins" by dropping a write. */
static bool closed(const lc_history_t *h, const size_t *keep, size_t n, const char *written_full) {
    size_t nval = h->values.n;
    char *w = calloc(nval + 1, 1);
    if (!w) return false;
    for (size_t i = 0; i < n; i++) {
        const lc_op_t *o = &h->ops[keep[i]];
        if ((o->kind == KIND_PUT || o->kind == KIND_CAS) && o->value >= 0) w[o->value] = 1;
    }
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const lc_op_t *o = &h->ops[keep[i]];
        int need = -1;
        if (o->kind == KIND_GET && !o->unknown) need = o->result;
        if (o->kind == KIND_CAS && !o->unknown && o->result == 1) need = o->expect;
        if (need >= 0 && written_full[need] && !w[need]) ok = false;
    }
    free(w);
    return ok;
}

/* minimize: shrinks the violating KEEP (in place, *N updated) by delta
 * debugging until no chunk can go or the time is up. */
static void minimize(keycheck_t *base, size_t *keep, size_t *n, size_t f, double seconds) {
    double deadline = now_s() + seconds;
    const lc_history_t *h = base->h;
    char *written = calloc(h->values.n + 1, 1);
    size_t *trial = malloc((*n ? *n : 1) * sizeof(*trial));
    if (!written || !trial) goto out;
    for (size_t i = 0; i < *n; i++) {
        const lc_op_t *o = &h->ops[keep[i]];
        if ((o->kind == KIND_PUT || o->kind == KIND_CAS) && o->value >= 0) written[o->value] = 1;
    }
    for (size_t chunk = *n / 2 ? *n / 2 : 1; chunk >= 1 && now_s() < deadline; chunk /= 2) {
        bool progress = true;
        while (progress && now_s() < deadline) {
            progress = false;
            for (size_t start = 0; start < *n && now_s() < deadline;) {
                size_t end = start + chunk < *n ? start + chunk : *n, m = 0;
                for (size_t i = 0; i < *n; i++)
                    if (i < start || i >= end || keep[i] == f) trial[m++] = keep[i];
                if (m < *n && closed(h, trial, m, written) &&
                    still_violates(base, trial, m, f, deadline + 1)) {
                    memcpy(keep, trial, m * sizeof(*keep));
                    *n = m;
                    progress = true;
                } else {
                    start = end;
                }
            }
        }
        if (chunk == 1) break;
    }
out:
    free(written);
    free(trial);
}

static void report_violation(keycheck_t *k, FILE *f, double seconds, lc_summary_t *sum) {
    size_t n = k->n;
    size_t *keep = malloc((n ? n : 1) * sizeof(*keep));
    if (!keep) return;
    memcpy(keep, k->idx, n * sizeof(*keep));
    /* the culprit must be essential in the whole history too, else shrink
     * from it without that rule */
    size_t culprit = still_violates(k, keep, n, k->blocked, now_s() + seconds) ? k->blocked : SIZE_MAX;
    minimize(k, keep, &n, culprit, seconds);
    if (f) {
        fprintf(f, "VIOLATION on key %s: no linearization of its %zu operations; minimal window (%zu ops):\n",
                k->h->keys.str[k->h->ops[k->idx[0]].key], k->n, n);
        for (size_t i = 0; i < n; i++) print_op(f, k->h, &k->h->ops[keep[i]]);
        if (culprit != SIZE_MAX)
            fprintf(f, "(the op of line %zu cannot be linearized: without it the window is linearizable)\n",
                    k->h->ops[culprit].line);
    }
    if (sum) sum->window_ops = n;
    free(keep);
}

/* ---- the whole history ------------------------------------------------ */

static int cmp_key_then_call(const void *a, const void *b, void *arg) {
    const lc_history_t *h = arg;
    const lc_op_t *x = &h->ops[*(const size_t *)a], *y = &h->ops[*(const size_t *)b];
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return cmp_call(a, b, arg);
}

int lc_check(const lc_history_t *h, const lc_limits_t *limits, FILE *report, lc_summary_t *sum) {
    lc_limits_t lim = limits ? *limits : (lc_limits_t){0};
    if (!lim.max_steps) lim.max_steps = 1000000000;
    if (lim.max_seconds <= 0) lim.max_seconds = 30;
    if (!lim.max_cache_bytes) lim.max_cache_bytes = (size_t)512 << 20;
    if (lim.minimize_seconds <= 0) lim.minimize_seconds = 5;
    lc_summary_t s = {.n_ops = h->n, .n_keys = h->keys.n};
    for (size_t i = 0; i < h->n; i++) s.n_unknown += h->ops[i].unknown;
    size_t *order = malloc((h->n ? h->n : 1) * sizeof(*order));
    if (!order) return LC_ERR_NOMEM;
    for (size_t i = 0; i < h->n; i++) order[i] = i;
    qsort_r(order, h->n, sizeof(*order), cmp_key_then_call, (void *)h);
    int verdict = LC_OK;
    for (size_t start = 0; start < h->n;) {
        size_t end = start;
        while (end < h->n && h->ops[order[end]].key == h->ops[order[start]].key) end++;
        keycheck_t k = {.h = h,
                        .idx = order + start,
                        .n = end - start,
                        .max_steps = lim.max_steps,
                        .deadline = now_s() + lim.max_seconds,
                        .max_cache_bytes = lim.max_cache_bytes};
        int rc = check_key(&k);
        s.steps += k.steps;
        const char *key = h->keys.str[h->ops[order[start]].key];
        if (rc < 0) {
            free(order);
            return rc;
        } else if (rc == LC_VIOLATION) {
            bool first = verdict != LC_VIOLATION;
            if (first) snprintf(s.bad_key, sizeof(s.bad_key), "%s", key);
            report_violation(&k, report, lim.minimize_seconds, first ? &s : NULL);
            verdict = LC_VIOLATION;
        } else if (rc == LC_UNKNOWN) {
            s.n_keys_unknown++;
            if (report)
                fprintf(
                    report,
                    "UNKNOWN on key %s: search limit hit after %llu steps (%zu ops; deepest %zu linearized, "
                    "then the op of line %zu)\n",
                    key, (unsigned long long)k.steps, k.n, k.depth, h->ops[k.blocked].line);
            if (verdict == LC_OK) verdict = LC_UNKNOWN;
        }
        start = end;
    }
    free(order);
    if (sum) *sum = s;
    return verdict;
}
