/*
 * corrupt_rules.c: the verdicts of etcd 3.4's CheckInitialHashKV and
 * checkHashKV (corrupt_rules.h), rule for rule and with etcd's messages.
 */
#include "corrupt_rules.h"

#include "log.h"

int corrupt_initial_mismatches(uint64_t self, const corrupt_hash_t *local, const corrupt_peer_t *peers,
                               size_t n) {
    unsigned long long me = (unsigned long long)self;
    int mismatch = 0;
    for (size_t i = 0; i < n; i++) {
        const corrupt_peer_t *p = &peers[i];
        if (p->status == CORRUPT_HASH_OK && p->h.hash != local->hash) {
            int same = p->h.compact_revision == local->compact_revision;
            log_warn("found different %s from remote peer (local-member-id %llx, local-member-revision %lld, "
                     "local-member-compact-revision %lld, local-member-hash %u, remote-peer-id %llx, "
                     "remote-peer-revision %lld, remote-peer-compact-revision %lld, remote-peer-hash %u)",
                     same ? "hash values" : "compact revision values", me, (long long)local->revision,
                     (long long)local->compact_revision, local->hash, (unsigned long long)p->id,
                     (long long)p->h.revision, (long long)p->h.compact_revision, p->h.hash);
            mismatch += same;
        } else if (p->status == CORRUPT_HASH_FUTURE_REV) {
            log_warn("cannot fetch hash from slow remote peer (local-member-id %llx, local-member-revision "
                     "%lld, remote-peer-id %llx)",
                     me, (long long)local->revision, (unsigned long long)p->id);
        } else if (p->status == CORRUPT_HASH_COMPACTED) {
            log_warn("cannot fetch hash from remote peer; local member is behind (local-member-id %llx, "
                     "local-member-revision %lld, remote-peer-id %llx)",
                     me, (long long)local->revision, (unsigned long long)p->id);
        }
    }
    return mismatch;
}

int corrupt_leader_verdict(const corrupt_hash_t *first, const corrupt_hash_t *second,
                           const corrupt_peer_t *peers, size_t n, int *checked) {
    int mismatch = 0;
    *checked = 0;
    if (second->hash != first->hash && second->revision == first->revision &&
        first->compact_revision == second->compact_revision) {
        log_warn("found hash mismatch (revision-1 %lld, compact-revision-1 %lld, hash-1 %u, revision-2 %lld, "
                 "compact-revision-2 %lld, hash-2 %u)",
                 (long long)first->revision, (long long)first->compact_revision, first->hash,
                 (long long)second->revision, (long long)second->compact_revision, second->hash);
        mismatch = 1;
    }
    for (size_t i = 0; i < n; i++) {
        const corrupt_peer_t *p = &peers[i];
        unsigned long long id = (unsigned long long)p->id;
        if (p->status != CORRUPT_HASH_OK) continue;
        (*checked)++;
        if (p->h.revision > second->revision) {
            log_warn("revision from follower must be less than or equal to leader's (leader-revision %lld, "
                     "follower-revision %lld, follower-peer-id %llx)",
                     (long long)second->revision, (long long)p->h.revision, id);
            mismatch = 1;
        }
        if (p->h.compact_revision > second->compact_revision) {
            log_warn("compact revision from follower must be less than or equal to leader's "
                     "(leader-compact-revision %lld, follower-compact-revision %lld, follower-peer-id %llx)",
                     (long long)second->compact_revision, (long long)p->h.compact_revision, id);
            mismatch = 1;
        }
        if (p->h.compact_revision == first->compact_revision && p->h.hash != first->hash) {
            log_warn(
                "same compact revision then hashes must match (leader-compact-revision %lld, leader-hash "
                "%u, follower-compact-revision %lld, follower-hash %u, follower-peer-id %llx)",
                (long long)second->compact_revision, first->hash, (long long)p->h.compact_revision, p->h.hash,
                id);
            mismatch = 1;
        }
    }
    return mismatch;
}
