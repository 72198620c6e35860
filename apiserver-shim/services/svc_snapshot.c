/*
 * svc_snapshot.c: Maintenance.Snapshot (/etcdserverpb.Maintenance/Snapshot),
 * what `etcdctl snapshot save` reads: the store as etcd 3.4's backend
 * database (a bbolt file, storage/bbolt/etcd_db.h), streamed as etcd does
 * it: SnapshotResponse chunks of 32 KiB (remaining_bytes = what follows),
 * then one last response whose blob is the SHA-256 of every byte sent
 * (`snapshot restore` checks it).
 *
 * A worker thread (at most MAX_WORKERS at once, counting calls still
 * waiting for one; more are refused "etcdserver: too many requests"),
 * started once the store holds every write answered before the call
 * (server_when_written), writes the database from one LevelDB snapshot
 * into an unlinked temporary file under <data-dir>/member (never the whole
 * database in memory), then hands the file back to the loop with
 * loop_post. The loop streams it: preads a chunk, hashes it and queues it
 * while the call has less than HIGH_WATER bytes queued; past that a timer
 * polls until the client read them. The job owns the fd and a call ref.
 * Auth as etcd 3.4's maintenance server: admin only when auth is enabled.
 * svc_snapshot_stop (after the loop ended) makes the workers' file writes
 * fail, waits for them (they read the store, which closes next) and drops
 * the streams still going.
 */
#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "auth_check.h"
#include "etcd_db.h"
#include "log.h"
#include "services.h"

#define CHUNK (32 * 1024)
#define HIGH_WATER (8 * CHUNK)
#define DRAIN_POLL_MS 5
#define MAX_WORKERS 2

static atomic_int workers;  /* jobs from their call to their worker's end (MAX_WORKERS) */
static atomic_int waiting;  /* of them, still waiting for the store (no thread yet) */
static atomic_int stopping; /* svc_snapshot_stop: workers give up writing */
/* Every job from its call to its end, so that svc_snapshot_stop can drop
 * those the stopped loop will never finish (posted and not run, streaming,
 * or not posted at all); jobs_mu guards the links only. */
static struct snap_job *jobs;
static pthread_mutex_t jobs_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct snap_job {
    server_t *s;
    loop_t *loop;
    grpc_call_t *call; /* ref held */
    int fd;
    /* worker -> loop */
    int rc;
    char err[256];
    etcd_db_stats_t st;
    /* loop: streaming */
    uint64_t sent;
    wc_Sha256 sha;
    loop_timer_t *timer;
    int sha_live;
    /* loop: before the worker, until the store holds every write answered
     * before the call (a KV write is answered before its write group is in
     * LevelDB: at most one group's sync) */
    server_written_wait_t written;
    int is_waiting;               /* counted in waiting; svc_snapshot_stop leaves it to server_written_stop */
    struct snap_job *prev, *next; /* in jobs */
} snap_job_t;

static void job_free(snap_job_t *j) {
    pthread_mutex_lock(&jobs_mu);
    if (j->prev) j->prev->next = j->next;
    if (j->next) j->next->prev = j->prev;
    if (jobs == j) jobs = j->next;
    pthread_mutex_unlock(&jobs_mu);
    if (j->sha_live) wc_Sha256Free(&j->sha);
    if (j->fd >= 0) close(j->fd);
    grpc_call_unref(j->call);
    free(j);
}

static void pump(snap_job_t *j);

static void on_drain(loop_t *loop, void *arg) {
    snap_job_t *j = arg;
    j->timer = NULL;
    pump(j);
}

static int send_chunk(snap_job_t *j, const uint8_t *blob, size_t n, uint64_t remaining) {
    Etcdserverpb__SnapshotResponse resp = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
    resp.remaining_bytes = remaining;
    resp.blob.data = (uint8_t *)blob;
    resp.blob.len = n;
    size_t len = etcdserverpb__snapshot_response__get_packed_size(&resp);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return -1;
    etcdserverpb__snapshot_response__pack(&resp, buf);
    return grpc_call_send_owned(j->call, buf, len, free);
}

/* Sends chunks while the call has room; then the SHA-256 and the status. */
static void pump(snap_job_t *j) {
    uint8_t buf[CHUNK];
    while (!grpc_call_is_closed(j->call) && j->sent < j->st.size) {
        if (grpc_call_send_queued(j->call) >= HIGH_WATER) {
            j->timer = loop_timer_add(j->loop, DRAIN_POLL_MS, on_drain, j);
            if (j->timer) return;
            grpc_call_finish(j->call, GRPC_INTERNAL, "kshim: out of memory");
            break;
        }
        uint64_t left = j->st.size - j->sent;
        size_t n = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t got = pread(j->fd, buf, n, (off_t)j->sent);
        if (got != (ssize_t)n) {
            log_error("snapshot: reading the database file: %s", got < 0 ? strerror(errno) : "short read");
            grpc_call_finish(j->call, GRPC_INTERNAL, "kshim: snapshot read error");
            break;
        }
        wc_Sha256Update(&j->sha, buf, (word32)n);
        j->sent += n;
        if (send_chunk(j, buf, n, j->st.size - j->sent) != 0) break;
    }
    if (!grpc_call_is_closed(j->call) && j->sent == j->st.size) {
        uint8_t digest[WC_SHA256_DIGEST_SIZE];
        wc_Sha256Final(&j->sha, digest);
        if (send_chunk(j, digest, sizeof digest, 0) == 0) grpc_call_finish(j->call, GRPC_OK, NULL);
        log_info("snapshot: sent %llu bytes (revision %lld, %llu versions)", (unsigned long long)j->st.size,
                 (long long)j->st.revision, (unsigned long long)j->st.versions);
    }
    job_free(j);
}

/* Loop: the worker wrote the file. */
static void job_ready(void *arg) {
    snap_job_t *j = arg;
    if (grpc_call_is_closed(j->call)) {
        job_free(j);
        return;
    }
    if (j->rc != ETCD_DB_OK) {
        log_error("snapshot: %s", j->err);
        grpc_call_finish(j->call, GRPC_INTERNAL, "kshim: cannot write the snapshot");
        job_free(j);
        return;
    }
    if (wc_InitSha256(&j->sha) != 0) {
        grpc_call_finish(j->call, GRPC_INTERNAL, "kshim: sha256 init failed");
        job_free(j);
        return;
    }
    j->sha_live = 1;
    pump(j);
}

/* The file sink, refusing once the member stops (the write then fails fast). */
static int job_sink(void *ctx, uint64_t off, const void *buf, size_t len) {
    return atomic_load(&stopping) ? -1 : bbolt_fd_sink(ctx, off, buf, len);
}

static void *job_thread(void *arg) {
    snap_job_t *j = arg;
    server_t *s = j->s;
    const char *name = s->cfg->name;
    etcd_db_member_t mb = {.id = s->member_id,
                           .name = name,
                           .peer_urls = s->peer_urls,
                           .n_peer_urls = s->n_peer_urls,
                           .client_urls = s->cfg->advertise_client_urls,
                           .n_client_urls = s->cfg->n_advertise_client_urls};
    j->rc = etcd_db_write(s->mvcc, &mb, job_sink, &j->fd, &j->st, j->err, sizeof j->err);
    (void)loop_post(j->loop, job_ready, j); /* refused: stopping, svc_snapshot_stop frees j */
    atomic_fetch_sub(&workers, 1);
    return NULL;
}

/* An unlinked temporary file under <data-dir>/member: gone when closed. */
static int temp_file(server_t *s) {
    char path[4096];
    const char *dir = s->cfg->data_dir ? s->cfg->data_dir : ".";
    if (snprintf(path, sizeof path, "%s/member/snapshot-XXXXXX.tmp", dir) >= (int)sizeof path) return -1;
    int fd = mkstemps(path, 4);
    if (fd >= 0) unlink(path);
    return fd;
}

static void start_worker(server_t *s, void *arg, int ok);

static void snapshot_call(grpc_call_t *call, const uint8_t *msg, size_t len, void *ctx) {
    server_t *s = ctx;
    Etcdserverpb__SnapshotRequest *req = etcdserverpb__snapshot_request__unpack(NULL, len, msg);
    if (!req) {
        server_reply_bad_request(call);
        return;
    }
    etcdserverpb__snapshot_request__free_unpacked(req, NULL);
    const char *err = NULL;
    grpc_status_t st = auth_check_admin_maintenance(s, call, &err);
    if (st != GRPC_OK) {
        grpc_call_finish(call, st, err);
        return;
    }
    if (atomic_fetch_add(&workers, 1) >= MAX_WORKERS) {
        atomic_fetch_sub(&workers, 1);
        grpc_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
        return;
    }
    snap_job_t *j = calloc(1, sizeof *j);
    int fd = j ? temp_file(s) : -1;
    if (fd < 0) {
        atomic_fetch_sub(&workers, 1);
        log_error("snapshot: cannot create a temporary file under %s/member: %s", s->cfg->data_dir,
                  strerror(errno));
        free(j);
        grpc_call_finish(call, GRPC_INTERNAL, "kshim: cannot create the snapshot file");
        return;
    }
    j->s = s;
    j->loop = s->loop;
    j->call = call;
    j->fd = fd;
    grpc_call_ref(call);
    pthread_mutex_lock(&jobs_mu);
    j->next = jobs;
    if (jobs) jobs->prev = j;
    jobs = j;
    pthread_mutex_unlock(&jobs_mu);
    j->is_waiting = 1;
    atomic_fetch_add(&waiting, 1);
    server_when_written(s, &j->written, start_worker, j);
}

/* Loop: the store holds every write answered before the call (ok), or the
 * member is stopping (after svc_snapshot_stop). */
static void start_worker(server_t *s, void *arg, int ok) {
    (void)s;
    snap_job_t *j = arg;
    j->is_waiting = 0;
    atomic_fetch_sub(&waiting, 1);
    if (!ok || grpc_call_is_closed(j->call)) {
        atomic_fetch_sub(&workers, 1);
        job_free(j);
        return;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, job_thread, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        atomic_fetch_sub(&workers, 1);
        grpc_call_finish(j->call, GRPC_INTERNAL, "kshim: cannot start the snapshot thread");
        job_free(j);
    }
}

static grpc_method_t snapshot_method = {
    .path = "/etcdserverpb.Maintenance/Snapshot",
    .server_streaming = 1,
    .on_message = snapshot_call,
};

void svc_snapshot_register(server_t *s) {
    snapshot_method.ctx = s;
    grpc_server_register(s->grpc, &snapshot_method);
}

void svc_snapshot_stop(server_t *s) {
    atomic_store(&stopping, 1);
    /* each worker stops at its next page; a job still waiting for the
     * store has none, and server_written_stop (later in shutdown) ends it */
    while (atomic_load(&workers) > atomic_load(&waiting)) usleep(10000);
    for (;;) {
        pthread_mutex_lock(&jobs_mu);
        snap_job_t *j = jobs;
        while (j && j->is_waiting) j = j->next;
        pthread_mutex_unlock(&jobs_mu);
        if (!j) break;
        if (j->timer) loop_timer_cancel(s->loop, j->timer);
        job_free(j);
    }
    atomic_store(&stopping, 0);
}
