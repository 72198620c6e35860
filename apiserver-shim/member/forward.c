/*
 * forward.c: proposals made on a follower, on their way to the leader and,
 * when the leader cannot take them, back (see server_internal.h).
 *
 *   follower, raft thread: server_node_forward sends the proposal's bytes
 *       (SERVER_PEER_FORWARD); a message the transport cannot take (the
 *       leader's queue full, no such peer) is answered here at once (or,
 *       for a proposal another member forwarded here while this one led,
 *       refused to that member);
 *   leader, loop: on_forward proposes them as forwarded by the sender
 *       (raft_node_propose_forwarded); a refusal there, or later through
 *       the node's cfg.refused (server_node_refused, raft thread: no longer
 *       leader, a leader transfer running, the in-flight bound, no leader
 *       within the wait, stopping), goes back to the member that proposed it
 *       (the header's proposer) as SERVER_PEER_FORWARD_REFUSED: the request
 *       id (8 bytes, big endian) and the reason (1 byte, -RAFT_NODE_ERR_*);
 *   follower, loop: on_forward_refused answers the waiting call at once,
 *       and the node stops counting the proposal in its in-flight bound.
 * etcd lets such a client wait for its request timeout ("etcdserver:
 * request timed out"); kshim answers etcd's errors for the cause at once:
 * "etcdserver: too many requests" (ResourceExhausted) when the leader was
 * full, "etcdserver: leader changed" (Unavailable) otherwise. A refused
 * proposal never reaches the log, so the answer is final. A refusal message
 * that is lost leaves the call to its request timeout, as before.
 * Also server_node_dropped: a proposal of ours that will not reach the log.
 */
#include <stdlib.h>

#include "bytes.h"
#include "log.h"
#include "peer.h"
#include "pending.h"
#include "server_internal.h"

static raft_node_t *raft_now(server_t *s) { return __atomic_load_n(&s->raft, __ATOMIC_ACQUIRE); }

typedef struct refused_call {
    server_t *s;
    uint64_t id;
    int reason;  /* RAFT_NODE_ERR_* */
    int by_peer; /* the leader refused it (else: our own node dropped it) */
} refused_call_t;

/* Loop: answer the call waiting for request id, if any. */
static void answer(server_t *s, uint64_t id, int reason, int by_peer) {
    grpc_call_t *c = pending_take(s->pending, id);
    if (!c) return;
    s->proposals_failed++;
    if (reason == RAFT_NODE_ERR_BUSY || (by_peer && reason == RAFT_NODE_ERR_NOMEM))
        grpc_call_finish(c, GRPC_RESOURCE_EXHAUSTED, "etcdserver: too many requests");
    else if (by_peer)
        grpc_call_finish(c, GRPC_UNAVAILABLE, "etcdserver: leader changed");
    else if (reason == RAFT_NODE_ERR_STOPPED)
        grpc_call_finish(c, GRPC_UNAVAILABLE, "etcdserver: server stopped");
    else
        grpc_call_finish(c, GRPC_UNAVAILABLE, "etcdserver: no leader");
    grpc_call_unref(c);
}

static void answer_posted(void *arg) {
    refused_call_t *r = arg;
    answer(r->s, r->id, r->reason, r->by_peer);
    free(r);
}

/* The request id and proposer of a proposal's bytes; 0 when it has none. */
static uint64_t request_id(const void *data, size_t len, uint64_t *proposer) {
    Kshim__InternalRequest *req = kshim__internal_request__unpack(NULL, len, data);
    uint64_t id = req && req->header ? req->header->id : 0;
    *proposer = req && req->header ? req->header->proposer : 0;
    if (req) kshim__internal_request__free_unpacked(req, NULL);
    return id;
}

/* Any thread but the loop: answer one of our calls there. */
static void post_answer(server_t *s, uint64_t id, int reason, int by_peer) {
    refused_call_t *r = id ? malloc(sizeof *r) : NULL;
    if (!r) return; /* the call waits for its request timeout */
    *r = (refused_call_t){s, id, reason, by_peer};
    if (loop_post(s->loop, answer_posted, r) != 0) free(r);
}

void server_node_dropped(void *ctx, const void *data, size_t len, int reason) {
    server_t *s = ctx;
    uint64_t proposer;
    uint64_t id = request_id(data, len, &proposer);
    if (id && proposer == s->member_id) post_answer(s, id, reason, 0);
}

static void send_refusal(server_t *s, uint64_t from, const void *data, size_t len, int reason);

void server_node_forward(void *ctx, uint64_t leader, const void *data, size_t len) {
    server_t *s = ctx;
    int rc = server_peer_send(s, leader, SERVER_PEER_FORWARD, data, len);
    if (rc == PEER_OK) return;
    /* never left: the leader cannot refuse what it never got */
    raft_node_t *n = raft_now(s);
    if (n) raft_node_forward_refused(n);
    int reason = rc == PEER_ERR_FULL ? RAFT_NODE_ERR_BUSY : RAFT_NODE_ERR_NOT_LEADER;
    uint64_t proposer;
    uint64_t id = request_id(data, len, &proposer);
    if (id && proposer == s->member_id)
        post_answer(s, id, reason, 1);
    else if (id)
        send_refusal(s, 0, data, len, reason); /* a proposal forwarded to us when we led */
}

/* Leader: tells the proposer of data (else from, who sent it) that it will
 * not reach the log. Any thread. */
static void send_refusal(server_t *s, uint64_t from, const void *data, size_t len, int reason) {
    uint64_t proposer;
    uint64_t id = request_id(data, len, &proposer);
    uint64_t to = proposer ? proposer : from;
    if (!id || !to || to == s->member_id) return;
    uint8_t msg[9];
    put_be64(msg, id);
    msg[8] = (uint8_t)-reason;
    if (server_peer_send(s, to, SERVER_PEER_FORWARD_REFUSED, msg, sizeof msg) != PEER_OK)
        log_debug("cannot tell member %llx its proposal was refused", (unsigned long long)to);
}

void server_node_refused(void *ctx, uint64_t from, const void *data, size_t len, int reason) {
    send_refusal(ctx, from, data, len, reason);
}

/* Leader, loop: a follower's proposal. */
static void on_forward(server_t *s, uint64_t from, const uint8_t *data, size_t len) {
    int rc = raft_node_propose_forwarded(s->raft, from, data, len);
    if (rc != RAFT_NODE_OK) send_refusal(s, from, data, len, rc);
}

/* Follower, loop: the leader refused one of our proposals. */
static void on_forward_refused(server_t *s, uint64_t from, const uint8_t *data, size_t len) {
    (void)from;
    if (len != 9) return; /* not ours to understand: as if lost */
    raft_node_forward_refused(s->raft);
    answer(s, get_be64(data), -(int)data[8], 1);
}

void server_forward_register(server_t *s) {
    server_peer_handle(s, SERVER_PEER_FORWARD, on_forward);
    server_peer_handle(s, SERVER_PEER_FORWARD_REFUSED, on_forward_refused);
}
