/*
 * test_server.c: unit tests for the member wiring in apiserver-shim/:
 * etcd-compatible member and cluster ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "server.h"

/* etcd started with no flags is member 8e9e05c52164694d of cluster
 * cdf818194e3a8c32: the same inputs must give the same ids here. */
static void test_ids_match_etcd_defaults(void **state) {
    (void)state;
    const char *urls[] = {"http://localhost:2380"};
    uint64_t member = server_member_id(urls, 1, "etcd-cluster");
    assert_int_equal(member, 0x8e9e05c52164694dULL);
    assert_int_equal(server_cluster_id(&member, 1), 0xcdf818194e3a8c32ULL);
}

static void test_member_id_ignores_url_order(void **state) {
    (void)state;
    const char *a[] = {"http://10.0.0.1:2380", "http://10.0.0.2:2380"};
    const char *b[] = {"http://10.0.0.2:2380", "http://10.0.0.1:2380"};
    assert_int_equal(server_member_id(a, 2, "tok"), server_member_id(b, 2, "tok"));
    assert_int_not_equal(server_member_id(a, 2, "tok"), server_member_id(a, 2, "other"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_match_etcd_defaults),
        cmocka_unit_test(test_member_id_ignores_url_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
