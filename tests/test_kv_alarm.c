/*
 * test_kv_alarm.c: the alarm state machine and the quota (storage/kv/kv_alarm.c):
 * ACTIVATE / DEACTIVATE / GET applied as Raft entries, persisted with the
 * applied index (survives a reopen), idempotent on replay, and the writes an
 * active NOSPACE or CORRUPT alarm refuses at apply (etcd's applierV3Capped
 * and applierV3Corrupt) while reads, deletes and compaction go on.
 */
#include "kv_alarm.h"

#include "grpc_status.h"
#include "kv_fixture.h"

static int setup(void **state) { return fx_setup(state); }
static int teardown(void **state) { return fx_teardown(state); }

enum {
    NOSPACE = ETCDSERVERPB__ALARM_TYPE__NOSPACE,
    CORRUPT = ETCDSERVERPB__ALARM_TYPE__CORRUPT,
    ACTIVATE = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE,
    DEACTIVATE = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE,
    GET = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET,
};

/* Applies an AlarmRequest at the next index; returns the number of alarms
 * in the response. */
static size_t alarm_apply(fx_t *f, kv_alarms_t *a, int action, uint64_t member, int type) {
    Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
    ar.action = action;
    ar.memberid = member;
    ar.alarm = type;
    kv_result_t res;
    assert_int_equal(kv_alarms_apply(a, f->m, ++f->index, &ar, &f->hdr, &res), 0);
    assert_int_equal(res.code, 0);
    assert_int_equal(mvcc_apply_index(f->m), f->index);
    Etcdserverpb__AlarmResponse *resp = etcdserverpb__alarm_response__unpack(NULL, res.resp_len, res.resp);
    assert_non_null(resp);
    size_t n = resp->n_alarms;
    etcdserverpb__alarm_response__free_unpacked(resp, NULL);
    kv_result_clear(&res);
    return n;
}

/* Offers req to kv_alarms_refuse at the next index: 1 refused (code and
 * text checked against want), 0 passed (the index is not consumed). */
static int refused(fx_t *f, kv_alarms_t *a, const Kshim__InternalRequest *req, int want_code,
                   const char *want_msg) {
    kv_result_t res;
    memset(&res, 0, sizeof res);
    int rc = kv_alarms_refuse(a, f->m, f->index + 1, req, &res);
    assert_true(rc == 0 || rc == 1);
    if (rc == 1) {
        f->index++;
        assert_int_equal(mvcc_apply_index(f->m), f->index);
        assert_int_equal(res.code, want_code);
        assert_string_equal(res.message, want_msg);
    }
    kv_result_clear(&res);
    return rc;
}

static void test_activate_get_deactivate(void **state) {
    fx_t *f = *state;
    kv_alarms_t *a = NULL;
    assert_int_equal(kv_alarms_open(f->m, &a), 0);
    assert_int_equal(kv_alarms_get(a, ETCDSERVERPB__ALARM_TYPE__NONE, NULL, 0), 0);
    assert_int_equal(alarm_apply(f, a, ACTIVATE, 7, NOSPACE), 1);
    assert_int_equal(alarm_apply(f, a, ACTIVATE, 7, NOSPACE), 1); /* again: the same one */
    assert_int_equal(alarm_apply(f, a, ACTIVATE, 3, NOSPACE), 1);
    assert_int_equal(alarm_apply(f, a, GET, 0, ETCDSERVERPB__ALARM_TYPE__NONE), 2);
    assert_int_equal(alarm_apply(f, a, GET, 0, CORRUPT), 0);
    kv_alarm_t v[4];
    assert_int_equal(kv_alarms_get(a, NOSPACE, v, 4), 2);
    assert_int_equal(v[0].member_id, 3); /* sorted by member id */
    assert_int_equal(v[1].member_id, 7);
    assert_int_equal(alarm_apply(f, a, DEACTIVATE, 7, NOSPACE), 1);
    assert_int_equal(alarm_apply(f, a, DEACTIVATE, 7, NOSPACE), 0); /* not active any more */
    assert_int_equal(alarm_apply(f, a, DEACTIVATE, 3, CORRUPT), 0); /* wrong type */
    assert_int_equal(kv_alarms_get(a, ETCDSERVERPB__ALARM_TYPE__NONE, v, 4), 1);
    kv_alarms_free(a);
}

static void test_persisted_and_replay_is_idempotent(void **state) {
    fx_t *f = *state;
    kv_alarms_t *a = NULL;
    assert_int_equal(kv_alarms_open(f->m, &a), 0);
    assert_int_equal(alarm_apply(f, a, ACTIVATE, 9, CORRUPT), 1);
    uint64_t at = f->index;
    kv_alarms_free(a);
    /* reopen the store: the alarm and the applied index are there */
    char err[256];
    mvcc_close(f->m);
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
    assert_int_equal(mvcc_applied_index(f->m), at);
    assert_int_equal(kv_alarms_open(f->m, &a), 0);
    kv_alarm_t v[2];
    assert_int_equal(kv_alarms_get(a, CORRUPT, v, 2), 1);
    assert_int_equal(v[0].member_id, 9);
    /* a reload (snapshot installed) reads the same set */
    assert_int_equal(kv_alarms_reload(a, f->m), 0);
    assert_int_equal(kv_alarms_get(a, CORRUPT, v, 2), 1);
    /* the same entry replayed changes nothing */
    Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
    ar.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE;
    ar.memberid = 9;
    ar.alarm = ETCDSERVERPB__ALARM_TYPE__CORRUPT;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    assert_int_equal(kv_alarms_apply(a, f->m, at, &ar, &f->hdr, &res), 0);
    assert_null(res.resp);
    assert_int_equal(kv_alarms_get(a, CORRUPT, v, 2), 1);
    kv_alarms_free(a);
}

static void test_nospace_caps_writes(void **state) {
    fx_t *f = *state;
    kv_alarms_t *a = NULL;
    assert_int_equal(kv_alarms_open(f->m, &a), 0);
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B("k");
    p.value = B("v");
    Kshim__InternalRequest put = KSHIM__INTERNAL_REQUEST__INIT;
    put.put = &p;
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B("k");
    Kshim__InternalRequest del = KSHIM__INTERNAL_REQUEST__INIT;
    del.delete_range = &d;
    Etcdserverpb__RequestOp op_put = ETCDSERVERPB__REQUEST_OP__INIT, op_del = ETCDSERVERPB__REQUEST_OP__INIT;
    op_put.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op_put.request_put = &p;
    op_del.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op_del.request_delete_range = &d;
    Etcdserverpb__RequestOp *ops_put[1] = {&op_put}, *ops_del[1] = {&op_del};
    Etcdserverpb__TxnRequest tp = ETCDSERVERPB__TXN_REQUEST__INIT, td = ETCDSERVERPB__TXN_REQUEST__INIT;
    tp.n_failure = 1; /* a put in either branch counts (etcd's costTxn) */
    tp.failure = ops_put;
    td.n_success = 1;
    td.success = ops_del;
    Kshim__InternalRequest txn_put = KSHIM__INTERNAL_REQUEST__INIT, txn_del = KSHIM__INTERNAL_REQUEST__INIT;
    txn_put.txn = &tp;
    txn_del.txn = &td;
    Etcdserverpb__LeaseGrantRequest lg = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    Kshim__InternalRequest grant = KSHIM__INTERNAL_REQUEST__INIT;
    grant.lease_grant = &lg;
    Etcdserverpb__CompactionRequest c = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    Kshim__InternalRequest compact = KSHIM__INTERNAL_REQUEST__INIT;
    compact.compaction = &c;

    /* no alarm: nothing refused */
    assert_int_equal(refused(f, a, &put, 0, ""), 0);
    assert_int_equal(refused(f, a, &grant, 0, ""), 0);

    alarm_apply(f, a, ACTIVATE, 1, NOSPACE);
    const char *ns = "etcdserver: mvcc: database space exceeded";
    assert_int_equal(refused(f, a, &put, GRPC_RESOURCE_EXHAUSTED, ns), 1);
    assert_int_equal(refused(f, a, &txn_put, GRPC_RESOURCE_EXHAUSTED, ns), 1);
    assert_int_equal(refused(f, a, &grant, GRPC_RESOURCE_EXHAUSTED, ns), 1);
    assert_int_equal(refused(f, a, &del, 0, ""), 0);
    assert_int_equal(refused(f, a, &txn_del, 0, ""), 0);
    assert_int_equal(refused(f, a, &compact, 0, ""), 0);
    /* a refused put changed no key */
    assert_int_equal(mvcc_apply_revision(f->m), 1);

    alarm_apply(f, a, ACTIVATE, 1, CORRUPT);
    const char *cr = "etcdserver: corrupt cluster";
    assert_int_equal(refused(f, a, &del, GRPC_DATA_LOSS, cr), 1);
    assert_int_equal(refused(f, a, &compact, GRPC_DATA_LOSS, cr), 1);
    assert_int_equal(refused(f, a, &put, GRPC_DATA_LOSS, cr), 1);

    alarm_apply(f, a, DEACTIVATE, 1, CORRUPT);
    alarm_apply(f, a, DEACTIVATE, 1, NOSPACE);
    assert_int_equal(refused(f, a, &put, 0, ""), 0);
    fx_put(f, "k", "v"); /* writes work again */
    kv_alarms_free(a);
}

static void test_quota_available(void **state) {
    fx_t *f = *state;
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B("k");
    p.value = B("v");
    Kshim__InternalRequest put = KSHIM__INTERNAL_REQUEST__INIT;
    put.put = &p;
    assert_int_equal(kv_request_cost(&put), 256 + 1 + 1);
    assert_true(kv_quota_available(f->m, &put)); /* 2 GiB default */
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    Kshim__InternalRequest del = KSHIM__INTERNAL_REQUEST__INIT;
    del.delete_range = &d;
    assert_int_equal(kv_request_cost(&del), 0);

    char dir[300];
    snprintf(dir, sizeof dir, "%s/small", f->dir);
    mvcc_options_t o = {.quota_backend_bytes = 300};
    mvcc_t *m = NULL;
    char err[256];
    assert_int_equal(mvcc_open(dir, &o, &m, err, sizeof err), 0);
    /* an empty LevelDB already holds more than 300 - 258 bytes of files */
    assert_false(kv_quota_available(m, &put));
    assert_true(kv_quota_available(m, &del)); /* costs nothing */
    mvcc_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_activate_get_deactivate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persisted_and_replay_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nospace_caps_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota_available, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
