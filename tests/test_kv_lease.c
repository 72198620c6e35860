/*
 * test_kv_lease.c: storage/lease/lease.h, etcd's lessor as a replicated state
 * machine beside the KV store: grant (minimum TTL, too-large TTL, duplicate
 * id), Put attaching / re-attaching / detaching keys, Put with an unknown
 * lease, revoke deleting every attached key in ONE revision with DELETE
 * events carrying prev_kv, replay by index, reopen keeping leases and
 * attachments, demote / promote again and reload from the store (a Raft
 * snapshot), and the expiry schedule (promote, renew, take_expired with
 * the retry interval, pile-up spreading, remaining TTL truncation).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv.h"
#include "lease.h"
#include "mvcc.h"

#define MAX_EVENTS 64

typedef struct captured_event {
    int type;
    char key[32];
    int64_t prev_lease;
    int has_prev;
} captured_event_t;

typedef struct fx {
    char dir[256];
    mvcc_t *m;
    lessor_t *l;
    uint64_t index;
    kv_header_info_t hdr;
    /* on_events capture: one entry per committed revision with events */
    int event_calls;
    int64_t last_event_rev;
    size_t n_events;
    captured_event_t events[MAX_EVENTS];
} fx_t;

static int exists_hook(void *ctx, int64_t id) {
    fx_t *f = ctx;
    return f->l && lessor_exists(f->l, id);
}

static void events_hook(void *ctx, int64_t rev, const mvcc_event_t *evs, size_t n) {
    fx_t *f = ctx;
    f->event_calls++;
    f->last_event_rev = rev;
    f->n_events = 0;
    for (size_t i = 0; i < n && i < MAX_EVENTS; i++) {
        captured_event_t *c = &f->events[f->n_events++];
        c->type = evs[i].type;
        snprintf(c->key, sizeof c->key, "%.*s", (int)evs[i].kv->key.len, evs[i].kv->key.data);
        c->has_prev = evs[i].prev_kv != NULL;
        c->prev_lease = evs[i].prev_kv ? evs[i].prev_kv->lease : 0;
    }
}

static void fx_open(fx_t *f) {
    char err[256];
    mvcc_options_t opts = {
        .lease_exists = exists_hook, .lease_ctx = f, .on_events = events_hook, .events_ctx = f};
    assert_int_equal(mvcc_open(f->dir, &opts, &f->m, err, sizeof err), 0);
    assert_int_equal(lessor_open(f->m, 2, &f->l), LEASE_OK);
    f->index = mvcc_applied_index(f->m);
}

static void fx_close(fx_t *f) {
    lessor_free(f->l);
    f->l = NULL;
    mvcc_close(f->m);
    f->m = NULL;
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(f->dir, sizeof f->dir, "%s/kvlease-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    f->hdr = (kv_header_info_t){.cluster_id = 7, .member_id = 9, .raft_term = 2};
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    fx_close(f);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static ProtobufCBinaryData B(const char *s) {
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

/* Applies a lease request as the next entry; returns the result code. */
static int lease_apply(fx_t *f, Kshim__InternalRequest *req, kv_result_t *res, uint64_t now) {
    memset(res, 0, sizeof *res);
    assert_int_equal(lessor_apply(f->l, ++f->index, req, &f->hdr, res, now), 1);
    assert_int_equal(mvcc_applied_index(f->m), f->index);
    return res->code;
}

static int grant(fx_t *f, int64_t id, int64_t ttl, int64_t *granted) {
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.id = id;
    g.ttl = ttl;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.lease_grant = &g;
    kv_result_t res;
    int code = lease_apply(f, &req, &res, 1000);
    if (code == 0) {
        Etcdserverpb__LeaseGrantResponse *r =
            etcdserverpb__lease_grant_response__unpack(NULL, res.resp_len, res.resp);
        assert_non_null(r);
        assert_int_equal(r->id, id);
        assert_int_equal(r->header->cluster_id, 7);
        assert_int_equal(r->header->member_id, 9);
        assert_int_equal(r->header->raft_term, 2);
        assert_int_equal(r->header->revision, mvcc_revision(f->m));
        if (granted) *granted = r->ttl;
        etcdserverpb__lease_grant_response__free_unpacked(r, NULL);
    }
    kv_result_clear(&res);
    return code;
}

/* Revoke; returns the code and the response header's revision. */
static int do_revoke(fx_t *f, int64_t id, int64_t *rev) {
    Etcdserverpb__LeaseRevokeRequest r = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    r.id = id;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.lease_revoke = &r;
    kv_result_t res;
    int code = lease_apply(f, &req, &res, 1000);
    if (code == 0 && rev) {
        Etcdserverpb__LeaseRevokeResponse *rr =
            etcdserverpb__lease_revoke_response__unpack(NULL, res.resp_len, res.resp);
        assert_non_null(rr);
        *rev = rr->header->revision;
        etcdserverpb__lease_revoke_response__free_unpacked(rr, NULL);
    }
    if (code != 0) assert_string_equal(res.message, "etcdserver: requested lease not found");
    kv_result_clear(&res);
    return code;
}

static int put_opts(fx_t *f, const char *k, int64_t lease, int ignore_lease) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(k);
    p.value = B("v");
    p.lease = lease;
    p.ignore_lease = ignore_lease;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = &p;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    assert_int_equal(lessor_apply(f->l, f->index + 1, &req, &f->hdr, &res, 1000), 0);
    assert_int_equal(kv_apply(f->m, ++f->index, &req, &f->hdr, &res), 0);
    int code = res.code;
    if (code == 5) assert_string_equal(res.message, "etcdserver: requested lease not found");
    kv_result_clear(&res);
    return code;
}

static int put(fx_t *f, const char *k, int64_t lease) { return put_opts(f, k, lease, 0); }

static void del(fx_t *f, const char *k) {
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B(k);
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.delete_range = &d;
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, ++f->index, &req, &f->hdr, &res), 0);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
}

/* Lease of key k now (0 if absent or no lease); -1 if the key is absent. */
static int64_t key_lease(fx_t *f, const char *k) {
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    r.key = B(k);
    kv_result_t res;
    assert_int_equal(kv_range(f->m, &r, &f->hdr, &res), 0);
    Etcdserverpb__RangeResponse *rr = etcdserverpb__range_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(rr);
    int64_t lease = rr->n_kvs ? rr->kvs[0]->lease : -1;
    etcdserverpb__range_response__free_unpacked(rr, NULL);
    kv_result_clear(&res);
    return lease;
}

typedef struct keys_seen {
    char keys[16][32];
    int n;
} keys_seen_t;

static int see_key(void *arg, const uint8_t *key, size_t len) {
    keys_seen_t *ks = arg;
    assert_true(ks->n < 16);
    snprintf(ks->keys[ks->n++], 32, "%.*s", (int)len, key);
    return 0;
}

static keys_seen_t attached(fx_t *f, int64_t id) {
    keys_seen_t ks;
    memset(&ks, 0, sizeof ks);
    assert_int_equal(lease_scan_keys(f->m, id, see_key, &ks), MVCC_OK);
    return ks;
}

/* ---- tests ---- */

static void test_grant_rules(void **state) {
    fx_t *f = *state;
    int64_t ttl = 0;
    int64_t rev0 = mvcc_revision(f->m);
    assert_int_equal(grant(f, 100, 1, &ttl), 0);
    assert_int_equal(ttl, 2); /* raised to the minimum TTL */
    assert_int_equal(grant(f, 101, 60, &ttl), 0);
    assert_int_equal(ttl, 60);
    assert_true(lessor_exists(f->l, 100));
    assert_true(lessor_exists(f->l, 101));
    assert_false(lessor_exists(f->l, 102));
    assert_int_equal(mvcc_revision(f->m), rev0); /* grants make no revision */

    kv_result_t res;
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.lease_grant = &g;
    g.id = 100;
    g.ttl = 5;
    assert_int_equal(lease_apply(f, &req, &res, 1000), 9);
    assert_string_equal(res.message, "etcdserver: lease already exists");
    kv_result_clear(&res);
    g.id = 102;
    g.ttl = LEASE_MAX_TTL + 1;
    assert_int_equal(lease_apply(f, &req, &res, 1000), 11);
    assert_string_equal(res.message, "etcdserver: too large lease TTL");
    kv_result_clear(&res);
    assert_false(lessor_exists(f->l, 102));
    g.ttl = LEASE_MAX_TTL;
    assert_int_equal(lease_apply(f, &req, &res, 1000), 0);
    kv_result_clear(&res);
    assert_int_equal(lessor_count(f->l), 3);

    /* not a lease request: 0, nothing applied */
    Kshim__InternalRequest other = KSHIM__INTERNAL_REQUEST__INIT;
    assert_int_equal(lessor_apply(f->l, f->index + 1, &other, &f->hdr, &res, 1000), 0);
    assert_int_equal(mvcc_applied_index(f->m), f->index);
}

static void test_put_attach_and_unknown_lease(void **state) {
    fx_t *f = *state;
    assert_int_equal(grant(f, 7, 30, NULL), 0);
    int64_t rev = mvcc_revision(f->m);
    assert_int_equal(put(f, "a", 99), 5); /* unknown lease */
    assert_int_equal(mvcc_revision(f->m), rev);
    assert_int_equal(key_lease(f, "a"), -1);
    assert_int_equal(put(f, "a", 7), 0);
    assert_int_equal(put(f, "b", 7), 0);
    assert_int_equal(put(f, "c", 0), 0);
    assert_int_equal(key_lease(f, "a"), 7);
    keys_seen_t ks = attached(f, 7);
    assert_int_equal(ks.n, 2);
    assert_string_equal(ks.keys[0], "a");
    assert_string_equal(ks.keys[1], "b");
}

static void test_revoke_deletes_in_one_revision(void **state) {
    fx_t *f = *state;
    assert_int_equal(grant(f, 7, 30, NULL), 0);
    assert_int_equal(put(f, "k3", 7), 0);
    assert_int_equal(put(f, "k1", 7), 0);
    assert_int_equal(put(f, "k2", 7), 0);
    assert_int_equal(put(f, "other", 0), 0);
    int64_t before = mvcc_revision(f->m);
    int calls = f->event_calls;
    int64_t rev = 0;
    assert_int_equal(do_revoke(f, 7, &rev), 0);
    assert_int_equal(rev, before + 1);
    assert_int_equal(mvcc_revision(f->m), before + 1);
    assert_int_equal(f->event_calls, calls + 1);
    assert_int_equal(f->last_event_rev, before + 1);
    assert_int_equal(f->n_events, 3);
    const char *want[] = {"k1", "k2", "k3"}; /* key order, as etcd sorts */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f->events[i].type, MVCCPB__EVENT__EVENT_TYPE__DELETE);
        assert_string_equal(f->events[i].key, want[i]);
        assert_true(f->events[i].has_prev);
        assert_int_equal(f->events[i].prev_lease, 7);
    }
    assert_int_equal(key_lease(f, "k1"), -1);
    assert_int_equal(key_lease(f, "other"), 0);
    assert_false(lessor_exists(f->l, 7));
    assert_int_equal(attached(f, 7).n, 0);
    /* revoking again: not found, entry consumed */
    assert_int_equal(do_revoke(f, 7, NULL), 5);
    /* a lease without keys: revoked without a new revision */
    assert_int_equal(grant(f, 8, 30, NULL), 0);
    before = mvcc_revision(f->m);
    assert_int_equal(do_revoke(f, 8, &rev), 0);
    assert_int_equal(rev, before);
    assert_int_equal(mvcc_revision(f->m), before);
    /* Put with the revoked lease fails */
    assert_int_equal(put(f, "k1", 7), 5);
}

static void test_reattach_detach(void **state) {
    fx_t *f = *state;
    assert_int_equal(grant(f, 1, 30, NULL), 0);
    assert_int_equal(grant(f, 2, 30, NULL), 0);
    assert_int_equal(put(f, "x", 1), 0);
    assert_int_equal(put(f, "y", 1), 0);
    assert_int_equal(put(f, "z", 1), 0);
    assert_int_equal(put(f, "w", 1), 0);
    assert_int_equal(put(f, "x", 2), 0);         /* re-attached to 2 */
    assert_int_equal(put(f, "y", 0), 0);         /* detached */
    assert_int_equal(put_opts(f, "w", 0, 1), 0); /* ignore_lease keeps 1 */
    del(f, "z");                                 /* deleting detaches */
    assert_int_equal(key_lease(f, "w"), 1);
    keys_seen_t k1 = attached(f, 1), k2 = attached(f, 2);
    assert_int_equal(k1.n, 1);
    assert_string_equal(k1.keys[0], "w");
    assert_int_equal(k2.n, 1);
    assert_string_equal(k2.keys[0], "x");

    assert_int_equal(do_revoke(f, 1, NULL), 0);
    assert_int_equal(f->n_events, 1);
    assert_string_equal(f->events[0].key, "w");
    assert_int_equal(key_lease(f, "x"), 2);
    assert_int_equal(key_lease(f, "y"), 0);
    assert_int_equal(key_lease(f, "w"), -1);
    assert_int_equal(do_revoke(f, 2, NULL), 0);
    assert_int_equal(key_lease(f, "x"), -1);
    assert_int_equal(key_lease(f, "y"), 0);
}

static void test_replay_is_idempotent(void **state) {
    fx_t *f = *state;
    assert_int_equal(grant(f, 5, 30, NULL), 0);
    uint64_t granted_at = f->index;
    assert_int_equal(put(f, "a", 5), 0);
    assert_int_equal(do_revoke(f, 5, NULL), 0);
    uint64_t applied = mvcc_applied_index(f->m);
    /* replaying the grant (index already applied) changes nothing */
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.id = 5;
    g.ttl = 30;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.lease_grant = &g;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    assert_int_equal(lessor_apply(f->l, granted_at, &req, &f->hdr, &res, 1000), 1);
    assert_null(res.resp);
    assert_int_equal(res.code, 0);
    assert_false(lessor_exists(f->l, 5));
    assert_int_equal(mvcc_applied_index(f->m), applied);
}

static void test_reopen_keeps_leases(void **state) {
    fx_t *f = *state;
    assert_int_equal(grant(f, 11, 1, NULL), 0);
    assert_int_equal(grant(f, 12, 40, NULL), 0);
    assert_int_equal(put(f, "p", 12), 0);
    assert_int_equal(put(f, "q", 12), 0);
    fx_close(f);
    fx_open(f);
    assert_int_equal(lessor_count(f->l), 2);
    assert_true(lessor_exists(f->l, 11));
    int64_t granted = 0, remaining = 0;
    assert_int_equal(lessor_lookup(f->l, 11, 5000, &granted, &remaining), LEASE_OK);
    assert_int_equal(granted, 2); /* the raised TTL persisted */
    assert_int_equal(lessor_lookup(f->l, 12, 5000, &granted, &remaining), LEASE_OK);
    assert_int_equal(granted, 40);
    assert_int_equal(attached(f, 12).n, 2);
    /* not promoted yet: never expires */
    int64_t ids[4];
    assert_int_equal(lessor_take_expired(f->l, UINT64_MAX / 2, ids, 4), 0);
    /* promote at t=10 s with a 1 s extension: 12 expires at 10+1+40 s */
    lessor_promote(f->l, 10000, 1000);
    assert_int_equal(lessor_lookup(f->l, 12, 10000, &granted, &remaining), LEASE_OK);
    assert_int_equal(remaining, 41);
    assert_int_equal(lessor_take_expired(f->l, 12999, ids, 4), 0);
    assert_int_equal(lessor_take_expired(f->l, 13000, ids, 4), 1);
    assert_int_equal(ids[0], 11);
    assert_int_equal(do_revoke(f, 12, NULL), 0);
    assert_int_equal(key_lease(f, "p"), -1);
    assert_int_equal(key_lease(f, "q"), -1);
}

static void test_expiry_schedule(void **state) {
    fx_t *f = *state;
    lessor_promote(f->l, 0, 0);
    assert_true(lessor_is_primary(f->l));
    /* grants applied at now=1000 ms (see grant()) */
    assert_int_equal(grant(f, 1, 5, NULL), 0);  /* deadline 6000 */
    assert_int_equal(grant(f, 2, 10, NULL), 0); /* deadline 11000 */
    int64_t ids[8], ttl = 0, granted, remaining;
    assert_int_equal(lessor_take_expired(f->l, 5999, ids, 8), 0);
    /* remaining truncates toward zero */
    assert_int_equal(lessor_lookup(f->l, 1, 4001, &granted, &remaining), LEASE_OK);
    assert_int_equal(remaining, 1);
    assert_int_equal(lessor_lookup(f->l, 1, 7500, &granted, &remaining), LEASE_OK);
    assert_int_equal(remaining, -1);
    assert_int_equal(lessor_lookup(f->l, 3, 0, &granted, &remaining), LEASE_E_NOT_FOUND);
    /* renew lease 1 at 5000: deadline 10000 */
    assert_int_equal(lessor_renew(f->l, 1, 5000, &ttl), LEASE_OK);
    assert_int_equal(ttl, 5);
    assert_int_equal(lessor_take_expired(f->l, 9999, ids, 8), 0);
    assert_int_equal(lessor_take_expired(f->l, 10000, ids, 8), 1);
    assert_int_equal(ids[0], 1);
    /* expired lease: renew refused, not offered again until the retry */
    assert_int_equal(lessor_renew(f->l, 1, 10001, &ttl), LEASE_E_NOT_FOUND);
    assert_int_equal(lessor_take_expired(f->l, 11000, ids, 8), 1);
    assert_int_equal(ids[0], 2);
    assert_int_equal(lessor_take_expired(f->l, 12999, ids, 8), 0);
    assert_int_equal(lessor_take_expired(f->l, 10000 + LEASE_RETRY_MS, ids, 8), 1);
    assert_int_equal(ids[0], 1);
    /* revoked: gone from the schedule */
    assert_int_equal(do_revoke(f, 1, NULL), 0);
    assert_int_equal(do_revoke(f, 2, NULL), 0);
    assert_int_equal(lessor_take_expired(f->l, UINT64_MAX / 2, ids, 8), 0);
    assert_int_equal(lessor_renew(f->l, 99, 0, &ttl), LEASE_E_NOT_FOUND);
}

/* etcd's Demote: a member that stops leading expires nothing; promoted
 * again, every lease gets now + extension + TTL. */
static void test_demote_then_promote(void **state) {
    fx_t *f = *state;
    lessor_promote(f->l, 0, 0);
    assert_int_equal(grant(f, 1, 5, NULL), 0); /* deadline 6000 */
    lessor_demote(f->l);
    assert_false(lessor_is_primary(f->l));
    int64_t ids[4], ttl = 0, granted = 0, remaining = 0;
    assert_int_equal(lessor_take_expired(f->l, UINT64_MAX / 2, ids, 4), 0);
    assert_int_equal(lessor_lookup(f->l, 1, 50000, &granted, &remaining), LEASE_OK);
    assert_int_equal(remaining, INT64_MAX / 1000000000);
    assert_int_equal(lessor_renew(f->l, 1, 50000, &ttl), LEASE_OK);
    assert_int_equal(ttl, 5);
    lessor_promote(f->l, 20000, 1000); /* deadline 26000 */
    assert_int_equal(lessor_lookup(f->l, 1, 20000, &granted, &remaining), LEASE_OK);
    assert_int_equal(remaining, 6);
    assert_int_equal(lessor_take_expired(f->l, 25999, ids, 4), 0);
    assert_int_equal(lessor_take_expired(f->l, 26000, ids, 4), 1);
    assert_int_equal(ids[0], 1);
}

/* After a snapshot replaced the store: the table is what the store holds,
 * and a primary lessor stays primary with fresh deadlines. */
static void test_reload_from_store(void **state) {
    fx_t *f = *state;
    lessor_promote(f->l, 0, 0);
    assert_int_equal(grant(f, 1, 5, NULL), 0);
    /* another lessor on the same store writes lease 3 (as a snapshot would) */
    lessor_t *other = NULL;
    assert_int_equal(lessor_open(f->m, 2, &other), LEASE_OK);
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.id = 3;
    g.ttl = 30;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.lease_grant = &g;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    assert_int_equal(lessor_apply(other, ++f->index, &req, &f->hdr, &res, 0), 1);
    kv_result_clear(&res);
    lessor_free(other);
    assert_false(lessor_exists(f->l, 3));
    assert_int_equal(lessor_reload(f->l, 100000, 1000), LEASE_OK);
    assert_true(lessor_exists(f->l, 3));
    assert_true(lessor_exists(f->l, 1));
    assert_int_equal(lessor_count(f->l), 2);
    assert_true(lessor_is_primary(f->l));
    int64_t granted = 0, remaining = 0, ids[4];
    assert_int_equal(lessor_lookup(f->l, 3, 100000, &granted, &remaining), LEASE_OK);
    assert_int_equal(remaining, 31);
    assert_int_equal(lessor_take_expired(f->l, 105999, ids, 4), 0);
    assert_int_equal(lessor_take_expired(f->l, 106000, ids, 4), 1);
    assert_int_equal(ids[0], 1);
}

static void test_take_expired_respects_max_and_list_order(void **state) {
    fx_t *f = *state;
    lessor_promote(f->l, 0, 0);
    for (int i = 1; i <= 20; i++)
        assert_int_equal(grant(f, i, 2 + (21 - i), NULL), 0); /* later ids expire sooner */
    int64_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(lessor_list(f->l, &ids, &n), LEASE_OK);
    assert_int_equal(n, 20);
    assert_int_equal(ids[0], 20);
    assert_int_equal(ids[19], 1);
    free(ids);
    int64_t got[8];
    assert_int_equal(lessor_take_expired(f->l, 1000000, got, 8), 8);
    assert_int_equal(got[0], 20);
    assert_int_equal(lessor_take_expired(f->l, 1000000, got, 8), 8);
    assert_int_equal(lessor_take_expired(f->l, 1000000, got, 8), 4);
    assert_int_equal(lessor_take_expired(f->l, 1000000, got, 8), 0);
}

static void test_promote_spreads_pileup(void **state) {
    fx_t *f = *state;
    for (int i = 1; i <= 2000; i++) assert_int_equal(grant(f, i, 10, NULL), 0);
    lessor_promote(f->l, 0, 1000);
    /* all would expire at 11 s; at most 750 per second may */
    static int64_t ids[2000];
    size_t first = lessor_take_expired(f->l, 11999, ids, 2000);
    assert_true(first >= 700 && first <= 760);
    size_t all = first + lessor_take_expired(f->l, 14000, ids, 2000);
    assert_int_equal(all, 2000);
}

/* A Txn applies all its ops as one request: attach on put, detach on
 * delete, and an unknown lease anywhere fails it whole with no change. */
static int txn2(fx_t *f, const char *put_key, int64_t lease, const char *del_key) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B(put_key);
    p.value = B("t");
    p.lease = lease;
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B(del_key);
    Etcdserverpb__RequestOp op_put = ETCDSERVERPB__REQUEST_OP__INIT, op_del = ETCDSERVERPB__REQUEST_OP__INIT;
    op_put.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op_put.request_put = &p;
    op_del.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op_del.request_delete_range = &d;
    Etcdserverpb__RequestOp *ops[2] = {&op_put, &op_del};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.n_success = 2;
    t.success = ops;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.txn = &t;
    kv_result_t res;
    assert_int_equal(kv_apply(f->m, ++f->index, &req, &f->hdr, &res), 0);
    int code = res.code;
    kv_result_clear(&res);
    return code;
}

static void test_txn_attach_detach(void **state) {
    fx_t *f = *state;
    assert_int_equal(grant(f, 3, 30, NULL), 0);
    assert_int_equal(put(f, "t1", 3), 0);
    assert_int_equal(txn2(f, "t2", 3, "t1"), 0);
    keys_seen_t ks = attached(f, 3);
    assert_int_equal(ks.n, 1);
    assert_string_equal(ks.keys[0], "t2");
    int64_t rev = mvcc_revision(f->m);
    assert_int_equal(txn2(f, "t3", 77, "t2"), 5); /* unknown lease: nothing applied */
    assert_int_equal(mvcc_revision(f->m), rev);
    assert_int_equal(key_lease(f, "t2"), 3);
    assert_int_equal(key_lease(f, "t3"), -1);
    assert_int_equal(attached(f, 3).n, 1);
    assert_int_equal(do_revoke(f, 3, NULL), 0);
    assert_int_equal(key_lease(f, "t2"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grant_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_attach_and_unknown_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_deletes_in_one_revision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reattach_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_attach_detach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_schedule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_expired_respects_max_and_list_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_promote_spreads_pileup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_demote_then_promote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_from_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
