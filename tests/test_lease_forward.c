/*
 * test_lease_forward.c: services/lease_forward.h, the Lease service's
 * member-to-member messages: every kind round-trips (negative TTLs and ids
 * too), a payload of the wrong length or with an unknown status is refused,
 * an unknown kind encodes to nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lease_forward.h"
#include "server_internal.h"

static void roundtrip(uint8_t kind, const lease_fwd_msg_t *m, size_t want_len) {
    uint8_t buf[LEASE_FWD_MAX_LEN];
    size_t len = lease_fwd_encode(kind, m, buf);
    assert_int_equal(len, want_len);
    lease_fwd_msg_t out;
    assert_int_equal(lease_fwd_decode(kind, buf, len, &out), 0);
    assert_int_equal(out.req_id, m->req_id);
    if (kind == SERVER_PEER_LEASE_RENEW || kind == SERVER_PEER_LEASE_TTL) {
        assert_int_equal(out.lease_id, m->lease_id);
        return;
    }
    assert_int_equal(out.status, m->status);
    assert_int_equal(out.ttl, m->ttl);
    if (kind == SERVER_PEER_LEASE_TTL_RESP) assert_int_equal(out.remaining, m->remaining);
    /* one byte short or long: refused */
    assert_int_equal(lease_fwd_decode(kind, buf, len - 1, &out), -1);
    assert_int_equal(lease_fwd_decode(kind, buf, len + 1, &out), -1);
}

static void test_every_kind_roundtrips(void **state) {
    (void)state;
    lease_fwd_msg_t req = {.req_id = 0xFEDCBA9876543210ull, .lease_id = 0x7FFFFFFFFFFFFFFFll};
    roundtrip(SERVER_PEER_LEASE_RENEW, &req, 16);
    roundtrip(SERVER_PEER_LEASE_TTL, &req, 16);
    lease_fwd_msg_t renew = {.req_id = 7, .status = LEASE_FWD_OK, .ttl = 60};
    roundtrip(SERVER_PEER_LEASE_RENEW_RESP, &renew, 20);
    renew.status = LEASE_FWD_NOT_FOUND;
    renew.ttl = 0;
    roundtrip(SERVER_PEER_LEASE_RENEW_RESP, &renew, 20);
    lease_fwd_msg_t ttl = {.req_id = 8, .status = LEASE_FWD_OK, .ttl = 600, .remaining = -1};
    roundtrip(SERVER_PEER_LEASE_TTL_RESP, &ttl, 28);
    ttl.status = LEASE_FWD_NOT_LEADER;
    roundtrip(SERVER_PEER_LEASE_TTL_RESP, &ttl, 28);
}

static void test_bad_payloads_refused(void **state) {
    (void)state;
    uint8_t buf[LEASE_FWD_MAX_LEN];
    lease_fwd_msg_t m = {.req_id = 1, .status = LEASE_FWD_OK, .ttl = 5};
    size_t len = lease_fwd_encode(SERVER_PEER_LEASE_RENEW_RESP, &m, buf);
    buf[11] = 9; /* status 9: no such status */
    lease_fwd_msg_t out;
    assert_int_equal(lease_fwd_decode(SERVER_PEER_LEASE_RENEW_RESP, buf, len, &out), -1);
    buf[8] = 0x80; /* negative status */
    buf[11] = 0;
    assert_int_equal(lease_fwd_decode(SERVER_PEER_LEASE_RENEW_RESP, buf, len, &out), -1);
    assert_int_equal(lease_fwd_encode(SERVER_PEER_FORWARD, &m, buf), 0);
    assert_int_equal(lease_fwd_decode(SERVER_PEER_FORWARD, buf, 16, &out), -1);
    assert_int_equal(lease_fwd_decode(SERVER_PEER_LEASE_RENEW, buf, 0, &out), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_roundtrips),
        cmocka_unit_test(test_bad_payloads_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
