/*
 * snapshot.h: Raft snapshots of the member's state machine (member/snapshot.c,
 * member/snapshot_send.c), the callbacks the wiring (server.c) plugs into
 * the Raft node and the peer transport:
 *
 *   raft_node_config_t.send_snapshot    = server_send_snapshot     (ctx = s)
 *   raft_node_config_t.install_snapshot = server_install_snapshot  (ctx = s)
 *   peer_config_t.on_snapshot_begin     = server_snapshot_begin    (ctx = s)
 *   peer_config_t.on_snapshot_chunk     = server_snapshot_chunk
 *   peer_config_t.on_snapshot_end       = server_snapshot_end
 *
 * Leader: server_send_snapshot starts an export of the whole store
 * (storage/mvcc/mvcc_snapshot.h) and streams it with peer_send_snapshot;
 * when the stream ends, raft_node_report_snapshot(ok).
 * Follower: the stream's chunks build a staged copy of the store beside it;
 * a complete, verified stream steps the MsgSnap into the node; the node then
 * calls server_install_snapshot on the apply thread, which swaps the staged
 * copy in (the store reopens under the same mvcc_t), and has the loop thread
 * run every reload hook (server_add_reload_hook: lessor, auth caches,
 * watchers), waiting for them. One incoming stream at a time.
 */
#ifndef KSHIM_MEMBER_SNAPSHOT_H
#define KSHIM_MEMBER_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"
#include "server_internal.h"

typedef struct peer_snapshot_sink peer_snapshot_sink_t;

/* Raft thread (cfg.send_snapshot): never blocks. */
void server_send_snapshot(void *ctx, const raft_msg_t *m);
/* Apply thread (cfg.install_snapshot): 0, or -1 (fail-stop). */
int server_install_snapshot(void *ctx, const raft_snapshot_meta_t *meta);

/* Transport threads (peer_config_t.on_snapshot_*). */
peer_snapshot_sink_t *server_snapshot_begin(void *ctx, const raft_msg_t *m);
int server_snapshot_chunk(void *ctx, peer_snapshot_sink_t *sink, const uint8_t *data, size_t len);
void server_snapshot_end(void *ctx, peer_snapshot_sink_t *sink, int ok);

/* The outgoing stream, the read()/done() pair server_send_snapshot gives
 * peer_send_snapshot (exposed for tests). _new returns NULL when the store
 * cannot be exported or holds less than index. */
typedef struct server_snapshot_stream server_snapshot_stream_t;
server_snapshot_stream_t *server_snapshot_stream_new(server_t *s, uint64_t to, uint64_t index);
long server_snapshot_stream_read(void *stream, uint8_t *buf, size_t cap);
/* Frees the stream and reports the outcome to the node (if any). */
void server_snapshot_stream_done(void *stream, uint64_t to, int ok);

/* Main thread, once start-up replay is over and before the services start:
 * from now on an install has the loop run the reload hooks (before, during
 * wait_for_replay, the loop runs nothing and the apply thread runs them
 * itself). 0, or -1 out of memory. */
int server_snapshot_loop_serves(server_t *s);

/* Frees the receive state (server_run, at shutdown; after the transport stopped). */
void server_snapshot_free(server_t *s);

#endif
