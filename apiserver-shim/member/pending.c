/*
 * pending.c: the request-id -> call table (see pending.h). Chained hashing
 * with a power-of-two bucket array that doubles when the load passes 1, so
 * add and take are O(1) however many writes are in flight; bounded by max.
 */
#include "pending.h"

#include <assert.h>
#include <stdlib.h>

typedef struct pending_entry {
    uint64_t id;
    uint64_t deadline_ms;
    grpc_call_t *call;
    struct pending_entry *next;
} pending_entry_t;

struct pending_table {
    pending_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    size_t max; /* 0 = no limit */
};

static size_t bucket_of(uint64_t id, size_t nbuckets) {
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t)(id & (nbuckets - 1));
}

pending_table_t *pending_new(size_t max) {
    pending_table_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->max = max;
    t->nbuckets = 256;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    return t;
}

void pending_free(pending_table_t *t) {
    if (!t) return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        pending_entry_t *e = t->buckets[i];
        while (e) {
            pending_entry_t *next = e->next;
            grpc_call_unref(e->call);
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    free(t);
}

static void grow(pending_table_t *t) {
    size_t n = t->nbuckets * 2;
    pending_entry_t **b = calloc(n, sizeof *b);
    if (!b) return; /* keep the old, longer chains: still correct */
    for (size_t i = 0; i < t->nbuckets; i++) {
        pending_entry_t *e = t->buckets[i];
        while (e) {
            pending_entry_t *next = e->next;
            size_t k = bucket_of(e->id, n);
            e->next = b[k];
            b[k] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

int pending_add(pending_table_t *t, uint64_t id, grpc_call_t *call, uint64_t deadline_ms) {
    if (t->max && t->count >= t->max) return PENDING_FULL;
    pending_entry_t *e = malloc(sizeof *e);
    if (!e) return -1;
    if (t->count >= t->nbuckets) grow(t);
    size_t k = bucket_of(id, t->nbuckets);
    e->id = id;
    e->deadline_ms = deadline_ms;
    e->call = call;
    e->next = t->buckets[k];
    t->buckets[k] = e;
    t->count++;
    grpc_call_ref(call);
    return 0;
}

grpc_call_t *pending_take(pending_table_t *t, uint64_t id) {
    pending_entry_t **pp = &t->buckets[bucket_of(id, t->nbuckets)];
    for (; *pp; pp = &(*pp)->next) {
        pending_entry_t *e = *pp;
        if (e->id == id) {
            grpc_call_t *call = e->call;
            *pp = e->next;
            free(e);
            assert(t->count > 0);
            t->count--;
            return call;
        }
    }
    return NULL;
}

size_t pending_count(const pending_table_t *t) { return t->count; }

size_t pending_expire(pending_table_t *t, uint64_t now_ms, void (*fn)(grpc_call_t *call, void *arg),
                      void *arg) {
    size_t expired = 0;
    for (size_t i = 0; i < t->nbuckets; i++) {
        pending_entry_t **pp = &t->buckets[i];
        while (*pp) {
            pending_entry_t *e = *pp;
            if (e->deadline_ms > now_ms) {
                pp = &e->next;
                continue;
            }
            *pp = e->next;
            t->count--;
            expired++;
            grpc_call_t *call = e->call;
            free(e);
            fn(call, arg);
        }
    }
    return expired;
}
