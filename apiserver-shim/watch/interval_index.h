/*
 * interval_index.h: a key -> subscribers index over byte-string key ranges.
 *
 * Owns the lookup structure the watch hub uses to find, for one written key,
 * every synced watcher whose key range contains it, without looking at the
 * others. Subscribers are intrusive links (ivx_link_t embedded in the caller's
 * struct); the index never allocates or frees them.
 *
 * Three kinds of ranges (bytes compare as memcmp, shorter prefix first):
 *   IVX_KEY   exactly one key             -> hash map keyed by the key bytes
 *   IVX_RANGE [key, end)                  -> interval treap
 *   IVX_FROM  [key, +infinity)            -> interval treap (end = +inf)
 * Links with identical (kind, key, end) share one node, so many watchers on
 * the same prefix cost one node and are reported as one group.
 *
 * The treap is keyed by (start, end) and each node carries the node with the
 * largest end in its subtree. A stabbing query for key k prunes every subtree
 * whose largest end is <= k and every right subtree whose root starts after k:
 * it visits O(log n + matching nodes) nodes for disjoint ranges (expected),
 * and no node at all when k lies past every range. `visits` counts the nodes
 * examined so tests can assert that cost.
 *
 * Not thread-safe: the hub uses it from the loop thread only.
 */
#ifndef KSHIM_INTERVAL_INDEX_H
#define KSHIM_INTERVAL_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef enum ivx_kind { IVX_KEY = 0, IVX_RANGE = 1, IVX_FROM = 2 } ivx_kind_t;

typedef struct ivx ivx_t;
typedef struct ivx_node ivx_node_t;

/* Embed one in each subscriber. Owned by the caller; linked while inserted. */
typedef struct ivx_link {
    ivx_node_t *node;             /* NULL while not in an index */
    struct ivx_link *prev, *next; /* siblings with the same range */
} ivx_link_t;

typedef struct ivx_stats {
    uint64_t visits;  /* nodes examined by ivx_stab (treap nodes + hash hits) */
    uint64_t matches; /* links reported by ivx_stab */
    size_t keys;      /* single-key nodes */
    size_t ranges;    /* treap nodes */
    size_t links;     /* links inserted */
} ivx_stats_t;

typedef void (*ivx_visit_fn)(void *arg, ivx_link_t *link);

/* seed drives the treap priorities (deterministic for a given seed). NULL on
 * allocation failure. */
ivx_t *ivx_new(uint64_t seed);
/* Frees the index's nodes; links still inserted are left dangling (callers
 * remove them first or never touch them again). */
void ivx_free(ivx_t *x);

/* Insert link under the range. For IVX_KEY, end is ignored; for IVX_FROM, end
 * is ignored; for IVX_RANGE the caller guarantees key < end. Returns 0, or -1
 * on allocation failure (link untouched). */
int ivx_insert(ivx_t *x, ivx_link_t *link, ivx_kind_t kind, const uint8_t *key, size_t key_len,
               const uint8_t *end, size_t end_len);
/* Remove an inserted link (O(1), or O(log n) when its node empties). */
void ivx_remove(ivx_t *x, ivx_link_t *link);

/* Call fn for every link whose range contains key. fn must not insert into or
 * remove from the index. Returns the number of links reported. */
size_t ivx_stab(ivx_t *x, const uint8_t *key, size_t key_len, ivx_visit_fn fn, void *arg);

/* True if key lies in the range (the same rule ivx_stab applies). */
int ivx_range_contains(ivx_kind_t kind, const uint8_t *start, size_t start_len, const uint8_t *end,
                       size_t end_len, const uint8_t *key, size_t key_len);

void ivx_get_stats(const ivx_t *x, ivx_stats_t *out);
void ivx_reset_visit_stats(ivx_t *x);

/* Self-check of every treap invariant (ordering, heap, max-end). Returns 0 if
 * sound; for tests. */
int ivx_check(const ivx_t *x);

#endif
