/*
 * failpoint.c: the failpoint counters of storage/ (see failpoint.h).
 */
#include "failpoint.h"

#include <stdlib.h>
#include <string.h>

uint64_t failpoint_parse(const char *spec, const char *name) {
    if (!spec || !name) return 0;
    size_t nl = strlen(name);
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            char *stop = NULL;
            unsigned long long v = strtoull(p + nl + 1, &stop, 10);
            if (stop == p + len && stop != p + nl + 1) return (uint64_t)v;
            return 0;
        }
        p = end ? end + 1 : p + len;
    }
    return 0;
}

void failpoint_arm(failpoint_t *fp, uint64_t n) { atomic_store(&fp->countdown, n); }

int failpoint_hit_slow(failpoint_t *fp) {
    uint64_t c = atomic_load(&fp->countdown);
    while (c != 0) {
        if (atomic_compare_exchange_weak(&fp->countdown, &c, c - 1)) return c == 1;
    }
    return 0;
}
