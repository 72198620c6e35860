/*
 * mvcc_keys.h: the on-disk encoding of the MVCC store, internal to storage/
 * (mvcc.c, mvcc_compact.c, kv_history.c). The one owner of the key and
 * record layout:
 *
 *   'k' | esc(user key) | 00 01 | ~main (8B BE) | ~sub (8B BE)
 *        -> flags(1: bit0 tombstone) | create_rev(8) | version(8) | lease(8) | value
 *   'r' | main (8B BE) | sub (8B BE)  -> event type(1: 0 put, 1 delete) | user key
 *   'l' | esc(user key) | 00 01       -> empty (the key is alive now)
 *   'm' -> the apply thread's metadata, "mk" -> the live-key count with it (mvcc.c)
 *   'c' -> the compactor's progress (mvcc_compact.c)
 * The other spaces of the same LevelDB belong to the side tables, each with
 * one owner: 'L' and 'M' (leases, lease_keys.h in this folder), 'U', 'R'
 * and the auth flags (auth/auth_store.h, raw puts through mvcc_txn_raw_put),
 * 'a' (alarms, kv/kv_alarm.c). mvcc_defrag writes (deletes) the keys 00 and
 * FF FF FF FF, which no space uses.
 *
 * esc() maps 0x00 to 00 FF and keeps every other byte; with the 00 01
 * terminator, encoded keys sort like user keys for any bytes and all versions
 * of a key are adjacent, newest first (the revision is stored inverted).
 * Header-only: small static inline helpers, no state (the byte helpers they
 * use are proto/bytes.h).
 */
#ifndef KSHIM_MVCC_KEYS_H
#define KSHIM_MVCC_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bytes.h"

enum {
    MVCC_SPACE_KEY = 'k',
    MVCC_SPACE_REV = 'r',
    MVCC_SPACE_LIVE = 'l',
    MVCC_SPACE_META = 'm',
    MVCC_SPACE_COMPACT = 'c',
    /* Side tables owned by the layers above (named here so no two collide):
     * the member table (storage/cluster, MEMBER_SPACE). */
    MVCC_SPACE_MEMBERS = 'N',
};

#define REC_HDR 25     /* flags(1) | create_rev(8) | version(8) | lease(8) */
#define REV_SUFFIX 16  /* ~main | ~sub */
#define REV_KEY_LEN 17 /* 'r' | main | sub */

/* esc(key) into out (room for 2 * key_len); returns the length. */
static inline size_t escape_into(uint8_t *out, const uint8_t *key, size_t key_len) {
    size_t o = 0;
    for (size_t i = 0; i < key_len; i++) {
        out[o++] = key[i];
        if (key[i] == 0) out[o++] = 0xFF;
    }
    return o;
}

/* The user key of esc (esc_len bytes, without space byte and terminator)
 * into out (room for esc_len); returns its length. */
static inline size_t unescape_into(uint8_t *out, const uint8_t *esc, size_t esc_len) {
    size_t o = 0;
    for (size_t i = 0; i < esc_len; i++) {
        out[o++] = esc[i];
        if (esc[i] == 0) i++; /* skip the FF after a 00 */
    }
    return o;
}

/* Bytes needed for a full 'k' key of a user key of key_len bytes. */
static inline size_t mvcc_key_max(size_t key_len) { return 1 + 2 * key_len + 2 + REV_SUFFIX; }

/* space | esc(key) | 00 01 (room for mvcc_key_max - REV_SUFFIX); returns the length. */
static inline size_t mvcc_key_prefix(uint8_t *out, uint8_t space, const uint8_t *key, size_t key_len) {
    size_t o = 0;
    out[o++] = space;
    o += escape_into(out + o, key, key_len);
    out[o++] = 0x00;
    out[o++] = 0x01;
    return o;
}

static inline void encode_rev_suffix(uint8_t *out, int64_t main, int64_t sub) {
    put_be64(out, ~(uint64_t)main);
    put_be64(out + 8, ~(uint64_t)sub);
}

/* The seek target before the newest version with main <= rev: ~rev, then a
 * sub of UINT64_MAX (stored inverted: zeros). */
static inline void encode_rev_seek(uint8_t *out, int64_t rev) {
    put_be64(out, ~(uint64_t)rev);
    memset(out + 8, 0, 8);
}

static inline void decode_rev_suffix(const uint8_t *ek, size_t eklen, int64_t *main, int64_t *sub) {
    const uint8_t *p = ek + eklen - REV_SUFFIX;
    *main = (int64_t)~get_be64(p);
    *sub = (int64_t)~get_be64(p + 8);
}

/* The full 'k' key of one version (out has mvcc_key_max(key_len) bytes). */
static inline size_t mvcc_key_version(uint8_t *out, const uint8_t *key, size_t key_len, int64_t main,
                                      int64_t sub) {
    size_t n = mvcc_key_prefix(out, MVCC_SPACE_KEY, key, key_len);
    encode_rev_suffix(out + n, main, sub);
    return n + REV_SUFFIX;
}

static inline void encode_rev_key(uint8_t out[REV_KEY_LEN], int64_t main, int64_t sub) {
    out[0] = MVCC_SPACE_REV;
    put_be64(out + 1, (uint64_t)main);
    put_be64(out + 9, (uint64_t)sub);
}

#endif
