/*
 * test_readers.c: the reader thread pool (readers.h) on a real event loop:
 * jobs run off the loop thread and complete on it, in submission order with
 * one thread and exactly once with several; the bound refuses jobs past
 * max_jobs and frees up as jobs complete; readers_stop with jobs queued
 * finishes the running job and cancels the queued ones; readers_cancel takes
 * a queued job out at once (not a running one); a completion whose
 * loop_post was refused still arrives (the fallback drain).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
#include "readers.h"

enum { NJOBS = 200 };

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
} gate_t;

static void gate_init(gate_t *g) {
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = 0;
}

static void gate_wait(gate_t *g) {
    pthread_mutex_lock(&g->mu);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate_t *g) {
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

typedef struct ctx ctx_t;

typedef struct tjob {
    reader_job_t job;
    ctx_t *ctx;
    int id;
    pthread_t ran_on;
    int runs;
    int dones;
    int status;
    gate_t *gate;       /* run waits on it when set */
    atomic_int started; /* run began */
} tjob_t;

struct ctx {
    loop_t *loop;
    pthread_t loop_thread;
    int order[NJOBS];
    int ncompleted;
    int stop_at;      /* loop_stop once this many completed */
    int wrong_thread; /* done() off the loop thread */
};

static void tjob_run(reader_job_t *job) {
    tjob_t *t = (tjob_t *)job;
    atomic_store(&t->started, 1);
    if (t->gate) gate_wait(t->gate);
    t->ran_on = pthread_self();
    t->runs++;
}

static void tjob_done(reader_job_t *job, int status) {
    tjob_t *t = (tjob_t *)job;
    ctx_t *c = t->ctx;
    if (!pthread_equal(pthread_self(), c->loop_thread)) c->wrong_thread++;
    t->dones++;
    t->status = status;
    if (c->ncompleted < NJOBS) c->order[c->ncompleted] = t->id;
    c->ncompleted++;
    if (c->ncompleted == c->stop_at) loop_stop(c->loop);
}

static void guard_timer(loop_t *loop, void *arg) { loop_stop(loop); } /* never a hang */

static void ctx_init(ctx_t *c) {
    memset(c, 0, sizeof(*c));
    c->loop = loop_new();
    assert_non_null(c->loop);
    c->loop_thread = pthread_self();
}

static void job_init(tjob_t *t, ctx_t *c, int id) {
    memset(t, 0, sizeof(*t));
    t->job.run = tjob_run;
    t->job.done = tjob_done;
    t->ctx = c;
    t->id = id;
}

static void run_until(ctx_t *c, int completed) {
    c->stop_at = completed;
    loop_timer_t *g = loop_timer_add(c->loop, 20000, guard_timer, NULL);
    if (c->ncompleted < completed) loop_run(c->loop);
    loop_timer_cancel(c->loop, g);
}

static void test_one_thread_completes_in_order(void **state) {
    ctx_t c;
    ctx_init(&c);
    readers_t *r = readers_new(c.loop, &(readers_config_t){.threads = 1});
    assert_non_null(r);
    assert_int_equal(readers_threads(r), 1);
    static tjob_t jobs[NJOBS];
    for (int i = 0; i < NJOBS; i++) {
        job_init(&jobs[i], &c, i);
        assert_int_equal(readers_submit(r, &jobs[i].job), READERS_OK);
    }
    run_until(&c, NJOBS);
    assert_int_equal(c.ncompleted, NJOBS);
    assert_int_equal(c.wrong_thread, 0);
    for (int i = 0; i < NJOBS; i++) {
        assert_int_equal(c.order[i], i);
        assert_int_equal(jobs[i].runs, 1);
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(jobs[i].status, READER_DONE);
        assert_false(pthread_equal(jobs[i].ran_on, c.loop_thread));
    }
    assert_int_equal(readers_in_flight(r), 0);
    readers_free(r);
    loop_free(c.loop);
}

static void test_many_threads_complete_each_once(void **state) {
    ctx_t c;
    ctx_init(&c);
    readers_t *r = readers_new(c.loop, &(readers_config_t){.threads = 4});
    assert_non_null(r);
    static tjob_t jobs[NJOBS];
    for (int i = 0; i < NJOBS; i++) {
        job_init(&jobs[i], &c, i);
        assert_int_equal(readers_submit(r, &jobs[i].job), READERS_OK);
    }
    run_until(&c, NJOBS);
    assert_int_equal(c.ncompleted, NJOBS);
    assert_int_equal(c.wrong_thread, 0);
    for (int i = 0; i < NJOBS; i++) {
        assert_int_equal(jobs[i].runs, 1);
        assert_int_equal(jobs[i].dones, 1);
        assert_false(pthread_equal(jobs[i].ran_on, c.loop_thread));
    }
    readers_free(r);
    loop_free(c.loop);
}

static void test_bound_refuses_then_frees(void **state) {
    ctx_t c;
    ctx_init(&c);
    readers_t *r = readers_new(c.loop, &(readers_config_t){.threads = 1, .max_jobs = 3});
    assert_non_null(r);
    gate_t g;
    gate_init(&g);
    tjob_t jobs[5];
    for (int i = 0; i < 5; i++) job_init(&jobs[i], &c, i);
    jobs[0].gate = &g; /* the reader is busy: the others queue */
    for (int i = 0; i < 3; i++) assert_int_equal(readers_submit(r, &jobs[i].job), READERS_OK);
    assert_int_equal(readers_submit(r, &jobs[3].job), READERS_FULL);
    assert_int_equal(readers_in_flight(r), 3);
    assert_int_equal(jobs[3].runs, 0);
    gate_open(&g);
    run_until(&c, 3);
    assert_int_equal(readers_in_flight(r), 0);
    /* Completed jobs leave the bound: a new one is accepted. */
    assert_int_equal(readers_submit(r, &jobs[3].job), READERS_OK);
    run_until(&c, 4);
    assert_int_equal(jobs[3].dones, 1);
    assert_int_equal(c.wrong_thread, 0);
    readers_free(r);
    loop_free(c.loop);
}

typedef struct opener {
    readers_t *r;
    gate_t *g;
    tjob_t *probe, *end;
    atomic_int stop_called; /* the main thread is about to call readers_stop */
} opener_t;

/* Opens the gate only once the pool refuses jobs (readers_stop began).
 * Each accepted probe queues behind the gated job and is cancelled by the
 * stop; probing starts only once readers_stop is being called and then at
 * most once a millisecond, so the probes array is never exhausted however
 * the two threads are scheduled. */
static void *open_after_stop(void *arg) {
    opener_t *o = arg;
    while (!atomic_load(&o->stop_called)) sched_yield();
    while (o->probe < o->end && readers_submit(o->r, &o->probe->job) != READERS_STOPPED) {
        o->probe++;
        usleep(1000);
    }
    gate_open(o->g);
    return NULL;
}

static void test_stop_with_jobs_queued(void **state) {
    ctx_t c;
    ctx_init(&c);
    readers_t *r = readers_new(c.loop, &(readers_config_t){.threads = 1, .max_jobs = 1000000});
    assert_non_null(r);
    gate_t g;
    gate_init(&g);
    static tjob_t jobs[6];
    for (int i = 0; i < 6; i++) job_init(&jobs[i], &c, i);
    jobs[0].gate = &g;
    for (int i = 0; i < 6; i++) assert_int_equal(readers_submit(r, &jobs[i].job), READERS_OK);
    static tjob_t probes[100000];
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) job_init(&probes[i], &c, 1000);
    opener_t o = {.r = r, .g = &g, .probe = probes, .end = probes + sizeof probes / sizeof probes[0]};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, open_after_stop, &o), 0);
    atomic_store(&o.stop_called, 1);
    readers_stop(r); /* joins: the running job finishes once the gate opens */
    pthread_join(th, NULL);
    assert_true(o.probe < o.end); /* the gate was opened by a refused probe */
    assert_int_equal(c.wrong_thread, 0);
    assert_int_equal(jobs[0].runs, 1);
    assert_int_equal(jobs[0].dones, 1);
    assert_int_equal(jobs[0].status, READER_DONE);
    for (int i = 1; i < 6; i++) {
        assert_int_equal(jobs[i].runs, 0);
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(jobs[i].status, READER_CANCELLED);
    }
    for (tjob_t *p = probes; p < o.probe; p++) assert_int_equal(p->dones, 1);
    assert_int_equal(readers_submit(r, &jobs[1].job), READERS_STOPPED);
    readers_stop(r); /* twice is fine */
    readers_free(r);
    loop_free(c.loop);
}

/* readers_cancel: a queued job (head, middle, tail) leaves the queue with
 * done(READER_CANCELLED) at once and frees its place of the bound; a
 * running one is not touched (returns 0, completes as usual). */
static void test_cancel_queued(void **state) {
    ctx_t c;
    ctx_init(&c);
    readers_t *r = readers_new(c.loop, &(readers_config_t){.threads = 1, .max_jobs = 5});
    assert_non_null(r);
    gate_t g;
    gate_init(&g);
    static tjob_t jobs[6];
    for (int i = 0; i < 6; i++) job_init(&jobs[i], &c, i);
    jobs[0].gate = &g;
    for (int i = 0; i < 5; i++) assert_int_equal(readers_submit(r, &jobs[i].job), READERS_OK);
    assert_int_equal(readers_submit(r, &jobs[5].job), READERS_FULL);
    while (!atomic_load(&jobs[0].started)) sched_yield(); /* the one reader holds job 0 */
    assert_int_equal(readers_cancel(r, &jobs[2].job), 1); /* middle */
    assert_int_equal(readers_cancel(r, &jobs[4].job), 1); /* tail */
    assert_int_equal(readers_cancel(r, &jobs[1].job), 1); /* head */
    assert_int_equal(readers_cancel(r, &jobs[1].job), 0); /* not queued any more */
    for (int i = 1; i <= 4; i += i == 2 ? 2 : 1) {
        assert_int_equal(jobs[i].dones, 1);
        assert_int_equal(jobs[i].status, READER_CANCELLED);
        assert_int_equal(jobs[i].runs, 0);
    }
    assert_int_equal(readers_cancel(r, &jobs[0].job), 0);          /* running */
    assert_int_equal(readers_submit(r, &jobs[5].job), READERS_OK); /* room again */
    gate_open(&g);
    run_until(&c, 6); /* 3 cancelled at once, then jobs 0, 3 and 5 */
    assert_int_equal(jobs[0].status, READER_DONE);
    assert_int_equal(jobs[3].status, READER_DONE);
    assert_int_equal(jobs[5].status, READER_DONE);
    for (int i = 0; i < 6; i++) assert_int_equal(jobs[i].dones, 1);
    assert_int_equal(c.wrong_thread, 0);
    readers_free(r);
    loop_free(c.loop);
}

static void stop_now(void *arg) { loop_stop(arg); }

static void test_refused_post_still_completes(void **state) {
    ctx_t c;
    ctx_init(&c);
    readers_t *r = readers_new(c.loop, &(readers_config_t){.threads = 1});
    assert_non_null(r);
    /* After one run the loop refuses posts until it runs again. */
    assert_int_equal(loop_post(c.loop, stop_now, c.loop), 0);
    loop_run(c.loop);
    assert_int_not_equal(loop_post(c.loop, stop_now, c.loop), 0);
    tjob_t t;
    job_init(&t, &c, 7);
    assert_int_equal(readers_submit(r, &t.job), READERS_OK);
    while (readers_in_flight(r) == 1 && t.runs == 0) sched_yield();
    /* The job's drain post was refused; the pool's timer completes it. */
    run_until(&c, 1);
    assert_int_equal(t.dones, 1);
    assert_int_equal(t.status, READER_DONE);
    readers_free(r);
    loop_free(c.loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_thread_completes_in_order),
        cmocka_unit_test(test_many_threads_complete_each_once),
        cmocka_unit_test(test_bound_refuses_then_frees),
        cmocka_unit_test(test_stop_with_jobs_queued),
        cmocka_unit_test(test_cancel_queued),
        cmocka_unit_test(test_refused_post_still_completes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
