/*
 * readers.h: a small fixed pool of reader threads for work that must not run
 * on the event-loop thread (large Range / read-only Txn, lease key scans,
 * JWT signing).
 *
 * A job is a struct the caller owns and embeds in its own request state:
 * run() executes on a reader thread, done() runs afterwards on the loop
 * thread. Completions reach the loop through loop_post: finished jobs go on
 * the pool's done list and one post per burst drains it, so a busy pool uses
 * one post-queue entry, not one per job. If a post cannot be made (the loop
 * is stopping, or its queue refuses), nothing is dropped: a 100 ms loop timer
 * of the pool drains the done list too, and readers_stop() completes every
 * job still held.
 *
 * Ownership: the loop keeps owning every gRPC call. A service takes
 * grpc_call_ref() before readers_submit, reads only its own copies of the
 * request in run() (never the call), and in done() checks
 * grpc_call_is_closed() before answering, then unrefs. run() may use any
 * thread-safe store function (kv_range, kv_txn_readonly, kv_history: LevelDB
 * snapshots).
 *
 * Bound: at most max_jobs jobs are in the pool at once (queued, running, or
 * finished and waiting for done). readers_submit refuses beyond that and the
 * service answers etcd's ResourceExhausted "etcdserver: too many requests"
 * instead of queueing without limit.
 *
 * Order: jobs start in submission order; with one thread they also complete
 * in that order. With more threads, completions follow finishing order;
 * done() runs exactly once per accepted job.
 *
 * Where a linearizable read of a cluster goes: the loop asks Raft for a read
 * index, holds the job until the applied index reaches it (a wait list
 * released from the loop_post that delivers applied results), then calls
 * readers_submit. Nothing in the pool changes for that: submission is the
 * point where "the read may now see the store" holds.
 *
 * Threads: readers_new, readers_submit, readers_stop and readers_free on the
 * loop thread (readers_stop after loop_run has returned).
 */
#ifndef KSHIM_READERS_H
#define KSHIM_READERS_H

#include <stddef.h>

#include "loop.h"

typedef struct readers readers_t;
typedef struct reader_job reader_job_t;

enum {
    READER_DONE = 0,      /* run() ran */
    READER_CANCELLED = 1, /* the pool stopped before run(): only clean up */
};

struct reader_job {
    void (*run)(reader_job_t *job);              /* a reader thread */
    void (*done)(reader_job_t *job, int status); /* the loop thread, once */
    reader_job_t *next;                          /* the pool's */
};

typedef struct readers_config {
    size_t threads;            /* 0: min(4, number of CPUs) */
    size_t max_jobs;           /* 0: 4096 */
    void (*thread_exit)(void); /* optional, on each reader thread as it ends */
} readers_config_t;

enum { READERS_OK = 0, READERS_FULL = -1, READERS_STOPPED = -2 };

/* NULL on failure (no memory, no thread). */
readers_t *readers_new(loop_t *loop, const readers_config_t *cfg);

/* Queues job. READERS_OK (done will be called), READERS_FULL (the bound is
 * reached) or READERS_STOPPED; on refusal the job stays the caller's. */
int readers_submit(readers_t *r, reader_job_t *job);

/* Loop thread: takes job out of the queue if no reader has started it (its
 * caller went away: a cancelled request must not hold a place of the bound
 * nor cost a read) and calls done(job, READER_CANCELLED) now; returns 1.
 * Returns 0 if it already runs or ran: done comes as usual. */
int readers_cancel(readers_t *r, reader_job_t *job);

/* Jobs in the pool now (for tests and stats). */
size_t readers_in_flight(const readers_t *r);
size_t readers_threads(const readers_t *r);

/* Refuses new jobs, lets running jobs finish, joins the threads, then calls
 * done(READER_CANCELLED) for every queued job and done(READER_DONE) for every
 * finished one not yet completed. After it, no job of the pool is left and
 * the store may close. Safe to call twice. */
void readers_stop(readers_t *r);
void readers_free(readers_t *r); /* stops first if needed; NULL is fine */

#endif
