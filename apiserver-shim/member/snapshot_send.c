/*
 * snapshot_send.c: the leader's side of a Raft snapshot (snapshot.h): starts
 * the stream of the whole store to a follower on the peer transport. Kept
 * apart from snapshot.c because it is the one part that needs the transport
 * (raft/peer, target kshim_peer, linked by the wiring).
 */
#include "snapshot.h"

#include "log.h"
#include "peer.h"

void server_send_snapshot(void *ctx, const raft_msg_t *m) {
    server_t *s = ctx;
    /* A stream to that member is still running (Raft's retry timer, two
     * election timeouts, is shorter than a big store's transfer): it will
     * report how it ended. Reporting a failure now would only have Raft ask
     * again at the next heartbeat answer, building and dropping a store
     * export every time, for as long as the stream runs. */
    if (s->peer && peer_snapshot_running(s->peer, m->to)) return;
    server_snapshot_stream_t *st = s->peer ? server_snapshot_stream_new(s, m->to, m->snapshot->index) : NULL;
    if (!st) {
        raft_node_report_snapshot(s->raft, m->to, 0);
        return;
    }
    int rc = peer_send_snapshot(s->peer, m, server_snapshot_stream_read, st, server_snapshot_stream_done);
    if (rc != PEER_OK) {
        /* PEER_ERR_FULL: a stream to that member is running; Raft asks again */
        server_snapshot_stream_done(st, m->to, 0);
    }
}
