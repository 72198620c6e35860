/*
 * lease_keys.c: the lease side tables of the MVCC LevelDB, the one owner of
 * their encoding (see lease_keys.h): the 'L' lease records (written by the
 * lessor, lease/lease.c) and the 'M' attachment table (kept in step with
 * every Put/Delete by kv/kv.c, scanned by the lessor and the lease service).
 * Below both kv and lease, so neither includes the other for it.
 */
#include "lease_keys.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"

/* ---- encodings ---- */

void lease_record_key(uint8_t out[9], int64_t id) {
    out[0] = 'L';
    put_be64(out + 1, (uint64_t)id);
}

void member_prefix(uint8_t out[9], int64_t id) {
    out[0] = 'M';
    put_be64(out + 1, (uint64_t)id);
}

uint8_t *lease_member_key(int64_t id, const uint8_t *key, size_t key_len) {
    uint8_t *k = malloc(9 + key_len);
    if (!k) abort();
    member_prefix(k, id);
    if (key_len) memcpy(k + 9, key, key_len);
    return k;
}

int lease_txn_attach(mvcc_txn_t *t, int64_t id, const uint8_t *key, size_t key_len) {
    assert(id != 0);
    uint8_t *k = lease_member_key(id, key, key_len);
    int rc = mvcc_txn_raw_put(t, k, 9 + key_len, (const uint8_t *)"", 0);
    free(k);
    return rc;
}

int lease_txn_detach(mvcc_txn_t *t, int64_t id, const uint8_t *key, size_t key_len) {
    assert(id != 0);
    uint8_t *k = lease_member_key(id, key, key_len);
    int rc = mvcc_txn_raw_delete(t, k, 9 + key_len);
    free(k);
    return rc;
}

typedef struct key_scan {
    int (*fn)(void *arg, const uint8_t *key, size_t len);
    void *arg;
} key_scan_t;

static int key_scan_one(void *arg, const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len) {
    (void)val;
    (void)val_len;
    key_scan_t *ks = arg;
    assert(key_len >= 9); /* mvcc_raw_scan hands only keys with the 9-byte prefix */
    return ks->fn(ks->arg, key + 9, key_len - 9);
}

int lease_scan_keys(mvcc_t *m, int64_t id, int (*fn)(void *arg, const uint8_t *key, size_t len), void *arg) {
    uint8_t prefix[9];
    member_prefix(prefix, id);
    key_scan_t ks = {fn, arg};
    return mvcc_raw_scan(m, prefix, sizeof prefix, key_scan_one, &ks);
}

/* ---- records and loads ---- */

void lease_record_encode(uint8_t out[16], int64_t granted_ttl, int64_t remaining_ttl) {
    put_be64(out, (uint64_t)granted_ttl);
    put_be64(out + 8, (uint64_t)remaining_ttl);
}

int lease_record_decode(const uint8_t *val, size_t len, int64_t *granted_ttl, int64_t *remaining_ttl) {
    if (len < 8) return -1;
    *granted_ttl = (int64_t)get_be64(val);
    *remaining_ttl = len >= 16 ? (int64_t)get_be64(val + 8) : 0;
    return 0;
}

int lease_load_record(mvcc_load_t *l, int64_t id, int64_t granted_ttl, int64_t remaining_ttl) {
    uint8_t key[9], val[16];
    lease_record_key(key, id);
    lease_record_encode(val, granted_ttl, remaining_ttl);
    return mvcc_load_raw(l, key, sizeof key, val, sizeof val);
}

int lease_load_attach(mvcc_load_t *l, int64_t id, const uint8_t *key, size_t key_len) {
    uint8_t *k = lease_member_key(id, key, key_len);
    int rc = mvcc_load_raw(l, k, 9 + key_len, (const uint8_t *)"", 0);
    free(k);
    return rc;
}
