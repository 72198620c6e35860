/*
 * fuzz_util.c: the scratch directory and file helper of fuzz.h.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

static char tmpdir[4096];

static void remove_tmpdir(void) {
    char cmd[4200];
    if (!tmpdir[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", tmpdir);
}

const char *fuzz_tmpdir(void) {
    if (tmpdir[0]) return tmpdir;
    const char *base = getenv("KSHIM_TEST_TMP");
    char mk[4096];
    snprintf(mk, sizeof mk, "mkdir -p '%s'", base && *base ? base : "/tmp");
    if (system(mk) != 0) abort();
    snprintf(tmpdir, sizeof tmpdir, "%s/kshim-fuzz-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) abort();
    atexit(remove_tmpdir);
    return tmpdir;
}

int fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    return close(fd);
}
