/*
 * peer.h: the peer transport, member to member (target kshim_peer).
 *
 * What kshim members say to each other over --listen-peer-urls, and nothing
 * about what it means: Raft messages (raft_msg_t, encoded here), opaque
 * application messages of the member layer (forwarded proposals, lease
 * renewals, ...), snapshot streams, one blocking request for a member
 * that joins (the cluster's member list), and blocking request/answer
 * exchanges of the member layer (peer_request: opaque bytes both ways,
 * e.g. a peer's HashKV for the corruption check). TCP or unix sockets, with wolfSSL
 * mutual TLS when the URL is https:// or unixs://.
 *
 * Wire: every frame is [u32 len][u32 crc32c(kind, payload)][u8 kind][payload]
 * (big-endian), len = 1 + payload bytes, bounded by PEER_MAX_FRAME; a frame
 * that fails its checksum or decoding closes the connection (counted). A
 * connection starts with a HELLO both ways (cluster id, sender id, receiver
 * id, protocol version); a cluster id mismatch closes it ("request cluster ID
 * mismatch", as etcd logs).
 *
 * Threads: one sender per peer (a bounded queue of encoded frames,
 * batched into one write, reconnect with backoff), one listener, a reader
 * per inbound connection (bounded), and one streamer per outgoing snapshot.
 * No call here blocks except peer_fetch_members, peer_request and peer_stop.
 */
#ifndef KSHIM_RAFT_PEER_H
#define KSHIM_RAFT_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"

#define PEER_MAX_URLS 8
#define PEER_MAX_FRAME (64u << 20)

enum {
    PEER_OK = 0,
    PEER_ERR_FULL = -1,    /* the peer's queue is full: message dropped (counted) */
    PEER_ERR_UNKNOWN = -2, /* no such peer */
    PEER_ERR_INVALID = -3, /* bad argument, URL or message */
    PEER_ERR_NOMEM = -4,
    PEER_ERR_IO = -5, /* connect/handshake/read/write failed */
    PEER_ERR_TIMEOUT = -6,
    PEER_ERR_MISMATCH = -7, /* the other side belongs to another cluster */
    PEER_ERR_REFUSED = -8,  /* a certificate was refused after the TLS handshake (allowed CN/hostname,
                               the URL's host): ours by the other side, or theirs by us */
    PEER_ERR_REMOVED = -9,  /* the other side says this member was removed from the cluster */
};

/* TLS of the peer port (etcd's --peer-* flags). All NULL/0: plain TCP. */
typedef struct peer_tls {
    const char *cert_file, *key_file; /* this member's certificate (server and client) */
    const char *trusted_ca_file;      /* verify the other side with this CA */
    int client_cert_auth;             /* the listener requires a client certificate */
    const char *crl_file;             /* --peer-crl-file */
    const char *allowed_cn;           /* --peer-cert-allowed-cn: the client cert's CN must equal it */
    const char *allowed_hostname;     /* --peer-cert-allowed-hostname: a SAN/CN must match it */
} peer_tls_t;

typedef struct peer_stats {
    int connected;            /* an outgoing connection is up and handshaken */
    uint64_t active_since_ms; /* CLOCK_MONOTONIC ms the connection came up (0: not connected) */
    uint64_t sent_bytes, received_bytes;
    int last_error; /* PEER_OK or PEER_ERR_* (IO, MISMATCH, REFUSED, REMOVED) of the last connection attempt */
    uint64_t sent_frames, received_frames;
    uint64_t dropped;    /* frames dropped: queue full or connection lost */
    uint64_t bad_frames; /* checksum / decoding failures seen from this peer */
} peer_stats_t;

typedef struct peer_snapshot_sink peer_snapshot_sink_t;

typedef struct peer_config {
    uint64_t self_id;
    uint64_t cluster_id;            /* 0: unknown yet (a joining member learns it with peer_fetch_members) */
    const char *const *listen_urls; /* http(s)://ip:port, http(s)://localhost:port, unix(s)://path */
    size_t n_listen_urls;
    peer_tls_t tls;
    size_t queue_bytes; /* per peer, encoded frames waiting; 0 -> 4 MiB */

    /* Transport threads (several at once: one per inbound connection, no
     * transport lock held); the pointers are valid only during the call. */
    void (*on_raft)(void *ctx, const raft_msg_t *m);
    void (*on_app)(void *ctx, uint64_t from, uint8_t kind, const uint8_t *data, size_t len);
    /* A snapshot stream begins (m: the RAFT_MSG_SNAP it carries). Return a sink
     * to write into, or NULL to refuse. Chunks follow in order; end(ok = 1)
     * after the last one (checksummed end to end), end(ok = 0) if the stream
     * broke. The member then steps m into its node. */
    peer_snapshot_sink_t *(*on_snapshot_begin)(void *ctx, const raft_msg_t *m);
    int (*on_snapshot_chunk)(void *ctx, peer_snapshot_sink_t *sink, const uint8_t *data, size_t len);
    void (*on_snapshot_end)(void *ctx, peer_snapshot_sink_t *sink, int ok);
    /* Answers a joining member's peer_fetch_members: fill *out (malloc'd,
     * the transport frees it) with the member layer's encoded member list. */
    int (*on_members_request)(void *ctx, uint8_t **out, size_t *out_len);
    /* A peer (by) refused this member as removed from the cluster (its
     * HELLO answer; etcd's rafthttp answers 410 Gone): this member will
     * never be let in again and should stop. Called at most once. */
    void (*on_removed)(void *ctx, uint64_t by);
    /* Answers a peer_request of member `from` (a reader thread; it may
     * block): 0 with *out (malloc'd or NULL, the transport frees it), or -1
     * to answer "not answered" (the asker gets PEER_ERR_REFUSED). */
    int (*on_request)(void *ctx, uint64_t from, uint8_t kind, const uint8_t *data, size_t len, uint8_t **out,
                      size_t *out_len);
    void *ctx;
} peer_config_t;

typedef struct peer_transport peer_transport_t;

/* Binds every listen URL and starts the threads. NULL with a message in err. */
peer_transport_t *peer_start(const peer_config_t *cfg, char *err, size_t errlen);
/* Stops every thread, closes every connection, frees t. */
void peer_stop(peer_transport_t *t);

/* Adds a peer or replaces its URLs (connections are made lazily, to the
 * first URL that answers). */
int peer_add(peer_transport_t *t, uint64_t id, const char *const *urls, size_t n);
/* id was removed from the cluster: its sender writes what is queued and
 * exits, its inbound connections close, and from now on its HELLOs are
 * answered with status REMOVED (it hears PEER_ERR_REMOVED, on_removed), as
 * etcd's peers answer a removed member. A later peer_add of id lets it in again. */
void peer_remove(peer_transport_t *t, uint64_t id);
/* Learned after start by a joining member. */
void peer_set_cluster_id(peer_transport_t *t, uint64_t cluster_id);

/* Encodes m and queues it for m->to; never blocks. m->from must be this
 * member; a RAFT_MSG_SNAP goes through peer_send_snapshot (PEER_ERR_INVALID
 * here). A frame larger than queue_bytes is accepted into an empty queue. */
int peer_send_raft(peer_transport_t *t, const raft_msg_t *m);
/* An opaque message of the member layer (kind is the member's). */
int peer_send_app(peer_transport_t *t, uint64_t to, uint8_t kind, const void *data, size_t len);
/* Streams a snapshot to m->to on its own connection and thread: m (copied)
 * first, then what read() gives (returns bytes, 0 at the end, -1 error)
 * until the end; done(ok) is called once from that thread. read_ctx is the
 * caller's until done. PEER_ERR_FULL if a stream to that peer is running. */
int peer_send_snapshot(peer_transport_t *t, const raft_msg_t *m,
                       long (*read)(void *read_ctx, uint8_t *buf, size_t cap), void *read_ctx,
                       void (*done)(void *read_ctx, uint64_t to, int ok));
/* 1 while a snapshot stream to peer id runs (its done() not returned yet),
 * else 0: a caller can skip building a stream that would get PEER_ERR_FULL. */
int peer_snapshot_running(peer_transport_t *t, uint64_t id);
int peer_get_stats(peer_transport_t *t, uint64_t id, peer_stats_t *out);
/* The ids of the peers added (at most max copied); returns how many there are. */
size_t peer_list_ids(peer_transport_t *t, uint64_t *ids, size_t max);
/* The TCP port listen URL i is bound to (the kernel's pick for port 0), -1
 * for a unix socket or i out of range. */
int peer_listen_port(const peer_transport_t *t, size_t i);

/* Blocking, for a member joining an existing cluster before it starts:
 * asks each URL in turn for the member list (answered by the remote's
 * on_members_request) and its cluster id. *out is malloc'd (caller frees). */
int peer_fetch_members(const peer_tls_t *tls, const char *const *urls, size_t n, unsigned timeout_ms,
                       uint64_t *cluster_id, uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* Blocking: sends member `to` one request of the member layer (kind and
 * bytes are the caller's) on a connection of its own, to each of the
 * peer's URLs in turn until one answers, and waits for the answer (the
 * other side's on_request) up to timeout_ms per URL. cancel_fd >= 0: the
 * call gives up (PEER_ERR_IO) as soon as it becomes readable. *out is
 * malloc'd (caller frees; NULL for an empty answer). PEER_ERR_UNKNOWN (no
 * such peer), PEER_ERR_IO / PEER_ERR_TIMEOUT / PEER_ERR_MISMATCH (no URL
 * answered), PEER_ERR_REFUSED (the other side did not answer this kind).
 * The caller makes sure the call has returned before peer_stop(t). */
int peer_request(peer_transport_t *t, uint64_t to, uint8_t kind, const void *req, size_t len,
                 unsigned timeout_ms, int cancel_fd, uint8_t **out, size_t *out_len, char *err,
                 size_t errlen);

/* The wire encoding of a Raft message, exposed for tests and fuzzing.
 * peer_encode_raft: malloc'd buffer; peer_decode_raft: every length and
 * count checked against len; the decoded message points into buf and into
 * *scratch (malloc'd, caller frees) for the entry and member arrays. */
int peer_encode_raft(const raft_msg_t *m, uint8_t **out, size_t *out_len);
int peer_decode_raft(const uint8_t *buf, size_t len, raft_msg_t *m, void **scratch);

#endif
