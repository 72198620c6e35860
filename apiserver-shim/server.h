/*
 * server.h: one kshim member: server_run(), which opens the MVCC store and
 * the Raft node, registers the etcd gRPC services and runs the event loop
 * until SIGINT/SIGTERM. Its configuration is in member/server_config.h.
 */
#ifndef KSHIM_SERVER_H
#define KSHIM_SERVER_H

#include "server_config.h"

/* Runs the member until a termination signal. Returns a process exit code. */
int server_run(const server_config_t *cfg);

#endif
