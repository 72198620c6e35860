/*
 * peer_internal.h: what the files of the peer transport share (not for
 * callers): the frame kinds and codec (peer_codec.c), URLs, sockets and TLS
 * connections (peer_conn.c).
 */
#ifndef KSHIM_RAFT_PEER_INTERNAL_H
#define KSHIM_RAFT_PEER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "peer.h"

#define PEER_VERSION 1
#define PEER_FRAME_HEADER 9 /* u32 len, u32 crc32c, u8 kind */
#define PEER_HELLO_LEN 28
#define PEER_SNAP_CHUNK (256u << 10)

/* Frame kinds. */
enum {
    PEER_F_HELLO = 1,
    PEER_F_RAFT = 2,
    PEER_F_APP = 3,        /* u8 app kind, data */
    PEER_F_SNAP_BEGIN = 4, /* an encoded RAFT_MSG_SNAP */
    PEER_F_SNAP_CHUNK = 5, /* snapshot bytes */
    PEER_F_SNAP_END = 6,   /* u64 total bytes, u32 crc32c of all of them */
    PEER_F_SNAP_ACK = 7,   /* u8 ok: the receiver's verdict */
    PEER_F_MEMBERS = 8,    /* u8 status, u64 cluster id, the member list */
    PEER_F_REQUEST = 9,    /* u8 request kind, the member layer's request bytes */
    PEER_F_RESPONSE = 10,  /* u8 status (0 answered, 1 not), the member layer's answer */
};

/* What a connection is for (HELLO purpose). */
enum { PEER_P_STREAM = 1, PEER_P_SNAPSHOT = 2, PEER_P_MEMBERS = 3, PEER_P_REQUEST = 4 };

/* HELLO status (the acceptor's answer). */
enum {
    PEER_H_OK = 0,
    PEER_H_MISMATCH = 1,
    PEER_H_WRONG_TO = 2,
    PEER_H_VERSION = 3,
    PEER_H_PURPOSE = 4,
    PEER_H_BAD_CERT = 5, /* the certificate failed --peer-cert-allowed-cn/-hostname (either side's HELLO) */
    PEER_H_REMOVED = 6,  /* the dialer was removed from the cluster (peer_remove) */
};

typedef struct peer_hello {
    uint16_t version;
    uint8_t purpose, status;
    uint64_t cluster_id, from, to;
} peer_hello_t;

/* ---- codec (peer_codec.c) ---- */

/* Writes the 9-byte header of a frame of kind with payload p/n into hdr. */
void peer_frame_header(uint8_t hdr[PEER_FRAME_HEADER], uint8_t kind, const uint8_t *p, size_t n);
/* A whole frame, malloc'd: header + payload. NULL out of memory. */
uint8_t *peer_frame_build(uint8_t kind, const uint8_t *p, size_t n, size_t *out_len);
/* Header check: *payload_len from hdr; PEER_ERR_INVALID for a length out of bounds. */
int peer_frame_parse_header(const uint8_t hdr[PEER_FRAME_HEADER], uint8_t *kind, size_t *payload_len);
/* Checksum check of a frame read whole. */
int peer_frame_check(const uint8_t hdr[PEER_FRAME_HEADER], const uint8_t *p, size_t n);

void peer_hello_encode(const peer_hello_t *h, uint8_t out[PEER_HELLO_LEN]);
int peer_hello_decode(const uint8_t *p, size_t n, peer_hello_t *h);

/* Snapshot end / members payloads. */
void peer_snap_end_encode(uint64_t total, uint32_t crc, uint8_t out[12]);
int peer_snap_end_decode(const uint8_t *p, size_t n, uint64_t *total, uint32_t *crc);
/* MEMBERS: malloc'd payload; decode points *data into p. */
uint8_t *peer_members_encode(uint8_t status, uint64_t cluster_id, const uint8_t *data, size_t len,
                             size_t *out_len);
int peer_members_decode(const uint8_t *p, size_t n, uint8_t *status, uint64_t *cluster_id,
                        const uint8_t **data, size_t *len);
/* A RAFT (or SNAP_BEGIN) frame in one allocation: *out holds headroom
 * bytes, then the frame (header + encoded message, *frame_len bytes). */
int peer_encode_raft_frame(const raft_msg_t *m, uint8_t kind, size_t headroom, uint8_t **out,
                           size_t *frame_len);
/* APP payload = kind byte + data. */
int peer_app_decode(const uint8_t *p, size_t n, uint8_t *kind, const uint8_t **data, size_t *len);

/* ---- URLs, sockets, TLS (peer_conn.c) ---- */

enum { PEER_URL_TCP = 0, PEER_URL_UNIX = 1 };

typedef struct peer_url {
    int family; /* PEER_URL_TCP / PEER_URL_UNIX */
    int tls;    /* https:// or unixs:// */
    char host[256];
    char port[8];
    char path[108]; /* unix socket path */
} peer_url_t;

int peer_url_parse(const char *url, peer_url_t *out);

typedef struct peer_tls_ctx peer_tls_ctx_t; /* one side's wolfSSL context */

/* server: the listener's context (needs cert and key); else the dialing side's. */
peer_tls_ctx_t *peer_tls_ctx_new(const peer_tls_t *tls, int server, char *err, size_t errlen);
void peer_tls_ctx_free(peer_tls_ctx_t *c);

typedef struct peer_conn peer_conn_t;

/* Listening socket for u (unix: an existing file is removed first). -1 with err. */
int peer_listen_socket(const peer_url_t *u, char *err, size_t errlen);
/* The TCP port a listening socket is bound to (-1 for unix). */
int peer_socket_port(int fd);

/* Connects to u within timeout_ms (abandoned early when wake_fd, if >= 0,
 * becomes readable); I/O timeouts are timeout_ms until changed. NULL with err. */
peer_conn_t *peer_conn_dial(const peer_url_t *u, unsigned timeout_ms, int wake_fd, char *err, size_t errlen);
/* The dialer's TLS handshake (u: https/unixs), with the certificate checks:
 * PEER_ERR_REFUSED when our checks refuse the server's verified certificate
 * (--peer-cert-allowed-cn/-hostname, the URL's host), PEER_ERR_IO for any
 * other failure (a refusing peer's fatal alert: "remote error: tls: ..."). */
int peer_conn_client_tls(peer_conn_t *c, const peer_url_t *u, peer_tls_ctx_t *ctx, char *err, size_t errlen);
/* Wraps an accepted socket (takes fd; closed on failure too). */
peer_conn_t *peer_conn_wrap(int fd, unsigned timeout_ms);
/* The listener's TLS handshake and certificate checks (PEER_ERR_REFUSED:
 * the allowed CN/hostname refuses the client's certificate). */
int peer_conn_server_tls(peer_conn_t *c, peer_tls_ctx_t *ctx, char *err, size_t errlen);
/* I/O timeouts for blocking reads and writes (0: none). */
void peer_conn_set_timeouts(peer_conn_t *c, unsigned recv_ms, unsigned send_ms);
int peer_conn_write(peer_conn_t *c, const void *p, size_t n); /* 0 or PEER_ERR_IO */
int peer_conn_read(peer_conn_t *c, void *p, size_t n);        /* exactly n: 0, PEER_ERR_IO */
int peer_conn_fd(const peer_conn_t *c);
/* The other end's address for a log line: "IP:port", "[IPv6]:port" or "unix". */
void peer_conn_remote(const peer_conn_t *c, char *out, size_t cap);
/* Waits until c has bytes to read (PEER_OK), timeout_ms passed
 * (PEER_ERR_TIMEOUT) or cancel_fd (if >= 0) became readable (PEER_ERR_IO). */
int peer_conn_wait_readable(peer_conn_t *c, unsigned timeout_ms, int cancel_fd);
/* Wakes a thread blocked in I/O on c (any thread; c must stay allocated). */
void peer_conn_shutdown(peer_conn_t *c);
void peer_conn_free(peer_conn_t *c);

/* Reads one frame: kind, payload in *buf (grown as bytes arrive, capacity
 * *cap), at most max payload bytes (<= PEER_MAX_FRAME - 1; a HELLO is read
 * with max = PEER_HELLO_LEN). PEER_ERR_IO broken connection,
 * PEER_ERR_INVALID bad length or checksum. */
int peer_conn_read_frame(peer_conn_t *c, size_t max, uint8_t *kind, uint8_t **buf, size_t *cap, size_t *len);
/* Writes one frame. */
int peer_conn_write_frame(peer_conn_t *c, uint8_t kind, const uint8_t *p, size_t n);

/* Per-thread cleanup of wolfSSL's caches, at the end of every thread that did TLS. */
void peer_tls_thread_cleanup(void);


/* ---- the transport's state (peer.c, peer_listen.c, peer_snapshot.c) ---- */

#include <pthread.h>
#include <stdatomic.h>

#define PEER_MAX_READERS 64
#define PEER_BATCH_BYTES (256u << 10)
#define PEER_DIAL_TIMEOUT_MS 3000
#define PEER_HANDSHAKE_TIMEOUT_MS 5000
#define PEER_WRITE_TIMEOUT_MS 10000
#define PEER_SNAP_TIMEOUT_MS 60000

typedef struct peer_qframe {
    struct peer_qframe *next;
    size_t len;
    uint8_t *data; /* points behind the struct, same allocation */
} peer_qframe_t;

typedef struct peer_node {
    struct peer_node *next;
    struct peer_transport *t;
    uint64_t id;
    pthread_mutex_t lock; /* everything below */
    peer_url_t urls[PEER_MAX_URLS];
    size_t n_urls;
    int urls_changed;
    peer_qframe_t *head, *tail;
    size_t queued_bytes;
    int stopping;
    int draining;      /* removed: send what is queued, then exit (peer_remove) */
    int wake_fd;       /* eventfd: frames queued on an empty queue, URLs changed */
    int stop_fd;       /* eventfd: written once by stop */
    peer_conn_t *conn; /* the sender's connection, NULL when down */
    peer_stats_t stats;
    unsigned rng;
    pthread_t sender;
    int sender_exited;
    /* Outgoing snapshot stream (one at a time). */
    pthread_t snap_thread;
    int snap_started, snap_running;
    peer_conn_t *snap_conn;
    uint8_t *snap_begin; /* the SNAP_BEGIN frame */
    size_t snap_begin_len;
    long (*snap_read)(void *read_ctx, uint8_t *buf, size_t cap);
    void *snap_read_ctx;
    void (*snap_done)(void *read_ctx, uint64_t to, int ok);
} peer_node_t;

/* Rejected inbound connections already logged (peer_listen.c). */
#define PEER_REJECT_LOG_SLOTS 8
#define PEER_REJECT_LOG_MS 10000
typedef struct peer_reject_log {
    uint32_t key;   /* crc32c of the remote host and the reason */
    uint64_t at_ms; /* when it was last logged (0: free) */
} peer_reject_log_t;

typedef struct peer_reader {
    struct peer_transport *t;
    int used, done, tls;
    pthread_t thread;
    peer_conn_t *conn; /* NULL once the reader closes it */
    int purpose;
    uint64_t from;
    uint64_t deadline_ms; /* TLS + HELLO must be done by then (0: done) */
} peer_reader_t;

struct peer_transport {
    uint64_t self_id;
    _Atomic uint64_t cluster_id;
    peer_config_t cfg; /* callbacks and ctx; the pointers in it are not kept */
    size_t queue_bytes;
    peer_tls_ctx_t *server_tls, *client_tls;
    int n_listen;
    int listen_fd[PEER_MAX_URLS];
    int listen_tls[PEER_MAX_URLS];
    int listen_port[PEER_MAX_URLS];
    char listen_unix[PEER_MAX_URLS][108];
    int wake_fd; /* eventfd: stops the listener */
    pthread_t listener;
    int listener_started;
    pthread_mutex_t lock; /* peers, graveyard, readers, stopping */
    int stopping;
    peer_node_t *peers, *graveyard;
    peer_reader_t readers[PEER_MAX_READERS];
    uint64_t refused_conns; /* inbound connections over the reader bound */
    peer_reject_log_t reject_log[PEER_REJECT_LOG_SLOTS];
    uint64_t *removed; /* ids given to peer_remove (and not added again): their HELLOs are refused */
    size_t n_removed, cap_removed;
    atomic_int removed_reported; /* on_removed was called */
};

uint64_t peer_now_ms(void);
/* pthread_create with every signal blocked in the new thread (a signal
 * meant for the process must not cut a transport thread's I/O short). */
int peer_thread_start(pthread_t *th, void *(*fn)(void *), void *arg);
/* The transport learns a cluster id it did not know (0). 0 compatible, PEER_ERR_MISMATCH not. */
int peer_cluster_check(peer_transport_t *t, uint64_t theirs);
/* Dials p's URLs in turn, TLS, HELLO for purpose; *slot (p->conn or
 * p->snap_conn) holds the connection while it is made, so stop can wake it. */
int peer_dial(peer_transport_t *t, peer_node_t *p, int purpose, peer_conn_t **slot, char *err, size_t errlen);
/* HELLO from the dialing side: sends ours, reads and checks the answer. */
int peer_hello_client(peer_conn_t *c, uint8_t purpose, uint64_t from, uint64_t to, uint64_t cluster,
                      uint64_t *their_cluster);
/* The dialer's answer to a certificate its checks refused: a HELLO with
 * status BAD_CERT, where Go's TLS stack sends a bad_certificate alert (the
 * listener logs "remote error: tls: bad certificate"); then close. */
void peer_hello_refuse(peer_conn_t *c, uint8_t purpose, uint64_t from, uint64_t to);
/* Counts a frame received from id (bad: failed checksum or decoding). */
void peer_count_received(peer_transport_t *t, uint64_t id, size_t bytes, int bad);

/* The peer added with id, or NULL (t->lock held). */
peer_node_t *peer_find_locked(peer_transport_t *t, uint64_t id);
/* Whether id was removed (peer_remove); takes t->lock (_locked: held). */
int peer_is_removed(peer_transport_t *t, uint64_t id);
int peer_is_removed_locked(const peer_transport_t *t, uint64_t id);

/* peer_listen.c */
/* Shuts down every inbound connection from id (t->lock held). */
void peer_readers_close_from(peer_transport_t *t, uint64_t id);
int peer_listener_start(peer_transport_t *t, char *err, size_t errlen);
void peer_listener_stop(peer_transport_t *t);
void peer_readers_stop(peer_transport_t *t);

/* peer_snapshot.c */
void *peer_snapshot_main(void *arg);

#endif
