/*
 * key_filter.h: a Bloom filter of byte-string keys, for live_filter.c.
 *
 * Owns: the bit array and the hashing. Answers "certainly never added" or
 * "maybe added"; no false negatives. Blocked: the bits of one key lie in
 * one 64-byte block (one cache line per lookup), seven of them.
 * Adds may run on several threads at once (atomic OR into the words) and
 * beside lookups; a lookup sees every add that happened before it in the
 * C11 memory model's sense. Nothing is ever removed.
 */
#ifndef KSHIM_KEY_FILTER_H
#define KSHIM_KEY_FILTER_H

#include <stddef.h>
#include <stdint.h>

typedef struct key_filter key_filter_t;

/* Sized for `keys` keys at about 16 bits a key (at least 64 KiB), which
 * keeps false positives near 0.1% up to that many. NULL: out of memory. */
key_filter_t *key_filter_new(uint64_t keys);
void key_filter_free(key_filter_t *f);
/* How many keys it was sized for. */
uint64_t key_filter_capacity(const key_filter_t *f);
uint64_t key_filter_hash(const uint8_t *key, size_t len);
void key_filter_add(key_filter_t *f, uint64_t hash);
/* 0: never added; 1: maybe. */
int key_filter_may_contain(const key_filter_t *f, uint64_t hash);

#endif
