/*
 * test_corrupt_rules.c: etcd 3.4's verdicts on HashKV values
 * (apiserver-shim/services/corrupt_rules.c, from etcdserver/corrupt.go):
 * the initial check's mismatch count (same compact revision, another hash;
 * other compact revisions and unanswered peers do not count) and the
 * leader's periodic verdict (its own hash moved at the same revision, a
 * follower ahead in revision or compact revision, a follower at the first
 * compact revision with another hash, a diverged leader against agreeing
 * followers; peers that did not answer are not checked).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "corrupt_rules.h"

static corrupt_peer_t peer(uint64_t id, uint32_t hash, int64_t rev, int64_t crev) {
    return (corrupt_peer_t){.id = id, .status = CORRUPT_HASH_OK, .h = {hash, rev, crev}};
}

static void test_initial_check(void **state) {
    (void)state;
    corrupt_hash_t local = {111, 10, 4};
    corrupt_peer_t same[] = {peer(2, 111, 10, 4), peer(3, 111, 12, 4)};
    assert_int_equal(corrupt_initial_mismatches(1, &local, same, 2), 0);
    corrupt_peer_t one[] = {peer(2, 111, 10, 4), peer(3, 222, 10, 4)};
    assert_int_equal(corrupt_initial_mismatches(1, &local, one, 2), 1);
    corrupt_peer_t two[] = {peer(2, 333, 10, 4), peer(3, 222, 10, 4)};
    assert_int_equal(corrupt_initial_mismatches(1, &local, two, 2), 2);
    /* another compact revision: its hash covers other versions, logged only */
    corrupt_peer_t other_crev[] = {peer(2, 222, 10, 7)};
    assert_int_equal(corrupt_initial_mismatches(1, &local, other_crev, 1), 0);
    /* behind, ahead, unreachable: no answer to compare */
    corrupt_peer_t unanswered[] = {{.id = 2, .status = CORRUPT_HASH_FUTURE_REV},
                                   {.id = 3, .status = CORRUPT_HASH_COMPACTED},
                                   {.id = 4, .status = CORRUPT_HASH_FAILED}};
    assert_int_equal(corrupt_initial_mismatches(1, &local, unanswered, 3), 0);
    assert_int_equal(corrupt_initial_mismatches(1, &local, NULL, 0), 0);
}

static void test_leader_agreeing(void **state) {
    (void)state;
    corrupt_hash_t first = {111, 10, 4}, second = {555, 11, 4}; /* a write applied meanwhile */
    corrupt_peer_t peers[] = {
        peer(2, 111, 10, 4), peer(3, 111, 11, 4), {.id = 4, .status = CORRUPT_HASH_FAILED}};
    int checked = -1;
    assert_int_equal(corrupt_leader_verdict(&first, &second, peers, 3, &checked), 0);
    assert_int_equal(checked, 2);
    /* a follower behind the leader's compaction: not comparable, fine */
    corrupt_peer_t behind[] = {peer(2, 999, 10, 2)};
    assert_int_equal(corrupt_leader_verdict(&first, &second, behind, 1, &checked), 0);
    assert_int_equal(checked, 1);
}

static void test_leader_mismatches(void **state) {
    (void)state;
    corrupt_hash_t first = {111, 10, 4}, second = {111, 10, 4};
    int checked;
    corrupt_peer_t diverged[] = {peer(2, 111, 10, 4), peer(3, 222, 10, 4)};
    assert_int_equal(corrupt_leader_verdict(&first, &second, diverged, 2, &checked), 1);
    assert_int_equal(checked, 2);
    /* the leader is the odd one out: every follower differs from it */
    corrupt_peer_t leader_odd[] = {peer(2, 222, 10, 4), peer(3, 222, 10, 4)};
    assert_int_equal(corrupt_leader_verdict(&first, &second, leader_odd, 2, &checked), 1);
    /* a follower ahead of the leader's second look, in revision or in compact revision */
    corrupt_peer_t ahead[] = {peer(2, 111, 11, 4)};
    assert_int_equal(corrupt_leader_verdict(&first, &second, ahead, 1, &checked), 1);
    corrupt_peer_t ahead_crev[] = {peer(2, 777, 10, 5)};
    assert_int_equal(corrupt_leader_verdict(&first, &second, ahead_crev, 1, &checked), 1);
    /* the leader's own hash moved at the same revision and compact revision */
    corrupt_hash_t moved = {112, 10, 4};
    assert_int_equal(corrupt_leader_verdict(&first, &moved, NULL, 0, &checked), 1);
    assert_int_equal(checked, 0);
    /* ... but not when the revision moved (a write applied) */
    corrupt_hash_t later = {112, 11, 4};
    assert_int_equal(corrupt_leader_verdict(&first, &later, NULL, 0, &checked), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initial_check),
        cmocka_unit_test(test_leader_agreeing),
        cmocka_unit_test(test_leader_mismatches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
