/*
 * replay_main.c: runs a fuzz target without libFuzzer (see fuzz.h).
 *
 *   replay_<target> [-m MUTATIONS] [-s SEED] FILE_OR_DIR...
 *
 * Every file given (or in a directory given) is run as is, then MUTATIONS
 * inputs (default 2000) made from them by a seeded xorshift: bit flips,
 * random bytes, deletions, insertions, duplicated ranges, truncations and
 * splices of two inputs. The same seed gives the same inputs, so a failure
 * reproduces; the failing input is written to ./replay-crash-<n> first.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define MAX_INPUTS 4096
#define MAX_INPUT_BYTES (1u << 20)

typedef struct input {
    uint8_t *data;
    size_t size;
} input_t;

static input_t inputs[MAX_INPUTS];
static size_t n_inputs;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void load_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f || n_inputs >= MAX_INPUTS) {
        if (f) fclose(f);
        return;
    }
    uint8_t *buf = malloc(MAX_INPUT_BYTES);
    size_t n = buf ? fread(buf, 1, MAX_INPUT_BYTES, f) : 0;
    fclose(f);
    if (!buf) return;
    inputs[n_inputs++] = (input_t){buf, n};
}

static void load_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: not found\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        load_file(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        load_file(p);
    }
    if (d) closedir(d);
}

/* One mutation of src into dst (capacity MAX_INPUT_BYTES); returns the size. */
static size_t mutate(const input_t *src, const input_t *other, uint8_t *dst) {
    size_t n = src->size;
    memcpy(dst, src->data, n);
    int rounds = 1 + (int)(rng() % 4);
    for (int r = 0; r < rounds; r++) {
        size_t pos = n ? (size_t)(rng() % n) : 0;
        size_t len = 1 + (size_t)(rng() % 16);
        switch (rng() % 7) {
        case 0: /* flip a bit */
            if (n) dst[pos] ^= (uint8_t)(1u << (rng() % 8));
            break;
        case 1: /* an interesting byte */
            if (n) dst[pos] = (uint8_t[]){0, 1, 0x7f, 0x80, 0xff, 0xfe}[rng() % 6];
            break;
        case 2: /* delete */
            if (pos + len > n) len = n - pos;
            memmove(dst + pos, dst + pos + len, n - pos - len);
            n -= len;
            break;
        case 3: /* insert random bytes */
            if (n + len > MAX_INPUT_BYTES) break;
            memmove(dst + pos + len, dst + pos, n - pos);
            for (size_t i = 0; i < len; i++) dst[pos + i] = (uint8_t)rng();
            n += len;
            break;
        case 4: /* duplicate a range */
            if (pos + len > n || n + len > MAX_INPUT_BYTES) break;
            memmove(dst + pos + len, dst + pos, n - pos);
            n += len;
            break;
        case 5: /* truncate */ n = pos; break;
        default: /* splice: our head, the other's tail */
            if (other->size) {
                size_t from = (size_t)(rng() % other->size);
                size_t take = other->size - from;
                if (pos + take > MAX_INPUT_BYTES) take = MAX_INPUT_BYTES - pos;
                memcpy(dst + pos, other->data + from, take);
                n = pos + take;
            }
            break;
        }
    }
    return n;
}

static void run_one(const uint8_t *data, size_t size, unsigned long index) {
    char name[64];
    snprintf(name, sizeof name, "replay-crash-%lu", index);
    FILE *f = fopen(name, "wb"); /* kept only if the run crashes */
    if (f) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
    LLVMFuzzerTestOneInput(data, size);
    remove(name);
}

int main(int argc, char **argv) {
    unsigned long mutations = 2000;
    LLVMFuzzerInitialize(&argc, &argv);
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc)
            mutations = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            rng_state = strtoull(argv[++i], NULL, 10) | 1;
        else
            load_path(argv[i]);
    }
    if (n_inputs == 0) inputs[n_inputs++] = (input_t){calloc(1, 1), 0};
    unsigned long index = 0;
    for (size_t k = 0; k < n_inputs; k++) run_one(inputs[k].data, inputs[k].size, index++);
    uint8_t *buf = malloc(MAX_INPUT_BYTES);
    if (!buf) return 2;
    for (unsigned long m = 0; m < mutations; m++) {
        const input_t *a = &inputs[rng() % n_inputs], *b = &inputs[rng() % n_inputs];
        size_t n = mutate(a, b, buf);
        run_one(buf, n, index++);
    }
    printf("replay: %zu corpus inputs and %lu mutations ran clean\n", n_inputs, mutations);
    free(buf);
    for (size_t k = 0; k < n_inputs; k++) free(inputs[k].data);
    return 0;
}
