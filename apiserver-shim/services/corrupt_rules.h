/*
 * corrupt_rules.h: etcd 3.4's verdicts on HashKV values (etcdserver/
 * corrupt.go), apart from how the values are fetched (svc_corrupt.c), so
 * they are tested on their own (tests/test_corrupt_rules.c). Each finding
 * is logged with etcd's message. Any thread.
 */
#ifndef KSHIM_CORRUPT_RULES_H
#define KSHIM_CORRUPT_RULES_H

#include <stddef.h>
#include <stdint.h>

/* A peer's answer's status (etcd: 200, or 400 with the mvcc error's text). */
enum {
    CORRUPT_HASH_OK = 0,
    CORRUPT_HASH_COMPACTED = 1,
    CORRUPT_HASH_FUTURE_REV = 2,
    CORRUPT_HASH_FAILED = 3
};

/* One HashKV: the hash at revision, the store's revision and compact
 * revision (-1: never compacted). */
typedef struct corrupt_hash {
    uint32_t hash;
    int64_t revision, compact_revision;
} corrupt_hash_t;

typedef struct corrupt_peer {
    uint64_t id;
    int status; /* CORRUPT_HASH_*; FAILED also when the peer could not be asked */
    corrupt_hash_t h;
} corrupt_peer_t;

/* CheckInitialHashKV: the member (self, its HashKV `local`) compared with
 * the peers' answers at its revision; returns how many have the same
 * compact revision and another hash (a mismatch: the member must not start).
 * Another hash at another compact revision, a peer behind (future revision)
 * or ahead (compacted) are logged only. */
int corrupt_initial_mismatches(uint64_t self, const corrupt_hash_t *local, const corrupt_peer_t *peers,
                               size_t n);

/* checkHashKV on the leader: `first` its HashKV before asking the peers,
 * `second` after its applied index caught up with its commit index.
 * Returns 1 if the CORRUPT alarm must be raised: its own hash moved at the
 * same revision and compact revision, or a peer that answered is ahead of
 * `second` in revision or in compact revision, or has first's compact
 * revision and another hash than first's. *checked: the peers that
 * answered. */
int corrupt_leader_verdict(const corrupt_hash_t *first, const corrupt_hash_t *second,
                           const corrupt_peer_t *peers, size_t n, int *checked);

#endif
