/*
 * pending.h: calls waiting for their Raft entry to be applied, keyed by the
 * request id carried in the entry (kshim.RequestHeader.ID). Loop thread only.
 * The table holds one call reference per entry, and at most max entries:
 * past that pending_add refuses (the caller answers "too many requests").
 */
#ifndef KSHIM_PENDING_H
#define KSHIM_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "grpc.h"

typedef struct pending_table pending_table_t;

enum { PENDING_FULL = -2 };

/* max: most entries at once (0 = no limit). */
pending_table_t *pending_new(size_t max);
/* Drops every entry, releasing its call reference (calls are not answered). */
void pending_free(pending_table_t *t);
/* Takes a reference on call; deadline_ms is a loop-clock time after which
 * pending_expire hands the call back. Returns 0, PENDING_FULL when max
 * entries are pending, or -1 on allocation failure. */
int pending_add(pending_table_t *t, uint64_t id, grpc_call_t *call, uint64_t deadline_ms);
/* Removes and returns the call (its reference passes to the caller), or NULL. */
grpc_call_t *pending_take(pending_table_t *t, uint64_t id);
size_t pending_count(const pending_table_t *t);
/* Removes every entry whose deadline is <= now_ms and calls fn with its call
 * (the reference passes to fn). Returns how many expired. O(entries). */
size_t pending_expire(pending_table_t *t, uint64_t now_ms, void (*fn)(grpc_call_t *call, void *arg),
                      void *arg);

#endif
