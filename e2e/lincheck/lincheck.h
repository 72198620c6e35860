/* e2e/lincheck/lincheck.h: the linearizability checker's API (a test tool,
 * not part of kshimd): read a recorded history of key-value operations and
 * decide whether it is linearizable for a map of independent registers.
 *
 * Owns: the history (lc_history_t: the operations, the interned key and
 * value strings), the verdict and its report. The history format and the
 * algorithm are described at the top of lincheck.c. */
#ifndef KSHIM_LINCHECK_H
#define KSHIM_LINCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Verdicts (also the tool's exit codes). */
typedef enum {
    LC_OK = 0,
    LC_VIOLATION = 1,
    LC_UNKNOWN = 2, /* a key hit its step, time or memory limit */
} lc_verdict_t;

/* Errors (negative). */
enum {
    LC_ERR_PARSE = -1, /* malformed history line */
    LC_ERR_NOMEM = -2,
    LC_ERR_IO = -3,
};

typedef struct lc_history lc_history_t;

/* Per-key limits of the search; 0 means the default. */
typedef struct {
    uint64_t max_steps;      /* search steps per key (default 10^9, ~10 s) */
    double max_seconds;      /* wall time per key (default 30 s) */
    size_t max_cache_bytes;  /* memo table per key (default 512 MiB) */
    double minimize_seconds; /* time to shrink a violation's window (default 5 s) */
} lc_limits_t;

typedef struct {
    size_t n_ops;     /* operations in the history */
    size_t n_unknown; /* of which with unknown outcome */
    size_t n_keys;
    size_t n_keys_unknown; /* keys whose search hit a limit */
    uint64_t steps;        /* search steps over all keys */
    char bad_key[256];     /* first violating key (truncated), or "" */
    size_t window_ops;     /* operations in the printed window */
} lc_summary_t;

/* lc_history_read: parses a history from F. On LC_ERR_PARSE, ERR holds
 * "line N: why". *OUT is owned by the caller (lc_history_free). */
int lc_history_read(FILE *f, lc_history_t **out, char *err, size_t err_len);
/* lc_history_parse: the same from a NUL-terminated string. */
int lc_history_parse(const char *text, lc_history_t **out, char *err, size_t err_len);
void lc_history_free(lc_history_t *h);

/* lc_check: checks every key; writes the window of each violation (history
 * lines, re-checkable) and notes on keys left unknown to REPORT (may be
 * NULL). Returns LC_VIOLATION if any key violates, else LC_UNKNOWN if any key
 * is unknown, else LC_OK; a negative error if memory runs out. */
int lc_check(const lc_history_t *h, const lc_limits_t *limits, FILE *report, lc_summary_t *sum);

#endif
