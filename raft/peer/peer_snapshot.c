/*
 * peer_snapshot.c: outgoing snapshot streams and peer_fetch_members (peer.h).
 *
 * Owns: the streamer thread of a peer's outgoing snapshot (at most one per
 * peer): its own connection (HELLO purpose SNAPSHOT), the SNAP_BEGIN frame
 * (the RAFT_MSG_SNAP, encoded when the stream was asked for), then chunks of
 * PEER_SNAP_CHUNK bytes read through the caller's read() into one buffer
 * (never the whole snapshot), SNAP_END with the byte count and the crc32c of
 * everything sent, and the receiver's SNAP_ACK; done(ok) reports it. And the
 * blocking one-shot member list request of a joining member.
 */
#include "peer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

static int stopping(peer_node_t *p) {
    pthread_mutex_lock(&p->lock);
    int s = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return s;
}

static void count_sent(peer_node_t *p, size_t bytes) {
    pthread_mutex_lock(&p->lock);
    p->stats.sent_bytes += bytes;
    p->stats.sent_frames++;
    pthread_mutex_unlock(&p->lock);
}

static int read_ack(peer_conn_t *c) {
    uint8_t kind, *buf = NULL;
    size_t cap = 0, len;
    int ok = peer_conn_read_frame(c, 1, &kind, &buf, &cap, &len) == PEER_OK && kind == PEER_F_SNAP_ACK &&
             len == 1 && buf[0] == 1;
    free(buf);
    return ok;
}

/* Everything after HELLO; 1 when the receiver acknowledged the whole stream. */
static int stream_snapshot(peer_node_t *p, peer_conn_t *c) {
    if (peer_conn_write(c, p->snap_begin, p->snap_begin_len) != PEER_OK) return 0;
    count_sent(p, p->snap_begin_len);
    uint8_t *buf = malloc(PEER_SNAP_CHUNK), end[12];
    uint64_t total = 0;
    uint32_t crc = 0;
    int ok = buf != NULL;
    while (ok) {
        if (stopping(p)) {
            ok = 0;
            break;
        }
        long n = p->snap_read(p->snap_read_ctx, buf, PEER_SNAP_CHUNK);
        if (n < 0 || (size_t)n > PEER_SNAP_CHUNK) ok = 0;
        if (n <= 0 || !ok) break;
        crc = crc32c(crc, buf, (size_t)n);
        total += (uint64_t)n;
        ok = peer_conn_write_frame(c, PEER_F_SNAP_CHUNK, buf, (size_t)n) == PEER_OK;
        if (ok) count_sent(p, PEER_FRAME_HEADER + (size_t)n);
    }
    free(buf);
    if (!ok) return 0;
    peer_snap_end_encode(total, crc, end);
    if (peer_conn_write_frame(c, PEER_F_SNAP_END, end, sizeof end) != PEER_OK) return 0;
    count_sent(p, PEER_FRAME_HEADER + sizeof end);
    return read_ack(c);
}

void *peer_snapshot_main(void *arg) {
    peer_node_t *p = arg;
    char err[256] = "";
    int ok = 0;
    if (peer_dial(p->t, p, PEER_P_SNAPSHOT, &p->snap_conn, err, sizeof err) == PEER_OK) {
        pthread_mutex_lock(&p->lock);
        peer_conn_t *c = p->snap_conn;
        pthread_mutex_unlock(&p->lock);
        peer_conn_set_timeouts(c, PEER_SNAP_TIMEOUT_MS, PEER_SNAP_TIMEOUT_MS);
        ok = stream_snapshot(p, c);
    }
    if (p->snap_done) p->snap_done(p->snap_read_ctx, p->id, ok);
    pthread_mutex_lock(&p->lock);
    peer_conn_t *c = p->snap_conn;
    p->snap_conn = NULL;
    free(p->snap_begin);
    p->snap_begin = NULL;
    p->snap_running = 0;
    pthread_mutex_unlock(&p->lock);
    peer_conn_free(c);
    peer_tls_thread_cleanup();
    return NULL;
}

int peer_send_snapshot(peer_transport_t *t, const raft_msg_t *m,
                       long (*read)(void *read_ctx, uint8_t *buf, size_t cap), void *read_ctx,
                       void (*done)(void *read_ctx, uint64_t to, int ok)) {
    if (!t || !m || !read || m->type != RAFT_MSG_SNAP || m->from != t->self_id) return PEER_ERR_INVALID;
    uint8_t *frame;
    size_t len;
    int rc = peer_encode_raft_frame(m, PEER_F_SNAP_BEGIN, 0, &frame, &len);
    if (rc != PEER_OK) return rc;
    pthread_mutex_lock(&t->lock);
    peer_node_t *p = peer_find_locked(t, m->to);
    if (!p) rc = PEER_ERR_UNKNOWN;
    if (p) {
        pthread_mutex_lock(&p->lock);
        if (p->snap_running || p->stopping) {
            rc = p->stopping ? PEER_ERR_UNKNOWN : PEER_ERR_FULL;
        } else {
            /* The previous stream's thread has finished (running is
             * cleared last): joining it is immediate. */
            if (p->snap_started) pthread_join(p->snap_thread, NULL);
            p->snap_started = 0;
            p->snap_begin = frame;
            p->snap_begin_len = len;
            p->snap_read = read;
            p->snap_read_ctx = read_ctx;
            p->snap_done = done;
            frame = NULL;
            if (peer_thread_start(&p->snap_thread, peer_snapshot_main, p) != 0) {
                frame = p->snap_begin;
                p->snap_begin = NULL;
                rc = PEER_ERR_NOMEM;
            } else {
                p->snap_started = p->snap_running = 1;
            }
        }
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&t->lock);
    free(frame);
    return rc;
}

int peer_snapshot_running(peer_transport_t *t, uint64_t id) {
    if (!t) return 0;
    int running = 0;
    pthread_mutex_lock(&t->lock);
    peer_node_t *p = peer_find_locked(t, id);
    if (p) {
        pthread_mutex_lock(&p->lock);
        running = p->snap_running;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return running;
}

/* ---- peer_fetch_members ---- */

/* One URL; *out on success. */
static int fetch_one(const char *url, peer_tls_ctx_t **ctx, const peer_tls_t *tls, unsigned timeout_ms,
                     uint64_t *cluster_id, uint8_t **out, size_t *out_len, char *err, size_t errlen) {
    peer_url_t u;
    if (peer_url_parse(url, &u) != PEER_OK) {
        snprintf(err, errlen, "bad peer URL %s", url ? url : "(null)");
        return PEER_ERR_INVALID;
    }
    static const peer_tls_t none;
    if (u.tls && !*ctx && !(*ctx = peer_tls_ctx_new(tls ? tls : &none, 0, err, errlen)))
        return PEER_ERR_INVALID;
    peer_conn_t *c = peer_conn_dial(&u, timeout_ms, -1, err, errlen);
    if (!c) return PEER_ERR_IO;
    int rc = u.tls ? peer_conn_client_tls(c, &u, *ctx, err, errlen) : PEER_OK;
    if (rc == PEER_ERR_REFUSED) peer_hello_refuse(c, PEER_P_MEMBERS, 0, 0);
    uint64_t cid = 0;
    if (rc == PEER_OK && (rc = peer_hello_client(c, PEER_P_MEMBERS, 0, 0, 0, &cid)) != PEER_OK)
        snprintf(err, errlen, "%s: peer handshake failed", url);
    uint8_t kind, *buf = NULL, status;
    size_t cap = 0, len, dlen;
    const uint8_t *data;
    if (rc == PEER_OK) {
        rc = peer_conn_read_frame(c, PEER_MAX_FRAME - 1, &kind, &buf, &cap, &len);
        if (rc == PEER_OK &&
            (kind != PEER_F_MEMBERS ||
             peer_members_decode(buf, len, &status, &cid, &data, &dlen) != PEER_OK || status))
            rc = PEER_ERR_IO;
        if (rc != PEER_OK) snprintf(err, errlen, "%s: no member list", url);
    }
    if (rc == PEER_OK) {
        *out = malloc(dlen ? dlen : 1);
        if (!*out)
            rc = PEER_ERR_NOMEM;
        else if (dlen)
            memcpy(*out, data, dlen);
        *out_len = dlen;
        *cluster_id = cid;
    }
    free(buf);
    peer_conn_free(c);
    return rc;
}

int peer_fetch_members(const peer_tls_t *tls, const char *const *urls, size_t n, unsigned timeout_ms,
                       uint64_t *cluster_id, uint8_t **out, size_t *out_len, char *err, size_t errlen) {
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!urls || n == 0 || !cluster_id || !out || !out_len) {
        snprintf(err, errlen, "peer_fetch_members: bad arguments");
        return PEER_ERR_INVALID;
    }
    *out = NULL;
    *out_len = 0;
    peer_tls_ctx_t *ctx = NULL;
    uint64_t deadline = peer_now_ms() + timeout_ms;
    int rc = PEER_ERR_IO;
    for (size_t i = 0; i < n; i++) {
        uint64_t now = peer_now_ms();
        if (now >= deadline) {
            rc = PEER_ERR_TIMEOUT;
            break;
        }
        /* Each URL gets its share of what is left (at least 1 s), so one
         * that never answers does not use up the time of the others. */
        uint64_t left = deadline - now, share = left / (n - i);
        if (share < 1000) share = left < 1000 ? left : 1000;
        rc = fetch_one(urls[i], &ctx, tls, (unsigned)share, cluster_id, out, out_len, err, errlen);
        if (rc == PEER_OK) break;
    }
    if (rc == PEER_ERR_IO && peer_now_ms() >= deadline) rc = PEER_ERR_TIMEOUT;
    peer_tls_ctx_free(ctx);
    peer_tls_thread_cleanup();
    return rc;
}
