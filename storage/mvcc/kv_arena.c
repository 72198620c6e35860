/*
 * kv_arena.c: bump allocator for per-request memory (see kv_arena.h).
 */
#include "kv_arena.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK_SIZE (64 * 1024)

struct kv_arena_block {
    kv_arena_block_t *next;
    size_t used;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

void kv_arena_init(kv_arena_t *a) { a->head = NULL; }

void kv_arena_free(kv_arena_t *a) {
    kv_arena_block_t *b = a->head;
    while (b) {
        kv_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

static kv_arena_block_t *arena_new_block(size_t cap) {
    kv_arena_block_t *b = malloc(sizeof(*b) + cap);
    if (!b) {
        fprintf(stderr, "kv_arena: out of memory (%zu bytes)\n", cap);
        abort();
    }
    b->next = NULL;
    b->used = 0;
    b->cap = cap;
    return b;
}

/* Uninitialised memory: kv_arena_dup overwrites all of it, so it skips the
 * zeroing kv_arena_alloc does (a big Range copies megabytes of values). */
static void *arena_alloc_raw(kv_arena_t *a, size_t size) {
    size_t need = (size + 15) & ~(size_t)15;
    if (need == 0) need = 16;
    kv_arena_block_t *b = a->head;
    if (!b || b->cap - b->used < need) {
        if (need > ARENA_BLOCK_SIZE / 4) {
            /* Big allocation: its own block, behind the current one so the
             * current block keeps serving small requests. */
            kv_arena_block_t *big = arena_new_block(need);
            big->used = need;
            if (b) {
                big->next = b->next;
                b->next = big;
            } else {
                a->head = big;
            }
            return big->data;
        }
        b = arena_new_block(ARENA_BLOCK_SIZE);
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += need;
    return p;
}

void *kv_arena_alloc(kv_arena_t *a, size_t size) {
    void *p = arena_alloc_raw(a, size);
    memset(p, 0, size ? size : 1);
    return p;
}

void *kv_arena_dup(kv_arena_t *a, const void *src, size_t size) {
    void *p = arena_alloc_raw(a, size);
    if (size) memcpy(p, src, size);
    return p;
}
