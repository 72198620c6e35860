/*
 * latency_hist.h: a lock-free latency histogram for disk syncs, written by
 * the thread that syncs (raft's WAL fdatasync, the store's synced LevelDB
 * writes) and read by any thread. Bucket i counts durations <= 1 ms * 2^i
 * (1 ms .. 8.192 s, 14 buckets; slower ones only in count), the bounds of
 * etcd's disk histograms (ExponentialBuckets(0.001, 2, 14)); how the numbers
 * are shown is the reader's business. Header-only, in the lowest layer
 * (target kshim_bytes), so raft/ and storage/ share one type.
 */
#ifndef KSHIM_LATENCY_HIST_H
#define KSHIM_LATENCY_HIST_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define LAT_HIST_BUCKETS 14
#define LAT_HIST_FIRST_NS 1000000ull /* the first bucket's upper bound: 1 ms */

typedef struct lat_hist {
    _Atomic uint64_t bucket[LAT_HIST_BUCKETS]; /* not cumulative: durations in (bound i-1, bound i] */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
} lat_hist_t;

/* A plain copy for the reader; bucket[] is cumulative (<= bound i). */
typedef struct lat_hist_snapshot {
    uint64_t bucket[LAT_HIST_BUCKETS];
    uint64_t count;
    uint64_t sum_ns;
} lat_hist_snapshot_t;

static inline uint64_t lat_hist_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* One observation of ns nanoseconds (relaxed atomics: a counter each). */
static inline void lat_hist_observe(lat_hist_t *h, uint64_t ns) {
    uint64_t bound = LAT_HIST_FIRST_NS;
    for (int i = 0; i < LAT_HIST_BUCKETS; i++, bound *= 2) {
        if (ns <= bound) {
            atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

/* The observation since start (a lat_hist_now_ns value). */
static inline void lat_hist_since(lat_hist_t *h, uint64_t start_ns) {
    lat_hist_observe(h, lat_hist_now_ns() - start_ns);
}

/* Upper bound of bucket i in seconds. */
static inline double lat_hist_bound_s(int i) { return (double)(LAT_HIST_FIRST_NS << i) / 1e9; }

/* Reads count first, so a concurrent observation may show in a bucket but
 * not yet in count: count is raised to the last bucket if needed. */
static inline void lat_hist_read(const lat_hist_t *h, lat_hist_snapshot_t *out) {
    out->count = atomic_load_explicit(&h->count, memory_order_relaxed);
    out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    uint64_t cum = 0;
    for (int i = 0; i < LAT_HIST_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        out->bucket[i] = cum;
    }
    if (out->count < cum) out->count = cum;
}

#endif
