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
 * accepts it in the current state with its recorded result); if it does and
 * the pair (set of linearized operations as a bitmap, new state) has not
 * been seen before, the operation's call and return entries are lifted out
 * of the list, pushed on a stack, and the walk restarts at the head. At a
 * return entry the operation it belongs to should have been linearized
 * already: the search backtracks (pops the last linearized operation,
 * puts its entries back, continues after its call). An empty stack at a
 * return entry means no linearization exists: a violation. The search
 * succeeds once every operation with a known outcome is linearized
 * (operations with unknown outcomes have their return at +infinity, and the
 * model accepts them in any state, so the rest can all go at the end).
 *
 * Two reductions keep unknown outcomes (many after crashes) from making the
 * search exponential: (1) a value that no get returns and no cas compares
 * with is "unobserved": every such value is the same state (UNOBS), since no
 * later operation can tell them apart; (2) unknown operations with the same
 * effect on that state (puts and deletes, or cas ops with the same EXPECT,
 * of unobserved values) are interchangeable, so they are linearized in
 * invocation order only (a class counter says which member is next); (3)
 * an unknown operation that would leave the state as it is is not
 * linearized there (it can as well go at the end).
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
enum { RES_ANY = -1 }; /* del with "ok": count unconstrained */

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
    int cls;      /* interchangeable-class of an unknown op, or -1 */
    int cls_rank; /* position within its class (invocation order) */
    uint64_t zob; /* random bits for the bitmap's hash */
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

/* The memo: (bitmap of linearized ops, state) pairs seen, open addressing
 * over an arena of records [hash, state, bitmap words...]. */
typedef struct {
    uint64_t *arena;
    size_t used, cap; /* words */
    size_t *slot;     /* arena offset + 1, 0 empty */
    size_t nslot, count;
    size_t words; /* bitmap words */
    size_t max_bytes;
} memo_t;

static int memo_rehash(memo_t *m) {
    size_t nslot = m->nslot ? m->nslot * 2 : 1024;
    size_t *slot = calloc(nslot, sizeof(*slot));
    if (!slot) return LC_ERR_NOMEM;
    size_t rec = m->words + 2;
    for (size_t off = 0; off < m->used; off += rec) {
        size_t i = m->arena[off] & (nslot - 1);
        while (slot[i]) i = (i + 1) & (nslot - 1);
        slot[i] = off + 1;
    }
    free(m->slot);
    m->slot = slot;
    m->nslot = nslot;
    return 0;
}

/* memo_add: 1 if (BITS, STATE) was new (now stored), 0 if seen, LC_ERR_NOMEM
 * or LC_UNKNOWN (memory bound) otherwise. */
static int memo_add(memo_t *m, const uint64_t *bits, int state, uint64_t hash) {
    size_t rec = m->words + 2;
    if ((m->count + 1) * 2 > m->nslot && memo_rehash(m) < 0) return LC_ERR_NOMEM;
    size_t i = hash & (m->nslot - 1);
    for (; m->slot[i]; i = (i + 1) & (m->nslot - 1)) {
        const uint64_t *r = m->arena + m->slot[i] - 1;
        if (r[0] == hash && (int64_t)r[1] == state && memcmp(r + 2, bits, m->words * 8) == 0) return 0;
    }
    if (m->used + rec > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : rec * 1024;
        if ((cap + m->nslot) * 8 > m->max_bytes) return LC_UNKNOWN;
        uint64_t *arena = realloc(m->arena, cap * 8);
        if (!arena) return LC_ERR_NOMEM;
        m->arena = arena;
        m->cap = cap;
    }
    uint64_t *r = m->arena + m->used;
    r[0] = hash;
    r[1] = (uint64_t)(int64_t)state;
    memcpy(r + 2, bits, m->words * 8);
    m->slot[i] = m->used + 1;
    m->used += rec;
    m->count++;
    return 1;
}

static void memo_free(memo_t *m) {
    free(m->arena);
    free(m->slot);
}

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
 * effect share a class (0: puts, 1: deletes, 2 + n: cas ops with one
 * EXPECT). Returns the number of ops with a known outcome, or LC_ERR_NOMEM. */
static long build_ops(const keycheck_t *k, kop_t *ops, int *ncls) {
    size_t nval = k->h->values.n;
    long known = 0;
    char *seen = calloc(nval + 1, 1);
    int *cls_of_expect = calloc(nval + 2, sizeof(int)), *cls_count = calloc(nval + 3, sizeof(int));
    int next_cls = 1;
    if (!seen || !cls_of_expect || !cls_count) {
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
                     .cls = -1,
                     .zob = mix(rng += 0x9e3779b97f4a7c15ull)};
        known += !o->unknown;
        if (!o->unknown || p->value >= 0) continue; /* unique effect */
        if (o->kind == KIND_PUT || o->kind == KIND_DEL)
            p->cls = o->kind == KIND_PUT ? 0 : 1;
        else if (o->kind == KIND_CAS) {
            int *c = &cls_of_expect[o->expect + 1];
            if (!*c) *c = ++next_cls;
            p->cls = *c;
        }
        if (p->cls >= 0) p->cls_rank = cls_count[p->cls]++;
    }
    *ncls = next_cls + 1;
out:
    free(seen);
    free(cls_of_expect);
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
    entry_t *call;
    int state;
} frame_t;

/* The search's state: linearized ops (bitmap, stack), the register's state. */
typedef struct {
    kop_t *ops;
    int *cls_next; /* per class: how many members are linearized */
    uint64_t *bits;
    uint64_t hash; /* of bits: xor of the linearized ops' zob */
    frame_t *stack;
    size_t sp;
    long done; /* linearized ops with a known outcome */
    int state;
    memo_t memo;
} search_t;

static void set_bit(uint64_t *bits, int i, bool on) {
    if (on)
        bits[i / 64] |= 1ull << (i % 64);
    else
        bits[i / 64] &= ~(1ull << (i % 64));
}

/* try_linearize: linearizes E's op now if the model accepts it and the
 * result is new; 1 if done, 0 if not, negative on memo errors. */
static int try_linearize(search_t *s, entry_t *e) {
    kop_t *op = &s->ops[e->op];
    int next;
    if (op->cls >= 0 && s->cls_next[op->cls] != op->cls_rank) return 0;
    if (!step(op, s->state, &next)) return 0;
    if (op->unknown && next == s->state) return 0; /* it can as well go at the end */
    set_bit(s->bits, e->op, true);
    int added = memo_add(&s->memo, s->bits, next, mix((s->hash ^ op->zob) + (uint64_t)(int64_t)next));
    if (added <= 0) {
        set_bit(s->bits, e->op, false);
        return added;
    }
    s->hash ^= op->zob;
    s->stack[s->sp++] = (frame_t){e, s->state};
    s->state = next;
    lift(e);
    s->done += !op->unknown;
    if (op->cls >= 0) s->cls_next[op->cls]++;
    return 1;
}

/* backtrack: undoes the last linearization; returns its call entry. */
static entry_t *backtrack(search_t *s) {
    frame_t f = s->stack[--s->sp];
    kop_t *op = &s->ops[f.call->op];
    set_bit(s->bits, f.call->op, false);
    s->hash ^= op->zob;
    s->state = f.state;
    unlift(f.call);
    s->done -= !op->unknown;
    if (op->cls >= 0) s->cls_next[op->cls]--;
    return f.call;
}

/* search: the DFS over linearization points (see the file header). */
static int search(keycheck_t *k, kop_t *ops, long known, int *cls_next, entry_t *head) {
    size_t words = (k->n + 63) / 64;
    search_t s = {.ops = ops,
                  .cls_next = cls_next,
                  .bits = calloc(words ? words : 1, 8),
                  .stack = malloc((k->n ? k->n : 1) * sizeof(frame_t)),
                  .state = ST_ABSENT,
                  .memo = {.words = words, .max_bytes = k->max_cache_bytes}};
    int rc = !s.bits || !s.stack ? LC_ERR_NOMEM : known == 0 ? LC_OK : LC_VIOLATION;
    entry_t *e = head->next;
    while (rc == LC_VIOLATION) {
        if (++k->steps > k->max_steps || ((k->steps & 1023) == 0 && now_s() > k->deadline)) {
            rc = LC_UNKNOWN;
        } else if (!e->is_call) { /* its op is not linearized: backtrack */
            if (s.sp >= k->depth) {
                k->depth = s.sp;
                k->blocked = k->idx[e->op];
            }
            if (s.sp == 0) break;
            e = backtrack(&s)->next;
        } else {
            int added = try_linearize(&s, e);
            if (added < 0)
                rc = added;
            else if (added && s.done == known)
                rc = LC_OK;
            e = added ? head->next : e->next;
        }
    }
    free(s.bits);
    free(s.stack);
    memo_free(&s.memo);
    return rc;
}

/* build_list: the call and return entries of the key's ops (unknown gets
 * left out: no effect) in ENT[1..], sorted by time and doubly linked after
 * the sentinel ENT[0], each call matched with its return. */
static int build_list(const keycheck_t *k, entry_t *ent) {
    entry_t *list = ent + 1;
    size_t ne = 0;
    for (size_t i = 0; i < k->n; i++) {
        const lc_op_t *o = &k->h->ops[k->idx[i]];
        if (o->kind == KIND_GET && o->unknown) continue;
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

/* check_key: LC_OK, LC_VIOLATION, LC_UNKNOWN or LC_ERR_NOMEM. K->idx must
 * be sorted by call time (class ranks follow invocation order). */
static int check_key(keycheck_t *k) {
    kop_t *ops = calloc(k->n ? k->n : 1, sizeof(*ops));
    entry_t *ent = calloc(2 * k->n + 1, sizeof(*ent));
    int *cls_next = NULL, ncls = 0, rc = LC_ERR_NOMEM;
    long known = ops && ent ? build_ops(k, ops, &ncls) : LC_ERR_NOMEM;
    if (known >= 0) cls_next = calloc((size_t)ncls, sizeof(int));
    if (cls_next && build_list(k, ent) == 0) rc = search(k, ops, known, cls_next, ent);
    free(cls_next);
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
    if (!lim.max_steps) lim.max_steps = 50000000;
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
                fprintf(report, "UNKNOWN on key %s: search limit hit after %llu steps (%zu ops)\n", key,
                        (unsigned long long)k.steps, k.n);
            if (verdict == LC_OK) verdict = LC_UNKNOWN;
        }
        start = end;
    }
    free(order);
    if (sum) *sum = s;
    return verdict;
}
