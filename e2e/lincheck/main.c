/* e2e/lincheck/main.c: the lincheck command (a test tool, built as
 * build/lincheck): checks a recorded history file for linearizability.
 * Owns the command line and the verdict line; the checker is lincheck.c.
 *
 * Usage: lincheck [--max-steps N] [--timeout S] [--minimize S] HISTORY
 *   (HISTORY "-" reads stdin; format in lincheck.c's header)
 * Prints "OK: N operations checked on K keys", or "VIOLATION on key X" with
 * a minimal window of history lines, or "UNKNOWN ..." when a key's search
 * hits its limit. Exit code 0 (OK), 1 (violation), 2 (unknown), 3 (bad
 * input or usage). */
#include "lincheck.h"

#include <stdlib.h>
#include <string.h>

static int usage(void) {
    fprintf(stderr, "usage: lincheck [--max-steps N] [--timeout SECONDS] [--minimize SECONDS] HISTORY\n");
    return 3;
}

int main(int argc, char **argv) {
    lc_limits_t lim = {0};
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--max-steps") == 0 && i + 1 < argc)
            lim.max_steps = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            lim.max_seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--minimize") == 0 && i + 1 < argc)
            lim.minimize_seconds = atof(argv[++i]);
        else if (!path && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0))
            path = argv[i];
        else
            return usage();
    }
    if (!path) return usage();
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        perror(path);
        return 3;
    }
    lc_history_t *h = NULL;
    char err[256] = "";
    int rc = lc_history_read(f, &h, err, sizeof(err));
    if (f != stdin) fclose(f);
    if (rc < 0) {
        fprintf(stderr, "lincheck: %s: %s\n", path, rc == LC_ERR_PARSE ? err : "cannot read");
        return 3;
    }
    lc_summary_t s;
    rc = lc_check(h, &lim, stdout, &s);
    if (rc < 0) {
        fprintf(stderr, "lincheck: out of memory\n");
        lc_history_free(h);
        return 3;
    }
    if (rc == LC_OK)
        printf("OK: %zu operations checked on %zu keys\n", s.n_ops, s.n_keys);
    else if (rc == LC_UNKNOWN)
        printf("UNKNOWN: %zu of %zu keys hit the search limit (%zu operations)\n", s.n_keys_unknown, s.n_keys,
               s.n_ops);
    fprintf(stderr, "lincheck: %zu operations (%zu with unknown outcome), %zu keys, %llu search steps\n",
            s.n_ops, s.n_unknown, s.n_keys, (unsigned long long)s.steps);
    lc_history_free(h);
    return rc;
}
