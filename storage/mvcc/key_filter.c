/*
 * key_filter.c: a blocked Bloom filter of keys (key_filter.h).
 *
 * A key's 64-bit hash picks a block of 512 bits (the high half, masked by
 * the power-of-two block count) and KEY_FILTER_PROBES bits inside it (9
 * bits each from a second mix of the hash). The hash reads the key 8 bytes
 * at a time through murmur3's 64-bit finalizer.
 */
#include "key_filter.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_WORDS 8 /* 512 bits */
#define BITS_PER_KEY 16
#define MIN_BLOCKS 1024 /* 64 KiB */
#define KEY_FILTER_PROBES 7

struct key_filter {
    _Atomic uint64_t *words;
    uint64_t block_mask; /* blocks - 1 */
    uint64_t capacity;
};

static uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t key_filter_hash(const uint8_t *key, size_t len) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)len * 0xc2b2ae3d27d4eb4fULL);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, key, 8);
        h = (h ^ fmix64(w)) * 0x9e3779b97f4a7c15ULL;
        key += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, key, len);
    return fmix64(h ^ fmix64(tail ^ 0x5bd1e9955bd1e995ULL));
}

key_filter_t *key_filter_new(uint64_t keys) {
    uint64_t want = keys * BITS_PER_KEY / (BLOCK_WORDS * 64) + 1, blocks = MIN_BLOCKS;
    while (blocks < want) blocks <<= 1;
    key_filter_t *f = malloc(sizeof *f);
    if (!f) return NULL;
    f->words = calloc(blocks * BLOCK_WORDS, sizeof(uint64_t));
    if (!f->words) {
        free(f);
        return NULL;
    }
    f->block_mask = blocks - 1;
    f->capacity = blocks * BLOCK_WORDS * 64 / BITS_PER_KEY;
    return f;
}

void key_filter_free(key_filter_t *f) {
    if (!f) return;
    free((void *)f->words);
    free(f);
}

uint64_t key_filter_capacity(const key_filter_t *f) { return f->capacity; }

/* The block's first word, and the probe bits (9 bits each) in *bits. */
static _Atomic uint64_t *block_of(const key_filter_t *f, uint64_t hash, uint64_t *bits) {
    *bits = fmix64(hash ^ 0x27d4eb2f165667c5ULL);
    return f->words + ((hash >> 32) & f->block_mask) * BLOCK_WORDS;
}

void key_filter_add(key_filter_t *f, uint64_t hash) {
    uint64_t bits;
    _Atomic uint64_t *b = block_of(f, hash, &bits);
    for (int i = 0; i < KEY_FILTER_PROBES; i++, bits >>= 9) {
        unsigned bit = (unsigned)(bits & 511);
        atomic_fetch_or_explicit(&b[bit >> 6], 1ULL << (bit & 63), memory_order_relaxed);
    }
}

int key_filter_may_contain(const key_filter_t *f, uint64_t hash) {
    uint64_t bits;
    _Atomic uint64_t *b = block_of(f, hash, &bits);
    for (int i = 0; i < KEY_FILTER_PROBES; i++, bits >>= 9) {
        unsigned bit = (unsigned)(bits & 511);
        if (!(atomic_load_explicit(&b[bit >> 6], memory_order_relaxed) & (1ULL << (bit & 63)))) return 0;
    }
    return 1;
}
