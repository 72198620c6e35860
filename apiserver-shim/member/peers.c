/*
 * peers.c: the member's side of talking to other members: app-message
 * handlers by kind, request handlers by kind (answered on transport threads), sending to a member, who leads, and the reload hooks the
 * services register for a snapshot install (see server_internal.h, "peers").
 * The transport itself is raft/peer/ (kshim_peer); the wiring in server.c
 * starts it and routes its app frames to server_peer_dispatch.
 */
#include "server_internal.h"

#include <pthread.h>

#include "peer.h"

/* s->peer is used from the loop, raft, apply and transport threads; this
 * lock makes peer_stop wait for a use in progress (no call under it blocks). */
static pthread_mutex_t peer_mu = PTHREAD_MUTEX_INITIALIZER;

struct peer_transport *server_peer_acquire(server_t *s) {
    pthread_mutex_lock(&peer_mu);
    return s->peer;
}

void server_peer_release(void) { pthread_mutex_unlock(&peer_mu); }

int server_peer_send(server_t *s, uint64_t to, uint8_t kind, const void *data, size_t len) {
    peer_transport_t *t = server_peer_acquire(s);
    int rc = t ? peer_send_app(t, to, kind, data, len) : PEER_ERR_UNKNOWN; /* no peers */
    server_peer_release();
    return rc;
}

void server_peer_handle(server_t *s, uint8_t kind, server_peer_handler_fn fn) {
    if (kind < SERVER_PEER_KINDS) s->peer_handlers[kind] = fn;
}

void server_peer_handle_request(server_t *s, uint8_t kind, server_peer_request_fn fn) {
    if (kind < SERVER_PEER_REQ_KINDS) s->peer_request_handlers[kind] = fn;
}

int server_peer_answer(void *ctx, uint64_t from, uint8_t kind, const uint8_t *data, size_t len, uint8_t **out,
                       size_t *out_len) {
    server_t *s = ctx;
    server_peer_request_fn fn = kind < SERVER_PEER_REQ_KINDS ? s->peer_request_handlers[kind] : NULL;
    return fn ? fn(s, from, data, len, out, out_len) : -1;
}

uint64_t server_leader(server_t *s) {
    raft_node_status_t st;
    raft_node_status(s->raft, &st);
    return st.leader;
}

int server_is_leader(server_t *s) { return server_leader(s) == s->member_id; }

int server_add_reload_hook(server_t *s, server_reload_fn fn) {
    if (s->n_reload_hooks >= SERVER_MAX_RELOAD_HOOKS) return -1;
    s->reload_hooks[s->n_reload_hooks++] = fn;
    return 0;
}
