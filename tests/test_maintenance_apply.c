/*
 * test_maintenance_apply.c: the maintenance appliers (svc_maintenance_apply
 * and svc_maintenance_quota_apply, apiserver-shim/services/svc_maintenance.c)
 * as server_apply offers them every
 * committed entry: a Put applied over the quota is stored (every member
 * applies it alike) but answered etcd's ErrNoSpace; an applied NOSPACE
 * alarm then refuses Puts at apply while deletes pass to the KV store; a
 * replayed entry (at or below the applied index) is left to the others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc_status.h"
#include "kv_alarm.h"
#include "kv_fixture.h" /* B, fx_count_key */
#include "services.h"

typedef struct mfx {
    char dir[256];
    server_config_t cfg;
    server_t s;
    uint64_t index;
} mfx_t;

static int setup(void **state) {
    mfx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(f->dir, sizeof f->dir, "%s/maint-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    server_config_defaults(&f->cfg);
    f->s.cfg = &f->cfg;
    f->s.member_id = 42;
    f->s.loop = loop_new();
    assert_non_null(f->s.loop);
    mvcc_options_t o = {.quota_backend_bytes = 64 << 10}; /* 64 KiB */
    char err[256];
    assert_int_equal(mvcc_open(f->dir, &o, &f->s.mvcc, err, sizeof err), 0);
    assert_int_equal(svc_maintenance_init(&f->s), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    mfx_t *f = *state;
    svc_maintenance_stop(&f->s);
    mvcc_close(f->s.mvcc);
    loop_free(f->s.loop); /* drops the posted alarm raise: no Raft here */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Offers req at the next index: the applier's return; res holds the result
 * when it took the entry (1), and the entry went to kv_apply otherwise. */
static int offer(mfx_t *f, Kshim__InternalRequest *req, kv_result_t *res) {
    memset(res, 0, sizeof *res);
    kv_header_info_t hdr = {0};
    int rc = svc_maintenance_apply(&f->s, ++f->index, req, &hdr, res);
    if (rc == 0) rc = svc_maintenance_quota_apply(&f->s, f->index, req, &hdr, res);
    if (rc == 0) assert_int_equal(kv_apply(f->s.mvcc, f->index, req, &hdr, res), 0);
    return rc;
}


static void test_over_quota_applied_but_refused(void **state) {
    mfx_t *f = *state;
    static uint8_t big[80 << 10];
    memset(big, 'x', sizeof big);
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = B("big");
    p.value = (ProtobufCBinaryData){sizeof big, big};
    Kshim__InternalRequest put = KSHIM__INTERNAL_REQUEST__INIT;
    put.put = &p;
    kv_result_t res;
    assert_int_equal(offer(f, &put, &res), 1);
    assert_int_equal(res.code, GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(res.message, "etcdserver: mvcc: database space exceeded");
    kv_result_clear(&res);
    assert_int_equal(fx_count_key(f->s.mvcc, "big"), 1); /* applied all the same, as etcd */
    assert_int_equal(mvcc_apply_index(f->s.mvcc), f->index);

    /* the alarm, once applied, refuses puts; a delete still reaches kv */
    Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
    ar.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
    ar.memberid = 42;
    ar.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
    Kshim__InternalRequest alarm = KSHIM__INTERNAL_REQUEST__INIT;
    alarm.alarm = &ar;
    assert_int_equal(offer(f, &alarm, &res), 1);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
    kv_alarm_t v[2];
    assert_int_equal(svc_maintenance_alarms(&f->s, v, 2), 1);
    assert_int_equal(v[0].member_id, 42);

    Etcdserverpb__PutRequest small = ETCDSERVERPB__PUT_REQUEST__INIT;
    small.key = B("small");
    small.value = B("v");
    put.put = &small;
    assert_int_equal(offer(f, &put, &res), 1);
    assert_int_equal(res.code, GRPC_RESOURCE_EXHAUSTED);
    kv_result_clear(&res);
    assert_int_equal(fx_count_key(f->s.mvcc, "small"), 0); /* refused: not applied */

    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B("big");
    Kshim__InternalRequest del = KSHIM__INTERNAL_REQUEST__INIT;
    del.delete_range = &d;
    assert_int_equal(offer(f, &del, &res), 0);
    assert_int_equal(res.code, 0);
    kv_result_clear(&res);
    assert_int_equal(fx_count_key(f->s.mvcc, "big"), 0);

    /* a replayed entry is not the applier's */
    memset(&res, 0, sizeof res);
    kv_header_info_t hdr = {0};
    put.put = &p;
    assert_int_equal(svc_maintenance_apply(&f->s, 1, &put, &hdr, &res), 0);
    assert_int_equal(svc_maintenance_quota_apply(&f->s, 1, &put, &hdr, &res), 0);
    assert_null(res.resp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_over_quota_applied_but_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
