/*
 * peer_request.c: peer_request (peer.h), one blocking request/answer
 * exchange of the member layer with another member.
 *
 * Owns: the asking side of a PEER_P_REQUEST connection: dial one of the
 * peer's URLs, TLS with the transport's client context, HELLO (our id, the
 * peer's id, the cluster id: a member of another cluster is refused as on
 * a stream), one REQUEST frame, one RESPONSE frame, close. A connection of
 * its own per request, so a slow answer (a hash of the whole store) never
 * holds up the Raft stream. The answering side is serve_request in
 * peer_listen.c.
 */
#include "peer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The peer's URLs, copied (they may change meanwhile). */
static int copy_urls(peer_transport_t *t, uint64_t to, peer_url_t *urls, size_t *n) {
    int rc = PEER_ERR_UNKNOWN;
    pthread_mutex_lock(&t->lock);
    for (peer_node_t *p = t->stopping ? NULL : t->peers; p; p = p->next) {
        if (p->id != to) continue;
        pthread_mutex_lock(&p->lock);
        *n = p->n_urls;
        memcpy(urls, p->urls, p->n_urls * sizeof urls[0]);
        pthread_mutex_unlock(&p->lock);
        rc = PEER_OK;
        break;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* Writes the REQUEST frame and reads the RESPONSE frame on c. */
static int exchange(peer_conn_t *c, uint8_t kind, const void *req, size_t len, unsigned timeout_ms,
                    int cancel_fd, uint8_t **out, size_t *out_len) {
    uint8_t *frame = malloc(1 + len);
    if (!frame) return PEER_ERR_NOMEM;
    frame[0] = kind;
    if (len) memcpy(frame + 1, req, len);
    int rc = peer_conn_write_frame(c, PEER_F_REQUEST, frame, 1 + len);
    free(frame);
    if (rc != PEER_OK) return PEER_ERR_IO;
    rc = peer_conn_wait_readable(c, timeout_ms, cancel_fd);
    if (rc != PEER_OK) return rc;
    uint8_t rkind, *buf = NULL;
    size_t cap = 0, n;
    rc = peer_conn_read_frame(c, PEER_MAX_FRAME - 1, &rkind, &buf, &cap, &n);
    if (rc == PEER_OK && (rkind != PEER_F_RESPONSE || n < 1)) rc = PEER_ERR_IO;
    if (rc == PEER_OK && buf[0] != 0) rc = PEER_ERR_REFUSED;
    if (rc == PEER_OK && n > 1) {
        *out = malloc(n - 1);
        if (!*out)
            rc = PEER_ERR_NOMEM;
        else
            memcpy(*out, buf + 1, n - 1);
        *out_len = n - 1;
    }
    free(buf);
    return rc == PEER_ERR_INVALID ? PEER_ERR_IO : rc;
}

/* One URL: connect, TLS, HELLO, the exchange. */
static int request_one(peer_transport_t *t, const peer_url_t *u, uint64_t to, uint8_t kind, const void *req,
                       size_t len, unsigned timeout_ms, int cancel_fd, uint8_t **out, size_t *out_len,
                       char *err, size_t errlen) {
    unsigned dial_ms = timeout_ms < PEER_DIAL_TIMEOUT_MS ? timeout_ms : PEER_DIAL_TIMEOUT_MS;
    peer_conn_t *c = peer_conn_dial(u, dial_ms, cancel_fd, err, errlen);
    if (!c) return PEER_ERR_IO;
    peer_conn_set_timeouts(c, timeout_ms, timeout_ms);
    int rc = u->tls ? peer_conn_client_tls(c, u, t->client_tls, err, errlen) : PEER_OK;
    if (rc == PEER_ERR_REFUSED) peer_hello_refuse(c, PEER_P_REQUEST, t->self_id, to);
    if (rc == PEER_OK) {
        uint64_t theirs = 0;
        rc = peer_hello_client(c, PEER_P_REQUEST, t->self_id, to, atomic_load(&t->cluster_id), &theirs);
        if (rc == PEER_OK) rc = peer_cluster_check(t, theirs);
        if (rc == PEER_ERR_MISMATCH)
            snprintf(err, errlen, "request cluster ID mismatch");
        else if (rc == PEER_ERR_REMOVED)
            snprintf(err, errlen, "the member has been permanently removed from the cluster");
        else if (rc == PEER_ERR_REFUSED)
            snprintf(err, errlen, "remote error: tls: bad certificate");
        else if (rc != PEER_OK)
            snprintf(err, errlen, "peer handshake failed");
    }
    if (rc == PEER_OK) {
        rc = exchange(c, kind, req, len, timeout_ms, cancel_fd, out, out_len);
        if (rc == PEER_ERR_REFUSED)
            snprintf(err, errlen, "the peer did not answer the request");
        else if (rc == PEER_ERR_TIMEOUT)
            snprintf(err, errlen, "no answer within %u ms", timeout_ms);
        else if (rc != PEER_OK)
            snprintf(err, errlen, "the request failed (connection lost or cancelled)");
    }
    peer_conn_free(c);
    return rc;
}

int peer_request(peer_transport_t *t, uint64_t to, uint8_t kind, const void *req, size_t len,
                 unsigned timeout_ms, int cancel_fd, uint8_t **out, size_t *out_len, char *err,
                 size_t errlen) {
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!t || !out || !out_len || (len && !req) || len + 1 > PEER_MAX_FRAME - 1) {
        snprintf(err, errlen, "peer_request: bad arguments");
        return PEER_ERR_INVALID;
    }
    *out = NULL;
    *out_len = 0;
    peer_url_t urls[PEER_MAX_URLS];
    size_t n = 0;
    if (copy_urls(t, to, urls, &n) != PEER_OK) {
        snprintf(err, errlen, "unknown peer %llx", (unsigned long long)to);
        return PEER_ERR_UNKNOWN;
    }
    int rc = PEER_ERR_IO;
    if (n == 0) snprintf(err, errlen, "the peer has no URL");
    for (size_t i = 0; i < n; i++) {
        rc = request_one(t, &urls[i], to, kind, req, len, timeout_ms, cancel_fd, out, out_len, err, errlen);
        /* an answer, or a refusal that another URL of the same member would repeat */
        if (rc == PEER_OK || rc == PEER_ERR_REFUSED || rc == PEER_ERR_NOMEM) break;
    }
    peer_tls_thread_cleanup();
    return rc;
}
