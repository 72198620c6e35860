/*
 * test_kv_apply_errors.c: storage errors during apply, and write groups.
 *
 * Read errors (issue 7, defect 2): with the mvcc_read_error failpoint the
 * nth LevelDB read of an apply fails. For every n that hits a read of the
 * entry (a Put's previous version, a Txn's compares and ranges, a
 * DeleteRange's live keys, a lease Revoke's attached keys, an auth change's
 * reload), the apply must return the fatal error, store nothing (same
 * revision, applied index and contents) and, once reopened without the
 * failpoint, the same entry must give exactly the result a store that never
 * failed gives.
 *
 * Write groups (defect 3): applying entries in groups (mvcc_group_begin /
 * _end, one synced write per group) must give byte-identical results and
 * the same watch events as applying them one write each, over a random
 * sequence of puts (some with leases), deletes, txns with compares and
 * past-revision ranges (which write the group first), compactions and lease
 * grants and revokes (a revoke writes the group first); nothing of a group is
 * visible to readers before its write; a failed entry drops its group; the
 * group's write batch, kept from one group to the next, carries nothing of
 * an aborted or earlier group, also around a group too big to keep.
 */
#include "kv_fixture.h"

#include "auth_store.h"
#include "lease.h"
#include "mvcc.h"

/* ---- a store with a lease table and an event log ---- */

typedef struct store {
    char dir[256];
    mvcc_t *m;
    lessor_t *l;
    uint64_t index;
    kv_header_info_t hdr;
    char *log; /* on_events, as text */
    size_t log_len, log_cap;
} store_t;

static int exists_hook(void *ctx, int64_t id) {
    store_t *s = ctx;
    return s->l && lessor_exists(s->l, id);
}

static void log_add(store_t *s, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof buf);
    if (s->log_len + (size_t)n + 1 > s->log_cap) {
        s->log_cap = (s->log_cap + (size_t)n + 1) * 2;
        s->log = realloc(s->log, s->log_cap);
        assert_non_null(s->log);
    }
    memcpy(s->log + s->log_len, buf, (size_t)n + 1);
    s->log_len += (size_t)n;
}

static void kv_text(store_t *s, const Mvccpb__KeyValue *kv) {
    if (!kv) {
        log_add(s, " -");
        return;
    }
    log_add(s, " %.*s=%.*s@%lld/%lld/v%lld/l%lld", (int)kv->key.len, kv->key.data, (int)kv->value.len,
            kv->value.data, (long long)kv->create_revision, (long long)kv->mod_revision,
            (long long)kv->version, (long long)kv->lease);
}

static void events_hook(void *ctx, int64_t rev, const mvcc_event_t *evs, size_t n) {
    store_t *s = ctx;
    log_add(s, "rev %lld:", (long long)rev);
    for (size_t i = 0; i < n; i++) {
        log_add(s, " [%d", evs[i].type);
        kv_text(s, evs[i].kv);
        kv_text(s, evs[i].prev_kv);
        log_add(s, "]");
    }
    log_add(s, "\n");
}

static void store_open(store_t *s) {
    char err[256];
    mvcc_options_t opts = {
        .lease_exists = exists_hook, .lease_ctx = s, .on_events = events_hook, .events_ctx = s};
    assert_int_equal(mvcc_open(s->dir, &opts, &s->m, err, sizeof err), 0);
    assert_int_equal(lessor_open(s->m, 2, &s->l), LEASE_OK);
    s->index = mvcc_applied_index(s->m);
}

static void store_close(store_t *s) {
    lessor_free(s->l);
    s->l = NULL;
    mvcc_close(s->m);
    s->m = NULL;
}

static void store_reopen(store_t *s) {
    store_close(s);
    store_open(s);
}

static store_t *store_new(void) {
    store_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(s->dir, sizeof s->dir, "%s/applyerr-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(s->dir));
    s->hdr = (kv_header_info_t){.cluster_id = 5, .member_id = 6, .raft_term = 7};
    store_open(s);
    return s;
}

static void store_free(store_t *s) {
    store_close(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
    assert_int_equal(system(cmd), 0);
    free(s->log);
    free(s);
}

/* kv_apply or lessor_apply, as server_apply routes them. */
static int apply_at(store_t *s, uint64_t index, const Kshim__InternalRequest *req, kv_result_t *res) {
    memset(res, 0, sizeof *res);
    int rc = lessor_apply(s->l, index, req, &s->hdr, res, 1000);
    if (rc != 0) return rc > 0 ? 0 : rc;
    return kv_apply(s->m, index, req, &s->hdr, res);
}

static void apply_ok(store_t *s, const Kshim__InternalRequest *req) {
    kv_result_t res;
    assert_int_equal(apply_at(s, ++s->index, req, &res), 0);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
}

/* What a reader sees: every key, the revision, the applied index. */
typedef struct view {
    uint8_t *kvs;
    size_t len;
    int64_t rev;
    uint64_t applied;
} view_t;

static view_t view_of(store_t *s) {
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    uint8_t zero = 0;
    r.key.data = &zero;
    r.key.len = 1;
    r.range_end.data = &zero;
    r.range_end.len = 1;
    kv_result_t res;
    assert_int_equal(kv_range(s->m, &r, &s->hdr, &res), 0);
    view_t v = {res.resp, res.resp_len, mvcc_revision(s->m), mvcc_applied_index(s->m)};
    return v;
}

static void view_equal(const view_t *a, const view_t *b) {
    assert_int_equal(a->rev, b->rev);
    assert_int_equal(a->applied, b->applied);
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->kvs, b->kvs, a->len);
}

static void result_equal(const kv_result_t *a, const kv_result_t *b) {
    assert_int_equal(a->code, b->code);
    assert_string_equal(a->message, b->message);
    assert_int_equal(a->revision, b->revision);
    assert_int_equal(a->resp_len, b->resp_len);
    if (a->resp_len) assert_memory_equal(a->resp, b->resp, a->resp_len);
}

/* ---- requests ---- */

static Kshim__InternalRequest *req_new(void) {
    Kshim__InternalRequest *r = calloc(1, sizeof *r);
    assert_non_null(r);
    kshim__internal_request__init(r);
    return r;
}

/* Builders allocate with calloc; req_free frees the whole tree (the unpacked
 * free works on any tree whose every part is malloc'd). */
static void req_free(Kshim__InternalRequest *r) { kshim__internal_request__free_unpacked(r, NULL); }

static ProtobufCBinaryData bin(const char *s) {
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)strdup(s)};
    return b;
}

static Etcdserverpb__PutRequest *put_new(const char *k, const char *v, int64_t lease, int prev) {
    Etcdserverpb__PutRequest *p = calloc(1, sizeof *p);
    etcdserverpb__put_request__init(p);
    p->key = bin(k);
    p->value = bin(v);
    p->lease = lease;
    p->prev_kv = prev;
    return p;
}

static Etcdserverpb__DeleteRangeRequest *del_new(const char *k, const char *end, int prev) {
    Etcdserverpb__DeleteRangeRequest *d = calloc(1, sizeof *d);
    etcdserverpb__delete_range_request__init(d);
    d->key = bin(k);
    if (end) d->range_end = bin(end);
    d->prev_kv = prev;
    return d;
}

static Etcdserverpb__RangeRequest *range_new(const char *k, const char *end, int64_t rev, int64_t limit,
                                             int count_only) {
    Etcdserverpb__RangeRequest *r = calloc(1, sizeof *r);
    etcdserverpb__range_request__init(r);
    r->key = bin(k);
    if (end) r->range_end = bin(end);
    r->revision = rev;
    r->limit = limit;
    r->count_only = count_only;
    return r;
}

static Etcdserverpb__RequestOp *op_put(Etcdserverpb__PutRequest *p) {
    Etcdserverpb__RequestOp *o = calloc(1, sizeof *o);
    etcdserverpb__request_op__init(o);
    o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    o->request_put = p;
    return o;
}

static Etcdserverpb__RequestOp *op_del(Etcdserverpb__DeleteRangeRequest *d) {
    Etcdserverpb__RequestOp *o = calloc(1, sizeof *o);
    etcdserverpb__request_op__init(o);
    o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    o->request_delete_range = d;
    return o;
}

static Etcdserverpb__RequestOp *op_range(Etcdserverpb__RangeRequest *r) {
    Etcdserverpb__RequestOp *o = calloc(1, sizeof *o);
    etcdserverpb__request_op__init(o);
    o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    o->request_range = r;
    return o;
}

static Etcdserverpb__Compare *cmp_value(const char *k, const char *v) {
    Etcdserverpb__Compare *c = calloc(1, sizeof *c);
    etcdserverpb__compare__init(c);
    c->key = bin(k);
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
    c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
    c->value = bin(v);
    return c;
}

static Etcdserverpb__Compare *cmp_mod_greater(const char *k, int64_t rev) {
    Etcdserverpb__Compare *c = calloc(1, sizeof *c);
    etcdserverpb__compare__init(c);
    c->key = bin(k);
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    c->mod_revision = rev;
    return c;
}

static Etcdserverpb__TxnRequest *txn_new(Etcdserverpb__Compare *c, Etcdserverpb__RequestOp *s1,
                                         Etcdserverpb__RequestOp *s2, Etcdserverpb__RequestOp *f1,
                                         Etcdserverpb__RequestOp *f2) {
    Etcdserverpb__TxnRequest *t = calloc(1, sizeof *t);
    etcdserverpb__txn_request__init(t);
    if (c) {
        t->compare = calloc(1, sizeof *t->compare);
        t->compare[0] = c;
        t->n_compare = 1;
    }
    t->success = calloc(2, sizeof *t->success);
    t->failure = calloc(2, sizeof *t->failure);
    if (s1) t->success[t->n_success++] = s1;
    if (s2) t->success[t->n_success++] = s2;
    if (f1) t->failure[t->n_failure++] = f1;
    if (f2) t->failure[t->n_failure++] = f2;
    return t;
}

static Kshim__InternalRequest *rq_put(const char *k, const char *v, int64_t lease, int prev) {
    Kshim__InternalRequest *r = req_new();
    r->put = put_new(k, v, lease, prev);
    return r;
}

static Kshim__InternalRequest *rq_del(const char *k, const char *end, int prev) {
    Kshim__InternalRequest *r = req_new();
    r->delete_range = del_new(k, end, prev);
    return r;
}

static Kshim__InternalRequest *rq_grant(int64_t id, int64_t ttl) {
    Kshim__InternalRequest *r = req_new();
    r->lease_grant = calloc(1, sizeof *r->lease_grant);
    etcdserverpb__lease_grant_request__init(r->lease_grant);
    r->lease_grant->id = id;
    r->lease_grant->ttl = ttl;
    return r;
}

static Kshim__InternalRequest *rq_revoke(int64_t id) {
    Kshim__InternalRequest *r = req_new();
    r->lease_revoke = calloc(1, sizeof *r->lease_revoke);
    etcdserverpb__lease_revoke_request__init(r->lease_revoke);
    r->lease_revoke->id = id;
    return r;
}

/* The state every read-error case starts from: a, b, c (b twice), and lease
 * 100 holding keys l1 and l2. */
static void base_state(store_t *s) {
    Kshim__InternalRequest *r[] = {
        rq_put("a", "1", 0, 0), rq_put("b", "1", 0, 0),    rq_put("b", "2", 0, 0),   rq_put("c", "1", 0, 0),
        rq_grant(100, 60),      rq_put("l1", "x", 100, 0), rq_put("l2", "y", 100, 0)};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        apply_ok(s, r[i]);
        req_free(r[i]);
    }
}

/* ---- read errors ---- */

/* For n = 1, 2, ...: the nth read of applying req fails. Each time the
 * apply must fail (-1), leave the store as it was and, reopened, work
 * again; once n is past the entry's last read, the apply succeeds with the
 * result of a store that never failed. grouped: req follows another entry
 * in the same write group (dropped with it on the error). Returns how many
 * reads were failed. */
static int fail_each_read(const Kshim__InternalRequest *req, int grouped) {
    Kshim__InternalRequest *other = rq_put("zz", "group", 0, 0);
    store_t *ref = store_new();
    base_state(ref);
    if (grouped) apply_ok(ref, other);
    kv_result_t want;
    assert_int_equal(apply_at(ref, ++ref->index, req, &want), 0);
    view_t want_view = view_of(ref);

    store_t *s = store_new();
    base_state(s);
    view_t before = view_of(s);
    int failed = 0;
    kv_result_t got_res;
    for (uint64_t n = 1;; n++) {
        kv_result_t res, ores;
        uint64_t idx = s->index + 1;
        if (grouped) {
            mvcc_group_begin(s->m);
            assert_int_equal(apply_at(s, idx++, other, &ores), 0);
            kv_result_clear(&ores);
        }
        mvcc_arm_read_error(s->m, n);
        int rc = apply_at(s, idx, req, &res);
        if (mvcc_read_error_armed(s->m)) {
            /* no read of the entry failed: it must have applied */
            mvcc_arm_read_error(s->m, 0);
            assert_int_equal(rc, 0);
            if (grouped) assert_int_equal(mvcc_group_end(s->m), 0);
            s->index = idx;
            got_res = res;
            break;
        }
        assert_int_equal(rc, -1);
        assert_int_equal(res.code, 13);
        kv_result_clear(&res);
        if (grouped) mvcc_group_abort(s->m);
        failed++;
        view_t now = view_of(s);
        view_equal(&before, &now);
        free(now.kvs);
        store_reopen(s);
        now = view_of(s);
        view_equal(&before, &now);
        free(now.kvs);
        assert_true(n < 100);
    }
    /* the same entry, after all those failures and restarts, gives what a
     * store that never failed gives */
    assert_int_equal(s->index, ref->index);
    result_equal(&want, &got_res);
    kv_result_clear(&got_res);
    view_t got = view_of(s);
    view_equal(&want_view, &got);
    free(got.kvs);
    free(want_view.kvs);
    free(before.kvs);
    kv_result_clear(&want);
    req_free(other);
    store_free(s);
    store_free(ref);
    return failed;
}

static void t_put_read_error(void **state) {
    (void)state;
    Kshim__InternalRequest *r = rq_put("b", "3", 0, 1); /* replaces version 2 */
    assert_true(fail_each_read(r, 0) >= 1);
    assert_true(fail_each_read(r, 1) >= 1);
    req_free(r);
}

static void t_txn_compare_read_error(void **state) {
    (void)state;
    Kshim__InternalRequest *r = req_new();
    r->txn = txn_new(cmp_value("a", "1"), op_put(put_new("a", "2", 0, 1)),
                     op_range(range_new("b", NULL, 0, 0, 0)), op_del(del_new("c", NULL, 1)), NULL);
    assert_true(fail_each_read(r, 0) >= 3); /* compare, put's prev, range */
    assert_true(fail_each_read(r, 1) >= 3);
    req_free(r);
}

static void t_txn_range_read_error(void **state) {
    (void)state;
    /* compare false: the failure branch ranges at a past revision and counts */
    Kshim__InternalRequest *r = req_new();
    r->txn = txn_new(cmp_mod_greater("b", 100), NULL, NULL, op_range(range_new("a", "z", 3, 1, 0)),
                     op_range(range_new("a", "\xff", 0, 0, 1)));
    assert_true(fail_each_read(r, 0) >= 3);
    assert_true(fail_each_read(r, 1) >= 3);
    req_free(r);
}

static void t_delete_range_read_error(void **state) {
    (void)state;
    Kshim__InternalRequest *r = rq_del("a", "c", 1);
    assert_true(fail_each_read(r, 0) >= 1);
    assert_true(fail_each_read(r, 1) >= 1);
    req_free(r);
}

static void t_lease_revoke_read_error(void **state) {
    (void)state;
    /* Revoke writes the group before it reads (the 'M' table holds only
     * what is written), so in a group it is this same case after that write. */
    Kshim__InternalRequest *r = rq_revoke(100); /* deletes l1, l2 */
    assert_true(fail_each_read(r, 0) >= 3);     /* 'M' scan, one per key */
    req_free(r);
}

/* Put with a failed read used to write version 1 and a new create
 * revision; check the stored version once the retry succeeded. */
static void t_put_keeps_version(void **state) {
    (void)state;
    store_t *s = store_new();
    base_state(s);
    Kshim__InternalRequest *r = rq_put("b", "3", 0, 0);
    kv_result_t res;
    mvcc_arm_read_error(s->m, 1);
    assert_int_equal(apply_at(s, s->index + 1, r, &res), -1);
    kv_result_clear(&res);
    store_reopen(s);
    apply_ok(s, r);
    Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
    q.key = B("b");
    assert_int_equal(kv_range(s->m, &q, &s->hdr, &res), 0);
    Etcdserverpb__RangeResponse *rr = etcdserverpb__range_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(rr);
    assert_int_equal(rr->n_kvs, 1);
    assert_int_equal(rr->kvs[0]->version, 3);
    assert_int_equal(rr->kvs[0]->create_revision, 3);
    etcdserverpb__range_response__free_unpacked(rr, NULL);
    kv_result_clear(&res);
    req_free(r);
    store_free(s);
}

/* Auth: the outcome is decided from memory, the store is read back after
 * the commit (reload). A failed reload fails the apply; after a restart the
 * store holds the change exactly once and the caches agree. */
static void t_auth_reload_read_error(void **state) {
    (void)state;
    store_t *s = store_new();
    auth_store_t *as = NULL;
    assert_int_equal(auth_store_open(s->m, &as), AUTH_OK);
    Etcdserverpb__AuthUserAddRequest u = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
    o.no_password = 1;
    u.name = "alice";
    u.password = "";
    u.options = &o;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.auth_user_add = &u;
    kv_result_t res = {0};
    mvcc_arm_read_error(s->m, 1);
    assert_int_equal(auth_store_apply(as, 1, &req, &s->hdr, &res, NULL), -1);
    assert_false(mvcc_read_error_armed(s->m));
    kv_result_clear(&res);
    auth_store_free(as);
    store_reopen(s);
    assert_int_equal(auth_store_open(s->m, &as), AUTH_OK);
    /* replayed after the restart: skipped if it was stored, applied if not */
    int rc = auth_store_apply(as, 1, &req, &s->hdr, &res, NULL);
    assert_int_equal(rc, 1);
    kv_result_clear(&res);
    Authpb__User *got = auth_store_get_user(as, "alice");
    assert_non_null(got);
    authpb__user__free_unpacked(got, NULL);
    assert_int_equal(mvcc_applied_index(s->m), 1);
    auth_store_free(as);
    store_free(s);
}

/* ---- write groups ---- */

static void t_group_invisible_until_written(void **state) {
    (void)state;
    store_t *s = store_new();
    base_state(s);
    view_t before = view_of(s);
    size_t log_before = s->log_len;
    mvcc_group_begin(s->m);
    Kshim__InternalRequest *r1 = rq_put("a", "2", 0, 0), *r2 = rq_put("a", "3", 0, 1);
    apply_ok(s, r1);
    kv_result_t res;
    assert_int_equal(apply_at(s, ++s->index, r2, &res), 0);
    /* the second put saw the first: version 3, prev 2 */
    Etcdserverpb__PutResponse *pr = etcdserverpb__put_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(pr);
    assert_non_null(pr->prev_kv);
    assert_int_equal(pr->prev_kv->version, 2);
    assert_int_equal(pr->header->revision, before.rev + 2);
    etcdserverpb__put_response__free_unpacked(pr, NULL);
    kv_result_clear(&res);
    view_t mid = view_of(s);
    view_equal(&before, &mid);                /* readers see nothing yet */
    assert_int_equal(s->log_len, log_before); /* nor watchers */
    assert_int_equal(mvcc_group_end(s->m), 0);
    view_t after = view_of(s);
    assert_int_equal(after.rev, before.rev + 2);
    assert_int_equal(after.applied, s->index);
    assert_non_null(strstr(s->log + log_before, "a=3"));
    free(before.kvs);
    free(mid.kvs);
    free(after.kvs);
    req_free(r1);
    req_free(r2);
    store_free(s);
}

/* A deterministic random sequence of requests over a few keys. */
static uint64_t rnd_state;
static unsigned rnd(unsigned n) {
    rnd_state = rnd_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((rnd_state >> 33) % n);
}

static const char *rkey(void) {
    static const char *keys[] = {"k0", "k1", "k2", "k3", "k4", "k5"};
    return keys[rnd(6)];
}

static Kshim__InternalRequest *random_request(int64_t rev, int64_t compact) {
    char val[16];
    snprintf(val, sizeof val, "v%u", rnd(1000));
    int64_t past = rev - (int64_t)rnd(6);
    if (past < 1) past = 1;
    switch (rnd(13)) {
    case 0:
    case 1: return rq_put(rkey(), val, 0, (int)rnd(2));
    case 2: return rq_put(rkey(), val, rnd(2) ? 1000 + rnd(3) : 0, (int)rnd(2)); /* may not exist */
    case 10:
    case 11: return rq_grant(1000 + rnd(3), 60);
    case 12: return rq_revoke(1000 + rnd(3));
    case 3: {
        const char *a = rkey(), *b = rkey();
        if (strcmp(a, b) > 0) {
            const char *t = a;
            a = b;
            b = t;
        }
        return rnd(2) ? rq_del(a, NULL, (int)rnd(2)) : rq_del(a, b, (int)rnd(2));
    }
    case 4: {
        if (compact + 3 >= rev) return rq_put(rkey(), val, 0, 0);
        Kshim__InternalRequest *r = req_new();
        r->compaction = calloc(1, sizeof *r->compaction);
        etcdserverpb__compaction_request__init(r->compaction);
        r->compaction->revision = compact + 1 + (int64_t)rnd((unsigned)(rev - compact - 2));
        return r;
    }
    default: {
        const char *k1 = rkey();
        const char *k2 = rkey();
        while (strcmp(k2, k1) == 0) k2 = rkey();
        Kshim__InternalRequest *r = req_new();
        Etcdserverpb__Compare *c = rnd(2) ? cmp_value(rkey(), val) : cmp_mod_greater(rkey(), past);
        r->txn =
            txn_new(c, op_put(put_new(k1, val, 0, (int)rnd(2))),
                    op_range(range_new("k", "l", rnd(2) ? past : 0, rnd(3), (int)rnd(2))),
                    op_del(del_new(k2, NULL, (int)rnd(2))), op_range(range_new(rkey(), NULL, past, 0, 0)));
        return r;
    }
    }
}

static void t_groups_equal_single_writes(void **state) {
    (void)state;
    store_t *a = store_new(), *b = store_new();
    rnd_state = 42;
    int64_t compact = 0;
    size_t in_group = 0, group_size = 0;
    for (int i = 0; i < 800; i++) {
        Kshim__InternalRequest *r = random_request(mvcc_apply_revision(a->m), compact);
        if (r->compaction && r->compaction->revision > compact) compact = r->compaction->revision;
        if (in_group == 0) {
            group_size = 1 + rnd(12);
            mvcc_group_begin(b->m);
        }
        kv_result_t ra, rb;
        assert_int_equal(apply_at(a, ++a->index, r, &ra), 0);
        assert_int_equal(apply_at(b, ++b->index, r, &rb), 0);
        result_equal(&ra, &rb);
        kv_result_clear(&ra);
        kv_result_clear(&rb);
        req_free(r);
        if (++in_group == group_size) {
            assert_int_equal(mvcc_group_end(b->m), 0);
            in_group = 0;
            view_t va = view_of(a), vb = view_of(b);
            view_equal(&va, &vb);
            free(va.kvs);
            free(vb.kvs);
        }
    }
    if (in_group) assert_int_equal(mvcc_group_end(b->m), 0);
    view_t va = view_of(a), vb = view_of(b);
    view_equal(&va, &vb);
    assert_true(va.rev > 250);
    free(va.kvs);
    free(vb.kvs);
    assert_int_equal(a->log_len, b->log_len);
    assert_memory_equal(a->log, b->log, a->log_len);
    store_free(a);
    store_free(b);
}

/* A write error (here: the group's own write after a read error dropped
 * it) leaves the store at the group's start, also after a reopen. */
static void t_group_abort_stores_nothing(void **state) {
    (void)state;
    store_t *s = store_new();
    base_state(s);
    view_t before = view_of(s);
    mvcc_group_begin(s->m);
    Kshim__InternalRequest *r1 = rq_put("n1", "1", 0, 0), *r2 = rq_del("a", "z", 1);
    apply_ok(s, r1);
    mvcc_arm_read_error(s->m, 1);
    kv_result_t res;
    assert_int_equal(apply_at(s, s->index + 1, r2, &res), -1);
    kv_result_clear(&res);
    mvcc_group_abort(s->m);
    assert_int_equal(mvcc_apply_index(s->m), before.applied);
    assert_int_equal(mvcc_apply_revision(s->m), before.rev);
    store_reopen(s);
    view_t now = view_of(s);
    view_equal(&before, &now);
    free(now.kvs);
    free(before.kvs);
    req_free(r1);
    req_free(r2);
    store_free(s);
}

/* The group's write batch is kept between groups (cleared after each
 * write or abort; freed after one over GROUP_KEEP_BYTES, 1 MiB): nothing of
 * the aborted group or of an earlier group reaches a later one, and groups
 * before and after a big one leave what single writes leave. */
static void t_group_batch_reused(void **state) {
    (void)state;
    store_t *a = store_new(), *b = store_new();
    base_state(a);
    base_state(b);
    mvcc_group_begin(b->m);
    Kshim__InternalRequest *n1 = rq_put("n1", "1", 0, 0), *bad = rq_del("a", "z", 1);
    apply_ok(b, n1);
    mvcc_arm_read_error(b->m, 1);
    kv_result_t res;
    assert_int_equal(apply_at(b, b->index + 1, bad, &res), -1);
    kv_result_clear(&res);
    mvcc_group_abort(b->m);
    assert_false(mvcc_read_error_armed(b->m));
    b->index = mvcc_apply_index(b->m);
    req_free(n1);
    req_free(bad);
    char big[351]; /* the event log takes values of a few hundred bytes */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    const int puts[] = {2, 3500, 1, 3}; /* group 1: 3500 x 350 B, over 1 MiB */
    for (int g = 0; g < 4; g++) {
        mvcc_group_begin(b->m);
        for (int j = 0; j < puts[g]; j++) {
            char key[32];
            snprintf(key, sizeof key, "%s%d", j % 2 ? "b" : "g", g * 10000 + j);
            Kshim__InternalRequest *r = rq_put(key, g == 1 ? big : key, 0, 1);
            apply_ok(a, r);
            apply_ok(b, r);
            req_free(r);
        }
        assert_int_equal(mvcc_group_end(b->m), 0);
        view_t va = view_of(a), vb = view_of(b);
        view_equal(&va, &vb);
        free(va.kvs);
        free(vb.kvs);
    }
    store_reopen(b);
    view_t va = view_of(a), vb = view_of(b);
    view_equal(&va, &vb);
    free(va.kvs);
    free(vb.kvs);
    store_free(a);
    store_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_put_read_error),
        cmocka_unit_test(t_txn_compare_read_error),
        cmocka_unit_test(t_txn_range_read_error),
        cmocka_unit_test(t_delete_range_read_error),
        cmocka_unit_test(t_lease_revoke_read_error),
        cmocka_unit_test(t_put_keeps_version),
        cmocka_unit_test(t_auth_reload_read_error),
        cmocka_unit_test(t_group_invisible_until_written),
        cmocka_unit_test(t_groups_equal_single_writes),
        cmocka_unit_test(t_group_abort_stores_nothing),
        cmocka_unit_test(t_group_batch_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
