/*
 * lease_keys.h: the lease side tables of the MVCC LevelDB (lease_keys.c),
 * written in the same batch as the key changes and the applied index:
 *   'L' | id (8B BE)            -> granted TTL (8B BE) | remaining TTL (8B BE)
 *   'M' | id (8B BE) | user key -> ""   (key attached to lease id)
 * kv.c keeps 'M' in step with every Put/Delete (lease_txn_attach/detach);
 * the lessor (lease.c) writes 'L' and reads both. The other spaces of the
 * store are in mvcc_keys.h.
 */
#ifndef KSHIM_LEASE_KEYS_H
#define KSHIM_LEASE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "mvcc.h"

/* 'L' | id: the key of lease id's record. */
void lease_record_key(uint8_t out[9], int64_t id);
/* 'M' | id: the prefix of lease id's attached keys. */
void member_prefix(uint8_t out[9], int64_t id);
/* 'M' | id | key in a malloc'd buffer of 9 + key_len bytes (caller frees). */
uint8_t *lease_member_key(int64_t id, const uint8_t *key, size_t key_len);

/* Keys attached to lease id, in key order (committed state, any thread):
 * fn(arg, key, len) for each until it returns non-zero. */
int lease_scan_keys(mvcc_t *m, int64_t id, int (*fn)(void *arg, const uint8_t *key, size_t len), void *arg);

/* kv.c, inside a write txn: record / forget that key is attached to id. */
int lease_txn_attach(mvcc_txn_t *t, int64_t id, const uint8_t *key, size_t key_len);
int lease_txn_detach(mvcc_txn_t *t, int64_t id, const uint8_t *key, size_t key_len);

/* The 'L' record's value: granted TTL | remaining TTL (8B BE each). */
void lease_record_encode(uint8_t out[16], int64_t granted_ttl, int64_t remaining_ttl);
/* 0, or -1 for a value of another shape (lease.c reads the first 8 bytes). */
int lease_record_decode(const uint8_t *val, size_t len, int64_t *granted_ttl, int64_t *remaining_ttl);

/* A load (mvcc.h): the lease record of id, and key attached to id. */
int lease_load_record(mvcc_load_t *l, int64_t id, int64_t granted_ttl, int64_t remaining_ttl);
int lease_load_attach(mvcc_load_t *l, int64_t id, const uint8_t *key, size_t key_len);

#endif
