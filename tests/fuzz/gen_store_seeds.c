/*
 * gen_store_seeds.c: writes the seed corpora of fuzz_snapshot_recv and
 * fuzz_store_values from a real store (fuzz_store_fill) and its real
 * snapshot stream (mvcc_snapshot_export). The seeds are committed; run this
 * only when the store's encoding or the fill changes:
 *   cmake --build build --target gen_store_seeds
 *   build/gen_store_seeds tests/fuzz/corpus
 * corpus/fuzz_snapshot_recv/: the stream (and an empty store's) in several
 * chunkings, truncated, bit-flipped, with a byte past the end.
 * corpus/fuzz_store_values/: the base store alone, and each of its records
 * replaced by its own value cut short by one byte and cut in half.
 * The committed corpora are these seeds merged with what campaigns found,
 * minimized (libFuzzer -merge=1), plus the regress_* inputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_store_fill.h"
#include "mvcc_snapshot.h"
#include "test_raft_util.h"

typedef struct buf {
    uint8_t *p;
    size_t n;
} buf_t;

static void add(buf_t *b, const void *p, size_t n) {
    b->p = realloc(b->p, b->n + n + 1);
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

static int export_store(const char *dir, buf_t *out) {
    char err[256];
    mvcc_t *m = NULL;
    if (mvcc_open(dir, NULL, &m, err, sizeof err) != MVCC_OK) return -1;
    mvcc_snap_reader_t *r = NULL;
    if (mvcc_snapshot_export(m, &r) != MVCC_OK) return -1;
    uint8_t chunk[4096];
    long n;
    while ((n = mvcc_snap_reader_read(r, chunk, sizeof chunk)) > 0) add(out, chunk, (size_t)n);
    mvcc_snap_reader_free(r);
    mvcc_close(m);
    return n == 0 ? 0 : -1;
}

static const char *corpus;

static void seed(const char *target, const char *name, const buf_t *b) {
    char path[4096];
    snprintf(path, sizeof path, "%s/fuzz_%s/%s", corpus, target, name);
    if (fuzz_write_file(path, b->p, b->n) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

/* A snapshot_recv input: chunk sizes, then the first len bytes of s (flip:
 * one bit flipped at that offset, or -1). */
static void snap_seed(const char *name, const uint8_t *sizes, size_t n_sizes, const buf_t *s, size_t len,
                      long flip) {
    buf_t b = {0};
    uint8_t n = (uint8_t)n_sizes;
    add(&b, &n, 1);
    add(&b, sizes, n_sizes);
    size_t at = b.n;
    add(&b, s->p, len);
    if (flip >= 0 && (size_t)flip < len) b.p[at + (size_t)flip] ^= 0x10;
    seed("snapshot_recv", name, &b);
    free(b.p);
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* The store_values seeds: base alone, then per record (in key order, as the
 * target numbers them) its value cut by one byte and cut in half. */
static void value_seeds(const buf_t *s) {
    buf_t b = {0};
    uint8_t one = 1;
    add(&b, &one, 1);
    seed("store_values", "base", &b);
    free(b.p);
    size_t off = 16, i = 0;
    while (off + 9 <= s->n && s->p[off] == 1) {
        size_t kl = be32(s->p + off + 1), vl = be32(s->p + off + 5);
        const uint8_t *v = s->p + off + 9 + kl;
        for (int cut = 0; cut < 2; cut++) {
            size_t nv = cut == 0 ? (vl ? vl - 1 : 0) : vl / 2;
            if (nv > 0xFFFF) nv = 0xFFFF;
            uint8_t hdr[7] = {1, 0x40, 2, (uint8_t)(i >> 8), (uint8_t)i, (uint8_t)(nv >> 8), (uint8_t)nv};
            /* flags | sel | key_len | key (record number) | val_len */
            buf_t r = {0};
            add(&r, hdr, 3);
            add(&r, hdr + 5, 2);
            add(&r, hdr + 3, 2);
            add(&r, v, nv);
            char name[64];
            snprintf(name, sizeof name, "rec%03zu_%s", i, cut == 0 ? "short1" : "half");
            seed("store_values", name, &r);
            free(r.p);
        }
        off += 9 + kl + vl;
        i++;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_store_seeds CORPUS_DIR\n");
        return 2;
    }
    corpus = argv[1];
    char full[4300], empty[4300];
    snprintf(full, sizeof full, "%s/full", fuzz_tmpdir());
    snprintf(empty, sizeof empty, "%s/empty", fuzz_tmpdir());
    if (fuzz_store_fill(full) != 0) return 1;
    buf_t s = {0}, e = {0};
    if (export_store(full, &s) != 0) return 1;
    char err[256];
    mvcc_t *m = NULL;
    if (mvcc_open(empty, NULL, &m, err, sizeof err) != MVCC_OK) return 1;
    mvcc_close(m);
    if (export_store(empty, &e) != 0) return 1;
    static const uint8_t seven[] = {7}, mixed[] = {1, 100, 13}, big[] = {255, 255, 255, 255, 255, 255, 255};
    snap_seed("full_one_write", NULL, 0, &s, s.n, -1);
    snap_seed("full_chunks_7", seven, 1, &s, s.n, -1);
    snap_seed("full_chunks_mixed", mixed, 3, &s, s.n, -1);
    snap_seed("full_chunks_255", big, 7, &s, s.n, -1);
    snap_seed("empty_store", NULL, 0, &e, e.n, -1);
    snap_seed("empty_store_bytewise", seven, 0, &e, e.n, -1);
    snap_seed("trunc_header", NULL, 0, &s, 10, -1);
    snap_seed("trunc_half", mixed, 3, &s, s.n / 2, -1);
    snap_seed("trunc_no_end", NULL, 0, &s, s.n - 13, -1);
    snap_seed("trunc_end_short", seven, 1, &s, s.n - 1, -1);
    snap_seed("flip_record", mixed, 3, &s, s.n, (long)s.n / 3);
    snap_seed("flip_index", NULL, 0, &s, s.n, 15);
    snap_seed("flip_crc", NULL, 0, &s, s.n, (long)s.n - 1);
    buf_t extra = {0};
    add(&extra, s.p, s.n);
    add(&extra, "x", 1);
    snap_seed("byte_after_end", NULL, 0, &extra, extra.n, -1);
    value_seeds(&s);
    free(s.p);
    free(e.p);
    free(extra.p);
    return 0;
}
