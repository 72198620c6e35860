/*
 * fuzz_bbolt_reader.c: storage/bbolt's reader on any file, as `kshimctl
 * snapshot restore` and kshimd's take-over of an etcd data dir meet it. The
 * file is opened, every top-level bucket walked, and every bucket's elements
 * scanned: each answer is BBOLT_OK or an error code, never a read outside
 * the file or a hang (page references form cycles in a hostile file).
 */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bbolt.h"
#include "fuzz.h"

typedef struct {
    bbolt_reader_t *r;
    size_t visited;
} walk_t;

static int count_element(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                         int is_bucket) {
    walk_t *w = arg;
    (void)is_bucket;
    if (klen) assert(key);
    if (vlen) assert(val);
    w->visited++;
    return 0;
}

static int scan_bucket(void *arg, const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                       int is_bucket) {
    walk_t *w = arg;
    (void)val;
    (void)vlen;
    if (is_bucket) (void)bbolt_reader_scan(w->r, key, klen, count_element, w);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4200];
    snprintf(path, sizeof path, "%s/snapshot.db", fuzz_tmpdir());
    if (fuzz_write_file(path, data, size) != 0) return 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    bbolt_reader_t *r = NULL;
    if (bbolt_reader_open(fd, size, &r) == BBOLT_OK) {
        walk_t w = {r, 0};
        (void)bbolt_reader_buckets(r, scan_bucket, &w);
        static const uint8_t key[] = "key";
        (void)bbolt_reader_scan(r, key, 3, count_element, &w);
        bbolt_reader_free(r);
    }
    close(fd);
    return 0;
}
