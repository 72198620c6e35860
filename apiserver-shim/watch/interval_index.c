/*
 * interval_index.c: the watch hub's key -> watchers index (see
 * interval_index.h). Owns the index nodes and their key copies: a hash map of
 * single-key nodes and a treap of range nodes augmented with the largest end
 * in each subtree. Links are the caller's.
 */
#include "interval_index.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"

struct ivx_node {
    ivx_kind_t kind;
    uint8_t *key;
    size_t key_len;
    uint8_t *end; /* IVX_RANGE only */
    size_t end_len;
    ivx_link_t *links;
    size_t nlinks;
    /* IVX_KEY: hash chain */
    ivx_node_t *hnext;
    uint64_t hash;
    /* IVX_RANGE / IVX_FROM: treap */
    ivx_node_t *left, *right;
    uint64_t prio;
    ivx_node_t *maxn; /* node with the largest end in this subtree */
};

struct ivx {
    ivx_node_t **buckets;
    size_t nbuckets; /* power of two */
    size_t nkeys;
    ivx_node_t *root;
    size_t nranges;
    size_t nlinks;
    uint64_t rng;
    uint64_t visits;
    uint64_t matches;
};

/* ---- byte strings and range ends ---- */

/* Ends of treap nodes: IVX_FROM is +infinity. */
static int end_cmp(const ivx_node_t *a, const ivx_node_t *b) {
    int ainf = a->kind == IVX_FROM, binf = b->kind == IVX_FROM;
    if (ainf || binf) return ainf - binf;
    return bytes_cmp(a->end, a->end_len, b->end, b->end_len);
}

static int end_after_key(const ivx_node_t *n, const uint8_t *key, size_t key_len) {
    if (n->kind == IVX_FROM) return 1;
    return bytes_cmp(n->end, n->end_len, key, key_len) > 0;
}

/* Treap order: by start, then by end. */
static int node_cmp(const ivx_node_t *a, const ivx_node_t *b) {
    int c = bytes_cmp(a->key, a->key_len, b->key, b->key_len);
    return c != 0 ? c : end_cmp(a, b);
}

int ivx_range_contains(ivx_kind_t kind, const uint8_t *start, size_t start_len, const uint8_t *end,
                       size_t end_len, const uint8_t *key, size_t key_len) {
    int c = bytes_cmp(start, start_len, key, key_len);
    if (kind == IVX_KEY) return c == 0;
    if (c > 0) return 0;
    if (kind == IVX_FROM) return 1;
    return bytes_cmp(end, end_len, key, key_len) > 0;
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static uint64_t next_prio(ivx_t *x) {
    uint64_t s = x->rng; /* xorshift64* */
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    x->rng = s;
    return s * 2685821657736338717ULL;
}

/* ---- nodes ---- */

static ivx_node_t *node_new(ivx_kind_t kind, const uint8_t *key, size_t key_len, const uint8_t *end,
                            size_t end_len) {
    ivx_node_t *n = calloc(1, sizeof(*n));
    if (!n) return NULL;
    n->kind = kind;
    n->key = malloc(key_len ? key_len : 1);
    if (!n->key) goto fail;
    if (key_len) memcpy(n->key, key, key_len);
    n->key_len = key_len;
    if (kind == IVX_RANGE) {
        n->end = malloc(end_len ? end_len : 1);
        if (!n->end) goto fail;
        if (end_len) memcpy(n->end, end, end_len);
        n->end_len = end_len;
    }
    n->maxn = n;
    return n;
fail:
    free(n->key);
    free(n);
    return NULL;
}

static void node_free(ivx_node_t *n) {
    free(n->key);
    free(n->end);
    free(n);
}

/* ---- single keys: hash map ---- */

static int hash_grow(ivx_t *x) {
    size_t nb = x->nbuckets * 2;
    ivx_node_t **b = calloc(nb, sizeof(*b));
    if (!b) return -1;
    for (size_t i = 0; i < x->nbuckets; i++) {
        ivx_node_t *n = x->buckets[i];
        while (n) {
            ivx_node_t *next = n->hnext;
            size_t j = n->hash & (nb - 1);
            n->hnext = b[j];
            b[j] = n;
            n = next;
        }
    }
    free(x->buckets);
    x->buckets = b;
    x->nbuckets = nb;
    return 0;
}

static ivx_node_t *hash_find(const ivx_t *x, const uint8_t *key, size_t key_len, uint64_t h) {
    for (ivx_node_t *n = x->buckets[h & (x->nbuckets - 1)]; n; n = n->hnext)
        if (n->hash == h && bytes_cmp(n->key, n->key_len, key, key_len) == 0) return n;
    return NULL;
}

static void hash_unlink(ivx_t *x, ivx_node_t *n) {
    ivx_node_t **pp = &x->buckets[n->hash & (x->nbuckets - 1)];
    while (*pp != n) {
        assert(*pp);
        pp = &(*pp)->hnext;
    }
    *pp = n->hnext;
    x->nkeys--;
}

/* ---- ranges: treap with max-end ---- */

static void treap_update(ivx_node_t *t) {
    t->maxn = t;
    if (t->left && end_cmp(t->left->maxn, t->maxn) > 0) t->maxn = t->left->maxn;
    if (t->right && end_cmp(t->right->maxn, t->maxn) > 0) t->maxn = t->right->maxn;
}

static ivx_node_t *rotate_right(ivx_node_t *t) {
    ivx_node_t *l = t->left;
    t->left = l->right;
    l->right = t;
    treap_update(t);
    treap_update(l);
    return l;
}

static ivx_node_t *rotate_left(ivx_node_t *t) {
    ivx_node_t *r = t->right;
    t->right = r->left;
    r->left = t;
    treap_update(t);
    treap_update(r);
    return r;
}

static ivx_node_t *treap_insert(ivx_node_t *t, ivx_node_t *n) {
    if (!t) return n;
    if (node_cmp(n, t) < 0) {
        t->left = treap_insert(t->left, n);
        if (t->left->prio > t->prio) return rotate_right(t);
    } else {
        t->right = treap_insert(t->right, n);
        if (t->right->prio > t->prio) return rotate_left(t);
    }
    treap_update(t);
    return t;
}

static ivx_node_t *treap_merge(ivx_node_t *a, ivx_node_t *b) {
    if (!a) return b;
    if (!b) return a;
    if (a->prio > b->prio) {
        a->right = treap_merge(a->right, b);
        treap_update(a);
        return a;
    }
    b->left = treap_merge(a, b->left);
    treap_update(b);
    return b;
}

static ivx_node_t *treap_delete(ivx_node_t *t, ivx_node_t *n) {
    assert(t);
    if (t == n) return treap_merge(t->left, t->right);
    if (node_cmp(n, t) < 0)
        t->left = treap_delete(t->left, n);
    else
        t->right = treap_delete(t->right, n);
    treap_update(t);
    return t;
}

static ivx_node_t *treap_find(ivx_node_t *t, const ivx_node_t *probe) {
    while (t) {
        int c = node_cmp(probe, t);
        if (c == 0) return t;
        t = c < 0 ? t->left : t->right;
    }
    return NULL;
}

/* ---- public ---- */

ivx_t *ivx_new(uint64_t seed) {
    ivx_t *x = calloc(1, sizeof(*x));
    if (!x) return NULL;
    x->nbuckets = 64;
    x->buckets = calloc(x->nbuckets, sizeof(*x->buckets));
    if (!x->buckets) {
        free(x);
        return NULL;
    }
    x->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
    return x;
}

static void treap_free_all(ivx_node_t *t) {
    while (t) {
        treap_free_all(t->left);
        ivx_node_t *r = t->right;
        node_free(t);
        t = r;
    }
}

void ivx_free(ivx_t *x) {
    if (!x) return;
    for (size_t i = 0; i < x->nbuckets; i++) {
        ivx_node_t *n = x->buckets[i];
        while (n) {
            ivx_node_t *next = n->hnext;
            node_free(n);
            n = next;
        }
    }
    free(x->buckets);
    treap_free_all(x->root);
    free(x);
}

static void node_add_link(ivx_node_t *n, ivx_link_t *link) {
    link->node = n;
    link->prev = NULL;
    link->next = n->links;
    if (n->links) n->links->prev = link;
    n->links = link;
    n->nlinks++;
}

int ivx_insert(ivx_t *x, ivx_link_t *link, ivx_kind_t kind, const uint8_t *key, size_t key_len,
               const uint8_t *end, size_t end_len) {
    assert(link->node == NULL);
    ivx_node_t *n;
    if (kind == IVX_KEY) {
        uint64_t h = hash_bytes(key, key_len);
        n = hash_find(x, key, key_len, h);
        if (!n) {
            if (x->nkeys >= x->nbuckets && hash_grow(x) != 0) return -1;
            n = node_new(IVX_KEY, key, key_len, NULL, 0);
            if (!n) return -1;
            n->hash = h;
            size_t j = h & (x->nbuckets - 1);
            n->hnext = x->buckets[j];
            x->buckets[j] = n;
            x->nkeys++;
        }
    } else {
        assert(kind == IVX_FROM || bytes_cmp(key, key_len, end, end_len) < 0);
        ivx_node_t probe = {.kind = kind,
                            .key = (uint8_t *)key,
                            .key_len = key_len,
                            .end = (uint8_t *)end,
                            .end_len = end_len};
        n = treap_find(x->root, &probe);
        if (!n) {
            n = node_new(kind, key, key_len, end, end_len);
            if (!n) return -1;
            n->prio = next_prio(x);
            x->root = treap_insert(x->root, n);
            x->nranges++;
        }
    }
    node_add_link(n, link);
    x->nlinks++;
    return 0;
}

void ivx_remove(ivx_t *x, ivx_link_t *link) {
    ivx_node_t *n = link->node;
    assert(n && n->nlinks > 0);
    if (link->prev)
        link->prev->next = link->next;
    else
        n->links = link->next;
    if (link->next) link->next->prev = link->prev;
    link->node = NULL;
    link->prev = link->next = NULL;
    n->nlinks--;
    x->nlinks--;
    if (n->nlinks > 0) return;
    if (n->kind == IVX_KEY) {
        hash_unlink(x, n);
    } else {
        x->root = treap_delete(x->root, n);
        x->nranges--;
    }
    node_free(n);
}

static size_t report_links(ivx_t *x, ivx_node_t *n, ivx_visit_fn fn, void *arg) {
    size_t count = 0;
    ivx_link_t *l = n->links;
    while (l) {
        ivx_link_t *next = l->next;
        fn(arg, l);
        count++;
        l = next;
    }
    x->matches += count;
    return count;
}

static size_t treap_stab(ivx_t *x, ivx_node_t *t, const uint8_t *key, size_t key_len, ivx_visit_fn fn,
                         void *arg) {
    size_t count = 0;
    while (t) {
        if (!end_after_key(t->maxn, key, key_len)) break; /* nothing here reaches past key */
        x->visits++;
        count += treap_stab(x, t->left, key, key_len, fn, arg);
        if (bytes_cmp(t->key, t->key_len, key, key_len) > 0) break; /* right starts later still */
        if (end_after_key(t, key, key_len)) count += report_links(x, t, fn, arg);
        t = t->right;
    }
    return count;
}

size_t ivx_stab(ivx_t *x, const uint8_t *key, size_t key_len, ivx_visit_fn fn, void *arg) {
    size_t count = 0;
    if (x->nkeys > 0) {
        ivx_node_t *n = hash_find(x, key, key_len, hash_bytes(key, key_len));
        if (n) {
            x->visits++;
            count += report_links(x, n, fn, arg);
        }
    }
    count += treap_stab(x, x->root, key, key_len, fn, arg);
    return count;
}

void ivx_get_stats(const ivx_t *x, ivx_stats_t *out) {
    out->visits = x->visits;
    out->matches = x->matches;
    out->keys = x->nkeys;
    out->ranges = x->nranges;
    out->links = x->nlinks;
}

void ivx_reset_visit_stats(ivx_t *x) {
    x->visits = 0;
    x->matches = 0;
}

/* Returns the node count of the subtree, or -1 on a broken invariant. */
static long treap_check(const ivx_node_t *t, const ivx_node_t *lo, const ivx_node_t *hi) {
    if (!t) return 0;
    if (lo && node_cmp(lo, t) >= 0) return -1;
    if (hi && node_cmp(t, hi) >= 0) return -1;
    if (t->left && t->left->prio > t->prio) return -1;
    if (t->right && t->right->prio > t->prio) return -1;
    if (t->nlinks == 0 || !t->links) return -1;
    const ivx_node_t *m = t;
    if (t->left && end_cmp(t->left->maxn, m) > 0) m = t->left->maxn;
    if (t->right && end_cmp(t->right->maxn, m) > 0) m = t->right->maxn;
    if (end_cmp(m, t->maxn) != 0) return -1;
    long l = treap_check(t->left, lo, t);
    long r = treap_check(t->right, t, hi);
    if (l < 0 || r < 0) return -1;
    return l + r + 1;
}

int ivx_check(const ivx_t *x) {
    long n = treap_check(x->root, NULL, NULL);
    if (n < 0 || (size_t)n != x->nranges) return -1;
    size_t keys = 0;
    for (size_t i = 0; i < x->nbuckets; i++)
        for (ivx_node_t *k = x->buckets[i]; k; k = k->hnext) {
            if (k->nlinks == 0 || (k->hash & (x->nbuckets - 1)) != i) return -1;
            keys++;
        }
    return keys == x->nkeys ? 0 : -1;
}
