/*
 * test_conc.c: the pure pieces of the Lock and Election services
 * (services/conc.c, local_client.c): the waiter's key as clientv3 spells it
 * (prefix + the lease in Go's %x, a minus sign for a negative id), the
 * prefix range end (clientv3.GetPrefixRangeEnd), the requests that read the
 * oldest / newest key under a prefix, and the status etcd's embedded client
 * leaves on an inner error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conc.h"

static void key_is(const char *name, int64_t lease, const char *want) {
    size_t plen, klen;
    uint8_t *pfx = conc_prefix((const uint8_t *)name, strlen(name), &plen);
    assert_non_null(pfx);
    uint8_t *key = conc_key(pfx, plen, lease, &klen);
    assert_non_null(key);
    assert_int_equal(klen, strlen(want));
    assert_memory_equal(key, want, klen);
    free(key);
    free(pfx);
}

static void test_key(void **state) {
    key_is("lk", 0x694d7c6a3b1b1a2e, "lk/694d7c6a3b1b1a2e");
    key_is("lk", 0, "lk/0");
    key_is("", 255, "/ff");
    key_is("n", -1, "n/-1");
    key_is("n", INT64_MIN, "n/-8000000000000000");
}

static void end_is(const char *p, size_t n, const char *want, size_t wlen) {
    uint8_t out[16];
    size_t len = lc_prefix_end((const uint8_t *)p, n, out);
    assert_int_equal(len, wlen);
    assert_memory_equal(out, want, wlen);
}

static void test_prefix_end(void **state) {
    end_is("lk/", 3, "lk0", 3);
    end_is("a\xff", 2, "b", 1);
    end_is("\xff\xff", 2, "\0", 1);
}

static void test_range_edge(void **state) {
    uint8_t end[3];
    Etcdserverpb__RangeRequest r;
    conc_range_edge(&r, (const uint8_t *)"el/", 3, end, 0);
    assert_int_equal(r.limit, 1);
    assert_int_equal(r.sort_target, ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE);
    assert_int_equal(r.sort_order, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND);
    assert_memory_equal(r.range_end.data, "el0", 3);
    assert_false(r.serializable); /* clientv3's Get is linearizable */
    conc_range_edge(&r, (const uint8_t *)"el/", 3, end, 1);
    assert_int_equal(r.sort_order, ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND);
}

static void test_outer_status(void **state) {
    assert_int_equal(lc_outer_status(GRPC_NOT_FOUND, "etcdserver: requested lease not found"), GRPC_UNKNOWN);
    assert_int_equal(lc_outer_status(GRPC_PERMISSION_DENIED, "etcdserver: permission denied"), GRPC_UNKNOWN);
    assert_int_equal(lc_outer_status(GRPC_OUT_OF_RANGE, "mvcc: required revision has been compacted"),
                     GRPC_UNKNOWN);
    assert_int_equal(lc_outer_status(GRPC_RESOURCE_EXHAUSTED, "grpc: received message larger than max"),
                     GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(lc_outer_status(GRPC_OK, NULL), GRPC_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_range_edge),
        cmocka_unit_test(test_outer_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
