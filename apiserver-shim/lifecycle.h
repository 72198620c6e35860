/*
 * lifecycle.h: how a running kshimd member stops, and what it tells its
 * supervisor (lifecycle.c). The wiring (server.c) calls lifecycle_start once
 * the client URLs serve and lifecycle_stop before it frees the loop.
 */
#ifndef KSHIM_LIFECYCLE_H
#define KSHIM_LIFECYCLE_H

#include "server_internal.h"

enum { LIFECYCLE_DRAIN_MS = 2000 }; /* bound on finishing requests in flight */

/* SIGINT/SIGTERM: the first one drains (grpc_server_drain: no new
 * connections, streams cancelled, GOAWAY, unary requests in flight answered)
 * for up to LIFECYCLE_DRAIN_MS, then stops the loop: server_run then syncs
 * the store and returns 0. A second one exits at once (128 + signal).
 * (READY=1 goes to systemd from server.c, once the client URLs serve.)
 * Returns 0 or -1 (no pipe). */
int lifecycle_start(server_t *s);
void lifecycle_stop(server_t *s);

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET (a path,
 * or "@name" in the abstract namespace). No socket set: does nothing.
 * Returns 1 sent, 0 not under systemd, -1 error. */
int lifecycle_sd_notify(const char *state);

#endif
