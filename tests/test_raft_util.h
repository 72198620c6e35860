/*
 * test_raft_util.h: helpers shared by the raft-layer tests (temp dirs).
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

static int test_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void test_rm_rf(const char *path) { nftw(path, test_rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* A fresh directory under $KSHIM_TEST_TMP (or /tmp); out must hold 256. */
static void test_mkdtemp(char *out, const char *prefix) {
    const char *base = getenv("KSHIM_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    snprintf(out, 256, "%s/%s-XXXXXX", base, prefix);
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        abort();
    }
}

#endif
