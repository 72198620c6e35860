/*
 * fuzz_store_fill.c: fuzz_store_fill (fuzz_store_fill.h): a store with a
 * record in every space, written by kv_apply, the lessor, the auth store,
 * the alarm store and the member table, as a member writes them.
 */
#include "fuzz_store_fill.h"

#include <stdio.h>
#include <string.h>

#include "auth_store.h"
#include "kv.h"
#include "kv_alarm.h"
#include "lease.h"
#include "member_table.h"

typedef struct fill {
    mvcc_t *m;
    lessor_t *lessor;
    auth_store_t *auth;
    uint64_t index;
    kv_header_info_t hdr;
    int failed;
} fill_t;

static int lease_exists(void *ctx, int64_t id) {
    fill_t *f = ctx;
    return f->lessor && lessor_exists(f->lessor, id);
}

static ProtobufCBinaryData B(const char *s) {
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

static void kv(fill_t *f, Kshim__InternalRequest *req) {
    kv_result_t res;
    memset(&res, 0, sizeof res);
    if (kv_apply(f->m, ++f->index, req, &f->hdr, &res) != 0 || res.code != 0) f->failed = 1;
    kv_result_clear(&res);
}

static void put_n(fill_t *f, const char *k, size_t klen, const char *v, int64_t lease) {
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key.data = (uint8_t *)k;
    p.key.len = klen;
    p.value = B(v);
    p.lease = lease;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.put = &p;
    kv(f, &req);
}

static void put(fill_t *f, const char *k, const char *v, int64_t lease) { put_n(f, k, strlen(k), v, lease); }

static void del(fill_t *f, const char *k) {
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = B(k);
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.delete_range = &d;
    kv(f, &req);
}

static void grant(fill_t *f, int64_t id, int64_t ttl) {
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.id = id;
    g.ttl = ttl;
    Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
    req.lease_grant = &g;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    if (lessor_apply(f->lessor, ++f->index, &req, &f->hdr, &res, 1000) != 1 || res.code != 0) f->failed = 1;
    kv_result_clear(&res);
}

static void auth(fill_t *f, Kshim__InternalRequest *req) {
    kv_result_t res;
    memset(&res, 0, sizeof res);
    if (auth_store_apply(f->auth, ++f->index, req, &f->hdr, &res, NULL) != 1 || res.code != 0) f->failed = 1;
    kv_result_clear(&res);
}

static void fill_auth(fill_t *f) {
    const char *roles[] = {"root", "reader"};
    for (int i = 0; i < 2; i++) {
        Etcdserverpb__AuthRoleAddRequest r = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
        r.name = (char *)roles[i];
        Kshim__InternalRequest req = KSHIM__INTERNAL_REQUEST__INIT;
        req.auth_role_add = &r;
        auth(f, &req);
    }
    Authpb__Permission p = AUTHPB__PERMISSION__INIT;
    p.permtype = AUTHPB__PERMISSION__TYPE__READ;
    p.key = B("key/");
    p.range_end = B("key0");
    Etcdserverpb__AuthRoleGrantPermissionRequest gp = ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
    gp.name = "reader";
    gp.perm = &p;
    Kshim__InternalRequest preq = KSHIM__INTERNAL_REQUEST__INIT;
    preq.auth_role_grant_permission = &gp;
    auth(f, &preq);
    const char *users[] = {"root", "alice"};
    const char *user_roles[] = {"root", "reader"};
    for (int i = 0; i < 2; i++) {
        Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
        Etcdserverpb__AuthUserAddRequest u = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
        u.name = (char *)users[i];
        u.password = i == 0 ? "$2a$04$abcdefghijklmnopqrstuu5QWe0Gz1n9jC2v2ZcZf6e6Yq4s0b6pa" : "";
        o.no_password = i == 1;
        u.options = &o;
        Kshim__InternalRequest ureq = KSHIM__INTERNAL_REQUEST__INIT;
        ureq.auth_user_add = &u;
        auth(f, &ureq);
        Etcdserverpb__AuthUserGrantRoleRequest g = ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
        g.user = (char *)users[i];
        g.role = (char *)user_roles[i];
        Kshim__InternalRequest greq = KSHIM__INTERNAL_REQUEST__INIT;
        greq.auth_user_grant_role = &g;
        auth(f, &greq);
    }
    Etcdserverpb__AuthEnableRequest e = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
    Kshim__InternalRequest ereq = KSHIM__INTERNAL_REQUEST__INIT;
    ereq.auth_enable = &e;
    auth(f, &ereq);
}

static void fill_alarm_members(fill_t *f) {
    kv_alarms_t *a = NULL;
    if (kv_alarms_open(f->m, &a) != 0) {
        f->failed = 1;
        return;
    }
    Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
    ar.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
    ar.memberid = 2;
    ar.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
    kv_result_t res;
    memset(&res, 0, sizeof res);
    if (kv_alarms_apply(a, f->m, ++f->index, &ar, &f->hdr, &res) != 0 || res.code != 0) f->failed = 1;
    kv_result_clear(&res);
    kv_alarms_free(a);
    member_table_t *t = NULL;
    if (member_table_open(f->m, &t) != MEMBER_TABLE_OK) {
        f->failed = 1;
        return;
    }
    static char *u1[] = {"http://10.0.0.1:2380"}, *u2[] = {"http://10.0.0.2:2380", "http://10.0.0.2:2381"},
                *c1[] = {"https://10.0.0.1:2379"};
    Kshim__Member a1 = KSHIM__MEMBER__INIT, a2 = KSHIM__MEMBER__INIT, a3 = KSHIM__MEMBER__INIT;
    a1.id = 1, a1.name = "one", a1.peer_urls = u1, a1.n_peer_urls = 1, a1.client_urls = c1,
    a1.n_client_urls = 1;
    a2.id = 2, a2.name = "two", a2.peer_urls = u2, a2.n_peer_urls = 2;
    a3.id = 3, a3.is_learner = 1;
    const Kshim__Member *rows[] = {&a1, &a2, &a3};
    if (member_table_bootstrap(t, 0xc1, 2, 0, rows, 3) != MEMBER_TABLE_OK) f->failed = 1;
    member_table_free(t);
}

int fuzz_store_fill(const char *dir) {
    fill_t f = {0};
    f.hdr = (kv_header_info_t){.cluster_id = 0xc1, .member_id = 2, .raft_term = 3};
    char err[256];
    mvcc_options_t opts = {.lease_exists = lease_exists, .lease_ctx = &f};
    if (mvcc_open(dir, &opts, &f.m, err, sizeof err) != MVCC_OK) return -1;
    if (lessor_open(f.m, 1, &f.lessor) != LEASE_OK || auth_store_open(f.m, &f.auth) != AUTH_OK) f.failed = 1;
    if (!f.failed) {
        grant(&f, 0x1234, 60);
        grant(&f, 0x99, 3600);
        for (int i = 0; i < 12; i++) {
            char k[32], v[32];
            snprintf(k, sizeof k, "key/%02d", i % 5);
            snprintf(v, sizeof v, "value-%d", i);
            put(&f, k, v, i % 4 == 0 ? 0x1234 : 0);
        }
        put_n(&f, "a\0b", 3, "a key with a zero byte", 0);
        del(&f, "key/03");
        if (mvcc_compact(f.m, 6, ++f.index) != MVCC_OK || mvcc_compact_wait(f.m, 6) != MVCC_OK) f.failed = 1;
        put(&f, "lease/key", "v", 0x99);
        fill_auth(&f);
        fill_alarm_members(&f);
    }
    if (f.auth) auth_store_free(f.auth);
    if (f.lessor) lessor_free(f.lessor);
    mvcc_close(f.m);
    return f.failed ? -1 : 0;
}
