/*
 * test_raft_util.h: helpers shared by the raft-layer tests (temp dirs, deep
 * copies of Raft messages for simulated networks).
 * Header-only on purpose: each test is one executable.
 */
#ifndef KSHIM_TEST_RAFT_UTIL_H
#define KSHIM_TEST_RAFT_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "raft.h"

static inline int test_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void test_rm_rf(const char *path) { nftw(path, test_rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh directory under $KSHIM_TEST_TMP (or /tmp); out must hold 256. */
static inline void test_mkdtemp(char *out, const char *prefix) {
    const char *base = getenv("KSHIM_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    snprintf(out, 256, "%s/%s-XXXXXX", base, prefix);
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        abort();
    }
}

static inline void *test_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

/* A deep copy of src (entries' data and the snapshot metadata), so the
 * message outlives the ready it came from; test_msg_free releases it. */
static inline void test_msg_copy(raft_msg_t *dst, const raft_msg_t *src) {
    *dst = *src;
    dst->entries = NULL;
    if (src->snapshot) {
        const raft_snapshot_meta_t *sm = src->snapshot;
        raft_snapshot_meta_t *c =
            test_xmalloc(sizeof(*c) + (sm->n_voters + sm->n_learners) * sizeof(uint64_t));
        uint64_t *ids = (uint64_t *)(c + 1);
        memcpy(ids, sm->voters, sm->n_voters * sizeof(uint64_t));
        if (sm->n_learners) memcpy(ids + sm->n_voters, sm->learners, sm->n_learners * sizeof(uint64_t));
        *c = *sm;
        c->voters = ids;
        c->learners = ids + sm->n_voters;
        dst->snapshot = c;
    }
    if (!src->n_entries) return;
    dst->entries = test_xmalloc(src->n_entries * sizeof(raft_entry_t));
    for (size_t i = 0; i < src->n_entries; i++) {
        dst->entries[i] = src->entries[i];
        if (src->entries[i].len) {
            uint8_t *d = test_xmalloc(src->entries[i].len);
            memcpy(d, src->entries[i].data, src->entries[i].len);
            dst->entries[i].data = d;
        }
    }
}

static inline void test_msg_free(raft_msg_t *m) {
    for (size_t i = 0; i < m->n_entries; i++) free((void *)m->entries[i].data);
    free(m->entries);
    free((void *)m->snapshot);
}

#endif
