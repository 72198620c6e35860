/*
 * failpoint.h: fault injection for storage/ (the idea of etcd's gofail,
 * enabled by the environment instead of a build tag).
 *
 * KSHIM_FAILPOINTS is a comma-separated list of name=N terms, read once when
 * the store opens (mvcc_open). The failpoints:
 *
 *   mvcc_read_error=N   the Nth LevelDB read after the store opened (a get or
 *                       an iterator, on any thread, counted from 1) fails as
 *                       an I/O error; later reads succeed again.
 *   mvcc_compact_error=N the compactor's Nth batch fails as an I/O error:
 *                       the compactor stops and the member exits
 *                       (fail-stop); the batch wrote nothing.
 *   mvcc_put_corrupt=N  the Nth key written by a Put after the store opened
 *                       (mvcc_txn_put: a Put, a Txn's put, counted from 1)
 *                       is stored with an altered value (its last byte's
 *                       bit 0x20 flipped; an empty value becomes "!"), on
 *                       this member only: its data diverges from the other
 *                       members', which the corruption check
 *                       (--experimental-corrupt-check-time, HashKV) finds.
 *   mvcc_snapshot_crash=N the process exits (_exit(86)) at the Nth crash
 *                       point of Raft snapshot imports and installs
 *                       (mvcc_snapshot.c): a crash test of the swap.
 *
 * Example: KSHIM_FAILPOINTS=mvcc_read_error=200 kshimd ...
 *
 * Unset, a failpoint costs one load and compare of a zero counter per read.
 * Tests arm one directly with failpoint_arm().
 */
#ifndef KSHIM_FAILPOINT_H
#define KSHIM_FAILPOINT_H

#include <stdatomic.h>
#include <stdint.h>

#define FAILPOINTS_ENV "KSHIM_FAILPOINTS"

typedef struct failpoint {
    _Atomic uint64_t countdown; /* 0: disarmed; 1: the next hit fails */
} failpoint_t;

/* Reads the count of failpoint `name` from spec ("a=3,b=7"); 0 if absent or
 * not a positive number. */
uint64_t failpoint_parse(const char *spec, const char *name);

/* Arms fp to fail its nth hit from now (0 disarms). */
void failpoint_arm(failpoint_t *fp, uint64_t n);

/* Counts one hit of an armed failpoint; 1 if this hit must fail. */
int failpoint_hit_slow(failpoint_t *fp);

/* Counts one hit; returns 1 if this hit must fail. */
static inline int failpoint_hit(failpoint_t *fp) {
    if (atomic_load_explicit(&fp->countdown, memory_order_relaxed) == 0) return 0;
    return failpoint_hit_slow(fp);
}

#endif
