/*
 * fuzz_wal.c: WAL replay (raft/wal.c) of a hostile segment file. The input
 * is the whole content of the only segment; wal_open must either recover a
 * consistent log (consecutive indexes, commit within the log) or refuse
 * with an error, never crash or read past the file.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "test_raft_util.h"
#include "wal.h"

#define SEGMENT_BYTES (64u * 1024)

static char dir[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

/* Empties the WAL directory (wal_open may have added files). */
static void clear_dir(void) {
    test_rm_rf(dir);
    if (mkdir(dir, 0700) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > SEGMENT_BYTES) return 0;
    if (!dir[0]) snprintf(dir, sizeof dir, "%s/wal", fuzz_tmpdir());
    clear_dir();
    char seg[8600];
    snprintf(seg, sizeof seg, "%s/0000000000000000-0000000000000001.wal", dir);
    if (fuzz_write_file(seg, data, size) != 0) abort();

    wal_t *w = NULL;
    wal_recovered_t rec;
    char err[256];
    if (wal_open(dir, SEGMENT_BYTES, &w, &rec, err, sizeof err) != 0) return 0;
    for (size_t i = 1; i < rec.n_ents; i++) assert(rec.ents[i].index == rec.ents[i - 1].index + 1);
    if (rec.n_ents) assert(rec.ents[0].index == rec.base_index + 1);
    wal_recovered_free(&rec);
    wal_close(w);
    return 0;
}
