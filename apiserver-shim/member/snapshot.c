/*
 * snapshot.c: the member's Raft snapshots, receive and install side and the
 * outgoing stream's reader (see snapshot.h; server_send_snapshot, which
 * needs the peer transport, is snapshot_send.c). Owns the receive state
 * (server_t.snapshot): the import being written, the MsgSnap it came with,
 * and the staged copy waiting for the node's install.
 */
#include "snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mvcc_snapshot.h"

/* How long the apply thread waits for the loop to run the reload hooks. */
#define RELOAD_WAIT_S 60

struct peer_snapshot_sink {
    struct server_snapshot *snap;
};

typedef struct server_snapshot {
    pthread_mutex_t mu; /* receive state; held across an install */
    pthread_cond_t cv;  /* the reload hooks ran */
    struct peer_snapshot_sink sink;
    mvcc_snap_writer_t *writer; /* a stream being received */
    raft_msg_t msg;             /* its MsgSnap (deep copy) */
    raft_snapshot_meta_t meta;
    uint64_t *members; /* voters then learners of meta */
    int staged;        /* a verified copy waits beside the store */
    uint64_t staged_index;
    int reload_done, reload_rc;
    int loop_serves; /* the loop runs posted work (server_snapshot_loop_serves) */
} server_snapshot_t;

static server_snapshot_t *snapshot_state(server_t *s) {
    static pthread_mutex_t create_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&create_mu);
    if (!s->snapshot) {
        server_snapshot_t *st = calloc(1, sizeof *st);
        if (st) {
            pthread_mutex_init(&st->mu, NULL);
            pthread_cond_init(&st->cv, NULL);
            st->sink.snap = st;
            s->snapshot = st;
        }
    }
    pthread_mutex_unlock(&create_mu);
    return s->snapshot;
}

void server_snapshot_free(server_t *s) {
    server_snapshot_t *st = s->snapshot;
    if (!st) return;
    if (st->writer) mvcc_snap_writer_abort(st->writer);
    free(st->members);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
    s->snapshot = NULL;
}

/* ---- the outgoing stream ---- */

struct server_snapshot_stream {
    server_t *s;
    uint64_t to;
    mvcc_snap_reader_t *reader;
};

server_snapshot_stream_t *server_snapshot_stream_new(server_t *s, uint64_t to, uint64_t index) {
    server_snapshot_stream_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->s = s;
    st->to = to;
    if (mvcc_snapshot_export(s->mvcc, &st->reader) != MVCC_OK) {
        log_error("snapshot for %016llx: cannot read the store", (unsigned long long)to);
        free(st);
        return NULL;
    }
    /* Any applied index at or above the snapshot's will do (apply is
     * idempotent by index); below it the follower would miss entries. */
    if (mvcc_snap_reader_index(st->reader) < index) {
        log_error("snapshot for %016llx: the store is at index %llu, the snapshot at %llu",
                  (unsigned long long)to, (unsigned long long)mvcc_snap_reader_index(st->reader),
                  (unsigned long long)index);
        mvcc_snap_reader_free(st->reader);
        free(st);
        return NULL;
    }
    return st;
}

long server_snapshot_stream_read(void *stream, uint8_t *buf, size_t cap) {
    server_snapshot_stream_t *st = stream;
    return mvcc_snap_reader_read(st->reader, buf, cap);
}

void server_snapshot_stream_done(void *stream, uint64_t to, int ok) {
    server_snapshot_stream_t *st = stream;
    log_info("snapshot at index %llu to %016llx: %s", (unsigned long long)mvcc_snap_reader_index(st->reader),
             (unsigned long long)to, ok ? "sent" : "failed");
    if (st->s->raft) raft_node_report_snapshot(st->s->raft, to, ok);
    mvcc_snap_reader_free(st->reader);
    free(st);
}

/* ---- receiving ---- */

/* Deep copy of the MsgSnap (its meta arrays belong to the transport). */
static int keep_msg(server_snapshot_t *st, const raft_msg_t *m) {
    const raft_snapshot_meta_t *sm = m->snapshot;
    size_t n = sm->n_voters + sm->n_learners;
    if (n > RAFT_MAX_MEMBERS) return -1;
    uint64_t *members = malloc((n ? n : 1) * sizeof *members);
    if (!members) return -1;
    if (sm->n_voters) memcpy(members, sm->voters, sm->n_voters * sizeof *members);
    if (sm->n_learners) memcpy(members + sm->n_voters, sm->learners, sm->n_learners * sizeof *members);
    free(st->members);
    st->members = members;
    st->meta = *sm;
    st->meta.voters = members;
    st->meta.learners = members + sm->n_voters;
    st->msg = *m;
    st->msg.entries = NULL;
    st->msg.n_entries = 0;
    st->msg.snapshot = &st->meta;
    return 0;
}

peer_snapshot_sink_t *server_snapshot_begin(void *ctx, const raft_msg_t *m) {
    server_t *s = ctx;
    server_snapshot_t *st = snapshot_state(s);
    if (!st || !m || m->type != RAFT_MSG_SNAP || !m->snapshot) return NULL;
    pthread_mutex_lock(&st->mu);
    peer_snapshot_sink_t *sink = NULL;
    char err[256] = "";
    if (st->writer) {
        log_error("snapshot from %016llx refused: another one is being received",
                  (unsigned long long)m->from);
    } else if (keep_msg(st, m) == 0 &&
               mvcc_snapshot_import(s->mvcc, &st->writer, err, sizeof err) == MVCC_OK) {
        /* An older staged copy stays installable until this one is complete:
         * the node may be about to install it. */
        sink = &st->sink;
        log_info("receiving a snapshot at index %llu term %llu from %016llx",
                 (unsigned long long)m->snapshot->index, (unsigned long long)m->snapshot->term,
                 (unsigned long long)m->from);
    } else {
        log_error("snapshot from %016llx refused: %s", (unsigned long long)m->from,
                  err[0] ? err : "out of memory");
        st->writer = NULL;
    }
    pthread_mutex_unlock(&st->mu);
    return sink;
}

int server_snapshot_chunk(void *ctx, peer_snapshot_sink_t *sink, const uint8_t *data, size_t len) {
    (void)ctx;
    server_snapshot_t *st = sink->snap;
    pthread_mutex_lock(&st->mu);
    int rc = st->writer && mvcc_snap_writer_write(st->writer, data, len) == MVCC_OK ? 0 : -1;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

void server_snapshot_end(void *ctx, peer_snapshot_sink_t *sink, int ok) {
    server_t *s = ctx;
    server_snapshot_t *st = sink->snap;
    pthread_mutex_lock(&st->mu);
    mvcc_snap_writer_t *w = st->writer;
    st->writer = NULL;
    int staged = 0;
    uint64_t index = 0;
    if (w && (!ok || (st->staged && mvcc_snap_writer_index(w) < st->staged_index))) {
        mvcc_snap_writer_abort(w); /* broken, or older than the copy staged already */
    } else if (w) {
        int rc = mvcc_snap_writer_finish(w, &index);
        if (rc == MVCC_OK && index >= st->meta.index) {
            staged = 1;
        } else {
            log_error("snapshot from %016llx refused: %s", (unsigned long long)st->msg.from,
                      rc == MVCC_ERR_CORRUPT ? "the stream is corrupt"
                      : rc != MVCC_OK        ? "cannot write the copy"
                                             : "its data is older than its index");
            if (rc == MVCC_OK) mvcc_snapshot_discard(s->mvcc);
            /* A corrupt stream never touched the older staged copy; after
             * any other outcome it may be gone. */
            if (rc != MVCC_ERR_CORRUPT) st->staged = 0;
        }
    }
    if (staged) {
        st->staged = 1;
        st->staged_index = index;
    }
    /* A copy for the step, outside mu (the next begin replaces st->msg, and
     * the node may hold its own locks while it calls install). */
    uint64_t members[RAFT_MAX_MEMBERS];
    raft_snapshot_meta_t meta = st->meta;
    raft_msg_t msg = st->msg;
    memcpy(members, st->members, (meta.n_voters + meta.n_learners) * sizeof *members);
    meta.voters = members;
    meta.learners = members + meta.n_voters;
    msg.snapshot = &meta;
    pthread_mutex_unlock(&st->mu);
    if (staged && s->raft && raft_node_step(s->raft, &msg) != RAFT_NODE_OK)
        log_info("snapshot from %016llx staged but not taken by the node now (the leader sends it again)",
                 (unsigned long long)msg.from);
}

/* ---- install ---- */

/* Loop thread: every reload hook, then wake the apply thread. */
static void run_reload_hooks(void *arg) {
    server_t *s = arg;
    server_snapshot_t *st = s->snapshot;
    int rc = 0;
    for (size_t i = 0; i < s->n_reload_hooks; i++)
        if (s->reload_hooks[i](s) != 0) rc = -1;
    pthread_mutex_lock(&st->mu);
    st->reload_rc = rc;
    st->reload_done = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* Apply thread, under st->mu: the loop runs the hooks; wait for them. Before
 * the loop serves (start-up replay: the main thread waits for the apply
 * thread and runs no loop), the hooks run here. */
static int reload_services(server_t *s, server_snapshot_t *st) {
    st->reload_done = 0;
    if (!s->loop || !st->loop_serves) {
        pthread_mutex_unlock(&st->mu);
        run_reload_hooks(s);
        pthread_mutex_lock(&st->mu);
        return st->reload_rc;
    }
    if (loop_post(s->loop, run_reload_hooks, s) != 0) return -1; /* the loop is stopping */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += RELOAD_WAIT_S;
    while (!st->reload_done)
        if (pthread_cond_timedwait(&st->cv, &st->mu, &until) == ETIMEDOUT) {
            log_error("snapshot install: the services did not reload within %d s", RELOAD_WAIT_S);
            return -1;
        }
    return st->reload_rc;
}

int server_snapshot_loop_serves(server_t *s) {
    server_snapshot_t *st = snapshot_state(s);
    if (!st) return -1;
    pthread_mutex_lock(&st->mu); /* after an install in progress */
    st->loop_serves = 1;
    pthread_mutex_unlock(&st->mu);
    return 0;
}

int server_install_snapshot(void *ctx, const raft_snapshot_meta_t *meta) {
    server_t *s = ctx;
    server_snapshot_t *st = snapshot_state(s);
    if (!st) return -1;
    pthread_mutex_lock(&st->mu);
    int rc = -1;
    char err[512] = "";
    uint64_t on_disk = 0;
    if (!st->staged && mvcc_snapshot_staged_index(s->mvcc, &on_disk) == MVCC_OK) {
        /* Staged before a restart: the WAL recorded the snapshot, the
         * crash came before this install (the node asks again at start). */
        st->staged = 1;
        st->staged_index = on_disk;
    }
    if (!st->staged || st->staged_index < meta->index) {
        log_error("snapshot install at index %llu: no staged copy covers it",
                  (unsigned long long)meta->index);
    } else if (mvcc_snapshot_install(s->mvcc, err, sizeof err) != MVCC_OK) {
        log_error("snapshot install at index %llu: %s", (unsigned long long)meta->index, err);
    } else {
        st->staged = 0;
        log_info("installed the snapshot at index %llu (store applied index %llu, revision %lld)",
                 (unsigned long long)meta->index, (unsigned long long)mvcc_applied_index(s->mvcc),
                 (long long)mvcc_revision(s->mvcc));
        rc = reload_services(s, st);
        if (rc != 0) log_error("snapshot install: a service could not reload from the new store");
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}
