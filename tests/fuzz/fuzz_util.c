/*
 * fuzz_util.c: the scratch directory and file helper of fuzz.h (the
 * directory through the tests' own test_mkdtemp/test_rm_rf).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "test_raft_util.h"

static char tmpdir[256];

static void remove_tmpdir(void) {
    if (tmpdir[0]) test_rm_rf(tmpdir);
}

const char *fuzz_tmpdir(void) {
    if (tmpdir[0]) return tmpdir;
    test_mkdtemp(tmpdir, "kshim-fuzz");
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
