/*
 * peer.c: the peer transport's lifecycle, its peers and their senders (peer.h).
 *
 * Owns: the transport object, the table of peers (and the graveyard of
 * removed ones whose threads are still winding down), each peer's bounded
 * queue of encoded frames and its sender thread: connect to the first URL
 * that answers, HELLO, then write everything queued, batched into one write
 * of up to PEER_BATCH_BYTES; reconnect with exponential backoff (50 ms
 * doubling to 1 s, jittered). Frames queued while the connection cannot be
 * made, or in a write that failed, are dropped and counted (Raft
 * retransmits). The listener and readers are in peer_listen.c, outgoing
 * snapshots and peer_fetch_members in peer_snapshot.c.
 *
 * Locks: t->lock (peers, readers) before p->lock (one peer); no lock is held
 * during I/O or a callback.
 */
#include "peer_internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define DEFAULT_QUEUE_BYTES (4u << 20)

uint64_t peer_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int peer_thread_start(pthread_t *th, void *(*fn)(void *), void *arg) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(th, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void fd_signal(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;
}

static void fd_drain(int fd) {
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

int peer_cluster_check(peer_transport_t *t, uint64_t theirs) {
    uint64_t mine = atomic_load(&t->cluster_id);
    if (theirs == 0) return PEER_OK;
    if (mine == 0) {
        /* Learn it; if another thread learned one first, compare with that. */
        if (atomic_compare_exchange_strong(&t->cluster_id, &mine, theirs)) return PEER_OK;
    }
    return mine == theirs ? PEER_OK : PEER_ERR_MISMATCH;
}

/* ---- peers ---- */

peer_node_t *peer_find_locked(peer_transport_t *t, uint64_t id) {
    for (peer_node_t *p = t->peers; p; p = p->next)
        if (p->id == id) return p;
    return NULL;
}

static void free_queue(peer_node_t *p) {
    while (p->head) {
        peer_qframe_t *f = p->head;
        p->head = f->next;
        free(f);
    }
    p->tail = NULL;
    p->queued_bytes = 0;
}

static void free_peer(peer_node_t *p) {
    free_queue(p);
    free(p->snap_begin);
    if (p->wake_fd >= 0) close(p->wake_fd);
    if (p->stop_fd >= 0) close(p->stop_fd);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Tells p's threads to stop and wakes them from any wait or I/O. */
static void signal_stop(peer_node_t *p) {
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    fd_signal(p->stop_fd);
    peer_conn_shutdown(p->conn);
    peer_conn_shutdown(p->snap_conn);
    pthread_mutex_unlock(&p->lock);
}

/* A removed peer's sender writes what is queued (the last Raft messages,
 * such as the commit of that member's own removal) and then exits; its
 * snapshot stream stops now. peer_stop still stops it at once. */
static void signal_drain(peer_node_t *p) {
    pthread_mutex_lock(&p->lock);
    p->draining = 1;
    fd_signal(p->wake_fd);
    peer_conn_shutdown(p->snap_conn);
    pthread_mutex_unlock(&p->lock);
}

static void join_peer(peer_node_t *p) {
    pthread_join(p->sender, NULL);
    if (p->snap_started) pthread_join(p->snap_thread, NULL);
    free_peer(p);
}

/* Joins and frees removed peers whose threads have finished (t->lock held). */
static void reap_graveyard(peer_transport_t *t) {
    peer_node_t **pp = &t->graveyard;
    while (*pp) {
        peer_node_t *p = *pp;
        pthread_mutex_lock(&p->lock);
        int finished = p->sender_exited && !p->snap_running;
        pthread_mutex_unlock(&p->lock);
        if (!finished) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        join_peer(p);
    }
}

static int parse_urls(const char *const *urls, size_t n, peer_url_t *out) {
    if (!urls || n == 0 || n > PEER_MAX_URLS) return PEER_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (peer_url_parse(urls[i], &out[i]) != PEER_OK) return PEER_ERR_INVALID;
    return PEER_OK;
}

static void *sender_main(void *arg);

static peer_node_t *new_peer(peer_transport_t *t, uint64_t id) {
    peer_node_t *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->t = t;
    p->id = id;
    p->rng = (unsigned)(id ^ (id >> 32) ^ peer_now_ms());
    pthread_mutex_init(&p->lock, NULL);
    p->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->wake_fd < 0 || p->stop_fd < 0) {
        free_peer(p);
        return NULL;
    }
    return p;
}

/* ---- removed members (t->lock held) ---- */

static size_t removed_index(const peer_transport_t *t, uint64_t id) {
    if (!t->removed) return 0;
    for (size_t i = 0; i < t->n_removed; i++)
        if (t->removed[i] == id) return i;
    return t->n_removed;
}

/* Out of memory the id is not recorded: its HELLOs are then refused only
 * as an unknown peer's would be (not at all), never a crash. */
static void mark_removed(peer_transport_t *t, uint64_t id) {
    if (removed_index(t, id) < t->n_removed) return;
    if (t->n_removed == t->cap_removed) {
        size_t cap = t->cap_removed ? t->cap_removed * 2 : 8;
        uint64_t *n = realloc(t->removed, cap * sizeof *n);
        if (!n) return;
        t->removed = n;
        t->cap_removed = cap;
    }
    t->removed[t->n_removed++] = id;
}

static void unmark_removed(peer_transport_t *t, uint64_t id) {
    size_t i = removed_index(t, id);
    if (i < t->n_removed) t->removed[i] = t->removed[--t->n_removed];
}

int peer_is_removed_locked(const peer_transport_t *t, uint64_t id) {
    return removed_index(t, id) < t->n_removed;
}

int peer_is_removed(peer_transport_t *t, uint64_t id) {
    pthread_mutex_lock(&t->lock);
    int removed = peer_is_removed_locked(t, id);
    pthread_mutex_unlock(&t->lock);
    return removed;
}

int peer_add(peer_transport_t *t, uint64_t id, const char *const *urls, size_t n) {
    peer_url_t parsed[PEER_MAX_URLS];
    if (!t || id == 0 || id == t->self_id) return PEER_ERR_INVALID;
    if (parse_urls(urls, n, parsed) != PEER_OK) return PEER_ERR_INVALID;
    pthread_mutex_lock(&t->lock);
    reap_graveyard(t);
    int rc = PEER_OK;
    if (!t->stopping) unmark_removed(t, id);
    peer_node_t *p = t->stopping ? NULL : peer_find_locked(t, id);
    if (t->stopping) {
        rc = PEER_ERR_INVALID;
    } else if (p) {
        pthread_mutex_lock(&p->lock);
        if (p->n_urls != n || memcmp(p->urls, parsed, n * sizeof parsed[0]) != 0) {
            memcpy(p->urls, parsed, n * sizeof parsed[0]);
            p->n_urls = n;
            p->urls_changed = 1;
            fd_signal(p->wake_fd);
        }
        pthread_mutex_unlock(&p->lock);
    } else if (!(p = new_peer(t, id))) {
        rc = PEER_ERR_NOMEM;
    } else {
        memcpy(p->urls, parsed, n * sizeof parsed[0]);
        p->n_urls = n;
        if (peer_thread_start(&p->sender, sender_main, p) != 0) {
            free_peer(p);
            rc = PEER_ERR_NOMEM;
        } else {
            p->next = t->peers;
            t->peers = p;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void peer_remove(peer_transport_t *t, uint64_t id) {
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    for (peer_node_t **pp = &t->peers; *pp; pp = &(*pp)->next) {
        if ((*pp)->id != id) continue;
        peer_node_t *p = *pp;
        *pp = p->next;
        signal_drain(p);
        p->next = t->graveyard;
        t->graveyard = p;
        break;
    }
    if (id != 0 && id != t->self_id) {
        mark_removed(t, id);
        peer_readers_close_from(t, id); /* it redials and hears REMOVED */
    }
    reap_graveyard(t);
    pthread_mutex_unlock(&t->lock);
}

void peer_set_cluster_id(peer_transport_t *t, uint64_t cluster_id) {
    if (t) atomic_store(&t->cluster_id, cluster_id);
}

/* ---- queueing ---- */

/* Takes f (malloc'd) into id's queue, or frees it. */
static int enqueue(peer_transport_t *t, uint64_t id, peer_qframe_t *f) {
    pthread_mutex_lock(&t->lock);
    peer_node_t *p = peer_find_locked(t, id);
    if (!p) {
        pthread_mutex_unlock(&t->lock);
        free(f);
        return PEER_ERR_UNKNOWN;
    }
    pthread_mutex_lock(&p->lock);
    int rc = PEER_OK;
    /* One frame larger than the bound still goes when the queue is empty. */
    if (p->queued_bytes > 0 && p->queued_bytes + f->len > t->queue_bytes) {
        p->stats.dropped++;
        free(f);
        rc = PEER_ERR_FULL;
    } else {
        int was_empty = p->head == NULL;
        f->next = NULL;
        if (p->tail)
            p->tail->next = f;
        else
            p->head = f;
        p->tail = f;
        p->queued_bytes += f->len;
        if (was_empty) fd_signal(p->wake_fd);
    }
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int peer_send_raft(peer_transport_t *t, const raft_msg_t *m) {
    /* A snapshot goes on its own connection (peer_send_snapshot). */
    if (!t || !m || m->from != t->self_id || m->type == RAFT_MSG_SNAP) return PEER_ERR_INVALID;
    uint8_t *buf;
    size_t len;
    int rc = peer_encode_raft_frame(m, PEER_F_RAFT, sizeof(peer_qframe_t), &buf, &len);
    if (rc != PEER_OK) return rc;
    peer_qframe_t *f = (peer_qframe_t *)buf;
    f->len = len;
    f->data = buf + sizeof(peer_qframe_t);
    return enqueue(t, m->to, f);
}

int peer_send_app(peer_transport_t *t, uint64_t to, uint8_t kind, const void *data, size_t len) {
    if (!t || (len && !data) || len + 2 > PEER_MAX_FRAME) return PEER_ERR_INVALID;
    peer_qframe_t *f = malloc(sizeof(*f) + PEER_FRAME_HEADER + 1 + len);
    if (!f) return PEER_ERR_NOMEM;
    f->data = (uint8_t *)(f + 1);
    f->len = PEER_FRAME_HEADER + 1 + len;
    uint8_t *payload = f->data + PEER_FRAME_HEADER;
    payload[0] = kind;
    if (len) memcpy(payload + 1, data, len);
    peer_frame_header(f->data, PEER_F_APP, payload, 1 + len);
    return enqueue(t, to, f);
}

size_t peer_list_ids(peer_transport_t *t, uint64_t *ids, size_t max) {
    if (!t) return 0;
    size_t n = 0;
    pthread_mutex_lock(&t->lock);
    for (peer_node_t *p = t->peers; p; p = p->next, n++)
        if (n < max) ids[n] = p->id;
    pthread_mutex_unlock(&t->lock);
    return n;
}

int peer_get_stats(peer_transport_t *t, uint64_t id, peer_stats_t *out) {
    if (!t || !out) return PEER_ERR_INVALID;
    pthread_mutex_lock(&t->lock);
    peer_node_t *p = peer_find_locked(t, id);
    if (p) {
        pthread_mutex_lock(&p->lock);
        *out = p->stats;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return p ? PEER_OK : PEER_ERR_UNKNOWN;
}

void peer_count_received(peer_transport_t *t, uint64_t id, size_t bytes, int bad) {
    pthread_mutex_lock(&t->lock);
    peer_node_t *p = peer_find_locked(t, id);
    if (p) {
        pthread_mutex_lock(&p->lock);
        if (bad) {
            p->stats.bad_frames++;
        } else {
            p->stats.received_frames++;
            p->stats.received_bytes += bytes;
        }
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&t->lock);
}

/* ---- dialing ---- */

int peer_hello_client(peer_conn_t *c, uint8_t purpose, uint64_t from, uint64_t to, uint64_t cluster,
                      uint64_t *their_cluster) {
    peer_hello_t h = {PEER_VERSION, purpose, PEER_H_OK, cluster, from, to};
    uint8_t buf[PEER_HELLO_LEN], kind, *in = NULL;
    size_t cap = 0, len;
    peer_hello_encode(&h, buf);
    if (peer_conn_write_frame(c, PEER_F_HELLO, buf, sizeof buf) != PEER_OK) return PEER_ERR_IO;
    int rc = peer_conn_read_frame(c, PEER_HELLO_LEN, &kind, &in, &cap, &len);
    if (rc == PEER_OK && (kind != PEER_F_HELLO || peer_hello_decode(in, len, &h) != PEER_OK))
        rc = PEER_ERR_IO;
    free(in);
    if (rc != PEER_OK) return PEER_ERR_IO;
    if (h.status == PEER_H_MISMATCH) return PEER_ERR_MISMATCH;
    if (h.status == PEER_H_BAD_CERT) return PEER_ERR_REFUSED;
    if (h.status == PEER_H_REMOVED) return PEER_ERR_REMOVED;
    if (h.status != PEER_H_OK || h.version != PEER_VERSION) return PEER_ERR_IO;
    if (cluster && h.cluster_id && cluster != h.cluster_id) return PEER_ERR_MISMATCH;
    *their_cluster = h.cluster_id;
    return PEER_OK;
}

static void set_slot(peer_node_t *p, peer_conn_t **slot, peer_conn_t *c) {
    pthread_mutex_lock(&p->lock);
    *slot = c;
    pthread_mutex_unlock(&p->lock);
}

void peer_hello_refuse(peer_conn_t *c, uint8_t purpose, uint64_t from, uint64_t to) {
    peer_hello_t h = {PEER_VERSION, purpose, PEER_H_BAD_CERT, 0, from, to};
    uint8_t buf[PEER_HELLO_LEN];
    peer_hello_encode(&h, buf);
    peer_conn_write_frame(c, PEER_F_HELLO, buf, sizeof buf); /* best effort: we close either way */
}

/* One URL: connect, TLS, HELLO. A certificate refused by either side is
 * PEER_ERR_REFUSED (err: why, in Go's words). */
static int dial_one(peer_transport_t *t, peer_node_t *p, const peer_url_t *u, int purpose, peer_conn_t **slot,
                    char *err, size_t errlen) {
    peer_conn_t *c = peer_conn_dial(u, PEER_DIAL_TIMEOUT_MS, p->stop_fd, err, errlen);
    if (!c) return PEER_ERR_IO;
    pthread_mutex_lock(&p->lock);
    int stopping = p->stopping;
    if (!stopping) *slot = c;
    pthread_mutex_unlock(&p->lock);
    if (stopping) {
        peer_conn_free(c);
        return PEER_ERR_IO;
    }
    peer_conn_set_timeouts(c, PEER_HANDSHAKE_TIMEOUT_MS, PEER_HANDSHAKE_TIMEOUT_MS);
    int rc = u->tls ? peer_conn_client_tls(c, u, t->client_tls, err, errlen) : PEER_OK;
    uint64_t theirs = 0;
    if (rc == PEER_ERR_REFUSED) peer_hello_refuse(c, (uint8_t)purpose, t->self_id, p->id);
    if (rc == PEER_OK) {
        rc = peer_hello_client(c, (uint8_t)purpose, t->self_id, p->id, atomic_load(&t->cluster_id), &theirs);
        if (rc == PEER_OK) rc = peer_cluster_check(t, theirs);
        if (rc == PEER_ERR_MISMATCH)
            snprintf(err, errlen, "request cluster ID mismatch");
        else if (rc == PEER_ERR_REMOVED)
            snprintf(err, errlen, "the member has been permanently removed from the cluster");
        else if (rc == PEER_ERR_REFUSED)
            snprintf(err, errlen, "remote error: tls: bad certificate"); /* Go's words for the same refusal */
        else if (rc != PEER_OK)
            snprintf(err, errlen, "peer handshake failed");
    }
    if (rc != PEER_OK) {
        set_slot(p, slot, NULL);
        peer_conn_free(c);
    }
    if (rc == PEER_ERR_REMOVED && t->cfg.on_removed && atomic_exchange(&t->removed_reported, 1) == 0)
        t->cfg.on_removed(t->cfg.ctx, p->id);
    return rc;
}

int peer_dial(peer_transport_t *t, peer_node_t *p, int purpose, peer_conn_t **slot, char *err,
              size_t errlen) {
    peer_url_t urls[PEER_MAX_URLS];
    pthread_mutex_lock(&p->lock);
    size_t n = p->n_urls;
    memcpy(urls, p->urls, n * sizeof urls[0]);
    if (purpose == PEER_P_STREAM) p->urls_changed = 0;
    pthread_mutex_unlock(&p->lock);
    int rc = PEER_ERR_IO;
    for (size_t i = 0; i < n; i++) {
        rc = dial_one(t, p, &urls[i], purpose, slot, err, errlen);
        if (rc == PEER_OK || rc == PEER_ERR_MISMATCH || rc == PEER_ERR_REMOVED) break;
    }
    return rc;
}

/* ---- the sender thread ---- */

/* Drops everything queued (the connection could not be made). */
static void drop_queue(peer_node_t *p) {
    pthread_mutex_lock(&p->lock);
    for (peer_qframe_t *f = p->head; f; f = f->next) p->stats.dropped++;
    free_queue(p);
    pthread_mutex_unlock(&p->lock);
}

static void close_stream(peer_node_t *p) {
    pthread_mutex_lock(&p->lock);
    peer_conn_t *c = p->conn;
    p->conn = NULL;
    p->stats.connected = 0;
    p->stats.active_since_ms = 0;
    pthread_mutex_unlock(&p->lock);
    peer_conn_free(c);
}

/* Sleeps ms or until stop. */
static void wait_stop(peer_node_t *p, unsigned ms) {
    uint64_t deadline = peer_now_ms() + ms;
    for (;;) {
        uint64_t now = peer_now_ms();
        if (now >= deadline) return;
        struct pollfd pf = {p->stop_fd, POLLIN, 0};
        int n = poll(&pf, 1, (int)(deadline - now));
        if (n > 0) return;
        if (n < 0 && errno != EINTR) return;
    }
}

static unsigned jittered(peer_node_t *p, unsigned ms) {
    return ms + (unsigned)rand_r(&p->rng) % (ms / 2 + 1);
}

static int connect_stream(peer_node_t *p, unsigned *backoff) {
    char err[256] = "";
    int rc = peer_dial(p->t, p, PEER_P_STREAM, &p->conn, err, sizeof err);
    pthread_mutex_lock(&p->lock);
    /* Refusals are logged once per change, not at every reconnect: they
     * need the operator (a certificate or a cluster id is wrong; etcd logs
     * "health check for peer X could not connect: <why>"). */
    if ((rc == PEER_ERR_REFUSED || rc == PEER_ERR_MISMATCH || rc == PEER_ERR_REMOVED) &&
        p->stats.last_error != rc)
        fprintf(stderr, "peer: cannot connect to member %016llx: %s\n", (unsigned long long)p->id, err);
    p->stats.last_error = rc;
    if (rc == PEER_OK) {
        peer_conn_set_timeouts(p->conn, 0, PEER_WRITE_TIMEOUT_MS);
        p->stats.connected = 1;
        p->stats.active_since_ms = peer_now_ms();
    }
    pthread_mutex_unlock(&p->lock);
    if (rc == PEER_OK) {
        *backoff = 0;
        return 0;
    }
    drop_queue(p);
    *backoff = *backoff ? *backoff * 2 : BACKOFF_MIN_MS;
    if (*backoff > BACKOFF_MAX_MS) *backoff = BACKOFF_MAX_MS;
    wait_stop(p, jittered(p, *backoff));
    return -1;
}

/* Waits for frames, stop, or the remote closing the idle connection
 * (the receiving side never sends on a stream: readable means closed). */
static void wait_idle(peer_node_t *p, int conn_fd) {
    struct pollfd pf[3] = {{p->wake_fd, POLLIN, 0}, {p->stop_fd, POLLIN, 0}, {conn_fd, POLLIN, 0}};
    int n = poll(pf, conn_fd >= 0 ? 3 : 2, -1);
    if (n <= 0) return;
    if (pf[0].revents) fd_drain(p->wake_fd);
    if (conn_fd >= 0 && pf[2].revents) close_stream(p);
}

/* Takes up to PEER_BATCH_BYTES of frames (at least one) off the queue (p->lock held). */
static peer_qframe_t *take_batch(peer_node_t *p, size_t *bytes, size_t *frames) {
    peer_qframe_t *first = p->head, *last = first;
    size_t total = first->len, n = 1;
    while (last->next && total + last->next->len <= PEER_BATCH_BYTES) {
        last = last->next;
        total += last->len;
        n++;
    }
    p->head = last->next;
    if (!p->head) p->tail = NULL;
    last->next = NULL;
    p->queued_bytes -= total;
    *bytes = total;
    *frames = n;
    return first;
}

static int write_batch(peer_conn_t *c, peer_qframe_t *b, size_t bytes, uint8_t *buf) {
    if (!b->next) return peer_conn_write(c, b->data, b->len);
    size_t off = 0;
    for (peer_qframe_t *f = b; f; f = f->next) {
        memcpy(buf + off, f->data, f->len);
        off += f->len;
    }
    return peer_conn_write(c, buf, bytes);
}

static void free_list(peer_qframe_t *f) {
    while (f) {
        peer_qframe_t *n = f->next;
        free(f);
        f = n;
    }
}

static void send_batch(peer_node_t *p, uint8_t *buf) {
    size_t bytes, frames;
    pthread_mutex_lock(&p->lock);
    peer_qframe_t *b = take_batch(p, &bytes, &frames);
    peer_conn_t *c = p->conn;
    pthread_mutex_unlock(&p->lock);
    int rc = write_batch(c, b, bytes, buf);
    free_list(b);
    pthread_mutex_lock(&p->lock);
    if (rc == PEER_OK) {
        p->stats.sent_bytes += bytes;
        p->stats.sent_frames += frames;
    } else {
        p->stats.dropped += frames;
    }
    pthread_mutex_unlock(&p->lock);
    if (rc != PEER_OK) close_stream(p);
}

static void *sender_main(void *arg) {
    peer_node_t *p = arg;
    uint8_t *buf = malloc(PEER_BATCH_BYTES);
    unsigned backoff = 0;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int stopping = p->stopping, have = p->head != NULL, changed = p->urls_changed;
        int draining = p->draining;
        int fd = p->conn ? peer_conn_fd(p->conn) : -1;
        pthread_mutex_unlock(&p->lock);
        if (stopping || !buf || (draining && !have)) break;
        if (changed && fd >= 0) {
            close_stream(p);
            continue;
        }
        if (!have) {
            wait_idle(p, fd);
        } else if (fd < 0) {
            connect_stream(p, &backoff);
        } else {
            send_batch(p, buf);
        }
    }
    close_stream(p);
    free(buf);
    peer_tls_thread_cleanup();
    pthread_mutex_lock(&p->lock);
    p->sender_exited = 1;
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ---- start and stop ---- */

static int setup_tls(peer_transport_t *t, const peer_config_t *cfg, const peer_url_t *urls, char *err,
                     size_t errlen) {
    int any_tls = 0;
    for (size_t i = 0; i < cfg->n_listen_urls; i++) any_tls |= urls[i].tls;
    if (any_tls && !(t->server_tls = peer_tls_ctx_new(&cfg->tls, 1, err, errlen))) return -1;
    t->client_tls = peer_tls_ctx_new(&cfg->tls, 0, err, errlen);
    return t->client_tls ? 0 : -1;
}

peer_transport_t *peer_start(const peer_config_t *cfg, char *err, size_t errlen) {
    peer_url_t urls[PEER_MAX_URLS];
    if (err && errlen) err[0] = '\0';
    if (!cfg || cfg->self_id == 0 || cfg->n_listen_urls > PEER_MAX_URLS ||
        (cfg->n_listen_urls && !cfg->listen_urls)) {
        snprintf(err, errlen, "peer transport: bad configuration");
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_listen_urls; i++) {
        if (peer_url_parse(cfg->listen_urls[i], &urls[i]) != PEER_OK) {
            snprintf(err, errlen, "bad peer URL %s", cfg->listen_urls[i] ? cfg->listen_urls[i] : "(null)");
            return NULL;
        }
    }
    peer_transport_t *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->self_id = cfg->self_id;
    atomic_store(&t->cluster_id, cfg->cluster_id);
    t->cfg = *cfg;
    t->cfg.listen_urls = NULL;
    memset(&t->cfg.tls, 0, sizeof t->cfg.tls);
    t->queue_bytes = cfg->queue_bytes ? cfg->queue_bytes : DEFAULT_QUEUE_BYTES;
    t->wake_fd = -1;
    pthread_mutex_init(&t->lock, NULL);
    for (int i = 0; i < PEER_MAX_URLS; i++) t->listen_fd[i] = -1;
    if (setup_tls(t, cfg, urls, err, errlen) != 0) goto fail;
    for (size_t i = 0; i < cfg->n_listen_urls; i++) {
        int fd = peer_listen_socket(&urls[i], err, errlen);
        if (fd < 0) goto fail;
        t->listen_fd[t->n_listen] = fd;
        t->listen_tls[t->n_listen] = urls[i].tls;
        t->listen_port[t->n_listen] = peer_socket_port(fd);
        if (urls[i].family == PEER_URL_UNIX) snprintf(t->listen_unix[t->n_listen], 108, "%s", urls[i].path);
        t->n_listen++;
    }
    if (peer_listener_start(t, err, errlen) != 0) goto fail;
    return t;
fail:
    peer_stop(t);
    return NULL;
}

void peer_stop(peer_transport_t *t) {
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stopping = 1;
    pthread_mutex_unlock(&t->lock);
    peer_listener_stop(t);
    for (int i = 0; i < t->n_listen; i++) {
        close(t->listen_fd[i]);
        if (t->listen_unix[i][0]) unlink(t->listen_unix[i]);
    }
    /* No new peers now (stopping); every thread of each is woken, then joined. */
    pthread_mutex_lock(&t->lock);
    peer_node_t *all = t->peers;
    t->peers = NULL;
    for (peer_node_t *p = all; p; p = p->next) signal_stop(p);
    peer_node_t *dead = t->graveyard;
    t->graveyard = NULL;
    pthread_mutex_unlock(&t->lock);
    while (all) {
        peer_node_t *n = all->next;
        join_peer(all);
        all = n;
    }
    while (dead) {
        peer_node_t *n = dead->next;
        join_peer(dead);
        dead = n;
    }
    peer_readers_stop(t);
    peer_tls_ctx_free(t->server_tls);
    peer_tls_ctx_free(t->client_tls);
    pthread_mutex_destroy(&t->lock);
    free(t->removed);
    free(t);
}

int peer_listen_port(const peer_transport_t *t, size_t i) {
    if (!t || i >= (size_t)t->n_listen) return -1;
    return t->listen_port[i];
}
