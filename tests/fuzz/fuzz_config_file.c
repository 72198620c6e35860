/*
 * fuzz_config_file.c: etcd's YAML --config-file as kshimd reads it
 * (cmd/config_file.c on libyaml). Any file must load or be refused with a
 * message; every key handed to the setter is a NUL-terminated string (value NULL asks
 * whether the flag is known).
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "config_file.h"
#include "fuzz.h"

static int set_any(void *ctx, const char *flag, const char *value, char *err, size_t errlen) {
    size_t *count = ctx;
    assert(flag);
    if (!value) return strcmp(flag, "unknown-flag") == 0; /* "is it known?" */
    (*count)++;
    if (strcmp(flag, "refuse-me") == 0) {
        snprintf(err, errlen, "refused");
        return -1;
    }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/etcd.conf.yml", fuzz_tmpdir());
    if (fuzz_write_file(path, data, size) != 0) return 0;
    size_t count = 0;
    if (config_file_load(path, set_any, &count, err, sizeof err) != 0) assert(err[0] != '\0');
    return 0;
}
