/*
 * test_member_table.c: the member table (storage/cluster/member_table.c):
 * bootstrap and reopen, etcd's checks of membership changes, changes
 * applied inside a write group with the applied index and persisted,
 * refused changes applied as no-ops, replays at or below the applied index
 * skipped; and --initial-cluster parsing and etcd's start checks
 * (member/initial_cluster.c), with ids and texts checked against etcd 3.4.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "member_table.h"
#include "server_config.h"

typedef struct tfx {
    char dir[256];
    mvcc_t *m;
    member_table_t *t;
} tfx_t;

static int setup(void **state) {
    tfx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    const char *base = getenv("KSHIM_TEST_TMP");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", base ? base : "/tmp");
    assert_int_equal(system(cmd), 0);
    snprintf(f->dir, sizeof f->dir, "%s/mtab-XXXXXX", base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
    assert_int_equal(member_table_open(f->m, &f->t), MEMBER_TABLE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    tfx_t *f = *state;
    member_table_free(f->t);
    mvcc_close(f->m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void reopen(tfx_t *f) {
    member_table_free(f->t);
    mvcc_close(f->m);
    char err[256];
    assert_int_equal(mvcc_open(f->dir, NULL, &f->m, err, sizeof err), 0);
    assert_int_equal(member_table_open(f->m, &f->t), MEMBER_TABLE_OK);
}

static Kshim__Member member(uint64_t id, char **urls, size_t n, int learner) {
    Kshim__Member m = KSHIM__MEMBER__INIT;
    m.id = id;
    m.peer_urls = urls;
    m.n_peer_urls = n;
    m.is_learner = learner;
    return m;
}

static char *U1[] = {"http://10.0.0.1:2380"}, *U2[] = {"http://10.0.0.2:2380", "http://10.0.0.2:2381"},
            *U3[] = {"http://10.0.0.3:2380"}, *U4[] = {"http://10.0.0.4:2380"},
            *U5[] = {"http://10.0.0.5:2380"};

static void bootstrap3(tfx_t *f) {
    Kshim__Member a = member(1, U1, 1, 0), b = member(2, U2, 2, 0), c = member(3, U3, 1, 0);
    const Kshim__Member *rows[] = {&c, &a, &b};
    assert_int_equal(member_table_bootstrap(f->t, 0xc1, 2, 0, rows, 3), MEMBER_TABLE_OK);
}

static void test_bootstrap_persists(void **state) {
    tfx_t *f = *state;
    assert_false(member_table_exists(f->t));
    bootstrap3(f);
    reopen(f);
    assert_true(member_table_exists(f->t));
    assert_int_equal(member_table_cluster_id(f->t), 0xc1);
    assert_int_equal(member_table_self_id(f->t), 2);
    Kshim__MemberList *l = member_table_list(f->t);
    assert_non_null(l);
    assert_int_equal(l->cluster_id, 0xc1);
    assert_int_equal(l->n_members, 3);
    for (size_t i = 0; i < 3; i++) assert_int_equal(l->members[i]->id, i + 1); /* in id order */
    assert_int_equal(l->members[1]->n_peer_urls, 2);
    assert_string_equal(l->members[1]->peer_urls[1], "http://10.0.0.2:2381");
    assert_string_equal(l->members[1]->name, ""); /* unstarted until it publishes */
    kshim__member_list__free_unpacked(l, NULL);
    size_t n, v, lr, sv;
    member_table_counts(f->t, &n, &v, &lr, &sv);
    assert_int_equal(n, 3);
    assert_int_equal(v, 3);
    assert_int_equal(lr, 0);
    assert_int_equal(sv, 0);
}

static void test_checks(void **state) {
    tfx_t *f = *state;
    bootstrap3(f);
    Kshim__Member dup_id = member(2, U4, 1, 0), dup_url = member(9, (char *[]){"http://10.0.0.2:2381"}, 1, 0);
    assert_int_equal(member_table_check_add(f->t, &dup_id), MEMBER_TABLE_E_EXISTS);
    assert_int_equal(member_table_check_add(f->t, &dup_url), MEMBER_TABLE_E_PEER_URL);
    assert_int_equal(member_table_check_remove(f->t, 77), MEMBER_TABLE_E_NOT_FOUND);
    assert_int_equal(member_table_check_promote(f->t, 1), MEMBER_TABLE_E_NOT_LEARNER);
    assert_int_equal(member_table_check_promote(f->t, 77), MEMBER_TABLE_E_NOT_FOUND);
    /* updating a member to its own URLs is fine, to another's is not */
    assert_int_equal(member_table_check_update(f->t, 2, U2, 2), MEMBER_TABLE_OK);
    assert_int_equal(member_table_check_update(f->t, 2, U1, 1), MEMBER_TABLE_E_PEER_URL);
    assert_int_equal(member_table_check_update(f->t, 77, U4, 1), MEMBER_TABLE_E_NOT_FOUND);
}

static void test_apply_in_group(void **state) {
    tfx_t *f = *state;
    bootstrap3(f);
    Kshim__Member l4 = member(4, U4, 1, 1), l5 = member(5, U5, 1, 1);
    mvcc_group_begin(f->m);
    assert_int_equal(member_table_apply_add(f->t, 10, &l4), MEMBER_TABLE_OK);
    /* a second learner is refused at apply: a no-op entry that still moves the index */
    assert_int_equal(member_table_apply_add(f->t, 11, &l5), MEMBER_TABLE_E_TOO_MANY_LEARNERS);
    char *names_urls[] = {"http://10.0.0.4:2379"};
    assert_int_equal(member_table_apply_attr(f->t, 12, 4, "l4", names_urls, 1), MEMBER_TABLE_OK);
    assert_int_equal(mvcc_group_end(f->m), MVCC_OK);
    assert_int_equal(mvcc_applied_index(f->m), 12);
    reopen(f);
    Kshim__Member *r = member_table_get(f->t, 4);
    assert_non_null(r);
    assert_true(r->is_learner);
    assert_string_equal(r->name, "l4");
    assert_int_equal(r->n_client_urls, 1);
    kshim__member__free_unpacked(r, NULL);
    assert_null(member_table_get(f->t, 5));

    /* promote, update, remove; then the removed id never comes back */
    assert_int_equal(member_table_apply_promote(f->t, 13, 4), MEMBER_TABLE_OK);
    assert_int_equal(member_table_apply_promote(f->t, 14, 4), MEMBER_TABLE_E_NOT_LEARNER);
    assert_int_equal(member_table_apply_update(f->t, 15, 4, U5, 1), MEMBER_TABLE_OK);
    assert_int_equal(member_table_apply_remove(f->t, 16, 4), MEMBER_TABLE_OK);
    assert_int_equal(member_table_apply_remove(f->t, 17, 4), MEMBER_TABLE_E_REMOVED);
    assert_int_equal(mvcc_applied_index(f->m), 17);
    Kshim__Member again = member(4, U4, 1, 0);
    assert_int_equal(member_table_check_add(f->t, &again), MEMBER_TABLE_E_REMOVED);
    /* its URL is free again for a new member */
    Kshim__Member other = member(6, U5, 1, 0);
    assert_int_equal(member_table_check_add(f->t, &other), MEMBER_TABLE_OK);
    reopen(f);
    size_t n, v, lr, sv;
    member_table_counts(f->t, &n, &v, &lr, &sv);
    assert_int_equal(n, 3);
    assert_int_equal(v, 3);
    Kshim__Member *gone = member_table_get(f->t, 4);
    assert_non_null(gone);
    assert_true(gone->removed);
    kshim__member__free_unpacked(gone, NULL);
}

static void test_replay_skipped(void **state) {
    tfx_t *f = *state;
    bootstrap3(f);
    Kshim__Member l4 = member(4, U4, 1, 1);
    assert_int_equal(member_table_apply_add(f->t, 5, &l4), MEMBER_TABLE_OK);
    assert_int_equal(member_table_apply_remove(f->t, 6, 4), MEMBER_TABLE_OK);
    /* entries at or below the applied index change nothing */
    assert_int_equal(member_table_apply_promote(f->t, 5, 4), MEMBER_TABLE_OK);
    assert_int_equal(member_table_apply_attr(f->t, 6, 1, "x", NULL, 0), MEMBER_TABLE_OK);
    Kshim__Member *r = member_table_get(f->t, 1);
    assert_string_equal(r->name, "");
    kshim__member__free_unpacked(r, NULL);
    r = member_table_get(f->t, 4);
    assert_true(r->removed);
    kshim__member__free_unpacked(r, NULL);
    uint8_t *buf;
    size_t len;
    assert_int_equal(member_table_pack(f->t, &buf, &len), MEMBER_TABLE_OK);
    Kshim__MemberList *l = kshim__member_list__unpack(NULL, len, buf);
    assert_non_null(l);
    assert_int_equal(l->n_members, 4); /* removed ids travel to a joining member */
    kshim__member_list__free_unpacked(l, NULL);
    free(buf);
}

/* A snapshot from member 2 carries its 'N' record: we write ours back. */
static void test_set_self(void **state) {
    tfx_t *f = *state;
    bootstrap3(f);
    assert_int_equal(member_table_set_self(f->t, 3), MEMBER_TABLE_OK);
    reopen(f);
    assert_int_equal(member_table_self_id(f->t), 3);
    assert_int_equal(member_table_cluster_id(f->t), 0xc1);
    assert_false(member_table_joined(f->t));
    Kshim__MemberList *l = member_table_list(f->t);
    assert_int_equal(l->n_members, 3);
    kshim__member_list__free_unpacked(l, NULL);
}

/* ---- --initial-cluster ---- */

static void test_initial_cluster_ids(void **state) {
    (void)state;
    server_initial_cluster_t ic;
    char err[512];
    assert_int_equal(server_initial_cluster_parse("m1=http://127.0.0.1:24101,m2=http://127.0.0.1:24102,"
                                                  "m3=http://127.0.0.1:24103",
                                                  "etcd-cluster", &ic, err, sizeof err),
                     0);
    assert_int_equal(ic.n, 3);
    /* what etcd 3.4 computed for this cluster (checked with /usr/bin/etcd) */
    assert_int_equal(ic.m[0].id, 0x751f383534fac39cull);
    assert_int_equal(ic.m[1].id, 0x282f2d0bec3a0795ull);
    assert_int_equal(ic.m[2].id, 0x2ce2568f3c467410ull);
    uint64_t ids[3] = {ic.m[0].id, ic.m[1].id, ic.m[2].id};
    assert_int_equal(server_cluster_id(ids, 3), 0x628259201f43087bull);
    server_initial_cluster_free(&ic);

    /* a name repeated collects its URLs */
    assert_int_equal(
        server_initial_cluster_parse("a=http://h:1,b=http://h:3,a=http://h:2", "t", &ic, err, sizeof err), 0);
    assert_int_equal(ic.n, 2);
    assert_string_equal(ic.m[0].name, "a");
    assert_int_equal(ic.m[0].n_urls, 2);
    assert_string_equal(ic.m[0].urls[1], "http://h:2");
    const char *both[] = {"http://h:2", "http://h:1"};
    assert_int_equal(ic.m[0].id, server_member_id(both, 2, "t"));
    server_initial_cluster_free(&ic);

    assert_int_equal(server_initial_cluster_parse("a=ftp://x:1", "t", &ic, err, sizeof err), -1);
    assert_string_equal(err,
                        "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: "
                        "ftp://x:1");
}

static int check(const char *ic_text, const char *name, const char *adv, int joining, char *err,
                 size_t errlen) {
    server_config_t cfg;
    server_config_defaults(&cfg);
    cfg.name = name;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", adv);
    cfg.n_initial_advertise_peer_urls = 0;
    for (char *save = NULL, *u = strtok_r(buf, ",", &save); u; u = strtok_r(NULL, ",", &save))
        cfg.initial_advertise_peer_urls[cfg.n_initial_advertise_peer_urls++] = u;
    server_initial_cluster_t ic;
    if (server_initial_cluster_parse(ic_text, "etcd-cluster", &ic, err, errlen) != 0) return -1;
    int rc = server_initial_cluster_check(&ic, &cfg, joining, err, errlen);
    server_initial_cluster_free(&ic);
    return rc;
}

/* The texts are etcd 3.4's for the same flags (checked with /usr/bin/etcd). */
static void test_initial_cluster_checks(void **state) {
    (void)state;
    char err[512];
    assert_int_equal(
        check("a=http://127.0.0.1:1,b=http://127.0.0.1:2", "a", "http://127.0.0.1:1", 0, err, sizeof err), 0);
    assert_int_equal(
        check("a=http://127.0.0.1:3,b=http://127.0.0.1:4", "c", "http://127.0.0.1:2", 0, err, sizeof err),
        -1);
    assert_string_equal(err, "couldn't find local name \"c\" in the initial cluster configuration");
    assert_int_equal(check("a=http://127.0.0.1:24393,b=http://127.0.0.1:24394", "a", "http://127.0.0.1:24392",
                           0, err, sizeof err),
                     -1);
    assert_string_equal(err, "--initial-cluster has a=http://127.0.0.1:24393 but missing from "
                             "--initial-advertise-peer-urls=http://127.0.0.1:24392 (resolved urls: "
                             "\"http://127.0.0.1:24392\" != \"http://127.0.0.1:24393\")");
    assert_int_equal(check("a=http://127.0.0.1:24392,b=http://127.0.0.1:24394", "a",
                           "http://127.0.0.1:24392,http://127.0.0.1:24395", 0, err, sizeof err),
                     -1);
    assert_string_equal(err, "--initial-advertise-peer-urls has http://127.0.0.1:24395 but missing from "
                             "--initial-cluster=a=http://127.0.0.1:24392,a=http://127.0.0.1:24395");
    assert_int_equal(check("a=http://127.0.0.1:24392,b=http://127.0.0.1:24392", "a", "http://127.0.0.1:24392",
                           0, err, sizeof err),
                     -1);
    assert_string_equal(
        err, "initial cluster a=http://127.0.0.1:24392,b=http://127.0.0.1:24392 has duplicate url");
    /* joining: the advertised URLs are not compared (the member was added with them) */
    assert_int_equal(
        check("a=http://127.0.0.1:3,b=http://127.0.0.1:4", "a", "http://127.0.0.1:9", 1, err, sizeof err), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bootstrap_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_in_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_self, setup, teardown),
        cmocka_unit_test(test_initial_cluster_ids),
        cmocka_unit_test(test_initial_cluster_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
