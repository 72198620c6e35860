/*
 * kv_arena.h: a bump allocator owning everything one request builds (decoded
 * keys and values, response protobuf structs). Freed in one call once the
 * response has been packed. Allocation failure aborts: the process cannot do
 * anything useful without memory, and it keeps every caller simple.
 */
#ifndef KSHIM_KV_ARENA_H
#define KSHIM_KV_ARENA_H

#include <stddef.h>

typedef struct kv_arena_block kv_arena_block_t;

typedef struct kv_arena {
    kv_arena_block_t *head;
} kv_arena_t;

void kv_arena_init(kv_arena_t *a);
void kv_arena_free(kv_arena_t *a);
void *kv_arena_alloc(kv_arena_t *a, size_t size); /* zeroed, 16-aligned */
void *kv_arena_dup(kv_arena_t *a, const void *src, size_t size);

#endif
