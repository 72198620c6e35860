/*
 * fuzz.h: what every fuzz target in tests/fuzz/ shares.
 *
 * A target defines LLVMFuzzerTestOneInput (and, if it needs set-up,
 * LLVMFuzzerInitialize). It is built twice:
 *   - with clang and libFuzzer (cmake -DKSHIM_FUZZ=ON, `make fuzz`): coverage-
 *     guided fuzzing, starting from tests/fuzz/corpus/<target>/;
 *   - always, as replay_<target> with replay_main.c: every corpus file, then
 *     a fixed number of deterministic mutations of them, under the build's
 *     sanitizers (ASan+UBSan in build-asan). That short run is in make test.
 * A target must be deterministic per input as far as it can, never exit,
 * and free everything it allocates per input (LeakSanitizer).
 *
 * fuzz_tmpdir() gives each process one private scratch directory.
 */
#ifndef KSHIM_FUZZ_H
#define KSHIM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A directory under $KSHIM_TEST_TMP or /tmp, created once per process and
 * removed at exit. */
const char *fuzz_tmpdir(void);
/* Writes data to path (truncating); 0 or -1. */
int fuzz_write_file(const char *path, const uint8_t *data, size_t size);

#endif
