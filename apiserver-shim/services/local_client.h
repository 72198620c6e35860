/*
 * local_client.h: an asynchronous in-process etcd client for services built
 * on the others, as etcd 3.4's v3lock and v3election servers are built on
 * its embedded clientv3 (v3client): every request is a local call
 * (grpc_call_local_new) of the registered KV, Lease or Watch method, so it
 * gets the same validation, auth checks (the caller's token and client
 * certificate name are passed on), Raft proposal and answers as a client
 * request would.
 *
 * Owns every local call it starts (the registry in server_t.lclient) and the
 * copies of what they answer. Callbacks never run inside the caller or
 * inside another service: each call's answers are queued and handed over
 * from a 0 ms loop timer, so a callback may start or cancel calls freely.
 * Loop thread only.
 */
#ifndef KSHIM_LOCAL_CLIENT_H
#define KSHIM_LOCAL_CLIENT_H

#include <protobuf-c/protobuf-c.h>

#include "services.h"

/* Who the requests are made as: copied from the client call, so requests
 * made after it ended (a cleanup) still carry its identity. */
typedef struct lc_ident {
    char *token;   /* gRPC "token" metadata, or NULL */
    char *peer_cn; /* verified client certificate CN, or NULL */
} lc_ident_t;

/* 0, or -1 (no memory; *id cleared). */
int lc_ident_from_call(lc_ident_t *id, grpc_call_t *call);
void lc_ident_clear(lc_ident_t *id);

typedef struct lc_call lc_call_t;

/* The call finished: its status, message (NULL when OK) and, for a unary
 * call, its response message (NULL, 0 when none); valid during the call. */
typedef void (*lc_done_fn)(void *arg, grpc_status_t st, const char *msg, const uint8_t *resp, size_t len);
/* One message of a streaming call, valid during the call. */
typedef void (*lc_msg_fn)(void *arg, const uint8_t *msg, size_t len);
/* What the consumer of a stream still holds (a slow reader slows the
 * stream down: the local call's grpc_call_send_queued). */
typedef size_t (*lc_queued_fn)(void *arg);

/* Starts the unary method at path with req. Until done runs, *slot is the
 * call (lc_cancel(*slot) stops it: done is then never called); it is set
 * to NULL before done runs. done may be NULL: fire and forget (slot too).
 * done always runs later, from the loop, never inside lc_unary (failures
 * to start included). */
void lc_unary(server_t *s, const lc_ident_t *id, const char *path, const ProtobufCMessage *req,
              lc_done_fn done, void *arg, lc_call_t **slot);
/* Starts the streaming method at path with req as its first request
 * message: on_msg for each response message, then done (resp NULL) when
 * the method finishes. queued may be NULL. */
void lc_stream(server_t *s, const lc_ident_t *id, const char *path, const ProtobufCMessage *req,
               lc_msg_fn on_msg, lc_queued_fn queued, lc_done_fn done, void *arg, lc_call_t **slot);
/* Stops a call: no callback runs after this; the method sees a cancel.
 * NULL is a no-op. */
void lc_cancel(lc_call_t *c);

/* Drops every call still running (the loop has stopped; before the KV,
 * Lease and Watch services stop). */
void local_client_stop(server_t *s);

/* The byte string after prefix p (n bytes) for a prefix range:
 * clientv3.GetPrefixRangeEnd. Writes at most n bytes into out; returns the
 * length ("\0" when every byte is 0xff, length 1). */
size_t lc_prefix_end(const uint8_t *p, size_t n, uint8_t *out);

/* etcd's in-process client turns a server error it knows (an etcdserver:
 * or mvcc: text) into an error without gRPC status, so the Lock and
 * Election servers answer it as Unknown with the same text; other
 * statuses pass as they are. */
grpc_status_t lc_outer_status(grpc_status_t st, const char *msg);

#endif
