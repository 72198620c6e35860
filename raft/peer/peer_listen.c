/*
 * peer_listen.c: the receiving side of the peer transport.
 *
 * Owns: the listener thread (poll over every listen socket, accept) and the
 * reader threads, one per inbound connection, at most PEER_MAX_READERS
 * (past that an accepted connection is closed at once). A reader runs the
 * TLS handshake and HELLO (cluster id check: 0 on either side is accepted
 * and learned, a mismatch answered with status MISMATCH and closed), then
 * serves the connection's purpose: a stream of RAFT/APP frames (on_raft,
 * on_app; a newer stream from the same member replaces an older one), one
 * incoming snapshot (on_snapshot_begin/chunk/end, chunk by chunk, checked
 * against the stream's crc32c at the end, answered with SNAP_ACK), one
 * member list request (on_members_request), or one request of the member
 * layer (on_request, answered with one RESPONSE frame). A frame that fails its checksum
 * or decoding closes the connection and is counted in the sender's stats.
 * A connection refused in TLS or HELLO is logged as etcd logs it ("rejected
 * connection from ..."), rate-limited per remote host and reason.
 */
#include "peer_internal.h"

#include "crc32c.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- one inbound connection ---- */

/* What the acceptor answers to a HELLO. */
static uint8_t hello_verdict(peer_transport_t *t, const peer_hello_t *h) {
    if (h->version != PEER_VERSION) return PEER_H_VERSION;
    if (h->purpose < PEER_P_STREAM || h->purpose > PEER_P_REQUEST) return PEER_H_PURPOSE;
    if (h->purpose != PEER_P_MEMBERS && (h->from == 0 || h->to != t->self_id)) return PEER_H_WRONG_TO;
    if (peer_cluster_check(t, h->cluster_id) != PEER_OK) return PEER_H_MISMATCH;
    if (h->purpose != PEER_P_MEMBERS && peer_is_removed(t, h->from)) return PEER_H_REMOVED;
    return PEER_H_OK;
}

/* Reads the dialer's HELLO and answers it. PEER_ERR_REFUSED: the dialer
 * refused our certificate (its HELLO says BAD_CERT; nothing is answered). */
static int hello_server(peer_transport_t *t, peer_conn_t *c, peer_hello_t *h, int cert_refused) {
    uint8_t kind, *in = NULL, out[PEER_HELLO_LEN];
    size_t cap = 0, len;
    int rc = peer_conn_read_frame(c, PEER_HELLO_LEN, &kind, &in, &cap, &len);
    if (rc == PEER_OK && (kind != PEER_F_HELLO || peer_hello_decode(in, len, h) != PEER_OK))
        rc = PEER_ERR_INVALID;
    free(in);
    if (rc != PEER_OK) return rc;
    if (h->status == PEER_H_BAD_CERT) return PEER_ERR_REFUSED;
    uint8_t status = cert_refused ? PEER_H_BAD_CERT : hello_verdict(t, h);
    peer_hello_t reply = {PEER_VERSION, h->purpose, status, atomic_load(&t->cluster_id), t->self_id, h->from};
    peer_hello_encode(&reply, out);
    if (peer_conn_write_frame(c, PEER_F_HELLO, out, sizeof out) != PEER_OK) return PEER_ERR_IO;
    if (status == PEER_H_OK) return PEER_OK;
    if (status == PEER_H_MISMATCH) return PEER_ERR_MISMATCH;
    return status == PEER_H_REMOVED ? PEER_ERR_REMOVED : PEER_ERR_INVALID;
}

/* One RAFT or APP frame of a stream from `from`. */
static int stream_frame(peer_transport_t *t, uint64_t from, uint8_t kind, const uint8_t *p, size_t n) {
    if (kind == PEER_F_RAFT) {
        raft_msg_t m;
        void *scratch = NULL;
        int rc = peer_decode_raft(p, n, &m, &scratch);
        if (rc != PEER_OK) return rc;
        /* A member speaks only for itself, to us. */
        if (m.from != from || m.to != t->self_id || m.type == RAFT_MSG_SNAP)
            rc = PEER_ERR_INVALID;
        else if (t->cfg.on_raft)
            t->cfg.on_raft(t->cfg.ctx, &m);
        free(scratch);
        return rc;
    }
    if (kind == PEER_F_APP) {
        uint8_t app;
        const uint8_t *data;
        size_t len;
        if (peer_app_decode(p, n, &app, &data, &len) != PEER_OK) return PEER_ERR_INVALID;
        if (t->cfg.on_app) t->cfg.on_app(t->cfg.ctx, from, app, data, len);
        return PEER_OK;
    }
    return PEER_ERR_INVALID;
}

/* Closes every other stream from the same member (it reconnected). */
static void replace_streams(peer_transport_t *t, peer_reader_t *self) {
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < PEER_MAX_READERS; i++) {
        peer_reader_t *r = &t->readers[i];
        if (r != self && r->used && !r->done && r->purpose == PEER_P_STREAM && r->from == self->from)
            peer_conn_shutdown(r->conn);
    }
    pthread_mutex_unlock(&t->lock);
}

void peer_readers_close_from(peer_transport_t *t, uint64_t id) {
    for (int i = 0; i < PEER_MAX_READERS; i++) {
        peer_reader_t *r = &t->readers[i];
        if (r->used && !r->done && r->purpose != PEER_P_MEMBERS && r->from == id) peer_conn_shutdown(r->conn);
    }
}

static void serve_stream(peer_transport_t *t, peer_conn_t *c, uint64_t from) {
    uint8_t kind, *buf = NULL;
    size_t cap = 0, len;
    peer_conn_set_timeouts(c, 0, PEER_WRITE_TIMEOUT_MS);
    for (;;) {
        int rc = peer_conn_read_frame(c, PEER_MAX_FRAME - 1, &kind, &buf, &cap, &len);
        if (rc == PEER_OK) rc = stream_frame(t, from, kind, buf, len);
        if (rc == PEER_ERR_INVALID) peer_count_received(t, from, 0, 1);
        if (rc != PEER_OK) break;
        peer_count_received(t, from, PEER_FRAME_HEADER + len, 0);
        if (cap > (1u << 20)) { /* a big frame does not keep its buffer */
            free(buf);
            buf = NULL;
            cap = 0;
        }
    }
    free(buf);
}

static void send_ack(peer_conn_t *c, int ok) {
    uint8_t b = ok ? 1 : 0;
    peer_conn_write_frame(c, PEER_F_SNAP_ACK, &b, 1);
}

/* After SNAP_BEGIN: chunks into the sink until SNAP_END. 1 ok, 0 not. */
static int receive_chunks(peer_transport_t *t, peer_conn_t *c, peer_snapshot_sink_t *sink, uint64_t from) {
    uint8_t kind, *buf = NULL;
    size_t cap = 0, len;
    uint64_t total = 0, want_total;
    uint32_t crc = 0, want_crc;
    int ok = 0;
    for (;;) {
        int rc = peer_conn_read_frame(c, PEER_SNAP_CHUNK, &kind, &buf, &cap, &len);
        if (rc == PEER_ERR_INVALID) peer_count_received(t, from, 0, 1);
        if (rc != PEER_OK) break;
        peer_count_received(t, from, PEER_FRAME_HEADER + len, 0);
        if (kind == PEER_F_SNAP_CHUNK) {
            crc = crc32c(crc, buf, len);
            total += len;
            if (t->cfg.on_snapshot_chunk && t->cfg.on_snapshot_chunk(t->cfg.ctx, sink, buf, len) != 0) break;
            continue;
        }
        if (kind == PEER_F_SNAP_END && peer_snap_end_decode(buf, len, &want_total, &want_crc) == PEER_OK)
            ok = want_total == total && want_crc == crc;
        break;
    }
    free(buf);
    return ok;
}

static void serve_snapshot(peer_transport_t *t, peer_conn_t *c, uint64_t from) {
    uint8_t kind, *buf = NULL;
    size_t cap = 0, len;
    peer_conn_set_timeouts(c, PEER_SNAP_TIMEOUT_MS, PEER_WRITE_TIMEOUT_MS);
    int rc = peer_conn_read_frame(c, PEER_MAX_FRAME - 1, &kind, &buf, &cap, &len);
    raft_msg_t m;
    void *scratch = NULL;
    if (rc == PEER_OK && (kind != PEER_F_SNAP_BEGIN || peer_decode_raft(buf, len, &m, &scratch) != PEER_OK ||
                          m.type != RAFT_MSG_SNAP || m.from != from || m.to != t->self_id))
        rc = PEER_ERR_INVALID;
    if (rc == PEER_ERR_INVALID) peer_count_received(t, from, 0, 1);
    if (rc != PEER_OK) {
        free(scratch);
        free(buf);
        return;
    }
    peer_count_received(t, from, PEER_FRAME_HEADER + len, 0);
    peer_snapshot_sink_t *sink = t->cfg.on_snapshot_begin ? t->cfg.on_snapshot_begin(t->cfg.ctx, &m) : NULL;
    free(scratch);
    free(buf);
    if (!sink) {
        send_ack(c, 0);
        return;
    }
    int ok = receive_chunks(t, c, sink, from);
    if (t->cfg.on_snapshot_end) t->cfg.on_snapshot_end(t->cfg.ctx, sink, ok);
    send_ack(c, ok);
}

static void serve_members(peer_transport_t *t, peer_conn_t *c) {
    uint8_t *list = NULL;
    size_t list_len = 0, len;
    int rc = t->cfg.on_members_request ? t->cfg.on_members_request(t->cfg.ctx, &list, &list_len) : -1;
    uint8_t *p = peer_members_encode(rc == 0 ? 0 : 1, atomic_load(&t->cluster_id), rc == 0 ? list : NULL,
                                     rc == 0 ? list_len : 0, &len);
    if (p) peer_conn_write_frame(c, PEER_F_MEMBERS, p, len);
    free(p);
    free(list);
}

/* A refused connection, in etcd's words (embed: "rejected connection from
 * "IP:port" (error "...")"), at most once per REJECT_LOG_MS for the same
 * remote host and reason (a refused peer redials every second or so). */
static void log_rejected(peer_transport_t *t, peer_conn_t *c, const char *why) {
    char from[80];
    peer_conn_remote(c, from, sizeof from);
    char *port = strrchr(from, ':');
    uint32_t key = crc32c(0, (const uint8_t *)from, port ? (size_t)(port - from) : strlen(from));
    key = crc32c(key, (const uint8_t *)why, strlen(why));
    uint64_t now = peer_now_ms();
    int log = 1;
    pthread_mutex_lock(&t->lock);
    peer_reject_log_t *slot = &t->reject_log[0];
    for (int i = 0; i < PEER_REJECT_LOG_SLOTS; i++) {
        peer_reject_log_t *e = &t->reject_log[i];
        if (e->at_ms && e->key == key) {
            slot = e;
            log = now - e->at_ms >= PEER_REJECT_LOG_MS;
            break;
        }
        if (e->at_ms < slot->at_ms) slot = e; /* else the oldest entry goes */
    }
    if (log) *slot = (peer_reject_log_t){key, now};
    pthread_mutex_unlock(&t->lock);
    if (log) fprintf(stderr, "peer: rejected connection from \"%s\" (error \"%s\")\n", from, why);
}

/* TLS, then HELLO. A certificate the TLS handshake verified but
 * --peer-cert-allowed-cn (or -hostname) refuses: the dialer is told so in
 * the HELLO answer, where etcd's TLS stack sends a bad_certificate alert;
 * likewise the dialer's HELLO says when it refused ours. */
static int handshake(peer_transport_t *t, peer_reader_t *r, peer_conn_t *c, peer_hello_t *h) {
    char err[256] = "";
    int rc = r->tls ? peer_conn_server_tls(c, t->server_tls, err, sizeof err) : PEER_OK;
    if (rc == PEER_ERR_IO) {
        log_rejected(t, c, err);
        return rc;
    }
    int refused = rc == PEER_ERR_REFUSED;
    rc = hello_server(t, c, h, refused);
    /* Both sides refusing: Go's dialer checks the listener's certificate
     * before it shows its own, so etcd's listener logs the dialer's alert. */
    if (rc == PEER_ERR_REFUSED)
        log_rejected(t, c, "remote error: tls: bad certificate");
    else if (refused)
        log_rejected(t, c, err);
    else if (rc == PEER_ERR_REMOVED) {
        snprintf(err, sizeof err, "peer %016llx was removed from the cluster", (unsigned long long)h->from);
        log_rejected(t, c, err);
    }
    return refused ? PEER_ERR_REFUSED : rc;
}

/* One REQUEST frame, answered with one RESPONSE frame. The handler may take
 * a while (a hash of the whole store): the reads wait for the request and
 * the dialer waits for the answer with its own timeout. */
static void serve_request(peer_transport_t *t, peer_conn_t *c, uint64_t from) {
    uint8_t kind, *buf = NULL, *answer = NULL;
    size_t cap = 0, len, answer_len = 0;
    int rc = peer_conn_read_frame(c, PEER_MAX_FRAME - 1, &kind, &buf, &cap, &len);
    if (rc == PEER_OK && (kind != PEER_F_REQUEST || len < 1)) rc = PEER_ERR_INVALID;
    if (rc == PEER_ERR_INVALID) peer_count_received(t, from, 0, 1);
    if (rc != PEER_OK) {
        free(buf);
        return;
    }
    peer_count_received(t, from, PEER_FRAME_HEADER + len, 0);
    int ok = t->cfg.on_request &&
             t->cfg.on_request(t->cfg.ctx, from, buf[0], buf + 1, len - 1, &answer, &answer_len) == 0;
    free(buf);
    if (!ok) answer_len = 0;
    uint8_t *p = malloc(1 + answer_len);
    if (p) {
        p[0] = ok ? 0 : 1;
        if (answer_len) memcpy(p + 1, answer, answer_len);
        peer_conn_write_frame(c, PEER_F_RESPONSE, p, 1 + answer_len);
    }
    free(p);
    free(answer);
}

static void *reader_main(void *arg) {
    peer_reader_t *r = arg;
    peer_transport_t *t = r->t;
    peer_conn_t *c = r->conn;
    peer_hello_t h;
    int rc = handshake(t, r, c, &h);
    if (rc == PEER_OK) {
        pthread_mutex_lock(&t->lock);
        r->purpose = h.purpose;
        r->from = h.from;
        r->deadline_ms = 0;
        /* removed between the HELLO check and here: peer_readers_close_from
         * did not see this reader yet; it redials and hears REMOVED */
        if (h.purpose != PEER_P_MEMBERS && peer_is_removed_locked(t, h.from)) rc = PEER_ERR_REMOVED;
        pthread_mutex_unlock(&t->lock);
    }
    if (rc == PEER_OK) {
        if (h.purpose == PEER_P_STREAM) {
            replace_streams(t, r);
            serve_stream(t, c, h.from);
        } else if (h.purpose == PEER_P_SNAPSHOT) {
            serve_snapshot(t, c, h.from);
        } else if (h.purpose == PEER_P_REQUEST) {
            serve_request(t, c, h.from);
        } else {
            serve_members(t, c);
        }
    }
    pthread_mutex_lock(&t->lock);
    r->conn = NULL;
    r->done = 1;
    pthread_mutex_unlock(&t->lock);
    peer_conn_free(c);
    peer_tls_thread_cleanup();
    return NULL;
}

/* ---- the listener ---- */

/* Joins finished readers (t->lock held). */
static void reap_readers(peer_transport_t *t) {
    for (int i = 0; i < PEER_MAX_READERS; i++) {
        peer_reader_t *r = &t->readers[i];
        if (!r->used || !r->done) continue;
        pthread_join(r->thread, NULL);
        memset(r, 0, sizeof(*r));
    }
}

static void start_reader(peer_transport_t *t, int fd, int tls) {
    pthread_mutex_lock(&t->lock);
    reap_readers(t);
    peer_reader_t *r = NULL;
    for (int i = 0; i < PEER_MAX_READERS && !r; i++)
        if (!t->readers[i].used) r = &t->readers[i];
    peer_conn_t *c = r && !t->stopping ? peer_conn_wrap(fd, PEER_HANDSHAKE_TIMEOUT_MS) : NULL;
    if (!c) {
        if (!r || t->stopping) close(fd);
        t->refused_conns++;
        pthread_mutex_unlock(&t->lock);
        return;
    }
    *r = (peer_reader_t){
        .t = t, .used = 1, .tls = tls, .conn = c, .deadline_ms = peer_now_ms() + PEER_HANDSHAKE_TIMEOUT_MS};
    if (peer_thread_start(&r->thread, reader_main, r) != 0) {
        memset(r, 0, sizeof(*r));
        peer_conn_free(c);
    }
    pthread_mutex_unlock(&t->lock);
}

/* Closes connections still in TLS or HELLO past their deadline (a peer
 * trickling bytes would otherwise hold a reader for as long as it likes).
 * Returns whether any connection is still in its handshake. */
static int expire_handshakes(peer_transport_t *t) {
    uint64_t now = peer_now_ms();
    int pending = 0;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < PEER_MAX_READERS; i++) {
        peer_reader_t *r = &t->readers[i];
        if (!r->used || r->done || !r->deadline_ms) continue;
        if (now >= r->deadline_ms) {
            peer_conn_shutdown(r->conn);
            r->deadline_ms = 0;
        } else {
            pending = 1;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return pending;
}

static void *listener_main(void *arg) {
    peer_transport_t *t = arg;
    struct pollfd pf[PEER_MAX_URLS + 1];
    for (;;) {
        pf[0] = (struct pollfd){t->wake_fd, POLLIN, 0};
        for (int i = 0; i < t->n_listen; i++) pf[i + 1] = (struct pollfd){t->listen_fd[i], POLLIN, 0};
        int n = poll(pf, (nfds_t)t->n_listen + 1, expire_handshakes(t) ? 250 : -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || pf[0].revents) break;
        for (int i = 0; i < t->n_listen; i++) {
            if (!pf[i + 1].revents) continue;
            int fd = accept4(t->listen_fd[i], NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                start_reader(t, fd, t->listen_tls[i]);
            else if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                usleep(10000); /* out of descriptors: do not spin on the pending connection */
        }
    }
    return NULL;
}

int peer_listener_start(peer_transport_t *t, char *err, size_t errlen) {
    t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (t->wake_fd < 0 || peer_thread_start(&t->listener, listener_main, t) != 0) {
        snprintf(err, errlen, "cannot start the peer listener");
        return -1;
    }
    t->listener_started = 1;
    return 0;
}

void peer_listener_stop(peer_transport_t *t) {
    if (t->listener_started) {
        uint64_t one = 1;
        ssize_t w = write(t->wake_fd, &one, sizeof one);
        (void)w;
        pthread_join(t->listener, NULL);
        t->listener_started = 0;
    }
    if (t->wake_fd >= 0) close(t->wake_fd);
    t->wake_fd = -1;
}

void peer_readers_stop(peer_transport_t *t) {
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < PEER_MAX_READERS; i++)
        if (t->readers[i].used) peer_conn_shutdown(t->readers[i].conn);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < PEER_MAX_READERS; i++) {
        if (!t->readers[i].used) continue;
        pthread_join(t->readers[i].thread, NULL);
        memset(&t->readers[i], 0, sizeof t->readers[i]);
    }
}
