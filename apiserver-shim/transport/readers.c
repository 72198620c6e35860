/*
 * readers.c: the reader thread pool (implements readers.h).
 *
 * Owns: the threads, the FIFO of queued jobs, the list of finished jobs
 * waiting for the loop, the in-flight count that enforces max_jobs, and the
 * fallback drain timer. Does not own the jobs (their submitters do).
 *
 * One mutex guards both lists and the counters; a condition variable wakes
 * idle readers. A reader that finishes a job appends it to the done list and
 * posts one drain to the loop unless a drain is already posted.
 */
#include "readers.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

enum {
    DEFAULT_MAX_JOBS = 4096,
    MAX_THREADS = 4,
    FALLBACK_DRAIN_MS = 100,
};

struct readers {
    loop_t *loop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    reader_job_t *qhead, *qtail; /* queued, not started */
    reader_job_t *dhead, *dtail; /* ran, waiting for done() on the loop */
    size_t in_flight;            /* queued + running + done-not-completed */
    size_t max_jobs;
    int stopping;
    int drain_posted; /* a drain is in the loop's post queue */
    void (*thread_exit)(void);
    pthread_t *threads;
    size_t nthreads;
    loop_timer_t *timer; /* loop thread */
    int stopped;         /* loop thread */
};

static void list_push(reader_job_t **head, reader_job_t **tail, reader_job_t *job) {
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

/* Loop thread: complete every finished job. */
static void drain(readers_t *r) {
    pthread_mutex_lock(&r->mu);
    reader_job_t *job = r->dhead;
    r->dhead = r->dtail = NULL;
    r->drain_posted = 0;
    size_t n = 0;
    for (reader_job_t *j = job; j; j = j->next) n++;
    r->in_flight -= n;
    pthread_mutex_unlock(&r->mu);
    while (job) {
        reader_job_t *next = job->next;
        job->done(job, READER_DONE);
        job = next;
    }
}

static void drain_post(void *arg) { drain(arg); }

static void drain_timer(loop_t *loop, void *arg) {
    readers_t *r = arg;
    r->timer = NULL;
    drain(r);
    r->timer = loop_timer_add(loop, FALLBACK_DRAIN_MS, drain_timer, r);
}

static void *reader_main(void *arg) {
    readers_t *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stopping && !r->qhead) pthread_cond_wait(&r->cv, &r->mu);
        if (r->stopping) break;
        reader_job_t *job = r->qhead;
        r->qhead = job->next;
        if (!r->qhead) r->qtail = NULL;
        pthread_mutex_unlock(&r->mu);

        job->run(job);

        pthread_mutex_lock(&r->mu);
        list_push(&r->dhead, &r->dtail, job);
        if (!r->drain_posted && !r->stopping) {
            r->drain_posted = 1;
            pthread_mutex_unlock(&r->mu);
            int rc = loop_post(r->loop, drain_post, r);
            pthread_mutex_lock(&r->mu);
            if (rc != 0) r->drain_posted = 0; /* the timer or the next job drains */
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (r->thread_exit) r->thread_exit();
    return NULL;
}

static size_t default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return n > MAX_THREADS ? MAX_THREADS : (size_t)n;
}

readers_t *readers_new(loop_t *loop, const readers_config_t *cfg) {
    readers_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->loop = loop;
    r->max_jobs = cfg && cfg->max_jobs ? cfg->max_jobs : DEFAULT_MAX_JOBS;
    r->thread_exit = cfg ? cfg->thread_exit : NULL;
    size_t want = cfg && cfg->threads ? cfg->threads : default_threads();
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->threads = calloc(want, sizeof r->threads[0]);
    if (!r->threads) goto fail;
    for (size_t i = 0; i < want; i++) {
        if (pthread_create(&r->threads[i], NULL, reader_main, r) != 0) goto fail;
        r->nthreads++;
    }
    r->timer = loop_timer_add(loop, FALLBACK_DRAIN_MS, drain_timer, r);
    if (!r->timer) goto fail;
    return r;
fail:
    readers_free(r);
    return NULL;
}

int readers_submit(readers_t *r, reader_job_t *job) {
    pthread_mutex_lock(&r->mu);
    int rc = READERS_OK;
    if (r->stopping)
        rc = READERS_STOPPED;
    else if (r->in_flight >= r->max_jobs)
        rc = READERS_FULL;
    if (rc == READERS_OK) {
        r->in_flight++;
        list_push(&r->qhead, &r->qtail, job);
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int readers_cancel(readers_t *r, reader_job_t *job) {
    pthread_mutex_lock(&r->mu);
    reader_job_t *prev = NULL, *j = r->qhead;
    while (j && j != job) {
        prev = j;
        j = j->next;
    }
    if (j) {
        if (prev)
            prev->next = j->next;
        else
            r->qhead = j->next;
        if (r->qtail == j) r->qtail = prev;
        j->next = NULL;
        r->in_flight--;
    }
    pthread_mutex_unlock(&r->mu);
    if (!j) return 0;
    job->done(job, READER_CANCELLED);
    return 1;
}

size_t readers_in_flight(const readers_t *r) {
    pthread_mutex_lock((pthread_mutex_t *)&r->mu);
    size_t n = r->in_flight;
    pthread_mutex_unlock((pthread_mutex_t *)&r->mu);
    return n;
}

size_t readers_threads(const readers_t *r) { return r->nthreads; }

void readers_stop(readers_t *r) {
    if (!r || r->stopped) return;
    r->stopped = 1;
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < r->nthreads; i++) pthread_join(r->threads[i], NULL);
    if (r->timer) loop_timer_cancel(r->loop, r->timer);
    r->timer = NULL;
    drain(r); /* finished jobs: their results are real */
    pthread_mutex_lock(&r->mu);
    reader_job_t *job = r->qhead;
    r->qhead = r->qtail = NULL;
    r->in_flight = 0;
    pthread_mutex_unlock(&r->mu);
    while (job) {
        reader_job_t *next = job->next;
        job->done(job, READER_CANCELLED);
        job = next;
    }
}

void readers_free(readers_t *r) {
    if (!r) return;
    readers_stop(r);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->threads);
    free(r);
}
